//! The [`Shell`]: what a command says, and to whom. Every command gets one and speaks only
//! through it: results on standard output, errors (each with its fix), warnings and notes on
//! standard error. A test gives a command a capturing shell and reads what it said.

use std::sync::{Arc, Mutex};

use crate::Status;
use crate::output;

/// Where a command's words go.
#[derive(Debug, Clone, Default)]
pub struct Shell {
    /// `None`: the process's standard output and error (through [`output`], which keeps lines
    /// whole beside the spinner and escapes control characters). `Some`: a buffer.
    capture: Option<Arc<Mutex<Captured>>>,
}

/// What a capturing shell was told.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Captured {
    pub out: String,
    pub err: String,
}

impl Shell {
    /// The process's standard output and error.
    pub fn std() -> Shell {
        Shell::default()
    }

    /// A shell that keeps what it is told, for tests.
    #[cfg(test)]
    pub fn capture() -> (Shell, Arc<Mutex<Captured>>) {
        let captured: Arc<Mutex<Captured>> = Default::default();
        (Shell { capture: Some(captured.clone()) }, captured)
    }

    fn keep(&self, text: &str, err: bool) -> bool {
        let Some(c) = &self.capture else { return false };
        if let Ok(mut c) = c.lock() {
            let to = if err { &mut c.err } else { &mut c.out };
            to.push_str(&output::escape(text));
        }
        true
    }

    /// Text on standard output, control characters escaped.
    pub fn out(&self, text: &str) {
        if !self.keep(text, false) {
            output::out(text);
        }
    }

    /// Text on standard output as is: only text whose escapes benchform made (colour).
    pub fn out_styled(&self, text: &str) {
        match &self.capture {
            Some(c) => {
                if let Ok(mut c) = c.lock() {
                    c.out.push_str(text);
                }
            }
            None => output::out_styled(text),
        }
    }

    /// A line on standard output.
    pub fn line(&self, text: &str) {
        self.out(&format!("{text}\n"));
    }

    /// Text on standard error, control characters escaped.
    pub fn err(&self, text: &str) {
        if !self.keep(text, true) {
            output::raw_err(text);
        }
    }

    /// A line on standard error.
    pub fn err_line(&self, text: &str) {
        self.err(&format!("{text}\n"));
    }

    /// `error: WHAT` and `  = fix: FIX` on standard error; the command fails.
    pub fn error(&self, what: &str, fix: &str) -> Status {
        self.err_line(&format!("error: {what}\n  = fix: {fix}"));
        Status::Failure
    }

    /// `warning: WHAT`, with a fix when there is one, on standard error.
    pub fn warn(&self, what: &str, fix: Option<&str>) {
        match fix {
            Some(fix) => self.err_line(&format!("warning: {what}\n  = fix: {fix}")),
            None => self.err_line(&format!("warning: {what}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_their_fix_and_fail() {
        let (shell, said) = Shell::capture();
        assert_eq!(shell.error("no lock", "run `benchform lock`"), Status::Failure);
        shell.warn("slow", None);
        shell.line("plan \u{1b}[2K");
        let said = said.lock().unwrap().clone();
        assert_eq!(said.err, "error: no lock\n  = fix: run `benchform lock`\nwarning: slow\n");
        assert_eq!(said.out, "plan \\u001b[2K\n");
    }
}

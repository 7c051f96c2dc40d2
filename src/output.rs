//! All terminal output goes through here, so that nothing else in benchform prints.

use std::io::Write;

/// Held while anything is written, so that lines from different threads never mix.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn writing() -> std::sync::MutexGuard<'static, ()> {
    WRITING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Write to standard output. A closed pipe (`benchform … | head`) is not an error worth a panic.
/// Control characters are escaped: names and values from files, engines and sites reach here,
/// and none of them may move the cursor or erase what was printed.
pub fn out(text: &str) {
    out_styled(&escape(text));
}

/// Write to standard output as is: only for text whose escapes benchform made itself (colour),
/// everything else in it already escaped.
pub fn out_styled(text: &str) {
    let _guard = writing();
    beside_progress(|| {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    });
}

/// `text` with control characters escaped: for anything read from files, names or other
/// programs before it is printed.
pub fn escape(text: &str) -> String {
    benchform_manifest::diagnostic::escape_controls(text)
}

/// Write a line to standard output.
pub fn line(text: &str) {
    out(&format!("{text}\n"));
}

/// Write to standard error, control characters escaped.
pub fn raw_err(text: &str) {
    let _guard = writing();
    beside_progress(|| {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(escape(text).as_bytes());
        let _ = stderr.flush();
    });
}

/// Write a line to standard error.
pub fn err_line(text: &str) {
    raw_err(&format!("{text}\n"));
}

/// The progress display while a [`Spinner`] lives: other output is written with it cleared.
static PROGRESS: std::sync::Mutex<Option<indicatif::MultiProgress>> = std::sync::Mutex::new(None);

/// Run `write` with the progress display (if any) cleared, then redraw it below.
fn beside_progress(write: impl FnOnce()) {
    let progress = PROGRESS.lock().map(|p| p.clone()).unwrap_or(None);
    match progress {
        Some(p) => p.suspend(write),
        None => write(),
    }
}

/// One spinner line per running step, with its elapsed time, at the bottom of a terminal's
/// standard error (`indicatif`). Only on a terminal and without `-v` (whose streamed output it
/// would break); elsewhere the apply's heartbeat says what runs.
#[derive(Debug)]
pub struct Spinner {
    multi: indicatif::MultiProgress,
    running: std::sync::Mutex<Vec<(String, indicatif::ProgressBar)>>,
}

impl Spinner {
    /// A spinner, or `None` when standard error is not a terminal or logs stream to it.
    pub fn new() -> Option<Spinner> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() || tracing::enabled!(tracing::Level::INFO) {
            return None;
        }
        let multi = indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::stderr());
        if let Ok(mut p) = PROGRESS.lock() {
            *p = Some(multi.clone());
        }
        Some(Spinner { multi, running: Default::default() })
    }

    pub fn start(&self, label: &str) {
        // The template is a constant that parses; the default style is the fallback regardless.
        let style = indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        let bar =
            self.multi.add(indicatif::ProgressBar::new_spinner().with_style(style).with_message(label.to_string()));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        if let Ok(mut r) = self.running.lock() {
            r.push((label.to_string(), bar));
        }
    }

    pub fn finish(&self, label: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.retain(|(l, bar)| {
                if l == label {
                    bar.finish_and_clear();
                    self.multi.remove(bar);
                }
                l != label
            });
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Ok(mut r) = self.running.lock() {
            for (_, bar) in r.drain(..) {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
        if let Ok(mut p) = PROGRESS.lock() {
            *p = None;
        }
    }
}

/// What to mask in log lines (set by commands that hold secrets, e.g. apply).
static LOG_SECRETS: std::sync::RwLock<Option<benchform_manifest::mask::Masker>> = std::sync::RwLock::new(None);

/// From now on, mask every secret of `masker` in every log line (`-v` streams command output,
/// which can hold a secret: a traceback's locals, a clone URL).
pub fn redact_in_logs(masker: benchform_manifest::mask::Masker) {
    if let Ok(mut s) = LOG_SECRETS.write() {
        *s = Some(masker);
    }
}

/// `text` with every registered secret masked.
fn redacted(text: &str) -> String {
    match LOG_SECRETS.read() {
        Ok(guard) => guard.as_ref().map_or_else(|| text.to_string(), |m| m.mask(text)),
        Err(_) => text.to_string(),
    }
}

/// The log's writer: one per event; the event is masked and written whole when dropped.
#[derive(Debug, Default)]
pub struct LogWriter(Vec<u8>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            raw_err(&redacted(&String::from_utf8_lossy(&self.0)));
        }
    }
}

/// For `tracing_subscriber::fmt().with_writer(output::log_writer)`.
pub fn log_writer() -> LogWriter {
    LogWriter::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_masked_once_secrets_are_known() {
        redact_in_logs(benchform_manifest::mask::Masker::new(["tok-0123456789".to_string(), "abc".to_string()]));
        assert_eq!(redacted("clone https://x:tok-0123456789@h/a abc"), "clone https://x:***@h/a abc");
        redact_in_logs(benchform_manifest::mask::Masker::default());
    }
}

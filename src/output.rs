//! All terminal output goes through here, so that nothing else in benchform prints.

use std::io::Write;

/// Write to standard output. A closed pipe (`benchform … | head`) is not an error worth a panic.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Write a line to standard output.
pub fn line(text: &str) {
    out(&format!("{text}\n"));
}

/// Write to standard error as is.
pub fn raw_err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Write a line to standard error.
pub fn err_line(text: &str) {
    raw_err(&format!("{text}\n"));
}

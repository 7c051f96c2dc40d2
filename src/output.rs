//! All terminal output goes through here, so that nothing else in benchform prints.

use std::io::Write;

/// Held while anything is written, so that a spinner frame never lands inside a line.
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
    clear_spinner_line();
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
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
    clear_spinner_line();
    write_err(&escape(text));
}

fn write_err(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
    let _ = stderr.flush();
}

/// Write a line to standard error.
pub fn err_line(text: &str) {
    raw_err(&format!("{text}\n"));
}

/// Set while a spinner owns the last line of standard error.
static SPINNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clear the spinner's line before other output, so lines never mix with it.
fn clear_spinner_line() {
    if SPINNING.load(std::sync::atomic::Ordering::SeqCst) {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(b"\r\x1b[2K");
        let _ = stderr.flush();
    }
}

/// A spinner with the elapsed time of each running step, on the last line of a terminal's
/// standard error. Only on a terminal and without `-v` (whose streamed output it would break).
#[derive(Debug)]
pub struct Spinner {
    running: std::sync::Arc<std::sync::Mutex<Vec<(String, std::time::Instant)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    /// A spinner, or `None` when standard error is not a terminal or logs stream to it.
    pub fn new() -> Option<Spinner> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() || tracing::enabled!(tracing::Level::INFO) {
            return None;
        }
        let running: std::sync::Arc<std::sync::Mutex<Vec<(String, std::time::Instant)>>> = Default::default();
        let stop: std::sync::Arc<std::sync::atomic::AtomicBool> = Default::default();
        let (r, s) = (running.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut frame = 0;
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(120));
                let text = match r.lock() {
                    Ok(running) if !running.is_empty() => running
                        .iter()
                        .map(|(label, since)| format!("{label} {}s", since.elapsed().as_secs()))
                        .collect::<Vec<_>>()
                        .join(" · "),
                    _ => continue,
                };
                frame = (frame + 1) % FRAMES.len();
                let _guard = writing();
                SPINNING.store(true, std::sync::atomic::Ordering::SeqCst);
                write_err(&format!("\r\x1b[2K{} {text}", FRAMES[frame]));
            }
            let _guard = writing();
            clear_spinner_line();
            SPINNING.store(false, std::sync::atomic::Ordering::SeqCst);
        });
        Some(Spinner { running, stop, thread: Some(thread) })
    }

    pub fn start(&self, label: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.push((label.to_string(), std::time::Instant::now()));
        }
    }

    pub fn finish(&self, label: &str) {
        if let Ok(mut r) = self.running.lock() {
            r.retain(|(l, _)| l != label);
        }
        let _guard = writing();
        clear_spinner_line();
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
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

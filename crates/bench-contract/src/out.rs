//! How the fixture fails and prompts, the way a frappe bench does.
//!
//! Every command returns `Res<T>`; a [`Fail`] carries only the exit code,
//! because by the time it is returned the message has been printed where
//! frappe prints it: `click.secho` messages on stdout, uncaught exceptions as
//! a Python traceback on stderr, `Aborted!` on stderr, usage errors on stderr
//! with exit code 2.
//!
//! Prompts read one line from stdin. Under `docker exec` without a TTY (how
//! benchform runs bench, contract §9) stdin is empty, so every prompt hits EOF
//! and fails instead of hanging; that is exactly the behaviour the contract
//! asks benchform to expect.

use std::io::{self, BufRead, Write};

/// A failed command: the process exits with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail(pub u8);

pub type Res<T> = Result<T, Fail>;

/// Flushes stdout; a closed pipe is not worth crashing over.
pub fn flush() {
    let _ = io::stdout().flush();
}

/// A Python traceback for an uncaught exception. `frames` are `(file, line,
/// function, source)` tuples, innermost last; the entry-point frames every
/// bench command shares are added in front.
pub fn traceback_text(frames: &[(&str, u32, &str, &str)], exception: &str) -> String {
    let mut text = String::from("Traceback (most recent call last):\n");
    let common: [(&str, u32, &str, &str); 3] = [
        ("<frozen runpy>", 198, "_run_module_as_main", ""),
        ("<frozen runpy>", 88, "_run_code", ""),
        ("/home/frappe/frappe-bench/apps/frappe/frappe/utils/bench_helper.py", 114, "<module>", "main()"),
    ];
    for (file, line, func, source) in common.iter().chain(frames) {
        text.push_str(&format!("  File \"{file}\", line {line}, in {func}\n"));
        if !source.is_empty() {
            text.push_str(&format!("    {source}\n"));
        }
    }
    text.push_str(exception);
    text
}

/// Prints [`traceback_text`] to stderr, as Python does for an uncaught
/// exception, and fails with exit code 1.
pub fn traceback(frames: &[(&str, u32, &str, &str)], exception: &str) -> Fail {
    flush();
    eprintln!("{}", traceback_text(frames, exception));
    Fail(1)
}

/// frappe's `update_progress_bar` off a terminal: `\r`-redrawn 40-column bar
/// with the label padded to 36 characters, then a newline.
pub fn progress(label: &str, steps: usize) {
    let steps = steps.max(1);
    let label = format!("{label:<36}");
    for i in 0..steps {
        let done = (i + 1) * 40 / steps;
        let bar = format!("{:<40}", "=".repeat(done));
        print!("\r{label}: [{bar}] {}%", (i + 1) * 100 / steps);
        flush();
    }
    println!();
}

/// Traceback for an exception raised inside a frappe command function.
pub fn exception(command_fn: &str, exception_line: &str) -> Fail {
    traceback(
        &[
            (
                "/home/frappe/frappe-bench/apps/frappe/frappe/commands/__init__.py",
                29,
                "_func",
                "ret = f(frappe._dict(ctx.obj), *args, **kwargs)",
            ),
            ("/home/frappe/frappe-bench/apps/frappe/frappe/commands/site.py", 1, command_fn, ""),
        ],
        exception_line,
    )
}

/// An `OSError`-style failure of the fixture's own file handling, reported
/// like the Python exception frappe would have raised.
pub fn os_error(what: &str, err: &io::Error) -> Fail {
    let name = match err.kind() {
        io::ErrorKind::NotFound => "FileNotFoundError",
        io::ErrorKind::PermissionDenied => "PermissionError",
        io::ErrorKind::AlreadyExists => "FileExistsError",
        _ => "OSError",
    };
    traceback(&[], &format!("{name}: {err}: {what}"))
}

/// `subprocess.CalledProcessError` for a helper command (`gzip -c`) that exited non-zero.
pub fn command_failed(command: &str, status: std::process::ExitStatus) -> Fail {
    traceback(
        &[],
        &format!(
            "subprocess.CalledProcessError: Command '{command}' returned non-zero exit status {}.",
            status.code().unwrap_or(1)
        ),
    )
}

/// click's `Abort`: `Aborted!` on stderr, exit 1.
pub fn aborted() -> Fail {
    flush();
    eprintln!("Aborted!");
    Fail(1)
}

/// Reads one line of stdin; `None` on EOF (or an unreadable stdin).
fn read_line() -> Option<String> {
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_owned()),
    }
}

/// `click.confirm(prompt)`: `Ok(true)` for y/yes, `Ok(false)` for anything
/// else; EOF aborts (`Aborted!`, exit 1) whether or not `abort=True`.
pub fn confirm(prompt: &str) -> Res<bool> {
    print!("{prompt} [y/N]: ");
    flush();
    match read_line() {
        // click raises Abort on EOF; the prompt line is left unterminated.
        None => Err(aborted()),
        Some(answer) => Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")),
    }
}

/// `getpass.getpass(prompt)` without a terminal: Python warns, prompts on
/// stderr and raises `EOFError` when stdin is empty.
pub fn getpass(prompt: &str, frames: &[(&str, u32, &str, &str)]) -> Res<String> {
    flush();
    eprint!("Warning: Password input may be echoed.\n{prompt}");
    let _ = io::stderr().flush();
    match read_line() {
        Some(line) if !line.is_empty() => Ok(line),
        Some(_) => Ok(String::new()),
        None => {
            let mut all: Vec<(&str, u32, &str, &str)> = frames.to_vec();
            all.push(("/usr/local/lib/python3.11/getpass.py", 91, "_raw_input", "raise EOFError"));
            Err(traceback(&all, "EOFError"))
        }
    }
}

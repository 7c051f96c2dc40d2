//! `benchform-gitserver`: serve a folder of bare repositories over git
//! smart-HTTP on loopback, for shell scripts (`scripts/world`,
//! `scripts/demo`) that need a git host without the network.
//!
//! ```text
//! benchform-gitserver --root DIR [--bind 127.0.0.1:PORT] [--token-env VAR]
//!                     [--private-prefix P] [--pid-file F]
//! ```
//!
//! Prints exactly one line, `listening on http://127.0.0.1:PORT`, once the
//! socket is bound, then serves until killed.

// This is a binary talking to its caller: stdout carries the "listening on"
// line scripts wait for and stderr carries usage errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use benchform_gitserver::{GitServer, ServerConfig};

const USAGE: &str = "usage: benchform-gitserver --root DIR [--bind 127.0.0.1:PORT] \
[--token-env VAR] [--private-prefix P] [--pid-file F]

Serves the bare repositories under DIR over git smart-HTTP.
Repositories under the private prefix (default \"private/\") require HTTP Basic
auth with the token read from environment variable VAR (never from argv, which
other users can see in `ps`).";

#[derive(Debug)]
struct Options {
    root: PathBuf,
    bind: Option<SocketAddr>,
    token_env: Option<OsString>,
    private_prefix: Option<String>,
    pid_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("benchform-gitserver: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let Some(opts) = parse_args(std::env::args_os().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };

    let mut config = ServerConfig::new(opts.root);
    if let Some(bind) = opts.bind {
        config.bind = bind;
    }
    if let Some(prefix) = opts.private_prefix {
        config.private_prefix = prefix;
    }
    if let Some(var) = opts.token_env {
        match std::env::var(&var) {
            Ok(token) if !token.is_empty() => config.token = Some(token),
            _ => {
                return Err(format!(
                    "environment variable {} (from --token-env) is unset, empty or not UTF-8",
                    var.to_string_lossy()
                ));
            }
        }
    }

    let server = GitServer::start(config).map_err(|e| format!("cannot start: {e}"))?;
    if let Some(pid_file) = &opts.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write {}: {e}", pid_file.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", server.url())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);

    // Serve until a signal ends the process; `server` stays alive meanwhile.
    loop {
        std::thread::park();
    }
}

/// Returns `Ok(None)` for `--help`.
fn parse_args(mut args: impl Iterator<Item = OsString>) -> Result<Option<Options>, String> {
    let mut root = None;
    let mut bind = None;
    let mut token_env = None;
    let mut private_prefix = None;
    let mut pid_file = None;

    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(|a| format!("unexpected argument {}\n\n{USAGE}", a.to_string_lossy()))?;
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(OsString::from(v))),
            _ => (arg, None),
        };
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let mut value =
            || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"));
        match flag.as_str() {
            "--root" => root = Some(PathBuf::from(value()?)),
            "--bind" => {
                let v = value()?;
                let v = v.to_string_lossy();
                bind = Some(v.parse::<SocketAddr>().map_err(|e| format!("--bind {v}: {e}"))?);
            }
            "--token-env" => token_env = Some(value()?),
            "--private-prefix" => {
                private_prefix = Some(value()?.into_string().map_err(|_| "--private-prefix must be UTF-8".to_owned())?);
            }
            "--pid-file" => pid_file = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }

    let root = root.ok_or_else(|| format!("--root is required\n\n{USAGE}"))?;
    Ok(Some(Options { root, bind, token_env, private_prefix, pid_file }))
}

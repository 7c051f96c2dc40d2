//! The `benchform` command line: the only place that prints.

mod apply;
mod cli;
mod commands;
mod history;
mod load;
mod observe;
pub mod output;
mod plan_file;
mod preview;
mod render;
mod shell;
mod swarm;
mod views;

use std::process::ExitCode;

use clap::Parser;

/// How a command ended. The process exits only from `main`, with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success, or nothing to change.
    Success,
    /// Any error, usage errors included.
    Failure,
    /// Changes are pending (only under `--detailed-exitcode`).
    Changes,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        match s {
            Status::Success => ExitCode::SUCCESS,
            Status::Failure => ExitCode::from(1),
            Status::Changes => ExitCode::from(2),
        }
    }
}

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => {
            // clap would exit 2 for usage errors; benchform keeps 2 for "changes pending".
            let status = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => Status::Success,
                _ => Status::Failure,
            };
            // clap sends help and version to stdout and errors to stderr, colouring only terminals.
            let _ = e.print();
            return status.into();
        }
    };
    init_tracing(args.verbose);
    commands::run(args).into()
}

/// The async runtime for commands that talk to the engine.
pub fn runtime() -> tokio::runtime::Runtime {
    // Invariant: building a runtime fails only when the OS refuses threads or an epoll fd, in
    // which case nothing benchform does can work.
    #[allow(clippy::expect_used)]
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime starts")
}

fn init_tracing(verbose: u8) {
    // The engine client logs whole request bodies at debug level: kept at info unless asked for
    // by name in BENCHFORM_LOG.
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug,bollard=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BENCHFORM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(output::log_writer).with_target(false).init();
}

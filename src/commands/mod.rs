//! The commands: each `run(shell, args)` returns a [`Status`] and speaks only through its
//! [`Shell`]. One module per command, but `completions` (below) and `force-unlock` (with the
//! apply lock, in `apply/lock.rs`).

mod apply;
mod diff;
mod history;
mod init;
pub mod lock;
pub mod plan;
mod schema;
mod show;
mod status;
mod validate;

use crate::Status;
use crate::cli::{Cli, Command};
use crate::shell::Shell;

pub fn run(cli: Cli) -> Status {
    let shell = &Shell::std();
    match cli.command {
        Command::Validate(args) => validate::run(shell, &args),
        Command::Schema(args) => schema::run(shell, &args),
        Command::Lock(args) => lock::run(shell, &args),
        Command::Status(args) => status::run(shell, &args),
        Command::Plan(args) => plan::run(shell, &args),
        Command::Show(args) => show::run(shell, &args),
        Command::Diff(args) => diff::run(shell, &args),
        Command::Apply(args) => apply::run(shell, &args),
        Command::History(args) => history::run(shell, &args),
        Command::Init(args) => init::run(shell, &args),
        Command::Completions(args) => completions(shell, &args),
        Command::ForceUnlock(args) => apply::force_unlock(shell, &args),
    }
}

/// `benchform completions SHELL`: the script on standard output.
fn completions(shell: &Shell, args: &crate::cli::CompletionsArgs) -> Status {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "benchform", &mut script);
    shell.out(&String::from_utf8_lossy(&script));
    Status::Success
}

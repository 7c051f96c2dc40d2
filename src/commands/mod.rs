//! One module per command; each returns a [`Status`] and prints only through `output`.

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

pub fn run(cli: Cli) -> Status {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Lock(args) => lock::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Show(args) => show::run(&args),
        Command::Diff(args) => diff::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::History(args) => history::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Completions(args) => completions(&args),
        Command::ForceUnlock(args) => apply::force_unlock(&args),
    }
}

/// `benchform completions SHELL`: the script on standard output.
fn completions(args: &crate::cli::CompletionsArgs) -> Status {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "benchform", &mut script);
    crate::output::out(&String::from_utf8_lossy(&script));
    Status::Success
}

//! `benchform show FILE`: render a saved plan.

use crate::Status;
use crate::cli::ShowArgs;
use crate::shell::Shell;
use crate::{plan_file, views};

pub fn run(shell: &Shell, args: &ShowArgs) -> Status {
    match plan_file::read_saved_plan(&args.file) {
        Ok(doc) => {
            views::plan::print(shell, &doc.plan(), &doc.inputs, args.format);
            Status::Success
        }
        Err(e) => shell.error(&e.to_string(), e.fix()),
    }
}

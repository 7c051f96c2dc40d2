//! `benchform show FILE`: render a saved plan.

use crate::Status;
use crate::cli::ShowArgs;
use crate::commands::plan;
use crate::output;

pub fn run(args: &ShowArgs) -> Status {
    match plan::read_file(&args.file) {
        Ok(doc) => {
            plan::print(&doc.plan(), doc.inputs, args.format);
            Status::Success
        }
        Err(e) => {
            output::err_line(&format!("error: {e}\n  = fix: {}", e.fix()));
            Status::Failure
        }
    }
}

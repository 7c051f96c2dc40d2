//! `benchform show FILE`: render a saved plan.

use crate::Status;
use crate::cli::ShowArgs;
use crate::output;
use crate::{plan_file, views};

pub fn run(args: &ShowArgs) -> Status {
    match plan_file::read_saved_plan(&args.file) {
        Ok(doc) => {
            views::plan::print(&doc.plan(), doc.inputs, args.format);
            Status::Success
        }
        Err(e) => {
            output::err_line(&format!("error: {e}\n  = fix: {}", e.fix()));
            Status::Failure
        }
    }
}

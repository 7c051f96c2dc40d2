//! `benchform show FILE`: render a saved plan.

use crate::Status;
use crate::cli::ShowArgs;
use crate::commands::plan::{self, FORMAT_VERSION, PlanDocument};
use crate::output;

pub fn run(args: &ShowArgs) -> Status {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            output::err_line(&format!(
                "error: cannot read {}: {e}\n  = fix: name a plan saved with `benchform plan -o FILE`",
                args.file.display()
            ));
            return Status::Failure;
        }
    };
    let doc: PlanDocument = match serde_json::from_str(&text) {
        Ok(d) => d,
        Err(e) => {
            output::err_line(&format!(
                "error: {} is not a benchform plan ({e})\n  = hint: save one with `benchform plan -o {}`",
                args.file.display(),
                args.file.display()
            ));
            return Status::Failure;
        }
    };
    if doc.format_version != FORMAT_VERSION {
        output::err_line(&format!(
            "error: {} has plan format {}; this benchform reads format {FORMAT_VERSION}\n  = fix: make the plan again with this benchform: `benchform plan -o FILE`",
            args.file.display(),
            doc.format_version
        ));
        return Status::Failure;
    }
    plan::print(&doc.plan(), args.format);
    Status::Success
}

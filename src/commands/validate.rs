//! `benchform validate`

use crate::Status;
use crate::cli::{Format, ValidateArgs};
use crate::shell::Shell;
use crate::{load, render};

pub fn run(shell: &Shell, args: &ValidateArgs) -> Status {
    let (file, diagnostics) = match load::load(args.manifest.file.as_deref()) {
        Ok(loaded) => (loaded.display, loaded.validation.diagnostics),
        Err(diagnostics) => {
            let file = diagnostics.first().map(|d| d.file.clone()).unwrap_or_default();
            (file, diagnostics)
        }
    };
    match args.format {
        Format::Json => shell.out(&render::validation_json(&diagnostics)),
        Format::Text => shell.out(&render::diagnostics_text(&file, &diagnostics)),
    }
    if diagnostics.iter().any(|d| d.is_error()) { Status::Failure } else { Status::Success }
}

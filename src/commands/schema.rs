//! `benchform schema`

use crate::Status;
use crate::cli::{SchemaArgs, SchemaKind};
use crate::shell::Shell;

/// The schema's text exactly as checked in under `schema/` (pretty JSON, trailing newline).
pub fn schema_text(kind: SchemaKind) -> String {
    let plan;
    let schema = match kind {
        SchemaKind::Manifest => benchform_manifest::schema::manifest_schema(),
        SchemaKind::Lock => benchform_manifest::schema::lock_schema(),
        SchemaKind::Plan => {
            plan = schemars::generate::SchemaSettings::draft2020_12()
                .into_generator()
                .into_root_schema_for::<crate::plan_file::PlanDocument>()
                .to_value();
            &plan
        }
        SchemaKind::ApplyEvents => {
            plan = schemars::generate::SchemaSettings::draft2020_12()
                .into_generator()
                .into_root_schema_for::<crate::views::apply::events::Event>()
                .to_value();
            &plan
        }
        SchemaKind::Diff => {
            plan = schemars::generate::SchemaSettings::draft2020_12()
                .into_generator()
                .into_root_schema_for::<crate::views::diff::DiffDocument<'static>>()
                .to_value();
            &plan
        }
    };
    // Invariant: a serde_json::Value always serialises.
    #[allow(clippy::expect_used)]
    let text = serde_json::to_string_pretty(schema).expect("JSON value serialises");
    text + "\n"
}

pub fn run(shell: &Shell, args: &SchemaArgs) -> Status {
    shell.out(&schema_text(args.kind));
    Status::Success
}

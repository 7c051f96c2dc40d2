//! `benchform schema`

use crate::Status;
use crate::cli::{SchemaArgs, SchemaKind};
use crate::shell::Shell;

/// The draft 2020-12 schema of `T`.
fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    schemars::generate::SchemaSettings::draft2020_12().into_generator().into_root_schema_for::<T>().to_value()
}

/// The schema's text exactly as checked in under `schema/` (pretty JSON, trailing newline).
pub fn schema_text(kind: SchemaKind) -> String {
    let schema = match kind {
        SchemaKind::Manifest => benchform_manifest::schema::manifest_schema().clone(),
        SchemaKind::Lock => benchform_manifest::schema::lock_schema().clone(),
        SchemaKind::Plan => schema_of::<crate::plan_file::PlanDocument>(),
        SchemaKind::ApplyEvents => schema_of::<crate::views::apply::events::Event>(),
        SchemaKind::Diff => schema_of::<crate::views::diff::DiffDocument<'static>>(),
        SchemaKind::Status => schema_of::<benchform_core::status::Report>(),
        SchemaKind::Validate => schema_of::<crate::render::ValidationDocument>(),
        SchemaKind::History => schema_of::<Vec<crate::history::Record>>(),
    };
    // Invariant: a serde_json::Value always serialises.
    #[allow(clippy::expect_used)]
    let text = serde_json::to_string_pretty(&schema).expect("JSON value serialises");
    text + "\n"
}

pub fn run(shell: &Shell, args: &SchemaArgs) -> Status {
    shell.out(&schema_text(args.kind));
    Status::Success
}

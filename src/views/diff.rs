//! `benchform diff`: the desired-state changes since a git revision, as text, markdown for pull
//! requests, or the JSON document (`schema/diff.schema.json`).

use benchform_core::diff::{Change, ChangeKind};
use schemars::JsonSchema;
use serde::Serialize;

/// The diff document's format version.
pub const FORMAT_VERSION: u32 = 1;

/// `diff --format json`: the wire form; `schema/diff.schema.json` is generated from it.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "benchform diff")]
pub struct DiffDocument<'a> {
    /// Version of this format; only `1` exists.
    pub format_version: u32,
    /// The git revision compared against.
    pub base: &'a str,
    /// In the order of the manifest: apps, image, sites, policy, deploy.
    pub changes: &'a [Change],
}

fn symbol(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::AppAdded | ChangeKind::SiteAdded | ChangeKind::SiteAppAdded | ChangeKind::ImageRebuilt => '+',
        ChangeKind::AppRemoved | ChangeKind::SiteRemoved | ChangeKind::SiteAppRemoved => '-',
        ChangeKind::AppRepinned
        | ChangeKind::AppRepoChanged
        | ChangeKind::SiteMigrates
        | ChangeKind::PolicyChanged
        | ChangeKind::DeployChanged => '~',
    }
}

pub fn text(base: &str, changes: &[Change]) -> String {
    if changes.is_empty() {
        return format!("No changes to the desired state since {base}.\n");
    }
    let mut out = format!("Desired-state changes since {base}:\n\n");
    for c in changes {
        out.push_str(&format!("  {} {}\n", symbol(c.kind), c.detail));
    }
    let migrating: Vec<&str> =
        changes.iter().filter(|c| c.kind == ChangeKind::SiteMigrates).map(|c| c.subject.as_str()).collect();
    out.push_str(&format!(
        "\n{} change(s); sites that will migrate: {}\n",
        changes.len(),
        if migrating.is_empty() { "none".to_string() } else { migrating.join(", ") }
    ));
    out
}

pub fn markdown(base: &str, changes: &[Change]) -> String {
    let mut out = format!("### benchform diff against `{base}`\n\n");
    if changes.is_empty() {
        out.push_str("**No changes** to the desired state.\n");
        return out;
    }
    let migrating: Vec<String> =
        changes.iter().filter(|c| c.kind == ChangeKind::SiteMigrates).map(|c| format!("`{}`", c.subject)).collect();
    let build = changes.iter().any(|c| c.kind == ChangeKind::ImageRebuilt);
    out.push_str(&format!(
        "**{} change(s)** · image rebuild: **{}** · sites that will migrate: {}\n\n",
        changes.len(),
        if build { "yes" } else { "no" },
        if migrating.is_empty() { "none".to_string() } else { migrating.join(", ") }
    ));
    out.push_str("| | change |\n|---|---|\n");
    for c in changes {
        out.push_str(&format!("| `{}` | {} |\n", symbol(c.kind), c.detail.replace('|', "\\|")));
    }
    out
}

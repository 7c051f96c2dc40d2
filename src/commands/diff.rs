//! `benchform diff --base REV`: the desired-state change since a git revision, offline.

use benchform_core::diff::{self, Change, ChangeKind};
use benchform_manifest::LockFile;
use benchform_manifest::lock::parse_lock;
use serde::Serialize;

use crate::Status;
use crate::cli::{DiffArgs, PlanFormat};
use crate::{load, output, render};
use benchform_manifest::lock::LOCK_FILE;

#[derive(Debug, Serialize)]
struct DiffDocument<'a> {
    format_version: u32,
    base: &'a str,
    changes: &'a [Change],
}

pub fn run(args: &DiffArgs) -> Status {
    let loaded = match load::load(args.manifest.file.as_deref()) {
        Ok(l) => l,
        Err(diagnostics) => return render::fail(&diagnostics),
    };
    let errors: Vec<_> = loaded.validation.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    let Some(head) = loaded.validation.manifest.as_ref().filter(|_| errors.is_empty()) else {
        return render::fail(&errors);
    };
    let lock_path = loaded.dir.join(LOCK_FILE);
    let head_lock = match std::fs::read(&lock_path) {
        Ok(bytes) => match parse_lock(LOCK_FILE, &bytes) {
            Ok(l) => l,
            Err(d) => return render::fail(&d),
        },
        Err(_) => {
            return fail(&format!("no {LOCK_FILE} next to {}", loaded.display), "run `benchform lock` and commit it");
        }
    };
    let manifest_path = std::path::Path::new(&loaded.display);
    let base_bytes = match benchform_git::read_at_revision(manifest_path, &args.base) {
        Ok(b) => b,
        Err(e) => {
            return fail(&e.to_string(), "name a commit, branch or tag of the repository that holds the manifest");
        }
    };
    let base_manifest = match &base_bytes {
        None => None,
        Some(bytes) => {
            let validation = benchform_manifest::validate(&format!("{}@{}", loaded.display, args.base), bytes);
            match validation.manifest {
                Some(m) => Some(m),
                None => {
                    output::err_line(&format!(
                        "error: the manifest at {} has errors; diff compares valid manifests:",
                        args.base
                    ));
                    return render::fail(
                        &validation.diagnostics.into_iter().filter(|d| d.is_error()).collect::<Vec<_>>(),
                    );
                }
            }
        }
    };
    // A base without a lock (the lock came later) compares as one that pins nothing.
    let base_lock = match benchform_git::read_at_revision(&lock_path, &args.base) {
        Ok(Some(bytes)) => match parse_lock(&format!("{LOCK_FILE}@{}", args.base), &bytes) {
            Ok(l) => l,
            Err(d) => return render::fail(&d),
        },
        Ok(None) => LockFile { version: 1, entries: vec![] },
        Err(e) => return fail(&e.to_string(), "check the revision"),
    };
    let changes = diff::diff(base_manifest.as_ref().map(|m| (m, &base_lock)), (head, &head_lock));
    match args.format {
        PlanFormat::Json => {
            output::out(&render::json(&DiffDocument { format_version: 1, base: &args.base, changes: &changes }))
        }
        PlanFormat::Text => output::out(&text(&args.base, &changes)),
        PlanFormat::Markdown => output::out(&markdown(&args.base, &changes)),
    }
    if args.detailed_exitcode && !changes.is_empty() { Status::Changes } else { Status::Success }
}

fn fail(what: &str, fix: &str) -> Status {
    output::err_line(&format!("error: {what}\n  = fix: {fix}"));
    Status::Failure
}

fn symbol(kind: ChangeKind) -> char {
    match kind {
        ChangeKind::AppAdded | ChangeKind::SiteAdded | ChangeKind::SiteAppAdded | ChangeKind::ImageRebuilt => '+',
        ChangeKind::AppRemoved | ChangeKind::SiteRemoved | ChangeKind::SiteAppRemoved => '-',
        _ => '~',
    }
}

fn text(base: &str, changes: &[Change]) -> String {
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

fn markdown(base: &str, changes: &[Change]) -> String {
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

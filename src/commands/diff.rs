//! `benchform diff --base REV`: the desired-state change since a git revision, offline.

use benchform_core::diff;
use benchform_manifest::LockFile;
use benchform_manifest::lock::parse_lock;

use crate::Status;
use crate::cli::{DiffArgs, PlanFormat};
use crate::shell::Shell;
use crate::views::diff::{DiffDocument, FORMAT_VERSION};
use crate::{load, render, views};
use benchform_manifest::lock::LOCK_FILE;

pub fn run(shell: &Shell, args: &DiffArgs) -> Status {
    let loaded = match load::load(args.manifest.file.as_deref()) {
        Ok(l) => l,
        Err(diagnostics) => return render::fail(shell, &diagnostics),
    };
    let errors: Vec<_> = loaded.validation.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    let Some(head) = loaded.validation.manifest.as_ref().filter(|_| errors.is_empty()) else {
        return render::fail(shell, &errors);
    };
    let lock_path = loaded.dir.join(LOCK_FILE);
    let head_lock = match std::fs::read(&lock_path) {
        Ok(bytes) => match parse_lock(LOCK_FILE, &bytes) {
            Ok(l) => l,
            Err(d) => return render::fail(shell, &d),
        },
        Err(_) => {
            return shell
                .error(&format!("no {LOCK_FILE} next to {}", loaded.display), "run `benchform lock` and commit it");
        }
    };
    let manifest_path = std::path::Path::new(&loaded.display);
    let base_bytes = match benchform_git::read_at_revision(manifest_path, &args.base) {
        Ok(b) => b,
        Err(e) => {
            return shell
                .error(&e.to_string(), "name a commit, branch or tag of the repository that holds the manifest");
        }
    };
    let base_manifest = match &base_bytes {
        None => None,
        Some(bytes) => {
            let validation = benchform_manifest::validate(&format!("{}@{}", loaded.display, args.base), bytes);
            match validation.manifest {
                Some(m) => Some(m),
                None => {
                    shell.err_line(&format!(
                        "error: the manifest at {} has errors; diff compares valid manifests:",
                        args.base
                    ));
                    return render::fail(
                        shell,
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
            Err(d) => return render::fail(shell, &d),
        },
        Ok(None) => LockFile { version: 1, entries: vec![] },
        Err(e) => return shell.error(&e.to_string(), "check the revision"),
    };
    let changes = diff::diff(base_manifest.as_ref().map(|m| (m, &base_lock)), (head, &head_lock));
    match args.format {
        PlanFormat::Json => shell.out(&render::json(&DiffDocument {
            format_version: FORMAT_VERSION,
            base: &args.base,
            changes: &changes,
        })),
        PlanFormat::Text => shell.out(&views::diff::text(&args.base, &changes)),
        PlanFormat::Markdown => shell.out(&views::diff::markdown(&args.base, &changes)),
    }
    if args.detailed_exitcode && !changes.is_empty() { Status::Changes } else { Status::Success }
}

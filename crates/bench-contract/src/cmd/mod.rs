//! The frappe commands (`bench --site S <command> …`) and what they share:
//! site selection, app installation, the versions table and patches.
//!
//! Real bench `execv`s these into `python -m frappe.utils.bench_helper frappe
//! …` inside `sites/`, so exit codes and messages are frappe's. Each
//! submodule cites the frappe function it mirrors; behaviour that differs
//! between v15 and v16 follows the major version of `apps/frappe/VERSION`
//! (see [`Bench::frappe_major`]).

pub mod backup;
pub mod config;
pub mod migrate;
pub mod site;

use serde_json::Value;

use crate::bench::Bench;
use crate::db::{Db, VersionRow};
use crate::out::{Fail, Res, flush, progress, traceback_text};

/// The global options before the command (`bench --site S --force cmd`).
#[derive(Debug)]
pub struct Ctx {
    pub bench: Bench,
    pub site_arg: Option<String>,
    /// `bench --force cmd`: frappe passes it to commands as `context.force`.
    pub force: bool,
}

impl Ctx {
    /// `context.sites` (frappe's `bench_helper.get_sites`): `all` → every
    /// site; else `--site`, `$FRAPPE_SITE`, `default_site` from
    /// common_site_config.json, `sites/currentsite.txt`; else none.
    pub fn sites(&self) -> Vec<String> {
        if let Some(s) = self.site_arg.as_deref() {
            return if s == "all" { self.bench.list_sites() } else { vec![s.to_owned()] };
        }
        if let Some(s) = std::env::var("FRAPPE_SITE").ok().filter(|s| !s.is_empty()) {
            return vec![s];
        }
        if let Some(s) =
            self.bench.common_config().get("default_site").and_then(Value::as_str).filter(|s| !s.is_empty())
        {
            return vec![s.to_owned()];
        }
        let current = std::fs::read_to_string(self.bench.sites().join("currentsite.txt")).unwrap_or_default();
        let current = current.trim();
        if current.is_empty() { Vec::new() } else { vec![current.to_owned()] }
    }

    /// `get_site(context)`: the first site, else `SiteNotSpecifiedError`.
    pub fn get_site(&self) -> Res<String> {
        self.sites().into_iter().next().ok_or_else(site_not_specified)
    }

    /// `frappe.init(site)` under `pass_context`: a site without a
    /// site_config.json is `Site S does not exist!`, exit 1.
    pub fn check_site(&self, site: &str) -> Res<()> {
        if self.bench.site_exists(site) {
            Ok(())
        } else {
            println!("Site {site} does not exist!");
            Err(Fail(1))
        }
    }

    pub fn connect(&self, site: &str) -> Res<Db> {
        self.check_site(site)?;
        Db::connect(&self.bench, site)
    }
}

/// `SiteNotSpecifiedError` as `pass_context` reports it.
pub fn site_not_specified() -> Fail {
    println!("Please specify --site sitename");
    Fail(1)
}

/// What went wrong installing one app (`frappe.installer.install_app`).
#[derive(Debug)]
pub enum InstallError {
    /// `ModuleNotFoundError: No module named 'app'` (not in the image).
    NoModule(String),
    /// `Exception: App app not in apps.txt` (stale volume apps.txt).
    NotInAppsTxt(String),
    /// The fixture's own I/O failed; already reported.
    Failed(Fail),
}

impl InstallError {
    /// The exception line and a traceback, for callers that report it.
    pub fn exception(&self) -> (String, String) {
        let (msg, exc) = match self {
            InstallError::NoModule(app) => {
                (format!("No module named '{app}'"), format!("ModuleNotFoundError: No module named '{app}'"))
            }
            InstallError::NotInAppsTxt(app) => {
                (format!("App {app} not in apps.txt"), format!("Exception: App {app} not in apps.txt"))
            }
            InstallError::Failed(_) => ("internal error".to_owned(), "OSError: internal error".to_owned()),
        };
        let tb = traceback_text(
            &[(
                "/home/frappe/frappe-bench/apps/frappe/frappe/installer.py",
                253,
                "install_app",
                "app_hooks = frappe.get_hooks(app_name=name)",
            )],
            &exc,
        );
        (msg, tb)
    }
}

/// `frappe.get_hooks(app_name=app)`: prints frappe's "Could not find app"
/// and fails when the app is not importable (not in the image).
pub fn load_hooks(bench: &Bench, app: &str) -> Result<(), InstallError> {
    if bench.in_image(app) {
        Ok(())
    } else {
        println!("Could not find app \"{app}\": \nNo module named '{app}'");
        Err(InstallError::NoModule(app.to_owned()))
    }
}

/// Installs one app on a site, in frappe's order: hooks (importable?), then
/// `apps.txt`, then "already installed" (exit 0 unless `force`). Marks the
/// app's current patches as run (`set_as_patched`), like a fresh install.
/// Returns whether anything was installed.
pub fn install_app(bench: &Bench, db: &Db, app: &str, set_as_patched: bool, force: bool) -> Result<bool, InstallError> {
    load_hooks(bench, app)?;
    let all_apps = bench.all_apps().map_err(InstallError::Failed)?;
    if !all_apps.iter().any(|a| a == app) {
        return Err(InstallError::NotInAppsTxt(app.to_owned()));
    }
    let mut installed = db.installed_apps().map_err(InstallError::Failed)?;
    if !force && installed.iter().any(|a| a == app) {
        println!("App {app} already installed");
        return Ok(false);
    }
    println!("\nInstalling {app}...");
    progress(&format!("Updating DocTypes for {app}"), 4);
    if !installed.iter().any(|a| a == app) {
        installed.push(app.to_owned());
        db.set_installed_apps(&installed).map_err(InstallError::Failed)?;
    }
    if set_as_patched {
        let executed = db.executed_patches().map_err(InstallError::Failed)?;
        // `set_all_patches_as_completed`: every entry as written (a `finally:` one with its
        // prefix, which `run_all` then finds in the log: it never runs, as in Frappe).
        for patch in patches(bench, app).unwrap_or_default().iter().map(|(p, _)| p) {
            if !executed.contains(patch) {
                db.log_patch(patch, false).map_err(InstallError::Failed)?;
            }
        }
    }
    // develop/v16 refreshes the versions table on install; v15 only on
    // migrate and uninstall, which is why list-apps goes stale (frappe#13323).
    if bench.frappe_major() >= 16 {
        refresh_versions(bench, db).map_err(InstallError::Failed)?;
    }
    flush();
    Ok(true)
}

/// `Installed Applications.update_versions()`: one row per installed app that
/// is on the bench (in apps.txt), with the image's version. Images have no
/// `.git`, so `get_app_branch` is empty and the branch is `UNVERSIONED`.
pub fn refresh_versions(bench: &Bench, db: &Db) -> Res<()> {
    let on_bench = bench.all_apps().unwrap_or_default();
    let rows: Vec<VersionRow> = db
        .installed_apps()?
        .into_iter()
        .filter(|a| on_bench.contains(a))
        .map(|app| VersionRow {
            app_version: bench.app_version(&app),
            git_branch: "UNVERSIONED".to_owned(),
            app_name: app,
        })
        .collect();
    db.set_versions(&rows)
}

/// When a patch runs relative to the schema sync (patches.txt sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    PreModelSync,
    PostModelSync,
}

/// An app's `patches.txt` in the image (`apps/<app>/<app>/patches.txt`), read as
/// `frappe.modules.patch_handler` reads it: with a `[section]` header first it is an INI file
/// (Python's `configparser`: `#`/`;` comment lines, keys kept as written) whose
/// `[pre_model_sync]` and `[post_model_sync]` entries run before and after the schema sync;
/// without one, every line that is not blank and does not start with `#` runs before it. No file:
/// no patches. `Err` is the exception Frappe raises in `migrate` (a missing section).
pub fn patches(bench: &Bench, app: &str) -> Result<Vec<(String, Phase)>, String> {
    let path = bench.apps_dir().join(app).join(app).join("patches.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let is_comment = |l: &str| l.starts_with('#') || l.starts_with(';');
    // configparser's section pattern, matched at the start: `[`, then up to the last `]`.
    let is_header = |l: &str| l.starts_with('[') && l.rfind(']').is_some_and(|i| i > 1);
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !is_comment(l));
    match first {
        None => return Ok(Vec::new()),
        Some(l) if !is_header(l) => {
            return Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|l| (l.trim().to_owned(), Phase::PreModelSync))
                .collect());
        }
        Some(_) => {}
    }
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !is_comment(l)) {
        if is_header(line) {
            let close = line.rfind(']').unwrap_or(line.len());
            sections.push((line[1..close].to_owned(), Vec::new()));
        } else if let Some((_, entries)) = sections.last_mut() {
            entries.push(line.to_owned());
        }
    }
    let mut out = Vec::new();
    for (phase, name) in [(Phase::PreModelSync, "pre_model_sync"), (Phase::PostModelSync, "post_model_sync")] {
        let Some((_, entries)) = sections.iter().find(|(s, _)| s == name) else {
            return Err(format!("frappe.exceptions.ValidationError: Patch type {name} not found in patches.txt"));
        };
        out.extend(entries.iter().map(|e| (e.clone(), phase)));
    }
    Ok(out)
}

/// The name a patch is logged under (`finally:` patches without the prefix).
pub fn logged_name(patch: &str) -> &str {
    patch.strip_prefix("finally:").unwrap_or(patch)
}

//! What `bench migrate` will run on a site, known before it runs: each installed app's
//! `patches.txt` in the new code, read the way Frappe's patch handler reads it, minus the rows of
//! the site's `Patch Log` that ran (frappe-contract §5–6); and how many DocTypes change schema.
//!
//! The preview informs, it never decides: a site migrates when its fingerprint says so, whatever
//! its preview holds (a schema sync, fixtures and customizations run without any patch).
//!
//! How Frappe reads `patches.txt` (`frappe/modules/patch_handler.py`):
//! - with section headers it is an INI file (Python's `configparser`, no values, case kept):
//!   `[pre_model_sync]` entries run before the DocType schema sync, `[post_model_sync]` entries
//!   after it; both sections must exist (migrate fails otherwise), an entry twice fails too;
//!   lines starting with `#` or `;` (after spaces) are comments;
//! - without a header (the old format) every line that is not blank and does not start with `#`
//!   is a patch, all before the sync;
//! - a file that holds no section and no entry, or no file, is no patch;
//! - a patch runs when no `Patch Log` row with `skipped = 0` has its exact text (a trailing
//!   `#comment` is part of it: that is how an app re-runs a patch); `finally:` entries run at the
//!   end of their phase and are logged without the prefix.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, StepKind};
use crate::status::Observed;

/// When a patch runs relative to the DocType schema sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatchPhase {
    PreModelSync,
    PostModelSync,
}

impl PatchPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PatchPhase::PreModelSync => "pre_model_sync",
            PatchPhase::PostModelSync => "post_model_sync",
        }
    }
}

/// An app's `patches.txt`, in run order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PatchesFile {
    pub entries: Vec<(PatchPhase, String)>,
}

/// Read `patches.txt` as Frappe does; `Err` says why `bench migrate` would fail on it.
pub fn parse_patches_txt(text: &str) -> Result<PatchesFile, String> {
    let comment = |l: &str| l.starts_with('#') || l.starts_with(';');
    // configparser's `\[(?P<header>.+)\]` matched at the line's start: up to its last `]`.
    let header = |l: &str| -> Option<String> {
        let close = l.rfind(']')?;
        (l.starts_with('[') && close > 1).then(|| l[1..close].to_string())
    };
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !comment(l));
    let Some(first) = first else { return Ok(PatchesFile::default()) };
    if header(first).is_none() {
        // The old format: `frappe.get_file_items`, which only skips lines starting with `#`.
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| (PatchPhase::PreModelSync, l.trim().to_string()))
            .collect();
        return Ok(PatchesFile { entries });
    }
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || comment(l) {
            continue;
        }
        if let Some(name) = header(l) {
            if sections.contains_key(&name) {
                return Err(format!("section [{name}] appears twice (line {})", n + 1));
            }
            sections.insert(name.clone(), Vec::new());
            current = Some(name);
            continue;
        }
        // `current` is set: the first line that is neither blank nor a comment is a header.
        let Some(section) = current.as_ref().and_then(|c| sections.get_mut(c)) else { continue };
        if section.iter().any(|p| p == l) {
            return Err(format!("{l:?} appears twice in one section (line {})", n + 1));
        }
        section.push(l.to_string());
    }
    let mut entries = Vec::new();
    for phase in [PatchPhase::PreModelSync, PatchPhase::PostModelSync] {
        let Some(patches) = sections.get(phase.as_str()) else {
            return Err(format!("it has sections but no [{}]: Frappe's migrate fails on it", phase.as_str()));
        };
        entries.extend(patches.iter().map(|p| (phase, p.clone())));
    }
    Ok(PatchesFile { entries })
}

/// The name a patch is logged under.
fn logged_name(entry: &str) -> &str {
    entry.strip_prefix("finally:").unwrap_or(entry)
}

/// One patch migrate will run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingPatch {
    pub app: String,
    pub phase: PatchPhase,
    /// The line of `patches.txt`, as Frappe logs it.
    pub patch: String,
}

/// What a `migrate` step will run on its site, as far as can be known before it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Preview {
    /// The patches that will run, in run order (frappe first, then the site's apps in install
    /// order; in each app pre-model-sync, then post-model-sync); `null` when that cannot be known
    /// (see `unknown`), never a guess. Empty: no patch runs (the migrate still syncs schema).
    pub patches: Option<Vec<PendingPatch>>,
    /// DocTypes whose definition (`<app>/<module>/doctype/<name>/<name>.json`) differs between
    /// the code the site last migrated to and the new code; `null` when the old code is not known.
    pub doctypes_changed: Option<u32>,
    /// Where the new code was read.
    pub source: String,
    /// Why `patches` or `doctypes_changed` is unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
}

/// Everything a site's preview is made of, gathered by the shell.
#[derive(Debug, Clone, Default)]
pub struct PreviewInputs {
    /// Where the new code was read (`Preview::source`).
    pub source: String,
    /// Each app's `patches.txt` in the new code (`Ok(None)`: the app has none), or why it could
    /// not be read.
    pub code: BTreeMap<String, Result<Option<PatchesFile>, String>>,
    /// Per site: the patches its `Patch Log` holds as run, or why it could not be read.
    pub logs: BTreeMap<String, Result<BTreeSet<String>, String>>,
    /// Per (app, commit the site last migrated at): how many DocTypes change on the way to the
    /// new code, or why that is unknown.
    pub doctypes: BTreeMap<(String, String), Result<u32, String>>,
}

/// One site's preview. `apps` are the apps installed when migrate runs and whose patches can
/// run: installed before the plan and not uninstalled by it (an app installed by the plan has
/// its patches marked as run by `install-app`). `old` is the commit of each app the site last
/// migrated at (benchform's record), `new` the new code's.
pub fn preview(
    site: &str,
    apps: &[String],
    old: Option<&BTreeMap<String, String>>,
    new: &BTreeMap<String, String>,
    inputs: &PreviewInputs,
) -> Preview {
    let mut unknown = Vec::new();
    let patches = (|| {
        let log = match inputs.logs.get(site) {
            Some(Ok(log)) => log,
            Some(Err(why)) => {
                unknown.push(format!("the site's Patch Log: {why}"));
                return None;
            }
            None => {
                unknown.push("the site's Patch Log was not read".to_string());
                return None;
            }
        };
        let mut files = Vec::new();
        let mut known = true;
        for app in apps {
            match inputs.code.get(app) {
                Some(Ok(Some(file))) => files.push((app, file)),
                Some(Ok(None)) => {}
                Some(Err(why)) => {
                    unknown.push(format!("{app}'s patches.txt: {why}"));
                    known = false;
                }
                None => {
                    unknown.push(format!("{app}'s patches.txt was not read (the repositories took too long?)"));
                    known = false;
                }
            }
        }
        if !known {
            return None;
        }
        // `run_all` per phase: every app's entries of the phase in app order, `finally:` ones at
        // the end of it; an entry runs unless the log holds its text or, logged without the
        // prefix, its name (`install-app` logs `finally:` entries as written: they never run).
        let mut out: Vec<PendingPatch> = Vec::new();
        let mut ran: BTreeSet<String> = BTreeSet::new();
        for phase in [PatchPhase::PreModelSync, PatchPhase::PostModelSync] {
            let mut last = Vec::new();
            for (app, file) in &files {
                for (_, entry) in file.entries.iter().filter(|(p, _)| *p == phase) {
                    let pending = PendingPatch { app: (*app).clone(), phase, patch: entry.clone() };
                    if entry.starts_with("finally:") { last.push(pending) } else { out.push(pending) }
                }
            }
            out.extend(last);
        }
        out.retain(|p| {
            let name = logged_name(&p.patch);
            !log.contains(&p.patch) && !log.contains(name) && ran.insert(name.to_string())
        });
        Some(out)
    })();
    let doctypes = (|| {
        let Some(old) = old else {
            unknown.push("DocTypes changed: benchform has no record of the code the site last migrated to".to_string());
            return None;
        };
        let mut total = 0u32;
        for app in apps {
            let (Some(from), Some(to)) = (old.get(app), new.get(app)) else {
                unknown.push(format!("DocTypes changed: the code of {app} the site last migrated to is not recorded"));
                return None;
            };
            if from == to {
                continue;
            }
            match inputs.doctypes.get(&(app.clone(), from.clone())) {
                Some(Ok(n)) => total += n,
                Some(Err(why)) => {
                    unknown.push(format!("DocTypes changed in {app}: {why}"));
                    return None;
                }
                None => {
                    unknown.push(format!("DocTypes changed in {app}: its old code was not read"));
                    return None;
                }
            }
        }
        Some(total)
    })();
    Preview { patches, doctypes_changed: doctypes, source: inputs.source.clone(), unknown }
}

/// A site whose `migrate` step wants a preview: the apps whose patches can run there and the
/// code it last migrated to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewRequest {
    pub site: String,
    pub step: usize,
    pub apps: Vec<String>,
    /// The commit of each app the site last migrated at (benchform's record).
    pub old: Option<BTreeMap<String, String>>,
    /// The manifest ref of each app at that migrate (to fetch the old commit by).
    pub old_refs: Option<BTreeMap<String, String>>,
    /// The plan restores the site from a backup before it migrates (a rollback): its Patch Log
    /// and code then are the backup's, which this plan cannot read.
    pub restored_first: bool,
}

/// The previews `plan` needs: one per `migrate` step, for the apps installed on its site before
/// the plan and not uninstalled by it.
pub fn requests(plan: &Plan, observed: &Observed) -> Vec<PreviewRequest> {
    let mut out = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let (StepKind::Migrate, Some(site)) = (step.kind, step.site.as_deref()) else { continue };
        let Some(o) = observed.sites.iter().find(|o| o.name == site) else { continue };
        let uninstalled: BTreeSet<&str> = plan
            .steps
            .iter()
            .filter(|s| s.kind == StepKind::UninstallApp && s.site.as_deref() == Some(site))
            .filter_map(|s| s.app.as_deref())
            .collect();
        let apps = o.installed.iter().filter(|a| !uninstalled.contains(a.as_str())).cloned().collect();
        out.push(PreviewRequest {
            site: site.to_string(),
            step: i,
            apps,
            old: o.record.as_ref().map(|r| r.commits.clone()),
            old_refs: o.record.as_ref().map(|r| r.refs.clone()),
            restored_first: plan.steps.iter().any(|s| s.kind == StepKind::Restore && s.site.as_deref() == Some(site)),
        });
    }
    out
}

/// Put each request's preview on its `migrate` step; `new` is the new code's commit per app.
pub fn attach(plan: &mut Plan, requests: &[PreviewRequest], new: &BTreeMap<String, String>, inputs: &PreviewInputs) {
    for r in requests {
        let Some(step) = plan.steps.get_mut(r.step) else { continue };
        step.preview = Some(if r.restored_first {
            Preview {
                patches: None,
                doctypes_changed: None,
                source: inputs.source.clone(),
                unknown: vec![
                    "the site is restored from a backup first: what migrate runs then depends on the backup's Patch \
                     Log, which the plan does not read"
                        .to_string(),
                ],
            }
        } else {
            preview(&r.site, &r.apps, r.old.as_ref(), new, inputs)
        });
    }
}

/// Whether a path of an app's repository is a DocType definition: `<app>/<module>/doctype/<name>/<name>.json`.
pub fn is_doctype_definition(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [_, _, "doctype", name, file] => file.strip_suffix(".json") == Some(name),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(f: &PatchesFile) -> Vec<(PatchPhase, &str)> {
        f.entries.iter().map(|(p, n)| (*p, n.as_str())).collect()
    }

    #[test]
    fn patches_txt_is_read_as_frappe_reads_it() {
        use PatchPhase::*;
        let sectioned = "# leading comment\n[pre_model_sync]\napp.patches.v1.a\n  ; indented comment\n\
                         execute:frappe.db.set_value('X', None, 'y', 1) #2024-01-02\n\n[post_model_sync]\n\
                         app.patches.v1.b #rerun\nfinally:app.patches.v1.c\n";
        assert_eq!(
            names(&parse_patches_txt(sectioned).unwrap()),
            vec![
                (PreModelSync, "app.patches.v1.a"),
                (PreModelSync, "execute:frappe.db.set_value('X', None, 'y', 1) #2024-01-02"),
                (PostModelSync, "app.patches.v1.b #rerun"),
                (PostModelSync, "finally:app.patches.v1.c"),
            ]
        );
        // The old format: every line before the sync; `;` is no comment there, `#` only at the start.
        let old = "app.patches.a\n# comment\n\n;odd\n   app.patches.b  \n";
        assert_eq!(
            names(&parse_patches_txt(old).unwrap()),
            vec![(PreModelSync, "app.patches.a"), (PreModelSync, ";odd"), (PreModelSync, "app.patches.b")]
        );
        assert_eq!(parse_patches_txt("").unwrap(), PatchesFile::default());
        assert_eq!(parse_patches_txt("# nothing yet\n; really\n").unwrap(), PatchesFile::default());
        // What makes Frappe's migrate fail is said, not guessed around.
        assert!(parse_patches_txt("[pre_model_sync]\na\n").unwrap_err().contains("no [post_model_sync]"));
        // A header is `[` up to the line's last `]`, whatever follows it.
        assert_eq!(
            names(&parse_patches_txt("[pre_model_sync] ; before\na\n[post_model_sync]\nb\n").unwrap()),
            vec![(PreModelSync, "a"), (PostModelSync, "b")]
        );
        assert!(parse_patches_txt("[pre_model_sync]\na\na\n[post_model_sync]\n").unwrap_err().contains("twice"));
        assert!(
            parse_patches_txt("[pre_model_sync]\n[post_model_sync]\n[pre_model_sync]\n").unwrap_err().contains("twice")
        );
    }

    #[test]
    fn a_preview_is_the_new_code_minus_the_log_or_says_why_not() {
        let file = |t: &str| Ok(Some(parse_patches_txt(t).unwrap()));
        let mut inputs = PreviewInputs { source: "repositories".into(), ..Default::default() };
        inputs
            .code
            .insert("frappe".into(), file("[pre_model_sync]\nfrappe.p1\n[post_model_sync]\nfinally:frappe.p2\n"));
        inputs.code.insert("erpnext".into(), file("erpnext.p1\nfrappe.p1\n"));
        inputs.code.insert("hrms".into(), Ok(None));
        inputs.logs.insert("a".into(), Ok(["frappe.p1".to_string()].into()));
        inputs.logs.insert("b".into(), Ok(["frappe.p2".to_string(), "erpnext.p1".to_string()].into()));
        inputs.logs.insert("c".into(), Err("Access denied".into()));
        inputs.doctypes.insert(("erpnext".into(), "e0".into()), Ok(3));
        let apps: Vec<String> = ["frappe", "erpnext", "hrms"].map(String::from).to_vec();
        let new: BTreeMap<String, String> =
            [("frappe", "f1"), ("erpnext", "e1"), ("hrms", "h1")].map(|(a, c)| (a.into(), c.into())).into();
        let old: BTreeMap<String, String> =
            [("frappe", "f1"), ("erpnext", "e0"), ("hrms", "h1")].map(|(a, c)| (a.into(), c.into())).into();

        let a = preview("a", &apps, Some(&old), &new, &inputs);
        let listed: Vec<(&str, &str)> =
            a.patches.as_ref().unwrap().iter().map(|p| (p.app.as_str(), p.patch.as_str())).collect();
        // Phase by phase (erpnext's old-format entries run before the sync, frappe's `finally:`
        // one after it); a patch logged once runs once, whichever app lists it.
        assert_eq!(listed, vec![("erpnext", "erpnext.p1"), ("frappe", "finally:frappe.p2")]);
        // `install-app` logs a `finally:` entry as written: Frappe never runs it.
        let mut installed = inputs.clone();
        installed.logs.insert("a".into(), Ok(["frappe.p1".to_string(), "finally:frappe.p2".to_string()].into()));
        let names: Vec<String> =
            preview("a", &apps, Some(&old), &new, &installed).patches.unwrap().into_iter().map(|p| p.patch).collect();
        assert_eq!(names, ["erpnext.p1"]);
        assert_eq!(a.doctypes_changed, Some(3));
        assert!(a.unknown.is_empty(), "{:?}", a.unknown);

        let b = preview("b", &apps, None, &new, &inputs);
        // frappe.p1 is listed by frappe and by erpnext: it runs once, as frappe's.
        let b_patches: Vec<(String, String)> = b.patches.unwrap().into_iter().map(|p| (p.app, p.patch)).collect();
        assert_eq!(b_patches, [("frappe".to_string(), "frappe.p1".to_string())]);
        assert_eq!(b.doctypes_changed, None);
        assert!(b.unknown[0].contains("no record"), "{:?}", b.unknown);

        let c = preview("c", &apps, Some(&old), &new, &inputs);
        assert_eq!(c.patches, None);
        assert!(c.unknown[0].contains("Access denied"), "{:?}", c.unknown);

        let mut broken = inputs.clone();
        broken.code.insert("erpnext".into(), Err("authentication refused".into()));
        broken.doctypes.insert(("erpnext".into(), "e0".into()), Err("commit e0 is gone".into()));
        let d = preview("a", &apps, Some(&old), &new, &broken);
        assert_eq!((d.patches, d.doctypes_changed), (None, None));
        assert_eq!(d.unknown.len(), 2, "{:?}", d.unknown);
    }

    #[test]
    fn doctype_definitions_are_told_from_other_json() {
        assert!(is_doctype_definition("erpnext/accounts/doctype/sales_invoice/sales_invoice.json"));
        assert!(!is_doctype_definition("erpnext/accounts/doctype/sales_invoice/sales_invoice.py"));
        assert!(!is_doctype_definition("erpnext/accounts/report/ar/ar.json"));
        assert!(!is_doctype_definition("erpnext/accounts/doctype/sales_invoice/other.json"));
        assert!(!is_doctype_definition("erpnext/patches.txt"));
    }
}

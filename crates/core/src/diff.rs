//! The desired-state change between two revisions of a manifest and its lock: what a pull request
//! asks for, computed with no engine, registry or secret (`benchform diff --base REV`).

use std::collections::{BTreeMap, BTreeSet};

use benchform_manifest::{LockFile, Manifest};
use schemars::JsonSchema;
use serde::Serialize;

use crate::record::fingerprint;

/// One change, machine-readable and with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Change {
    pub kind: ChangeKind,
    /// The app, site or policy field concerned.
    pub subject: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    AppAdded,
    AppRemoved,
    AppRepinned,
    AppRepoChanged,
    ImageRebuilt,
    SiteAdded,
    SiteRemoved,
    SiteAppAdded,
    SiteAppRemoved,
    SiteMigrates,
    PolicyChanged,
    DeployChanged,
}

/// What changed between `base` (None: nothing there yet) and `head`.
pub fn diff(base: Option<(&Manifest, &LockFile)>, head: (&Manifest, &LockFile)) -> Vec<Change> {
    let mut out = Vec::new();
    let (hm, hl) = head;
    let change = |kind, subject: &str, detail: String| Change { kind, subject: subject.to_string(), detail };
    let Some((bm, bl)) = base else {
        out.push(change(ChangeKind::ImageRebuilt, "image", "a first image will be built".to_string()));
        for s in &hm.sites {
            out.push(change(ChangeKind::SiteAdded, &s.name, format!("site {} will be created", s.name)));
        }
        return out;
    };

    // Sources: frappe and apps.
    let commit = |l: &LockFile, n: &str| l.entry(n).map(|e| e.commit.clone()).unwrap_or_default();
    let short = |c: &str| c.get(..12).unwrap_or(c).to_string();
    let base_sources: BTreeMap<String, (String, String)> =
        bm.sources().iter().map(|s| (s.name.to_string(), (s.repo.to_string(), s.git_ref.to_string()))).collect();
    for s in hm.sources() {
        match base_sources.get(s.name) {
            None => out.push(change(
                ChangeKind::AppAdded,
                s.name,
                format!("{} {} ({}) joins the image", s.name, s.git_ref, short(&commit(hl, s.name))),
            )),
            Some((repo, git_ref)) => {
                if repo != s.repo {
                    out.push(change(
                        ChangeKind::AppRepoChanged,
                        s.name,
                        format!("{} now comes from {} (was {repo})", s.name, s.repo),
                    ));
                }
                let (old, new) = (commit(bl, s.name), commit(hl, s.name));
                if git_ref != s.git_ref || old != new {
                    out.push(change(
                        ChangeKind::AppRepinned,
                        s.name,
                        format!("{} {git_ref} → {} ({} → {})", s.name, s.git_ref, short(&old), short(&new)),
                    ));
                }
            }
        }
    }
    for name in base_sources.keys().filter(|n| !hm.sources().iter().any(|s| s.name == n.as_str())) {
        out.push(change(ChangeKind::AppRemoved, name, format!("{name} leaves the image")));
    }

    // The image: everything the tag hashes that a manifest and lock can show.
    let inputs = |m: &Manifest, l: &LockFile| {
        (
            m.sources().iter().map(|s| (s.name.to_string(), s.repo.to_string(), commit(l, s.name))).collect::<Vec<_>>(),
            m.image.clone(),
        )
    };
    if inputs(bm, bl) != inputs(hm, hl) {
        let why = if bm.image != hm.image {
            "the image settings or locked commits changed"
        } else {
            "locked commits or the app list changed"
        };
        out.push(change(ChangeKind::ImageRebuilt, "image", format!("a new image will be built: {why}")));
    }

    // Sites.
    let site_commits = |m: &Manifest, l: &LockFile, apps: &[String]| -> BTreeMap<String, String> {
        std::iter::once("frappe".to_string())
            .chain(m.apps.iter().filter(|a| apps.contains(&a.name)).map(|a| a.name.clone()))
            .map(|a| {
                let c = commit(l, &a);
                (a, c)
            })
            .collect()
    };
    let base_sites: BTreeMap<&str, &Vec<String>> = bm.sites.iter().map(|s| (s.name.as_str(), &s.apps)).collect();
    for s in &hm.sites {
        match base_sites.get(s.name.as_str()) {
            None => out.push(change(
                ChangeKind::SiteAdded,
                &s.name,
                format!("site {} will be created with {}", s.name, list(&s.apps)),
            )),
            Some(old_apps) => {
                let old: BTreeSet<&String> = old_apps.iter().collect();
                let new: BTreeSet<&String> = s.apps.iter().collect();
                for app in new.difference(&old) {
                    out.push(change(
                        ChangeKind::SiteAppAdded,
                        &s.name,
                        format!("{app} will be installed on {}", s.name),
                    ));
                }
                for app in old.difference(&new) {
                    out.push(change(
                        ChangeKind::SiteAppRemoved,
                        &s.name,
                        format!("{app} will be removed from {}", s.name),
                    ));
                }
                let (before, after) = (site_commits(bm, bl, old_apps), site_commits(hm, hl, &s.apps));
                if fingerprint(&before) != fingerprint(&after) {
                    let mut why: Vec<String> = after
                        .iter()
                        .filter(|(a, c)| before.get(*a).is_some_and(|b| b != *c))
                        .map(|(a, _)| format!("{a} changes"))
                        .collect();
                    why.extend(new.difference(&old).map(|a| format!("gains {a}")));
                    why.extend(old.difference(&new).map(|a| format!("loses {a}")));
                    out.push(change(
                        ChangeKind::SiteMigrates,
                        &s.name,
                        format!("{} will migrate ({})", s.name, why.join(", ")),
                    ));
                }
            }
        }
    }
    for name in base_sites.keys().filter(|n| !hm.sites.iter().any(|s| s.name == **n)) {
        out.push(change(
            ChangeKind::SiteRemoved,
            name,
            format!("site {name} leaves the manifest (benchform will leave it alone, not drop it)"),
        ));
    }

    // Policy and deployment settings.
    let policy = |m: &Manifest| {
        BTreeMap::from([
            ("policy.immutable_refs", m.policy.immutable_refs.to_string()),
            ("policy.allow_uninstall", m.policy.allow_uninstall.to_string()),
            ("policy.on_migrate_failure", format!("{:?}", m.policy.on_migrate_failure).to_lowercase()),
            ("backups.dir", m.backups.dir.clone()),
            ("backups.keep", m.backups.keep.to_string()),
            ("rollout.canary", format!("[{}]", m.rollout.canary.join(", "))),
            ("rollout.smoke", format!("[{}]", m.rollout.smoke.join(" "))),
        ])
    };
    let (pb, ph) = (policy(bm), policy(hm));
    for (field, old) in &pb {
        let new = &ph[field];
        if old != new {
            out.push(change(ChangeKind::PolicyChanged, field, format!("{field}: {old} → {new}")));
        }
    }
    if bm.deploy != hm.deploy || bm.project != hm.project {
        out.push(change(
            ChangeKind::DeployChanged,
            "deploy",
            "the compose deployment settings changed: services may be recreated".to_string(),
        ));
    }
    out
}

fn list(apps: &[String]) -> String {
    if apps.is_empty() { "frappe only".to_string() } else { apps.join(", ") }
}

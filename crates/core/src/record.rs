//! benchform's per-site record, kept in the site's own `site_config.json` under the key
//! `benchform` (written with `bench --site S set-config -p benchform "<literal>"`), so that it
//! lives and dies with the site and is read back in the same exec that lists sites.
//!
//! ```json
//! "benchform": {
//!   "version": 1,
//!   "project": "erpnext-prod",
//!   "fingerprint": "9c1d…",            // of the commits below
//!   "commits": {"frappe": "…", "erpnext": "…"},
//!   "refs": {"frappe": "v15.88.1", "erpnext": "v15.88.1"},   // to refuse downgrades
//!   "image": "registry.example.com/acme/erpnext:bf1-…",
//!   "image_digest": "sha256:…",        // when known
//!   "undeclared": ["acme_tools"],      // installed by hand: tracked, never uninstalled
//!   "migrated_at": "2026-11-27T18:00:00Z"
//! }
//! ```
//!
//! The **fingerprint** of a site is SHA-256 over `name\0commit\n` for frappe and each app
//! installed on the site (declared in the manifest or installed by hand, as long as the image
//! holds it), sorted by name: what code the site's schema was last migrated to. Records written
//! before hand-installed apps were tracked lack them; such an app's code counts as unknown and
//! migrates the site only when the image changes (see `Desired::code_reasons`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tag::sha256_hex;

/// The key in `site_config.json`.
pub const RECORD_KEY: &str = "benchform";

/// The key in `site_config.json` that says benchform took the site out of service (maintenance
/// mode and paused scheduler) and has not put it back: `{"since": "<time>", "scheduler":
/// "paused before" | "running before"}` (strings only, so the literal is both JSON and Python).
/// Written before maintenance mode goes on, removed (`set-config KEY None`, without `-p`: with it
/// Frappe would store null) after it goes off. A site in maintenance without it was put there by
/// someone else, and stays there.
pub const MAINTENANCE_KEY: &str = "benchform_maintenance";

/// The mark's field saying how benchform found the scheduler.
pub const MARK_SCHEDULER: &str = "scheduler";
/// The scheduler was paused (by someone else) before: it stays paused when the site is released.
pub const MARK_PAUSED_BEFORE: &str = "paused before";

/// The mark's value (a Python literal of a dict of strings) for `set-config -p`.
pub fn maintenance_mark(since: &str, scheduler_paused_before: bool) -> String {
    let scheduler = if scheduler_paused_before { MARK_PAUSED_BEFORE } else { "running before" };
    serde_json::json!({ "since": since, MARK_SCHEDULER: scheduler }).to_string()
}

/// The prefix of a pending record's fingerprint.
const PENDING: &str = "pending:";

/// What a site was last migrated to, by benchform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteRecord {
    pub version: u32,
    pub project: String,
    pub fingerprint: String,
    pub commits: BTreeMap<String, String>,
    /// The manifest ref of each app at that migrate: versions to compare, so that a plan can
    /// refuse running older code on a newer schema.
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Apps of `commits` that were installed on the site outside the manifest (by hand): their
    /// code is tracked so a change migrates the site, but benchform never uninstalls them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeclared: Vec<String>,
    pub migrated_at: String,
}

/// The fingerprint of a set of (app, commit) pairs (frappe included).
pub fn fingerprint(commits: &BTreeMap<String, String>) -> String {
    let text: String = commits.iter().map(|(name, commit)| format!("{name}\0{commit}\n")).collect();
    sha256_hex(text.as_bytes())
}

impl SiteRecord {
    pub fn new(
        project: &str,
        commits: BTreeMap<String, String>,
        refs: BTreeMap<String, String>,
        image: &str,
        image_digest: Option<String>,
        migrated_at: &str,
    ) -> SiteRecord {
        SiteRecord {
            version: 1,
            project: project.to_string(),
            fingerprint: fingerprint(&commits),
            commits,
            refs,
            image: image.to_string(),
            image_digest,
            undeclared: Vec::new(),
            migrated_at: migrated_at.to_string(),
        }
    }

    /// The value to pass to `bench set-config -p benchform VALUE`: a Python literal. JSON of
    /// strings, numbers, objects and arrays is one (the record has no booleans or nulls).
    pub fn to_python_literal(&self) -> String {
        // Invariant: a struct of strings and maps always serialises.
        #[allow(clippy::expect_used)]
        let json = serde_json::to_string(self).expect("site record serialises");
        json
    }

    /// This record marked "apps changed since": written before benchform installs or removes an
    /// app, so that a run that stops before the site's migrate leaves a site every later plan
    /// migrates (its fingerprint no longer matches anything).
    pub fn pending(&self) -> SiteRecord {
        SiteRecord { fingerprint: format!("{PENDING}{}", self.fingerprint.trim_start_matches(PENDING)), ..self.clone() }
    }

    /// Which apps the site runs outside the manifest (kept in the record, never uninstalled).
    pub fn with_undeclared(mut self, undeclared: Vec<String>) -> SiteRecord {
        self.undeclared = undeclared;
        self
    }

    /// benchform installed `app` on the site (a manifest app at its last migrate), as opposed
    /// to an app installed by hand whose code it only tracks.
    pub fn installed_by_benchform(&self, app: &str) -> bool {
        self.commits.contains_key(app) && !self.undeclared.iter().any(|a| a == app)
    }

    /// Marked by [`SiteRecord::pending`].
    /// The record with its pending mark taken off (a canary whose smoke test passed).
    pub fn settled(&self) -> SiteRecord {
        SiteRecord { fingerprint: self.fingerprint.trim_start_matches(PENDING).to_string(), ..self.clone() }
    }

    pub fn is_pending(&self) -> bool {
        self.fingerprint.starts_with(PENDING)
    }

    /// Read a record from a site_config.json value's `benchform` key; `None` if absent or not
    /// ours (an unreadable record counts as none, so the site is treated as never migrated by
    /// benchform, which errs on the side of migrating).
    pub fn from_site_config(config: &serde_json::Value) -> Option<SiteRecord> {
        serde_json::from_value(config.get(RECORD_KEY)?.clone()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_depend_on_names_and_commits_not_order() {
        let a = BTreeMap::from([("frappe".to_string(), "1".repeat(40)), ("erpnext".to_string(), "2".repeat(40))]);
        let mut b = a.clone();
        b.insert("erpnext".to_string(), "3".repeat(40));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 64);
    }

    #[test]
    fn records_round_trip_through_site_config() {
        let r = SiteRecord::new(
            "p",
            BTreeMap::from([("frappe".to_string(), "a".repeat(40))]),
            BTreeMap::from([("frappe".to_string(), "v15.1.0".to_string())]),
            "img:bf1-x",
            None,
            "2026-11-27T18:00:00Z",
        );
        let config = serde_json::json!({"db_name": "_x", "benchform": serde_json::from_str::<serde_json::Value>(&r.to_python_literal()).unwrap()});
        assert_eq!(SiteRecord::from_site_config(&config), Some(r));
        assert_eq!(SiteRecord::from_site_config(&serde_json::json!({"benchform": 3})), None);
    }
}

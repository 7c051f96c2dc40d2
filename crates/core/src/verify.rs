//! Image verification, before a push: does the built image hold every app at its locked commit,
//! and does no secret of the build survive in it? Pure: the adapter reads the image's
//! `sites/apps.json`, its `apps/` listing, history, metadata and `logs/`, and hands the text in.

use benchform_manifest::LockFile;
use serde_json::Value;

/// One reason an image must not be pushed. Never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyProblem {
    #[error("sites/apps.json in the image is not bench's app-state JSON: {detail}")]
    Unreadable { detail: String },
    #[error("{app} is missing from the image (no apps/{app} or no entry in sites/apps.json)")]
    MissingApp { app: String },
    #[error(
        "{app} in the image is at {found}, but the lock pins {commit}: the ref moved between lock and build \
         (run `benchform lock --check`)"
    )]
    WrongCommit { app: String, found: String, commit: String },
    #[error("a secret used by the build was found in the image's {place}; the image was removed")]
    SecretInImage { place: String },
}

/// Compare bench's `sites/apps.json` and the `apps/` folder listing with the lock. bench records
/// `git rev-parse <ref>`, which for an annotated tag is the tag object: either id is accepted.
pub fn check_apps(apps_json: &str, apps_dir_listing: &str, names: &[String], lock: &LockFile) -> Vec<VerifyProblem> {
    let state: Value = match serde_json::from_str(apps_json) {
        Ok(v) => v,
        Err(e) => return vec![VerifyProblem::Unreadable { detail: e.to_string() }],
    };
    let dirs: Vec<&str> = apps_dir_listing.lines().map(str::trim).collect();
    let mut out = Vec::new();
    for name in names {
        let entry = state.get(name);
        if entry.is_none() || !dirs.contains(&name.as_str()) {
            out.push(VerifyProblem::MissingApp { app: name.clone() });
            continue;
        }
        let found =
            entry.and_then(|e| e.pointer("/resolution/commit_hash")).and_then(Value::as_str).unwrap_or_default();
        if let Some(locked) = lock.entry(name) {
            let accepted = found == locked.commit || locked.object.as_deref() == Some(found);
            if !accepted {
                out.push(VerifyProblem::WrongCommit {
                    app: name.clone(),
                    found: found.to_string(),
                    commit: locked.commit.clone(),
                });
            }
        }
    }
    out
}

/// Where, among named texts read from the image, any of `secrets` appears.
pub fn find_secrets(places: &[(&str, &str)], secrets: &[String]) -> Vec<VerifyProblem> {
    places
        .iter()
        .filter(|(_, text)| secrets.iter().any(|s| !s.is_empty() && text.contains(s.as_str())))
        .map(|(place, _)| VerifyProblem::SecretInImage { place: place.to_string() })
        .collect()
}

#[cfg(test)]
mod tests {
    use benchform_manifest::{LockEntry, RefKind};

    use super::*;

    fn lock() -> LockFile {
        LockFile {
            version: 1,
            entries: vec![LockEntry {
                name: "erpnext".into(),
                repo: "https://h/erpnext".into(),
                git_ref: "v1".into(),
                kind: RefKind::Tag,
                commit: "c".repeat(40),
                object: Some("t".repeat(40)),
            }],
        }
    }

    fn apps_json(id: &str) -> String {
        format!(
            "{{\"erpnext\": {{\"is_repo\": true, \"resolution\": {{\"commit_hash\": \"{id}\", \"branch\": \"v1\"}}}}}}"
        )
    }

    #[test]
    fn tag_object_or_commit_is_accepted() {
        let names = vec!["erpnext".to_string()];
        assert!(check_apps(&apps_json(&"t".repeat(40)), "frappe\nerpnext\n", &names, &lock()).is_empty());
        assert!(check_apps(&apps_json(&"c".repeat(40)), "frappe\nerpnext\n", &names, &lock()).is_empty());
    }

    #[test]
    fn moved_refs_and_missing_apps_are_caught() {
        let names = vec!["erpnext".to_string(), "hrms".to_string()];
        let problems = check_apps(&apps_json(&"x".repeat(40)), "frappe\nerpnext\n", &names, &lock());
        assert!(matches!(&problems[0], VerifyProblem::WrongCommit { app, .. } if app == "erpnext"));
        assert_eq!(problems[1], VerifyProblem::MissingApp { app: "hrms".into() });
        assert!(matches!(check_apps("nope", "", &names, &lock())[0], VerifyProblem::Unreadable { .. }));
    }

    #[test]
    fn secrets_are_found_but_not_repeated() {
        let found =
            find_secrets(&[("history", "RUN x"), ("logs/", "clone https://tok-123@h/a")], &["tok-123".to_string()]);
        assert_eq!(found, [VerifyProblem::SecretInImage { place: "logs/".into() }]);
        assert!(!found[0].to_string().contains("tok-123"));
    }
}

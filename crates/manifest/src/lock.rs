//! benchform.lock: every ref of the manifest resolved to a commit.
//!
//! Everything here is pure: the caller lists remote refs (see the `benchform-git` crate) and hands
//! the listings in. The file is written by hand-rolled, deterministic YAML (entries sorted by
//! name, every value quoted) so that it reviews well in pull requests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::model::Manifest;
use crate::names;
use crate::version;

/// The lock file format version.
pub const LOCK_VERSION: u32 = 1;

/// The lock's file name, next to the manifest.
pub const LOCK_FILE: &str = "benchform.lock";

/// benchform.lock: the manifest's refs pinned to commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "benchform lock")]
pub struct LockFile {
    /// Lock format version. Only `1` exists.
    #[schemars(extend("const" = 1))]
    pub version: u32,
    /// One entry for frappe and each app, sorted by name.
    pub entries: Vec<LockEntry>,
}

/// One source pinned to a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockEntry {
    /// `frappe` or the app's name.
    pub name: String,
    /// Repository URL (never with credentials).
    pub repo: String,
    /// The ref as the manifest names it.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Whether the ref is a tag or a branch on the remote.
    pub kind: RefKind,
    /// The commit the ref resolves to (annotated tags peeled), 40 hex digits.
    #[schemars(regex(pattern = r"^[0-9a-f]{40}([0-9a-f]{24})?$"))]
    pub commit: String,
    /// For an annotated tag, the tag object's id: bench records `git rev-parse <ref>`, which is
    /// this id rather than the commit, so image verification accepts either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9a-f]{40}([0-9a-f]{24})?$"))]
    pub object: Option<String>,
}

/// Tag or branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    Tag,
    Branch,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Tag => "tag",
            RefKind::Branch => "branch",
        }
    }
}

impl LockFile {
    pub fn entry(&self, name: &str) -> Option<&LockEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The file's text: deterministic, sorted, one field a line.
    pub fn render(&self) -> String {
        let mut entries: Vec<&LockEntry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let mut out = String::new();
        out.push_str("# benchform.lock: every ref in benchform.yaml pinned to a commit.\n");
        out.push_str("# Written by `benchform lock`. Review changes to it; do not edit it by hand.\n");
        out.push_str(&format!("version: {}\n", self.version));
        if entries.is_empty() {
            out.push_str("entries: []\n");
            return out;
        }
        out.push_str("entries:\n");
        for e in entries {
            out.push_str(&format!("  - name: {}\n", q(&e.name)));
            out.push_str(&format!("    repo: {}\n", q(&e.repo)));
            out.push_str(&format!("    ref: {}\n", q(&e.git_ref)));
            out.push_str(&format!("    kind: {}\n", e.kind.as_str()));
            out.push_str(&format!("    commit: {}\n", q(&e.commit)));
            if let Some(object) = &e.object {
                out.push_str(&format!("    object: {}\n", q(object)));
            }
        }
        out
    }
}

/// Read a lock file. Problems come back as diagnostics with positions, like the manifest's.
pub fn parse_lock(file: &str, bytes: &[u8]) -> Result<LockFile, Vec<Diagnostic>> {
    crate::validate::read_typed::<LockFile>(
        file,
        bytes,
        crate::schema::lock_schema(),
        crate::schema::lock_validator(),
        crate::rules::check_lock,
    )
}

/// One ref advertised by a remote, as `git ls-remote` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// Full name, e.g. `refs/tags/v1.0.0` or `refs/tags/v1.0.0^{}` (the peeled commit).
    pub name: String,
    pub oid: String,
}

/// What a ref resolved to on a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub kind: RefKind,
    pub commit: String,
    pub object: Option<String>,
    /// Set when the name is both a branch and a tag: `git clone --branch` takes the branch.
    pub also_a_tag: bool,
    /// The newest version-like tag on the remote, to suggest instead of a branch.
    pub newest_tag: Option<String>,
}

/// Why a ref could not be resolved from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    /// Close names that do exist, for "did you mean".
    pub suggestion: Option<String>,
}

/// Resolve `git_ref` the way `git clone --branch` does: a branch first, then a tag; an annotated
/// tag is peeled to its commit and its object id kept.
pub fn resolve_ref(listing: &[RemoteRef], git_ref: &str) -> Result<Resolved, NotFound> {
    let find = |name: &str| listing.iter().find(|r| r.name == name).map(|r| r.oid.clone());
    let tags: Vec<&str> =
        listing.iter().filter_map(|r| r.name.strip_prefix("refs/tags/")).filter(|n| !n.ends_with("^{}")).collect();
    let newest_tag = version::newest(tags.iter().copied()).map(str::to_string);
    let tag_oid = find(&format!("refs/tags/{git_ref}"));
    if let Some(commit) = find(&format!("refs/heads/{git_ref}")) {
        return Ok(Resolved { kind: RefKind::Branch, commit, object: None, also_a_tag: tag_oid.is_some(), newest_tag });
    }
    if let Some(oid) = tag_oid {
        return Ok(match find(&format!("refs/tags/{git_ref}^{{}}")) {
            Some(peeled) => {
                Resolved { kind: RefKind::Tag, commit: peeled, object: Some(oid), also_a_tag: false, newest_tag }
            }
            None => Resolved { kind: RefKind::Tag, commit: oid, object: None, also_a_tag: false, newest_tag },
        });
    }
    let names = listing
        .iter()
        .filter_map(|r| r.name.strip_prefix("refs/heads/").or_else(|| r.name.strip_prefix("refs/tags/")))
        .filter(|n| !n.ends_with("^{}"));
    Err(NotFound { suggestion: names::did_you_mean(git_ref, names).map(str::to_string) })
}

/// Which locked entries `benchform lock --update` should re-resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Only entries that are missing or whose repo/ref changed.
    Needed,
    /// Every entry.
    All,
    /// These names, plus whatever is needed.
    Names(Vec<String>),
}

/// A source of the manifest, with the locked entry to keep (if it can be kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub repo: String,
    pub git_ref: String,
    pub token_env: Option<String>,
    pub token_user: String,
    /// `Some` when the existing entry is kept as it is; `None` when the remote must be asked.
    pub keep: Option<LockEntry>,
}

/// Errors in planning or finishing a lock.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("`--update` names {name}, which is neither frappe nor an app in the manifest")]
    UnknownUpdateName { name: String, suggestion: Option<String> },
    #[error("{name}: ref `{git_ref}` is a branch, but policy.immutable_refs requires tags")]
    BranchNotAllowed { name: String, git_ref: String, newest_tag: Option<String> },
    #[error("{name}: `{git_ref}` is both a branch and a tag on {repo}; bench would clone the branch")]
    AmbiguousRef { name: String, git_ref: String, repo: String },
}

/// Decide, per source, whether the existing lock entry is kept or the remote is asked.
pub fn plan_lock(manifest: &Manifest, existing: Option<&LockFile>, update: &Update) -> Result<Vec<Wanted>, LockError> {
    let sources = manifest.sources();
    if let Update::Names(names) = update {
        for n in names {
            if !sources.iter().any(|s| s.name == n) {
                return Err(LockError::UnknownUpdateName {
                    name: n.clone(),
                    suggestion: names::did_you_mean(n, sources.iter().map(|s| s.name)).map(str::to_string),
                });
            }
        }
    }
    Ok(sources
        .iter()
        .map(|s| {
            let forced = match update {
                Update::Needed => false,
                Update::All => true,
                Update::Names(names) => names.iter().any(|n| n == s.name),
            };
            let keep = existing
                .and_then(|l| l.entry(s.name))
                .filter(|e| !forced && e.repo == s.repo && e.git_ref == s.git_ref)
                .cloned();
            Wanted {
                name: s.name.to_string(),
                repo: s.repo.to_string(),
                git_ref: s.git_ref.to_string(),
                token_env: s.token_env.map(str::to_string),
                token_user: s.token_user.to_string(),
                keep,
            }
        })
        .collect())
}

/// Assemble the lock from kept entries and fresh resolutions (keyed by name), enforcing the
/// manifest's policy. Every problem is returned, not just the first.
pub fn finish_lock(
    manifest: &Manifest,
    wanted: &[Wanted],
    resolved: &BTreeMap<String, Resolved>,
) -> Result<LockFile, Vec<LockError>> {
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for w in wanted {
        let (entry, fresh) = match (&w.keep, resolved.get(&w.name)) {
            (Some(kept), _) => (kept.clone(), None),
            (None, Some(r)) => (
                LockEntry {
                    name: w.name.clone(),
                    repo: w.repo.clone(),
                    git_ref: w.git_ref.clone(),
                    kind: r.kind,
                    commit: r.commit.clone(),
                    object: r.object.clone(),
                },
                Some(r),
            ),
            // The caller resolves every entry it does not keep; a gap is reported by the caller.
            (None, None) => continue,
        };
        if manifest.policy.immutable_refs {
            if fresh.is_some_and(|r| r.also_a_tag) {
                errors.push(LockError::AmbiguousRef {
                    name: w.name.clone(),
                    git_ref: w.git_ref.clone(),
                    repo: w.repo.clone(),
                });
            } else if entry.kind == RefKind::Branch {
                errors.push(LockError::BranchNotAllowed {
                    name: w.name.clone(),
                    git_ref: w.git_ref.clone(),
                    newest_tag: fresh.and_then(|r| r.newest_tag.clone()),
                });
            }
        }
        entries.push(entry);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(LockFile { version: LOCK_VERSION, entries })
}

/// A disagreement between the manifest and its lock, found without any network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Missing { name: String },
    Extra { name: String },
    RepoChanged { name: String, locked: String, wanted: String },
    RefChanged { name: String, locked: String, wanted: String },
    BranchNotAllowed { name: String, git_ref: String },
    UnsupportedVersion { version: u32 },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing { name } => write!(f, "{name} is in the manifest but not in the lock"),
            Mismatch::Extra { name } => write!(f, "{name} is in the lock but no longer in the manifest"),
            Mismatch::RepoChanged { name, locked, wanted } => {
                write!(f, "{name}: the manifest's repo is {wanted}, the lock's {locked}")
            }
            Mismatch::RefChanged { name, locked, wanted } => {
                write!(f, "{name}: the manifest's ref is {wanted}, the lock's {locked}")
            }
            Mismatch::BranchNotAllowed { name, git_ref } => {
                write!(f, "{name}: locked ref {git_ref} is a branch, but policy.immutable_refs requires tags")
            }
            Mismatch::UnsupportedVersion { version } => {
                write!(f, "the lock has format version {version}; this benchform reads version {LOCK_VERSION}")
            }
        }
    }
}

/// Does the lock pin exactly the manifest's sources? (What `lock --check --offline` checks.)
pub fn check_agreement(manifest: &Manifest, lock: &LockFile) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if lock.version != LOCK_VERSION {
        out.push(Mismatch::UnsupportedVersion { version: lock.version });
    }
    let sources = manifest.sources();
    let wanted: BTreeSet<&str> = sources.iter().map(|s| s.name).collect();
    for s in &sources {
        match lock.entry(s.name) {
            None => out.push(Mismatch::Missing { name: s.name.to_string() }),
            Some(e) => {
                if e.repo != s.repo {
                    out.push(Mismatch::RepoChanged {
                        name: s.name.to_string(),
                        locked: e.repo.clone(),
                        wanted: s.repo.to_string(),
                    });
                }
                if e.git_ref != s.git_ref {
                    out.push(Mismatch::RefChanged {
                        name: s.name.to_string(),
                        locked: e.git_ref.clone(),
                        wanted: s.git_ref.to_string(),
                    });
                } else if manifest.policy.immutable_refs && e.kind == RefKind::Branch {
                    out.push(Mismatch::BranchNotAllowed { name: s.name.to_string(), git_ref: e.git_ref.clone() });
                }
            }
        }
    }
    for e in &lock.entries {
        if !wanted.contains(e.name.as_str()) {
            out.push(Mismatch::Extra { name: e.name.clone() });
        }
    }
    out
}

/// How a locked entry compares with its remote now (what `lock --check` checks online).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteDrift {
    /// A tag now points at another commit: someone rewrote a published tag. Always an error.
    TagMoved { name: String, git_ref: String, from: String, to: String },
    /// The ref no longer exists on the remote. An error: builds would fail.
    RefGone { name: String, git_ref: String },
    /// The ref changed kind (was a tag, is now a branch, or the reverse). An error.
    KindChanged { name: String, git_ref: String, locked: RefKind, now: RefKind },
    /// A branch has new commits. Expected; not an error (`lock --update NAME` takes them).
    BranchAdvanced { name: String, git_ref: String, from: String, to: String },
}

impl RemoteDrift {
    pub fn is_error(&self) -> bool {
        !matches!(self, RemoteDrift::BranchAdvanced { .. })
    }
}

impl fmt::Display for RemoteDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteDrift::TagMoved { name, git_ref, from, to } => {
                write!(f, "{name}: tag {git_ref} moved from {from} to {to}")
            }
            RemoteDrift::RefGone { name, git_ref } => write!(f, "{name}: ref {git_ref} no longer exists on the remote"),
            RemoteDrift::KindChanged { name, git_ref, locked, now } => write!(
                f,
                "{name}: ref {git_ref} was locked as a {} and is now a {} on the remote",
                locked.as_str(),
                now.as_str()
            ),
            RemoteDrift::BranchAdvanced { name, git_ref, from, to } => {
                write!(f, "{name}: branch {git_ref} moved from {from} to {to}")
            }
        }
    }
}

/// Compare a locked entry with what the remote says now.
pub fn compare_remote(entry: &LockEntry, now: Result<&Resolved, &NotFound>) -> Option<RemoteDrift> {
    let name = entry.name.clone();
    let git_ref = entry.git_ref.clone();
    let now = match now {
        Ok(now) => now,
        Err(_) => return Some(RemoteDrift::RefGone { name, git_ref }),
    };
    if now.kind != entry.kind {
        return Some(RemoteDrift::KindChanged { name, git_ref, locked: entry.kind, now: now.kind });
    }
    if now.commit == entry.commit {
        return None;
    }
    let (from, to) = (entry.commit.clone(), now.commit.clone());
    Some(match entry.kind {
        RefKind::Tag => RemoteDrift::TagMoved { name, git_ref, from, to },
        RefKind::Branch => RemoteDrift::BranchAdvanced { name, git_ref, from, to },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, oid: &str) -> RemoteRef {
        RemoteRef { name: name.to_string(), oid: oid.to_string() }
    }

    fn listing() -> Vec<RemoteRef> {
        vec![
            r("HEAD", "c3"),
            r("refs/heads/main", "c3"),
            r("refs/heads/version-15", "c2"),
            r("refs/tags/v1.0.0", "c1"),
            r("refs/tags/v1.1.0", "t2"),
            r("refs/tags/v1.1.0^{}", "c2"),
            r("refs/tags/main", "c1"),
        ]
    }

    #[test]
    fn lightweight_and_annotated_tags_resolve_to_commits() {
        let l = listing();
        let light = resolve_ref(&l, "v1.0.0").unwrap();
        assert_eq!((light.kind, light.commit.as_str(), light.object), (RefKind::Tag, "c1", None));
        let annotated = resolve_ref(&l, "v1.1.0").unwrap();
        assert_eq!(annotated.commit, "c2");
        assert_eq!(annotated.object.as_deref(), Some("t2"));
        assert_eq!(annotated.newest_tag.as_deref(), Some("v1.1.0"));
    }

    #[test]
    fn branches_win_over_tags_like_git_clone_branch() {
        let main = resolve_ref(&listing(), "main").unwrap();
        assert_eq!(main.kind, RefKind::Branch);
        assert!(main.also_a_tag);
    }

    #[test]
    fn missing_refs_suggest_a_close_name() {
        let err = resolve_ref(&listing(), "v1.1.1").unwrap_err();
        assert!(err.suggestion.is_some());
    }

    #[test]
    fn moved_tags_are_errors_and_advanced_branches_are_not() {
        let entry = LockEntry {
            name: "app".into(),
            repo: "https://h/a".into(),
            git_ref: "v1".into(),
            kind: RefKind::Tag,
            commit: "c1".into(),
            object: None,
        };
        let now =
            Resolved { kind: RefKind::Tag, commit: "c9".into(), object: None, also_a_tag: false, newest_tag: None };
        let drift = compare_remote(&entry, Ok(&now)).unwrap();
        assert!(drift.is_error());
        assert_eq!(drift.to_string(), "app: tag v1 moved from c1 to c9");
        let branch = LockEntry { kind: RefKind::Branch, ..entry.clone() };
        let now = Resolved { kind: RefKind::Branch, ..now };
        assert!(!compare_remote(&branch, Ok(&now)).unwrap().is_error());
        assert_eq!(
            compare_remote(&entry, Err(&NotFound { suggestion: None })).unwrap(),
            RemoteDrift::RefGone { name: "app".into(), git_ref: "v1".into() }
        );
    }

    #[test]
    fn render_is_sorted_and_parses_back() {
        let lock = LockFile {
            version: 1,
            entries: vec![
                LockEntry {
                    name: "zapp".into(),
                    repo: "https://h/z".into(),
                    git_ref: "v1".into(),
                    kind: RefKind::Tag,
                    commit: "a".repeat(40),
                    object: Some("b".repeat(40)),
                },
                LockEntry {
                    name: "frappe".into(),
                    repo: "https://h/f".into(),
                    git_ref: "v15".into(),
                    kind: RefKind::Tag,
                    commit: "c".repeat(40),
                    object: None,
                },
            ],
        };
        let text = lock.render();
        assert!(text.find("frappe").unwrap() < text.find("zapp").unwrap());
        let back = parse_lock("benchform.lock", text.as_bytes()).unwrap();
        let mut sorted = lock.clone();
        sorted.entries.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back, sorted);
    }
}

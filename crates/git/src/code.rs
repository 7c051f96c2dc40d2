//! Reading an app's code at a locked commit, before any image holds it: a cache of shallow
//! fetches, one bare repository per remote under a folder the caller names.
//!
//! A commit is fetched once (its ref at depth 1; the commit itself when the ref has moved on and
//! the server allows it) and read from the cache afterwards without the network. Fetches into one
//! repository are serialised by a lock file, so plans run side by side share the cache. A token
//! travels only through the credentials callback: the cached repository's configuration holds the
//! bare URL, nothing else.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};

use git2::{FetchOptions, Oid, Repository};
use sha2::{Digest, Sha256};

use crate::{Auth, GitError, classify, credentials};

/// Where fetched commits are kept.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
}

/// One remote's commits, fetched into the cache.
pub struct CachedRepo {
    url: String,
    repo: Repository,
}

impl std::fmt::Debug for CachedRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedRepo").field("url", &self.url).field("path", &self.repo.path()).finish()
    }
}

impl CodeCache {
    pub fn new(dir: impl Into<PathBuf>) -> CodeCache {
        CodeCache { dir: dir.into() }
    }

    /// The cache's repository for `url`, holding `commit` (fetched through `refname`, a branch or
    /// tag name, when it is not there yet).
    pub fn open(&self, url: &str, auth: Option<&Auth>, refname: &str, commit: &str) -> Result<CachedRepo, GitError> {
        let other = |detail: String| GitError::Other { repo: url.to_string(), detail };
        let oid = Oid::from_str(commit).map_err(|_| other(format!("`{commit}` is not a commit id")))?;
        let key = hex(&Sha256::digest(url.as_bytes()))[..24].to_string();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| other(format!("cannot create the cache folder {}: {e}", self.dir.display())))?;
        let path = self.dir.join(format!("{key}.git"));
        let lock_path = self.dir.join(format!("{key}.lock"));
        let lock = File::create(&lock_path)
            .map_err(|e| other(format!("cannot create the cache lock {}: {e}", lock_path.display())))?;
        lock.lock().map_err(|e| other(format!("cannot lock the cache {}: {e}", lock_path.display())))?;
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(&path).map_err(|e| {
                other(format!("cannot create a cache repository in {}: {}", path.display(), e.message()))
            })?,
        };
        let cached = CachedRepo { url: url.to_string(), repo };
        if !cached.has_commit(oid) {
            let refspecs = [
                format!("+refs/tags/{refname}:refs/tags/{refname}"),
                format!("+refs/heads/{refname}:refs/heads/{refname}"),
            ];
            cached.fetch(auth, &refspecs)?;
            if !cached.has_commit(oid) {
                // The ref moved on since the lock: ask for the commit itself (servers that allow
                // it: GitHub, GitLab, git ≥ 2.x with protocol v2).
                let by_id = [format!("+{commit}:refs/benchform/{commit}")];
                if cached.fetch(auth, &by_id).is_err() || !cached.has_commit(oid) {
                    return Err(other(format!(
                        "commit {commit} is no longer what `{refname}` names, and the server does not hand it out by id"
                    )));
                }
            }
        }
        drop(lock);
        Ok(cached)
    }
}

impl CachedRepo {
    fn has_commit(&self, oid: Oid) -> bool {
        self.repo.find_commit(oid).is_ok()
    }

    fn fetch(&self, auth: Option<&Auth>, refspecs: &[String]) -> Result<(), GitError> {
        let asked = Cell::new(0u32);
        let callbacks = credentials(auth, &asked);
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks).depth(1).download_tags(git2::AutotagOption::None);
        let mut remote = self.repo.remote_anonymous(&self.url).map_err(|e| classify(&self.url, e, false, false))?;
        remote
            .fetch(refspecs, Some(&mut options), None)
            .map_err(|e| classify(&self.url, e, auth.is_some(), asked.get() > 0))
    }

    fn tree(&self, commit: &str) -> Result<git2::Tree<'_>, GitError> {
        let bad = |detail: String| GitError::BadRevision { repo: self.url.clone(), rev: commit.to_string(), detail };
        let oid = Oid::from_str(commit).map_err(|e| bad(e.message().to_string()))?;
        self.repo.find_commit(oid).and_then(|c| c.tree()).map_err(|e| bad(e.message().to_string()))
    }

    /// The bytes of `path` at `commit` (which [`CodeCache::open`] fetched); `None` when the file
    /// does not exist there.
    pub fn read(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let tree = self.tree(commit)?;
        let bad = |e: git2::Error| GitError::BadRevision {
            repo: self.url.clone(),
            rev: commit.to_string(),
            detail: e.message().to_string(),
        };
        match tree.get_path(Path::new(path)) {
            Ok(entry) => {
                let object = entry.to_object(&self.repo).map_err(bad)?;
                Ok(object.as_blob().map(|b| b.content().to_vec()))
            }
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(bad(e)),
        }
    }

    /// The paths that differ between two commits (both fetched), added, changed or removed.
    pub fn changed_paths(&self, old: &str, new: &str) -> Result<Vec<String>, GitError> {
        let (a, b) = (self.tree(old)?, self.tree(new)?);
        let diff = self.repo.diff_tree_to_tree(Some(&a), Some(&b), None).map_err(|e| GitError::Other {
            repo: self.url.clone(),
            detail: format!("cannot compare {old} with {new}: {}", e.message()),
        })?;
        let mut out = Vec::new();
        for d in diff.deltas() {
            for file in [d.old_file(), d.new_file()] {
                if let Some(p) = file.path().and_then(Path::to_str)
                    && !out.iter().any(|x: &String| x == p)
                {
                    out.push(p.to_string());
                }
            }
        }
        Ok(out)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

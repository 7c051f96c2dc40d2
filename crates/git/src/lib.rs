//! Ask a git remote which refs it has, without cloning (`git ls-remote` through libgit2), and read
//! an app's files at a locked commit through a cache of shallow fetches (`code`).
//!
//! The URL handed in never carries credentials (the manifest rejects those); a token travels only
//! through the credentials callback, so no error or log line can contain it.

use std::cell::Cell;

mod code;
pub use code::{CachedRepo, CodeCache};

use benchform_manifest::lock::RemoteRef;
use git2::{Direction, ErrorClass, ErrorCode, Remote, RemoteCallbacks};

/// HTTP Basic credentials for a private repository.
#[derive(Clone)]
pub struct Auth {
    pub user: String,
    pub token: String,
}

impl Auth {
    /// The token in the environment variable `var` (the manifest's `token_env`), sent as `user`;
    /// `None` when no variable is named or it is unset or empty.
    pub fn from_env(var: Option<&str>, user: &str) -> Option<Auth> {
        let token = std::env::var(var?).ok().filter(|t| !t.is_empty())?;
        Some(Auth { user: user.to_string(), token })
    }
}

/// How long one remote may take: `BENCHFORM_GIT_TIMEOUT` seconds, else `default`.
pub fn timeout_from_env(default: std::time::Duration) -> std::time::Duration {
    std::env::var("BENCHFORM_GIT_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(default, std::time::Duration::from_secs)
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("user", &self.user).field("token", &"(sensitive value)").finish()
    }
}

/// Why a remote could not be listed. Messages name the repository, never a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error("{repo} asks for credentials and none were given")]
    AuthRequired { repo: String },
    #[error("{repo} rejected the credentials")]
    AuthRejected { repo: String },
    #[error("{repo} has no such repository")]
    NotFound { repo: String },
    #[error("{repo} could not be reached: {detail}")]
    Unreachable { repo: String, detail: String },
    /// The server answered, but not with a ref listing libgit2 can read (e.g. a body that ends
    /// when the connection closes, without Content-Length or chunked framing).
    #[error("{repo} answered, but its answer could not be read as a list of refs ({detail})")]
    BadResponse { repo: String, detail: String },
    #[error("{repo}: {detail}")]
    Other { repo: String, detail: String },
    #[error("{path} is not in a git repository")]
    NotARepository { path: String },
    #[error("`{rev}` is not a revision of {repo}: {detail}")]
    BadRevision { repo: String, rev: String, detail: String },
}

/// The bytes of `file` as committed at `rev` in the repository that holds it; `None` when the
/// file does not exist at that revision (it was added later).
pub fn read_at_revision(file: &std::path::Path, rev: &str) -> Result<Option<Vec<u8>>, GitError> {
    let shown = file.display().to_string();
    let absolute = std::path::absolute(file).map_err(|_| GitError::NotARepository { path: shown.clone() })?;
    let dir = absolute.parent().unwrap_or(&absolute);
    let repo = git2::Repository::discover(dir).map_err(|_| GitError::NotARepository { path: shown.clone() })?;
    let workdir = repo.workdir().ok_or_else(|| GitError::NotARepository { path: shown.clone() })?;
    let workdir = workdir.canonicalize().unwrap_or_else(|_| workdir.to_path_buf());
    let canonical_dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let name = absolute.file_name().unwrap_or_default();
    let relative =
        canonical_dir.strip_prefix(&workdir).map_err(|_| GitError::NotARepository { path: shown.clone() })?.join(name);
    let repo_name = workdir.display().to_string();
    let bad = |e: git2::Error| GitError::BadRevision {
        repo: repo_name.clone(),
        rev: rev.to_string(),
        detail: e.message().to_string(),
    };
    let tree = repo.revparse_single(rev).and_then(|o| o.peel_to_tree()).map_err(bad)?;
    match tree.get_path(&relative) {
        Ok(entry) => {
            let blob = entry.to_object(&repo).and_then(|o| o.peel_to_blob()).map_err(bad)?;
            Ok(Some(blob.content().to_vec()))
        }
        Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
        Err(e) => Err(bad(e)),
    }
}

/// List every ref the remote advertises (`HEAD`, `refs/heads/*`, `refs/tags/*` and the peeled
/// `refs/tags/*^{}` entries of annotated tags).
pub fn ls_remote(url: &str, auth: Option<&Auth>) -> Result<Vec<RemoteRef>, GitError> {
    let asked = Cell::new(0u32);
    let callbacks = credentials(auth, &asked);
    let classify = |e: git2::Error| classify(url, e, auth.is_some(), asked.get() > 0);
    let mut remote = Remote::create_detached(url).map_err(classify)?;
    let connection = remote.connect_auth(Direction::Fetch, Some(callbacks), None).map_err(classify)?;
    let heads = connection.list().map_err(classify)?;
    Ok(heads.iter().map(|h| RemoteRef { name: h.name().to_string(), oid: h.oid().to_string() }).collect())
}

/// Callbacks that hand libgit2 the token once, counting in `asked` how often it asked (a
/// second time means the token was rejected). The token goes nowhere else.
fn credentials<'a>(auth: Option<&'a Auth>, asked: &'a Cell<u32>) -> RemoteCallbacks<'a> {
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |_url, _user_from_url, _allowed| {
        asked.set(asked.get() + 1);
        // libgit2 asks again after a rejection; give up after one try or it loops forever.
        match auth {
            Some(a) if asked.get() == 1 => git2::Cred::userpass_plaintext(&a.user, &a.token),
            _ => Err(git2::Error::from_str("credentials rejected")),
        }
    });
    callbacks
}

fn classify(url: &str, e: git2::Error, had_auth: bool, asked_for_auth: bool) -> GitError {
    let repo = url.to_string();
    let message = e.message().to_string();
    let lower = message.to_lowercase();
    if asked_for_auth || e.code() == ErrorCode::Auth || lower.contains("401") {
        return if had_auth { GitError::AuthRejected { repo } } else { GitError::AuthRequired { repo } };
    }
    let missing_path = url.starts_with("file:") && lower.contains("no such file");
    if missing_path
        || lower.contains("404")
        || lower.contains("could not find repository")
        || lower.contains("not found")
    {
        return GitError::NotFound { repo };
    }
    // libgit2 connected and sent its request; what came back was empty or cut short.
    if lower.contains("could not read refs") || lower.contains("unexpected eof") || lower.contains("early eof") {
        return GitError::BadResponse { repo, detail: message };
    }
    match e.class() {
        ErrorClass::Net | ErrorClass::Http | ErrorClass::Os | ErrorClass::Ssl => {
            GitError::Unreachable { repo, detail: message }
        }
        _ => GitError::Other { repo, detail: message },
    }
}

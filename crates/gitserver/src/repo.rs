//! Fixture repositories built with the real `git` CLI.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A bare repository under a server root plus a private work tree that
/// pushes into it.
///
/// Fixtures go through a real push rather than writing refs directly so the
/// bare repository looks exactly like one a git host would hold (packed
/// objects, refs updated by receive-pack), and so tests can move tags and
/// branches the way upstream projects do. The work tree lives in the system
/// temp directory, outside the served root, and is removed on drop; the bare
/// repository belongs to the caller's root and is left alone.
#[derive(Debug)]
pub struct TestRepo {
    /// The bare repository, `<root>/<rel>`, absolute.
    pub path: PathBuf,
    work: PathBuf,
    counter: AtomicU64,
}

/// Makes work-tree directory names unique within the process.
static WORK_DIRS: AtomicU64 = AtomicU64::new(0);

impl TestRepo {
    /// Creates an empty bare repository at `<root>/<rel>` (default branch
    /// `main`, e.g. `rel = "private/app.git"`) and a work tree for it.
    pub fn create(root: &Path, rel: &str) -> io::Result<TestRepo> {
        let rel_path = Path::new(rel);
        if rel.is_empty() || rel_path.is_absolute() || rel.split('/').any(|s| s == "..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("repository path must be relative and stay under the root: {rel:?}"),
            ));
        }
        let path = std::path::absolute(root.join(rel_path))?;
        std::fs::create_dir_all(&path)?;
        git(
            None,
            [
                OsStr::new("init"),
                OsStr::new("--quiet"),
                OsStr::new("--bare"),
                OsStr::new("--initial-branch=main"),
                path.as_os_str(),
            ],
        )?;

        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let work = std::env::temp_dir().join(format!(
            "benchform-gitserver-work-{}-{}-{nanos}",
            std::process::id(),
            WORK_DIRS.fetch_add(1, Ordering::Relaxed),
        ));
        git(None, [OsStr::new("init"), OsStr::new("--quiet"), OsStr::new("--initial-branch=main"), work.as_os_str()])?;
        let repo = TestRepo { path, work, counter: AtomicU64::new(0) };
        // Identity is also passed with `-c` on every command; setting it
        // locally makes the work tree usable by hand when debugging a test.
        repo.work_git(["config", "user.name", IDENTITY_NAME])?;
        repo.work_git(["config", "user.email", IDENTITY_EMAIL])?;
        repo.work_git([OsStr::new("remote"), OsStr::new("add"), OsStr::new("origin"), repo.path.as_os_str()])?;
        Ok(repo)
    }

    /// Commits a change on `main` and pushes it; returns the commit id.
    /// Each call changes the file contents, so commits are never empty.
    pub fn commit(&self, message: &str) -> io::Result<String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        std::fs::write(self.work.join("content.txt"), format!("{message}\n{n}\n"))?;
        self.work_git(["add", "--all"])?;
        self.work_git(["commit", "--quiet", "--message", message])?;
        let id = self.work_git(["rev-parse", "HEAD"])?;
        self.work_git(["push", "--quiet", "origin", "HEAD:refs/heads/main"])?;
        Ok(id)
    }

    /// Commits `files` (paths relative to the repository's root, with their contents) on `main`
    /// together with the changing `content.txt`, and pushes; returns the commit id. An app's
    /// `patches.txt` and DocType definitions are written this way.
    pub fn commit_files(&self, message: &str, files: &[(&str, &str)]) -> io::Result<String> {
        for (path, content) in files {
            let rel = Path::new(path);
            if path.is_empty() || rel.is_absolute() || path.split('/').any(|s| s == ".." || s == ".git") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("file path must stay in the work tree: {path:?}"),
                ));
            }
            let target = self.work.join(rel);
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(target, content)?;
        }
        self.commit(message)
    }

    /// Creates a lightweight tag at `commit` and pushes it.
    pub fn tag_lightweight(&self, name: &str, commit: &str) -> io::Result<()> {
        check_arg(name)?;
        check_arg(commit)?;
        self.work_git(["tag", name, commit])?;
        self.push_tag(name, false)
    }

    /// Creates an annotated tag at `commit`, pushes it, and returns the id
    /// of the tag object (what `ls-remote` shows for the tag itself; the
    /// commit appears on the peeled `^{}` line).
    pub fn tag_annotated(&self, name: &str, commit: &str) -> io::Result<String> {
        check_arg(name)?;
        check_arg(commit)?;
        self.work_git(["tag", "--annotate", "--message", name, name, commit])?;
        self.push_tag(name, false)?;
        self.work_git(["rev-parse", &format!("refs/tags/{name}")])
    }

    /// Re-points an existing (lightweight) tag at `commit` and force-pushes
    /// it, as upstreams sometimes do; lets tests check that a moved tag is
    /// noticed.
    pub fn move_tag(&self, name: &str, commit: &str) -> io::Result<()> {
        check_arg(name)?;
        check_arg(commit)?;
        self.work_git(["tag", "--force", name, commit])?;
        self.push_tag(name, true)
    }

    /// Creates or moves branch `name` in the bare repository to `commit`.
    /// Only the remote branch changes: [`TestRepo::commit`] keeps building
    /// on the work tree's `main`, so moving `main` backwards here makes the
    /// next `commit` fail as a non-fast-forward.
    pub fn branch(&self, name: &str, commit: &str) -> io::Result<()> {
        check_arg(name)?;
        check_arg(commit)?;
        self.work_git(["push", "--quiet", "--force", "origin", &format!("{commit}:refs/heads/{name}")])?;
        Ok(())
    }

    /// `file://` URL of the bare repository, for clients that should bypass
    /// HTTP (e.g. comparing results with and without the server).
    pub fn file_url(&self) -> String {
        format!("file://{}", self.path.display())
    }

    fn push_tag(&self, name: &str, force: bool) -> io::Result<()> {
        let refspec = format!("refs/tags/{name}:refs/tags/{name}");
        if force {
            self.work_git(["push", "--quiet", "--force", "origin", &refspec])?;
        } else {
            self.work_git(["push", "--quiet", "origin", &refspec])?;
        }
        Ok(())
    }

    fn work_git<I, S>(&self, args: I) -> io::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        git(Some(&self.work), args)
    }
}

impl Drop for TestRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

const IDENTITY_NAME: &str = "benchform test";
const IDENTITY_EMAIL: &str = "test@benchform.invalid";

/// Refuses values that git would parse as options, since names and commits
/// are passed as positional arguments.
fn check_arg(value: &str) -> io::Result<()> {
    if value.is_empty() || value.starts_with('-') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("invalid git name or revision: {value:?}")));
    }
    Ok(())
}

/// Runs `git` with an environment that ignores system and user config (so a
/// developer's `~/.gitconfig` — signing, hooks, default branch — cannot
/// change fixtures) and returns trimmed stdout.
fn git<I, S>(cwd: Option<&Path>, args: I) -> io::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for var in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.args(["-c", &format!("user.name={IDENTITY_NAME}")])
        .args(["-c", &format!("user.email={IDENTITY_EMAIL}")])
        .args(["-c", "init.defaultBranch=main"])
        .args(["-c", "commit.gpgSign=false"])
        .args(["-c", "tag.gpgSign=false"])
        .args(args)
        .stdin(Stdio::null());
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

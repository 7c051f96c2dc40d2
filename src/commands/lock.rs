//! `benchform lock`: pin refs to commits, or check the pins (offline, or against the remotes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use benchform_git::{Auth, GitError};
use benchform_manifest::lock::{self, LockError, Mismatch, NotFound, RemoteDrift, RemoteRef, Resolved, Update, Wanted};
use benchform_manifest::validate::source_path;
use benchform_manifest::{Code, Diagnostic, LockFile, Manifest, Severity, Validation};

use crate::Status;
use crate::cli::LockArgs;
use crate::render::fail;
use crate::shell::Shell;
use crate::{load, render};

/// The lock's file name, next to the manifest.
pub use benchform_manifest::lock::LOCK_FILE;
/// How long one remote may take to answer, unless BENCHFORM_GIT_TIMEOUT (seconds) says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(shell: &Shell, args: &LockArgs) -> Status {
    let loaded = match load::load(args.manifest.file.as_deref()) {
        Ok(l) => l,
        Err(diagnostics) => return fail(shell, &diagnostics),
    };
    let errors: Vec<Diagnostic> = loaded.validation.diagnostics.iter().filter(|d| d.is_error()).cloned().collect();
    let Some(manifest) = loaded.validation.manifest.as_ref().filter(|_| errors.is_empty()) else {
        shell.err_line(&format!(
            "{} has errors; fix them first (`benchform validate` lists them all):\n",
            loaded.display
        ));
        return fail(shell, &errors);
    };
    let lock_path = loaded.dir.join(LOCK_FILE);
    let lock_display = display_near(&loaded.display, LOCK_FILE);
    let existing = match read_lock(&lock_path, &lock_display) {
        Ok(l) => l,
        Err(diagnostics) => return fail(shell, &diagnostics),
    };
    let ctx = Ctx { manifest, validation: &loaded.validation, lock_display: &lock_display };
    if args.check {
        ctx.check(shell, existing.as_ref(), args.offline)
    } else {
        let update = match &args.update {
            None => Update::Needed,
            Some(names) if names.is_empty() => Update::All,
            Some(names) => Update::Names(names.clone()),
        };
        ctx.write(shell, existing.as_ref(), &update, &lock_path)
    }
}

struct Ctx<'a> {
    manifest: &'a Manifest,
    validation: &'a Validation,
    lock_display: &'a str,
}

impl Ctx<'_> {
    fn at(&self, code: Code, name: &str, field: &str, message: String, hint: Option<String>) -> Diagnostic {
        self.validation.locate(Severity::Error, code, &source_path(self.manifest, name, field), message, hint)
    }

    fn write(&self, shell: &Shell, existing: Option<&LockFile>, update: &Update, lock_path: &Path) -> Status {
        let wanted = match lock::plan_lock(self.manifest, existing, update) {
            Ok(w) => w,
            Err(LockError::UnknownUpdateName { name, suggestion }) => {
                let hint = suggestion.map(|s| format!("did you mean `{s}`?"));
                return fail(
                    shell,
                    &[Diagnostic::unplaced(
                        self.validation.file(),
                        Severity::Error,
                        Code::LockOutOfDate,
                        format!("`--update {name}`: no source of that name (frappe or an app) in the manifest"),
                        hint,
                    )],
                );
            }
            Err(e) => return fail(shell, &[self.unexpected(&e)]),
        };
        let to_resolve: Vec<&Wanted> = wanted.iter().filter(|w| w.keep.is_none()).collect();
        let (resolved, mut problems) = self.resolve(&to_resolve);
        // The policy is checked on whatever did resolve, so that one run names every problem
        // (a missing ref and a branch under immutable_refs together, not one after the other).
        match lock::finish_lock(self.manifest, &wanted, &resolved) {
            Ok(new_lock) if problems.is_empty() => return self.save(shell, existing, &new_lock, &wanted, lock_path),
            Ok(_) => {}
            Err(errors) => problems.extend(errors.iter().map(|e| self.lock_error(e))),
        }
        shell.err_line(&format!("{} was not written.\n", self.lock_display));
        fail(shell, &problems)
    }

    fn save(
        &self,
        shell: &Shell,
        existing: Option<&LockFile>,
        new_lock: &LockFile,
        wanted: &[Wanted],
        lock_path: &Path,
    ) -> Status {
        let mut table = String::new();
        for w in wanted {
            let Some(e) = new_lock.entry(&w.name) else { continue };
            let how = match (&w.keep, existing.and_then(|l| l.entry(&w.name))) {
                (Some(_), _) => "kept",
                (None, Some(old)) if old == e => "unchanged",
                (None, Some(_)) => "updated",
                (None, None) => "added",
            };
            table.push_str(&format!(
                "  {:<20} {:<18} {:<6} {}  {how}\n",
                e.name,
                e.git_ref,
                e.kind.as_str(),
                short(&e.commit)
            ));
        }
        shell.out(&table);
        let text = new_lock.render();
        let unchanged = std::fs::read_to_string(lock_path).is_ok_and(|old| old == text);
        if unchanged {
            shell.line(&format!("{} is up to date ({} entries).", self.lock_display, new_lock.entries.len()));
            return Status::Success;
        }
        match write_atomic(lock_path, &text) {
            Ok(()) => {
                shell.line(&format!("Wrote {} ({} entries).", self.lock_display, new_lock.entries.len()));
                Status::Success
            }
            Err(e) => fail(
                shell,
                &[Diagnostic::unplaced(
                    self.lock_display,
                    Severity::Error,
                    Code::ReadFailed,
                    format!("cannot write {}: {e}", self.lock_display),
                    Some("check that the folder is writable; the old lock was left as it was".to_string()),
                )],
            ),
        }
    }

    fn check(&self, shell: &Shell, existing: Option<&LockFile>, offline: bool) -> Status {
        let Some(lock_file) = existing else {
            return fail(
                shell,
                &[Diagnostic::unplaced(
                    self.lock_display,
                    Severity::Error,
                    Code::LockMissing,
                    format!("no {} next to the manifest", self.lock_display),
                    Some("run `benchform lock` and commit benchform.lock with the manifest".to_string()),
                )],
            );
        };
        let mismatches = lock::check_agreement(self.manifest, lock_file);
        let mut problems: Vec<Diagnostic> = mismatches.iter().map(|m| self.mismatch(m)).collect();
        let mut warnings = Vec::new();
        let mut checked = 0;
        if !offline {
            // Only entries that agree with the manifest are worth asking the remote about.
            let agreeing: Vec<Wanted> = lock::plan_lock(self.manifest, Some(lock_file), &Update::Needed)
                .unwrap_or_default()
                .into_iter()
                .filter(|w| w.keep.is_some())
                .collect();
            let refs: Vec<&Wanted> = agreeing.iter().collect();
            let (listings, failures) = self.list(&refs);
            problems.extend(failures);
            for w in &agreeing {
                let (Some(entry), Some(listing)) = (&w.keep, listings.get(&w.name)) else { continue };
                checked += 1;
                let now = lock::resolve_ref(listing, &w.git_ref);
                if let Some(drift) = lock::compare_remote(entry, now.as_ref()) {
                    let d = self.drift(&drift, &w.repo);
                    if drift.is_error() { problems.push(d) } else { warnings.push(d) }
                }
            }
        }
        for w in &warnings {
            shell.err(&render::diagnostic_text(w));
            shell.err("\n");
        }
        if !problems.is_empty() {
            return fail(shell, &problems);
        }
        if offline {
            shell.line(&format!(
                "{} agrees with {} ({} entries).",
                self.lock_display,
                self.validation.file(),
                lock_file.entries.len()
            ));
        } else {
            shell.line(&format!(
                "{} agrees with {} and every locked ref still points at its commit ({checked} remotes checked).",
                self.lock_display,
                self.validation.file()
            ));
        }
        Status::Success
    }

    /// List the remotes of `wanted` in parallel, then resolve each ref.
    fn resolve(&self, wanted: &[&Wanted]) -> (BTreeMap<String, Resolved>, Vec<Diagnostic>) {
        let (listings, mut problems) = self.list(wanted);
        let mut resolved = BTreeMap::new();
        for w in wanted {
            let Some(listing) = listings.get(&w.name) else { continue };
            match lock::resolve_ref(listing, &w.git_ref) {
                Ok(r) => {
                    resolved.insert(w.name.clone(), r);
                }
                Err(NotFound { suggestion }) => {
                    let hint = suggestion.map(|s| format!("did you mean `{s}`?"));
                    problems.push(self.at(
                        Code::RefNotFound,
                        &w.name,
                        "ref",
                        format!("{}: {} has no branch or tag `{}`", w.name, w.repo, w.git_ref),
                        hint.or_else(|| {
                            Some("check the ref; `git ls-remote URL` lists what the remote has".to_string())
                        }),
                    ));
                }
            }
        }
        (resolved, problems)
    }

    /// ls-remote every source at once, each bounded by a timeout. Tokens come from the variables
    /// the manifest names and go nowhere but the credentials callback.
    fn list(&self, wanted: &[&Wanted]) -> (BTreeMap<String, Vec<RemoteRef>>, Vec<Diagnostic>) {
        let timeout = benchform_git::timeout_from_env(DEFAULT_TIMEOUT);
        let (tx, rx) = mpsc::channel();
        for w in wanted {
            let auth = Auth::from_env(w.token_env.as_deref(), &w.token_user);
            let (tx, name, repo) = (tx.clone(), w.name.clone(), w.repo.clone());
            tracing::info!(source = %name, repo = %repo, "listing remote refs");
            // Detached on purpose: a remote that never answers must not hold benchform hostage.
            std::thread::spawn(move || {
                let _ = tx.send((name, benchform_git::ls_remote(&repo, auth.as_ref())));
            });
        }
        drop(tx);
        let deadline = Instant::now() + timeout;
        let mut listings = BTreeMap::new();
        let mut problems = Vec::new();
        while listings.len() + problems.len() < wanted.len() {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((name, Ok(refs))) => {
                    listings.insert(name, refs);
                }
                Ok((name, Err(e))) => {
                    if let Some(w) = wanted.iter().find(|w| w.name == name) {
                        problems.push(self.git_error(w, &e));
                    }
                }
                Err(_) => {
                    for w in wanted.iter().filter(|w| !listings.contains_key(&w.name)) {
                        let e = GitError::Unreachable {
                            repo: w.repo.clone(),
                            detail: format!("no answer within {} s", timeout.as_secs()),
                        };
                        problems.push(self.git_error(w, &e));
                    }
                    break;
                }
            }
        }
        (listings, problems)
    }

    fn git_error(&self, w: &Wanted, e: &GitError) -> Diagnostic {
        let var_hint = |what: &str| match &w.token_env {
            Some(var) if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) => {
                format!("{what}: export the token in {var} (named by `token_env`)")
            }
            Some(var) => format!("{what}: check the token in {var} (scope, expiry; GitLab wants `token_user: oauth2`)"),
            None => format!("{what}: add `token_env:` to the app, naming a variable that holds a read token"),
        };
        let (code, hint) = match e {
            GitError::AuthRequired { .. } => (Code::RemoteAuth, var_hint("the repository is private")),
            GitError::AuthRejected { .. } => (Code::RemoteAuth, var_hint("the token was rejected")),
            GitError::NotFound { .. } => (
                Code::RemoteNotFound,
                "check the URL; some hosts answer 'not found' to a token without access".to_string(),
            ),
            GitError::Unreachable { .. } => {
                (Code::RemoteUnreachable, "check the host name and the network, then run the command again".to_string())
            }
            GitError::BadResponse { .. } => (
                Code::RemoteError,
                "the server or a proxy in front of it sends a body libgit2 cannot frame (no Content-Length, not \
                 chunked, ended by closing the connection): serve git over HTTP/1.1 with Content-Length or chunked \
                 transfer (e.g. `git http-backend` behind nginx or Apache), or point `repo` at a URL that does"
                    .to_string(),
            ),
            GitError::Other { .. } | GitError::NotARepository { .. } | GitError::BadRevision { .. } => {
                (Code::RemoteError, "run with -v for details".to_string())
            }
        };
        self.at(code, &w.name, "repo", format!("{}: {e}", w.name), Some(hint))
    }

    fn lock_error(&self, e: &LockError) -> Diagnostic {
        match e {
            LockError::BranchNotAllowed { name, git_ref, newest_tag } => {
                let pin = match newest_tag {
                    Some(t) => format!("pin a tag (the newest on the remote is `{t}`)"),
                    None => "pin a tag".to_string(),
                };
                self.at(
                    Code::BranchRef,
                    name,
                    "ref",
                    format!("{name}: `{git_ref}` is a branch, but policy.immutable_refs requires tags"),
                    Some(format!("{pin}, or set `policy.immutable_refs: false` to track a branch (the lock still pins its commit)")),
                )
            }
            LockError::AmbiguousRef { name, git_ref, repo } => self.at(
                Code::AmbiguousRef,
                name,
                "ref",
                format!("{name}: `{git_ref}` is both a branch and a tag on {repo}; bench would clone the branch"),
                Some("rename the tag or the branch on the remote, or name the other ref".to_string()),
            ),
            other => self.unexpected(other),
        }
    }

    fn unexpected(&self, e: &LockError) -> Diagnostic {
        Diagnostic::unplaced(self.validation.file(), Severity::Error, Code::RemoteError, e.to_string(), None)
    }

    fn mismatch(&self, m: &Mismatch) -> Diagnostic {
        let hint = Some("run `benchform lock` and commit the updated benchform.lock".to_string());
        match m {
            Mismatch::Missing { name } | Mismatch::RefChanged { name, .. } => {
                self.at(Code::LockOutOfDate, name, "ref", m.to_string(), hint)
            }
            Mismatch::RepoChanged { name, .. } => self.at(Code::LockOutOfDate, name, "repo", m.to_string(), hint),
            Mismatch::BranchNotAllowed { name, .. } => self.at(
                Code::BranchRef,
                name,
                "ref",
                m.to_string(),
                Some("pin a tag and run `benchform lock`, or set `policy.immutable_refs: false`".to_string()),
            ),
            Mismatch::Extra { .. } | Mismatch::UnsupportedVersion { .. } => {
                Diagnostic::unplaced(self.lock_display, Severity::Error, Code::LockOutOfDate, m.to_string(), hint)
            }
        }
    }

    fn drift(&self, drift: &RemoteDrift, repo: &str) -> Diagnostic {
        match drift {
            RemoteDrift::TagMoved { name, git_ref, .. } => self.at(
                Code::TagMoved,
                name,
                "ref",
                format!("SUPPLY-CHAIN ALARM: {drift} on {repo}"),
                Some(format!(
                    "a published tag was rewritten, so a build would get code the lock does not pin; find out who moved \
                     {git_ref} and why, and only if the new commit is trusted run `benchform lock --update {name}`"
                )),
            ),
            RemoteDrift::RefGone { name, .. } => self.at(
                Code::RefGone,
                name,
                "ref",
                format!("{drift} ({repo})"),
                Some("builds would fail: pin a ref that exists and run `benchform lock`".to_string()),
            ),
            RemoteDrift::KindChanged { name, .. } => self.at(
                Code::RefKindChanged,
                name,
                "ref",
                format!("{drift} ({repo})"),
                Some(format!("check the remote, then run `benchform lock --update {name}`")),
            ),
            RemoteDrift::BranchAdvanced { name, .. } => {
                let mut d = self.at(
                    Code::BranchAdvanced,
                    name,
                    "ref",
                    format!("{drift} ({repo})"),
                    Some(format!("the lock keeps the old commit; `benchform lock --update {name}` takes the new one")),
                );
                d.severity = Severity::Warning;
                d
            }
        }
    }
}

fn read_lock(path: &Path, display: &str) -> Result<Option<LockFile>, Vec<Diagnostic>> {
    match std::fs::read(path) {
        Ok(bytes) => lock::parse_lock(display, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(vec![Diagnostic::unplaced(
            display,
            Severity::Error,
            Code::ReadFailed,
            format!("cannot read {display}: {e}"),
            None,
        )]),
    }
}

/// Replace the file in one step, so that a crash never leaves half a lock.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_file_name(format!(".{LOCK_FILE}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `dir/benchform.yaml` → `dir/benchform.lock`, as the user would name it.
fn display_near(manifest_display: &str, file: &str) -> String {
    match Path::new(manifest_display).parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.join(file).display().to_string(),
        None => file.to_string(),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

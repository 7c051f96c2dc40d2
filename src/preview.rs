//! The migrate preview's reads from outside (`benchform_core::patches` decides what they mean):
//! each app's `patches.txt` at its locked commit and the DocType definitions changed since the
//! commit each site last migrated at, from the app repositories through the code cache (so a plan
//! made before the image is built has them); and each site's `Patch Log`, from its database.
//!
//! Nothing here fails a plan: what cannot be read makes that part of the preview unknown, and the
//! plan says why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use benchform_bench::Bench;
use benchform_core::patches::{self, PreviewInputs, PreviewRequest};
use benchform_core::plan::Plan;
use benchform_core::status::Observed;
use benchform_git::{Auth, CodeCache};

use crate::observe::{Prepared, Session};

/// What `Preview::source` says.
pub const SOURCE: &str = "patches.txt of each app at its locked commit (app repositories), the site's Patch Log";

/// How long the repositories may take, all together, before the preview goes without them.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where fetched commits are kept: `$BENCHFORM_CACHE_DIR`, else `$XDG_CACHE_HOME/benchform`,
/// else `~/.cache/benchform`; `git/` under it.
pub fn cache_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = var("BENCHFORM_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("benchform")))
        .or_else(|| var("HOME").map(|h| h.join(".cache/benchform")))
        .unwrap_or_else(|| std::env::temp_dir().join("benchform-cache"));
    base.join("git")
}

/// One app's source, as the lock pins it.
#[derive(Debug, Clone)]
struct Source {
    repo: String,
    git_ref: String,
    commit: String,
    auth: Option<Auth>,
    /// The variable the manifest names for the token, when it is not set.
    unset_token: Option<String>,
}

/// Put a preview on every `migrate` step of `plan`.
pub fn attach(
    runtime: &tokio::runtime::Runtime,
    session: &Session,
    p: &Prepared,
    observed: &Observed,
    plan: &mut Plan,
) {
    let requests = patches::requests(plan, observed);
    if requests.is_empty() {
        return;
    }
    let new: BTreeMap<String, String> = p.desired.image_commits.clone();
    // A site restored before its migrate gets no preview to read for (its data is the backup's).
    let readable: Vec<PreviewRequest> = requests.iter().filter(|r| !r.restored_first).cloned().collect();
    let sites: Vec<String> = readable.iter().map(|r| r.site.clone()).collect();
    let (code, doctypes) = read_code(p, &readable);
    let mut inputs = PreviewInputs { source: SOURCE.to_string(), code, doctypes, ..Default::default() };
    inputs.logs = runtime.block_on(patch_logs(session, p, observed, &sites));
    patches::attach(plan, &requests, &new, &inputs);
}

/// Each site's Patch Log, or per site why not.
async fn patch_logs(
    session: &Session,
    p: &Prepared,
    observed: &Observed,
    sites: &[String],
) -> BTreeMap<String, Result<BTreeSet<String>, String>> {
    let backend = &p.manifest.deploy.backend_service;
    let all = |why: String| sites.iter().map(|s| (s.clone(), Err(why.clone()))).collect();
    let Some(container) = &observed.bench_container else {
        return all(format!("no {backend} container is running to read it"));
    };
    match (Bench { engine: &session.engine, container: container.clone() }).patch_logs(sites).await {
        Ok(logs) => logs,
        Err(e) => all(format!("it could not be read: {e}")),
    }
}

type Code = BTreeMap<String, Result<Option<patches::PatchesFile>, String>>;
type Doctypes = BTreeMap<(String, String), Result<u32, String>>;

/// The new code's `patches.txt` of every app the requests name, and the DocTypes changed from
/// each old commit they name: one thread per app, all bounded by one timeout
/// (`BENCHFORM_GIT_TIMEOUT` seconds, as for `lock`).
fn read_code(p: &Prepared, requests: &[PreviewRequest]) -> (Code, Doctypes) {
    // Per app: the old commits to compare with, each with the ref it was reached by.
    let mut olds: BTreeMap<String, BTreeSet<(String, Option<String>)>> = BTreeMap::new();
    for r in requests {
        for app in &r.apps {
            let entry = olds.entry(app.clone()).or_default();
            let Some(old) = r.old.as_ref().and_then(|o| o.get(app)) else { continue };
            if p.desired.image_commits.get(app) != Some(old) {
                entry.insert((old.clone(), r.old_refs.as_ref().and_then(|refs| refs.get(app)).cloned()));
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    let mut code = Code::new();
    let mut doctypes = Doctypes::new();
    let cache = CodeCache::new(cache_dir());
    let mut waiting = 0usize;
    for (app, old) in olds {
        let Some(source) = source(p, &app) else {
            code.insert(app.clone(), Err(format!("{app} is not in the manifest or the lock")));
            continue;
        };
        let (tx, cache) = (tx.clone(), cache.clone());
        waiting += 1;
        tracing::info!(app = %app, repo = %source.repo, "reading patches.txt at the locked commit");
        // Detached on purpose: a remote that never answers must not hold the plan hostage.
        std::thread::spawn(move || {
            let _ = tx.send(read_app(&cache, &app, &source, &old));
        });
    }
    drop(tx);
    let timeout = benchform_git::timeout_from_env(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + timeout;
    while waiting > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((app, patches, changed)) => {
                waiting -= 1;
                code.insert(app.clone(), patches);
                doctypes.extend(changed.into_iter().map(|(old, n)| ((app.clone(), old), n)));
            }
            Err(_) => break,
        }
    }
    (code, doctypes)
}

/// The lock's pin of `app` (frappe included), with its token from the variable the manifest names.
fn source(p: &Prepared, app: &str) -> Option<Source> {
    let entry = p.lock.entries.iter().find(|e| e.name == app)?;
    let declared = p.manifest.apps.iter().find(|a| a.name == app);
    let var = declared.and_then(|a| a.token_env.clone());
    let auth = declared.and_then(|a| Auth::from_env(a.token_env.as_deref(), a.token_user()));
    let unset_token = if auth.is_none() { var } else { None };
    Some(Source {
        repo: entry.repo.clone(),
        git_ref: entry.git_ref.clone(),
        commit: entry.commit.clone(),
        auth,
        unset_token,
    })
}

type AppRead = (String, Result<Option<patches::PatchesFile>, String>, Vec<(String, Result<u32, String>)>);

/// One app: its `patches.txt` at the locked commit, and the DocTypes changed from each old commit.
fn read_app(cache: &CodeCache, app: &str, s: &Source, olds: &BTreeSet<(String, Option<String>)>) -> AppRead {
    let repo = match cache.open(&s.repo, s.auth.as_ref(), &s.git_ref, &s.commit) {
        Ok(repo) => repo,
        Err(e) => {
            let unset = s.unset_token.as_ref().map(|v| format!("; {v} is not set")).unwrap_or_default();
            let why = format!("{e} (at {}{unset})", s.git_ref);
            let changed = olds.iter().map(|(old, _)| (old.clone(), Err(why.clone()))).collect();
            return (app.to_string(), Err(why), changed);
        }
    };
    // The file Frappe reads: `<app module>/patches.txt`, the module folder named like the app.
    let file = match repo.read(&s.commit, &format!("{app}/patches.txt")) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => match String::from_utf8(bytes) {
            Ok(text) => patches::parse_patches_txt(&text).map(Some),
            Err(_) => Err("it is not UTF-8 text".to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let mut changed = Vec::new();
    for (old, old_ref) in olds {
        let count = cache
            .open(&s.repo, s.auth.as_ref(), old_ref.as_deref().unwrap_or(&s.git_ref), old)
            .and_then(|with_old| with_old.changed_paths(old, &s.commit))
            .map(|paths| paths.iter().filter(|p| patches::is_doctype_definition(p)).count() as u32)
            .map_err(|e| e.to_string());
        changed.push((old.clone(), count));
    }
    (app.to_string(), file, changed)
}

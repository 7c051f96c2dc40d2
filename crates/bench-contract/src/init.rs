//! `bench init`: what frappe_docker's Containerfiles run at build time.
//!
//! ```text
//! bench init --apps_path=/opt/frappe/apps.json --frappe-branch=B --frappe-path=URL --verbose frappe-bench
//! ```
//!
//! Real bench clones frappe and every app of the apps.json array (only `url`
//! and `branch` are read; `branch` defaults to the remote's default branch),
//! in file order, with `git clone <url> --branch <ref> --depth 1 --origin
//! upstream`, then records them in `sites/apps.txt` and `sites/apps.json`.
//! The fixture does not clone: it resolves each ref against the real server
//! (see [`crate::git`]) and writes `apps/<app>/{VERSION,REF,COMMIT}` as the
//! image truth. Failures mirror git's and bench's: a missing ref, a failed
//! authentication, a directory that already exists (duplicate app or a
//! `frappe` entry → bench's overwrite prompt hits EOF → `Aborted!`).
//!
//! Tokens: bench logs the clone command with the URL as given, so a token in
//! an apps.json URL ends up in the image's `logs/bench.log` (contract §1,
//! §10.5, inferred). The fixture masks it (`http://***@host/…`) unless the
//! test-only fault `BENCH_CONTRACT_FAULT=leak-token-in-log` is set at build
//! time, which writes the raw URL to both stdout and `logs/bench.log` so
//! benchform's masking and image scanning can be tested.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::args::{Spec, flag, value};
use crate::git::{GitUrl, ls_remote};
use crate::out::{Fail, Res, confirm, flush, os_error, traceback};
use crate::py;
use crate::util::{Clock, write_atomic};

const SPEC: Spec = Spec {
    prog: "bench init",
    opts: &[
        value(&["--apps_path"]),
        value(&["--frappe-branch"]),
        value(&["--frappe-path"]),
        value(&["--clone-from"]),
        value(&["--python"]),
        value(&["--install-app"]),
        flag(&["--verbose"]),
        flag(&["--no-procfile"]),
        flag(&["--no-backups"]),
        flag(&["--skip-redis-config-generation"]),
        flag(&["--skip-assets"]),
        flag(&["--ignore-exist"]),
        flag(&["--clone-without-update"]),
        flag(&["--dev"]),
    ],
    required: &["PATH"],
    optional: &[],
};

/// frappe's realtime server, reduced to what a deployment can observe: node listening on the
/// `socketio_port` of `sites/common_site_config.json` (9000 by default), answering every request.
const SOCKETIO_JS: &str = r#"// bench-contract stand-in for frappe's socketio.js
const fs = require("fs");
const http = require("http");
let port = 9000;
try {
  const conf = JSON.parse(fs.readFileSync("/home/frappe/frappe-bench/sites/common_site_config.json", "utf8"));
  if (conf.socketio_port) port = Number(conf.socketio_port);
} catch (e) {}
http.createServer((req, res) => { res.writeHead(200); res.end("socketio\n"); }).listen(port, () => {
  console.log(`Realtime service listening on: ws://0.0.0.0:${port}`);
});
process.on("SIGTERM", () => process.exit(0));
"#;

const DEFAULT_FRAPPE_PATH: &str = "https://github.com/frappe/frappe";

/// One app to fetch: the name it gets under `apps/`, its URL and the
/// requested ref (`None` = remote default branch).
#[derive(Debug)]
struct Entry {
    name: String,
    url: String,
    branch: Option<String>,
}

/// Bench log (`logs/bench.log`) in bench's format:
/// `%(asctime)s %(levelname)s %(message)s`.
#[derive(Debug)]
struct Log {
    path: PathBuf,
}

impl Log {
    fn write(&self, level: &str, message: &str) {
        let line = format!("{} {level} {message}\n", Clock::now().log_time());
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

pub fn run(args: &[String]) -> Res<()> {
    let parsed = SPEC.parse(args)?;
    let path_arg = parsed.positional(0).unwrap_or("frappe-bench").to_owned();
    // frappe_docker runs `bench init … frappe-bench` in /home/frappe; tests
    // point BENCH_ROOT at a temporary directory instead.
    let root = match std::env::var_os("BENCH_ROOT").filter(|v| !v.is_empty()) {
        Some(r) => PathBuf::from(r),
        None => std::env::current_dir().map_err(|e| os_error("cwd", &e))?.join(&path_arg),
    };
    if root.join("apps").exists() || root.join("sites").exists() {
        println!("Bench instance already exists at {path_arg}");
        return Err(Fail(1));
    }
    let faults = std::env::var("BENCH_CONTRACT_FAULT").unwrap_or_default();
    let fault = |name: &str| faults.split([',', ' ']).any(|f| f.trim() == name);
    let leak = fault("leak-token-in-log");

    for dir in ["apps", "sites/assets", "logs", "env/bin", "config/pids"] {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(|e| os_error(&d.display().to_string(), &e))?;
    }
    // The virtualenv's `gunicorn` (frappe_docker's start.sh runs `env/bin/gunicorn`): this binary,
    // which serves when called by that name (see serve.rs).
    let me = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/local/bin/bench"));
    let gunicorn = root.join("env/bin/gunicorn");
    std::os::unix::fs::symlink(&me, &gunicorn).map_err(|e| os_error(&gunicorn.display().to_string(), &e))?;
    // What `bench build` leaves: the built assets' manifest (the Containerfile moves sites/assets
    // into the image layer).
    write_file(&root.join("sites/assets/assets.json"), "{}")?;
    let log = Log { path: root.join("logs").join("bench.log") };
    write_file(&root.join("sites").join("common_site_config.json"), "{}")?;
    write_file(&root.join("sites").join("apps.txt"), "")?;

    let mut entries = vec![Entry {
        name: "frappe".to_owned(),
        url: parsed.value("--frappe-path").unwrap_or(DEFAULT_FRAPPE_PATH).to_owned(),
        branch: parsed.value("--frappe-branch").filter(|b| !b.is_empty()).map(str::to_owned),
    }];
    if let Some(apps_path) = parsed.value("--apps_path") {
        entries.extend(read_apps_json(Path::new(apps_path))?);
    }

    for entry in &entries {
        get_app(&root, &path_arg, entry, &log, leak)?;
    }
    // Backend faults, baked into the image for `gunicorn` (see serve.rs).
    for (name, marker) in [("backend-down", crate::serve::BACKEND_DOWN), ("backend-crash", crate::serve::BACKEND_CRASH)]
    {
        if fault(name) {
            write_file(&root.join(marker), name)?;
        }
    }
    // `slow-init:N`: a build that takes N seconds more (to interrupt a build in tests).
    if let Some(secs) = faults.split([',', ' ']).find_map(|f| f.trim().strip_prefix("slow-init:")?.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    println!("SUCCESS: Bench {path_arg} initialized");
    log.write("INFO", &format!("Bench {path_arg} initialized"));
    Ok(())
}

/// `bench.app.install_apps_from_path`: a JSON array of `{"url", "branch"}`.
/// An absent or empty file means frappe only (frappe_docker only passes
/// `--apps_path` for a non-empty secret).
fn read_apps_json(path: &Path) -> Res<Vec<Entry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(os_error(&path.display().to_string(), &e)),
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let frames = [(
        "/usr/local/lib/python3.11/site-packages/bench/app.py",
        1,
        "install_apps_from_path",
        "apps = get_apps_json(path)",
    )];
    let value: Value =
        serde_json::from_str(&text).map_err(|e| traceback(&frames, &format!("json.decoder.JSONDecodeError: {e}")))?;
    let Value::Array(items) = value else {
        return Err(traceback(&frames, "TypeError: string indices must be integers"));
    };
    let mut entries = Vec::new();
    for item in items {
        let url = item.get("url").and_then(Value::as_str).map(str::to_owned);
        let Some(url) = url else {
            return Err(traceback(&frames, "KeyError: 'url'"));
        };
        let name = GitUrl::parse(&url).map(|u| u.repo_name()).unwrap_or_else(|| url.clone());
        let branch = item.get("branch").and_then(Value::as_str).filter(|b| !b.is_empty()).map(str::to_owned);
        entries.push(Entry { name, url, branch });
    }
    Ok(entries)
}

fn get_app(root: &Path, path_arg: &str, entry: &Entry, log: &Log, leak: bool) -> Res<()> {
    let app_dir = root.join("apps").join(&entry.name);
    if app_dir.exists() {
        // bench asks before overwriting; without a terminal that is EOF.
        confirm(&format!(
            "A directory for the application '{}' already exists. Do you want to continue and overwrite it?",
            entry.name
        ))?;
        println!("Directory for the application '{}' already exists; the fixture never overwrites.", entry.name);
        return Err(Fail(1));
    }
    let url = GitUrl::parse(&entry.url);
    let shown_url = match (&url, leak) {
        (Some(u), false) => u.masked(),
        _ => entry.url.clone(),
    };
    let branch_arg = entry.branch.as_ref().map(|b| format!("--branch {b}")).unwrap_or_default();
    let cmd = format!("git clone {shown_url} {branch_arg} --depth 1 --origin upstream");
    println!("Getting {}", entry.name);
    log.write("LOG", &format!("Getting {}", entry.name));
    println!("$ {cmd}");
    log.write("DEBUG", &format!("cd {path_arg}/apps && {cmd}"));
    flush();
    eprintln!("Cloning into '{}'...", entry.name);

    let git_failed = |lines: Vec<String>| -> Fail {
        for line in lines {
            eprintln!("{line}");
        }
        log.write("WARNING", &format!("cd {path_arg}/apps && {cmd} executed with exit code 128"));
        println!("ERROR: There was a problem while creating {path_arg}");
        Fail(1)
    };
    let Some(url) = url else {
        return Err(git_failed(vec![format!("fatal: repository '{shown_url}' does not exist")]));
    };
    let advert = ls_remote(&url).map_err(git_failed)?;
    let (git_ref, commit) = match &entry.branch {
        Some(b) => match advert.resolve(b) {
            Some(id) => (b.clone(), id),
            None => {
                return Err(git_failed(vec![
                    format!("warning: Could not find remote branch {b} to clone."),
                    format!("fatal: Remote branch {b} not found in upstream upstream"),
                ]));
            }
        },
        None => {
            let b = advert.default_branch();
            match advert.resolve(&b) {
                Some(id) => (b, id),
                None => {
                    return Err(git_failed(vec!["warning: You appear to have cloned an empty repository.".to_owned()]));
                }
            }
        }
    };
    let is_tag = advert.get(&format!("refs/heads/{git_ref}")).is_none();
    let version = app_version(&git_ref, is_tag);

    // The app's files, as bench gets them: the real git client, shallow, at the ref (the image
    // then holds each app's `patches.txt`, DocTypes and hooks as a real image does).
    let clone = std::process::Command::new("git")
        .args(["-c", "advice.detachedHead=false", "clone", "--quiet", "--depth", "1", "--branch", &git_ref])
        .args(["--origin", "upstream", &entry.url])
        .arg(&app_dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output();
    match clone {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr).replace(&entry.url, &shown_url);
            return Err(git_failed(said.lines().map(str::to_owned).collect()));
        }
        Err(e) => return Err(git_failed(vec![format!("git: {e}")])),
    }
    std::fs::create_dir_all(&app_dir).map_err(|e| os_error(&app_dir.display().to_string(), &e))?;
    write_file(&app_dir.join("VERSION"), &format!("{version}\n"))?;
    write_file(&app_dir.join("REF"), &format!("{git_ref}\n"))?;
    write_file(&app_dir.join("COMMIT"), &format!("{commit}\n"))?;
    if entry.name == "frappe" {
        // What frappe's checkout brings for frappe_docker's `websocket` service.
        write_file(&app_dir.join("socketio.js"), SOCKETIO_JS)?;
    }
    println!("Installing {}", entry.name);
    log.write("LOG", &format!("Installing {}", entry.name));
    register(root, &entry.name, &git_ref, &commit, &version)
}

/// `__version__` stand-in: a version-looking tag without its `v`, else the
/// `0.0.1-dev` a development checkout would carry.
fn app_version(git_ref: &str, is_tag: bool) -> String {
    let bare = git_ref.strip_prefix(['v', 'V']).unwrap_or(git_ref);
    let mut parts = bare.splitn(2, |c: char| !(c.is_ascii_digit() || c == '.'));
    let release = parts.next().unwrap_or_default();
    let looks_like_version =
        release.contains('.') && release.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if is_tag && looks_like_version { bare.to_owned() } else { "0.0.1-dev".to_owned() }
}

/// Appends the app to `sites/apps.txt` and bench's app-state file
/// `sites/apps.json` (`json.dump(states, indent=4)`).
fn register(root: &Path, app: &str, git_ref: &str, commit: &str, version: &str) -> Res<()> {
    let sites = root.join("sites");
    let txt_path = sites.join("apps.txt");
    let mut apps: Vec<String> = std::fs::read_to_string(&txt_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    apps.push(app.to_owned());
    write_file(&txt_path, &apps.join("\n"))?;

    let json_path = sites.join("apps.json");
    let mut states: Map<String, Value> = crate::bench::read_json_object(&json_path).unwrap_or_default();
    let idx = states.len() + 1;
    states.insert(
        app.to_owned(),
        json!({
            "is_repo": true,
            "resolution": {"commit_hash": commit, "branch": git_ref},
            "required": [],
            "idx": idx,
            "version": version,
        }),
    );
    write_file(&json_path, &py::dumps(&Value::Object(states), Some(4), false))
}

fn write_file(path: &Path, text: &str) -> Res<()> {
    write_atomic(path, text.as_bytes()).map_err(|e| os_error(&path.display().to_string(), &e))
}

#[cfg(test)]
mod tests {
    use super::app_version;

    #[test]
    fn versions_from_refs() {
        assert_eq!(app_version("v15.38.0", true), "15.38.0");
        assert_eq!(app_version("15.0.0-beta.1", true), "15.0.0-beta.1");
        assert_eq!(app_version("v15.38.0", false), "0.0.1-dev", "a branch named like a version is still a branch");
        assert_eq!(app_version("version-15", false), "0.0.1-dev");
        assert_eq!(app_version("release", true), "0.0.1-dev");
        assert_eq!(app_version("v15", true), "0.0.1-dev");
    }
}

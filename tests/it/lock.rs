//! `benchform lock` against real repositories served by a real `git http-backend` with token
//! auth, and over file://.

use std::path::Path;

use benchform_gitserver::{GitServer, ServerConfig, TestRepo};
use benchform_manifest::lock::{RefKind, parse_lock};

use crate::support::{Run, benchform_in};

const TOKEN: &str = "lock-test-token-7f3a9c";
const TOKEN_VAR: &str = "SECRET_APP_TOKEN";

/// A git server with frappe, erpnext (annotated tags) and a private app (lightweight tag).
struct World {
    _root: tempfile::TempDir,
    dir: tempfile::TempDir,
    server: GitServer,
    frappe: TestRepo,
    erpnext: TestRepo,
    secret: TestRepo,
    /// Every run's output, to prove the token never appears.
    outputs: Vec<String>,
}

impl World {
    fn new() -> World {
        let root = tempfile::tempdir().unwrap();
        let frappe = TestRepo::create(root.path(), "frappe.git").unwrap();
        let erpnext = TestRepo::create(root.path(), "erpnext.git").unwrap();
        let secret = TestRepo::create(root.path(), "private/secret_app.git").unwrap();
        for repo in [&frappe, &erpnext] {
            let c = repo.commit("first").unwrap();
            repo.tag_annotated("v15.1.0", &c).unwrap();
            let c = repo.commit("second").unwrap();
            repo.tag_annotated("v15.2.0", &c).unwrap();
            repo.branch("version-15", &c).unwrap();
        }
        let c = secret.commit("first").unwrap();
        secret.tag_lightweight("v1.0.0", &c).unwrap();
        let mut config = ServerConfig::new(root.path());
        config.token = Some(TOKEN.to_string());
        let server = GitServer::start(config).unwrap();
        let world =
            World { _root: root, dir: tempfile::tempdir().unwrap(), server, frappe, erpnext, secret, outputs: vec![] };
        world.write_manifest("v15.2.0", "v1.0.0", true);
        world
    }

    fn write_manifest(&self, erpnext_ref: &str, secret_ref: &str, immutable: bool) {
        let text = format!(
            "version: 1\nproject: lock-test\nfrappe:\n  repo: {frappe}\n  ref: v15.2.0\napps:\n  - name: erpnext\n    repo: {erpnext}\n    ref: {erpnext_ref}\n  - name: secret_app\n    repo: {secret}\n    ref: {secret_ref}\n    token_env: {TOKEN_VAR}\nimage:\n  repository: localhost:5000/lock-test\n  containerfile: Containerfile\n  context: .\ndeploy:\n  compose:\n    files: [compose.yaml]\nsites:\n  - name: a.localhost\n    apps: [erpnext, secret_app]\npolicy:\n  immutable_refs: {immutable}\n",
            frappe = self.server.repo_url("frappe.git"),
            erpnext = self.server.repo_url("erpnext.git"),
            secret = self.server.repo_url("private/secret_app.git"),
        );
        std::fs::write(self.dir.path().join("benchform.yaml"), text).unwrap();
    }

    fn run(&mut self, args: &[&str]) -> Run {
        self.run_with(args, &[(TOKEN_VAR, TOKEN)])
    }

    fn run_with(&mut self, args: &[&str], envs: &[(&str, &str)]) -> Run {
        let run = benchform_in(self.dir.path(), args, envs);
        self.outputs.push(run.all());
        run
    }

    fn lock_text(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join("benchform.lock")).ok()
    }

    fn lock(&self) -> benchform_manifest::LockFile {
        parse_lock("benchform.lock", self.lock_text().unwrap().as_bytes()).unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for out in &self.outputs {
            assert!(!out.contains(TOKEN), "the token was printed:\n{out}");
        }
    }
}

fn rev_parse(repo: &Path, rev: &str) -> String {
    let out = std::process::Command::new("git").arg("--git-dir").arg(repo).args(["rev-parse", rev]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn lock_pins_commits_and_check_passes() {
    let mut w = World::new();
    let run = w.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("Wrote benchform.lock (3 entries)."), "{}", run.stdout);

    let lock = w.lock();
    let names: Vec<&str> = lock.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["erpnext", "frappe", "secret_app"], "sorted by name");
    let erpnext = lock.entry("erpnext").unwrap();
    assert_eq!(erpnext.kind, RefKind::Tag);
    assert_eq!(erpnext.commit, rev_parse(&w.erpnext.path, "v15.2.0^{commit}"));
    assert_eq!(
        erpnext.object.as_deref(),
        Some(rev_parse(&w.erpnext.path, "v15.2.0").as_str()),
        "annotated: tag object kept"
    );
    let secret = lock.entry("secret_app").unwrap();
    assert_eq!(secret.commit, rev_parse(&w.secret.path, "v1.0.0"));
    assert_eq!(secret.object, None, "lightweight tag: no object");
    assert!(!w.lock_text().unwrap().contains(TOKEN));

    // Deterministic: a second run changes nothing.
    let before = w.lock_text();
    let again = w.run(&["lock"]);
    assert_eq!(again.code, 0);
    assert!(again.stdout.contains("is up to date"), "{}", again.stdout);
    assert_eq!(w.lock_text(), before);

    assert_eq!(w.run(&["lock", "--check"]).code, 0);
    let offline = w.run_with(&["lock", "--check", "--offline"], &[]);
    assert_eq!(offline.code, 0, "{}", offline.all());
}

#[test]
fn a_moved_tag_fails_check_loudly_and_is_kept_until_updated() {
    let mut w = World::new();
    assert_eq!(w.run(&["lock"]).code, 0);
    let old = w.lock().entry("secret_app").unwrap().commit.clone();
    let new = w.secret.commit("rewritten").unwrap();
    w.secret.move_tag("v1.0.0", &new).unwrap();

    let check = w.run(&["lock", "--check"]);
    assert_eq!(check.code, 1);
    assert!(check.stderr.contains("error[tag-moved]: SUPPLY-CHAIN ALARM"), "{}", check.stderr);
    assert!(check.stderr.contains(&format!("tag v1.0.0 moved from {old} to {new}")), "{}", check.stderr);
    assert!(check.stderr.contains("benchform lock --update secret_app"));
    // The offline check cannot see it: manifest and lock still agree.
    assert_eq!(w.run(&["lock", "--check", "--offline"]).code, 0);

    // A plain `lock` keeps the pinned commit; only --update takes the moved tag.
    assert_eq!(w.run(&["lock"]).code, 0);
    assert_eq!(w.lock().entry("secret_app").unwrap().commit, old);
    let update = w.run(&["lock", "--update", "secret_app"]);
    assert_eq!(update.code, 0, "{}", update.all());
    assert!(update.stdout.contains("updated"), "{}", update.stdout);
    assert_eq!(w.lock().entry("secret_app").unwrap().commit, new);
    assert_eq!(w.run(&["lock", "--check"]).code, 0);
}

#[test]
fn manifest_changes_make_the_lock_out_of_date() {
    let mut w = World::new();
    assert_eq!(w.run(&["lock"]).code, 0);
    w.write_manifest("v15.1.0", "v1.0.0", true);
    let check = w.run_with(&["lock", "--check", "--offline"], &[]);
    assert_eq!(check.code, 1);
    assert!(
        check.stderr.contains("error[lock-out-of-date]: erpnext: the manifest's ref is v15.1.0, the lock's v15.2.0"),
        "{}",
        check.stderr
    );
    assert!(check.stderr.contains("benchform.yaml:9:10"), "points at the ref: {}", check.stderr);

    let relock = w.run(&["lock"]);
    assert_eq!(relock.code, 0);
    let lock = w.lock();
    assert_eq!(lock.entry("erpnext").unwrap().commit, rev_parse(&w.erpnext.path, "v15.1.0^{commit}"));
    assert_eq!(lock.entry("frappe").unwrap().commit, rev_parse(&w.frappe.path, "v15.2.0^{commit}"));

    std::fs::remove_file(w.dir.path().join("benchform.lock")).unwrap();
    let missing = w.run(&["lock", "--check", "--offline"]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("error[lock-missing]"), "{}", missing.stderr);
}

#[test]
fn branches_are_refused_under_immutable_refs_with_the_newest_tag_suggested() {
    let mut w = World::new();
    w.write_manifest("version-15", "v1.0.0", true);
    let run = w.run(&["lock"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("error[branch-ref]: erpnext: `version-15` is a branch"), "{}", run.stderr);
    assert!(run.stderr.contains("the newest on the remote is `v15.2.0`"), "{}", run.stderr);
    assert!(w.lock_text().is_none(), "no partial lock");
    // Every problem in one run: a ref that does not exist next to a branch.
    w.write_manifest("version-15", "v9.9.9", true);
    let run = w.run(&["lock"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("error[ref-not-found]: secret_app:"), "{}", run.stderr);
    assert!(run.stderr.contains("error[branch-ref]: erpnext:"), "{}", run.stderr);
    assert!(w.lock_text().is_none(), "no partial lock");

    w.write_manifest("version-15", "v1.0.0", false);
    assert_eq!(w.run(&["lock"]).code, 0);
    let entry = w.lock().entry("erpnext").unwrap().clone();
    assert_eq!(entry.kind, RefKind::Branch);
    // A branch moving on is news, not an alarm.
    let c = w.erpnext.commit("third").unwrap();
    w.erpnext.branch("version-15", &c).unwrap();
    let check = w.run(&["lock", "--check"]);
    assert_eq!(check.code, 0, "{}", check.all());
    assert!(check.stderr.contains("warning[branch-advanced]"), "{}", check.stderr);
}

#[test]
fn bad_or_missing_tokens_fail_clearly_without_writing_or_printing_the_token() {
    let mut w = World::new();
    assert_eq!(w.run(&["lock"]).code, 0);
    let before = w.lock_text();
    w.write_manifest("v15.1.0", "v1.0.0", true);

    let missing = w.run_with(&["lock", "--update"], &[]);
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("error[remote-auth]: secret_app:"), "{}", missing.stderr);
    assert!(missing.stderr.contains(&format!("export the token in {TOKEN_VAR}")), "{}", missing.stderr);

    let wrong = w.run_with(&["lock", "--update"], &[(TOKEN_VAR, "not-the-token")]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("rejected the credentials"), "{}", wrong.stderr);
    assert!(!wrong.all().contains("not-the-token"));
    assert!(wrong.stderr.contains("benchform.lock was not written."));
    assert_eq!(w.lock_text(), before, "the old lock is untouched");
}

#[test]
fn missing_refs_repos_and_servers_are_named() {
    let mut w = World::new();
    w.write_manifest("v15.3.0", "v1.0.0", true);
    let run = w.run(&["lock"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("error[ref-not-found]: erpnext:"), "{}", run.stderr);
    assert!(run.stderr.contains("has no branch or tag `v15.3.0`"), "{}", run.stderr);
    assert!(run.stderr.contains("did you mean `v15.2.0`?"), "{}", run.stderr);

    let unknown = w.run(&["lock", "--update", "erpnxt"]);
    assert_eq!(unknown.code, 1);
    assert!(unknown.stderr.contains("did you mean `erpnext`?"), "{}", unknown.stderr);

    // Stop the server: every remote is unreachable, each named.
    w.write_manifest("v15.2.0", "v1.0.0", true);
    let addr = w.server.addr();
    drop(std::mem::replace(&mut w.server, GitServer::start(ServerConfig::new(w.dir.path())).unwrap()));
    let down = w.run(&["lock"]);
    assert_eq!(down.code, 1);
    assert_eq!(down.stderr.matches("error[remote-unreachable]").count(), 3, "{}", down.stderr);
    assert!(down.stderr.contains(&format!("http://{addr}/erpnext.git could not be reached")), "{}", down.stderr);
}

#[test]
fn file_urls_lock_with_a_warning_at_validate() {
    let mut w = World::new();
    let text = std::fs::read_to_string(w.dir.path().join("benchform.yaml"))
        .unwrap()
        .replace(&w.server.repo_url("erpnext.git"), &w.erpnext.file_url());
    std::fs::write(w.dir.path().join("benchform.yaml"), text).unwrap();
    let validate = w.run(&["validate"]);
    assert!(validate.stdout.contains("warning[file-url]"), "{}", validate.stdout);
    let run = w.run(&["lock"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(w.lock().entry("erpnext").unwrap().repo, w.erpnext.file_url());
}

/// A lock edited by hand is read as strictly as a manifest: each malformed value is an error with
/// its file:line:column and code, and `--check --offline` fails.
#[test]
fn malformed_locks_are_refused_with_positions() {
    let mut w = World::new();
    assert_eq!(w.run(&["lock"]).code, 0);
    let good = w.lock_text().unwrap();
    let commit = w.lock().entry("erpnext").unwrap().commit.clone();
    let path = w.dir.path().join("benchform.lock");
    for (what, edited, expect) in [
        ("empty commit", good.replacen(&format!("\"{commit}\""), "\"\"", 1), "error[invalid-value]"),
        ("39 hex digits", good.replacen(&commit, &commit[..39], 1), "error[invalid-value]"),
        ("upper case", good.replacen(&commit, &commit.to_uppercase(), 1), "error[invalid-value]"),
        ("a path", good.replacen(&commit, "../../../../etc/passwd", 1), "error[invalid-value]"),
        ("a path as ref", good.replacen("ref: \"v15.2.0\"", "ref: \"../../x\"", 1), "error[invalid-ref]"),
        ("a path as name", good.replacen("name: \"erpnext\"", "name: \"../erpnext\"", 1), "error[invalid-app-name]"),
        ("credentials", good.replacen("repo: \"http://", "repo: \"http://u:hunter2@", 1), "error[credentials-in-url]"),
        (
            "duplicate",
            {
                let start = good.find("  - name: \"erpnext\"").unwrap();
                let end = good[start + 1..].find("  - name:").map_or(good.len(), |e| e + start + 1);
                format!("{good}{}", &good[start..end])
            },
            "error[duplicate-app]",
        ),
    ] {
        std::fs::write(&path, &edited).unwrap();
        let check = w.run_with(&["lock", "--check", "--offline"], &[]);
        assert_eq!(check.code, 1, "{what}: {}", check.all());
        assert!(check.all().contains(expect), "{what}: {}", check.all());
        assert!(check.all().contains("benchform.lock:"), "{what} has a position: {}", check.all());
        assert!(!check.all().contains("hunter2"), "{what}: {}", check.all());
    }
}

//! Runs the built `bench` fixture the way benchform does (argv arrays, no
//! TTY, stdin at EOF) against a temporary bench root and a real MariaDB server
//! (Debian's `mariadbd`, started once for this test binary on a free loopback
//! port), and checks it against frappe-contract.md: `bench init` resolving
//! refs on a real git server, then the site lifecycle, locks, backups and
//! restore.

// Test code: a failed unwrap is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use benchform_gitserver::{GitServer, ServerConfig, TestRepo};
use serde_json::{Value, json};
use tempfile::TempDir;

const TOKEN: &str = "tok3n-s3cr3t";
const ROOT_PW: &str = "root-pw-123";
const ADMIN_PW: &str = "admin-pw-456";

#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Self {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    fn fails(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "expected exit {code}\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// The MariaDB server every test's sites live in: Debian's `mariadbd` (scripts/world installs
/// it) with its datadir in a temporary folder, root's password [`ROOT_PW`]. A shell holds it:
/// when this process exits, the shell's stdin closes, and it stops the server and removes the
/// datadir.
struct Server {
    port: u16,
    /// The shell and the pipe whose closing stops it (never waited for: it outlives the tests).
    _guard: Mutex<(Child, ChildStdin)>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let dir = TempDir::new().unwrap().keep();
        let data = dir.join("data");
        let install = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db", "--user=root"])
            .arg("--innodb-log-file-size=8M")
            .output()
            .expect("mariadb-install-db (Debian's mariadb-server; run scripts/world up)");
        assert!(install.status.success(), "{}", String::from_utf8_lossy(&install.stderr));
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let socket = dir.join("sock");
        let script = "mariadbd \"$@\" & pid=$!; read -r _; kill \"$pid\"; wait \"$pid\"; rm -rf \"$BENCH_TEST_DB_DIR\"";
        let mut guard = Command::new("sh")
            .args(["-c", script, "sh", "--no-defaults"])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--user=root", "--skip-log-bin", "--innodb-log-file-size=8M"])
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .env("BENCH_TEST_DB_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = guard.stdin.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let sql = format!(
            "ALTER USER root@localhost IDENTIFIED BY '{ROOT_PW}'; CREATE USER root@'%' IDENTIFIED BY '{ROOT_PW}'; \
             GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION; DELETE FROM mysql.global_priv WHERE User = ''; \
             FLUSH PRIVILEGES;"
        );
        loop {
            let out = Command::new("mariadb")
                .args(["--no-defaults", "-u", "root"])
                .arg(format!("--socket={}", socket.display()))
                .args(["-e", &sql])
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "mariadbd did not start: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { port, _guard: Mutex::new((guard, stdin)) }
    })
}

/// Runs SQL as root on the test server; the first column of each row.
fn sql(query: &str) -> Vec<String> {
    let out = Command::new("mariadb")
        .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1", "-u", "root", "--batch", "--skip-column-names"])
        .arg(format!("-P{}", server().port))
        .args(["-e", query])
        .env("MYSQL_PWD", ROOT_PW)
        .output()
        .unwrap();
    assert!(out.status.success(), "{query}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').next().unwrap_or_default().to_owned()).collect()
}

fn database_exists(name: &str) -> bool {
    !sql(&format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'")).is_empty()
}

/// A git server with fixture repositories named after their modules.
struct Git {
    _root: TempDir,
    server: GitServer,
    frappe_commit: String,
    erpnext_commit: String,
    erpnext_tag: String,
    hrms_commit: String,
    custom_commit: String,
    payments_commit: String,
    _repos: Vec<TestRepo>,
}

impl Git {
    fn start() -> Git {
        let root = TempDir::new().unwrap();
        fs::create_dir_all(root.path().join("private")).unwrap();
        let frappe = TestRepo::create(root.path(), "frappe.git").unwrap();
        let frappe_commit = frappe.commit("frappe").unwrap();
        frappe.branch("version-15", &frappe_commit).unwrap();
        let erpnext = TestRepo::create(root.path(), "erpnext.git").unwrap();
        let erpnext_commit = erpnext.commit("erpnext").unwrap();
        let erpnext_tag = erpnext.tag_annotated("v15.38.0", &erpnext_commit).unwrap();
        let hrms = TestRepo::create(root.path(), "hrms.git").unwrap();
        let hrms_commit = hrms.commit("hrms").unwrap();
        hrms.tag_lightweight("v15.10.0", &hrms_commit).unwrap();
        let custom = TestRepo::create(root.path(), "private/custom_app.git").unwrap();
        let custom_commit = custom.commit("custom").unwrap();
        custom.branch("develop", &custom_commit).unwrap();
        let payments = TestRepo::create(root.path(), "payments.git").unwrap();
        let payments_commit = payments.commit("payments").unwrap();
        let server =
            GitServer::start(ServerConfig { token: Some(TOKEN.to_owned()), ..ServerConfig::new(root.path()) }).unwrap();
        Git {
            _root: root,
            server,
            frappe_commit,
            erpnext_commit,
            erpnext_tag,
            hrms_commit,
            custom_commit,
            payments_commit,
            _repos: vec![frappe, erpnext, hrms, custom, payments],
        }
    }

    fn url(&self, rel: &str) -> String {
        self.server.repo_url(rel)
    }

    fn private_url(&self, rel: &str, userinfo: &str) -> String {
        self.url(rel).replacen("http://", &format!("http://{userinfo}@"), 1)
    }
}

/// A temporary bench root plus the fixture binary, its sites in the test server.
struct Bench {
    dir: TempDir,
}

impl Bench {
    fn new() -> Bench {
        Bench { dir: TempDir::new().unwrap() }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("frappe-bench")
    }

    fn sites(&self) -> PathBuf {
        self.root().join("sites")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("BENCH_ROOT", self.root())
            .env("FRAPPE_DB_HOST", "127.0.0.1")
            .env("FRAPPE_DB_PORT", server().port.to_string())
            .env_remove("BENCH_CONTRACT_FAULT")
            .env_remove("FRAPPE_SITE")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        to_run(self.command(args).output().unwrap())
    }

    fn run_env(&self, args: &[&str], key: &str, value: &str) -> Run {
        to_run(self.command(args).env(key, value).output().unwrap())
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    fn json(&self, rel: &str) -> Value {
        serde_json::from_str(&self.read(rel)).unwrap()
    }

    /// `bench init` with frappe on `version-15` and the given apps.json.
    fn init(&self, git: &Git, apps: &Value) -> Run {
        let apps_path = self.dir.path().join("apps.json");
        fs::write(&apps_path, apps.to_string()).unwrap();
        let frappe = git.url("frappe.git");
        self.run(&[
            "init",
            &format!("--apps_path={}", apps_path.display()),
            "--frappe-branch",
            "version-15",
            "--frappe-path",
            &frappe,
            "--verbose",
            "frappe-bench",
        ])
    }

    /// A built bench (frappe, erpnext, hrms, payments) with site `s1.test`
    /// holding erpnext.
    fn with_site(git: &Git) -> Bench {
        let b = Bench::new();
        b.init(
            git,
            &json!([
                {"url": git.url("erpnext.git"), "branch": "v15.38.0"},
                {"url": git.url("hrms.git"), "branch": "v15.10.0"},
                {"url": git.url("payments.git")},
            ]),
        )
        .ok();
        b.new_site("s1.test", &["--install-app", "erpnext"]).ok();
        b
    }

    fn new_site(&self, site: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "new-site",
            site,
            "--db-root-username",
            "root",
            "--db-root-password",
            ROOT_PW,
            "--admin-password",
            ADMIN_PW,
            "--no-mariadb-socket",
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    fn site(&self, site: &str, args: &[&str]) -> Run {
        let mut all = vec!["--site", site];
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn fault(&self, site: &str, text: &str) {
        fs::write(self.sites().join(site).join(".bench-contract-fault"), text).unwrap();
    }

    /// A listener standing in for redis-cache, configured globally.
    fn with_redis(&self) -> TcpListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("redis://127.0.0.1:{}", listener.local_addr().unwrap().port());
        self.run(&["set-config", "-g", "redis_cache", &url]).ok();
        listener
    }

    fn installed(&self, site: &str) -> String {
        self.site(site, &["execute", "frappe.get_installed_apps"]).ok().stdout.clone()
    }
}

fn to_run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn gunzip(path: &Path) -> String {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "{} is not gzip", path.display());
    String::from_utf8(out.stdout).unwrap()
}

fn backups(b: &Bench, site: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(b.sites().join(site).join("private/backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn init_records_what_git_clone_would_and_masks_tokens() {
    let git = Git::start();
    let b = Bench::new();
    let custom = git.private_url("private/custom_app.git", TOKEN);
    let run = b.init(
        &git,
        &json!([
            {"url": git.url("erpnext.git"), "branch": "v15.38.0", "commit": "ignored"},
            {"url": git.url("hrms.git"), "branch": "v15.10.0"},
            {"url": custom, "branch": "develop"},
            {"url": git.url("payments.git")},
        ]),
    );
    run.ok();
    assert!(!run.all().contains(TOKEN), "token leaked:\n{}", run.all());
    assert!(run.stdout.contains("$ git clone http://***@"), "{}", run.stdout);

    assert_eq!(b.read("sites/apps.txt"), "frappe\nerpnext\nhrms\ncustom_app\npayments");
    assert_eq!(b.json("sites/common_site_config.json"), json!({}));
    let states = b.json("sites/apps.json");
    let state = |app: &str, idx: u64, commit: &str, branch: &str, version: &str| {
        json!({"is_repo": true, "resolution": {"commit_hash": commit, "branch": branch}, "required": [], "idx": idx, "version": version})
            == states[app]
    };
    assert_ne!(git.erpnext_tag, git.erpnext_commit);
    assert!(state("frappe", 1, &git.frappe_commit, "version-15", "0.0.1-dev"), "{states:#}");
    assert!(
        state("erpnext", 2, &git.erpnext_tag, "v15.38.0", "15.38.0"),
        "annotated tag records the tag object: {states:#}"
    );
    assert!(state("hrms", 3, &git.hrms_commit, "v15.10.0", "15.10.0"), "{states:#}");
    assert!(state("custom_app", 4, &git.custom_commit, "develop", "0.0.1-dev"), "{states:#}");
    assert!(state("payments", 5, &git.payments_commit, "main", "0.0.1-dev"), "default branch: {states:#}");
    assert_eq!(b.read("sites/apps.json").lines().nth(1), Some("    \"frappe\": {"), "json.dump(indent=4)");
    assert_eq!(b.read("apps/erpnext/VERSION").trim(), "15.38.0");
    assert_eq!(b.read("apps/erpnext/REF").trim(), "v15.38.0");
    assert_eq!(b.read("apps/erpnext/COMMIT").trim(), git.erpnext_tag);

    let log = b.read("logs/bench.log");
    let clones: Vec<&str> = log.lines().filter(|l| l.contains("git clone")).collect();
    assert_eq!(clones.len(), 5, "{log}");
    assert!(clones[0].ends_with(&format!(
        "DEBUG cd frappe-bench/apps && git clone {} --branch version-15 --depth 1 --origin upstream",
        git.url("frappe.git")
    )));
    assert!(clones[2].contains("--branch v15.10.0 --depth 1 --origin upstream"));
    assert!(clones[3].contains("git clone http://***@127.0.0.1:"), "{log}");
    assert!(clones[4].contains("payments.git  --depth 1"), "no --branch without a branch: {log}");
    assert!(!log.contains(TOKEN), "{log}");

    let versions: Value = serde_json::from_str(&b.run(&["version", "-f", "json"]).ok().stdout).unwrap();
    assert_eq!(versions[0], json!({"commit": "", "app": "custom_app", "branch": "", "version": "0.0.1-dev"}));
    assert_eq!(versions.as_array().unwrap().len(), 5);
    assert_eq!(b.run(&["version", "-f", "legacy"]).ok().stdout.lines().nth(1), Some("erpnext 15.38.0"));

    // The documented fault reproduces the inferred leak into the image's logs.
    let leaky = Bench::new();
    let apps = leaky.dir.path().join("apps.json");
    fs::write(&apps, json!([{"url": custom, "branch": "develop"}]).to_string()).unwrap();
    let frappe = git.url("frappe.git");
    let args = [
        "init",
        "--apps_path",
        apps.to_str().unwrap(),
        "--frappe-branch",
        "version-15",
        "--frappe-path",
        &frappe,
        "frappe-bench",
    ];
    leaky.run_env(&args, "BENCH_CONTRACT_FAULT", "leak-token-in-log").ok();
    assert!(leaky.read("logs/bench.log").contains(&format!("git clone {custom} --branch develop")));
}

#[test]
fn init_fails_like_git_and_bench() {
    let git = Git::start();
    let fail = |apps: Value| {
        let b = Bench::new();
        let run = b.init(&git, &apps);
        run.fails(1);
        run
    };
    let run = fail(json!([{"url": git.url("erpnext.git"), "branch": "v99.0.0"}]));
    assert!(run.stderr.contains("fatal: Remote branch v99.0.0 not found in upstream upstream"), "{}", run.stderr);

    let run = fail(json!([{"url": git.url("private/custom_app.git"), "branch": "develop"}]));
    assert!(run.stderr.contains("fatal: could not read Username for 'http://127.0.0.1:"), "{}", run.stderr);

    let run = fail(json!([{"url": git.private_url("private/custom_app.git", "wrong-token"), "branch": "develop"}]));
    let expected = format!("fatal: Authentication failed for '{}/'", git.url("private/custom_app.git"));
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(!run.all().contains("wrong-token"));

    let user_pass = git.private_url("private/custom_app.git", &format!("x-access-token:{TOKEN}"));
    Bench::new().init(&git, &json!([{"url": user_pass, "branch": "develop"}])).ok();

    for apps in [
        json!([{"url": git.url("frappe.git"), "branch": "version-15"}]),
        json!([{"url": git.url("hrms.git"), "branch": "v15.10.0"}, {"url": git.url("hrms.git")}]),
    ] {
        let run = fail(apps);
        assert!(
            run.stdout.contains("already exists. Do you want to continue and overwrite it? [y/N]"),
            "{}",
            run.stdout
        );
        assert!(run.stderr.contains("Aborted!"));
    }

    let run = fail(json!([{"url": "https://github.com/frappe/erpnext", "branch": "version-15"}]));
    assert!(run.stderr.contains("http:// remotes only"), "{}", run.stderr);

    // Empty apps.json: frappe only.
    let b = Bench::new();
    let apps_path = b.dir.path().join("empty.json");
    fs::write(&apps_path, "").unwrap();
    let frappe = git.url("frappe.git");
    b.run(&["init", &format!("--apps_path={}", apps_path.display()), "--frappe-path", &frappe, "frappe-bench"]).ok();
    assert_eq!(b.read("sites/apps.txt"), "frappe");
    assert_eq!(b.json("sites/apps.json")["frappe"]["resolution"]["branch"], "main");
}

#[test]
fn site_lifecycle_apps_and_migrate() {
    let git = Git::start();
    let b = Bench::with_site(&git);
    let out = b.installed("s1.test");
    assert_eq!(out, "[\"frappe\", \"erpnext\"]\n");

    // new-site: prompts hit EOF; the half-made site blocks reruns.
    let run = b.run(&["new-site", "s2.test", "--admin-password", ADMIN_PW]);
    run.fails(1);
    assert!(
        run.stderr.contains("MySQL root password: ") && run.stderr.trim_end().ends_with("EOFError"),
        "{}",
        run.stderr
    );
    let conf = b.json("sites/s2.test/site_config.json");
    assert!(conf["db_name"].as_str().unwrap().starts_with('_') && conf["db_name"].as_str().unwrap().len() == 17);
    let run = b.run(&["new-site", "s2.test", "--db-root-password", ROOT_PW]);
    run.fails(1);
    assert_eq!(run.stdout, "Site s2.test already exists\n");
    let run = b.run(&["new-site", "s2.test", "--force", "--db-root-password", ROOT_PW]);
    run.fails(1);
    assert!(run.stderr.contains("Set Administrator password: "), "admin prompt comes after the DB: {}", run.stderr);
    let run = b.run(&["new-site", "s2.test", "--force", "--db-root-password", ROOT_PW, "--admin-password", ADMIN_PW]);
    run.ok();
    assert!(run.stdout.ends_with("*** Scheduler is disabled ***\n"), "{}", run.stdout);
    assert!(!run.all().contains(ROOT_PW) && !run.all().contains(ADMIN_PW));
    let run = b.new_site("s3.test", &["--mariadb-user-host-login-scope=%"]);
    run.fails(2);
    assert!(run.stderr.contains("No such option: --mariadb-user-host-login-scope"), "v15 has no scope flag");
    let run = b.new_site("s3.test", &["--install-app", "ghost"]);
    run.fails(1);
    assert!(run.stderr.contains("ModuleNotFoundError: No module named 'ghost'"));
    assert_eq!(b.installed("s3.test"), "[\"frappe\"]\n", "partial state kept");
    let s1_db = b.json("sites/s1.test/site_config.json")["db_name"].as_str().unwrap().to_owned();
    let run = b.new_site("s4.test", &["--db-name", &s1_db]);
    run.fails(1);
    assert!(run.stderr.trim_end().ends_with(&format!("Exception: Database {s1_db} already exists")), "{}", run.stderr);

    // list-apps is stale until migrate (v15).
    assert_eq!(b.site("s1.test", &["list-apps", "-f", "json"]).ok().stdout, "{\n \"s1.test\": []\n}\n");
    assert_eq!(b.site("s1.test", &["list-apps"]).ok().stdout, "");

    // install-app: messages and exit codes.
    let run = b.site("s1.test", &["install-app", "hrms"]);
    assert!(run.ok().stdout.contains("\nInstalling hrms...\n"), "{}", run.stdout);
    assert_eq!(b.site("s1.test", &["install-app", "hrms"]).ok().stdout, "App hrms already installed\n");
    fs::write(b.sites().join("apps.txt"), "frappe\nerpnext\nhrms\n").unwrap(); // stale volume apps.txt
    let run = b.site("s1.test", &["install-app", "payments", "ghost"]);
    run.fails(1);
    assert!(
        run.stdout.contains("An error occurred while installing payments: App payments not in apps.txt"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("An error occurred while installing ghost: No module named 'ghost'"), "{}", run.stdout);
    assert_eq!(b.installed("s1.test"), "[\"frappe\", \"erpnext\", \"hrms\"]\n");
    assert_eq!(b.site("s1.test", &["list-apps", "-f", "json"]).ok().stdout, "{\n \"s1.test\": []\n}\n");
    let run = b.site("s1.test", &["execute", "frappe.no_such_method"]);
    run.fails(1);
    assert!(run.stderr.contains("AttributeError: module 'frappe' has no attribute 'no_such_method'"));

    // migrate needs redis_cache.
    let run = b.site("s1.test", &["migrate"]);
    run.fails(1);
    assert!(run.stdout.starts_with("Migrating s1.test\nService redis_cache is not running.\n"), "{}", run.stdout);
    let _redis = b.with_redis();
    let run = b.site("s1.test", &["migrate"]);
    run.ok();
    assert!(!run.stdout.contains("Executing"), "install marked patches as done: {}", run.stdout);
    assert!(
        run.stdout
            .contains("\rUpdating DocTypes for erpnext       : [========================================] 100%\n")
    );
    assert!(run.stdout.ends_with("Queued rebuilding of search index for s1.test\n\n"), "{:?}", run.stdout);
    assert_eq!(
        b.site("s1.test", &["list-apps"]).ok().stdout,
        "\nfrappe  0.0.1-dev UNVERSIONED\nerpnext 15.38.0   UNVERSIONED\nhrms    15.10.0   UNVERSIONED\n"
    );
    assert_eq!(
        b.site("s1.test", &["list-apps", "--format=json"]).ok().stdout,
        "{\n \"s1.test\": [\n  \"frappe\",\n  \"erpnext\",\n  \"hrms\"\n ]\n}\n"
    );

    // A new image: the patches its patches.txt adds run once, in Frappe's order (pre-model-sync,
    // `finally:` at the end of their phase, post-model-sync), versions follow.
    fs::write(b.root().join("apps/erpnext/VERSION"), "15.39.0\n").unwrap();
    let patches = b.root().join("apps/erpnext/erpnext/patches.txt");
    fs::create_dir_all(patches.parent().unwrap()).unwrap();
    fs::write(
        &patches,
        "# erpnext\n[pre_model_sync]\nfinally:erpnext.patches.v15_0.last\nerpnext.patches.v15_0.a #2024-01-01\n\n\
         [post_model_sync]\n; comment\nerpnext.patches.v15_0.b\n",
    )
    .unwrap();
    let run = b.site("s1.test", &["migrate", "--skip-search-index"]);
    let db_name = b.json("sites/s1.test/site_config.json")["db_name"].as_str().unwrap().to_owned();
    let executed: Vec<&str> = run.ok().stdout.lines().filter(|l| l.starts_with("Executing ")).collect();
    assert_eq!(
        executed,
        [
            format!("Executing erpnext.patches.v15_0.a #2024-01-01 in s1.test ({db_name})"),
            format!("Executing finally:erpnext.patches.v15_0.last in s1.test ({db_name})"),
            format!("Executing erpnext.patches.v15_0.b in s1.test ({db_name})"),
        ],
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("Queued rebuilding"));
    assert!(b.site("s1.test", &["list-apps"]).stdout.contains("erpnext 15.39.0"));
    assert!(!b.site("s1.test", &["migrate"]).ok().stdout.contains("Executing"));
    // An old-format file (no sections) runs before the sync; a sectioned one without both
    // sections fails migrate as Frappe does.
    fs::write(&patches, "erpnext.patches.v15_0.a #2024-01-01\nerpnext.patches.v15_0.c\n").unwrap();
    let run = b.site("s1.test", &["migrate"]);
    assert!(run.ok().stdout.contains("Executing erpnext.patches.v15_0.c in"), "{}", run.stdout);
    fs::write(&patches, "[pre_model_sync]\nerpnext.patches.v15_0.d\n").unwrap();
    let run = b.site("s1.test", &["migrate"]);
    run.fails(1);
    assert!(run.stderr.contains("Patch type post_model_sync not found in patches.txt"), "{}", run.stderr);
    fs::remove_file(&patches).unwrap();

    // An installed app missing from the image breaks migrate.
    fs::remove_dir_all(b.root().join("apps/hrms")).unwrap();
    let run = b.site("s1.test", &["migrate"]);
    run.fails(1);
    assert!(run.stderr.trim_end().ends_with("ModuleNotFoundError: No module named 'hrms'"), "{}", run.stderr);
    let run = b.site("s1.test", &["uninstall-app", "hrms", "--yes", "--force"]);
    run.fails(1);
    assert!(run.stderr.contains("No module named 'hrms'"), "must be importable even with --force");
    b.site("s1.test", &["remove-from-installed-apps", "hrms"]).ok();
    b.site("s1.test", &["migrate"]).ok();

    // uninstall-app.
    let run = b.site("s1.test", &["uninstall-app", "erpnext"]);
    run.fails(1);
    assert!(run.stderr.contains("Aborted!") && run.stdout.contains("Are you sure you want to continue? [y/N]"));
    assert_eq!(b.installed("s1.test"), "[\"frappe\", \"erpnext\"]\n");
    let run = b.site("s1.test", &["uninstall-app", "erpnext", "--yes", "--no-backup"]);
    assert!(run.ok().stdout.ends_with("Uninstalled App erpnext from Site s1.test\n"));
    assert_eq!(
        b.site("s1.test", &["list-apps", "-f", "json"]).ok().stdout,
        "{\n \"s1.test\": [\n  \"frappe\"\n ]\n}\n"
    );
    let run = b.site("s1.test", &["uninstall-app", "erpnext", "--yes"]);
    assert_eq!(run.ok().stdout, "App erpnext not installed on Site s1.test\n");
    b.site("s1.test", &["uninstall-app", "frappe", "--yes"]).fails(1);

    // --site all: one site that cannot connect (s4 names s1's database with its own password)
    // stops the command, as frappe.connect() does.
    let run = b.site("all", &["list-apps", "-f", "json"]);
    run.fails(1);
    assert!(run.stderr.contains(&format!("(1045, \"Access denied for user '{s1_db}'@")), "{}", run.stderr);
    fs::remove_dir_all(b.sites().join("s4.test")).unwrap();
    let all = b.site("all", &["list-apps", "-f", "json"]).ok().stdout.clone();
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all.as_object().unwrap().keys().collect::<Vec<_>>(), ["s1.test", "s2.test", "s3.test"]);
}

#[test]
fn migrate_lock_and_faults() {
    let git = Git::start();
    let b = Bench::with_site(&git);
    let _redis = b.with_redis();
    let patches = b.root().join("apps/erpnext/erpnext/patches.txt");
    fs::create_dir_all(patches.parent().unwrap()).unwrap();
    fs::write(
        &patches,
        "[pre_model_sync]\nerpnext.patches.pre_feedface00\n[post_model_sync]\nerpnext.patches.post_feedface00\n",
    )
    .unwrap();

    b.fault("s1.test", "migrate=hang\n");
    let mut holder = b.spawn(&["--site", "s1.test", "migrate"]);
    let lock_path = b.sites().join("s1.test/locks/bench_migrate.lock");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held = fs::File::open(&lock_path).map(|f| matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock)));
        if held.unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "migrate never took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let run = b.site("s1.test", &["migrate"]);
    let took = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    run.fails(1);
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(3), "{took:?}");
    assert!(
        run.stderr.contains("frappe.exceptions.LockTimeoutError: Failed to aquire lock: bench_migrate."),
        "{}",
        run.stderr
    );

    // migrate=fail: committed phases stay, versions are not refreshed.
    b.fault("s1.test", "migrate=fail\n");
    let run = b.site("s1.test", &["migrate"]);
    run.fails(1);
    assert!(run.stdout.contains("Executing erpnext.patches.post_feedface00"), "{}", run.stdout);
    assert!(run.stderr.contains("frappe.exceptions.ValidationError: bench-contract fault injection: migrate=fail"));
    assert_eq!(b.site("s1.test", &["list-apps", "-f", "json"]).ok().stdout, "{\n \"s1.test\": []\n}\n");
    let run = b.site("s1.test", &["migrate", "--skip-failing"]);
    assert!(run.ok().stdout.contains("Failed to execute patch"), "{}", run.stdout);
    assert!(!run.stdout.contains("feedface00 in"), "earlier patches were committed by the failed run");
    assert!(b.site("s1.test", &["list-apps"]).ok().stdout.contains("erpnext 15.38.0   UNVERSIONED"));

    b.fault("s1.test", "migrate=slow:0.3\n");
    let started = Instant::now();
    b.site("s1.test", &["migrate"]).ok();
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Unknown database.
    let db_name = b.json("sites/s1.test/site_config.json")["db_name"].as_str().unwrap().to_owned();
    sql(&format!("DROP DATABASE `{db_name}`"));
    let run = b.site("s1.test", &["migrate"]);
    run.fails(1);
    assert!(run.stderr.contains("pymysql.err.OperationalError: (1049, \"Unknown database '_"), "{}", run.stderr);
}

#[test]
fn backup_and_restore_round_trip() {
    let git = Git::start();
    let b = Bench::with_site(&git);
    let site_dir = b.sites().join("s1.test");
    fs::write(site_dir.join("public/files/hello.txt"), "public hello").unwrap();
    fs::write(site_dir.join("private/files/secret.txt"), "private hello").unwrap();
    // A day-old backup is deleted by the next run (default dir only).
    let stale = site_dir.join("private/backups/20000101_000000-s1_test-database.sql.gz");
    fs::write(&stale, "old").unwrap();
    let f = fs::File::options().write(true).open(&stale).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(25 * 3600)).unwrap();
    drop(f);

    let run = b.site("s1.test", &["backup", "--with-files"]);
    run.ok();
    assert!(!stale.exists(), "backups older than 24 h are deleted");
    let names = backups(&b, "s1.test");
    assert_eq!(names.len(), 4, "{names:?}");
    let stamp = &names[0][..15];
    assert!(stamp.chars().enumerate().all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() }), "{stamp}");
    let expected: Vec<String> = ["database.sql.gz", "files.tar", "private-files.tar", "site_config_backup.json"]
        .iter()
        .map(|k| format!("{stamp}-s1_test-{k}"))
        .collect();
    assert_eq!(names, expected);
    assert!(
        run.stdout.contains(&format!("Database: ./s1.test/private/backups/{stamp}-s1_test-database.sql.gz")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Config  : ./s1.test/private/backups/"));
    assert!(run.stdout.ends_with("Backup for Site s1.test has been successfully completed with files\n"));
    let db_file = site_dir.join("private/backups").join(&names[0]);
    let dump = gunzip(&db_file);
    assert!(dump.starts_with("-- begin frappe metadata\n-- [frappe]\n-- version = 0.0.1-dev\n"), "{dump}");
    assert!(dump.contains("versions: {\"frappe\": \"0.0.1-dev\", \"erpnext\": \"15.38.0\"}"), "{dump}");
    assert_eq!(
        fs::read(site_dir.join("private/backups").join(&names[3])).unwrap(),
        fs::read(site_dir.join("site_config.json")).unwrap()
    );

    // Explicit paths (relative to sites/, like frappe's cwd).
    let run = b.site(
        "s1.test",
        &["backup", "--compress", "--with-files", "--backup-path-db", "../out/db.sql.gz", "--backup-path", "../out"],
    );
    run.ok();
    assert!(b.root().join("out/db.sql.gz").is_file());
    assert!(
        fs::read_dir(b.root().join("out")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with("-files.tgz"))
    );

    // Change everything, then restore.
    b.site("s1.test", &["install-app", "hrms"]).ok();
    fs::remove_file(site_dir.join("public/files/hello.txt")).unwrap();
    let db_rel = format!("s1.test/private/backups/{}", names[0]);
    let files = format!("s1.test/private/backups/{}", names[1]);
    let private = format!("s1.test/private/backups/{}", names[2]);
    let run = b.site("s1.test", &["restore", &db_rel]);
    run.fails(1);
    assert!(run.stderr.trim_end().ends_with("EOFError"), "needs the root password: {}", run.stderr);
    let run = b.site(
        "s1.test",
        &[
            "restore",
            &db_rel,
            "--db-root-password",
            ROOT_PW,
            "--with-public-files",
            &files,
            "--with-private-files",
            &private,
        ],
    );
    assert!(run.ok().stdout.ends_with("Site s1.test has been restored with files\n"), "{}", run.stdout);
    assert_eq!(b.installed("s1.test"), "[\"frappe\", \"erpnext\"]\n");
    assert_eq!(fs::read_to_string(site_dir.join("public/files/hello.txt")).unwrap(), "public hello");
    let run = b.site("s1.test", &["restore", &db_rel, "--db-root-password", ROOT_PW]);
    assert!(run.ok().stdout.ends_with("Site s1.test has been restored\n"));

    let run = b.site("s1.test", &["restore", "nope.sql.gz", "--db-root-password", ROOT_PW]);
    run.fails(1);
    assert_eq!(run.stdout, "Invalid path nope.sql.gz\n");
    fs::write(b.root().join("corrupt.sql.gz"), "not gzip").unwrap();
    b.site("s1.test", &["restore", "../corrupt.sql.gz", "--db-root-password", ROOT_PW]).fails(1);

    // A dump from a newer frappe is a downgrade: confirm → EOF, or --force.
    let newer = dump.replace("-- version = 0.0.1-dev", "-- version = 99.0.0");
    let newer_path = b.root().join("newer.sql.gz");
    let mut gz = Command::new("gzip").arg("-c").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut gz.stdin.take().unwrap(), newer.as_bytes()).unwrap();
    fs::write(&newer_path, gz.wait_with_output().unwrap().stdout).unwrap();
    let run = b.site("s1.test", &["restore", newer_path.to_str().unwrap(), "--db-root-password", ROOT_PW]);
    run.fails(1);
    assert!(run.stdout.contains("Your site is currently on Frappe 0.0.1-dev and your backup is 99.0.0."));
    assert!(run.stderr.contains("Aborted!"));
    b.site("s1.test", &["restore", newer_path.to_str().unwrap(), "--db-root-password", ROOT_PW, "--force"]).ok();
}

#[test]
fn config_maintenance_scheduler_and_errors() {
    let git = Git::start();
    let b = Bench::with_site(&git);
    for (key, value) in [("k_int", "1"), ("k_bool", "true"), ("k_str", "hello"), ("k_gone", "x")] {
        assert_eq!(b.site("s1.test", &["set-config", key, value]).ok().stdout, "");
    }
    b.site("s1.test", &["set-config", "-p", "k_lit", "{'a': [1, 2.5, None, True, (3,)], \"b\": 'x'}"]).ok();
    b.site("s1.test", &["set-config", "k_gone", "None"]).ok();
    b.site("s1.test", &["set-config", "-p", "k_zero", "'0'"]).ok();
    b.site("s1.test", &["set-config", "-p", "k_bad", "os.system('x')"]).fails(1);
    let conf = b.json("sites/s1.test/site_config.json");
    assert_eq!(conf["k_int"], json!(1));
    assert_eq!(conf["k_bool"], json!(true));
    assert_eq!(conf["k_str"], json!("hello"));
    assert_eq!(conf["k_lit"], json!({"a": [1, 2.5, null, true, [3]], "b": "x"}));
    assert_eq!(conf["k_zero"], json!(0));
    assert!(conf.get("k_gone").is_none() && conf.get("k_bad").is_none());
    let text = b.read("sites/s1.test/site_config.json");
    assert!(text.starts_with("{\n \"db_name\": \"_") && !text.ends_with('\n'), "indent=1, sorted: {text}");
    b.run(&["set-config", "-g", "shared_key", "v"]).ok();
    assert_eq!(b.json("sites/common_site_config.json")["shared_key"], "v");

    let status = |args: &[&str]| b.site("s1.test", args).ok().stdout.clone();
    assert_eq!(status(&["set-maintenance-mode", "on"]), "");
    assert_eq!(b.json("sites/s1.test/site_config.json")["maintenance_mode"], json!(1));
    assert_eq!(status(&["scheduler", "enable"]), "Scheduler is enabled for site s1.test\n");
    assert_eq!(status(&["scheduler", "status"]), "Scheduler is disabled for site s1.test\n", "maintenance mode");
    status(&["set-maintenance-mode", "off"]);
    assert_eq!(b.json("sites/s1.test/site_config.json")["maintenance_mode"], json!(0));
    assert_eq!(status(&["scheduler", "status"]), "Scheduler is enabled for site s1.test\n");
    assert_eq!(status(&["scheduler", "pause", "-f", "json"]), "{\"status\": \"paused\", \"site\": \"s1.test\"}\n");
    assert_eq!(b.json("sites/s1.test/site_config.json")["pause_scheduler"], json!(true));
    assert_eq!(status(&["scheduler", "status", "-f", "json"]), "{\"status\": \"disabled\", \"site\": \"s1.test\"}\n");
    assert_eq!(status(&["scheduler", "resume"]), "Scheduler is resumed for site s1.test\n");
    assert_eq!(status(&["scheduler", "disable"]), "Scheduler is disabled for site s1.test\n");

    assert_eq!(
        status(&["ready-for-migration"]),
        "READY for migration: site s1.test does not have any background jobs\n"
    );
    b.fault("s1.test", "ready=no\n");
    let run = b.site("s1.test", &["ready-for-migration"]);
    run.fails(1);
    assert!(run.stdout.starts_with("NOT READY for migration: site s1.test"));

    assert_eq!(b.run(&["migrate"]).fails(1).stdout, "Please specify --site sitename\n");
    assert_eq!(b.site("nope.test", &["scheduler", "status"]).fails(1).stdout, "Site nope.test does not exist!\n");
    assert!(b.site("s1.test", &["frobnicate"]).fails(2).stderr.contains("Error: No such command 'frobnicate'."));
    assert!(
        b.site("s1.test", &["list-apps", "-f", "xml"]).fails(2).stderr.contains("'xml' is not one of 'text', 'json'")
    );
    b.run(&["set-config", "-g", "default_site", "s1.test"]).ok();
    assert_eq!(b.run(&["scheduler", "status"]).ok().stdout, "Scheduler is disabled for site s1.test\n", "default_site");
}

#[test]
fn drop_site_archives() {
    let git = Git::start();
    let b = Bench::with_site(&git);
    let db_name = b.json("sites/s1.test/site_config.json")["db_name"].as_str().unwrap().to_owned();
    let run = b.run(&["drop-site", "s1.test"]);
    run.fails(1);
    assert!(run.stdout.starts_with("Taking backup of s1.test\nBackup Summary for s1.test at "), "{}", run.stdout);
    assert!(run.stderr.trim_end().ends_with("EOFError"));
    assert!(b.sites().join("s1.test").is_dir() && database_exists(&db_name));

    let run = b.run(&["drop-site", "s1.test", "--db-root-password", ROOT_PW, "--no-backup"]);
    run.ok();
    assert!(run.stdout.contains("Moving site to archive under "));
    assert!(!b.sites().join("s1.test").exists() && !database_exists(&db_name));
    assert!(
        sql(&format!("SELECT User FROM mysql.user WHERE User = '{db_name}'")).is_empty(),
        "the user is dropped too"
    );
    assert!(b.root().join("archived/sites/s1.test/site_config.json").is_file());

    b.new_site("s1.test", &[]).ok();
    // A wrong root password is MariaDB's own 1045.
    let run = b.run(&["drop-site", "s1.test", "--root-password", "wrong", "--no-backup"]);
    run.fails(1);
    assert!(
        run.stderr.contains("(1045, \"Access denied for user 'root'@'localhost' (using password: YES)\")"),
        "{}",
        run.stderr
    );
    b.run(&["drop-site", "s1.test", "--root-password", ROOT_PW, "--no-backup"]).ok();
    assert!(b.root().join("archived/sites/s1.test1").is_dir());
    b.run(&["drop-site", "s1.test", "--db-root-password", ROOT_PW]).fails(1);
}

#[test]
fn v16_image_changes_the_few_version_dependent_behaviours() {
    let git = Git::start();
    let b = Bench::with_site(&git);
    assert_eq!(b.run(&["version"]).ok().stdout.lines().next(), Some("erpnext 15.38.0"), "v15 default: legacy");
    fs::write(b.root().join("apps/frappe/VERSION"), "16.1.0\n").unwrap();
    assert_eq!(b.run(&["version"]).ok().stdout.lines().next(), Some("erpnext 15.38.0  ()"), "v16 default: plain");
    b.new_site("s5.test", &["--mariadb-user-host-login-scope=%"]).ok();
    let run = b.new_site("erpnext", &[]);
    run.fails(1);
    assert_eq!(run.stdout, "Your bench has an app called erpnext, please choose another name for the site.\n");
    // develop/v16 refreshes the versions table on install.
    b.site("s5.test", &["install-app", "hrms"]).ok();
    assert_eq!(
        b.site("s5.test", &["list-apps", "-f", "json"]).ok().stdout,
        "{\n \"s5.test\": [\n  \"frappe\",\n  \"hrms\"\n ]\n}\n"
    );
}

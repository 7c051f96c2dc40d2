//! `benchform status` against a real deployment: the bench-contract image built through the
//! BuildKit secret path, pushed, stood up with compose, sites created and apps installed with real
//! `bench` execs — and status reporting exactly that, drift included, for a constant number of
//! execs counted from the engine's own event stream.

use std::collections::BTreeMap;
use std::time::Duration;

use benchform_bench::Bench;
use benchform_docker::build::{self, BuildSpec};
use benchform_docker::compose::Compose;
use benchform_gitserver::TestRepo;
use serde_json::Value;

use crate::support::{Run, benchform_in, root};
use crate::world::{World, engine, flavour, rt, unique};

pub(crate) const DB_ROOT_PASSWORD: &str = "db-root-pw-for-tests";
pub(crate) const ADMIN_PASSWORD: &str = "admin-pw-for-tests";

/// A deployment of the fixture: repositories on the world's git server, a locked manifest, and
/// (after `deploy`) a running compose project. Dropping it removes the project and its volumes.
pub(crate) struct Deployment {
    pub(crate) world: &'static World,
    /// Image references this deployment built, removed from the engine on drop.
    built: std::cell::RefCell<Vec<String>>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) project: String,
    /// Kept so that their work trees live as long as the deployment.
    _repos: Vec<TestRepo>,
    compose: Compose,
    pub(crate) deployed: bool,
    /// Variables every benchform run of this deployment gets (the private app's token).
    pub(crate) env: Vec<(String, String)>,
}

impl Deployment {
    pub(crate) fn new(sites: &[(&str, &[&str])]) -> Deployment {
        Deployment::create(sites, false)
    }

    /// The same, with hrms in a private repository that needs the world's token (`APP_TOKEN`).
    pub(crate) fn with_private_hrms(sites: &[(&str, &[&str])]) -> Deployment {
        Deployment::create(sites, true)
    }

    fn create(sites: &[(&str, &[&str])], private: bool) -> Deployment {
        let world = World::get();
        let project = unique("st");
        let mut repos = Vec::new();
        let hrms_path = if private { format!("private/{project}/hrms.git") } else { format!("{project}/hrms.git") };
        for (name, tag) in [("frappe", "v15.1.0"), ("erpnext", "v15.1.0"), ("hrms", "v1.0.0")] {
            let path = if name == "hrms" { hrms_path.clone() } else { format!("{project}/{name}.git") };
            let repo = TestRepo::create(&world.git_root(), &path).unwrap();
            // Each app's module folder with the patches.txt Frappe reads, as in real apps.
            let c = repo.commit_files("first", &[(&format!("{name}/patches.txt"), &patches_txt(name, None))]).unwrap();
            repo.tag_annotated(tag, &c).unwrap();
            repos.push(repo);
        }
        let dir = tempfile::tempdir().unwrap();
        let fixtures = root().join("tests/fixtures");
        let mut manifest = format!(
            "version: 1\nproject: {project}\nfrappe:\n  repo: {frappe}\n  ref: v15.1.0\napps:\n  - name: erpnext\n    repo: {erpnext}\n    ref: v15.1.0\n  - name: hrms\n    repo: {hrms}\n    ref: v1.0.0{token}\nimage:\n  repository: {registry}/{project}/erp\n  containerfile: Containerfile\n  context: {context}\n  build_args: {{FRAPPE_IMAGE_PREFIX: benchform-world}}\n  build_network: host\ndeploy:\n  compose:\n    dir: {compose}\n    files: [compose.yaml]\n  db_root_password_env: DB_ROOT_PASSWORD\n  admin_password_env: ADMIN_PASSWORD\nsites:\n",
            frappe = world.git_url(&format!("{project}/frappe.git")),
            erpnext = world.git_url(&format!("{project}/erpnext.git")),
            hrms = world.git_url(&hrms_path),
            token = if private { "\n    token_env: APP_TOKEN" } else { "" },
            registry = world.registry(),
            context = fixtures.join("bench-contract").display(),
            compose = fixtures.join("compose").display(),
        );
        for (site, apps) in sites {
            manifest.push_str(&format!("  - name: {site}\n    apps: [{}]\n", apps.join(", ")));
        }
        std::fs::write(dir.path().join("benchform.yaml"), manifest).unwrap();
        let compose = Compose {
            flavour: flavour(),
            docker_cli: world.docker_cli(),
            project: project.clone(),
            project_dir: fixtures.join("compose"),
            files: vec![fixtures.join("compose/compose.yaml")],
            env_file: None,
            engine_env: Vec::new(),
        };
        let env = if private {
            vec![("APP_TOKEN".to_string(), world.var("BENCHFORM_WORLD_GIT_TOKEN").to_string())]
        } else {
            Vec::new()
        };
        let d =
            Deployment { world, built: Default::default(), dir, project, _repos: repos, compose, deployed: false, env };
        let lock = d.benchform(&["lock"]);
        assert_eq!(lock.code, 0, "{}", lock.all());
        d
    }

    /// Release `to` of the app whose repository is `repo` (index into the repositories: 1 erpnext,
    /// 2 hrms), pin it in the manifest instead of `from`, and relock.
    /// The release adds a pre- and a post-model-sync patch to the app's patches.txt and changes
    /// one DocType definition (`<app>/core/doctype/release_note/release_note.json`).
    pub(crate) fn release(&self, repo: usize, from: &str, to: &str) {
        let r = &self._repos[repo];
        let app = ["frappe", "erpnext", "hrms"][repo];
        let doctype = format!("{app}/core/doctype/release_note/release_note.json");
        let c = r
            .commit_files(
                &format!("release {to}"),
                &[
                    (&format!("{app}/patches.txt"), &patches_txt(app, Some(to))),
                    (
                        &doctype,
                        &format!("{{\"doctype\": \"DocType\", \"name\": \"Release Note\", \"release\": \"{to}\"}}"),
                    ),
                ],
            )
            .unwrap();
        r.tag_annotated(to, &c).unwrap();
        let path = self.dir.path().join("benchform.yaml");
        let text =
            std::fs::read_to_string(&path).unwrap().replacen(&format!("    ref: {from}"), &format!("    ref: {to}"), 1);
        std::fs::write(&path, text).unwrap();
        let lock = self.benchform(&["lock"]);
        assert_eq!(lock.code, 0, "{}", lock.all());
    }

    pub(crate) fn benchform(&self, args: &[&str]) -> Run {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        benchform_in(self.dir.path(), args, &env)
    }

    /// `benchform apply ARGS` with the site passwords (and the token, if any) in the environment.
    pub(crate) fn apply(&self, args: &[&str]) -> Run {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend(apply_env());
        let argv: Vec<&str> = std::iter::once("apply").chain(args.iter().copied()).collect();
        benchform_in(self.dir.path(), &argv, &env)
    }

    /// Write the bench-contract fault file of `site` (empty text removes it, which must exist).
    pub(crate) fn fault(&self, site: &str, text: &str) {
        let path = format!("/home/frappe/frappe-bench/sites/{site}/.bench-contract-fault");
        let backend = self.backend();
        let out = if text.is_empty() {
            std::process::Command::new(self.world.docker_cli())
                .args(["exec", "-u", "frappe", &backend, "rm", &path])
                .output()
                .unwrap()
        } else {
            let local = self.dir.path().join("fault");
            std::fs::write(&local, text).unwrap();
            std::process::Command::new(self.world.docker_cli())
                .args(["cp", &local.display().to_string(), &format!("{backend}:{path}")])
                .output()
                .unwrap()
        };
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// `benchform apply ARGS` running in the background (site passwords, the token, `extra_env`),
    /// its standard output as lines on a channel; standard error is dropped.
    pub(crate) fn spawn_apply(
        &self,
        args: &[&str],
        extra_env: &[(&str, &str)],
    ) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_benchform"))
            .arg("apply")
            .args(args)
            .current_dir(self.dir.path())
            .envs(apply_env())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().copied())
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        (child, rx)
    }

    /// The first container of `service`, named as the flavour under test names it
    /// (`proj-svc-1` for v2, `proj_svc_1` for v1).
    pub(crate) fn container_name(&self, service: &str) -> String {
        match flavour() {
            benchform_docker::compose::Flavour::V1 => format!("{}_{service}_1", self.project),
            benchform_docker::compose::Flavour::V2 => format!("{}-{service}-1", self.project),
        }
    }

    pub(crate) fn status(&self, extra: &[&str]) -> Value {
        let mut args = vec!["status", "--format", "json"];
        args.extend(extra);
        let run = self.benchform(&args);
        assert_eq!(run.code, 0, "{}", run.all());
        let doc = serde_json::from_str(&run.stdout).unwrap();
        crate::support::assert_matches_schema(&doc, "status.schema.json");
        doc
    }

    fn reference(&self, tag: &str) -> String {
        format!("{}/{}/erp:{tag}", self.world.registry(), self.project)
    }

    /// Build the image as the layered Containerfile expects: apps as the `apps_json` secret.
    fn build_and_push(&self, tag: &str) {
        let apps = serde_json::json!([
            {"url": self.world.git_url(&format!("{}/erpnext.git", self.project)), "branch": "v15.1.0"},
            {"url": self.world.git_url(&format!("{}/hrms.git", self.project)), "branch": "v1.0.0"},
        ]);
        let secret = self.dir.path().join("apps.json");
        std::fs::write(&secret, apps.to_string()).unwrap();
        let build_args = BTreeMap::from([
            ("FRAPPE_IMAGE_PREFIX".to_string(), "benchform-world".to_string()),
            ("FRAPPE_PATH".to_string(), self.world.git_url(&format!("{}/frappe.git", self.project))),
            ("FRAPPE_BRANCH".to_string(), "v15.1.0".to_string()),
            ("CACHE_BUST".to_string(), tag.to_string()),
        ]);
        let labels = BTreeMap::from([("org.benchform.project".to_string(), self.project.clone())]);
        let context = root().join("tests/fixtures/bench-contract");
        let reference = self.reference(tag);
        let spec = BuildSpec {
            context: &context,
            containerfile: &context.join("Containerfile"),
            reference: &reference,
            build_args: &build_args,
            labels: &labels,
            apps_json: &secret,
            network: Some("host"),
            no_cache: false,
        };
        let cli = build::Cli::new(self.world.docker_cli());
        let rt = rt();
        rt.block_on(build::build(&cli, &spec, &[], |_| {})).unwrap();
        self.built.borrow_mut().push(reference.clone());
        rt.block_on(build::push(&cli, &reference, &[], |_| {})).unwrap();
    }

    fn env(&self, tag: &str) -> Vec<(String, String)> {
        vec![
            ("CUSTOM_IMAGE".to_string(), format!("{}/{}/erp", self.world.registry(), self.project)),
            ("CUSTOM_TAG".to_string(), tag.to_string()),
            ("PULL_POLICY".to_string(), benchform_docker::compose::pull_if_missing(flavour()).to_string()),
        ]
    }

    fn deploy(&mut self, tag: &str) {
        let rt = rt();
        rt.block_on(self.compose.up(&self.env(tag), false, &[])).unwrap();
        self.deployed = true;
    }

    pub(crate) fn backend(&self) -> String {
        let rt = rt();
        let engine = rt.block_on(engine());
        for _ in 0..100 {
            let containers = rt.block_on(engine.project_containers(&self.project)).unwrap();
            let configured = containers.iter().any(|c| c.service == "configurator" && c.state == "exited");
            if let Some(b) = containers.iter().find(|c| c.service == "backend" && c.state == "running")
                && configured
            {
                return b.name.clone();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the backend of {} did not come up", self.project);
    }

    /// SQL as MariaDB's root in the project's `db` container (the password reaches the client
    /// through the environment, never argv): the first column of each row.
    pub(crate) fn sql(&self, query: &str) -> Vec<String> {
        let out = std::process::Command::new(self.world.docker_cli())
            .args(["exec", "-i", "-e", "MYSQL_PWD", &self.db_container()])
            .args(["mariadb", "-uroot", "--batch", "--skip-column-names", "-e", query])
            .env("MYSQL_PWD", DB_ROOT_PASSWORD)
            .output()
            .unwrap();
        assert!(out.status.success(), "{query}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_string())
            .collect()
    }

    /// Adds `n` business rows (`tabToDo`) to a site's database.
    pub(crate) fn write_rows(&self, site: &str, n: usize) {
        let db = self.db_name(site);
        let values: Vec<String> = (0..n)
            .map(|i| format!("(CONCAT(LEFT(MD5(UUID()), 8), '-{i}'), NOW(6), NOW(6), 'Administrator', 'Open', 'row {i} of {site}')"))
            .collect();
        self.sql(&format!(
            "INSERT INTO `{db}`.`tabToDo` (name, creation, modified, owner, status, description) VALUES {}",
            values.join(", ")
        ));
    }

    /// The number and a checksum of a site's business rows.
    pub(crate) fn rows(&self, site: &str) -> String {
        self.rows_in(&self.db_name(site))
    }

    /// The same, for any database of the server.
    pub(crate) fn rows_in(&self, db: &str) -> String {
        let q = format!(
            "SET SESSION group_concat_max_len = 16777216; SELECT CONCAT(COUNT(*), ':', IFNULL(MD5(GROUP_CONCAT(name, description, creation ORDER BY name)), '-')) FROM `{db}`.`tabToDo`"
        );
        self.sql(&q).join("")
    }

    /// The running `db` container, found by its compose labels (whichever flavour made it).
    pub(crate) fn db_container(&self) -> String {
        let out = std::process::Command::new(self.world.docker_cli())
            .args(["ps", "--format", "{{.Names}}", "--filter"])
            .arg(format!("label=com.docker.compose.project={}", self.project))
            .args(["--filter", "label=com.docker.compose.service=db"])
            .output()
            .unwrap();
        let name = String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or_default().to_string();
        assert!(!name.is_empty(), "no running db container in {}", self.project);
        name
    }

    /// A site's `db_name`, from its site_config.json in the backend.
    pub(crate) fn db_name(&self, site: &str) -> String {
        let path = format!("/home/frappe/frappe-bench/sites/{site}/site_config.json");
        let out = std::process::Command::new(self.world.docker_cli())
            .args(["exec", &self.backend(), "cat", &path])
            .output()
            .unwrap();
        let config: Value = serde_json::from_slice(&out.stdout).unwrap();
        config["db_name"].as_str().unwrap().to_string()
    }

    /// `bench ARGS` in the backend, as an operator would with `docker exec`.
    pub(crate) fn bench(&self, args: &[&str]) -> (i64, String) {
        let rt = rt();
        let engine = rt.block_on(engine());
        let bench = Bench { engine: &engine, container: self.backend() };
        let argv: Vec<String> = std::iter::once("bench").chain(args.iter().copied()).map(str::to_string).collect();
        let out = rt.block_on(bench.run(&argv, Some(Duration::from_secs(60)))).unwrap();
        (out.exit_code, format!("{}{}", out.stdout, out.stderr))
    }

    /// `bench new-site`, answering its password prompts on stdin so that no password is in argv.
    fn new_site(&self, site: &str, apps: &[&str]) {
        let rt = rt();
        let engine = rt.block_on(engine());
        let bench = Bench { engine: &engine, container: self.backend() };
        let argv: Vec<String> = ["bench", "new-site", site].iter().map(|s| s.to_string()).collect();
        let answers = format!("{DB_ROOT_PASSWORD}\n{ADMIN_PASSWORD}\n");
        let out =
            rt.block_on(bench.run_with_input(&argv, Some(answers.as_bytes()), Some(Duration::from_secs(60)))).unwrap();
        assert_eq!(out.exit_code, 0, "{}{}", out.stdout, out.stderr);
        assert!(!format!("{}{}", out.stdout, out.stderr).contains(DB_ROOT_PASSWORD));
        for app in apps {
            let (code, out) = self.bench(&["--site", site, "install-app", app]);
            assert_eq!(code, 0, "{out}");
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if self.deployed {
            let env = self.env("none");
            let _ = rt().block_on(self.compose.down(&env, true));
        }
        for reference in self.built.borrow().iter() {
            let _ = std::process::Command::new(self.world.docker_cli()).args(["rmi", reference]).output();
        }
        let _ = std::fs::remove_dir_all(self.world.git_root().join(&self.project));
        let _ = std::fs::remove_dir_all(self.world.git_root().join("private").join(&self.project));
    }
}

pub(crate) fn site<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sites"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn status_reports_exactly_what_was_done_and_the_drift() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext", "hrms"]), ("b.localhost", &["erpnext"])]);

    // Nothing exists yet.
    let before = d.status(&[]);
    assert_eq!(before["format_version"], 1);
    assert_eq!(before["lock"]["fresh"], true);
    assert_eq!(before["image"]["registry"]["state"], "absent");
    assert!(before["image"]["engine"].is_null());
    assert!(before["services"].as_array().unwrap().is_empty());
    assert_eq!(before["sites_observed"], false);
    let tag = before["image"]["tag"].as_str().unwrap().to_string();
    assert!(tag.starts_with("bf1-"), "{tag}");

    // Build through the BuildKit secret path, push, deploy, create sites.
    d.build_and_push(&tag);
    d.deploy(&tag);
    let watch = Watch::start(&d.project);
    d.new_site("a.localhost", &["erpnext", "hrms"]);
    d.new_site("b.localhost", &["erpnext"]);

    let full = d.status(&["--refresh", "full"]);
    assert!(matches!(full["image"]["registry"]["state"].as_str(), Some("present")));
    assert!(full["image"]["engine"].is_string());
    let reference = d.reference(&tag);
    let backend = full["services"].as_array().unwrap().iter().find(|s| s["service"] == "backend").unwrap();
    assert_eq!(backend["image"], reference.as_str());
    assert_eq!(backend["up_to_date"], true);
    assert_eq!(full["apps_source"], "execute");
    assert_eq!(names(&site(&full, "a.localhost")["installed"]), ["frappe", "erpnext", "hrms"]);
    assert_eq!(names(&site(&full, "b.localhost")["installed"]), ["frappe", "erpnext"]);
    assert_eq!(site(&full, "a.localhost")["fingerprint_matches"], false, "never migrated by benchform");
    assert!(full["drift"].as_array().unwrap().is_empty(), "{}", full["drift"]);

    // Without --refresh full, every site's database is read in one exec: the same installed set
    // (not Frappe v15's versions table, which knows nothing until a migrate).
    let cheap = d.status(&[]);
    assert_eq!(cheap["apps_source"], "database");
    assert_eq!(names(&site(&cheap, "a.localhost")["installed"]), ["frappe", "erpnext", "hrms"]);
    assert_eq!(names(&site(&cheap, "b.localhost")["installed"]), ["frappe", "erpnext"]);

    // Drift: an app installed by hand on b, the way an operator would.
    let out = std::process::Command::new(d.world.docker_cli())
        .args(["exec", "-u", "frappe", &d.backend(), "bench", "--site", "b.localhost", "install-app", "hrms"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let drifted = d.status(&["--refresh", "full"]);
    let drift = drifted["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0]["kind"], "app-installed-outside");
    assert_eq!(drift[0]["site"], "b.localhost");
    assert_eq!(drift[0]["app"], "hrms");
    let text = d.benchform(&["status", "--refresh", "full"]);
    assert!(text.stdout.contains("Changes outside benchform"), "{}", text.stdout);
    assert!(text.stdout.contains("hrms is installed on b.localhost but the manifest does not list it there"));
    // An exec that outlives its timeout is stopped waiting for, with a clear error.
    let rt = rt();
    let engine = rt.block_on(engine());
    let bench = Bench { engine: &engine, container: d.backend() };
    let argv = vec!["sleep".to_string(), "5".to_string()];
    let err = rt.block_on(bench.run(&argv, Some(Duration::from_secs(1)))).unwrap_err();
    assert!(err.to_string().contains("did not finish within 1 s"), "{err}");

    // Passwords went in on stdin: the engine's event stream (which records every exec's argv)
    // never saw them.
    let actions = watch.stop();
    assert!(actions.iter().any(|a| a.contains("new-site a.localhost")), "{actions:?}");
    for secret in [DB_ROOT_PASSWORD, ADMIN_PASSWORD] {
        assert!(actions.iter().all(|a| !a.contains(secret)));
        assert!(!text.all().contains(secret));
        assert!(!serde_json::to_string(&drifted).unwrap().contains(secret));
    }
}

/// Watches one project's exec_create events live from the engine (`docker events`). Replaying
/// events with `since` is no good here: the engine keeps only its last 256, which parallel tests
/// overrun.
pub(crate) struct Watch {
    child: std::process::Child,
}

impl Watch {
    pub(crate) fn start(project: &str) -> Watch {
        let child = std::process::Command::new(World::get().docker_cli())
            .args(["events", "--filter", "type=container", "--filter", "event=exec_create"])
            .args(["--filter", &format!("label=com.docker.compose.project={project}")])
            .args(["--format", "{{index .Actor.Attributes \"com.docker.compose.service\"}}|{{.Action}}"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Let the subscription reach the engine before anything happens.
        std::thread::sleep(Duration::from_millis(700));
        Watch { child }
    }

    /// The `exec_create: <argv>` actions seen, but for the engine's own healthchecks of the
    /// `db` service (benchform never execs there).
    pub(crate) fn stop(mut self) -> Vec<String> {
        std::thread::sleep(Duration::from_millis(700));
        let _ = self.child.kill();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('|'))
            .filter(|(service, _)| *service != "db")
            .map(|(_, action)| action.to_string())
            .collect()
    }
}

#[test]
fn observing_one_site_or_thirty_costs_the_same_execs() {
    let mut counts = Vec::new();
    for n in [1usize, 30] {
        let site_names: Vec<String> = (0..n).map(|i| format!("s{i}.localhost")).collect();
        let sites: Vec<(&str, &[&str])> = site_names.iter().map(|s| (s.as_str(), &["erpnext"][..])).collect();
        let mut d = Deployment::new(&sites);
        let tag = d.status(&[])["image"]["tag"].as_str().unwrap().to_string();
        d.build_and_push(&tag);
        d.deploy(&tag);
        for s in &site_names {
            d.new_site(s, &[]);
        }
        let watch = Watch::start(&d.project);
        let report = d.status(&[]);
        assert_eq!(report["sites"].as_array().unwrap().iter().filter(|s| s["exists"] == true).count(), n);
        let seen = watch.stop();
        counts.push(seen.len());
        assert!(
            seen.iter().all(|a| a.contains("find sites") || a.contains("SELECT defvalue FROM tabDefaultValue")),
            "{seen:?}"
        );
        assert!(!seen.iter().any(|a| a.contains("bench ")), "no bench process to observe: {seen:?}");
        assert_eq!(report["apps_source"], "database");
        for s in report["sites"].as_array().unwrap() {
            assert_eq!(names(&s["installed"]), ["frappe"], "made with no app: {s}");
        }
        // Each site's own password reached the client through the exec's environment only.
        let config = std::process::Command::new(d.world.docker_cli())
            .args(["exec", &d.backend(), "cat", "/home/frappe/frappe-bench/sites/s0.localhost/site_config.json"])
            .output()
            .unwrap();
        let config: Value = serde_json::from_slice(&config.stdout).unwrap();
        let password = config["db_password"].as_str().unwrap();
        assert!(!seen.iter().any(|a| a.contains(password)), "a site's database password is in the engine's events");
        assert!(!serde_json::to_string(&report).unwrap().contains(password));
        if n == 1 {
            // An image without a database client: bench is asked, site by site, and status says so.
            let rm = std::process::Command::new(d.world.docker_cli())
                .args(["exec", "-u", "root", &d.backend(), "rm", "/usr/bin/mariadb"])
                .output()
                .unwrap();
            assert!(rm.status.success(), "{}", String::from_utf8_lossy(&rm.stderr));
            let fallback = d.status(&[]);
            assert_eq!(fallback["apps_source"], "execute");
            assert_eq!(names(&site(&fallback, "s0.localhost")["installed"]), ["frappe"]);
        }
    }
    assert_eq!(counts, [2, 2], "status must cost a constant number of execs");
}

/// What an apply costs does not grow with the sites it leaves alone: with nothing to change it is
/// the two observation execs and no `bench` process, and adding a site next to one or ten
/// existing ones runs the same commands (its reads name it alone) but for the health gate, which
/// pings every site in at most 8 execs.
#[test]
fn an_apply_costs_the_same_next_to_one_site_or_ten() {
    let mut costs = Vec::new();
    for n in [1usize, 10] {
        let existing: Vec<String> = (0..n).map(|i| format!("s{i}.localhost")).collect();
        let sites: Vec<(&str, &[&str])> = existing.iter().map(|s| (s.as_str(), &[][..])).collect();
        let mut d = Deployment::new(&sites);
        let first = d.apply(&["--auto-approve", "--parallelism", "4"]);
        d.deployed = true;
        assert_eq!(first.code, 0, "{}", first.all());

        let watch = Watch::start(&d.project);
        let unchanged = d.apply(&["--auto-approve"]);
        let seen = watch.stop();
        assert_eq!(unchanged.code, 0, "{}", unchanged.all());
        assert_eq!(seen.len(), 2, "a no-op apply is the two observation execs: {seen:?}");
        assert!(!seen.iter().any(|a| a.starts_with("exec_create: bench ")), "{seen:?}");

        let path = d.dir.path().join("benchform.yaml");
        let manifest = std::fs::read_to_string(&path).unwrap() + "  - name: new.localhost\n    apps: []\n";
        std::fs::write(&path, manifest).unwrap();
        let watch = Watch::start(&d.project);
        let added = d.apply(&["--auto-approve", "--format", "json"]);
        let seen = watch.stop();
        assert_eq!(added.code, 0, "{}", added.all());
        let (gate, rest): (Vec<String>, Vec<String>) = seen.into_iter().partition(|a| a.contains("curl -sS"));
        assert!(!gate.is_empty() && gate.len() <= 8, "the gate pings in at most 8 execs: {gate:?}");
        let pinged: usize = gate
            .iter()
            .map(|a| existing.iter().filter(|s| a.ends_with(&format!(" {s}")) || a.contains(&format!(" {s} "))).count())
            .sum();
        assert_eq!(pinged, n, "every existing site is pinged once: {gate:?}");
        for action in &rest {
            assert!(
                !existing.iter().any(|s| action.contains(s.as_str())),
                "a command for one site read another: {action}"
            );
        }
        costs.push(rest);
    }
    let shape = |actions: &[String]| -> Vec<String> {
        actions.iter().map(|a| a.split_whitespace().take(3).collect::<Vec<_>>().join(" ")).collect()
    };
    assert_eq!(shape(&costs[0]), shape(&costs[1]), "adding a site costs the same next to 1 or 10");
}

#[test]
fn unobservable_worlds_are_clear_errors_with_exit_1() {
    let d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    let manifest = d.dir.path().join("benchform.yaml");
    let original = std::fs::read_to_string(&manifest).unwrap();

    // A dead engine socket.
    let sock_dir = tempfile::tempdir().unwrap();
    let sock = sock_dir.path().join("docker.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    // status and apply observe the same way: each situation fails both, before anything changes.
    let both = |env: &[(&str, &str)]| {
        [&["status"][..], &["apply", "--auto-approve"][..]].map(|args| benchform_in(d.dir.path(), args, env))
    };
    for dead in both(&[("DOCKER_HOST", &format!("unix://{}", sock.display()))]) {
        assert_eq!(dead.code, 1);
        assert!(
            dead.stderr.contains("error: cannot observe the engine: no Docker Engine answers at unix://"),
            "{}",
            dead.stderr
        );
        assert!(dead.stderr.contains("DOCKER_HOST"), "{}", dead.stderr);
    }

    // A registry on a closed port.
    let registry = d.world.registry().to_string();
    std::fs::write(&manifest, original.replace(&format!("repository: {registry}/"), "repository: 127.0.0.1:1/"))
        .unwrap();
    for closed in both(&[]) {
        assert_eq!(closed.code, 1);
        assert!(
            closed.stderr.contains("error: cannot observe the registry: registry 127.0.0.1:1 could not be reached"),
            "{}",
            closed.stderr
        );
    }

    // The htpasswd registry with a wrong password: the fix names `docker login`.
    let auth = d.world.auth_registry().to_string();
    std::fs::write(&manifest, original.replace(&format!("repository: {registry}/"), &format!("repository: {auth}/")))
        .unwrap();
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        format!("{{\"auths\": {{\"{auth}\": {{\"auth\": \"YmVuY2hmb3JtOndyb25nLXBhc3N3b3Jk\"}}}}}}"),
    )
    .unwrap();
    for wrong in both(&[("DOCKER_CONFIG", &config.path().display().to_string())]) {
        assert_eq!(wrong.code, 1);
        assert!(wrong.stderr.contains("refused the credentials"), "{}", wrong.stderr);
        assert!(wrong.stderr.contains(&format!("docker login {auth}")), "{}", wrong.stderr);
        assert!(!wrong.all().contains("wrong-password"));
    }

    // No lock.
    std::fs::write(&manifest, &original).unwrap();
    std::fs::remove_file(d.dir.path().join("benchform.lock")).unwrap();
    let unlocked = d.benchform(&["status"]);
    assert_eq!(unlocked.code, 1);
    assert!(unlocked.stderr.contains("run `benchform lock`"), "{}", unlocked.stderr);
}

/// Do by hand what apply will do for one site: migrate, then record what it was migrated to.
fn migrate_and_record(d: &Deployment, site: &str, apps: &[&str], tag: &str) {
    let (code, out) = d.bench(&["--site", site, "migrate"]);
    assert_eq!(code, 0, "{out}");
    let lock = benchform_manifest::lock::parse_lock(
        "benchform.lock",
        &std::fs::read(d.dir.path().join("benchform.lock")).unwrap(),
    )
    .unwrap();
    let manifest = std::fs::read_to_string(d.dir.path().join("benchform.yaml")).unwrap();
    let manifest = benchform_manifest::validate("benchform.yaml", manifest.as_bytes()).manifest.unwrap();
    let names: Vec<&str> = std::iter::once("frappe").chain(apps.iter().copied()).collect();
    let commits: BTreeMap<String, String> =
        names.iter().map(|n| (n.to_string(), lock.entry(n).unwrap().commit.clone())).collect();
    let refs: BTreeMap<String, String> = names
        .iter()
        .map(|n| (n.to_string(), manifest.sources().iter().find(|s| s.name == *n).unwrap().git_ref.to_string()))
        .collect();
    let record = benchform_core::record::SiteRecord::new(
        &d.project,
        commits,
        refs,
        &d.reference(tag),
        None,
        "2026-11-27T00:00:00Z",
    );
    let (code, out) = d.bench(&["--site", site, "set-config", "-p", "benchform", &record.to_python_literal()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn plan_is_empty_when_converged_and_names_only_the_release_steps_after_a_repin() {
    let sites: &[(&str, &[&str])] =
        &[("a.localhost", &["erpnext", "hrms"]), ("b.localhost", &["erpnext"]), ("c.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    let tag = d.status(&[])["image"]["tag"].as_str().unwrap().to_string();
    d.build_and_push(&tag);
    d.deploy(&tag);
    for (site, apps) in sites {
        d.new_site(site, apps);
        migrate_and_record(&d, site, apps, &tag);
    }

    let converged = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(converged.code, 0, "{}", converged.all());
    assert!(converged.stdout.starts_with("No changes. The deployment matches benchform.yaml."), "{}", converged.stdout);

    // Re-pin hrms (only a.localhost has it) and relock.
    d.release(2, "v1.0.0", "v1.1.0");

    let run = d.benchform(&["plan", "--detailed-exitcode", "--format", "json"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["format_version"], 2);
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schema/plan.schema.json")).unwrap()).unwrap();
    let errors: Vec<String> =
        jsonschema::validator_for(&schema).unwrap().iter_errors(&plan).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "the plan does not match schema/plan.schema.json: {errors:?}");
    let ids: Vec<&str> = plan["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "build",
            "verify",
            "push",
            "maintenance-on:a.localhost",
            "backup:a.localhost",
            "deploy",
            "refresh-assets",
            "migrate:a.localhost",
            "maintenance-off:a.localhost"
        ]
    );
    let migrate = &plan["steps"][7];
    assert_eq!(migrate["reason"], "hrms v1.0.0 → v1.1.0");
    assert_eq!(plan["summary"]["migrate"], 1);

    let text = d.benchform(&["plan"]);
    assert!(text.stdout.contains("Plan: 1 build, 1 verify, 1 push, 1 maintenance-on, 1 backup, 1 deploy, 1 refresh-assets, 1 migrate, 1 maintenance-off; 0 destructive"), "{}", text.stdout);
    let md = d.benchform(&["plan", "--format", "markdown"]);
    assert!(md.stdout.contains("| 8 | migrate | a.localhost | hrms v1.0.0 → v1.1.0 |"), "{}", md.stdout);

    // Saved plans round-trip through `show` in every format, and carry the world's fingerprint.
    let saved = d.dir.path().join("plan.json");
    let saved_arg = saved.display().to_string();
    let json = d.benchform(&["plan", "-o", &saved_arg, "--format", "json"]);
    assert_eq!(json.code, 0);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let fp = &doc["fingerprint"];
    assert_eq!(
        fp["image"],
        format!("{}/{}/erp:{}", d.world.registry(), d.project, plan["image"]["tag"].as_str().unwrap())
    );
    assert_eq!(fp["services"]["backend"]["image"], d.reference(&tag).as_str());
    assert_eq!(fp["sites"]["a.localhost"]["installed"], serde_json::json!(["frappe", "erpnext", "hrms"]));
    assert!(fp["sites"]["a.localhost"]["migrated_to"].is_string());
    assert_eq!(
        jsonschema::validator_for(&schema).unwrap().iter_errors(&doc).count(),
        0,
        "saved plans match the schema"
    );
    for (format, live) in [("json", &json.stdout), ("text", &text.stdout), ("markdown", &md.stdout)] {
        let shown = d.benchform(&["show", &saved_arg, "--format", format]);
        assert_eq!(shown.code, 0, "{}", shown.all());
        assert_eq!(&shown.stdout, live, "show --format {format} differs from plan --format {format}");
    }
    let garbage = d.dir.path().join("garbage.json");
    std::fs::write(&garbage, "{}").unwrap();
    let bad = d.benchform(&["show", &garbage.display().to_string()]);
    assert_eq!(bad.code, 1);
    assert!(bad.stderr.contains("is not a benchform plan"), "{}", bad.stderr);
}

/// Build the bench-contract image with one private app (token in the `apps_json` secret only).
fn build_private(world: &World, project: &str, fault: &str, reference: &str) -> (String, Vec<TestRepo>) {
    let token = world.var("BENCHFORM_WORLD_GIT_TOKEN").to_string();
    let frappe = TestRepo::create(&world.git_root(), &format!("{project}/frappe.git")).unwrap();
    let c = frappe.commit("f").unwrap();
    frappe.tag_lightweight("v15.1.0", &c).unwrap();
    let app = TestRepo::create(&world.git_root(), &format!("private/{project}/secret_app.git")).unwrap();
    let c = app.commit("s").unwrap();
    app.tag_annotated("v1.0.0", &c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("apps.json");
    let url = world
        .git_url(&format!("private/{project}/secret_app.git"))
        .replace("http://", &format!("http://x-access-token:{token}@"));
    std::fs::write(&secret, serde_json::json!([{"url": url, "branch": "v1.0.0"}]).to_string()).unwrap();
    let mut build_args = BTreeMap::from([
        ("FRAPPE_IMAGE_PREFIX".to_string(), "benchform-world".to_string()),
        ("FRAPPE_PATH".to_string(), world.git_url(&format!("{project}/frappe.git"))),
        ("FRAPPE_BRANCH".to_string(), "v15.1.0".to_string()),
    ]);
    if !fault.is_empty() {
        build_args.insert("BENCH_CONTRACT_FAULT".to_string(), fault.to_string());
    }
    let context = root().join("tests/fixtures/bench-contract");
    let labels = BTreeMap::new();
    let spec = BuildSpec {
        context: &context,
        containerfile: &context.join("Containerfile"),
        reference,
        build_args: &build_args,
        labels: &labels,
        apps_json: &secret,
        network: Some("host"),
        no_cache: false,
    };
    let mut lines = Vec::new();
    rt().block_on(build::build(&build::Cli::new(world.docker_cli()), &spec, std::slice::from_ref(&token), |l| {
        lines.push(l.to_string())
    }))
    .unwrap();
    assert!(!lines.join("\n").contains(&token), "build output is masked");
    (token, vec![frappe, app])
}

#[test]
fn verification_checks_commits_and_finds_leaked_tokens() {
    use benchform_core::verify;
    let world = World::get();
    let project = unique("vf");
    let cli = build::Cli::new(world.docker_cli());
    let names = vec!["frappe".to_string(), "secret_app".to_string()];
    for (fault, leaks) in [("", false), ("leak-token-in-log", true)] {
        let reference = format!("benchform-test/{project}:{}", if leaks { "leak" } else { "clean" });
        let (token, repos) =
            build_private(world, &format!("{project}{}", if leaks { "l" } else { "c" }), fault, &reference);
        let contents = rt().block_on(build::image_contents(&cli, &reference)).unwrap();
        let lock_for = |repo: &TestRepo, name: &str, git_ref: &str| benchform_manifest::LockEntry {
            name: name.into(),
            repo: String::new(),
            git_ref: git_ref.into(),
            kind: benchform_manifest::RefKind::Tag,
            commit: rev_parse(&repo.path, &format!("{git_ref}^{{commit}}")),
            object: Some(rev_parse(&repo.path, git_ref)),
        };
        let lock = benchform_manifest::LockFile {
            version: 1,
            entries: vec![lock_for(&repos[0], "frappe", "v15.1.0"), lock_for(&repos[1], "secret_app", "v1.0.0")],
        };
        assert_eq!(
            verify::check_apps(&contents.apps_json, &contents.apps_dir, &names, &lock),
            vec![],
            "{}",
            contents.apps_json
        );
        let places = [
            ("history", contents.history.as_str()),
            ("metadata", contents.metadata.as_str()),
            ("logs/", contents.logs.as_str()),
        ];
        let found = verify::find_secrets(&places, std::slice::from_ref(&token));
        if leaks {
            assert_eq!(found, [verify::VerifyProblem::SecretInImage { place: "logs/".into() }]);
        } else {
            assert!(found.is_empty(), "{found:?}");
            assert!(!contents.logs.is_empty(), "bench.log is read");
        }
        // A tag moved after locking: the image holds another commit than the lock pins.
        let mut moved = lock.clone();
        moved.entries[1].commit = "0".repeat(40);
        moved.entries[1].object = None;
        assert!(matches!(
            &verify::check_apps(&contents.apps_json, &contents.apps_dir, &names, &moved)[0],
            verify::VerifyProblem::WrongCommit { app, .. } if app == "secret_app"
        ));
        let _ = std::process::Command::new(world.docker_cli()).args(["rmi", &reference]).output();
        for r in &repos {
            let _ = std::fs::remove_dir_all(&r.path);
        }
    }
}

fn rev_parse(repo: &std::path::Path, rev: &str) -> String {
    let out = std::process::Command::new("git").arg("--git-dir").arg(repo).args(["rev-parse", rev]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// An app's patches.txt in the test repositories: one patch from the first release on, and for
/// `release` one more before and one after the schema sync.
pub(crate) fn patches_txt(app: &str, release: Option<&str>) -> String {
    let mut pre = vec![format!("{app}.patches.v1_0.initial")];
    let mut post = Vec::new();
    if let Some(to) = release {
        let to = to.replace(['.', '-'], "_");
        pre.push(format!("{app}.patches.{to}.before_sync"));
        post.push(format!("{app}.patches.{to}.after_sync"));
    }
    format!("[pre_model_sync]\n{}\n\n[post_model_sync]\n{}\n", pre.join("\n"), post.join("\n"))
}

pub(crate) fn apply_env() -> [(&'static str, &'static str); 2] {
    [("DB_ROOT_PASSWORD", DB_ROOT_PASSWORD), ("ADMIN_PASSWORD", ADMIN_PASSWORD)]
}

#[test]
fn apply_converges_repeats_nothing_and_applies_saved_plans_exactly() {
    let sites: &[(&str, &[&str])] = &[("a.localhost", &["erpnext", "hrms"]), ("b.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    d.deployed = true; // apply deploys; Drop takes the project down
    let mut outputs = Vec::new();
    let whole = Watch::start(&d.project);

    // Without a terminal, apply asks for --auto-approve instead of guessing.
    let refused = benchform_in(d.dir.path(), &["apply"], &apply_env());
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("no terminal to confirm"), "{}", refused.stderr);

    // First apply, from nothing.
    let first = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(first.code, 0, "{}", first.all());
    assert!(first.stdout.contains("Apply complete"), "{}", first.stdout);
    outputs.push(first.all());
    let after = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(after.code, 0, "after apply, plan is empty:\n{}", after.all());

    // Again: nothing to do, and nothing done (counted from the engine's events).
    let watch = Watch::start(&d.project);
    let again = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(again.code, 0);
    assert_eq!(again.stdout, "No changes. The deployment matches benchform.yaml.\n");
    let seen = watch.stop();
    let reads = ["find sites", "SELECT defvalue FROM tabDefaultValue"];
    assert!(seen.iter().all(|a| reads.iter().any(|r| a.contains(r))), "a re-apply mutated something: {seen:?}");

    // Re-pin hrms, save the plan, apply exactly that.
    d.release(2, "v1.0.0", "v1.1.0");
    let saved = d.dir.path().join("release.json").display().to_string();
    let plan = d.benchform(&["plan", "-o", &saved, "--format", "json"]);
    let planned: Vec<String> = serde_json::from_str::<Value>(&plan.stdout).unwrap()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "→ {} {}",
                s["kind"].as_str().unwrap(),
                [s["site"].as_str(), s["app"].as_str()].iter().flatten().copied().collect::<Vec<_>>().join(" ")
            )
        })
        .collect();
    let release = benchform_in(d.dir.path(), &["apply", &saved], &apply_env());
    assert_eq!(release.code, 0, "{}", release.all());
    let done: Vec<String> =
        release.stdout.lines().filter(|l| l.starts_with('→')).map(|l| l.trim_end().to_string()).collect();
    let planned: Vec<String> = planned.iter().map(|l| l.trim_end().to_string()).collect();
    assert_eq!(done, planned, "apply did exactly what plan printed");
    assert!(!done.iter().any(|l| l.contains("b.localhost")), "{done:?}");
    outputs.push(release.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    let backups = d.dir.path().join("backups").join(&d.project).join("a.localhost");
    assert_eq!(std::fs::read_dir(&backups).map(|r| r.count()).unwrap_or(0), 1, "one backup copied off the volume");

    // A saved plan is refused once the world moved, naming what moved.
    d.release(2, "v1.1.0", "v1.2.0");
    let stale_file = d.dir.path().join("stale.json").display().to_string();
    assert_eq!(d.benchform(&["plan", "-o", &stale_file]).code, 0);
    let out = std::process::Command::new(d.world.docker_cli())
        .args(["exec", "-u", "frappe", &d.backend(), "bench", "--site", "b.localhost", "install-app", "hrms"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stale = benchform_in(d.dir.path(), &["apply", &stale_file], &apply_env());
    assert_eq!(stale.code, 1, "{}", stale.all());
    assert!(stale.stderr.contains("is stale"), "{}", stale.stderr);
    assert!(stale.stderr.contains("site b.localhost gained app hrms"), "{}", stale.stderr);

    for out in outputs.iter().chain([stale.all()].iter()) {
        assert!(!out.contains(DB_ROOT_PASSWORD) && !out.contains(ADMIN_PASSWORD));
    }
    let actions = whole.stop();
    assert!(actions.iter().any(|a| a.contains("new-site a.localhost")), "{actions:?}");
    assert!(actions.iter().all(|a| !a.contains(DB_ROOT_PASSWORD) && !a.contains(ADMIN_PASSWORD)));
}

#[test]
fn a_failed_migrate_restores_that_site_and_keeps_the_rest_in_maintenance() {
    let sites: &[(&str, &[&str])] =
        &[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"]), ("c.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    d.deployed = true;
    let first = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(first.code, 0, "{}", first.all());
    let before = d.status(&["--refresh", "full"]);
    let recorded = |r: &Value, s: &str| site(r, s)["recorded_fingerprint"].clone();

    // Make b's next migrate fail (the fixture's documented fault switch), then release erpnext.
    d.fault("b.localhost", "migrate=fail\n");
    d.release(1, "v15.1.0", "v15.2.0");

    let failed = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stderr.contains("FAILED"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("recovered: b.localhost restored from the backup taken in this run"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("Sites left in maintenance mode: b.localhost, c.localhost"), "{}", failed.stderr);
    assert!(failed.stderr.contains("Ways forward for b.localhost"), "{}", failed.stderr);

    let after = d.status(&["--refresh", "full"]);
    assert_eq!(site(&after, "a.localhost")["fingerprint_matches"], true, "a migrated before b failed");
    assert_eq!(site(&after, "a.localhost")["maintenance_mode"], false);
    assert_eq!(recorded(&after, "b.localhost"), recorded(&before, "b.localhost"), "b keeps its old record");
    assert_eq!(site(&after, "b.localhost")["maintenance_mode"], true, "restored b stays in maintenance");
    assert_eq!(recorded(&after, "c.localhost"), recorded(&before, "c.localhost"), "c was not touched");
    assert_eq!(site(&after, "c.localhost")["maintenance_mode"], true);

    // Remove the fault: apply converges from where it stopped.
    d.fault("b.localhost", "");
    let healed = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(healed.code, 0, "{}", healed.all());
    assert!(!healed.stdout.contains("→ migrate a.localhost"), "a is not migrated twice: {}", healed.stdout);
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
}

#[test]
fn one_apply_at_a_time_and_force_unlock_for_a_crashed_one() {
    use benchform_docker::lock::LockInfo;
    let sites: &[(&str, &[&str])] = &[("a.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    d.deployed = true;
    let rt = rt();
    let engine = rt.block_on(engine());
    // Another operator's apply (or one that crashed) holds the lock.
    let other = LockInfo {
        id: "0ther0perat0r".into(),
        holder: "alice@ops-1".into(),
        since: "2026-11-27T10:00:00Z".into(),
        plan: "apply release.json".into(),
        host: "ops-1".into(),
        pid: 4242,
    };
    assert_eq!(rt.block_on(engine.try_lock(&d.project, &other)).unwrap(), None);

    let blocked = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(blocked.code, 1);
    assert!(blocked.stderr.contains("is locked by another apply: alice@ops-1 since 2026-11-27T10:00:00Z (apply release.json), lock ID 0ther0perat0r"), "{}", blocked.stderr);
    assert!(blocked.stderr.contains("benchform force-unlock 0ther0perat0r"), "{}", blocked.stderr);

    let wrong = d.benchform(&["force-unlock", "not-the-id"]);
    assert_eq!(wrong.code, 1);
    assert!(wrong.stderr.contains("nothing released"), "{}", wrong.stderr);
    let released = d.benchform(&["force-unlock", "0ther0perat0r"]);
    assert_eq!(released.code, 0, "{}", released.all());
    assert!(released.stdout.contains("held by alice@ops-1"), "{}", released.stdout);

    let apply = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert_eq!(rt.block_on(engine.lock_holder(&d.project)).unwrap(), None, "apply releases its lock");
}

#[test]
fn an_apply_killed_after_any_step_is_healed_by_the_next_one() {
    let sites: &[(&str, &[&str])] = &[("a.localhost", &["erpnext", "hrms"]), ("b.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    d.deployed = true;
    assert_eq!(benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env()).code, 0);
    // Business rows in both sites' databases: none may be lost, whatever the crashes.
    d.write_rows("a.localhost", 40);
    d.write_rows("b.localhost", 7);
    let rows = (d.rows("a.localhost"), d.rows("b.localhost"));

    // A release of hrms; then crash after the first remaining step, again and again.
    d.release(2, "v1.0.0", "v1.1.0");

    // Crash after each step in turn: pick the first planned step not yet used as a crash point.
    let mut crashed_after: Vec<String> = Vec::new();
    let mut migrations = 0;
    for _ in 0..20 {
        let plan: Value = serde_json::from_str(&d.benchform(&["plan", "--format", "json"]).stdout).unwrap();
        let ids: Vec<String> =
            plan["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        let Some(next) = ids.iter().find(|id| !crashed_after.contains(id)).cloned() else { break };
        let failpoint = format!("after:{next}");
        let mut env = apply_env().to_vec();
        env.push(("BENCHFORM_FAILPOINT", &failpoint));
        let run = counted(&d, &mut migrations, || benchform_in(d.dir.path(), &["apply", "--auto-approve"], &env));
        assert_ne!(run.code, 0, "the failpoint after {next} must kill apply:\n{}", run.all());
        crashed_after.push(next);
    }
    for step in
        ["build", "verify", "push", "maintenance-on:a.localhost", "backup:a.localhost", "deploy", "migrate:a.localhost"]
    {
        assert!(crashed_after.iter().any(|c| c == step), "never crashed after {step}: {crashed_after:?}");
    }
    // Whatever is left, one more apply finishes; the release migrated a.localhost exactly once.
    let last = counted(&d, &mut migrations, || benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env()));
    assert_eq!(last.code, 0, "{}", last.all());
    assert_eq!(migrations, 1, "the release migrated a.localhost once, whatever the crashes");
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    let healed = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(healed.stdout, "No changes. The deployment matches benchform.yaml.\n", "{}", healed.all());
    assert_eq!((d.rows("a.localhost"), d.rows("b.localhost")), rows, "no row written before the apply is lost");
}

/// Run `f`, adding to `migrations` the migrates of a.localhost the engine saw meanwhile.
fn counted(d: &Deployment, migrations: &mut usize, f: impl FnOnce() -> Run) -> Run {
    let watch = Watch::start(&d.project);
    let run = f();
    *migrations += watch.stop().iter().filter(|a| a.ends_with("bench --site a.localhost migrate")).count();
    run
}

#[test]
fn a_sigkill_during_a_slow_migrate_is_survived() {
    let sites: &[(&str, &[&str])] = &[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    d.deployed = true;
    assert_eq!(benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env()).code, 0);

    // a's next migrate takes 8 s (the fixture's documented fault switch); then release erpnext.
    d.fault("a.localhost", "migrate=slow:8\n");
    d.release(1, "v15.1.0", "v15.2.0");

    // Start apply and SIGKILL it while a's migrate runs.
    let (mut child, rx) = d.spawn_apply(&["--auto-approve"], &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("apply reached migrate");
        if line.starts_with("→ migrate a.localhost") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL: no cleanup, lock left, bench's migrate still running
    let _ = child.wait();

    // The next apply takes over the dead apply's lock, meets the still-running migrate, and stops
    // without restoring anything underneath it.
    let blocked = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(blocked.code, 1, "{}", blocked.all());
    assert!(blocked.stderr.contains("releasing the lock of a crashed apply"), "{}", blocked.stderr);
    // The engine still lists the orphaned `bench … migrate` exec: no backup of a half-migrated
    // site, no second migrate (Frappe's own lock would refuse it too).
    assert!(
        blocked.stderr.contains("`bench --site a.localhost migrate` is still running in the backend")
            || blocked.stderr.contains("another migrate of a.localhost is still running"),
        "{}",
        blocked.stderr
    );
    assert!(
        !blocked.stderr.contains("recovered:"),
        "nothing may be restored under a running migrate: {}",
        blocked.stderr
    );

    // Once the orphaned migrate has ended, apply converges.
    std::thread::sleep(Duration::from_secs(8));
    d.fault("a.localhost", "");
    let healed = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &apply_env());
    assert_eq!(healed.code, 0, "{}", healed.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
}

/// The engine is the one the Docker CLI would use: a Docker context named by the config file's
/// `currentContext` (no DOCKER_HOST) is honoured, `status` says which and why, and a context the
/// store lacks or one over ssh:// is a clear error that changes nothing.
#[test]
fn the_engine_is_the_docker_cli_s_and_status_says_where_it_came_from() {
    let d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    let config = tempfile::tempdir().unwrap();
    let context = |name: &str, host: &str| {
        use sha2::Digest;
        let id: String = sha2::Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let meta = config.path().join("contexts/meta").join(id);
        std::fs::create_dir_all(&meta).unwrap();
        let body = serde_json::json!({"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}});
        std::fs::write(meta.join("meta.json"), body.to_string()).unwrap();
    };
    context("here", "unix:///var/run/docker.sock");
    context("remote", "ssh://deploy@prod.invalid");
    std::fs::write(config.path().join("config.json"), r#"{"currentContext": "here"}"#).unwrap();
    let dir = config.path().display().to_string();
    let run = |extra: &[(&str, &str)]| {
        let mut env = vec![("DOCKER_CONFIG", dir.as_str())];
        env.extend_from_slice(extra);
        crate::support::benchform_in(d.dir.path(), &["status"], &env)
    };
    let here = run(&[]);
    assert_eq!(here.code, 0, "{}", here.all());
    assert!(
        here.stdout.starts_with(
            "Engine: unix:///var/run/docker.sock (context `here` (currentContext in the Docker config file))"
        ),
        "{}",
        here.stdout
    );
    let remote = run(&[("DOCKER_CONTEXT", "remote")]);
    assert_eq!(remote.code, 1, "{}", remote.all());
    assert!(remote.stderr.contains("no SSH server answers at ssh://deploy@prod.invalid"), "{}", remote.stderr);
    let missing = run(&[("DOCKER_CONTEXT", "gone")]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(missing.stderr.contains("the Docker context `gone` (DOCKER_CONTEXT) does not exist"), "{}", missing.stderr);
    // DOCKER_HOST wins over any context, as for the Docker CLI.
    let host = run(&[("DOCKER_CONTEXT", "remote"), ("DOCKER_HOST", "unix:///var/run/docker.sock")]);
    assert_eq!(host.code, 0, "{}", host.all());
    assert!(host.stdout.starts_with("Engine: unix:///var/run/docker.sock (DOCKER_HOST)"), "{}", host.stdout);
}

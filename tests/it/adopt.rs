//! Adopting a frappe_docker deployment as it is (issue 15): upstream's own
//! `images/layered/Containerfile`, `compose.yaml` and overrides, unmodified and read where they
//! lie, configured through an env file shaped like upstream's `example.env`. A deployment is made
//! **by hand** the way upstream's docs and the runbook do it, then benchform takes it over.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use benchform_gitserver::TestRepo;
use serde_json::Value;

use crate::support::{Run, benchform_in, frappe_docker};
use crate::world::{World, compose_command, unique};

/// Upstream's files a single-server deployment runs with, by their literal relative paths.
const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "overrides/compose.mariadb.yaml",
    "overrides/compose.redis.yaml",
    "overrides/compose.noproxy.yaml",
];
const CONTAINERFILE: &str = "images/layered/Containerfile";
const DB_PASSWORD: &str = "db-root-pw-by-hand";

/// A port nothing listens on now, for HTTP_PUBLISH_PORT (tests run side by side).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A deployment made by hand with upstream's files; dropping it takes the stack down.
struct ByHand {
    world: &'static World,
    dir: tempfile::TempDir,
    project: String,
    image: String,
    repos: Vec<TestRepo>,
    port: u16,
}

impl ByHand {
    fn new() -> ByHand {
        let world = World::get();
        let project = unique("adopt");
        let mut repos = Vec::new();
        for (name, tag) in [("frappe", "v15.1.0"), ("erpnext", "v15.1.0"), ("hrms", "v1.0.0")] {
            let repo = TestRepo::create(&world.git_root(), &format!("{project}/{name}.git")).unwrap();
            let c = repo.commit("first").unwrap();
            repo.tag_annotated(tag, &c).unwrap();
            if name == "frappe" {
                // frappe_docker's docs build with FRAPPE_BRANCH=version-15: a branch.
                repo.branch("version-15", &c).unwrap();
            }
            repos.push(repo);
        }
        let dir = tempfile::tempdir().unwrap();
        let image = format!("{}/{project}/erp", world.registry());
        let port = free_port();
        // Shaped like upstream's example.env: what the compose files interpolate. The site name
        // header is spelled out: docker-compose v1 passes compose.yaml's default (`$$host`) to
        // nginx as `$$host`, and the frontend restarts in a loop (docs/getting-started.md).
        let env = format!(
            "ERPNEXT_VERSION=v15.1.0\nDB_PASSWORD={DB_PASSWORD}\nDB_PASSWORD_SECRETS_FILE=\nDB_HOST=\nDB_PORT=\n\
             REDIS_CACHE=\nREDIS_QUEUE=\nCUSTOM_IMAGE={image}\nCUSTOM_TAG=by-hand\nPULL_POLICY=always\n\
             HTTP_PUBLISH_PORT={port}\nFRAPPE_SITE_NAME_HEADER='$host'\nSITES_RULE=Host(`a.localhost`) || Host(`b.localhost`)\n"
        );
        std::fs::write(dir.path().join("production.env"), env).unwrap();
        let apps = serde_json::json!([
            {"url": world.git_url(&format!("{project}/erpnext.git")), "branch": "v15.1.0"},
            {"url": world.git_url(&format!("{project}/hrms.git")), "branch": "v1.0.0"},
        ]);
        std::fs::write(dir.path().join("apps.json"), apps.to_string()).unwrap();
        ByHand { world, dir, project, image, repos, port }
    }

    fn env_file(&self) -> PathBuf {
        self.dir.path().join("production.env")
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(self.world.docker_cli()).args(args).env("DOCKER_BUILDKIT", "1").output().unwrap()
    }

    /// `docker compose -p P --env-file production.env -f compose.yaml -f overrides/… ARGS`, from
    /// upstream's folder.
    fn compose(&self, args: &[&str]) -> Output {
        let mut c = compose_command();
        c.current_dir(frappe_docker()).args(["-p", &self.project, "--env-file"]).arg(self.env_file());
        for f in COMPOSE_FILES {
            c.args(["-f", f]);
        }
        c.args(args).output().unwrap()
    }

    /// The runbook, by hand: build with the app list as a BuildKit secret, push, `up -d`, create
    /// the sites and install their apps.
    fn deploy(&self) {
        let upstream = frappe_docker();
        let reference = format!("{}:by-hand", self.image);
        let out = self.docker(&[
            "build",
            "--network",
            "host",
            "-f",
            &upstream.join(CONTAINERFILE).display().to_string(),
            "--build-arg",
            "FRAPPE_BRANCH=version-15",
            "--build-arg",
            &format!("FRAPPE_PATH={}", self.world.git_url(&format!("{}/frappe.git", self.project))),
            "--secret",
            &format!("id=apps_json,src={}", self.dir.path().join("apps.json").display()),
            "-t",
            &reference,
            &upstream.display().to_string(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = self.docker(&["push", &reference]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let out = self.compose(&["up", "-d"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        self.new_site("a.localhost");
        self.new_site("b.localhost");
        self.bench(&["--site", "b.localhost", "install-app", "hrms"]);
    }

    /// `bench new-site` with erpnext, as upstream's site-operations page does it (v15 wants
    /// `--no-mariadb-socket` where v16 takes `--mariadb-user-host-login-scope=%`).
    fn new_site(&self, site: &str) {
        let password = ["--db-root-password", DB_PASSWORD, "--admin-password", "admin"];
        let argv: Vec<&str> = ["new-site", "--no-mariadb-socket"]
            .into_iter()
            .chain(password)
            .chain(["--install-app", "erpnext", site])
            .collect();
        self.bench(&argv);
    }

    fn bench(&self, args: &[&str]) -> String {
        let argv: Vec<&str> = ["exec", "-T", "backend", "bench"].into_iter().chain(args.iter().copied()).collect();
        let out = self.compose(&argv);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "bench {args:?}: {text}");
        text
    }

    fn benchform(&self, args: &[&str]) -> Run {
        benchform_in(self.dir.path(), args, &[("ADMIN_PASSWORD", "admin")])
    }

    /// Every container of the engine that belongs to a compose project, by project.
    fn projects_running(&self) -> Vec<String> {
        let out = self.docker(&["ps", "--format", "{{.Label \"com.docker.compose.project\"}}"]);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    fn ping(&self, site: &str) -> String {
        let out = Command::new("curl")
            .args(["-s", "-H", &format!("Host: {site}"), &format!("http://127.0.0.1:{}/api/method/ping", self.port)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for ByHand {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans"]);
        let _ = std::fs::remove_dir_all(self.world.git_root().join(&self.project));
    }
}

fn manifest(d: &ByHand) -> String {
    std::fs::read_to_string(d.dir.path().join("benchform.yaml")).unwrap()
}

fn edit(d: &ByHand, from: &str, to: &str) {
    let text = manifest(d);
    assert!(text.contains(from), "{from:?} not in:\n{text}");
    std::fs::write(d.dir.path().join("benchform.yaml"), text.replacen(from, to, 1)).unwrap();
}

fn steps(plan: &Value) -> Vec<String> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| match s["site"].as_str() {
            Some(site) => format!("{} {site}", s["kind"].as_str().unwrap()),
            None => s["kind"].as_str().unwrap().to_string(),
        })
        .collect()
}

#[test]
fn a_deployment_made_by_hand_with_upstream_files_is_adopted() {
    let d = ByHand::new();
    d.deploy();
    assert!(d.ping("a.localhost").contains("pong"), "{}", d.ping("a.localhost"));

    // init on the runbook's own inputs: apps.json and the env file.
    let upstream = frappe_docker();
    let init = d.benchform(&[
        "init",
        "--from-apps-json",
        "apps.json",
        "--env-file",
        "production.env",
        "--context",
        &upstream.display().to_string(),
    ]);
    assert_eq!(init.code, 0, "{}", init.all());
    let draft = manifest(&d);
    // Nothing says which `-p` the stack runs under: the folder's name is a marked guess.
    let guessed = draft.lines().find(|l| l.starts_with("project: ")).unwrap().to_string();
    assert!(guessed.contains("# TODO: the -p of your `docker compose` commands"), "{draft}");
    assert!(draft.contains("  ref: \"v15.1.0\"  # TODO: guessed from ERPNEXT_VERSION"), "{draft}");
    assert!(draft.contains("  base_tag: version-15"), "{draft}");
    assert!(draft.contains("db_root_password_env: DB_PASSWORD"), "{draft}");
    assert!(draft.contains(&format!("  repository: \"{}\"", d.image)), "{draft}");
    // The draft lists every app on every site; a has erpnext only. The world's git server is on
    // loopback: the build reaches it through the host's network.
    edit(&d, "  - name: \"a.localhost\"\n    apps: [erpnext, hrms]", "  - name: \"a.localhost\"\n    apps: [erpnext]");
    // frappe's repository is a build argument (FRAPPE_PATH), in no file init reads.
    edit(&d, "https://github.com/frappe/frappe", &d.world.git_url(&format!("{}/frappe.git", d.project)));
    edit(&d, "  containerfile:", "  build_network: host\n  containerfile:");

    let validate = d.benchform(&["validate"]);
    assert_eq!(validate.code, 0, "{}", validate.all());
    let lock = d.benchform(&["lock"]);
    assert_eq!(lock.code, 0, "{}", lock.all());
    // Under the guessed name the plan would start a second, empty stack: refused, naming the
    // project that runs the same compose files.
    let wrong = d.benchform(&["plan"]);
    assert_eq!(wrong.code, 1, "{}", wrong.all());
    assert!(
        wrong.stderr.contains("the same compose files run as project") && wrong.stderr.contains(&d.project),
        "{}",
        wrong.stderr
    );
    assert!(wrong.stderr.contains("--allow-new-project"), "{}", wrong.stderr);
    edit(&d, &guessed, &format!("project: {}", d.project));
    assert_eq!(d.benchform(&["lock"]).code, 0);

    // The plan adopts what runs: no second stack, no new-site; both sites migrate once to be
    // recorded, and say why.
    let plan = d.benchform(&["plan", "--format", "json"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    let doc: Value = serde_json::from_str(&plan.stdout).unwrap();
    let kinds = steps(&doc);
    assert!(!kinds.iter().any(|k| k.starts_with("new-site")), "{kinds:?}");
    assert!(kinds.contains(&"migrate a.localhost".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"migrate b.localhost".to_string()), "{kinds:?}");
    let text = d.benchform(&["plan"]);
    assert!(text.stdout.contains("never migrated by benchform: it migrates once"), "{}", text.stdout);
    assert!(!text.all().contains(DB_PASSWORD), "the env file's password is never shown");

    // apply builds upstream's Containerfile unmodified (through base_tag's aliases), deploys the
    // upstream files, migrates both sites; then nothing is left to do.
    let apply = d.benchform(&["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(!apply.all().contains(DB_PASSWORD));
    // No second stack under the name init guessed (the one plan refused).
    let guessed_name = guessed.trim_start_matches("project: ").split_whitespace().next().unwrap().to_string();
    assert!(!d.projects_running().contains(&guessed_name), "a stack runs as {guessed_name}");
    let again = d.benchform(&["plan"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("No changes"), "{}", again.all());
    assert!(d.ping("b.localhost").contains("pong"), "the frontend serves through upstream's nginx");

    // A one-app bump migrates only the site that has the app.
    let hrms = &d.repos[2];
    let c = hrms.commit("release v1.0.1").unwrap();
    hrms.tag_annotated("v1.0.1", &c).unwrap();
    edit(&d, "    ref: \"v1.0.0\"", "    ref: \"v1.0.1\"");
    assert_eq!(d.benchform(&["lock"]).code, 0);
    let bump: Value = serde_json::from_str(&d.benchform(&["plan", "--format", "json"]).stdout).unwrap();
    let kinds = steps(&bump);
    assert!(kinds.contains(&"migrate b.localhost".to_string()), "{kinds:?}");
    assert!(!kinds.iter().any(|k| k.ends_with("a.localhost")), "{kinds:?}");
    let apply = d.benchform(&["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    assert!(d.benchform(&["plan"]).stdout.contains("No changes"));
}

/// A copy of upstream's checkout, to edit: the tag must follow what the build reads.
fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_tag_follows_what_the_build_reads_not_the_whole_checkout() {
    let world = World::get();
    let project = unique("tagin");
    let repo = TestRepo::create(&world.git_root(), &format!("{project}/frappe.git")).unwrap();
    let c = repo.commit("first").unwrap();
    repo.tag_annotated("v15.1.0", &c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let checkout = dir.path().join("frappe_docker");
    std::fs::create_dir_all(&checkout).unwrap();
    copy_dir(&frappe_docker(), &checkout);
    std::fs::write(
        dir.path().join("benchform.yaml"),
        format!(
            "version: 1\nproject: {project}\nfrappe:\n  repo: {}\n  ref: v15.1.0\napps: []\nimage:\n  repository: {}/{project}/erp\n  containerfile: {CONTAINERFILE}\n  context: frappe_docker\n  base_tag: version-15\ndeploy:\n  compose:\n    files: [{}]\nsites: []\n",
            world.git_url(&format!("{project}/frappe.git")),
            world.registry(),
            COMPOSE_FILES.join(", ")
        ),
    )
    .unwrap();
    let run = |args: &[&str]| benchform_in(dir.path(), args, &[]);
    assert_eq!(run(&["lock"]).code, 0);
    let tag = || {
        let status = run(&["status", "--format", "json"]);
        assert_eq!(status.code, 0, "{}", status.all());
        let doc: Value = serde_json::from_str(&status.stdout).unwrap();
        doc["image"]["tag"].as_str().unwrap().to_string()
    };
    let first = tag();
    // Outside the build's inputs: docs, an override, the bake file.
    std::fs::write(checkout.join("docs/02-setup/02-build-setup.md"), "edited\n").unwrap();
    let noproxy = checkout.join("overrides/compose.noproxy.yaml");
    let text = std::fs::read_to_string(&noproxy).unwrap() + "# edited\n";
    std::fs::write(&noproxy, text).unwrap();
    std::fs::write(checkout.join("docker-bake.hcl"), "# edited\n").unwrap();
    assert_eq!(tag(), first, "files the build does not read leave the tag");
    // A resource the Containerfile copies into the image.
    let start = checkout.join("resources/core/start.sh");
    let mut text = std::fs::read_to_string(&start).unwrap();
    text.push_str("# edited\n");
    std::fs::write(&start, text).unwrap();
    let second = tag();
    assert_ne!(second, first, "a copied resource is a build input");
    // So is the base image's tag.
    let path = dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace("base_tag: version-15", "base_tag: version-16");
    std::fs::write(&path, text).unwrap();
    assert_ne!(tag(), second, "the base images are build inputs");
    // Without base_tag, the build would start FROM frappe/build:v15.1.0, which nothing has: the
    // plan says so before anything is built, and names the way out.
    let text = std::fs::read_to_string(&path).unwrap().replace("  base_tag: version-16\n", "");
    std::fs::write(&path, text).unwrap();
    let plan = run(&["plan"]);
    assert_eq!(plan.code, 1, "{}", plan.all());
    assert!(plan.stderr.contains("FROM frappe/build:v15.1.0"), "{}", plan.stderr);
    assert!(plan.stderr.contains("set image.base_tag"), "{}", plan.stderr);
    let _ = std::fs::remove_dir_all(world.git_root().join(&project));
}

#[test]
fn a_local_image_needs_no_registry() {
    // frappe_docker's single-host flow: CUSTOM_IMAGE=custom, PULL_POLICY=never, no registry.
    let mut d = crate::status::Deployment::new(&[("a.localhost", &["erpnext"])]);
    d.deployed = true; // apply deploys; Drop takes the project down
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text.lines().find(|l| l.starts_with("  repository: ")).unwrap().to_string();
    let repository = format!("{}/custom", d.project);
    std::fs::write(&path, text.replace(&line, &format!("  repository: {repository}\n  push: false"))).unwrap();

    let plan: Value = serde_json::from_str(&d.benchform(&["plan", "--format", "json"]).stdout).unwrap();
    let kinds = steps(&plan);
    assert_eq!(kinds[..2], ["build", "verify"], "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "push"), "{kinds:?}");
    // Secrets are checked at plan time: a warning (pull-request CI has none), not an error.
    let text = d.benchform(&["plan"]);
    assert_eq!(text.code, 0, "{}", text.all());
    assert!(
        text.stderr.contains("warning: DB_ROOT_PASSWORD is not set (creating a new site needs it): apply will stop"),
        "{}",
        text.stderr
    );
    let refused = d.benchform(&["apply", "--auto-approve"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("DB_ROOT_PASSWORD is not set"), "{}", refused.stderr);
    let status: Value = serde_json::from_str(&d.benchform(&["status", "--format", "json"]).stdout).unwrap();
    assert_eq!(status["image"]["registry"]["state"], "unused");

    let apply = d.apply(&["--auto-approve"]);
    assert_eq!(apply.code, 0, "{}", apply.all());
    let again = d.benchform(&["plan"]);
    assert!(again.stdout.contains("No changes"), "{}", again.all());
    let tag = status["image"]["tag"].as_str().unwrap();
    let out =
        Command::new(d.world.docker_cli()).args(["image", "inspect", &format!("{repository}:{tag}")]).output().unwrap();
    assert!(out.status.success(), "the engine holds the image");
    let listed = Command::new("curl")
        .args(["-s", &format!("http://{}/v2/{repository}/tags/list", d.world.registry())])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("NAME_UNKNOWN"), "nothing was pushed");
    drop(d);
    let _ = Command::new(World::get().docker_cli()).args(["rmi", &format!("{repository}:{tag}")]).output();
}

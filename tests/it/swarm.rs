//! The swarm target's first part, on the world's real three-node swarm (`scripts/world up
//! --swarm 3`): upstream frappe_docker's own compose files, rendered by compose v2 and translated
//! by `benchform_core::swarm`, are refused while their data would be node-local, and once an
//! override puts `sites` on shared storage and pins the database and redis-queue, Debian's 20.10
//! `docker stack deploy` takes the stack and the swarm schedules it across the nodes.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use benchform_core::swarm::{CONFIG_HASH_LABEL, ONE_SHOT_LABEL, OPS_SERVICE, Ops, StackOptions, stack_file};
use benchform_docker::build::Cli;
use benchform_docker::swarm::deploy_stack;
use benchform_docker::{Engine, ExecSpec};

use crate::support::{frappe_docker, root};
use crate::world::{World, env_file, rt, unique};

struct Swarm {
    env: HashMap<String, String>,
}

/// The tests that use the world's swarm take turns: one of them stops a node's engine.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Swarm {
    fn get() -> &'static Swarm {
        static SWARM: OnceLock<Swarm> = OnceLock::new();
        SWARM.get_or_init(|| {
            World::get();
            let out = Command::new(root().join("scripts/world")).args(["up", "--swarm", "3"]).output().unwrap();
            assert!(
                out.status.success(),
                "scripts/world up --swarm 3 failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Swarm { env: env_file("swarm/swarm.env") }
        })
    }

    /// The Docker CLI on the manager.
    fn manager(&self) -> Command {
        let mut c = Command::new(World::get().docker_cli());
        c.args(["-H", &self.env["BENCHFORM_WORLD_SWARM_MANAGER"]]);
        c
    }
}

/// A stack on the swarm (and its shared sites folder), removed when it goes.
struct Stack(String, PathBuf);

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Swarm::get().manager().args(["stack", "rm", &self.0]).output();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// Upstream's compose.yaml with its MariaDB and redis overrides (and `extra`), as compose v2
/// renders it.
fn rendered(project: &str, extra: Option<&Path>) -> serde_json::Value {
    let upstream = frappe_docker();
    let mut cmd = Command::new(World::get().docker_cli());
    cmd.args(["compose", "-p", project, "--project-directory"]).arg(&upstream);
    // noproxy publishes the frontend's port: compose v2 writes `published` as a string.
    let files: Vec<PathBuf> = vec![
        upstream.join("compose.yaml"),
        upstream.join("overrides/compose.mariadb.yaml"),
        upstream.join("overrides/compose.redis.yaml"),
        upstream.join("overrides/compose.noproxy.yaml"),
    ];
    for f in files.iter().map(PathBuf::as_path).chain(extra) {
        cmd.arg("-f").arg(f);
    }
    // The world's stand-in for frappe_docker's base image is on every node.
    cmd.args(["config", "--format", "json"])
        .env("CUSTOM_IMAGE", "frappe/base")
        .env("CUSTOM_TAG", "version-15")
        .env("DB_PASSWORD", "swarm-root-pw")
        .env("HTTP_PUBLISH_PORT", "18080");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "compose config: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn frappe_docker_s_files_become_a_stack_the_three_node_swarm_runs() {
    let _turn = turn();
    let swarm = Swarm::get();
    let project = unique("stk");
    let options = StackOptions {
        project: project.clone(),
        nodes: 3,
        sites_volume: "sites".to_string(),
        scheduler: "scheduler".to_string(),
        ops: None,
    };

    // As upstream ships them: node-local sites, a database and a queue that could move.
    let problems = stack_file(&rendered(&project, None), &options).unwrap_err();
    let at: Vec<&str> = problems.iter().map(|p| p.at.as_str()).collect();
    assert_eq!(at, ["db", "redis-queue", "volumes.sites"], "{problems:#?}");

    // The override an operator writes: shared sites (a folder every node sees, as NFS would be),
    // the stateful services pinned, two backends on different nodes.
    let shared = Path::new(&swarm.env["BENCHFORM_WORLD_SWARM_SHARED"]).join(format!("{project}-sites"));
    std::fs::create_dir_all(&shared).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let override_file = dir.path().join("swarm.yaml");
    std::fs::write(
        &override_file,
        format!(
            "services:\n  db:\n    deploy: {{placement: {{constraints: [node.hostname == bf-swarm2]}}}}\n  \
             redis-queue:\n    deploy: {{placement: {{constraints: [node.hostname == bf-swarm3]}}}}\n  \
             backend:\n    deploy: {{replicas: 2, placement: {{max_replicas_per_node: 1}}}}\n\
             volumes:\n  sites:\n    driver_opts: {{type: none, o: bind, device: {}}}\n",
            shared.display()
        ),
    )
    .unwrap();
    // benchform's ops task sleeps on the node its engine is: the manager.
    let rt = rt();
    let manager = rt.block_on(Engine::connect_to(&swarm.env["BENCHFORM_WORLD_SWARM_MANAGER"])).unwrap();
    let member = rt.block_on(manager.swarm_membership()).unwrap().expect("the manager is in a swarm");
    assert!(member.manager && member.state == "active", "{member:?}");
    let options =
        StackOptions { ops: Some(Ops { backend: "backend".into(), node: member.node_id.clone() }), ..options };
    let stack = stack_file(&rendered(&project, Some(&override_file)), &options).unwrap();
    assert_eq!(stack.jobs, ["configurator"]);

    // Debian's 20.10 CLI takes it from stdin (it would refuse compose v2's own rendering).
    let _stack = Stack(project.clone(), shared.clone());
    let cli = Cli::for_engine(&manager);
    rt.block_on(deploy_stack(&cli, &project, &stack.file)).unwrap();

    let nodes = rt.block_on(manager.swarm_nodes()).unwrap();
    let hostnames: Vec<&str> = nodes.iter().map(|n| n.hostname.as_str()).collect();
    assert_eq!(hostnames, ["bf-swarm1", "bf-swarm2", "bf-swarm3"], "{nodes:?}");
    assert!(nodes.iter().all(|n| n.state == "ready" && n.availability == "active"), "{nodes:?}");
    let host_of: HashMap<&str, &str> = nodes.iter().map(|n| (n.id.as_str(), n.hostname.as_str())).collect();

    // Every service of the rendering is there, with the hash of its configuration.
    let services = rt.block_on(manager.stack_services(&project)).unwrap();
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backend",
            "benchform-ops",
            "configurator",
            "db",
            "frontend",
            "queue-long",
            "queue-short",
            "redis-cache",
            "redis-queue",
            "scheduler",
            "websocket"
        ]
    );
    for service in &services {
        let hash = &stack.file["services"][&service.name]["deploy"]["labels"][CONFIG_HASH_LABEL];
        assert_eq!(service.labels.get(CONFIG_HASH_LABEL).map(String::as_str), hash.as_str(), "{}", service.name);
    }
    let backend = services.iter().find(|s| s.name == "backend").unwrap();
    assert_eq!((backend.image.as_str(), backend.replicas), ("frappe/base:version-15", Some(2)));
    // The configurator: one replica, restarted only on failure, marked one-shot. (That it then
    // completes once needs an image with a bench in it: the deploy tests of the swarm target.)
    let configurator = services.iter().find(|s| s.name == "configurator").unwrap();
    assert_eq!(configurator.labels.get(ONE_SHOT_LABEL).map(String::as_str), Some("true"));
    let inspect = swarm.manager().args(["service", "inspect", &format!("{project}_configurator")]).output().unwrap();
    let spec: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(spec[0]["Spec"]["TaskTemplate"]["RestartPolicy"]["Condition"], "on-failure", "{spec}");

    // Where swarm put them: the database and queue on their nodes, the backends on two, the ops
    // task on the manager — running, and reachable by exec through the manager's engine.
    let started = Instant::now();
    let ops = loop {
        let tasks = rt.block_on(manager.stack_tasks(&services)).unwrap();
        // A crash-looping task (the stand-in image has no bench) waits out its restart delay
        // as "ready": its slot is still placed on that node.
        let nodes_of = |service: &str| -> BTreeSet<&str> {
            tasks
                .iter()
                .filter(|t| t.service == service && matches!(t.desired_state.as_str(), "running" | "ready"))
                .filter_map(|t| host_of.get(t.node_id.as_str()).copied())
                .collect()
        };
        let ops = tasks.iter().find(|t| t.service == OPS_SERVICE && t.state == "running");
        let (db, queue, backend) = (nodes_of("db"), nodes_of("redis-queue"), nodes_of("backend"));
        let placed =
            db == BTreeSet::from(["bf-swarm2"]) && queue == BTreeSet::from(["bf-swarm3"]) && backend.len() == 2;
        if placed && let Some(ops) = ops {
            assert_eq!(host_of[ops.node_id.as_str()], "bf-swarm1", "{ops:?}");
            break ops.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not placed: db {db:?}, queue {queue:?}, backend {backend:?}, ops {ops:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let container = ops.container_id.clone().expect("a running task has its container");
    let argv = ["ls", "-d", "/home/frappe/frappe-bench/sites"].map(String::from);
    let spec = ExecSpec::plain(&container, &argv, Some(Duration::from_secs(30)));
    let out = rt.block_on(manager.exec(&spec)).unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    let frontend = swarm.manager().args(["service", "inspect", &format!("{project}_frontend")]).output().unwrap();
    let frontend: serde_json::Value = serde_json::from_slice(&frontend.stdout).unwrap();
    assert_eq!(frontend[0]["Spec"]["EndpointSpec"]["Ports"][0]["PublishedPort"], 18080, "{frontend}");
    // The sites volume is the shared folder on every node that runs a bench service.
    let inspect = swarm.manager().args(["service", "inspect", &format!("{project}_backend")]).output().unwrap();
    let spec: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let mounts = &spec[0]["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"];
    let sites = mounts.as_array().unwrap().iter().find(|m| m["Target"] == "/home/frappe/frappe-bench/sites").unwrap();
    assert_eq!(sites["VolumeOptions"]["DriverConfig"]["Options"]["device"], shared.display().to_string(), "{sites}");
}

/// `scripts/demo` deployed to the swarm (`deploy.target: swarm`) with the override an operator
/// writes: sites on a folder every node sees, the database pinned to bf-swarm2, two backends on
/// different nodes. (`endpoint_mode: dnsrr` for the services others connect to: this machine's
/// kernel has no IPVS, which swarm's virtual IPs need; see docs/world.md.) The stack and its
/// shared folder are removed when it goes.
struct SwarmDemo {
    dir: tempfile::TempDir,
    project: String,
    shared: PathBuf,
    secrets: Vec<(String, String)>,
    output: String,
}

impl SwarmDemo {
    fn run() -> SwarmDemo {
        let swarm = Swarm::get();
        let world = World::get();
        let dir = tempfile::tempdir().unwrap();
        let shared = Path::new(&swarm.env["BENCHFORM_WORLD_SWARM_SHARED"]).join(unique("sites"));
        std::fs::create_dir_all(&shared).unwrap();
        let override_file = dir.path().join("swarm.yaml");
        std::fs::write(
            &override_file,
            format!(
                "services:\n  db:\n    deploy: {{endpoint_mode: dnsrr, placement: {{constraints: [node.hostname == \
                 bf-swarm2]}}}}\n  redis-cache:\n    deploy: {{endpoint_mode: dnsrr}}\n  backend:\n    deploy: \
                 {{endpoint_mode: dnsrr, replicas: 2, placement: {{max_replicas_per_node: 1}}}}\nvolumes:\n  sites:\n    \
                 driver_opts: {{type: none, o: bind, device: {}}}\n",
                shared.display()
            ),
        )
        .unwrap();
        let secrets: Vec<(String, String)> = [
            ("DB_PASSWORD", "swarm-root-pw"),
            ("ADMIN_PASSWORD", "swarm-admin-pw"),
            ("ACME_APP_TOKEN", world.var("BENCHFORM_WORLD_GIT_TOKEN")),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let out = Command::new(root().join("scripts/demo"))
            .env("BENCHFORM_DEMO_DIR", dir.path().join("demo"))
            .env("BENCHFORM_DEMO_TARGET", "swarm")
            .env("BENCHFORM_DEMO_COMPOSE_EXTRA", &override_file)
            .env("DOCKER_HOST", &swarm.env["BENCHFORM_WORLD_SWARM_MANAGER"])
            .env("NO_COLOR", "1")
            .env_remove("BENCHFORM_LOG")
            .env_remove("DOCKER_CONTEXT")
            .envs(secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let project =
            std::fs::read_to_string(dir.path().join("demo/project-name")).unwrap_or_default().trim().to_string();
        let demo = SwarmDemo { dir, project, shared, secrets, output };
        assert!(out.status.success(), "the demo failed on the swarm:\n{}", demo.output);
        demo
    }

    fn project_dir(&self) -> PathBuf {
        self.dir.path().join("demo/project")
    }

    fn benchform(&self, args: &[&str]) -> crate::support::Run {
        let manager = Swarm::get().env["BENCHFORM_WORLD_SWARM_MANAGER"].as_str();
        let mut env: Vec<(&str, &str)> = vec![("DOCKER_HOST", manager)];
        env.extend(self.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        crate::support::benchform_in(&self.project_dir(), args, &env)
    }

    /// The running tasks of `service`: (node host name, image, container id).
    fn running(&self, service: &str) -> Vec<(String, String, String)> {
        let rt = rt();
        let manager = rt.block_on(Engine::connect_to(&Swarm::get().env["BENCHFORM_WORLD_SWARM_MANAGER"])).unwrap();
        let nodes = rt.block_on(manager.swarm_nodes()).unwrap();
        let services = rt.block_on(manager.stack_services(&self.project)).unwrap();
        let tasks = rt.block_on(manager.stack_tasks(&services)).unwrap();
        tasks
            .into_iter()
            .filter(|t| t.service == service && t.state == "running" && t.desired_state == "running")
            .map(|t| {
                let host = nodes.iter().find(|n| n.id == t.node_id).map(|n| n.hostname.clone()).unwrap_or_default();
                (host, t.image, t.container_id.unwrap_or_default())
            })
            .collect()
    }

    /// Every backend task answers /api/method/ping for `site` on its own node, on `image`.
    fn every_backend_serves(&self, site: &str, image: &str) {
        let backends = self.running("backend");
        let nodes: BTreeSet<&str> = backends.iter().map(|(n, _, _)| n.as_str()).collect();
        assert!(nodes.len() >= 2, "backends on fewer than two nodes: {backends:?}");
        for (node, running, container) in &backends {
            assert_eq!(running, image, "the backend on {node} runs another image");
            let n = node.trim_start_matches("bf-swarm");
            let engine = &Swarm::get().env[&format!("BENCHFORM_WORLD_SWARM_NODE{n}")];
            let out = Command::new(World::get().docker_cli())
                .args(["-H", engine, "exec", container, "curl", "-sS", "-H", &format!("Host: {site}")])
                .arg("http://127.0.0.1:8000/api/method/ping")
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("pong"), "the backend on {node} does not serve {site}: {said}");
        }
    }

    /// The image the backend service runs, as `plan` names the desired one.
    fn backend_image(&self) -> String {
        let rt = rt();
        let manager = rt.block_on(Engine::connect_to(&Swarm::get().env["BENCHFORM_WORLD_SWARM_MANAGER"])).unwrap();
        let services = rt.block_on(manager.stack_services(&self.project)).unwrap();
        services.into_iter().find(|s| s.name == "backend").map(|s| s.image).unwrap_or_default()
    }

    /// A fault switch of the bench-contract fixture for `site`, written straight into the shared
    /// sites folder (every node sees it), owned like the site's folder.
    fn fault(&self, site: &str, text: &str) {
        let site_dir = self.shared.join(site);
        let path = site_dir.join(".bench-contract-fault");
        if text.is_empty() {
            let _ = std::fs::remove_file(&path);
            return;
        }
        std::fs::write(&path, text).unwrap();
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&site_dir).unwrap();
        std::os::unix::fs::chown(&path, Some(meta.uid()), Some(meta.gid())).unwrap();
    }

    /// Release `tag` of the private app (a commit and a tag in its repository, the manifest's ref,
    /// the lock), as the demo's step 5 does.
    fn release_acme(&self, from: &str, tag: &str) {
        let work = self.dir.path().join("demo/work/private").join(&self.project).join("acme_app");
        std::fs::write(work.join("VERSION"), format!("{tag}\n")).unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .args(["-c", "user.name=t", "-c", "user.email=t@localhost", "-C"])
                .arg(&work)
                .args(args)
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        git(&["add", "--all"]);
        git(&["commit", "-q", "-m", tag]);
        git(&["tag", "-a", "-m", tag, tag]);
        git(&["push", "-q", "origin", "main", "--tags"]);
        self.edit(&format!("    ref: {from}\n"), &format!("    ref: {tag}\n"));
        let lock = self.benchform(&["lock"]);
        assert_eq!(lock.code, 0, "{}", lock.all());
    }

    fn edit(&self, from: &str, to: &str) {
        let manifest = self.project_dir().join("benchform.yaml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(text.contains(from), "{from} not in {text}");
        std::fs::write(&manifest, text.replacen(from, to, 1)).unwrap();
    }
}

impl Drop for SwarmDemo {
    fn drop(&mut self) {
        if !self.project.is_empty() {
            let _ = Swarm::get().manager().args(["stack", "rm", &self.project]).output();
        }
        let _ = std::fs::remove_dir_all(&self.shared);
    }
}

/// The demo's release on the three-node swarm: the first apply builds, pushes, deploys the stack
/// (two backends on two nodes) and creates the sites; the one-app release migrates only the site
/// with that app, under maintenance with a backup, and the new image serves on every node; plan is
/// empty after each. Then a worker's engine stops in the middle of a deploy: the apply completes
/// on the remaining nodes or stops with a clear error, and once the node is back the next apply
/// converges.
#[test]
fn the_demo_release_runs_on_the_three_node_swarm_and_survives_a_worker_stopping() {
    let _turn = turn();
    let demo = SwarmDemo::run();
    let out = &demo.output;
    assert_eq!(out.matches("No changes. The deployment matches benchform.yaml.").count(), 2, "{out}");
    assert!(out.contains("Swarm    3 node(s): bf-swarm1 (manager) ready/active"), "{out}");
    for site in ["erp.localhost", "staging.localhost"] {
        assert!(demo.shared.join(site).join("site_config.json").is_file(), "{site} is not on the shared folder");
    }
    let release = &out[out.find("== 5.").unwrap()..];
    assert!(release.contains("done backup:erp.localhost"), "{release}");
    assert!(release.contains("done maintenance-on:erp.localhost"), "{release}");
    assert!(release.contains("done migrate:erp.localhost"), "{release}");
    assert!(!release.contains("migrate:staging.localhost"), "{release}");
    assert!(release.contains("assets_json dropped from redis-cache (a swarm job)"), "{release}");
    let image = demo.backend_image();
    assert!(release.contains(&image), "{image} is not the release's image: {release}");
    demo.every_backend_serves("erp.localhost", &image);
    // The ops task runs on the manager, where benchform execs.
    assert_eq!(demo.running(OPS_SERVICE).iter().map(|(n, _, _)| n.as_str()).collect::<Vec<_>>(), ["bf-swarm1"]);
    // status --format json: the nodes, and where each service's tasks run.
    let status = demo.benchform(&["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let status: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    crate::support::assert_matches_schema(&status, "status.schema.json");
    assert_eq!(status["swarm"]["nodes"].as_array().map(Vec::len), Some(3), "{status}");
    let backend = status["services"].as_array().unwrap().iter().find(|s| s["service"] == "backend").unwrap();
    let on: BTreeSet<&str> = backend["nodes"].as_array().unwrap().iter().filter_map(|n| n.as_str()).collect();
    assert_eq!(on.len(), 2, "{backend}");

    // A new image (another build argument), and bf-swarm3's engine stopped once the deploy began.
    let prefix = "build_args: {FRAPPE_IMAGE_PREFIX: benchform-world";
    demo.edit(prefix, &format!("{prefix}, BENCHFORM_TEST_RELEASE: worker-stops"));
    let log = demo.dir.path().join("apply.log");
    let manager = Swarm::get().env["BENCHFORM_WORLD_SWARM_MANAGER"].clone();
    let mut apply = Command::new(env!("CARGO_BIN_EXE_benchform"))
        .args(["apply", "--auto-approve"])
        .current_dir(demo.project_dir())
        .env("DOCKER_HOST", &manager)
        .env("NO_COLOR", "1")
        .env_remove("BENCHFORM_LOG")
        .envs(demo.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("→ deploy") {
        assert!(started.elapsed() < Duration::from_secs(120), "no deploy began");
        assert!(apply.try_wait().unwrap().is_none(), "the apply ended before its deploy");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pidfile = &Swarm::get().env["BENCHFORM_WORLD_SWARM_NODE3_PIDFILE"];
    let pid = std::fs::read_to_string(pidfile).unwrap().trim().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(kill.success());
    let ended = apply.wait_with_output().unwrap();
    let said = format!("{}{}", std::fs::read_to_string(&log).unwrap(), String::from_utf8_lossy(&ended.stderr));
    match ended.status.code() {
        Some(0) => assert!(said.contains("done deploy"), "{said}"),
        Some(1) => assert!(said.contains("fix:"), "a failed apply without its fix:\n{said}"),
        other => panic!("apply ended with {other:?}:\n{said}"),
    }
    // The node comes back; the next apply converges and plan is empty.
    let up = Command::new(root().join("scripts/world")).args(["up", "--swarm", "3"]).output().unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let again = demo.benchform(&["apply", "--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert_eq!(demo.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    demo.every_backend_serves("erp.localhost", &demo.backend_image());

    // Operators' hands on the stack: a scaled backend and an environment variable added to a
    // worker are planned (names only, never values) and put back by the next apply.
    let by_hand = |args: &[&str]| {
        let out = Swarm::get().manager().args(args).output().unwrap();
        assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    by_hand(&["service", "scale", "--detach", &format!("{}_backend=3", demo.project)]);
    let worker = format!("{}_queue-short", demo.project);
    by_hand(&["service", "update", "--detach", "--env-add", "HAND_SET=s3cr3t-by-hand", &worker]);
    let plan = demo.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("changed by hand (3 replicas, the files say 2)"), "{}", plan.stdout);
    assert!(plan.stdout.contains("changed by hand (environment HAND_SET)"), "{}", plan.stdout);
    assert!(!plan.all().contains("s3cr3t-by-hand"), "a value set by hand was shown");
    let put_back = demo.benchform(&["apply", "--auto-approve"]);
    assert_eq!(put_back.code, 0, "{}", put_back.all());
    assert_eq!(demo.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(demo.running("backend").len(), 2);
}

/// On the swarm as on compose: a failed migrate restores that site from the backup taken in the
/// run while the stack keeps serving the others; a backend image that cannot start stops the
/// rolling update, and the previous image serves again.
#[test]
fn a_failed_migrate_is_restored_and_a_backend_that_cannot_start_is_rolled_back_on_the_swarm() {
    let _turn = turn();
    let demo = SwarmDemo::run();
    let before = demo.backend_image();

    demo.fault("erp.localhost", "migrate=fail\n");
    demo.release_acme("v1.1.0", "v1.2.0");
    let failed = demo.benchform(&["apply", "--auto-approve"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(
        failed.stderr.contains("recovered: erp.localhost restored from the backup taken in this run"),
        "{}",
        failed.all()
    );
    // The other site is served by every backend meanwhile.
    let released = demo.backend_image();
    assert_ne!(released, before);
    demo.every_backend_serves("staging.localhost", &released);
    demo.fault("erp.localhost", "");
    let healed = demo.benchform(&["apply", "--auto-approve"]);
    assert_eq!(healed.code, 0, "{}", healed.all());
    assert_eq!(demo.benchform(&["plan", "--detailed-exitcode"]).code, 0);

    // A new image whose backend crashes at start: swarm pauses the rolling update, benchform
    // deploys the previous image again, every backend serves on it.
    let prefix = "build_args: {FRAPPE_IMAGE_PREFIX: benchform-world";
    demo.edit(prefix, &format!("{prefix}, BENCH_CONTRACT_FAULT: backend-crash"));
    let crashing = demo.benchform(&["apply", "--auto-approve", "--health-timeout", "60"]);
    assert_eq!(crashing.code, 1, "{}", crashing.all());
    assert!(crashing.stderr.contains("swarm stopped the rolling update of backend"), "{}", crashing.all());
    // The task swarm stopped on, where it ran and what it said.
    assert!(crashing.stderr.contains(" on bf-swarm"), "{}", crashing.all());
    assert!(crashing.stderr.contains("failed (exit 1), task: non-zero exit (1)"), "{}", crashing.all());
    assert!(crashing.stderr.contains(&format!("redeployed the previous image {released}")), "{}", crashing.all());
    assert_eq!(demo.backend_image(), released);
    demo.every_backend_serves("erp.localhost", &released);
    demo.every_backend_serves("staging.localhost", &released);
    // The broken release is still the desired state: plan says so.
    assert_eq!(demo.benchform(&["plan", "--detailed-exitcode"]).code, 2);

    // Engines that cannot take a stack, and files that cannot run safely on it: exit 1 with
    // the fix, nothing changed.
    let plan_on = |host: &str| {
        let mut env: Vec<(&str, &str)> = vec![("DOCKER_HOST", host)];
        env.extend(demo.secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        crate::support::benchform_in(&demo.project_dir(), &["plan"], &env)
    };
    let alone = plan_on("unix:///var/run/docker.sock");
    assert_eq!(alone.code, 1, "{}", alone.all());
    assert!(alone.stderr.contains("is in no swarm") && alone.stderr.contains("docker swarm init"), "{}", alone.stderr);
    let worker = plan_on(&Swarm::get().env["BENCHFORM_WORLD_SWARM_NODE2"]);
    assert_eq!(worker.code, 1, "{}", worker.all());
    assert!(worker.stderr.contains("is a worker of the swarm"), "{}", worker.stderr);
    let manifest = std::fs::read_to_string(demo.project_dir().join("benchform.yaml")).unwrap();
    let files = manifest.lines().find(|l| l.trim_start().starts_with("files:")).unwrap().to_string();
    demo.edit(&files, "    files: [compose.yaml]");
    let unsafe_stack = demo.benchform(&["plan"]);
    assert_eq!(unsafe_stack.code, 1, "{}", unsafe_stack.all());
    assert!(unsafe_stack.stderr.contains("cannot run safely on this swarm"), "{}", unsafe_stack.stderr);
    for at in ["db: keeps its data in the node-local volume `db-data`", "volumes.sites: the `sites` volume"] {
        assert!(unsafe_stack.stderr.contains(at), "{at}: {}", unsafe_stack.stderr);
    }
    assert_eq!(demo.backend_image(), released, "a refused plan changed the stack");
}

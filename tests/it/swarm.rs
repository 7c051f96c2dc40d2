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
    let spec = ExecSpec {
        container: &container,
        argv: &argv,
        user: None,
        workdir: None,
        env: &[],
        timeout: Some(Duration::from_secs(30)),
        stdin: None,
        stream: false,
        on_line: None,
    };
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

//! The swarm target's first part, on the world's real three-node swarm (`scripts/world up
//! --swarm 3`): upstream frappe_docker's own compose files, rendered by compose v2 and translated
//! by `benchform_core::swarm`, are refused while their data would be node-local, and once an
//! override puts `sites` on shared storage and pins the database and redis-queue, Debian's 20.10
//! `docker stack deploy` takes the stack and the swarm schedules it across the nodes.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use benchform_core::swarm::{StackOptions, stack_file};

use crate::support::{frappe_docker, root};
use crate::world::{World, env_file, unique};

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
    let stack = stack_file(&rendered(&project, Some(&override_file)), &options).unwrap();
    assert_eq!(stack.jobs, ["configurator"]);

    // Debian's 20.10 CLI takes it from stdin (it would refuse compose v2's own rendering).
    let _stack = Stack(project.clone(), shared.clone());
    let mut deploy = swarm
        .manager()
        .args(["stack", "deploy", "--resolve-image", "never", "--compose-file", "-", &project])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = deploy.stdin.take().unwrap();
        stdin.write_all(stack.file.to_string().as_bytes()).unwrap();
    }
    let out = deploy.wait_with_output().unwrap();
    assert!(out.status.success(), "stack deploy: {}", String::from_utf8_lossy(&out.stderr));

    // Every service of the rendering is there; the frontend publishes its port on every node.
    let listed = swarm
        .manager()
        .args(["service", "ls", "--filter", &format!("label=com.docker.stack.namespace={project}")])
        .args(["--format", "{{.Name}} {{.Mode}}"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    for service in [
        "backend",
        "configurator",
        "db",
        "frontend",
        "queue-long",
        "queue-short",
        "redis-cache",
        "redis-queue",
        "scheduler",
        "websocket",
    ] {
        assert!(listed.contains(&format!("{project}_{service} ")), "{service} missing:\n{listed}");
    }
    // The configurator: one replica, restarted only on failure, marked one-shot. (That it then
    // completes once needs an image with a bench in it: the deploy tests of the swarm target.)
    let inspect = swarm.manager().args(["service", "inspect", &format!("{project}_configurator")]).output().unwrap();
    let spec: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let spec = &spec[0]["Spec"];
    assert_eq!(spec["Mode"]["Replicated"]["Replicas"], 1, "{spec}");
    assert_eq!(spec["TaskTemplate"]["RestartPolicy"]["Condition"], "on-failure", "{spec}");
    assert_eq!(spec["Labels"][benchform_core::swarm::ONE_SHOT_LABEL], "true", "{spec}");

    // Where swarm put them: the database and queue on their nodes, the backends on two.
    let nodes_of = |service: &str| -> BTreeSet<String> {
        let out = swarm
            .manager()
            // A crash-looping task (the stand-in image has no bench) waits out its restart delay
            // as "ready": its slot is still placed on that node.
            .args(["service", "ps", &format!("{project}_{service}")])
            .args(["--filter", "desired-state=running", "--filter", "desired-state=ready"])
            .args(["--format", "{{.Node}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    };
    let started = Instant::now();
    loop {
        let (db, queue, backend) = (nodes_of("db"), nodes_of("redis-queue"), nodes_of("backend"));
        let placed = db == BTreeSet::from(["bf-swarm2".to_string()])
            && queue == BTreeSet::from(["bf-swarm3".to_string()])
            && backend.len() == 2;
        if placed {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not placed: db {db:?}, queue {queue:?}, backend {backend:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
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

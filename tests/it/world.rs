//! Access to the local world `scripts/world up` starts (engine, registries, git server, fixture
//! images). Tests that need it call [`World::get`], which fails at once, saying how to start it,
//! when it is down.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use benchform_docker::Engine;
use benchform_docker::compose::Flavour;

#[derive(Debug, Clone)]
pub struct World {
    pub env: HashMap<String, String>,
}

impl World {
    /// The running world, or a panic that says `run scripts/world up`.
    pub fn get() -> &'static World {
        static WORLD: OnceLock<World> = OnceLock::new();
        WORLD.get_or_init(|| {
            let world = World { env: env_file("world.env") };
            let ok =
                std::process::Command::new(world.docker_cli()).arg("info").output().is_ok_and(|o| o.status.success());
            assert!(ok, "the test world's Docker Engine does not answer: run scripts/world up");
            world
        })
    }

    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or_else(|| panic!("world.env lacks {key}: run scripts/world up"))
    }

    pub fn docker_cli(&self) -> PathBuf {
        PathBuf::from(self.env.get("BENCHFORM_WORLD_DOCKER_CLI").map(String::as_str).unwrap_or("/usr/bin/docker"))
    }

    pub fn git_root(&self) -> PathBuf {
        PathBuf::from(self.var("BENCHFORM_WORLD_GIT_ROOT"))
    }

    pub fn git_url(&self, rel: &str) -> String {
        format!("{}/{rel}", self.var("BENCHFORM_WORLD_GIT"))
    }

    pub fn registry(&self) -> &str {
        self.var("BENCHFORM_WORLD_REGISTRY")
    }

    pub fn auth_registry(&self) -> &str {
        self.var("BENCHFORM_WORLD_REGISTRY_AUTH")
    }
}

/// `KEY=value` lines of a file in the world's folder (`$BENCHFORM_WORLD_DIR`).
pub fn env_file(name: &str) -> HashMap<String, String> {
    let dir = std::env::var("BENCHFORM_WORLD_DIR").unwrap_or_else(|_| "/var/tmp/benchform-world".to_string());
    let path = Path::new(&dir).join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!("the test world is not up ({} is missing): run scripts/world up (--remote)", path.display())
    });
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect()
}

/// The remote host of `scripts/world up --remote` (started on first use): a dockerd in its own
/// network namespace, reached over SSH and over TCP with mutual TLS.
#[derive(Debug)]
pub struct Remote {
    pub env: HashMap<String, String>,
}

impl Remote {
    pub fn get() -> &'static Remote {
        static REMOTE: OnceLock<Remote> = OnceLock::new();
        REMOTE.get_or_init(|| {
            World::get();
            let out = std::process::Command::new(crate::support::root().join("scripts/world"))
                .args(["up", "--remote"])
                .output()
                .unwrap();
            assert!(out.status.success(), "scripts/world up --remote failed: {}", String::from_utf8_lossy(&out.stderr));
            Remote { env: env_file("remote/remote.env") }
        })
    }

    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or_else(|| panic!("remote.env lacks {key}"))
    }

    /// The Docker CLI on the remote engine's own socket (what the tests check with, not benchform's path).
    pub fn docker(&self) -> std::process::Command {
        let mut c = std::process::Command::new(World::get().docker_cli());
        c.args(["-H", self.var("BENCHFORM_WORLD_REMOTE_UNIX")]);
        c
    }
}

/// A name no other test (in this run or another) uses: for compose projects, repositories, sites.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}{}x{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed), nanos % 100_000)
}

/// The compose flavour under test: the suite runs on v2 (`docker compose`), what operators run;
/// `BENCHFORM_COMPOSE=v1` runs it on Debian's `docker-compose` 1.29 (benchform reads the same
/// variable, so the binary under test drives the same flavour).
pub fn flavour() -> Flavour {
    match std::env::var("BENCHFORM_COMPOSE").as_deref() {
        Ok("v1") => Flavour::V1,
        _ => Flavour::V2,
    }
}

/// The argv prefix that runs the flavour under test (`docker compose` or `docker-compose`).
pub fn compose_command() -> std::process::Command {
    let argv = benchform_docker::compose::program_argv(flavour(), &World::get().docker_cli());
    let mut c = std::process::Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// A tokio runtime for tests that call the adapters directly.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

pub async fn engine() -> Engine {
    Engine::connect_to("unix:///var/run/docker.sock").await.unwrap()
}

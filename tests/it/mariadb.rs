//! The world's `mariadb:11.8` honours what frappe_docker's overrides/compose.mariadb.yaml relies
//! on, driven by that file itself: root initialised from the password on first start and
//! reachable over the network, the server flags of its `command`, its healthcheck, and data kept
//! in the volume across a restart. Its `redis:8.6-alpine` runs overrides/compose.redis.yaml.

use std::process::Command;

use benchform_docker::compose::Compose;

use crate::support::frappe_docker;
use crate::world::{World, flavour, rt, unique};

fn sql(ip: &str, password: &str, query: &str) -> std::process::Output {
    // The password in the environment, not in argv (a process list shows argv).
    Command::new("mariadb")
        .args(["-h", ip, "-uroot", "--skip-column-names", "-e", query])
        .env("MYSQL_PWD", password)
        .output()
        .unwrap()
}

fn health(cli: &std::path::Path, container: &str) -> String {
    let out = Command::new(cli).args(["inspect", "-f", "{{.State.Health.Status}}", container]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The container's address on its network (it can change across a restart).
fn ip_of(cli: &std::path::Path, container: &str) -> String {
    let out = Command::new(cli)
        .args(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wait_healthy(cli: &std::path::Path, container: &str) {
    for _ in 0..120 {
        if health(cli, container) == "healthy" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("{container} never became healthy: {}", health(cli, container));
}

/// Run `body` on a project of upstream frappe_docker's compose.yaml plus `override_file`, with
/// `env`; the project is taken down (volumes too) whatever happens in `body`.
fn with_upstream(
    prefix: &str,
    override_file: &str,
    env: &[(String, String)],
    body: impl FnOnce(&Compose, &tokio::runtime::Runtime) + std::panic::UnwindSafe,
) {
    let world = World::get();
    let rt = rt();
    let upstream = frappe_docker();
    let compose = Compose {
        flavour: flavour(),
        docker_cli: world.docker_cli(),
        project: unique(prefix),
        project_dir: upstream.clone(),
        files: vec![upstream.join("compose.yaml"), upstream.join(override_file)],
        env_file: None,
        engine_env: Vec::new(),
    };
    let result = std::panic::catch_unwind(|| body(&compose, &rt));
    rt.block_on(compose.down(env, true)).unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn the_mariadb_image_honours_frappe_dockers_mariadb_override() {
    let world = World::get();
    // A password SQL and shells would both choke on if it were pasted anywhere: quotes, a
    // backslash (an escape in MariaDB's string literals), a dollar.
    let password = "db-'pass\"wo\\rd $x\\";
    let env = vec![("DB_PASSWORD".to_string(), password.to_string())];
    with_upstream("mdb", "overrides/compose.mariadb.yaml", &env.clone(), move |compose, rt| {
        rt.block_on(compose.run(&["up", "-d", "db"], &env)).unwrap();
        let containers = rt.block_on(rt.block_on(crate::world::engine()).project_containers(&compose.project)).unwrap();
        let db = containers.iter().find(|c| c.service == "db").expect("a db container");
        assert_eq!(db.image, world.var("BENCHFORM_WORLD_MARIADB_IMAGE"));
        let cli = world.docker_cli();
        wait_healthy(&cli, &db.id);
        let ip = ip_of(&cli, &db.id);
        // Root over the network, with the override's server flags.
        let flags = sql(&ip, password, "SELECT @@character_set_server, @@collation_server");
        assert!(flags.status.success(), "{}", String::from_utf8_lossy(&flags.stderr));
        assert_eq!(String::from_utf8_lossy(&flags.stdout).trim(), "utf8mb4\tutf8mb4_unicode_ci");
        let wrong = sql(&ip, "not-the-password", "SELECT 1");
        assert!(!wrong.status.success() && String::from_utf8_lossy(&wrong.stderr).contains("Access denied"));
        // Data lives in the volume: a restart keeps it, and the healthcheck passes again.
        assert!(
            sql(&ip, password, "CREATE DATABASE kept; CREATE TABLE kept.t (n INT); INSERT INTO kept.t VALUES (42)")
                .status
                .success()
        );
        assert!(Command::new(&cli).args(["restart", &db.id]).status().unwrap().success());
        wait_healthy(&cli, &db.id);
        let ip = ip_of(&cli, &db.id);
        assert_eq!(String::from_utf8_lossy(&sql(&ip, password, "SELECT n FROM kept.t").stdout).trim(), "42");
        // A first start cut off half-way leaves no "initialised" marker: the next start makes the
        // datadir again instead of running a server without passwords and healthcheck user.
        assert!(Command::new(&cli).args(["stop", &db.id]).status().unwrap().success());
        let volume = format!("{}_db-data", compose.project);
        let marker = Command::new(&cli)
            .args(["run", "--rm", "-v", &format!("{volume}:/var/lib/mysql"), "--entrypoint", "/bin/rm"])
            .args([world.var("BENCHFORM_WORLD_MARIADB_IMAGE"), "/var/lib/mysql/.benchform-initialised"])
            .status()
            .unwrap();
        assert!(marker.success());
        assert!(Command::new(&cli).args(["start", &db.id]).status().unwrap().success());
        wait_healthy(&cli, &db.id);
        let ip = ip_of(&cli, &db.id);
        assert!(sql(&ip, password, "SELECT 1").status.success(), "root works after the re-initialisation");
    });
}

/// The world's `redis:8.6-alpine` runs frappe_docker's overrides/compose.redis.yaml unmodified:
/// both services up, answering, and the queue's `redis-queue-data` volume mounted at `/data`.
#[test]
fn the_redis_image_honours_frappe_dockers_redis_override() {
    let world = World::get();
    with_upstream("rds", "overrides/compose.redis.yaml", &[], |compose, rt| {
        rt.block_on(compose.run(&["up", "-d", "redis-cache", "redis-queue"], &[])).unwrap();
        let containers = rt.block_on(rt.block_on(crate::world::engine()).project_containers(&compose.project)).unwrap();
        let cli = world.docker_cli();
        for service in ["redis-cache", "redis-queue"] {
            let c = containers.iter().find(|c| c.service == service).unwrap_or_else(|| panic!("no {service}"));
            assert_eq!(c.image, world.var("BENCHFORM_WORLD_REDIS_IMAGE"));
            let mut pong = String::new();
            for _ in 0..50 {
                let out = Command::new(&cli).args(["exec", &c.id, "redis-cli", "ping"]).output().unwrap();
                pong = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if pong == "PONG" {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            assert_eq!(pong, "PONG", "{service} answers");
        }
        let queue = containers.iter().find(|c| c.service == "redis-queue").unwrap();
        let mounts = Command::new(&cli)
            .args(["inspect", "-f", "{{range .Mounts}}{{.Name}}:{{.Destination}} {{end}}", &queue.id])
            .output()
            .unwrap();
        let mounts = String::from_utf8_lossy(&mounts.stdout).to_string();
        assert!(mounts.contains(&format!("{}_redis-queue-data:/data", compose.project)), "{mounts}");
    });
}

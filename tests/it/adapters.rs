//! The engine, registry and compose adapters against the real components of the world.

use std::path::Path;
use std::process::Command;

use benchform_docker::compose::{Compose, Flavour};
use benchform_docker::registry::RegistryError;
use benchform_docker::{Engine, TagState};

use crate::world::{World, engine, rt, unique};

/// Push a small image to `registry/repo:tag` with the CLI (and `DOCKER_CONFIG` when given);
/// returns the digest.
fn push_small_image(world: &World, reference: &str, docker_config: Option<&Path>) -> String {
    let cli = world.docker_cli();
    let tag = Command::new(&cli).args(["tag", world.var("BENCHFORM_WORLD_REDIS_IMAGE"), reference]).status().unwrap();
    assert!(tag.success());
    let mut push = Command::new(&cli);
    push.args(["push", reference]);
    if let Some(dir) = docker_config {
        push.env("DOCKER_CONFIG", dir);
    }
    let out = push.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = Command::new(&cli).args(["rmi", reference]).output();
    text.split("digest: ").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
}

fn docker_config(dir: &Path, registry: &str, user: &str, password: &str) {
    use std::io::Write;
    let auth = base64(&format!("{user}:{password}"));
    let mut f = std::fs::File::create(dir.join("config.json")).unwrap();
    write!(f, "{{\"auths\": {{\"{registry}\": {{\"auth\": \"{auth}\"}}}}}}").unwrap();
}

fn base64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn the_engine_api_is_negotiated_down_to_20_10s() {
    World::get();
    let engine = rt().block_on(engine());
    assert_eq!(engine.api_version(), "1.41", "Debian's Engine 20.10 speaks API 1.41");
}

#[test]
fn a_dead_socket_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let err = rt().block_on(Engine::connect_to(&format!("unix://{}", sock.display()))).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with(&format!("no Docker Engine answers at unix://{}", sock.display())), "{text}");
}

/// Docker 19.03 (API 1.40) cannot run here, so its `/version` answer is served from a socket: the
/// negotiation must refuse it, naming the version and the upgrade.
#[test]
fn an_engine_older_than_20_10_is_refused() {
    use std::io::{BufRead, BufReader, Write};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("old.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let body = r#"{"Version":"19.03.15","ApiVersion":"1.40","MinAPIVersion":"1.12","Os":"linux"}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut stream = stream;
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        }
    });
    let err = rt().block_on(Engine::connect_to(&format!("unix://{}", sock.display()))).unwrap_err();
    assert!(matches!(err, benchform_docker::EngineError::TooOld { .. }), "{err}");
    assert!(err.to_string().contains("speaks API 1.40; benchform needs 1.41 or newer"), "{err}");
}

#[test]
fn registry_tags_present_absent_and_their_failures() {
    let world = World::get();
    let rt = rt();
    let engine = rt.block_on(engine());
    let empty_config = tempfile::tempdir().unwrap();

    // Open registry: a pushed tag is present with the push's digest; another is absent.
    let repo = format!("{}/{}", world.registry(), unique("reg"));
    let digest = push_small_image(world, &format!("{repo}:one"), None);
    let cfg = empty_config.path().join("config.json");
    assert_eq!(
        rt.block_on(engine.registry_tag_using(&format!("{repo}:one"), &cfg)).unwrap(),
        TagState::Present { digest }
    );
    assert_eq!(rt.block_on(engine.registry_tag_using(&format!("{repo}:two"), &cfg)).unwrap(), TagState::Absent);

    // A closed port.
    let closed = rt.block_on(engine.registry_tag_using("127.0.0.1:1/x/y:z", &cfg)).unwrap_err();
    assert!(matches!(closed, RegistryError::Unreachable { .. }), "{closed:?}");

    // htpasswd registry: right credentials, wrong ones, none.
    let good = tempfile::tempdir().unwrap();
    docker_config(
        good.path(),
        world.auth_registry(),
        world.var("BENCHFORM_WORLD_REGISTRY_USER"),
        world.var("BENCHFORM_WORLD_REGISTRY_PASSWORD"),
    );
    let auth_repo = format!("{}/{}", world.auth_registry(), unique("auth"));
    let digest = push_small_image(world, &format!("{auth_repo}:one"), Some(good.path()));
    assert_eq!(
        rt.block_on(engine.registry_tag_using(&format!("{auth_repo}:one"), &good.path().join("config.json"))).unwrap(),
        TagState::Present { digest }
    );
    let bad = tempfile::tempdir().unwrap();
    docker_config(bad.path(), world.auth_registry(), "benchform", "not-the-password");
    for cfg in [bad.path().join("config.json"), cfg] {
        let err = rt.block_on(engine.registry_tag_using(&format!("{auth_repo}:one"), &cfg)).unwrap_err();
        assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
        assert!(!err.to_string().contains("not-the-password"));
    }
}

/// Both flavours, run for real on one compose file: `config --hash` predicts the label `up` puts
/// on the container, containers are named the flavour's way, each records its compose version,
/// and the two flavours' hashes differ (moving a deployment between them recreates it).
#[test]
fn compose_v1_and_v2_config_hashes_match_their_running_containers() {
    let world = World::get();
    let rt = rt();
    let engine = rt.block_on(engine());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  redis-cache:\n    image: ${REDIS_IMAGE}\n    restart: \"no\"\n",
    )
    .unwrap();
    let env = vec![("REDIS_IMAGE".to_string(), world.var("BENCHFORM_WORLD_REDIS_IMAGE").to_string())];
    let mut hashes = Vec::new();
    for (flavour, version, separator) in [(Flavour::V1, "1.", "_"), (Flavour::V2, "2.", "-")] {
        let compose = Compose {
            flavour,
            docker_cli: world.docker_cli(),
            project: unique("hash"),
            project_dir: dir.path().to_path_buf(),
            files: vec![dir.path().join("compose.yaml")],
            env_file: None,
            engine_env: Vec::new(),
        };
        rt.block_on(compose.up(&env, false, &[])).unwrap();
        let predicted = rt.block_on(compose.config_hashes(&env)).unwrap();
        let containers = rt.block_on(engine.project_containers(&compose.project)).unwrap();
        rt.block_on(compose.down(&env, true)).unwrap();
        assert_eq!(containers.len(), 1, "{flavour:?}");
        let c = &containers[0];
        assert_eq!(c.service, "redis-cache");
        assert_eq!(
            c.config_hash.as_ref(),
            predicted.get("redis-cache"),
            "{flavour:?}: config --hash predicts the label"
        );
        assert!(c.compose_version.as_deref().is_some_and(|v| v.starts_with(version)), "{flavour:?}: {c:?}");
        let name = format!("{}{separator}redis-cache{separator}1", compose.project);
        assert_eq!(c.name.trim_start_matches('/'), name, "{flavour:?}");
        assert_eq!(c.image, world.var("BENCHFORM_WORLD_REDIS_IMAGE"));
        hashes.push(predicted["redis-cache"].clone());
    }
    assert_ne!(hashes[0], hashes[1], "v1 and v2 hash the same service differently");
}

#[test]
fn a_push_the_registry_refuses_fails_the_push() {
    let world = World::get();
    let reference = format!("{}/{}:one", world.auth_registry(), unique("nopush"));
    let cli = world.docker_cli();
    assert!(
        Command::new(&cli)
            .args(["tag", world.var("BENCHFORM_WORLD_REDIS_IMAGE"), &reference])
            .status()
            .unwrap()
            .success()
    );
    let empty = tempfile::tempdir().unwrap();
    let adapter = benchform_docker::build::Cli {
        program: cli.clone(),
        env: vec![("DOCKER_CONFIG".to_string(), empty.path().display().to_string())],
    };
    let mut lines = Vec::new();
    let err = rt()
        .block_on(benchform_docker::build::push(&adapter, &reference, &[], |l| lines.push(l.to_string())))
        .unwrap_err();
    let _ = Command::new(&cli).args(["rmi", &reference]).output();
    let text = err.to_string();
    assert!(text.starts_with(&format!("pushing {reference} failed")), "{text}");
    assert!(text.contains("no basic auth credentials"), "{text}");
}

/// frappe_docker's own compose.yaml, rendered by both flavours with what benchform sets: every
/// service runs the desired image, with the flavour's "pull if missing" value. Without
/// `CUSTOM_TAG`, v1 does not expand the `${CUSTOM_TAG:-$ERPNEXT_VERSION}` fallback (it keeps a
/// literal `$ERPNEXT_VERSION`), which is why benchform always sets all three variables.
#[test]
fn upstream_compose_renders_the_desired_image_on_both_flavours() {
    let world = World::get();
    let rt = rt();
    let upstream = crate::support::frappe_docker();
    for flavour in [Flavour::V1, Flavour::V2] {
        let compose = Compose {
            flavour,
            docker_cli: world.docker_cli(),
            project: unique("render"),
            project_dir: upstream.clone(),
            files: vec![upstream.join("compose.yaml")],
            env_file: None,
            engine_env: Vec::new(),
        };
        let env = vec![
            ("CUSTOM_IMAGE".to_string(), "registry.example.com/acme/erpnext".to_string()),
            ("CUSTOM_TAG".to_string(), "bf1-abc".to_string()),
            ("PULL_POLICY".to_string(), benchform_docker::compose::pull_if_missing(flavour).to_string()),
        ];
        let services = rt.block_on(compose.rendered_services(&env)).unwrap();
        assert!(services.len() >= 7, "{flavour:?}: {services:?}");
        for (name, s) in &services {
            assert_eq!(s.image.as_deref(), Some("registry.example.com/acme/erpnext:bf1-abc"), "{flavour:?} {name}");
        }
        // The fallback without CUSTOM_TAG: v2 expands the nested variable, v1 does not.
        let fallback = vec![("ERPNEXT_VERSION".to_string(), "v15.88.1".to_string())];
        let rendered = rt.block_on(compose.rendered_services(&fallback)).unwrap();
        let image = rendered["backend"].image.clone().unwrap_or_default();
        match flavour {
            Flavour::V2 => assert_eq!(image, "frappe/erpnext:v15.88.1"),
            Flavour::V1 => assert!(image.contains("ERPNEXT_VERSION"), "v1 leaves the fallback unexpanded: {image}"),
        }
    }
}

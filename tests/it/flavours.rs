//! Compose v1 and v2 on one deployment: a deployment made by one flavour and then driven by the
//! other is recreated, the plan says why, orphans go, no row is lost, and it converges — from v1
//! to v2 and back.

use crate::status::Deployment;
use crate::world::{engine, rt};

fn drive_with(d: &mut Deployment, flavour: &str) {
    d.env.retain(|(k, _)| k != "BENCHFORM_COMPOSE");
    d.env.push(("BENCHFORM_COMPOSE".to_string(), flavour.to_string()));
}

/// Start a service the compose files do not have, with `program` (`docker compose` or
/// `docker-compose`): an orphan of the project.
fn start_orphan(d: &Deployment, program: &[&str]) {
    let extra = d.dir.path().join("extra.yaml");
    std::fs::write(
        &extra,
        format!("services:\n  orphan:\n    image: {}\n", d.world.var("BENCHFORM_WORLD_REDIS_IMAGE")),
    )
    .unwrap();
    let started = std::process::Command::new(program[0])
        .args(&program[1..])
        .args(["-p", &d.project, "-f"])
        .arg(&extra)
        .args(["up", "-d"])
        .status()
        .unwrap();
    assert!(started.success());
}

/// Every (non one-off) container of the project was made by compose `major` (`"1."`, `"2."`).
fn assert_all_made_by(d: &Deployment, major: &str) {
    let rt = rt();
    let containers = rt.block_on(rt.block_on(engine()).project_containers(&d.project)).unwrap();
    assert!(
        containers
            .iter()
            .filter(|c| !c.oneoff)
            .all(|c| c.compose_version.as_deref().is_some_and(|v| v.starts_with(major))),
        "every container is compose {major}x's now: {containers:?}"
    );
}

#[test]
fn moving_a_deployment_between_compose_v1_and_v2_recreates_it_and_says_why() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    d.deployed = true;
    drive_with(&mut d, "v1");
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    d.write_rows("a.localhost", 25);
    let rows = d.rows("a.localhost");
    let status = d.benchform(&["status"]);
    assert!(status.stdout.contains("(compose v1 1."), "the header names flavour and version: {}", status.stdout);

    drive_with(&mut d, "v2");
    let status = d.benchform(&["status"]);
    assert!(status.stdout.contains("(compose v2 2."), "{}", status.stdout);
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("created by compose v1, now driven by compose v2"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("migrate"), "a flavour change migrates no site: {}", plan.stdout);
    // A service compose made that the compose files no longer have (an orphan): drift until the
    // next deploy, whose `up --remove-orphans` removes it.
    let cli = d.world.docker_cli();
    start_orphan(&d, &[cli.to_str().unwrap(), "compose"]);
    let orphan = format!("{}-orphan-1", d.project);
    let plan = d.benchform(&["plan"]);
    assert!(plan.stdout.contains("no such service"), "the orphan is drift: {}", plan.stdout);
    let second = d.apply(&["--auto-approve"]);
    assert_eq!(second.code, 0, "{}", second.all());
    let gone = std::process::Command::new(&cli).args(["inspect", &orphan]).output().unwrap();
    assert!(!gone.status.success(), "the deploy removed the orphan container");
    let again = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "converged on v2: {}", again.all());

    assert_all_made_by(&d, "2.");
    assert_eq!(d.rows("a.localhost"), rows, "the db service was recreated on its volume: no row lost");

    // And back to v1: the plan says why, v1's own orphan goes too, and it converges.
    drive_with(&mut d, "v1");
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("created by compose v2, now driven by compose v1"), "{}", plan.stdout);
    start_orphan(&d, &["docker-compose"]);
    let orphan = format!("{}_orphan_1", d.project);
    let third = d.apply(&["--auto-approve"]);
    assert_eq!(third.code, 0, "{}", third.all());
    let gone = std::process::Command::new(&cli).args(["inspect", &orphan]).output().unwrap();
    assert!(!gone.status.success(), "v1's deploy removed its orphan container");
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0, "converged on v1");
    assert_all_made_by(&d, "1.");
    assert_eq!(d.rows("a.localhost"), rows);
}

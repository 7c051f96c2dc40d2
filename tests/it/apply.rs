//! `benchform apply` against the world, beyond the basic convergence tests in `status.rs`:
//! machine-readable events, history, parallel migrations, secrets that appear nowhere, the gates
//! around a deploy, and bad situations that must be clear errors leaving the world as it was.

use serde_json::Value;

use crate::status::{ADMIN_PASSWORD, DB_ROOT_PASSWORD, Deployment, site};

/// The Docker CLI with `args`, as an operator would run it.
fn docker(d: &Deployment, args: &[&str]) -> std::process::Output {
    std::process::Command::new(d.world.docker_cli()).args(args).output().unwrap()
}

/// Every line a JSON event that validates against `schema/apply-events.schema.json`.
fn events(stdout: &str) -> Vec<Value> {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::root().join("schema/apply-events.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    stdout
        .lines()
        .map(|l| {
            let event: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}"));
            assert_eq!(event["format_version"], 1, "{l}");
            let errors: Vec<String> = validator.iter_errors(&event).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{l}\ndoes not match the events schema: {errors:?}");
            event
        })
        .collect()
}

fn image_exists(d: &Deployment, reference: &str) -> bool {
    docker(d, &["image", "inspect", reference]).status.success()
}

fn backend_image(d: &Deployment) -> String {
    let out = docker(d, &["inspect", "--format", "{{.Config.Image}}", &d.backend()]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn desired_reference(d: &Deployment) -> String {
    let plan: Value = serde_json::from_str(&d.benchform(&["plan", "--format", "json"]).stdout).unwrap();
    format!("{}:{}", plan["image"]["repository"].as_str().unwrap(), plan["image"]["tag"].as_str().unwrap())
}

fn edit_manifest(d: &Deployment, from: &str, to: &str) {
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in the manifest");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn json_events_history_parallel_migrations_and_a_private_token_nowhere() {
    let apps: &[&str] = &["erpnext", "hrms"];
    let sites: &[(&str, &[&str])] = &[("a.localhost", apps), ("b.localhost", apps), ("c.localhost", apps)];
    let mut d = Deployment::with_private_hrms(sites);
    d.deployed = true;
    let token = d.env[0].1.clone();

    // From nothing, as one JSON event per line: the plan, each step's start and end, a summary.
    let first = d.apply(&["--auto-approve", "--format", "json"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let ev = events(&first.stdout);
    assert_eq!(ev[0]["event"], "plan");
    let summary = ev.last().unwrap();
    assert_eq!((summary["event"].as_str(), summary["outcome"].as_str()), (Some("summary"), Some("success")));
    let started: Vec<&Value> = ev.iter().filter(|e| e["event"] == "step_started").map(|e| &e["id"]).collect();
    let finished: Vec<&Value> = ev.iter().filter(|e| e["event"] == "step_finished").map(|e| &e["id"]).collect();
    assert_eq!(started.len(), ev[0]["plan"]["steps"].as_array().unwrap().len());
    assert_eq!(started, finished);
    assert!(ev.iter().filter(|e| e["event"] == "step_finished").all(|e| e["status"] == "done"));
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);

    // A private app's release for three sites, three at a time: each migrate takes 3 s, and all
    // three start before the first ends.
    for s in ["a.localhost", "b.localhost", "c.localhost"] {
        d.fault(s, "migrate=slow:3\n");
    }
    d.release(2, "v1.0.0", "v1.1.0");
    let second = d.apply(&["--auto-approve", "--format", "json", "--parallelism", "3", "-v"]);
    assert_eq!(second.code, 0, "{}", second.all());
    // -v streams what the site commands print, as they print it, each line with its command.
    assert!(
        second
            .stderr
            .lines()
            .any(|l| l.contains("Migrating b.localhost") && l.contains("bench --site b.localhost migrate")),
        "{}",
        second.stderr
    );
    let ev = events(&second.stdout);
    let first_end =
        ev.iter().position(|e| e["event"] == "step_finished" && e["kind"] == "migrate").expect("a migrate ended");
    let begun = ev[..first_end].iter().filter(|e| e["event"] == "step_started" && e["kind"] == "migrate").count();
    assert_eq!(begun, 3, "three migrations ran at once:\n{}", second.stdout);
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);

    // History: both applies, from the sites volume and this host, with the backups.
    let history = d.benchform(&["history", "--format", "json"]);
    assert_eq!(history.code, 0, "{}", history.all());
    crate::support::assert_matches_schema(&serde_json::from_str(&history.stdout).unwrap(), "history.schema.json");
    let records: Vec<Value> = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(records.len(), 2, "{}", history.stdout);
    assert!(records.iter().all(|r| r["outcome"] == "success"));
    assert_eq!(records[1]["backups"].as_array().unwrap().len(), 3);
    let text = d.benchform(&["history", "--last", "1"]);
    assert_eq!(text.code, 0);
    assert_eq!(text.stdout.lines().filter(|l| l.contains("success")).count(), 1, "{}", text.stdout);
    assert!(!text.stderr.contains("only this host's copy"), "{}", text.stderr);
    let volume = docker(&d, &["exec", &d.backend(), "cat", "/home/frappe/frappe-bench/sites/.benchform-history.jsonl"]);
    let volume = String::from_utf8_lossy(&volume.stdout).to_string();
    assert_eq!(volume.lines().count(), 2, "{volume}");
    let host = std::fs::read_to_string(d.dir.path().join("backups").join(&d.project).join("history.jsonl")).unwrap();

    // The token (and the site passwords) appear nowhere: output, events, history, image.
    let image = docker(&d, &["save", &desired_reference(&d)]);
    assert!(image.status.success() && image.stdout.len() > 1000);
    let image = String::from_utf8_lossy(&image.stdout).to_string();
    let places = [
        ("first apply", first.all()),
        ("second apply", second.all()),
        ("history", history.all()),
        ("history text", text.all()),
        ("volume history", volume),
        ("host history", host),
        ("image layers and config", image),
    ];
    for (place, text) in &places {
        for secret in [token.as_str(), DB_ROOT_PASSWORD, ADMIN_PASSWORD] {
            assert!(!text.contains(secret), "a secret is in the {place}");
        }
    }
    for s in ["a.localhost", "b.localhost", "c.localhost"] {
        d.fault(s, "");
    }
}

#[test]
fn release_gates_ready_for_migration_health_and_a_missing_database() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    d.deployed = true;
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    let old = backend_image(&d);

    // A site with pending jobs is not put in maintenance; apply gives up after --ready-timeout.
    d.fault("a.localhost", "ready=no\n");
    d.release(1, "v15.1.0", "v15.2.0");

    // A release that migrates an existing site needs the root password a restore would need:
    // refused before anything changes when it is missing.
    let no_root = crate::support::benchform_in(d.dir.path(), &["apply", "--auto-approve"], &[("ADMIN_PASSWORD", "x")]);
    assert_eq!(no_root.code, 1, "{}", no_root.all());
    assert!(no_root.stderr.contains("needs the database root"), "{}", no_root.stderr);
    assert!(no_root.stderr.contains("Nothing was changed."), "{}", no_root.stderr);
    let busy = d.apply(&["--auto-approve", "--ready-timeout", "2"]);
    assert_eq!(busy.code, 1, "{}", busy.all());
    assert!(busy.stderr.contains("a.localhost was not ready for migration within 2 s"), "{}", busy.stderr);
    assert!(busy.stderr.contains("Not started: backup:a.localhost"), "{}", busy.stderr);
    assert_eq!(site(&d.status(&["--refresh", "full"]), "a.localhost")["maintenance_mode"], false);
    assert_eq!(backend_image(&d), old);
    d.fault("a.localhost", "");

    // A new image whose backend does not answer /api/method/ping: the previous image comes back.
    let prefix = "build_args: {FRAPPE_IMAGE_PREFIX: benchform-world";
    edit_manifest(&d, prefix, &format!("{prefix}, BENCH_CONTRACT_FAULT: backend-down"));
    let broken = d.apply(&["--auto-approve", "--health-timeout", "10"]);
    assert_eq!(broken.code, 1, "{}", broken.all());
    assert!(
        broken.stderr.contains("health gate: a.localhost did not answer /api/method/ping within 10 s (HTTP 500)"),
        "{}",
        broken.stderr
    );
    assert!(broken.stderr.contains(&format!("redeployed the previous image {old}")), "{}", broken.stderr);
    assert!(
        broken
            .stderr
            .contains("a.localhost is back in service on the image it ran before (it was not changed in this run)"),
        "{}",
        broken.stderr
    );
    assert!(!broken.stderr.contains("Sites left in maintenance mode"), "{}", broken.stderr);
    assert_eq!(backend_image(&d), old, "the backend runs the previous image again");
    let after = site(&d.status(&["--refresh", "full"]), "a.localhost").clone();
    assert_eq!((after["maintenance_mode"].clone(), after["scheduler_paused"].clone()), (false.into(), false.into()));
    let records: Vec<Value> = serde_json::from_str(&d.benchform(&["history", "--format", "json"]).stdout).unwrap();
    let last = records.last().unwrap();
    assert_eq!(last["outcome"], "failure");
    assert!(last["steps"].as_array().unwrap().iter().any(|s| s["id"] == "deploy" && s["status"] == "failed"));

    // A new image whose backend crashes at start (an app that fails to import): gunicorn
    // restarts over and over, the gate fails, the previous image comes back.
    edit_manifest(&d, "BENCH_CONTRACT_FAULT: backend-down", "BENCH_CONTRACT_FAULT: backend-crash");
    let crashing = d.apply(&["--auto-approve", "--health-timeout", "5"]);
    assert_eq!(crashing.code, 1, "{}", crashing.all());
    assert!(crashing.stderr.contains("health gate: "), "{}", crashing.stderr);
    assert!(crashing.stderr.contains(&format!("redeployed the previous image {old}")), "{}", crashing.stderr);
    assert_eq!(backend_image(&d), old, "the backend runs the previous image again");

    // Without the fault, the release goes through: containers recreated on the new image, and
    // redis-cache's stale assets_json gone (frappe-contract §8).
    edit_manifest(&d, ", BENCH_CONTRACT_FAULT: backend-crash", "");
    let redis = d.container_name("redis-cache");
    let redis_cli = |args: &[&str]| {
        let out = std::process::Command::new(d.world.docker_cli())
            .args(["exec", &redis, "redis-cli"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(redis_cli(&["SET", "assets_json", "{\"old\": \"bundle\"}"]), "OK");
    let id = |name: &str| {
        let out = docker(&d, &["inspect", "--format", "{{.Id}}", name]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let before = id(&d.backend());
    let healed = d.apply(&["--auto-approve"]);
    assert_eq!(healed.code, 0, "{}", healed.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(redis_cli(&["EXISTS", "assets_json"]), "0");
    assert_ne!(before, "");
    assert_ne!(before, id(&d.backend()), "the backend was recreated, not restarted");

    // A site whose database is gone: a clear error naming it, before any step.
    d.release(1, "v15.2.0", "v15.3.0");
    let reference = desired_reference(&d);
    d.sql(&format!("DROP DATABASE `{}`", d.db_name("a.localhost")));
    let missing = d.apply(&["--auto-approve"]);
    assert_eq!(missing.code, 1, "{}", missing.all());
    assert!(missing.stderr.contains("Unknown database"), "{}", missing.stderr);
    assert!(missing.stderr.contains("site a.localhost cannot be planned"), "{}", missing.stderr);
    assert!(missing.stderr.contains("may run new code under it without a migrate"), "{}", missing.stderr);
    assert!(!missing.stderr.contains("drop-site") && !missing.stderr.contains("restore FILE"), "{}", missing.stderr);
    assert!(!image_exists(&d, &reference), "nothing was built");
}

#[test]
fn refused_or_stopped_cleanly_migrator_full_disk_and_compose_failure() {
    let d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    let reference = desired_reference(&d);
    let containers = || {
        let out = docker(&d, &["ps", "-aq", "--filter", &format!("label=com.docker.compose.project={}", d.project)]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };

    // frappe_docker's migrator override: refused with the reason, nothing built or started —
    // by validate under its own file name, by plan (so apply too) under any other.
    edit_manifest(&d, "files: [compose.yaml]", "files: [compose.yaml, overrides/compose.migrator.yaml]");
    let migrator = d.apply(&["--auto-approve"]);
    assert_eq!(migrator.code, 1, "{}", migrator.all());
    assert!(migrator.stderr.contains("error[unsupported-override]"), "{}", migrator.stderr);
    assert!(migrator.stderr.contains("frappe_docker's `migrator` service"), "{}", migrator.stderr);
    edit_manifest(&d, ", overrides/compose.migrator.yaml", "");
    let renamed = tempfile::tempdir().unwrap();
    let copy = renamed.path().join("extra.yaml");
    std::fs::copy(crate::support::root().join("tests/fixtures/compose/overrides/compose.migrator.yaml"), &copy)
        .unwrap();
    edit_manifest(&d, "files: [compose.yaml]", &format!("files: [compose.yaml, {}]", copy.display()));
    let migrator = d.apply(&["--auto-approve"]);
    assert_eq!(migrator.code, 1, "{}", migrator.all());
    assert!(
        migrator.stderr.contains("the compose files define frappe_docker's `migrator` service"),
        "{}",
        migrator.stderr
    );
    assert!(!image_exists(&d, &reference));
    assert_eq!(containers(), "");
    edit_manifest(&d, &format!(", {}", copy.display()), "");

    // A build that fills the disk (a RUN writing to /dev/full): the build step fails with the
    // builder's words, and no image, push or container follows.
    let context = tempfile::tempdir().unwrap();
    let fixture = crate::support::root().join("tests/fixtures/bench-contract/Containerfile");
    let containerfile = std::fs::read_to_string(fixture).unwrap() + "RUN echo filler > /dev/full\n";
    std::fs::write(context.path().join("Containerfile"), containerfile).unwrap();
    let manifest = std::fs::read_to_string(d.dir.path().join("benchform.yaml")).unwrap();
    let line = manifest.lines().find(|l| l.trim_start().starts_with("context:")).unwrap().to_string();
    edit_manifest(&d, &line, &format!("  context: {}", context.path().display()));
    let reference = desired_reference(&d);
    let full = d.apply(&["--auto-approve"]);
    assert_eq!(full.code, 1, "{}", full.all());
    assert!(full.stderr.contains("FAILED build"), "{}", full.stderr);
    assert!(full.stderr.contains("No space left on device"), "{}", full.stderr);
    assert!(!image_exists(&d, &reference));
    assert_eq!(containers(), "");
    let status = d.status(&[]);
    assert_eq!(status["image"]["registry"]["state"], "absent", "{status}");

    // Compose failing during deploy: the step fails with compose's words and the steps after it
    // do not start.
    edit_manifest(&d, &format!("  context: {}", context.path().display()), &line);
    edit_manifest(&d, "files: [compose.yaml]", "files: [compose.yaml, overrides/missing-image.yaml]");
    let mut d = d;
    d.deployed = true;
    let failed = d.apply(&["--auto-approve"]);
    assert_eq!(failed.code, 1, "{}", failed.all());
    assert!(failed.stderr.contains("FAILED deploy"), "{}", failed.stderr);
    assert!(failed.stderr.contains("does-not-exist"), "{}", failed.stderr);
    assert!(failed.stderr.contains("Not started: new-site:a.localhost"), "{}", failed.stderr);
}

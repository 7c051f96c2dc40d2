//! The plan is the whole truth (issue 13): what operators do by hand — an app installed with
//! `bench`, maintenance mode set for a manual fix, a compose override on a service that is not
//! on benchform's image — is planned for, and what apply runs is what the plan printed, in its
//! order. Each test converges a deployment of the world, changes it by hand, and checks the plan
//! JSON, apply's events and the world read back.

use serde_json::Value;

use benchform_docker::compose::Flavour;

use crate::status::Deployment;
use crate::world::flavour;

/// The ids of a plan's steps.
fn step_ids(plan: &Value) -> Vec<String> {
    plan["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

fn plan_json(d: &Deployment, extra: &[&str]) -> Value {
    let mut args = vec!["plan", "--format", "json"];
    args.extend(extra);
    let run = d.benchform(&args);
    assert_eq!(run.code, 0, "{}", run.all());
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    crate::support::assert_matches_schema(&doc, "plan.schema.json");
    doc
}

/// The plan reports drift of `kind` on `site`.
fn has_drift(plan: &Value, kind: &str, site: &str) -> bool {
    plan["drift"].as_array().unwrap().iter().any(|x| x["kind"] == kind && x["site"] == site)
}

fn step<'a>(plan: &'a Value, id: &str) -> Option<&'a Value> {
    plan["steps"].as_array().unwrap().iter().find(|s| s["id"] == id)
}

/// `apply --auto-approve --format json ARGS`: it succeeds, the steps it started are the plan's
/// steps in the plan's order (one site at a time), and afterwards the plan is empty. Returns the
/// plan apply printed.
fn apply_as_planned(d: &Deployment, args: &[&str]) -> Value {
    applied_as_planned(d, args).0
}

/// The same, also returning the run's summary event.
fn applied_as_planned(d: &Deployment, args: &[&str]) -> (Value, Value) {
    let mut argv = vec!["--auto-approve", "--format", "json"];
    argv.extend(args);
    let run = d.apply(&argv);
    assert_eq!(run.code, 0, "{}", run.all());
    let events: Vec<Value> = run.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let plan = events[0]["plan"].clone();
    let started: Vec<String> =
        events.iter().filter(|e| e["event"] == "step_started").map(|e| e["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(started, step_ids(&plan), "apply ran other steps than it planned, or in another order");
    let again = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.code, 0, "not converged after apply:\n{}", again.all());
    let summary = events.last().unwrap().clone();
    assert_eq!(summary["event"], "summary", "{summary}");
    (plan, summary)
}

/// The app's version in the site's `Installed Applications`, as its last migrate left it.
fn migrated_version(d: &Deployment, site: &str, app: &str) -> String {
    let db = d.db_name(site);
    d.sql(&format!(
        "SELECT app_version FROM `{db}`.`tabInstalled Application` WHERE parent = 'Installed Applications' AND \
         app_name = '{app}'"
    ))
    .join("")
}

fn site_config(d: &Deployment, site: &str) -> Value {
    let path = format!("/home/frappe/frappe-bench/sites/{site}/site_config.json");
    let out =
        std::process::Command::new(d.world.docker_cli()).args(["exec", &d.backend(), "cat", &path]).output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// §1: hrms installed on b by hand (the image has it for a). Re-pinning hrms migrates b too,
/// with a backup, because of that app; the app stays drift and is never uninstalled.
#[test]
fn an_app_installed_by_hand_migrates_its_site_when_its_code_changes() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext", "hrms"]), ("b.localhost", &["erpnext"])]);
    d.deployed = true;
    apply_as_planned(&d, &[]);

    for args in [&["--site", "b.localhost", "install-app", "hrms"][..], &["--site", "b.localhost", "migrate"]] {
        let (code, out) = d.bench(args);
        assert_eq!(code, 0, "{out}");
    }
    // The cheap read knows: drift, and no step (the code b runs is the code it was migrated to).
    let plan = plan_json(&d, &[]);
    assert!(step_ids(&plan).is_empty(), "{plan}");
    assert!(has_drift(&plan, "app-installed-outside", "b.localhost"), "{plan}");
    assert_eq!(migrated_version(&d, "b.localhost", "hrms"), "1.0.0");

    d.release(2, "v1.0.0", "v1.1.0");
    let plan = plan_json(&d, &[]);
    let migrate = step(&plan, "migrate:b.localhost").unwrap_or_else(|| panic!("b does not migrate: {plan}"));
    assert_eq!(
        migrate["reason"],
        "hrms (installed outside the manifest) was installed after benchform last migrated b.localhost and gets new \
         code with the new image"
    );
    assert!(step(&plan, "backup:b.localhost").is_some() && step(&plan, "maintenance-off:b.localhost").is_some());
    assert!(step_ids(&plan).iter().all(|id| !id.starts_with("uninstall-app")), "{plan}");

    let applied = apply_as_planned(&d, &[]);
    assert_eq!(step_ids(&applied), step_ids(&plan));
    assert_eq!(migrated_version(&d, "b.localhost", "hrms"), "1.1.0");
    let record = &site_config(&d, "b.localhost")["benchform"];
    assert_eq!(record["undeclared"], serde_json::json!(["hrms"]), "{record}");
    assert!(record["commits"]["hrms"].is_string(), "{record}");
    // Still installed, still drift.
    let status = d.status(&[]);
    let b = status["sites"].as_array().unwrap().iter().find(|s| s["name"] == "b.localhost").unwrap();
    assert_eq!(b["extra_apps"], serde_json::json!(["hrms"]));
    assert_eq!(b["fingerprint_matches"], true);

    // An image without hrms is refused before anything changes — even with allow_uninstall,
    // which lets benchform drop hrms from a (it installed it there), never from b.
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let at = lines.iter().position(|l| *l == "  - name: hrms").unwrap();
    lines.drain(at..at + 3);
    let text =
        format!("{}\npolicy:\n  allow_uninstall: true\n", lines.join("\n")).replace("[erpnext, hrms]", "[erpnext]");
    std::fs::write(&path, text).unwrap();
    assert_eq!(d.benchform(&["lock"]).code, 0);
    let refused = d.benchform(&["plan"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(
        refused.stderr.contains("site b.localhost has hrms installed outside the manifest")
            && refused.stderr.contains("ModuleNotFoundError"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("a.localhost has hrms"), "{}", refused.stderr);
    let refused = d.apply(&["--auto-approve"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert_eq!(migrated_version(&d, "a.localhost", "hrms"), "1.1.0", "a keeps hrms: nothing changed");
}

fn in_maintenance(d: &Deployment, site: &str) -> (bool, bool) {
    let config = site_config(d, site);
    let on = config["maintenance_mode"].as_i64().unwrap_or(0) == 1;
    (on, config.get(benchform_core::record::MAINTENANCE_KEY).is_some())
}

/// §4: maintenance mode an operator set for a manual fix survives unrelated applies — also one
/// that migrates the site (backed up and migrated, left in maintenance) — until a plan input
/// releases it, saved with the plan and applied from the file.
#[test]
fn maintenance_set_by_hand_is_left_alone_until_released() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"])]);
    d.deployed = true;
    apply_as_planned(&d, &[]);
    let (code, out) = d.bench(&["--site", "b.localhost", "set-maintenance-mode", "on"]);
    assert_eq!(code, 0, "{out}");

    let plan = plan_json(&d, &[]);
    assert!(step_ids(&plan).is_empty(), "{plan}");
    assert!(has_drift(&plan, "maintenance-outside", "b.localhost"), "{plan}");
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    let unrelated = d.apply(&["--auto-approve"]);
    assert_eq!(unrelated.code, 0, "{}", unrelated.all());
    assert!(unrelated.stdout.contains("No changes"), "{}", unrelated.stdout);
    assert_eq!(in_maintenance(&d, "b.localhost"), (true, false));

    // A release that migrates b: backup and migrate, and b stays out of service.
    d.release(1, "v15.1.0", "v15.2.0");
    let (plan, summary) = applied_as_planned(&d, &[]);
    // The run says b is left in maintenance.
    assert_eq!(summary["sites_in_maintenance"], serde_json::json!(["b.localhost"]), "{summary}");
    assert!(step(&plan, "backup:b.localhost").is_some() && step(&plan, "migrate:b.localhost").is_some(), "{plan}");
    assert!(step(&plan, "maintenance-off:b.localhost").is_none(), "{plan}");
    assert!(
        step(&plan, "migrate:b.localhost").unwrap()["reason"].as_str().unwrap().contains("stays in maintenance mode")
    );
    assert_eq!(migrated_version(&d, "b.localhost", "erpnext"), "15.2.0");
    assert_eq!(in_maintenance(&d, "b.localhost"), (true, false));
    assert_eq!(
        in_maintenance(&d, "a.localhost"),
        (false, false),
        "benchform's own maintenance is lifted, mark and all"
    );

    // Released on purpose: a plan input, saved in the file and used by `apply FILE`.
    let bad = d.benchform(&["plan", "--release-maintenance", "a.localhost"]);
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(bad.stderr.contains("--release-maintenance a.localhost: the site is in service"), "{}", bad.stderr);
    let file = d.dir.path().join("release.json");
    let file_arg = file.display().to_string();
    let saved = d.benchform(&["plan", "--release-maintenance", "b.localhost", "-o", &file_arg]);
    assert_eq!(saved.code, 0, "{}", saved.all());
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(doc["inputs"]["release_maintenance"], serde_json::json!(["b.localhost"]));
    assert_eq!(step_ids(&doc), vec!["maintenance-off:b.localhost"]);
    let refused = d.apply(&[&file_arg, "--release-maintenance", "b.localhost"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    apply_as_planned(&d, &[&file_arg]);
    assert_eq!(in_maintenance(&d, "b.localhost"), (false, false));

    // A scheduler paused by hand alone: drift, and a migrate (hrms added to a, no new image)
    // puts a back in service with its scheduler still paused.
    let (code, out) = d.bench(&["--site", "a.localhost", "scheduler", "pause"]);
    assert_eq!(code, 0, "{out}");
    assert!(has_drift(&plan_json(&d, &[]), "maintenance-outside", "a.localhost"));
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replacen("apps: [erpnext]", "apps: [erpnext, hrms]", 1);
    std::fs::write(&path, text).unwrap();
    let plan = apply_as_planned(&d, &[]);
    assert!(step(&plan, "migrate:a.localhost").is_some(), "{plan}");
    let config = site_config(&d, "a.localhost");
    assert_eq!(in_maintenance(&d, "a.localhost"), (false, false));
    assert_eq!(config["pause_scheduler"], true, "{config}");
}

/// §3: without a deploy, apply runs each site's whole group in turn; the plan lists the steps in
/// that order, and its schedule says so (phases, sites at a time, each site's window out of
/// service) — for one site at a time and for two.
#[test]
fn the_plan_lists_the_steps_in_the_order_apply_runs_them() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"])]);
    d.deployed = true;
    apply_as_planned(&d, &[]);
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap().replace("apps: [erpnext]", "apps: [erpnext, hrms]");
    std::fs::write(&path, text).unwrap();

    let plan = plan_json(&d, &["--parallelism", "2"]);
    let per_site = |site: &str| -> Vec<String> {
        ["maintenance-on", "backup", "install-app", "migrate", "maintenance-off"]
            .iter()
            .map(|k| if *k == "install-app" { format!("{k}:{site}:hrms") } else { format!("{k}:{site}") })
            .collect()
    };
    let expected: Vec<String> = [per_site("a.localhost"), per_site("b.localhost")].concat();
    assert_eq!(step_ids(&plan), expected);
    let schedule = &plan["schedule"];
    assert_eq!(schedule["parallelism"], 2);
    assert_eq!(schedule["phases"].as_array().unwrap().len(), 1, "{schedule}");
    assert_eq!(schedule["phases"][0]["sites"][1]["steps"], serde_json::json!(per_site("b.localhost")));
    assert_eq!(
        schedule["out_of_service"][0],
        serde_json::json!({"site": "a.localhost", "from": "maintenance-on:a.localhost", "until": "maintenance-off:a.localhost"})
    );
    // The first step of each site's group depends on nothing of the other's: they may run at once.
    assert_eq!(step(&plan, "maintenance-on:b.localhost").unwrap()["depends_on"], serde_json::json!([]));
    let text = d.benchform(&["plan", "--parallelism", "2"]);
    assert!(text.stdout.contains("-- 2 sites, 2 at a time --"), "{}", text.stdout);
    assert!(text.stdout.contains("a.localhost: steps 1–5 through backup, install-app, migrate"), "{}", text.stdout);

    // One site at a time: apply starts exactly the printed steps in the printed order.
    apply_as_planned(&d, &[]);
    for site in ["a.localhost", "b.localhost"] {
        assert_eq!(migrated_version(&d, site, "hrms"), "1.0.0");
        assert_eq!(in_maintenance(&d, site), (false, false));
    }
}

/// Each container of the project: service → (id, when it last started).
fn containers(d: &Deployment) -> std::collections::BTreeMap<String, (String, String)> {
    let out = std::process::Command::new(d.world.docker_cli())
        .args(["ps", "-a", "-q", "--filter"])
        .arg(format!("label=com.docker.compose.project={}", d.project))
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
    let mut args = vec!["inspect".to_string(), "--format".to_string()];
    args.push("{{index .Config.Labels \"com.docker.compose.service\"}} {{.Id}} {{.State.StartedAt}}".to_string());
    args.extend(ids);
    let out = std::process::Command::new(d.world.docker_cli()).args(&args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), (parts.next()?.to_string(), parts.next()?.to_string())))
        })
        .collect()
}

/// §2: the first deploy names every service it creates (db, redis, the configurator); an override
/// that changes only redis-cache plans a deploy of redis-cache alone, flagged disruptive, and
/// apply recreates it and touches no other container.
#[test]
fn every_service_compose_touches_is_planned_and_nothing_else_is_touched() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    d.deployed = true;
    let first = plan_json(&d, &[]);
    let deploy = step(&first, "deploy").unwrap();
    for service in ["db", "redis-cache", "configurator", "backend"] {
        assert!(
            deploy["service_changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["service"] == service && c["reason"] == "not running"),
            "{service} missing from {deploy}"
        );
    }
    apply_as_planned(&d, &[]);

    // Arguments only: the official image's entrypoint (and the world's) runs redis-server with them.
    let override_file = d.dir.path().join("compose.redis-limits.yaml");
    std::fs::write(&override_file, "services:\n  redis-cache:\n    command: [--maxmemory, 64mb]\n").unwrap();
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("files: [compose.yaml]", &format!("files: [compose.yaml, {}]", override_file.display()));
    std::fs::write(&path, text).unwrap();

    let plan = plan_json(&d, &[]);
    assert_eq!(step_ids(&plan), vec!["deploy"], "{plan}");
    let deploy = step(&plan, "deploy").unwrap();
    let changed = |service: &str, disruptive: bool| serde_json::json!({"service": service, "reason": "its compose configuration changed", "disruptive": disruptive});
    let named: Vec<String> = match flavour() {
        Flavour::V2 => {
            assert_eq!(deploy["service_changes"], serde_json::json!([changed("redis-cache", true)]));
            vec!["redis-cache".to_string()]
        }
        // Compose v1 drops `pull_policy` from every service of the base file when it merges an
        // override: every service's configuration changes, and `up` recreates them all. The
        // plan says so, and names the database and redis as disruptive.
        Flavour::V1 => {
            let all = ["backend", "configurator", "db", "queue-short", "redis-cache", "scheduler"];
            let expected: Vec<Value> = all.iter().map(|s| changed(s, *s == "db" || *s == "redis-cache")).collect();
            assert_eq!(deploy["service_changes"], serde_json::json!(expected));
            all.iter().map(|s| s.to_string()).collect()
        }
    };
    assert_eq!(deploy["services"], serde_json::json!(named));
    let text = d.benchform(&["plan"]);
    assert!(text.stdout.contains("redis-cache") && text.stdout.contains("disruptive"), "{}", text.stdout);

    let before = containers(&d);
    apply_as_planned(&d, &[]);
    let after = containers(&d);
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    for (service, was) in &before {
        if named.contains(service) {
            assert_ne!(after[service].0, was.0, "{service} was not recreated");
        } else {
            assert_eq!(&after[service], was, "{service} was touched although the plan did not name it");
        }
    }
    let redis = std::process::Command::new(d.world.docker_cli())
        .args(["exec", &d.container_name("redis-cache"), "redis-cli", "CONFIG", "GET", "maxmemory"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&redis.stdout).contains("67108864"), "{}", String::from_utf8_lossy(&redis.stdout));
}

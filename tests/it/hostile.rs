//! Hostile input and faults (issue "Hostile input and faults"): edited saved plans, values that
//! could redirect a token or reach a command, broken sites, interrupted runs. Each test fails on a
//! benchform that trusts what it reads.

use serde_json::{Value, json};

use crate::status::{Deployment, Watch};

/// The saved plan's digest as `plan -o` computes it: SHA-256 of the document without `digest`,
/// in the order benchform writes its fields. An attacker can do this too; it only catches edits
/// that did not bother, and re-planning catches the rest.
fn reseal(doc: &mut Value) {
    let mut without = doc.clone();
    without.as_object_mut().unwrap().remove("digest");
    doc["digest"] = benchform_core::tag::sha256_hex(without.to_string().as_bytes()).into();
}

fn step(kind: &str, site: Option<&str>, app: Option<&str>, deps: &[&str]) -> Value {
    let id = [Some(kind), site, app].iter().flatten().copied().collect::<Vec<_>>().join(":");
    json!({"id": id, "kind": kind, "site": site, "app": app, "reason": "edited in",
           "destructive": false, "depends_on": deps})
}

#[test]
fn an_edited_saved_plan_is_refused_and_changes_nothing() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext", "hrms"]), ("b.localhost", &["erpnext"])]);
    d.deployed = true;
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    d.release(2, "v1.0.0", "v1.1.0");
    let file = d.dir.path().join("release.json");
    let saved_arg = file.display().to_string();
    let made = d.benchform(&["plan", "-o", &saved_arg, "--parallelism", "2"]);
    assert_eq!(made.code, 0, "{}", made.all());
    let original: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(original["format_version"], 2);
    assert_eq!(original["inputs"], json!({"allow_downgrade": false, "parallelism": 2}));
    let ids: Vec<&str> = original["steps"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"backup:a.localhost") && ids.contains(&"migrate:a.localhost"), "{ids:?}");

    let try_file = |name: &str, doc: &Value, extra: &[&str]| {
        let path = d.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, doc.to_string()).unwrap();
        let mut args = vec![path.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = d.apply(&argv);
        assert_eq!(run.code, 1, "{name} was applied:\n{}", run.all());
        run.stderr
    };
    let edited = |f: &dyn Fn(&mut Value)| {
        let mut doc = original.clone();
        f(&mut doc);
        reseal(&mut doc);
        doc
    };
    let insert_after = |doc: &mut Value, after: &str, s: Value| {
        let steps = doc["steps"].as_array_mut().unwrap();
        let at = steps.iter().position(|x| x["id"] == after).unwrap() + 1;
        steps.insert(at, s);
    };

    let watch = Watch::start(&d.project);
    // An uninstall the policy does not allow, spliced in after the backup.
    let uninstall = edited(&|doc| {
        let mut s = step("uninstall-app", Some("a.localhost"), Some("erpnext"), &["backup:a.localhost"]);
        s["destructive"] = true.into();
        insert_after(doc, "backup:a.localhost", s);
    });
    let err = try_file("uninstall", &uninstall, &[]);
    assert!(err.contains("is not the plan benchform makes"), "{err}");
    assert!(err.contains("`uninstall-app:a.localhost:erpnext` is not a step the planner produces"), "{err}");

    // A new site the manifest does not name.
    let new_site = edited(&|doc| {
        doc["steps"].as_array_mut().unwrap().push(step("new-site", Some("evil.localhost"), None, &[]));
    });
    let err = try_file("new-site", &new_site, &[]);
    assert!(err.contains("1 step(s) more than the planner produces, from `new-site:evil.localhost`"), "{err}");

    // A path where a site name belongs never reaches a command: the file is refused as read.
    let traversal = edited(&|doc| {
        doc["steps"].as_array_mut().unwrap().insert(0, step("backup", Some("../../etc"), None, &[]));
    });
    let err = try_file("traversal", &traversal, &[]);
    assert!(err.contains("site `../../etc` is not a valid site name"), "{err}");

    // The same steps in another order.
    let reordered = edited(&|doc| {
        let steps = doc["steps"].as_array_mut().unwrap();
        let a = steps.iter().position(|x| x["id"] == "migrate:a.localhost").unwrap();
        let last = steps.len() - 1;
        steps.swap(a, last);
        for s in steps.iter_mut() {
            s["depends_on"] = json!([]);
        }
    });
    let err = try_file("reordered", &reordered, &[]);
    assert!(err.contains("is not the plan benchform makes"), "{err}");

    // Another project's name.
    let other = edited(&|doc| doc["project"] = "someone-else".into());
    let err = try_file("project", &other, &[]);
    assert!(err.contains("is a plan for project someone-else"), "{err}");

    // 15,000 steps: refused at once, not run.
    let huge = edited(&|doc| {
        let steps = doc["steps"].as_array_mut().unwrap();
        for i in 0..15_000 {
            steps.push(step("maintenance-off", Some(&format!("s{i}.localhost")), None, &[]));
        }
    });
    let err = try_file("huge", &huge, &[]);
    assert!(err.contains("15000 step(s) more than the planner produces"), "{err}");

    // An edit that did not reseal the digest; an old format; flags that belong to the plan.
    let mut unsealed = original.clone();
    unsealed["steps"].as_array_mut().unwrap().pop();
    let err = try_file("unsealed", &unsealed, &[]);
    assert!(err.contains("was changed after it was saved"), "{err}");
    let mut old = original.clone();
    old["format_version"] = 1.into();
    let err = try_file("old", &old, &[]);
    assert!(err.contains("has plan format 1; this benchform reads format 2"), "{err}");
    let err = try_file("flags", &original, &["--parallelism", "4"]);
    assert!(err.contains("keeps the ones it was made with"), "{err}");
    let err = try_file("flags2", &original, &["--allow-downgrade"]);
    assert!(err.contains("keeps the ones it was made with"), "{err}");

    // None of it touched the deployment: only reads ran, and the plan is still the same.
    let seen = watch.stop();
    let reads = ["find sites", "SELECT defvalue FROM tabDefaultValue", "execute frappe.get_installed_apps"];
    assert!(seen.iter().all(|a| reads.iter().any(|r| a.contains(r))), "a refused plan mutated something: {seen:?}");
    let again: Value = serde_json::from_str(&d.benchform(&["plan", "--format", "json"]).stdout).unwrap();
    assert_eq!(again["steps"], original["steps"]);
    let backups = d.dir.path().join("backups").join(&d.project).join("a.localhost");
    assert!(!backups.exists(), "no backup was taken");

    // The file as saved is applied, with the parallelism it was saved with.
    let applied = d.apply(&[&saved_arg, "--format", "json"]);
    assert_eq!(applied.code, 0, "{}", applied.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
}

/// force-unlock never frees the lock of an apply that still runs here without --force, and a
/// lock volume without a holder is named as such, with a fix that is not an empty ID.
#[test]
fn force_unlock_checks_the_holder_and_unlabelled_locks_are_explained() {
    use benchform_docker::lock::LockInfo;
    let d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    let rt = crate::world::rt();
    let engine = rt.block_on(crate::world::engine());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let mut alive = std::process::Command::new("sleep").arg("120").spawn().unwrap();
    let live = LockInfo {
        id: "live0apply".into(),
        holder: "bob@here".into(),
        since: "2026-12-01T10:00:00Z".into(),
        plan: "apply".into(),
        host,
        pid: alive.id(),
    };
    assert_eq!(rt.block_on(engine.try_lock(&d.project, &live)).unwrap(), None);
    let refused = d.benchform(&["force-unlock", "live0apply"]);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("still runs on this machine"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "{}", refused.stderr);
    assert_eq!(rt.block_on(engine.lock_holder(&d.project)).unwrap().map(|h| h.id), Some("live0apply".to_string()));
    let forced = d.benchform(&["force-unlock", "live0apply", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.all());
    assert_eq!(rt.block_on(engine.lock_holder(&d.project)).unwrap(), None);
    let _ = alive.kill();
    let _ = alive.wait();

    // A volume of the lock's name made by hand.
    let volume = benchform_docker::lock::lock_volume(&d.project);
    let made = std::process::Command::new(d.world.docker_cli()).args(["volume", "create", &volume]).output().unwrap();
    assert!(made.status.success());
    for run in [d.apply(&["--auto-approve"]), d.benchform(&["force-unlock", "x"])] {
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(run.stderr.contains("names no holder"), "{}", run.stderr);
        assert!(run.stderr.contains(&format!("docker volume rm {volume}")), "{}", run.stderr);
        assert!(!run.stderr.contains("force-unlock `") && !run.stderr.contains("locked by  since"), "{}", run.stderr);
    }
    let removed = std::process::Command::new(d.world.docker_cli()).args(["volume", "rm", &volume]).output().unwrap();
    assert!(removed.status.success());
}

fn docker(d: &Deployment, args: &[&str]) -> std::process::Output {
    std::process::Command::new(d.world.docker_cli()).args(args).output().unwrap()
}

fn in_backend(d: &Deployment, args: &[&str]) {
    let mut argv = vec!["exec", "-u", "frappe", "-w", "/home/frappe/frappe-bench"];
    let backend = d.backend();
    argv.push(&backend);
    argv.extend(args);
    let out = docker(d, &argv);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn converged(d: &Deployment) {
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "not converged:\n{}", plan.all());
    let again = d.apply(&["--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);
}

/// Operators' hand changes and broken sites: an app uninstalled by hand converges; a stopped or
/// removed redis-cache is planned; a site without site_config.json, with garbage in it, or a
/// half-made site are reported as what they are, never as new, never with a destructive fix,
/// and never block the other sites; a stopped backend never makes existing sites "new".
#[test]
fn hand_changes_and_broken_sites_are_planned_truthfully() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext", "hrms"]), ("b.localhost", &["erpnext"])]);
    d.deployed = true;
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    converged(&d);

    // An app uninstalled by hand: reinstalled, migrated, and then nothing more to do.
    in_backend(&d, &["bench", "--site", "a.localhost", "uninstall-app", "hrms", "--yes", "--no-backup"]);
    let heal = d.apply(&["--auto-approve"]);
    assert_eq!(heal.code, 0, "{}", heal.all());
    assert!(heal.stdout.contains("→ install-app a.localhost hrms"), "{}", heal.stdout);
    assert!(heal.stdout.contains("done migrate:a.localhost"), "the migrate ran: {}", heal.stdout);
    converged(&d);

    // redis-cache stopped, then removed: a deploy brings it back.
    let redis = d.container_name("redis-cache");
    assert!(docker(&d, &["stop", &redis]).status.success());
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.lines().any(|l| l.contains("redis-cache") && l.contains("exited (")), "{}", plan.stdout);
    assert_eq!(d.apply(&["--auto-approve"]).code, 0);
    converged(&d);
    assert!(docker(&d, &["rm", "-f", &redis]).status.success());
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(
        plan.stdout.lines().any(|l| l.contains("redis-cache") && l.trim_end().ends_with("not running")),
        "{}",
        plan.stdout
    );
    assert_eq!(d.apply(&["--auto-approve"]).code, 0);
    converged(&d);

    // b's site_config.json gone: b is damaged, not new; a is still planned and applied.
    let b = "sites/b.localhost/site_config.json";
    in_backend(&d, &["mv", b, "/tmp/b-site_config.json"]);
    edit_hrms_out_of_a(&d);
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("b.localhost: sites/b.localhost has no site_config.json"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("new-site"), "{}", plan.stdout);
    let apply = d.apply(&["--auto-approve"]);
    assert_eq!(apply.code, 1, "a blocked site is not a success: {}", apply.all());
    assert!(apply.stdout.contains("done migrate:a.localhost"), "a went on: {}", apply.all());
    assert!(!apply.all().contains("drop-site"), "never a destructive fix: {}", apply.all());

    // Garbage in it instead: what was observed, not a guess about the database.
    let garbage = d.dir.path().join("garbage.json");
    std::fs::write(&garbage, "not json {").unwrap();
    let target = format!("{}:/home/frappe/frappe-bench/{b}", d.backend());
    assert!(docker(&d, &["cp", &garbage.display().to_string(), &target]).status.success());
    let plan = d.benchform(&["plan"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("sites/b.localhost/site_config.json is not a JSON object"), "{}", plan.stdout);
    assert!(!plan.all().contains("database is missing") && !plan.all().contains("restore"), "{}", plan.all());
    let status = d.benchform(&["status"]);
    assert_eq!(status.code, 0, "{}", status.all());
    // Its apps are unknown, not missing.
    assert!(status.stdout.contains("b.localhost") && status.stdout.contains("cannot be read:"), "{}", status.stdout);
    assert!(!status.stdout.contains("missing frappe"), "{}", status.stdout);
    let json = d.status(&[]);
    let b_site = json["sites"].as_array().unwrap().iter().find(|s| s["name"] == "b.localhost").unwrap();
    assert!(b_site["problem"].as_str().unwrap().contains("not a JSON object"), "{b_site}");
    assert_eq!(b_site["missing_apps"], serde_json::json!([]));
    in_backend(&d, &["mv", "/tmp/b-site_config.json", b]);
    converged(&d);

    // A half-made site that is not in the manifest (a failed new-site by hand): drift only.
    in_backend(&d, &["mkdir", "sites/half.localhost"]);
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("half.localhost"), "reported: {}", plan.stdout);
    in_backend(&d, &["rmdir", "sites/half.localhost"]);

    // The backend removed: sites are not new; a deploy comes first.
    let backend = d.backend();
    assert!(docker(&d, &["rm", "-f", &backend]).status.success());
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 2, "{}", plan.all());
    assert!(plan.stdout.contains("deploy"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("new-site"), "{}", plan.stdout);
    assert!(plan.stdout.contains("no backend container runs"), "{}", plan.stdout);
    let back = d.apply(&["--auto-approve"]);
    assert!(back.stdout.contains("done deploy"), "{}", back.all());
    converged(&d);

    // A container that is not the project's but carries its labels: drift, with what happens.
    let intruder = format!("{}-intruder", d.project);
    let project_label = format!("com.docker.compose.project={}", d.project);
    let run = docker(
        &d,
        &[
            "run",
            "-d",
            "--name",
            &intruder,
            "--label",
            &project_label,
            "--label",
            "com.docker.compose.service=intruder",
            "redis:8.6-alpine",
        ],
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let plan = d.benchform(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, 0, "{}", plan.all());
    assert!(plan.stdout.contains("the compose files have no such service"), "{}", plan.stdout);
    assert!(plan.stdout.contains("the next deploy"), "{}", plan.stdout);
    assert!(docker(&d, &["rm", "-f", &intruder]).status.success());
}

/// Take hrms off a.localhost in the manifest (allowed), so that a has work while b is damaged.
fn edit_hrms_out_of_a(d: &Deployment) {
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen("apps: [erpnext, hrms]", "apps: [erpnext]", 1);
    let text = format!("{text}policy:\n  allow_uninstall: true\n");
    std::fs::write(&path, text).unwrap();
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if std::fs::read(&path).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())) {
            out.push(path);
        }
    }
    out
}

/// A build interrupted by SIGKILL leaves the private app's token nowhere on disk: the apps.json
/// secret lives only in the memory of the benchform process.
#[test]
fn a_build_killed_midway_leaves_no_token_on_disk() {
    let mut d = Deployment::with_private_hrms(&[("a.localhost", &["erpnext", "hrms"])]);
    d.deployed = true;
    let token = d.env[0].1.clone();
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("build_args: {", "build_args: {BENCH_CONTRACT_FAULT: \"slow-init:6\", ", 1))
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_dir = tmp.path().display().to_string();
    let (mut child, lines) = d.spawn_apply(&["--auto-approve", "-v"], &[("TMPDIR", &tmp_dir)]);
    assert!(lines.iter().any(|l| l.starts_with("→ build")), "apply reached the build");
    std::thread::sleep(std::time::Duration::from_secs(3));
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(files_containing(tmp.path(), &token), Vec::<std::path::PathBuf>::new(), "the token was left on disk");
    assert!(files_containing(d.dir.path(), &token).is_empty());
    // The next apply takes over the lock and builds, again without a file.
    std::thread::sleep(std::time::Duration::from_secs(4));
    let again = d.apply(&["--auto-approve"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(!again.all().contains(&token));
}

/// A migrate that hangs: SIGINT ends the run in order (summary, history, lock released, nothing
/// restored under the running migrate); re-applies take no backup while it runs and never prune
/// the backup it started from; `--migrate-timeout` stops waiting without a restore.
#[test]
fn a_stuck_migrate_never_costs_the_good_backup() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    d.deployed = true;
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}backups:\n  keep: 1\n")).unwrap();
    assert_eq!(d.apply(&["--auto-approve"]).code, 0);

    d.fault("a.localhost", "migrate=hang\n");
    d.release(1, "v15.1.0", "v15.2.0");
    let (mut child, rx) = d.spawn_apply(&["--auto-approve", "--format", "json"], &[("BENCHFORM_HEARTBEAT_SECS", "1")]);
    let mut seen = Vec::new();
    loop {
        let line = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("apply reached migrate");
        let started = line.contains("\"step_started\"") && line.contains("migrate:a.localhost");
        seen.push(line);
        if started {
            break;
        }
    }
    // A silent step says it is still running (here every second).
    let progress = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a progress event");
    assert!(progress.contains("\"event\":\"progress\"") && progress.contains("migrate:a.localhost"), "{progress}");
    // With the last line the migrate printed before it went quiet.
    let last: Value = serde_json::from_str(&progress).unwrap();
    assert!(last["last_line"].as_str().is_some_and(|l| !l.is_empty()), "{progress}");
    seen.push(progress);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let int = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(int.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    seen.extend(rx.try_iter());
    let summary: Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["outcome"], "interrupted", "{seen:?}");
    assert_eq!(summary["signal"], "SIGINT");
    assert!(summary["restored"].as_array().unwrap().is_empty(), "nothing restored under a running migrate");
    let rt = crate::world::rt();
    let engine = rt.block_on(crate::world::engine());
    assert_eq!(rt.block_on(engine.lock_holder(&d.project)).unwrap(), None, "the lock was released");
    let history = d.benchform(&["history", "--format", "json"]);
    let records: Value = serde_json::from_str(&history.stdout).unwrap();
    assert_eq!(records.as_array().unwrap().last().unwrap()["outcome"], "interrupted", "{}", history.stdout);

    // The pre-migrate backup, and what protects it.
    let host = d.dir.path().join("backups").join(&d.project).join("a.localhost");
    let folders = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&host)
            .unwrap()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let good = folders();
    assert_eq!(good.len(), 1, "{good:?}");
    assert_eq!(std::fs::read_to_string(host.join(".unfinished-migrate")).unwrap().trim(), good[0]);

    // Re-applies while it still runs: no backup, no second migrate, the good backup kept.
    for _ in 0..2 {
        let again = d.apply(&["--auto-approve"]);
        assert_eq!(again.code, 1, "{}", again.all());
        assert!(again.stderr.contains("is still running in the backend; no backup while it runs"), "{}", again.all());
        assert!(!again.all().contains("recovered:"), "{}", again.all());
        assert_eq!(folders(), good, "no backup taken, none pruned");
    }

    // The hung migrate ends (killed by the operator); apply then converges, and only then is the
    // protected backup pruned like any other.
    let ps = docker(&d, &["exec", "-u", "root", &d.backend(), "ps", "-o", "pid,args"]);
    let pids: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains("migrate") && l.contains("a.localhost"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    assert!(!pids.is_empty(), "{}", String::from_utf8_lossy(&ps.stdout));
    for pid in pids {
        docker(&d, &["exec", "-u", "root", &d.backend(), "kill", "-9", &pid]);
    }
    d.fault("a.localhost", "");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let heal = d.apply(&["--auto-approve"]);
    assert_eq!(heal.code, 0, "{}", heal.all());
    assert!(!host.join(".unfinished-migrate").exists());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);

    // --migrate-timeout: benchform stops waiting; the site stays in maintenance, no restore.
    d.fault("a.localhost", "migrate=slow:30\n");
    d.release(1, "v15.2.0", "v15.3.0");
    let timed = d.apply(&["--auto-approve", "--migrate-timeout", "3"]);
    assert_eq!(timed.code, 1, "{}", timed.all());
    assert!(timed.stderr.contains("did not end within 3 s (--migrate-timeout)"), "{}", timed.all());
    assert!(timed.stderr.contains("Sites left in maintenance mode: a.localhost"), "{}", timed.all());
    assert!(!timed.all().contains("recovered:"), "{}", timed.all());
}

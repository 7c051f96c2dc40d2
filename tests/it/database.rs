//! Proven on the real database: every site of the world's deployments lives in MariaDB (the
//! `db` service, the world's `mariadb:11.8`), so "nothing lost" is checked on business rows
//! (`tabToDo`) with checksums taken by the server itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::status::{DB_ROOT_PASSWORD, Deployment, apply_env};
use crate::support::benchform_in;

/// Every `*-database.sql.gz` under `dir`.
fn dumps_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(dumps_under(&path));
        } else if path.to_string_lossy().ends_with("-database.sql.gz") {
            out.push(path);
        }
    }
    out
}

/// `docker start|stop` of the project's db service, waiting for it to be healthy on start.
fn db_service(d: &Deployment, action: &str) {
    let name = d.container_name("db");
    let out = std::process::Command::new(d.world.docker_cli()).args([action, &name]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    if action != "start" {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = std::process::Command::new(d.world.docker_cli())
            .args(["inspect", "--format", "{{.State.Health.Status}}", &name])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).trim() == "healthy" {
            return;
        }
        assert!(Instant::now() < deadline, "the db service did not become healthy again");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_failed_migrate_restores_that_site_from_a_dump_the_mariadb_client_loads() {
    let sites: &[(&str, &[&str])] =
        &[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"]), ("c.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    d.deployed = true;
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    for (i, (site, _)) in sites.iter().enumerate() {
        d.write_rows(site, 20 + i);
    }
    let before: Vec<String> = sites.iter().map(|(s, _)| d.rows(s)).collect();
    assert!(before.iter().all(|r| !r.starts_with("0:")), "{before:?}");

    // A release that migrates all three; b's migrate fails after its backup.
    d.fault("b.localhost", "migrate=fail\n");
    d.release(1, "v15.1.0", "v15.2.0");
    let run = d.apply(&["--auto-approve"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("b.localhost"), "{}", run.stderr);
    let after: Vec<String> = sites.iter().map(|(s, _)| d.rows(s)).collect();
    assert_eq!(after, before, "b restored to its rows before the apply, a and c untouched");
    let patches = d.sql(&format!(
        "SELECT COUNT(*) FROM `{}`.`tabPatch Log` WHERE patch LIKE '%injected_failure%'",
        d.db_name("b.localhost")
    ));
    assert_eq!(patches, ["0"], "b's database is the one from before the failed migrate");

    // The backup benchform copied off the volume is a gzip'd SQL dump the mariadb client loads
    // into an empty database, rows and all.
    let dumps = dumps_under(&d.dir.path().join("backups").join(&d.project).join("b.localhost"));
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let bytes = std::fs::read(&dumps[0]).unwrap();
    assert_eq!(&bytes[..2], [0x1f, 0x8b], "gzip");
    let sql = std::process::Command::new("gzip").arg("-dc").arg(&dumps[0]).output().unwrap();
    assert!(sql.status.success());
    d.sql("CREATE DATABASE restored_copy");
    let mut load = std::process::Command::new(d.world.docker_cli())
        .args(["exec", "-i", "-e", "MYSQL_PWD", &d.container_name("db"), "mariadb", "-uroot", "restored_copy"])
        .env("MYSQL_PWD", DB_ROOT_PASSWORD)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    load.stdin.take().unwrap().write_all(&sql.stdout).unwrap();
    let loaded = load.wait_with_output().unwrap();
    assert!(loaded.status.success(), "{}", String::from_utf8_lossy(&loaded.stderr));
    assert_eq!(d.rows_in("restored_copy"), before[1]);

    // Without the fault the release converges, and no row is lost anywhere.
    d.fault("b.localhost", "");
    let healed = d.apply(&["--auto-approve"]);
    assert_eq!(healed.code, 0, "{}", healed.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(sites.iter().map(|(s, _)| d.rows(s)).collect::<Vec<_>>(), before);
}

#[test]
fn the_database_going_away_mid_apply_is_named_and_healed() {
    let sites: &[(&str, &[&str])] = &[("a.localhost", &["erpnext"]), ("b.localhost", &["erpnext"])];
    let mut d = Deployment::new(sites);
    d.deployed = true;
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    d.write_rows("a.localhost", 30);
    d.write_rows("b.localhost", 5);
    let before = (d.rows("a.localhost"), d.rows("b.localhost"));

    // a's migrate takes 6 s; the db service stops while it runs.
    d.fault("a.localhost", "migrate=slow:6\n");
    d.release(1, "v15.1.0", "v15.2.0");
    let (mut child, rx) = d.spawn_apply(&["--auto-approve", "--format", "json"], &[]);
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut lines = Vec::new();
    loop {
        let line = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("apply reached migrate");
        let migrating = line.contains("\"step_started\"") && line.contains("migrate:a.localhost");
        lines.push(line);
        if migrating {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    db_service(&d, "stop");
    lines.extend(rx.iter());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{lines:#?}");
    let all = lines.join("\n");
    assert!(all.contains("Can't connect to MySQL server on 'db'"), "the error names the database server: {all}");
    // Nothing recorded as done that was not: the migrate failed, and its fingerprint is not stored.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"step_finished\"") && l.contains("migrate:a.localhost") && l.contains("failed")),
        "{all}"
    );

    // With the database back, apply converges and no row is lost.
    db_service(&d, "start");
    d.fault("a.localhost", "");
    let healed = d.apply(&["--auto-approve"]);
    assert_eq!(healed.code, 0, "{}", healed.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!((d.rows("a.localhost"), d.rows("b.localhost")), before);
}

#[test]
fn a_wrong_root_password_and_a_read_only_database_lose_nothing() {
    let mut d = Deployment::new(&[("a.localhost", &["erpnext"])]);
    d.deployed = true;
    let first = d.apply(&["--auto-approve"]);
    assert_eq!(first.code, 0, "{}", first.all());
    d.write_rows("a.localhost", 12);
    let before = d.rows("a.localhost");

    // A new site with a wrong root password: MariaDB's own refusal, shown; the other site's
    // data untouched; the secret nowhere.
    let path = d.dir.path().join("benchform.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}  - name: b.localhost\n    apps: [erpnext]\n")).unwrap();
    let wrong = "not-the-root-password";
    let mut env: Vec<(&str, &str)> = apply_env().into_iter().filter(|(k, _)| *k != "DB_ROOT_PASSWORD").collect();
    env.push(("DB_ROOT_PASSWORD", wrong));
    let refused = benchform_in(d.dir.path(), &["apply", "--auto-approve"], &env);
    assert_eq!(refused.code, 1, "{}", refused.all());
    assert!(refused.stderr.contains("(1045, \"Access denied for user 'root'@"), "{}", refused.stderr);
    assert!(!refused.all().contains(wrong), "{}", refused.all());
    assert_eq!(d.rows("a.localhost"), before);
    let created = d.apply(&["--auto-approve"]);
    assert_eq!(created.code, 0, "the right password heals it: {}", created.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);

    // A read-only server: the migrate is refused (1290). Frappe's restore would drop the database
    // and then fail to load the backup (its user may not write), so benchform does not restore:
    // the site stays in maintenance with every row; once writable, apply converges.
    d.sql("SET GLOBAL read_only = 1");
    d.release(1, "v15.1.0", "v15.2.0");
    let read_only = d.apply(&["--auto-approve"]);
    d.sql("SET GLOBAL read_only = 0");
    assert_eq!(read_only.code, 1, "{}", read_only.all());
    assert!(read_only.stderr.contains("1290"), "{}", read_only.stderr);
    assert!(read_only.stderr.contains("was not restored: the database server refuses writes"), "{}", read_only.stderr);
    assert_eq!(d.rows("a.localhost"), before, "{}", read_only.all());
    let healed = d.apply(&["--auto-approve"]);
    assert_eq!(healed.code, 0, "{}", healed.all());
    assert_eq!(d.benchform(&["plan", "--detailed-exitcode"]).code, 0);
    assert_eq!(d.rows("a.localhost"), before);
}

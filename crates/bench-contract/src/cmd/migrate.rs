//! `bench --site S migrate` (frappe `migrate.py::SiteMigration`).
//!
//! Order of checks and output, as in frappe v15:
//!
//! 1. `Migrating S`; connect (unknown database → pymysql 1049);
//! 2. redis_cache must answer (`Service redis_cache is not running.` → 1);
//! 3. `bench_migrate` lock, 1 s (`LockTimeoutError` → 1);
//! 4. hooks of every installed app (an app missing from the image →
//!    `ModuleNotFoundError` → 1);
//! 5. pre-model-sync patches, schema sync (`Updating DocTypes for app`
//!    progress bars), post-model-sync patches — the entries of each installed
//!    app's `patches.txt` in the image that the `Patch Log` does not hold, each
//!    `Executing … in S (db)` / `Success: Done in …s` and logged on its own;
//! 6. `Installed Applications.update_versions()`;
//! 7. `Queued rebuilding of search index for S` (unless `--skip-search-index`),
//!    then a blank line. `--site all` stops at the first failing site.
//!
//! Test-only faults (`sites/S/.bench-contract-fault`):
//! `migrate=fail` raises in an extra post-model-sync patch after the earlier
//! phases committed (with `--skip-failing` it is logged `skipped=1`, exit 0),
//! `migrate=hang` sleeps forever holding the lock after the pre-model-sync
//! patches, `migrate=slow:SECONDS` sleeps that long there and then finishes.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Ctx, Phase, logged_name, patches, refresh_versions, site_not_specified};
use crate::args::{Spec, flag};
use crate::db::Db;
use crate::lock;
use crate::out::{Fail, Res, flush, progress, traceback};
use crate::util::py_round3;

const SPEC: Spec = Spec {
    prog: "bench frappe migrate",
    opts: &[flag(&["--skip-failing"]), flag(&["--skip-search-index"])],
    required: &[],
    optional: &[],
};

const BENCH_START_MESSAGE: &str = "
Cannot run bench migrate without the services running.
If you are running bench in development mode, make sure that bench is running:

$ bench start

Otherwise, check the server logs and ensure that all the required services are running.
";

pub fn migrate(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = SPEC.parse(args)?;
    let sites = ctx.sites();
    for site in &sites {
        println!("Migrating {site}");
        let result = migrate_site(ctx, site, p.flag("--skip-failing"), p.flag("--skip-search-index"));
        println!();
        result?;
    }
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    Ok(())
}

/// `check_connection(redis_services=["redis_cache"])`: a TCP connect to the
/// host:port of `redis_cache` in the merged config. Host names go through
/// the system resolver (`ToSocketAddrs`).
fn redis_cache_running(ctx: &Ctx, site: &str) -> bool {
    let Some(url) = ctx.bench.conf(site).get("redis_cache").and_then(Value::as_str).map(str::to_owned) else {
        return false;
    };
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let netloc = rest.split(['/', '?']).next().unwrap_or_default();
    let hostport = netloc.rsplit_once('@').map_or(netloc, |(_, h)| h);
    let Some((host, port)) = hostport.rsplit_once(':') else { return false };
    let Ok(port) = port.parse::<u16>() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(addrs) = (host, port).to_socket_addrs() else { return false };
    addrs.into_iter().any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

fn migrate_site(ctx: &Ctx, site: &str, skip_failing: bool, skip_search_index: bool) -> Res<()> {
    let bench = &ctx.bench;
    let db = ctx.connect(site)?;
    if !redis_cache_running(ctx, site) {
        println!("Service redis_cache is not running.");
        println!("{BENCH_START_MESSAGE}");
        return Err(Fail(1));
    }
    let _lock = lock::acquire(bench, site, "bench_migrate", Duration::from_secs(1))?;
    let result = run_phases(ctx, site, &db, skip_failing);
    // tearDown runs whatever happened.
    if !skip_search_index {
        println!("Queued rebuilding of search index for {site}");
    }
    result
}

fn run_phases(ctx: &Ctx, site: &str, db: &Db, skip_failing: bool) -> Res<()> {
    let bench = &ctx.bench;
    let installed = db.installed_apps()?;
    // before_migrate hooks: loading them imports every installed app.
    for app in &installed {
        if !bench.in_image(app) {
            println!("Could not find app \"{app}\": \nNo module named '{app}'");
            return Err(traceback(
                &[
                    (
                        "/home/frappe/frappe-bench/apps/frappe/frappe/migrate.py",
                        118,
                        "pre_schema_updates",
                        "for fn in frappe.get_hooks(\"before_migrate\", app_name=app):",
                    ),
                    (
                        "/home/frappe/frappe-bench/apps/frappe/frappe/__init__.py",
                        1,
                        "_load_app_hooks",
                        "app_hooks = get_module(f\"{app}.hooks\")",
                    ),
                ],
                &format!("ModuleNotFoundError: No module named '{app}'"),
            ));
        }
    }
    let faults = bench.faults(site);
    let mut listed = Vec::new();
    for app in &installed {
        match patches(bench, app) {
            Ok(p) => listed.extend(p),
            Err(exc) => {
                return Err(traceback(
                    &[(
                        "/home/frappe/frappe-bench/apps/frappe/frappe/modules/patch_handler.py",
                        1,
                        "parse_as_configfile",
                        "frappe.throw(frappe._(\"Patch type {} not found in patches.txt\").format(patch_type))",
                    )],
                    &exc,
                ));
            }
        }
    }
    // `run_all`: what is not logged as run, in order; `finally:` patches at the end of their phase.
    let pending = |phase: Phase| -> Res<Vec<String>> {
        let executed = db.executed_patches()?;
        let (mut now, mut last) = (Vec::new(), Vec::new());
        for (name, ph) in &listed {
            // `run_all` skips an entry whose text is logged, `run_single` one whose name is.
            if *ph == phase && !executed.contains(name) && !executed.contains(logged_name(name)) {
                if name.starts_with("finally:") { last.push(name.clone()) } else { now.push(name.clone()) }
            }
        }
        now.extend(last);
        Ok(now)
    };
    for patch in pending(Phase::PreModelSync)? {
        execute_patch(site, db, &patch)?;
    }
    match faults.get("migrate").map(String::as_str) {
        Some("hang") => {
            flush();
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Some(slow) if slow.starts_with("slow:") => {
            let secs: f64 = slow.trim_start_matches("slow:").trim().parse().unwrap_or(0.0);
            flush();
            std::thread::sleep(Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)));
        }
        _ => {}
    }
    for app in &installed {
        progress(&format!("Updating DocTypes for {app}"), 4);
    }
    for patch in pending(Phase::PostModelSync)? {
        execute_patch(site, db, &patch)?;
    }
    if faults.get("migrate").is_some_and(|f| f == "fail") {
        let app = installed.last().map_or("frappe", String::as_str);
        let patch = format!("{app}.patches.bench_contract.injected_failure");
        println!("Executing {patch} in {site} ({})", db.name);
        let exc = format!(
            "frappe.exceptions.ValidationError: bench-contract fault injection: migrate=fail (patch {patch} on site {site})"
        );
        if skip_failing {
            eprintln!("{exc}");
            println!("Failed to execute patch");
            db.log_patch(&patch, true)?;
        } else {
            return Err(traceback(
                &[
                    (
                        "/home/frappe/frappe-bench/apps/frappe/frappe/migrate.py",
                        125,
                        "run_schema_updates",
                        "frappe.modules.patch_handler.run_all(",
                    ),
                    (
                        "/home/frappe/frappe-bench/apps/frappe/frappe/modules/patch_handler.py",
                        1,
                        "execute_patch",
                        "_patch()",
                    ),
                ],
                &exc,
            ));
        }
    }
    refresh_versions(bench, db)
}

/// `patch_handler.execute_patch`: announce, run, log, time.
fn execute_patch(site: &str, db: &Db, patch: &str) -> Res<()> {
    let start = Instant::now();
    // A patch listed twice (by two apps) runs once: `run_single` asks the log again.
    if db.executed_patches()?.contains(logged_name(patch)) {
        return Ok(());
    }
    println!("Executing {patch} in {site} ({})", db.name);
    db.log_patch(logged_name(patch), false)?;
    println!("Success: Done in {}s", py_round3(start.elapsed().as_secs_f64()));
    Ok(())
}

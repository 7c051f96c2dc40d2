//! `bench` as the bench-contract test image ships it: a stand-in for
//! Frappe's `bench` that honours `frappe-contract.md` (commands, options,
//! output formats, exit codes, traps) without Python or Frappe; site data lives in a real
//! MariaDB server, as Frappe's does.
//!
//! Why it exists: Frappe cannot be installed on the machines benchform is
//! tested on, so benchform's site layer is exercised against a FROM-scratch
//! image holding busybox and this binary. benchform's production code never
//! special-cases it, so the fixture copies frappe's *observable* behaviour
//! (messages, streams, exit codes, file layouts, ordering of side effects on
//! failure) as closely as the contract and frappe's source allow, and keeps
//! its internals trivially simple.
//!
//! # State
//!
//! - Bench root `$BENCH_ROOT` (default `/home/frappe/frappe-bench`):
//!   `apps/<app>/{VERSION,REF,COMMIT}` is image truth written by `bench
//!   init`; `sites/` and `logs/` are the volumes (`apps.txt`, `apps.json`,
//!   `common_site_config.json`, one directory per site). See [`bench`].
//! - Each site's database in the MariaDB server `frappe.conf` names (`db_host`, `db_port`;
//!   `FRAPPE_DB_HOST` / `FRAPPE_DB_PORT` override them), reached with the `mariadb` and
//!   `mariadb-dump` clients. See [`db`].
//!
//! # Test-only fault injection
//!
//! - `BENCH_CONTRACT_FAULT=leak-token-in-log` at `bench init`: write clone
//!   URLs with their tokens to stdout and `logs/bench.log`.
//! - `BENCH_CONTRACT_FAULT=backend-down` / `backend-crash` at `bench init`:
//!   the image's `gunicorn` (this binary, see [`serve`]) answers 500 to
//!   every request, or exits 1 at start.
//! - `BENCH_CONTRACT_FAULT=slow-init:SECONDS` at `bench init`: the build
//!   takes that much longer (to interrupt a build in tests).
//! - `sites/<site>/.bench-contract-fault` lines: `migrate=fail`,
//!   `migrate=hang`, `migrate=slow:SECONDS`, `ready=no`.
//!
//! # Prompts
//!
//! Prompts (`getpass`, `click.confirm`) read a line from stdin; under
//! `docker exec` without a TTY that is EOF, so they fail like frappe's.

// A CLI fixture: printing to stdout/stderr is its whole interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod bench;
mod cmd;
mod db;
mod git;
mod init;
mod lock;
mod out;
mod py;
mod serve;
mod util;

use std::process::ExitCode;

use cmd::Ctx;
use out::{Fail, Res, flush};

const BENCH_HELP: &str = "Usage: bench [OPTIONS] COMMAND [ARGS]...

  bench-contract: a test fixture that behaves like Frappe's bench (see
  crates/bench-contract). Global options: --site SITE|all, --verbose,
  --force, --profile.

Commands:
  init                        Build-time: resolve frappe and apps.json apps
  version                     Show the versions of all the apps
  new-site                    Create a new site
  drop-site                   Remove site from database and filesystem
  install-app                 Install apps on a site
  uninstall-app               Remove an app from a site
  remove-from-installed-apps  Remove an app from installed_apps only
  list-apps                   List apps in site
  execute                     Execute a function (frappe.get_installed_apps)
  migrate                     Run patches, sync schema, update versions
  backup                      Backup
  restore                     Restore site database from a backup
  set-config                  Insert/update a value in site_config.json
  set-maintenance-mode        Put the site in or out of maintenance mode
  scheduler                   Control scheduler state
  enable-scheduler            Enable the scheduler
  disable-scheduler           Disable the scheduler
  ready-for-migration         Check whether the site can be migrated
  clear-cache                 Clear caches";

fn main() -> ExitCode {
    // Called as `gunicorn` (a link to this binary): the backend's web server.
    let program = std::env::args().next().unwrap_or_default();
    if program.rsplit('/').next() == Some("gunicorn") {
        let args: Vec<String> = std::env::args().skip(1).collect();
        return match serve::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => ExitCode::from(code),
        };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    startup_delay();
    let result = run(&args);
    flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code)) => ExitCode::from(code),
    }
}

/// What a real `bench` costs before it does anything (Python imports, Frappe's app loading: one
/// to several seconds): `BENCH_CONTRACT_STARTUP_MS` milliseconds, default 0, so a benchmark can
/// measure with Frappe-like start-up cost (set it on the backend service; execs inherit it).
fn startup_delay() {
    let ms = std::env::var("BENCH_CONTRACT_STARTUP_MS").ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    if ms > 0 {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(60_000)));
    }
}

/// click's top-level usage error (`bench` / `bench frappe` group).
fn group_error(prog: &str, message: &str) -> Fail {
    flush();
    eprintln!("Usage: {prog} [OPTIONS] COMMAND [ARGS]...\nTry '{prog} --help' for help.\n\nError: {message}");
    Fail(2)
}

/// Become `bench-idle` (a shell script that waits and exits on TERM), keeping the argv for `ps`.
fn idle(command: &str, rest: &[String]) -> Res<()> {
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("/usr/local/bin/bench-idle").arg(command).args(rest).exec();
    Err(group_error("bench", &format!("cannot start {command}: {err}")))
}

fn run(args: &[String]) -> Res<()> {
    let mut ctx = Ctx { bench: bench::Bench::from_env(), site_arg: None, force: false };
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        match arg.as_str() {
            "--site" => {
                let Some(site) = args.get(i + 1) else {
                    return Err(group_error("bench frappe", "Option '--site' requires an argument."));
                };
                ctx.site_arg = Some(site.clone());
                i += 2;
            }
            // Accepted like frappe's, with nothing extra to say.
            "--verbose" | "--profile" => i += 1,
            "--force" => {
                ctx.force = true;
                i += 1;
            }
            "--help" | "-h" => {
                println!("{BENCH_HELP}");
                return Ok(());
            }
            a if a.starts_with("--site=") => {
                ctx.site_arg = Some(a.trim_start_matches("--site=").to_owned());
                i += 1;
            }
            a if a.starts_with('-') => return Err(group_error("bench frappe", &format!("No such option: {a}"))),
            _ => break,
        }
    }
    let Some(command) = args.get(i) else {
        println!("{BENCH_HELP}");
        return Ok(());
    };
    let rest = &args[i + 1..];
    match command.as_str() {
        "init" => init::run(rest),
        "version" => cmd::site::version(&ctx, rest),
        "new-site" => cmd::site::new_site(&ctx, rest),
        "drop-site" => cmd::site::drop_site(&ctx, rest),
        "install-app" => cmd::site::install(&ctx, rest),
        "uninstall-app" => cmd::site::uninstall(&ctx, rest),
        "remove-from-installed-apps" => cmd::site::remove_from_installed(&ctx, rest),
        "list-apps" => cmd::site::list_apps(&ctx, rest),
        "execute" => cmd::site::execute(&ctx, rest),
        "clear-cache" => cmd::site::clear_cache(&ctx, rest),
        "migrate" => cmd::migrate::migrate(&ctx, rest),
        "backup" => cmd::backup::backup(&ctx, rest),
        "restore" => cmd::backup::restore(&ctx, rest),
        "set-config" => cmd::config::set_config(&ctx, rest),
        "set-maintenance-mode" => cmd::config::set_maintenance_mode(&ctx, rest),
        "scheduler" => cmd::config::scheduler(&ctx, rest),
        "enable-scheduler" => cmd::config::toggle_scheduler(&ctx, rest, true),
        "disable-scheduler" => cmd::config::toggle_scheduler(&ctx, rest, false),
        "ready-for-migration" => cmd::config::ready_for_migration(&ctx, rest),
        // Long-running services of the compose project; the fixture runs no jobs.
        "worker" | "schedule" => idle(command, rest),
        other => {
            let prog = if ctx.site_arg.is_some() { "bench frappe" } else { "bench" };
            Err(group_error(prog, &format!("No such command '{other}'.")))
        }
    }
}

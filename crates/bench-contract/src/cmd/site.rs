//! Site lifecycle and inspection commands (frappe `commands/site.py`,
//! `commands/utils.py`): `version`, `list-apps`, `execute`, `new-site`,
//! `install-app`, `uninstall-app`, `remove-from-installed-apps`,
//! `clear-cache`, `drop-site`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::backup::{self, BackupOpts};
use super::{Ctx, InstallError, install_app, load_hooks, refresh_versions, site_not_specified};
use crate::args::{Spec, choice, flag, multi, value};
use crate::bench::{update_config, write_config};
use crate::db::{Credentials, Db, Root};
use crate::lock;
use crate::out::{Fail, Res, exception, getpass, os_error, traceback};
use crate::py;
use crate::util::{hex, random_string, sha1};

const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

// ----- version ---------------------------------------------------------------

const VERSION: Spec = Spec {
    prog: "bench frappe version",
    opts: &[choice(&["-f", "--format"], &["plain", "table", "json", "legacy"])],
    required: &[],
    optional: &[],
};

/// `bench version`: apps from `sites/apps.txt`, sorted, with the image's
/// versions. No `.git` in images, so commit and branch are empty. The default
/// format is `legacy` on v15 and `plain` later (always pass `-f`).
pub fn version(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = VERSION.parse(args)?;
    let default = if ctx.bench.frappe_major() <= 15 { "legacy" } else { "plain" };
    let format = p.value("-f").unwrap_or(default);
    let mut apps = ctx.bench.all_apps()?;
    apps.sort();
    let mut rows = Vec::new();
    for app in apps {
        if !ctx.bench.in_image(&app) {
            return Err(traceback(
                &[(
                    "/home/frappe/frappe-bench/apps/frappe/frappe/commands/utils.py",
                    1,
                    "get_version",
                    "module = frappe.get_module(app)",
                )],
                &format!("ModuleNotFoundError: No module named '{app}'"),
            ));
        }
        let version = ctx.bench.app_version(&app);
        rows.push((app, version));
    }
    match format {
        "json" => {
            let data: Vec<Value> =
                rows.iter().map(|(a, v)| json!({"commit": "", "app": a, "branch": "", "version": v})).collect();
            println!("{}", py::dumps(&Value::Array(data), Some(4), false));
        }
        "plain" => rows.iter().for_each(|(a, v)| println!("{a} {v}  ()")),
        "table" => print_table(&[["App", "Version", "Branch", "Commit"]], &rows),
        _ => rows.iter().for_each(|(a, v)| println!("{a} {v}")),
    }
    Ok(())
}

/// terminaltables' `AsciiTable`, which frappe's `render_table` uses.
fn print_table(header: &[[&str; 4]], rows: &[(String, String)]) {
    let body: Vec<[String; 4]> =
        rows.iter().map(|(a, v)| [a.clone(), v.clone(), String::new(), String::new()]).collect();
    let all: Vec<[String; 4]> = header.iter().map(|h| h.map(str::to_owned)).chain(body).collect();
    let widths: Vec<usize> = (0..4).map(|i| all.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let sep = format!("+{}+", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+"));
    println!("{sep}");
    for (n, row) in all.iter().enumerate() {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!(" {c:<w$} ")).collect();
        println!("|{}|", cells.join("|"));
        if n == 0 {
            println!("{sep}");
        }
    }
    println!("{sep}");
}

// ----- list-apps -----------------------------------------------------------------

const LIST_APPS: Spec = Spec {
    prog: "bench frappe list-apps",
    opts: &[choice(&["--format", "-f"], &["text", "json"])],
    required: &[],
    optional: &[],
};

/// `list-apps`: the `Installed Applications` table, which v15 refreshes only
/// on migrate/uninstall, so it is empty on a never-migrated site and misses
/// just-installed apps (contract §4, frappe#13323). Text: a blank line, then
/// padded `name version branch` lines; `--site all` adds raw ANSI site
/// headers. JSON: `frappe.as_json({"S": [names]})`.
pub fn list_apps(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = LIST_APPS.parse(args)?;
    let json_out = p.value("--format") == Some("json");
    let sites = ctx.sites();
    let mut summary = Map::new();
    for (i, site) in sites.iter().enumerate() {
        let db = ctx.connect(site)?;
        let rows = db.versions()?;
        summary.insert(site.clone(), json!(rows.iter().map(|r| r.app_name.clone()).collect::<Vec<_>>()));
        if json_out || rows.is_empty() {
            continue;
        }
        let name_len = rows.iter().map(|r| r.app_name.len()).max().unwrap_or(0);
        let ver_len = rows.iter().map(|r| r.app_version.len()).max().unwrap_or(0);
        let lines: Vec<String> = rows
            .iter()
            .map(|r| format!("{:name_len$} {:ver_len$} {}", r.app_name, r.app_version, r.git_branch))
            .collect();
        let title = if sites.len() > 1 { format!("\x1b[32m{site}\x1b[0m") } else { String::new() };
        let mut text = format!("{title}\n{}\n", lines.join("\n"));
        if i + 1 == sites.len() {
            text = text.trim_end().to_owned();
        }
        println!("{text}");
    }
    if json_out {
        println!("{}", py::dumps(&Value::Object(summary), Some(1), true));
    }
    Ok(())
}

// ----- execute ---------------------------------------------------------------------

const EXECUTE: Spec = Spec {
    prog: "bench frappe execute",
    opts: &[value(&["--args"]), value(&["--kwargs"]), flag(&["--profile"])],
    required: &["METHOD"],
    optional: &[],
};

/// `execute METHOD`: prints the return value with `json.dumps` when truthy.
/// `frappe.get_installed_apps` (the authoritative installed set, in install
/// order) and `frappe.get_all_apps` are implemented; anything else fails the
/// way an unknown dotted path does.
pub fn execute(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = EXECUTE.parse(args)?;
    let method = p.positional(0).unwrap_or_default().to_owned();
    let sites = ctx.sites();
    for site in &sites {
        let db = ctx.connect(site)?;
        for (opt, what) in [("--args", "args"), ("--kwargs", "kwargs")] {
            if let Some(src) = p.value(opt)
                && let Err(e) = py::literal_eval(src)
                && what == "kwargs"
            {
                return Err(exception("execute", &e));
            }
        }
        let ret = match method.as_str() {
            "frappe.get_installed_apps" => json!(db.installed_apps()?),
            "frappe.get_all_apps" => json!(ctx.bench.all_apps()?),
            _ => {
                let module = method.split('.').next().unwrap_or_default();
                let exc = if ctx.bench.in_image(module) {
                    let attr = method.rsplit('.').next().unwrap_or_default();
                    let parent = method.rsplit_once('.').map_or(module, |(m, _)| m);
                    format!("AttributeError: module '{parent}' has no attribute '{attr}'")
                } else {
                    format!("ModuleNotFoundError: No module named '{module}'")
                };
                return Err(exception("execute", &exc));
            }
        };
        if crate::bench::truthy(Some(&ret)) {
            println!("{}", py::dumps(&ret, None, false));
        }
    }
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    Ok(())
}

// ----- new-site --------------------------------------------------------------------

const NEW_SITE: Spec = Spec {
    prog: "bench frappe new-site",
    opts: &[
        value(&["--db-name"]),
        value(&["--db-password"]),
        choice(&["--db-type"], &["mariadb", "postgres"]),
        value(&["--db-host"]),
        value(&["--db-port"]),
        value(&["--db-root-username", "--mariadb-root-username"]),
        value(&["--db-root-password", "--mariadb-root-password"]),
        flag(&["--no-mariadb-socket"]),
        value(&["--admin-password"]),
        flag(&["--verbose"]),
        flag(&["--force"]),
        value(&["--source-sql", "--source_sql"]),
        multi(&["--install-app"]),
        flag(&["--set-default"]),
        flag(&["--setup-db"]),
        flag(&["--no-setup-db"]),
        // v16 only: on v15 click rejects them (exit 2), see `new_site`.
        value(&["--mariadb-user-host-login-scope"]),
        value(&["--db-user"]),
        value(&["--db-socket"]),
    ],
    required: &["SITE"],
    optional: &[],
};

const V16_ONLY: [&str; 3] = ["--mariadb-user-host-login-scope", "--db-user", "--db-socket"];

/// The directories `frappe.installer.make_site_dirs` creates.
pub fn make_site_dirs(site_dir: &Path) -> Res<()> {
    for sub in ["public/files", "private/backups", "private/files", "locks", "logs"] {
        let d = site_dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| os_error(&d.display().to_string(), &e))?;
    }
    Ok(())
}

const ROOT_FRAMES: [(&str, u32, &str, &str); 2] = [
    (
        "/home/frappe/frappe-bench/apps/frappe/frappe/database/mariadb/setup_db.py",
        1,
        "get_root_connection",
        "root_password = getpass.getpass(\"MySQL root password: \")",
    ),
    ("/usr/local/lib/python3.11/getpass.py", 1, "fallback_getpass", "return _raw_input(prompt, stream, input=input)"),
];

/// `get_root_connection`: user defaults to `root`, the password comes from
/// the option, then `root_password` in the config, then `getpass` (which hits
/// EOF without a terminal).
pub fn root_connection(ctx: &Ctx, site: &str, user: Option<&str>, password: Option<&str>) -> Res<Root> {
    let user = user.filter(|u| !u.is_empty()).unwrap_or("root");
    let conf_password = ctx.bench.conf(site).get("root_password").and_then(Value::as_str).map(str::to_owned);
    let password = match password.filter(|p| !p.is_empty()).map(str::to_owned).or(conf_password) {
        Some(p) => p,
        None => getpass("MySQL root password: ", &ROOT_FRAMES)?,
    };
    Root::login(&ctx.bench, site, user, &password)
}

/// v15 `_new_site` names a database `"_" + sha1(realpath(site_path))[:16]`.
pub fn default_db_name(ctx: &Ctx, site: &str) -> String {
    let sites = ctx.bench.sites();
    let real = sites.canonicalize().unwrap_or(sites).join(site);
    let digest = hex(&sha1(real.to_string_lossy().as_bytes()));
    format!("_{}", &digest[..16])
}

/// `bench new-site S …`. Order of effects follows v15 `_new_site`: the
/// site directory and `site_config.json` are written before the root
/// password is needed, and the database exists (with frappe installed)
/// before the admin password is, so an interrupted run leaves a half-made
/// site that blocks reruns (`Site S already exists`), as the contract warns.
pub fn new_site(ctx: &Ctx, args: &[String]) -> Res<()> {
    let v16 = ctx.bench.frappe_major() >= 16;
    let p = NEW_SITE.parse(args)?;
    if !v16 && let Some(opt) = V16_ONLY.iter().find(|o| p.value(o).is_some()) {
        // frappe v15 never got the scope option (frappe/bench#1658).
        return Err(NEW_SITE.usage_error(&format!("No such option: {opt}")));
    }
    let site = p.positional(0).unwrap_or_default().to_owned();
    let bench = &ctx.bench;
    let force = p.flag("--force") || ctx.force;
    let no_socket = p.flag("--no-mariadb-socket");

    if v16 && bench.all_apps().unwrap_or_default().contains(&site) {
        println!("Your bench has an app called {site}, please choose another name for the site.");
        return Err(Fail(1));
    }
    if v16 && no_socket {
        println!(
            "--no-mariadb-socket is DEPRECATED; use --mariadb-user-host-login-scope='%' (wildcard) or --mariadb-user-host-login-scope=<myhostscope>, instead. The name of this option was misleading: it had nothing to do with sockets."
        );
    }
    let site_dir = bench.site_dir(&site);
    if site.is_empty() || site.contains('/') {
        return Err(exception("new_site", &format!("frappe.exceptions.IncorrectSitePath: {site} does not exist")));
    }
    if !force && site_dir.exists() {
        println!("Site {site} already exists");
        return Err(Fail(1));
    }
    let db_type = p.value("--db-type").unwrap_or("mariadb");
    if no_socket && db_type != "mariadb" && !v16 {
        println!("--no-mariadb-socket requires db_type to be set to mariadb.");
        return Err(Fail(1));
    }
    // `_is_scheduler_enabled` reads the old database, if any (--force).
    let enable_scheduler = bench.site_exists(&site) && Db::scheduler_was_enabled(bench, &site);
    make_site_dirs(&site_dir)?;
    let _lock = lock::acquire(bench, &site, "bench_new_site", LOCK_TIMEOUT)?;

    // install_db → make_conf: only when the site has no config yet.
    let config_path = bench.site_config_path(&site);
    if !config_path.is_file() {
        let mut conf = Map::new();
        let db_name = p.value("--db-name").map_or_else(|| default_db_name(ctx, &site), str::to_owned);
        conf.insert("db_name".to_owned(), json!(db_name));
        let password = p.value("--db-password").map_or_else(|| random_string(16), str::to_owned);
        conf.insert("db_password".to_owned(), json!(password));
        conf.insert("db_type".to_owned(), json!(db_type));
        if let Some(h) = p.value("--db-host") {
            conf.insert("db_host".to_owned(), json!(h));
        }
        if let Some(user) = p.value("--db-user").filter(|u| !u.is_empty()) {
            conf.insert("db_user".to_owned(), json!(user));
        }
        if let Some(port) = p.value("--db-port") {
            let port = port.parse::<i64>().map(Value::from).unwrap_or_else(|_| json!(port));
            conf.insert("db_port".to_owned(), port);
        }
        write_config(&config_path, &conf)?;
    }
    let Credentials { name: db_name, user: db_user, password: db_password } = Credentials::of(bench, &site);

    // setup_database: root connection, then refuse or drop an existing DB; the user is scoped to
    // the host the server sees this client come from unless told otherwise (contract §10.16).
    let root = root_connection(ctx, &site, p.value("--db-root-username"), p.value("--db-root-password"))?;
    if root.database_exists(&db_name)? {
        if !force {
            return Err(exception("new_site", &format!("Exception: Database {db_name} already exists")));
        }
        root.drop_site_database(&db_name, &db_user)?;
    }
    let scope = match p.value("--mariadb-user-host-login-scope").filter(|s| !s.is_empty()) {
        Some(scope) => scope.to_owned(),
        None if no_socket => "%".to_owned(),
        None => root.current_host()?,
    };
    root.create_site_database(&db_name, &db_user, &db_password, &scope)?;
    let db = Db::connect(bench, &site)?;

    let mut apps = vec!["frappe".to_owned()];
    if let Some(Value::Array(extra)) = bench.conf(&site).get("install_apps") {
        apps.extend(extra.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    apps.extend(p.values("--install-app").iter().cloned());
    for app in &apps {
        match install_app(bench, &db, app, true, false) {
            Ok(_) => {}
            Err(InstallError::Failed(f)) => return Err(f),
            Err(e) => {
                let (_, tb) = e.exception();
                eprintln!("{tb}");
                return Err(Fail(1));
            }
        }
        if app == "frappe" {
            // frappe's after_install sets the Administrator password.
            let conf_admin = bench.conf(&site).get("admin_password").is_some();
            if p.value("--admin-password").is_none_or(str::is_empty) && !conf_admin {
                getpass(
                    "Set Administrator password: ",
                    &[(
                        "/home/frappe/frappe-bench/apps/frappe/frappe/utils/install.py",
                        1,
                        "get_admin_password",
                        "admin_password = getpass.getpass(\"Set Administrator password: \")",
                    )],
                )?;
            }
        }
    }
    db.set_scheduler_enabled(enable_scheduler)?;
    println!("*** Scheduler is {} ***", if enable_scheduler { "enabled" } else { "disabled" });
    if p.flag("--set-default") {
        update_config(&bench.sites().join("common_site_config.json"), "default_site", json!(site))?;
        println!("Current Site set to {site}");
    }
    Ok(())
}

// ----- install-app -----------------------------------------------------------------

const INSTALL_APP: Spec =
    Spec { prog: "bench frappe install-app", opts: &[flag(&["--force"])], required: &[], optional: &["APPS..."] };

/// `install-app A [B…]`: continues after a failed app and exits 1 at the end
/// (`An error occurred while installing A: …` plus traceback on stdout);
/// `App A already installed` is exit 0. v15 does not refresh the versions
/// table here.
pub fn install(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = INSTALL_APP.parse(args)?;
    let sites = ctx.sites();
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    let mut failed = false;
    for site in &sites {
        let db = ctx.connect(site)?;
        let _lock = lock::acquire(&ctx.bench, site, "install_app", LOCK_TIMEOUT)?;
        for app in &p.positionals {
            match install_app(&ctx.bench, &db, app, true, p.flag("--force")) {
                Ok(_) => {}
                Err(InstallError::Failed(f)) => return Err(f),
                Err(e) => {
                    let (msg, tb) = e.exception();
                    println!("An error occurred while installing {app}: {msg}\n{tb}");
                    failed = true;
                }
            }
        }
    }
    if failed { Err(Fail(1)) } else { Ok(()) }
}

// ----- uninstall-app ---------------------------------------------------------------

const UNINSTALL_APP: Spec = Spec {
    prog: "bench frappe uninstall-app",
    opts: &[flag(&["--yes", "-y"]), flag(&["--dry-run"]), flag(&["--no-backup"]), flag(&["--force"])],
    required: &["APP"],
    optional: &[],
};

/// `uninstall-app A`: `frappe.installer.remove_app`. The app must be
/// importable even with `--force`; for apps gone from the image use
/// `remove-from-installed-apps`. Without `--yes` the confirmation hits EOF
/// (`Aborted!`, 1). The backup may reuse a set younger than 6 h.
pub fn uninstall(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = UNINSTALL_APP.parse(args)?;
    let app = p.positional(0).unwrap_or_default().to_owned();
    let (yes, dry_run, no_backup, force) =
        (p.flag("--yes"), p.flag("--dry-run"), p.flag("--no-backup"), p.flag("--force"));
    let sites = ctx.sites();
    for site in &sites {
        let db = ctx.connect(site)?;
        if load_hooks(&ctx.bench, &app).is_err() {
            return Err(traceback(
                &[(
                    "/home/frappe/frappe-bench/apps/frappe/frappe/installer.py",
                    1,
                    "remove_app",
                    "app_hooks = frappe.get_hooks(app_name=app_name)",
                )],
                &format!("ModuleNotFoundError: No module named '{app}'"),
            ));
        }
        if !force && !db.installed_apps()?.contains(&app) {
            println!("App {app} not installed on Site {site}");
            continue;
        }
        println!("Uninstalling App {app} from Site {site}...");
        if app == "frappe" {
            return Err(exception(
                "uninstall",
                "frappe.exceptions.ValidationError: frappe cannot be uninstalled from a site",
            ));
        }
        if !dry_run
            && !yes
            && !crate::out::confirm(
                "All doctypes (including custom), modules related to this app will be deleted. Are you sure you want to continue?",
            )?
        {
            continue;
        }
        if !(dry_run || no_backup) {
            println!("Backing up...");
            let opts = BackupOpts { reuse_hours: Some(6), ..BackupOpts::default() };
            backup::take(ctx, site, &db, &opts)?;
        }
        if !dry_run {
            let remaining: Vec<String> = db.installed_apps()?.into_iter().filter(|a| *a != app).collect();
            db.set_installed_apps(&remaining)?;
            refresh_versions(&ctx.bench, &db)?;
        }
        println!("Uninstalled App {app} from Site {site}");
    }
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    Ok(())
}

const ONE_APP: Spec =
    Spec { prog: "bench frappe remove-from-installed-apps", opts: &[], required: &["APP"], optional: &[] };

/// `remove-from-installed-apps A`: drops A from `installed_apps` without
/// loading it, the route for apps that are gone from the image. Silent.
pub fn remove_from_installed(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = ONE_APP.parse(args)?;
    let app = p.positional(0).unwrap_or_default();
    let sites = ctx.sites();
    for site in &sites {
        let db = ctx.connect(site)?;
        let remaining: Vec<String> = db.installed_apps()?.into_iter().filter(|a| a != app).collect();
        db.set_installed_apps(&remaining)?;
    }
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    Ok(())
}

const CLEAR_CACHE: Spec = Spec { prog: "bench frappe clear-cache", opts: &[], required: &[], optional: &[] };

/// `clear-cache`: connects and clears caches the fixture does not have.
pub fn clear_cache(ctx: &Ctx, args: &[String]) -> Res<()> {
    CLEAR_CACHE.parse(args)?;
    let sites = ctx.sites();
    for site in &sites {
        ctx.connect(site)?;
    }
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    Ok(())
}

// ----- drop-site -------------------------------------------------------------------

const DROP_SITE: Spec = Spec {
    prog: "bench frappe drop-site",
    opts: &[
        value(&["--db-root-username", "--mariadb-root-username", "--root-login"]),
        value(&["--db-root-password", "--mariadb-root-password", "--root-password"]),
        value(&["--archived-sites-path"]),
        flag(&["--no-backup"]),
        flag(&["--force"]),
    ],
    required: &["SITE"],
    optional: &[],
};

/// `bench drop-site S` (site is positional, no `pass_context`): backup with
/// files unless `--no-backup` (failure → 1 unless `--force`), drop the
/// database (root password or EOF), move the site to
/// `archived/sites/S[N]`.
pub fn drop_site(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = DROP_SITE.parse(args)?;
    let site = p.positional(0).unwrap_or_default().to_owned();
    let bench = &ctx.bench;
    if !bench.site_exists(&site) {
        return Err(exception("drop_site", &format!("frappe.exceptions.IncorrectSitePath: {site} does not exist")));
    }
    let db = Db::connect(bench, &site)?;
    if !p.flag("--no-backup") {
        println!("Taking backup of {site}");
        let opts = BackupOpts { with_files: true, ..BackupOpts::default() };
        match backup::take(ctx, &site, &db, &opts) {
            Ok(set) => backup::print_summary(&site, &set),
            Err(_) if p.flag("--force") => {}
            Err(_) => {
                println!("{}", "=".repeat(80));
                println!("Error: The operation has stopped because backup of {site}'s database failed.");
                println!("Reason: backup could not be written\n");
                println!("Fix the issue and try again.");
                println!("Hint: Use 'bench drop-site {site} --force' to force the removal of {site}");
                return Err(Fail(1));
            }
        }
    }
    println!("Dropping site database and user");
    let root = root_connection(ctx, &site, p.value("--db-root-username"), p.value("--db-root-password"))?;
    root.drop_site_database(&db.name, db.user())?;

    let archive: PathBuf = p
        .value("--archived-sites-path")
        .map_or_else(|| bench.root.join("archived").join("sites"), |a| bench.resolve_in_sites(a));
    std::fs::create_dir_all(&archive).map_err(|e| os_error(&archive.display().to_string(), &e))?;
    let archive = archive.canonicalize().unwrap_or(archive);
    println!("Moving site to archive under {}", archive.display());
    let mut target = archive.join(&site);
    let mut n = 1;
    while target.exists() {
        target = archive.join(format!("{site}{n}"));
        n += 1;
    }
    let from = bench.site_dir(&site);
    std::fs::rename(&from, &target).map_err(|e| os_error(&from.display().to_string(), &e))
}

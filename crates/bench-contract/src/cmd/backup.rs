//! `backup` and `restore` (frappe `utils/backups.py`, `installer.py`).
//!
//! A database backup is what Frappe writes: a gzip file of two members, frappe's metadata
//! header (which frappe itself reads back to detect downgrades; the fixture adds a comment line
//! with every installed app's version), then the output of `mariadb-dump` piped through `gzip`.
//! `gzip -dc` gives one SQL text that the `mariadb` client loads into an empty database:
//!
//! ```text
//! -- begin frappe metadata
//! -- [frappe]
//! -- version = 15.88.1
//! -- branch = N/A
//! -- end frappe metadata
//! --
//! -- benchform-contract dump of _3f2a…; site s1.test; versions: {"frappe": "15.88.1", "erpnext": "15.38.0"}
//! --
//! -- MariaDB dump 10.19  Distrib 10.11.…
//! …CREATE TABLE `tabDefaultValue` … INSERT INTO …
//! ```
//!
//! File backups are real tars (`tar` run with an argv array) of
//! `./<site>/public/files` and `./<site>/private/files` relative to `sites/`,
//! which is what frappe's `tar -cf` produces and what its restore
//! (`tar xf … --strip-components 2` inside the site) expects.
//!
//! Trap kept on purpose (contract §4, §10.17): every backup first deletes
//! files older than `keep_backups_for_hours` (default 24) from the default
//! directory `sites/<site>/private/backups`, judged by modification time
//! (frappe uses ctime, which tests cannot set).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::site::{make_site_dirs, root_connection};
use super::{Ctx, InstallError, install_app, site_not_specified};
use crate::args::{Spec, flag, multi, value};
use crate::db::{Credentials, Db};
use crate::lock;
use crate::out::{Fail, Res, confirm, exception, os_error, traceback};
use crate::py;
use crate::util::{Clock, format_size, parse_version, version_newer};

/// What to back up and where.
#[derive(Debug, Default, Clone)]
pub struct BackupOpts {
    pub with_files: bool,
    pub compress: bool,
    pub backup_path: Option<String>,
    pub path_db: Option<String>,
    pub path_conf: Option<String>,
    pub path_files: Option<String>,
    pub path_private_files: Option<String>,
    pub partial: bool,
    /// Reuse a database + config backup younger than this many hours instead
    /// of taking a new one (frappe's `scheduled_backup` without `force`).
    pub reuse_hours: Option<u64>,
}

/// One file of a backup set: the path as frappe prints it and where it is.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub shown: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BackupSet {
    pub conf: Artifact,
    pub db: Artifact,
    pub files: Option<(Artifact, Artifact)>,
}

fn default_dir_shown(site: &str) -> String {
    format!("./{site}/private/backups")
}

fn join_shown(dir: &str, name: &str) -> String {
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}

/// Deletes files older than `keep_backups_for_hours` (24) from the default
/// backup directory, as every frappe backup run does first.
fn delete_old_backups(ctx: &Ctx, site: &str) {
    let hours =
        ctx.bench.conf(site).get("keep_backups_for_hours").and_then(Value::as_u64).filter(|h| *h > 0).unwrap_or(24);
    let dir = ctx.bench.site_dir(site).join("private").join("backups");
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let limit = Duration::from_secs(hours * 3600);
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let old = entry
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= limit);
        if old {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Newest `<stamp>-<slug>-<kind>` file in the default directory if younger
/// than `hours` (`BackupGenerator.get_recent_backup`).
fn recent(dir: &Path, slug: &str, kind: &str, hours: u64) -> Option<PathBuf> {
    let suffix = format!("-{slug}-{kind}");
    let newest = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(&suffix))
        .filter_map(|e| e.metadata().ok().and_then(|m| m.modified().ok()).map(|t| (t, e.path())))
        .max_by_key(|(t, _)| *t)?;
    let age = SystemTime::now().duration_since(newest.0).unwrap_or_default();
    (age < Duration::from_secs(hours * 3600)).then_some(newest.1)
}

/// Takes (or, with `reuse_hours`, reuses) a backup set of `site`.
pub fn take(ctx: &Ctx, site: &str, db: &Db, opts: &BackupOpts) -> Res<BackupSet> {
    let bench = &ctx.bench;
    delete_old_backups(ctx, site);
    let slug = site.replace('.', "_");
    let default_dir = bench.site_dir(site).join("private").join("backups");

    if let Some(hours) = opts.reuse_hours {
        let db_file = recent(&default_dir, &slug, "database.sql.gz", hours);
        let conf_file = recent(&default_dir, &slug, "site_config_backup.json", hours);
        if let (Some(d), Some(c)) = (db_file, conf_file) {
            let shown =
                |p: &Path| join_shown(&default_dir_shown(site), &p.file_name().unwrap_or_default().to_string_lossy());
            return Ok(BackupSet {
                conf: Artifact { shown: shown(&c), path: c },
                db: Artifact { shown: shown(&d), path: d },
                files: None,
            });
        }
    }

    let stamp = Clock::now().backup_stamp();
    let ext = if opts.compress { "tgz" } else { "tar" };
    let partial = if opts.partial { "-partial" } else { "" };
    let dir_shown = opts.backup_path.clone().unwrap_or_else(|| default_dir_shown(site));
    let artifact = |explicit: &Option<String>, name: String| -> Artifact {
        let shown = explicit.clone().unwrap_or_else(|| join_shown(&dir_shown, &name));
        let path = bench.resolve_in_sites(&shown);
        Artifact { shown, path }
    };
    let conf = artifact(&opts.path_conf, format!("{stamp}-{slug}-site_config_backup.json"));
    let db_art = artifact(&opts.path_db, format!("{stamp}-{slug}{partial}-database.sql.gz"));
    let public = artifact(&opts.path_files, format!("{stamp}-{slug}-files.{ext}"));
    let private = artifact(&opts.path_private_files, format!("{stamp}-{slug}-private-files.{ext}"));
    for a in [&conf, &db_art, &public, &private] {
        if let Some(parent) = a.path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| os_error(&parent.display().to_string(), &e))?;
        }
    }

    write_dump(ctx, site, db, &db_art.path, opts.partial)?;
    let config_bytes = std::fs::read(bench.site_config_path(site)).map_err(|e| os_error("site_config.json", &e))?;
    std::fs::write(&conf.path, config_bytes).map_err(|e| os_error(&conf.path.display().to_string(), &e))?;
    let files = if opts.with_files {
        tar_files(ctx, site, "public", &public.path, opts.compress)?;
        tar_files(ctx, site, "private", &private.path, opts.compress)?;
        Some((public, private))
    } else {
        None
    };
    Ok(BackupSet { conf, db: db_art, files })
}

/// The dump text: frappe's metadata header, the fixture's versions line,
/// then the tables as JSON.
fn dump_header(ctx: &Ctx, site: &str, db: &Db, partial: bool) -> Res<String> {
    let bench = &ctx.bench;
    let mut versions = Map::new();
    for app in db.installed_apps()? {
        if bench.in_image(&app) {
            versions.insert(app.clone(), json!(bench.app_version(&app)));
        }
    }
    let mut text = format!(
        "-- begin frappe metadata\n-- [frappe]\n-- version = {}\n-- branch = N/A\n-- end frappe metadata\n--\n",
        bench.app_version("frappe")
    );
    if partial {
        text.push_str(&format!("-- Partial Backup of Frappe Site {site}\n--\n"));
    }
    text.push_str(&format!(
        "-- benchform-contract dump of {}; site {site}; versions: {}\n--\n",
        db.name,
        py::dumps(&Value::Object(versions), None, false)
    ));
    Ok(text)
}

/// The header as one gzip member, then the dump appended as another.
fn write_dump(ctx: &Ctx, site: &str, db: &Db, out: &Path, partial: bool) -> Res<()> {
    let text = dump_header(ctx, site, db, partial)?;
    let file = std::fs::File::create(out).map_err(|e| os_error(&out.display().to_string(), &e))?;
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| os_error("gzip", &e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(|e| os_error("gzip stdin", &e))?;
    }
    let status = child.wait().map_err(|e| os_error("gzip", &e))?;
    if !status.success() {
        return Err(crate::out::command_failed("gzip -c", status));
    }
    let file =
        std::fs::OpenOptions::new().append(true).open(out).map_err(|e| os_error(&out.display().to_string(), &e))?;
    // A dump that failed half-way must not be left where a restore could take it for a backup.
    db.dump_gzip(file).inspect_err(|_| {
        let _ = std::fs::remove_file(out);
    })
}

/// `tar -cf OUT ./<site>/<folder>/files` in `sites/` (`-czf` with
/// `--compress`).
fn tar_files(ctx: &Ctx, site: &str, folder: &str, out: &Path, compress: bool) -> Res<()> {
    let sites = ctx.bench.sites();
    let files = ctx.bench.site_dir(site).join(folder).join("files");
    std::fs::create_dir_all(&files).map_err(|e| os_error(&files.display().to_string(), &e))?;
    let out = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    let status = Command::new("tar")
        .arg(if compress { "-czf" } else { "-cf" })
        .arg(&out)
        .arg(format!("./{site}/{folder}/files"))
        .current_dir(&sites)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| os_error("tar", &e))?;
    if !status.success() {
        return Err(traceback(
            &[],
            &format!("frappe.exceptions.CommandFailedError: tar exited with {}", status.code().unwrap_or(1)),
        ));
    }
    Ok(())
}

/// `BackupGenerator.print_summary`.
pub fn print_summary(site: &str, set: &BackupSet) {
    let mut rows: Vec<(&str, &Artifact)> = vec![("Config", &set.conf), ("Database", &set.db)];
    if let Some((public, private)) = &set.files {
        rows.push(("Public", public));
        rows.push(("Private", private));
    }
    println!("Backup Summary for {site} at {}", Clock::now().frappe_now());
    let width = rows.iter().map(|(_, a)| a.shown.len()).max().unwrap_or(0);
    for (title, a) in rows {
        let size = std::fs::metadata(&a.path).map(|m| format_size(m.len())).unwrap_or_default();
        println!("{title:8}: {:width$} {size}", a.shown);
    }
}

const BACKUP: Spec = Spec {
    prog: "bench frappe backup",
    opts: &[
        flag(&["--with-files"]),
        value(&["--include", "--only", "-i"]),
        value(&["--exclude", "-e"]),
        value(&["--backup-path"]),
        value(&["--backup-path-db"]),
        value(&["--backup-path-files"]),
        value(&["--backup-path-private-files"]),
        value(&["--backup-path-conf"]),
        flag(&["--ignore-backup-conf"]),
        flag(&["--verbose"]),
        flag(&["--compress"]),
    ],
    required: &[],
    optional: &[],
};

/// `bench --site S backup`: per site, continue after a failure and exit 1 at
/// the end.
pub fn backup(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = BACKUP.parse(args)?;
    let opts = BackupOpts {
        with_files: p.flag("--with-files"),
        compress: p.flag("--compress"),
        backup_path: p.value("--backup-path").map(str::to_owned),
        path_db: p.value("--backup-path-db").map(str::to_owned),
        path_conf: p.value("--backup-path-conf").map(str::to_owned),
        path_files: p.value("--backup-path-files").map(str::to_owned),
        path_private_files: p.value("--backup-path-private-files").map(str::to_owned),
        partial: p.value("--include").is_some_and(|v| !v.is_empty())
            || p.value("--exclude").is_some_and(|v| !v.is_empty()),
        reuse_hours: None,
    };
    let sites = ctx.sites();
    if sites.is_empty() {
        return Err(site_not_specified());
    }
    let mut failed = false;
    for site in &sites {
        let db = ctx.bench.site_exists(site).then(|| Db::try_connect(&ctx.bench, site)).flatten();
        let set = match db {
            Some(db) => take(ctx, site, &db, &opts).ok(),
            None => None,
        };
        let Some(set) = set else {
            println!("Backup failed for Site {site}. Database or site_config.json may be corrupted");
            failed = true;
            continue;
        };
        print_summary(site, &set);
        let files = if opts.with_files { " with files" } else { "" };
        println!("Backup for Site {site} has been successfully completed{files}");
    }
    if failed { Err(Fail(1)) } else { Ok(()) }
}

const RESTORE: Spec = Spec {
    prog: "bench frappe restore",
    opts: &[
        value(&["--db-root-username", "--mariadb-root-username"]),
        value(&["--db-root-password", "--mariadb-root-password"]),
        value(&["--db-name"]),
        value(&["--admin-password"]),
        multi(&["--install-app"]),
        value(&["--with-public-files"]),
        value(&["--with-private-files"]),
        flag(&["--force"]),
        value(&["--encryption-key"]),
    ],
    required: &["SQL_FILE_PATH"],
    optional: &[],
};

/// Resolves a path the way `extract_sql_from_archive` does: relative to
/// `sites/`, then relative to the bench root.
fn find_file(ctx: &Ctx, given: &str) -> Option<PathBuf> {
    let a = ctx.bench.resolve_in_sites(given);
    if a.exists() {
        return Some(a);
    }
    let b = ctx.bench.root.join(given);
    b.exists().then_some(b)
}

/// Reads a `.sql.gz` through `gzip -dc` (or a plain `.sql`).
fn read_dump(path: &Path) -> Res<String> {
    let name = path.to_string_lossy();
    if !name.ends_with("sql.gz") {
        return std::fs::read_to_string(path).map_err(|e| os_error(&name, &e));
    }
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| os_error("gzip", &e))?;
    if !out.status.success() {
        return Err(traceback(
            &[(
                "/home/frappe/frappe-bench/apps/frappe/frappe/installer.py",
                1,
                "extract_sql_gzip",
                "subprocess.check_call(cmd, shell=True)",
            )],
            &format!(
                "subprocess.CalledProcessError: Command 'gzip --decompress --force < {name} > {}' returned non-zero exit status 1.",
                name.trim_end_matches(".gz")
            ),
        ));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| traceback(&[], "UnicodeDecodeError: 'utf-8' codec can't decode the database file"))
}

/// The dump's leading `--` comment lines (frappe's metadata header).
fn dump_header_of(text: &str) -> String {
    text.lines().take_while(|l| l.starts_with("--")).map(|l| format!("{l}\n")).collect()
}

/// `get_backup_version`: `version = X` inside the frappe metadata block.
fn backup_frappe_version(header: &str) -> Option<String> {
    let mut in_block = false;
    for line in header.lines() {
        let line = line.trim_start_matches('-').trim();
        if line.contains("begin frappe metadata") {
            in_block = true;
        } else if line.contains("end frappe metadata") {
            break;
        } else if in_block && let Some(v) = line.strip_prefix("version") {
            return Some(v.trim_start().trim_start_matches('=').trim().to_owned());
        }
    }
    None
}

/// `bench --site S restore FILE`: replaces the site's database (dropping and
/// recreating it with root credentials), optionally extracts file tars, never
/// migrates. A dump from a newer frappe needs `--force` (the downgrade
/// confirmation hits EOF otherwise).
pub fn restore(ctx: &Ctx, args: &[String]) -> Res<()> {
    let p = RESTORE.parse(args)?;
    let given = p.positional(0).unwrap_or_default().to_owned();
    let site = ctx.get_site()?;
    ctx.check_site(&site)?;
    let bench = &ctx.bench;
    let force = ctx.force || p.flag("--force");

    let Some(path) = find_file(ctx, &given) else {
        println!("Invalid path {given}");
        return Err(Fail(1));
    };
    let text = read_dump(&path)?;
    let header = dump_header_of(&text);
    if header.contains("Partial Backup") {
        println!("Partial Backup file detected. You cannot use a partial file to restore a Frappe site.");
        println!("Use `bench partial-restore` to restore a partial backup to an existing site.");
        return Err(Fail(1));
    }
    // `validate_database_sql`: an empty file, or one without Frappe's defaults table.
    if text.trim().is_empty() || !text.contains("`tabDefaultValue`") {
        if text.trim().is_empty() {
            println!("{} is an empty file!", path.display());
        } else {
            println!("Table `tabDefaultValue` not found in file.");
        }
        return Err(exception("restore", "frappe.exceptions.InvalidDatabaseFile"));
    }
    let current = bench.app_version("frappe");
    if let Some(backup_version) = backup_frappe_version(&header)
        && !force
        && parse_version(&backup_version).is_some()
        && version_newer(&backup_version, &current)
    {
        println!("Your site is currently on Frappe {current} and your backup is {backup_version}.");
        if !confirm("This is not recommended and may lead to unexpected behaviour. Do you want to continue anyway?")? {
            return Err(crate::out::aborted());
        }
    }

    let _lock = lock::acquire(bench, &site, "site_restore", Duration::from_secs(1))?;
    // _new_site(force=True) on the existing site config.
    let enable_scheduler = Db::scheduler_was_enabled(bench, &site);
    make_site_dirs(&bench.site_dir(&site))?;
    let Credentials { name: db_name, user: db_user, password: db_password } = Credentials::of(bench, &site);
    let root = root_connection(ctx, &site, p.value("--db-root-username"), p.value("--db-root-password"))?;
    // The user comes back with the login scope it had ('%' when it had none).
    let scope = root.user_hosts(&db_user)?.into_iter().next().unwrap_or_else(|| "%".to_owned());
    root.drop_site_database(&db_name, &db_user)?;
    root.create_site_database(&db_name, &db_user, &db_password, &scope)?;
    let db = Db::connect(bench, &site)?;
    db.load(&text)?;
    let mut apps = vec!["frappe".to_owned()];
    apps.extend(p.values("--install-app").iter().cloned());
    for app in &apps {
        match install_app(bench, &db, app, false, false) {
            Ok(_) => {}
            Err(InstallError::Failed(f)) => return Err(f),
            Err(e) => {
                let (_, tb) = e.exception();
                eprintln!("{tb}");
                return Err(Fail(1));
            }
        }
    }
    db.set_scheduler_enabled(enable_scheduler)?;
    println!("*** Scheduler is {} ***", if enable_scheduler { "enabled" } else { "disabled" });

    let mut with_files = false;
    for opt in ["--with-public-files", "--with-private-files"] {
        if let Some(tar) = p.value(opt) {
            extract_files(ctx, &site, tar)?;
            with_files = true;
        }
    }
    println!("Site {site} has been restored{}", if with_files { " with files" } else { "" });
    Ok(())
}

/// `frappe.installer.extract_files`: copy the tar into the site directory,
/// `tar xf NAME --strip-components 2` there, remove the copy.
fn extract_files(ctx: &Ctx, site: &str, tar: &str) -> Res<()> {
    let src = ctx.bench.resolve_in_sites(tar);
    let site_dir = ctx.bench.site_dir(site);
    let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let copy = site_dir.join(&name);
    std::fs::copy(&src, &copy).map_err(|e| {
        traceback(
            &[(
                "/usr/local/lib/python3.11/shutil.py",
                1,
                "copy2",
                "copyfile(src, dst, follow_symlinks=follow_symlinks)",
            )],
            &format!("FileNotFoundError: [Errno 2] No such file or directory: '{}' ({e})", src.display()),
        )
    })?;
    let flags = if name.ends_with(".tgz") {
        Some("zxf")
    } else if name.ends_with(".tar") {
        Some("xf")
    } else {
        None
    };
    let result = match flags {
        Some(flags) => Command::new("tar")
            .args([flags, &name, "--strip-components", "2"])
            .current_dir(&site_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| os_error("tar", &e))
            .and_then(|s| {
                if s.success() {
                    Ok(())
                } else {
                    Err(traceback(&[], &format!("subprocess.CalledProcessError: Command '['tar', '{flags}', '{name}', '--strip', '2']' returned non-zero exit status {}.", s.code().unwrap_or(1))))
                }
            }),
        None => Ok(()),
    };
    let _ = std::fs::remove_file(&copy);
    result
}

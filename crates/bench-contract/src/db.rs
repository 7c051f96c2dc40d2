//! The simulated MariaDB: one directory of JSON "tables" per database.
//!
//! In frappe_docker the database lives in another container with its own
//! volume; here it is `$BENCH_DB_ROOT/<db_name>/` (default `/home/frappe/db`),
//! mounted as a separate volume in the test compose file. Only the tables the
//! contract talks about exist:
//!
//! | file                          | frappe equivalent                                     |
//! |-------------------------------|-------------------------------------------------------|
//! | `installed_apps.json`         | `tabDefaultValue` `installed_apps` (list, install order) |
//! | `installed_applications.json` | single `Installed Applications` rows (`app_name`, `app_version`, `git_branch`) |
//! | `patch_log.json`              | `tabPatch Log` (`patch`, `skipped`)                   |
//! | `system_settings.json`        | `System Settings.enable_scheduler`                    |
//!
//! A missing directory is a missing database: commands that connect fail
//! with pymysql's `(1049, "Unknown database '…'")`, exactly like frappe does
//! against a dropped or never-created database.
//!
//! Optional: if `$BENCH_DB_ROOT/.bench-contract-root-password` exists, root
//! operations (new-site, restore, drop-site) must present that password or
//! fail with MariaDB's `(1045, "Access denied …")`; without the file any root
//! password is accepted.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::bench::Bench;
use crate::out::{Res, os_error, traceback, unknown_database};
use crate::util::write_atomic;

pub const INSTALLED_APPS: &str = "installed_apps";
pub const INSTALLED_APPLICATIONS: &str = "installed_applications";
pub const PATCH_LOG: &str = "patch_log";
pub const SYSTEM_SETTINGS: &str = "system_settings";

const ROOT_PASSWORD_FILE: &str = ".bench-contract-root-password";

/// One row of the `Installed Applications` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub app_name: String,
    pub app_version: String,
    pub git_branch: String,
}

#[derive(Debug, Clone)]
pub struct Db {
    pub name: String,
    dir: PathBuf,
}

impl Db {
    pub fn dir_for(bench: &Bench, name: &str) -> PathBuf {
        bench.db_root.join(name)
    }

    pub fn exists(bench: &Bench, name: &str) -> bool {
        !name.is_empty() && Db::dir_for(bench, name).is_dir()
    }

    /// `frappe.connect()` for a site: uses `db_name` from its config.
    pub fn connect(bench: &Bench, site: &str) -> Res<Db> {
        let name = bench.conf(site).get("db_name").and_then(Value::as_str).unwrap_or_default().to_owned();
        Db::open(bench, &name)
    }

    /// Like [`Db::connect`] but silent: `None` when the site has no database.
    pub fn try_connect(bench: &Bench, site: &str) -> Option<Db> {
        let name = bench.conf(site).get("db_name").and_then(Value::as_str).unwrap_or_default().to_owned();
        Db::exists(bench, &name).then(|| Db { dir: Db::dir_for(bench, &name), name })
    }

    pub fn open(bench: &Bench, name: &str) -> Res<Db> {
        if !Db::exists(bench, name) {
            return Err(unknown_database(name));
        }
        Ok(Db { name: name.to_owned(), dir: Db::dir_for(bench, name) })
    }

    /// `CREATE DATABASE`: an empty database with frappe's bootstrap tables.
    pub fn create(bench: &Bench, name: &str) -> Res<Db> {
        let dir = Db::dir_for(bench, name);
        std::fs::create_dir_all(&dir).map_err(|e| os_error(&dir.display().to_string(), &e))?;
        let db = Db { name: name.to_owned(), dir };
        db.write(INSTALLED_APPS, &json!([]))?;
        db.write(INSTALLED_APPLICATIONS, &json!([]))?;
        db.write(PATCH_LOG, &json!([]))?;
        db.write(SYSTEM_SETTINGS, &json!({"enable_scheduler": 0}))?;
        Ok(db)
    }

    /// `DROP DATABASE IF EXISTS`.
    pub fn drop_database(bench: &Bench, name: &str) -> Res<()> {
        let dir = Db::dir_for(bench, name);
        if name.is_empty() || !dir.is_dir() {
            return Ok(());
        }
        std::fs::remove_dir_all(&dir).map_err(|e| os_error(&dir.display().to_string(), &e))
    }

    /// Checks root credentials against the optional root-password file.
    pub fn root_login(bench: &Bench, user: &str, password: &str) -> Res<()> {
        let expected = std::fs::read_to_string(bench.db_root.join(ROOT_PASSWORD_FILE)).ok();
        match expected {
            Some(p) if p.trim_end_matches(['\n', '\r']) != password => Err(traceback(
                &[(
                    "/home/frappe/frappe-bench/apps/frappe/frappe/database/db_manager.py",
                    1,
                    "get_root_connection",
                    "",
                )],
                &format!(
                    "pymysql.err.OperationalError: (1045, \"Access denied for user '{user}'@'localhost' (using password: YES)\")"
                ),
            )),
            _ => Ok(()),
        }
    }

    fn read(&self, table: &str) -> Value {
        std::fs::read_to_string(self.dir.join(format!("{table}.json")))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    fn write(&self, table: &str, value: &Value) -> Res<()> {
        let path = self.dir.join(format!("{table}.json"));
        let text = serde_json::to_string_pretty(value).unwrap_or_default();
        write_atomic(&path, text.as_bytes()).map_err(|e| os_error(&path.display().to_string(), &e))
    }

    pub fn installed_apps(&self) -> Vec<String> {
        match self.read(INSTALLED_APPS) {
            Value::Array(items) => items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    }

    pub fn set_installed_apps(&self, apps: &[String]) -> Res<()> {
        self.write(INSTALLED_APPS, &json!(apps))
    }

    pub fn versions(&self) -> Vec<VersionRow> {
        let Value::Array(rows) = self.read(INSTALLED_APPLICATIONS) else { return Vec::new() };
        rows.iter()
            .map(|r| {
                let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                VersionRow {
                    app_name: field("app_name"),
                    app_version: field("app_version"),
                    git_branch: field("git_branch"),
                }
            })
            .collect()
    }

    pub fn set_versions(&self, rows: &[VersionRow]) -> Res<()> {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| json!({"app_name": r.app_name, "app_version": r.app_version, "git_branch": r.git_branch}))
            .collect();
        self.write(INSTALLED_APPLICATIONS, &Value::Array(rows))
    }

    /// Patches recorded as run (`skipped = 0`); skipped ones are retried by
    /// the next migrate, as in frappe.
    pub fn executed_patches(&self) -> HashSet<String> {
        let Value::Array(rows) = self.read(PATCH_LOG) else { return HashSet::new() };
        rows.iter()
            .filter(|r| r.get("skipped").and_then(Value::as_i64).unwrap_or(0) == 0)
            .filter_map(|r| r.get("patch").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }

    pub fn log_patch(&self, patch: &str, skipped: bool) -> Res<()> {
        let mut rows = match self.read(PATCH_LOG) {
            Value::Array(rows) => rows,
            _ => Vec::new(),
        };
        rows.push(json!({"patch": patch, "skipped": i32::from(skipped)}));
        self.write(PATCH_LOG, &Value::Array(rows))
    }

    pub fn scheduler_enabled(&self) -> bool {
        self.read(SYSTEM_SETTINGS).get("enable_scheduler").and_then(Value::as_i64).unwrap_or(0) != 0
    }

    pub fn set_scheduler_enabled(&self, enabled: bool) -> Res<()> {
        let mut settings = match self.read(SYSTEM_SETTINGS) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        settings.insert("enable_scheduler".to_owned(), json!(i32::from(enabled)));
        self.write(SYSTEM_SETTINGS, &Value::Object(settings))
    }

    /// Every table, for a dump.
    pub fn tables(&self) -> Map<String, Value> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).map(str::to_owned))
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.into_iter().map(|n| (n.clone(), self.read(&n))).collect()
    }

    /// Loads a dump's tables into this (freshly created) database.
    pub fn load(&self, tables: &Map<String, Value>) -> Res<()> {
        for (name, value) in tables {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                continue;
            }
            self.write(name, value)?;
        }
        Ok(())
    }
}

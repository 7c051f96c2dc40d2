//! Site databases in a real MariaDB server, reached with Debian's `mariadb` and `mariadb-dump`
//! clients (argv arrays, passwords in `MYSQL_PWD`, never in argv).
//!
//! Like Frappe, every site has its own database and user (frappe-contract §4–5): `db_name`,
//! `db_password` (and on v16 `db_user`) in its `site_config.json`, the server named by `db_host`
//! / `db_port` of `frappe.conf` (`FRAPPE_DB_HOST` / `FRAPPE_DB_PORT` override them, as in
//! Frappe). Only the tables the contract talks about exist, under Frappe's names:
//!
//! | table                       | holds                                                       |
//! |-----------------------------|-------------------------------------------------------------|
//! | `tabDefaultValue`           | `__global` default `installed_apps` (JSON list, install order) |
//! | `tabInstalled Application`  | child rows of the single `Installed Applications` (`app_name`, `app_version`, `git_branch`) |
//! | `tabPatch Log`              | `patch`, `skipped`                                          |
//! | `tabSingles`                | `System Settings.enable_scheduler`                          |
//! | `tabToDo`                   | ordinary business rows, for tests that write data and check it later |
//!
//! Errors read like pymysql's: the server's code and message (`(1049, "Unknown database
//! '…'")`, `(1045, "Access denied …")`), and a server that cannot be reached is `(2003, "Can't
//! connect to MySQL server on 'HOST' (…)")`, naming it.

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

use crate::bench::Bench;
use crate::out::{Fail, Res, os_error, traceback};

/// One row of the `Installed Applications` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub app_name: String,
    pub app_version: String,
    pub git_branch: String,
}

/// Where and as whom to connect.
#[derive(Clone)]
struct Conn {
    host: String,
    port: String,
    user: String,
    password: String,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{} (password ***)", self.user, self.host, self.port)
    }
}

impl Conn {
    /// `frappe.conf`'s database server for a site: env overrides, then the merged config.
    fn server(conf: &Map<String, Value>) -> (String, String) {
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let host = env("FRAPPE_DB_HOST").or_else(|| text(conf.get("db_host"))).unwrap_or_else(|| "127.0.0.1".into());
        let port = env("FRAPPE_DB_PORT").or_else(|| text(conf.get("db_port"))).unwrap_or_else(|| "3306".into());
        (host, port)
    }

    fn argv(&self, program: &str) -> Command {
        let mut cmd = Command::new(client(program));
        cmd.args(["--no-defaults", "--protocol=TCP", "-h", &self.host, "-P", &self.port])
            .args(["-u", &self.user])
            .env("MYSQL_PWD", &self.password);
        cmd
    }

    /// Runs SQL (on stdin) and returns the rows of its last result set, fields unescaped.
    fn query(&self, database: Option<&str>, sql: &str) -> Res<Rows> {
        self.try_query(database, sql).map_err(|e| e.raise())
    }

    fn try_query(&self, database: Option<&str>, sql: &str) -> Result<Rows, SqlError> {
        let mut cmd = self.argv("mariadb");
        cmd.args(["--connect-timeout=10", "--batch", "--skip-column-names", "--default-character-set=utf8mb4"]);
        if let Some(db) = database {
            cmd.arg(db);
        }
        let spawned = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
        let mut child = spawned.map_err(|e| SqlError::Client(format!("FileNotFoundError: {e}: mariadb")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A client that died at once (server unreachable) closes its stdin: its stderr says why.
            let _ = stdin.write_all(sql.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| SqlError::Client(format!("OSError: {e}: mariadb")))?;
        if !out.status.success() {
            return Err(self.error(&String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(|line| line.split('\t').map(unescape).collect()).collect())
    }

    /// A client's `ERROR 1049 (42000) at line 1: Unknown database '_x'` as pymysql reports it.
    fn error(&self, stderr: &str) -> SqlError {
        let line = stderr.lines().find(|l| l.starts_with("ERROR ")).unwrap_or(stderr.trim());
        let code: u32 =
            line.strip_prefix("ERROR ").and_then(|r| r.split(' ').next()).and_then(|c| c.parse().ok()).unwrap_or(2013);
        let message = line.split_once(": ").map_or(line, |(_, m)| m).trim();
        match code {
            2002 | 2003 | 2005 | 2006 | 2013 => SqlError::Server {
                class: "OperationalError",
                code: 2003,
                message: format!("Can't connect to MySQL server on '{}' ({message})", self.host),
            },
            1044 | 1045 | 1049 | 1205 | 1213 | 1290 | 1021 | 1114 => {
                SqlError::Server { class: "OperationalError", code, message: message.to_owned() }
            }
            _ => SqlError::Server { class: "ProgrammingError", code, message: message.to_owned() },
        }
    }
}

type Rows = Vec<Vec<Option<String>>>;

/// What a query failed with, before it is reported.
#[derive(Debug)]
enum SqlError {
    /// The server's (or the client library's) error, as pymysql names it.
    Server { class: &'static str, code: u32, message: String },
    /// The client could not run at all.
    Client(String),
}

impl SqlError {
    /// Prints the traceback frappe would die with; exit 1.
    fn raise(&self) -> Fail {
        let exception = match self {
            SqlError::Server { class, code, message } => {
                format!("pymysql.err.{class}: ({code}, \"{}\")", message.replace('"', "\\\""))
            }
            SqlError::Client(text) => text.clone(),
        };
        traceback(
            &[
                (
                    "/home/frappe/frappe-bench/apps/frappe/frappe/database/database.py",
                    1,
                    "connect",
                    "self._conn = self.get_connection()",
                ),
                (
                    "/home/frappe/frappe-bench/env/lib/python3.11/site-packages/pymysql/connections.py",
                    775,
                    "_read_packet",
                    "packet.raise_for_error()",
                ),
            ],
            &exception,
        )
    }
}

/// Where the fixture's own database client is. Frappe talks to MariaDB through pymysql, inside
/// Python, whether or not the image has the `mariadb-client` package; the fixture image keeps
/// a private copy of the client under [`PRIVATE_CLIENTS`] to stand in for that, so that a test
/// can take `/usr/bin/mariadb` away without breaking `bench`. Elsewhere (the host's contract
/// tests), the clients on PATH.
fn client(program: &str) -> std::path::PathBuf {
    let private = std::path::Path::new(PRIVATE_CLIENTS).join(program);
    if private.is_file() { private } else { std::path::PathBuf::from(program) }
}

const PRIVATE_CLIENTS: &str = "/usr/lib/bench-contract/bin";

/// `--batch` output escapes tab, newline, backslash and NUL; NULL is the word.
fn unescape(field: &str) -> Option<String> {
    if field == "NULL" {
        return None;
    }
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Some(out)
}

/// A SQL string literal (a quote doubled, which holds under `NO_BACKSLASH_ESCAPES` too).
pub fn lit(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A SQL identifier.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// The tables a new site's database starts with.
const BOOTSTRAP: &str = "
CREATE TABLE `tabDefaultValue` (name varchar(140) NOT NULL PRIMARY KEY, creation datetime(6), parent varchar(140),
  defkey varchar(140), defvalue longtext, KEY parent (parent), KEY defaultvalue_parent_defkey_index (parent, defkey))
  ENGINE=InnoDB ROW_FORMAT=DYNAMIC CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `tabInstalled Application` (name varchar(140) NOT NULL PRIMARY KEY, creation datetime(6),
  parent varchar(140), parentfield varchar(140), parenttype varchar(140), idx int NOT NULL DEFAULT 0,
  app_name varchar(140), app_version varchar(140), git_branch varchar(140), KEY parent (parent))
  ENGINE=InnoDB ROW_FORMAT=DYNAMIC CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `tabPatch Log` (name varchar(140) NOT NULL PRIMARY KEY, creation datetime(6), patch longtext,
  skipped int(1) NOT NULL DEFAULT 0, traceback longtext)
  ENGINE=InnoDB ROW_FORMAT=DYNAMIC CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `tabSingles` (doctype varchar(140), field varchar(140), value longtext,
  KEY singles_doctype_field_index (doctype, field))
  ENGINE=InnoDB ROW_FORMAT=DYNAMIC CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE `tabToDo` (name varchar(140) NOT NULL PRIMARY KEY, creation datetime(6), modified datetime(6),
  owner varchar(140), status varchar(140) DEFAULT 'Open', description longtext)
  ENGINE=InnoDB ROW_FORMAT=DYNAMIC CHARACTER SET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO `tabDefaultValue` (name, creation, parent, defkey, defvalue)
  VALUES (LEFT(MD5(UUID()), 10), NOW(6), '__global', 'installed_apps', '[]');
INSERT INTO `tabSingles` (doctype, field, value) VALUES ('System Settings', 'enable_scheduler', '0');
";

/// A site's database and the user it connects as, from `frappe.conf`: `db_name`, `db_user`
/// (v16; v15 names the user after the database) and `db_password`. No `Debug`: it holds the
/// password.
pub struct Credentials {
    pub name: String,
    pub user: String,
    pub password: String,
}

impl Credentials {
    pub fn of(bench: &Bench, site: &str) -> Credentials {
        Credentials::from_conf(&bench.conf(site))
    }

    fn from_conf(conf: &Map<String, Value>) -> Credentials {
        let field = |k: &str| conf.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let name = field("db_name");
        let user = Some(field("db_user")).filter(|u| !u.is_empty()).unwrap_or_else(|| name.clone());
        Credentials { user, password: field("db_password"), name }
    }
}

/// A site's database, connected as the site's own user.
#[derive(Debug, Clone)]
pub struct Db {
    pub name: String,
    conn: Conn,
}

impl Db {
    /// The connection settings of a site, without connecting.
    fn for_site(bench: &Bench, site: &str) -> Db {
        let conf = bench.conf(site);
        let Credentials { name, user, password } = Credentials::from_conf(&conf);
        let (host, port) = Conn::server(&conf);
        Db { conn: Conn { host, port, user, password }, name }
    }

    /// `frappe.connect()` for a site: `db_name`, its user and password from the config, the
    /// server from `frappe.conf`. Fails the way the first query would.
    pub fn connect(bench: &Bench, site: &str) -> Res<Db> {
        let db = Db::for_site(bench, site);
        db.conn.query(Some(&db.name), "SELECT 1")?;
        Ok(db)
    }

    /// Like [`Db::connect`] but silent: `None` when the site's database cannot be reached.
    pub fn try_connect(bench: &Bench, site: &str) -> Option<Db> {
        let db = Db::for_site(bench, site);
        db.conn.try_query(Some(&db.name), "SELECT 1").ok().map(|_| db)
    }

    /// The database user the site connects as.
    pub fn user(&self) -> &str {
        &self.conn.user
    }

    fn query(&self, sql: &str) -> Res<Rows> {
        self.conn.query(Some(&self.name), sql)
    }

    /// The first column of every row.
    fn column(&self, sql: &str) -> Res<Vec<String>> {
        Ok(self.query(sql)?.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect())
    }

    /// `frappe.get_installed_apps()`: the `__global` default, in install order.
    pub fn installed_apps(&self) -> Res<Vec<String>> {
        let value = self.column(
            "SELECT defvalue FROM `tabDefaultValue` WHERE parent = '__global' AND defkey = 'installed_apps' LIMIT 1",
        )?;
        let list: Value = value.first().and_then(|v| serde_json::from_str(v).ok()).unwrap_or(Value::Null);
        Ok(match list {
            Value::Array(items) => items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        })
    }

    pub fn set_installed_apps(&self, apps: &[String]) -> Res<()> {
        let list = serde_json::to_string(apps).unwrap_or_else(|_| "[]".into());
        self.query(&format!(
            "START TRANSACTION;
             DELETE FROM `tabDefaultValue` WHERE parent = '__global' AND defkey = 'installed_apps';
             INSERT INTO `tabDefaultValue` (name, creation, parent, defkey, defvalue)
               VALUES (LEFT(MD5(UUID()), 10), NOW(6), '__global', 'installed_apps', {});
             COMMIT;",
            lit(&list)
        ))
        .map(drop)
    }

    pub fn versions(&self) -> Res<Vec<VersionRow>> {
        let rows = self.query(
            "SELECT app_name, app_version, git_branch FROM `tabInstalled Application`
             WHERE parent = 'Installed Applications' ORDER BY idx",
        )?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                VersionRow { app_name: field(0), app_version: field(1), git_branch: field(2) }
            })
            .collect())
    }

    pub fn set_versions(&self, rows: &[VersionRow]) -> Res<()> {
        let mut sql = String::from(
            "START TRANSACTION; DELETE FROM `tabInstalled Application` WHERE parent = 'Installed Applications';\n",
        );
        for (i, r) in rows.iter().enumerate() {
            sql.push_str(&format!(
                "INSERT INTO `tabInstalled Application` (name, creation, parent, parentfield, parenttype, idx, app_name, app_version, git_branch)
                 VALUES (LEFT(MD5(UUID()), 10), NOW(6), 'Installed Applications', 'installed_applications', 'Installed Applications', {}, {}, {}, {});\n",
                i + 1,
                lit(&r.app_name),
                lit(&r.app_version),
                lit(&r.git_branch)
            ));
        }
        sql.push_str("COMMIT;");
        self.query(&sql).map(drop)
    }

    /// Patches recorded as run (`skipped = 0`); skipped ones are retried by the next migrate,
    /// as in Frappe.
    pub fn executed_patches(&self) -> Res<HashSet<String>> {
        Ok(self.column("SELECT patch FROM `tabPatch Log` WHERE skipped = 0")?.into_iter().collect())
    }

    pub fn log_patch(&self, patch: &str, skipped: bool) -> Res<()> {
        self.query(&format!(
            "INSERT INTO `tabPatch Log` (name, creation, patch, skipped) VALUES (LEFT(MD5(UUID()), 10), NOW(6), {}, {})",
            lit(patch),
            i32::from(skipped)
        ))
        .map(drop)
    }

    pub fn scheduler_enabled(&self) -> Res<bool> {
        self.read_scheduler_enabled().map_err(|e| e.raise())
    }

    /// `_is_scheduler_enabled` before a database is replaced: false when it cannot be read.
    pub fn scheduler_was_enabled(bench: &Bench, site: &str) -> bool {
        let db = Db::for_site(bench, site);
        db.read_scheduler_enabled().unwrap_or(false)
    }

    fn read_scheduler_enabled(&self) -> Result<bool, SqlError> {
        let rows = self.conn.try_query(
            Some(&self.name),
            "SELECT value FROM `tabSingles` WHERE doctype = 'System Settings' AND field = 'enable_scheduler' LIMIT 1",
        )?;
        let value = rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()).unwrap_or_default();
        Ok(value.trim() != "0" && !value.trim().is_empty())
    }

    pub fn set_scheduler_enabled(&self, enabled: bool) -> Res<()> {
        self.query(&format!(
            "START TRANSACTION;
             DELETE FROM `tabSingles` WHERE doctype = 'System Settings' AND field = 'enable_scheduler';
             INSERT INTO `tabSingles` (doctype, field, value) VALUES ('System Settings', 'enable_scheduler', '{}');
             COMMIT;",
            i32::from(enabled)
        ))
        .map(drop)
    }

    /// `mariadb-dump` of the whole database, gzip'd and appended to `out` (Frappe writes its
    /// metadata header as a first gzip member, then appends the dump as a second).
    pub fn dump_gzip(&self, out: std::fs::File) -> Res<()> {
        let mut dump = self
            .conn
            .argv("mariadb-dump")
            .args(["--single-transaction", "--quick", "--skip-lock-tables", "--default-character-set=utf8mb4"])
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| os_error("mariadb-dump", &e))?;
        let Some(dump_out) = dump.stdout.take() else {
            return Err(os_error("mariadb-dump", &std::io::Error::other("no stdout")));
        };
        let gzip = Command::new("gzip")
            .arg("-c")
            .stdin(dump_out)
            .stdout(out)
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| os_error("gzip", &e))?;
        let dumped = dump.wait_with_output().map_err(|e| os_error("mariadb-dump", &e))?;
        // gzip first: when it fails (a full disk), the dump only sees its pipe close.
        if !gzip.success() {
            return Err(crate::out::command_failed("gzip -c", gzip));
        }
        if !dumped.status.success() {
            let stderr = String::from_utf8_lossy(&dumped.stderr);
            // mariadb-dump: `Got error: 2005: "Unknown server host 'db' (-2)" when trying to connect`
            let code = stderr.split("error: ").nth(1).and_then(|r| r.split(':').next()).unwrap_or("2013");
            let message = stderr.split('"').nth(1).unwrap_or(stderr.trim());
            return Err(self.conn.error(&format!("ERROR {code} (HY000): {message}")).raise());
        }
        Ok(())
    }

    /// Loads SQL text (a dump) into this database with the `mariadb` client.
    pub fn load(&self, sql: &str) -> Res<()> {
        self.query(sql).map(drop)
    }
}

/// A root connection (`get_root_connection`): creates and drops site databases and users.
#[derive(Debug, Clone)]
pub struct Root {
    conn: Conn,
}

impl Root {
    /// Logs in as `user` on the site's database server; a wrong password is MariaDB's 1045.
    pub fn login(bench: &Bench, site: &str, user: &str, password: &str) -> Res<Root> {
        let (host, port) = Conn::server(&bench.conf(site));
        let root = Root { conn: Conn { host, port, user: user.to_owned(), password: password.to_owned() } };
        root.conn.query(None, "SELECT 1")?;
        Ok(root)
    }

    pub fn database_exists(&self, name: &str) -> Res<bool> {
        let rows = self.conn.query(
            None,
            &format!("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}", lit(name)),
        )?;
        Ok(!rows.is_empty())
    }

    /// The host this client connects from, as the server sees it (`DbManager.get_current_host`).
    pub fn current_host(&self) -> Res<String> {
        let rows = self.conn.query(None, "SELECT SUBSTRING_INDEX(USER(), '@', -1)")?;
        Ok(rows.into_iter().next().and_then(|r| r.into_iter().next().flatten()).unwrap_or_else(|| "localhost".into()))
    }

    /// The hosts `user` may log in from.
    pub fn user_hosts(&self, user: &str) -> Res<Vec<String>> {
        let rows = self.conn.query(None, &format!("SELECT Host FROM mysql.user WHERE User = {}", lit(user)))?;
        Ok(rows.into_iter().filter_map(|r| r.into_iter().next().flatten()).collect())
    }

    /// `setup_database`: the user (scoped to `host`), the database, all privileges on it, and
    /// the bootstrap tables.
    pub fn create_site_database(&self, name: &str, user: &str, password: &str, host: &str) -> Res<()> {
        let account = format!("{}@{}", lit(user), lit(host));
        self.conn.query(
            None,
            &format!(
                "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY {pw};
                 ALTER USER {account} IDENTIFIED BY {pw};
                 CREATE DATABASE {db} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
                 GRANT ALL PRIVILEGES ON {db}.* TO {account};
                 FLUSH PRIVILEGES;
                 USE {db};
                 {BOOTSTRAP}",
                pw = lit(password),
                db = ident(name),
            ),
        )?;
        Ok(())
    }

    /// `DROP DATABASE IF EXISTS` and the site's user, wherever it may log in from.
    pub fn drop_site_database(&self, name: &str, user: &str) -> Res<()> {
        let mut sql = format!("DROP DATABASE IF EXISTS {};\n", ident(name));
        if !user.is_empty() {
            for host in self.user_hosts(user)? {
                sql.push_str(&format!("DROP USER IF EXISTS {}@{};\n", lit(user), lit(&host)));
            }
        }
        sql.push_str("FLUSH PRIVILEGES;");
        self.conn.query(None, &sql).map(drop)
    }
}

//! The `bench` commands benchform runs to observe sites, and how their output is read
//! (frappe-contract §4). Pure: argv in, text out are handled by the sites adapter.
//!
//! Observation costs a constant number of execs whatever the number of sites — every `bench`
//! call costs seconds of Python start-up on real Frappe:
//! 1. `find sites … -exec wc -c {} ; -exec cat {} ;` — which sites exist, their benchform
//!    records and flags, and where each site's database is (`db_name`, its user and password, the
//!    server from the site's or the common config). Passwords are kept only to read the
//!    database in exec 2, never shown;
//! 2. one exec of the image's `mariadb` client, once per site inside it, each with the site's own
//!    credentials (passed on the exec's standard input, never in argv): the `__global` default
//!    `installed_apps`, the set `frappe.get_installed_apps()` returns (frappe-contract §5). No
//!    root password, no `bench` process. frappe_docker's images carry `mariadb-client`.
//!
//! Where the image has no database client, or with `--refresh full`, each site is read with
//! `bench --site S execute frappe.get_installed_apps` instead: one exec per site.

use std::collections::BTreeMap;

use crate::record::SiteRecord;

/// argv of exec 1: every folder directly under `sites/` (`-print`), and for each
/// `sites/<site>/site_config.json` and for `sites/common_site_config.json` its size (`wc -c`)
/// then its bytes (`cat`). The size frames the content, so nothing a file holds can pass for
/// another site's header.
pub fn find_site_configs_argv() -> Vec<String> {
    configs_argv("*", false)
}

/// argv of exec 1 for one site: the same output as [`find_site_configs_argv`] restricted to
/// `site` (its folder, its config) and the common config. Every other site's folder is pruned,
/// not read, so the cost does not grow with the number of sites. `None` for a name `find` would
/// take for a pattern (site names from the manifest never are: they are validated host names).
pub fn find_site_config_argv(site: &str) -> Option<Vec<String>> {
    if site.is_empty() || site.contains(['*', '?', '[', ']', '\\', '/']) || site.starts_with('.') {
        return None;
    }
    Some(configs_argv(site, true))
}

/// Exec 1's argv for the site folders `sites/<pattern>`; with `prune_others`, every other folder
/// under `sites/` is pruned (not descended into).
fn configs_argv(pattern: &str, prune_others: bool) -> Vec<String> {
    let folder = format!("sites/{pattern}");
    let config = format!("{folder}/site_config.json");
    let mut argv = vec!["find", "sites", "-mindepth", "1", "-maxdepth", "2"];
    if prune_others {
        argv.extend(["(", "-type", "d", "-path", "sites/*", "!", "-path", &folder, "-prune", ")", "-o"]);
    }
    argv.extend([
        "(",
        "(",
        "-path",
        &config,
        "-o",
        "-path",
        "sites/common_site_config.json",
        ")",
        "-exec",
        "wc",
        "-c",
        "{}",
        ";",
        "-exec",
        "cat",
        "{}",
        ";",
        ")",
        "-o",
        "(",
        "-type",
        "d",
        "-path",
        &folder,
        "!",
        "-path",
        "sites/*/*",
        "-print",
        ")",
    ]);
    argv.into_iter().map(str::to_string).collect()
}

/// Where one site's database is, and as whom to read it. The password is only ever handed to
/// the exec's environment; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SiteDb {
    pub name: String,
    pub user: String,
    pub password: String,
    pub host: String,
    pub port: String,
}

impl std::fmt::Debug for SiteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteDb")
            .field("name", &self.name)
            .field("user", &self.user)
            .field("password", &"***")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

/// The script of exec 2, constant: the query comes first, then for each group of four arguments
/// (host, port, user, database) the `mariadb` client runs it on that site's database with the
/// password read from the next line of standard input — never argv (the engine's events record
/// it) nor the exec's environment (the engine client logs request bodies at debug level).
/// `FRAPPE_DB_HOST` / `FRAPPE_DB_PORT` in the container win over the configs, as in Frappe. Each
/// site's answer is framed by `\x1e<n>` and `\x1erc <code>`. One line, so that the engine's events
/// show it whole.
const READ_DB_SCRIPT: &str = concat!(
    "q=$1; shift; n=0; while [ \"$#\" -ge 4 ]; do n=$((n + 1)); IFS= read -r pw; printf '\\036%s\\n' \"$n\"; ",
    "MYSQL_PWD=$pw mariadb --no-defaults --protocol=TCP --connect-timeout=5 ",
    "-h \"${FRAPPE_DB_HOST:-$1}\" -P \"${FRAPPE_DB_PORT:-$2}\" -u \"$3\" --batch --skip-column-names ",
    "-e \"$q\" \"$4\" </dev/null 2>&1; printf '\\036rc %s\\n' \"$?\"; shift 4; done"
);

/// What exec 2 asks each site's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbQuery {
    /// The `__global` default `installed_apps`: what `frappe.get_installed_apps()` returns.
    InstalledApps,
    /// The patches that ran (`Patch Log` rows with `skipped = 0`), for the migrate preview.
    PatchLog,
}

impl DbQuery {
    fn sql(self) -> &'static str {
        match self {
            DbQuery::InstalledApps => {
                "SELECT defvalue FROM tabDefaultValue WHERE parent = '__global' AND defkey = 'installed_apps'"
            }
            DbQuery::PatchLog => "SELECT patch FROM `tabPatch Log` WHERE skipped = 0",
        }
    }

    fn what(self) -> &'static str {
        match self {
            DbQuery::InstalledApps => "mariadb (installed apps of every site)",
            DbQuery::PatchLog => "mariadb (the Patch Log of every site)",
        }
    }
}

/// What stands between a site's config and exec 2's argv: a value that is not a plain database
/// identifier, host or port is refused, never quoted (it could otherwise pass for an option).
pub fn db_argv_problem(db: &SiteDb) -> Option<String> {
    let ident = |s: &str| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let host = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && !s.starts_with('-')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    };
    let port = |s: &str| !s.is_empty() && s.len() <= 5 && s.chars().all(|c| c.is_ascii_digit());
    if db.password.contains(['\n', '\r']) {
        Some("its db_password holds a line break".to_string())
    } else if !ident(&db.name) {
        Some("its db_name is not a plain database name ([A-Za-z0-9_], at most 64)".to_string())
    } else if !ident(&db.user) {
        Some("its db_user is not a plain user name ([A-Za-z0-9_], at most 64)".to_string())
    } else if !host(&db.host) {
        Some("its db_host is not a host name or address".to_string())
    } else if !port(&db.port) {
        Some("its db_port is not a port number".to_string())
    } else {
        None
    }
}

/// argv and standard input (one password per line) of exec 2 asking `query` of `dbs`, each of
/// which passed [`db_argv_problem`].
pub fn db_query_exec(query: DbQuery, dbs: &[&SiteDb]) -> (Vec<String>, String) {
    let mut argv: Vec<String> = ["sh", "-c", READ_DB_SCRIPT, "sh", query.sql()].map(String::from).to_vec();
    let mut stdin = String::new();
    for db in dbs {
        argv.extend([db.host.clone(), db.port.clone(), db.user.clone(), db.name.clone()]);
        stdin.push_str(&db.password);
        stdin.push('\n');
    }
    (argv, stdin)
}

/// One site's answer in exec 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbApps {
    Installed(Vec<String>),
    /// The client ran and failed: the server's words (`ERROR 1049 (42000): Unknown database …`).
    Failed(String),
    /// The image has no `mariadb` client (exit 127).
    NoClient,
}

/// One site's raw answer: the client's exit code and its output lines.
struct Frame<'a> {
    code: &'a str,
    lines: Vec<&'a str>,
}

/// Split exec 2's output into one frame per database, in the order they were given.
fn frames<'a>(stdout: &'a str, count: usize, query: DbQuery) -> Result<Vec<Frame<'a>>, OutputError> {
    let err = |detail: String| OutputError { command: query.what().to_string(), detail };
    let mut out = Vec::new();
    let mut body: Option<Vec<&str>> = None;
    for line in stdout.lines() {
        if let Some(code) = line.strip_prefix("\u{1e}rc ") {
            let lines = body.take().ok_or_else(|| err("an answer without a site".to_string()))?;
            out.push(Frame { code: code.trim(), lines });
        } else if let Some(n) = line.strip_prefix('\u{1e}') {
            // Frames come in order; a number out of place is a forged or torn answer.
            if n.trim() != (out.len() + 1).to_string() || body.is_some() {
                return Err(err(format!("answer {} out of order", n.trim())));
            }
            body = Some(Vec::new());
        } else if let Some(b) = body.as_mut() {
            b.push(line);
        }
    }
    if out.len() != count {
        return Err(err(format!("{} answers for {count} sites", out.len())));
    }
    Ok(out)
}

/// The client's last words when it failed.
fn failure(lines: &[&str]) -> String {
    lines.iter().rev().find(|l| !l.trim().is_empty()).unwrap_or(&"").trim().to_string()
}

/// Read exec 2's installed-apps output: one answer per database, in the order they were given.
/// One site's odd answer (a warning, a value that is not a list) is that site's failure, never
/// the others'.
pub fn parse_read_apps(stdout: &str, count: usize) -> Result<Vec<DbApps>, OutputError> {
    Ok(frames(stdout, count, DbQuery::InstalledApps)?
        .into_iter()
        .map(|Frame { code, lines }| match code {
            "0" => match lines.iter().find(|l| l.trim_start().starts_with('[')) {
                // `--batch` escapes a backslash as two.
                Some(value) => match serde_json::from_str::<Vec<String>>(&value.trim().replace("\\\\", "\\")) {
                    Ok(apps) => DbApps::Installed(apps),
                    Err(e) => DbApps::Failed(format!("installed_apps is not a JSON list of names: {e}")),
                },
                // No row: Frappe's `get_global` gives None, `get_installed_apps` an empty list.
                None if lines.iter().all(|l| l.trim().is_empty()) => DbApps::Installed(Vec::new()),
                None => DbApps::Failed(format!("installed_apps is not a JSON list of names: {}", lines.join(" "))),
            },
            "127" => DbApps::NoClient,
            _ => DbApps::Failed(failure(&lines)),
        })
        .collect())
}

/// Read exec 2's Patch Log output: per database the patches that ran, or why they could not be
/// read (`Err`). A client the image lacks says so.
pub fn parse_patch_logs(
    stdout: &str,
    count: usize,
) -> Result<Vec<Result<std::collections::BTreeSet<String>, String>>, OutputError> {
    Ok(frames(stdout, count, DbQuery::PatchLog)?
        .into_iter()
        .map(|Frame { code, lines }| match code {
            "0" => Ok(lines.iter().filter(|l| !l.is_empty()).map(|l| unescape_batch(l)).collect()),
            "127" => Err("the image has no `mariadb` client".to_string()),
            _ => Err(failure(&lines)),
        })
        .collect())
}

/// A value as `mariadb --batch` printed it: `\\`, `\t`, `\n` and `\0` escaped.
fn unescape_batch(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
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
    out
}

/// argv of the authoritative read for one site.
pub fn installed_apps_argv(site: &str) -> Vec<String> {
    ["bench", "--site", site, "execute", "frappe.get_installed_apps"].iter().map(|s| s.to_string()).collect()
}

/// What benchform keeps of one `site_config.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteConfigSummary {
    pub site: String,
    pub record: Option<SiteRecord>,
    pub maintenance_mode: bool,
    pub scheduler_paused: bool,
    /// benchform took the site out of service and has not put it back (its `benchform_maintenance`
    /// key): maintenance set by anyone else is not benchform's to lift.
    pub maintenance_held: bool,
    /// The mark says the scheduler was paused before benchform took the site out of service.
    pub scheduler_paused_before: bool,
    /// What is wrong with it, as observed: no `site_config.json`, or one that is not a JSON
    /// object (the site is broken; say so, do not guess).
    pub damaged: Option<String>,
    /// Where its database is (`None` for a damaged site or one without `db_name`).
    pub db: Option<SiteDb>,
    /// Its database is not one the `mariadb` client reads over TCP (`db_type` other than
    /// mariadb, or a `db_socket`): read it through bench.
    pub read_with_bench: bool,
}

/// Why a bench output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the output of `{command}`: {detail}")]
pub struct OutputError {
    pub command: String,
    pub detail: String,
}

/// Folders under `sites/` that are never sites.
const NOT_SITES: &[&str] = &["assets"];

/// Read exec 1's output: folder lines (`sites/<name>`) and, per `site_config.json`, a `wc -c`
/// line (`<size> sites/<site>/site_config.json`) followed by exactly that many bytes. Only the
/// record and two flags are kept; secrets are dropped here. A folder without `site_config.json`
/// is a damaged site (a failed `new-site`, a deleted file), never a missing one.
pub fn parse_site_configs(stdout: &[u8]) -> Result<Vec<SiteConfigSummary>, OutputError> {
    let err = |detail: String| OutputError { command: find_site_configs_argv().join(" "), detail };
    let mut configs: BTreeMap<String, SiteConfigSummary> = BTreeMap::new();
    let mut folders: Vec<String> = Vec::new();
    let mut common = serde_json::Value::Null;
    // Per site: its own db_host / db_port, resolved against the common config at the end.
    let mut own_server: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut rest = stdout;
    while !rest.is_empty() {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = rest.get(end + 1..).unwrap_or_default();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("sites/").filter(|n| !n.contains('/')) {
            folders.push(name.to_string());
            continue;
        }
        if let Some(size) =
            line.strip_suffix(" sites/common_site_config.json").and_then(|size| size.parse::<usize>().ok())
        {
            if rest.len() < size {
                return Err(err("sites/common_site_config.json changed while it was read; run again".to_string()));
            }
            let (content, after) = rest.split_at(size);
            rest = after;
            common = serde_json::from_slice(content).unwrap_or(serde_json::Value::Null);
            continue;
        }
        let header = line.split_once(' ').and_then(|(size, path)| {
            let site = path.strip_prefix("sites/")?.strip_suffix("/site_config.json")?;
            Some((size.parse::<usize>().ok()?, site.to_string())).filter(|(_, s)| !s.contains('/') && !s.is_empty())
        });
        let Some((size, site)) = header else {
            return Err(err(format!("unexpected line {:?}", line.chars().take(120).collect::<String>())));
        };
        if rest.len() < size {
            return Err(err(format!("sites/{site}/site_config.json changed while it was read; run again")));
        }
        let (content, after) = rest.split_at(size);
        rest = after;
        let value = serde_json::from_slice::<serde_json::Value>(content).ok().filter(serde_json::Value::is_object);
        let damaged = value.is_none().then(|| format!("sites/{site}/site_config.json is not a JSON object"));
        let field = |k: &str| value.as_ref().and_then(|v| v.get(k)).and_then(config_text);
        let db = field("db_name").map(|name| SiteDb {
            user: field("db_user").unwrap_or_else(|| name.clone()),
            password: field("db_password").unwrap_or_default(),
            host: String::new(),
            port: String::new(),
            name,
        });
        own_server.insert(site.clone(), (field("db_host"), field("db_port")));
        let read_with_bench = field("db_type").is_some_and(|t| t != "mariadb") || field("db_socket").is_some();
        let mark = value.as_ref().and_then(|v| v.get(crate::record::MAINTENANCE_KEY));
        configs.insert(
            site.clone(),
            SiteConfigSummary {
                record: value.as_ref().and_then(SiteRecord::from_site_config),
                maintenance_mode: value.as_ref().and_then(|v| v.get("maintenance_mode")).is_some_and(truthy),
                scheduler_paused: value.as_ref().and_then(|v| v.get("pause_scheduler")).is_some_and(truthy),
                maintenance_held: mark.is_some_and(|v| !v.is_null()),
                scheduler_paused_before: mark
                    .and_then(|m| m.get(crate::record::MARK_SCHEDULER))
                    .is_some_and(|s| s == crate::record::MARK_PAUSED_BEFORE),
                damaged,
                db,
                read_with_bench,
                site,
            },
        );
    }
    // frappe.conf: the site's own db_host / db_port over the common config's, then Frappe's
    // defaults.
    let common_field = |k: &str| common.get(k).and_then(config_text);
    for (site, config) in configs.iter_mut() {
        let (host, port) = own_server.remove(site).unwrap_or_default();
        if let Some(db) = config.db.as_mut() {
            db.host = host.or_else(|| common_field("db_host")).unwrap_or_else(|| "127.0.0.1".to_string());
            db.port = port.or_else(|| common_field("db_port")).unwrap_or_else(|| "3306".to_string());
        }
    }
    for name in folders {
        if configs.contains_key(&name) || name.starts_with('.') || NOT_SITES.contains(&name.as_str()) {
            continue;
        }
        configs.insert(
            name.clone(),
            SiteConfigSummary {
                damaged: Some(format!("sites/{name} has no site_config.json")),
                site: name,
                record: None,
                maintenance_mode: false,
                scheduler_paused: false,
                maintenance_held: false,
                scheduler_paused_before: false,
                db: None,
                read_with_bench: false,
            },
        );
    }
    Ok(configs.into_values().collect())
}

/// A config value as text: strings as they are, numbers written out (`db_port: 3306`).
fn config_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
        serde_json::Value::String(s) => !s.is_empty() && s != "0",
        _ => false,
    }
}

/// Read `bench --site S execute frappe.get_installed_apps`: one line of `json.dumps`.
pub fn parse_installed_apps(site: &str, stdout: &str) -> Result<Vec<String>, OutputError> {
    let line = stdout.lines().rev().find(|l| l.trim_start().starts_with('[')).ok_or_else(|| OutputError {
        command: installed_apps_argv(site).join(" "),
        detail: "no JSON list in the output".to_string(),
    })?;
    serde_json::from_str(line.trim())
        .map_err(|e| OutputError { command: installed_apps_argv(site).join(" "), detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(files: &[(&str, &str)], folders: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in folders {
            out.extend(format!("sites/{f}\n").bytes());
        }
        for (site, content) in files {
            out.extend(format!("{} sites/{site}/site_config.json\n", content.len()).bytes());
            out.extend(content.bytes());
        }
        out
    }

    #[test]
    fn site_configs_keep_the_record_and_drop_secrets() {
        let out = framed(
            &[
                (
                    "a.localhost",
                    "{\n \"db_name\": \"_1\",\n \"db_password\": \"hunter2\",\n \"maintenance_mode\": 1\n}\n",
                ),
                (
                    "b.localhost",
                    "{\"db_password\": \"x\", \"benchform\": {\"version\": 1, \"project\": \"p\", \"fingerprint\": \"f\", \"commits\": {}, \"image\": \"i\", \"migrated_at\": \"t\"}, \"pause_scheduler\": true}",
                ),
                ("broken", "{not json\n"),
            ],
            &["a.localhost", "assets", "b.localhost", "broken", "half.localhost", ".build"],
        );
        let sites = parse_site_configs(&out).unwrap();
        assert_eq!(
            sites.iter().map(|s| s.site.as_str()).collect::<Vec<_>>(),
            ["a.localhost", "b.localhost", "broken", "half.localhost"]
        );
        assert!(sites[0].maintenance_mode && !sites[0].scheduler_paused && sites[0].record.is_none());
        assert_eq!(sites[1].record.as_ref().map(|r| r.fingerprint.as_str()), Some("f"));
        assert!(sites[1].scheduler_paused);
        assert_eq!(sites[2].damaged.as_deref(), Some("sites/broken/site_config.json is not a JSON object"));
        assert_eq!(sites[3].damaged.as_deref(), Some("sites/half.localhost has no site_config.json"));
        assert!(!format!("{sites:?}").contains("hunter2"));
    }

    /// A file's content that looks like the next file's header is content, not a site.
    #[test]
    fn content_cannot_forge_a_site() {
        let forged = "{\"note\": \"see\\n12 sites/phantom/site_config.json\\n\", \"x\": \"sites/ghost\"}";
        let broken = "not json\nsites/ghost\n2 sites/ghost2/site_config.json\n{}";
        let out = framed(&[("a.localhost", forged), ("b.localhost", broken)], &["a.localhost", "b.localhost"]);
        let sites = parse_site_configs(&out).unwrap();
        assert_eq!(sites.iter().map(|s| s.site.as_str()).collect::<Vec<_>>(), ["a.localhost", "b.localhost"]);
        assert!(sites[0].damaged.is_none());
        assert!(sites[1].damaged.is_some());
        // A torn read (the file changed between `wc` and `cat`) is an error, never a guess.
        assert!(parse_site_configs(b"100 sites/a/site_config.json\n{}").is_err());
        assert!(parse_site_configs(b"garbage\n").is_err());
    }

    #[test]
    fn each_site_finds_its_database_through_its_own_and_the_common_config() {
        let mut out = framed(
            &[
                ("a.localhost", "{\"db_name\": \"_a1\", \"db_password\": \"pw-a\"}"),
                (
                    "b.localhost",
                    "{\"db_name\": \"_b1\", \"db_user\": \"bee\", \"db_password\": \"pw-b\", \"db_host\": \"other\", \"db_port\": 3307}",
                ),
                ("c.localhost", "{\"maintenance_mode\": 0}"),
            ],
            &["a.localhost", "b.localhost", "c.localhost"],
        );
        let common = "{\"db_host\": \"db\", \"db_port\": 3306}";
        out.extend(framed(&[("d.localhost", "{\"db_name\": \"_d1\", \"db_type\": \"postgres\"}")], &["d.localhost"]));
        out.extend(format!("{} sites/common_site_config.json\n{common}", common.len()).bytes());
        let sites = parse_site_configs(&out).unwrap();
        let a = sites[0].db.as_ref().unwrap();
        assert_eq!((a.name.as_str(), a.user.as_str(), a.host.as_str(), a.port.as_str()), ("_a1", "_a1", "db", "3306"));
        let b = sites[1].db.as_ref().unwrap();
        assert_eq!((b.user.as_str(), b.host.as_str(), b.port.as_str()), ("bee", "other", "3307"));
        assert!(sites[2].db.is_none(), "no db_name, no database");
        assert!(sites[3].read_with_bench && !sites[0].read_with_bench, "postgres is read through bench");
        assert!(!format!("{sites:?}").contains("pw-a"), "passwords never in Debug");

        // Into exec 2: identifiers in argv, passwords only in the environment.
        let (argv, stdin) = db_query_exec(DbQuery::InstalledApps, &[a, b]);
        assert_eq!(&argv[5..], ["db", "3306", "_a1", "_a1", "other", "3307", "bee", "_b1"]);
        assert!(!argv.iter().any(|x| x.contains("pw-")));
        assert_eq!(stdin, "pw-a\npw-b\n", "passwords only on standard input, one per line");

        // A value that could pass for an option, or carry SQL, is refused before any exec.
        for (field, value) in [
            ("name", "-e DROP"),
            ("name", "_a1; DROP"),
            ("user", "--help"),
            ("host", "-h"),
            ("port", "33o6"),
            ("password", "pw\nnext"),
        ] {
            let mut bad = a.clone();
            match field {
                "name" => bad.name = value.to_string(),
                "user" => bad.user = value.to_string(),
                "host" => bad.host = value.to_string(),
                "password" => bad.password = value.to_string(),
                _ => bad.port = value.to_string(),
            }
            assert!(db_argv_problem(&bad).is_some(), "{field} = {value:?}");
        }
        assert!(db_argv_problem(a).is_none());
    }

    #[test]
    fn read_apps_answers_are_framed_per_site() {
        let out = "\u{1e}1\n[\"frappe\",\"erpnext\"]\n\u{1e}rc 0\n\u{1e}2\nERROR 1049 (42000): Unknown database '_b1'\n\u{1e}rc 1\n\u{1e}3\n\u{1e}rc 0\n\u{1e}4\nsh: mariadb: not found\n\u{1e}rc 127\n";
        let answers = parse_read_apps(out, 4).unwrap();
        assert_eq!(answers[0], DbApps::Installed(vec!["frappe".into(), "erpnext".into()]));
        assert_eq!(answers[1], DbApps::Failed("ERROR 1049 (42000): Unknown database '_b1'".into()));
        assert_eq!(answers[2], DbApps::Installed(Vec::new()), "no installed_apps row: an empty list, as Frappe says");
        assert_eq!(answers[3], DbApps::NoClient);
        assert!(parse_read_apps(out, 5).is_err(), "a missing answer is an error, never a guess");
        // One site's odd answer is that site's failure; a warning before the list is skipped.
        let odd = parse_read_apps("\u{1e}1\nnot json\n\u{1e}rc 0\n\u{1e}2\nWarning: x\n[\"frappe\"]\n\u{1e}rc 0\n", 2)
            .unwrap();
        assert!(matches!(&odd[0], DbApps::Failed(w) if w.contains("not a JSON list")), "{odd:?}");
        assert_eq!(odd[1], DbApps::Installed(vec!["frappe".into()]));
        // A value cannot forge another site's frame.
        assert!(parse_read_apps("\u{1e}1\n\u{1e}2\n[]\n\u{1e}rc 0\n", 1).is_err());
    }

    #[test]
    fn patch_logs_are_read_per_site() {
        let out = "\u{1e}1\napp.patches.a\nexecute:frappe.db.sql(\"x\\\\ty\") #1\n\u{1e}rc 0\n\u{1e}2\nERROR 1146 (42S02): Table '_b.tabPatch Log' doesn't exist\n\u{1e}rc 1\n\u{1e}3\n\u{1e}rc 127\n";
        let logs = parse_patch_logs(out, 3).unwrap();
        let a = logs[0].as_ref().unwrap();
        assert!(a.contains("app.patches.a") && a.contains("execute:frappe.db.sql(\"x\\ty\") #1"), "{a:?}");
        assert!(logs[1].as_ref().unwrap_err().contains("doesn't exist"));
        assert!(logs[2].as_ref().unwrap_err().contains("no `mariadb` client"));
        assert!(parse_patch_logs(out, 2).is_err());
        let (argv, _) = db_query_exec(DbQuery::PatchLog, &[]);
        assert!(argv[4].contains("`tabPatch Log`"), "{argv:?}");
    }

    #[test]
    fn installed_apps_read_the_json_line() {
        assert_eq!(parse_installed_apps("a", "[\"frappe\", \"erpnext\"]\n").unwrap(), ["frappe", "erpnext"]);
        assert!(parse_installed_apps("a", "").is_err());
    }
}

//! The `bench` commands benchform runs to observe sites, and how their output is read
//! (frappe-contract §4). Pure: argv in, text out are handled by the sites adapter.
//!
//! Observation costs a constant number of execs whatever the number of sites — every `bench`
//! call costs seconds of Python start-up on real Frappe:
//! 1. `find sites -mindepth 2 -maxdepth 2 -name site_config.json -print -exec cat {} ;` — which
//!    sites exist and their benchform records (nothing else of those files is kept: they hold
//!    database passwords);
//! 2. `bench --site all list-apps --format json` — each site's apps, from the `Installed
//!    Applications` table, which Frappe v15 refreshes only on migrate and uninstall.
//!
//! `--refresh full` adds `bench --site S execute frappe.get_installed_apps` per site: the
//! authoritative installed set, for when the table's staleness matters.

use std::collections::BTreeMap;

use crate::record::SiteRecord;

/// argv of exec 1: every folder directly under `sites/` (`-print`), and for each
/// `sites/<site>/site_config.json` its size (`wc -c`) then its bytes (`cat`). The size frames the
/// content, so nothing a file holds can pass for another site's header.
pub fn find_site_configs_argv() -> Vec<String> {
    [
        "find",
        "sites",
        "-mindepth",
        "1",
        "-maxdepth",
        "2",
        "(",
        "-path",
        "sites/*/site_config.json",
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
        "sites/*",
        "!",
        "-path",
        "sites/*/*",
        "-print",
        ")",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// argv of exec 2.
pub fn list_apps_all_argv() -> Vec<String> {
    ["bench", "--site", "all", "list-apps", "--format", "json"].iter().map(|s| s.to_string()).collect()
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
    /// What is wrong with it, as observed: no `site_config.json`, or one that is not a JSON
    /// object (the site is broken; say so, do not guess).
    pub damaged: Option<String>,
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
        configs.insert(
            site.clone(),
            SiteConfigSummary {
                record: value.as_ref().and_then(SiteRecord::from_site_config),
                maintenance_mode: value.as_ref().and_then(|v| v.get("maintenance_mode")).is_some_and(truthy),
                scheduler_paused: value.as_ref().and_then(|v| v.get("pause_scheduler")).is_some_and(truthy),
                damaged,
                site,
            },
        );
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
            },
        );
    }
    Ok(configs.into_values().collect())
}

fn truthy(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
        serde_json::Value::String(s) => !s.is_empty() && s != "0",
        _ => false,
    }
}

/// Read `bench --site all list-apps --format json`: `{"site": ["frappe", …], …}`. Anything bench
/// printed before the JSON (warnings) is skipped.
pub fn parse_list_apps(stdout: &str) -> Result<BTreeMap<String, Vec<String>>, OutputError> {
    let err = |detail: String| OutputError { command: list_apps_all_argv().join(" "), detail };
    let start = stdout.find('{').ok_or_else(|| err("no JSON object in the output".to_string()))?;
    let mut stream = serde_json::Deserializer::from_str(&stdout[start..]).into_iter::<BTreeMap<String, Vec<String>>>();
    let mut all = BTreeMap::new();
    // `--site all` may print one object per site or one for all; take every object.
    while let Some(value) = stream.next() {
        all.extend(value.map_err(|e| err(e.to_string()))?);
        let rest = &stdout[start..][stream.byte_offset()..];
        if !rest.trim_start().starts_with('{') {
            break;
        }
    }
    Ok(all)
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
    fn list_apps_json_reads_one_or_many_objects() {
        let one = parse_list_apps("warning: x\n{\"a\": [\"frappe\", \"erpnext\"], \"b\": []}\n").unwrap();
        assert_eq!(one["a"], ["frappe", "erpnext"]);
        assert!(one["b"].is_empty());
        let many = parse_list_apps("{\"a\": [\"frappe\"]}\n{\"b\": [\"frappe\"]}\n").unwrap();
        assert_eq!(many.len(), 2);
        assert!(parse_list_apps("Site all does not exist!").is_err());
    }

    #[test]
    fn installed_apps_read_the_json_line() {
        assert_eq!(parse_installed_apps("a", "[\"frappe\", \"erpnext\"]\n").unwrap(), ["frappe", "erpnext"]);
        assert!(parse_installed_apps("a", "").is_err());
    }
}

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

/// argv of exec 1.
pub fn find_site_configs_argv() -> Vec<String> {
    [
        "find",
        "sites",
        "-mindepth",
        "2",
        "-maxdepth",
        "2",
        "-name",
        "site_config.json",
        "-print",
        "-exec",
        "cat",
        "{}",
        ";",
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
    /// The file could not be read as JSON (the site is broken; say so, do not guess).
    pub unreadable: bool,
}

/// Why a bench output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the output of `{command}`: {detail}")]
pub struct OutputError {
    pub command: String,
    pub detail: String,
}

/// Read exec 1's output: a path line (`sites/<site>/site_config.json`), then that file's JSON,
/// repeated. Only the record and two flags are kept; secrets are dropped here.
pub fn parse_site_configs(stdout: &str) -> Vec<SiteConfigSummary> {
    let mut out = Vec::new();
    let mut rest = stdout;
    while let Some(start) = rest.find("sites/") {
        rest = &rest[start..];
        let (path, after) = rest.split_once('\n').unwrap_or((rest, ""));
        let Some(site) = path.trim().strip_prefix("sites/").and_then(|p| p.strip_suffix("/site_config.json")) else {
            rest = after;
            continue;
        };
        let mut stream = serde_json::Deserializer::from_str(after).into_iter::<serde_json::Value>();
        let (value, consumed) = match stream.next() {
            Some(Ok(v)) => (Some(v), stream.byte_offset()),
            _ => (None, after.find("\nsites/").map_or(after.len(), |i| i + 1)),
        };
        out.push(SiteConfigSummary {
            site: site.to_string(),
            record: value.as_ref().and_then(SiteRecord::from_site_config),
            maintenance_mode: value.as_ref().and_then(|v| v.get("maintenance_mode")).is_some_and(truthy),
            scheduler_paused: value.as_ref().and_then(|v| v.get("pause_scheduler")).is_some_and(truthy),
            unreadable: value.is_none(),
        });
        rest = &after[consumed.min(after.len())..];
    }
    out.sort_by(|a, b| a.site.cmp(&b.site));
    out
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

    #[test]
    fn site_configs_keep_the_record_and_drop_secrets() {
        let out = "sites/a.localhost/site_config.json\n{\n \"db_name\": \"_1\",\n \"db_password\": \"hunter2\",\n \"maintenance_mode\": 1\n}\nsites/b.localhost/site_config.json\n{\"db_password\": \"x\", \"benchform\": {\"version\": 1, \"project\": \"p\", \"fingerprint\": \"f\", \"commits\": {}, \"image\": \"i\", \"migrated_at\": \"t\"}, \"pause_scheduler\": true}\nsites/broken/site_config.json\n{not json\n";
        let sites = parse_site_configs(out);
        assert_eq!(sites.iter().map(|s| s.site.as_str()).collect::<Vec<_>>(), ["a.localhost", "b.localhost", "broken"]);
        assert!(sites[0].maintenance_mode && !sites[0].scheduler_paused && sites[0].record.is_none());
        assert_eq!(sites[1].record.as_ref().map(|r| r.fingerprint.as_str()), Some("f"));
        assert!(sites[1].scheduler_paused);
        assert!(sites[2].unreadable);
        assert!(!format!("{sites:?}").contains("hunter2"));
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

//! The bench on disk: image truth under `apps/`, volume state under `sites/`.
//!
//! Layout (see the crate README in `main.rs` for the full picture):
//!
//! ```text
//! $BENCH_ROOT/                      default /home/frappe/frappe-bench
//!   apps/<app>/VERSION|REF|COMMIT   image truth, written by `bench init`
//!   sites/apps.txt, apps.json, common_site_config.json
//!   sites/<site>/site_config.json, locks/, logs/, private/{backups,files}/, public/files/
//!   sites/<site>/.bench-contract-fault   test-only fault switches
//!   logs/bench.log
//!   archived/sites/<site>[N]        where drop-site moves sites
//! ```
//!
//! An app "is in the image" when `apps/<app>/` exists; that stands in for
//! Python being able to import it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::out::{Res, os_error};
use crate::py;
use crate::util::write_atomic;

/// Name of the per-site fault-injection file (test-only).
pub const FAULT_FILE: &str = ".bench-contract-fault";

#[derive(Debug, Clone)]
pub struct Bench {
    pub root: PathBuf,
}

impl Bench {
    /// `BENCH_ROOT`, defaulting to frappe_docker's path.
    pub fn from_env() -> Bench {
        let root = std::env::var_os("BENCH_ROOT")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("/home/frappe/frappe-bench"), PathBuf::from);
        Bench { root }
    }

    pub fn sites(&self) -> PathBuf {
        self.root.join("sites")
    }

    pub fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    pub fn site_dir(&self, site: &str) -> PathBuf {
        self.sites().join(site)
    }

    /// Resolves a path given on the command line the way frappe does: frappe
    /// runs with `sites/` as its working directory.
    pub fn resolve_in_sites(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() { path.to_path_buf() } else { self.sites().join(path) }
    }

    // ----- image truth -------------------------------------------------

    /// Whether `import <app>` would work: the app's directory is in the image.
    pub fn in_image(&self, app: &str) -> bool {
        !app.is_empty() && !app.contains('/') && self.apps_dir().join(app).is_dir()
    }

    fn app_file(&self, app: &str, file: &str) -> Option<String> {
        std::fs::read_to_string(self.apps_dir().join(app).join(file))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// `<app>.__version__`; frappe falls back to `0.0.1` when an app has none.
    pub fn app_version(&self, app: &str) -> String {
        self.app_file(app, "VERSION").unwrap_or_else(|| "0.0.1".to_owned())
    }

    /// Major version of the frappe in the image, which decides the few
    /// behaviours that differ between v15 and v16 (new-site flags, `version`
    /// default format, site named like an app). Read from `VERSION`, else
    /// from a `version-NN`/`vNN` ref, else 15 (frappe_docker's layered default
    /// for this fixture).
    pub fn frappe_major(&self) -> u32 {
        let leading = |s: &str| -> Option<u32> {
            let digits: String = s.trim_start_matches(['v', 'V']).chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok().filter(|n| *n > 0)
        };
        if let Some(n) = self.app_file("frappe", "VERSION").as_deref().and_then(leading) {
            return n;
        }
        if let Some(r) = self.app_file("frappe", "REF") {
            if let Some(n) = r.strip_prefix("version-").and_then(leading) {
                return n;
            }
            if let Some(n) = leading(&r) {
                return n;
            }
            if r == "develop" {
                return 16;
            }
        }
        15
    }

    // ----- volume state --------------------------------------------------

    /// `frappe.get_all_apps()`: `sites/apps.txt`, blank lines and comments
    /// skipped, duplicates dropped, frappe moved first.
    pub fn all_apps(&self) -> Res<Vec<String>> {
        let path = self.sites().join("apps.txt");
        let text = std::fs::read_to_string(&path).map_err(|e| os_error(&path.display().to_string(), &e))?;
        let mut apps: Vec<String> = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || apps.iter().any(|a| a == line) {
                continue;
            }
            apps.push(line.to_owned());
        }
        apps.retain(|a| a != "frappe");
        apps.insert(0, "frappe".to_owned());
        Ok(apps)
    }

    pub fn common_config(&self) -> Map<String, Value> {
        read_json_object(&self.sites().join("common_site_config.json")).unwrap_or_default()
    }

    pub fn site_config_path(&self, site: &str) -> PathBuf {
        self.site_dir(site).join("site_config.json")
    }

    /// A site exists for frappe when its `site_config.json` does.
    pub fn site_exists(&self, site: &str) -> bool {
        !site.is_empty() && !site.contains('/') && self.site_config_path(site).is_file()
    }

    pub fn site_config(&self, site: &str) -> Map<String, Value> {
        read_json_object(&self.site_config_path(site)).unwrap_or_default()
    }

    /// `frappe.conf`: common_site_config.json overlaid with the site's own.
    pub fn conf(&self, site: &str) -> Map<String, Value> {
        let mut conf = self.common_config();
        for (k, v) in self.site_config(site) {
            conf.insert(k, v);
        }
        conf
    }

    /// `frappe.utils.get_sites()`: directories (not symlinks) holding a
    /// `site_config.json`, sorted.
    pub fn list_sites(&self) -> Vec<String> {
        let mut sites: Vec<String> = std::fs::read_dir(self.sites())
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter(|e| e.path().join("site_config.json").is_file())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        sites.sort();
        sites
    }

    /// Test-only fault switches for a site: `key=value` lines in
    /// `sites/<site>/.bench-contract-fault` (`migrate=fail|hang|slow:N`,
    /// `ready=no`). Never present in real use.
    pub fn faults(&self, site: &str) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.site_dir(site).join(FAULT_FILE)).unwrap_or_default();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
            .collect()
    }
}

/// Reads a JSON object file; `None` if missing or not an object.
pub fn read_json_object(path: &Path) -> Option<Map<String, Value>> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str(&text).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Writes a config file the way frappe's `update_site_config` does:
/// `json.dumps(config, indent=1, sort_keys=True)`, no trailing newline.
pub fn write_config(path: &Path, config: &Map<String, Value>) -> Res<()> {
    let text = py::dumps(&Value::Object(config.clone()), Some(1), true);
    write_atomic(path, text.as_bytes()).map_err(|e| os_error(&path.display().to_string(), &e))
}

/// frappe's `_update_config_file` value rules: `"0"`/`"1"` become ints,
/// `"true"`/`"false"` bools, `"None"` deletes the key. Applied after `-p`
/// parsing too, exactly like frappe (so `-p "'1'"` also stores `1`).
pub fn update_config(path: &Path, key: &str, value: Value) -> Res<()> {
    let mut config = read_json_object(path).unwrap_or_default();
    let value = match value {
        Value::String(s) if s == "0" || s == "1" => Value::from(if s == "1" { 1 } else { 0 }),
        Value::String(s) if s == "true" => Value::Bool(true),
        Value::String(s) if s == "false" => Value::Bool(false),
        other => other,
    };
    if value == Value::String("None".to_owned()) {
        config.remove(key);
    } else {
        config.insert(key.to_owned(), value);
    }
    write_config(path, &config)
}

/// Truthiness of a config value the way Python's `if conf.key:` sees it.
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

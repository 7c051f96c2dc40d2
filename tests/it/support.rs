//! Running the binary and collecting what it printed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root: tests name files relative to it so that snapshots are stable.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Upstream frappe_docker, unmodified: `$BENCHFORM_FRAPPE_DOCKER`, else `../shared/frappe_docker`
/// next to the checkout, else `/work/shared/frappe_docker` (a clean clone elsewhere still finds it).
pub fn frappe_docker() -> PathBuf {
    let candidates = [
        std::env::var_os("BENCHFORM_FRAPPE_DOCKER").map(PathBuf::from),
        Some(root().join("../shared/frappe_docker")),
        Some(PathBuf::from("/work/shared/frappe_docker")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("compose.yaml").is_file())
        .expect("upstream frappe_docker not found: set BENCHFORM_FRAPPE_DOCKER to its folder")
}

/// Fails unless `doc` is valid under the checked-in `schema/<file>`: every JSON output is a
/// contract its schema describes.
pub fn assert_matches_schema(doc: &serde_json::Value, file: &str) {
    let text = std::fs::read_to_string(root().join("schema").join(file)).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "output does not match schema/{file}: {errors:?}\n{doc}");
}

/// What one run of benchform produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run `benchform ARGS` in `dir` with a clean, predictable environment plus `envs`.
pub fn benchform_in(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_benchform"));
    cmd.args(args).current_dir(dir).env_remove("BENCHFORM_LOG").env("NO_COLOR", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("benchform runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run `benchform ARGS` from the repository's root.
pub fn benchform(args: &[&str]) -> Run {
    benchform_in(&root(), args, &[])
}

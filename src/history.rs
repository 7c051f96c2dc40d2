//! Apply history: one JSON line per apply that ran steps, kept with the deployment.
//!
//! Two copies of the same line are appended:
//! - **with the deployment**, in the `sites` volume (`sites/.benchform-history.jsonl`), through
//!   the backend container (`tee -a` with the line on standard input), so every operator and
//!   every machine sees the same history, and it travels with the site data;
//! - **on the host**, next to the backups (`<backups.dir>/<project>/history.jsonl`), so an apply
//!   that failed before any backend ran is still recorded.
//!
//! `benchform history` reads both and merges them by apply ID. Records hold no secret: step
//! details are redacted before they are stored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use benchform_bench::{BENCH_DIR, Bench};
use serde::{Deserialize, Serialize};

/// The file in the `sites` volume, relative to the bench folder.
pub const VOLUME_FILE: &str = "sites/.benchform-history.jsonl";

/// One apply (`benchform history --format json` prints a list of them;
/// `schema/history.schema.json` is generated from it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Record {
    /// Version of this format; only `1` exists.
    pub format_version: u32,
    /// The apply's lock ID.
    pub id: String,
    pub started: String,
    pub finished: String,
    /// `user@host`.
    pub who: String,
    pub project: String,
    pub manifest_sha256: String,
    pub lock_sha256: String,
    /// The image the plan deploys.
    pub image: String,
    /// What was applied: `apply <manifest>` (a fresh plan) or `apply <saved plan file>`.
    pub plan: String,
    /// `success`, `failure` or `interrupted`.
    pub outcome: String,
    pub steps: Vec<StepRecord>,
    /// Backups copied off the volume in this apply (host paths).
    pub backups: Vec<String>,
}

/// One step of an apply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct StepRecord {
    pub id: String,
    /// `done`, `already_done`, `failed` or `not_started`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

/// The host copy's path, in the project's backups folder (`Paths::backups`).
pub fn host_file(project_backups: &Path) -> PathBuf {
    project_backups.join("history.jsonl")
}

/// Append `record` to both copies. Problems are returned as warnings: history must not turn a
/// finished apply into a failed one.
pub async fn append(record: &Record, host: &Path, bench: Option<&Bench<'_>>) -> Vec<String> {
    let mut warnings = Vec::new();
    let line = match serde_json::to_string(record) {
        Ok(l) => format!("{l}\n"),
        Err(e) => return vec![format!("cannot encode the history record: {e}")],
    };
    if let Err(e) = append_host(host, &line) {
        warnings.push(format!("cannot append to {}: {e}", host.display()));
    }
    match bench {
        Some(bench) => {
            let argv = ["tee", "-a", VOLUME_FILE].map(String::from).to_vec();
            match bench.run_with_input(&argv, Some(line.as_bytes()), Some(Duration::from_secs(30))).await {
                Ok(out) if out.exit_code == 0 => {}
                Ok(out) => warnings.push(format!(
                    "cannot append to {BENCH_DIR}/{VOLUME_FILE}: tee exited {}: {}",
                    out.exit_code,
                    out.stderr.trim()
                )),
                Err(e) => warnings.push(format!("cannot append to {BENCH_DIR}/{VOLUME_FILE}: {e}")),
            }
        }
        None => warnings.push("no backend container runs: the history was kept on this host only".to_string()),
    }
    warnings
}

fn append_host(path: &Path, line: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
}

/// Read the deployment's copy (if a backend runs) and the host's, merged by ID, oldest first.
/// Lines that are not records (a torn write) are skipped and counted. The note says why the
/// deployment's copy was not read, if it was not.
pub async fn read(host: &Path, bench: Option<&Bench<'_>>) -> (Vec<Record>, usize, Option<String>) {
    let mut text = std::fs::read_to_string(host).unwrap_or_default();
    let note = match bench {
        None => Some("no backend container runs".to_string()),
        Some(bench) => {
            let argv = ["cat", VOLUME_FILE].map(String::from).to_vec();
            match bench.run(&argv, Some(Duration::from_secs(30))).await {
                Ok(out) if out.exit_code == 0 => {
                    text.push('\n');
                    text.push_str(&out.stdout);
                    None
                }
                // No apply has written it yet.
                Ok(out) if out.stderr.contains("No such file") => None,
                Ok(out) => Some(format!("cat {VOLUME_FILE} exited {}: {}", out.exit_code, out.stderr.trim())),
                Err(e) => Some(e.to_string()),
            }
        }
    };
    let (records, torn) = parse(&text);
    (records, torn, note)
}

/// Records in `text` (JSON lines), deduplicated by ID and sorted by start; and how many
/// non-empty lines were not records.
pub fn parse(text: &str) -> (Vec<Record>, usize) {
    let mut records: Vec<Record> = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Record>(line) {
            Ok(r) if !records.iter().any(|o| o.id == r.id) => records.push(r),
            Ok(_) => {}
            Err(_) => bad += 1,
        }
    }
    records.sort_by(|a, b| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)));
    (records, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, started: &str) -> Record {
        Record {
            format_version: 1,
            id: id.into(),
            started: started.into(),
            finished: started.into(),
            who: "op@host".into(),
            project: "p".into(),
            manifest_sha256: "m".into(),
            lock_sha256: "l".into(),
            image: "r/p:bf1-x".into(),
            plan: "fresh plan".into(),
            outcome: "success".into(),
            steps: vec![StepRecord { id: "build".into(), status: "done".into(), detail: None }],
            backups: vec![],
        }
    }

    #[test]
    fn copies_merge_by_id_in_start_order_and_torn_lines_are_counted() {
        let a = serde_json::to_string(&record("a", "2026-01-02T00:00:00Z")).unwrap();
        let b = serde_json::to_string(&record("b", "2026-01-01T00:00:00Z")).unwrap();
        let text = format!("{a}\n{b}\n{{\"format_vers\n\n{a}\n");
        let (records, bad) = parse(&text);
        assert_eq!(records.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(bad, 1);
    }
}

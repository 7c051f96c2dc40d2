//! `apply --format json`: one event per line, typed and versioned. `schema/apply-events.schema.json`
//! (`benchform schema apply-events`) is generated from [`Event`]. Names and fields only ever grow.

use benchform_core::plan::StepKind;
use schemars::JsonSchema;
use serde::Serialize;

use crate::plan_file::PlanDocument;
use crate::shell::Shell;

/// The events' format version, carried by every event.
pub const FORMAT_VERSION: u32 = 1;

/// One line of `apply --format json`.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(title = "benchform apply event")]
pub struct Event {
    /// Version of this format; only `1` exists.
    pub format_version: u32,
    #[serde(flatten)]
    pub body: Body,
}

/// What happened; `event` names it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Body {
    /// First: the plan about to run (as `plan --format json`).
    Plan { plan: Box<PlanDocument> },
    /// A step starts.
    StepStarted { id: String, kind: StepKind, site: Option<String>, app: Option<String> },
    /// A step ended.
    StepFinished {
        id: String,
        kind: StepKind,
        site: Option<String>,
        app: Option<String>,
        status: StepStatus,
        /// What it did, or why it failed (redacted).
        detail: String,
        /// How to fix a failure.
        fix: Option<String>,
        elapsed_ms: u64,
    },
    /// A step still running, every 30 s after its first 30 (builds and migrates can be silent
    /// for minutes).
    Progress {
        id: String,
        kind: StepKind,
        site: Option<String>,
        app: Option<String>,
        elapsed_ms: u64,
        /// The last line the step's command printed, masked (none before its first line).
        last_line: Option<String>,
    },
    /// Something worth knowing that did not fail the run (e.g. a history copy not written).
    Warning { message: String },
    /// What was done for a site after the steps.
    Recovery {
        site: String,
        /// `restored`, `restore_failed`, `left`, `new_site`, `back_in_service`, `release_failed`.
        outcome: String,
        detail: String,
    },
    /// A site of the manifest no step touched, and why.
    Blocked { site: String, detail: String, fix: String },
    /// Last: how the run ended.
    Summary(Summary),
}

/// How a step ended.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Done,
    AlreadyDone,
    Failed,
}

/// The last event of a run.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Summary {
    /// `success`, `failure`, `interrupted` or `no_changes`.
    pub outcome: String,
    /// The signal that interrupted the run (`SIGINT`, `SIGTERM`).
    pub signal: Option<String>,
    /// Step ids.
    pub done: Vec<String>,
    pub failed: Vec<String>,
    pub not_started: Vec<String>,
    pub sites_in_maintenance: Vec<String>,
    pub restored: Vec<String>,
    pub back_in_service: Vec<String>,
    /// Sites of the manifest no step touched.
    pub blocked: Vec<String>,
    /// What to run next, when the run did not succeed.
    pub next: Option<String>,
}

/// Write one event as a line on standard output.
pub fn emit(shell: &Shell, body: Body) {
    let event = Event { format_version: FORMAT_VERSION, body };
    match serde_json::to_string(&event) {
        Ok(line) => shell.line(&line),
        // A derived Serialize of strings, numbers and lists cannot fail; say so if it ever does.
        Err(e) => shell.err_line(&format!("error: cannot write a JSON event: {e}")),
    }
}

//! `benchform plan`: observe, plan, and show the steps apply would take.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use benchform_bench::Refresh;
use benchform_core::fingerprint::WorldFingerprint;
use benchform_core::plan::{self, Plan, PlanOptions, Step, StepKind};
use benchform_core::status;
use serde::{Deserialize, Serialize};

use crate::Status;
use crate::cli::{PlanArgs, PlanFormat};
use crate::observe;
use crate::{output, render};

/// The JSON plan's format version.
pub const FORMAT_VERSION: u32 = 1;

/// A plan as JSON: the wire form, kept apart from the core's types. `schema/plan.schema.json`
/// is generated from it. A saved plan (`plan -o FILE`) is the same document with `fingerprint`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(title = "benchform plan")]
pub struct PlanDocument {
    /// Version of this format; only `1` exists.
    pub format_version: u32,
    pub project: String,
    /// The image the plan deploys.
    pub image: ImageRef,
    /// In order; `depends_on` names earlier steps' ids.
    pub steps: Vec<Step>,
    /// Changes made outside benchform.
    pub drift: Vec<status::Drift>,
    /// Steps per kind.
    pub summary: BTreeMap<String, usize>,
    /// Saved plans only: what the plan was computed from, checked by apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<WorldFingerprint>,
}

/// An image reference, split.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageRef {
    pub repository: String,
    pub tag: String,
}

pub fn document(p: &Plan, fingerprint: Option<WorldFingerprint>) -> PlanDocument {
    PlanDocument {
        format_version: FORMAT_VERSION,
        project: p.project.clone(),
        image: ImageRef { repository: p.repository.clone(), tag: p.tag.clone() },
        steps: p.steps.clone(),
        drift: p.drift.clone(),
        summary: p.summary().into_iter().map(|(k, n)| (k.as_str().to_string(), n)).collect(),
        fingerprint,
    }
}

impl PlanDocument {
    /// Back to the core's plan, for rendering.
    pub fn plan(&self) -> Plan {
        Plan {
            project: self.project.clone(),
            repository: self.image.repository.clone(),
            tag: self.image.tag.clone(),
            steps: self.steps.clone(),
            drift: self.drift.clone(),
        }
    }
}

/// Print a plan in the chosen format.
pub fn print(plan: &Plan, format: PlanFormat) {
    match format {
        PlanFormat::Json => output::out(&render::json(&document(plan, None))),
        PlanFormat::Markdown => output::out(&markdown(plan)),
        PlanFormat::Text => output::out(&text(plan, colour())),
    }
}

pub fn run(args: &PlanArgs) -> Status {
    let p = match observe::prepare(args.manifest.file.as_deref(), true) {
        Ok(p) => p,
        Err(status) => return status,
    };
    // A saved plan's fingerprint must see hand changes that Frappe's list-apps table hides.
    let refresh = if args.refresh.is_some() || args.out.is_some() { Refresh::Full } else { Refresh::Auto };
    let observed = match crate::runtime().block_on(observe::observe(&p.manifest, &p.desired, &p.paths, refresh)) {
        Ok(o) => o,
        Err(e) => return observe::failed(&e),
    };
    let drift = status::compare(&p.manifest, Some(&p.lock), &p.desired, &observed).drift;
    let options = PlanOptions { allow_downgrade: args.allow_downgrade };
    let plan = match plan::plan(&p.desired, &observed, &options, drift) {
        Ok(plan) => plan,
        Err(errors) => {
            for e in &errors {
                output::err_line(&format!("error: {e}"));
            }
            output::err_line(&format!("\nNo plan: {} problem(s) make the deployment unsafe to change.", errors.len()));
            return Status::Failure;
        }
    };
    if let Some(out) = &args.out {
        let fingerprint = WorldFingerprint::of(&p.loaded.bytes, &p.lock_bytes, &p.desired.reference(), &observed);
        if let Err(e) = std::fs::write(out, render::json(&document(&plan, Some(fingerprint)))) {
            output::err_line(&format!(
                "error: cannot write the plan to {}: {e}\n  = fix: pass -o with a path in a folder you can write to",
                out.display()
            ));
            return Status::Failure;
        }
    }
    print(&plan, args.format);
    if args.detailed_exitcode && !plan.is_empty() { Status::Changes } else { Status::Success }
}

/// Colour only on a terminal, and never with `NO_COLOR` set.
fn colour() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// `+` create, `~` change, `-` destroy.
fn symbol(kind: StepKind) -> char {
    match kind {
        StepKind::Build | StepKind::Push | StepKind::Backup | StepKind::NewSite | StepKind::InstallApp => '+',
        StepKind::UninstallApp => '-',
        _ => '~',
    }
}

fn paint(text: &str, code: &str, on: bool) -> String {
    if on { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
}

fn target(s: &Step) -> String {
    match (&s.site, &s.app) {
        (Some(site), Some(app)) => format!("{site} {app}"),
        (Some(site), None) => site.clone(),
        // A deploy's reason names its services, grouped by why.
        _ => String::new(),
    }
}

/// The summary line: "Plan: 1 build, 1 deploy, 3 migrate; 0 destructive".
pub fn summary_line(p: &Plan) -> String {
    let parts: Vec<String> = p.summary().iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!("Plan: {}; {} destructive", parts.join(", "), p.destructive())
}

fn drift_lines(p: &Plan) -> String {
    let mut out = String::new();
    if !p.drift.is_empty() {
        out.push_str("\nChanges outside benchform (reported, not acted on unless the manifest requires it):\n");
        for d in &p.drift {
            out.push_str(&format!("  ! {}\n", d.detail));
        }
    }
    out
}

/// The plan for people, Terraform-style.
pub fn text(p: &Plan, colour: bool) -> String {
    let mut out = String::new();
    if p.is_empty() {
        out.push_str("No changes. The deployment matches benchform.yaml.\n");
        out.push_str(&drift_lines(p));
        return out;
    }
    out.push_str(&format!(
        "benchform will take these steps for {} (image {}:{}), in order:\n",
        p.project, p.repository, p.tag
    ));
    out.push_str("  + create   ~ change   - destroy   ! destructive\n\n");
    for s in &p.steps {
        let sym = symbol(s.kind);
        let mark = format!("{sym}{}", if s.destructive { "!" } else { " " });
        let code = match sym {
            '+' => "32",
            '-' => "31",
            _ => "33",
        };
        out.push_str(&format!(
            "  {} {:<16} {:<30} {}\n",
            paint(&mark, code, colour),
            s.kind.as_str(),
            target(s),
            s.reason
        ));
    }
    out.push_str(&drift_lines(p));
    out.push_str(&format!("\n{}\n", summary_line(p)));
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The plan for a pull-request comment: summary first, steps in a table, details folded.
pub fn markdown(p: &Plan) -> String {
    let mut out = format!("### benchform plan: `{}`\n\n", p.project);
    if p.is_empty() {
        out.push_str("**No changes.** The deployment matches `benchform.yaml`.\n");
    } else {
        out.push_str(&format!("**{}**\n\nImage: `{}:{}`\n\n", summary_line(p), p.repository, p.tag));
        out.push_str("| # | step | target | reason |\n|---|---|---|---|\n");
        for (i, s) in p.steps.iter().enumerate() {
            let kind = if s.destructive { format!("**{}** ⚠", s.kind) } else { s.kind.to_string() };
            out.push_str(&format!("| {} | {} | {} | {} |\n", i + 1, kind, cell(&target(s)), cell(&s.reason)));
        }
        out.push_str("\n<details><summary>Step dependencies</summary>\n\n");
        for s in &p.steps {
            let deps = if s.depends_on.is_empty() { "—".to_string() } else { s.depends_on.join(", ") };
            out.push_str(&format!("- `{}` after {deps}\n", s.id));
        }
        out.push_str("\n</details>\n");
    }
    if !p.drift.is_empty() {
        out.push_str(&format!("\n<details><summary>Changes outside benchform ({})</summary>\n\n", p.drift.len()));
        for d in &p.drift {
            out.push_str(&format!("- {}\n", cell(&d.detail)));
        }
        out.push_str("\n</details>\n");
    }
    out
}

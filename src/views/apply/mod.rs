//! How an apply shows its progress: text for people (a spinner on a terminal, a heartbeat line
//! elsewhere) or one JSON event per line (`--format json`, see [`events`]). The command calls the
//! same methods whichever is chosen; nothing outside this module branches on the format.

use std::time::Duration;

use benchform_core::plan::{Plan, Step};
use benchform_manifest::mask::Masker;

use crate::apply::{Outcome, RecoveryOutcome, SiteRecovery, StepError, Summary};
use crate::cli::PlanFormat;
use crate::output;
use crate::plan_file::{PlanInputs, document};
use crate::shell::Shell;

pub mod events;

use events::{Body, StepStatus};

/// What to run next after a run that did not succeed.
pub const NEXT: &str = "fix the cause and run `benchform apply` again; done steps are not repeated.";

/// The chosen view of one apply, speaking through its shell.
#[derive(Debug)]
pub struct ApplyView {
    shell: Shell,
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    /// Lines for people; the spinner only on a terminal without `-v`.
    Text { spinner: Option<output::Spinner> },
    /// `--format json`: events on standard output.
    Json,
}

impl ApplyView {
    pub fn new(shell: &Shell, json: bool) -> ApplyView {
        let mode = if json { Mode::Json } else { Mode::Text { spinner: None } };
        ApplyView { shell: shell.clone(), mode }
    }

    /// Whether long steps need a heartbeat: a spinner shows their elapsed time already.
    pub fn needs_heartbeat(&self) -> bool {
        !matches!(self.mode, Mode::Text { spinner: Some(_) })
    }

    /// The plan converged: nothing to do.
    pub fn no_changes(&self) {
        match &self.mode {
            Mode::Json => events::emit(
                &self.shell,
                Body::Summary(events::Summary { outcome: "no_changes".into(), ..Default::default() }),
            ),
            Mode::Text { .. } => self.shell.line("No changes. The deployment matches benchform.yaml."),
        }
    }

    /// No step can run, but sites are blocked: the run fails.
    pub fn only_blocked(&self, plan: &Plan) {
        self.blocked(plan);
        if let Mode::Json = self.mode {
            let blocked = plan.blocked.iter().map(|b| b.site.clone()).collect();
            events::emit(
                &self.shell,
                Body::Summary(events::Summary { outcome: "failure".into(), blocked, ..Default::default() }),
            );
        }
    }

    /// The plan about to run. A saved plan was reviewed already: text shows it only as JSON.
    pub fn plan(&self, plan: &Plan, inputs: &PlanInputs, saved: bool) {
        match &self.mode {
            Mode::Json => events::emit(&self.shell, Body::Plan { plan: Box::new(document(plan, inputs, None)) }),
            Mode::Text { .. } if !saved => super::plan::print(&self.shell, plan, inputs, PlanFormat::Text),
            Mode::Text { .. } => {}
        }
    }

    /// The steps begin: from here on a terminal shows a spinner.
    pub fn steps_begin(&mut self) {
        if let Mode::Text { spinner } = &mut self.mode {
            *spinner = output::Spinner::new();
        }
    }

    /// The steps are over: the spinner goes.
    pub fn steps_end(&mut self) {
        if let Mode::Text { spinner } = &mut self.mode {
            *spinner = None;
        }
    }

    pub fn step_started(&self, step: &Step) {
        match &self.mode {
            Mode::Json => events::emit(
                &self.shell,
                Body::StepStarted {
                    id: step.id.clone(),
                    kind: step.kind,
                    site: step.site.clone(),
                    app: step.app.clone(),
                },
            ),
            Mode::Text { spinner } => {
                if let Some(s) = spinner {
                    s.start(&label(step));
                }
                self.shell.line(format!("→ {}", label(step)).trim_end());
            }
        }
    }

    /// A step ended; everything it says is masked with `masker`.
    pub fn step_finished(&self, step: &Step, result: &Result<Outcome, StepError>, elapsed: Duration, masker: &Masker) {
        match &self.mode {
            Mode::Json => {
                let (status, detail, fix) = match result {
                    Ok(Outcome::Done(what)) => (StepStatus::Done, masker.mask(what), None),
                    Ok(Outcome::AlreadyDone(what)) => (StepStatus::AlreadyDone, masker.mask(what), None),
                    Err(e) => (StepStatus::Failed, masker.mask(&e.detail), Some(masker.mask(&e.fix))),
                };
                events::emit(
                    &self.shell,
                    Body::StepFinished {
                        id: step.id.clone(),
                        kind: step.kind,
                        site: step.site.clone(),
                        app: step.app.clone(),
                        status,
                        detail,
                        fix,
                        elapsed_ms: millis(elapsed),
                    },
                );
            }
            Mode::Text { spinner } => {
                if let Some(s) = spinner {
                    s.finish(&label(step));
                }
                match result {
                    Ok(Outcome::Done(what)) => self.shell.line(&format!(
                        "  done {} in {:.1}s: {}",
                        step.id,
                        elapsed.as_secs_f64(),
                        masker.mask(what)
                    )),
                    Ok(Outcome::AlreadyDone(what)) => {
                        self.shell.line(&format!("  already done {}: {}", step.id, masker.mask(what)))
                    }
                    Err(e) => self.shell.err_line(&format!(
                        "  FAILED {} after {:.1}s: {}\n  = fix: {}",
                        step.id,
                        elapsed.as_secs_f64(),
                        masker.mask(&e.detail),
                        masker.mask(&e.fix)
                    )),
                }
            }
        }
    }

    /// A step still runs after `elapsed` (the heartbeat), with the last line it printed (masked).
    pub fn progress(&self, step: &Step, elapsed: Duration, last_line: Option<&str>) {
        match &self.mode {
            Mode::Json => events::emit(
                &self.shell,
                Body::Progress {
                    id: step.id.clone(),
                    kind: step.kind,
                    site: step.site.clone(),
                    app: step.app.clone(),
                    elapsed_ms: millis(elapsed),
                    last_line: last_line.map(str::to_string),
                },
            ),
            Mode::Text { .. } => self.shell.line(&match last_line {
                Some(line) => format!("  … {} still running ({}s): {line}", step.id, elapsed.as_secs()),
                None => format!("  … {} still running ({}s)", step.id, elapsed.as_secs()),
            }),
        }
    }

    /// Something worth knowing that did not fail the run (already masked).
    pub fn warning(&self, message: &str) {
        match &self.mode {
            Mode::Json => events::emit(&self.shell, Body::Warning { message: message.to_string() }),
            Mode::Text { .. } => self.shell.warn(message, None),
        }
    }

    /// The sites the plan could not touch.
    pub fn blocked(&self, plan: &Plan) {
        match &self.mode {
            Mode::Json => {
                for b in &plan.blocked {
                    events::emit(
                        &self.shell,
                        Body::Blocked { site: b.site.clone(), detail: b.detail.clone(), fix: b.fix.clone() },
                    );
                }
            }
            Mode::Text { .. } if !plan.blocked.is_empty() => {
                self.shell.err_line(super::plan::blocked_lines(plan).trim_start_matches('\n').trim_end())
            }
            Mode::Text { .. } => {}
        }
    }

    /// How the run ended: the recoveries, blocked sites and the summary.
    pub fn end(&self, plan: &Plan, summary: &Summary, recoveries: &[SiteRecovery]) {
        match &self.mode {
            Mode::Json => {
                for r in recoveries {
                    events::emit(
                        &self.shell,
                        Body::Recovery {
                            site: r.site.clone(),
                            outcome: r.outcome.as_str().to_string(),
                            detail: recovery_text(r),
                        },
                    );
                }
                self.blocked(plan);
                events::emit(&self.shell, Body::Summary(summary_event(summary, recoveries)));
            }
            Mode::Text { .. } => {
                summary_text(&self.shell, plan, summary, recoveries);
                self.blocked(plan);
            }
        }
    }
}

/// What was done for a site after the steps, for people (the JSON `recovery` event's `detail`).
fn recovery_text(r: &SiteRecovery) -> String {
    let site = &r.site;
    let ways = format!(
        "\n  Ways forward for {site}: fix the migration and run `benchform apply` again; or revert the manifest \
         change and apply that — but only if no other site migrated to the new versions in this run (benchform \
         refuses a downgrade it can see; with branch refs it cannot)."
    );
    match &r.outcome {
        RecoveryOutcome::NewSite => format!(
            "{site} was created in this run and holds no data yet: fix the cause and apply again, or drop it \
             (`bench drop-site {site} --force --no-backup`)"
        ),
        RecoveryOutcome::Restored(what) => format!("recovered: {what}{ways}"),
        RecoveryOutcome::Left(what) => format!("{what}{ways}"),
        RecoveryOutcome::RestoreFailed { detail, fix } => {
            format!("could not restore {site}: {detail}\n  = fix: {fix}{ways}")
        }
        RecoveryOutcome::BackInService { untouched: true } => {
            format!("{site} is back in service on the image it ran before (it was not changed in this run)")
        }
        RecoveryOutcome::BackInService { untouched: false } => format!(
            "{site} is back in service on the image it ran before (it was not migrated; apps uninstalled in this \
             run stay uninstalled)"
        ),
        RecoveryOutcome::ReleaseFailed { detail, fix } => {
            format!("could not take {site} out of maintenance: {detail}\n  = fix: {fix}")
        }
    }
}

/// `migrate erp.example.com`: a step as the spinner and the text lines name it.
fn label(step: &Step) -> String {
    let target = step.site.iter().chain(step.app.iter()).cloned().collect::<Vec<_>>().join(" ");
    format!("{} {target}", step.kind)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn summary_event(s: &Summary, recoveries: &[SiteRecovery]) -> events::Summary {
    let sites = |kind: &str| {
        recoveries.iter().filter(|r| r.outcome.as_str() == kind).map(|r| r.site.clone()).collect::<Vec<_>>()
    };
    events::Summary {
        outcome: s.outcome().as_str().to_string(),
        signal: s.interrupted.map(str::to_string),
        done: s.done.clone(),
        failed: s.failed.clone(),
        not_started: s.not_started.clone(),
        sites_in_maintenance: s.in_maintenance.clone(),
        restored: sites("restored"),
        back_in_service: sites("back_in_service"),
        blocked: s.blocked.clone(),
        next: s.ended_early().then(|| NEXT.to_string()),
    }
}

fn summary_text(shell: &Shell, plan: &Plan, s: &Summary, recoveries: &[SiteRecovery]) {
    if !s.ended_early() {
        match s.blocked.len() {
            0 => shell.line(&format!("\nApply complete: {} step(s).", plan.steps.len())),
            n => shell.line(&format!(
                "\nApply done: {} step(s); {n} site(s) blocked, not touched (below): the deployment does not \
                 match benchform.yaml yet.",
                plan.steps.len()
            )),
        }
        // Only sites whose maintenance someone else set stay so after a complete run.
        if !s.in_maintenance.is_empty() {
            shell.line(&format!(
                "Left in maintenance mode as found (set outside benchform): {}; `benchform plan \
                 --release-maintenance SITE` puts one back in service.",
                s.in_maintenance.join(", ")
            ));
        }
        return;
    }
    for r in recoveries {
        shell.err_line(&format!("  {}", recovery_text(r)));
    }
    shell.err_line(&format!(
        "\nApply {}: {} of {} step(s) failed ({}); {} done, {} not started.",
        match s.interrupted {
            Some(signal) => format!("interrupted by {signal}"),
            None => "failed".to_string(),
        },
        s.failed.len(),
        plan.steps.len(),
        s.failed.join(", "),
        s.done.len(),
        s.not_started.len()
    ));
    if !s.not_started.is_empty() {
        shell.err_line(&format!("Not started: {}.", s.not_started.join(", ")));
    }
    if !s.in_maintenance.is_empty() {
        shell.err_line(&format!("Sites left in maintenance mode: {}.", s.in_maintenance.join(", ")));
    }
    shell.err_line(&format!("Next: {NEXT}"));
}

//! The outcome of a run as a value ([`ApplyReport`]), what is carried out after the steps
//! (the recovery `benchform_core::recovery` decides), and where the run ended ([`Summary`]).

use benchform_core::plan::{Plan, StepKind};

use super::*;

/// Everything a run did, read once its steps are over: each step's state (in plan order), the
/// sites it took out of service, the backups it copied off the volume, and the signal that
/// interrupted it. (Which sites migrated is in the states.)
#[derive(Debug)]
pub struct ApplyReport {
    pub states: Vec<StepState>,
    /// Each with whether its scheduler was paused already before the run.
    pub entered_maintenance: Vec<(String, bool)>,
    /// Host paths of the backups copied off the volume.
    pub backups: Vec<String>,
    pub interrupted: Option<&'static str>,
}

impl Applier<'_> {
    /// Run `plan` (see [`schedule::run`]) and return what the run did.
    pub async fn run(&self, plan: &Plan, progress: schedule::Progress<'_>) -> ApplyReport {
        let states = schedule::run(self, plan, progress).await;
        ApplyReport {
            states,
            entered_maintenance: self.entered_maintenance.lock().map(|e| e.clone()).unwrap_or_default(),
            backups: self.copied.lock().map(|c| c.clone()).unwrap_or_default(),
            interrupted: self.interrupt.signal(),
        }
    }
}

/// What was done for one site after the steps ended.
#[derive(Debug)]
pub struct SiteRecovery {
    pub site: String,
    pub outcome: RecoveryOutcome,
}

/// How a site's recovery went; every text in it is masked already.
#[derive(Debug)]
pub enum RecoveryOutcome {
    /// Created in this run: holds no data yet, nothing to restore.
    NewSite,
    /// Restored from a backup: what was restored.
    Restored(String),
    /// Left as the failed migrate left it (`on_migrate_failure: stop`): why.
    Left(String),
    RestoreFailed {
        detail: String,
        fix: String,
    },
    /// Back in service on the image it ran before; `untouched`: not changed at all in this run.
    BackInService {
        untouched: bool,
    },
    ReleaseFailed {
        detail: String,
        fix: String,
    },
}

impl RecoveryOutcome {
    /// The name apply's JSON `recovery` event gives it.
    pub fn as_str(&self) -> &'static str {
        match self {
            RecoveryOutcome::NewSite => "new_site",
            RecoveryOutcome::Restored(_) => "restored",
            RecoveryOutcome::Left(_) => "left",
            RecoveryOutcome::RestoreFailed { .. } => "restore_failed",
            RecoveryOutcome::BackInService { .. } => "back_in_service",
            RecoveryOutcome::ReleaseFailed { .. } => "release_failed",
        }
    }
}

/// After the steps (all in-flight work is over): carry out what `benchform_core::recovery`
/// decides — restore (or leave) the sites whose migrate failed after touching them, and put back
/// in service the sites this run took out of service and did not change.
pub async fn recover(applier: &Applier<'_>, plan: &Plan, report: &ApplyReport) -> Vec<SiteRecovery> {
    use benchform_core::recovery::{self, Action, RunEnd, StepEnd};
    use benchform_manifest::model::OnMigrateFailure;
    let end = RunEnd {
        steps: plan
            .steps
            .iter()
            .zip(&report.states)
            .map(|(s, st)| match st {
                StepState::NotStarted => StepEnd::NotStarted,
                StepState::Finished(Ok(Outcome::Done(_))) => StepEnd::Done { created: s.kind == StepKind::NewSite },
                StepState::Finished(Ok(Outcome::AlreadyDone(_))) => StepEnd::Done { created: false },
                StepState::Finished(Err(e)) => StepEnd::Failed { touched: e.touched, rolled_back: e.rolled_back },
            })
            .collect(),
        entered_maintenance: report.entered_maintenance.clone(),
        interrupted: report.interrupted.is_some(),
    };
    let policy = match applier.p.manifest.policy.on_migrate_failure {
        OnMigrateFailure::Restore => recovery::OnMigrateFailure::Restore,
        OnMigrateFailure::Stop => recovery::OnMigrateFailure::Stop,
    };
    let mask = |e: &StepError| (applier.redact(&e.detail), applier.redact(&e.fix));
    let mut out = Vec::new();
    let mut release = Vec::new();
    for action in recovery::decide(plan, &end, policy) {
        match action {
            Action::NewSite { site } => out.push(SiteRecovery { site, outcome: RecoveryOutcome::NewSite }),
            Action::Restore { site } | Action::Leave { site } => {
                let outcome = match applier.recover(&site).await {
                    Ok(Recovery::Restored(what)) => RecoveryOutcome::Restored(applier.redact(&what)),
                    Ok(Recovery::Left(what)) => RecoveryOutcome::Left(applier.redact(&what)),
                    Err(e) => {
                        let (detail, fix) = mask(&e);
                        RecoveryOutcome::RestoreFailed { detail, fix }
                    }
                };
                out.push(SiteRecovery { site, outcome });
            }
            Action::BackInService { site, scheduler_was_paused, untouched } => {
                release.push((site, scheduler_was_paused, untouched));
            }
        }
    }
    let sites: Vec<(String, bool)> = release.iter().map(|(s, p, _)| (s.clone(), *p)).collect();
    for result in applier.back_in_service(&sites).await {
        out.push(match result {
            Ok(site) => {
                let untouched = release.iter().any(|(s, _, untouched)| *s == site && *untouched);
                SiteRecovery { site, outcome: RecoveryOutcome::BackInService { untouched } }
            }
            Err((site, e)) => {
                let (detail, fix) = mask(&e);
                SiteRecovery { site, outcome: RecoveryOutcome::ReleaseFailed { detail, fix } }
            }
        });
    }
    out
}

/// Where an apply ended, for the report and the JSON summary.
#[derive(Debug)]
pub struct Summary {
    pub done: Vec<String>,
    pub failed: Vec<String>,
    pub not_started: Vec<String>,
    pub in_maintenance: Vec<String>,
    /// The signal that interrupted the run.
    pub interrupted: Option<&'static str>,
    /// Sites of the manifest no step touched (the run is not a success while they stay).
    pub blocked: Vec<String>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Success,
    Failure,
    Interrupted,
}

impl RunOutcome {
    /// As the summary event and the history record name it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Success => "success",
            RunOutcome::Failure => "failure",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

impl Summary {
    /// A step failed or a signal stopped the run (blocked sites aside).
    pub fn ended_early(&self) -> bool {
        !self.failed.is_empty() || self.interrupted.is_some()
    }

    /// Interrupted; else a success only when no step failed and no site stayed blocked.
    pub fn outcome(&self) -> RunOutcome {
        match (self.interrupted, self.failed.is_empty() && self.blocked.is_empty()) {
            (Some(_), _) => RunOutcome::Interrupted,
            (None, true) => RunOutcome::Success,
            (None, false) => RunOutcome::Failure,
        }
    }

    fn of(plan: &Plan, report: &ApplyReport) -> Summary {
        let states = &report.states;
        let finished = |s: &StepState| matches!(s, StepState::Finished(Ok(_)));
        let mut in_maintenance: Vec<String> = Vec::new();
        for (step, state) in plan.steps.iter().zip(states) {
            let Some(site) = step.site.clone() else { continue };
            match step.kind {
                StepKind::MaintenanceOn if finished(state) => in_maintenance.push(site),
                StepKind::MaintenanceOff if finished(state) => in_maintenance.retain(|s| *s != site),
                _ => {}
            }
        }
        in_maintenance.dedup();
        let ids = |pred: &dyn Fn(&StepState) -> bool| {
            plan.steps.iter().zip(states).filter(|(_, st)| pred(st)).map(|(s, _)| s.id.clone()).collect::<Vec<_>>()
        };
        Summary {
            done: ids(&|s| finished(s)),
            failed: ids(&|s| matches!(s, StepState::Finished(Err(_)))),
            not_started: ids(&|s| matches!(s, StepState::NotStarted)),
            in_maintenance,
            interrupted: report.interrupted,
            blocked: plan.blocked.iter().map(|b| b.site.clone()).collect(),
        }
    }
}

impl Applier<'_> {
    /// Where the run ended, once recovery is over: the steps' states, the sites the plan could
    /// not touch, a signal that came during recovery, and — after a failure or an interrupt —
    /// the maintenance flags read back from the sites (steps alone cannot tell, e.g. a
    /// maintenance-on whose `scheduler pause` failed).
    pub async fn summarize(&self, plan: &Plan, report: &ApplyReport, recoveries: &[SiteRecovery]) -> Summary {
        let mut summary = Summary::of(plan, report);
        summary.interrupted = self.interrupt.signal();
        if !summary.ended_early() {
            return summary;
        }
        match self.maintenance_flags().await {
            Some(flags) => {
                summary.in_maintenance = self
                    .p
                    .manifest
                    .sites
                    .iter()
                    .map(|s| s.name.clone())
                    .filter(|s| flags.get(s).is_some_and(|(maintenance, paused)| *maintenance || *paused))
                    .collect();
            }
            None => summary.in_maintenance.retain(|s| {
                !recoveries.iter().any(|r| matches!(r.outcome, RecoveryOutcome::BackInService { .. }) && r.site == *s)
            }),
        }
        summary
    }
}

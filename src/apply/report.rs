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
    /// `restored`, `restore_failed`, `left`, `new_site`, `back_in_service`, `release_failed`.
    pub kind: &'static str,
    pub detail: String,
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
    let ways = |site: &str| {
        format!(
            "\n  Ways forward for {site}: fix the migration and run `benchform apply` again; or revert the manifest \
             change and apply that — but only if no other site migrated to the new versions in this run (benchform \
             refuses a downgrade it can see; with branch refs it cannot)."
        )
    };
    let mut out = Vec::new();
    let mut release = Vec::new();
    for action in recovery::decide(plan, &end, policy) {
        match action {
            Action::NewSite { site } => out.push(SiteRecovery {
                kind: "new_site",
                detail: applier.redact(&format!(
                    "{site} was created in this run and holds no data yet: fix the cause and apply again, or drop it \
                     (`bench drop-site {site} --force --no-backup`)"
                )),
                site,
            }),
            Action::Restore { site } | Action::Leave { site } => {
                let (kind, what) = match applier.recover(&site).await {
                    Ok(Recovery::Restored(what)) => ("restored", format!("recovered: {what}")),
                    Ok(Recovery::Left(what)) => ("left", what),
                    Err(e) => ("restore_failed", format!("could not restore {site}: {}\n  = fix: {}", e.detail, e.fix)),
                };
                out.push(SiteRecovery { kind, detail: applier.redact(&format!("{what}{}", ways(&site))), site });
            }
            Action::BackInService { site, scheduler_was_paused, untouched } => {
                release.push((site, scheduler_was_paused, untouched));
            }
        }
    }
    let sites: Vec<(String, bool)> = release.iter().map(|(s, p, _)| (s.clone(), *p)).collect();
    for result in applier.back_in_service(&sites).await {
        out.push(match result {
            Ok(site) => SiteRecovery {
                detail: if release.iter().any(|(s, _, untouched)| *s == site && *untouched) {
                    format!("{site} is back in service on the image it ran before (it was not changed in this run)")
                } else {
                    format!(
                        "{site} is back in service on the image it ran before (it was not migrated; apps uninstalled \
                         in this run stay uninstalled)"
                    )
                },
                kind: "back_in_service",
                site,
            },
            Err((site, e)) => SiteRecovery {
                detail: applier
                    .redact(&format!("could not take {site} out of maintenance: {}\n  = fix: {}", e.detail, e.fix)),
                kind: "release_failed",
                site,
            },
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

impl Summary {
    pub fn of(plan: &Plan, report: &ApplyReport) -> Summary {
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
            blocked: Vec::new(),
        }
    }
}

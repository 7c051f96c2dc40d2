//! What an apply reports after its steps: recovery of failed sites, the summary (text and JSON),
//! blocked sites, and the history record.

use super::*;

/// The sites the plan could not touch: the run cannot be a success while they stay as they are.
pub(super) fn report_blocked(plan: &Plan, json: bool) {
    for b in plan.blocked.iter().filter(|_| json) {
        super::events::emit(super::events::Body::Blocked {
            site: b.site.clone(),
            detail: b.detail.clone(),
            fix: b.fix.clone(),
        });
    }
    if !json && !plan.blocked.is_empty() {
        output::err_line(crate::commands::plan::blocked_lines(plan).trim_start_matches('\n').trim_end());
    }
}

/// What was done for one site after the steps ended.
#[derive(Debug)]
pub(super) struct SiteRecovery {
    pub(super) site: String,
    /// `restored`, `restore_failed`, `left`, `new_site`, `back_in_service`, `release_failed`.
    pub(super) kind: &'static str,
    pub(super) detail: String,
}

/// After the steps (all in-flight work is over): carry out what `benchform_core::recovery`
/// decides — restore (or leave) the sites whose migrate failed after touching them, and put back
/// in service the sites this run took out of service and did not change.
pub(super) fn recover(
    rt: &tokio::runtime::Runtime,
    applier: &Applier<'_>,
    plan: &Plan,
    states: &[StepState],
) -> Vec<SiteRecovery> {
    use benchform_core::recovery::{self, Action, RunEnd, StepEnd};
    use benchform_manifest::model::OnMigrateFailure;
    let end = RunEnd {
        steps: plan
            .steps
            .iter()
            .zip(states)
            .map(|(s, st)| match st {
                StepState::NotStarted => StepEnd::NotStarted,
                StepState::Finished(Ok(Outcome::Done(_))) => StepEnd::Done { created: s.kind == StepKind::NewSite },
                StepState::Finished(Ok(Outcome::AlreadyDone(_))) => StepEnd::Done { created: false },
                StepState::Finished(Err(e)) => StepEnd::Failed { touched: e.touched, rolled_back: e.rolled_back },
            })
            .collect(),
        entered_maintenance: applier.entered_maintenance.lock().map(|e| e.clone()).unwrap_or_default(),
        interrupted: applier.interrupt.signal().is_some(),
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
                let (kind, what) = match rt.block_on(applier.recover(&site)) {
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
    for result in rt.block_on(applier.back_in_service(&sites)) {
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
pub(super) struct Summary {
    pub(super) done: Vec<String>,
    pub(super) failed: Vec<String>,
    pub(super) not_started: Vec<String>,
    pub(super) in_maintenance: Vec<String>,
    /// The signal that interrupted the run.
    pub(super) interrupted: Option<&'static str>,
    /// Sites of the manifest no step touched (the run is not a success while they stay).
    pub(super) blocked: Vec<String>,
}

impl Summary {
    pub(super) fn of(plan: &Plan, states: &[StepState]) -> Summary {
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
            interrupted: None,
            blocked: Vec::new(),
        }
    }

    pub(super) fn event(&self, recoveries: &[SiteRecovery]) -> super::events::Summary {
        let sites =
            |kind: &str| recoveries.iter().filter(|r| r.kind == kind).map(|r| r.site.clone()).collect::<Vec<_>>();
        super::events::Summary {
            outcome: match (&self.interrupted, self.failed.is_empty() && self.blocked.is_empty()) {
                (Some(_), _) => "interrupted",
                (None, true) => "success",
                (None, false) => "failure",
            }
            .to_string(),
            signal: self.interrupted.map(str::to_string),
            done: self.done.clone(),
            failed: self.failed.clone(),
            not_started: self.not_started.clone(),
            sites_in_maintenance: self.in_maintenance.clone(),
            restored: sites("restored"),
            back_in_service: sites("back_in_service"),
            blocked: self.blocked.clone(),
            next: (!self.failed.is_empty() || self.interrupted.is_some()).then(|| NEXT.to_string()),
        }
    }

    pub(super) fn print(&self, plan: &Plan, recoveries: &[SiteRecovery]) {
        if self.failed.is_empty() && self.interrupted.is_none() {
            match self.blocked.len() {
                0 => output::line(&format!("\nApply complete: {} step(s).", plan.steps.len())),
                n => output::line(&format!(
                    "\nApply done: {} step(s); {n} site(s) blocked, not touched (below): the deployment does not \
                     match benchform.yaml yet.",
                    plan.steps.len()
                )),
            }
            return;
        }
        for r in recoveries {
            output::err_line(&format!("  {}", r.detail));
        }
        output::err_line(&format!(
            "\nApply {}: {} of {} step(s) failed ({}); {} done, {} not started.",
            match self.interrupted {
                Some(signal) => format!("interrupted by {signal}"),
                None => "failed".to_string(),
            },
            self.failed.len(),
            plan.steps.len(),
            self.failed.join(", "),
            self.done.len(),
            self.not_started.len()
        ));
        if !self.not_started.is_empty() {
            output::err_line(&format!("Not started: {}.", self.not_started.join(", ")));
        }
        if !self.in_maintenance.is_empty() {
            output::err_line(&format!("Sites left in maintenance mode: {}.", self.in_maintenance.join(", ")));
        }
        output::err_line(&format!("Next: {NEXT}"));
    }
}

pub(super) const NEXT: &str = "fix the cause and run `benchform apply` again; done steps are not repeated.";

pub(super) fn history_record(
    p: &observe::Prepared,
    mine: &LockInfo,
    started: &str,
    plan: &Plan,
    states: &[StepState],
    applier: &Applier<'_>,
) -> history::Record {
    let steps = plan
        .steps
        .iter()
        .zip(states)
        .map(|(s, st)| {
            let (status, detail) = match st {
                StepState::NotStarted => ("not_started", None),
                StepState::Finished(Ok(Outcome::Done(what))) => ("done", Some(what.clone())),
                StepState::Finished(Ok(Outcome::AlreadyDone(what))) => ("already_done", Some(what.clone())),
                StepState::Finished(Err(e)) => ("failed", Some(format!("{} (fix: {})", e.detail, e.fix))),
            };
            history::StepRecord {
                id: s.id.clone(),
                status: status.to_string(),
                detail: detail.map(|d| applier.redact(&d)),
            }
        })
        .collect();
    let failed = states.iter().any(|s| matches!(s, StepState::Finished(Err(_))));
    history::Record {
        format_version: 1,
        id: mine.id.clone(),
        started: started.to_string(),
        finished: apply::now_utc(),
        who: mine.holder.clone(),
        project: p.manifest.project.clone(),
        manifest_sha256: benchform_core::tag::sha256_hex(&p.loaded.bytes),
        lock_sha256: benchform_core::tag::sha256_hex(&p.lock_bytes),
        image: p.desired.reference(),
        plan: mine.plan.clone(),
        outcome: match (applier.interrupt.signal(), failed || !plan.blocked.is_empty()) {
            (Some(_), _) => "interrupted",
            (None, true) => "failure",
            (None, false) => "success",
        }
        .to_string(),
        steps,
        backups: applier.copied.lock().map(|c| c.clone()).unwrap_or_default(),
    }
}

pub(super) async fn write_history(applier: &Applier<'_>, record: &history::Record) -> Vec<String> {
    let host = history::host_file(&backups_root(applier.p), &applier.p.manifest.project);
    let bench = applier.bench().await.ok();
    history::append(record, &host, bench.as_ref()).await
}

/// `<manifest folder>/<backups.dir>`.
pub fn backups_root(p: &observe::Prepared) -> std::path::PathBuf {
    p.loaded.dir.join(&p.manifest.backups.dir)
}

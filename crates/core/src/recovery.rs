//! What to do for the sites after an apply's steps ended: the decisions, pure. The executor
//! carries them out; tests cover them over scenarios (`tests/recovery.rs`).
//!
//! - A site whose migrate failed **after touching it** is restored from its backup (policy
//!   `restore`), or left as the migrate left it (policy `stop`) — unless this run created the site,
//!   which then holds no data. A migrate that did not touch the site (another migrate held its
//!   lock, it was interrupted, it timed out) is never restored under: it may still be running.
//! - Sites this run took out of service are put back in service on the image they ran before when
//!   the deploy failed its health gate and the previous image was redeployed (all of them), or
//!   when the run stopped before any deploy changed anything (those whose own steps never went past
//!   maintenance and backup). Otherwise they stay in maintenance: they may already run new code.
//!   A site whose data a rollback brought back to an older backup stays in maintenance whatever
//!   happened: the image it ran before is newer than its schema now.

use crate::plan::Plan;
use crate::step::StepKind;

/// How one step of the plan ended, as the executor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepEnd {
    NotStarted,
    /// Done, or already done before this run.
    Done {
        created: bool,
    },
    Failed {
        touched: bool,
        rolled_back: bool,
    },
}

/// What a run leaves for recovery to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// One per plan step, in plan order.
    pub steps: Vec<StepEnd>,
    /// Sites this run took out of service, each with whether its scheduler was paused already.
    pub entered_maintenance: Vec<(String, bool)>,
    /// The run was stopped by a signal.
    pub interrupted: bool,
}

/// What `policy.on_migrate_failure` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMigrateFailure {
    Restore,
    Stop,
}

/// One thing to do for one site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Restore the site from its backup and leave it in maintenance mode.
    Restore { site: String },
    /// Leave the failed site as it is, in maintenance mode (policy `stop`).
    Leave { site: String },
    /// The site was created in this run and holds no data: say so; nothing to restore.
    NewSite { site: String },
    /// Put the site back in service (scheduler resumed unless it was paused before the run).
    BackInService { site: String, scheduler_was_paused: bool, untouched: bool },
}

/// Decide, for every site the run concerned.
pub fn decide(plan: &Plan, end: &RunEnd, policy: OnMigrateFailure) -> Vec<Action> {
    let steps = || plan.steps.iter().zip(end.steps.iter().copied());
    let mut out = Vec::new();
    for (step, state) in steps() {
        let StepEnd::Failed { touched: true, .. } = state else { continue };
        // A canary whose smoke test failed migrated: it is restored as a failed migrate is.
        let (StepKind::Migrate | StepKind::Smoke, Some(site)) = (step.kind, step.site.clone()) else { continue };
        let created_here = steps().any(|(s, st)| {
            s.kind == StepKind::NewSite && s.site.as_deref() == Some(&site) && st == StepEnd::Done { created: true }
        });
        out.push(match (created_here, policy) {
            (true, _) => Action::NewSite { site },
            (false, OnMigrateFailure::Restore) => Action::Restore { site },
            (false, OnMigrateFailure::Stop) => Action::Leave { site },
        });
    }
    let failed = end.interrupted || end.steps.iter().any(|s| matches!(s, StepEnd::Failed { .. }));
    let rolled_back =
        steps().any(|(s, st)| s.kind == StepKind::Deploy && matches!(st, StepEnd::Failed { rolled_back: true, .. }));
    // A deploy that failed before `compose up` changed nothing.
    let deployed = steps().any(|(s, st)| {
        s.kind == StepKind::Deploy
            && matches!(st, StepEnd::Done { .. } | StepEnd::Failed { touched: true, rolled_back: false })
    });
    let untouched = |site: &str| {
        steps()
            .filter(|(s, _)| s.site.as_deref() == Some(site))
            .all(|(s, st)| s.kind.leaves_site_untouched() || st == StepEnd::NotStarted)
    };
    // A site whose data went back to an older backup (a rollback by revert) never serves the
    // previous, newer image again: its schema is older than that code; nor does a canary that
    // migrated to the new code before the deploy: its schema is newer than the previous image.
    let restored = |site: &str| {
        steps().any(|(s, st)| {
            (s.kind == StepKind::Restore || (s.kind == StepKind::Migrate && s.canary))
                && s.site.as_deref() == Some(site)
                && !matches!(st, StepEnd::NotStarted | StepEnd::Failed { touched: false, .. })
        })
    };
    let release = rolled_back || (failed && !deployed);
    for (site, paused) in &end.entered_maintenance {
        let untouched = untouched(site);
        if release && ((rolled_back && !restored(site)) || untouched) {
            out.push(Action::BackInService { site: site.clone(), scheduler_was_paused: *paused, untouched });
        }
    }
    out
}

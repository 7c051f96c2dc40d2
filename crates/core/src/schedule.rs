//! The schedule apply runs a plan by — one definition for the planner (which lists steps in this
//! order), apply's executor and the views, so that the plan shows what apply does.
//!
//! A plan is a sequence of **phases**: every step that concerns no single site (build, verify,
//! push, deploy, refresh-assets) is a phase of its own; each run of per-site steps between them
//! is one phase whose steps are grouped by site. A site's steps run in order; `parallelism`
//! sites run at a time, in the order they first appear. No phase starts before the previous one
//! ended, and none starts after a failure.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::step::Step;

/// One phase of a plan, by step index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A step that concerns no single site, alone.
    Step(usize),
    /// Each site's steps in order, sites `parallelism` at a time.
    Sites(Vec<SiteSteps>),
}

/// One site's steps within a phase, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSteps {
    pub site: String,
    pub steps: Vec<usize>,
}

/// The phases of `steps`, in order.
pub fn phases(steps: &[Step]) -> Vec<Phase> {
    let mut out: Vec<Phase> = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let Some(site) = &s.site else {
            out.push(Phase::Step(i));
            continue;
        };
        // A step that waits for another site's step of the current phase (the other sites
        // after the canaries) starts a phase of its own.
        let waits_for_another_site = match out.last() {
            Some(Phase::Sites(groups)) => groups
                .iter()
                .filter(|g| g.site != *site)
                .flat_map(|g| g.steps.iter())
                .any(|j| s.depends_on.contains(&steps[*j].id)),
            _ => false,
        };
        if !matches!(out.last(), Some(Phase::Sites(_))) || waits_for_another_site {
            out.push(Phase::Sites(Vec::new()));
        }
        if let Some(Phase::Sites(groups)) = out.last_mut() {
            match groups.iter_mut().find(|g| g.site == *site) {
                Some(g) => g.steps.push(i),
                None => groups.push(SiteSteps { site: site.clone(), steps: vec![i] }),
            }
        }
    }
    out
}

/// `steps` reordered so that each phase lists its sites' steps site by site: the order apply
/// runs them in with one site at a time. Within a site the order is kept, and no step depends
/// on another site's step of the same phase, so every dependency still points backwards.
pub fn in_run_order(steps: Vec<Step>) -> Vec<Step> {
    let order: Vec<usize> = phases(&steps)
        .into_iter()
        .flat_map(|p| match p {
            Phase::Step(i) => vec![i],
            Phase::Sites(groups) => groups.into_iter().flat_map(|g| g.steps).collect(),
        })
        .collect();
    let mut slots: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect()
}

/// The schedule on the wire (the JSON plan's `schedule`): phases by step id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// How many sites of a phase run at the same time (`--parallelism`).
    pub parallelism: u16,
    pub phases: Vec<PhaseDoc>,
    /// Each site taken out of service (maintenance mode and paused scheduler): from which step
    /// until which, or until none (it stays in maintenance mode).
    pub out_of_service: Vec<Window>,
}

/// A phase by step id: one step, or each site's steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhaseDoc {
    /// A step that concerns no single site, run alone (absent for a phase of sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Each site's steps in order (empty for a single step).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sites: Vec<SitePhaseDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SitePhaseDoc {
    pub site: String,
    pub steps: Vec<String>,
}

/// A site's time out of service, by step id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub site: String,
    /// The `maintenance-on` step.
    pub from: String,
    /// The `maintenance-off` step; null when the site stays in maintenance mode (set outside
    /// benchform).
    pub until: Option<String>,
}

impl Schedule {
    pub fn of(steps: &[Step], parallelism: u16) -> Schedule {
        let id = |i: usize| steps[i].id.clone();
        let phases = phases(steps)
            .into_iter()
            .map(|p| match p {
                Phase::Step(i) => PhaseDoc { step: Some(id(i)), sites: Vec::new() },
                Phase::Sites(groups) => PhaseDoc {
                    step: None,
                    sites: groups
                        .into_iter()
                        .map(|g| SitePhaseDoc { site: g.site, steps: g.steps.into_iter().map(id).collect() })
                        .collect(),
                },
            })
            .collect();
        let out_of_service = steps
            .iter()
            .filter(|s| s.kind == crate::step::StepKind::MaintenanceOn)
            .filter_map(|on| {
                let site = on.site.clone()?;
                let until = steps
                    .iter()
                    .find(|s| s.kind == crate::step::StepKind::MaintenanceOff && s.site.as_deref() == Some(&site))
                    .map(|s| s.id.clone());
                Some(Window { site, from: on.id.clone(), until })
            })
            .collect();
        Schedule { parallelism, phases, out_of_service }
    }
}

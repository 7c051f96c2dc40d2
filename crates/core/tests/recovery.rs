//! Recovery decisions over scenarios: what happens to each site after a run ended.

use benchform_core::plan::{Plan, Step, StepKind, step_id};
use benchform_core::recovery::{Action, OnMigrateFailure, RunEnd, StepEnd, decide};

const DONE: StepEnd = StepEnd::Done { created: false };
const CREATED: StepEnd = StepEnd::Done { created: true };
const NOT: StepEnd = StepEnd::NotStarted;
const TOUCHED: StepEnd = StepEnd::Failed { touched: true, rolled_back: false };
const UNTOUCHED: StepEnd = StepEnd::Failed { touched: false, rolled_back: false };
const ROLLED_BACK: StepEnd = StepEnd::Failed { touched: true, rolled_back: true };

fn step(kind: StepKind, site: Option<&str>) -> Step {
    Step {
        id: step_id(kind, site, None),
        kind,
        site: site.map(str::to_string),
        app: None,
        reason: String::new(),
        destructive: kind.destructive(),
        depends_on: vec![],
        services: vec![],
        service_changes: vec![],
        preview: None,
        restore: None,
        canary: false,
    }
}

/// A plan from `(kind, site)` pairs, and how each step ended.
fn run(
    steps: &[(StepKind, Option<&str>, StepEnd)],
    entered: &[&str],
    interrupted: bool,
    policy: OnMigrateFailure,
) -> String {
    let plan = Plan {
        project: "acme".into(),
        repository: "r/acme".into(),
        tag: "bf1-x".into(),
        steps: steps.iter().map(|(k, s, _)| step(*k, *s)).collect(),
        blocked: vec![],
        drift: vec![],
    };
    let end = RunEnd {
        steps: steps.iter().map(|(_, _, e)| *e).collect(),
        entered_maintenance: entered.iter().map(|s| (s.to_string(), false)).collect(),
        interrupted,
    };
    let actions = decide(&plan, &end, policy);
    if actions.is_empty() {
        return "(nothing to do)\n".to_string();
    }
    actions
        .iter()
        .map(|a| match a {
            Action::Restore { site } => format!("restore {site}\n"),
            Action::Leave { site } => format!("leave {site} as the migrate left it\n"),
            Action::NewSite { site } => format!("{site} was created in this run: nothing to restore\n"),
            Action::BackInService { site, untouched, .. } => {
                format!("back in service {site}{}\n", if *untouched { " (untouched)" } else { "" })
            }
        })
        .collect()
}

use OnMigrateFailure::{Restore, Stop};
use StepKind::*;

/// A release: image, maintenance and backups for a and b, deploy, then each site's migrate.
fn release(a_migrate: StepEnd, b_migrate: StepEnd, deploy: StepEnd) -> Vec<(StepKind, Option<&'static str>, StepEnd)> {
    let after = |e: StepEnd| if deploy == DONE { e } else { NOT };
    vec![
        (Build, None, DONE),
        (Verify, None, DONE),
        (Push, None, DONE),
        (MaintenanceOn, Some("a"), DONE),
        (Backup, Some("a"), DONE),
        (MaintenanceOn, Some("b"), DONE),
        (Backup, Some("b"), DONE),
        (Deploy, None, deploy),
        (RefreshAssets, None, after(DONE)),
        (Migrate, Some("a"), after(a_migrate)),
        (MaintenanceOff, Some("a"), after(if a_migrate == DONE { DONE } else { NOT })),
        (Migrate, Some("b"), after(b_migrate)),
        (MaintenanceOff, Some("b"), after(if b_migrate == DONE { DONE } else { NOT })),
    ]
}

#[test]
fn recovery_scenarios() {
    let ab = &["a", "b"];
    let mut out = String::new();
    let mut case = |name: &str, text: String| out.push_str(&format!("## {name}\n{text}\n"));

    case("everything done", run(&release(DONE, DONE, DONE), ab, false, Restore));
    case(
        "a's migrate failed after touching it, policy restore: a restored, b stays in maintenance (new code)",
        run(&release(TOUCHED, NOT, DONE), ab, false, Restore),
    );
    case("the same under policy stop", run(&release(TOUCHED, NOT, DONE), ab, false, Stop));
    case(
        "a's migrate never started its work (another migrate holds the site's lock): nothing restored under it",
        run(&release(UNTOUCHED, NOT, DONE), ab, false, Restore),
    );
    case(
        "parallel: a failed after touching, b locked out: only a restored",
        run(&release(TOUCHED, UNTOUCHED, DONE), ab, false, Restore),
    );
    case(
        "the health gate failed and the previous image is back: every site back in service",
        run(&release(NOT, NOT, ROLLED_BACK), ab, false, Restore),
    );
    case(
        "the deploy failed before compose up: untouched sites back in service",
        run(&release(NOT, NOT, UNTOUCHED), ab, false, Restore),
    );
    case(
        "interrupted during the deploy (it may have recreated services): sites stay in maintenance",
        run(&release(NOT, NOT, TOUCHED), ab, true, Restore),
    );
    case(
        "interrupted after the deploy, before any migrate: sites stay in maintenance (new code)",
        run(&release(NOT, NOT, DONE), ab, true, Restore),
    );
    case(
        "interrupted before the deploy: sites back in service",
        run(
            &[
                (MaintenanceOn, Some("a"), DONE),
                (Backup, Some("a"), DONE),
                (Deploy, None, NOT),
                (Migrate, Some("a"), NOT),
                (MaintenanceOff, Some("a"), NOT),
            ],
            &["a"],
            true,
            Restore,
        ),
    );
    case(
        "a new site's migrate failed: nothing to restore",
        run(&[(Deploy, None, DONE), (NewSite, Some("n"), CREATED), (Migrate, Some("n"), TOUCHED)], &[], false, Restore),
    );
    case(
        "new-site found the site existing (already done), its migrate failed: restored, never dropped",
        run(&[(Deploy, None, DONE), (NewSite, Some("n"), DONE), (Migrate, Some("n"), TOUCHED)], &[], false, Restore),
    );
    case(
        "no deploy in the plan (an app added to one site): a restored, b (only maintenance and backup) back in service",
        run(
            &[
                (MaintenanceOn, Some("a"), DONE),
                (Backup, Some("a"), DONE),
                (InstallApp, Some("a"), DONE),
                (Migrate, Some("a"), TOUCHED),
                (MaintenanceOn, Some("b"), DONE),
                (Backup, Some("b"), DONE),
                (Migrate, Some("b"), NOT),
            ],
            ab,
            false,
            Restore,
        ),
    );
    case(
        "an uninstall ran before a failure ahead of the deploy: that site stays in maintenance, the untouched one is released",
        run(
            &[
                (MaintenanceOn, Some("a"), DONE),
                (Backup, Some("a"), DONE),
                (UninstallApp, Some("a"), DONE),
                (MaintenanceOn, Some("b"), DONE),
                (Backup, Some("b"), TOUCHED),
                (Deploy, None, NOT),
            ],
            ab,
            false,
            Restore,
        ),
    );
    case(
        "a site already in maintenance before the run is never released by it",
        run(
            &[(MaintenanceOn, Some("a"), DONE), (Backup, Some("a"), TOUCHED), (Deploy, None, NOT)],
            &[],
            false,
            Restore,
        ),
    );
    insta::assert_snapshot!(out);
}

//! `benchform plan`: observe, plan, and show the steps apply would take.

use benchform_bench::Refresh;
use benchform_core::fingerprint::WorldFingerprint;
use benchform_core::plan::{self, Plan};
use benchform_core::status;

use crate::Status;
use crate::cli::PlanArgs;
use crate::observe;
use crate::plan_file::{PlanInputs, document};
use crate::render;
use crate::shell::Shell;
use crate::views::plan::print;

pub fn run(shell: &Shell, args: &PlanArgs) -> Status {
    let p = match observe::prepare(shell, args.manifest.file.as_deref(), true) {
        Ok(p) => p,
        Err(status) => return status,
    };
    // Every site's database is read either way (the installed set Frappe uses); `--refresh full`
    // asks bench itself, site by site.
    let refresh = if args.refresh.is_some() { Refresh::Full } else { Refresh::Cheap };
    // One runtime for the session's whole life: its engine connection belongs to it.
    let runtime = crate::runtime();
    let (session, observed) = match runtime.block_on(p.observe(refresh)) {
        Ok(observed) => observed,
        Err(e) => return observe::failed(shell, &e),
    };
    let inputs = PlanInputs {
        allow_downgrade: args.allow_downgrade,
        parallelism: args.parallelism,
        release_maintenance: args.release_maintenance.clone(),
        allow_new_project: args.allow_new_project,
        allow_restore: args.allow_restore,
    };
    let mut plan = match plan_for(shell, &p, &observed, &inputs) {
        Ok(plan) => plan,
        Err(problems) => {
            shell.err_line(&format!("\nNo plan: {problems} problem(s) make the deployment unsafe to change."));
            return Status::Failure;
        }
    };
    // What each migrate will run: informs, never changes a step.
    crate::preview::attach(&runtime, &session, &p, &observed, &mut plan);
    if let Some(out) = &args.out {
        let fingerprint = WorldFingerprint::of(&p.loaded.bytes, &p.lock_bytes, &p.desired.reference(), &observed);
        if let Err(e) = std::fs::write(out, render::json(&document(&plan, &inputs, Some(fingerprint)))) {
            return shell.error(
                &format!("cannot write the plan to {}: {e}", out.display()),
                "pass -o with a path in a folder you can write to",
            );
        }
    }
    print(shell, &plan, &inputs, args.format);
    // Secrets are checked, not required: pull-request CI plans without production secrets, and
    // apply stops on the first one missing before anything changes.
    for (what, fix) in crate::apply::missing_secrets(&plan, &p) {
        shell.warn(&format!("{what}: apply will stop before its first step"), Some(&fix));
    }
    if args.detailed_exitcode && !plan.converged() { Status::Changes } else { Status::Success }
}

/// The planner's plan for what was observed (drift included), made with `inputs`; when a guard
/// refuses, each problem is printed and their number returned.
pub fn plan_for(
    shell: &Shell,
    p: &observe::Prepared,
    observed: &status::Observed,
    inputs: &PlanInputs,
) -> Result<Plan, usize> {
    let drift = status::compare(&p.manifest, Some(&p.lock), &p.desired, observed).drift;
    plan::plan(&p.desired, observed, &inputs.options(), drift).map_err(|errors| {
        for e in &errors {
            shell.err_line(&format!("error: {e}"));
        }
        errors.len()
    })
}

//! `benchform apply [PLAN_FILE]`: carry out the plan — a fresh one, confirmed, or exactly a saved
//! one whose world has not moved.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use benchform_bench::Refresh;
use benchform_core::fingerprint::WorldFingerprint;
use benchform_core::plan::{self, Plan, Step};
use benchform_core::status;

use crate::Status;
use crate::apply::{self, Applier, ApplyReport, Outcome, RunOutcome, StepError, Summary};
use crate::cli::{ApplyArgs, Format};
use crate::history;
use crate::observe;
use crate::output;
use crate::plan_file::PlanInputs;
use crate::shell::Shell;
use crate::views::apply::ApplyView;
use benchform_docker::lock::LockInfo;

mod lock;
mod record;

pub use lock::force_unlock;
use lock::{holder, hostname, lock_id, take_lock};
use record::{history_record, write_history};

/// How often a long step without a spinner says it is still running (30 s;
/// `BENCHFORM_HEARTBEAT_SECS` overrides it).
fn heartbeat_every() -> Duration {
    let secs = std::env::var("BENCHFORM_HEARTBEAT_SECS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|s| *s > 0);
    Duration::from_secs(secs.unwrap_or(30))
}

pub fn run(shell: &Shell, args: &ApplyArgs) -> Status {
    if let Some(file) = &args.plan_file
        && (args.allow_downgrade
            || args.allow_new_project
            || args.allow_restore
            || args.parallelism.is_some()
            || !args.release_maintenance.is_empty())
    {
        return shell.error(
            &format!(
                "--allow-downgrade, --allow-new-project, --allow-restore, --parallelism and --release-maintenance \
                 change the plan, so {} keeps the ones it was made with",
                file.display()
            ),
            "apply the file without them, or make the plan again with them: `benchform plan -o FILE \
             [--parallelism N] [--allow-downgrade] [--allow-new-project] [--release-maintenance SITE]`",
        );
    }
    let p = match observe::prepare(shell, args.manifest.file.as_deref(), true) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let rt = crate::runtime();
    // The engine and compose, connected once for the whole command.
    let session = match rt.block_on(observe::Session::open(&p.manifest, &p.paths)) {
        Ok(s) => s,
        Err(e) => return observe::failed(shell, &e),
    };
    let mine = LockInfo {
        id: lock_id(),
        holder: holder(),
        since: apply::now_utc(),
        plan: args
            .plan_file
            .as_ref()
            .map_or_else(|| format!("apply {}", p.loaded.display), |f| format!("apply {}", f.display())),
        host: hostname(),
        pid: std::process::id(),
    };
    let engine = &session.engine;
    let project = p.manifest.project.clone();
    if let Err(status) = rt.block_on(take_lock(shell, engine, &project, &mine, Duration::from_secs(args.lock_timeout)))
    {
        return status;
    }
    let interrupt = watch_signals(shell, &rt, engine.clone(), project.clone(), mine.id.clone());
    let status = rt.block_on(locked(shell, args, &p, session.clone(), &mine, interrupt));
    if let Err(e) = rt.block_on(engine.unlock(&project, &mine.id)) {
        shell.warn(
            &format!("could not release the apply lock: {e}"),
            Some(&format!("`benchform force-unlock {}`", mine.id)),
        );
    }
    status
}

/// SIGINT/SIGTERM: before the first step nothing has changed, so the lock is released and apply
/// ends; once steps run, the run ends in order (no new step, no waiting for running ones, no
/// restore under a command that may still run, then the summary, the history and the lock).
fn watch_signals(
    shell: &Shell,
    rt: &tokio::runtime::Runtime,
    engine: benchform_docker::Engine,
    project: String,
    lock_id: String,
) -> std::sync::Arc<apply::Interrupt> {
    let interrupt: std::sync::Arc<apply::Interrupt> = Default::default();
    let watcher = interrupt.clone();
    let shell = shell.clone();
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let name = tokio::select! { _ = int.recv() => "SIGINT", _ = term.recv() => "SIGTERM" };
        if !watcher.started() {
            let _ = engine.unlock(&project, &lock_id).await;
            shell.err_line(&format!("\n{name}: stopped before any step; nothing was changed, the lock is released"));
            // An exit outside main: nothing has started that could be left half-done.
            #[allow(clippy::exit)]
            std::process::exit(130);
        }
        watcher.raise(name);
        shell.err_line(&format!(
            "\n{name}: stopping: no new step starts; the summary and history follow (a second signal stops at once)"
        ));
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        shell.err_line(
            "second signal: stopping at once; the apply lock stays until the next apply on this machine releases it",
        );
        // The user asked twice, and nothing else may run.
        #[allow(clippy::exit)]
        std::process::exit(130);
    });
    interrupt
}

/// Everything an apply does while it holds the project's lock.
async fn locked(
    shell: &Shell,
    args: &ApplyArgs,
    p: &observe::Prepared,
    session: observe::Session,
    mine: &LockInfo,
    interrupt: std::sync::Arc<apply::Interrupt>,
) -> Status {
    let mut view = ApplyView::new(shell, args.format == Format::Json);
    // Every site's installed apps from its database, as plan reads them: a hand change cannot
    // slip by, and the cost stays two execs.
    let observed = match observe::observe(&session, p, Refresh::Cheap).await {
        Ok(o) => o,
        Err(e) => return observe::failed(shell, &e),
    };
    let (plan, inputs) = match &args.plan_file {
        Some(file) => match saved(shell, file, p, &observed) {
            Ok(fresh) => fresh,
            Err(status) => return status,
        },
        None => {
            let inputs = PlanInputs {
                allow_downgrade: args.allow_downgrade,
                parallelism: args.parallelism.unwrap_or(1),
                release_maintenance: args.release_maintenance.clone(),
                allow_new_project: args.allow_new_project,
                allow_restore: args.allow_restore,
            };
            match crate::commands::plan::plan_for(shell, p, &observed, &inputs) {
                Ok(plan) => (plan, inputs),
                Err(_) => return Status::Failure,
            }
        }
    };
    if plan.converged() {
        view.no_changes();
        return Status::Success;
    }
    if plan.is_empty() {
        view.only_blocked(&plan);
        return Status::Failure;
    }
    view.plan(&plan, &inputs, args.plan_file.is_some());
    if args.plan_file.is_none() && !args.auto_approve && !confirm(shell) {
        return Status::Failure;
    }
    let options = apply::Options {
        ready_timeout: Duration::from_secs(args.ready_timeout),
        health_timeout: Duration::from_secs(args.health_timeout),
        parallelism: usize::from(inputs.parallelism),
        damaged: observed.sites.iter().filter(|s| s.damaged.is_some()).map(|s| s.name.clone()).collect(),
        migrate_timeout: (args.migrate_timeout > 0).then(|| Duration::from_secs(args.migrate_timeout)),
        hold_maintenance: plan
            .steps
            .iter()
            .filter(|s| s.kind == benchform_core::plan::StepKind::MaintenanceOff)
            .filter_map(|s| s.site.clone())
            .collect(),
        release_maintenance: inputs.release_maintenance.iter().cloned().collect(),
        restore_points: plan
            .steps
            .iter()
            .filter_map(|s| Some((s.site.clone()?, s.restore.as_ref()?.backup.clone())))
            .collect(),
    };
    let mut applier = Applier::new(p, session, options);
    applier.interrupt = interrupt;
    output::redact_in_logs(applier.masker().clone());
    if let Err(e) = applier.preflight(&plan).await {
        shell.error(&applier.redact(&e.detail), &applier.redact(&e.fix));
        shell.err_line("Nothing was changed.");
        return Status::Failure;
    }
    let started = apply::now_utc();
    view.steps_begin();
    let report = {
        let running: std::sync::Mutex<Vec<(Step, std::time::Instant)>> = Default::default();
        let progress = |step: &Step, result: Option<&Result<Outcome, StepError>>, elapsed: Duration| {
            if let Ok(mut r) = running.lock() {
                match result {
                    None => r.push((step.clone(), std::time::Instant::now())),
                    Some(_) => r.retain(|(s, _)| s.id != step.id),
                }
            }
            match result {
                None => view.step_started(step),
                Some(r) => view.step_finished(step, r, elapsed, applier.masker()),
            }
        };
        applier.interrupt.start();
        let run = applier.run(&plan, &progress);
        if view.needs_heartbeat() {
            // Without a spinner (CI logs, JSON), a step that runs long says so every 30 s: a real
            // build or migrate can be silent for many minutes.
            let beat = heartbeat(&view, &running, &applier);
            tokio::select! { report = run => report, never = beat => match never {} }
        } else {
            run.await
        }
    };
    view.steps_end();
    // A canary container still up (the run stopped before the deploy) goes before recovery.
    applier.drop_canary().await;

    let recoveries = apply::recover(&applier, &plan, &report).await;
    let summary = applier.summarize(&plan, &report, &recoveries).await;
    let record = history_record(p, mine, &started, &plan, &report, &summary, &applier);
    for warning in write_history(&applier, &record).await {
        view.warning(&applier.redact(&warning));
    }
    view.end(&plan, &summary, &recoveries);
    if summary.outcome() == RunOutcome::Success { Status::Success } else { Status::Failure }
}

/// Every `heartbeat_every()`, each step running at least that long says so. Never returns.
async fn heartbeat(
    view: &ApplyView,
    running: &std::sync::Mutex<Vec<(Step, std::time::Instant)>>,
    applier: &Applier<'_>,
) -> std::convert::Infallible {
    let every = heartbeat_every();
    loop {
        tokio::time::sleep(every).await;
        let now: Vec<(Step, Duration)> =
            running.lock().map(|r| r.iter().map(|(s, t)| (s.clone(), t.elapsed())).collect()).unwrap_or_default();
        for (step, elapsed) in now.into_iter().filter(|(_, e)| *e >= every) {
            view.progress(&step, elapsed, applier.last_line(&step).as_deref());
        }
    }
}

/// A saved plan, checked: readable, unedited (digest), for this project, made from the world as it
/// is now (fingerprint), and exactly the steps the planner produces now from the manifest, the
/// lock, the observed world and the inputs saved with it. What runs is the planner's own plan,
/// so no value of the file reaches a command.
fn saved(
    shell: &Shell,
    file: &std::path::Path,
    p: &observe::Prepared,
    observed: &status::Observed,
) -> Result<(Plan, PlanInputs), Status> {
    let shown = output::escape(&file.display().to_string());
    let doc = crate::plan_file::read_saved_plan(file).map_err(|e| shell.error(&e.to_string(), e.fix()))?;
    let Some(then) = &doc.fingerprint else {
        return Err(shell.error(
            &format!("{shown} has no world fingerprint (it was not saved with `plan -o`)"),
            "save it with `benchform plan -o FILE`",
        ));
    };
    if doc.project != p.manifest.project {
        return Err(shell.error(
            &format!(
                "{shown} is a plan for project {}, but the manifest's project is {}",
                doc.project, p.manifest.project
            ),
            "apply it with the manifest it was made from (-f FILE), or make a plan for this one",
        ));
    }
    let now = WorldFingerprint::of(&p.loaded.bytes, &p.lock_bytes, &p.desired.reference(), observed);
    let changes = then.changes(&now);
    if !changes.is_empty() {
        let moved: String = changes.iter().map(|c| format!("\n  - {c}")).collect();
        return Err(shell.error(
            &format!("the saved plan {shown} is stale; since it was made:{moved}"),
            "run `benchform plan -o FILE` again, review it, and apply that",
        ));
    }
    let fresh = crate::commands::plan::plan_for(shell, p, observed, &doc.inputs).map_err(|_| Status::Failure)?;
    let image = format!("{}:{}", doc.image.repository, doc.image.tag);
    let difference = if image != p.desired.reference() {
        Some(format!("it deploys {image}, the manifest and lock ask for {}", p.desired.reference()))
    } else {
        plan::first_difference(&doc.steps, &fresh.steps)
    };
    if let Some(d) = difference {
        return Err(shell.error(
            &format!("{shown} is not the plan benchform makes for this world: {d}"),
            "make the plan again with `benchform plan -o FILE`, review it, and apply that file unchanged",
        ));
    }
    Ok((fresh, doc.inputs))
}

/// Ask on the terminal; without one, refuse (CI must say --auto-approve or apply a saved plan).
fn confirm(shell: &Shell) -> bool {
    if !std::io::stdin().is_terminal() {
        shell.error(
            "no terminal to confirm on",
            "pass --auto-approve, or apply a reviewed plan saved with `benchform plan -o FILE`",
        );
        return false;
    }
    // On standard error, so that standard output stays the plan (or JSON events) alone.
    shell.err("\nApply these steps? Only `yes` is accepted: ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        true
    } else {
        shell.err_line("Apply cancelled.");
        false
    }
}

//! `benchform apply [PLAN_FILE]`: carry out the plan — a fresh one, confirmed, or exactly a saved
//! one whose world has not moved.

use std::io::{BufRead, IsTerminal};
use std::time::Duration;

use benchform_bench::Refresh;
use benchform_core::fingerprint::WorldFingerprint;
use benchform_core::plan::{self, Plan, Step, StepKind};
use benchform_core::status;

use crate::Status;
use crate::apply::{self, Applier, Outcome, Recovery, StepError, StepState};
use crate::cli::{ApplyArgs, Format, PlanFormat};
use crate::commands::plan::{PlanInputs, print};
use crate::history;
use crate::observe;
use crate::output;
use benchform_docker::lock::LockInfo;

pub mod events;
mod lock;
mod report;

use events::{Body, StepStatus};

pub use lock::force_unlock;
use lock::{holder, hostname, lock_id, unlabelled_lock};
use report::{Summary, history_record, recover, report_blocked, write_history};

/// How often a long step without a spinner says it is still running (30 s;
/// `BENCHFORM_HEARTBEAT_SECS` overrides it).
fn heartbeat_every() -> Duration {
    let secs = std::env::var("BENCHFORM_HEARTBEAT_SECS").ok().and_then(|v| v.parse::<u64>().ok()).filter(|s| *s > 0);
    Duration::from_secs(secs.unwrap_or(30))
}

pub fn run(args: &ApplyArgs) -> Status {
    if let Some(file) = &args.plan_file
        && (args.allow_downgrade || args.parallelism.is_some())
    {
        output::err_line(&format!(
            "error: --allow-downgrade and --parallelism change the plan, so {} keeps the ones it was made with\n  \
             = fix: apply the file without them, or make the plan again with them: `benchform plan -o FILE \
             [--parallelism N] [--allow-downgrade]`",
            output::escape(&file.display().to_string())
        ));
        return Status::Failure;
    }
    let p = match observe::prepare(args.manifest.file.as_deref(), true) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let rt = crate::runtime();
    let engine = match rt.block_on(observe::engine()) {
        Ok(e) => e,
        Err(e) => return observe::failed(&e),
    };
    let project = p.manifest.project.clone();
    let host = hostname();
    let mine = LockInfo {
        id: lock_id(),
        holder: holder(),
        since: apply::now_utc(),
        plan: args
            .plan_file
            .as_ref()
            .map_or_else(|| format!("apply {}", p.loaded.display), |f| format!("apply {}", f.display())),
        host: host.clone(),
        pid: std::process::id(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(args.lock_timeout);
    loop {
        match rt.block_on(engine.try_lock(&project, &mine)) {
            Ok(None) => break,
            // A lock left by an apply of this machine that died: release it and go on.
            Ok(Some(other)) if other.is_dead_here(&host) => {
                output::err_line(&format!(
                    "warning: releasing the lock of a crashed apply ({}, pid {}, since {}); this apply heals what it left",
                    other.holder, other.pid, other.since
                ));
                if let Err(e) = rt.block_on(engine.unlock(&project, &other.id)) {
                    output::err_line(&format!(
                        "error: cannot release the stale lock: {e}\n  = fix: check `docker info`, then `benchform force-unlock {}`",
                        other.id
                    ));
                    return Status::Failure;
                }
            }
            Ok(Some(other)) if other.is_unlabelled() => {
                output::err_line(&unlabelled_lock(&project));
                return Status::Failure;
            }
            Ok(Some(other)) if std::time::Instant::now() >= deadline => {
                output::err_line(&format!(
                    "error: project {project} is locked by another apply: {} since {} ({}), lock ID {}\n  = fix: wait for it, or \
                     pass --lock-timeout SECONDS; if that apply crashed, run `benchform force-unlock {}`",
                    other.holder, other.since, other.plan, other.id, other.id
                ));
                return Status::Failure;
            }
            Ok(Some(_)) => std::thread::sleep(std::time::Duration::from_secs(1)),
            Err(e) => {
                output::err_line(&format!(
                    "error: cannot take the apply lock: {e}\n  = fix: check that the engine answers (`docker info`) and that benchform may create volumes, then apply again"
                ));
                return Status::Failure;
            }
        }
    }
    // SIGINT/SIGTERM: before the first step nothing has changed, so the lock is released and
    // apply ends; once steps run, the run ends in order (no new step, no waiting for running ones,
    // no restore under a command that may still run, then the summary, the history and the lock).
    let interrupt: std::sync::Arc<apply::Interrupt> = Default::default();
    let watcher = interrupt.clone();
    let (unlock_engine, unlock_project, unlock_id) = (engine.clone(), project.clone(), mine.id.clone());
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let name = tokio::select! { _ = int.recv() => "SIGINT", _ = term.recv() => "SIGTERM" };
        if !watcher.started() {
            let _ = unlock_engine.unlock(&unlock_project, &unlock_id).await;
            output::err_line(&format!("\n{name}: stopped before any step; nothing was changed, the lock is released"));
            // An exit outside main: nothing has started that could be left half-done.
            #[allow(clippy::exit)]
            std::process::exit(130);
        }
        watcher.raise(name);
        output::err_line(&format!(
            "\n{name}: stopping: no new step starts; the summary and history follow (a second signal stops at once)"
        ));
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        output::err_line(
            "second signal: stopping at once; the apply lock stays until the next apply on this machine releases it",
        );
        // The user asked twice, and nothing else may run.
        #[allow(clippy::exit)]
        std::process::exit(130);
    });
    let status = locked(args, &p, &rt, engine.clone(), &mine, interrupt);
    if let Err(e) = rt.block_on(engine.unlock(&project, &mine.id)) {
        output::err_line(&format!(
            "warning: could not release the apply lock: {e}\n  = fix: `benchform force-unlock {}`",
            mine.id
        ));
    }
    status
}

fn locked(
    args: &ApplyArgs,
    p: &observe::Prepared,
    rt: &tokio::runtime::Runtime,
    engine: benchform_docker::Engine,
    mine: &LockInfo,
    interrupt: std::sync::Arc<apply::Interrupt>,
) -> Status {
    let json = args.format == Format::Json;
    // Apply reads every site authoritatively: a hand change hidden by list-apps must not slip by.
    let observed = match rt.block_on(observe::observe(&p.manifest, &p.desired, &p.paths, Refresh::Full)) {
        Ok(o) => o,
        Err(e) => return observe::failed(&e),
    };
    let (plan, inputs) = match &args.plan_file {
        Some(file) => match saved(file, p, &observed) {
            Ok(fresh) => fresh,
            Err(status) => return status,
        },
        None => {
            let inputs =
                PlanInputs { allow_downgrade: args.allow_downgrade, parallelism: args.parallelism.unwrap_or(1) };
            match crate::commands::plan::plan_for(p, &observed, inputs) {
                Ok(plan) => (plan, inputs),
                Err(_) => return Status::Failure,
            }
        }
    };
    if plan.converged() {
        if json {
            events::emit(Body::Summary(events::Summary { outcome: "no_changes".into(), ..Default::default() }));
        } else {
            output::line("No changes. The deployment matches benchform.yaml.");
        }
        return Status::Success;
    }
    if plan.is_empty() {
        report_blocked(&plan, json);
        if json {
            let blocked = plan.blocked.iter().map(|b| b.site.clone()).collect();
            events::emit(Body::Summary(events::Summary { outcome: "failure".into(), blocked, ..Default::default() }));
        }
        return Status::Failure;
    }
    if json {
        let doc = crate::commands::plan::document(&plan, inputs, None);
        events::emit(Body::Plan { plan: Box::new(doc) });
    } else if args.plan_file.is_none() {
        print(&plan, inputs, PlanFormat::Text);
    }
    if args.plan_file.is_none() && !args.auto_approve && !confirm() {
        return Status::Failure;
    }
    let compose = match rt.block_on(observe::compose(&p.manifest, &p.paths)) {
        Ok(c) => c,
        Err(e) => return observe::failed(&e),
    };
    let options = apply::Options {
        ready_timeout: Duration::from_secs(args.ready_timeout),
        health_timeout: Duration::from_secs(args.health_timeout),
        parallelism: usize::from(inputs.parallelism),
        damaged: observed.sites.iter().filter(|s| s.damaged.is_some()).map(|s| s.name.clone()).collect(),
        migrate_timeout: (args.migrate_timeout > 0).then(|| Duration::from_secs(args.migrate_timeout)),
    };
    let mut applier = Applier::new(p, engine, compose, options);
    applier.interrupt = interrupt;
    output::redact_in_logs(applier.masker().clone());
    if let Err(e) = rt.block_on(applier.preflight(&plan)) {
        output::err_line(&format!(
            "error: {}\n  = fix: {}\nNothing was changed.",
            applier.redact(&e.detail),
            applier.redact(&e.fix)
        ));
        return Status::Failure;
    }
    let started = apply::now_utc();
    let spinner = if json { None } else { output::Spinner::new() };
    // Without a spinner (CI logs, JSON), a step that runs long says so every 30 s: a real build
    // or migrate can be silent for many minutes.
    let running: std::sync::Arc<std::sync::Mutex<Vec<(Step, std::time::Instant)>>> = Default::default();
    let every = heartbeat_every();
    let heartbeat = (spinner.is_none()).then(|| {
        let running = running.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let now: Vec<(Step, Duration)> = running
                    .lock()
                    .map(|r| r.iter().map(|(s, t)| (s.clone(), t.elapsed())).collect())
                    .unwrap_or_default();
                for (step, elapsed) in now.into_iter().filter(|(_, e)| *e >= every) {
                    if json {
                        events::emit(Body::Progress {
                            id: step.id.clone(),
                            kind: step.kind,
                            site: step.site.clone(),
                            app: step.app.clone(),
                            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                        });
                    } else {
                        output::line(&format!("  … {} still running ({}s)", step.id, elapsed.as_secs()));
                    }
                }
            }
        })
    });
    let report = |step: &Step, result: Option<&Result<Outcome, StepError>>, elapsed: Duration| {
        if let Ok(mut r) = running.lock() {
            match result {
                None => r.push((step.clone(), std::time::Instant::now())),
                Some(_) => r.retain(|(s, _)| s.id != step.id),
            }
        }
        let target = step.site.iter().chain(step.app.iter()).cloned().collect::<Vec<_>>().join(" ");
        if json {
            let (id, kind, site, app) = (step.id.clone(), step.kind, step.site.clone(), step.app.clone());
            events::emit(match result {
                None => Body::StepStarted { id, kind, site, app },
                Some(r) => {
                    let (status, detail, fix) = match r {
                        Ok(Outcome::Done(what)) => (StepStatus::Done, applier.redact(what), None),
                        Ok(Outcome::AlreadyDone(what)) => (StepStatus::AlreadyDone, applier.redact(what), None),
                        Err(e) => (StepStatus::Failed, applier.redact(&e.detail), Some(applier.redact(&e.fix))),
                    };
                    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                    Body::StepFinished { id, kind, site, app, status, detail, fix, elapsed_ms }
                }
            });
            return;
        }
        if let Some(s) = &spinner {
            match result {
                None => s.start(&format!("{} {target}", step.kind)),
                Some(_) => s.finish(&format!("{} {target}", step.kind)),
            }
        }
        match result {
            None => output::line(format!("→ {} {target}", step.kind).trim_end()),
            Some(Ok(Outcome::Done(what))) => {
                output::line(&format!("  done {} in {:.1}s: {}", step.id, elapsed.as_secs_f64(), applier.redact(what)))
            }
            Some(Ok(Outcome::AlreadyDone(what))) => {
                output::line(&format!("  already done {}: {}", step.id, applier.redact(what)))
            }
            Some(Err(e)) => output::err_line(&format!(
                "  FAILED {} after {:.1}s: {}\n  = fix: {}",
                step.id,
                elapsed.as_secs_f64(),
                applier.redact(&e.detail),
                applier.redact(&e.fix)
            )),
        }
    };
    applier.interrupt.start();
    let states = rt.block_on(apply::run(&applier, &plan, &report));
    drop(spinner);
    if let Some(h) = heartbeat {
        h.abort();
    }

    let recoveries = recover(rt, &applier, &plan, &states);
    let mut summary = Summary::of(&plan, &states);
    summary.interrupted = applier.interrupt.signal();
    if !summary.failed.is_empty() || summary.interrupted.is_some() {
        // What the sites are actually left in, read back (steps alone cannot tell, e.g. a
        // maintenance-on whose `scheduler pause` failed).
        if let Some(flags) = rt.block_on(applier.maintenance_flags()) {
            summary.in_maintenance = p
                .manifest
                .sites
                .iter()
                .map(|s| s.name.clone())
                .filter(|s| flags.get(s).is_some_and(|(maintenance, paused)| *maintenance || *paused))
                .collect();
        } else {
            summary.in_maintenance.retain(|s| !recoveries.iter().any(|r| r.kind == "back_in_service" && r.site == *s));
        }
    }
    let record = history_record(p, mine, &started, &plan, &states, &applier);
    for warning in rt.block_on(write_history(&applier, &record)) {
        if json {
            events::emit(Body::Warning { message: applier.redact(&warning) });
        } else {
            output::err_line(&format!("warning: {}", applier.redact(&warning)));
        }
    }
    summary.blocked = plan.blocked.iter().map(|b| b.site.clone()).collect();
    if json {
        for r in &recoveries {
            events::emit(Body::Recovery {
                site: r.site.clone(),
                outcome: r.kind.to_string(),
                detail: r.detail.clone(),
            });
        }
        report_blocked(&plan, json);
        events::emit(Body::Summary(summary.event(&recoveries)));
    } else {
        summary.print(&plan, &recoveries);
        report_blocked(&plan, json);
    }
    if summary.failed.is_empty() && plan.blocked.is_empty() && summary.interrupted.is_none() {
        Status::Success
    } else {
        Status::Failure
    }
}

/// A saved plan, checked: readable, unedited (digest), for this project, made from the world as it
/// is now (fingerprint), and exactly the steps the planner produces now from the manifest, the
/// lock, the observed world and the inputs saved with it. What runs is the planner's own plan,
/// so no value of the file reaches a command.
fn saved(
    file: &std::path::Path,
    p: &observe::Prepared,
    observed: &status::Observed,
) -> Result<(Plan, PlanInputs), Status> {
    let shown = output::escape(&file.display().to_string());
    let doc = crate::commands::plan::read_file(file).map_err(|e| {
        output::err_line(&format!("error: {e}\n  = fix: {}", e.fix()));
        Status::Failure
    })?;
    let Some(then) = &doc.fingerprint else {
        output::err_line(&format!(
            "error: {shown} has no world fingerprint (it was not saved with `plan -o`)\n  = fix: save it with `benchform plan -o FILE`"
        ));
        return Err(Status::Failure);
    };
    if doc.project != p.manifest.project {
        output::err_line(&format!(
            "error: {shown} is a plan for project {}, but the manifest's project is {}\n  = fix: apply it with the \
             manifest it was made from (-f FILE), or make a plan for this one",
            doc.project, p.manifest.project
        ));
        return Err(Status::Failure);
    }
    let now = WorldFingerprint::of(&p.loaded.bytes, &p.lock_bytes, &p.desired.reference(), observed);
    let changes = then.changes(&now);
    if !changes.is_empty() {
        output::err_line(&format!("error: the saved plan {shown} is stale; since it was made:"));
        for c in &changes {
            output::err_line(&format!("  - {c}"));
        }
        output::err_line("  = fix: run `benchform plan -o FILE` again, review it, and apply that");
        return Err(Status::Failure);
    }
    let fresh = crate::commands::plan::plan_for(p, observed, doc.inputs).map_err(|_| Status::Failure)?;
    let image = format!("{}:{}", doc.image.repository, doc.image.tag);
    let difference = if image != p.desired.reference() {
        Some(format!("it deploys {image}, the manifest and lock ask for {}", p.desired.reference()))
    } else {
        plan::first_difference(&doc.steps, &fresh.steps)
    };
    if let Some(d) = difference {
        output::err_line(&format!(
            "error: {shown} is not the plan benchform makes for this world: {}\n  = fix: make the plan again with \
             `benchform plan -o FILE`, review it, and apply that file unchanged",
            output::escape(&d)
        ));
        return Err(Status::Failure);
    }
    Ok((fresh, doc.inputs))
}

/// Ask on the terminal; without one, refuse (CI must say --auto-approve or apply a saved plan).
fn confirm() -> bool {
    if !std::io::stdin().is_terminal() {
        output::err_line(
            "error: no terminal to confirm on\n  = fix: pass --auto-approve, or apply a reviewed plan saved with `benchform plan -o FILE`",
        );
        return false;
    }
    // On standard error, so that standard output stays the plan (or JSON events) alone.
    output::raw_err("\nApply these steps? Only `yes` is accepted: ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        true
    } else {
        output::err_line("Apply cancelled.");
        false
    }
}

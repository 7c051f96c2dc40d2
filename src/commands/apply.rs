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

/// A lock id unique enough for one engine: process id and the clock.
fn lock_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// `user@host`, for the lock's holder.
fn holder() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| user_of_this_process());
    format!("{user}@{}", hostname())
}

/// The name /etc/passwd gives this process's user (`uid N` without one).
fn user_of_this_process() -> String {
    use std::os::unix::fs::MetadataExt;
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| m.uid()) else { return "unknown".to_string() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| {
            p.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".to_string())
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
            let drift = status::compare(&p.manifest, Some(&p.lock), &p.desired, &observed).drift;
            match plan::plan(&p.desired, &observed, &inputs.options(), drift) {
                Ok(plan) => (plan, inputs),
                Err(errors) => {
                    for e in &errors {
                        output::err_line(&format!("error: {e}"));
                    }
                    return Status::Failure;
                }
            }
        }
    };
    if plan.converged() {
        if json {
            output::line(&serde_json::json!({"event": "summary", "outcome": "no_changes"}).to_string());
        } else {
            output::line("No changes. The deployment matches benchform.yaml.");
        }
        return Status::Success;
    }
    if plan.is_empty() {
        report_blocked(&plan, json);
        if json {
            let blocked: Vec<&str> = plan.blocked.iter().map(|b| b.site.as_str()).collect();
            output::line(
                &serde_json::json!({"event": "summary", "outcome": "failure", "blocked": blocked}).to_string(),
            );
        }
        return Status::Failure;
    }
    if json {
        let doc = crate::commands::plan::document(&plan, inputs, None);
        output::line(&serde_json::json!({"event": "plan", "plan": doc}).to_string());
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
    output::redact_in_logs(applier.secrets());
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
    let report = |step: &Step, result: Option<&Result<Outcome, StepError>>, elapsed: Duration| {
        let target = step.site.iter().chain(step.app.iter()).cloned().collect::<Vec<_>>().join(" ");
        if json {
            let mut event = serde_json::json!({
                "event": if result.is_some() { "step_finished" } else { "step_started" },
                "id": step.id, "kind": step.kind.to_string(), "site": step.site, "app": step.app,
            });
            if let Some(r) = result {
                let (status, detail, fix) = match r {
                    Ok(Outcome::Done(what)) => ("done", applier.redact(what), None),
                    Ok(Outcome::AlreadyDone(what)) => ("already_done", applier.redact(what), None),
                    Err(e) => ("failed", applier.redact(&e.detail), Some(applier.redact(&e.fix))),
                };
                event["status"] = status.into();
                event["detail"] = detail.into();
                event["fix"] = fix.into();
                event["elapsed_ms"] = (elapsed.as_millis() as u64).into();
            }
            output::line(&event.to_string());
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
            output::line(&serde_json::json!({"event": "warning", "message": applier.redact(&warning)}).to_string());
        } else {
            output::err_line(&format!("warning: {}", applier.redact(&warning)));
        }
    }
    summary.blocked = plan.blocked.iter().map(|b| b.site.clone()).collect();
    if json {
        for r in &recoveries {
            output::line(
                &serde_json::json!({"event": "recovery", "site": r.site, "outcome": r.kind, "detail": r.detail})
                    .to_string(),
            );
        }
        report_blocked(&plan, json);
        output::line(&summary.json(&recoveries).to_string());
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

/// The sites the plan could not touch: the run cannot be a success while they stay as they are.
fn report_blocked(plan: &Plan, json: bool) {
    for b in &plan.blocked {
        if json {
            output::line(
                &serde_json::json!({"event": "blocked", "site": b.site, "detail": b.detail, "fix": b.fix}).to_string(),
            );
        }
    }
    if !json && !plan.blocked.is_empty() {
        output::err_line(crate::commands::plan::blocked_lines(plan).trim_start_matches('\n').trim_end());
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
    let drift = status::compare(&p.manifest, Some(&p.lock), &p.desired, observed).drift;
    let fresh = plan::plan(&p.desired, observed, &doc.inputs.options(), drift).map_err(|errors| {
        for e in &errors {
            output::err_line(&format!("error: {e}"));
        }
        Status::Failure
    })?;
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

/// What was done for one site after the steps ended.
#[derive(Debug)]
struct SiteRecovery {
    site: String,
    /// `restored`, `restore_failed`, `left`, `new_site`, `back_in_service`, `release_failed`.
    kind: &'static str,
    detail: String,
}

/// After the steps (all in-flight work is over): restore the sites whose migrate failed after
/// touching them, and put back in service the sites this run took out of service but never
/// changed — all of them after a deploy rolled back to the previous image, or, when the run
/// stopped before any deploy ran, those whose own steps never went past maintenance and backup.
fn recover(
    rt: &tokio::runtime::Runtime,
    applier: &Applier<'_>,
    plan: &Plan,
    states: &[StepState],
) -> Vec<SiteRecovery> {
    let mut out = Vec::new();
    let ways = |site: &str| {
        format!(
            "\n  Ways forward for {site}: fix the migration and run `benchform apply` again; or revert the manifest \
             change and apply that — but only if no other site migrated to the new versions in this run (benchform \
             refuses a downgrade it can see; with branch refs it cannot)."
        )
    };
    for (step, state) in plan.steps.iter().zip(states) {
        let StepState::Finished(Err(e)) = state else { continue };
        if step.kind != StepKind::Migrate || !e.touched {
            continue;
        }
        let site = step.site.clone().unwrap_or_default();
        // Only a site this run created holds no data; one found existing (`already done`) does.
        let created_here = plan.steps.iter().zip(states).any(|(s, st)| {
            s.kind == StepKind::NewSite
                && s.site.as_deref() == Some(site.as_str())
                && matches!(st, StepState::Finished(Ok(Outcome::Done(_))))
        });
        if created_here {
            out.push(SiteRecovery {
                kind: "new_site",
                detail: applier.redact(&format!(
                    "{site} was created in this run and holds no data yet: fix the cause and apply again, or drop it \
                     (`bench drop-site {site} --force --no-backup`)"
                )),
                site,
            });
            continue;
        }
        let (kind, what) = match rt.block_on(applier.recover(&site)) {
            Ok(Recovery::Restored(what)) => ("restored", format!("recovered: {what}")),
            Ok(Recovery::Left(what)) => ("left", what),
            Err(e) => ("restore_failed", format!("could not restore {site}: {}\n  = fix: {}", e.detail, e.fix)),
        };
        out.push(SiteRecovery { kind, detail: applier.redact(&format!("{what}{}", ways(&site))), site });
    }
    let failed =
        states.iter().any(|s| matches!(s, StepState::Finished(Err(_)))) || applier.interrupt.signal().is_some();
    let rolled_back = plan
        .steps
        .iter()
        .zip(states)
        .any(|(s, st)| s.kind == StepKind::Deploy && matches!(st, StepState::Finished(Err(e)) if e.rolled_back));
    let entered = applier.entered_maintenance.lock().map(|e| e.clone()).unwrap_or_default();
    let untouched = |site: &str| {
        plan.steps
            .iter()
            .zip(states)
            .filter(|(s, _)| s.site.as_deref() == Some(site))
            .all(|(s, st)| s.kind.leaves_site_untouched() || matches!(st, StepState::NotStarted))
    };
    // A deploy that failed before `compose up` changed nothing.
    let deployed = plan.steps.iter().zip(states).any(|(s, st)| {
        s.kind == StepKind::Deploy
            && match st {
                StepState::NotStarted => false,
                StepState::Finished(Err(e)) => e.touched,
                StepState::Finished(Ok(_)) => true,
            }
    });
    let release: Vec<(String, bool)> = if rolled_back {
        entered
    } else if failed && !deployed {
        entered.into_iter().filter(|(s, _)| untouched(s)).collect()
    } else {
        Vec::new()
    };
    for result in rt.block_on(applier.back_in_service(&release)) {
        out.push(match result {
            Ok(site) => SiteRecovery {
                detail: if untouched(&site) {
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
struct Summary {
    done: Vec<String>,
    failed: Vec<String>,
    not_started: Vec<String>,
    in_maintenance: Vec<String>,
    /// The signal that interrupted the run.
    interrupted: Option<&'static str>,
    /// Sites of the manifest no step touched (the run is not a success while they stay).
    blocked: Vec<String>,
}

impl Summary {
    fn of(plan: &Plan, states: &[StepState]) -> Summary {
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

    fn json(&self, recoveries: &[SiteRecovery]) -> serde_json::Value {
        let sites =
            |kind: &str| recoveries.iter().filter(|r| r.kind == kind).map(|r| r.site.clone()).collect::<Vec<_>>();
        serde_json::json!({
            "event": "summary",
            "outcome": match (&self.interrupted, self.failed.is_empty() && self.blocked.is_empty()) {
                (Some(_), _) => "interrupted",
                (None, true) => "success",
                (None, false) => "failure",
            },
            "blocked": self.blocked,
            "signal": self.interrupted,
            "done": self.done,
            "failed": self.failed,
            "not_started": self.not_started,
            "sites_in_maintenance": self.in_maintenance,
            "restored": sites("restored"),
            "back_in_service": sites("back_in_service"),
            "next": if self.failed.is_empty() && self.interrupted.is_none() {
                serde_json::Value::Null
            } else {
                NEXT.into()
            },
        })
    }

    fn print(&self, plan: &Plan, recoveries: &[SiteRecovery]) {
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

const NEXT: &str = "fix the cause and run `benchform apply` again; done steps are not repeated.";

fn history_record(
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

async fn write_history(applier: &Applier<'_>, record: &history::Record) -> Vec<String> {
    let host = history::host_file(&backups_root(applier.p), &applier.p.manifest.project);
    let bench = applier.bench().await.ok();
    history::append(record, &host, bench.as_ref()).await
}

/// `<manifest folder>/<backups.dir>`.
pub fn backups_root(p: &observe::Prepared) -> std::path::PathBuf {
    p.loaded.dir.join(&p.manifest.backups.dir)
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

/// What to say about a lock volume that names no holder.
fn unlabelled_lock(project: &str) -> String {
    let volume = benchform_docker::lock::lock_volume(project);
    format!(
        "error: project {project} is locked by a volume {volume} that names no holder (it was not made by a \
         benchform apply); nothing was changed\n  = fix: make sure no apply of {project} runs, then remove it: \
         `docker volume rm {volume}`"
    )
}

/// `benchform force-unlock ID`
pub fn force_unlock(args: &crate::cli::ForceUnlockArgs) -> Status {
    // Only the project name is needed: no lock, build context or compose files.
    let loaded = match crate::load::load(args.manifest.file.as_deref()) {
        Ok(l) => l,
        Err(d) => return crate::render::fail(&d),
    };
    let Some(manifest) = loaded.validation.manifest.as_ref() else {
        return crate::render::fail(&loaded.validation.diagnostics);
    };
    let rt = crate::runtime();
    let engine = match rt.block_on(observe::engine()) {
        Ok(e) => e,
        Err(e) => return observe::failed(&e),
    };
    let project = &manifest.project;
    match rt.block_on(engine.lock_holder(project)) {
        Ok(Some(h)) if h.is_unlabelled() => {
            output::err_line(&unlabelled_lock(project));
            Status::Failure
        }
        Ok(Some(h)) if h.id == args.id && h.is_alive_here(&hostname()) && !args.force => {
            output::err_line(&format!(
                "error: the apply holding {project}'s lock still runs on this machine (pid {}, {} since {}); \
                 releasing it would let a second apply change the deployment beside it; nothing released\n  = fix: \
                 wait for it to end, or stop it (`kill -INT {}` ends it in order); if pid {} is not a benchform \
                 apply any more, pass --force",
                h.pid, h.holder, h.since, h.pid, h.pid
            ));
            Status::Failure
        }
        Ok(Some(h)) if h.id == args.id => match rt.block_on(engine.unlock(project, &args.id)) {
            Ok(true) => {
                let unseen = if h.host != hostname() {
                    format!(" benchform cannot see processes on {}: make sure no apply runs there.", h.host)
                } else {
                    String::new()
                };
                output::line(&format!(
                    "Released the apply lock of {project} held by {} since {}.{unseen}",
                    h.holder, h.since
                ));
                Status::Success
            }
            Ok(false) => {
                output::err_line(
                    "error: the lock changed hands while releasing it\n  = fix: run `benchform apply` to see who holds it now",
                );
                Status::Failure
            }
            Err(e) => {
                output::err_line(&format!("error: {e}\n  = fix: check `docker info`, then try again"));
                Status::Failure
            }
        },
        Ok(Some(h)) => {
            output::err_line(&format!(
                "error: {project}'s lock has ID {}, not {} (held by {} since {}); nothing released\n  = fix: check the ID in the error of the apply that found the lock",
                h.id, args.id, h.holder, h.since
            ));
            Status::Failure
        }
        Ok(None) => {
            output::err_line(&format!(
                "error: {project} is not locked; nothing to release\n  = fix: run `benchform apply` again"
            ));
            Status::Failure
        }
        Err(e) => {
            output::err_line(&format!("error: {e}\n  = fix: check `docker info`, then try again"));
            Status::Failure
        }
    }
}

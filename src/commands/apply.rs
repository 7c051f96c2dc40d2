//! `benchform apply [PLAN_FILE]`: carry out the plan — a fresh one, confirmed, or exactly a saved
//! one whose world has not moved.

use std::io::{BufRead, IsTerminal, Write};

use benchform_bench::Refresh;
use benchform_core::fingerprint::WorldFingerprint;
use benchform_core::plan::{self, Plan, PlanOptions, StepKind};
use benchform_core::status;

use crate::Status;
use crate::apply::{self, Applier, Outcome};
use crate::cli::{ApplyArgs, PlanFormat};
use crate::commands::plan::{PlanDocument, print};
use crate::observe;
use crate::output;
use benchform_docker::lock::LockInfo;

pub fn run(args: &ApplyArgs) -> Status {
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
                    output::err_line(&format!("error: cannot release the stale lock: {e}"));
                    return Status::Failure;
                }
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
                output::err_line(&format!("error: cannot take the apply lock: {e}"));
                return Status::Failure;
            }
        }
    }
    let status = locked(args, &p, &rt, engine.clone());
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
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{}", hostname())
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
) -> Status {
    // Apply reads every site authoritatively: a hand change hidden by list-apps must not slip by.
    let observed = match rt.block_on(observe::observe(&p.manifest, &p.desired, &p.paths, Refresh::Full)) {
        Ok(o) => o,
        Err(e) => return observe::failed(&e),
    };
    let plan: Plan = match &args.plan_file {
        Some(file) => {
            let doc: PlanDocument = match std::fs::read_to_string(file).ok().and_then(|t| serde_json::from_str(&t).ok())
            {
                Some(d) => d,
                None => {
                    output::err_line(&format!(
                        "error: {} is not a benchform plan\n  = fix: save one with `benchform plan -o FILE`",
                        file.display()
                    ));
                    return Status::Failure;
                }
            };
            let Some(then) = &doc.fingerprint else {
                output::err_line(&format!(
                    "error: {} has no world fingerprint (it was not saved with `plan -o`)",
                    file.display()
                ));
                return Status::Failure;
            };
            let now = WorldFingerprint::of(&p.loaded.bytes, &p.lock_bytes, &p.desired.reference(), &observed);
            let changes = then.changes(&now);
            if !changes.is_empty() {
                output::err_line(&format!("error: the saved plan {} is stale; since it was made:", file.display()));
                for c in &changes {
                    output::err_line(&format!("  - {c}"));
                }
                output::err_line("  = fix: run `benchform plan -o FILE` again, review it, and apply that");
                return Status::Failure;
            }
            doc.plan()
        }
        None => {
            let drift = status::compare(&p.manifest, Some(&p.lock), &p.desired, &observed).drift;
            match plan::plan(&p.desired, &observed, &PlanOptions { allow_downgrade: args.allow_downgrade }, drift) {
                Ok(plan) => plan,
                Err(errors) => {
                    for e in &errors {
                        output::err_line(&format!("error: {e}"));
                    }
                    return Status::Failure;
                }
            }
        }
    };
    if plan.is_empty() {
        output::line("No changes. The deployment matches benchform.yaml.");
        return Status::Success;
    }
    if args.plan_file.is_none() {
        print(&plan, PlanFormat::Text);
        if !args.auto_approve && !confirm() {
            return Status::Failure;
        }
    }
    let compose = match rt.block_on(observe::compose(&p.manifest, &p.paths)) {
        Ok(c) => c,
        Err(e) => return observe::failed(&e),
    };
    let applier = Applier {
        p,
        engine,
        compose,
        cli: benchform_docker::build::Cli::new(benchform_docker::build::docker_cli()),
        backups: Default::default(),
    };
    let mut failure_touched = true;
    let result = rt.block_on(apply::run(&applier, &plan, |step, result, elapsed| {
        let target = step.site.iter().chain(step.app.iter()).cloned().collect::<Vec<_>>().join(" ");
        match result {
            None => output::line(&format!("→ {} {target}", step.kind)),
            Some(Ok(Outcome::Done(what))) => output::line(&format!("  done in {:.1}s: {what}", elapsed.as_secs_f64())),
            Some(Ok(Outcome::AlreadyDone(what))) => output::line(&format!("  already done: {what}")),
            Some(Err(e)) => {
                failure_touched = e.touched;
                output::err_line(&format!(
                    "  FAILED after {:.1}s: {}\n  = fix: {}",
                    elapsed.as_secs_f64(),
                    e.detail,
                    e.fix
                ))
            }
        }
    }));
    match result {
        Ok(()) => {
            output::line(&format!("\nApply complete: {} step(s).", plan.steps.len()));
            Status::Success
        }
        Err(failed) => {
            let step = &plan.steps[failed];
            if step.kind == StepKind::Migrate && failure_touched {
                let site = step.site.clone().unwrap_or_default();
                match rt.block_on(applier.recover(&site)) {
                    Ok(what) => output::err_line(&format!("  recovered: {what}")),
                    Err(e) => {
                        output::err_line(&format!("  could not restore {site}: {}\n  = fix: {}", e.detail, e.fix))
                    }
                }
                output::err_line(&format!(
                    "  Ways forward for {site}: fix the migration and run `benchform apply` again, or revert the manifest \
                     change and apply that."
                ));
            }
            output::err_line(&format!(
                "\nApply stopped at step {} of {} ({}); {} done, {} not started.",
                failed + 1,
                plan.steps.len(),
                step.id,
                failed,
                plan.steps.len() - failed - 1
            ));
            let in_maintenance: Vec<&str> = plan.steps[..failed]
                .iter()
                .filter(|s| s.kind == StepKind::MaintenanceOn)
                .filter_map(|s| s.site.as_deref())
                .filter(|site| {
                    !plan.steps[..failed]
                        .iter()
                        .any(|o| o.kind == StepKind::MaintenanceOff && o.site.as_deref() == Some(site))
                })
                .collect();
            if !in_maintenance.is_empty() {
                output::err_line(&format!("Sites left in maintenance mode: {}.", in_maintenance.join(", ")));
            }
            output::err_line("Next: fix the cause and run `benchform apply` again; done steps are not repeated.");
            Status::Failure
        }
    }
}

/// Ask on the terminal; without one, refuse (CI must say --auto-approve or apply a saved plan).
fn confirm() -> bool {
    if !std::io::stdin().is_terminal() {
        output::err_line(
            "error: no terminal to confirm on\n  = fix: pass --auto-approve, or apply a reviewed plan saved with `benchform plan -o FILE`",
        );
        return false;
    }
    output::out("\nApply these steps? Only `yes` is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if answer.trim() == "yes" {
        true
    } else {
        output::err_line("Apply cancelled.");
        false
    }
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
        Ok(Some(h)) if h.id == args.id => match rt.block_on(engine.unlock(project, &args.id)) {
            Ok(true) => {
                output::line(&format!("Released the apply lock of {project} held by {} since {}.", h.holder, h.since));
                Status::Success
            }
            Ok(false) => {
                output::err_line("error: the lock changed hands while releasing it; look again");
                Status::Failure
            }
            Err(e) => {
                output::err_line(&format!("error: {e}"));
                Status::Failure
            }
        },
        Ok(Some(h)) => {
            output::err_line(&format!(
                "error: {project}'s lock has ID {}, not {} (held by {} since {}); nothing released",
                h.id, args.id, h.holder, h.since
            ));
            Status::Failure
        }
        Ok(None) => {
            output::err_line(&format!("error: {project} is not locked; nothing to release"));
            Status::Failure
        }
        Err(e) => {
            output::err_line(&format!("error: {e}"));
            Status::Failure
        }
    }
}

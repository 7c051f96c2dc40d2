//! Who holds a project's apply lock (user, host, process), and `force-unlock`.

use super::*;

/// A lock id unique enough for one engine: process id and the clock.
pub(super) fn lock_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// `user@host`, for the lock's holder.
pub(super) fn holder() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .or_else(|_| whoami::username())
        .unwrap_or_else(|_| "unknown".to_string());
    format!("{user}@{}", hostname())
}

/// This machine's host name, as the lock records it.
pub(super) fn hostname() -> String {
    whoami::hostname().unwrap_or_else(|_| "unknown-host".to_string())
}

/// Say that a lock volume names no holder; the command fails.
fn unlabelled_lock(shell: &Shell, project: &str) -> Status {
    let volume = benchform_docker::lock::lock_volume(project);
    shell.error(
        &format!(
            "project {project} is locked by a volume {volume} that names no holder (it was not made by a \
             benchform apply); nothing was changed"
        ),
        &format!("make sure no apply of {project} runs, then remove it: `docker volume rm {volume}`"),
    )
}

/// `benchform force-unlock ID`
pub fn force_unlock(shell: &Shell, args: &crate::cli::ForceUnlockArgs) -> Status {
    // Only the project name is needed: no lock, build context or compose files.
    let loaded = match crate::load::load(args.manifest.file.as_deref()) {
        Ok(l) => l,
        Err(d) => return crate::render::fail(shell, &d),
    };
    let Some(manifest) = loaded.validation.manifest.as_ref() else {
        return crate::render::fail(shell, &loaded.validation.diagnostics);
    };
    let rt = crate::runtime();
    let engine = match rt.block_on(observe::engine()) {
        Ok(e) => e,
        Err(e) => return observe::failed(shell, &e),
    };
    let project = &manifest.project;
    match rt.block_on(engine.lock_holder(project)) {
        Ok(Some(h)) if h.is_unlabelled() => unlabelled_lock(shell, project),
        Ok(Some(h)) if h.id == args.id && h.is_alive_here(&hostname()) && !args.force => shell.error(
            &format!(
                "the apply holding {project}'s lock still runs on this machine (pid {}, {} since {}); releasing it \
                 would let a second apply change the deployment beside it; nothing released",
                h.pid, h.holder, h.since
            ),
            &format!(
                "wait for it to end, or stop it (`kill -INT {}` ends it in order); if pid {} is not a benchform \
                 apply any more, pass --force",
                h.pid, h.pid
            ),
        ),
        Ok(Some(h)) if h.id == args.id => match rt.block_on(engine.unlock(project, &args.id)) {
            Ok(true) => {
                let unseen = if h.host != hostname() {
                    format!(" benchform cannot see processes on {}: make sure no apply runs there.", h.host)
                } else {
                    String::new()
                };
                shell.line(&format!(
                    "Released the apply lock of {project} held by {} since {}.{unseen}",
                    h.holder, h.since
                ));
                Status::Success
            }
            Ok(false) => shell
                .error("the lock changed hands while releasing it", "run `benchform apply` to see who holds it now"),
            Err(e) => shell.error(&e.to_string(), "check `docker info`, then try again"),
        },
        Ok(Some(h)) => shell.error(
            &format!(
                "{project}'s lock has ID {}, not {} (held by {} since {}); nothing released",
                h.id, args.id, h.holder, h.since
            ),
            "check the ID in the error of the apply that found the lock",
        ),
        Ok(None) => shell.error(&format!("{project} is not locked; nothing to release"), "run `benchform apply` again"),
        Err(e) => shell.error(&e.to_string(), "check `docker info`, then try again"),
    }
}

/// Take `project`'s apply lock for `mine`, waiting up to `timeout` for another apply to end. A
/// lock left by a dead apply of this machine is released (that apply's leftovers are healed by
/// this one). On failure the reason has been printed.
pub(super) async fn take_lock(
    shell: &Shell,
    engine: &benchform_docker::Engine,
    project: &str,
    mine: &LockInfo,
    timeout: Duration,
) -> Result<(), Status> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match engine.try_lock(project, mine).await {
            Ok(None) => return Ok(()),
            Ok(Some(other)) if other.is_dead_here(&mine.host) => {
                shell.warn(
                    &format!(
                        "releasing the lock of a crashed apply ({}, pid {}, since {}); this apply heals what it left",
                        other.holder, other.pid, other.since
                    ),
                    None,
                );
                if let Err(e) = engine.unlock(project, &other.id).await {
                    return Err(shell.error(
                        &format!("cannot release the stale lock: {e}"),
                        &format!("check `docker info`, then `benchform force-unlock {}`", other.id),
                    ));
                }
            }
            Ok(Some(other)) if other.is_unlabelled() => return Err(unlabelled_lock(shell, project)),
            Ok(Some(other)) if std::time::Instant::now() >= deadline => {
                return Err(shell.error(
                    &format!(
                        "project {project} is locked by another apply: {} since {} ({}), lock ID {}",
                        other.holder, other.since, other.plan, other.id
                    ),
                    &format!(
                        "wait for it, or pass --lock-timeout SECONDS; if that apply crashed, run `benchform \
                         force-unlock {}`",
                        other.id
                    ),
                ));
            }
            Ok(Some(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
            Err(e) => {
                return Err(shell.error(
                    &format!("cannot take the apply lock: {e}"),
                    "check that the engine answers (`docker info`) and that benchform may create volumes, then \
                     apply again",
                ));
            }
        }
    }
}

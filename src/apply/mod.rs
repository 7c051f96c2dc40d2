//! Carrying out a plan, step by step. Each step re-checks its precondition first, so running apply
//! again after any interruption picks up where the last run stopped and repeats nothing that is
//! done.

use std::collections::BTreeMap;
use std::time::Duration;

use benchform_bench::Bench;
use benchform_core::bench_command::{self, BenchCommand, Failure, Scheduler};
use benchform_core::plan::{Step, StepKind};
use benchform_docker::Engine;
use benchform_docker::build::Cli;
use benchform_docker::compose::Compose;

use crate::observe::{self, Prepared};

mod apps;
mod canary;
mod deploy;
mod gate;
mod image;
pub(crate) use image::{base_fix, missing_base};
mod maintenance;
mod migrate;
mod report;
mod schedule;
mod secrets;
mod site;

use gate::DEPLOY_WAIT;
pub use migrate::Recovery;
pub use report::{ApplyReport, RecoveryOutcome, RunOutcome, SiteRecovery, Summary, recover};
pub use schedule::{Interrupt, StepState};
pub use secrets::EnvFile;
use secrets::SecretFile;
pub(crate) use secrets::missing_secrets;
use site::UNFINISHED;

/// The knobs of a run that do not come from the manifest.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long `ready-for-migration` may answer NOT READY before maintenance mode goes on.
    pub ready_timeout: Duration,
    /// How long the backend has to answer `/api/method/ping` for every site after a deploy.
    pub health_timeout: Duration,
    /// How many sites migrate at the same time.
    pub parallelism: usize,
    /// Sites observed damaged before the run: they could not answer before it either, so the
    /// health gate does not wait for them.
    pub damaged: Vec<String>,
    /// How long one site's `bench migrate` may run before benchform stops waiting for it (None:
    /// as long as it takes, Frappe's advice). It is not killed: it may still be writing.
    pub migrate_timeout: Option<Duration>,
    /// Sites the plan puts back in service (it has their `maintenance-off`): their maintenance is
    /// benchform's to hold, and is marked so in their `site_config.json`. Others keep the
    /// maintenance mode someone else set.
    pub hold_maintenance: std::collections::BTreeSet<String>,
    /// Sites released by `--release-maintenance`: back in service fully, their scheduler too.
    pub release_maintenance: std::collections::BTreeSet<String>,
    /// Sites the plan brings back to an older backup (its `restore` steps): the backup folder
    /// each goes back to, which no pruning in this run may remove.
    pub restore_points: BTreeMap<String, String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ready_timeout: Duration::from_secs(300),
            health_timeout: Duration::from_secs(120),
            parallelism: 1,
            damaged: Vec::new(),
            migrate_timeout: None,
            hold_maintenance: Default::default(),
            release_maintenance: Default::default(),
            restore_points: Default::default(),
        }
    }
}

/// What a step did.
#[derive(Debug)]
pub enum Outcome {
    Done(String),
    /// Its precondition showed it was already done (a re-run after an interruption).
    AlreadyDone(String),
}

/// Why a step failed: what, and what to do.
#[derive(Debug)]
pub struct StepError {
    pub detail: String,
    pub fix: String,
    /// False when the step never started its work (e.g. another migrate holds the site's lock):
    /// nothing to restore, and restoring would fight the other process.
    pub touched: bool,
    /// A deploy that failed its health gate and put the previous image back.
    pub rolled_back: bool,
    /// What a failed `bench` command's output says, when benchform tells it apart.
    pub cause: Option<Failure>,
}

/// A step's failure. Every failure names a fix: an empty one becomes the general way forward.
fn err(detail: impl ToString, fix: impl ToString) -> StepError {
    let fix = fix.to_string();
    let fix = if fix.trim().is_empty() {
        "run `benchform plan` to see what is left, fix what the error names, then `benchform apply` again".to_string()
    } else {
        fix
    };
    StepError { detail: detail.to_string(), fix, touched: true, rolled_back: false, cause: None }
}

/// A `bench` command that exited `code`: what it said last, and the failure benchform tells apart.
fn bench_failed(command: &BenchCommand<'_>, code: i64, stdout: &str, stderr: &str) -> StepError {
    // The end of stdout, then stderr: a traceback's last line says why.
    let tail: Vec<&str> = stdout.lines().chain(stderr.lines()).collect();
    let tail = tail[tail.len().saturating_sub(6)..].join("\n    ");
    let cause = bench_command::classify(stdout, stderr);
    let fix = match &cause {
        Some(Failure::UnknownDatabase { database }) => format!(
            "MariaDB has no database {database} for this site: restore the site from a backup (`bench --site SITE \
             restore …`) or drop it (`bench drop-site SITE --force`), then run apply again"
        ),
        _ => "fix the cause, then run apply again".to_string(),
    };
    StepError { cause, ..err(format!("`{command}` exited {code}:\n    {tail}"), fix) }
}

/// A site whose config or database cannot be read: nothing is done to it.
fn unreadable(site: &str, problem: &str) -> StepError {
    StepError {
        touched: false,
        ..err(
            format!("{site} cannot be read: {problem}"),
            "repair it by hand, then run apply again (nothing was done to it)",
        )
    }
}

/// Everything the steps need.
#[derive(Debug)]
pub struct Applier<'a> {
    pub p: &'a Prepared,
    pub engine: Engine,
    pub compose: Compose,
    /// The backend container the site steps exec in, looked up once; forgotten when compose
    /// recreates containers (deploy, rollback).
    backend: tokio::sync::Mutex<Option<String>>,
    pub cli: Cli,
    /// The engine (and its Docker CLI) that builds, verifies and pushes the image: `engine`, or
    /// this machine's with `image.build_on: local`.
    pub build_engine: Engine,
    pub build_cli: Cli,
    /// With `deploy.target: swarm`, the manager `engine` is.
    pub swarm: Option<crate::swarm::Manager>,
    pub options: Options,
    /// Backups taken in this run, by site: the folder inside the bench (for a restore).
    pub backups: std::sync::Mutex<BTreeMap<String, String>>,
    /// Backups copied off the volume in this run (host paths, for the history).
    pub copied: std::sync::Mutex<Vec<String>>,
    /// Sites whose migrate the database server refused to write (read-only): a restore would drop
    /// their database and then fail to load the backup, so none is attempted.
    pub refused_writes: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Set once any site migrated in this run: from then on the new image must stay.
    pub migrated: std::sync::atomic::AtomicBool,
    /// The canary container (`canary.rs`), once started: its name.
    canary: tokio::sync::Mutex<Option<String>>,
    /// Sites whose data a `restore` step brought back to an older backup in this run: a failed
    /// migrate after it is not restored again from this run's (newer) backup.
    pub restored: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Sites this run took out of service (maintenance mode was off before it), each with
    /// whether its scheduler was paused already (then it stays paused when the site is released).
    pub entered_maintenance: std::sync::Mutex<Vec<(String, bool)>>,
    /// The desired image's digest in the registry, read by the first migrate that records it (the
    /// push, if any, came before): one registry request per run, not per site.
    digest: tokio::sync::OnceCell<Option<String>>,
    /// Held while the health gate runs for the site steps of a run without a deploy gate.
    gate_lock: tokio::sync::Mutex<()>,
    /// Set once the backend passed the health gate in this run.
    pub gate_passed: std::sync::atomic::AtomicBool,
    /// SIGINT/SIGTERM: no new step starts, running ones are no longer waited for.
    pub interrupt: std::sync::Arc<Interrupt>,
    /// The run's secrets, read once (`Applier::masker`).
    masker: std::sync::OnceLock<benchform_manifest::mask::Masker>,
    /// The last output line of the command running for each site (or for the build), masked:
    /// what the heartbeat shows of a long step.
    last_lines: std::sync::Mutex<BTreeMap<String, String>>,
}

impl<'a> Applier<'a> {
    pub fn new(p: &'a Prepared, session: observe::Session, options: Options) -> Applier<'a> {
        Applier {
            p,
            cli: Cli::for_engine(&session.engine),
            build_cli: Cli::for_engine(&session.build_engine),
            build_engine: session.build_engine,
            engine: session.engine,
            compose: session.compose,
            swarm: session.swarm,
            backend: Default::default(),
            options,
            backups: Default::default(),
            copied: Default::default(),
            refused_writes: Default::default(),
            restored: Default::default(),
            canary: Default::default(),
            migrated: Default::default(),
            entered_maintenance: Default::default(),
            digest: Default::default(),
            gate_lock: Default::default(),
            gate_passed: Default::default(),
            interrupt: Default::default(),
            masker: Default::default(),
            last_lines: Default::default(),
        }
    }
}

impl Applier<'_> {
    fn reference(&self) -> String {
        self.p.desired.reference()
    }

    fn env(&self) -> Vec<(String, String)> {
        observe::compose_env(&self.p.desired, self.compose.flavour)
    }

    /// Remember `line` as the latest output of the command running for `key` (a site, or a step
    /// kind for steps of no site).
    fn note_line(&self, key: &str, line: &str) {
        if let Ok(mut lines) = self.last_lines.lock() {
            lines.insert(key.to_string(), self.redact(line));
        }
    }

    /// The latest output line of what `step` runs, if it printed any.
    pub fn last_line(&self, step: &Step) -> Option<String> {
        self.last_lines.lock().ok()?.get(&line_key(step)).cloned()
    }

    /// `step` starts: what an earlier step of its site printed is not its output.
    fn forget_last_line(&self, step: &Step) {
        if let Ok(mut lines) = self.last_lines.lock() {
            lines.remove(&line_key(step));
        }
    }

    /// Compose may recreate containers, or an exec found the backend gone: the backend must be
    /// looked up again.
    async fn forget_backend(&self) {
        *self.backend.lock().await = None;
    }

    /// The site commands' handle on the running backend container.
    pub async fn bench(&self) -> Result<Bench<'_>, StepError> {
        let service = &self.p.manifest.deploy.backend_service;
        let mut known = self.backend.lock().await;
        if known.is_none() {
            *known = crate::swarm::bench_container(&self.engine, &self.p.manifest, self.swarm.as_ref())
                .await
                .map_err(|e| err(e, "check `docker info`"))?;
        }
        match known.clone() {
            Some(container) => Ok(Bench { engine: &self.engine, container }),
            None => Err(StepError {
                touched: false,
                ..err(
                    match self.swarm {
                        None => format!("no running {service} container in project {}", self.p.manifest.project),
                        Some(_) => format!(
                            "benchform's ops task ({}_{}) does not run on this manager (`docker service ps {0}_{1}` \
                             says why)",
                            self.p.manifest.project,
                            benchform_core::swarm::OPS_SERVICE
                        ),
                    },
                    "run apply again: a deploy step brings it up",
                )
            }),
        }
    }

    /// Run one `bench` command (output streamed with `-v`); a failure carries its [`Failure`].
    async fn run_bench(&self, command: BenchCommand<'_>, stdin: Option<&[u8]>) -> Result<String, StepError> {
        let out = self.exec_streamed(&command.argv(), stdin, command.site()).await?;
        if out.exit_code != 0 {
            return Err(bench_failed(&command, out.exit_code, &out.stdout, &out.stderr));
        }
        Ok(out.stdout)
    }

    /// Run `commands` (none reads standard input) one after the other in one exec
    /// ([`bench_command::sequence_argv`]), stopping at the first that fails, which fails as it
    /// would alone. Each command costs its `bench` process; the exec's cost is paid once.
    async fn run_bench_all(&self, commands: &[BenchCommand<'_>]) -> Result<(), StepError> {
        let argvs: Vec<Vec<String>> = commands.iter().map(BenchCommand::argv).collect();
        let Some(argv) = bench_command::sequence_argv(&argvs).filter(|_| commands.len() > 1) else {
            for command in commands {
                self.run_bench(command.clone(), None).await?;
            }
            return Ok(());
        };
        let site = commands.first().map(BenchCommand::site).unwrap_or_default();
        let out = self.exec_streamed(&argv, None, site).await?;
        if out.exit_code != 0 {
            let (last, outputs) = bench_command::parse_sequence(&out.stdout, commands.len());
            // More than one command reached here: the first exists.
            let failed = commands.get(last).unwrap_or(&commands[0]);
            let stdout = outputs.get(last).map(String::as_str).unwrap_or_default();
            return Err(bench_failed(failed, out.exit_code, stdout, &out.stderr));
        }
        Ok(())
    }

    /// Run `argv` in the backend, each output line noted as `site`'s latest (but a sequence's
    /// frame lines); the output whatever the exit code. A broken output stream means the command
    /// may still be running in the container: it counts as not finished (nothing is restored
    /// underneath it).
    async fn exec_streamed(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        site: &str,
    ) -> Result<benchform_docker::ExecOutput, StepError> {
        let bench = if canary::in_canary() { self.canary_bench().await? } else { self.bench().await? };
        let streamed = bench
            .run_streamed(argv, stdin, &|line| {
                if !line.starts_with('\u{1e}') {
                    self.note_line(site, line);
                }
            })
            .await;
        if streamed.is_err() {
            // The container may be gone (recreated, removed): look it up again next time.
            self.forget_backend().await;
        }
        streamed.map_err(|e| StepError {
            touched: false,
            ..err(
                format!("{e} (the command may still be running in the container)"),
                "check the backend container; run apply again once the command has ended",
            )
        })
    }

    /// One site's `site_config.json` summary (flags, record, mark): one exec, no database read.
    async fn site_config(&self, site: &str) -> Result<Option<benchform_core::bench::SiteConfigSummary>, StepError> {
        self.bench().await?.site_config(site).await.map_err(|e| err(e, "check the backend container"))
    }

    /// Each site's maintenance mode and paused scheduler, as they are now (one exec); `None`
    /// when they cannot be read.
    pub async fn maintenance_flags(&self) -> Option<BTreeMap<String, (bool, bool)>> {
        let configs = self.bench().await.ok()?.site_configs().await.ok()?;
        Some(configs.into_iter().map(|c| (c.site, (c.maintenance_mode, c.scheduler_paused))).collect())
    }

    /// One site, read authoritatively: two execs that read this site alone, so the cost does not
    /// grow with the number of sites.
    async fn site(&self, site: &str) -> Result<Option<benchform_core::status::ObservedSite>, StepError> {
        let observed =
            self.bench().await?.observe_site(site).await.map_err(|e| err(e, "check the backend container"))?;
        // A site that cannot be read is never taken for one without apps.
        if let Some(problem) = observed.as_ref().and_then(|o| o.damaged.as_ref()) {
            return Err(unreadable(site, problem));
        }
        Ok(observed)
    }

    async fn installed(&self, site: &str) -> Result<Option<Vec<String>>, StepError> {
        Ok(self.site(site).await?.map(|s| s.installed))
    }

    /// Carry out one step.
    pub async fn step(&self, s: &Step) -> Result<Outcome, StepError> {
        let site = s.site.as_deref().unwrap_or_default();
        if s.canary {
            // Before any deploy, in the one-off container of the new image: no gate to pass.
            let done = canary::IN_CANARY.scope(true, self.run_step(s)).await;
            return match (done, s.kind) {
                (Err(mut e), StepKind::Migrate) => {
                    e.detail.push_str(
                        "; it was the canary: the new image was not deployed, and every other site keeps serving on \
                         the image it runs",
                    );
                    Err(e)
                }
                (done, _) => done,
            };
        }
        if s.kind.needs_gate() {
            self.ensure_gate(site).await?;
        }
        self.run_step(s).await
    }

    async fn run_step(&self, s: &Step) -> Result<Outcome, StepError> {
        let site = s.site.as_deref().unwrap_or_default();
        let app = s.app.as_deref().unwrap_or_default();
        match s.kind {
            StepKind::Build => self.build().await,
            StepKind::Verify => self.verify().await,
            StepKind::Push => self.push().await,
            StepKind::MaintenanceOn => self.maintenance_on(site).await,
            StepKind::Backup => self.backup(site).await,
            StepKind::Restore => match &s.restore {
                Some(from) => self.restore(site, from).await,
                None => Err(err(format!("step {} names no backup to restore", s.id), "make the plan again")),
            },
            StepKind::UninstallApp => self.uninstall_app(site, app).await,
            StepKind::Deploy => self.deploy(&s.services).await,
            StepKind::RefreshAssets => self.refresh_assets().await,
            StepKind::NewSite => self.new_site(site).await,
            StepKind::InstallApp => self.install_app(site, app).await,
            StepKind::Migrate => self.migrate(site).await,
            StepKind::Smoke => self.smoke(site).await,
            StepKind::MaintenanceOff => self.maintenance_off(site).await,
        }
    }
}

/// Where the last output line of `step`'s commands is kept: its site, or its kind.
fn line_key(step: &Step) -> String {
    step.site.clone().unwrap_or_else(|| step.kind.as_str().to_string())
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::deploy::split_reference;
    use super::site::frappe_major;
    use super::*;

    #[test]
    fn frappe_majors() {
        assert_eq!(frappe_major("v15.88.1"), 15);
        assert_eq!(frappe_major("version-16"), 16);
        assert_eq!(frappe_major("develop"), 15);
    }

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(split_reference("127.0.0.1:5000/p/erp:bf1-abc"), ("127.0.0.1:5000/p/erp", "bf1-abc"));
        assert_eq!(split_reference("127.0.0.1:5000/p/erp"), ("127.0.0.1:5000/p/erp", "latest"));
    }

    #[test]
    fn every_failure_names_a_fix() {
        assert!(err("compose up failed", "").fix.contains("benchform plan"));
        assert!(err("compose up failed", "  ").fix.contains("benchform plan"));
        assert_eq!(err("x", "check the engine").fix, "check the engine");
    }

    #[test]
    fn now_is_iso() {
        let n = now_utc();
        assert_eq!(n.len(), 20);
        assert!(n.starts_with("20") && n.ends_with('Z'));
    }
}

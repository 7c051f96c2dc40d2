//! Carrying out a plan, step by step. Each step re-checks its precondition first, so running apply
//! again after any interruption picks up where the last run stopped and repeats nothing that is
//! done.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use benchform_bench::{BENCH_DIR, Bench};
use benchform_core::plan::{Plan, Step, StepKind};
use benchform_core::record::SiteRecord;
use benchform_core::verify;
use benchform_docker::build::{self, BuildSpec, Cli};
use benchform_docker::compose::Compose;
use benchform_docker::{Engine, TagState};

use crate::observe::{self, LABEL_PROJECT, Prepared};

/// How long a deploy may take to bring the backend up and the configurator through.
const DEPLOY_WAIT: Duration = Duration::from_secs(180);

/// Where gunicorn listens in frappe_docker's images (its CMD binds 0.0.0.0:8000).
const PING_URL: &str = "http://127.0.0.1:8000/api/method/ping";

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
}

/// A request to stop (SIGINT, SIGTERM), shared between the signal watcher and the run.
#[derive(Debug, Default)]
pub struct Interrupt {
    signal: std::sync::Mutex<Option<&'static str>>,
    notify: tokio::sync::Notify,
    /// Set when the first step is about to start: from then on a signal stops the run in order.
    started: std::sync::atomic::AtomicBool,
}

impl Interrupt {
    /// The steps begin.
    pub fn start(&self) {
        self.started.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the steps have begun.
    pub fn started(&self) -> bool {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Record the signal and wake everything waiting on it.
    pub fn raise(&self, signal: &'static str) {
        if let Ok(mut s) = self.signal.lock() {
            s.get_or_insert(signal);
        }
        self.notify.notify_waiters();
    }

    /// The signal that interrupted the run, if any.
    pub fn signal(&self) -> Option<&'static str> {
        self.signal.lock().ok().and_then(|s| *s)
    }

    /// Returns once the run is interrupted.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            if self.signal().is_some() {
                return;
            }
            notified.await;
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            ready_timeout: Duration::from_secs(300),
            health_timeout: Duration::from_secs(120),
            parallelism: 1,
            damaged: Vec::new(),
            migrate_timeout: None,
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
}

fn err(detail: impl ToString, fix: impl ToString) -> StepError {
    StepError { detail: detail.to_string(), fix: fix.to_string(), touched: true, rolled_back: false }
}

/// Everything the steps need.
#[derive(Debug)]
pub struct Applier<'a> {
    pub p: &'a Prepared,
    pub engine: Engine,
    pub compose: Compose,
    pub cli: Cli,
    pub options: Options,
    /// Backups taken in this run, by site: the folder inside the bench (for a restore).
    pub backups: std::sync::Mutex<BTreeMap<String, String>>,
    /// Backups copied off the volume in this run (host paths, for the history).
    pub copied: std::sync::Mutex<Vec<String>>,
    /// Set once any site migrated in this run: from then on the new image must stay.
    pub migrated: std::sync::atomic::AtomicBool,
    /// Sites this run took out of service (maintenance mode was off before it), each with
    /// whether its scheduler was paused already (then it stays paused when the site is released).
    pub entered_maintenance: std::sync::Mutex<Vec<(String, bool)>>,
    /// Held while the health gate runs for the site steps of a run without a deploy gate.
    gate_lock: tokio::sync::Mutex<()>,
    /// Set once the backend passed the health gate in this run.
    pub gate_passed: std::sync::atomic::AtomicBool,
    /// SIGINT/SIGTERM: no new step starts, running ones are no longer waited for.
    pub interrupt: std::sync::Arc<Interrupt>,
}

impl<'a> Applier<'a> {
    pub fn new(p: &'a Prepared, engine: Engine, compose: Compose, options: Options) -> Applier<'a> {
        Applier {
            p,
            engine,
            compose,
            cli: Cli::new(build::docker_cli()),
            options,
            backups: Default::default(),
            copied: Default::default(),
            migrated: Default::default(),
            entered_maintenance: Default::default(),
            gate_lock: Default::default(),
            gate_passed: Default::default(),
            interrupt: Default::default(),
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

    /// Tokens of the apps' repositories, from the variables the manifest names.
    fn tokens(&self) -> BTreeMap<String, (String, String)> {
        self.p
            .manifest
            .apps
            .iter()
            .filter_map(|a| {
                let token = env_secret(a.token_env.as_deref())?;
                Some((a.name.clone(), (a.token_user().to_string(), token)))
            })
            .collect()
    }

    /// Every secret value this run can handle (tokens, site passwords), for redaction.
    pub fn secrets(&self) -> Vec<String> {
        let deploy = &self.p.manifest.deploy;
        let passwords = [&deploy.db_root_password_env, &deploy.admin_password_env]
            .into_iter()
            .filter_map(|v| env_secret(v.as_deref()));
        self.tokens().into_values().map(|(_, t)| t).chain(passwords).filter(|s| s.len() >= 4).collect()
    }

    /// `text` with every secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets().iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
    }

    /// Checks that must pass before the first step changes anything.
    pub async fn preflight(&self, plan: &Plan) -> Result<(), StepError> {
        if plan.steps.iter().any(|s| s.kind == StepKind::Deploy) {
            self.refuse_migrator().await?;
        }
        if plan.steps.iter().any(|s| s.kind == StepKind::NewSite) {
            self.site_passwords("a new site")?;
        }
        // A failed migrate of an existing site is restored, and `bench restore` needs the
        // database root password: better to know now than after the failure.
        use benchform_manifest::model::OnMigrateFailure;
        let existing = plan.steps.iter().find(|s| {
            s.kind == StepKind::Migrate && !plan.steps.iter().any(|n| n.kind == StepKind::NewSite && n.site == s.site)
        });
        if let Some(step) = existing
            && self.p.manifest.policy.on_migrate_failure == OnMigrateFailure::Restore
        {
            let site = step.site.as_deref().unwrap_or_default();
            let var = self.p.manifest.deploy.db_root_password_env.as_deref();
            if env_secret(var).is_none() {
                return Err(err(
                    format!(
                        "{site} will migrate, and restoring it after a failed migrate needs the database root \
                         password, which is not available"
                    ),
                    match var {
                        Some(v) => format!("export it in {v}, or set policy.on_migrate_failure: stop"),
                        None => "name its variable in deploy.db_root_password_env and export it, or set \
                                 policy.on_migrate_failure: stop"
                            .to_string(),
                    },
                ));
            }
        }
        Ok(())
    }

    /// frappe_docker's `migrator` would migrate every site concurrently with the new backend,
    /// without maintenance mode, stopping at the first failure (frappe-contract §3, trap 11).
    async fn refuse_migrator(&self) -> Result<(), StepError> {
        let services =
            self.compose.services(&self.env()).await.map_err(|e| err(e, "fix the compose files, then apply again"))?;
        if services.iter().any(|s| s == "migrator") {
            return Err(err(
                "the compose files define frappe_docker's `migrator` service: it runs `bench --site all migrate` \
                 concurrently with the new backend, without maintenance mode, and stops at the first failing site",
                "remove overrides/compose.migrator.yaml from deploy.compose.files; benchform migrates each site \
                 itself, after a backup and under maintenance mode",
            ));
        }
        Ok(())
    }

    /// The database root and Administrator passwords, from the variables the manifest names.
    fn site_passwords(&self, what: &str) -> Result<(String, String), StepError> {
        let deploy = &self.p.manifest.deploy;
        let secret = |var: &Option<String>, field: &str| -> Result<String, StepError> {
            let var = var.as_deref().ok_or_else(|| {
                err(
                    format!("creating {what} needs the {field}"),
                    format!("name the variable that holds it in deploy.{field}_env"),
                )
            })?;
            env_secret(Some(var)).ok_or_else(|| {
                err(format!("{var} is not set (creating {what} needs it)"), format!("export the {field} in {var}"))
            })
        };
        Ok((
            secret(&deploy.db_root_password_env, "db_root_password")?,
            secret(&deploy.admin_password_env, "admin_password")?,
        ))
    }

    async fn container_of(&self, service: &str) -> Result<Option<String>, StepError> {
        let containers = self
            .engine
            .project_containers(&self.p.manifest.project)
            .await
            .map_err(|e| err(e, "check `docker info`"))?;
        Ok(containers.into_iter().find(|c| c.service == service && c.state == "running" && !c.oneoff).map(|c| c.id))
    }

    pub async fn bench(&self) -> Result<Bench<'_>, StepError> {
        let service = &self.p.manifest.deploy.backend_service;
        match self.container_of(service).await? {
            Some(container) => Ok(Bench { engine: &self.engine, container }),
            None => Err(StepError {
                touched: false,
                ..err(
                    format!("no running {service} container in project {}", self.p.manifest.project),
                    "run apply again: a deploy step brings it up",
                )
            }),
        }
    }

    async fn run_bench(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<String, StepError> {
        let bench = self.bench().await?;
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        // The command may still be running in the container when its output stream broke: treat
        // it as not finished (nothing restored underneath it).
        let out = bench.run_streamed(&argv, stdin).await.map_err(|e| StepError {
            touched: false,
            ..err(
                format!("{e} (the command may still be running in the container)"),
                "check the backend container; run apply again once the command has ended",
            )
        })?;
        if out.exit_code != 0 {
            // The end of stdout, then stderr: a traceback's last line says why.
            let tail: Vec<&str> = out.stdout.lines().chain(out.stderr.lines()).collect();
            let tail = tail[tail.len().saturating_sub(6)..].join("\n    ");
            return Err(err(
                format!("`{}` exited {}:\n    {tail}", argv.join(" "), out.exit_code),
                "fix the cause, then run apply again",
            ));
        }
        Ok(out.stdout)
    }

    /// Each site's maintenance mode and paused scheduler, as they are now (two execs); `None`
    /// when they cannot be read.
    pub async fn maintenance_flags(&self) -> Option<BTreeMap<String, (bool, bool)>> {
        let configs = self.bench().await.ok()?.site_configs().await.ok()?;
        Some(configs.into_iter().map(|c| (c.site, (c.maintenance_mode, c.scheduler_paused))).collect())
    }

    /// One site, read authoritatively (two execs, whatever the number of sites).
    async fn site(&self, site: &str) -> Result<Option<benchform_core::status::ObservedSite>, StepError> {
        let observed =
            self.bench().await?.observe_site(site).await.map_err(|e| err(e, "check the backend container"))?;
        // A site that cannot be read is never taken for one without apps.
        if let Some(problem) = observed.as_ref().and_then(|o| o.damaged.as_ref()) {
            return Err(StepError {
                touched: false,
                ..err(
                    format!("{site} cannot be read: {problem}"),
                    "repair it by hand, then run apply again (nothing was done to it)",
                )
            });
        }
        Ok(observed)
    }

    /// Before an app is installed or removed: mark the site's record pending, so that the site
    /// migrates in this run or, if the run stops first, in the next one (its fingerprint then
    /// matches nothing). A site benchform never migrated has no record to mark.
    async fn mark_pending(
        &self,
        site: &str,
        observed: Option<&benchform_core::status::ObservedSite>,
    ) -> Result<(), StepError> {
        let Some(record) = observed.and_then(|o| o.record.as_ref()).filter(|r| !r.is_pending()) else {
            return Ok(());
        };
        let literal = record.pending().to_python_literal();
        let argv = ["bench", "--site", site, "set-config", "-p", benchform_core::record::RECORD_KEY, &literal];
        self.run_bench(&argv, None).await.map(|_| ()).map_err(|e| StepError { touched: false, ..e })
    }

    /// A `bench … migrate` of `site` still running in the backend (started by an apply that was
    /// killed or interrupted, or by hand): its argv.
    async fn running_migrate(&self, site: &str) -> Result<Option<String>, StepError> {
        let bench = self.bench().await?;
        let execs = self.engine.running_execs(&bench.container).await.map_err(|e| err(e, "check `docker info`"))?;
        // `bench --site S migrate`, `bench --site all migrate`, a bare `bench migrate` (default
        // site), or any of them inside `sh -c "…"`.
        Ok(execs.into_iter().map(|argv| argv.join(" ")).find(|line| {
            let words: Vec<&str> = line.split(|c: char| c.is_whitespace() || c == '"' || c == '\'').collect();
            words.contains(&"migrate")
                && (words.contains(&site) || words.contains(&"all") || !words.contains(&"--site"))
        }))
    }

    /// Refuse to touch `site` while a migrate of it still runs.
    async fn no_migrate_running(&self, site: &str, what: &str) -> Result<(), StepError> {
        match self.running_migrate(site).await? {
            None => Ok(()),
            Some(argv) => Err(StepError {
                touched: false,
                ..err(
                    format!("`{argv}` is still running in the backend; no {what} while it runs"),
                    "wait for it to end (its backup is kept), then run apply again; to watch it: `docker top` on the \
                     backend container",
                )
            }),
        }
    }

    /// `<backups.dir>/<project>/<site>` on the host.
    fn host_backups(&self, site: &str) -> PathBuf {
        self.p.loaded.dir.join(&self.p.manifest.backups.dir).join(&self.p.manifest.project).join(site)
    }

    /// The backup the site's last unfinished migrate started from (kept from pruning), if any.
    fn unfinished_migrate(&self, site: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.host_backups(site).join(UNFINISHED)).ok()?;
        let stamp = text.trim().to_string();
        (!stamp.is_empty() && !stamp.contains(['/', '.'])).then_some(stamp)
    }

    async fn installed(&self, site: &str) -> Result<Option<Vec<String>>, StepError> {
        Ok(self.site(site).await?.map(|s| s.installed))
    }

    /// Before the first step that changes a site in a run whose deploy gate did not pass (no
    /// deploy, or one a crash interrupted before its gate): the running backend must answer.
    /// Runs once, however many sites go in parallel.
    async fn ensure_gate(&self, site: &str) -> Result<(), StepError> {
        let _once = self.gate_lock.lock().await;
        if self.gate_passed.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        if let Err(why) = self.health_gate().await {
            return Err(StepError {
                touched: false,
                ..err(
                    format!("{why}; not changing {site} on a backend that does not answer"),
                    "look at the backend's logs (`docker compose logs backend`); apply again once it answers, or \
                     revert the manifest change",
                )
            });
        }
        self.gate_passed.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Carry out one step.
    pub async fn step(&self, s: &Step) -> Result<Outcome, StepError> {
        let site = s.site.as_deref().unwrap_or_default();
        let app = s.app.as_deref().unwrap_or_default();
        if s.kind.needs_gate() {
            self.ensure_gate(site).await?;
        }
        match s.kind {
            StepKind::Build => self.build().await,
            StepKind::Verify => self.verify().await,
            StepKind::Push => self.push().await,
            StepKind::MaintenanceOn => {
                self.ready_for_migration(site).await?;
                let before = self.site(site).await?;
                if let Some(o) = before.filter(|o| !o.maintenance_mode)
                    && let Ok(mut entered) = self.entered_maintenance.lock()
                {
                    entered.push((site.to_string(), o.scheduler_paused));
                }
                self.run_bench(&["bench", "--site", site, "set-maintenance-mode", "on"], None).await?;
                self.run_bench(&["bench", "--site", site, "scheduler", "pause"], None).await?;
                Ok(Outcome::Done("maintenance mode on, scheduler paused".into()))
            }
            StepKind::Backup => self.backup(site).await,
            StepKind::UninstallApp => {
                let before = self.site(site).await?;
                if !before.as_ref().is_some_and(|o| o.installed.iter().any(|a| a == app)) {
                    return Ok(Outcome::AlreadyDone(format!("{app} is not installed")));
                }
                self.mark_pending(site, before.as_ref()).await?;
                self.run_bench(&["bench", "--site", site, "uninstall-app", app, "--yes", "--no-backup"], None).await?;
                // bench exits 0 when it did nothing (e.g. another app depends on this one).
                if self.installed(site).await?.unwrap_or_default().iter().any(|a| a == app) {
                    return Err(err(
                        format!("bench reported success but {app} is still installed on {site}"),
                        "check whether another installed app requires it",
                    ));
                }
                Ok(Outcome::Done(format!("{app} uninstalled")))
            }
            StepKind::Deploy => self.deploy().await,
            StepKind::RefreshAssets => self.refresh_assets().await,
            StepKind::NewSite => self.new_site(site).await,
            StepKind::InstallApp => {
                let before = self.site(site).await?;
                if before.as_ref().is_some_and(|o| o.installed.iter().any(|a| a == app)) {
                    return Ok(Outcome::AlreadyDone(format!("{app} is installed")));
                }
                self.mark_pending(site, before.as_ref()).await?;
                self.run_bench(&["bench", "--site", site, "install-app", app], None).await?;
                // bench exits 0 when it did nothing: read the truth back.
                if !self.installed(site).await?.unwrap_or_default().iter().any(|a| a == app) {
                    return Err(err(
                        format!("bench reported success but {app} is not installed on {site}"),
                        "check the app's before_install hook",
                    ));
                }
                Ok(Outcome::Done(format!("{app} installed")))
            }
            StepKind::Migrate => self.migrate(site).await,
            StepKind::MaintenanceOff => {
                self.run_bench(&["bench", "--site", site, "scheduler", "resume"], None).await?;
                self.run_bench(&["bench", "--site", site, "set-maintenance-mode", "off"], None).await?;
                Ok(Outcome::Done("scheduler resumed, maintenance mode off".into()))
            }
        }
    }

    /// `ready-for-migration` until it answers READY, for at most `ready_timeout` (frappe-contract
    /// §7: Press waits 300 s). Frappe versions without the command count as ready.
    async fn ready_for_migration(&self, site: &str) -> Result<(), StepError> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let argv: Vec<String> = ["bench", "--site", site, "ready-for-migration"].map(String::from).to_vec();
        loop {
            let out = self
                .bench()
                .await?
                .run(&argv, Some(Duration::from_secs(60)))
                .await
                .map_err(|e| err(e, "check the backend container"))?;
            if out.exit_code == 0 {
                return Ok(());
            }
            if out.stderr.contains("No such command") {
                tracing::warn!(%site, "this Frappe has no ready-for-migration; going on");
                return Ok(());
            }
            // Only NOT READY is worth waiting for; anything else (no database, redis down) is
            // an error now.
            if !out.stdout.contains("NOT READY") {
                let said = out.stdout.lines().chain(out.stderr.lines()).last().unwrap_or_default().to_string();
                return Err(StepError {
                    touched: false,
                    ..err(
                        format!("`bench --site {site} ready-for-migration` exited {}: {said}", out.exit_code),
                        "fix the cause, then run apply again",
                    )
                });
            }
            if Instant::now() >= deadline {
                let said = out.stdout.lines().chain(out.stderr.lines()).last().unwrap_or_default().to_string();
                return Err(StepError {
                    touched: false,
                    ..err(
                        format!(
                            "{site} was not ready for migration within {} s: {said}",
                            self.options.ready_timeout.as_secs()
                        ),
                        "let its background jobs finish, then run apply again (--ready-timeout SECONDS waits longer)",
                    )
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn build(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        if self.engine.image(&reference).await.map_err(|e| err(e, "check `docker info`"))?.is_some() {
            return Ok(Outcome::AlreadyDone(format!("the engine has {reference}")));
        }
        let tokens = self.tokens();
        let mut apps: Vec<serde_json::Value> = Vec::new();
        for a in &self.p.manifest.apps {
            let url = match tokens.get(&a.name) {
                Some((user, token)) => benchform_core::credentials::with_token(&a.repo, user, token)
                    .map_err(|e| err(e, "write the app's repo as https://host/org/repo"))?,
                None => a.repo.clone(),
            };
            apps.push(serde_json::json!({"url": url, "branch": a.git_ref}));
        }
        // The secret lives in memory only (a memfd this process owns, read by the Docker CLI
        // through /proc): no file on disk that a crash could leave behind with the token in it.
        let memfd = SecretFile::new(serde_json::Value::Array(apps).to_string().as_bytes())
            .map_err(|e| err(format!("cannot hold the build secret in memory: {e}"), "check that /proc is mounted"))?;
        let secret = memfd.path();
        let sources = observe::locked_sources(&self.p.manifest, &self.p.lock).unwrap_or_default();
        let build_args = observe::build_args(&self.p.manifest, &sources);
        let labels = BTreeMap::from([
            (LABEL_PROJECT.to_string(), self.p.manifest.project.clone()),
            ("org.benchform.lock".to_string(), benchform_core::tag::sha256_hex(&self.p.lock_bytes)),
        ]);
        let spec = BuildSpec {
            context: &self.p.paths.context,
            containerfile: &self.p.paths.containerfile,
            reference: &reference,
            build_args: &build_args,
            labels: &labels,
            apps_json: &secret,
            network: self.p.manifest.image.build_network.as_deref(),
            no_cache: false,
        };
        let secrets: Vec<String> = tokens.values().map(|(_, t)| t.clone()).collect();
        build::build(&self.cli, &spec, &secrets, |line| tracing::info!(target: "build", "{line}"))
            .await
            .map_err(|e| err(e, "read the build output above (run with -v to stream it)"))?;
        Ok(Outcome::Done(format!("built {reference}")))
    }

    async fn verify(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        let contents = build::image_contents(&self.cli, &reference).await.map_err(|e| err(e, "check `docker info`"))?;
        let names: Vec<String> = self.p.manifest.sources().iter().map(|s| s.name.to_string()).collect();
        let mut problems = verify::check_apps(&contents.apps_json, &contents.apps_dir, &names, &self.p.lock);
        let secrets: Vec<String> = self.tokens().values().map(|(_, t)| t.clone()).collect();
        let places = [
            ("history", contents.history.as_str()),
            ("metadata", contents.metadata.as_str()),
            ("logs/", contents.logs.as_str()),
        ];
        problems.extend(verify::find_secrets(&places, &secrets));
        if problems.is_empty() {
            return Ok(Outcome::Done(format!("{} apps at their locked commits; no secret found", names.len())));
        }
        // A bad image must not be deployed or pushed by a later run.
        let _ = tokio::process::Command::new(&self.cli.program).args(["rmi", &reference]).output().await;
        let detail = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Err(err(
            detail,
            "the image was removed; fix the cause (moved tag, leaked token), relock if needed, and apply again",
        ))
    }

    async fn push(&self) -> Result<Outcome, StepError> {
        let reference = self.reference();
        if let Ok(TagState::Present { digest }) = self.engine.registry_tag(&reference).await {
            return Ok(Outcome::AlreadyDone(format!("the registry has it ({digest})")));
        }
        let digest = build::push(&self.cli, &reference, &[], |line| tracing::info!(target: "push", "{line}"))
            .await
            .map_err(|e| err(e, "check `docker login` for the registry (benchform uses the Docker config file)"))?;
        Ok(Outcome::Done(format!("pushed {}", digest.unwrap_or_default())))
    }

    async fn backup(&self, site: &str) -> Result<Outcome, StepError> {
        // A backup taken under a running migrate is a half-migrated site, not a restore point.
        self.no_migrate_running(site, "backup").await?;
        let stamp = now_utc().replace([':', '-'], "");
        let inside = format!("{BENCH_DIR}/sites/{site}/private/benchform-backups/{stamp}");
        self.run_bench(&["bench", "--site", site, "backup", "--with-files", "--backup-path", &inside], None).await?;
        // Copy off the volume: Frappe prunes backups, and losing the volume must not lose them.
        let host_root = self.host_backups(site);
        let protected = self.unfinished_migrate(site);
        std::fs::create_dir_all(&host_root)
            .map_err(|e| err(format!("{}: {e}", host_root.display()), "check backups.dir"))?;
        let container = self.bench().await?.container;
        let out = tokio::process::Command::new(&self.cli.program)
            .args(["cp", &format!("{container}:{inside}"), &host_root.join(&stamp).display().to_string()])
            .output()
            .await
            .map_err(|e| err(e, "check the docker CLI"))?;
        if !out.status.success() {
            return Err(err(
                format!("copying the backup off the volume failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
                "check backups.dir",
            ));
        }
        prune(&host_root, self.p.manifest.backups.keep as usize, protected.as_deref());
        // Inside the volume, only this run's backup stays (a restore needs it), and the one an
        // unfinished migrate started from; the host keeps `backups.keep` of them, and that one.
        let folder = format!("{BENCH_DIR}/sites/{site}/private/benchform-backups");
        let keep_too = protected.unwrap_or_else(|| stamp.clone());
        let argv: Vec<String> = [
            "find",
            &folder,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-type",
            "d",
            "!",
            "-name",
            &stamp,
            "!",
            "-name",
            &keep_too,
            "-exec",
            "rm",
            "-rf",
            "{}",
            "+",
        ]
        .map(String::from)
        .to_vec();
        if let Err(e) = self.bench().await?.run(&argv, Some(Duration::from_secs(120))).await {
            tracing::warn!(%site, "could not prune older backups in the volume: {e}");
        }
        if let Ok(mut taken) = self.backups.lock() {
            taken.insert(site.to_string(), inside.clone());
        }
        if let Ok(mut copied) = self.copied.lock() {
            copied.push(host_root.join(&stamp).display().to_string());
        }
        Ok(Outcome::Done(format!("backup in {}", host_root.join(&stamp).display())))
    }

    async fn deploy(&self) -> Result<Outcome, StepError> {
        // Until `compose up`, nothing has changed.
        let untouched = |e: StepError| StepError { touched: false, ..e };
        self.refuse_migrator().await.map_err(untouched)?;
        let backend = self.p.manifest.deploy.backend_service.clone();
        let reference = self.reference();
        let previous = self
            .engine
            .project_containers(&self.p.manifest.project)
            .await
            .map_err(|e| untouched(err(e, "check `docker info`")))?
            .into_iter()
            .find(|c| c.service == backend && !c.oneoff)
            .map(|c| c.image)
            .filter(|image| *image != reference);
        self.compose
            .up(&self.env(), false)
            .await
            .map_err(|e| err(e, "fix the compose files or the engine, then apply again"))?;
        // The new backend must come up and then answer for every site; a backend that never
        // comes up (an app that fails to import crash-loops gunicorn) fails the gate too.
        let why = match self.wait_until_up(&reference, self.options.health_timeout).await {
            Err(e) => format!("health gate: {}", e.detail),
            Ok(()) => match self.health_gate().await {
                Ok(answered) => {
                    self.gate_passed.store(true, std::sync::atomic::Ordering::SeqCst);
                    let gate = match answered {
                        0 => "no site to ping yet".to_string(),
                        n => format!("{n} site(s) answer /api/method/ping as they should"),
                    };
                    return Ok(Outcome::Done(format!("{backend} runs {}; {gate}", self.p.desired.tag)));
                }
                Err(why) => why,
            },
        };
        if self.migrated.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(err(
                format!("{why}; sites were migrated in this run, so the new image stays"),
                "look at the backend's logs (`docker compose logs backend`)",
            ));
        }
        let Some(previous) = previous else {
            return Err(err(
                format!("{why}; there is no previous image to go back to"),
                "look at the backend's logs (`docker compose logs backend`), fix the image, and apply again",
            ));
        };
        if previous.starts_with("sha256:") {
            return Err(err(
                format!("{why}; the previous image ({previous}) has no tag to redeploy"),
                "look at the backend's logs (`docker compose logs backend`), fix the image, and apply again",
            ));
        }
        let (repository, tag) = split_reference(&previous);
        let previous = format!("{repository}:{tag}");
        let env = observe::compose_env_for(repository, tag, self.compose.flavour);
        let back = match self.compose.up(&env, false).await {
            Ok(_) => self.wait_until_up(&previous, DEPLOY_WAIT).await,
            Err(e) => Err(err(e, "")),
        };
        if let Err(e) = back {
            return Err(err(
                format!("{why}; redeploying the previous image {previous} failed too: {}", e.detail),
                "look at `docker compose logs`, then apply again",
            ));
        }
        // Going back is an image change too: the new image's bundle names may be cached.
        let assets = match self.refresh_assets().await {
            Ok(_) => String::new(),
            Err(e) => format!(" (dropping assets_json failed: {}; delete it by hand)", e.detail),
        };
        Err(StepError {
            rolled_back: true,
            ..err(
                format!("{why}; redeployed the previous image {previous}{assets}"),
                "look at the backend's logs on the new image, fix it, and apply again",
            )
        })
    }

    /// Wait, at most `limit`, until the configurator has exited and the backend runs `reference`.
    async fn wait_until_up(&self, reference: &str, limit: Duration) -> Result<(), StepError> {
        let deadline = Instant::now() + limit;
        let backend = &self.p.manifest.deploy.backend_service;
        loop {
            let containers = self
                .engine
                .project_containers(&self.p.manifest.project)
                .await
                .map_err(|e| err(e, "check `docker info`"))?;
            // The configurator must have finished, and finished well (exit 0).
            let configured = containers
                .iter()
                .all(|c| c.service != "configurator" || (c.state == "exited" && c.status.starts_with("Exited (0)")));
            let up = containers.iter().any(|c| c.service == *backend && c.state == "running" && c.image == reference);
            if configured && up {
                return Ok(());
            }
            if Instant::now() > deadline {
                let status = |service: &str| {
                    containers
                        .iter()
                        .find(|c| c.service == service)
                        .map_or("missing".to_string(), |c| format!("{} on {}", c.status, c.image))
                };
                return Err(err(
                    format!(
                        "{backend} did not come up on {reference} within {} s ({backend}: {}; configurator: {})",
                        limit.as_secs(),
                        status(backend),
                        status("configurator")
                    ),
                    "look at `docker compose logs`",
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every existing site answers `/api/method/ping` on the backend within `health_timeout`,
    /// by Host header as nginx routes it: 200 with `pong` for a serving site; for a site in
    /// maintenance mode, Frappe's 503 `SessionStopped` (raised once it has loaded the app and
    /// connected to the site's database) is as healthy as it gets. The number of sites checked,
    /// or why not.
    async fn health_gate(&self) -> Result<usize, String> {
        let deadline = Instant::now() + self.options.health_timeout;
        // Names and maintenance flags are all the gate needs: one exec reading the site configs
        // (no site's database is touched, so one broken site cannot fail the gate by itself).
        let sites = loop {
            let read = match self.bench().await {
                Ok(bench) => bench.site_configs().await.map_err(|e| err(e, "")),
                Err(e) => Err(e),
            };
            match read {
                Ok(sites) => break sites,
                Err(e) if Instant::now() >= deadline => return Err(format!("health gate: {}", e.detail)),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let pinged: Vec<_> =
            sites.iter().filter(|s| s.damaged.is_none() && !self.options.damaged.contains(&s.site)).collect();
        for site in &pinged {
            loop {
                let said = match self.ping(&site.site, site.maintenance_mode).await {
                    Ok(()) => break,
                    Err(said) => said,
                };
                if Instant::now() >= deadline {
                    return Err(format!(
                        "health gate: {} did not answer /api/method/ping within {} s ({said})",
                        site.site,
                        self.options.health_timeout.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Ok(pinged.len())
    }

    /// One ping of `site` through the backend container (frappe_docker's images ship curl).
    async fn ping(&self, site: &str, in_maintenance: bool) -> Result<(), String> {
        let host = format!("Host: {site}");
        let argv: Vec<String> = ["curl", "-sS", "--max-time", "5", "-H", &host, "-w", "\n%{http_code}", PING_URL]
            .map(String::from)
            .to_vec();
        let bench = self.bench().await.map_err(|e| e.detail)?;
        let out = bench.run(&argv, Some(Duration::from_secs(15))).await.map_err(|e| e.to_string())?;
        if out.exit_code != 0 {
            return Err(format!("curl exited {}: {}", out.exit_code, out.stderr.trim()));
        }
        let (body, code) = out.stdout.rsplit_once('\n').unwrap_or(("", out.stdout.as_str()));
        match code.trim() {
            "200" if body.contains("pong") => Ok(()),
            "503" if in_maintenance => Ok(()),
            code => Err(format!("HTTP {code}")),
        }
    }

    async fn refresh_assets(&self) -> Result<Outcome, StepError> {
        let Some(redis) = self.container_of("redis-cache").await? else {
            return Ok(Outcome::Done(
                "no redis-cache service in the project: delete assets_json in your redis-cache yourself".into(),
            ));
        };
        let argv = vec!["redis-cli".to_string(), "DEL".to_string(), "assets_json".to_string()];
        let spec = benchform_docker::ExecSpec {
            container: &redis,
            argv: &argv,
            user: None,
            workdir: None,
            env: &[],
            timeout: Some(Duration::from_secs(30)),
            stdin: None,
            stream: false,
        };
        let out = self.engine.exec(&spec).await.map_err(|e| err(e, "check the redis-cache container"))?;
        if out.exit_code != 0 {
            return Err(err(
                format!("redis-cli DEL assets_json exited {}", out.exit_code),
                "check the redis-cache container",
            ));
        }
        Ok(Outcome::Done("assets_json dropped from redis-cache".into()))
    }

    async fn new_site(&self, site: &str) -> Result<Outcome, StepError> {
        if self.installed(site).await?.is_some() {
            return Ok(Outcome::AlreadyDone(format!("{site} exists")));
        }
        let (root, admin) = self.site_passwords(site)?;
        let major = frappe_major(&self.p.manifest.frappe.git_ref);
        let scope = if major >= 16 { "--mariadb-user-host-login-scope=%" } else { "--no-mariadb-socket" };
        // The passwords answer bench's prompts on stdin: argv is visible in the engine's events.
        let answers = format!("{root}\n{admin}\n");
        if let Err(mut e) = self.run_bench(&["bench", "new-site", site, scope], Some(answers.as_bytes())).await {
            // A failed new-site can leave a half-made site that blocks the next one (trap 15).
            e.fix = format!(
                "fix the cause; if sites/{site} was left behind, remove the half-made site with \
                 `bench drop-site {site} --force --no-backup`, then apply again"
            );
            return Err(e);
        }
        self.run_bench(&["bench", "--site", site, "scheduler", "enable"], None).await?;
        Ok(Outcome::Done(format!("{site} created, scheduler enabled")))
    }

    async fn migrate(&self, site: &str) -> Result<Outcome, StepError> {
        let desired = self
            .p
            .desired
            .sites
            .iter()
            .find(|s| s.name == site)
            .ok_or_else(|| err(format!("{site} is not in the manifest"), "re-plan"))?;
        self.no_migrate_running(site, "second migrate").await?;
        let observed = self.site(site).await.map_err(|e| StepError { touched: false, ..e })?;
        if let Some(o) = observed
            && o.record.as_ref().is_some_and(|r| r.fingerprint == desired.fingerprint)
            && desired.apps.iter().all(|a| o.installed.contains(a))
        {
            let _ = std::fs::remove_file(self.host_backups(site).join(UNFINISHED));
            return Ok(Outcome::AlreadyDone(format!("{site} is migrated to the desired code")));
        }
        // The backup this migrate starts from is kept from pruning until the migrate is recorded
        // or the site restored, however many applies fail in between.
        let taken = self.backups.lock().ok().and_then(|b| b.get(site).cloned());
        if let Some(stamp) = taken.as_deref().and_then(|t| t.rsplit('/').next())
            && self.unfinished_migrate(site).is_none()
        {
            std::fs::write(self.host_backups(site).join(UNFINISHED), stamp)
                .map_err(|e| StepError { touched: false, ..err(e, "check backups.dir") })?;
        }
        // From the first migrate on, a failed health gate must not take the image back.
        self.migrated.store(true, std::sync::atomic::Ordering::SeqCst);
        let argv = ["bench", "--site", site, "migrate"];
        let migrate = self.run_bench(&argv, None);
        let result = match self.options.migrate_timeout {
            None => migrate.await,
            Some(limit) => match tokio::time::timeout(limit, migrate).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(StepError {
                        // It may still be writing: nothing may be restored under it.
                        touched: false,
                        ..err(
                            format!(
                                "the migrate of {site} did not end within {} s (--migrate-timeout); it was not \
                                 stopped and may still run in the backend. {site} stays in maintenance mode and \
                                 nothing is restored under it",
                                limit.as_secs()
                            ),
                            "wait for it to end (apply refuses to back up or migrate the site while it runs; its \
                             pre-migrate backup is kept), then run apply again",
                        )
                    });
                }
            },
        };
        if let Err(mut e) = result {
            // Frappe's per-site lock: a migrate is already running (an interrupted apply's bench
            // can outlive it). This one changed nothing.
            if e.detail.contains("LockTimeoutError") && e.detail.contains("bench_migrate") {
                e.touched = false;
                e.fix = format!("another migrate of {site} is still running; wait for it to end, then run apply again");
            }
            return Err(e);
        }
        let digest = match self.engine.registry_tag(&self.reference()).await {
            Ok(TagState::Present { digest }) => Some(digest),
            _ => None,
        };
        let record = SiteRecord::new(
            &self.p.manifest.project,
            desired.commits.clone(),
            desired.refs.clone(),
            &self.reference(),
            digest,
            &now_utc(),
        );
        self.run_bench(
            &[
                "bench",
                "--site",
                site,
                "set-config",
                "-p",
                benchform_core::record::RECORD_KEY,
                &record.to_python_literal(),
            ],
            None,
        )
        .await
        .map_err(|e| StepError {
            // The migrate itself succeeded: nothing to restore.
            touched: false,
            ..err(
                format!("{site} migrated, but recording it failed: {}", e.detail),
                "run apply again: it migrates again (nothing left to do for Frappe) and records the site",
            )
        })?;
        let _ = std::fs::remove_file(self.host_backups(site).join(UNFINISHED));
        Ok(Outcome::Done(format!("{site} migrated and recorded")))
    }
}

impl Applier<'_> {
    /// After a deploy rolled back to the previous image: the sites this run took out of service
    /// were not migrated, so the previous code matches their schema — serve them again.
    pub async fn back_in_service(&self, sites: &[(String, bool)]) -> Vec<Result<String, (String, StepError)>> {
        let mut out = Vec::new();
        for (site, was_paused) in sites.iter().cloned() {
            let released = async {
                if !was_paused {
                    self.run_bench(&["bench", "--site", &site, "scheduler", "resume"], None).await?;
                }
                self.run_bench(&["bench", "--site", &site, "set-maintenance-mode", "off"], None).await
            };
            out.push(match released.await {
                Ok(_) => Ok(site),
                Err(e) => Err((site, e)),
            });
        }
        out
    }

    /// After a failed migrate, with `on_migrate_failure: restore`: put the site back to the backup
    /// taken in this run and leave it in maintenance mode (its schema is now older than the code).
    pub async fn recover(&self, site: &str) -> Result<Recovery, StepError> {
        use benchform_manifest::model::OnMigrateFailure;
        if self.p.manifest.policy.on_migrate_failure == OnMigrateFailure::Stop {
            return Ok(Recovery::Left(format!(
                "{site} left as the failed migrate left it, in maintenance mode (policy: stop)"
            )));
        }
        // An earlier migrate of this site never finished: its backup is the last good state (this
        // run's may be of a half-migrated site).
        let this_run = self.backups.lock().ok().and_then(|b| b.get(site).cloned());
        let earlier = self
            .unfinished_migrate(site)
            .filter(|stamp| this_run.as_deref().is_none_or(|t| t.rsplit('/').next() != Some(stamp.as_str())));
        let dir = match &earlier {
            Some(stamp) => Some(format!("{BENCH_DIR}/sites/{site}/private/benchform-backups/{stamp}")),
            None => this_run,
        };
        let Some(dir) = dir else {
            return Err(err(
                format!("no backup of {site} was taken in this run"),
                "restore it by hand from backups.dir",
            ));
        };
        let bench = self.bench().await?;
        let find = |pattern: &str| vec!["find".to_string(), dir.clone(), "-name".to_string(), pattern.to_string()];
        let first = |out: String| out.lines().next().map(str::to_string);
        let run = |argv: Vec<String>| {
            let bench = &bench;
            async move {
                bench
                    .run(&argv, Some(Duration::from_secs(60)))
                    .await
                    .map(|o| o.stdout)
                    .map_err(|e| err(e, "check the backend"))
            }
        };
        let db = first(run(find("*-database.sql.gz")).await?).ok_or_else(|| {
            err(format!("the backup in {dir} has no database dump"), "restore by hand from backups.dir")
        })?;
        let mut argv = vec!["bench", "--site", site, "restore", db.as_str()];
        let public = first(
            run(find("*-files.t*"))
                .await?
                .lines()
                .filter(|l| !l.contains("private-files"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let private = first(run(find("*-private-files.t*")).await?);
        if let Some(f) = &public {
            argv.extend(["--with-public-files", f.as_str()]);
        }
        if let Some(f) = &private {
            argv.extend(["--with-private-files", f.as_str()]);
        }
        argv.push("--force");
        // restore may ask for the database root password: answer on stdin, never in argv.
        let root = env_secret(self.p.manifest.deploy.db_root_password_env.as_deref()).unwrap_or_default();
        let answer = format!("{root}\n");
        self.run_bench(&argv, Some(answer.as_bytes())).await?;
        let _ = std::fs::remove_file(self.host_backups(site).join(UNFINISHED));
        let which = if earlier.is_some() {
            "the backup its first unfinished migrate started from"
        } else {
            "the backup taken in this run"
        };
        Ok(Recovery::Restored(format!("{site} restored from {which} ({dir}) and left in maintenance mode")))
    }
}

/// What was done for a site whose migrate failed.
#[derive(Debug)]
pub enum Recovery {
    Restored(String),
    /// Left as the migrate left it (policy `stop`).
    Left(String),
}

/// Where a step of the plan ended.
#[derive(Debug)]
pub enum StepState {
    NotStarted,
    Finished(Result<Outcome, StepError>),
}

/// Progress callback: a step starts (`None`) or ends (`Some`, with its elapsed time).
pub type Report<'r> = &'r (dyn Fn(&Step, Option<&Result<Outcome, StepError>>, Duration) + Sync);

/// Run `plan`. The steps up to the last one that concerns no single site (build … deploy,
/// refresh-assets) run in order; the per-site steps after them run site by site, up to
/// `options.parallelism` sites at a time. After a failure no new step or site starts; steps
/// already running finish. Returns each step's state, in plan order.
pub async fn run(a: &Applier<'_>, plan: &Plan, report: Report<'_>) -> Vec<StepState> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let states: Mutex<Vec<StepState>> = Mutex::new(plan.steps.iter().map(|_| StepState::NotStarted).collect());
    let stop = AtomicBool::new(false);
    let one = |i: usize| {
        let (states, stop) = (&states, &stop);
        async move {
            let s = &plan.steps[i];
            report(s, None, Duration::ZERO);
            let started = Instant::now();
            let result = tokio::select! {
                r = a.step(s) => r,
                () = a.interrupt.wait() => Err(StepError {
                    // What it was doing may go on in a container. A migrate: nothing may be
                    // restored under it. Anything else (a deploy above all: `compose up` may have
                    // recreated the services) counts as having changed things.
                    touched: s.kind != StepKind::Migrate,
                    ..err(
                        format!(
                            "interrupted ({}) while it ran; a command it started may still run in the backend",
                            a.interrupt.signal().unwrap_or("signal")
                        ),
                        "run apply again: it waits for nothing that still runs and heals the rest",
                    )
                }),
            };
            report(s, Some(&result), started.elapsed());
            let ok = result.is_ok();
            if let Ok(mut states) = states.lock() {
                states[i] = StepState::Finished(result);
            }
            if !ok {
                stop.store(true, Ordering::SeqCst);
                return false;
            }
            // Test-only crash injection (documented in docs/apply.md): die right after this step,
            // leaving the lock and everything else as a real crash would.
            if std::env::var("BENCHFORM_FAILPOINT").is_ok_and(|f| f == format!("after:{}", s.id)) {
                tracing::warn!(step = %s.id, "BENCHFORM_FAILPOINT: aborting");
                std::process::abort();
            }
            true
        }
    };
    let split = plan.steps.iter().rposition(|s| s.site.is_none()).map_or(0, |i| i + 1);
    let mut serial_ok = true;
    for i in 0..split {
        if a.interrupt.signal().is_some() || !one(i).await {
            serial_ok = false;
            break;
        }
    }
    if serial_ok {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for (i, s) in plan.steps.iter().enumerate().skip(split) {
            let site = s.site.clone().unwrap_or_default();
            match groups.iter_mut().find(|(g, _)| *g == site) {
                Some((_, steps)) => steps.push(i),
                None => groups.push((site, vec![i])),
            }
        }
        let queue = Mutex::new(std::collections::VecDeque::from(groups));
        let worker = || async {
            loop {
                if stop.load(Ordering::SeqCst) || a.interrupt.signal().is_some() {
                    break;
                }
                let Some((_, steps)) = queue.lock().ok().and_then(|mut q| q.pop_front()) else { break };
                for i in steps {
                    // After a failure elsewhere, no new migration starts; a migrated site still
                    // leaves maintenance mode. After an interrupt, nothing starts.
                    if a.interrupt.signal().is_some()
                        || (stop.load(Ordering::SeqCst) && !plan.steps[i].kind.runs_after_a_failure())
                    {
                        break;
                    }
                    if !one(i).await {
                        break;
                    }
                }
            }
        };
        futures_util::future::join_all((0..a.options.parallelism.max(1)).map(|_| worker())).await;
    }
    states.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `repo:tag` → (`repo`, `tag`); a reference without a tag means `latest`.
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// The Frappe major version a ref names: `v15.88.1` → 15, `version-16` → 16; 15 if unknown.
fn frappe_major(git_ref: &str) -> u32 {
    let digits: String =
        git_ref.trim_start_matches(|c: char| !c.is_ascii_digit()).chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(15)
}

/// The value of the environment variable the manifest names for a secret, if it is set and not
/// empty.
fn env_secret(var: Option<&str>) -> Option<String> {
    std::env::var(var?).ok().filter(|v| !v.is_empty())
}

/// A secret held in an anonymous in-memory file (`memfd_create`): it has no name on any file
/// system and goes with this process, however it ends (SIGKILL included). Other processes of
/// the same user (the Docker CLI) open it as `/proc/<pid>/fd/<n>`; each open reads it from the
/// start, as BuildKit's secret provider does on every request.
struct SecretFile {
    file: std::fs::File,
}

impl SecretFile {
    fn new(bytes: &[u8]) -> std::io::Result<SecretFile> {
        use std::io::Write;
        let fd = rustix::fs::memfd_create("benchform-secret", rustix::fs::MemfdFlags::CLOEXEC)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)?;
        Ok(SecretFile { file })
    }

    fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.file.as_raw_fd()))
    }
}

/// Keep the newest `keep` backup folders under `dir` (names sort by time).
/// The file, next to a site's host backups, naming the backup its last unfinished migrate started
/// from: written when a migrate starts, removed when it is recorded or restored.
const UNFINISHED: &str = ".unfinished-migrate";

/// Keep the newest `keep` backup folders under `dir` (names sort by time), and `protected`.
fn prune(dir: &std::path::Path, keep: usize, protected: Option<&str>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.file_name().and_then(|n| n.to_str()) != protected)
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for old in names.into_iter().take(excess) {
        let _ = std::fs::remove_dir_all(old);
    }
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_utc() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
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
    fn now_is_iso() {
        let n = now_utc();
        assert_eq!(n.len(), 20);
        assert!(n.starts_with("20") && n.ends_with('Z'));
    }
}

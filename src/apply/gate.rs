//! Checks before anything changes (pre-flight, frappe_docker's `migrator`), and the health gate:
//! the backend must come up on the desired image and answer `/api/method/ping` for every site.

use std::time::{Duration, Instant};

use benchform_core::plan::{Plan, StepKind};

use super::*;

impl Applier<'_> {
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
    pub(super) async fn refuse_migrator(&self) -> Result<(), StepError> {
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

    /// Before the first step that changes a site in a run whose deploy gate did not pass (no
    /// deploy, or one a crash interrupted before its gate): the running backend must answer.
    /// Runs once, however many sites go in parallel.
    pub(super) async fn ensure_gate(&self, site: &str) -> Result<(), StepError> {
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

    /// Wait, at most `limit`, until the configurator has exited and the backend runs `reference`.
    pub(super) async fn wait_until_up(&self, reference: &str, limit: Duration) -> Result<(), StepError> {
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
    pub(super) async fn health_gate(&self) -> Result<usize, String> {
        let deadline = Instant::now() + self.options.health_timeout;
        // Names and maintenance flags are all the gate needs: one exec reading the site configs
        // (no site's database is touched, so one broken site cannot fail the gate by itself).
        let sites = loop {
            let read = match self.bench().await {
                Ok(bench) => bench.site_configs().await.map_err(|e| err(e, "check the backend container")),
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
        // Each site until it answers or the deadline passes; GATE_CONCURRENCY sites at a time.
        use futures_util::StreamExt;
        let answers: Vec<Result<(), String>> = futures_util::stream::iter(pinged.iter().map(|site| async move {
            loop {
                let said = match self.ping(&site.site, site.maintenance_mode).await {
                    Ok(()) => return Ok(()),
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
        }))
        .buffer_unordered(GATE_CONCURRENCY)
        .collect()
        .await;
        if let Some(why) = answers.into_iter().find_map(Result::err) {
            return Err(why);
        }
        Ok(pinged.len())
    }

    /// One ping of `site` through the backend container (frappe_docker's images ship curl).
    pub(super) async fn ping(&self, site: &str, in_maintenance: bool) -> Result<(), String> {
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
}

/// How many sites the health gate pings at the same time (each ping is an exec of curl in the
/// backend: bounded, so 400 sites do not open 400 execs at once).
const GATE_CONCURRENCY: usize = 8;

/// How long a deploy may take to bring the backend up and the configurator through.
pub(super) const DEPLOY_WAIT: Duration = Duration::from_secs(180);

/// Where gunicorn listens in frappe_docker's images (its CMD binds 0.0.0.0:8000).
pub(super) const PING_URL: &str = "http://127.0.0.1:8000/api/method/ping";

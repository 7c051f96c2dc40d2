//! The canary wave: a canary site's migrate and smoke test run in a one-off container of the new
//! image (compose's `run` of the backend service, on the same `sites` volume and networks), while
//! the backend keeps serving every other site on the image it runs. The container lives from the
//! first canary step to the deploy (or the end of the run) and is then removed.

use super::*;

tokio::task_local! {
    /// Set around a canary step: its site commands exec in the canary container.
    pub(super) static IN_CANARY: bool;
}

/// Whether the running step is a canary's.
pub(super) fn in_canary() -> bool {
    IN_CANARY.try_with(|c| *c).unwrap_or(false)
}

impl Applier<'_> {
    /// The one-off container's name: one per project.
    fn canary_name(&self) -> String {
        format!("{}-benchform-canary", self.p.manifest.project)
    }

    /// The canary container, started on first use: the backend service of the new image, its
    /// command replaced by one that waits (`tail -f /dev/null`), no dependency started.
    pub(super) async fn canary_bench(&self) -> Result<Bench<'_>, StepError> {
        let mut known = self.canary.lock().await;
        if known.is_none() {
            let name = self.canary_name();
            // One left by a run that crashed: it may run an older image — and still a migrate.
            if let Some(argv) = self.migrate_in_canary(None).await {
                return Err(StepError {
                    touched: false,
                    ..err(
                        format!("`{argv}` still runs in the canary container {name}, left by an earlier apply"),
                        "wait for it to end, then run apply again",
                    )
                });
            }
            self.remove_container(&name).await;
            let backend = self.p.manifest.deploy.backend_service.clone();
            let args = ["run", "-d", "--no-deps", "--name", &name, &backend, "tail", "-f", "/dev/null"];
            self.compose.run(&args, &self.env()).await.map_err(|e| StepError {
                touched: false,
                ..err(
                    format!("the canary container of {} did not start: {e}", self.reference()),
                    "check the image and the compose files (`docker compose run` of the backend service), then \
                     apply again",
                )
            })?;
            *known = Some(name);
        }
        let container = known.clone().unwrap_or_default();
        Ok(Bench { engine: &self.engine, container })
    }

    /// Remove the canary container (before the deploy, and when the run ends) — also one a
    /// crashed run left behind — unless a migrate still runs in it (one that timed out, or was
    /// interrupted): killing it would leave the site half-migrated. It is then left, and named.
    pub async fn drop_canary(&self) {
        self.canary.lock().await.take();
        let name = self.canary_name();
        if let Some(argv) = self.migrate_in_canary(None).await {
            tracing::warn!(
                container = %name,
                "`{argv}` still runs in the canary container: it is left running; remove it once that ends \
                 (`docker rm -f {name}`)"
            );
            return;
        }
        self.remove_container(&name).await;
    }

    /// A `bench … migrate` running in the canary container (of `site`, or any), if the container
    /// exists.
    pub(super) async fn migrate_in_canary(&self, site: Option<&str>) -> Option<String> {
        let execs = self.engine.running_execs(&self.canary_name()).await.ok()?;
        super::site::migrate_among(execs, site)
    }

    async fn remove_container(&self, name: &str) {
        let removed = self.cli.output(&["rm", "-f", name]).await;
        if let Ok(out) = removed
            && !out.status.success()
            && !String::from_utf8_lossy(&out.stderr).contains("No such container")
        {
            tracing::warn!(
                container = name,
                "could not remove the canary container: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// The smoke test of a canary: `rollout.smoke` with `{site}` replaced, in the canary container.
    pub(super) async fn smoke(&self, site: &str) -> Result<Outcome, StepError> {
        let argv: Vec<String> = self.p.manifest.rollout.smoke.iter().map(|a| a.replace("{site}", site)).collect();
        if argv.is_empty() {
            return Ok(Outcome::AlreadyDone("no smoke test in the manifest".to_string()));
        }
        let out = self.exec_streamed(&argv, None, site).await?;
        if out.exit_code != 0 {
            let last = |text: &str| text.lines().rev().find(|l| !l.trim().is_empty()).map(str::to_string);
            let said = last(&out.stderr).or_else(|| last(&out.stdout));
            return Err(StepError {
                // The site migrated: a failed smoke test is a failed canary, restored per policy.
                touched: true,
                ..err(
                    format!(
                        "the smoke test of canary {site} failed: `{}` exited {}{}; the new image was not deployed, \
                         and every other site keeps serving on the image it runs",
                        argv.join(" "),
                        out.exit_code,
                        said.map(|l| format!(": {}", l.trim())).unwrap_or_default()
                    ),
                    "fix the release (or the smoke test), then apply again: the canary goes first again",
                )
            });
        }
        // Its migrate recorded it pending until now.
        if let Some(record) = self.site(site).await?.and_then(|o| o.record).filter(|r| r.is_pending()) {
            let value = record.settled().to_python_literal();
            let command = BenchCommand::SetConfig { site, key: benchform_core::record::RECORD_KEY, value: &value };
            self.run_bench(command, None).await.map_err(|e| StepError { touched: false, ..e })?;
        }
        Ok(Outcome::Done(format!("`{}` passed on {site} in the new image", argv.join(" "))))
    }
}

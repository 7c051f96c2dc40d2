//! The migrate step and what follows a failed one: restore from the right backup, or put sites
//! back in service.

use std::time::Duration;

use benchform_bench::BENCH_DIR;
use benchform_core::plan::RestoreFrom;
use benchform_core::record::SiteRecord;
use benchform_core::status::{BACKUP_META_FILE, BackupMeta};
use benchform_docker::TagState;

use super::*;

impl Applier<'_> {
    pub(super) async fn migrate(&self, site: &str) -> Result<Outcome, StepError> {
        let desired = self
            .p
            .desired
            .sites
            .iter()
            .find(|s| s.name == site)
            .ok_or_else(|| err(format!("{site} is not in the manifest"), "re-plan"))?;
        self.no_migrate_running(site, "second migrate").await?;
        let observed = self.site(site).await.map_err(|e| StepError { touched: false, ..e })?;
        // The code it will run: its manifest apps and whatever else is installed on it.
        let installed = observed.as_ref().map(|o| o.installed.clone()).unwrap_or_default();
        let code = self.p.desired.site_code(desired, &installed);
        if let Some(o) = &observed
            && o.record.as_ref().is_some_and(|r| r.fingerprint == code.fingerprint())
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
        // (A canary's migrate does not count: the deploy after it may still take its image back,
        // and the canary stays in maintenance then.)
        if !super::canary::in_canary() {
            self.migrated.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let migrate = self.run_bench(BenchCommand::Migrate { site }, None);
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
            if e.cause == Some(Failure::MigrateLocked) {
                e.touched = false;
                e.fix = format!("another migrate of {site} is still running; wait for it to end, then run apply again");
            }
            if e.cause == Some(Failure::ReadOnly) {
                if let Ok(mut sites) = self.refused_writes.lock() {
                    sites.insert(site.to_string());
                }
                e.fix = format!(
                    "the database server refuses writes (read-only): make it writable again, then run apply again; \
                     {site} stays in maintenance mode"
                );
            }
            return Err(e);
        }
        // A registry that could not answer is asked again by the next site's migrate.
        let digest = self
            .digest
            .get_or_try_init(|| async {
                if !self.p.manifest.image.push {
                    return Ok(None);
                }
                match self.engine.registry_tag(&self.reference()).await {
                    Ok(TagState::Present { digest }) => Ok(Some(digest)),
                    Ok(TagState::Absent) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .ok()
            .cloned()
            .flatten();
        let record =
            SiteRecord::new(&self.p.manifest.project, code.commits, code.refs, &self.reference(), digest, &now_utc())
                .with_undeclared(code.undeclared);
        // A canary with a smoke test to pass is recorded pending until it passes: if the run
        // stops in between, the next one migrates it (nothing left for Frappe) and tests it again.
        let record = if super::canary::in_canary() && !self.p.manifest.rollout.smoke.is_empty() {
            record.pending()
        } else {
            record
        };
        let value = record.to_python_literal();
        self.run_bench(BenchCommand::SetConfig { site, key: benchform_core::record::RECORD_KEY, value: &value }, None)
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

    /// After a deploy rolled back to the previous image: the sites this run took out of service
    /// were not migrated, so the previous code matches their schema — serve them again.
    pub async fn back_in_service(&self, sites: &[(String, bool)]) -> Vec<Result<String, (String, StepError)>> {
        let mut out = Vec::new();
        for (site, was_paused) in sites.iter().cloned() {
            let released = self.run_bench_all(&super::maintenance::release_commands(&site, !was_paused)).await;
            out.push(match released {
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
        if self.restored.lock().is_ok_and(|s| s.contains(site)) {
            return Ok(Recovery::Left(format!(
                "{site} is left in maintenance mode: this run brought its data back to an older backup (the \
                 rollback) before the migrate failed, and this run's own backup is of the newer data. Fix the \
                 cause and run apply again: it restores and migrates again"
            )));
        }
        // Frappe's restore drops the database before it loads the backup: on a server that refuses
        // writes it would load nothing, and the site would be left empty.
        if self.refused_writes.lock().is_ok_and(|s| s.contains(site)) {
            return Ok(Recovery::Left(format!(
                "{site} was not restored: the database server refuses writes, and a restore drops the database \
                 before it loads the backup. It stays in maintenance mode with its data as the failed migrate left \
                 it; this run's backup is kept. Once the server accepts writes, run apply again"
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
        self.restore_from(site, &dir).await?;
        let _ = std::fs::remove_file(self.host_backups(site).join(UNFINISHED));
        // A canary whose smoke test failed was recorded as migrated: its data is older again, so
        // its record is marked pending and the next apply migrates it.
        if let Ok(Some(o)) = self.site(site).await
            && let Some(d) = self.p.desired.sites.iter().find(|d| d.name == site)
            && o.record.as_ref().is_some_and(|r| {
                r.fingerprint == benchform_core::record::fingerprint(&self.p.desired.site_code(d, &o.installed).commits)
            })
        {
            self.mark_pending(site, Some(&o)).await?;
        }
        let which = if earlier.is_some() {
            "the backup its first unfinished migrate started from"
        } else {
            "the backup taken in this run"
        };
        Ok(Recovery::Restored(format!("{site} restored from {which} ({dir}) and left in maintenance mode")))
    }

    /// `bench restore` of the backup in folder `dir` inside the bench: database, public and
    /// private files, the root password on standard input.
    async fn restore_from(&self, site: &str, dir: &str) -> Result<(), StepError> {
        let bench = self.bench().await?;
        let find = |pattern: &str| vec!["find".to_string(), dir.to_string(), "-name".to_string(), pattern.to_string()];
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
        let public = first(
            run(find("*-files.t*"))
                .await?
                .lines()
                .filter(|l| !l.contains("private-files"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let private = first(run(find("*-private-files.t*")).await?);
        let restore = BenchCommand::Restore {
            site,
            database: &db,
            public_files: public.as_deref(),
            private_files: private.as_deref(),
        };
        // restore may ask for the database root password: answer on stdin, never in argv.
        let root = self.secret(self.p.manifest.deploy.db_root_password_env.as_deref()).unwrap_or_default();
        let answer = format!("{root}\n");
        self.run_bench(restore, Some(answer.as_bytes())).await?;
        Ok(())
    }

    /// The `restore` step of a rollback by revert: the site's data goes back to the backup
    /// benchform kept on the host (copied back into the volume when the volume no longer holds
    /// it), database and files.
    pub(super) async fn restore(&self, site: &str, from: &RestoreFrom) -> Result<Outcome, StepError> {
        if from.backup.is_empty() || from.backup.contains(['/', '.']) {
            return Err(err(format!("backup name {:?} is not a folder name", from.backup), "make the plan again"));
        }
        let host = self.host_backups(site).join(&from.backup);
        if !host.join(BACKUP_META_FILE).is_file() {
            return Err(err(
                format!("the backup {} is gone from {}", from.backup, self.host_backups(site).display()),
                "put it back, or make the plan again (it names what it needs)",
            ));
        }
        // A restore under a running migrate would load data under a half-written schema.
        self.no_migrate_running(site, "restore").await?;
        let inside = format!("{BENCH_DIR}/sites/{site}/private/benchform-backups/{}", from.backup);
        let bench = self.bench().await?;
        let argv = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<String>>();
        let check = |e| err(e, "check the backend");
        // Always afresh from the host: a copy an interrupted run left in the volume may be partial.
        {
            let parent = format!("{BENCH_DIR}/sites/{site}/private/benchform-backups");
            bench.run(&argv(&["rm", "-rf", &inside]), Some(Duration::from_secs(60))).await.map_err(check)?;
            bench.run(&argv(&["mkdir", "-p", &parent]), Some(Duration::from_secs(30))).await.map_err(check)?;
            self.cli
                .copy(&host.display().to_string(), &format!("{}:{inside}", bench.container))
                .await
                .map_err(|e| err(e, "check the docker CLI"))?
                .map_err(|e| {
                    err(
                        format!("copying the backup back into the volume failed: {e}"),
                        "check the backend container and backups.dir",
                    )
                })?;
        }
        if let Ok(mut restored) = self.restored.lock() {
            restored.insert(site.to_string());
        }
        self.restore_from(site, &inside).await?;
        // The data matches the backup's code now: record that, pending, so that a run stopped
        // before the migrate leaves a site the next plan only migrates (no second restore).
        let meta: Option<BackupMeta> =
            std::fs::read(host.join(BACKUP_META_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(record) = meta.and_then(|m| m.record) {
            let value = record.pending().to_python_literal();
            let command = BenchCommand::SetConfig { site, key: benchform_core::record::RECORD_KEY, value: &value };
            self.run_bench(command, None).await?;
        }
        Ok(Outcome::Done(format!(
            "{site} restored from its backup of {} ({}); what was written since then is gone (the backup taken \
             just before holds it)",
            from.taken_at,
            host.display()
        )))
    }
}

/// What was done for a site whose migrate failed.
#[derive(Debug)]
pub enum Recovery {
    Restored(String),
    /// Left as the migrate left it (policy `stop`).
    Left(String),
}

//! Taking a site out of service around its changes, and putting it back.

use super::*;

impl Applier<'_> {
    /// Once `ready-for-migration` answers READY: maintenance mode on, scheduler paused. A site
    /// that was in service is remembered, so a failed run can put it back.
    ///
    /// Only a site the plan puts back in service is benchform's to hold: it is marked so (the
    /// mark first, so a crash in between leaves a site benchform still knows it holds), with how
    /// its scheduler was found. A site in maintenance mode set by someone else is left exactly as
    /// it is (its scheduler runs no jobs in maintenance mode), unmarked, and no later apply lifts
    /// it.
    pub(super) async fn maintenance_on(&self, site: &str) -> Result<Outcome, StepError> {
        self.ready_for_migration(site).await?;
        if !self.options.hold_maintenance.contains(site) {
            return Ok(Outcome::Done(
                "ready for migration; it stays in maintenance mode as set outside benchform".into(),
            ));
        }
        let before = self.site(site).await?;
        if let Some(o) = before.as_ref().filter(|o| !o.maintenance_mode)
            && let Ok(mut entered) = self.entered_maintenance.lock()
        {
            entered.push((site.to_string(), o.scheduler_paused));
        }
        // An existing mark (an earlier run's) already says how the scheduler was found.
        if !before.as_ref().is_some_and(|o| o.maintenance_held) {
            let paused_before =
                !self.options.release_maintenance.contains(site) && before.as_ref().is_some_and(|o| o.scheduler_paused);
            let mark = benchform_core::record::maintenance_mark(&now_utc(), paused_before);
            let key = benchform_core::record::MAINTENANCE_KEY;
            self.run_bench(BenchCommand::SetConfig { site, key, value: &mark }, None).await?;
        }
        self.run_bench(BenchCommand::MaintenanceMode { site, on: true }, None).await?;
        self.run_bench(BenchCommand::Scheduler { site, action: Scheduler::Pause }, None).await?;
        Ok(Outcome::Done("maintenance mode on, scheduler paused".into()))
    }

    /// Scheduler resumed (unless someone else had paused it before benchform took the site out
    /// of service, and it was not released), maintenance mode off, then the mark removed.
    pub(super) async fn maintenance_off(&self, site: &str) -> Result<Outcome, StepError> {
        // The mark lives in site_config.json: one exec reads it, no database is touched (a
        // site is put back in service even while its database is unreachable).
        let keep_paused = !self.options.release_maintenance.contains(site) && {
            let configs =
                self.bench().await?.site_configs().await.map_err(|e| err(e, "check the backend container"))?;
            configs.iter().any(|c| c.site == site && c.scheduler_paused_before)
        };
        if !keep_paused {
            self.run_bench(BenchCommand::Scheduler { site, action: Scheduler::Resume }, None).await?;
        }
        self.run_bench(BenchCommand::MaintenanceMode { site, on: false }, None).await?;
        self.unmark_maintenance(site).await?;
        Ok(Outcome::Done(if keep_paused {
            "maintenance mode off; the scheduler stays paused, as it was found".into()
        } else {
            "scheduler resumed, maintenance mode off".into()
        }))
    }

    /// Remove the site's mark that benchform holds its maintenance (`record::MAINTENANCE_KEY`;
    /// Frappe's `set-config` deletes a key set to the string `None`).
    pub(super) async fn unmark_maintenance(&self, site: &str) -> Result<(), StepError> {
        let key = benchform_core::record::MAINTENANCE_KEY;
        self.run_bench(BenchCommand::UnsetConfig { site, key }, None).await.map(|_| ())
    }
}

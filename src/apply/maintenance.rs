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
        // Its flags live in site_config.json: one exec, no database read.
        let before = self.site_config(site).await?;
        if let Some(problem) = before.as_ref().and_then(|c| c.damaged.as_ref()) {
            return Err(unreadable(site, problem));
        }
        if let Some(o) = before.as_ref().filter(|o| !o.maintenance_mode)
            && let Ok(mut entered) = self.entered_maintenance.lock()
        {
            entered.push((site.to_string(), o.scheduler_paused));
        }
        // The mark first, in the same exec as the flags (stopping at the first failure).
        let mark;
        let mut commands = Vec::new();
        // An existing mark (an earlier run's) already says how the scheduler was found.
        if !before.as_ref().is_some_and(|o| o.maintenance_held) {
            let paused_before =
                !self.options.release_maintenance.contains(site) && before.as_ref().is_some_and(|o| o.scheduler_paused);
            mark = benchform_core::record::maintenance_mark(&now_utc(), paused_before);
            let key = benchform_core::record::MAINTENANCE_KEY;
            commands.push(BenchCommand::SetConfig { site, key, value: &mark });
        }
        commands.push(BenchCommand::MaintenanceMode { site, on: true });
        commands.push(BenchCommand::Scheduler { site, action: Scheduler::Pause });
        self.run_bench_all(&commands).await?;
        Ok(Outcome::Done("maintenance mode on, scheduler paused".into()))
    }

    /// Scheduler resumed (unless someone else had paused it before benchform took the site out
    /// of service, and it was not released), maintenance mode off, then the mark removed.
    pub(super) async fn maintenance_off(&self, site: &str) -> Result<Outcome, StepError> {
        // How the scheduler was found: known when this run took the site out of service (it
        // wrote the mark), else from the mark in site_config.json: one exec, no database touched
        // (a site is put back in service even while its database is unreachable).
        let entered = self
            .entered_maintenance
            .lock()
            .ok()
            .and_then(|e| e.iter().find(|(s, _)| s == site).map(|(_, paused)| *paused));
        let keep_paused = !self.options.release_maintenance.contains(site)
            && match entered {
                Some(paused) => paused,
                None => self.site_config(site).await?.is_some_and(|c| c.scheduler_paused_before),
            };
        self.run_bench_all(&release_commands(site, !keep_paused)).await?;
        Ok(Outcome::Done(if keep_paused {
            "maintenance mode off; the scheduler stays paused, as it was found".into()
        } else {
            "scheduler resumed, maintenance mode off".into()
        }))
    }
}

/// Back in service, in one exec: scheduler resumed (`resume`), maintenance mode off, then the
/// mark that benchform holds the site's maintenance removed (`record::MAINTENANCE_KEY`; Frappe's
/// `set-config` deletes a key set to the string `None`).
pub(super) fn release_commands(site: &str, resume: bool) -> Vec<BenchCommand<'_>> {
    let mut commands = Vec::new();
    if resume {
        commands.push(BenchCommand::Scheduler { site, action: Scheduler::Resume });
    }
    commands.push(BenchCommand::MaintenanceMode { site, on: false });
    commands.push(BenchCommand::UnsetConfig { site, key: benchform_core::record::MAINTENANCE_KEY });
    commands
}

//! Taking a site out of service around its changes, and putting it back.

use super::*;

impl Applier<'_> {
    /// Once `ready-for-migration` answers READY: maintenance mode on, scheduler paused. A site
    /// that was in service is remembered, so a failed run can put it back.
    pub(super) async fn maintenance_on(&self, site: &str) -> Result<Outcome, StepError> {
        self.ready_for_migration(site).await?;
        let before = self.site(site).await?;
        if let Some(o) = before.filter(|o| !o.maintenance_mode)
            && let Ok(mut entered) = self.entered_maintenance.lock()
        {
            entered.push((site.to_string(), o.scheduler_paused));
        }
        self.run_bench(BenchCommand::MaintenanceMode { site, on: true }, None).await?;
        self.run_bench(BenchCommand::Scheduler { site, action: Scheduler::Pause }, None).await?;
        Ok(Outcome::Done("maintenance mode on, scheduler paused".into()))
    }

    pub(super) async fn maintenance_off(&self, site: &str) -> Result<Outcome, StepError> {
        self.run_bench(BenchCommand::Scheduler { site, action: Scheduler::Resume }, None).await?;
        self.run_bench(BenchCommand::MaintenanceMode { site, on: false }, None).await?;
        Ok(Outcome::Done("scheduler resumed, maintenance mode off".into()))
    }
}

//! Taking a site out of service around its changes, and putting it back.

use super::*;

impl Applier<'_> {
    /// Once `ready-for-migration` answers READY: maintenance mode on, scheduler paused. A site
    /// that was in service is remembered, so a failed run can put it back.
    ///
    /// Only a site the plan puts back in service is benchform's to hold: it is marked so (the
    /// mark first, so a crash in between leaves a site benchform still knows it holds). A site in
    /// maintenance set by someone else keeps it, unmarked, and no later apply lifts it.
    pub(super) async fn maintenance_on(&self, site: &str) -> Result<Outcome, StepError> {
        self.ready_for_migration(site).await?;
        let before = self.site(site).await?;
        let ours = self.options.hold_maintenance.contains(site);
        if ours
            && let Some(o) = before.as_ref().filter(|o| !o.maintenance_mode)
            && let Ok(mut entered) = self.entered_maintenance.lock()
        {
            entered.push((site.to_string(), o.scheduler_paused));
        }
        if ours {
            self.mark_maintenance(site, true).await?;
        }
        self.run_bench(BenchCommand::MaintenanceMode { site, on: true }, None).await?;
        self.run_bench(BenchCommand::Scheduler { site, action: Scheduler::Pause }, None).await?;
        Ok(Outcome::Done(if ours {
            "maintenance mode on, scheduler paused".into()
        } else {
            "scheduler paused; maintenance mode stays as it was set outside benchform".into()
        }))
    }

    pub(super) async fn maintenance_off(&self, site: &str) -> Result<Outcome, StepError> {
        self.run_bench(BenchCommand::Scheduler { site, action: Scheduler::Resume }, None).await?;
        self.run_bench(BenchCommand::MaintenanceMode { site, on: false }, None).await?;
        self.mark_maintenance(site, false).await?;
        Ok(Outcome::Done("scheduler resumed, maintenance mode off".into()))
    }

    /// Write or remove the site's mark that benchform holds its maintenance
    /// (`record::MAINTENANCE_KEY`; Frappe's `set-config` deletes a key set to `None`).
    pub(super) async fn mark_maintenance(&self, site: &str, held: bool) -> Result<(), StepError> {
        let key = benchform_core::record::MAINTENANCE_KEY;
        let since = serde_json::Value::String(format!("held by benchform apply since {}", now_utc())).to_string();
        let command = if held {
            BenchCommand::SetConfig { site, key, value: &since }
        } else {
            BenchCommand::UnsetConfig { site, key }
        };
        self.run_bench(command, None).await.map(|_| ())
    }
}

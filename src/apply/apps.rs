//! The steps that change a site's apps: install and uninstall, each read back afterwards
//! (bench exits 0 when it did nothing).

use super::*;

impl Applier<'_> {
    pub(super) async fn install_app(&self, site: &str, app: &str) -> Result<Outcome, StepError> {
        let before = self.site(site).await?;
        if before.as_ref().is_some_and(|o| o.installed.iter().any(|a| a == app)) {
            return Ok(Outcome::AlreadyDone(format!("{app} is installed")));
        }
        self.mark_pending(site, before.as_ref()).await?;
        self.run_bench(BenchCommand::InstallApp { site, app }, None).await?;
        // bench exits 0 when it did nothing: read the truth back.
        if !self.installed(site).await?.unwrap_or_default().iter().any(|a| a == app) {
            return Err(err(
                format!("bench reported success but {app} is not installed on {site}"),
                "check the app's before_install hook",
            ));
        }
        Ok(Outcome::Done(format!("{app} installed")))
    }

    pub(super) async fn uninstall_app(&self, site: &str, app: &str) -> Result<Outcome, StepError> {
        let before = self.site(site).await?;
        if !before.as_ref().is_some_and(|o| o.installed.iter().any(|a| a == app)) {
            return Ok(Outcome::AlreadyDone(format!("{app} is not installed")));
        }
        self.mark_pending(site, before.as_ref()).await?;
        self.run_bench(BenchCommand::UninstallApp { site, app }, None).await?;
        // bench exits 0 when it did nothing (e.g. another app depends on this one).
        if self.installed(site).await?.unwrap_or_default().iter().any(|a| a == app) {
            return Err(err(
                format!("bench reported success but {app} is still installed on {site}"),
                "check whether another installed app requires it",
            ));
        }
        Ok(Outcome::Done(format!("{app} uninstalled")))
    }
}

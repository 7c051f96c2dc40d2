//! A plan's steps: their kinds (each kind's properties in one place), ids, and the comparison of a
//! saved plan's steps with the planner's.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a step does. The strings are a public contract (JSON plans).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Build,
    Verify,
    Push,
    MaintenanceOn,
    Backup,
    Restore,
    UninstallApp,
    Deploy,
    RefreshAssets,
    NewSite,
    InstallApp,
    Migrate,
    Smoke,
    MaintenanceOff,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Build => "build",
            StepKind::Verify => "verify",
            StepKind::Push => "push",
            StepKind::MaintenanceOn => "maintenance-on",
            StepKind::Backup => "backup",
            StepKind::Restore => "restore",
            StepKind::UninstallApp => "uninstall-app",
            StepKind::Deploy => "deploy",
            StepKind::RefreshAssets => "refresh-assets",
            StepKind::NewSite => "new-site",
            StepKind::InstallApp => "install-app",
            StepKind::Migrate => "migrate",
            StepKind::Smoke => "smoke",
            StepKind::MaintenanceOff => "maintenance-off",
        }
    }

    /// Loses data if it goes wrong and no backup is restored (uninstalling an app drops its
    /// tables). Every property below is an exhaustive match: a new kind must decide each.
    pub fn destructive(self) -> bool {
        match self {
            StepKind::UninstallApp | StepKind::Restore => true,
            StepKind::Build
            | StepKind::Verify
            | StepKind::Push
            | StepKind::MaintenanceOn
            | StepKind::Backup
            | StepKind::Deploy
            | StepKind::RefreshAssets
            | StepKind::NewSite
            | StepKind::InstallApp
            | StepKind::Migrate
            | StepKind::Smoke
            | StepKind::MaintenanceOff => false,
        }
    }

    /// Changes a site's data or code: the running backend must have passed the health gate first.
    pub fn needs_gate(self) -> bool {
        match self {
            StepKind::NewSite | StepKind::InstallApp | StepKind::Migrate => true,
            // A canary's smoke runs in its own one-off container, before any deploy.
            StepKind::Smoke => false,
            StepKind::Build
            | StepKind::Verify
            | StepKind::Push
            | StepKind::MaintenanceOn
            | StepKind::Backup
            | StepKind::Restore
            | StepKind::UninstallApp
            | StepKind::Deploy
            | StepKind::RefreshAssets
            | StepKind::MaintenanceOff => false,
        }
    }

    /// Still starts after another step failed (a migrated site leaves maintenance mode).
    pub fn runs_after_a_failure(self) -> bool {
        match self {
            StepKind::MaintenanceOff => true,
            StepKind::Build
            | StepKind::Verify
            | StepKind::Push
            | StepKind::MaintenanceOn
            | StepKind::Backup
            | StepKind::Restore
            | StepKind::UninstallApp
            | StepKind::Deploy
            | StepKind::RefreshAssets
            | StepKind::NewSite
            | StepKind::InstallApp
            | StepKind::Migrate
            | StepKind::Smoke => false,
        }
    }

    /// Leaves the site's data and code as they were (taking it out of service aside): a site
    /// whose steps went no further can be put back in service on the image it ran before.
    pub fn leaves_site_untouched(self) -> bool {
        match self {
            StepKind::MaintenanceOn | StepKind::Backup => true,
            StepKind::Build
            | StepKind::Verify
            | StepKind::Push
            | StepKind::Restore
            | StepKind::UninstallApp
            | StepKind::Deploy
            | StepKind::RefreshAssets
            | StepKind::NewSite
            | StepKind::InstallApp
            | StepKind::Migrate
            | StepKind::Smoke
            | StepKind::MaintenanceOff => false,
        }
    }

    /// Runs compose, which may recreate any container of the project (the backend included),
    /// also when it fails or is interrupted half-way.
    pub fn recreates_containers(self) -> bool {
        match self {
            StepKind::Deploy => true,
            StepKind::Build
            | StepKind::Verify
            | StepKind::Push
            | StepKind::MaintenanceOn
            | StepKind::Backup
            | StepKind::Restore
            | StepKind::UninstallApp
            | StepKind::RefreshAssets
            | StepKind::NewSite
            | StepKind::InstallApp
            | StepKind::Migrate
            | StepKind::Smoke
            | StepKind::MaintenanceOff => false,
        }
    }

    /// `+` create, `~` change, `-` destroy (plan text).
    pub fn symbol(self) -> char {
        match self {
            StepKind::Build | StepKind::Push | StepKind::Backup | StepKind::NewSite | StepKind::InstallApp => '+',
            StepKind::UninstallApp => '-',
            // The site's data goes back to a backup: a change, marked destructive.
            StepKind::Restore => '~',
            StepKind::Verify
            | StepKind::MaintenanceOn
            | StepKind::Deploy
            | StepKind::RefreshAssets
            | StepKind::Migrate
            | StepKind::Smoke
            | StepKind::MaintenanceOff => '~',
        }
    }

    /// Every kind, in the order summaries list them.
    pub const ALL: [StepKind; 14] = [
        StepKind::Build,
        StepKind::Verify,
        StepKind::Push,
        StepKind::MaintenanceOn,
        StepKind::Backup,
        StepKind::Restore,
        StepKind::UninstallApp,
        StepKind::Deploy,
        StepKind::RefreshAssets,
        StepKind::NewSite,
        StepKind::InstallApp,
        StepKind::Migrate,
        StepKind::Smoke,
        StepKind::MaintenanceOff,
    ];
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the plan: the kind, then the site and app it concerns (`migrate:a.example.com`).
    pub id: String,
    pub kind: StepKind,
    pub site: Option<String>,
    pub app: Option<String>,
    /// One line: why this step is needed.
    pub reason: String,
    /// Loses data if it goes wrong and no backup is restored (uninstalling an app drops its tables).
    pub destructive: bool,
    pub depends_on: Vec<String>,
    /// For `deploy`: the services named to `compose up` (it creates, recreates or starts them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// For `deploy`: every container compose will touch, each with why — the services above,
    /// those `up` starts again because they depend on each other (a one-shot configurator), and
    /// orphans it removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_changes: Vec<ServiceChange>,
    /// For `migrate`: the patches it will run and the DocTypes whose schema changes, as far as
    /// known when the plan was made (`plan` only; informs, never decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<crate::patches::Preview>,
    /// For `restore`: the backup the site's data goes back to, and what is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreFrom>,
    /// For `migrate` and `smoke`: a canary's, run in a one-off container of the new image before
    /// the deploy, while the other sites keep serving on the old one. Left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
}

/// The backup a `restore` step brings a site back to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreFrom {
    /// Its folder under the site's folder in `backups.dir` (a UTC time stamp).
    pub backup: String,
    /// When it was taken (RFC 3339): everything the site recorded after it, up to the restore,
    /// is lost.
    pub taken_at: String,
}

/// One service a deploy touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceChange {
    pub service: String,
    /// Why compose touches it: `not running`, `exited (1)`, `runs bf1-…` (another image), `its
    /// compose configuration changed`, `runs again: …` (a dependency), `orphan: …` (removed).
    pub reason: String,
    /// Recreating it interrupts every site (a database, redis: connections drop, a cache comes
    /// back empty).
    pub disruptive: bool,
}

/// A step's id: the kind, then the site and app it concerns (`install-app:a.localhost:hrms`).
pub fn step_id(kind: StepKind, site: Option<&str>, app: Option<&str>) -> String {
    let mut id = kind.as_str().to_string();
    for part in [site, app].into_iter().flatten() {
        id.push(':');
        id.push_str(part);
    }
    id
}

/// The first way `saved` differs from `now` (the planner's steps for the same world and inputs),
/// in words; `None` when they are the same steps in the same order.
pub fn first_difference(saved: &[Step], now: &[Step]) -> Option<String> {
    for (i, (a, b)) in saved.iter().zip(now).enumerate() {
        let n = i + 1;
        if a.id != b.id {
            return Some(match now.iter().position(|s| s.id == a.id) {
                Some(_) => format!("step {n} is `{}` in the file but `{}` now (the order differs)", a.id, b.id),
                None => format!("step {n} `{}` is not a step the planner produces (it plans `{}` there)", a.id, b.id),
            });
        }
        let lists = |what: &str, x: &[String], y: &[String]| {
            (x != y).then(|| {
                format!("step {n} `{}` {what} [{}] in the file but [{}] now", a.id, x.join(", "), y.join(", "))
            })
        };
        if let Some(d) = lists("depends on", &a.depends_on, &b.depends_on) {
            return Some(d);
        }
        if a.destructive != b.destructive {
            return Some(format!("step {n} `{}` has its destructive mark changed", a.id));
        }
        if let Some(d) = lists("names services", &a.services, &b.services) {
            return Some(d);
        }
        if a.service_changes != b.service_changes {
            return Some(format!("step {n} `{}` names other service changes than the planner's", a.id));
        }
        if a.canary != b.canary {
            return Some(format!("step {n} `{}` has its canary mark changed", a.id));
        }
        if a.restore != b.restore {
            return Some(format!("step {n} `{}` restores another backup than the planner would", a.id));
        }
        if a.reason != b.reason {
            return Some(format!("step {n} `{}` gives another reason than the planner's: {:?}", a.id, b.reason));
        }
    }
    match saved.len().cmp(&now.len()) {
        std::cmp::Ordering::Greater => Some(format!(
            "the file has {} step(s) more than the planner produces, from `{}`",
            saved.len() - now.len(),
            saved[now.len()].id
        )),
        std::cmp::Ordering::Less => Some(format!(
            "the file lacks {} step(s) the planner produces, from `{}`",
            now.len() - saved.len(),
            now[saved.len()].id
        )),
        std::cmp::Ordering::Equal => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(kind: StepKind, site: Option<&str>, deps: &[&str]) -> Step {
        Step {
            id: step_id(kind, site, None),
            kind,
            site: site.map(str::to_string),
            app: None,
            reason: "r".to_string(),
            destructive: false,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            services: vec![],
            service_changes: vec![],
            preview: None,
            restore: None,
            canary: false,
        }
    }

    #[test]
    fn the_first_difference_is_named() {
        let now =
            vec![s(StepKind::MaintenanceOn, Some("a"), &[]), s(StepKind::Backup, Some("a"), &["maintenance-on:a"])];
        assert_eq!(first_difference(&now, &now), None);
        let swapped = vec![now[1].clone(), now[0].clone()];
        assert_eq!(
            first_difference(&swapped, &now).unwrap(),
            "step 1 is `backup:a` in the file but `maintenance-on:a` now (the order differs)"
        );
        let mut more = now.clone();
        more.push(s(StepKind::NewSite, Some("evil"), &[]));
        assert_eq!(
            first_difference(&more, &now).unwrap(),
            "the file has 1 step(s) more than the planner produces, from `new-site:evil`"
        );
        assert_eq!(
            first_difference(&now[..1], &now).unwrap(),
            "the file lacks 1 step(s) the planner produces, from `backup:a`"
        );
        let mut deps = now.clone();
        deps[1].depends_on.clear();
        assert_eq!(
            first_difference(&deps, &now).unwrap(),
            "step 2 `backup:a` depends on [] in the file but [maintenance-on:a] now"
        );
        let mut marked = now.clone();
        marked[1].destructive = true;
        assert_eq!(first_difference(&marked, &now).unwrap(), "step 2 `backup:a` has its destructive mark changed");
        let mut other = now.clone();
        other[0] = s(StepKind::UninstallApp, Some("a"), &[]);
        assert!(first_difference(&other, &now).unwrap().contains("is not a step the planner produces"));
    }
}

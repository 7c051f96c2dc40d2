//! The planner: `plan(desired, observed) -> Plan`, pure.
//!
//! A plan is the ordered list of steps apply will take, each with its reason and the steps it
//! depends on, and nothing else. All sites share one image, so the order protects every site from
//! running new code on an old schema:
//!
//! 1. `build` → `verify` → `push` when the tag is in neither registry nor engine (`verify` →
//!    `push` when only the engine has it: nothing unverified is pushed);
//! 2. for every existing site that will migrate: `maintenance-on` and `backup`, before the deploy;
//! 3. `uninstall-app` (policy permitting, after that site's backup) before deploying an image that
//!    may no longer contain the app;
//! 4. `deploy` (naming the services recreated and why), then `refresh-assets` if the image of
//!    running containers changed;
//! 5. per site: `new-site`, `install-app` (manifest order), `migrate`, `maintenance-off`.
//!
//! A site migrates when its recorded fingerprint (the commits it was last migrated to) differs
//! from the desired one, or it gains or loses an app. A change to an app a site does not have
//! never migrates it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::{Desired, DesiredSite, Drift, HostBackup, Observed, ObservedSite, TagObservation};
pub use crate::step::{RestoreFrom, ServiceChange, Step, StepKind, first_difference, step_id};

/// A plan: steps in order, the sites it cannot plan for, and what changed outside benchform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub project: String,
    pub repository: String,
    pub tag: String,
    pub steps: Vec<Step>,
    /// Sites of the manifest that benchform cannot plan for as observed; no step touches them.
    pub blocked: Vec<Blocked>,
    pub drift: Vec<Drift>,
}

/// A site of the manifest that no step touches, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Blocked {
    pub site: String,
    /// What was observed.
    pub detail: String,
    /// What the operator can do; never a step that discards data benchform does not understand.
    pub fix: String,
}

impl Plan {
    /// No step to take (blocked sites may remain).
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Nothing to do and nothing blocked: the deployment matches the manifest.
    pub fn converged(&self) -> bool {
        self.steps.is_empty() && self.blocked.is_empty()
    }

    /// Steps per kind, in kind order, kinds with no step left out.
    pub fn summary(&self) -> BTreeMap<StepKind, usize> {
        let mut out = BTreeMap::new();
        for s in &self.steps {
            *out.entry(s.kind).or_insert(0) += 1;
        }
        out
    }

    pub fn destructive(&self) -> usize {
        self.steps.iter().filter(|s| s.destructive).count()
    }
}

/// Choices that change what a plan may do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanOptions {
    /// Run older code on a site migrated to newer code (refused by default).
    pub allow_downgrade: bool,
    /// Bring a site migrated to newer code back to the backup benchform took before that migrate,
    /// then run the older code on it (`--allow-restore`: a rollback by revert, data included).
    pub allow_restore: bool,
    /// Sites put in maintenance by someone else that this plan puts back in service
    /// (`--release-maintenance`).
    pub release_maintenance: Vec<String>,
    /// Start this project although the same compose files run under another project name
    /// (`--allow-new-project`).
    pub allow_new_project: bool,
}

impl PlanOptions {
    /// `o` is in maintenance mode by someone else's hand, and stays so: benchform did not take
    /// it out of service and was not asked to release it. (A scheduler paused by hand alone is
    /// not maintenance: benchform may take such a site out of service for a migrate, and leaves
    /// its scheduler paused when it puts it back.)
    pub fn held_by_others(&self, o: &ObservedSite) -> bool {
        o.maintenance_mode && !o.maintenance_held && !self.release_maintenance.contains(&o.name)
    }
}

/// Why no safe plan exists. Each says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "site {site} has {app} installed, but the desired image does not contain it: the site would break on \
         migrate and on every request. Uninstall it first (set policy.allow_uninstall: true), or keep the app \
         in `apps`"
    )]
    AppMissingFromImage { site: String, app: String },
    #[error(
        "site {site} has {app} installed outside the manifest (benchform never installed it there), and the desired \
         image does not contain it: the site would break on migrate and on every request (ModuleNotFoundError). \
         Add {app} to `apps` (it stays installed and is pinned), or uninstall it by hand after a backup (`bench \
         --site {site} uninstall-app {app}`)"
    )]
    UndeclaredAppMissingFromImage { site: String, app: String },
    #[error(
        "site {site}: the manifest no longer lists {app}, which benchform installed there; removing it needs \
         policy.allow_uninstall: true (after a backup), or list it on the site again"
    )]
    UninstallNotAllowed { site: String, app: String },
    #[error(
        "site {site}: {app} would go from {from} down to {to}; older code on a newer schema corrupts data, and \
         Frappe has no down-migrations. Pin {from} or newer; or pass --allow-restore to bring the site back to \
         the backup benchform took before it migrated to {from} (data written since is lost; the plan says \
         since when); or --allow-downgrade if you have restored a matching backup yourself"
    )]
    Downgrade { site: String, app: String, from: String, to: String },
    #[error(
        "site {site}: --allow-restore needs the backup benchform took of it while its schema matched the code \
         this plan deploys ({code}), and {backups_dir} holds none{seen}. Restore one by hand and pass \
         --allow-downgrade, or pin the newer code again"
    )]
    NoRestorePoint { site: String, code: String, backups_dir: String, seen: String },
    #[error(
        "site {site} was last migrated by benchform for project {other}, not {project}: two manifests must not \
         manage one site. Fix the project name, or remove the site from one manifest"
    )]
    ForeignSite { site: String, other: String, project: String },
    #[error(
        "--release-maintenance {site}: {why}; drop it from the command line (the sites it may name are in maintenance \
         mode set outside benchform: `benchform status` lists them under drift)"
    )]
    NothingToRelease { site: String, why: String },
    #[error(
        "the compose files define frappe_docker's `migrator` service: it runs `bench --site all migrate` on every \
         deploy, next to the new backend, with no backup and no maintenance mode. Remove overrides/compose.migrator.yaml \
         from deploy.compose.files: benchform migrates each site that needs it, after a backup"
    )]
    MigratorService,
    #[error(
        "service {service} runs {image}: PostgreSQL sites are not supported yet (benchform's backups, restores and \
         site reads are MariaDB's). Deploy with overrides/compose.mariadb.yaml, or an external MariaDB (DB_HOST)"
    )]
    PostgresDatabase { service: String, image: String },
    #[error(
        "no service of the compose files runs {repository}: compose renders {services}. A file rendered with \
         `docker compose config` (or pwd.yml) names fixed images, so a deploy would change nothing. Point \
         deploy.compose.files at frappe_docker's compose.yaml and overrides, whose services run \
         ${{CUSTOM_IMAGE}}:${{CUSTOM_TAG}} (benchform sets both)"
    )]
    NoServiceRunsImage { repository: String, services: String },
    #[error(
        "project {project} has no container and no volume, but the same compose files run as project {others} \
         (its backend on an image not built by benchform for another project): \
         with `project: {project}` apply would start a second, empty stack next to it and create sites that \
         exist there. Set `project:` in the manifest to the running one to adopt it (the name of `docker compose \
         -p`, listed by `docker compose ls`), or pass --allow-new-project to start a separate stack"
    )]
    AnotherProjectRuns { project: String, others: String },
    #[error("{detail}; {fix}")]
    BaseImageMissing { image: String, detail: String, fix: String },
    #[error(
        "site {site} cannot be planned ({detail}), and this plan deploys {image}, which may run new code under \
         it without a migrate; to go on: {fix}"
    )]
    BlockedUnderNewImage { site: String, detail: String, image: String, fix: String },
}

/// What makes the compose project or the build unusable, whatever the sites: the `migrator`
/// override, a PostgreSQL database, no service on the manifest's image, a missing base image
/// when a build is needed.
fn deployment_errors(desired: &Desired, observed: &Observed) -> Vec<PlanError> {
    let mut errors = Vec::new();
    if observed.services.contains_key("migrator") {
        errors.push(PlanError::MigratorService);
    }
    for (service, spec) in &observed.services {
        let Some(image) = spec.image.as_deref() else { continue };
        let name = image.rsplit('/').next().unwrap_or(image);
        if name.starts_with("postgres:") || name == "postgres" || name.starts_with("postgres@") {
            errors.push(PlanError::PostgresDatabase { service: service.clone(), image: image.to_string() });
        }
    }
    if !observed.services.is_empty() && observed.deploy_services.is_empty() {
        let services = observed
            .services
            .iter()
            .map(|(name, spec)| format!("{name}: {}", spec.image.as_deref().unwrap_or("(no image)")))
            .collect::<Vec<_>>()
            .join(", ");
        errors.push(PlanError::NoServiceRunsImage { repository: desired.repository.clone(), services });
    }
    let needs_build = !matches!(observed.registry, TagObservation::Present { .. }) && observed.engine_image.is_none();
    if needs_build {
        errors.extend(observed.missing_bases.iter().map(|m| PlanError::BaseImageMissing {
            image: m.image.clone(),
            detail: m.detail.clone(),
            fix: m.fix.clone(),
        }));
    }
    errors
}

struct Builder {
    steps: Vec<Step>,
}

impl Builder {
    fn add(
        &mut self,
        kind: StepKind,
        site: Option<&str>,
        app: Option<&str>,
        reason: String,
        depends_on: Vec<String>,
    ) -> String {
        let id = step_id(kind, site, app);
        self.steps.push(Step {
            id: id.clone(),
            kind,
            site: site.map(str::to_string),
            app: app.map(str::to_string),
            reason,
            destructive: kind.destructive(),
            depends_on,
            services: Vec::new(),
            service_changes: Vec::new(),
            preview: None,
            restore: None,
            canary: false,
        });
        id
    }
}

/// What one existing site needs.
struct SiteWork<'a> {
    desired: &'a DesiredSite,
    observed: Option<&'a ObservedSite>,
    install: Vec<String>,
    uninstall: Vec<String>,
    migrate_reason: Option<String>,
    /// A rollback by revert: the backup the site's data goes back to before it migrates, and the
    /// newer code its schema was migrated to (`erpnext v15.2.0`).
    restore: Option<(&'a HostBackup, String)>,
}

/// Plan the steps that take `observed` to `desired`. Every guard that fails is returned.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    options: &PlanOptions,
    drift: Vec<Drift>,
) -> Result<Plan, Vec<PlanError>> {
    let mut errors = deployment_errors(desired, observed);
    if !observed.other_projects.is_empty()
        && observed.containers.is_empty()
        && !observed.has_volumes
        && !options.allow_new_project
    {
        errors.push(PlanError::AnotherProjectRuns {
            project: desired.project.clone(),
            others: observed.other_projects.join(", "),
        });
    }
    let observed_sites: BTreeMap<&str, &ObservedSite> = observed.sites.iter().map(|s| (s.name.as_str(), s)).collect();
    for site in &options.release_maintenance {
        let why = match (desired.sites.iter().any(|d| d.name == *site), observed_sites.get(site.as_str())) {
            (false, _) => Some("not a site of the manifest"),
            (true, None) => Some("no such site on the bench"),
            (true, Some(o)) if o.damaged.is_some() => Some("the site cannot be read, so no step touches it"),
            (true, Some(o)) if !o.maintenance_mode && !o.scheduler_paused => Some("the site is in service"),
            // Held by benchform already (e.g. a release whose apply failed): nothing more to ask.
            _ => None,
        };
        if let Some(why) = why {
            errors.push(PlanError::NothingToRelease { site: site.clone(), why: why.to_string() });
        }
    }
    let mut blocked = Vec::new();
    // Sites exist but cannot be read (no backend runs on a deployment that has volumes): none
    // of them is new, and none can be planned until a deploy brings a backend back.
    // (Containers count too: volumes may be bind mounts or external, which carry no labels.)
    let unreadable = !observed.sites_observed && (observed.has_volumes || !observed.containers.is_empty());
    let image_changes = observed.image_changes(&desired.reference());
    let work: Vec<SiteWork<'_>> = desired
        .sites
        .iter()
        .filter(|d| {
            let o = observed_sites.get(d.name.as_str());
            let why = if unreadable {
                Some((
                    "its state cannot be read: no backend container runs, and the project was deployed before \
                     (volumes or containers exist), so the site may well exist"
                        .to_string(),
                    "bring the backend back on the image the sites run now (apply does when the image is \
                     unchanged; else `docker compose up -d` with the current CUSTOM_TAG), then run `benchform plan` \
                     again for this site's steps"
                        .to_string(),
                ))
            } else {
                o.and_then(|o| o.damaged.clone()).map(|problem| {
                    (
                        problem,
                        format!(
                            "look at sites/{} in the backend container and repair what is named here by hand; \
                             benchform will not create, migrate or drop a site it cannot read",
                            d.name
                        ),
                    )
                })
            };
            match why {
                Some((detail, fix)) => {
                    blocked.push(Blocked { site: d.name.clone(), detail, fix });
                    false
                }
                None => true,
            }
        })
        .map(|d| {
            let o = observed_sites.get(d.name.as_str()).copied();
            site_work(desired, observed, d, o, options, image_changes, &mut errors)
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut b = Builder { steps: Vec::new() };
    let reference = desired.reference();

    // 1. The image: built when the engine lacks it and no registry holds it, and verified when
    // built — or when only the engine has it and nothing vouches for it yet, as an interrupted
    // apply may have built it and never verified it (nothing unverified is pushed or deployed).
    // With a registry, the verified image is pushed; without one (`image.push: false`) the
    // engine's copy is the image, vouched for once something runs it.
    let local = observed.registry == TagObservation::Unused;
    let needed = if local {
        observed.engine_image.is_none() || !observed.containers.iter().any(|c| c.image == reference)
    } else {
        !matches!(observed.registry, TagObservation::Present { .. })
    };
    let mut image_ready: Vec<String> = Vec::new();
    if needed {
        let (verify_reason, verify_deps) = if observed.engine_image.is_none() {
            let why = if local {
                format!("the engine has no {} (image.push: false: no registry)", desired.tag)
            } else if desired.build_local {
                format!(
                    "{} is in neither the registry nor this machine's engine (image.build_on: local: built here, \
                     pushed, pulled by the deploy engine)",
                    desired.tag
                )
            } else {
                format!("{} is in neither the registry nor the engine", desired.tag)
            };
            let build = b.add(StepKind::Build, None, None, why, vec![]);
            ("check the built image holds every app at its locked commit, and no secret".to_string(), vec![build])
        } else if local {
            (format!("{} is in the engine but runs nowhere yet: check it before deploying", desired.tag), vec![])
        } else if desired.build_local {
            (
                format!("{} is in this machine's engine but not the registry: check it before pushing", desired.tag),
                vec![],
            )
        } else {
            (format!("{} is in the engine but not the registry: check it before pushing", desired.tag), vec![])
        };
        let verify = b.add(StepKind::Verify, None, None, verify_reason, verify_deps);
        image_ready.push(if local {
            verify
        } else {
            b.add(StepKind::Push, None, None, format!("the registry has no {}", desired.tag), vec![verify])
        });
    }

    // 2. Maintenance and backups for existing sites that will migrate; 3. uninstalls. With
    // `rollout.canary` and a release that changes the image, the canaries go first, each
    // migrated (and smoke-tested) in a one-off container of the new image while every other
    // site keeps serving; the others leave service only once every canary passed.
    let deploy_services = services_to_deploy(desired, observed);
    let canaries: Vec<&str> = if image_changes && !deploy_services.is_empty() {
        desired
            .canary
            .iter()
            .filter(|c| {
                work.iter().any(|w| {
                    w.desired.name == **c
                        && w.observed.is_some()
                        && w.migrate_reason.is_some()
                        && w.install.is_empty()
                        && w.restore.is_none()
                })
            })
            .map(String::as_str)
            .collect()
    } else {
        Vec::new()
    };
    let mut before_deploy: Vec<String> = image_ready.clone();
    let mut site_ready: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut canaries_passed: Vec<String> = Vec::new();
    let migrating = |w: &&SiteWork<'_>| w.observed.is_some() && w.migrate_reason.is_some();
    let ordered: Vec<&SiteWork<'_>> = canaries
        .iter()
        .filter_map(|c| work.iter().find(|w| w.desired.name == *c))
        .chain(work.iter().filter(migrating).filter(|w| !canaries.contains(&w.desired.name.as_str())))
        .collect();
    for w in ordered {
        let site = w.desired.name.as_str();
        let canary = canaries.contains(&site);
        // The others wait for every canary; each canary for the one before it (one at a time:
        // a canary that passed waits in maintenance, on the new schema, for the deploy).
        let mut leave_service_after = image_ready.clone();
        leave_service_after.extend(canaries_passed.iter().cloned());
        let on = b.add(
            StepKind::MaintenanceOn,
            Some(site),
            None,
            if w.observed.is_some_and(|o| options.held_by_others(o)) {
                format!(
                    "{site} will migrate; it is in maintenance mode set outside benchform, which it keeps as it is: \
                     wait until it is ready for migration"
                )
            } else {
                format!("{site} will migrate: stop requests and pause the scheduler first")
            },
            // Only once the image is pushed: builds take minutes, downtime should not; and,
            // with canaries, only once each of them passed.
            leave_service_after,
        );
        let backup = match &w.restore {
            Some(_) => b.add(
                StepKind::Backup,
                Some(site),
                None,
                format!("safety copy of {site} as it is now, before its data goes back to an older backup"),
                vec![on],
            ),
            None => {
                b.add(StepKind::Backup, Some(site), None, format!("restore point before {site} migrates"), vec![on])
            }
        };
        let mut last = backup;
        if let Some((point, from)) = &w.restore {
            last = b.add(
                StepKind::Restore,
                Some(site),
                None,
                format!(
                    "rollback: its schema was migrated to newer code ({from}), which Frappe cannot migrate back; \
                     its data goes back to the backup benchform took on {} before that migrate — everything \
                     written since then is lost",
                    point.taken_at
                ),
                vec![last],
            );
            if let Some(step) = b.steps.last_mut() {
                step.restore = Some(RestoreFrom { backup: point.name.clone(), taken_at: point.taken_at.clone() });
            }
        }
        for app in &w.uninstall {
            let in_image = desired.image_apps.contains(app);
            let why = if in_image {
                "the manifest no longer lists it on this site"
            } else {
                "the desired image no longer contains it"
            };
            last = b.add(StepKind::UninstallApp, Some(site), Some(app), format!("{app}: {why}"), vec![last]);
        }
        if canary && let Some(reason) = &w.migrate_reason {
            last = b.add(
                StepKind::Migrate,
                Some(site),
                None,
                format!(
                    "canary: {reason} — in a one-off container of {}, while the other sites keep serving on \
                     the image they run",
                    desired.tag
                ),
                vec![last],
            );
            if let Some(step) = b.steps.last_mut() {
                step.canary = true;
            }
            if !desired.smoke.is_empty() {
                let argv = desired.smoke.iter().map(|a| a.replace("{site}", site)).collect::<Vec<_>>().join(" ");
                last = b.add(
                    StepKind::Smoke,
                    Some(site),
                    None,
                    format!("canary: `{argv}` must succeed there before the new image goes out to the other sites"),
                    vec![last],
                );
                if let Some(step) = b.steps.last_mut() {
                    step.canary = true;
                }
            }
            canaries_passed.push(last.clone());
        }
        before_deploy.push(last.clone());
        site_ready.insert(site, vec![last]);
    }

    // 4. Deploy.
    let mut after_deploy: Vec<String> = image_ready.clone();
    if !deploy_services.is_empty() {
        let changes = touched_by_up(observed, &deploy_services, desired.swarm);
        // Group services by why: "backend, queue-short: run bf1-…; configurator: not running".
        let mut by_why: Vec<(String, Vec<String>)> = Vec::new();
        for c in &changes {
            match by_why.iter_mut().find(|(w, _)| *w == c.reason) {
                Some((_, services)) => services.push(c.service.clone()),
                None => by_why.push((c.reason.clone(), vec![c.service.clone()])),
            }
        }
        let mut reason = by_why
            .iter()
            .map(|(why, services)| format!("{}: {why}", services.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        let disruptive: Vec<&str> = changes.iter().filter(|c| c.disruptive).map(|c| c.service.as_str()).collect();
        if !disruptive.is_empty() {
            reason.push_str(&format!(
                " (disruptive: {} restart{}, every site loses its connections{})",
                disruptive.join(", "),
                if disruptive.len() == 1 { "s" } else { "" },
                if disruptive.iter().any(|s| s.contains("redis")) { " and cached data" } else { "" }
            ));
        }
        let id = b.add(StepKind::Deploy, None, None, reason, before_deploy.clone());
        if let Some(step) = b.steps.last_mut() {
            step.services = deploy_services.iter().map(|(s, _)| s.clone()).collect();
            step.service_changes = changes;
        }
        after_deploy = vec![id.clone()];
        if image_changes {
            let refresh = b.add(
                StepKind::RefreshAssets,
                None,
                None,
                "the image changed: recreate its containers and drop redis-cache's stale assets_json".to_string(),
                vec![id],
            );
            after_deploy = vec![refresh];
        }
    }

    // No site may end up on new code without its migrate: a blocked site stops a deploy of the
    // desired image unless its services provably run that image already.
    let deploys_ours = deploy_services.iter().any(|(s, _)| observed.deploy_services.contains(s));
    let proven_same = !image_changes
        && observed.containers.iter().any(|c| observed.deploy_services.contains(&c.service) && c.image == reference);
    if deploys_ours && !proven_same {
        for blocked_site in &blocked {
            errors.push(PlanError::BlockedUnderNewImage {
                site: blocked_site.site.clone(),
                detail: blocked_site.detail.clone(),
                image: desired.tag.clone(),
                fix: blocked_site.fix.clone(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
    }

    // 5. Per site: create, install, migrate, leave maintenance.
    for w in &work {
        let site = w.desired.name.as_str();
        let mut deps: Vec<String> = after_deploy.clone();
        deps.extend(site_ready.get(site).cloned().unwrap_or_default());
        if w.observed.is_none() {
            let id = b.add(
                StepKind::NewSite,
                Some(site),
                None,
                format!("{site} is in the manifest but not on the bench"),
                deps,
            );
            deps = vec![id];
        }
        for app in &w.install {
            let id =
                b.add(StepKind::InstallApp, Some(site), Some(app), format!("listed for {site}, not installed"), deps);
            deps = vec![id];
        }
        let others = w.observed.is_some_and(|o| options.held_by_others(o));
        let released = options.release_maintenance.iter().any(|s| s == site);
        // A scheduler someone else paused stays paused when benchform releases the site.
        let paused_by_others = w.observed.is_some_and(|o| {
            !released
                && (o.scheduler_paused_before || (o.scheduler_paused && !o.maintenance_held && !o.maintenance_mode))
        });
        let release_note = if released {
            " (released by --release-maintenance)"
        } else if paused_by_others {
            " (its scheduler stays paused, as it was found)"
        } else {
            ""
        };
        if canaries.contains(&site) {
            // Migrated (and smoke-tested) before the deploy; it serves again on the new image —
            // unless someone else set its maintenance, which it keeps.
            if others {
                continue;
            }
            b.add(
                StepKind::MaintenanceOff,
                Some(site),
                None,
                format!("{site} passed as canary and now runs the new image: serve it again{release_note}"),
                deps,
            );
        } else if let Some(reason) = &w.migrate_reason {
            let reason = if others {
                format!(
                    "{reason}; {site} stays in maintenance mode afterwards (set outside benchform: \
                     `--release-maintenance {site}` puts it back in service)"
                )
            } else {
                reason.clone()
            };
            let id = b.add(StepKind::Migrate, Some(site), None, reason, deps);
            if w.observed.is_some() && !others {
                b.add(
                    StepKind::MaintenanceOff,
                    Some(site),
                    None,
                    format!("{site} is migrated: serve it again{release_note}"),
                    vec![id],
                );
            }
        } else if let Some(o) = w.observed.filter(|o| o.maintenance_held || released) {
            // Only maintenance benchform holds, or that it was asked to release.
            let why = if released && !o.maintenance_held {
                format!("{site} is out of service, set outside benchform; released by --release-maintenance")
            } else if o.maintenance_mode || o.scheduler_paused {
                format!("{site} is up to date but an earlier apply left it out of service{release_note}")
            } else {
                format!(
                    "{site} is in service, but an interrupted apply left benchform's maintenance mark on it: clear it"
                )
            };
            b.add(StepKind::MaintenanceOff, Some(site), None, why, deps);
        }
    }

    Ok(Plan {
        project: desired.project.clone(),
        repository: desired.repository.clone(),
        tag: desired.tag.clone(),
        // Listed in the order apply runs them (one site at a time): each site's steps together.
        steps: crate::schedule::in_run_order(b.steps),
        blocked,
        drift,
    })
}

/// Services compose would create, recreate or start, with why: every service of the compose
/// files, not only those of the desired image (a stopped redis-cache is as real as an old
/// backend). A one-shot service that exited 0 (the configurator) is done, not stopped.
fn services_to_deploy(desired: &Desired, observed: &Observed) -> Vec<(String, String)> {
    let reference = desired.reference();
    let mut out = Vec::new();
    let services: Vec<&String> = if observed.services.is_empty() {
        observed.deploy_services.iter().collect()
    } else {
        observed
            .services
            .keys()
            .chain(observed.deploy_services.iter().filter(|s| !observed.services.contains_key(*s)))
            .collect()
    };
    for service in services {
        let ours = observed.deploy_services.contains(service);
        let restart = observed.services.get(service).and_then(|s| s.restart.clone());
        let containers: Vec<_> = observed.containers.iter().filter(|c| &c.service == service).collect();
        let why = match containers.first() {
            None => Some("not running".to_string()),
            Some(c) if ours && c.image != reference => {
                // The tag alone when it is our repository, else the whole reference.
                let shown = c.image.strip_prefix(&format!("{}:", desired.repository)).unwrap_or(&c.image);
                Some(format!("runs {shown}"))
            }
            Some(c)
                if c.config_hash.is_some()
                    && c.desired_config_hash.is_some()
                    && c.config_hash != c.desired_config_hash =>
            {
                // v1 and v2 hash a configuration differently: a container made by the other
                // flavour is recreated for that alone, and that is the reason to give.
                Some(match c.compose.as_deref().filter(|made_by| *made_by != observed.compose) {
                    Some(made_by) => format!(
                        "created by compose {made_by}, now driven by compose {} (their config hashes differ, so \
                         compose recreates it)",
                        observed.compose
                    ),
                    None if desired.swarm => {
                        match c.config_hash.as_deref().and_then(|h| h.strip_prefix(crate::swarm::CHANGED_BY_HAND)) {
                            Some(what) => {
                                format!("changed by hand ({what}); the deploy puts the files' configuration back")
                            }
                            None => "its stack configuration changed".to_string(),
                        }
                    }
                    None => "its compose configuration changed".to_string(),
                })
            }
            Some(c) if c.state != "running" && !c.finished_one_shot(restart.as_deref()) => Some(match c.exit_code {
                Some(code) if c.state == "exited" => format!("exited ({code})"),
                _ => c.state.clone(),
            }),
            Some(_) => None,
        };
        if let Some(why) = why {
            out.push((service.clone(), why));
        }
    }
    // A stack service the files no longer have: `docker stack deploy --prune` removes it, so the
    // deploy is needed for it alone. (compose's orphans are listed with the deploy they ride on.)
    if desired.swarm && !observed.services.is_empty() {
        for c in observed.containers.iter().filter(|c| !observed.services.contains_key(&c.service)) {
            if !out.iter().any(|(s, _)| *s == c.service) {
                out.push((
                    c.service.clone(),
                    "orphan: no longer in the compose files, so the stack deploy removes it".into(),
                ));
            }
        }
    }
    out
}

/// Everything `compose up --remove-orphans` with `services` touches: those services, each
/// with its reason; the one-shot services it starts again because one of them depends on them
/// (frappe_docker's configurator runs on every `up`); and the containers compose made that the
/// files no longer have (orphans), which it removes.
fn touched_by_up(observed: &Observed, services: &[(String, String)], swarm: bool) -> Vec<ServiceChange> {
    let spec = |s: &str| observed.services.get(s).cloned().unwrap_or_default();
    let mut out: Vec<ServiceChange> = services
        .iter()
        .map(|(service, why)| ServiceChange {
            service: service.clone(),
            reason: why.clone(),
            // Starting a stopped database interrupts nothing that runs; restarting one does.
            disruptive: spec(service).stateful(service)
                && observed.containers.iter().any(|c| c.service == *service && c.state == "running"),
        })
        .collect();
    // A stack update touches the services whose configuration changed, and nothing else.
    if swarm {
        return out;
    }
    // What `up` starts with them: dependencies, transitively.
    let mut queue: Vec<(String, String)> = services.iter().map(|(s, _)| (s.clone(), s.clone())).collect();
    while let Some((service, wanted_by)) = queue.pop() {
        for dep in spec(&service).depends_on {
            if out.iter().any(|c| c.service == dep) {
                continue;
            }
            let restart = spec(&dep).restart;
            let finished =
                observed.containers.iter().any(|c| c.service == dep && c.finished_one_shot(restart.as_deref()));
            if finished {
                out.push(ServiceChange {
                    service: dep.clone(),
                    reason: format!(
                        "runs again (a one-shot service `up` starts with {wanted_by}, which depends on it)"
                    ),
                    disruptive: false,
                });
            }
            queue.push((dep, wanted_by.clone()));
        }
    }
    if !observed.services.is_empty() {
        for c in
            observed.containers.iter().filter(|c| !observed.services.contains_key(&c.service) && c.compose.is_some())
        {
            if out.iter().any(|x| x.service == c.service) {
                continue;
            }
            out.push(ServiceChange {
                service: c.service.clone(),
                reason: "orphan: no longer in the compose files, so compose removes it".to_string(),
                disruptive: spec(&c.service).stateful(&c.service) && c.state == "running",
            });
        }
    }
    out
}

fn site_work<'a>(
    desired: &Desired,
    observed_all: &'a Observed,
    d: &'a DesiredSite,
    o: Option<&'a ObservedSite>,
    options: &PlanOptions,
    image_changes: bool,
    errors: &mut Vec<PlanError>,
) -> SiteWork<'a> {
    let Some(o) = o else {
        let install: Vec<String> = d.apps.iter().filter(|a| *a != "frappe").cloned().collect();
        return SiteWork {
            desired: d,
            observed: None,
            install,
            uninstall: vec![],
            migrate_reason: Some(format!("{} is new: bring its schema to the desired code", d.name)),
            restore: None,
        };
    };
    if let Some(r) = o.record.as_ref().filter(|r| r.project != desired.project) {
        errors.push(PlanError::ForeignSite {
            site: d.name.clone(),
            other: r.project.clone(),
            project: desired.project.clone(),
        });
    }
    let install: Vec<String> = d.apps.iter().filter(|a| !o.installed.contains(a)).cloned().collect();
    let mut uninstall = Vec::new();
    for app in o.installed.iter().filter(|a| !d.apps.contains(a)) {
        let in_image = desired.image_apps.contains(app);
        let ours = o.record.as_ref().is_some_and(|r| r.installed_by_benchform(app));
        match (in_image, ours, desired.allow_uninstall) {
            // Installed by hand and still runnable: drift, reported, never dropped.
            (true, false, _) => {}
            // Installed by hand and not in the image: the manifest never asked for it, so it
            // is never dropped; the image may not go out without it (ModuleNotFoundError).
            (false, false, _) => {
                errors.push(PlanError::UndeclaredAppMissingFromImage { site: d.name.clone(), app: app.clone() })
            }
            (_, true, true) => uninstall.push(app.clone()),
            (false, true, false) => {
                errors.push(PlanError::AppMissingFromImage { site: d.name.clone(), app: app.clone() })
            }
            (true, true, false) => {
                errors.push(PlanError::UninstallNotAllowed { site: d.name.clone(), app: app.clone() })
            }
        }
    }
    let mut restore = None;
    if let Some(r) = &o.record {
        let code = desired.site_code(d, &o.installed);
        let mut downgrades = Vec::new();
        for (app, to) in &code.refs {
            let Some(from) = r.refs.get(app) else { continue };
            let both_versions =
                benchform_manifest::version::is_version_like(from) && benchform_manifest::version::is_version_like(to);
            if both_versions && benchform_manifest::version::compare(to, from).is_lt() {
                downgrades.push(PlanError::Downgrade {
                    site: d.name.clone(),
                    app: app.clone(),
                    from: from.clone(),
                    to: to.clone(),
                });
            }
        }
        if !downgrades.is_empty() && !options.allow_downgrade {
            if options.allow_restore {
                // The newest backup taken while the site's schema matched the code it goes back
                // to, before it migrated away from it.
                let points = observed_all.backups.get(&d.name).map(Vec::as_slice).unwrap_or(&[]);
                let newer = downgrades
                    .iter()
                    .filter_map(|e| match e {
                        PlanError::Downgrade { app, from, .. } => Some(format!("{app} {from}")),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                restore = points
                    .iter()
                    .rev()
                    .filter(|b| b.taken_at.as_str() <= r.migrated_at.as_str())
                    .find(|b| b.record.as_ref().is_some_and(|br| !br.is_pending() && br.commits == code.commits))
                    .map(|b| (b, newer));
                if restore.is_none() {
                    let code_text =
                        code.refs.iter().map(|(app, to)| format!("{app} {to}")).collect::<Vec<_>>().join(", ");
                    let seen = match points.len() {
                        0 => String::new(),
                        n => format!(" ({n} backup(s) of it, none of that code)"),
                    };
                    errors.push(PlanError::NoRestorePoint {
                        site: d.name.clone(),
                        code: code_text,
                        backups_dir: format!("backups.dir/{}/{}", desired.project, d.name),
                        seen,
                    });
                }
            } else {
                errors.extend(downgrades);
            }
        }
    }
    let migrate_reason = migrate_reason(desired, d, o, image_changes, &install, &uninstall);
    SiteWork { desired: d, observed: Some(o), install, uninstall, migrate_reason, restore }
}

fn migrate_reason(
    desired: &Desired,
    d: &DesiredSite,
    o: &ObservedSite,
    image_changes: bool,
    install: &[String],
    uninstall: &[String],
) -> Option<String> {
    let mut why = desired.code_reasons(d, o, image_changes);
    if o.record.is_none() {
        return why.pop();
    }
    if !install.is_empty() {
        why.push(format!("gains {}", install.join(", ")));
    }
    if !uninstall.is_empty() {
        why.push(format!("loses {}", uninstall.join(", ")));
    }
    if why.is_empty() && o.record.as_ref().is_some_and(|r| r.is_pending()) {
        why.push("an app was installed or removed since its last migrate".to_string());
    }
    (!why.is_empty()).then(|| why.join("; "))
}

//! Desired versus observed, side by side: what `benchform status` shows. Pure.
//!
//! The report is its own, versioned, serialisable type (`format_version`), so the CLI can print
//! it as JSON without the core's internal types leaking into a wire format.

use std::collections::BTreeMap;

use benchform_manifest::lock::{self, Mismatch};
use benchform_manifest::{LockFile, Manifest};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::record::{SiteRecord, fingerprint};

/// The JSON report's format version.
pub const FORMAT_VERSION: u32 = 1;

/// What the manifest and lock ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub project: String,
    pub repository: String,
    pub tag: String,
    /// frappe and every manifest app: what the desired image contains.
    pub image_apps: Vec<String>,
    /// The locked commit of each app of the image (frappe included).
    pub image_commits: BTreeMap<String, String>,
    /// The manifest ref of each app of the image (versions, for downgrade checks).
    pub image_refs: BTreeMap<String, String>,
    pub sites: Vec<DesiredSite>,
    pub allow_uninstall: bool,
    /// `rollout.canary`: sites migrated first, in a one-off container of the new image.
    pub canary: Vec<String>,
    /// `rollout.smoke`: the argv run there after each canary migrates (`{site}` replaced).
    pub smoke: Vec<String>,
    /// `image.build_on: local`: built on this machine's engine, which pushes it; the deploy
    /// engine pulls it.
    pub build_local: bool,
    /// `deploy.target: swarm`: a stack update instead of `compose up` (swarm reruns a one-shot
    /// service only when its own configuration changes).
    pub swarm: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredSite {
    pub name: String,
    /// frappe first, then the site's apps in manifest order.
    pub apps: Vec<String>,
    pub commits: BTreeMap<String, String>,
    /// The manifest ref of each of the site's apps (versions, for downgrade checks).
    pub refs: BTreeMap<String, String>,
    pub fingerprint: String,
}

impl Desired {
    pub fn reference(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The code a site's schema must match: frappe and the site's manifest apps, and every other
    /// app installed on it that the image holds (installed by hand, or by benchform before the
    /// manifest dropped it): what is installed runs, declared or not.
    pub fn site_code(&self, d: &DesiredSite, installed: &[String]) -> SiteCode {
        let mut code = SiteCode { commits: d.commits.clone(), refs: d.refs.clone(), undeclared: Vec::new() };
        for app in installed.iter().filter(|a| !d.apps.contains(a)) {
            let Some(commit) = self.image_commits.get(app) else { continue };
            code.commits.insert(app.clone(), commit.clone());
            if let Some(r) = self.image_refs.get(app) {
                code.refs.insert(app.clone(), r.clone());
            }
            code.undeclared.push(app.clone());
        }
        code
    }

    /// Why site `d` must migrate to run the desired code, as observed in `o`: an app installed on
    /// it (declared or not) whose commit differs from the one it was last migrated to, or one
    /// benchform never recorded there that gets new code with this plan's image change
    /// (`image_changes`: the services move to another image). Empty when its schema matches.
    /// Gaining or losing apps, and pending records, are the planner's to add.
    pub fn code_reasons(&self, d: &DesiredSite, o: &ObservedSite, image_changes: bool) -> Vec<String> {
        let Some(record) = &o.record else {
            return vec![format!(
                "{} was never migrated by benchform: it migrates once, so that the code its schema matches is recorded",
                d.name
            )];
        };
        let code = self.site_code(d, &o.installed);
        // The site will run other code than it was last migrated on (see below).
        let image_moved = image_changes || record.image != self.reference();
        let mut why = Vec::new();
        for (app, commit) in &code.commits {
            let undeclared = if code.undeclared.contains(app) { " (installed outside the manifest)" } else { "" };
            match record.commits.get(app) {
                Some(old) if old != commit => {
                    let refs = match (record.refs.get(app), code.refs.get(app)) {
                        (Some(a), Some(b)) if a != b => format!("{a} → {b}"),
                        _ => format!("{} → {}", short(old), short(commit)),
                    };
                    why.push(format!("{app} {refs}{undeclared}"));
                }
                Some(_) => {}
                // Installed since benchform last migrated the site (the planner's own installs
                // are "gains"): its code was the image's of that time. The site migrates once the
                // image it runs is not the one benchform migrated it on — decided from the record,
                // so a run that deployed and stopped before this migrate leaves it planned.
                None if image_moved && o.installed.contains(app) => why.push(format!(
                    "{app}{undeclared} was installed after benchform last migrated {} and gets new code with the new \
                     image",
                    d.name
                )),
                None => {}
            }
        }
        why
    }
}

/// The code a site runs, app by app: [`Desired::site_code`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCode {
    pub commits: BTreeMap<String, String>,
    pub refs: BTreeMap<String, String>,
    /// Apps installed on the site that the manifest does not list there.
    pub undeclared: Vec<String>,
}

impl SiteCode {
    /// What benchform records after migrating the site to this code.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.commits)
    }
}

/// A commit or image id, shortened for people.
pub(crate) fn short(s: &str) -> &str {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    s.get(..12).unwrap_or(s)
}

/// Build the desired state. Sources missing from the lock are left out of the commits (the lock
/// check reports them).
pub fn desired(manifest: &Manifest, lock: &LockFile, tag: &str) -> Desired {
    let commit = |name: &str| lock.entry(name).map(|e| e.commit.clone());
    let git_ref = |name: &str| manifest.sources().iter().find(|s| s.name == name).map(|s| s.git_ref.to_string());
    let sites = manifest
        .sites
        .iter()
        .map(|s| {
            let mut apps = vec!["frappe".to_string()];
            // Manifest app order, so install order and display agree.
            apps.extend(manifest.apps.iter().filter(|a| s.apps.contains(&a.name)).map(|a| a.name.clone()));
            let commits: BTreeMap<String, String> = apps.iter().filter_map(|a| Some((a.clone(), commit(a)?))).collect();
            let refs: BTreeMap<String, String> = apps.iter().filter_map(|a| Some((a.clone(), git_ref(a)?))).collect();
            DesiredSite { name: s.name.clone(), fingerprint: fingerprint(&commits), apps, commits, refs }
        })
        .collect();
    let image_apps: Vec<String> = manifest.sources().iter().map(|s| s.name.to_string()).collect();
    Desired {
        project: manifest.project.clone(),
        repository: manifest.image.repository.clone(),
        tag: tag.to_string(),
        image_commits: image_apps.iter().filter_map(|a| Some((a.clone(), commit(a)?))).collect(),
        image_refs: image_apps.iter().filter_map(|a| Some((a.clone(), git_ref(a)?))).collect(),
        image_apps,
        sites,
        allow_uninstall: manifest.policy.allow_uninstall,
        canary: manifest.rollout.canary.clone(),
        smoke: manifest.rollout.smoke.clone(),
        build_local: !manifest.image.build_on.is_engine(),
        swarm: !manifest.deploy.target.is_compose(),
    }
}

/// What was observed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// `v1` or `v2`.
    pub compose: String,
    /// Its version (`2.40.3`), when compose says.
    pub compose_version: Option<String>,
    pub registry: TagObservation,
    /// Local image id of the desired reference, if the engine has it.
    pub engine_image: Option<String>,
    pub containers: Vec<ObservedContainer>,
    /// Services compose would run with the desired image (from the rendered configuration).
    pub deploy_services: Vec<String>,
    /// Every service of the rendered configuration: a long-running service that is missing or
    /// stopped needs a deploy, a one-shot one that exited 0 does not.
    pub services: BTreeMap<String, ServiceSpec>,
    /// The project has volumes on the engine: it was deployed before, so with no backend running
    /// its sites exist but cannot be read (never "new").
    pub has_volumes: bool,
    pub sites: Vec<ObservedSite>,
    /// Where each site's installed apps were read from.
    pub apps_source: AppsSource,
    /// False when no backend container was running to read sites from.
    pub sites_observed: bool,
    /// Images the build would start from that neither the engine nor their registry has (asked
    /// only when the desired image is nowhere yet).
    pub missing_bases: Vec<MissingBase>,
    /// Other compose projects running the same compose files (asked only when this project has
    /// neither containers nor volumes: a wrong `project` would start a second, empty stack).
    pub other_projects: Vec<String>,
    /// The backups benchform copied off the volume, per site, oldest first (from the host's
    /// backups folder): the restore points a rollback by revert can use.
    pub backups: BTreeMap<String, Vec<HostBackup>>,
    /// Where `bench` runs (the backend container; on a swarm, benchform's ops task), once it runs.
    pub bench_container: Option<String>,
    /// With `deploy.target: swarm`: the swarm's nodes and where each service's tasks run.
    pub swarm: Option<ObservedSwarm>,
}

/// A swarm as its manager reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedSwarm {
    pub nodes: Vec<SwarmNode>,
    /// Service → the host names of the nodes its running tasks are on (a name once per task).
    pub placement: BTreeMap<String, Vec<String>>,
}

/// One node of a swarm.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
pub struct SwarmNode {
    pub hostname: String,
    /// `ready`, `down`, `unknown`, `disconnected`.
    pub state: String,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub manager: bool,
}

/// A backup benchform took of a site and keeps on the host (`backups.dir`), with the code the
/// site's schema matched when it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostBackup {
    /// Its folder under the site's backups folder (a UTC time stamp, `20261204T165814Z`).
    pub name: String,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// benchform's record of the site when it was taken: the commits its schema matched. `None`
    /// for a site benchform had not migrated yet, or a backup from before benchform wrote this.
    pub record: Option<crate::record::SiteRecord>,
}

/// The file benchform writes into each backup folder it keeps on the host: what the backup is of.
pub const BACKUP_META_FILE: &str = "benchform-backup.json";

/// The content of [`BACKUP_META_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupMeta {
    pub format_version: u32,
    pub site: String,
    /// When it was taken (RFC 3339).
    pub taken_at: String,
    /// benchform's record of the site at that time (`None`: benchform had not migrated it yet).
    pub record: Option<SiteRecord>,
}

/// An image the build starts from that cannot be found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MissingBase {
    pub image: String,
    /// Where the Containerfile names it, and what was asked.
    pub detail: String,
    /// The way out.
    pub fix: String,
}

impl Observed {
    /// A deploy of `reference` moves running services of the deployment's image to it: the code
    /// every site runs changes.
    pub fn image_changes(&self, reference: &str) -> bool {
        self.containers.iter().any(|c| self.deploy_services.contains(&c.service) && c.image != reference)
    }
}

/// A service of the rendered compose configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceSpec {
    /// `restart:` as written, if any.
    pub restart: Option<String>,
    /// The image it runs, if it names one.
    pub image: Option<String>,
    /// The services `up` starts with it (`depends_on`).
    pub depends_on: Vec<String>,
}

impl ServiceSpec {
    /// It keeps state or a cache that every site uses (a database or redis): recreating it
    /// interrupts every site, and a cache comes back empty.
    pub fn stateful(&self, name: &str) -> bool {
        const STATEFUL: [&str; 6] = ["mariadb", "mysql", "postgres", "redis", "valkey", "keydb"];
        let repository = self.image.as_deref().map(|i| {
            let last = i.rsplit('/').next().unwrap_or(i);
            last.split([':', '@']).next().unwrap_or(last).to_string()
        });
        match repository {
            Some(r) => STATEFUL.iter().any(|s| r.starts_with(s)),
            None => name == "db" || name.starts_with("redis"),
        }
    }
}

/// Where sites' installed apps were read from; both give the set `frappe.get_installed_apps()`
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppsSource {
    /// Each site's database, through the image's `mariadb` client: one exec for all sites.
    #[default]
    Database,
    /// `bench --site S execute frappe.get_installed_apps`: one exec per site (`--refresh full`,
    /// or an image without a database client).
    Execute,
}

impl AppsSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AppsSource::Database => "database",
            AppsSource::Execute => "execute",
        }
    }
}

/// A registry's answer about the desired tag.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, JsonSchema)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum TagObservation {
    Present {
        digest: String,
    },
    #[default]
    Absent,
    /// `image.push: false`: no registry is asked; the engine's copy is the image.
    Unused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedContainer {
    pub service: String,
    pub name: String,
    pub state: String,
    pub image: String,
    pub image_id: String,
    /// The image compose would run for this service with the desired tag (None: the service is
    /// not one of the deployment's image, e.g. redis).
    pub desired_image: Option<String>,
    /// The `org.benchform.project` label of the container's image.
    pub built_for: Option<String>,
    /// The container's `com.docker.compose.config-hash` label.
    pub config_hash: Option<String>,
    /// What `config --hash` says the service's hash would be with the desired image (same
    /// compose flavour only).
    pub desired_config_hash: Option<String>,
    /// The exit code of a container that exited.
    pub exit_code: Option<i64>,
    /// The flavour of compose that created it (`v1`, `v2`), from its `com.docker.compose.version`
    /// label; `None` when it has none.
    pub compose: Option<String>,
}

impl ObservedContainer {
    /// A one-shot service (restart `no` or `on-failure`, like frappe_docker's configurator)
    /// that finished well: not "not running".
    pub fn finished_one_shot(&self, restart: Option<&str>) -> bool {
        matches!(restart, None | Some("no") | Some("on-failure")) && self.state == "exited" && self.exit_code == Some(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedSite {
    pub name: String,
    pub installed: Vec<String>,
    pub record: Option<SiteRecord>,
    pub maintenance_mode: bool,
    pub scheduler_paused: bool,
    /// benchform took the site out of service and has not put it back (see
    /// `record::MAINTENANCE_KEY`).
    pub maintenance_held: bool,
    /// benchform's mark says the scheduler was paused (by someone else) before benchform took
    /// the site out of service: it stays paused when benchform puts the site back.
    pub scheduler_paused_before: bool,
    /// What is wrong with the site, as observed (its `site_config.json` missing or not JSON, its
    /// database unreadable). benchform plans nothing for a damaged site.
    pub damaged: Option<String>,
}

/// `benchform status --format json`; `schema/status.schema.json` is generated from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(title = "benchform status")]
pub struct Report {
    /// Version of this format; only `1` exists.
    pub format_version: u32,
    pub project: String,
    /// `v1` or `v2`: the compose flavour benchform drives.
    pub compose: String,
    /// Its version (`2.40.3`), when compose says.
    pub compose_version: Option<String>,
    pub lock: LockReport,
    pub image: ImageReport,
    pub services: Vec<ServiceReport>,
    /// False when no backend container was running: `sites` then says nothing about the bench.
    pub sites_observed: bool,
    /// `database` (each site's database through the image's `mariadb` client, one exec) or
    /// `execute` (`bench execute frappe.get_installed_apps` per site: `--refresh full`, or no
    /// client in the image). Both are the installed set Frappe itself uses.
    pub apps_source: String,
    pub sites: Vec<SiteReport>,
    pub drift: Vec<Drift>,
    /// With `deploy.target: swarm`: the swarm's nodes (each service's `nodes` says where its
    /// tasks run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swarm: Option<SwarmReport>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SwarmReport {
    pub nodes: Vec<SwarmNode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LockReport {
    pub fresh: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ImageReport {
    pub repository: String,
    pub tag: String,
    pub registry: TagObservation,
    /// Local image id, or null.
    pub engine: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ServiceReport {
    pub service: String,
    pub container: String,
    pub state: String,
    pub image: String,
    pub desired_image: Option<String>,
    /// True when the container runs the desired image (or the service has no desired image).
    pub up_to_date: bool,
    /// On a swarm: the host names of the nodes its running tasks are on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct SiteReport {
    pub name: String,
    pub exists: bool,
    pub installed: Vec<String>,
    pub desired_apps: Vec<String>,
    pub missing_apps: Vec<String>,
    pub extra_apps: Vec<String>,
    pub recorded_fingerprint: Option<String>,
    /// The fingerprint benchform would record after migrating the site now: of frappe and every
    /// app installed on it (declared or not) at the desired commits.
    pub desired_fingerprint: String,
    /// The site's schema was last migrated by benchform to the code it will run: no migrate is
    /// needed for code (an app installed by hand counts).
    pub fingerprint_matches: bool,
    pub maintenance_mode: bool,
    pub scheduler_paused: bool,
    /// Why the site could not be read (then `installed` and `missing_apps` say nothing), or null.
    pub problem: Option<String>,
}

/// A change made outside benchform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    pub kind: DriftKind,
    pub site: Option<String>,
    pub app: Option<String>,
    pub service: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// An app is installed on a site although the manifest does not list it there.
    AppInstalledOutside,
    /// A site exists that the manifest does not list.
    SiteNotInManifest,
    /// A service runs an image benchform did not build for this project.
    ForeignImage,
    /// A site's record was written for another project.
    ForeignSiteRecord,
    /// A site could not be read (no site_config.json, one that is not JSON, its database).
    UnreadableSite,
    /// A container carries the project's compose labels but is no service of its compose files.
    UnknownContainer,
    /// A site is in maintenance mode (or its scheduler paused) by someone else's hand: benchform
    /// leaves it so unless told (`--release-maintenance`).
    MaintenanceOutside,
}

impl Drift {
    fn new(kind: DriftKind, detail: String) -> Drift {
        Drift { kind, site: None, app: None, service: None, detail }
    }

    fn site(mut self, site: &str) -> Drift {
        self.site = Some(site.to_string());
        self
    }
}

/// Compare. Everything is reported; nothing here decides what to do about it.
pub fn compare(manifest: &Manifest, lock_file: Option<&LockFile>, desired: &Desired, observed: &Observed) -> Report {
    let lock = match lock_file {
        None => {
            LockReport { fresh: false, problems: vec!["benchform.lock is missing: run `benchform lock`".to_string()] }
        }
        Some(l) => {
            let problems: Vec<String> = lock::check_agreement(manifest, l).iter().map(Mismatch::to_string).collect();
            LockReport { fresh: problems.is_empty(), problems }
        }
    };
    let mut drift = Vec::new();
    let services = observed
        .containers
        .iter()
        .map(|c| {
            if !observed.services.is_empty() && !observed.services.contains_key(&c.service) {
                drift.push(Drift {
                    kind: DriftKind::UnknownContainer,
                    site: None,
                    app: None,
                    service: Some(c.service.clone()),
                    detail: format!(
                        "container {} carries project {}'s compose labels (service `{}`) but the compose files have \
                         no such service: benchform leaves it alone; the next deploy (`compose up \
                         --remove-orphans`) removes it if compose made it (one labelled by hand stays yours)",
                        c.name, desired.project, c.service
                    ),
                });
            }
            // Once per service, however many containers (replicas) it runs.
            let reported = drift
                .iter()
                .any(|d: &Drift| d.kind == DriftKind::ForeignImage && d.service.as_deref() == Some(c.service.as_str()));
            if !reported && c.desired_image.is_some() && c.built_for.as_deref() != Some(desired.project.as_str()) {
                drift.push(Drift {
                    kind: DriftKind::ForeignImage,
                    site: None,
                    app: None,
                    service: Some(c.service.clone()),
                    detail: format!(
                        "service {} runs {}, an image benchform did not build for project {}",
                        c.service, c.image, desired.project
                    ),
                });
            }
            ServiceReport {
                service: c.service.clone(),
                container: c.name.clone(),
                state: c.state.clone(),
                image: c.image.clone(),
                desired_image: c.desired_image.clone(),
                up_to_date: c.desired_image.as_ref().is_none_or(|d| *d == c.image),
                nodes: observed.swarm.as_ref().and_then(|s| s.placement.get(&c.service).cloned()).unwrap_or_default(),
            }
        })
        .collect();

    let observed_sites: BTreeMap<&str, &ObservedSite> = observed.sites.iter().map(|s| (s.name.as_str(), s)).collect();
    let image_changes = observed.image_changes(&desired.reference());
    let sites = desired
        .sites
        .iter()
        .map(|d| {
            let o = observed_sites.get(d.name.as_str());
            let installed = o.map(|s| s.installed.clone()).unwrap_or_default();
            // A site that could not be read says nothing about its apps.
            let readable = o.is_some_and(|s| s.damaged.is_none());
            let missing_apps: Vec<String> =
                d.apps.iter().filter(|a| readable && !installed.contains(a)).cloned().collect();
            let extra_apps: Vec<String> = installed.iter().filter(|a| !d.apps.contains(a)).cloned().collect();
            for app in &extra_apps {
                drift.push(Drift {
                    app: Some(app.clone()),
                    ..Drift::new(
                        DriftKind::AppInstalledOutside,
                        format!("{app} is installed on {} but the manifest does not list it there", d.name),
                    )
                    .site(&d.name)
                });
            }
            let record = o.and_then(|s| s.record.as_ref());
            if let Some(r) = record.filter(|r| r.project != desired.project) {
                drift.push(Drift {
                    kind: DriftKind::ForeignSiteRecord,
                    site: Some(d.name.clone()),
                    app: None,
                    service: None,
                    detail: format!(
                        "site {} was last migrated by benchform for project {}, not {}",
                        d.name, r.project, desired.project
                    ),
                });
            }
            if let Some(s) = o.filter(|s| (s.maintenance_mode || s.scheduler_paused) && !s.maintenance_held) {
                let what = match (s.maintenance_mode, s.scheduler_paused) {
                    (true, true) => "in maintenance mode with its scheduler paused",
                    (true, false) => "in maintenance mode",
                    _ => "running with its scheduler paused",
                };
                drift.push(
                    Drift::new(
                        DriftKind::MaintenanceOutside,
                        format!(
                            "{} is {what}, set outside benchform: apply leaves it so (a migrate still runs, and the \
                             site stays out of service); `benchform plan --release-maintenance {}` puts it back in \
                             service",
                            d.name, d.name
                        ),
                    )
                    .site(&d.name),
                );
            }
            if let Some(problem) = o.and_then(|s| s.damaged.as_ref()) {
                drift.push(Drift::new(DriftKind::UnreadableSite, format!("{}: {problem}", d.name)).site(&d.name));
            }
            SiteReport {
                name: d.name.clone(),
                exists: o.is_some(),
                installed: installed.clone(),
                desired_apps: d.apps.clone(),
                missing_apps,
                extra_apps,
                recorded_fingerprint: record.map(|r| r.fingerprint.clone()),
                desired_fingerprint: desired.site_code(d, &installed).fingerprint(),
                fingerprint_matches: o.is_some_and(|s| {
                    readable
                        && s.record.as_ref().is_some_and(|r| !r.is_pending())
                        && desired.code_reasons(d, s, image_changes).is_empty()
                }),
                maintenance_mode: o.is_some_and(|s| s.maintenance_mode),
                scheduler_paused: o.is_some_and(|s| s.scheduler_paused),
                problem: o.and_then(|s| s.damaged.clone()),
            }
        })
        .collect();
    for s in &observed.sites {
        if !desired.sites.iter().any(|d| d.name == s.name) {
            drift.push(
                Drift::new(
                    DriftKind::SiteNotInManifest,
                    match &s.damaged {
                        None => format!(
                            "site {} exists but the manifest does not list it (benchform leaves it alone)",
                            s.name
                        ),
                        Some(problem) => format!(
                            "site {} exists but the manifest does not list it (benchform leaves it alone); {problem}",
                            s.name
                        ),
                    },
                )
                .site(&s.name),
            );
        }
    }
    Report {
        format_version: FORMAT_VERSION,
        project: desired.project.clone(),
        compose: observed.compose.clone(),
        compose_version: observed.compose_version.clone(),
        lock,
        image: ImageReport {
            repository: desired.repository.clone(),
            tag: desired.tag.clone(),
            registry: observed.registry.clone(),
            engine: observed.engine_image.clone(),
        },
        services,
        sites_observed: observed.sites_observed,
        apps_source: observed.apps_source.as_str().to_string(),
        sites,
        drift,
        swarm: observed.swarm.as_ref().map(|s| SwarmReport { nodes: s.nodes.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use benchform_manifest::{LockEntry, RefKind};

    use super::*;

    fn manifest() -> Manifest {
        let text = "version: 1\nproject: p\nfrappe: {repo: https://h/frappe, ref: v15}\napps:\n  - {name: erpnext, repo: https://h/erpnext, ref: v15}\n  - {name: hrms, repo: https://h/hrms, ref: v1}\nimage: {repository: r.example.com/p, containerfile: C, context: .}\ndeploy: {compose: {files: [c.yaml]}}\nsites:\n  - {name: a.localhost, apps: [erpnext, hrms]}\n  - {name: b.localhost, apps: [erpnext]}\n";
        benchform_manifest::validate("m.yaml", text.as_bytes()).manifest.unwrap()
    }

    fn lock() -> LockFile {
        let e = |name: &str, c: char| LockEntry {
            name: name.into(),
            repo: format!("https://h/{name}"),
            git_ref: if name == "hrms" { "v1".into() } else { "v15".into() },
            kind: RefKind::Tag,
            commit: c.to_string().repeat(40),
            object: None,
        };
        LockFile { version: 1, entries: vec![e("erpnext", 'b'), e("frappe", 'a'), e("hrms", 'c')] }
    }

    fn site(name: &str, apps: &[&str], record: Option<SiteRecord>) -> ObservedSite {
        ObservedSite {
            name: name.into(),
            installed: apps.iter().map(|a| a.to_string()).collect(),
            record,
            maintenance_mode: false,
            scheduler_paused: false,
            maintenance_held: false,
            scheduler_paused_before: false,
            damaged: None,
        }
    }

    #[test]
    fn a_converged_deployment_has_no_drift_and_matching_fingerprints() {
        let (m, l) = (manifest(), lock());
        let d = desired(&m, &l, "bf1-x");
        assert_eq!(d.sites[0].apps, ["frappe", "erpnext", "hrms"]);
        let rec = |s: &DesiredSite| {
            Some(SiteRecord::new("p", s.commits.clone(), BTreeMap::new(), "r.example.com/p:bf1-x", None, "t"))
        };
        let observed = Observed {
            sites: vec![
                site("a.localhost", &["frappe", "erpnext", "hrms"], rec(&d.sites[0])),
                site("b.localhost", &["frappe", "erpnext"], rec(&d.sites[1])),
            ],
            sites_observed: true,
            ..Observed::default()
        };
        let r = compare(&m, Some(&l), &d, &observed);
        assert!(r.lock.fresh);
        assert!(r.drift.is_empty(), "{:?}", r.drift);
        assert!(r.sites.iter().all(|s| s.fingerprint_matches && s.exists && s.missing_apps.is_empty()));
    }

    #[test]
    fn every_kind_of_drift_is_reported() {
        let (m, l) = (manifest(), lock());
        let d = desired(&m, &l, "bf1-x");
        let foreign = SiteRecord::new("other", BTreeMap::new(), BTreeMap::new(), "x", None, "t");
        let mut broken = site("b.localhost", &["frappe", "erpnext"], None);
        broken.damaged = Some("sites/b.localhost/site_config.json is not valid JSON".to_string());
        let backend = ObservedContainer {
            service: "backend".into(),
            name: "p_backend_1".into(),
            state: "running".into(),
            image: "someone/else:latest".into(),
            image_id: "sha256:1".into(),
            desired_image: Some("r.example.com/p:bf1-x".into()),
            built_for: None,
            config_hash: None,
            desired_config_hash: None,
            exit_code: None,
            compose: None,
        };
        // Two replicas of the service: its drift is reported once.
        let replica = ObservedContainer { name: "p_backend_2".into(), ..backend.clone() };
        let mut held_by_hand = site("c.localhost", &["frappe"], None);
        held_by_hand.maintenance_mode = true;
        let observed = Observed {
            containers: vec![backend, replica],
            sites: vec![
                site("a.localhost", &["frappe", "erpnext", "hrms", "payments"], Some(foreign)),
                broken,
                held_by_hand,
            ],
            sites_observed: true,
            ..Observed::default()
        };
        let r = compare(&m, Some(&l), &d, &observed);
        let kinds: Vec<DriftKind> = r.drift.iter().map(|x| x.kind).collect();
        assert_eq!(
            kinds,
            [
                DriftKind::ForeignImage,
                DriftKind::AppInstalledOutside,
                DriftKind::ForeignSiteRecord,
                DriftKind::UnreadableSite,
                DriftKind::SiteNotInManifest
            ]
        );
        assert!(!r.services[0].up_to_date);
        assert_eq!(r.sites[0].extra_apps, ["payments"]);
        // An unreadable site's apps are unknown, not missing.
        assert_eq!(r.sites[1].problem.as_deref(), Some("sites/b.localhost/site_config.json is not valid JSON"));
        assert!(r.sites[1].missing_apps.is_empty());
    }
}

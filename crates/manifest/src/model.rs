//! The manifest's typed form. These types are the single source of the JSON schema
//! (`schema/benchform.schema.json`): field docs become schema descriptions.
//!
//! Values of these types come only out of [`crate::validate`], so they are known to be valid.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// benchform.yaml: the desired state of one Frappe/ERPNext deployment on Docker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "benchform manifest", extend("$id" = "https://benchform.dev/schema/benchform.schema.json"))]
pub struct Manifest {
    /// Manifest format version. Only `1` exists.
    #[schemars(extend("const" = 1))]
    pub version: u32,
    /// Compose project (stack) name; also names backups and the lock's owner.
    /// Lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 63 characters.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,62}$"))]
    pub project: String,
    /// The Frappe framework to build on.
    pub frappe: Frappe,
    /// Apps baked into the image, in install and build order (list prerequisites first).
    /// frappe itself is implicit and must not be listed.
    pub apps: Vec<App>,
    /// How the image is built and where it is pushed.
    pub image: Image,
    /// How the image is deployed.
    pub deploy: Deploy,
    /// Sites and the apps each one has installed (frappe is implicit).
    pub sites: Vec<Site>,
    /// Where backups taken before destructive steps are kept.
    #[serde(default)]
    pub backups: Backups,
    /// Safety rules.
    #[serde(default)]
    pub policy: Policy,
    /// How a release reaches the sites: a canary wave first, then the rest.
    #[serde(default, skip_serializing_if = "Rollout::is_default")]
    pub rollout: Rollout,
}

/// How a release that changes the image reaches the sites.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// Sites migrated first, one at a time, in a one-off container of the new image on the same
    /// sites volume, while every other site keeps serving on the old image (the canaries stay in
    /// maintenance). Only if each passes (its migrate, then `smoke`) does the new image go out to
    /// the rest. Names from `sites`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canary: Vec<String>,
    /// A command run in the canary's container after each canary site migrated, as an argv list
    /// (no shell); `{site}` in an argument is replaced by the site's name. Exit 0 passes; anything
    /// else fails the canary, which is then restored per `policy.on_migrate_failure`. E.g.
    /// `[bench, --site, "{site}", execute, frappe.ping]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub smoke: Vec<String>,
}

impl Rollout {
    pub fn is_default(&self) -> bool {
        self == &Rollout::default()
    }
}

/// The Frappe framework source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Frappe {
    /// Git URL of the framework (https, http or file). Passed to the build as `FRAPPE_PATH`, a
    /// build argument visible in image history, so it can carry no credentials.
    pub repo: String,
    /// Tag or branch name (bench clones with `--branch`; a commit SHA does not work).
    /// Quote versions that look like numbers: `"15.10"`.
    #[serde(rename = "ref")]
    pub git_ref: String,
}

/// One app baked into the image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's Python module name, e.g. `erpnext` or `india_compliance`.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Git URL (https, http or file), without credentials.
    pub repo: String,
    /// Tag or branch name (bench clones with `--branch`; a commit SHA does not work).
    /// Quote versions that look like numbers: `"15.10"`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Name of the environment variable that holds an access token for a private repository.
    /// Read at run time, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z_][A-Z0-9_]*$"))]
    pub token_env: Option<String>,
    /// User name sent with the token (HTTP Basic auth). GitHub and Gitea accept any name; GitLab
    /// wants `oauth2`. Default: `x-access-token`. Letters, digits, `.`, `_`, `-` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"))]
    pub token_user: Option<String>,
}

impl App {
    /// The user name sent with this app's token.
    pub fn token_user(&self) -> &str {
        self.token_user.as_deref().unwrap_or(DEFAULT_TOKEN_USER)
    }
}

/// User name sent with a repository token when the manifest names none.
pub const DEFAULT_TOKEN_USER: &str = "x-access-token";

/// The custom image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Image repository without a tag or digest, e.g. `registry.example.com/acme/erpnext`;
    /// benchform computes the tag from the content.
    pub repository: String,
    /// Containerfile path, relative to `context` (e.g. frappe_docker's `images/layered/Containerfile`).
    pub containerfile: String,
    /// Build context folder, relative to the manifest's folder (e.g. a frappe_docker checkout).
    pub context: String,
    /// Extra build arguments. `FRAPPE_PATH`, `FRAPPE_BRANCH` and `CACHE_BUST` are set by benchform.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
    /// Network for `RUN` steps during the build (e.g. `host`); default: the engine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_network: Option<String>,
    /// Tag of the images the build starts from, when it is not `frappe.ref`. frappe_docker's
    /// layered Containerfile starts `FROM ${FRAPPE_IMAGE_PREFIX}/build:${FRAPPE_BRANCH}` (and
    /// `…/base:…`), and `FRAPPE_BRANCH` is `frappe.ref`: with frappe pinned by tag (`v15.88.1`)
    /// it would pull `frappe/build:v15.88.1`, which need not exist. `base_tag: version-15` builds
    /// from `frappe/build:version-15` and `frappe/base:version-15` instead, while bench still
    /// clones frappe at `frappe.ref` (benchform gives them a local alias; docs/manifest.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"))]
    pub base_tag: Option<String>,
    /// Push the image to `repository`'s registry. Default: true. `false` is for one host that
    /// builds and runs its own image (frappe_docker's `CUSTOM_IMAGE=custom`, `PULL_POLICY=never`):
    /// no registry is asked or pushed to, and the tag is looked up in the engine.
    #[serde(default = "default_true")]
    pub push: bool,
    /// Which engine builds the image: `engine`, the one benchform deploys to (as frappe_docker's
    /// runbook builds on the server), or `local`, the Docker Engine of the machine running
    /// benchform (its local socket), which pushes it for the deploy engine to pull — for a deploy
    /// engine too small or too far to build. Default: `engine`.
    #[serde(default, skip_serializing_if = "BuildOn::is_engine")]
    pub build_on: BuildOn,
}

/// Where the image is built (`image.build_on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuildOn {
    /// The engine benchform deploys to.
    #[default]
    Engine,
    /// The local engine of the machine running benchform; the image reaches the deploy engine
    /// through the registry.
    Local,
}

impl BuildOn {
    pub fn is_engine(&self) -> bool {
        *self == BuildOn::Engine
    }
}

/// How the image is deployed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The compose project's files.
    pub compose: Compose,
    /// Compose service that runs gunicorn and `bench` commands. Default: `backend`.
    #[serde(default = "default_backend_service")]
    pub backend_service: String,
    /// Environment variable holding the database root password (needed only to create sites).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z_][A-Z0-9_]*$"))]
    pub db_root_password_env: Option<String>,
    /// Environment variable holding the Administrator password for new sites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z_][A-Z0-9_]*$"))]
    pub admin_password_env: Option<String>,
    /// What runs the compose files: `compose` (one engine) or `swarm` (a Docker Swarm: the
    /// engine benchform talks to is a manager, the files become a stack named `project`; see
    /// docs/swarm.md). Default: `compose`.
    #[serde(default, skip_serializing_if = "DeployTarget::is_compose")]
    pub target: DeployTarget,
}

/// What runs the compose files (`deploy.target`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeployTarget {
    /// Docker Compose on one engine.
    #[default]
    Compose,
    /// A Docker Swarm, through one of its managers: `docker stack deploy`.
    Swarm,
}

impl DeployTarget {
    pub fn is_compose(&self) -> bool {
        *self == DeployTarget::Compose
    }
}

fn default_backend_service() -> String {
    "backend".to_string()
}

/// Compose files, as frappe_docker lays them out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Compose {
    /// Folder the compose files are relative to, relative to the manifest's folder.
    /// Default: `image.context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Compose files, in order, relative to `dir`.
    pub files: Vec<String>,
    /// Environment file passed with `--env-file`, relative to `dir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_file: Option<String>,
}

/// One Frappe site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Site name, a lowercase DNS name (frappe_docker routes requests by host name).
    pub name: String,
    /// Apps installed on the site, from `apps`; frappe is implicit.
    #[serde(default)]
    pub apps: Vec<String>,
}

/// Backups taken before destructive steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backups {
    /// Host folder, relative to the manifest's folder. Default: `backups`.
    #[serde(default = "default_backup_dir")]
    pub dir: String,
    /// Backups kept per site. Default: 5.
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1))]
    pub keep: u32,
}

impl Default for Backups {
    fn default() -> Self {
        Backups { dir: default_backup_dir(), keep: default_keep() }
    }
}

fn default_backup_dir() -> String {
    "backups".to_string()
}

fn default_keep() -> u32 {
    5
}

/// Safety rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Refs must resolve to tags, never branches. Default: true.
    #[serde(default = "default_true")]
    pub immutable_refs: bool,
    /// Allow `uninstall-app` on sites (after a backup). Default: false.
    #[serde(default)]
    pub allow_uninstall: bool,
    /// What to do when a site's migrate fails. Default: `restore`.
    #[serde(default)]
    pub on_migrate_failure: OnMigrateFailure,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { immutable_refs: true, allow_uninstall: false, on_migrate_failure: OnMigrateFailure::default() }
    }
}

fn default_true() -> bool {
    true
}

/// What to do when a site's migrate fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnMigrateFailure {
    /// Restore the site from the backup taken in this run and keep it in maintenance mode.
    #[default]
    Restore,
    /// Leave the failed site as it is, in maintenance mode.
    Stop,
}

impl Manifest {
    /// frappe and every app, in manifest order: what gets locked and built.
    pub fn sources(&self) -> Vec<SourceRef<'_>> {
        let mut out = vec![SourceRef {
            name: "frappe",
            repo: &self.frappe.repo,
            git_ref: &self.frappe.git_ref,
            token_env: None,
            token_user: DEFAULT_TOKEN_USER,
        }];
        out.extend(self.apps.iter().map(|a| SourceRef {
            name: &a.name,
            repo: &a.repo,
            git_ref: &a.git_ref,
            token_env: a.token_env.as_deref(),
            token_user: a.token_user(),
        }));
        out
    }
}

/// A git source (frappe or an app) as the lock sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRef<'a> {
    pub name: &'a str,
    pub repo: &'a str,
    pub git_ref: &'a str,
    pub token_env: Option<&'a str>,
    pub token_user: &'a str,
}

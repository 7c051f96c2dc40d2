//! Command-line definitions (clap). Parsing only; behaviour lives in `commands`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Reconcile Frappe/ERPNext deployments on Docker with a desired state committed to git.
#[derive(Debug, Parser)]
#[command(name = "benchform", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on standard error (-v info, -vv debug). BENCHFORM_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a manifest and report every problem at once. Needs no network and no secrets.
    ///
    /// Example: benchform validate -f manifests/minimal.yaml --format json
    Validate(ValidateArgs),
    /// Print the manifest's JSON Schema (for editors and CI).
    ///
    /// Example: benchform schema > benchform.schema.json
    Schema(SchemaArgs),
    /// Pin every ref in the manifest to a commit in benchform.lock, or check the lock.
    ///
    /// Example: benchform lock --check --offline
    Lock(LockArgs),
    /// Show the observed deployment next to the desired one: lock, image tag, services, sites,
    /// and changes made outside benchform. Exit 0 when observation worked, whatever the drift.
    ///
    /// Example: benchform status --format json --refresh full
    Status(StatusArgs),
    /// Observe the deployment and show, in order and with reasons, the steps apply would take.
    ///
    /// Example: benchform plan --format markdown --detailed-exitcode
    Plan(PlanArgs),
    /// Render a saved plan.
    ///
    /// Example: benchform show plan.json --format markdown
    Show(ShowArgs),
    /// The desired-state change since a git revision: apps, pins, image rebuild, sites, migrations,
    /// policy. Needs no engine, registry or secret (for pull-request CI).
    ///
    /// Example: benchform diff --base origin/main --format markdown
    Diff(DiffArgs),
    /// Carry out the plan: a fresh one (printed, then confirmed on a terminal or with
    /// --auto-approve), or exactly a saved one, refused if the world changed since.
    ///
    /// Example: benchform apply plan.json
    Apply(ApplyArgs),
    /// List the applies of this deployment: when, who, outcome, steps and backups.
    ///
    /// Example: benchform history --last 5
    History(HistoryArgs),
    /// Release the apply lock a crashed apply left behind.
    ///
    /// Example: benchform force-unlock 1a2b3c4d5e6f
    ForceUnlock(ForceUnlockArgs),
}

#[derive(Debug, Args)]
pub struct ManifestArg {
    /// The manifest. Default: benchform.yaml in the current folder.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// benchform.yaml
    Manifest,
    /// benchform.lock
    Lock,
    /// `benchform plan --format json`
    Plan,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema to print.
    #[arg(value_enum, default_value_t = SchemaKind::Manifest)]
    pub kind: SchemaKind,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Check instead of writing: exit 1 when the lock is missing, disagrees with the manifest, or
    /// a locked tag now points at another commit on its remote.
    #[arg(long, conflicts_with = "update")]
    pub check: bool,
    /// With --check: compare manifest and lock only; contact no remote.
    #[arg(long, requires = "check")]
    pub offline: bool,
    /// Re-resolve these entries (frappe or app names) even if their ref did not change;
    /// with no names, every entry.
    #[arg(long, num_args = 0.., value_name = "NAME")]
    pub update: Option<Vec<String>>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Read each site's installed apps with `execute frappe.get_installed_apps` (one exec per
    /// site) instead of one `list-apps` for all, whose table Frappe v15 refreshes only on migrate.
    #[arg(long = "refresh", value_name = "full", value_parser = ["full"], num_args = 1, action = clap::ArgAction::Set)]
    pub refresh: Option<String>,
}

impl StatusArgs {
    pub fn refresh_full(&self) -> bool {
        self.refresh.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Output format (markdown is fit for a pull-request comment).
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 0 when there is nothing to do, 2 when there are steps, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Allow running older app versions on sites migrated to newer ones (data-unsafe).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Read every site's installed apps authoritatively (one exec per site).
    #[arg(long = "refresh", value_name = "full", value_parser = ["full"], num_args = 1, action = clap::ArgAction::Set)]
    pub refresh: Option<String>,
    /// Also save the plan, with a fingerprint of the world it was computed from, as JSON.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A plan saved with `benchform plan -o FILE`.
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// The revision to compare with (a commit, branch or tag).
    #[arg(long, value_name = "REV")]
    pub base: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 0 when nothing changed, 2 when something did, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// A plan saved with `benchform plan -o FILE`: applied exactly, without asking.
    pub plan_file: Option<PathBuf>,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Allow running older app versions on sites migrated to newer ones (data-unsafe).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Wait this many seconds for another apply of the project to finish (default: fail at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub lock_timeout: u64,
    /// How many sites migrate at the same time (each site's own steps stay in order).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    /// How long a site may answer NOT READY to `bench ready-for-migration` before apply gives up.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub ready_timeout: u64,
    /// How long the backend has after a deploy to answer /api/method/ping for every site.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub health_timeout: u64,
    /// `text` for people; `json` for one JSON event per line (plan, step_started, step_finished,
    /// recovery, summary).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Show only the last N applies.
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    #[command(flatten)]
    pub manifest: ManifestArg,
    /// The lock ID an apply left behind (printed when an apply finds the project locked).
    pub id: String,
}

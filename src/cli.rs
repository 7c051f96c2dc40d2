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
    /// Draft benchform.yaml from frappe_docker's apps.json and compose env file (every guess
    /// marked TODO; credentials in URLs become token_env; nothing secret is copied).
    ///
    /// Example: benchform init --from-apps-json apps.json --env-file production.env --context ../frappe_docker
    Init(InitArgs),
    /// Print a shell completion script.
    ///
    /// Example: benchform completions bash > /etc/bash_completion.d/benchform
    Completions(CompletionsArgs),
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
    /// `benchform apply --format json` (one event per line)
    ApplyEvents,
    /// `benchform diff --format json`
    Diff,
    /// `benchform status --format json`
    Status,
    /// `benchform validate --format json`
    Validate,
    /// `benchform history --format json` (a list of these records)
    History,
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
    /// Read each site's installed apps with `bench execute frappe.get_installed_apps` (one exec
    /// per site, through Frappe itself) instead of from every site's database in one exec.
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
    /// A plan input: saved with `-o`, used by `apply FILE`.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Start the project although the same compose files run under another project name (a
    /// second, separate stack). A plan input: saved with `-o`, used by `apply FILE`.
    #[arg(long)]
    pub allow_new_project: bool,
    /// Roll back by revert, data included: bring sites migrated to newer code back to the backup
    /// benchform took before that migrate (data written since is lost), then run the older code.
    /// A plan input: saved with `-o`, used by `apply FILE`.
    #[arg(long)]
    pub allow_restore: bool,
    /// How many sites `apply` migrates at the same time (each site's own steps stay in order).
    /// A plan input: saved with `-o`, used by `apply FILE`.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: u16,
    /// Put SITE back in service although benchform did not take it out of it (maintenance mode
    /// set by hand, e.g. for a manual fix). Repeat for more sites. A plan input: saved with `-o`,
    /// used by `apply FILE`.
    #[arg(long, value_name = "SITE")]
    pub release_maintenance: Vec<String>,
    /// Read each site's installed apps with `bench execute frappe.get_installed_apps` (one exec
    /// per site, through Frappe itself) instead of from every site's database in one exec.
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
    /// Allow running older app versions on sites migrated to newer ones (data-unsafe). Not with
    /// PLAN_FILE: a saved plan keeps the inputs it was made with.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Start the project although the same compose files run under another project name (a
    /// second, separate stack). Not with PLAN_FILE.
    #[arg(long)]
    pub allow_new_project: bool,
    /// Roll back by revert, data included: bring sites migrated to newer code back to the backup
    /// benchform took before that migrate (data written since is lost). Not with PLAN_FILE.
    #[arg(long)]
    pub allow_restore: bool,
    /// Wait this long for another apply of the project to finish (default: fail at once). Seconds,
    /// or a duration such as `10s`, `5m`, `1h30m` (at most a week).
    #[arg(long, value_name = "DURATION", default_value_t = 0, value_parser = seconds_up_to_a_week)]
    pub lock_timeout: u64,
    /// How many sites migrate at the same time (each site's own steps stay in order; default 1).
    /// Not with PLAN_FILE: a saved plan keeps the inputs it was made with.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallelism: Option<u16>,
    /// Put SITE back in service although benchform did not take it out of it (maintenance mode
    /// set by hand). Repeat for more sites. Not with PLAN_FILE.
    #[arg(long, value_name = "SITE")]
    pub release_maintenance: Vec<String>,
    /// How long a site may answer NOT READY to `bench ready-for-migration` before apply gives up
    /// (seconds or a duration such as `5m`; 1 s to a day).
    #[arg(long, value_name = "DURATION", default_value_t = 300, value_parser = seconds_up_to_a_day)]
    pub ready_timeout: u64,
    /// How long the new backend has after a deploy to come up, and then to answer
    /// /api/method/ping for every site (seconds or a duration such as `2m`; 1 s to an hour).
    #[arg(long, value_name = "DURATION", default_value_t = 120, value_parser = seconds_up_to_an_hour)]
    pub health_timeout: u64,
    /// Stop waiting for one site's `bench migrate` after this long (seconds or a duration such as
    /// `2h`; 0: never, the default; Frappe advises no hard timeout). The migrate is not killed:
    /// the site stays in maintenance mode, nothing is restored under it, and the next apply waits
    /// for it to end.
    #[arg(long, value_name = "DURATION", default_value_t = 0, value_parser = seconds_up_to_a_week)]
    pub migrate_timeout: u64,
    /// `text` for people; `json` for one JSON event per line (plan, step_started, step_finished,
    /// recovery, blocked, summary).
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
    /// Release it even though the process holding it still runs on this machine.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The manifest to write. Default: benchform.yaml in the current folder.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// frappe_docker's apps.json: `[{"url": …, "branch": …}, …]`.
    #[arg(long, value_name = "FILE")]
    pub from_apps_json: PathBuf,
    /// The env file given to compose: CUSTOM_IMAGE, ERPNEXT_VERSION, COMPOSE_PROJECT_NAME, SITES,
    /// SITES_RULE and FRAPPE_SITE_NAME_HEADER are read (DB_PASSWORD only by name),
    /// nothing else is copied.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Compose project name: the `-p` the deployment runs under. Default: the env file's
    /// COMPOSE_PROJECT_NAME, else compose's own default (the compose folder's name), marked TODO.
    #[arg(long, value_name = "NAME")]
    pub project: Option<String>,
    /// The frappe_docker checkout (build context and compose folder), relative to the manifest.
    #[arg(long, value_name = "DIR", default_value = "../frappe_docker")]
    pub context: PathBuf,
    /// The frappe tag to pin. Default: frappe's apps.json entry, else the env file's
    /// ERPNEXT_VERSION, else a branch; a guess is marked TODO.
    #[arg(long, value_name = "REF")]
    pub frappe_ref: Option<String>,
    /// Replace an existing manifest.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// A duration on the command line, in whole seconds: a plain number of seconds, or `humantime`'s
/// form (`10s`, `5m`, `1h30m`), within `min..=max`.
fn seconds_within(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let secs = match text.trim().parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(text.trim())
            .map_err(|e| {
                format!("`{text}` is not a duration ({e}): write seconds (`90`) or e.g. `90s`, `5m`, `1h30m`")
            })?
            .as_secs(),
    };
    if (min..=max).contains(&secs) { Ok(secs) } else { Err(format!("{secs} s is outside {min}..={max} s")) }
}

fn seconds_up_to_a_week(text: &str) -> Result<u64, String> {
    seconds_within(text, 0, 604_800)
}

fn seconds_up_to_a_day(text: &str) -> Result<u64, String> {
    seconds_within(text, 1, 86_400)
}

fn seconds_up_to_an_hour(text: &str) -> Result<u64, String> {
    seconds_within(text, 1, 3_600)
}

#[cfg(test)]
mod tests {
    //! The command lines the documentation shows must exist and parse, so the docs cannot rot.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::{CommandFactory, Parser};

    use super::Cli;

    fn root() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// Split a shell command line into words: single and double quotes, backslash escapes;
    /// stops at an unquoted `#`, `>`, `|`, `;`, `&&` or `||`.
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => {
                    in_word = true;
                    for q in chars.by_ref() {
                        if q == '\'' {
                            break;
                        }
                        word.push(q);
                    }
                }
                '"' => {
                    in_word = true;
                    while let Some(q) = chars.next() {
                        match q {
                            '"' => break,
                            '\\' => word.extend(chars.next()),
                            _ => word.push(q),
                        }
                    }
                }
                '\\' => {
                    in_word = true;
                    word.extend(chars.next());
                }
                '#' | '>' | '|' | ';' | '&' if !in_word => break,
                c if c.is_whitespace() => {
                    if in_word {
                        out.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                c => {
                    in_word = true;
                    word.push(c);
                }
            }
        }
        if in_word {
            out.push(word);
        }
        out
    }

    /// Every `benchform …` invocation in a shell line: at its start or after `$ `, `run: `, `- `
    /// (YAML lists), `&&`, `||`, `;` or `(`. Synopsis lines (`[--flag]`, `a|b`, `…`) are skipped.
    fn in_shell_line(line: &str, found: &mut Vec<String>) {
        let mut rest = line;
        while let Some(i) = rest.find("benchform ") {
            let before = rest[..i].trim_end();
            let at_start =
                before.is_empty() || ["$", "run:", "-", "&&", "||", ";", "("].iter().any(|p| before.ends_with(p));
            let candidate = rest[i..].trim().to_string();
            rest = &rest[i + "benchform ".len()..];
            let synopsis = candidate.contains('[') || candidate.contains('…') || candidate.contains("text|");
            if at_start && !synopsis {
                found.push(candidate);
            }
        }
    }

    /// Invocations in a document: in markdown, the lines of `sh`/`bash`/`console` code blocks and
    /// inline code spans that start with `benchform `; in YAML (CI files), every line.
    fn invocations(text: &str, markdown: bool) -> Vec<String> {
        let mut found = Vec::new();
        let mut fence: Option<bool> = None; // Some(is_shell) inside a fenced block
        for line in text.lines() {
            if !markdown {
                in_shell_line(line, &mut found);
                continue;
            }
            if let Some(info) = line.trim_start().strip_prefix("```") {
                fence = match fence {
                    Some(_) => None,
                    None => Some(matches!(info.trim(), "sh" | "bash" | "console" | "shell")),
                };
                continue;
            }
            match fence {
                Some(true) => in_shell_line(line, &mut found),
                Some(false) => {}
                None => {
                    for (i, span) in line.split('`').enumerate() {
                        if i % 2 == 1 && span.starts_with("benchform ") {
                            in_shell_line(span, &mut found);
                        }
                    }
                }
            }
        }
        found
    }

    fn check(file: &str, text: &str) -> usize {
        let mut n = 0;
        for line in invocations(text, file.ends_with(".md")) {
            let argv = words(&line);
            if argv.first().map(String::as_str) != Some("benchform") || argv.len() < 2 {
                continue;
            }
            // Placeholders stand for values: `<shell>` → bash.
            let argv: Vec<String> =
                argv.into_iter().map(|w| if w == "<shell>" { "bash".to_string() } else { w }).collect();
            // `benchform init` in prose names a command: it must exist.
            if argv.len() == 2 && !argv[1].starts_with('-') {
                assert!(Cli::command().find_subcommand(&argv[1]).is_some(), "{file}: no command `{line}`");
                n += 1;
                continue;
            }
            if let Err(e) = Cli::try_parse_from(&argv)
                && !matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
            {
                panic!("{file}: `{line}` does not parse:\n{e}");
            }
            n += 1;
        }
        n
    }

    #[test]
    fn every_command_line_in_the_docs_parses() {
        let mut files = vec![root().join("README.md"), root().join("ARCHITECTURE.md")];
        for entry in std::fs::read_dir(root().join("docs")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
        let mut total = 0;
        for f in &files {
            total += check(&f.display().to_string(), &std::fs::read_to_string(f).unwrap());
        }
        assert!(total > 60, "only {total} command lines found: is the extraction broken?");
    }

    #[test]
    fn the_ci_examples_are_yaml_and_use_only_existing_commands() {
        for name in ["github-actions.yml", "gitlab-ci.yml"] {
            let path = root().join("docs/examples").join(name);
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = benchform_manifest::yaml::parse(&text);
            assert!(parsed.problems.is_empty(), "{name}: {:?}", parsed.problems);
            assert!(parsed.root.is_some(), "{name} is empty");
            let commands = check(name, &text);
            assert!(commands >= 6, "{name}: only {commands} benchform commands");
            // The plan and apply jobs reach the production host over SSH with a deploy key in an
            // agent and a pinned host key.
            assert_eq!(text.matches("DOCKER_HOST: ssh://").count(), 2, "{name}: plan and apply over SSH");
            for needed in ["ssh-add -q -", "> ~/.ssh/known_hosts"] {
                assert!(text.contains(needed), "{name} lacks `{needed}`");
            }
        }
    }

    #[test]
    fn the_extraction_finds_what_it_should() {
        let text = "benchform reconciles prose\n```sh\nbenchform plan -o plan.json # saved\nbenchform apply [--auto-approve]\n```\nsee `benchform diff --base main` here\n";
        assert_eq!(invocations(text, true), ["benchform plan -o plan.json # saved", "benchform diff --base main"]);
        assert_eq!(invocations("  run: benchform lock --check\n", false), ["benchform lock --check"]);
        assert_eq!(words("benchform plan -o 'a b.json' > x"), ["benchform", "plan", "-o", "a b.json"]);
        assert!(Cli::try_parse_from(["benchform", "no-such"]).is_err(), "a bad command line must fail the check");
    }

    #[test]
    fn every_command_has_an_example_in_its_help() {
        for sub in Cli::command().get_subcommands() {
            let about = sub.get_long_about().map(ToString::to_string).unwrap_or_default();
            assert!(about.contains("Example: benchform "), "`benchform {}` --help has no example", sub.get_name());
        }
    }

    #[test]
    fn durations_are_seconds_or_humantime() {
        assert_eq!(super::seconds_up_to_a_week("90"), Ok(90));
        assert_eq!(super::seconds_up_to_a_week("10s"), Ok(10));
        assert_eq!(super::seconds_up_to_a_week("1h30m"), Ok(5_400));
        assert!(super::seconds_up_to_a_week("2w").is_err());
        assert!(super::seconds_up_to_an_hour("0").is_err());
        assert!(super::seconds_up_to_a_day("soon").is_err());
    }
}

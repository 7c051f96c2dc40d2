//! The `bench` commands apply runs, as values, and what their failures mean.
//!
//! Each command becomes an argv array here and nowhere else (frappe-contract: options, order,
//! prompts answered on standard input so that passwords never reach argv). A failed command's
//! output is read here too, into the few failures benchform acts on; the executor matches on
//! [`Failure`] instead of on Frappe's words.

use std::fmt;

/// What `bench --site S scheduler …` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduler {
    Enable,
    Pause,
    Resume,
}

/// One `bench` command of apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchCommand<'a> {
    /// `bench new-site S`: the database root and Administrator passwords on standard input.
    /// Frappe 16 replaced `--no-mariadb-socket` with a login scope.
    NewSite {
        site: &'a str,
        frappe_major: u32,
    },
    Migrate {
        site: &'a str,
    },
    /// `set-maintenance-mode on|off`.
    MaintenanceMode {
        site: &'a str,
        on: bool,
    },
    Scheduler {
        site: &'a str,
        action: Scheduler,
    },
    InstallApp {
        site: &'a str,
        app: &'a str,
    },
    /// Without Frappe's own backup: apply took one before, and keeps it off the volume.
    UninstallApp {
        site: &'a str,
        app: &'a str,
    },
    /// Database and files into `path` (inside the container).
    Backup {
        site: &'a str,
        path: &'a str,
    },
    /// From a database dump and optional file archives; the root password on standard input.
    Restore {
        site: &'a str,
        database: &'a str,
        public_files: Option<&'a str>,
        private_files: Option<&'a str>,
    },
    /// `set-config -p KEY VALUE`: `value` a Python literal.
    SetConfig {
        site: &'a str,
        key: &'a str,
        value: &'a str,
    },
    /// `set-config KEY None` (without `-p`: Frappe deletes a key only for the string `None`;
    /// with `-p` it would store null).
    UnsetConfig {
        site: &'a str,
        key: &'a str,
    },
    ReadyForMigration {
        site: &'a str,
    },
}

impl BenchCommand<'_> {
    /// The site the command works on.
    pub fn site(&self) -> &str {
        match *self {
            BenchCommand::NewSite { site, .. }
            | BenchCommand::Migrate { site }
            | BenchCommand::MaintenanceMode { site, .. }
            | BenchCommand::Scheduler { site, .. }
            | BenchCommand::InstallApp { site, .. }
            | BenchCommand::UninstallApp { site, .. }
            | BenchCommand::Backup { site, .. }
            | BenchCommand::Restore { site, .. }
            | BenchCommand::SetConfig { site, .. }
            | BenchCommand::UnsetConfig { site, .. }
            | BenchCommand::ReadyForMigration { site } => site,
        }
    }

    /// The argv to exec in the bench folder.
    pub fn argv(&self) -> Vec<String> {
        let site = |s: &str, rest: &[&str]| {
            let mut argv = vec!["bench".to_string(), "--site".to_string(), s.to_string()];
            argv.extend(rest.iter().map(|r| r.to_string()));
            argv
        };
        match *self {
            BenchCommand::NewSite { site, frappe_major } => {
                let scope =
                    if frappe_major >= 16 { "--mariadb-user-host-login-scope=%" } else { "--no-mariadb-socket" };
                ["bench", "new-site", site, scope].map(String::from).to_vec()
            }
            BenchCommand::Migrate { site: s } => site(s, &["migrate"]),
            BenchCommand::MaintenanceMode { site: s, on } => {
                site(s, &["set-maintenance-mode", if on { "on" } else { "off" }])
            }
            BenchCommand::Scheduler { site: s, action } => site(
                s,
                &[
                    "scheduler",
                    match action {
                        Scheduler::Enable => "enable",
                        Scheduler::Pause => "pause",
                        Scheduler::Resume => "resume",
                    },
                ],
            ),
            BenchCommand::InstallApp { site: s, app } => site(s, &["install-app", app]),
            BenchCommand::UninstallApp { site: s, app } => site(s, &["uninstall-app", app, "--yes", "--no-backup"]),
            BenchCommand::Backup { site: s, path } => site(s, &["backup", "--with-files", "--backup-path", path]),
            BenchCommand::Restore { site: s, database, public_files, private_files } => {
                let mut argv = site(s, &["restore", database]);
                if let Some(f) = public_files {
                    argv.extend(["--with-public-files".to_string(), f.to_string()]);
                }
                if let Some(f) = private_files {
                    argv.extend(["--with-private-files".to_string(), f.to_string()]);
                }
                argv.push("--force".to_string());
                argv
            }
            BenchCommand::SetConfig { site: s, key, value } => site(s, &["set-config", "-p", key, value]),
            BenchCommand::UnsetConfig { site: s, key } => site(s, &["set-config", key, "None"]),
            BenchCommand::ReadyForMigration { site: s } => site(s, &["ready-for-migration"]),
        }
    }
}

/// Several commands (none reading standard input) in one exec, one after the other, stopping at
/// the first that fails: the engine's cost of an exec is paid once instead of per command, and
/// the `bench` processes are the same. Each argv goes in as one argument, its words joined by
/// the unit separator (0x1f), and the constant script splits it back with `IFS` set to that
/// separator alone and globbing off: no shell parses a word. `None` when a word is empty or holds
/// the separator (then each command runs in its own exec).
///
/// Output on stdout: `\x1ecmd N` before command N (from 1) runs, and after the last one that ran
/// `\x1erc N CODE`; the exec exits with that command's code.
pub fn sequence_argv(commands: &[Vec<String>]) -> Option<Vec<String>> {
    let mut argv: Vec<String> = ["sh", "-c", SEQUENCE_SCRIPT, "sh"].map(String::from).to_vec();
    for command in commands {
        if command.is_empty() || command.iter().any(|w| w.is_empty() || w.contains('\u{1f}')) {
            return None;
        }
        argv.push(command.join("\u{1f}"));
    }
    Some(argv)
}

const SEQUENCE_SCRIPT: &str = concat!(
    "set -f; IFS=$(printf '\\037'); n=0; for c; do n=$((n + 1)); printf '\\036cmd %s\\n' \"$n\"; ",
    "$c </dev/null; rc=$?; if [ \"$rc\" -ne 0 ]; then printf '\\036rc %s %s\\n' \"$n\" \"$rc\"; exit \"$rc\"; fi; ",
    "done; printf '\\036rc %s 0\\n' \"$n\""
);

/// What a sequence exec's stdout says: the number (from 0) of the last command that ran, and
/// each command's own stdout (the frame lines taken out).
pub fn parse_sequence(stdout: &str, count: usize) -> (usize, Vec<String>) {
    let mut outputs = vec![String::new(); count];
    let mut current: Option<usize> = None;
    for line in stdout.split_inclusive('\n') {
        let bare = line.trim_end_matches('\n');
        if let Some(n) = bare.strip_prefix("\u{1e}cmd ").and_then(|n| n.trim().parse::<usize>().ok()) {
            current = n.checked_sub(1).filter(|i| *i < count);
            continue;
        }
        if bare.starts_with("\u{1e}rc ") {
            continue;
        }
        if let Some(i) = current {
            outputs[i].push_str(line);
        }
    }
    (current.unwrap_or(0), outputs)
}

impl fmt::Display for BenchCommand<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.argv().join(" "))
    }
}

/// How many lines at the end of each stream [`classify`] reads.
const TAIL_LINES: usize = 6;

/// The failures of a `bench` command that benchform tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Frappe's per-site migrate lock is held: another migrate of the site runs (frappe-contract
    /// trap: an interrupted apply's `bench migrate` can outlive it). This command changed nothing.
    MigrateLocked,
    /// MariaDB has no database for the site (dropped, or a restore that never finished).
    UnknownDatabase { database: String },
    /// MariaDB refused a login (1045): the site's own user, or root with a wrong password.
    AccessDenied { user: String },
    /// The database server refuses writes (MariaDB 1290: `read_only` is set).
    ReadOnly,
    /// This Frappe has no such command (e.g. `ready-for-migration` before v15).
    NoSuchCommand,
    /// `ready-for-migration`: jobs are still running; worth waiting for.
    NotReady,
}

/// The text between the single quotes `text` starts with (`'_5e5f1c'` → `_5e5f1c`), as MariaDB
/// quotes names in its messages.
fn quoted_at(text: &str) -> String {
    text.strip_prefix('\'').and_then(|rest| rest.split('\'').next()).unwrap_or_default().to_string()
}

/// What the output of a failed command says, when it is one of the [`Failure`]s. Only the end of
/// each stream counts (a traceback's last lines say why it failed; a migrate may log earlier
/// errors it recovered from).
pub fn classify(stdout: &str, stderr: &str) -> Option<Failure> {
    let tail = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    };
    let (stdout, stderr) = (tail(stdout), tail(stderr));
    let (stdout, stderr) = (stdout.as_str(), stderr.as_str());
    let both = format!("{stdout}\n{stderr}");
    if both.contains("LockTimeoutError") && both.contains("bench_migrate") {
        return Some(Failure::MigrateLocked);
    }
    if let Some(at) = both.find("Unknown database '") {
        return Some(Failure::UnknownDatabase { database: quoted_at(&both[at + "Unknown database ".len()..]) });
    }
    if both.contains("(1290, ") {
        return Some(Failure::ReadOnly);
    }
    if let Some(at) = both.find("Access denied for user '") {
        return Some(Failure::AccessDenied { user: quoted_at(&both[at + "Access denied for user ".len()..]) });
    }
    if stderr.contains("No such command") {
        return Some(Failure::NoSuchCommand);
    }
    if stdout.contains("NOT READY") {
        return Some(Failure::NotReady);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_is_one_exec_whose_words_no_shell_parses() {
        let a = BenchCommand::MaintenanceMode { site: "a.localhost", on: true }.argv();
        let b = BenchCommand::SetConfig { site: "a.localhost", key: "k", value: "{'x': '$(rm -rf /) * ;'}" }.argv();
        let argv = sequence_argv(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(argv[..2], ["sh", "-c"]);
        assert_eq!(argv[4], a.join("\u{1f}"));
        assert_eq!(argv[5], b.join("\u{1f}"));
        assert!(!argv[2].contains("a.localhost"), "names never reach the script");
        // An empty word or one holding the separator cannot be framed: one exec per command.
        assert_eq!(sequence_argv(&[vec!["bench".into(), String::new()]]), None);
        assert_eq!(sequence_argv(&[vec!["bench".into(), "a\u{1f}b".into()]]), None);
    }

    #[test]
    fn a_sequence_says_which_command_ran_last_and_what_each_printed() {
        let out =
            "\u{1e}cmd 1\n\u{1e}cmd 2\nScheduler is paused for site a\n\u{1e}cmd 3\nTraceback\nboom\n\u{1e}rc 3 1\n";
        let (last, outputs) = parse_sequence(out, 3);
        assert_eq!(last, 2);
        assert_eq!(outputs, ["", "Scheduler is paused for site a\n", "Traceback\nboom\n"]);
        assert_eq!(parse_sequence("", 2).0, 0, "nothing ran: the first is the one that failed");
    }

    #[test]
    fn commands_become_the_contract_argv() {
        let s = "erp.example.com";
        assert_eq!(BenchCommand::Migrate { site: s }.to_string(), "bench --site erp.example.com migrate");
        assert_eq!(
            BenchCommand::NewSite { site: s, frappe_major: 15 }.to_string(),
            "bench new-site erp.example.com --no-mariadb-socket"
        );
        assert_eq!(BenchCommand::NewSite { site: s, frappe_major: 16 }.argv()[3], "--mariadb-user-host-login-scope=%");
        assert_eq!(
            BenchCommand::UninstallApp { site: s, app: "hrms" }.to_string(),
            "bench --site erp.example.com uninstall-app hrms --yes --no-backup"
        );
        assert_eq!(
            BenchCommand::Restore { site: s, database: "d.sql.gz", public_files: None, private_files: Some("p.tar") }
                .to_string(),
            "bench --site erp.example.com restore d.sql.gz --with-private-files p.tar --force"
        );
        assert_eq!(
            BenchCommand::Scheduler { site: s, action: Scheduler::Pause }.to_string(),
            "bench --site erp.example.com scheduler pause"
        );
        assert_eq!(
            BenchCommand::MaintenanceMode { site: s, on: false }.to_string(),
            "bench --site erp.example.com set-maintenance-mode off"
        );
    }

    #[test]
    fn failures_are_read_from_the_output() {
        let locked = "frappe.exceptions.LockTimeoutError: Lock bench_migrate is held by another process";
        assert_eq!(classify("", locked), Some(Failure::MigrateLocked));
        assert_eq!(classify("", "LockTimeoutError: document lock"), None);
        let unknown = "pymysql.err.OperationalError: (1049, \"Unknown database '_5e5f1c'\")";
        assert_eq!(classify("", unknown), Some(Failure::UnknownDatabase { database: "_5e5f1c".into() }));
        assert_eq!(classify("", "Error: No such command 'ready-for-migration'."), Some(Failure::NoSuchCommand));
        let denied = "pymysql.err.OperationalError: (1045, \"Access denied for user 'root'@'172.18.0.6' (using password: YES)\")";
        assert_eq!(classify("", denied), Some(Failure::AccessDenied { user: "root".into() }));
        let read_only = "pymysql.err.OperationalError: (1290, \"The MariaDB server is running with the --read-only option so it cannot execute this statement\")";
        assert_eq!(classify("", read_only), Some(Failure::ReadOnly));
        assert_eq!(classify("NOT READY: 2 jobs running", ""), Some(Failure::NotReady));
        assert_eq!(classify("", "Traceback …\nKeyError: 'x'"), None);
        // A lock error logged long before the real failure does not count.
        let earlier = format!("{locked}\n{}KeyError: 'x'", "line\n".repeat(10));
        assert_eq!(classify("", &earlier), None);
    }
}

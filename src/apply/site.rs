//! Steps on one site before its migrate: readiness, maintenance, backups (and which are kept),
//! new sites, the pending mark before an app is installed or removed, and the running-migrate check.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use benchform_bench::BENCH_DIR;
use benchform_core::status::{BACKUP_META_FILE, BackupMeta};

use super::*;

impl Applier<'_> {
    /// Before an app is installed or removed: mark the site's record pending, so that the site
    /// migrates in this run or, if the run stops first, in the next one (its fingerprint then
    /// matches nothing). A site benchform never migrated has no record to mark.
    pub(super) async fn mark_pending(
        &self,
        site: &str,
        observed: Option<&benchform_core::status::ObservedSite>,
    ) -> Result<(), StepError> {
        let Some(record) = observed.and_then(|o| o.record.as_ref()).filter(|r| !r.is_pending()) else {
            return Ok(());
        };
        let literal = record.pending().to_python_literal();
        let command = BenchCommand::SetConfig { site, key: benchform_core::record::RECORD_KEY, value: &literal };
        self.run_bench(command, None).await.map(|_| ()).map_err(|e| StepError { touched: false, ..e })
    }

    /// A `bench … migrate` of `site` still running in the backend (started by an apply that was
    /// killed or interrupted, or by hand): its argv.
    pub(super) async fn running_migrate(&self, site: &str) -> Result<Option<String>, StepError> {
        let bench = self.bench().await?;
        let execs = self.engine.running_execs(&bench.container).await.map_err(|e| err(e, "check `docker info`"))?;
        Ok(migrate_among(execs, Some(site)))
    }

    /// Refuse to touch `site` while a migrate of it still runs.
    pub(super) async fn no_migrate_running(&self, site: &str, what: &str) -> Result<(), StepError> {
        // A canary's migrate runs in its own container (this run's, or one an earlier run left).
        let in_canary = self.migrate_in_canary(Some(site)).await;
        let running = match in_canary {
            Some(argv) => Some(argv),
            None => self.running_migrate(site).await?,
        };
        match running {
            None => Ok(()),
            Some(argv) => Err(StepError {
                touched: false,
                ..err(
                    format!("`{argv}` is still running in the backend; no {what} while it runs"),
                    "wait for it to end (its backup is kept), then run apply again; to watch it: `docker top` on the \
                     backend container",
                )
            }),
        }
    }

    /// `<backups.dir>/<project>/<site>` on the host.
    pub(super) fn host_backups(&self, site: &str) -> PathBuf {
        self.p.paths.backups.join(site)
    }

    /// The backup the site's last unfinished migrate started from (kept from pruning), if any.
    pub(super) fn unfinished_migrate(&self, site: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.host_backups(site).join(UNFINISHED)).ok()?;
        let stamp = text.trim().to_string();
        (!stamp.is_empty() && !stamp.contains(['/', '.'])).then_some(stamp)
    }

    /// `ready-for-migration` until it answers READY, for at most `ready_timeout` (frappe-contract
    /// §7: Press waits 300 s). Frappe versions without the command count as ready.
    pub(super) async fn ready_for_migration(&self, site: &str) -> Result<(), StepError> {
        let deadline = Instant::now() + self.options.ready_timeout;
        let argv = BenchCommand::ReadyForMigration { site }.argv();
        loop {
            let out = self
                .bench()
                .await?
                .run(&argv, Some(Duration::from_secs(60)))
                .await
                .map_err(|e| err(e, "check the backend container"))?;
            if out.exit_code == 0 {
                return Ok(());
            }
            let failure = bench_command::classify(&out.stdout, &out.stderr);
            if failure == Some(Failure::NoSuchCommand) {
                tracing::warn!(%site, "this Frappe has no ready-for-migration; going on");
                return Ok(());
            }
            // Only NOT READY is worth waiting for; anything else (no database, redis down) is
            // an error now.
            if failure != Some(Failure::NotReady) {
                let said = out.stdout.lines().chain(out.stderr.lines()).last().unwrap_or_default().to_string();
                return Err(StepError {
                    touched: false,
                    ..err(
                        format!("`bench --site {site} ready-for-migration` exited {}: {said}", out.exit_code),
                        "fix the cause, then run apply again",
                    )
                });
            }
            if Instant::now() >= deadline {
                let said = out.stdout.lines().chain(out.stderr.lines()).last().unwrap_or_default().to_string();
                return Err(StepError {
                    touched: false,
                    ..err(
                        format!(
                            "{site} was not ready for migration within {} s: {said}",
                            self.options.ready_timeout.as_secs()
                        ),
                        "let its background jobs finish, then run apply again (--ready-timeout SECONDS waits longer)",
                    )
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    pub(super) async fn backup(&self, site: &str) -> Result<Outcome, StepError> {
        // A backup taken under a running migrate is a half-migrated site, not a restore point.
        self.no_migrate_running(site, "backup").await?;
        let taken_at = now_utc();
        let stamp = taken_at.replace([':', '-'], "");
        // What code the site's schema matches now: the backup is a restore point for that code.
        // A site whose last migrate did not finish (or whose record is pending) matches no code
        // for sure: its backup is kept, but is no restore point.
        let record = match self.unfinished_migrate(site) {
            Some(_) => None,
            None => self.bench().await?.site_config(site).await.ok().flatten().and_then(|c| c.record),
        }
        .filter(|r| !r.is_pending());
        let inside = format!("{BENCH_DIR}/sites/{site}/private/benchform-backups/{stamp}");
        self.run_bench(BenchCommand::Backup { site, path: &inside }, None).await?;
        // Copy off the volume: Frappe prunes backups, and losing the volume must not lose them.
        let host_root = self.host_backups(site);
        let protected = self.unfinished_migrate(site);
        std::fs::create_dir_all(&host_root)
            .map_err(|e| err(format!("{}: {e}", host_root.display()), "check backups.dir"))?;
        let container = self.bench().await?.container;
        self.cli
            .copy(&format!("{container}:{inside}"), &host_root.join(&stamp).display().to_string())
            .await
            .map_err(|e| err(e, "check the docker CLI"))?
            .map_err(|e| err(format!("copying the backup off the volume failed: {e}"), "check backups.dir"))?;
        let meta = BackupMeta { format_version: 1, site: site.to_string(), taken_at, record };
        let meta_path = host_root.join(&stamp).join(BACKUP_META_FILE);
        if let Err(e) =
            serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other).and_then(|b| std::fs::write(&meta_path, b))
        {
            return Err(err(format!("{}: {e}", meta_path.display()), "check backups.dir"));
        }
        let mut spare: Vec<&str> = protected.iter().map(String::as_str).collect();
        spare.extend(self.options.restore_points.get(site).map(String::as_str));
        prune(&host_root, self.p.manifest.backups.keep as usize, &spare);
        // Inside the volume, only this run's backup stays (a restore needs it), and the one an
        // unfinished migrate started from; the host keeps `backups.keep` of them, and that one.
        let folder = format!("{BENCH_DIR}/sites/{site}/private/benchform-backups");
        let keep_too = protected.unwrap_or_else(|| stamp.clone());
        let argv: Vec<String> = [
            "find",
            &folder,
            "-mindepth",
            "1",
            "-maxdepth",
            "1",
            "-type",
            "d",
            "!",
            "-name",
            &stamp,
            "!",
            "-name",
            &keep_too,
            "-exec",
            "rm",
            "-rf",
            "{}",
            "+",
        ]
        .map(String::from)
        .to_vec();
        if let Err(e) = self.bench().await?.run(&argv, Some(Duration::from_secs(120))).await {
            tracing::warn!(%site, "could not prune older backups in the volume: {e}");
        }
        if let Ok(mut taken) = self.backups.lock() {
            taken.insert(site.to_string(), inside.clone());
        }
        if let Ok(mut copied) = self.copied.lock() {
            copied.push(host_root.join(&stamp).display().to_string());
        }
        Ok(Outcome::Done(format!("backup in {}", host_root.join(&stamp).display())))
    }

    pub(super) async fn new_site(&self, site: &str) -> Result<Outcome, StepError> {
        if self.installed(site).await?.is_some() {
            return Ok(Outcome::AlreadyDone(format!("{site} exists")));
        }
        let (root, admin) = self.site_passwords(site)?;
        let frappe_major = frappe_major(&self.p.manifest.frappe.git_ref);
        // The passwords answer bench's prompts on stdin: argv is visible in the engine's events.
        let answers = format!("{root}\n{admin}\n");
        if let Err(mut e) = self.run_bench(BenchCommand::NewSite { site, frappe_major }, Some(answers.as_bytes())).await
        {
            if matches!(&e.cause, Some(Failure::AccessDenied { user }) if user == "root") {
                // Frappe writes site_config.json before it logs in as root: the refused login
                // created nothing else. Take the folder away again so the next apply starts clean
                // (a half-made site would block it, trap 15); it did not exist before this step.
                let folder = format!("{BENCH_DIR}/sites/{site}");
                let argv: Vec<String> = ["rm", "-rf", "--", &folder].map(String::from).to_vec();
                let removed = self.bench().await?.run(&argv, Some(Duration::from_secs(60))).await;
                let var =
                    self.p.manifest.deploy.db_root_password_env.as_deref().unwrap_or("the root password variable");
                e.fix = match removed {
                    Ok(out) if out.exit_code == 0 => format!(
                        "the database server refused root's password: export the right one in {var} and apply \
                         again (new-site created nothing; sites/{site} was removed)"
                    ),
                    _ => format!(
                        "the database server refused root's password: export the right one in {var}, remove the \
                         half-made folder sites/{site} in the backend (it holds no data), then apply again"
                    ),
                };
                return Err(e);
            }
            // A failed new-site can leave a half-made site that blocks the next one (trap 15).
            e.fix = format!(
                "fix the cause; if sites/{site} was left behind, remove the half-made site with \
                 `bench drop-site {site} --force --no-backup`, then apply again"
            );
            return Err(e);
        }
        self.run_bench(BenchCommand::Scheduler { site, action: Scheduler::Enable }, None).await?;
        Ok(Outcome::Done(format!("{site} created, scheduler enabled")))
    }
}

/// The Frappe major version a ref names: `v15.88.1` → 15, `version-16` → 16; 15 if unknown.
pub(super) fn frappe_major(git_ref: &str) -> u32 {
    let digits: String =
        git_ref.trim_start_matches(|c: char| !c.is_ascii_digit()).chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(15)
}

/// Of the argvs running in a container, a `bench … migrate` of `site` (any migrate when `None`):
/// `bench --site S migrate`, `bench --site all migrate`, a bare `bench migrate` (default site), or
/// any of them inside `sh -c "…"`; joined for display.
pub(super) fn migrate_among(execs: Vec<Vec<String>>, site: Option<&str>) -> Option<String> {
    execs.into_iter().map(|argv| argv.join(" ")).find(|line| {
        let words: Vec<&str> = line.split(|c: char| c.is_whitespace() || c == '"' || c == '\'').collect();
        words.contains(&"migrate")
            && site.is_none_or(|s| words.contains(&s) || words.contains(&"all") || !words.contains(&"--site"))
    })
}

/// The file, next to a site's host backups, naming the backup its last unfinished migrate started
/// from: written when a migrate starts, removed when it is recorded or restored.
pub(super) const UNFINISHED: &str = ".unfinished-migrate";

/// Keep `keep` backup folders under `dir` (names sort by time), and those `protected` names:
/// rollback points first — the newest backup of each code the site's schema matched (a rollback
/// by revert to that code needs it) — newest first, then the newest of the rest. What goes is
/// the oldest backup no rollback or unfinished migrate needs.
pub(super) fn prune(dir: &std::path::Path, keep: usize, protected: &[&str]) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    names.sort();
    let name = |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let code = |p: &PathBuf| -> Option<std::collections::BTreeMap<String, String>> {
        let bytes = std::fs::read(p.join(BACKUP_META_FILE)).ok()?;
        serde_json::from_slice::<BackupMeta>(&bytes).ok()?.record.map(|r| r.commits)
    };
    let mut kept: std::collections::BTreeSet<String> = protected.iter().map(|s| s.to_string()).collect();
    let mut slots = keep;
    let mut codes = Vec::new();
    for p in names.iter().rev() {
        if slots == 0 {
            break;
        }
        if let Some(c) = code(p)
            && !codes.contains(&c)
        {
            codes.push(c);
            if kept.insert(name(p)) {
                slots -= 1;
            }
        }
    }
    for p in names.iter().rev() {
        if slots == 0 {
            break;
        }
        if kept.insert(name(p)) {
            slots -= 1;
        }
    }
    for p in names.iter().filter(|p| !kept.contains(&name(p))) {
        let _ = std::fs::remove_dir_all(p);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use benchform_core::record::SiteRecord;
    use benchform_core::status::{BACKUP_META_FILE, BackupMeta};

    /// Backups of two releases' code, oldest first; keep 2: the newest of each code stays (a
    /// revert to either needs it), then what a protected name adds.
    #[test]
    fn pruning_keeps_a_rollback_point_for_each_code_first() {
        let dir = tempfile::tempdir().unwrap();
        let code = |c: &str| -> BTreeMap<String, String> { [("erpnext".to_string(), c.repeat(40))].into() };
        let backups = [
            ("20261201T000000Z", "a"),
            ("20261202T000000Z", "a"),
            ("20261203T000000Z", "b"),
            ("20261204T000000Z", "b"),
        ];
        for (name, c) in backups {
            let folder = dir.path().join(name);
            std::fs::create_dir_all(&folder).unwrap();
            let record = SiteRecord::new("p", code(c), BTreeMap::new(), "img", None, "t");
            let meta = BackupMeta { format_version: 1, site: "s".into(), taken_at: name.into(), record: Some(record) };
            std::fs::write(folder.join(BACKUP_META_FILE), serde_json::to_vec(&meta).unwrap()).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("20261130T000000Z")).unwrap(); // no note: no rollback point
        let left = || {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        super::prune(dir.path(), 3, &["20261130T000000Z"]);
        assert_eq!(left(), ["20261130T000000Z", "20261202T000000Z", "20261203T000000Z", "20261204T000000Z"]);
        super::prune(dir.path(), 2, &[]);
        assert_eq!(left(), ["20261202T000000Z", "20261204T000000Z"], "the newest of each code");
        super::prune(dir.path(), 1, &[]);
        assert_eq!(left(), ["20261204T000000Z"]);
    }
}

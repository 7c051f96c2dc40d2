//! The sites adapter: `bench` commands run in the deployment's backend container through the
//! engine, as argv arrays, as user `frappe` in the bench folder, without a TTY (frappe-contract
//! §9), so prompts fail instead of hanging.
//!
//! Reading sites costs two execs for any number of sites (see `benchform_core::bench`): the
//! configs, then every site's installed apps from its own database. `Refresh::Full` (and an
//! image without a database client) reads each site through `bench execute` instead.

use std::time::Duration;

use std::collections::{BTreeMap, BTreeSet};

use benchform_core::bench::{self, DbApps, OutputError};
use benchform_core::status::{AppsSource, ObservedSite};
use benchform_docker::{Engine, EngineError, ExecOutput, ExecSpec};

/// The bench folder inside frappe_docker images.
pub const BENCH_DIR: &str = "/home/frappe/frappe-bench";
/// The user bench commands run as.
pub const BENCH_USER: &str = "frappe";
/// Observation execs are quick on any healthy bench; a stuck one should not stall `status`.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(120);

/// How to read each site's installed apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Refresh {
    /// Every site's database in one exec (the image's `mariadb` client, each site's own
    /// credentials); `bench execute` per site where the image has no client.
    #[default]
    Cheap,
    /// `bench --site S execute frappe.get_installed_apps` per site: through Frappe itself.
    Full,
}

/// Sites as observed, and where their apps were read from.
#[derive(Debug, Clone, Default)]
pub struct SitesRead {
    pub sites: Vec<ObservedSite>,
    pub apps_source: AppsSource,
}

/// Why sites could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("`{command}` failed in {container} (exit {code}): {stderr}")]
    Failed { container: String, command: String, code: i64, stderr: String },
}

/// `bench` in one container.
#[derive(Debug, Clone)]
pub struct Bench<'a> {
    pub engine: &'a Engine,
    /// Container name or id (the backend service's).
    pub container: String,
}

impl Bench<'_> {
    /// Run `argv` in the bench folder; the raw output, whatever the exit code.
    pub async fn run(&self, argv: &[String], timeout: Option<Duration>) -> Result<ExecOutput, EngineError> {
        self.run_with_input(argv, None, timeout).await
    }

    /// The same, answering prompts (passwords) on standard input instead of putting them in argv.
    pub async fn run_with_input(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, EngineError> {
        self.exec(argv, stdin, timeout, None).await
    }

    /// A command that changes the site (migrate, backup, install-app …): no timeout, and its
    /// output streamed to the log as it comes (`-v`).
    /// `on_line` sees each whole output line as it comes.
    pub async fn run_streamed(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        on_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ExecOutput, EngineError> {
        self.exec(argv, stdin, None, Some(on_line)).await
    }

    async fn exec(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
        on_line: Option<&(dyn Fn(&str) + Send + Sync)>,
    ) -> Result<ExecOutput, EngineError> {
        tracing::info!(container = %self.container, command = %argv.join(" "), "exec");
        let spec = ExecSpec {
            container: &self.container,
            argv,
            user: Some(BENCH_USER),
            workdir: Some(BENCH_DIR),
            env: &[],
            timeout,
            stdin,
            stream: on_line.is_some(),
            on_line,
        };
        self.engine.exec(&spec).await
    }

    /// Run and require exit 0.
    pub async fn ok(&self, argv: &[String], timeout: Option<Duration>) -> Result<ExecOutput, BenchError> {
        let out = self.run(argv, timeout).await?;
        if out.exit_code != 0 {
            return Err(BenchError::Failed {
                container: self.container.clone(),
                command: argv.join(" "),
                code: out.exit_code,
                stderr: last_lines(&out.stderr, 5),
            });
        }
        Ok(out)
    }

    /// Every site on the bench with its apps, record and flags.
    pub async fn observe_sites(&self, refresh: Refresh) -> Result<SitesRead, BenchError> {
        self.observe(refresh, None).await
    }

    /// Every site's `site_config.json` summary (record, maintenance flags) and nothing else: one
    /// exec, and no site's database is touched.
    pub async fn site_configs(&self) -> Result<Vec<benchform_core::bench::SiteConfigSummary>, BenchError> {
        let out = self.ok(&bench::find_site_configs_argv(), Some(OBSERVE_TIMEOUT)).await?;
        Ok(bench::parse_site_configs(&out.stdout_bytes)?)
    }

    /// One site's `site_config.json` summary (`None` when the site does not exist): one exec that
    /// reads that site's config and the common one only, whatever the number of sites.
    pub async fn site_config(
        &self,
        site: &str,
    ) -> Result<Option<benchform_core::bench::SiteConfigSummary>, BenchError> {
        let argv = bench::find_site_config_argv(site).unwrap_or_else(bench::find_site_configs_argv);
        let out = self.ok(&argv, Some(OBSERVE_TIMEOUT)).await?;
        Ok(bench::parse_site_configs(&out.stdout_bytes)?.into_iter().find(|c| c.site == site))
    }

    /// One site; `None` when it does not exist. Two execs, each reading that site only.
    pub async fn observe_site(&self, site: &str) -> Result<Option<ObservedSite>, BenchError> {
        Ok(self.observe(Refresh::Cheap, Some(site)).await?.sites.into_iter().next())
    }

    /// Sites as observed. A site that cannot be read (no `site_config.json`, a config that is
    /// not JSON, a database that refuses it) comes back `damaged` with what was seen; it never
    /// fails the others. Only transport failures (no engine, no container) are errors.
    async fn observe(&self, refresh: Refresh, only: Option<&str>) -> Result<SitesRead, BenchError> {
        let configs = match only {
            Some(only) => self.site_config(only).await?.into_iter().collect(),
            None => self.site_configs().await?,
        };
        let mut apps_source = if refresh == Refresh::Full { AppsSource::Execute } else { AppsSource::Database };
        let mut from_db: BTreeMap<String, DbApps> = BTreeMap::new();
        if apps_source == AppsSource::Database {
            let readable: Vec<(&str, &bench::SiteDb)> = configs
                .iter()
                .filter(|c| c.damaged.is_none() && !c.read_with_bench)
                .filter_map(|c| c.db.as_ref().map(|db| (c.site.as_str(), db)))
                .filter(|(_, db)| bench::db_argv_problem(db).is_none())
                .collect();
            if !readable.is_empty() {
                let dbs: Vec<&bench::SiteDb> = readable.iter().map(|(_, db)| *db).collect();
                // The passwords go on standard input, which neither the engine's events nor the
                // engine client's debug log records.
                let (argv, passwords) = bench::db_query_exec(bench::DbQuery::InstalledApps, &dbs);
                // Each site may wait out the client's 5 s connect timeout.
                let timeout = OBSERVE_TIMEOUT + Duration::from_secs(6 * dbs.len() as u64);
                let out = self.run_with_input(&argv, Some(passwords.as_bytes()), Some(timeout)).await?;
                let answers = bench::parse_read_apps(&out.stdout, dbs.len())?;
                from_db = readable.iter().map(|(site, _)| site.to_string()).zip(answers).collect();
            }
            // An image without a database client: ask bench, site by site, and say so.
            if from_db.values().any(|a| *a == DbApps::NoClient) {
                tracing::warn!("the image has no `mariadb` client: reading each site with `bench execute`");
                apps_source = AppsSource::Execute;
            }
        }
        let mut sites = Vec::new();
        for c in configs {
            let mut damaged = c.damaged;
            let mut installed = Vec::new();
            if damaged.is_none() {
                let read = if apps_source == AppsSource::Execute || c.read_with_bench {
                    self.installed_apps_via_bench(&c.site).await?
                } else {
                    match (&c.db, from_db.remove(&c.site)) {
                        (None, _) => Err(format!("sites/{}/site_config.json names no database (db_name)", c.site)),
                        (Some(db), None) => Err(format!(
                            "{}; benchform reads no database named by such a value",
                            bench::db_argv_problem(db).unwrap_or_default()
                        )),
                        (Some(_), Some(DbApps::Installed(apps))) => Ok(apps),
                        (Some(db), Some(DbApps::Failed(said))) => {
                            Err(format!("its database {} on {} could not be read: {said}", db.name, db.host))
                        }
                        (Some(_), Some(DbApps::NoClient)) => Err("no database client".to_string()),
                    }
                };
                match read {
                    Ok(apps) => installed = apps,
                    Err(why) => damaged = Some(why),
                }
            }
            sites.push(ObservedSite {
                name: c.site,
                installed,
                record: c.record,
                maintenance_mode: c.maintenance_mode,
                scheduler_paused: c.scheduler_paused,
                maintenance_held: c.maintenance_held,
                scheduler_paused_before: c.scheduler_paused_before,
                damaged,
            });
        }
        Ok(SitesRead { sites, apps_source })
    }

    /// The patches that ran on each of `sites` (their `Patch Log` rows with `skipped = 0`), or
    /// per site why they could not be read: two execs for any number of sites (the configs, then
    /// every site's database through the image's `mariadb` client, as for installed apps).
    pub async fn patch_logs(
        &self,
        sites: &[String],
    ) -> Result<BTreeMap<String, Result<BTreeSet<String>, String>>, BenchError> {
        let mut out = BTreeMap::new();
        if sites.is_empty() {
            return Ok(out);
        }
        let configs = self.site_configs().await?;
        let mut readable: Vec<(&str, &bench::SiteDb)> = Vec::new();
        for site in sites {
            let why = match configs.iter().find(|c| &c.site == site) {
                None => Some("the site does not exist".to_string()),
                Some(c) => match (&c.damaged, &c.db) {
                    (Some(d), _) => Some(d.clone()),
                    (None, _) if c.read_with_bench => {
                        Some("its database is not MariaDB: benchform reads the Patch Log of MariaDB sites".to_string())
                    }
                    (None, None) => Some(format!("sites/{site}/site_config.json names no database (db_name)")),
                    (None, Some(db)) => match bench::db_argv_problem(db) {
                        Some(p) => Some(p),
                        None => {
                            readable.push((c.site.as_str(), db));
                            None
                        }
                    },
                },
            };
            if let Some(why) = why {
                out.insert(site.clone(), Err(why));
            }
        }
        if !readable.is_empty() {
            let dbs: Vec<&bench::SiteDb> = readable.iter().map(|(_, db)| *db).collect();
            let (argv, passwords) = bench::db_query_exec(bench::DbQuery::PatchLog, &dbs);
            let timeout = OBSERVE_TIMEOUT + Duration::from_secs(6 * dbs.len() as u64);
            let run = self.run_with_input(&argv, Some(passwords.as_bytes()), Some(timeout)).await?;
            let answers = bench::parse_patch_logs(&run.stdout, dbs.len())?;
            out.extend(readable.iter().map(|(site, _)| site.to_string()).zip(answers));
        }
        Ok(out)
    }

    /// `bench --site S execute frappe.get_installed_apps`: the apps, or why bench could not say.
    async fn installed_apps_via_bench(&self, site: &str) -> Result<Result<Vec<String>, String>, BenchError> {
        let argv = bench::installed_apps_argv(site);
        let out = self.run(&argv, Some(OBSERVE_TIMEOUT)).await?;
        Ok(match (out.exit_code, bench::parse_installed_apps(site, &out.stdout)) {
            (0, Ok(installed)) => Ok(installed),
            (code, _) => Err(format!(
                "bench could not read its installed apps (`{}` exited {code}): {}",
                argv.join(" "),
                last_lines(if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr }, 1)
            )),
        })
    }
}

/// The last `n` lines of a command's error output (tracebacks are long; the end says why).
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use benchform_core::bench;

    /// Exec 1's argv run by a real `find` on a bench's `sites/` folder: the one-site form reads
    /// that site (and the common config) alone; the all-sites form reads every site.
    #[test]
    fn one_site_is_read_alone_and_every_site_together() {
        let dir = tempfile::tempdir().unwrap();
        let sites = dir.path().join("sites");
        for site in ["a.localhost", "b.localhost", "c.localhost"] {
            std::fs::create_dir_all(sites.join(site).join("private/backups")).unwrap();
            let config = format!("{{\"db_name\": \"_{}\", \"db_password\": \"pw\"}}", &site[..1]);
            std::fs::write(sites.join(site).join("site_config.json"), config).unwrap();
        }
        std::fs::create_dir_all(sites.join("assets")).unwrap();
        std::fs::write(sites.join("common_site_config.json"), r#"{"db_host": "db"}"#).unwrap();
        let run = |argv: Vec<String>| {
            let out = Command::new(&argv[0]).args(&argv[1..]).current_dir(dir.path()).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            bench::parse_site_configs(&out.stdout).unwrap()
        };
        let one = run(bench::find_site_config_argv("b.localhost").unwrap());
        assert_eq!(one.len(), 1, "{one:?}");
        assert_eq!(one[0].site, "b.localhost");
        let db = one[0].db.as_ref().unwrap();
        assert_eq!((db.name.as_str(), db.host.as_str()), ("_b", "db"), "the common config is read too");
        let all = run(bench::find_site_configs_argv());
        let names: Vec<&str> = all.iter().map(|c| c.site.as_str()).collect();
        assert_eq!(names, ["a.localhost", "b.localhost", "c.localhost"]);
        // A site that does not exist is no error: nothing is read.
        assert!(run(bench::find_site_config_argv("d.localhost").unwrap()).is_empty());
        // A name `find` would take for a pattern never becomes one.
        assert_eq!(bench::find_site_config_argv("*"), None);
        assert_eq!(bench::find_site_config_argv("../x"), None);
    }
}

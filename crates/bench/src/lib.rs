//! The sites adapter: `bench` commands run in the deployment's backend container through the
//! engine, as argv arrays, as user `frappe` in the bench folder, without a TTY (frappe-contract
//! §9), so prompts fail instead of hanging.
//!
//! Reading sites costs a constant number of execs for any number of sites (see
//! `benchform_core::bench`); `Refresh::Full` adds one exec per site for the authoritative
//! installed-app list.

use std::time::Duration;

use benchform_core::bench::{self, OutputError};
use benchform_core::status::ObservedSite;
use benchform_docker::{Engine, EngineError, ExecOutput, ExecSpec};

/// The bench folder inside frappe_docker images.
pub const BENCH_DIR: &str = "/home/frappe/frappe-bench";
/// The user bench commands run as.
pub const BENCH_USER: &str = "frappe";
/// Observation execs are quick on any healthy bench; a stuck one should not stall `status`.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(120);

/// How thoroughly to read each site's installed apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Refresh {
    /// `list-apps` for all sites in one exec (Frappe v15 refreshes that table only on migrate).
    #[default]
    Cheap,
    /// `execute frappe.get_installed_apps` per site: authoritative.
    Full,
    /// `list-apps` for all, plus `execute` for sites benchform never migrated (whose table is
    /// stale or empty): exact where planning needs it, constant on a converged deployment.
    Auto,
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
    pub async fn observe_sites(&self, refresh: Refresh) -> Result<Vec<ObservedSite>, BenchError> {
        self.observe(refresh, None).await
    }

    /// Every site's `site_config.json` summary (record, maintenance flags) and nothing else: one
    /// exec, and no site's database is touched.
    pub async fn site_configs(&self) -> Result<Vec<benchform_core::bench::SiteConfigSummary>, BenchError> {
        let out = self.ok(&bench::find_site_configs_argv(), Some(OBSERVE_TIMEOUT)).await?;
        Ok(bench::parse_site_configs(&out.stdout_bytes)?)
    }

    /// One site, read authoritatively; `None` when it does not exist. Two execs.
    pub async fn observe_site(&self, site: &str) -> Result<Option<ObservedSite>, BenchError> {
        Ok(self.observe(Refresh::Full, Some(site)).await?.into_iter().next())
    }

    /// Sites as observed. A site that cannot be read (no `site_config.json`, a config that is
    /// not JSON, a database bench cannot open) comes back `damaged` with what was seen; it never
    /// fails the others. Only transport failures (no engine, no container) are errors.
    async fn observe(&self, refresh: Refresh, only: Option<&str>) -> Result<Vec<ObservedSite>, BenchError> {
        let mut configs = self.site_configs().await?;
        if let Some(only) = only {
            configs.retain(|c| c.site == only);
        }
        let readable = configs.iter().filter(|c| c.damaged.is_none()).count();
        // `--site all` stops at the first site it cannot open; then each site is read alone.
        let mut apps = match refresh {
            Refresh::Cheap | Refresh::Auto if readable > 0 => {
                let out = self.run(&bench::list_apps_all_argv(), Some(OBSERVE_TIMEOUT)).await?;
                match (out.exit_code, bench::parse_list_apps(&out.stdout)) {
                    (0, Ok(apps)) => Some(apps),
                    _ => None,
                }
            }
            _ => None,
        };
        let mut sites = Vec::new();
        for c in configs {
            let mut damaged = c.damaged;
            let authoritative = match refresh {
                Refresh::Cheap => apps.is_none(),
                Refresh::Full => true,
                Refresh::Auto => c.record.is_none() || apps.is_none(),
            };
            let installed = if damaged.is_some() {
                Vec::new()
            } else if authoritative {
                let out = self.run(&bench::installed_apps_argv(&c.site), Some(OBSERVE_TIMEOUT)).await?;
                match (out.exit_code, bench::parse_installed_apps(&c.site, &out.stdout)) {
                    (0, Ok(installed)) => installed,
                    (code, _) => {
                        damaged = Some(format!(
                            "bench could not read its installed apps (`{}` exited {code}): {}",
                            bench::installed_apps_argv(&c.site).join(" "),
                            last_lines(if out.stderr.trim().is_empty() { &out.stdout } else { &out.stderr }, 1)
                        ));
                        Vec::new()
                    }
                }
            } else {
                apps.as_mut().and_then(|a| a.remove(&c.site)).unwrap_or_default()
            };
            sites.push(ObservedSite {
                name: c.site,
                installed,
                record: c.record,
                maintenance_mode: c.maintenance_mode,
                scheduler_paused: c.scheduler_paused,
                damaged,
            });
        }
        Ok(sites)
    }
}

/// The last `n` lines of a command's error output (tracebacks are long; the end says why).
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

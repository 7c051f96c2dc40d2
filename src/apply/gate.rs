//! Checks before anything changes (pre-flight, frappe_docker's `migrator`), and the health gate:
//! the backend must come up on the desired image and answer `/api/method/ping` for every site.

use std::time::{Duration, Instant};

use benchform_core::plan::{Plan, StepKind};

use super::*;

impl Applier<'_> {
    /// Checks that must pass before the first step changes anything.
    pub async fn preflight(&self, plan: &Plan) -> Result<(), StepError> {
        if plan.steps.iter().any(|s| s.kind == StepKind::Deploy) {
            self.refuse_migrator().await?;
        }
        if let Some((what, fix)) = missing_secrets(plan, self.p).into_iter().next() {
            return Err(err(what, fix));
        }
        Ok(())
    }

    /// frappe_docker's `migrator` would migrate every site concurrently with the new backend,
    /// without maintenance mode, stopping at the first failure (frappe-contract §3, trap 11).
    pub(super) async fn refuse_migrator(&self) -> Result<(), StepError> {
        let services =
            self.compose.services(&self.env()).await.map_err(|e| err(e, "fix the compose files, then apply again"))?;
        if services.iter().any(|s| s == "migrator") {
            return Err(err(
                "the compose files define frappe_docker's `migrator` service: it runs `bench --site all migrate` \
                 concurrently with the new backend, without maintenance mode, and stops at the first failing site",
                "remove overrides/compose.migrator.yaml from deploy.compose.files; benchform migrates each site \
                 itself, after a backup and under maintenance mode",
            ));
        }
        Ok(())
    }

    /// Before the first step that changes a site in a run whose deploy gate did not pass (no
    /// deploy, or one a crash interrupted before its gate): the running backend must answer.
    /// Runs once, however many sites go in parallel.
    pub(super) async fn ensure_gate(&self, site: &str) -> Result<(), StepError> {
        let _once = self.gate_lock.lock().await;
        if self.gate_passed.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(());
        }
        if let Err(why) = self.health_gate().await {
            return Err(StepError {
                touched: false,
                ..err(
                    format!("{why}; not changing {site} on a backend that does not answer"),
                    format!(
                        "look at the backend's logs ({}); apply again once it answers, or revert the manifest change",
                        self.backend_logs()
                    ),
                )
            });
        }
        self.gate_passed.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Wait, at most `limit`, until the configurator has exited and the backend runs `reference`
    /// (on a swarm: until `stack`, the one just deployed, has converged).
    pub(super) async fn wait_until_up(
        &self,
        reference: &str,
        limit: Duration,
        stack: Option<&benchform_core::swarm::Stack>,
    ) -> Result<(), StepError> {
        if let Some(stack) = stack {
            return self.wait_until_converged(stack, reference, limit).await;
        }
        let deadline = Instant::now() + limit;
        let backend = &self.p.manifest.deploy.backend_service;
        loop {
            let containers = self
                .engine
                .project_containers(&self.p.manifest.project)
                .await
                .map_err(|e| err(e, "check `docker info`"))?;
            // The configurator must have finished, and finished well (exit 0).
            let configured = containers
                .iter()
                .all(|c| c.service != "configurator" || (c.state == "exited" && c.status.starts_with("Exited (0)")));
            let up = containers.iter().any(|c| c.service == *backend && c.state == "running" && c.image == reference);
            if configured && up {
                return Ok(());
            }
            if Instant::now() > deadline {
                let status = |service: &str| {
                    containers
                        .iter()
                        .find(|c| c.service == service)
                        .map_or("missing".to_string(), |c| format!("{} on {}", c.status, c.image))
                };
                return Err(err(
                    format!(
                        "{backend} did not come up on {reference} within {} s ({backend}: {}; configurator: {})",
                        limit.as_secs(),
                        status(backend),
                        status("configurator")
                    ),
                    "look at `docker compose logs`",
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// On a swarm: wait, at most `limit`, until every service of the stack runs its new
    /// configuration (its hash label is the stack file's; all its replicas run its image), the
    /// one-shot services completed, and the backend runs `reference`. A rolling update swarm
    /// paused (a task of the new configuration failed) fails at once.
    async fn wait_until_converged(
        &self,
        stack: &benchform_core::swarm::Stack,
        reference: &str,
        limit: Duration,
    ) -> Result<(), StepError> {
        let deadline = Instant::now() + limit;
        let backend = &self.p.manifest.deploy.backend_service;
        let project = &self.p.manifest.project;
        loop {
            let state = crate::swarm::StackState::read(&self.engine, project)
                .await
                .map_err(|e| err(e, "check `docker node ls` on the manager"))?;
            let services = state.observed(project, stack);
            let waiting: Vec<String> = services
                .iter()
                .filter_map(|c| {
                    let done = if stack.jobs.contains(&c.service) {
                        c.state == "exited" && c.exit_code == Some(0)
                    } else {
                        c.state == "running"
                    };
                    let current = c.config_hash.is_some() && c.config_hash == c.desired_config_hash;
                    let on_image = c.service != *backend || c.image == reference;
                    (!(done && current && on_image)).then(|| format!("{}: {}", c.service, c.state))
                })
                .collect();
            if waiting.is_empty() && services.iter().any(|c| c.service == *backend) {
                return Ok(());
            }
            if let Some(stopped) = services.iter().find(|c| crate::swarm::update_stopped(&c.state)) {
                return Err(err(
                    format!("swarm stopped the rolling update of {}: {}", stopped.service, stopped.state),
                    format!("look at `docker service ps {project}_{}`", stopped.service),
                ));
            }
            if Instant::now() > deadline {
                return Err(err(
                    format!(
                        "the stack did not converge on {reference} within {} s ({})",
                        limit.as_secs(),
                        waiting.join("; ")
                    ),
                    format!("look at `docker stack ps {project}`"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Every existing site answers `/api/method/ping` on the backend within `health_timeout`,
    /// by Host header as nginx routes it: 200 with `pong` for a serving site; for a site in
    /// maintenance mode, Frappe's 503 `SessionStopped` (raised once it has loaded the app and
    /// connected to the site's database) is as healthy as it gets. The number of sites checked,
    /// or why not.
    pub(super) async fn health_gate(&self) -> Result<usize, String> {
        let deadline = Instant::now() + self.options.health_timeout;
        // Names and maintenance flags are all the gate needs: one exec reading the site configs
        // (no site's database is touched, so one broken site cannot fail the gate by itself).
        let sites = loop {
            let read = match self.bench().await {
                Ok(bench) => bench.site_configs().await.map_err(|e| err(e, "check the backend container")),
                Err(e) => Err(e),
            };
            match read {
                Ok(sites) => break sites,
                Err(e) if Instant::now() >= deadline => return Err(format!("health gate: {}", e.detail)),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        };
        let mut pending: Vec<(&str, bool)> = sites
            .iter()
            .filter(|s| s.damaged.is_none() && !self.options.damaged.contains(&s.site))
            .map(|s| (s.site.as_str(), s.maintenance_mode))
            .collect();
        let checked = pending.len();
        // Round after round, the sites that did not answer yet, until the deadline passes.
        loop {
            let answers = self.ping_all(&pending).await;
            let mut failed = None;
            let mut left = Vec::new();
            for (site, answer) in pending.iter().zip(answers) {
                if let Err(said) = answer {
                    failed.get_or_insert((site.0, said));
                    left.push(*site);
                }
            }
            let Some((site, said)) = failed else { return Ok(checked) };
            if Instant::now() >= deadline {
                return Err(format!(
                    "health gate: {site} did not answer /api/method/ping within {} s ({said})",
                    self.options.health_timeout.as_secs()
                ));
            }
            pending = left;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// One ping of each site (`(name, in maintenance mode)`) through the backend container, by
    /// Host header as nginx routes it (frappe_docker's images ship curl): at most
    /// [`GATE_EXECS`] execs at the same time, each running curl for its share of the sites in
    /// turn, so the number of execs does not grow with the number of sites. Each site's answer,
    /// in order.
    pub(super) async fn ping_all(&self, sites: &[(&str, bool)]) -> Vec<Result<(), String>> {
        if sites.is_empty() {
            return Vec::new();
        }
        let share = sites.len().div_ceil(GATE_EXECS);
        let chunks = sites.chunks(share).map(|chunk| async move {
            let mut argv: Vec<String> = ["sh", "-c", PING_SCRIPT, "sh"].map(String::from).to_vec();
            argv.push(self.gunicorn());
            argv.extend(chunk.iter().map(|(site, _)| site.to_string()));
            // Each curl gives up after 5 s.
            let timeout = Duration::from_secs(10 + 6 * chunk.len() as u64);
            let out = match self.bench().await {
                Ok(bench) => bench.run(&argv, Some(timeout)).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.detail),
            };
            match out {
                Ok(out) => {
                    let mut answers = parse_pings(&out.stdout);
                    chunk
                        .iter()
                        .map(|(site, in_maintenance)| match answers.remove(*site) {
                            Some(answer) => judge(answer, *in_maintenance),
                            None => Err(format!("no answer from curl (exit {}: {})", out.exit_code, out.stderr.trim())),
                        })
                        .collect::<Vec<_>>()
                }
                Err(why) => chunk.iter().map(|_| Err(why.clone())).collect(),
            }
        });
        futures_util::future::join_all(chunks).await.into_iter().flatten().collect()
    }
}

/// One site's answer in a ping exec: curl's exit status, and what it printed (body, then the
/// HTTP status on the last line, or curl's error).
#[derive(Debug, PartialEq, Eq)]
struct PingAnswer {
    exit: i64,
    said: String,
}

/// A ping's verdict: 200 with `pong` for a serving site; for a site in maintenance mode, Frappe's
/// 503 `SessionStopped` (raised once it has loaded the app and connected to the site's database)
/// is as healthy as it gets.
fn judge(answer: PingAnswer, in_maintenance: bool) -> Result<(), String> {
    if answer.exit != 0 {
        return Err(format!("curl exited {}: {}", answer.exit, answer.said.trim()));
    }
    let (body, code) = answer.said.rsplit_once('\n').unwrap_or(("", answer.said.as_str()));
    match code.trim() {
        "200" if body.contains("pong") => Ok(()),
        "503" if in_maintenance => Ok(()),
        code => Err(format!("HTTP {code}")),
    }
}

/// Read a ping exec's output: each site's section opens with `\x1esite NAME` and closes with
/// `\x1erc N` (curl's exit status). A section without its closing line (the exec was cut off)
/// gives no answer for that site.
fn parse_pings(stdout: &str) -> std::collections::HashMap<String, PingAnswer> {
    let mut answers = std::collections::HashMap::new();
    let mut open: Option<(String, Vec<&str>)> = None;
    for line in stdout.split('\n') {
        if let Some(site) = line.strip_prefix("\u{1e}site ") {
            open = Some((site.to_string(), Vec::new()));
        } else if let Some(code) = line.strip_prefix("\u{1e}rc ") {
            if let Some((site, lines)) = open.take() {
                let exit = code.trim().parse().unwrap_or(-1);
                answers.insert(site, PingAnswer { exit, said: lines.join("\n") });
            }
        } else if let Some((_, lines)) = open.as_mut() {
            lines.push(line);
        }
    }
    answers
}

impl Applier<'_> {
    /// Where gunicorn answers, seen from where the ping runs: in the backend container itself
    /// (frappe_docker's CMD binds 0.0.0.0:8000); on a swarm, from benchform's ops task, the
    /// backend service by its name on the stack's network (swarm balances over its tasks).
    fn gunicorn(&self) -> String {
        match self.swarm {
            None => "http://127.0.0.1:8000".to_string(),
            Some(_) => format!("http://{}:8000", self.p.manifest.deploy.backend_service),
        }
    }
}

/// The ping exec: gunicorn's address first, then for each site given as an argument, curl with
/// its Host header, framed so that each answer is told apart. Constant text; the address and the
/// site names arrive as arguments, never in the script.
const PING_SCRIPT: &str = concat!(
    "g=$1; shift; for h; do printf '\\036site %s\\n' \"$h\"; ",
    "curl -sS --max-time 5 -H \"Host: $h\" -w '\\n%{http_code}' \"$g/api/method/ping\" 2>&1; ",
    "printf '\\n\\036rc %s\\n' \"$?\"; done"
);

/// How many execs the health gate runs at the same time, each pinging its share of the sites.
const GATE_EXECS: usize = 8;

/// How long a deploy may take to bring the backend up and the configurator through.
pub(super) const DEPLOY_WAIT: Duration = Duration::from_secs(180);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_sections_are_told_apart_and_judged() {
        let out = "\u{1e}site a.localhost\n{\"message\": \"pong\"}\n200\n\u{1e}rc 0\n\
                   \u{1e}site b.localhost\n{\"exc_type\": \"SessionStopped\"}\n503\n\u{1e}rc 0\n\
                   \u{1e}site c.localhost\ncurl: (7) Failed to connect\n\n\u{1e}rc 7\n\
                   \u{1e}site d.localhost\n{\"message\": \"pong\"}";
        let mut answers = parse_pings(out);
        assert_eq!(answers.len(), 3, "d was cut off: no answer");
        assert_eq!(judge(answers.remove("a.localhost").unwrap(), false), Ok(()));
        let b = answers.remove("b.localhost").unwrap();
        assert_eq!(judge(PingAnswer { exit: b.exit, said: b.said.clone() }, true), Ok(()));
        assert_eq!(judge(b, false), Err("HTTP 503".to_string()));
        let c = judge(answers.remove("c.localhost").unwrap(), false).unwrap_err();
        assert!(c.starts_with("curl exited 7: curl: (7) Failed to connect"), "{c}");
    }

    #[test]
    fn a_body_cannot_pass_for_another_site() {
        // A site's body holding the frame's text on a line of its own still belongs to it: the
        // frame byte starts every header, and a body line is only ever added to the open section.
        let out = "\u{1e}site a.localhost\nsite b.localhost\n404\n\u{1e}rc 0\n";
        let answers = parse_pings(out);
        assert_eq!(answers.keys().collect::<Vec<_>>(), ["a.localhost"]);
        assert_eq!(judge(answers.into_values().next().unwrap(), false), Err("HTTP 404".to_string()));
    }
}

//! Docker Compose, v1 (`docker-compose`, Debian's 1.29) and v2 (`docker compose`).
//!
//! Both take the same global options here (`-p`, `--project-directory`, `-f`, `--env-file`), so one
//! argv builder serves both; only the program differs. Their config hashes are computed
//! differently, so hashes are only ever compared within one flavour (the caller records which).

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::process::Command;

/// Which compose implementation to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `docker-compose` (Python, 1.x).
    V1,
    /// `docker compose` (the Go plugin, 2.x).
    V2,
}

impl Flavour {
    pub fn as_str(self) -> &'static str {
        match self {
            Flavour::V1 => "v1",
            Flavour::V2 => "v2",
        }
    }
}

/// Why compose failed. `stderr` is compose's own words.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("neither `docker compose` (v2) nor `docker-compose` (v1) is available: {detail}")]
    NotFound { detail: String },
    #[error("`{command}` failed (exit {code}): {stderr}")]
    Failed { command: String, code: i32, stderr: String },
    #[error("`{command}` could not be started: {detail}")]
    Spawn { command: String, detail: String },
}

/// A compose project as benchform drives it.
#[derive(Debug, Clone)]
pub struct Compose {
    pub flavour: Flavour,
    /// The `docker` CLI for v2 (`docker compose`); unused for v1.
    pub docker_cli: PathBuf,
    pub project: String,
    pub project_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub env_file: Option<PathBuf>,
    /// What compose needs to reach the run's engine ([`crate::Engine::client_env`]; an empty
    /// value removes the variable).
    pub engine_env: Vec<(String, String)>,
}

/// One service of the rendered configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedService {
    pub image: Option<String>,
    /// `restart:` as written (`unless-stopped`, `on-failure`, `always`, `no`), if any.
    pub restart: Option<String>,
    /// The services it depends on (`depends_on`, short or long form): `up` starts them with it.
    pub depends_on: Vec<String>,
}

impl Compose {
    /// The full argv (program first) for `compose <args>`.
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = program_argv(self.flavour, &self.docker_cli);
        argv.extend(["-p".to_string(), self.project.clone()]);
        argv.extend(["--project-directory".to_string(), self.project_dir.display().to_string()]);
        for f in &self.files {
            argv.extend(["-f".to_string(), f.display().to_string()]);
        }
        if let Some(env) = &self.env_file {
            argv.extend(["--env-file".to_string(), env.display().to_string()]);
        }
        argv.extend(args.iter().map(|a| a.to_string()));
        argv
    }

    /// `config --hash=*`: the hash compose would label each service's container with, so that a
    /// plan can tell which services `up` would recreate without running it.
    pub async fn config_hashes(&self, env: &[(String, String)]) -> Result<BTreeMap<String, String>, ComposeError> {
        let out = self.run(&["config", "--hash=*"], env).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(service, hash)| (service.trim().to_string(), hash.trim().to_string()))
            .filter(|(s, h)| !s.is_empty() && !h.is_empty())
            .collect())
    }

    /// Every service of the rendered configuration (`config`): the image it would run and its
    /// restart policy.
    pub async fn rendered_services(
        &self,
        env: &[(String, String)],
    ) -> Result<BTreeMap<String, RenderedService>, ComposeError> {
        Ok(services_of(&self.rendered(env).await?))
    }

    /// The whole rendered configuration (`config`: merged, interpolated, anchors resolved), as
    /// JSON. Both flavours print YAML; it is read with benchform's own parser.
    pub async fn rendered(&self, env: &[(String, String)]) -> Result<serde_json::Value, ComposeError> {
        let text = self.run(&["config"], env).await?;
        let parsed = benchform_manifest::yaml::parse(&text);
        Ok(parsed.root.map(|r| r.to_json()).unwrap_or_default())
    }

    /// `config --services`.
    pub async fn services(&self, env: &[(String, String)]) -> Result<Vec<String>, ComposeError> {
        Ok(self
            .run(&["config", "--services"], env)
            .await?
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// `up -d` (recreating `force` services when asked), with `env` for interpolation
    /// (`CUSTOM_IMAGE`, `CUSTOM_TAG`, `PULL_POLICY`).
    pub async fn up(
        &self,
        env: &[(String, String)],
        force_recreate: bool,
        services: &[String],
    ) -> Result<String, ComposeError> {
        let mut args = vec!["up", "-d", "--remove-orphans"];
        if force_recreate {
            args.push("--force-recreate");
        }
        // Only these (and what they depend on, which compose starts with them); all when empty.
        args.extend(services.iter().map(String::as_str));
        self.run(&args, env).await
    }

    /// `down` (volumes kept unless `volumes`).
    pub async fn down(&self, env: &[(String, String)], volumes: bool) -> Result<String, ComposeError> {
        let mut args = vec!["down", "--remove-orphans"];
        if volumes {
            args.push("--volumes");
        }
        self.run(&args, env).await
    }

    /// Run compose with `args`; stdout on success.
    pub async fn run(&self, args: &[&str], env: &[(String, String)]) -> Result<String, ComposeError> {
        let argv = self.argv(args);
        let command = argv.join(" ");
        tracing::debug!(%command, "compose");
        let (program, rest) = argv
            .split_first()
            .ok_or_else(|| ComposeError::Spawn { command: command.clone(), detail: "empty argv".to_string() })?;
        let mut cmd = Command::new(program);
        crate::engine::apply_client_env(&mut cmd, &self.engine_env);
        let out = cmd
            .args(rest)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.project_dir)
            // Its own process group: a Ctrl-C on the terminal stops benchform in order, never a
            // `compose up` half-way through recreating services.
            .process_group(0)
            .output()
            .await
            .map_err(|e| ComposeError::Spawn { command: command.clone(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(ComposeError::Failed {
                command,
                code: out.status.code().unwrap_or(-1),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Every service of a rendered configuration: the image it would run, its restart policy and
/// what it depends on.
pub fn services_of(rendered: &serde_json::Value) -> BTreeMap<String, RenderedService> {
    let text_of = |svc: &serde_json::Value, key: &str| svc.get(key).and_then(|v| v.as_str()).map(str::to_string);
    rendered
        .get("services")
        .and_then(|s| s.as_object())
        .map(|services| {
            services
                .iter()
                .map(|(name, svc)| {
                    let depends_on = match svc.get("depends_on") {
                        Some(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
                        Some(serde_json::Value::Array(a)) => {
                            a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
                        }
                        _ => Vec::new(),
                    };
                    (
                        name.clone(),
                        RenderedService { image: text_of(svc, "image"), restart: text_of(svc, "restart"), depends_on },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `pull_policy` value for "pull only when the engine lacks the image": compose v2 says
/// `missing` (frappe_docker's docs too), v1 (1.29) knows only `if_not_present` and rejects
/// `missing` as an invalid compose file.
pub fn pull_if_missing(flavour: Flavour) -> &'static str {
    match flavour {
        Flavour::V1 => "if_not_present",
        Flavour::V2 => "missing",
    }
}

/// The program that runs `flavour`: `docker-compose`, or compose v2: the Docker CLI's `compose`
/// plugin binary run directly (standalone mode, the same program and behaviour) when it is where
/// the Docker CLI looks for it, else `docker compose`. Run directly it skips the CLI's start-up and
/// its plugin-metadata call: about 60 ms per compose command here.
pub fn program_argv(flavour: Flavour, docker_cli: &std::path::Path) -> Vec<String> {
    match flavour {
        Flavour::V1 => vec!["docker-compose".to_string()],
        Flavour::V2 => match compose_plugin() {
            Some(plugin) => vec![plugin.display().to_string()],
            None => vec![docker_cli.display().to_string(), "compose".to_string()],
        },
    }
}

/// The compose plugin binary the Docker CLI would run for `docker compose`, searched where the CLI
/// searches, in its order: the user's `$DOCKER_CONFIG/cli-plugins` (`~/.docker`), the config
/// file's `cliPluginsExtraDirs`, then the system folders. Looked up once per process.
pub fn compose_plugin() -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND.get_or_init(find_compose_plugin).clone()
}

fn find_compose_plugin() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let config_dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(config_dir) = &config_dir {
        dirs.push(config_dir.join("cli-plugins"));
        let extra = std::fs::read(config_dir.join("config.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|config| config.get("cliPluginsExtraDirs").cloned());
        if let Some(serde_json::Value::Array(extra)) = extra {
            dirs.extend(extra.iter().filter_map(|d| d.as_str()).map(PathBuf::from));
        }
    }
    dirs.extend(
        [
            "/usr/local/lib/docker/cli-plugins",
            "/usr/local/libexec/docker/cli-plugins",
            "/usr/lib/docker/cli-plugins",
            "/usr/libexec/docker/cli-plugins",
        ]
        .map(PathBuf::from),
    );
    dirs.into_iter()
        .map(|d| d.join("docker-compose"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// The flavour known without running compose: `BENCHFORM_COMPOSE=v1|v2`, else v2 when the compose
/// plugin is where the Docker CLI looks for it. `None`: [`detect`] must ask.
pub fn known_flavour() -> Option<Flavour> {
    forced_flavour().or_else(|| compose_plugin().map(|_| Flavour::V2))
}

/// The flavour `BENCHFORM_COMPOSE=v1|v2` asks for, if any.
fn forced_flavour() -> Option<Flavour> {
    match std::env::var("BENCHFORM_COMPOSE").ok().as_deref() {
        Some("v1") => Some(Flavour::V1),
        Some("v2") => Some(Flavour::V2),
        _ => None,
    }
}

/// What `flavour`'s `version --short` says (`2.40.3`, `1.29.2`); `None` when it does not run.
/// `engine_env` as in [`Compose::engine_env`]: the Docker CLI may ping the engine even for this.
pub async fn version_of(
    flavour: Flavour,
    docker_cli: &std::path::Path,
    engine_env: &[(String, String)],
) -> Option<String> {
    let argv = program_argv(flavour, docker_cli);
    let (program, rest) = argv.split_first()?;
    let mut cmd = Command::new(program);
    crate::engine::apply_client_env(&mut cmd, engine_env);
    let out = cmd.args(rest).args(["version", "--short"]).output().await.ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().trim_start_matches('v').to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// Pick the compose flavour and learn its version, in one run of `version --short`:
/// `BENCHFORM_COMPOSE=v1|v2` if set (its version then only when it answers), else v2 when
/// `docker compose` answers, else v1 when `docker-compose` does.
pub async fn detect(
    docker_cli: &std::path::Path,
    engine_env: &[(String, String)],
) -> Result<(Flavour, Option<String>), ComposeError> {
    if let Some(flavour) = forced_flavour() {
        return Ok((flavour, version_of(flavour, docker_cli, engine_env).await));
    }
    for flavour in [Flavour::V2, Flavour::V1] {
        if let Some(version) = version_of(flavour, docker_cli, engine_env).await {
            return Ok((flavour, Some(version)));
        }
    }
    Err(ComposeError::NotFound { detail: "install the compose plugin (v2) or docker-compose (v1)".to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(flavour: Flavour) -> Compose {
        Compose {
            flavour,
            docker_cli: PathBuf::from("/usr/bin/docker"),
            project: "erpnext-prod".to_string(),
            project_dir: PathBuf::from("/srv/frappe_docker"),
            files: vec![
                PathBuf::from("/srv/frappe_docker/compose.yaml"),
                PathBuf::from("/srv/frappe_docker/overrides/compose.redis.yaml"),
            ],
            env_file: Some(PathBuf::from("/srv/frappe_docker/production.env")),
            engine_env: Vec::new(),
        }
    }

    // The argv shapes, pinned; both flavours also run for real in tests/it/adapters.rs.
    #[test]
    fn v2_argv_is_docker_compose_with_global_options_first() {
        let argv = project(Flavour::V2).argv(&["up", "-d"]);
        // The plugin binary itself where the Docker CLI keeps it, else `docker compose`.
        let program = match compose_plugin() {
            Some(plugin) => vec![plugin.display().to_string()],
            None => vec!["/usr/bin/docker".to_string(), "compose".to_string()],
        };
        assert_eq!(argv[..program.len()], program);
        assert_eq!(
            argv[program.len()..],
            [
                "-p",
                "erpnext-prod",
                "--project-directory",
                "/srv/frappe_docker",
                "-f",
                "/srv/frappe_docker/compose.yaml",
                "-f",
                "/srv/frappe_docker/overrides/compose.redis.yaml",
                "--env-file",
                "/srv/frappe_docker/production.env",
                "up",
                "-d",
            ]
        );
    }

    #[test]
    fn v1_argv_is_docker_compose_hyphenated() {
        let argv = project(Flavour::V1).argv(&["config", "--hash=*"]);
        assert_eq!(argv[0], "docker-compose");
        assert_eq!(argv[1..3], ["-p", "erpnext-prod"]);
        assert_eq!(argv[argv.len() - 2..], ["config", "--hash=*"]);
    }
}

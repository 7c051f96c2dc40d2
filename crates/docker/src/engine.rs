//! The Docker Engine, through bollard.
//!
//! bollard 0.21 defaults to API 1.53, which Engine 20.10 (API 1.41) refuses. So the client
//! negotiates: it asks `/version`, takes the lower of the server's and its own version, and
//! refuses engines older than 1.41. Should a request be refused as "too new" anyway, the maximum
//! the server names is used and the connection retried once.

use std::collections::HashMap;
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use bollard::{ClientVersion, Docker};
use futures_util::StreamExt;

/// The oldest Engine API benchform talks to (Docker 20.10).
pub const MIN_API: ClientVersion = ClientVersion { major_version: 1, minor_version: 41 };

/// Labels compose puts on containers (v1 and v2 alike).
pub mod labels {
    pub const PROJECT: &str = "com.docker.compose.project";
    pub const SERVICE: &str = "com.docker.compose.service";
    pub const NUMBER: &str = "com.docker.compose.container-number";
    pub const ONEOFF: &str = "com.docker.compose.oneoff";
    pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
    pub const VERSION: &str = "com.docker.compose.version";
    /// The compose files a project was started from (absolute paths, comma-separated).
    pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
    /// The folder relative compose file paths are taken from.
    pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
}

/// Why the engine could not be used. Messages say where benchform looked and what to do.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no Docker Engine answers at {host}: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("the Docker Engine at {host} speaks API {version}; benchform needs {min} or newer (Docker 20.10+)")]
    TooOld { host: String, version: String, min: String },
    #[error("{detail}; {fix}")]
    Endpoint { detail: String, fix: String },
    #[error("Docker Engine request failed ({what}): {detail}")]
    Request { what: String, detail: String },
    #[error("`{command}` in container {container} did not finish within {seconds} s")]
    ExecTimeout { container: String, command: String, seconds: u64 },
}

/// Emit the complete lines of a stream as `exec` events (see [`complete_lines`]), each with the
/// command it came from (argv holds no secret: those go on stdin), so that concurrent commands
/// can be told apart.
fn stream_lines(spec: &ExecSpec<'_>, command: &str, pending: &mut Vec<u8>, chunk: &[u8]) {
    if spec.stream {
        for line in complete_lines(pending, chunk) {
            tracing::info!(target: "exec", %command, "{line}");
            if let Some(on_line) = spec.on_line {
                on_line(&line);
            }
        }
    }
}

/// The complete lines `chunk` ends, keeping a partial last line in `pending` until its end
/// arrives: frames cut lines anywhere (a secret included), and log redaction works on whole
/// events. An empty `chunk` flushes what is left. `\r` (progress bars) ends a line too.
fn complete_lines(pending: &mut Vec<u8>, chunk: &[u8]) -> Vec<String> {
    pending.extend_from_slice(chunk);
    let cut = if chunk.is_empty() {
        pending.len()
    } else {
        match pending.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
            Some(i) => i + 1,
            None => return Vec::new(),
        }
    };
    let complete: Vec<u8> = pending.drain(..cut).collect();
    String::from_utf8_lossy(&complete)
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Give a child process an engine's environment ([`Engine::client_env`]): each variable set, or
/// removed where its value is empty (for the Docker CLI and compose the two are the same; for
/// the CA-bundle variables only removal is safe: python-requests takes an empty one as "do not
/// verify").
pub fn apply_client_env(cmd: &mut tokio::process::Command, env: &[(String, String)]) {
    for (k, v) in env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
    api: ClientVersion,
    /// Where the address came from (`DOCKER_HOST`, a Docker context, the default).
    source: String,
    /// For an `ssh://` engine: the forward every client of the run goes through.
    tunnel: Option<std::sync::Arc<crate::ssh::Tunnel>>,
    /// What the Docker CLI and compose need to reach this engine ([`Engine::client_env`]).
    client_env: Vec<(String, String)>,
}

/// A container of a compose project, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub service: String,
    pub number: u32,
    pub oneoff: bool,
    /// The image reference the container was created from (e.g. `repo:tag`).
    pub image: String,
    /// The local image id (`sha256:…`).
    pub image_id: String,
    /// `running`, `exited`, `created`, …
    pub state: String,
    /// The engine's words for it: `Up 3 minutes`, `Exited (0) 5 seconds ago`, …
    pub status: String,
    pub config_hash: Option<String>,
    /// The compose version that created it (tells v1 from v2: `1.x` or `2.x`).
    pub compose_version: Option<String>,
}

/// The running container of a compose service (not a one-off `run` container), if any.
pub fn running_service<'a>(containers: &'a [ContainerInfo], service: &str) -> Option<&'a ContainerInfo> {
    containers.iter().find(|c| c.service == service && c.state == "running" && !c.oneoff)
}

impl ContainerInfo {
    /// The exit code of an exited container (from the engine's `Exited (N) …` status).
    pub fn exit_code(&self) -> Option<i64> {
        let rest = self.status.strip_prefix("Exited (")?;
        rest[..rest.find(')')?].parse().ok()
    }
}

/// A local image, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    /// `repo@sha256:…` entries, present once the image was pushed or pulled.
    pub repo_digests: Vec<String>,
    pub labels: HashMap<String, String>,
}

/// What an exec printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: String,
    /// Standard output as the bytes the command wrote (`stdout` is their lossy UTF-8 text).
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    pub exit_code: i64,
}

/// An exec to run: always an argv array, never a shell string.
#[derive(Clone)]
pub struct ExecSpec<'a> {
    pub container: &'a str,
    pub argv: &'a [String],
    pub user: Option<&'a str>,
    pub workdir: Option<&'a str>,
    pub env: &'a [String],
    /// `None` waits as long as it takes (migrations must not be cut off).
    pub timeout: Option<Duration>,
    /// Bytes for the command's standard input (then closed). Secrets go here, never in `argv`:
    /// an exec's argv is visible in the engine's event stream and `ps`.
    pub stdin: Option<&'a [u8]>,
    /// Emit each output line as it arrives, as an `info` event of target `exec` (`-v` shows
    /// it): long commands (migrate, backup) are followed live. Progress bars' `\r` split lines.
    pub stream: bool,
    /// With `stream`: also called with each whole output line (e.g. to show the last one while
    /// a long command runs).
    pub on_line: Option<&'a (dyn Fn(&str) + Send + Sync)>,
}

impl<'a> ExecSpec<'a> {
    /// `argv` in `container` as the image's user in its working folder, no input, the output
    /// read when it ends (at most `timeout`).
    pub fn plain(container: &'a str, argv: &'a [String], timeout: Option<Duration>) -> ExecSpec<'a> {
        ExecSpec {
            container,
            argv,
            user: None,
            workdir: None,
            env: &[],
            timeout,
            stdin: None,
            stream: false,
            on_line: None,
        }
    }
}

impl std::fmt::Debug for ExecSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not stdin: it may hold a secret.
        f.debug_struct("ExecSpec")
            .field("container", &self.container)
            .field("argv", &self.argv)
            .field("user", &self.user)
            .field("workdir", &self.workdir)
            .field("timeout", &self.timeout)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

/// The engine the Docker CLI would talk to (`DOCKER_HOST`, `DOCKER_CONTEXT`, the config file's
/// `currentContext`, else the local socket), so that benchform's API calls, the Docker CLI's
/// builds and pushes and compose all reach the same engine.
pub fn resolve_endpoint() -> Result<crate::endpoint::Endpoint, EngineError> {
    let env = |k: &str| std::env::var(k).ok();
    let config = crate::endpoint::config_dir(&env);
    crate::endpoint::resolve(&env, config.as_deref()).map_err(|e| EngineError::Endpoint {
        detail: e.to_string(),
        fix: "or set DOCKER_HOST to the engine to use".to_string(),
    })
}

fn connect_at(
    host: &str,
    tls: Option<&crate::endpoint::Tls>,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    const TIMEOUT_SECS: u64 = 120;
    if host.starts_with("unix://") {
        return Docker::connect_with_unix(host, TIMEOUT_SECS, version);
    }
    let tls_dir = match tls {
        Some(t) => Some(t.dir.clone()),
        None if host.starts_with("https://") => {
            Some(std::env::var("HOME").map(|h| std::path::PathBuf::from(h).join(".docker")).unwrap_or_default())
        }
        None => None,
    };
    if let Some(dir) = tls_dir {
        return Docker::connect_with_ssl(
            host,
            &dir.join("key.pem"),
            &dir.join("cert.pem"),
            &dir.join("ca.pem"),
            TIMEOUT_SECS,
            version,
        );
    }
    Docker::connect_with_http(host, TIMEOUT_SECS, version)
}

/// The environment that pins the Docker CLI and compose to the engine at `host` (with `tls`'s
/// files); an empty value means removed ([`apply_client_env`]).
fn pinned_env(host: &str, tls: Option<&crate::endpoint::Tls>) -> Vec<(String, String)> {
    let cert_path = tls.map(|t| t.dir.display().to_string()).unwrap_or_default();
    let verify = if tls.is_some() { "1" } else { "" };
    let mut env: Vec<(String, String)> = [
        ("DOCKER_HOST", host),
        ("DOCKER_TLS_VERIFY", verify),
        ("DOCKER_CERT_PATH", &cert_path),
        ("DOCKER_CONTEXT", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if tls.is_some() {
        // compose v1 (python-requests) verifies against these bundles instead of the engine's
        // ca.pem when they are set, as on many CI images.
        for bundle in ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
            env.push((bundle.to_string(), String::new()));
        }
    }
    env
}

/// A TLS handshake that failed, in words: what is wrong with which certificate, and the fix.
fn tls_problem(host: &str, tls: Option<&crate::endpoint::Tls>, detail: &str) -> Option<(String, String)> {
    if detail.contains("HTTP request to an HTTPS server") {
        return Some((
            format!("the engine at {host} speaks TLS, and no TLS was asked for"),
            "set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the folder with ca.pem, cert.pem and key.pem (or use a \
             context made with them)"
                .to_string(),
        ));
    }
    let dir = tls?.dir.display();
    let name = host.trim_start_matches("tcp://").trim_start_matches("https://");
    let name = name.rsplit_once(':').map_or(name, |(h, _)| h);
    let found = |needles: &[&str]| needles.iter().any(|n| detail.contains(n));
    let (what, fix) = if found(&["NotValidForName", "not valid for name"]) {
        (
            format!("the engine's TLS certificate is not for the name `{name}`"),
            "connect by a name or address the certificate carries (its subjectAltName), or reissue it for this one"
                .to_string(),
        )
    } else if found(&["UnknownIssuer", "BadSignature"]) {
        (
            format!("the engine's TLS certificate is not signed by the CA in {dir}/ca.pem"),
            "put the CA that signed the engine's certificate in ca.pem".to_string(),
        )
    } else if found(&["Expired", "NotValidYet"]) && !found(&["alert"]) {
        (
            "the engine's TLS certificate has expired (or is not valid yet)".to_string(),
            "renew the engine's certificate on the host (and check both clocks)".to_string(),
        )
    } else if found(&["BadCertificate", "CertificateExpired", "UnknownCA", "CertificateUnknown", "bad certificate"]) {
        (
            format!("the engine refused benchform's client certificate ({dir}/cert.pem)"),
            "it has expired or is not signed by the CA the engine trusts (dockerd --tlscacert): issue a new one"
                .to_string(),
        )
    } else if found(&["Cannot open/read", "CertPathError", "CertParseError", "No such file", "certificate path"]) {
        (
            format!("the TLS files in {dir} (ca.pem, cert.pem, key.pem) cannot be read"),
            "point DOCKER_CERT_PATH (or the context) at the folder that holds them".to_string(),
        )
    } else {
        return None;
    };
    // The cause, without the HTTP client's wrapping ("client error (Connect): …").
    let cause = ["invalid peer certificate", "received fatal alert", "Cannot open/read"]
        .iter()
        .find_map(|m| detail.find(m).map(|i| &detail[i..]))
        .unwrap_or(detail);
    Some((format!("{what} ({host}: {cause})"), fix))
}

/// An error with every cause under it: bollard's own message ("client error (Connect)") hides
/// the one that says what went wrong (e.g. rustls' "invalid peer certificate: NotValidForName").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        next = cause.source();
    }
    text
}

fn too_new_max(err: &bollard::errors::Error) -> Option<ClientVersion> {
    let text = err.to_string();
    let rest = text.split("Maximum supported API version is ").nth(1)?;
    let v: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let (major, minor) = v.split_once('.')?;
    Some(ClientVersion { major_version: major.parse().ok()?, minor_version: minor.parse().ok()? })
}

impl Engine {
    /// Connect to the engine the Docker CLI would use ([`resolve_endpoint`]: unix, tcp,
    /// tcp+TLS) and settle the API version.
    pub async fn connect() -> Result<Engine, EngineError> {
        let endpoint = resolve_endpoint()?;
        let source = endpoint.source.to_string();
        if endpoint.host.starts_with("ssh://") {
            let ssh = |e: crate::ssh::SshError| EngineError::Endpoint { detail: e.to_string(), fix: e.fix() };
            let target = crate::ssh::parse(&endpoint.host).map_err(ssh)?;
            let tunnel = crate::ssh::Tunnel::open(&target).await.map_err(ssh)?;
            let mut engine = match Engine::connect_with(&tunnel.host(), None).await {
                Ok(engine) => engine,
                Err(e) => return Err(tunnel.engine_refused().map(ssh).unwrap_or(e)),
            };
            // `client_env` stays as connect_with pinned it: the forward's socket, no TLS.
            engine.host = endpoint.host.clone();
            engine.source = source;
            engine.tunnel = Some(std::sync::Arc::new(tunnel));
            return Ok(engine);
        }
        if endpoint.tls.as_ref().is_some_and(|t| !t.verify) {
            let (what, fix) = match endpoint.source {
                crate::endpoint::Source::DockerHost => (
                    "DOCKER_TLS is set without DOCKER_TLS_VERIFY: TLS without checking the engine's certificate"
                        .to_string(),
                    "set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (its ca.pem is the engine's CA)",
                ),
                _ => (
                    format!("{source} skips TLS verification (SkipTLSVerify)"),
                    "give the context the engine's CA (`docker context update --docker ca=…`)",
                ),
            };
            return Err(EngineError::Endpoint {
                detail: format!("{what}, which benchform does not do"),
                fix: fix.to_string(),
            });
        }
        let tls = endpoint.tls.as_ref();
        let mut engine = match Engine::connect_with(&endpoint.host, tls).await {
            Ok(engine) => engine,
            Err(EngineError::Unreachable { host, detail }) => {
                let mut named = tls_problem(&host, tls, &detail);
                // The engine's refusal of our certificate may have raced the request (TLS 1.3):
                // ask again, and read the alert this time.
                if let (None, Some(t)) = (&named, tls) {
                    let (at, dir) = (host.clone(), t.dir.clone());
                    let probed = tokio::task::spawn_blocking(move || crate::tlsprobe::probe(&at, &dir)).await;
                    tracing::debug!(host, ?probed, "probed the TLS engine for why it refused");
                    if let Ok(crate::tlsprobe::Probe::Refused(why)) = probed {
                        named = tls_problem(&host, tls, &why);
                    }
                }
                return Err(match named {
                    Some((detail, fix)) => EngineError::Endpoint { detail, fix },
                    None => EngineError::Unreachable { host, detail },
                });
            }
            Err(e) => return Err(e),
        };
        engine.source = source;
        Ok(engine)
    }

    /// The environment the Docker CLI and compose need to reach this same engine, whatever
    /// `DOCKER_HOST`, `DOCKER_CONTEXT` or the config file say: its address (for an `ssh://`
    /// engine, the local end of the run's forward) and TLS files. Pinned rather than left to
    /// each client to resolve again: compose v1 does not read `DOCKER_CONTEXT`, for one.
    pub fn client_env(&self) -> Vec<(String, String)> {
        self.client_env.clone()
    }

    pub async fn connect_to(host: &str) -> Result<Engine, EngineError> {
        Engine::connect_with(host, None).await
    }

    async fn connect_with(host: &str, tls: Option<&crate::endpoint::Tls>) -> Result<Engine, EngineError> {
        let unreachable =
            |e: &dyn std::fmt::Display| EngineError::Unreachable { host: host.to_string(), detail: e.to_string() };
        let unreachable_err =
            |e: &bollard::errors::Error| EngineError::Unreachable { host: host.to_string(), detail: error_chain(e) };
        let mut version = *bollard::API_DEFAULT_VERSION;
        for _ in 0..2 {
            let docker = connect_at(host, tls, &version).map_err(|e| unreachable_err(&e))?;
            match docker.negotiate_version().await {
                Ok(docker) => {
                    let api = docker.client_version();
                    if api < MIN_API {
                        return Err(EngineError::TooOld {
                            host: host.to_string(),
                            version: api.to_string(),
                            min: MIN_API.to_string(),
                        });
                    }
                    tracing::debug!(host, api = %api, "connected to the Docker Engine");
                    return Ok(Engine {
                        docker,
                        host: host.to_string(),
                        api,
                        source: "given".to_string(),
                        tunnel: None,
                        client_env: pinned_env(host, tls),
                    });
                }
                Err(e) => match too_new_max(&e) {
                    Some(max) if max < version => version = max,
                    _ => return Err(unreachable_err(&e)),
                },
            }
        }
        Err(unreachable(&"the engine refused every API version offered"))
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where the engine's address came from (`DOCKER_HOST`, a Docker context, the default).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The API version in use.
    pub fn api_version(&self) -> String {
        self.api.to_string()
    }

    pub(crate) fn docker(&self) -> &Docker {
        &self.docker
    }

    pub(crate) fn request_error(what: &str, e: bollard::errors::Error) -> EngineError {
        EngineError::Request { what: what.to_string(), detail: e.to_string() }
    }

    /// Every container (running or not) of a compose project, sorted by service and number.
    /// The running container of `service` in compose project `project`, if any.
    pub async fn running_container(&self, project: &str, service: &str) -> Result<Option<ContainerInfo>, EngineError> {
        Ok(running_service(&self.project_containers(project).await?, service).cloned())
    }

    pub async fn project_containers(&self, project: &str) -> Result<Vec<ContainerInfo>, EngineError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{}={project}", labels::PROJECT)]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list =
            self.docker.list_containers(Some(options)).await.map_err(|e| Self::request_error("list containers", e))?;
        let mut out: Vec<ContainerInfo> = list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                let get = |k: &str| labels.get(k).cloned();
                ContainerInfo {
                    id: c.id.unwrap_or_default(),
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    service: get(labels::SERVICE).unwrap_or_default(),
                    number: get(labels::NUMBER).and_then(|n| n.parse().ok()).unwrap_or(0),
                    oneoff: get(labels::ONEOFF).is_some_and(|v| v == "True" || v == "true"),
                    image: c.image.unwrap_or_default(),
                    image_id: c.image_id.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                    status: c.status.unwrap_or_default(),
                    config_hash: get(labels::CONFIG_HASH),
                    compose_version: get(labels::VERSION),
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.service, a.number, &a.name).cmp(&(&b.service, b.number, &b.name)));
        Ok(out)
    }

    /// The argv of every exec still running in `container` (`docker exec` by hand included):
    /// a `bench … migrate` that outlived the apply that started it shows here.
    pub async fn running_execs(&self, container: &str) -> Result<Vec<Vec<String>>, EngineError> {
        let inspected = self
            .docker
            .inspect_container(container, None::<bollard::query_parameters::InspectContainerOptions>)
            .await
            .map_err(|e| Self::request_error(&format!("inspect {container}"), e))?;
        let mut out = Vec::new();
        for id in inspected.exec_ids.unwrap_or_default() {
            // An exec that ended between the two calls is gone: not running.
            let Ok(exec) = self.docker.inspect_exec(&id).await else { continue };
            if exec.running != Some(true) {
                continue;
            }
            let config = exec.process_config.unwrap_or_default();
            let mut argv: Vec<String> = config.entrypoint.into_iter().collect();
            argv.extend(config.arguments.unwrap_or_default());
            out.push(argv);
        }
        Ok(out)
    }

    /// The `service` containers of other compose projects on the engine started from `file` (an
    /// absolute path, compared with the paths compose records on every container): (project,
    /// image id), sorted, one per pair.
    pub async fn projects_using(
        &self,
        file: &std::path::Path,
        service: &str,
        except: &str,
    ) -> Result<Vec<(String, String)>, EngineError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        // Label filters all hold (the engine ANDs them).
        filters.insert(
            "label".to_string(),
            vec![labels::CONFIG_FILES.to_string(), format!("{}={service}", labels::SERVICE)],
        );
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list =
            self.docker.list_containers(Some(options)).await.map_err(|e| Self::request_error("list containers", e))?;
        let wanted = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        let same = |dir: Option<&String>, f: &str| {
            let f = std::path::Path::new(f.trim());
            let f = match dir {
                Some(d) if f.is_relative() => std::path::Path::new(d).join(f),
                _ => f.to_path_buf(),
            };
            f == file || std::fs::canonicalize(&f).is_ok_and(|f| f == wanted)
        };
        let mut out: Vec<(String, String)> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels?;
                let project = labels.get(labels::PROJECT)?.clone();
                let files = labels.get(labels::CONFIG_FILES)?;
                let dir = labels.get(labels::WORKING_DIR);
                let image = c.image_id.clone().unwrap_or_default();
                (project != except && files.split(',').any(|f| same(dir, f))).then_some((project, image))
            })
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Whether the compose project has any volume on the engine (it was deployed before).
    pub async fn project_has_volumes(&self, project: &str) -> Result<bool, EngineError> {
        self.has_volumes_labelled(labels::PROJECT, project).await
    }

    /// Whether any volume carries `label=value`.
    pub async fn has_volumes_labelled(&self, label: &str, value: &str) -> Result<bool, EngineError> {
        let mut filters: HashMap<String, Vec<String>> = HashMap::new();
        filters.insert("label".to_string(), vec![format!("{label}={value}")]);
        let options = bollard::query_parameters::ListVolumesOptionsBuilder::default().filters(&filters).build();
        let list = self.docker.list_volumes(Some(options)).await.map_err(|e| Self::request_error("list volumes", e))?;
        Ok(list.volumes.is_some_and(|v| !v.is_empty()))
    }

    /// A local image, or `None` when the engine does not have it.
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(img) => Ok(Some(ImageInfo {
                id: img.id.unwrap_or_default(),
                repo_digests: img.repo_digests.unwrap_or_default(),
                labels: img.config.and_then(|c| c.labels).unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(Self::request_error(&format!("inspect image {reference}"), e)),
        }
    }

    /// Give the local image `source` the name `target` (`repo:tag`).
    pub async fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        let (repo, tag) = match target.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((r, t)) => (r, t),
            None => (target, "latest"),
        };
        let options = bollard::query_parameters::TagImageOptionsBuilder::default().repo(repo).tag(tag).build();
        self.docker
            .tag_image(source, Some(options))
            .await
            .map_err(|e| Self::request_error(&format!("tag {source} as {target}"), e))
    }

    /// Run `argv` in a container without a TTY (prompts hit EOF instead of hanging) and collect
    /// its output and exit code.
    pub async fn exec(&self, spec: &ExecSpec<'_>) -> Result<ExecOutput, EngineError> {
        let command = spec.argv.join(" ");
        let options = CreateExecOptions::<String> {
            cmd: Some(spec.argv.to_vec()),
            user: spec.user.map(str::to_string),
            working_dir: spec.workdir.map(str::to_string),
            env: (!spec.env.is_empty()).then(|| spec.env.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(spec.stdin.is_some()),
            tty: Some(false),
            ..Default::default()
        };
        let run = async {
            let created = self
                .docker
                .create_exec(spec.container, options)
                .await
                .map_err(|e| Self::request_error(&format!("exec in {}", spec.container), e))?;
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let StartExecResults::Attached { mut output, mut input } = self
                .docker
                .start_exec(&created.id, None)
                .await
                .map_err(|e| Self::request_error(&format!("start exec in {}", spec.container), e))?
            {
                if let Some(bytes) = spec.stdin {
                    use tokio::io::AsyncWriteExt;
                    input.write_all(bytes).await.map_err(|e| EngineError::Request {
                        what: "write exec input".to_string(),
                        detail: e.to_string(),
                    })?;
                    input.shutdown().await.map_err(|e| EngineError::Request {
                        what: "close exec input".to_string(),
                        detail: e.to_string(),
                    })?;
                }
                drop(input);
                let (mut pending_out, mut pending_err) = (Vec::new(), Vec::new());
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| Self::request_error("read exec output", e))? {
                        bollard::container::LogOutput::StdOut { message } => {
                            stream_lines(spec, &command, &mut pending_out, &message);
                            stdout.extend_from_slice(&message)
                        }
                        bollard::container::LogOutput::StdErr { message } => {
                            stream_lines(spec, &command, &mut pending_err, &message);
                            stderr.extend_from_slice(&message)
                        }
                        _ => {}
                    }
                }
                stream_lines(spec, &command, &mut pending_out, &[]);
                stream_lines(spec, &command, &mut pending_err, &[]);
            }
            let inspect =
                self.docker.inspect_exec(&created.id).await.map_err(|e| Self::request_error("inspect exec", e))?;
            Ok(ExecOutput {
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stdout_bytes: stdout,
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                exit_code: inspect.exit_code.unwrap_or(-1),
            })
        };
        match spec.timeout {
            None => run.await,
            Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                Err(EngineError::ExecTimeout {
                    container: spec.container.to_string(),
                    command,
                    seconds: limit.as_secs(),
                })
            }),
        }
    }

    /// Engine events between two times (Unix seconds), e.g. to count the execs an observation
    /// made: `exec_create` events carry the command.
    pub async fn events(
        &self,
        since: i64,
        until: i64,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<Event>, EngineError> {
        let options =
            EventsOptionsBuilder::new().since(&since.to_string()).until(&until.to_string()).filters(filters).build();
        let mut stream = self.docker.events(Some(options));
        let mut out = Vec::new();
        while let Some(ev) = stream.next().await {
            let ev = ev.map_err(|e| Self::request_error("read events", e))?;
            let actor = ev.actor.unwrap_or_default();
            out.push(Event {
                kind: ev.typ.map(|t| t.to_string()).unwrap_or_default(),
                action: ev.action.unwrap_or_default(),
                id: actor.id.unwrap_or_default(),
                attributes: actor.attributes.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The engine's clock, as Unix seconds (events are filtered by it).
    pub async fn now(&self) -> Result<i64, EngineError> {
        let info = self.docker.info().await.map_err(|e| Self::request_error("info", e))?;
        let text = info.system_time.unwrap_or_default();
        parse_rfc3339_seconds(&text).ok_or_else(|| EngineError::Request {
            what: "info".to_string(),
            detail: format!("unreadable engine time {text:?}"),
        })
    }
}

/// One engine event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: String,
    /// E.g. `exec_create: bench --site all list-apps --format json`.
    pub action: String,
    pub id: String,
    pub attributes: HashMap<String, String>,
}

/// Seconds since the epoch of an RFC 3339 time such as `2026-11-27T18:10:46.234011870Z`.
fn parse_rfc3339_seconds(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_lines_are_whole_even_when_frames_cut_them() {
        let mut pending = Vec::new();
        assert!(complete_lines(&mut pending, b"clone https://x:tok").is_empty());
        assert_eq!(
            complete_lines(&mut pending, b"en-123@h/a\n50%\r100%\rdone"),
            ["clone https://x:token-123@h/a", "50%", "100%"]
        );
        assert_eq!(complete_lines(&mut pending, b""), ["done"]);
        assert!(pending.is_empty());
    }

    #[test]
    fn engine_times_parse() {
        assert_eq!(parse_rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_seconds("2026-11-27T18:10:46.234011870Z"), Some(1_795_803_046));
        assert_eq!(parse_rfc3339_seconds("2026-11-27T19:10:46+01:00"), Some(1_795_803_046));
    }

    #[test]
    fn too_new_errors_name_the_maximum() {
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 400,
            message: "client version 1.53 is too new. Maximum supported API version is 1.41".to_string(),
        };
        assert_eq!(too_new_max(&e), Some(ClientVersion { major_version: 1, minor_version: 41 }));
    }
}

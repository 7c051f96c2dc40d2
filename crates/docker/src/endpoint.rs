//! Which engine to talk to, resolved the way the Docker CLI resolves it (docker/cli
//! `resolveContextName`): `DOCKER_HOST` (the "default" context, TLS from `DOCKER_TLS_VERIFY` /
//! `DOCKER_CERT_PATH`), else `DOCKER_CONTEXT`, else the Docker config file's `currentContext`, else
//! the local socket. A named context is read from the config folder's context store:
//! `contexts/meta/<sha256 of the name>/meta.json` (its `docker` endpoint's `Host` and
//! `SkipTLSVerify`) and `contexts/tls/<sha256 of the name>/docker/{ca,cert,key}.pem`.
//!
//! Reads only the files named above; the caller hands in the environment, so the resolution is
//! tested on values.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The engine's address when nothing names another.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Where the endpoint came from (what `status` prints next to it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `DOCKER_HOST`.
    DockerHost,
    /// The context named by `DOCKER_CONTEXT`.
    DockerContext(String),
    /// The Docker config file's `currentContext`.
    CurrentContext(String),
    /// Nothing named one: the local socket.
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::DockerHost => f.write_str("DOCKER_HOST"),
            Source::DockerContext(name) => write!(f, "context `{name}` (DOCKER_CONTEXT)"),
            Source::CurrentContext(name) => write!(f, "context `{name}` (currentContext in the Docker config file)"),
            Source::Default => f.write_str("default: nothing names another engine"),
        }
    }
}

/// Client certificates for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The folder holding `ca.pem`, `cert.pem` and `key.pem` (the files that exist are used).
    pub dir: PathBuf,
    /// Verify the server's certificate (`DOCKER_TLS_VERIFY`, or a context without `SkipTLSVerify`).
    pub verify: bool,
}

/// The engine to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `unix://…`, `tcp://host:port` or `ssh://[user@]host[:port]`.
    pub host: String,
    pub source: Source,
    pub tls: Option<Tls>,
}

/// Why no endpoint could be resolved. Each says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error(
        "the Docker context `{name}` ({named_by}) does not exist in {store}: create it with `docker context \
         create`, or name another"
    )]
    NoSuchContext { name: String, named_by: String, store: String },
    #[error("the Docker context `{name}` cannot be read ({path}: {detail}); recreate it with `docker context create`")]
    BadContext { name: String, path: String, detail: String },
    #[error(
        "the Docker config file {path} is not valid JSON ({detail}); fix it or set DOCKER_CONFIG to another folder"
    )]
    BadConfig { path: String, detail: String },
    #[error("{what} names `{host}`, which is no engine address (unix://, tcp:// or ssh://)")]
    BadHost { what: String, host: String },
}

/// The Docker config folder: `DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    match env("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => env("HOME").filter(|v| !v.is_empty()).map(|h| Path::new(&h).join(".docker")),
    }
}

/// Resolve the endpoint from the environment `env` and the Docker config folder `config`.
pub fn resolve(env: &dyn Fn(&str) -> Option<String>, config: Option<&Path>) -> Result<Endpoint, EndpointError> {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if let Some(host) = set("DOCKER_HOST") {
        check_host("DOCKER_HOST", &host)?;
        // As the Docker CLI: TLS with `DOCKER_TLS_VERIFY` (verified) or `DOCKER_TLS` (not);
        // `DOCKER_CERT_PATH` alone only says where the files are.
        let tls =
            set("DOCKER_TLS_VERIFY").map(|_| true).or_else(|| set("DOCKER_TLS").map(|_| false)).map(|verify| Tls {
                dir: set("DOCKER_CERT_PATH")
                    .map(PathBuf::from)
                    .or_else(|| config.map(Path::to_path_buf))
                    .unwrap_or_default(),
                verify,
            });
        return Ok(Endpoint { host, source: Source::DockerHost, tls });
    }
    let named = match set("DOCKER_CONTEXT") {
        Some(name) => Some(Source::DockerContext(name)),
        None => current_context(config)?.map(Source::CurrentContext),
    };
    let name = match &named {
        Some(Source::DockerContext(n) | Source::CurrentContext(n)) if n != "default" => n.clone(),
        _ => return Ok(Endpoint { host: DEFAULT_HOST.to_string(), source: Source::Default, tls: None }),
    };
    let source = named.unwrap_or(Source::Default);
    let store = config.map(|c| c.join("contexts")).unwrap_or_default();
    let id = hex(&Sha256::digest(name.as_bytes()));
    let meta_path = store.join("meta").join(&id).join("meta.json");
    let bytes = match std::fs::read(&meta_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EndpointError::NoSuchContext {
                name,
                named_by: match &source {
                    Source::DockerContext(_) => "DOCKER_CONTEXT".to_string(),
                    _ => "currentContext in the Docker config file".to_string(),
                },
                store: store.display().to_string(),
            });
        }
        Err(e) => {
            return Err(EndpointError::BadContext {
                name,
                path: meta_path.display().to_string(),
                detail: e.to_string(),
            });
        }
    };
    let bad = |detail: String| EndpointError::BadContext {
        name: name.clone(),
        path: meta_path.display().to_string(),
        detail,
    };
    let meta: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let docker = meta.get("Endpoints").and_then(|e| e.get("docker")).ok_or_else(|| bad("no docker endpoint".into()))?;
    let host = docker.get("Host").and_then(|h| h.as_str()).filter(|h| !h.is_empty()).unwrap_or(DEFAULT_HOST);
    check_host(&format!("context `{name}`"), host)?;
    let skip_verify = docker.get("SkipTLSVerify").and_then(serde_json::Value::as_bool).unwrap_or(false);
    let tls_dir = store.join("tls").join(&id).join("docker");
    let tls = (tls_dir.is_dir() || skip_verify).then_some(Tls { dir: tls_dir, verify: !skip_verify });
    Ok(Endpoint { host: host.to_string(), source, tls })
}

/// The config file's `currentContext`, if any.
fn current_context(config: Option<&Path>) -> Result<Option<String>, EndpointError> {
    let Some(path) = config.map(|c| c.join("config.json")) else { return Ok(None) };
    let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| EndpointError::BadConfig { path: path.display().to_string(), detail: e.to_string() })?;
    Ok(value.get("currentContext").and_then(|c| c.as_str()).filter(|c| !c.is_empty()).map(str::to_string))
}

fn check_host(what: &str, host: &str) -> Result<(), EndpointError> {
    let known = ["unix://", "tcp://", "ssh://", "npipe://", "http://", "https://"].iter().any(|p| host.starts_with(p));
    if known { Ok(()) } else { Err(EndpointError::BadHost { what: what.to_string(), host: host.to_string() }) }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    /// A context as `docker context create NAME --docker host=HOST` writes it.
    fn context(config: &Path, name: &str, host: &str, tls: bool) {
        let id = hex(&Sha256::digest(name.as_bytes()));
        let meta = config.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta).unwrap();
        let body = serde_json::json!({
            "Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}
        });
        std::fs::write(meta.join("meta.json"), body.to_string()).unwrap();
        if tls {
            let dir = config.join("contexts/tls").join(&id).join("docker");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("ca.pem"), "x").unwrap();
        }
    }

    #[test]
    fn the_engine_is_found_in_the_docker_cli_s_order() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path();
        context(config, "prod", "ssh://deploy@prod.example.com", false);
        context(config, "tls", "tcp://10.0.0.5:2376", true);
        std::fs::write(config.join("config.json"), r#"{"currentContext": "tls"}"#).unwrap();

        // DOCKER_HOST wins over everything, with its TLS variables.
        let e = resolve(
            &env(&[
                ("DOCKER_HOST", "tcp://h:2376"),
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CERT_PATH", "/c"),
                ("DOCKER_CONTEXT", "prod"),
            ]),
            Some(config),
        )
        .unwrap();
        assert_eq!((e.host.as_str(), &e.source), ("tcp://h:2376", &Source::DockerHost));
        assert_eq!(e.tls, Some(Tls { dir: "/c".into(), verify: true }));
        // Then DOCKER_CONTEXT, then currentContext.
        let e = resolve(&env(&[("DOCKER_CONTEXT", "prod")]), Some(config)).unwrap();
        assert_eq!(
            (e.host.as_str(), &e.source, &e.tls),
            ("ssh://deploy@prod.example.com", &Source::DockerContext("prod".into()), &None)
        );
        let e = resolve(&env(&[]), Some(config)).unwrap();
        assert_eq!(e.source, Source::CurrentContext("tls".into()));
        assert!(e.tls.as_ref().is_some_and(|t| t.verify && t.dir.ends_with("docker")));
        // The "default" context, or nothing at all: the local socket.
        assert_eq!(resolve(&env(&[("DOCKER_CONTEXT", "default")]), Some(config)).unwrap().host, DEFAULT_HOST);
        assert_eq!(resolve(&env(&[]), None).unwrap().source, Source::Default);
    }

    #[test]
    fn what_cannot_be_resolved_says_what_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = resolve(&env(&[("DOCKER_CONTEXT", "nope")]), Some(dir.path())).unwrap_err();
        assert!(
            missing.to_string().contains("does not exist") && missing.to_string().contains("DOCKER_CONTEXT"),
            "{missing}"
        );
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        assert!(matches!(resolve(&env(&[]), Some(dir.path())), Err(EndpointError::BadConfig { .. })));
        assert!(matches!(
            resolve(&env(&[("DOCKER_HOST", "prod.example.com")]), None),
            Err(EndpointError::BadHost { .. })
        ));
        assert_eq!(config_dir(&env(&[("HOME", "/root")])), Some(PathBuf::from("/root/.docker")));
        assert_eq!(config_dir(&env(&[("HOME", "/root"), ("DOCKER_CONFIG", "/etc/d")])), Some(PathBuf::from("/etc/d")));
    }
}

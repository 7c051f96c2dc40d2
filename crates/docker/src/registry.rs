//! Registries: does `repository:tag` exist, and with which digest?
//!
//! Asked through the engine's `/distribution/{name}/json`, which uses the engine's own network
//! and trust settings (so a registry the engine can push to answers the same way here) and needs
//! no HTTP client of ours. Credentials come from the Docker config file, as every Docker user
//! expects: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths` entries or a
//! credential helper (`credsStore`, `credHelpers`), run with an argv array.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bollard::auth::DockerCredentials;

use crate::engine::{Engine, EngineError};

/// What a registry says about a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagState {
    /// The tag exists; its manifest digest (`sha256:…`).
    Present {
        digest: String,
    },
    Absent,
}

/// Why a registry could not answer. Never carries credentials.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistryError {
    #[error("registry {registry} refused the credentials for {reference} ({detail})")]
    Unauthorized { registry: String, reference: String, detail: String },
    #[error("registry {registry} could not be reached for {reference}: {detail}")]
    Unreachable { registry: String, reference: String, detail: String },
    #[error("cannot read the Docker config file {path}: {detail}")]
    Config { path: String, detail: String },
    #[error("registry {registry} answered {reference} with an error: {detail}")]
    Other { registry: String, reference: String, detail: String },
}

/// The registry host of an image reference: `localhost:5000/a/b` → `localhost:5000`,
/// `acme/erpnext` → `docker.io`.
pub fn registry_host(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

/// The Docker config file benchform reads credentials from.
pub fn docker_config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(".docker").join("config.json"),
    }
}

/// Credentials for `registry` from the Docker config file at `path`, if it has any.
pub fn credentials_for(registry: &str, path: &std::path::Path) -> Result<Option<DockerCredentials>, RegistryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::Config { path: path.display().to_string(), detail: e.to_string() }),
    };
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| RegistryError::Config { path: path.display().to_string(), detail: e.to_string() })?;
    let keys: Vec<String> = if registry == "docker.io" {
        vec!["https://index.docker.io/v1/".to_string(), "docker.io".to_string(), "index.docker.io".to_string()]
    } else {
        vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
    };
    let helper = keys
        .iter()
        .find_map(|k| config.get("credHelpers").and_then(|h| h.get(k)).and_then(|v| v.as_str()))
        .or_else(|| config.get("credsStore").and_then(|v| v.as_str()));
    if let Some(auth) = keys.iter().find_map(|k| config.get("auths").and_then(|a| a.get(k))) {
        if let Some(encoded) = auth.get("auth").and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
            // The engine's distribution endpoint wants user and password, not the encoded pair.
            let decoded = base64_decode(encoded).and_then(|b| String::from_utf8(b).ok()).ok_or_else(|| {
                RegistryError::Config {
                    path: path.display().to_string(),
                    detail: format!("the `auth` entry for {registry} is not base64 of user:password"),
                }
            })?;
            let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
            return Ok(Some(DockerCredentials {
                username: Some(user.to_string()),
                password: Some(password.to_string()),
                serveraddress: Some(registry.to_string()),
                ..Default::default()
            }));
        }
        if let Some(token) = auth.get("identitytoken").and_then(|v| v.as_str()) {
            return Ok(Some(DockerCredentials {
                identitytoken: Some(token.to_string()),
                serveraddress: Some(registry.to_string()),
                ..Default::default()
            }));
        }
    }
    match helper {
        Some(helper) => from_helper(helper, registry, path),
        None => Ok(None),
    }
}

/// Standard base64 (padding optional).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim().bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = bits << 6 | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

fn from_helper(
    helper: &str,
    registry: &str,
    config: &std::path::Path,
) -> Result<Option<DockerCredentials>, RegistryError> {
    let program = format!("docker-credential-{helper}");
    let err = |detail: String| RegistryError::Config { path: config.display().to_string(), detail };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| err(format!("credential helper {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| err(format!("credential helper {program}: {e}")))?;
    if !out.status.success() {
        // Helpers exit non-zero with "credentials not found": no credentials, not an error.
        return Ok(None);
    }
    let v: HashMap<String, String> = serde_json::from_slice(&out.stdout)
        .map_err(|e| err(format!("credential helper {program} printed no credentials: {e}")))?;
    let username = v.get("Username").cloned().unwrap_or_default();
    let secret = v.get("Secret").cloned().unwrap_or_default();
    Ok(Some(if username == "<token>" {
        DockerCredentials {
            identitytoken: Some(secret),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        }
    } else {
        DockerCredentials {
            username: Some(username),
            password: Some(secret),
            serveraddress: Some(registry.to_string()),
            ..Default::default()
        }
    }))
}

impl Engine {
    /// Ask the registry (through the engine) whether `repository:tag` exists, with credentials
    /// from the user's Docker config file.
    pub async fn registry_tag(&self, reference: &str) -> Result<TagState, RegistryError> {
        self.registry_tag_using(reference, &docker_config_path()).await
    }

    /// The same, with credentials from the Docker config file at `config`.
    pub async fn registry_tag_using(
        &self,
        reference: &str,
        config: &std::path::Path,
    ) -> Result<TagState, RegistryError> {
        let registry = registry_host(reference);
        let credentials = credentials_for(&registry, config)?;
        match self.docker().inspect_registry_image(reference, credentials).await {
            Ok(d) => Ok(TagState::Present { digest: d.descriptor.digest.unwrap_or_default() }),
            Err(bollard::errors::Error::DockerResponseServerError { status_code, message }) => {
                classify(&registry, reference, status_code, &message)
            }
            Err(e) => Err(RegistryError::Unreachable {
                registry,
                reference: reference.to_string(),
                detail: EngineError::Request { what: "distribution".to_string(), detail: e.to_string() }.to_string(),
            }),
        }
    }
}

/// The engine wraps the registry's answer in its own; sort it into what an operator can act on.
fn classify(registry: &str, reference: &str, status: u16, message: &str) -> Result<TagState, RegistryError> {
    let lower = message.to_lowercase();
    let (registry, reference, detail) = (registry.to_string(), reference.to_string(), message.to_string());
    if lower.contains("manifest unknown") || lower.contains("not found") && !lower.contains("no such host") {
        return Ok(TagState::Absent);
    }
    if status == 401
        || lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
    {
        return Err(RegistryError::Unauthorized { registry, reference, detail });
    }
    if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("timeout")
        || lower.contains("i/o timeout")
    {
        return Err(RegistryError::Unreachable { registry, reference, detail });
    }
    if status == 404 {
        return Ok(TagState::Absent);
    }
    Err(RegistryError::Other { registry, reference, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(base64_decode("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
        assert!(base64_decode("!!").is_none());
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("localhost:5000/a"), "localhost:5000");
        assert_eq!(registry_host("127.0.0.1:5001/x/y:tag"), "127.0.0.1:5001");
        assert_eq!(registry_host("registry.example.com/acme/erpnext"), "registry.example.com");
        assert_eq!(registry_host("frappe/erpnext"), "docker.io");
    }
}

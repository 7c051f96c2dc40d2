//! Registries: does `repository:tag` exist, and with which digest?
//!
//! Asked through the engine's `/distribution/{name}/json`, which uses the engine's own network
//! and trust settings (so a registry the engine can push to answers the same way here) and needs
//! no HTTP client of ours. Credentials come from the Docker config file, as every Docker user
//! expects: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, `auths` entries or a
//! credential helper (`credsStore`, `credHelpers`), run with an argv array.

use std::path::PathBuf;

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

/// Credentials for `registry` from the Docker config file at `path`, if it has any, read by the
/// `docker_credential` crate: a credential helper (`credHelpers` for the registry, as the Docker
/// CLI prefers), an `auths` entry (identity token, `auth`, or user and password), then
/// `credsStore`. An entry with an empty `auth` counts as absent, as before.
pub fn credentials_for(registry: &str, path: &std::path::Path) -> Result<Option<DockerCredentials>, RegistryError> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    let config_error = |detail: String| RegistryError::Config { path: path.display().to_string(), detail };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(config_error(e.to_string())),
    };
    let mut config: serde_json::Value = serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?;
    if let Some(auths) = config.get_mut("auths").and_then(|a| a.as_object_mut()) {
        for entry in auths.values_mut().filter_map(|e| e.as_object_mut()) {
            if entry.get("auth").and_then(|a| a.as_str()) == Some("") {
                entry.remove("auth");
            }
        }
    }
    let config = config.to_string();
    // Docker Hub's helpers and entries use the v1 index URL; older entries say `docker.io`
    // (the crate normalises that form to the index host).
    let servers: &[&str] =
        if registry == "docker.io" { &["https://index.docker.io/v1/", "docker.io"] } else { &[registry] };
    let mut found = None;
    for server in servers {
        match docker_credential::get_credential_from_reader(config.as_bytes(), server) {
            Ok(c) => {
                found = Some(c);
                break;
            }
            // No entry, or a helper that exits non-zero ("credentials not found"): no credentials.
            Err(E::NoCredentialConfigured | E::HelperFailure { .. }) => {}
            Err(E::CredentialDecodingError) => {
                return Err(config_error(format!("the `auth` entry for {registry} is not base64 of user:password")));
            }
            // The other errors carry no credential (only a helper's failure output does, dropped above).
            Err(e) => return Err(config_error(e.to_string())),
        }
    }
    let serveraddress = Some(registry.to_string());
    // The engine's distribution endpoint wants user and password, not the encoded pair.
    Ok(found.map(|c| match c {
        DockerCredential::UsernamePassword(user, password) => {
            DockerCredentials { username: Some(user), password: Some(password), serveraddress, ..Default::default() }
        }
        DockerCredential::IdentityToken(token) => {
            DockerCredentials { identitytoken: Some(token), serveraddress, ..Default::default() }
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
    use std::io::Write;

    fn config(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn credentials_come_from_auths_entries() {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode("user:pa:ss");
        let f = config(&format!(
            r#"{{"auths": {{"http://127.0.0.1:5001": {{"auth": "{auth}"}}, "https://index.docker.io/v1/": {{"identitytoken": "tok"}}}}}}"#
        ));
        let c = credentials_for("127.0.0.1:5001", f.path()).unwrap().unwrap();
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("user"), Some("pa:ss")));
        assert_eq!(credentials_for("docker.io", f.path()).unwrap().unwrap().identitytoken.as_deref(), Some("tok"));
        assert_eq!(credentials_for("other:5000", f.path()).unwrap(), None);
        assert_eq!(credentials_for("x", std::path::Path::new("/nonexistent/config.json")).unwrap(), None);
        let bad = config(r#"{"auths": {"r:1": {"auth": "!!"}}}"#);
        assert!(matches!(credentials_for("r:1", bad.path()), Err(RegistryError::Config { .. })));
        let empty = config(r#"{"auths": {"r:1": {"auth": ""}}}"#);
        assert_eq!(credentials_for("r:1", empty.path()).unwrap(), None, "an empty auth is no credential");
        let hub = config(&format!(r#"{{"auths": {{"docker.io": {{"auth": "{auth}"}}}}}}"#));
        assert_eq!(credentials_for("docker.io", hub.path()).unwrap().unwrap().username.as_deref(), Some("user"));
        let missing_helper = config(r#"{"credsStore": "benchform-none-such"}"#);
        assert!(credentials_for("r:1", missing_helper.path()).is_err(), "a helper that cannot run is an error");
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("localhost:5000/a"), "localhost:5000");
        assert_eq!(registry_host("127.0.0.1:5001/x/y:tag"), "127.0.0.1:5001");
        assert_eq!(registry_host("registry.example.com/acme/erpnext"), "registry.example.com");
        assert_eq!(registry_host("frappe/erpnext"), "docker.io");
    }
}

//! The secrets a run handles: repository tokens and site passwords from the variables the
//! manifest names, their redaction, and the in-memory file that hands the app list to BuildKit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use benchform_manifest::mask::Masker;

use super::*;

impl Applier<'_> {
    /// Tokens of the apps' repositories, from the variables the manifest names.
    pub(super) fn tokens(&self) -> BTreeMap<String, (String, String)> {
        self.p
            .manifest
            .apps
            .iter()
            .filter_map(|a| {
                let token = env_secret(a.token_env.as_deref())?;
                Some((a.name.clone(), (a.token_user().to_string(), token)))
            })
            .collect()
    }

    /// Every secret value this run can handle (tokens, site passwords), for redaction: read from
    /// the environment once, on first use.
    pub fn masker(&self) -> &Masker {
        self.masker.get_or_init(|| {
            let deploy = &self.p.manifest.deploy;
            let passwords = [&deploy.db_root_password_env, &deploy.admin_password_env]
                .into_iter()
                .filter_map(|v| env_secret(v.as_deref()));
            Masker::new(self.tokens().into_values().map(|(_, t)| t).chain(passwords))
        })
    }

    /// `text` with every secret value replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.masker().mask(text)
    }

    /// The database root and Administrator passwords, from the variables the manifest names.
    pub(super) fn site_passwords(&self, what: &str) -> Result<(String, String), StepError> {
        let deploy = &self.p.manifest.deploy;
        let secret = |var: &Option<String>, field: &str| -> Result<String, StepError> {
            let var = var.as_deref().ok_or_else(|| {
                err(
                    format!("creating {what} needs the {field}"),
                    format!("name the variable that holds it in deploy.{field}_env"),
                )
            })?;
            env_secret(Some(var)).ok_or_else(|| {
                err(format!("{var} is not set (creating {what} needs it)"), format!("export the {field} in {var}"))
            })
        };
        Ok((
            secret(&deploy.db_root_password_env, "db_root_password")?,
            secret(&deploy.admin_password_env, "admin_password")?,
        ))
    }
}

/// The value of the environment variable the manifest names for a secret, if it is set and not
/// empty.
pub(super) fn env_secret(var: Option<&str>) -> Option<String> {
    std::env::var(var?).ok().filter(|v| !v.is_empty())
}

/// A secret held in an anonymous in-memory file (`memfd_create`): it has no name on any file
/// system and goes with this process, however it ends (SIGKILL included). Other processes of
/// the same user (the Docker CLI) open it as `/proc/<pid>/fd/<n>`; each open reads it from the
/// start, as BuildKit's secret provider does on every request.
pub(super) struct SecretFile {
    file: std::fs::File,
}

impl SecretFile {
    pub(super) fn new(bytes: &[u8]) -> std::io::Result<SecretFile> {
        use std::io::Write;
        let fd = rustix::fs::memfd_create("benchform-secret", rustix::fs::MemfdFlags::CLOEXEC)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)?;
        Ok(SecretFile { file })
    }

    pub(super) fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.file.as_raw_fd()))
    }
}

//! The secrets a run handles: repository tokens and site passwords from the variables the
//! manifest names, their redaction, and the in-memory file that hands the app list to BuildKit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use benchform_manifest::mask::Masker;

use super::*;

impl Applier<'_> {
    /// A secret the manifest names by variable (see [`lookup_secret`]).
    pub(super) fn secret(&self, var: Option<&str>) -> Option<String> {
        lookup_secret(var, &self.p.env_file, &self.p.paths.compose_dir)
    }

    /// Tokens of the apps' repositories, from the variables the manifest names.
    pub(super) fn tokens(&self) -> BTreeMap<String, (String, String)> {
        self.p
            .manifest
            .apps
            .iter()
            .filter_map(|a| {
                let token = self.secret(a.token_env.as_deref())?;
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
                .filter_map(|v| self.secret(v.as_deref()));
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
            self.secret(Some(var)).ok_or_else(|| {
                err(format!("{var} is not set (creating {what} needs it)"), format!("export the {field} in {var}"))
            })
        };
        Ok((
            secret(&deploy.db_root_password_env, "db_root_password")?,
            secret(&deploy.admin_password_env, "admin_password")?,
        ))
    }
}

/// The value of a secret the manifest names by variable, looked up the way compose reads its
/// variables: the environment first, then the compose env file (`deploy.compose.env_file`, as
/// frappe_docker keeps `DB_PASSWORD`); in either, `VAR_FILE` or frappe_docker's
/// `VAR_SECRETS_FILE` may name a file holding it instead (relative to the compose folder, one
/// trailing newline dropped) — and when one does, it wins over `VAR` itself: frappe_docker's
/// secrets override makes MariaDB read the file, whatever `DB_PASSWORD` (upstream's example.env
/// keeps `123`) still says. Empty values count as unset.
pub(crate) fn lookup_secret(var: Option<&str>, env_file: &EnvFile, compose_dir: &Path) -> Option<String> {
    let var = var?;
    let file_vars = [var.to_string(), format!("{var}_FILE"), format!("{var}_SECRETS_FILE")];
    let value = |name: &str| {
        std::env::var(name).ok().filter(|v| !v.is_empty()).or_else(|| {
            benchform_core::envfile::get(&env_file.vars, name).filter(|v| !v.is_empty()).map(str::to_string)
        })
    };
    let from_file = file_vars[1..].iter().find_map(|name| {
        let path = compose_dir.join(value(name)?);
        let text = std::fs::read_to_string(path).ok()?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        (!text.is_empty()).then(|| text.to_string())
    });
    from_file.or_else(|| value(&file_vars[0]))
}

/// The compose env file (`deploy.compose.env_file`), read once per command: its variables, or
/// why it cannot be read for secrets (it exists but is not an env file compose would take), by
/// line number — never its text. No env file, or none on disk, has no variables.
#[derive(Default)]
pub struct EnvFile {
    vars: Vec<(String, String)>,
    problem: Option<String>,
}

/// Keys only: the values may be passwords.
impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFile")
            .field("keys", &self.vars.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>())
            .field("problem", &self.problem)
            .finish()
    }
}

impl EnvFile {
    pub fn read(paths: &observe::Paths) -> EnvFile {
        let Some(file) = &paths.env_file else { return EnvFile::default() };
        let Ok(text) = std::fs::read_to_string(file) else { return EnvFile::default() };
        match benchform_core::envfile::parse(&text, &|k| std::env::var(k).ok()) {
            Ok(vars) => EnvFile { vars, problem: None },
            Err(e) => EnvFile {
                vars: Vec::new(),
                problem: Some(format!("the compose env file {} cannot be read for secrets: {e}", file.display())),
            },
        }
    }
}

/// The secrets a plan's steps need that cannot be found, each as (what, how to fix): tokens for a
/// build, both site passwords for a new site, the database root password to restore a failed
/// migrate. `plan` warns with them (pull-request CI has no production secrets); apply stops.
pub(crate) fn missing_secrets(plan: &benchform_core::plan::Plan, p: &Prepared) -> Vec<(String, String)> {
    use benchform_manifest::model::OnMigrateFailure;
    let deploy = &p.manifest.deploy;
    let found = |var: Option<&str>| lookup_secret(var, &p.env_file, &p.paths.compose_dir).is_some();
    let fix = || "fix that line (compose reads the file by the same rules)".to_string();
    let mut out: Vec<(String, String)> = p.env_file.problem.iter().map(|what| (what.clone(), fix())).collect();
    if plan.steps.iter().any(|s| s.kind == StepKind::Build) {
        for a in p.manifest.apps.iter().filter(|a| a.token_env.is_some() && !found(a.token_env.as_deref())) {
            let var = a.token_env.as_deref().unwrap_or_default();
            out.push((
                format!("the build clones {} with the token in {var}, which is not set", a.name),
                format!("export the repository token in {var}"),
            ));
        }
    }
    if plan.steps.iter().any(|s| s.kind == StepKind::NewSite) {
        for (var, field) in
            [(&deploy.db_root_password_env, "db_root_password"), (&deploy.admin_password_env, "admin_password")]
        {
            match var.as_deref() {
                None => out.push((
                    format!("creating a new site needs the {field}"),
                    format!("name the variable that holds it in deploy.{field}_env"),
                )),
                Some(v) if !found(Some(v)) => out.push((
                    format!("{v} is not set (creating a new site needs it)"),
                    format!("export the {field} in {v}, or put it in the compose env file"),
                )),
                Some(_) => {}
            }
        }
    }
    // A failed migrate of an existing site is restored, and `bench restore` needs the database
    // root password: better to know before than after the failure.
    let existing = plan.steps.iter().find(|s| {
        s.kind == StepKind::Migrate && !plan.steps.iter().any(|n| n.kind == StepKind::NewSite && n.site == s.site)
    });
    if let Some(step) = existing
        && p.manifest.policy.on_migrate_failure == OnMigrateFailure::Restore
        && !found(deploy.db_root_password_env.as_deref())
    {
        let site = step.site.as_deref().unwrap_or_default();
        out.push((
            format!(
                "{site} will migrate, and restoring it after a failed migrate needs the database root password, \
                 which is not available"
            ),
            match deploy.db_root_password_env.as_deref() {
                Some(v) => format!(
                    "export it in {v} (or put it in the compose env file), or set policy.on_migrate_failure: stop"
                ),
                None => "name its variable in deploy.db_root_password_env and export it, or set \
                         policy.on_migrate_failure: stop"
                    .to_string(),
            },
        ));
    }
    out
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

#[cfg(test)]
mod lookup_tests {
    use super::*;

    fn paths(dir: &std::path::Path, env_file: Option<&str>) -> observe::Paths {
        observe::Paths {
            context: dir.to_path_buf(),
            containerfile: dir.join("Containerfile"),
            compose_dir: dir.to_path_buf(),
            compose_files: vec![dir.join("compose.yaml")],
            env_file: env_file.map(|f| dir.join(f)),
            backups: dir.join("backups"),
        }
    }

    #[test]
    fn secrets_are_found_where_compose_finds_its_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("production.env"),
            "BF_LOOKUP_A=from-the-env-file\nBF_LOOKUP_B=123\nBF_LOOKUP_B_SECRETS_FILE=secrets/db.txt\nBF_LOOKUP_C_FILE=c.txt\nBF_LOOKUP_E=\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/db.txt"), "from-a-secrets-file\n").unwrap();
        std::fs::write(dir.path().join("c.txt"), "from-a-file").unwrap();
        let env = EnvFile::read(&paths(dir.path(), Some("production.env")));
        let lookup = |var: Option<&str>, env: &EnvFile| lookup_secret(var, env, dir.path());
        assert_eq!(lookup(Some("BF_LOOKUP_A"), &env).as_deref(), Some("from-the-env-file"));
        assert_eq!(lookup(Some("BF_LOOKUP_B"), &env).as_deref(), Some("from-a-secrets-file"), "the file wins");
        assert_eq!(lookup(Some("BF_LOOKUP_C"), &env).as_deref(), Some("from-a-file"));
        assert_eq!(lookup(Some("BF_LOOKUP_E"), &env), None, "empty is unset");
        assert_eq!(lookup(Some("BF_LOOKUP_MISSING"), &env), None);
        assert_eq!(lookup(None, &env), None);
        // The process environment comes first (PATH stands in for any variable that is set).
        assert_eq!(lookup(Some("PATH"), &env), std::env::var("PATH").ok());
        let none = EnvFile::read(&paths(dir.path(), None));
        assert_eq!(lookup(Some("BF_LOOKUP_A"), &none), None, "no env file, no value");
    }
}

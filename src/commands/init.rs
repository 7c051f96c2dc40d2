//! `benchform init --from-apps-json apps.json [--env-file production.env]`: draft a manifest from
//! what frappe_docker's custom-image runbook already has. Every guess is marked `# TODO` in the
//! draft; nothing secret is copied (credentials in URLs become a `token_env`, env-file values
//! other than the few it reads are ignored). The draft is validated before it is written, and an
//! existing file is never overwritten without `--force`.

use std::path::{Component, Path, PathBuf};

use benchform_manifest::{Code, Severity, names};

use crate::Status;
use crate::cli::InitArgs;
use crate::shell::Shell;

/// frappe_docker's usual compose files for a single-server deployment.
const DEFAULT_COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "overrides/compose.mariadb.yaml",
    "overrides/compose.redis.yaml",
    "overrides/compose.noproxy.yaml",
];

/// One app of the draft.
#[derive(Debug)]
struct DraftApp {
    name: String,
    repo: String,
    git_ref: String,
    token_env: Option<String>,
    /// The user name the URL carried with a token (`oauth2` for GitLab).
    token_user: Option<String>,
}

pub fn run(shell: &Shell, args: &InitArgs) -> Status {
    match draft(shell, args) {
        Ok(status) => status,
        Err(r) => {
            shell.error(&r.what, &r.fix);
            shell.err_line("Nothing was written.");
            Status::Failure
        }
    }
}

/// Why `init` wrote nothing, and how to fix it.
#[derive(Debug)]
struct Refusal {
    what: String,
    fix: String,
}

fn refuse(what: String, fix: &str) -> Refusal {
    Refusal { what, fix: fix.to_string() }
}

/// A file that cannot be read or resolved: the message names it.
impl From<String> for Refusal {
    fn from(what: String) -> Refusal {
        refuse(what, "check the file named, then run `benchform init` again")
    }
}

fn draft(shell: &Shell, args: &InitArgs) -> Result<Status, Refusal> {
    let target = args.file.clone().unwrap_or_else(|| PathBuf::from(crate::load::DEFAULT_MANIFEST));
    if target.exists() && !args.force {
        return Err(refuse(
            format!("{} exists", target.display()),
            "pass --force to replace it, or -f OTHER.yaml to draft next to it",
        ));
    }
    let apps_json = &args.from_apps_json;
    let text = std::fs::read_to_string(apps_json).map_err(|e| format!("cannot read {}: {e}", apps_json.display()))?;
    let (apps, frappe_entry, notes) = read_apps_json(&apps_json.display().to_string(), &text)?;
    let env = match &args.env_file {
        Some(path) => read_env_file(path)?,
        None => Vec::new(),
    };
    let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());

    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    // The project must be the `-p` (or COMPOSE_PROJECT_NAME) the deployment runs under: another
    // name is another stack. Only --project and the env file say it for sure.
    let (project, project_guessed) = match (&args.project, get("COMPOSE_PROJECT_NAME")) {
        (Some(p), _) => (p.clone(), false),
        (None, Some(p)) => (p.to_string(), false),
        (None, None) => {
            // Compose's own default: the name of the folder holding the compose files (the
            // frappe_docker checkout), normalised.
            let compose_dir = dir.join(&args.context);
            let here = std::path::absolute(&compose_dir)
                .map_err(|e| format!("cannot resolve {}: {e}", compose_dir.display()))?;
            let here = here.canonicalize().unwrap_or(here);
            let folder = here.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
            (names::suggest_project_name(&folder).unwrap_or_else(|| "erp".to_string()), true)
        }
    };
    if !names::is_project_name(&project) {
        return Err(refuse(
            format!("`{project}` cannot be a compose project name"),
            "pass --project with lowercase letters, digits, `-` and `_`",
        ));
    }

    let mut y = String::new();
    y.push_str("# Drafted by `benchform init`: check every line marked TODO, then run\n");
    y.push_str("#   benchform validate && benchform lock\n");
    y.push_str("version: 1\n");
    if project_guessed {
        y.push_str(&format!(
            "project: {project}  # TODO: the -p of your `docker compose` commands (`docker compose ls` lists them); \
             another name is another, empty stack\n"
        ));
    } else {
        y.push_str(&format!("project: {project}\n"));
    }
    y.push_str("frappe:\n");
    let default_repo = || "https://github.com/frappe/frappe".to_string();
    // Where the ref comes from, when it is a guess.
    let (frappe_repo, frappe_ref, guessed) = match (&frappe_entry, &args.frappe_ref, get("ERPNEXT_VERSION")) {
        (Some((url, _)), Some(r), _) => (url.clone(), r.clone(), None),
        (None, Some(r), _) => (default_repo(), r.clone(), None),
        (Some((url, branch)), None, _) => (url.clone(), branch.clone(), None),
        (None, None, Some(v)) => (
            default_repo(),
            v.to_string(),
            Some("guessed from ERPNEXT_VERSION in the env file; pin the frappe release your image has"),
        ),
        (None, None, None) => (
            default_repo(),
            "version-16".to_string(),
            Some("the FRAPPE_BRANCH you build with; pin a tag (lock suggests the newest)"),
        ),
    };
    y.push_str(&format!("  repo: {}\n", quoted(&frappe_repo)));
    match guessed {
        Some(why) => y.push_str(&format!("  ref: {}  # TODO: {why}\n", quoted(&frappe_ref))),
        None => y.push_str(&format!("  ref: {}{}\n", quoted(&frappe_ref), branch_note(&frappe_ref))),
    }
    y.push_str("apps:  # build and install order: prerequisites first\n");
    if apps.is_empty() {
        y.truncate(y.len() - "  # build and install order: prerequisites first\n".len());
        y.push_str(" []\n");
    }
    for a in &apps {
        // The Python module name can differ from the repository's (india-compliance → india_compliance).
        y.push_str(&format!("  - name: {}  # TODO: the app's Python module name (guessed from the URL)\n", a.name));
        y.push_str(&format!("    repo: {}\n", quoted(&a.repo)));
        y.push_str(&format!("    ref: {}{}\n", quoted(&a.git_ref), branch_note(&a.git_ref)));
        if let Some(var) = &a.token_env {
            y.push_str(&format!("    token_env: {var}  # export the token in {var}; it was removed from the URL\n"));
        }
        if let Some(user) = &a.token_user {
            y.push_str(&format!("    token_user: {}\n", quoted(user)));
        }
    }
    y.push_str("image:\n");
    match get("CUSTOM_IMAGE") {
        Some(image) => y.push_str(&format!("  repository: {}\n", quoted(image))),
        None => y.push_str(&format!(
            "  repository: registry.example.com/{project}/erpnext  # TODO: your registry (CUSTOM_IMAGE)\n"
        )),
    }
    y.push_str("  containerfile: images/layered/Containerfile\n");
    // The layered Containerfile starts FROM frappe/build:${FRAPPE_BRANCH}: a tag-pinned frappe
    // needs the base images of its branch.
    if let Some(major) = release_major(&frappe_ref) {
        y.push_str(&format!(
            "  base_tag: version-{major}  # frappe_docker's base images of frappe {frappe_ref}'s branch (docs/manifest.md)\n"
        ));
    }
    y.push_str(&format!("  context: {}  # your frappe_docker checkout\n", quoted(&args.context.display().to_string())));
    y.push_str("deploy:\n  compose:\n    files:  # TODO: the -f files of your `docker compose` command, in order\n");
    for f in DEFAULT_COMPOSE_FILES {
        y.push_str(&format!("      - {f}\n"));
    }
    if let Some(env_file) = &args.env_file {
        let compose_dir = dir.join(&args.context);
        let relative = relative_to(env_file, &compose_dir)?;
        y.push_str(&format!("    env_file: {}\n", quoted(&relative.display().to_string())));
    }
    if get("DB_PASSWORD").is_some() || env.iter().any(|(k, _)| k == "DB_PASSWORD_SECRETS_FILE") {
        // compose.mariadb.yaml makes DB_PASSWORD the root password; benchform reads it where compose does.
        y.push_str(
            "  db_root_password_env: DB_PASSWORD  # read from the environment, else the env file (as compose does)\n",
        );
    } else {
        y.push_str("  db_root_password_env: DB_ROOT_PASSWORD  # to create sites and to restore a failed migrate\n");
    }
    y.push_str("  admin_password_env: ADMIN_PASSWORD\n");
    let sites = sites_from_env(get("SITES"), get("SITES_RULE"), get("FRAPPE_SITE_NAME_HEADER"));
    if sites.is_empty() {
        y.push_str("sites: []  # TODO: your sites, each with its apps\n");
    } else {
        let all: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        y.push_str("sites:  # TODO: each site's apps (every app is listed on every site)\n");
        for s in &sites {
            y.push_str(&format!("  - name: {}\n    apps: [{}]\n", quoted(s), all.join(", ")));
        }
    }
    y.push_str("backups:\n  dir: backups\n  keep: 5\n");
    y.push_str("policy:\n  immutable_refs: true\n  allow_uninstall: false\n  on_migrate_failure: restore\n");

    let display = target.display().to_string();
    let mut validation = benchform_manifest::validate(&display, y.as_bytes());
    validation.check_paths(&dir, |p| p.exists());
    let blocking: Vec<_> = validation
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error && d.code != Code::MissingPath)
        .cloned()
        .collect();
    if !blocking.is_empty() {
        shell.err(&crate::render::diagnostics_text(&display, &blocking));
        return Err(refuse(
            "the draft would not be a valid manifest (above)".to_string(),
            "fix the inputs named there, then run `benchform init` again",
        ));
    }
    std::fs::write(&target, &y).map_err(|e| format!("cannot write {display}: {e}"))?;
    shell.line(&format!("Drafted {display} ({} app(s), {} site(s)).", apps.len(), sites.len()));
    for note in &notes {
        shell.line(&format!("  - {note}"));
    }
    for d in validation.diagnostics.iter().filter(|d| d.code == Code::MissingPath) {
        shell.line(&format!("  - to fix: {}", d.message));
    }
    let todos = y.lines().filter(|l| l.contains("# TODO")).count();
    shell
        .line(&format!("Next: check the {todos} line(s) marked TODO, then `benchform validate` and `benchform lock`."));
    Ok(Status::Success)
}

/// A TODO for a ref that looks like a branch (`version-15`, `develop`): `policy.immutable_refs`
/// (on in the draft) wants tags, and `lock` names the newest tag on the branch.
fn branch_note(git_ref: &str) -> &'static str {
    if release_major(git_ref).is_some() {
        ""
    } else {
        "  # TODO: a branch? policy.immutable_refs wants a tag (`benchform lock` suggests one)"
    }
}

/// The major version of a release tag (`v15.88.1`, `15.2.0` → 15), `None` for anything else.
fn release_major(git_ref: &str) -> Option<u32> {
    let bare = git_ref.strip_prefix('v').unwrap_or(git_ref);
    let mut parts = bare.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?;
    (!minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())).then_some(major)
}

/// The apps of frappe_docker's `apps.json` (`[{"url": …, "branch": …}]`), frappe's entry if it
/// has one (it should not: frappe comes from FRAPPE_PATH), and notes for the operator.
#[allow(clippy::type_complexity)]
fn read_apps_json(file: &str, text: &str) -> Result<(Vec<DraftApp>, Option<(String, String)>, Vec<String>), Refusal> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{file}:{}:{}: not JSON: {e}", e.line(), e.column()))?;
    let entries =
        value.as_array().ok_or_else(|| format!("{file}: expected a list of {{\"url\": …, \"branch\": …}} entries"))?;
    const ENTRY: &str = "each entry is {\"url\": …, \"branch\": …}";
    let mut apps: Vec<DraftApp> = Vec::new();
    let mut frappe = None;
    let mut notes = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = |key: &str| {
            entry
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| refuse(format!("{file}: entry {} has no text `{key}`", i + 1), ENTRY))
        };
        let (url, branch) = (field("url")?, field("branch")?);
        if url.starts_with("git@") || url.starts_with("ssh://") {
            return Err(refuse(
                format!("{file}: entry {} uses SSH ({})", i + 1, names::redact_url_credentials(&url)),
                "frappe_docker's build clones over https only: use the https URL and a token",
            ));
        }
        let (repo, credentials) = strip_credentials(&url)
            .map_err(|r| Refusal { what: format!("{file}: entry {}: {}", i + 1, r.what), ..r })?;
        let guessed = repo.trim_end_matches('/').rsplit('/').next().unwrap_or_default().trim_end_matches(".git");
        let name = guessed.to_lowercase().replace(['-', '.'], "_");
        if name == "frappe" {
            notes.push(format!("entry {} is frappe itself: used for frappe.repo and frappe.ref", i + 1));
            if credentials.is_some() {
                notes.push(
                    "frappe's URL carried credentials, removed: frappe's URL is a build argument kept in the \
                     image's history, so it must be reachable without a token"
                        .to_string(),
                );
            }
            frappe = Some((repo, branch));
            continue;
        }
        if !names::is_identifier(&name) {
            return Err(refuse(
                format!("{file}: entry {}: cannot guess an app name from {repo}", i + 1),
                "check the URL ends with the repository's name",
            ));
        }
        if apps.iter().any(|a| a.name == name) {
            return Err(refuse(format!("{file}: entry {}: {name} is listed twice", i + 1), "keep one entry per app"));
        }
        let token_env = credentials.is_some().then(|| format!("{}_TOKEN", name.to_uppercase()));
        // `https://user:token@…`: keep the user (GitLab needs `oauth2`); `https://token@…` is a
        // token as user name, which the default user handles.
        let token_user = credentials.flatten().filter(|u| u != "x-access-token");
        if let Some(var) = &token_env {
            notes.push(format!("{name}: credentials removed from its URL; export the token in {var}"));
        }
        apps.push(DraftApp { name, repo, git_ref: branch, token_env, token_user });
    }
    Ok((apps, frappe, notes))
}

/// `https://user:token@host/path` → (`https://host/path`, `Some(Some("user"))`);
/// `https://token@host/path` → (…, `Some(None)`); no credentials → (`url`, `None`).
fn strip_credentials(text: &str) -> Result<(String, Option<Option<String>>), Refusal> {
    // A URL that does not parse is refused, shown with any credentials masked.
    let Ok(mut url) = url::Url::parse(text) else {
        return Err(refuse(
            format!("`{}` is not a URL", names::redact_url_credentials(text)),
            "write each entry's url as https://host/org/repo",
        ));
    };
    if url.username().is_empty() && url.password().is_none() {
        return Ok((text.to_string(), None));
    }
    // With a password, the user part names the token's user (GitLab's `oauth2`); alone, it is
    // the token itself.
    let user = url.password().is_some().then(|| url.username().to_string()).filter(|u| !u.is_empty());
    // Neither fails here: a URL with a user part has a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url.to_string(), Some(user)))
}

/// `KEY=VALUE` lines of a compose env file (comments, blanks, `export ` and quotes as dotenv
/// files have them).
fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // As compose reads it; the error names the line, never its text (env files hold passwords).
    benchform_core::envfile::parse(&text, &|k| std::env::var(k).ok()).map_err(|e| format!("{}: {e}", path.display()))
}

/// Site names from frappe_docker's `SITES` (`` `a.example.com`,`b.example.com` ``), Traefik v3's
/// `SITES_RULE` (``Host(`a.example.com`) || Host(`b.example.com`)``) or a fixed
/// `FRAPPE_SITE_NAME_HEADER`.
fn sites_from_env(sites: Option<&str>, rule: Option<&str>, header: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let from_rule = rule.unwrap_or_default().split('`').skip(1).step_by(2);
    for s in sites.unwrap_or_default().split(',').chain(from_rule) {
        let s = s.trim().trim_matches('`').trim();
        if !s.is_empty() && names::site_name_problem(s).is_none() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    if let Some(h) = header.filter(|h| !h.starts_with('$') && names::site_name_problem(h).is_none())
        && !out.iter().any(|o| o == h)
    {
        out.push(h.to_string());
    }
    out
}

/// `path` relative to `base` (both made absolute, `..` resolved lexically).
fn relative_to(path: &Path, base: &Path) -> Result<PathBuf, String> {
    let parts = |p: &Path| -> Result<Vec<std::ffi::OsString>, String> {
        let abs = std::path::absolute(p).map_err(|e| format!("cannot resolve {}: {e}", p.display()))?;
        let mut out = Vec::new();
        for c in abs.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(s) => out.push(s.to_os_string()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        Ok(out)
    };
    let (p, b) = (parts(path)?, parts(base)?);
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..b.len() {
        rel.push("..");
    }
    for c in &p[common..] {
        rel.push(c);
    }
    Ok(rel)
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_urls() {
        assert_eq!(
            strip_credentials("https://oauth2:t0k@git.example.com/a/b.git").unwrap(),
            ("https://git.example.com/a/b.git".into(), Some(Some("oauth2".into())))
        );
        assert_eq!(
            strip_credentials("https://t0k@github.com/a/b").unwrap(),
            ("https://github.com/a/b".into(), Some(None))
        );
        assert_eq!(
            strip_credentials("https://github.com/frappe/hrms").unwrap(),
            ("https://github.com/frappe/hrms".into(), None)
        );
        // Not a URL (a port that is no number): refused, the token masked.
        let r = strip_credentials("https://u:glpat-secret-x@host:group/app").unwrap_err();
        assert!(!r.what.contains("glpat-secret-x"), "{}", r.what);
    }

    #[test]
    fn sites_come_from_sites_the_traefik_rule_or_the_header() {
        let both = sites_from_env(Some("`a.example.com`,`b.example.com`"), None, None);
        assert_eq!(both, ["a.example.com", "b.example.com"]);
        let rule = sites_from_env(None, Some("Host(`a.example.com`) || Host(`c.example.com`)"), None);
        assert_eq!(rule, ["a.example.com", "c.example.com"]);
        assert_eq!(sites_from_env(None, None, Some("erp.example.com")), ["erp.example.com"]);
        assert!(sites_from_env(None, None, Some("$$host")).is_empty());
    }

    #[test]
    fn env_files_read_like_compose_reads_them() {
        let upstream = [
            std::env::var_os("BENCHFORM_FRAPPE_DOCKER").map(PathBuf::from),
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/frappe_docker")),
            Some(PathBuf::from("/work/shared/frappe_docker")),
        ]
        .into_iter()
        .flatten()
        .map(|d| d.join("example.env"))
        .find(|f| f.is_file())
        .expect("upstream frappe_docker's example.env (set BENCHFORM_FRAPPE_DOCKER)");
        let pairs = read_env_file(&upstream).unwrap();
        assert!(pairs.contains(&("SITES_RULE".into(), "Host(`erp.example.com`)".into())), "{pairs:?}");
        assert!(pairs.contains(&("FRAPPE_SITE_NAME_HEADER".into(), String::new())), "{pairs:?}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.env");
        std::fs::write(&file, "# c\nexport A=\"x y\"\nB='z'\nC=plain # comment\n").unwrap();
        let pairs = read_env_file(&file).unwrap();
        assert_eq!(pairs, [("A".into(), "x y".into()), ("B".into(), "z".into()), ("C".into(), "plain".into())]);
        std::fs::write(&file, "A=1\nnot a pair\n").unwrap();
        let e = read_env_file(&file).unwrap_err();
        assert!(e.contains("x.env") && e.contains("line 2") && !e.contains("not a pair"), "{e}");
        // An unclosed quote reads on to the end; the password after it is never shown.
        std::fs::write(&file, "A=1\nB=\"open\nDB_PASSWORD=hunter2-secret\n").unwrap();
        let e = read_env_file(&file).unwrap_err();
        assert!(!e.contains("hunter2-secret") && e.contains("line 2"), "{e}");
    }

    #[test]
    fn paths_relative_to_a_folder() {
        assert_eq!(
            relative_to(Path::new("/d/erp/prod.env"), Path::new("/d/frappe_docker")).unwrap(),
            PathBuf::from("../erp/prod.env")
        );
        assert_eq!(relative_to(Path::new("/d/x/y.env"), Path::new("/d/x")).unwrap(), PathBuf::from("y.env"));
    }
}

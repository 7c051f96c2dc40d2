//! Pass 3 of validation: what the schema cannot say. Works on the JSON value so that it can run
//! even when the structure has errors elsewhere (every check reads only fields of the right type).

use std::collections::HashMap;

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::names::{self, UrlKind};
use crate::validate::{Document, FieldPath, Target, display_path, path};

const RESERVED_BUILD_ARGS: &[(&str, &str)] = &[
    ("FRAPPE_PATH", "benchform sets it from `frappe.repo`"),
    ("FRAPPE_BRANCH", "benchform sets it from `frappe.ref`"),
    ("CACHE_BUST", "benchform derives it from the locked commits, so that a new commit always rebuilds"),
    (
        "APPS_JSON_BASE64",
        "apps reach the build only as the BuildKit secret `apps_json`; the old build argument \
         leaked tokens into image metadata (frappe_docker #1860)",
    ),
];

/// frappe_docker overrides benchform refuses, by file name: what they do, and the way out.
const UNSUPPORTED_OVERRIDES: &[(&str, &str, &str)] = &[
    (
        "compose.migrator.yaml",
        "adds frappe_docker's `migrator` service, which runs `bench --site all migrate` on every deploy, \
         concurrently with the new backend, with no backup and no maintenance mode",
        "remove it from `deploy.compose.files`: benchform migrates each site that needs it, after a backup",
    ),
    (
        "compose.postgres.yaml",
        "runs the sites on PostgreSQL, which benchform does not support yet (its backups, restores and site \
         reads are MariaDB's)",
        "use overrides/compose.mariadb.yaml (or an external MariaDB through DB_HOST)",
    ),
];

struct Rules<'a> {
    doc: &'a mut Document,
    out: Vec<Diagnostic>,
}

/// Run every rule; returns the diagnostics (the document learns which strings are secrets).
pub(crate) fn check(value: &Value, doc: &mut Document) -> Vec<Diagnostic> {
    let mut r = Rules { doc, out: Vec::new() };
    r.project(value);
    r.frappe(value);
    let app_names = r.apps(value);
    r.image(value);
    r.deploy(value);
    r.sites(value, &app_names);
    r.backups(value);
    r.rollout(value);
    r.out
}

fn str_at<'v>(value: &'v Value, path: &[String]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, seg| match v {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })?
        .as_str()
}

/// The rules of a lock file: what its schema cannot say, as strictly as the manifest's.
pub(crate) fn check_lock(value: &Value, doc: &mut Document) -> Vec<Diagnostic> {
    let mut r = Rules { doc, out: Vec::new() };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, entry) in items(value, "entries").iter().enumerate() {
        if let Some(name) = entry.get("name").and_then(Value::as_str) {
            let at = path!["entries", i, "name"];
            if name != "frappe" && !names::is_identifier(name) {
                r.error(
                    Code::InvalidAppName,
                    &at,
                    format!("`{name}` is not frappe or an app name"),
                    Some(
                        "the lock names frappe and the manifest's apps; run `benchform lock` to rewrite it".to_string(),
                    ),
                );
            }
            match seen.get(name) {
                Some(first) => r.error(
                    Code::DuplicateApp,
                    &at,
                    format!("`{name}` is locked twice (first as `entries[{first}]`)"),
                    Some("run `benchform lock` to rewrite the lock; do not edit it by hand".to_string()),
                ),
                None => {
                    seen.insert(name.to_string(), i);
                }
            }
        }
        r.repo(value, &path!["entries", i, "repo"], false);
        r.git_ref(value, &path!["entries", i, "ref"]);
        for field in ["commit", "object"] {
            let at = path!["entries", i, field];
            if let Some(id) = str_at(value, &at)
                && !names::is_object_id(id)
            {
                r.error(
                    Code::InvalidValue,
                    &at,
                    format!("`{}` is not a git object id (40 or 64 lowercase hex digits)", display_path(&at)),
                    Some("run `benchform lock` to rewrite the lock; do not edit it by hand".to_string()),
                );
            }
        }
    }
    r.out
}

fn items<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    value.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

impl Rules<'_> {
    fn emit(
        &mut self,
        severity: Severity,
        code: Code,
        at: &FieldPath,
        target: Target,
        message: String,
        hint: Option<String>,
    ) {
        let d = self.doc.diagnostic(severity, code, at, target, message, hint);
        self.out.push(d);
    }

    fn error(&mut self, code: Code, at: &FieldPath, message: String, hint: Option<String>) {
        self.emit(Severity::Error, code, at, Target::Value, message, hint);
    }

    fn project(&mut self, v: &Value) {
        let at = path!["project"];
        if let Some(p) = str_at(v, &at)
            && !names::is_project_name(p)
        {
            let hint = match names::suggest_project_name(p).filter(|_| names::shows_no_secret(p)) {
                Some(s) => format!("try `project: {s}` (lowercase letters, digits, `_` and `-`, at most 63)"),
                None => "use lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 63"
                    .to_string(),
            };
            self.error(Code::InvalidProject, &at, format!("`{p}` is not a valid project name"), Some(hint));
        }
    }

    fn frappe(&mut self, v: &Value) {
        self.repo(v, &path!["frappe", "repo"], false);
        self.git_ref(v, &path!["frappe", "ref"]);
    }

    /// Checks every app; returns the names in order (those that are text).
    fn apps(&mut self, v: &Value) -> Vec<String> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut names_out = Vec::new();
        for (i, app) in items(v, "apps").iter().enumerate() {
            let name_at = path!["apps", i, "name"];
            if let Some(name) = str_at(v, &name_at) {
                names_out.push(name.to_string());
                if name == "frappe" {
                    self.error(
                        Code::FrappeInApps,
                        &name_at,
                        "frappe is listed under `apps`".to_string(),
                        Some("remove it: frappe comes from `frappe:` and is always installed; a frappe entry in apps.json breaks the build (frappe_docker PR #1889)".to_string()),
                    );
                } else if !names::is_identifier(name) {
                    let hint = match names::suggest_identifier(name).filter(|_| names::shows_no_secret(name)) {
                        Some(s) => format!("an app's name is its Python module name: did you mean `{s}`?"),
                        None => "an app's name is its Python module name: letters, digits and `_`, not starting with a digit".to_string(),
                    };
                    self.error(Code::InvalidAppName, &name_at, format!("`{name}` is not a valid app name"), Some(hint));
                }
                if let Some(first) = seen.get(name) {
                    self.error(
                        Code::DuplicateApp,
                        &name_at,
                        format!("app `{name}` is listed twice (first as `apps[{first}]`)"),
                        Some("list each app once; bench cannot clone the same app twice".to_string()),
                    );
                } else {
                    seen.insert(name.to_string(), i);
                }
            }
            let has_token = app.get("token_env").is_some_and(|t| !t.is_null());
            self.repo(v, &path!["apps", i, "repo"], has_token);
            self.git_ref(v, &path!["apps", i, "ref"]);
            self.env_name(v, &path!["apps", i, "token_env"]);
            self.token_user(v, &path!["apps", i, "token_user"]);
        }
        names_out
    }

    fn repo(&mut self, v: &Value, at: &FieldPath, has_token: bool) {
        let Some(url) = str_at(v, at) else { return };
        let (kind, userinfo) = names::classify_url(url);
        let field = display_path(at);
        if let Some(userinfo) = userinfo {
            self.doc.add_secret(&userinfo);
            self.error(
                Code::CredentialsInUrl,
                at,
                format!("`{field}` embeds credentials (the part before `@`)"),
                Some(
                    "remove them from the URL; for a private app, name an environment variable \
                     that holds the token with `token_env:` (and revoke the exposed token)"
                        .to_string(),
                ),
            );
        }
        match kind {
            UrlKind::Https => {}
            UrlKind::Http if has_token && !names::is_loopback_url(url) => self.emit(
                Severity::Warning,
                Code::InsecureTokenUrl,
                at,
                Target::Value,
                format!("`{field}` is plain http, so its token would cross the network unencrypted"),
                Some("use https".to_string()),
            ),
            UrlKind::Http => {}
            UrlKind::File => self.emit(
                Severity::Warning,
                Code::FileUrl,
                at,
                Target::Value,
                format!("`{field}` is a file:// URL: benchform can lock it, but an image build clones from inside a container and cannot reach it"),
                Some("serve the repository over https for builds".to_string()),
            ),
            UrlKind::Unsupported(scheme) => self.error(
                Code::UnsupportedUrlScheme,
                at,
                format!("`{field}` uses {scheme}, which image builds cannot clone"),
                Some(
                    "frappe_docker's stock Containerfiles clone over HTTPS only: write \
                     https://host/org/repo, with `token_env:` for a private repository"
                        .to_string(),
                ),
            ),
            UrlKind::Invalid(why) => self.error(
                Code::InvalidUrl,
                at,
                format!("`{field}` is not a repository URL: {why}"),
                Some("write https://host/org/repo (or file:///absolute/path for local tests)".to_string()),
            ),
        }
    }

    fn git_ref(&mut self, v: &Value, at: &FieldPath) {
        let Some(r) = str_at(v, at) else { return };
        let field = display_path(at);
        if r.trim().is_empty() {
            self.error(
                Code::EmptyRef,
                at,
                format!("`{field}` is empty"),
                Some("name a tag (e.g. v15.88.1) or a branch".to_string()),
            );
        } else if names::is_commit_id(r) {
            self.error(
                Code::CommitRef,
                at,
                format!("`{field}` is a commit id; bench clones with `--branch`, which takes only a branch or tag (frappe_docker #1482)"),
                Some("name the tag at that commit; benchform.lock records the commit".to_string()),
            );
        } else if let Some(why) = names::git_ref_problem(r) {
            self.error(Code::InvalidRef, at, format!("`{field}` is not a usable ref: {why}"), None);
        }
    }

    fn env_name(&mut self, v: &Value, at: &FieldPath) {
        let Some(name) = str_at(v, at) else { return };
        let field = display_path(at);
        if names::looks_like_token(name) {
            self.doc.add_secret(name);
            self.error(
                Code::InvalidEnvName,
                at,
                format!("`{field}` looks like a token itself, not the name of a variable holding one"),
                Some(format!(
                    "write the variable's name (e.g. `{}: APP_TOKEN`) and export the token in that variable; revoke the exposed token",
                    at.last().map(String::as_str).unwrap_or_default()
                )),
            );
        } else if !names::is_upper_env_name(name) {
            // Never shown: a value that is not a variable name may be the secret itself.
            self.doc.add_secret(name);
            self.error(
                Code::InvalidEnvName,
                at,
                format!(
                    "`{field}` is not an upper-case environment variable name (its value is not shown: it may be \
                     the secret itself)"
                ),
                Some(
                    "write the variable's name in upper-case letters, digits and `_`, not starting with a digit \
                     (e.g. PRIVATE_APP_TOKEN), and export the secret in it; if a secret was pasted here, change it"
                        .to_string(),
                ),
            );
        }
    }

    fn token_user(&mut self, v: &Value, at: &FieldPath) {
        let Some(user) = str_at(v, at) else { return };
        if names::is_token_user(user) {
            return;
        }
        let field = display_path(at);
        self.error(
            Code::InvalidTokenUser,
            at,
            format!(
                "`{field}` is not a plain user name: `@`, `:`, `/`, `%` or spaces in it could send the token to \
                 another host than the repository's"
            ),
            Some(
                "use the user name your git host wants with tokens: letters, digits, `.`, `_`, `-` (GitHub: \
                 x-access-token, GitLab: oauth2), at most 64 characters"
                    .to_string(),
            ),
        );
    }

    fn image(&mut self, v: &Value) {
        let at = path!["image", "repository"];
        if let Some(repo) = str_at(v, &at) {
            match names::image_repository_problem(repo) {
                Some((true, why)) => self.error(
                    Code::ImageHasTag,
                    &at,
                    format!("`image.repository` {why}"),
                    Some("give the repository only (registry.example.com/acme/erpnext): benchform tags each image with a hash of what went into it".to_string()),
                ),
                Some((false, why)) => self.error(
                    Code::InvalidImageReference,
                    &at,
                    format!("`image.repository` is not a valid image repository: {why}"),
                    Some("e.g. registry.example.com/acme/erpnext or localhost:5000/erpnext".to_string()),
                ),
                None => {}
            }
        }
        for key in ["containerfile", "context"] {
            self.non_empty_path(v, &path!["image", key]);
        }
        if let Some(args) = v.get("image").and_then(|i| i.get("build_args")).and_then(Value::as_object) {
            for name in args.keys() {
                let at = path!["image", "build_args", name];
                if let Some((_, why)) = RESERVED_BUILD_ARGS.iter().find(|(n, _)| n == name) {
                    self.emit(
                        Severity::Error,
                        Code::ReservedBuildArg,
                        &at,
                        Target::Key,
                        format!("build argument `{name}` cannot be set here: {why}"),
                        Some(format!("remove `{name}` from `image.build_args`")),
                    );
                } else if !names::is_env_name(name) {
                    self.emit(
                        Severity::Error,
                        Code::InvalidBuildArg,
                        &at,
                        Target::Key,
                        format!("`{name}` is not a valid build argument name"),
                        Some("use letters, digits and `_`".to_string()),
                    );
                } else if is_secret_like(name) {
                    self.emit(
                        Severity::Warning,
                        Code::SecretLikeBuildArg,
                        &at,
                        Target::Key,
                        format!("build argument `{name}` looks like a secret, and build arguments are stored in the image's history"),
                        Some("pass secrets to the build as BuildKit secrets, never as build arguments".to_string()),
                    );
                }
            }
        }
        let push = v.get("image").and_then(|i| i.get("push")).and_then(Value::as_bool);
        let target = path!["deploy", "target"];
        if str_at(v, &target) == Some("swarm") {
            if push == Some(false) {
                self.error(
                    Code::SwarmWithoutPush,
                    &target,
                    "`deploy.target: swarm` runs the image on every node of the swarm, and with `image.push: false` \
                     only the node that builds it would have it"
                        .to_string(),
                    Some("set `image.push: true`: every node pulls the image from the registry".to_string()),
                );
            }
            let canaries = v.get("rollout").and_then(|r| r.get("canary")).and_then(Value::as_array);
            if canaries.is_some_and(|c| !c.is_empty()) {
                self.error(
                    Code::SwarmCanary,
                    &path!["rollout", "canary"],
                    "`rollout.canary` runs its canaries in a one-off compose container next to the old backend, and \
                     benchform has no such thing on a swarm yet"
                        .to_string(),
                    Some("leave `rollout.canary` out with `deploy.target: swarm`".to_string()),
                );
            }
        }
        let build_on = path!["image", "build_on"];
        if str_at(v, &build_on) == Some("local") && push == Some(false) {
            self.error(
                Code::BuildOnLocalWithoutPush,
                &build_on,
                "`image.build_on: local` builds on this machine, and with `image.push: false` the deploy engine could \
                 never get the image"
                    .to_string(),
                Some(
                    "set `image.push: true` (the deploy engine pulls it from the registry), or build on the deploy \
                      engine (`build_on: engine`)"
                        .to_string(),
                ),
            );
        }
        let at = path!["image", "build_network"];
        if let Some(net) = str_at(v, &at)
            && !names::is_service_name(net)
        {
            self.error(
                Code::InvalidValue,
                &at,
                format!("`{net}` is not a valid network name"),
                Some("e.g. `host`, or a Docker network's name".to_string()),
            );
        }
    }

    fn non_empty_path(&mut self, v: &Value, at: &FieldPath) {
        if str_at(v, at).is_some_and(|p| p.trim().is_empty()) {
            let field = display_path(at);
            self.error(
                Code::EmptyPath,
                at,
                format!("`{field}` is empty"),
                Some("name a file or folder, or remove the key if it is optional".to_string()),
            );
        }
    }

    fn deploy(&mut self, v: &Value) {
        let files_at = path!["deploy", "compose", "files"];
        if let Some(files) = v.pointer("/deploy/compose/files").and_then(Value::as_array) {
            if files.is_empty() {
                self.error(
                    Code::NoComposeFiles,
                    &files_at,
                    "`deploy.compose.files` is empty".to_string(),
                    Some("list the compose files, e.g. [compose.yaml, overrides/compose.redis.yaml]".to_string()),
                );
            }
            for i in 0..files.len() {
                let at = path!["deploy", "compose", "files", i];
                self.non_empty_path(v, &at);
                let name = str_at(v, &at).unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
                if let Some((what, fix)) =
                    UNSUPPORTED_OVERRIDES.iter().find(|(f, _, _)| *f == name).map(|(_, w, f)| (w, f))
                {
                    self.error(Code::UnsupportedOverride, &at, format!("`{name}` {what}"), Some(fix.to_string()));
                }
            }
        }
        self.non_empty_path(v, &path!["deploy", "compose", "dir"]);
        self.non_empty_path(v, &path!["deploy", "compose", "env_file"]);
        let at = path!["deploy", "backend_service"];
        if let Some(s) = str_at(v, &at)
            && !names::is_service_name(s)
        {
            self.error(
                Code::InvalidServiceName,
                &at,
                format!("`{s}` is not a valid compose service name"),
                Some("letters, digits, `_`, `.` and `-`, starting with a letter or digit".to_string()),
            );
        }
        self.env_name(v, &path!["deploy", "db_root_password_env"]);
        self.env_name(v, &path!["deploy", "admin_password_env"]);
    }

    fn rollout(&mut self, v: &Value) {
        let site_names: Vec<&str> =
            items(v, "sites").iter().filter_map(|s| s.get("name").and_then(Value::as_str)).collect();
        let rollout = v.get("rollout");
        let list = |key: &str| rollout.and_then(|r| r.get(key)).and_then(Value::as_array).cloned().unwrap_or_default();
        let mut seen: Vec<&str> = Vec::new();
        let canary = list("canary");
        for (i, site) in canary.iter().enumerate() {
            let Some(site) = site.as_str() else { continue };
            let at = path!["rollout", "canary", i];
            if !site_names.contains(&site) {
                let hint = match names::did_you_mean(site, site_names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => "a canary is one of the manifest's sites: list it under `sites` first".to_string(),
                };
                self.error(
                    Code::UnknownCanarySite,
                    &at,
                    format!("canary `{}` is not a site of the manifest", site.escape_default()),
                    Some(hint),
                );
            } else if seen.contains(&site) {
                self.error(
                    Code::UnknownCanarySite,
                    &at,
                    format!("canary `{site}` is listed twice"),
                    Some("list each canary once".to_string()),
                );
            }
            seen.push(site);
        }
        for (i, arg) in list("smoke").iter().enumerate() {
            let Some(arg) = arg.as_str() else { continue };
            if arg.is_empty() || arg.chars().any(char::is_control) {
                self.error(
                    Code::InvalidSmokeCommand,
                    &path!["rollout", "smoke", i],
                    format!("smoke argument {} is {}", i + 1, if arg.is_empty() { "empty" } else { "not plain text (it holds a control character)" }),
                    Some("write the command as a list of plain arguments, e.g. [bench, --site, \"{site}\", execute, frappe.ping]".to_string()),
                );
            }
        }
    }

    fn sites(&mut self, v: &Value, app_names: &[String]) {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, site) in items(v, "sites").iter().enumerate() {
            let name_at = path!["sites", i, "name"];
            if let Some(name) = str_at(v, &name_at) {
                if let Some(why) = names::site_name_problem(name) {
                    let lower = name.to_lowercase();
                    let hint = if lower != name && names::site_name_problem(&lower).is_none() {
                        format!("write `{lower}`")
                    } else {
                        "a site name is the host name it is served at, e.g. erp.example.com".to_string()
                    };
                    self.error(
                        Code::InvalidSiteName,
                        &name_at,
                        format!("`{}` is not a valid site name: {why}", name.escape_default()),
                        Some(hint),
                    );
                }
                if let Some(first) = seen.get(name) {
                    self.error(
                        Code::DuplicateSite,
                        &name_at,
                        format!("site `{name}` is listed twice (first as `sites[{first}]`)"),
                        Some("list each site once".to_string()),
                    );
                } else {
                    seen.insert(name.to_string(), i);
                }
                if app_names.iter().any(|a| a == name) {
                    self.error(
                        Code::SiteNamedLikeApp,
                        &name_at,
                        format!("site `{name}` has the same name as an app"),
                        Some("Frappe v16 refuses such sites; choose another name".to_string()),
                    );
                }
            }
            let mut on_site: HashMap<&str, usize> = HashMap::new();
            for (j, app) in
                site.get("apps").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default().iter().enumerate()
            {
                let Some(app) = app.as_str() else { continue };
                let at = path!["sites", i, "apps", j];
                if app == "frappe" {
                    self.emit(
                        Severity::Warning,
                        Code::ImplicitFrappe,
                        &at,
                        Target::Value,
                        "frappe is listed on a site; every site has it".to_string(),
                        Some("remove it".to_string()),
                    );
                } else if !app_names.iter().any(|a| a == app) {
                    let hint = match names::did_you_mean(app, app_names.iter().map(String::as_str)) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => "add the app under `apps` so that it is in the image, or remove it from the site"
                            .to_string(),
                    };
                    self.error(
                        Code::UnknownSiteApp,
                        &at,
                        format!("site app `{app}` is not listed under `apps`"),
                        Some(hint),
                    );
                }
                if let Some(first) = on_site.get(app) {
                    self.error(
                        Code::DuplicateSiteApp,
                        &at,
                        format!("app `{app}` is listed twice on this site (first at position {})", first + 1),
                        Some("list it once".to_string()),
                    );
                } else {
                    on_site.insert(app, j);
                }
            }
        }
    }

    fn backups(&mut self, v: &Value) {
        self.non_empty_path(v, &path!["backups", "dir"]);
    }
}

fn is_secret_like(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["TOKEN", "PASSWORD", "PASSWD", "SECRET", "API_KEY", "PRIVATE_KEY", "CREDENTIAL"].iter().any(|w| upper.contains(w))
}

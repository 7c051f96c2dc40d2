//! Name and reference rules shared by validation and later commands. Each check returns why a
//! value is wrong (to go in a message) or `Ok`, and never echoes secrets.

/// The closest candidate to `got`, if one is close enough to be a typo.
pub fn did_you_mean<'a>(got: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let got_lower = got.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (c, strsim::jaro_winkler(&got_lower, &c.to_lowercase())))
        .filter(|(_, score)| *score >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

/// Compose project name: `[a-z0-9][a-z0-9_-]{0,62}`.
pub fn is_project_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A valid project name close to `s`, if one can be made.
pub fn suggest_project_name(s: &str) -> Option<String> {
    let mapped: String = s
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' { c } else { '-' })
        .collect();
    let trimmed = mapped.trim_start_matches(['-', '_']);
    let cut: String = trimmed.chars().take(63).collect();
    let cut = cut.trim_end_matches('-').to_string();
    is_project_name(&cut).then_some(cut)
}

/// A Python identifier (ASCII): what a Frappe app's module name must be.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `india-compliance` → `india_compliance`.
pub fn suggest_identifier(s: &str) -> Option<String> {
    let mapped: String =
        s.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    is_identifier(&mapped).then_some(mapped)
}

/// Environment variable name (POSIX portable): `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(s: &str) -> bool {
    is_identifier(s)
}

/// A variable name as people write them for secrets: `[A-Z_][A-Z0-9_]*`. Anything else in a
/// `*_env` field (lower case, punctuation) may be the secret itself pasted there.
pub fn is_upper_env_name(s: &str) -> bool {
    is_env_name(s) && !s.chars().any(|c| c.is_ascii_lowercase())
}

/// The user name sent with a repository token: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. Nothing that
/// could end the user part of a URL (`@`, `:`, `/`, `%`, spaces), so a token can never be sent to
/// another host than the repository's.
pub fn is_token_user(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// A full git object id as the lock keeps it: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub fn is_object_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Prefixes of well-known access tokens (GitHub, GitLab, Slack, Bitbucket).
const TOKEN_PREFIXES: &[&str] =
    &["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "xoxb-", "ATBB"];

/// `text` with every word that starts like a well-known token replaced by `***`, wherever it
/// stands (a token pasted into a ref, a comment, a broken line).
pub fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((i, _)) = TOKEN_PREFIXES.iter().filter_map(|p| rest.find(p).map(|i| (i, p))).min() {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-')).unwrap_or(tail.len());
        out.push_str("***");
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// True when masking changes nothing in `s`: no URL credentials, no token shape. Suggestions
/// derived from a value (which mangle `:` and `@`) are offered only for such values.
pub fn shows_no_secret(s: &str) -> bool {
    redact_tokens(&redact_url_credentials(s)) == s
}

/// Does this look like a token pasted where a variable *name* belongs?
pub fn looks_like_token(s: &str) -> bool {
    TOKEN_PREFIXES.iter().any(|p| s.starts_with(p))
        || (s.len() >= 32
            && s.chars().all(|c| c.is_ascii_alphanumeric())
            && s.chars().any(|c| c.is_ascii_digit())
            && s.chars().any(|c| c.is_ascii_lowercase()))
}

/// Compose service name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`. Docker network names follow the same rule.
pub fn is_service_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Why `s` is not a lowercase DNS name usable as a Frappe site name, if it is not.
pub fn site_name_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("it is empty".to_string());
    }
    if s.len() > 253 {
        return Some(format!("it is {} characters long; a DNS name has at most 253", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
        return Some(match c {
            ' ' | '\t' => "it contains white space".to_string(),
            _ => format!("it contains `{}`, which a DNS name cannot", c.escape_default()),
        });
    }
    if s.chars().any(|c| c.is_ascii_uppercase()) {
        return Some("it has capital letters; site names are lowercase".to_string());
    }
    for label in s.split('.') {
        if label.is_empty() {
            return Some("it has an empty label (`..`, or a dot at the start or end)".to_string());
        }
        if label.len() > 63 {
            return Some(format!("the label `{label}` is longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("the label `{label}` starts or ends with `-`"));
        }
    }
    None
}

/// Why `s` cannot be passed to `git clone --branch`, if so.
pub fn git_ref_problem(s: &str) -> Option<String> {
    if let Some(short) = s.strip_prefix("refs/heads/").or_else(|| s.strip_prefix("refs/tags/")) {
        return Some(format!(
            "write the short name `{short}`: bench clones with `--branch`, which takes a branch or tag name"
        ));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("it contains white space or control characters".to_string());
    }
    if let Some(c) = s.chars().find(|c| matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\')) {
        return Some(format!("it contains `{c}`, which git does not allow in a ref"));
    }
    if s.contains("..") || s.contains("@{") || s.contains("//") {
        return Some("it contains `..`, `@{` or `//`, which git does not allow in a ref".to_string());
    }
    if s.starts_with(['-', '/', '.']) || s.ends_with(['/', '.']) || s.ends_with(".lock") || s == "@" {
        return Some(
            "git does not allow a ref to start with `-`, `/` or `.`, or to end with `/`, `.` or `.lock`".to_string(),
        );
    }
    None
}

/// A full commit id (SHA-1 or SHA-256 hex).
pub fn is_commit_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// What kind of repository URL this is, as far as benchform is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlKind {
    Https,
    Http,
    File,
    /// ssh://, git://, git@host:path and other schemes the stock Containerfiles cannot clone.
    Unsupported(String),
    /// Not a URL at all; the reason.
    Invalid(String),
}

/// Classify a repository URL and find credentials embedded in it. The second value is the
/// user-info part (`user:pass` or `token`) if any, so callers can mask it; never print it.
pub fn classify_url(s: &str) -> (UrlKind, Option<String>) {
    if s.trim().is_empty() {
        return (UrlKind::Invalid("it is empty".to_string()), None);
    }
    if s.chars().any(char::is_whitespace) {
        return (UrlKind::Invalid("it contains white space".to_string()), None);
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        // scp-like syntax: [user@]host:path
        if let Some((host, _)) = s.split_once(':')
            && !host.contains('/')
            && !host.is_empty()
        {
            return (UrlKind::Unsupported("ssh (host:path)".to_string()), None);
        }
        return (UrlKind::Invalid("it has no scheme".to_string()), None);
    };
    let scheme = scheme.to_ascii_lowercase();
    let (authority, repo_path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    let userinfo = authority.rsplit_once('@').map(|(u, _)| u.to_string());
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let kind = match scheme.as_str() {
        "https" | "http" => {
            if host.is_empty() {
                UrlKind::Invalid("it names no host".to_string())
            } else if repo_path.trim_matches('/').is_empty() {
                UrlKind::Invalid("it names no repository path".to_string())
            } else if scheme == "https" {
                UrlKind::Https
            } else {
                UrlKind::Http
            }
        }
        "file" => {
            if rest.starts_with('/') {
                UrlKind::File
            } else {
                UrlKind::Invalid("a file URL needs an absolute path: file:///path/to/repo".to_string())
            }
        }
        other => UrlKind::Unsupported(other.to_string()),
    };
    (kind, userinfo.filter(|u| !u.is_empty()))
}

/// Does the URL's host stay on this machine (`localhost`, `127.x.x.x`, `[::1]`)?
pub fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// Mask `user:pass@` / `token@` in every `scheme://` URL found in `text`.
pub fn redact_url_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // After every `//` (not only `scheme://`: `https://https://u:pw@h` must not slip by), mask
    // up to the last `@` of what could be an authority.
    while let Some(i) = rest.find("//") {
        let (head, tail) = rest.split_at(i + 2);
        out.push_str(head);
        let end = tail.find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'').unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Why `s` is not an image repository (a reference without tag or digest), if it is not.
/// Returns `(is_tag_or_digest, reason)`.
pub fn image_repository_problem(s: &str) -> Option<(bool, String)> {
    if s.is_empty() {
        return Some((false, "it is empty".to_string()));
    }
    if s.contains('@') {
        return Some((true, "it carries a digest (`@sha256:…`)".to_string()));
    }
    let components: Vec<&str> = s.split('/').collect();
    if let Some(last) = components.last()
        && let Some((_, tag)) = last.split_once(':')
    {
        return Some((true, format!("it carries the tag `{tag}`")));
    }
    if s.len() > 255 {
        return Some((false, "it is longer than 255 characters".to_string()));
    }
    let first = components[0];
    let has_domain = components.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost");
    let path = if has_domain {
        let (host, port) = match first.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (first, None),
        };
        if host.is_empty()
            || !host.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
        {
            return Some((false, format!("`{first}` is not a valid registry host")));
        }
        if let Some(port) = port
            && (port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()))
        {
            return Some((false, format!("`{first}` has an invalid port")));
        }
        &components[1..]
    } else {
        &components[..]
    };
    for c in path {
        if c.chars().any(|ch| ch.is_ascii_uppercase()) {
            return Some((false, "repository names are lowercase".to_string()));
        }
        if !is_path_component(c) {
            return Some((
                false,
                format!(
                    "`{c}` is not a valid repository path component (lowercase letters, digits, and `.`, `_`, `__` or `-` between them)"
                ),
            ));
        }
    }
    None
}

fn is_path_component(c: &str) -> bool {
    if c.is_empty() {
        return false;
    }
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators: one `.`, one `_`, `__`, or any run of `-`.
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        assert!(is_project_name("erpnext-prod"));
        assert!(is_project_name("a"));
        assert!(!is_project_name("ERP"));
        assert!(!is_project_name("-x"));
        assert!(!is_project_name(&"a".repeat(64)));
        assert_eq!(suggest_project_name("ERPNext Prod").as_deref(), Some("erpnext-prod"));
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("india_compliance"));
        assert!(!is_identifier("india-compliance"));
        assert!(!is_identifier("1app"));
        assert_eq!(suggest_identifier("india-compliance").as_deref(), Some("india_compliance"));
    }

    #[test]
    fn site_names() {
        assert_eq!(site_name_problem("erp.example.com"), None);
        assert_eq!(site_name_problem("frontend"), None);
        assert!(site_name_problem("Erp.example.com").is_some());
        assert!(site_name_problem("a..b").is_some());
        assert!(site_name_problem("a b").is_some());
        assert!(site_name_problem("a/b").is_some());
        assert!(site_name_problem("a;rm").is_some());
        assert!(site_name_problem(&format!("{}.com", "a".repeat(64))).is_some());
    }

    #[test]
    fn urls() {
        assert_eq!(classify_url("https://github.com/frappe/frappe").0, UrlKind::Https);
        assert_eq!(classify_url("file:///srv/git/app.git").0, UrlKind::File);
        assert!(matches!(classify_url("git@github.com:frappe/frappe").0, UrlKind::Unsupported(_)));
        assert!(matches!(classify_url("ssh://git@github.com/frappe/frappe").0, UrlKind::Unsupported(_)));
        assert!(matches!(classify_url("../frappe").0, UrlKind::Invalid(_)));
        assert_eq!(classify_url("https://tok@github.com/a/b").1.as_deref(), Some("tok"));
        assert_eq!(classify_url("https://u:p@github.com/a/b").1.as_deref(), Some("u:p"));
    }

    #[test]
    fn loopback_urls() {
        assert!(is_loopback_url("http://127.0.0.1:8080/a.git"));
        assert!(is_loopback_url("http://localhost/a.git"));
        assert!(is_loopback_url("http://[::1]:80/a.git"));
        assert!(!is_loopback_url("http://git.example.com/a.git"));
    }

    #[test]
    fn redaction_masks_userinfo() {
        assert_eq!(
            redact_url_credentials("    repo: https://ghp_x:y@host/a/b  # c"),
            "    repo: https://***@host/a/b  # c"
        );
        assert_eq!(redact_url_credentials("https://host/a"), "https://host/a");
    }

    #[test]
    fn image_repositories() {
        assert_eq!(image_repository_problem("registry.example.com/acme/erpnext"), None);
        assert_eq!(image_repository_problem("localhost:5000/erpnext"), None);
        assert_eq!(image_repository_problem("127.0.0.1:5000/a/b"), None);
        assert_eq!(image_repository_problem("acme/erp__next"), None);
        assert!(image_repository_problem("acme/erpnext:v15").unwrap().0);
        assert!(image_repository_problem("host:5000/erpnext:v15").unwrap().0);
        assert!(image_repository_problem("acme/erpnext@sha256:abc").unwrap().0);
        assert!(!image_repository_problem("Acme/erpnext").unwrap().0);
        assert!(!image_repository_problem("acme/-x").unwrap().0);
    }

    #[test]
    fn git_refs() {
        assert_eq!(git_ref_problem("v15.88.1"), None);
        assert_eq!(git_ref_problem("version-15"), None);
        assert!(git_ref_problem("refs/tags/v1").is_some());
        assert!(git_ref_problem("a b").is_some());
        assert!(git_ref_problem("a..b").is_some());
        assert!(is_commit_id(&"a".repeat(40)));
    }
}

//! Repository URLs with a token in them, for the `apps_json` build secret (frappe_docker's
//! apps.json carries credentials in each `url`, which bench hands to `git clone`).
//!
//! Built with a URL library, never by pasting text: the user name and token are percent-encoded
//! into the userinfo, so no character of either (`@`, `:`, `/`, `#` …) can move the host the
//! token is sent to.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

/// Everything but RFC 3986's unreserved characters is encoded (`%` too: the URL library keeps
/// an existing `%XX` as it is, which git would then decode into another token).
const USERINFO: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why a credential URL could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialUrlError {
    #[error("`{repo}` is not a URL a token can be added to")]
    NotAUrl { repo: String },
}

/// `repo` with `user:token@` in its userinfo, percent-encoded. The host, port and path are the
/// repository's own; `repo` itself must carry no credentials (validate refuses those).
pub fn with_token(repo: &str, user: &str, token: &str) -> Result<String, CredentialUrlError> {
    let not_a_url = || CredentialUrlError::NotAUrl { repo: repo.to_string() };
    let mut url = Url::parse(repo).map_err(|_| not_a_url())?;
    if url.cannot_be_a_base() || url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(not_a_url());
    }
    url.set_username(&utf8_percent_encode(user, USERINFO).to_string()).map_err(|_| not_a_url())?;
    url.set_password(Some(&utf8_percent_encode(token, USERINFO).to_string())).map_err(|_| not_a_url())?;
    Ok(url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where git would connect: the authority after the *last* `@` (git and bench's clone split
    /// userinfo there), up to the first `/`.
    fn git_host(url: &str) -> String {
        let rest = url.split_once("://").unwrap().1;
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        authority.rsplit_once('@').map_or(authority, |(_, h)| h).to_string()
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn user_and_token_never_move_the_host() {
        let repo = "https://git.example.com:8443/org/private_app";
        for (user, token) in [
            ("x-access-token", "ghp_abc"),
            ("x-access-token@127.0.0.1:9977/", "t"),
            ("oauth2", "tok@127.0.0.1:9977/evil"),
            ("u:v", "a/b?c#d e%41"),
            ("a@b", "@@@"),
        ] {
            let url = with_token(repo, user, token).unwrap();
            assert_eq!(git_host(&url), "git.example.com:8443", "{url}");
            let parsed = Url::parse(&url).unwrap();
            assert_eq!(parsed.host_str(), Some("git.example.com"));
            assert_eq!(parsed.path(), "/org/private_app");
            // The token survives intact once git decodes the userinfo.
            assert_eq!(percent_decode(parsed.password().unwrap()), token);
            assert_eq!(percent_decode(parsed.username()), user);
        }
    }

    #[test]
    fn refuses_urls_with_credentials_or_no_host() {
        assert!(with_token("https://u:p@h/a", "x", "t").is_err());
        assert!(with_token("not a url", "x", "t").is_err());
        assert!(with_token("file:///srv/a", "x", "t").is_err());
    }

    #[test]
    fn plain_token() {
        assert_eq!(
            with_token("http://127.0.0.1:8418/private/acme_app.git", "x-access-token", "abc").unwrap(),
            "http://x-access-token:abc@127.0.0.1:8418/private/acme_app.git"
        );
    }
}

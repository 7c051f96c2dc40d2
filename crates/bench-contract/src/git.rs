//! Resolving a ref against a real git server, as `git clone --branch` would.
//!
//! `bench init` in the fixture must record the same ids real bench records
//! (`git rev-parse <ref>` after a clone), so it asks the real server: one
//! smart-HTTP ref advertisement (`GET <url>/info/refs?service=git-upload-pack`,
//! protocol v0) over a plain `TcpStream`. That is enough to resolve branches,
//! lightweight tags and annotated tags (whose advertised id is the tag
//! object, the peeled `^{}` line being the commit) without a git binary in
//! the image. Only `http://` is supported: the fixture talks to a loopback
//! test server, and a TLS stack is not worth a dependency.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::util::base64;

/// A parsed `scheme://[user[:password]@]host[:port]/path` URL.
#[derive(Debug, Clone)]
pub struct GitUrl {
    pub scheme: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host as written (IPv6 keeps its brackets).
    pub host: String,
    pub port: Option<u16>,
    pub path: String,
}

impl GitUrl {
    pub fn parse(url: &str) -> Option<GitUrl> {
        let (scheme, rest) = url.split_once("://")?;
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(auth_end);
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(percent_decode(user)), Some(percent_decode(pass))),
                None => (Some(percent_decode(u)), None),
            },
        };
        let (host, port) = if hostport.starts_with('[') {
            let close = hostport.find(']')?;
            let port = hostport[close + 1..].strip_prefix(':').and_then(|p| p.parse().ok());
            (hostport[..=close].to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                    (h.to_owned(), p.parse().ok())
                }
                _ => (hostport.to_owned(), None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let path = if path.is_empty() { "/".to_owned() } else { path.to_owned() };
        Some(GitUrl { scheme: scheme.to_ascii_lowercase(), user, password, host, port, path })
    }

    pub fn has_credentials(&self) -> bool {
        self.user.is_some() || self.password.is_some()
    }

    fn host_port(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The URL with credentials removed, as git shows it in errors.
    pub fn without_credentials(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host_port(), self.path)
    }

    /// The URL with any userinfo replaced by `***`: what the fixture prints
    /// and logs instead of a token.
    pub fn masked(&self) -> String {
        if self.has_credentials() {
            format!("{}://***@{}{}", self.scheme, self.host_port(), self.path)
        } else {
            self.without_credentials()
        }
    }

    /// bench names an app directory after the repository: last path segment
    /// without `.git`.
    pub fn repo_name(&self) -> String {
        let last = self.path.split(['?', '#']).next().unwrap_or_default();
        let seg = last.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        seg.strip_suffix(".git").unwrap_or(seg).to_owned()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The refs a server advertises.
#[derive(Debug, Default)]
pub struct Advertisement {
    /// `(id, refname)` in advertised order, peeled `^{}` lines included.
    pub refs: Vec<(String, String)>,
    /// Target of `HEAD` from the `symref=HEAD:…` capability.
    pub head_symref: Option<String>,
}

impl Advertisement {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.refs.iter().find(|(_, n)| n == name).map(|(id, _)| id.as_str())
    }

    /// The remote's default branch (what `git clone` without `--branch`
    /// checks out), falling back to `main`.
    pub fn default_branch(&self) -> String {
        if let Some(b) = self.head_symref.as_deref().and_then(|s| s.strip_prefix("refs/heads/")) {
            return b.to_owned();
        }
        if let Some(head) = self.get("HEAD") {
            let same = self.refs.iter().find(|(id, n)| id == head && n.starts_with("refs/heads/"));
            if let Some((_, n)) = same {
                return n.trim_start_matches("refs/heads/").to_owned();
            }
        }
        "main".to_owned()
    }

    /// `git clone --branch <name>` resolution: `refs/heads/<name>` first,
    /// then `refs/tags/<name>`. Returns what `git rev-parse <name>` prints in
    /// the clone: the commit for a branch or lightweight tag, the tag object
    /// for an annotated tag.
    pub fn resolve(&self, name: &str) -> Option<String> {
        self.get(&format!("refs/heads/{name}")).or_else(|| self.get(&format!("refs/tags/{name}"))).map(str::to_owned)
    }
}

/// Fetches and parses the ref advertisement. `Err` carries the lines git
/// would print to stderr for the failure (`fatal: …`).
pub fn ls_remote(url: &GitUrl) -> Result<Advertisement, Vec<String>> {
    let shown = format!("{}/", url.without_credentials().trim_end_matches('/'));
    if url.scheme != "http" {
        return Err(vec![format!(
            "fatal: bench-contract fixture supports http:// remotes only, not '{}' (use the loopback test git server)",
            url.masked()
        )]);
    }
    let response = http_get(url, "/info/refs?service=git-upload-pack")
        .map_err(|e| vec![format!("fatal: unable to access '{shown}': {e}")])?;
    match response.status {
        200 => {}
        401 | 403 if url.has_credentials() => return Err(vec![format!("fatal: Authentication failed for '{shown}'")]),
        401 | 403 => {
            let origin = format!("{}://{}", url.scheme, url.host_port());
            return Err(vec![format!("fatal: could not read Username for '{origin}': No such device or address")]);
        }
        404 => return Err(vec![format!("fatal: repository '{shown}' not found")]),
        code => {
            return Err(vec![format!("fatal: unable to access '{shown}': The requested URL returned error: {code}")]);
        }
    }
    parse_advertisement(&response.body).ok_or_else(|| {
        vec![format!("fatal: '{shown}' is not a git smart-HTTP repository (unexpected ref advertisement)")]
    })
}

/// Parses a v0 `git-upload-pack` advertisement: a `# service=` packet, a
/// flush, then `<id> <ref>[\0capabilities]` packets up to a flush.
fn parse_advertisement(body: &[u8]) -> Option<Advertisement> {
    let mut pos = 0;
    let mut packets: Vec<Option<&[u8]>> = Vec::new();
    while pos + 4 <= body.len() {
        let len = usize::from_str_radix(std::str::from_utf8(&body[pos..pos + 4]).ok()?, 16).ok()?;
        if len == 0 {
            packets.push(None);
            pos += 4;
            continue;
        }
        if len < 4 || pos + len > body.len() {
            return None;
        }
        packets.push(Some(&body[pos + 4..pos + len]));
        pos += len;
    }
    let mut iter = packets.into_iter();
    let first = iter.next()??;
    if !first.starts_with(b"# service=git-upload-pack") {
        return None;
    }
    if iter.next()?.is_some() {
        return None;
    }
    let mut ad = Advertisement::default();
    for packet in iter {
        let Some(line) = packet else { break };
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches('\n');
        let (refpart, caps) = line.split_once('\0').unwrap_or((line, ""));
        for cap in caps.split(' ') {
            if let Some(target) = cap.strip_prefix("symref=HEAD:") {
                ad.head_symref = Some(target.to_owned());
            }
        }
        let Some((id, name)) = refpart.split_once(' ') else { continue };
        if id.len() == 40 && id.bytes().all(|b| b.is_ascii_hexdigit()) && name != "capabilities^{}" {
            ad.refs.push((id.to_owned(), name.to_owned()));
        }
    }
    Some(ad)
}

#[derive(Debug)]
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// One HTTP/1.1 GET with `Connection: close`, Basic auth from the URL's
/// userinfo, body read to EOF (de-chunked when needed).
fn http_get(url: &GitUrl, suffix: &str) -> Result<Response, String> {
    let port = url.port.unwrap_or(80);
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    // Host names go through the system resolver; the fixture's URLs are IPs.
    let addrs: Vec<_> =
        (host, port).to_socket_addrs().map_err(|_| format!("Could not resolve host: {}", url.host))?.collect();
    let mut last_err = String::from("no address");
    let mut stream = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, Duration::from_secs(10)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    let Some(mut stream) = stream else {
        return Err(format!("Failed to connect to {} port {port}: {last_err}", url.host));
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
    let path = url.path.trim_end_matches('/');
    let mut request = format!(
        "GET {path}{suffix} HTTP/1.1\r\nHost: {}\r\nUser-Agent: git/2.47.0 (bench-contract)\r\nAccept: */*\r\nAccept-Encoding: identity\r\nPragma: no-cache\r\nConnection: close\r\n",
        url.host_port()
    );
    if url.has_credentials() {
        let creds =
            format!("{}:{}", url.user.as_deref().unwrap_or_default(), url.password.as_deref().unwrap_or_default());
        request.push_str(&format!("Authorization: Basic {}\r\n", base64(creds.as_bytes())));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    parse_response(&raw).ok_or_else(|| "malformed HTTP response".to_owned())
}

fn parse_response(raw: &[u8]) -> Option<Response> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.to_ascii_lowercase().contains("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Response { status, body })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_masks_credentials() {
        let u = GitUrl::parse("http://s3cret@127.0.0.1:8418/private/erpnext.git").unwrap();
        assert_eq!(u.user.as_deref(), Some("s3cret"));
        assert_eq!(u.password, None);
        assert_eq!(u.masked(), "http://***@127.0.0.1:8418/private/erpnext.git");
        assert_eq!(u.without_credentials(), "http://127.0.0.1:8418/private/erpnext.git");
        assert_eq!(u.repo_name(), "erpnext");
        let u = GitUrl::parse("http://x-access-token:t%40k@[::1]:80/org/hrms/").unwrap();
        assert_eq!(u.password.as_deref(), Some("t@k"));
        assert_eq!(u.host, "[::1]");
        assert_eq!(u.repo_name(), "hrms");
        assert!(!u.masked().contains("t%40k"));
        assert!(GitUrl::parse("not a url").is_none());
    }

    #[test]
    fn parses_advertisement_and_resolves_like_clone_branch() {
        let c = "1".repeat(40);
        let t = "2".repeat(40);
        let b = "3".repeat(40);
        let mut body = Vec::new();
        let mut pkt = |s: &str| body.extend_from_slice(format!("{:04x}{s}", s.len() + 4).as_bytes());
        pkt("# service=git-upload-pack\n");
        body_flush(&mut body);
        let mut pkt = |s: &str| body.extend_from_slice(format!("{:04x}{s}", s.len() + 4).as_bytes());
        pkt(&format!("{c} HEAD\0multi_ack symref=HEAD:refs/heads/develop agent=git/2\n"));
        pkt(&format!("{c} refs/heads/develop\n"));
        pkt(&format!("{b} refs/heads/v1\n"));
        pkt(&format!("{t} refs/tags/v1\n"));
        pkt(&format!("{c} refs/tags/v1^{{}}\n"));
        body_flush(&mut body);
        let ad = parse_advertisement(&body).unwrap();
        assert_eq!(ad.default_branch(), "develop");
        assert_eq!(ad.resolve("v1").as_deref(), Some(b.as_str()), "branch wins over tag, like git clone");
        assert_eq!(ad.resolve("develop").as_deref(), Some(c.as_str()));
        assert_eq!(ad.resolve("nope"), None);
    }

    fn body_flush(body: &mut Vec<u8>) {
        body.extend_from_slice(b"0000");
    }

    #[test]
    fn dechunks() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abcde"[..]));
    }
}

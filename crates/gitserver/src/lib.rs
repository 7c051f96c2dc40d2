//! A git smart-HTTP server on loopback, for tests and local demos.
//!
//! benchform talks to real git remotes over HTTPS with tokens. To test that
//! without the network, this crate serves bare repositories from a folder
//! through the real `git http-backend` (run as a CGI program), so clients see
//! exactly what a production git host speaks: protocol v0 and v2, gzip
//! request bodies, chunked uploads. Repositories under a "private" prefix
//! require HTTP Basic auth with a token, in both shapes hosts accept
//! (`https://user:TOKEN@host` and `https://TOKEN@host`).
//!
//! The server is deliberately std-only and simple: one thread per
//! connection, one request per connection, buffered bodies. It is not meant
//! to face anything but loopback clients under test.
//!
//! [`TestRepo`] builds fixture repositories with the real `git` CLI.

mod http;
mod repo;

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use http::{RequestHead, Response};
pub use repo::TestRepo;

/// How long a connection may sit idle mid-request or mid-response before the
/// server gives up on it, so a stuck client cannot pin a thread forever.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Realm announced in `WWW-Authenticate`; git only needs *a* Basic challenge
/// to decide to send credentials.
const REALM: &str = "benchform-test";

/// What to serve and who may read it.
///
/// Build one with [`ServerConfig::new`] and override fields as needed; the
/// defaults give an ephemeral loopback port and a `private/` prefix with no
/// token, i.e. private repositories are unreachable until a token is set.
#[derive(Clone)]
pub struct ServerConfig {
    /// Folder holding bare repositories; `<root>/a/b.git` is served as
    /// `http://127.0.0.1:PORT/a/b.git`.
    pub root: PathBuf,
    /// Address to listen on. Keep it on loopback: there is no TLS and the
    /// token travels in clear text.
    pub bind: SocketAddr,
    /// Repositories whose path (relative to `root`) starts with this string
    /// require authentication. The empty string makes everything private.
    pub private_prefix: String,
    /// Token accepted for private repositories, as the Basic password (any
    /// user name) or as the user name with an empty password. `None` (or an
    /// empty token) rejects every request for a private repository, which is
    /// how tests model "credentials missing on the host".
    pub token: Option<String>,
    /// Send response bodies without `Content-Length`, ended by closing the connection (as
    /// HTTP/1.0-style servers and some proxies do) — a framing clients must cope with.
    pub close_delimited: bool,
}

impl ServerConfig {
    /// Defaults for serving `root`: `127.0.0.1:0`, prefix `private/`, no token.
    pub fn new(root: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            root: root.into(),
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            private_prefix: "private/".to_owned(),
            token: None,
            close_delimited: false,
        }
    }
}

// Manual impl so the token never ends up in test output or logs.
impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("root", &self.root)
            .field("bind", &self.bind)
            .field("private_prefix", &self.private_prefix)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("close_delimited", &self.close_delimited)
            .finish()
    }
}

/// A running server. Dropping it stops accepting connections and joins the
/// accept thread, so each test gets a clean port lifecycle without explicit
/// shutdown code. Requests already in flight are allowed to finish.
#[derive(Debug)]
pub struct GitServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

/// Everything a connection handler needs, shared read-only.
struct Shared {
    root: PathBuf,
    private_prefix: String,
    token: Option<String>,
    backend: PathBuf,
    path_env: Option<OsString>,
    home_env: Option<OsString>,
    close_delimited: bool,
}

impl GitServer {
    /// Binds the listener and starts serving in background threads.
    ///
    /// Fails early (rather than on the first request) when `root` is not a
    /// directory or `git http-backend` cannot be found, so a broken test
    /// environment shows up as a clear setup error.
    pub fn start(config: ServerConfig) -> io::Result<GitServer> {
        let root = config.root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("{} is not a directory", root.display())));
        }
        let backend = http_backend_path()?;
        let listener = TcpListener::bind(config.bind)?;
        let addr = listener.local_addr()?;

        let shared = Arc::new(Shared {
            root,
            private_prefix: config.private_prefix.trim_start_matches('/').to_owned(),
            token: config.token.filter(|t| !t.is_empty()),
            backend,
            path_env: std::env::var_os("PATH"),
            home_env: std::env::var_os("HOME"),
            close_delimited: config.close_delimited,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept_thread = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("gitserver-accept".to_owned())
                .spawn(move || accept_loop(&listener, &shared, &stop))?
        };
        Ok(GitServer { addr, stop, accept_thread: Some(accept_thread) })
    }

    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.client_addr())
    }

    /// URL of a repository given its path relative to the root, e.g.
    /// `repo_url("private/app.git")`.
    pub fn repo_url(&self, rel: &str) -> String {
        format!("{}/{}", self.url(), rel.trim_start_matches('/'))
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address clients should use: a wildcard bind is reachable via loopback.
    fn client_addr(&self) -> SocketAddr {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.addr.port())
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept loop is blocked in accept(); a connection wakes it up so
        // it can see the flag. If even that fails the listener is already
        // broken, and joining could hang, so leave the thread detached.
        let woke = TcpStream::connect_timeout(&self.client_addr(), Duration::from_secs(5)).is_ok();
        if let Some(handle) = self.accept_thread.take()
            && woke
        {
            let _ = handle.join();
        }
    }
}

/// Locates `git-http-backend` next to the `git` found on PATH, so the server
/// uses the same git installation as the tests' client commands.
fn http_backend_path() -> io::Result<PathBuf> {
    let out = Command::new("git")
        .arg("--exec-path")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running `git --exec-path`: {e}")))?;
    if !out.status.success() {
        return Err(io::Error::other(format!("`git --exec-path` failed: {}", out.status)));
    }
    let exec_path =
        String::from_utf8(out.stdout).map_err(|_| io::Error::other("`git --exec-path` printed non-UTF-8"))?;
    let backend = Path::new(exec_path.trim()).join("git-http-backend");
    if !backend.is_file() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", backend.display())));
    }
    Ok(backend)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>, stop: &AtomicBool) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match conn {
            Ok(stream) => {
                let shared = Arc::clone(shared);
                // If the OS refuses a thread the connection is dropped; the
                // client sees a reset, which is the honest outcome.
                let _ = thread::Builder::new()
                    .name("gitserver-conn".to_owned())
                    .spawn(move || handle_connection(&stream, &shared));
            }
            // Transient accept errors (e.g. out of file descriptors): back
            // off briefly instead of spinning.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn handle_connection(stream: &TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut reader = BufReader::new(stream);
    let mut writer = stream;
    let head = match http::read_head(&mut reader) {
        Ok(head) => head,
        // Connection closed without a request (e.g. the wake-up connect).
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
        Err(_) => {
            let _ = Response::text(400, "bad request\n").write_to(&mut writer, false, false);
            let _ = stream.shutdown(Shutdown::Write);
            return;
        }
    };
    let head_only = head.method.eq_ignore_ascii_case("HEAD");
    let response = serve(&head, &mut reader, &mut writer, stream.peer_addr().ok(), shared);
    let _ = response.write_to(&mut writer, head_only, shared.close_delimited);
    let _ = stream.shutdown(Shutdown::Write);
}

fn serve(
    head: &RequestHead,
    reader: &mut BufReader<&TcpStream>,
    writer: &mut &TcpStream,
    peer: Option<SocketAddr>,
    shared: &Shared,
) -> Response {
    let (raw_path, query) = split_target(&head.target);
    let Some(path) = normalize_path(raw_path) else {
        return Response::text(404, "not found\n");
    };

    let remote_user = if path[1..].starts_with(&shared.private_prefix) {
        match authorize(head.header("authorization"), shared.token.as_deref()) {
            Some(user) => Some(user),
            None => {
                // Swallow a body the client already sent, so closing the
                // socket does not reset the connection before it reads the
                // 401. With `Expect: 100-continue` it is waiting instead.
                if head.has_body() && !head.expects_continue() {
                    let _ = http::read_body(head, reader);
                }
                let mut r = Response::text(401, "authentication required\n");
                r.headers.push(("WWW-Authenticate".to_owned(), format!("Basic realm=\"{REALM}\"")));
                return r;
            }
        }
    } else {
        None
    };

    if head.expects_continue() && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
        return Response::text(400, "client went away\n");
    }
    let body = match http::read_body(head, reader) {
        Ok(body) => body,
        Err(_) => return Response::text(400, "bad request body\n"),
    };

    let request = CgiRequest { head, path_info: &path, query, body: &body, remote_user: remote_user.as_deref(), peer };
    match run_cgi(shared, &request) {
        Ok(response) => response,
        Err(e) => Response::text(502, &format!("git http-backend failed: {e}\n")),
    }
}

/// Splits a request target into path and query, tolerating absolute-form
/// targets (`http://host/path`) that proxies-minded clients may send.
fn split_target(target: &str) -> (&str, &str) {
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    target.split_once('?').unwrap_or((target, ""))
}

/// Decodes the URL path and rejects anything that could step outside the
/// served root or dodge the private-prefix check (`..`, `.` segments);
/// repeated slashes are collapsed for the same reason. Returns the path
/// with exactly one leading slash.
fn normalize_path(raw: &str) -> Option<String> {
    if !raw.starts_with('/') || raw.contains("..") {
        return None;
    }
    let decoded = http::percent_decode(raw)?;
    if decoded.contains("..") || decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let segments: Vec<&str> = decoded.split('/').filter(|s| !s.is_empty()).collect();
    if segments.contains(&".") {
        return None;
    }
    Some(format!("/{}", segments.join("/")))
}

/// Checks a Basic `Authorization` header against the token and returns the
/// name to expose as `REMOTE_USER`. The token itself is never returned, so
/// it cannot leak into the CGI environment or git's reflog identity.
fn authorize(header: Option<&str>, token: Option<&str>) -> Option<String> {
    let token = token?;
    let (scheme, credentials) = header?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(http::base64_decode(credentials.trim())?).ok()?;
    let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
    let token_as_password = constant_time_eq(pass, token);
    let token_as_user = pass.is_empty() && constant_time_eq(user, token);
    if !(token_as_password || token_as_user) {
        return None;
    }
    if user.is_empty() || constant_time_eq(user, token) { Some("token".to_owned()) } else { Some(user.to_owned()) }
}

/// Comparison whose timing does not depend on where the inputs differ. A
/// loopback test server hardly needs it, but it costs nothing.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct CgiRequest<'a> {
    head: &'a RequestHead,
    path_info: &'a str,
    query: &'a str,
    body: &'a [u8],
    remote_user: Option<&'a str>,
    peer: Option<SocketAddr>,
}

/// Runs `git http-backend` for one request with a scrubbed environment, so
/// neither the test process's nor the user's git settings leak in.
fn run_cgi(shared: &Shared, req: &CgiRequest<'_>) -> io::Result<Response> {
    let mut cmd = Command::new(&shared.backend);
    cmd.env_clear();
    if let Some(path) = &shared.path_env {
        cmd.env("PATH", path);
    }
    if let Some(home) = &shared.home_env {
        cmd.env("HOME", home);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("SERVER_SOFTWARE", "benchform-gitserver")
        .env("REQUEST_METHOD", &req.head.method)
        .env("PATH_INFO", req.path_info)
        .env("QUERY_STRING", req.query);
    if let Some(peer) = req.peer {
        cmd.env("REMOTE_ADDR", peer.ip().to_string());
    }
    if let Some(ct) = req.head.header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if !req.body.is_empty() || req.head.method.eq_ignore_ascii_case("POST") {
        cmd.env("CONTENT_LENGTH", req.body.len().to_string());
    }
    if let Some(ce) = req.head.header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", ce);
    }
    if let Some(proto) = req.head.header("git-protocol") {
        cmd.env("GIT_PROTOCOL", proto);
    }
    if let Some(user) = req.remote_user {
        cmd.env("REMOTE_USER", user);
    }
    // stderr is inherited: http-backend only writes there on real errors,
    // which are worth seeing when a test fails.
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());

    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take();
    // Feed stdin from another thread while reading stdout here: with both
    // sides buffered through pipes, doing them in sequence can deadlock.
    let output = thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(mut stdin) = stdin {
                // A backend that stops reading early (e.g. on a bad request)
                // closes the pipe; its own response says what went wrong.
                let _ = stdin.write_all(req.body);
            }
        });
        child.wait_with_output()
    })?;
    http::parse_cgi_output(&output.stdout).ok_or_else(|| {
        io::Error::other(format!("unparseable CGI output ({} bytes, {})", output.stdout.len(), output.status))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(credentials: &str) -> String {
        // Tiny encoder for the tests only; the server just decodes.
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in credentials.as_bytes().chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        format!("Basic {out}")
    }

    #[test]
    fn authorize_accepts_token_as_password_or_as_user() {
        let t = Some("s3cret");
        assert_eq!(authorize(Some(&basic("x-access-token:s3cret")), t).as_deref(), Some("x-access-token"));
        assert_eq!(authorize(Some(&basic("s3cret:")), t).as_deref(), Some("token"));
        assert_eq!(authorize(Some(&basic("s3cret")), t).as_deref(), Some("token"));
        assert_eq!(authorize(Some(&basic(":s3cret")), t).as_deref(), Some("token"));
        assert_eq!(authorize(Some(&basic("x:wrong")), t), None);
        assert_eq!(authorize(Some(&basic("s3cret:wrong")), t), None);
        assert_eq!(authorize(Some("Bearer s3cret"), t), None);
        assert_eq!(authorize(None, t), None);
        assert_eq!(authorize(Some(&basic("x:s3cret")), None), None);
    }

    #[test]
    fn normalize_path_rejects_escapes_and_collapses_slashes() {
        assert_eq!(normalize_path("/a.git/info/refs").as_deref(), Some("/a.git/info/refs"));
        assert_eq!(normalize_path("//private//a.git").as_deref(), Some("/private/a.git"));
        assert_eq!(normalize_path("/%70rivate/a.git").as_deref(), Some("/private/a.git"));
        for bad in ["/../x", "/a/%2e%2e/x", "/./private/a.git", "relative", "/a%00b", "/a\\b"] {
            assert_eq!(normalize_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn split_target_handles_query_and_absolute_form() {
        assert_eq!(
            split_target("/a.git/info/refs?service=git-upload-pack"),
            ("/a.git/info/refs", "service=git-upload-pack")
        );
        assert_eq!(split_target("http://h:1/a.git?x"), ("/a.git", "x"));
    }

    #[test]
    fn config_debug_redacts_token() {
        let mut c = ServerConfig::new("/tmp");
        c.token = Some("s3cret".to_owned());
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}

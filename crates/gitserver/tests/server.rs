//! End-to-end tests: real `git` clients against the server and real
//! `git http-backend` behind it.

// Helpers outside `#[test]` functions are not covered by clippy.toml's
// allow-unwrap-in-tests; a failed unwrap here is a failed test, as intended.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use benchform_gitserver::{GitServer, ServerConfig, TestRepo};

const TOKEN: &str = "s3cret-t0ken";

/// Runs the git CLI isolated from the user's config and never prompting.
fn git(cwd: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.output().unwrap()
}

fn git_ok(cwd: Option<&Path>, args: &[&str]) -> String {
    let out = git(cwd, args);
    assert!(out.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `git ls-remote` output as ref name -> id.
fn ls_remote(url: &str, extra: &[&str]) -> BTreeMap<String, String> {
    let mut args = extra.to_vec();
    args.extend(["ls-remote", url]);
    git_ok(None, &args)
        .lines()
        .map(|line| {
            let (id, name) = line.split_once('\t').unwrap();
            (name.to_owned(), id.to_owned())
        })
        .collect()
}

fn with_credentials(server: &GitServer, userinfo: &str, rel: &str) -> String {
    format!("http://{userinfo}@{}/{rel}", server.addr())
}

struct World {
    _root: tempfile::TempDir,
    server: GitServer,
    public: TestRepo,
    private: TestRepo,
    c1: String,
    c2: String,
    annotated: String,
}

fn world(token: Option<&str>) -> World {
    let root = tempfile::tempdir().unwrap();
    let public = TestRepo::create(root.path(), "erpnext.git").unwrap();
    let c1 = public.commit("first").unwrap();
    let c2 = public.commit("second").unwrap();
    public.tag_lightweight("v1.0.0", &c1).unwrap();
    let annotated = public.tag_annotated("v2.0.0", &c2).unwrap();
    public.branch("version-15", &c1).unwrap();

    let private = TestRepo::create(root.path(), "private/app.git").unwrap();
    private.commit("private first").unwrap();

    let mut config = ServerConfig::new(root.path());
    config.token = token.map(str::to_owned);
    let server = GitServer::start(config).unwrap();
    World { _root: root, server, public, private, c1, c2, annotated }
}

#[test]
fn ls_remote_lists_branches_and_tags_in_both_protocol_versions() {
    let w = world(None);
    assert_ne!(w.annotated, w.c2, "annotated tag must be a tag object");
    for version in ["protocol.version=2", "protocol.version=0"] {
        let refs = ls_remote(&w.server.repo_url("erpnext.git"), &["-c", version]);
        assert_eq!(refs["HEAD"], w.c2, "{version}");
        assert_eq!(refs["refs/heads/main"], w.c2, "{version}");
        assert_eq!(refs["refs/heads/version-15"], w.c1, "{version}");
        assert_eq!(refs["refs/tags/v1.0.0"], w.c1, "{version}");
        assert!(!refs.contains_key("refs/tags/v1.0.0^{}"), "{version}");
        assert_eq!(refs["refs/tags/v2.0.0"], w.annotated, "{version}");
        assert_eq!(refs["refs/tags/v2.0.0^{}"], w.c2, "{version}");
    }
    // Same answer as going to the bare repository directly.
    assert_eq!(ls_remote(&w.server.repo_url("erpnext.git"), &[]), ls_remote(&w.public.file_url(), &[]));
}

#[test]
fn clone_over_http_fetches_objects() {
    let w = world(None);
    let dest = tempfile::tempdir().unwrap();
    for (version, dir) in [("protocol.version=2", "v2"), ("protocol.version=0", "v0")] {
        let target = dest.path().join(dir);
        git_ok(None, &["-c", version, "clone", "--quiet", &w.server.repo_url("erpnext.git"), target.to_str().unwrap()]);
        assert_eq!(git_ok(Some(&target), &["rev-parse", "HEAD"]).trim(), w.c2);
        assert_eq!(git_ok(Some(&target), &["rev-parse", "v1.0.0^{commit}"]).trim(), w.c1);
        let content = std::fs::read_to_string(target.join("content.txt")).unwrap();
        assert!(content.starts_with("second\n"), "{content}");
    }
}

#[test]
fn private_repo_requires_the_token() {
    let w = world(Some(TOKEN));
    let rel = "private/app.git";

    let anonymous = git(None, &["ls-remote", &w.server.repo_url(rel)]);
    assert!(!anonymous.status.success());
    let wrong = git(None, &["ls-remote", &with_credentials(&w.server, "x-access-token:nope", rel)]);
    assert!(!wrong.status.success());
    let token_as_user_with_password =
        git(None, &["ls-remote", &with_credentials(&w.server, &format!("{TOKEN}:nope"), rel)]);
    assert!(!token_as_user_with_password.status.success());
    // Errors must not echo the token back.
    for out in [&anonymous, &wrong] {
        assert!(!String::from_utf8_lossy(&out.stderr).contains(TOKEN));
    }

    let expected = ls_remote(&w.private.file_url(), &[]);
    let as_password = with_credentials(&w.server, &format!("x-access-token:{TOKEN}"), rel);
    assert_eq!(ls_remote(&as_password, &[]), expected);
    let as_user = with_credentials(&w.server, TOKEN, rel);
    assert_eq!(ls_remote(&as_user, &[]), expected);

    let dest = tempfile::tempdir().unwrap();
    let target = dest.path().join("app");
    git_ok(None, &["clone", "--quiet", &as_password, target.to_str().unwrap()]);
    assert_eq!(git_ok(Some(&target), &["rev-parse", "HEAD"]).trim(), expected["refs/heads/main"]);

    // Public repositories stay open to everyone.
    git_ok(None, &["ls-remote", &w.server.repo_url("erpnext.git")]);
}

#[test]
fn private_repo_without_configured_token_is_always_unauthorized() {
    let w = world(None);
    let url = with_credentials(&w.server, &format!("x-access-token:{TOKEN}"), "private/app.git");
    assert!(!git(None, &["ls-remote", &url]).status.success());
    let (status, head) =
        raw_request(&w.server, "GET /private/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 401);
    assert!(head.contains("WWW-Authenticate: Basic realm=\"benchform-test\""), "{head}");
}

#[test]
fn moved_tag_is_seen_moved() {
    let w = world(None);
    let url = w.server.repo_url("erpnext.git");
    assert_eq!(ls_remote(&url, &[])["refs/tags/v1.0.0"], w.c1);
    w.public.move_tag("v1.0.0", &w.c2).unwrap();
    assert_eq!(ls_remote(&url, &[])["refs/tags/v1.0.0"], w.c2);
    let c3 = w.public.commit("third").unwrap();
    w.public.branch("version-15", &c3).unwrap();
    let refs = ls_remote(&url, &[]);
    assert_eq!(refs["refs/heads/version-15"], c3);
    assert_eq!(refs["refs/heads/main"], c3);
}

/// Pushing a large, incompressible file with a small `http.postBuffer`
/// makes git send a chunked (and probed) POST to receive-pack, which only
/// works if the server decodes the chunked body for http-backend.
#[test]
fn authenticated_push_with_chunked_body() {
    let w = world(Some(TOKEN));
    let url = with_credentials(&w.server, &format!("x-access-token:{TOKEN}"), "private/app.git");
    let dest = tempfile::tempdir().unwrap();
    let work = dest.path().join("app");
    git_ok(None, &["clone", "--quiet", &url, work.to_str().unwrap()]);

    // xorshift noise: zlib cannot shrink it below the post buffer.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let noise: Vec<u8> = (0..400_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(work.join("blob.bin"), noise).unwrap();
    git_ok(Some(&work), &["add", "blob.bin"]);
    git_ok(Some(&work), &["-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet", "-m", "big"]);
    let pushed = git_ok(Some(&work), &["rev-parse", "HEAD"]);
    let push =
        git(Some(&work), &["-c", "http.postBuffer=65536", "push", "--verbose", "origin", "HEAD:refs/heads/main"]);
    let stderr = String::from_utf8_lossy(&push.stderr);
    assert!(push.status.success(), "push failed: {stderr}");
    assert!(!stderr.contains(TOKEN), "token leaked in push output: {stderr}");
    assert_eq!(ls_remote(&w.private.file_url(), &[])["refs/heads/main"], pushed.trim());
}

#[test]
fn anonymous_push_to_public_repo_is_refused() {
    let w = world(None);
    let dest = tempfile::tempdir().unwrap();
    let work = dest.path().join("erpnext");
    git_ok(None, &["clone", "--quiet", &w.server.repo_url("erpnext.git"), work.to_str().unwrap()]);
    let push = git(Some(&work), &["push", "origin", "HEAD:refs/heads/other"]);
    assert!(!push.status.success());
}

/// Sends one raw request; returns the status code and the response head.
fn raw_request(server: &GitServer, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let head = response.split("\r\n\r\n").next().unwrap().to_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head)
}

#[test]
fn dot_dot_paths_are_not_found() {
    let w = world(Some(TOKEN));
    for path in [
        "/../erpnext.git/info/refs?service=git-upload-pack",
        "/private/../erpnext.git/info/refs?service=git-upload-pack",
        "/x/%2e%2e/erpnext.git/info/refs?service=git-upload-pack",
        "/./private/app.git/info/refs?service=git-upload-pack",
    ] {
        let (status, head) = raw_request(&w.server, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(status, 404, "{path}");
        assert!(head.contains("Connection: close"), "{head}");
    }
    // Sanity check: the same request without `..` succeeds.
    let (status, _) =
        raw_request(&w.server, "GET /erpnext.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    // Collapsing slashes must not sneak past the private prefix.
    let (status, _) =
        raw_request(&w.server, "GET //private/app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 401);
}

#[test]
fn chunked_request_body_reaches_http_backend() {
    let w = world(None);
    // A protocol-v2 `ls-refs` command, sent chunked in odd-sized pieces.
    let body = b"0014command=ls-refs\n00010009peel\n0000";
    let mut request = b"POST /erpnext.git/git-upload-pack HTTP/1.1\r\nHost: x\r\n\
Content-Type: application/x-git-upload-pack-request\r\n\
Accept: application/x-git-upload-pack-result\r\nGit-Protocol: version=2\r\n\
Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for piece in body.chunks(7) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");

    let mut stream = TcpStream::connect(w.server.addr()).unwrap();
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.contains(&format!("{} refs/heads/main", w.c2)), "{response}");
    assert!(response.contains(&format!("{} refs/tags/v2.0.0 peeled:{}", w.annotated, w.c2)), "{response}");
}

#[test]
fn drop_stops_the_server() {
    let w = world(None);
    let World { server, _root, .. } = w;
    let addr = server.addr();
    assert!(server.url().starts_with("http://127.0.0.1:"));
    assert_eq!(server.repo_url("/a.git"), format!("{}/a.git", server.url()));
    drop(server);
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn binary_prints_listening_line_and_serves() {
    let root = tempfile::tempdir().unwrap();
    let repo = TestRepo::create(root.path(), "private/app.git").unwrap();
    let commit = repo.commit("one").unwrap();
    let pid_file = root.path().join("server.pid");

    let mut child = Command::new(env!("CARGO_BIN_EXE_benchform-gitserver"))
        .args(["--root", root.path().to_str().unwrap()])
        .args(["--bind", "127.0.0.1:0", "--token-env", "BENCHFORM_TEST_TOKEN"])
        .args(["--pid-file", pid_file.to_str().unwrap()])
        .env("BENCHFORM_TEST_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    let url = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}"));
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert_eq!(pid, child.id());

    let host = url.strip_prefix("http://").unwrap();
    let authed = format!("http://{TOKEN}@{host}/private/app.git");
    let result = git(None, &["ls-remote", &authed]);
    let anonymous = git(None, &["ls-remote", &format!("{url}/private/app.git")]);
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert!(String::from_utf8_lossy(&result.stdout).contains(&commit));
    assert!(!anonymous.status.success());
}

#[test]
fn binary_rejects_missing_token_variable() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_benchform-gitserver"))
        .args(["--root", root.path().to_str().unwrap()])
        .args(["--token-env", "BENCHFORM_TEST_TOKEN_UNSET"])
        .env_remove("BENCHFORM_TEST_TOKEN_UNSET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

//! `gunicorn`, as the bench-contract image's backend runs it: Frappe's WSGI application reduced
//! to what benchform's deploy health gate meets, with Frappe's site routing and status codes.
//!
//! `GET /api/method/ping` with `Host: SITE` (port ignored; `X-Frappe-Site-Name` wins, as in
//! frappe's `get_site_name`):
//! - no such site → 404 (frappe: `NotFound`, the site's conf is empty);
//! - the site's conf has `maintenance_mode` → 503 `SessionStopped` (frappe raises it for every
//!   request once it has connected to the site's database);
//! - otherwise → 200 `{"message": "pong"}`.
//!
//! Any other path is 404. Build-time faults (`BENCH_CONTRACT_FAULT` at `bench init`, baked as
//! a marker file in the bench root): `backend-down` → every request answers 500 (the app loads
//! but fails); `backend-crash` → gunicorn exits 1 at start (the app fails to import), so the
//! container restarts over and over.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::bench::{Bench, truthy};

/// The marker files the build-time faults leave in the bench root.
pub const BACKEND_DOWN: &str = ".bench-contract-backend-down";
pub const BACKEND_CRASH: &str = ".bench-contract-backend-crash";

/// `gunicorn [--bind=HOST:PORT] [other gunicorn options] APP`.
pub fn run(args: &[String]) -> Result<(), u8> {
    let bench = Bench::from_env();
    if bench.root.join(BACKEND_CRASH).exists() {
        eprintln!(
            "[ERROR] Exception in worker process\nImportError: the app failed to import (bench-contract fault backend-crash)"
        );
        return Err(1);
    }
    let bind = args
        .iter()
        .find_map(|a| a.strip_prefix("--bind="))
        .or_else(|| {
            args.iter().position(|a| a == "--bind" || a == "-b").and_then(|i| args.get(i + 1)).map(String::as_str)
        })
        .unwrap_or("0.0.0.0:8000");
    let listener = TcpListener::bind(bind).map_err(|e| {
        eprintln!("[ERROR] Can't connect to {bind}: {e}");
        1
    })?;
    eprintln!("[INFO] Listening at: http://{bind}");
    for stream in listener.incoming().flatten() {
        let bench = bench.clone();
        std::thread::spawn(move || answer(&bench, stream));
    }
    Ok(())
}

fn answer(bench: &Bench, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let (status, body) = respond(bench, &head);
    let reason = match status {
        200 => "OK",
        404 => "NOT FOUND",
        503 => "SERVICE UNAVAILABLE",
        _ => "INTERNAL SERVER ERROR",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The status and body frappe would answer to a request with this head.
pub fn respond(bench: &Bench, head: &str) -> (u16, String) {
    if bench.root.join(BACKEND_DOWN).exists() {
        return (500, r#"{"exc_type": "ImportError", "exception": "bench-contract fault backend-down"}"#.into());
    }
    let mut lines = head.lines();
    let path = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("/");
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let site = header("X-Frappe-Site-Name")
        .or_else(|| header("Host").map(|h| h.rsplit_once(':').map_or(h.clone(), |(host, _)| host.to_string())))
        .unwrap_or_default();
    if !bench.site_exists(&site) {
        return (404, format!(r#"{{"exc_type": "NotFound", "exception": "{site} does not exist"}}"#));
    }
    if truthy(bench.conf(&site).get("maintenance_mode")) {
        return (503, r#"{"exc_type": "SessionStopped", "exception": "Session Stopped"}"#.into());
    }
    if path.split('?').next() == Some("/api/method/ping") {
        return (200, r#"{"message": "pong"}"#.into());
    }
    (404, r#"{"exc_type": "DoesNotExistError"}"#.into())
}

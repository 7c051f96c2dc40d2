//! Why a TLS engine refused this client, read from the engine itself.
//!
//! With TLS 1.3 the server checks the client's certificate after the client considers the
//! handshake done, so its "bad certificate" alert races the HTTP client's first request: hyper
//! may report only that the connection closed ("connection was not ready"). When connecting
//! failed for a reason nobody named, this probe makes one connection of its own with the same
//! files, sends a `/_ping` and reads until the engine answers or says why it will not.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const TIMEOUT: Duration = Duration::from_secs(10);

/// What one probe connection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The engine answered over TLS: it took the client certificate.
    Answered,
    /// TLS itself failed: the engine's alert, or rustls' verdict on its certificate.
    Refused(String),
    /// The probe could not get that far (files unreadable, no connection, a timeout): the
    /// caller's own error stands.
    Inconclusive,
}

/// What the engine at `host` (`tcp://h:p` or `https://h:p`) says to a client with the files in
/// `dir`.
pub fn probe(host: &str, dir: &std::path::Path) -> Probe {
    attempt(host, dir).unwrap_or(Probe::Inconclusive)
}

fn attempt(host: &str, dir: &std::path::Path) -> Option<Probe> {
    let authority = host.trim_start_matches("tcp://").trim_start_matches("https://");
    let authority = authority.split('/').next().unwrap_or(authority);
    let name = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let config = client_config(dir).ok()?;
    let server = ServerName::try_from(name.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), server).ok()?;
    let addr = authority.to_socket_addrs().ok()?.next()?;
    let mut sock = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    sock.set_read_timeout(Some(TIMEOUT)).ok()?;
    sock.set_write_timeout(Some(TIMEOUT)).ok()?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let request = format!("GET /_ping HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if let Err(e) = tls.write_all(request.as_bytes()) {
        return tls_error(&e).map(Probe::Refused);
    }
    let mut answer = Vec::new();
    match (&mut tls).take(4096).read_to_end(&mut answer) {
        Ok(_) if answer.starts_with(b"HTTP/") => Some(Probe::Answered),
        Ok(_) => None,
        // The engine closes the connection after its answer without TLS's close_notify.
        Err(_) if answer.starts_with(b"HTTP/") => Some(Probe::Answered),
        Err(e) => tls_error(&e).map(Probe::Refused),
    }
}

/// Only TLS's own errors (an alert, a certificate rejected): a timeout or reset says nothing
/// the caller does not already know.
fn tls_error(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?;
    inner.downcast_ref::<rustls::Error>().map(|e| e.to_string())
}

fn client_config(dir: &std::path::Path) -> Result<rustls::ClientConfig, Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(dir.join("ca.pem"))? {
        roots.add(cert?)?;
    }
    let chain = CertificateDer::pem_file_iter(dir.join("cert.pem"))?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?)
}

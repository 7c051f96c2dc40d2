//! Just enough HTTP/1.1 to sit in front of a CGI program: one request per
//! connection, bodies by `Content-Length` or chunked, and a buffered response.

use std::io::{self, BufRead, Read, Write};

/// Upper bound on the request line plus headers. Git's requests are tiny; the
/// cap only keeps a confused client from growing memory without bound.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Upper bound on a single header or chunk-size line.
const MAX_LINE_BYTES: usize = 16 * 1024;
/// Upper bound on a (decoded) request body. Test pushes are far smaller.
pub(crate) const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

/// The request line and headers, before the body is read (the body is only
/// read once authorization has been decided).
#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl RequestHead {
    /// First value of a header, matched case-insensitively.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the client asked for `100 Continue` before sending its body.
    pub(crate) fn expects_continue(&self) -> bool {
        self.header("expect").is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// Whether a body follows the head at all.
    pub(crate) fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some() || self.header("content-length").is_some_and(|v| v.trim() != "0")
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

/// Reads one `\n`-terminated line (without the line ending), failing on EOF
/// or when the line exceeds `limit` bytes.
fn read_line<R: BufRead>(reader: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    // `limit + 2` leaves room for the CRLF itself.
    let n = reader.by_ref().take((limit + 2) as u64).read_until(b'\n', &mut line)?;
    if n == 0 || line.last() != Some(&b'\n') {
        if n > limit {
            return Err(invalid("line too long"));
        }
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// Reads the request line and headers up to the blank line.
pub(crate) fn read_head<R: BufRead>(reader: &mut R) -> io::Result<RequestHead> {
    let mut total = 0usize;
    let request_line = read_line(reader, MAX_LINE_BYTES)?;
    total += request_line.len();
    let request_line = String::from_utf8(request_line).map_err(|_| invalid("non-UTF-8 request line"))?;
    let mut parts = request_line.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("unsupported HTTP version"));
    }

    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, MAX_LINE_BYTES)?;
        if line.is_empty() {
            break;
        }
        total += line.len();
        if total > MAX_HEAD_BYTES {
            return Err(invalid("request head too large"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(invalid("obsolete header folding is not supported"));
        }
        let line = String::from_utf8(line).map_err(|_| invalid("non-UTF-8 header"))?;
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid("header without a colon"));
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }

    Ok(RequestHead { method: method.to_owned(), target: target.to_owned(), headers })
}

/// Reads the request body, undoing chunked transfer coding so the CGI sees
/// the body exactly as the client produced it (still gzip-compressed, if it
/// was: `git http-backend` inflates that itself).
pub(crate) fn read_body<R: BufRead>(head: &RequestHead, reader: &mut R) -> io::Result<Vec<u8>> {
    if let Some(te) = head.header("transfer-encoding") {
        let last = te.rsplit(',').next().unwrap_or_default().trim();
        if !last.eq_ignore_ascii_case("chunked") {
            return Err(invalid("unsupported transfer-encoding"));
        }
        return decode_chunked(reader, MAX_BODY_BYTES);
    }
    let Some(len) = head.header("content-length") else {
        return Ok(Vec::new());
    };
    let len: usize = len.trim().parse().map_err(|_| invalid("bad content-length"))?;
    if len > MAX_BODY_BYTES {
        return Err(invalid("body too large"));
    }
    read_exactly(reader, len)
}

fn read_exactly<R: Read>(reader: &mut R, len: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(len.min(1024 * 1024));
    reader.take(len as u64).read_to_end(&mut body)?;
    if body.len() != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-body"));
    }
    Ok(body)
}

/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 §7.1): hex sizes
/// with optional extensions, data, CRLF, a zero-size last chunk and optional
/// trailers, which are discarded.
pub(crate) fn decode_chunked<R: BufRead>(reader: &mut R, max: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader, MAX_LINE_BYTES)?;
        let line = std::str::from_utf8(&line).map_err(|_| invalid("bad chunk size"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailer section, up to the final blank line.
            while !read_line(reader, MAX_LINE_BYTES)?.is_empty() {}
            return Ok(body);
        }
        if body.len().saturating_add(size) > max {
            return Err(invalid("body too large"));
        }
        body.extend_from_slice(&read_exactly(reader, size)?);
        if !read_line(reader, 0)?.is_empty() {
            return Err(invalid("chunk data not followed by CRLF"));
        }
    }
}

/// Decodes `%XX` escapes in a URL path. `None` on a malformed escape or a
/// result that is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Standard-alphabet base64 (RFC 4648 §4) as used by Basic auth; padding is optional.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(s).ok()
}

/// A fully buffered response; always sent with `Connection: close`.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            reason: reason_phrase(status).to_owned(),
            headers: vec![("Content-Type".to_owned(), "text/plain; charset=utf-8".to_owned())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// Writes the response; `close_delimited` leaves out `Content-Length` (the body ends when
    /// the connection closes).
    pub(crate) fn write_to<W: Write>(&self, out: &mut W, head_only: bool, close_delimited: bool) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if !close_delimited {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        out.write_all(head.as_bytes())?;
        if !head_only {
            out.write_all(&self.body)?;
        }
        out.flush()
    }
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Unknown",
    }
}

/// Turns CGI output (headers, blank line, body) into an HTTP response: the
/// `Status:` header becomes the status line (200 when absent) and framing
/// headers are dropped because we set our own.
pub(crate) fn parse_cgi_output(out: &[u8]) -> Option<Response> {
    let crlf = find(out, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = find(out, b"\n\n").map(|i| (i, i + 2));
    let (head_end, body_start) = match (crlf, lf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (a, b) => a.or(b)?,
    };
    let head = std::str::from_utf8(&out[..head_end]).ok()?;
    let mut response =
        Response { status: 200, reason: "OK".to_owned(), headers: Vec::new(), body: out[body_start..].to_vec() };
    for line in head.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':')?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("status") {
            let (code, reason) = value.split_once(' ').unwrap_or((value, ""));
            response.status = code.parse().ok()?;
            response.reason = if reason.trim().is_empty() {
                reason_phrase(response.status).to_owned()
            } else {
                reason.trim().to_owned()
            };
        } else if ["content-length", "connection", "transfer-encoding"].iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        } else {
            response.headers.push((name.to_owned(), value.to_owned()));
        }
    }
    Some(response)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn decodes_chunked_body_with_extensions_and_trailers() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
        let mut reader = Cursor::new(&wire[..]);
        let body = decode_chunked(&mut reader, 1024).unwrap();
        assert_eq!(body, b"hello, world");
        // Nothing past the terminating blank line was consumed.
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"NEXT");
    }

    #[test]
    fn decodes_chunked_body_with_uppercase_hex_and_binary_data() {
        let mut wire = b"1A\r\n".to_vec();
        let data: Vec<u8> = (0u8..26).map(|b| b.wrapping_mul(37)).collect();
        wire.extend_from_slice(&data);
        wire.extend_from_slice(b"\r\n0\r\n\r\n");
        let body = decode_chunked(&mut Cursor::new(wire), 1024).unwrap();
        assert_eq!(body, data);
    }

    #[test]
    fn rejects_truncated_or_malformed_chunks() {
        for wire in [&b"5\r\nhel"[..], b"5\r\nhelloXX0\r\n\r\n", b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n"] {
            assert!(decode_chunked(&mut Cursor::new(wire), 1024).is_err(), "{wire:?}");
        }
        assert!(decode_chunked(&mut Cursor::new(&b"5\r\nhello\r\n0\r\n\r\n"[..]), 4).is_err());
    }

    #[test]
    fn reads_head_and_content_length_body() {
        let wire = b"POST /a.git/git-upload-pack HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 4\r\n\r\n0000";
        let mut reader = Cursor::new(&wire[..]);
        let head = read_head(&mut reader).unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.target, "/a.git/git-upload-pack");
        assert_eq!(head.header("Content-Length"), Some("4"));
        assert_eq!(read_body(&head, &mut reader).unwrap(), b"0000");
    }

    #[test]
    fn reads_chunked_body_through_head() {
        let wire = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n0000\r\n0\r\n\r\n";
        let mut reader = Cursor::new(&wire[..]);
        let head = read_head(&mut reader).unwrap();
        assert_eq!(read_body(&head, &mut reader).unwrap(), b"0000");
    }

    #[test]
    fn base64_round_trips_known_vectors() {
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
            ("eDpzM2NyM3Q=", "x:s3cr3t"),
        ] {
            assert_eq!(base64_decode(enc).unwrap(), dec.as_bytes(), "{enc}");
        }
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Zm9v!").is_none());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%2Eb").unwrap(), "/a.b");
        assert!(percent_decode("/a%2").is_none());
        assert!(percent_decode("/a%zz").is_none());
    }

    #[test]
    fn parses_cgi_status_and_drops_framing_headers() {
        let out = b"Status: 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nnah";
        let r = parse_cgi_output(out).unwrap();
        assert_eq!((r.status, r.reason.as_str()), (404, "Not Found"));
        assert_eq!(r.headers, vec![("Content-Type".to_owned(), "text/plain".to_owned())]);
        assert_eq!(r.body, b"nah");

        let r = parse_cgi_output(b"Content-Type: x\n\nbody").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"body");
        assert!(parse_cgi_output(b"no header end").is_none());
    }
}

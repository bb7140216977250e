//! The two head conversions between an HTTP/2 stream and the HTTP/1.1 the rest of the
//! gateway speaks:
//!
//! ```text
//! h2 request (pseudo-headers, header map) → write_head → HTTP/1.1 request head in a buffer
//!   (Host = :authority, cookies joined, chunked when a body has no length) → parse_head
//! HTTP/1.1 response head (the gateway's own or the backend's, as the HTTP/1.1 path writes
//!   it) → to_h2_response → http::Response without the connection-specific headers
//! ```

use bytes::Bytes;

use crate::error::{ErrorKind, GatewayError};

/// Response headers that describe one HTTP/1.1 connection, never sent over HTTP/2
/// (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// The HTTP/1.1 head of an HTTP/2 request, for `parse_head` and the gateway.
pub(super) fn write_head(
    parts: &http::request::Parts,
    target: &str,
    host: &str,
    has_body: bool,
    out: &mut Vec<u8>,
) -> Result<(), GatewayError> {
    let bad = |why| GatewayError::new(ErrorKind::BadRequest(why));
    if parts.method == http::Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !host.is_empty() {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Cookies may come as several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
    let mut cookies = parts.headers.get_all(http::header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.extend_from_slice(b"Cookie: ");
        out.extend_from_slice(first.as_bytes());
        for c in cookies {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    let mut length = false;
    for (name, value) in &parts.headers {
        if name == http::header::HOST || name == http::header::COOKIE {
            continue;
        }
        let v = value.as_bytes();
        // The http crate refuses these already; a line break here would be a new header.
        if v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad("header value contains a line break"));
        }
        length |= name == http::header::CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if has_body && !length {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// Response headers whose values differ from one response to the next: HPACK sends them as
/// literals never indexed, so that they neither fill the connection's dynamic table (each
/// would evict a reusable entry and be compared against by every later header) nor cost an
/// insertion that no later response can use.
const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-api-requestid");

const UNIQUE: [&str; 3] = ["x-api-requestid", "ratelimit", "retry-after"];

/// An HTTP/1.1 response head (as the gateway writes them: `HTTP/1.1 NNN reason\r\n`, then
/// `Name: value\r\n` lines, then a blank line) as an HTTP/2 response without the
/// connection-specific headers; and the head's length.
pub(super) fn to_h2_response(raw: &[u8]) -> Option<(http::Response<()>, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let status = raw.get(9..12)?;
    let status = http::StatusCode::from_bytes(status).ok()?;
    let mut res = http::Response::new(());
    *res.status_mut() = status;
    // One copy of the head: every header value is a slice of it (no allocation each).
    let text = Bytes::copy_from_slice(&raw[..end - 2]);
    let headers = res.headers_mut();
    let mut at = text.iter().position(|&b| b == b'\n')? + 1;
    while at < text.len() {
        let stop = at + text[at..].iter().position(|&b| b == b'\n')?;
        let line = &text[at..stop];
        let start = at;
        at = stop + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let name = if name.eq_ignore_ascii_case(b"x-api-requestid") {
            REQUEST_ID
        } else {
            http::HeaderName::from_bytes(name).ok()?
        };
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let from = start + (value.as_ptr() as usize - line.as_ptr() as usize);
        let value = text.slice(from..from + value.len());
        let Ok(mut value) = http::HeaderValue::from_maybe_shared(value) else {
            return None;
        };
        if UNIQUE.contains(&name.as_str()) {
            value.set_sensitive(true);
        }
        headers.append(name, value);
    }
    Some((res, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_lose_their_connection_headers() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nKeep-Alive: 5\r\nX-Api-RequestId: r1\r\n\r\nbody";
        let (res, len) = to_h2_response(raw).unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(&raw[len..], b"body");
        let names: Vec<_> = res.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-api-requestid"]);
        assert!(res.headers()["x-api-requestid"].is_sensitive());
        assert!(!res.headers()["content-type"].is_sensitive());
    }

    #[test]
    fn requests_become_http_1_1_heads() {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://api.example.test/a?b=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-k", "v")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        write_head(&parts, "/a?b=1", "api.example.test", true, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nHost: api.example.test\r\nCookie: a=1; b=2\r\nx-k: v\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }
}

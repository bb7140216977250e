//! Responses the gateway makes itself: SPEC §6 errors and mock backends, plus the
//! `X-Api-RequestId` values that every response carries.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::GatewayError;

/// Largest worker index a request id holds: `workers` is at most 1,024.
pub const MAX_WORKER_ID: usize = 0xfff;

/// Request ids: unique across workers and restarts without coordination. Each is the
/// process start time, the worker index (three hex digits: up to 4,096 workers) and a
/// per-worker counter, in hex (`18a3f1c2e4b5d6f7-001-000000000000002a`).
#[derive(Debug)]
pub struct RequestIds {
    prefix: String,
    next: u64,
}

impl RequestIds {
    pub fn new(worker: usize) -> RequestIds {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RequestIds {
            prefix: format!("{started:016x}-{:03x}-", worker & MAX_WORKER_ID),
            next: 0,
        }
    }

    /// Writes the next id into `out` (cleared first).
    pub fn next_into(&mut self, out: &mut String) {
        out.clear();
        out.push_str(&self.prefix);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for shift in (0..16).rev() {
            out.push(HEX[(self.next >> (shift * 4)) as usize & 0xf] as char);
        }
        self.next += 1;
    }
}

/// The reason phrase of the statuses the gateway sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A whole response: head and body. `head_request` sends the head only (with the length the
/// body would have); `close` adds `Connection: close`.
pub struct Reply<'a> {
    pub status: u16,
    pub content_type: &'a str,
    pub body: &'a [u8],
    pub request_id: &'a str,
    pub head_request: bool,
    pub close: bool,
    /// Further header lines (`Name: value\r\n`...), e.g. CORS.
    pub extra_headers: &'a [u8],
}

impl Reply<'_> {
    /// Appends the response to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        let no_body = self.status == 204 || self.status == 304 || (100..200).contains(&self.status);
        if !self.content_type.is_empty() && !no_body {
            let _ = write!(out, "Content-Type: {}\r\n", self.content_type);
        }
        if !no_body {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        let _ = write!(out, "X-Api-RequestId: {}\r\n", self.request_id);
        out.extend_from_slice(self.extra_headers);
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !self.head_request && !no_body {
            out.extend_from_slice(self.body);
        }
    }
}

/// Appends the JSON error response for `e` to `out`; the connection closes if the error
/// requires it or the client asked.
pub fn write_error(
    out: &mut Vec<u8>,
    e: &GatewayError,
    request_id: &str,
    head_request: bool,
    client_close: bool,
    extra_headers: &[u8],
) {
    let body = e.body();
    Reply {
        status: e.status(),
        content_type: "application/json",
        body: body.as_bytes(),
        request_id,
        head_request,
        close: client_close || e.closes_connection(),
        extra_headers,
    }
    .write(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn error_responses() {
        let mut out = Vec::new();
        let e = GatewayError::new(ErrorKind::NotFound(
            "There is no api match uri[/x] host[h]".into(),
        ));
        write_error(&mut out, &e, "rid", false, false, b"");
        let body = r#"{"message":"There is no api match uri[/x] host[h]"}"#;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Api-RequestId: rid\r\n\r\n{body}",
                body.len()
            )
        );
        let mut out = Vec::new();
        write_error(
            &mut out,
            &GatewayError::new(ErrorKind::BadRequest("bare LF in the request head")),
            "r",
            true,
            false,
            b"",
        );
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n")
                && text.contains("Connection: close\r\n"),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "HEAD: no body: {text}");
    }

    #[test]
    fn mock_responses() {
        let mut out = Vec::new();
        Reply {
            status: 204,
            content_type: "text/plain",
            body: b"ignored",
            request_id: "r",
            head_request: false,
            close: false,
            extra_headers: b"",
        }
        .write(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 204 No Content\r\nX-Api-RequestId: r\r\n\r\n"
        );
        let mut out = Vec::new();
        Reply {
            status: 299,
            content_type: "text/plain",
            body: b"hi",
            request_id: "r",
            head_request: false,
            close: false,
            extra_headers: b"",
        }
        .write(&mut out);
        assert_eq!(out, b"HTTP/1.1 299 \r\nContent-Type: text/plain\r\nContent-Length: 2\r\nX-Api-RequestId: r\r\n\r\nhi");
    }

    #[test]
    fn request_ids_are_unique() {
        let (mut a, mut b) = (RequestIds::new(0), RequestIds::new(1));
        let mut seen = std::collections::HashSet::new();
        let mut id = String::new();
        for _ in 0..1000 {
            a.next_into(&mut id);
            assert!(seen.insert(id.clone()));
            b.next_into(&mut id);
            assert!(seen.insert(id.clone()));
        }
        assert_eq!(id.len(), 16 + 1 + 3 + 1 + 16);
        assert!(id.ends_with("-001-00000000000003e7"), "{id}");
        b.next = 0xfedc_ba98_7654_3210;
        b.next_into(&mut id);
        assert!(id.ends_with("-001-fedcba9876543210"), "{id}");
    }
}

//! Backend response heads: where the answer's body ends, and whether the pooled upstream
//! connection may carry another request (RFC 9112 §6.3, §9.3).
//!
//! The answer is passed through unchanged (SPEC §3), so this module only reads it:
//! [`parse_response_head`] fills a reused [`ResponseHead`] with offsets into the read buffer
//! and decides the body framing. A head the gateway cannot delimit safely is a 502.

use super::head::{MAX_HEADERS_CAP, Span, content_length_value};
use crate::error::{ErrorKind, GatewayError};

/// Largest backend response head accepted.
pub const MAX_RESPONSE_HEAD_BYTES: usize = 64 * 1024;

/// How the response body is delimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body (HEAD, 1xx, 204, 304, or Content-Length: 0).
    #[default]
    None,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
    /// 101 Switching Protocols: the connection becomes a tunnel.
    Upgrade,
}

#[derive(Clone, Debug, Default)]
pub struct ResponseHead {
    pub status: u16,
    pub minor_version: u8,
    pub headers: Vec<(Span, Span)>,
    /// Bytes of the head, including the blank line.
    pub len: usize,
    pub framing: ResponseFraming,
    /// The upstream connection can be pooled after the body.
    pub reusable: bool,
}

/// Whether the head is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Complete,
    Partial,
}

fn broken(why: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadGateway(format!(
        "invalid response from the backend: {why}"
    )))
}

/// Parses a response head; `head_request` says whether the request was a HEAD.
pub fn parse_response_head(
    buf: &[u8],
    head_request: bool,
    out: &mut ResponseHead,
) -> Result<Progress, GatewayError> {
    // Left uninitialised: httparse writes only the slots it fills (no 8 KiB memset per head).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP + 1];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut slots);
    let len = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD_BYTES => {
            return Err(broken("head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(Progress::Partial),
        Err(e) => return Err(broken(&e.to_string())),
    };
    if len > MAX_RESPONSE_HEAD_BYTES {
        return Err(broken("head too large"));
    }
    let (Some(status), Some(version)) = (res.code, res.version) else {
        return Err(broken("incomplete status line"));
    };
    out.headers.clear();
    let mut content_length: Option<u64> = None;
    let (mut te_seen, mut last_chunked, mut close, mut keep_alive) = (false, false, false, false);
    for h in res.headers.iter() {
        out.headers
            .push((Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value)));
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = content_length_value(h.value).ok_or_else(|| broken("bad Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(broken("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_seen = true;
            if let Some(last) = h
                .value
                .split(|&b| b == b',')
                .map(|c| c.trim_ascii())
                .next_back()
            {
                last_chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    out.status = status;
    out.minor_version = version;
    out.len = len;
    out.framing = if status == 101 {
        ResponseFraming::Upgrade
    } else if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        ResponseFraming::None
    } else if te_seen && last_chunked {
        ResponseFraming::Chunked
    } else if te_seen {
        ResponseFraming::UntilClose
    } else {
        match content_length {
            Some(0) => ResponseFraming::None,
            Some(n) => ResponseFraming::Length(n),
            None => ResponseFraming::UntilClose,
        }
    };
    // A response framed by both TE and CL may have been meant two ways: do not reuse.
    let ambiguous = te_seen && content_length.is_some();
    out.reusable = !close
        && !ambiguous
        && (version == 1 || keep_alive)
        && !matches!(
            out.framing,
            ResponseFraming::UntilClose | ResponseFraming::Upgrade
        );
    Ok(Progress::Complete)
}

/// What the client connection does after this response, as told in its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientConnection {
    /// HTTP/1.1 keepalive: nothing to say.
    KeepAlive,
    /// An HTTP/1.0 client that asked for keepalive: `Connection: keep-alive`.
    KeepAlive10,
    /// The gateway closes after this response: `Connection: close`.
    Close,
}

/// Hop-by-hop headers of the backend's answer that describe the backend connection, not the
/// client's; the gateway states its own.
const RESPONSE_HOP_BY_HOP: [&[u8]; 3] = [b"connection", b"keep-alive", b"proxy-connection"];

/// Writes the head the client gets for a backend answer (appended to `out`): the status line
/// and headers unchanged except the connection headers, plus `X-Api-RequestId` and the
/// gateway's own `Connection` header. Interim (1xx) heads other than 101 are not rewritten.
pub fn write_client_head(
    buf: &[u8],
    head: &ResponseHead,
    request_id: &str,
    conn: ClientConnection,
    extra: &[u8],
    out: &mut Vec<u8>,
) {
    let raw = &buf[..head.len];
    // The parser skips empty lines before the status line (RFC 9112 §2.2); the client
    // gets the status line alone.
    let start = raw
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw.len());
    let line_end = raw[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |i| start + i + 1);
    out.extend_from_slice(&raw[start..line_end]);
    for (n, v) in &head.headers {
        let name = n.get(buf);
        let upgrade = head.framing == ResponseFraming::Upgrade;
        if !upgrade
            && RESPONSE_HOP_BY_HOP
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"x-api-requestid") {
            continue;
        }
        // Headers the gateway adds replace the backend's (CORS: `Access-Control-*`).
        if !extra.is_empty() && header_in(extra, name) {
            continue;
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.get(buf));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"X-Api-RequestId: ");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(extra);
    match conn {
        ClientConnection::KeepAlive => {}
        ClientConnection::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        ClientConnection::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether the header lines `lines` (`Name: value\r\n`...) set `name`.
fn header_in(lines: &[u8], name: &[u8]) -> bool {
    lines.split(|&b| b == b'\n').any(|line| {
        line.iter()
            .position(|&b| b == b':')
            .is_some_and(|i| line[..i].eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], head_request: bool) -> Result<(Progress, ResponseHead), GatewayError> {
        let mut h = ResponseHead::default();
        parse_response_head(raw, head_request, &mut h).map(|p| (p, h))
    }

    #[test]
    fn framing_table() {
        use ResponseFraming::*;
        let cases: &[(&[u8], bool, ResponseFraming, bool)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, Length(5), true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, Length(5), true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, None, true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false, Chunked, true),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", false, Chunked, false),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, UntilClose, false),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, UntilClose, false),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n", false, Length(5), false),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false, Length(5), false),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n", false, Length(5), true),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, None, true),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", false, None, true),
            (b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", false, None, true),
            (b"HTTP/1.1 100 Continue\r\n\r\n", false, None, true),
            (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false, Upgrade, false),
        ];
        for (raw, head_request, framing, reusable) in cases {
            let (p, h) = parse(raw, *head_request).unwrap();
            assert_eq!(
                (p, h.framing, h.reusable),
                (Progress::Complete, *framing, *reusable),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn offsets_and_partial_heads() {
        let raw = b"HTTP/1.1 404 Not Found\r\nX-A: b\r\n\r\nbody";
        let (_, h) = parse(raw, false).unwrap();
        assert_eq!((h.status, h.len), (404, raw.len() - 4));
        assert_eq!(h.headers[0].1.get(raw), b"b");
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nX: y\r\n", false).unwrap().0,
            Progress::Partial
        );
    }

    #[test]
    fn undelimitable_heads_are_502() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"SMTP 220 hello\r\n\r\n",
        ] {
            assert_eq!(
                parse(raw, false).unwrap_err().status(),
                502,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let huge = format!(
            "HTTP/1.1 200 OK\r\nX: {}",
            "v".repeat(MAX_RESPONSE_HEAD_BYTES)
        );
        assert_eq!(parse(huge.as_bytes(), false).unwrap_err().status(), 502);
    }

    fn client_head(raw: &str, conn: ClientConnection) -> String {
        let mut head = ResponseHead::default();
        assert_eq!(
            parse_response_head(raw.as_bytes(), false, &mut head).unwrap(),
            Progress::Complete
        );
        let mut out = Vec::new();
        write_client_head(raw.as_bytes(), &head, "rid", conn, b"", &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn client_head_keeps_end_to_end_headers_and_states_the_gateway_connection() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Api-RequestId: forged\r\nX-Custom:  a b\r\n\r\nhi";
        assert_eq!(
            client_head(raw, ClientConnection::KeepAlive),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Custom: a b\r\nX-Api-RequestId: rid\r\n\r\n"
        );
        assert!(
            client_head(raw, ClientConnection::Close).ends_with("rid\r\nConnection: close\r\n\r\n")
        );
        assert!(
            client_head(raw, ClientConnection::KeepAlive10)
                .ends_with("rid\r\nConnection: keep-alive\r\n\r\n")
        );
        let up =
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert!(client_head(up, ClientConnection::KeepAlive).contains("Connection: Upgrade\r\n"));
        // Found by fuzzing: empty lines before the status line are not copied.
        assert_eq!(
            client_head("\r\n\nHTTP/1.0 170\r\n\n", ClientConnection::Close),
            "HTTP/1.0 170\r\nX-Api-RequestId: rid\r\nConnection: close\r\n\r\n"
        );
    }
}

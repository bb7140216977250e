//! The request head sent to the backend (SPEC §3): written in one pass from the client's
//! parsed head (offsets into its read buffer) into a reused output buffer.
//!
//! Order of work: request line (backend method or the client's, composed backend path,
//! the client's query with constant query params set last); the client's headers minus
//! hop-by-hop ones (Connection and the names it lists, Keep-Alive, TE, Trailer, Upgrade
//! unless a WebSocket is being set up, Proxy-*), minus the headers the gateway sets itself
//! and those a constant replaces; then X-Forwarded-For (appended), X-Real-IP,
//! X-Forwarded-Proto, X-Api-RequestId (and `Expect`, which the gateway answers itself); then the
//! constant headers. An HTTP/1.0 request is sent as HTTP/1.0. Framing headers
//! (Content-Length, Transfer-Encoding) pass through: the body is relayed as it came.

use std::io::Write as _;

use super::head::RequestHead;
use crate::config::{Backend, Location};

/// What the gateway knows about the request beyond its head.
pub struct ForwardContext<'a> {
    /// The client's IP address, as text (formatted once per connection).
    pub client_ip: &'a str,
    /// The client came over TLS.
    pub https: bool,
    pub request_id: &'a str,
    /// A WebSocket handshake is being forwarded: keep `Upgrade` and `Connection: Upgrade`.
    pub websocket: bool,
    /// Host to send when the client sent none (HTTP/1.0): the upstream's address.
    pub default_host: &'a str,
}

const HOP_BY_HOP: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-connection",
];
/// Headers the gateway sets itself, or (`Expect`) answers itself: it sends the client its
/// own `100 Continue` before relaying the body.
const SET_BY_GATEWAY: [&[u8]; 5] = [
    b"expect",
    b"x-forwarded-for",
    b"x-real-ip",
    b"x-forwarded-proto",
    b"x-api-requestid",
];

/// Writes the upstream request head into `out` (cleared first).
pub fn write_upstream_head(
    buf: &[u8],
    head: &RequestHead,
    backend: &Backend,
    backend_path: &str,
    query: Option<&str>,
    ctx: &ForwardContext<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    match backend.method {
        Some(m) => out.extend_from_slice(m.name().as_bytes()),
        None => out.extend_from_slice(head.method.get(buf)),
    }
    out.push(b' ');
    out.extend_from_slice(backend_path.as_bytes());
    write_query(query, backend, out);
    // An HTTP/1.0 client gets an HTTP/1.0 exchange, so the answer never comes chunked.
    out.extend_from_slice(if head.minor_version == 0 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });

    let connection_tokens = head
        .headers
        .iter()
        .filter(|(n, _)| n.get(buf).eq_ignore_ascii_case(b"connection"))
        .map(|(_, v)| v.get(buf));
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let constant_sets = |name: &[u8]| {
        backend
            .constants
            .iter()
            .any(|c| c.location == Location::Header && c.name.as_bytes().eq_ignore_ascii_case(name))
    };
    let mut host_sent = false;
    for (n, v) in &head.headers {
        let (name, value) = (n.get(buf), v.get(buf));
        if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            forwarded_for.push(value);
            continue;
        }
        let hop = HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || name.len() > 6 && name[..6].eq_ignore_ascii_case(b"proxy-")
            || connection_tokens.clone().any(|list| {
                list.split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(name))
            });
        let keep_for_websocket = ctx.websocket && name.eq_ignore_ascii_case(b"upgrade");
        if (hop && !keep_for_websocket)
            || SET_BY_GATEWAY.iter().any(|h| name.eq_ignore_ascii_case(h))
            || constant_sets(name)
        {
            continue;
        }
        host_sent |= name.eq_ignore_ascii_case(b"host");
        header(out, name, value);
    }
    if !host_sent && !constant_sets(b"host") {
        header(out, b"Host", ctx.default_host.as_bytes());
    }
    if ctx.websocket {
        header(out, b"Connection", b"Upgrade");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for v in forwarded_for.iter().filter(|v| !v.is_empty()) {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(ctx.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    header(out, b"X-Real-IP", ctx.client_ip.as_bytes());
    header(
        out,
        b"X-Forwarded-Proto",
        if ctx.https { b"https" } else { b"http" },
    );
    header(out, b"X-Api-RequestId", ctx.request_id.as_bytes());
    for c in backend
        .constants
        .iter()
        .filter(|c| c.location == Location::Header)
    {
        header(out, c.name.as_bytes(), c.value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The client's query, without the names a constant sets, then the constants.
fn write_query(query: Option<&str>, backend: &Backend, out: &mut Vec<u8>) {
    let constants = || {
        backend
            .constants
            .iter()
            .filter(|c| c.location == Location::Query)
    };
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        out.push(if first { b'?' } else { b'&' });
        first = false;
    };
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if constants().any(|c| c.name == name) {
            continue;
        }
        if pair.is_empty() {
            continue;
        }
        sep(out);
        out.extend_from_slice(pair.as_bytes());
    }
    for c in constants() {
        sep(out);
        percent_encode(c.name.as_bytes(), out);
        out.push(b'=');
        percent_encode(c.value.as_bytes(), out);
    }
}

/// Encodes everything but RFC 3986 unreserved characters.
fn percent_encode(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests;

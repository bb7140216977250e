//! The request head sent to the backend (SPEC §3): written in one pass from the client's
//! parsed head (offsets into its read buffer) into a reused output buffer.
//!
//! Order of work: request line (backend method or the client's, composed backend path,
//! the client's query with constant query params set last); the client's headers (with an
//! absolute-form target's authority as sent for the Host value, RFC 9112 §3.2.2), minus
//! hop-by-hop ones (Connection and the names it lists, Keep-Alive, TE, Trailer, Upgrade
//! unless a WebSocket is being set up, Proxy-*), minus the headers the gateway sets itself
//! and those a constant replaces; then X-Forwarded-For (appended), X-Real-IP,
//! X-Forwarded-Proto, X-Api-RequestId (and `Expect`, which the gateway answers itself), the
//! caller's identity from the auth stage (X-Api-SecretId or X-Api-Subject; client copies of
//! all these are dropped); then the params the params stage placed; then the constant headers. An HTTP/1.0 request is sent as HTTP/1.0. Framing headers
//! (Content-Length, Transfer-Encoding) pass through: the body is relayed as it came.

use super::auth::{Identity, Permit};
use super::params::{ParamValues, backend_target, is_moved};
use super::query;
use crate::config::{Backend, Location, Param};
use crate::http::head::RequestHead;
use crate::router::target::absolute_authority;

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

/// What the gateway decided for this request (see [`super::decide`]).
pub struct Plan<'a> {
    pub backend: &'a Backend,
    /// The API's declared params (those that move are removed from where they came).
    pub params: &'a [Param],
    /// Param values to place (moved or defaulted), by param index.
    pub placed: &'a ParamValues,
    /// The auth stage's permit: the caller's identity and the credentials to leave out.
    pub permit: &'a Permit<'a>,
    pub backend_path: &'a str,
    /// The client's query string, without `?`.
    pub query: Option<&'a str>,
}

const HOP_BY_HOP: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-connection",
];
/// Headers the gateway sets itself — a client can never forge them — or (`Expect`) answers
/// itself: it sends the client its own `100 Continue` before relaying the body.
const SET_BY_GATEWAY: [&[u8]; 7] = [
    b"expect",
    b"x-forwarded-for",
    b"x-real-ip",
    b"x-forwarded-proto",
    b"x-api-requestid",
    b"x-api-secretid",
    b"x-api-subject",
];

/// Writes the upstream request head into `out` (cleared first).
pub fn write_upstream_head(
    buf: &[u8],
    head: &RequestHead,
    plan: &Plan<'_>,
    ctx: &ForwardContext<'_>,
    out: &mut Vec<u8>,
) {
    let backend = plan.backend;
    out.clear();
    match backend.method {
        Some(m) => out.extend_from_slice(m.name().as_bytes()),
        None => out.extend_from_slice(head.method.get(buf)),
    }
    out.push(b' ');
    out.extend_from_slice(plan.backend_path.as_bytes());
    write_query(plan, out);
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
    let placed_headers = || {
        plan.placed.iter().filter_map(|(i, v)| {
            let (name, loc) = backend_target(&plan.params[i]);
            (loc == Location::Header && !constant_sets(name.as_bytes())).then_some((name, v))
        })
    };
    // A param that moves leaves its header, and the header it moves to is the gateway's alone,
    // whether or not a value was placed this time (a client cannot pose as the mapping).
    let param_drops = |name: &[u8]| {
        plan.params.iter().any(|p| {
            let (to, loc) = backend_target(p);
            (p.location == Location::Header
                && is_moved(p)
                && p.name.as_bytes().eq_ignore_ascii_case(name))
                || (loc == Location::Header
                    && is_moved(p)
                    && to.as_bytes().eq_ignore_ascii_case(name))
        })
    };
    let strip_authorization = plan.permit.strips_authorization();
    // RFC 9112 §3.2.2: an absolute-form target's authority replaces the Host header; the
    // router routed by it too.
    let authority = absolute_authority(head.target.get(buf));
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
            || (strip_authorization && name.eq_ignore_ascii_case(b"authorization"))
            || param_drops(name)
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            host_sent = true;
            header(out, name, authority.unwrap_or(value));
            continue;
        }
        header(out, name, value);
    }
    if !host_sent
        && !constant_sets(b"host")
        && !placed_headers().any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        header(
            out,
            b"Host",
            authority.unwrap_or(ctx.default_host.as_bytes()),
        );
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
    match plan.permit.identity() {
        Identity::Anonymous | Identity::Subject(None) => {}
        Identity::SecretId(id) => header(out, b"X-Api-SecretId", id.as_bytes()),
        Identity::Subject(Some(sub)) => header(out, b"X-Api-Subject", sub.as_bytes()),
    }
    for (name, value) in placed_headers() {
        header(out, name.as_bytes(), value.as_bytes());
    }
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

/// The client's query byte for byte, without the names the gateway sets or moves (constants,
/// moved or placed params, a token the auth stage consumed), then the placed params, then the
/// constants.
fn write_query(plan: &Plan<'_>, out: &mut Vec<u8>) {
    let constants = || {
        plan.backend
            .constants
            .iter()
            .filter(|c| c.location == Location::Query)
    };
    let placed = || {
        plan.placed.iter().filter_map(|(i, v)| {
            let (name, loc) = backend_target(&plan.params[i]);
            (loc == Location::Query && !constants().any(|c| c.name == name)).then_some((name, v))
        })
    };
    let strip_token = plan.permit.strips_query();
    let mut first = true;
    let mut sep = |out: &mut Vec<u8>| {
        out.push(if first { b'?' } else { b'&' });
        first = false;
    };
    for pair in plan.query.into_iter().flat_map(query::pairs) {
        let dropped = constants().any(|c| query::name_is(pair.name, &c.name))
            || strip_token.is_some_and(|t| query::name_is(pair.name, t))
            || plan.params.iter().any(|p| {
                let (to, loc) = backend_target(p);
                (p.location == Location::Query && is_moved(p) && query::name_is(pair.name, &p.name))
                    || (loc == Location::Query && is_moved(p) && query::name_is(pair.name, to))
            })
            || placed().any(|(n, _)| query::name_is(pair.name, n));
        if dropped {
            continue;
        }
        sep(out);
        if let Some(q) = plan.query {
            out.extend_from_slice(&q.as_bytes()[pair.range]);
        }
    }
    for (name, value) in placed() {
        sep(out);
        query::encode_into(name.as_bytes(), out);
        out.push(b'=');
        query::encode_into(value.as_bytes(), out);
    }
    for c in constants() {
        sep(out);
        query::encode_into(c.name.as_bytes(), out);
        out.push(b'=');
        query::encode_into(c.value.as_bytes(), out);
    }
}

#[cfg(test)]
mod tests;

//! CORS for APIs with `cors = true` (SPEC §4).
//!
//! - Every response of such an API — passed-through backend answers and the gateway's own
//!   errors alike — carries [`RESPONSE_HEADERS`] (a browser cannot read even a 401 without
//!   them). The backend's own `Access-Control-Allow-Origin` / `-Expose-Headers` are replaced,
//!   so the client never sees two.
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) whose path
//!   reaches a CORS API with some method is answered 204 by the gateway: allow-methods are
//!   the methods whose request on this path would reach a CORS API, allow-headers echo the
//!   request's `Access-Control-Request-Headers`, max-age [`MAX_AGE_SECS`]. It never reaches
//!   auth or the backend. A preflight for a path without a CORS API routes normally.
//! - IP control holds for preflights too: a CORS API whose `ip_control` refuses the client
//!   adds no method; when every CORS API of the path refuses it, the answer is that 403.

use std::io::Write as _;
use std::net::IpAddr;

use crate::config::Config;
use crate::error::GatewayError;
use crate::http::head::{RequestHead, Span};
use crate::http::reply::reason;
use crate::router::method::NAMES;

/// Added to every response of a CORS API.
pub const RESPONSE_HEADERS: &[u8] =
    b"Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: X-Api-RequestId\r\n";
/// `Access-Control-Max-Age` of a preflight answer: one day.
pub const MAX_AGE_SECS: u32 = 86400;

/// Response headers a CORS API's answer sets itself, dropped from the backend's answer.
pub const REPLACED: [&[u8]; 2] = [
    b"access-control-allow-origin",
    b"access-control-expose-headers",
];

/// The preflight parts of a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreflightRequest {
    /// `Access-Control-Request-Method`.
    pub method: Span,
    /// `Access-Control-Request-Headers`, if sent.
    pub headers: Option<Span>,
}

/// Whether the request is a preflight. Only an `OPTIONS` request pays for a pass over its
/// headers.
pub fn preflight(buf: &[u8], head: &RequestHead, method: &str) -> Option<PreflightRequest> {
    if method != "OPTIONS" {
        return None;
    }
    let (mut origin, mut request_method, mut headers) = (false, None, None);
    for (n, v) in &head.headers {
        let name = n.get(buf);
        if name.eq_ignore_ascii_case(b"origin") {
            origin = true;
        } else if name.eq_ignore_ascii_case(b"access-control-request-method") {
            request_method = Some(*v);
        } else if name.eq_ignore_ascii_case(b"access-control-request-headers") {
            headers = Some(*v);
        }
    }
    match (origin, request_method) {
        (true, Some(method)) => Some(PreflightRequest { method, headers }),
        _ => None,
    }
}

/// The gateway's answer to a preflight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preflight {
    /// Bit `i` set: `NAMES[i]` is allowed.
    pub methods: u8,
    /// `Access-Control-Request-Headers` to echo.
    pub headers: Option<Span>,
}

/// A preflight the gateway answers, and the API it is counted against (the first CORS API
/// found, in method order, that admits the client; else the first that refused it).
pub struct PreflightAnswer {
    pub service: usize,
    pub api: usize,
    /// `Err`: IP control refused the client on every CORS API of the path (403).
    pub answer: Result<Preflight, GatewayError>,
}

/// Answers a preflight when some method on `path` reaches a CORS API; `None` otherwise.
pub fn answer(
    cfg: &Config,
    host: Option<&str>,
    path: &str,
    req: &PreflightRequest,
    client: IpAddr,
) -> Option<PreflightAnswer> {
    let mut methods = 0u8;
    let mut first = None;
    let mut refused = None;
    for (i, name) in NAMES.iter().enumerate() {
        let Ok(m) = cfg.routes.route(host, name, path) else {
            continue;
        };
        let api = &cfg.services[m.service].apis[m.api];
        if !api.cors {
            continue;
        }
        if let Err(e) = super::ip_control::check(api.ip_control.as_deref(), client) {
            refused.get_or_insert((m.service, m.api, e));
            continue;
        }
        methods |= 1 << i;
        first.get_or_insert((m.service, m.api));
    }
    let (service, api, answer) = match (first, refused) {
        (Some((service, api)), _) => {
            let answer = Preflight {
                methods,
                headers: req.headers,
            };
            (service, api, Ok(answer))
        }
        (None, Some((service, api, e))) => (service, api, Err(e)),
        (None, None) => return None,
    };
    Some(PreflightAnswer {
        service,
        api,
        answer,
    })
}

/// Appends the 204 preflight response.
pub fn write_preflight(
    out: &mut Vec<u8>,
    p: &Preflight,
    buf: &[u8],
    request_id: &str,
    close: bool,
) {
    let _ = write!(out, "HTTP/1.1 204 {}\r\n", reason(204));
    out.extend_from_slice(RESPONSE_HEADERS);
    out.extend_from_slice(b"Access-Control-Allow-Methods: ");
    let mut first = true;
    for (i, name) in NAMES.iter().enumerate() {
        if p.methods & (1 << i) != 0 {
            if !first {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(name.as_bytes());
            first = false;
        }
    }
    out.extend_from_slice(b"\r\n");
    if let Some(h) = p.headers {
        let h = h.get(buf);
        if !h.is_empty() {
            out.extend_from_slice(b"Access-Control-Allow-Headers: ");
            out.extend_from_slice(h);
            out.extend_from_slice(b"\r\n");
        }
    }
    let _ = write!(out, "Access-Control-Max-Age: {MAX_AGE_SECS}\r\n");
    let _ = write!(out, "X-Api-RequestId: {request_id}\r\n");
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_complete as head;

    const CONFIG: &str = r#"
[[services]]
name = "s"
[[services.apis]]
name = "get"
path = "=/items"
cors = true
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "post"
path = "=/items"
method = "POST"
cors = true
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "delete-no-cors"
path = "=/items"
method = "DELETE"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "plain"
path = "=/plain"
method = "ANY"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "any"
path = "/open/"
method = "ANY"
cors = true
[services.apis.backend]
type = "mock"
"#;

    #[test]
    fn preflight_detection_table() {
        let cases: &[(&[u8], bool)] = &[
            (b"OPTIONS /items HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nAccess-Control-Request-Method: POST\r\n\r\n", true),
            (b"OPTIONS /items HTTP/1.1\r\nHost: h\r\nAccess-Control-Request-Method: POST\r\n\r\n", false),
            (b"OPTIONS /items HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\n\r\n", false),
            (b"GET /items HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nAccess-Control-Request-Method: POST\r\n\r\n", false),
            (b"OPTIONS /items HTTP/1.1\r\nHost: h\r\norigin: x\r\naccess-control-request-method: GET\r\n\r\n", true),
        ];
        for (raw, want) in cases {
            let h = head(raw);
            let method = std::str::from_utf8(h.method.get(raw)).unwrap();
            assert_eq!(
                preflight(raw, &h, method).is_some(),
                *want,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn allowed_methods_come_from_the_cors_apis_of_the_path() {
        let cfg = crate::config::load_str(CONFIG, std::path::Path::new("t.toml")).unwrap();
        let raw = b"OPTIONS /items HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: x-date, authorization\r\n\r\n";
        let h = head(raw);
        let p = preflight(raw, &h, "OPTIONS").unwrap();
        let a = answer(&cfg, None, "/items", &p, CLIENT).unwrap();
        assert_eq!((a.service, a.api), (0, 0));
        let mut out = Vec::new();
        write_preflight(&mut out, a.answer.as_ref().unwrap(), raw, "rid", false);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: X-Api-RequestId\r\nAccess-Control-Allow-Methods: GET, POST\r\nAccess-Control-Allow-Headers: x-date, authorization\r\nAccess-Control-Max-Age: 86400\r\nX-Api-RequestId: rid\r\n\r\n"
        );
        // No CORS API on the path: no preflight answer (the request routes normally).
        assert!(answer(&cfg, None, "/plain", &p, CLIENT).is_none());
        assert!(answer(&cfg, None, "/nothing", &p, CLIENT).is_none());
        // ANY: every method.
        let a = answer(&cfg, None, "/open/x", &p, CLIENT).unwrap();
        assert_eq!(a.answer.unwrap().methods, 0x7f);
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    /// IP control on a preflight: the methods of the CORS APIs that admit the client; a 403
    /// (counted against the first refusing API) when none does.
    #[test]
    fn preflights_list_only_what_the_client_may_call() {
        const IP_CONFIG: &str = r#"
[[services]]
name = "s"
[services.ip_control]
mode = "deny"
ips = ["203.0.113.0/24"]
[[services.apis]]
name = "get"
path = "=/items"
cors = true
[services.apis.ip_control]
mode = "allow"
ips = ["192.0.2.0/24"]
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "post"
path = "=/items"
method = "POST"
cors = true
[services.apis.backend]
type = "mock"
"#;
        let cfg = crate::config::load_str(IP_CONFIG, std::path::Path::new("t.toml")).unwrap();
        let raw = b"OPTIONS /items HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nAccess-Control-Request-Method: POST\r\n\r\n";
        let h = head(raw);
        let p = preflight(raw, &h, "OPTIONS").unwrap();
        // (client, API counted, methods or the 403's message)
        let cases: [(&str, usize, Result<u8, &str>); 4] = [
            // Both admit it: GET and POST.
            ("192.0.2.1", 0, Ok(0b11)),
            // Outside the GET API's allow list: POST only, counted against POST.
            ("198.51.100.1", 1, Ok(0b10)),
            // The service's deny list (POST) and GET's allow list both refuse it.
            (
                "203.0.113.9",
                0,
                Err("client ip 203.0.113.9 is not allowed"),
            ),
            // Mapped IPv4 is judged, and named, as IPv4.
            (
                "::ffff:203.0.113.9",
                0,
                Err("client ip 203.0.113.9 is not allowed"),
            ),
        ];
        for (client, api, want) in cases {
            let a = answer(&cfg, None, "/items", &p, client.parse().unwrap()).unwrap();
            let got = a
                .answer
                .map(|p| p.methods)
                .map_err(|e| (e.status(), e.message()));
            let want = want.map_err(|m| (403, m.to_string()));
            assert_eq!((a.api, got), (api, want), "{client}");
        }
    }
}

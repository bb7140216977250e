//! The upstream head for raw client heads: SPEC §3 transformations, byte-exact.

use std::time::Duration;

use super::*;
use crate::config::{BackendTarget, Constant, Limits};
use crate::http::head::parse_head;
use crate::router::MethodSet;

fn backend(method: Option<&str>, constants: &[(&str, Location, &str)]) -> Backend {
    Backend {
        target: BackendTarget::Vpc { upstream: 0 },
        path: None,
        method: method.and_then(MethodSet::from_config),
        timeout: Duration::from_secs(1),
        constants: constants
            .iter()
            .map(|(n, l, v)| Constant {
                name: n.to_string(),
                location: *l,
                value: v.to_string(),
            })
            .collect(),
    }
}

fn forward(
    raw: &str,
    backend: &Backend,
    path: &str,
    query: Option<&str>,
    websocket: bool,
) -> String {
    let limits = Limits {
        max_header_bytes: 4096,
        max_headers: 32,
        max_uri_bytes: 1024,
        max_body_bytes: 1 << 20,
    };
    let mut head = RequestHead::default();
    parse_head(raw.as_bytes(), &limits, &mut head).unwrap();
    let ctx = ForwardContext {
        client_ip: "192.0.2.7",
        https: true,
        request_id: "rid-1",
        websocket,
        default_host: "10.0.0.5:80",
    };
    let permit = Permit::for_tests(Identity::Anonymous, false, None);
    let placed = ParamValues::default();
    let plan = Plan {
        backend,
        params: &[],
        placed: &placed,
        permit: &permit,
        backend_path: path,
        query,
    };
    let mut out = Vec::new();
    write_upstream_head(raw.as_bytes(), &head, &plan, &ctx, &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn headers_are_forwarded_transformed() {
    let raw = "GET /user/42?a=1 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: p\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Real-IP: 6.6.6.6\r\nX-Api-RequestId: forged\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n";
    let got = forward(
        raw,
        &backend(None, &[]),
        "/internal/user/42",
        Some("a=1"),
        false,
    );
    assert_eq!(
        got,
        "GET /internal/user/42?a=1 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nContent-Length: 0\r\n\
         X-Forwarded-For: 1.1.1.1, 2.2.2.2, 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\
         X-Api-RequestId: rid-1\r\n\r\n"
    );
}

#[test]
fn constants_are_set_last_and_win() {
    let b = backend(
        Some("POST"),
        &[
            ("host", Location::Header, "user.internal"),
            ("X-Src", Location::Header, "gw"),
            ("source", Location::Query, "gate way&x"),
        ],
    );
    let raw = "GET /u?source=client&b=2 HTTP/1.1\r\nHost: api.example.com\r\nx-src: client\r\n\r\n";
    let got = forward(raw, &b, "/internal/u", Some("source=client&b=2"), false);
    assert_eq!(
        got,
        "POST /internal/u?b=2&source=gate%20way%26x HTTP/1.1\r\nX-Forwarded-For: 192.0.2.7\r\nX-Real-IP: 192.0.2.7\r\n\
         X-Forwarded-Proto: https\r\nX-Api-RequestId: rid-1\r\nhost: user.internal\r\nX-Src: gw\r\n\r\n"
    );
}

#[test]
fn websocket_handshakes_keep_upgrade() {
    let raw = "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let got = forward(raw, &backend(None, &[]), "/ws/chat", None, true);
    assert!(got.starts_with("GET /ws/chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\n"), "{got}");
    let plain = forward(raw, &backend(None, &[]), "/ws/chat", None, false);
    assert!(!plain.contains("Upgrade"), "{plain}");
}

#[test]
fn a_missing_host_gets_the_upstream_address() {
    let got = forward(
        "GET / HTTP/1.0\r\n\r\n",
        &backend(None, &[]),
        "/",
        Some(""),
        false,
    );
    assert!(
        got.starts_with("GET / HTTP/1.0\r\nHost: 10.0.0.5:80\r\nX-Forwarded-For: 192.0.2.7\r\n"),
        "{got}"
    );
}

#[test]
fn expect_is_answered_by_the_gateway_not_forwarded() {
    let got = forward(
        "POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        &backend(None, &[]),
        "/a",
        None,
        false,
    );
    assert!(!got.to_ascii_lowercase().contains("expect"), "{got}");
    assert!(got.contains("Content-Length: 3\r\n"), "{got}");
}

/// RFC 9112 §3.2.2: an absolute-form target's authority, as sent, is the one Host sent; a
/// constant Host still wins.
#[test]
fn an_absolute_form_authority_is_the_host() {
    // (request, a constant sets Host, the Host lines sent)
    let cases = [
        (
            "GET http://a.test/x HTTP/1.1\r\nHost: b\r\nAccept: */*\r\n\r\n",
            false,
            "Host: a.test",
        ),
        (
            "GET HTTP://A.Test:8080?q HTTP/1.1\r\nhost: b:81\r\n\r\n",
            false,
            "host: A.Test:8080",
        ),
        (
            "GET https://[::1]:8443/x HTTP/1.1\r\nHost: b\r\n\r\n",
            false,
            "Host: [::1]:8443",
        ),
        (
            "GET http://a.test/x HTTP/1.0\r\n\r\n",
            false,
            "Host: a.test",
        ),
        (
            "GET http://a.test/x HTTP/1.1\r\nHost: b\r\n\r\n",
            true,
            "host: user.internal",
        ),
        ("GET /x HTTP/1.1\r\nHost: b\r\n\r\n", false, "Host: b"),
    ];
    for (raw, constant, want) in cases {
        let constants: &[_] = if constant {
            &[("host", Location::Header, "user.internal")]
        } else {
            &[]
        };
        let got = forward(raw, &backend(None, constants), "/x", None, false);
        let hosts: Vec<&str> = got
            .split("\r\n")
            .filter(|l| l.to_ascii_lowercase().starts_with("host:"))
            .collect();
        assert_eq!(hosts, [want], "{raw}\n{got}");
    }
    let got = forward(
        "GET http://a.test/x HTTP/1.1\r\nHost: b\r\nAccept: */*\r\n\r\n",
        &backend(None, &[]),
        "/x",
        None,
        false,
    );
    assert!(
        got.starts_with("GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\n"),
        "the Host keeps its place: {got}"
    );
}

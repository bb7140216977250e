//! Requests the gateway must refuse itself (SPEC §6, §1 limits, §2 404s): the status, the
//! JSON body, `Connection: close` and EOF where the stream cannot be trusted, and no byte
//! ever reaching the backend.

mod support;

use std::time::Duration;

use support::*;

/// A valid request pipelined after each malformed one: it must never be read.
const VALID: &str = "GET /api/valid HTTP/1.1\r\nHost: h\r\n\r\n";

/// Every malformed framing case of SPEC §6, as raw bytes.
const FRAMING_CASES: &[(&str, &[u8])] = &[
    (
        "Transfer_Encoding (underscore) with a body framed as chunked",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer_Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "Content_Length (underscore)",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent_Length: 5\r\n\r\nhello",
    ),
    (
        "Content-Length with Transfer-Encoding",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding with Content-Length",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ),
    (
        "Content-Length not a number",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
    ),
    (
        "Content-Length with a sign",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
    ),
    (
        "Content-Length negative",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
    ),
    (
        "Content-Length as a list",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
    ),
    (
        "Content-Length with inner space",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5\r\n\r\nhello",
    ),
    (
        "Content-Length empty",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
    ),
    (
        "Content-Length overflowing u64",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ),
    (
        "Content-Length hexadecimal",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\nhello",
    ),
    (
        "duplicate Content-Length, same value",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    ),
    (
        "duplicate Content-Length, different values",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\nhello!",
    ),
    (
        "Transfer-Encoding gzip only",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nxxxxx",
    ),
    (
        "Transfer-Encoding identity",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\nxxxxx",
    ),
    (
        "Transfer-Encoding chunked then gzip",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding headers ending in gzip",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding chunked twice",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "bare LF line ends throughout",
        b"GET /api/m HTTP/1.1\nHost: h\n\n",
    ),
    (
        "bare LF after one header",
        b"GET /api/m HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n",
    ),
    (
        "bare LF after the request line",
        b"GET /api/m HTTP/1.1\nHost: h\r\n\r\n",
    ),
    (
        "bare LF as the blank line",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\n\n",
    ),
    (
        "bare CR as a line end",
        b"GET /api/m HTTP/1.1\r\nHost: h\rX-A: b\r\n\r\n",
    ),
    (
        "bare CR after the request line",
        b"GET /api/m HTTP/1.1\rHost: h\r\n\r\n",
    ),
    (
        "bare CR inside a value",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n",
    ),
    (
        "obs-fold with a space",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n",
    ),
    (
        "obs-fold with a tab",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n",
    ),
    (
        "space before the colon",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A : b\r\n\r\n",
    ),
    (
        "tab before the colon",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A\t: b\r\n\r\n",
    ),
    (
        "space before the colon of Content-Length",
        b"POST /api/m HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\nhello",
    ),
    (
        "missing Host on HTTP/1.1",
        b"GET /api/m HTTP/1.1\r\nX-A: b\r\n\r\n",
    ),
    (
        "duplicate Host",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n",
    ),
    (
        "duplicate Host, different case and value",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nhost: other\r\n\r\n",
    ),
    (
        "control byte 0x01 in a value",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A: a\x01b\r\n\r\n",
    ),
    (
        "NUL in a value",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n",
    ),
    (
        "ESC in a value",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A: a\x1bb\r\n\r\n",
    ),
    (
        "DEL in a value",
        b"GET /api/m HTTP/1.1\r\nHost: h\r\nX-A: a\x7fb\r\n\r\n",
    ),
    (
        "control byte in Host",
        b"GET /api/m HTTP/1.1\r\nHost: h\x02\r\n\r\n",
    ),
];

#[test]
fn every_malformed_framing_case_is_400_close_and_never_reaches_the_backend() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut failures = Vec::new();
    for (name, bytes) in FRAMING_CASES {
        let mut c = gw.connect();
        let mut all = bytes.to_vec();
        all.extend_from_slice(VALID.as_bytes());
        c.send(&all);
        let outcome = (|| -> Result<(), String> {
            let r = c.try_read_response(false, READ_TIMEOUT)?;
            r.check_gateway_error(400)?;
            if !r.closes() {
                return Err(format!("no Connection: close:\n{}", r.text()));
            }
            c.wait_closed(Duration::from_secs(10))
                .map_err(|e| format!("after the 400: {e}"))?;
            if backend.connections() != 0 {
                return Err(format!(
                    "the backend saw {} connection(s), {} bytes",
                    backend.connections(),
                    backend.bytes_received()
                ));
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            failures.push(format!("[{name}] {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed cases failed:\n{}",
        failures.len(),
        FRAMING_CASES.len(),
        failures.join("\n")
    );
    // Give a late forward a chance to show, then prove the route does reach the backend.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(backend.connections(), 0);
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(VALID).status, 200);
    assert_eq!(backend.connections(), 1);
}

/// A refused request: `status` JSON with `message`, `Connection: close`, then EOF; the
/// backend saw nothing.
fn assert_refused(gw: &Gateway, backend: &Backend, request: &[u8], status: u16, message: &str) {
    let mut c = gw.connect();
    let mut all = request.to_vec();
    all.extend_from_slice(VALID.as_bytes());
    // The gateway may close before reading everything: a failed write is fine.
    let _ = c.try_send(&all);
    let r = c.read_response();
    assert_eq!(r.assert_gateway_error(status, message), message);
    assert!(r.closes(), "{}", r.text());
    c.expect_closed();
    assert_eq!(backend.connections(), 0, "the backend saw a connection");
}

/// RFC 9112 §7.1: `chunk-size = 1*HEXDIG`, whitespace only before a `;` or `=` of an
/// extension, extension names tokens, values tokens or quoted strings. Anything else is a
/// 400 and the body never reaches the backend; a line by the grammar is relayed as sent.
#[test]
fn chunk_size_lines_outside_rfc_9112_are_400_and_never_reach_the_backend() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let chunked = |size_line: &str| {
        format!(
            "POST /api/m HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{size_line}\r\nhello\r\n0\r\n\r\n"
        )
    };
    for (size_line, message) in [
        ("5 ", "bad chunk size line"),
        ("5\t", "bad chunk size line"),
        ("5;", "bad chunk size line"),
        ("5;=x", "bad chunk size line"),
        ("5;a=b ", "bad chunk size line"),
        ("5;a b", "bad chunk size line"),
        ("5;a=\"unterminated", "bad chunk size line"),
        (" 5", "bad chunk size"),
        ("+5", "bad chunk size"),
        ("0x5", "bad chunk size"),
    ] {
        assert_refused(&gw, &backend, chunked(size_line).as_bytes(), 400, message);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        backend.connections(),
        0,
        "no refused body reached the backend"
    );
    let ok = chunked("5 ; a = \"x y\";b");
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(&ok).status, 200);
    let got = backend.wait_requests(1);
    assert_eq!(
        got[0].body_raw, b"5 ; a = \"x y\";b\r\nhello\r\n0\r\n\r\n",
        "a valid line is relayed byte for byte"
    );
}

#[test]
fn uri_over_max_uri_bytes_is_414() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "max_uri_bytes = 64", ""));
    let long = format!("GET /api/{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(200));
    assert_refused(&gw, &backend, long.as_bytes(), 414, "request URI too long");
    // At the limit it is served.
    let mut c = gw.connect();
    let path = format!("/api/{}", "a".repeat(64 - 5));
    assert_eq!(path.len(), 64);
    assert_eq!(c.roundtrip(get(&path)).status, 200);
}

#[test]
fn uri_too_long_is_414_before_the_request_line_ends() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "max_uri_bytes = 64", ""));
    let mut c = gw.connect();
    // No line end yet: the gateway must not wait for one.
    c.send(format!("GET /api/{}", "a".repeat(2000)));
    let r = c.read_response();
    r.assert_gateway_error(414, "long request line without CRLF");
    c.expect_closed();
}

#[test]
fn head_over_max_header_bytes_is_431() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(
        backend.addr(),
        "max_header_bytes = 1024\nmax_uri_bytes = 512",
        "",
    ));
    let big = format!(
        "GET /api/x HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    assert_refused(
        &gw,
        &backend,
        big.as_bytes(),
        431,
        "request header fields too large",
    );
}

#[test]
fn head_over_max_header_bytes_is_431_before_the_head_ends() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(
        backend.addr(),
        "max_header_bytes = 1024\nmax_uri_bytes = 512",
        "",
    ));
    let mut c = gw.connect();
    c.send(format!(
        "GET /api/x HTTP/1.1\r\nHost: h\r\nX-Big: {}",
        "b".repeat(4000)
    ));
    c.read_response()
        .assert_gateway_error(431, "unfinished head over the limit");
    c.expect_closed();
    assert_eq!(backend.connections(), 0);
}

#[test]
fn more_than_max_headers_is_431_and_exactly_max_is_served() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "max_headers = 10", ""));
    let head = |n: usize| {
        let mut s = "GET /api/x HTTP/1.1\r\nHost: h\r\n".to_string();
        for i in 1..n {
            s.push_str(&format!("X-H{i}: v\r\n"));
        }
        s.push_str("\r\n");
        s
    };
    assert_refused(
        &gw,
        &backend,
        head(11).as_bytes(),
        431,
        "request header fields too large",
    );
    let mut c = gw.connect();
    let r = c.roundtrip(head(10));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn content_length_over_max_body_bytes_is_413_before_the_body_is_read() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "max_body_bytes = 100", ""));
    let mut c = gw.connect();
    // Only the head: the 413 must come without waiting for the body.
    c.send("POST /api/up HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n");
    let r = c.read_response();
    assert_eq!(
        r.assert_gateway_error(413, "Content-Length 101 > 100"),
        "request body too large"
    );
    assert!(r.closes(), "{}", r.text());
    c.expect_closed();
    assert_eq!(backend.connections(), 0);
    let mut c = gw.connect();
    let r = c.roundtrip(with_body("POST", "/api/up", &[b'x'; 100]));
    assert_eq!(r.status, 200, "at the limit: {}", r.text());
}

#[test]
fn no_matching_api_is_404_with_both_spec_messages() {
    let backend = Backend::ok();
    let config = format!(
        "{}{}[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"only\"\npath = \"=/only\"\nmethod = \"GET\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/internal\"\n",
        server_section(1, ""),
        upstream_section("up", backend.addr(), "")
    );
    let gw = Gateway::start(&config);
    let mut c = gw.connect();
    let r = c.roundtrip("GET /nope?x=1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(
        r.assert_gateway_error(404, "no path"),
        "There is no api match uri[/nope] host[example.test]"
    );
    assert!(!r.closes(), "a 404 keeps the connection: {}", r.text());
    let r = c.roundtrip("PUT /only HTTP/1.1\r\nHost: example.test\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        r.assert_gateway_error(404, "no method"),
        "There is no api match method[PUT] uri[/only] host[example.test]"
    );
    // HEAD does not fall back to GET; its 404 has no body.
    c.send("HEAD /only HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.header("x-api-requestid").is_some(), "{}", r.text());
    // Still in sync, and the backend was never involved.
    assert_eq!(c.roundtrip(get("/only")).status, 200);
    assert_eq!(backend.wait_requests(1).len(), 1);
}

#[test]
fn body_of_a_404_request_is_never_read_as_a_request() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let mut all = with_body(
        "POST",
        "/nope",
        b"GET /api/smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    all.extend(get("/api/real"));
    c.send(&all);
    let r = c.read_response();
    r.assert_gateway_error(404, "404 with a body");
    let closed = r.closes();
    if closed {
        // Closing instead of skipping the body is also safe.
        c.expect_closed();
    } else {
        let r = c.read_response();
        assert_eq!(r.status, 200, "{}", r.text());
        let got = backend.wait_requests(1);
        assert_eq!(got[0].target, "/internal/real");
    }
    std::thread::sleep(Duration::from_millis(200));
    // Positive control, after that window: a legitimate request on a fresh connection is
    // recorded, so the absence of the smuggled one below is not a recording that stopped.
    let r = gw.connect().roundtrip(get("/api/control"));
    assert_eq!(r.status, 200, "control request: {}", r.text());
    let recorded = backend.wait_until(READ_TIMEOUT, |s| {
        s.requests().iter().any(|r| r.target == "/internal/control")
    });
    let targets: Vec<String> = backend.requests().into_iter().map(|r| r.target).collect();
    assert!(
        recorded,
        "the control request was not recorded: {targets:?}"
    );
    assert!(
        targets.iter().all(|t| t != "/internal/smuggled"),
        "the 404's body was read as a request: {targets:?}"
    );
    let want: &[&str] = if closed {
        &["/internal/control"]
    } else {
        &["/internal/real", "/internal/control"]
    };
    assert_eq!(targets, want, "backend requests");
}

#[test]
fn target_climbing_above_root_is_400() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    for target in ["/api/../../etc/passwd", "*", "example.com:443"] {
        let mut c = gw.connect();
        let r = c.roundtrip(get(target));
        r.assert_gateway_error(400, target);
    }
    assert_eq!(backend.connections(), 0);
}

/// SPEC §6: a request-target outside visible ASCII, a Host that is not `uri-host[:port]` of
/// RFC 3986, and an absolute-form authority that breaks the same rules: 400 with the exact
/// message, `Connection: close`, EOF, and nothing reaches the backend.
#[test]
fn bad_target_bytes_hosts_and_authorities_are_400_and_close() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let cases: &[(&[u8], &str)] = &[
        (
            b"GET /api/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n",
            "request target contains a forbidden character",
        ),
        (
            b"GET /api/\x80 HTTP/1.1\r\nHost: h\r\n\r\n",
            "request target contains a forbidden character",
        ),
        (
            b"GET /api/a\x01b HTTP/1.1\r\nHost: h\r\n\r\n",
            "request target contains a forbidden character",
        ),
        (
            b"GET /api/a\tb HTTP/1.1\r\nHost: h\r\n\r\n",
            "request target contains a forbidden character",
        ),
        (
            b"GET /api/a b HTTP/1.1\r\nHost: h\r\n\r\n",
            "request target contains a forbidden character",
        ),
        (
            b"GET /api/a\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
            "request target contains a forbidden character",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: u@h\r\n\r\n",
            "bad Host (userinfo is not allowed)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: h h\r\n\r\n",
            "bad Host (whitespace is not allowed)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: h:65536\r\n\r\n",
            "bad Host (the port is not a number in 0-65535)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: h:-1\r\n\r\n",
            "bad Host (the port is not a number in 0-65535)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: [::1\r\n\r\n",
            "bad Host (a bad IPv6 literal)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: ::1\r\n\r\n",
            "bad Host (an IPv6 address must be in brackets)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n",
            "bad Host (IPv6 zone ids are not supported)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: [v1.x]\r\n\r\n",
            "bad Host (IPvFuture literals are not supported)",
        ),
        (
            b"GET /api/x HTTP/1.1\r\nHost: h\xc3\xa9\r\n\r\n",
            "bad Host (a character not allowed in a host name)",
        ),
        (
            b"GET http://u@h/api/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "bad authority in the request target (userinfo is not allowed)",
        ),
        (
            b"GET http://h:99999/api/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "bad authority in the request target (the port is not a number in 0-65535)",
        ),
        (
            b"GET http://:80/api/x HTTP/1.1\r\nHost: h\r\n\r\n",
            "bad authority in the request target (a port without a host name)",
        ),
    ];
    for &(request, message) in cases {
        assert_refused(&gw, &backend, request, 400, message);
    }
    // The accepted forms of the same rules are served, and the Host goes up as sent; an
    // absolute-form target's authority goes up as the Host (RFC 9112 §3.2.2).
    for host in ["[::1]:8080", "a.b-c_d~e", "%41", "h:", "h:65535", ""] {
        let mut c = gw.connect();
        let r = c.roundtrip(format!("GET /api/ok HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(r.status, 200, "Host {host:?}: {}", r.text());
    }
    let mut c = gw.connect();
    let r = c.roundtrip("GET http://[::1]:8080/api/abs HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(r.status, 200, "absolute-form: {}", r.text());
    let hosts: Vec<String> = backend
        .wait_requests(7)
        .iter()
        .map(|r| r.header("host").unwrap_or("<none>").to_string())
        .collect();
    assert_eq!(
        hosts,
        [
            "[::1]:8080",
            "a.b-c_d~e",
            "%41",
            "h:",
            "h:65535",
            "",
            "[::1]:8080"
        ],
        "Host headers the backend saw"
    );
}

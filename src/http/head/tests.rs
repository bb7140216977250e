//! Raw-byte tests of the request head parser: every framing rule of SPEC §6 and every limit.

use super::*;

fn limits() -> Limits {
    Limits {
        max_header_bytes: 1024,
        max_headers: 8,
        max_uri_bytes: 64,
        max_body_bytes: 1000,
    }
}

fn parse(raw: &[u8]) -> Result<(Progress, RequestHead), GatewayError> {
    let mut head = RequestHead::default();
    parse_head(raw, &limits(), &mut head).map(|p| (p, head))
}

fn status(raw: &[u8]) -> u16 {
    match parse(raw) {
        Ok((Progress::Complete, _)) => 200,
        Ok((Progress::Partial, _)) => 0,
        Err(e) => e.status(),
    }
}

#[test]
fn a_simple_get() {
    let raw = b"GET /a/b?x=1 HTTP/1.1\r\nHost: api.example.com:8080\r\nX-Y:  v  \r\n\r\nNEXT";
    let (p, h) = parse(raw).unwrap();
    assert_eq!(p, Progress::Complete);
    assert_eq!(h.method.get(raw), b"GET");
    assert_eq!(h.target.get(raw), b"/a/b?x=1");
    assert_eq!(h.host.unwrap().get(raw), b"api.example.com:8080");
    assert_eq!(h.headers.len(), 2);
    assert_eq!(h.headers[1].1.get(raw), b"v");
    assert_eq!(
        h.len,
        raw.len() - 4,
        "pipelined bytes are not part of the head"
    );
    assert_eq!(
        (h.body, h.keep_alive, h.upgrade, h.expect_continue),
        (BodyFraming::None, true, false, false)
    );
}

#[test]
fn partial_heads_ask_for_more() {
    for raw in [
        &b"GE"[..],
        b"GET / HTTP/1.1\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r",
    ] {
        assert_eq!(status(raw), 0, "{:?}", String::from_utf8_lossy(raw));
    }
}

#[test]
fn body_framing() {
    let (_, h) = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyFraming::Length(12));
    let (_, h) = parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyFraming::None);
    let (_, h) =
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyFraming::Chunked);
    let (_, h) = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    assert_eq!(h.body, BodyFraming::Chunked);
}

#[test]
fn connection_rules() {
    let keep = |raw: &[u8]| parse(raw).unwrap().1.keep_alive;
    assert!(keep(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!keep(
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ));
    assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert!(!keep(
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ));
    let (_, h) = parse(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(h.upgrade);
    let (_, h) = parse(b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!h.upgrade, "Upgrade without Connection: upgrade");
    let (_, h) =
        parse(b"PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-Continue\r\n\r\n")
            .unwrap();
    assert!(h.expect_continue);
}

/// SPEC §6: each of these is a 400 and never reaches a backend.
#[test]
fn malformed_framing_is_400() {
    let cases: &[(&[u8], &str)] = &[
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", "both Content-Length and Transfer-Encoding"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n", "bad Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", "bad Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", "bad Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", "bad Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", "duplicate Content-Length"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", "Transfer-Encoding must end with chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "Transfer-Encoding must end with chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding must end with chunked"),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", "bad Transfer-Encoding"),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in an HTTP/1.0 request"),
        (b"GET / HTTP/1.1\rHost: a\r\n\r\n", "bad line ending in the request head"),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF in the request head"),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\n", "bare LF in the request head"),
        (b"GET / HTTP/1.1\r\nHost: a\r\n\n", "bare LF in the request head"),
        // A bare CR in a value: httparse refuses it before check_line_ends looks.
        (b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", "bad header value (a control byte?)"),
        // httparse sees the folded line as a header whose name starts with a space.
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n", "bad header name (whitespace before the colon, or obs-fold?)"),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "bad header name (whitespace before the colon, or obs-fold?)"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n", "bad header name (whitespace before the colon, or obs-fold?)"),
        (b"GET / HTTP/1.1\r\n\r\n", "missing Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", "duplicate Host"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", "bad header value (a control byte?)"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "bad header value (a control byte?)"),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", "bad header value (a control byte?)"),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", "unsupported HTTP version"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "unsupported HTTP version"),
        (b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", "bad method"),
        // httparse reports an empty target as a bad token, which becomes "bad method".
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", "bad method"),
        // A space inside the target: httparse sees a bad version; the target is named.
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", BAD_TARGET_BYTE),
        // Framing headers with '_' for '-' (smuggler's underjoin payloads).
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n", FRAMING_LOOKALIKE),
        (b"POST / HTTP/1.1\r\nHost: a\r\nCONTENT_length: 3\r\n\r\n", FRAMING_LOOKALIKE),
        (b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\ntransfer_encoding: chunked\r\n\r\n", FRAMING_LOOKALIKE),
    ];
    for (raw, message) in cases {
        let shown = String::from_utf8_lossy(raw);
        match parse(raw) {
            Err(e) => {
                assert_eq!(e.status(), 400, "{shown:?}: {e}");
                assert!(e.closes_connection());
                assert_eq!(e.message(), *message, "{shown:?}");
            }
            Ok((p, _)) => panic!("{shown:?} accepted as {p:?}"),
        }
    }
}

#[test]
fn other_names_with_underscores_pass() {
    for name in [
        "X_Api_Key",
        "Content_Type",
        "Transfer_Encodings",
        "Content_Len",
        "X-Content_Length",
    ] {
        let raw = format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: 1\r\n\r\n");
        assert_eq!(status(raw.as_bytes()), 200, "{name}");
    }
}

#[test]
fn limits_give_their_statuses() {
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(64));
    assert_eq!(status(long_target.as_bytes()), 414);
    let ok_target = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(63));
    assert_eq!(status(ok_target.as_bytes()), 200);
    // A request line that is still arriving and already too long.
    let partial_line = format!("GET /{}", "a".repeat(200));
    assert_eq!(status(partial_line.as_bytes()), 414);
    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        status(format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes()),
        431
    );
    let eight: String = (0..7).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        status(format!("GET / HTTP/1.1\r\nHost: a\r\n{eight}\r\n").as_bytes()),
        200
    );
    let huge: String = (0..MAX_HEADERS_CAP + 1)
        .map(|i| format!("X-{i}: v\r\n"))
        .collect();
    assert_eq!(
        status(format!("GET / HTTP/1.1\r\nHost: a\r\n{huge}\r\n").as_bytes()),
        431
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(1100)
    );
    assert_eq!(status(big.as_bytes()), 431);
    let big_partial = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "v".repeat(1100));
    assert_eq!(status(big_partial.as_bytes()), 431);
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"),
        413
    );
    assert_eq!(
        status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"),
        200
    );
}

#[test]
fn the_header_list_is_reused() {
    let mut head = RequestHead::default();
    let a = b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nY: 2\r\n\r\n";
    parse_head(a, &limits(), &mut head).unwrap();
    let cap = head.headers.capacity();
    let b = b"GET /b HTTP/1.1\r\nHost: b\r\n\r\n";
    parse_head(b, &limits(), &mut head).unwrap();
    assert_eq!(head.headers.len(), 1);
    assert_eq!(head.headers.capacity(), cap);
    assert_eq!(head.target.get(b), b"/b");
}

/// SPEC §6: a request-target is visible ASCII (0x21-0x7E) only, whichever byte httparse
/// stops at; the message names the target.
#[test]
fn target_bytes_outside_visible_ascii_are_400() {
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for b in (0x00..=0x20).chain(0x7f..=0xff) {
        if b == b'\r' || b == b'\n' {
            continue;
        }
        cases.push([&b"GET /a"[..], &[b], b"b HTTP/1.1\r\nHost: a\r\n\r\n"].concat());
        cases.push([&b"GET /a"[..], &[b], b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat());
    }
    // Valid UTF-8 gets past httparse: refused by the head parser itself.
    cases.push("GET /é HTTP/1.1\r\nHost: a\r\n\r\n".into());
    cases.push("GET /a?q=\u{1F600} HTTP/1.1\r\nHost: a\r\n\r\n".into());
    cases.push("GET http://h/\u{7ff} HTTP/1.1\r\nHost: a\r\n\r\n".into());
    // A bare CR inside the target; a bad byte before the head is complete.
    cases.push(b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n".to_vec());
    cases.push(b"GET /a\x01".to_vec());
    for raw in &cases {
        let shown = String::from_utf8_lossy(raw);
        match parse(raw) {
            Err(e) => {
                assert_eq!(e.status(), 400, "{shown:?}: {e}");
                assert!(e.closes_connection());
                assert_eq!(e.message(), BAD_TARGET_BYTE, "{shown:?}");
            }
            Ok((p, _)) => panic!("{shown:?} accepted as {p:?}"),
        }
    }
    // Every visible byte passes the head parser (`#` is refused later, by `router::target`).
    let all: Vec<u8> = (0x21..=0x7e).collect();
    let raw = [&b"GET /"[..], &all[..62], b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
    assert_eq!(status(&raw), 200);
    let raw = [&b"GET /"[..], &all[62..], b" HTTP/1.1\r\nHost: a\r\n\r\n"].concat();
    assert_eq!(status(&raw), 200);
    // Not the target's fault: httparse's own messages stay.
    assert_eq!(
        parse(b"G(T /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap_err()
            .message(),
        "bad method"
    );
    for raw in [
        &b"GET /a HTTP/9.9\r\nHost: a\r\n\r\n"[..],
        b"GET /a HTTX/1.1\r\nHost: a\r\n\r\n",
        b"GET /a http/1.1\r\nHost: a\r\n\r\n",
        b"GET /a HTTX",
    ] {
        let shown = String::from_utf8_lossy(raw);
        let e = parse(raw).unwrap_err();
        assert_eq!(e.message(), "unsupported HTTP version", "{shown:?}");
    }
}

/// SPEC §6: Host is `uri-host[:port]` of RFC 3986 (the syntax table is in
/// `http::authority`); here, that the head parser applies it, with the Host message.
#[test]
fn host_syntax() {
    let head = |host: &[u8]| [&b"GET / HTTP/1.1\r\nHost:"[..], host, b"\r\n\r\n"].concat();
    for ok in [
        &b" [::1]:8080"[..],
        b" a.b-c_d~e",
        b" %41",
        b" h:",
        b" h:65535",
        b" 10.0.0.1:80",
        // OWS around a field value is not part of it (RFC 9110 §5.5): this Host is `h`.
        b" h\t",
        b"\th ",
        // Present but empty: RFC 9112 §3.2 asks exactly that of a client whose target has
        // no authority; it reaches only services without hosts.
        b"",
        b" ",
    ] {
        let raw = head(ok);
        assert_eq!(status(&raw), 200, "{:?}", String::from_utf8_lossy(&raw));
    }
    let cases: &[(&[u8], &str)] = &[
        (b" u@h", "bad Host (userinfo is not allowed)"),
        (b" h h", "bad Host (whitespace is not allowed)"),
        (b" h\tx", "bad Host (whitespace is not allowed)"),
        (
            b" h:65536",
            "bad Host (the port is not a number in 0-65535)",
        ),
        (b" h:-1", "bad Host (the port is not a number in 0-65535)"),
        (b" [::1", "bad Host (a bad IPv6 literal)"),
        (b" ::1", "bad Host (an IPv6 address must be in brackets)"),
        (
            b" [fe80::1%25eth0]",
            "bad Host (IPv6 zone ids are not supported)",
        ),
        (
            b" [v1.x]",
            "bad Host (IPvFuture literals are not supported)",
        ),
        (b" :80", "bad Host (a port without a host name)"),
        (b" h/", "bad Host (a character not allowed in a host name)"),
        (
            b" h\xc3\xa9",
            "bad Host (a character not allowed in a host name)",
        ),
        (b" %zz", "bad Host (a bad percent-encoding)"),
    ];
    for &(host, message) in cases {
        let raw = head(host);
        let shown = String::from_utf8_lossy(&raw);
        match parse(&raw) {
            Err(e) => {
                assert_eq!(e.status(), 400, "{shown:?}: {e}");
                assert!(e.closes_connection());
                assert_eq!(e.message(), message, "{shown:?}");
            }
            Ok((p, _)) => panic!("{shown:?} accepted as {p:?}"),
        }
    }
    // HTTP/1.0 needs no Host, but one that is sent is checked; a duplicate is named first.
    assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), 200);
    assert_eq!(
        parse(b"GET / HTTP/1.0\r\nHost: u@h\r\n\r\n")
            .unwrap_err()
            .message(),
        "bad Host (userinfo is not allowed)"
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: u@h\r\n\r\n")
            .unwrap_err()
            .message(),
        "duplicate Host"
    );
}

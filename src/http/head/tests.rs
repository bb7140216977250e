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
        (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "unsupported HTTP version"),
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

//! The proxy test helpers (`tests/support`) checked against each other, without the gateway:
//! the recording backend parses every framing exactly and the raw client reads every kind
//! of response, so a failing proxy test points at the gateway, not at the harness.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[test]
fn backend_records_content_length_requests_byte_exact() {
    let backend =
        Backend::start(|r| Reply::ok(format!("{} {} {}", r.method, r.target, r.body.len())));
    let mut c = Client::connect(backend.addr());
    let body: Vec<u8> = (0..=255u8).collect();
    let req = with_body("POST", "/p?q=1", &body);
    let r = c.roundtrip(&req);
    assert_eq!(
        (r.status, r.body_text()),
        (200, "POST /p?q=1 256".to_string())
    );
    let got = backend.wait_requests(1);
    assert_eq!(got[0].raw, req);
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].header("host"), Some("example.test"));
    assert_eq!(got[0].version, "HTTP/1.1");
    assert_eq!(backend.raw(0), req);
}

#[test]
fn backend_parses_chunked_requests_and_keeps_the_wire_bytes() {
    let backend = Backend::ok();
    let mut c = Client::connect(backend.addr());
    let wire = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
    let mut req = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(wire);
    // Split across writes: the backend must wait for the whole body.
    for piece in req.chunks(7) {
        c.send(piece);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(c.read_response().status, 200);
    let got = backend.wait_requests(1);
    assert!(got[0].chunked);
    assert_eq!(got[0].body_raw, wire);
    assert_eq!(got[0].body, b"hello0123456789");
}

#[test]
fn backend_answers_pipelined_requests_in_order_on_one_connection() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let mut c = Client::connect(backend.addr());
    let mut all = get("/1");
    all.extend(with_body("PUT", "/2", b"xx"));
    all.extend(get("/3"));
    c.send(&all);
    for want in ["/1", "/2", "/3"] {
        assert_eq!(c.read_response().body_text(), want);
    }
    assert_eq!(backend.connections(), 1);
    let reqs = backend.wait_requests(3);
    assert_eq!(
        reqs.iter().map(|r| (r.conn, r.seq)).collect::<Vec<_>>(),
        [(0, 0), (0, 1), (0, 2)]
    );
}

#[test]
fn client_reads_chunked_close_delimited_and_bodiless_responses() {
    let backend = Backend::queue(vec![
        Reply::raw(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n",
        ),
        Reply::raw("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"),
        Reply::raw("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"),
        Reply::raw("HTTP/1.1 200 OK\r\n\r\nuntil close").close(),
    ]);
    let mut c = Client::connect(backend.addr());
    let r = c.roundtrip(get("/"));
    assert!(r.chunked);
    assert_eq!(r.body, b"Wikipedia");
    assert_eq!(r.body_raw, b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\n\r\n");
    c.send(get("/"));
    let (interim, r) = c.read_final_response();
    assert_eq!(interim.len(), 1);
    assert_eq!(interim[0].status, 103);
    assert_eq!(r.status, 204);
    c.send(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!((r.status, r.body.len()), (200, 0));
    let r = c.roundtrip(get("/"));
    assert!(r.close_delimited);
    assert_eq!(r.body_text(), "until close");
}

#[test]
fn backend_close_and_never_options_work() {
    let backend = Backend::queue(vec![Reply::ok("bye").close(), Reply::never()]);
    let mut c = Client::connect(backend.addr());
    assert_eq!(c.roundtrip(get("/")).body_text(), "bye");
    c.expect_closed();
    let mut c = Client::connect(backend.addr());
    c.send(get("/"));
    let err = c
        .try_read_response(false, Duration::from_millis(300))
        .unwrap_err();
    assert!(err.contains("no complete response head"), "{err}");
    c.expect_open_for(Duration::from_millis(100));
    assert_eq!(backend.connections(), 2);
    assert_eq!(backend.wait_requests(2).len(), 2);
}

#[test]
fn backend_delay_and_gate_hold_the_answer() {
    let gate = Gate::new();
    let g = gate.clone();
    let backend = Backend::start(move |r| {
        if r.target == "/gated" {
            Reply::raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
                .then_after(&g, "4\r\nlast\r\n0\r\n\r\n")
        } else {
            Reply::ok("late").delay(Duration::from_millis(200))
        }
    });
    let mut c = Client::connect(backend.addr());
    let t = Instant::now();
    assert_eq!(c.roundtrip(get("/delayed")).body_text(), "late");
    assert!(t.elapsed() >= Duration::from_millis(190));
    c.send(get("/gated"));
    assert!(c.wait_for_bytes(b"first\r\n", Duration::from_secs(10)));
    assert!(
        c.try_read_response(false, Duration::from_millis(200))
            .is_err()
    );
    gate.open();
    // The head was consumed by the failed read above; the rest is the chunked tail.
    assert!(c.wait_for_bytes(b"0\r\n\r\n", Duration::from_secs(10)));
}

#[test]
fn chunked_helpers_round_trip() {
    let body = pattern(100_000);
    let wire = chunked(&body, 4096);
    assert_eq!(parse_chunked(&wire).unwrap(), Some((wire.len(), body)));
    assert_eq!(parse_chunked(&wire[..wire.len() - 1]).unwrap(), None);
    assert!(parse_chunked(b"zz\r\n").is_err());
    assert!(parse_chunked(b"1\r\nab\r\n").is_err());
}

#[test]
fn json_message_reads_gateway_bodies() {
    assert_eq!(
        json_message(br#"{"message":"There is no api match uri[/a\"b] host[h]"}"#).as_deref(),
        Some("There is no api match uri[/a\"b] host[h]")
    );
    assert_eq!(json_message(b"{\"other\":1}"), None);
}

#[test]
fn gateway_start_reports_a_config_error_with_stderr() {
    let err = match Gateway::try_start("[[services]]\nname = 1\n") {
        Ok(_) => panic!("a broken configuration started"),
        Err(e) => e,
    };
    assert!(err.contains("exited before listening"), "{err}");
    assert!(err.contains("services[0].name"), "{err}");
}

#[test]
fn unused_addr_refuses_connections() {
    let a = unused_addr();
    assert!(Client::try_connect(a).is_err());
}

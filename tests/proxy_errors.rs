//! Timeouts, backend failures, overload and SIGTERM (SPEC §1 limits, §3 answer, §6, §7).
//! Durations are only bounded from below (timers never fire early); upper bounds are the
//! generous read deadlines of the helpers, so a loaded machine does not fail these tests.

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn incomplete_head_gets_408_after_header_timeout_then_close() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "header_timeout_ms = 500", ""));
    let mut c = gw.connect();
    let t = Instant::now();
    c.send("GET /api/slow HTTP/1.1\r\nHost: h\r\n");
    let r = c.read_response();
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "408 after {:?}",
        t.elapsed()
    );
    assert_eq!(
        r.assert_gateway_error(408, "header timeout"),
        "request header timeout"
    );
    assert!(r.closes(), "{}", r.text());
    c.expect_closed();
    assert_eq!(backend.connections(), 0);
}

#[test]
fn header_timeout_is_not_extended_by_trickled_bytes() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(
        backend.addr(),
        "header_timeout_ms = 1000",
        "",
    ));
    let mut c = gw.connect();
    c.send("GET /api/slowloris HTTP/1.1\r\nHost: h\r\nX-Slow: ");
    let t = Instant::now();
    let r = loop {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "no 408 after 15 s of one byte per 100 ms"
        );
        if c.try_send(b"a").is_err() {
            // Closed while we were writing: the 408 may still be readable.
            break c.read_response();
        }
        match c.try_read_response(false, Duration::from_millis(100)) {
            Ok(r) => break r,
            Err(e) if e.contains("EOF") => panic!("closed without a 408: {e}"),
            Err(_) => {}
        }
    };
    assert!(t.elapsed() >= Duration::from_millis(900));
    r.assert_gateway_error(408, "trickled head");
}

#[test]
fn silent_new_connection_is_closed_after_header_timeout() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "header_timeout_ms = 500", ""));
    let mut c = gw.connect();
    // A new connection is waiting for its first head from the start: header_timeout_ms
    // applies (not client_idle_timeout_ms), and it ends with a 408, not a silent close.
    let t = Instant::now();
    let r = c.read_response();
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "408 after {:?}",
        t.elapsed()
    );
    assert_eq!(
        r.assert_gateway_error(408, "silent new connection"),
        "request header timeout"
    );
    assert!(r.closes(), "{}", r.text());
    c.expect_closed();
    assert_eq!(backend.connections(), 0);
}

#[test]
fn idle_keepalive_connection_is_closed_silently_after_client_idle_timeout() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(
        backend.addr(),
        "client_idle_timeout_ms = 500\nheader_timeout_ms = 10000",
        "",
    ));
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/x")).status, 200);
    let t = Instant::now();
    c.wait_closed(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("idle connection after client_idle_timeout_ms: {e}"));
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "closed after {:?}",
        t.elapsed()
    );
}

#[test]
fn client_idle_timeout_does_not_cut_a_request_in_flight() {
    let backend = Backend::start(|_| Reply::ok("slow").delay(Duration::from_millis(1500)));
    let gw = Gateway::start(&proxy_config(
        backend.addr(),
        "client_idle_timeout_ms = 300\nheader_timeout_ms = 300",
        "",
    ));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/slow"));
    assert_eq!(
        (r.status, r.body_text()),
        (200, "slow".into()),
        "{}",
        r.text()
    );
}

#[test]
fn refused_backend_connection_is_502_json() {
    let gw = Gateway::start(&proxy_config(unused_addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/x"));
    let msg = r.assert_gateway_error(502, "connect refused");
    assert!(!msg.is_empty());
    // The client connection is still usable.
    let r = c.roundtrip(get("/api/y"));
    r.assert_gateway_error(502, "second request after a 502");
}

#[test]
fn backend_closing_without_an_answer_is_502() {
    let backend = Backend::start(|_| Reply::raw("").close());
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.roundtrip(get("/api/x"))
        .assert_gateway_error(502, "backend closed without answering");
}

#[test]
fn backend_answering_garbage_is_502() {
    let backend = Backend::start(|_| Reply::raw("NOT HTTP AT ALL\r\n\r\n").close());
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.roundtrip(get("/api/x"))
        .assert_gateway_error(502, "backend answered garbage");
}

#[test]
fn backend_that_never_answers_is_504_after_timeout_ms() {
    let backend = Backend::queue(vec![Reply::never(), Reply::ok("second")]);
    let gw = Gateway::start(&proxy_config(backend.addr(), "", "timeout_ms = 500"));
    let mut c = gw.connect();
    let t = Instant::now();
    let r = c.roundtrip(get("/api/stuck"));
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "504 after {:?}",
        t.elapsed()
    );
    assert_eq!(
        r.assert_gateway_error(504, "backend timeout"),
        "backend timeout"
    );
    assert_eq!(r.request_id(), backend.wait_requests(1)[0].request_id());
    // The stuck backend connection is not reused: the next request gets a fresh one.
    let r = c.roundtrip(get("/api/next"));
    assert_eq!(
        (r.status, r.body_text()),
        (200, "second".into()),
        "{}",
        r.text()
    );
    assert_eq!(backend.connections(), 2);
}

#[test]
fn connection_past_max_connections_gets_503_and_close() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "max_connections = 2", ""));
    let mut c1 = gw.connect();
    let mut c2 = gw.connect();
    assert_eq!(c1.roundtrip(get("/api/1")).status, 200);
    assert_eq!(c2.roundtrip(get("/api/2")).status, 200);
    let mut c3 = gw.connect();
    let _ = c3.try_send(get("/api/3"));
    let r = c3.read_response();
    assert_eq!(
        r.assert_gateway_error(503, "over max_connections"),
        "gateway overloaded"
    );
    assert!(r.closes(), "{}", r.text());
    c3.expect_closed();
    assert_eq!(backend.wait_requests(2).len(), 2);
    // The first two are still served.
    assert_eq!(c1.roundtrip(get("/api/1b")).status, 200);
    // Once one closes, a new connection is served again.
    drop(c1);
    let t = Instant::now();
    loop {
        let mut c = gw.connect();
        let _ = c.try_send(get("/api/4"));
        match c.try_read_response(false, READ_TIMEOUT) {
            Ok(r) if r.status == 200 => break,
            Ok(r) if r.status == 503 => {}
            other => panic!("after a slot freed: {other:?}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "still 503 10 s after a connection closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway (grace 10 s) with one request in flight: the backend holds `/internal/in-flight`
/// until `gate` opens and answers anything else with "new". SIGTERM has been sent.
fn in_flight_then_sigterm(gate: &Gate) -> (Backend, Gateway, Client) {
    let g = gate.clone();
    let backend = Backend::start(move |r| {
        if r.target == "/internal/in-flight" {
            Reply::ok("finished").after(&g)
        } else {
            Reply::ok("new")
        }
    });
    let gw = Gateway::start(&proxy_config(
        backend.addr(),
        "shutdown_grace_ms = 10000",
        "",
    ));
    let mut c = gw.connect();
    c.send(get("/api/in-flight"));
    backend.wait_requests(1);
    gw.signal(libc::SIGTERM);
    // The backend answers ~500 ms after the signal.
    std::thread::sleep(Duration::from_millis(500));
    (backend, gw, c)
}

#[test]
fn sigterm_lets_the_in_flight_request_finish_and_exits_0() {
    let gate = Gate::new();
    let (_backend, mut gw, mut c) = in_flight_then_sigterm(&gate);
    let addr = gw.addr();
    gate.open();
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body_text()),
        (200, "finished".into()),
        "{}\n--- stderr ---\n{}",
        r.text(),
        gw.stderr()
    );
    let status = gw
        .wait_exit(EXIT_TIMEOUT)
        .unwrap_or_else(|| panic!("no exit after the drain; stderr:\n{}", gw.stderr()));
    assert!(
        status.success(),
        "exit status {status:?}; stderr:\n{}",
        gw.stderr()
    );
    match Client::try_connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}"),
        Ok(_) => panic!("a connection was accepted after the gateway exited"),
    }
}

#[test]
fn sigterm_stops_serving_new_connections_during_the_drain() {
    let gate = Gate::new();
    let (backend, mut gw, mut c) = in_flight_then_sigterm(&gate);
    let addr = gw.addr();
    // A connection attempt now is refused, or never served.
    let late = Client::try_connect(addr).ok().map(|mut late| {
        let _ = late.try_send(get("/api/late"));
        late
    });
    gate.open();
    assert_eq!(c.read_response().body_text(), "finished");
    let status = gw.wait_exit(EXIT_TIMEOUT).expect("exit after the drain");
    assert!(status.success(), "{status:?}");
    if let Some(mut late) = late {
        let r = late.try_read_response(false, Duration::from_secs(5));
        assert!(
            r.as_ref().map_or(true, |r| r.status != 200),
            "a connection made after SIGTERM was served: {r:?}"
        );
    }
    assert_eq!(
        backend.requests().len(),
        1,
        "only the in-flight request reached the backend"
    );
}

#[test]
fn sigterm_closes_idle_keepalive_connections_without_waiting_for_the_grace() {
    let backend = Backend::ok();
    // A grace period longer than EXIT_TIMEOUT: waiting for idle clients would fail the test.
    let mut gw = Gateway::start(&proxy_config(
        backend.addr(),
        "shutdown_grace_ms = 120000\nclient_idle_timeout_ms = 120000",
        "",
    ));
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/x")).status, 200);
    let status = gw.terminate();
    assert!(status.success(), "{status:?}; stderr:\n{}", gw.stderr());
    c.wait_closed(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("idle client after exit: {e}"));
}

#[test]
fn sigterm_exits_0_when_the_grace_period_ends_with_a_request_still_in_flight() {
    let backend = Backend::start(|_| Reply::never());
    let mut gw = Gateway::start(&proxy_config(
        backend.addr(),
        "shutdown_grace_ms = 1000",
        "timeout_ms = 120000",
    ));
    let mut c = gw.connect();
    c.send(get("/api/forever"));
    backend.wait_requests(1);
    let t = Instant::now();
    let status = gw.terminate();
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "exited after {:?}",
        t.elapsed()
    );
    assert!(status.success(), "{status:?}; stderr:\n{}", gw.stderr());
    // The client is not left hanging.
    let _ = c.try_read_response(false, Duration::from_secs(5));
    c.wait_closed(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("client after exit: {e}"));
}

#[test]
fn a_slowly_streamed_body_does_not_use_up_the_backend_timeout() {
    let backend = Backend::start(|r| Reply::ok(format!("{}", r.body.len())));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", "timeout_ms = 1000"));
    let mut c = gw.connect();
    c.send("POST /api/slow HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nab");
    // The body takes longer than timeout_ms to arrive; the backend answers at once.
    std::thread::sleep(Duration::from_millis(700));
    c.send("cd");
    std::thread::sleep(Duration::from_millis(700));
    c.send("ef");
    let r = c.read_response();
    assert_eq!(
        (r.status, r.body_text()),
        (200, "6".to_string()),
        "{}",
        r.text()
    );
}

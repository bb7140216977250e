//! Request bodies at the edge: a body up to `request_buffer_bytes` is read whole before an
//! upstream connection is taken (slow uploads never reach a backend), a body that stalls
//! (`client_body_timeout_ms`) or trickles (`client_body_min_rate` over
//! `client_body_rate_window_ms`) gets 408, logged with the bytes that came; an abandoned
//! head is logged and counted.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// The common proxy configuration with `server` keys and an access log file in `dir`.
fn config(backend: &Backend, server: &str, dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let log = dir.join("access.log");
    let cfg = with_admin(&proxy_config(backend.addr(), server, "")).replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    );
    (cfg, log)
}

fn post_head(len: usize) -> String {
    format!("POST /api/up HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n")
}

#[test]
fn slow_uploads_hold_no_backend_connection_and_get_408() {
    raise_fd_limit();
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = config(
        &backend,
        "client_body_timeout_ms = 1500\nclient_body_min_rate = 0",
        dir.path(),
    );
    let gw = Gateway::start(&cfg);
    // 200 clients send a head and 10 bytes of a 1,000-byte body, then nothing.
    let head = post_head(1000);
    let mut slow: Vec<Client> = (0..200)
        .map(|_| {
            let mut c = gw.connect();
            c.send(format!("{head}0123456789"));
            c
        })
        .collect();
    // Meanwhile a well-behaved client is answered, again and again.
    let mut fast = gw.connect();
    for i in 0..20 {
        let r = fast.roundtrip(get(&format!("/api/fast{i}")));
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    // No slow upload reached the backend: only the fast client's pooled connection exists.
    assert_eq!(backend.connections(), 1, "slow uploads reached the backend");
    assert!(backend.requests().iter().all(|r| r.method == "GET"));
    // Each stalled upload gets 408 with the JSON body, and its connection closes.
    for (i, c) in slow.iter_mut().enumerate() {
        let r = c.read_response();
        assert_eq!(r.status, 408, "client {i}: {}", r.text());
        assert_eq!(
            json_message(&r.body).as_deref(),
            Some("request body timeout")
        );
        c.wait_closed(Duration::from_secs(5)).unwrap();
    }
    assert_eq!(backend.connections(), 1);
    // Logged as 408 with the bytes that came (head and 10 body bytes).
    let lines = read_json_lines(&log, 220);
    let timeouts: Vec<_> = lines.iter().filter(|l| l["status"] == 408).collect();
    assert_eq!(timeouts.len(), 200, "{lines:?}");
    let sent = (head.len() + 10) as u64;
    assert!(
        timeouts.iter().all(|l| l["bytes_in"] == sent),
        "bytes_in: {:?}",
        timeouts.iter().map(|l| &l["bytes_in"]).collect::<Vec<_>>()
    );
    assert!(timeouts.iter().all(|l| l["api"] == "api"));
    let admin = admin_addr(&gw);
    assert_eq!(
        metric(
            admin,
            "ringway_requests_total{service=\"s\",api=\"api\",code=\"408\"}"
        ),
        200.0
    );
}

#[test]
fn a_trickle_under_the_timeout_is_408_too_slow() {
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = config(
        &backend,
        "client_body_timeout_ms = 5000\nclient_body_min_rate = 1000\nclient_body_rate_window_ms = 1000",
        dir.path(),
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.connect();
    c.send(post_head(100));
    // One byte every 100 ms: never a gap near the timeout, 10 bytes a second.
    let t = Instant::now();
    let mut sent = 0;
    while t.elapsed() < Duration::from_secs(4) {
        if c.try_send("x").is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
        if c.wait_for_bytes(b"HTTP/1.1", Duration::from_millis(1)) {
            break;
        }
    }
    let r = c.read_response();
    assert_eq!(r.status, 408, "{}", r.text());
    assert_eq!(
        json_message(&r.body).as_deref(),
        Some("request body too slow")
    );
    let waited = t.elapsed();
    assert!(waited < Duration::from_millis(2500), "408 after {waited:?}");
    assert!(sent >= 9, "only {sent} bytes went");
    assert_eq!(backend.connections(), 0);
    let lines = read_json_lines(&log, 1);
    assert_eq!(lines[0]["status"], 408);
}

#[test]
fn a_steady_upload_passes_the_minimum_rate() {
    let backend = Backend::start(|r| Reply::ok(format!("{}", r.body.len())));
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _log) = config(
        &backend,
        "client_body_timeout_ms = 2000\nclient_body_min_rate = 1000\nclient_body_rate_window_ms = 1000",
        dir.path(),
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.connect();
    // 6,000 bytes at 3,000 bytes a second (300 bytes every 100 ms): three times the minimum.
    c.send(post_head(6000));
    for _ in 0..20 {
        c.send(vec![b'a'; 300]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = c.read_response();
    assert_eq!((r.status, r.body_text()), (200, "6000".to_string()));
}

#[test]
fn a_body_larger_than_the_buffer_streams_and_a_stall_midway_is_408() {
    let backend = Backend::start(|r| Reply::ok(format!("{}", r.body.len())));
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = config(
        &backend,
        "request_buffer_bytes = 1024\nclient_body_timeout_ms = 1000\nclient_body_min_rate = 0",
        dir.path(),
    );
    let gw = Gateway::start(&cfg);
    // Past the buffer the body streams: the backend sees the head and what came.
    let mut c = gw.connect();
    c.send(post_head(10_000));
    c.send(vec![b'b'; 3000]);
    assert!(
        backend.wait_until(Duration::from_secs(5), |s| s.bytes_received() >= 3000),
        "the backend got {} bytes",
        backend.bytes_received()
    );
    // Then the client stalls: 408, and the half-sent request's backend connection closes.
    let r = c.read_response();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(backend.wait_until(Duration::from_secs(5), |s| s.conns.iter().all(|c| c.closed)));
    let lines = read_json_lines(&log, 1);
    assert_eq!(lines[0]["status"], 408);
    assert!(
        lines[0]["bytes_in"].as_u64().unwrap() >= 3000,
        "{}",
        lines[0]
    );

    // A body within the buffer is read whole first: the backend gets it in one piece, on
    // a connection taken only then.
    let mut c = gw.connect();
    c.send(post_head(1000));
    c.send(vec![b'c'; 500]);
    std::thread::sleep(Duration::from_millis(300));
    let before = backend.connections();
    c.send(vec![b'c'; 500]);
    let r = c.read_response();
    assert_eq!((r.status, r.body_text()), (200, "1000".to_string()));
    assert!(backend.connections() <= before + 1);
}

#[test]
fn expect_100_continue_is_answered_once_before_the_body_is_buffered() {
    let backend = Backend::start(|r| Reply::ok(format!("{}", r.body.len())));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.send("POST /api/up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(
        c.wait_for_bytes(b"HTTP/1.1 100 Continue\r\n\r\n", Duration::from_secs(5)),
        "no 100 Continue: {:?}",
        String::from_utf8_lossy(c.buffered())
    );
    assert_eq!(
        backend.connections(),
        0,
        "the backend was reached before the body"
    );
    c.send("hello");
    let (interim, r) = c.read_final_response();
    assert_eq!(interim.len(), 1, "one 100 Continue");
    assert_eq!((r.status, r.body_text()), (200, "5".to_string()));
}

#[test]
fn a_chunked_body_is_buffered_whole() {
    let backend = Backend::start(|r| Reply::ok(String::from_utf8_lossy(&r.body).into_owned()));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    c.send("POST /api/up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        backend.connections(),
        0,
        "forwarded before the body was whole"
    );
    c.send("6\r\n world\r\n0\r\n\r\n");
    let r = c.read_response();
    assert_eq!((r.status, r.body_text()), (200, "hello world".to_string()));
}

#[test]
fn an_abandoned_head_and_a_late_one_are_logged_with_their_bytes_and_counted() {
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = config(&backend, "header_timeout_ms = 500", dir.path());
    let gw = Gateway::start(&cfg);
    let partial = "GET /api/x HTTP/1.1\r\nHost: h\r\n";
    // One client gives up halfway through its head.
    let mut gone = gw.connect();
    gone.send(partial);
    std::thread::sleep(Duration::from_millis(100));
    drop(gone);
    // Another stalls past the header timeout, after more than one tick of the worker.
    let mut late = gw.connect();
    late.send(partial);
    let r = late.read_response();
    assert_eq!(r.status, 408);
    let lines = read_json_lines(&log, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let by_status = |s: u64| {
        lines
            .iter()
            .find(|l| l["status"] == s)
            .unwrap_or_else(|| panic!("no status {s} in {lines:?}"))
    };
    assert_eq!(by_status(0)["bytes_in"], partial.len() as u64);
    assert_eq!(by_status(408)["bytes_in"], partial.len() as u64);
    let admin = admin_addr(&gw);
    assert_eq!(metric(admin, "ringway_client_heads_abandoned_total"), 1.0);
}

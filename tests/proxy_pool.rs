//! Upstream keepalive pools (SPEC §1 `keepalive`, `idle_timeout_ms`, `targets`; §3
//! Connection): reuse, stale connections, round-robin.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn hundred_sequential_requests_on_one_client_connection_use_one_backend_connection() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    for i in 0..100 {
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.body_text(), format!("/internal/{i}"));
    }
    let got = backend.wait_requests(100);
    assert_eq!(
        backend.connections(),
        1,
        "backend connections for 100 requests"
    );
    assert!(got.iter().all(|r| r.conn == 0));
}

#[test]
fn sequential_client_connections_reuse_the_pooled_backend_connection() {
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    for i in 0..50 {
        let mut c = gw.connect();
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    backend.wait_requests(50);
    // One worker, one request at a time: the pool is reused (allowing a little slack for a
    // connection returned to the pool just after the next client's request arrived).
    assert!(
        backend.connections() <= 2,
        "{} backend connections for 50 sequential requests",
        backend.connections()
    );
}

#[test]
fn two_workers_serve_and_pool_per_worker() {
    let backend = Backend::ok();
    let config = format!(
        "{}{}[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"api\"\npath = \"/api\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/internal\"\n",
        server_section(2, ""),
        upstream_section("up", backend.addr(), "")
    );
    let gw = Gateway::start(&config);
    for i in 0..40 {
        let mut c = gw.connect();
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        // A second request on the same connection reuses the same worker's pool.
        assert_eq!(c.roundtrip(get("/api/again")).status, 200);
    }
    backend.wait_requests(80);
    assert!(
        backend.connections() <= 4,
        "{} backend connections for 80 sequential requests on 2 workers",
        backend.connections()
    );
}

/// Every answer is followed by the backend closing its side, without `Connection: close`.
fn closing_backend() -> Backend {
    Backend::start(|r| Reply::ok(format!("{} {}", r.target, r.conn)).close())
}

#[test]
fn stale_pooled_connection_is_replaced_without_a_client_error() {
    let backend = closing_backend();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    for i in 0..5 {
        // Let the backend's FIN reach the gateway: the pooled connection is now stale.
        std::thread::sleep(Duration::from_millis(200));
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.body_text(), format!("/internal/{i} {i}"));
    }
    assert_eq!(backend.connections(), 5);
}

/// The staleness check itself, which the retry rule hides from the test above: a GET sent
/// on a connection the upstream has ended is retried on a fresh one, so the client sees a
/// 200 either way. Here the backend only half-closes (FIN, but it keeps reading), so a
/// request written on the stale connection would still land there and be recorded.
#[test]
fn pooled_connection_the_upstream_half_closed_is_never_written_to() {
    let backend = Backend::start(|r| Reply::ok(format!("{} {}", r.target, r.conn)).half_close());
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/1"));
    assert_eq!(
        (r.status, r.body_text()),
        (200, "/internal/1 0".into()),
        "{}",
        r.text()
    );
    assert!(
        backend.wait_until(READ_TIMEOUT, |s| s.conns[0].half_closed_at.is_some()),
        "the backend did not half-close its first connection"
    );
    // Let the FIN reach the gateway: the pooled connection is now stale.
    std::thread::sleep(Duration::from_millis(300));
    let r = c.roundtrip(get("/api/2"));
    assert_eq!(
        (r.status, r.body_text()),
        (200, "/internal/2 1".into()),
        "{}",
        r.text()
    );
    // The gateway drops the stale connection in any case; once the backend has seen it
    // closed, every byte sent on it has been recorded.
    assert!(
        backend.wait_until(READ_TIMEOUT, |s| s.conns[0].closed),
        "the gateway did not close the half-closed connection"
    );
    let first = &backend.snapshot()[0];
    let late = &first.raw[first.half_closed_at.unwrap()..];
    assert!(
        late.is_empty(),
        "the gateway wrote on a pooled connection after the upstream's FIN: {:?}",
        String::from_utf8_lossy(late)
    );
    assert_eq!(backend.connections(), 2);
}

#[test]
fn stale_pooled_connection_is_replaced_for_a_post_with_a_body() {
    let backend = Backend::start(|r| {
        Reply::ok(format!("{} {}", String::from_utf8_lossy(&r.body), r.conn)).close()
    });
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    for i in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let r = c.roundtrip(with_body("POST", "/api/p", format!("body{i}").as_bytes()));
        assert_eq!(r.status, 200, "POST {i}: {}", r.text());
        assert_eq!(r.body_text(), format!("body{i} {i}"));
    }
    let got = backend.wait_requests(3);
    assert!(
        got.iter().all(|r| r.seq == 0),
        "each POST sent once, on a fresh connection"
    );
}

#[test]
fn stale_pooled_connection_used_immediately_is_retried_for_an_idempotent_request() {
    let backend = closing_backend();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    // No pause: the next GET may be written on the connection the backend is closing; it
    // is idempotent and no byte of an answer came, so a retry on a fresh one is allowed.
    for i in 0..20 {
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
}

#[test]
fn backend_connection_close_answer_is_not_reused() {
    let backend = Backend::start(|r| {
        Reply::raw(format!(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n{}",
            r.conn
        ))
        .close()
    });
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut c = gw.connect();
    for i in 0..5 {
        let r = c.roundtrip(get("/api/x"));
        assert_eq!(
            (r.status, r.body_text()),
            (200, i.to_string()),
            "{}",
            r.text()
        );
        assert!(
            !r.closes(),
            "the backend's Connection: close is not the client's: {}",
            r.text()
        );
    }
    let got = backend.wait_requests(5);
    assert!(
        got.iter().all(|r| r.seq == 0),
        "no request on a closed connection"
    );
}

#[test]
fn round_robin_over_two_targets() {
    let a = Backend::start(|_| {
        Reply::raw("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nA").close()
    });
    let b = Backend::start(|_| {
        Reply::raw("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nB").close()
    });
    let up = upstream_section(
        "up",
        a.addr(),
        &format!("targets = [\"{}\", \"{}\"]", a.addr(), b.addr()),
    );
    let config = format!(
        "{}{up}[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"api\"\npath = \"/api\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/internal\"\n",
        server_section(1, "")
    );
    let gw = Gateway::start(&config);
    let mut c = gw.connect();
    let mut seen = String::new();
    for _ in 0..10 {
        let r = c.roundtrip(get("/api/rr"));
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push_str(&r.body_text());
    }
    assert!(
        seen == "ABABABABAB" || seen == "BABABABABA",
        "targets in order {seen}"
    );
    assert_eq!((a.connections(), b.connections()), (5, 5));
}

#[test]
fn pooled_connection_is_closed_after_the_upstream_idle_timeout() {
    let backend = Backend::ok();
    let up = upstream_section("up", backend.addr(), "idle_timeout_ms = 300");
    let config = format!(
        "{}{up}[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"api\"\npath = \"/api\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/internal\"\n",
        server_section(1, "")
    );
    let gw = Gateway::start(&config);
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/1")).status, 200);
    let closed = backend.wait_until(Duration::from_secs(10), |s| {
        s.conns.first().is_some_and(|c| c.closed)
    });
    assert!(
        closed,
        "the idle pooled connection was not closed within 10 s"
    );
    assert_eq!(c.roundtrip(get("/api/2")).status, 200);
    assert_eq!(backend.connections(), 2);
}

#[test]
fn pool_keeps_at_most_keepalive_idle_connections() {
    let gate = Gate::new();
    let g = gate.clone();
    let backend = Backend::start(move |_| Reply::ok("ok").after(&g));
    let up = upstream_section("up", backend.addr(), "keepalive = 1");
    let config = format!(
        "{}{up}[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"api\"\npath = \"/api\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/internal\"\n",
        server_section(1, "")
    );
    let gw = Gateway::start(&config);
    let mut c1 = gw.connect();
    let mut c2 = gw.connect();
    let mut c3 = gw.connect();
    c1.send(get("/api/1"));
    c2.send(get("/api/2"));
    c3.send(get("/api/3"));
    // Three requests in flight at once: three backend connections.
    backend.wait_requests(3);
    gate.open();
    for c in [&mut c1, &mut c2, &mut c3] {
        assert_eq!(c.read_response().status, 200);
    }
    let trimmed = backend.wait_until(Duration::from_secs(10), |s| {
        s.conns.iter().filter(|c| c.closed).count() >= 2
    });
    let closed = |b: &Backend| b.snapshot().iter().filter(|c| c.closed).count();
    assert!(
        trimmed,
        "with keepalive = 1, {} of 3 idle connections were closed",
        closed(&backend)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(closed(&backend), 2, "one idle connection is kept");
    assert_eq!(c1.roundtrip(get("/api/4")).status, 200);
    assert_eq!(backend.connections(), 3, "the kept connection is reused");
}

/// Past 512 connections on a worker, idle connections wait for readability holding no
/// buffer, then read into a fresh one: 600 keepalive clients each make a request, then a
/// second one (one of them pipelined with a third) through that parked path.
#[test]
fn many_idle_connections_park_and_still_answer() {
    raise_fd_limit();
    let backend = Backend::ok();
    let gw = Gateway::start(&proxy_config(backend.addr(), "", ""));
    let mut clients: Vec<Client> = (0..600)
        .map(|i| {
            let mut c = gw.connect();
            assert_eq!(c.roundtrip(get(&format!("/api/first{i}"))).status, 200);
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let mut two = get(&format!("/api/second{i}"));
        two.extend_from_slice(&get(&format!("/api/third{i}")));
        c.send(two);
        assert_eq!(c.read_response().status, 200, "connection {i}");
        assert_eq!(c.read_response().status, 200, "connection {i}");
    }
    assert_eq!(backend.requests().len(), 1800);
}

//! Passive upstream health (`max_fails`, `fail_timeout_ms`) and the retry rule's promise
//! that a non-idempotent request is never sent twice, through the real binary, with the
//! counts read from `/metrics`.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::*;

/// One worker with an admin listener, upstream `up` with `targets` and `extra` keys, and the
/// `/api` API of [`proxy_config`].
fn config(targets: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let base = with_admin(&proxy_config(targets[0], "", ""));
    base.replacen(
        &format!("url = \"http://{}\"\n", targets[0]),
        &format!(
            "url = \"http://{}\"\ntargets = [{}]\nconnect_timeout_ms = 500\n{extra}",
            targets[0],
            list.join(", ")
        ),
        1,
    )
}

fn metric(gw: &Gateway, series: &str) -> f64 {
    // The gauges are folded in by the housekeeping tick (50 ms).
    std::thread::sleep(Duration::from_millis(120));
    let (_, m) = admin_get(admin_addr(gw), "/metrics");
    sample(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"))
}

#[test]
fn a_dead_target_is_tried_once_then_skipped_until_fail_timeout() {
    let backend = Backend::ok();
    let dead = unused_addr();
    let gw = Gateway::start(&config(
        &[dead, backend.addr()],
        "max_fails = 1\nfail_timeout_ms = 1500\n",
    ));
    let mut c = gw.connect();
    for i in 0..6 {
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Round robin alone would try the dead target on every other request: 3 failures.
    let up = "{upstream=\"up\"}";
    assert_eq!(
        metric(
            &gw,
            &format!("ringway_upstream_connections_failed_total{up}")
        ),
        1.0
    );
    assert_eq!(
        metric(
            &gw,
            &format!("ringway_upstream_targets_marked_down_total{up}")
        ),
        1.0
    );
    assert_eq!(
        metric(&gw, &format!("ringway_upstream_targets_down{up}")),
        1.0
    );
    // After fail_timeout it gets another chance (and fails again).
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(
        metric(&gw, &format!("ringway_upstream_targets_down{up}")),
        0.0
    );
    for i in 0..4 {
        assert_eq!(c.roundtrip(get(&format!("/api/again{i}"))).status, 200);
    }
    assert_eq!(
        metric(
            &gw,
            &format!("ringway_upstream_connections_failed_total{up}")
        ),
        2.0
    );
    assert_eq!(backend.requests().len(), 10);
}

#[test]
fn when_every_target_is_down_they_are_tried_anyway() {
    let (a, b) = (unused_addr(), unused_addr());
    let gw = Gateway::start(&config(&[a, b], "max_fails = 1\nfail_timeout_ms = 60000\n"));
    let mut c = gw.connect();
    for _ in 0..3 {
        let r = c.roundtrip(get("/api/x"));
        r.assert_gateway_error(502, "every target down");
    }
    // Each request tried both targets: nothing was failed without a try.
    let up = "{upstream=\"up\"}";
    assert_eq!(
        metric(
            &gw,
            &format!("ringway_upstream_connections_failed_total{up}")
        ),
        6.0
    );
    assert_eq!(
        metric(&gw, &format!("ringway_upstream_targets_down{up}")),
        2.0
    );
}

#[test]
fn max_fails_zero_keeps_round_robin() {
    let backend = Backend::ok();
    let dead = unused_addr();
    let gw = Gateway::start(&config(&[dead, backend.addr()], "max_fails = 0\n"));
    let mut c = gw.connect();
    for i in 0..6 {
        assert_eq!(c.roundtrip(get(&format!("/api/{i}"))).status, 200);
    }
    let up = "{upstream=\"up\"}";
    assert_eq!(
        metric(
            &gw,
            &format!("ringway_upstream_connections_failed_total{up}")
        ),
        3.0
    );
    assert_eq!(
        metric(
            &gw,
            &format!("ringway_upstream_targets_marked_down_total{up}")
        ),
        0.0
    );
}

#[test]
fn a_post_is_never_sent_twice() {
    // Both targets read the request and close without a word. A GET may be retried once on
    // a fresh connection; a POST must reach a backend once and then fail.
    let (one, two) = (
        Backend::start(|_| Reply::raw(Vec::new()).close()),
        Backend::start(|_| Reply::raw(Vec::new()).close()),
    );
    let gw = Gateway::start(&config(&[one.addr(), two.addr()], ""));
    let mut c = gw.connect();
    let r = c.roundtrip(with_body("POST", "/api/order", b"{\"n\":1}"));
    r.assert_gateway_error(502, "the backend closed after reading the POST");
    let posts = one.requests().len() + two.requests().len();
    assert_eq!(posts, 1, "the POST reached a backend {posts} times");

    // Over a pooled connection too: warm the pool with a GET that is answered, then POST.
    let warm = Backend::queue(vec![Reply::ok("warm"), Reply::raw(Vec::new()).close()]);
    let gw = Gateway::start(&config(&[warm.addr()], ""));
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/warm")).status, 200);
    let r = c.roundtrip(with_body("POST", "/api/order", b"{\"n\":2}"));
    r.assert_gateway_error(502, "pooled POST");
    let posts = warm
        .requests()
        .iter()
        .filter(|q| q.method == "POST")
        .count();
    assert_eq!(posts, 1, "the pooled POST was sent {posts} times");
}

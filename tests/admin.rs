//! The admin listener (SPEC §7), through the real binary: `/healthz` while serving and
//! while draining, `/metrics` numbers equal to the requests sent (by service, API and code;
//! the histogram; upstream connections; bytes; auth failures by reason; TLS handshake
//! failures; reloads), the output checked by `promtool check metrics` when it is installed,
//! and admin pages never served on the data listener.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn metrics_count_what_was_sent() {
    let backend = Backend::ok();
    let cfg = with_admin(&proxy_config(backend.addr(), "", ""));
    let gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    let mut c = gw.connect();
    for i in 0..7 {
        assert_eq!(c.roundtrip(get(&format!("/api/{i}"))).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(c.roundtrip(get("/nothing-here")).status, 404);
    }
    // Workers fold client bytes and pool gauges in every 50 ms.
    std::thread::sleep(Duration::from_millis(200));
    let (status, m) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    let expect = [
        (
            "ringway_requests_total{service=\"s\",api=\"api\",code=\"200\"}",
            7.0,
        ),
        (
            "ringway_requests_total{service=\"\",api=\"\",code=\"404\"}",
            3.0,
        ),
        (
            "ringway_request_duration_seconds_count{service=\"s\",api=\"api\"}",
            7.0,
        ),
        (
            "ringway_request_duration_seconds_bucket{service=\"s\",api=\"api\",le=\"+Inf\"}",
            7.0,
        ),
        (
            "ringway_upstream_connections_opened_total{upstream=\"up\"}",
            1.0,
        ),
        (
            "ringway_upstream_connections_reused_total{upstream=\"up\"}",
            6.0,
        ),
        (
            "ringway_upstream_connections_failed_total{upstream=\"up\"}",
            0.0,
        ),
        ("ringway_upstream_idle_connections{upstream=\"up\"}", 1.0),
        ("ringway_client_connections", 1.0),
        ("ringway_config_reloads_total{result=\"success\"}", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&m, series), Some(value), "{series} in\n{m}");
    }
    let sent: usize = (0..7)
        .map(|i| get(&format!("/api/{i}")).len())
        .sum::<usize>()
        + 3 * get("/nothing-here").len();
    assert_eq!(
        sample(&m, "ringway_client_bytes_received_total"),
        Some(sent as f64),
        "{m}"
    );
    assert!(sample(&m, "ringway_client_bytes_sent_total").unwrap() > 0.0);
    let version = format!(
        "ringway_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&m, &version), Some(1.0));
    promtool_check(&m);

    // Not on the data listener.
    assert_eq!(c.roundtrip(get("/metrics")).status, 404);
    let (status, body) = admin_get(admin, "/nope");
    assert_eq!(status, 404);
    assert!(json_message(body.as_bytes()).is_some(), "{body}");
}

/// `promtool check metrics` on `text`, when promtool is installed (Debian: `prometheus`).
#[test]
fn bytes_of_a_spliced_response_are_counted() {
    // A 1 MiB answer between plain sockets is spliced, never read by the worker: its bytes
    // are counted all the same.
    let body = pattern(1024 * 1024);
    let b = body.clone();
    let backend = Backend::start(move |_| Reply::ok(&b));
    let gw = Gateway::start(&with_admin(&proxy_config(backend.addr(), "", "")));
    let admin = admin_addr(&gw);
    let mut c = gw.connect();
    let r = c.roundtrip(get("/api/big"));
    assert!(r.status == 200 && r.body == body, "status {}", r.status);
    let want = (r.head_raw.len() + r.body_raw.len()) as f64;
    wait_metric(
        admin,
        "ringway_client_bytes_sent_total",
        want,
        Duration::from_secs(5),
    );
}

fn promtool_check(text: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool is not installed: `promtool check metrics` skipped");
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn auth_failures_and_reloads_are_counted() {
    let backend = Backend::ok();
    let cfg = with_admin(&proxy_config(backend.addr(), "", "")).replace(
        "method = \"ANY\"\n",
        "method = \"ANY\"\nauth = \"key_pair\"\n",
    );
    let gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/x")).status, 401);
    let bad = b"GET /api/x HTTP/1.1\r\nHost: h\r\nAuthorization: hmac id=\"nobody\", algorithm=\"hmac-sha256\", headers=\"x-date\", signature=\"AAAA\"\r\nX-Date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
    assert_eq!(c.roundtrip(bad).status, 401);
    std::fs::write(&gw.config_path, "not toml [").unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.stderr().contains("reload failed") {
        assert!(Instant::now() < deadline, "{}", gw.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, m) = admin_get(admin, "/metrics");
    for (series, value) in [
        (
            "ringway_auth_failures_total{scheme=\"key_pair\",reason=\"missing\"}",
            1.0,
        ),
        (
            "ringway_auth_failures_total{scheme=\"key_pair\",reason=\"unknown_key\"}",
            1.0,
        ),
        (
            "ringway_requests_total{service=\"s\",api=\"api\",code=\"401\"}",
            2.0,
        ),
        ("ringway_config_reloads_total{result=\"failure\"}", 1.0),
        ("ringway_config_reloads_total{result=\"success\"}", 0.0),
    ] {
        assert_eq!(sample(&m, series), Some(value), "{series} in\n{m}");
    }
    promtool_check(&m);
}

#[test]
fn healthz_says_serving_then_draining() {
    let gate = Gate::new();
    let g = gate.clone();
    let backend = Backend::start(move |_| Reply::ok("late").after(&g));
    let cfg = with_admin(&proxy_config(
        backend.addr(),
        "shutdown_grace_ms = 5000\n",
        "",
    ));
    let mut gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    assert_eq!(
        admin_get(admin, "/healthz"),
        (200, "{\"status\":\"serving\"}".into())
    );
    // A request in flight keeps the drain going.
    let mut c = gw.connect();
    c.send(get("/api/slow"));
    backend.wait_requests(1);
    gw.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin_get(admin, "/healthz");
        if status == 503 {
            assert_eq!(body, "{\"status\":\"draining\"}");
            break;
        }
        assert!(Instant::now() < deadline, "never 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    gate.open();
    assert_eq!(c.read_response().status, 200);
    assert!(
        gw.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn docs_are_served_from_the_running_configuration() {
    let backend = Backend::ok();
    let cfg = with_admin(&proxy_config(backend.addr(), "", ""));
    let gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);

    let (status, index) = admin_get(admin, "/docs");
    assert_eq!(status, 200);
    assert!(
        index.contains("<html") && index.contains("/docs/s.html"),
        "{index}"
    );
    let (status, page) = admin_get(admin, "/docs/s.html");
    assert_eq!(status, 200);
    assert!(page.contains("/api"), "{page}");

    // The same OpenAPI document `ringway docs` writes for this file.
    let out = tempfile::tempdir().unwrap();
    let written = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["docs", "--config"])
        .arg(&gw.config_path)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let file = std::fs::read_to_string(out.path().join("openapi/s.json")).unwrap();
    let (status, served) = admin_get(admin, "/docs/openapi/s.json");
    assert_eq!(status, 200);
    assert_eq!(served, file);
    // One service: /docs/openapi.json is its document.
    let (status, single) = admin_get(admin, "/docs/openapi.json");
    assert_eq!(status, 200);
    let single: serde_json::Value = serde_json::from_str(&single).unwrap();
    assert_eq!(single["openapi"], "3.0.3");
    assert_eq!(admin_get(admin, "/docs/nope.html").0, 404);

    // After a reload the docs follow the new configuration.
    let renamed = cfg.replace("name = \"api\"", "name = \"renamed-api\"");
    std::fs::write(&gw.config_path, renamed).unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, doc) = admin_get(admin, "/docs/openapi/s.json");
        if doc.contains("renamed-api") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "docs did not follow the reload: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

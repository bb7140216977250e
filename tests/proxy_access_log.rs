//! The JSON access log (SPEC §1 `access_log`): one line per request, with the request id the
//! client got, the matched API and the status sent.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn read_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    // Workers flush every few tens of milliseconds; wait for the lines (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_request_gets_one_json_line() {
    let backend = Backend::start(|_| Reply::ok("hi"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cfg = proxy_config(backend.addr(), "", "").replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.connect();
    let ok = c.roundtrip(get("/api/a?x=\"1\""));
    assert_eq!(ok.status, 200);
    let miss = c.roundtrip(get("/nothing"));
    assert_eq!(miss.status, 404);
    let mut bad = gw.connect();
    bad.send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(bad.read_response().status, 400);

    let lines = read_lines(&log, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["target"], "/api/a?x=\"1\"");
    assert_eq!(first["status"], 200);
    assert_eq!(first["service"], "s");
    assert_eq!(first["api"], "api");
    assert_eq!(first["request_id"], ok.request_id().as_str());
    assert!(first["duration_ms"].as_f64().is_some());
    assert!(first["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(lines[1]["status"], 404);
    assert_eq!(lines[1]["api"], serde_json::Value::Null);
    assert_eq!(lines[1]["request_id"], miss.request_id().as_str());
    assert_eq!(lines[2]["status"], 400);
}

//! The JSON access log (SPEC §1 `access_log`): one line per request, with the request id the
//! client got, the matched API and the status sent.

mod support;

use std::time::{Duration, Instant};

use support::*;

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
    let first_request =
        "GET /api/a?x=\"1\" HTTP/1.1\r\nHost: example.test\r\nUser-Agent: test-agent/1.0\r\n\r\n";
    let ok = c.roundtrip(first_request);
    assert_eq!(ok.status, 200);
    let miss = c.roundtrip(get("/nothing"));
    assert_eq!(miss.status, 404);
    let mut bad = gw.connect();
    bad.send("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(bad.read_response().status, 400);

    let lines = read_json_lines(&log, 3);
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
    assert_eq!(first["user_agent"], "test-agent/1.0");
    assert_eq!(first["upstream"], backend.addr().to_string());
    assert!(
        first["upstream_ms"].as_f64().is_some_and(|t| t >= 0.0),
        "{first}"
    );
    assert_eq!(first["bytes_in"], first_request.len());
    assert_eq!(
        first["bytes_out"],
        ok.head_raw.len() + ok.body_raw.len(),
        "the whole answer"
    );
    assert_eq!(lines[1]["status"], 404);
    assert_eq!(lines[1]["upstream"], serde_json::Value::Null);
    assert_eq!(lines[1]["user_agent"], serde_json::Value::Null);
    assert_eq!(lines[1]["api"], serde_json::Value::Null);
    assert_eq!(lines[1]["request_id"], miss.request_id().as_str());
    assert_eq!(lines[2]["status"], 400);
}

#[test]
fn a_stalled_stdout_never_blocks_the_workers() {
    // access_log = stdout into a pipe nobody reads: the pipe fills after 64 KiB, and the
    // gateway must go on answering, dropping (and counting) the lines it cannot write.
    let backend = Backend::ok();
    let cfg = with_admin(
        &proxy_config(backend.addr(), "", "")
            .replace("access_log = \"off\"", "access_log = \"stdout\""),
    );
    let gw = Gateway::start_with_stdout_unread(&cfg);
    let admin = admin_addr(&gw);
    let mut c = gw.connect();
    let started = Instant::now();
    // 3,000 lines of 7 KiB: more than the pipe (64 KiB) and the log queue (8 MiB) hold.
    let long = format!("/api/{}", "x".repeat(7000));
    for _ in 0..3000 {
        let r = c.roundtrip(get(&long));
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the gateway slowed down behind its log"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = admin_get(admin, "/metrics");
        let dropped = sample(&m, "ringway_access_log_dropped_lines_total").unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no dropped lines counted:\n{m}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_gateway_messages_can_be_json_lines() {
    use std::io::BufRead;
    let backend = Backend::ok();
    let cfg = proxy_config(backend.addr(), "log_format = \"json\"\n", "");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringway.toml");
    std::fs::write(&path, cfg).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let listening = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no listening message in {seen:?}"));
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
        assert!(v["level"].is_string(), "{v}");
        seen.push(line);
        if let Some(addr) = v["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("listening http "))
        {
            break addr.parse::<std::net::SocketAddr>().unwrap();
        }
    };
    let mut c = Client::connect(listening);
    assert_eq!(c.roundtrip(get("/api/x")).status, 200);
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    for line in rx.try_iter() {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["message"].is_string(), "{v}");
    }
}

//! `SIGHUP` reload (SPEC §7), through the real binary: nothing dropped under keepalive load
//! across 50 reloads with the upstream pool carried (the backend's connection count stays
//! flat), a request in flight across a reload, APIs and upstreams added, changed and
//! removed, a broken file that keeps the old configuration, refused listener changes,
//! `ringway reload --pid-file` and `server.pid_file`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const WAIT: Duration = Duration::from_secs(10);

/// Writes `toml` over the gateway's file, sends SIGHUP and waits until the gateway logged
/// its `reloaded` (or `reload failed`) line number `n` (counting both).
fn reload(gw: &Gateway, toml: &str, n: usize) {
    std::fs::write(&gw.config_path, toml).unwrap();
    gw.signal(libc::SIGHUP);
    wait_reloads(gw, n);
}

fn reload_lines(gw: &Gateway) -> usize {
    gw.stderr()
        .lines()
        .filter(|l| l.starts_with("ringway: reloaded") || l.starts_with("ringway: reload failed"))
        .count()
}

fn wait_reloads(gw: &Gateway, n: usize) {
    let deadline = Instant::now() + WAIT;
    while reload_lines(gw) < n {
        assert!(
            Instant::now() < deadline,
            "no reload line {n}:\n{}",
            gw.stderr()
        );
        thread::sleep(Duration::from_millis(10));
    }
    // Workers pick a configuration up at their next request or housekeeping tick (50 ms).
    thread::sleep(Duration::from_millis(120));
}

/// `[server]` with `workers`, upstream `up` → `a`, and service `s` with the APIs in `apis`
/// (`(name, path, upstream)`), each to backend path `/b/<name>`.
fn config(
    workers: usize,
    upstreams: &[(&str, std::net::SocketAddr)],
    apis: &[(&str, &str, &str)],
) -> String {
    let mut s = server_section(workers, "");
    for (name, addr) in upstreams {
        s.push_str(&upstream_section(name, *addr, ""));
    }
    s.push_str("[[services]]\nname = \"s\"\n");
    for (name, path, up) in apis {
        s.push_str(&format!(
            "[[services.apis]]\nname = \"{name}\"\npath = \"{path}\"\nmethod = \"ANY\"\n[services.apis.backend]\nupstream = \"{up}\"\npath = \"/b/{name}\"\n"
        ));
    }
    s
}

#[test]
fn fifty_reloads_under_keepalive_load_drop_nothing_and_keep_the_pool() {
    let backend = Backend::ok();
    let v1 = config(2, &[("up", backend.addr())], &[("a", "/a", "up")]);
    // v2 adds an API; the upstream is the same, so its pool carries over.
    let v2 = config(
        2,
        &[("up", backend.addr())],
        &[("a", "/a", "up"), ("b", "=/b", "up")],
    );
    let gw = Gateway::start(&v1);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            let addr = gw.addr();
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                // Bounded: the main thread stops it; a hard cap keeps it finite anyway.
                for _ in 0..200_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let sent = c.try_send(get("/a/x"));
                    let answer = sent
                        .map_err(|e| e.to_string())
                        .and_then(|()| c.try_read_response(false, Duration::from_secs(10)));
                    match answer {
                        Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            eprintln!("failed: {:?}", other.map(|r| r.status));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    // Warm up: every client has its upstream connection.
    thread::sleep(Duration::from_millis(500));
    let before = backend.connections();
    for i in 0..50 {
        let next = if i % 2 == 0 { &v2 } else { &v1 };
        std::fs::write(&gw.config_path, next).unwrap();
        gw.signal(libc::SIGHUP);
        thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    // SIGHUPs that arrive while a reload runs coalesce into one more: most of the 50 are
    // separate reloads, and the last one applied the last file.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed across reloads"
    );
    let served = ok.load(Ordering::Relaxed);
    assert!(served > 1000, "the load ran: {served}");
    let reloads = reload_lines(&gw);
    assert!(
        (25..=50).contains(&reloads),
        "{reloads} reloads:\n{}",
        gw.stderr()
    );
    let stderr = gw.stderr();
    let last = stderr.lines().rfind(|l| l.starts_with("ringway: reloaded"));
    assert!(
        last.is_some_and(|l| l.contains("1 APIs")),
        "the last file (v1, one API) is the one serving:\n{stderr}"
    );
    assert!(!gw.stderr().contains("reload failed"), "{}", gw.stderr());
    assert_eq!(
        backend.connections(),
        before,
        "the upstream pool was carried: no new backend connections"
    );
}

#[test]
fn a_request_in_flight_across_a_reload_finishes_on_its_configuration() {
    let gate = Gate::new();
    let g2 = gate.clone();
    let backend = Backend::start(move |r| {
        if r.target.contains("slow") {
            Reply::ok("slow done").after(&g2)
        } else {
            Reply::ok("fast")
        }
    });
    let v1 = config(1, &[("up", backend.addr())], &[("a", "/a", "up")]);
    let gw = Gateway::start(&v1);
    let mut slow = gw.connect();
    slow.send(get("/a/slow"));
    backend.wait_requests(1);
    // The reload removes the API the slow request is on.
    reload(
        &gw,
        &config(1, &[("up", backend.addr())], &[("c", "/c", "up")]),
        1,
    );
    let r = gw.connect().roundtrip(get("/a/x"));
    assert_eq!(r.status, 404, "the new configuration serves new requests");
    gate.open();
    let r = slow.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body_text(), "slow done");
}

#[test]
fn reload_adds_changes_and_removes_apis_and_upstreams() {
    let (one, two, three) = (Backend::ok(), Backend::ok(), Backend::ok());
    let v1 = config(
        1,
        &[("u1", one.addr()), ("u2", two.addr())],
        &[("a", "/a", "u1"), ("b", "/b", "u2")],
    );
    let gw = Gateway::start(&v1);
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/a")).status, 200);
    assert_eq!(c.roundtrip(get("/b")).status, 200);
    assert_eq!(c.roundtrip(get("/c")).status, 404);

    // a: moved to upstream u1 at another address (u1 changed); b: removed with u2; c: new.
    let v2 = config(
        1,
        &[("u1", three.addr()), ("u3", two.addr())],
        &[("a", "/a", "u1"), ("c", "/c", "u3")],
    );
    reload(&gw, &v2, 1);
    assert_eq!(c.roundtrip(get("/a")).status, 200);
    assert_eq!(c.roundtrip(get("/b")).status, 404);
    assert_eq!(c.roundtrip(get("/c")).status, 200);
    assert_eq!(one.requests().len(), 1, "u1's old address no longer used");
    assert_eq!(three.requests().len(), 1);
    assert_eq!(two.requests().len(), 2, "u3 reaches the second backend");
    // u1 changed: its idle connection to the first backend was closed by the reload.
    assert!(
        one.wait_until(WAIT, |s| s.conns.iter().all(|c| c.closed)),
        "the changed upstream's idle connection was closed"
    );
}

#[test]
fn a_broken_file_keeps_the_running_configuration() {
    let backend = Backend::ok();
    let v1 = config(1, &[("up", backend.addr())], &[("a", "/a", "up")]);
    let gw = Gateway::start(&v1);
    let broken = v1.replace("path = \"/a\"", "path = \"no-slash\"");
    reload(&gw, &broken, 1);
    let err = gw.stderr();
    assert!(err.contains("ringway: reload failed"), "{err}");
    assert!(
        err.contains("services[0].apis[0].path"),
        "names the key: {err}"
    );
    assert!(
        err.contains("ringway.toml:"),
        "names the file and line: {err}"
    );
    let r = gw.connect().roundtrip(get("/a/x"));
    assert_eq!(r.status, 200, "still served by the old configuration");

    // Not TOML at all.
    reload(&gw, "[server\n", 2);
    assert_eq!(gw.connect().roundtrip(get("/a/x")).status, 200);
    // A good file after bad ones applies.
    reload(
        &gw,
        &config(1, &[("up", backend.addr())], &[("z", "/z", "up")]),
        3,
    );
    assert_eq!(gw.connect().roundtrip(get("/z")).status, 200);
    assert_eq!(gw.connect().roundtrip(get("/a/x")).status, 404);
}

#[test]
fn listener_changes_are_refused_and_the_rest_applies() {
    let backend = Backend::ok();
    let v1 = config(1, &[("up", backend.addr())], &[("a", "/a", "up")]);
    let gw = Gateway::start(&v1);
    let moved = config(1, &[("up", backend.addr())], &[("b", "/b", "up")]).replace(
        "listen_http = [\"127.0.0.1:0\"]",
        "listen_http = [\"127.0.0.1:1\"]",
    );
    reload(&gw, &moved, 1);
    assert!(
        gw.stderr().contains(
            "server.listen_http [127.0.0.1:0] -> [127.0.0.1:1] changes only on a restart"
        ),
        "{}",
        gw.stderr()
    );
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/b")).status, 200, "the API change applied");
    assert_eq!(c.roundtrip(get("/a")).status, 404);
}

#[test]
fn reload_command_and_pid_file() {
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("ringway.pid");
    let with_pid = |apis: &[(&str, &str, &str)]| {
        config(1, &[("up", backend.addr())], apis).replace(
            "workers = 1\n",
            &format!(
                "workers = 1\npid_file = {:?}\n",
                pid_file.display().to_string()
            ),
        )
    };
    let mut gw = Gateway::start(&with_pid(&[("a", "/a", "up")]));
    let written = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(written.trim(), gw.pid().to_string());

    std::fs::write(&gw.config_path, with_pid(&[("b", "/b", "up")])).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["reload", "--pid-file"])
        .arg(&pid_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_reloads(&gw, 1);
    assert_eq!(gw.connect().roundtrip(get("/b")).status, 200);

    // Without --pid-file: the configuration's pid_file.
    std::fs::write(&gw.config_path, with_pid(&[("c", "/c", "up")])).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("reload")
        .arg("--config")
        .arg(&gw.config_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_reloads(&gw, 2);
    assert_eq!(gw.connect().roundtrip(get("/c")).status, 200);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["reload", "--pid-file"])
        .arg(dir.path().join("missing.pid"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.pid"));

    gw.terminate();
    assert!(!pid_file.exists(), "the pid file is removed at exit");
}

#[test]
fn sighups_every_50_ms_coalesce_and_the_last_file_wins() {
    let backend = Backend::ok();
    let gw = Gateway::start(&config(1, &[("up", backend.addr())], &[("a", "/a", "up")]));
    let mut c = gw.connect();
    for i in 0..20 {
        // Written whole, then renamed: a reload never reads a half-written file.
        let next = config(
            1,
            &[("up", backend.addr())],
            &[(&format!("v{i}"), &format!("=/v{i}"), "up")],
        );
        let tmp = gw.config_path.with_extension("tmp");
        std::fs::write(&tmp, next).unwrap();
        std::fs::rename(&tmp, &gw.config_path).unwrap();
        gw.signal(libc::SIGHUP);
        assert_eq!(
            c.roundtrip(get("/nothing")).status,
            404,
            "served throughout"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        if c.roundtrip(get("/v19")).status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last file never served:\n{}",
            gw.stderr()
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.roundtrip(get("/v18")).status, 404);
    let reloads = reload_lines(&gw);
    assert!((1..=20).contains(&reloads), "{reloads}");
    assert!(!gw.stderr().contains("reload failed"), "{}", gw.stderr());
}

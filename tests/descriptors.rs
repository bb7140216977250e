//! Running out of descriptors, and clients refused: the gateway under a low descriptor
//! limit (`RLIMIT_NOFILE`, set in the child before it starts) keeps answering, refuses the
//! clients it cannot take at once (503 on plain HTTP, a close on HTTPS), keeps serving the
//! clients it has, recovers when the flood leaves, counts it all in `/metrics` and says so on
//! stderr at most once a second; a client past `max_connections` is in the access log and
//! `/metrics`; at start, the soft limit is raised to the hard one and a limit too low for
//! `max_connections` is named.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::pki::Pki;
use support::*;

/// The gateway's descriptor limit (soft and hard) in the flood test.
const LIMIT: u64 = 256;
/// Idle connections the flood opens: well past [`LIMIT`].
const FLOOD: usize = 400;
/// How long a client past the limit may wait for its 503 (or close).
const REFUSED_WITHIN: Duration = Duration::from_millis(1500);

fn mock_api(name: &str, path: &str) -> String {
    format!(
        "[[services.apis]]\nname = \"{name}\"\npath = \"{path}\"\n[services.apis.backend]\ntype = \"mock\"\nmock_status = 200\nmock_body = \"hello\"\n\n"
    )
}

/// One worker with an HTTP and an HTTPS listener and the admin listener, `server_extra` in
/// `[server]`; `api.example.test` (http and https): a mock `/hello` and `/api` to `backend`.
fn config(pki: &Pki, backend: SocketAddr, server_extra: &str) -> String {
    with_admin(&format!(
        "{}{}{}[[services]]\nname = \"s\"\nhosts = [\"api.example.test\", \"example.test\"]\nprotocol = \"http&https\"\n{}[[services.apis]]\nname = \"api\"\npath = \"/api\"\nmethod = \"ANY\"\n[services.apis.backend]\ntype = \"vpc\"\nupstream = \"up\"\npath = \"/internal\"\n",
        server_section(
            1,
            &format!("listen_https = [\"127.0.0.1:0\"]\n{server_extra}")
        ),
        upstream_section("up", backend, ""),
        pki.certificates_section(),
        mock_api("hello", "=/hello"),
    ))
}

/// What happened to an idle connection: answered (503 or a close) or still open.
fn refused(c: &mut TcpStream) -> Option<Vec<u8>> {
    c.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                return (!got.is_empty()).then_some(got);
            }
            Err(_) => return Some(got),
        }
    }
}

/// A new client's `GET /hello` (`Connection: close`): what it got within `within` (the
/// status line, or "closed"); panics on a wait.
fn answer_within(addr: SocketAddr, within: Duration) -> String {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    c.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let _ = c.write_all(b"GET /hello HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n");
    let mut got = Vec::new();
    match c.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            panic!("a new client got no answer within {within:?}: {got:?}")
        }
        Err(_) => {}
    }
    let text = String::from_utf8_lossy(&got);
    let status = text.lines().next().unwrap_or("closed").to_string();
    assert!(
        status == "closed"
            || status.starts_with("HTTP/1.1 200 ")
            || status.starts_with("HTTP/1.1 503 "),
        "{text} after {:?}",
        start.elapsed()
    );
    status
}

/// Lines about failed accepts for want of descriptors on the gateway's stderr.
fn accept_error_lines(gw: &Gateway) -> Vec<String> {
    gw.stderr()
        .lines()
        .filter(|l| l.contains("accept") && l.contains("Too many open files"))
        .map(str::to_string)
        .collect()
}

/// GET `path` on a new connection until it is answered 200 (a 503 or a close: again),
/// within `within`.
fn served_again(addr: SocketAddr, path: &str, within: Duration) -> Response {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(mut c) = Client::try_connect(addr) {
            let _ = c.try_send(get(path));
            if let Ok(r) = c.try_read_response(false, Duration::from_secs(2))
                && r.status == 200
            {
                return r;
            }
        }
        assert!(Instant::now() < deadline, "not served within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn out_of_descriptors_new_clients_are_refused_at_once_and_the_others_served() {
    raise_fd_limit();
    let pki = Pki::new();
    let backend = Backend::ok();
    let toml = config(
        &pki,
        backend.addr(),
        "max_connections = 100000\nheader_timeout_ms = 60000\nclient_idle_timeout_ms = 60000\n",
    );
    let mut gw = Gateway::try_start_with_nofile(&toml, (LIMIT, LIMIT))
        .unwrap_or_else(|e| panic!("{e}\n--- configuration ---\n{toml}"));
    let admin = admin_addr(&gw);
    let https = gw.https_addr();
    let addr = gw.addr();

    // A keep-alive client from before the flood; its proxied request leaves an upstream
    // connection in the pool.
    let mut kept = gw.connect();
    assert_eq!(kept.roundtrip(get("/hello")).status, 200);
    assert_eq!(kept.roundtrip(get("/api/before")).status, 200);

    // The flood: more idle connections than the gateway has descriptors.
    let flood_start = Instant::now();
    let mut flood: Vec<TcpStream> = (0..FLOOD)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"))
        })
        .collect();
    std::thread::sleep(REFUSED_WITHIN);
    let mut answered = Vec::new();
    let mut open = Vec::new();
    for (i, c) in flood.iter_mut().enumerate() {
        match refused(c) {
            Some(bytes) => answered.push((i, bytes)),
            None => open.push(i),
        }
    }
    eprintln!(
        "{} idle connections: {} answered within {REFUSED_WITHIN:?}, {} held",
        FLOOD,
        answered.len(),
        open.len()
    );
    assert!(
        open.len() < LIMIT as usize,
        "{} of {FLOOD} connections got no answer within {REFUSED_WITHIN:?} with a limit of {LIMIT} descriptors; stderr:\n{}",
        open.len(),
        gw.stderr()
    );
    assert!(
        answered.len() >= FLOOD - LIMIT as usize,
        "{} answered",
        answered.len()
    );
    for (i, bytes) in &answered {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 503 "),
            "connection {i}: {text}"
        );
    }
    let with_503 = answered.iter().filter(|(_, b)| !b.is_empty()).count();
    assert!(with_503 > 0, "no refused client got its 503");

    // HTTPS clients past the limit are closed at once (no plaintext answer).
    for _ in 0..5 {
        let mut c = TcpStream::connect_timeout(&https, Duration::from_secs(5)).unwrap();
        c.set_read_timeout(Some(REFUSED_WITHIN)).unwrap();
        let mut got = Vec::new();
        let t = Instant::now();
        match c.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!(
                "an HTTPS client past the limit: {e} after {:?}",
                t.elapsed()
            ),
        }
        assert!(got.is_empty(), "bytes for a refused HTTPS client: {got:?}");
    }

    // Held at the limit for a while: every new client gets an answer (a 503, a close, or
    // a 200 when a descriptor happened to be free), never a wait; stderr stays quiet.
    let hold = Instant::now() + Duration::from_secs(2);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    while Instant::now() < hold {
        let outcome = answer_within(addr, REFUSED_WITHIN);
        *outcomes.entry(outcome).or_default() += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("new clients at the limit: {outcomes:?}");

    // The client the gateway holds is still served, the mock and the proxied API.
    let r = kept.roundtrip(get("/hello"));
    assert_eq!((r.status, r.body_text()), (200, "hello".into()));
    assert_eq!(kept.roundtrip(get("/api/during")).status, 200);

    // Some held idle clients leave: a new client is served.
    let leaving: Vec<usize> = open.iter().copied().take(20).collect();
    for &i in &leaving {
        let _ = flood[i].shutdown(std::net::Shutdown::Both);
    }
    let r = served_again(addr, "/hello", Duration::from_secs(5));
    assert_eq!(r.body_text(), "hello");

    // The flood leaves: the gateway recovers.
    let at_limit = flood_start.elapsed();
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..50 {
        let mut c = Client::try_connect(addr).unwrap_or_else(|e| panic!("client {i}: {e}"));
        let r = c.roundtrip(get("/hello"));
        assert_eq!(r.status, 200, "client {i} after the flood: {}", r.text());
    }
    assert_eq!(kept.roundtrip(get("/api/after")).status, 200);

    let refused_emfile = metric(
        admin,
        "ringway_connections_refused_total{reason=\"emfile\"}",
    );
    let errors = metric(admin, "ringway_accept_errors_total{error=\"emfile\"}");
    let answered_503 = metric(
        admin,
        "ringway_requests_total{service=\"\",api=\"\",code=\"503\"}",
    );
    eprintln!(
        "refused (emfile): {refused_emfile}, accept errors (emfile): {errors}, 503s: {answered_503}"
    );
    assert!(
        refused_emfile >= answered.len() as f64 + 5.0,
        "refused {refused_emfile}, answered {} plain and 5 HTTPS",
        answered.len()
    );
    assert!(errors >= 1.0, "{errors}");
    assert!(answered_503 >= with_503 as f64, "{answered_503}");

    // Stderr: a summary at most once a second, not a line per error.
    let lines = accept_error_lines(&gw);
    eprintln!(
        "{} accept-error lines in {at_limit:?}:\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        !lines.is_empty(),
        "no accept error reported:\n{}",
        gw.stderr()
    );
    let allowed = at_limit.as_secs() as usize + 2;
    assert!(
        lines.len() <= allowed,
        "{} accept-error lines in {at_limit:?} (at most {allowed}):\n{}",
        lines.len(),
        lines.join("\n")
    );
    assert!(
        gw.stderr().contains("refused with the spare descriptor"),
        "{}",
        gw.stderr()
    );
    assert!(gw.terminate().success());
}

#[test]
fn a_client_past_max_connections_is_in_the_access_log_and_the_metrics() {
    let pki = Pki::new();
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let toml = config(&pki, backend.addr(), "max_connections = 1\n").replace(
        "access_log = \"off\"",
        &format!("access_log = \"{}\"", log.display()),
    );
    let mut gw = Gateway::start(&toml);
    let admin = admin_addr(&gw);
    let https = gw.https_addr();

    let mut first = gw.connect();
    assert_eq!(first.roundtrip(get("/hello")).status, 200);
    let mut second = gw.connect();
    let client = second.stream.local_addr().unwrap();
    let r = second.read_response();
    assert_eq!(r.status, 503, "{}", r.text());
    let id = r.request_id();
    second.expect_closed();

    // Over HTTPS: closed at once, counted, no access-log line (no answer was sent).
    let mut tls = TcpStream::connect(https).unwrap();
    tls.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let _ = tls.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");

    wait_metric(
        admin,
        "ringway_connections_refused_total{reason=\"max_connections\"}",
        2.0,
        Duration::from_secs(5),
    );
    assert_eq!(
        metric(
            admin,
            "ringway_requests_total{service=\"\",api=\"\",code=\"503\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            admin,
            "ringway_connections_refused_total{reason=\"emfile\"}"
        ),
        0.0
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("\"status\":503")) {
            break l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no 503 line in the access log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["status"], 503, "{line}");
    assert_eq!(v["client"], client.to_string(), "{line}");
    assert_eq!(v["request_id"], id.as_str(), "{line}");
    assert_eq!(v["method"], "", "{line}");
    assert_eq!(v["target"], "", "{line}");
    assert!(v["service"].is_null(), "{line}");
    assert_eq!(v["bytes_in"], 0, "{line}");
    assert!(v["bytes_out"].as_u64().is_some_and(|n| n > 0), "{line}");
    // The first client is still served, and its lines are there too.
    assert_eq!(first.roundtrip(get("/hello")).status, 200);
    assert!(gw.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("\"status\":503").count(), 1, "{text}");
    assert_eq!(text.matches("\"status\":200").count(), 2, "{text}");
    assert!(
        gw.stderr()
            .contains("connection refused in the last second: over max_connections (1)"),
        "{}",
        gw.stderr()
    );
}

/// `Max open files` of `/proc/<pid>/limits`: (soft, hard).
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no Max open files in:\n{limits}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn at_start_the_soft_limit_is_raised_to_the_hard_one() {
    let backend = Backend::ok();
    let toml = proxy_config(backend.addr(), "max_connections = 100\n", "");
    let mut gw = Gateway::try_start_with_nofile(&toml, (512, 4096)).unwrap();
    assert_eq!(open_files_limit(gw.pid()), (4096, 4096));
    let stderr = gw.stderr();
    assert!(
        stderr.contains("ringway: descriptor limit 4096 (RLIMIT_NOFILE, raised from 512)\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("is below"), "{stderr}");
    assert_eq!(gw.connect().roundtrip(get("/api/x")).status, 200);
    assert!(gw.terminate().success());
}

#[test]
fn at_start_a_limit_too_low_for_max_connections_is_named() {
    let backend = Backend::ok();
    // max_connections is 65,536 by default: about 131,000 descriptors.
    let toml = proxy_config(backend.addr(), "", "");
    let mut gw = Gateway::try_start_with_nofile(&toml, (4096, 4096)).unwrap();
    let stderr = gw.stderr();
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ringway: descriptor limit "))
        .unwrap_or_else(|| panic!("no descriptor limit line:\n{stderr}"));
    assert!(
        line.starts_with("ringway: descriptor limit 4096 (RLIMIT_NOFILE) is below the "),
        "{line}"
    );
    assert!(line.contains("max_connections = 65536"), "{line}");
    let needed: u64 = line
        .split("is below the ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number needed in {line}"));
    assert!(needed > 2 * 65536, "{line}");
    // Just a warning: it serves.
    assert_eq!(gw.connect().roundtrip(get("/api/x")).status, 200);
    assert!(gw.terminate().success());
}

#[test]
fn a_reload_that_raises_max_connections_past_the_limit_says_so() {
    let backend = Backend::ok();
    let toml = proxy_config(backend.addr(), "max_connections = 100", "");
    let gw = Gateway::try_start_with_nofile(&toml, (4096, 4096)).unwrap();
    assert!(!gw.stderr().contains("is below the"), "{}", gw.stderr());
    std::fs::write(
        &gw.config_path,
        toml.replace("max_connections = 100", "max_connections = 65536"),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.stderr().contains("reloaded in") {
        assert!(Instant::now() < deadline, "no reload: {}", gw.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let stderr = gw.stderr();
    assert!(
        stderr.contains("ringway: reload: descriptor limit 4096 (RLIMIT_NOFILE) is below the ")
            && stderr.contains("max_connections = 65536"),
        "{stderr}"
    );
}

/// `n` keep-alive clients, one `GET /hello` each, then idle.
fn keepalive_clients(addr: SocketAddr, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut c = Client::connect(addr);
            assert_eq!(c.roundtrip(get("/hello")).status, 200);
            c
        })
        .collect()
}

/// Silent connections take the descriptors left; then five new clients must each get 200
/// (idle connections made room) and evictions are counted. The silent connections.
fn new_clients_are_served_past_the_limit(addr: SocketAddr, admin: SocketAddr) -> Vec<TcpStream> {
    let silent: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    for i in 0..5 {
        let status = answer_within(addr, Duration::from_secs(3));
        assert!(
            status.starts_with("HTTP/1.1 200 "),
            "new client {i}: {status}"
        );
    }
    assert!(metric(admin, "ringway_idle_connections_evicted_total") > 0.0);
    silent
}

/// Out of descriptors with idle keep-alive clients parked: the longest idle give their
/// descriptors to the new clients (as nginx reuses keep-alive connections), who are served
/// instead of refused.
#[test]
fn out_of_descriptors_idle_keepalive_clients_make_room_for_new_ones() {
    raise_fd_limit();
    let backend = Backend::ok();
    let pki = Pki::new();
    let cfg = config(&pki, backend.addr(), "client_idle_timeout_ms = 120000");
    let gw = Gateway::try_start_with_nofile(&cfg, (1024, 1024)).unwrap_or_else(|e| panic!("{e}"));
    let addr = gw.addr();
    let admin = admin_addr(&gw);
    // 900 keep-alive clients, one request each, then idle: past 512 on the worker, the
    // later ones leave their tasks for the idle set after 2 s.
    let mut idle = keepalive_clients(addr, 900);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(admin, "ringway_client_connections_parked") < 300.0 {
        assert!(
            Instant::now() < deadline,
            "the idle clients were not parked"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Silent connections use up the rest of the descriptors; a new client is served, not
    // refused: an idle one made room.
    let silent = new_clients_are_served_past_the_limit(addr, admin);
    // The evicted ones are the oldest idle clients: they see their connection closed.
    let mut closed = 0;
    for c in idle.iter_mut().skip(512).take(100) {
        if c.wait_closed(Duration::from_millis(50)).is_ok() {
            closed += 1;
        }
    }
    assert!(closed > 0, "no early idle client was closed");
    drop(silent);
}

/// The same when the limit comes first: idle keep-alive clients that could not leave their
/// tasks for the idle set (that takes a descriptor too) are asked to close, the oldest
/// first, and new clients are served.
#[test]
fn out_of_descriptors_idle_clients_still_in_their_tasks_make_room_too() {
    raise_fd_limit();
    let backend = Backend::ok();
    let pki = Pki::new();
    let cfg = config(&pki, backend.addr(), "client_idle_timeout_ms = 120000");
    let gw = Gateway::try_start_with_nofile(&cfg, (700, 700)).unwrap_or_else(|e| panic!("{e}"));
    let addr = gw.addr();
    let admin = admin_addr(&gw);
    let _idle = keepalive_clients(addr, 600);
    // At once, before any can move to the idle set.
    let silent = new_clients_are_served_past_the_limit(addr, admin);
    drop(silent);
}

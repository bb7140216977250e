//! WebSocket APIs through the real binary (SPEC §5): the handshake is checked, forwarded to a
//! fresh upstream connection with its `Upgrade`, and only a 101 with the right
//! `Sec-WebSocket-Accept` starts a tunnel that relays bytes both ways, passes a FIN on, and
//! closes when idle. The test backend knows the accept value from RFC 6455 §1.3's example
//! (key `dGhlIHNhbXBsZSBub25jZQ==` → `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`), not from ringway.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::{Backend, Gateway, Reply, find, json_message, server_section, upstream_section};

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const TIMEOUT: Duration = Duration::from_secs(15);

/// How the test backend answers a handshake.
#[derive(Clone, Copy)]
enum Answer {
    /// 101 with the right accept, then echo every byte; on the client's FIN send `bye`
    /// and close.
    Echo,
    /// 101 with a wrong accept.
    BadAccept,
    /// 403 with a body, no tunnel.
    Refuse,
}

/// A WebSocket backend on 127.0.0.1: records each handshake head it got.
struct WsBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
}

impl WsBackend {
    fn start(answer: Answer) -> WsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, n) = (heads.clone(), connections.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                n.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                thread::spawn(move || serve(conn, answer, &h));
            }
        });
        WsBackend {
            addr,
            heads,
            connections,
        }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve(mut c: TcpStream, answer: Answer, heads: &Mutex<Vec<String>>) {
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let Some((data, end)) = support::ws::read_head(&mut c) else {
        return;
    };
    heads
        .lock()
        .unwrap()
        .push(String::from_utf8_lossy(&data[..end]).into_owned());
    let rest = data[end..].to_vec();
    let head = match answer {
        Answer::Echo => support::ws::switching_protocols(),
        Answer::BadAccept => "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n".to_string(),
        Answer::Refuse => "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nno way".to_string(),
    };
    if c.write_all(head.as_bytes()).is_err() {
        return;
    }
    if !matches!(answer, Answer::Echo) {
        thread::sleep(Duration::from_millis(200));
        return;
    }
    if c.write_all(&rest).is_err() {
        return;
    }
    support::ws::echo_until_the_end(&mut c);
}

fn config(backend: SocketAddr, server_extra: &str) -> String {
    format!(
        "{}{}[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"chat\"\npath = \"=/chat\"\nfrontend_type = \"ws\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/ws\"\n",
        server_section(1, server_extra),
        upstream_section("up", backend, ""),
    )
}

fn handshake(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connects, sends `request` and reads until a complete head: (head, bytes after it).
fn open(gw: &Gateway, request: &str) -> (TcpStream, String, Vec<u8>) {
    let mut c = TcpStream::connect(gw.addr()).unwrap();
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = find(&data, b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed before a head: {:?}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    (c, head, data[end..].to_vec())
}

/// Reads exactly `n` bytes.
fn read_exact(c: &mut TcpStream, mut have: Vec<u8>, n: usize) -> Vec<u8> {
    let mut chunk = vec![0u8; 65536];
    while have.len() < n {
        let got = c.read(&mut chunk).unwrap();
        assert!(got > 0, "closed after {} of {n} bytes", have.len());
        have.extend_from_slice(&chunk[..got]);
    }
    have
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"))
}

fn read_to_end(c: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    out
}

#[test]
fn tunnel_relays_both_ways_and_passes_the_fin_on() {
    let backend = WsBackend::start(Answer::Echo);
    let gw = Gateway::start(&config(backend.addr, ""));
    let (mut c, head, rest) = open(&gw, &handshake("X-Api-SecretId: forged\r\n"));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    assert!(head.contains("X-Api-RequestId: "), "{head}");
    // The handshake reached the backend with its Upgrade and the forwarding headers.
    let sent = &backend.heads()[0];
    assert!(sent.starts_with("GET /ws HTTP/1.1\r\n"), "{sent}");
    for h in [
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        &format!("Sec-WebSocket-Key: {KEY}\r\n"),
        "Sec-WebSocket-Version: 13\r\n",
        "X-Forwarded-For: 127.0.0.1\r\n",
    ] {
        assert!(sent.contains(h), "{h:?} missing from {sent}");
    }
    assert!(!sent.contains("forged"), "{sent}");

    // 1 MiB each way, written from another thread while this one reads the echo.
    let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let mut writer = c.try_clone().unwrap();
    let p = payload.clone();
    let w = thread::spawn(move || writer.write_all(&p).unwrap());
    let got = read_exact(&mut c, rest, payload.len());
    w.join().unwrap();
    assert!(got[..payload.len()] == payload[..], "echo differs");

    // Half-close: the backend sees our FIN, answers, and closes; we get it all.
    c.shutdown(Shutdown::Write).unwrap();
    let tail = read_to_end(&mut c);
    assert_eq!(tail, b"bye");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn bytes_sent_right_after_the_handshake_reach_the_backend() {
    let backend = WsBackend::start(Answer::Echo);
    let gw = Gateway::start(&config(backend.addr, ""));
    let request = format!("{}early", handshake(""));
    let (mut c, head, rest) = open(&gw, &request);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let got = read_exact(&mut c, rest, 5);
    assert_eq!(got, b"early");
}

#[test]
fn a_refusal_is_passed_through_and_no_tunnel_starts() {
    let backend = WsBackend::start(Answer::Refuse);
    let gw = Gateway::start(&config(backend.addr, ""));
    let (mut c, head, rest) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    let body = read_exact(&mut c, rest, 6);
    assert_eq!(body, b"no way");
}

#[test]
fn a_wrong_accept_from_the_backend_is_a_502() {
    let backend = WsBackend::start(Answer::BadAccept);
    let gw = Gateway::start(&config(backend.addr, ""));
    let (mut c, head, rest) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 502 "), "{head}");
    let body = read_exact(&mut c, rest, content_length(&head));
    assert_eq!(
        json_message(&body).as_deref(),
        Some("the backend's WebSocket handshake answer is invalid (Sec-WebSocket-Accept)")
    );
}

#[test]
fn bad_handshakes_are_400_and_never_reach_the_backend() {
    let backend = WsBackend::start(Answer::Echo);
    let gw = Gateway::start(&config(backend.addr, ""));
    let cases = [
        (
            "GET /chat HTTP/1.1\r\nHost: h\r\n\r\n".to_string(),
            "this is a WebSocket API: send a WebSocket upgrade request",
        ),
        (
            handshake("").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            "bad or missing Sec-WebSocket-Key",
        ),
        (
            handshake("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            "Sec-WebSocket-Version must be 13",
        ),
    ];
    for (request, message) in cases {
        let (mut c, head, rest) = open(&gw, &request);
        assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
        let mut body = rest;
        body.extend(read_to_end(&mut c));
        assert_eq!(json_message(&body).as_deref(), Some(message), "{request}");
    }
    // Positive control: a good handshake does reach it.
    assert_eq!(backend.connections.load(Ordering::SeqCst), 0);
    let (_c, head, _) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn an_idle_tunnel_is_closed() {
    let backend = WsBackend::start(Answer::Echo);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(&config(backend.addr, "ws_idle_timeout_ms = 500").replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    ));
    let (mut c, head, _) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(200));
        c.write_all(b"ping").unwrap();
        assert_eq!(read_exact(&mut c, Vec::new(), 4), b"ping");
    }
    // ...silence closes it.
    let t = Instant::now();
    let rest = read_to_end(&mut c);
    assert!(rest.is_empty(), "{rest:?}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    let (line, v) = tunnel_line(&log);
    assert_eq!(v["tunnel_end"], "idle", "{line}");
}

#[test]
fn tunnels_are_counted_while_open_and_by_how_they_ended() {
    let backend = WsBackend::start(Answer::Echo);
    let gw = Gateway::start(&support::with_admin(&config(
        backend.addr,
        "ws_idle_timeout_ms = 500",
    )));
    let admin = support::admin_addr(&gw);
    let value = |series: &str| support::metric(admin, series);
    let wait_for = |series: &str, want: f64| support::wait_metric(admin, series, want, TIMEOUT);
    let (mut closed, head, rest) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    let (_idle, head, _) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    closed.write_all(b"abc").unwrap();
    assert_eq!(read_exact(&mut closed, rest, 3), b"abc");
    wait_for("ringway_websocket_tunnels_open", 2.0);
    // One closed by both sides, the other left idle past ws_idle_timeout_ms.
    closed.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut closed), b"bye");
    wait_for("ringway_websocket_tunnels_open", 0.0);
    assert_eq!(
        value("ringway_websocket_tunnels_total{end=\"closed\"}"),
        1.0
    );
    assert_eq!(value("ringway_websocket_tunnels_total{end=\"idle\"}"), 1.0);
    assert_eq!(
        value("ringway_websocket_tunnels_total{end=\"upstream_error\"}"),
        0.0
    );
}

#[test]
fn an_upgrade_to_a_plain_api_goes_up_without_upgrade() {
    let backend = Backend::start(|_| Reply::ok("plain"));
    let gw = Gateway::start(&support::proxy_config(backend.addr(), "", ""));
    let request = "GET /api/x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let (_c, head, _) = open(&gw, request);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let got = backend.wait_requests(1);
    assert_eq!(got[0].header("upgrade"), None);
    assert!(
        got[0]
            .header_all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("upgrade")),
        "{:?}",
        got[0].header_all("connection")
    );
}

/// The tunnel's access-log line (status 101) in the file `log`, waited for.
fn tunnel_line(log: &std::path::Path) -> (String, serde_json::Value) {
    let deadline = Instant::now() + TIMEOUT;
    let line = loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains("\"status\":101")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no 101 line in {text:?}");
        thread::sleep(Duration::from_millis(50));
    };
    let v = serde_json::from_str(&line).unwrap();
    (line, v)
}

#[test]
fn the_tunnel_is_logged_with_its_bytes_when_it_ends() {
    let backend = WsBackend::start(Answer::Echo);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(&config(backend.addr, "").replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    ));
    let (mut c, head, rest) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c.write_all(b"abc").unwrap();
    assert_eq!(read_exact(&mut c, rest, 3), b"abc");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut c), b"bye");
    let (line, v) = tunnel_line(&log);
    assert_eq!(v["api"], "chat");
    assert_eq!(v["tunnel_bytes_up"], 3);
    assert_eq!(v["tunnel_bytes_down"], 6, "abc echoed, then bye");
    assert_eq!(v["tunnel_end"], "closed", "both sides closed: {line}");
}

#[test]
fn sigterm_cuts_a_tunnel_after_the_grace_period_and_logs_it() {
    let backend = WsBackend::start(Answer::Echo);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut gw = Gateway::start(&config(backend.addr, "shutdown_grace_ms = 300\n").replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    ));
    let (mut c, head, rest) = open(&gw, &handshake(""));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    c.write_all(b"hello").unwrap();
    assert_eq!(read_exact(&mut c, rest, 5), b"hello");
    let started = Instant::now();
    gw.signal(libc::SIGTERM);
    // Within the grace period the tunnel still works.
    c.write_all(b"more").unwrap();
    assert_eq!(read_exact(&mut c, Vec::new(), 4), b"more");
    let status = gw.wait_exit(TIMEOUT).expect("the gateway exits");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the tunnel lived through the grace period: {:?}",
        started.elapsed()
    );
    assert_eq!(read_to_end(&mut c), b"", "the tunnel was closed");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("\"status\":101"))
        .unwrap_or_else(|| panic!("no 101 line in {text:?}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["tunnel_bytes_up"], 9);
    assert_eq!(v["tunnel_bytes_down"], 9);
    assert_eq!(v["tunnel_end"], "shutdown", "{line}");
}

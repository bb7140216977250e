//! `https://` upstreams (SPEC §1 `tls_server_name`/`ca`, §3), through the real binary:
//! a rustls test backend with its own test CA (good CA → 200 and the connection reused;
//! another CA → 502; a name mismatch → 502; resumption; pooled connections that receive
//! TLS records while idle), `openssl s_server` as an outside TLS server, a stalled
//! handshake, and a WebSocket tunnel to a TLS backend.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::pki::Pki;
use support::tls_backend::{Behaviour, TlsBackend};
use support::*;

/// One worker, upstream `up` = `https://backend` with `tls` keys, and the `/api` → `/internal`
/// API of [`proxy_config`].
fn config(backend: std::net::SocketAddr, tls: &str, server_extra: &str) -> String {
    proxy_config(backend, server_extra, "").replacen(
        &format!("url = \"http://{backend}\"\n"),
        &format!("url = \"https://{backend}\"\n{tls}"),
        1,
    )
}

fn tls_keys(pki: &Pki, name: Option<&str>) -> String {
    let mut s = format!("ca = \"{}\"\n", pki.ca_file());
    if let Some(n) = name {
        s.push_str(&format!("tls_server_name = \"{n}\"\n"));
    }
    s
}

/// A leaf `backend` for `clb.internal` and 127.0.0.1.
fn backend_pki() -> Pki {
    let pki = Pki::new();
    pki.leaf("backend", &["clb.internal", "127.0.0.1"]);
    pki
}

#[test]
fn good_ca_answers_and_the_tls_connection_is_pooled() {
    let pki = backend_pki();
    let backend = TlsBackend::start(pki.server("backend"), Behaviour::default());
    let gw = Gateway::start(&config(
        backend.addr,
        &tls_keys(&pki, Some("clb.internal")),
        "",
    ));
    let mut c = gw.connect();
    for i in 0..3 {
        let r = c.roundtrip(get(&format!("/api/x{i}")));
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.body_text();
        assert!(
            body.contains("conn=1 ") && body.contains("sni=clb.internal"),
            "{body}"
        );
        assert!(body.contains(&format!("path=/internal/x{i}")), "{body}");
        assert!(body.contains("xfp=http"), "{body}");
    }
    assert_eq!(backend.connections(), 1, "one TLS connection, reused");
}

#[test]
fn without_a_server_name_the_certificate_must_cover_the_ip() {
    let pki = backend_pki();
    let backend = TlsBackend::start(pki.server("backend"), Behaviour::default());
    let gw = Gateway::start(&config(backend.addr, &tls_keys(&pki, None), ""));
    let r = gw.connect().roundtrip(get("/api/ip"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.body_text().contains("sni=-"),
        "no SNI for an IP: {}",
        r.body_text()
    );

    // A certificate for a name only: the IP does not match.
    pki.leaf("named", &["clb.internal"]);
    let named = TlsBackend::start(pki.server("named"), Behaviour::default());
    let gw = Gateway::start(&config(named.addr, &tls_keys(&pki, None), ""));
    let r = gw.connect().roundtrip(get("/api/ip"));
    let msg = r.assert_gateway_error(502, "certificate without the IP");
    assert_eq!(msg, "upstream name mismatch");
}

#[test]
fn another_ca_or_another_name_is_a_502_that_says_why() {
    let pki = backend_pki();
    let other = Pki::named("some other CA");
    let backend = TlsBackend::start(pki.server("backend"), Behaviour::default());

    let gw = Gateway::start(&config(
        backend.addr,
        &tls_keys(&other, Some("clb.internal")),
        "",
    ));
    let started = Instant::now();
    let r = gw.connect().roundtrip(get("/api/a"));
    assert_eq!(
        r.assert_gateway_error(502, "untrusted"),
        "upstream certificate not trusted"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");

    let gw = Gateway::start(&config(
        backend.addr,
        &tls_keys(&pki, Some("other.internal")),
        "",
    ));
    let r = gw.connect().roundtrip(get("/api/a"));
    assert_eq!(
        r.assert_gateway_error(502, "mismatch"),
        "upstream name mismatch"
    );
    assert_eq!(
        backend.requests(),
        0,
        "nothing was sent over an unverified connection"
    );
}

#[test]
fn new_connections_resume_the_tls_session() {
    let pki = backend_pki();
    let backend = TlsBackend::start(pki.server("backend"), Behaviour::default());
    // keepalive = 0: every request opens a new connection.
    let cfg = config(backend.addr, &tls_keys(&pki, Some("clb.internal")), "").replacen(
        "url = \"https://",
        "keepalive = 0\nurl = \"https://",
        1,
    );
    let gw = Gateway::start(&cfg);
    for i in 0..3 {
        let r = gw.connect().roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(backend.connections(), 3);
    assert_eq!(
        backend.resumed(),
        2,
        "the second and third handshakes resume"
    );
}

#[test]
fn tls_records_that_arrive_while_idle_do_not_spoil_a_pooled_connection() {
    // After each answer the backend sends a KeyUpdate: bytes on the idle socket that are
    // not an answer. A raw MSG_PEEK would take them for stray bytes and drop the connection.
    let pki = backend_pki();
    let behaviour = Behaviour {
        key_update_after_answer: true,
        ..Behaviour::default()
    };
    let backend = TlsBackend::start(pki.server("backend"), behaviour);
    let gw = Gateway::start(&config(
        backend.addr,
        &tls_keys(&pki, Some("clb.internal")),
        "",
    ));
    let mut c = gw.connect();
    for i in 0..3 {
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "{}", r.text());
        // Past the pool's FRESH_REUSE (200 ms), so the stale check runs.
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(backend.connections(), 1, "the pooled connection was kept");
}

#[test]
fn a_connection_the_backend_closed_while_idle_is_replaced_without_an_error() {
    let pki = backend_pki();
    let behaviour = Behaviour {
        idle_close: Some(Duration::from_millis(100)),
        ..Behaviour::default()
    };
    let backend = TlsBackend::start(pki.server("backend"), behaviour);
    let gw = Gateway::start(&config(
        backend.addr,
        &tls_keys(&pki, Some("clb.internal")),
        "",
    ));
    let mut c = gw.connect();
    for i in 0..3 {
        let r = c.roundtrip(get(&format!("/api/{i}")));
        assert_eq!(r.status, 200, "{}", r.text());
        std::thread::sleep(Duration::from_millis(400));
    }
    assert_eq!(
        backend.connections(),
        3,
        "each idle connection was closed by the backend"
    );
}

#[test]
fn a_stalled_handshake_ends_in_time() {
    let pki = backend_pki();
    // Accepts TCP and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let cfg = config(addr, &tls_keys(&pki, Some("clb.internal")), "").replacen(
        "url = \"https://",
        "connect_timeout_ms = 300\nurl = \"https://",
        1,
    );
    let gw = Gateway::start(&cfg);
    let started = Instant::now();
    let r = gw.connect().roundtrip(get("/api/a"));
    assert!(
        r.status == 504 || r.status == 502,
        "a timeout answer: {}",
        r.text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// `openssl s_server -WWW` serving a directory: an HTTP server on OpenSSL, not rustls.
struct SServer {
    child: Child,
    addr: std::net::SocketAddr,
}

impl SServer {
    fn start(pki: &Pki, leaf: &str, dir: &std::path::Path) -> Option<SServer> {
        let port = unused_addr().port();
        let child = Command::new("openssl")
            .current_dir(dir)
            .args(["s_server", "-quiet", "-WWW", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(pki.path(&format!("{leaf}.crt")))
            .arg("-key")
            .arg(pki.path(&format!("{leaf}.key")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "openssl s_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(SServer { child, addr })
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn interop_with_openssl_s_server() {
    let pki = backend_pki();
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("internal")).unwrap();
    std::fs::write(
        root.path().join("internal/hello.txt"),
        "hello from openssl\n",
    )
    .unwrap();
    let Some(server) = SServer::start(&pki, "backend", root.path()) else {
        eprintln!("openssl is not installed: skipped");
        return;
    };
    let gw = Gateway::start(&config(
        server.addr,
        &tls_keys(&pki, Some("clb.internal")),
        "",
    ));
    let r = gw.connect().roundtrip(get("/api/hello.txt"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body_text(), "hello from openssl\n");

    let other = Pki::named("some other CA");
    let gw = Gateway::start(&config(
        server.addr,
        &tls_keys(&other, Some("clb.internal")),
        "",
    ));
    let r = gw.connect().roundtrip(get("/api/hello.txt"));
    assert_eq!(
        r.assert_gateway_error(502, "openssl, untrusted"),
        "upstream certificate not trusted"
    );
}

#[test]
fn websocket_tunnel_to_a_tls_backend() {
    let pki = backend_pki();
    let backend = TlsBackend::start(pki.server("backend"), Behaviour::default());
    let cfg = format!(
        "{}[[upstreams]]\nname = \"up\"\nurl = \"https://{}\"\n{}\n[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"chat\"\npath = \"=/chat\"\nfrontend_type = \"ws\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/ws\"\n",
        server_section(1, ""),
        backend.addr,
        tls_keys(&pki, Some("clb.internal")),
    );
    // The access log says why the tunnel ended, should it end early.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(&cfg.replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    ));
    let mut c = TcpStream::connect(gw.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 65536];
    while find(&got, b"\r\n\r\n").is_none() {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    let end = find(&got, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    let mut echoed = got[end..].to_vec();
    let message = pattern(1 << 20);
    let writer = {
        let mut w = c.try_clone().unwrap();
        let m = message.clone();
        std::thread::spawn(move || w.write_all(&m).unwrap())
    };
    while echoed.len() < message.len() {
        let n = c.read(&mut chunk).unwrap();
        if n == 0 {
            std::thread::sleep(Duration::from_millis(300));
            panic!(
                "closed after {} bytes; the gateway said:\n{}\nits access log:\n{}",
                echoed.len(),
                gw.stderr(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        echoed.extend_from_slice(&chunk[..n]);
    }
    writer.join().unwrap();
    assert!(echoed == message, "1 MiB echoed through a TLS upstream");
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let n = c.read(&mut chunk).unwrap_or(0);
    assert_eq!(n, 0, "the backend's end reached the client");
}

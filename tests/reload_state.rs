//! What a `SIGHUP` reload (SPEC §7) must leave alone or pick up, through the real binary:
//! a WebSocket tunnel lives on across reloads (even one that removes its API), an upload
//! streamed across a reload arrives whole, a TLS keepalive connection outlives a reload
//! while new handshakes get the renewed certificate re-read from disk, and a changed
//! `access_log` path applies.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConnection, StreamOwned};
use support::pki::Pki;
use support::*;

const WAIT: Duration = Duration::from_secs(10);
use support::ws::KEY;

/// Writes `toml` over the gateway's file, sends SIGHUP and waits for reload line `n`.
fn reload(gw: &Gateway, toml: &str, n: usize) {
    std::fs::write(&gw.config_path, toml).unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    loop {
        let done = gw
            .stderr()
            .lines()
            .filter(|l| {
                l.starts_with("ringway: reloaded") || l.starts_with("ringway: reload failed")
            })
            .count();
        if done >= n {
            break;
        }
        assert!(Instant::now() < deadline, "no reload {n}:\n{}", gw.stderr());
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!gw.stderr().contains("reload failed"), "{}", gw.stderr());
    // Workers pick the new configuration up within a housekeeping tick (50 ms).
    thread::sleep(Duration::from_millis(120));
}

fn ws_config(backend: SocketAddr, with_ws_api: bool, extra_api: &str) -> String {
    let mut s = format!(
        "{}{}[[services]]\nname = \"s\"\n",
        server_section(1, ""),
        upstream_section("up", backend, "")
    );
    if with_ws_api {
        s.push_str("[[services.apis]]\nname = \"chat\"\npath = \"=/chat\"\nfrontend_type = \"ws\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/ws\"\n");
    }
    s.push_str(&format!(
        "[[services.apis]]\nname = \"{extra_api}\"\npath = \"=/{extra_api}\"\n[services.apis.backend]\ntype = \"mock\"\nmock_status = 200\nmock_body = \"{extra_api}\"\n"
    ));
    s
}

/// Sends `msg` into the tunnel and reads the same bytes back.
fn echo(c: &mut TcpStream, msg: &[u8]) {
    c.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    c.read_exact(&mut got).expect("the echo came back");
    assert_eq!(got, msg);
}

#[test]
fn a_websocket_tunnel_lives_across_reloads_even_one_that_removes_its_api() {
    let backend = support::ws::echo_backend();
    let gw = Gateway::start(&ws_config(backend, true, "one"));
    let mut c = TcpStream::connect(gw.addr()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(
        format!(
            "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while find(&head, b"\r\n\r\n").is_none() {
        c.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    echo(&mut c, b"before any reload");

    // A reload that changes another API: the tunnel is untouched.
    reload(&gw, &ws_config(backend, true, "two"), 1);
    echo(&mut c, b"after a reload");
    assert_eq!(gw.connect().roundtrip(get("/two")).status, 200);

    // A reload that removes the WebSocket API: new handshakes get 404, the tunnel lives on.
    reload(&gw, &ws_config(backend, false, "three"), 2);
    let mut fresh = gw.connect();
    let r = fresh.roundtrip(
        format!(
            "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 404, "the API is gone for new handshakes");
    echo(&mut c, &pattern(256 * 1024));
    echo(&mut c, b"still here");
}

#[test]
fn an_upload_streamed_across_a_reload_arrives_whole() {
    let backend = Backend::ok();
    let v1 = proxy_config(backend.addr(), "", "");
    let gw = Gateway::start(&v1);
    let body = pattern(2 * 1024 * 1024);
    let mut c = gw.connect();
    let head = format!(
        "POST /api/up HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.send(head.as_bytes());
    let half = body.len() / 2;
    c.send(&body[..half]);
    // The backend is receiving the body when the reload lands (the upstream changes only
    // its settings: the API now has another backend path).
    assert!(
        backend.wait_until(WAIT, |s| s.bytes_received() > 1024),
        "the upload reached the backend"
    );
    reload(
        &gw,
        &v1.replace("path = \"/internal\"", "path = \"/moved\""),
        1,
    );
    c.send(&body[half..]);
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let reqs = backend.wait_requests(1);
    assert_eq!(
        reqs[0].target, "/internal/up",
        "it ran on the configuration it started on"
    );
    assert_eq!(reqs[0].body.len(), body.len());
    assert!(reqs[0].body == body, "the body arrived unchanged");
    // The next request on the same connection runs on the new configuration.
    assert_eq!(c.roundtrip(get("/api/next")).status, 200);
    let reqs = backend.wait_requests(2);
    assert_eq!(reqs[1].target, "/moved/next");
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, pki: &Pki) -> Tls {
    let cfg = pki.client(&[], &[b"http/1.1"], true);
    let name = ServerName::try_from("api.example.test".to_string()).unwrap();
    let conn = ClientConnection::new(cfg, name).unwrap();
    let sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// GET /hello over `s`; the body (Content-Length framing).
fn tls_hello(s: &mut Tls) -> String {
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = Head::parse(&buf[..end + 4]).unwrap();
            let len = head.content_length().unwrap_or(0) as usize;
            if buf.len() >= end + 4 + len {
                assert!(head.start_line.contains(" 200 "), "{}", head.start_line);
                return String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
            }
        }
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn leaf_der(s: &Tls) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

#[test]
fn a_renewed_certificate_is_read_on_reload_and_tls_connections_live_on() {
    let pki = Pki::new();
    let toml = format!(
        "{}{}[[services]]\nname = \"api\"\nhosts = [\"api.example.test\"]\nprotocol = \"https\"\n[[services.apis]]\nname = \"hello\"\npath = \"=/hello\"\n[services.apis.backend]\ntype = \"mock\"\nmock_status = 200\nmock_body = \"hello\"\n",
        server_section(1, "listen_https = [\"127.0.0.1:0\"]\n"),
        pki.certificates_section()
    );
    let mut gw = Gateway::start(&toml);
    let https = gw.https_addr();
    let mut kept = tls_connect(https, &pki);
    assert_eq!(tls_hello(&mut kept), "hello");
    let old = leaf_der(&kept);

    // Renewal: a new certificate and key at the same paths, the file otherwise unchanged.
    pki.leaf("api", &["api.example.test"]);
    reload(&gw, &toml, 1);
    let mut fresh = tls_connect(https, &pki);
    assert_eq!(tls_hello(&mut fresh), "hello");
    let new = leaf_der(&fresh);
    assert_ne!(old, new, "a new handshake gets the renewed certificate");
    let on_disk = std::fs::read_to_string(pki.path("api.crt")).unwrap();
    let on_disk: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(on_disk.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(new, on_disk[0].as_ref(), "the one now on disk");
    // The connection made before the reload keeps serving.
    assert_eq!(tls_hello(&mut kept), "hello");
    assert_eq!(leaf_der(&kept), old);
}

#[test]
fn a_changed_access_log_path_applies_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let backend = Backend::ok();
    let with_log = |path: &std::path::Path| {
        proxy_config(backend.addr(), "", "").replace(
            "access_log = \"off\"",
            &format!("access_log = \"{}\"", path.display()),
        )
    };
    let gw = Gateway::start(&with_log(&a));
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/first")).status, 200);
    reload(&gw, &with_log(&b), 1);
    assert_eq!(c.roundtrip(get("/api/second")).status, 200);
    // Lines reach the files through the logger thread: wait for them, bounded.
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let deadline = Instant::now() + WAIT;
    while !(read(&a).contains("/api/first") && read(&b).contains("/api/second")) {
        assert!(
            Instant::now() < deadline,
            "a: {:?}\nb: {:?}",
            read(&a),
            read(&b)
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !read(&a).contains("/api/second"),
        "the old file got no more lines"
    );
    assert!(!read(&b).contains("/api/first"));
}

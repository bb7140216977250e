//! TLS termination on the HTTPS listeners (SPEC §5), through the real binary: certificates
//! generated here (a test CA, a leaf for `api.example.test`, one for `*.wild.test`), and two
//! client implementations — rustls, and the `openssl s_client` command line tool.

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use support::pki::Pki;
use support::*;

fn mock_api(name: &str, body: &str) -> String {
    format!(
        "[[services.apis]]\nname = \"{name}\"\npath = \"=/hello\"\n[services.apis.backend]\ntype = \"mock\"\nmock_status = 200\nmock_body = \"{body}\"\n\n"
    )
}

/// One worker with an HTTP and an HTTPS listener; services: `api.example.test` (http and
/// https: a mock `/hello` and `/api` to `backend`), `*.wild.test` (https only),
/// `http-only.wild.test` (http only).
fn tls_config(pki: &Pki, backend: SocketAddr) -> String {
    format!(
        "{}{}{}[[services]]\nname = \"api\"\nhosts = [\"api.example.test\"]\nprotocol = \"http&https\"\n{}[[services.apis]]\nname = \"fwd\"\npath = \"/api\"\nmethod = \"ANY\"\n[services.apis.backend]\ntype = \"vpc\"\nupstream = \"up\"\npath = \"/internal\"\n\n[[services]]\nname = \"wild\"\nhosts = [\"*.wild.test\"]\nprotocol = \"https\"\n{}[[services]]\nname = \"plain\"\nhosts = [\"http-only.wild.test\"]\nprotocol = \"http\"\n{}",
        server_section(
            1,
            "listen_https = [\"127.0.0.1:0\"]\nheader_timeout_ms = 2000\n"
        ),
        upstream_section("up", backend, ""),
        pki.certificates_section(),
        mock_api("hello", "hello api"),
        mock_api("hello", "hello wild"),
        mock_api("hello", "hello plain"),
    )
}

struct Setup {
    pki: Pki,
    gw: Gateway,
    https: SocketAddr,
    backend: Backend,
}

fn setup() -> Setup {
    let pki = Pki::new();
    let backend = Backend::ok();
    let mut gw = Gateway::start(&tls_config(&pki, backend.addr()));
    let https = gw.https_addr();
    Setup {
        pki,
        gw,
        https,
        backend,
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A finished handshake, or the error that ended it.
fn tls_connect(addr: SocketAddr, sni: &str, cfg: Arc<ClientConfig>) -> Result<Tls, io::Error> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = ClientConnection::new(cfg, name).unwrap();
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The rustls error a failed handshake carries.
fn tls_error(r: Result<Tls, io::Error>) -> rustls::Error {
    match r {
        Ok(s) => panic!(
            "the handshake succeeded ({:?}, SNI certificate {:?})",
            s.conn.protocol_version(),
            s.conn.peer_certificates().map(|c| c.len())
        ),
        Err(e) => match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => t.clone(),
            None => panic!("not a TLS error: {e:?}"),
        },
    }
}

/// One response read from `r`: `(status, head, body)` (Content-Length framing, as every
/// response in these tests has). `buf` keeps bytes read past it.
fn read_response(r: &mut impl Read, buf: &mut Vec<u8>) -> (u16, Head, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = Head::parse(&buf[..end + 4]).unwrap();
            let len = head.content_length().unwrap_or(0) as usize;
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                let status = head
                    .start_line
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                buf.drain(..end + 4 + len);
                return (status, head, body);
            }
        }
        let n = r.read(&mut chunk).expect("reading a response");
        assert!(n > 0, "the connection closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

/// A GET over a fresh rustls connection: `(status, body)`.
fn https_get(s: &Setup, sni: &str, host: &str, path: &str) -> (u16, String) {
    let mut c = tls_connect(s.https, sni, s.pki.client(&[], &[b"http/1.1"], true))
        .unwrap_or_else(|e| panic!("handshake for {sni}: {e}"));
    c.write_all(get(host, path).as_bytes()).unwrap();
    let (status, _, body) = read_response(&mut c, &mut Vec::new());
    (status, String::from_utf8_lossy(&body).into_owned())
}

// ---------------------------------------------------------------------------------------
// openssl s_client

/// Runs `openssl s_client` against `addr` with the test CA and `args`, `stdin` as its input;
/// `(exit success, stdout, stderr)`. Panics when openssl is not installed.
fn s_client(pki: &Pki, addr: SocketAddr, args: &[&str], stdin: &[u8]) -> (bool, String, String) {
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .arg("-CAfile")
        .arg(pki.ca_file())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`openssl s_client` is needed by these tests: install openssl");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("openssl s_client {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// SNI

#[test]
fn exact_and_wildcard_names_are_served_with_their_certificate() {
    let s = setup();
    assert_eq!(
        https_get(&s, "api.example.test", "api.example.test", "/hello"),
        (200, "hello api".into())
    );
    assert_eq!(
        https_get(&s, "a.wild.test", "a.wild.test", "/hello"),
        (200, "hello wild".into())
    );
    // The certificate sent is the one for the name (verified by the client against the
    // test CA and the name).
    let c = tls_connect(s.https, "b.wild.test", s.pki.client(&[], &[], true)).unwrap();
    assert_eq!(c.conn.peer_certificates().unwrap().len(), 1);
}

#[test]
fn no_sni_or_an_unknown_name_fails_the_handshake_with_an_alert() {
    let s = setup();
    for (sni, enable) in [
        ("api.example.test", false),
        ("unknown.test", true),
        ("a.b.wild.test", true),
        ("wild.test", true),
    ] {
        let e = tls_error(tls_connect(
            s.https,
            sni,
            s.pki.client(&[], &[b"http/1.1"], enable),
        ));
        assert!(
            matches!(e, rustls::Error::AlertReceived(_)),
            "{sni} (sni {enable}): {e:?}"
        );
    }
    // The same with openssl: no certificate is sent.
    for args in [
        &["-noservername"][..],
        &["-servername", "unknown.test"][..],
        &["-servername", "a.b.wild.test"][..],
    ] {
        let (ok, out, err) = s_client(&s.pki, s.https, args, b"");
        assert!(!ok, "{args:?}: openssl succeeded\n{out}\n{err}");
        assert!(
            err.contains("alert") && out.contains("no peer certificate available"),
            "{args:?}:\n{out}\n{err}"
        );
    }
    // Counted and logged, not once per failure.
    std::thread::sleep(Duration::from_millis(300));
    let log = s.gw.stderr();
    assert!(
        log.contains("TLS handshake(s) failed") && log.contains("unknown server name"),
        "{log}"
    );
    assert!(
        log.matches("TLS handshake(s) failed").count() < 7,
        "one line per failure:\n{log}"
    );
    // Still serving.
    assert_eq!(
        https_get(&s, "api.example.test", "api.example.test", "/hello").0,
        200
    );
}

#[test]
fn openssl_gets_200_for_exact_and_wildcard_names() {
    let s = setup();
    for name in ["api.example.test", "x.wild.test"] {
        let req = format!("GET /hello HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
        let (ok, out, err) = s_client(
            &s.pki,
            s.https,
            &["-servername", name, "-verify_return_error", "-quiet"],
            req.as_bytes(),
        );
        assert!(ok, "{name}:\n{out}\n{err}");
        assert!(
            out.starts_with("HTTP/1.1 200 OK\r\n"),
            "{name}:\n{out}\n{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Versions and ALPN

#[test]
fn tls_1_2_and_1_3_work_and_1_1_is_refused() {
    let s = setup();
    for (v, name) in [
        (&rustls::version::TLS12, "TLSv1_2"),
        (&rustls::version::TLS13, "TLSv1_3"),
    ] {
        let mut c = tls_connect(
            s.https,
            "api.example.test",
            s.pki.client(&[v], &[b"http/1.1"], true),
        )
        .unwrap();
        assert_eq!(format!("{:?}", c.conn.protocol_version().unwrap()), name);
        c.write_all(get("api.example.test", "/hello").as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut c, &mut Vec::new()).0, 200);
    }
    for (flag, want) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (ok, out, err) = s_client(
            &s.pki,
            s.https,
            &["-servername", "api.example.test", flag, "-brief"],
            b"",
        );
        assert!(ok, "{flag}:\n{out}\n{err}");
        assert!(
            err.contains(&format!("Protocol version: {want}")),
            "{flag}:\n{out}\n{err}"
        );
    }
    // OpenSSL 3 itself refuses TLS 1.1 at its default security level: lower it so that the
    // ClientHello really offers 1.1 only, and the refusal is the server's.
    let (ok, out, err) = s_client(
        &s.pki,
        s.https,
        &[
            "-servername",
            "api.example.test",
            "-tls1_1",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
            "-brief",
        ],
        b"",
    );
    assert!(!ok, "TLS 1.1 was accepted:\n{out}\n{err}");
    // The server's alert (rustls answers a ClientHello with no version in common with
    // handshake_failure), not a client-side refusal.
    assert!(
        err.contains("alert handshake failure") || err.contains("alert protocol version"),
        "{out}\n{err}"
    );
}

#[test]
fn alpn_is_h2_or_http_1_1_and_anything_else_is_refused() {
    let s = setup();
    // HTTP/2 first when the client offers it (SPEC §10), HTTP/1.1 otherwise.
    let c = tls_connect(
        s.https,
        "api.example.test",
        s.pki.client(&[], &[b"h2", b"http/1.1"], true),
    )
    .unwrap();
    assert_eq!(c.conn.alpn_protocol(), Some(&b"h2"[..]));
    let c = tls_connect(
        s.https,
        "api.example.test",
        s.pki.client(&[], &[b"http/1.1"], true),
    )
    .unwrap();
    assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let e = tls_error(tls_connect(
        s.https,
        "api.example.test",
        s.pki.client(&[], &[b"spdy/3.1"], true),
    ));
    assert_eq!(
        e,
        rustls::Error::AlertReceived(rustls::AlertDescription::NoApplicationProtocol)
    );
    let (ok, out, err) = s_client(
        &s.pki,
        s.https,
        &[
            "-servername",
            "api.example.test",
            "-alpn",
            "spdy/3.1",
            "-brief",
        ],
        b"",
    );
    assert!(!ok, "{out}\n{err}");
    assert!(err.contains("no application protocol"), "{out}\n{err}");
    // No ALPN at all is fine.
    let c = tls_connect(s.https, "api.example.test", s.pki.client(&[], &[], true)).unwrap();
    assert_eq!(c.conn.alpn_protocol(), None);
}

// ---------------------------------------------------------------------------------------
// HTTP over TLS

#[test]
fn keepalive_and_pipelining_over_one_tls_connection() {
    let s = setup();
    let mut c = tls_connect(
        s.https,
        "api.example.test",
        s.pki.client(&[], &[b"http/1.1"], true),
    )
    .unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        c.write_all(get("api.example.test", "/hello").as_bytes())
            .unwrap();
        let (status, head, body) = read_response(&mut c, &mut buf);
        assert_eq!((status, body), (200, b"hello api".to_vec()));
        assert!(!head.has_token("connection", "close"));
    }
    // A pipelined pair in one write (and one TLS record).
    let pair = format!(
        "{}{}",
        get("api.example.test", "/hello"),
        get("api.example.test", "/api/p")
    );
    c.write_all(pair.as_bytes()).unwrap();
    assert_eq!(read_response(&mut c, &mut buf).0, 200);
    let (status, _, body) = read_response(&mut c, &mut buf);
    assert_eq!((status, body), (200, b"ok".to_vec()));
    assert!(buf.is_empty());
}

#[test]
fn x_forwarded_proto_is_https_over_tls_and_http_over_tcp() {
    let s = setup();
    assert_eq!(
        https_get(&s, "api.example.test", "api.example.test", "/api/one").0,
        200
    );
    let mut c = s.gw.connect();
    let r = c.roundtrip(get("api.example.test", "/api/two"));
    assert_eq!(r.status, 200);
    let got = s.backend.wait_requests(2);
    assert_eq!(got[0].target, "/internal/one");
    assert_eq!(got[0].header("x-forwarded-proto"), Some("https"));
    assert_eq!(got[1].header("x-forwarded-proto"), Some("http"));
}

#[test]
fn the_426_rule_holds_both_ways() {
    let s = setup();
    // An https-only service over plain HTTP.
    let mut c = s.gw.connect();
    let r = c.roundtrip(get("a.wild.test", "/hello"));
    assert_eq!(r.status, 426, "{}", r.text());
    // An http-only service over TLS (its name is covered by the wildcard certificate).
    assert_eq!(
        https_get(&s, "http-only.wild.test", "http-only.wild.test", "/hello").0,
        426
    );
    // And each over the protocol it allows.
    let mut c = s.gw.connect();
    assert_eq!(
        c.roundtrip(get("http-only.wild.test", "/hello")).status,
        200
    );
}

// ---------------------------------------------------------------------------------------
// Bad clients

#[test]
fn garbage_and_silent_clients_do_not_hurt_the_server() {
    let s = setup();
    // Plain HTTP on the HTTPS port: not a ClientHello, the connection just ends.
    let mut garbage = TcpStream::connect(s.https).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
        .unwrap();
    let mut back = Vec::new();
    let _ = garbage.read_to_end(&mut back);
    assert!(
        !back.starts_with(b"HTTP/"),
        "plaintext answer on the HTTPS port: {back:?}"
    );
    // Random bytes that look like a TLS record header.
    let mut random = TcpStream::connect(s.https).unwrap();
    random
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    random
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let _ = random.read_to_end(&mut Vec::new());

    // A client that connects and sends nothing: a good request still works meanwhile, and
    // the silent one is closed after the header timeout (2 s here).
    let mut silent = TcpStream::connect(s.https).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        https_get(&s, "api.example.test", "api.example.test", "/hello").0,
        200
    );
    let start = Instant::now();
    let n = silent.read(&mut [0u8; 64]).unwrap_or(0);
    assert_eq!(n, 0, "the silent client got bytes");
    let waited = start.elapsed();
    assert!(waited < Duration::from_secs(8), "closed after {waited:?}");
    assert_eq!(https_get(&s, "a.wild.test", "a.wild.test", "/hello").0, 200);
    drop(s.gw);
}

// ---------------------------------------------------------------------------------------
// More over TLS

#[test]
fn returning_clients_resume_their_session() {
    let s = setup();
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = s.pki.client(&[v], &[b"http/1.1"], true);
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let mut c = tls_connect(s.https, "api.example.test", cfg.clone()).unwrap();
            // TLS 1.3 tickets come after the handshake: one exchange reads them.
            c.write_all(get("api.example.test", "/hello").as_bytes())
                .unwrap();
            assert_eq!(read_response(&mut c, &mut Vec::new()).0, 200);
            kinds.push(c.conn.handshake_kind());
        }
        assert_eq!(
            kinds,
            [
                Some(rustls::HandshakeKind::Full),
                Some(rustls::HandshakeKind::Resumed)
            ],
            "{v:?}"
        );
    }
}

/// Encrypts each of `records` as a record of its own (then `close_notify` if asked) and
/// returns the bytes for the wire, to be sent in one write.
fn records_on_the_wire(c: &mut Tls, records: &[Vec<u8>], close_notify: bool) -> Vec<u8> {
    for r in records {
        c.conn.writer().write_all(r).unwrap();
    }
    if close_notify {
        c.conn.send_close_notify();
    }
    let mut wire = Vec::new();
    while c.conn.wants_write() {
        c.conn.write_tls(&mut wire).unwrap();
    }
    wire
}

#[test]
fn small_records_behind_a_full_one_and_bytes_behind_close_notify() {
    let pki = Pki::new();
    let backend = Backend::start(|r| Reply::ok(&r.body));
    let mut gw = Gateway::start(&tls_config(&pki, backend.addr()));
    let https = gw.https_addr();
    // A full 16 KiB record (the head and the start of the body), then 200 small records, in
    // one write: a socket read of the gateway holds the end of the first and whole small
    // ones behind it, more plaintext than rustls takes at once.
    let body = pattern(16384 + 200 * 53);
    let mut first = format!(
        "POST /api/echo HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let take = 16384 - first.len();
    first.extend_from_slice(&body[..take]);
    let mut records = vec![first];
    records.extend(body[take..].chunks(53).map(<[u8]>::to_vec));
    let mut c = tls_connect(https, "api.example.test", pki.client(&[], &[], true)).unwrap();
    let wire = records_on_the_wire(&mut c, &records, false);
    c.sock.write_all(&wire).unwrap();
    let (status, _, back) = read_response(&mut c, &mut Vec::new());
    assert_eq!(status, 200);
    assert!(back == body, "the echoed body differs");

    // A request, close_notify, and 6,000 bytes behind it in one write (more than rustls
    // reads at once): the connection ends, and the one worker goes on serving.
    let mut c = tls_connect(https, "api.example.test", pki.client(&[], &[], true)).unwrap();
    let mut wire = records_on_the_wire(
        &mut c,
        &[get("api.example.test", "/hello").into_bytes()],
        true,
    );
    wire.extend_from_slice(&[b'j'; 6000]);
    c.sock.write_all(&wire).unwrap();
    let _ = c.sock.read_to_end(&mut Vec::new());
    let mut c = tls_connect(https, "api.example.test", pki.client(&[], &[], true)).unwrap();
    c.write_all(get("api.example.test", "/hello").as_bytes())
        .unwrap();
    let (status, _, body) = read_response(&mut c, &mut Vec::new());
    assert_eq!((status, body.as_slice()), (200, &b"hello api"[..]));
}

#[test]
fn ten_mib_bodies_both_ways_over_tls() {
    let pki = Pki::new();
    let backend = Backend::start(|r| Reply::ok(&r.body));
    let mut gw = Gateway::start(&tls_config(&pki, backend.addr()));
    let https = gw.https_addr();
    let body = pattern(10 * 1024 * 1024);
    let mut c = tls_connect(https, "api.example.test", pki.client(&[], &[], true)).unwrap();
    let head = format!(
        "POST /api/echo HTTP/1.1\r\nHost: api.example.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&body).unwrap();
    let (status, _, back) = read_response(&mut c, &mut Vec::new());
    assert_eq!(status, 200);
    assert_eq!(back.len(), body.len());
    assert!(back == body, "the echoed body differs");
    assert_eq!(backend.wait_requests(1)[0].body.len(), body.len());
}

#[test]
fn wss_tunnels_relay_both_ways_and_pass_the_close_on() {
    let pki = Pki::new();
    let backend = support::ws::echo_backend();
    let config = format!(
        "{}[[services]]\nname = \"ws\"\nhosts = [\"api.example.test\"]\n[[services.apis]]\nname = \"chat\"\npath = \"=/chat\"\nfrontend_type = \"ws\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/ws\"\n",
        tls_config(&pki, backend)
            .split("[[services]]")
            .next()
            .unwrap()
    );
    let mut gw = Gateway::start(&config);
    let https = gw.https_addr();
    let mut c = tls_connect(https, "api.example.test", pki.client(&[], &[], true)).unwrap();
    c.write_all(b"GET /chat HTTP/1.1\r\nHost: api.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the 101");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    buf.drain(..end);
    // 1 MiB each way, in 64 KiB steps (one thread: write a step, read its echo).
    let payload = pattern(1 << 20);
    for step in payload.chunks(64 * 1024) {
        c.write_all(step).unwrap();
        while buf.len() < step.len() {
            let n = c.read(&mut chunk).unwrap();
            assert!(n > 0, "the tunnel closed");
            buf.extend_from_slice(&chunk[..n]);
        }
        assert!(buf[..step.len()] == *step, "the echo differs");
        buf.drain(..step.len());
    }
    // Half-close: close_notify reaches the backend as a FIN; it answers and closes, and
    // that comes back as the tunnel's close.
    c.conn.send_close_notify();
    c.flush().unwrap();
    loop {
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("after {:?}: {e}", String::from_utf8_lossy(&buf)),
        }
    }
    assert_eq!(buf, b"bye");
}

#[test]
fn over_max_connections_an_https_listener_just_closes() {
    let pki = Pki::new();
    let backend = Backend::ok();
    let config = tls_config(&pki, backend.addr()).replace(
        "header_timeout_ms = 2000\n",
        "header_timeout_ms = 5000\nmax_connections = 1\n",
    );
    let mut gw = Gateway::start(&config);
    let https = gw.https_addr();
    let _first = TcpStream::connect(https).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut second = TcpStream::connect(https).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut back = Vec::new();
    let start = Instant::now();
    let _ = second.read_to_end(&mut back);
    // Closed at once, not after the handshake timeout.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(
        back.is_empty(),
        "bytes for a refused HTTPS client: {back:?}"
    );
}

// ---------------------------------------------------------------------------------------
// `check`: certificates

/// Loads a configuration with the `api.example.test` certificate files replaced.
fn load_with(pki: &Pki, cert: &str, key: &str) -> Result<ringway::config::Config, String> {
    let config = format!(
        "{}[[certificates]]\nhosts = [\"api.example.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
        server_section(1, "listen_https = [\"127.0.0.1:0\"]\n"),
        pki.path(cert).display(),
        pki.path(key).display()
    );
    ringway::config::load_str(&config, std::path::Path::new("t.toml")).map_err(|e| e.to_string())
}

fn leaf_with_validity(pki: &Pki, name: &str, not_before: i64, not_after: i64) {
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["api.example.test".to_string()]).unwrap();
    let epoch = date_time_ymd(1970, 1, 1);
    params.not_before = epoch + Duration::from_secs(not_before as u64);
    params.not_after = epoch + Duration::from_secs(not_after as u64);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(pki.path(&format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(pki.path(&format!("{name}.key")), key.serialize_pem()).unwrap();
}

#[test]
fn check_verifies_keys_chains_and_expiry() {
    let pki = Pki::new();
    let cfg = load_with(&pki, "api.crt", "api.key").unwrap();
    assert!(cfg.tls.is_some());
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    let e = load_with(&pki, "api.crt", "wild.key").err().unwrap();
    assert!(
        e.contains("certificates[0].key") && e.contains("is not the key of the certificate"),
        "{e}"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let day = 86400;
    leaf_with_validity(&pki, "expired", now - 30 * day, now - day);
    let e = load_with(&pki, "expired.crt", "expired.key").err().unwrap();
    assert!(
        e.contains("certificates[0].cert") && e.contains("expired"),
        "{e}"
    );

    leaf_with_validity(&pki, "soon", now - day, now + 5 * day);
    let cfg = load_with(&pki, "soon.crt", "soon.key").unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(
        cfg.warnings[0].contains("expires soon"),
        "{:?}",
        cfg.warnings
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "--config"])
        .arg({
            let p = pki.path("soon.toml");
            std::fs::write(
                &p,
                format!(
                    "{}[[certificates]]\nhosts = [\"api.example.test\"]\ncert = \"{}\"\nkey = \"{}\"\n",
                    server_section(1, "listen_https = [\"127.0.0.1:0\"]\n"),
                    pki.path("soon.crt").display(),
                    pki.path("soon.key").display()
                ),
            )
            .unwrap();
            p
        })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("warning: certificates[0]"), "{stdout}");

    // A chain that does not parse.
    std::fs::write(
        pki.path("junk.crt"),
        "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = load_with(&pki, "junk.crt", "api.key").err().unwrap();
    assert!(e.contains("certificates[0].cert"), "{e}");
}

#[test]
fn the_access_log_names_the_tls_version_and_sni() {
    let pki = Pki::new();
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let config = tls_config(&pki, backend.addr()).replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    );
    let mut gw = Gateway::start(&config);
    let https = gw.https_addr();
    let mut c = tls_connect(
        https,
        "api.example.test",
        pki.client(&[&rustls::version::TLS12], &[], true),
    )
    .unwrap();
    c.write_all(get("api.example.test", "/hello").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut c, &mut Vec::new()).0, 200);
    assert_eq!(
        gw.connect()
            .roundtrip(get("api.example.test", "/hello"))
            .status,
        200
    );
    let deadline = Instant::now() + READ_TIMEOUT;
    let lines: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<_> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["tls"], "TLSv1.2");
    assert_eq!(lines[0]["sni"], "api.example.test");
    assert_eq!(lines[1]["tls"], serde_json::Value::Null);
    assert_eq!(lines[1]["sni"], serde_json::Value::Null);
}

#[test]
fn handshakes_and_their_failures_are_counted_by_reason() {
    let pki = Pki::new();
    let backend = Backend::ok();
    let mut gw = Gateway::start(&with_admin(&tls_config(&pki, backend.addr())));
    let https = gw.https_addr();
    let admin = admin_addr(&gw);
    assert!(tls_connect(https, "api.example.test", pki.client(&[], &[], false)).is_err());
    assert!(tls_connect(https, "nope.example.test", pki.client(&[], &[], true)).is_err());
    assert!(tls_connect(https, "nope.example.test", pki.client(&[], &[], true)).is_err());
    let mut ok = tls_connect(https, "api.example.test", pki.client(&[], &[], true)).unwrap();
    ok.write_all(get("api.example.test", "/hello").as_bytes())
        .unwrap();
    assert_eq!(read_response(&mut ok, &mut Vec::new()).0, 200);
    let (_, m) = admin_get(admin, "/metrics");
    for (series, value) in [
        (
            "ringway_tls_handshake_failures_total{reason=\"no_sni\"}",
            1.0,
        ),
        (
            "ringway_tls_handshake_failures_total{reason=\"unknown_name\"}",
            2.0,
        ),
        (
            "ringway_tls_handshake_failures_total{reason=\"protocol\"}",
            0.0,
        ),
        ("ringway_tls_handshakes_total", 1.0),
    ] {
        assert_eq!(sample(&m, series), Some(value), "{series} in\n{m}");
    }
}

/// Past 512 connections on a worker, idle connections wait for readability with no buffer
/// (TLS: with no ciphertext or record buffer either). 600 TLS connections each make a
/// request, then each makes another one through that parked path.
#[test]
fn many_idle_tls_connections_park_and_still_answer() {
    raise_fd_limit();
    let s = setup();
    let cfg = s.pki.client(&[], &[b"http/1.1"], true);
    let mut conns = Vec::new();
    for _ in 0..600 {
        let mut c = tls_connect(s.https, "api.example.test", cfg.clone()).unwrap();
        c.write_all(get("api.example.test", "/hello").as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut c, &mut Vec::new()).0, 200);
        conns.push(c);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        // Two pipelined requests at once: the second waits in the read buffer.
        let two = get("api.example.test", "/hello").repeat(2);
        c.write_all(two.as_bytes()).unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_response(c, &mut buf).0, 200, "connection {i}");
        assert_eq!(read_response(c, &mut buf).0, 200, "connection {i}");
    }
}

//! `server.proxy_protocol = true` (SPEC §9), through the real binary: every client listener
//! expects a PROXY protocol header (v1 text or v2 binary) first on each connection, and its
//! source address is the client's for `X-Forwarded-For`, `X-Real-IP` and the access log. A
//! connection without a valid header is closed without an answer and counted. The v2 bytes
//! are built by Python's `struct` and `socket.inet_pton` (not by the code under test), and
//! HAProxy's `send-proxy` / `send-proxy-v2` are checked when `haproxy` is installed.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use support::pki::Pki;
use support::*;

const HEADER_TIMEOUT_MS: u64 = 1500;

/// The common configuration with `proxy_protocol = true` (unless `on` is false), the admin
/// listener, and the access log in `log`; `extra`: more `[server]` keys.
fn config(backend: SocketAddr, log: &Path, on: bool, extra: &str) -> String {
    let server = format!(
        "proxy_protocol = {on}\nheader_timeout_ms = {HEADER_TIMEOUT_MS}\naccess_log = {:?}\n{extra}",
        log.display().to_string()
    );
    with_admin(&proxy_config(backend, &server, "")).replace("access_log = \"off\"\n", "")
}

struct Setup {
    backend: Backend,
    gw: Gateway,
    admin: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// A gateway on [`config`] with `tables` appended (certificates, the service's IP control).
fn setup(on: bool, extra: &str, tables: &str) -> Setup {
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(&format!(
        "{}{tables}",
        config(backend.addr(), &log, on, extra)
    ));
    let admin = admin_addr(&gw);
    Setup {
        backend,
        gw,
        admin,
        log,
        _dir: dir,
    }
}

/// The backend's `(X-Forwarded-For, X-Real-IP)` for the request it got for `target`
/// (`/api/...`, which it sees as `/internal/...`).
fn forwarded(backend: &Backend, target: &str) -> (String, String) {
    let want = target.replacen("/api", "/internal", 1);
    let reqs = backend.requests();
    let r = reqs
        .iter()
        .find(|r| r.target == want)
        .unwrap_or_else(|| panic!("the backend got no {want}; it got {reqs:?}"));
    (
        r.header("x-forwarded-for").unwrap_or_default().to_string(),
        r.header("x-real-ip").unwrap_or_default().to_string(),
    )
}

/// The access log's `client` for `target`.
fn logged_client(log: &Path, target: &str, lines: usize) -> String {
    let all = read_json_lines(log, lines);
    let line = all
        .iter()
        .find(|l| l["target"] == target)
        .unwrap_or_else(|| panic!("no access-log line for {target}: {all:?}"));
    line["client"].as_str().unwrap_or_default().to_string()
}

/// A PROXY protocol v2 header built by Python (`struct`, `socket.inet_pton`): command
/// (0 LOCAL, 1 PROXY), family (0 UNSPEC, 1 INET, 2 INET6), protocol (1 STREAM), addresses,
/// ports and TLV bytes given as a Python expression.
fn python_v2(
    cmd: u8,
    fam: u8,
    proto: u8,
    src: &str,
    dst: &str,
    ports: (u16, u16),
    tlvs: &str,
) -> Vec<u8> {
    let script = format!(
        r#"
import socket, struct, sys
fam, src, dst = {fam}, "{src}", "{dst}"
af = {{1: socket.AF_INET, 2: socket.AF_INET6}}
addrs = b""
if fam in af:
    addrs = socket.inet_pton(af[fam], src) + socket.inet_pton(af[fam], dst) + struct.pack("!HH", {sport}, {dport})
body = addrs + {tlvs}
sys.stdout.buffer.write(b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x20 | {cmd}, fam << 4 | {proto}, len(body)) + body)
"#,
        sport = ports.0,
        dport = ports.1,
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 (CI installs it)");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn with_request(header: &[u8], target: &str) -> Vec<u8> {
    let mut b = header.to_vec();
    b.extend_from_slice(&get(target));
    b
}

#[test]
fn v1_tcp4_and_tcp6_sources_are_the_client() {
    let s = setup(true, "", "");
    let cases = [
        (
            "PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n",
            "/api/tcp4",
            "203.0.113.7",
            "203.0.113.7:51000",
        ),
        (
            "PROXY TCP6 2001:db8::42 ::1 51001 8080\r\n",
            "/api/tcp6",
            "2001:db8::42",
            "[2001:db8::42]:51001",
        ),
    ];
    for (i, (header, target, ip, client)) in cases.iter().enumerate() {
        let mut c = s.gw.connect();
        // The header and the request in one write: the request's bytes stay for HTTP.
        let r = c.roundtrip(with_request(header.as_bytes(), target));
        assert_eq!(r.status, 200, "{header:?}");
        // The next request on the connection is the same client's.
        let again = format!("{target}/again");
        assert_eq!(c.roundtrip(get(&again)).status, 200);
        for t in [*target, again.as_str()] {
            let (xff, real) = forwarded(&s.backend, t);
            assert_eq!(xff, *ip, "X-Forwarded-For of {t}");
            assert_eq!(real, *ip, "X-Real-IP of {t}");
            assert_eq!(logged_client(&s.log, t, 2 * (i + 1)), *client, "{t}");
        }
    }
    assert_eq!(
        metric(
            s.admin,
            "ringway_proxy_protocol_failures_total{reason=\"missing\"}"
        ),
        0.0
    );
}

#[test]
fn a_header_in_pieces_and_the_request_after_it() {
    let s = setup(true, "", "");
    let mut c = s.gw.connect();
    let header = b"PROXY TCP4 198.51.100.20 127.0.0.1 40000 8080\r\n";
    let request = get("/api/pieces");
    let pause = Duration::from_millis(60);
    c.send(&header[..3]);
    std::thread::sleep(pause);
    c.send(&header[3..30]);
    std::thread::sleep(pause);
    c.send(&header[30..]);
    std::thread::sleep(pause);
    let mut rest = request.clone();
    let tail = rest.split_off(10);
    c.send(rest);
    std::thread::sleep(pause);
    c.send(tail);
    assert_eq!(c.read_response().status, 200);
    assert_eq!(forwarded(&s.backend, "/api/pieces").0, "198.51.100.20");
    // The access log's byte count is the request's: the header is not part of it.
    let lines = read_json_lines(&s.log, 1);
    assert_eq!(lines[0]["bytes_in"], request.len(), "{lines:?}");
}

#[test]
fn v2_headers_built_by_python() {
    let s = setup(true, "", "");
    // A NOOP TLV and an AWS-style TLV (type 0xEA) after the addresses.
    let tlvs =
        r#"struct.pack("!BH", 0x04, 3) + b"abc" + struct.pack("!BH", 0xEA, 5) + b"\x01vpce""#;
    let cases = [
        (
            python_v2(1, 1, 1, "203.0.113.9", "127.0.0.1", (52000, 8080), "b\"\""),
            "/api/v2-tcp4",
            "203.0.113.9",
            "203.0.113.9:52000",
        ),
        (
            python_v2(1, 2, 1, "2001:db8::9", "::1", (52001, 8080), "b\"\""),
            "/api/v2-tcp6",
            "2001:db8::9",
            "[2001:db8::9]:52001",
        ),
        (
            python_v2(1, 1, 1, "192.0.2.99", "127.0.0.1", (52002, 8080), tlvs),
            "/api/v2-tlvs",
            "192.0.2.99",
            "192.0.2.99:52002",
        ),
    ];
    assert_eq!(cases[0].0.len(), 28, "16 + 12 address bytes");
    for (i, (header, target, ip, client)) in cases.iter().enumerate() {
        let mut c = s.gw.connect();
        assert_eq!(c.roundtrip(with_request(header, target)).status, 200);
        let (xff, real) = forwarded(&s.backend, target);
        assert_eq!((xff.as_str(), real.as_str()), (*ip, *ip), "{target}");
        assert_eq!(logged_client(&s.log, target, i + 1), *client, "{target}");
    }
}

#[test]
fn v2_local_and_v1_unknown_use_the_tcp_peer() {
    let s = setup(true, "", "");
    let cases = [
        (python_v2(0, 0, 0, "", "", (0, 0), "b\"\""), "/api/local"),
        // LOCAL with addresses: they are ignored.
        (
            python_v2(0, 1, 1, "203.0.113.1", "127.0.0.1", (1, 2), "b\"\""),
            "/api/local-addrs",
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), "/api/unknown"),
        (
            b"PROXY UNKNOWN 203.0.113.1 127.0.0.1 1 2\r\n".to_vec(),
            "/api/unknown-addrs",
        ),
    ];
    for (i, (header, target)) in cases.iter().enumerate() {
        let mut c = s.gw.connect();
        let peer = c.stream.local_addr().unwrap();
        assert_eq!(c.roundtrip(with_request(header, target)).status, 200);
        let (xff, real) = forwarded(&s.backend, target);
        assert_eq!(
            (xff.as_str(), real.as_str()),
            ("127.0.0.1", "127.0.0.1"),
            "{target}"
        );
        assert_eq!(
            logged_client(&s.log, target, i + 1),
            peer.to_string(),
            "{target}"
        );
    }
}

/// Connections whose first bytes are not a valid header are closed at once, unanswered,
/// and counted by reason; nothing reaches the backend.
#[test]
fn connections_without_a_valid_header_are_closed_unanswered() {
    let s = setup(true, "", "");
    let mut too_long = b"PROXY UNKNOWN ".to_vec();
    too_long.resize(120, b'x');
    too_long.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("missing", get("/api/plain")),
        ("missing", b"\x16\x03\x01\x00\x05hello".to_vec()),
        (
            "malformed",
            with_request(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000\r\n", "/api/x"),
        ),
        (
            "malformed",
            with_request(b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\n", "/api/x"),
        ),
        (
            "malformed",
            with_request(
                &python_v2(3, 1, 1, "203.0.113.7", "127.0.0.1", (1, 2), "b\"\""),
                "/api/x",
            ),
        ),
        ("too_long", too_long),
    ];
    for (reason, bytes) in &cases {
        let mut c = s.gw.connect();
        let t0 = Instant::now();
        c.send(bytes);
        c.wait_closed(Duration::from_millis(HEADER_TIMEOUT_MS / 2))
            .unwrap_or_else(|e| panic!("{reason} {bytes:?}: {e}"));
        assert!(t0.elapsed() < Duration::from_millis(HEADER_TIMEOUT_MS));
    }
    for (reason, n) in [("missing", 2.0), ("malformed", 3.0), ("too_long", 1.0)] {
        let series = format!("ringway_proxy_protocol_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(s.admin, &series), n, "{series}");
    }
    assert_eq!(s.backend.requests().len(), 0);
    let stderr = s.gw.stderr();
    assert!(
        stderr.contains("closed without a valid PROXY protocol header"),
        "{stderr}"
    );
}

#[test]
fn a_header_that_never_completes_is_closed_at_the_header_timeout() {
    let s = setup(true, "", "");
    let mut partial = s.gw.connect();
    partial.send("PROXY TCP4 203.0.113.7 ");
    let mut silent = s.gw.connect();
    let t0 = Instant::now();
    for (what, c) in [("partial", &mut partial), ("silent", &mut silent)] {
        c.wait_closed(Duration::from_millis(HEADER_TIMEOUT_MS + 3000))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(HEADER_TIMEOUT_MS - 100),
        "closed before the header timeout: {took:?}"
    );
    wait_metric(
        s.admin,
        "ringway_proxy_protocol_failures_total{reason=\"timeout\"}",
        2.0,
        Duration::from_secs(5),
    );
    // A client that connects and closes without a byte is no failure (a TCP health check).
    drop(s.gw.connect());
    let mut c = s.gw.connect();
    c.send("PROXY TCP4 203");
    drop(c);
    wait_metric(
        s.admin,
        "ringway_proxy_protocol_failures_total{reason=\"closed\"}",
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(
        metric(
            s.admin,
            "ringway_proxy_protocol_failures_total{reason=\"timeout\"}"
        ),
        2.0
    );
}

/// IP control judges the header's source, not the balancer's address.
#[test]
fn ip_control_judges_the_proxy_source() {
    let s = setup(
        true,
        "",
        "[services.ip_control]\nmode = \"deny\"\nips = [\"203.0.113.0/28\"]\n",
    );
    let cases: [(&[u8], &str, u16); 3] = [
        (
            b"PROXY TCP4 203.0.113.7 127.0.0.1 1 2\r\n",
            "/api/denied",
            403,
        ),
        (
            b"PROXY TCP4 203.0.113.16 127.0.0.1 1 2\r\n",
            "/api/allowed",
            200,
        ),
        (b"PROXY UNKNOWN\r\n", "/api/balancer", 200),
    ];
    for (header, target, status) in cases {
        let mut c = s.gw.connect();
        let r = c.roundtrip(with_request(header, target));
        assert_eq!(r.status, status, "{target}: {}", r.text());
        if status == 403 {
            assert_eq!(
                json_message(&r.body).as_deref(),
                Some("client ip 203.0.113.7 is not allowed")
            );
        }
    }
    assert_eq!(s.backend.requests().len(), 2);
}

#[test]
fn without_proxy_protocol_a_proxy_line_is_a_400() {
    let s = setup(false, "", "");
    let mut c = s.gw.connect();
    let r = c.roundtrip(with_request(
        b"PROXY TCP4 203.0.113.7 127.0.0.1 51000 8080\r\n",
        "/api/x",
    ));
    assert_eq!(r.status, 400);
    let mut c = s.gw.connect();
    assert_eq!(c.roundtrip(get("/api/plain")).status, 200);
    assert_eq!(forwarded(&s.backend, "/api/plain").0, "127.0.0.1");
}

// ---------------------------------------------------------------------------------------
// HTTPS: the header comes before the TLS handshake

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS connection to `addr` after `header`: written on its own first, or in the same
/// write as the ClientHello (`together`).
fn tls_after(pki: &Pki, addr: SocketAddr, header: &[u8], together: bool) -> std::io::Result<Tls> {
    let cfg = pki.client(&[], &[b"http/1.1"], true);
    let name = ServerName::try_from("api.example.test".to_string()).unwrap();
    let mut conn = ClientConnection::new(cfg, name).unwrap();
    let mut sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut first = header.to_vec();
    if together {
        conn.write_tls(&mut first)?;
    }
    sock.write_all(&first)?;
    let mut s = StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

fn https_roundtrip(s: &mut Tls, target: &str) -> u16 {
    s.write_all(&get(target)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = Head::parse(&buf[..end + 4]).unwrap();
            let len = head.content_length().unwrap_or(0) as usize;
            if buf.len() >= end + 4 + len {
                return head
                    .start_line
                    .split(' ')
                    .nth(1)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
            }
        }
        let n = s.read(&mut chunk).expect("reading a response");
        assert!(n > 0, "closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn over_tls_the_header_comes_before_the_handshake() {
    let pki = Pki::new();
    let mut s = setup(
        true,
        "listen_https = [\"127.0.0.1:0\"]\n",
        &pki.certificates_section(),
    );
    let https = s.gw.https_addr();
    let v2 = python_v2(1, 1, 1, "203.0.113.50", "127.0.0.1", (53000, 8443), "b\"\"");
    let cases: [(&[u8], bool, &str, &str); 3] = [
        (
            b"PROXY TCP4 203.0.113.40 127.0.0.1 53000 8443\r\n",
            false,
            "/api/tls-v1",
            "203.0.113.40",
        ),
        // The ClientHello in the same write as the header: its bytes go to rustls.
        (
            b"PROXY TCP6 2001:db8::40 ::1 53001 8443\r\n",
            true,
            "/api/tls-v1-one-write",
            "2001:db8::40",
        ),
        (&v2, true, "/api/tls-v2-one-write", "203.0.113.50"),
    ];
    for (header, together, target, ip) in cases {
        let mut c = tls_after(&pki, https, header, together)
            .unwrap_or_else(|e| panic!("{target}: handshake: {e}"));
        assert_eq!(https_roundtrip(&mut c, target), 200, "{target}");
        let want = target.replacen("/api", "/internal", 1);
        let reqs = s.backend.requests();
        let r = reqs.iter().find(|r| r.target == want).unwrap();
        assert_eq!(r.header("x-forwarded-for"), Some(ip), "{target}");
        assert_eq!(r.header("x-forwarded-proto"), Some("https"), "{target}");
    }
    // A TLS client that skips the balancer: its ClientHello is no header.
    assert!(tls_after(&pki, https, b"", false).is_err());
    wait_metric(
        s.admin,
        "ringway_proxy_protocol_failures_total{reason=\"missing\"}",
        1.0,
        Duration::from_secs(5),
    );
    assert_eq!(metric(s.admin, "ringway_tls_handshakes_total"), 3.0);
}

// ---------------------------------------------------------------------------------------
// Reload, idle set

/// A reload applies `proxy_protocol` to connections accepted after it; open connections go
/// on as they started.
#[test]
fn a_reload_applies_to_new_connections() {
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(&config(backend.addr(), &log, false, ""));
    let mut before = gw.connect();
    assert_eq!(before.roundtrip(get("/api/before")).status, 200);
    std::fs::write(&gw.config_path, config(backend.addr(), &log, true, "")).unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.stderr().contains("ringway: reloaded") {
        assert!(Instant::now() < deadline, "no reload:\n{}", gw.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    // Workers pick the configuration up at their next housekeeping tick (50 ms).
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(before.roundtrip(get("/api/still")).status, 200);
    let mut plain = gw.connect();
    plain.send(get("/api/no-header"));
    plain
        .wait_closed(Duration::from_secs(5))
        .expect("a new connection needs the header");
    let mut c = gw.connect();
    let r = c.roundtrip(with_request(
        b"PROXY TCP4 203.0.113.77 127.0.0.1 1 2\r\n",
        "/api/after",
    ));
    assert_eq!(r.status, 200);
    assert_eq!(forwarded(&backend, "/api/after").0, "203.0.113.77");
    assert_eq!(forwarded(&backend, "/api/still").0, "127.0.0.1");
}

/// Above 512 connections a worker parks idle plain connections in its idle set; back from
/// it, a connection is still its PROXY source's (the header is read once, at accept).
#[test]
fn parked_connections_keep_their_proxy_source() {
    const CLIENTS: usize = 600;
    raise_fd_limit();
    let s = setup(true, "", "");
    let source = |i: usize| format!("10.{}.{}.1", i / 250, i % 250);
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let mut c = s.gw.connect();
            let header = format!("PROXY TCP4 {} 127.0.0.1 {} 8080\r\n", source(i), 1000 + i);
            let r = c.roundtrip(with_request(header.as_bytes(), &format!("/api/a{i}")));
            assert_eq!(r.status, 200, "client {i}");
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.roundtrip(get(&format!("/api/b{i}"))).status, 200);
    }
    wait_metric(
        s.admin,
        "ringway_client_connections_parked",
        CLIENTS as f64,
        Duration::from_secs(10),
    );
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.roundtrip(get(&format!("/api/c{i}"))).status,
            200,
            "client {i}"
        );
    }
    let reqs = s.backend.requests();
    for i in 0..CLIENTS {
        let want = format!("/internal/c{i}");
        let r = reqs.iter().find(|r| r.target == want).unwrap();
        assert_eq!(
            r.header("x-forwarded-for"),
            Some(source(i).as_str()),
            "client {i}"
        );
    }
    let lines = read_json_lines(&s.log, 3 * CLIENTS);
    let back = lines.iter().find(|l| l["target"] == "/api/c599").unwrap();
    assert_eq!(back["client"], "10.2.99.1:1599");
}

// ---------------------------------------------------------------------------------------
// HAProxy in front

/// A `haproxy` process, killed on drop (before its configuration's directory goes).
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `haproxy` command, on the PATH or where Debian puts it (`/usr/sbin` is not on every
/// PATH).
fn haproxy() -> Option<&'static str> {
    ["haproxy", "/usr/sbin/haproxy"].into_iter().find(|cmd| {
        Command::new(cmd)
            .arg("-v")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One GET through `addr` from a socket bound to `from`: the status line.
fn get_from(from: &str, addr: SocketAddr, target: &str) -> (String, SocketAddr) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .unwrap();
    let mut c: TcpStream = sock.into();
    let local = c.local_addr().unwrap();
    c.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    c.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = c.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    (text.lines().next().unwrap_or_default().to_string(), local)
}

#[test]
fn haproxy_send_proxy_and_send_proxy_v2_in_front() {
    let Some(haproxy) = haproxy() else {
        eprintln!("skipped: haproxy is not installed (apt-get install haproxy)");
        return;
    };
    let s = setup(true, "", "");
    let (v1, v2) = (unused_addr(), unused_addr());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    let gw = s.gw.addr();
    // Health checks every 100 ms: with send-proxy-v2 they carry a LOCAL header.
    std::fs::write(
        &cfg,
        format!(
            "global\n    nbthread 1\ndefaults\n    mode tcp\n    timeout connect 2s\n    timeout client 20s\n    timeout server 20s\n\
             listen v1\n    bind {v1}\n    server gw {gw} send-proxy check inter 100\n\
             listen v2\n    bind {v2}\n    server gw {gw} send-proxy-v2 check inter 100\n"
        ),
    )
    .unwrap();
    let child = Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy starts");
    let _haproxy = Haproxy { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(v1).is_err() || TcpStream::connect(v2).is_err() {
        assert!(Instant::now() < deadline, "haproxy does not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The client connects from 127.0.0.2; haproxy connects to ringway from 127.0.0.1.
    for (i, (front, target)) in [(v1, "/api/haproxy-v1"), (v2, "/api/haproxy-v2")]
        .into_iter()
        .enumerate()
    {
        let (status, local) = get_from("127.0.0.2", front, target);
        assert!(status.starts_with("HTTP/1.1 200"), "{target}: {status:?}");
        let (xff, real) = forwarded(&s.backend, target);
        assert_eq!(
            (xff.as_str(), real.as_str()),
            ("127.0.0.2", "127.0.0.2"),
            "{target}"
        );
        assert_eq!(
            logged_client(&s.log, target, i + 1),
            local.to_string(),
            "{target}"
        );
    }
    // Some health checks have come by now; none counted as a failure.
    std::thread::sleep(Duration::from_millis(500));
    let (_, text) = admin_get(s.admin, "/metrics");
    for reason in ["missing", "too_long", "malformed", "timeout", "closed"] {
        let series = format!("ringway_proxy_protocol_failures_total{{reason=\"{reason}\"}}");
        assert_eq!(sample(&text, &series), Some(0.0), "{series}");
    }
}

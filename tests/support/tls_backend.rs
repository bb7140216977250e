//! A TLS test backend (a CLB's HTTPS listener) on rustls, for the `https://` upstream
//! tests: HTTP/1.1 keepalive with Content-Length bodies, and a WebSocket echo after a 101.
//! It counts connections and resumed handshakes, and can misbehave on demand (a TLS 1.3
//! KeyUpdate while the connection sits idle, `close_notify` after an idle while).
//!
//! Each answer's body says what the backend saw: `conn=N resumed=B sni=S path=P xfp=X`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// What the backend does besides answering.
#[derive(Clone, Copy, Default)]
pub struct Behaviour {
    /// After each answer, ask for a key update (a TLS record that is not application data,
    /// arriving while the gateway's connection sits idle in its pool).
    pub key_update_after_answer: bool,
    /// Send `close_notify` and close after this long without a request.
    pub idle_close: Option<Duration>,
}

#[derive(Default)]
pub struct Counts {
    pub connections: AtomicUsize,
    pub resumed: AtomicUsize,
    pub requests: AtomicUsize,
    /// Heads of the requests, in order.
    pub heads: Mutex<Vec<String>>,
}

pub struct TlsBackend {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

impl TlsBackend {
    pub fn start(config: Arc<ServerConfig>, behaviour: Behaviour) -> TlsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let id = c.connections.fetch_add(1, Ordering::SeqCst) + 1;
                        let (cfg, c) = (config.clone(), c.clone());
                        thread::spawn(move || {
                            // Printed (and shown by a failing test): why a connection ended.
                            if let Err(e) = serve(tcp, cfg, id, &c, behaviour) {
                                eprintln!("tls backend: connection {id} ended: {e}");
                            }
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TlsBackend { addr, counts, stop }
    }

    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    pub fn resumed(&self) -> usize {
        self.counts.resumed.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.counts.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

type Tls = StreamOwned<ServerConnection, TcpStream>;

fn serve(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    id: usize,
    counts: &Counts,
    behaviour: Behaviour,
) -> io::Result<()> {
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(
        behaviour.idle_close.unwrap_or(Duration::from_secs(20)),
    ))?;
    let conn = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut first = true;
    loop {
        let head_end = match read_head(&mut tls, &mut buf) {
            Ok(Some(end)) => end,
            Ok(None) => return Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                // Idle too long: close_notify, then close.
                tls.conn.send_close_notify();
                let _ = tls.conn.complete_io(&mut tls.sock);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        buf.drain(..head_end);
        let len = header(&head, "content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < len {
            let mut chunk = [0u8; 16384];
            let n = tls.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..len);
        counts.requests.fetch_add(1, Ordering::SeqCst);
        counts.heads.lock().unwrap().push(head.clone());
        let resumed = tls.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        if first && resumed {
            counts.resumed.fetch_add(1, Ordering::SeqCst);
        }
        first = false;
        if let Some(key) = header(&head, "sec-websocket-key") {
            return websocket_echo(&mut tls, &key, buf);
        }
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        let body = format!(
            "conn={id} resumed={resumed} sni={} path={path} xfp={}",
            tls.conn.server_name().unwrap_or("-"),
            header(&head, "x-forwarded-proto").unwrap_or_default()
        );
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(answer.as_bytes())?;
        tls.flush()?;
        if behaviour.key_update_after_answer {
            tls.conn.refresh_traffic_keys().map_err(io::Error::other)?;
            tls.conn.complete_io(&mut tls.sock)?;
        }
    }
}

/// Reads until a whole head is in `buf`; `None` at a clean end of stream.
fn read_head(tls: &mut Tls, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        let mut chunk = [0u8; 16384];
        let n = match tls.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Answers a WebSocket handshake with 101 and echoes every byte until the end of stream.
fn websocket_echo(tls: &mut Tls, key: &str, pending: Vec<u8>) -> io::Result<()> {
    use base64::Engine as _;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref());
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tls.write_all(answer.as_bytes())?;
    tls.write_all(&pending)?;
    tls.flush()?;
    tls.sock.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut chunk = [0u8; 16384];
    loop {
        let n = match tls.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
            return Ok(());
        }
        tls.write_all(&chunk[..n])?;
        tls.flush()?;
    }
}

//! The receive path against a real rustls peer over loopback: records laid out so that one
//! socket read holds more than rustls accepts at once, and a `close_notify` with bytes
//! behind it.

use std::io::Write as _;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use monoio::io::AsyncReadRent;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use super::*;

const NAME: &str = "peer.test";

fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
}

/// A self-signed certificate for [`NAME`]: (server config, client config trusting it).
fn configs() -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![NAME.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = CertificateDer::from(cert.der().to_vec());
    let server = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).unwrap();
    let client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (Arc::new(server), Arc::new(client))
}

/// A rustls server on a blocking socket: after the handshake it encrypts `records` (one
/// write each, so one record each unless longer than 16 KiB), appends `trailer` raw, and
/// sends it all in one write once `go` says the client waits. Then it waits for the client
/// to close.
fn peer(
    config: Arc<ServerConfig>,
    records: Vec<Vec<u8>>,
    close_notify: bool,
    trailer: Vec<u8>,
) -> (std::net::SocketAddr, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut conn = ServerConnection::new(config).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        // TLS 1.3: the session tickets go out now, on their own.
        while conn.wants_write() {
            conn.write_tls(&mut sock).unwrap();
        }
        let _ = wait.recv();
        for r in &records {
            conn.writer().write_all(r).unwrap();
        }
        if close_notify {
            conn.send_close_notify();
        }
        let mut wire = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut wire).unwrap();
        }
        wire.extend_from_slice(&trailer);
        sock.write_all(&wire).unwrap();
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut sock, &mut rest);
    });
    (addr, go)
}

/// Connects, lets the peer send, waits until it all arrived, then reads to the end (or
/// until `want` bytes came).
async fn read_all(
    addr: std::net::SocketAddr,
    client: Arc<ClientConfig>,
    go: mpsc::Sender<()>,
    want: usize,
) -> io::Result<Vec<u8>> {
    let tcp = TcpStream::connect_addr(addr).await?;
    let name = ServerName::try_from(NAME).unwrap();
    let mut tls = TlsStream::connect(tcp, client, name)
        .await
        .map_err(|e| io::Error::other(e.to_string()))?;
    go.send(()).unwrap();
    // Everything is in the socket's receive queue before the first read.
    monoio::time::sleep(Duration::from_millis(200)).await;
    let mut got = Vec::new();
    while got.len() < want {
        let (r, buf) = tls.read(Vec::with_capacity(64 * 1024)).await;
        match r? {
            0 => break,
            _ => got.extend_from_slice(&buf),
        }
    }
    Ok(got)
}

#[test]
fn a_full_record_then_small_ones_in_one_read_all_arrive() {
    // A 16 KiB record, then small ones: one 8 KiB socket read holds the end of the first,
    // and whole small records after it, which takes rustls past what it accepts at once.
    let mut records = vec![vec![b'a'; 16384]];
    for i in 0..200u8 {
        records.push(vec![i; 53]);
    }
    records.push(vec![b'z'; 16384]);
    let want: Vec<u8> = records.concat();
    let (server, client) = configs();
    let (addr, go) = peer(server, records, false, Vec::new());
    let got = runtime()
        .block_on(read_all(addr, client, go, want.len()))
        .expect("every record is read");
    assert_eq!(got.len(), want.len());
    assert!(got == want);
}

#[test]
fn bytes_after_close_notify_end_the_stream_without_spinning() {
    // More than rustls takes in one `read_tls` (4 KiB), so that some are offered to it after
    // it has seen the close_notify.
    let junk = vec![b'j'; 6000];
    let (server, client) = configs();
    let (addr, go) = peer(server, vec![b"last words".to_vec()], true, junk);
    let got = runtime().block_on(async move {
        monoio::time::timeout(
            Duration::from_secs(10),
            read_all(addr, client, go, usize::MAX),
        )
        .await
        .expect("the read ends")
    });
    assert_eq!(got.expect("a clean end"), b"last words");
}

/// A handshake between two in-memory rustls connections.
fn handshake_in_memory(client: &mut ClientConnection, server: &mut ServerConnection) {
    fn pass<A, B>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut rest = &wire[..];
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets().unwrap();
        }
    }
    for _ in 0..8 {
        pass(client, server);
        pass(server, client);
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
}

/// xorshift64: the layouts below are random but the same on every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn any_record_sizes_and_socket_read_sizes_deliver_the_plaintext_whole() {
    let (server_cfg, client_cfg) = configs();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..100 {
        let mut client =
            ClientConnection::new(client_cfg.clone(), ServerName::try_from(NAME).unwrap()).unwrap();
        let mut server = ServerConnection::new(server_cfg.clone()).unwrap();
        handshake_in_memory(&mut client, &mut server);
        // Records of mixed sizes: full ones, small ones, and anything between.
        let (mut sent, mut wire) = (Vec::new(), Vec::new());
        for _ in 0..40 {
            let len = match rng.below(3) {
                0 => 16384,
                1 => 1 + rng.below(100),
                _ => 1 + rng.below(16384),
            };
            let record: Vec<u8> = (0..len).map(|i| (i + sent.len()) as u8).collect();
            server.writer().write_all(&record).unwrap();
            sent.extend_from_slice(&record);
            // Out of rustls's send buffer (64 KiB at most) onto the wire.
            while server.wants_write() {
                server.write_tls(&mut wire).unwrap();
            }
        }
        // The wire cut into socket reads of up to TLS_READ_BYTES; plaintext taken in pieces
        // of any size, first, as `read_plain` does.
        let mut inb = Inbound::default();
        let (mut at, mut got) = (0, Vec::new());
        loop {
            if inb.avail > 0 {
                let cap = 1 + rng.below(65536);
                let mut out = vec![0u8; cap];
                let n = inb.take_plain(&mut client, &mut out).unwrap();
                got.extend_from_slice(&out[..n]);
            } else if inb.unfed() {
                inb.feed(&mut *client).unwrap();
            } else if at < wire.len() {
                let n = (1 + rng.below(TLS_READ_BYTES)).min(wire.len() - at);
                inb.buf = wire[at..at + n].to_vec();
                inb.pos = 0;
                at += n;
                inb.feed(&mut *client)
                    .unwrap_or_else(|e| panic!("round {round}: {e}"));
            } else {
                break;
            }
        }
        assert_eq!(got.len(), sent.len(), "round {round}");
        assert!(got == sent, "round {round}: the plaintext differs");
    }
}

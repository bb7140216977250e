//! ring against aws-lc-rs as rustls 0.23's crypto provider, for what ringway's TLS does:
//! full and resumed TLS 1.3 handshakes (ECDSA P-256 certificate), bulk records, and the small
//! request/response records of a keepalive proxy. Everything runs in memory: a rustls client
//! and server pass their records through `Vec`s, no sockets. Server-side CPU is the time spent
//! in the server's own calls (`ServerConnection::new`, `read_tls`, `process_new_packets`,
//! `writer`, `write_tls`, `reader`); "both ends" adds the client's.
//!
//! Rounds alternate the order of the providers (ABC, CBA, ...) so drift hits all alike; each
//! cell is the median over rounds of the round's mean. `cargo run --release -- --help`.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::{
    CipherSuite, ClientConfig, ClientConnection, ConnectionCommon, HandshakeKind, NamedGroup,
    RootCertStore, ServerConfig, ServerConnection, SignatureScheme,
};

const SNI: &str = "localhost";
const SUITES: [(CipherSuite, &str); 3] = [
    (CipherSuite::TLS13_AES_128_GCM_SHA256, "AES-128-GCM"),
    (CipherSuite::TLS13_AES_256_GCM_SHA384, "AES-256-GCM"),
    (
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
        "CHACHA20-POLY1305",
    ),
];

type Ticketer = fn() -> Result<Arc<dyn ProducesTickets>, rustls::Error>;

/// One provider set-up: the server runs the provider's defaults (as ringway would), the client
/// offers only `group`; `bulk` says whether the record measurements run for it.
struct Variant {
    name: &'static str,
    provider: fn() -> CryptoProvider,
    ticketer: Ticketer,
    group: NamedGroup,
    bulk: bool,
}

const VARIANTS: [Variant; 3] = [
    Variant {
        name: "ring",
        provider: rustls::crypto::ring::default_provider,
        ticketer: rustls::crypto::ring::Ticketer::new,
        group: NamedGroup::X25519,
        bulk: true,
    },
    Variant {
        name: "aws-lc-rs",
        provider: rustls::crypto::aws_lc_rs::default_provider,
        ticketer: rustls::crypto::aws_lc_rs::Ticketer::new,
        group: NamedGroup::X25519,
        bulk: true,
    },
    Variant {
        name: "aws-lc-rs X25519MLKEM768",
        provider: rustls::crypto::aws_lc_rs::default_provider,
        ticketer: rustls::crypto::aws_lc_rs::Ticketer::new,
        group: NamedGroup::X25519MLKEM768,
        bulk: false,
    },
];

struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: Vec<u8>,
}

/// A CA and a leaf for `localhost` it signed, both ECDSA P-256 (rcgen).
fn make_pki() -> Pki {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tls_provider bench CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut leaf_params = CertificateParams::new(vec![SNI.to_string()]).unwrap();
    leaf_params.distinguished_name.push(DnType::CommonName, SNI);
    let leaf = leaf_params
        .signed_by(&leaf_key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        leaf: leaf.der().clone(),
        key: leaf_key.serialize_der(),
    }
}

/// The server as ringway configures it (src/tls/mod.rs): the provider's defaults, TLS 1.2 and
/// 1.3, ALPN http/1.1, a session cache of 4,096 and the provider's ticketer.
fn server_config(v: &Variant, pki: &Pki) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(Arc::new((v.provider)()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki.leaf.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())),
        )
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.session_storage = ServerSessionMemoryCache::new(4096);
    cfg.ticketer = (v.ticketer)().unwrap();
    Arc::new(cfg)
}

/// A TLS 1.3 client of the same provider offering only `v.group` (and only `suite` if given).
fn client_config(
    v: &Variant,
    pki: &Pki,
    suite: Option<CipherSuite>,
    resume: bool,
) -> Arc<ClientConfig> {
    let mut p = (v.provider)();
    p.kx_groups.retain(|g| g.name() == v.group);
    assert_eq!(p.kx_groups.len(), 1, "{}: no group {:?}", v.name, v.group);
    if let Some(s) = suite {
        p.cipher_suites.retain(|cs| cs.suite() == s);
        assert_eq!(p.cipher_suites.len(), 1);
    }
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(Arc::new(p))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        cfg.resumption = Resumption::disabled();
    }
    Arc::new(cfg)
}

/// Everything `from` has to send, into `out` (cleared first).
fn flush<D>(from: &mut ConnectionCommon<D>, out: &mut Vec<u8>) {
    out.clear();
    while from.wants_write() {
        from.write_tls(out).unwrap();
    }
}

/// Feeds `data` to `to`, processing as it goes and reading all plaintext into `sink`;
/// returns the plaintext byte count.
fn feed<D>(to: &mut ConnectionCommon<D>, mut data: &[u8], sink: &mut [u8]) -> usize {
    let mut got = 0;
    while !data.is_empty() {
        to.read_tls(&mut data).unwrap();
        to.process_new_packets().unwrap();
        loop {
            match to.reader().read(sink) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
    }
    got
}

struct Bufs {
    c: Vec<u8>,
    s: Vec<u8>,
    sink: Vec<u8>,
}

impl Bufs {
    fn new() -> Self {
        Bufs {
            c: Vec::with_capacity(64 << 10),
            s: Vec::with_capacity(64 << 10),
            sink: vec![0; 64 << 10],
        }
    }
}

/// One handshake to the end (including the server's tickets reaching the client).
/// Returns the connections, the server's time and the whole time.
fn handshake(
    scfg: &Arc<ServerConfig>,
    ccfg: &Arc<ClientConfig>,
    b: &mut Bufs,
) -> (ClientConnection, ServerConnection, Duration, Duration) {
    let t0 = Instant::now();
    let mut c = ClientConnection::new(ccfg.clone(), ServerName::try_from(SNI).unwrap()).unwrap();
    let t = Instant::now();
    let mut s = ServerConnection::new(scfg.clone()).unwrap();
    let mut server = t.elapsed();
    loop {
        flush(&mut c, &mut b.c);
        let t = Instant::now();
        if !b.c.is_empty() {
            feed(&mut s, &b.c, &mut b.sink);
        }
        flush(&mut s, &mut b.s);
        server += t.elapsed();
        if !b.s.is_empty() {
            feed(&mut c, &b.s, &mut b.sink);
        }
        if b.c.is_empty() && b.s.is_empty() && !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    (c, s, server, t0.elapsed())
}

/// Per-round means, in ns per operation (or MB/s for throughput rows).
#[derive(Default)]
struct Cells(Vec<(String, Vec<f64>)>);

impl Cells {
    fn push(&mut self, key: String, v: f64) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, vs)) => vs.push(v),
            None => self.0.push((key, vec![v])),
        }
    }
    fn get(&self, key: &str) -> Option<&[f64]> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Linear interpolation between the closest ranks.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pos = q * (v.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    if i + 1 < v.len() {
        v[i] + (v[i + 1] - v[i]) * frac
    } else {
        v[i]
    }
}

struct Sizes {
    full: usize,
    resumed: usize,
    records: usize,
    small: usize,
}

fn ns(d: Duration, n: usize) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// One round of one variant: every measurement once, results into `cells` under "variant|row".
fn round(
    v: &Variant,
    pki: &Pki,
    z: &Sizes,
    cells: &mut Cells,
    notes: &mut Vec<String>,
    first: bool,
) {
    let scfg = server_config(v, pki);
    let mut b = Bufs::new();
    let key = |row: &str| format!("{}|{row}", v.name);

    // (0) the server's two public-key operations of a full handshake, alone: its side of
    // the key exchange (for a hybrid group, the ML-KEM encapsulation too) and the ECDSA P-256
    // signature of CertificateVerify.
    let p = (v.provider)();
    let kx = *p.kx_groups.iter().find(|g| g.name() == v.group).unwrap();
    let peer = kx.start().unwrap().pub_key().to_vec();
    let t = Instant::now();
    for _ in 0..z.full {
        std::hint::black_box(kx.start_and_complete(&peer).unwrap());
    }
    cells.push(key("kx_server"), ns(t.elapsed(), z.full));
    let signing_key = p
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pki.key.clone(),
        )))
        .unwrap();
    let signer = signing_key
        .choose_scheme(&[SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    let message = [0x20_u8; 130]; // the size of TLS 1.3's CertificateVerify input
    let t = Instant::now();
    for _ in 0..z.full {
        std::hint::black_box(signer.sign(&message).unwrap());
    }
    cells.push(key("sign"), ns(t.elapsed(), z.full));

    // (1) full handshakes: the client keeps no sessions.
    let ccfg = client_config(v, pki, None, false);
    let (mut srv, mut all) = (Duration::ZERO, Duration::ZERO);
    for i in 0..z.full {
        let (c, s, ds, da) = handshake(&scfg, &ccfg, &mut b);
        assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
        if first && i == 0 {
            notes.push(format!(
                "{}: full handshake negotiated {:?}, {:?}, {:?}",
                v.name,
                s.protocol_version().unwrap(),
                s.negotiated_cipher_suite().unwrap().suite(),
                s.negotiated_key_exchange_group().unwrap().name(),
            ));
        }
        srv += ds;
        all += da;
    }
    cells.push(key("full_server"), ns(srv, z.full));
    cells.push(key("full_all"), ns(all, z.full));

    // (2) resumed handshakes: a client with a session cache, primed by one full handshake;
    // every handshake brings new tickets, so each next one resumes.
    let ccfg = client_config(v, pki, None, true);
    handshake(&scfg, &ccfg, &mut b);
    let (mut srv, mut all, mut not_resumed) = (Duration::ZERO, Duration::ZERO, 0);
    for _ in 0..z.resumed {
        let (c, _s, ds, da) = handshake(&scfg, &ccfg, &mut b);
        if c.handshake_kind() != Some(HandshakeKind::Resumed) {
            not_resumed += 1;
        }
        srv += ds;
        all += da;
    }
    assert_eq!(
        not_resumed, 0,
        "{}: {not_resumed} handshakes did not resume",
        v.name
    );
    cells.push(key("resumed_server"), ns(srv, z.resumed));
    cells.push(key("resumed_all"), ns(all, z.resumed));

    if !v.bulk {
        return;
    }
    let payload = vec![0x5a_u8; 16 << 10];
    let request = vec![b'q'; 200];
    let response = vec![b'r'; 300];
    for (suite, sname) in SUITES {
        let ccfg = client_config(v, pki, Some(suite), false);
        let (mut c, mut s, _, _) = handshake(&scfg, &ccfg, &mut b);
        assert_eq!(s.negotiated_cipher_suite().unwrap().suite(), suite);

        // (3a) 16 KiB application writes, server → client: the server encrypts (writer +
        // write_tls), the client decrypts (read_tls + process_new_packets + reader).
        let (mut enc, mut dec) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..z.records {
            let t = Instant::now();
            s.writer().write_all(&payload).unwrap();
            flush(&mut s, &mut b.s);
            enc += t.elapsed();
            let t = Instant::now();
            let n = feed(&mut c, &b.s, &mut b.sink);
            dec += t.elapsed();
            assert_eq!(n, payload.len());
        }
        let mb = (z.records * payload.len()) as f64 / 1e6;
        cells.push(key(&format!("enc16k|{sname}")), mb / enc.as_secs_f64());
        cells.push(key(&format!("dec16k|{sname}")), mb / dec.as_secs_f64());

        // (3b) a keepalive request: the client sends 200 bytes, the server decrypts them and
        // answers 300 bytes, which the client decrypts.
        let (mut srv, t0) = (Duration::ZERO, Instant::now());
        for _ in 0..z.small {
            c.writer().write_all(&request).unwrap();
            flush(&mut c, &mut b.c);
            let t = Instant::now();
            let n = feed(&mut s, &b.c, &mut b.sink);
            s.writer().write_all(&response).unwrap();
            flush(&mut s, &mut b.s);
            srv += t.elapsed();
            debug_assert_eq!(n, request.len());
            let n = feed(&mut c, &b.s, &mut b.sink);
            assert_eq!(n, response.len());
        }
        let all = t0.elapsed();
        cells.push(key(&format!("small_server|{sname}")), ns(srv, z.small));
        cells.push(key(&format!("small_all|{sname}")), ns(all, z.small));
    }
}

fn usage() -> ! {
    eprintln!(
        "usage: tls_provider_bench [--rounds N] [--scale F]\n  \
         --rounds N  rounds, providers alternating order each round (default 21)\n  \
         --scale F   multiplies the per-round counts: 200 full and 400 resumed handshakes,\n              \
         1024 records of 16 KiB and 10,000 small round trips per suite (default 1)"
    );
    std::process::exit(2)
}

fn main() {
    let (mut rounds, mut scale) = (21usize, 1.0f64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--rounds" => rounds = val().parse().unwrap_or_else(|_| usage()),
            "--scale" => scale = val().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if rounds == 0 || !scale.is_finite() || scale <= 0.0 {
        usage();
    }
    let n = |base: f64| ((base * scale).round() as usize).max(1);
    let z = Sizes {
        full: n(200.0),
        resumed: n(400.0),
        records: n(1024.0),
        small: n(10_000.0),
    };

    let pki = make_pki();
    let mut cells = Cells::default();
    let mut notes = Vec::new();
    // Warm-up (not recorded): caches, lazy statics, CPU frequency.
    let warm = Sizes {
        full: 20,
        resumed: 20,
        records: 64,
        small: 500,
    };
    for v in &VARIANTS {
        round(v, &pki, &warm, &mut Cells::default(), &mut notes, true);
    }
    let started = Instant::now();
    for r in 0..rounds {
        let order: Vec<&Variant> = if r % 2 == 0 {
            VARIANTS.iter().collect()
        } else {
            VARIANTS.iter().rev().collect()
        };
        for v in order {
            round(v, &pki, &z, &mut cells, &mut notes, false);
        }
        eprintln!(
            "round {}/{rounds} done ({:.1} s)",
            r + 1,
            started.elapsed().as_secs_f64()
        );
    }

    report(&cells, &notes, rounds, &z);
}

fn report(cells: &Cells, notes: &[String], rounds: usize, z: &Sizes) {
    let (a, b, pq) = (VARIANTS[0].name, VARIANTS[1].name, VARIANTS[2].name);
    let cell = |variant: &str, row: &str| cells.get(&format!("{variant}|{row}"));
    // "median ±spread": the spread is half the interquartile range over rounds, relative to
    // the median.
    let fmt = |vals: Option<&[f64]>, div: f64, prec: usize| match vals {
        None => "—".to_string(),
        Some(v) => {
            let m = median(v);
            let iqr = quantile(v, 0.75) - quantile(v, 0.25);
            format!("{:.prec$} ±{:.0}%", m / div, iqr / 2.0 / m * 100.0)
        }
    };
    println!(
        "rustls 0.23 in memory, ECDSA P-256 leaf (rcgen), client offers X25519 only (last column: \
         X25519MLKEM768 only); {rounds} rounds alternating provider order, median of per-round \
         means (±: half the interquartile range over rounds). Per round: {} full, {} resumed handshakes; {} \
         records of 16 KiB and {} 200 B/300 B round trips per suite.",
        z.full, z.resumed, z.records, z.small
    );
    println!();
    println!("| measurement | {a} | {b} | {b} / {a} | {pq} |");
    println!("|---|---:|---:|---:|---:|");
    let row = |label: &str, key: &str, div: f64, prec: usize| {
        let (x, y) = (cell(a, key), cell(b, key));
        let ratio = match (x, y) {
            (Some(x), Some(y)) => format!("{:.2}", median(y) / median(x)),
            _ => "—".into(),
        };
        println!(
            "| {label} | {} | {} | {ratio} | {} |",
            fmt(x, div, prec),
            fmt(y, div, prec),
            fmt(cell(pq, key), div, prec)
        );
    };
    row(
        "server key exchange alone (keygen + agreement) µs",
        "kx_server",
        1e3,
        1,
    );
    row("ECDSA P-256 sign alone µs", "sign", 1e3, 1);
    row(
        "full TLS 1.3 handshake: server CPU µs",
        "full_server",
        1e3,
        1,
    );
    row("full TLS 1.3 handshake: both ends µs", "full_all", 1e3, 1);
    row(
        "resumed (ticket) handshake: server CPU µs",
        "resumed_server",
        1e3,
        1,
    );
    row(
        "resumed (ticket) handshake: both ends µs",
        "resumed_all",
        1e3,
        1,
    );
    for (_, s) in SUITES {
        row(
            &format!("{s} 16 KiB records: encrypt MB/s"),
            &format!("enc16k|{s}"),
            1.0,
            0,
        );
        row(
            &format!("{s} 16 KiB records: decrypt MB/s"),
            &format!("dec16k|{s}"),
            1.0,
            0,
        );
    }
    for (_, s) in SUITES {
        row(
            &format!("{s} 200 B in + 300 B out: server ns/request"),
            &format!("small_server|{s}"),
            1.0,
            0,
        );
        row(
            &format!("{s} 200 B in + 300 B out: both ends ns"),
            &format!("small_all|{s}"),
            1.0,
            0,
        );
    }
    println!();
    println!("Time rows: lower is better; MB/s rows: higher is better. Ratios are of the medians.");
    for n in notes {
        println!("- {n}");
    }
}

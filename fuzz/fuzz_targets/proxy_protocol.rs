//! The PROXY protocol header framing (`ringway::http::proxy_protocol::parse`, over the `ppp`
//! crate) on arbitrary bytes: no panic; the answer for every prefix agrees with the answer
//! for the whole (a header is incomplete until its last byte and unchanged by what follows;
//! an invalid start stays invalid, for the same reason); an incomplete input is shorter than
//! the longest header; and the answer matches a reference parser written here from HAProxy's
//! `proxy-protocol.txt` (v1 grammar and v2 layout, std's address parsers only).

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libfuzzer_sys::fuzz_target;
use ringway::http::proxy_protocol::{Invalid, Parsed, V1_MAX_BYTES, V2_MAX_BYTES, parse};

const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// What the reference parser says.
#[derive(Debug, PartialEq)]
enum Ref {
    Incomplete,
    Header(Option<SocketAddr>, usize),
    Invalid,
}

fn reference(d: &[u8]) -> Ref {
    match d.first() {
        None => Ref::Incomplete,
        Some(b'\r') => {
            let n = d.len().min(SIGNATURE.len());
            if d[..n] != SIGNATURE[..n] {
                Ref::Invalid
            } else {
                reference_v2(d)
            }
        }
        Some(_) => {
            let n = d.len().min(6);
            if d[..n] != b"PROXY "[..n] {
                Ref::Invalid
            } else {
                reference_v1(d)
            }
        }
    }
}

fn reference_v2(d: &[u8]) -> Ref {
    if d.len() < 16 {
        return Ref::Incomplete;
    }
    let (version, command) = (d[12] >> 4, d[12] & 0x0F);
    let (family, protocol) = (d[13] >> 4, d[13] & 0x0F);
    if version != 2 || command > 1 || family > 3 || protocol > 2 {
        return Ref::Invalid;
    }
    let len = u16::from_be_bytes([d[14], d[15]]) as usize;
    let addresses = [0, 12, 36, 216][family as usize];
    if len < addresses {
        return Ref::Invalid;
    }
    if d.len() < 16 + len {
        return Ref::Incomplete;
    }
    let a = &d[16..];
    let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
    let source = match (command, protocol, family) {
        (1, 1, 1) => Some(SocketAddr::V4(SocketAddrV4::new(
            Ipv4Addr::new(a[0], a[1], a[2], a[3]),
            port(8),
        ))),
        (1, 1, 2) => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&a[..16]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port(32),
                0,
                0,
            )))
        }
        _ => None,
    };
    if source.is_some() {
        // TLVs: type, 16-bit length, value; they must fill the rest exactly.
        let mut rest = &d[16 + addresses..16 + len];
        while !rest.is_empty() {
            if rest.len() < 3 {
                return Ref::Invalid;
            }
            let l = u16::from_be_bytes([rest[1], rest[2]]) as usize;
            if rest.len() < 3 + l {
                return Ref::Invalid;
            }
            rest = &rest[3 + l..];
        }
    }
    Ref::Header(source, 16 + len)
}

fn reference_v1(d: &[u8]) -> Ref {
    // The line: printable ASCII, then CRLF, 107 bytes at most in all.
    let mut end = None;
    for (i, &b) in d.iter().enumerate().take(V1_MAX_BYTES) {
        if b == b'\r' {
            end = Some(i);
            break;
        }
        if !(b' '..=b'~').contains(&b) {
            return Ref::Invalid;
        }
    }
    let Some(cr) = end else {
        return if d.len() >= V1_MAX_BYTES {
            Ref::Invalid
        } else {
            Ref::Incomplete
        };
    };
    if cr + 2 > V1_MAX_BYTES {
        return Ref::Invalid;
    }
    match d.get(cr + 1) {
        None => return Ref::Incomplete,
        Some(b'\n') => {}
        Some(_) => return Ref::Invalid,
    }
    let Ok(body) = std::str::from_utf8(&d[6..cr]) else {
        return Ref::Invalid;
    };
    let consumed = cr + 2;
    if body == "UNKNOWN" || body.starts_with("UNKNOWN ") {
        return Ref::Header(None, consumed);
    }
    let parts: Vec<&str> = body.split(' ').collect();
    let [proto, src, _dst, sport, dport] = parts[..] else {
        return Ref::Invalid;
    };
    let port = |p: &str| -> Option<u16> {
        let digits = p.bytes().all(|b| b.is_ascii_digit());
        let canonical = p == "0" || (!p.is_empty() && !p.starts_with('0') && p.len() <= 5);
        if digits && canonical {
            p.parse::<u32>().ok().and_then(|v| u16::try_from(v).ok())
        } else {
            None
        }
    };
    let (Some(sport), Some(_)) = (port(sport), port(dport)) else {
        return Ref::Invalid;
    };
    let dst = parts[2];
    let source = match proto {
        "TCP4" => match (src.parse::<Ipv4Addr>(), dst.parse::<Ipv4Addr>()) {
            (Ok(s), Ok(_)) => SocketAddr::V4(SocketAddrV4::new(s, sport)),
            _ => return Ref::Invalid,
        },
        "TCP6" => match (src.parse::<Ipv6Addr>(), dst.parse::<Ipv6Addr>()) {
            (Ok(s), Ok(_)) => SocketAddr::V6(SocketAddrV6::new(s, sport, 0, 0)),
            _ => return Ref::Invalid,
        },
        _ => return Ref::Invalid,
    };
    Ref::Header(Some(source), consumed)
}

/// Prefix lengths to check below `n`: all of them for short inputs, else a spread.
fn cuts(n: usize) -> impl Iterator<Item = usize> {
    let step = if n <= 512 { 1 } else { n / 256 };
    (0..n).step_by(step).chain(n.checked_sub(1))
}

fuzz_target!(|data: &[u8]| {
    let got = parse(data);
    match got {
        Ok(Parsed::Header { source, consumed }) => {
            assert!(consumed <= data.len());
            assert!(consumed >= 15, "the shortest header is PROXY UNKNOWN\\r\\n");
            assert!(consumed <= V2_MAX_BYTES);
            assert_eq!(parse(&data[..consumed]), got, "the header alone");
            for k in cuts(consumed) {
                assert_eq!(parse(&data[..k]), Ok(Parsed::Incomplete), "cut at {k}");
            }
            assert_eq!(reference(data), Ref::Header(source, consumed));
        }
        Ok(Parsed::Incomplete) => {
            assert!(data.len() < V2_MAX_BYTES);
            if data.first() != Some(&b'\r') {
                assert!(data.len() < V1_MAX_BYTES);
            }
            for k in cuts(data.len()) {
                assert_eq!(parse(&data[..k]), got, "cut at {k}");
            }
            assert_eq!(reference(data), Ref::Incomplete);
        }
        Err(e) => {
            for k in cuts(data.len()) {
                let p = parse(&data[..k]);
                assert!(
                    p == Ok(Parsed::Incomplete) || p == Err(e),
                    "cut at {k}: {p:?} before {e:?}"
                );
            }
            // The framing may see a bad version or family before the whole fixed part of a
            // v2 header is here; the reference waits for it.
            let r = reference(data);
            let early = e == Invalid::Malformed && data.len() < 16 && data[0] == b'\r';
            assert!(
                r == Ref::Invalid || (early && r == Ref::Incomplete),
                "{e:?} but the reference says {r:?}"
            );
        }
    }
});

//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary) that an
//! L4 load balancer sends first on each connection when `server.proxy_protocol` is on
//! (SPEC §9). [`parse`] takes the bytes read so far and says whether they hold a whole
//! header (and how many bytes it took), need more, or can never be one.
//!
//! The field parsing is the `ppp` crate's; this module frames it for a stream:
//!
//! - the first bytes choose the version (`\r\n\r\n\0\r\nQUIT\n` for v2, `PROXY ` for v1);
//!   anything else is [`Invalid::Missing`] at its first byte that cannot start a header;
//! - v1: the line is scanned as it arrives, so a byte that has no place in a v1 line (a
//!   control byte, a CR not followed by LF) fails at once; it ends at the first CRLF, at
//!   most [`V1_MAX_BYTES`] bytes in (else [`Invalid::TooLong`]), and only then goes to
//!   `ppp` (whose own guess at incompleteness is not used); an `UNKNOWN` line is taken
//!   here, whatever follows the word (the spec says to ignore it);
//! - v2: the 16-byte fixed part, then exactly the length it announces (at most
//!   [`V2_MAX_BYTES`] in all); a header that carries an address must frame its TLVs
//!   correctly (their values are not used).
//!
//! The answer for a prefix of the bytes never contradicts the answer for the whole: no
//! strict prefix of a header is complete or invalid, and bytes after a header do not change
//! it (`fuzz/fuzz_targets/proxy_protocol.rs` checks both, and checks both versions against a
//! reference parser of its own).

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use ppp::v2::ParseError;

/// The longest v1 header, CRLF included (the spec's limit).
pub const V1_MAX_BYTES: usize = 107;
/// The fixed part of a v2 header: signature, version and command, family and protocol,
/// length.
pub const V2_FIXED_BYTES: usize = 16;
/// The longest v2 header: the fixed part and a 16-bit length.
pub const V2_MAX_BYTES: usize = V2_FIXED_BYTES + u16::MAX as usize;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What the bytes read so far hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The start of a header: read more.
    Incomplete,
    /// A whole header, the first `consumed` bytes (what follows is the client's). `source`:
    /// the client's address, or `None` when the header carries none to use (v2 `LOCAL`, v1
    /// `UNKNOWN`, a v2 family or protocol other than TCP over IPv4/IPv6): the TCP peer then
    /// stands.
    Header {
        source: Option<SocketAddr>,
        consumed: usize,
    },
}

/// Why the bytes can never be a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// They start with neither signature (a client speaking HTTP or TLS straight away).
    Missing,
    /// A v1 line with no CRLF within [`V1_MAX_BYTES`].
    TooLong,
    /// A signature, then something a header cannot hold.
    Malformed,
}

impl Invalid {
    pub fn label(self) -> &'static str {
        match self {
            Invalid::Missing => "missing",
            Invalid::TooLong => "too_long",
            Invalid::Malformed => "malformed",
        }
    }
}

/// Parses the start of a connection's bytes; see the module docs.
pub fn parse(buf: &[u8]) -> Result<Parsed, Invalid> {
    let Some(&first) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    if first == V2_SIGNATURE[0] {
        let n = buf.len().min(V2_SIGNATURE.len());
        if buf[..n] != V2_SIGNATURE[..n] {
            return Err(Invalid::Missing);
        }
        return v2(buf);
    }
    let n = buf.len().min(V1_PREFIX.len());
    if buf[..n] != V1_PREFIX[..n] {
        return Err(Invalid::Missing);
    }
    v1(buf)
}

fn v1(buf: &[u8]) -> Result<Parsed, Invalid> {
    let window = &buf[..buf.len().min(V1_MAX_BYTES)];
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => return v1_line(&buf[..i + 2]),
                Some(_) => return Err(Invalid::Malformed),
                None if window.len() == V1_MAX_BYTES => return Err(Invalid::TooLong),
                None => return Ok(Parsed::Incomplete),
            },
            b' '..=b'~' => {}
            _ => return Err(Invalid::Malformed),
        }
    }
    if window.len() == V1_MAX_BYTES {
        Err(Invalid::TooLong)
    } else {
        Ok(Parsed::Incomplete)
    }
}

/// A whole v1 line, CRLF included, printable ASCII before it.
fn v1_line(line: &[u8]) -> Result<Parsed, Invalid> {
    // `UNKNOWN`: the rest of the line is to be ignored, whatever it holds (`ppp` takes at
    // most four more words).
    let body = &line[V1_PREFIX.len()..line.len() - 2];
    if body == b"UNKNOWN" || body.starts_with(b"UNKNOWN ") {
        return Ok(Parsed::Header {
            source: None,
            consumed: line.len(),
        });
    }
    // `ppp` reads ports with `u16::from_str`, which takes a leading `+`; the spec does not.
    if line.contains(&b'+') {
        return Err(Invalid::Malformed);
    }
    let header = ppp::v1::Header::try_from(line).map_err(|_| Invalid::Malformed)?;
    let source = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::V4(SocketAddrV4::new(
            a.source_address,
            a.source_port,
        ))),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::V6(SocketAddrV6::new(
            a.source_address,
            a.source_port,
            0,
            0,
        ))),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Parsed::Header {
        source,
        consumed: line.len(),
    })
}

fn v2(buf: &[u8]) -> Result<Parsed, Invalid> {
    if buf.len() < V2_FIXED_BYTES {
        // Checked as far as it goes, so that a bad version or family fails at once.
        let mut fixed = [0u8; V2_FIXED_BYTES];
        fixed[..buf.len()].copy_from_slice(buf);
        if buf.len() > 12 && (fixed[12] & 0xF0 != 0x20 || fixed[12] & 0x0F > 1) {
            return Err(Invalid::Malformed);
        }
        if buf.len() > 13 && (fixed[13] >> 4 > 3 || fixed[13] & 0x0F > 2) {
            return Err(Invalid::Malformed);
        }
        return Ok(Parsed::Incomplete);
    }
    let header = match ppp::v2::Header::try_from(buf) {
        Ok(h) => h,
        Err(ParseError::Incomplete(_) | ParseError::Partial(..)) => return Ok(Parsed::Incomplete),
        Err(_) => return Err(Invalid::Malformed),
    };
    let tcp =
        header.command == ppp::v2::Command::Proxy && header.protocol == ppp::v2::Protocol::Stream;
    let source = match header.addresses {
        ppp::v2::Addresses::IPv4(a) if tcp => Some(SocketAddr::V4(SocketAddrV4::new(
            a.source_address,
            a.source_port,
        ))),
        ppp::v2::Addresses::IPv6(a) if tcp => Some(SocketAddr::V6(SocketAddrV6::new(
            a.source_address,
            a.source_port,
            0,
            0,
        ))),
        _ => None,
    };
    if source.is_some() && header.tlvs().any(|t| t.is_err()) {
        return Err(Invalid::Malformed);
    }
    Ok(Parsed::Header {
        source,
        consumed: header.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMPLETE: Result<Parsed, Invalid> = Ok(Parsed::Incomplete);
    const MISSING: Result<Parsed, Invalid> = Err(Invalid::Missing);
    const MALFORMED: Result<Parsed, Invalid> = Err(Invalid::Malformed);

    fn header(source: Option<&str>, consumed: usize) -> Result<Parsed, Invalid> {
        Ok(Parsed::Header {
            source: source.map(|s| s.parse().unwrap()),
            consumed,
        })
    }

    /// A v2 header: version/command byte, family/protocol byte, the payload after the length.
    fn v2_bytes(ver_cmd: u8, fam: u8, payload: &[u8]) -> Vec<u8> {
        let mut b = V2_SIGNATURE.to_vec();
        b.push(ver_cmd);
        b.push(fam);
        b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    const V4_ADDRS: [u8; 12] = [192, 0, 2, 7, 10, 0, 0, 1, 0xC3, 0x50, 0x1F, 0x90];

    fn v6_addrs() -> Vec<u8> {
        let src: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut b = src.octets().to_vec();
        b.extend_from_slice(&dst.octets());
        b.extend_from_slice(&[0xC3, 0x50, 0x1F, 0x90]);
        b
    }

    #[test]
    fn v1_headers() {
        let tcp4 = "PROXY TCP4 192.0.2.7 10.0.0.1 50000 8080\r\n";
        let tcp6 = "PROXY TCP6 2001:db8::7 2001:db8::1 50000 8080\r\n";
        // The longest TCP line; the spec's 107 is this with `UNKNOWN` for `TCP6`.
        let longest = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX_BYTES - 3);
        let cases: &[(&str, Result<Parsed, Invalid>)] = &[
            (tcp4, header(Some("192.0.2.7:50000"), tcp4.len())),
            (tcp6, header(Some("[2001:db8::7]:50000"), tcp6.len())),
            (
                longest,
                header(
                    Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
                    longest.len(),
                ),
            ),
            ("PROXY UNKNOWN\r\n", header(None, 15)),
            ("PROXY UNKNOWN 192.0.2.7 10.0.0.1 1 2\r\n", header(None, 38)),
            ("PROXY UNKNOWN a b c d e f +1\r\n", header(None, 30)),
            ("PROXY UNKNOWNX\r\n", MALFORMED),
            (
                "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
                header(Some("0.0.0.0:0"), 32),
            ),
            // Not headers at all.
            ("GET / HTTP/1.1\r\n", MISSING),
            ("proxy TCP4", MISSING),
            ("\x16\x03\x01", MISSING),
            ("PROXYTCP4", MISSING),
            // Incomplete, at every stage.
            ("", INCOMPLETE),
            ("P", INCOMPLETE),
            ("PROXY", INCOMPLETE),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 50000 ", INCOMPLETE),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 50000 8080", INCOMPLETE),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 50000 8080\r", INCOMPLETE),
            // Malformed.
            ("PROXY TCP4 192.0.2.7 10.0.0.1 50000\r\n", MALFORMED),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 50000 8080\n", MALFORMED),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 50000 8080\rX", MALFORMED),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 50000 8080 \r\n", MALFORMED),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 050000 8080\r\n", MALFORMED),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 +5000 8080\r\n", MALFORMED),
            ("PROXY TCP4 192.0.2.7 10.0.0.1 65536 8080\r\n", MALFORMED),
            ("PROXY TCP4 192.0.2.07 10.0.0.1 5000 8080\r\n", MALFORMED),
            ("PROXY TCP4 2001:db8::7 10.0.0.1 5000 8080\r\n", MALFORMED),
            ("PROXY TCP6 192.0.2.7 10.0.0.1 5000 8080\r\n", MALFORMED),
            ("PROXY  TCP4 192.0.2.7 10.0.0.1 5000 8080\r\n", MALFORMED),
            ("PROXY tcp4 192.0.2.7 10.0.0.1 5000 8080\r\n", MALFORMED),
            ("PROXY UDP4 192.0.2.7 10.0.0.1 5000 8080\r\n", MALFORMED),
            ("PROXY TCP4 192.0.2.7\t10.0.0.1", MALFORMED),
            ("PROXY TCP4 19\x002.0.2.7", MALFORMED),
            ("PROXY \r\n", MALFORMED),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input.as_bytes()), *want, "{input:?}");
        }
    }

    #[test]
    fn v1_is_at_most_107_bytes() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_BYTES - 1, b'x');
        assert_eq!(parse(&line), Ok(Parsed::Incomplete), "106 bytes, no CR");
        line.push(b'\r');
        assert_eq!(
            parse(&line),
            Err(Invalid::TooLong),
            "the LF would be byte 108"
        );
        line.pop();
        line.extend_from_slice(b"x\r\n");
        assert_eq!(parse(&line), Err(Invalid::TooLong), "108 bytes");
        let mut fits = b"PROXY UNKNOWN ".to_vec();
        fits.resize(V1_MAX_BYTES - 2, b'x');
        fits.extend_from_slice(b"\r\nGET");
        assert_eq!(parse(&fits), header(None, V1_MAX_BYTES));
    }

    #[test]
    fn v2_headers() {
        let mut with_tlvs = V4_ADDRS.to_vec();
        with_tlvs.extend_from_slice(&[0x04, 0, 2, 0, 0]); // NOOP, 2 bytes
        with_tlvs.extend_from_slice(&[0xEA, 0, 3, 1, 2, 3]); // AWS, 3 bytes
        let mut bad_tlv = V4_ADDRS.to_vec();
        bad_tlv.extend_from_slice(&[0x04, 0, 9, 0]);
        let mut unix = vec![0u8; 216];
        unix[0] = b'/';
        let cases: Vec<(&str, Vec<u8>, Result<Parsed, Invalid>)> = vec![
            (
                "PROXY TCP4",
                v2_bytes(0x21, 0x11, &V4_ADDRS),
                header(Some("192.0.2.7:50000"), 28),
            ),
            (
                "PROXY TCP6",
                v2_bytes(0x21, 0x21, &v6_addrs()),
                header(Some("[2001:db8::7]:50000"), 52),
            ),
            (
                "TLVs",
                v2_bytes(0x21, 0x11, &with_tlvs),
                header(Some("192.0.2.7:50000"), 16 + with_tlvs.len()),
            ),
            ("LOCAL", v2_bytes(0x20, 0x00, &[]), header(None, 16)),
            (
                "LOCAL with addresses",
                v2_bytes(0x20, 0x11, &V4_ADDRS),
                header(None, 28),
            ),
            (
                "LOCAL with anything after",
                v2_bytes(0x20, 0x00, &[1, 2, 3]),
                header(None, 19),
            ),
            ("PROXY UNSPEC", v2_bytes(0x21, 0x00, &[]), header(None, 16)),
            (
                "PROXY UDP4",
                v2_bytes(0x21, 0x12, &V4_ADDRS),
                header(None, 28),
            ),
            ("PROXY UNIX", v2_bytes(0x21, 0x31, &unix), header(None, 232)),
            (
                "PROXY TCP4, broken TLV",
                v2_bytes(0x21, 0x11, &bad_tlv),
                MALFORMED,
            ),
            (
                "short addresses",
                v2_bytes(0x21, 0x11, &V4_ADDRS[..11]),
                MALFORMED,
            ),
            (
                "version 1 in binary",
                v2_bytes(0x11, 0x11, &V4_ADDRS),
                MALFORMED,
            ),
            ("command 2", v2_bytes(0x22, 0x11, &V4_ADDRS), MALFORMED),
            ("family 4", v2_bytes(0x21, 0x41, &V4_ADDRS), MALFORMED),
            ("protocol 3", v2_bytes(0x21, 0x13, &V4_ADDRS), MALFORMED),
            (
                "broken signature",
                b"\r\n\r\n\0\r\nQUIT\r".to_vec(),
                MISSING,
            ),
            ("a plain CRLF", b"\r\n".to_vec(), INCOMPLETE),
            (
                "version byte only",
                v2_bytes(0x21, 0x11, &V4_ADDRS)[..13].to_vec(),
                INCOMPLETE,
            ),
            (
                "a bad version fails before the rest",
                v2_bytes(0x31, 0x11, &V4_ADDRS)[..13].to_vec(),
                MALFORMED,
            ),
            (
                "a bad family fails before the rest",
                v2_bytes(0x21, 0x51, &V4_ADDRS)[..14].to_vec(),
                MALFORMED,
            ),
            (
                "the fixed part, no payload yet",
                v2_bytes(0x21, 0x11, &V4_ADDRS)[..16].to_vec(),
                INCOMPLETE,
            ),
            (
                "one byte short",
                v2_bytes(0x21, 0x11, &V4_ADDRS)[..27].to_vec(),
                INCOMPLETE,
            ),
        ];
        for (what, input, want) in cases {
            assert_eq!(parse(&input), want, "{what}");
        }
    }

    /// Bytes after the header are the client's and change nothing; every strict prefix of
    /// a header is incomplete.
    #[test]
    fn prefixes_are_incomplete_and_what_follows_is_left() {
        let headers = [
            b"PROXY TCP4 192.0.2.7 10.0.0.1 50000 8080\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2_bytes(0x21, 0x21, &v6_addrs()),
            v2_bytes(0x20, 0x00, &[]),
        ];
        for h in headers {
            let whole = parse(&h);
            let Ok(Parsed::Header { consumed, .. }) = whole else {
                panic!("{h:?}: {whole:?}");
            };
            assert_eq!(consumed, h.len());
            for k in 0..h.len() {
                assert_eq!(parse(&h[..k]), Ok(Parsed::Incomplete), "{h:?} cut at {k}");
            }
            for after in [
                &b"GET / HTTP/1.1\r\n"[..],
                b"\x16\x03\x01\x02\x00",
                b"\r\n\r\n",
            ] {
                let mut more = h.clone();
                more.extend_from_slice(after);
                assert_eq!(parse(&more), whole, "{h:?} then {after:?}");
            }
        }
    }

    #[test]
    fn the_longest_v2_header_is_read_whole() {
        let mut tlvs = V4_ADDRS.to_vec();
        let pad = u16::MAX as usize - tlvs.len() - 3;
        tlvs.extend_from_slice(&[0x04]);
        tlvs.extend_from_slice(&(pad as u16).to_be_bytes());
        tlvs.resize(u16::MAX as usize, 0);
        let h = v2_bytes(0x21, 0x11, &tlvs);
        assert_eq!(h.len(), V2_MAX_BYTES);
        assert_eq!(parse(&h), header(Some("192.0.2.7:50000"), V2_MAX_BYTES));
        assert_eq!(parse(&h[..V2_MAX_BYTES - 1]), Ok(Parsed::Incomplete));
    }
}

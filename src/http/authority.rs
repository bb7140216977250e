//! The syntax of a Host header and of an absolute-form target's authority (SPEC §6):
//! `uri-host [":" port]` of RFC 3986 §3.2.2-3.2.3, as RFC 9110 §7.2 and RFC 9112 §3.2 use it.
//!
//! [`check_host`] only judges the bytes (no copy, no allocation); what a host *means* for
//! routing (port stripped, lowercased) is `router::host`'s business. Accepted:
//!
//! - a reg-name: unreserved (`A-Z a-z 0-9 - . _ ~`), pct-encoded (`%` and two hex digits)
//!   and sub-delims (`! $ & ' ( ) * + , ; =`); an IPv4 address is a reg-name by syntax;
//! - an IPv6 literal in brackets, `[::1]`.
//!
//! Refused, each with its own message: userinfo (`u@h`), whitespace, any other byte, a bad
//! percent-encoding, a port that is not `*DIGIT` at most [`MAX_PORT`], an unclosed or invalid
//! bracket literal, an IPv6 address without brackets, a port without a host name (`:80`),
//! and two forms RFC 3986's grammar does not give HTTP a use for:
//!
//! - **IPv6 zone ids** (`[fe80::1%25eth0]`, RFC 6874): not part of RFC 3986's `IP-literal`,
//!   meaningful only on the client's own link, and never needed to reach a gateway.
//! - **IPvFuture** (`[v1.x]`): no such address family exists; no route could name one.
//!
//! Two RFC-valid forms are accepted on purpose:
//!
//! - **An empty port** (`h:`): RFC 3986 allows `port = *DIGIT` and says an empty port is the
//!   scheme's default; routing strips it as it strips any port.
//! - **An empty Host** (`Host:` with no value): RFC 9112 §3.2 requires exactly that of a
//!   client whose target URI has no authority. It reaches only services without `hosts`. An
//!   absolute-form authority, though, must name a host (RFC 9110 §4.2.1), which
//!   `router::target` enforces.

use std::net::Ipv6Addr;

/// Highest port number (RFC 3986 allows any digits; TCP ports are 16-bit).
pub const MAX_PORT: u32 = u16::MAX as u32;

/// Declares [`HostError`] and its two sets of messages: one for the Host header and one for
/// the authority of an absolute-form target, both `&'static str` (the 400 carries them).
macro_rules! host_errors {
    ($($(#[$doc:meta])* $variant:ident => $why:literal,)*) => {
        /// Why a Host (or an absolute-form authority) is not `uri-host[:port]`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum HostError {
            $($(#[$doc])* $variant,)*
        }

        impl HostError {
            /// The 400 message for a bad Host header.
            pub fn host_message(self) -> &'static str {
                match self {
                    $(HostError::$variant => concat!("bad Host (", $why, ")"),)*
                }
            }

            /// The 400 message for a bad authority in an absolute-form request target.
            pub fn authority_message(self) -> &'static str {
                match self {
                    $(HostError::$variant => {
                        concat!("bad authority in the request target (", $why, ")")
                    })*
                }
            }
        }
    };
}

host_errors! {
    /// `user@host`: RFC 9110 §4.2.4 forbids userinfo in http(s) URIs.
    Userinfo => "userinfo is not allowed",
    /// A space or a tab inside the value.
    Whitespace => "whitespace is not allowed",
    /// A byte that is neither unreserved, pct-encoded nor a sub-delim.
    BadChar => "a character not allowed in a host name",
    /// `%` not followed by two hex digits.
    BadPercent => "a bad percent-encoding",
    /// Not digits, or above [`MAX_PORT`].
    BadPort => "the port is not a number in 0-65535",
    /// `[` without `]`, not an IPv6 address inside, or bytes after `]` other than a port.
    BadIpLiteral => "a bad IPv6 literal",
    /// `[v1.x]`.
    IpvFuture => "IPvFuture literals are not supported",
    /// `[fe80::1%25eth0]`.
    ZoneId => "IPv6 zone ids are not supported",
    /// `::1` without brackets.
    UnbracketedIpv6 => "an IPv6 address must be in brackets",
    /// `:80`.
    PortWithoutName => "a port without a host name",
}

/// Checks `uri-host [":" port]`; an empty value is accepted (see the module docs).
pub fn check_host(value: &[u8]) -> Result<(), HostError> {
    if value.contains(&b'@') {
        return Err(HostError::Userinfo);
    }
    if value.iter().any(|&b| b == b' ' || b == b'\t') {
        return Err(HostError::Whitespace);
    }
    let port = if let Some(rest) = value.strip_prefix(b"[") {
        let close = rest
            .iter()
            .position(|&b| b == b']')
            .ok_or(HostError::BadIpLiteral)?;
        check_ip_literal(&rest[..close])?;
        match &rest[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return Err(HostError::BadIpLiteral),
        }
    } else {
        let (name, port) = match value.iter().position(|&b| b == b':') {
            Some(i) => (&value[..i], Some(&value[i + 1..])),
            None => (value, None),
        };
        if port.is_some_and(|p| p.contains(&b':')) {
            let v6 = std::str::from_utf8(value).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok());
            return Err(if v6 {
                HostError::UnbracketedIpv6
            } else {
                HostError::BadPort
            });
        }
        check_reg_name(name)?;
        if name.is_empty() && port.is_some() {
            return Err(HostError::PortWithoutName);
        }
        port
    };
    port.map_or(Ok(()), check_port)
}

/// The inside of `[...]`: an IPv6 address, nothing else.
fn check_ip_literal(inside: &[u8]) -> Result<(), HostError> {
    if let [b'v' | b'V', ..] = inside {
        return Err(HostError::IpvFuture);
    }
    let is_v6 = |b: &[u8]| std::str::from_utf8(b).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok());
    match inside.iter().position(|&b| b == b'%') {
        Some(i) if is_v6(&inside[..i]) => Err(HostError::ZoneId),
        Some(_) => Err(HostError::BadIpLiteral),
        None if is_v6(inside) => Ok(()),
        None => Err(HostError::BadIpLiteral),
    }
}

/// `*( unreserved / pct-encoded / sub-delims )`.
fn check_reg_name(name: &[u8]) -> Result<(), HostError> {
    let mut i = 0;
    while let Some(&b) = name.get(i) {
        if b == b'%' {
            match name.get(i + 1..i + 3) {
                Some([h, l]) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => i += 3,
                _ => return Err(HostError::BadPercent),
            }
            continue;
        }
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        let sub_delim = matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        );
        if !unreserved && !sub_delim {
            return Err(HostError::BadChar);
        }
        i += 1;
    }
    Ok(())
}

/// `*DIGIT`, at most [`MAX_PORT`]; empty is allowed (the scheme's default port).
fn check_port(port: &[u8]) -> Result<(), HostError> {
    let mut n: u32 = 0;
    for &b in port {
        if !b.is_ascii_digit() {
            return Err(HostError::BadPort);
        }
        n = n * 10 + u32::from(b - b'0');
        if n > MAX_PORT {
            return Err(HostError::BadPort);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        for ok in [
            "h",
            "api.example.com",
            "API.Example.COM.",
            "a.b-c_d~e",
            "%41",
            "a%2Eb%2e",
            "!$&'()*+,;=",
            "127.0.0.1",
            "999.1.1.1",
            "h:80",
            "h:0",
            "h:65535",
            "h:080",
            "h:00000000000000065535",
            "h:",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "[::1]:",
            "[2001:DB8::1]",
            "[::ffff:1.2.3.4]:443",
            "[1:2:3:4:5:6:7:8]",
            "",
        ] {
            assert_eq!(check_host(ok.as_bytes()), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn refused() {
        use HostError::*;
        let cases: &[(&[u8], HostError)] = &[
            (b"u@h", Userinfo),
            (b"u:p@h:80", Userinfo),
            (b"@h", Userinfo),
            (b"[::1]@h", Userinfo),
            (b"h h", Whitespace),
            (b"h\t", Whitespace),
            (b" h", Whitespace),
            (b"h :80", Whitespace),
            (b"h/x", BadChar),
            (b"h?", BadChar),
            (b"h#", BadChar),
            (b"h\"", BadChar),
            (b"h<>", BadChar),
            (b"h\\x", BadChar),
            (b"h{}", BadChar),
            (b"h]", BadChar),
            (b"h[", BadChar),
            (b"h\x01", BadChar),
            (b"h\x7f", BadChar),
            (b"h\xc3\xa9", BadChar),
            (b"h\xff", BadChar),
            (b"%", BadPercent),
            (b"%4", BadPercent),
            (b"%4g", BadPercent),
            (b"a%zz", BadPercent),
            (b"h:65536", BadPort),
            (b"h:99999999999", BadPort),
            (b"h:-1", BadPort),
            (b"h:+1", BadPort),
            (b"h:8a", BadPort),
            (b"h: 80", Whitespace),
            (b"h:80:90", BadPort),
            (b"a:b", BadPort),
            (b"[::1]:65536", BadPort),
            (b"[::1]:x", BadPort),
            (b"[::1", BadIpLiteral),
            (b"[", BadIpLiteral),
            (b"[]", BadIpLiteral),
            (b"[::1]x", BadIpLiteral),
            (b"[::1]]", BadIpLiteral),
            (b"[1.2.3.4]", BadIpLiteral),
            (b"[h]", BadIpLiteral),
            (b"[::g]", BadIpLiteral),
            (b"[1:2:3:4:5:6:7:8:9]", BadIpLiteral),
            (b"[zz%25eth0]", BadIpLiteral),
            (b"[v1.x]", IpvFuture),
            (b"[V7.a:b]", IpvFuture),
            (b"[fe80::1%25eth0]", ZoneId),
            (b"[fe80::1%eth0]:80", ZoneId),
            (b"::1", UnbracketedIpv6),
            (b"fe80::1", UnbracketedIpv6),
            (b"2001:db8::1:8080", UnbracketedIpv6),
            (b":80", PortWithoutName),
            (b":", PortWithoutName),
        ];
        for &(raw, want) in cases {
            assert_eq!(
                check_host(raw),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn messages_name_the_place() {
        assert_eq!(
            HostError::Userinfo.host_message(),
            "bad Host (userinfo is not allowed)"
        );
        assert_eq!(
            HostError::BadPort.authority_message(),
            "bad authority in the request target (the port is not a number in 0-65535)"
        );
    }
}

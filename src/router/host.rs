//! Host names: the `hosts` patterns of services and certificates, and request Host
//! normalisation (port stripped, lowercased, trailing dot dropped) without allocation.

/// Longest host name accepted (RFC 1035: 253, plus room for a trailing dot and IPv6 brackets).
pub const MAX_HOST_BYTES: usize = 256;

/// `api.example.com` or `*.example.com`. A wildcard stands for exactly one label, as in
/// certificates (RFC 6125 §6.4.3): `*.example.com` matches `a.example.com`, not
/// `a.b.example.com` nor `example.com`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(Box<str>),
    /// The part after `*.`.
    Wildcard(Box<str>),
}

impl HostPattern {
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let lower = raw.to_ascii_lowercase();
        let lower = lower.strip_suffix('.').unwrap_or(&lower);
        let (wild, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower),
        };
        let is_ip = !wild && (name.parse::<std::net::IpAddr>().is_ok() || is_bracketed_v6(name));
        if !is_ip && !valid_dns_name(name) {
            return Err(format!(
                "`{raw}` is not a host name (labels of letters, digits and `-`, optionally after `*.`)"
            ));
        }
        Ok(if wild {
            HostPattern::Wildcard(name.into())
        } else {
            HostPattern::Exact(name.into())
        })
    }

    /// Whether a normalised host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => **h == *host,
            HostPattern::Wildcard(suffix) => wildcard_key(host) == Some(&**suffix),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
        }
    }
}

fn is_bracketed_v6(s: &str) -> bool {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .is_some_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
}

fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() < MAX_HOST_BYTES - 2
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The suffix a one-label wildcard would have to name for `host` to match it.
pub fn wildcard_key(host: &str) -> Option<&str> {
    host.split_once('.')
        .map(|(_, rest)| rest)
        .filter(|r| !r.is_empty())
}

/// Strips the port, lowercases and drops a trailing dot, into `buf`. `None` if the host is
/// too long to be a real one.
pub fn normalize_host<'b>(raw: &str, buf: &'b mut [u8; MAX_HOST_BYTES]) -> Option<&'b str> {
    let name = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |i| &raw[..=i])
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.len() > MAX_HOST_BYTES {
        return None;
    }
    let out = &mut buf[..name.len()];
    out.copy_from_slice(name.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise() {
        let mut b = [0u8; MAX_HOST_BYTES];
        for (raw, want) in [
            ("Api.Example.COM:8080", "api.example.com"),
            ("api.example.com.", "api.example.com"),
            ("[::1]:443", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
            ("h", "h"),
            ("", ""),
        ] {
            assert_eq!(normalize_host(raw, &mut b), Some(want), "{raw}");
        }
        assert_eq!(normalize_host(&"a".repeat(300), &mut b), None);
    }

    #[test]
    fn patterns() {
        let w = HostPattern::parse("*.Example.com").unwrap();
        assert!(w.matches("a.example.com"));
        assert!(!w.matches("a.b.example.com"));
        assert!(!w.matches("example.com"));
        assert_eq!(w.to_string(), "*.example.com");
        assert!(HostPattern::parse("10.0.0.1").is_ok());
        assert!(HostPattern::parse("[::1]").is_ok());
        for bad in ["", "a..b", "*", "a.*.com", "-a.com", "a b", "http://x"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}

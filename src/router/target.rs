//! Request targets: origin-form / absolute-form parsing and dot-segment resolution.
//!
//! The data path and `ringway route` hand the raw request-target here first. The result is
//! the path that the route table matches and that is forwarded (SPEC §2.2): dot segments
//! resolved per RFC 3986 §5.2.4, percent-encoding left as sent, the query string split off.
//! Resolution writes into a caller-owned buffer only when the path has a dot segment, so a
//! connection that reuses its buffer allocates nothing here.
//!
//! On the data path the head parser has already refused any byte outside visible ASCII
//! (`http::head::TARGET_BYTES`); `ringway route` and the fuzz targets come here directly, so
//! the same bytes are refused here too, with the same message. An absolute-form authority
//! obeys the Host rules of `http::authority` and must name a host (RFC 9110 §4.2.1).

use crate::http::authority::{HostError, check_host};
use crate::http::head::{BAD_TARGET_BYTE, TARGET_BYTES};

/// Why a request target is refused (all are 400s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Neither `/path` nor `http(s)://authority/path` (authority-form, asterisk-form, …).
    NotOriginOrAbsolute,
    /// A byte that may not appear in a request target (outside visible ASCII, or `#`).
    BadByte,
    /// An absolute-form authority that is not `uri-host[:port]` (or names no host).
    BadAuthority(HostError),
    /// `..` segments climb above `/`.
    AboveRoot,
}

impl TargetError {
    pub fn message(self) -> &'static str {
        match self {
            TargetError::NotOriginOrAbsolute => {
                "request target must be origin-form (/path) or absolute-form (http://host/path)"
            }
            TargetError::BadByte => BAD_TARGET_BYTE,
            TargetError::BadAuthority(e) => e.authority_message(),
            TargetError::AboveRoot => "request path climbs above /",
        }
    }
}

/// A split request target. `path` still holds its dot segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The authority of an absolute-form target; it replaces the Host header (RFC 9112 §3.2.2).
    pub authority: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
}

pub fn parse_target(raw: &str) -> Result<Target<'_>, TargetError> {
    if raw.bytes().any(|b| !TARGET_BYTES.contains(&b) || b == b'#') {
        return Err(TargetError::BadByte);
    }
    let (authority, rest) = if raw.starts_with('/') {
        (None, raw)
    } else {
        // Compare bytes: slicing the str could split a multi-byte character.
        let lower_scheme = |s: &str| {
            raw.as_bytes()
                .get(..s.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(s.as_bytes()))
        };
        let after = if lower_scheme("http://") {
            &raw[7..]
        } else if lower_scheme("https://") {
            &raw[8..]
        } else {
            return Err(TargetError::NotOriginOrAbsolute);
        };
        let end = after.find(['/', '?']).unwrap_or(after.len());
        if end == 0 {
            return Err(TargetError::NotOriginOrAbsolute);
        }
        let authority = &after[..end];
        check_host(authority.as_bytes()).map_err(TargetError::BadAuthority)?;
        (Some(authority), &after[end..])
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok(Target {
        authority,
        path,
        query,
    })
}

/// Resolves `.` and `..` segments of an absolute path. Returns `path` itself when it has
/// none (the common case), else the resolved path written into `buf`.
pub fn resolve_dot_segments<'a>(
    path: &'a str,
    buf: &'a mut String,
) -> Result<&'a str, TargetError> {
    if !has_dot_segment(path) {
        return Ok(path);
    }
    buf.clear();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "." => {}
            ".." => {
                if buf.is_empty() {
                    return Err(TargetError::AboveRoot);
                }
                let cut = buf.rfind('/').unwrap_or(0);
                buf.truncate(cut);
            }
            _ => {
                buf.push('/');
                buf.push_str(seg);
                continue;
            }
        }
        if last {
            buf.push('/');
        }
    }
    if buf.is_empty() {
        buf.push('/');
    }
    Ok(buf.as_str())
}

fn has_dot_segment(path: &str) -> bool {
    let b = path.as_bytes();
    let mut i = 0;
    while let Some(off) = memchr_dot_after_slash(&b[i..]) {
        let dot = i + off + 1; // index of the '.'
        let rest = &b[dot..];
        let seg_end = rest.iter().position(|&c| c == b'/').unwrap_or(rest.len());
        if seg_end == 1 || (seg_end == 2 && rest[1] == b'.') {
            return true;
        }
        i = dot;
    }
    false
}

/// Offset of a `/` immediately followed by `.`.
fn memchr_dot_after_slash(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"/.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_target("/a/b?x=1&y").unwrap();
        assert_eq!(
            (t.authority, t.path, t.query),
            (None, "/a/b", Some("x=1&y"))
        );
        let t = parse_target("http://Api.Example.com:8080/a?q").unwrap();
        assert_eq!(
            (t.authority, t.path, t.query),
            (Some("Api.Example.com:8080"), "/a", Some("q"))
        );
        let t = parse_target("HTTPS://h?q").unwrap();
        assert_eq!((t.authority, t.path, t.query), (Some("h"), "/", Some("q")));
        for bad in [
            "*",
            "example.com:443",
            "ftp://h/",
            "http:///x",
            "http://?q",
            "a/b",
            "",
        ] {
            assert_eq!(
                parse_target(bad),
                Err(TargetError::NotOriginOrAbsolute),
                "{bad}"
            );
        }
        // Non-ASCII around the scheme's length (found by fuzzing: a char-boundary panic) is
        // now refused before the scheme is looked at.
        for bad in [
            "/a b",
            "/a#f",
            "/a\u{7f}",
            "/\t",
            "/\u{0}",
            "/é",
            "/a?q=é",
            "http://h/é",
            "http://hé/",
            "aaaaaaé",
            "httpsé",
            "A\u{3bfff}\u{ffff}",
        ] {
            assert_eq!(parse_target(bad), Err(TargetError::BadByte), "{bad}");
            assert_eq!(
                TargetError::BadByte.message(),
                "request target contains a forbidden character"
            );
        }
    }

    /// An absolute-form authority obeys the Host rules (`http::authority` has the full
    /// table); this checks they are applied, and the message says where.
    #[test]
    fn absolute_form_authority() {
        for (raw, authority) in [
            ("http://[::1]:8080/a", "[::1]:8080"),
            ("http://a.b-c_d~e/", "a.b-c_d~e"),
            ("http://%41?q", "%41"),
            ("http://h:/", "h:"),
            ("https://h:65535/", "h:65535"),
            ("http://10.0.0.1:80/", "10.0.0.1:80"),
        ] {
            assert_eq!(
                parse_target(raw).map(|t| t.authority),
                Ok(Some(authority)),
                "{raw}"
            );
        }
        use HostError::*;
        for (raw, why) in [
            ("http://u@h/", Userinfo),
            ("http://u:p@h:80/", Userinfo),
            ("http://h:65536/", BadPort),
            ("http://h:-1/", BadPort),
            ("http://[::1/", BadIpLiteral),
            ("http://::1/", UnbracketedIpv6),
            ("http://[fe80::1%25eth0]/", ZoneId),
            ("http://[v1.x]/", IpvFuture),
            ("http://:80/", PortWithoutName),
            ("http://h\"/", BadChar),
            ("http://%zz/", BadPercent),
        ] {
            assert_eq!(
                parse_target(raw),
                Err(TargetError::BadAuthority(why)),
                "{raw}"
            );
        }
        assert_eq!(
            TargetError::BadAuthority(Userinfo).message(),
            "bad authority in the request target (userinfo is not allowed)"
        );
    }

    #[test]
    fn dot_segments() {
        let cases = [
            ("/a/b/c", Ok("/a/b/c")),
            ("/a/./b", Ok("/a/b")),
            ("/a/../b", Ok("/b")),
            ("/a/b/..", Ok("/a/")),
            ("/a/b/.", Ok("/a/b/")),
            ("/a//../b", Ok("/a/b")),
            ("/.", Ok("/")),
            ("/a/..", Ok("/")),
            ("/./../", Err(TargetError::AboveRoot)),
            ("/..", Err(TargetError::AboveRoot)),
            ("/a/../../b", Err(TargetError::AboveRoot)),
            ("/.hidden/..x/...", Ok("/.hidden/..x/...")),
            ("/a/%2e%2e/b", Ok("/a/%2e%2e/b")),
            ("/a/.b/./c/", Ok("/a/.b/c/")),
            ("//..", Ok("/")),
        ];
        for (input, want) in cases {
            let mut buf = String::new();
            assert_eq!(resolve_dot_segments(input, &mut buf), want, "{input}");
        }
    }
}

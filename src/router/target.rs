//! Request targets: origin-form / absolute-form parsing and dot-segment resolution.
//!
//! The data path and `ringway route` hand the raw request-target here first. The result is
//! the path that the route table matches and that is forwarded (SPEC §2.2), the query string
//! split off and never touched. [`normalize_path`] applies `server.path_normalization`:
//! `Safe` decodes percent-encoded unreserved characters (RFC 3986 §2.3, §6.2.2.2) and refuses
//! `\`, `%2F` and `%5C`, then resolves dot segments (RFC 3986 §5.2.4); `None` only resolves
//! dot segments ([`resolve_dot_segments`]). Any other percent-encoding is left as sent, hex
//! case included. Both write into a caller-owned buffer only when the path changes, so a
//! connection that reuses its buffer allocates nothing here.
//!
//! On the data path the head parser has already refused any byte outside visible ASCII
//! (`http::head::TARGET_BYTES`); `ringway route` and the fuzz targets come here directly, so
//! the same bytes are refused here too, with the same message. An absolute-form authority
//! obeys the Host rules of `http::authority` and must name a host (RFC 9110 §4.2.1).

use crate::config::PathNormalization;
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
    /// A `\`, `%2F` or `%5C` in the path (`path_normalization = "safe"`): a backend that
    /// decodes or folds it would see other segments than the ones routed.
    EncodedSlash,
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
            TargetError::EncodedSlash => "request path contains an encoded slash or a backslash",
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

/// The authority of an absolute-form request-target as sent (`http://a.test:8080/x` gives
/// `a.test:8080`), `None` for origin-form: the Host the request is forwarded with (RFC 9112
/// §3.2.2). Meant for a target [`parse_target`] accepted; it gives the same authority.
pub fn absolute_authority(raw: &[u8]) -> Option<&[u8]> {
    let after = [&b"http://"[..], b"https://"]
        .into_iter()
        .find_map(|scheme| {
            raw.get(..scheme.len())
                .filter(|s| s.eq_ignore_ascii_case(scheme))
                .map(|_| &raw[scheme.len()..])
        })?;
    let end = after
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(after.len());
    Some(&after[..end])
}

/// The path that is routed and forwarded, by `server.path_normalization` (see the module
/// docs). Returns `path` itself when it needs no change (the common case), else the
/// normalized path written into `buf`.
pub fn normalize_path<'a>(
    path: &'a str,
    mode: PathNormalization,
    buf: &'a mut String,
) -> Result<&'a str, TargetError> {
    match mode {
        PathNormalization::None => resolve_dot_segments(path, buf),
        PathNormalization::Safe => {
            if check_escapes(path)? {
                resolve_into(path, buf, true)
            } else {
                resolve_dot_segments(path, buf)
            }
        }
    }
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
    resolve_into(path, buf, false)
}

/// Writes `path` into `buf` segment by segment, each decoded first when `decode`, and drops
/// the `.` and `..` segments as RFC 3986 §5.2.4 does. A decoded segment is judged as a dot
/// segment by what it decodes to (`%2e%2E` is `..`).
fn resolve_into<'a>(path: &str, buf: &'a mut String, decode: bool) -> Result<&'a str, TargetError> {
    buf.clear();
    let mut segments = path.strip_prefix('/').unwrap_or(path).split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        let start = buf.len();
        buf.push('/');
        if decode {
            decode_unreserved_into(seg, buf);
        } else {
            buf.push_str(seg);
        }
        match &buf[start + 1..] {
            "." => buf.truncate(start),
            ".." => {
                buf.truncate(start);
                if buf.is_empty() {
                    return Err(TargetError::AboveRoot);
                }
                let cut = buf.rfind('/').unwrap_or(0);
                buf.truncate(cut);
            }
            _ => continue,
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

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The byte a `%XY` at the start of `b` encodes, if `b` starts with one.
fn escape_at(b: &[u8]) -> Option<u8> {
    match b {
        [b'%', hi, lo, ..] if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
            let v = |c: u8| (c as char).to_digit(16).unwrap_or_default() as u8;
            Some(v(*hi) << 4 | v(*lo))
        }
        _ => None,
    }
}

/// Refuses a `\` and an encoded `/` or `\` in `path`; says whether some escape encodes an
/// unreserved character (the path must be decoded).
fn check_escapes(path: &str) -> Result<bool, TargetError> {
    let b = path.as_bytes();
    let mut decodes = false;
    for (i, &c) in b.iter().enumerate() {
        if c == b'\\' {
            return Err(TargetError::EncodedSlash);
        }
        if c == b'%' {
            match escape_at(&b[i..]) {
                Some(b'/' | b'\\') => return Err(TargetError::EncodedSlash),
                Some(v) => decodes |= is_unreserved(v),
                None => {}
            }
        }
    }
    Ok(decodes)
}

/// Appends `seg` with its escapes of unreserved characters decoded, every other byte as
/// sent. Decoding is one pass (`%252e` stays `%252e`), and a decoded hex digit that would
/// complete a new escape with a stray `%` before it (`%%32e`, `%2%65`) stays encoded, so
/// the result never holds an escape that the request did not.
fn decode_unreserved_into(seg: &str, buf: &mut String) {
    let b = seg.as_bytes();
    let (mut copied, mut i) = (0, 0);
    while let Some(off) = seg[i..].find('%') {
        let at = i + off;
        i = at + 1;
        let Some(v) = escape_at(&b[at..]).filter(|&v| is_unreserved(v)) else {
            continue;
        };
        buf.push_str(&seg[copied..at]);
        let completes = match buf.as_bytes() {
            [.., b'%'] => true,
            [.., b'%', h] => h.is_ascii_hexdigit(),
            _ => false,
        };
        if v.is_ascii_hexdigit() && completes {
            buf.push_str(&seg[at..at + 3]);
        } else {
            buf.push(v as char);
        }
        i = at + 3;
        copied = i;
    }
    buf.push_str(&seg[copied..]);
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
        // The data path's forwarder finds the same authority in the raw bytes.
        for raw in [
            "/a/b?x=1",
            "http://h",
            "HTTP://Api.Example.com:8080/a?q",
            "https://[::1]:8080?q/x",
            "hTtPs://a.test/x/http://b/",
        ] {
            let t = parse_target(raw).unwrap();
            assert_eq!(
                absolute_authority(raw.as_bytes()),
                t.authority.map(str::as_bytes),
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
            let mut buf = String::new();
            assert_eq!(
                normalize_path(input, PathNormalization::None, &mut buf),
                want,
                "none: {input}"
            );
        }
    }

    /// `path_normalization`: the traversal corpus, each path under "safe" and under "none".
    #[test]
    fn normalization() {
        use TargetError::{AboveRoot, EncodedSlash};
        type Want = Result<&'static str, TargetError>;
        let cases: [(&str, Want, Want); 41] = [
            // (path, safe, none)
            ("/a/b", Ok("/a/b"), Ok("/a/b")),
            ("/", Ok("/"), Ok("/")),
            ("/raw/%2e%2e/admin", Ok("/admin"), Ok("/raw/%2e%2e/admin")),
            (
                "/raw/%2e%2e/%2e%2e/admin",
                Err(AboveRoot),
                Ok("/raw/%2e%2e/%2e%2e/admin"),
            ),
            (
                "/raw%2f..%2fadmin",
                Err(EncodedSlash),
                Ok("/raw%2f..%2fadmin"),
            ),
            (
                "/raw%2F..%2Fadmin",
                Err(EncodedSlash),
                Ok("/raw%2F..%2Fadmin"),
            ),
            (
                "/raw/..\\..\\admin",
                Err(EncodedSlash),
                Ok("/raw/..\\..\\admin"),
            ),
            (
                "/raw/..%5c..%5cadmin",
                Err(EncodedSlash),
                Ok("/raw/..%5c..%5cadmin"),
            ),
            ("/raw/..%5C", Err(EncodedSlash), Ok("/raw/..%5C")),
            ("/a\\b", Err(EncodedSlash), Ok("/a\\b")),
            ("/a/..%2f", Err(EncodedSlash), Ok("/a/..%2f")),
            ("/a/%2E%2E/b", Ok("/b"), Ok("/a/%2E%2E/b")),
            ("/a/%2e%2E/b", Ok("/b"), Ok("/a/%2e%2E/b")),
            ("/a/.%2e/b", Ok("/b"), Ok("/a/.%2e/b")),
            ("/a/%2e./b", Ok("/b"), Ok("/a/%2e./b")),
            ("/a/./b", Ok("/a/b"), Ok("/a/b")),
            ("/a/%2e/b", Ok("/a/b"), Ok("/a/%2e/b")),
            ("/a/b/%2e%2e", Ok("/a/"), Ok("/a/b/%2e%2e")),
            ("/a/b/%2e", Ok("/a/b/"), Ok("/a/b/%2e")),
            ("/a/%2e%2e", Ok("/"), Ok("/a/%2e%2e")),
            ("/%2e%2e/x", Err(AboveRoot), Ok("/%2e%2e/x")),
            ("/a%2e%2e/b", Ok("/a../b"), Ok("/a%2e%2e/b")),
            ("/x/%2e%2e%2e", Ok("/x/..."), Ok("/x/%2e%2e%2e")),
            (
                "/%41%42c/%7euser/%2D%5f",
                Ok("/ABc/~user/-_"),
                Ok("/%41%42c/%7euser/%2D%5f"),
            ),
            ("/user/4%32", Ok("/user/42"), Ok("/user/4%32")),
            // Double encoding is decoded once only.
            (
                "/a/%252e%252e/b",
                Ok("/a/%252e%252e/b"),
                Ok("/a/%252e%252e/b"),
            ),
            ("/a/%25%32%65", Ok("/a/%252e"), Ok("/a/%25%32%65")),
            // Reserved and non-ASCII escapes stay as sent, hex case included.
            (
                "/caf%C3%A9/%c3%a9",
                Ok("/caf%C3%A9/%c3%a9"),
                Ok("/caf%C3%A9/%c3%a9"),
            ),
            ("/a%3a%41%20b", Ok("/a%3aA%20b"), Ok("/a%3a%41%20b")),
            ("/a%3F%23", Ok("/a%3F%23"), Ok("/a%3F%23")),
            // A stray `%` stays, and never gains a decoded hex digit that would make it an
            // escape the request did not have.
            ("/100%", Ok("/100%"), Ok("/100%")),
            ("/%zz/%", Ok("/%zz/%"), Ok("/%zz/%")),
            ("/%%32e", Ok("/%%32e"), Ok("/%%32e")),
            ("/%%32%65", Ok("/%%32e"), Ok("/%%32%65")),
            ("/%2%65", Ok("/%2%65"), Ok("/%2%65")),
            ("/%%67/%%41", Ok("/%g/%%41"), Ok("/%%67/%%41")),
            ("/a%/%41", Ok("/a%/A"), Ok("/a%/%41")),
            ("/%4%31%2e%2e", Ok("/%4%31.."), Ok("/%4%31%2e%2e")),
            // Segment parameters are not dot segments (RFC 3986 §3.3).
            ("/a/%2e%2e;x/b", Ok("/a/..;x/b"), Ok("/a/%2e%2e;x/b")),
            ("/a/b/%2E%2e/../c", Ok("/c"), Ok("/a/b/c")),
            ("//%2e%2e", Ok("/"), Ok("//%2e%2e")),
        ];
        for (input, safe, none) in cases {
            let mut buf = String::from("stale");
            let got = normalize_path(input, PathNormalization::Safe, &mut buf);
            assert_eq!(got, safe, "safe: {input}");
            if let Ok(once) = got {
                let mut again = String::new();
                assert_eq!(
                    normalize_path(once, PathNormalization::Safe, &mut again),
                    Ok(once),
                    "safe is idempotent: {input}"
                );
            }
            let mut buf = String::from("stale");
            assert_eq!(
                normalize_path(input, PathNormalization::None, &mut buf),
                none,
                "none: {input}"
            );
        }
        assert_eq!(
            EncodedSlash.message(),
            "request path contains an encoded slash or a backslash"
        );
    }

    /// A path that needs no change is returned as it is: the buffer is not written.
    #[test]
    fn unchanged_paths_are_not_copied() {
        for input in ["/a/b", "/caf%C3%A9", "/a/%252e", "/100%", "/a%2fb"] {
            for mode in [PathNormalization::Safe, PathNormalization::None] {
                let mut buf = String::new();
                if let Ok(p) = normalize_path(input, mode, &mut buf) {
                    assert!(std::ptr::eq(p, input), "{mode:?} {input}");
                }
                assert!(buf.is_empty(), "{mode:?} {input}");
            }
        }
    }
}

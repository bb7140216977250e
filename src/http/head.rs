//! HTTP/1.1 request heads: httparse plus the strictness of an edge proxy (SPEC §1 limits, §6).
//!
//! [`parse_head`] looks at the bytes read so far and either asks for more, or fills a
//! caller-owned [`RequestHead`] with *offsets* into the buffer (nothing is copied; the header
//! list is reused between requests), or refuses the request with the status of SPEC §6.
//! Everything that could let a request be read two ways by two parties is refused before
//! any byte reaches a backend: Content-Length with Transfer-Encoding, bad or repeated
//! Content-Length, a Transfer-Encoding whose last coding is not `chunked`, bare CR or LF,
//! obs-fold, whitespace before a colon, a missing or repeated Host on HTTP/1.1, a Host that
//! is not `uri-host[:port]` ([`super::authority`]), a request-target with a byte outside
//! visible ASCII, and control bytes in values.

use std::ops::RangeInclusive;

use super::authority::check_host;
use super::limits::Limits;
use crate::error::{ErrorKind, GatewayError};

/// Most headers a request may have, whatever `max_headers` says; bounds the stack array
/// handed to httparse.
pub const MAX_HEADERS_CAP: usize = 256;
/// Room for `METHOD ` and ` HTTP/1.1\r\n` around the target when judging a partial line.
const REQUEST_LINE_OVERHEAD: usize = 64;
/// The bytes a request-target may hold (SPEC §6): visible ASCII, `!` to `~`. No control
/// byte, space, DEL, nor any byte of 0x80 and above (httparse lets UTF-8 through).
pub const TARGET_BYTES: RangeInclusive<u8> = 0x21..=0x7e;
/// The 400 message for a target byte outside [`TARGET_BYTES`]; `router::target` gives the
/// same one for a `#`.
pub const BAD_TARGET_BYTE: &str = "request target contains a forbidden character";

/// A byte range of the read buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The range of `part`, which must be a subslice of `buf`.
    pub(crate) fn of(buf: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - buf.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    pub fn get<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// The values of every header named `name` (ASCII case-insensitive), in order; `headers`
/// are `(name, value)` spans into `buf`, as request and response heads keep them.
pub fn header_values<'b, 'n>(
    headers: &'b [(Span, Span)],
    buf: &'b [u8],
    name: &'n [u8],
) -> impl Iterator<Item = &'b [u8]> + use<'b, 'n> {
    headers
        .iter()
        .filter(move |(n, _)| n.get(buf).eq_ignore_ascii_case(name))
        .map(move |(_, v)| v.get(buf))
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
}

/// One parsed request head; reused from request to request on a connection.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    pub method: Span,
    pub target: Span,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// `(name, value)`; values without surrounding whitespace.
    pub headers: Vec<(Span, Span)>,
    /// Bytes of the head, including the blank line; the body starts here.
    pub len: usize,
    pub body: BodyFraming,
    pub host: Option<Span>,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Connection: upgrade` with an `Upgrade` header.
    pub upgrade: bool,
    pub expect_continue: bool,
}

/// Whether the head is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// `head` is filled; the head is `head.len` bytes.
    Complete,
    /// Read more (the limits are not exceeded yet).
    Partial,
}

/// The 400 message for a header named like a framing header with `_` for `-`.
pub const FRAMING_LOOKALIKE: &str =
    "header name is Content-Length or Transfer-Encoding with '_' for '-'";

/// `Content_Length`, `Transfer_Encoding` (any case, any mix of `_` and `-`, at least one
/// `_`): a backend that folds `_` into `-` (as CGI-style servers do) would frame the body by
/// a header the gateway did not, a request-smuggling vector (the `underjoin` payloads of
/// the smuggler scanner). nginx drops such names by default (`underscores_in_headers off`);
/// ringway refuses the request.
fn framing_lookalike(name: &[u8]) -> bool {
    fn same(name: &[u8], want: &[u8]) -> bool {
        name.len() == want.len()
            && name.iter().zip(want).all(|(&a, &b)| {
                let a = if a == b'_' {
                    b'-'
                } else {
                    a.to_ascii_lowercase()
                };
                a == b
            })
    }
    (name.len() == 14 || name.len() == 17)
        && name.contains(&b'_')
        && (same(name, b"content-length") || same(name, b"transfer-encoding"))
}

fn bad(why: &'static str) -> GatewayError {
    GatewayError::new(ErrorKind::BadRequest(why))
}

/// Parses the head at the start of `buf` into `head`.
pub fn parse_head(
    buf: &[u8],
    limits: &Limits,
    head: &mut RequestHead,
) -> Result<Progress, GatewayError> {
    // Left uninitialised: httparse writes only the slots it fills (no 8 KiB memset per head).
    let mut slots =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP + 1];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial(buf, limits),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(GatewayError::new(ErrorKind::HeadTooLarge));
        }
        Err(e) => return Err(bad(request_line_message(buf, e))),
    };
    if len > limits.max_header_bytes {
        return Err(GatewayError::new(ErrorKind::HeadTooLarge));
    }
    check_line_ends(&buf[..len])?;
    let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
        return Err(bad("incomplete request line"));
    };
    if path.len() > limits.max_uri_bytes {
        return Err(GatewayError::new(ErrorKind::UriTooLong));
    }
    if !path.bytes().all(|b| TARGET_BYTES.contains(&b)) {
        return Err(bad(BAD_TARGET_BYTE));
    }
    if req.headers.len() > limits.max_headers {
        return Err(GatewayError::new(ErrorKind::HeadTooLarge));
    }
    *head = RequestHead {
        method: Span::of(buf, method.as_bytes()),
        target: Span::of(buf, path.as_bytes()),
        minor_version: version,
        headers: std::mem::take(&mut head.headers),
        len,
        ..RequestHead::default()
    };
    head.headers.clear();
    let mut content_length = None;
    let mut te = TransferCodings::default();
    let (mut close, mut keep_alive_token, mut upgrade_token, mut upgrade_header) =
        (false, false, false, false);
    for h in req.headers.iter() {
        head.headers
            .push((Span::of(buf, h.name.as_bytes()), Span::of(buf, h.value)));
        let name = h.name.as_bytes();
        let value = h.value;
        if name.eq_ignore_ascii_case(b"content-length") {
            if content_length.is_some() {
                return Err(bad("duplicate Content-Length"));
            }
            content_length = Some(parse_content_length(value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Several headers form one list; only the last coding decides.
            te.add(value)?;
        } else if name.eq_ignore_ascii_case(b"host") {
            if head.host.is_some() {
                return Err(bad("duplicate Host"));
            }
            check_host(value).map_err(|e| bad(e.host_message()))?;
            head.host = Some(Span::of(buf, value));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                upgrade_token |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade_header = true;
        } else if name.eq_ignore_ascii_case(b"expect") {
            head.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
        } else if framing_lookalike(name) {
            return Err(bad(FRAMING_LOOKALIKE));
        }
    }
    let chunked = te.seen.then_some(te.last_chunked && te.chunked == 1);
    head.body = match (content_length, chunked) {
        (Some(_), Some(_)) => return Err(bad("both Content-Length and Transfer-Encoding")),
        (_, Some(_)) if version == 0 => {
            return Err(bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        (_, Some(false)) => return Err(bad("Transfer-Encoding must end with chunked")),
        (_, Some(true)) => BodyFraming::Chunked,
        (Some(0), None) | (None, None) => BodyFraming::None,
        (Some(n), None) => BodyFraming::Length(n),
    };
    if let BodyFraming::Length(n) = head.body
        && n > limits.max_body_bytes
    {
        return Err(GatewayError::new(ErrorKind::BodyTooLarge));
    }
    if version == 1 && head.host.is_none() {
        return Err(bad("missing Host"));
    }
    head.keep_alive = !close && (version == 1 || keep_alive_token);
    head.upgrade = upgrade_token && upgrade_header;
    Ok(Progress::Complete)
}

/// A head still incomplete: refuse it now if it can no longer fit the limits.
fn partial(buf: &[u8], limits: &Limits) -> Result<Progress, GatewayError> {
    let line_done = buf.contains(&b'\n');
    if !line_done && buf.len() > limits.max_uri_bytes + REQUEST_LINE_OVERHEAD {
        return Err(GatewayError::new(ErrorKind::UriTooLong));
    }
    if buf.len() >= limits.max_header_bytes {
        return Err(GatewayError::new(ErrorKind::HeadTooLarge));
    }
    Ok(Progress::Partial)
}

/// Every line of the head must end in CRLF: httparse also takes a bare LF.
fn check_line_ends(head: &[u8]) -> Result<(), GatewayError> {
    let mut prev = 0u8;
    for (i, &b) in head.iter().enumerate() {
        if b == b'\n' && prev != b'\r' {
            return Err(bad("bare LF in the request head"));
        }
        if b == b'\r' && head.get(i + 1) != Some(&b'\n') {
            return Err(bad("bare CR in the request head"));
        }
        prev = b;
    }
    Ok(())
}

/// A Content-Length value: `1*DIGIT` and nothing else (no sign, no list, no spaces inside),
/// fitting a u64. Shared by request and response parsing.
pub(crate) fn content_length_value(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn parse_content_length(v: &[u8]) -> Result<u64, GatewayError> {
    content_length_value(v).ok_or_else(|| bad("bad Content-Length"))
}

/// The codings of every Transfer-Encoding header, in order.
#[derive(Default)]
struct TransferCodings {
    seen: bool,
    /// How often `chunked` appears: more than once is an error.
    chunked: usize,
    last_chunked: bool,
}

impl TransferCodings {
    fn add(&mut self, v: &[u8]) -> Result<(), GatewayError> {
        self.seen = true;
        for coding in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if coding.is_empty() {
                return Err(bad("bad Transfer-Encoding"));
            }
            self.last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.chunked += usize::from(self.last_chunked);
        }
        Ok(())
    }
}

/// The message for a request line httparse refused. httparse stops a target at its first
/// byte outside `!`..`~` (and 0x80.. when not UTF-8) and then reports a bad token, or a bad
/// version when that byte was a space: when the target is the culprit, say so instead.
fn request_line_message(buf: &[u8], e: httparse::Error) -> &'static str {
    if matches!(e, httparse::Error::Token | httparse::Error::Version)
        && target_has_forbidden_byte(buf)
    {
        return BAD_TARGET_BYTE;
    }
    parse_error_message(e)
}

/// Whether the request line at the start of `buf` (up to its CRLF, or all of `buf`) has a
/// valid method, one space, then a target with a byte outside [`TARGET_BYTES`]. The target
/// ends before ` HTTP/`, else before the line's last space (a bad version), else with the
/// line.
fn target_has_forbidden_byte(buf: &[u8]) -> bool {
    let line_end = buf.windows(2).position(|w| w == b"\r\n");
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let Some(sp) = line.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (method, rest) = (&line[..sp], &line[sp + 1..]);
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return false;
    }
    let end = rest
        .windows(6)
        .position(|w| w == b" HTTP/")
        .or_else(|| rest.iter().rposition(|&b| b == b' '));
    let target = &rest[..end.unwrap_or(rest.len())];
    target.first().is_some_and(|&b| b != b' ') && target.iter().any(|b| !TARGET_BYTES.contains(b))
}

/// A `tchar` of RFC 9110 §5.6.2 (the bytes of a method).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_error_message(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => {
            "bad header name (whitespace before the colon, or obs-fold?)"
        }
        httparse::Error::HeaderValue => "bad header value (a control byte?)",
        httparse::Error::NewLine => "bad line ending in the request head",
        httparse::Error::Version => "unsupported HTTP version",
        httparse::Error::Token => "bad method",
        _ => "malformed request line",
    }
}

/// Parses a complete head under roomy limits: for the unit tests of the stages above.
#[cfg(test)]
pub(crate) fn parse_complete(raw: &[u8]) -> RequestHead {
    let limits = Limits {
        max_header_bytes: 32768,
        max_headers: 100,
        max_uri_bytes: 8192,
        max_body_bytes: 1 << 20,
    };
    let mut head = RequestHead::default();
    let progress = parse_head(raw, &limits, &mut head);
    assert_eq!(
        progress,
        Ok(Progress::Complete),
        "{}",
        String::from_utf8_lossy(raw)
    );
    head
}

#[cfg(test)]
mod tests;

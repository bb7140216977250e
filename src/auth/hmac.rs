//! Key-pair (HMAC) request authentication, SPEC §4 `key_pair`.
//!
//! This module owns the `Authorization: hmac …` syntax, the signing string, the date and
//! clock-skew rule and the signature check. It does no I/O and reads no clock: the data path
//! hands it the header value, the secret key it looked up, a view of the request head
//! ([`SignedRequest`]) and the current time.
//!
//! Data flow:
//!
//! 1. [`parse_authorization`] turns the raw header value into borrowed [`Credentials`]
//!    (id, algorithm, signed header list, base64 signature). Nothing is copied.
//! 2. The caller looks the key pair up by [`Credentials::id`] (unknown →
//!    [`HmacError::IdNotFound`]; not bound to the service → [`HmacError::IdNotAllowed`]).
//! 3. [`verify`] checks that `x-date` or `date` is signed, is an IMF-fixdate and lies within
//!    [`MAX_CLOCK_SKEW`] of `now`, then feeds the signing string piece by piece into an HMAC
//!    context and compares the result with the signature in constant time.
//!
//! The signing string is, for each name of the `headers` list in order,
//! `lowercase(name) + ": " + value`, joined by `\n` with no trailing newline. Several values
//! of one header are joined with `", "`. The pseudo-header `request-line` contributes the
//! request line exactly as received (`GET /v1/orders?x=1 HTTP/1.1`) with no `name: ` prefix,
//! as Kong's hmac-auth does.
//!
//! Neither function allocates on success; only the error path builds a `String` for messages
//! that name something the client sent (cut to [`MAX_ECHO_CHARS`] characters).

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use httpdate::HttpDate;
use ring::hmac;

/// Largest accepted distance, either way, between the signed date and the gateway clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(900);
/// Most names the `headers` parameter may list.
pub const MAX_SIGNED_HEADERS: usize = 32;
/// The authentication scheme (compared ASCII case-insensitively).
pub const SCHEME: &str = "hmac";
/// Pseudo-header standing for the request line in the `headers` list.
pub const REQUEST_LINE: &str = "request-line";
/// Longest HMAC output (SHA-512).
pub const MAX_TAG_LEN: usize = 64;
/// Longest base64 signature: [`MAX_TAG_LEN`] bytes, padded.
pub const MAX_SIGNATURE_LEN: usize = MAX_TAG_LEN.div_ceil(3) * 4;
/// Length of an IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const IMF_FIXDATE_LEN: usize = 29;
/// Most characters of client input repeated in an error message.
pub const MAX_ECHO_CHARS: usize = 64;
/// Stack buffer used to lowercase header names on their way into the HMAC.
const LOWERCASE_CHUNK: usize = 64;

/// The `x-date` header: preferred over `date` when both are signed.
const X_DATE: &str = "x-date";
const DATE: &str = "date";

/// The four parameters the scheme requires, in [`Credentials`] field order.
const FIELDS: [&str; 4] = ["id", "algorithm", "headers", "signature"];
const DUPLICATE: [&str; 4] = [
    "duplicate id",
    "duplicate algorithm",
    "duplicate headers",
    "duplicate signature",
];
const MISSING: [&str; 4] = [
    "missing id",
    "missing algorithm",
    "missing headers",
    "missing signature",
];
const EMPTY: [&str; 4] = [
    "empty id",
    "empty algorithm",
    "empty headers",
    "empty signature",
];

/// `HMAC id not found`: the caller's answer when no key pair has the id.
pub const MSG_ID_NOT_FOUND: &str = "HMAC id not found";
/// The caller's answer when the key pair is not bound to the service.
pub const MSG_ID_NOT_ALLOWED: &str = "HMAC id is not allowed to call this service";
/// [`HmacError::SignatureMismatch`].
pub const MSG_MISMATCH: &str = "HMAC signature does not match";
/// [`HmacError::TimeSkew`].
pub const MSG_TIME_SKEW: &str = "Time skew exceeded";

/// A signature algorithm of the `algorithm` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Sha1,
        Algorithm::Sha256,
        Algorithm::Sha384,
        Algorithm::Sha512,
    ];

    /// The name in the `algorithm` parameter, e.g. `hmac-sha256`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "hmac-sha1",
            Algorithm::Sha256 => "hmac-sha256",
            Algorithm::Sha384 => "hmac-sha384",
            Algorithm::Sha512 => "hmac-sha512",
        }
    }

    /// The algorithm named `name` (ASCII case-insensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha384 => hmac::HMAC_SHA384,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// The parameters of an `Authorization: hmac …` header, borrowed from its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The key pair's `secret_id`.
    pub id: &'a str,
    pub algorithm: Algorithm,
    /// The signed header names as sent: space-separated (one or more spaces).
    pub headers: &'a str,
    /// The signature as sent: standard base64, padded.
    pub signature: &'a str,
}

/// What the verifier needs from the request; implemented by the data path over its parsed
/// head.
pub trait SignedRequest {
    /// All values of header `name` (ASCII case-insensitive), in order, without surrounding
    /// whitespace; the verifier joins several with `", "`. A header sent with an empty value
    /// yields one empty slice.
    fn header_values(&self, name: &str) -> impl Iterator<Item = &[u8]>;
    /// The request line as received, without CRLF, e.g. `b"GET /v1/orders?x=1 HTTP/1.1"`.
    fn request_line(&self) -> &[u8];
}

/// Why a request is not authenticated. Every variant is a 401; [`HmacError::message`] is the
/// `{"message": ...}` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HmacError {
    /// The request has no `Authorization` header.
    Missing,
    /// The header is not a well-formed `hmac` authorization; the reason is for humans.
    Malformed(&'static str),
    /// The `algorithm` parameter names no supported algorithm (the name, cut short).
    UnsupportedAlgorithm(String),
    /// The `headers` parameter lists more than [`MAX_SIGNED_HEADERS`] names.
    TooManySignedHeaders,
    /// No key pair has this id (produced by the caller).
    IdNotFound,
    /// The key pair may not call this service (produced by the caller).
    IdNotAllowed,
    /// Neither `x-date` nor `date` is among the signed headers.
    DateNotSigned,
    /// The signed date is not one IMF-fixdate (RFC 850 and asctime forms are refused).
    BadDate,
    /// The signed date is more than [`MAX_CLOCK_SKEW`] away from the gateway clock.
    TimeSkew,
    /// A signed header is absent from the request (its name as listed, cut short).
    SignedHeaderMissing(String),
    /// The signature is not the HMAC of the signing string.
    SignatureMismatch,
}

impl HmacError {
    /// The text of the 401 body `{"message": ...}`. Parts taken from the request are visible
    /// ASCII when they come from [`parse_authorization`]; the caller still JSON-escapes.
    /// The failure in a word (a metrics label).
    pub fn reason(&self) -> &'static str {
        match self {
            HmacError::Missing => "missing",
            HmacError::Malformed(_)
            | HmacError::UnsupportedAlgorithm(_)
            | HmacError::TooManySignedHeaders
            | HmacError::DateNotSigned
            | HmacError::BadDate
            | HmacError::SignedHeaderMissing(_) => "malformed",
            HmacError::IdNotFound => "unknown_key",
            HmacError::IdNotAllowed => "not_allowed",
            HmacError::TimeSkew => "clock_skew",
            HmacError::SignatureMismatch => "bad_signature",
        }
    }

    pub fn message(&self) -> String {
        match self {
            HmacError::Missing => "HMAC authorization header is missing".to_owned(),
            HmacError::Malformed(reason) => {
                format!("HMAC authorization header is malformed: {reason}")
            }
            HmacError::UnsupportedAlgorithm(alg) => {
                format!("HMAC algorithm is not supported: {alg}")
            }
            HmacError::TooManySignedHeaders => {
                format!("HMAC signature covers more than {MAX_SIGNED_HEADERS} headers")
            }
            HmacError::IdNotFound => MSG_ID_NOT_FOUND.to_owned(),
            HmacError::IdNotAllowed => MSG_ID_NOT_ALLOWED.to_owned(),
            HmacError::DateNotSigned => {
                "HMAC signature must cover the x-date or date header".to_owned()
            }
            HmacError::BadDate => "HMAC date is not an IMF-fixdate".to_owned(),
            HmacError::TimeSkew => MSG_TIME_SKEW.to_owned(),
            HmacError::SignedHeaderMissing(name) => {
                format!("HMAC signed header {name} is missing from the request")
            }
            HmacError::SignatureMismatch => MSG_MISMATCH.to_owned(),
        }
    }
}

/// Parses an `Authorization` value: `hmac` (any case), one or more spaces or tabs, then
/// `key="value"` parameters separated by commas, in any order, with optional whitespace
/// around `,` and `=`.
///
/// Strict: every value is quoted and holds only visible ASCII and spaces, with no `"` or
/// `\` inside (no escapes); parameter names are tokens (matched case-insensitively); empty
/// list elements (`,,`, a trailing comma) are refused. `id`, `algorithm`, `headers` and
/// `signature` must each appear once with a non-empty value; other parameters are ignored
/// (their repeats too). The `headers` list must name tokens, at most [`MAX_SIGNED_HEADERS`].
pub fn parse_authorization(value: &[u8]) -> Result<Credentials<'_>, HmacError> {
    let mut rest = strip_scheme(value)?;
    let mut fields: [Option<&str>; 4] = [None; 4];
    loop {
        let (key, after_key) = split_token(rest);
        if key.is_empty() {
            return Err(HmacError::Malformed("expected a parameter name"));
        }
        let after_eq = skip_ows(after_key)
            .strip_prefix(b"=")
            .ok_or(HmacError::Malformed("expected `=` after a parameter name"))?;
        let (val, after_val) = split_quoted(skip_ows(after_eq))?;
        if let Some(i) = FIELDS
            .iter()
            .position(|f| f.as_bytes().eq_ignore_ascii_case(key))
        {
            if fields[i].is_some() {
                return Err(HmacError::Malformed(DUPLICATE[i]));
            }
            if val.is_empty() {
                return Err(HmacError::Malformed(EMPTY[i]));
            }
            fields[i] = Some(val);
        }
        rest = skip_ows(after_val);
        if rest.is_empty() {
            break;
        }
        rest = rest
            .strip_prefix(b",")
            .map(skip_ows)
            .ok_or(HmacError::Malformed("expected `,` between parameters"))?;
    }
    let field = |i: usize| fields[i].ok_or(HmacError::Malformed(MISSING[i]));
    let (id, algorithm, headers, signature) = (field(0)?, field(1)?, field(2)?, field(3)?);
    let algorithm = Algorithm::from_name(algorithm)
        .ok_or_else(|| HmacError::UnsupportedAlgorithm(echo(algorithm)))?;
    check_header_list(headers)?;
    Ok(Credentials {
        id,
        algorithm,
        headers,
        signature,
    })
}

/// Checks the date and the signature of a request; the caller has already looked the key up
/// by `creds.id` and checked it may call the service.
///
/// Order: the `headers` list (size, a signed `x-date`/`date`), then the date and the skew,
/// then the signature. A signature that is not canonical padded standard base64 is
/// [`HmacError::Malformed`]; well-formed base64 of the wrong length, or longer than any
/// algorithm's output, is a [`HmacError::SignatureMismatch`].
pub fn verify(
    creds: &Credentials<'_>,
    secret_key: &SecretKey,
    req: &impl SignedRequest,
    now: SystemTime,
) -> Result<(), HmacError> {
    let date_header = signed_date_header(creds.headers)?;
    check_date(req, date_header, now)?;

    if creds.signature.len() > MAX_SIGNATURE_LEN {
        return Err(HmacError::SignatureMismatch);
    }
    let mut tag_buf = [0u8; MAX_TAG_LEN];
    let tag_len = BASE64
        .decode_slice(creds.signature, &mut tag_buf)
        .map_err(|_| HmacError::Malformed("signature is not base64"))?;
    let expected = tag_buf.get(..tag_len).unwrap_or_default();

    let mut mac = Mac(hmac::Context::with_key(
        secret_key.for_algorithm(creds.algorithm),
    ));
    for (i, name) in signed_names(creds.headers).enumerate() {
        if i > 0 {
            mac.update(b"\n");
        }
        if name.eq_ignore_ascii_case(REQUEST_LINE) {
            mac.update(req.request_line());
            continue;
        }
        mac.update_lowercase(name.as_bytes());
        mac.update(b": ");
        let mut found = false;
        for v in req.header_values(name) {
            if found {
                mac.update(b", ");
            }
            mac.update(v);
            found = true;
        }
        if !found {
            return Err(HmacError::SignedHeaderMissing(echo(name)));
        }
    }
    if mac.matches(expected) {
        Ok(())
    } else {
        Err(HmacError::SignatureMismatch)
    }
}

/// A key pair's secret, prepared once (at configuration load) for each algorithm: HMAC's
/// key schedule then costs nothing per request.
#[derive(Clone, Debug)]
pub struct SecretKey {
    keys: [hmac::Key; 4],
}

impl SecretKey {
    pub fn new(secret: &[u8]) -> SecretKey {
        SecretKey {
            keys: Algorithm::ALL.map(|a| hmac::Key::new(a.ring(), secret)),
        }
    }

    fn for_algorithm(&self, alg: Algorithm) -> &hmac::Key {
        &self.keys[alg as usize]
    }
}

/// An HMAC being computed; the one path both [`verify`] and the RFC test vectors go through.
struct Mac(hmac::Context);

impl Mac {
    #[cfg(test)]
    fn new(alg: Algorithm, key: &[u8]) -> Mac {
        Mac(hmac::Context::with_key(&hmac::Key::new(alg.ring(), key)))
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Feeds `data` ASCII-lowercased, through a small stack buffer.
    fn update_lowercase(&mut self, data: &[u8]) {
        let mut buf = [0u8; LOWERCASE_CHUNK];
        for chunk in data.chunks(LOWERCASE_CHUNK) {
            let out = &mut buf[..chunk.len()];
            out.copy_from_slice(chunk);
            out.make_ascii_lowercase();
            self.0.update(out);
        }
    }

    /// Whether the MAC equals `expected`, compared in constant time.
    fn matches(self, expected: &[u8]) -> bool {
        constant_time_eq(self.0.sign().as_ref(), expected)
    }
}

/// Equality whose time depends only on the lengths (public here: the algorithm's output
/// length). `black_box` keeps the compiler from turning the fold into an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// The rest of the value after `hmac` and its whitespace.
fn strip_scheme(value: &[u8]) -> Result<&[u8], HmacError> {
    let scheme = value
        .get(..SCHEME.len())
        .filter(|s| s.eq_ignore_ascii_case(SCHEME.as_bytes()))
        .ok_or(HmacError::Malformed("scheme is not hmac"))?;
    let rest = &value[scheme.len()..];
    let params = skip_ows(rest);
    if params.len() == rest.len() {
        return Err(HmacError::Malformed("scheme is not hmac"));
    }
    if params.is_empty() {
        return Err(HmacError::Malformed("no parameters"));
    }
    Ok(params)
}

fn skip_ows(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    &s[n..]
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The leading token of `s` (maybe empty) and what follows it.
fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|&&b| is_tchar(b)).count();
    s.split_at(n)
}

/// A quoted value at the start of `s` and what follows its closing quote.
fn split_quoted(s: &[u8]) -> Result<(&str, &[u8]), HmacError> {
    let inner = s
        .strip_prefix(b"\"")
        .ok_or(HmacError::Malformed("parameter value is not quoted"))?;
    let end = inner
        .iter()
        .position(|&b| b == b'"')
        .ok_or(HmacError::Malformed("unterminated quoted value"))?;
    let (val, after) = inner.split_at(end);
    if val.contains(&b'\\') {
        return Err(HmacError::Malformed("escapes are not allowed in values"));
    }
    if !val.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        return Err(HmacError::Malformed(
            "value has a byte outside visible ASCII",
        ));
    }
    let val = std::str::from_utf8(val)
        .map_err(|_| HmacError::Malformed("value has a byte outside visible ASCII"))?;
    Ok((val, after.get(1..).unwrap_or_default()))
}

/// The names of a `headers` list, as listed.
fn signed_names(list: &str) -> impl Iterator<Item = &str> {
    list.split(' ').filter(|n| !n.is_empty())
}

/// Parse-time check of a `headers` list: tokens, at most [`MAX_SIGNED_HEADERS`].
fn check_header_list(list: &str) -> Result<(), HmacError> {
    let mut count = 0;
    for name in signed_names(list) {
        if !name.bytes().all(is_tchar) {
            return Err(HmacError::Malformed("signed header name is not a token"));
        }
        count += 1;
        if count > MAX_SIGNED_HEADERS {
            return Err(HmacError::TooManySignedHeaders);
        }
    }
    Ok(())
}

/// The date header that decides (`x-date` over `date`) as listed; also enforces
/// [`MAX_SIGNED_HEADERS`], since [`Credentials`] may not come from [`parse_authorization`].
fn signed_date_header(list: &str) -> Result<&str, HmacError> {
    let (mut x_date, mut date) = (None, None);
    for (i, name) in signed_names(list).enumerate() {
        if i >= MAX_SIGNED_HEADERS {
            return Err(HmacError::TooManySignedHeaders);
        }
        if name.eq_ignore_ascii_case(X_DATE) {
            x_date = Some(name);
        } else if name.eq_ignore_ascii_case(DATE) {
            date = Some(name);
        }
    }
    x_date.or(date).ok_or(HmacError::DateNotSigned)
}

/// The date header holds exactly one IMF-fixdate within [`MAX_CLOCK_SKEW`] of `now`.
fn check_date(req: &impl SignedRequest, name: &str, now: SystemTime) -> Result<(), HmacError> {
    let mut values = req.header_values(name);
    let value = values
        .next()
        .ok_or_else(|| HmacError::SignedHeaderMissing(echo(name)))?;
    if values.next().is_some() {
        return Err(HmacError::BadDate);
    }
    let date = parse_imf_fixdate(value).ok_or(HmacError::BadDate)?;
    let skew = now
        .duration_since(date)
        .unwrap_or_else(|ahead| ahead.duration());
    if skew > MAX_CLOCK_SKEW {
        return Err(HmacError::TimeSkew);
    }
    Ok(())
}

/// An IMF-fixdate and nothing else: httpdate also reads RFC 850 and asctime dates (and
/// trims whitespace), so the parsed date must format back to the very same bytes.
fn parse_imf_fixdate(value: &[u8]) -> Option<SystemTime> {
    if value.len() != IMF_FIXDATE_LEN {
        return None;
    }
    let date = HttpDate::from_str(std::str::from_utf8(value).ok()?).ok()?;
    let mut canonical = FixedBuf::default();
    write!(canonical, "{date}").ok()?;
    (canonical.as_bytes() == value).then(|| SystemTime::from(date))
}

/// A [`std::fmt::Write`] sink of [`IMF_FIXDATE_LEN`] bytes on the stack.
#[derive(Default)]
struct FixedBuf {
    buf: [u8; IMF_FIXDATE_LEN],
    len: usize,
}

impl FixedBuf {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Write for FixedBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let dst = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// Client input for an error message, cut to [`MAX_ECHO_CHARS`] characters.
fn echo(s: &str) -> String {
    s.chars().take(MAX_ECHO_CHARS).collect()
}

#[cfg(test)]
mod tests;

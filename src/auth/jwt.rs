//! OAuth 2.0 JWT verification for `auth = "oauth2"` APIs (SPEC §1 `[services.oauth2]`, §4).
//!
//! This module owns everything between "the request carries these token bytes" and "the
//! token is good, here is its `sub`": compiling the service's JWK into a [`JwtKey`],
//! pulling the token out of an `Authorization` or `Cookie` header value ([`bearer`],
//! [`cookie`]), verifying a compact JWS ([`verify`]) and a bounded per-worker cache of
//! tokens that verified ([`TokenCache`]). It does no I/O and reads no clock: the caller
//! passes `now` in unix seconds. Every function is total: malformed input is an `Err` or
//! `None`, never a panic.
//!
//! Data flow:
//!
//! ```text
//! config load:  JWK (serde_json::Map) --JwtKey::from_jwk--> JwtKey   (once per service)
//! per request:  header value --bearer()/cookie()--> token bytes        (None -> MSG_MISSING)
//!               token --TokenCache::get(now)--> hit: &Verified         (done, no crypto)
//!                     \-miss--> verify(token, key, now)
//!                                  Ok(v)  -> TokenCache::insert(token, v, now)
//!                                  Err(e) -> 401 MSG_INVALID, `e` goes to the log
//! ```
//!
//! [`verify`] works in this order, so that nothing from the payload is trusted before the
//! signature is: size limit → split into exactly three parts → decode and parse the header
//! (`alg` required, `crit` refused, `typ`/`kid`/others ignored) → `alg` must be supported and
//! fit the key → decode the signature → ring verifies it over `header.payload` → only then
//! decode and parse the payload and check `exp`/`nbf`/`sub`.
//!
//! Time edges (all comparisons on whole seconds, `now` an integer):
//! - `exp`: refused iff `now > exp + LEEWAY_SECS`. So `exp = now - 60` passes and
//!   `exp = now - 61` fails. A fractional `exp` is floored first, which for an integer
//!   `now` is the same test as on the exact value (`exp = 1000.5`: `now = 1060` passes,
//!   `1061` fails).
//! - `nbf`: refused iff `now + LEEWAY_SECS < nbf`. So `nbf = now + 60` passes and
//!   `nbf = now + 61` fails. A fractional `nbf` is rounded up first (exact, as above).
//! - Integers and floats are both accepted (RFC 7519 NumericDate); negative and huge values
//!   are compared exactly in `i128` (floats saturate), never overflow. A number that JSON
//!   itself cannot represent (`1e400`) makes the payload invalid. `null`, strings, booleans,
//!   arrays and objects are refused, as is a non-string `sub` (`null` included). A duplicate
//!   member (`exp` twice) refuses the token, as does a payload that is not a JSON object.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// Longest token accepted, in bytes; a longer one is refused before any decoding. Bounds
/// every decoded part (header, payload, signature) too.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Default number of entries of a [`TokenCache`]. With tokens of about 1 KiB that is about
/// 1 MiB per cache; the hard worst case is `capacity * MAX_TOKEN_BYTES` (8 MiB).
pub const TOKEN_CACHE_CAPACITY: usize = 1024;

/// Wire message (401) when the request carries no token.
pub const MSG_MISSING: &str = "Oauth miss Oauth id_token";

/// Wire message (401) for every verification failure, whatever the [`JwtError`].
pub const MSG_INVALID: &str = "Oauth id_token verify error";

/// Smallest RSA modulus accepted, in bits (ring's `*_2048_8192_*` verifiers).
pub const RSA_MIN_BITS: usize = 2048;

/// Largest RSA modulus accepted, in bits.
pub const RSA_MAX_BITS: usize = 8192;

/// Largest RSA public exponent ring verifies with (2^33 - 1); the smallest is 3.
pub const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;

/// Length of one P-256 coordinate (`x`, `y`) and of `r`/`s` in an ES256 signature.
pub const P256_COORD_BYTES: usize = 32;

/// Length of one P-384 coordinate (`x`, `y`) and of `r`/`s` in an ES384 signature.
pub const P384_COORD_BYTES: usize = 48;

/// Why a token was refused. For logs and tests only: the client always gets
/// [`MSG_INVALID`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLong,
    /// Not exactly three `.`-separated parts.
    Malformed,
    /// A part is not unpadded, canonical base64url.
    Base64,
    /// The header is not a JSON object with a string `alg` (or repeats a member).
    Header,
    /// The header has a `crit` member: no extension is understood, so none may be critical.
    Crit,
    /// `alg` is not one of RS256/384/512, PS256/384/512, ES256, ES384 (`none` and HS* included).
    UnsupportedAlg,
    /// `alg` does not fit the key: wrong key type or curve, or not the JWK's own `alg`.
    AlgKeyMismatch,
    /// The signature does not verify with the key.
    Signature,
    /// The payload is not a JSON object (not JSON, not UTF-8, an array, a duplicate member...).
    Payload,
    /// A claim has the wrong type: the name of the claim (`exp`, `nbf`, `sub`).
    Claim(&'static str),
    /// `now > exp + LEEWAY_SECS`.
    Expired,
    /// `now + LEEWAY_SECS < nbf`.
    NotYetValid,
}

impl JwtError {
    /// A short reason for the access log.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLong => "token too long",
            JwtError::Malformed => "not three dot-separated parts",
            JwtError::Base64 => "bad base64url",
            JwtError::Header => "bad header",
            JwtError::Crit => "crit header not supported",
            JwtError::UnsupportedAlg => "unsupported alg",
            JwtError::AlgKeyMismatch => "alg does not fit the key",
            JwtError::Signature => "bad signature",
            JwtError::Payload => "payload is not a JSON object",
            JwtError::Claim("exp") => "exp is not a number",
            JwtError::Claim("nbf") => "nbf is not a number",
            JwtError::Claim(_) => "sub is not a string",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not yet valid",
        }
    }
}

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for JwtError {}

/// What a verified token tells the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The `sub` claim.
    pub sub: Option<String>,
    /// The `exp` claim, floored, clamped to `0..=u64::MAX`.
    pub exp: Option<u64>,
    /// The `nbf` claim, rounded up, clamped to `0..=u64::MAX`. [`TokenCache::insert`] uses it
    /// to leave out tokens that are not yet valid without the leeway.
    pub nbf: Option<u64>,
}

/// A JWS algorithm this module verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Alg {
    /// The JWA name, case-sensitive (RFC 7518 §3.1). `None` for everything else, `none` and
    /// the HMAC algorithms included.
    fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            _ => return None,
        })
    }

    /// The JWA name.
    fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }

    /// ring's parameters for an RSA algorithm.
    fn rsa(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
            Alg::Es256 | Alg::Es384 => return None,
        })
    }

    /// The one curve an ECDSA algorithm is defined on (RFC 7518 §3.4).
    fn curve(self) -> Option<Curve> {
        match self {
            Alg::Es256 => Some(Curve::P256),
            Alg::Es384 => Some(Curve::P384),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn coord_bytes(self) -> usize {
        match self {
            Curve::P256 => P256_COORD_BYTES,
            Curve::P384 => P384_COORD_BYTES,
        }
    }

    fn ecdsa(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
            Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
        }
    }

    fn ecdh(self) -> &'static ring::agreement::Algorithm {
        match self {
            Curve::P256 => &ring::agreement::ECDH_P256,
            Curve::P384 => &ring::agreement::ECDH_P384,
        }
    }
}

#[derive(Clone, Debug)]
enum Material {
    /// Big-endian modulus and exponent without leading zero bytes, as ring wants them.
    Rsa { n: Box<[u8]>, e: Box<[u8]> },
    /// `0x04 || x || y`.
    Ec { curve: Curve, point: Box<[u8]> },
}

/// A JWK compiled once at config load into what ring needs (RSA `n`/`e` bytes or an EC
/// uncompressed point and its curve), plus the JWK's own `alg` if it names one.
#[derive(Clone, Debug)]
pub struct JwtKey {
    material: Material,
    alg: Option<Alg>,
}

impl JwtKey {
    /// Compiles a public JWK (RFC 7517/7518): `kty` `RSA` with `n`, `e`, or `EC` with `crv`
    /// `P-256`/`P-384` and `x`, `y`. Members are unpadded base64url. Refused: a private
    /// member `d`; `use` other than `sig`; `key_ops` without `verify`; an `alg` that this
    /// module does not verify or that does not fit the key; an RSA modulus outside
    /// 2048..=8192 bits or even, an exponent that is even, below 3 or above 2^33 - 1
    /// (ring's limits; leading zero bytes are tolerated and stripped); EC coordinates not of
    /// the curve's exact length, or a point not on the curve.
    ///
    /// The on-curve check runs an ephemeral ECDH with ring (the only way ring exposes point
    /// validation), so this reads the system RNG once: call it at config load, not per
    /// request.
    pub fn from_jwk(jwk: &serde_json::Map<String, Value>) -> Result<JwtKey, String> {
        if jwk.contains_key("d") {
            return Err("JWK holds a private key (\"d\"); give the public key only".into());
        }
        match jwk.get("use") {
            None => {}
            Some(Value::String(u)) if u == "sig" => {}
            Some(other) => return Err(format!("JWK \"use\" is {other}, not \"sig\"")),
        }
        if let Some(ops) = jwk.get("key_ops") {
            let verify = ops
                .as_array()
                .is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")));
            if !verify {
                return Err("JWK \"key_ops\" does not allow \"verify\"".into());
            }
        }
        let alg = match jwk.get("alg") {
            None => None,
            Some(Value::String(name)) => Some(Alg::from_name(name).ok_or_else(|| {
                format!("JWK \"alg\" {name:?} is not supported (RS256/384/512, PS256/384/512, ES256, ES384)")
            })?),
            Some(other) => return Err(format!("JWK \"alg\" is {other}, not a string")),
        };
        let material = match jwk.get("kty").and_then(Value::as_str) {
            Some("RSA") => {
                let (n, e) = (member(jwk, "n")?, member(jwk, "e")?);
                let (n, e) = (strip_leading_zeros(&n), strip_leading_zeros(&e));
                check_rsa(n, e)?;
                Material::Rsa {
                    n: n.into(),
                    e: e.into(),
                }
            }
            Some("EC") => {
                let curve = match jwk.get("crv").and_then(Value::as_str) {
                    Some("P-256") => Curve::P256,
                    Some("P-384") => Curve::P384,
                    other => {
                        return Err(format!(
                            "JWK curve {other:?} is not supported (P-256 or P-384)"
                        ));
                    }
                };
                let (x, y) = (member(jwk, "x")?, member(jwk, "y")?);
                let len = curve.coord_bytes();
                if x.len() != len || y.len() != len {
                    return Err(format!(
                        "JWK \"x\" and \"y\" must be {len} bytes each for this curve (are {} and {})",
                        x.len(),
                        y.len()
                    ));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if !on_curve(curve, &point)? {
                    return Err("JWK \"x\", \"y\" is not a point on the curve".into());
                }
                Material::Ec {
                    curve,
                    point: point.into(),
                }
            }
            other => {
                return Err(format!(
                    "JWK kty {other:?} is not supported (\"RSA\" or \"EC\")"
                ));
            }
        };
        let key = JwtKey {
            material,
            alg: None,
        };
        if let Some(alg) = alg
            && !key.fits(alg)
        {
            return Err(format!(
                "JWK \"alg\" \"{}\" does not fit the key type or curve",
                alg.name()
            ));
        }
        Ok(JwtKey { alg, ..key })
    }

    /// Whether the key's type (and curve) is the one `alg` is defined for.
    fn fits(&self, alg: Alg) -> bool {
        match &self.material {
            Material::Rsa { .. } => alg.rsa().is_some(),
            Material::Ec { curve, .. } => alg.curve() == Some(*curve),
        }
    }

    /// ring's verdict on `signature` over `message` with `alg` (which [`JwtKey::fits`]).
    fn check_signature(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Rsa { n, e } => alg.rsa().is_some_and(|params| {
                RsaPublicKeyComponents {
                    n: &n[..],
                    e: &e[..],
                }
                .verify(params, message, sig)
                .is_ok()
            }),
            Material::Ec { curve, point } => {
                alg.curve() == Some(*curve)
                    && UnparsedPublicKey::new(curve.ecdsa(), &point[..])
                        .verify(message, sig)
                        .is_ok()
            }
        }
    }
}

/// A base64url member of a JWK, decoded.
fn member(jwk: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("JWK has no string member \"{name}\""))?;
    match URL_SAFE_NO_PAD.decode(text) {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        _ => Err(format!(
            "JWK member \"{name}\" is not unpadded base64url of a non-empty value"
        )),
    }
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// ring's RSA public key limits (ring 0.17 `rsa::PublicKey::from_modulus_and_exponent` with
/// the `2048_8192` verifiers), checked here so that a bad key fails at config load instead of
/// every request failing later. `n` and `e` are without leading zeros.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let bits = match n.first() {
        Some(&top) => (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!(
            "JWK RSA modulus has {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} are supported"
        ));
    }
    if n.last().is_some_and(|b| b & 1 == 0) {
        return Err("JWK RSA modulus is even".into());
    }
    if e.is_empty() || e.len() > 5 {
        return Err("JWK RSA exponent is out of range".into());
    }
    let value = e.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
    if !(3..=RSA_MAX_EXPONENT).contains(&value) || value & 1 == 0 {
        return Err(format!(
            "JWK RSA exponent {value} is not supported (odd, 3 to {RSA_MAX_EXPONENT})"
        ));
    }
    Ok(())
}

/// Whether `point` (uncompressed) is on `curve`, as ring's own public key parser sees it.
fn on_curve(curve: Curve, point: &[u8]) -> Result<bool, String> {
    use ring::agreement;
    let rng = ring::rand::SystemRandom::new();
    let mine = agreement::EphemeralPrivateKey::generate(curve.ecdh(), &rng)
        .map_err(|_| "cannot check the JWK's EC point: no system randomness".to_string())?;
    let theirs = agreement::UnparsedPublicKey::new(curve.ecdh(), point);
    Ok(agreement::agree_ephemeral(mine, &theirs, |_| ()).is_ok())
}

/// A header or claim member: absent, or present with any JSON value (`null` included, which
/// `Option<Value>` would fold into "absent").
#[derive(Default)]
enum Member {
    #[default]
    Absent,
    Present(Value),
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Member, D::Error> {
        Value::deserialize(d).map(Member::Present)
    }
}

/// The JOSE header members this module reads; the others (`typ`, `kid`, `jku`, `x5c`...)
/// are ignored: the key is the service's, never one the token points at.
#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    alg: Member,
    #[serde(default)]
    crit: Member,
}

/// The claims this module reads; the others are ignored.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Member,
    #[serde(default)]
    nbf: Member,
    #[serde(default)]
    sub: Member,
}

/// Parses a JSON object into `T`. The whole text must be UTF-8 (RFC 8259 §8.1; serde_json
/// alone would skip unchecked over the bytes of ignored strings). The derive would also take a
/// JSON array for a struct, so the first byte is checked; serde's derive refuses duplicate
/// members, and serde_json refuses trailing data and nesting past its recursion limit.
fn parse_object<'a, T: Deserialize<'a>>(json: &'a [u8]) -> Option<T> {
    let text = std::str::from_utf8(json).ok()?;
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// A NumericDate claim as a whole number of seconds: floored (`exp`) or rounded up (`nbf`).
fn numeric_date(
    member: &Member,
    name: &'static str,
    round_up: bool,
) -> Result<Option<i128>, JwtError> {
    let number = match member {
        Member::Absent => return Ok(None),
        Member::Present(Value::Number(n)) => n,
        Member::Present(_) => return Err(JwtError::Claim(name)),
    };
    if let Some(u) = number.as_u64() {
        return Ok(Some(i128::from(u)));
    }
    if let Some(i) = number.as_i64() {
        return Ok(Some(i128::from(i)));
    }
    match number.as_f64() {
        // `as` saturates (and the value is finite: serde_json has no NaN or infinity).
        Some(f) if f.is_finite() => Ok(Some(if round_up { f.ceil() } else { f.floor() } as i128)),
        _ => Err(JwtError::Claim(name)),
    }
}

fn clamp_u64(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

/// Verifies a compact JWS `token` with `key` at `now` (unix seconds) and returns its claims.
/// See the module documentation for the order of checks and the exact time edges.
pub fn verify(token: &[u8], key: &JwtKey, now: u64) -> Result<Verified, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];

    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| JwtError::Base64)?;
    let header: Header = parse_object(&header_json).ok_or(JwtError::Header)?;
    if !matches!(header.crit, Member::Absent) {
        return Err(JwtError::Crit);
    }
    let alg = match &header.alg {
        Member::Present(Value::String(name)) => {
            Alg::from_name(name).ok_or(JwtError::UnsupportedAlg)?
        }
        _ => return Err(JwtError::Header),
    };
    if !key.fits(alg) || key.alg.is_some_and(|a| a != alg) {
        return Err(JwtError::AlgKeyMismatch);
    }

    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JwtError::Base64)?;
    if !key.check_signature(alg, signing_input, &sig) {
        return Err(JwtError::Signature);
    }

    // Signed: the payload may now be read.
    let payload_json = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| JwtError::Base64)?;
    let claims: Claims = parse_object(&payload_json).ok_or(JwtError::Payload)?;
    let exp = numeric_date(&claims.exp, "exp", false)?;
    let nbf = numeric_date(&claims.nbf, "nbf", true)?;
    let sub = match claims.sub {
        Member::Absent => None,
        Member::Present(Value::String(s)) => Some(s),
        Member::Present(_) => return Err(JwtError::Claim("sub")),
    };
    let now_i = i128::from(now);
    let leeway = i128::from(LEEWAY_SECS);
    if exp.is_some_and(|exp| now_i > exp.saturating_add(leeway)) {
        return Err(JwtError::Expired);
    }
    if nbf.is_some_and(|nbf| now_i + leeway < nbf) {
        return Err(JwtError::NotYetValid);
    }
    Ok(Verified {
        sub,
        exp: exp.map(clamp_u64),
        nbf: nbf.map(clamp_u64),
    })
}

/// Optional whitespace (RFC 9110 OWS) trimmed from both ends.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The token of an `Authorization: Bearer <token>` value (RFC 6750 §2.1): the scheme is
/// case-insensitive and followed by at least one space or tab; the token is the rest,
/// trimmed. `None` for another scheme or an empty token (the caller answers
/// [`MSG_MISSING`]). The token's characters are not checked here: anything odd fails
/// [`verify`] and is answered [`MSG_INVALID`].
pub fn bearer(authorization_value: &[u8]) -> Option<&[u8]> {
    let v = trim_ows(authorization_value);
    let (scheme, rest) = v.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !matches!(rest.first(), Some(b' ' | b'\t')) {
        return None;
    }
    let token = trim_ows(rest);
    (!token.is_empty()).then_some(token)
}

/// The value of cookie `name` in a `Cookie` header value (RFC 6265 §4.2.1 `a=b; c=d`,
/// parsed leniently: pairs split on `;`, whitespace around names and values trimmed, pairs
/// without `=` skipped). Names compare exactly (case-sensitive); the first pair with that
/// name and a non-empty value wins; a value in double quotes is returned without them.
/// `None` if there is none (the caller answers [`MSG_MISSING`]).
pub fn cookie<'a>(cookie_header_value: &'a [u8], name: &str) -> Option<&'a [u8]> {
    cookie_header_value.split(|&b| b == b';').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (n, v) = (trim_ows(&pair[..eq]), trim_ows(&pair[eq + 1..]));
        if n != name.as_bytes() {
            return None;
        }
        let v = match v {
            [b'"', inner @ .., b'"'] => inner,
            v => v,
        };
        (!v.is_empty()).then_some(v)
    })
}

struct Entry {
    token: Arc<[u8]>,
    verified: Verified,
    /// Last second at which the entry may be served: `exp + LEEWAY_SECS`, or `u64::MAX`.
    expires_at: u64,
    /// Set by a hit, cleared by the clock hand passing by.
    referenced: bool,
}

/// Per-worker cache of tokens that verified, keyed by the token bytes (owned copies).
///
/// Eviction is CLOCK (second chance): entries sit in a ring of `capacity` slots; a hit sets
/// the entry's `referenced` bit; an insert into a full ring advances the hand, clearing set
/// bits, and takes the first slot that is empty, expired or not referenced — so tokens that
/// keep being used stay, and one pass of new tokens cannot flush them all. Every operation is
/// one `HashMap` lookup plus, for an insert into a full ring, an amortised O(1) hand move
/// (at most one full turn). Entries expire at `exp + LEEWAY_SECS` (checked on `get`, which
/// drops an expired entry); a token without `exp` stays until evicted.
///
/// One cache per [`JwtKey`]: an entry says "verified with the key it was verified with",
/// so a worker needs one cache per oauth2 service, rebuilt when the key changes (reload).
pub struct TokenCache {
    index: HashMap<Arc<[u8]>, usize>,
    slots: Vec<Option<Entry>>,
    hand: usize,
    capacity: usize,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens; 0 disables it (inserts are dropped).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            // Preallocated up to the default size only: a huge `capacity` grows on demand.
            index: HashMap::with_capacity(capacity.min(TOKEN_CACHE_CAPACITY)),
            slots: Vec::with_capacity(capacity.min(TOKEN_CACHE_CAPACITY)),
            hand: 0,
            capacity,
        }
    }

    /// Number of tokens held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the cache holds no token.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The cached result for `token`, or `None` if it is absent or expired at `now`
    /// (`now > exp + LEEWAY_SECS`, the same edge as [`verify`]); an expired entry is dropped.
    pub fn get(&mut self, token: &[u8], now: u64) -> Option<&Verified> {
        let idx = *self.index.get(token)?;
        let live = matches!(self.slots.get(idx), Some(Some(e)) if now <= e.expires_at);
        if !live {
            self.remove_at(idx);
            return None;
        }
        let entry = self.slots.get_mut(idx)?.as_mut()?;
        entry.referenced = true;
        Some(&entry.verified)
    }

    /// Remembers that `token` verified as `v` at `now`. Not stored: a token already expired
    /// at `now`, one whose `nbf` is still in the future (`nbf > now`, leeway or not), one
    /// longer than [`MAX_TOKEN_BYTES`], anything when the capacity is 0. Only pass results
    /// of [`verify`] with this cache's key.
    pub fn insert(&mut self, token: &[u8], v: Verified, now: u64) {
        let expires_at = v
            .exp
            .map_or(u64::MAX, |exp| exp.saturating_add(LEEWAY_SECS));
        if self.capacity == 0
            || token.len() > MAX_TOKEN_BYTES
            || now > expires_at
            || v.nbf.is_some_and(|nbf| nbf > now)
        {
            return;
        }
        if let Some(&idx) = self.index.get(token)
            && let Some(Some(entry)) = self.slots.get_mut(idx)
        {
            entry.verified = v;
            entry.expires_at = expires_at;
            return;
        }
        let idx = self.free_slot(now);
        let token: Arc<[u8]> = Arc::from(token);
        self.index.insert(Arc::clone(&token), idx);
        if let Some(slot) = self.slots.get_mut(idx) {
            *slot = Some(Entry {
                token,
                verified: v,
                expires_at,
                referenced: false,
            });
        }
    }

    /// A slot index that is empty now: a new one while the ring grows, else the CLOCK victim.
    fn free_slot(&mut self, now: u64) -> usize {
        if self.slots.len() < self.capacity {
            self.slots.push(None);
            return self.slots.len() - 1;
        }
        // Two turns at most: the first clears every referenced bit it passes.
        for _ in 0..self.capacity.saturating_mul(2) {
            let idx = self.hand;
            self.hand = (self.hand + 1) % self.capacity;
            match self.slots.get_mut(idx) {
                Some(Some(e)) if e.referenced && now <= e.expires_at => e.referenced = false,
                _ => {
                    self.remove_at(idx);
                    return idx;
                }
            }
        }
        let idx = self.hand;
        self.remove_at(idx);
        idx
    }

    fn remove_at(&mut self, idx: usize) {
        if let Some(slot) = self.slots.get_mut(idx)
            && let Some(entry) = slot.take()
        {
            self.index.remove(&*entry.token);
        }
    }
}

#[cfg(test)]
mod tests;

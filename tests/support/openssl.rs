//! Signatures made by another implementation: the `openssl` command-line tool, run as a child
//! process. The auth integration tests sign HMAC requests and JWTs with it, so a bug shared by
//! ringway's verifier and a Rust signer in the tests cannot hide.
//!
//! `openssl` must be on `PATH`: if it is missing, every helper panics (the tests fail, they
//! never skip).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// Runs `openssl args...` with `input` on stdin; returns stdout. Panics (loudly) when the tool
/// is missing or fails.
pub fn run(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the `openssl` command-line tool ({e}); these tests need it on PATH \
                 (Debian: apt-get install openssl)"
            )
        });
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(input)
            .unwrap_or_else(|e| panic!("openssl {args:?}: writing stdin: {e}"));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The openssl digest option of an `hmac-shaN` algorithm name (`hmac-sha256` → `-sha256`).
pub fn digest_option(algorithm: &str) -> &'static str {
    match algorithm.to_ascii_lowercase().as_str() {
        "hmac-sha1" => "-sha1",
        "hmac-sha256" => "-sha256",
        "hmac-sha384" => "-sha384",
        "hmac-sha512" => "-sha512",
        other => panic!("no openssl digest for {other:?}"),
    }
}

/// `printf '%s' "$data" | openssl dgst -shaN -hmac KEY -binary | openssl base64 -A`.
pub fn hmac_base64(algorithm: &str, key: &str, data: &str) -> String {
    let mac = run(
        &["dgst", digest_option(algorithm), "-hmac", key, "-binary"],
        data.as_bytes(),
    );
    let b64 = run(&["base64", "-A"], &mac);
    let b64 = String::from_utf8(b64).unwrap().trim().to_string();
    // Cross-check the shape only: the value itself is openssl's.
    assert_eq!(STANDARD.decode(&b64).unwrap(), mac);
    b64
}

/// Raw HMAC with a binary key given in hex (`-mac HMAC -macopt hexkey:...`).
pub fn hmac_hexkey(digest: &str, hex_key: &str, data: &[u8]) -> Vec<u8> {
    run(
        &[
            "dgst",
            digest,
            "-mac",
            "HMAC",
            "-macopt",
            &format!("hexkey:{hex_key}"),
            "-binary",
        ],
        data,
    )
}

/// A file of `tests/fixtures/jwt/`.
pub fn jwt_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// `openssl dgst -shaN -sign KEY -binary` over `data`: PKCS#1 v1.5 for an RSA key, a DER
/// `ECDSA-Sig-Value` for an EC key.
pub fn sign(digest: &str, key_file: &str, data: &[u8]) -> Vec<u8> {
    let key = jwt_fixture(key_file);
    run(
        &["dgst", digest, "-sign", key.to_str().unwrap(), "-binary"],
        data,
    )
}

/// A DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` as JWS wants it: `r || s`,
/// each left-padded to `n` bytes (RFC 7518 §3.4).
pub fn ecdsa_der_to_jws(der: &[u8], n: usize) -> Vec<u8> {
    fn len(b: &[u8], i: &mut usize) -> usize {
        let first = b[*i];
        *i += 1;
        if first < 0x80 {
            return first as usize;
        }
        let k = (first & 0x7f) as usize;
        let mut v = 0;
        for _ in 0..k {
            v = (v << 8) | b[*i] as usize;
            *i += 1;
        }
        v
    }
    let mut i = 0;
    assert_eq!(der[i], 0x30, "not a DER SEQUENCE: {der:02x?}");
    i += 1;
    let total = len(der, &mut i);
    assert_eq!(i + total, der.len(), "bad DER length: {der:02x?}");
    let mut out = Vec::with_capacity(2 * n);
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "not a DER INTEGER: {der:02x?}");
        i += 1;
        let l = len(der, &mut i);
        let mut int = &der[i..i + l];
        i += l;
        while int.len() > n && int[0] == 0 {
            int = &int[1..];
        }
        assert!(int.len() <= n, "integer longer than {n} bytes: {der:02x?}");
        out.extend(std::iter::repeat_n(0u8, n - int.len()));
        out.extend_from_slice(int);
    }
    assert_eq!(i, der.len());
    out
}

/// base64url without padding (JWS).
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// A compact JWS over `header` and `payload` (JSON texts), signed by openssl with the key
/// file `key_file` of `tests/fixtures/jwt/`. `alg` picks the digest and the signature
/// encoding: `RS256`/`RS384`/`RS512` (PKCS#1 v1.5) or `ES256` (DER turned into `r || s`).
pub fn jws(alg: &str, key_file: &str, header: &str, payload: &str) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(payload.as_bytes())
    );
    let sig = match alg {
        "RS256" => sign("-sha256", key_file, input.as_bytes()),
        "RS384" => sign("-sha384", key_file, input.as_bytes()),
        "RS512" => sign("-sha512", key_file, input.as_bytes()),
        "ES256" => ecdsa_der_to_jws(&sign("-sha256", key_file, input.as_bytes()), 32),
        other => panic!("jws: unsupported alg {other}"),
    };
    format!("{input}.{}", b64url(&sig))
}

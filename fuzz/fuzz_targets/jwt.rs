//! JWT verification (`ringway::auth::jwt`) on arbitrary bytes: it never panics, and
//! whatever verifies obeys the time rules and round-trips through the token cache.
//!
//! The first input byte picks a mode, the next eight (little-endian) are `now`, the rest is
//! the body:
//!
//! - mode 0: the body as a raw token against a fixed RSA key (RFC 7515 A.2) and a fixed P-256
//!   key (RFC 7515 A.3), and through `bearer` and `cookie` first.
//! - mode 1: the body cut at NUL bytes into header and payload JSON, base64url-encoded and
//!   **signed** (ES256) with a key made at start-up, so the claim parser behind the signature
//!   check is reached too. An `Ok` must satisfy `now <= exp + 60` and `now + 60 >= nbf`, must be
//!   refused by the RSA key, and must come back from the cache unless `nbf > now`.
//! - mode 2: the body cut at NUL bytes into header, payload and signature bytes, each
//!   base64url-encoded: header parsing and the signature check with well-formed parts.
//!
//! `cargo +nightly fuzz run jwt -- -max_total_time=600`

#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use ringway::auth::jwt::{
    JwtKey, LEEWAY_SECS, TokenCache, Verified, bearer, cookie, verify,
};

const RSA_JWK: &str = r#"{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}"#;
const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

struct World {
    rsa: JwtKey,
    ec: JwtKey,
    rng: SystemRandom,
    signer: EcdsaKeyPair,
    signer_key: JwtKey,
}

fn key(text: &str) -> JwtKey {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).expect("fixed JWK is JSON");
    JwtKey::from_jwk(&map).expect("fixed JWK compiles")
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .expect("P-256 key generation");
    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("P-256 key parses");
    let point = signer.public_key().as_ref();
    let jwk = format!(
        r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65])
    );
    World {
        rsa: key(RSA_JWK),
        ec: key(EC_JWK),
        signer_key: key(&jwk),
        rng,
        signer,
    }
});

/// A verified result must obey the time rules.
fn check_times(v: &Verified, now: u64) {
    if let Some(exp) = v.exp {
        assert!(
            now <= exp.saturating_add(LEEWAY_SECS),
            "{v:?} expired at {now}"
        );
    }
    if let Some(nbf) = v.nbf {
        assert!(
            now.saturating_add(LEEWAY_SECS) >= nbf,
            "{v:?} not yet valid at {now}"
        );
    }
}

fn raw(w: &World, token: &[u8], now: u64) {
    for key in [&w.rsa, &w.ec] {
        if let Ok(v) = verify(token, key, now) {
            check_times(&v, now);
        }
    }
}

fn parts(body: &[u8]) -> impl Iterator<Item = String> + '_ {
    body.split(|&b| b == 0).map(|p| URL_SAFE_NO_PAD.encode(p))
}

fuzz_target!(|data: &[u8]| {
    let w = &*WORLD;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (now, body) = match rest.split_first_chunk::<8>() {
        Some((now, body)) => (u64::from_le_bytes(*now), body),
        None => (0, rest),
    };
    match mode % 3 {
        0 => {
            raw(w, body, now);
            if let Some(token) = bearer(body) {
                raw(w, token, now);
            }
            if let Some(token) = cookie(body, "id_token") {
                raw(w, token, now);
            }
        }
        1 => {
            let mut it = parts(body);
            let header = it.next().unwrap_or_default();
            let payload = it.next().unwrap_or_default();
            let input = format!("{header}.{payload}");
            let Ok(sig) = w.signer.sign(&w.rng, input.as_bytes()) else {
                return;
            };
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            let result = verify(token.as_bytes(), &w.signer_key, now);
            // No other key may accept it.
            for other in [&w.ec, &w.rsa] {
                assert!(verify(token.as_bytes(), other, now).is_err());
            }
            if let Ok(v) = result {
                check_times(&v, now);
                let mut cache = TokenCache::new(2);
                cache.insert(token.as_bytes(), v.clone(), now);
                let cached = cache.get(token.as_bytes(), now);
                if v.nbf.is_some_and(|nbf| nbf > now) {
                    assert!(cached.is_none());
                } else {
                    assert_eq!(cached, Some(&v));
                }
            }
        }
        _ => {
            let token = parts(body).collect::<Vec<_>>().join(".");
            raw(w, token.as_bytes(), now);
        }
    }
});

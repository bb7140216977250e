//! The oauth2 stage's cost per request (`ringway::auth::jwt`): full verification of
//! an RS256 (RSA-2048) and an ES256 (P-256) token, and the token-cache hit that replaces it
//! for a token seen before.
//!
//! ```text
//! cargo bench --bench stage_jwt
//! cargo bench --bench stage_jwt -- --warm-up-time 1 --measurement-time 3   # quick
//! cargo bench --bench stage_jwt -- --test                                  # smoke test
//! ```
//!
//! - `rs256_verify_uncached`, `es256_verify_uncached`: `verify` (split, base64url, header and
//!   claims JSON, ring's signature check).
//! - `rs256_verify_cached`, `es256_verify_cached`: `TokenCache::get` hitting, as the data path
//!   does before it would verify, in a cache filled to `TOKEN_CACHE_CAPACITY` with tokens of
//!   the same length.
//!
//! Tokens and keys are the fixtures of `tests/fixtures/jwt/` (made with pyca/cryptography).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ringway::auth::jwt::{JwtKey, TOKEN_CACHE_CAPACITY, TokenCache, verify};
use serde_json::Value;

const FIXTURES: &str = include_str!("../tests/fixtures/jwt/fixtures.json");

struct Case {
    name: &'static str,
    token: Vec<u8>,
    key: JwtKey,
}

fn cases() -> (Vec<Case>, u64) {
    let fx: Value = serde_json::from_str(FIXTURES).expect("fixtures.json is JSON");
    let now = fx["now"].as_u64().expect("fixture now");
    let case = |name: &'static str, token: &str, key: &str| {
        let jwk = fx["keys"][key].as_object().expect("fixture key");
        Case {
            name,
            token: fx["tokens"][token]
                .as_str()
                .expect("fixture token")
                .as_bytes()
                .to_vec(),
            key: JwtKey::from_jwk(jwk).expect("fixture key compiles"),
        }
    };
    (
        vec![
            case("rs256", "rs256", "rsa"),
            case("es256", "es256", "p256"),
        ],
        now,
    )
}

fn bench(c: &mut Criterion) {
    let (cases, now) = cases();
    for case in &cases {
        let verified = verify(&case.token, &case.key, now).expect("fixture token verifies");
        c.bench_function(&format!("{}_verify_uncached", case.name), |b| {
            b.iter(|| verify(black_box(&case.token), &case.key, black_box(now)))
        });

        let mut cache = TokenCache::new(TOKEN_CACHE_CAPACITY);
        // Fill the cache with look-alike tokens (same length, last bytes differ).
        for i in 0..TOKEN_CACHE_CAPACITY - 1 {
            let mut other = case.token.clone();
            let n = other.len();
            other[n - 4..].copy_from_slice(format!("{:04}", i % 10_000).as_bytes());
            cache.insert(&other, verified.clone(), now);
        }
        cache.insert(&case.token, verified.clone(), now);
        assert_eq!(cache.get(&case.token, now), Some(&verified));
        c.bench_function(&format!("{}_verify_cached", case.name), |b| {
            b.iter(|| {
                cache
                    .get(black_box(&case.token), black_box(now))
                    .map(|v| v.sub.is_some())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Key-pair (HMAC) authentication stage: [`parse_authorization`] + [`verify`] of one realistic
//! signed request (x-date + 2 other signed headers, 7 headers in all), per algorithm.
//!
//! ```text
//! cargo bench --bench stage_hmac -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - `hmac_sha256_verify`, `hmac_sha1_verify`: the whole stage as the data path runs it, key
//!   bytes in hand (the key-pair lookup by id is not included).
//!
//! The signature is made once with `ring` directly, and the stage is checked outside the
//! timed loop to pass and to allocate nothing (a counting global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use criterion::{Criterion, criterion_group, criterion_main};
use ring::hmac;
use ringway::auth::hmac::{SecretKey, SignedRequest, parse_authorization, verify};

/// Counts allocations, to check the stage makes none.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SECRET_ID: &str = "AKIDexample";
const SECRET_KEY: &[u8] = b"secretexample123";
/// 784 887 151 s after the epoch.
const X_DATE: &str = "Tue, 15 Nov 1994 08:12:31 GMT";
const SIGNED_AT: u64 = 784_887_151;
const SIGNED: &str = "x-date source content-type";

/// A request head as the data path sees it: names and values in arrival order.
struct Request {
    line: &'static [u8],
    headers: [(&'static str, &'static [u8]); 7],
}

impl SignedRequest for Request {
    fn header_values(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn request_line(&self) -> &[u8] {
        self.line
    }
}

const REQUEST: Request = Request {
    line: b"POST /v1/orders?customer=42 HTTP/1.1",
    headers: [
        ("Host", b"api.example.com"),
        ("User-Agent", b"ringway-bench/1.0"),
        ("Accept", b"application/json"),
        ("Content-Type", b"application/json; charset=utf-8"),
        ("Content-Length", b"128"),
        ("X-Date", X_DATE.as_bytes()),
        ("Source", b"orders-frontend"),
    ],
};

/// The `Authorization` value signing [`SIGNED`] of [`REQUEST`].
fn authorization(alg: hmac::Algorithm, name: &str) -> String {
    let signing_string = format!(
        "x-date: {X_DATE}\nsource: orders-frontend\ncontent-type: application/json; charset=utf-8"
    );
    let tag = hmac::sign(&hmac::Key::new(alg, SECRET_KEY), signing_string.as_bytes());
    let signature = BASE64.encode(tag.as_ref());
    format!(
        r#"hmac id="{SECRET_ID}", algorithm="{name}", headers="{SIGNED}", signature="{signature}""#
    )
}

fn stage(value: &[u8], key: &SecretKey, now: SystemTime) -> bool {
    parse_authorization(value)
        .and_then(|creds| verify(&creds, key, &REQUEST, now))
        .is_ok()
}

fn bench(c: &mut Criterion) {
    let now = UNIX_EPOCH + Duration::from_secs(SIGNED_AT + 30);
    // Prepared once, as the configuration loader does.
    let key = SecretKey::new(SECRET_KEY);
    let cases = [
        ("hmac_sha256_verify", hmac::HMAC_SHA256, "hmac-sha256"),
        (
            "hmac_sha1_verify",
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            "hmac-sha1",
        ),
    ];
    for (bench_name, alg, name) in cases {
        let value = authorization(alg, name);
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        assert!(
            stage(value.as_bytes(), &key, now),
            "{bench_name}: the request must verify"
        );
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(allocations, 0, "{bench_name}: the stage allocated");
        c.bench_function(bench_name, |b| {
            b.iter(|| stage(black_box(value.as_bytes()), &key, black_box(now)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

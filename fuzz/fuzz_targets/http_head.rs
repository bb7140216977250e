//! The request head parser on arbitrary bytes: it never panics, a complete head's offsets
//! lie inside the head, a Content-Length body respects the limit, and no strict prefix of a
//! complete head is itself complete. A complete head's target is visible ASCII and its Host
//! passes the RFC 3986 syntax check.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::config::Limits;
use ringway::http::authority::check_host;
use ringway::http::head::{BodyFraming, Progress, RequestHead, TARGET_BYTES, parse_head};

const LIMITS: Limits = Limits { max_header_bytes: 4096, max_headers: 32, max_uri_bytes: 512, max_body_bytes: 1 << 20 };

fuzz_target!(|data: &[u8]| {
    let mut head = RequestHead::default();
    let Ok(Progress::Complete) = parse_head(data, &LIMITS, &mut head) else { return };
    assert!(head.len <= data.len() && head.len <= LIMITS.max_header_bytes);
    let spans = [head.method, head.target].into_iter().chain(head.host).chain(head.headers.iter().flat_map(|(n, v)| [*n, *v]));
    for s in spans {
        assert!(s.start <= s.end && s.end as usize <= head.len, "{s:?} outside the head of {}", head.len);
    }
    assert!(!head.target.get(data).is_empty() && head.target.get(data).len() <= LIMITS.max_uri_bytes);
    assert!(head.target.get(data).iter().all(|b| TARGET_BYTES.contains(b)));
    assert_eq!(head.host.map_or(Ok(()), |h| check_host(h.get(data))), Ok(()));
    assert!(head.headers.len() <= LIMITS.max_headers);
    if let BodyFraming::Length(n) = head.body {
        assert!(n > 0 && n <= LIMITS.max_body_bytes);
    }
    assert!(head.minor_version == 1 || !matches!(head.body, BodyFraming::Chunked));
    for cut in [head.len - 1, head.len / 2, 1] {
        let mut h = RequestHead::default();
        assert_ne!(parse_head(&data[..cut], &LIMITS, &mut h).ok(), Some(Progress::Complete), "prefix of {cut}");
    }
});

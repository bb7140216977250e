//! The backend response head parser on arbitrary bytes: it never panics, a complete head's
//! offsets lie inside the head, a connection is never reusable after a close-delimited or
//! upgraded answer, and no strict prefix of a complete head is complete. The head the client
//! gets (`write_client_head`) parses again with the same status and framing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http::head::MAX_HEADERS_CAP;
use ringway::http::response::{
    ClientConnection, Progress, ResponseFraming, ResponseHead, parse_response_head, write_client_head,
};

fuzz_target!(|input: (bool, &[u8])| {
    let (head_request, data) = input;
    let mut head = ResponseHead::default();
    let Ok(Progress::Complete) = parse_response_head(data, head_request, &mut head) else { return };
    assert!(head.len <= data.len());
    for (n, v) in &head.headers {
        for s in [n, v] {
            assert!(s.start <= s.end && s.end as usize <= head.len);
        }
    }
    if matches!(head.framing, ResponseFraming::UntilClose | ResponseFraming::Upgrade) {
        assert!(!head.reusable);
    }
    if head_request && head.status != 101 {
        assert_eq!(head.framing, ResponseFraming::None);
    }
    for cut in [head.len - 1, head.len / 2] {
        let mut h = ResponseHead::default();
        assert_ne!(parse_response_head(&data[..cut], head_request, &mut h).ok(), Some(Progress::Complete));
    }
    // The gateway adds up to two headers; past the parser's own cap it cannot re-check them.
    if head.headers.len() + 2 > MAX_HEADERS_CAP {
        return;
    }
    let mut out = Vec::new();
    write_client_head(data, &head, "rid", ClientConnection::Close, b"", &mut out);
    let mut again = ResponseHead::default();
    assert_eq!(parse_response_head(&out, head_request, &mut again).ok(), Some(Progress::Complete));
    assert_eq!((again.status, again.framing), (head.status, head.framing));
    assert_eq!(again.len, out.len());
});

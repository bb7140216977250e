//! The Redis store's reply framing (`ringway::traffic::redis::wire`) on arbitrary bytes: no
//! panic; a frame `frame_len` calls complete decodes (through the `redis-protocol` crate)
//! to exactly its bytes, and every shorter prefix of it is incomplete; bytes after a frame
//! change nothing about it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::traffic::redis::wire::{decode_frame, frame_len};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(n)) = frame_len(data) else {
        return;
    };
    assert!(n <= data.len());
    let frame = &data[..n];
    // The frame alone measures the same.
    assert_eq!(frame_len(frame), Ok(Some(n)));
    // Every proper prefix is incomplete (a few cuts: all of them would be quadratic).
    for cut in [0, n / 3, n / 2, n.saturating_sub(1)] {
        if cut < n {
            assert_eq!(frame_len(&frame[..cut]), Ok(None), "prefix {cut} of {n}");
        }
    }
    // What the framing accepts, the decoder accepts.
    assert!(decode_frame(frame).is_ok(), "{:?}", String::from_utf8_lossy(frame));
});

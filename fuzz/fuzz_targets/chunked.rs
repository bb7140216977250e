//! The chunked-body scanner on arbitrary bytes fed in arbitrary pieces: it never panics,
//! the answer does not depend on how the bytes were split, and a body it calls complete is
//! complete on its own (re-scanning exactly the consumed bytes ends at the same place).

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::http::chunked::ChunkedScanner;

const MAX_BODY: u64 = 1 << 16;

/// Scans `data` in the given pieces; `(consumed, done)` or `None` on error.
fn scan(data: &[u8], cuts: &[usize]) -> Option<(usize, bool)> {
    let mut s = ChunkedScanner::new(MAX_BODY);
    let mut pos = 0;
    for &cut in cuts.iter().chain([&data.len()]) {
        let cut = cut.clamp(pos, data.len());
        let r = s.scan(&data[pos..cut]).ok()?;
        pos += r.consumed;
        if r.done {
            return Some((pos, true));
        }
        if pos < cut {
            return None; // consumed less without finishing: impossible, flagged below
        }
    }
    Some((pos, false))
}

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (data, raw_cuts) = input;
    let mut cuts: Vec<usize> = raw_cuts.iter().map(|&c| c as usize % (data.len() + 1)).collect();
    cuts.sort_unstable();
    let whole = scan(&data, &[]);
    let pieces = scan(&data, &cuts);
    assert_eq!(whole, pieces, "split at {cuts:?}");
    if let Some((n, true)) = whole {
        assert_eq!(scan(&data[..n], &[]), Some((n, true)));
    }
    if let Some((n, false)) = whole {
        assert_eq!(n, data.len(), "an unfinished body consumes everything it was given");
    }
});

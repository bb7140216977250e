//! Query-string handling (`ringway::gateway::query`) on arbitrary bytes.
//!
//! - As a query string (when the bytes are UTF-8): `pairs` never panics, its pairs are the
//!   non-empty `&`-separated pieces in order, each split at its first `=`, with a range that
//!   gives back its text; `decode_into`, `decode_path_into`, `name_is` and `first` never panic
//!   and agree with a naive reference decoder written here.
//! - As a value: `encode_into` then `decode_into` (and `decode_path_into`) gives the bytes
//!   back when they are UTF-8 and refuses them when they are not; the encoding is made of
//!   unreserved bytes and `%XX` only.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway::gateway::query::{
    decode_into, decode_path_into, encode_into, first, is_unreserved, name_is, pairs,
};

/// The obvious decoder: `%` + two hex digits is a byte, `+` a space when `plus`; anything
/// else after `%` is an error; the bytes must be UTF-8.
fn reference(raw: &str, plus: bool) -> Option<String> {
    let b = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fuzz_target!(|data: &[u8]| {
    let mut dec = String::new();

    // Round trip of any byte string.
    let mut enc = Vec::new();
    encode_into(data, &mut enc);
    assert!(enc.iter().all(|&b| is_unreserved(b) || b == b'%'));
    let enc = std::str::from_utf8(&enc).expect("the encoding is ASCII");
    let want = std::str::from_utf8(data).ok();
    assert_eq!(decode_into(enc, &mut dec).then_some(dec.as_str()), want);
    assert_eq!(decode_path_into(enc, &mut dec).then_some(dec.as_str()), want);
    if let Some(s) = want {
        assert!(name_is(enc, s));
    }

    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let expected: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    let got: Vec<_> = pairs(query).collect();
    assert_eq!(got.len(), expected.len());
    let mut last_end = 0;
    let mut names: Vec<Option<String>> = Vec::new();
    for (p, text) in got.iter().zip(&expected) {
        assert!(p.range.start >= last_end && p.range.end > p.range.start);
        last_end = p.range.end;
        assert_eq!(&query[p.range.clone()], *text);
        match text.split_once('=') {
            Some((n, v)) => assert_eq!((p.name, p.value), (n, v)),
            None => assert_eq!((p.name, p.value), (*text, "")),
        }
        for raw in [p.name, p.value] {
            let ok = decode_into(raw, &mut dec);
            assert_eq!(ok.then_some(dec.as_str()), reference(raw, true).as_deref());
            let ok = decode_path_into(raw, &mut dec);
            assert_eq!(ok.then_some(dec.as_str()), reference(raw, false).as_deref());
        }
        names.push(reference(p.name, true));
    }
    // `name_is` and `first` against the reference, for every decodable name of the query and
    // a few fixed ones.
    let mut wanted: Vec<&str> = names.iter().flatten().map(String::as_str).take(16).collect();
    wanted.extend(["", "a", "id", " ", "+", "%"]);
    for name in wanted {
        for (p, decoded) in got.iter().zip(&names).take(64) {
            assert_eq!(
                name_is(p.name, name),
                decoded.as_deref() == Some(name),
                "{:?} vs {name:?}",
                p.name
            );
        }
        let reference_first = got
            .iter()
            .zip(&names)
            .find(|(_, d)| d.as_deref() == Some(name))
            .map(|(p, _)| p.value);
        assert_eq!(first(query, name), reference_first);
    }
});

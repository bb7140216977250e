//! Query strings and percent-encoding, without allocating (SPEC §3 parameters).
//!
//! A query string is read as sent: [`pairs`] splits it on `&` into `name[=value]` pairs whose
//! name and value are still encoded, and nothing is decoded until someone asks. Decoding
//! ([`decode_into`], [`decode_path_into`]) writes into a caller-owned `String` that keeps its
//! capacity from request to request; [`name_is`] compares an encoded name with a plain one
//! byte by byte, decoding on the fly. [`encode_into`] is the inverse used to put a value into a
//! backend query string.
//!
//! Choices, for the contract:
//! - Only `&` separates pairs (not `;`); empty pairs (`a=1&&b=2`, a leading or trailing `&`)
//!   are skipped. A pair is split at its *first* `=`: `a=b=c` is name `a`, value `b=c`; a pair
//!   without `=` has the empty value, as `a=` has.
//! - In a query component `+` is a space (HTML form encoding) and `%2B` is a `+`. In a path
//!   segment ([`decode_path_into`]) `+` is itself.
//! - `%` must be followed by two hex digits (either case); anything else is a bad escape, and
//!   a decoded result that is not UTF-8 is refused too. A name with a bad escape equals no name.
//! - A repeated name: [`first`] gives the first value (as most frameworks and the gateway's
//!   parameter stage do); later ones are left to the backend.

use std::ops::Range;

/// One `name[=value]` pair of a query string, as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair<'a> {
    /// The raw (still encoded) name: the bytes before the first `=`.
    pub name: &'a str,
    /// The raw (still encoded) value: the bytes after the first `=`; `""` when there is none.
    pub value: &'a str,
    /// The pair's bytes within the query (`&query[range]` is `name`, or `name=value`).
    pub range: Range<usize>,
}

/// The pairs of a query string, in order: see [`pairs`].
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    query: &'a str,
    pos: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Pair<'a>;

    fn next(&mut self) -> Option<Pair<'a>> {
        let bytes = self.query.as_bytes();
        while self.pos < bytes.len() {
            let start = self.pos;
            let end = memchr(b'&', &bytes[start..]).map_or(bytes.len(), |i| start + i);
            self.pos = end + 1;
            if end == start {
                continue;
            }
            let text = &self.query[start..end];
            let (name, value) = match memchr(b'=', text.as_bytes()) {
                Some(eq) => (&text[..eq], &text[eq + 1..]),
                None => (text, ""),
            };
            return Some(Pair {
                name,
                value,
                range: start..end,
            });
        }
        None
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// The `name[=value]` pairs of `query` (without its `?`), split on `&`; empty pairs are
/// skipped, a pair without `=` has the value `""`. Nothing is decoded.
pub fn pairs(query: &str) -> Pairs<'_> {
    Pairs { query, pos: 0 }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the component `raw` byte by byte, calling `emit` with each decoded byte; `plus`:
/// `+` is a space. `false` at the first bad escape (what was emitted until then stays).
#[inline]
fn decode_each(raw: &[u8], plus: bool, mut emit: impl FnMut(u8) -> bool) -> bool {
    let mut i = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    raw.get(i + 1).copied().and_then(hex_digit),
                    raw.get(i + 2).copied().and_then(hex_digit),
                ) else {
                    return false;
                };
                i += 2;
                hi << 4 | lo
            }
            b'+' if plus => b' ',
            b => b,
        };
        if !emit(b) {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether decoding `raw` changes anything at all.
#[inline]
fn needs_decoding(raw: &str, plus: bool) -> bool {
    raw.bytes().any(|b| b == b'%' || (plus && b == b'+'))
}

fn decode_string(raw: &str, plus: bool, out: &mut String) -> bool {
    out.clear();
    if !needs_decoding(raw, plus) {
        out.push_str(raw);
        return true;
    }
    // Decode into the String's own buffer (its capacity is kept whatever happens), then give
    // it back as a String only if the bytes are UTF-8.
    let mut bytes = std::mem::take(out).into_bytes();
    let escapes_ok = decode_each(raw.as_bytes(), plus, |b| {
        bytes.push(b);
        true
    });
    match String::from_utf8(bytes) {
        Ok(s) if escapes_ok => {
            *out = s;
            true
        }
        Ok(mut s) => {
            s.clear();
            *out = s;
            false
        }
        Err(e) => {
            let mut bytes = e.into_bytes();
            bytes.clear();
            *out = String::from_utf8(bytes).unwrap_or_default();
            false
        }
    }
}

/// Percent-decodes a query component (`+` is a space) into `out` (cleared first).
/// `false`: a bad `%XX` escape or the result is not UTF-8; `out` is then left empty.
pub fn decode_into(raw: &str, out: &mut String) -> bool {
    decode_string(raw, true, out)
}

/// Percent-decodes a path segment or path capture into `out` (cleared first); unlike
/// [`decode_into`], `+` stays a `+`. `false`: a bad `%XX` escape or the result is not UTF-8;
/// `out` is then left empty.
pub fn decode_path_into(raw: &str, out: &mut String) -> bool {
    decode_string(raw, false, out)
}

/// A query component decoded: `raw` itself when it has nothing to decode (no copy), else the
/// decoded text written into `scratch`. `None`: a bad escape or not UTF-8.
pub fn decoded<'a>(raw: &'a str, scratch: &'a mut String) -> Option<&'a str> {
    if !needs_decoding(raw, true) {
        return Some(raw);
    }
    decode_into(raw, scratch).then_some(scratch.as_str())
}

/// A path capture decoded (no `+` rule): as [`decoded`].
pub fn decoded_path<'a>(raw: &'a str, scratch: &'a mut String) -> Option<&'a str> {
    if !needs_decoding(raw, false) {
        return Some(raw);
    }
    decode_path_into(raw, scratch).then_some(scratch.as_str())
}

/// Whether a raw (still encoded) name equals `name` after decoding (`+` is a space), without
/// allocating. A raw name with a bad escape equals nothing.
pub fn name_is(raw: &str, name: &str) -> bool {
    if !needs_decoding(raw, true) {
        return raw == name;
    }
    let want = name.as_bytes();
    // Decoded bytes are never more than raw bytes, and never fewer than a third of them.
    if want.len() > raw.len() || want.len() * 3 < raw.len() {
        return false;
    }
    let mut n = 0;
    decode_each(raw.as_bytes(), true, |b| {
        let same = want.get(n) == Some(&b);
        n += 1;
        same
    }) && n == want.len()
}

/// The raw (still encoded) value of the *first* pair whose decoded name is `name`; later pairs
/// of the same name are ignored. `Some("")` for `name` or `name=`.
pub fn first<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    pairs(query)
        .find(|p| name_is(p.name, name))
        .map(|p| p.value)
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Whether a byte is an RFC 3986 unreserved character: `ALPHA / DIGIT / - . _ ~`.
#[inline]
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Percent-encodes `v` for a query component (or a path segment), appending to `out`: RFC 3986
/// unreserved bytes as they are, every other byte as `%XX` (uppercase hex). A space is `%20`,
/// never `+`, so the result reads the same with or without the `+` rule.
pub fn encode_into(v: &[u8], out: &mut Vec<u8>) {
    for &b in v {
        if is_unreserved(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[
                b'%',
                HEX_UPPER[usize::from(b >> 4)],
                HEX_UPPER[usize::from(b & 0xF)],
            ]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pair as `(name, value, its text)`.
    type Split<'a> = (&'a str, &'a str, &'a str);

    fn split(q: &str) -> Vec<Split<'_>> {
        pairs(q)
            .map(|p| (p.name, p.value, &q[p.range.clone()]))
            .collect()
    }

    #[test]
    fn pairs_split_on_ampersand() {
        let cases: &[(&str, &[Split])] = &[
            ("", &[]),
            ("&", &[]),
            ("&&&", &[]),
            ("a=1", &[("a", "1", "a=1")]),
            ("a=1&b=2", &[("a", "1", "a=1"), ("b", "2", "b=2")]),
            ("&a=1&&b=2&", &[("a", "1", "a=1"), ("b", "2", "b=2")]),
            ("flag", &[("flag", "", "flag")]),
            ("flag=", &[("flag", "", "flag=")]),
            ("=v", &[("", "v", "=v")]),
            ("=", &[("", "", "=")]),
            ("a=b=c", &[("a", "b=c", "a=b=c")]),
            ("a==", &[("a", "=", "a==")]),
            ("a;b=1", &[("a;b", "1", "a;b=1")]),
            (
                "x&y=%20&z=+",
                &[("x", "", "x"), ("y", "%20", "y=%20"), ("z", "+", "z=+")],
            ),
            ("é=ü&k", &[("é", "ü", "é=ü"), ("k", "", "k")]),
        ];
        for (q, want) in cases {
            assert_eq!(split(q), *want, "{q:?}");
        }
        let q = "&a=1&&bb=22";
        let ranges: Vec<_> = pairs(q).map(|p| p.range).collect();
        assert_eq!(ranges, [1..4, 6..11]);
    }

    #[test]
    fn decoding() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            // raw, query component, path segment
            ("", Some(""), Some("")),
            ("plain", Some("plain"), Some("plain")),
            ("a%20b", Some("a b"), Some("a b")),
            ("a+b", Some("a b"), Some("a+b")),
            ("a%2Bb", Some("a+b"), Some("a+b")),
            ("a%2bb", Some("a+b"), Some("a+b")),
            ("%41%62%7e", Some("Ab~"), Some("Ab~")),
            ("%2F%3f%26%3D", Some("/?&="), Some("/?&=")),
            ("%C3%A9t%C3%A9", Some("été"), Some("été")),
            ("été", Some("été"), Some("été")),
            ("%00", Some("\0"), Some("\0")),
            ("100%", None, None),
            ("%", None, None),
            ("%4", None, None),
            ("a%4", None, None),
            ("%zz", None, None),
            ("%g0", None, None),
            ("%0g", None, None),
            ("%%41", None, None),
            ("% 1", None, None),
            ("%FF", None, None),
            ("%C3", None, None),
            ("%C3%28", None, None),
            ("%ED%A0%80", None, None),
            ("+%FF", None, None),
        ];
        let mut out = String::from("stale");
        for &(raw, query, path) in cases {
            let ok = decode_into(raw, &mut out);
            assert_eq!(ok.then(|| out.clone()).as_deref(), query, "query {raw:?}");
            if !ok {
                assert_eq!(out, "", "cleared after a failure: {raw:?}");
            }
            let ok = decode_path_into(raw, &mut out);
            assert_eq!(ok.then(|| out.clone()).as_deref(), path, "path {raw:?}");
            let mut scratch = String::new();
            assert_eq!(decoded(raw, &mut scratch), query, "decoded {raw:?}");
            let mut scratch = String::new();
            assert_eq!(
                decoded_path(raw, &mut scratch),
                path,
                "decoded_path {raw:?}"
            );
        }
    }

    #[test]
    fn decoding_keeps_the_buffer() {
        let mut out = String::with_capacity(64);
        let cap = out.capacity();
        for raw in ["a%20b", "%FF", "%zz", "plain", "%C3%A9"] {
            decode_into(raw, &mut out);
            assert_eq!(out.capacity(), cap, "{raw:?}");
        }
        // Nothing to decode: the raw text itself, no copy.
        let raw = String::from("abc");
        let mut scratch = String::new();
        assert_eq!(decoded(&raw, &mut scratch).unwrap().as_ptr(), raw.as_ptr());
        assert_eq!(scratch.capacity(), 0);
    }

    #[test]
    fn names() {
        let cases: &[(&str, &str, bool)] = &[
            ("a", "a", true),
            ("a", "A", false),
            ("a", "ab", false),
            ("ab", "a", false),
            ("", "", true),
            ("%61", "a", true),
            ("%61%62", "ab", true),
            ("%61%62", "a", false),
            ("%61", "ab", false),
            ("user+id", "user id", true),
            ("user%20id", "user id", true),
            ("user+id", "user+id", false),
            ("user%2Bid", "user+id", true),
            ("x%5B%5D", "x[]", true),
            ("%C3%A9", "é", true),
            ("%C3", "é", false),
            ("%zz", "%zz", false),
            ("%", "%", false),
            ("a%", "a", false),
            ("a%6", "a", false),
        ];
        for &(raw, name, want) in cases {
            assert_eq!(name_is(raw, name), want, "{raw:?} vs {name:?}");
        }
    }

    #[test]
    fn first_of_repeated() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("a=1&a=2", "a", Some("1")),
            ("b=0&a=1&a=2", "a", Some("1")),
            ("a&a=2", "a", Some("")),
            ("a=&a=2", "a", Some("")),
            ("%61=enc&a=plain", "a", Some("enc")),
            ("A=1", "a", None),
            ("ab=1", "a", None),
            ("", "a", None),
            ("x=%zz&x=1", "x", Some("%zz")),
            ("%zz=1&q=2", "q", Some("2")),
            ("my+name=v", "my name", Some("v")),
        ];
        for &(q, name, want) in cases {
            assert_eq!(first(q, name), want, "{q:?} {name:?}");
        }
    }

    #[test]
    fn encoding() {
        let mut out = Vec::new();
        encode_into(b"aZ09-._~ /?&=+%\xff\x00", &mut out);
        assert_eq!(out, b"aZ09-._~%20%2F%3F%26%3D%2B%25%FF%00");
        out.clear();
        encode_into("é".as_bytes(), &mut out);
        assert_eq!(out, b"%C3%A9");
    }

    /// Every byte string goes through encode then decode unchanged when it is UTF-8, and
    /// decoding refuses it when it is not; both decoders agree on encoded text.
    #[test]
    fn encode_decode_round_trip() {
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"plain".to_vec(),
            b"a b+c&d=e%f".to_vec(),
            "été ✓ 𝄞".as_bytes().to_vec(),
            (0u8..0x80).collect(),
            vec![0xff],
            vec![b'a', 0xc3],
            vec![0xed, 0xa0, 0x80],
        ];
        // Every one- and two-byte string.
        for a in 0..=255u8 {
            inputs.push(vec![a]);
            for b in (0..=255u8).step_by(7) {
                inputs.push(vec![a, b]);
            }
        }
        let (mut enc, mut dec) = (Vec::new(), String::new());
        for v in &inputs {
            enc.clear();
            encode_into(v, &mut enc);
            assert!(enc.iter().all(|&b| is_unreserved(b) || b == b'%'));
            let enc = std::str::from_utf8(&enc).unwrap();
            let want = std::str::from_utf8(v).ok();
            let got = decode_into(enc, &mut dec).then(|| dec.clone());
            assert_eq!(got.as_deref(), want, "{v:?}");
            let got = decode_path_into(enc, &mut dec).then(|| dec.clone());
            assert_eq!(got.as_deref(), want, "{v:?}");
            if let Some(s) = want {
                assert!(name_is(enc, s), "{v:?}");
                let q = format!("z=0&{enc}=v&{enc}=w");
                assert_eq!(first(&q, s), if s == "z" { Some("0") } else { Some("v") });
            }
        }
    }
}

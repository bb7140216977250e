//! Streaming scan of a chunked body (RFC 9112 §7.1), for relaying it unchanged.
//!
//! The gateway passes chunked bodies through as they are ("chunked stays chunked"), but it
//! must know where the body ends, so that the next request on the connection starts at the
//! right byte, and it must refuse framing that another party could read differently.
//! [`ChunkedScanner::scan`] is fed the bytes as they arrive, in any split; it says how many
//! of them belong to the body (to be forwarded verbatim) and whether the body is complete.
//! It keeps no buffer: its state is an explicit enum of where in the grammar it stands.

use crate::error::{ErrorKind, GatewayError};

/// Longest chunk-size line, extensions included.
pub const MAX_CHUNK_LINE_BYTES: usize = 4096;
/// Most bytes of trailer fields after the last chunk.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Most hex digits in a chunk size (16 fill a u64).
const MAX_SIZE_DIGITS: u8 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size {
        value: u64,
        digits: u8,
    },
    /// The size line past the size, in its extensions (RFC 9112 §7.1.1).
    Ext {
        value: u64,
        at: Ext,
    },
    /// CR of the size line seen; LF expected.
    SizeLf {
        value: u64,
    },
    /// Chunk data still to come.
    Data {
        remaining: u64,
    },
    /// CRLF after the chunk data.
    DataCr,
    DataLf,
    /// Trailer section: at the start of a line (an empty line ends the body).
    TrailerLineStart,
    /// Inside a trailer line.
    TrailerLine,
    /// CR of a trailer line seen; `last` if the line was empty.
    TrailerLf {
        last: bool,
    },
    Done,
}

/// Where a size line stands after its size, by the grammar of RFC 9112 §7.1.1:
///
/// ```text
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token
/// chunk-ext-val  = token / quoted-string
/// ```
///
/// BWS is optional whitespace, so whitespace is allowed only where a `;` or `=` follows:
/// `5 \r\n`, `5;a \r\n` and `5;a=b \r\n` are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    /// Whitespace after the size or after an extension value: only `;` may follow.
    BeforeSemicolon,
    /// After `;`: whitespace, then a name.
    BeforeName,
    /// In a name: CR, `;`, `=` or whitespace (then `=` or `;`) may end it.
    Name,
    /// Whitespace after a name: `=` or `;` must follow.
    AfterName,
    /// After `=`: whitespace, then a token or a quoted string.
    BeforeValue,
    /// In a token value.
    Token,
    /// In a quoted-string value, after its opening `"`.
    Quoted,
    /// After a `\` in a quoted string.
    QuotedPair,
    /// After the closing `"`: CR, `;` or whitespace (then `;`).
    AfterQuoted,
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 §5.6.4 `qdtext`.
fn is_qdtext(b: u8) -> bool {
    matches!(b, b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff)
}

/// Result of one [`ChunkedScanner::scan`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes of the input that belong to the body.
    pub consumed: usize,
    /// The body ended within them.
    pub done: bool,
}

#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: State,
    line_bytes: usize,
    trailer_bytes: usize,
    data_bytes: u64,
    max_body_bytes: u64,
}

fn bad(why: &'static str) -> GatewayError {
    GatewayError::new(ErrorKind::BadRequest(why))
}

impl ChunkedScanner {
    /// `max_body_bytes` bounds the sum of the chunk data (413 past it).
    pub fn new(max_body_bytes: u64) -> ChunkedScanner {
        ChunkedScanner {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            line_bytes: 0,
            trailer_bytes: 0,
            data_bytes: 0,
            max_body_bytes,
        }
    }

    /// Scans the next bytes of the body. Once done, nothing more is consumed.
    pub fn scan(&mut self, input: &[u8]) -> Result<Scanned, GatewayError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data { remaining } = self.state {
                // Skip chunk data in one step.
                let take = remaining.min((input.len() - i) as u64);
                i += take as usize;
                self.state = if take == remaining {
                    State::DataCr
                } else {
                    State::Data {
                        remaining: remaining - take,
                    }
                };
                continue;
            }
            if self.state == State::Done {
                break;
            }
            self.step(input[i])?;
            i += 1;
            if self.state == State::Done {
                break;
            }
        }
        Ok(Scanned {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn step(&mut self, b: u8) -> Result<(), GatewayError> {
        self.state = match self.state {
            State::Size { value, digits } => {
                self.count_line_byte()?;
                match b {
                    _ if b.is_ascii_hexdigit() => {
                        if digits == MAX_SIZE_DIGITS {
                            return Err(bad("chunk size too large"));
                        }
                        let d = (b as char).to_digit(16).unwrap_or_default() as u64;
                        State::Size {
                            value: (value << 4) | d,
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(bad("bad chunk size")),
                    b' ' | b'\t' => State::Ext {
                        value,
                        at: Ext::BeforeSemicolon,
                    },
                    b';' => State::Ext {
                        value,
                        at: Ext::BeforeName,
                    },
                    b'\r' => State::SizeLf { value },
                    _ => return Err(bad("bad chunk size")),
                }
            }
            State::Ext { value, at } => {
                self.count_line_byte()?;
                match Self::ext_step(at, b) {
                    Some(Some(at)) => State::Ext { value, at },
                    Some(None) => State::SizeLf { value },
                    None => return Err(bad("bad chunk size line")),
                }
            }
            State::SizeLf { value } => {
                if b != b'\n' {
                    return Err(bad("bare CR in a chunk size line"));
                }
                self.line_bytes = 0;
                if value == 0 {
                    State::TrailerLineStart
                } else {
                    self.data_bytes = self.data_bytes.saturating_add(value);
                    if self.data_bytes > self.max_body_bytes {
                        return Err(GatewayError::new(ErrorKind::BodyTooLarge));
                    }
                    State::Data { remaining: value }
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size {
                value: 0,
                digits: 0,
            },
            State::DataCr | State::DataLf => return Err(bad("chunk data not followed by CRLF")),
            State::TrailerLineStart | State::TrailerLine => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILER_BYTES {
                    return Err(GatewayError::new(ErrorKind::HeadTooLarge));
                }
                match b {
                    b'\r' => State::TrailerLf {
                        last: self.state == State::TrailerLineStart,
                    },
                    b'\t' | b' '..=b'~' | 0x80..=0xff => State::TrailerLine,
                    _ => return Err(bad("bad byte in a trailer field")),
                }
            }
            State::TrailerLf { last } => {
                if b != b'\n' {
                    return Err(bad("bare CR in a trailer field"));
                }
                if last {
                    State::Done
                } else {
                    State::TrailerLineStart
                }
            }
            State::Data { .. } | State::Done => self.state,
        };
        Ok(())
    }

    /// One byte of a size line's extensions: the next place in them, `Some(None)` for the CR
    /// that ends the line, `None` for a byte the grammar does not allow there.
    fn ext_step(at: Ext, b: u8) -> Option<Option<Ext>> {
        let ws = b == b' ' || b == b'\t';
        Some(Some(match at {
            Ext::BeforeSemicolon if ws => Ext::BeforeSemicolon,
            Ext::BeforeName if ws => Ext::BeforeName,
            Ext::BeforeName | Ext::Name if is_tchar(b) => Ext::Name,
            Ext::Name | Ext::AfterName if ws => Ext::AfterName,
            Ext::Name | Ext::AfterName if b == b'=' => Ext::BeforeValue,
            Ext::BeforeValue if ws => Ext::BeforeValue,
            Ext::BeforeValue | Ext::Token if is_tchar(b) => Ext::Token,
            Ext::BeforeValue if b == b'"' => Ext::Quoted,
            Ext::Quoted if b == b'"' => Ext::AfterQuoted,
            Ext::Quoted if b == b'\\' => Ext::QuotedPair,
            Ext::Quoted if is_qdtext(b) => Ext::Quoted,
            // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            Ext::QuotedPair if ws || b.is_ascii_graphic() || b >= 0x80 => Ext::Quoted,
            Ext::Token | Ext::AfterQuoted if ws => Ext::BeforeSemicolon,
            Ext::BeforeSemicolon | Ext::Name | Ext::AfterName | Ext::Token | Ext::AfterQuoted
                if b == b';' =>
            {
                Ext::BeforeName
            }
            Ext::Name | Ext::Token | Ext::AfterQuoted if b == b'\r' => return Some(None),
            _ => return None,
        }))
    }

    fn count_line_byte(&mut self) -> Result<(), GatewayError> {
        self.line_bytes += 1;
        if self.line_bytes > MAX_CHUNK_LINE_BYTES {
            return Err(bad("chunk size line too long"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(body: &[u8]) -> Result<Scanned, GatewayError> {
        ChunkedScanner::new(1 << 20).scan(body)
    }

    #[test]
    fn complete_bodies() {
        for body in [
            &b"0\r\n\r\n"[..],
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5;name=value\r\nhello\r\nA \t; x\r\n0123456789\r\n0\r\n\r\n",
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n",
            b"0000000000000001\r\nz\r\n0\r\n\r\n",
        ] {
            let s = scan_all(body)
                .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(body)));
            assert_eq!(
                s,
                Scanned {
                    consumed: body.len(),
                    done: true
                },
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn the_body_ends_where_the_next_request_begins() {
        let wire = b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            scan_all(wire).unwrap(),
            Scanned {
                consumed: 12,
                done: true
            }
        );
    }

    #[test]
    fn every_split_gives_the_same_answer() {
        let body = b"5;e=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nT: v\r\n\r\nNEXT";
        let end = body.len() - 4;
        for cut in 0..end {
            let mut s = ChunkedScanner::new(1 << 20);
            let a = s.scan(&body[..cut]).unwrap();
            assert!(!a.done && a.consumed == cut, "cut {cut}");
            let b = s.scan(&body[cut..]).unwrap();
            assert_eq!(cut + b.consumed, end, "cut {cut}");
            assert!(b.done);
        }
    }

    #[test]
    fn bad_framing_is_400() {
        for body in [
            &b"\r\n"[..],
            b"g\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5 x\r\n",
            b"-5\r\n",
            b"0x5\r\n",
            b"11111111111111111\r\n",
            b"5;a\x00b\r\n",
            b"0\r\nX: \x01\r\n\r\n",
            b"0\r\n\n",
            b"0\r\nX: y\n\r\n",
        ] {
            match scan_all(body) {
                Err(e) => assert_eq!(e.status(), 400, "{:?}: {e}", String::from_utf8_lossy(body)),
                Ok(s) => panic!("{:?} accepted: {s:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    /// Chunk-size lines exactly as RFC 9112 §7.1 writes them: each line alone, `true` when
    /// it is a whole, valid line.
    #[test]
    fn size_lines() {
        let cases: &[(&[u8], bool)] = &[
            (b"5\r\n", true),
            (b"5;a=b\r\n", true),
            (b"5 ; a = \"x y\"\r\n", true),
            (b"5\t;\ta\t=\tb\r\n", true),
            (b"5;a\r\n", true),
            (b"5;a;b=c;d=\"\"\r\n", true),
            (b"5;a ;b\r\n", true),
            (b"5;a = b ; c\r\n", true),
            (b"5;a=\"q\\\"uo\\\\te\"\r\n", true),
            (b"5;a=\"x\" ;b=\"\x80\"\r\n", true),
            (b"5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\n", true),
            (b"aBcDeF\r\n", true),
            (b"FFFFFFFFFFFFFFFF\r\n", true),
            (b"5 \r\n", false),
            (b" 5\r\n", false),
            (b"5\t\r\n", false),
            (b"5;\r\n", false),
            (b"5; \r\n", false),
            (b"5;=x\r\n", false),
            (b"5;a=\r\n", false),
            (b"5;a= \r\n", false),
            (b"5;a \r\n", false),
            (b"5;a=b \r\n", false),
            (b"5;a=\"x\" \r\n", false),
            (b"5;a=\"x\"b\r\n", false),
            (b"5;a=b\"c\"\r\n", false),
            (b"5;a=b=c\r\n", false),
            (b"5;a b\r\n", false),
            (b"5;a@b\r\n", false),
            (b"5;a=b,c\r\n", false),
            (b"5;a=\"unterminated\r\n", false),
            (b"5;a=\"x\x01\"\r\n", false),
            (b"5;a=\"x\\\x01\"\r\n", false),
            (b"5;a=\"x\\\r\n", false),
            (b"5 5\r\n", false),
            (b"5 x\r\n", false),
            (b"0x5\r\n", false),
            (b"+5\r\n", false),
            (b"-5\r\n", false),
            (b"5\n", false),
            (b"5;a\n", false),
            (b"5\r\r\n", false),
            (b"\r\n", false),
            (b"10000000000000000\r\n", false),
        ];
        for &(line, valid) in cases {
            let show = String::from_utf8_lossy(line);
            let got = ChunkedScanner::new(u64::MAX).scan(line);
            if valid {
                assert_eq!(
                    got.map(|s| s.consumed),
                    Ok(line.len()),
                    "{show:?} is a valid size line"
                );
            } else {
                match got {
                    Err(e) => assert_eq!(e.status(), 400, "{show:?}: {e}"),
                    Ok(s) => panic!("{show:?} accepted: {s:?}"),
                }
            }
        }
        // The last chunk takes extensions too, and trailers still follow it.
        for body in [
            &b"0\r\n\r\n"[..],
            b"0;a=\"b\"\r\n\r\n",
            b"0 ;a\r\nT: v\r\n\r\n",
        ] {
            assert_eq!(
                scan_all(body).map(|s| (s.consumed, s.done)),
                Ok((body.len(), true)),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn limits() {
        let mut s = ChunkedScanner::new(10);
        assert_eq!(s.scan(b"6\r\nabcdef\r\n").unwrap().consumed, 11);
        assert_eq!(s.scan(b"5\r\n").unwrap_err().status(), 413);
        let long_ext = format!("1;{}\r\n", "e".repeat(MAX_CHUNK_LINE_BYTES));
        assert_eq!(scan_all(long_ext.as_bytes()).unwrap_err().status(), 400);
        let long_trailer = format!("0\r\nX: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES));
        assert_eq!(scan_all(long_trailer.as_bytes()).unwrap_err().status(), 431);
    }
}

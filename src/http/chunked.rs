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
    /// Whitespace after the size, before `;` or CR.
    SizeWhitespace {
        value: u64,
    },
    /// A chunk extension, up to CR.
    Extension {
        value: u64,
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
                    b' ' | b'\t' => State::SizeWhitespace { value },
                    b';' => State::Extension { value },
                    b'\r' => State::SizeLf { value },
                    _ => return Err(bad("bad chunk size")),
                }
            }
            State::SizeWhitespace { value } => {
                self.count_line_byte()?;
                match b {
                    b' ' | b'\t' => State::SizeWhitespace { value },
                    b';' => State::Extension { value },
                    b'\r' => State::SizeLf { value },
                    _ => return Err(bad("bad chunk size line")),
                }
            }
            State::Extension { value } => {
                self.count_line_byte()?;
                match b {
                    b'\r' => State::SizeLf { value },
                    b'\t' | b' '..=b'~' | 0x80..=0xff => State::Extension { value },
                    _ => return Err(bad("bad chunk extension")),
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

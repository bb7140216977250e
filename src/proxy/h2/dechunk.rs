//! The backend's response body, decoded from its HTTP/1.1 framing into the bytes that go to
//! the client as DATA frames: a `content-length` body is cut at its length, an until-close
//! body runs to EOF, and a chunked body loses its size lines, chunk CRLFs and trailers
//! (HTTP/2 has its own framing). [`Decoder::feed`] takes the bytes as they arrive, in any
//! split, with no buffer of its own: its state is an explicit enum of where in the framing
//! it stands.

use crate::http::response::ResponseFraming;

/// The response body's framing, decoded: what goes to the client as DATA.
pub(super) struct Decoder {
    state: DState,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DState {
    /// A body of this many bytes still to come.
    Length(u64),
    UntilClose,
    /// A chunk-size line: the size so far and its digit count.
    Size(u64, u8),
    /// A chunk extension, up to CR.
    Ext(u64),
    /// LF after a size line.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

impl Decoder {
    pub(super) fn new(framing: ResponseFraming) -> Decoder {
        let state = match framing {
            ResponseFraming::Length(0) | ResponseFraming::None | ResponseFraming::Upgrade => {
                DState::Done
            }
            ResponseFraming::Length(n) => DState::Length(n),
            ResponseFraming::Chunked => DState::Size(0, 0),
            ResponseFraming::UntilClose => DState::UntilClose,
        };
        Decoder { state }
    }

    pub(super) fn done(&self) -> bool {
        self.state == DState::Done
    }

    /// The end of the stream ends an until-close body.
    pub(super) fn finish(&mut self) {
        if self.state == DState::UntilClose {
            self.state = DState::Done;
        }
    }

    /// The most body bytes [`Self::feed`] can make of `n` input bytes.
    pub(super) fn output_bound(&self, n: usize) -> usize {
        match self.state {
            DState::Length(left) => n.min(usize::try_from(left).unwrap_or(usize::MAX)),
            DState::Done => 0,
            _ => n,
        }
    }

    /// Decodes `input` into `out` (body data) until the body ends; the bytes of `input`
    /// used. `Err` on a malformed chunked body.
    pub(super) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ()> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                DState::Done => return Ok(i),
                DState::UntilClose => {
                    out.extend_from_slice(&input[i..]);
                    return Ok(input.len());
                }
                DState::Length(n) => {
                    let take = (n.min((input.len() - i) as u64)) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.state = if n == take as u64 {
                        DState::Done
                    } else {
                        DState::Length(n - take as u64)
                    };
                    continue;
                }
                DState::Data(n) => {
                    let take = (n.min((input.len() - i) as u64)) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.state = if n == take as u64 {
                        DState::DataCr
                    } else {
                        DState::Data(n - take as u64)
                    };
                    continue;
                }
                DState::Size(n, digits) => match (b as char).to_digit(16) {
                    Some(d) if digits < 15 => DState::Size(n * 16 + u64::from(d), digits + 1),
                    Some(_) => return Err(()),
                    None if digits == 0 => return Err(()),
                    None if b == b'\r' => DState::SizeLf(n),
                    None if b == b';' || b == b' ' || b == b'\t' => DState::Ext(n),
                    None => return Err(()),
                },
                DState::Ext(n) => match b {
                    b'\r' => DState::SizeLf(n),
                    b'\n' => return Err(()),
                    _ => DState::Ext(n),
                },
                DState::SizeLf(n) => match b {
                    b'\n' if n == 0 => DState::TrailerStart,
                    b'\n' => DState::Data(n),
                    _ => return Err(()),
                },
                DState::DataCr => match b {
                    b'\r' => DState::DataLf,
                    _ => return Err(()),
                },
                DState::DataLf => match b {
                    b'\n' => DState::Size(0, 0),
                    _ => return Err(()),
                },
                DState::TrailerStart => match b {
                    b'\r' => DState::FinalLf,
                    b'\n' => return Err(()),
                    _ => DState::TrailerLine,
                },
                DState::TrailerLine => match b {
                    b'\r' => DState::TrailerLf,
                    b'\n' => return Err(()),
                    _ => DState::TrailerLine,
                },
                DState::TrailerLf => match b {
                    b'\n' => DState::TrailerStart,
                    _ => return Err(()),
                },
                DState::FinalLf => match b {
                    b'\n' => DState::Done,
                    _ => return Err(()),
                },
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(framing: ResponseFraming, parts: &[&[u8]]) -> Result<(Vec<u8>, bool, usize), ()> {
        let mut d = Decoder::new(framing);
        let mut out = Vec::new();
        let mut left = 0;
        for p in parts {
            let used = d.feed(p, &mut out)?;
            left = p.len() - used;
        }
        Ok((out, d.done(), left))
    }

    #[test]
    fn chunked_bodies_are_decoded_across_any_split() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 0..body.len() {
            let (out, done, left) =
                decode(ResponseFraming::Chunked, &[&body[..cut], &body[cut..]]).unwrap();
            assert_eq!(out, b"hello world", "cut at {cut}");
            assert!(done);
            assert_eq!(left, 0);
        }
        let (_, done, left) = decode(ResponseFraming::Chunked, &[b"0\r\n\r\nextra"]).unwrap();
        assert!(done);
        assert_eq!(left, 5);
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloX",
            b"\r\n",
            b"1111111111111111\r\n",
        ] {
            assert!(decode(ResponseFraming::Chunked, &[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (out, done, left) = decode(ResponseFraming::Length(3), &[b"ab", b"cde"]).unwrap();
        assert_eq!(out, b"abc");
        assert!(done);
        assert_eq!(left, 2);
    }
}

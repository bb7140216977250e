//! The RESP2 wire: commands out ([`Cmd`], encoded by `redis-protocol`), replies in
//! ([`Reply`], decoded by `redis-protocol` once [`frame_len`] has found a whole frame).
//!
//! [`frame_len`] walks a frame's headers without recursion or allocation, so a reply is
//! decoded once, when complete, and a hostile or broken server cannot make the client hold
//! more than [`MAX_REPLY`] bytes for one reply or nest arrays deeper than [`MAX_DEPTH`].

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

/// The largest reply accepted (the client's replies are a few integers; an `MGET` of many
/// keys stays far below).
pub const MAX_REPLY: usize = 1 << 20;

/// The deepest array nesting accepted.
pub const MAX_DEPTH: usize = 8;

/// One command: its name and arguments as byte strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    args: Vec<Vec<u8>>,
}

impl Cmd {
    pub fn new(name: &str) -> Cmd {
        Cmd {
            args: vec![name.as_bytes().to_vec()],
        }
    }

    /// Appends an argument: anything [`Arg`] (strings, bytes, integers).
    pub fn arg(mut self, a: impl Arg) -> Cmd {
        self.args.push(a.into_arg());
        self
    }

    pub fn args(&self) -> &[Vec<u8>] {
        &self.args
    }

    /// Appends the RESP2 encoding (an array of bulk strings) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let frames: Vec<BorrowedFrame<'_>> = self
            .args
            .iter()
            .map(|a| BorrowedFrame::BulkString(a))
            .collect();
        let frame = BorrowedFrame::Array(&frames);
        let start = out.len();
        out.resize(start + frame.encode_len(false), 0);
        // The buffer was sized by `encode_len` just above: encoding cannot run short.
        let n = encode_borrowed(&mut out[start..], &frame, false).unwrap_or(0);
        out.truncate(start + n);
    }
}

/// What [`Cmd::arg`] takes.
pub trait Arg {
    fn into_arg(self) -> Vec<u8>;
}

impl Arg for &str {
    fn into_arg(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Arg for String {
    fn into_arg(self) -> Vec<u8> {
        self.into_bytes()
    }
}

impl Arg for &String {
    fn into_arg(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Arg for &[u8] {
    fn into_arg(self) -> Vec<u8> {
        self.to_vec()
    }
}

impl Arg for Vec<u8> {
    fn into_arg(self) -> Vec<u8> {
        self
    }
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn into_arg(self) -> Vec<u8> {
                self.to_string().into_bytes()
            }
        }
    )*};
}
int_arg!(u32, u64, i32, i64, usize);

/// A decoded reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`.
    Simple(String),
    /// `-ERR ...`: Redis refused the command (the connection is fine).
    Error(String),
    Int(i64),
    /// A bulk string; `None` for a nil (also a nil array).
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    fn from_frame(f: OwnedFrame) -> Reply {
        match f {
            OwnedFrame::SimpleString(s) => Reply::Simple(String::from_utf8_lossy(&s).into_owned()),
            OwnedFrame::Error(e) => Reply::Error(e),
            OwnedFrame::Integer(i) => Reply::Int(i),
            OwnedFrame::BulkString(b) => Reply::Bulk(Some(b)),
            OwnedFrame::Array(a) => Reply::Array(a.into_iter().map(Reply::from_frame).collect()),
            OwnedFrame::Null => Reply::Bulk(None),
        }
    }
}

/// The length of the whole frame at the start of `buf`: `Ok(None)` while incomplete; an
/// error for bytes that are not RESP2 or a frame over the limits.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    // Frames still to come at this level, and at each enclosing one.
    let mut left = 1usize;
    let mut outer: Vec<usize> = Vec::new();
    loop {
        if at > MAX_REPLY {
            return Err(format!("reply larger than {MAX_REPLY} bytes"));
        }
        let Some(&kind) = buf.get(at) else {
            return Ok(None);
        };
        let Some(eol) = find_crlf(buf, at + 1) else {
            return if buf.len() - at > MAX_REPLY {
                Err(format!("reply line longer than {MAX_REPLY} bytes"))
            } else {
                Ok(None)
            };
        };
        let line = &buf[at + 1..eol];
        at = eol + 2;
        match kind {
            b'+' => {}
            b'-' => {
                std::str::from_utf8(line).map_err(|_| "error reply not in UTF-8".to_string())?;
            }
            b':' => {
                parse_int(line)?;
            }
            b'$' => {
                let n = parse_int(line)?;
                if n >= 0 {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    if n > MAX_REPLY {
                        return Err(format!("bulk string of {n} bytes (limit {MAX_REPLY})"));
                    }
                    if buf.len() < at + n + 2 {
                        return Ok(None);
                    }
                    if &buf[at + n..at + n + 2] != b"\r\n" {
                        return Err("bulk string not ended by CRLF".to_string());
                    }
                    at += n + 2;
                } else if n != -1 {
                    return Err(format!("bulk string length {n}"));
                }
            }
            b'*' => {
                let n = parse_int(line)?;
                if n > 0 {
                    if outer.len() >= MAX_DEPTH {
                        return Err(format!("arrays nested deeper than {MAX_DEPTH}"));
                    }
                    outer.push(left - 1);
                    left = usize::try_from(n).unwrap_or(usize::MAX);
                    continue;
                } else if n != 0 && n != -1 {
                    return Err(format!("array length {n}"));
                }
            }
            other => return Err(format!("unexpected reply type byte 0x{other:02x}")),
        }
        left -= 1;
        while left == 0 {
            match outer.pop() {
                None => return Ok(Some(at)),
                Some(l) => left = l,
            }
        }
    }
}

/// Decodes one whole frame (as measured by [`frame_len`]).
pub fn decode_frame(frame: &[u8]) -> Result<Reply, String> {
    match decode(frame) {
        Ok(Some((f, _))) => Ok(Reply::from_frame(f)),
        Ok(None) => Err("incomplete reply".to_string()),
        Err(e) => Err(format!("bad reply: {e:?}")),
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    rest.windows(2).position(|w| w == b"\r\n").map(|i| from + i)
}

fn parse_int(line: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_bulk_arrays() {
        let mut out = Vec::new();
        Cmd::new("SET").arg("k").arg(42u64).encode_into(&mut out);
        Cmd::new("PING").encode_into(&mut out);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n42\r\n*1\r\n$4\r\nPING\r\n"
        );
    }

    #[test]
    fn measures_and_decodes_frames() {
        let cases: [(&[u8], Option<usize>); 12] = [
            (b"+OK\r\n", Some(5)),
            (b"+OK\r\n:1\r\n", Some(5)),
            (b"+OK\r", None),
            (b":-3\r\n", Some(5)),
            (b"$3\r\nabc\r\n", Some(9)),
            (b"$3\r\nab", None),
            (b"$-1\r\n", Some(5)),
            (b"*0\r\n", Some(4)),
            (b"*-1\r\n", Some(5)),
            (b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n+n\r\n", Some(19)),
            (b"*2\r\n:1\r\n*2\r\n$1\r\nx\r\n", None),
            (b"*2\r\n*1\r\n:1\r\n:2\r\n", Some(16)),
        ];
        for (buf, want) in cases {
            assert_eq!(
                frame_len(buf),
                Ok(want),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        let reply = decode_frame(b"*4\r\n:1\r\n$-1\r\n$2\r\nab\r\n-ERR x\r\n").unwrap();
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(None),
                Reply::Bulk(Some(b"ab".to_vec())),
                Reply::Error("ERR x".to_string()),
            ])
        );
    }

    #[test]
    fn refuses_garbage_and_oversized_replies() {
        let deep = "*1\r\n".repeat(MAX_DEPTH + 1) + ":1\r\n";
        let bad: [&[u8]; 8] = [
            b"!x\r\n",
            b"-ERR \xff\r\n",
            b":x\r\n",
            b"$abc\r\n",
            b"$3\r\nabcd\r\n",
            b"$2000000\r\n",
            b"*-2\r\n",
            deep.as_bytes(),
        ];
        for buf in bad {
            assert!(
                frame_len(buf).is_err(),
                "{:?}",
                String::from_utf8_lossy(buf)
            );
        }
        let long_line = vec![b'+'; MAX_REPLY + 2];
        assert!(frame_len(&long_line).is_err());
    }
}

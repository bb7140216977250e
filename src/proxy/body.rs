//! Body relay: copies a request or response body from one stream to another as it arrives,
//! through one reused buffer, never holding the whole body. The body's end is found by its
//! framing (a byte count, the chunked scanner, or the end of the stream); bytes read past
//! the end stay in the buffer for the caller (a pipelined request, or stray upstream bytes).

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use super::io::{Read, read_until, write_until};
use super::pace::BodyPace;
use super::splice::{self, BodyPath, Pipe, SPLICE_ABOVE_BYTES, Spliceable};
use crate::error::{BodyStall, GatewayError};
use crate::http::chunked::ChunkedScanner;
use crate::runtime::{LARGE_RELAY_BUFFER_BYTES, RELAY_BUFFER_BYTES};

/// Smallest read a relay does.
const MIN_READ_BYTES: usize = 4096;

/// What is left of a body after the bytes already forwarded.
pub enum Remaining {
    Length(u64),
    Chunked(ChunkedScanner),
    UntilClose,
}

/// Why a relay stopped early.
#[derive(Debug)]
pub enum RelayError {
    /// The source ended early, failed, timed out, or sent bad framing (the error, if any).
    Source(Option<GatewayError>),
    /// A request body broke its pace ([`ReadPace::Body`]).
    Stalled(BodyStall),
    /// The destination could not take the bytes.
    Sink,
}

/// How long each read from the source may wait.
pub enum ReadPace<'p> {
    /// Each read at most this long (a response body: the backend timeout).
    Every(Duration),
    /// A request body: the gap and minimum-rate rules of [`BodyPace`].
    Body(&'p mut BodyPace),
}

impl ReadPace<'_> {
    fn deadline(&self) -> Instant {
        match self {
            ReadPace::Every(d) => Instant::now() + *d,
            ReadPace::Body(p) => p.deadline(),
        }
    }
}

impl Remaining {
    /// What is left of the body, when known.
    pub fn left(&self) -> Option<u64> {
        match self {
            Remaining::Length(n) => Some(*n),
            Remaining::Chunked(_) | Remaining::UntilClose => None,
        }
    }
}

/// Copies the rest of a body from `src` to `dst` (`None` discards it). `buf` is cleared
/// first; when the body is complete it holds the bytes read past its end. Each read waits
/// as `pace` says, each write at most `write_timeout`. A body larger than
/// [`RELAY_BUFFER_BYTES`] (by its length, or a read that filled such a buffer) is relayed
/// through a buffer grown to [`LARGE_RELAY_BUFFER_BYTES`]: fewer reads and writes per byte
/// (measured in `benches/large_bodies.sh`). With [`BodyPath::SpliceLarge`], a
/// `Content-Length` body of at least [`SPLICE_ABOVE_BYTES`] between two plain TCP sockets
/// is spliced instead (zero-copy, [`splice`]), reading nothing past its end.
pub async fn relay<R: AsyncReadRent + Spliceable, W: AsyncWriteRent + Spliceable>(
    src: &mut R,
    mut dst: Option<&mut W>,
    buf: &mut Vec<u8>,
    mut rest: Remaining,
    mut pace: ReadPace<'_>,
    write_timeout: Duration,
    path: BodyPath,
) -> Result<(), RelayError> {
    buf.clear();
    if buf.capacity() < MIN_READ_BYTES {
        buf.reserve(MIN_READ_BYTES);
    }
    if matches!(rest, Remaining::Length(0)) {
        return Ok(());
    }
    if let (
        BodyPath::SpliceLarge,
        Remaining::Length(left),
        Some(dst),
        ReadPace::Every(read_timeout),
    ) = (path, &rest, dst.as_deref(), &pace)
        && *left >= SPLICE_ABOVE_BYTES
        && let (Some(from), Some(to)) = (src.socket(), dst.socket())
        && let Some(pipe) = Pipe::new()
    {
        let spliced =
            splice::relay_length(from, to, &pipe, *left, *read_timeout, write_timeout).await;
        src.count_spliced(spliced.received, 0);
        dst.count_spliced(0, spliced.sent);
        return spliced.result;
    }
    let mut grow = match rest {
        Remaining::Length(left) => left > RELAY_BUFFER_BYTES as u64,
        _ => false,
    };
    loop {
        if grow && buf.capacity() < LARGE_RELAY_BUFFER_BYTES {
            // `buf` is empty here: a new allocation copies nothing.
            *buf = Vec::with_capacity(LARGE_RELAY_BUFFER_BYTES);
        }
        let n = match read_until(src, buf, pace.deadline()).await {
            Read::Data(n) => n,
            Read::Eof if matches!(rest, Remaining::UntilClose) => return Ok(()),
            Read::Timeout => match pace {
                ReadPace::Body(_) => return Err(RelayError::Stalled(BodyStall::Stalled)),
                ReadPace::Every(_) => return Err(RelayError::Source(None)),
            },
            Read::Eof | Read::Failed(_) => return Err(RelayError::Source(None)),
        };
        let (take, done) = match &mut rest {
            Remaining::Length(left) => {
                let take = (*left).min(n as u64);
                *left -= take;
                (take as usize, *left == 0)
            }
            Remaining::Chunked(scanner) => {
                let s = scanner
                    .scan(&buf[..n])
                    .map_err(|e| RelayError::Source(Some(e)))?;
                (s.consumed, s.done)
            }
            Remaining::UntilClose => (n, false),
        };
        if let ReadPace::Body(p) = &mut pace {
            p.after(n, Instant::now(), rest.left())
                .map_err(RelayError::Stalled)?;
        }
        if let Some(dst) = dst.as_deref_mut() {
            let deadline = Instant::now() + write_timeout;
            if write_until(dst, buf, 0, take, deadline).await.is_err() {
                return Err(RelayError::Sink);
            }
        }
        buf.drain(..take);
        if done {
            return Ok(());
        }
        grow |= n == buf.capacity() && n >= RELAY_BUFFER_BYTES;
        buf.clear();
    }
}

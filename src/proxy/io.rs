//! Owned-buffer I/O helpers over monoio's rent traits, with deadlines.
//!
//! monoio ops take their buffer by value and hand it back. Reads append at the end of a
//! `Vec` (into its spare capacity); writes send a byte range of a `Vec`. When a deadline
//! cancels an op the buffer stays with the cancelled op, so the caller gets an empty `Vec`
//! back: every caller closes the connection on a timeout anyway.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

/// How a read ended.
#[derive(Debug)]
pub enum Read {
    Data(usize),
    Eof,
    Timeout,
    Failed(io::Error),
}

/// Reads into the spare capacity of `buf` (which must have some) before `deadline`.
pub async fn read_until<R: AsyncReadRent>(
    io: &mut R,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Read {
    debug_assert!(buf.capacity() > buf.len());
    let owned = std::mem::take(buf);
    let len = owned.len();
    match monoio::time::timeout_at(deadline, io.read(owned.slice_mut(len..))).await {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            match res {
                Ok(0) => Read::Eof,
                Ok(n) => Read::Data(n),
                Err(e) => Read::Failed(e),
            }
        }
        Err(_) => Read::Timeout,
    }
}

/// Reads into the spare capacity of `buf` with no deadline (the caller races it).
pub async fn read_some<R: AsyncReadRent>(io: &mut R, buf: Vec<u8>) -> (Read, Vec<u8>) {
    let len = buf.len();
    let (res, slice) = io.read(buf.slice_mut(len..)).await;
    let read = match res {
        Ok(0) => Read::Eof,
        Ok(n) => Read::Data(n),
        Err(e) => Read::Failed(e),
    };
    (read, slice.into_inner())
}

/// A failed write: how many bytes of the range went out first, and why it stopped.
#[derive(Debug)]
pub struct WriteFailed {
    pub sent: usize,
    pub timed_out: bool,
    pub error: Option<io::Error>,
}

/// Writes `buf[start..end]` completely before `deadline`.
pub async fn write_until<W: AsyncWriteRent>(
    io: &mut W,
    buf: &mut Vec<u8>,
    start: usize,
    end: usize,
    deadline: Instant,
) -> Result<(), WriteFailed> {
    let mut at = start;
    while at < end {
        let owned = std::mem::take(buf);
        match monoio::time::timeout_at(deadline, io.write(owned.slice(at..end))).await {
            Ok((res, slice)) => {
                *buf = slice.into_inner();
                match res {
                    Ok(0) => {
                        return Err(WriteFailed {
                            sent: at - start,
                            timed_out: false,
                            error: Some(io::ErrorKind::WriteZero.into()),
                        });
                    }
                    Ok(n) => at += n,
                    Err(e) => {
                        return Err(WriteFailed {
                            sent: at - start,
                            timed_out: false,
                            error: Some(e),
                        });
                    }
                }
            }
            Err(_) => {
                return Err(WriteFailed {
                    sent: at - start,
                    timed_out: true,
                    error: None,
                });
            }
        }
    }
    Ok(())
}

/// Writes all of `buf` before `deadline`; `false` on any failure.
pub async fn write_all_until<W: AsyncWriteRent>(
    io: &mut W,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> bool {
    let end = buf.len();
    write_until(io, buf, 0, end, deadline).await.is_ok()
}

//! tokio's `AsyncRead`/`AsyncWrite` (what the `h2` crate drives) over a client stream's
//! monoio read and write halves, on the worker's own thread (no tokio runtime).
//!
//! Not `monoio-compat`'s `StreamWrapper`: it arms a read future and a write future that
//! both hold `&mut` to the one stream, which for [`crate::tls::stream::TlsStream`] means
//! two futures sharing one rustls state, and both may write TLS records (a read flushes what
//! rustls queued), so records could interleave on the socket. Here the stream is taken
//! apart first (plain TCP: `into_split`; TLS: `into_halves`, built for WebSocket tunnels,
//! which never hold the shared rustls state across an await), and each direction owns its
//! half: an operation in flight owns the half and its buffer, and gives both back when it
//! completes (no borrow, no `unsafe`).
//!
//! Writes are accepted into an owned buffer and written in the background; the next write,
//! flush or shutdown waits for that one first, so at most one buffer (h2's frames, at most
//! [`MAX_WRITE_BYTES`]) is in flight. Client bytes are counted for the metrics.
//!
//! When h2 drops the connection, the halves (idle, or with the operation in flight) go to a
//! [`Stash`] the connection task holds: closed with it, or first given a lingering close
//! ([`Leftover::linger`]) when the gateway ended the connection with an error GOAWAY.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::runtime::Worker;

/// Ciphertext or plaintext read at once.
pub const READ_BYTES: usize = 16 * 1024;
/// The most one write takes from h2 at once.
pub const MAX_WRITE_BYTES: usize = 64 * 1024;
/// A lingering close lasts at most this long, and reads at most this many bytes.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
pub const LINGER_BYTES: usize = 1024 * 1024;

type Op<H> = Pin<Box<dyn Future<Output = (H, io::Result<usize>, Vec<u8>)>>>;

enum Half<H> {
    Idle(H),
    Busy(Op<H>),
    /// An operation failed or was lost; the connection is done.
    Gone,
}

/// Where a [`Compat`] leaves the connection when it is dropped.
pub type Stash<R, W> = Rc<Cell<Option<Leftover<R, W>>>>;

/// The client connection once h2 is done with it: each half idle, or with its last
/// operation still in flight.
pub struct Leftover<R, W> {
    read: Half<R>,
    /// The read buffer, for the lingering reads.
    rbuf: Vec<u8>,
    write: Half<W>,
    /// The write half's shutdown was started (by h2, after its last frames).
    shut: bool,
    worker: Rc<Worker>,
}

/// One client connection as tokio I/O.
pub struct Compat<R, W> {
    read: Half<R>,
    /// Bytes read and not yet handed to h2: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    write: Half<W>,
    /// The write buffer while no write is in flight.
    wbuf: Vec<u8>,
    /// The write half was shut down.
    shut: bool,
    worker: Rc<Worker>,
    stash: Stash<R, W>,
}

// The halves are never pinned in place: they move into an operation and back out of it.
impl<R, W> Unpin for Compat<R, W> {}

impl<R, W> Drop for Compat<R, W> {
    fn drop(&mut self) {
        self.stash.set(Some(Leftover {
            read: std::mem::replace(&mut self.read, Half::Gone),
            rbuf: std::mem::take(&mut self.rbuf),
            write: std::mem::replace(&mut self.write, Half::Gone),
            shut: self.shut,
            worker: self.worker.clone(),
        }));
    }
}

impl<R: AsyncReadRent + 'static, W: AsyncWriteRent + 'static> Compat<R, W> {
    /// `read` and `write`: the two halves of one stream; `prefix`: client bytes already
    /// read (they come first); `stash`: where the halves go when h2 drops the connection.
    pub fn new(read: R, write: W, prefix: Vec<u8>, worker: Rc<Worker>, stash: Stash<R, W>) -> Self {
        Compat {
            read: Half::Idle(read),
            rbuf: prefix,
            rpos: 0,
            write: Half::Idle(write),
            wbuf: Vec::new(),
            shut: false,
            worker,
            stash,
        }
    }

    /// Waits for the write in flight, if any. `Ok` once the write half is idle.
    fn poll_write_done(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.write {
            Half::Idle(_) => Poll::Ready(Ok(())),
            Half::Gone => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
            Half::Busy(op) => {
                let (half, res, mut buf) = match op.as_mut().poll(cx) {
                    Poll::Ready(done) => done,
                    Poll::Pending => return Poll::Pending,
                };
                buf.clear();
                self.wbuf = buf;
                match res {
                    Ok(_) => {
                        self.write = Half::Idle(half);
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => {
                        self.write = Half::Gone;
                        Poll::Ready(Err(e))
                    }
                }
            }
        }
    }

    /// Starts `f` on the idle write half.
    fn arm_write<F, Fut>(&mut self, f: F)
    where
        F: FnOnce(W, Vec<u8>) -> Fut,
        Fut: Future<Output = (W, io::Result<usize>, Vec<u8>)> + 'static,
    {
        let Half::Idle(half) = std::mem::replace(&mut self.write, Half::Gone) else {
            return;
        };
        let buf = std::mem::take(&mut self.wbuf);
        self.write = Half::Busy(Box::pin(f(half, buf)));
    }
}

impl<R: AsyncReadRent + 'static, W: AsyncWriteRent + 'static> AsyncRead for Compat<R, W> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if matches!(this.read, Half::Idle(_)) && this.rpos < this.rbuf.len() {
                let n = (this.rbuf.len() - this.rpos).min(out.remaining());
                out.put_slice(&this.rbuf[this.rpos..this.rpos + n]);
                this.rpos += n;
                return Poll::Ready(Ok(()));
            }
            match std::mem::replace(&mut this.read, Half::Gone) {
                Half::Gone => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Half::Idle(mut half) => {
                    let mut buf = std::mem::take(&mut this.rbuf);
                    buf.clear();
                    this.rpos = 0;
                    if buf.capacity() < READ_BYTES {
                        buf.reserve_exact(READ_BYTES);
                    }
                    this.read = Half::Busy(Box::pin(async move {
                        let (r, buf) = half.read(buf).await;
                        (half, r, buf)
                    }));
                }
                Half::Busy(op) => this.read = Half::Busy(op),
            }
            let Half::Busy(op) = &mut this.read else {
                unreachable!("armed above")
            };
            let (half, res, buf) = match op.as_mut().poll(cx) {
                Poll::Ready(done) => done,
                Poll::Pending => return Poll::Pending,
            };
            this.rbuf = buf;
            this.rpos = 0;
            match res {
                Ok(0) => {
                    this.read = Half::Idle(half);
                    return Poll::Ready(Ok(()));
                }
                Ok(n) => {
                    this.worker.count_in(n);
                    this.read = Half::Idle(half);
                }
                Err(e) => {
                    this.rbuf.clear();
                    return Poll::Ready(Err(e));
                }
            }
        }
    }
}

impl<R: AsyncReadRent + 'static, W: AsyncWriteRent + 'static> AsyncWrite for Compat<R, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match this.poll_write_done(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        let n = src.len().min(MAX_WRITE_BYTES);
        this.wbuf.clear();
        this.wbuf.extend_from_slice(&src[..n]);
        this.worker.count_out(n);
        this.arm_write(|mut half, buf| async move {
            let (r, buf) = half.write_all(buf).await;
            (half, r, buf)
        });
        // Started; its outcome shows at the next write, flush or shutdown.
        let _ = this.poll_write_done(cx);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Every write already flushes its TLS records (`TlsWriteHalf::write`); what the read
        // half made rustls queue goes out with the next write.
        self.get_mut().poll_write_done(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut {
            match this.poll_write_done(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            this.shut = true;
            this.arm_write(|mut half, buf| async move {
                let r = half.shutdown().await.map(|()| 0);
                (half, r, buf)
            });
        }
        this.poll_write_done(cx)
    }
}

impl<R: AsyncReadRent + 'static, W: AsyncWriteRent + 'static> Leftover<R, W> {
    /// A lingering close, as nginx's `lingering_close`: after an error GOAWAY the client may
    /// still be sending (a flood), and closing a socket with unread bytes makes the kernel
    /// answer with a reset, which can discard the GOAWAY before the client reads it. So:
    /// the last write finishes, the write side is shut down (FIN after the GOAWAY; h2 has
    /// usually done both), and what the client sends is read and dropped until it closes,
    /// for at most [`LINGER_TIME`] and [`LINGER_BYTES`]. The caller closes the socket after.
    pub async fn linger(self) {
        let Leftover {
            read,
            mut rbuf,
            write,
            shut,
            worker,
        } = self;
        let drain = async move {
            // Held (the socket half-open) while the read half drains.
            let mut w = match write {
                Half::Idle(w) => w,
                Half::Busy(op) => match op.await {
                    (w, Ok(_), _) => w,
                    (_, Err(_), _) => return,
                },
                Half::Gone => return,
            };
            if !shut && w.shutdown().await.is_err() {
                return;
            }
            let mut left = LINGER_BYTES;
            let mut r = match read {
                Half::Idle(r) => r,
                Half::Busy(op) => match op.await {
                    (r, Ok(n), buf) if n > 0 => {
                        worker.count_in(n);
                        left = left.saturating_sub(n);
                        rbuf = buf;
                        r
                    }
                    _ => return,
                },
                Half::Gone => return,
            };
            if rbuf.capacity() < READ_BYTES {
                rbuf.reserve_exact(READ_BYTES);
            }
            while left > 0 {
                rbuf.clear();
                let (res, buf) = r.read(rbuf).await;
                rbuf = buf;
                match res {
                    Ok(n) if n > 0 => {
                        worker.count_in(n);
                        left = left.saturating_sub(n);
                    }
                    // EOF (the client closed too) or an error.
                    _ => return,
                }
            }
        };
        let _ = monoio::time::timeout(LINGER_TIME, drain).await;
    }
}

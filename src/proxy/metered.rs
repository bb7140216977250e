//! A client stream that counts the bytes it moves (after TLS decryption, before
//! encryption): into its worker's `Cell`s, which [`crate::runtime::Worker::take_bytes`]
//! folds into the metrics, and into its own counts, which the connection hands to each
//! request's access-log line ([`Metered::take_counts`]). A WebSocket tunnel's halves are the inner stream's:
//! the tunnel counts its own bytes.

use std::cell::Cell;
use std::rc::Rc;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use super::conn::Stream;
use crate::runtime::Worker;

pub struct Metered<S> {
    inner: S,
    worker: Rc<Worker>,
    read: Cell<u64>,
    written: Cell<u64>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, worker: Rc<Worker>) -> Metered<S> {
        Metered {
            inner,
            worker,
            read: Cell::new(0),
            written: Cell::new(0),
        }
    }

    /// `n` client bytes read before the stream was wrapped (those that came with a PROXY
    /// protocol header): counted as read now.
    pub fn read_before(&self, n: usize) {
        self.worker.count_in(n);
        self.counted(n as u64, 0);
    }

    fn counted(&self, read: u64, written: u64) {
        self.read.set(self.read.get() + read);
        self.written.set(self.written.get() + written);
    }
}

impl<S: AsyncReadRent> AsyncReadRent for Metered<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.read(buf).await;
        if let Ok(n) = r {
            self.worker.count_in(n);
            self.counted(n as u64, 0);
        }
        (r, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.readv(buf).await;
        if let Ok(n) = r {
            self.worker.count_in(n);
            self.counted(n as u64, 0);
        }
        (r, buf)
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for Metered<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.write(buf).await;
        if let Ok(n) = r {
            self.worker.count_out(n);
            self.counted(0, n as u64);
        }
        (r, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.writev(buf).await;
        if let Ok(n) = r {
            self.worker.count_out(n);
            self.counted(0, n as u64);
        }
        (r, buf)
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().await
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        self.inner.shutdown().await
    }
}

impl<S: Stream> Stream for Metered<S> {
    fn take_counts(&self) -> (u64, u64) {
        (self.read.replace(0), self.written.replace(0))
    }
    type ReadHalf = S::ReadHalf;
    type WriteHalf = S::WriteHalf;
    fn into_halves(self) -> (S::ReadHalf, S::WriteHalf) {
        self.inner.into_halves()
    }
    fn tls_info(&self) -> Option<(&str, Option<&str>)> {
        self.inner.tls_info()
    }
    async fn finish(&mut self, deadline: Instant) {
        self.inner.finish(deadline).await
    }
    async fn readable(&mut self) -> std::io::Result<()> {
        self.inner.readable().await
    }
    fn park(&mut self) {
        self.inner.park();
    }
}

impl<S: Stream> super::splice::Spliceable for Metered<S> {
    fn socket(&self) -> Option<&monoio::net::TcpStream> {
        self.inner.socket()
    }
    fn count_spliced(&self, received: u64, sent: u64) {
        self.worker
            .count_in(usize::try_from(received).unwrap_or(usize::MAX));
        self.worker
            .count_out(usize::try_from(sent).unwrap_or(usize::MAX));
        self.counted(received, sent);
    }
}

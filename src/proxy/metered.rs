//! A client stream that counts the bytes it moves (after TLS decryption, before
//! encryption) into its worker's `Cell`s; [`crate::runtime::Worker::take_bytes`] folds them
//! into the metrics with each request. A WebSocket tunnel's halves are the inner stream's:
//! the tunnel counts its own bytes.

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
}

impl<S> Metered<S> {
    pub fn new(inner: S, worker: Rc<Worker>) -> Metered<S> {
        Metered { inner, worker }
    }
}

impl<S: AsyncReadRent> AsyncReadRent for Metered<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.read(buf).await;
        if let Ok(n) = r {
            self.worker.count_in(n);
        }
        (r, buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.readv(buf).await;
        if let Ok(n) = r {
            self.worker.count_in(n);
        }
        (r, buf)
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for Metered<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.write(buf).await;
        if let Ok(n) = r {
            self.worker.count_out(n);
        }
        (r, buf)
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let (r, buf) = self.inner.writev(buf).await;
        if let Ok(n) = r {
            self.worker.count_out(n);
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
    }
}

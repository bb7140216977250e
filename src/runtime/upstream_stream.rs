//! A connection to an upstream: plain TCP for `http://` upstreams, TLS for `https://` ones.
//! The pool keeps these, the exchange reads and writes them through monoio's rent traits,
//! and a WebSocket tunnel splits one into two halves; each call dispatches on the variant.

use std::io;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use rustls::ClientConnection;

use crate::tls::stream::{TlsReadHalf, TlsStream, TlsWriteHalf};

/// An upstream connection.
pub enum UpstreamStream {
    Plain(TcpStream),
    /// Boxed: the rustls state is large, and most upstreams are plain.
    Tls(Box<TlsStream<ClientConnection>>),
}

/// The backend-to-client half of an upstream connection in a tunnel.
pub enum UpstreamReadHalf {
    Plain(OwnedReadHalf<TcpStream>),
    Tls(TlsReadHalf<ClientConnection>),
}

/// The client-to-backend half of an upstream connection in a tunnel.
pub enum UpstreamWriteHalf {
    Plain(OwnedWriteHalf<TcpStream>),
    Tls(TlsWriteHalf<ClientConnection>),
}

impl UpstreamStream {
    /// Whether a connection that sat idle can carry a new exchange: the upstream did not
    /// close it and sent nothing unasked (over TLS: nothing but handshake messages, such as
    /// TLS 1.3 session tickets).
    pub fn still_open(&mut self) -> bool {
        match self {
            UpstreamStream::Plain(s) => plain_still_open(s),
            UpstreamStream::Tls(s) => s.idle_check(),
        }
    }

    pub fn into_halves(self) -> (UpstreamReadHalf, UpstreamWriteHalf) {
        match self {
            UpstreamStream::Plain(s) => {
                let (r, w) = s.into_split();
                (UpstreamReadHalf::Plain(r), UpstreamWriteHalf::Plain(w))
            }
            UpstreamStream::Tls(s) => {
                let (r, w) = s.into_halves();
                (UpstreamReadHalf::Tls(r), UpstreamWriteHalf::Tls(w))
            }
        }
    }
}

/// Plain TCP: nothing to read yet (`EAGAIN`). End of stream means the upstream closed it;
/// stray bytes mean it cannot carry a new exchange either.
fn plain_still_open(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut byte = 0u8;
    // SAFETY: a one-byte stack buffer and a valid fd; MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let e = io::Error::last_os_error().raw_os_error();
        e == Some(libc::EAGAIN) || e == Some(libc::EWOULDBLOCK)
    }
}

/// `AsyncReadRent` for an enum whose variants all implement it.
macro_rules! dispatch_read {
    ($t:ident) => {
        impl AsyncReadRent for $t {
            async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $t::Plain(s) => s.read(buf).await,
                    $t::Tls(s) => s.read(buf).await,
                }
            }

            async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $t::Plain(s) => s.readv(buf).await,
                    $t::Tls(s) => s.readv(buf).await,
                }
            }
        }
    };
}

/// `AsyncWriteRent` for an enum whose variants all implement it.
macro_rules! dispatch_write {
    ($t:ident) => {
        impl AsyncWriteRent for $t {
            async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $t::Plain(s) => s.write(buf).await,
                    $t::Tls(s) => s.write(buf).await,
                }
            }

            async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $t::Plain(s) => s.writev(buf).await,
                    $t::Tls(s) => s.writev(buf).await,
                }
            }

            async fn flush(&mut self) -> io::Result<()> {
                match self {
                    $t::Plain(s) => s.flush().await,
                    $t::Tls(s) => s.flush().await,
                }
            }

            async fn shutdown(&mut self) -> io::Result<()> {
                match self {
                    $t::Plain(s) => s.shutdown().await,
                    $t::Tls(s) => s.shutdown().await,
                }
            }
        }
    };
}

dispatch_read!(UpstreamStream);
dispatch_write!(UpstreamStream);
dispatch_read!(UpstreamReadHalf);
dispatch_write!(UpstreamWriteHalf);

impl crate::proxy::splice::Spliceable for UpstreamStream {
    fn socket(&self) -> Option<&TcpStream> {
        match self {
            UpstreamStream::Plain(s) => Some(s),
            UpstreamStream::Tls(_) => None,
        }
    }
}

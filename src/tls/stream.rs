//! A connection over TLS: a rustls connection driven by hand over a monoio [`TcpStream`],
//! with monoio's owned-buffer traits on top so that the connection pipeline
//! ([`crate::proxy::conn`]) and the upstream exchange serve it unchanged. The same stream
//! serves both sides ([`Side`]): a [`ServerConnection`] for clients on the HTTPS listeners,
//! a [`ClientConnection`] for `https://` upstreams.
//!
//! - Reads: TLS records are read from the socket into one reused buffer, fed to rustls
//!   (`read_tls`, `process_new_packets`), and plaintext is copied once into the caller's
//!   buffer (the decryption itself happens in rustls's own record buffer). rustls takes no
//!   more ciphertext once it holds [`RUSTLS_PLAINTEXT_LIMIT`] of plaintext: what one socket
//!   read brought past that point stays in our buffer ([`Inbound`]) and is fed first once the
//!   plaintext has been read.
//! - Writes: plaintext goes to rustls's `writer()`, which encrypts it into records, and the
//!   records are written from one reused output buffer.
//! - Cancellation: a dropped read or write future (ringway drops one on every timeout and
//!   closes the connection after it) loses at most the buffer it held; the next op allocates
//!   a new one. No state is left half-updated across an await.
//! - Not `Split` (one rustls state serves both directions): a WebSocket tunnel takes the
//!   stream apart with [`TlsStream::into_halves`] instead, two halves that share the rustls
//!   state and never hold it across an await.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::rc::Rc;
use std::sync::Arc;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable,
};
use monoio::net::TcpStream;
use std::ops::DerefMut;
use std::os::fd::AsRawFd;

use rustls::client::ClientConnectionData;
use rustls::pki_types::ServerName;
use rustls::server::ServerConnectionData;
use rustls::{ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection};

/// Ciphertext read from the socket at once.
pub const TLS_READ_BYTES: usize = 8 * 1024;
/// An output buffer larger than this is not kept after a write (an idle connection stays
/// small).
pub const TLS_KEEP_WRITE_BYTES: usize = 17 * 1024;
/// rustls refuses ciphertext (`read_tls` fails: "received plaintext buffer full") while it
/// holds more plaintext than this (its default received-plaintext limit): we stop feeding it
/// there. One socket read can complete a full record and then more records (small ones,
/// as an echo of small writes makes), which is how a peer reaches the limit.
pub const RUSTLS_PLAINTEXT_LIMIT: usize = 16 * 1024;

/// The rustls side a stream drives.
pub trait Side: DerefMut<Target = ConnectionCommon<Self::Data>> + 'static {
    type Data: 'static;
    /// Whether the peer named a server (SNI), as far as the handshake got.
    fn named_server(&self) -> bool;
}

impl Side for ServerConnection {
    type Data = ServerConnectionData;
    fn named_server(&self) -> bool {
        self.server_name().is_some()
    }
}

impl Side for ClientConnection {
    type Data = ClientConnectionData;
    fn named_server(&self) -> bool {
        true
    }
}

pub struct TlsStream<C: Side = ServerConnection> {
    tcp: TcpStream,
    conn: C,
    inb: Inbound,
    wbuf: Vec<u8>,
}

/// The receiving side of a TLS stream: ciphertext read from the socket and not yet fed to
/// rustls (`buf[pos..]`), and what rustls holds for us.
#[derive(Default)]
struct Inbound {
    buf: Vec<u8>,
    pos: usize,
    /// Plaintext rustls holds for us.
    avail: usize,
    /// The peer sent close_notify.
    closed: bool,
}

impl Inbound {
    /// Ciphertext read and not yet fed to rustls.
    fn unfed(&self) -> bool {
        self.pos < self.buf.len()
    }

    /// A read finds something without waiting for the socket: plaintext, ciphertext to
    /// feed, or the end (close_notify).
    fn ready(&self) -> bool {
        self.avail > 0 || self.closed || self.unfed()
    }

    /// An empty buffer of [`TLS_READ_BYTES`] for a socket read (nothing is unfed).
    fn read_buffer(&mut self) -> Vec<u8> {
        let mut b = std::mem::take(&mut self.buf);
        b.clear();
        self.pos = 0;
        if b.capacity() < TLS_READ_BYTES {
            b.reserve_exact(TLS_READ_BYTES);
        }
        b
    }

    /// Reads the socket into the buffer (nothing is unfed); 0 at the end of the stream.
    async fn read_from<R: AsyncReadRent>(&mut self, tcp: &mut R) -> io::Result<usize> {
        let buf = self.read_buffer();
        let (r, buf) = tcp.read(buf).await;
        self.buf = buf;
        r
    }

    /// Feeds the unfed ciphertext to rustls and processes it, up to the point where rustls
    /// holds more than [`RUSTLS_PLAINTEXT_LIMIT`] of plaintext.
    fn feed<D>(&mut self, conn: &mut ConnectionCommon<D>) -> io::Result<()> {
        while self.unfed() && self.avail <= RUSTLS_PLAINTEXT_LIMIT {
            let mut rest = &self.buf[self.pos..];
            let n = conn.read_tls(&mut rest)?;
            self.pos += n;
            let state = conn.process_new_packets().map_err(tls_err)?;
            self.avail = state.plaintext_bytes_to_read();
            self.closed = state.peer_has_closed();
            if n == 0 {
                // After close_notify rustls takes nothing more: what follows is dropped.
                self.pos = self.buf.len();
            }
        }
        Ok(())
    }

    /// Copies plaintext rustls holds (some must be held) into `out`.
    fn take_plain<D>(
        &mut self,
        conn: &mut ConnectionCommon<D>,
        out: &mut [u8],
    ) -> io::Result<usize> {
        let n = self.avail.min(out.len());
        let got = conn.reader().read(&mut out[..n])?;
        self.avail -= got;
        Ok(got)
    }
}

/// The first `n` bytes at `dst` as a slice, zeroed first.
///
/// # Safety
/// `dst` must be valid for writing `n` bytes for `'a`, and nothing else may access them
/// meanwhile.
unsafe fn zeroed_slice<'a>(dst: *mut u8, n: usize) -> &'a mut [u8] {
    // SAFETY: the caller's contract; the bytes are initialised before the slice is made.
    unsafe {
        dst.write_bytes(0, n);
        std::slice::from_raw_parts_mut(dst, n)
    }
}

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The TLS protocol failed (an alert was sent when rustls had one to send).
    Tls(rustls::Error),
    /// The ClientHello named no server (no SNI), so no certificate was chosen.
    NoServerName,
    /// The socket failed or closed.
    Io(io::Error),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::Tls(e) => write!(f, "{e}"),
            HandshakeError::NoServerName => write!(f, "the ClientHello has no server name (SNI)"),
            HandshakeError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl HandshakeError {
    /// The client named no server, or one no certificate covers.
    pub fn is_unknown_name(&self) -> bool {
        match self {
            HandshakeError::NoServerName => true,
            HandshakeError::Tls(rustls::Error::General(m)) => m.contains("no server certificate"),
            _ => false,
        }
    }
}

/// A rustls error carried in an `io::Error`.
fn tls_err(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream<ServerConnection> {
    /// Runs the server handshake (the caller bounds it with a deadline). `read`: bytes
    /// already read from the socket, the start of the client's handshake (what followed a
    /// PROXY protocol header in the same read); they go to rustls before the socket is read.
    pub async fn accept(
        tcp: TcpStream,
        config: Arc<ServerConfig>,
        read: Vec<u8>,
    ) -> Result<TlsStream, HandshakeError> {
        let conn = ServerConnection::new(config).map_err(HandshakeError::Tls)?;
        TlsStream::handshake(tcp, conn, read).await
    }

    /// The client's SNI name.
    pub fn server_name(&self) -> Option<&str> {
        self.conn.server_name()
    }

    /// The protocol the handshake agreed on through ALPN (`h2`, `http/1.1`), if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Waits until a read would find something: plaintext rustls already holds, or
    /// ciphertext on the socket (a poll; no buffer is held).
    pub async fn readable(&mut self) -> io::Result<()> {
        if self.inb.ready() {
            return Ok(());
        }
        self.tcp.readable(false).await
    }

    /// Idle: drops the ciphertext and record buffers (the next read or write makes new
    /// ones); ciphertext not yet fed to rustls stays.
    pub fn park(&mut self) {
        if !self.inb.unfed() {
            self.inb = Inbound {
                buf: Vec::new(),
                pos: 0,
                ..self.inb
            };
        }
        self.wbuf = Vec::new();
    }
}

impl TlsStream<ClientConnection> {
    /// Runs the client handshake to an upstream (the caller bounds it with a deadline).
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsStream<ClientConnection>, HandshakeError> {
        let conn = ClientConnection::new(config, name).map_err(HandshakeError::Tls)?;
        TlsStream::handshake(tcp, conn, Vec::new()).await
    }
}

impl<C: Side> TlsStream<C> {
    /// `read`: ciphertext already read from `tcp`, fed first.
    async fn handshake(
        tcp: TcpStream,
        conn: C,
        read: Vec<u8>,
    ) -> Result<TlsStream<C>, HandshakeError> {
        let mut s = TlsStream {
            tcp,
            conn,
            inb: Inbound {
                buf: read,
                ..Inbound::default()
            },
            wbuf: Vec::new(),
        };
        while s.conn.is_handshaking() {
            if s.conn.wants_write() {
                s.flush_tls().await.map_err(HandshakeError::Io)?;
            } else {
                match s.fill().await {
                    Ok(0) => {
                        return Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                        let err = match inner {
                            Some(t) => HandshakeError::Tls(t.clone()),
                            None => HandshakeError::Io(e),
                        };
                        if err.is_unknown_name() && !s.conn.named_server() {
                            return Err(HandshakeError::NoServerName);
                        }
                        return Err(err);
                    }
                }
            }
        }
        s.flush_tls().await.map_err(HandshakeError::Io)?;
        Ok(s)
    }

    /// Whether the handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// For a connection that sat idle in a pool: processes what arrived meanwhile, without
    /// waiting. Usable when nothing came, or only TLS handshake messages (a TLS 1.3 server
    /// sends session tickets after its handshake, which a raw `MSG_PEEK` would take for
    /// stray bytes); not after the end of the stream, `close_notify`, a TLS error or
    /// application data nobody asked for.
    pub fn idle_check(&mut self) -> bool {
        if self.inb.ready() {
            return false;
        }
        loop {
            let mut inb = self.inb.read_buffer();
            // SAFETY: the spare capacity of `inb` is valid for writing; MSG_DONTWAIT never
            // blocks.
            let n = unsafe {
                libc::recv(
                    self.tcp.as_raw_fd(),
                    inb.as_mut_ptr().cast(),
                    inb.capacity(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error().raw_os_error();
                self.inb.buf = inb;
                return e == Some(libc::EAGAIN) || e == Some(libc::EWOULDBLOCK);
            }
            if n == 0 {
                return false;
            }
            // SAFETY: the kernel wrote `n` bytes.
            unsafe { inb.set_len(n as usize) };
            self.inb.buf = inb;
            if self.inb.feed(&mut self.conn).is_err() || self.inb.ready() {
                return false;
            }
        }
    }

    /// The negotiated protocol version (`TLSv1.3`).
    pub fn version(&self) -> &'static str {
        match self.conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
            _ => "",
        }
    }

    /// Sends `close_notify` (best effort, before `deadline`).
    pub async fn close_notify(&mut self, deadline: monoio::time::Instant) {
        self.conn.send_close_notify();
        let _ = monoio::time::timeout_at(deadline, self.flush_tls()).await;
    }

    /// Writes every TLS record rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut out = std::mem::take(&mut self.wbuf);
            out.clear();
            self.conn.write_tls(&mut out)?;
            let (r, written) = self.tcp.write_all(out).await;
            out = written;
            r?;
            if out.capacity() <= TLS_KEEP_WRITE_BYTES {
                out.clear();
                self.wbuf = out;
            }
        }
        Ok(())
    }

    /// Feeds rustls: the ciphertext already read first, else what one socket read brings.
    /// 0 at the end of the stream.
    async fn fill(&mut self) -> io::Result<usize> {
        if !self.inb.unfed() && self.inb.read_from(&mut self.tcp).await? == 0 {
            return Ok(0);
        }
        let fed = self.inb.buf.len() - self.inb.pos;
        if let Err(e) = self.inb.feed(&mut *self.conn) {
            // The alert rustls queued goes out before the connection closes.
            if self.conn.wants_write() {
                let _ = self.flush_tls().await;
            }
            return Err(e);
        }
        Ok(fed)
    }

    /// Reads plaintext into `dst`; 0 at the end of the stream.
    ///
    /// # Safety
    /// `dst` must be valid for writing `cap` bytes until the future completes or is dropped
    /// (the caller's `IoBufMut`).
    async unsafe fn read_plain(&mut self, dst: *mut u8, cap: usize) -> io::Result<usize> {
        loop {
            if self.inb.avail > 0 && cap > 0 {
                // SAFETY: the caller's contract.
                let out = unsafe { zeroed_slice(dst, self.inb.avail.min(cap)) };
                return self.inb.take_plain(&mut self.conn, out);
            }
            if self.inb.closed || cap == 0 {
                return Ok(0);
            }
            if self.conn.wants_write() {
                self.flush_tls().await?;
            }
            if self.fill().await? == 0 {
                return Ok(0);
            }
        }
    }

    async fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(src)?;
        self.flush_tls().await?;
        Ok(n)
    }
}

/// The rent traits' read side and `write`/`writev`, over a type's `read_plain` and
/// `write_plain` (the whole stream and its halves share them).
macro_rules! plain_rent_io {
    (read $t:ty) => {
        impl<C: Side> AsyncReadRent for $t {
            async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
                let (ptr, cap) = (buf.write_ptr(), buf.bytes_total());
                // SAFETY: `ptr` is `buf`'s own, valid for `cap` bytes; `buf` outlives the
                // future, which is awaited here.
                match unsafe { self.read_plain(ptr, cap) }.await {
                    Ok(n) => {
                        // SAFETY: `n` bytes were written at the start of the buffer.
                        unsafe { buf.set_init(n) };
                        (Ok(n), buf)
                    }
                    Err(e) => (Err(e), buf),
                }
            }

            async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
                // SAFETY: the raw buffer points into `buf`, which outlives this call.
                let Some(mut raw) = (unsafe { RawBuf::new_from_iovec_mut(&mut buf) }) else {
                    return (Ok(0), buf);
                };
                // SAFETY: the raw buffer is `buf`'s first one, which outlives the future.
                match unsafe { self.read_plain(raw.write_ptr(), raw.bytes_total()) }.await {
                    Ok(n) => {
                        // SAFETY: `n` bytes were written into the first buffer.
                        unsafe { buf.set_init(n) };
                        (Ok(n), buf)
                    }
                    Err(e) => (Err(e), buf),
                }
            }
        }
    };
    (write) => {
        async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
            // SAFETY: the IoBuf's initialised bytes.
            let src = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
            let r = self.write_plain(src).await;
            (r, buf)
        }

        async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
            // SAFETY: the raw buffer points into `buf`, which outlives this call.
            let Some(raw) = (unsafe { RawBuf::new_from_iovec(&buf) }) else {
                return (Ok(0), buf);
            };
            // SAFETY: the first buffer's initialised bytes.
            let src = unsafe { std::slice::from_raw_parts(raw.read_ptr(), raw.bytes_init()) };
            let r = self.write_plain(src).await;
            (r, buf)
        }
    };
}

plain_rent_io!(read TlsStream<C>);

impl<C: Side> AsyncWriteRent for TlsStream<C> {
    plain_rent_io!(write);

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_tls().await?;
        self.tcp.shutdown().await
    }
}

/// The client-to-server half of a TLS stream in a WebSocket tunnel. The two halves share the
/// rustls state through an `Rc<RefCell<..>>` borrowed only between awaits, never across
/// one; each owns its half of the socket and its buffer. Records the read half makes rustls
/// queue (an alert, a key update) go out with the write half's next write.
pub struct TlsReadHalf<C: Side = ServerConnection> {
    tcp: OwnedReadHalf<TcpStream>,
    conn: Rc<RefCell<C>>,
    inb: Inbound,
}

/// The server-to-client half of a TLS stream in a WebSocket tunnel.
pub struct TlsWriteHalf<C: Side = ServerConnection> {
    tcp: OwnedWriteHalf<TcpStream>,
    conn: Rc<RefCell<C>>,
    wbuf: Vec<u8>,
}

impl<C: Side> TlsStream<C> {
    /// The stream as two halves that can be used at once (a WebSocket tunnel).
    pub fn into_halves(self) -> (TlsReadHalf<C>, TlsWriteHalf<C>) {
        let conn = Rc::new(RefCell::new(self.conn));
        let (r, w) = self.tcp.into_split();
        (
            TlsReadHalf {
                tcp: r,
                conn: conn.clone(),
                inb: self.inb,
            },
            TlsWriteHalf {
                tcp: w,
                conn,
                wbuf: self.wbuf,
            },
        )
    }
}

impl<C: Side> TlsReadHalf<C> {
    /// As [`TlsStream`]'s.
    ///
    /// # Safety
    /// As [`TlsStream`]'s: `dst` valid for writing `cap` bytes while the future lives.
    async unsafe fn read_plain(&mut self, dst: *mut u8, cap: usize) -> io::Result<usize> {
        loop {
            if self.inb.avail > 0 && cap > 0 {
                // SAFETY: the caller's contract.
                let out = unsafe { zeroed_slice(dst, self.inb.avail.min(cap)) };
                return self.inb.take_plain(&mut self.conn.borrow_mut(), out);
            }
            if self.inb.closed || cap == 0 {
                return Ok(0);
            }
            if !self.inb.unfed() && self.inb.read_from(&mut self.tcp).await? == 0 {
                return Ok(0);
            }
            self.inb.feed(&mut self.conn.borrow_mut())?;
        }
    }
}

impl<C: Side> TlsWriteHalf<C> {
    async fn flush_tls(&mut self) -> io::Result<()> {
        loop {
            let mut out = std::mem::take(&mut self.wbuf);
            out.clear();
            {
                let mut conn = self.conn.borrow_mut();
                if !conn.wants_write() {
                    self.wbuf = out;
                    return Ok(());
                }
                conn.write_tls(&mut out)?;
            }
            let (r, written) = self.tcp.write_all(out).await;
            out = written;
            r?;
            if out.capacity() <= TLS_KEEP_WRITE_BYTES {
                self.wbuf = out;
            }
        }
    }

    async fn write_plain(&mut self, src: &[u8]) -> io::Result<usize> {
        let n = self.conn.borrow_mut().writer().write(src)?;
        self.flush_tls().await?;
        Ok(n)
    }
}

plain_rent_io!(read TlsReadHalf<C>);

impl<C: Side> AsyncWriteRent for TlsWriteHalf<C> {
    plain_rent_io!(write);

    async fn flush(&mut self) -> io::Result<()> {
        self.flush_tls().await
    }

    /// Half-close: `close_notify`, then the socket's FIN; the read half may still read.
    async fn shutdown(&mut self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        self.flush_tls().await?;
        self.tcp.shutdown().await
    }
}

#[cfg(test)]
mod tests;

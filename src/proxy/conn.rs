//! One client connection: the downstream HTTP/1.1 life cycle and, in [`Conn::serve_request`],
//! the whole request path in one place:
//!
//! ```text
//! read head → parse (limits, framing) → body state → gateway::decide (target, route, 426,
//! WebSocket check, CORS preflight, auth, params) → local answer | upstream::Exchange
//! (forward head + body, response head, response body) → Request::finish (log) → keep alive
//! or close
//! ```
//!
//! The connection is generic over its stream, so TLS plugs in without touching this file.
//! The read buffer is reused from request to request; the parsed head holds offsets into it.
//! Bytes pipelined behind a request stay in the buffer for the next one, except after a
//! framing error, where the connection closes without reading further. Every response the
//! gateway makes itself is written by [`Conn::answer`].

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::body::Remaining;
use super::io::{Read, read_some, read_until, write_all_until};
use super::metered::Metered;
use super::pace::BodyPace;
use super::request::{Body, Persist, Request};
use super::splice::Spliceable;
use super::tunnel::{self, Tunnel};
use super::upstream::{CONTINUE, Exchange, Outcome, Upgrade};
use crate::error::{BodyStall, ErrorKind, GatewayError};
use crate::gateway::{Action, Inbound, Local};
use crate::http::head::{Progress, RequestHead, header_values, parse_head};
use crate::runtime::Worker;
use crate::runtime::access_log::Start;
use crate::runtime::upstream_stream::UpstreamStream;
use crate::tls::stream::{TlsReadHalf, TlsStream, TlsWriteHalf};

/// Initial client read buffer; it grows up to the head limit when a head needs it, and goes
/// back to this size when the connection turns idle (10,000 idle keepalive connections must
/// stay small).
pub const INITIAL_READ_BYTES: usize = 2048;
/// Above this many connections on a worker, an idle connection waits for readability with
/// no buffer (a poll, then the read: one more io_uring op per request) instead of parking a
/// read with its buffer; below it, the buffer is cheaper than the op.
pub const PARK_ABOVE_CONNECTIONS: usize = 512;
/// A parked plain connection still idle after this long leaves its task for the worker's
/// idle set (`runtime::idle`), where it costs about 100 bytes instead of a task. Busy
/// keepalive connections come back well within it, so they never pay for the move.
pub const IDLE_SET_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The smallest room a body read into the read buffer is given, and the most it grows by at
/// once (a slow upload's buffer grows only as its bytes come).
const BODY_READ_BYTES: usize = 4096;
const MAX_BODY_READ_BYTES: usize = 16 * 1024;

/// A client stream: plain TCP or TLS.
///
/// [`Spliceable::socket`] is the TCP stream when the connection is plain TCP: an idle one
/// can leave its task for the worker's idle set (`runtime::idle`), and large bodies can be
/// spliced. `None` over TLS: rustls's state and the plaintext are in the task.
pub trait Stream: AsyncReadRent + AsyncWriteRent + Spliceable + Sized + 'static {
    /// A WebSocket tunnel reads and writes the stream at once, through two halves.
    type ReadHalf: AsyncReadRent + 'static;
    type WriteHalf: AsyncWriteRent + 'static;
    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf);
    /// Over TLS: the protocol version and the SNI name, for the access log.
    fn tls_info(&self) -> Option<(&str, Option<&str>)>;
    /// Before the connection closes (TLS: `close_notify`, within `deadline`).
    fn finish(&mut self, deadline: Instant) -> impl Future<Output = ()>;
    /// Waits until a read would find something, holding no buffer meanwhile (a poll, not a
    /// read: dropping it loses no byte).
    fn readable(&mut self) -> impl Future<Output = std::io::Result<()>>;
    /// The connection is parked idle: let go of buffers it can do without (TLS: its
    /// ciphertext and record buffers).
    fn park(&mut self);
    /// The client bytes read and written since the last call, when counted
    /// ([`Metered`]).
    fn take_counts(&self) -> (u64, u64) {
        (0, 0)
    }
}

impl Stream for TcpStream {
    type ReadHalf = OwnedReadHalf<TcpStream>;
    type WriteHalf = OwnedWriteHalf<TcpStream>;
    fn into_halves(self) -> (Self::ReadHalf, Self::WriteHalf) {
        self.into_split()
    }
    fn tls_info(&self) -> Option<(&str, Option<&str>)> {
        None
    }
    async fn finish(&mut self, _deadline: Instant) {}
    async fn readable(&mut self) -> std::io::Result<()> {
        TcpStream::readable(self, false).await
    }
    fn park(&mut self) {}
}

impl Spliceable for TcpStream {
    fn socket(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl Stream for TlsStream {
    type ReadHalf = TlsReadHalf;
    type WriteHalf = TlsWriteHalf;
    fn into_halves(self) -> (TlsReadHalf, TlsWriteHalf) {
        TlsStream::into_halves(self)
    }
    fn tls_info(&self) -> Option<(&str, Option<&str>)> {
        Some((self.version(), self.server_name()))
    }
    async fn finish(&mut self, deadline: Instant) {
        self.close_notify(deadline).await;
    }
    async fn readable(&mut self) -> std::io::Result<()> {
        TlsStream::readable(self).await
    }
    fn park(&mut self) {
        TlsStream::park(self);
    }
}

impl Spliceable for TlsStream {
    fn socket(&self) -> Option<&TcpStream> {
        None
    }
}

/// How long a closing connection may take to send its last bytes (TLS `close_notify`).
pub const FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// What became of a request with a complete head.
enum Served {
    /// Answered; the connection goes on as this says.
    Next(Persist),
    /// A WebSocket handshake the backend accepted: the connection becomes a tunnel.
    Tunnel(Box<Tunnel>),
}

/// How the request path ended.
enum Step {
    Answered(Persist),
    /// The backend answered the handshake with 101: here is its connection.
    Upgraded(UpstreamStream),
}

/// Where a client connection is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No byte of the next request yet: the idle timeout runs (the header timeout for a new
    /// connection) and a drain closes the connection at once.
    Idle,
    /// Part of a head has arrived: the header timeout runs.
    ReadingHead,
    /// A request is being answered; a drain lets it finish.
    Serving,
    /// The connection is done.
    Closed,
}

/// How reading a head ended.
enum HeadRead {
    /// A complete head is at the start of the buffer.
    Complete,
    /// The connection ended quietly (end of stream, idle timeout, a drain while idle).
    Gone,
    /// Idle for [`IDLE_SET_AFTER`] with nothing read: the connection may move to the idle
    /// set until this idle deadline.
    Idle(Instant),
    /// The head is malformed, too large, or late: answer and close.
    Failed(GatewayError),
    /// The client closed (or the connection broke) with part of a head sent.
    Abandoned,
}

pub struct Conn<S> {
    pub io: S,
    pub peer: SocketAddr,
    /// `peer`'s IP address as text, for the forwarding headers.
    pub client_ip: String,
    pub https: bool,
    pub worker: Rc<Worker>,
    /// Client bytes: the current head at the start, then whatever followed it.
    pub buf: Vec<u8>,
    pub head: RequestHead,
    pub phase: Phase,
}

/// How [`serve`] let go of a connection.
pub enum Ended {
    /// Closed.
    Closed,
    /// Idle: the socket (a duplicate; the stream was dropped) is for the worker's idle set,
    /// until `deadline`.
    Idle { fd: OwnedFd, deadline: Instant },
}

/// Serves a client connection until it closes or, idle, leaves for the idle set. `peer`: the
/// client's address (the PROXY protocol's source when the listeners expect one); `buf`:
/// client bytes already read (those that followed a PROXY protocol header), the start of
/// the first request.
pub async fn serve<S: Stream>(
    io: S,
    peer: SocketAddr,
    https: bool,
    worker: Rc<Worker>,
    mut buf: Vec<u8>,
) -> Ended {
    if buf.capacity() < INITIAL_READ_BYTES {
        buf.reserve(INITIAL_READ_BYTES - buf.len());
    }
    let io = Metered::new(io, worker.clone());
    io.read_before(buf.len());
    let mut conn = Conn {
        io,
        peer,
        client_ip: peer.ip().to_string(),
        https,
        worker,
        buf,
        head: RequestHead::default(),
        phase: Phase::Idle,
    };
    let mut first = true;
    while conn.phase != Phase::Closed {
        let read = conn.read_head(first).await;
        first = false;
        // Boxed: a request's state is large and only lives while a request does, so an idle
        // connection's task stays small.
        let served = match read {
            HeadRead::Gone => break,
            HeadRead::Idle(deadline) => {
                if let Some(fd) = conn.io.socket().map(|s| s.as_raw_fd()).and_then(dup) {
                    return Ended::Idle { fd, deadline };
                }
                continue;
            }
            HeadRead::Complete => Box::pin(conn.serve_one()).await,
            HeadRead::Failed(e) => Served::Next(Box::pin(conn.refuse_head(e)).await),
            HeadRead::Abandoned => {
                conn.abandon_head();
                break;
            }
        };
        let persist = match served {
            Served::Next(p) => p,
            Served::Tunnel(t) => {
                // The connection is the tunnel's now, with what the client sent after its
                // handshake.
                let Conn { io, buf, .. } = conn;
                let (read, write) = io.into_halves();
                Box::pin(tunnel::run(read, write, buf, *t)).await;
                return Ended::Closed;
            }
        };
        match persist {
            Persist::KeepAlive => {
                conn.phase = Phase::Idle;
                if conn.buf.is_empty() && conn.buf.capacity() > INITIAL_READ_BYTES {
                    conn.buf = Vec::with_capacity(INITIAL_READ_BYTES);
                }
            }
            Persist::Close => conn.phase = Phase::Closed,
        }
    }
    conn.io.finish(Instant::now() + FINISH_TIMEOUT).await;
    Ended::Closed
}

/// A new descriptor for the socket `raw`; `None` if the system has none to give.
fn dup(raw: RawFd) -> Option<OwnedFd> {
    // SAFETY: `raw` is the open socket of a stream that outlives this call.
    unsafe { BorrowedFd::borrow_raw(raw) }
        .try_clone_to_owned()
        .ok()
}

impl<S: Stream> Conn<S> {
    /// Reads until a complete head is at the start of `buf`.
    async fn read_head(&mut self, first: bool) -> HeadRead {
        let worker = self.worker.clone();
        let (limits, header_timeout, idle_timeout) = {
            let snapshot = worker.snapshot();
            let server = &snapshot.config.server;
            (
                server.limits,
                server.header_timeout,
                server.client_idle_timeout,
            )
        };
        let now = Instant::now();
        let mut header_deadline = first.then(|| now + header_timeout);
        let idle_deadline = now + idle_timeout;
        loop {
            if !self.buf.is_empty() {
                match parse_head(&self.buf, &limits, &mut self.head) {
                    Ok(Progress::Complete) => return HeadRead::Complete,
                    Ok(Progress::Partial) => {}
                    Err(e) => return HeadRead::Failed(e),
                }
                self.phase = Phase::ReadingHead;
                header_deadline.get_or_insert_with(|| Instant::now() + header_timeout);
            }
            if self.buf.len() == self.buf.capacity() {
                // parse_head reports 431 before the buffer passes the head limit.
                self.buf
                    .reserve(self.buf.capacity().max(INITIAL_READ_BYTES));
            }
            let deadline = header_deadline.unwrap_or(idle_deadline);
            if self.buf.is_empty() && worker.active.get() > PARK_ABOVE_CONNECTIONS {
                // Many connections: wait holding nothing, then read into a fresh buffer.
                self.buf = Vec::new();
                self.head.headers = Vec::new();
                self.io.park();
                // A plain connection still idle after IDLE_SET_AFTER goes to the idle set.
                let to_set = header_deadline.is_none()
                    && self.io.socket().is_some()
                    && worker.idle.is_enabled();
                let wait_until = if to_set {
                    deadline.min(Instant::now() + IDLE_SET_AFTER)
                } else {
                    deadline
                };
                let ready = monoio::select! {
                    _ = worker.linger.wait() => return HeadRead::Gone,
                    // Out of descriptors: the longest idle make room for new clients.
                    _ = worker.evictions.wait() => return HeadRead::Gone,
                    r = monoio::time::timeout_at(wait_until, self.io.readable()) => r,
                };
                match ready {
                    Ok(Ok(())) => self.buf.reserve(INITIAL_READ_BYTES),
                    Ok(Err(_)) => return HeadRead::Gone,
                    Err(_) if wait_until < deadline => return HeadRead::Idle(deadline),
                    Err(_) if header_deadline.is_some() => {
                        return HeadRead::Failed(GatewayError::new(ErrorKind::HeaderTimeout));
                    }
                    Err(_) => return HeadRead::Gone,
                }
            }
            let read = if self.buf.is_empty() {
                // Idle: race the drain's linger, so a stopping worker closes idle
                // connections soon, after one last chance to send a request.
                let owned = std::mem::take(&mut self.buf);
                let stop = worker.linger.wait();
                monoio::select! {
                    _ = stop => return HeadRead::Gone,
                    r = monoio::time::timeout_at(deadline, read_some(&mut self.io, owned)) => match r {
                        Ok((read, b)) => {
                            self.buf = b;
                            read
                        }
                        Err(_) => Read::Timeout,
                    },
                }
            } else {
                read_until(&mut self.io, &mut self.buf, deadline).await
            };
            match read {
                Read::Data(_) => {}
                Read::Timeout if header_deadline.is_some() => {
                    return HeadRead::Failed(GatewayError::new(ErrorKind::HeaderTimeout));
                }
                Read::Eof | Read::Failed(_) if !self.buf.is_empty() => {
                    return HeadRead::Abandoned;
                }
                Read::Timeout | Read::Eof | Read::Failed(_) => return HeadRead::Gone,
            }
        }
    }

    /// One request with a complete head, from start to its logged end.
    async fn serve_one(&mut self) -> Served {
        self.phase = Phase::Serving;
        let start = Start {
            time: std::time::SystemTime::now(),
            request_id: "",
            client: self.peer,
            method: self.head.method.get(&self.buf),
            host: self.head.host.map_or(&[][..], |h| h.get(&self.buf)),
            target: self.head.target.get(&self.buf),
            user_agent: if self.worker.log.enabled() {
                header_values(&self.head.headers, &self.buf, b"user-agent").next()
            } else {
                None
            },
            tls: self.io.tls_info(),
            h2: false,
        };
        let mut req = Request::begin(&self.worker, start);
        let step = self.serve_request(&mut req).await;
        req.client_bytes = self.io.take_counts();
        match step {
            Step::Answered(persist) => {
                req.finish();
                Served::Next(persist)
            }
            Step::Upgraded(up) => Served::Tunnel(Box::new(Tunnel { req, up })),
        }
    }

    /// A head that could not be parsed or arrive in time: answer, log and close.
    async fn refuse_head(&mut self, e: GatewayError) -> Persist {
        let start = Start::headless(self.peer, self.io.tls_info());
        let mut req = Request::begin(&self.worker, start);
        self.answer(&mut req, &Local::Error(e), false, Persist::Close, None)
            .await;
        req.client_bytes = self.io.take_counts();
        req.finish();
        Persist::Close
    }

    /// A head the client gave up on: logged (status 0, the bytes that came) and counted.
    fn abandon_head(&mut self) {
        let start = Start::headless(self.peer, self.io.tls_info());
        let mut req = Request::begin(&self.worker, start);
        req.client_bytes = self.io.take_counts();
        self.worker.metrics().head_abandoned();
        req.finish();
    }

    /// The whole request path; see the module docs.
    async fn serve_request(&mut self, req: &mut Request) -> Step {
        let snapshot = req.snapshot.clone();
        let cfg = &*snapshot.config;
        let head_request = self.head.method.get(&self.buf) == b"HEAD";
        let persist = Persist::from_head(&self.head, self.worker.drain.is_fired());
        let body = match Body::of(&self.buf, &self.head, cfg.server.limits.max_body_bytes) {
            Ok(b) => b,
            Err(e) => {
                let local = Local::Error(e);
                return Step::Answered(
                    self.answer(req, &local, head_request, Persist::Close, None)
                        .await,
                );
            }
        };

        let inbound = Inbound {
            buf: &self.buf,
            head: &self.head,
            https: self.https,
            client: self.peer.ip(),
            now: req.wall,
            mono: req.started,
        };
        let decision = req.decide(&snapshot, &inbound).await;
        let (forward, websocket) = match decision.action {
            Action::Pending => {
                let local = Local::Error(GatewayError::new(ErrorKind::StoreUnavailable));
                let consumed = body.buffered_end();
                return Step::Answered(
                    self.answer(req, &local, head_request, persist, consumed)
                        .await,
                );
            }
            Action::Local(local) => {
                let consumed = body.buffered_end();
                return Step::Answered(
                    self.answer(req, &local, head_request, persist, consumed)
                        .await,
                );
            }
            Action::Tunnel(f) => (f, true),
            Action::Forward(f) => (f, false),
        };
        req.caller = forward.permit.identity().caller().map(str::to_string);
        // A body still on its way is read here, up to `request_buffer_bytes`, before an
        // upstream connection is taken: a slow upload never holds one.
        let body = match body {
            Body::Streaming(rest) if !websocket && cfg.server.request_buffer_bytes > 0 => {
                match self.buffer_body(req, rest).await {
                    Ok(body) => body,
                    Err(Some(e)) => {
                        let local = Local::Error(e);
                        return Step::Answered(
                            self.answer(req, &local, head_request, Persist::Close, None)
                                .await,
                        );
                    }
                    Err(None) => return Step::Answered(Persist::Close),
                }
            }
            body => body,
        };

        let exchange = Exchange::new(&snapshot, &forward, req);
        let outcome = if websocket {
            if body.buffered_end() != Some(self.head.len) {
                let e =
                    GatewayError::new(ErrorKind::BadRequest("a WebSocket handshake has no body"));
                let local = Local::Error(e);
                return Step::Answered(
                    self.answer(req, &local, head_request, Persist::Close, None)
                        .await,
                );
            }
            match exchange.upgrade(self, persist).await {
                Upgrade::Tunnel(up) => return Step::Upgraded(up),
                Upgrade::Done(outcome) => outcome,
            }
        } else {
            exchange.run(self, body, head_request, persist).await
        };
        Step::Answered(match outcome {
            Outcome::Relayed(p) => p,
            Outcome::Failed { error, consumed } => {
                self.answer(req, &Local::Error(error), head_request, persist, consumed)
                    .await
            }
        })
    }

    /// Reads the rest of a request body into `buf`, until it is whole or
    /// `request_buffer_bytes` of it are here, at the pace the configuration asks
    /// ([`BodyPace`]). `Err(None)`: the client went away; `Err(Some(e))`: 408 (or a framing
    /// error), and the connection closes.
    async fn buffer_body(
        &mut self,
        req: &mut Request,
        mut rest: Remaining,
    ) -> Result<Body, Option<GatewayError>> {
        let snapshot = req.snapshot.clone();
        let server = &snapshot.config.server;
        let head_len = self.head.len;
        if self.head.expect_continue {
            let mut cont = CONTINUE.to_vec();
            let deadline = Instant::now() + server.client_idle_timeout;
            if !write_all_until(&mut self.io, &mut cont, deadline).await {
                return Err(None);
            }
            req.continue_sent = true;
        }
        let mut pace = BodyPace::new(server, rest.left(), Instant::now());
        loop {
            let here = self.buf.len() - head_len;
            if here >= server.request_buffer_bytes {
                req.body_pace = Some(pace);
                return Ok(Body::Streaming(rest));
            }
            if self.buf.capacity() - self.buf.len() < BODY_READ_BYTES {
                let want = match &rest {
                    Remaining::Length(n) => usize::try_from(*n).unwrap_or(usize::MAX),
                    _ => usize::MAX,
                };
                let room = server.request_buffer_bytes - here;
                self.buf
                    .reserve(want.min(room).clamp(BODY_READ_BYTES, MAX_BODY_READ_BYTES));
            }
            let old = self.buf.len();
            let n = match read_until(&mut self.io, &mut self.buf, pace.deadline()).await {
                Read::Data(n) => n,
                Read::Timeout => {
                    return Err(Some(GatewayError::new(ErrorKind::BodyTimeout(
                        BodyStall::Stalled,
                    ))));
                }
                Read::Eof | Read::Failed(_) => return Err(None),
            };
            match &mut rest {
                Remaining::Length(left) => {
                    let take = (*left).min(n as u64);
                    *left -= take;
                    if *left == 0 {
                        return Ok(Body::Buffered {
                            end: old + take as usize,
                        });
                    }
                }
                Remaining::Chunked(scanner) => {
                    let s = scanner.scan(&self.buf[old..old + n]).map_err(Some)?;
                    if s.done {
                        return Ok(Body::Buffered {
                            end: old + s.consumed,
                        });
                    }
                }
                // Request bodies are never delimited by the end of the stream.
                Remaining::UntilClose => return Ok(Body::Streaming(rest)),
            }
            pace.after(n, Instant::now(), rest.left())
                .map_err(|why| Some(GatewayError::new(ErrorKind::BodyTimeout(why))))?;
        }
    }

    /// Writes an answer the gateway makes itself, then drops the request from the buffer.
    /// `consumed`: the request's bytes in `buf`; `None` when its body was not read, so the
    /// connection closes.
    pub(super) async fn answer(
        &mut self,
        req: &mut Request,
        local: &Local<'_>,
        head_request: bool,
        persist: Persist,
        consumed: Option<usize>,
    ) -> Persist {
        let closes = matches!(local, Local::Error(e) if e.closes_connection());
        let persist = persist.close_if(consumed.is_none() || closes);
        let close = persist.closes();
        req.write_local(local, head_request, close, &self.buf);
        let out = &mut req.s.out;
        let deadline = Instant::now() + req.snapshot.config.server.client_idle_timeout;
        if !write_all_until(&mut self.io, out, deadline).await || close {
            return Persist::Close;
        }
        match consumed {
            Some(end) => {
                self.buf.drain(..end);
                Persist::KeepAlive
            }
            None => Persist::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    /// What an idle connection's task costs: the future of `serve` (a task is allocated at
    /// the size of its largest state). Printed for the README; bounded so that a change that
    /// blows it up shows.
    #[test]
    fn the_connection_task_stays_small() {
        use super::*;
        use std::sync::Arc;
        fn size<F: Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        let Ok(mut rt) = rt else { return };
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let tcp = TcpStream::connect_addr(addr).await.unwrap();
            let cfg = crate::config::load_str(
                "[server]\nlisten_http = [\"127.0.0.1:0\"]\nadmin_listen = \"off\"\n",
                std::path::Path::new("t.toml"),
            )
            .unwrap();
            let logger = Arc::new(crate::runtime::access_log::Logger::start().unwrap());
            let shared = Arc::new(crate::runtime::Shared::new(Arc::new(cfg), 1, logger));
            let worker = Rc::new(Worker::new(0, shared).unwrap());
            eprintln!(
                "Conn: {} bytes, RequestHead: {} bytes",
                std::mem::size_of::<Conn<Metered<TcpStream>>>(),
                std::mem::size_of::<RequestHead>()
            );
            let fut = serve(tcp, addr, false, worker, Vec::new());
            let n = size(&fut);
            eprintln!("serve::<TcpStream> future: {n} bytes");
            assert!(n < 4096, "{n}");
        });
    }
}

//! One client connection: the downstream HTTP/1.1 life cycle and, in [`Conn::serve_request`],
//! the whole request path in one place:
//!
//! read head → parse (limits, framing) → target + dot segments → route → protocol (426) →
//! local answer (mock) or [`super::upstream`] exchange (forward head + body, response head,
//! response body) → keep alive or close.
//!
//! The connection is generic over its stream, so TLS plugs in without touching this file.
//! The read buffer is reused from request to request; the parsed head holds offsets into it.
//! Bytes pipelined behind a request stay in the buffer for the next one, except after a
//! framing error, where the connection closes without reading further.

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use super::access_log::{Log, Start};
use super::io::{Read, read_some, read_until, write_all_until};
use crate::config::{Auth, BackendTarget, FrontendType};
use crate::error::{ErrorKind, GatewayError};
use crate::http::chunked::ChunkedScanner;
use crate::http::head::{BodyFraming, Progress, RequestHead, parse_head};
use crate::http::reply::{Reply, write_error};
use crate::http::response::ResponseHead;
use crate::router::target::{parse_target, resolve_dot_segments};
use crate::server::worker::Worker;

/// Initial client read buffer; it grows up to the head limit when a head needs it, and goes
/// back to this size when the connection turns idle (10,000 idle keepalive connections must
/// stay small).
pub const INITIAL_READ_BYTES: usize = 2048;

/// A client stream: plain TCP now, TLS later.
pub trait Stream: AsyncReadRent + AsyncWriteRent + 'static {}
impl<T: AsyncReadRent + AsyncWriteRent + 'static> Stream for T {}

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

/// What the connection does after a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    KeepAlive,
    Close,
}

/// Per-request scratch space, reused across the requests of a connection.
#[derive(Default)]
pub struct Scratch {
    pub request_id: String,
    pub path: String,
    pub backend_path: String,
    /// The upstream request head (and the body when it is already buffered).
    pub upstream_head: Vec<u8>,
    /// Responses written to the client.
    pub out: Vec<u8>,
    pub response: ResponseHead,
    /// Access log: the line's request half, the status sent (0: none), the API's names.
    pub log_line: Vec<u8>,
    pub status: u16,
    pub service: String,
    pub api: String,
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
    pub scratch: Scratch,
    /// When the current request's head was complete.
    pub started: std::time::Instant,
}

/// Serves a client connection until it closes.
pub async fn serve<S: Stream>(io: S, peer: SocketAddr, https: bool, worker: Rc<Worker>) {
    let mut conn = Conn {
        io,
        peer,
        client_ip: peer.ip().to_string(),
        https,
        worker,
        buf: Vec::with_capacity(INITIAL_READ_BYTES),
        head: RequestHead::default(),
        phase: Phase::Idle,
        scratch: Scratch::default(),
        started: std::time::Instant::now(),
    };
    let mut first = true;
    while conn.phase != Phase::Closed {
        match conn.read_head(first).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                conn.begin_request();
                conn.fail_before_route(&e).await;
                conn.log_request();
                break;
            }
        }
        first = false;
        conn.phase = Phase::Serving;
        conn.begin_request();
        // Output buffers are the worker's while a request is served, not the connection's.
        conn.scratch.upstream_head = conn.worker.take_small();
        conn.scratch.out = conn.worker.take_small();
        // Boxed: the request path's state is large and only lives while a request does, so an
        // idle connection's task stays small.
        let after = Box::pin(conn.serve_request()).await;
        conn.log_request();
        conn.worker
            .put_small(std::mem::take(&mut conn.scratch.upstream_head));
        conn.worker.put_small(std::mem::take(&mut conn.scratch.out));
        match after {
            After::KeepAlive => {
                conn.phase = Phase::Idle;
                if conn.buf.is_empty() && conn.buf.capacity() > INITIAL_READ_BYTES {
                    conn.buf = Vec::with_capacity(INITIAL_READ_BYTES);
                }
            }
            After::Close => conn.phase = Phase::Closed,
        }
    }
}

impl<S: Stream> Conn<S> {
    /// Reads until a complete head is at the start of `buf`. `Ok(false)`: the connection
    /// ended quietly (end of stream, idle timeout, or a drain while idle).
    async fn read_head(&mut self, first: bool) -> Result<bool, GatewayError> {
        let worker = self.worker.clone();
        let server = &worker.snapshot().config.server;
        let limits = server.limits;
        let mut header_deadline = first.then(|| Instant::now() + server.header_timeout);
        let idle_deadline = Instant::now() + server.client_idle_timeout;
        loop {
            if !self.buf.is_empty() {
                if parse_head(&self.buf, &limits, &mut self.head)? == Progress::Complete {
                    return Ok(true);
                }
                self.phase = Phase::ReadingHead;
                header_deadline.get_or_insert_with(|| Instant::now() + server.header_timeout);
            }
            if self.buf.len() == self.buf.capacity() {
                // parse_head reports 431 before the buffer passes the head limit.
                self.buf
                    .reserve(self.buf.capacity().max(INITIAL_READ_BYTES));
            }
            let read = if self.buf.is_empty() {
                // Idle: race the drain, so a stopping worker closes idle connections now.
                let deadline = header_deadline.unwrap_or(idle_deadline);
                let owned = std::mem::take(&mut self.buf);
                let stop = worker.drain.wait();
                monoio::select! {
                    _ = stop => return Ok(false),
                    r = monoio::time::timeout_at(deadline, read_some(&mut self.io, owned)) => match r {
                        Ok((read, b)) => {
                            self.buf = b;
                            read
                        }
                        Err(_) => Read::Timeout,
                    },
                }
            } else {
                let deadline = header_deadline.unwrap_or(idle_deadline);
                read_until(&mut self.io, &mut self.buf, deadline).await
            };
            match read {
                Read::Data(_) => {}
                Read::Timeout if header_deadline.is_some() => {
                    return Err(GatewayError::new(ErrorKind::HeaderTimeout));
                }
                Read::Timeout | Read::Eof | Read::Failed(_) => return Ok(false),
            }
        }
    }

    /// The whole request path; see the module docs.
    async fn serve_request(&mut self) -> After {
        let worker = self.worker.clone();
        let snapshot = worker.snapshot();
        let cfg = &*snapshot.config;
        let head_request = self.head.method.get(&self.buf) == b"HEAD";

        // How much of the body is already here; a body that is not must be relayed or, for
        // a local answer, the connection closes (its bytes are never read).
        let body_end = match self.head.body {
            BodyFraming::None => Some(self.head.len),
            BodyFraming::Length(n) => {
                let end = self.head.len as u64 + n;
                (end <= self.buf.len() as u64).then_some(end as usize)
            }
            BodyFraming::Chunked => {
                let mut scanner = ChunkedScanner::new(cfg.server.limits.max_body_bytes);
                match scanner.scan(&self.buf[self.head.len..]) {
                    Ok(s) if s.done => Some(self.head.len + s.consumed),
                    Ok(_) => None,
                    Err(e) => return self.answer_error(&e, head_request, None).await,
                }
            }
        };

        // Target, dot segments, route.
        let Ok(target) = std::str::from_utf8(self.head.target.get(&self.buf)) else {
            let e = GatewayError::new(ErrorKind::BadRequest("invalid request target"));
            return self.answer_error(&e, head_request, None).await;
        };
        let t = match parse_target(target) {
            Ok(t) => t,
            Err(e) => {
                let e = GatewayError::new(ErrorKind::BadRequest(e.message()));
                return self.answer_error(&e, head_request, None).await;
            }
        };
        let host = t.authority.or_else(|| {
            self.head
                .host
                .and_then(|h| std::str::from_utf8(h.get(&self.buf)).ok())
        });
        let mut path_buf = std::mem::take(&mut self.scratch.path);
        let path = match resolve_dot_segments(t.path, &mut path_buf) {
            Ok(p) => p,
            Err(e) => {
                let e = GatewayError::new(ErrorKind::BadRequest(e.message()));
                return self.answer_error(&e, head_request, None).await;
            }
        };
        let method = std::str::from_utf8(self.head.method.get(&self.buf)).unwrap_or("");
        let routed = cfg.routes.route(host, method, path);
        let m = match routed {
            Ok(m) => m,
            Err(miss) => {
                let e = miss.error(method, path, host.unwrap_or(""));
                self.scratch.path = path_buf;
                return self.answer_error(&e, head_request, body_end).await;
            }
        };
        let service = &cfg.services[m.service];
        let api = &service.apis[m.api];
        self.scratch.service.push_str(&service.name);
        self.scratch.api.push_str(&api.name);
        let local_error = if !service.protocol.allows(self.https) {
            Some(GatewayError::new(ErrorKind::ProtocolNotAllowed(
                if self.https {
                    "this API is served over http only"
                } else {
                    "this API is served over https only"
                },
            )))
        } else if api.auth != Auth::None {
            // Fail closed until authentication lands: never serve a protected API unchecked.
            Some(GatewayError::new(ErrorKind::Unauthorized(
                "authentication for this API is not available in this version".into(),
            )))
        } else if api.frontend_type == FrontendType::Ws {
            // The WebSocket tunnel arrives with the TLS/WebSocket issue.
            Some(GatewayError::new(ErrorKind::BadGateway(
                "WebSocket APIs are not served yet".into(),
            )))
        } else {
            None
        };
        if let Some(e) = local_error {
            self.scratch.path = path_buf;
            return self.answer_error(&e, head_request, body_end).await;
        }
        let backend = &api.backend;
        let mut backend_path = std::mem::take(&mut self.scratch.backend_path);
        backend_path.clear();
        if let Some(bp) = &backend.path {
            bp.compose(&m, path, &mut backend_path);
        } else {
            backend_path.push_str(path);
        }
        // The query as a range of the read buffer (the target is a slice of it).
        let query = t.query.map(|q| {
            let start = q.as_ptr() as usize - self.buf.as_ptr() as usize;
            start..start + q.len()
        });
        self.scratch.path = path_buf;
        let after = match &backend.target {
            BackendTarget::Mock {
                status,
                body,
                content_type,
            } => {
                let close = body_end.is_none() || !self.head.keep_alive || worker.drain.is_fired();
                self.scratch.status = *status;
                self.scratch.out.clear();
                Reply {
                    status: *status,
                    content_type,
                    body: body.as_bytes(),
                    request_id: &self.scratch.request_id,
                    head_request,
                    close,
                }
                .write(&mut self.scratch.out);
                self.finish_local(body_end, close).await
            }
            BackendTarget::Vpc { upstream } => {
                self.proxy(
                    &snapshot,
                    *upstream,
                    backend,
                    &backend_path,
                    query,
                    body_end,
                    head_request,
                )
                .await
            }
        };
        self.scratch.backend_path = backend_path;
        after
    }

    /// Sends `scratch.out` and consumes the request from the buffer.
    async fn finish_local(&mut self, body_end: Option<usize>, close: bool) -> After {
        let deadline = Instant::now() + self.worker.snapshot().config.server.client_idle_timeout;
        if !write_all_until(&mut self.io, &mut self.scratch.out, deadline).await || close {
            return After::Close;
        }
        match body_end {
            Some(end) => {
                self.buf.drain(..end);
                After::KeepAlive
            }
            None => After::Close,
        }
    }

    /// Answers with a gateway error. `consumed`: the bytes of the request in `buf` to drop
    /// before the next one; `None` when its body was not read, so the connection closes.
    pub(super) async fn answer_error(
        &mut self,
        e: &GatewayError,
        head_request: bool,
        consumed: Option<usize>,
    ) -> After {
        self.scratch.status = e.status();
        let close = consumed.is_none()
            || e.closes_connection()
            || !self.head.keep_alive
            || self.worker.drain.is_fired();
        self.scratch.out.clear();
        write_error(
            &mut self.scratch.out,
            e,
            &self.scratch.request_id,
            head_request,
            close,
        );
        self.finish_local(consumed, close).await
    }

    /// A new request id; the request half of its access log line.
    fn begin_request(&mut self) {
        self.started = std::time::Instant::now();
        self.worker
            .ids
            .borrow_mut()
            .next_into(&mut self.scratch.request_id);
        self.scratch.status = 0;
        self.scratch.service.clear();
        self.scratch.api.clear();
        self.scratch.log_line.clear();
        if self.worker.log.enabled() {
            // Spans are only meaningful once a head parsed; a failed head logs empty fields.
            let parsed = self.phase == Phase::Serving;
            let field =
                |span: crate::http::head::Span| if parsed { span.get(&self.buf) } else { &[][..] };
            Log::start(
                &Start {
                    time: std::time::SystemTime::now(),
                    request_id: &self.scratch.request_id,
                    client: self.peer,
                    method: field(self.head.method),
                    host: self.head.host.map_or(&[][..], field),
                    target: field(self.head.target),
                },
                &mut self.scratch.log_line,
            );
        }
    }

    fn log_request(&mut self) {
        let route = (!self.scratch.service.is_empty())
            .then_some((self.scratch.service.as_str(), self.scratch.api.as_str()));
        self.worker.log.finish(
            &self.scratch.log_line,
            self.scratch.status,
            route,
            self.started.elapsed(),
        );
    }

    /// A head that could not be parsed or arrive in time: answer and close.
    async fn fail_before_route(&mut self, e: &GatewayError) {
        self.scratch.status = e.status();
        self.scratch.out.clear();
        write_error(
            &mut self.scratch.out,
            e,
            &self.scratch.request_id,
            false,
            true,
        );
        let deadline = Instant::now() + self.worker.snapshot().config.server.client_idle_timeout;
        let _ = write_all_until(&mut self.io, &mut self.scratch.out, deadline).await;
    }
}

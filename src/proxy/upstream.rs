//! The VPC backend exchange (SPEC §3): upstream connection from the worker's pool, the
//! forwarded head and body, the retry rules, and the answer relayed back unchanged.
//!
//! Retry rule: a request is sent again, on a fresh connection, only when it came from the
//! pool and either no byte of it was sent, or it is idempotent, no byte of the answer came
//! back, and the whole request is still in hand (a streamed body cannot be replayed).

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::body::{ReadPace, RelayError, Remaining, relay};
use super::conn::{Conn, Stream};
use super::io::{Read, WriteFailed, read_until, write_all_until, write_until};
use super::pace::BodyPace;
use super::request::{Body, Persist, Request};
use super::splice::BodyPath;
use crate::config::{Server, Upstream, UpstreamTls};
use crate::error::{ErrorKind, GatewayError};
use crate::gateway::Forward;
use crate::gateway::forward::{ForwardContext, Plan, write_upstream_head};
use crate::http::chunked::ChunkedScanner;
use crate::http::head::header_values;
use crate::http::response::{
    ClientConnection, Progress, ResponseFraming, ResponseHead, parse_response_head,
    write_client_head,
};
use crate::runtime::metrics::UpstreamEvent;
use crate::runtime::pool::UpstreamPool;
use crate::runtime::upstream_stream::UpstreamStream;
use crate::runtime::{Snapshot, Worker};
use crate::tls::client as tls_client;
use crate::tls::stream::TlsStream;

/// Attempts per request: the first, plus one retry on a fresh connection.
pub const MAX_ATTEMPTS: u32 = 2;

pub(super) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// How an exchange ended.
pub enum Outcome {
    /// The backend's answer went to the client (or the client went away); the client
    /// connection goes on as this says.
    Relayed(Persist),
    /// No answer reached the client: the caller answers with this error. `consumed`: the
    /// request's bytes to drop from the read buffer; `None` when the body was not read.
    Failed {
        error: GatewayError,
        consumed: Option<usize>,
    },
}

/// An upstream connection in use by this exchange.
pub(crate) struct UpConn {
    pub(crate) stream: UpstreamStream,
    pub(crate) target: usize,
    pub(crate) reused: bool,
}

pub(crate) fn broke(why: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadGateway(why.to_string()))
}

/// A failed write of the upstream request: 504 when it timed out, else 502 `why`.
pub(crate) fn send_failed(f: &WriteFailed, why: &str) -> GatewayError {
    if f.timed_out {
        GatewayError::new(ErrorKind::GatewayTimeout)
    } else {
        broke(why)
    }
}

pub(crate) fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
    )
}

/// One request's exchange with its backend: it owns the upstream connection from the pool
/// until the answer is relayed, then gives it back (or closes it).
pub struct Exchange<'a> {
    server: &'a Server,
    upstream: &'a Upstream,
    pool: &'a UpstreamPool,
    /// The upstream's slot in the worker's metrics.
    slot: usize,
    forward: &'a Forward<'a>,
    req: &'a mut Request,
}

impl<'a> Exchange<'a> {
    pub fn new(snapshot: &'a Snapshot, forward: &'a Forward<'a>, req: &'a mut Request) -> Self {
        Exchange {
            server: &snapshot.config.server,
            upstream: &snapshot.config.upstreams[forward.upstream],
            pool: &snapshot.pools[forward.upstream],
            slot: snapshot.slots.upstream(forward.upstream),
            forward,
            req,
        }
    }

    /// Sends the request (head, then the body as it arrives) and relays the answer.
    pub async fn run<S: Stream>(
        self,
        client: &mut Conn<S>,
        body: Body,
        head_request: bool,
        persist: Persist,
    ) -> Outcome {
        let Exchange {
            server,
            upstream,
            pool,
            slot,
            forward,
            req,
        } = self;
        let worker = &*client.worker.clone();
        let consumed = body.buffered_end();
        let backend = &forward.api.backend;

        // The upstream head, followed by as much of the body as is here.
        let first_target = pool.pick();
        write_head(client, req, forward, pool.host(first_target), false);
        let head_len = client.head.len;
        let mut rest = match body {
            Body::Buffered { end } => {
                req.s
                    .upstream_head
                    .extend_from_slice(&client.buf[head_len..end]);
                None
            }
            Body::Streaming(rest) => {
                req.s
                    .upstream_head
                    .extend_from_slice(&client.buf[head_len..]);
                Some(rest)
            }
        };
        let whole = rest.is_none();
        // The body's pace goes on from where buffering left it.
        let mut pace = req.body_pace.take().unwrap_or_else(|| {
            BodyPace::new(
                server,
                rest.as_ref().and_then(Remaining::left),
                Instant::now(),
            )
        });
        if !whole && client.head.expect_continue && !req.continue_sent {
            let mut cont = CONTINUE.to_vec();
            let deadline = Instant::now() + server.client_idle_timeout;
            if !write_all_until(&mut client.io, &mut cont, deadline).await {
                return Outcome::Relayed(Persist::Close);
            }
        }

        let method: &[u8] = match backend.method {
            Some(m) => m.name().as_bytes(),
            None => client.head.method.get(&client.buf),
        };
        let may_replay = idempotent(method) && whole;
        let began = Instant::now();
        let deadline = began + backend.timeout;
        let mut ubuf = worker.take_buffer();
        // The request bytes to drop from `buf` once answered: all of them once streamed.
        let mut consumed = consumed;
        let mut head_deadline = deadline;
        let mut fresh = false;
        let mut attempt = 0;
        let outcome: Result<UpConn, GatewayError> = loop {
            attempt += 1;
            let mut up = match connect(
                pool,
                upstream,
                first_target,
                deadline,
                fresh,
                (worker, slot),
            )
            .await
            {
                Ok(up) => up,
                Err(e) => break Err(e),
            };
            let len = req.s.upstream_head.len();
            let sent =
                write_until(&mut up.stream, &mut req.s.upstream_head, 0, len, deadline).await;
            if let Err(f) = sent {
                if !f.timed_out
                    && up.reused
                    && attempt < MAX_ATTEMPTS
                    && (f.sent == 0 || may_replay)
                {
                    fresh = true;
                    continue;
                }
                break Err(send_failed(
                    &f,
                    "backend connection broke while sending the request",
                ));
            }
            if let Some(rest) = rest.take() {
                let mut big = worker.take_buffer();
                let relayed = relay(
                    &mut client.io,
                    Some(&mut up.stream),
                    &mut big,
                    rest,
                    ReadPace::Body(&mut pace),
                    backend.timeout,
                    BodyPath::Copy,
                )
                .await;
                match relayed {
                    Ok(()) => {
                        // `big` holds what the client pipelined after the body.
                        client.buf.clear();
                        client.buf.extend_from_slice(&big);
                        worker.put_buffer(big);
                        consumed = Some(0);
                        // A streamed body may take long; the answer gets a full timeout.
                        head_deadline = Instant::now() + backend.timeout;
                    }
                    Err(RelayError::Source(Some(e))) => break Err(e),
                    Err(RelayError::Stalled(why)) => {
                        worker.put_buffer(big);
                        break Err(GatewayError::new(ErrorKind::BodyTimeout(why)));
                    }
                    Err(RelayError::Source(None)) => {
                        worker.put_buffer(ubuf);
                        return Outcome::Relayed(Persist::Close);
                    }
                    Err(RelayError::Sink) => {
                        break Err(broke("backend connection broke while sending the body"));
                    }
                }
            }
            match read_response_head(
                &mut up.stream,
                &mut ubuf,
                head_request,
                &mut req.s.response,
                head_deadline,
            )
            .await
            {
                Ok(()) => {
                    req.upstream = Some((pool.addr(up.target), began.elapsed()));
                    break Ok(up);
                }
                Err(e) if e.retryable && up.reused && may_replay && attempt < MAX_ATTEMPTS => {
                    fresh = true;
                }
                Err(e) => break Err(e),
            }
        };
        let up = match outcome {
            Ok(up) => up,
            Err(error) => {
                worker.put_buffer(ubuf);
                return Outcome::Failed { error, consumed };
            }
        };
        let relay = Relay {
            worker,
            server_idle: server.client_idle_timeout,
            timeout: backend.timeout,
            pool,
            head_request,
            persist,
        };
        let outcome = relay.run(client, req, up, &mut ubuf, true).await;
        worker.put_buffer(ubuf);
        if let Outcome::Relayed(Persist::KeepAlive) = outcome
            && let Some(end) = consumed
        {
            client.buf.drain(..end);
        }
        outcome
    }
}

/// Writes the upstream request head (SPEC §3) into the request's scratch.
fn write_head<S: Stream>(
    client: &Conn<S>,
    req: &mut Request,
    forward: &Forward<'_>,
    default_host: &str,
    websocket: bool,
) {
    let query = forward
        .query
        .clone()
        .and_then(|r| std::str::from_utf8(&client.buf[r]).ok());
    let s = &mut req.s;
    let plan = Plan {
        backend: &forward.api.backend,
        params: &forward.api.params,
        placed: &s.params,
        permit: &forward.permit,
        backend_path: &s.backend_path,
        query,
    };
    let ctx = ForwardContext {
        client_ip: &client.client_ip,
        https: client.https,
        request_id: &s.request_id,
        websocket,
        default_host,
    };
    write_upstream_head(&client.buf, &client.head, &plan, &ctx, &mut s.upstream_head);
}

/// The WebSocket GUID of RFC 6455 §1.3.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// How a forwarded WebSocket handshake ended.
pub enum Upgrade {
    /// The backend answered 101 with the right `Sec-WebSocket-Accept`; the 101 (and any
    /// bytes that came with it) went to the client: the tunnel starts.
    Tunnel(UpstreamStream),
    /// Any other answer was relayed as a normal response, or the exchange failed.
    Done(Outcome),
}

/// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2): base64(SHA-1(key + GUID)).
pub fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(WEBSOCKET_GUID);
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

impl Exchange<'_> {
    /// Forwards a WebSocket handshake on a fresh upstream connection (never pooled, never
    /// retried) and reads the answer; see [`Upgrade`].
    pub async fn upgrade<S: Stream>(self, client: &mut Conn<S>, persist: Persist) -> Upgrade {
        let Exchange {
            server,
            upstream,
            pool,
            slot,
            forward,
            req,
        } = self;
        let worker = &*client.worker.clone();
        let consumed = Some(client.head.len);
        let failed = |error| Upgrade::Done(Outcome::Failed { error, consumed });
        let backend = &forward.api.backend;
        let target = pool.pick();
        write_head(client, req, forward, pool.host(target), true);
        let began = Instant::now();
        let deadline = began + backend.timeout;
        let mut up = match connect(pool, upstream, target, deadline, true, (worker, slot)).await {
            Ok(up) => up,
            Err(e) => return failed(e),
        };
        let len = req.s.upstream_head.len();
        if let Err(f) =
            write_until(&mut up.stream, &mut req.s.upstream_head, 0, len, deadline).await
        {
            return failed(send_failed(
                &f,
                "backend connection broke while sending the handshake",
            ));
        }
        let mut ubuf = worker.take_buffer();
        let extra = &req.s.extra[..];
        if let Err(e) = read_response_head(
            &mut up.stream,
            &mut ubuf,
            false,
            &mut req.s.response,
            deadline,
        )
        .await
        {
            worker.put_buffer(ubuf);
            return failed(e);
        }
        req.upstream = Some((pool.addr(up.target), began.elapsed()));
        let response = &mut req.s.response;
        if response.status != 101 {
            // Refused (403, 404, ...): a normal answer, and no tunnel. The connection is not
            // pooled: it was opened for an upgrade.
            let relay = Relay {
                worker,
                server_idle: server.client_idle_timeout,
                timeout: backend.timeout,
                pool,
                head_request: false,
                persist,
            };
            let outcome = relay.run(client, req, up, &mut ubuf, false).await;
            worker.put_buffer(ubuf);
            if let Outcome::Relayed(Persist::KeepAlive) = outcome {
                client.buf.drain(..client.head.len);
            }
            return Upgrade::Done(outcome);
        }
        let key = header_values(&client.head.headers, &client.buf, b"sec-websocket-key")
            .next()
            .unwrap_or_default();
        let expected = websocket_accept(key);
        let accept = header_values(&response.headers, &ubuf, b"sec-websocket-accept").next();
        if response.framing != ResponseFraming::Upgrade || accept != Some(expected.as_bytes()) {
            worker.put_buffer(ubuf);
            return failed(broke(
                "the backend's WebSocket handshake answer is invalid (Sec-WebSocket-Accept)",
            ));
        }
        req.status = 101;
        req.s.out.clear();
        write_client_head(
            &ubuf,
            response,
            &req.s.request_id,
            ClientConnection::KeepAlive,
            extra,
            &mut req.s.out,
        );
        // Bytes the backend sent right behind its 101 belong to the tunnel.
        req.s.out.extend_from_slice(&ubuf[response.len..]);
        worker.put_buffer(ubuf);
        let deadline = Instant::now() + server.client_idle_timeout;
        if !write_all_until(&mut client.io, &mut req.s.out, deadline).await {
            return Upgrade::Done(Outcome::Relayed(Persist::Close));
        }
        client.buf.drain(..client.head.len);
        Upgrade::Tunnel(up.stream)
    }
}

/// The answer's way back: interim heads, the final head and body, then the upstream
/// connection to the pool when the exchange ended cleanly.
struct Relay<'a> {
    worker: &'a Worker,
    server_idle: std::time::Duration,
    timeout: std::time::Duration,
    pool: &'a UpstreamPool,
    head_request: bool,
    persist: Persist,
}

impl Relay<'_> {
    async fn run<S: Stream>(
        self,
        client: &mut Conn<S>,
        req: &mut Request,
        mut up: UpConn,
        ubuf: &mut Vec<u8>,
        poolable: bool,
    ) -> Outcome {
        let failed = |error| Outcome::Failed {
            error,
            consumed: None,
        };
        let extra = &req.s.extra[..];
        let response: &mut ResponseHead = &mut req.s.response;
        // 1xx interim answers (not 101) go to the client as they are.
        while (100..200).contains(&response.status) && response.status != 101 {
            req.s.out.clear();
            req.s.out.extend_from_slice(&ubuf[..response.len]);
            ubuf.drain(..response.len);
            let deadline = Instant::now() + self.server_idle;
            if !write_all_until(&mut client.io, &mut req.s.out, deadline).await {
                return Outcome::Relayed(Persist::Close);
            }
            let deadline = Instant::now() + self.timeout;
            if let Err(e) =
                read_response_head(&mut up.stream, ubuf, self.head_request, response, deadline)
                    .await
            {
                return failed(e);
            }
        }
        if response.framing == ResponseFraming::Upgrade {
            return failed(broke(
                "the backend switched protocols on a request that did not ask to",
            ));
        }

        // The body bytes that came with the head.
        let here = &ubuf[response.len..];
        let (take, rest) = match response.framing {
            ResponseFraming::None | ResponseFraming::Upgrade => (0, None),
            ResponseFraming::Length(n) => {
                let take = (here.len() as u64).min(n);
                (
                    take as usize,
                    (take < n).then_some(Remaining::Length(n - take)),
                )
            }
            ResponseFraming::Chunked => {
                let mut scanner = ChunkedScanner::new(u64::MAX);
                match scanner.scan(here) {
                    Ok(s) => (s.consumed, (!s.done).then_some(Remaining::Chunked(scanner))),
                    Err(_) => return failed(broke("invalid chunked body from the backend")),
                }
            }
            ResponseFraming::UntilClose => (here.len(), Some(Remaining::UntilClose)),
        };
        let persist = self
            .persist
            .close_if(response.framing == ResponseFraming::UntilClose)
            .close_if(self.worker.drain.is_fired());
        let conn = match (persist, client.head.minor_version) {
            (Persist::Close, _) => ClientConnection::Close,
            (Persist::KeepAlive, 0) => ClientConnection::KeepAlive10,
            (Persist::KeepAlive, _) => ClientConnection::KeepAlive,
        };
        req.status = response.status;
        req.s.out.clear();
        write_client_head(
            ubuf,
            response,
            &req.s.request_id,
            conn,
            extra,
            &mut req.s.out,
        );
        let mut clean = here.len() == take;
        req.s.out.extend_from_slice(&here[..take]);
        let deadline = Instant::now() + self.server_idle;
        if !write_all_until(&mut client.io, &mut req.s.out, deadline).await {
            return Outcome::Relayed(Persist::Close);
        }
        if let Some(rest) = rest {
            let relayed = relay(
                &mut up.stream,
                Some(&mut client.io),
                ubuf,
                rest,
                ReadPace::Every(self.timeout),
                self.server_idle,
                BodyPath::SpliceLarge,
            )
            .await;
            match relayed {
                Ok(()) => clean &= ubuf.is_empty(),
                Err(_) => return Outcome::Relayed(Persist::Close),
            }
        }
        if poolable && clean && response.reusable && !self.worker.drain.is_fired() {
            self.pool.put(up.target, up.stream);
        }
        Outcome::Relayed(persist)
    }
}

/// A connection to the upstream: a pooled one unless `fresh`, else a new one, trying each
/// target once from `first` on (round-robin order, skipping targets passive health took
/// down while another is up) until one accepts. Each outcome is
/// counted in the worker's metrics under the upstream's `slot`.
pub(crate) async fn connect(
    pool: &UpstreamPool,
    cfg: &Upstream,
    first: usize,
    deadline: Instant,
    fresh: bool,
    (worker, slot): (&Worker, usize),
) -> Result<UpConn, GatewayError> {
    let metrics = worker.metrics();
    if !fresh && let Some(stream) = pool.take(first) {
        metrics.upstream(slot, UpstreamEvent::Reused);
        return Ok(UpConn {
            stream,
            target: first,
            reused: true,
        });
    }
    let n = pool.target_count();
    let mut last = broke("backend has no targets");
    // Passive health: targets that are down are skipped, unless every target is down, then
    // all are tried anyway rather than failing without a try.
    let skip_down = pool.any_up(Instant::now());
    for i in 0..n {
        let target = (first + i) % n;
        if skip_down && pool.is_down(target, Instant::now()) {
            continue;
        }
        let connect_deadline = deadline.min(Instant::now() + cfg.connect_timeout);
        let opened = open(pool.addr(target), cfg.tls.as_ref());
        match monoio::time::timeout_at(connect_deadline, opened).await {
            Ok(Ok(stream)) => {
                pool.connect_succeeded(target);
                metrics.upstream(slot, UpstreamEvent::Opened);
                return Ok(UpConn {
                    stream,
                    target,
                    reused: false,
                });
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = GatewayError::new(ErrorKind::GatewayTimeout),
        }
        metrics.upstream(slot, UpstreamEvent::Failed);
        if pool.connect_failed(target, Instant::now()) {
            metrics.upstream(slot, UpstreamEvent::MarkedDown);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(last)
}

/// A new connection to `addr`: TCP, then the TLS handshake for an `https://` upstream (a
/// failed handshake is a 502 that says why: not trusted, name mismatch, ...).
async fn open(
    addr: std::net::SocketAddr,
    tls: Option<&UpstreamTls>,
) -> Result<UpstreamStream, GatewayError> {
    let tcp = TcpStream::connect_addr(addr)
        .await
        .map_err(|e| broke(&format!("backend connection failed: {}", e.kind())))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let name = tls_client::server_name(tls.server_name.as_ref(), addr.ip());
    match TlsStream::connect(tcp, tls.client.clone(), name).await {
        Ok(s) => Ok(UpstreamStream::Tls(Box::new(s))),
        Err(e) => Err(broke(&tls_client::upstream_failure(&e))),
    }
}

/// Reads until a complete response head is at the start of `ubuf` (bytes already there are
/// parsed first). A failure before any byte of the answer arrived is marked retryable.
pub(crate) async fn read_response_head<R: AsyncReadRent>(
    up: &mut R,
    ubuf: &mut Vec<u8>,
    head_request: bool,
    response: &mut ResponseHead,
    deadline: Instant,
) -> Result<(), GatewayError> {
    loop {
        if !ubuf.is_empty()
            && parse_response_head(ubuf, head_request, response)? == Progress::Complete
        {
            return Ok(());
        }
        if ubuf.len() == ubuf.capacity() {
            ubuf.reserve(ubuf.capacity().max(4096));
        }
        let nothing_yet = ubuf.is_empty();
        let e = match read_until(up, ubuf, deadline).await {
            Read::Data(_) => continue,
            Read::Timeout => return Err(GatewayError::new(ErrorKind::GatewayTimeout)),
            Read::Eof => broke("backend closed the connection before answering"),
            Read::Failed(e) => broke(&format!("backend connection failed: {}", e.kind())),
        };
        return Err(if nothing_yet {
            GatewayError::retryable(e.kind)
        } else {
            e
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn websocket_accept_of_the_rfc_6455_example() {
        assert_eq!(
            super::websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}

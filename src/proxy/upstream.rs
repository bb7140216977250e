//! The VPC backend exchange (SPEC §3): upstream connection from the worker's pool, the
//! forwarded head and body, the retry rules, and the answer relayed back unchanged.
//!
//! Retry rule: a request is sent again, on a fresh connection, only when it came from the
//! pool and either no byte of it was sent, or it is idempotent, no byte of the answer came
//! back, and the whole request is still in hand (a streamed body cannot be replayed).

use std::ops::Range;

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::body::{RelayError, Remaining, relay};
use super::conn::{After, Conn, Stream};
use super::io::{Read, read_until, write_all_until, write_until};
use super::pool::UpstreamPool;
use crate::config::{Backend, Upstream};
use crate::error::{ErrorKind, GatewayError};
use crate::http::chunked::ChunkedScanner;
use crate::http::forward::{ForwardContext, write_upstream_head};
use crate::http::head::BodyFraming;
use crate::http::response::{
    ClientConnection, Progress, ResponseFraming, ResponseHead, parse_response_head,
    write_client_head,
};
use crate::server::worker::Snapshot;

/// Attempts per request: the first, plus one retry on a fresh connection.
pub const MAX_ATTEMPTS: u32 = 2;

const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

struct UpConn {
    stream: TcpStream,
    target: usize,
    reused: bool,
}

fn broke(why: &str) -> GatewayError {
    GatewayError::new(ErrorKind::BadGateway(why.to_string()))
}

fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
    )
}

impl<S: Stream> Conn<S> {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn proxy(
        &mut self,
        snapshot: &Snapshot,
        upstream: usize,
        backend: &Backend,
        backend_path: &str,
        query: Option<Range<usize>>,
        body_end: Option<usize>,
        head_request: bool,
    ) -> After {
        let worker = self.worker.clone();
        let cfg = &*snapshot.config;
        let up_cfg: &Upstream = &cfg.upstreams[upstream];
        let pool: &UpstreamPool = &snapshot.pools[upstream];
        if up_cfg.tls.is_some() {
            let e = broke("https upstreams are not supported yet");
            return self.answer_error(&e, head_request, body_end).await;
        }

        // The upstream head, followed by as much of the body as is here.
        let first_target = pool.pick();
        let query = query.and_then(|r| std::str::from_utf8(&self.buf[r]).ok());
        let ctx = ForwardContext {
            client_ip: &self.client_ip,
            https: self.https,
            request_id: &self.scratch.request_id,
            websocket: false,
            default_host: pool.host(first_target),
        };
        write_upstream_head(
            &self.buf,
            &self.head,
            backend,
            backend_path,
            query,
            &ctx,
            &mut self.scratch.upstream_head,
        );
        let head_len = self.head.len;
        let mut rest = match body_end {
            Some(end) => {
                self.scratch
                    .upstream_head
                    .extend_from_slice(&self.buf[head_len..end]);
                None
            }
            None => {
                let here = &self.buf[head_len..];
                self.scratch.upstream_head.extend_from_slice(here);
                Some(match self.head.body {
                    BodyFraming::Length(n) => Remaining::Length(n - here.len() as u64),
                    _ => {
                        let mut scanner = ChunkedScanner::new(cfg.server.limits.max_body_bytes);
                        // Already scanned once without error; this replays its state.
                        let _ = scanner.scan(here);
                        Remaining::Chunked(scanner)
                    }
                })
            }
        };
        let whole = rest.is_none();
        let server = &cfg.server;
        if !whole && self.head.expect_continue {
            let mut cont = CONTINUE.to_vec();
            let deadline = Instant::now() + server.client_idle_timeout;
            if !write_all_until(&mut self.io, &mut cont, deadline).await {
                return After::Close;
            }
        }

        let method: &[u8] = match backend.method {
            Some(m) => m.name().as_bytes(),
            None => self.head.method.get(&self.buf),
        };
        let may_replay = idempotent(method) && whole;
        let deadline = Instant::now() + backend.timeout;
        let mut ubuf = worker.take_buffer();
        let mut response = std::mem::take(&mut self.scratch.response);
        // The request bytes to drop from `buf` once answered: all of them once streamed.
        let mut consumed = body_end;
        let mut head_deadline = deadline;
        let mut fresh = false;
        let mut attempt = 0;
        let outcome: Result<UpConn, GatewayError> = loop {
            attempt += 1;
            let mut up = match connect(pool, up_cfg, first_target, deadline, fresh).await {
                Ok(up) => up,
                Err(e) => break Err(e),
            };
            let len = self.scratch.upstream_head.len();
            let sent = write_until(
                &mut up.stream,
                &mut self.scratch.upstream_head,
                0,
                len,
                deadline,
            )
            .await;
            if let Err(f) = sent {
                if !f.timed_out
                    && up.reused
                    && attempt < MAX_ATTEMPTS
                    && (f.sent == 0 || may_replay)
                {
                    fresh = true;
                    continue;
                }
                break Err(if f.timed_out {
                    GatewayError::new(ErrorKind::GatewayTimeout)
                } else {
                    broke("backend connection broke while sending the request")
                });
            }
            if let Some(rest) = rest.take() {
                let mut big = worker.take_buffer();
                let relayed = relay(
                    &mut self.io,
                    Some(&mut up.stream),
                    &mut big,
                    rest,
                    server.client_idle_timeout,
                    backend.timeout,
                )
                .await;
                match relayed {
                    Ok(()) => {
                        // `big` holds what the client pipelined after the body.
                        self.buf.clear();
                        self.buf.extend_from_slice(&big);
                        worker.put_buffer(big);
                        consumed = Some(0);
                        // A streamed body may take long; the answer gets a full timeout.
                        head_deadline = Instant::now() + backend.timeout;
                    }
                    Err(RelayError::Source(Some(e))) => break Err(e),
                    Err(RelayError::Source(None)) => {
                        worker.put_buffer(ubuf);
                        self.scratch.response = response;
                        return After::Close;
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
                &mut response,
                head_deadline,
            )
            .await
            {
                Ok(()) => break Ok(up),
                Err(e) if e.retryable && up.reused && may_replay && attempt < MAX_ATTEMPTS => {
                    fresh = true;
                }
                Err(e) => break Err(e),
            }
        };
        let up = match outcome {
            Ok(up) => up,
            Err(e) => {
                worker.put_buffer(ubuf);
                self.scratch.response = response;
                return self.answer_error(&e, head_request, consumed).await;
            }
        };
        let after = self
            .relay_response(up, pool, &mut ubuf, &mut response, backend.timeout)
            .await;
        worker.put_buffer(ubuf);
        self.scratch.response = response;
        if after == After::KeepAlive
            && let Some(end) = consumed
        {
            self.buf.drain(..end);
        }
        after
    }

    /// Relays interim heads, then the final head and body, to the client; pools the upstream
    /// connection when the exchange ended cleanly.
    async fn relay_response(
        &mut self,
        mut up: UpConn,
        pool: &UpstreamPool,
        ubuf: &mut Vec<u8>,
        response: &mut ResponseHead,
        timeout: std::time::Duration,
    ) -> After {
        let server_idle = self.worker.snapshot().config.server.client_idle_timeout;
        let head_request = self.head.method.get(&self.buf) == b"HEAD";
        // 1xx interim answers (not 101) go to the client as they are.
        while (100..200).contains(&response.status) && response.status != 101 {
            self.scratch.out.clear();
            self.scratch.out.extend_from_slice(&ubuf[..response.len]);
            ubuf.drain(..response.len);
            let deadline = Instant::now() + server_idle;
            if !write_all_until(&mut self.io, &mut self.scratch.out, deadline).await {
                return After::Close;
            }
            let deadline = Instant::now() + timeout;
            if let Err(e) =
                read_response_head(&mut up.stream, ubuf, head_request, response, deadline).await
            {
                return self.answer_error(&e, head_request, None).await;
            }
        }
        if response.framing == ResponseFraming::Upgrade {
            let e = broke("the backend switched protocols on a request that did not ask to");
            return self.answer_error(&e, head_request, None).await;
        }
        let keep = self.head.keep_alive
            && response.framing != ResponseFraming::UntilClose
            && !self.worker.drain.is_fired();
        let conn = match (keep, self.head.minor_version) {
            (false, _) => ClientConnection::Close,
            (true, 0) => ClientConnection::KeepAlive10,
            (true, _) => ClientConnection::KeepAlive,
        };
        self.scratch.status = response.status;
        self.scratch.out.clear();
        write_client_head(
            ubuf,
            response,
            &self.scratch.request_id,
            conn,
            &mut self.scratch.out,
        );

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
                    Err(_) => {
                        let e = broke("invalid chunked body from the backend");
                        return self.answer_error(&e, head_request, None).await;
                    }
                }
            }
            ResponseFraming::UntilClose => (here.len(), Some(Remaining::UntilClose)),
        };
        let mut clean = here.len() == take;
        self.scratch.out.extend_from_slice(&here[..take]);
        let deadline = Instant::now() + server_idle;
        if !write_all_until(&mut self.io, &mut self.scratch.out, deadline).await {
            return After::Close;
        }
        if let Some(rest) = rest {
            let relayed = relay(
                &mut up.stream,
                Some(&mut self.io),
                ubuf,
                rest,
                timeout,
                server_idle,
            )
            .await;
            match relayed {
                Ok(()) => clean &= ubuf.is_empty(),
                Err(_) => return After::Close,
            }
        }
        if clean && response.reusable && !self.worker.drain.is_fired() {
            pool.put(up.target, up.stream);
        }
        if keep { After::KeepAlive } else { After::Close }
    }
}

/// A connection to the upstream: a pooled one unless `fresh`, else a new one, trying each
/// target once from `first` on (round-robin order) until one accepts.
async fn connect(
    pool: &UpstreamPool,
    cfg: &Upstream,
    first: usize,
    deadline: Instant,
    fresh: bool,
) -> Result<UpConn, GatewayError> {
    if !fresh && let Some(stream) = pool.take(first) {
        return Ok(UpConn {
            stream,
            target: first,
            reused: true,
        });
    }
    let n = pool.target_count();
    let mut last = broke("backend has no targets");
    for i in 0..n {
        let target = (first + i) % n;
        let connect_deadline = deadline.min(Instant::now() + cfg.connect_timeout);
        match monoio::time::timeout_at(connect_deadline, TcpStream::connect_addr(pool.addr(target)))
            .await
        {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(UpConn {
                    stream,
                    target,
                    reused: false,
                });
            }
            Ok(Err(e)) => last = broke(&format!("backend connection failed: {}", e.kind())),
            Err(_) => last = GatewayError::new(ErrorKind::GatewayTimeout),
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(last)
}

/// Reads until a complete response head is at the start of `ubuf` (bytes already there are
/// parsed first). A failure before any byte of the answer arrived is marked retryable.
async fn read_response_head(
    up: &mut TcpStream,
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

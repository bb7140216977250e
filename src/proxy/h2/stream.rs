//! One HTTP/2 stream, from its HEADERS to its last DATA frame (SPEC §10), through the same
//! pipeline as an HTTP/1.1 request (`proxy::conn::serve_request`):
//!
//! ```text
//! h2 head → HTTP/1.1 head in a buffer (Host = :authority, cookies joined, chunked when a body
//! has no length) → parse_head (§1 limits) → gateway::decide → local answer | forward:
//! body buffered up to request_buffer_bytes → pooled upstream connection (retries as
//! upstream.rs) → rest of the body streamed (flow-control capacity released as it goes) →
//! response head → HTTP/2 response without connection headers → body relayed by framing
//! (de-chunked) within the client's window → connection back to the pool
//! ```
//!
//! Every response, the gateway's own and the backend's, is first written as the HTTP/1.1
//! head the HTTP/1.1 path would send (`http::reply`, `cors::write_preflight`,
//! `write_client_head`) and then turned into an HTTP/2 response, so both protocols carry the
//! same status, headers and body; only the connection-specific headers are left out.

use std::future::poll_fn;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use monoio::time::Instant;

use super::Shared;
use crate::config::FrontendType;
use crate::error::{BodyStall, ErrorKind, GatewayError};
use crate::gateway::forward::{ForwardContext, Plan, write_upstream_head};
use crate::gateway::{self, Action, Forward, Inbound, Local, cors};
use crate::http::head::{BodyFraming, Progress, RequestHead, parse_head};
use crate::http::reply::{Reply, write_error};
use crate::http::response::{ClientConnection, ResponseFraming, write_client_head};
use crate::proxy::io::{Read, read_until, write_all_until, write_until};
use crate::proxy::request::Request;
use crate::proxy::upstream::{
    MAX_ATTEMPTS, UpConn, broke, connect, idempotent, read_response_head, send_failed,
};
use crate::runtime::access_log::Start;
use crate::runtime::metrics::Rejection;

/// As `proxy::conn`: how often one request waits for the counter store.
const MAX_STORE_FILLS: usize = 3;
/// Response body read from the backend at once.
const RELAY_BYTES: usize = 16 * 1024;
/// The 400 of a WebSocket API called over HTTP/2 (no extended CONNECT).
pub const WEBSOCKET_NEEDS_H1: &str = "WebSocket APIs need HTTP/1.1";
/// Response headers that describe one HTTP/1.1 connection, never sent over HTTP/2
/// (RFC 9113 §8.2.2).
const CONNECTION_SPECIFIC: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
];

/// Keeps the connection's count of open streams, and the time the last one ended.
struct Open(Rc<Shared>);

impl Drop for Open {
    fn drop(&mut self) {
        let s = &self.0;
        s.open.set(s.open.get().saturating_sub(1));
        s.last_end.set(Instant::now());
    }
}

/// How a stream's exchange ended, for the connection's abuse count.
#[derive(PartialEq, Eq)]
enum End {
    Done,
    /// The client reset the stream (or its connection went away) before the answer ended.
    Cancelled,
}

/// Serves one stream to its end; the connection task spawned it.
pub async fn serve(
    shared: Rc<Shared>,
    request: http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    let _open = Open(shared.clone());
    let worker = shared.worker.clone();
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let start = Start {
        time: std::time::SystemTime::now(),
        request_id: "",
        client: shared.client.peer,
        method: parts.method.as_str().as_bytes(),
        host: host.as_bytes(),
        target: target.as_bytes(),
        user_agent: if worker.log.enabled() {
            parts
                .headers
                .get(http::header::USER_AGENT)
                .map(|v| v.as_bytes())
        } else {
            None
        },
        tls: shared.client.tls.as_ref().map(|(v, n)| (*v, n.as_deref())),
        h2: true,
    };
    let mut req = Request::begin(&worker, start);
    let mut buf = worker.take_buffer();
    buf.clear();
    let has_body = !body.is_end_stream();
    let end = match write_head(&parts, &target, &host, has_body, &mut buf) {
        Ok(()) => {
            let mut st = Stream {
                shared: &shared,
                req: &mut req,
                buf: &buf,
                head: RequestHead::default(),
                respond: &mut respond,
                head_request: parts.method == http::Method::HEAD,
            };
            st.run(body).await
        }
        Err(e) => {
            let head_request = parts.method == http::Method::HEAD;
            answer(&mut req, &mut respond, &Local::Error(e), head_request, &buf).await
        }
    };
    worker.put_buffer(buf);
    if end == End::Cancelled {
        shared.cancelled.set(shared.cancelled.get() + 1);
    }
    req.finish();
}

/// The HTTP/1.1 head of an HTTP/2 request, for `parse_head` and the gateway.
fn write_head(
    parts: &http::request::Parts,
    target: &str,
    host: &str,
    has_body: bool,
    out: &mut Vec<u8>,
) -> Result<(), GatewayError> {
    let bad = |why| GatewayError::new(ErrorKind::BadRequest(why));
    if parts.method == http::Method::CONNECT {
        return Err(bad("CONNECT is not supported"));
    }
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !host.is_empty() {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // Cookies may come as several fields; HTTP/1.1 wants one (RFC 9113 §8.2.3).
    let mut cookies = parts.headers.get_all(http::header::COOKIE).iter();
    if let Some(first) = cookies.next() {
        out.extend_from_slice(b"Cookie: ");
        out.extend_from_slice(first.as_bytes());
        for c in cookies {
            out.extend_from_slice(b"; ");
            out.extend_from_slice(c.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    let mut length = false;
    for (name, value) in &parts.headers {
        if name == http::header::HOST || name == http::header::COOKIE {
            continue;
        }
        let v = value.as_bytes();
        // The http crate refuses these already; a line break here would be a new header.
        if v.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad("header value contains a line break"));
        }
        length |= name == http::header::CONTENT_LENGTH;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    if has_body && !length {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

struct Stream<'a> {
    shared: &'a Shared,
    req: &'a mut Request,
    /// The request's HTTP/1.1 head.
    buf: &'a [u8],
    head: RequestHead,
    respond: &'a mut SendResponse<Bytes>,
    head_request: bool,
}

impl Stream<'_> {
    /// The request path: parse, decide, answer or forward.
    async fn run(&mut self, body: RecvStream) -> End {
        let snapshot = self.req.snapshot.clone();
        let cfg = &*snapshot.config;
        match parse_head(self.buf, &cfg.server.limits, &mut self.head) {
            Ok(Progress::Complete) => {}
            Ok(Progress::Partial) => {
                let e = GatewayError::new(ErrorKind::BadRequest("incomplete request head"));
                return self.local(&Local::Error(e)).await;
            }
            Err(e) => return self.local(&Local::Error(e)).await,
        }
        let inbound = Inbound {
            buf: self.buf,
            head: &self.head,
            https: self.shared.client.https,
            client: self.shared.client.peer.ip(),
            now: self.req.wall,
            mono: self.req.started,
        };
        let counters = &snapshot.counters;
        let mut fills = 0;
        let decision = loop {
            let scratch = gateway::Scratch {
                path: &mut self.req.s.path,
                backend_path: &mut self.req.s.backend_path,
                params: &mut self.req.s.params,
            };
            let d = if fills < MAX_STORE_FILLS {
                gateway::decide(cfg, &snapshot.auth, counters, &inbound, scratch)
            } else {
                counters
                    .last_try(|| gateway::decide(cfg, &snapshot.auth, counters, &inbound, scratch))
            };
            if matches!(d.action, Action::Pending) && fills < MAX_STORE_FILLS {
                fills += 1;
                counters.fill().await;
                continue;
            }
            break d;
        };
        let req = &mut *self.req;
        req.matched = decision.matched;
        req.set_extra_headers(decision.rate.as_ref());
        if let Some(who) = decision.identity.as_ref().and_then(|i| i.caller()) {
            req.caller = Some(who.to_string());
        }
        if let Some(r) = decision.rate.as_ref().filter(|r| r.retry_after.is_some()) {
            req.refused_by = Some((r.policy.kind, r.policy.name.into()));
        }
        let websocket_api = decision
            .matched
            .is_some_and(|m| cfg.services[m.service].apis[m.api].frontend_type == FrontendType::Ws);
        let forward = match decision.action {
            Action::Pending => {
                let e = GatewayError::new(ErrorKind::StoreUnavailable);
                return self.local(&Local::Error(e)).await;
            }
            // A WebSocket API over HTTP/2: its handshake check failed (no Upgrade is
            // possible here); say why in HTTP/2's terms.
            Action::Local(Local::Error(e)) if websocket_api && e.status() == 400 => {
                let e = GatewayError::new(ErrorKind::BadRequest(WEBSOCKET_NEEDS_H1));
                return self.local(&Local::Error(e)).await;
            }
            Action::Local(local) => return self.local(&local).await,
            Action::Tunnel(_) => {
                let e = GatewayError::new(ErrorKind::BadRequest(WEBSOCKET_NEEDS_H1));
                return self.local(&Local::Error(e)).await;
            }
            Action::Forward(f) => f,
        };
        self.req.caller = forward.permit.identity().caller().map(str::to_string);
        self.forward(&forward, body).await
    }

    async fn local(&mut self, local: &Local<'_>) -> End {
        answer(self.req, self.respond, local, self.head_request, self.buf).await
    }

    /// The VPC backend exchange; see the module docs.
    async fn forward(&mut self, forward: &Forward<'_>, mut body: RecvStream) -> End {
        let snapshot = self.req.snapshot.clone();
        let server = &snapshot.config.server;
        let worker = self.shared.worker.clone();
        let upstream = &snapshot.config.upstreams[forward.upstream];
        let pool = &*snapshot.pools[forward.upstream];
        let slot = snapshot.slots.upstream(forward.upstream);
        let backend = &forward.api.backend;
        let target = pool.pick();
        let chunked = self.head.body == BodyFraming::Chunked;
        let has_body = self.head.body != BodyFraming::None;
        {
            let query = forward
                .query
                .clone()
                .and_then(|r| std::str::from_utf8(&self.buf[r]).ok());
            let s = &mut self.req.s;
            let plan = Plan {
                backend,
                params: &forward.api.params,
                placed: &s.params,
                permit: &forward.permit,
                backend_path: &s.backend_path,
                query,
            };
            let ctx = ForwardContext {
                client_ip: &self.shared.client.client_ip,
                https: self.shared.client.https,
                request_id: &s.request_id,
                websocket: false,
                default_host: pool.host(target),
            };
            write_upstream_head(self.buf, &self.head, &plan, &ctx, &mut s.upstream_head);
        }

        // The body, up to `request_buffer_bytes`, before an upstream connection is taken.
        let mut sizes = BodySizes {
            max: server.limits.max_body_bytes,
            timeout: server.client_body_timeout,
            received: 0,
        };
        let mut whole = !has_body;
        if has_body {
            let mut pre = std::mem::take(&mut self.req.s.upstream_head);
            let got = loop {
                if pre.len() >= server.request_buffer_bytes.max(1) {
                    break Ok(false);
                }
                match sizes.next(&mut body).await {
                    Ok(Some(data)) => encode(&data, chunked, &mut pre),
                    Ok(None) => break Ok(true),
                    Err(e) => break Err(e),
                }
            };
            self.req.s.upstream_head = pre;
            match got {
                Ok(done) => whole = done,
                Err(None) => return End::Cancelled,
                Err(Some(e)) => return self.local(&Local::Error(e)).await,
            }
            if whole && chunked {
                self.req.s.upstream_head.extend_from_slice(b"0\r\n\r\n");
            }
        }

        let method: &[u8] = match backend.method {
            Some(m) => m.name().as_bytes(),
            None => self.head.method.get(self.buf),
        };
        let may_replay = idempotent(method) && whole;
        let began = Instant::now();
        let deadline = began + backend.timeout;
        let mut ubuf = worker.take_buffer();
        ubuf.clear();
        let mut head_deadline = deadline;
        let mut fresh = false;
        let mut attempt = 0;
        let req = &mut *self.req;
        let head_request = self.head_request;
        let exchange = async {
            loop {
                attempt += 1;
                let mut up =
                    match connect(pool, upstream, target, deadline, fresh, (&worker, slot)).await {
                        Ok(up) => up,
                        Err(e) => return Err(Some(e)),
                    };
                let len = req.s.upstream_head.len();
                if let Err(f) =
                    write_until(&mut up.stream, &mut req.s.upstream_head, 0, len, deadline).await
                {
                    if !f.timed_out
                        && up.reused
                        && attempt < MAX_ATTEMPTS
                        && (f.sent == 0 || may_replay)
                    {
                        fresh = true;
                        continue;
                    }
                    return Err(Some(send_failed(
                        &f,
                        "backend connection broke while sending the request",
                    )));
                }
                if !whole {
                    let mut out = Vec::with_capacity(RELAY_BYTES);
                    loop {
                        out.clear();
                        let done = match sizes.next(&mut body).await {
                            Ok(Some(data)) => {
                                encode(&data, chunked, &mut out);
                                false
                            }
                            Ok(None) => {
                                if chunked {
                                    out.extend_from_slice(b"0\r\n\r\n");
                                }
                                true
                            }
                            Err(e) => return Err(e),
                        };
                        let to = Instant::now() + backend.timeout;
                        if !out.is_empty() && !write_all_until(&mut up.stream, &mut out, to).await {
                            return Err(Some(broke(
                                "backend connection broke while sending the body",
                            )));
                        }
                        if done {
                            break;
                        }
                    }
                    // A streamed body may take long; the answer gets a full timeout.
                    head_deadline = Instant::now() + backend.timeout;
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
                    Ok(()) => return Ok(up),
                    Err(e) if e.retryable && up.reused && may_replay && attempt < MAX_ATTEMPTS => {
                        ubuf.clear();
                        fresh = true;
                    }
                    Err(e) => return Err(Some(e)),
                }
            }
        };
        // The client may cancel the stream meanwhile: the exchange stops at once.
        let respond = &mut *self.respond;
        let outcome: Result<UpConn, Option<GatewayError>> = monoio::select! {
            r = exchange => r,
            _ = poll_fn(|cx| respond.poll_reset(cx)) => Err(None),
        };
        let up = match outcome {
            Ok(up) => up,
            Err(None) => {
                worker.put_buffer(ubuf);
                return End::Cancelled;
            }
            Err(Some(e)) => {
                worker.put_buffer(ubuf);
                return self.local(&Local::Error(e)).await;
            }
        };
        self.req.upstream = Some((pool.addr(up.target), began.elapsed()));
        let end = self.relay(up, &mut ubuf, pool, backend.timeout).await;
        worker.put_buffer(ubuf);
        end
    }

    /// The backend's answer to the client: interim heads skipped, the head as HTTP/2, the
    /// body by its framing; the connection back to the pool when it ended cleanly.
    async fn relay(
        &mut self,
        mut up: UpConn,
        ubuf: &mut Vec<u8>,
        pool: &crate::runtime::pool::UpstreamPool,
        timeout: Duration,
    ) -> End {
        let worker = self.shared.worker.clone();
        let idle = self.req.snapshot.config.server.client_idle_timeout;
        let req = &mut *self.req;
        while (100..200).contains(&req.s.response.status) && req.s.response.status != 101 {
            let len = req.s.response.len;
            ubuf.drain(..len);
            let deadline = Instant::now() + timeout;
            if let Err(e) = read_response_head(
                &mut up.stream,
                ubuf,
                self.head_request,
                &mut req.s.response,
                deadline,
            )
            .await
            {
                return answer(
                    req,
                    self.respond,
                    &Local::Error(e),
                    self.head_request,
                    self.buf,
                )
                .await;
            }
        }
        let response = &req.s.response;
        if response.framing == ResponseFraming::Upgrade {
            let e = broke("the backend switched protocols on a request that did not ask to");
            return answer(
                req,
                self.respond,
                &Local::Error(e),
                self.head_request,
                self.buf,
            )
            .await;
        }
        let s = &mut req.s;
        s.out.clear();
        write_client_head(
            ubuf,
            &s.response,
            &s.request_id,
            ClientConnection::KeepAlive,
            &s.extra,
            &mut s.out,
        );
        let Some((head, _)) = to_h2_response(&s.out) else {
            let e = broke("the backend's response head cannot be sent over HTTP/2");
            return answer(
                req,
                self.respond,
                &Local::Error(e),
                self.head_request,
                self.buf,
            )
            .await;
        };
        req.status = req.s.response.status;
        let framing = req.s.response.framing;
        let reusable = req.s.response.reusable;
        let here_start = req.s.response.len;
        let no_body = framing == ResponseFraming::None;
        let mut send = match self.respond.send_response(head, no_body) {
            Ok(s) => s,
            Err(_) => return End::Cancelled,
        };
        if no_body {
            if ubuf.len() == here_start && reusable && !worker.drain.is_fired() {
                pool.put(up.target, up.stream);
            }
            return End::Done;
        }
        let mut sent: u64 = 0;
        let mut decoder = Decoder::new(framing);
        let mut input = std::mem::take(ubuf);
        input.drain(..here_start);
        let mut data = Vec::with_capacity(RELAY_BYTES);
        let clean = loop {
            data.clear();
            let used = match decoder.feed(&input, &mut data) {
                Ok(n) => n,
                Err(()) => break false,
            };
            let rest = input.len() - used;
            if !data.is_empty() {
                sent += data.len() as u64;
                let bytes = Bytes::copy_from_slice(&data);
                if !send_data(&mut send, bytes, idle).await {
                    self.req.client_bytes.1 = sent;
                    *ubuf = input;
                    return End::Cancelled;
                }
            }
            if decoder.done() {
                break rest == 0;
            }
            input.clear();
            if input.capacity() < RELAY_BYTES {
                input.reserve(RELAY_BYTES);
            }
            match read_until(&mut up.stream, &mut input, Instant::now() + timeout).await {
                Read::Data(_) => {}
                Read::Eof if framing == ResponseFraming::UntilClose => {
                    decoder.finish();
                    break false;
                }
                _ => break false,
            }
        };
        *ubuf = input;
        self.req.client_bytes.1 = sent;
        if decoder.done() {
            let _ = send.send_data(Bytes::new(), true);
            if clean && reusable && !worker.drain.is_fired() {
                pool.put(up.target, up.stream);
            }
        } else {
            // The backend broke off: the client must not take the body for whole.
            send.send_reset(Reason::INTERNAL_ERROR);
        }
        End::Done
    }
}

/// The request body's running size against `max_body_bytes`, and the client's pace.
struct BodySizes {
    max: u64,
    timeout: Duration,
    received: u64,
}

impl BodySizes {
    /// The next DATA of the request body (its flow-control capacity released); `Ok(None)`
    /// at its end; `Err(None)`: the client reset the stream; `Err(Some)`: too large or late.
    async fn next(&mut self, body: &mut RecvStream) -> Result<Option<Bytes>, Option<GatewayError>> {
        loop {
            let data = match monoio::time::timeout(self.timeout, body.data()).await {
                Err(_) => {
                    return Err(Some(GatewayError::new(ErrorKind::BodyTimeout(
                        BodyStall::Stalled,
                    ))));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(_))) => return Err(None),
                Ok(Some(Ok(d))) => d,
            };
            let _ = body.flow_control().release_capacity(data.len());
            self.received += data.len() as u64;
            if self.received > self.max {
                return Err(Some(GatewayError::new(ErrorKind::BodyTooLarge)));
            }
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
    }
}

/// Appends `data` to `out` as the upstream body is framed: as it is, or as one chunk.
fn encode(data: &[u8], chunked: bool, out: &mut Vec<u8>) {
    if chunked {
        use std::io::Write as _;
        let _ = write!(out, "{:x}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// Sends `data` within the client's flow-control window, waiting (up to `idle` each time)
/// for capacity. `false`: the stream is gone.
async fn send_data(send: &mut SendStream<Bytes>, mut data: Bytes, idle: Duration) -> bool {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let cap = monoio::time::timeout(idle, poll_fn(|cx| send.poll_capacity(cx))).await;
        match cap {
            Ok(Some(Ok(n))) if n > 0 => {
                let chunk = data.split_to(n.min(data.len()));
                if send.send_data(chunk, false).is_err() {
                    return false;
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => {
                send.send_reset(Reason::CANCEL);
                return false;
            }
        }
    }
    true
}

/// Writes an answer the gateway makes itself on the stream (the same status, headers and
/// body as over HTTP/1.1).
async fn answer(
    req: &mut Request,
    respond: &mut SendResponse<Bytes>,
    local: &Local<'_>,
    head_request: bool,
    buf: &[u8],
) -> End {
    let extra = &req.s.extra[..];
    let out = &mut req.s.out;
    out.clear();
    req.status = match local {
        Local::Error(e) => {
            if let ErrorKind::Unauthorized(_, why) = &e.kind {
                req.auth_failure = Some(*why);
            }
            req.rejected = Rejection::of(e, req.refused_by.as_ref().map(|(kind, _)| *kind));
            write_error(out, e, &req.s.request_id, head_request, false, extra);
            e.status()
        }
        Local::Mock {
            status,
            content_type,
            body,
        } => {
            Reply {
                status: *status,
                content_type,
                body: body.as_bytes(),
                request_id: &req.s.request_id,
                head_request,
                close: false,
                extra_headers: extra,
            }
            .write(out);
            *status
        }
        Local::Preflight(p) => {
            cors::write_preflight(out, p, buf, &req.s.request_id, false);
            204
        }
    };
    let Some((head, len)) = to_h2_response(&req.s.out) else {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return End::Done;
    };
    let body = &req.s.out[len..];
    let end = body.is_empty() || head_request;
    let Ok(mut send) = respond.send_response(head, end) else {
        return End::Cancelled;
    };
    if !end {
        req.client_bytes.1 = body.len() as u64;
        let idle = req.snapshot.config.server.client_idle_timeout;
        if !send_data(&mut send, Bytes::copy_from_slice(body), idle).await {
            return End::Cancelled;
        }
        let _ = send.send_data(Bytes::new(), true);
    }
    End::Done
}

/// An HTTP/1.1 response head (as the gateway writes them: `HTTP/1.1 NNN reason\r\n`, then
/// `Name: value\r\n` lines, then a blank line) as an HTTP/2 response without the
/// connection-specific headers; and the head's length.
fn to_h2_response(raw: &[u8]) -> Option<(http::Response<()>, usize)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let mut lines = raw[..end - 4].split(|&b| b == b'\n');
    let status_line = lines.next()?;
    let status = status_line.get(9..12)?;
    let status = http::StatusCode::from_bytes(status).ok()?;
    let mut res = http::Response::new(());
    *res.status_mut() = status;
    let headers = res.headers_mut();
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(name) = http::HeaderName::from_bytes(&line[..colon]) else {
            return None;
        };
        if CONNECTION_SPECIFIC.contains(&name.as_str()) {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        let Ok(value) = http::HeaderValue::from_bytes(value) else {
            return None;
        };
        headers.append(name, value);
    }
    Some((res, end))
}

/// The response body's framing, decoded: what goes to the client as DATA.
struct Decoder {
    state: DState,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DState {
    /// A body of this many bytes still to come.
    Length(u64),
    UntilClose,
    /// A chunk-size line: the size so far and its digit count.
    Size(u64, u8),
    /// A chunk extension, up to CR.
    Ext(u64),
    /// LF after a size line.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

impl Decoder {
    fn new(framing: ResponseFraming) -> Decoder {
        let state = match framing {
            ResponseFraming::Length(0) | ResponseFraming::None | ResponseFraming::Upgrade => {
                DState::Done
            }
            ResponseFraming::Length(n) => DState::Length(n),
            ResponseFraming::Chunked => DState::Size(0, 0),
            ResponseFraming::UntilClose => DState::UntilClose,
        };
        Decoder { state }
    }

    fn done(&self) -> bool {
        self.state == DState::Done
    }

    /// The end of the stream ends an until-close body.
    fn finish(&mut self) {
        if self.state == DState::UntilClose {
            self.state = DState::Done;
        }
    }

    /// Decodes `input` into `out` (body data) until the body ends; the bytes of `input`
    /// used. `Err` on a malformed chunked body.
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ()> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                DState::Done => return Ok(i),
                DState::UntilClose => {
                    out.extend_from_slice(&input[i..]);
                    return Ok(input.len());
                }
                DState::Length(n) => {
                    let take = (n.min((input.len() - i) as u64)) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.state = if n == take as u64 {
                        DState::Done
                    } else {
                        DState::Length(n - take as u64)
                    };
                    continue;
                }
                DState::Data(n) => {
                    let take = (n.min((input.len() - i) as u64)) as usize;
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    self.state = if n == take as u64 {
                        DState::DataCr
                    } else {
                        DState::Data(n - take as u64)
                    };
                    continue;
                }
                DState::Size(n, digits) => match (b as char).to_digit(16) {
                    Some(d) if digits < 15 => DState::Size(n * 16 + u64::from(d), digits + 1),
                    Some(_) => return Err(()),
                    None if digits == 0 => return Err(()),
                    None if b == b'\r' => DState::SizeLf(n),
                    None if b == b';' || b == b' ' || b == b'\t' => DState::Ext(n),
                    None => return Err(()),
                },
                DState::Ext(n) => match b {
                    b'\r' => DState::SizeLf(n),
                    b'\n' => return Err(()),
                    _ => DState::Ext(n),
                },
                DState::SizeLf(n) => match b {
                    b'\n' if n == 0 => DState::TrailerStart,
                    b'\n' => DState::Data(n),
                    _ => return Err(()),
                },
                DState::DataCr => match b {
                    b'\r' => DState::DataLf,
                    _ => return Err(()),
                },
                DState::DataLf => match b {
                    b'\n' => DState::Size(0, 0),
                    _ => return Err(()),
                },
                DState::TrailerStart => match b {
                    b'\r' => DState::FinalLf,
                    b'\n' => return Err(()),
                    _ => DState::TrailerLine,
                },
                DState::TrailerLine => match b {
                    b'\r' => DState::TrailerLf,
                    b'\n' => return Err(()),
                    _ => DState::TrailerLine,
                },
                DState::TrailerLf => match b {
                    b'\n' => DState::TrailerStart,
                    _ => return Err(()),
                },
                DState::FinalLf => match b {
                    b'\n' => DState::Done,
                    _ => return Err(()),
                },
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(framing: ResponseFraming, parts: &[&[u8]]) -> Result<(Vec<u8>, bool, usize), ()> {
        let mut d = Decoder::new(framing);
        let mut out = Vec::new();
        let mut left = 0;
        for p in parts {
            let used = d.feed(p, &mut out)?;
            left = p.len() - used;
        }
        Ok((out, d.done(), left))
    }

    #[test]
    fn chunked_bodies_are_decoded_across_any_split() {
        let body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
        for cut in 0..body.len() {
            let (out, done, left) =
                decode(ResponseFraming::Chunked, &[&body[..cut], &body[cut..]]).unwrap();
            assert_eq!(out, b"hello world", "cut at {cut}");
            assert!(done);
            assert_eq!(left, 0);
        }
        let (_, done, left) = decode(ResponseFraming::Chunked, &[b"0\r\n\r\nextra"]).unwrap();
        assert!(done);
        assert_eq!(left, 5);
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloX",
            b"\r\n",
            b"1111111111111111\r\n",
        ] {
            assert!(decode(ResponseFraming::Chunked, &[bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let (out, done, left) = decode(ResponseFraming::Length(3), &[b"ab", b"cde"]).unwrap();
        assert_eq!(out, b"abc");
        assert!(done);
        assert_eq!(left, 2);
    }

    #[test]
    fn responses_lose_their_connection_headers() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nKeep-Alive: 5\r\nX-Api-RequestId: r1\r\n\r\nbody";
        let (res, len) = to_h2_response(raw).unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(&raw[len..], b"body");
        let names: Vec<_> = res.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-api-requestid"]);
    }

    #[test]
    fn requests_become_http_1_1_heads() {
        let req = http::Request::builder()
            .method("POST")
            .uri("https://api.example.test/a?b=1")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("x-k", "v")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let mut out = Vec::new();
        write_head(&parts, "/a?b=1", "api.example.test", true, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /a?b=1 HTTP/1.1\r\nHost: api.example.test\r\nCookie: a=1; b=2\r\nx-k: v\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }
}

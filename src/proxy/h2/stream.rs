//! One HTTP/2 stream, from its HEADERS to its last DATA frame (SPEC §10), through the same
//! pipeline as an HTTP/1.1 request (`proxy::conn::serve_request`):
//!
//! ```text
//! h2 head → HTTP/1.1 head in a buffer (head::write_head) → parse_head (§1 limits)
//! → gateway::decide → local answer (answer) | forward: upstream head; body buffered up to
//! request_buffer_bytes (relay::RequestBody) → pooled upstream connection (retries as
//! upstream.rs) → rest of the body streamed → response head → Stream::relay (relay.rs):
//! HTTP/2 response (head::to_h2_response), body de-chunked (dechunk.rs) within the client's
//! window → connection back to the pool
//! ```
//!
//! Every response, the gateway's own and the backend's, is first written as the HTTP/1.1
//! head the HTTP/1.1 path would send (`http::reply`, `cors::write_preflight`,
//! `write_client_head`) and then turned into an HTTP/2 response, so both protocols carry the
//! same status, headers and body; only the connection-specific headers are left out.
//!
//! This file owns the stream's life (its task, the connection's count of open and cancelled
//! streams), the decision, the upstream exchange and the gateway's own answers.

use std::future::poll_fn;
use std::rc::Rc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use monoio::time::Instant;

use super::Shared;
use super::head::{to_h2_response, write_head};
use super::relay::{RequestBody, send_data};
use crate::config::FrontendType;
use crate::error::{ErrorKind, GatewayError};
use crate::gateway::forward::{ForwardContext, Plan, write_upstream_head};
use crate::gateway::{Action, Forward, Inbound, Local};
use crate::http::head::{BodyFraming, Progress, RequestHead, parse_head};
use crate::proxy::io::write_until;
use crate::proxy::request::Request;
use crate::proxy::upstream::{
    MAX_ATTEMPTS, UpConn, connect, idempotent, read_response_head, send_failed,
};
use crate::runtime::access_log::Start;
use crate::runtime::metrics::UpstreamEvent;

/// The 400 of a WebSocket API called over HTTP/2 (no extended CONNECT).
pub const WEBSOCKET_NEEDS_H1: &str = "WebSocket APIs need HTTP/1.1";

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
pub(super) enum End {
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
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
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
    let end = match write_head(&parts, target, host, has_body, &mut buf) {
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

/// One stream's exchange, as its steps see it (here and in [`super::relay`]).
pub(super) struct Stream<'a> {
    pub(super) shared: &'a Shared,
    pub(super) req: &'a mut Request,
    /// The request's HTTP/1.1 head.
    pub(super) buf: &'a [u8],
    pub(super) head: RequestHead,
    pub(super) respond: &'a mut SendResponse<Bytes>,
    pub(super) head_request: bool,
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
        let decision = self.req.decide(&snapshot, &inbound).await;
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

    /// Answers the stream with the gateway's own response.
    pub(super) async fn local(&mut self, local: &Local<'_>) -> End {
        answer(self.req, self.respond, local, self.head_request, self.buf).await
    }

    /// The VPC backend exchange; see the module docs.
    async fn forward(&mut self, forward: &Forward<'_>, body: RecvStream) -> End {
        let snapshot = self.req.snapshot.clone();
        let server = &snapshot.config.server;
        let worker = self.shared.worker.clone();
        let upstream = &snapshot.config.upstreams[forward.upstream];
        let pool = &*snapshot.pools[forward.upstream];
        let slot = snapshot.slots.upstream(forward.upstream);
        let backend = &forward.api.backend;
        let target = pool.pick();
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
        let mut body = RequestBody::new(
            body,
            self.head.body == BodyFraming::Chunked,
            server.limits.max_body_bytes,
            server.client_body_timeout,
        );
        let mut whole = self.head.body == BodyFraming::None;
        if !whole {
            let mut pre = std::mem::take(&mut self.req.s.upstream_head);
            let got = body
                .buffer(&mut pre, server.request_buffer_bytes.max(1))
                .await;
            self.req.s.upstream_head = pre;
            match got {
                Ok(done) => whole = done,
                Err(None) => return End::Cancelled,
                Err(Some(e)) => return self.local(&Local::Error(e)).await,
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
                // A pooled connection here; only a new one goes through `connect`, whose
                // future (TCP and TLS handshakes) is most of the stream's: boxed, the
                // stream's task stays small, and cheap to spawn.
                let pooled = if fresh { None } else { pool.take(target) };
                let mut up = match pooled {
                    Some(stream) => {
                        worker.metrics().upstream(slot, UpstreamEvent::Reused);
                        UpConn {
                            stream,
                            target,
                            reused: true,
                        }
                    }
                    None => {
                        let opened = Box::pin(connect(
                            pool,
                            upstream,
                            target,
                            deadline,
                            true,
                            (&worker, slot),
                        ));
                        match opened.await {
                            Ok(up) => up,
                            Err(e) => return Err(Some(e)),
                        }
                    }
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
                    body.send_rest(&mut up.stream, backend.timeout).await?;
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
    req.write_local(local, head_request, false, buf);
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
        if !send_data(&mut send, Bytes::copy_from_slice(body), true, idle).await {
            return End::Cancelled;
        }
    }
    End::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<A, B, C, F: std::future::Future>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// `monoio::spawn` copies the stream's future into its task, once per stream: the rare
    /// paths' large futures (a new upstream connection) are boxed, not inline.
    #[test]
    fn the_spawned_stream_future_is_small() {
        let n = future_size(serve);
        assert!(n <= 5 * 1024, "stream::serve's future is {n} bytes");
    }
}

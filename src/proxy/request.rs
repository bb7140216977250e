//! One request's context: the one configuration snapshot it runs on, its scratch buffers
//! (lent by the worker, given back when the request ends — on every path, by `Drop`), its
//! id, and what the one exit logs: status, matched API, caller.
//!
//! Also the two values folded through a request instead of being re-derived: [`Persist`]
//! (does the client connection go on) and [`Body`] (how much of the request body is here,
//! and the framing state of the rest).

use std::rc::Rc;

use crate::error::{AuthFailure, ErrorKind, GatewayError};
use crate::gateway::{self, Action, Decision, Inbound, Local, Matched, cors};
use crate::http::chunked::ChunkedScanner;
use crate::http::head::{BodyFraming, RequestHead};
use crate::http::reply::{Reply, write_error};
use crate::runtime::access_log::{End, Start};
use crate::runtime::metrics::{self, Rejection, RequestRecord};
use crate::runtime::{RequestScratch, Snapshot, Worker};

use super::body::Remaining;
use super::pace::BodyPace;

/// How often one request waits for the counter store (each wait bounded by
/// `redis_timeout_ms`; a second is rare: another request of the worker took the tokens the
/// first wait brought).
const MAX_STORE_FILLS: usize = 3;

/// Whether the client connection carries another request after this one. Starts from the
/// request head and the drain state, and only ever turns to `Close`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persist {
    KeepAlive,
    Close,
}

impl Persist {
    pub fn from_head(head: &RequestHead, draining: bool) -> Persist {
        if head.keep_alive && !draining {
            Persist::KeepAlive
        } else {
            Persist::Close
        }
    }

    #[must_use]
    pub fn close_if(self, close: bool) -> Persist {
        if close { Persist::Close } else { self }
    }

    pub fn closes(self) -> bool {
        self == Persist::Close
    }
}

/// The request body as far as it has arrived. Decided once per request from the head and
/// the bytes behind it; a streamed body carries its framing state on, so nothing is
/// scanned twice.
pub enum Body {
    /// The whole body is in the read buffer, which holds this request up to `end`.
    Buffered { end: usize },
    /// The body continues past the read buffer; `Remaining` is the framing state after the
    /// bytes already here.
    Streaming(Remaining),
}

impl Body {
    /// Reads the framing of the request at the start of `buf`.
    pub fn of(buf: &[u8], head: &RequestHead, max_body: u64) -> Result<Body, GatewayError> {
        let here = &buf[head.len..];
        Ok(match head.body {
            BodyFraming::None => Body::Buffered { end: head.len },
            BodyFraming::Length(n) if n <= here.len() as u64 => Body::Buffered {
                end: head.len + n as usize,
            },
            BodyFraming::Length(n) => Body::Streaming(Remaining::Length(n - here.len() as u64)),
            BodyFraming::Chunked => {
                let mut scanner = ChunkedScanner::new(max_body);
                let s = scanner.scan(here)?;
                if s.done {
                    Body::Buffered {
                        end: head.len + s.consumed,
                    }
                } else {
                    Body::Streaming(Remaining::Chunked(scanner))
                }
            }
        })
    }

    /// The request's bytes in the read buffer when the whole body is there.
    pub fn buffered_end(&self) -> Option<usize> {
        match self {
            Body::Buffered { end } => Some(*end),
            Body::Streaming(_) => None,
        }
    }
}

/// One request, from its complete head to the one exit that logs it.
pub struct Request {
    pub worker: Rc<Worker>,
    /// The configuration this request runs on, from start to end.
    pub snapshot: Rc<Snapshot>,
    pub s: RequestScratch,
    pub started: std::time::Instant,
    /// The wall-clock time the request started (logged, and the "now" of token checks).
    pub wall: std::time::SystemTime,
    /// The status sent to the client (0: none).
    pub status: u16,
    pub matched: Option<Matched>,
    /// The caller's secret_id or token subject, for the access log.
    pub caller: Option<String>,
    /// A WebSocket tunnel's bytes each way and why it ended.
    pub tunnel: Option<crate::runtime::access_log::TunnelEnd>,
    /// Why authentication refused the request, for the metrics.
    pub auth_failure: Option<AuthFailure>,
    /// Which traffic control refused the request, for the metrics.
    pub rejected: Option<Rejection>,
    /// The plan or limit that refused the request (429), for the metrics and the log.
    pub refused_by: Option<(crate::traffic::PolicyKind, Box<str>)>,
    /// The backend that answered and the time to its response head, for the access log.
    pub upstream: Option<(std::net::SocketAddr, std::time::Duration)>,
    /// A body being read: its pace so far (the part buffered before the upstream was taken
    /// counts toward the rest).
    pub body_pace: Option<BodyPace>,
    /// `100 Continue` went to the client already (before its body was buffered).
    pub continue_sent: bool,
    /// The client bytes read and written on this request's connection while it ran.
    pub client_bytes: (u64, u64),
    /// An HTTP/2 stream (for the metrics by protocol).
    pub h2: bool,
}

impl Request {
    /// A new request: a fresh id and, if the access log is on, the line's request half.
    pub fn begin(worker: &Rc<Worker>, start: Start<'_>) -> Request {
        let mut s = worker.take_scratch();
        let wall = start.time;
        let h2 = start.h2;
        worker.ids.borrow_mut().next_into(&mut s.request_id);
        if worker.log.enabled() {
            crate::runtime::access_log::Log::start(
                &Start {
                    request_id: &s.request_id,
                    ..start
                },
                &mut s.log_line,
            );
        }
        Request {
            snapshot: worker.snapshot(),
            worker: worker.clone(),
            s,
            started: std::time::Instant::now(),
            wall,
            status: 0,
            matched: None,
            caller: None,
            tunnel: None,
            auth_failure: None,
            rejected: None,
            refused_by: None,
            upstream: None,
            body_pace: None,
            continue_sent: false,
            client_bytes: (0, 0),
            h2,
        }
    }

    /// The one exit: every request is logged and counted here, whatever its path.
    pub fn finish(self) {
        let slot = self.matched.map_or(metrics::UNMATCHED, |m| {
            self.snapshot.slots.api(m.service, m.api)
        });
        // The worker's totals for the metrics (every byte counted once, whichever request
        // or tick takes it); this connection's own counts for the log line.
        let (mut read, mut written) = self.worker.take_bytes();
        let bytes = self.client_bytes;
        if let Some(t) = &self.tunnel {
            (read, written) = (read + t.up, written + t.down);
        }
        let elapsed = self.started.elapsed();
        self.worker.metrics().protocol(self.h2);
        self.worker.metrics().request(RequestRecord {
            slot,
            status: self.status,
            elapsed,
            auth: self.auth_failure,
            rejected: self.rejected,
            bytes: (read, written),
        });
        let cfg = &self.snapshot.config;
        let route = self.matched.map(|m| {
            let service = &cfg.services[m.service];
            (service.name.as_str(), service.apis[m.api].name.as_str())
        });
        self.worker.log.finish(
            &self.s.log_line,
            &End {
                status: self.status,
                route,
                caller: self.caller.as_deref(),
                upstream: self.upstream,
                bytes,
                tunnel: self.tunnel.as_ref(),
                refused_by: match (&self.refused_by, self.rejected) {
                    (Some((_, name)), _) => Some(name),
                    (None, Some(Rejection::Ip)) => Some("ip_control"),
                    (None, Some(Rejection::NoPlan)) => Some("usage_plan"),
                    _ => None,
                },
                elapsed,
            },
        );
    }

    /// Runs `gateway::decide` on this request (HTTP/1.1 and HTTP/2 alike) and records what
    /// the one exit needs from the decision: the matched API, the answer's extra headers,
    /// the caller, the policy that refused. When a counter needs the store's answer (the
    /// Redis store), waits for it, each wait bounded by `redis_timeout_ms`, and decides
    /// again; after the last wait a policy still without a token refuses (429).
    pub async fn decide<'c>(
        &mut self,
        snapshot: &'c Snapshot,
        inbound: &Inbound<'_>,
    ) -> Decision<'c> {
        let cfg = &*snapshot.config;
        let counters = &snapshot.counters;
        let mut fills = 0;
        let decision = loop {
            let scratch = gateway::Scratch {
                path: &mut self.s.path,
                backend_path: &mut self.s.backend_path,
                params: &mut self.s.params,
            };
            let d = if fills < MAX_STORE_FILLS {
                gateway::decide(cfg, &snapshot.auth, counters, inbound, scratch)
            } else {
                counters
                    .last_try(|| gateway::decide(cfg, &snapshot.auth, counters, inbound, scratch))
            };
            if matches!(d.action, Action::Pending) && fills < MAX_STORE_FILLS {
                fills += 1;
                counters.fill().await;
                continue;
            }
            break d;
        };
        self.matched = decision.matched;
        self.set_extra_headers(decision.rate.as_ref());
        if let Some(who) = decision.identity.as_ref().and_then(|i| i.caller()) {
            self.caller = Some(who.to_string());
        }
        if let Some(r) = decision.rate.as_ref().filter(|r| r.retry_after.is_some()) {
            self.refused_by = Some((r.policy.kind, r.policy.name.into()));
        }
        decision
    }

    /// Writes an answer the gateway makes itself into `s.out` (the HTTP/1.1 wire form; the
    /// HTTP/2 path converts it) and records its status and, for an error, why auth or a
    /// traffic control refused. `buf`: the request's bytes (a preflight echoes its headers).
    pub fn write_local(&mut self, local: &Local<'_>, head_request: bool, close: bool, buf: &[u8]) {
        let extra = &self.s.extra[..];
        let out = &mut self.s.out;
        out.clear();
        self.status = match local {
            Local::Error(e) => {
                if let ErrorKind::Unauthorized(_, why) = &e.kind {
                    self.auth_failure = Some(*why);
                }
                self.rejected = Rejection::of(e, self.refused_by.as_ref().map(|(kind, _)| *kind));
                write_error(out, e, &self.s.request_id, head_request, close, extra);
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
                    request_id: &self.s.request_id,
                    head_request,
                    close,
                    extra_headers: extra,
                }
                .write(out);
                *status
            }
            Local::Preflight(p) => {
                cors::write_preflight(out, p, buf, &self.s.request_id, close);
                204
            }
        };
    }

    /// Sets the header lines every answer to this request carries besides the gateway's
    /// own: the CORS headers for an API with `cors = true`, the `RateLimit` headers for one
    /// under a plan or limit.
    pub fn set_extra_headers(&mut self, rate: Option<&crate::traffic::RateInfo<'_>>) {
        self.s.extra.clear();
        if self.matched.is_some_and(|m| m.cors) {
            self.s.extra.extend_from_slice(cors::RESPONSE_HEADERS);
        }
        if let Some(r) = rate {
            r.write_headers(&mut self.s.extra);
        }
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.worker.put_scratch(std::mem::take(&mut self.s));
    }
}

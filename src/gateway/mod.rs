//! What the gateway decides about one request, before any byte goes upstream: the API
//! frontend of SPEC §2-§4 as one pure, synchronous function, [`decide`].
//!
//! The stages run in a fixed order, each a function over the parsed head and the matched
//! API that either lets the request go on or answers it (Envoy's continue / local reply):
//!
//! ```text
//! target → route → protocol (426) → IP control (403) → WebSocket handshake → auth
//!        → usage plans (403, 429) → limits (429) → params → Local (mock) | Forward | Tunnel
//! ```
//!
//! A CORS preflight is recognised while routing (it routes by the method it asks about, on
//! every API of its path) and, after the protocol check and IP control, answered before the
//! WebSocket and auth stages: a preflight is never a handshake and carries no credentials.
//!
//! - [`cors`]: preflight answers and the headers a CORS API adds to every response.
//! - [`ip_control`]: the client IP against the API's allow or deny list.
//! - [`auth`]: key-pair (HMAC) and OAuth 2.0 (JWT) checks; the only producer of a
//!   [`auth::Permit`], without which nothing can be forwarded.
//! - [`usage_plans`] / [`limits`]: plans' rates and quotas and the service's and API's
//!   limits, counted in [`crate::traffic`]'s counters. With the Redis store a counter may
//!   need the store's answer first: the decision is then [`Action::Pending`], and the data
//!   path decides again once [`Counters::fill`](crate::traffic::Counters) has run.
//! - [`params`] / [`query`]: typed input parameters, validated and placed for the backend.
//! - [`websocket`]: the RFC 6455 handshake check.
//! - [`forward`]: the upstream request head (SPEC §3), written from a [`Forward`] decision.
//!
//! I/O is the data path's ([`crate::proxy`]); this module only reads the head and the
//! configuration and writes into the request's scratch buffers. An API with no params, no
//! auth and no CORS costs nothing here beyond routing: each stage returns at once.

pub mod auth;
pub mod cors;
pub mod forward;
pub mod ip_control;
pub mod limits;
pub mod params;
pub mod query;
pub mod usage_plans;
pub mod websocket;

use std::net::IpAddr;
use std::ops::Range;
use std::time::{Instant, SystemTime};

use crate::config::{Api, BackendTarget, Config, FrontendType, Service};
use crate::error::{ErrorKind, GatewayError};
use crate::http::head::RequestHead;
use crate::router::target::{normalize_path, parse_target};
use crate::traffic::{Counters, Pass, RateInfo};
use auth::{AuthState, Permit};
use limits::{Cx, Stop};
use params::{ParamInput, ParamValues};

/// The request as the gateway sees it: the parsed head (offsets into `buf`) and its context.
pub struct Inbound<'r> {
    pub buf: &'r [u8],
    pub head: &'r RequestHead,
    /// The request came over TLS.
    pub https: bool,
    /// The client: the TCP peer, or the PROXY protocol's source address.
    pub client: IpAddr,
    /// The gateway clock, for auth dates, token expiry and quota periods.
    pub now: SystemTime,
    /// The monotonic clock, for rates.
    pub mono: Instant,
}

/// The request's buffers that the decision writes into.
pub struct Scratch<'s> {
    /// Path normalization writes the normalized path here (only when the path changes).
    pub path: &'s mut String,
    pub backend_path: &'s mut String,
    pub params: &'s mut ParamValues,
}

/// The API a request reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    pub service: usize,
    pub api: usize,
    /// Every response gets the CORS headers (SPEC §4).
    pub cors: bool,
}

/// What to do with a request.
pub struct Decision<'c> {
    /// `None` when no API was reached (bad target, 404).
    pub matched: Option<Matched>,
    pub action: Action<'c>,
    /// The `RateLimit` headers' policy, for an API under a plan or limit.
    pub rate: Option<RateInfo<'c>>,
    /// Who auth found, for an answer the gateway makes itself after auth passed (a
    /// refusal by a later stage, a mock): the access log's `caller`. (A forwarded request
    /// carries it in its permit.)
    pub identity: Option<auth::Identity<'c>>,
}

pub enum Action<'c> {
    /// The gateway answers by itself.
    Local(Local<'c>),
    /// Send the request to the API's backend (`scratch.backend_path`, placed params).
    Forward(Forward<'c>),
    /// A WebSocket handshake: forward it, then tunnel once the backend answers 101.
    Tunnel(Forward<'c>),
    /// A counter needs the store's answer: fill the counters, then decide again.
    Pending,
}

/// An answer the gateway makes itself.
pub enum Local<'c> {
    Error(GatewayError),
    Mock {
        status: u16,
        content_type: &'c str,
        body: &'c str,
    },
    /// A CORS preflight: 204 with what the API's path allows.
    Preflight(cors::Preflight),
}

/// A request cleared for its backend: only [`auth`] makes the [`Permit`] it holds.
pub struct Forward<'c> {
    pub permit: Permit<'c>,
    pub service: &'c Service,
    pub api: &'c Api,
    /// Index into `config.upstreams`.
    pub upstream: usize,
    /// The client's query string (without `?`), as a range of the read buffer.
    pub query: Option<Range<usize>>,
}

/// SPEC §2.1: a service may be served over one scheme only (426 otherwise).
fn protocol(service: &Service, https: bool) -> Result<(), GatewayError> {
    if service.protocol.allows(https) {
        return Ok(());
    }
    let why = if https {
        "this API is served over http only"
    } else {
        "this API is served over https only"
    };
    Err(GatewayError::new(ErrorKind::ProtocolNotAllowed(why)))
}

fn local(matched: Option<Matched>, e: GatewayError) -> Decision<'static> {
    Decision {
        matched,
        action: Action::Local(Local::Error(e)),
        rate: None,
        identity: None,
    }
}

/// Runs the stages in order; see the module docs.
pub fn decide<'c>(
    cfg: &'c Config,
    auth_state: &AuthState,
    counters: &Counters,
    req: &Inbound<'_>,
    scratch: Scratch<'_>,
) -> Decision<'c> {
    let (buf, head) = (req.buf, req.head);

    // Target and path normalization (`server.path_normalization`).
    let Ok(raw_target) = std::str::from_utf8(head.target.get(buf)) else {
        let e = GatewayError::new(ErrorKind::BadRequest("invalid request target"));
        return local(None, e);
    };
    let target = match parse_target(raw_target) {
        Ok(t) => t,
        Err(e) => return local(None, GatewayError::new(ErrorKind::BadRequest(e.message()))),
    };
    let host = target
        .authority
        .or_else(|| head.host.and_then(|h| std::str::from_utf8(h.get(buf)).ok()));
    let path = match normalize_path(target.path, cfg.server.path_normalization, scratch.path) {
        Ok(p) => p,
        Err(e) => return local(None, GatewayError::new(ErrorKind::BadRequest(e.message()))),
    };
    let method = std::str::from_utf8(head.method.get(buf)).unwrap_or("");

    // A CORS preflight for a path with a CORS API is answered here, after the protocol and
    // IP control, before auth; one for a path without one routes as the OPTIONS request it is.
    if let Some(p) = cors::preflight(buf, head, method)
        .and_then(|p| cors::answer(cfg, host, path, &p, req.client))
    {
        let matched = Some(Matched {
            service: p.service,
            api: p.api,
            cors: true,
        });
        if let Err(e) = protocol(&cfg.services[p.service], req.https) {
            return local(matched, e);
        }
        return match p.answer {
            Ok(answer) => Decision {
                matched,
                action: Action::Local(Local::Preflight(answer)),
                rate: None,
                identity: None,
            },
            Err(e) => local(matched, e),
        };
    }

    // Route.
    let m = match cfg.routes.route(host, method, path) {
        Ok(m) => m,
        Err(miss) => return local(None, miss.error(method, path, host.unwrap_or(""))),
    };
    let service = &cfg.services[m.service];
    let api = &service.apis[m.api];
    let matched = Some(Matched {
        service: m.service,
        api: m.api,
        cors: api.cors,
    });

    // Protocol (SPEC §2.1).
    if let Err(e) = protocol(service, req.https) {
        return local(matched, e);
    }

    // IP control (SPEC §8).
    if let Err(e) = ip_control::check(api.ip_control.as_deref(), req.client) {
        return local(matched, e);
    }

    // WebSocket handshake (SPEC §5).
    let websocket = api.frontend_type == FrontendType::Ws;
    if websocket && let Err(e) = websocket::check_handshake(buf, head) {
        return local(matched, e);
    }

    // Auth: the only way to a Permit.
    let query = target.query;
    let permit = match auth::authorize(cfg, m.service, api, req, query, auth_state) {
        Ok(p) => p,
        Err(e) => return local(matched, e),
    };

    // Usage plans, then limits (SPEC §8).
    let mut rate = None;
    if !service.plans.is_empty() || !api.limits.is_empty() {
        let now = counters.clock(req.mono, req.now);
        let cx = Cx {
            cfg,
            counters,
            now: &now,
        };
        let mut pass = Pass::default();
        let identity = permit.identity();
        let judged = usage_plans::check(&cx, service, identity, &mut pass)
            .and_then(|()| limits::check(&cx, api, m.api, identity, req.client, &mut pass));
        match judged {
            Ok(()) => {
                rate = pass.nearest.map(|policy| RateInfo {
                    policy,
                    retry_after: None,
                })
            }
            Err(Stop::Refuse(refusal)) => {
                let (e, info) = *refusal;
                return Decision {
                    matched,
                    action: Action::Local(Local::Error(e)),
                    rate: info,
                    identity: Some(permit.identity().clone()),
                };
            }
            Err(Stop::Pending) => {
                return Decision {
                    matched,
                    action: Action::Pending,
                    rate: None,
                    identity: None,
                };
            }
        }
    }

    // Parameters, then the backend path.
    let input = ParamInput {
        buf,
        head,
        query,
        path,
        captures: &m.captures,
    };
    if let Err(e) = params::apply(&api.params, &input, scratch.params) {
        return Decision {
            rate,
            identity: Some(permit.identity().clone()),
            ..local(matched, e)
        };
    }
    let backend = &api.backend;
    scratch.backend_path.clear();
    match &backend.path {
        Some(bp) => bp.compose(&m, path, scratch.backend_path),
        None => scratch.backend_path.push_str(path),
    }

    let mut identity = None;
    let action = match &backend.target {
        BackendTarget::Mock {
            status,
            body,
            content_type,
        } => {
            identity = Some(permit.identity().clone());
            Action::Local(Local::Mock {
                status: *status,
                content_type,
                body,
            })
        }
        BackendTarget::Vpc { upstream } => {
            let forward = Forward {
                permit,
                service,
                api,
                upstream: *upstream,
                query: query.map(|q| {
                    let start = q.as_ptr() as usize - buf.as_ptr() as usize;
                    start..start + q.len()
                }),
            };
            if websocket {
                Action::Tunnel(forward)
            } else {
                Action::Forward(forward)
            }
        }
    };
    Decision {
        matched,
        action,
        rate,
        identity,
    }
}

#[cfg(test)]
mod tests;

//! The auth stage (SPEC §4): key-pair (HMAC) and OAuth 2.0 (JWT) checks for the matched API,
//! and the only place a [`Permit`] is made. The cryptography is [`crate::auth`]'s (pure
//! functions over bytes); this stage finds the credentials in the request, the key in the
//! configuration, and decides.
//!
//! - key_pair: the `Authorization: hmac ...` header; the `secret_id` must exist and be bound
//!   to the service; the signature covers the listed headers and a fresh `x-date`/`date`. The
//!   Authorization header is not forwarded; the backend gets `X-Api-SecretId`.
//! - oauth2: the token from `Authorization: Bearer`, a cookie or a query parameter
//!   (`token_location`/`token_name`), verified with the service's JWK, or found in this
//!   worker's cache of verified tokens. A query token is removed from the forwarded query; a
//!   header or cookie token is forwarded as it came. The backend gets `X-Api-Subject`.
//!
//! The upstream head writer takes a `Permit`, so a request can reach a backend only through
//! a value this stage produced (linkerd's `Permitted<T>`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use super::Inbound;
use crate::auth::hmac::{self, HmacError, SignedRequest};
use crate::auth::jwt::{self, TOKEN_CACHE_CAPACITY, TokenCache};
use crate::config::{Api, Auth, Config, TokenLocation};
use crate::error::{AuthFailure, ErrorKind, GatewayError};
use crate::http::head::{RequestHead, header_values};

/// Who the caller proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity<'c> {
    /// `auth = "none"`.
    Anonymous,
    /// key_pair: the caller's `secret_id`.
    SecretId(&'c str),
    /// oauth2: the token's `sub` claim, if it has one.
    Subject(Option<String>),
}

/// Proof that the auth stage let a request through, and what it leaves out of the upstream
/// request: the credentials themselves.
#[derive(Debug)]
pub struct Permit<'c> {
    identity: Identity<'c>,
    /// Drop the client's `Authorization` header (key_pair: it carries the signature).
    strip_authorization: bool,
    /// Drop this query parameter (oauth2 with `token_location = "query"`).
    strip_query: Option<&'c str>,
}

impl Identity<'_> {
    /// The caller as the access log names it.
    pub fn caller(&self) -> Option<&str> {
        match self {
            Identity::Anonymous | Identity::Subject(None) => None,
            Identity::SecretId(id) => Some(id),
            Identity::Subject(Some(sub)) => Some(sub),
        }
    }
}

impl<'c> Permit<'c> {
    pub fn identity(&self) -> &Identity<'c> {
        &self.identity
    }

    pub fn strips_authorization(&self) -> bool {
        self.strip_authorization
    }

    pub fn strips_query(&self) -> Option<&'c str> {
        self.strip_query
    }

    #[cfg(test)]
    pub(crate) fn for_tests(
        identity: Identity<'c>,
        strip_authorization: bool,
        strip_query: Option<&'c str>,
    ) -> Permit<'c> {
        Permit {
            identity,
            strip_authorization,
            strip_query,
        }
    }
}

/// Per-worker auth state for one configuration snapshot: key pairs by `secret_id`, and a
/// cache of verified tokens per OAuth 2.0 service.
pub struct AuthState {
    key_pairs: HashMap<String, usize>,
    /// By service index; `None` for services without `[services.oauth2]`.
    tokens: Vec<Option<RefCell<TokenCache>>>,
}

impl AuthState {
    pub fn new(cfg: &Config) -> AuthState {
        AuthState {
            key_pairs: cfg
                .key_pairs
                .iter()
                .enumerate()
                .map(|(i, k)| (k.secret_id.clone(), i))
                .collect(),
            tokens: cfg
                .services
                .iter()
                .map(|s| {
                    s.oauth2
                        .as_ref()
                        .map(|_| RefCell::new(TokenCache::new(TOKEN_CACHE_CAPACITY)))
                })
                .collect(),
        }
    }
}

fn unauthorized(message: impl Into<String>, why: AuthFailure) -> GatewayError {
    GatewayError::new(ErrorKind::Unauthorized(message.into(), why))
}

/// The parsed head as the HMAC verifier reads it.
struct HeadView<'r> {
    buf: &'r [u8],
    head: &'r RequestHead,
}

impl SignedRequest for HeadView<'_> {
    fn header_values(&self, name: &str) -> impl Iterator<Item = &[u8]> {
        header_values(&self.head.headers, self.buf, name.as_bytes())
    }

    fn request_line(&self) -> &[u8] {
        let from = self
            .buf
            .get(self.head.method.start as usize..)
            .unwrap_or_default();
        let end = from.iter().position(|&b| b == b'\r').unwrap_or(from.len());
        &from[..end]
    }
}

fn header<'r>(req: &Inbound<'r>, name: &[u8]) -> Option<&'r [u8]> {
    header_values(&req.head.headers, req.buf, name).next()
}

/// Checks the request against the API's auth; `Ok` carries the permit to forward it.
pub fn authorize<'c>(
    cfg: &'c Config,
    service: usize,
    api: &Api,
    req: &Inbound<'_>,
    query: Option<&str>,
    state: &AuthState,
) -> Result<Permit<'c>, GatewayError> {
    match api.auth {
        Auth::None => Ok(Permit {
            identity: Identity::Anonymous,
            strip_authorization: false,
            strip_query: None,
        }),
        Auth::KeyPair => key_pair(cfg, service, req, state),
        Auth::OAuth2 => oauth2(cfg, service, req, query, state),
    }
}

/// SPEC §4 key_pair: `Authorization: hmac id=..., algorithm=..., headers=..., signature=...`.
fn key_pair<'c>(
    cfg: &'c Config,
    service: usize,
    req: &Inbound<'_>,
    state: &AuthState,
) -> Result<Permit<'c>, GatewayError> {
    let fail = |e: HmacError| {
        let why = AuthFailure {
            scheme: "key_pair",
            reason: e.reason(),
        };
        unauthorized(e.message(), why)
    };
    let value = header(req, b"authorization")
        .ok_or(HmacError::Missing)
        .map_err(fail)?;
    let creds = hmac::parse_authorization(value).map_err(fail)?;
    let pair = state
        .key_pairs
        .get(creds.id)
        .map(|&i| &cfg.key_pairs[i])
        .ok_or(HmacError::IdNotFound)
        .map_err(fail)?;
    if !pair.services.contains(&service) {
        return Err(fail(HmacError::IdNotAllowed));
    }
    let view = HeadView {
        buf: req.buf,
        head: req.head,
    };
    hmac::verify(&creds, &pair.hmac, &view, req.now).map_err(fail)?;
    Ok(Permit {
        identity: Identity::SecretId(&pair.secret_id),
        strip_authorization: true,
        strip_query: None,
    })
}

/// SPEC §4 oauth2: a JWT from the header, a cookie or the query, verified with the
/// service's key (or found in this worker's cache of verified tokens).
fn oauth2<'c>(
    cfg: &'c Config,
    service: usize,
    req: &Inbound<'_>,
    query: Option<&str>,
    state: &AuthState,
) -> Result<Permit<'c>, GatewayError> {
    let invalid = || unauthorized(jwt::MSG_INVALID, AuthFailure::TOKEN_INVALID);
    let Some(o) = cfg.services[service].oauth2.as_ref() else {
        return Err(invalid());
    };
    let token = match o.token_location {
        TokenLocation::Header => header(req, b"authorization").and_then(jwt::bearer),
        TokenLocation::Cookie => header_values(&req.head.headers, req.buf, b"cookie")
            .find_map(|v| jwt::cookie(v, &o.token_name)),
        TokenLocation::Query => {
            query.and_then(|q| super::query::first(q, &o.token_name).map(str::as_bytes))
        }
    };
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => return Err(unauthorized(jwt::MSG_MISSING, AuthFailure::TOKEN_MISSING)),
    };
    let now = req
        .now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cache = state.tokens.get(service).and_then(Option::as_ref);
    let cached = cache.and_then(|c| c.borrow_mut().get(token, now).map(|v| v.sub.clone()));
    let sub = match cached {
        Some(sub) => sub,
        None => {
            let verified = jwt::verify(token, &o.key, now).map_err(|_| invalid())?;
            // The subject is sent as a header: it must be a valid header value, with no
            // leading or trailing space either (the backend would strip it: " admin " must
            // not reach it as "admin").
            if verified.sub.as_deref().is_some_and(|s| {
                s.bytes().any(|b| b < 0x20 || b == 0x7f) || s.starts_with(' ') || s.ends_with(' ')
            }) {
                return Err(invalid());
            }
            let sub = verified.sub.clone();
            if let Some(c) = cache {
                c.borrow_mut().insert(token, verified, now);
            }
            sub
        }
    };
    Ok(Permit {
        identity: Identity::Subject(sub),
        strip_authorization: false,
        strip_query: (o.token_location == TokenLocation::Query).then_some(o.token_name.as_str()),
    })
}

//! The auth stage (SPEC §4): key-pair (HMAC) and OAuth 2.0 (JWT) checks for the matched API,
//! and the only place a [`Permit`] is made. The upstream head writer takes a `Permit`, so a
//! request can reach a backend only through a value this stage produced (linkerd's
//! `Permitted<T>`).

use std::time::SystemTime;

use super::Inbound;
use crate::config::{Api, Auth, Config};
use crate::error::{ErrorKind, GatewayError};

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

/// Per-worker auth state for one configuration snapshot.
#[derive(Default)]
pub struct AuthState {}

impl AuthState {
    pub fn new(_cfg: &Config) -> AuthState {
        AuthState {}
    }
}

/// Checks the request against the API's auth; `Ok` carries the permit to forward it.
pub fn authorize<'c>(
    _cfg: &'c Config,
    _service: usize,
    api: &Api,
    _req: &Inbound<'_>,
    _query: Option<&str>,
    _state: &AuthState,
) -> Result<Permit<'c>, GatewayError> {
    let _ = SystemTime::now;
    match api.auth {
        Auth::None => Ok(Permit {
            identity: Identity::Anonymous,
            strip_authorization: false,
            strip_query: None,
        }),
        Auth::KeyPair | Auth::OAuth2 => Err(GatewayError::new(ErrorKind::Unauthorized(
            "authentication for this API is not available in this version".into(),
        ))),
    }
}

//! The gateway's one error type: which side caused it, whether a retry may help, and the one
//! function that maps it to the status and JSON body the client gets (SPEC §6).
//!
//! Every response the gateway makes itself goes through [`GatewayError::status`] and
//! [`GatewayError::body`], so the status table lives in one place.

use std::fmt;

/// Who caused an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong (4xx).
    Client,
    /// The backend refused, broke or was too slow (502, 504).
    Upstream,
    /// The gateway itself (503 overload, 500).
    Internal,
}

/// What went wrong. Messages that carry request data are built by the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed request framing or target (SPEC §6): 400, and the connection is closed.
    BadRequest(&'static str),
    /// A parameter of the wrong type: 400.
    BadParameter(String),
    /// Authentication failed: 401; why, in a word, for `/metrics`.
    Unauthorized(String, AuthFailure),
    /// A required parameter is missing: 403.
    MissingParameter(String),
    /// IP control refused the client (SPEC §8): 403. The address is canonical (an
    /// IPv4-mapped IPv6 peer as its IPv4 address).
    IpRefused(std::net::IpAddr),
    /// A key-pair caller that no usage plan of the service binds (SPEC §8): 403.
    NoUsagePlan,
    /// Over a plan's rate or a limit (SPEC §8): 429.
    RateLimited,
    /// Over a plan's quota (SPEC §8): 429.
    QuotaExceeded,
    /// The counter store failed and `on_store_failure = "deny"`: 503.
    StoreUnavailable,
    /// No API matches (either 404 message of SPEC §2).
    NotFound(String),
    /// The request head was not complete in time: 408, then close.
    HeaderTimeout,
    /// The request body stalled (`client_body_timeout_ms`) or came slower than
    /// `client_body_min_rate`: 408, then close.
    BodyTimeout(BodyStall),
    /// Content-Length above `max_body_bytes`: 413.
    BodyTooLarge,
    /// Request target above `max_uri_bytes`: 414.
    UriTooLong,
    /// The service does not allow this listener's protocol: 426.
    ProtocolNotAllowed(&'static str),
    /// Head above `max_header_bytes` or more than `max_headers` headers: 431.
    HeadTooLarge,
    /// The backend refused the connection or broke it: 502.
    BadGateway(String),
    /// The backend did not answer within `timeout_ms`: 504.
    GatewayTimeout,
    /// Past `max_connections`: 503.
    Overloaded,
}

/// How a request body failed to arrive in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyStall {
    /// No byte for `client_body_timeout_ms`.
    Stalled,
    /// Fewer bytes than `client_body_min_rate` asks over a window.
    TooSlow,
}

/// Why authentication failed: the scheme and a short reason, the labels of
/// `ringway_auth_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthFailure {
    /// `key_pair` or `oauth2`.
    pub scheme: &'static str,
    /// `missing`, `malformed`, `unknown_key`, `not_allowed`, `clock_skew`, `bad_signature`
    /// (key pair); `token_missing`, `token_invalid` (OAuth 2.0).
    pub reason: &'static str,
}

impl AuthFailure {
    pub const TOKEN_MISSING: AuthFailure = AuthFailure {
        scheme: "oauth2",
        reason: "token_missing",
    };
    pub const TOKEN_INVALID: AuthFailure = AuthFailure {
        scheme: "oauth2",
        reason: "token_invalid",
    };
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayError {
    pub kind: ErrorKind,
    /// For upstream errors: a retry on a fresh connection may succeed (SPEC §3 retry rules
    /// decide whether one is allowed).
    pub retryable: bool,
}

impl GatewayError {
    pub fn new(kind: ErrorKind) -> GatewayError {
        GatewayError {
            kind,
            retryable: false,
        }
    }

    pub fn retryable(kind: ErrorKind) -> GatewayError {
        GatewayError {
            kind,
            retryable: true,
        }
    }

    pub fn side(&self) -> Side {
        match self.kind {
            ErrorKind::BadGateway(_) | ErrorKind::GatewayTimeout => Side::Upstream,
            ErrorKind::Overloaded | ErrorKind::StoreUnavailable => Side::Internal,
            _ => Side::Client,
        }
    }

    /// The status code: the one table of SPEC §6.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadRequest(_) | ErrorKind::BadParameter(_) => 400,
            ErrorKind::Unauthorized(..) => 401,
            ErrorKind::MissingParameter(_) | ErrorKind::IpRefused(_) | ErrorKind::NoUsagePlan => {
                403
            }
            ErrorKind::NotFound(_) => 404,
            ErrorKind::HeaderTimeout | ErrorKind::BodyTimeout(_) => 408,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UriTooLong => 414,
            ErrorKind::ProtocolNotAllowed(_) => 426,
            ErrorKind::RateLimited | ErrorKind::QuotaExceeded => 429,
            ErrorKind::HeadTooLarge => 431,
            ErrorKind::BadGateway(_) => 502,
            ErrorKind::Overloaded | ErrorKind::StoreUnavailable => 503,
            ErrorKind::GatewayTimeout => 504,
        }
    }

    /// Whether the client connection must be closed after the response: framing errors and
    /// timeouts leave the stream in an unknown state.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::BadRequest(_)
                | ErrorKind::HeaderTimeout
                | ErrorKind::BodyTimeout(_)
                | ErrorKind::HeadTooLarge
                | ErrorKind::UriTooLong
                | ErrorKind::BodyTooLarge
                | ErrorKind::Overloaded
        )
    }

    pub fn message(&self) -> String {
        match &self.kind {
            ErrorKind::BadRequest(m) => (*m).to_string(),
            ErrorKind::BadParameter(m)
            | ErrorKind::Unauthorized(m, _)
            | ErrorKind::MissingParameter(m)
            | ErrorKind::NotFound(m)
            | ErrorKind::BadGateway(m) => m.clone(),
            ErrorKind::ProtocolNotAllowed(m) => (*m).to_string(),
            ErrorKind::IpRefused(ip) => format!("client ip {ip} is not allowed"),
            ErrorKind::NoUsagePlan => "Found no validate usage plan.".into(),
            ErrorKind::RateLimited => "API rate limit exceeded.".into(),
            ErrorKind::QuotaExceeded => "API quota exceeded.".into(),
            ErrorKind::StoreUnavailable => "rate limit store unavailable".into(),
            ErrorKind::HeaderTimeout => "request header timeout".into(),
            ErrorKind::BodyTimeout(BodyStall::Stalled) => "request body timeout".into(),
            ErrorKind::BodyTimeout(BodyStall::TooSlow) => "request body too slow".into(),
            ErrorKind::BodyTooLarge => "request body too large".into(),
            ErrorKind::UriTooLong => "request URI too long".into(),
            ErrorKind::HeadTooLarge => "request header fields too large".into(),
            ErrorKind::GatewayTimeout => "backend timeout".into(),
            ErrorKind::Overloaded => "gateway overloaded".into(),
        }
    }

    /// The JSON body `{"message":"..."}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message() }).to_string()
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message())
    }
}

impl std::error::Error for GatewayError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cases = [
            (ErrorKind::BadRequest("x"), 400, Side::Client, true),
            (
                ErrorKind::BadParameter("x".into()),
                400,
                Side::Client,
                false,
            ),
            (
                ErrorKind::Unauthorized("x".into(), AuthFailure::TOKEN_MISSING),
                401,
                Side::Client,
                false,
            ),
            (
                ErrorKind::MissingParameter("x".into()),
                403,
                Side::Client,
                false,
            ),
            (
                ErrorKind::IpRefused([192, 0, 2, 7].into()),
                403,
                Side::Client,
                false,
            ),
            (ErrorKind::NoUsagePlan, 403, Side::Client, false),
            (ErrorKind::RateLimited, 429, Side::Client, false),
            (ErrorKind::QuotaExceeded, 429, Side::Client, false),
            (ErrorKind::StoreUnavailable, 503, Side::Internal, false),
            (ErrorKind::NotFound("x".into()), 404, Side::Client, false),
            (ErrorKind::HeaderTimeout, 408, Side::Client, true),
            (
                ErrorKind::BodyTimeout(BodyStall::Stalled),
                408,
                Side::Client,
                true,
            ),
            (
                ErrorKind::BodyTimeout(BodyStall::TooSlow),
                408,
                Side::Client,
                true,
            ),
            (ErrorKind::BodyTooLarge, 413, Side::Client, true),
            (ErrorKind::UriTooLong, 414, Side::Client, true),
            (ErrorKind::ProtocolNotAllowed("x"), 426, Side::Client, false),
            (ErrorKind::HeadTooLarge, 431, Side::Client, true),
            (
                ErrorKind::BadGateway("x".into()),
                502,
                Side::Upstream,
                false,
            ),
            (ErrorKind::Overloaded, 503, Side::Internal, true),
            (ErrorKind::GatewayTimeout, 504, Side::Upstream, false),
        ];
        for (kind, status, side, closes) in cases {
            let e = GatewayError::new(kind);
            assert_eq!(
                (e.status(), e.side(), e.closes_connection()),
                (status, side, closes),
                "{e}"
            );
        }
    }

    #[test]
    fn body_is_json_with_escaping() {
        let e = GatewayError::new(ErrorKind::NotFound(
            "There is no api match uri[/a\"b] host[h]".into(),
        ));
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["message"], "There is no api match uri[/a\"b] host[h]");
    }
}

//! The running configuration: typed, validated, ready for the data path.
//!
//! Built from [`super::file`] once per load by [`super::build`]. Durations are `Duration`s,
//! addresses `SocketAddr`s, paths compiled [`PathPattern`]s, references between sections
//! resolved to indexes, and the [`RouteTable`] compiled. Nothing here is re-parsed later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use crate::gateway::ip_control::{IpControl, IpMode};
pub use crate::http::limits::Limits;
use crate::router::{BackendPath, HostPattern, MethodSet, PathPattern, RouteTable};
pub use crate::traffic::policy::{
    Limit, LimitKey, OnStoreFailure, Per, StoreKind, Traffic, UsagePlan,
};

pub struct Config {
    /// The file this was loaded from.
    pub file: PathBuf,
    pub server: Server,
    pub certificates: Vec<Certificate>,
    /// The TLS server configuration of the certificates (`None` without certificates),
    /// shared by every worker.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Lines `check` and `run` print: valid, but worth a look (a certificate expiring soon).
    pub warnings: Vec<String>,
    pub upstreams: Vec<Upstream>,
    pub services: Vec<Service>,
    pub key_pairs: Vec<KeyPair>,
    pub routes: RouteTable,
    /// `[[usage_plans]]` (SPEC §8).
    pub usage_plans: Vec<UsagePlan>,
    /// Every service and API limit; APIs and services name theirs by index.
    pub limits: Vec<Limit>,
    /// `[traffic]`: where counters live.
    pub traffic: Traffic,
}

pub struct Server {
    pub listen_http: Vec<SocketAddr>,
    pub listen_https: Vec<SocketAddr>,
    /// `None` when set to `"off"`.
    pub admin_listen: Option<SocketAddr>,
    /// 0 = one per available core.
    pub workers: usize,
    pub limits: Limits,
    pub header_timeout: Duration,
    pub client_idle_timeout: Duration,
    /// A WebSocket tunnel with no byte either way for this long is closed.
    pub ws_idle_timeout: Duration,
    /// SIGTERM: how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub access_log: AccessLog,
    /// `run` writes its process id here (for `ringway reload --pid-file`).
    pub pid_file: Option<PathBuf>,
    /// The gateway's own messages on stderr as JSON lines (`log_format = "json"`).
    pub log_json: bool,
    /// A request body up to this size is read whole before an upstream connection is
    /// taken; a larger one streams once this much has arrived.
    pub request_buffer_bytes: usize,
    /// A request body with no byte for this long: 408.
    pub client_body_timeout: Duration,
    /// A request body slower than this many bytes per second over a
    /// `client_body_rate_window`: 408 (0: no minimum).
    pub client_body_min_rate: u64,
    pub client_body_rate_window: Duration,
    pub path_normalization: PathNormalization,
    /// Every client listener expects a PROXY protocol header first on each connection; its
    /// source address is the client's (SPEC §9).
    pub proxy_protocol: bool,
    /// `listen_http` also accepts HTTP/2 with prior knowledge (SPEC §10).
    pub h2c: bool,
    /// Concurrent streams an HTTP/2 client may open on one connection.
    pub h2_max_concurrent_streams: u32,
}

/// `server.path_normalization`: what the request path is made into before routing and
/// forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathNormalization {
    /// Percent-encoded unreserved characters decoded, then dot segments resolved; `\`,
    /// `%2F` and `%5C` refused (400). The backend gets the normalized path.
    Safe,
    /// Only dot segments are resolved; percent-encoding is left as sent.
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    Off,
    File(PathBuf),
}

pub struct Certificate {
    pub hosts: Vec<HostPattern>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

pub struct Upstream {
    pub name: String,
    pub scheme: Scheme,
    /// One or more VIPs, used round-robin.
    pub targets: Vec<SocketAddr>,
    pub keepalive: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// Passive health: a target that fails to connect this many times within
    /// `fail_timeout` is skipped for `fail_timeout` (0: never skipped).
    pub max_fails: u32,
    pub fail_timeout: Duration,
    /// `Some` for `https://` upstreams.
    pub tls: Option<UpstreamTls>,
}

pub struct UpstreamTls {
    /// SNI and the certificate name; `None`: no SNI, the certificate must cover the target's
    /// IP address.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// `None`: the system roots.
    pub ca: Option<Vec<CertificateDer<'static>>>,
    /// Built from the above at load; it also keeps this upstream's resumable sessions.
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Https,
    Both,
}

impl Protocol {
    /// Whether a request arriving over TLS (`https`) or not may use this service.
    pub fn allows(self, https: bool) -> bool {
        match self {
            Protocol::Both => true,
            Protocol::Http => !https,
            Protocol::Https => https,
        }
    }
}

pub struct Service {
    pub name: String,
    pub description: String,
    pub hosts: Vec<HostPattern>,
    pub protocol: Protocol,
    pub apis: Vec<Api>,
    pub oauth2: Option<OAuth2>,
    /// The usage plans naming this service (indexes into `Config::usage_plans`): when there
    /// are any, key-pair callers pass only through a plan.
    pub plans: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrontendType {
    Http,
    Ws,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    KeyPair,
    OAuth2,
}

pub struct Api {
    pub name: String,
    pub description: String,
    pub frontend_type: FrontendType,
    /// The `path` as configured, for docs and messages.
    pub path_source: String,
    pub path: PathPattern,
    pub methods: MethodSet,
    pub auth: Auth,
    pub cors: bool,
    pub params: Vec<Param>,
    pub backend: Backend,
    pub response: Response,
    /// The API's `ip_control`, else its service's (shared by the service's APIs); `None`:
    /// every client may call.
    pub ip_control: Option<std::sync::Arc<IpControl>>,
    /// The limits that count this API's requests, the service's first (indexes into
    /// `Config::limits`).
    pub limits: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Header,
    Query,
    Path,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    String,
    Int,
    Long,
    Float,
    Double,
    Boolean,
}

impl DataType {
    /// Whether a value (decoded, as sent, or as configured for a default) is of this type:
    /// - `int` / `long`: `-?[0-9]+` within i32 / i64 (leading zeros allowed; no `+`).
    /// - `float` / `double`: `-?DIGITS[.DIGITS][e[+-]DIGITS]` (`E` too) whose value is finite
    ///   as f32 / f64. No `inf`, `NaN`, hex, leading `+`, `.5`, `5.`.
    /// - `boolean`: exactly `true` or `false`.
    /// - `string`: anything.
    pub fn accepts(self, v: &str) -> bool {
        let b = v.as_bytes();
        match self {
            DataType::String => true,
            DataType::Int => integer_syntax(b) && v.parse::<i32>().is_ok(),
            DataType::Long => integer_syntax(b) && v.parse::<i64>().is_ok(),
            DataType::Float => decimal_syntax(b) && v.parse::<f32>().is_ok_and(f32::is_finite),
            DataType::Double => decimal_syntax(b) && v.parse::<f64>().is_ok_and(f64::is_finite),
            DataType::Boolean => v == "true" || v == "false",
        }
    }
}

/// `-?[0-9]+`: no `+`, no spaces, no `_`.
fn integer_syntax(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

/// `-?DIGITS[.DIGITS][(e|E)[+|-]DIGITS]`: a plain decimal number, as JSON writes one (leading
/// zeros allowed). No `inf`, `NaN`, hex, leading `+`, `.5` or `5.`.
fn decimal_syntax(v: &[u8]) -> bool {
    fn digits(v: &[u8]) -> usize {
        v.iter().take_while(|b| b.is_ascii_digit()).count()
    }
    let mut i = usize::from(v.first() == Some(&b'-'));
    let n = digits(&v[i..]);
    if n == 0 {
        return false;
    }
    i += n;
    if v.get(i) == Some(&b'.') {
        let n = digits(&v[i + 1..]);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(v.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(v.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(&v[i..]);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == v.len()
}

pub struct Param {
    pub name: String,
    pub location: Location,
    pub data_type: DataType,
    pub required: bool,
    pub default: Option<String>,
    pub sample: Option<String>,
    pub description: String,
    pub backend_name: Option<String>,
    pub backend_location: Option<Location>,
}

pub enum BackendTarget {
    /// Through the upstream at this index of [`Config::upstreams`].
    Vpc { upstream: usize },
    Mock {
        status: u16,
        body: String,
        content_type: String,
    },
}

pub struct Backend {
    pub target: BackendTarget,
    /// Required for VPC backends; optional for mocks.
    pub path: Option<BackendPath>,
    /// `None`: the request's method.
    pub method: Option<MethodSet>,
    pub timeout: Duration,
    pub constants: Vec<Constant>,
}

pub struct Constant {
    pub name: String,
    pub location: Location,
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseType {
    Json,
    Html,
    Text,
    Xml,
    Binary,
}

pub struct Response {
    pub kind: ResponseType,
    pub success_sample: Option<String>,
    pub failure_sample: Option<String>,
    pub error_codes: Vec<ErrorCode>,
}

pub struct ErrorCode {
    pub code: i64,
    pub message: String,
    pub description: String,
}

pub struct KeyPair {
    pub secret_id: String,
    pub secret_key: String,
    /// `secret_key` prepared for HMAC.
    pub hmac: crate::auth::hmac::SecretKey,
    /// Indexes into [`Config::services`].
    pub services: Vec<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenLocation {
    Header,
    Cookie,
    Query,
}

pub struct OAuth2 {
    /// The JWK, checked for its key type and members.
    pub public_key: serde_json::Map<String, serde_json::Value>,
    /// The JWK compiled for verification.
    pub key: crate::auth::jwt::JwtKey,
    pub token_location: TokenLocation,
    pub token_name: String,
}

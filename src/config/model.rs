//! The running configuration: typed, validated, ready for the data path.
//!
//! Built from [`super::file`] once per load by [`super::build`]. Durations are `Duration`s,
//! addresses `SocketAddr`s, paths compiled [`PathPattern`]s, references between sections
//! resolved to indexes, and the [`RouteTable`] compiled. Nothing here is re-parsed later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use crate::http::limits::Limits;
use crate::router::{BackendPath, HostPattern, MethodSet, PathPattern, RouteTable};

pub struct Config {
    /// The file this was loaded from.
    pub file: PathBuf,
    pub server: Server,
    pub certificates: Vec<Certificate>,
    pub upstreams: Vec<Upstream>,
    pub services: Vec<Service>,
    pub key_pairs: Vec<KeyPair>,
    pub routes: RouteTable,
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
    /// SIGTERM: how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub access_log: AccessLog,
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
    /// `Some` for `https://` upstreams.
    pub tls: Option<UpstreamTls>,
}

pub struct UpstreamTls {
    pub server_name: String,
    /// `None`: the system roots.
    pub ca: Option<Vec<CertificateDer<'static>>>,
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
    /// Whether a value (as sent, or as configured for a default) is of this type.
    pub fn accepts(self, v: &str) -> bool {
        match self {
            DataType::String => true,
            DataType::Int => v.parse::<i32>().is_ok(),
            DataType::Long => v.parse::<i64>().is_ok(),
            DataType::Float => v.parse::<f32>().is_ok_and(f32::is_finite),
            DataType::Double => v.parse::<f64>().is_ok_and(f64::is_finite),
            DataType::Boolean => v == "true" || v == "false",
        }
    }
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
    pub token_location: TokenLocation,
    pub token_name: String,
}

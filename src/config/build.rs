//! File config → running config, in one pass that collects every error.
//!
//! Order matters only for references: upstreams are built before services (backends name
//! upstreams), services before key pairs (key pairs name services), and the route table last
//! (its conflicts name APIs). Errors are `(key path, message)` pairs; [`super::load_str`]
//! adds file and line.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::build_service::build_services;
use super::build_traffic::{build_plans, build_traffic};
use super::file::*;
use super::model::*;
use super::{MAX_KEY_FILE_BYTES, read_limited};
use crate::router::{ApiRoute, Conflict, HostPattern, RouteTable, ServiceRoutes};

pub const DEFAULT_LISTEN_HTTP: &str = "0.0.0.0:8080";
pub const DEFAULT_LISTEN_HTTPS: &str = "0.0.0.0:8443";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
pub const DEFAULT_MAX_HEADER_BYTES: u64 = 32 * 1024;
pub const DEFAULT_MAX_HEADERS: u64 = 100;
pub const DEFAULT_MAX_URI_BYTES: u64 = 8 * 1024;
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
pub const DEFAULT_HEADER_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_CLIENT_IDLE_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
pub const DEFAULT_WS_IDLE_TIMEOUT_MS: u64 = 300_000;
pub const DEFAULT_MAX_CONNECTIONS: u64 = 65_536;
pub const DEFAULT_REQUEST_BUFFER_BYTES: u64 = 64 * 1024;
/// The largest `request_buffer_bytes` (a buffered body is held in memory per request).
pub const MAX_REQUEST_BUFFER_BYTES: u64 = 16 * 1024 * 1024;
pub const DEFAULT_CLIENT_BODY_TIMEOUT_MS: u64 = 10_000;
/// Bytes per second: a 56 kbit/s client (7,000 bytes/s) passes with room to spare.
pub const DEFAULT_CLIENT_BODY_MIN_RATE: u64 = 1_000;
pub const DEFAULT_CLIENT_BODY_RATE_WINDOW_MS: u64 = 10_000;
pub const DEFAULT_KEEPALIVE: u64 = 64;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Passive health, as nginx: one failed connect takes a target out for 10 s.
pub const DEFAULT_MAX_FAILS: u64 = 1;
pub const DEFAULT_FAIL_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Upper bounds that catch typos (an extra zero) rather than express real limits.
pub const MAX_WORKERS: u64 = 1024;
pub const MAX_HEADER_BYTES_LIMIT: u64 = 1024 * 1024;
/// `max_headers` may not exceed what the head parser can hold.
pub const MAX_HEADERS_LIMIT: u64 = crate::http::head::MAX_HEADERS_CAP as u64;
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
pub const SECRET_ID_CHARS: std::ops::RangeInclusive<usize> = 5..=50;
pub const SECRET_KEY_CHARS: std::ops::RangeInclusive<usize> = 10..=50;

/// Collected errors, and small helpers that turn optional file values into typed ones.
#[derive(Default)]
pub(super) struct Ctx {
    pub errors: Vec<(String, String)>,
}

impl Ctx {
    pub fn err(&mut self, key: impl Into<String>, msg: impl Into<String>) {
        self.errors.push((key.into(), msg.into()));
    }

    /// A key SPEC gives no default for.
    pub fn require<'v, T: ?Sized>(&mut self, key: &str, v: Option<&'v T>) -> Option<&'v T> {
        if v.is_none() {
            self.err(key, "is required");
        }
        v
    }

    /// A string naming one of `choices`; `default` when absent.
    pub fn choice<T: Copy>(
        &mut self,
        key: &str,
        v: Option<&str>,
        default: T,
        choices: &[(&str, T)],
    ) -> T {
        let Some(v) = v else { return default };
        if let Some((_, t)) = choices.iter().find(|(name, _)| *name == v) {
            return *t;
        }
        let names: Vec<_> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        self.err(key, format!("\"{v}\" is not one of {}", names.join(" | ")));
        default
    }

    /// A number in `min..=max`; `default` when absent.
    pub fn number(&mut self, key: &str, v: Option<u64>, default: u64, min: u64, max: u64) -> u64 {
        let n = v.unwrap_or(default);
        if n < min || n > max {
            self.err(key, format!("{n} is out of range {min}..={max}"));
            return default;
        }
        n
    }

    /// A `*_ms` key: a positive duration.
    pub fn millis(&mut self, key: &str, v: Option<u64>, default: u64) -> Duration {
        Duration::from_millis(self.number(key, v, default, 1, MAX_TIMEOUT_MS))
    }

    /// A non-empty string.
    pub fn name<'v>(&mut self, key: &str, v: Option<&'v String>) -> Option<&'v str> {
        match self.require(key, v) {
            Some(s) if s.trim().is_empty() => {
                self.err(key, "must not be empty");
                None
            }
            other => other.map(String::as_str),
        }
    }
}

pub(super) fn key(parent: &str, field: &str) -> String {
    format!("{parent}.{field}")
}

/// Builds the running config, or returns every `(key, message)` error.
pub fn build(file: FileConfig, path: &Path) -> Result<Config, Vec<(String, String)>> {
    let mut cx = Ctx::default();
    let certificates = build_certificates(&mut cx, &file.certificates);
    let (tls, warnings) = build_tls(&mut cx, &certificates);
    let server = build_server(&mut cx, &file.server, !file.certificates.is_empty());
    let upstreams = build_upstreams(&mut cx, &file.upstreams);
    let upstream_index: HashMap<&str, usize> = upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();
    let mut limits = Vec::new();
    let mut services = build_services(&mut cx, &file.services, &upstream_index, &mut limits);
    check_reachability(&mut cx, &server, &certificates, &services);
    let key_pairs = build_key_pairs(&mut cx, &file.key_pairs, &services);
    let usage_plans = build_plans(&mut cx, &file.usage_plans, &mut services, &key_pairs);
    let traffic = build_traffic(&mut cx, file.traffic.as_ref());
    let routes = build_routes(&mut cx, &services);
    match routes {
        Some(routes) if cx.errors.is_empty() => Ok(Config {
            file: path.to_path_buf(),
            server,
            certificates,
            tls,
            warnings,
            upstreams,
            services,
            key_pairs,
            routes,
            usage_plans,
            limits,
            traffic,
        }),
        _ => Err(cx.errors),
    }
}

fn socket_addrs(cx: &mut Ctx, key_name: &str, v: &[String]) -> Vec<SocketAddr> {
    v.iter()
        .enumerate()
        .filter_map(|(i, a)| match a.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                cx.err(
                    format!("{key_name}[{i}]"),
                    format!("\"{a}\" is not an address like \"0.0.0.0:8080\""),
                );
                None
            }
        })
        .collect()
}

fn build_server(cx: &mut Ctx, s: &FileServer, have_certificates: bool) -> Server {
    let defaults = |d: &str| vec![d.to_string()];
    let listen_http = socket_addrs(
        cx,
        "server.listen_http",
        s.listen_http
            .as_ref()
            .unwrap_or(&defaults(DEFAULT_LISTEN_HTTP)),
    );
    // HTTPS listens by default only when there is a certificate to serve.
    let https_default = if have_certificates {
        defaults(DEFAULT_LISTEN_HTTPS)
    } else {
        Vec::new()
    };
    let listen_https = socket_addrs(
        cx,
        "server.listen_https",
        s.listen_https.as_ref().unwrap_or(&https_default),
    );
    if !listen_https.is_empty() && !have_certificates {
        cx.err(
            "server.listen_https",
            "HTTPS listeners need at least one [[certificates]] entry",
        );
    }
    let admin_listen = match s.admin_listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN) {
        "off" | "" => None,
        a => match a.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                cx.err(
                    "server.admin_listen",
                    format!("\"{a}\" is not an address like \"127.0.0.1:9090\" (or \"off\")"),
                );
                None
            }
        },
    };
    let mut seen: HashMap<SocketAddr, &str> = HashMap::new();
    let all = [
        ("listen_http", &listen_http),
        ("listen_https", &listen_https),
    ];
    for (name, list) in all {
        for (i, a) in list.iter().enumerate() {
            // Port 0: each listener gets its own ephemeral port.
            if a.port() == 0 {
                continue;
            }
            if let Some(other) = seen.insert(*a, name) {
                cx.err(
                    format!("server.{name}[{i}]"),
                    format!("{a} is also in server.{other}"),
                );
            }
        }
    }
    if let Some(a) = admin_listen.filter(|a| seen.contains_key(a)) {
        cx.err(
            "server.admin_listen",
            format!("{a} is also a data listener"),
        );
    }
    let max_header_bytes = cx.number(
        "server.max_header_bytes",
        s.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES,
        1024,
        MAX_HEADER_BYTES_LIMIT,
    );
    let max_uri_bytes = cx.number(
        "server.max_uri_bytes",
        s.max_uri_bytes,
        DEFAULT_MAX_URI_BYTES,
        16,
        MAX_HEADER_BYTES_LIMIT,
    );
    if max_uri_bytes > max_header_bytes {
        cx.err("server.max_uri_bytes", format!("{max_uri_bytes} exceeds server.max_header_bytes ({max_header_bytes}), which bounds the whole head"));
    }
    let limits = Limits {
        max_header_bytes: max_header_bytes as usize,
        max_headers: cx.number(
            "server.max_headers",
            s.max_headers,
            DEFAULT_MAX_HEADERS,
            1,
            MAX_HEADERS_LIMIT,
        ) as usize,
        max_uri_bytes: max_uri_bytes as usize,
        max_body_bytes: cx.number(
            "server.max_body_bytes",
            s.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
            0,
            u64::MAX,
        ),
    };
    let access_log = match s.access_log.as_deref().unwrap_or("stdout") {
        "stdout" => AccessLog::Stdout,
        "off" => AccessLog::Off,
        "" => {
            cx.err(
                "server.access_log",
                "must be \"stdout\", \"off\" or a file path",
            );
            AccessLog::Off
        }
        p => {
            let path = PathBuf::from(p);
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if !dir.is_dir() {
                cx.err(
                    "server.access_log",
                    format!("directory {} does not exist", dir.display()),
                );
            }
            AccessLog::File(path)
        }
    };
    let pid_file = s.pid_file.as_deref().map(|p| {
        let path = PathBuf::from(p);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if p.is_empty() || !dir.is_dir() {
            cx.err(
                "server.pid_file",
                format!("directory {} does not exist", dir.display()),
            );
        }
        path
    });
    let log_json = match s.log_format.as_deref().unwrap_or("text") {
        "text" => false,
        "json" => true,
        other => {
            cx.err(
                "server.log_format",
                format!("\"{other}\" is not \"text\" or \"json\""),
            );
            false
        }
    };
    let path_normalization = match s.path_normalization.as_deref().unwrap_or("safe") {
        "safe" => PathNormalization::Safe,
        "none" => PathNormalization::None,
        other => {
            cx.err(
                "server.path_normalization",
                format!("\"{other}\" is not \"safe\" or \"none\""),
            );
            PathNormalization::Safe
        }
    };
    Server {
        log_json,
        pid_file,
        path_normalization,
        proxy_protocol: s.proxy_protocol.unwrap_or(false),
        h2c: s.h2c.unwrap_or(false),
        h2_max_concurrent_streams: cx.number(
            "server.h2_max_concurrent_streams",
            s.h2_max_concurrent_streams,
            128,
            1,
            10_000,
        ) as u32,
        request_buffer_bytes: cx.number(
            "server.request_buffer_bytes",
            s.request_buffer_bytes,
            DEFAULT_REQUEST_BUFFER_BYTES,
            0,
            MAX_REQUEST_BUFFER_BYTES,
        ) as usize,
        client_body_timeout: cx.millis(
            "server.client_body_timeout_ms",
            s.client_body_timeout_ms,
            DEFAULT_CLIENT_BODY_TIMEOUT_MS,
        ),
        client_body_min_rate: cx.number(
            "server.client_body_min_rate",
            s.client_body_min_rate,
            DEFAULT_CLIENT_BODY_MIN_RATE,
            0,
            u32::MAX as u64,
        ),
        client_body_rate_window: cx.millis(
            "server.client_body_rate_window_ms",
            s.client_body_rate_window_ms,
            DEFAULT_CLIENT_BODY_RATE_WINDOW_MS,
        ),
        listen_http,
        listen_https,
        admin_listen,
        workers: cx.number("server.workers", s.workers, 0, 0, MAX_WORKERS) as usize,
        limits,
        header_timeout: cx.millis(
            "server.header_timeout_ms",
            s.header_timeout_ms,
            DEFAULT_HEADER_TIMEOUT_MS,
        ),
        client_idle_timeout: cx.millis(
            "server.client_idle_timeout_ms",
            s.client_idle_timeout_ms,
            DEFAULT_CLIENT_IDLE_TIMEOUT_MS,
        ),
        ws_idle_timeout: cx.millis(
            "server.ws_idle_timeout_ms",
            s.ws_idle_timeout_ms,
            DEFAULT_WS_IDLE_TIMEOUT_MS,
        ),
        shutdown_grace: cx.millis(
            "server.shutdown_grace_ms",
            s.shutdown_grace_ms,
            DEFAULT_SHUTDOWN_GRACE_MS,
        ),
        max_connections: cx.number(
            "server.max_connections",
            s.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            1,
            u32::MAX as u64,
        ) as usize,
        access_log,
    }
}

pub(super) fn host_patterns(cx: &mut Ctx, key_name: &str, hosts: &[String]) -> Vec<HostPattern> {
    let mut out: Vec<HostPattern> = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        match HostPattern::parse(h) {
            Ok(p) if out.contains(&p) => cx.err(
                format!("{key_name}[{i}]"),
                format!("\"{h}\" is listed twice"),
            ),
            Ok(p) => out.push(p),
            Err(e) => cx.err(format!("{key_name}[{i}]"), e),
        }
    }
    out
}

pub(super) fn read_certs(cx: &mut Ctx, key_name: &str, file: &str) -> Vec<CertificateDer<'static>> {
    let certs = read_limited(Path::new(file), MAX_KEY_FILE_BYTES).and_then(|pem| {
        CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    });
    match certs {
        Ok(c) if c.is_empty() => {
            cx.err(key_name, format!("{file} holds no PEM certificate"));
            c
        }
        Ok(c) => c,
        Err(e) => {
            cx.err(
                key_name,
                format!("cannot read certificates from {file}: {e}"),
            );
            Vec::new()
        }
    }
}

fn build_certificates(cx: &mut Ctx, certs: &[FileCertificate]) -> Vec<Certificate> {
    let mut out = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let k = format!("certificates[{i}]");
        let hosts = match cx.require(&key(&k, "hosts"), c.hosts.as_ref()) {
            Some(h) if h.is_empty() => {
                cx.err(key(&k, "hosts"), "needs at least one host name");
                Vec::new()
            }
            Some(h) => host_patterns(cx, &key(&k, "hosts"), h),
            None => Vec::new(),
        };
        let chain = cx
            .name(&key(&k, "cert"), c.cert.as_ref())
            .map(|f| read_certs(cx, &key(&k, "cert"), f));
        let private = cx.name(&key(&k, "key"), c.key.as_ref()).and_then(|f| {
            match read_limited(Path::new(f), MAX_KEY_FILE_BYTES)
                .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|e| e.to_string()))
            {
                Ok(pk) => Some(pk),
                Err(e) => {
                    cx.err(
                        key(&k, "key"),
                        format!("cannot read a PEM private key from {f}: {e}"),
                    );
                    None
                }
            }
        });
        if let (Some(chain), Some(key_der), Some(cert_file), Some(key_file)) =
            (chain, private, &c.cert, &c.key)
        {
            out.push(Certificate {
                hosts,
                cert_file: cert_file.into(),
                key_file: key_file.into(),
                chain,
                key: key_der,
            });
        }
    }
    out
}

/// Checks the certificates (key matches, chain parses, not expired) and builds the TLS
/// server configuration once for every worker.
fn build_tls(
    cx: &mut Ctx,
    certs: &[Certificate],
) -> (Option<std::sync::Arc<rustls::ServerConfig>>, Vec<String>) {
    if certs.is_empty() {
        return (None, Vec::new());
    }
    let checked = crate::tls::check_certificates(certs, std::time::SystemTime::now());
    let failed = !checked.errors.is_empty();
    for (i, field, msg) in checked.errors {
        cx.err(format!("certificates[{i}].{field}"), msg);
    }
    if failed {
        return (None, checked.warnings);
    }
    match crate::tls::server_config(certs, &checked.keys) {
        Ok(c) => (Some(c), checked.warnings),
        Err(e) => {
            cx.err("certificates", e);
            (None, checked.warnings)
        }
    }
}

/// `http(s)://ip[:port][/]`.
fn parse_upstream_url(url: &str) -> Result<(Scheme, SocketAddr, IpAddr), String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err(format!("\"{url}\" must start with http:// or https://"));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "\"{url}\" must be just scheme://vip:port (the backend path goes in backend.path)"
        ));
    }
    let default_port = if scheme == Scheme::Http { 80 } else { 443 };
    let addr = vip_addr(authority, Some(default_port)).map_err(|e| match e {
        VipError::NotAnIp => format!(
            "\"{url}\" must name the CLB by IP address (vip:port); host names are not resolved"
        ),
        e => format!("\"{url}\": {e}"),
    })?;
    Ok((scheme, addr, addr.ip()))
}

/// Why a CLB address (`upstreams.url`'s authority, a `targets` entry) is refused.
#[derive(Debug, PartialEq, Eq)]
enum VipError {
    /// The host part is not an IP address (a host name, or garbage).
    NotAnIp,
    /// An unbracketed IPv6 address followed by a port.
    Ipv6WithoutBrackets,
    /// No port where one is required.
    NoPort,
    /// `ip:` with nothing after the colon.
    EmptyPort,
    /// Not all ASCII digits (the text as written).
    PortNotANumber(String),
    /// 0, or above 65535 (the digits as written).
    PortOutOfRange(String),
}

impl std::fmt::Display for VipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VipError::NotAnIp => {
                f.write_str("the host must be an IP address (host names are not resolved)")
            }
            VipError::Ipv6WithoutBrackets => {
                f.write_str("an IPv6 address with a port must be in brackets, as [::1]:80")
            }
            VipError::NoPort => f.write_str("the port is missing"),
            VipError::EmptyPort => f.write_str("the port after `:` is empty"),
            VipError::PortNotANumber(p) => write!(f, "port \"{p}\" is not a number"),
            VipError::PortOutOfRange(p) => write!(f, "port {p} is out of range (1-65535)"),
        }
    }
}

/// A CLB address: `ip:port`, `[ipv6]:port`, or, where `default_port` is given, `ip`,
/// `[ipv6]` or a bare IPv6 address. Port 0 is refused (nothing can be reached there).
fn vip_addr(authority: &str, default_port: Option<u16>) -> Result<SocketAddr, VipError> {
    // Everything the standard parser takes, but port 0, as before.
    if let Ok(a) = authority.parse::<SocketAddr>()
        && a.port() != 0
    {
        return Ok(a);
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(VipError::NotAnIp)?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(after.strip_prefix(':').ok_or(VipError::NotAnIp)?),
            ),
        }
    } else if authority.parse::<IpAddr>().is_ok() {
        (authority, None)
    } else {
        match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err(if host.parse::<std::net::Ipv6Addr>().is_ok() {
                    VipError::Ipv6WithoutBrackets
                } else {
                    VipError::NotAnIp
                });
            }
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let ip = host.parse::<IpAddr>().map_err(|_| VipError::NotAnIp)?;
    let port = match port {
        None => default_port.ok_or(VipError::NoPort)?,
        Some("") => return Err(VipError::EmptyPort),
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(VipError::PortNotANumber(p.to_string()));
        }
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| VipError::PortOutOfRange(p.to_string()))?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `upstreams[i].targets`: each an `ip:port` (`[ipv6]:port`).
fn target_addrs(cx: &mut Ctx, key_name: &str, v: &[String]) -> Vec<SocketAddr> {
    v.iter()
        .enumerate()
        .filter_map(|(i, a)| match vip_addr(a, None) {
            Ok(addr) => Some(addr),
            Err(e) => {
                let why = match e {
                    VipError::NotAnIp | VipError::NoPort => {
                        format!("\"{a}\" is not an address like \"10.0.0.5:80\": {e}")
                    }
                    e => format!("\"{a}\": {e}"),
                };
                cx.err(format!("{key_name}[{i}]"), why);
                None
            }
        })
        .collect()
}

fn build_upstreams(cx: &mut Ctx, ups: &[FileUpstream]) -> Vec<Upstream> {
    // Read from the OS store once per load, when an upstream needs them.
    let mut system_roots = None;
    let mut out: Vec<Upstream> = Vec::new();
    for (i, u) in ups.iter().enumerate() {
        let k = format!("upstreams[{i}]");
        let name = cx.name(&key(&k, "name"), u.name.as_ref());
        if let Some(n) = name.filter(|n| out.iter().any(|o| o.name == *n)) {
            cx.err(
                key(&k, "name"),
                format!("upstream \"{n}\" is defined twice"),
            );
        }
        let parsed = cx.require(&key(&k, "url"), u.url.as_ref()).and_then(|url| {
            parse_upstream_url(url)
                .map_err(|e| cx.err(key(&k, "url"), e))
                .ok()
        });
        let targets = match &u.targets {
            Some(t) if t.is_empty() => {
                cx.err(
                    key(&k, "targets"),
                    "must list at least one address, or be left out",
                );
                Vec::new()
            }
            Some(t) => target_addrs(cx, &key(&k, "targets"), t),
            None => parsed.iter().map(|p| p.1).collect(),
        };
        let scheme = parsed.map_or(Scheme::Http, |p| p.0);
        if scheme == Scheme::Http {
            let set = [
                ("tls_server_name", u.tls_server_name.is_some()),
                ("ca", u.ca.is_some()),
            ];
            for (field, _) in set.into_iter().filter(|(_, set)| *set) {
                cx.err(key(&k, field), "only applies to https:// upstreams");
            }
        }
        let tls = if scheme == Scheme::Https {
            upstream_tls(cx, &k, u, &mut system_roots)
        } else {
            None
        };
        let upstream = Upstream {
            name: name.unwrap_or_default().to_string(),
            scheme,
            targets,
            keepalive: cx.number(
                &key(&k, "keepalive"),
                u.keepalive,
                DEFAULT_KEEPALIVE,
                0,
                65_536,
            ) as usize,
            connect_timeout: cx.millis(
                &key(&k, "connect_timeout_ms"),
                u.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
            ),
            idle_timeout: cx.millis(
                &key(&k, "idle_timeout_ms"),
                u.idle_timeout_ms,
                DEFAULT_UPSTREAM_IDLE_TIMEOUT_MS,
            ),
            max_fails: cx.number(
                &key(&k, "max_fails"),
                u.max_fails,
                DEFAULT_MAX_FAILS,
                0,
                1_000,
            ) as u32,
            fail_timeout: cx.millis(
                &key(&k, "fail_timeout_ms"),
                u.fail_timeout_ms,
                DEFAULT_FAIL_TIMEOUT_MS,
            ),
            tls,
        };
        out.push(upstream);
    }
    out
}

/// The TLS settings of an `https://` upstream at `k`: its name, trust roots and client
/// configuration. `None` after an error (recorded in `cx`).
fn upstream_tls(
    cx: &mut Ctx,
    k: &str,
    u: &FileUpstream,
    system_roots: &mut Option<Result<Vec<CertificateDer<'static>>, String>>,
) -> Option<UpstreamTls> {
    let server_name = match &u.tls_server_name {
        Some(n) => match ServerName::try_from(n.clone()) {
            Ok(name) => Some(name),
            Err(_) => {
                cx.err(
                    key(k, "tls_server_name"),
                    format!("\"{n}\" is not a DNS name or IP address"),
                );
                return None;
            }
        },
        None => None,
    };
    let (ca, roots) = match &u.ca {
        Some(f) => {
            let certs = read_certs(cx, &key(k, "ca"), f);
            if certs.is_empty() {
                return None;
            }
            (Some(certs.clone()), certs)
        }
        None => {
            let roots = system_roots.get_or_insert_with(crate::tls::client::system_roots);
            match roots {
                Ok(r) => (None, r.clone()),
                Err(e) => {
                    let e = e.clone();
                    cx.err(key(k, "ca"), e);
                    return None;
                }
            }
        }
    };
    match crate::tls::client::client_config(&roots) {
        Ok(client) => Some(UpstreamTls {
            server_name,
            ca,
            client,
        }),
        Err(e) => {
            cx.err(key(k, "ca"), e);
            None
        }
    }
}

fn build_key_pairs(cx: &mut Ctx, pairs: &[FileKeyPair], services: &[Service]) -> Vec<KeyPair> {
    let mut out: Vec<KeyPair> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let k = format!("key_pairs[{i}]");
        let id = cx
            .name(&key(&k, "secret_id"), p.secret_id.as_ref())
            .unwrap_or_default();
        let id_len = id.chars().count();
        if !id.is_empty() && !SECRET_ID_CHARS.contains(&id_len) {
            cx.err(
                key(&k, "secret_id"),
                format!("has {id_len} characters; it must have 5 to 50"),
            );
        }
        if id
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'"' || b == b',' || b == b'\\')
        {
            cx.err(
                key(&k, "secret_id"),
                "must be printable ASCII without quotes, commas or backslashes",
            );
        }
        if out.iter().any(|o| o.secret_id == id) {
            cx.err(key(&k, "secret_id"), format!("\"{id}\" is defined twice"));
        }
        let secret = match (&p.secret_key, &p.secret_key_env) {
            (Some(s), None) => Some((key(&k, "secret_key"), s.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(s) => Some((key(&k, "secret_key_env"), s)),
                Err(_) => {
                    cx.err(
                        key(&k, "secret_key_env"),
                        format!("environment variable {var} is not set"),
                    );
                    None
                }
            },
            (Some(_), Some(_)) => {
                cx.err(k.clone(), "give secret_key or secret_key_env, not both");
                None
            }
            (None, None) => {
                cx.err(key(&k, "secret_key"), "is required (or secret_key_env)");
                None
            }
        };
        if let Some((sk, s)) = &secret {
            let n = s.chars().count();
            if !SECRET_KEY_CHARS.contains(&n) {
                cx.err(
                    sk.clone(),
                    format!("the secret key has {n} characters; it must have 10 to 50"),
                );
            }
        }
        let mut granted = Vec::new();
        match cx.require(&key(&k, "services"), p.services.as_ref()) {
            Some(names) if names.is_empty() => {
                cx.err(key(&k, "services"), "must name at least one service")
            }
            Some(names) => {
                for (j, n) in names.iter().enumerate() {
                    match services.iter().position(|s| s.name == *n) {
                        Some(idx) => granted.push(idx),
                        None => cx.err(
                            format!("{k}.services[{j}]"),
                            format!("no service is named \"{n}\""),
                        ),
                    }
                }
            }
            None => {}
        }
        let secret_key = secret.map(|s| s.1).unwrap_or_default();
        out.push(KeyPair {
            secret_id: id.to_string(),
            hmac: crate::auth::hmac::SecretKey::new(secret_key.as_bytes()),
            secret_key,
            services: granted,
        });
    }
    out
}

/// A service that only one protocol may use must have a listener for it, and an
/// HTTPS-only service needs a certificate for each of its hosts (SNI is required).
fn check_reachability(cx: &mut Ctx, server: &Server, certs: &[Certificate], services: &[Service]) {
    for (i, s) in services.iter().enumerate() {
        let k = format!("services[{i}].protocol");
        if s.protocol == Protocol::Https && server.listen_https.is_empty() {
            cx.err(k.clone(), "is \"https\" but there is no HTTPS listener (server.listen_https and [[certificates]])");
        }
        if s.protocol == Protocol::Http && server.listen_http.is_empty() {
            cx.err(k.clone(), "is \"http\" but server.listen_http is empty");
        }
        if s.protocol == Protocol::Https {
            for (h, host) in s.hosts.iter().enumerate() {
                if !certs
                    .iter()
                    .any(|c| c.hosts.iter().any(|ch| covers(ch, host)))
                {
                    cx.err(format!("services[{i}].hosts[{h}]"), format!("no [[certificates]] entry covers \"{host}\", so HTTPS requests for it fail the handshake"));
                }
            }
        }
    }
}

/// Whether a certificate name covers every name a service host pattern stands for.
fn covers(cert: &HostPattern, host: &HostPattern) -> bool {
    match host {
        HostPattern::Exact(h) => cert.matches(h),
        HostPattern::Wildcard(_) => cert == host,
    }
}

fn build_routes(cx: &mut Ctx, services: &[Service]) -> Option<RouteTable> {
    let input: Vec<ServiceRoutes> = services
        .iter()
        .map(|s| ServiceRoutes {
            hosts: s.hosts.clone(),
            apis: s
                .apis
                .iter()
                .map(|a| ApiRoute {
                    pattern: a.path.clone(),
                    methods: a.methods,
                })
                .collect(),
        })
        .collect();
    match RouteTable::build(&input) {
        Ok(t) => Some(t),
        Err(conflicts) => {
            for c in conflicts {
                match c {
                    Conflict::Host { service, host, other } => cx.err(
                        format!("services[{service}].hosts[{host}]"),
                        format!("host \"{}\" already belongs to service \"{}\"", services[service].hosts[host], services[other].name),
                    ),
                    Conflict::Route { service, api, other_service, other_api } => cx.err(
                        format!("services[{service}].apis[{api}].path"),
                        format!(
                            "api \"{}\" has the same path and method as api \"{}\" of service \"{}\" in the same host group, so it could never be reached",
                            services[service].apis[api].name, services[other_service].apis[other_api].name, services[other_service].name
                        ),
                    ),
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_addresses() {
        use VipError::*;
        let ok = |s: &str, d: Option<u16>| vip_addr(s, d).map(|a| a.to_string());
        let cases: &[(&str, Option<u16>, Result<&str, VipError>)] = &[
            ("10.0.0.5:80", None, Ok("10.0.0.5:80")),
            ("10.0.0.5:65535", None, Ok("10.0.0.5:65535")),
            ("10.0.0.5:1", None, Ok("10.0.0.5:1")),
            ("10.0.0.5:080", None, Ok("10.0.0.5:80")),
            ("10.0.0.5", Some(80), Ok("10.0.0.5:80")),
            ("[::1]:8080", None, Ok("[::1]:8080")),
            ("[::1]", Some(443), Ok("[::1]:443")),
            ("::1", Some(443), Ok("[::1]:443")),
            ("10.0.0.5", None, Err(NoPort)),
            ("[::1]", None, Err(NoPort)),
            ("10.0.0.5:99999", None, Err(PortOutOfRange("99999".into()))),
            (
                "10.0.0.5:99999",
                Some(80),
                Err(PortOutOfRange("99999".into())),
            ),
            ("10.0.0.5:65536", None, Err(PortOutOfRange("65536".into()))),
            (
                "10.0.0.5:123456789012345678901",
                None,
                Err(PortOutOfRange("123456789012345678901".into())),
            ),
            ("10.0.0.5:0", Some(80), Err(PortOutOfRange("0".into()))),
            ("[::1]:0", None, Err(PortOutOfRange("0".into()))),
            ("10.0.0.5:", Some(80), Err(EmptyPort)),
            ("[::1]:", Some(80), Err(EmptyPort)),
            (
                "10.0.0.5:http",
                Some(80),
                Err(PortNotANumber("http".into())),
            ),
            ("10.0.0.5:+80", None, Err(PortNotANumber("+80".into()))),
            ("10.0.0.5:-1", None, Err(PortNotANumber("-1".into()))),
            ("10.0.0.5: 80", None, Err(PortNotANumber(" 80".into()))),
            ("clb.internal:80", Some(80), Err(NotAnIp)),
            ("clb.internal", Some(80), Err(NotAnIp)),
            (":80", Some(80), Err(NotAnIp)),
            ("", Some(80), Err(NotAnIp)),
            ("[clb]:80", None, Err(NotAnIp)),
            ("[::1]x", None, Err(NotAnIp)),
            ("[::1", None, Err(NotAnIp)),
            // An unbracketed IPv6 address then a port: told to use brackets. (`::1:80` is
            // itself an IPv6 address, so it is taken as one.)
            ("2001:db8::1:99999", None, Err(Ipv6WithoutBrackets)),
            ("fe80::1:2:http", Some(80), Err(Ipv6WithoutBrackets)),
            ("::1:80", Some(80), Ok("[::1:80]:80")),
            ("2001:db8::g:80", None, Err(NotAnIp)),
        ];
        for (s, default, want) in cases {
            let want = want
                .as_ref()
                .map(|a| a.to_string())
                .map_err(|e| e.to_string());
            let got = ok(s, *default).map_err(|e| e.to_string());
            assert_eq!(got, want, "{s:?} (default port {default:?})");
        }
    }
}

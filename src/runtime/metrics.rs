//! The gateway's counters (SPEC §7 `/metrics`), kept per worker and summed at scrape time.
//!
//! Each worker owns one [`WorkerMetrics`]: a mutex that only its own thread takes on the
//! request path (once per request, once per upstream connection event, once per TLS
//! handshake) and that the admin listener takes briefly when it renders a scrape, so no
//! worker ever waits for another. Requests are counted per (service, API) *slot*: a name
//! pair gets a slot the first time a configuration names it and keeps it across reloads, so
//! counters stay monotonic; [`Slots`] maps one configuration's indexes to slots, once per
//! snapshot. Bytes in and out are counted in `Cell`s by the client stream
//! ([`crate::proxy::metered`]) and folded in with each request.
//!
//! [`render`] writes the Prometheus text format (version 0.0.4).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::config::Config;
use crate::error::{AuthFailure, ErrorKind, GatewayError};

/// Upper bounds (seconds) of the request-duration histogram: 100 µs to 60 s.
pub const DURATION_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// The slot of requests that matched no API.
pub const UNMATCHED: usize = 0;

/// An upstream connection event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// A new connection (TCP, and TLS for `https://`) was made.
    Opened,
    /// A pooled connection was used.
    Reused,
    /// A connection could not be made (refused, timed out, TLS handshake failed).
    Failed,
    /// Passive health took a target down (`max_fails` within `fail_timeout_ms`).
    MarkedDown,
}

/// How a client TLS handshake ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsOutcome {
    Done,
    /// The ClientHello named no server.
    NoServerName,
    /// A name no certificate covers.
    UnknownName,
    /// Any other protocol failure (bad ClientHello, version, ALPN, ...).
    Protocol,
    /// Not finished within the header timeout.
    Timeout,
}

const TLS_FAILURE_REASONS: [(TlsOutcome, &str); 4] = [
    (TlsOutcome::NoServerName, "no_sni"),
    (TlsOutcome::UnknownName, "unknown_name"),
    (TlsOutcome::Protocol, "protocol"),
    (TlsOutcome::Timeout, "timeout"),
];

/// Why a connection got no valid PROXY protocol header (`server.proxy_protocol`), and was
/// closed without an answer (`ringway_proxy_protocol_failures_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyHeaderFailure {
    /// The first bytes are not a PROXY protocol header.
    Missing,
    /// A v1 line longer than 107 bytes.
    TooLong,
    /// A header that does not parse.
    Malformed,
    /// Not complete within the header timeout.
    Timeout,
    /// The client closed (or the connection failed) with part of a header sent.
    Closed,
}

const PROXY_HEADER_FAILURES: [(ProxyHeaderFailure, &str); 5] = [
    (ProxyHeaderFailure::Missing, "missing"),
    (ProxyHeaderFailure::TooLong, "too_long"),
    (ProxyHeaderFailure::Malformed, "malformed"),
    (ProxyHeaderFailure::Timeout, "timeout"),
    (ProxyHeaderFailure::Closed, "closed"),
];

impl ProxyHeaderFailure {
    /// The `reason` label.
    pub fn label(self) -> &'static str {
        PROXY_HEADER_FAILURES
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("", |(_, label)| label)
    }
}

/// Why a WebSocket tunnel ended (`ringway_websocket_tunnels_total{end}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelEndKind {
    /// Both sides closed.
    Closed,
    /// No byte either way for `ws_idle_timeout_ms`.
    Idle,
    /// Cut at the end of the shutdown grace period.
    Shutdown,
    /// Reading from or writing to the client failed.
    ClientError,
    /// Reading from or writing to the backend failed.
    UpstreamError,
}

const TUNNEL_ENDS: [(TunnelEndKind, &str); 5] = [
    (TunnelEndKind::Closed, "closed"),
    (TunnelEndKind::Idle, "idle"),
    (TunnelEndKind::Shutdown, "shutdown"),
    (TunnelEndKind::ClientError, "client_error"),
    (TunnelEndKind::UpstreamError, "upstream_error"),
];

impl TunnelEndKind {
    /// The `end` label (and, but for the errors, the access log's `tunnel_end`).
    pub fn label(self) -> &'static str {
        TUNNEL_ENDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("", |(_, label)| label)
    }
}

/// Why `accept` failed (`ringway_accept_errors_total{error}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptError {
    /// The process is out of descriptors (`EMFILE`).
    Emfile,
    /// The system is out of open files (`ENFILE`).
    Enfile,
    Other,
}

const ACCEPT_ERRORS: [(AcceptError, &str); 3] = [
    (AcceptError::Emfile, "emfile"),
    (AcceptError::Enfile, "enfile"),
    (AcceptError::Other, "other"),
];

/// Why the gateway sent an HTTP/2 connection GOAWAY (`ringway_http2_goaway_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H2Goaway {
    /// The worker drains (SIGTERM, hand-over): graceful, streams in flight finish.
    Drain,
    /// No stream open for `client_idle_timeout_ms`: graceful.
    Idle,
    /// The connection served its streams (requests) per connection: graceful.
    MaxRequests,
    /// `ENHANCE_YOUR_CALM`: ringway's rapid-reset rule, or one of the `h2` crate's flood
    /// limits.
    Abuse,
    /// Any other error code the `h2` crate closed the connection with for the client's
    /// protocol error (`PROTOCOL_ERROR`, `COMPRESSION_ERROR`, `FLOW_CONTROL_ERROR`, ...).
    ProtocolError,
}

const H2_GOAWAYS: [(H2Goaway, &str); 5] = [
    (H2Goaway::Drain, "drain"),
    (H2Goaway::Idle, "idle"),
    (H2Goaway::MaxRequests, "max_requests"),
    (H2Goaway::Abuse, "abuse"),
    (H2Goaway::ProtocolError, "protocol_error"),
];

/// Why a new client connection was refused (`ringway_connections_refused_total{reason}`):
/// past `max_connections`, or taken with the spare descriptor while the process (`EMFILE`)
/// or the system (`ENFILE`) was out of descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    MaxConnections,
    Emfile,
    Enfile,
}

const REFUSALS: [(Refusal, &str); 3] = [
    (Refusal::MaxConnections, "max_connections"),
    (Refusal::Emfile, "emfile"),
    (Refusal::Enfile, "enfile"),
];

/// Which traffic control refused a request (`ringway_ratelimit_rejected_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// IP control (403).
    Ip,
    /// A key-pair caller no usage plan binds (403).
    NoPlan,
    /// Over a usage plan's rate (429).
    PlanRate,
    /// Over a usage plan's quota (429).
    PlanQuota,
    /// Over a service's or an API's limit (429).
    Limit,
}

impl Rejection {
    /// The rejection an answered error stands for, if any; `policy`: the traffic policy
    /// that refused it.
    pub fn of(e: &GatewayError, policy: Option<crate::traffic::PolicyKind>) -> Option<Rejection> {
        use crate::traffic::PolicyKind;
        match (&e.kind, policy) {
            (ErrorKind::IpRefused(_), _) => Some(Rejection::Ip),
            (ErrorKind::NoUsagePlan, _) => Some(Rejection::NoPlan),
            (ErrorKind::QuotaExceeded, _) => Some(Rejection::PlanQuota),
            (ErrorKind::RateLimited, Some(PolicyKind::PlanRate)) => Some(Rejection::PlanRate),
            (ErrorKind::RateLimited, _) => Some(Rejection::Limit),
            _ => None,
        }
    }

    /// The `policy` and `reason` labels.
    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Rejection::Ip => ("ip_control", "ip"),
            Rejection::NoPlan => ("usage_plan", "no_plan"),
            Rejection::PlanRate => ("usage_plan", "rate"),
            Rejection::PlanQuota => ("usage_plan", "quota"),
            Rejection::Limit => ("limit", "rate"),
        }
    }
}

#[derive(Clone)]
struct ApiStats {
    service: Box<str>,
    api: Box<str>,
    /// (status, count), in order of first appearance.
    codes: Vec<(u16, u64)>,
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
    /// (why, count) of requests a traffic control refused.
    rejected: Vec<(Rejection, u64)>,
}

#[derive(Clone, Default)]
struct UpstreamStats {
    name: Box<str>,
    opened: u64,
    reused: u64,
    failed: u64,
    marked_down: u64,
    idle: u64,
    /// Targets down now (a gauge, with `idle`).
    down: u64,
}

#[derive(Default)]
struct Counters {
    apis: Vec<ApiStats>,
    /// service → API → slot (looked up by `&str`: a reload of 10,000 APIs allocates nothing
    /// for the names it already knows).
    api_slots: HashMap<Box<str>, HashMap<Box<str>, usize>>,
    upstreams: Vec<UpstreamStats>,
    upstream_slots: HashMap<Box<str>, usize>,
    bytes_in: u64,
    bytes_out: u64,
    /// Connections in the worker's idle set (a gauge, set by housekeeping).
    parked: u64,
    /// Connections that ended with part of a request head and no answer.
    heads_abandoned: u64,
    /// Requests answered by protocol: HTTP/1.x, HTTP/2.
    by_protocol: [u64; 2],
    /// HTTP/2 connections served, and those closed for abusing the protocol.
    h2_connections: u64,
    h2_abusive: u64,
    /// HTTP/2 GOAWAYs sent, by why.
    h2_goaways: [u64; H2_GOAWAYS.len()],
    tls_done: u64,
    tls_failed: [u64; TLS_FAILURE_REASONS.len()],
    proxy_failed: [u64; PROXY_HEADER_FAILURES.len()],
    auth: Vec<(AuthFailure, u64)>,
    /// WebSocket tunnels running (a gauge).
    tunnels_open: u64,
    tunnels_ended: [u64; TUNNEL_ENDS.len()],
    accept_errors: [u64; ACCEPT_ERRORS.len()],
    refused: [u64; REFUSALS.len()],
    /// Idle keep-alive connections closed to free a descriptor for a new client.
    evicted: u64,
}

/// One configuration's indexes mapped to a worker's slots.
#[derive(Default)]
pub struct Slots {
    /// `apis[service][api]`.
    apis: Vec<Vec<usize>>,
    upstreams: Vec<usize>,
}

impl Slots {
    pub fn api(&self, service: usize, api: usize) -> usize {
        self.apis[service][api]
    }

    pub fn upstream(&self, upstream: usize) -> usize {
        self.upstreams[upstream]
    }
}

/// One request, as the one exit records it.
pub struct RequestRecord {
    pub slot: usize,
    pub status: u16,
    pub elapsed: Duration,
    pub auth: Option<AuthFailure>,
    pub rejected: Option<Rejection>,
    /// Client bytes read and written since the last record.
    pub bytes: (u64, u64),
}

/// One worker's counters.
pub struct WorkerMetrics {
    counters: Mutex<Counters>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let mut c = Counters::default();
        c.api_slot("", "");
        WorkerMetrics {
            counters: Mutex::new(c),
        }
    }
}

impl Counters {
    fn api_slot(&mut self, service: &str, api: &str) -> usize {
        if let Some(&slot) = self.api_slots.get(service).and_then(|m| m.get(api)) {
            return slot;
        }
        let slot = self.apis.len();
        self.apis.push(ApiStats {
            service: service.into(),
            api: api.into(),
            codes: Vec::new(),
            buckets: [0; DURATION_BUCKETS.len() + 1],
            sum: 0.0,
            rejected: Vec::new(),
        });
        self.api_slots
            .entry(service.into())
            .or_default()
            .insert(api.into(), slot);
        slot
    }

    fn upstream_slot(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.upstream_slots.get(name) {
            return slot;
        }
        let slot = self.upstreams.len();
        self.upstreams.push(UpstreamStats {
            name: name.into(),
            ..UpstreamStats::default()
        });
        self.upstream_slots.insert(name.into(), slot);
        slot
    }
}

impl WorkerMetrics {
    fn lock(&self) -> MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slots of a configuration's APIs and upstreams (new names get new slots).
    pub fn slots(&self, cfg: &Config) -> Slots {
        let mut c = self.lock();
        Slots {
            apis: cfg
                .services
                .iter()
                .map(|s| {
                    s.apis
                        .iter()
                        .map(|a| c.api_slot(&s.name, &a.name))
                        .collect()
                })
                .collect(),
            upstreams: cfg
                .upstreams
                .iter()
                .map(|u| c.upstream_slot(&u.name))
                .collect(),
        }
    }

    pub fn request(&self, r: RequestRecord) {
        let mut c = self.lock();
        c.bytes_in += r.bytes.0;
        c.bytes_out += r.bytes.1;
        if let Some(why) = r.auth {
            match c.auth.iter_mut().find(|(w, _)| *w == why) {
                Some((_, n)) => *n += 1,
                None => c.auth.push((why, 1)),
            }
        }
        let Some(api) = c.apis.get_mut(r.slot) else {
            return;
        };
        match api.codes.iter_mut().find(|(code, _)| *code == r.status) {
            Some((_, n)) => *n += 1,
            None => api.codes.push((r.status, 1)),
        }
        let secs = r.elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        api.buckets[bucket] += 1;
        api.sum += secs;
        if let Some(why) = r.rejected {
            match api.rejected.iter_mut().find(|(w, _)| *w == why) {
                Some((_, n)) => *n += 1,
                None => api.rejected.push((why, 1)),
            }
        }
    }

    /// Client bytes moved outside any request (a WebSocket tunnel, an idle read).
    pub fn bytes(&self, bytes: (u64, u64)) {
        let mut c = self.lock();
        c.bytes_in += bytes.0;
        c.bytes_out += bytes.1;
    }

    /// How many connections sit in the worker's idle set, set by housekeeping.
    pub fn set_parked(&self, n: usize) {
        self.lock().parked = n as u64;
    }

    pub fn upstream(&self, slot: usize, event: UpstreamEvent) {
        let mut c = self.lock();
        if let Some(u) = c.upstreams.get_mut(slot) {
            match event {
                UpstreamEvent::Opened => u.opened += 1,
                UpstreamEvent::Reused => u.reused += 1,
                UpstreamEvent::Failed => u.failed += 1,
                UpstreamEvent::MarkedDown => u.marked_down += 1,
            }
        }
    }

    /// The gauges of the pools, per upstream slot: (slot, idle connections, targets down),
    /// set by housekeeping.
    pub fn set_pool_gauges(&self, pools: impl Iterator<Item = (usize, usize, usize)>) {
        let mut c = self.lock();
        for u in &mut c.upstreams {
            (u.idle, u.down) = (0, 0);
        }
        for (slot, idle, down) in pools {
            if let Some(u) = c.upstreams.get_mut(slot) {
                u.idle += idle as u64;
                u.down = u.down.max(down as u64);
            }
        }
    }

    /// A WebSocket tunnel started.
    pub fn tunnel_opened(&self) {
        self.lock().tunnels_open += 1;
    }

    /// A client connection ended with part of a request head sent and never finished.
    pub fn head_abandoned(&self) {
        self.lock().heads_abandoned += 1;
    }

    /// A request ended, over HTTP/2 (`h2`) or HTTP/1.x.
    pub fn protocol(&self, h2: bool) {
        self.lock().by_protocol[usize::from(h2)] += 1;
    }

    /// An HTTP/2 connection started.
    pub fn h2_connection(&self) {
        self.lock().h2_connections += 1;
    }

    /// An HTTP/2 connection was closed for abusing the protocol (GOAWAY).
    pub fn h2_abusive(&self) {
        self.lock().h2_abusive += 1;
    }

    /// The gateway sent a GOAWAY on an HTTP/2 connection.
    pub fn h2_goaway(&self, why: H2Goaway) {
        if let Some(i) = H2_GOAWAYS.iter().position(|(w, _)| *w == why) {
            self.lock().h2_goaways[i] += 1;
        }
    }

    /// A WebSocket tunnel ended.
    pub fn tunnel_ended(&self, end: TunnelEndKind) {
        let mut c = self.lock();
        c.tunnels_open = c.tunnels_open.saturating_sub(1);
        if let Some(i) = TUNNEL_ENDS.iter().position(|(k, _)| *k == end) {
            c.tunnels_ended[i] += 1;
        }
    }

    pub fn accept_error(&self, error: AcceptError) {
        if let Some(i) = ACCEPT_ERRORS.iter().position(|(e, _)| *e == error) {
            self.lock().accept_errors[i] += 1;
        }
    }

    /// Idle keep-alive connections closed to free descriptors for new clients.
    pub fn evicted(&self, n: usize) {
        self.lock().evicted += n as u64;
    }

    /// A new client connection refused (answered 503, or closed on an HTTPS listener).
    pub fn refused(&self, why: Refusal) {
        if let Some(i) = REFUSALS.iter().position(|(r, _)| *r == why) {
            self.lock().refused[i] += 1;
        }
    }

    pub fn tls(&self, outcome: TlsOutcome) {
        let mut c = self.lock();
        match TLS_FAILURE_REASONS.iter().position(|(o, _)| *o == outcome) {
            Some(i) => c.tls_failed[i] += 1,
            None => c.tls_done += 1,
        }
    }

    /// A connection closed for want of a valid PROXY protocol header.
    pub fn proxy_header_failed(&self, why: ProxyHeaderFailure) {
        if let Some(i) = PROXY_HEADER_FAILURES.iter().position(|(f, _)| *f == why) {
            self.lock().proxy_failed[i] += 1;
        }
    }
}

/// Process-wide values the workers do not count.
pub struct ProcessValues {
    pub version: &'static str,
    pub client_connections: usize,
    pub reloads_succeeded: u64,
    pub reloads_failed: u64,
    pub last_reload_unix: u64,
    /// Access-log lines dropped because the logger thread fell behind.
    pub access_log_dropped: u64,
    /// The traffic counter store answers (always, for the local store).
    pub traffic_store_up: bool,
    /// Calls to the traffic counter store that failed.
    pub traffic_store_failures: u64,
}

/// The Prometheus text exposition of every worker's counters, summed, and `process`.
pub fn render(workers: &[WorkerMetrics], process: &ProcessValues, out: &mut String) {
    let mut sum = Counters::default();
    for w in workers {
        let c = w.lock();
        for a in &c.apis {
            let slot = sum.api_slot(&a.service, &a.api);
            let s = &mut sum.apis[slot];
            for &(code, n) in &a.codes {
                match s.codes.iter_mut().find(|(c, _)| *c == code) {
                    Some((_, m)) => *m += n,
                    None => s.codes.push((code, n)),
                }
            }
            for (b, n) in s.buckets.iter_mut().zip(a.buckets) {
                *b += n;
            }
            s.sum += a.sum;
            for &(why, n) in &a.rejected {
                match s.rejected.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, m)) => *m += n,
                    None => s.rejected.push((why, n)),
                }
            }
        }
        for u in &c.upstreams {
            let slot = sum.upstream_slot(&u.name);
            let s = &mut sum.upstreams[slot];
            s.opened += u.opened;
            s.reused += u.reused;
            s.failed += u.failed;
            s.marked_down += u.marked_down;
            s.idle += u.idle;
            s.down = s.down.max(u.down);
        }
        sum.bytes_in += c.bytes_in;
        sum.bytes_out += c.bytes_out;
        sum.parked += c.parked;
        sum.heads_abandoned += c.heads_abandoned;
        for (s, n) in sum.by_protocol.iter_mut().zip(c.by_protocol) {
            *s += n;
        }
        sum.h2_connections += c.h2_connections;
        sum.h2_abusive += c.h2_abusive;
        for (s, n) in sum.h2_goaways.iter_mut().zip(c.h2_goaways) {
            *s += n;
        }
        sum.tunnels_open += c.tunnels_open;
        for (s, n) in sum.tunnels_ended.iter_mut().zip(c.tunnels_ended) {
            *s += n;
        }
        for (s, n) in sum.accept_errors.iter_mut().zip(c.accept_errors) {
            *s += n;
        }
        sum.evicted += c.evicted;
        for (s, n) in sum.refused.iter_mut().zip(c.refused) {
            *s += n;
        }
        sum.tls_done += c.tls_done;
        for (s, n) in sum.tls_failed.iter_mut().zip(c.tls_failed) {
            *s += n;
        }
        for (s, n) in sum.proxy_failed.iter_mut().zip(c.proxy_failed) {
            *s += n;
        }
        for &(why, n) in &c.auth {
            match sum.auth.iter_mut().find(|(w, _)| *w == why) {
                Some((_, m)) => *m += n,
                None => sum.auth.push((why, n)),
            }
        }
    }
    write_families(&sum, process, out);
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn write_families(c: &Counters, p: &ProcessValues, out: &mut String) {
    family(out, "ringway_build_info", "gauge", "The running version.");
    let _ = writeln!(
        out,
        "ringway_build_info{{version=\"{}\"}} 1",
        label(p.version)
    );

    family(
        out,
        "ringway_requests_total",
        "counter",
        "Requests answered, by service, API (empty: none matched) and status code.",
    );
    for a in &c.apis {
        let (s, api) = (label(&a.service), label(&a.api));
        for (code, n) in &a.codes {
            let _ = writeln!(
                out,
                "ringway_requests_total{{service=\"{s}\",api=\"{api}\",code=\"{code}\"}} {n}"
            );
        }
    }

    family(
        out,
        "ringway_request_duration_seconds",
        "histogram",
        "Time from a complete request head to the end of the answer, by service and API.",
    );
    for a in c.apis.iter().filter(|a| a.buckets.iter().any(|&n| n > 0)) {
        let (s, api) = (label(&a.service), label(&a.api));
        let mut cumulative = 0;
        for (i, n) in a.buckets.iter().enumerate() {
            cumulative += n;
            let le = DURATION_BUCKETS
                .get(i)
                .map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "ringway_request_duration_seconds_bucket{{service=\"{s}\",api=\"{api}\",le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "ringway_request_duration_seconds_sum{{service=\"{s}\",api=\"{api}\"}} {}\nringway_request_duration_seconds_count{{service=\"{s}\",api=\"{api}\"}} {cumulative}",
            a.sum
        );
    }

    type Get = fn(&UpstreamStats) -> u64;
    let upstream_families: [(&str, &str, &str, Get); 6] = [
        (
            "ringway_upstream_connections_opened_total",
            "counter",
            "New upstream connections (TCP, and TLS for https upstreams).",
            |u| u.opened,
        ),
        (
            "ringway_upstream_connections_reused_total",
            "counter",
            "Requests sent on a pooled upstream connection.",
            |u| u.reused,
        ),
        (
            "ringway_upstream_connections_failed_total",
            "counter",
            "Upstream connections that could not be made (refused, timed out, TLS failed).",
            |u| u.failed,
        ),
        (
            "ringway_upstream_idle_connections",
            "gauge",
            "Idle upstream connections in the keepalive pools.",
            |u| u.idle,
        ),
        (
            "ringway_upstream_targets_marked_down_total",
            "counter",
            "Times passive health took a target down (max_fails within fail_timeout_ms).",
            |u| u.marked_down,
        ),
        (
            "ringway_upstream_targets_down",
            "gauge",
            "Targets passive health has down now (the most any worker has).",
            |u| u.down,
        ),
    ];
    for (name, kind, help, get) in upstream_families {
        family(out, name, kind, help);
        for u in &c.upstreams {
            let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {}", label(&u.name), get(u));
        }
    }

    family(
        out,
        "ringway_client_bytes_received_total",
        "counter",
        "Bytes read from clients (after TLS decryption).",
    );
    let _ = writeln!(out, "ringway_client_bytes_received_total {}", c.bytes_in);
    family(
        out,
        "ringway_client_bytes_sent_total",
        "counter",
        "Bytes written to clients (before TLS encryption).",
    );
    let _ = writeln!(out, "ringway_client_bytes_sent_total {}", c.bytes_out);
    family(
        out,
        "ringway_client_connections",
        "gauge",
        "Open client connections.",
    );
    let _ = writeln!(out, "ringway_client_connections {}", p.client_connections);
    family(
        out,
        "ringway_client_connections_parked",
        "gauge",
        "Idle plain client connections waiting in the workers' idle sets (no task, no buffer; counted in ringway_client_connections too).",
    );
    let _ = writeln!(out, "ringway_client_connections_parked {}", c.parked);
    family(
        out,
        "ringway_client_heads_abandoned_total",
        "counter",
        "Client connections that ended with part of a request head and no answer (also logged, status 0).",
    );
    let _ = writeln!(
        out,
        "ringway_client_heads_abandoned_total {}",
        c.heads_abandoned
    );
    family(
        out,
        "ringway_requests_by_protocol_total",
        "counter",
        "Requests answered, by client protocol: HTTP/1.x (h1) or HTTP/2 (h2).",
    );
    for (name, n) in ["h1", "h2"].iter().zip(c.by_protocol) {
        let _ = writeln!(
            out,
            "ringway_requests_by_protocol_total{{protocol=\"{name}\"}} {n}"
        );
    }
    family(
        out,
        "ringway_http2_connections_total",
        "counter",
        "HTTP/2 client connections served (ALPN h2, or prior knowledge with h2c).",
    );
    let _ = writeln!(out, "ringway_http2_connections_total {}", c.h2_connections);
    family(
        out,
        "ringway_http2_abusive_connections_total",
        "counter",
        "HTTP/2 connections closed with GOAWAY for abusing the protocol (rapid resets, floods).",
    );
    let _ = writeln!(
        out,
        "ringway_http2_abusive_connections_total {}",
        c.h2_abusive
    );
    family(
        out,
        "ringway_http2_goaway_total",
        "counter",
        "HTTP/2 connection GOAWAYs the gateway sent, by reason: drain (shutdown, hand-over), idle, max_requests (streams per connection), abuse (ENHANCE_YOUR_CALM: floods, rapid resets), protocol_error (any other error code for the client's protocol error).",
    );
    for ((_, reason), n) in H2_GOAWAYS.iter().zip(c.h2_goaways) {
        let _ = writeln!(out, "ringway_http2_goaway_total{{reason=\"{reason}\"}} {n}");
    }
    family(
        out,
        "ringway_websocket_tunnels_open",
        "gauge",
        "WebSocket tunnels running.",
    );
    let _ = writeln!(out, "ringway_websocket_tunnels_open {}", c.tunnels_open);
    family(
        out,
        "ringway_websocket_tunnels_total",
        "counter",
        "WebSocket tunnels ended, by how: closed (both sides), idle, shutdown (cut after the grace period), client_error, upstream_error.",
    );
    for ((_, end), n) in TUNNEL_ENDS.iter().zip(c.tunnels_ended) {
        let _ = writeln!(out, "ringway_websocket_tunnels_total{{end=\"{end}\"}} {n}");
    }

    family(
        out,
        "ringway_connections_refused_total",
        "counter",
        "New client connections refused (503, or closed on an HTTPS listener): past max_connections, or while out of descriptors (emfile: the process, enfile: the system).",
    );
    for ((_, reason), n) in REFUSALS.iter().zip(c.refused) {
        let _ = writeln!(
            out,
            "ringway_connections_refused_total{{reason=\"{reason}\"}} {n}"
        );
    }
    family(
        out,
        "ringway_idle_connections_evicted_total",
        "counter",
        "Idle keep-alive client connections closed, the longest idle first, to give their descriptors to new clients while the process was out of descriptors.",
    );
    let _ = writeln!(out, "ringway_idle_connections_evicted_total {}", c.evicted);
    family(
        out,
        "ringway_accept_errors_total",
        "counter",
        "Failed accepts on the client listeners, by error: emfile (the process is out of descriptors), enfile (the system is), other.",
    );
    for ((_, error), n) in ACCEPT_ERRORS.iter().zip(c.accept_errors) {
        let _ = writeln!(out, "ringway_accept_errors_total{{error=\"{error}\"}} {n}");
    }

    family(
        out,
        "ringway_tls_handshakes_total",
        "counter",
        "Client TLS handshakes completed.",
    );
    let _ = writeln!(out, "ringway_tls_handshakes_total {}", c.tls_done);
    family(
        out,
        "ringway_tls_handshake_failures_total",
        "counter",
        "Client TLS handshakes failed, by reason.",
    );
    for ((_, reason), n) in TLS_FAILURE_REASONS.iter().zip(c.tls_failed) {
        let _ = writeln!(
            out,
            "ringway_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }

    family(
        out,
        "ringway_proxy_protocol_failures_total",
        "counter",
        "Client connections closed without an answer for want of a valid PROXY protocol header (server.proxy_protocol), by reason: missing, too_long (a v1 line over 107 bytes), malformed, timeout, closed (part of a header, then the end of the stream).",
    );
    for ((_, reason), n) in PROXY_HEADER_FAILURES.iter().zip(c.proxy_failed) {
        let _ = writeln!(
            out,
            "ringway_proxy_protocol_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }

    family(
        out,
        "ringway_auth_failures_total",
        "counter",
        "Requests refused by authentication (401), by scheme and reason.",
    );
    for (why, n) in &c.auth {
        let _ = writeln!(
            out,
            "ringway_auth_failures_total{{scheme=\"{}\",reason=\"{}\"}} {n}",
            why.scheme, why.reason
        );
    }

    family(
        out,
        "ringway_ratelimit_rejected_total",
        "counter",
        "Requests refused by traffic control, by service, API, policy (ip_control, usage_plan, limit) and reason (ip: 403; no_plan: 403; rate, quota: 429).",
    );
    for a in &c.apis {
        let (s, api) = (label(&a.service), label(&a.api));
        for &(why, n) in &a.rejected {
            let (policy, reason) = why.labels();
            let _ = writeln!(
                out,
                "ringway_ratelimit_rejected_total{{service=\"{s}\",api=\"{api}\",policy=\"{policy}\",reason=\"{reason}\"}} {n}"
            );
        }
    }

    family(
        out,
        "ringway_access_log_dropped_lines_total",
        "counter",
        "Access-log lines dropped because the log writer fell behind (a stalled sink).",
    );
    let _ = writeln!(
        out,
        "ringway_access_log_dropped_lines_total {}",
        p.access_log_dropped
    );

    family(
        out,
        "ringway_traffic_store_up",
        "gauge",
        "Whether the traffic counter store answers (1; always for the local store).",
    );
    let _ = writeln!(
        out,
        "ringway_traffic_store_up {}",
        u8::from(p.traffic_store_up)
    );
    family(
        out,
        "ringway_traffic_store_failures_total",
        "counter",
        "Calls to the traffic counter store (Redis) that failed: timeouts, connection errors, an open circuit breaker.",
    );
    let _ = writeln!(
        out,
        "ringway_traffic_store_failures_total {}",
        p.traffic_store_failures
    );

    family(
        out,
        "ringway_config_reloads_total",
        "counter",
        "Configuration reloads (SIGHUP), by result.",
    );
    let _ = writeln!(
        out,
        "ringway_config_reloads_total{{result=\"success\"}} {}\nringway_config_reloads_total{{result=\"failure\"}} {}",
        p.reloads_succeeded, p.reloads_failed
    );
    family(
        out,
        "ringway_config_last_reload_success_timestamp_seconds",
        "gauge",
        "Unix time of the last configuration that loaded (start or reload).",
    );
    let _ = writeln!(
        out,
        "ringway_config_last_reload_success_timestamp_seconds {}",
        p.last_reload_unix
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> ProcessValues {
        ProcessValues {
            version: "1.2.3",
            client_connections: 3,
            reloads_succeeded: 2,
            reloads_failed: 1,
            last_reload_unix: 1_700_000_000,
            access_log_dropped: 5,
            traffic_store_up: true,
            traffic_store_failures: 3,
        }
    }

    #[test]
    fn workers_are_summed_and_buckets_are_cumulative() {
        let (a, b) = (WorkerMetrics::default(), WorkerMetrics::default());
        // Slots are per worker: give the second worker a different order.
        let sa = a.lock().api_slot("s", "x");
        b.lock().api_slot("s", "other");
        let sb = b.lock().api_slot("s", "x");
        assert_ne!(sa, sb);
        let rec = |slot, status, us| RequestRecord {
            slot,
            status,
            elapsed: Duration::from_micros(us),
            auth: None,
            rejected: None,
            bytes: (10, 20),
        };
        a.request(rec(sa, 200, 50));
        a.request(rec(sa, 404, 700));
        b.request(rec(sb, 200, 2_000_000));
        b.request(RequestRecord {
            auth: Some(AuthFailure::TOKEN_MISSING),
            ..rec(UNMATCHED, 401, 10)
        });
        let ip = |w: &WorkerMetrics| RequestRecord {
            rejected: Some(Rejection::Ip),
            bytes: (0, 0),
            ..rec(w.lock().api_slot("s", "ip"), 403, 10)
        };
        a.request(ip(&a));
        b.request(ip(&b));
        let mut out = String::new();
        render(&[a, b], &process(), &mut out);
        for line in [
            "ringway_requests_total{service=\"s\",api=\"x\",code=\"200\"} 2",
            "ringway_requests_total{service=\"s\",api=\"x\",code=\"404\"} 1",
            "ringway_requests_total{service=\"\",api=\"\",code=\"401\"} 1",
            "ringway_request_duration_seconds_bucket{service=\"s\",api=\"x\",le=\"0.0001\"} 1",
            "ringway_request_duration_seconds_bucket{service=\"s\",api=\"x\",le=\"0.001\"} 2",
            "ringway_request_duration_seconds_bucket{service=\"s\",api=\"x\",le=\"2.5\"} 3",
            "ringway_request_duration_seconds_bucket{service=\"s\",api=\"x\",le=\"+Inf\"} 3",
            "ringway_request_duration_seconds_count{service=\"s\",api=\"x\"} 3",
            "ringway_client_bytes_received_total 40",
            "ringway_client_bytes_sent_total 80",
            "ringway_auth_failures_total{scheme=\"oauth2\",reason=\"token_missing\"} 1",
            "ringway_ratelimit_rejected_total{service=\"s\",api=\"ip\",policy=\"ip_control\",reason=\"ip\"} 2",
            "ringway_requests_total{service=\"s\",api=\"ip\",code=\"403\"} 2",
            "ringway_config_reloads_total{result=\"failure\"} 1",
            "ringway_build_info{version=\"1.2.3\"} 1",
            "ringway_access_log_dropped_lines_total 5",
            "ringway_traffic_store_up 1",
            "ringway_traffic_store_failures_total 3",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(
            !out.contains("api=\"other\",le="),
            "no histogram for an API without requests"
        );
    }

    #[test]
    fn refusals_and_accept_errors_are_summed_with_every_label() {
        let (a, b) = (WorkerMetrics::default(), WorkerMetrics::default());
        a.refused(Refusal::MaxConnections);
        b.refused(Refusal::MaxConnections);
        b.refused(Refusal::Emfile);
        a.accept_error(AcceptError::Emfile);
        b.accept_error(AcceptError::Emfile);
        b.accept_error(AcceptError::Other);
        let mut out = String::new();
        render(&[a, b], &process(), &mut out);
        for line in [
            "ringway_connections_refused_total{reason=\"max_connections\"} 2",
            "ringway_connections_refused_total{reason=\"emfile\"} 1",
            "ringway_connections_refused_total{reason=\"enfile\"} 0",
            "ringway_accept_errors_total{error=\"emfile\"} 2",
            "ringway_accept_errors_total{error=\"enfile\"} 0",
            "ringway_accept_errors_total{error=\"other\"} 1",
            "# TYPE ringway_connections_refused_total counter",
            "# TYPE ringway_accept_errors_total counter",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
    }

    #[test]
    fn proxy_header_failures_are_summed_with_every_reason() {
        let (a, b) = (WorkerMetrics::default(), WorkerMetrics::default());
        a.proxy_header_failed(ProxyHeaderFailure::Missing);
        b.proxy_header_failed(ProxyHeaderFailure::Missing);
        b.proxy_header_failed(ProxyHeaderFailure::Timeout);
        let mut out = String::new();
        render(&[a, b], &process(), &mut out);
        let cases = [
            (ProxyHeaderFailure::Missing, 2),
            (ProxyHeaderFailure::TooLong, 0),
            (ProxyHeaderFailure::Malformed, 0),
            (ProxyHeaderFailure::Timeout, 1),
            (ProxyHeaderFailure::Closed, 0),
        ];
        for (why, n) in cases {
            let line = format!(
                "ringway_proxy_protocol_failures_total{{reason=\"{}\"}} {n}",
                why.label()
            );
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(
            out.lines()
                .any(|l| l == "# TYPE ringway_proxy_protocol_failures_total counter")
        );
    }

    #[test]
    fn http2_goaways_are_summed_with_every_reason() {
        let (a, b) = (WorkerMetrics::default(), WorkerMetrics::default());
        a.h2_goaway(H2Goaway::Abuse);
        b.h2_goaway(H2Goaway::Abuse);
        b.h2_goaway(H2Goaway::Idle);
        a.h2_goaway(H2Goaway::ProtocolError);
        let mut out = String::new();
        render(&[a, b], &process(), &mut out);
        for line in [
            "# TYPE ringway_http2_goaway_total counter",
            "ringway_http2_goaway_total{reason=\"drain\"} 0",
            "ringway_http2_goaway_total{reason=\"idle\"} 1",
            "ringway_http2_goaway_total{reason=\"max_requests\"} 0",
            "ringway_http2_goaway_total{reason=\"abuse\"} 2",
            "ringway_http2_goaway_total{reason=\"protocol_error\"} 1",
            // The existing families keep their names.
            "ringway_http2_abusive_connections_total 0",
            "ringway_http2_connections_total 0",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

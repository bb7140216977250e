//! The per-core runtime state of one worker, below both the data path ([`crate::proxy`])
//! and the process ([`crate::server`]), so that dependencies run one way:
//! `server` → `proxy` → `runtime` → `gateway` / `config` / `http`.
//!
//! - [`Shared`]: what all workers share — the configuration swap point, the stop flag, the
//!   process-wide connection count.
//! - [`Snapshot`]: a worker's view of one configuration (the configuration, its upstream
//!   pools). A request takes one snapshot when it starts and holds it to its end, so a reload
//!   can never mix two configurations inside one request.
//! - [`Worker`]: per-thread state — the current snapshot, request ids, the drain signal, the
//!   access log, and pools of reusable buffers lent to requests.
//! - [`pool`], [`access_log`], [`drain`]: the pieces a worker owns; [`upstream_stream`]:
//!   the plain-or-TLS upstream connection the pools hold.

pub mod access_log;
pub mod drain;
pub mod idle;
pub mod metrics;
pub mod pool;
pub mod proxy_failures;
pub mod summary;
pub mod upstream_stream;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::gateway::auth::AuthState;
use crate::gateway::params::ParamValues;
use crate::http::reply::RequestIds;
use crate::traffic::Counters;
use crate::traffic::fleet::{Fleet, StoreHealth};
use crate::traffic::local::Bound;
use crate::traffic::policy::StoreKind;
use crate::traffic::redis::Redis;
use crate::traffic::redis::url::RedisUrl;
use access_log::{Log, Logger};
use drain::Drain;
use metrics::{Slots, WorkerMetrics};
use pool::UpstreamPool;

/// Relay buffers (response heads and bodies, streamed request bodies): the size every
/// proxied request starts with.
pub const RELAY_BUFFER_BYTES: usize = 64 * 1024;
/// What a relay grows its buffer to for a body larger than [`RELAY_BUFFER_BYTES`]
/// (`proxy::body::relay`): a quarter of the reads and writes per byte.
pub const LARGE_RELAY_BUFFER_BYTES: usize = 256 * 1024;
/// Buffers of each kind kept for reuse per worker.
pub const MAX_POOLED_BUFFERS: usize = 256;
/// Of those, how many may be large relay buffers (the rest are dropped when returned).
pub const MAX_POOLED_LARGE_BUFFERS: usize = 16;
/// Head-sized output buffers (upstream request heads, client response heads): a request's
/// scratch starts at this size and goes back to it when it grew past the limit below.
pub const SMALL_BUFFER_BYTES: usize = 4096;
/// A request's output buffers past this size (a buffered body came with the head) are
/// not kept.
pub const MAX_SMALL_BUFFER_BYTES: usize = 64 * 1024;

/// How long into a drain an idle keep-alive connection may still send one last request
/// (answered with `Connection: close`) before it is closed.
pub const DRAIN_IDLE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Reload counts, for `/metrics`.
#[derive(Default)]
pub struct ReloadStats {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Unix time of the last configuration that loaded (the start counts).
    pub last_success_unix: AtomicU64,
}

impl ReloadStats {
    pub fn new_loaded() -> ReloadStats {
        let s = ReloadStats::default();
        s.last_success_unix.store(unix_now(), Ordering::Relaxed);
        s
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the workers share: the configuration swap point, the stop flag, the process-wide
/// connection count and the reload counts.
pub struct Shared {
    /// The configuration published last, with its traffic counters: bound once, here, so
    /// that every worker counts in the same ones.
    config: Mutex<(Arc<Config>, Arc<Bound>)>,
    generation: AtomicU64,
    /// A stop signal came: every worker closes its listeners (and says so in
    /// `unlistened`); `/healthz` says draining from here on.
    pub stopping: AtomicBool,
    /// How many workers have closed their listeners.
    pub unlistened: AtomicUsize,
    /// Every listener is closed: the workers drain. Only now are clients told to reconnect
    /// (`Connection: close`), so a reconnect never lands on a listener about to close.
    pub draining: AtomicBool,
    pub connections: AtomicUsize,
    pub reloads: ReloadStats,
    /// One per worker, by index: written by that worker, summed by the admin listener.
    pub metrics: Vec<WorkerMetrics>,
    /// The access log's writer thread.
    pub logger: Arc<Logger>,
    /// Traffic control's counters, shared by the workers and kept across reloads.
    pub traffic: crate::traffic::local::Registry,
    /// The Redis store's health, for `/metrics`.
    pub store: Arc<StoreHealth>,
}

impl Shared {
    pub fn new(config: Arc<Config>, workers: usize, logger: Arc<Logger>) -> Shared {
        let traffic = crate::traffic::local::Registry::default();
        let bound = traffic.bind(&config);
        Shared {
            config: Mutex::new((config, bound)),
            generation: AtomicU64::new(1),
            stopping: AtomicBool::new(false),
            unlistened: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            reloads: ReloadStats::new_loaded(),
            metrics: (0..workers).map(|_| WorkerMetrics::default()).collect(),
            logger,
            traffic,
            store: Default::default(),
        }
    }

    /// The configuration published last.
    pub fn config(&self) -> Arc<Config> {
        self.current().1
    }

    fn current(&self) -> (u64, Arc<Config>, Arc<Bound>) {
        let cfg = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        (
            self.generation.load(Ordering::Acquire),
            cfg.0.clone(),
            cfg.1.clone(),
        )
    }

    /// The swap point: workers pick `config` up at their next request. Its counters are
    /// bound here, once, under the lock (binding drops the counters of policies `config`
    /// no longer has, so two bindings in another order could split a counter).
    pub fn publish(&self, config: Arc<Config>) {
        let mut cfg = self.config.lock().unwrap_or_else(PoisonError::into_inner);
        let bound = self.traffic.bind(&config);
        *cfg = (config, bound);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// A worker's view of one configuration: the configuration and this worker's pools for its
/// upstreams (same indexes as `config.upstreams`).
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Shared with the snapshots before and after this one for the upstreams a reload did
    /// not change.
    pub pools: Vec<Rc<UpstreamPool>>,
    /// The auth stage's per-worker state (verified-token caches).
    pub auth: AuthState,
    /// This configuration's APIs and upstreams in the worker's metrics.
    pub slots: Slots,
    /// Traffic control's counters for this configuration.
    pub counters: Counters,
}

impl Snapshot {
    fn new(config: Arc<Config>, metrics: &WorkerMetrics, counters: Counters) -> Snapshot {
        let pools = config
            .upstreams
            .iter()
            .map(|u| Rc::new(UpstreamPool::new(u)))
            .collect();
        let auth = AuthState::new(&config);
        let slots = metrics.slots(&config);
        Snapshot {
            config,
            pools,
            auth,
            slots,
            counters,
        }
    }

    /// The snapshot of a reloaded configuration: the pools of upstreams that did not change
    /// are carried over (idle connections kept, limits updated); the others are retired
    /// (idle connections closed now, busy ones when their exchange ends).
    fn next(&self, config: Arc<Config>, metrics: &WorkerMetrics, counters: Counters) -> Snapshot {
        let mut carried = vec![false; self.pools.len()];
        let pools = config
            .upstreams
            .iter()
            .map(|u| {
                let old = self
                    .config
                    .upstreams
                    .iter()
                    .position(|o| UpstreamPool::carries(o, u));
                match old {
                    Some(i) if !carried[i] => {
                        carried[i] = true;
                        self.pools[i].adopt(u);
                        self.pools[i].clone()
                    }
                    _ => Rc::new(UpstreamPool::new(u)),
                }
            })
            .collect();
        for (pool, kept) in self.pools.iter().zip(carried) {
            if !kept {
                pool.retire();
            }
        }
        let auth = AuthState::new(&config);
        let slots = metrics.slots(&config);
        Snapshot {
            config,
            pools,
            auth,
            slots,
            counters,
        }
    }
}

/// The worker's Redis store for `config`: `current` when its settings did not change.
fn fleet_for(config: &Config, current: Option<&Rc<Fleet>>, shared: &Shared) -> Option<Rc<Fleet>> {
    let t = &config.traffic;
    if t.store != StoreKind::Redis {
        return None;
    }
    let url = RedisUrl::parse(t.redis_url.as_deref()?).ok()?;
    if let Some(f) = current
        && *f.redis().url() == url
        && f.redis().timeout() == t.redis_timeout
        && f.on_failure == t.on_store_failure
        && f.max_keys == t.max_keys
    {
        return Some(f.clone());
    }
    let redis = Redis::new(url, t.redis_timeout);
    Some(Fleet::new(
        redis,
        t.on_store_failure,
        shared.store.clone(),
        t.max_keys,
    ))
}

/// Per-worker state, shared by the worker's tasks through an `Rc`.
pub struct Worker {
    pub index: usize,
    pub shared: Arc<Shared>,
    snapshot: RefCell<Rc<Snapshot>>,
    /// The Redis store's leases (`store = "redis"`), kept across reloads that keep the
    /// store's settings.
    pub fleet: RefCell<Option<Rc<Fleet>>>,
    generation: Cell<u64>,
    pub ids: RefCell<RequestIds>,
    /// Fired when a stop signal came: the accept loops stop and close the listeners.
    pub unlisten: Drain,
    /// Fired when the process drains (every worker's listeners are closed): every request
    /// from now on is answered with `Connection: close`.
    pub drain: Drain,
    /// Fired [`DRAIN_IDLE_LINGER`] into the drain (or at the grace's end if sooner): idle
    /// keep-alive connections, which until then could still send one last request, close.
    /// A client whose request crosses the moment the server closes an idle connection
    /// sees a reset; under load, a keep-alive client sends its next request well within
    /// the linger and gets an answer that says close instead.
    pub linger: Drain,
    /// Idle keep-alive connections parked in their tasks, which the accept loop can ask to
    /// close when the process is out of descriptors.
    pub evictions: drain::Evictions,
    /// Fired when the drain's grace period is over: what still runs (WebSocket tunnels)
    /// stops, and logs itself, before the worker returns.
    pub cut: Drain,
    /// Client connections being served by this worker.
    pub active: Cell<usize>,
    /// Plain keepalive connections idle long enough to give up their task (`idle.rs`);
    /// they still count in `active` and toward `max_connections`.
    pub idle: idle::IdleSet,
    buffers: RefCell<Vec<Vec<u8>>>,
    /// How many of `buffers` are larger than [`RELAY_BUFFER_BYTES`].
    large_buffers: Cell<usize>,
    scratch: RefCell<Vec<RequestScratch>>,
    pub log: Log,
    pub tls_failures: TlsFailures,
    /// Connections closed for want of a valid PROXY protocol header.
    pub proxy_failures: proxy_failures::ProxyFailures,
    /// Client bytes read and written since the metrics last took them.
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
}

/// This worker's failed TLS handshakes: counted, and logged at most once a second.
#[derive(Default)]
pub struct TlsFailures {
    /// Since the worker started.
    pub total: Cell<u64>,
    /// Since the last log line: no SNI or an unknown name, and any other failure.
    unknown_name: Cell<u64>,
    other: Cell<u64>,
    last: RefCell<String>,
    logged: Cell<Option<std::time::Instant>>,
}

/// The least time between two log lines about failed handshakes.
pub const TLS_FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl TlsFailures {
    pub fn failed(&self, worker: usize, e: &crate::tls::stream::HandshakeError) {
        let c = if e.is_unknown_name() {
            &self.unknown_name
        } else {
            &self.other
        };
        c.set(c.get() + 1);
        self.total.set(self.total.get() + 1);
        if self.last.borrow().is_empty() || self.due() {
            let mut last = self.last.borrow_mut();
            last.clear();
            use std::fmt::Write;
            let _ = write!(last, "{e}");
        }
        self.report(worker);
    }

    /// A handshake that did not finish within the header timeout.
    pub fn failed_late(&self, worker: usize) {
        self.other.set(self.other.get() + 1);
        self.total.set(self.total.get() + 1);
        if self.last.borrow().is_empty() {
            *self.last.borrow_mut() = "handshake timeout".into();
        }
        self.report(worker);
    }

    fn due(&self) -> bool {
        self.logged
            .get()
            .is_none_or(|t| t.elapsed() >= TLS_FAILURE_LOG_EVERY)
    }

    /// Logs the failures counted since the last line, if a second has passed since it.
    pub fn report(&self, worker: usize) {
        let (unknown, other) = (self.unknown_name.get(), self.other.get());
        if unknown + other == 0 || !self.due() {
            return;
        }
        crate::say!(
            warn,
            "worker {worker}: {} TLS handshake(s) failed: {unknown} with no or an unknown server name, {other} other; last: {}",
            unknown + other,
            self.last.borrow()
        );
        self.unknown_name.set(0);
        self.other.set(0);
        self.last.borrow_mut().clear();
        self.logged.set(Some(std::time::Instant::now()));
    }
}

impl Worker {
    pub fn new(index: usize, shared: Arc<Shared>) -> Result<Worker, String> {
        let (generation, config, bound) = shared.current();
        let log = Log::open(&config.server.access_log, shared.logger.clone())
            .map_err(|e| format!("server.access_log: cannot open: {e}"))?;
        let metrics = shared
            .metrics
            .get(index)
            .ok_or_else(|| format!("worker {index}: no metrics"))?;
        let fleet = fleet_for(&config, None, &shared);
        let counters = Counters {
            bound,
            fleet: fleet.clone(),
        };
        let snapshot = Snapshot::new(config, metrics, counters);
        Ok(Worker {
            log,
            index,
            shared,
            snapshot: RefCell::new(Rc::new(snapshot)),
            fleet: RefCell::new(fleet),
            generation: Cell::new(generation),
            ids: RefCell::new(RequestIds::new(index)),
            unlisten: Drain::default(),
            drain: Drain::default(),
            linger: Drain::default(),
            evictions: drain::Evictions::default(),
            cut: Drain::default(),
            active: Cell::new(0),
            idle: idle::IdleSet::new().map_err(|e| format!("worker {index}: idle set: {e}"))?,
            buffers: RefCell::new(Vec::new()),
            large_buffers: Cell::new(0),
            scratch: RefCell::new(Vec::new()),
            tls_failures: TlsFailures::default(),
            proxy_failures: proxy_failures::ProxyFailures::default(),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
        })
    }

    /// When the drain that starts now ends its linger for idle connections.
    pub fn linger_deadline(&self, grace: std::time::Duration) -> monoio::time::Instant {
        monoio::time::Instant::now() + grace.min(DRAIN_IDLE_LINGER)
    }

    /// The current snapshot; a newly published configuration is picked up here. A request
    /// calls this once, when it starts.
    pub fn snapshot(&self) -> Rc<Snapshot> {
        if self.shared.generation.load(Ordering::Acquire) != self.generation.get() {
            let (generation, config, bound) = self.shared.current();
            if config.server.access_log != self.snapshot.borrow().config.server.access_log {
                self.log.reopen(self.index, &config.server.access_log);
            }
            let fleet = fleet_for(&config, self.fleet.borrow().as_ref(), &self.shared);
            *self.fleet.borrow_mut() = fleet.clone();
            let next =
                self.snapshot
                    .borrow()
                    .next(config, self.metrics(), Counters { bound, fleet });
            *self.snapshot.borrow_mut() = Rc::new(next);
            self.generation.set(generation);
        }
        self.snapshot.borrow().clone()
    }

    /// A client connection of this worker ended: it no longer counts toward `active` or
    /// `max_connections`.
    pub fn connection_ended(&self) {
        self.active.set(self.active.get() - 1);
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// This worker's counters.
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.shared.metrics[self.index]
    }

    pub fn count_in(&self, n: usize) {
        self.bytes_in.set(self.bytes_in.get() + n as u64);
    }

    pub fn count_out(&self, n: usize) {
        self.bytes_out.set(self.bytes_out.get() + n as u64);
    }

    /// Client bytes (read, written) since the last call.
    pub fn take_bytes(&self) -> (u64, u64) {
        (self.bytes_in.replace(0), self.bytes_out.replace(0))
    }

    /// An empty relay buffer with [`RELAY_BUFFER_BYTES`] of capacity.
    pub fn take_buffer(&self) -> Vec<u8> {
        match self.buffers.borrow_mut().pop() {
            Some(buf) => {
                if buf.capacity() > RELAY_BUFFER_BYTES {
                    self.large_buffers.set(self.large_buffers.get() - 1);
                }
                buf
            }
            None => Vec::with_capacity(RELAY_BUFFER_BYTES),
        }
    }

    /// Takes a relay buffer back for reuse: at most [`MAX_POOLED_BUFFERS`], of which at
    /// most [`MAX_POOLED_LARGE_BUFFERS`] grown ones.
    pub fn put_buffer(&self, mut buf: Vec<u8>) {
        let mut pool = self.buffers.borrow_mut();
        if buf.capacity() < RELAY_BUFFER_BYTES || pool.len() >= MAX_POOLED_BUFFERS {
            return;
        }
        if buf.capacity() > RELAY_BUFFER_BYTES {
            if self.large_buffers.get() >= MAX_POOLED_LARGE_BUFFERS {
                return;
            }
            self.large_buffers.set(self.large_buffers.get() + 1);
        }
        buf.clear();
        pool.push(buf);
    }
}

/// Everything one request writes besides the connection's read buffer, lent by the worker
/// for the request's life and recycled (capacity kept) afterwards, so that an idle
/// keepalive connection holds none of it.
#[derive(Default)]
pub struct RequestScratch {
    pub request_id: String,
    /// The request path after dot-segment resolution (when it had dot segments).
    pub path: String,
    pub backend_path: String,
    /// The upstream request head (and the body when it is already buffered).
    pub upstream_head: Vec<u8>,
    /// What the gateway writes to the client itself: local answers, response heads.
    pub out: Vec<u8>,
    /// Header lines every answer to the request carries: CORS, `RateLimit`.
    pub extra: Vec<u8>,
    /// The access log line's request half.
    pub log_line: Vec<u8>,
    pub response: crate::http::response::ResponseHead,
    /// Param values placed for the backend.
    pub params: ParamValues,
}

impl RequestScratch {
    /// Ready for the next request: contents cleared, oversized buffers dropped.
    fn recycle(&mut self) {
        for v in [&mut self.upstream_head, &mut self.out] {
            if v.capacity() > MAX_SMALL_BUFFER_BYTES {
                *v = Vec::with_capacity(SMALL_BUFFER_BYTES);
            }
            v.clear();
        }
        self.log_line.clear();
        self.extra.clear();
        self.request_id.clear();
        self.path.clear();
        self.backend_path.clear();
        self.params.clear();
    }
}

impl Worker {
    /// A request's scratch space.
    pub fn take_scratch(&self) -> RequestScratch {
        self.scratch.borrow_mut().pop().unwrap_or_default()
    }

    pub fn put_scratch(&self, mut s: RequestScratch) {
        let mut pool = self.scratch.borrow_mut();
        if pool.len() < MAX_POOLED_BUFFERS {
            s.recycle();
            pool.push(s);
        }
    }
}

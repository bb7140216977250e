//! The Redis store on one worker (`[traffic] store = "redis"`): fleet-wide counters, taken
//! in leases so that a request rarely waits for Redis.
//!
//! ```text
//! take (sync, in decide) ── lease has tokens ──▶ admit, no I/O
//!        │ lease refused until T ──▶ 429 with Retry-After, no I/O
//!        │ none / used up ──▶ need recorded ──▶ Pending ──▶ fill().await (one pipeline,
//!        │                                                  bounded by redis_timeout_ms)
//!        │ store failing ──▶ on_store_failure: local counters | admit | 503
//! janitor task (1 s): give back idle quota blocks and expired rate tokens
//! ```
//!
//! - **Rates** (plan rates, per-second limits): `rate_take` runs the GCRA in Redis (its own
//!   `TIME`) and grants up to `want` tokens; the worker spends them for at most
//!   [`RATE_LEASE_TTL`], then gives back what is left. Tokens are counted in Redis when they
//!   are granted, so the fleet never admits more than the GCRA allows over any period longer
//!   than a lease: the overshoot is bounded by the tokens granted in the last lease, which
//!   grows from 1 and is at most 1/20 of the rate (50 ms of it).
//! - **Windows** (per-minute and longer limits): `window_take` counts in the same 20 slots as
//!   the local store. Tokens are counted when granted; what is left after
//!   [`RATE_LEASE_TTL`] is lost, never over-admitted.
//! - **Quotas**: `quota_reserve` reserves blocks atomically, shrinking to a quarter of what
//!   is left as the quota runs out, so an instance admits only quota it holds and the fleet
//!   never exceeds it. A block unused for [`QUOTA_IDLE`] and every block at exit go back
//!   (`quota_release`).
//!
//! A lease starts at one token and doubles each time it is used up while still fresh, so a
//! quiet key costs one round trip per request and a busy one a round trip per many.
//! When the lease drops below half, a refill is started in the background so that a busy key
//! does not wait.
//!
//! Failures (timeout, connection, breaker open) hold the store as failing for
//! [`FAILURE_HOLD`]: during it no request waits, and each policy follows `on_store_failure`.
//! The client reconnects by itself (backoff 50 ms doubling to 500 ms).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::Verdict;
use super::algo::{Admitted, Refused, SLOTS};
use super::policy::OnStoreFailure;
use super::redis::Redis;
use super::redis::scripts::{QuotaTake, RateTake, WindowTake};
use super::redis::wire::Cmd;

/// How long granted rate or window tokens may be spent.
pub const RATE_LEASE_TTL: Duration = Duration::from_millis(200);
/// A quota block unused this long goes back to Redis.
pub const QUOTA_IDLE: Duration = Duration::from_secs(5);
/// After a failed store call, how long requests follow `on_store_failure` without trying.
pub const FAILURE_HOLD: Duration = Duration::from_millis(200);
/// At exit, how long giving quota back may wait on Redis (and on fills in flight).
const EXIT_WAIT: Duration = Duration::from_millis(500);
/// The janitor's period.
const JANITOR_EVERY: Duration = Duration::from_secs(1);

/// The process's view of the store, for `/metrics`.
#[derive(Default)]
pub struct StoreHealth {
    /// Workers whose last store call failed (the store is up when none).
    pub down_workers: AtomicUsize,
    pub failures: AtomicU64,
    /// When stderr last heard of a failure, and how many came since (one line a second).
    reported: Mutex<(Option<Instant>, u64)>,
}

impl StoreHealth {
    /// No worker's last store call failed.
    pub fn up(&self) -> bool {
        self.down_workers.load(Ordering::Relaxed) == 0
    }

    /// Counts a failed store call; says so on stderr at most once a second.
    pub fn failed(&self, error: &dyn std::fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut r = self.reported.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        r.1 += 1;
        if r.0
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            eprintln!(
                "ringway: traffic store: {} failed call(s) since the last report; last: {error}",
                r.1
            );
            *r = (Some(now), 0);
        }
    }
}

/// What kind of counter a lease is of, with the numbers a take sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// GCRA: emission interval and burst.
    Rate { emission_ns: u64, burst: u64 },
    /// Sliding window: limit and window length.
    Window { limit: u64, window_ms: u64 },
    /// Quota: max, and when the period's key may expire (Unix ms).
    Quota {
        max: u64,
        expire_at_ms: Option<u64>,
        reset_ns: Option<u64>,
    },
}

impl Kind {
    /// The largest lease of this counter.
    fn max_lease(self) -> u64 {
        match self {
            Kind::Rate { burst, .. } => (burst / 20).max(1),
            Kind::Window { limit, .. } => (limit / 100).max(1),
            Kind::Quota { max, .. } => (max / 100).clamp(1, 10_000),
        }
    }
}

struct Lease {
    redis_key: String,
    kind: Kind,
    tokens: u64,
    /// Unspent tokens are void after this (rates and windows).
    expires: Instant,
    /// Redis refused: refuse without asking until then.
    refused_until: Option<Instant>,
    /// The next take asks for this many.
    size: u64,
    /// The numbers for the headers at the last grant, less what was spent since.
    hint: Admitted,
    last_used: Instant,
    /// A refill is recorded or in flight.
    asked: bool,
    /// Requests that found the lease empty since the refill was asked for: the refill asks
    /// for at least this many, so that one round trip serves them all.
    waiting: u64,
}

struct Need {
    policy: usize,
    key: Box<[u8]>,
    redis_key: String,
    kind: Kind,
    want: u64,
}

/// Leases by policy, then by key bytes.
type Leases = HashMap<usize, PolicyLeases>;

/// What keeps a policy's address from being reused while the fleet knows it by that
/// address: a weak reference to its counters in the process registry (the allocation
/// stays until the last weak reference goes). A policy a reload removed has no strong
/// reference left; the janitor then returns its tokens and forgets it.
pub enum Owner {
    Limit(std::sync::Weak<super::local::Cells>),
    Plan(std::sync::Weak<super::local::PlanCell>),
}

impl Owner {
    fn alive(&self) -> bool {
        match self {
            Owner::Limit(w) => w.strong_count() > 0,
            Owner::Plan(w) => w.strong_count() > 0,
        }
    }
}

struct PolicyLeases {
    owner: Owner,
    by_key: HashMap<Box<[u8]>, Lease>,
}

/// Leases of one worker (see the module docs).
pub struct Fleet {
    redis: Redis,
    pub on_failure: OnStoreFailure,
    /// By policy (the address of its counters in the process registry, stable across
    /// reloads), then by key bytes.
    leases: RefCell<Leases>,
    needs: RefCell<Vec<Need>>,
    failing_until: Cell<Option<Instant>>,
    janitor: Cell<bool>,
    /// Fills in flight, and counts of the fills started and ended (waiters wake when the
    /// latter moves). Replies come in order on the one connection, so once `ended` reaches
    /// what `started` was, every fill started before has ended.
    in_flight: Cell<usize>,
    started: Cell<u64>,
    ended: Cell<u64>,
    /// Set for one decision that waited its last: the store counts as failing for it.
    give_up: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
    health: Arc<StoreHealth>,
    /// The most keys one policy keeps leases for (`[traffic] max_keys`).
    pub max_keys: usize,
    /// This worker's last store call failed (counted in `health.down_workers`).
    down: Cell<bool>,
    me: Weak<Fleet>,
}

/// A take's outcome at the fleet level.
pub enum FleetVerdict {
    Done(Verdict),
    /// The store is failing and `on_store_failure = "local"`: count locally.
    Local,
}

impl Fleet {
    pub fn new(
        redis: Redis,
        on_failure: OnStoreFailure,
        health: Arc<StoreHealth>,
        max_keys: usize,
    ) -> Rc<Fleet> {
        Rc::new_cyclic(|me| Fleet {
            redis,
            on_failure,
            leases: RefCell::new(HashMap::new()),
            needs: RefCell::new(Vec::new()),
            failing_until: Cell::new(None),
            janitor: Cell::new(false),
            in_flight: Cell::new(0),
            started: Cell::new(0),
            ended: Cell::new(0),
            give_up: Cell::new(false),
            wakers: RefCell::new(Vec::new()),
            health,
            max_keys,
            down: Cell::new(false),
            me: me.clone(),
        })
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    fn failing(&self, now: Instant) -> bool {
        if !self.redis.is_up() {
            // The client found Redis gone (its breaker is open): this worker is down
            // until a call succeeds again (the janitor probes once a second).
            if !self.down.get() {
                self.health.failed(&"the connection to Redis is down");
            }
            self.mark(false);
            return true;
        }
        self.failing_until.get().is_some_and(|t| now < t)
    }

    /// Records this worker's view of the store for `ringway_traffic_store_up`.
    fn mark(&self, up: bool) {
        if self.down.replace(!up) == up {
            if up {
                self.health.down_workers.fetch_sub(1, Ordering::Relaxed);
            } else {
                self.health.down_workers.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_failure(&self) -> FleetVerdict {
        match self.on_failure {
            OnStoreFailure::Local => FleetVerdict::Local,
            OnStoreFailure::Allow => FleetVerdict::Done(Verdict::Uncounted),
            OnStoreFailure::Deny => FleetVerdict::Done(Verdict::Unavailable),
        }
    }

    /// Takes one token of `policy` for `key` (see the module docs). `redis_key` makes the
    /// key in Redis, only called when a lease is made.
    pub fn take(
        &self,
        (policy, owner): (usize, impl FnOnce() -> Owner),
        key: &[u8],
        kind: Kind,
        redis_key: impl FnOnce() -> String,
    ) -> FleetVerdict {
        let now = Instant::now();
        self.start_janitor();
        let mut leases = self.leases.borrow_mut();
        let by_key = &mut leases
            .entry(policy)
            .or_insert_with(|| PolicyLeases {
                owner: owner(),
                by_key: HashMap::new(),
            })
            .by_key;
        if let Some(l) = by_key.get_mut(key) {
            if l.kind != kind {
                // The limit changed (a reload): what the old numbers granted or refused
                // does not hold; ask Redis with the new ones (apache/apisix#8190 was a
                // changed limit that did not apply).
                l.kind = kind;
                l.tokens = 0;
                l.refused_until = None;
                l.size = 1;
            }
            let fresh = matches!(kind, Kind::Quota { .. }) || now < l.expires;
            if l.tokens > 0 && fresh {
                l.tokens -= 1;
                l.last_used = now;
                l.hint.remaining = l.hint.remaining.saturating_sub(1);
                let admitted = l.hint;
                // Low water: ask for the next lease before this one runs out.
                if l.tokens < l.size / 2 && !l.asked && !self.failing(now) {
                    l.asked = true;
                    self.needs.borrow_mut().push(Need {
                        policy,
                        key: key.into(),
                        redis_key: l.redis_key.clone(),
                        kind,
                        want: l.size,
                    });
                    drop(leases);
                    self.refill_in_background();
                }
                return FleetVerdict::Done(Verdict::Leased(admitted));
            }
            if let Some(until) = l.refused_until {
                if now < until {
                    let retry = u64::try_from((until - now).as_nanos()).unwrap_or(u64::MAX);
                    return FleetVerdict::Done(Verdict::Refuse(Refused {
                        retry_ns: Some(retry),
                    }));
                }
                l.refused_until = None;
            }
            if self.failing(now) {
                return self.on_failure();
            }
            if self.give_up.get() {
                // Waited its last with the lease still empty: the fleet's tokens went to
                // other requests; refused like any request past the rate.
                return FleetVerdict::Done(Verdict::Refuse(Refused {
                    retry_ns: Some(RATE_LEASE_TTL.as_nanos() as u64),
                }));
            }
            l.waiting += 1;
            if !l.asked {
                l.asked = true;
                self.needs.borrow_mut().push(Need {
                    policy,
                    key: key.into(),
                    redis_key: l.redis_key.clone(),
                    kind,
                    want: l.size,
                });
            }
            return FleetVerdict::Done(Verdict::Pending);
        }
        if self.failing(now) {
            return self.on_failure();
        }
        if self.give_up.get() {
            return FleetVerdict::Done(Verdict::Refuse(Refused {
                retry_ns: Some(RATE_LEASE_TTL.as_nanos() as u64),
            }));
        }
        if by_key.len() >= self.max_keys {
            // Bounded like the local table: leases holding nothing go first; past that, any
            // not being refilled (its unspent tokens are lost, never over-admitted).
            by_key.retain(|_, l| l.asked || l.tokens > 0);
            if by_key.len() >= self.max_keys {
                let victim = by_key
                    .iter()
                    .find(|(_, l)| !l.asked)
                    .map(|(k, _)| k.clone());
                match victim {
                    Some(k) => {
                        by_key.remove(&k);
                    }
                    None => return self.on_failure(),
                }
            }
        }
        let redis_key = redis_key();
        by_key.insert(
            key.into(),
            Lease {
                redis_key: redis_key.clone(),
                kind,
                tokens: 0,
                expires: now,
                refused_until: None,
                size: 1,
                hint: Admitted {
                    remaining: 0,
                    reset_ns: None,
                },
                last_used: now,
                asked: true,
                waiting: 1,
            },
        );
        self.needs.borrow_mut().push(Need {
            policy,
            key: key.into(),
            redis_key,
            kind,
            want: 1,
        });
        FleetVerdict::Done(Verdict::Pending)
    }

    /// Runs `decide` for a request that waited `MAX_STORE_FILLS` times: a policy whose
    /// lease is still empty refuses it (429) instead of asking again.
    pub fn last_try<R>(&self, decide: impl FnOnce() -> R) -> R {
        self.give_up.set(true);
        let r = decide();
        self.give_up.set(false);
        r
    }

    /// Gives one token back to its lease (a later policy refused the request).
    pub fn give_back(&self, policy: usize, key: &[u8]) {
        let mut leases = self.leases.borrow_mut();
        if let Some(l) = leases.get_mut(&policy).and_then(|m| m.by_key.get_mut(key)) {
            l.tokens += 1;
            l.hint.remaining += 1;
        }
    }

    fn refill_in_background(&self) {
        if let Some(me) = self.me.upgrade() {
            monoio::spawn(async move { me.fill().await });
        }
    }

    /// Waits for every fill started so far to end, at most `redis_timeout_ms`: the one
    /// carrying this request's need is among them.
    async fn wait_for_fill(&self) {
        let target = self.started.get();
        let wait = poll_fn(|cx| {
            if self.ended.get() >= target || self.in_flight.get() == 0 {
                return Poll::Ready(());
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        });
        let _ = monoio::time::timeout(self.redis.timeout(), wait).await;
    }

    /// Sends every recorded need to Redis in one pipeline per kind and turns the grants
    /// into leases; with nothing to send, waits for the fill in flight. Bounded by
    /// `redis_timeout_ms`; a failure holds the store as failing.
    pub async fn fill(&self) {
        let mut needs = std::mem::take(&mut *self.needs.borrow_mut());
        if needs.is_empty() {
            if self.in_flight.get() > 0 {
                self.wait_for_fill().await;
            }
            return;
        }
        {
            // Ask for every request waiting on a lease.
            let mut leases = self.leases.borrow_mut();
            for n in &mut needs {
                if let Some(l) = leases
                    .get_mut(&n.policy)
                    .and_then(|m| m.by_key.get_mut(&n.key))
                {
                    n.want = n.want.max(l.waiting);
                    l.waiting = 0;
                }
            }
        }
        self.in_flight.set(self.in_flight.get() + 1);
        self.started.set(self.started.get() + 1);
        self.start_janitor();
        let mut rates = Vec::new();
        let mut windows = Vec::new();
        let mut quotas = Vec::new();
        for (i, n) in needs.iter().enumerate() {
            match n.kind {
                Kind::Rate { emission_ns, burst } => rates.push((
                    i,
                    RateTake {
                        key: n.redis_key.clone(),
                        emission_us: (emission_ns / 1000).max(1),
                        burst,
                        want: n.want,
                    },
                )),
                Kind::Window { limit, window_ms } => windows.push((
                    i,
                    WindowTake {
                        key: n.redis_key.clone(),
                        limit,
                        window_ms,
                        slots: SLOTS as u64,
                        want: n.want,
                    },
                )),
                Kind::Quota {
                    max, expire_at_ms, ..
                } => quotas.push((
                    i,
                    QuotaTake {
                        key: n.redis_key.clone(),
                        max,
                        want: n.want,
                        expire_at_ms,
                    },
                )),
            }
        }
        let mut grants: Vec<Option<(u64, Admitted, u64)>> = vec![None; needs.len()];
        let mut failed = None;
        if !rates.is_empty() {
            let takes: Vec<RateTake> = rates.iter().map(|(_, t)| t.clone()).collect();
            match self.redis.rate_take(&takes).await {
                Ok(gs) => {
                    for ((i, t), g) in rates.iter().zip(gs) {
                        let per = t.emission_us.max(1);
                        let room = (t.burst * per).saturating_sub(g.backlog_us) / per;
                        let admitted = Admitted {
                            remaining: room + g.granted,
                            reset_ns: Some(g.backlog_us * 1000),
                        };
                        grants[*i] = Some((g.granted, admitted, g.retry_after_us * 1000));
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if !windows.is_empty() && failed.is_none() {
            let takes: Vec<WindowTake> = windows.iter().map(|(_, t)| t.clone()).collect();
            match self.redis.window_take(&takes).await {
                Ok(gs) => {
                    for ((i, t), g) in windows.iter().zip(gs) {
                        let admitted = Admitted {
                            remaining: t.limit.saturating_sub(g.used) + g.granted,
                            reset_ns: Some(t.window_ms * 1_000_000),
                        };
                        grants[*i] = Some((g.granted, admitted, g.retry_after_ms * 1_000_000));
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if !quotas.is_empty() && failed.is_none() {
            let takes: Vec<QuotaTake> = quotas.iter().map(|(_, t)| t.clone()).collect();
            match self.redis.quota_reserve(&takes).await {
                Ok(gs) => {
                    for ((i, t), g) in quotas.iter().zip(gs) {
                        let reset_ns = match needs[*i].kind {
                            Kind::Quota { reset_ns, .. } => reset_ns,
                            _ => None,
                        };
                        let admitted = Admitted {
                            remaining: t.max.saturating_sub(g.used) + g.granted,
                            reset_ns,
                        };
                        grants[*i] = Some((g.granted, admitted, reset_ns.unwrap_or(0)));
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        let now = Instant::now();
        let mut leases = self.leases.borrow_mut();
        for (n, g) in needs.iter().zip(grants) {
            let Some(l) = leases
                .get_mut(&n.policy)
                .and_then(|m| m.by_key.get_mut(&n.key))
            else {
                continue;
            };
            l.asked = false;
            let Some((granted, admitted, retry_ns)) = g else {
                continue;
            };
            let rate = !matches!(n.kind, Kind::Quota { .. });
            if granted == 0 {
                l.refused_until = match n.kind {
                    // A total quota: ask again after a while (an operator may raise it).
                    Kind::Quota { reset_ns: None, .. } => Some(now + Duration::from_secs(1)),
                    _ => Some(now + Duration::from_nanos(retry_ns.max(1))),
                };
                l.hint = Admitted {
                    remaining: 0,
                    reset_ns: admitted.reset_ns,
                };
                continue;
            }
            // A lease used up while fresh was too small: double it.
            if l.tokens == 0 && (!rate || now < l.expires) {
                l.size = (l.size * 2).min(n.kind.max_lease());
            }
            if rate && now >= l.expires {
                l.tokens = 0;
            }
            l.tokens += granted;
            l.refused_until = None;
            l.hint = admitted;
            if rate {
                l.expires = now + RATE_LEASE_TTL;
            }
        }
        drop(leases);
        self.in_flight.set(self.in_flight.get() - 1);
        self.ended.set(self.ended.get() + 1);
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
        match failed {
            Some(e) => {
                self.failing_until.set(Some(now + FAILURE_HOLD));
                self.health.failed(&e);
                self.mark(false);
            }
            None => {
                self.failing_until.set(None);
                self.mark(true);
            }
        }
    }

    fn start_janitor(&self) {
        if self.janitor.replace(true) {
            return;
        }
        let me = self.me.clone();
        monoio::spawn(async move {
            loop {
                monoio::time::sleep(JANITOR_EVERY).await;
                let Some(f) = me.upgrade() else { return };
                f.sweep(false).await;
                if f.down.get() {
                    let ping = f.redis.call(vec![Cmd::new("PING")]).await;
                    f.mark(ping.is_ok());
                }
            }
        });
    }

    /// Gives back quota blocks idle for [`QUOTA_IDLE`] (all of them when `all`) and rate
    /// tokens whose lease expired.
    pub async fn sweep(&self, all: bool) {
        if all {
            // At exit: a fill still in flight may be bringing a block; let it land first.
            let until = Instant::now() + EXIT_WAIT;
            while self.in_flight.get() > 0 && Instant::now() < until {
                self.wait_for_fill().await;
            }
        }
        let now = Instant::now();
        let mut quota_back = Vec::new();
        let mut rate_back = Vec::new();
        {
            let mut leases = self.leases.borrow_mut();
            for p in leases.values_mut() {
                let all = all || !p.owner.alive();
                p.by_key.retain(|_, l| {
                    let idle = now.saturating_duration_since(l.last_used);
                    match l.kind {
                        Kind::Quota { .. } if l.tokens > 0 && (all || idle >= QUOTA_IDLE) => {
                            quota_back.push((l.redis_key.clone(), l.tokens));
                            l.tokens = 0;
                        }
                        Kind::Rate { emission_ns, .. }
                            if l.tokens > 0 && (all || now >= l.expires) =>
                        {
                            rate_back.push((l.redis_key.clone(), emission_ns, l.tokens));
                            l.tokens = 0;
                        }
                        Kind::Window { .. } if now >= l.expires => l.tokens = 0,
                        _ => {}
                    }
                    // Forget keys idle for a minute with nothing held.
                    l.asked || l.tokens > 0 || idle < Duration::from_secs(60)
                });
            }
            // Policies a reload removed, once their tokens are on their way back.
            leases.retain(|_, p| p.owner.alive() || !p.by_key.is_empty());
        }
        // Quota goes back with a longer bound at exit (no request waits on it): a block not
        // returned stays counted as used in Redis.
        let wait = if all { EXIT_WAIT } else { self.redis.timeout() };
        for (key, n) in quota_back {
            if self
                .redis
                .quota_release_within(&key, n, wait)
                .await
                .is_err()
            {
                break;
            }
        }
        for (key, emission_ns, n) in rate_back {
            let us = (emission_ns / 1000).max(1);
            if self.redis.rate_give_back(&key, us, n).await.is_err() {
                break;
            }
        }
    }
}

//! Traffic control's counters (SPEC §8): usage plans' rates and quotas, and limits, counted
//! exactly across a process's workers and, with the Redis store, across a fleet.
//!
//! ```text
//! config ([[usage_plans]], limits, [traffic]) ──▶ policy (typed)
//! Registry (process) ──bind(config)──▶ Bound (counter states by policy) ──▶ Counters (worker)
//! gateway::usage_plans / gateway::limits ──take──▶ Counters ──▶ algo (GCRA, window, quota)
//!                                                     └──▶ redis (leases from a shared Redis)
//! ```
//!
//! - [`algo`]: the algorithms as pure functions of a clock reading.
//! - [`policy`]: plans, limits and `[traffic]` as configured.
//! - [`local`]: the process's counter states, kept across reloads; [`table`]: the bounded
//!   per-IP and per-caller table.
//! - [`state_file`]: quota counts saved across restarts.
//! - [`redis`]: the Redis client and scripts of the fleet store.
//!
//! A request's stages take from [`Counters`] one policy at a time, recording each take in a
//! [`Pass`]; when a later policy refuses, the pass gives every earlier take back, so a
//! refused request consumes nothing. The pass also keeps the policy nearest to refusing,
//! whose numbers the `RateLimit` headers carry.

pub mod algo;
pub mod fleet;
pub mod local;
pub mod policy;
pub mod redis;
pub mod state_file;
pub mod table;

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use algo::{Admitted, NANOS_PER_SEC, Refused};
use fleet::{Fleet, FleetVerdict, Kind, Owner};
use local::{Bound, Cell, Cells, lock};
use policy::{Limit, Rate, UsagePlan};

/// The moment a request is judged, on both clocks the counters use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Nanoseconds since the registry's epoch (rates).
    pub mono: u64,
    /// Unix seconds (quota periods).
    pub unix: u64,
}

impl Clock {
    pub fn new(epoch: Instant, mono: Instant, wall: SystemTime) -> Clock {
        Clock {
            mono: u64::try_from(mono.saturating_duration_since(epoch).as_nanos()).unwrap_or(0),
            unix: wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        }
    }
}

/// Whose counter a keyed limit takes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRef<'a> {
    /// The policy has one counter.
    One,
    Ip(IpAddr),
    Caller(&'a str),
    /// A service limit with `key = "api"`: the API's index in its service.
    Api(usize),
}

/// Longest key encoded on the stack.
const KEY_STACK: usize = 64;

impl KeyRef<'_> {
    /// Runs `f` on the key's bytes (a tag byte, then the address, name or index).
    pub fn with_bytes<R>(self, f: impl FnOnce(&[u8]) -> R) -> R {
        let mut buf = [0u8; KEY_STACK];
        let n = match self {
            KeyRef::One => 0,
            KeyRef::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => {
                    buf[0] = 4;
                    buf[1..5].copy_from_slice(&v4.octets());
                    5
                }
                IpAddr::V6(v6) => {
                    buf[0] = 6;
                    buf[1..17].copy_from_slice(&v6.octets());
                    17
                }
            },
            KeyRef::Api(i) => {
                buf[0] = b'a';
                buf[1..9].copy_from_slice(&(i as u64).to_be_bytes());
                9
            }
            KeyRef::Caller(name) if name.len() < KEY_STACK => {
                buf[0] = b'c';
                buf[1..=name.len()].copy_from_slice(name.as_bytes());
                name.len() + 1
            }
            KeyRef::Caller(name) => {
                let mut v = Vec::with_capacity(name.len() + 1);
                v.push(b'c');
                v.extend_from_slice(name.as_bytes());
                return f(&v);
            }
        };
        f(&buf[..n])
    }
}

/// What a policy said about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Admit(Admitted),
    /// Admitted from a Redis lease (given back to the lease).
    Leased(Admitted),
    Refuse(Refused),
    /// The store must answer first: await [`Counters::fill`], then judge again.
    Pending,
    /// The store failed and `on_store_failure = "deny"`.
    Unavailable,
    /// The store failed and `on_store_failure = "allow"`: admitted uncounted.
    Uncounted,
}

/// A take to give back: which counter, and whether it came from a Redis lease.
#[derive(Clone, Copy, Debug)]
pub struct Ticket<'a> {
    pub of: Taken<'a>,
    pub leased: bool,
}

/// Which counter a take came from.
#[derive(Clone, Copy, Debug)]
pub enum Taken<'a> {
    Limit {
        index: usize,
        key: KeyRef<'a>,
        at: u64,
    },
    PlanRate {
        plan: usize,
        secret: usize,
    },
    PlanQuota {
        plan: usize,
        secret: usize,
        period: u64,
    },
}

/// A worker's view of the counters of its configuration.
pub struct Counters {
    pub bound: Arc<Bound>,
    /// The Redis store's leases (`store = "redis"`).
    pub fleet: Option<Rc<Fleet>>,
}

impl Counters {
    pub fn local(bound: Arc<Bound>) -> Counters {
        Counters { bound, fleet: None }
    }

    /// Counters of their own for one configuration (tests, `ringway route`).
    pub fn standalone(cfg: &crate::config::Config) -> Counters {
        Counters::local(local::Registry::default().bind(cfg))
    }

    /// Brings what the last `Pending` verdicts need from the store (nothing to do for the
    /// local store).
    pub async fn fill(&self) {
        if let Some(f) = &self.fleet {
            f.fill().await;
        }
    }

    /// Runs `decide` for a request that waited its last (see [`Fleet::last_try`]).
    pub fn last_try<R>(&self, decide: impl FnOnce() -> R) -> R {
        match &self.fleet {
            Some(f) => f.last_try(decide),
            None => decide(),
        }
    }

    pub fn clock(&self, mono: Instant, wall: SystemTime) -> Clock {
        Clock::new(self.bound.epoch, mono, wall)
    }

    /// Takes one request from limit `index` (of `Config::limits`) for `key`.
    pub fn take_limit(&self, index: usize, limit: &Limit, key: KeyRef<'_>, now: &Clock) -> Verdict {
        let rate = limit.rate();
        if let Some(f) = &self.fleet {
            let cells = &self.bound.limits[index];
            let policy = (Arc::as_ptr(cells) as usize, || {
                Owner::Limit(Arc::downgrade(cells))
            });
            let kind = match rate {
                Rate::Gcra(g) => Kind::Rate {
                    emission_ns: g.emission_ns,
                    burst: g.burst,
                },
                Rate::Window(w) => Kind::Window {
                    limit: w.limit,
                    window_ms: limit.per.seconds() * 1000,
                },
            };
            let v = key.with_bytes(|k| {
                f.take(policy, k, kind, || {
                    format!("ringway:l:{}:{}", limit.id.replace('\0', ":"), hex(k))
                })
            });
            if let FleetVerdict::Done(v) = v {
                return v;
            }
        }
        let take = |cell: &mut Cell| match rate {
            Rate::Gcra(g) => {
                if !matches!(cell, Cell::Tat(_)) {
                    *cell = Cell::Tat(0);
                }
                match cell {
                    Cell::Tat(t) => g.take(t, now.mono),
                    Cell::Window(_) => unreachable!("made a Tat above"),
                }
            }
            Rate::Window(w) => {
                if !matches!(cell, Cell::Window(_)) {
                    *cell = Cell::Window(Default::default());
                }
                match cell {
                    Cell::Window(s) => w.take(s, now.mono),
                    Cell::Tat(_) => unreachable!("made a window above"),
                }
            }
        };
        verdict(match &*self.bound.limits[index] {
            Cells::One(m) => take(&mut lock(m)),
            Cells::Keyed(t) => key.with_bytes(|k| t.with(k, |c| at_rest(rate, c, now), take)),
        })
    }

    pub fn take_plan_rate(
        &self,
        plan: usize,
        secret: usize,
        p: &UsagePlan,
        now: &Clock,
    ) -> Verdict {
        let Some(g) = p.gcra() else {
            return Verdict::Uncounted;
        };
        let cell = &self.bound.plans[plan][secret];
        if let Some(f) = &self.fleet {
            let kind = Kind::Rate {
                emission_ns: g.emission_ns,
                burst: g.burst,
            };
            let policy = (Arc::as_ptr(cell) as usize, || {
                Owner::Plan(Arc::downgrade(cell))
            });
            let v = f.take(policy, &[], kind, || {
                format!("ringway:r:{}:{}", p.name, p.secret_ids[secret])
            });
            if let FleetVerdict::Done(v) = v {
                return v;
            }
        }
        verdict(g.take(&mut lock(&cell.tat), now.mono))
    }

    pub fn take_plan_quota(
        &self,
        plan: usize,
        secret: usize,
        p: &UsagePlan,
        now: &Clock,
    ) -> Verdict {
        let Some(q) = p.quota_rule() else {
            return Verdict::Uncounted;
        };
        let cell = &self.bound.plans[plan][secret];
        if let Some(f) = &self.fleet {
            let bounds = p.period.bounds(now.unix);
            let kind = Kind::Quota {
                max: q.max,
                // The key outlives its period by a day (PEXPIREAT takes milliseconds).
                expire_at_ms: bounds.map(|(_, end)| (end + 86_400) * 1000),
                reset_ns: bounds.map(|(_, end)| (end - now.unix) * NANOS_PER_SEC),
            };
            // The quota's policy is its plan cell's address plus one (a rate's is the
            // address itself); the key is the period.
            let policy = (Arc::as_ptr(cell) as usize + 1, || {
                Owner::Plan(Arc::downgrade(cell))
            });
            let start = q.period_start(now.unix).to_be_bytes();
            let v = f.take(policy, &start, kind, || {
                quota_key(p, &p.secret_ids[secret], now.unix)
            });
            if let FleetVerdict::Done(v) = v {
                return v;
            }
        }
        verdict(q.take(&mut lock(&cell.quota), now.unix))
    }

    /// Undoes a take (a later policy refused the request).
    pub fn give_back(&self, cfg: &crate::config::Config, t: &Ticket<'_>, now: &Clock) {
        if t.leased
            && let Some(f) = &self.fleet
        {
            match t.of {
                Taken::Limit { index, key, .. } => {
                    let policy = Arc::as_ptr(&self.bound.limits[index]) as usize;
                    key.with_bytes(|k| f.give_back(policy, k));
                }
                Taken::PlanRate { plan, secret } => {
                    f.give_back(Arc::as_ptr(&self.bound.plans[plan][secret]) as usize, &[]);
                }
                Taken::PlanQuota {
                    plan,
                    secret,
                    period,
                } => {
                    let policy = Arc::as_ptr(&self.bound.plans[plan][secret]) as usize + 1;
                    f.give_back(policy, &period.to_be_bytes());
                }
            }
            return;
        }
        match t.of {
            Taken::Limit { index, key, at } => {
                let rate = cfg.limits[index].rate();
                let undo = |cell: &mut Cell| match (rate, cell) {
                    (Rate::Gcra(g), Cell::Tat(t)) => g.give_back(t, now.mono),
                    (Rate::Window(w), Cell::Window(s)) => w.give_back(s, at),
                    _ => {}
                };
                match &*self.bound.limits[index] {
                    Cells::One(m) => undo(&mut lock(m)),
                    Cells::Keyed(t) => {
                        key.with_bytes(|k| t.with(k, |c| at_rest(rate, c, now), undo));
                    }
                }
            }
            Taken::PlanRate { plan, secret } => {
                if let Some(g) = cfg.usage_plans[plan].gcra() {
                    g.give_back(&mut lock(&self.bound.plans[plan][secret].tat), now.mono);
                }
            }
            Taken::PlanQuota {
                plan,
                secret,
                period,
            } => {
                if let Some(q) = cfg.usage_plans[plan].quota_rule() {
                    q.give_back(&mut lock(&self.bound.plans[plan][secret].quota), period);
                }
            }
        }
    }
}

fn at_rest(rate: Rate, cell: &Cell, now: &Clock) -> bool {
    match (rate, cell) {
        (_, Cell::Tat(t)) => algo::Gcra::at_rest(*t, now.mono),
        (Rate::Window(w), Cell::Window(s)) => w.at_rest(s, now.mono),
        (Rate::Gcra(_), Cell::Window(_)) => true,
    }
}

/// The Redis key of a plan's quota for `secret_id` in the period `unix` falls in.
pub fn quota_key(plan: &UsagePlan, secret_id: &str, unix: u64) -> String {
    let period = plan.period.label(unix);
    format!("ringway:q:{}:{secret_id}:{period}", plan.name)
}

fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

fn verdict(t: algo::Take) -> Verdict {
    match t {
        Ok(a) => Verdict::Admit(a),
        Err(r) => Verdict::Refuse(r),
    }
}

/// What kind of policy a [`Nearest`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    PlanRate,
    PlanQuota,
    Limit,
}

/// The numbers of one policy for the `RateLimit` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nearest<'c> {
    pub kind: PolicyKind,
    /// The plan's name, or the limit's `limit-<n>`.
    pub name: &'c str,
    /// Requests per window (`q`).
    pub quota: u64,
    /// The window in seconds (`w`); `None` for a total quota.
    pub window: Option<u64>,
    pub admitted: Admitted,
}

/// Takes a pass holds without allocating; more go to a vector.
const INLINE_TICKETS: usize = 8;

/// One request's takes and the nearest policy (see the module docs).
#[derive(Default)]
pub struct Pass<'c, 'r> {
    inline: [Option<Ticket<'r>>; INLINE_TICKETS],
    more: Vec<Ticket<'r>>,
    pub nearest: Option<Nearest<'c>>,
}

impl<'c, 'r> Pass<'c, 'r> {
    /// Records an admitted take; keeps the policy with the fewest requests left.
    pub fn admitted(&mut self, ticket: Ticket<'r>, n: Nearest<'c>) {
        match self.inline.iter_mut().find(|t| t.is_none()) {
            Some(slot) => *slot = Some(ticket),
            None => self.more.push(ticket),
        }
        if self
            .nearest
            .is_none_or(|o| n.admitted.remaining < o.admitted.remaining)
        {
            self.nearest = Some(n);
        }
    }

    /// Gives every take back (the request was refused).
    pub fn undo(&mut self, cfg: &crate::config::Config, counters: &Counters, now: &Clock) {
        for t in self.inline.iter_mut().filter_map(Option::take) {
            counters.give_back(cfg, &t, now);
        }
        for t in self.more.drain(..) {
            counters.give_back(cfg, &t, now);
        }
    }
}

/// What the response of a request under a plan or limit says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateInfo<'c> {
    pub policy: Nearest<'c>,
    /// A refusal: seconds until a retry can pass (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// Seconds, rounded up, at least 1.
pub fn ceil_secs(ns: u64) -> u64 {
    ns.div_ceil(NANOS_PER_SEC).max(1)
}

/// `Retry-After` for a total quota, which no wait refills: an hour, after which an operator
/// may have raised it.
pub const TOTAL_QUOTA_RETRY_AFTER: u64 = 3600;

impl RateInfo<'_> {
    /// Writes `RateLimit-Policy`, `RateLimit` and, for a refusal, `Retry-After` lines.
    pub fn write_headers(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let p = &self.policy;
        let _ = write!(out, "RateLimit-Policy: \"{}\";q={}", p.name, p.quota);
        if let Some(w) = p.window {
            let _ = write!(out, ";w={w}");
        }
        let _ = write!(
            out,
            "\r\nRateLimit: \"{}\";r={}",
            p.name, p.admitted.remaining
        );
        if let Some(t) = p.admitted.reset_ns {
            let _ = write!(out, ";t={}", t.div_ceil(NANOS_PER_SEC));
        }
        out.extend_from_slice(b"\r\n");
        if let Some(s) = self.retry_after {
            let _ = write!(out, "Retry-After: {s}\r\n");
        }
    }
}

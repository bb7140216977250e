//! The process's counters: one set per policy, shared by every worker, kept across reloads.
//!
//! [`Registry`] lives as long as the process. Binding a configuration to it
//! ([`Registry::bind`]) gives a [`Bound`]: for every limit of the configuration (by index)
//! and every (plan, secret_id) its counter states, found by identity — a limit by service,
//! API, key and window; a plan's counters by plan name and secret_id — so a reload keeps them,
//! a changed number applies to them at once (the states hold times and counts, the numbers
//! come from the configuration at each request), and a removed policy's counters are dropped.
//!
//! Single counters (a service's or an API's own) sit under their own short mutex; per-IP and
//! per-caller ones in a bounded [`Table`]. Quota counts are also what the state file saves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::algo::{QuotaState, WindowState};
use super::policy::{Limit, LimitKey, UsagePlan};
use super::table::Table;
use crate::config::Config;

/// A limit's counter state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// A GCRA's theoretical arrival time, in nanoseconds of the registry's clock.
    Tat(u64),
    Window(WindowState),
}

impl Default for Cell {
    fn default() -> Cell {
        Cell::Tat(0)
    }
}

/// Where a limit's states live.
pub enum Cells {
    One(Mutex<Cell>),
    Keyed(Table<Cell>),
}

impl Cells {
    fn new(limit: &Limit, max_keys: usize) -> Cells {
        let single = match limit.key {
            LimitKey::Service => true,
            LimitKey::Api => limit.api.is_some(),
            LimitKey::Ip | LimitKey::Caller => false,
        };
        // Every state starts as `Cell::default()`; a window limit's first take turns it
        // into a window (`Counters::take_limit`).
        if single {
            Cells::One(Mutex::new(Cell::default()))
        } else {
            Cells::Keyed(Table::new(max_keys))
        }
    }
}

/// One (plan, secret_id)'s counters.
#[derive(Default)]
pub struct PlanCell {
    pub tat: Mutex<u64>,
    pub quota: Mutex<QuotaState>,
}

/// A configuration's counters (see the module docs).
pub struct Bound {
    pub epoch: Instant,
    /// By index into `Config::limits`.
    pub limits: Vec<Arc<Cells>>,
    /// By plan index, then by the plan's secret_id index.
    pub plans: Vec<Vec<Arc<PlanCell>>>,
}

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Saved quota counts: (plan, secret_id) → (period start, used).
pub type Saved = HashMap<(String, String), (u64, u64)>;

#[derive(Default)]
struct Kept {
    limits: HashMap<String, Arc<Cells>>,
    plans: HashMap<(String, String), Arc<PlanCell>>,
    /// Quota counts from the state file not yet claimed by a plan.
    saved: Saved,
}

/// Every counter of the process (see the module docs).
pub struct Registry {
    epoch: Instant,
    kept: Mutex<Kept>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            epoch: Instant::now(),
            kept: Mutex::new(Kept::default()),
        }
    }
}

impl Registry {
    /// Quota counts to start from (the state file), for plans not bound yet.
    /// Quota counts to start from (the state file): set on the counters already bound,
    /// kept for plans bound later.
    pub fn restore(&self, mut saved: Saved) {
        let mut kept = lock(&self.kept);
        for (id, cell) in &kept.plans {
            if let Some((start, used)) = saved.remove(id) {
                *lock(&cell.quota) = QuotaState { start, used };
            }
        }
        kept.saved = saved;
    }

    /// The counters of `cfg`, shared with every earlier binding for the policies they have
    /// in common; counters of policies `cfg` no longer has are dropped.
    pub fn bind(&self, cfg: &Config) -> Arc<Bound> {
        let mut kept = lock(&self.kept);
        let max_keys = cfg.traffic.max_keys;
        let mut limits_now = HashMap::new();
        let limits = cfg
            .limits
            .iter()
            .map(|l| {
                let cells = kept
                    .limits
                    .get(&l.id)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Cells::new(l, max_keys)));
                limits_now.insert(l.id.clone(), cells.clone());
                cells
            })
            .collect();
        let mut plans_now = HashMap::new();
        let mut plans = Vec::with_capacity(cfg.usage_plans.len());
        for p in &cfg.usage_plans {
            let mut cells = Vec::with_capacity(p.secret_ids.len());
            for s in &p.secret_ids {
                let id = (p.name.clone(), s.clone());
                let cell = match kept.plans.get(&id) {
                    Some(c) => c.clone(),
                    None => {
                        let c = PlanCell::default();
                        if let Some((start, used)) = kept.saved.remove(&id) {
                            *lock(&c.quota) = QuotaState { start, used };
                        }
                        Arc::new(c)
                    }
                };
                plans_now.insert(id, cell.clone());
                cells.push(cell);
            }
            plans.push(cells);
        }
        kept.limits = limits_now;
        kept.plans = plans_now;
        Arc::new(Bound {
            epoch: self.epoch,
            limits,
            plans,
        })
    }

    /// Every (plan, secret_id)'s quota state, for the state file: those bound now, and saved
    /// ones no configuration has claimed yet (a plan removed and restored keeps its count
    /// while the process lives).
    pub fn quota_snapshot(&self) -> Saved {
        let kept = lock(&self.kept);
        let mut out = kept.saved.clone();
        for (id, cell) in &kept.plans {
            let q = *lock(&cell.quota);
            if q.used > 0 {
                out.insert(id.clone(), (q.start, q.used));
            }
        }
        out
    }

    /// (plan, secret_id)'s quota state, without binding anything: the bound counter, else a
    /// saved count no configuration has claimed yet, else `None`. For `/usage`, which must
    /// not bind (a binding prunes every counter the configuration it is given lacks, and
    /// the admin thread's configuration may already be an old one).
    pub fn quota_state(&self, plan: &str, secret_id: &str) -> Option<QuotaState> {
        let kept = lock(&self.kept);
        let id = (plan.to_string(), secret_id.to_string());
        if let Some(cell) = kept.plans.get(&id) {
            return Some(*lock(&cell.quota));
        }
        kept.saved
            .get(&id)
            .map(|&(start, used)| QuotaState { start, used })
    }

    /// Adds `used` requests counted by another process (a predecessor's last counts, after
    /// an upgrade) to (plan, secret_id)'s quota of the period starting at `start`: to the
    /// bound counter, else to the saved counts a binding will claim. A count of an older
    /// period than the one held is ignored; one of a newer period replaces it.
    pub fn add_quota(&self, plan: &str, secret_id: &str, start: u64, used: u64) {
        let mut kept = lock(&self.kept);
        let id = (plan.to_string(), secret_id.to_string());
        let merge = |q: &mut QuotaState| {
            if q.start == start {
                q.used = q.used.saturating_add(used);
            } else if start > q.start {
                *q = QuotaState { start, used };
            }
        };
        if let Some(cell) = kept.plans.get(&id) {
            merge(&mut lock(&cell.quota));
            return;
        }
        let e = kept.saved.entry(id).or_insert((start, 0));
        let mut q = QuotaState {
            start: e.0,
            used: e.1,
        };
        merge(&mut q);
        *e = (q.start, q.used);
    }

    /// Every (plan, bound secret_id) of `cfg` with its quota at `unix` (seconds), in the
    /// configuration's order (`/usage`). Reads only; see [`Registry::quota_state`].
    pub fn usage<'c>(&self, cfg: &'c Config, unix: u64) -> Vec<Usage<'c>> {
        let mut out = Vec::new();
        for p in &cfg.usage_plans {
            for s in &p.secret_ids {
                let quota = p.quota_rule().map(|q| {
                    let state = self.quota_state(&p.name, s).unwrap_or_default();
                    let used = q.used(&state, unix);
                    QuotaUsage {
                        used,
                        remaining: q.max.saturating_sub(used),
                        resets: p.period.bounds(unix).map(|(_, end)| end),
                    }
                });
                out.push(Usage {
                    plan: &p.name,
                    secret_id: s,
                    quota,
                });
            }
        }
        out
    }
}

/// One (plan, secret_id)'s counters as `/usage` shows them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage<'c> {
    pub plan: &'c str,
    pub secret_id: &'c str,
    /// `None`: the plan has no `max_requests`.
    pub quota: Option<QuotaUsage>,
}

/// A quota's numbers in the current period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaUsage {
    pub used: u64,
    pub remaining: u64,
    /// Unix seconds when the period ends; `None` for a total quota.
    pub resets: Option<u64>,
}

/// The plan index and secret index of `secret_id` in `plan`.
pub fn secret_index(plan: &UsagePlan, secret_id: &str) -> Option<usize> {
    plan.secret_ids.iter().position(|s| s == secret_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{Clock, Counters, Verdict};

    /// 2026-12-07T19:20:00Z.
    const NOW: u64 = 1_796_671_200;

    fn config(plans: &str) -> Config {
        let text = format!(
            r#"
[server]
listen_http = ["127.0.0.1:0"]
admin_listen = "off"
[[services]]
name = "s"
[[services.apis]]
name = "a"
path = "/a"
auth = "key_pair"
[services.apis.backend]
type = "mock"
[[key_pairs]]
secret_id = "AKIDone00"
secret_key = "secret-key-one"
services = ["s"]
[[key_pairs]]
secret_id = "AKIDtwo00"
secret_key = "secret-key-two"
services = ["s"]
{plans}"#
        );
        match crate::config::load_str(&text, std::path::Path::new("t.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    const PLANS: &str = r#"
[[usage_plans]]
name = "gold"
max_requests = 10
quota_period = "day"
secret_ids = ["AKIDone00", "AKIDtwo00"]
services = ["s"]
[[usage_plans]]
name = "fast"
max_requests_per_second = 5
secret_ids = ["AKIDone00"]
services = ["s"]
[[usage_plans]]
name = "life"
max_requests = 3
secret_ids = ["AKIDtwo00"]
services = ["s"]
"#;

    #[test]
    fn usage_reads_every_bound_pair_without_binding() {
        let cfg = config(PLANS);
        let registry = Registry::default();
        registry.restore(HashMap::from([(
            ("life".to_string(), "AKIDtwo00".to_string()),
            (0, 2),
        )]));
        let counters = Counters::local(registry.bind(&cfg));
        let now = Clock { mono: 0, unix: NOW };
        for _ in 0..4 {
            assert!(matches!(
                counters.take_plan_quota(0, 0, &cfg.usage_plans[0], &now),
                Verdict::Admit(_)
            ));
        }
        let day_end = Some(1_796_688_000); // 2026-12-08T00:00:00Z
        let rows = registry.usage(&cfg, NOW);
        let got: Vec<_> = rows
            .iter()
            .map(|u| (u.plan, u.secret_id, u.quota))
            .collect();
        let q = |used, remaining, resets| {
            Some(QuotaUsage {
                used,
                remaining,
                resets,
            })
        };
        assert_eq!(
            got,
            [
                ("gold", "AKIDone00", q(4, 6, day_end)),
                ("gold", "AKIDtwo00", q(0, 10, day_end)),
                ("fast", "AKIDone00", None),
                ("life", "AKIDtwo00", q(2, 1, None)),
            ]
        );
        // The next day the daily count is back to zero; reading bound nothing.
        assert_eq!(registry.usage(&cfg, NOW + 86_400)[0].quota.unwrap().used, 0);
        assert_eq!(registry.quota_state("gold", "AKIDone00").unwrap().used, 4);
        assert_eq!(registry.quota_state("nope", "AKIDone00"), None);
    }

    #[test]
    fn added_counts_go_to_the_bound_counter_or_wait_for_a_binding() {
        let cfg = config(PLANS);
        let registry = Registry::default();
        let day = NOW / 86_400 * 86_400;
        registry.add_quota("gold", "AKIDone00", day, 3);
        assert_eq!(
            registry.quota_state("gold", "AKIDone00"),
            Some(QuotaState {
                start: day,
                used: 3
            })
        );
        let bound = registry.bind(&cfg);
        registry.add_quota("gold", "AKIDone00", day, 2);
        assert_eq!(lock(&bound.plans[0][0].quota).used, 5);
        // An older period's count is ignored; a newer one replaces the count.
        registry.add_quota("gold", "AKIDone00", day - 86_400, 7);
        assert_eq!(lock(&bound.plans[0][0].quota).used, 5);
        registry.add_quota("gold", "AKIDone00", day + 86_400, 1);
        assert_eq!(
            *lock(&bound.plans[0][0].quota),
            QuotaState {
                start: day + 86_400,
                used: 1
            }
        );
    }
}

//! The counting algorithms, as plain state and pure functions of a clock reading: the
//! process store keeps these states under its locks, the tests drive them with a fake clock.
//!
//! - [`Gcra`]: per-second limits and plan rates. The generic cell rate algorithm keeps one
//!   number, the theoretical arrival time (TAT); a request fits when the TAT, pushed one
//!   emission interval `T = 1 s / requests` further, is at most `requests × T` ahead of now.
//!   From rest, `requests` requests pass at once (the burst of one window) and then one every
//!   `T`, refilling continuously.
//! - [`Window`]: per-minute, per-hour and per-day limits, where SPEC §8 asks for at most
//!   `requests` within *any* window. A GCRA with a burst admits up to `2 × requests − 1` in
//!   some window, so these count in [`SLOTS`] slots of `window / SLOTS` each: a request is
//!   admitted when every slot overlapping the last `window` holds fewer than `requests` in
//!   all. Counting the oldest slot whole makes the bound exact (a window never holds more than
//!   `requests`) at the price of a request counting for up to one slot (5%) longer than its
//!   window.
//! - [`Quota`]: a plan's `max_requests` per UTC calendar period ([`Period`]), or in total.
//!
//! Times are nanoseconds on a monotonic clock (rates) or Unix seconds (quota periods). A
//! take that is refused changes nothing; a take that is given back ([`Gcra::give_back`],
//! ...) undoes itself exactly, for a request a later policy refused.

use std::time::Duration;

pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// How many slots make a [`Window`].
pub const SLOTS: usize = 20;

/// Slots a [`Window`] counts: the window's own and the one the window's start falls in.
const RING: u64 = SLOTS as u64 + 1;

/// What a policy says about a request it admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Requests left now (`RateLimit: r=`).
    pub remaining: u64,
    /// Nanoseconds until the whole allowance is back (`t=`); `None`: never (a total quota).
    pub reset_ns: Option<u64>,
}

/// A refusal: the earliest moment a retry can pass, in nanoseconds from now; `None` when no
/// moment is known (a total quota: only an operator can raise it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused {
    pub retry_ns: Option<u64>,
}

pub type Take = Result<Admitted, Refused>;

/// GCRA parameters: `requests` per `period_ns`, a burst of `requests`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// The emission interval `T`, in nanoseconds (at least 1).
    pub emission_ns: u64,
    pub burst: u64,
}

impl Gcra {
    pub fn per_second(requests: u64) -> Gcra {
        Gcra::new(requests, NANOS_PER_SEC)
    }

    pub fn new(requests: u64, period_ns: u64) -> Gcra {
        let requests = requests.max(1);
        Gcra {
            emission_ns: (period_ns / requests).max(1),
            burst: requests,
        }
    }

    /// How far ahead of now the TAT may be after a take: the whole burst.
    fn tolerance(self) -> u64 {
        self.emission_ns.saturating_mul(self.burst)
    }

    /// Takes one request at `now`; `tat` is the state (0: at rest).
    pub fn take(self, tat: &mut u64, now: u64) -> Take {
        let base = (*tat).max(now);
        let next = base.saturating_add(self.emission_ns);
        let ahead = next - now;
        if ahead > self.tolerance() {
            // One more request fits once `next - tolerance` has come.
            return Err(Refused {
                retry_ns: Some(ahead - self.tolerance()),
            });
        }
        *tat = next;
        Ok(Admitted {
            remaining: (self.tolerance() - ahead) / self.emission_ns,
            reset_ns: Some(ahead),
        })
    }

    /// What a take would say now, without taking (for headers of a policy that was not
    /// the nearest one, and for `/usage`).
    pub fn peek(self, tat: u64, now: u64) -> Admitted {
        let ahead = tat.saturating_sub(now).min(self.tolerance());
        Admitted {
            remaining: (self.tolerance() - ahead) / self.emission_ns,
            reset_ns: Some(ahead),
        }
    }

    /// Undoes one take made at or before `now`.
    pub fn give_back(self, tat: &mut u64, now: u64) {
        *tat = tat.saturating_sub(self.emission_ns).max(now.min(*tat));
    }

    /// The state is at rest: forgetting it loses nothing.
    pub fn at_rest(tat: u64, now: u64) -> bool {
        tat <= now
    }
}

/// A sliding window of [`SLOTS`] slots (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    pub slot_ns: u64,
}

/// A [`Window`]'s counts: `counts[i % RING]` holds slot `i` for `i` in
/// `newest - SLOTS ..= newest`, every slot that overlaps the last window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowState {
    newest: u64,
    counts: [u32; SLOTS + 1],
}

impl Window {
    pub fn new(limit: u64, window: Duration) -> Window {
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Window {
            limit: limit.max(1),
            slot_ns: (window_ns / SLOTS as u64).max(1),
        }
    }

    /// Moves the ring to the slot of `now`, clearing slots that left it.
    fn advance(self, s: &mut WindowState, now: u64) -> u64 {
        let cur = now / self.slot_ns;
        if cur > s.newest {
            let gap = (cur - s.newest).min(RING);
            for i in 1..=gap {
                s.counts[((s.newest + i) % RING) as usize] = 0;
            }
            s.newest = cur;
        }
        cur
    }

    fn used(s: &WindowState) -> u64 {
        s.counts.iter().map(|&c| u64::from(c)).sum()
    }

    /// Nanoseconds until the oldest non-empty slot leaves the window (0 when all are empty).
    fn until_oldest_leaves(self, s: &WindowState, now: u64) -> u64 {
        let first = s.newest.saturating_sub(SLOTS as u64);
        (first..=s.newest)
            .find(|i| s.counts[(i % RING) as usize] > 0)
            .map_or(0, |i| ((i + RING) * self.slot_ns).saturating_sub(now))
    }

    pub fn take(self, s: &mut WindowState, now: u64) -> Take {
        let cur = self.advance(s, now);
        let used = Self::used(s);
        if used >= self.limit {
            return Err(Refused {
                retry_ns: Some(self.until_oldest_leaves(s, now).max(1)),
            });
        }
        let c = &mut s.counts[(cur % RING) as usize];
        *c = c.saturating_add(1);
        Ok(Admitted {
            remaining: self.limit - used - 1,
            reset_ns: Some(self.until_oldest_leaves(s, now)),
        })
    }

    pub fn peek(self, s: &WindowState, now: u64) -> Admitted {
        let mut s = *s;
        self.advance(&mut s, now);
        let used = Self::used(&s);
        Admitted {
            remaining: self.limit.saturating_sub(used),
            reset_ns: Some(self.until_oldest_leaves(&s, now)),
        }
    }

    /// Undoes one take made at `taken` (a slot that is gone needs nothing).
    pub fn give_back(self, s: &mut WindowState, taken: u64) {
        let slot = taken / self.slot_ns;
        if slot + RING > s.newest && slot <= s.newest {
            let c = &mut s.counts[(slot % RING) as usize];
            *c = c.saturating_sub(1);
        }
    }

    pub fn at_rest(self, s: &WindowState, now: u64) -> bool {
        let mut s = *s;
        self.advance(&mut s, now);
        Self::used(&s) == 0
    }
}

/// A quota's period: calendar periods in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    Total,
    Month,
    Day,
    Hour,
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31) (Howard Hinnant's civil_from_days).
pub fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Period {
    /// The period `unix` (seconds) falls in: its first and its end second (exclusive), or
    /// `None` for a total quota.
    pub fn bounds(self, unix: u64) -> Option<(u64, u64)> {
        let days = (unix / 86_400) as i64;
        match self {
            Period::Total => None,
            Period::Hour => Some((unix / 3600 * 3600, unix / 3600 * 3600 + 3600)),
            Period::Day => Some((days as u64 * 86_400, (days as u64 + 1) * 86_400)),
            Period::Month => {
                let (y, m, _) = civil(days);
                let start = days_from_civil(y, m, 1);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let end = days_from_civil(ny, nm, 1);
                Some((start as u64 * 86_400, end as u64 * 86_400))
            }
        }
    }

    /// A name for the period `unix` falls in (`2026-12`, `2026-12-07`, `2026-12-07T19`,
    /// `total`): the state file's and Redis's key for it.
    pub fn label(self, unix: u64) -> String {
        let (y, m, d) = civil((unix / 86_400) as i64);
        match self {
            Period::Total => "total".into(),
            Period::Month => format!("{y:04}-{m:02}"),
            Period::Day => format!("{y:04}-{m:02}-{d:02}"),
            Period::Hour => format!("{y:04}-{m:02}-{d:02}T{:02}", unix % 86_400 / 3600),
        }
    }

    /// Seconds of the period `unix` falls in (`RateLimit-Policy: w=`); `None` for total.
    pub fn length(self, unix: u64) -> Option<u64> {
        self.bounds(unix).map(|(a, b)| b - a)
    }
}

/// A quota's state: how much of the period starting at `start` is used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaState {
    pub start: u64,
    pub used: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    pub max: u64,
    pub period: Period,
}

impl Quota {
    /// Starts a new period when `unix` is past the state's.
    fn roll(self, s: &mut QuotaState, unix: u64) -> Option<u64> {
        match self.period.bounds(unix) {
            None => None,
            Some((start, end)) => {
                if s.start != start {
                    *s = QuotaState { start, used: 0 };
                }
                Some(end)
            }
        }
    }

    pub fn take(self, s: &mut QuotaState, unix: u64) -> Take {
        let end = self.roll(s, unix);
        let reset_ns = end.map(|e| (e - unix) * NANOS_PER_SEC);
        if s.used >= self.max {
            return Err(Refused { retry_ns: reset_ns });
        }
        s.used += 1;
        Ok(Admitted {
            remaining: self.max - s.used,
            reset_ns,
        })
    }

    pub fn peek(self, s: &QuotaState, unix: u64) -> Admitted {
        let mut s = *s;
        let end = self.roll(&mut s, unix);
        Admitted {
            remaining: self.max.saturating_sub(s.used),
            reset_ns: end.map(|e| (e - unix) * NANOS_PER_SEC),
        }
    }

    /// Undoes one take of the period starting at `start`.
    pub fn give_back(self, s: &mut QuotaState, start: u64) {
        if s.start == start {
            s.used = s.used.saturating_sub(1);
        }
    }

    /// Used in the period `unix` falls in.
    pub fn used(self, s: &QuotaState, unix: u64) -> u64 {
        let mut s = *s;
        self.roll(&mut s, unix);
        s.used
    }

    /// The period start a take at `unix` counts in (0 for total).
    pub fn period_start(self, unix: u64) -> u64 {
        self.period.bounds(unix).map_or(0, |(a, _)| a)
    }
}

#[cfg(test)]
mod tests;

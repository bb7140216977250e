//! Traffic policies as configured (SPEC §8), typed: usage plans, limits and where counters
//! live. Built by [`crate::config`] from the file; read by the gateway's stages and by the
//! counter stores.

use std::path::PathBuf;
use std::time::Duration;

use super::algo::{Gcra, Period, Quota, Window};

/// Whose requests a limit counts together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// Every request to the service (a service limit only).
    Service,
    /// Every request to the API (on a service limit: each API of the service separately).
    Api,
    /// Per client IP (the TCP peer or the PROXY protocol source).
    Ip,
    /// Per authenticated caller (`secret_id` or the token's `sub`); without one, per IP.
    Caller,
}

impl LimitKey {
    pub fn name(self) -> &'static str {
        match self {
            LimitKey::Service => "service",
            LimitKey::Api => "api",
            LimitKey::Ip => "ip",
            LimitKey::Caller => "caller",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Per {
    Second,
    Minute,
    Hour,
    Day,
}

impl Per {
    pub fn seconds(self) -> u64 {
        match self {
            Per::Second => 1,
            Per::Minute => 60,
            Per::Hour => 3600,
            Per::Day => 86_400,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Per::Second => "second",
            Per::Minute => "minute",
            Per::Hour => "hour",
            Per::Day => "day",
        }
    }
}

/// How a limit counts: a GCRA for per-second limits, a sliding window for longer ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    Gcra(Gcra),
    Window(Window),
}

/// One `[[services.limits]]` or `[[services.apis.limits]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    pub key: LimitKey,
    pub requests: u64,
    pub per: Per,
    /// The service it belongs to (index into `Config::services`).
    pub service: usize,
    /// The API it was written on; `None` for a service limit.
    pub api: Option<usize>,
    /// What keeps its counters across reloads: service, API name, key and window.
    pub id: String,
    /// `limit-<n>`: `n` counts the service's limits first, then the API's, from 1.
    pub name: String,
}

impl Limit {
    pub fn rate(&self) -> Rate {
        match self.per {
            Per::Second => Rate::Gcra(Gcra::per_second(self.requests)),
            per => Rate::Window(Window::new(
                self.requests,
                Duration::from_secs(per.seconds()),
            )),
        }
    }
}

/// One `[[usage_plans]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsagePlan {
    pub name: String,
    /// `max_requests_per_second`, per bound secret_id.
    pub rate: Option<u64>,
    /// `max_requests` per `quota_period`, per bound secret_id.
    pub quota: Option<u64>,
    pub period: Period,
    pub secret_ids: Vec<String>,
    /// Indexes into `Config::services`.
    pub services: Vec<usize>,
}

impl UsagePlan {
    pub fn gcra(&self) -> Option<Gcra> {
        self.rate.map(Gcra::per_second)
    }

    pub fn quota_rule(&self) -> Option<Quota> {
        self.quota.map(|max| Quota {
            max,
            period: self.period,
        })
    }

    pub fn period_name(&self) -> &'static str {
        match self.period {
            Period::Total => "total",
            Period::Month => "month",
            Period::Day => "day",
            Period::Hour => "hour",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    Local,
    Redis,
}

/// What a request meets when the Redis store fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnStoreFailure {
    /// Enforce every limit on this instance alone.
    Local,
    Allow,
    /// 503 `rate limit store unavailable`.
    Deny,
}

/// `[traffic]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Traffic {
    pub store: StoreKind,
    pub state_file: Option<PathBuf>,
    /// `redis_url` as written (checked by the build).
    pub redis_url: Option<String>,
    pub redis_timeout: Duration,
    pub on_store_failure: OnStoreFailure,
    /// The most distinct IPs or callers one limit keeps counters for.
    pub max_keys: usize,
}

pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 50;
pub const DEFAULT_MAX_KEYS: u64 = 100_000;

impl Default for Traffic {
    fn default() -> Traffic {
        Traffic {
            store: StoreKind::Local,
            state_file: None,
            redis_url: None,
            redis_timeout: Duration::from_millis(DEFAULT_REDIS_TIMEOUT_MS),
            on_store_failure: OnStoreFailure::Local,
            max_keys: DEFAULT_MAX_KEYS as usize,
        }
    }
}

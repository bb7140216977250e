//! Traffic control's configuration (SPEC §8): limits on services and APIs, usage plans and
//! `[traffic]`, checked with every error collected like the rest of the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::build::{Ctx, key};
use super::file::{FileLimit, FileTraffic, FileUsagePlan};
use super::model::{KeyPair, Service};
use crate::traffic::algo::Period;
use crate::traffic::policy::{
    DEFAULT_MAX_KEYS, DEFAULT_REDIS_TIMEOUT_MS, Limit, LimitKey, OnStoreFailure, Per, StoreKind,
    Traffic, UsagePlan,
};

/// The largest `requests` or quota: far past any real limit, small enough for the counters.
pub const MAX_REQUESTS: i64 = 1_000_000_000_000;
pub const MAX_REDIS_TIMEOUT_MS: u64 = 60_000;
pub const MIN_MAX_KEYS: u64 = 16;
pub const MAX_MAX_KEYS: u64 = 100_000_000;

/// Where one list of limits sits.
pub(super) struct LimitsAt<'a> {
    /// `services[i].limits` or `services[i].apis[j].limits`.
    pub key: &'a str,
    pub service: usize,
    pub service_name: &'a str,
    /// The API it is written on (`None`: a service limit).
    pub api: Option<(usize, &'a str)>,
    /// Limits numbered before these (the service's, for an API's list).
    pub before: usize,
}

/// Builds one list of limits into `out`; returns their indexes.
pub(super) fn build_limits(
    cx: &mut Ctx,
    at: &LimitsAt<'_>,
    file: &[FileLimit],
    out: &mut Vec<Limit>,
) -> Vec<usize> {
    let mut made: Vec<usize> = Vec::new();
    for (i, l) in file.iter().enumerate() {
        let k = format!("{}[{i}]", at.key);
        let mut keys = vec![
            ("api", LimitKey::Api),
            ("ip", LimitKey::Ip),
            ("caller", LimitKey::Caller),
        ];
        if at.api.is_none() {
            keys.insert(0, ("service", LimitKey::Service));
        }
        let limit_key = match cx.require(&key(&k, "key"), l.key.as_deref()) {
            Some("service") if at.api.is_some() => {
                cx.err(
                    key(&k, "key"),
                    "\"service\" is for a service's limits ([[services.limits]]); an API's limit counts by \"api\", \"ip\" or \"caller\"",
                );
                None
            }
            Some(v) => {
                let before = cx.errors.len();
                let t = cx.choice(&key(&k, "key"), Some(v), LimitKey::Api, &keys);
                (cx.errors.len() == before).then_some(t)
            }
            None => None,
        };
        let requests = requests(cx, &key(&k, "requests"), l.requests, true);
        let per = cx.choice(
            &key(&k, "per"),
            l.per.as_deref(),
            Per::Second,
            &[
                ("second", Per::Second),
                ("minute", Per::Minute),
                ("hour", Per::Hour),
                ("day", Per::Day),
            ],
        );
        let (Some(limit_key), Some(requests)) = (limit_key, requests) else {
            continue;
        };
        if let Some(&o) = made
            .iter()
            .find(|&&o| out[o].key == limit_key && out[o].per == per)
        {
            cx.err(
                key(&k, "key"),
                format!(
                    "a second limit by \"{}\" per {} (the first is {}); keep one",
                    limit_key.name(),
                    per.name(),
                    out[o].name
                ),
            );
            continue;
        }
        let api_name = at.api.map_or("", |(_, n)| n);
        made.push(out.len());
        out.push(Limit {
            key: limit_key,
            requests,
            per,
            service: at.service,
            api: at.api.map(|(j, _)| j),
            id: format!(
                "{}\u{0}{api_name}\u{0}{}\u{0}{}",
                at.service_name,
                limit_key.name(),
                per.name()
            ),
            name: format!("limit-{}", at.before + i + 1),
        });
    }
    made
}

/// `requests`, `max_requests` and `max_requests_per_second`: at least 1.
fn requests(cx: &mut Ctx, k: &str, v: Option<i64>, required: bool) -> Option<u64> {
    match v {
        None if required => {
            cx.err(k, "is required");
            None
        }
        None => None,
        Some(n) if !(1..=MAX_REQUESTS).contains(&n) => {
            cx.err(k, format!("{n} is out of range 1..={MAX_REQUESTS}"));
            None
        }
        Some(n) => Some(n as u64),
    }
}

/// `[[usage_plans]]`; also records in each service the plans that name it.
pub(super) fn build_plans(
    cx: &mut Ctx,
    plans: &[FileUsagePlan],
    services: &mut [Service],
    key_pairs: &[KeyPair],
) -> Vec<UsagePlan> {
    let mut out: Vec<UsagePlan> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let k = format!("usage_plans[{i}]");
        let name = cx
            .name(&key(&k, "name"), p.name.as_ref())
            .unwrap_or_default()
            .to_string();
        if name.contains(['"', '\\']) || name.chars().any(char::is_control) {
            cx.err(
                key(&k, "name"),
                "must not contain quotes, backslashes or control characters (it is sent in the RateLimit headers)",
            );
        }
        if !name.is_empty() && out.iter().any(|o| o.name == name) {
            cx.err(
                key(&k, "name"),
                format!("usage plan \"{name}\" is defined twice"),
            );
        }
        let rate = requests(
            cx,
            &key(&k, "max_requests_per_second"),
            p.max_requests_per_second,
            false,
        );
        let quota = requests(cx, &key(&k, "max_requests"), p.max_requests, false);
        let period = cx.choice(
            &key(&k, "quota_period"),
            p.quota_period.as_deref(),
            Period::Total,
            &[
                ("total", Period::Total),
                ("month", Period::Month),
                ("day", Period::Day),
                ("hour", Period::Hour),
            ],
        );
        let mut secret_ids: Vec<String> = Vec::new();
        for (j, id) in p.secret_ids.iter().flatten().enumerate() {
            let sk = format!("{k}.secret_ids[{j}]");
            if !key_pairs.iter().any(|kp| kp.secret_id == *id) {
                cx.err(
                    sk,
                    format!("\"{id}\" has no key pair ([[key_pairs]] secret_id)"),
                );
            } else if secret_ids.contains(id) {
                cx.err(sk, format!("\"{id}\" is listed twice"));
            } else {
                secret_ids.push(id.clone());
            }
        }
        let mut bound = Vec::new();
        let names = cx.require(&key(&k, "services"), p.services.as_ref());
        if names.is_some_and(|n| n.is_empty()) {
            cx.err(
                key(&k, "services"),
                "is empty: name the services the plan applies to",
            );
        }
        for (j, s) in names.into_iter().flatten().enumerate() {
            match services.iter().position(|svc| svc.name == *s) {
                Some(idx) if bound.contains(&idx) => {
                    cx.err(
                        format!("{k}.services[{j}]"),
                        format!("\"{s}\" is listed twice"),
                    );
                }
                Some(idx) => bound.push(idx),
                None => cx.err(
                    format!("{k}.services[{j}]"),
                    format!("\"{s}\" is not a service"),
                ),
            }
        }
        for &idx in &bound {
            services[idx].plans.push(out.len());
        }
        out.push(UsagePlan {
            name,
            rate,
            quota,
            period,
            secret_ids,
            services: bound,
        });
    }
    out
}

/// `[traffic]`.
pub(super) fn build_traffic(cx: &mut Ctx, t: Option<&FileTraffic>) -> Traffic {
    let default = FileTraffic::default();
    let t = t.unwrap_or(&default);
    let store = cx.choice(
        "traffic.store",
        t.store.as_deref(),
        StoreKind::Local,
        &[("local", StoreKind::Local), ("redis", StoreKind::Redis)],
    );
    let on_store_failure = cx.choice(
        "traffic.on_store_failure",
        t.on_store_failure.as_deref(),
        OnStoreFailure::Local,
        &[
            ("local", OnStoreFailure::Local),
            ("allow", OnStoreFailure::Allow),
            ("deny", OnStoreFailure::Deny),
        ],
    );
    let state_file = t.state_file.as_deref().map(|p| {
        let path = PathBuf::from(p);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if p.is_empty() || !dir.is_dir() {
            cx.err(
                "traffic.state_file",
                format!("directory {} does not exist", dir.display()),
            );
        }
        path
    });
    match (&t.redis_url, store) {
        (None, StoreKind::Redis) => cx.err(
            "traffic.redis_url",
            "is required with store = \"redis\" (redis://host:port/db)",
        ),
        (Some(u), _) => {
            if let Err(e) = crate::traffic::redis::url::RedisUrl::parse(u) {
                cx.err("traffic.redis_url", e);
            }
        }
        (None, StoreKind::Local) => {}
    }
    let redis_timeout = Duration::from_millis(cx.number(
        "traffic.redis_timeout_ms",
        t.redis_timeout_ms,
        DEFAULT_REDIS_TIMEOUT_MS,
        1,
        MAX_REDIS_TIMEOUT_MS,
    ));
    let max_keys = cx.number(
        "traffic.max_keys",
        t.max_keys,
        DEFAULT_MAX_KEYS,
        MIN_MAX_KEYS,
        MAX_MAX_KEYS,
    ) as usize;
    Traffic {
        store,
        state_file,
        redis_url: t.redis_url.clone(),
        redis_timeout,
        on_store_failure,
        max_keys,
    }
}

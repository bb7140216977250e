//! The limit stage (SPEC §8), after the usage plans and before params: the service's limits,
//! then the API's, each counted per its key — the service, the API, the client IP, or the
//! caller (the IP for a request without one).
//!
//! This module also holds what both traffic stages share ([`Cx`], [`Stop`], [`judge`]): each
//! takes from the worker's [`Counters`] and records the take in the request's [`Pass`], so
//! that a refusal by any policy gives back every earlier take. An API with no plan and no
//! limit never gets here (`decide` tests both lists first): no lookup, no lock, no
//! allocation.

use std::net::IpAddr;

use super::auth::Identity;
use crate::config::{Api, Config, LimitKey};
use crate::error::{ErrorKind, GatewayError};
use crate::traffic::algo::Admitted;
use crate::traffic::{
    Clock, Counters, KeyRef, Nearest, Pass, PolicyKind, RateInfo, TOTAL_QUOTA_RETRY_AFTER, Taken,
    Ticket, Verdict, ceil_secs,
};

/// Why a traffic stage stopped a request.
#[derive(Debug)]
pub enum Stop<'c> {
    /// Answer this error (with the refusing policy's headers for a 429).
    Refuse(Box<(GatewayError, Option<RateInfo<'c>>)>),
    /// The store must answer first; every take of this pass was given back.
    Pending,
}

/// A policy's verdict, turned into a take recorded in `pass` or a stop.
pub(super) fn judge<'c, 'r>(
    cx: &Cx<'c, '_>,
    pass: &mut Pass<'c, 'r>,
    v: Verdict,
    taken: Taken<'r>,
    policy: (PolicyKind, &'c str, u64, Option<u64>),
    over: ErrorKind,
) -> Result<(), Stop<'c>> {
    let nearest = |admitted| Nearest {
        kind: policy.0,
        name: policy.1,
        quota: policy.2,
        window: policy.3,
        admitted,
    };
    match v {
        Verdict::Admit(a) | Verdict::Leased(a) => {
            let leased = matches!(v, Verdict::Leased(_));
            pass.admitted(Ticket { of: taken, leased }, nearest(a));
            Ok(())
        }
        Verdict::Uncounted => Ok(()),
        Verdict::Refuse(r) => {
            pass.undo(cx.cfg, cx.counters, cx.now);
            let retry_after = Some(r.retry_ns.map_or(TOTAL_QUOTA_RETRY_AFTER, ceil_secs));
            let admitted = Admitted {
                remaining: 0,
                reset_ns: r.retry_ns,
            };
            let info = RateInfo {
                policy: nearest(admitted),
                retry_after,
            };
            Err(Stop::Refuse(Box::new((
                GatewayError::new(over),
                Some(info),
            ))))
        }
        Verdict::Pending => {
            pass.undo(cx.cfg, cx.counters, cx.now);
            Err(Stop::Pending)
        }
        Verdict::Unavailable => {
            pass.undo(cx.cfg, cx.counters, cx.now);
            Err(Stop::Refuse(Box::new((
                GatewayError::new(ErrorKind::StoreUnavailable),
                None,
            ))))
        }
    }
}

/// What both stages read.
pub struct Cx<'c, 'a> {
    pub cfg: &'c Config,
    pub counters: &'a Counters,
    pub now: &'a Clock,
}

/// The limit stage (see the module docs).
pub fn check<'c, 'r>(
    cx: &Cx<'c, '_>,
    api: &'c Api,
    api_index: usize,
    identity: &'r Identity<'c>,
    client: IpAddr,
    pass: &mut Pass<'c, 'r>,
) -> Result<(), Stop<'c>> {
    for &i in &api.limits {
        let limit = &cx.cfg.limits[i];
        let key = match limit.key {
            LimitKey::Service => KeyRef::One,
            LimitKey::Api if limit.api.is_some() => KeyRef::One,
            LimitKey::Api => KeyRef::Api(api_index),
            LimitKey::Ip => KeyRef::Ip(client),
            LimitKey::Caller => identity.caller().map_or(KeyRef::Ip(client), KeyRef::Caller),
        };
        let v = cx.counters.take_limit(i, limit, key, cx.now);
        let t = Taken::Limit {
            index: i,
            key,
            at: cx.now.mono,
        };
        let policy = (
            PolicyKind::Limit,
            limit.name.as_str(),
            limit.requests,
            Some(limit.per.seconds()),
        );
        judge(cx, pass, v, t, policy, ErrorKind::RateLimited)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! The usage-plan stage (SPEC §8), after auth: a service that at least one plan names admits
//! key-pair callers only through a plan binding their `secret_id` (403 `Found no validate
//! usage plan.` otherwise). Every plan binding both the caller and the service is checked and
//! all must allow: each (plan, secret_id) has its own rate (429 `API rate limit exceeded.`)
//! and quota (429 `API quota exceeded.`). Plans do not apply to `auth = "none"` or `oauth2`
//! APIs: those use limits with `key = "caller"`.

use super::auth::Identity;
use super::limits::{Cx, Stop, judge};
use crate::config::Service;
use crate::error::{ErrorKind, GatewayError};
use crate::traffic::local::secret_index;
use crate::traffic::{Pass, PolicyKind, Taken};

/// The usage-plan stage (see the module docs).
pub fn check<'c, 'r>(
    cx: &Cx<'c, '_>,
    service: &'c Service,
    identity: &'r Identity<'c>,
    pass: &mut Pass<'c, 'r>,
) -> Result<(), Stop<'c>> {
    if service.plans.is_empty() {
        return Ok(());
    }
    let Identity::SecretId(id) = identity else {
        return Ok(());
    };
    let mut bound = false;
    for &p in &service.plans {
        let plan = &cx.cfg.usage_plans[p];
        let Some(s) = secret_index(plan, id) else {
            continue;
        };
        bound = true;
        if let Some(rate) = plan.rate {
            let v = cx.counters.take_plan_rate(p, s, plan, cx.now);
            let t = Taken::PlanRate { plan: p, secret: s };
            let policy = (PolicyKind::PlanRate, plan.name.as_str(), rate, Some(1));
            judge(cx, pass, v, t, policy, ErrorKind::RateLimited)?;
        }
        if let Some(max) = plan.quota {
            let v = cx.counters.take_plan_quota(p, s, plan, cx.now);
            let q = plan.quota_rule().map_or(0, |q| q.period_start(cx.now.unix));
            let t = Taken::PlanQuota {
                plan: p,
                secret: s,
                period: q,
            };
            let w = plan.period.length(cx.now.unix);
            let policy = (PolicyKind::PlanQuota, plan.name.as_str(), max, w);
            judge(cx, pass, v, t, policy, ErrorKind::QuotaExceeded)?;
        }
    }
    if !bound {
        pass.undo(cx.cfg, cx.counters, cx.now);
        return Err(Stop::Refuse(Box::new((
            GatewayError::new(ErrorKind::NoUsagePlan),
            None,
        ))));
    }
    Ok(())
}

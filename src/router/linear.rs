//! A naive matcher with the semantics of SPEC §2, written for obviousness, not speed.
//!
//! It scans every route of the host group and keeps the best per tier. It shares only the
//! per-pattern primitive ([`PathPattern::matches`]) and the host-group choice with the trie
//! path, so it serves as the reference in tests and fuzzing and as the baseline in
//! `benches/router.rs`.

use super::{Captures, PathPattern, RouteMatch, RouteMiss, RouteTable, Tier};
use crate::router::method::MethodSet;

impl RouteTable {
    /// Same answer as [`RouteTable::route`], by a linear scan.
    pub fn route_linear<'t>(
        &'t self,
        host: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<RouteMatch<'t>, RouteMiss> {
        let group = self.group_for(host).ok_or(RouteMiss::NoPath)?;
        let method = MethodSet::of_request(method);
        let mut path_hit = false;
        // Per tier: (route index, rank); a higher rank wins, ties go to the lower index.
        let mut best: [Option<(usize, (usize, bool))>; 4] = [None; 4];
        for (i, r) in group.routes.iter().enumerate() {
            let mut scratch = Captures::empty();
            if !r.pattern.matches(path, &mut scratch) {
                continue;
            }
            path_hit = true;
            if !r.methods.contains(method) {
                continue;
            }
            let tier = r.pattern.tier();
            let len = match &r.pattern {
                PathPattern::PriorityPrefix(l) | PathPattern::Prefix(l) => l.len(),
                _ => 0,
            };
            // Regex tier: configuration order alone. Others: longest, then exact method over ANY.
            let rank = match tier {
                Tier::Regex => (0, false),
                _ => (len, r.methods == method),
            };
            let slot = &mut best[tier as usize];
            if slot.is_none_or(|(_, old)| rank > old) {
                *slot = Some((i, rank));
            }
        }
        for (t, tier) in [Tier::Exact, Tier::PriorityPrefix, Tier::Regex, Tier::Prefix]
            .into_iter()
            .enumerate()
        {
            if let Some((i, (len, _))) = best[t] {
                let r = &group.routes[i];
                let mut captures = Captures::empty();
                r.pattern.matches(path, &mut captures);
                return Ok(RouteMatch {
                    service: r.service as usize,
                    api: r.api as usize,
                    tier,
                    prefix_len: len,
                    captures,
                });
            }
        }
        Err(if path_hit {
            RouteMiss::NoMethod
        } else {
            RouteMiss::NoPath
        })
    }
}

//! The route table: which API a request reaches (SPEC §2).
//!
//! Data flow: the raw request-target goes through [`target`] (split, dot segments resolved);
//! the Host picks a *group* (the service owning that exact host, else the one owning the
//! matching one-label wildcard, else all host-less services together); the group's arena
//! [`trie`] is walked once along the path to find the exact entry, the deepest `^~` entry
//! and the deepest plain-prefix entry whose method fits; only if neither exact nor `^~`
//! matched, a second walk tries the regex-tier candidates hung on the nodes of their literal
//! prefixes, lowest configuration index first. Captures are ranges into the path; nothing on
//! this path allocates.
//!
//! [`linear`] holds a deliberately naive matcher with the same semantics, the reference for
//! tests, the fuzz target and the benchmark baseline.

pub mod backend_path;
pub mod host;
pub mod linear;
pub mod method;
pub mod pattern;
pub mod target;
mod trie;

use std::collections::HashMap;

pub use backend_path::BackendPath;
pub use host::HostPattern;
pub use method::MethodSet;
pub use pattern::{Captures, PathPattern, Tier};

use host::{MAX_HOST_BYTES, normalize_host, wildcard_key};
use trie::{Builder, Entry, Slot, Trie};

/// The routing-relevant part of one service: input to [`RouteTable::build`].
#[derive(Clone, Debug)]
pub struct ServiceRoutes {
    pub hosts: Vec<HostPattern>,
    pub apis: Vec<ApiRoute>,
}

#[derive(Clone, Debug)]
pub struct ApiRoute {
    pub pattern: PathPattern,
    pub methods: MethodSet,
}

/// A reason the table cannot be built; the config layer turns it into a keyed error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conflict {
    /// `services[service].hosts[host]` is already a host of `other`.
    Host {
        service: usize,
        host: usize,
        other: usize,
    },
    /// `services[service].apis[api]` has the path and method of `other_service`'s `other_api`
    /// in the same host group, so it could never be reached.
    Route {
        service: usize,
        api: usize,
        other_service: usize,
        other_api: usize,
    },
}

/// Why no API was found (SPEC §2.4, §2.5); both are 404s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteMiss {
    /// No API's path matches.
    NoPath,
    /// Some API's path matches, but none of those has the request's method.
    NoMethod,
}

impl RouteMiss {
    /// The 404 of SPEC §2 for this miss.
    pub fn error(self, method: &str, path: &str, host: &str) -> crate::error::GatewayError {
        use crate::error::{ErrorKind, GatewayError};
        GatewayError::new(ErrorKind::NotFound(match self {
            RouteMiss::NoPath => format!("There is no api match uri[{path}] host[{host}]"),
            RouteMiss::NoMethod => {
                format!("There is no api match method[{method}] uri[{path}] host[{host}]")
            }
        }))
    }
}

/// The API a request reaches.
#[derive(Clone, Copy, Debug)]
pub struct RouteMatch<'t> {
    pub service: usize,
    pub api: usize,
    pub tier: Tier,
    /// For the prefix tiers: the length of the matched prefix.
    pub prefix_len: usize,
    pub captures: Captures<'t>,
}

pub(crate) struct Route {
    service: u32,
    api: u32,
    methods: MethodSet,
    pattern: PathPattern,
}

pub(crate) struct Group {
    routes: Vec<Route>,
    trie: Trie,
    /// `~*` regexes, keyed by their lowercase literal prefix; `None` when there are none.
    folded: Option<Trie>,
}

/// Most regex-bearing trie nodes a lookup remembers from its walk; a path along more of
/// them is walked a second time instead.
const MAX_REGEX_NODES: usize = 16;

pub struct RouteTable {
    groups: Vec<Group>,
    exact_hosts: HashMap<Box<str>, u32>,
    wildcard_hosts: HashMap<Box<str>, u32>,
    default_group: Option<u32>,
}

impl RouteTable {
    /// Builds the table; every conflict is reported, not just the first.
    pub fn build(services: &[ServiceRoutes]) -> Result<RouteTable, Vec<Conflict>> {
        let mut conflicts = Vec::new();
        let mut exact_hosts = HashMap::new();
        let mut wildcard_hosts = HashMap::new();
        let mut owner: HashMap<&HostPattern, usize> = HashMap::new();
        // Group membership: each service with hosts is its own group; host-less services share one.
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut default_group = None;
        for (s, svc) in services.iter().enumerate() {
            if svc.hosts.is_empty() {
                let g = *default_group.get_or_insert_with(|| {
                    members.push(Vec::new());
                    members.len() as u32 - 1
                });
                members[g as usize].push(s);
                continue;
            }
            let g = members.len() as u32;
            members.push(vec![s]);
            for (h, host) in svc.hosts.iter().enumerate() {
                if let Some(&other) = owner.get(host) {
                    if other != s {
                        conflicts.push(Conflict::Host {
                            service: s,
                            host: h,
                            other,
                        });
                    }
                    continue;
                }
                owner.insert(host, s);
                match host {
                    HostPattern::Exact(name) => exact_hosts.insert(name.clone(), g),
                    HostPattern::Wildcard(suffix) => wildcard_hosts.insert(suffix.clone(), g),
                };
            }
        }
        let groups = members
            .iter()
            .map(|m| build_group(services, m, &mut conflicts))
            .collect();
        if !conflicts.is_empty() {
            return Err(conflicts);
        }
        Ok(RouteTable {
            groups,
            exact_hosts,
            wildcard_hosts,
            default_group,
        })
    }

    /// Routes a request whose path is already resolved (see [`target`]). `host` is the raw
    /// Host header or absolute-form authority; `None` reaches only host-less services.
    pub fn route<'t>(
        &'t self,
        host: Option<&str>,
        method: &str,
        path: &str,
    ) -> Result<RouteMatch<'t>, RouteMiss> {
        let group = self.group_for(host).ok_or(RouteMiss::NoPath)?;
        group.lookup(MethodSet::of_request(method), path)
    }

    pub(crate) fn group_for(&self, host: Option<&str>) -> Option<&Group> {
        let g = host
            .and_then(|h| self.host_group(h))
            .or(self.default_group)?;
        self.groups.get(g as usize)
    }

    /// The group of a service naming this host, exactly or by wildcard.
    fn host_group(&self, raw: &str) -> Option<u32> {
        if self.exact_hosts.is_empty() && self.wildcard_hosts.is_empty() {
            return None;
        }
        let mut buf = [0u8; MAX_HOST_BYTES];
        let h = normalize_host(raw, &mut buf)?;
        self.exact_hosts
            .get(h)
            .or_else(|| wildcard_key(h).and_then(|k| self.wildcard_hosts.get(k)))
            .copied()
    }

    /// Arena bytes over all groups.
    pub fn arena_bytes(&self) -> usize {
        self.groups.iter().map(|g| g.trie.arena_bytes()).sum()
    }
}

fn build_group(
    services: &[ServiceRoutes],
    members: &[usize],
    conflicts: &mut Vec<Conflict>,
) -> Group {
    let mut routes = Vec::new();
    let mut builder = Builder::default();
    let mut folded = Builder::default();
    let mut any_folded = false;
    // (tier, pattern text, methods) → first route with it.
    let mut seen: HashMap<(Tier, String, MethodSet), (usize, usize)> = HashMap::new();
    for &s in members {
        for (a, api) in services[s].apis.iter().enumerate() {
            let key = (api.pattern.tier(), pattern_key(&api.pattern), api.methods);
            if let Some(&(os, oa)) = seen.get(&key) {
                conflicts.push(Conflict::Route {
                    service: s,
                    api: a,
                    other_service: os,
                    other_api: oa,
                });
                continue;
            }
            seen.insert(key, (s, a));
            let entry = Entry {
                route: routes.len() as u32,
                methods: api.methods,
            };
            let slot = match api.pattern.tier() {
                Tier::Exact => Slot::Exact,
                Tier::PriorityPrefix => Slot::Priority,
                Tier::Regex => Slot::Regex,
                Tier::Prefix => Slot::Prefix,
            };
            let key = api.pattern.literal_prefix().as_bytes();
            if api.pattern.prefix_is_case_folded() {
                folded.insert(key, slot, entry);
                any_folded = true;
            } else {
                builder.insert(key, slot, entry);
            }
            routes.push(Route {
                service: s as u32,
                api: a as u32,
                methods: api.methods,
                pattern: api.pattern.clone(),
            });
        }
    }
    Group {
        routes,
        trie: Trie::new(builder),
        folded: any_folded.then(|| Trie::new(folded)),
    }
}

/// The text that identifies a pattern within its tier.
fn pattern_key(p: &PathPattern) -> String {
    match p {
        PathPattern::Regex(r) => format!(
            "{}{}",
            if r.case_insensitive { "~*" } else { "~" },
            r.source
        ),
        PathPattern::Params(pp) => {
            // Parameter names do not change what matches.
            pp.literals.join("{}")
        }
        other => other.literal_prefix().to_string(),
    }
}

/// Among entries on one node (same literal, same tier), the one for `method`: an API with
/// exactly that method beats an `ANY` API.
#[inline]
fn pick(entries: &[Entry], method: MethodSet) -> Option<Entry> {
    let mut any = None;
    for e in entries {
        if e.methods == method {
            return Some(*e);
        }
        if e.methods.contains(method) {
            any = Some(*e);
        }
    }
    any
}

impl Group {
    /// One walk of the trie finds the exact, `^~` and plain-prefix candidates and remembers
    /// the regex-tier lists on the way; the regex tier is only searched when neither exact
    /// nor `^~` matched.
    fn lookup(&self, method: MethodSet, path: &str) -> Result<RouteMatch<'_>, RouteMiss> {
        let bytes = path.as_bytes();
        let (mut exact, mut priority, mut prefix) = (None, None, None);
        let mut path_hit = false;
        let mut lists = RegexLists::default();
        self.trie.walk(bytes, |depth, node| {
            if depth == bytes.len() && !node.exact.is_empty() {
                path_hit = true;
                exact = pick(node.exact, method);
            }
            if !node.priority.is_empty() {
                path_hit = true;
                if let Some(e) = pick(node.priority, method) {
                    priority = Some((e, depth));
                }
            }
            if !node.prefix.is_empty() {
                path_hit = true;
                if let Some(e) = pick(node.prefix, method) {
                    prefix = Some((e, depth));
                }
            }
            lists.push(node.regex);
        });
        if let Some(e) = exact {
            return Ok(self.found(e, Tier::Exact, 0));
        }
        if let Some((e, depth)) = priority {
            return Ok(self.found(e, Tier::PriorityPrefix, depth));
        }
        if let Some(folded) = &self.folded {
            folded.walk_folded(bytes, |_, node| lists.push(node.regex));
        }
        let mut search = RegexSearch {
            method,
            best: None,
            captures: Captures::empty(),
            skipped: false,
        };
        self.each_regex_list(&lists, path, |list| search.consider(self, list, path));
        if let Some(best) = search.best {
            let route = &self.routes[best as usize];
            let mut captures = search.captures;
            if matches!(route.pattern, PathPattern::Regex(_))
                && !route.pattern.param_names().is_empty()
            {
                route.pattern.matches(path, &mut captures);
            }
            return Ok(RouteMatch {
                service: route.service as usize,
                api: route.api as usize,
                tier: Tier::Regex,
                prefix_len: 0,
                captures,
            });
        }
        if let Some((e, depth)) = prefix {
            return Ok(self.found(e, Tier::Prefix, depth));
        }
        if !path_hit && search.skipped {
            // Only the candidates skipped for their method are left to try.
            self.each_regex_list(&lists, path, |list| {
                path_hit = path_hit
                    || list.iter().any(|e| {
                        !e.methods.contains(method)
                            && self.matches(e.route, path, &mut Captures::empty())
                    });
            });
        }
        Err(if path_hit {
            RouteMiss::NoMethod
        } else {
            RouteMiss::NoPath
        })
    }

    /// Calls `f` on every regex-tier list along `path`: the remembered ones, deepest first
    /// (deeper prefixes are likelier to match, and a match cuts off every later route), or,
    /// if there were too many to remember, by walking the tries again.
    fn each_regex_list<'s>(
        &'s self,
        lists: &RegexLists<'s>,
        path: &str,
        mut f: impl FnMut(&'s [Entry]),
    ) {
        if lists.len <= MAX_REGEX_NODES {
            for list in lists.lists[..lists.len].iter().rev() {
                f(list);
            }
            return;
        }
        self.trie.walk(path.as_bytes(), |_, node| f(node.regex));
        if let Some(folded) = &self.folded {
            folded.walk_folded(path.as_bytes(), |_, node| f(node.regex));
        }
    }

    /// Whether a regex-tier route matches: a `{param}` path fills `captures` on the way; a
    /// `~` regex is only tested here (its captures are taken once it has won).
    fn matches<'t>(&'t self, route: u32, path: &str, captures: &mut Captures<'t>) -> bool {
        match &self.routes[route as usize].pattern {
            PathPattern::Regex(r) => r.is_match(path),
            p => p.matches(path, captures),
        }
    }

    fn found(&self, e: Entry, tier: Tier, prefix_len: usize) -> RouteMatch<'_> {
        let r = &self.routes[e.route as usize];
        RouteMatch {
            service: r.service as usize,
            api: r.api as usize,
            tier,
            prefix_len,
            captures: Captures::empty(),
        }
    }
}

/// The non-empty regex-tier lists met on a walk; `len` counts past the capacity.
#[derive(Default)]
struct RegexLists<'s> {
    lists: [&'s [Entry]; MAX_REGEX_NODES],
    len: usize,
}

impl<'s> RegexLists<'s> {
    #[inline]
    fn push(&mut self, list: &'s [Entry]) {
        if list.is_empty() {
            return;
        }
        if let Some(slot) = self.lists.get_mut(self.len) {
            *slot = list;
        }
        self.len += 1;
    }
}

/// The regex tier's search state: the lowest-indexed route so far that matches path and
/// method, with its captures if it is a `{param}` path.
struct RegexSearch<'t> {
    method: MethodSet,
    best: Option<u32>,
    captures: Captures<'t>,
    /// Some candidate was passed over for its method (for 404 "method not supported").
    skipped: bool,
}

impl<'t> RegexSearch<'t> {
    fn consider(&mut self, group: &'t Group, list: &[Entry], path: &str) {
        for e in list {
            if self.best.is_some_and(|b| e.route >= b) {
                break;
            }
            if !e.methods.contains(self.method) {
                self.skipped = true;
                continue;
            }
            let mut captures = Captures::empty();
            if group.matches(e.route, path, &mut captures) {
                self.best = Some(e.route);
                self.captures = captures;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(apis: &[(&str, &str)]) -> RouteTable {
        let apis = apis
            .iter()
            .map(|(p, m)| ApiRoute {
                pattern: PathPattern::parse(p).unwrap(),
                methods: MethodSet::from_config(m).unwrap(),
            })
            .collect();
        RouteTable::build(&[ServiceRoutes {
            hosts: vec![],
            apis,
        }])
        .unwrap()
    }

    fn same(t: &RouteTable, method: &str, path: &str) -> Result<(usize, Tier), RouteMiss> {
        let a = t.route(None, method, path).map(|m| (m.api, m.tier));
        let b = t.route_linear(None, method, path).map(|m| (m.api, m.tier));
        assert_eq!(a, b, "{method} {path}");
        a
    }

    /// Fuzzing regression: `\<` is a word boundary, not a literal `<`.
    #[test]
    fn word_boundary_regexes_are_not_narrowed_to_a_literal() {
        let t = table(&[("~ ^/\\<", "ANY"), ("~* ^//", "POST"), ("~ ^/a\\>", "GET")]);
        assert_eq!(same(&t, "POST", "/xb/y/"), Ok((0, Tier::Regex)));
        assert_eq!(same(&t, "GET", "/a/b"), Ok((0, Tier::Regex)));
        assert_eq!(same(&t, "GET", "//"), Err(RouteMiss::NoMethod));
    }

    /// `~*` regexes hang on a case-folded trie; the prefix stops before `k`/`s`, whose case
    /// folds include KELVIN SIGN and LONG S.
    #[test]
    fn case_insensitive_regexes_are_narrowed_soundly() {
        let t = table(&[
            ("~* ^/API/v1", "GET"),
            ("~* ^/ok", "GET"),
            ("~* ^/ss", "GET"),
            ("/", "GET"),
        ]);
        assert_eq!(same(&t, "GET", "/api/V1/x"), Ok((0, Tier::Regex)));
        assert_eq!(same(&t, "GET", "/Api/v2"), Ok((3, Tier::Prefix)));
        assert_eq!(same(&t, "GET", "/o\u{212A}"), Ok((1, Tier::Regex)));
        assert_eq!(same(&t, "GET", "/OK"), Ok((1, Tier::Regex)));
        assert_eq!(same(&t, "GET", "/\u{17F}S"), Ok((2, Tier::Regex)));
        assert_eq!(same(&t, "POST", "/ok"), Err(RouteMiss::NoMethod));
    }

    /// More regex-bearing nodes along a path than a lookup remembers: the fallback re-walk.
    #[test]
    fn many_regex_nodes_on_one_path() {
        let pats: Vec<String> = (1..=40)
            .map(|n| format!("~ ^/{}$", "a".repeat(n)))
            .collect();
        let mut apis: Vec<(&str, &str)> = pats.iter().map(|p| (p.as_str(), "GET")).collect();
        apis.push(("~ ^/a+x", "POST"));
        let t = table(&apis);
        assert_eq!(
            same(&t, "GET", &format!("/{}", "a".repeat(30))),
            Ok((29, Tier::Regex))
        );
        assert_eq!(
            same(&t, "GET", &format!("/{}x", "a".repeat(30))),
            Err(RouteMiss::NoMethod)
        );
        assert_eq!(
            same(&t, "GET", &format!("/{}", "a".repeat(41))),
            Err(RouteMiss::NoPath)
        );
    }

    #[test]
    fn conflicts_are_all_reported() {
        let p = |s: &str| ApiRoute {
            pattern: PathPattern::parse(s).unwrap(),
            methods: MethodSet::GET,
        };
        let host = |h: &str| HostPattern::parse(h).unwrap();
        let services = [
            ServiceRoutes {
                hosts: vec![host("a.com")],
                apis: vec![p("=/x"), p("= /x"), p("/{a}/b"), p("/{c}/b")],
            },
            ServiceRoutes {
                hosts: vec![host("A.com")],
                apis: vec![],
            },
        ];
        let Err(conflicts) = RouteTable::build(&services) else {
            panic!("built")
        };
        assert_eq!(
            conflicts,
            vec![
                Conflict::Host {
                    service: 1,
                    host: 0,
                    other: 0
                },
                Conflict::Route {
                    service: 0,
                    api: 1,
                    other_service: 0,
                    other_api: 0
                },
                Conflict::Route {
                    service: 0,
                    api: 3,
                    other_service: 0,
                    other_api: 2
                },
            ]
        );
    }
}

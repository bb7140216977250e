//! Route-table lookup benchmark: the arena trie ([`RouteTable::route`]) against the naive
//! linear scan ([`RouteTable::route_linear`], same semantics), at 100 and 10,000 APIs.
//!
//! Run it on a quiet machine (24 benchmarks, about two minutes on 2 cores after the build):
//!
//! ```text
//! cargo bench --bench router
//! python3 benches/router_table.py      # markdown table of the medians
//! ```
//!
//! `cargo bench --bench router -- --test` runs every benchmark once, as a smoke test.
//!
//! The tables are one host-less service with a deterministic mix of APIs, interleaved in
//! configuration order (N = the API's index, resource and action names vary): 50% exact
//! (`=/svcG/v1/orders/N/export`), 20% plain prefix (`/pfxN/static/`), 20% `{param}` paths
//! (`/apiN/users/{id}/orders/{sub_id}` and `/apiN/items/{id}`), 5% `^~` priority prefix
//! (`^~/priN/assets/`) and 5% regex (`~ ^/rxN/v\d+/items$`, half of them with two named
//! groups). Two of the regexes cannot be
//! narrowed by the trie and are tried on every lookup that reaches the regex tier: a `~*` one
//! (its literal prefix stops before the first letter, so it hangs on `/`) and an unanchored
//! `~ \.(php|aspx)$`.
//!
//! One group per kind of lookup, each with `trie/100`, `trie/10000`, `linear/100` and
//! `linear/10000`:
//!
//! - `exact`: hits an `=` API.
//! - `prefix`: hits a plain-prefix API with a path longer than the prefix.
//! - `priority_prefix`: hits a `^~` API with a path longer than the prefix.
//! - `param`: hits a `{param}` API, two captures.
//! - `regex`: hits a `~` API, two named captures.
//! - `miss`: a 404 that shares a long prefix with exact APIs.
//!
//! Every request path belongs to an API past two thirds of the table, and every lookup is
//! checked once, outside the timed loop, for both matchers (tier, API index, captures).
//!
//! Targets (median, `trie`): `exact` and `prefix` ≤ 100 ns at 10,000 APIs, `param` ≤ 250 ns,
//! and every 10,000-API lookup within 2x of the same lookup at 100 APIs.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ringway::router::{
    ApiRoute, MethodSet, PathPattern, RouteMatch, RouteMiss, RouteTable, ServiceRoutes, Tier,
};

const SIZES: [usize; 2] = [100, 10_000];

const RESOURCES: [&str; 8] = [
    "users", "orders", "items", "carts", "payments", "invoices", "accounts", "sessions",
];
const ACTIONS: [&str; 6] = ["list", "create", "update", "delete", "search", "export"];
const METHODS: [&str; 4] = ["GET", "POST", "PUT", "DELETE"];
const SEGMENTS: [&str; 4] = ["static", "assets", "files", "docs"];

/// Knuth's MMIX LCG: deterministic variety without the rand crate.
struct Lcg(u64);

impl Lcg {
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        xs[((self.0 >> 33) % xs.len() as u64) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Param1,
    Param2,
    Priority,
    Regex,
    RegexCaptures,
    /// The `~*` and the unanchored regex; never benchmarked directly.
    RegexWide,
}

/// One generated API and a request that reaches it.
struct Api {
    path: String,
    method: &'static str,
    kind: Kind,
    request_method: &'static str,
    request_path: String,
}

/// The API mix, in configuration order: per 20 APIs, 10 exact, 4 prefix, 4 `{param}`
/// (alternating two and one parameters), 1 `^~`, 1 regex.
fn generate(n: usize) -> Vec<Api> {
    let mut rng = Lcg(0x5eed_0000 + n as u64);
    (0..n)
        .map(|i| match i % 20 {
            0..=9 => {
                let (res, action, method) =
                    (rng.pick(&RESOURCES), rng.pick(&ACTIONS), rng.pick(&METHODS));
                let path = format!("/svc{}/v1/{res}/{i}/{action}", i / 40);
                Api {
                    path: format!("={path}"),
                    method,
                    kind: Kind::Exact,
                    request_method: method,
                    request_path: path,
                }
            }
            10..=13 => {
                let seg = rng.pick(&SEGMENTS);
                Api {
                    path: format!("/pfx{i}/{seg}/"),
                    method: "ANY",
                    kind: Kind::Prefix,
                    request_method: "GET",
                    request_path: format!("/pfx{i}/{seg}/js/app.3f9c2b.min.js"),
                }
            }
            r @ 14..=17 => {
                let (res, sub) = (rng.pick(&RESOURCES), rng.pick(&RESOURCES));
                let method = rng.pick(&["GET", "ANY"]);
                let (path, request_path, kind) = if r % 2 == 0 {
                    (
                        format!("/api{i}/{res}/{{id}}/{sub}/{{sub_id}}"),
                        format!("/api{i}/{res}/u-48213/{sub}/o-99071"),
                        Kind::Param2,
                    )
                } else {
                    (
                        format!("/api{i}/{res}/{{id}}"),
                        format!("/api{i}/{res}/sku-1234"),
                        Kind::Param1,
                    )
                };
                Api {
                    path,
                    method,
                    kind,
                    request_method: "GET",
                    request_path,
                }
            }
            18 => {
                let seg = rng.pick(&SEGMENTS);
                Api {
                    path: format!("^~/pri{i}/{seg}/"),
                    method: "ANY",
                    kind: Kind::Priority,
                    request_method: "GET",
                    request_path: format!("/pri{i}/{seg}/img/logo.png"),
                }
            }
            _ => {
                let (path, request_path, kind) = match i / 20 {
                    0 => (
                        format!(r"~* ^/rx{i}/legacy/.+\.json$"),
                        format!("/RX{i}/Legacy/export.json"),
                        Kind::RegexWide,
                    ),
                    1 => (
                        r"~ \.(php|aspx)$".to_string(),
                        "/old/index.php".to_string(),
                        Kind::RegexWide,
                    ),
                    k if k % 2 == 0 => (
                        format!(r"~ ^/rx{i}/v\d+/items$"),
                        format!("/rx{i}/v2/items"),
                        Kind::Regex,
                    ),
                    _ => (
                        format!(r"~ ^/rx{i}/v(?P<ver>\d+)/items/(?P<id>\d+)$"),
                        format!("/rx{i}/v3/items/12345"),
                        Kind::RegexCaptures,
                    ),
                };
                Api {
                    path,
                    method: "GET",
                    kind,
                    request_method: "GET",
                    request_path,
                }
            }
        })
        .collect()
}

/// A benchmarked request and what it must resolve to.
struct Lookup {
    method: &'static str,
    path: String,
    /// `(API index, tier, number of captures)`, or `None` for a 404.
    expect: Option<(usize, Tier, usize)>,
}

struct Fixture {
    size: usize,
    table: RouteTable,
    /// In the order of [`GROUPS`].
    lookups: Vec<Lookup>,
}

const GROUPS: [&str; 6] = [
    "exact",
    "prefix",
    "priority_prefix",
    "param",
    "regex",
    "miss",
];

impl Fixture {
    fn new(size: usize) -> Fixture {
        let apis = generate(size);
        let service = ServiceRoutes {
            hosts: vec![],
            apis: apis
                .iter()
                .map(|a| ApiRoute {
                    pattern: PathPattern::parse(&a.path)
                        .unwrap_or_else(|e| panic!("{}: {e}", a.path)),
                    methods: MethodSet::from_config(a.method).expect("method"),
                })
                .collect(),
        };
        let table = RouteTable::build(&[service]).expect("generated routes do not conflict");

        // The generator's own promise: every API is reached by its request (trie only; the
        // linear scan over all of them would take a while at 10,000).
        for (i, a) in apis.iter().enumerate() {
            let m = table
                .route(None, a.request_method, &a.request_path)
                .unwrap_or_else(|e| panic!("{} {}: {e:?}", a.request_method, a.request_path));
            assert_eq!(m.api, i, "{} reached the wrong API", a.request_path);
        }

        // The first API of a kind past two thirds of the table.
        let late = |kind: Kind| {
            (size * 2 / 3..size)
                .find(|&i| apis[i].kind == kind)
                .unwrap_or_else(|| panic!("no {kind:?} API past 2/3 of {size}"))
        };
        let hit = |kind: Kind, tier: Tier, captures: usize| {
            let i = late(kind);
            Lookup {
                method: apis[i].request_method,
                path: apis[i].request_path.clone(),
                expect: Some((i, tier, captures)),
            }
        };
        let exact = hit(Kind::Exact, Tier::Exact, 0);
        let miss = Lookup {
            method: exact.method,
            path: format!("{}-v2", exact.path),
            expect: None,
        };
        let lookups = vec![
            exact,
            hit(Kind::Prefix, Tier::Prefix, 0),
            hit(Kind::Priority, Tier::PriorityPrefix, 0),
            hit(Kind::Param2, Tier::Regex, 2),
            hit(Kind::RegexCaptures, Tier::Regex, 2),
            miss,
        ];
        for (group, l) in GROUPS.iter().zip(&lookups) {
            let trie = table.route(None, l.method, &l.path);
            let linear = table.route_linear(None, l.method, &l.path);
            check(group, size, "trie", l, &trie);
            check(group, size, "linear", l, &linear);
        }
        eprintln!(
            "router bench: {size} APIs, trie arena {} bytes",
            table.arena_bytes()
        );
        Fixture {
            size,
            table,
            lookups,
        }
    }
}

/// Fails the run if a lookup does not reach what it is meant to measure.
fn check(group: &str, size: usize, matcher: &str, l: &Lookup, got: &Result<RouteMatch, RouteMiss>) {
    let what = format!("{group}/{matcher}/{size}: {} {}", l.method, l.path);
    match (l.expect, got) {
        (Some((api, tier, captures)), Ok(m)) => {
            assert_eq!((m.service, m.api, m.tier), (0, api, tier), "{what}");
            assert_eq!(m.captures.iter(&l.path).count(), captures, "{what}");
        }
        (None, Err(miss)) => assert_eq!(*miss, RouteMiss::NoPath, "{what}"),
        (expect, got) => panic!("{what}: expected {expect:?}, got {got:?}"),
    }
}

fn router(c: &mut Criterion) {
    let fixtures: Vec<Fixture> = SIZES.iter().map(|&n| Fixture::new(n)).collect();
    for (g, name) in GROUPS.iter().enumerate() {
        let mut group = c.benchmark_group(*name);
        group
            .sample_size(50)
            .measurement_time(Duration::from_secs(2))
            .warm_up_time(Duration::from_millis(500));
        for fx in &fixtures {
            let l = &fx.lookups[g];
            group.bench_with_input(BenchmarkId::new("trie", fx.size), l, |b, l| {
                b.iter(|| {
                    fx.table.route(
                        black_box(None),
                        black_box(l.method),
                        black_box(l.path.as_str()),
                    )
                })
            });
        }
        for fx in &fixtures {
            let l = &fx.lookups[g];
            group.bench_with_input(BenchmarkId::new("linear", fx.size), l, |b, l| {
                b.iter(|| {
                    fx.table.route_linear(
                        black_box(None),
                        black_box(l.method),
                        black_box(l.path.as_str()),
                    )
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, router);
criterion_main!(benches);

//! The parameter stage ([`ringway::gateway::params::apply`]) on a realistic request.
//!
//! ```text
//! cargo bench --bench stage_params -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! `params_validate_5`: five declared params over a browser-like head of 12 headers and a
//! query of 5 pairs — `X-Tenant-Id` (header, int, required), `q` (query, string, sent to the
//! backend as header `X-Search`: decoded and placed), `since` (query, long), `id` (path, int,
//! from `/api/v1/users/{id}/orders`) and `X-Debug` (header, boolean, absent, default
//! `false`: placed). The head is parsed and the route matched once, outside the timed loop;
//! one `ParamValues` is reused, as a connection would.
//!
//! Before timing, the benchmark checks the outcome and that, after one warm-up call, 1,000
//! calls allocate nothing (a counting global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use ringway::config::{DataType, Limits, Location, Param};
use ringway::gateway::params::{ParamInput, ParamValues, apply};
use ringway::http::head::{Progress, RequestHead, parse_head};
use ringway::router::{Captures, PathPattern};

/// Counts allocations, to show that the stage does not allocate once warm.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const REQUEST: &[u8] = b"GET /api/v1/users/1234567/orders?page=2&q=caf%C3%A9+au+lait&since=1700000000000&sort=desc&fields=id,total,status HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://app.example.com/orders\r\n\
Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3In0.c2lnbmF0dXJl\r\n\
X-Request-Id: 9f1c2b7e-4d5a-4c3b-9a8e-1f2d3c4b5a69\r\n\
Cookie: session=abc123; theme=dark\r\n\
X-Tenant-Id: 42\r\n\
Connection: keep-alive\r\n\
Cache-Control: no-cache\r\n\
\r\n";

fn param(name: &str, location: Location, data_type: DataType) -> Param {
    Param {
        name: name.into(),
        location,
        data_type,
        required: false,
        default: None,
        sample: None,
        description: String::new(),
        backend_name: None,
        backend_location: None,
    }
}

fn params() -> Vec<Param> {
    let mut tenant = param("X-Tenant-Id", Location::Header, DataType::Int);
    tenant.required = true;
    let mut q = param("q", Location::Query, DataType::String);
    q.backend_name = Some("X-Search".into());
    q.backend_location = Some(Location::Header);
    let since = param("since", Location::Query, DataType::Long);
    let mut id = param("id", Location::Path, DataType::Int);
    id.required = true;
    let mut debug = param("X-Debug", Location::Header, DataType::Boolean);
    debug.default = Some("false".into());
    vec![tenant, q, since, id, debug]
}

fn stage_params(c: &mut Criterion) {
    let params = params();
    let limits = Limits {
        max_header_bytes: 32768,
        max_headers: 100,
        max_uri_bytes: 8192,
        max_body_bytes: 16 << 20,
    };
    let mut head = RequestHead::default();
    assert_eq!(
        parse_head(REQUEST, &limits, &mut head).unwrap(),
        Progress::Complete
    );
    let target = std::str::from_utf8(head.target.get(REQUEST)).unwrap();
    let (path, query) = target.split_once('?').unwrap();
    let pattern = PathPattern::parse("/api/v1/users/{id}/orders").unwrap();
    let mut captures = Captures::empty();
    assert!(pattern.matches(path, &mut captures));
    let input = ParamInput {
        buf: REQUEST,
        head: &head,
        query: Some(query),
        path,
        captures: &captures,
    };

    let mut out = ParamValues::default();
    apply(&params, &input, &mut out).unwrap();
    let placed: Vec<(usize, &str)> = out.iter().collect();
    assert_eq!(placed, [(1, "caf\u{e9} au lait"), (4, "false")]);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..1000 {
        apply(&params, &input, &mut out).unwrap();
    }
    assert_eq!(
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        0,
        "the warm stage allocates"
    );

    c.bench_function("params_validate_5", |b| {
        b.iter(|| apply(black_box(&params), black_box(&input), &mut out).unwrap())
    });
}

criterion_group!(benches, stage_params);
criterion_main!(benches);

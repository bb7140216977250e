//! The match path allocates nothing (issue 2): a counting global allocator watches
//! `RouteTable::route` and backend-path composition into a reused buffer, after one warm-up
//! call per request (the regex engine fills its per-thread cache on first use).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use ringway::config::load_str;
use ringway::router::target::{parse_target, resolve_dot_segments};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const CONFIG: &str = r#"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9000"
[[services]]
name = "s"
hosts = ["api.example.com", "*.example.org"]
[[services.apis]]
name = "exact"
path = "=/user"
[services.apis.backend]
upstream = "u"
path = "/b/user"
[[services.apis]]
name = "prio"
path = "^~/static/"
[services.apis.backend]
upstream = "u"
path = "/assets/"
[[services.apis]]
name = "param"
path = "/{A}/product/{B}"
[[services.apis.params]]
name = "A"
location = "path"
[[services.apis.params]]
name = "B"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/p/{B}/{A}"
[[services.apis]]
name = "regex"
path = '~ ^/v(?P<ver>\d+)/x$'
[[services.apis.params]]
name = "ver"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/ver/{ver}"
[[services.apis]]
name = "prefix"
path = "/orders"
[services.apis.backend]
upstream = "u"
path = "/api/orders"
"#;

#[test]
fn routing_allocates_nothing() {
    let cfg = load_str(CONFIG, Path::new("no_alloc.toml")).unwrap();
    let requests = [
        ("API.example.com:443", "GET", "/user?x=1"),
        ("api.example.com", "GET", "/static/a/b.css"),
        ("api.example.com", "GET", "/middleware/product/apigw/detail"),
        ("a.example.org", "GET", "/v12/x"),
        ("a.example.org", "GET", "/orders/7/items"),
        ("a.example.org", "GET", "/a/./b/../../orders/1"),
        ("a.example.org", "GET", "/nothing"),
        ("a.example.org", "PUT", "/user"),
        ("unknown.host", "GET", "/user"),
    ];
    // Buffers a connection would own and reuse.
    let mut dots = String::with_capacity(256);
    let mut backend = String::with_capacity(256);
    let mut run = |count: bool| {
        COUNTING.with(|c| c.set(count));
        let mut matched = 0;
        for (host, method, target) in requests {
            let t = parse_target(target).unwrap();
            let path = resolve_dot_segments(t.path, &mut dots).unwrap();
            if let Ok(m) = cfg.routes.route(Some(host), method, path) {
                let api = &cfg.services[m.service].apis[m.api];
                if let Some(bp) = &api.backend.path {
                    bp.compose(&m, path, &mut backend);
                }
                matched += 1;
            }
        }
        COUNTING.with(|c| c.set(false));
        matched
    };
    assert_eq!(run(false), 6, "warm-up: six of the requests match");
    COUNT.with(|c| c.set(0));
    assert_eq!(run(true), 6);
    assert_eq!(COUNT.with(Cell::get), 0, "allocations on the match path");
}

#[test]
fn the_counter_sees_allocations() {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|c| c.set(true));
    let v = std::hint::black_box(vec![1u8; 3]);
    COUNTING.with(|c| c.set(false));
    drop(v);
    assert_eq!(COUNT.with(Cell::get), 1);
}

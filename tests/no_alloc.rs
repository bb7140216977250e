//! The match path allocates nothing (issue 2): a counting global allocator watches
//! `RouteTable::route` and backend-path composition into a reused buffer, after one warm-up
//! call per request (the regex engine fills its per-thread cache on first use).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use ringway::config::load_str;
use ringway::router::target::{normalize_path, parse_target};

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
        ("a.example.org", "GET", "/a/%2e%2E/%6Frders/%31"),
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
            let path = normalize_path(t.path, cfg.server.path_normalization, &mut dots).unwrap();
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
    assert_eq!(run(false), 7, "warm-up: seven of the requests match");
    COUNT.with(|c| c.set(0));
    assert_eq!(run(true), 7);
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

/// An API with no params, no auth and no CORS pays nothing for those stages: the whole
/// decision (target, route, 426, auth, params) and the upstream head allocate nothing once
/// the request's reused buffers are warm. An API with params, CORS and mapped values does
/// not allocate either once warm.
#[test]
fn the_gateway_decision_and_upstream_head_allocate_nothing() {
    use ringway::gateway::auth::AuthState;
    use ringway::gateway::forward::{ForwardContext, Plan, write_upstream_head};
    use ringway::gateway::params::ParamValues;
    use ringway::gateway::{Action, Inbound, Scratch, decide};
    use ringway::http::head::{RequestHead, parse_head};

    const GATEWAY: &str = r#"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9000"
[[services]]
name = "s"
[[services.apis]]
name = "plain"
path = "/plain/{id}"
[[services.apis.params]]
name = "id"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/b/{id}"
[[services.apis]]
name = "featured"
path = "=/featured"
cors = true
[[services.apis.params]]
name = "limit"
location = "query"
data_type = "int"
backend_name = "max"
backend_location = "header"
[[services.apis.params]]
name = "X-Tenant"
location = "header"
data_type = "long"
required = true
[[services.apis.params]]
name = "page"
location = "query"
data_type = "int"
default = "1"
[services.apis.backend]
upstream = "u"
path = "/b/featured"
[[services.apis.backend.constants]]
name = "source"
location = "query"
value = "gw"
# Traffic control elsewhere in the configuration costs the APIs above nothing; the limited
# API itself (a service limit and a per-IP limit, on the local store) allocates nothing
# once its client's counter is in the table.
[[services]]
name = "t"
[[services.limits]]
key = "service"
requests = 1000000000
per = "second"
[[services.apis]]
name = "limited"
path = "=/limited"
[[services.apis.limits]]
key = "ip"
requests = 1000000000
per = "minute"
[services.apis.backend]
upstream = "u"
path = "/b/limited"
"#;
    let cfg = load_str(GATEWAY, Path::new("no_alloc.toml")).unwrap();
    let auth = AuthState::new(&cfg);
    let counters = ringway::traffic::Counters::standalone(&cfg);
    let requests: [&[u8]; 4] = [
        b"GET /limited HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /plain/42?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"GET http://a/x/%2E%2e/pl%61in/./4%32 HTTP/1.1\r\nHost: b\r\n\r\n",
        b"GET /featured?limit=20&q=a%20b HTTP/1.1\r\nHost: a\r\nX-Tenant: 7\r\n\r\n",
    ];
    let limits = cfg.server.limits;
    let mut head = RequestHead::default();
    let (mut path, mut backend_path, mut params) =
        (String::new(), String::new(), ParamValues::default());
    let mut out = Vec::with_capacity(4096);
    let mut run = |count: bool| {
        let mut forwarded = 0;
        for raw in requests {
            parse_head(raw, &limits, &mut head).unwrap();
            COUNTING.with(|c| c.set(count));
            let inbound = Inbound {
                buf: raw,
                head: &head,
                https: false,
                client: std::net::IpAddr::from([192, 0, 2, 1]),
                now: std::time::UNIX_EPOCH,
                mono: std::time::Instant::now(),
            };
            let scratch = Scratch {
                path: &mut path,
                backend_path: &mut backend_path,
                params: &mut params,
            };
            let d = decide(&cfg, &auth, &counters, &inbound, scratch);
            if let Action::Forward(f) = d.action {
                let query = f
                    .query
                    .clone()
                    .map(|r| std::str::from_utf8(&raw[r]).unwrap());
                let plan = Plan {
                    backend: &f.api.backend,
                    params: &f.api.params,
                    placed: &params,
                    permit: &f.permit,
                    backend_path: &backend_path,
                    query,
                };
                let ctx = ForwardContext {
                    client_ip: "192.0.2.1",
                    https: false,
                    request_id: "rid",
                    websocket: false,
                    default_host: "127.0.0.1:9000",
                };
                write_upstream_head(raw, &head, &plan, &ctx, &mut out);
                forwarded += 1;
            }
            COUNTING.with(|c| c.set(false));
        }
        forwarded
    };
    assert_eq!(run(false), 4, "warm-up: the four requests are forwarded");
    COUNT.with(|c| c.set(0));
    assert_eq!(run(true), 4);
    assert_eq!(
        COUNT.with(Cell::get),
        0,
        "allocations in decide + upstream head"
    );
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        text.starts_with("GET /b/featured?q=a%20b&page=1&source=gw HTTP/1.1\r\n")
            && text.contains("\r\nmax: 20\r\n"),
        "{text}"
    );
}

/// IP control allocates nothing, admitting or refusing (the 403 carries the address, not a
/// message), on a long list and a short one; an API without IP control neither.
#[test]
fn ip_control_allocates_nothing() {
    use ringway::gateway::auth::AuthState;
    use ringway::gateway::params::ParamValues;
    use ringway::gateway::{Action, Inbound, Local, Scratch, decide};
    use ringway::http::head::{RequestHead, parse_head};

    // A service whose deny list has 2,000 IPv4 ranges and 2,000 IPv6 ones, an API in it
    // with its own allow list, and a service without IP control.
    let v4: Vec<String> = (0..2000)
        .map(|i| format!("\"10.{}.{}.0/24\"", i / 200, i % 200))
        .collect();
    let v6: Vec<String> = (0..2000)
        .map(|i| format!("\"2001:db8:{i:x}::/48\""))
        .collect();
    let config = format!(
        r#"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9000"
[[services]]
name = "listed"
hosts = ["listed"]
[services.ip_control]
mode = "deny"
ips = [{}, {}]
[[services.apis]]
name = "deny"
path = "/"
[services.apis.backend]
upstream = "u"
path = "/b"
[[services.apis]]
name = "allow"
path = "=/allow"
[services.apis.ip_control]
mode = "allow"
ips = ["127.0.0.0/8", "::1"]
[services.apis.backend]
upstream = "u"
path = "/b"
[[services]]
name = "open"
hosts = ["open"]
[[services.apis]]
name = "open"
path = "/"
[services.apis.backend]
upstream = "u"
path = "/b"
"#,
        v4.join(", "),
        v6.join(", ")
    );
    let cfg = load_str(&config, Path::new("no_alloc.toml")).unwrap();
    let auth = AuthState::new(&cfg);
    let counters = ringway::traffic::Counters::standalone(&cfg);
    // (request, client, forwarded)
    let requests: [(&[u8], &str, bool); 9] = [
        (
            b"GET /x HTTP/1.1\r\nHost: listed\r\n\r\n",
            "10.3.150.7",
            false,
        ),
        (
            b"GET /x HTTP/1.1\r\nHost: listed\r\n\r\n",
            "::ffff:10.9.199.255",
            false,
        ),
        (
            b"GET /x HTTP/1.1\r\nHost: listed\r\n\r\n",
            "2001:db8:7cf::1",
            false,
        ),
        (
            b"GET /x HTTP/1.1\r\nHost: listed\r\n\r\n",
            "10.10.0.1",
            true,
        ),
        (
            b"GET /x HTTP/1.1\r\nHost: listed\r\n\r\n",
            "2001:db8:7d0::1",
            true,
        ),
        (
            b"GET /allow HTTP/1.1\r\nHost: listed\r\n\r\n",
            "::ffff:127.0.0.1",
            true,
        ),
        (b"GET /allow HTTP/1.1\r\nHost: listed\r\n\r\n", "::2", false),
        (b"GET /x HTTP/1.1\r\nHost: open\r\n\r\n", "10.3.150.7", true),
        (b"GET /x HTTP/1.1\r\nHost: open\r\n\r\n", "::1", true),
    ];
    let clients: Vec<std::net::IpAddr> = requests.iter().map(|r| r.1.parse().unwrap()).collect();
    let limits = cfg.server.limits;
    let mut head = RequestHead::default();
    let (mut path, mut backend_path, mut params) =
        (String::new(), String::new(), ParamValues::default());
    let mut run = |count: bool| {
        let mut outcomes = Vec::with_capacity(requests.len());
        for ((raw, _, _), client) in requests.iter().zip(&clients) {
            parse_head(raw, &limits, &mut head).unwrap();
            COUNTING.with(|c| c.set(count));
            let inbound = Inbound {
                buf: raw,
                head: &head,
                https: false,
                client: *client,
                now: std::time::UNIX_EPOCH,
                mono: std::time::Instant::now(),
            };
            let scratch = Scratch {
                path: &mut path,
                backend_path: &mut backend_path,
                params: &mut params,
            };
            let d = decide(&cfg, &auth, &counters, &inbound, scratch);
            let forwarded = match &d.action {
                Action::Forward(_) => Some(true),
                Action::Local(Local::Error(e)) if e.status() == 403 => Some(false),
                _ => None,
            };
            COUNTING.with(|c| c.set(false));
            outcomes.push(forwarded);
        }
        outcomes
    };
    let want: Vec<Option<bool>> = requests.iter().map(|r| Some(r.2)).collect();
    assert_eq!(run(false), want, "warm-up: forwarded (true) or 403 (false)");
    COUNT.with(|c| c.set(0));
    assert_eq!(run(true), want);
    assert_eq!(COUNT.with(Cell::get), 0, "allocations in IP control");
}

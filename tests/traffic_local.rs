//! Traffic control with the local store (SPEC §8), through the real binary: limits by
//! service, API, IP and caller; usage plans of key-pair callers (rate, quota, no plan);
//! counts exact across workers; the `RateLimit` headers; `/usage`; the rejection metrics
//! and the access log's `refused_by`; counters across reloads; quota counts across restarts
//! and an upgrade through the state file; and `check`'s errors.
//!
//! Key-pair requests are signed by the `openssl` CLI (`support::openssl`), never by
//! ringway's code. A signed request stays valid for the skew window (900 s), so loops sign
//! once and send the same bytes.

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::*;

const ID1: &str = "AKIDlocal0001";
const KEY1: &str = "local-secret-key-0001";
const ID2: &str = "AKIDlocal0002";
const KEY2: &str = "local-secret-key-0002";
const ID3: &str = "AKIDlocal0003";
const KEY3: &str = "local-secret-key-0003";
const ID4: &str = "AKIDlocal0004";
const KEY4: &str = "local-secret-key-0004";
const ID5: &str = "AKIDlocal0005";
const KEY5: &str = "local-secret-key-0005";

const PAIRS: [(&str, &str); 5] = [
    (ID1, KEY1),
    (ID2, KEY2),
    (ID3, KEY3),
    (ID4, KEY4),
    (ID5, KEY5),
];

const WAIT: Duration = Duration::from_secs(10);

/// `[[key_pairs]]` for every pair above, each allowed to call `services`.
fn key_pairs(services: &str) -> String {
    PAIRS
        .iter()
        .map(|(id, key)| {
            format!(
                "[[key_pairs]]\nsecret_id = \"{id}\"\nsecret_key = \"{key}\"\nservices = [{services}]\n"
            )
        })
        .collect()
}

fn key_of(id: &str) -> &'static str {
    PAIRS.iter().find(|(i, _)| *i == id).expect("a known id").1
}

/// `[server]` with `workers`, the admin listener on, `extra` keys.
fn server(workers: usize, extra: &str) -> String {
    with_admin(&server_section(workers, extra))
}

/// [`server`] with the access log written to `log`.
fn server_logged(workers: usize, log: &Path) -> String {
    server(workers, "").replace(
        "access_log = \"off\"",
        &format!("access_log = {:?}", log.display().to_string()),
    )
}

/// `GET path` signed by `openssl` for `id` (`Authorization: hmac`, `x-date` signed).
fn signed_get(path: &str, id: &str) -> Vec<u8> {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let sig = openssl::hmac_base64("hmac-sha256", key_of(id), &format!("x-date: {date}"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: example.test\r\nX-Date: {date}\r\nAuthorization: hmac id=\"{id}\", algorithm=\"hmac-sha256\", headers=\"x-date\", signature=\"{sig}\"\r\n\r\n"
    )
    .into_bytes()
}

fn text(req: &[u8]) -> String {
    String::from_utf8_lossy(req).into_owned()
}

/// Sends `req` on a new connection and expects `status`; for a gateway error, `message` too.
#[track_caller]
fn expect(gw: &Gateway, req: &[u8], status: u16, message: Option<&str>) -> Response {
    let r = gw.connect().roundtrip(req);
    match message {
        Some(m) => assert_eq!(r.assert_gateway_error(status, &text(req)), m),
        None => assert_eq!(
            r.status,
            status,
            "{}\n--- response ---\n{}",
            text(req),
            r.text()
        ),
    }
    r
}

#[track_caller]
fn expect_from(addr: SocketAddr, from: &str, req: &[u8], status: u16) -> Response {
    let ip: IpAddr = from.parse().unwrap();
    let r = Client::connect_from(addr, ip).roundtrip(req);
    assert_eq!(
        r.status,
        status,
        "from {from}: {}\n--- response ---\n{}",
        text(req),
        r.text()
    );
    r
}

const RATE: &str = "API rate limit exceeded.";
const QUOTA: &str = "API quota exceeded.";
const NO_PLAN: &str = "Found no validate usage plan.";

/// `/usage` as JSON.
fn usage(admin: SocketAddr, query: &str) -> Value {
    let (status, body) = admin_get(admin, &format!("/usage{query}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `used` of (plan, secret_id) in `/usage`.
fn used(admin: SocketAddr, plan: &str, id: &str) -> Value {
    let all = usage(admin, "");
    all["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["plan"] == plan && r["secret_id"] == id)
        .unwrap_or_else(|| panic!("no {plan}/{id} in {all}"))["used"]
        .clone()
}

/// Waits until (plan, secret_id)'s `used` in `/usage` is `want`.
fn wait_used(admin: SocketAddr, plan: &str, id: &str, want: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = used(admin, plan, id);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{plan}/{id}: used {got}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `/metrics` has `series` at `want` (the workers fold their counts in every
/// 50 ms; until then the series may be missing).
fn wait_sample(admin: SocketAddr, series: &str, want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, text) = admin_get(admin, "/metrics");
        assert_eq!(status, 200);
        let got = sample(&text, series);
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {got:?}, want {want}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `toml` over the gateway's file, sends SIGHUP and waits for reload line `n`.
fn reload(gw: &Gateway, toml: &str, n: usize) {
    std::fs::write(&gw.config_path, toml).unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + WAIT;
    loop {
        let done = gw
            .stderr()
            .lines()
            .filter(|l| {
                l.starts_with("ringway: reloaded") || l.starts_with("ringway: reload failed")
            })
            .count();
        if done >= n {
            break;
        }
        assert!(Instant::now() < deadline, "no reload {n}:\n{}", gw.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        !gw.stderr().contains("reload failed"),
        "reload failed:\n{}",
        gw.stderr()
    );
    // Every worker picks the configuration up within a housekeeping tick (50 ms).
    std::thread::sleep(Duration::from_millis(150));
}

/// The next UTC midnight after now, RFC 3339.
fn next_midnight() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t = UNIX_EPOCH + Duration::from_secs((now / 86_400 + 1) * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A mock API `name` at `path` (`extra`: more keys or tables, e.g. its limits).
fn mock_api(name: &str, path: &str, auth: &str, extra: &str) -> String {
    format!(
        "[[services.apis]]\nname = \"{name}\"\npath = \"{path}\"\nauth = \"{auth}\"\n{extra}[services.apis.backend]\ntype = \"mock\"\nmock_body = \"{name}\"\n"
    )
}

fn limit(table: &str, key: &str, requests: u64, per: &str) -> String {
    format!("[[{table}]]\nkey = \"{key}\"\nrequests = {requests}\nper = \"{per}\"\n")
}

// ---------------------------------------------------------------------------------------

/// A per-second API limit with two workers, hit as fast as 16 keep-alive connections can
/// for about two seconds: what passes is the burst plus the rate over the time elapsed, as
/// with one worker (two workers counting apart would admit about twice as much), and both
/// workers admitted some of it.
#[test]
fn a_per_second_limit_holds_exactly_across_two_workers() {
    const RATE_PER_S: u64 = 100;
    const CONNECTIONS: usize = 16;
    const RUN: Duration = Duration::from_secs(2);
    let cfg = format!(
        "{}[[services]]\nname = \"s\"\n{}",
        server(2, ""),
        mock_api(
            "a",
            "=/a",
            "none",
            &limit("services.apis.limits", "api", RATE_PER_S, "second")
        )
    );
    let gw = Gateway::start(&cfg);
    let addr = gw.addr();
    let go = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut admitted: HashMap<String, u64> = HashMap::new();
                let mut refused = 0u64;
                while !go.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                let end = Instant::now() + RUN;
                while Instant::now() < end {
                    let r = c.roundtrip(get("/a"));
                    match r.status {
                        200 => {
                            // The request id names the worker: `<start>-<worker>-<n>`.
                            let id = r.request_id();
                            let worker = id.split('-').nth(1).unwrap().to_string();
                            *admitted.entry(worker).or_default() += 1;
                        }
                        429 => refused += 1,
                        s => panic!("status {s}: {}", r.text()),
                    }
                }
                (admitted, refused)
            })
        })
        .collect();
    let started = Instant::now();
    go.store(true, Ordering::Release);
    let mut by_worker: HashMap<String, u64> = HashMap::new();
    let mut refused = 0;
    for t in threads {
        let (a, r) = t.join().unwrap();
        for (w, n) in a {
            *by_worker.entry(w).or_default() += n;
        }
        refused += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let admitted: u64 = by_worker.values().sum();
    let most = RATE_PER_S as f64 * (1.0 + elapsed) + 1.0;
    // The clients start within a few milliseconds and keep the limit busy throughout.
    let least = RATE_PER_S as f64 * (1.0 + elapsed - 0.25);
    eprintln!(
        "per-second limit {RATE_PER_S}: {admitted} admitted ({by_worker:?}), {refused} refused in {elapsed:.2} s (bounds {least:.0}..={most:.0})"
    );
    assert!(
        refused > admitted,
        "the clients were too slow to test the limit: {admitted} admitted, {refused} refused"
    );
    assert!(
        (least..=most).contains(&(admitted as f64)),
        "{admitted} admitted in {elapsed:.2} s; want {least:.0}..={most:.0} (burst {RATE_PER_S} + {RATE_PER_S}/s)"
    );
    assert_eq!(
        by_worker.len(),
        2,
        "one worker served everything: {by_worker:?}"
    );
    assert!(
        by_worker.values().all(|&n| n * 10 >= admitted),
        "a worker admitted under 10%: {by_worker:?}"
    );
}

/// Each key counts apart: per client IP, per caller (the IP for a request without one),
/// the whole service, and (a service limit with `key = "api"`) each API of the service.
#[test]
fn limits_count_by_ip_caller_service_and_api() {
    let per_minute = |key, n| limit("services.apis.limits", key, n, "minute");
    let cfg = format!(
        "{}
[[services]]
name = \"by-ip\"
{}
[[services]]
name = \"by-caller\"
{}{}
[[services]]
name = \"whole\"
{}{}{}
[[services]]
name = \"each-api\"
{}{}{}
{}",
        server(2, ""),
        mock_api("ip", "=/ip", "none", &per_minute("ip", 2)),
        mock_api("signed", "=/caller", "key_pair", &per_minute("caller", 2)),
        mock_api("open", "=/open", "none", &per_minute("caller", 1)),
        limit("services.limits", "service", 3, "minute"),
        mock_api("x", "=/whole/x", "none", ""),
        mock_api("y", "=/whole/y", "none", ""),
        limit("services.limits", "api", 2, "minute"),
        mock_api("x", "=/each/x", "none", ""),
        mock_api("y", "=/each/y", "none", ""),
        key_pairs("\"by-caller\""),
    );
    let gw = Gateway::start(&cfg);
    let addr = gw.addr();

    // By IP: 127.0.0.1 and 127.0.0.2 have two each.
    for from in ["127.0.0.1", "127.0.0.2"] {
        expect_from(addr, from, &get("/ip"), 200);
        expect_from(addr, from, &get("/ip"), 200);
        expect_from(addr, from, &get("/ip"), 429);
    }
    expect(&gw, &get("/ip"), 429, Some(RATE));

    // By caller: each secret_id has two, wherever it calls from.
    let one = signed_get("/caller", ID1);
    let two = signed_get("/caller", ID2);
    expect_from(addr, "127.0.0.1", &one, 200);
    expect_from(addr, "127.0.0.2", &one, 200);
    expect_from(addr, "127.0.0.3", &one, 429);
    expect_from(addr, "127.0.0.1", &two, 200);
    expect_from(addr, "127.0.0.1", &two, 200);
    expect_from(addr, "127.0.0.1", &two, 429);
    // Without a caller (auth = "none"): by the client IP.
    expect_from(addr, "127.0.0.1", &get("/open"), 200);
    expect_from(addr, "127.0.0.1", &get("/open"), 429);
    expect_from(addr, "127.0.0.2", &get("/open"), 200);
    expect_from(addr, "127.0.0.2", &get("/open"), 429);

    // The whole service: x and y share three.
    expect(&gw, &get("/whole/x"), 200, None);
    expect(&gw, &get("/whole/y"), 200, None);
    expect(&gw, &get("/whole/x"), 200, None);
    expect(&gw, &get("/whole/y"), 429, Some(RATE));
    expect(&gw, &get("/whole/x"), 429, Some(RATE));

    // A service limit by API: x and y have two each.
    expect(&gw, &get("/each/x"), 200, None);
    expect(&gw, &get("/each/x"), 200, None);
    expect(&gw, &get("/each/x"), 429, Some(RATE));
    let r = expect(&gw, &get("/each/y"), 200, None);
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with("\"limit-1\";r=1;t="),
        "{}",
        r.text()
    );
    expect(&gw, &get("/each/y"), 200, None);
    expect(&gw, &get("/each/y"), 429, Some(RATE));
}

/// Parses `"<name>";r=<R>;t=<T>` into (name, R, T).
fn ratelimit(v: &str) -> (String, u64, u64) {
    let mut parts = v.split(';');
    let name = parts.next().unwrap().trim_matches('"').to_string();
    let mut r = None;
    let mut t = None;
    for p in parts {
        match p.split_once('=') {
            Some(("r", n)) => r = n.parse().ok(),
            Some(("t", n)) => t = n.parse().ok(),
            _ => panic!("unexpected {p:?} in {v:?}"),
        }
    }
    (name, r.expect("r="), t.expect("t="))
}

/// A per-minute limit passes exactly `requests` in a burst; the next is a 429 with
/// `Retry-After` and the RateLimit headers, and never reaches the backend.
#[test]
fn a_per_minute_limit_passes_its_requests_then_429_with_headers() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let cfg = format!(
        "{}{}
[[services]]
name = \"s\"
[[services.apis]]
name = \"a\"
path = \"=/a\"
{}[services.apis.backend]
upstream = \"up\"
path = \"/b\"
",
        server(2, ""),
        upstream_section("up", backend.addr(), ""),
        limit("services.apis.limits", "ip", 5, "minute")
    );
    let gw = Gateway::start(&cfg);
    let mut c = gw.connect();
    for i in 0..5u64 {
        let r = c.roundtrip(get("/a"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header_all("ratelimit-policy"),
            ["\"limit-1\";q=5;w=60"],
            "{}",
            r.text()
        );
        let (name, left, reset) = ratelimit(r.header("ratelimit").unwrap());
        assert_eq!((name.as_str(), left), ("limit-1", 4 - i), "{}", r.text());
        // Counted until its slot (a twentieth of the window) leaves the window.
        assert!((57..=63).contains(&reset), "t={reset}: {}", r.text());
        assert!(r.header("retry-after").is_none(), "{}", r.text());
    }
    let r = c.roundtrip(get("/a"));
    assert_eq!(r.assert_gateway_error(429, "sixth"), RATE);
    assert_eq!(r.header_all("ratelimit-policy"), ["\"limit-1\";q=5;w=60"]);
    let (_, left, reset) = ratelimit(r.header("ratelimit").unwrap());
    assert_eq!(left, 0);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=63).contains(&retry), "Retry-After {retry}");
    assert!(reset >= 1, "{}", r.text());
    // The refused request never reached the backend; the admitted ones did.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(backend.requests().len(), 5);
}

/// Usage plans of key-pair callers, with a real backend that a refused request never
/// reaches: no plan (403), over a plan's rate and over its quota (429), two plans binding
/// the same caller (both must allow; the one that refuses gives the other's take back), and
/// a limit refusing after the plans passed (no quota consumed).
#[test]
fn usage_plans_admit_key_pair_callers_by_rate_and_quota() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let cfg = format!(
        "{}{}
[[services]]
name = \"s\"
[[services.apis]]
name = \"k\"
path = \"/k\"
auth = \"key_pair\"
[services.apis.backend]
upstream = \"up\"
path = \"/b/k\"
[[services.apis]]
name = \"kl\"
path = \"/kl\"
auth = \"key_pair\"
{}[services.apis.backend]
upstream = \"up\"
path = \"/b/kl\"
[[services.apis]]
name = \"open\"
path = \"/open\"
[services.apis.backend]
upstream = \"up\"
path = \"/b/open\"

{}
[[usage_plans]]
name = \"burst\"
max_requests_per_second = 3
secret_ids = [\"{ID1}\"]
services = [\"s\"]

[[usage_plans]]
name = \"small\"
max_requests = 3
secret_ids = [\"{ID2}\"]
services = [\"s\"]

[[usage_plans]]
name = \"wide\"
max_requests = 10
quota_period = \"month\"
secret_ids = [\"{ID3}\", \"{ID4}\"]
services = [\"s\"]

[[usage_plans]]
name = \"narrow\"
max_requests = 2
quota_period = \"day\"
secret_ids = [\"{ID3}\"]
services = [\"s\"]
",
        server(1, ""),
        upstream_section("up", backend.addr(), ""),
        limit("services.apis.limits", "caller", 2, "minute"),
        key_pairs("\"s\""),
    );
    let gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    let mut passed = 0;

    // No plan binds ID5 for s: 403, before any count.
    let r = expect(&gw, &signed_get("/k/none", ID5), 403, Some(NO_PLAN));
    assert!(r.header("ratelimit").is_none(), "{}", r.text());
    // Plans do not apply to auth = "none".
    expect(&gw, &get("/open"), 200, None);
    passed += 1;

    // Rate: a burst of 3, then 429 until the next one refills.
    let req = signed_get("/k/burst", ID1);
    let mut c = gw.connect();
    for i in 0..3u64 {
        let r = c.roundtrip(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("ratelimit-policy"), Some("\"burst\";q=3;w=1"));
        assert_eq!(ratelimit(r.header("ratelimit").unwrap()).1, 2 - i);
    }
    passed += 3;
    let r = c.roundtrip(&req);
    assert_eq!(r.assert_gateway_error(429, "burst"), RATE);
    assert_eq!(r.header("retry-after"), Some("1"), "{}", r.text());
    // A refill later, one more passes.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(gw.connect().roundtrip(&req).status, 200);
    passed += 1;

    // Quota: 3 in total, then 429 (a total quota never refills: retry in an hour).
    let req = signed_get("/k/small", ID2);
    for i in 0..3u64 {
        let r = expect(&gw, &req, 200, None);
        assert_eq!(r.header("ratelimit-policy"), Some("\"small\";q=3"));
        let (_, left, _) = ratelimit(&format!("{};t=0", r.header("ratelimit").unwrap()));
        assert_eq!(left, 2 - i, "{}", r.text());
    }
    passed += 3;
    let r = expect(&gw, &req, 429, Some(QUOTA));
    assert_eq!(r.header("retry-after"), Some("3600"));
    assert_eq!(used(admin, "small", ID2), 3);

    // Two plans bind ID3: both count; the narrow one refuses the third request, and the
    // wide one's take is given back.
    let req = signed_get("/k/two", ID3);
    expect(&gw, &req, 200, None);
    let r = expect(&gw, &req, 200, None);
    // The headers speak for the plan nearest to refusing.
    assert_eq!(
        r.header("ratelimit-policy"),
        Some("\"narrow\";q=2;w=86400"),
        "{}",
        r.text()
    );
    passed += 2;
    let r = expect(&gw, &req, 429, Some(QUOTA));
    assert!(
        r.header("ratelimit-policy")
            .unwrap()
            .starts_with("\"narrow\"")
    );
    assert_eq!(used(admin, "wide", ID3), 2);
    assert_eq!(used(admin, "narrow", ID3), 2);

    // A limit refusing after the plan passed: no quota is consumed by the refusal.
    let req = signed_get("/kl/x", ID4);
    expect(&gw, &req, 200, None);
    expect(&gw, &req, 200, None);
    passed += 2;
    for _ in 0..3 {
        expect(&gw, &req, 429, Some(RATE));
    }
    assert_eq!(used(admin, "wide", ID4), 2);

    std::thread::sleep(Duration::from_millis(100));
    let reached: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(reached.len(), passed, "{reached:?}");
    assert!(
        !reached.iter().any(|t| t.contains("none")),
        "a refused request reached the backend: {reached:?}"
    );
}

/// `/usage`: every (plan, bound secret_id) of the running configuration, with the current
/// period's count, what is left and when the period ends; nulls for a plan without a quota
/// and `period_resets` null for a total quota; `?plan=` and `?secret_id=` filter.
#[test]
fn usage_shows_every_plans_counters() {
    let cfg = format!(
        "{}[[services]]\nname = \"s\"\n{}\n{}
[[usage_plans]]
name = \"daily\"
max_requests = 10
quota_period = \"day\"
secret_ids = [\"{ID1}\", \"{ID2}\"]
services = [\"s\"]

[[usage_plans]]
name = \"forever\"
max_requests = 4
secret_ids = [\"{ID1}\"]
services = [\"s\"]

[[usage_plans]]
name = \"speedy\"
max_requests_per_second = 50
secret_ids = [\"{ID2}\"]
services = [\"s\"]
",
        server(2, ""),
        mock_api("k", "/k", "key_pair", ""),
        key_pairs("\"s\""),
    );
    let gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    let midnight = next_midnight();
    let one = signed_get("/k", ID1);
    for _ in 0..3 {
        expect(&gw, &one, 200, None);
    }
    expect(&gw, &signed_get("/k", ID2), 200, None);
    let got = usage(admin, "");
    assert_eq!(
        got,
        json!({"plans": [
            {"plan": "daily", "secret_id": ID1, "used": 3, "remaining": 7, "period_resets": midnight},
            {"plan": "daily", "secret_id": ID2, "used": 1, "remaining": 9, "period_resets": midnight},
            {"plan": "forever", "secret_id": ID1, "used": 3, "remaining": 1, "period_resets": null},
            {"plan": "speedy", "secret_id": ID2, "used": null, "remaining": null, "period_resets": null},
        ]}),
        "{got}"
    );
    assert_eq!(
        usage(admin, "?plan=forever"),
        json!({"plans": [{"plan": "forever", "secret_id": ID1, "used": 3, "remaining": 1, "period_resets": null}]})
    );
    let only_two = usage(admin, &format!("?secret_id={ID2}"));
    assert_eq!(only_two["plans"].as_array().unwrap().len(), 2, "{only_two}");
    assert_eq!(
        usage(admin, &format!("?plan=daily&secret_id={ID2}"))["plans"][0]["used"],
        1
    );
    assert_eq!(usage(admin, "?plan=nope"), json!({"plans": []}));
    // Without plans: an empty list.
    let gw2 = Gateway::start(&format!(
        "{}[[services]]\nname = \"s\"\n{}",
        server(1, ""),
        mock_api("a", "/a", "none", "")
    ));
    assert_eq!(usage(admin_addr(&gw2), ""), json!({"plans": []}));
}

/// Every refusal is counted in `ringway_ratelimit_rejected_total` by policy and reason and
/// logged with `refused_by`.
#[test]
fn refusals_are_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cfg = format!(
        "{}[[services]]\nname = \"s\"\n{}{}\n{}
[[usage_plans]]
name = \"rate1\"
max_requests_per_second = 1
secret_ids = [\"{ID1}\"]
services = [\"s\"]

[[usage_plans]]
name = \"quota1\"
max_requests = 1
secret_ids = [\"{ID2}\"]
services = [\"s\"]
",
        server_logged(1, &log),
        mock_api("p", "/p", "key_pair", ""),
        mock_api(
            "l",
            "/l",
            "none",
            &limit("services.apis.limits", "ip", 1, "minute")
        ),
        key_pairs("\"s\""),
    );
    let gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    let one = signed_get("/p", ID1);
    let two = signed_get("/p", ID2);
    let three = signed_get("/p", ID3);
    expect(&gw, &one, 200, None);
    expect(&gw, &one, 429, Some(RATE));
    expect(&gw, &two, 200, None);
    expect(&gw, &two, 429, Some(QUOTA));
    expect(&gw, &three, 403, Some(NO_PLAN));
    expect(&gw, &get("/l"), 200, None);
    expect(&gw, &get("/l"), 429, Some(RATE));

    let series = |api: &str, policy: &str, reason: &str| {
        format!(
            "ringway_ratelimit_rejected_total{{service=\"s\",api=\"{api}\",policy=\"{policy}\",reason=\"{reason}\"}}"
        )
    };
    for s in [
        series("p", "usage_plan", "rate"),
        series("p", "usage_plan", "quota"),
        series("p", "usage_plan", "no_plan"),
        series("l", "limit", "rate"),
    ] {
        wait_sample(admin, &s, 1.0);
    }

    let lines = read_json_lines(&log, 7);
    let got: Vec<(&str, i64, Option<&str>)> = lines
        .iter()
        .map(|l| {
            (
                l["api"].as_str().unwrap(),
                l["status"].as_i64().unwrap(),
                l["refused_by"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("p", 200, None),
            ("p", 429, Some("rate1")),
            ("p", 200, None),
            ("p", 429, Some("quota1")),
            ("p", 403, Some("usage_plan")),
            ("l", 200, None),
            ("l", 429, Some("limit-1")),
        ],
        "{lines:?}"
    );
    // An admitted request's line has no `refused_by` at all.
    assert!(lines[0].get("refused_by").is_none(), "{}", lines[0]);
    // Refused after auth, the caller is still named (the mock's answers too).
    let callers: Vec<Option<&str>> = lines.iter().map(|l| l["caller"].as_str()).collect();
    assert_eq!(
        callers,
        [
            Some(ID1),
            Some(ID1),
            Some(ID2),
            Some(ID2),
            Some(ID3),
            None,
            None
        ],
        "{lines:?}"
    );
}

/// Counters live across reloads: a used-up per-minute limit stays used up; a raised limit
/// applies at once to the same counter; a removed limit's counter is dropped, so when it
/// comes back it starts afresh. Quota counts stay too.
#[test]
fn reloads_keep_counters_apply_changes_at_once_and_drop_removed_ones() {
    let cfg = |requests: Option<u64>, extra_api: bool| {
        let lim = requests.map_or(String::new(), |n| {
            limit("services.apis.limits", "ip", n, "minute")
        });
        format!(
            "{}[[services]]\nname = \"s\"\n{}{}{}\n{}
[[usage_plans]]
name = \"plan\"
max_requests = 100
secret_ids = [\"{ID1}\"]
services = [\"s\"]
",
            server(2, ""),
            mock_api("a", "=/a", "none", &lim),
            mock_api("k", "=/k", "key_pair", ""),
            if extra_api {
                mock_api("b", "=/b", "none", "")
            } else {
                String::new()
            },
            key_pairs("\"s\""),
        )
    };
    let gw = Gateway::start(&cfg(Some(3), false));
    let admin = admin_addr(&gw);
    let signed = signed_get("/k", ID1);
    for _ in 0..4 {
        expect(&gw, &signed, 200, None);
    }
    for _ in 0..3 {
        expect(&gw, &get("/a"), 200, None);
    }
    expect(&gw, &get("/a"), 429, Some(RATE));

    // An unrelated change: the limit's counter and the quota stay.
    reload(&gw, &cfg(Some(3), true), 1);
    expect(&gw, &get("/b"), 200, None);
    for _ in 0..4 {
        expect(&gw, &get("/a"), 429, Some(RATE));
    }
    assert_eq!(used(admin, "plan", ID1), 4);

    // Raised to 5: two more pass at once, on the same counter.
    reload(&gw, &cfg(Some(5), true), 2);
    let r = expect(&gw, &get("/a"), 200, None);
    assert_eq!(r.header("ratelimit-policy"), Some("\"limit-1\";q=5;w=60"));
    assert_eq!(
        ratelimit(r.header("ratelimit").unwrap()).1,
        1,
        "{}",
        r.text()
    );
    expect(&gw, &get("/a"), 200, None);
    expect(&gw, &get("/a"), 429, Some(RATE));

    // Removed: no limit, no headers.
    reload(&gw, &cfg(None, true), 3);
    for _ in 0..6 {
        let r = expect(&gw, &get("/a"), 200, None);
        assert!(r.header("ratelimit").is_none(), "{}", r.text());
    }
    // Back: a fresh counter.
    reload(&gw, &cfg(Some(5), true), 4);
    for _ in 0..5 {
        expect(&gw, &get("/a"), 200, None);
    }
    expect(&gw, &get("/a"), 429, Some(RATE));
    assert_eq!(used(admin, "plan", ID1), 4);
    expect(&gw, &signed, 200, None);
    assert_eq!(used(admin, "plan", ID1), 5);
}

/// A configuration with a day quota for ID1 saved in `state`.
fn state_config(state: &Path, data: &str, admin: &str) -> String {
    format!(
        "{}[traffic]\nstate_file = {:?}\n[[services]]\nname = \"s\"\n{}\n{}
[[usage_plans]]
name = \"daily\"
max_requests = 5
quota_period = \"day\"
secret_ids = [\"{ID1}\"]
services = [\"s\"]
",
        server(2, "")
            .replacen("127.0.0.1:0", data, 1)
            .replacen("127.0.0.1:0", admin, 1),
        state.display().to_string(),
        mock_api("k", "/k", "key_pair", ""),
        key_pairs("\"s\""),
    )
}

/// The state file as JSON, once it exists.
fn state_json(path: &Path) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        }
        assert!(
            Instant::now() < deadline,
            "no state file {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Quota counts survive a restart (saved at exit), and a crash (saved every second).
#[test]
fn quota_counts_continue_after_a_restart_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("traffic.json");
    let cfg = state_config(&state, "127.0.0.1:0", "127.0.0.1:0");
    let req = signed_get("/k", ID1);

    let mut gw = Gateway::start(&cfg);
    for _ in 0..2 {
        expect(&gw, &req, 200, None);
    }
    assert!(gw.terminate().success(), "{}", gw.stderr());
    let today = {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        now / 86_400 * 86_400
    };
    let label = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(today))
        .to_string()[..10]
        .to_string();
    let saved = state_json(&state);
    assert_eq!(saved["version"], 1, "{saved}");
    assert_eq!(
        saved["quotas"],
        json!([{
            "plan": "daily",
            "secret_id": ID1,
            "period": label,
            "period_start": today,
            "used": 2,
        }]),
        "{saved}"
    );
    // No temporary file is left beside it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["traffic.json"]);

    // A new process continues the count; it is saved within a second, and a crash
    // (SIGKILL, no exit save) keeps what was saved.
    let mut gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    assert_eq!(used(admin, "daily", ID1), 2);
    expect(&gw, &req, 200, None);
    let deadline = Instant::now() + WAIT;
    while state_json(&state)["quotas"][0]["used"] != 3 {
        assert!(
            Instant::now() < deadline,
            "not saved: {}",
            state_json(&state)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw.signal(libc::SIGKILL);
    gw.wait_exit(WAIT).expect("killed");

    let gw = Gateway::start(&cfg);
    let admin = admin_addr(&gw);
    assert_eq!(used(admin, "daily", ID1), 3);
    expect(&gw, &req, 200, None);
    expect(&gw, &req, 200, None);
    expect(&gw, &req, 429, Some(QUOTA));
    assert_eq!(
        usage(admin, "")["plans"][0],
        json!({"plan": "daily", "secret_id": ID1, "used": 5, "remaining": 0, "period_resets": next_midnight()})
    );
}

/// A corrupt (or unreadable) state file: the gateway starts from zero and says why.
#[test]
fn a_corrupt_state_file_is_logged_and_counting_starts_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("traffic.json");
    std::fs::write(&state, "{\"version\":1,\"quotas\":[{\"plan\":").unwrap();
    let gw = Gateway::start(&state_config(&state, "127.0.0.1:0", "127.0.0.1:0"));
    let admin = admin_addr(&gw);
    let line = gw
        .stderr()
        .lines()
        .find(|l| l.contains("traffic.state_file"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("nothing said about the state file:\n{}", gw.stderr()));
    assert!(
        line.starts_with(&format!(
            "ringway: traffic.state_file {}: not valid",
            state.display()
        )) && line.ends_with("quota counts start from zero"),
        "{line}"
    );
    assert_eq!(used(admin, "daily", ID1), 0);
    expect(&gw, &signed_get("/k", ID1), 200, None);
    // The next save replaces it with a good file.
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&state).unwrap();
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            assert_eq!(v["quotas"][0]["used"], 1, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "still corrupt: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A state file of another version: the same.
    let other = dir.path().join("v2.json");
    std::fs::write(&other, "{\"version\":2,\"quotas\":[]}").unwrap();
    let gw = Gateway::start(&state_config(&other, "127.0.0.1:0", "127.0.0.1:0"));
    assert!(
        gw.stderr().contains("version 2 is not supported"),
        "{}",
        gw.stderr()
    );
}

/// An upgrade (`run --upgrade-from`): the successor loads the file while its predecessor
/// still counts; once the predecessor has exited it adds what the predecessor counted
/// since, so the quota is exact across both processes.
#[test]
fn an_upgrade_hands_the_quota_counts_over() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("traffic.json");
    let (data, admin) = (unused_addr(), unused_addr());
    let cfg = state_config(&state, &data.to_string(), &admin.to_string());
    let req = signed_get("/k", ID1);
    let mut old = Gateway::start(&cfg);
    expect(&old, &req, 200, None);
    // Counted by the old one after its last save, at most a second before the new one
    // starts: only the old one's exit save has it.
    expect(&old, &req, 200, None);
    let new = Gateway::try_start_with_args(&cfg, &["--upgrade-from", &old.pid().to_string()])
        .unwrap_or_else(|e| panic!("the new gateway did not start: {e}"));
    let status = old
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("the old one did not exit:\n{}", old.stderr()));
    assert!(status.success(), "{}", old.stderr());
    wait_used(admin, "daily", ID1, 2);
    for _ in 0..3 {
        expect(&new, &req, 200, None);
    }
    expect(&new, &req, 429, Some(QUOTA));
    let deadline = Instant::now() + WAIT;
    while state_json(&state)["quotas"][0]["used"] != 5 {
        assert!(
            Instant::now() < deadline,
            "not saved: {}",
            state_json(&state)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `check` names every traffic-control error: an unknown service in a plan, a secret_id
/// with no key pair, `requests = 0`, `key = "service"` on an API's limit, and the Redis
/// store without `redis_url`.
#[test]
fn check_names_every_traffic_error() {
    let text = r#"
[traffic]
store = "redis"

[[services]]
name = "s"
[[services.apis]]
name = "a"
path = "=/a"
[[services.apis.limits]]
key = "ip"
requests = 0
per = "second"
[[services.apis.limits]]
key = "service"
requests = 5
per = "minute"
[services.apis.backend]
type = "mock"

[[key_pairs]]
secret_id = "AKIDknown01"
secret_key = "known-secret-key-01"
services = ["s"]

[[usage_plans]]
name = "gold"
max_requests = 10
secret_ids = ["AKIDknown01", "AKIDghost01"]
services = ["s", "nope"]
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, text).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // `file:line: key: message`; a missing key is named at its table's line.
    let expect = [
        (2, "traffic.redis_url", "is required with store = \"redis\""),
        (
            12,
            "services[0].apis[0].limits[0].requests",
            "0 is out of range",
        ),
        (
            15,
            "services[0].apis[0].limits[1].key",
            "\"service\" is for a service's limits",
        ),
        (
            29,
            "usage_plans[0].secret_ids[1]",
            "\"AKIDghost01\" has no key pair",
        ),
        (
            30,
            "usage_plans[0].services[1]",
            "\"nope\" is not a service",
        ),
    ];
    for (line, key, what) in expect {
        let want = format!("{}:{line}: {key}: {what}", file.display());
        assert!(
            out.lines().any(|l| l.starts_with(&want)),
            "no line starting {want:?} in:\n{out}"
        );
    }
    assert!(out.contains("5 error(s)"), "{out}");
}

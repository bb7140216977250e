//! The Redis store (SPEC §8 "Where counters live") with a real `redis-server` that each test
//! starts on a free port: three gateways (two workers each) sharing one rate and one quota,
//! Redis killed and restarted mid-run under each `on_store_failure` mode, a paused Redis
//! that never holds a request past `redis_timeout_ms`, and a reload whose changed limit
//! applies at once. Key-pair requests are signed by the `openssl` CLI.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use support::redis::RedisServer;
use support::*;

const ID: &str = "AKIDfleet0001";
const KEY: &str = "fleet-secret-key-0001";

/// A gateway config on the Redis store: `limits` under the service, a plan `gold` with
/// `plan` settings binding `ID`, mock APIs `/open` (no auth) and `/signed` (key pair).
fn config(redis: &str, traffic: &str, limits: &str, plan: &str) -> String {
    format!(
        r#"{server}
[traffic]
store = "redis"
redis_url = "{redis}"
{traffic}

[[key_pairs]]
secret_id = "{ID}"
secret_key = "{KEY}"
services = ["s"]

[[usage_plans]]
name = "gold"
secret_ids = ["{ID}"]
services = ["s"]
{plan}

[[services]]
name = "s"
{limits}

[[services.apis]]
name = "open"
path = "/open"
[services.apis.backend]
type = "mock"
mock_body = "ok"

[[services.apis]]
name = "signed"
path = "/signed"
auth = "key_pair"
[services.apis.backend]
type = "mock"
mock_body = "ok"
"#,
        server = server_section(2, "")
            .replace("admin_listen = \"off\"", "admin_listen = \"127.0.0.1:0\""),
    )
}

fn limit(key: &str, requests: u64, per: &str) -> String {
    format!("[[services.limits]]\nkey = \"{key}\"\nrequests = {requests}\nper = \"{per}\"\n")
}

/// `GET /signed` signed by openssl over `x-date` (valid for the clock-skew window, so it
/// can be sent many times).
fn signed() -> Vec<u8> {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let sig = openssl::hmac_base64("hmac-sha256", KEY, &format!("x-date: {date}"));
    format!(
        "GET /signed HTTP/1.1\r\nHost: example.test\r\nX-Date: {date}\r\nAuthorization: hmac id=\"{ID}\", algorithm=\"hmac-sha256\", headers=\"x-date\", signature=\"{sig}\"\r\n\r\n"
    )
    .into_bytes()
}

/// Statuses of requests sent as fast as `conns` keep-alive connections per address allow,
/// for `run`: (200s, 429s, others, elapsed from the first request to the last answer).
fn hammer(addrs: &[SocketAddr], req: &[u8], conns: usize, run: Duration) -> (u64, u64, u64, f64) {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let other = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = addrs
        .iter()
        .flat_map(|&a| std::iter::repeat_n(a, conns))
        .map(|addr| {
            let (ok, limited, other, stop) =
                (ok.clone(), limited.clone(), other.clone(), stop.clone());
            let req = req.to_vec();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::Relaxed) {
                    let r = c.roundtrip(&req);
                    match r.status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(run);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    (
        ok.load(Ordering::Relaxed),
        limited.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
        elapsed,
    )
}

fn status(gw: &Gateway, req: &[u8]) -> Response {
    gw.connect().roundtrip(req)
}

fn metric(gw: &Gateway, name: &str) -> Option<f64> {
    let (_, text) = admin_get(admin_addr(gw), "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn three_gateways_share_one_rate() {
    let redis = RedisServer::start();
    // A generous store timeout: on a busy machine a 50 ms timeout turns into store
    // failures (counted locally per instance); this test is about fleet-wide counting.
    let toml = config(
        &redis.url(),
        "redis_timeout_ms = 1000",
        &limit("service", 40, "second"),
        "",
    );
    let gws: Vec<Gateway> = (0..3).map(|_| Gateway::start(&toml)).collect();
    let addrs: Vec<SocketAddr> = gws.iter().map(Gateway::addr).collect();
    let (ok, limited, other, elapsed) = hammer(&addrs, &get("/open"), 8, Duration::from_secs(4));
    // One fleet-wide GCRA: the burst of 40, then 40 a second.
    let expected = 40.0 + 40.0 * elapsed;
    let ratio = ok as f64 / expected;
    eprintln!(
        "admitted {ok} of {} in {elapsed:.2} s: {ratio:.3}× the limit",
        ok + limited
    );
    assert_eq!(other, 0);
    assert!(
        limited > ok,
        "the load was not over the limit: {limited} refused"
    );
    assert!(
        (0.93..=1.05).contains(&ratio),
        "{ok} admitted, {expected:.0} expected"
    );
}

#[test]
fn three_gateways_never_exceed_one_quota_and_give_back_what_they_hold() {
    let redis = RedisServer::start();
    // A generous store timeout: a reservation whose answer came after the timeout would
    // be counted in Redis and never admitted (quota lost to the fleet, never exceeded);
    // this test is about giving back, on a machine that may be busy.
    let toml = config(
        &redis.url(),
        "redis_timeout_ms = 1000",
        "",
        "max_requests = 150\nquota_period = \"day\"",
    );
    let mut gws: Vec<Gateway> = (0..3).map(|_| Gateway::start(&toml)).collect();
    let addrs: Vec<SocketAddr> = gws.iter().map(Gateway::addr).collect();
    let req = signed();
    let (ok, limited, other, _) = hammer(&addrs, &req, 3, Duration::from_secs(2));
    assert_eq!(other, 0, "every answer is 200 or 429");
    assert!(ok <= 150, "{ok} admitted past a quota of 150");
    assert!(
        ok >= 140,
        "only {ok} of a quota of 150 admitted: reservations stranded"
    );
    assert!(limited > 0);
    let r = status(&gws[0], &req);
    assert_eq!(r.status, 429);
    assert_eq!(
        json_message(&r.body).as_deref(),
        Some("API quota exceeded.")
    );
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().unwrap() >= 1)
    );
    // `/usage` shows the fleet's count, from Redis: what the three admitted, plus blocks
    // still held unspent.
    let (code, body) = admin_get(admin_addr(&gws[1]), "/usage");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let used = v["plans"][0]["used"].as_u64().unwrap();
    assert!(
        (ok..=150).contains(&used),
        "/usage says {used}, {ok} admitted: {body}"
    );
    assert_eq!(v["plans"][0]["remaining"].as_u64(), Some(150 - used));
    // Stopped gateways give their unspent blocks back: Redis holds what was admitted.
    for gw in &mut gws {
        assert!(gw.terminate().success());
    }
    let keys = redis.cli(&["--raw", "keys", "ringway:q:*"]);
    let key = keys
        .lines()
        .next()
        .expect("a quota key in Redis")
        .to_string();
    let used: u64 = redis.cli(&["--raw", "get", &key]).trim().parse().unwrap();
    assert_eq!(used, ok, "Redis counts {used}, the gateways admitted {ok}");
    // The key expires with its period (a day, plus a day): a TTL in milliseconds, not
    // seconds or microseconds.
    let ttl: i64 = redis.cli(&["--raw", "pttl", &key]).trim().parse().unwrap();
    assert!(
        (86_400_000..=2 * 86_400_000).contains(&ttl),
        "quota key TTL {ttl} ms"
    );
}

/// Sends `n` requests one after another: (200s, 429s, 503s, slowest answer).
fn sequential(gw: &Gateway, req: &[u8], n: usize) -> (u64, u64, u64, Duration) {
    let mut c = gw.connect();
    let (mut ok, mut limited, mut unavailable, mut slowest) = (0, 0, 0, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        let r = c.roundtrip(req);
        slowest = slowest.max(t.elapsed());
        match r.status {
            200 => ok += 1,
            429 => limited += 1,
            503 => {
                assert_eq!(
                    json_message(&r.body).as_deref(),
                    Some("rate limit store unavailable")
                );
                unavailable += 1
            }
            s => panic!("status {s}"),
        }
    }
    (ok, limited, unavailable, slowest)
}

/// A minute limit of 5 per client IP, with Redis killed: the mode decides.
fn store_down(mode: &str) -> ((u64, u64, u64, Duration), Gateway, RedisServer) {
    let mut redis = RedisServer::start();
    let traffic = format!("on_store_failure = \"{mode}\"\nredis_timeout_ms = 50");
    let gw = Gateway::start(&config(
        &redis.url(),
        &traffic,
        &limit("ip", 5, "minute"),
        "",
    ));
    // Fleet counting works: 2 requests counted in Redis.
    assert_eq!(sequential(&gw, &get("/open"), 2).0, 2);
    redis.kill();
    let down = sequential(&gw, &get("/open"), 20);
    (down, gw, redis)
}

#[test]
fn redis_down_local_mode_keeps_enforcing_on_this_instance() {
    let ((ok, limited, unavailable, slowest), gw, mut redis) = store_down("local");
    // The local counters start afresh: 5 pass, 15 are refused, none waits.
    assert_eq!((ok, limited, unavailable), (5, 15, 0));
    assert!(slowest < Duration::from_millis(500), "{slowest:?}");
    assert_eq!(metric(&gw, "ringway_traffic_store_up"), Some(0.0));
    assert!(metric(&gw, "ringway_traffic_store_failures_total").unwrap() >= 1.0);
    assert!(gw.stderr().contains("traffic store"), "{}", gw.stderr());
    // Redis back: fleet counting resumes within a second (the fleet's window, which
    // already holds 2 requests, is what decides again).
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(3);
    let resumed = loop {
        let r = status(&gw, &get("/open"));
        if redis
            .cli(&["--raw", "keys", "ringway:l:*"])
            .contains("ringway:l:")
        {
            break Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "no key in Redis after restart: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(resumed < deadline);
    // Every worker that saw Redis gone probes it once a second.
    let deadline = Instant::now() + Duration::from_secs(3);
    while metric(&gw, "ringway_traffic_store_up") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "store still down after Redis came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn redis_down_allow_mode_admits_and_deny_mode_refuses() {
    let ((ok, limited, unavailable, _), _gw, _r) = store_down("allow");
    assert_eq!((ok, limited, unavailable), (20, 0, 0));
    let ((ok, limited, unavailable, _), _gw, _r) = store_down("deny");
    assert_eq!((ok, limited, unavailable), (0, 0, 20));
}

#[test]
fn a_paused_redis_never_holds_a_request_past_the_timeout() {
    let redis = RedisServer::start();
    let traffic = "redis_timeout_ms = 50";
    let gw = Gateway::start(&config(
        &redis.url(),
        traffic,
        &limit("ip", 1000, "second"),
        "",
    ));
    assert_eq!(sequential(&gw, &get("/open"), 3).0, 3);
    // A Redis that takes connections and never answers (SIGSTOP).
    redis.pause();
    let (ok, _, _, slowest) = sequential(&gw, &get("/open"), 30);
    redis.resume();
    assert_eq!(ok, 30, "on_store_failure = local admits under the limit");
    assert!(
        slowest < Duration::from_millis(300),
        "a request waited {slowest:?} on a paused Redis"
    );
}

#[test]
fn a_reload_applies_a_changed_limit_at_once() {
    let redis = RedisServer::start();
    let gw = Gateway::start(&config(&redis.url(), "", &limit("ip", 2, "minute"), ""));
    let (ok, limited, _, _) = sequential(&gw, &get("/open"), 3);
    assert_eq!((ok, limited), (2, 1));
    let before = gw.stderr().matches("reloaded").count();
    std::fs::write(
        &gw.config_path,
        config(&redis.url(), "", &limit("ip", 5, "minute"), ""),
    )
    .unwrap();
    gw.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.stderr().matches("reloaded").count() == before {
        assert!(Instant::now() < deadline, "{}", gw.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = status(&gw, &get("/open"));
    assert_eq!(r.status, 200, "the raised limit did not apply at once");
    assert_eq!(r.header("ratelimit-policy"), Some("\"limit-1\";q=5;w=60"));
}

//! The usage-plan and limit stages through `decide`, on a fake clock: one table per
//! behaviour (keys, plans, give-backs, the nearest policy's headers, refill). The key-pair
//! signature is openssl's: `printf 'x-date: Wed, 25 Nov 2026 10:00:00 GMT\nsource: unit' |
//! openssl dgst -sha256 -hmac unit-secret-key-01 -binary | openssl base64 -A` (the signing
//! string does not cover the id, so every pair with that secret key shares it).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::config::{Config, load_str};
use crate::gateway::auth::AuthState;
use crate::gateway::params::ParamValues;
use crate::gateway::{Action, Inbound, Local, Scratch, decide};
use crate::http::head::{RequestHead, parse_head};
use crate::traffic::Counters;

const HMAC_NOW: u64 = 1_795_600_800; // Wed, 25 Nov 2026 10:00:00 GMT
const HMAC_SIG: &str = "0n8dcbeWfecQRwL19QeShVYhxcBDAYDF+8nfflrOKJo=";

const CONFIG: &str = r#"
[[key_pairs]]
secret_id = "AKIDgold01"
secret_key = "unit-secret-key-01"
services = ["plans"]
[[key_pairs]]
secret_id = "AKIDboth01"
secret_key = "unit-secret-key-01"
services = ["plans"]
[[key_pairs]]
secret_id = "AKIDnone01"
secret_key = "unit-secret-key-01"
services = ["plans"]

[[usage_plans]]
name = "gold"
max_requests_per_second = 3
max_requests = 5
quota_period = "day"
secret_ids = ["AKIDgold01", "AKIDboth01"]
services = ["plans"]
[[usage_plans]]
name = "tiny"
max_requests = 2
secret_ids = ["AKIDboth01"]
services = ["plans"]

[[services]]
name = "plans"
hosts = ["plans.test"]
[[services.apis]]
name = "signed"
path = "/signed"
auth = "key_pair"
[[services.apis.limits]]
key = "caller"
requests = 4
per = "minute"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "open"
path = "/open"
[services.apis.backend]
type = "mock"

[[services]]
name = "limits"
hosts = ["limits.test"]
[[services.limits]]
key = "service"
requests = 100
per = "second"
[[services.limits]]
key = "api"
requests = 2
per = "minute"
[[services.apis]]
name = "a"
path = "/a"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "b"
path = "/b"
[[services.apis.limits]]
key = "ip"
requests = 1
per = "second"
[services.apis.backend]
type = "mock"

[[services]]
name = "free"
hosts = ["free.test"]
[[services.apis]]
name = "free"
path = "/"
[services.apis.backend]
type = "mock"
"#;

struct Run {
    cfg: Config,
    auth: AuthState,
    counters: Counters,
    start: Instant,
}

impl Run {
    fn new() -> Run {
        let cfg = load_str(CONFIG, Path::new("t.toml")).unwrap();
        let auth = AuthState::new(&cfg);
        let counters = Counters::standalone(&cfg);
        Run {
            cfg,
            auth,
            counters,
            start: Instant::now(),
        }
    }

    /// `decide` at `ms` on the fake clock: `<status> [<message>] [<policy> r=<remaining>]
    /// [retry=<s>]`.
    fn send(&self, raw: &str, client: &str, ms: u64) -> String {
        let mut head = RequestHead::default();
        parse_head(raw.as_bytes(), &self.cfg.server.limits, &mut head).unwrap();
        let inbound = Inbound {
            buf: raw.as_bytes(),
            head: &head,
            https: false,
            client: client.parse::<IpAddr>().unwrap(),
            now: UNIX_EPOCH + Duration::from_secs(HMAC_NOW) + Duration::from_millis(ms),
            mono: self.start + Duration::from_millis(ms),
        };
        let (mut path, mut backend_path, mut params) =
            (String::new(), String::new(), ParamValues::default());
        let scratch = Scratch {
            path: &mut path,
            backend_path: &mut backend_path,
            params: &mut params,
        };
        let d = decide(&self.cfg, &self.auth, &self.counters, &inbound, scratch);
        let mut out = match d.action {
            Action::Local(Local::Error(e)) => format!("{} {}", e.status(), e.message()),
            Action::Local(Local::Mock { status, .. }) => status.to_string(),
            _ => "other".to_string(),
        };
        if let Some(r) = d.rate {
            out.push_str(&format!(
                " {} r={}",
                r.policy.name, r.policy.admitted.remaining
            ));
            if let Some(s) = r.retry_after {
                out.push_str(&format!(" retry={s}"));
            }
        }
        out
    }
}

fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

fn signed(id: &str) -> String {
    format!(
        "GET /signed HTTP/1.1\r\nHost: plans.test\r\nX-Date: Wed, 25 Nov 2026 10:00:00 GMT\r\nSource: unit\r\nAuthorization: hmac id=\"{id}\", algorithm=\"hmac-sha256\", headers=\"x-date source\", signature=\"{HMAC_SIG}\"\r\n\r\n"
    )
}

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";

/// Each case: (request, client, ms on the fake clock, what decide says).
fn check(run: &Run, cases: &[(String, &str, u64, &str)]) {
    for (i, (raw, client, ms, want)) in cases.iter().enumerate() {
        let got = run.send(raw, client, *ms);
        assert_eq!(got, *want, "case {i}: {raw:?} from {client} at {ms} ms");
    }
}

#[test]
fn an_api_without_policies_gets_no_headers() {
    let run = Run::new();
    check(&run, &[(get("free.test", "/"), A, 0, "200")]);
    // Plans of the service do not apply to an API without key-pair auth.
    check(&run, &[(get("plans.test", "/open"), A, 0, "200")]);
}

#[test]
fn limit_keys_count_service_api_and_ip_apart() {
    let run = Run::new();
    #[rustfmt::skip]
    check(&run, &[
        // The service-level `api` limit counts each API apart: 2 a minute on /a...
        (get("limits.test", "/a"), A, 0, "200 limit-2 r=1"),
        (get("limits.test", "/a"), B, 0, "200 limit-2 r=0"),
        (get("limits.test", "/a"), A, 10, "429 API rate limit exceeded. limit-2 r=0 retry=63"),
        // ...and 2 on /b, where the API's own per-IP limit (1 a second) is nearer.
        (get("limits.test", "/b"), A, 10, "200 limit-3 r=0"),
        (get("limits.test", "/b"), A, 20, "429 API rate limit exceeded. limit-3 r=0 retry=1"),
        (get("limits.test", "/b"), B, 20, "200 limit-2 r=0"),
        // /b's minute is used up (the refused request took nothing from it).
        (get("limits.test", "/b"), A, 2000, "429 API rate limit exceeded. limit-2 r=0 retry=61"),
    ]);
}

#[test]
fn a_refusal_gives_back_what_earlier_policies_took() {
    let run = Run::new();
    // /b from A: the service limit (100/s) and /b's `api` limit (2/min) pass, the per-IP
    // limit refuses: neither of the first two keeps the request.
    check(&run, &[(get("limits.test", "/b"), A, 0, "200 limit-3 r=0")]);
    for ms in 1..50 {
        assert!(
            run.send(&get("limits.test", "/b"), A, ms)
                .starts_with("429")
        );
    }
    check(
        &run,
        &[(get("limits.test", "/b"), B, 60, "200 limit-2 r=0")],
    );
}

#[test]
fn usage_plans_admit_bound_callers_only_and_all_must_allow() {
    let run = Run::new();
    #[rustfmt::skip]
    check(&run, &[
        (signed("AKIDnone01"), A, 0, "403 Found no validate usage plan."),
        // gold: 3 a second (burst 3), 5 a day; the API's caller limit: 4 a minute.
        (signed("AKIDgold01"), A, 0, "200 gold r=2"),
        (signed("AKIDgold01"), A, 0, "200 gold r=1"),
        (signed("AKIDgold01"), A, 0, "200 gold r=0"),
        (signed("AKIDgold01"), A, 0, "429 API rate limit exceeded. gold r=0 retry=1"),
        // A second later the rate is whole again; the caller limit's last one is nearest.
        (signed("AKIDgold01"), A, 1000, "200 limit-1 r=0"),
        (signed("AKIDgold01"), A, 2000, "429 API rate limit exceeded. limit-1 r=0 retry=61"),
        // Both plans bind AKIDboth01: tiny's total quota of 2 is the nearest, then refuses.
        (signed("AKIDboth01"), B, 0, "200 tiny r=1"),
        (signed("AKIDboth01"), B, 0, "200 tiny r=0"),
        (signed("AKIDboth01"), B, 0, "429 API quota exceeded. tiny r=0 retry=3600"),
    ]);
}

#[test]
fn a_day_quota_ends_with_its_day_and_refused_requests_do_not_consume_it() {
    let run = Run::new();
    let day_left = 86_400 - HMAC_NOW % 86_400;
    let mut admitted = 0;
    // 1 a second for 8 s: the caller limit (4 a minute) refuses from the fifth on, and
    // those refusals give their gold quota back; gold's quota (5 a day) is never reached.
    for s in 0..8 {
        let r = run.send(&signed("AKIDgold01"), A, s * 1000);
        if r.starts_with("200") {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 4);
    // After the minute: one more of the quota, then it is used up until the day ends.
    assert!(
        run.send(&signed("AKIDgold01"), A, 70_000)
            .starts_with("200")
    );
    let r = run.send(&signed("AKIDgold01"), A, 80_000);
    assert_eq!(
        r,
        format!("429 API quota exceeded. gold r=0 retry={}", day_left - 80)
    );
}

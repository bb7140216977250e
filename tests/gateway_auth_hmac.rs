//! Key-pair (HMAC) auth (SPEC §4 `key_pair`) through the real binary. Every signature is made
//! by the `openssl` CLI (`support::openssl`), never by ringway's code or a Rust HMAC in the
//! test: a bug the verifier shares with the signer cannot hide.
//!
//! Every refused request is checked not to have reached the backend; each test has a
//! positive control that does reach it.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::openssl;
use support::*;

const HOST: &str = "example.test";
const ID: &str = "AKIDitest0001";
const KEY: &str = "itest-secret-key-0001";
/// Bound to the service `other` only.
const OTHER_ID: &str = "AKIDother0001";
const OTHER_KEY: &str = "other-secret-key-0001";
/// Its key comes from the gateway's environment.
const ENV_ID: &str = "AKIDenv000001";
const ENV_VAR: &str = "RINGWAY_ITEST_HMAC_SECRET";
const ENV_KEY: &str = "env-secret-key-0001!";

const ALGORITHMS: [&str; 4] = ["hmac-sha1", "hmac-sha256", "hmac-sha384", "hmac-sha512"];

fn config(backend: SocketAddr, access_log: Option<&Path>, env_pair: bool) -> String {
    let mut server = server_section(1, "");
    if let Some(p) = access_log {
        server = server.replace(
            "access_log = \"off\"",
            &format!("access_log = {:?}", p.display().to_string()),
        );
    }
    let env = if env_pair {
        format!(
            "[[key_pairs]]\nsecret_id = \"{ENV_ID}\"\nsecret_key_env = \"{ENV_VAR}\"\nservices = [\"svc\"]\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"{server}{up}
[[services]]
name = "svc"

[[services.apis]]
name = "signed"
path = "/k"
method = "ANY"
auth = "key_pair"
[services.apis.backend]
upstream = "up"
path = "/b/k"

[[services.apis]]
name = "signed-params"
path = "=/kp"
auth = "key_pair"
[[services.apis.params]]
name = "X-Need"
location = "header"
required = true
[services.apis.backend]
upstream = "up"
path = "/b/kp"

[[services.apis]]
name = "open"
path = "=/open"
[services.apis.backend]
upstream = "up"
path = "/b/open"

[[services]]
name = "other"
hosts = ["other.test"]

[[services.apis]]
name = "other"
path = "/o"
auth = "key_pair"
[services.apis.backend]
upstream = "up"
path = "/b/o"

[[key_pairs]]
secret_id = "{ID}"
secret_key = "{KEY}"
services = ["svc"]

[[key_pairs]]
secret_id = "{OTHER_ID}"
secret_key = "{OTHER_KEY}"
services = ["other"]
{env}"#,
        up = upstream_section("up", backend, ""),
    )
}

fn start() -> (Backend, Gateway) {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let gw = Gateway::start(&config(backend.addr(), None, false));
    (backend, gw)
}

/// An IMF-fixdate `offset` seconds from now. The base is the *next* whole second, so that a
/// date in the past errs on the young side and one in the future on the far side: each edge
/// case keeps about a second of slack for the time the request takes.
fn date(offset: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let base = now.as_secs() as i64 + i64::from(now.subsec_nanos() > 0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs((base + offset) as u64))
}

/// The same instant as [`date`]`(0)`, as an RFC 850 date (`Sunday, 06-Nov-94 08:49:37 GMT`).
fn rfc850_date() -> String {
    let imf = date(0); // "Sun, 06 Nov 1994 08:49:37 GMT"
    let day = match &imf[..3] {
        "Mon" => "Monday",
        "Tue" => "Tuesday",
        "Wed" => "Wednesday",
        "Thu" => "Thursday",
        "Fri" => "Friday",
        "Sat" => "Saturday",
        _ => "Sunday",
    };
    format!(
        "{day}, {}-{}-{} {} GMT",
        &imf[5..7],
        &imf[8..11],
        &imf[14..16],
        &imf[17..25]
    )
}

/// The same instant as an asctime date (`Sun Nov  6 08:49:37 1994`).
fn asctime_date() -> String {
    let imf = date(0);
    let mday: u32 = imf[5..7].parse().unwrap();
    format!(
        "{} {} {mday:>2} {} {}",
        &imf[..3],
        &imf[8..11],
        &imf[17..25],
        &imf[12..16]
    )
}

/// A request about to be signed: method, target, headers (Host first) in order.
#[derive(Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Req {
    fn get(target: &str) -> Req {
        Req::new("GET", target, HOST)
    }

    fn new(method: &str, target: &str, host: &str) -> Req {
        Req {
            method: method.into(),
            target: target.into(),
            headers: vec![("Host".into(), host.into())],
        }
    }

    fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn dated(self) -> Req {
        self.header("X-Date", &date(0))
    }

    /// SPEC §4: for each listed name, `lowercase(name): value`, joined by `\n`;
    /// `request-line` is the request line itself.
    fn signing_string(&self, signed: &str) -> String {
        signed
            .split(' ')
            .filter(|n| !n.is_empty())
            .map(|n| {
                if n.eq_ignore_ascii_case("request-line") {
                    return format!("{} {} HTTP/1.1", self.method, self.target);
                }
                let values: Vec<&str> = self
                    .headers
                    .iter()
                    .filter(|(h, _)| h.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.as_str())
                    .collect();
                format!("{}: {}", n.to_ascii_lowercase(), values.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Adds `Authorization: hmac ...` signed by openssl.
    fn signed(self, id: &str, algorithm: &str, key: &str, signed: &str) -> Req {
        let sig = openssl::hmac_base64(algorithm, key, &self.signing_string(signed));
        self.header(
            "Authorization",
            &format!(
                "hmac id=\"{id}\", algorithm=\"{algorithm}\", headers=\"{signed}\", signature=\"{sig}\""
            ),
        )
    }

    fn bytes(&self) -> Vec<u8> {
        let mut r = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (n, v) in &self.headers {
            r.push_str(&format!("{n}: {v}\r\n"));
        }
        r.push_str("\r\n");
        r.into_bytes()
    }
}

fn send(gw: &Gateway, req: &Req) -> Response {
    gw.connect().roundtrip(req.bytes())
}

fn ctx(req: &Req) -> String {
    String::from_utf8_lossy(&req.bytes()).into_owned()
}

/// Expects the gateway's own 401 with exactly `message`.
fn expect_401(gw: &Gateway, req: &Req, message: &str) {
    let r = send(gw, req);
    let got = r.assert_gateway_error(401, &ctx(req));
    assert_eq!(got, message, "{}", ctx(req));
}

fn expect_200(gw: &Gateway, req: &Req) -> Response {
    let r = send(gw, req);
    assert_eq!(
        r.status,
        200,
        "{}\n--- response ---\n{}",
        ctx(req),
        r.text()
    );
    r
}

fn assert_untouched(backend: &Backend) {
    assert_eq!(
        backend.requests().len(),
        0,
        "the backend was reached: {:?}",
        backend.requests()
    );
    assert_eq!(backend.connections(), 0, "the backend got a connection");
}

#[test]
fn every_algorithm_authenticates_and_the_backend_gets_the_secret_id() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = Gateway::start(&config(backend.addr(), Some(&log), false));
    let mut ids = Vec::new();
    for (i, alg) in ALGORITHMS.iter().enumerate() {
        let req = Req::get(&format!("/k/{alg}?x=1"))
            .dated()
            .header("Source", "itest")
            // Client copies of the gateway's headers: never forwarded, never trusted.
            .header("X-Api-SecretId", "AKIDforged")
            .header("X-Api-Subject", "mallory")
            .header("X-Api-RequestId", "forged-id")
            .signed(ID, alg, KEY, "x-date source");
        let r = expect_200(&gw, &req);
        let got = backend.wait_requests(i + 1)[i].clone();
        assert_eq!(got.target, format!("/b/k/{alg}?x=1"));
        assert_eq!(got.header_all("x-api-secretid"), [ID], "{}", got.text());
        assert!(got.header("authorization").is_none(), "{}", got.text());
        assert!(got.header("x-api-subject").is_none(), "{}", got.text());
        assert!(!got.text().contains("forged"), "{}", got.text());
        assert_eq!(got.header_all("source"), ["itest"]);
        assert_eq!(got.header_all("x-api-requestid"), [r.request_id().as_str()]);
        ids.push(r.request_id());
    }
    // Unauthenticated: no caller in the log.
    expect_401(
        &gw,
        &Req::get("/k/none"),
        "HMAC authorization header is missing",
    );

    let lines = read_json_lines(&log, 5);
    assert_eq!(lines.len(), 5, "{lines:?}");
    for (line, id) in lines.iter().zip(&ids) {
        assert_eq!(line["request_id"], id.as_str(), "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["api"], "signed", "{line}");
        assert_eq!(line["caller"], ID, "{line}");
    }
    assert_eq!(lines[4]["status"], 401);
    assert_eq!(lines[4]["caller"], serde_json::Value::Null);
    assert_eq!(backend.requests().len(), 4);
}

#[test]
fn failures_are_401_with_the_exact_message_and_never_forwarded() {
    let (backend, gw) = start();
    let base = || Req::get("/k/x?y=1").dated().header("Source", "a");
    let auth = |r: Req, v: &str| r.header("Authorization", v);
    let cases: Vec<(Req, &str)> = vec![
        (base(), "HMAC authorization header is missing"),
        (
            auth(base(), "Basic dXNlcjpwYXNz"),
            "HMAC authorization header is malformed: scheme is not hmac",
        ),
        (
            auth(base(), "hmac id=AKIDitest0001"),
            "HMAC authorization header is malformed: parameter value is not quoted",
        ),
        (
            auth(
                base(),
                "hmac id=\"AKIDitest0001\", algorithm=\"hmac-sha256\", headers=\"x-date\"",
            ),
            "HMAC authorization header is malformed: missing signature",
        ),
        (
            auth(
                base(),
                "hmac id=\"AKIDitest0001\", algorithm=\"hmac-md5\", headers=\"x-date\", signature=\"AAAA\"",
            ),
            "HMAC algorithm is not supported: hmac-md5",
        ),
        (
            auth(
                base(),
                "hmac id=\"AKIDitest0001\", algorithm=\"hmac-sha256\", headers=\"x-date\", signature=\"!!!!\"",
            ),
            "HMAC authorization header is malformed: signature is not base64",
        ),
        (
            base().signed("AKIDnobody01", "hmac-sha256", KEY, "x-date"),
            "HMAC id not found",
        ),
        (
            base().signed(OTHER_ID, "hmac-sha256", OTHER_KEY, "x-date"),
            "HMAC id is not allowed to call this service",
        ),
        (
            base().signed(ID, "hmac-sha256", "not-the-right-key", "x-date source"),
            "HMAC signature does not match",
        ),
        // The key of another pair.
        (
            base().signed(ID, "hmac-sha256", OTHER_KEY, "x-date"),
            "HMAC signature does not match",
        ),
        // Date not signed (it is sent).
        (
            base().signed(ID, "hmac-sha256", KEY, "source"),
            "HMAC signature must cover the x-date or date header",
        ),
        (
            base().signed(ID, "hmac-sha256", KEY, "x-date x-missing"),
            "HMAC signed header x-missing is missing from the request",
        ),
        (
            Req::get("/k/x").header("X-Date", &rfc850_date()).signed(
                ID,
                "hmac-sha256",
                KEY,
                "x-date",
            ),
            "HMAC date is not an IMF-fixdate",
        ),
        (
            Req::get("/k/x").header("X-Date", &asctime_date()).signed(
                ID,
                "hmac-sha256",
                KEY,
                "x-date",
            ),
            "HMAC date is not an IMF-fixdate",
        ),
        (
            base()
                .header("X-Date", &date(0))
                .signed(ID, "hmac-sha256", KEY, "x-date"),
            "HMAC date is not an IMF-fixdate",
        ),
    ];
    for (req, message) in &cases {
        expect_401(&gw, req, message);
    }

    // Tampering after signing.
    let signed = base().signed(ID, "hmac-sha256", KEY, "x-date source");
    let mut tampered = signed.clone();
    tampered.headers[2].1 = "b".into(); // Source: a -> b
    expect_401(&gw, &tampered, "HMAC signature does not match");
    // The signature of one algorithm presented as another's.
    let mut relabelled = signed.clone();
    let auth_value = &mut relabelled.headers.last_mut().unwrap().1;
    *auth_value = auth_value.replace("hmac-sha256", "hmac-sha512");
    expect_401(&gw, &relabelled, "HMAC signature does not match");
    // Another target under a signed request line.
    let mut moved =
        Req::get("/k/a?x=1")
            .dated()
            .signed(ID, "hmac-sha256", KEY, "request-line x-date");
    moved.target = "/k/a?x=2".into();
    expect_401(&gw, &moved, "HMAC signature does not match");
    // Another method under a signed request line.
    let mut method = Req::get("/k/a")
        .dated()
        .signed(ID, "hmac-sha256", KEY, "request-line x-date");
    method.method = "DELETE".into();
    expect_401(&gw, &method, "HMAC signature does not match");

    assert_untouched(&backend);
    // Positive control: the untampered request goes through.
    expect_200(&gw, &signed);
    assert_eq!(backend.wait_requests(1)[0].target, "/b/k/x?y=1");
}

/// Sends a request dated `offset` s from now and returns whether it passed; a failure is
/// retried (at most 3 times) only when the test itself was slow (the date's slack is one
/// second) and the outcome disagreed with `want_ok`.
fn skew_case(gw: &Gateway, offset: i64, want_ok: bool) -> bool {
    for _ in 0..3 {
        let start = Instant::now();
        let req = Req::get(&format!("/k/skew{offset}"))
            .header("X-Date", &date(offset))
            .signed(ID, "hmac-sha256", KEY, "x-date");
        let r = send(gw, &req);
        let ok = match r.status {
            200 => true,
            401 => {
                let m = r.assert_gateway_error(401, &ctx(&req));
                assert_eq!(m, "Time skew exceeded", "{}", ctx(&req));
                false
            }
            s => panic!("status {s}: {}", r.text()),
        };
        if ok == want_ok || start.elapsed() < Duration::from_millis(900) {
            return ok;
        }
    }
    !want_ok
}

#[test]
fn clock_skew_899_passes_and_901_fails_both_ways() {
    let (backend, gw) = start();
    let mut passed = 0;
    for (offset, want_ok) in [(-901, false), (901, false), (-899, true), (899, true)] {
        let ok = skew_case(&gw, offset, want_ok);
        assert_eq!(ok, want_ok, "x-date {offset} s from now");
        if ok {
            passed += 1;
            // Failed attempts, if any, never reach the backend.
            assert_eq!(backend.wait_requests(passed).len(), passed);
        } else {
            assert_eq!(backend.requests().len(), passed);
        }
    }
    assert_eq!(passed, 2);
}

#[test]
fn date_header_request_line_and_header_order_variants_pass() {
    let (backend, gw) = start();
    let mut n = 0;
    let mut ok = |req: Req, want_target: &str| {
        expect_200(&gw, &req);
        n += 1;
        let got = backend.wait_requests(n)[n - 1].clone();
        assert_eq!(got.target, want_target);
        assert_eq!(got.header_all("x-api-secretid"), [ID], "{}", got.text());
        assert!(got.header("authorization").is_none(), "{}", got.text());
    };
    // `date` instead of `x-date`.
    ok(
        Req::get("/k/d")
            .header("Date", &date(0))
            .signed(ID, "hmac-sha256", KEY, "date"),
        "/b/k/d",
    );
    // The request line, exactly as sent, with an odd query.
    ok(
        Req::get("/k/a%20b?x=%41+1&&y")
            .dated()
            .signed(ID, "hmac-sha1", KEY, "request-line x-date"),
        "/b/k/a%20b?x=%41+1&y",
    );
    // A POST signing Host and its content type, names listed in mixed case and extra spaces.
    let mut post = Req::new("POST", "/k/p", HOST)
        .header("Content-Type", "application/json")
        .header("Content-Length", "2")
        .dated()
        .signed(ID, "hmac-sha512", KEY, "Host  Content-Type X-Date");
    // The scheme and the parameter names are case-insensitive, in any order.
    let v = &mut post.headers.last_mut().unwrap().1;
    *v = v.replacen("hmac id=", "HMAC ID=", 1);
    let mut bytes = post.bytes();
    bytes.extend_from_slice(b"{}");
    let r = gw.connect().roundtrip(&bytes);
    assert_eq!(r.status, 200, "{}", r.text());
    n += 1;
    let got = backend.wait_requests(n)[n - 1].clone();
    assert_eq!(got.method, "POST");
    assert_eq!(got.body, b"{}");
    assert_eq!(got.header_all("x-api-secretid"), [ID]);
    // Several values of a signed header are joined with ", ".
    let two = Req::get("/k/two")
        .dated()
        .header("X-Multi", "a")
        .header("X-Multi", "b")
        .signed(ID, "hmac-sha384", KEY, "x-date x-multi");
    let mut ok2 = |req: Req, t: &str| {
        expect_200(&gw, &req);
        n += 1;
        assert_eq!(backend.wait_requests(n)[n - 1].target, t);
    };
    ok2(two, "/b/k/two");
}

#[test]
fn a_pair_bound_to_its_own_service_passes_there() {
    let (backend, gw) = start();
    let req = Req::new("GET", "/o/1", "other.test").dated().signed(
        OTHER_ID,
        "hmac-sha256",
        OTHER_KEY,
        "x-date",
    );
    expect_200(&gw, &req);
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.target, "/b/o/1");
    assert_eq!(got.header_all("x-api-secretid"), [OTHER_ID]);
    // ... and the svc pair is not allowed there.
    let req =
        Req::new("GET", "/o/1", "other.test")
            .dated()
            .signed(ID, "hmac-sha256", KEY, "x-date");
    expect_401(&gw, &req, "HMAC id is not allowed to call this service");
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn secret_key_env_key_works() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let gw = Gateway::start_with_env(&config(backend.addr(), None, true), &[(ENV_VAR, ENV_KEY)]);
    let wrong = Req::get("/k/env")
        .dated()
        .signed(ENV_ID, "hmac-sha256", ENV_VAR, "x-date");
    expect_401(&gw, &wrong, "HMAC signature does not match");
    assert_untouched(&backend);
    let req = Req::get("/k/env")
        .dated()
        .signed(ENV_ID, "hmac-sha256", ENV_KEY, "x-date");
    expect_200(&gw, &req);
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.header_all("x-api-secretid"), [ENV_ID]);
}

#[test]
fn secret_key_env_unset_is_a_config_error() {
    let backend = Backend::ok();
    let e = match Gateway::try_start(&config(backend.addr(), None, true)) {
        Ok(_) => panic!("the gateway started without {ENV_VAR}"),
        Err(e) => e,
    };
    assert!(e.contains(ENV_VAR), "{e}");
}

#[test]
fn auth_runs_before_params_and_open_apis_need_none() {
    let (backend, gw) = start();
    // Neither credentials nor the required header: auth answers first.
    expect_401(
        &gw,
        &Req::get("/kp"),
        "HMAC authorization header is missing",
    );
    // Authenticated, but the param is missing.
    let req = Req::get("/kp")
        .dated()
        .signed(ID, "hmac-sha256", KEY, "x-date");
    let r = send(&gw, &req);
    assert_eq!(
        r.assert_gateway_error(403, &ctx(&req)),
        "header X-Need is required"
    );
    assert_untouched(&backend);
    let req =
        Req::get("/kp")
            .dated()
            .header("X-Need", "1")
            .signed(ID, "hmac-sha256", KEY, "x-date");
    expect_200(&gw, &req);
    assert_eq!(backend.wait_requests(1)[0].target, "/b/kp");
    // An API without auth forwards the client's Authorization as it came and sets no
    // identity, whatever the client claims.
    let req = Req::get("/open")
        .dated()
        .header("X-Api-SecretId", ID)
        .signed(ID, "hmac-sha256", KEY, "x-date");
    expect_200(&gw, &req);
    let got = backend.wait_requests(2)[1].clone();
    assert!(got.header("x-api-secretid").is_none(), "{}", got.text());
    assert!(
        got.header("authorization")
            .is_some_and(|a| a.starts_with("hmac id=")),
        "{}",
        got.text()
    );
}

#[test]
fn a_refused_requests_body_is_never_read_as_a_request() {
    let (backend, gw) = start();
    let smuggled = format!("GET /open HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let mut c = gw.connect();
    c.send(format!(
        "POST /k HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n{smuggled}GET /open?next HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
        smuggled.len()
    ));
    let r = c.read_response();
    assert_eq!(
        r.assert_gateway_error(401, "pipelined"),
        "HMAC authorization header is missing"
    );
    let r = c.read_response();
    assert_eq!((r.status, r.body_text()), (200, "/b/open?next".into()));
    let got = backend.wait_requests(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, "/b/open?next");
}

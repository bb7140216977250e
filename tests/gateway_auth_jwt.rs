//! OAuth 2.0 (JWT) auth (SPEC §4 `oauth2`) through the real binary. Every token signature is
//! made by the `openssl` CLI with the test keys of `tests/fixtures/jwt/` (made by
//! `make_keys.sh`); the test only base64url-encodes and builds JSON.
//!
//! Every refused request is checked not to have reached the backend; each test has a
//! positive control that does reach it.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;
use support::openssl::{self, b64url, jwt_fixture};
use support::*;

const MSG_MISSING: &str = "Oauth miss Oauth id_token";
const MSG_INVALID: &str = "Oauth id_token verify error";

const RSA: &str = "rsa2048.pem";
const RSA_OTHER: &str = "rsa2048_other.pem";
const EC: &str = "p256.pem";

fn jwk(name: &str) -> String {
    std::fs::read_to_string(jwt_fixture(name))
        .unwrap()
        .trim()
        .to_string()
}

/// One service on `host` with an oauth2 API `/me` (any method) and `=/mp` (a required query
/// param `q`), to backend `/b/<name>...`.
fn service(name: &str, host: &str, oauth2: &str) -> String {
    format!(
        r#"
[[services]]
name = "{name}"
hosts = ["{host}"]

[[services.apis]]
name = "me"
path = "/me"
method = "ANY"
auth = "oauth2"
[services.apis.backend]
upstream = "up"
path = "/b/{name}"

[[services.apis]]
name = "me-params"
path = "=/mp"
auth = "oauth2"
[[services.apis.params]]
name = "q"
location = "query"
required = true
[services.apis.backend]
upstream = "up"
path = "/b/{name}/mp"

[services.oauth2]
{oauth2}
"#
    )
}

fn config(backend: SocketAddr) -> String {
    let rsa = jwk("rsa2048.jwk.json");
    let ec_file = jwt_fixture("p256.jwk.json");
    [
        server_section(1, ""),
        upstream_section("up", backend, ""),
        service("rsa", "rsa.test", &format!("public_key = '{rsa}'")),
        // The EC key from a file (absolute path: the gateway runs in a temporary directory).
        service(
            "ec",
            "ec.test",
            &format!("public_key_file = {:?}", ec_file.display().to_string()),
        ),
        service(
            "cookie",
            "cookie.test",
            &format!(
                "public_key = '{rsa}'\ntoken_location = \"cookie\"\ntoken_name = \"id_token\""
            ),
        ),
        service(
            "query",
            "query.test",
            &format!("public_key = '{rsa}'\ntoken_location = \"query\"\ntoken_name = \"id_token\""),
        ),
    ]
    .concat()
}

fn start() -> (Backend, Gateway) {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let gw = Gateway::start(&config(backend.addr()));
    (backend, gw)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims with `sub`, `exp` and `nbf` relative to now (seconds), each optional.
fn claims(sub: Option<&str>, exp: Option<i64>, nbf: Option<i64>) -> String {
    let mut c = serde_json::Map::new();
    c.insert("iss".into(), json!("ringway-itest"));
    if let Some(s) = sub {
        c.insert("sub".into(), json!(s));
    }
    if let Some(e) = exp {
        c.insert("exp".into(), json!(now() + e));
    }
    if let Some(n) = nbf {
        c.insert("nbf".into(), json!(now() + n));
    }
    serde_json::Value::Object(c).to_string()
}

/// A token for `sub`, valid for an hour, signed by openssl.
fn token(alg: &str, key: &str, sub: &str) -> String {
    signed(alg, key, &claims(Some(sub), Some(3600), Some(-10)))
}

fn signed(alg: &str, key: &str, payload: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT"}).to_string();
    openssl::jws(alg, key, &header, payload)
}

/// `GET target` on `host` with extra header lines.
fn request(host: &str, target: &str, headers: &[String]) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn send(gw: &Gateway, req: &[u8]) -> Response {
    gw.connect().roundtrip(req)
}

fn expect_401(gw: &Gateway, req: &[u8], message: &str) {
    let ctx = String::from_utf8_lossy(req).into_owned();
    let r = send(gw, req);
    assert_eq!(r.assert_gateway_error(401, &ctx), message, "{ctx}");
}

/// Sends `req`, expects 200 and returns what the backend received (`n`th request overall).
fn forwarded(gw: &Gateway, backend: &Backend, req: &[u8], n: usize) -> Request {
    let r = send(gw, req);
    assert_eq!(
        r.status,
        200,
        "{}\n--- response ---\n{}",
        String::from_utf8_lossy(req),
        r.text()
    );
    let got = backend.wait_requests(n);
    assert_eq!(got.len(), n, "{got:?}");
    got[n - 1].clone()
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
fn rs256_and_es256_tokens_in_the_header_pass_with_the_subject() {
    let (backend, gw) = start();
    let rs = token("RS256", RSA, "alice");
    let got = forwarded(
        &gw,
        &backend,
        &request(
            "rsa.test",
            "/me/x?y=1",
            &[bearer(&rs), "X-Api-Subject: mallory".into()],
        ),
        1,
    );
    assert_eq!(got.target, "/b/rsa/x?y=1");
    assert_eq!(got.header_all("x-api-subject"), ["alice"], "{}", got.text());
    assert!(got.header("x-api-secretid").is_none(), "{}", got.text());
    // A header token is forwarded as it came.
    assert_eq!(
        got.header_all("authorization"),
        [format!("Bearer {rs}").as_str()]
    );

    let es = token("ES256", EC, "bob");
    let got = forwarded(
        &gw,
        &backend,
        &request("ec.test", "/me", &[format!("authorization: bearer   {es}")]),
        2,
    );
    assert_eq!(got.target, "/b/ec");
    assert_eq!(got.header_all("x-api-subject"), ["bob"], "{}", got.text());

    for (i, alg) in ["RS384", "RS512"].iter().enumerate() {
        let t = token(alg, RSA, alg);
        let got = forwarded(
            &gw,
            &backend,
            &request("rsa.test", "/me", &[bearer(&t)]),
            3 + i,
        );
        assert_eq!(got.header_all("x-api-subject"), [*alg], "{}", got.text());
    }

    // Inner spaces and non-ASCII are fine in a subject.
    let t = token("RS256", RSA, "Ada Lovelace é");
    let got = forwarded(&gw, &backend, &request("rsa.test", "/me", &[bearer(&t)]), 5);
    assert_eq!(got.header_all("x-api-subject"), ["Ada Lovelace é"]);

    // No `sub`: no X-Api-Subject, and the client's copy is still dropped.
    let t = signed("RS256", RSA, &claims(None, Some(3600), None));
    let got = forwarded(
        &gw,
        &backend,
        &request(
            "rsa.test",
            "/me",
            &[bearer(&t), "X-Api-Subject: mallory".into()],
        ),
        6,
    );
    assert!(got.header("x-api-subject").is_none(), "{}", got.text());
}

#[test]
fn token_in_a_cookie_passes() {
    let (backend, gw) = start();
    let t = token("RS256", RSA, "carol");
    let cookie = format!("Cookie: theme=dark; id_token={t}; x=1");
    let got = forwarded(
        &gw,
        &backend,
        &request("cookie.test", "/me/c", std::slice::from_ref(&cookie)),
        1,
    );
    assert_eq!(got.target, "/b/cookie/c");
    assert_eq!(got.header_all("x-api-subject"), ["carol"], "{}", got.text());
    assert_eq!(
        got.header_all("cookie"),
        [cookie.strip_prefix("Cookie: ").unwrap()]
    );
    // In a second Cookie header line too.
    let got = forwarded(
        &gw,
        &backend,
        &request(
            "cookie.test",
            "/me",
            &["Cookie: a=1".into(), format!("Cookie: id_token={t}")],
        ),
        2,
    );
    assert_eq!(got.header_all("x-api-subject"), ["carol"], "{}", got.text());
}

#[test]
fn token_in_the_query_passes_and_leaves_the_forwarded_query() {
    let (backend, gw) = start();
    let t = token("ES256", EC, "dave"); // an RSA service: must fail
    expect_401(
        &gw,
        &request("query.test", &format!("/me?id_token={t}"), &[]),
        MSG_INVALID,
    );
    assert_untouched(&backend);

    let t = token("RS256", RSA, "dave");
    let cases = [
        (
            format!("/me/q?a=%41+b&id_token={t}&c&d=%2f"),
            "/b/query/q?a=%41+b&c&d=%2f",
        ),
        (format!("/me?id_token={t}&z=1"), "/b/query?z=1"),
        (format!("/me?z=1&id_token={t}"), "/b/query?z=1"),
        (format!("/me?id_token={t}"), "/b/query"),
    ];
    for (i, (target, want)) in cases.iter().enumerate() {
        let got = forwarded(&gw, &backend, &request("query.test", target, &[]), i + 1);
        assert_eq!(got.target, *want);
        assert_eq!(got.header_all("x-api-subject"), ["dave"], "{}", got.text());
    }
}

#[test]
fn a_missing_token_is_401_oauth_miss() {
    let (backend, gw) = start();
    let t = token("RS256", RSA, "alice");
    let cases: Vec<Vec<u8>> = vec![
        request("rsa.test", "/me", &[]),
        request(
            "rsa.test",
            "/me",
            &["Authorization: Basic dXNlcjpwYXNz".into()],
        ),
        request("rsa.test", "/me", &["Authorization: Bearer".into()]),
        request("rsa.test", "/me", &["Authorization: Bearer    ".into()]),
        // The token in the wrong place for the service.
        request("rsa.test", &format!("/me?id_token={t}"), &[]),
        request("rsa.test", "/me", &[format!("Cookie: id_token={t}")]),
        request("cookie.test", "/me", &[]),
        request("cookie.test", "/me", &["Cookie: other=1; id_token=".into()]),
        request("cookie.test", "/me", &[format!("Cookie: ID_TOKEN={t}")]),
        request("cookie.test", "/me", &[bearer(&t)]),
        request("query.test", "/me", &[]),
        request("query.test", "/me?id_token=", &[]),
        request("query.test", "/me?id_token", &[]),
        request("query.test", &format!("/me?ID_TOKEN={t}"), &[]),
        request("query.test", "/me", &[bearer(&t)]),
    ];
    for req in &cases {
        expect_401(&gw, req, MSG_MISSING);
    }
    assert_untouched(&backend);
    let got = forwarded(&gw, &backend, &request("rsa.test", "/me", &[bearer(&t)]), 1);
    assert_eq!(got.header_all("x-api-subject"), ["alice"]);
}

#[test]
fn bad_tokens_are_401_verify_error() {
    let (backend, gw) = start();
    let good = token("RS256", RSA, "alice");
    let good_parts: Vec<&str> = good.split('.').collect();
    let payload = b64url(claims(Some("alice"), Some(3600), None).as_bytes());

    // alg none, with an empty signature and with the good one.
    let none = format!("{}.{payload}.", b64url(br#"{"alg":"none","typ":"JWT"}"#));
    let none_sig = format!(
        "{}.{payload}.{}",
        b64url(br#"{"alg":"none"}"#),
        good_parts[2]
    );
    // HS256 keyed with the RSA public key (algorithm confusion): with the modulus bytes,
    // and with the JWK text.
    let n = serde_json::from_str::<serde_json::Value>(&jwk("rsa2048.jwk.json")).unwrap()["n"]
        .as_str()
        .unwrap()
        .to_string();
    let n_hex: String = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&n)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hs_input = format!("{}.{payload}", b64url(br#"{"alg":"HS256","typ":"JWT"}"#));
    let hs_n = format!(
        "{hs_input}.{}",
        b64url(&openssl::hmac_hexkey(
            "-sha256",
            &n_hex,
            hs_input.as_bytes()
        ))
    );
    let jwk_hex: String = jwk("rsa2048.jwk.json")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let hs_jwk = format!(
        "{hs_input}.{}",
        b64url(&openssl::hmac_hexkey(
            "-sha256",
            &jwk_hex,
            hs_input.as_bytes()
        ))
    );
    // The payload swapped after signing.
    let other_payload = b64url(claims(Some("root"), Some(3600), None).as_bytes());
    let swapped = format!("{}.{other_payload}.{}", good_parts[0], good_parts[2]);

    let header_sig = |header: &str, payload: &str| openssl::jws("RS256", RSA, header, payload);
    let cases: Vec<(&str, String)> = vec![
        ("alg none", none),
        ("alg none with a signature", none_sig),
        ("HS256 keyed with n", hs_n),
        ("HS256 keyed with the JWK", hs_jwk),
        ("another RSA key", token("RS256", RSA_OTHER, "alice")),
        ("an EC token", token("ES256", EC, "alice")),
        (
            "expired beyond the leeway",
            signed("RS256", RSA, &claims(Some("alice"), Some(-120), None)),
        ),
        (
            "not yet valid beyond the leeway",
            signed("RS256", RSA, &claims(Some("alice"), Some(3600), Some(120))),
        ),
        ("payload swapped", swapped),
        (
            "crit header",
            header_sig(
                r#"{"alg":"RS256","crit":["exp"]}"#,
                &claims(Some("a"), Some(3600), None),
            ),
        ),
        (
            "sub not a string",
            header_sig(r#"{"alg":"RS256"}"#, r#"{"sub":42}"#),
        ),
        (
            "exp a string",
            header_sig(r#"{"alg":"RS256"}"#, r#"{"sub":"a","exp":"9999999999"}"#),
        ),
        (
            "a control byte in sub",
            header_sig(r#"{"alg":"RS256"}"#, r#"{"sub":"a\u0001b"}"#),
        ),
        // A subject the backend would read trimmed ("admin"): refused, not trimmed.
        (
            "sub with a leading and a trailing space",
            header_sig(r#"{"alg":"RS256"}"#, r#"{"sub":" admin "}"#),
        ),
        (
            "sub with a trailing space",
            header_sig(r#"{"alg":"RS256"}"#, r#"{"sub":"admin "}"#),
        ),
        ("garbage", "not-a-token".into()),
        ("two parts", format!("{}.{}", good_parts[0], good_parts[1])),
        ("four parts", format!("{good}.x")),
        ("base64 padding", format!("{good}=")),
    ];
    for (what, t) in &cases {
        let req = request("rsa.test", "/me", &[bearer(t)]);
        let r = send(&gw, &req);
        assert_eq!(
            r.assert_gateway_error(401, what),
            MSG_INVALID,
            "{what}: {t}"
        );
    }
    // An RSA token at the EC service.
    expect_401(
        &gw,
        &request("ec.test", "/me", &[bearer(&good)]),
        MSG_INVALID,
    );
    // Cookie and query tokens go through the same verification.
    let expired = signed("RS256", RSA, &claims(Some("alice"), Some(-120), None));
    expect_401(
        &gw,
        &request(
            "cookie.test",
            "/me",
            &[format!("Cookie: id_token={expired}")],
        ),
        MSG_INVALID,
    );
    expect_401(
        &gw,
        &request("query.test", &format!("/me?id_token={expired}"), &[]),
        MSG_INVALID,
    );
    assert_untouched(&backend);
    forwarded(
        &gw,
        &backend,
        &request("rsa.test", "/me", &[bearer(&good)]),
        1,
    );
}

#[test]
fn exp_and_nbf_within_the_leeway_pass() {
    let (backend, gw) = start();
    let cases = [
        ("exp 30 s ago", claims(Some("e"), Some(-30), None)),
        ("nbf in 30 s", claims(Some("n"), Some(3600), Some(30))),
        ("no exp, no nbf", claims(Some("x"), None, None)),
    ];
    for (i, (what, c)) in cases.iter().enumerate() {
        let t = signed("RS256", RSA, c);
        let r = send(&gw, &request("rsa.test", "/me", &[bearer(&t)]));
        assert_eq!(r.status, 200, "{what}: {}", r.text());
        assert_eq!(backend.wait_requests(i + 1).len(), i + 1);
    }
}

#[test]
fn cached_tokens_pass_again_and_expired_ones_never() {
    let (backend, gw) = start();
    // A valid token twice (the second answer comes from the worker's cache), on one
    // connection and on a new one.
    let t = token("RS256", RSA, "alice");
    let req = request("rsa.test", "/me/1", &[bearer(&t)]);
    let mut c = gw.connect();
    for n in 1..=2 {
        let r = c.roundtrip(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let got = backend.wait_requests(n);
        assert_eq!(got[n - 1].header_all("x-api-subject"), ["alice"]);
    }
    let r = send(&gw, &req);
    assert_eq!(r.status, 200, "{}", r.text());
    // Verified and cached for one service is no pass at another.
    expect_401(&gw, &request("ec.test", "/me", &[bearer(&t)]), MSG_INVALID);

    // An expired token, twice: never 200.
    let expired = signed("RS256", RSA, &claims(Some("alice"), Some(-120), None));
    for _ in 0..2 {
        expect_401(
            &gw,
            &request("rsa.test", "/me", &[bearer(&expired)]),
            MSG_INVALID,
        );
    }
    assert_eq!(backend.requests().len(), 3);
}

#[test]
fn a_cached_token_is_refused_once_it_expires() {
    let (backend, gw) = start();
    // exp 50 s ago: inside the 60 s leeway for about 10 s more.
    let exp = now() - 50;
    let t = signed("RS256", RSA, &json!({"sub": "eve", "exp": exp}).to_string());
    let req = request("rsa.test", "/me", &[bearer(&t)]);
    let r = send(&gw, &req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(backend.wait_requests(1).len(), 1);
    // Wait until the gateway clock is past exp + leeway (bounded: about 12 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while now() <= exp + 61 {
        assert!(Instant::now() < deadline, "the clock did not move");
        std::thread::sleep(Duration::from_millis(200));
    }
    for _ in 0..2 {
        expect_401(&gw, &req, MSG_INVALID);
    }
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn auth_runs_before_params() {
    let (backend, gw) = start();
    expect_401(&gw, &request("rsa.test", "/mp", &[]), MSG_MISSING);
    let t = token("RS256", RSA, "alice");
    let req = request("rsa.test", "/mp", &[bearer(&t)]);
    let r = send(&gw, &req);
    assert_eq!(
        r.assert_gateway_error(403, "token, no param"),
        "querystring q is required"
    );
    assert_untouched(&backend);
    let got = forwarded(
        &gw,
        &backend,
        &request("rsa.test", "/mp?q=1", &[bearer(&t)]),
        1,
    );
    assert_eq!(got.target, "/b/rsa/mp?q=1");
    // A query token and a query param side by side: only the token leaves.
    let got = forwarded(
        &gw,
        &backend,
        &request("query.test", &format!("/mp?q=2&id_token={t}"), &[]),
        2,
    );
    assert_eq!(got.target, "/b/query/mp?q=2");
}

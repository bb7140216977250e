//! CORS (SPEC §4 `cors = true`) through the real binary: the headers on every response of a
//! CORS API (the backend's and the gateway's own), and preflights answered by the gateway
//! without auth and without reaching the backend.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use support::openssl;
use support::*;

const HOST: &str = "example.test";
const ID: &str = "AKIDcors00001";
const KEY: &str = "cors-secret-key-0001";
const ALL_METHODS: &str = "GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS";

fn api(name: &str, path: &str, method: &str, extra: &str, backend: &str) -> String {
    format!(
        "[[services.apis]]\nname = \"{name}\"\npath = \"{path}\"\nmethod = \"{method}\"\n{extra}\n[services.apis.backend]\n{backend}\n"
    )
}

fn vpc(path: &str) -> String {
    format!("upstream = \"up\"\npath = \"{path}\"")
}

fn config(backend: SocketAddr) -> String {
    let cors = "cors = true";
    [
        server_section(1, ""),
        upstream_section("up", backend, ""),
        upstream_section("dead", unused_addr(), "connect_timeout_ms = 5000"),
        "[[services]]\nname = \"s\"\n".into(),
        api("get-c", "=/c", "GET", cors, &vpc("/b/c")),
        api("post-c", "=/c", "POST", cors, &vpc("/b/c")),
        api("delete-c", "=/c", "DELETE", "", &vpc("/b/c")),
        api(
            "signed",
            "=/ca",
            "ANY",
            "cors = true\nauth = \"key_pair\"",
            &vpc("/b/ca"),
        ),
        api(
            "param",
            "=/cp",
            "GET",
            "cors = true\n[[services.apis.params]]\nname = \"q\"\nlocation = \"query\"\nrequired = true",
            &vpc("/b/cp"),
        ),
        api("own", "=/own", "GET", cors, &vpc("/b/own")),
        api("own-plain", "=/own-plain", "GET", "", &vpc("/b/own-plain")),
        api(
            "mock",
            "=/cm",
            "GET",
            cors,
            "type = \"mock\"\nmock_status = 418\nmock_body = \"teapot\"\nmock_content_type = \"text/plain\"",
        ),
        api(
            "dead",
            "=/dead",
            "GET",
            cors,
            "upstream = \"dead\"\npath = \"/b/dead\"",
        ),
        api("plain-options", "=/popt", "OPTIONS", "", &vpc("/b/popt")),
        api("plain-any", "=/pany", "ANY", "", &vpc("/b/pany")),
        api("plain-get", "=/pget", "GET", "", &vpc("/b/pget")),
        format!("[[key_pairs]]\nsecret_id = \"{ID}\"\nsecret_key = \"{KEY}\"\nservices = [\"s\"]\n"),
    ]
    .concat()
}

/// The backend echoes the target; under `/b/own*` it also sets its own CORS headers.
fn start() -> (Backend, Gateway) {
    let backend = Backend::start(|r| {
        if r.target.starts_with("/b/own") {
            let body = r.target.as_bytes();
            let mut b = format!(
                "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: https://x\r\nX-Own: 1\r\nAccess-Control-Expose-Headers: X-Secret\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            b.extend_from_slice(body);
            Reply::raw(b)
        } else {
            Reply::ok(&r.target)
        }
    });
    let gw = Gateway::start(&config(backend.addr()));
    (backend, gw)
}

fn request(method: &str, target: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: {HOST}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

fn send(gw: &Gateway, req: &[u8]) -> Response {
    gw.connect().roundtrip(req)
}

/// Exactly one `Access-Control-Allow-Origin: *` and one
/// `Access-Control-Expose-Headers: X-Api-RequestId`.
fn assert_cors(r: &Response, ctx: &str) {
    assert_eq!(
        r.header_all("access-control-allow-origin"),
        ["*"],
        "[{ctx}]\n{}",
        r.text()
    );
    assert_eq!(
        r.header_all("access-control-expose-headers"),
        ["X-Api-RequestId"],
        "[{ctx}]\n{}",
        r.text()
    );
}

fn assert_no_cors(r: &Response, ctx: &str) {
    assert!(
        r.header("access-control-allow-origin").is_none()
            && r.header("access-control-allow-methods").is_none(),
        "[{ctx}]\n{}",
        r.text()
    );
}

fn preflight(target: &str, method: &str, headers: Option<&str>) -> Vec<u8> {
    let mut lines = vec![
        "Origin: https://app.example".to_string(),
        format!("Access-Control-Request-Method: {method}"),
    ];
    if let Some(h) = headers {
        lines.push(format!("Access-Control-Request-Headers: {h}"));
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    request("OPTIONS", target, &lines)
}

/// Checks a gateway preflight answer.
fn assert_preflight(r: &Response, methods: &str, headers: Option<&str>, ctx: &str) {
    let text = r.text();
    assert_eq!(r.status, 204, "[{ctx}]\n{text}");
    assert_cors(r, ctx);
    assert_eq!(
        r.header_all("access-control-allow-methods"),
        [methods],
        "[{ctx}]\n{text}"
    );
    match headers {
        Some(h) => assert_eq!(
            r.header_all("access-control-allow-headers"),
            [h],
            "[{ctx}]\n{text}"
        ),
        None => assert!(
            r.header("access-control-allow-headers").is_none(),
            "[{ctx}]\n{text}"
        ),
    }
    assert_eq!(
        r.header_all("access-control-max-age"),
        ["86400"],
        "[{ctx}]\n{text}"
    );
    assert!(!r.request_id().is_empty());
    assert!(r.body.is_empty(), "[{ctx}]\n{text}");
    assert!(
        r.header("content-length").is_none_or(|v| v == "0"),
        "[{ctx}]\n{text}"
    );
}

fn signed_get(target: &str) -> Vec<u8> {
    let date = httpdate::fmt_http_date(SystemTime::now());
    let sig = openssl::hmac_base64("hmac-sha256", KEY, &format!("x-date: {date}"));
    request(
        "GET",
        target,
        &[
            &format!("X-Date: {date}"),
            &format!(
                "Authorization: hmac id=\"{ID}\", algorithm=\"hmac-sha256\", headers=\"x-date\", signature=\"{sig}\""
            ),
        ],
    )
}

#[test]
fn backend_answers_and_gateway_errors_of_a_cors_api_carry_the_headers() {
    let (backend, gw) = start();
    // A passed-through backend answer (positive control: it reached the backend).
    let r = send(&gw, &request("GET", "/c", &["Origin: https://app.example"]));
    assert_eq!(
        (r.status, r.body_text()),
        (200, "/b/c".into()),
        "{}",
        r.text()
    );
    assert_cors(&r, "backend answer");
    assert_eq!(backend.wait_requests(1).len(), 1);

    // The gateway's own errors: 401 (auth), 403 (missing param).
    let r = send(
        &gw,
        &request("GET", "/ca", &["Origin: https://app.example"]),
    );
    assert_eq!(
        r.assert_gateway_error(401, "401"),
        "HMAC authorization header is missing"
    );
    assert_cors(&r, "401");
    let r = send(&gw, &request("GET", "/cp", &[]));
    assert_eq!(
        r.assert_gateway_error(403, "403"),
        "querystring q is required"
    );
    assert_cors(&r, "403");
    assert_eq!(backend.requests().len(), 1, "the errors were forwarded");
    // A mock answer.
    let r = send(&gw, &request("GET", "/cm", &[]));
    assert_eq!((r.status, r.body_text()), (418, "teapot".into()));
    assert_cors(&r, "mock");
    // A backend that cannot be reached: 502 made by the gateway.
    let r = send(&gw, &request("GET", "/dead", &[]));
    r.assert_gateway_error(502, "502");
    assert_cors(&r, "502");

    // Not CORS: the same path by another method, and a 404 without an API.
    let r = send(
        &gw,
        &request("DELETE", "/c", &["Origin: https://app.example"]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_no_cors(&r, "DELETE /c");
    let r = send(
        &gw,
        &request("GET", "/nothing", &["Origin: https://app.example"]),
    );
    r.assert_gateway_error(404, "404");
    assert_no_cors(&r, "404");
    // Positive controls: the CORS APIs forward when the request is complete.
    let r = send(&gw, &request("GET", "/cp?q=1", &[]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_cors(&r, "GET /cp?q=1");
    let r = send(&gw, &signed_get("/ca"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_cors(&r, "signed GET /ca");
    let got = backend.wait_requests(4);
    let targets: Vec<&str> = got.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/b/c", "/b/c", "/b/cp?q=1", "/b/ca"]);
}

#[test]
fn the_backends_own_cors_headers_are_replaced() {
    let (backend, gw) = start();
    let r = send(
        &gw,
        &request("GET", "/own", &["Origin: https://app.example"]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_cors(&r, "/own");
    assert_eq!(r.header_all("x-own"), ["1"], "other headers pass");
    assert!(!r.text().contains("https://x"), "{}", r.text());
    assert!(!r.text().contains("X-Secret"), "{}", r.text());
    // Without cors the backend's headers pass unchanged.
    let r = send(&gw, &request("GET", "/own-plain", &[]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header_all("access-control-allow-origin"), ["https://x"]);
    assert_eq!(r.header_all("access-control-expose-headers"), ["X-Secret"]);
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn preflights_are_answered_by_the_gateway_without_auth_or_backend() {
    let (backend, gw) = start();
    let cases = [
        (
            preflight("/c", "POST", Some("x-date, Authorization, content-type")),
            "GET, POST",
            Some("x-date, Authorization, content-type"),
        ),
        (preflight("/c", "GET", None), "GET, POST", None),
        // Asking for a method the path has without CORS: the answer lists the CORS ones.
        (preflight("/c", "DELETE", None), "GET, POST", None),
        // A key_pair API: no credentials needed for the preflight.
        (
            preflight("/ca", "PUT", Some("authorization, x-date")),
            ALL_METHODS,
            Some("authorization, x-date"),
        ),
        // A missing required param is not checked either.
        (preflight("/cp", "GET", Some("x-a")), "GET", Some("x-a")),
    ];
    for (req, methods, headers) in &cases {
        let ctx = String::from_utf8_lossy(req).into_owned();
        let r = send(&gw, req);
        assert_preflight(&r, methods, *headers, &ctx);
    }
    // Keep-alive: a preflight and then the actual request on one connection.
    let mut c = gw.connect();
    let r = c.roundtrip(preflight("/ca", "GET", Some("authorization")));
    assert_preflight(&r, ALL_METHODS, Some("authorization"), "keep-alive");
    assert!(!r.closes(), "{}", r.text());
    assert_eq!(backend.requests().len(), 0, "{:?}", backend.requests());
    assert_eq!(backend.connections(), 0, "the backend got a connection");

    // Positive control: the same API, called for real, reaches the backend.
    let r = c.roundtrip(signed_get("/ca"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_cors(&r, "actual request");
    let got = backend.wait_requests(1);
    assert_eq!(got[0].target, "/b/ca");
    assert_eq!(got[0].header_all("x-api-secretid"), [ID]);
}

#[test]
fn a_preflight_for_a_path_without_a_cors_api_routes_normally() {
    let (backend, gw) = start();
    // To an OPTIONS API and to an ANY API: forwarded as the OPTIONS request it is.
    for (i, path) in ["/popt", "/pany"].iter().enumerate() {
        let req = preflight(path, "POST", Some("x-a"));
        let r = send(&gw, &req);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_no_cors(&r, path);
        let got = backend.wait_requests(i + 1)[i].clone();
        assert_eq!(got.method, "OPTIONS");
        assert_eq!(got.target, format!("/b{path}"));
        assert_eq!(got.header_all("access-control-request-method"), ["POST"]);
        assert_eq!(got.header_all("origin"), ["https://app.example"]);
    }
    // A path whose APIs have no OPTIONS, and no path at all: 404, nothing forwarded.
    for path in ["/pget", "/nothing"] {
        let r = send(&gw, &preflight(path, "GET", None));
        let m = r.assert_gateway_error(404, path);
        assert!(m.starts_with("There is no api match"), "{path}: {m}");
        assert_no_cors(&r, path);
    }
    // An OPTIONS without Access-Control-Request-Method is no preflight, even at a CORS path.
    let r = send(
        &gw,
        &request("OPTIONS", "/c", &["Origin: https://app.example"]),
    );
    r.assert_gateway_error(404, "OPTIONS /c without ACRM");
    assert!(
        r.header("access-control-allow-methods").is_none(),
        "{}",
        r.text()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn a_preflight_honours_connection_close_and_head_errors_carry_no_body() {
    let (backend, gw) = start();
    let mut c = gw.connect();
    c.send(
        "OPTIONS /c HTTP/1.1\r\nHost: example.test\r\nOrigin: https://a\r\nAccess-Control-Request-Method: GET\r\nConnection: close\r\n\r\n",
    );
    let r = c.read_response();
    assert_preflight(&r, "GET, POST", None, "Connection: close");
    assert!(r.closes(), "{}", r.text());
    c.expect_closed();
    // HTTP/1.0 (no Host): answered, then closed.
    let mut c = gw.connect();
    c.send(
        "OPTIONS /c HTTP/1.0\r\nOrigin: https://a\r\nAccess-Control-Request-Method: POST\r\n\r\n",
    );
    let r = c.read_response();
    assert_preflight(&r, "GET, POST", None, "HTTP/1.0");
    c.expect_closed();
    // A gateway error to HEAD at a CORS API: the CORS headers, no body.
    let mut c = gw.connect();
    c.send("HEAD /ca HTTP/1.1\r\nHost: example.test\r\n\r\n");
    let r = c.read_head_response();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_cors(&r, "HEAD 401");
    // The connection stays usable: nothing but the head was sent.
    let r = c.roundtrip(request("GET", "/c", &[]));
    assert_eq!(
        (r.status, r.body_text()),
        (200, "/b/c".into()),
        "{}",
        r.text()
    );
    assert_cors(&r, "after HEAD");
    assert_eq!(backend.wait_requests(1).len(), 1);
}

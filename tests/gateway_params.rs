//! Typed input parameters (SPEC §3 "Parameters", "Headers added") through the real binary:
//! what a client sends, what the gateway answers by itself, and byte for byte what the
//! recording backend receives.
//!
//! Every refused request is also checked not to have reached the backend (no request, no
//! connection), and each test ends with a positive control that does reach it.
//!
//! Documented choices this file pins down (see `src/gateway/params.rs`, `query.rs`,
//! `forward.rs`):
//! - a repeated query name: the *first* value is checked and used; when the param is mapped
//!   elsewhere, every copy of the name leaves the query; when it is not, all copies are
//!   forwarded as sent;
//! - the client's query is forwarded byte for byte except the pairs of moved or placed
//!   params and constants, and empty pairs (`&&`), which are dropped;
//! - placed values (defaults, mapped values) are appended after the client's pairs,
//!   percent-encoded with `%20` for a space; constants come last and win.

mod support;

use std::net::SocketAddr;

use support::*;

const HOST: &str = "example.test";

/// One `[[services.apis.params]]` table.
fn param(name: &str, location: &str, data_type: &str, extra: &str) -> String {
    format!(
        "[[services.apis.params]]\nname = \"{name}\"\nlocation = \"{location}\"\ndata_type = \"{data_type}\"\n{extra}\n"
    )
}

/// One API to upstream `up`: `params` and `constants` are TOML tables.
fn api(name: &str, path: &str, params: &[String], backend_path: &str, constants: &str) -> String {
    format!(
        "[[services.apis]]\nname = \"{name}\"\npath = '{path}'\nmethod = \"GET\"\n{}[services.apis.backend]\ntype = \"vpc\"\nupstream = \"up\"\npath = \"{backend_path}\"\n{constants}\n",
        params.concat()
    )
}

fn constant(name: &str, location: &str, value: &str) -> String {
    format!(
        "[[services.apis.backend.constants]]\nname = \"{name}\"\nlocation = \"{location}\"\nvalue = \"{value}\"\n"
    )
}

/// Every API of this file, in one host-less service.
fn config(backend: SocketAddr) -> String {
    let apis = [
        api(
            "typed",
            "/t/{id}",
            &[
                param("id", "path", "int", "required = true"),
                param("X-Tenant", "header", "long", "required = true"),
                param("limit", "query", "int", "required = true"),
            ],
            "/b/t/{id}",
            "",
        ),
        api(
            "types",
            "=/types",
            &[
                param("i", "query", "int", ""),
                param("l", "query", "long", ""),
                param("f", "query", "float", ""),
                param("d", "query", "double", ""),
                param("b", "query", "boolean", ""),
                param("s", "query", "string", ""),
                param("X-Int", "header", "int", ""),
                param("X-Bool", "header", "boolean", ""),
                param("X-Str", "header", "string", ""),
            ],
            "/b/types",
            "",
        ),
        // A path param can only be missing when its regex group did not take part.
        api(
            "optional-group",
            r"~ ^/opt(/(?P<id>[0-9]+))?$",
            &[param("id", "path", "int", "required = true")],
            "/b/opt",
            "",
        ),
        api(
            "defaults",
            "=/d",
            &[
                param("page", "query", "int", "default = \"1\""),
                param("X-Mode", "header", "string", "default = \"fast\""),
                param(
                    "lang",
                    "query",
                    "string",
                    "default = \"en\"\nbackend_name = \"Accept-Language\"\nbackend_location = \"header\"",
                ),
                param(
                    "X-Region",
                    "header",
                    "string",
                    "default = \"eu west\"\nbackend_name = \"region\"\nbackend_location = \"query\"",
                ),
            ],
            "/b/d",
            "",
        ),
        api(
            "map",
            "=/m",
            &[
                param(
                    "uid",
                    "query",
                    "string",
                    "backend_name = \"X-Uid\"\nbackend_location = \"header\"",
                ),
                param(
                    "X-Filter",
                    "header",
                    "string",
                    "backend_name = \"filter\"\nbackend_location = \"query\"",
                ),
                param("X-Old", "header", "string", "backend_name = \"X-New\""),
                param("n", "query", "int", "backend_name = \"num\""),
            ],
            "/b/m",
            "",
        ),
        api(
            "path-to-query",
            "/pq/{id}",
            &[param(
                "id",
                "path",
                "string",
                "backend_name = \"uid\"\nbackend_location = \"query\"",
            )],
            "/b/pq",
            "",
        ),
        api(
            "path-to-header",
            "/ph/{id}",
            &[param(
                "id",
                "path",
                "string",
                "backend_name = \"X-Id\"\nbackend_location = \"header\"",
            )],
            "/b/ph",
            "",
        ),
        api(
            "constants",
            "=/c",
            &[
                param(
                    "uid",
                    "query",
                    "string",
                    "backend_name = \"X-Uid\"\nbackend_location = \"header\"",
                ),
                param(
                    "X-Filter",
                    "header",
                    "string",
                    "backend_name = \"filter\"\nbackend_location = \"query\"",
                ),
                param("page", "query", "int", "default = \"1\""),
            ],
            "/b/c",
            &[
                constant("X-Uid", "header", "const-h"),
                constant("filter", "query", "const q"),
                constant("page", "query", "9"),
            ]
            .concat(),
        ),
        api("plain", "/plain", &[], "/b/plain", ""),
    ]
    .concat();
    format!(
        "{}{}[[services]]\nname = \"s\"\n{apis}",
        server_section(1, ""),
        upstream_section("up", backend, ""),
    )
}

fn start() -> (Backend, Gateway) {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let gw = Gateway::start(&config(backend.addr()));
    (backend, gw)
}

/// `GET target` with `Host` and the extra header lines (each `Name: value`).
fn request(target: &str, headers: &[&str]) -> Vec<u8> {
    let mut r = format!("GET {target} HTTP/1.1\r\nHost: {HOST}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Sends `req` on a fresh connection and returns the response.
fn send(gw: &Gateway, req: &[u8]) -> Response {
    gw.connect().roundtrip(req)
}

/// Sends `req` and checks the gateway's own JSON error: status and exact message.
fn expect_error(gw: &Gateway, req: &[u8], status: u16, message: &str) {
    let ctx = String::from_utf8_lossy(req).into_owned();
    let r = send(gw, req);
    let got = r.assert_gateway_error(status, &ctx);
    assert_eq!(got, message, "{ctx}");
}

/// Nothing reached the backend: no request and not even a connection.
fn assert_untouched(backend: &Backend) {
    assert_eq!(
        backend.requests().len(),
        0,
        "the backend was reached: {:?}",
        backend.requests()
    );
    assert_eq!(backend.connections(), 0, "the backend got a connection");
}

/// Sends `req`, expects 200 from the backend and returns what the backend received (the
/// `n`th request overall, counting from 1).
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
    assert_eq!(
        r.body_text(),
        got[n - 1].target,
        "the answer echoes the target"
    );
    got[n - 1].clone()
}

#[test]
fn present_valid_params_are_forwarded_as_sent() {
    let (backend, gw) = start();
    let got = forwarded(
        &gw,
        &backend,
        &request("/t/42?limit=10&x=y", &["x-tenant: 7"]),
        1,
    );
    assert_eq!(got.target, "/b/t/42?limit=10&x=y");
    assert_eq!(got.header_all("x-tenant"), ["7"], "{}", got.text());
    // Negative numbers are ints too, and a percent-encoded value is checked decoded but
    // forwarded as it came.
    let got = forwarded(
        &gw,
        &backend,
        &request("/t/-3?limit=%31%32", &["X-Tenant: -9223372036854775808"]),
        2,
    );
    assert_eq!(got.target, "/b/t/-3?limit=%31%32");
    assert_eq!(
        got.header_all("x-tenant"),
        ["-9223372036854775808"],
        "{}",
        got.text()
    );
}

#[test]
fn missing_required_params_are_403_and_never_forwarded() {
    let (backend, gw) = start();
    let cases: &[(Vec<u8>, &str)] = &[
        (request("/t/1?limit=1", &[]), "header X-Tenant is required"),
        (
            request("/t/1", &["X-Tenant: 1"]),
            "querystring limit is required",
        ),
        (
            request("/t/1?limitx=1&Limit=2", &["X-Tenant: 1"]),
            "querystring limit is required",
        ),
        (request("/opt", &[]), "path variable id is required"),
        // The first missing param in configuration order is the one named.
        (request("/t/1", &[]), "header X-Tenant is required"),
    ];
    for (req, message) in cases {
        expect_error(&gw, req, 403, message);
    }
    assert_untouched(&backend);
    // Positive controls: the same APIs with their params do reach the backend.
    let got = forwarded(&gw, &backend, &request("/opt/5", &[]), 1);
    assert_eq!(got.target, "/b/opt");
    let got = forwarded(&gw, &backend, &request("/t/1?limit=1", &["X-Tenant: 1"]), 2);
    assert_eq!(got.target, "/b/t/1?limit=1");
}

#[test]
fn defaults_reach_the_backend_at_their_target() {
    let (backend, gw) = start();
    let got = forwarded(&gw, &backend, &request("/d?keep=%7E", &[]), 1);
    // Query defaults are appended to the client's query, encoded.
    assert_eq!(got.target, "/b/d?keep=%7E&page=1&region=eu%20west");
    assert_eq!(got.header_all("x-mode"), ["fast"], "{}", got.text());
    assert_eq!(got.header_all("accept-language"), ["en"], "{}", got.text());
    assert!(got.header("x-region").is_none(), "{}", got.text());

    // Sent values win over the defaults and stay where they are (or move when mapped).
    let got = forwarded(
        &gw,
        &backend,
        &request(
            "/d?page=3&lang=fr",
            &["X-Mode: slow", "X-Region: ap", "Accept-Language: de"],
        ),
        2,
    );
    assert_eq!(got.target, "/b/d?page=3&region=ap");
    assert_eq!(got.header_all("x-mode"), ["slow"], "{}", got.text());
    // `lang` is mapped to Accept-Language: the client's own header is replaced.
    assert_eq!(got.header_all("accept-language"), ["fr"], "{}", got.text());
    assert!(got.header("x-region").is_none(), "{}", got.text());
}

#[test]
fn wrong_types_are_400_naming_param_and_type() {
    let (backend, gw) = start();
    let cases: &[(Vec<u8>, &str)] = &[
        (
            request("/t/abc?limit=1", &["X-Tenant: 1"]),
            "path variable id is not a valid int",
        ),
        (
            request("/t/1?limit=1", &["X-Tenant: 1.5"]),
            "header X-Tenant is not a valid long",
        ),
        (
            request("/t/1?limit=ten", &["X-Tenant: 1"]),
            "querystring limit is not a valid int",
        ),
        // Present with the empty value.
        (
            request("/t/1?limit=", &["X-Tenant: 1"]),
            "querystring limit is not a valid int",
        ),
        (
            request("/t/1?limit", &["X-Tenant: 1"]),
            "querystring limit is not a valid int",
        ),
        // `+` is a space in a query: "1 2".
        (
            request("/t/1?limit=1+2", &["X-Tenant: 1"]),
            "querystring limit is not a valid int",
        ),
        // A bad escape or a decoded value that is not UTF-8 fails every type, string too.
        (
            request("/types?s=%zz", &[]),
            "querystring s is not a valid string",
        ),
        (
            request("/types?s=%FF", &[]),
            "querystring s is not a valid string",
        ),
        (
            b"GET /types HTTP/1.1\r\nHost: example.test\r\nX-Str: caf\xe9\r\n\r\n".to_vec(),
            "header X-Str is not a valid string",
        ),
        // Params are checked in configuration order; the first failure is the answer.
        (request("/t/1?limit=x", &[]), "header X-Tenant is required"),
        (
            request("/t/abc", &[]),
            "path variable id is not a valid int",
        ),
    ];
    for (req, message) in cases {
        let status = if message.ends_with("is required") {
            403
        } else {
            400
        };
        expect_error(&gw, req, status, message);
    }
    assert_untouched(&backend);
    let got = forwarded(&gw, &backend, &request("/types?s=caf%C3%A9", &[]), 1);
    assert_eq!(got.target, "/b/types?s=caf%C3%A9");
}

#[test]
fn each_type_edge_through_the_wire() {
    let (backend, gw) = start();
    // (query or header line, accepted?, the param's name and type for the message)
    let cases: &[(&str, bool, &str)] = &[
        ("i=2147483647", true, ""),
        ("i=-2147483648", true, ""),
        ("i=2147483648", false, "querystring i is not a valid int"),
        ("i=-2147483649", false, "querystring i is not a valid int"),
        ("i=%2B1", false, "querystring i is not a valid int"),
        ("i=1.0", false, "querystring i is not a valid int"),
        ("i=007", true, ""),
        ("l=9223372036854775807", true, ""),
        (
            "l=9223372036854775808",
            false,
            "querystring l is not a valid long",
        ),
        ("f=1e3", true, ""),
        ("f=-0.5E-2", true, ""),
        ("f=NaN", false, "querystring f is not a valid float"),
        ("f=inf", false, "querystring f is not a valid float"),
        ("f=.5", false, "querystring f is not a valid float"),
        ("f=5.", false, "querystring f is not a valid float"),
        ("f=1e39", false, "querystring f is not a valid float"),
        ("d=1e39", true, ""),
        ("d=1e309", false, "querystring d is not a valid double"),
        ("d=0x10", false, "querystring d is not a valid double"),
        ("b=true", true, ""),
        ("b=false", true, ""),
        ("b=TRUE", false, "querystring b is not a valid boolean"),
        ("b=1", false, "querystring b is not a valid boolean"),
        ("s=", true, ""),
        ("H:X-Int: 2147483647", true, ""),
        (
            "H:X-Int: 2147483648",
            false,
            "header X-Int is not a valid int",
        ),
        ("H:X-Bool: true", true, ""),
        (
            "H:X-Bool: True",
            false,
            "header X-Bool is not a valid boolean",
        ),
        ("H:X-Str: a b", true, ""),
    ];
    let mut n = 0;
    for (case, ok, message) in cases {
        let req = match case.strip_prefix("H:") {
            Some(h) => request("/types", &[h]),
            None => request(&format!("/types?{case}"), &[]),
        };
        if *ok {
            n += 1;
            let got = forwarded(&gw, &backend, &req, n);
            match case.strip_prefix("H:") {
                Some(h) => {
                    let (name, value) = h.split_once(": ").unwrap();
                    assert_eq!(got.header_all(name), [value], "{case}");
                }
                None => assert_eq!(got.target, format!("/b/types?{case}"), "{case}"),
            }
        } else {
            let before = backend.requests().len();
            expect_error(&gw, &req, 400, message);
            assert_eq!(backend.requests().len(), before, "{case} was forwarded");
        }
    }
    assert_eq!(backend.requests().len(), n);
}

#[test]
fn query_to_header_mapping_moves_the_value() {
    let (backend, gw) = start();
    let got = forwarded(
        &gw,
        &backend,
        &request("/m?a=1&uid=42&b=2", &["X-Uid: forged"]),
        1,
    );
    assert_eq!(got.target, "/b/m?a=1&b=2", "uid left the query");
    assert_eq!(got.header_all("x-uid"), ["42"], "{}", got.text());
    // Decoded before it becomes a header value; an encoded name is the same name.
    let got = forwarded(&gw, &backend, &request("/m?%75id=a+b%2Fc%C3%A9", &[]), 2);
    assert_eq!(got.target, "/b/m");
    assert_eq!(got.header_all("x-uid"), ["a b/cé"], "{}", got.text());
    // Renamed within the query: sent as num=..., the original name gone.
    let got = forwarded(&gw, &backend, &request("/m?n=7&z", &[]), 3);
    assert_eq!(got.target, "/b/m?z&num=7");
}

#[test]
fn header_to_query_mapping_percent_encodes_and_drops_the_header() {
    let (backend, gw) = start();
    let got = forwarded(
        &gw,
        &backend,
        &request(
            "/m?a=1",
            &["X-Filter: a b&c=d/é+%", "X-Old: old value", "X-New: forged"],
        ),
        1,
    );
    assert_eq!(got.target, "/b/m?a=1&filter=a%20b%26c%3Dd%2F%C3%A9%2B%25");
    assert!(got.header("x-filter").is_none(), "{}", got.text());
    // Header to header rename: the old name is gone, the new one carries the value once.
    assert!(got.header("x-old").is_none(), "{}", got.text());
    assert_eq!(got.header_all("x-new"), ["old value"], "{}", got.text());
}

#[test]
fn path_params_map_to_query_and_header() {
    let (backend, gw) = start();
    let got = forwarded(&gw, &backend, &request("/pq/42?x=1", &[]), 1);
    assert_eq!(got.target, "/b/pq?x=1&uid=42");
    // A path value is percent-decoded (`+` stays `+`), then re-encoded for the query.
    let got = forwarded(&gw, &backend, &request("/pq/a%20b+c", &[]), 2);
    assert_eq!(got.target, "/b/pq?uid=a%20b%2Bc");
    let got = forwarded(&gw, &backend, &request("/ph/a%20b+c", &["X-Id: forged"]), 3);
    assert_eq!(got.target, "/b/ph");
    assert_eq!(got.header_all("x-id"), ["a b+c"], "{}", got.text());
}

#[test]
fn a_value_that_cannot_be_a_header_is_400_and_never_forwarded() {
    let (backend, gw) = start();
    let cases = [
        (
            "/m?uid=a%0D%0AX-Evil:%201",
            "querystring uid cannot be sent as a header",
        ),
        ("/m?uid=%0A", "querystring uid cannot be sent as a header"),
        ("/m?uid=%00", "querystring uid cannot be sent as a header"),
        // Leading or trailing whitespace would be stripped by the receiver: refused.
        ("/m?uid=+x", "querystring uid cannot be sent as a header"),
        ("/m?uid=x%09", "querystring uid cannot be sent as a header"),
        ("/ph/a%0Db", "path variable id cannot be sent as a header"),
    ];
    for (target, message) in cases {
        expect_error(&gw, &request(target, &[]), 400, message);
    }
    assert_untouched(&backend);
    // Positive control: a tab inside is fine.
    let got = forwarded(&gw, &backend, &request("/m?uid=a%09b", &[]), 1);
    assert_eq!(got.header_all("x-uid"), ["a\tb"], "{}", got.text());
}

#[test]
fn repeated_query_name_uses_the_first_value() {
    let (backend, gw) = start();
    // Mapped: the first value is sent, every copy leaves the query.
    let got = forwarded(&gw, &backend, &request("/m?uid=1&a&uid=2", &[]), 1);
    assert_eq!(got.header_all("x-uid"), ["1"], "{}", got.text());
    assert_eq!(got.target, "/b/m?a");
    // Not mapped: the first value is checked; all copies are forwarded as sent.
    let got = forwarded(&gw, &backend, &request("/types?i=1&i=x", &[]), 2);
    assert_eq!(got.target, "/b/types?i=1&i=x");
    let before = backend.requests().len();
    expect_error(
        &gw,
        &request("/types?i=x&i=1", &[]),
        400,
        "querystring i is not a valid int",
    );
    assert_eq!(backend.requests().len(), before);
}

#[test]
fn query_string_is_forwarded_byte_for_byte_except_moved_names() {
    let (backend, gw) = start();
    // Odd but legal: `+`, escapes kept as sent (`%41` is not decoded), a pair without `=`,
    // `=` inside a value, lowercase hex, a raw `/` and `?`. The empty pair (`&&`) is dropped.
    let odd = "a=%41+b&&c&e==x=&%7e=%7E&p=/?q&uid=9&t=%2b";
    let got = forwarded(&gw, &backend, &request(&format!("/m?{odd}"), &[]), 1);
    assert_eq!(got.target, "/b/m?a=%41+b&c&e==x=&%7e=%7E&p=/?q&t=%2b");
    assert_eq!(got.header_all("x-uid"), ["9"], "{}", got.text());
    // A plain API forwards everything as sent (except the empty pair).
    let got = forwarded(&gw, &backend, &request("/plain/x?a=%41+b&&c&uid=9", &[]), 2);
    assert_eq!(got.target, "/b/plain/x?a=%41+b&c&uid=9");
}

#[test]
fn constants_are_set_last_and_win_over_mapped_params() {
    let (backend, gw) = start();
    let got = forwarded(
        &gw,
        &backend,
        &request(
            "/c?a=1&uid=42&filter=client&page=3",
            &["X-Filter: mapped", "X-Uid: client"],
        ),
        1,
    );
    assert_eq!(got.header_all("x-uid"), ["const-h"], "{}", got.text());
    assert_eq!(got.target, "/b/c?a=1&filter=const%20q&page=9");
    // Defaults lose to constants too.
    let got = forwarded(&gw, &backend, &request("/c", &[]), 2);
    assert_eq!(got.target, "/b/c?filter=const%20q&page=9");
    assert_eq!(got.header_all("x-uid"), ["const-h"], "{}", got.text());
    // The constants do not lift the params' checks.
    let before = backend.requests().len();
    expect_error(
        &gw,
        &request("/c?page=x", &[]),
        400,
        "querystring page is not a valid int",
    );
    assert_eq!(backend.requests().len(), before);
}

#[test]
fn client_copies_of_gateway_headers_never_reach_the_backend() {
    let (backend, gw) = start();
    let r = send(
        &gw,
        &request(
            "/plain/f?x=1",
            &[
                "X-Api-RequestId: forged-id",
                "X-Api-SecretId: AKIDforged",
                "x-api-subject: mallory",
                "X-API-SECRETID: AKIDforged2",
            ],
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.target, "/b/plain/f?x=1");
    let id = got.request_id();
    assert_ne!(id, "forged-id");
    assert_eq!(got.header_all("x-api-requestid"), [id.as_str()]);
    assert!(got.header("x-api-secretid").is_none(), "{}", got.text());
    assert!(got.header("x-api-subject").is_none(), "{}", got.text());
    assert!(!got.text().contains("forged"), "{}", got.text());
    assert!(!got.text().contains("mallory"), "{}", got.text());
    assert_eq!(r.header_all("x-api-requestid"), [id.as_str()]);
}

#[test]
fn a_refused_requests_body_is_never_read_as_a_request() {
    let (backend, gw) = start();
    let smuggled = "GET /plain/smuggled HTTP/1.1\r\nHost: example.test\r\n\r\n";
    // The whole body is there: it is skipped and the next request is served.
    let mut c = gw.connect();
    c.send(format!(
        "GET /t/1?limit=1 HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n{smuggled}GET /plain/next HTTP/1.1\r\nHost: {HOST}\r\n\r\n",
        smuggled.len()
    ));
    let r = c.read_response();
    assert_eq!(
        r.assert_gateway_error(403, "pipelined"),
        "header X-Tenant is required"
    );
    let r = c.read_response();
    assert_eq!((r.status, r.body_text()), (200, "/b/plain/next".into()));
    // Only the head is there: the answer closes the connection, the body is never parsed.
    let mut c = gw.connect();
    c.send(format!(
        "GET /t/1?limit=x HTTP/1.1\r\nHost: {HOST}\r\nX-Tenant: 1\r\nContent-Length: {}\r\n\r\n",
        smuggled.len()
    ));
    let r = c.read_response();
    r.assert_gateway_error(400, "head only");
    let _ = c.try_send(smuggled);
    assert!(c.wait_closed(READ_TIMEOUT).is_ok(), "{}", r.text());
    let got = backend.wait_requests(1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].target, "/b/plain/next");
}

/// Bug found by these tests: a param could be placed into a header the gateway manages. A
/// client then chose the value of `Content-Length` at the backend (request smuggling: the
/// body relayed by the client's framing became a second request there) or added an
/// `X-Api-SecretId` next to the gateway's. The loader refuses such a param now, as it
/// already refused such a constant.
#[test]
fn a_param_cannot_be_placed_into_a_header_the_gateway_manages() {
    let backend = Backend::ok();
    let cases = [
        (
            param(
                "len",
                "query",
                "string",
                "backend_name = \"Content-Length\"\nbackend_location = \"header\"",
            ),
            "header \"content-length\" is managed by the gateway",
        ),
        (
            param(
                "sid",
                "query",
                "string",
                "backend_name = \"X-Api-SecretId\"\nbackend_location = \"header\"",
            ),
            "header \"x-api-secretid\" is managed by the gateway",
        ),
        (
            param(
                "X-Sub",
                "header",
                "string",
                "backend_name = \"x-api-subject\"",
            ),
            "header \"x-api-subject\" is managed by the gateway",
        ),
        (
            param(
                "X-Forwarded-For",
                "header",
                "string",
                "default = \"1.2.3.4\"",
            ),
            "header \"x-forwarded-for\" is managed by the gateway",
        ),
        (
            param(
                "te",
                "path",
                "string",
                "backend_name = \"Transfer-Encoding\"\nbackend_location = \"header\"",
            ),
            "header \"transfer-encoding\" is managed by the gateway",
        ),
    ];
    for (p, want) in cases {
        let path = if p.contains("\"path\"") {
            "/x/{te}"
        } else {
            "/x"
        };
        let cfg = format!(
            "{}{}[[services]]\nname = \"s\"\n{}",
            server_section(1, ""),
            upstream_section("up", backend.addr(), ""),
            api("a", path, std::slice::from_ref(&p), "/b", "")
        );
        match Gateway::try_start(&cfg) {
            Ok(_) => panic!("the gateway started with\n{p}"),
            Err(e) => assert!(e.contains(want), "{p}\n{e}"),
        }
    }
    // Reading such a header only to check it is fine: nothing is placed.
    let cfg = format!(
        "{}{}[[services]]\nname = \"s\"\n{}",
        server_section(1, ""),
        upstream_section("up", backend.addr(), ""),
        api(
            "a",
            "/x",
            &[param("Content-Length", "header", "int", "required = true")],
            "/b",
            ""
        )
        .replace("method = \"GET\"", "method = \"POST\"")
    );
    let gw = Gateway::start(&cfg);
    let r = gw.connect().roundtrip(with_body("POST", "/x", b"hello"));
    assert_eq!(r.status, 200, "{}", r.text());
    let got = &backend.wait_requests(1)[0];
    assert_eq!(got.header_all("content-length"), ["5"]);
    assert_eq!(got.body, b"hello");
    let r = gw
        .connect()
        .roundtrip("POST /x HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        r.assert_gateway_error(403, "no Content-Length"),
        "header Content-Length is required"
    );
    assert_eq!(backend.requests().len(), 1);
}

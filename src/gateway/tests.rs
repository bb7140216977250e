//! `decide` end to end over parsed heads: one table, every stage's answer. Credentials come
//! from outside this code: the RFC 7515 A.2 token and key, and an HMAC signature made with
//! `printf 'x-date: Wed, 25 Nov 2026 10:00:00 GMT\nsource: unit' | openssl dgst -sha256
//! -hmac unit-secret-key-01 -binary | openssl base64 -A`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::forward::{ForwardContext, Plan, write_upstream_head};
use super::*;
use crate::config::load_str;
use crate::http::head::{Progress, parse_head};

const RFC7515_A2_JWK: &str = r#"{"kty":"RSA","n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ","e":"AQAB"}"#;
const RFC7515_A2_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
/// Inside the RFC token's validity (exp 1300819380).
const JWT_NOW: u64 = 1_300_819_000;
const HMAC_NOW: u64 = 1_795_600_800; // Wed, 25 Nov 2026 10:00:00 GMT
const HMAC_SIG: &str = "0n8dcbeWfecQRwL19QeShVYhxcBDAYDF+8nfflrOKJo=";

fn config() -> String {
    format!(
        r#"
[server]
listen_https = ["127.0.0.1:0"]
[[certificates]]
hosts = ["*.example.com"]
cert = "conf/tls/example.crt"
key = "conf/tls/example.key"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9000"
[[services]]
name = "s"
[[services.apis]]
name = "plain"
path = "/plain/{{id}}"
[[services.apis.params]]
name = "id"
location = "path"
data_type = "int"
[services.apis.backend]
upstream = "u"
path = "/b/{{id}}"
[[services.apis]]
name = "mock"
path = "=/mock"
[services.apis.backend]
type = "mock"
mock_status = 201
mock_body = "made"
[[services.apis]]
name = "params"
path = "=/p"
cors = true
[[services.apis.params]]
name = "X-Tenant"
location = "header"
data_type = "long"
required = true
[[services.apis.params]]
name = "limit"
location = "query"
data_type = "int"
backend_name = "X-Limit"
backend_location = "header"
[[services.apis.params]]
name = "page"
location = "query"
data_type = "int"
default = "1"
[services.apis.backend]
upstream = "u"
path = "/b/p"
[[services.apis]]
name = "signed"
path = "=/signed"
auth = "key_pair"
[services.apis.backend]
upstream = "u"
path = "/b/signed"
[[services.apis]]
name = "chat"
path = "=/chat"
frontend_type = "ws"
[services.apis.backend]
upstream = "u"
path = "/ws"
[[services]]
name = "jwt"
hosts = ["jwt.test"]
[[services.apis]]
name = "me"
path = "=/me"
auth = "oauth2"
[services.apis.backend]
upstream = "u"
path = "/b/me"
[services.oauth2]
public_key = '{RFC7515_A2_JWK}'
token_location = "query"
token_name = "id_token"
[[services]]
name = "secure"
hosts = ["secure.example.com"]
protocol = "https"
[[services.apis]]
name = "any"
path = "/"
method = "ANY"
[services.apis.backend]
type = "mock"
[[key_pairs]]
secret_id = "AKIDunit01"
secret_key = "unit-secret-key-01"
services = ["s"]
[[key_pairs]]
secret_id = "AKIDother"
secret_key = "other-secret-key-01"
services = ["jwt"]
"#
    )
}

/// What `decide` said, as text: `forward <upstream head>`, `tunnel`, `mock <status>`,
/// `preflight <methods bits>`, or `<status> <message>`; with the matched API.
fn decide_text(raw: &str, https: bool, now: u64) -> (Option<&'static str>, String) {
    let cfg = load_str(&config(), Path::new("t.toml")).unwrap();
    let auth = AuthState::new(&cfg);
    let counters = crate::traffic::Counters::standalone(&cfg);
    let mut head = RequestHead::default();
    let p = parse_head(raw.as_bytes(), &cfg.server.limits, &mut head).unwrap();
    assert_eq!(p, Progress::Complete, "{raw}");
    let inbound = Inbound {
        buf: raw.as_bytes(),
        head: &head,
        https,
        client: std::net::IpAddr::from([192, 0, 2, 1]),
        now: UNIX_EPOCH + Duration::from_secs(now),
        mono: std::time::Instant::now(),
    };
    let (mut path, mut backend_path, mut params) =
        (String::new(), String::new(), ParamValues::default());
    let scratch = Scratch {
        path: &mut path,
        backend_path: &mut backend_path,
        params: &mut params,
    };
    let d = decide(&cfg, &auth, &counters, &inbound, scratch);
    let matched = d.matched.map(|m| {
        let api = &cfg.services[m.service].apis[m.api];
        &*api.name.clone().leak()
    });
    let text = match d.action {
        Action::Local(Local::Error(e)) => format!("{} {}", e.status(), e.message()),
        Action::Local(Local::Mock { status, .. }) => format!("mock {status}"),
        Action::Local(Local::Preflight(p)) => format!("preflight {:#x}", p.methods),
        Action::Tunnel(_) => "tunnel".to_string(),
        Action::Pending => "pending".to_string(),
        Action::Forward(f) => {
            let query = f.query.clone().map(|r| &raw[r]);
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
                https,
                request_id: "rid",
                websocket: false,
                default_host: "u",
            };
            let mut out = Vec::new();
            write_upstream_head(raw.as_bytes(), &head, &plan, &ctx, &mut out);
            format!("forward {}", String::from_utf8(out).unwrap())
        }
    };
    (matched, text)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn decision_table() {
    let hmac = |id: &str, sig: &str| {
        format!(
            "GET /signed HTTP/1.1\r\nHost: h\r\nX-Date: Wed, 25 Nov 2026 10:00:00 GMT\r\nSource: unit\r\nX-Api-SecretId: forged\r\nAuthorization: hmac id=\"{id}\", algorithm=\"hmac-sha256\", headers=\"x-date source\", signature=\"{sig}\"\r\n\r\n"
        )
    };
    let ws = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let jwt = format!(
        "GET /me?a=1&id_token={RFC7515_A2_TOKEN}&b=2 HTTP/1.1\r\nHost: jwt.test\r\nX-Api-Subject: forged\r\n\r\n"
    );
    let cases: Vec<(String, bool, u64, Option<&str>, &str)> = vec![
        // Target and route.
        ("GET /../x HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), None, "400 "),
        ("GET /nope HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), None, "404 There is no api match uri[/nope] host[h]"),
        ("POST /mock HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), None, "404 There is no api match method[POST] uri[/mock] host[h]"),
        ("GET /mock HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), Some("mock"), "mock 201"),
        // Path normalization ("safe", the default): what is routed, captured and forwarded;
        // the query is left as sent.
        ("GET /x/%2e%2E/pl%61in/4%32?q=%2e%2e/%41 HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), Some("plain"),
         "forward GET /b/42?q=%2e%2e/%41 HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: rid\r\n\r\n"),
        ("GET /m%6fck/. HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), None, "404 There is no api match uri[/mock/] host[h]"),
        ("GET /plain/1%2F2 HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), None, "400 request path contains an encoded slash or a backslash"),
        ("GET /plain/..\\x HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), None, "400 request path contains an encoded slash or a backslash"),
        ("GET /a/%2e%2e/%2e%2e/mock HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), None, "400 request path climbs above /"),
        // An absolute-form target: routed by its authority, which is the Host forwarded.
        ("GET http://a.test:8080/plain/7 HTTP/1.1\r\nHost: b\r\n\r\n".into(), false, now(), Some("plain"),
         "forward GET /b/7 HTTP/1.1\r\nHost: a.test:8080\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: rid\r\n\r\n"),
        // Protocol.
        ("GET /x HTTP/1.1\r\nHost: secure.example.com\r\n\r\n".into(), false, now(), Some("any"), "426 this API is served over https only"),
        ("GET /x HTTP/1.1\r\nHost: secure.example.com\r\n\r\n".into(), true, now(), Some("any"), "mock 200"),
        // WebSocket handshake.
        ("GET /chat HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), Some("chat"), "400 this is a WebSocket API: send a WebSocket upgrade request"),
        (ws.into(), false, now(), Some("chat"), "tunnel"),
        // CORS preflight: answered for a CORS path (GET only), routed otherwise.
        ("OPTIONS /p HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nAccess-Control-Request-Method: POST\r\n\r\n".into(), false, now(), Some("params"), "preflight 0x1"),
        ("OPTIONS /mock HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nAccess-Control-Request-Method: GET\r\n\r\n".into(), false, now(), None, "404 There is no api match method[OPTIONS] uri[/mock] host[h]"),
        // Params: 403, 400, placed values, defaults, moved values gone.
        ("GET /p HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), Some("params"), "403 header X-Tenant is required"),
        ("GET /p?limit=x HTTP/1.1\r\nHost: h\r\nX-Tenant: 5\r\n\r\n".into(), false, now(), Some("params"), "400 querystring limit is not a valid int"),
        ("GET /plain/abc HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, now(), Some("plain"), "400 path variable id is not a valid int"),
        ("GET /p?q=%41+b&limit=20&limit=30 HTTP/1.1\r\nHost: h\r\nX-Tenant: 5\r\nX-Limit: forged\r\n\r\n".into(), false, now(), Some("params"),
         "forward GET /b/p?q=%41+b&page=1 HTTP/1.1\r\nHost: h\r\nX-Tenant: 5\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: rid\r\nX-Limit: 20\r\n\r\n"),
        // The header a param maps to is the gateway's even when no value is placed.
        (
            "GET /p HTTP/1.1\r\nHost: h\r\nX-Tenant: 5\r\nX-Limit: forged\r\n\r\n".into(),
            false,
            now(),
            Some("params"),
            "forward GET /b/p?page=1 HTTP/1.1\r\nHost: h\r\nX-Tenant: 5\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: rid\r\n\r\n",
        ),
        // Key-pair auth.
        ("GET /signed HTTP/1.1\r\nHost: h\r\n\r\n".into(), false, HMAC_NOW, Some("signed"), "401 HMAC authorization header is missing"),
        (hmac("AKIDnobody", HMAC_SIG), false, HMAC_NOW, Some("signed"), "401 HMAC id not found"),
        (hmac("AKIDother", HMAC_SIG), false, HMAC_NOW, Some("signed"), "401 HMAC id is not allowed to call this service"),
        (hmac("AKIDunit01", "AAAAcbeWfecQRwL19QeShVYhxcBDAYDF+8nfflrOKJo="), false, HMAC_NOW, Some("signed"), "401 HMAC signature does not match"),
        (hmac("AKIDunit01", HMAC_SIG), false, HMAC_NOW + 901, Some("signed"), "401 Time skew exceeded"),
        (hmac("AKIDunit01", HMAC_SIG), false, HMAC_NOW - 899, Some("signed"),
         "forward GET /b/signed HTTP/1.1\r\nHost: h\r\nX-Date: Wed, 25 Nov 2026 10:00:00 GMT\r\nSource: unit\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: rid\r\nX-Api-SecretId: AKIDunit01\r\n\r\n"),
        // OAuth 2.0, token in the query: removed from it; the RFC token has no `sub`.
        ("GET /me?a=1 HTTP/1.1\r\nHost: jwt.test\r\n\r\n".into(), false, JWT_NOW, Some("me"), "401 Oauth miss Oauth id_token"),
        ("GET /me?id_token=abc.def.ghi HTTP/1.1\r\nHost: jwt.test\r\n\r\n".into(), false, JWT_NOW, Some("me"), "401 Oauth id_token verify error"),
        (jwt.clone(), false, 1_300_819_380 + 61, Some("me"), "401 Oauth id_token verify error"),
        (jwt, false, JWT_NOW, Some("me"),
         "forward GET /b/me?a=1&b=2 HTTP/1.1\r\nHost: jwt.test\r\nX-Forwarded-For: 192.0.2.1\r\nX-Real-IP: 192.0.2.1\r\nX-Forwarded-Proto: http\r\nX-Api-RequestId: rid\r\n\r\n"),
    ];
    for (raw, https, now, api, want) in cases {
        let (matched, got) = decide_text(&raw, https, now);
        assert!(
            got.starts_with(want),
            "{raw}\n got: {got:?}\nwant: {want:?}"
        );
        if want.starts_with("forward") {
            assert_eq!(got, want, "{raw}");
        }
        assert_eq!(matched, api, "{raw}");
    }
}

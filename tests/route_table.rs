//! Table-driven routing tests over every tier of SPEC §2: one configuration, many requests.
//!
//! Each case goes through the same code as `ringway route` (target parsing, dot-segment
//! resolution, the trie, backend path composition) and is also checked against the linear
//! reference matcher.

use std::path::Path;

use ringway::cli::route_line;
use ringway::config::{Config, load_str};
use ringway::router::target::{parse_target, resolve_dot_segments};

const CONFIG: &str = r#"
[server]
listen_http = ["127.0.0.1:0"]
admin_listen = "off"

[[upstreams]]
name = "u"
url = "http://127.0.0.1:9000"

[[services]]
name = "hostless"

[[services.apis]]
name = "exact-user-get"
path = "=/user"
[services.apis.backend]
upstream = "u"
path = "/b/exact-user"

[[services.apis]]
name = "exact-user-any"
path = "=/user"
method = "ANY"
[services.apis.backend]
upstream = "u"
path = "/b/exact-any"

[[services.apis]]
name = "exact-static"
path = "=/static/exact"
[services.apis.backend]
upstream = "u"
path = "/b/static-exact"

[[services.apis]]
name = "prio-static"
path = "^~/static/"
[services.apis.backend]
upstream = "u"
path = "/assets/"

[[services.apis]]
name = "prio-static-img"
path = "^~ /static/img/"
[services.apis.backend]
upstream = "u"
path = "/img/"

[[services.apis]]
name = "prefix-static-img-big"
path = "/static/img/big/"
[services.apis.backend]
upstream = "u"
path = "/big/"

[[services.apis]]
name = "param-static-file"
path = "/static/{file}"
[[services.apis.params]]
name = "file"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/files/{file}"

[[services.apis]]
name = "prefix-user"
path = "/user"
[services.apis.backend]
upstream = "u"
path = "/b/user"

[[services.apis]]
name = "prefix-user-test"
path = "/user/test"
[services.apis.backend]
upstream = "u"
path = "/b/ut"

[[services.apis]]
name = "user-profile"
path = "/user/{id}/profile"
[[services.apis.params]]
name = "id"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/users/{id}"

[[services.apis]]
name = "product"
path = "/product/"
[services.apis.backend]
upstream = "u"
path = "/tencent/"

[[services.apis]]
name = "product-no-slash"
path = "/goods"
[services.apis.backend]
upstream = "u"
path = "/shop/"

[[services.apis]]
name = "param-a-product-b"
path = "/{A}/product/{B}"
[[services.apis.params]]
name = "A"
location = "path"
[[services.apis.params]]
name = "B"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/p/{A}/{B}"

[[services.apis]]
name = "param-a-b-post"
path = "/{A}/{B}"
method = "POST"
[[services.apis.params]]
name = "A"
location = "path"
[[services.apis.params]]
name = "B"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/q/{B}/{A}"

[[services.apis]]
name = "greedy-three"
path = "/g/{a}/{b}/{c}"
[[services.apis.params]]
name = "a"
location = "path"
[[services.apis.params]]
name = "b"
location = "path"
[[services.apis.params]]
name = "c"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/g/{c}/{b}/{a}"

[[services.apis]]
name = "json-file"
path = "/files/{name}.json"
[[services.apis.params]]
name = "name"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/store/{name}"

[[services.apis]]
name = "regex-version"
path = '~ ^/api/v(?P<ver>\d+)/'
[[services.apis.params]]
name = "ver"
location = "path"
[services.apis.backend]
upstream = "u"
path = "/api/{ver}"

[[services.apis]]
name = "regex-pdf-ci"
path = '~* ^/docs/.*\.PDF$'
[services.apis.backend]
upstream = "u"
path = "/pdf"

[[services.apis]]
name = "regex-order-first"
path = "~ ^/order/first"
[services.apis.backend]
upstream = "u"
path = "/o1"

[[services.apis]]
name = "regex-order-second"
path = "~ ^/order/"
[services.apis.backend]
upstream = "u"
path = "/o2"

[[services.apis]]
name = "regex-unanchored"
path = '~ \.php$'
[services.apis.backend]
upstream = "u"
path = "/php"

[[services.apis]]
name = "regex-any"
path = "~ ^/any/"
method = "ANY"
[services.apis.backend]
upstream = "u"
path = "/any"

[[services.apis]]
name = "head-only"
path = "=/head-only"
method = "HEAD"
[services.apis.backend]
upstream = "u"
path = "/h"

[[services.apis]]
name = "items-put"
path = "=/items"
method = "PUT"
[services.apis.backend]
upstream = "u"
path = "/items/put"

[[services.apis]]
name = "items-delete"
path = "=/items"
method = "DELETE"
[services.apis.backend]
upstream = "u"
path = "/items/delete"

[[services.apis]]
name = "mock-no-path"
path = "=/mock"
[services.apis.backend]
type = "mock"

[[services]]
name = "exact-host"
hosts = ["api.example.com"]

[[services.apis]]
name = "host-user"
path = "=/user"
[services.apis.backend]
upstream = "u"
path = "/host/user"

[[services.apis]]
name = "host-catch-all"
path = "/"
method = "ANY"
[services.apis.backend]
upstream = "u"
path = "/fallback/"

[[services]]
name = "wild-host"
hosts = ["*.example.com"]

[[services.apis]]
name = "wild-root"
path = "/"
[services.apis.backend]
upstream = "u"
path = "/wild"

[[services]]
name = "hostless2"

[[services.apis]]
name = "second"
path = "=/second"
[services.apis.backend]
upstream = "u"
path = "/2"
"#;

/// `(host, method, target, expected)`; expected is `service api tier backend_path [k=v ...]`,
/// or `404 path`, `404 method`, `400`.
const CASES: &[(Option<&str>, &str, &str, &str)] = &[
    // Tier 1: exact; a specific method beats ANY on the same path.
    (
        None,
        "GET",
        "/user",
        "hostless exact-user-get exact /b/exact-user",
    ),
    (
        None,
        "POST",
        "/user",
        "hostless exact-user-any exact /b/exact-any",
    ),
    (
        None,
        "HEAD",
        "/user",
        "hostless exact-user-any exact /b/exact-any",
    ),
    (
        None,
        "get",
        "/user",
        "hostless exact-user-any exact /b/exact-any",
    ),
    (
        None,
        "GET",
        "/user?x=1&y=2",
        "hostless exact-user-get exact /b/exact-user",
    ),
    (
        None,
        "GET",
        "/static/exact",
        "hostless exact-static exact /b/static-exact",
    ),
    // Tier 2: ^~ beats regex and plain prefix; the longest ^~ wins.
    (
        None,
        "GET",
        "/static/x.css",
        "hostless prio-static priority_prefix /assets/x.css",
    ),
    (
        None,
        "GET",
        "/static/",
        "hostless prio-static priority_prefix /assets/",
    ),
    (
        None,
        "GET",
        "/static/img/a.png",
        "hostless prio-static-img priority_prefix /img/a.png",
    ),
    (
        None,
        "GET",
        "/static/img/big/x",
        "hostless prio-static-img priority_prefix /img/big/x",
    ),
    (
        None,
        "GET",
        "/static/exact/more",
        "hostless prio-static priority_prefix /assets/exact/more",
    ),
    // ^~ is GET only: a POST falls through to the regex tier.
    (
        None,
        "POST",
        "/static/x",
        "hostless param-a-b-post regex /q/x/static A=static B=x",
    ),
    // Tier 4: plain prefix, character-wise; the longest wins; the rest is appended.
    (
        None,
        "GET",
        "/usertest",
        "hostless prefix-user prefix /b/usertest",
    ),
    (
        None,
        "GET",
        "/user/",
        "hostless prefix-user prefix /b/user/",
    ),
    (
        None,
        "GET",
        "/user/tes",
        "hostless prefix-user prefix /b/user/tes",
    ),
    (
        None,
        "GET",
        "/user/test",
        "hostless prefix-user-test prefix /b/ut",
    ),
    (
        None,
        "GET",
        "/user/test/a",
        "hostless prefix-user-test prefix /b/ut/a",
    ),
    (
        None,
        "GET",
        "/user/testing",
        "hostless prefix-user-test prefix /b/uting",
    ),
    (
        None,
        "GET",
        "/user%2Ftest",
        "hostless prefix-user prefix /b/user%2Ftest",
    ),
    (
        None,
        "GET",
        "/product/apigw/document",
        "hostless product prefix /tencent/apigw/document",
    ),
    (
        None,
        "GET",
        "/product/",
        "hostless product prefix /tencent/",
    ),
    (
        None,
        "GET",
        "/goods/a",
        "hostless product-no-slash prefix /shop/a",
    ),
    (
        None,
        "GET",
        "/goods",
        "hostless product-no-slash prefix /shop/",
    ),
    // Tier 3 beats tier 4: a {param} path under a plain prefix.
    (
        None,
        "GET",
        "/user/7/profile",
        "hostless user-profile regex /users/7 id=7",
    ),
    (
        None,
        "GET",
        "/user/a/b/profile",
        "hostless user-profile regex /users/a/b id=a/b",
    ),
    (
        None,
        "GET",
        "/user/7/profile/x",
        "hostless prefix-user prefix /b/user/7/profile/x",
    ),
    (
        None,
        "GET",
        "/user//profile",
        "hostless prefix-user prefix /b/user//profile",
    ),
    // Greedy captures: both SPEC examples, and more.
    (
        None,
        "GET",
        "/middleware/product/apigw/detail",
        "hostless param-a-product-b regex /p/middleware/apigw/detail A=middleware B=apigw/detail",
    ),
    (
        None,
        "POST",
        "/middleware/apigw/detail",
        "hostless param-a-b-post regex /q/detail/middleware/apigw A=middleware/apigw B=detail",
    ),
    (
        None,
        "GET",
        "/a/product/b/product/c",
        "hostless param-a-product-b regex /p/a/product/b/c A=a/product/b B=c",
    ),
    (
        None,
        "GET",
        "/g/1/2/3/4",
        "hostless greedy-three regex /g/4/3/1/2 a=1/2 b=3 c=4",
    ),
    (
        None,
        "GET",
        "/g/1/2/3",
        "hostless greedy-three regex /g/3/2/1 a=1 b=2 c=3",
    ),
    (
        None,
        "GET",
        "/files/a.b.json",
        "hostless json-file regex /store/a.b name=a.b",
    ),
    (
        None,
        "GET",
        "/files/x/y.json",
        "hostless json-file regex /store/x/y name=x/y",
    ),
    (
        None,
        "POST",
        "/files/.json",
        "hostless param-a-b-post regex /q/.json/files A=files B=.json",
    ),
    (None, "GET", "/files/.json", "404 method"),
    (None, "GET", "/g/1/2", "404 method"),
    // Regex tier: named groups, case (in)sensitivity, configuration order, unanchored.
    (
        None,
        "GET",
        "/api/v2/users",
        "hostless regex-version regex /api/2 ver=2",
    ),
    (
        None,
        "GET",
        "/api/v10/",
        "hostless regex-version regex /api/10 ver=10",
    ),
    (None, "GET", "/api/vx/", "404 method"),
    (None, "GET", "/API/v2/users", "404 method"),
    (
        None,
        "GET",
        "/docs/Guide.pdf",
        "hostless regex-pdf-ci regex /pdf",
    ),
    (
        None,
        "GET",
        "/DOCS/guide.PdF",
        "hostless regex-pdf-ci regex /pdf",
    ),
    (
        None,
        "GET",
        "/order/first/x",
        "hostless regex-order-first regex /o1",
    ),
    (
        None,
        "GET",
        "/order/second",
        "hostless regex-order-second regex /o2",
    ),
    (
        None,
        "GET",
        "/deep/dir/index.php",
        "hostless regex-unanchored regex /php",
    ),
    (
        None,
        "GET",
        "/static/index.php",
        "hostless prio-static priority_prefix /assets/index.php",
    ),
    (None, "PATCH", "/any/x", "hostless regex-any regex /any"),
    (None, "PROPFIND", "/any/x", "hostless regex-any regex /any"),
    // Methods: HEAD does not fall back to GET; APIs share a path with other methods.
    (None, "HEAD", "/head-only", "hostless head-only exact /h"),
    (None, "GET", "/head-only", "404 method"),
    (None, "HEAD", "/order/second", "404 method"),
    (None, "PUT", "/items", "hostless items-put exact /items/put"),
    (
        None,
        "DELETE",
        "/items",
        "hostless items-delete exact /items/delete",
    ),
    (None, "PATCH", "/items", "404 method"),
    (None, "GET", "/mock", "hostless mock-no-path exact -"),
    // No match at all.
    (None, "GET", "/nothing", "404 path"),
    (None, "GET", "/", "404 path"),
    (None, "GET", "/User", "404 path"),
    // Hosts: exact (case, port, trailing dot), one-label wildcard, host-less fallback.
    (
        Some("api.example.com"),
        "GET",
        "/user",
        "exact-host host-user exact /host/user",
    ),
    (
        Some("API.Example.COM:8443"),
        "GET",
        "/user",
        "exact-host host-user exact /host/user",
    ),
    (
        Some("api.example.com."),
        "GET",
        "/user",
        "exact-host host-user exact /host/user",
    ),
    (
        Some("api.example.com"),
        "GET",
        "/zzz/y",
        "exact-host host-catch-all prefix /fallback/zzz/y",
    ),
    (
        Some("api.example.com"),
        "GET",
        "/second",
        "exact-host host-catch-all prefix /fallback/second",
    ),
    (
        Some("a.example.com"),
        "GET",
        "/x",
        "wild-host wild-root prefix /wildx",
    ),
    (Some("a.example.com"), "POST", "/x", "404 method"),
    (Some("a.b.example.com"), "GET", "/x", "404 path"),
    (
        Some("a.b.example.com"),
        "GET",
        "/user",
        "hostless exact-user-get exact /b/exact-user",
    ),
    (
        Some("example.com"),
        "GET",
        "/second",
        "hostless2 second exact /2",
    ),
    (
        Some("[::1]:8080"),
        "GET",
        "/second",
        "hostless2 second exact /2",
    ),
    (None, "GET", "/second", "hostless2 second exact /2"),
    // Absolute-form: the authority is the host.
    (
        None,
        "GET",
        "http://api.example.com/user",
        "exact-host host-user exact /host/user",
    ),
    (
        Some("other.org"),
        "GET",
        "HTTPS://API.example.com:443/user?q",
        "exact-host host-user exact /host/user",
    ),
    (
        None,
        "GET",
        "http://a.example.com",
        "wild-host wild-root prefix /wild",
    ),
    // Dot segments are resolved before matching and in the forwarded path.
    (
        None,
        "GET",
        "/user/../product/a",
        "hostless product prefix /tencent/a",
    ),
    (
        None,
        "GET",
        "/a/./b/../../user",
        "hostless exact-user-get exact /b/exact-user",
    ),
    (
        None,
        "GET",
        "/static/./img/../img/x",
        "hostless prio-static-img priority_prefix /img/x",
    ),
    (
        None,
        "GET",
        "/user/.",
        "hostless prefix-user prefix /b/user/",
    ),
    (None, "GET", "/..", "400"),
    (None, "GET", "/a/../../user", "400"),
    // Targets that are neither origin-form nor absolute-form.
    (None, "GET", "*", "400"),
    (None, "GET", "api.example.com:443", "400"),
    (None, "GET", "user", "400"),
    (None, "GET", "/a b", "400"),
];

fn config() -> Config {
    load_str(CONFIG, Path::new("route_table.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn describe(v: &serde_json::Value) -> String {
    if let Some(status) = v.get("status") {
        let msg = v["message"].as_str().unwrap_or_default();
        return match status.as_u64() {
            Some(404) if msg.contains("method[") => "404 method".into(),
            Some(404) => "404 path".into(),
            Some(s) => s.to_string(),
            None => "?".into(),
        };
    }
    let mut out = format!(
        "{} {} {} {}",
        v["service"].as_str().unwrap_or("?"),
        v["api"].as_str().unwrap_or("?"),
        v["tier"].as_str().unwrap_or("?"),
        v["backend_path"].as_str().unwrap_or("-"),
    );
    for (k, val) in v["params"].as_object().into_iter().flatten() {
        out.push_str(&format!(" {k}={}", val.as_str().unwrap_or("?")));
    }
    out
}

#[test]
fn routing_table() {
    assert!(CASES.len() >= 60, "{} cases", CASES.len());
    let mut failures = Vec::new();
    // The vectors hold for either `path_normalization`, but that "safe" (the default)
    // refuses an encoded slash.
    for normalization in ["safe", "none"] {
        let text = CONFIG.replace(
            "[server]\n",
            &format!("[server]\npath_normalization = \"{normalization}\"\n"),
        );
        let cfg = load_str(&text, Path::new("route_table.toml"));
        let cfg = cfg.unwrap_or_else(|e| panic!("{e}"));
        for (host, method, target, want) in CASES {
            let want = if normalization == "safe" && target.contains("%2F") {
                "400"
            } else {
                want
            };
            check_case(&cfg, (*host, method, target), want, &mut failures);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        2 * CASES.len(),
        failures.join("\n")
    );
}

fn check_case(
    cfg: &Config,
    (host, method, target): (Option<&str>, &str, &str),
    want: &str,
    failures: &mut Vec<String>,
) {
    let (code, line) = route_line(cfg, host, method, target);
    let got = describe(&line);
    let want_code = if want.starts_with("40") { 1 } else { 0 };
    if got != want || code != want_code {
        let normalization = cfg.server.path_normalization;
        failures.push(format!(
            "{normalization:?}: {host:?} {method} {target}\n   want {want}\n   got  {got} (exit {code}) {line}"
        ));
    }
}

#[test]
fn trie_agrees_with_linear_reference() {
    let cfg = config();
    for (host, method, target, _) in CASES {
        let Ok(t) = parse_target(target) else {
            continue;
        };
        let mut buf = String::new();
        let Ok(path) = resolve_dot_segments(t.path, &mut buf) else {
            continue;
        };
        let host = t.authority.or(*host);
        let a = cfg.routes.route(host, method, path);
        let b = cfg.routes.route_linear(host, method, path);
        match (a, b) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.service, a.api, a.tier, a.prefix_len),
                    (b.service, b.api, b.tier, b.prefix_len),
                    "{target}"
                );
                assert_eq!(
                    a.captures.iter(path).collect::<Vec<_>>(),
                    b.captures.iter(path).collect::<Vec<_>>()
                );
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "{target}"),
            (a, b) => panic!("{target}: trie {a:?} vs linear {b:?}"),
        }
    }
}

#[test]
fn miss_messages_follow_the_spec() {
    let cfg = config();
    // PUT /user would reach `=/user` ANY; this path has only GET APIs.
    let (_, v) = route_line(&cfg, Some("h"), "PUT", "/api/v1/x");
    assert_eq!(
        v["message"],
        "There is no api match method[PUT] uri[/api/v1/x] host[h]"
    );
    let (_, v) = route_line(&cfg, Some("h"), "GET", "/nope?q=1");
    assert_eq!(v["message"], "There is no api match uri[/nope] host[h]");
}

/// `ringway route` judges `--host` and an absolute-form authority as the data path judges
/// the Host header and the target (SPEC §6): 400 with the same messages.
#[test]
fn bad_hosts_and_authorities_are_400() {
    let cfg = config();
    for (host, target, message) in [
        (Some("u@h"), "/a", "bad Host (userinfo is not allowed)"),
        (
            Some("h:65536"),
            "/a",
            "bad Host (the port is not a number in 0-65535)",
        ),
        (
            Some("::1"),
            "/a",
            "bad Host (an IPv6 address must be in brackets)",
        ),
        (
            None,
            "http://[fe80::1%25eth0]/a",
            "bad authority in the request target (IPv6 zone ids are not supported)",
        ),
        (
            Some("h"),
            "/caf\u{e9}",
            "request target contains a forbidden character",
        ),
    ] {
        let (code, v) = route_line(&cfg, host, "GET", target);
        assert_eq!(code, 1, "{host:?} {target}");
        assert_eq!(v["status"], 400, "{host:?} {target}");
        assert_eq!(v["message"], message, "{host:?} {target}");
    }
}

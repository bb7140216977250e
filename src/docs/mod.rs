//! Generated API documentation (SPEC §7 `ringway docs`, and later the admin `/docs`).
//!
//! This module owns what a developer calling a service is told about it. Everything here is a
//! pure function of an already built [`Config`]: no file, no clock, no network, so the same
//! documents can be written by the CLI (`cli::docs`) or served by an admin listener.
//!
//! Data flows one way: `Config` → [`paths`] (each API's configured path as an OpenAPI path
//! template, and a concrete sample path) and [`sample`] (servers, the `curl` sample, the auth
//! recipes) → the two renderers, [`openapi`] (one OpenAPI 3.0.3 JSON document per service)
//! and [`html`] (one self-contained HTML page per service, and an index page). The gateway's
//! own error table ([`GATEWAY_ERRORS`]) and the file layout ([`Layout`]) live here, shared by
//! both renderers.
//!
//! Secrets never reach a document: key pairs, backend upstream addresses and constants are
//! not part of what a caller sees.

pub mod html;
pub mod openapi;
pub mod paths;
pub mod sample;

use serde_json::{Value, json};

use crate::config::{
    Api, Auth, BackendTarget, Config, DataType, Limit, LimitKey, Location, Protocol, ResponseType,
    Service, UsagePlan,
};

pub use html::{index_html, service_html};
pub use openapi::openapi;

/// The version of ringway that generated a document.
pub const GENERATOR: &str = concat!("ringway ", env!("CARGO_PKG_VERSION"));

/// File names of one configuration's documents, relative to the output directory (or to
/// the URL prefix they are served under): `index.html`, `index.json`, `<stem>.html` and
/// `openapi/<stem>.json`, where each service's `<stem>` is its name made safe for a file
/// name ([`Layout::new`]).
pub struct Layout {
    stems: Vec<String>,
}

/// Longest file stem derived from a service name (before a `-N` suffix).
pub const MAX_STEM_CHARS: usize = 80;

impl Layout {
    pub const INDEX_HTML: &'static str = "index.html";
    pub const INDEX_JSON: &'static str = "index.json";
    pub const OPENAPI_DIR: &'static str = "openapi";

    /// One stem per service, in configuration order: ASCII letters, digits, `-`, `_` and `.`
    /// are kept, every other character becomes `_`, a leading `.` becomes `_`; a stem that
    /// would be empty, `index`, or equal (ignoring case) to an earlier one gets `-2`, `-3`, ...
    pub fn new(config: &Config) -> Layout {
        let mut stems: Vec<String> = Vec::with_capacity(config.services.len());
        for s in &config.services {
            let base = file_stem(&s.name);
            let mut stem = base.clone();
            let mut n = 1;
            while stem.eq_ignore_ascii_case("index")
                || stems.iter().any(|o| o.eq_ignore_ascii_case(&stem))
            {
                n += 1;
                stem = format!("{base}-{n}");
            }
            stems.push(stem);
        }
        Layout { stems }
    }

    /// The stem of service `i` (an index into [`Config::services`]).
    pub fn stem(&self, i: usize) -> &str {
        self.stems.get(i).map_or("service", String::as_str)
    }

    pub fn html_file(&self, i: usize) -> String {
        format!("{}.html", self.stem(i))
    }

    pub fn openapi_file(&self, i: usize) -> String {
        format!("{}/{}.json", Self::OPENAPI_DIR, self.stem(i))
    }
}

/// A service name as a file stem (see [`Layout::new`]); never empty.
fn file_stem(name: &str) -> String {
    let mut out: String = name
        .chars()
        .take(MAX_STEM_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out.is_empty() {
        out.push_str("service");
    }
    out
}

/// The index of a service in its configuration (services are compared by address, then by
/// their unique name).
pub(crate) fn service_index(config: &Config, service: &Service) -> usize {
    config
        .services
        .iter()
        .position(|s| std::ptr::eq(s, service))
        .or_else(|| config.services.iter().position(|s| s.name == service.name))
        .unwrap_or(0)
}

/// One row of the gateway's own error table (SPEC §6).
pub struct GatewayErrorRow {
    pub status: u16,
    pub when: &'static str,
    pub example: &'static str,
}

/// Every answer the gateway makes itself: a JSON body `{"message":"..."}` with
/// `X-Api-RequestId`. An API's backend answers are passed through and are not listed here.
pub const GATEWAY_ERRORS: [GatewayErrorRow; 13] = [
    GatewayErrorRow {
        status: 400,
        when: "Malformed request, a parameter of the wrong type, or a bad WebSocket handshake",
        example: "querystring limit is not a valid int",
    },
    GatewayErrorRow {
        status: 401,
        when: "Authentication failed (key pair or OAuth 2.0 APIs)",
        example: "HMAC signature does not match",
    },
    GatewayErrorRow {
        status: 403,
        when: "A required parameter is missing, the client's IP address is not allowed, or no usage plan binds the caller's SecretId",
        example: "header X-Tenant is required",
    },
    GatewayErrorRow {
        status: 404,
        when: "No API matches the path, or none of those on the path takes the method",
        example: "There is no api match uri[/nope] host[api.example.com]",
    },
    GatewayErrorRow {
        status: 408,
        when: "The request head did not arrive in time; the connection is closed",
        example: "request header timeout",
    },
    GatewayErrorRow {
        status: 413,
        when: "The body is larger than the gateway accepts",
        example: "request body too large",
    },
    GatewayErrorRow {
        status: 414,
        when: "The request URI is too long",
        example: "request URI too long",
    },
    GatewayErrorRow {
        status: 426,
        when: "The service does not accept this protocol (HTTP vs HTTPS)",
        example: "this API is served over https only",
    },
    GatewayErrorRow {
        status: 429,
        when: "Over a rate limit, or over a usage plan's rate or quota (Retry-After says when to retry)",
        example: MSG_RATE_LIMITED,
    },
    GatewayErrorRow {
        status: 431,
        when: "The request head is too large or has too many headers",
        example: "request header fields too large",
    },
    GatewayErrorRow {
        status: 502,
        when: "The backend refused the connection or broke it",
        example: "backend connection failed: connection refused",
    },
    GatewayErrorRow {
        status: 503,
        when: "The gateway is overloaded",
        example: "gateway overloaded",
    },
    GatewayErrorRow {
        status: 504,
        when: "The backend did not answer in time",
        example: "backend timeout",
    },
];

/// The gateway's answer over a rate (SPEC §8).
pub const MSG_RATE_LIMITED: &str = "API rate limit exceeded.";
/// The gateway's answer over a usage plan's quota.
pub const MSG_QUOTA_EXCEEDED: &str = "API quota exceeded.";
/// The gateway's answer to a key-pair caller that no usage plan of the service binds.
pub const MSG_NO_USAGE_PLAN: &str = "Found no validate usage plan.";

/// What the answers of an API under a usage plan or limit say about it, for its callers.
pub const RATE_LIMIT_HOWTO: &str = "Answers carry `RateLimit-Policy: \"<name>\";q=<requests>;w=<window seconds>` and `RateLimit: \"<name>\";r=<remaining>;t=<seconds to reset>` for the policy with the fewest requests left (the plan's name, or `limit-<n>`). Over it: 429 with `Retry-After: <seconds>`; a refused request is not counted.";

/// The usage plans that apply to `api`: those naming its service, for a key-pair API (plans
/// bind `secret_id`s; they do not apply to other APIs).
pub fn api_plans<'c>(config: &'c Config, service: &Service, api: &Api) -> Vec<&'c UsagePlan> {
    if api.auth != Auth::KeyPair {
        return Vec::new();
    }
    service
        .plans
        .iter()
        .filter_map(|&p| config.usage_plans.get(p))
        .collect()
}

/// The limits that count `api`'s requests, the service's first.
pub fn api_limits<'c>(config: &'c Config, api: &Api) -> Vec<&'c Limit> {
    api.limits
        .iter()
        .filter_map(|&i| config.limits.get(i))
        .collect()
}

/// Whose requests a limit counts together, for a caller.
pub fn limit_key_words(key: LimitKey) -> &'static str {
    match key {
        LimitKey::Service => "for the whole service, all callers together",
        LimitKey::Api => "for this API, all callers together",
        LimitKey::Ip => "per client IP address",
        LimitKey::Caller => "per caller (SecretId or token subject; the client IP without one)",
    }
}

/// `10 requests`, `1 request`.
fn requests_words(n: u64) -> String {
    format!("{n} request{}", if n == 1 { "" } else { "s" })
}

/// `limit-1: 10 requests per second per client IP address`.
pub fn limit_words(l: &Limit) -> String {
    format!(
        "`{}`: {} per {} {}",
        l.name,
        requests_words(l.requests),
        l.per.name(),
        limit_key_words(l.key)
    )
}

/// `gold: 100 requests per second, 1000000 requests per month (UTC)` (per SecretId).
pub fn plan_words(p: &UsagePlan) -> String {
    let mut parts = Vec::new();
    if let Some(r) = p.rate {
        parts.push(format!("{} per second", requests_words(r)));
    }
    if let Some(q) = p.quota {
        let q = requests_words(q);
        parts.push(match p.period_name() {
            "total" => format!("{q} in total"),
            period => format!("{q} per calendar {period} (UTC)"),
        });
    }
    if parts.is_empty() {
        parts.push("no rate or quota".into());
    }
    format!("`{}`: {}", p.name, parts.join(", "))
}

/// The gateway errors one API's callers can meet in normal use: 400 always; 401 with auth;
/// 403 with a required param, IP control, or usage plans (key-pair APIs); 413 for methods
/// that carry a body; 426 when the service takes one protocol only; 429 under a limit or
/// plan; 502 and 504 through an upstream; 503 always. (404, 408, 414 and 431 are about
/// requests that do not reach an API; they are in the service-wide table.)
pub fn api_gateway_errors(
    service: &Service,
    api: &Api,
    method: &str,
) -> Vec<&'static GatewayErrorRow> {
    let vpc = matches!(api.backend.target, BackendTarget::Vpc { .. });
    let plans = api.auth == Auth::KeyPair && !service.plans.is_empty();
    GATEWAY_ERRORS
        .iter()
        .filter(|e| match e.status {
            400 | 503 => true,
            401 => api.auth != Auth::None,
            403 => {
                api.ip_control.is_some()
                    || plans
                    || api
                        .params
                        .iter()
                        .any(|p| p.required && p.location != Location::Path)
            }
            413 => matches!(method, "POST" | "PUT" | "PATCH" | "DELETE" | "ANY"),
            426 => service.protocol != Protocol::Both,
            429 => plans || !api.limits.is_empty(),
            502 | 504 => vpc,
            _ => false,
        })
        .collect()
}

/// An example gateway message for `row`, specific to `api` where the configuration tells more.
pub fn api_error_example(
    row: &GatewayErrorRow,
    config: &Config,
    service: &Service,
    api: &Api,
) -> String {
    match row.status {
        400 => match api.params.iter().find(|p| p.data_type != DataType::String) {
            Some(p) => format!(
                "{} {} is not a valid {}",
                location_message(p.location),
                p.name,
                data_type_name(p.data_type)
            ),
            None => "bad request".into(),
        },
        401 => match api.auth {
            Auth::OAuth2 => crate::auth::jwt::MSG_MISSING.into(),
            _ => crate::auth::hmac::MSG_MISMATCH.into(),
        },
        403 => match api
            .params
            .iter()
            .find(|p| p.required && p.location != Location::Path)
        {
            Some(p) => format!("{} {} is required", location_message(p.location), p.name),
            None if !api_plans(config, service, api).is_empty() => MSG_NO_USAGE_PLAN.into(),
            None if api.ip_control.is_some() => "client ip 192.0.2.1 is not allowed".into(),
            None => row.example.into(),
        },
        429 => {
            // Over a quota only when no rate can refuse first.
            let plans = api_plans(config, service, api);
            let quota_only = !plans.is_empty() && plans.iter().all(|p| p.rate.is_none());
            if api.limits.is_empty() && quota_only {
                MSG_QUOTA_EXCEEDED.into()
            } else {
                MSG_RATE_LIMITED.into()
            }
        }
        426 => match service.protocol {
            Protocol::Https => "this API is served over https only".into(),
            _ => "this API is served over http only".into(),
        },
        _ => row.example.into(),
    }
}

/// How a location is named in the gateway's parameter messages (SPEC §3).
fn location_message(l: Location) -> &'static str {
    match l {
        Location::Header => "header",
        Location::Query => "querystring",
        Location::Path => "path variable",
    }
}

pub fn location_name(l: Location) -> &'static str {
    match l {
        Location::Header => "header",
        Location::Query => "query",
        Location::Path => "path",
    }
}

pub fn data_type_name(t: DataType) -> &'static str {
    match t {
        DataType::String => "string",
        DataType::Int => "int",
        DataType::Long => "long",
        DataType::Float => "float",
        DataType::Double => "double",
        DataType::Boolean => "boolean",
    }
}

pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Http => "http",
        Protocol::Https => "https",
        Protocol::Both => "http&https",
    }
}

pub fn auth_name(a: Auth) -> &'static str {
    match a {
        Auth::None => "none",
        Auth::KeyPair => "key_pair",
        Auth::OAuth2 => "oauth2",
    }
}

/// The media type of a configured response `type`.
pub fn media_type(kind: ResponseType) -> &'static str {
    match kind {
        ResponseType::Json => "application/json",
        ResponseType::Html => "text/html",
        ResponseType::Text => "text/plain",
        ResponseType::Xml => "application/xml",
        ResponseType::Binary => "application/octet-stream",
    }
}

/// A configured value (a default or a sample, already checked against its type) as the JSON
/// value of that type; a value that does not convert stays a string.
pub fn typed_value(t: DataType, v: &str) -> Value {
    match t {
        DataType::Int | DataType::Long => v.parse::<i64>().map_or_else(|_| json!(v), Value::from),
        DataType::Float | DataType::Double => v
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| json!(v), Value::Number),
        DataType::Boolean => match v {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => json!(v),
        },
        DataType::String => json!(v),
    }
}

/// A sample body as a JSON value when it is JSON of a JSON response, else as a string.
pub fn sample_value(kind: ResponseType, sample: &str) -> Value {
    if kind == ResponseType::Json
        && let Ok(v) = serde_json::from_str::<Value>(sample)
    {
        return v;
    }
    json!(sample)
}

/// The list of services with links to their documents, as JSON (`index.json`).
/// `base` is put before every link (`""` for files side by side, `"/docs/"` for a server).
pub fn index(config: &Config, base: &str) -> Value {
    let layout = Layout::new(config);
    let services: Vec<Value> = config
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let apis: Vec<Value> = s
                .apis
                .iter()
                .map(|a| {
                    json!({
                        "name": a.name,
                        "method": a.methods.name(),
                        "path": a.path_source,
                        "description": a.description,
                    })
                })
                .collect();
            json!({
                "name": s.name,
                "description": s.description,
                "hosts": s.hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "protocol": protocol_name(s.protocol),
                "html": format!("{base}{}", layout.html_file(i)),
                "openapi": format!("{base}{}", layout.openapi_file(i)),
                "apis": apis,
            })
        })
        .collect();
    json!({ "generator": GENERATOR, "services": services })
}

/// Every document of `cfg`, as (path relative to the output directory or URL prefix,
/// contents); `base` goes before the links between them (`""` for files, `"/docs/"` for
/// the admin listener).
pub fn files(cfg: &Config, base: &str) -> Vec<(String, String)> {
    let layout = Layout::new(cfg);
    let json = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    let mut files = vec![
        (Layout::INDEX_HTML.to_string(), index_html(cfg, base)),
        (
            Layout::INDEX_JSON.to_string(),
            json(&index(cfg, base)) + "\n",
        ),
    ];
    for (i, s) in cfg.services.iter().enumerate() {
        files.push((layout.html_file(i), service_html(cfg, s, base)));
        files.push((layout.openapi_file(i), json(&openapi(cfg, s)) + "\n"));
    }
    files
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// A configuration from TOML text that reads no other file.
    pub fn config(text: &str) -> Config {
        crate::config::load_str(text, Path::new("t.toml"))
            .unwrap_or_else(|e| panic!("config does not load: {e}"))
    }

    #[test]
    fn file_stems() {
        let cases = [
            ("user-service", "user-service"),
            ("a b/c", "a_b_c"),
            ("../etc/passwd", "_._etc_passwd"),
            (".hidden", "_hidden"),
            ("服务", "__"),
            ("v1.2_x", "v1.2_x"),
        ];
        for (name, stem) in cases {
            assert_eq!(file_stem(name), stem, "{name}");
        }
        assert_eq!(file_stem(&"x".repeat(200)).len(), MAX_STEM_CHARS);
    }

    #[test]
    fn layout_makes_stems_unique_and_keeps_index_free() {
        let mut text = String::new();
        for name in ["a/b", "a_b", "index", "A_B", ""] {
            let name = if name.is_empty() { "x y" } else { name };
            text.push_str(&format!(
                "[[services]]\nname = \"{name}\"\n[[services.apis]]\nname = \"h\"\npath = \"=/{}\"\n[services.apis.backend]\ntype = \"mock\"\n",
                text.len()
            ));
        }
        // Services without hosts share one route group: distinct paths above.
        let cfg = config(&text);
        let l = Layout::new(&cfg);
        let stems: Vec<&str> = (0..5).map(|i| l.stem(i)).collect();
        assert_eq!(stems, ["a_b", "a_b-2", "index-2", "A_B-3", "x_y"]);
        assert_eq!(l.html_file(2), "index-2.html");
        assert_eq!(l.openapi_file(0), "openapi/a_b.json");
    }

    #[test]
    fn typed_values() {
        let cases = [
            (DataType::Int, "42", json!(42)),
            (DataType::Long, "-9000000000", json!(-9_000_000_000i64)),
            (DataType::Double, "1.5", json!(1.5)),
            (DataType::Float, "2e3", json!(2000.0)),
            (DataType::Boolean, "false", json!(false)),
            (DataType::String, "42", json!("42")),
            (DataType::Int, "x", json!("x")),
        ];
        for (t, v, want) in cases {
            assert_eq!(typed_value(t, v), want, "{v}");
        }
    }

    #[test]
    fn errors_per_api() {
        let cfg = config(
            r#"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9"
[[services]]
name = "s"
protocol = "http"
[[services.apis]]
name = "plain"
path = "=/a"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "full"
path = "=/b"
method = "POST"
auth = "key_pair"
[[services.apis.params]]
name = "n"
location = "query"
data_type = "int"
required = true
[services.apis.backend]
upstream = "u"
path = "/b"
[[services.apis]]
name = "guarded"
path = "=/c"
[services.apis.ip_control]
mode = "allow"
ips = ["10.0.0.0/8"]
[services.apis.backend]
type = "mock"
"#,
        );
        let s = &cfg.services[0];
        let codes = |api: usize, m: &str| -> Vec<u16> {
            api_gateway_errors(s, &s.apis[api], m)
                .iter()
                .map(|e| e.status)
                .collect()
        };
        assert_eq!(codes(0, "GET"), [400, 426, 503]);
        assert_eq!(codes(1, "POST"), [400, 401, 403, 413, 426, 502, 503, 504]);
        assert_eq!(codes(2, "GET"), [400, 403, 426, 503]);
        let row = |status| GATEWAY_ERRORS.iter().find(|e| e.status == status).unwrap();
        assert_eq!(
            api_error_example(row(403), &cfg, s, &s.apis[2]),
            "client ip 192.0.2.1 is not allowed"
        );
        assert_eq!(
            api_error_example(row(403), &cfg, s, &s.apis[1]),
            "querystring n is required"
        );
        assert_eq!(
            api_error_example(row(400), &cfg, s, &s.apis[1]),
            "querystring n is not a valid int"
        );
        assert_eq!(
            api_error_example(row(426), &cfg, s, &s.apis[1]),
            "this API is served over http only"
        );
    }

    #[test]
    fn errors_per_api_under_traffic_control() {
        let cfg = config(
            r#"
[[services]]
name = "s"
[[services.apis]]
name = "signed"
path = "=/a"
auth = "key_pair"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "open"
path = "=/b"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "limited"
path = "=/c"
[[services.apis.limits]]
key = "ip"
requests = 1
per = "day"
[services.apis.backend]
type = "mock"
[[key_pairs]]
secret_id = "AKIDerrs0001"
secret_key = "errs-secret-0001"
services = ["s"]
[[usage_plans]]
name = "quota"
max_requests = 10
secret_ids = ["AKIDerrs0001"]
services = ["s"]
"#,
        );
        let s = &cfg.services[0];
        let codes = |api: usize| -> Vec<u16> {
            api_gateway_errors(s, &s.apis[api], "GET")
                .iter()
                .map(|e| e.status)
                .collect()
        };
        // Plans apply to key-pair APIs only; limits to every API they are on.
        assert_eq!(codes(0), [400, 401, 403, 429, 503]);
        assert_eq!(codes(1), [400, 503]);
        assert_eq!(codes(2), [400, 429, 503]);
        let row = |status| GATEWAY_ERRORS.iter().find(|e| e.status == status).unwrap();
        assert_eq!(
            api_error_example(row(403), &cfg, s, &s.apis[0]),
            MSG_NO_USAGE_PLAN
        );
        assert_eq!(
            api_error_example(row(429), &cfg, s, &s.apis[0]),
            MSG_QUOTA_EXCEEDED
        );
        assert_eq!(
            api_error_example(row(429), &cfg, s, &s.apis[2]),
            MSG_RATE_LIMITED
        );
        assert_eq!(api_plans(&cfg, s, &s.apis[0]).len(), 1);
        assert!(api_plans(&cfg, s, &s.apis[1]).is_empty());
        assert_eq!(
            limit_words(api_limits(&cfg, &s.apis[2])[0]),
            "`limit-1`: 1 request per day per client IP address"
        );
        assert_eq!(
            plan_words(&cfg.usage_plans[0]),
            "`quota`: 10 requests in total"
        );
    }

    #[test]
    fn index_links_every_service() {
        let cfg = config(
            "[[services]]\nname = \"one\"\ndescription = \"First\"\n[[services.apis]]\nname = \"h\"\npath = \"=/h\"\nmethod = \"ANY\"\n[services.apis.backend]\ntype = \"mock\"\n[[services]]\nname = \"two\"\nhosts = [\"b.example\"]\n",
        );
        let v = index(&cfg, "/docs/");
        assert_eq!(v["services"][0]["html"], "/docs/one.html");
        assert_eq!(v["services"][0]["openapi"], "/docs/openapi/one.json");
        assert_eq!(v["services"][0]["apis"][0]["method"], "ANY");
        assert_eq!(v["services"][0]["description"], "First");
        assert_eq!(v["services"][1]["hosts"][0], "b.example");
        assert_eq!(v["services"][1]["apis"].as_array().map(Vec::len), Some(0));
    }
}

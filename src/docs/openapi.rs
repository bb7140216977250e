//! One OpenAPI 3.0.3 document per service.
//!
//! - `servers`: from [`super::sample::servers`] (hosts × protocol × listener ports).
//! - `paths`: each API's path as a template ([`super::paths::template`]); the route tier in
//!   `x-ringway-match` (`exact`, `priority_prefix`, `regex`, `prefix`, as `ringway route`
//!   names them) and the configured path in `x-ringway-path`.
//! - Methods: an API's method is one operation. An `ANY` API becomes one operation per
//!   method OpenAPI knows (but TRACE) that no other API of the same template claims, each
//!   marked `x-ringway-method: ANY`. Two APIs that would land on the same template and
//!   method (e.g. `=/a` and the prefix `/a`) cannot share an OpenAPI key: the later one's key
//!   gets a `#<api name>` suffix, and its `x-ringway-path` tells the real path.
//! - Parameters: location, schema type (and format), required, default, example (the
//!   sample), description; a mapping to the backend in `x-ringway-backend`. Named groups of a
//!   regex that is not a plain template are in `x-ringway-path-captures`.
//! - Security: key pair as an `apiKey` scheme in the `Authorization` header, described in
//!   words (the signature format of SPEC §4); OAuth 2.0 as `http` bearer JWT when the token
//!   travels in the header, else as an `apiKey` scheme in the cookie / query parameter.
//! - Request body: for methods that carry one, the size limit (the body is passed through).
//! - Responses: the success answer (a mock's status and body, or 200 with the configured
//!   success sample; 101 for WebSocket APIs), the backend's failure answer as `default` with
//!   the failure sample and the API's error codes (a Markdown table, and
//!   `x-ringway-error-codes`), and the gateway's own errors that apply to the API (SPEC §6),
//!   each with `X-Api-RequestId` (and the CORS headers for CORS APIs). The whole gateway
//!   error table is `x-ringway-gateway-errors` at the top.
//! - Traffic control (SPEC §8): an API's limits in `x-ringway-limits` and, for a key-pair
//!   API of a service that usage plans name, the plans in `x-ringway-usage-plans` (names
//!   and numbers; never the SecretIds they bind). Such an API's answers declare the
//!   `RateLimit-Policy` and `RateLimit` headers, its 429 also `Retry-After`; a key-pair API
//!   under plans lists the 403 of a caller no plan binds.

use serde_json::{Map, Value, json};

use super::paths::{Template, is_prefix, template};
use super::sample::{CORS_HOWTO, curl_as, key_pair_howto, oauth2_howto, servers};
use super::{
    GATEWAY_ERRORS, GENERATOR, MSG_NO_USAGE_PLAN, MSG_QUOTA_EXCEEDED, MSG_RATE_LIMITED,
    RATE_LIMIT_HOWTO, api_error_example, api_gateway_errors, api_limits, api_plans, data_type_name,
    limit_words, location_name, media_type, plan_words, sample_value, typed_value,
};
use crate::config::{
    Api, Auth, BackendTarget, Config, DataType, FrontendType, Location, Param, Service,
    TokenLocation,
};
use crate::router::method::NAMES;

/// The OpenAPI version written.
pub const OPENAPI_VERSION: &str = "3.0.3";
const KEY_PAIR_SCHEME: &str = "keyPair";
const OAUTH2_SCHEME: &str = "oauth2Jwt";

/// The OpenAPI document of one service of `config`.
pub fn openapi(config: &Config, service: &Service) -> Value {
    let mut paths = Map::new();
    let mut taken: Vec<(String, &'static str)> = Vec::new();
    // Specific methods first: on one template they win over an ANY API (SPEC §2.4).
    let templates: Vec<Template> = service.apis.iter().map(template).collect();
    let mut ops: Vec<(usize, String, &'static str)> = Vec::new();
    for (i, api) in service.apis.iter().enumerate() {
        if api.methods.is_any() {
            continue;
        }
        let mut key = templates[i].path.clone();
        let m = api.methods.name();
        if taken.iter().any(|(k, tm)| *k == key && *tm == m) {
            key = collision_key(&key, api);
        }
        taken.push((key.clone(), m));
        ops.push((i, key, m));
    }
    for (i, api) in service.apis.iter().enumerate() {
        if !api.methods.is_any() {
            continue;
        }
        let key = templates[i].path.clone();
        let free: Vec<&'static str> = NAMES
            .iter()
            .copied()
            .filter(|m| !taken.iter().any(|(k, tm)| *k == key && tm == m))
            .collect();
        let (key, methods) = if free.is_empty() {
            (collision_key(&key, api), NAMES.to_vec())
        } else {
            (key, free)
        };
        for m in methods {
            taken.push((key.clone(), m));
            ops.push((i, key.clone(), m));
        }
    }
    // Operations in configuration order of their APIs.
    ops.sort_by_key(|(i, _, _)| *i);
    for (i, key, m) in ops {
        let op = operation(config, service, &service.apis[i], &templates[i], m);
        if let Value::Object(item) = paths.entry(key).or_insert_with(|| json!({})) {
            item.insert(m.to_ascii_lowercase(), op);
        }
    }

    let mut schemes = Map::new();
    if service.apis.iter().any(|a| a.auth == Auth::KeyPair) {
        schemes.insert(
            KEY_PAIR_SCHEME.into(),
            json!({
                "type": "apiKey",
                "in": "header",
                "name": "Authorization",
                "description": key_pair_howto().join("\n\n"),
            }),
        );
    }
    if let Some(o) = service
        .oauth2
        .as_ref()
        .filter(|_| service.apis.iter().any(|a| a.auth == Auth::OAuth2))
    {
        let description = oauth2_howto(o).join("\n\n");
        let scheme = match o.token_location {
            TokenLocation::Header => json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": description,
            }),
            TokenLocation::Cookie | TokenLocation::Query => json!({
                "type": "apiKey",
                "in": if o.token_location == TokenLocation::Cookie { "cookie" } else { "query" },
                "name": o.token_name,
                "description": description,
            }),
        };
        schemes.insert(OAUTH2_SCHEME.into(), scheme);
    }

    let mut components = json!({
        "schemas": {
            "GatewayError": {
                "type": "object",
                "description": "An answer the gateway makes itself (SPEC §6).",
                "required": ["message"],
                "properties": { "message": { "type": "string" } },
            },
        },
        "headers": {
            "X-Api-RequestId": {
                "description": "A unique id of the request, also sent to the backend.",
                "schema": { "type": "string" },
            },
            "Access-Control-Allow-Origin": {
                "description": "CORS APIs: always `*`.",
                "schema": { "type": "string", "enum": ["*"] },
            },
            "Access-Control-Expose-Headers": {
                "description": "CORS APIs: `X-Api-RequestId`.",
                "schema": { "type": "string" },
            },
        },
    });
    if !schemes.is_empty() {
        components["securitySchemes"] = Value::Object(schemes);
    }
    if service
        .apis
        .iter()
        .any(|a| under_traffic(config, service, a))
    {
        components["headers"]["RateLimit-Policy"] = json!({
            "description": "APIs under a usage plan or limit: the policy with the fewest requests left, `\"<name>\";q=<requests>;w=<window in seconds>` (the plan's name or `limit-<n>`; no `w` for a total quota). Sent on answers to requests that passed authentication.",
            "schema": { "type": "string" },
            "example": "\"limit-1\";q=10;w=1",
        });
        components["headers"]["RateLimit"] = json!({
            "description": "APIs under a usage plan or limit: `\"<name>\";r=<requests left>;t=<seconds until the whole allowance is back>` for the same policy.",
            "schema": { "type": "string" },
            "example": "\"limit-1\";r=9;t=1",
        });
        components["headers"]["Retry-After"] = json!({
            "description": "429 answers: seconds (at least 1) until a retry can pass.",
            "schema": { "type": "integer", "minimum": 1 },
        });
    }

    let mut info = json!({
        "title": service.name,
        "version": env!("CARGO_PKG_VERSION"),
        "description": service_description(service),
    });
    info["x-ringway-generator"] = json!(GENERATOR);
    json!({
        "openapi": OPENAPI_VERSION,
        "info": info,
        "servers": servers(config, service).iter().map(|s| {
            let mut v = json!({ "url": s.url });
            if !s.variables.is_empty() {
                let vars: Map<String, Value> = s.variables.iter().map(|(n, d, desc)| {
                    (n.to_string(), json!({ "default": d, "description": desc }))
                }).collect();
                v["variables"] = Value::Object(vars);
            }
            v
        }).collect::<Vec<_>>(),
        "paths": paths,
        "components": components,
        "x-ringway-gateway-errors": GATEWAY_ERRORS.iter().map(|e| json!({
            "status": e.status,
            "when": e.when,
            "example": { "message": e.example },
        })).collect::<Vec<_>>(),
    })
}

fn service_description(service: &Service) -> String {
    let mut d = String::new();
    if !service.description.is_empty() {
        d.push_str(&service.description);
        d.push_str("\n\n");
    }
    d.push_str(&format!(
        "Served over {}. Every answer carries `X-Api-RequestId`; the gateway's own errors are JSON `{{\"message\": \"...\"}}` (see `x-ringway-gateway-errors`).",
        super::sample::protocol_words(service.protocol)
    ));
    d
}

/// A key for an API whose template and method another API already has (see module docs).
fn collision_key(key: &str, api: &Api) -> String {
    format!("{key}#{}", super::paths::percent_encode(&api.name, b""))
}

/// The API is under a usage plan or a limit: its answers carry the `RateLimit` headers.
fn under_traffic(config: &Config, service: &Service, api: &Api) -> bool {
    !api.limits.is_empty() || !api_plans(config, service, api).is_empty()
}

fn operation(config: &Config, service: &Service, api: &Api, t: &Template, method: &str) -> Value {
    let any = api.methods.is_any();
    let mut op = Map::new();
    let op_id = if any {
        format!("{}.{}", api.name, method.to_ascii_lowercase())
    } else {
        api.name.clone()
    };
    op.insert("operationId".into(), json!(op_id));
    op.insert("summary".into(), json!(api.name));
    op.insert(
        "description".into(),
        json!(api_description(config, service, api, t)),
    );
    let parameters = parameters(api, t);
    if !parameters.is_empty() {
        op.insert("parameters".into(), Value::Array(parameters));
    }
    if matches!(method, "POST" | "PUT" | "PATCH") && api.frontend_type == FrontendType::Http {
        op.insert(
            "requestBody".into(),
            json!({
                "description": format!(
                    "Passed to the backend unchanged; at most {} bytes (413 above).",
                    config.server.limits.max_body_bytes
                ),
                "required": false,
                "content": { "*/*": { "schema": { "type": "string", "format": "binary" } } },
            }),
        );
    }
    op.insert("responses".into(), responses(config, service, api, method));
    match api.auth {
        Auth::None => {}
        Auth::KeyPair => {
            op.insert("security".into(), json!([{ KEY_PAIR_SCHEME: [] }]));
        }
        Auth::OAuth2 => {
            op.insert("security".into(), json!([{ OAUTH2_SCHEME: [] }]));
        }
    }
    op.insert("x-ringway-match".into(), json!(api.path.tier().as_str()));
    op.insert("x-ringway-path".into(), json!(api.path_source));
    if any {
        op.insert("x-ringway-method".into(), json!("ANY"));
    }
    op.insert("x-ringway-auth".into(), json!(super::auth_name(api.auth)));
    op.insert("x-ringway-cors".into(), json!(api.cors));
    if api.frontend_type == FrontendType::Ws {
        op.insert(
            "x-ringway-websocket".into(),
            json!({
                "upgrade": "websocket",
                "description": "Send an RFC 6455 Upgrade request (GET, `Connection: Upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version: 13`, `Sec-WebSocket-Key`); once the backend answers 101 the connection is a tunnel to it (ws:// on HTTP listeners, wss:// on HTTPS ones).",
                "idle_timeout_ms": config.server.ws_idle_timeout.as_millis() as u64,
            }),
        );
    }
    let limits = api_limits(config, api);
    if !limits.is_empty() {
        op.insert(
            "x-ringway-limits".into(),
            limits
                .iter()
                .map(|l| {
                    json!({
                        "name": l.name,
                        "key": l.key.name(),
                        "requests": l.requests,
                        "per": l.per.name(),
                    })
                })
                .collect(),
        );
    }
    let plans = api_plans(config, service, api);
    if !plans.is_empty() {
        op.insert(
            "x-ringway-usage-plans".into(),
            plans
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name,
                        "max_requests_per_second": p.rate,
                        "max_requests": p.quota,
                        "quota_period": p.period_name(),
                    })
                })
                .collect(),
        );
    }
    if !api.response.error_codes.is_empty() {
        op.insert(
            "x-ringway-error-codes".into(),
            Value::Array(
                api.response
                    .error_codes
                    .iter()
                    .map(|e| json!({ "code": e.code, "message": e.message, "description": e.description }))
                    .collect(),
            ),
        );
    }
    op.insert(
        "x-codeSamples".into(),
        json!([{ "lang": "Shell", "label": "curl", "source": curl_as(config, service, api, method) }]),
    );
    Value::Object(op)
}

fn api_description(config: &Config, service: &Service, api: &Api, t: &Template) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !api.description.is_empty() {
        parts.push(api.description.clone());
    }
    let tier = match api.path.tier() {
        crate::router::Tier::Exact => "exact match".to_string(),
        crate::router::Tier::PriorityPrefix => {
            "priority prefix: every path starting with it (beats regex paths)".to_string()
        }
        crate::router::Tier::Prefix => {
            "prefix: every path starting with it, by characters".to_string()
        }
        crate::router::Tier::Regex if t.catch_all.is_some() => {
            format!(
                "regex: any path the regex matches; `{{{}}}` stands for the rest of the path",
                t.catch_all.as_deref().unwrap_or("path")
            )
        }
        crate::router::Tier::Regex => {
            "path parameters (a parameter may span several segments)".to_string()
        }
    };
    parts.push(format!("Path `{}` — {tier}.", api.path_source));
    if is_prefix(api) {
        parts.push("The rest of the path after the prefix is passed on to the backend.".into());
    }
    if api.methods.is_any() {
        parts.push("Method `ANY`: every method is accepted (an API with the exact method on the same path wins).".into());
    }
    if api.frontend_type == FrontendType::Ws {
        parts.push("WebSocket API: see `x-ringway-websocket`.".into());
    }
    if api.cors {
        parts.push(format!("CORS: {CORS_HOWTO}"));
    }
    if let BackendTarget::Vpc { .. } = api.backend.target {
        parts.push(format!(
            "The backend has {} ms to answer (504 after).",
            api.backend.timeout.as_millis()
        ));
    }
    parts.extend(traffic_words(config, service, api));
    parts.join("\n\n")
}

/// The API's usage plans and limits in words (see `x-ringway-usage-plans` and
/// `x-ringway-limits`), and what its answers say about them.
fn traffic_words(config: &Config, service: &Service, api: &Api) -> Vec<String> {
    let mut parts = Vec::new();
    let plans = api_plans(config, service, api);
    if !plans.is_empty() {
        let each: Vec<String> = plans.iter().map(|p| plan_words(p)).collect();
        parts.push(format!(
            "Usage plans: a caller's SecretId must be bound to one of these plans (403 otherwise); each plan counts each SecretId on its own: {}.",
            each.join("; ")
        ));
    }
    let limits = api_limits(config, api);
    if !limits.is_empty() {
        let each: Vec<String> = limits.iter().map(|l| limit_words(l)).collect();
        parts.push(format!("Rate limits: {}.", each.join("; ")));
    }
    if !parts.is_empty() {
        parts.push(RATE_LIMIT_HOWTO.into());
    }
    parts
}

fn schema(p: &Param) -> Value {
    let mut s = match p.data_type {
        DataType::String => json!({ "type": "string" }),
        DataType::Int => json!({ "type": "integer", "format": "int32" }),
        DataType::Long => json!({ "type": "integer", "format": "int64" }),
        DataType::Float => json!({ "type": "number", "format": "float" }),
        DataType::Double => json!({ "type": "number", "format": "double" }),
        DataType::Boolean => json!({ "type": "boolean" }),
    };
    if let Some(d) = &p.default {
        s["default"] = typed_value(p.data_type, d);
    }
    s
}

fn parameter(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": location_name(p.location),
        "required": p.required || p.location == Location::Path,
        "schema": schema(p),
        "x-ringway-type": data_type_name(p.data_type),
    });
    if !p.description.is_empty() {
        v["description"] = json!(p.description);
    }
    if let Some(s) = &p.sample {
        v["example"] = typed_value(p.data_type, s);
    }
    if p.backend_name.is_some() || p.backend_location.is_some() {
        v["x-ringway-backend"] = json!({
            "name": p.backend_name.as_deref().unwrap_or(&p.name),
            "in": location_name(p.backend_location.unwrap_or(p.location)),
        });
    }
    v
}

fn parameters(api: &Api, t: &Template) -> Vec<Value> {
    let mut out: Vec<Value> = api
        .params
        .iter()
        .filter(|p| p.location != Location::Path || t.catch_all.is_none())
        .map(parameter)
        .collect();
    if let Some(name) = &t.catch_all {
        let captures: Vec<Value> = api
            .params
            .iter()
            .filter(|p| p.location == Location::Path)
            .map(parameter)
            .collect();
        out.insert(
            0,
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": format!("The rest of the path: together with the part before it, it must match `{}`.", api.path_source),
                "schema": { "type": "string" },
                "x-ringway-path-captures": captures,
            }),
        );
    }
    out
}

/// The headers an answer of the API with `status` carries: `X-Api-RequestId`, the CORS
/// headers of a CORS API, and for an API under a plan or limit (`rate`) the `RateLimit`
/// headers on every answer that can come after the traffic stage (not a 401 or a 426),
/// with `Retry-After` on a 429.
fn response_headers(api: &Api, rate: bool, status: &str) -> Value {
    let mut h = json!({ "X-Api-RequestId": { "$ref": "#/components/headers/X-Api-RequestId" } });
    if api.cors {
        for name in [
            "Access-Control-Allow-Origin",
            "Access-Control-Expose-Headers",
        ] {
            h[name] = json!({ "$ref": format!("#/components/headers/{name}") });
        }
    }
    if rate && !matches!(status, "401" | "426") {
        for name in ["RateLimit-Policy", "RateLimit"] {
            h[name] = json!({ "$ref": format!("#/components/headers/{name}") });
        }
        if status == "429" {
            h["Retry-After"] = json!({ "$ref": "#/components/headers/Retry-After" });
        }
    }
    h
}

/// What the 429 and 403 of an API under traffic control say besides the table's words.
fn traffic_error_words(config: &Config, service: &Service, api: &Api, status: u16) -> String {
    let plans = api_plans(config, service, api);
    match status {
        429 => {
            let mut messages = Vec::new();
            if !api.limits.is_empty() || plans.iter().any(|p| p.rate.is_some()) {
                messages.push(format!("`{MSG_RATE_LIMITED}` over a rate"));
            }
            let quotas: Vec<_> = plans.iter().filter(|p| p.quota.is_some()).collect();
            if !quotas.is_empty() {
                messages.push(format!("`{MSG_QUOTA_EXCEEDED}` over a quota"));
            }
            let total = quotas.iter().any(|p| p.period_name() == "total");
            format!(
                " Message: {}. `Retry-After` says in how many seconds a retry can pass{}; `RateLimit-Policy` and `RateLimit` name the policy that refused.",
                messages.join(", or "),
                if total {
                    " (3600 for a `total` quota, which no wait refills)"
                } else {
                    ""
                }
            )
        }
        403 if !plans.is_empty() => {
            format!(" A caller whose SecretId no usage plan binds gets `{MSG_NO_USAGE_PLAN}`")
        }
        _ => String::new(),
    }
}

fn responses(config: &Config, service: &Service, api: &Api, method: &str) -> Value {
    let rate = under_traffic(config, service, api);
    let mut out = Map::new();
    let kind = api.response.kind;
    let (status, description, content) = match (&api.backend.target, api.frontend_type) {
        (_, FrontendType::Ws) => (
            101,
            "Switching Protocols: the WebSocket tunnel to the backend starts. Any other answer of the backend is passed through and no tunnel starts.".to_string(),
            None,
        ),
        (BackendTarget::Mock { status, body, content_type }, _) => {
            let sample = api.response.success_sample.as_deref().unwrap_or(body);
            let mt = if api.response.success_sample.is_some() { media_type(kind) } else { content_type.as_str() };
            let example = if mt.contains("json") { sample_value(crate::config::ResponseType::Json, sample) } else { json!(sample) };
            (*status, "The answer (made by the gateway: a mock backend).".to_string(), Some((mt.to_string(), example)))
        }
        (BackendTarget::Vpc { .. }, _) => (
            200,
            "Success: the backend's answer, passed through unchanged.".to_string(),
            api.response
                .success_sample
                .as_deref()
                .map(|s| (media_type(kind).to_string(), sample_value(kind, s))),
        ),
    };
    let status = status.to_string();
    let mut success =
        json!({ "description": description, "headers": response_headers(api, rate, &status) });
    if let Some((mt, example)) = content {
        success["content"] = json!({ mt: { "example": example } });
    }
    out.insert(status, success);

    let codes = &api.response.error_codes;
    if api.response.failure_sample.is_some() || !codes.is_empty() {
        let mut d = "Failure: the backend's error answer, passed through unchanged.".to_string();
        if !codes.is_empty() {
            d.push_str("\n\n| code | message | description |\n|---|---|---|\n");
            for e in codes {
                d.push_str(&format!(
                    "| {} | {} | {} |\n",
                    e.code,
                    md_cell(&e.message),
                    md_cell(&e.description)
                ));
            }
        }
        let mut failure =
            json!({ "description": d, "headers": response_headers(api, rate, "default") });
        if let Some(s) = &api.response.failure_sample {
            failure["content"] = json!({ media_type(kind): { "example": sample_value(kind, s) } });
        }
        out.insert("default".into(), failure);
    }

    for row in api_gateway_errors(service, api, method) {
        let example = api_error_example(row, config, service, api);
        let status = row.status.to_string();
        let more = traffic_error_words(config, service, api, row.status);
        let headers = response_headers(api, rate, &status);
        let entry = out.entry(status).or_insert_with(|| {
            json!({
                "description": format!("Gateway: {}.{more}", row.when),
                "headers": headers,
                "content": { "application/json": {
                    "schema": { "$ref": "#/components/schemas/GatewayError" },
                    "example": { "message": example },
                } },
            })
        });
        // A mock answering with a gateway status: say both.
        if let Some(d) = entry.get("description").and_then(Value::as_str)
            && !d.starts_with("Gateway:")
        {
            entry["description"] = json!(format!("{d} Or the gateway: {}.", row.when));
        }
    }
    Value::Object(out)
}

/// Text for a Markdown table cell.
fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docs::tests::config;

    const RICH: &str = r#"
[server]
listen_http = ["0.0.0.0:8080"]
admin_listen = "off"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9"
[[services]]
name = "users"
description = "User accounts"
hosts = ["api.example.com"]
[[services.apis]]
name = "get-user"
path = "/user/{id}"
auth = "key_pair"
cors = true
description = "Read one user"
[[services.apis.params]]
name = "id"
location = "path"
data_type = "int"
sample = "42"
description = "User id"
backend_name = "uid"
backend_location = "query"
[[services.apis.params]]
name = "verbose"
location = "query"
data_type = "boolean"
default = "false"
[services.apis.backend]
upstream = "u"
path = "/internal/{id}"
[services.apis.response]
success_sample = '{"id":42}'
failure_sample = '{"error":"nope"}'
[[services.apis.response.error_codes]]
code = 1001
message = "UserNotFound"
description = "No | such user"
[[services.apis]]
name = "exact"
path = "=/user"
method = "POST"
[services.apis.backend]
type = "mock"
mock_status = 201
mock_body = '{"made":true}'
[[services.apis]]
name = "prefix"
path = "^~/user"
method = "POST"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "any"
path = "^~/user"
method = "ANY"
[services.apis.backend]
type = "mock"
[[key_pairs]]
secret_id = "AKIDdocs0001"
secret_key = "never-in-the-docs-123"
services = ["users"]
"#;

    fn doc() -> (Config, Value) {
        let cfg = config(RICH);
        let doc = openapi(&cfg, &cfg.services[0]);
        (cfg, doc)
    }

    #[test]
    fn info_servers_and_security() {
        let (_, doc) = doc();
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["info"]["title"], "users");
        assert!(
            doc["info"]["description"]
                .as_str()
                .unwrap()
                .starts_with("User accounts")
        );
        assert_eq!(
            doc["servers"],
            json!([{ "url": "http://api.example.com:8080" }])
        );
        let kp = &doc["components"]["securitySchemes"]["keyPair"];
        assert_eq!(
            (&kp["type"], &kp["in"], &kp["name"]),
            (&json!("apiKey"), &json!("header"), &json!("Authorization"))
        );
        assert!(
            kp["description"]
                .as_str()
                .unwrap()
                .contains("lowercase(name)")
        );
        assert!(
            doc["components"]["securitySchemes"]
                .get("oauth2Jwt")
                .is_none()
        );
        assert_eq!(
            doc["x-ringway-gateway-errors"].as_array().map(Vec::len),
            Some(13)
        );
        // No traffic control here: no RateLimit headers, no 429.
        assert!(doc["components"]["headers"].get("RateLimit").is_none());
        let op = &doc["paths"]["/user/{id}"]["get"];
        assert!(op["responses"].get("429").is_none());
        assert!(op.get("x-ringway-limits").is_none());
        assert!(op.get("x-ringway-usage-plans").is_none());
        let text = doc.to_string();
        assert!(!text.contains("never-in-the-docs"), "a secret leaked");
        assert!(!text.contains("127.0.0.1:9"), "a backend address leaked");
    }

    #[test]
    fn operation_with_params_samples_and_error_codes() {
        let (_, doc) = doc();
        let op = &doc["paths"]["/user/{id}"]["get"];
        assert_eq!(op["operationId"], "get-user");
        assert_eq!(op["x-ringway-match"], "regex");
        assert_eq!(op["x-ringway-path"], "/user/{id}");
        assert_eq!(op["security"], json!([{ "keyPair": [] }]));
        assert_eq!(
            op["parameters"][0],
            json!({
                "name": "id", "in": "path", "required": true,
                "schema": { "type": "integer", "format": "int32" },
                "x-ringway-type": "int", "description": "User id", "example": 42,
                "x-ringway-backend": { "name": "uid", "in": "query" },
            })
        );
        assert_eq!(
            op["parameters"][1]["schema"],
            json!({ "type": "boolean", "default": false })
        );
        assert_eq!(op["parameters"][1]["required"], false);
        let r = &op["responses"];
        assert_eq!(
            r["200"]["content"]["application/json"]["example"],
            json!({ "id": 42 })
        );
        assert_eq!(
            r["default"]["content"]["application/json"]["example"],
            json!({ "error": "nope" })
        );
        let d = r["default"]["description"].as_str().unwrap();
        assert!(
            d.contains("| 1001 | UserNotFound | No \\| such user |"),
            "{d}"
        );
        assert_eq!(op["x-ringway-error-codes"][0]["code"], 1001);
        assert_eq!(
            r["401"]["content"]["application/json"]["example"]["message"],
            "HMAC signature does not match"
        );
        assert!(r.get("403").is_none(), "a path param is never missing");
        assert!(r.get("502").is_some() && r.get("504").is_some());
        assert!(
            r["200"]["headers"]
                .get("Access-Control-Allow-Origin")
                .is_some()
        );
        assert!(op.get("requestBody").is_none());
        assert!(
            op["x-codeSamples"][0]["source"]
                .as_str()
                .unwrap()
                .contains("/user/42")
        );
    }

    #[test]
    fn methods_any_and_collisions() {
        let (_, doc) = doc();
        let paths = doc["paths"].as_object().unwrap();
        let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
        assert_eq!(keys, ["/user/{id}", "/user", "/user#prefix"]);
        let user = paths["/user"].as_object().unwrap();
        let methods: Vec<&str> = user.keys().map(String::as_str).collect();
        assert_eq!(
            methods,
            ["post", "get", "put", "delete", "head", "patch", "options"]
        );
        assert_eq!(user["post"]["operationId"], "exact");
        assert_eq!(user["post"]["x-ringway-match"], "exact");
        assert_eq!(
            user["post"]["responses"]["201"]["content"]["application/json"]["example"],
            json!({ "made": true })
        );
        assert!(
            user["post"]["requestBody"]["description"]
                .as_str()
                .unwrap()
                .contains("16777216 bytes")
        );
        assert_eq!(user["get"]["operationId"], "any.get");
        assert_eq!(user["get"]["x-ringway-method"], "ANY");
        assert_eq!(user["get"]["x-ringway-match"], "priority_prefix");
        assert_eq!(paths["/user#prefix"]["post"]["x-ringway-path"], "^~/user");
    }

    #[test]
    fn oauth2_schemes_by_token_location() {
        let jwk = include_str!("../../conf/demo/jwt-demo.jwk.json").trim();
        for (place, want) in [
            (
                "header",
                json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }),
            ),
            (
                "cookie",
                json!({ "type": "apiKey", "in": "cookie", "name": "tok" }),
            ),
            (
                "query",
                json!({ "type": "apiKey", "in": "query", "name": "tok" }),
            ),
        ] {
            let cfg = config(&format!(
                "[[services]]\nname = \"s\"\n[services.oauth2]\npublic_key = '{jwk}'\ntoken_location = \"{place}\"\ntoken_name = \"tok\"\n[[services.apis]]\nname = \"me\"\npath = \"=/me\"\nauth = \"oauth2\"\n[services.apis.backend]\ntype = \"mock\"\n"
            ));
            let doc = openapi(&cfg, &cfg.services[0]);
            let mut scheme = doc["components"]["securitySchemes"]["oauth2Jwt"].clone();
            assert!(
                scheme["description"].as_str().unwrap().contains("RS256"),
                "{place}"
            );
            scheme.as_object_mut().unwrap().remove("description");
            assert_eq!(scheme, want, "{place}");
            let op = &doc["paths"]["/me"]["get"];
            assert_eq!(op["security"], json!([{ "oauth2Jwt": [] }]));
            assert_eq!(
                op["responses"]["401"]["content"]["application/json"]["example"]["message"],
                "Oauth miss Oauth id_token"
            );
        }
    }

    #[test]
    fn websocket_and_regex_fallback() {
        let cfg = config(
            r#"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9"
[[services]]
name = "s"
[[services.apis]]
name = "chat"
frontend_type = "ws"
path = "=/chat"
[services.apis.backend]
upstream = "u"
path = "/ws"
[[services.apis]]
name = "img"
path = '~* ^/img/(?P<name>\w+)\.(png|gif)$'
[[services.apis.params]]
name = "name"
location = "path"
description = "Image name"
[services.apis.backend]
type = "mock"
mock_status = 400
mock_body = "none"
mock_content_type = "text/plain"
"#,
        );
        let doc = openapi(&cfg, &cfg.services[0]);
        let chat = &doc["paths"]["/chat"]["get"];
        assert_eq!(chat["x-ringway-websocket"]["upgrade"], "websocket");
        assert!(chat["responses"]["101"].is_object());
        // The `|` leaves no safe literal prefix: the whole path is the catch-all.
        let img = &doc["paths"]["/{path}"]["get"];
        assert_eq!(img["x-ringway-match"], "regex");
        assert_eq!(img["parameters"][0]["name"], "path");
        assert_eq!(
            img["parameters"][0]["x-ringway-path-captures"][0]["description"],
            "Image name"
        );
        assert_eq!(img["parameters"].as_array().map(Vec::len), Some(1));
        let r400 = &img["responses"]["400"];
        assert_eq!(r400["content"]["text/plain"]["example"], "none");
        assert!(
            r400["description"]
                .as_str()
                .unwrap()
                .contains("Or the gateway"),
            "{r400}"
        );
    }

    const TRAFFIC: &str = r#"
[[services]]
name = "billing"
[[services.limits]]
key = "api"
requests = 600
per = "minute"
[[services.apis]]
name = "invoices"
path = "=/invoices"
auth = "key_pair"
[[services.apis.limits]]
key = "ip"
requests = 10
per = "second"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "status"
path = "=/status"
[services.apis.backend]
type = "mock"
[[services]]
name = "reports"
[[services.apis]]
name = "report"
path = "=/report"
auth = "key_pair"
[services.apis.backend]
type = "mock"
[[key_pairs]]
secret_id = "AKIDplan0001"
secret_key = "plan-secret-0001"
services = ["billing", "reports"]
[[usage_plans]]
name = "gold"
max_requests_per_second = 100
max_requests = 1000000
quota_period = "month"
secret_ids = ["AKIDplan0001"]
services = ["billing"]
[[usage_plans]]
name = "prepaid"
max_requests = 5000
secret_ids = ["AKIDplan0001"]
services = ["reports"]
"#;

    #[test]
    fn limits_and_usage_plans() {
        let cfg = config(TRAFFIC);
        let doc = openapi(&cfg, &cfg.services[0]);
        let op = &doc["paths"]["/invoices"]["get"];
        assert_eq!(
            op["x-ringway-limits"],
            json!([
                { "name": "limit-1", "key": "api", "requests": 600, "per": "minute" },
                { "name": "limit-2", "key": "ip", "requests": 10, "per": "second" },
            ])
        );
        assert_eq!(
            op["x-ringway-usage-plans"],
            json!([{
                "name": "gold", "max_requests_per_second": 100, "max_requests": 1000000,
                "quota_period": "month",
            }])
        );
        let d = op["description"].as_str().unwrap();
        for want in [
            "`gold`: 100 requests per second, 1000000 requests per calendar month (UTC)",
            "`limit-2`: 10 requests per second per client IP address",
            "`RateLimit-Policy:",
        ] {
            assert!(d.contains(want), "{want:?} not in {d}");
        }
        let r = &op["responses"];
        let msg =
            |status: &str| r[status]["content"]["application/json"]["example"]["message"].clone();
        assert_eq!(msg("429"), "API rate limit exceeded.");
        assert_eq!(msg("403"), "Found no validate usage plan.");
        let d429 = r["429"]["description"].as_str().unwrap();
        assert!(
            d429.contains(
                "Message: `API rate limit exceeded.` over a rate, or `API quota exceeded.` over a quota."
            ),
            "{d429}"
        );
        for h in ["RateLimit-Policy", "RateLimit", "Retry-After"] {
            assert_eq!(
                r["429"]["headers"][h]["$ref"],
                format!("#/components/headers/{h}")
            );
            assert!(doc["components"]["headers"][h].is_object(), "{h}");
        }
        assert!(r["200"]["headers"].get("RateLimit").is_some());
        assert!(r["200"]["headers"].get("Retry-After").is_none());
        // A 401 comes before the traffic stage: no RateLimit headers on it.
        assert!(r["401"]["headers"].get("RateLimit").is_none());

        // Plans bind SecretIds: an API without key-pair auth is under the limits only.
        let status = &doc["paths"]["/status"]["get"];
        assert!(status.get("x-ringway-usage-plans").is_none());
        assert_eq!(status["x-ringway-limits"][0]["name"], "limit-1");
        assert!(status["responses"].get("403").is_none());
        assert_eq!(
            status["responses"]["429"]["content"]["application/json"]["example"]["message"],
            "API rate limit exceeded."
        );
        assert!(
            !doc.to_string().contains("AKIDplan0001"),
            "a SecretId leaked"
        );

        // A quota-only plan: the 429 is the quota's.
        let doc = openapi(&cfg, &cfg.services[1]);
        let op = &doc["paths"]["/report"]["get"];
        assert!(op.get("x-ringway-limits").is_none());
        assert_eq!(
            op["x-ringway-usage-plans"],
            json!([{
                "name": "prepaid", "max_requests_per_second": null, "max_requests": 5000,
                "quota_period": "total",
            }])
        );
        assert_eq!(
            op["responses"]["429"]["content"]["application/json"]["example"]["message"],
            "API quota exceeded."
        );
        let d429 = op["responses"]["429"]["description"].as_str().unwrap();
        assert!(!d429.contains("rate limit exceeded"), "{d429}");
        assert!(d429.contains("3600 for a `total` quota"), "{d429}");
    }
}

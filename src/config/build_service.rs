//! Services and their APIs: frontend, parameters, backend, response, OAuth 2.0 key.
//!
//! Part of the single build pass of [`super::build`]; every check here records its error
//! against the exact key and goes on.

use std::collections::HashMap;
use std::sync::Arc;

use super::build::{Ctx, host_patterns, key};
use super::build_traffic::{LimitsAt, build_limits};
use super::file::*;
use super::model::*;
use crate::gateway::ip_control::IpNet;
use crate::router::{BackendPath, MethodSet, PathPattern};

/// Longest API name (SPEC §1).
pub const MAX_API_NAME_CHARS: usize = 60;
pub const DEFAULT_BACKEND_TIMEOUT_MS: u64 = 15_000;
pub const DEFAULT_TOKEN_NAME: &str = "id_token";
pub const DEFAULT_MOCK_CONTENT_TYPE: &str = "application/json";

/// Headers a constant may not set: the gateway owns framing and connection management.
const RESERVED_HEADERS: [&str; 10] = [
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "x-api-requestid",
    "expect",
];

/// Headers the gateway sets itself after the client's (SPEC §3 "Headers added"). A param
/// value — the client's — is never placed into these nor into [`RESERVED_HEADERS`]: it would
/// forge the caller's identity or change the framing the gateway relays the body with.
const GATEWAY_SET_HEADERS: [&str; 5] = [
    "x-forwarded-for",
    "x-real-ip",
    "x-forwarded-proto",
    "x-api-secretid",
    "x-api-subject",
];

/// The caller's identity, set by the auth stage only: not a constant either.
const IDENTITY_HEADERS: [&str; 2] = ["x-api-secretid", "x-api-subject"];

const LOCATIONS: [(&str, Location); 3] = [
    ("header", Location::Header),
    ("query", Location::Query),
    ("path", Location::Path),
];
const DATA_TYPES: [(&str, DataType); 6] = [
    ("string", DataType::String),
    ("int", DataType::Int),
    ("long", DataType::Long),
    ("float", DataType::Float),
    ("double", DataType::Double),
    ("boolean", DataType::Boolean),
];

pub(super) fn build_services(
    cx: &mut Ctx,
    services: &[FileService],
    upstreams: &HashMap<&str, usize>,
    limits: &mut Vec<Limit>,
) -> Vec<Service> {
    let mut out: Vec<Service> = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let k = format!("services[{i}]");
        let name = cx
            .name(&key(&k, "name"), s.name.as_ref())
            .unwrap_or_default();
        if !name.is_empty() && out.iter().any(|o| o.name == name) {
            cx.err(
                key(&k, "name"),
                format!("service \"{name}\" is defined twice"),
            );
        }
        let hosts = host_patterns(
            cx,
            &key(&k, "hosts"),
            s.hosts.as_deref().unwrap_or_default(),
        );
        let protocol = cx.choice(
            &key(&k, "protocol"),
            s.protocol.as_deref(),
            Protocol::Both,
            &[
                ("http", Protocol::Http),
                ("https", Protocol::Https),
                ("http&https", Protocol::Both),
            ],
        );
        let oauth2 = s
            .oauth2
            .as_ref()
            .and_then(|o| build_oauth2(cx, &key(&k, "oauth2"), o));
        let ip_control = s
            .ip_control
            .as_ref()
            .and_then(|c| build_ip_control(cx, &key(&k, "ip_control"), c));
        let service_limits = build_limits(
            cx,
            &LimitsAt {
                key: &key(&k, "limits"),
                service: i,
                service_name: name,
                api: None,
                before: 0,
            },
            &s.limits,
            limits,
        );
        let mut apis: Vec<Api> = Vec::new();
        for (j, a) in s.apis.iter().enumerate() {
            let ak = format!("{k}.apis[{j}]");
            let api = build_api(cx, &ak, a, upstreams, ip_control.as_ref());
            if let Some(mut api) = api {
                let own = build_limits(
                    cx,
                    &LimitsAt {
                        key: &key(&ak, "limits"),
                        service: i,
                        service_name: name,
                        api: Some((apis.len(), &api.name)),
                        before: s.limits.len(),
                    },
                    &a.limits,
                    limits,
                );
                api.limits = service_limits.iter().copied().chain(own).collect();
                if apis.iter().any(|o| o.name == api.name) {
                    cx.err(
                        key(&ak, "name"),
                        format!(
                            "api \"{}\" is defined twice in service \"{name}\"",
                            api.name
                        ),
                    );
                }
                if api.auth == Auth::OAuth2 && s.oauth2.is_none() {
                    cx.err(
                        key(&ak, "auth"),
                        "is \"oauth2\" but the service has no [services.oauth2] key",
                    );
                }
                apis.push(api);
            }
        }
        out.push(Service {
            name: name.to_string(),
            description: s.description.clone().unwrap_or_default(),
            hosts,
            protocol,
            apis,
            oauth2,
            plans: Vec::new(),
        });
    }
    out
}

/// One API; `None` only when its path is unusable (the rest is still checked).
/// `service_ip_control` applies unless the API has its own.
fn build_api(
    cx: &mut Ctx,
    k: &str,
    a: &FileApi,
    upstreams: &HashMap<&str, usize>,
    service_ip_control: Option<&Arc<IpControl>>,
) -> Option<Api> {
    let name = cx
        .name(&key(k, "name"), a.name.as_ref())
        .unwrap_or_default();
    let chars = name.chars().count();
    if chars > MAX_API_NAME_CHARS {
        cx.err(
            key(k, "name"),
            format!("has {chars} characters; at most {MAX_API_NAME_CHARS} are allowed"),
        );
    }
    let frontend_type = cx.choice(
        &key(k, "frontend_type"),
        a.frontend_type.as_deref(),
        FrontendType::Http,
        &[("http", FrontendType::Http), ("ws", FrontendType::Ws)],
    );
    let methods = match a.method.as_deref() {
        None => MethodSet::GET,
        Some(m) => MethodSet::from_config(m).unwrap_or_else(|| {
            cx.err(
                key(k, "method"),
                format!("\"{m}\" is not one of {}", MethodSet::config_values()),
            );
            MethodSet::GET
        }),
    };
    if frontend_type == FrontendType::Ws && methods != MethodSet::GET {
        cx.err(
            key(k, "method"),
            "a WebSocket API must use GET (the Upgrade request is a GET)",
        );
    }
    let auth = cx.choice(
        &key(k, "auth"),
        a.auth.as_deref(),
        Auth::None,
        &[
            ("none", Auth::None),
            ("key_pair", Auth::KeyPair),
            ("oauth2", Auth::OAuth2),
        ],
    );
    let path_source = cx.require(&key(k, "path"), a.path.as_ref());
    let path = path_source.and_then(|p| {
        PathPattern::parse(p)
            .map_err(|e| cx.err(key(k, "path"), e))
            .ok()
    });
    let params = build_params(cx, k, &a.params, path.as_ref());
    let backend = match cx.require(&key(k, "backend"), a.backend.as_ref()) {
        Some(b) => build_backend(cx, &key(k, "backend"), b, upstreams, path.as_ref()),
        None => None,
    };
    if let Some(b) = &backend
        && frontend_type == FrontendType::Ws
        && matches!(b.target, BackendTarget::Mock { .. })
    {
        cx.err(
            key(k, "backend.type"),
            "a WebSocket API needs a \"vpc\" backend to tunnel to",
        );
    }
    let response = build_response(cx, &key(k, "response"), a.response.as_ref());
    let ip_control = match &a.ip_control {
        Some(c) => build_ip_control(cx, &key(k, "ip_control"), c),
        None => service_ip_control.cloned(),
    };
    Some(Api {
        name: name.to_string(),
        description: a.description.clone().unwrap_or_default(),
        frontend_type,
        path_source: path_source?.clone(),
        path: path?,
        methods,
        auth,
        cors: a.cors.unwrap_or(false),
        params,
        backend: backend?,
        response,
        ip_control,
        limits: Vec::new(),
    })
}

/// An `ip_control` table (SPEC §8), compiled for the data path.
fn build_ip_control(cx: &mut Ctx, k: &str, c: &FileIpControl) -> Option<Arc<IpControl>> {
    // Required: a default would turn a forgotten line into the opposite policy.
    let mode = cx
        .require(&key(k, "mode"), c.mode.as_deref())
        .and_then(|m| match m {
            "allow" => Some(IpMode::Allow),
            "deny" => Some(IpMode::Deny),
            _ => {
                cx.err(
                    key(k, "mode"),
                    format!("\"{m}\" is not one of \"allow\" | \"deny\""),
                );
                None
            }
        });
    let ips = cx.require(&key(k, "ips"), c.ips.as_ref());
    if ips.is_some_and(|ips| ips.is_empty()) {
        cx.err(
            key(k, "ips"),
            "is empty: list at least one address or CIDR range (or remove the ip_control table)",
        );
    }
    let mut nets = Vec::new();
    let mut bad = false;
    for (i, entry) in ips.into_iter().flatten().enumerate() {
        match IpNet::parse(entry) {
            Ok(net) => nets.push(net),
            Err(e) => {
                cx.err(format!("{k}.ips[{i}]"), e);
                bad = true;
            }
        }
    }
    if bad || nets.is_empty() {
        return None;
    }
    Some(Arc::new(IpControl::new(mode?, &nets)))
}

fn build_params(
    cx: &mut Ctx,
    k: &str,
    params: &[FileParam],
    path: Option<&PathPattern>,
) -> Vec<Param> {
    let mut out: Vec<Param> = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let pk = format!("{k}.params[{i}]");
        let name = cx
            .name(&key(&pk, "name"), p.name.as_ref())
            .unwrap_or_default()
            .to_string();
        let location = match cx.require(&key(&pk, "location"), p.location.as_deref()) {
            Some(l) => cx.choice(&key(&pk, "location"), Some(l), Location::Query, &LOCATIONS),
            None => Location::Query,
        };
        if location == Location::Header && !name.is_empty() && !is_token(&name) {
            cx.err(
                key(&pk, "name"),
                format!("\"{name}\" is not a valid header name"),
            );
        }
        if out
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&name) && o.location == location)
        {
            cx.err(
                key(&pk, "name"),
                format!("param \"{name}\" is declared twice for this location"),
            );
        }
        let data_type = cx.choice(
            &key(&pk, "data_type"),
            p.data_type.as_deref(),
            DataType::String,
            &DATA_TYPES,
        );
        let required = p.required.unwrap_or(false);
        let default = p.default.clone().map(Scalar::into_string);
        let sample = p.sample.clone().map(Scalar::into_string);
        for (field, v) in [("default", &default), ("sample", &sample)] {
            if let Some(v) = v.as_deref().filter(|v| !data_type.accepts(v)) {
                cx.err(
                    key(&pk, field),
                    format!(
                        "\"{v}\" is not a valid {}",
                        p.data_type.as_deref().unwrap_or("string")
                    ),
                );
            }
        }
        if required && default.is_some() {
            cx.err(
                key(&pk, "default"),
                "a required param never uses its default; drop one of them",
            );
        }
        if location == Location::Path && default.is_some() {
            cx.err(
                key(&pk, "default"),
                "a path param is always present when the path matches; it cannot have a default",
            );
        }
        if location == Location::Path
            && path.is_some_and(|pp| !pp.param_names().iter().any(|n| **n == *name))
            && !name.is_empty()
        {
            cx.err(key(&pk, "name"), format!("path param \"{name}\" does not appear in the path as {{{name}}} (or a named regex group)"));
        }
        let backend_location = p.backend_location.as_deref().map(|l| {
            cx.choice(
                &key(&pk, "backend_location"),
                Some(l),
                Location::Query,
                &LOCATIONS[..2],
            )
        });
        if let Some(bn) = p.backend_name.as_deref() {
            if bn.is_empty() {
                cx.err(key(&pk, "backend_name"), "must not be empty");
            } else if backend_location.unwrap_or(location) == Location::Header && !is_token(bn) {
                cx.err(
                    key(&pk, "backend_name"),
                    format!("\"{bn}\" is not a valid header name"),
                );
            }
        }
        // A value is placed at the backend when it moves or when a default fills in.
        let target = p
            .backend_name
            .as_deref()
            .unwrap_or(&name)
            .to_ascii_lowercase();
        if backend_location.unwrap_or(location) == Location::Header
            && (p.backend_name.is_some() || p.backend_location.is_some() || default.is_some())
            && (RESERVED_HEADERS.contains(&target.as_str())
                || GATEWAY_SET_HEADERS.contains(&target.as_str()))
        {
            let field = if p.backend_name.is_some() {
                "backend_name"
            } else {
                "name"
            };
            cx.err(
                key(&pk, field),
                format!(
                    "header \"{target}\" is managed by the gateway; a param cannot be sent in it"
                ),
            );
        }
        if backend_location.unwrap_or(location) == Location::Header
            && let Some(d) = default.as_deref()
            && !header_safe(d)
        {
            cx.err(
                key(&pk, "default"),
                "is sent as a header: it must not hold control characters or start or end with a space",
            );
        }
        if location == Location::Path && p.backend_name.is_some() && backend_location.is_none() {
            cx.err(
                key(&pk, "backend_location"),
                "a renamed path param needs a backend_location (\"header\" or \"query\")",
            );
        }
        out.push(Param {
            name,
            location,
            data_type,
            required,
            default,
            sample,
            description: p.description.clone().unwrap_or_default(),
            backend_name: p.backend_name.clone(),
            backend_location,
        });
    }
    if let Some(pp) = path {
        for n in pp.param_names() {
            if !out
                .iter()
                .any(|p| p.location == Location::Path && p.name == **n)
            {
                cx.err(
                    key(k, "path"),
                    format!("{{{n}}} is not declared as a param with location = \"path\""),
                );
            }
        }
    }
    out
}

fn build_backend(
    cx: &mut Ctx,
    k: &str,
    b: &FileBackend,
    upstreams: &HashMap<&str, usize>,
    path: Option<&PathPattern>,
) -> Option<Backend> {
    let kind = cx.choice(
        &key(k, "type"),
        b.kind.as_deref(),
        "vpc",
        &[("vpc", "vpc"), ("mock", "mock")],
    );
    let target = if kind == "vpc" {
        for (field, set) in [
            ("mock_status", b.mock_status.is_some()),
            ("mock_body", b.mock_body.is_some()),
            ("mock_content_type", b.mock_content_type.is_some()),
        ] {
            if set {
                cx.err(key(k, field), "only applies to type = \"mock\"");
            }
        }
        cx.require(&key(k, "path"), b.path.as_ref());
        let up = cx.name(&key(k, "upstream"), b.upstream.as_ref());
        let idx = up.and_then(|u| {
            let idx = upstreams.get(u).copied();
            if idx.is_none() {
                cx.err(
                    key(k, "upstream"),
                    format!("no [[upstreams]] entry is named \"{u}\""),
                );
            }
            idx
        });
        idx.map(|upstream| BackendTarget::Vpc { upstream })
    } else {
        if b.upstream.is_some() {
            cx.err(key(k, "upstream"), "a mock backend has no upstream");
        }
        let status = cx.number(&key(k, "mock_status"), b.mock_status, 200, 100, 599) as u16;
        Some(BackendTarget::Mock {
            status,
            body: b.mock_body.clone().unwrap_or_default(),
            content_type: b
                .mock_content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_MOCK_CONTENT_TYPE.into()),
        })
    };
    let bpath = b.path.as_deref().and_then(|p| {
        BackendPath::parse(p)
            .map_err(|e| cx.err(key(k, "path"), e))
            .ok()
    });
    if let (Some(bp), Some(fp)) = (&bpath, path) {
        for n in bp.param_names() {
            if !fp.param_names().iter().any(|f| **f == *n) {
                cx.err(
                    key(k, "path"),
                    format!("{{{n}}} is not a path parameter of the frontend path"),
                );
            }
        }
    }
    let method = b.method.as_deref().and_then(|m| match MethodSet::from_config(m).filter(|m| !m.is_any()) {
        Some(m) => Some(m),
        None => {
            cx.err(key(k, "method"), format!("\"{m}\" is not a method (GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS); leave it out to use the request's"));
            None
        }
    });
    let timeout = cx.millis(
        &key(k, "timeout_ms"),
        b.timeout_ms,
        DEFAULT_BACKEND_TIMEOUT_MS,
    );
    let mut constants = Vec::new();
    for (i, c) in b.constants.iter().enumerate() {
        let ck = format!("{k}.constants[{i}]");
        let name = cx
            .name(&key(&ck, "name"), c.name.as_ref())
            .unwrap_or_default();
        let location = match cx.require(&key(&ck, "location"), c.location.as_deref()) {
            Some(l) => cx.choice(
                &key(&ck, "location"),
                Some(l),
                Location::Header,
                &LOCATIONS[..2],
            ),
            None => Location::Header,
        };
        if location == Location::Header && !name.is_empty() {
            if !is_token(name) {
                cx.err(
                    key(&ck, "name"),
                    format!("\"{name}\" is not a valid header name"),
                );
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                || IDENTITY_HEADERS.contains(&name.to_ascii_lowercase().as_str())
            {
                cx.err(
                    key(&ck, "name"),
                    format!("header \"{name}\" is managed by the gateway and cannot be a constant"),
                );
            }
        }
        let value = cx
            .require(&key(&ck, "value"), c.value.as_ref())
            .cloned()
            .map(Scalar::into_string)
            .unwrap_or_default();
        if location == Location::Header
            && value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            cx.err(
                key(&ck, "value"),
                "a header value cannot hold control characters",
            );
        }
        constants.push(Constant {
            name: name.to_string(),
            location,
            value,
        });
    }
    Some(Backend {
        target: target?,
        path: bpath,
        method,
        timeout,
        constants,
    })
}

fn build_response(cx: &mut Ctx, k: &str, r: Option<&FileResponse>) -> Response {
    let Some(r) = r else {
        return Response {
            kind: ResponseType::Json,
            success_sample: None,
            failure_sample: None,
            error_codes: Vec::new(),
        };
    };
    let kind = cx.choice(
        &key(k, "type"),
        r.kind.as_deref(),
        ResponseType::Json,
        &[
            ("json", ResponseType::Json),
            ("html", ResponseType::Html),
            ("text", ResponseType::Text),
            ("xml", ResponseType::Xml),
            ("binary", ResponseType::Binary),
        ],
    );
    let mut error_codes: Vec<ErrorCode> = Vec::new();
    for (i, e) in r.error_codes.iter().enumerate() {
        let ek = format!("{k}.error_codes[{i}]");
        let code = cx
            .require(&key(&ek, "code"), e.code.as_ref())
            .copied()
            .unwrap_or_default();
        if error_codes.iter().any(|o| o.code == code) {
            cx.err(
                key(&ek, "code"),
                format!("error code {code} is listed twice"),
            );
        }
        let message = cx
            .name(&key(&ek, "message"), e.message.as_ref())
            .unwrap_or_default()
            .to_string();
        error_codes.push(ErrorCode {
            code,
            message,
            description: e.description.clone().unwrap_or_default(),
        });
    }
    Response {
        kind,
        success_sample: r.success_sample.clone(),
        failure_sample: r.failure_sample.clone(),
        error_codes,
    }
}

fn build_oauth2(cx: &mut Ctx, k: &str, o: &FileOAuth2) -> Option<OAuth2> {
    let (jwk_key, text) = match (&o.public_key, &o.public_key_file) {
        (Some(t), None) => (key(k, "public_key"), t.clone()),
        (None, Some(f)) => {
            match super::read_limited(std::path::Path::new(f), super::MAX_KEY_FILE_BYTES)
                .and_then(|b| String::from_utf8(b).map_err(|_| "it is not UTF-8 text".to_string()))
            {
                Ok(t) => (key(k, "public_key_file"), t),
                Err(e) => {
                    cx.err(key(k, "public_key_file"), format!("cannot read {f}: {e}"));
                    return None;
                }
            }
        }
        (Some(_), Some(_)) => {
            cx.err(k, "give public_key or public_key_file, not both");
            return None;
        }
        (None, None) => {
            cx.err(key(k, "public_key"), "is required (or public_key_file)");
            return None;
        }
    };
    let (public_key, jwt_key) = match check_jwk(&text)
        .and_then(|j| crate::auth::jwt::JwtKey::from_jwk(&j).map(|k| (j, k)))
    {
        Ok(both) => both,
        Err(e) => {
            cx.err(jwk_key, e);
            return None;
        }
    };
    let token_location = cx.choice(
        &key(k, "token_location"),
        o.token_location.as_deref(),
        TokenLocation::Header,
        &[
            ("header", TokenLocation::Header),
            ("cookie", TokenLocation::Cookie),
            ("query", TokenLocation::Query),
        ],
    );
    let token_name = o
        .token_name
        .clone()
        .unwrap_or_else(|| DEFAULT_TOKEN_NAME.into());
    if token_name.is_empty() {
        cx.err(key(k, "token_name"), "must not be empty");
    }
    Some(OAuth2 {
        public_key,
        key: jwt_key,
        token_location,
        token_name,
    })
}

/// A public JWK: RSA (`n`, `e`) or EC (`crv` P-256/P-384, `x`, `y`), members base64url.
fn check_jwk(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("is not a JSON JWK: {e}"))?;
    let serde_json::Value::Object(map) = v else {
        return Err("is not a JSON object (a JWK)".into());
    };
    let member = |m: &str| -> Result<&str, String> {
        let s = map
            .get(m)
            .and_then(|v| v.as_str())
            .ok_or_else(|| format!("JWK has no string member \"{m}\""))?;
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("JWK member \"{m}\" is not base64url"));
        }
        Ok(s)
    };
    match map.get("kty").and_then(|v| v.as_str()) {
        Some("RSA") => {
            member("n")?;
            member("e")?;
        }
        Some("EC") => {
            match map.get("crv").and_then(|v| v.as_str()) {
                Some("P-256" | "P-384") => {}
                other => {
                    return Err(format!(
                        "JWK curve {other:?} is not supported (P-256 or P-384)"
                    ));
                }
            }
            member("x")?;
            member("y")?;
        }
        other => {
            return Err(format!(
                "JWK kty {other:?} is not supported (\"RSA\" or \"EC\")"
            ));
        }
    }
    if map.contains_key("d") {
        return Err("JWK holds a private key (\"d\"); give the public key only".into());
    }
    Ok(map)
}

/// A header value sent as it is: no control byte but HTAB, no leading or trailing SP/HTAB.
fn header_safe(v: &str) -> bool {
    let ws = |c: &u8| *c == b' ' || *c == b'\t';
    let b = v.as_bytes();
    !b.first().is_some_and(ws)
        && !b.last().is_some_and(ws)
        && b.iter().all(|&c| (c >= 0x20 && c != 0x7f) || c == b'\t')
}

/// An HTTP token (RFC 9110 §5.6.2), as header names must be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

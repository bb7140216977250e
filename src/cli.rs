//! The `check`, `route`, `docs` and `reload` commands (SPEC §7), as functions from
//! arguments to `(exit code, stdout, stderr)` so that tests can call them without a process.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::config::{self, Config};
use crate::http::authority::check_host;
use crate::router::target::{normalize_path, parse_target};

/// Exit code when the configuration cannot be loaded (`check` and `route`).
pub const EXIT_CONFIG: i32 = 1;
/// Exit code of `route` when no API matches (or the target, or a path or query param, is bad).
pub const EXIT_NO_ROUTE: i32 = 1;
/// Exit code of `docs` when an output file cannot be written.
pub const EXIT_WRITE: i32 = 1;

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn ok(stdout: String) -> Outcome {
        Outcome {
            code: 0,
            stdout,
            stderr: String::new(),
        }
    }
}

/// `ringway check`: the summary, or every error.
pub fn check(path: &Path) -> Outcome {
    match config::load(path) {
        Ok(cfg) => {
            let mut out = cfg.summary();
            if let Some(line) = traffic_summary(&cfg) {
                out.push('\n');
                out.push_str(&line);
            }
            for note in cfg.not_served_yet() {
                out.push('\n');
                out.push_str(&note);
            }
            Outcome::ok(out)
        }
        Err(errors) => Outcome {
            code: EXIT_CONFIG,
            stdout: String::new(),
            stderr: format!("{errors}\n{}: {} error(s)", path.display(), errors.0.len()),
        },
    }
}

/// The line of `check` after the summary for a configuration with traffic control (SPEC
/// §8): `traffic: store local, 2 usage plans, 3 limits`, the store's settings in brackets
/// (`state_file`; for Redis the URL without its password, the timeout and
/// `on_store_failure`). `None` when the configuration has no plan, no limit and a default
/// `[traffic]`, so that its `check` output is the summary alone.
pub fn traffic_summary(cfg: &Config) -> Option<String> {
    use crate::config::{OnStoreFailure, StoreKind, Traffic};
    let t = &cfg.traffic;
    if cfg.usage_plans.is_empty() && cfg.limits.is_empty() && *t == Traffic::default() {
        return None;
    }
    let store = match t.store {
        StoreKind::Local => match &t.state_file {
            Some(f) => format!("local (state_file {})", f.display()),
            None => "local".to_string(),
        },
        StoreKind::Redis => {
            let url = t
                .redis_url
                .as_deref()
                .and_then(|u| crate::traffic::redis::RedisUrl::parse(u).ok())
                .map_or_else(|| "?".to_string(), |u| u.to_string());
            let on_failure = match t.on_store_failure {
                OnStoreFailure::Local => "local",
                OnStoreFailure::Allow => "allow",
                OnStoreFailure::Deny => "deny",
            };
            format!(
                "redis ({url}, redis_timeout_ms {}, on_store_failure {on_failure})",
                t.redis_timeout.as_millis()
            )
        }
    };
    Some(format!(
        "traffic: store {store}, {} usage plans, {} limits",
        cfg.usage_plans.len(),
        cfg.limits.len()
    ))
}

/// `ringway route`: one JSON line saying which API a request would reach.
pub fn route(path: &Path, host: Option<&str>, method: &str, target: &str) -> Outcome {
    match config::load(path) {
        Ok(cfg) => {
            let (code, line) = route_line(&cfg, host, method, target);
            Outcome {
                code,
                stdout: line.to_string(),
                stderr: String::new(),
            }
        }
        Err(errors) => Outcome {
            code: EXIT_CONFIG,
            stdout: String::new(),
            stderr: errors.to_string(),
        },
    }
}

/// `ringway docs`: writes, under `out`, `index.html`, `index.json`, `<service>.html` and
/// `openapi/<service>.json` for every service (names from [`crate::docs::Layout`]), and
/// prints the path of each file written, one a line.
pub fn docs(path: &Path, out: &Path) -> Outcome {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            return Outcome {
                code: EXIT_CONFIG,
                stdout: String::new(),
                stderr: format!("{errors}\n{}: {} error(s)", path.display(), errors.0.len()),
            };
        }
    };
    let mut written = Vec::new();
    match write_docs(&cfg, out, &mut written) {
        Ok(()) => Outcome::ok(written.join("\n")),
        Err(e) => Outcome {
            code: EXIT_WRITE,
            stdout: written.join("\n"),
            stderr: format!("ringway docs: {e}"),
        },
    }
}

fn write_docs(cfg: &Config, out: &Path, written: &mut Vec<String>) -> Result<(), String> {
    let dir = out.join(crate::docs::Layout::OPENAPI_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (name, text) in crate::docs::files(cfg, "") {
        let file = out.join(&name);
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        written.push(file.display().to_string());
    }
    Ok(())
}

fn failure(status: u16, message: String) -> (i32, Value) {
    (
        EXIT_NO_ROUTE,
        json!({ "status": status, "message": message }),
    )
}

/// The path and query params of the matched API, judged by the gateway's own parameter stage
/// ([`crate::gateway::params`]): the same 400 / 403 and message a request with this target
/// would get. Header params are not judged (`route` is given no headers), and neither are
/// the stages before params on the data path (protocol, WebSocket handshake, auth):
/// `route` says which API a request reaches, not whether its credentials would pass.
fn judge_params(
    api: &crate::config::Api,
    query: Option<&str>,
    path: &str,
    captures: &crate::router::Captures<'_>,
) -> Result<(), crate::error::GatewayError> {
    use crate::config::Location;
    use crate::gateway::params::{ParamInput, ParamValues, apply_where};
    let head = crate::http::head::RequestHead::default();
    let input = ParamInput {
        buf: &[],
        head: &head,
        query,
        path,
        captures,
    };
    let judged = |p: &crate::config::Param| p.location != Location::Header;
    apply_where(&api.params, judged, &input, &mut ParamValues::default())
}

/// The answer of `ringway route` for a loaded configuration (the path normalized by
/// `server.path_normalization`, as on the data path): the API the target reaches,
/// or the 404 / 400 of routing, or the 400 / 403 of its path and query params (see
/// [`judge_params`]).
pub fn route_line(cfg: &Config, host: Option<&str>, method: &str, target: &str) -> (i32, Value) {
    let t = match parse_target(target) {
        Ok(t) => t,
        Err(e) => return failure(400, e.message().to_string()),
    };
    // `--host` is checked as the Host header would be (SPEC §6), even where an absolute-form
    // target's authority replaces it (RFC 9112 §3.2.2), as on the data path.
    if let Some(Err(e)) = host.map(|h| check_host(h.as_bytes())) {
        return failure(400, e.host_message().to_string());
    }
    let host = t.authority.or(host);
    let mut buf = String::new();
    let path = match normalize_path(t.path, cfg.server.path_normalization, &mut buf) {
        Ok(p) => p,
        Err(e) => return failure(400, e.message().to_string()),
    };
    let m = match cfg.routes.route(host, method, path) {
        Ok(m) => m,
        Err(miss) => {
            return failure(404, miss.error(method, path, host.unwrap_or("")).message());
        }
    };
    let service = &cfg.services[m.service];
    let api = &service.apis[m.api];
    if let Err(e) = judge_params(api, t.query, path, &m.captures) {
        return failure(e.status(), e.message());
    }
    let params: Map<String, Value> = m
        .captures
        .iter(path)
        .map(|(n, v)| (n.to_string(), Value::from(v)))
        .collect();
    let backend_path = api.backend.path.as_ref().map(|bp| {
        let mut out = String::new();
        bp.compose(&m, path, &mut out);
        out
    });
    let mut line = json!({
        "service": service.name,
        "api": api.name,
        "tier": m.tier.as_str(),
        "params": params,
        "backend_path": backend_path,
    });
    let policies = policies(cfg, service, api);
    if !policies.is_empty() {
        line["policies"] = Value::Array(policies);
    }
    (0, line)
}

/// The traffic controls a request to `api` meets (SPEC §8), in the order the gateway
/// applies them: `{"ip_control":"allow"|"deny"}`, then for a key-pair API of a service
/// that usage plans name `{"usage_plans":[names]}`, then each limit (the service's first)
/// as `{"name":"limit-1","key":"ip","requests":10,"per":"second"}`. Empty for an API
/// without any; `route` then leaves the field out, so its line stays SPEC §7's.
pub fn policies(
    cfg: &Config,
    service: &crate::config::Service,
    api: &crate::config::Api,
) -> Vec<Value> {
    use crate::config::{Auth, IpMode};
    let mut out = Vec::new();
    if let Some(c) = &api.ip_control {
        let mode = match c.mode {
            IpMode::Allow => "allow",
            IpMode::Deny => "deny",
        };
        out.push(json!({ "ip_control": mode }));
    }
    if api.auth == Auth::KeyPair && !service.plans.is_empty() {
        let names: Vec<&str> = service
            .plans
            .iter()
            .map(|&p| cfg.usage_plans[p].name.as_str())
            .collect();
        out.push(json!({ "usage_plans": names }));
    }
    for &i in &api.limits {
        let l = &cfg.limits[i];
        out.push(json!({
            "name": l.name,
            "key": l.key.name(),
            "requests": l.requests,
            "per": l.per.name(),
        }));
    }
    out
}

/// `ringway reload`: sends `SIGHUP` to a running gateway, found by `--pid`, `--pid-file`, or
/// the configuration's `server.pid_file`.
pub fn reload(config_path: &Path, pid_file: Option<&Path>, pid: Option<i32>) -> Outcome {
    let fail = |stderr: String| Outcome {
        code: EXIT_CONFIG,
        stdout: String::new(),
        stderr,
    };
    let pid = match (pid, pid_file) {
        (Some(p), _) => p,
        (None, Some(f)) => match crate::server::pid::running(f) {
            Ok(p) => p,
            Err(e) => return fail(e),
        },
        (None, None) => {
            let file = match config::load(config_path) {
                Ok(cfg) => cfg.server.pid_file,
                Err(e) => return fail(format!("{e}")),
            };
            let Some(file) = file else {
                return fail(format!(
                    "{}: server.pid_file is not set; give --pid or --pid-file",
                    config_path.display()
                ));
            };
            match crate::server::pid::running(&file) {
                Ok(p) => p,
                Err(e) => return fail(e),
            }
        }
    };
    if pid <= 0 {
        return fail(format!("{pid} is not a process id"));
    }
    // SAFETY: kill(2) with a positive pid and a valid signal number.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return fail(format!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Outcome::ok(format!("sent SIGHUP to {pid}"))
}

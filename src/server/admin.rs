//! The admin listener (`server.admin_listen`, SPEC §7): plain HTTP/1.1 on its own socket,
//! served by its own thread, never by the workers nor on the data listeners. One request per
//! connection (`Connection: close`); GET and HEAD only.
//!
//! The thread lives from start to the process's exit: through a drain, whichever worker
//! still has work, `/healthz` keeps saying `draining`. Only a hand-over (`SIGUSR2`, from a
//! successor started with `run --upgrade-from`) closes it early, since the successor answers
//! on the same address. Each connection gets a short-lived thread (at most
//! [`MAX_ADMIN_CONNECTIONS`] at once), so a slow client never holds up a health check.
//!
//! - `/healthz`: 200 `{"status":"serving"}`, or 503 `{"status":"draining"}` once SIGTERM
//!   started the drain.
//! - `/metrics`: the Prometheus text format of every worker's counters
//!   ([`crate::runtime::metrics::render`]).
//! - `/docs` (the index page), `/docs/<service>.html`, `/docs/openapi/<service>.json`,
//!   `/docs/index.json`: the generated API documentation ([`crate::docs`]) of the running
//!   configuration, the same files `ringway docs` writes. `/docs/openapi.json`: the one
//!   service's OpenAPI document, or with several services the JSON index of them.
//! - `/usage`: every usage plan's quota counters by secret_id (SPEC §8), JSON; `?plan=` and
//!   `?secret_id=` filter.
//!
//! Anything else is a JSON 404 (or 405 for other methods), like the data path's errors.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::runtime::Shared;
use crate::runtime::metrics::{self, ProcessValues};

/// The largest admin request head read.
pub const MAX_ADMIN_HEAD_BYTES: usize = 8 * 1024;
/// How long an admin client gets to send its head and take its answer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Admin connections served at once; more are closed unanswered.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;
/// How often the accept loop looks at its stop flag.
const STOP_POLL_MS: libc::c_int = 50;

/// The running admin listener.
pub struct Admin {
    stop: Arc<AtomicBool>,
    /// Answers being written.
    busy: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

impl Admin {
    /// Serves `listener` (non-blocking) on a new thread until [`Admin::stop`].
    pub fn start(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<Admin> {
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicUsize::new(0));
        let (flag, count) = (stop.clone(), busy.clone());
        let thread = std::thread::Builder::new()
            .name("ringway-admin".into())
            .spawn(move || serve(listener, shared, flag, count))?;
        Ok(Admin { stop, busy, thread })
    }

    /// Closes the listener, after answering the connections already made to it (a hand-over
    /// loses no health check: what was queued here is answered, later ones reach the
    /// successor), and waits (bounded) for the answers being written.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        while self.busy.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    busy: Arc<AtomicUsize>,
) {
    loop {
        let stopping = stop.load(Ordering::Acquire);
        if !stopping {
            let mut fds = libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the listener this thread owns.
            if unsafe { libc::poll(&mut fds, 1, STOP_POLL_MS) } <= 0 {
                continue;
            }
        }
        while let Ok((stream, _)) = listener.accept() {
            if busy.fetch_add(1, Ordering::AcqRel) >= MAX_ADMIN_CONNECTIONS {
                busy.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let (shared, count) = (shared.clone(), busy.clone());
            let spawned = std::thread::Builder::new()
                .name("ringway-admin-c".into())
                .spawn(move || {
                    answer(stream, &shared);
                    count.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::AcqRel);
            }
        }
        if stopping {
            return;
        }
    }
}

/// An answer: status, content type, body.
struct Page {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Page {
    fn json(status: u16, value: serde_json::Value) -> Page {
        Page {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    fn message(status: u16, message: &str) -> Page {
        Page::json(status, serde_json::json!({ "message": message }))
    }
}

fn answer(mut stream: TcpStream, shared: &Shared) {
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    let _ = stream.set_nonblocking(false);
    let mut buf = vec![0u8; MAX_ADMIN_HEAD_BYTES];
    let mut len = 0;
    let head_len = loop {
        if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if len == buf.len() || left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let page = match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => route(shared, req.method, req.path),
        _ => Page::message(400, "malformed request"),
    };
    let head_only = req.method == Some("HEAD");
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        page.status,
        crate::http::reply::reason(page.status),
        page.content_type,
        page.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&page.body);
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() && stream.set_write_timeout(Some(left)).is_ok() {
        let _ = stream.write_all(&out);
    }
}

fn route(shared: &Shared, method: Option<&str>, path: Option<&str>) -> Page {
    if !matches!(method, Some("GET" | "HEAD")) {
        return Page::message(405, "the admin listener answers GET and HEAD only");
    }
    let target = path.unwrap_or("/");
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    match path {
        "/usage" => usage(shared, query),
        "/healthz" => {
            if shared.stopping.load(Ordering::Acquire) {
                Page::json(503, serde_json::json!({ "status": "draining" }))
            } else {
                Page::json(200, serde_json::json!({ "status": "serving" }))
            }
        }
        "/metrics" => {
            let process = ProcessValues {
                version: env!("CARGO_PKG_VERSION"),
                client_connections: shared.connections.load(Ordering::Relaxed),
                reloads_succeeded: shared.reloads.succeeded.load(Ordering::Relaxed),
                reloads_failed: shared.reloads.failed.load(Ordering::Relaxed),
                last_reload_unix: shared.reloads.last_success_unix.load(Ordering::Relaxed),
                access_log_dropped: shared.logger.dropped(),
                traffic_store_up: shared.config().traffic.store == crate::config::StoreKind::Local
                    || shared.store.up(),
                traffic_store_failures: shared.store.failures.load(Ordering::Relaxed),
            };
            let mut text = String::new();
            metrics::render(&shared.metrics, &process, &mut text);
            Page {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: text.into_bytes(),
            }
        }
        "/docs" | "/docs/" => Page {
            status: 200,
            content_type: HTML,
            body: crate::docs::index_html(&shared.config(), DOCS_BASE).into_bytes(),
        },
        "/docs/openapi.json" => {
            let config = shared.config();
            let doc = match config.services.as_slice() {
                [one] => crate::docs::openapi(&config, one),
                _ => crate::docs::index(&config, DOCS_BASE),
            };
            Page::json(200, doc)
        }
        _ => match path.strip_prefix(DOCS_BASE) {
            Some(file) => docs_file(shared, file),
            None => Page::message(404, "no such admin page"),
        },
    }
}

/// `/usage` (SPEC §8): every usage plan's counters, for each secret_id it binds, in the
/// running configuration's order; `?plan=NAME` and `?secret_id=ID` keep those rows only.
/// `used` and `remaining` are the quota's in the current period, `period_resets` when it
/// ends (RFC 3339, UTC); all three are null for a plan without `max_requests`,
/// `period_resets` for a `total` quota. Reads the counters without binding them (see
/// [`crate::traffic::local::Registry::quota_state`]).
fn usage(shared: &Shared, query: Option<&str>) -> Page {
    let mut plan = None;
    let mut secret_id = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "plan" => plan = Some(percent_decode(v)),
            "secret_id" => secret_id = Some(percent_decode(v)),
            _ => {}
        }
    }
    let config = shared.config();
    let unix = crate::runtime::unix_now();
    let mut usage = shared.traffic.usage(&config, unix);
    // The Redis store: the fleet's counts, read from Redis (what every instance reserved;
    // blocks an instance holds unused go back when they idle or it exits).
    if config.traffic.store == crate::config::StoreKind::Redis {
        match fleet_counts(&config, &usage, unix) {
            Ok(counts) => {
                for (u, used) in usage.iter_mut().zip(counts) {
                    if let (Some(q), Some(used)) = (u.quota.as_mut(), used) {
                        let max = q.used + q.remaining;
                        q.used = used.min(max);
                        q.remaining = max - q.used;
                    }
                }
            }
            Err(e) => {
                return Page::json(
                    503,
                    serde_json::json!({ "message": format!("rate limit store unavailable: {e}") }),
                );
            }
        }
    }
    let rows: Vec<serde_json::Value> = usage
        .into_iter()
        .filter(|u| plan.as_deref().is_none_or(|p| p == u.plan))
        .filter(|u| secret_id.as_deref().is_none_or(|s| s == u.secret_id))
        .map(|u| {
            let q = u.quota;
            serde_json::json!({
                "plan": u.plan,
                "secret_id": u.secret_id,
                "used": q.map(|q| q.used),
                "remaining": q.map(|q| q.remaining),
                "period_resets": q.and_then(|q| q.resets).map(rfc3339),
            })
        })
        .collect();
    Page::json(200, serde_json::json!({ "plans": rows }))
}

/// The Redis counts of every row's quota (`None` for a plan without one).
fn fleet_counts(
    config: &crate::config::Config,
    usage: &[crate::traffic::local::Usage<'_>],
    unix: u64,
) -> Result<Vec<Option<u64>>, String> {
    use crate::traffic::redis::{blocking, url::RedisUrl};
    let url = RedisUrl::parse(config.traffic.redis_url.as_deref().unwrap_or_default())?;
    let keys: Vec<Option<String>> = usage
        .iter()
        .map(|u| {
            let plan = config.usage_plans.iter().find(|p| p.name == u.plan)?;
            u.quota?;
            Some(crate::traffic::quota_key(plan, u.secret_id, unix))
        })
        .collect();
    let wanted: Vec<String> = keys.iter().flatten().cloned().collect();
    let timeout = config.traffic.redis_timeout.max(Duration::from_millis(500));
    let counts = blocking::counts(&url, &wanted, timeout).map_err(|e| e.to_string())?;
    let mut counts = counts.into_iter();
    Ok(keys
        .iter()
        .map(|k| k.as_ref().and_then(|_| counts.next()))
        .collect())
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-08T00:00:00Z`).
fn rfc3339(unix: u64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A query value with `%XX` escapes and `+` decoded (bytes that are not UTF-8 replaced).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the admin listener serves the generated docs.
const DOCS_BASE: &str = "/docs/";
const HTML: &str = "text/html; charset=utf-8";

/// One file of the running configuration's docs (`index.json`, `<service>.html`,
/// `openapi/<service>.json`).
fn docs_file(shared: &Shared, file: &str) -> Page {
    let config = shared.config();
    let found = crate::docs::files(&config, DOCS_BASE)
        .into_iter()
        .find(|(name, _)| name == file);
    match found {
        Some((name, body)) => Page {
            status: 200,
            content_type: if name.ends_with(".json") {
                "application/json"
            } else {
                HTML
            },
            body: body.into_bytes(),
        },
        None => Page::message(404, "no such document"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_helpers() {
        assert_eq!(percent_decode("gold"), "gold");
        assert_eq!(percent_decode("a%20b+c%2Fd"), "a b c/d");
        assert_eq!(percent_decode("bad%2"), "bad%2");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(rfc3339(1_796_774_400), "2026-12-09T00:00:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}

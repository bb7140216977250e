//! The admin listener (`server.admin_listen`, SPEC §7): plain HTTP/1.1 on its own socket,
//! served by worker 0 only, never on the data listeners. One request per connection
//! (`Connection: close`); GET and HEAD only.
//!
//! - `/healthz`: 200 `{"status":"serving"}`, or 503 `{"status":"draining"}` once SIGTERM
//!   started the drain (the admin listener keeps answering through the grace period).
//! - `/metrics`: the Prometheus text format of every worker's counters
//!   ([`crate::runtime::metrics::render`]).
//! - `/docs` (the index page), `/docs/<service>.html`, `/docs/openapi/<service>.json`,
//!   `/docs/index.json`: the generated API documentation ([`crate::docs`]) of the running
//!   configuration, the same files `ringway docs` writes. `/docs/openapi.json`: the one
//!   service's OpenAPI document, or with several services the JSON index of them.
//!
//! Anything else is a JSON 404 (or 405 for other methods), like the data path's errors.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};
use monoio::time::Instant;

use crate::proxy::io::{Read, read_until, write_all_until};
use crate::runtime::Worker;
use crate::runtime::metrics::{self, ProcessValues};

/// The largest admin request head read.
pub const MAX_ADMIN_HEAD_BYTES: usize = 8 * 1024;
/// How long an admin client gets to send its head and take its answer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts admin connections until the worker's grace period ends.
pub async fn serve(listener: TcpListener, worker: Rc<Worker>) {
    loop {
        let accepted = monoio::select! {
            _ = worker.cut.wait() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, _)) => {
                monoio::spawn(answer(stream, worker.clone()));
            }
            Err(_) => monoio::time::sleep(super::worker::ACCEPT_ERROR_PAUSE).await,
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

async fn answer(mut stream: TcpStream, worker: Rc<Worker>) {
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() >= MAX_ADMIN_HEAD_BYTES {
            return;
        }
        if buf.len() == buf.capacity() {
            buf.reserve(1024);
        }
        match read_until(&mut stream, &mut buf, deadline).await {
            Read::Data(_) => {}
            _ => return,
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let page = match req.parse(&buf[..head_len]) {
        Ok(httparse::Status::Complete(_)) => route(&worker, req.method, req.path),
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
    let _ = write_all_until(&mut stream, &mut out, deadline).await;
}

fn route(worker: &Worker, method: Option<&str>, path: Option<&str>) -> Page {
    if !matches!(method, Some("GET" | "HEAD")) {
        return Page::message(405, "the admin listener answers GET and HEAD only");
    }
    let path = path.unwrap_or("/");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    match path {
        "/healthz" => {
            if worker.shared.stopping.load(Ordering::Acquire) {
                Page::json(503, serde_json::json!({ "status": "draining" }))
            } else {
                Page::json(200, serde_json::json!({ "status": "serving" }))
            }
        }
        "/metrics" => {
            let shared = &worker.shared;
            let process = ProcessValues {
                version: env!("CARGO_PKG_VERSION"),
                client_connections: shared.connections.load(Ordering::Relaxed),
                reloads_succeeded: shared.reloads.succeeded.load(Ordering::Relaxed),
                reloads_failed: shared.reloads.failed.load(Ordering::Relaxed),
                last_reload_unix: shared.reloads.last_success_unix.load(Ordering::Relaxed),
                access_log_dropped: shared.logger.dropped(),
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
            body: crate::docs::index_html(&worker.snapshot().config, DOCS_BASE).into_bytes(),
        },
        "/docs/openapi.json" => {
            let config = worker.snapshot().config.clone();
            let doc = match config.services.as_slice() {
                [one] => crate::docs::openapi(&config, one),
                _ => crate::docs::index(&config, DOCS_BASE),
            };
            Page::json(200, doc)
        }
        _ => match path.strip_prefix(DOCS_BASE) {
            Some(file) => docs_file(worker, file),
            None => Page::message(404, "no such admin page"),
        },
    }
}

/// Where the admin listener serves the generated docs.
const DOCS_BASE: &str = "/docs/";
const HTML: &str = "text/html; charset=utf-8";

/// One file of the running configuration's docs (`index.json`, `<service>.html`,
/// `openapi/<service>.json`).
fn docs_file(worker: &Worker, file: &str) -> Page {
    let config = worker.snapshot().config.clone();
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

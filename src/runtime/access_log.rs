//! The JSON access log (`server.access_log`): one line per request.
//!
//! Data flow: each worker writes lines into its own buffer ([`Log`]); when the buffer holds
//! [`FLUSH_BYTES`], and on every housekeeping tick (50 ms), the buffer goes as one chunk over a
//! queue bounded in bytes ([`QUEUE_BYTES`]) to the process's one logger thread ([`Logger`]), which
//! writes it to stdout or to the file (opened for appending) with one `write_all`, so lines of
//! different workers never interleave. A worker never blocks on the log: when the queue is
//! full (a stalled stdout pipe, a slow disk) the chunk is dropped and its lines are counted
//! (`ringway_access_log_dropped_lines_total`).
//!
//! A line: `{"time","request_id","client","method","host","target","user_agent","tls","sni",
//! "protocol","status","service","api","caller","upstream","upstream_ms","bytes_in","bytes_out",
//! "duration_ms"}`.
//! - `tls`: the TLS version over HTTPS, `sni`: the client's server name (both null over
//!   plain HTTP); `protocol`: `"h1"` (HTTP/1.x) or `"h2"` (a stream of an HTTP/2
//!   connection); `service`, `api`: null when no API matched; `caller`: the authenticated
//!   key pair's `secret_id` or the OAuth 2.0 token's `sub`, else null.
//! - `upstream`: the backend address the answer came from, `upstream_ms`: from the first
//!   connection attempt to the backend's response head (both null without an exchange).
//! - `bytes_in` / `bytes_out`: client bytes read and written while the request ran
//!   (plaintext; a read may carry bytes of a pipelined next request).
//! - A request a traffic control refused adds `"refused_by"`: the usage plan's name or the
//!   limit's `limit-<n>` (429), `usage_plan` (403, no plan binds the caller) or `ip_control`.
//! - A WebSocket tunnel adds `"tunnel_bytes_up"` (client to backend),
//!   `"tunnel_bytes_down"` and `"tunnel_end"` (why it ended: `closed` when both sides closed,
//!   `idle`, `shutdown`, or which side failed and how), logged when it ends.
//!
//! Strings are escaped by serde_json (invalid UTF-8 replaced); times are RFC 3339 in UTC with
//! milliseconds (humantime).

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::config::AccessLog;

/// A worker hands its buffer to the logger thread when it holds this much.
pub const FLUSH_BYTES: usize = 32 * 1024;
/// Bytes waiting for the logger thread, process-wide; past this, chunks are dropped.
pub const QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// How long the process waits at exit for the logger thread to write what is queued.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Where lines go.
pub enum Sink {
    Stdout,
    File(File),
}

impl Sink {
    /// `None` for `access_log = "off"`.
    fn open(cfg: &AccessLog) -> io::Result<Option<Arc<Sink>>> {
        Ok(match cfg {
            AccessLog::Off => None,
            AccessLog::Stdout => Some(Arc::new(Sink::Stdout)),
            AccessLog::File(p) => Some(Arc::new(Sink::File(
                OpenOptions::new().create(true).append(true).open(p)?,
            ))),
        })
    }

    fn write(&self, chunk: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().write_all(chunk),
            Sink::File(f) => (&*f).write_all(chunk),
        }
    }
}

enum Msg {
    Chunk(Arc<Sink>, Vec<u8>),
    /// Write what came before, then answer on the channel.
    Sync(SyncSender<()>),
    Stop,
}

/// The process's logger thread and its queue.
pub struct Logger {
    tx: Sender<Msg>,
    /// Bytes sent and not yet written (shared with the thread, which takes them off).
    queued: Arc<AtomicUsize>,
    dropped: AtomicU64,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Logger {
    /// Starts the logger thread.
    pub fn start() -> io::Result<Logger> {
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let taken = queued.clone();
        let thread = std::thread::Builder::new()
            .name("ringway-log".into())
            .spawn(move || write_loop(rx, &taken))?;
        Ok(Logger {
            tx,
            queued,
            dropped: AtomicU64::new(0),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `chunk` (holding `lines` lines) for `sink`, or drops and counts it when the
    /// queue is full. Never blocks.
    fn send(&self, sink: Arc<Sink>, chunk: Vec<u8>, lines: u64) {
        let len = chunk.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > QUEUE_BYTES || self.tx.send(Msg::Chunk(sink, chunk)).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.dropped.fetch_add(lines, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until everything queued so far is written.
    pub fn sync(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::sync_channel(1);
        self.tx.send(Msg::Sync(tx)).is_ok() && rx.recv_timeout(timeout).is_ok()
    }

    /// Writes what is queued and ends the thread (waiting at most [`STOP_TIMEOUT`] for a
    /// stalled sink).
    pub fn stop(&self) {
        if self.sync(STOP_TIMEOUT) {
            let _ = self.tx.send(Msg::Stop);
            let handle = self
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
    }
}

fn write_loop(rx: Receiver<Msg>, queued: &AtomicUsize) {
    while let Ok(msg) = rx.recv() {
        match msg {
            // A failed write loses its lines, like a full queue; nothing to tell the worker.
            Msg::Chunk(sink, chunk) => {
                let _ = sink.write(&chunk);
                queued.fetch_sub(chunk.len(), Ordering::AcqRel);
            }
            Msg::Sync(done) => {
                let _ = done.send(());
            }
            Msg::Stop => return,
        }
    }
}

/// One worker's access log: its line buffer and the current sink.
pub struct Log {
    /// `None` when off; replaced when a reload changes `access_log`.
    sink: RefCell<Option<Arc<Sink>>>,
    buf: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    logger: Arc<Logger>,
}

/// What is known of a request when it starts.
pub struct Start<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    pub client: SocketAddr,
    pub method: &'a [u8],
    pub host: &'a [u8],
    pub target: &'a [u8],
    pub user_agent: Option<&'a [u8]>,
    /// Over TLS: the protocol version (`TLSv1.3`) and the SNI name.
    pub tls: Option<(&'a str, Option<&'a str>)>,
    /// The request came over HTTP/2 (one stream of a connection), else HTTP/1.x.
    pub h2: bool,
}

impl<'a> Start<'a> {
    /// A request known only by its connection (no head was read: refused, late or
    /// abandoned): method, host and target empty.
    pub fn headless(client: SocketAddr, tls: Option<(&'a str, Option<&'a str>)>) -> Start<'a> {
        Start {
            time: SystemTime::now(),
            request_id: "",
            client,
            method: b"",
            host: b"",
            target: b"",
            user_agent: None,
            tls,
            h2: false,
        }
    }
}

/// A WebSocket tunnel's bytes each way (client to backend, backend to client) and why it
/// ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelEnd {
    pub up: u64,
    pub down: u64,
    pub reason: String,
}

/// What is known of a request when it ends.
pub struct End<'a> {
    pub status: u16,
    pub route: Option<(&'a str, &'a str)>,
    pub caller: Option<&'a str>,
    /// The backend address and the time to its response head.
    pub upstream: Option<(SocketAddr, Duration)>,
    /// Client bytes (read, written).
    pub bytes: (u64, u64),
    /// A WebSocket tunnel's bytes and why it ended.
    pub tunnel: Option<&'a TunnelEnd>,
    /// The traffic control that refused the request.
    pub refused_by: Option<&'a str>,
    pub elapsed: Duration,
}

/// `"text"` as a JSON string (invalid UTF-8 replaced).
fn json_str(raw: &[u8], out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, &String::from_utf8_lossy(raw));
}

fn json_opt(raw: Option<&[u8]>, out: &mut Vec<u8>) {
    match raw {
        Some(r) => json_str(r, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl Log {
    pub fn open(cfg: &AccessLog, logger: Arc<Logger>) -> io::Result<Log> {
        Ok(Log {
            sink: RefCell::new(Sink::open(cfg)?),
            buf: RefCell::new(Vec::new()),
            lines: Cell::new(0),
            logger,
        })
    }

    /// A reload changed `access_log`: what is buffered goes to the old sink, then the new one
    /// is used. If it cannot be opened the old one stays, and the error is logged.
    pub fn reopen(&self, worker: usize, cfg: &AccessLog) {
        match Sink::open(cfg) {
            Ok(sink) => {
                self.flush();
                *self.sink.borrow_mut() = sink;
            }
            Err(e) => crate::say!(
                warn,
                "worker {worker}: reload: access_log: cannot open: {e}; the old log stays"
            ),
        }
    }

    pub fn enabled(&self) -> bool {
        self.sink.borrow().is_some()
    }

    /// Writes the first half of a line (the request) into `line` (cleared first).
    pub fn start(s: &Start<'_>, line: &mut Vec<u8>) {
        line.clear();
        line.extend_from_slice(b"{\"time\":\"");
        let _ = write!(line, "{}", humantime::format_rfc3339_millis(s.time));
        line.extend_from_slice(b"\",\"request_id\":");
        json_str(s.request_id.as_bytes(), line);
        let _ = write!(line, ",\"client\":\"{}\",\"method\":", s.client);
        json_str(s.method, line);
        line.extend_from_slice(b",\"host\":");
        json_str(s.host, line);
        line.extend_from_slice(b",\"target\":");
        json_str(s.target, line);
        line.extend_from_slice(b",\"user_agent\":");
        json_opt(s.user_agent, line);
        line.extend_from_slice(b",\"tls\":");
        json_opt(s.tls.map(|t| t.0.as_bytes()), line);
        line.extend_from_slice(b",\"sni\":");
        json_opt(s.tls.and_then(|t| t.1).map(str::as_bytes), line);
        line.extend_from_slice(if s.h2 {
            b",\"protocol\":\"h2\""
        } else {
            b",\"protocol\":\"h1\""
        });
    }

    /// Completes `line` (from [`Log::start`]) and buffers it.
    pub fn finish(&self, line: &[u8], end: &End<'_>) {
        if line.is_empty() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        buf.extend_from_slice(line);
        let _ = write!(buf, ",\"status\":{},\"service\":", end.status);
        json_opt(end.route.map(|r| r.0.as_bytes()), &mut buf);
        buf.extend_from_slice(b",\"api\":");
        json_opt(end.route.map(|r| r.1.as_bytes()), &mut buf);
        buf.extend_from_slice(b",\"caller\":");
        json_opt(end.caller.map(str::as_bytes), &mut buf);
        match end.upstream {
            Some((addr, t)) => {
                let _ = write!(
                    buf,
                    ",\"upstream\":\"{addr}\",\"upstream_ms\":{}",
                    millis(t)
                );
            }
            None => buf.extend_from_slice(b",\"upstream\":null,\"upstream_ms\":null"),
        }
        let _ = write!(
            buf,
            ",\"bytes_in\":{},\"bytes_out\":{}",
            end.bytes.0, end.bytes.1
        );
        if let Some(p) = end.refused_by {
            buf.extend_from_slice(b",\"refused_by\":");
            json_str(p.as_bytes(), &mut buf);
        }
        if let Some(t) = end.tunnel {
            let _ = write!(
                buf,
                ",\"tunnel_bytes_up\":{},\"tunnel_bytes_down\":{},\"tunnel_end\":",
                t.up, t.down
            );
            json_str(t.reason.as_bytes(), &mut buf);
        }
        let _ = writeln!(buf, ",\"duration_ms\":{}}}", millis(end.elapsed));
        self.lines.set(self.lines.get() + 1);
        if buf.len() >= FLUSH_BYTES {
            drop(buf);
            self.flush();
        }
    }

    /// Hands the buffered lines to the logger thread.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_BYTES));
        let lines = self.lines.replace(0);
        if let Some(sink) = self.sink.borrow().as_ref() {
            self.logger.send(sink.clone(), chunk, lines);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn start(target: &'static [u8]) -> Start<'static> {
        Start {
            time: UNIX_EPOCH + Duration::from_millis(1_764_048_600_123),
            request_id: "rid",
            client: "192.0.2.1:5000".parse().unwrap(),
            method: b"GET",
            host: b"h",
            target,
            user_agent: Some(b"curl/8"),
            tls: Some(("TLSv1.3", Some("a.example.com"))),
            h2: false,
        }
    }

    static TUNNEL: std::sync::LazyLock<TunnelEnd> = std::sync::LazyLock::new(|| TunnelEnd {
        up: 3,
        down: 4,
        reason: "upstream read failed: \"x\"".into(),
    });

    fn end() -> End<'static> {
        End {
            status: 200,
            route: Some(("s", "a")),
            caller: Some("AKIDx"),
            upstream: Some(("10.0.0.1:80".parse().unwrap(), Duration::from_micros(250))),
            bytes: (100, 200),
            tunnel: Some(&TUNNEL),
            refused_by: None,
            elapsed: Duration::from_micros(1500),
        }
    }

    #[test]
    fn a_line_is_valid_json_with_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let logger = Arc::new(Logger::start().unwrap());
        let log = Log::open(&AccessLog::File(path.clone()), logger.clone()).unwrap();
        let mut line = Vec::new();
        Log::start(&start(b"/a\"b\\c\x01\xff"), &mut line);
        log.finish(&line, &end());
        let mut plain = Start {
            tls: None,
            user_agent: None,
            ..start(b"/")
        };
        plain.method = b"POST";
        Log::start(&plain, &mut line);
        log.finish(
            &line,
            &End {
                status: 404,
                route: None,
                caller: None,
                upstream: None,
                bytes: (0, 0),
                tunnel: None,
                refused_by: None,
                elapsed: Duration::ZERO,
            },
        );
        log.flush();
        assert!(logger.sync(Duration::from_secs(5)));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let a = &lines[0];
        assert_eq!(a["time"], "2025-11-25T05:30:00.123Z");
        assert_eq!(a["target"], "/a\"b\\c\u{1}\u{fffd}");
        assert_eq!(a["user_agent"], "curl/8");
        assert_eq!(a["status"], 200);
        assert_eq!(a["api"], "a");
        assert_eq!(a["caller"], "AKIDx");
        assert_eq!(a["upstream"], "10.0.0.1:80");
        assert_eq!(a["upstream_ms"], 0.25);
        assert_eq!(a["bytes_in"], 100);
        assert_eq!(a["bytes_out"], 200);
        assert_eq!(a["tunnel_bytes_up"], 3);
        assert_eq!(a["tunnel_bytes_down"], 4);
        assert_eq!(a["tunnel_end"], "upstream read failed: \"x\"");
        assert_eq!(a["duration_ms"], 1.5);
        assert_eq!(a["tls"], "TLSv1.3");
        assert_eq!(a["sni"], "a.example.com");
        assert_eq!(a["protocol"], "h1");
        let b = &lines[1];
        assert_eq!(b["method"], "POST");
        assert_eq!(b.get("tunnel_bytes_up"), None);
        for null in [
            "service",
            "caller",
            "upstream",
            "upstream_ms",
            "tls",
            "sni",
            "user_agent",
        ] {
            assert_eq!(b[null], serde_json::Value::Null, "{null}");
        }
        logger.stop();
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        // A logger whose thread never reads: the queue fills, then every chunk is dropped.
        let (tx, _rx) = mpsc::channel();
        let logger = Logger {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            dropped: AtomicU64::new(0),
            thread: Mutex::new(None),
        };
        let sink = Arc::new(Sink::Stdout);
        let chunk = vec![b'x'; QUEUE_BYTES / 2];
        for _ in 0..5 {
            logger.send(sink.clone(), chunk.clone(), 3);
        }
        assert_eq!(
            logger.dropped(),
            9,
            "3 chunks of 3 lines past the 2 that fit"
        );
    }
}

//! The JSON access log (`server.access_log`): one line per request, written by each worker
//! into its own buffer and flushed in whole lines, when the buffer fills and every few tens
//! of milliseconds, to stdout or to a file opened for appending (each flush is one `write`,
//! so lines from different workers never interleave).
//!
//! A line: `{"time","request_id","client","method","host","target","tls","sni","status",
//! "service","api","caller","duration_ms"}` (`tls`: the TLS version over HTTPS, `sni`: the
//! client's server name; both null over plain HTTP), plus `"tunnel_bytes_up"` (client to
//! backend) and `"tunnel_bytes_down"` for a WebSocket tunnel, logged when it ends. `service`
//! and `api` are null when no API was matched; `caller`
//! is the authenticated key pair's `secret_id` or the OAuth 2.0 token's `sub`, else null.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::AccessLog;

/// A worker flushes its buffer when it holds this much.
pub const FLUSH_BYTES: usize = 32 * 1024;

enum Sink {
    Off,
    Stdout,
    File(File),
}

pub struct Log {
    /// Replaced when a reload changes `access_log`.
    sink: RefCell<Sink>,
    buf: RefCell<Vec<u8>>,
}

/// What is known of a request when it starts.
pub struct Start<'a> {
    pub time: SystemTime,
    pub request_id: &'a str,
    pub client: SocketAddr,
    pub method: &'a [u8],
    pub host: &'a [u8],
    pub target: &'a [u8],
    /// Over TLS: the protocol version (`TLSv1.3`) and the SNI name.
    pub tls: Option<(&'a str, Option<&'a str>)>,
}

impl Log {
    pub fn open(cfg: &AccessLog) -> io::Result<Log> {
        Ok(Log {
            sink: RefCell::new(Sink::open(cfg)?),
            buf: RefCell::new(Vec::new()),
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
            Err(e) => eprintln!(
                "ringway: worker {worker}: reload: access_log: cannot open: {e}; the old log stays"
            ),
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(*self.sink.borrow(), Sink::Off)
    }

    /// Writes the first half of a line (the request) into `line` (cleared first).
    pub fn start(s: &Start<'_>, line: &mut Vec<u8>) {
        line.clear();
        line.extend_from_slice(b"{\"time\":\"");
        rfc3339(s.time, line);
        line.extend_from_slice(b"\",\"request_id\":");
        json_str(s.request_id.as_bytes(), line);
        let _ = write!(line, ",\"client\":\"{}\",\"method\":", s.client);
        json_str(s.method, line);
        line.extend_from_slice(b",\"host\":");
        json_str(s.host, line);
        line.extend_from_slice(b",\"target\":");
        json_str(s.target, line);
        match s.tls {
            Some((version, sni)) => {
                line.extend_from_slice(b",\"tls\":");
                json_str(version.as_bytes(), line);
                line.extend_from_slice(b",\"sni\":");
                match sni {
                    Some(n) => json_str(n.as_bytes(), line),
                    None => line.extend_from_slice(b"null"),
                }
            }
            None => line.extend_from_slice(b",\"tls\":null,\"sni\":null"),
        }
    }

    /// Completes `line` with the outcome and queues it.
    pub fn finish(
        &self,
        line: &[u8],
        status: u16,
        route: Option<(&str, &str)>,
        caller: Option<&str>,
        tunnel: Option<(u64, u64)>,
        elapsed: Duration,
    ) {
        if line.is_empty() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        buf.extend_from_slice(line);
        let _ = write!(buf, ",\"status\":{status},\"service\":");
        match route {
            Some((service, api)) => {
                json_str(service.as_bytes(), &mut buf);
                buf.extend_from_slice(b",\"api\":");
                json_str(api.as_bytes(), &mut buf);
            }
            None => buf.extend_from_slice(b"null,\"api\":null"),
        }
        buf.extend_from_slice(b",\"caller\":");
        match caller {
            Some(c) => json_str(c.as_bytes(), &mut buf),
            None => buf.extend_from_slice(b"null"),
        }
        if let Some((up, down)) = tunnel {
            let _ = write!(
                buf,
                ",\"tunnel_bytes_up\":{up},\"tunnel_bytes_down\":{down}"
            );
        }
        let _ = writeln!(buf, ",\"duration_ms\":{:.3}}}", elapsed.as_secs_f64() * 1e3);
        if buf.len() >= FLUSH_BYTES {
            drop(buf);
            self.flush();
        }
    }

    /// Writes out the buffered lines.
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let _ = match &*self.sink.borrow() {
            Sink::Off => Ok(()),
            Sink::Stdout => io::stdout().lock().write_all(&buf),
            Sink::File(f) => (&*f).write_all(&buf),
        };
        buf.clear();
    }
}

impl Sink {
    fn open(cfg: &AccessLog) -> io::Result<Sink> {
        Ok(match cfg {
            AccessLog::Off => Sink::Off,
            AccessLog::Stdout => Sink::Stdout,
            AccessLog::File(p) => Sink::File(OpenOptions::new().create(true).append(true).open(p)?),
        })
    }
}

/// A JSON string of `raw` (invalid UTF-8 replaced).
fn json_str(raw: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for c in String::from_utf8_lossy(raw).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// `2026-11-25T05:30:00.123Z`.
fn rfc3339(t: SystemTime, out: &mut Vec<u8>) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    );
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        let mut out = Vec::new();
        rfc3339(
            UNIX_EPOCH + Duration::from_millis(1_764_048_600_123),
            &mut out,
        );
        assert_eq!(out, b"2025-11-25T05:30:00.123Z");
    }

    #[test]
    fn a_line_is_valid_json_with_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = Log::open(&AccessLog::File(path.clone())).unwrap();
        let mut line = Vec::new();
        Log::start(
            &Start {
                time: UNIX_EPOCH,
                request_id: "rid",
                client: "192.0.2.1:5000".parse().unwrap(),
                method: b"GET",
                host: b"h",
                target: b"/a\"b\\c\x01\xff",
                tls: Some(("TLSv1.3", Some("a.example.com"))),
            },
            &mut line,
        );
        log.finish(
            &line,
            200,
            Some(("s", "a")),
            Some("AKIDx"),
            Some((3, 4)),
            Duration::from_micros(1500),
        );
        log.finish(&line, 404, None, None, None, Duration::ZERO);
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["target"], "/a\"b\\c\u{1}\u{fffd}");
        assert_eq!(lines[0]["status"], 200);
        assert_eq!(lines[0]["api"], "a");
        assert_eq!(lines[0]["duration_ms"], 1.5);
        assert_eq!(lines[0]["caller"], "AKIDx");
        assert_eq!(lines[0]["tunnel_bytes_up"], 3);
        assert_eq!(lines[0]["tunnel_bytes_down"], 4);
        assert_eq!(lines[1].get("tunnel_bytes_up"), None);
        assert_eq!(lines[1]["service"], serde_json::Value::Null);
        assert_eq!(lines[1]["caller"], serde_json::Value::Null);
        assert_eq!(lines[0]["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(lines[0]["tls"], "TLSv1.3");
        assert_eq!(lines[0]["sni"], "a.example.com");
    }
}

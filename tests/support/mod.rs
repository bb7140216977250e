//! Shared helpers for the proxy integration tests (`tests/proxy_*.rs`): the real `ringway`
//! binary as a child process ([`Gateway`]), a recording HTTP/1.1 test backend
//! ([`Backend`]) and a raw-socket client ([`Client`]).
//!
//! Every read has a deadline, so no test can hang: a missing answer is a panic that says
//! what was received so far.

#![allow(dead_code)]

pub mod openssl;
pub mod pki;
pub mod redis;
pub mod tls_backend;
pub mod ws;

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long the gateway gets to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline for reading one whole response.
pub const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `terminate` waits for the process to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Configuration helpers

/// The `[server]` table every test uses: one HTTP listener on an ephemeral port, no admin
/// listener, no access log, `workers` workers, then `extra` (more `[server]` keys).
pub fn server_section(workers: usize, extra: &str) -> String {
    format!(
        "[server]\nlisten_http = [\"127.0.0.1:0\"]\nadmin_listen = \"off\"\naccess_log = \"off\"\nworkers = {workers}\n{extra}\n"
    )
}

/// One upstream `name` at `addr` (`extra`: more keys of the table).
pub fn upstream_section(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!("[[upstreams]]\nname = \"{name}\"\nurl = \"http://{addr}\"\n{extra}\n")
}

/// The common configuration: one worker, `server_extra` in `[server]`, upstream `up` at
/// `backend`, and one host-less service with one API: plain prefix `/api`, any method,
/// to backend path `/internal` (`/api/x?q` reaches the backend as `/internal/x?q`).
/// `backend_extra` adds keys (or constants tables) to `[services.apis.backend]`.
pub fn proxy_config(backend: SocketAddr, server_extra: &str, backend_extra: &str) -> String {
    format!(
        "{}{}[[services]]\nname = \"s\"\n\n[[services.apis]]\nname = \"api\"\npath = \"/api\"\nmethod = \"ANY\"\n[services.apis.backend]\ntype = \"vpc\"\nupstream = \"up\"\npath = \"/internal\"\n{backend_extra}\n",
        server_section(1, server_extra),
        upstream_section("up", backend, ""),
    )
}

/// Raises this process's soft descriptor limit to its hard limit (the gateway, a child,
/// inherits it): the tests that hold hundreds of connections need more than 1,024 on
/// machines whose soft limit is that.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// An address on 127.0.0.1 where nobody listens (bound, then released).
pub fn unused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------
// The gateway process

enum StderrEvent {
    Listening(SocketAddr),
    ListeningHttps(SocketAddr),
    Closed,
}

/// A running `ringway run` child process.
pub struct Gateway {
    child: Option<Child>,
    addrs: Vec<SocketAddr>,
    https_addrs: Vec<SocketAddr>,
    log: Arc<Mutex<String>>,
    events: mpsc::Receiver<StderrEvent>,
    pub config_path: PathBuf,
    /// Kept open and never read (see [`Gateway::start_with_stdout_unread`]).
    _unread_stdout: Option<std::process::ChildStdout>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Writes `config_toml` to a temporary directory, starts `ringway run --config` on it
    /// and waits (bounded) for its `ringway: listening http ADDR` line.
    pub fn start(config_toml: &str) -> Gateway {
        match Gateway::try_start(config_toml) {
            Ok(g) => g,
            Err(e) => panic!("{e}\n--- configuration ---\n{config_toml}"),
        }
    }

    pub fn try_start(config_toml: &str) -> Result<Gateway, String> {
        Gateway::try_start_with_env(config_toml, &[])
    }

    /// [`Gateway::start`] with extra environment variables for the gateway process only
    /// (e.g. a `secret_key_env` key), leaving the test process's environment alone.
    pub fn start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Gateway {
        match Gateway::try_start_with_env(config_toml, env) {
            Ok(g) => g,
            Err(e) => panic!("{e}\n--- configuration ---\n{config_toml}"),
        }
    }

    /// [`Gateway::start`] with stdout a pipe that nobody reads (a stalled log consumer).
    pub fn start_with_stdout_unread(config_toml: &str) -> Gateway {
        match Gateway::spawn(config_toml, &[], &[], true, None) {
            Ok(g) => g,
            Err(e) => panic!("{e}\n--- configuration ---\n{config_toml}"),
        }
    }

    pub fn try_start_with_env(config_toml: &str, env: &[(&str, &str)]) -> Result<Gateway, String> {
        Gateway::spawn(config_toml, env, &[], false, None)
    }

    /// [`Gateway::try_start`] with more arguments after `run --config F`.
    pub fn try_start_with_args(config_toml: &str, args: &[&str]) -> Result<Gateway, String> {
        Gateway::spawn(config_toml, &[], args, false, None)
    }

    /// [`Gateway::try_start`] with the descriptor limit (`RLIMIT_NOFILE`) set to
    /// `(soft, hard)` in the gateway process.
    pub fn try_start_with_nofile(config_toml: &str, nofile: (u64, u64)) -> Result<Gateway, String> {
        Gateway::spawn(config_toml, &[], &[], false, Some(nofile))
    }

    fn spawn(
        config_toml: &str,
        env: &[(&str, &str)],
        args: &[&str],
        stdout_unread: bool,
        nofile: Option<(u64, u64)>,
    ) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("ringway.toml");
        std::fs::write(&config_path, config_toml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ringway"));
        if let Some((soft, hard)) = nofile {
            use std::os::unix::process::CommandExt;
            let lim = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: hard as libc::rlim_t,
            };
            // SAFETY: the hook only calls setrlimit, which is async-signal-safe.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(if stdout_unread {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn ringway: {e}"))?;
        let stderr = child.stderr.take().unwrap();
        let unread_stdout = child.stdout.take();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, events) = mpsc::channel();
        {
            let log = log.clone();
            // Reads stderr until the child exits, so the child never blocks on a full pipe.
            thread::spawn(move || {
                let mut r = BufReader::new(stderr);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match r.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    log.lock().unwrap().push_str(&text);
                    if let Some(rest) = text.trim().strip_prefix("ringway: listening http ")
                        && let Some(addr) =
                            rest.split_whitespace().next().and_then(|a| a.parse().ok())
                    {
                        let _ = tx.send(StderrEvent::Listening(addr));
                    }
                    if let Some(rest) = text.trim().strip_prefix("ringway: listening https ")
                        && let Some(addr) =
                            rest.split_whitespace().next().and_then(|a| a.parse().ok())
                    {
                        let _ = tx.send(StderrEvent::ListeningHttps(addr));
                    }
                }
                let _ = tx.send(StderrEvent::Closed);
            });
        }
        let mut g = Gateway {
            child: Some(child),
            addrs: Vec::new(),
            https_addrs: Vec::new(),
            log,
            events,
            config_path,
            _unread_stdout: unread_stdout,
            _dir: dir,
        };
        match g.events.recv_timeout(START_TIMEOUT) {
            Ok(StderrEvent::Listening(a)) => g.addrs.push(a),
            Ok(StderrEvent::ListeningHttps(a)) => g.https_addrs.push(a),
            Ok(StderrEvent::Closed) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = g.wait_exit(Duration::from_secs(5));
                return Err(format!(
                    "ringway exited before listening (status {status:?}); stderr:\n{}",
                    g.stderr()
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "ringway printed no `ringway: listening http` line within {START_TIMEOUT:?}; stderr:\n{}",
                    g.stderr()
                ));
            }
        }
        Ok(g)
    }

    /// The first HTTP listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every `listening http` line seen so far.
    pub fn addrs(&mut self) -> Vec<SocketAddr> {
        while let Ok(ev) = self.events.try_recv() {
            self.note(ev);
        }
        self.addrs.clone()
    }

    fn note(&mut self, ev: StderrEvent) {
        match ev {
            StderrEvent::Listening(a) => self.addrs.push(a),
            StderrEvent::ListeningHttps(a) => self.https_addrs.push(a),
            StderrEvent::Closed => {}
        }
    }

    /// The first HTTPS listener's address, waiting (bounded) for its `listening https` line.
    pub fn https_addr(&mut self) -> SocketAddr {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        while self.https_addrs.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(StderrEvent::Closed) | Err(_) => panic!(
                    "ringway printed no `ringway: listening https` line; stderr:\n{}",
                    self.stderr()
                ),
                Ok(ev) => self.note(ev),
            }
        }
        self.https_addrs[0]
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway already reaped").id()
    }

    /// Everything the gateway wrote on stderr so far.
    pub fn stderr(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill({}, {sig}) failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(EXIT_TIMEOUT) {
            Some(s) => s,
            None => panic!(
                "ringway did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.addr())
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 message parsing shared by the backend and the client

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A parsed message head (request or status line, then the headers as sent).
#[derive(Clone, Debug, Default)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Parses `head` (everything up to and including the blank line). Lines must end in CRLF.
    pub fn parse(head: &[u8]) -> Result<Head, String> {
        let text = head
            .strip_suffix(b"\r\n")
            .filter(|t| t.ends_with(b"\r\n"))
            .ok_or("head does not end with CRLF CRLF")?;
        let mut lines = text
            .split(|&b| b == b'\n')
            .take_while(|l| !l.is_empty())
            .map(|l| {
                l.strip_suffix(b"\r")
                    .filter(|l| !l.contains(&b'\r'))
                    .ok_or_else(|| {
                        format!("bare CR or LF in head {:?}", String::from_utf8_lossy(head))
                    })
            });
        let start_line = String::from_utf8_lossy(lines.next().ok_or("empty head")??).into_owned();
        let mut headers = Vec::new();
        for l in lines {
            let l = l?;
            let colon = l
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| format!("header without colon: {:?}", String::from_utf8_lossy(l)))?;
            headers.push((
                String::from_utf8_lossy(&l[..colon]).into_owned(),
                String::from_utf8_lossy(l[colon + 1..].trim_ascii()).into_owned(),
            ));
        }
        Ok(Head {
            start_line,
            headers,
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether some `name` header lists `token` (comma-separated, case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name)
            .iter()
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Transfer-Encoding whose last coding is `chunked`.
    pub fn is_chunked(&self) -> bool {
        self.header_all("transfer-encoding")
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|c| !c.is_empty())
            .is_some_and(|c| c.eq_ignore_ascii_case("chunked"))
    }

    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

/// Parses a chunked body at the start of `buf`. `Ok(None)`: incomplete; `Ok(Some((n,
/// decoded)))`: the body is the first `n` bytes (trailers included).
pub fn parse_chunked(buf: &[u8]) -> Result<Option<(usize, Vec<u8>)>, String> {
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = &buf[pos..pos + eol];
        let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_text = std::str::from_utf8(size_text.trim_ascii()).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        pos += eol + 2;
        if size == 0 {
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some((pos, out)));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

/// Encodes `body` as chunks of at most `chunk` bytes plus the last chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for c in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// A deterministic body of `len` bytes that is not periodic over short distances.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The `message` of a gateway JSON body `{"message":"..."}`, if the body has that shape.
pub fn json_message(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let inner = s.strip_prefix("{\"message\":\"")?.strip_suffix("\"}")?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// The recording test backend

/// One request as the backend received it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Index of the backend connection it came on (0 = first accepted).
    pub conn: usize,
    /// Index of the request on its connection.
    pub seq: usize,
    /// The exact bytes of the request: head and body as framed on the wire.
    pub raw: Vec<u8>,
    /// The head bytes, blank line included.
    pub head_raw: Vec<u8>,
    pub head: Head,
    pub method: String,
    pub target: String,
    pub version: String,
    /// The body as framed on the wire (chunk sizes included when chunked).
    pub body_raw: Vec<u8>,
    /// The body's content.
    pub body: Vec<u8>,
    pub chunked: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.head.header_all(name)
    }

    /// The `X-Api-RequestId` the gateway sent.
    pub fn request_id(&self) -> String {
        self.header("x-api-requestid")
            .unwrap_or_else(|| panic!("backend request without X-Api-RequestId:\n{}", self.text()))
            .to_string()
    }

    /// The head as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.head_raw).into_owned()
    }
}

/// A one-shot latch: a reply part waits on it until the test opens it (or 30 s pass).
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    /// Waits until open (or `timeout`); true when open.
    pub fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut open = self.0.0.lock().unwrap();
        while !*open {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            open = self.0.1.wait_timeout(open, deadline - now).unwrap().0;
        }
        true
    }
}

/// One piece of a reply: wait for the gate (if any), then the delay, then write.
#[derive(Clone, Debug, Default)]
pub struct Part {
    pub gate: Option<Gate>,
    pub delay: Duration,
    pub bytes: Vec<u8>,
}

/// What the backend does with a request.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// Written one after the other.
    pub parts: Vec<Part>,
    /// Close the connection after writing (without saying so in the response).
    pub close: bool,
    /// After writing, shut down the sending side only (the gateway sees FIN) and keep
    /// reading: whatever arrives afterwards is recorded in `raw` and never answered.
    pub half_close: bool,
    /// Never answer: keep the connection open and silent (still recording what arrives).
    pub never: bool,
}

impl Reply {
    /// Exactly these bytes.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply {
            parts: vec![Part {
                bytes: bytes.into(),
                ..Part::default()
            }],
            ..Reply::default()
        }
    }

    /// `200 OK` with a Content-Length body.
    pub fn ok(body: impl AsRef<[u8]>) -> Reply {
        Reply::status(200, "OK", body)
    }

    /// A Content-Length response.
    pub fn status(code: u16, reason: &str, body: impl AsRef<[u8]>) -> Reply {
        let body = body.as_ref();
        let mut b = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        b.extend_from_slice(body);
        Reply::raw(b)
    }

    pub fn never() -> Reply {
        Reply {
            never: true,
            ..Reply::default()
        }
    }

    /// Waits `d` before writing the first part.
    pub fn delay(mut self, d: Duration) -> Reply {
        if let Some(p) = self.parts.first_mut() {
            p.delay = d;
        }
        self
    }

    /// Holds the first part until `gate` opens.
    pub fn after(mut self, gate: &Gate) -> Reply {
        if let Some(p) = self.parts.first_mut() {
            p.gate = Some(gate.clone());
        }
        self
    }

    /// Then writes `bytes` after a further `d`.
    pub fn then(mut self, d: Duration, bytes: impl Into<Vec<u8>>) -> Reply {
        self.parts.push(Part {
            gate: None,
            delay: d,
            bytes: bytes.into(),
        });
        self
    }

    /// Then writes `bytes` once `gate` opens.
    pub fn then_after(mut self, gate: &Gate, bytes: impl Into<Vec<u8>>) -> Reply {
        self.parts.push(Part {
            gate: Some(gate.clone()),
            delay: Duration::ZERO,
            bytes: bytes.into(),
        });
        self
    }

    /// Closes the connection after answering.
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    /// Half-closes the connection after answering (see the `half_close` field).
    pub fn half_close(mut self) -> Reply {
        self.half_close = true;
        self
    }
}

type Responder = dyn Fn(&Request) -> Reply + Send + Sync;

/// One accepted backend connection.
#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    /// Every byte received, in order.
    pub raw: Vec<u8>,
    pub requests: Vec<Request>,
    /// The peer closed (or the backend closed it).
    pub closed: bool,
    /// Set by [`Reply::half_close`]: how many bytes of `raw` had arrived when the backend
    /// shut down its sending side. Bytes of `raw` past it were sent by the gateway after
    /// that FIN.
    pub half_closed_at: Option<usize>,
    /// The backend could not parse what it received.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
pub struct BackendState {
    pub conns: Vec<ConnRecord>,
}

impl BackendState {
    pub fn requests(&self) -> Vec<Request> {
        let mut all: Vec<Request> = self
            .conns
            .iter()
            .flat_map(|c| c.requests.iter().cloned())
            .collect();
        all.sort_by_key(|r| (r.conn, r.seq));
        all
    }

    pub fn request_count(&self) -> usize {
        self.conns.iter().map(|c| c.requests.len()).sum()
    }

    pub fn bytes_received(&self) -> usize {
        self.conns.iter().map(|c| c.raw.len()).sum()
    }
}

struct Shared {
    state: Mutex<BackendState>,
    changed: Condvar,
    stop: AtomicBool,
    responder: Box<Responder>,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut BackendState)) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    /// Waits for the gate, at most 30 s, giving up when the backend stops.
    fn wait_gate(&self, g: &Gate) {
        let end = Instant::now() + Duration::from_secs(30);
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < end {
            if g.wait(Duration::from_millis(20)) {
                return;
            }
        }
    }

    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= end {
                break;
            }
            thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

/// A recording HTTP/1.1 backend on 127.0.0.1 (one thread per connection).
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl Backend {
    /// Answers every request with `responder`'s reply.
    pub fn start(responder: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(BackendState::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            responder: Box::new(responder),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let mut index = 0;
                s.update(|st| {
                    index = st.conns.len();
                    st.conns.push(ConnRecord::default());
                });
                let s = s.clone();
                thread::spawn(move || serve_connection(&s, stream, index));
            }
        });
        Backend {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// `200 OK` with body `ok` to everything.
    pub fn ok() -> Backend {
        Backend::start(|_| Reply::ok("ok"))
    }

    /// The replies in order; `200 OK` `ok` once they run out.
    pub fn queue(replies: Vec<Reply>) -> Backend {
        let q = Mutex::new(VecDeque::from(replies));
        Backend::start(move |_| {
            q.lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Reply::ok("ok"))
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.state.lock().unwrap().conns.len()
    }

    /// Every complete request, by connection then order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.state.lock().unwrap().requests()
    }

    /// The bytes received on connection `i`.
    pub fn raw(&self, i: usize) -> Vec<u8> {
        self.shared.state.lock().unwrap().conns[i].raw.clone()
    }

    pub fn bytes_received(&self) -> usize {
        self.shared.state.lock().unwrap().bytes_received()
    }

    /// A copy of the whole state.
    pub fn snapshot(&self) -> Vec<ConnRecord> {
        self.shared.state.lock().unwrap().conns.clone()
    }

    /// Waits until `cond` holds; false on timeout.
    pub fn wait_until(&self, timeout: Duration, cond: impl Fn(&BackendState) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if cond(&st) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap()
                .0;
        }
    }

    /// Waits (bounded) for `n` complete requests and returns them all.
    pub fn wait_requests(&self, n: usize) -> Vec<Request> {
        if !self.wait_until(READ_TIMEOUT, |s| s.request_count() >= n) {
            let st = self.shared.state.lock().unwrap();
            panic!(
                "backend: expected {n} requests within {READ_TIMEOUT:?}, got {}; connections: {:?}",
                st.request_count(),
                st.conns
                    .iter()
                    .map(|c| (
                        String::from_utf8_lossy(&c.raw[..c.raw.len().min(2000)]).into_owned(),
                        c.error.clone()
                    ))
                    .collect::<Vec<_>>()
            );
        }
        self.requests()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve_connection(s: &Shared, mut stream: TcpStream, index: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(20)));
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::new();
    let mut silent = false;
    let mut seq = 0;
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        // Answer every complete request already buffered.
        while !silent {
            match take_request(&mut buf) {
                Ok(None) => break,
                Err(e) => {
                    s.update(|st| st.conns[index].error = Some(e));
                    silent = true;
                }
                Ok(Some(parts)) => {
                    let req = parts.into_request(index, seq);
                    seq += 1;
                    let reply = (s.responder)(&req);
                    s.update(|st| st.conns[index].requests.push(req));
                    if reply.never {
                        silent = true;
                        break;
                    }
                    for p in &reply.parts {
                        if let Some(g) = &p.gate {
                            s.wait_gate(g);
                        }
                        s.sleep(p.delay);
                        if s.stop.load(Ordering::Relaxed) || stream.write_all(&p.bytes).is_err() {
                            break;
                        }
                    }
                    let _ = stream.flush();
                    if reply.close {
                        let _ = stream.shutdown(Shutdown::Both);
                        s.update(|st| st.conns[index].closed = true);
                        return;
                    }
                    if reply.half_close {
                        let _ = stream.shutdown(Shutdown::Write);
                        s.update(|st| {
                            let c = &mut st.conns[index];
                            c.half_closed_at = Some(c.raw.len());
                        });
                        // Keep reading and recording, answer nothing more.
                        silent = true;
                        break;
                    }
                }
            }
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        match stream.read(&mut tmp) {
            Ok(0) => {
                s.update(|st| st.conns[index].closed = true);
                return;
            }
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                s.update(|st| st.conns[index].raw.extend_from_slice(&tmp[..n]));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                s.update(|st| st.conns[index].closed = true);
                return;
            }
        }
    }
}

struct RawRequest {
    raw: Vec<u8>,
    head_len: usize,
    head: Head,
    body: Vec<u8>,
    chunked: bool,
}

impl RawRequest {
    fn into_request(self, conn: usize, seq: usize) -> Request {
        let mut words = self.head.start_line.splitn(3, ' ');
        let method = words.next().unwrap_or_default().to_string();
        let target = words.next().unwrap_or_default().to_string();
        let version = words.next().unwrap_or_default().to_string();
        Request {
            conn,
            seq,
            head_raw: self.raw[..self.head_len].to_vec(),
            body_raw: self.raw[self.head_len..].to_vec(),
            raw: self.raw,
            head: self.head,
            method,
            target,
            version,
            body: self.body,
            chunked: self.chunked,
        }
    }
}

/// Takes one complete request off the front of `buf`.
fn take_request(buf: &mut Vec<u8>) -> Result<Option<RawRequest>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head_len = end + 4;
    let head = Head::parse(&buf[..head_len])?;
    let (body_len, body, chunked) = if head.header("transfer-encoding").is_some() {
        if !head.is_chunked() {
            return Err("Transfer-Encoding not ending in chunked".into());
        }
        match parse_chunked(&buf[head_len..])? {
            None => return Ok(None),
            Some((n, body)) => (n, body, true),
        }
    } else if let Some(v) = head.header("content-length") {
        let n: usize = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
        if buf.len() < head_len + n {
            return Ok(None);
        }
        (n, buf[head_len..head_len + n].to_vec(), false)
    } else {
        (0, Vec::new(), false)
    };
    let raw: Vec<u8> = buf.drain(..head_len + body_len).collect();
    Ok(Some(RawRequest {
        raw,
        head_len,
        head,
        body,
        chunked,
    }))
}

// ---------------------------------------------------------------------------------------
// The raw client

/// One response as the client received it.
#[derive(Clone, Debug, Default)]
pub struct Response {
    pub version: String,
    pub status: u16,
    /// The whole status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub head: Head,
    pub head_raw: Vec<u8>,
    /// The body as framed on the wire.
    pub body_raw: Vec<u8>,
    /// The body's content.
    pub body: Vec<u8>,
    pub chunked: bool,
    /// The body ran until the connection closed.
    pub close_delimited: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.head.header_all(name)
    }

    /// `Connection: close` is present.
    pub fn closes(&self) -> bool {
        self.head.has_token("connection", "close")
    }

    pub fn request_id(&self) -> String {
        self.header("x-api-requestid")
            .unwrap_or_else(|| panic!("response without X-Api-RequestId:\n{}", self.text()))
            .to_string()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Head and (up to 2000 bytes of) body, for messages.
    pub fn text(&self) -> String {
        let n = self.body.len().min(2000);
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.head_raw),
            String::from_utf8_lossy(&self.body[..n])
        )
    }

    /// Headers other than those named, as `(name, value)` in order.
    pub fn headers_without(&self, names: &[&str]) -> Vec<(String, String)> {
        self.head
            .headers
            .iter()
            .filter(|(n, _)| !names.iter().any(|x| n.eq_ignore_ascii_case(x)))
            .cloned()
            .collect()
    }

    /// Checks a gateway-made JSON error: status, `Content-Type: application/json`, a
    /// Content-Length that fits, an `X-Api-RequestId`, a `{"message":...}` body. Returns
    /// the message, or what is wrong.
    pub fn check_gateway_error(&self, status: u16) -> Result<String, String> {
        let text = self.text();
        if self.status != status {
            return Err(format!(
                "status {}, want {status}; response:\n{text}",
                self.status
            ));
        }
        if self.header("content-type") != Some("application/json") {
            return Err(format!(
                "Content-Type is not application/json; response:\n{text}"
            ));
        }
        if self.head.content_length() != Some(self.body.len() as u64) {
            return Err(format!("bad Content-Length; response:\n{text}"));
        }
        if self.header("x-api-requestid").is_none_or(str::is_empty) {
            return Err(format!("no X-Api-RequestId; response:\n{text}"));
        }
        json_message(&self.body)
            .ok_or_else(|| format!("body is not {{\"message\":...}}; response:\n{text}"))
    }

    /// [`Response::check_gateway_error`], panicking with `ctx` in the message.
    pub fn assert_gateway_error(&self, status: u16, ctx: &str) -> String {
        self.check_gateway_error(status)
            .unwrap_or_else(|e| panic!("[{ctx}] {e}"))
    }
}

/// Why a read ended early.
#[derive(Debug)]
pub enum ReadEnd {
    Eof,
    Timeout,
}

/// A raw HTTP/1.1 client connection; every read has a deadline.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The connection was reset by the peer (reads then count as EOF).
    pub reset: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_write_timeout(Some(Duration::from_secs(20)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            buf: Vec::new(),
            reset: false,
        })
    }

    /// Writes all of `bytes`, panicking on failure.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .unwrap_or_else(|e| panic!("client write failed: {e}"));
    }

    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> io::Result<()> {
        self.stream.write_all(bytes.as_ref())
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads more into the buffer: the number of bytes (0 = EOF or reset).
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadEnd> {
        let now = Instant::now();
        if now >= deadline {
            return Err(ReadEnd::Timeout);
        }
        self.stream
            .set_read_timeout(Some((deadline - now).max(Duration::from_millis(1))))
            .unwrap();
        let mut tmp = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(n) => {
                    self.buf.extend_from_slice(&tmp[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ReadEnd::Timeout);
                }
                Err(_) => {
                    self.reset = true;
                    return Ok(0);
                }
            }
        }
    }

    /// Reads until `n` bytes are buffered.
    fn fill_to(&mut self, n: usize, deadline: Instant, what: &str) -> Result<(), String> {
        while self.buf.len() < n {
            match self.fill(deadline) {
                Ok(0) => {
                    return Err(format!(
                        "EOF while reading {what}; buffered {}",
                        self.show()
                    ));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "timed out reading {what}; buffered {}",
                        self.show()
                    ));
                }
            }
        }
        Ok(())
    }

    fn show(&self) -> String {
        let n = self.buf.len().min(2000);
        format!(
            "{} bytes: {:?}",
            self.buf.len(),
            String::from_utf8_lossy(&self.buf[..n])
        )
    }

    /// Reads until the buffered bytes contain `needle` (consuming nothing); false on EOF or
    /// when `timeout` passes.
    pub fn wait_for_bytes(&mut self, needle: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while find(&self.buf, needle).is_none() {
            match self.fill(deadline) {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    }

    /// Reads exactly `n` bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + READ_TIMEOUT;
        self.fill_to(n, deadline, &format!("{n} bytes"))
            .unwrap_or_else(|e| panic!("{e}"));
        self.buf.drain(..n).collect()
    }

    /// One response (an interim 1xx is a response of its own), for a non-HEAD request.
    pub fn read_response(&mut self) -> Response {
        self.try_read_response(false, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// One response to a HEAD request (no body, whatever the head says).
    pub fn read_head_response(&mut self) -> Response {
        self.try_read_response(true, READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next final response, skipping (and returning) any 1xx before it.
    pub fn read_final_response(&mut self) -> (Vec<Response>, Response) {
        let mut interim = Vec::new();
        loop {
            let r = self.read_response();
            if (100..200).contains(&r.status) && r.status != 101 {
                interim.push(r);
            } else {
                return (interim, r);
            }
        }
    }

    pub fn try_read_response(
        &mut self,
        head_request: bool,
        timeout: Duration,
    ) -> Result<Response, String> {
        let deadline = Instant::now() + timeout;
        let head_len = loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                break end + 4;
            }
            match self.fill(deadline) {
                Ok(0) => {
                    return Err(format!(
                        "EOF before a complete response head; buffered {}",
                        self.show()
                    ));
                }
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "no complete response head within {timeout:?}; buffered {}",
                        self.show()
                    ));
                }
            }
        };
        let head_raw: Vec<u8> = self.buf.drain(..head_len).collect();
        let head = Head::parse(&head_raw)?;
        let mut words = head.start_line.splitn(3, ' ');
        let version = words.next().unwrap_or_default().to_string();
        let status: u16 = words
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {:?}", head.start_line))?;
        let mut r = Response {
            version,
            status,
            status_line: head.start_line.clone(),
            head_raw,
            head,
            ..Response::default()
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(r);
        }
        if r.head.header("transfer-encoding").is_some() && r.head.is_chunked() {
            r.chunked = true;
            loop {
                if let Some((n, body)) = parse_chunked(&self.buf)? {
                    r.body_raw = self.buf.drain(..n).collect();
                    r.body = body;
                    return Ok(r);
                }
                match self.fill(deadline) {
                    Ok(0) => return Err(format!("EOF inside a chunked body; head:\n{}", r.text())),
                    Ok(_) => {}
                    Err(_) => {
                        return Err(format!(
                            "timed out inside a chunked body; head:\n{}",
                            r.text()
                        ));
                    }
                }
            }
        }
        if let Some(v) = r.head.header("content-length") {
            let n: usize = v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            self.fill_to(n, deadline, "the response body")
                .map_err(|e| format!("{e}; head:\n{}", r.text()))?;
            r.body_raw = self.buf.drain(..n).collect();
            r.body = r.body_raw.clone();
            return Ok(r);
        }
        // Until close.
        loop {
            match self.fill(deadline) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => {
                    return Err(format!(
                        "close-delimited body not closed within {timeout:?}; head:\n{}",
                        r.text()
                    ));
                }
            }
        }
        r.body_raw = std::mem::take(&mut self.buf);
        r.body = r.body_raw.clone();
        r.close_delimited = true;
        Ok(r)
    }

    /// Asserts that nothing more arrives and the peer closes (EOF or reset) within 10 s.
    pub fn expect_closed(&mut self) {
        assert!(
            self.buf.is_empty(),
            "expected the connection to close, but more bytes came: {}",
            self.show()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        match self.fill(deadline) {
            Ok(0) => {}
            Ok(_) => panic!(
                "expected the connection to close, but more bytes came: {}",
                self.show()
            ),
            Err(_) => panic!("expected the connection to close; it is still open after 10 s"),
        }
    }

    /// Waits up to `timeout` for EOF: `Ok(())` on EOF with no bytes, `Err` otherwise.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!("bytes arrived: {}", self.show()));
        }
        match self.fill(Instant::now() + timeout) {
            Ok(0) => Ok(()),
            Ok(_) => Err(format!("bytes arrived: {}", self.show())),
            Err(_) => Err(format!("still open after {timeout:?}")),
        }
    }

    /// Asserts that for `d` nothing arrives and the connection stays open.
    pub fn expect_open_for(&mut self, d: Duration) {
        match self.fill(Instant::now() + d) {
            Err(ReadEnd::Timeout) if self.buf.is_empty() => {}
            Err(_) => panic!("unexpected bytes: {}", self.show()),
            Ok(0) => panic!("connection closed by the peer"),
            Ok(_) => panic!("unexpected bytes: {}", self.show()),
        }
    }

    /// Reads everything until the peer closes (bounded).
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            match self.fill(deadline) {
                Ok(0) => return std::mem::take(&mut self.buf),
                Ok(_) => {}
                Err(_) => panic!(
                    "not closed within {READ_TIMEOUT:?}; buffered {}",
                    self.show()
                ),
            }
        }
    }

    /// Sends `request` and reads the response.
    pub fn roundtrip(&mut self, request: impl AsRef<[u8]>) -> Response {
        self.send(request);
        self.read_response()
    }
}

/// The JSON lines of a log file once there are at least `n` (the workers flush every few
/// tens of milliseconds), or what there is after 15 s.
pub fn read_json_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A simple `GET path` with `Host: example.test`.
pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: example.test\r\n\r\n").into_bytes()
}

/// A request with a Content-Length body.
pub fn with_body(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nHost: example.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

// ---------------------------------------------------------------------------------------
// The admin listener

/// One GET to the admin listener: (status, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
        .unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The gateway's admin address, from its `ringway: listening admin ADDR` line.
pub fn admin_addr(gw: &Gateway) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(addr) = gw
            .stderr()
            .lines()
            .find_map(|l| l.strip_prefix("ringway: listening admin "))
            .and_then(|a| a.trim().parse().ok())
        {
            return addr;
        }
        assert!(Instant::now() < deadline, "no admin line:\n{}", gw.stderr());
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn with_admin(toml: &str) -> String {
    toml.replace("admin_listen = \"off\"", "admin_listen = \"127.0.0.1:0\"")
}

/// The value of `series` (name and labels exactly as printed) on the admin listener's
/// `/metrics` now.
pub fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (status, text) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Waits until `series` reads `want` (bounded by `within`).
pub fn wait_metric(admin: SocketAddr, series: &str, want: f64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(admin, series);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "{series} is {v}, want {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the sample `series` (name and labels exactly as printed).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

// ---------------------------------------------------------------------------------------
// Clients from other loopback addresses

impl Client {
    /// [`Client::connect`] from `source` (any port): another client IP on the loopback
    /// network (`127.0.0.2`, ...), for per-IP limits.
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        let connect = || -> io::Result<TcpStream> {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            s.bind(&SocketAddr::new(source, 0).into())?;
            s.connect_timeout(&addr.into(), Duration::from_secs(5))?;
            Ok(s.into())
        };
        let stream = connect().unwrap_or_else(|e| panic!("connect to {addr} from {source}: {e}"));
        stream
            .set_write_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            reset: false,
        }
    }
}

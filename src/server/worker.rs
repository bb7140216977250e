//! One worker: a thread with its own monoio runtime (io_uring, or the legacy epoll driver
//! where io_uring is unavailable), pinned to a core, accepting on its own `SO_REUSEPORT`
//! sockets and serving every connection it accepts to the end. Nothing on the request path
//! is shared between workers except two atomics (the configuration generation and the
//! process connection count).
//!
//! The worker's state (snapshot, pools, buffers, log) is [`crate::runtime::Worker`]; this
//! file starts the thread and its runtime, runs the accept loops and the housekeeping task.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};
use monoio::time::Instant;

use crate::error::{ErrorKind, GatewayError};
use crate::http::reply::write_error;
use crate::proxy::io::write_all_until;
use crate::proxy::request::Request;
use crate::proxy::{conn, h2};
use crate::runtime::access_log::Start;
use crate::runtime::metrics::{AcceptError, Refusal, TlsOutcome};
use crate::runtime::summary::Summary;
use crate::runtime::{Shared, Worker};
use crate::server::proxy_header;
use crate::tls::stream::{HandshakeError, TlsStream};

/// io_uring submission queue entries per worker.
pub const URING_ENTRIES: u32 = 4096;
/// How often a worker looks for a stop request and flushes its access log.
pub const STOP_POLL: Duration = Duration::from_millis(50);
/// How often idle upstream connections past their idle timeout are closed.
pub const POOL_SWEEP: Duration = Duration::from_secs(1);
/// Pause after an accept error such as EMFILE, so the loop does not spin.
pub const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);
/// How long a refused (over `max_connections`) client gets to take its 503.
pub const REFUSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// The most connections one accept error takes off its listener with the spare descriptor
/// (the rest wait for the next round, after [`ACCEPT_ERROR_PAUSE`]).
pub const REFUSE_BATCH: usize = 256;

/// Everything a worker thread starts with.
pub struct WorkerSpec {
    pub index: usize,
    pub cpu: Option<usize>,
    /// `(listener, https)`.
    pub listeners: Vec<(std::net::TcpListener, bool)>,
    pub shared: Arc<Shared>,
}

/// The longest a worker's exit waits to give its Redis leases back.
const FLEET_RETURN_LIMIT: Duration = Duration::from_secs(2);

/// Runs a worker to the end of its drain. `ready` is called once the runtime is up (with the
/// driver's name) or failed to start.
pub fn run(spec: WorkerSpec, ready: impl FnOnce(Result<&'static str, String>)) {
    if let Some(cpu) = spec.cpu
        && let Err(e) = monoio::utils::bind_to_cpu_set([cpu])
    {
        crate::say!(warn, "worker {} not pinned to CPU {cpu}: {e:?}", spec.index);
    }
    let driver = if monoio::utils::detect_uring() {
        "io_uring"
    } else {
        "legacy (io_uring unavailable)"
    };
    // Cooperative task running: completions are handled when the worker next enters the
    // kernel instead of by interrupting it (fewer IPIs; measured 3-6% less CPU per request).
    // Kernels before 5.19 refuse the flag, so fall back to a plain ring.
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun();
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(URING_ENTRIES)
        .uring_builder(coop)
        .enable_timer()
        .build()
        .or_else(|_| {
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build()
        });
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            return ready(Err(format!(
                "worker {}: cannot start its runtime: {e}",
                spec.index
            )));
        }
    };
    runtime.block_on(async move {
        let worker = match Worker::new(spec.index, spec.shared.clone()) {
            Ok(w) => Rc::new(w),
            Err(e) => return ready(Err(format!("worker {}: {e}", spec.index))),
        };
        let mut listeners = Vec::new();
        for (l, https) in spec.listeners {
            match TcpListener::from_std(l) {
                Ok(l) => listeners.push((l, https)),
                Err(e) => return ready(Err(format!("worker {}: listener: {e}", spec.index))),
            }
        }
        let admission = Rc::new(Admission::new(worker.index));
        ready(Ok(driver));
        let accepts: Vec<_> = listeners
            .into_iter()
            .map(|(l, https)| {
                monoio::spawn(accept_loop(l, https, worker.clone(), admission.clone()))
            })
            .collect();
        monoio::spawn(housekeeping(worker.clone(), admission));
        monoio::spawn(idle_watch(worker.clone()));
        worker.unlisten.wait().await;
        for a in accepts {
            a.await;
        }
        worker.shared.unlistened.fetch_add(1, Ordering::AcqRel);
        worker.drain.wait().await;
        let grace = worker.snapshot().config.server.shutdown_grace;
        let linger = worker.linger_deadline(grace);
        monoio::spawn(fire_linger(worker.clone(), linger));
        let deadline = Instant::now() + grace;
        while worker.active.get() > 0 && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        // Grace is over: tunnels still open are cut; they log their line as they end.
        worker.cut.fire();
        let deadline = Instant::now() + CUT_SLACK;
        while worker.active.get() > 0 && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        for pool in &worker.snapshot().pools {
            pool.clear();
        }
        // Quota blocks and rate tokens this worker holds go back to Redis (each call is
        // bounded by `redis_timeout_ms`).
        let fleet = worker.fleet.borrow().clone();
        if let Some(f) = fleet {
            let _ = monoio::time::timeout(FLEET_RETURN_LIMIT, f.sweep(true)).await;
        }
        worker.log.flush();
    });
}

/// Ends the drain's linger for idle connections at `at` (see [`Worker::linger`]).
async fn fire_linger(worker: Rc<Worker>, at: Instant) {
    monoio::time::sleep_until(at).await;
    worker.linger.fire();
}

/// After the grace period, how long cut tunnels get to end and log.
const CUT_SLACK: Duration = Duration::from_millis(200);

/// When a worker's connection count has moved by this much since its last trim (clients
/// came and went idle into the idle set, or left), housekeeping gives free heap memory
/// back to the OS (`malloc_trim`): the tasks those connections held while busy are free now,
/// and glibc would keep their pages.
const TRIM_AFTER_CONNECTIONS: usize = 1024;
/// A smaller move also trims once the counts have held still for [`TRIM_EVERY`]: the tail of
/// a burst (the connections that went idle after the last trim) is given back too.
const TRIM_SETTLED_AFTER: usize = 64;
/// At most one trim per worker this often.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// When housekeeping gives free heap memory back: after a large move of the connection
/// counts (active, parked in the idle set), or a smaller one that has settled.
#[derive(Debug)]
struct TrimPolicy {
    /// When the last trim ran and the counts it saw.
    trimmed: (Instant, usize, usize),
    /// The counts of the previous tick and since when they have not changed.
    seen: (usize, usize),
    still_since: Instant,
}

impl TrimPolicy {
    fn new(now: Instant) -> TrimPolicy {
        TrimPolicy {
            trimmed: (now, 0, 0),
            seen: (0, 0),
            still_since: now,
        }
    }

    /// Called every tick with the counts; `true` when a trim is due (and recorded as done).
    fn due(&mut self, now: Instant, active: usize, parked: usize) -> bool {
        if self.seen != (active, parked) {
            self.seen = (active, parked);
            self.still_since = now;
        }
        let (at, was_active, was_parked) = self.trimmed;
        let moved = active.abs_diff(was_active).max(parked.abs_diff(was_parked));
        let settled = now.saturating_duration_since(self.still_since) >= TRIM_EVERY;
        let due = now.saturating_duration_since(at) >= TRIM_EVERY
            && (moved >= TRIM_AFTER_CONNECTIONS || (settled && moved >= TRIM_SETTLED_AFTER));
        if due {
            self.trimmed = (now, active, parked);
        }
        due
    }
}

/// Watches for a stop request and sweeps the upstream pools.
async fn housekeeping(worker: Rc<Worker>, admission: Rc<Admission>) {
    let mut last_sweep = Instant::now();
    let mut trim = TrimPolicy::new(Instant::now());
    loop {
        monoio::time::sleep(STOP_POLL).await;
        worker.log.flush();
        worker.tls_failures.report(worker.index);
        worker.proxy_failures.report(worker.index);
        admission.report(worker.index);
        if worker.shared.stopping.load(Ordering::Acquire) && !worker.unlisten.is_fired() {
            worker.unlisten.fire();
        }
        if worker.shared.draining.load(Ordering::Acquire) {
            worker.drain.fire();
            return;
        }
        // Picks up a reloaded configuration even with no request coming (retiring the
        // pools of changed upstreams, letting the old configuration go).
        let snapshot = worker.snapshot();
        let metrics = worker.metrics();
        let now = Instant::now();
        metrics.set_pool_gauges(snapshot.pools.iter().enumerate().map(|(i, p)| {
            (
                snapshot.slots.upstream(i),
                p.idle_count(),
                p.down_count(now),
            )
        }));
        metrics.bytes(worker.take_bytes());
        let now = Instant::now();
        for _ in 0..worker.idle.expire(now) {
            worker.connection_ended();
        }
        let parked = worker.idle.len();
        metrics.set_parked(parked);
        let active = worker.active.get();
        if trim.due(now, active, parked) {
            worker.idle.shrink_to_fit();
            // SAFETY: malloc_trim only releases free memory; any thread may call it.
            unsafe { libc::malloc_trim(0) };
        }
        if now.saturating_duration_since(last_sweep) >= POOL_SWEEP {
            for pool in &worker.snapshot().pools {
                pool.sweep(now);
            }
            last_sweep = now;
        }
    }
}

/// Decrements the connection counts when a connection task ends, however it ends, unless
/// the connection went on to the idle set ([`Counted::keep`]), which then owns its count.
struct Counted(Option<Rc<Worker>>);

impl Counted {
    fn worker(&self) -> Rc<Worker> {
        match &self.0 {
            Some(w) => w.clone(),
            None => unreachable!("a kept count is not used again"),
        }
    }

    /// The connection lives on in the idle set: its count stays.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.connection_ended();
        }
    }
}

/// A new plain connection's task: its PROXY protocol header first when the listeners expect
/// one (the header's source is the client from then on), then [`serve_plain`].
async fn serve_new_plain(mut stream: TcpStream, peer: std::net::SocketAddr, guard: Counted) {
    let worker = guard.worker();
    let (proxy_protocol, timeout) = {
        let snapshot = worker.snapshot();
        let server = &snapshot.config.server;
        (server.proxy_protocol, server.header_timeout)
    };
    let deadline = Instant::now() + timeout;
    let (peer, rest) = if proxy_protocol {
        match proxy_header::read(&mut stream, peer, &worker, deadline).await {
            Some(got) => got,
            None => return,
        }
    } else {
        (peer, Vec::new())
    };
    if !worker.snapshot().config.server.h2c {
        return serve_plain(stream, peer, guard, rest).await;
    }
    // h2c: a connection that starts with the HTTP/2 preface is HTTP/2; the bytes read to
    // tell go on to whichever protocol it is.
    let Some(first) = read_preface(&mut stream, rest, deadline).await else {
        return;
    };
    if first.starts_with(h2::PREFACE) {
        let client = h2::Client {
            peer,
            client_ip: peer.ip().to_string(),
            https: false,
            tls: None,
        };
        let (read, write) = monoio::io::Splitable::into_split(stream);
        h2::serve(read, write, first, client, worker).await;
        return;
    }
    serve_plain(stream, peer, guard, first).await;
}

/// Reads until the bytes read either start with the HTTP/2 preface or cannot (`buf`: bytes
/// already read). `None`: the client went away (or sent nothing in time) before a byte.
async fn read_preface(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    deadline: Instant,
) -> Option<Vec<u8>> {
    let n = h2::PREFACE.len();
    if buf.capacity() < conn::INITIAL_READ_BYTES {
        buf.reserve(conn::INITIAL_READ_BYTES - buf.len());
    }
    while buf.len() < n && buf[..] == h2::PREFACE[..buf.len()] {
        match crate::proxy::io::read_until(stream, &mut buf, deadline).await {
            crate::proxy::io::Read::Data(_) => {}
            _ if buf.is_empty() => return None,
            _ => break,
        }
    }
    Some(buf)
}

/// A plain connection's task: served until it closes, or until it idles into the idle set
/// (which keeps `peer`, the client's address, for its return). `buf`: client bytes already
/// read.
async fn serve_plain(stream: TcpStream, peer: std::net::SocketAddr, guard: Counted, buf: Vec<u8>) {
    let worker = guard.worker();
    if let conn::Ended::Idle { fd, deadline } =
        conn::serve(stream, peer, false, worker.clone(), buf).await
    {
        // Draining: a connection idle again is done (its last answer said close anyway).
        if !worker.drain.is_fired() && worker.idle.park(fd, peer, deadline).is_ok() {
            guard.keep();
        }
    }
}

/// Waits for the idle set's sockets to turn readable and gives each back a connection task;
/// when a drain's linger ends, closes the rest. Runs once per worker.
async fn idle_watch(worker: Rc<Worker>) {
    let epoll = worker
        .idle
        .epoll_dup()
        .and_then(|fd| monoio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd)));
    let epoll = match epoll {
        Ok(e) => e,
        Err(e) => {
            crate::say!(
                warn,
                "worker {}: idle set unavailable ({e}); idle connections keep their tasks",
                worker.index
            );
            return;
        }
    };
    worker.idle.set_enabled(true);
    loop {
        let ready = monoio::select! {
            _ = worker.linger.wait() => break,
            r = epoll.readable(false) => r,
        };
        if ready.is_err() {
            monoio::time::sleep(ACCEPT_ERROR_PAUSE).await;
        }
        for (fd, peer) in worker.idle.take_ready() {
            let guard = Counted(Some(worker.clone()));
            match TcpStream::from_std(std::net::TcpStream::from(fd)) {
                Ok(stream) => {
                    // Back from the idle set: `peer` is the client's address (the PROXY
                    // protocol's source when there was one); no header comes again.
                    monoio::spawn(serve_plain(stream, peer, guard, Vec::new()));
                }
                Err(_) => drop(guard),
            }
        }
    }
    worker.idle.set_enabled(false);
    for _ in 0..worker.idle.close_all() {
        worker.connection_ended();
    }
}

async fn accept_loop(
    listener: TcpListener,
    https: bool,
    worker: Rc<Worker>,
    admission: Rc<Admission>,
) {
    // A stop cancels the accept in flight, and the loop still awaits it: an accept the
    // kernel completed just before the cancel hands over its connection instead of leaking
    // it (a dropped accept op would lose the descriptor, and the client would hang).
    let canceller = monoio::io::Canceller::new();
    let handle = canceller.handle();
    let w = worker.clone();
    monoio::spawn(async move {
        w.unlisten.wait().await;
        canceller.cancel();
    });
    while !worker.unlisten.is_fired() {
        match listener.cancelable_accept(handle.clone()).await {
            Ok((stream, peer)) => admit(stream, peer, https, &worker, &admission),
            Err(_) if worker.unlisten.is_fired() => break,
            Err(e) => {
                if admission.accept_failed(&e, listener.as_raw_fd(), https, &worker) {
                    monoio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }
    // Stopping: the connections already queued in the kernel were made to this process
    // and would be reset when the listener closes; serve them (once the drain begins, with
    // `Connection: close`), then close the listener.
    let fd = listener.as_raw_fd();
    loop {
        let std_stream = match accept_now(fd, 0) {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors: the spare answers what is still queued.
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                    admission.accept_failed(&e, fd, https, &worker);
                }
                break;
            }
        };
        let Ok(peer) = std_stream.peer_addr() else {
            continue;
        };
        if let Ok(stream) = TcpStream::from_std(std_stream) {
            admit(stream, peer, https, &worker, &admission);
        }
    }
}

/// A new connection: counted and given its task, or refused past `max_connections`.
fn admit(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    https: bool,
    worker: &Rc<Worker>,
    admission: &Admission,
) {
    let _ = stream.set_nodelay(true);
    let max = worker.snapshot().config.server.max_connections;
    if worker.shared.connections.fetch_add(1, Ordering::AcqRel) >= max {
        worker.shared.connections.fetch_sub(1, Ordering::AcqRel);
        worker.metrics().refused(Refusal::MaxConnections);
        admission.refusals.add(0, |last| {
            let _ = write!(last, "over max_connections ({max})");
        });
        admission.report(worker.index);
        if !https {
            monoio::spawn(refuse(stream, peer, worker.clone()));
        }
        // On an HTTPS listener there is no plaintext answer to give: just close.
        return;
    }
    worker.active.set(worker.active.get() + 1);
    let guard = Counted(Some(worker.clone()));
    // Two spawns, not one future with an `if`: a task is allocated at the size of its
    // largest state, and a plain connection should not carry room for a TLS handshake.
    if https {
        monoio::spawn(async move {
            serve_tls(stream, peer, guard.worker()).await;
            drop(guard);
        });
    } else {
        monoio::spawn(serve_new_plain(stream, peer, guard));
    }
}

/// An HTTPS connection: the PROXY protocol header when the listeners expect one, and the
/// handshake, both within the header timeout, then the one connection pipeline over TLS. A
/// missing header, or a failed or late handshake, just ends the connection.
async fn serve_tls(mut stream: TcpStream, peer: std::net::SocketAddr, worker: Rc<Worker>) {
    let (config, timeout, proxy_protocol) = {
        let snapshot = worker.snapshot();
        let server = &snapshot.config.server;
        (
            snapshot.config.tls.clone(),
            server.header_timeout,
            server.proxy_protocol,
        )
    };
    let Some(config) = config else { return };
    let deadline = Instant::now() + timeout;
    let (peer, read) = if proxy_protocol {
        match proxy_header::read(&mut stream, peer, &worker, deadline).await {
            Some(got) => got,
            None => return,
        }
    } else {
        (peer, Vec::new())
    };
    let handshake = monoio::select! {
        _ = worker.linger.wait() => return,
        r = monoio::time::timeout_at(deadline, TlsStream::accept(stream, config, read)) => r,
    };
    match handshake {
        Ok(Ok(tls)) => {
            worker.metrics().tls(TlsOutcome::Done);
            if tls.alpn_protocol() == Some(b"h2") {
                let client = h2::Client {
                    peer,
                    client_ip: peer.ip().to_string(),
                    https: true,
                    tls: Some((tls.version(), tls.server_name().map(Into::into))),
                };
                let (read, write) = tls.into_halves();
                h2::serve(read, write, Vec::new(), client, worker).await;
                return;
            }
            // A TLS connection never leaves its task for the idle set.
            conn::serve(tls, peer, true, worker, Vec::new()).await;
        }
        Ok(Err(e)) => {
            worker.metrics().tls(match e {
                HandshakeError::NoServerName => TlsOutcome::NoServerName,
                _ if e.is_unknown_name() => TlsOutcome::UnknownName,
                _ => TlsOutcome::Protocol,
            });
            worker.tls_failures.failed(worker.index, &e)
        }
        Err(_) => {
            worker.metrics().tls(TlsOutcome::Timeout);
            worker.tls_failures.failed_late(worker.index)
        }
    }
}

/// Past `max_connections`: a 503 and close, logged and counted as a request (no head was
/// read: method and target are empty).
async fn refuse(mut stream: TcpStream, peer: std::net::SocketAddr, worker: Rc<Worker>) {
    let mut req = Request::begin(&worker, Start::headless(peer, None));
    write_overloaded(&mut req);
    let deadline = Instant::now() + REFUSE_WRITE_TIMEOUT;
    if write_all_until(&mut stream, &mut req.s.out, deadline).await {
        let n = req.s.out.len();
        sent(&mut req, n);
    }
    req.finish();
}

/// The 503 of a refused client, in the request's output buffer.
fn write_overloaded(req: &mut Request) {
    let e = GatewayError::new(ErrorKind::Overloaded);
    req.s.out.clear();
    write_error(&mut req.s.out, &e, &req.s.request_id, false, true, b"");
    req.status = e.status();
}

/// `n` bytes of a refusal written: in the client byte counts and the access-log line.
fn sent(req: &mut Request, n: usize) {
    req.worker.count_out(n);
    req.client_bytes = (0, n as u64);
}

/// A worker's admission state besides the connection counts: its spare descriptor, and
/// what it has to say on stderr about failed accepts and refused clients (a line at most
/// once a second of each, with the count since the last one; the access log and
/// `/metrics` have every one).
///
/// The spare is the reserve-descriptor technique: an `accept` that fails because the
/// process (`EMFILE`) or the system (`ENFILE`) is out of descriptors leaves the client in
/// the listen queue, where it would wait, unanswered, until some connection closes. So
/// the worker closes its spare, takes the waiting clients off the listener one at a time
/// with the descriptor that frees, answers each a 503 (just closes it on an HTTPS
/// listener), closes it, and opens its spare again.
/// One connection off listener `fd`'s queue, now (`accept4`; the listener is
/// non-blocking, so an empty queue is `WouldBlock`), with `flags` besides `SOCK_CLOEXEC`.
fn accept_now(fd: RawFd, flags: libc::c_int) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: accept4 on a listener the calling task owns; null address pointers are allowed.
    let rc = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | flags,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(rc) })
}

/// Does listener `fd` have connections waiting in its accept queue?
fn clients_waiting(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a listener the caller owns; a zero timeout never blocks.
    unsafe { libc::poll(&mut p, 1, 0) > 0 && p.revents & libc::POLLIN != 0 }
}

/// Out of descriptors, how many idle keep-alive connections are closed at once to make room.
const EVICT_BATCH: usize = 16;

struct Admission {
    /// An open `/dev/null`.
    spare: RefCell<Option<std::fs::File>>,
    errors: Summary,
    refusals: Summary,
}

impl Admission {
    fn new(worker: usize) -> Admission {
        let spare = match open_spare() {
            Ok(f) => Some(f),
            Err(e) => {
                crate::say!(
                    warn,
                    "worker {worker}: no spare descriptor ({e}): out of descriptors, new clients will wait instead of getting 503"
                );
                None
            }
        };
        Admission {
            spare: RefCell::new(spare),
            errors: Summary::default(),
            refusals: Summary::default(),
        }
    }

    /// An accept on listener `fd` failed with `e`: counted and summarized; out of
    /// descriptors, the clients waiting are refused with the spare. `true`: pause before
    /// the next accept.
    fn accept_failed(
        &self,
        e: &std::io::Error,
        fd: RawFd,
        https: bool,
        worker: &Rc<Worker>,
    ) -> bool {
        let (error, refusal) = match e.raw_os_error() {
            // A client that left before its accept, an interrupted call: not an error.
            Some(libc::ECONNABORTED | libc::EINTR | libc::EAGAIN) => return false,
            Some(libc::EMFILE) => (AcceptError::Emfile, Some(Refusal::Emfile)),
            Some(libc::ENFILE) => (AcceptError::Enfile, Some(Refusal::Enfile)),
            _ => (AcceptError::Other, None),
        };
        worker.metrics().accept_error(error);
        if refusal.is_some() && clients_waiting(fd) {
            // Out of descriptors: the longest-idle keep-alive connections give theirs to the
            // clients waiting (as nginx reuses keep-alive connections when it runs out);
            // accept again at once. Only with nothing idle to close are clients refused.
            // (io_uring's accept takes its descriptor first, so it fails with no client
            // waiting too: nothing is closed for those.)
            let evicted = worker.idle.evict_oldest(EVICT_BATCH);
            for _ in 0..evicted {
                worker.connection_ended();
            }
            // Then the idle ones still in their tasks; they close when they next run, so
            // pause before accepting again.
            let woken = if evicted == 0 {
                worker.evictions.evict(EVICT_BATCH)
            } else {
                0
            };
            if evicted + woken > 0 {
                worker.metrics().evicted(evicted + woken);
                self.errors.add(0, |last| {
                    let _ = write!(last, "{e}; closed {} idle connection(s)", evicted + woken);
                });
                self.report(worker.index);
                return woken > 0;
            }
        }
        let refused = refusal.map_or(0, |why| self.refuse_waiting(fd, https, worker, why));
        self.errors.add(refused, |last| {
            let _ = write!(last, "{e}");
        });
        self.report(worker.index);
        true
    }

    /// Out of descriptors: closes the spare, refuses the clients waiting on listener `fd`
    /// with the descriptor that frees (at most [`REFUSE_BATCH`]), and opens the spare
    /// again. Another thread may take the freed slot first: then no client is taken this
    /// round (and the spare may stay closed until a later one). How many were refused.
    fn refuse_waiting(&self, fd: RawFd, https: bool, worker: &Rc<Worker>, why: Refusal) -> u64 {
        drop(self.spare.borrow_mut().take());
        let mut refused = 0;
        for _ in 0..REFUSE_BATCH {
            let Ok(client) = accept_now(fd, libc::SOCK_NONBLOCK) else {
                break;
            };
            if let Ok(peer) = client.peer_addr() {
                refuse_now(client, peer, https, worker, why);
                refused += 1;
            }
        }
        *self.spare.borrow_mut() = open_spare().ok();
        refused
    }

    /// Writes the summaries that are due.
    fn report(&self, worker: usize) {
        let now = std::time::Instant::now();
        if let Some((n, refused, last)) = self.errors.take_due(now) {
            let spare = if refused > 0 {
                format!(
                    "; {} refused with the spare descriptor",
                    count(refused, "client")
                )
            } else {
                String::new()
            };
            crate::say!(
                warn,
                "worker {worker}: {} in the last second: {last}{spare}",
                count(n, "accept error")
            );
        }
        if let Some((n, _, last)) = self.refusals.take_due(now) {
            crate::say!(
                warn,
                "worker {worker}: {} refused in the last second: {last}",
                count(n, "connection")
            );
        }
    }
}

fn open_spare() -> std::io::Result<std::fs::File> {
    std::fs::File::open("/dev/null")
}

/// A client refused on the spot, its descriptor closed on return: counted and, on a plain
/// listener, answered 503 (one non-blocking write: the send buffer of a new connection has
/// room for it) and logged.
fn refuse_now(
    client: std::net::TcpStream,
    peer: std::net::SocketAddr,
    https: bool,
    worker: &Rc<Worker>,
    why: Refusal,
) {
    worker.metrics().refused(why);
    if https {
        return;
    }
    let mut req = Request::begin(worker, Start::headless(peer, None));
    write_overloaded(&mut req);
    if let Ok(n) = (&client).write(&req.s.out) {
        sent(&mut req, n);
    }
    req.finish();
}

/// `n` things, as words: "1 accept error", "37 accept errors".
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_words() {
        assert_eq!(count(1, "accept error"), "1 accept error");
        assert_eq!(count(37, "accept error"), "37 accept errors");
        assert_eq!(count(0, "client"), "0 clients");
    }

    /// The clients waiting on a listener are taken with the spare, answered 503 (plain) or
    /// just closed (HTTPS), logged and counted; the spare is open again afterwards.
    #[test]
    fn the_spare_refuses_every_waiting_client() {
        use std::io::Read;
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        let Ok(mut rt) = rt else { return };
        rt.block_on(async {
            let cfg = crate::config::load_str(
                "[server]\nlisten_http = [\"127.0.0.1:0\"]\nadmin_listen = \"off\"\naccess_log = \"off\"\n",
                std::path::Path::new("t.toml"),
            )
            .unwrap();
            let logger = Arc::new(crate::runtime::access_log::Logger::start().unwrap());
            let shared = Arc::new(Shared::new(Arc::new(cfg), 1, logger));
            let worker = Rc::new(Worker::new(0, shared.clone()).unwrap());
            let admission = Admission::new(0);
            assert!(admission.spare.borrow().is_some());
            for https in [false, true] {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                let addr = listener.local_addr().unwrap();
                let mut clients: Vec<_> = (0..3)
                    .map(|_| std::net::TcpStream::connect(addr).unwrap())
                    .collect();
                let n = admission.refuse_waiting(
                    listener.as_raw_fd(),
                    https,
                    &worker,
                    Refusal::Emfile,
                );
                assert_eq!(n, 3);
                assert!(admission.spare.borrow().is_some(), "the spare is back");
                for c in &mut clients {
                    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut got = Vec::new();
                    c.read_to_end(&mut got).unwrap();
                    let text = String::from_utf8_lossy(&got);
                    if https {
                        assert!(got.is_empty(), "{text}");
                    } else {
                        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
                        assert!(text.contains("gateway overloaded"), "{text}");
                    }
                }
            }
            let mut out = String::new();
            let process = crate::runtime::metrics::ProcessValues {
                version: "t",
                client_connections: 0,
                reloads_succeeded: 0,
                reloads_failed: 0,
                last_reload_unix: 0,
                access_log_dropped: 0,
                traffic_store_up: true,
                traffic_store_failures: 0,
            };
            crate::runtime::metrics::render(&shared.metrics, &process, &mut out);
            for line in [
                "ringway_connections_refused_total{reason=\"emfile\"} 6",
                "ringway_requests_total{service=\"\",api=\"\",code=\"503\"} 3",
            ] {
                assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
            }
            assert_eq!(shared.connections.load(Ordering::Acquire), 0);
        });
    }

    /// (milliseconds since start, active, parked, trim expected)
    fn run(steps: &[(u64, usize, usize, bool)]) {
        let t0 = Instant::now();
        let mut policy = TrimPolicy::new(t0);
        for &(ms, active, parked, want) in steps {
            let got = policy.due(t0 + Duration::from_millis(ms), active, parked);
            assert_eq!(
                got, want,
                "at {ms} ms with {active} active, {parked} parked"
            );
        }
    }

    #[test]
    fn a_large_move_trims_at_most_once_a_second() {
        run(&[
            (500, 5000, 0, false), // within the first second
            (1000, 5000, 0, true),
            (1500, 7000, 0, false), // moved 2000, but trimmed 500 ms ago
            (2000, 7000, 0, true),
            (3000, 7000, 0, false), // nothing moved since
        ]);
    }

    #[test]
    fn the_tail_of_a_burst_is_trimmed_once_it_settles() {
        run(&[
            (1000, 10000, 0, true),
            (1100, 10000, 9500, false), // 9,500 went idle into the set: trimmed too recently
            (2000, 10000, 9500, true),
            (2100, 10000, 10000, false), // the last 500: a small move, not settled
            (2500, 10000, 10000, false),
            (3100, 10000, 10000, true), // still for a second: the tail is given back
            (5000, 10000, 10000, false),
        ]);
    }

    #[test]
    fn churn_below_the_small_threshold_never_trims() {
        // 64 clients arrive and stay: a small move that settles.
        let mut steps = vec![(1000, 64, 0, false), (2000, 64, 0, true)];
        for i in 0..50u64 {
            // The count wanders by a few connections every tick, never far from 64.
            steps.push((2100 + i * 100, 64 + (i % 5) as usize, 0, false));
        }
        steps.push((8000, 64 + 40, 0, false));
        steps.push((9500, 64 + 40, 0, false)); // settled, but only 40 moved
        run(&steps);
    }

    #[test]
    fn a_moving_count_waits_for_the_large_threshold() {
        run(&[
            (1000, 100, 0, false), // 100 moved, but it is still moving
            (1050, 200, 0, false),
            (1100, 300, 0, false),
            (1150, 1100, 0, true), // 1,100 since the last trim
        ]);
    }
}

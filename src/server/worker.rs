//! One worker: a thread with its own monoio runtime (io_uring, or the legacy epoll driver
//! where io_uring is unavailable), pinned to a core, accepting on its own `SO_REUSEPORT`
//! sockets and serving every connection it accepts to the end. Nothing on the request path
//! is shared between workers except two atomics (the configuration generation and the
//! process connection count).
//!
//! The worker's state (snapshot, pools, buffers, log) is [`crate::runtime::Worker`]; this
//! file starts the thread and its runtime, runs the accept loops and the housekeeping task.

use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use monoio::net::{TcpListener, TcpStream};
use monoio::time::Instant;

use crate::error::{ErrorKind, GatewayError};
use crate::http::reply::write_error;
use crate::proxy::conn;
use crate::proxy::io::write_all_until;
use crate::runtime::metrics::TlsOutcome;
use crate::runtime::{Shared, Worker};
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

/// Everything a worker thread starts with.
pub struct WorkerSpec {
    pub index: usize,
    pub cpu: Option<usize>,
    /// `(listener, https)`.
    pub listeners: Vec<(std::net::TcpListener, bool)>,
    pub shared: Arc<Shared>,
}

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
        ready(Ok(driver));
        let accepts: Vec<_> = listeners
            .into_iter()
            .map(|(l, https)| monoio::spawn(accept_loop(l, https, worker.clone())))
            .collect();
        monoio::spawn(housekeeping(worker.clone()));
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
async fn housekeeping(worker: Rc<Worker>) {
    let mut last_sweep = Instant::now();
    let mut trim = TrimPolicy::new(Instant::now());
    loop {
        monoio::time::sleep(STOP_POLL).await;
        worker.log.flush();
        worker.tls_failures.report(worker.index);
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

/// A plain connection's task: served until it closes, or until it idles into the idle set.
async fn serve_plain(stream: TcpStream, peer: std::net::SocketAddr, guard: Counted) {
    let worker = guard.worker();
    if let conn::Ended::Idle { fd, deadline } =
        conn::serve(stream, peer, false, worker.clone()).await
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
                    monoio::spawn(serve_plain(stream, peer, guard));
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

async fn accept_loop(listener: TcpListener, https: bool, worker: Rc<Worker>) {
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
            Ok((stream, peer)) => admit(stream, peer, https, &worker),
            Err(_) if worker.unlisten.is_fired() => break,
            Err(e) => {
                crate::say!(warn, "worker {}: accept: {e}", worker.index);
                monoio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    // Stopping: the connections already queued in the kernel were made to this process
    // and would be reset when the listener closes; serve them (once the drain begins, with
    // `Connection: close`), then close the listener.
    let fd = listener.as_raw_fd();
    loop {
        // SAFETY: accept4 on the listener this task owns; null address pointers are allowed.
        let rc = unsafe {
            libc::accept4(
                fd,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if rc < 0 {
            break;
        }
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let std_stream = unsafe { std::net::TcpStream::from_raw_fd(rc) };
        let Ok(peer) = std_stream.peer_addr() else {
            continue;
        };
        if let Ok(stream) = TcpStream::from_std(std_stream) {
            admit(stream, peer, https, &worker);
        }
    }
}

/// A new connection: counted and given its task, or refused past `max_connections`.
fn admit(stream: TcpStream, peer: std::net::SocketAddr, https: bool, worker: &Rc<Worker>) {
    let _ = stream.set_nodelay(true);
    let max = worker.snapshot().config.server.max_connections;
    if worker.shared.connections.fetch_add(1, Ordering::AcqRel) >= max {
        worker.shared.connections.fetch_sub(1, Ordering::AcqRel);
        if !https {
            monoio::spawn(refuse(stream, worker.clone()));
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
        monoio::spawn(serve_plain(stream, peer, guard));
    }
}

/// An HTTPS connection: the handshake within the header timeout, then the one connection
/// pipeline over TLS. A failed or late handshake just ends the connection.
async fn serve_tls(stream: TcpStream, peer: std::net::SocketAddr, worker: Rc<Worker>) {
    let (config, timeout) = {
        let snapshot = worker.snapshot();
        (
            snapshot.config.tls.clone(),
            snapshot.config.server.header_timeout,
        )
    };
    let Some(config) = config else { return };
    let deadline = Instant::now() + timeout;
    let handshake = monoio::select! {
        _ = worker.linger.wait() => return,
        r = monoio::time::timeout_at(deadline, TlsStream::accept(stream, config)) => r,
    };
    match handshake {
        Ok(Ok(tls)) => {
            worker.metrics().tls(TlsOutcome::Done);
            // A TLS connection never leaves its task for the idle set.
            conn::serve(tls, peer, true, worker).await;
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

/// Past `max_connections`: a 503 and close.
async fn refuse(mut stream: TcpStream, worker: Rc<Worker>) {
    let mut id = String::new();
    worker.ids.borrow_mut().next_into(&mut id);
    let mut out = Vec::new();
    write_error(
        &mut out,
        &GatewayError::new(ErrorKind::Overloaded),
        &id,
        false,
        true,
        b"",
    );
    let _ = write_all_until(&mut stream, &mut out, Instant::now() + REFUSE_WRITE_TIMEOUT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

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

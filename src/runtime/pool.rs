//! Per-worker keepalive pools to the upstreams (SPEC §3 "Connection").
//!
//! One [`UpstreamPool`] per configured upstream, one idle list per target address. Idle
//! connections are kept most-recent-last and taken from the end (the warmest connection is
//! the least likely to have been closed by the upstream). Up to `keepalive` stay idle per
//! target, each at most `idle_timeout`; [`UpstreamPool::sweep`] closes the expired ones so the
//! upstream sees them go. Before a pooled connection is reused, a non-blocking check
//! ([`UpstreamStream::still_open`]: `MSG_PEEK` for plain TCP, a read through rustls for TLS)
//! tells whether the upstream closed it (or sent stray bytes) while it sat idle, unless it
//! came back less than [`FRESH_REUSE`] ago. Over TLS
//! the pool holds whole sessions: a reused connection costs no handshake.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::Duration;

use monoio::time::Instant;

use super::upstream_stream::UpstreamStream;

/// A connection back in the pool for less than this is reused without the stale check (a
/// `recv` syscall per request): an upstream does not close a connection it answered a
/// moment ago (idle timeouts are seconds), and a close racing the reuse is the same race
/// the check itself has, which the retry rule covers for idempotent requests.
pub const FRESH_REUSE: Duration = Duration::from_millis(200);

use crate::config::Upstream;

struct Idle {
    stream: UpstreamStream,
    since: Instant,
}

struct TargetPool {
    addr: SocketAddr,
    /// `Host` for requests that came without one (HTTP/1.0).
    host: String,
    idle: RefCell<Vec<Idle>>,
    health: Health,
}

/// Passive health of one target, as this worker saw it (nginx's `max_fails` /
/// `fail_timeout`): failed connects are counted in a window of `fail_timeout` from the
/// first; at `max_fails` the target is down until `fail_timeout` has passed. A success
/// clears the count.
#[derive(Default)]
struct Health {
    fails: Cell<u32>,
    window_start: Cell<Option<Instant>>,
    down_until: Cell<Option<Instant>>,
}

pub struct UpstreamPool {
    targets: Vec<TargetPool>,
    next: Cell<usize>,
    keepalive: Cell<usize>,
    idle_timeout: Cell<Duration>,
    /// The upstream changed or went away in a reload: idle connections were closed, and
    /// connections in use are closed when their exchange ends instead of coming back.
    retired: Cell<bool>,
    max_fails: Cell<u32>,
    fail_timeout: Cell<Duration>,
}

impl UpstreamPool {
    pub fn new(upstream: &Upstream) -> UpstreamPool {
        UpstreamPool {
            targets: upstream
                .targets
                .iter()
                .map(|&addr| TargetPool {
                    addr,
                    host: addr.to_string(),
                    idle: RefCell::new(Vec::new()),
                    health: Health::default(),
                })
                .collect(),
            next: Cell::new(0),
            keepalive: Cell::new(upstream.keepalive),
            idle_timeout: Cell::new(upstream.idle_timeout),
            retired: Cell::new(false),
            max_fails: Cell::new(upstream.max_fails),
            fail_timeout: Cell::new(upstream.fail_timeout),
        }
    }

    /// Whether `target` is out (passive health) at `now`.
    pub fn is_down(&self, target: usize, now: Instant) -> bool {
        self.targets[target]
            .health
            .down_until
            .get()
            .is_some_and(|until| now < until)
    }

    /// Whether any target is up at `now`.
    pub fn any_up(&self, now: Instant) -> bool {
        (0..self.targets.len()).any(|t| !self.is_down(t, now))
    }

    /// Targets down at `now`.
    pub fn down_count(&self, now: Instant) -> usize {
        (0..self.targets.len())
            .filter(|&t| self.is_down(t, now))
            .count()
    }

    /// A connect to `target` failed at `now`; `true` when this takes it down.
    pub fn connect_failed(&self, target: usize, now: Instant) -> bool {
        let (max, window) = (self.max_fails.get(), self.fail_timeout.get());
        if max == 0 {
            return false;
        }
        let h = &self.targets[target].health;
        let fresh_window = h
            .window_start
            .get()
            .is_none_or(|start| now.saturating_duration_since(start) >= window);
        if fresh_window {
            h.window_start.set(Some(now));
            h.fails.set(0);
        }
        h.fails.set(h.fails.get() + 1);
        if h.fails.get() >= max && !self.is_down(target, now) {
            h.down_until.set(Some(now + window));
            h.fails.set(0);
            h.window_start.set(None);
            return true;
        }
        false
    }

    /// A connect to `target` succeeded: its failures are forgiven.
    pub fn connect_succeeded(&self, target: usize) {
        let h = &self.targets[target].health;
        h.fails.set(0);
        h.window_start.set(None);
        h.down_until.set(None);
    }

    /// Whether a reloaded `new` upstream reaches the same endpoints as `old` the same way
    /// (name, scheme, targets, TLS name and trust roots), so that `old`'s pool — idle
    /// connections, round-robin position — carries over to it.
    pub fn carries(old: &Upstream, new: &Upstream) -> bool {
        let tls_same = match (&old.tls, &new.tls) {
            (None, None) => true,
            (Some(a), Some(b)) => a.server_name == b.server_name && a.ca == b.ca,
            _ => false,
        };
        old.name == new.name && old.scheme == new.scheme && old.targets == new.targets && tls_same
    }

    /// Takes on a reloaded upstream's pool limits (the caller checked [`Self::carries`]).
    pub fn adopt(&self, new: &Upstream) {
        self.keepalive.set(new.keepalive);
        self.idle_timeout.set(new.idle_timeout);
        self.max_fails.set(new.max_fails);
        self.fail_timeout.set(new.fail_timeout);
        for t in &self.targets {
            t.idle.borrow_mut().truncate(new.keepalive);
        }
    }

    /// The upstream is gone from the configuration: closes the idle connections, and the
    /// ones in use will not come back.
    pub fn retire(&self) {
        self.retired.set(true);
        self.clear();
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// The next target, round-robin.
    pub fn pick(&self) -> usize {
        let i = self.next.get() % self.targets.len().max(1);
        self.next.set(i + 1);
        i
    }

    pub fn addr(&self, target: usize) -> SocketAddr {
        self.targets[target].addr
    }

    pub fn host(&self, target: usize) -> &str {
        &self.targets[target].host
    }

    /// A live idle connection to `target`, if there is one.
    pub fn take(&self, target: usize) -> Option<UpstreamStream> {
        let mut idle = self.targets[target].idle.borrow_mut();
        let now = Instant::now();
        while let Some(mut c) = idle.pop() {
            let age = now.saturating_duration_since(c.since);
            if age < self.idle_timeout.get() && (age < FRESH_REUSE || c.stream.still_open()) {
                return Some(c.stream);
            }
        }
        None
    }

    /// Returns a connection after a complete exchange; dropped (closed) when the pool is full.
    pub fn put(&self, target: usize, stream: UpstreamStream) {
        let mut idle = self.targets[target].idle.borrow_mut();
        if idle.len() < self.keepalive.get() && !self.retired.get() {
            idle.push(Idle {
                stream,
                since: Instant::now(),
            });
        }
    }

    /// Closes idle connections older than `idle_timeout`.
    pub fn sweep(&self, now: Instant) {
        for t in &self.targets {
            t.idle
                .borrow_mut()
                .retain(|c| now.saturating_duration_since(c.since) < self.idle_timeout.get());
        }
    }

    /// Closes every idle connection (shutdown).
    pub fn clear(&self) {
        for t in &self.targets {
            t.idle.borrow_mut().clear();
        }
    }

    pub fn idle_count(&self) -> usize {
        self.targets.iter().map(|t| t.idle.borrow().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scheme;
    use std::io::Write as _;

    fn upstream(targets: Vec<SocketAddr>, keepalive: usize, idle_ms: u64) -> Upstream {
        Upstream {
            name: "u".into(),
            scheme: Scheme::Http,
            targets,
            keepalive,
            connect_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_millis(idle_ms),
            max_fails: 2,
            fail_timeout: Duration::from_millis(idle_ms),
            tls: None,
        }
    }

    async fn plain(addr: SocketAddr) -> UpstreamStream {
        UpstreamStream::Plain(monoio::net::TcpStream::connect_addr(addr).await.unwrap())
    }

    fn runtime() -> monoio::Runtime<monoio::time::TimeDriver<monoio::LegacyDriver>> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
    }

    #[test]
    fn round_robin_over_targets() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let pool = UpstreamPool::new(&upstream(vec![a, b], 4, 1000));
        let picks: Vec<usize> = (0..5).map(|_| pool.pick()).collect();
        assert_eq!(picks, [0, 1, 0, 1, 0]);
        assert_eq!(pool.host(1), "127.0.0.1:2");
    }

    #[test]
    fn closed_or_chatty_or_expired_connections_are_not_reused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        runtime().block_on(async move {
            let pool = UpstreamPool::new(&upstream(vec![addr], 2, 1000));
            let mut peers = Vec::new();
            for _ in 0..3 {
                let s = plain(addr).await;
                peers.push(listener.accept().unwrap().0);
                pool.put(0, s);
            }
            assert_eq!(pool.idle_count(), 2, "keepalive caps the idle list");
            // The newest idle connection is taken first: its peer is peers[1].
            // Close that peer: the pool must notice before handing it out.
            drop(peers.remove(1));
            monoio::time::sleep(Duration::from_millis(100)).await;
            // peers[0] (the first connection) is still open; make it chatty.
            peers[0].write_all(b"x").unwrap();
            // Past FRESH_REUSE, so the check runs.
            monoio::time::sleep(Duration::from_millis(150)).await;
            assert!(pool.take(0).is_none(), "a closed and a chatty connection");
            assert_eq!(pool.idle_count(), 0);

            let s = plain(addr).await;
            let _peer = listener.accept().unwrap().0;
            pool.put(0, s);
            assert!(pool.take(0).is_some(), "a live connection is reused");
            // Back for less than FRESH_REUSE: reused without the check (the trade-off).
            let s = plain(addr).await;
            let mut chatty = listener.accept().unwrap().0;
            pool.put(0, s);
            chatty.write_all(b"x").unwrap();
            monoio::time::sleep(Duration::from_millis(20)).await;
            assert!(pool.take(0).is_some(), "a fresh connection skips the check");
            let s = plain(addr).await;
            let _peer2 = listener.accept().unwrap().0;
            pool.put(0, s);
            monoio::time::sleep(Duration::from_millis(1100)).await;
            pool.sweep(Instant::now());
            assert_eq!(pool.idle_count(), 0, "idle_timeout expired");
        });
    }

    #[test]
    fn max_fails_within_fail_timeout_take_a_target_down_for_fail_timeout() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        // max_fails 2, fail_timeout 1000 ms.
        let pool = UpstreamPool::new(&upstream(vec![a, b], 4, 1000));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(!pool.connect_failed(0, ms(0)), "one failure of two");
        assert!(!pool.is_down(0, ms(1)));
        // The window restarts after fail_timeout: the old failure no longer counts.
        assert!(!pool.connect_failed(0, ms(1500)));
        assert!(
            pool.connect_failed(0, ms(1600)),
            "two within the window: down"
        );
        assert!(pool.is_down(0, ms(1601)) && pool.any_up(ms(1601)));
        assert_eq!(pool.down_count(ms(1601)), 1);
        assert!(!pool.is_down(0, ms(2600)), "back after fail_timeout");
        // A success forgives.
        assert!(!pool.connect_failed(1, ms(1600)));
        pool.connect_succeeded(1);
        assert!(!pool.connect_failed(1, ms(1610)));
        assert!(!pool.is_down(1, ms(1611)));
        assert!(pool.connect_failed(1, ms(1620)));
        assert!(!pool.any_up(ms(1650)), "both down");
    }

    #[test]
    fn max_fails_zero_never_takes_a_target_down() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut u = upstream(vec![a], 4, 1000);
        u.max_fails = 0;
        let pool = UpstreamPool::new(&u);
        let now = Instant::now();
        for _ in 0..10 {
            assert!(!pool.connect_failed(0, now));
        }
        assert!(!pool.is_down(0, now));
    }
}

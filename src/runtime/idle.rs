//! A worker's idle set: plain keepalive connections waiting for their next request with no
//! task, no buffer and no io_uring op of their own.
//!
//! Above [`crate::proxy::conn::PARK_ABOVE_CONNECTIONS`] connections on a worker, a plain
//! connection that has been idle for [`crate::proxy::conn::IDLE_SET_AFTER`] leaves its task
//! (a busy keepalive connection never gets here, so requests pay nothing for the set): its socket (a duplicate of the descriptor;
//! the monoio stream is dropped) goes into this set, registered with the set's own epoll
//! instance. One watcher task per worker (`server::worker::idle_watch`) waits for the epoll
//! descriptor to turn readable (one io_uring poll for the whole set), takes the sockets that
//! have something to read (a request, or an end of stream) out of the set and spawns a
//! connection task for each again. The housekeeping tick closes the ones whose idle timeout
//! passed; a drain closes them all.
//!
//! What an idle connection costs in user space here: one map entry and one expiry entry,
//! about 100 bytes, instead of a parked task (2 KiB) with its poll op and timer. The kernel
//! keeps its epoll item, as it would for nginx.
//!
//! Expiry entries are kept in parking order. Deadlines are `parked + client_idle_timeout`;
//! after a reload that shortens the timeout, a connection parked later may sit behind one
//! parked earlier with a longer deadline, and is closed when that one's deadline passes (at
//! most the old timeout late).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use monoio::time::Instant;

/// Sockets taken out of the set per `epoll_wait`.
pub const READY_BATCH: usize = 256;
/// Stale expiry entries allowed beyond twice the parked count before they are swept out.
const COMPACT_SLACK: usize = 1024;

struct Parked {
    fd: OwnedFd,
    peer: SocketAddr,
    seq: u64,
}

pub struct IdleSet {
    epoll: OwnedFd,
    parked: RefCell<HashMap<RawFd, Parked>>,
    /// `(deadline, fd, seq)` in parking order; `seq` tells a stale entry (the socket left
    /// the set, its descriptor number may be in use again) from a live one.
    expiry: RefCell<VecDeque<(Instant, RawFd, u64)>>,
    next_seq: Cell<u64>,
    /// Set while the worker's watcher runs: only then may connections park here.
    enabled: Cell<bool>,
}

impl IdleSet {
    pub fn new() -> io::Result<IdleSet> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(IdleSet {
            // SAFETY: `fd` was just created and is owned by nothing else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            parked: RefCell::new(HashMap::new()),
            expiry: RefCell::new(VecDeque::new()),
            next_seq: Cell::new(0),
            enabled: Cell::new(false),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.get()
    }

    /// The watcher started (`true`) or stopped.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.set(on);
    }

    /// A new descriptor for the set's epoll instance, for the watcher to poll.
    pub fn epoll_dup(&self) -> io::Result<OwnedFd> {
        self.epoll.try_clone()
    }

    pub fn len(&self) -> usize {
        self.parked.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.parked.borrow().is_empty()
    }

    /// Parks `fd` (a connected TCP socket with no unread request bytes in user space)
    /// until it turns readable or `deadline` passes. On failure the socket comes back.
    pub fn park(&self, fd: OwnedFd, peer: SocketAddr, deadline: Instant) -> Result<(), OwnedFd> {
        let raw = fd.as_raw_fd();
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: raw as u64,
        };
        // SAFETY: both descriptors are open; `event` outlives the call.
        let r = unsafe {
            libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, raw, &mut event)
        };
        if r != 0 {
            return Err(fd);
        }
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        self.parked
            .borrow_mut()
            .insert(raw, Parked { fd, peer, seq });
        let mut expiry = self.expiry.borrow_mut();
        expiry.push_back((deadline, raw, seq));
        // Entries of sockets that left the set wait for their turn at the front; keep them
        // from piling up behind a long deadline.
        let parked = self.parked.borrow();
        if expiry.len() > 2 * parked.len() + COMPACT_SLACK {
            expiry.retain(|(_, raw, seq)| parked.get(raw).map(|p| p.seq) == Some(*seq));
        }
        Ok(())
    }

    /// The parked sockets that turned readable (at most [`READY_BATCH`]), taken out of the
    /// set; never blocks.
    pub fn take_ready(&self) -> Vec<(OwnedFd, SocketAddr)> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; READY_BATCH];
        // SAFETY: `events` has room for READY_BATCH entries; a zero timeout never blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                READY_BATCH as i32,
                0,
            )
        };
        let mut out = Vec::new();
        for e in events.iter().take(usize::try_from(n).unwrap_or(0)) {
            let raw = e.u64 as RawFd;
            if let Some(p) = self.remove(raw) {
                out.push((p.fd, p.peer));
            }
        }
        out
    }

    /// Closes the parked sockets whose deadline passed; how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut closed = 0;
        loop {
            let front = self.expiry.borrow().front().copied();
            let Some((deadline, raw, seq)) = front else {
                break;
            };
            let live = self.parked.borrow().get(&raw).map(|p| p.seq) == Some(seq);
            if live && deadline > now {
                break;
            }
            self.expiry.borrow_mut().pop_front();
            if live && self.remove(raw).is_some() {
                closed += 1;
            }
        }
        closed
    }

    /// Closes up to `n` parked sockets, the longest idle first (out of descriptors: an idle
    /// keep-alive client gives its descriptor to a new one, as nginx reuses keep-alive
    /// connections when it runs out); how many.
    pub fn evict_oldest(&self, n: usize) -> usize {
        let mut closed = 0;
        while closed < n {
            let Some((_, raw, seq)) = self.expiry.borrow_mut().pop_front() else {
                break;
            };
            let live = self.parked.borrow().get(&raw).map(|p| p.seq) == Some(seq);
            if live && self.remove(raw).is_some() {
                closed += 1;
            }
        }
        closed
    }

    /// Gives back the room of sockets that left (after a crowd of idle clients is gone).
    pub fn shrink_to_fit(&self) {
        self.parked.borrow_mut().shrink_to_fit();
        self.expiry.borrow_mut().shrink_to_fit();
    }

    /// Closes every parked socket (a drain); how many.
    pub fn close_all(&self) -> usize {
        let all: Vec<RawFd> = self.parked.borrow().keys().copied().collect();
        self.expiry.borrow_mut().clear();
        all.into_iter()
            .filter(|&raw| self.remove(raw).is_some())
            .count()
    }

    fn remove(&self, raw: RawFd) -> Option<Parked> {
        let p = self.parked.borrow_mut().remove(&raw)?;
        // SAFETY: both descriptors are open; EPOLL_CTL_DEL ignores the event pointer.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                raw,
                std::ptr::null_mut(),
            );
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    fn pair() -> (std::net::TcpStream, OwnedFd, SocketAddr) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, peer) = l.accept().unwrap();
        (client, OwnedFd::from(server), peer)
    }

    #[test]
    fn a_socket_comes_back_when_it_has_bytes_and_expires_otherwise() {
        let set = IdleSet::new().unwrap();
        let now = Instant::now();
        let (mut c1, s1, p1) = pair();
        let (_c2, s2, _) = pair();
        let (_c3, s3, _) = pair();
        set.park(s1, p1, now + Duration::from_secs(60)).unwrap();
        set.park(s2, p1, now + Duration::from_millis(1)).unwrap();
        set.park(s3, p1, now + Duration::from_secs(60)).unwrap();
        assert_eq!(set.len(), 3);
        assert!(set.take_ready().is_empty(), "nothing to read yet");
        c1.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut ready = Vec::new();
        for _ in 0..100 {
            ready = set.take_ready();
            if !ready.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].1, p1);
        assert_eq!(set.len(), 2);
        // The second's deadline has passed; the third's has not.
        assert_eq!(set.expire(now + Duration::from_millis(2)), 1);
        assert_eq!(set.len(), 1);
        assert_eq!(set.close_all(), 1);
        assert!(set.is_empty());
        assert_eq!(set.expire(now + Duration::from_secs(120)), 0);
    }

    #[test]
    fn eviction_closes_the_longest_idle_first() {
        let set = IdleSet::new().unwrap();
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (client, fd, peer) = pair();
            set.park(fd, peer, far).unwrap();
            clients.push(client);
        }
        assert_eq!(set.evict_oldest(2), 2);
        assert_eq!(set.len(), 1);
        // The first two clients see their connections closed, the third does not.
        for (i, c) in clients.iter_mut().enumerate() {
            c.set_read_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            let mut b = [0u8; 1];
            let closed = matches!(std::io::Read::read(c, &mut b), Ok(0));
            assert_eq!(closed, i < 2, "client {i}");
        }
        assert_eq!(set.evict_oldest(5), 1);
        assert_eq!(set.evict_oldest(5), 0);
    }

    #[test]
    fn a_closed_peer_makes_its_socket_ready() {
        let set = IdleSet::new().unwrap();
        let (c, s, p) = pair();
        set.park(s, p, Instant::now() + Duration::from_secs(60))
            .unwrap();
        drop(c);
        let mut n = 0;
        for _ in 0..100 {
            n = set.take_ready().len();
            if n > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            n, 1,
            "an end of stream wakes the socket so its task can close it"
        );
    }
}

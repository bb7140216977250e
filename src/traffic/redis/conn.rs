//! The pipelined client: one connection per [`Redis`] (per worker), shared by every task of
//! the worker, with a circuit breaker in front.
//!
//! States of the client (`State`):
//! - `Idle`: never connected; the first call dials (in a spawned task) and queues its
//!   commands behind the dial.
//! - `Live(link)`: a connection, dialling or ready. A call encodes its commands into the
//!   link's outbox and queues one waiter; the writer task sends the whole outbox in one write;
//!   the reader task hands replies to the waiters in order. A caller stops waiting at its
//!   deadline (`Timeout`) but its waiter stays queued, so its late replies are read and
//!   dropped and the order stays right.
//! - `Down`: the breaker is open. Calls fail at once with `Unavailable`; a reconnect task
//!   dials with exponential backoff ([`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`]) and
//!   installs the new link when Redis answers `PING`.
//!
//! A link goes down (every waiter failed at once, the client `Down`) when its dial fails, it
//! breaks (read or write error, end of stream, a reply that is not RESP2 or is too large), or
//! after [`TIMEOUTS_TO_TRIP`] timeouts in a row.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::{Rc, Weak};
use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::link::{Link, READ_CHUNK, read_loop, reserve, write_loop};
use super::url::RedisUrl;
use super::wire::{Cmd, Reply, decode_frame, frame_len};

/// Timeouts in a row that open the breaker.
pub const TIMEOUTS_TO_TRIP: u32 = 3;
/// The first reconnect attempt comes this long after the breaker opens...
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// ...and the wait doubles after each failed attempt up to this.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Why a call has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// No answer within the client's timeout.
    Timeout,
    /// The breaker is open: Redis was not contacted.
    Unavailable,
    /// The connection failed or broke: refused, reset, closed, a failed `AUTH` or
    /// `SELECT`, a reply that is not RESP2.
    Connection(String),
    /// Redis answered with an error, or with an answer of the wrong shape.
    Reply(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("redis: no answer in time"),
            StoreError::Unavailable => f.write_str("redis: unavailable (circuit breaker open)"),
            StoreError::Connection(e) => write!(f, "redis: connection: {e}"),
            StoreError::Reply(e) => write!(f, "redis: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A Redis client for one worker thread. Cloning shares the connection.
#[derive(Clone)]
pub struct Redis {
    inner: Rc<Inner>,
}

struct Inner {
    url: RedisUrl,
    timeout: Duration,
    state: RefCell<State>,
    timeouts_in_a_row: Cell<u32>,
    failures: Cell<u64>,
    writes: Rc<Cell<u64>>,
}

enum State {
    Idle,
    Live(Rc<Link>),
    Down,
}

impl Redis {
    /// A client of `url` whose every call waits at most `timeout`. Connects on first use.
    pub fn new(url: RedisUrl, timeout: Duration) -> Redis {
        Redis {
            inner: Rc::new(Inner {
                url,
                timeout,
                state: RefCell::new(State::Idle),
                timeouts_in_a_row: Cell::new(0),
                failures: Cell::new(0),
                writes: Rc::new(Cell::new(0)),
            }),
        }
    }

    pub fn url(&self) -> &RedisUrl {
        &self.inner.url
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// `false` while the breaker is open (calls fail at once with `Unavailable`).
    pub fn is_up(&self) -> bool {
        !matches!(*self.inner.state.borrow(), State::Down)
    }

    /// Calls that returned an error, of any kind, since the client was made.
    pub fn failures(&self) -> u64 {
        self.inner.failures.get()
    }

    /// Socket writes of queued commands so far: one per batch, however many calls it holds
    /// (connection handshakes not counted).
    pub fn writes(&self) -> u64 {
        self.inner.writes.get()
    }

    /// Sends `cmds` in one pipeline and returns their replies in order. A reply may be a
    /// [`Reply::Error`]: Redis refused that command, the call itself succeeded.
    pub async fn call(&self, cmds: Vec<Cmd>) -> Result<Vec<Reply>, StoreError> {
        let r = self.exchange(&cmds, self.deadline()).await;
        self.count(r)
    }

    /// The deadline of a call starting now.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.inner.timeout
    }

    /// Counts a failed public call.
    pub(super) fn count<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_err() {
            self.inner.failures.set(self.inner.failures.get() + 1);
        }
        r
    }

    /// One round trip of `cmds`, answered before `deadline` (not counted in `failures`).
    pub(super) async fn exchange(
        &self,
        cmds: &[Cmd],
        deadline: Instant,
    ) -> Result<Vec<Reply>, StoreError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let link = self.inner.link()?;
        let slot = link.send(cmds)?;
        match monoio::time::timeout_at(deadline, slot.wait()).await {
            Ok(r) => {
                if r.is_ok() {
                    self.inner.timeouts_in_a_row.set(0);
                }
                r
            }
            Err(_) => {
                self.inner.timed_out(&link);
                Err(StoreError::Timeout)
            }
        }
    }
}

impl Inner {
    /// The link to send on; dials one if there is none yet.
    fn link(self: &Rc<Self>) -> Result<Rc<Link>, StoreError> {
        let mut state = self.state.borrow_mut();
        match &*state {
            State::Live(link) => Ok(link.clone()),
            State::Down => Err(StoreError::Unavailable),
            State::Idle => {
                let link = Rc::new(Link::new());
                *state = State::Live(link.clone());
                drop(state);
                monoio::spawn(dial_then_serve(Rc::downgrade(self), link.clone()));
                Ok(link)
            }
        }
    }

    /// A caller gave up waiting on `link`. A link still dialling after a whole timeout
    /// fails at once; a live one after [`TIMEOUTS_TO_TRIP`] timeouts in a row.
    fn timed_out(self: &Rc<Self>, link: &Rc<Link>) {
        let n = self.timeouts_in_a_row.get() + 1;
        self.timeouts_in_a_row.set(n);
        if !link.ready.get() {
            self.link_failed(link, StoreError::Timeout);
        } else if n >= TIMEOUTS_TO_TRIP {
            self.link_failed(link, StoreError::Unavailable);
        }
    }

    /// Fails `link`'s waiters with `why`; if it is the current link, opens the breaker and
    /// starts reconnecting.
    fn link_failed(self: &Rc<Self>, link: &Rc<Link>, why: StoreError) {
        link.close(why);
        let mut state = self.state.borrow_mut();
        if let State::Live(current) = &*state
            && Rc::ptr_eq(current, link)
        {
            *state = State::Down;
            drop(state);
            monoio::spawn(reconnect(Rc::downgrade(self)));
        }
    }

    /// Starts the reader and writer of a dialled `link`.
    fn serve(self: &Rc<Self>, link: Rc<Link>, stream: TcpStream, leftover: Vec<u8>) {
        self.timeouts_in_a_row.set(0);
        link.ready.set(true);
        let (r, w) = stream.into_split();
        let (client, reading) = (Rc::downgrade(self), link.clone());
        monoio::spawn(async move {
            if let Some(why) = read_loop(&reading, r, leftover).await {
                failed(&client, &reading, why);
            }
        });
        let (client, writes) = (Rc::downgrade(self), self.writes.clone());
        monoio::spawn(async move {
            if let Some(why) = write_loop(&link, w, &writes).await {
                failed(&client, &link, why);
            }
        });
    }
}

impl Drop for Inner {
    /// Ends the connection's tasks (they hold the link, not the client).
    fn drop(&mut self) {
        if let State::Live(link) = &*self.state.borrow() {
            link.close(StoreError::Unavailable);
        }
    }
}

/// A link broke: fail it, and open the breaker if the client still exists.
fn failed(client: &Weak<Inner>, link: &Rc<Link>, why: StoreError) {
    match client.upgrade() {
        Some(inner) => inner.link_failed(link, why),
        None => link.close(why),
    }
}

async fn dial_then_serve(client: Weak<Inner>, link: Rc<Link>) {
    let Some((url, timeout)) = client.upgrade().map(|c| (c.url.clone(), c.timeout)) else {
        return;
    };
    let dialled = dial(&url, timeout).await;
    let Some(inner) = client.upgrade() else {
        return;
    };
    match dialled {
        // Not if the breaker gave this link up while it was dialling.
        Ok((stream, leftover)) if !link.closed.get() => inner.serve(link, stream, leftover),
        Ok(_) => {}
        Err(e) => inner.link_failed(&link, e),
    }
}

/// The breaker's reconnect loop: dials until Redis answers, then makes the client live.
async fn reconnect(client: Weak<Inner>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        monoio::time::sleep(backoff).await;
        let Some((url, timeout)) = client.upgrade().map(|c| (c.url.clone(), c.timeout)) else {
            return;
        };
        if let Ok((stream, leftover)) = dial(&url, timeout).await {
            let Some(inner) = client.upgrade() else {
                return;
            };
            let link = Rc::new(Link::new());
            *inner.state.borrow_mut() = State::Live(link.clone());
            inner.serve(link, stream, leftover);
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Connects (TCP_NODELAY), then `AUTH`, `SELECT` and `PING` in one write, all answered
/// before `timeout`. Returns the stream and any bytes read past the `PING` reply.
///
/// A host name is resolved here with std's `ToSocketAddrs`, which blocks the worker while
/// the system resolver answers (an IP address, or a name in /etc/hosts, does not wait). It
/// happens only when a connection is made: first use, and reconnects.
async fn dial(url: &RedisUrl, timeout: Duration) -> Result<(TcpStream, Vec<u8>), StoreError> {
    let deadline = Instant::now() + timeout;
    let addrs: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| StoreError::Connection(format!("resolve {}: {e}", url.host)))?
        .collect();
    let mut why = StoreError::Connection(format!("{} resolves to no address", url.host));
    let mut stream = None;
    for addr in addrs {
        match monoio::time::timeout_at(deadline, TcpStream::connect_addr(addr)).await {
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => why = StoreError::Connection(format!("connect to {addr}: {e}")),
            Err(_) => return Err(StoreError::Timeout),
        }
    }
    let Some(mut stream) = stream else {
        return Err(why);
    };
    stream
        .set_nodelay(true)
        .map_err(|e| StoreError::Connection(format!("TCP_NODELAY: {e}")))?;
    let mut hello = Vec::new();
    let mut names = Vec::new();
    if let Some(password) = &url.password {
        let mut auth = Cmd::new("AUTH");
        if let Some(user) = &url.username {
            auth = auth.arg(user);
        }
        auth.arg(password).encode_into(&mut hello);
        names.push("AUTH");
    }
    if url.db != 0 {
        Cmd::new("SELECT").arg(url.db).encode_into(&mut hello);
        names.push("SELECT");
    }
    Cmd::new("PING").encode_into(&mut hello);
    names.push("PING");
    match monoio::time::timeout_at(deadline, stream.write_all(hello)).await {
        Ok((Ok(_), _)) => {}
        Ok((Err(e), _)) => return Err(StoreError::Connection(format!("write: {e}"))),
        Err(_) => return Err(StoreError::Timeout),
    }
    let mut buf = Vec::with_capacity(READ_CHUNK);
    for name in names {
        match read_reply(&mut stream, &mut buf, deadline).await? {
            Reply::Simple(_) => {}
            Reply::Error(e) => return Err(StoreError::Connection(format!("{name}: {e}"))),
            other => {
                return Err(StoreError::Connection(format!(
                    "{name}: answered {other:?}"
                )));
            }
        }
    }
    Ok((stream, buf))
}

/// Reads one reply of the handshake.
async fn read_reply(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<Reply, StoreError> {
    let protocol = |e: String| StoreError::Connection(format!("protocol error: {e}"));
    loop {
        if let Some(n) = frame_len(buf).map_err(protocol)? {
            let reply = decode_frame(&buf[..n]).map_err(protocol)?;
            buf.drain(..n);
            return Ok(reply);
        }
        reserve(buf);
        let owned = std::mem::take(buf);
        let len = owned.len();
        match monoio::time::timeout_at(deadline, stream.read(owned.slice_mut(len..))).await {
            Ok((res, slice)) => {
                *buf = slice.into_inner();
                match res {
                    Ok(0) => return Err(StoreError::Connection("closed by the server".into())),
                    Ok(_) => {}
                    Err(e) => return Err(StoreError::Connection(format!("read: {e}"))),
                }
            }
            Err(_) => return Err(StoreError::Timeout),
        }
    }
}

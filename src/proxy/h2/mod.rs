//! HTTP/2 at the edge (SPEC §10): one client connection speaking HTTP/2 (ALPN `h2` on the
//! HTTPS listeners, or prior knowledge on `listen_http` with `server.h2c`), served with the
//! `h2` crate on the worker's own thread (tokio's I/O traits over the worker's monoio
//! stream: [`io::Compat`]; no tokio runtime).
//!
//! Each stream is a task of its own ([`stream::serve`]): its head becomes an HTTP/1.1 head,
//! parsed by [`crate::http::head::parse_head`] (the §1 head limits apply to the decoded
//! header list), decided by [`crate::gateway::decide`] like any request, and forwarded to
//! the backend as HTTP/1.1 over the worker's pools; the answer goes back as HTTP/2.
//! [`stream`] is that pipeline; `head` converts the heads (h2 request → HTTP/1.1 head,
//! HTTP/1.1 response head → h2 response), `relay` carries the bodies both ways within flow
//! control, and `dechunk` decodes the backend's body framing into DATA.
//!
//! The connection task accepts streams and drives the connection. It ends the connection
//! with GOAWAY when:
//! - no stream has been open for `client_idle_timeout_ms`, or [`MAX_STREAMS_PER_CONNECTION`]
//!   streams were served (gracefully: streams in flight finish);
//! - the worker drains (SIGTERM, hand-over): gracefully, within the grace period;
//! - the client abuses the protocol: the `h2` crate's own limits (rapid resets before accept,
//!   streams it had to reset for the client's errors, CONTINUATION and header-list sizes)
//!   end the connection with `ENHANCE_YOUR_CALM`; on top of them, a client that cancels most
//!   of the streams it opened, past [`RESET_ALLOWANCE`], gets the same (the rapid reset
//!   shape once the streams were accepted).
//!
//! A connection ended with an error GOAWAY (abuse, or any other protocol error) gets a
//! lingering close ([`io::Leftover::linger`]): the write side shut down after the GOAWAY, the
//! client's further bytes read and dropped for a bounded time, then the socket closed, so
//! that the client reads the GOAWAY rather than a reset. A graceful end (drain, idle, stream
//! count) and a broken connection close at once.

mod dechunk;
mod head;
pub mod io;
mod relay;
pub mod stream;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use h2::Reason;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use crate::runtime::Worker;
use crate::runtime::metrics::H2Goaway;

/// The HTTP/2 connection preface a prior-knowledge client starts with (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Streams one connection serves before it is asked to go away (GOAWAY; the client opens a
/// new connection).
pub const MAX_STREAMS_PER_CONNECTION: u64 = 10_000;
/// Streams the client may cancel (RST_STREAM before the answer ended) before the share of
/// cancelled streams is judged.
pub const RESET_ALLOWANCE: u64 = 100;
/// Stream and connection flow-control windows offered to the client.
pub const STREAM_WINDOW: u32 = 256 * 1024;
pub const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// The largest frame the client may send.
pub const MAX_FRAME_SIZE: u32 = 16 * 1024;
/// Resets of streams not yet accepted before the connection is refused (rapid reset).
pub const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the server may have to reset for the client's errors before the connection is
/// refused (CVE-2025-8671, "MadeYouReset").
pub const MAX_LOCAL_ERROR_RESETS: usize = 64;
/// Response data buffered per stream ahead of the client's window.
pub const MAX_SEND_BUFFER: usize = 64 * 1024;
/// How often the connection task looks at its idle time.
const TICK: Duration = Duration::from_millis(500);
/// After GOAWAY for being idle, how long the last frames get.
const CLOSE_SLACK: Duration = Duration::from_secs(1);

/// The client connection, as each stream sees it.
pub struct Client {
    pub peer: SocketAddr,
    /// `peer`'s IP address as text, for the forwarding headers.
    pub client_ip: String,
    pub https: bool,
    /// Over TLS: the protocol version and the SNI name, for the access log.
    pub tls: Option<(&'static str, Option<Box<str>>)>,
}

/// What one connection's streams share with its task.
pub struct Shared {
    pub client: Client,
    pub worker: Rc<Worker>,
    /// Streams running.
    pub open: Cell<usize>,
    /// When the last stream ended.
    pub last_end: Cell<Instant>,
    /// Streams served, and those the client cancelled.
    pub streams: Cell<u64>,
    pub cancelled: Cell<u64>,
}

impl Shared {
    /// The client has cancelled too many of its streams (rapid reset after accept).
    fn abusive(&self) -> bool {
        let cancelled = self.cancelled.get();
        cancelled > RESET_ALLOWANCE && cancelled * 2 > self.streams.get()
    }
}

/// Serves one HTTP/2 connection to its end. `read`/`write`: the halves of the client
/// stream; `prefix`: client bytes already read (the preface, with h2c).
pub async fn serve<R, W>(read: R, write: W, prefix: Vec<u8>, client: Client, worker: Rc<Worker>)
where
    R: AsyncReadRent + 'static,
    W: AsyncWriteRent + 'static,
{
    let (header_timeout, idle_timeout, max_streams, max_head) = {
        let snapshot = worker.snapshot();
        let s = &snapshot.config.server;
        (
            s.header_timeout,
            s.client_idle_timeout,
            s.h2_max_concurrent_streams,
            // h2 counts 32 bytes more per field than its text: a head the HTTP/1.1 rule
            // takes passes h2's limit, and `parse_head` answers (431 with its JSON body);
            // past this, h2 answers a bare 431 before decoding more.
            s.limits.max_header_bytes + 32 * s.limits.max_headers,
        )
    };
    worker.metrics().h2_connection();
    let stash: io::Stash<R, W> = Rc::default();
    let io = io::Compat::new(read, write, prefix, worker.clone(), stash.clone());
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(max_streams)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER);
    let deadline = Instant::now() + header_timeout;
    let handshake = monoio::select! {
        _ = worker.linger.wait() => return,
        r = monoio::time::timeout_at(deadline, builder.handshake::<_, Bytes>(io)) => r,
    };
    let mut conn = match handshake {
        Ok(Ok(c)) => c,
        _ => return,
    };
    let shared = Rc::new(Shared {
        client,
        worker: worker.clone(),
        open: Cell::new(0),
        last_end: Cell::new(Instant::now()),
        streams: Cell::new(0),
        cancelled: Cell::new(0),
    });
    // Set once GOAWAY went out: the connection ends by this time at the latest.
    let mut closing: Option<Instant> = None;
    // Whether the connection ended with an error GOAWAY of the gateway's.
    let error_goaway = loop {
        if let Some(at) = closing
            && Instant::now() >= at
        {
            break false;
        }
        let next = monoio::select! {
            r = conn.accept() => Some(r),
            _ = monoio::time::sleep(TICK) => None,
            _ = worker.drain.wait(), if closing.is_none() => None,
            _ = worker.cut.wait() => break false,
        };
        match next {
            Some(Some(Ok((request, respond)))) => {
                shared.streams.set(shared.streams.get() + 1);
                shared.open.set(shared.open.get() + 1);
                monoio::spawn(stream::serve(shared.clone(), request, respond));
                if shared.streams.get() >= MAX_STREAMS_PER_CONNECTION && closing.is_none() {
                    worker.metrics().h2_goaway(H2Goaway::MaxRequests);
                    conn.graceful_shutdown();
                    closing = Some(Instant::now() + idle_timeout);
                }
            }
            // The connection failed (an I/O error, or h2 sent GOAWAY for a protocol
            // error or abuse), or ended.
            Some(Some(Err(e))) => {
                let Some(why) = goaway_sent(&e) else {
                    break false;
                };
                if why == H2Goaway::Abuse {
                    worker.metrics().h2_abusive();
                }
                worker.metrics().h2_goaway(why);
                break true;
            }
            Some(None) => break false,
            None => {}
        }
        if shared.abusive() {
            worker.metrics().h2_abusive();
            worker.metrics().h2_goaway(H2Goaway::Abuse);
            conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
            // Let the GOAWAY go out, briefly.
            let _ =
                monoio::time::timeout(CLOSE_SLACK, std::future::poll_fn(|cx| conn.poll_closed(cx)))
                    .await;
            break true;
        }
        if closing.is_none() {
            let now = Instant::now();
            if worker.drain.is_fired() {
                worker.metrics().h2_goaway(H2Goaway::Drain);
                conn.graceful_shutdown();
                let grace = worker.snapshot().config.server.shutdown_grace;
                closing = Some(now + grace);
            } else if shared.open.get() == 0
                && now.saturating_duration_since(shared.last_end.get()) >= idle_timeout
            {
                worker.metrics().h2_goaway(H2Goaway::Idle);
                conn.graceful_shutdown();
                closing = Some(now + CLOSE_SLACK);
            }
        }
    };
    drop(conn);
    if let Some(left) = stash.take()
        && error_goaway
    {
        monoio::select! {
            () = left.linger() => {}
            _ = worker.cut.wait() => {}
        }
    }
}

/// Why the GOAWAY that came with a connection error was sent, if the gateway sent one: the
/// `h2` crate's for the client's errors (`ENHANCE_YOUR_CALM`: abuse; any other code: a
/// protocol error). An I/O error or the client's own GOAWAY: none.
fn goaway_sent(e: &h2::Error) -> Option<H2Goaway> {
    if !e.is_go_away() || e.is_remote() {
        return None;
    }
    match e.reason()? {
        Reason::NO_ERROR => None,
        Reason::ENHANCE_YOUR_CALM => Some(H2Goaway::Abuse),
        _ => Some(H2Goaway::ProtocolError),
    }
}

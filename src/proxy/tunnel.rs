//! WebSocket tunnels (SPEC §5): after the backend answered the forwarded handshake with 101,
//! the client connection and a fresh upstream connection are joined, and bytes are relayed
//! both ways without framing them — a body relay in each direction, as Pingora turns a 101
//! into a close-delimited body.
//!
//! - Bytes already read past each head go first: the client's (read after its handshake)
//!   to the backend; the backend's (read with its 101) were sent with the 101 itself.
//! - Half-close: one side's end of stream is passed on as a FIN (`shutdown(SHUT_WR)`) to the
//!   other; the tunnel ends when both directions have ended, or at once when either fails.
//! - Idle: with no byte either way for `ws_idle_timeout_ms` the tunnel closes.
//! - Shutdown: a tunnel lives through the drain's grace period (`shutdown_grace_ms`) and is
//!   cut when it ends (the worker's `cut` signal), still logged.
//! - The one exit logs the request (status 101, duration, bytes each way, and why the tunnel
//!   ended: `closed`, `idle`, `shutdown`, or the side that failed and its error) when the
//!   tunnel ends.

use std::cell::Cell;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use super::io::{Read, WriteFailed, read_until, write_until};
use super::request::Request;
use crate::runtime::access_log::TunnelEnd;
use crate::runtime::drain::Drain;
use crate::runtime::metrics::TunnelEndKind;
use crate::runtime::upstream_stream::UpstreamStream;

/// Bytes read per relay step.
pub const TUNNEL_BUFFER_BYTES: usize = 16 * 1024;

/// A tunnel ready to run: the request (logged when the tunnel ends) and the upstream
/// connection that answered 101.
pub struct Tunnel {
    pub req: Request,
    pub up: UpstreamStream,
}

/// A tunnel's two sides, named in its end reason.
#[derive(Clone, Copy)]
enum Side {
    Client,
    Upstream,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }

    /// How a failure on this side is counted.
    fn kind(self) -> TunnelEndKind {
        match self {
            Side::Client => TunnelEndKind::ClientError,
            Side::Upstream => TunnelEndKind::UpstreamError,
        }
    }
}

/// Runs the tunnel to its end and logs it. `pending`: client bytes read after the handshake
/// head. `client_read` / `client_write`: the two halves of the client stream.
pub async fn run<R, W>(mut client_read: R, mut client_write: W, pending: Vec<u8>, tunnel: Tunnel)
where
    R: AsyncReadRent,
    W: AsyncWriteRent,
{
    let Tunnel { mut req, up } = tunnel;
    let idle = req.snapshot.config.server.ws_idle_timeout;
    let (mut up_read, mut up_write) = up.into_halves();
    let last = Cell::new(Instant::now());
    let stop = Drain::default();
    let worker = req.worker.clone();
    worker.metrics().tunnel_opened();
    let ends = Ends {
        stop: &stop,
        cut: &worker.cut,
    };
    let ((up, up_end), (down, down_end)) = monoio::join!(
        copy(
            (&mut client_read, Side::Client),
            (&mut up_write, Side::Upstream),
            pending,
            &last,
            ends,
            idle
        ),
        copy(
            (&mut up_read, Side::Upstream),
            (&mut client_write, Side::Client),
            Vec::new(),
            &last,
            ends,
            idle
        ),
    );
    let (kind, reason) = up_end
        .or(down_end)
        .unwrap_or_else(|| ended(TunnelEndKind::Closed));
    worker.metrics().tunnel_ended(kind);
    req.tunnel = Some(TunnelEnd { up, down, reason });
    req.finish();
}

/// What ends a tunnel from outside a direction: the other direction failing (`stop`), or
/// the end of the shutdown grace period (`cut`).
#[derive(Clone, Copy)]
struct Ends<'a> {
    stop: &'a Drain,
    cut: &'a Drain,
}

/// One direction: copies until the source ends (then passes the FIN on), fails, or the
/// tunnel is idle or stopped. Returns the bytes copied and, when this direction ended the
/// tunnel (not by an end of stream, nor stopped by the other direction), why. `src` and
/// `dst` come with their side. Each direction has its own
/// [`TUNNEL_BUFFER_BYTES`] buffer for the tunnel's life (not a pooled relay buffer, which is
/// four times larger: a long-lived idle tunnel should stay small).
async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(
    (src, from): (&mut R, Side),
    (dst, to): (&mut W, Side),
    mut pending: Vec<u8>,
    last: &Cell<Instant>,
    ends: Ends<'_>,
    idle: Duration,
) -> (u64, Option<(TunnelEndKind, String)>) {
    let stop = ends.stop;
    let mut copied = 0u64;
    if !pending.is_empty() {
        let len = pending.len();
        if let Err(e) = write_until(dst, &mut pending, 0, len, Instant::now() + idle).await {
            stop.fire();
            return (copied, Some(write_failed(to, &e)));
        }
        copied += len as u64;
    }
    let mut buf = Vec::with_capacity(TUNNEL_BUFFER_BYTES);
    loop {
        let deadline = last.get() + idle;
        let read = monoio::select! {
            _ = stop.wait() => return (copied, None),
            _ = ends.cut.wait() => {
                stop.fire();
                return (copied, Some(ended(TunnelEndKind::Shutdown)));
            }
            r = read_until(src, &mut buf, deadline) => r,
        };
        match read {
            Read::Data(n) => {
                last.set(Instant::now());
                let written = write_until(dst, &mut buf, 0, n, Instant::now() + idle).await;
                if let Err(e) = written {
                    stop.fire();
                    return (copied, Some(write_failed(to, &e)));
                }
                copied += n as u64;
                buf.clear();
            }
            Read::Eof => {
                // Half-close: the other side sees our peer's FIN and may still answer.
                let _ = dst.shutdown().await;
                return (copied, None);
            }
            Read::Timeout if last.get() + idle > Instant::now() => {}
            Read::Timeout => {
                stop.fire();
                return (copied, Some(ended(TunnelEndKind::Idle)));
            }
            Read::Failed(e) => {
                stop.fire();
                return (
                    copied,
                    Some((from.kind(), format!("{} read failed: {e}", from.name()))),
                );
            }
        }
        if buf.capacity() < TUNNEL_BUFFER_BYTES {
            // A read that timed out keeps its buffer (see `io`); never run dry.
            buf.reserve(TUNNEL_BUFFER_BYTES);
        }
    }
}

/// A tunnel's end that is not a failure: the reason is the kind's label.
fn ended(kind: TunnelEndKind) -> (TunnelEndKind, String) {
    (kind, kind.label().into())
}

/// A tunnel's end for a failed write to `side`.
fn write_failed(side: Side, e: &WriteFailed) -> (TunnelEndKind, String) {
    let name = side.name();
    let reason = match &e.error {
        Some(err) => format!("{name} write failed: {err}"),
        None => format!("{name} write timed out"),
    };
    (side.kind(), reason)
}

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
//! - The one exit logs the request (status 101, duration, bytes each way) when the tunnel
//!   ends.

use std::cell::Cell;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::time::Instant;

use super::io::{Read, read_until, write_until};
use super::request::Request;
use crate::runtime::drain::Drain;
use crate::runtime::upstream_stream::UpstreamStream;

/// Bytes read per relay step.
pub const TUNNEL_BUFFER_BYTES: usize = 16 * 1024;

/// A tunnel ready to run: the request (logged when the tunnel ends) and the upstream
/// connection that answered 101.
pub struct Tunnel {
    pub req: Request,
    pub up: UpstreamStream,
}

/// Bytes relayed each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relayed {
    pub client_to_backend: u64,
    pub backend_to_client: u64,
}

/// Runs the tunnel to its end. `pending`: client bytes read after the handshake head.
/// `client_read` / `client_write`: the two halves of the client stream.
pub async fn run<R, W>(
    mut client_read: R,
    mut client_write: W,
    pending: Vec<u8>,
    tunnel: Tunnel,
) -> Relayed
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
    let ends = Ends {
        stop: &stop,
        cut: &worker.cut,
    };
    let (client_to_backend, backend_to_client) = monoio::join!(
        copy(&mut client_read, &mut up_write, pending, &last, ends, idle),
        copy(
            &mut up_read,
            &mut client_write,
            Vec::new(),
            &last,
            ends,
            idle
        ),
    );
    let relayed = Relayed {
        client_to_backend,
        backend_to_client,
    };
    req.tunnel = Some((relayed.client_to_backend, relayed.backend_to_client));
    req.finish();
    relayed
}

/// What ends a tunnel from outside a direction: the other direction failing (`stop`), or
/// the end of the shutdown grace period (`cut`).
#[derive(Clone, Copy)]
struct Ends<'a> {
    stop: &'a Drain,
    cut: &'a Drain,
}

/// One direction: copies until the source ends (then passes the FIN on), fails, or the
/// tunnel is idle or stopped. Returns the bytes copied. Each direction has its own
/// [`TUNNEL_BUFFER_BYTES`] buffer for the tunnel's life (not a pooled relay buffer, which is
/// four times larger: a long-lived idle tunnel should stay small).
async fn copy<R: AsyncReadRent, W: AsyncWriteRent>(
    src: &mut R,
    dst: &mut W,
    mut pending: Vec<u8>,
    last: &Cell<Instant>,
    ends: Ends<'_>,
    idle: Duration,
) -> u64 {
    let stop = ends.stop;
    let mut copied = 0u64;
    if !pending.is_empty() {
        let len = pending.len();
        if write_until(dst, &mut pending, 0, len, Instant::now() + idle)
            .await
            .is_err()
        {
            stop.fire();
            return copied;
        }
        copied += len as u64;
    }
    let mut buf = Vec::with_capacity(TUNNEL_BUFFER_BYTES);
    loop {
        let deadline = last.get() + idle;
        let read = monoio::select! {
            _ = stop.wait() => return copied,
            _ = ends.cut.wait() => {
                stop.fire();
                return copied;
            }
            r = read_until(src, &mut buf, deadline) => r,
        };
        match read {
            Read::Data(n) => {
                last.set(Instant::now());
                let written = write_until(dst, &mut buf, 0, n, Instant::now() + idle).await;
                if written.is_err() {
                    stop.fire();
                    return copied;
                }
                copied += n as u64;
                buf.clear();
            }
            Read::Eof => {
                // Half-close: the other side sees our peer's FIN and may still answer.
                let _ = dst.shutdown().await;
                return copied;
            }
            Read::Timeout if last.get() + idle > Instant::now() => {}
            Read::Timeout | Read::Failed(_) => {
                stop.fire();
                return copied;
            }
        }
        if buf.capacity() < TUNNEL_BUFFER_BYTES {
            // A read that timed out keeps its buffer (see `io`); never run dry.
            buf.reserve(TUNNEL_BUFFER_BYTES);
        }
    }
}

//! The bodies of a forwarded stream, both ways, in bounded chunks:
//!
//! ```text
//! request:  DATA (capacity released as read; max_body_bytes, client_body_timeout)
//!           → RequestBody::buffer (up to request_buffer_bytes, before a connection is
//!             taken) → RequestBody::send_rest (the rest, streamed once one is)
//!           → framed for the backend: as it is, or re-chunked when it had no length
//! response: backend bytes (up to RELAY_BYTES at a time) → dechunk::Decoder → send_data, within
//!           the client's flow-control window → END_STREAM, connection back to the pool;
//!           or RST_STREAM(INTERNAL_ERROR) if the backend broke off
//! ```
//!
//! A slow client slows the backend read (a read waits for the window), and no body is
//! buffered whole.

use std::future::poll_fn;
use std::time::Duration;

use bytes::Bytes;
use h2::{Reason, RecvStream, SendStream};
use monoio::io::AsyncWriteRent;
use monoio::time::Instant;

use super::dechunk::Decoder;
use super::head::to_h2_response;
use super::stream::{End, Stream};
use crate::error::{BodyStall, ErrorKind, GatewayError};
use crate::gateway::Local;
use crate::http::response::{ClientConnection, ResponseFraming, write_client_head};
use crate::proxy::io::{Read, read_until, write_all_until};
use crate::proxy::upstream::{UpConn, broke, read_response_head};
use crate::runtime::pool::UpstreamPool;

/// Body bytes read (from the backend) or framed (for it) at once.
const RELAY_BYTES: usize = 16 * 1024;

/// A request body on its way to the backend: its running size against `max_body_bytes`,
/// the client's pace, and its framing upstream.
pub(super) struct RequestBody {
    body: RecvStream,
    /// Sent chunked (the request had no `content-length`).
    chunked: bool,
    max: u64,
    timeout: Duration,
    received: u64,
}

impl RequestBody {
    pub(super) fn new(body: RecvStream, chunked: bool, max: u64, timeout: Duration) -> Self {
        RequestBody {
            body,
            chunked,
            max,
            timeout,
            received: 0,
        }
    }

    /// Appends the body, framed, to `out` until it ends or `out` holds `limit` bytes.
    /// `Ok(true)`: the whole body is in. Errors as [`Self::next`].
    pub(super) async fn buffer(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<bool, Option<GatewayError>> {
        loop {
            if out.len() >= limit {
                return Ok(false);
            }
            if !self.next_framed(out).await? {
                return Ok(true);
            }
        }
    }

    /// Streams the rest of the body to the backend, each piece within `timeout`.
    pub(super) async fn send_rest<W: AsyncWriteRent>(
        &mut self,
        up: &mut W,
        timeout: Duration,
    ) -> Result<(), Option<GatewayError>> {
        let mut out = Vec::with_capacity(RELAY_BYTES);
        loop {
            out.clear();
            let more = self.next_framed(&mut out).await?;
            let to = Instant::now() + timeout;
            if !out.is_empty() && !write_all_until(up, &mut out, to).await {
                return Err(Some(broke(
                    "backend connection broke while sending the body",
                )));
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Appends the next DATA to `out` as the upstream body is framed: as it is, or as one
    /// chunk (and the last chunk at the end). `Ok(false)`: the body ended.
    async fn next_framed(&mut self, out: &mut Vec<u8>) -> Result<bool, Option<GatewayError>> {
        match self.next().await? {
            Some(data) if self.chunked => {
                use std::io::Write as _;
                let _ = write!(out, "{:x}\r\n", data.len());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                Ok(true)
            }
            Some(data) => {
                out.extend_from_slice(&data);
                Ok(true)
            }
            None => {
                if self.chunked {
                    out.extend_from_slice(b"0\r\n\r\n");
                }
                Ok(false)
            }
        }
    }

    /// The next DATA of the request body (its flow-control capacity released); `Ok(None)`
    /// at its end; `Err(None)`: the client reset the stream; `Err(Some)`: too large or late.
    async fn next(&mut self) -> Result<Option<Bytes>, Option<GatewayError>> {
        loop {
            let data = match monoio::time::timeout(self.timeout, self.body.data()).await {
                Err(_) => {
                    return Err(Some(GatewayError::new(ErrorKind::BodyTimeout(
                        BodyStall::Stalled,
                    ))));
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(_))) => return Err(None),
                Ok(Some(Ok(d))) => d,
            };
            let _ = self.body.flow_control().release_capacity(data.len());
            self.received += data.len() as u64;
            if self.received > self.max {
                return Err(Some(GatewayError::new(ErrorKind::BodyTooLarge)));
            }
            if !data.is_empty() {
                return Ok(Some(data));
            }
        }
    }
}

impl Stream<'_> {
    /// The backend's answer to the client: interim heads skipped, the head as HTTP/2, the
    /// body by its framing; the connection back to the pool when it ended cleanly.
    pub(super) async fn relay(
        &mut self,
        mut up: UpConn,
        ubuf: &mut Vec<u8>,
        pool: &UpstreamPool,
        timeout: Duration,
    ) -> End {
        let worker = self.shared.worker.clone();
        let idle = self.req.snapshot.config.server.client_idle_timeout;
        let req = &mut *self.req;
        while (100..200).contains(&req.s.response.status) && req.s.response.status != 101 {
            let len = req.s.response.len;
            ubuf.drain(..len);
            let deadline = Instant::now() + timeout;
            if let Err(e) = read_response_head(
                &mut up.stream,
                ubuf,
                self.head_request,
                &mut req.s.response,
                deadline,
            )
            .await
            {
                return self.local(&Local::Error(e)).await;
            }
        }
        let response = &req.s.response;
        if response.framing == ResponseFraming::Upgrade {
            let e = broke("the backend switched protocols on a request that did not ask to");
            return self.local(&Local::Error(e)).await;
        }
        let s = &mut req.s;
        s.out.clear();
        write_client_head(
            ubuf,
            &s.response,
            &s.request_id,
            ClientConnection::KeepAlive,
            &s.extra,
            &mut s.out,
        );
        let Some((head, _)) = to_h2_response(&s.out) else {
            let e = broke("the backend's response head cannot be sent over HTTP/2");
            return self.local(&Local::Error(e)).await;
        };
        req.status = req.s.response.status;
        let framing = req.s.response.framing;
        let reusable = req.s.response.reusable;
        let here_start = req.s.response.len;
        let no_body = framing == ResponseFraming::None;
        let mut send = match self.respond.send_response(head, no_body) {
            Ok(s) => s,
            Err(_) => return End::Cancelled,
        };
        if no_body {
            if ubuf.len() == here_start && reusable && !worker.drain.is_fired() {
                pool.put(up.target, up.stream);
            }
            return End::Done;
        }
        let mut sent: u64 = 0;
        let mut decoder = Decoder::new(framing);
        let mut input = std::mem::take(ubuf);
        input.drain(..here_start);
        let mut ended = false;
        let clean = loop {
            // Each piece of body is decoded straight into the buffer that becomes its DATA:
            // as large as the piece (no more than the bytes at hand), so that a small body
            // costs one small allocation and one copy.
            let mut data = Vec::with_capacity(decoder.output_bound(input.len()));
            let used = match decoder.feed(&input, &mut data) {
                Ok(n) => n,
                Err(()) => break false,
            };
            let rest = input.len() - used;
            if !data.is_empty() {
                sent += data.len() as u64;
                // The body's last bytes carry END_STREAM (no empty DATA frame after them).
                ended = decoder.done();
                if !send_data(&mut send, Bytes::from(data), ended, idle).await {
                    self.req.client_bytes.1 = sent;
                    *ubuf = input;
                    return End::Cancelled;
                }
            }
            if decoder.done() {
                break rest == 0;
            }
            input.clear();
            if input.capacity() < RELAY_BYTES {
                input.reserve(RELAY_BYTES);
            }
            match read_until(&mut up.stream, &mut input, Instant::now() + timeout).await {
                Read::Data(_) => {}
                Read::Eof if framing == ResponseFraming::UntilClose => {
                    decoder.finish();
                    break false;
                }
                _ => break false,
            }
        };
        *ubuf = input;
        self.req.client_bytes.1 = sent;
        if decoder.done() {
            if !ended {
                let _ = send.send_data(Bytes::new(), true);
            }
            if clean && reusable && !worker.drain.is_fired() {
                pool.put(up.target, up.stream);
            }
        } else {
            // The backend broke off: the client must not take the body for whole.
            send.send_reset(Reason::INTERNAL_ERROR);
        }
        End::Done
    }
}

/// Sends `data` within the client's flow-control window, waiting (up to `idle` each time)
/// for capacity; its last frame ends the stream when `end`. `false`: the stream is gone.
pub(super) async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    idle: Duration,
) -> bool {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let cap = monoio::time::timeout(idle, poll_fn(|cx| send.poll_capacity(cx))).await;
        match cap {
            Ok(Some(Ok(n))) if n > 0 => {
                let chunk = data.split_to(n.min(data.len()));
                if send.send_data(chunk, end && data.is_empty()).is_err() {
                    return false;
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => {
                send.send_reset(Reason::CANCEL);
                return false;
            }
        }
    }
    true
}

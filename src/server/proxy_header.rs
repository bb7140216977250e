//! `server.proxy_protocol = true`: the PROXY protocol header read off a new client
//! connection before anything else, on the plain and the HTTPS listeners alike (SPEC §9).
//!
//! The header is read into a buffer of [`INITIAL_READ_BYTES`] until
//! [`crate::http::proxy_protocol::parse`] finds it whole; whatever the same reads brought
//! after it is the client's and goes on to the next stage: the connection's read buffer on a
//! plain listener (the start of the first request), rustls on an HTTPS one (the start of the
//! ClientHello). A connection whose header is missing, malformed or late is closed without
//! an answer, counted (`ringway_proxy_protocol_failures_total{reason}`) and summarized on
//! stderr (at most a line a second per worker).

use std::net::SocketAddr;

use monoio::net::TcpStream;
use monoio::time::Instant;

use crate::http::proxy_protocol::{Invalid, Parsed, parse};
use crate::proxy::conn::INITIAL_READ_BYTES;
use crate::proxy::io::{Read, read_until};
use crate::runtime::Worker;
use crate::runtime::metrics::ProxyHeaderFailure;

/// Reads the header from `stream`, whose TCP peer is `peer`, before `deadline`.
/// `Some((client, rest))`: the client's address (the header's source; `peer` for a v2
/// `LOCAL` or v1 `UNKNOWN` header, which carry none) and the bytes read after the header.
/// `None`: no header (counted and noted here), the client closed before sending a byte, or a
/// drain's linger ended the wait; close the connection.
pub async fn read(
    stream: &mut TcpStream,
    peer: SocketAddr,
    worker: &Worker,
    deadline: Instant,
) -> Option<(SocketAddr, Vec<u8>)> {
    let mut buf = Vec::with_capacity(INITIAL_READ_BYTES);
    let why = loop {
        match parse(&buf) {
            Ok(Parsed::Header { source, consumed }) => {
                buf.drain(..consumed);
                return Some((source.unwrap_or(peer), buf));
            }
            Ok(Parsed::Incomplete) => {}
            Err(Invalid::Missing) => break ProxyHeaderFailure::Missing,
            Err(Invalid::TooLong) => break ProxyHeaderFailure::TooLong,
            Err(Invalid::Malformed) => break ProxyHeaderFailure::Malformed,
        }
        if buf.len() == buf.capacity() {
            // A v2 header with TLVs longer than the buffer (`parse` bounds the header).
            buf.reserve(buf.capacity());
        }
        let read = monoio::select! {
            _ = worker.linger.wait() => return None,
            r = read_until(stream, &mut buf, deadline) => r,
        };
        match read {
            Read::Data(_) => {}
            Read::Timeout => break ProxyHeaderFailure::Timeout,
            // Connected and closed with nothing sent: a TCP health check, not a failure.
            Read::Eof | Read::Failed(_) if buf.is_empty() => return None,
            Read::Eof | Read::Failed(_) => break ProxyHeaderFailure::Closed,
        }
    };
    worker.metrics().proxy_header_failed(why);
    worker.proxy_failures.failed(worker.index, peer, why);
    None
}

//! The HTTP/1.1 data path of one worker.
//!
//! - [`conn`]: a client connection's life cycle and the request pipeline (one function).
//! - [`request`]: one request's context (its snapshot, buffers, log fields), and the values
//!   folded through it: keep-alive ([`request::Persist`]) and body state.
//! - [`upstream`]: the VPC backend exchange, a component that owns its upstream connection:
//!   pool, forward, retries, answer relay.
//! - [`tunnel`]: WebSocket tunnels after a 101: bytes both ways, half-close, idle timeout.
//! - [`body`]: streaming body relay by framing.
//! - [`io`]: owned-buffer reads and writes with deadlines.
//! - [`h2`]: HTTP/2 at the edge: each stream through the same pipeline, forwarded as
//!   HTTP/1.1 over the same pools (SPEC §10).
//! - [`splice`]: zero-copy relay of large bodies between plain TCP sockets.

pub mod body;
pub mod conn;
pub mod h2;
pub mod io;
pub mod metered;
pub mod pace;
pub mod request;
pub mod splice;
pub mod tunnel;
pub mod upstream;

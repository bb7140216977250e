//! The HTTP/1.1 data path of one worker.
//!
//! - [`conn`]: a client connection's life cycle and the request pipeline (one function).
//! - [`upstream`]: the VPC backend exchange: pool, forward, retries, answer relay.
//! - [`pool`]: per-worker keepalive pools per upstream target.
//! - [`body`]: streaming body relay by framing.
//! - [`access_log`]: the JSON access log, buffered per worker.
//! - [`io`]: owned-buffer reads and writes with deadlines.

pub mod access_log;
pub mod body;
pub mod conn;
pub mod io;
pub mod pool;
pub mod upstream;

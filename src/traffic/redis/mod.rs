//! The Redis store's client: a pipelined RESP2 client on monoio, and the Lua scripts of the
//! fleet-wide counters (GCRA rates, sliding windows, quotas).
//!
//! This module owns the connection to Redis and what goes over it; it decides nothing about
//! requests (that is [`crate::traffic`]'s job, which leases from these counters).
//!
//! ```text
//! caller task ──rate_take/window_take/quota_*──▶ scripts (EVALSHA, NOSCRIPT → EVAL)
//!   ──call/exchange──▶ conn: Link outbox ──writer task──▶ TCP ──▶ Redis
//!   ◀──Slot (in order)── conn: Link waiters ◀──reader task── wire::frame_len + decode ◀──┘
//! ```
//!
//! - [`url`]: `redis://[[user]:password@]host[:port][/db]`, parsed when the configuration
//!   loads; the host is resolved at connect time.
//! - [`wire`]: commands ([`Cmd`]) and replies ([`Reply`]); encoding and decoding by the
//!   `redis-protocol` crate, framing with bounded size and depth.
//! - [`conn`]: [`Redis`], one per worker thread: one connection shared by the worker's tasks,
//!   every call bounded by the configured timeout, a circuit breaker that fails calls at
//!   once while Redis is down and reconnects in the background.
//! - `link`: one connection's pipeline (outbox, waiters in wire order, reader and writer
//!   tasks).
//! - [`scripts`]: the Lua scripts and the typed batch calls on [`Redis`].

pub mod blocking;
pub mod conn;
mod link;
pub mod scripts;
pub mod url;
pub mod wire;

#[cfg(test)]
mod tests;

pub use conn::{FIRST_BACKOFF, MAX_BACKOFF, Redis, StoreError, TIMEOUTS_TO_TRIP};
pub use scripts::{QuotaGrant, QuotaTake, RateGrant, RateTake, WindowGrant, WindowTake};
pub use url::RedisUrl;
pub use wire::{Cmd, Reply};

/// Checks a configured `redis_url` (the configuration's build calls this).
pub fn check_url(url: &str) -> Result<(), String> {
    RedisUrl::parse(url).map(|_| ())
}

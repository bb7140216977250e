//! ringway: a self-hosted API gateway for Linux edge hosts.
//!
//! - [`config`] loads the TOML file (SPEC §1) into typed, validated runtime structs,
//!   including the compiled route table.
//! - [`router`] owns the route table (SPEC §2) and backend path composition (SPEC §3).
//! - [`http`] the pure HTTP/1.1 pieces (heads, chunked framing, replies, limits).
//! - [`auth`] the auth cryptography (HMAC key pairs, JWT), pure functions over bytes.
//! - [`gateway`] what the gateway decides per request: route, 426, WebSocket check, CORS,
//!   auth, params, and the upstream head (SPEC §2-§4).
//! - [`runtime`] a worker's per-core state: configuration snapshot, pools, buffers, log.
//! - [`proxy`] is a worker's data path: connections, the request pipeline, upstream exchange.
//! - [`server`] runs the process: listeners, worker threads, signals.
//! - [`docs`] the generated API documentation (OpenAPI 3.0 and HTML), pure functions of a
//!   [`config::Config`].
//! - [`cli`] implements the `check`, `route`, `docs` and `reload` commands (SPEC §7).
//!
//! Dependencies run one way: `server` → `proxy` → `runtime` → `gateway` → `config`,
//! `router`, `auth`, `http`, `error`.

pub mod auth;
pub mod cli;
pub mod config;
pub mod docs;
pub mod error;
pub mod gateway;
pub mod http;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod say;
pub mod server;
pub mod tls;
pub mod traffic;

//! ringway: a self-hosted API gateway for Linux edge hosts.
//!
//! - [`config`] loads the TOML file (SPEC §1) into typed, validated runtime structs,
//!   including the compiled route table.
//! - [`router`] owns the route table (SPEC §2) and backend path composition (SPEC §3).
//! - [`server`] runs the process: listeners, worker threads, signals.
//! - [`proxy`] is a worker's data path: connections, upstream exchange, pools.
//! - [`cli`] implements the `check` and `route` commands (SPEC §7).

pub mod cli;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod proxy;
pub mod router;
pub mod runtime;
pub mod server;

//! The cryptography of the auth stage, as pure functions over bytes: no configuration, no
//! I/O, no clock reads (the caller passes `now`). [`crate::config`] compiles keys with it at
//! load time; [`crate::gateway::auth`] finds the credentials in a request and calls it.
//!
//! - [`hmac`]: key-pair auth — the `Authorization: hmac ...` header, the signing string, the
//!   date window, the constant-time signature check (SPEC §4 key_pair).
//! - [`jwt`]: OAuth 2.0 — compact JWS decoding, RSA/EC signature verification with a JWK,
//!   `exp`/`nbf`, token extraction and the per-worker cache of verified tokens.

pub mod hmac;
pub mod jwt;

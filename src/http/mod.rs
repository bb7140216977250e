//! HTTP/1.1 on both sides of the gateway, as pure functions over byte buffers (no I/O):
//!
//! - [`head`] parses a client's request head into offsets into the connection's read buffer,
//!   refusing every malformed case of SPEC §6 and enforcing the head limits of SPEC §1.
//! - [`authority`] the syntax of a Host header and of an absolute-form authority.
//! - [`chunked`] scans a chunked body as it streams through, to find where it ends.
//! - [`limits`] the size limits those parsers enforce (SPEC §1).
//! - [`proxy_protocol`] the PROXY protocol header a load balancer sends before the client's
//!   bytes (SPEC §9).
//! - [`reply`] writes the responses the gateway makes itself (errors, mocks) and request ids.
//! - [`response`] reads the backend's response head: body framing and connection reuse.
//!
//! Nothing here knows the configuration or the gateway's APIs: the layers above
//! ([`crate::gateway`], [`crate::proxy`]) drive these pieces.

pub mod authority;
pub mod chunked;
pub mod head;
pub mod limits;
pub mod proxy_protocol;
pub mod reply;
pub mod response;

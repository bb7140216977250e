//! HTTP/1.1 on both sides of the gateway, as pure functions over byte buffers (no I/O):
//!
//! - [`head`] parses a client's request head into offsets into the connection's read buffer,
//!   refusing every malformed case of SPEC §6 and enforcing the head limits of SPEC §1.
//! - [`chunked`] scans a chunked body as it streams through, to find where it ends.
//! - [`forward`] writes the request head sent to the backend (SPEC §3 transformations).
//! - [`reply`] writes the responses the gateway makes itself (errors, mocks) and request ids.
//! - [`response`] reads the backend's response head: body framing and connection reuse.
//!
//! The connection state machine and the worker runtime that drive them belong to the data
//! path (issue 3).

pub mod chunked;
pub mod forward;
pub mod head;
pub mod reply;
pub mod response;

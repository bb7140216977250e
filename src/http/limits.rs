//! The limits a request head and body must fit (SPEC §1 `max_*` keys). Owned here, by the
//! parsers that enforce them; the configuration builds one value of this type.

/// Per-request size limits; each breach has its own status (SPEC §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Whole request head, request line included → 431.
    pub max_header_bytes: usize,
    /// Header fields → 431.
    pub max_headers: usize,
    /// Request target → 414.
    pub max_uri_bytes: usize,
    /// Request body (Content-Length, or the sum of chunks) → 413.
    pub max_body_bytes: u64,
}

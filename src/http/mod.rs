//! HTTP/1.1 on the client side of the gateway. `head` parses request heads into offsets
//! into the connection's read buffer; the connection state machine and body streaming that
//! build on it belong to the data path.

pub mod chunked;
pub mod head;

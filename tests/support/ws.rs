//! A plain WebSocket echo backend for the tunnel tests: it answers the opening handshake
//! with 101 and the accept value of RFC 6455 §1.3's example key (`KEY` → `ACCEPT`, taken
//! from the RFC, not from ringway), echoes every byte, and on the client's FIN sends `bye`
//! and closes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::find;

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Starts the backend on 127.0.0.1; a thread per connection, every read bounded.
pub fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(30)));
                let Some((data, end)) = read_head(&mut c) else {
                    return;
                };
                if c.write_all(switching_protocols().as_bytes()).is_err()
                    || c.write_all(&data[end..]).is_err()
                {
                    return;
                }
                echo_until_the_end(&mut c);
            });
        }
    });
    addr
}

/// Echoes every byte read from `c`; at its end of stream writes `bye` and returns.
pub fn echo_until_the_end(c: &mut TcpStream) {
    let mut chunk = [0u8; 65536];
    loop {
        match c.read(&mut chunk) {
            Ok(0) => {
                let _ = c.write_all(b"bye");
                return;
            }
            Ok(n) => {
                if c.write_all(&chunk[..n]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

/// Reads from `c` until a whole request head: `(bytes read, end of the head)`; `None` if the
/// connection ended or failed first.
pub fn read_head(c: &mut TcpStream) -> Option<(Vec<u8>, usize)> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(i) = find(&data, b"\r\n\r\n") {
            return Some((data, i + 4));
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The backend's 101 answer to a handshake with [`KEY`].
pub fn switching_protocols() -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    )
}

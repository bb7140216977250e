//! The client's half of a WebSocket opening handshake (RFC 6455 §4.2.1), checked before a
//! `frontend_type = "ws"` API forwards it (SPEC §5): a GET over HTTP/1.1 with
//! `Upgrade: websocket`, `Connection: upgrade`, a `Sec-WebSocket-Key` that is the base64 of
//! 16 bytes, and `Sec-WebSocket-Version: 13`. Anything else is a 400.

use crate::error::{ErrorKind, GatewayError};
use crate::http::head::RequestHead;

/// Length of a base64-encoded 16-byte nonce.
const KEY_BASE64_LEN: usize = 24;

fn bad(why: &'static str) -> GatewayError {
    GatewayError::new(ErrorKind::BadRequest(why))
}

/// Checks the handshake of a request to a WebSocket API.
pub fn check_handshake(buf: &[u8], head: &RequestHead) -> Result<(), GatewayError> {
    if !head.upgrade {
        return Err(bad(
            "this is a WebSocket API: send a WebSocket upgrade request",
        ));
    }
    if head.method.get(buf) != b"GET" || head.minor_version != 1 {
        return Err(bad("a WebSocket handshake must be a GET over HTTP/1.1"));
    }
    let (mut websocket, mut key_ok, mut version_ok, mut keys) = (false, false, false, 0);
    for (n, v) in &head.headers {
        let (name, value) = (n.get(buf), v.get(buf));
        if name.eq_ignore_ascii_case(b"upgrade") {
            websocket |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case(b"sec-websocket-key") {
            keys += 1;
            key_ok = is_nonce(value);
        } else if name.eq_ignore_ascii_case(b"sec-websocket-version") {
            version_ok = value == b"13";
        }
    }
    if !websocket {
        return Err(bad("the Upgrade header must name websocket"));
    }
    if keys != 1 || !key_ok {
        return Err(bad("bad or missing Sec-WebSocket-Key"));
    }
    if !version_ok {
        return Err(bad("Sec-WebSocket-Version must be 13"));
    }
    Ok(())
}

/// base64 of exactly 16 bytes: 22 alphabet characters and `==`.
fn is_nonce(v: &[u8]) -> bool {
    v.len() == KEY_BASE64_LEN
        && v.ends_with(b"==")
        && v[..KEY_BASE64_LEN - 2]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        // The last character before the padding carries 2 bits; the other 4 must be zero.
        && b"AQgw".contains(&v[KEY_BASE64_LEN - 3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::parse_complete;

    #[test]
    fn handshake_table() {
        let ok = "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let cases: Vec<(String, bool)> = vec![
            (ok.to_string(), true),
            (ok.replace("Upgrade: websocket", "Upgrade: WebSocket"), true),
            (
                ok.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade"),
                true,
            ),
            (
                ok.replace("Connection: Upgrade", "Connection: keep-alive"),
                false,
            ),
            (ok.replace("Upgrade: websocket", "Upgrade: h2c"), false),
            (ok.replace("GET", "POST"), false),
            (ok.replace("HTTP/1.1", "HTTP/1.0"), false),
            (
                ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ==="),
                false,
            ),
            (ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short=="), false),
            (
                ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZR=="),
                false,
            ),
            (
                ok.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
                false,
            ),
            (ok.replace("Sec-WebSocket-Version: 13\r\n", ""), false),
            (
                ok.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                false,
            ),
            (
                ok.replace(
                    "Sec-WebSocket-Version",
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version",
                ),
                false,
            ),
            ("GET /chat HTTP/1.1\r\nHost: h\r\n\r\n".to_string(), false),
        ];
        for (raw, want) in cases {
            let h = parse_complete(raw.as_bytes());
            assert_eq!(check_handshake(raw.as_bytes(), &h).is_ok(), want, "{raw}");
        }
    }
}

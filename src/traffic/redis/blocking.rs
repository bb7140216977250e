//! One blocking exchange with Redis, for threads that are not workers (the admin listener's
//! `/usage` with the Redis store): connect, `AUTH`/`SELECT` as the URL says, the commands,
//! their replies, close. Every step is bounded by one deadline; nothing is kept.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::conn::StoreError;
use super::url::RedisUrl;
use super::wire::{Cmd, MAX_REPLY, Reply, decode_frame, frame_len};

/// Sends `cmds` (after `AUTH` and `SELECT` when the URL has them) and returns their
/// replies, all within `timeout`.
pub fn exchange(url: &RedisUrl, cmds: &[Cmd], timeout: Duration) -> Result<Vec<Reply>, StoreError> {
    let deadline = Instant::now() + timeout;
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| StoreError::Connection(format!("resolve {}: {e}", url.host)))?
        .next()
        .ok_or_else(|| StoreError::Connection(format!("{} resolves to no address", url.host)))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| StoreError::Connection(format!("connect to {addr}: {e}")))?;
    let mut out = Vec::new();
    let mut hello = 0;
    if let Some(password) = &url.password {
        let mut auth = Cmd::new("AUTH");
        if let Some(user) = &url.username {
            auth = auth.arg(user);
        }
        auth.arg(password).encode_into(&mut out);
        hello += 1;
    }
    if url.db != 0 {
        Cmd::new("SELECT").arg(url.db).encode_into(&mut out);
        hello += 1;
    }
    for c in cmds {
        c.encode_into(&mut out);
    }
    let left = |d: Instant| {
        d.checked_duration_since(Instant::now())
            .filter(|t| !t.is_zero())
            .ok_or(StoreError::Timeout)
    };
    s.set_write_timeout(Some(left(deadline)?))
        .and_then(|()| s.write_all(&out))
        .map_err(|e| StoreError::Connection(format!("write: {e}")))?;
    let mut buf = Vec::new();
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    while replies.len() < hello + cmds.len() {
        match frame_len(&buf).map_err(StoreError::Connection)? {
            Some(n) => {
                let reply = decode_frame(&buf[..n]).map_err(StoreError::Connection)?;
                buf.drain(..n);
                if replies.len() < hello
                    && let Reply::Error(e) = &reply
                {
                    return Err(StoreError::Connection(e.clone()));
                }
                replies.push(reply);
            }
            None => {
                if buf.len() > MAX_REPLY {
                    return Err(StoreError::Connection("reply too large".into()));
                }
                s.set_read_timeout(Some(left(deadline)?))
                    .map_err(|e| StoreError::Connection(e.to_string()))?;
                match s.read(&mut chunk) {
                    Ok(0) => return Err(StoreError::Connection("closed".into())),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(StoreError::Timeout);
                    }
                    Err(e) => return Err(StoreError::Connection(format!("read: {e}"))),
                }
            }
        }
    }
    Ok(replies.split_off(hello))
}

/// `MGET` of `keys` as counts (a missing key is 0).
pub fn counts(url: &RedisUrl, keys: &[String], timeout: Duration) -> Result<Vec<u64>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut mget = Cmd::new("MGET");
    for k in keys {
        mget = mget.arg(k);
    }
    let replies = exchange(url, &[mget], timeout)?;
    match replies.into_iter().next() {
        Some(Reply::Array(items)) if items.len() == keys.len() => Ok(items
            .into_iter()
            .map(|r| match r {
                Reply::Bulk(Some(b)) => std::str::from_utf8(&b)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(0),
                Reply::Int(n) => u64::try_from(n).unwrap_or(0),
                _ => 0,
            })
            .collect()),
        other => Err(StoreError::Reply(format!("MGET answered {other:?}"))),
    }
}

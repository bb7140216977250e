//! Listening sockets. Every worker gets its own `SO_REUSEPORT` socket per listen address, so
//! the kernel spreads new connections across workers with no shared accept queue.
//!
//! The first socket of an address fixes its port: `127.0.0.1:0` becomes a real port, and the
//! other workers bind that same port.
//!
//! `SO_REUSEPORT` would also let a second gateway (or any program of the same user that sets
//! it) share a port without a word, splitting the traffic between two configurations. So
//! before anything is bound, [`check_free`] tries each address with a plain bind: an address
//! another process listens on is refused, and sharing is only done on purpose, by
//! `run --upgrade-from` ([`super::upgrade`]).

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// The kernel accept queue of each worker socket.
pub const LISTEN_BACKLOG: i32 = 4096;

/// One bound, listening, non-blocking socket with `SO_REUSEADDR` and `SO_REUSEPORT`.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Is anyone listening on `addr`? A bind without `SO_REUSEPORT` (with `SO_REUSEADDR`, so
/// that connections in `TIME_WAIT` do not count) fails with `EADDRINUSE` exactly when a
/// socket is bound there, whatever options that socket has. Port 0 is always free.
pub fn check_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Sockets for `workers` workers on every address. Returns the bound addresses (real ports)
/// and, per worker, one listener per address in the order of `addrs`.
pub fn bind_all(
    addrs: &[SocketAddr],
    workers: usize,
) -> Result<(Vec<SocketAddr>, Vec<Vec<TcpListener>>), String> {
    let mut bound = Vec::with_capacity(addrs.len());
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    for &addr in addrs {
        let first = bind_reuseport(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let real = first
            .local_addr()
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        bound.push(real);
        let mut sockets = vec![first];
        for _ in 1..workers {
            sockets
                .push(bind_reuseport(real).map_err(|e| format!("cannot listen on {real}: {e}"))?);
        }
        for (w, s) in sockets.into_iter().enumerate() {
            per_worker[w].push(s);
        }
    }
    Ok((bound, per_worker))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_someone_listens_on_is_not_free() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = check_free(addr).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // Our own SO_REUSEPORT sockets are seen too (a second gateway would share them).
        let (bound, _sockets) = bind_all(&["127.0.0.1:0".parse().unwrap()], 2).unwrap();
        assert_eq!(
            check_free(bound[0]).unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        // The wildcard address conflicts with a listener on one address of the same port.
        let any: SocketAddr = format!("0.0.0.0:{}", addr.port()).parse().unwrap();
        assert!(check_free(any).is_err());
        drop(taken);
        check_free(addr).unwrap();
        check_free("127.0.0.1:0".parse().unwrap()).unwrap();
    }

    #[test]
    fn port_zero_is_shared_by_every_worker() {
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (bound, per_worker) = bind_all(&[addr], 3).unwrap();
        assert_ne!(bound[0].port(), 0);
        assert_eq!(per_worker.len(), 3);
        for listeners in &per_worker {
            assert_eq!(listeners[0].local_addr().unwrap(), bound[0]);
        }
    }
}

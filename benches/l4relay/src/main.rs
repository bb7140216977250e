//! `l4relay LISTEN ORIGIN`: the smallest useful TCP relay on monoio, the L4 floor that
//! `benches/vs_nginx.sh` measures ringway against.
//!
//! One thread, one io_uring runtime (same monoio as ringway, same cooperative task running
//! as ringway's workers). For each accepted client it connects to ORIGIN (one origin
//! connection per client connection, no pool) and copies bytes both ways with owned 16 KiB
//! buffers, one per direction, allocated once per connection. It parses nothing and adds
//! nothing: whatever an HTTP proxy does beyond this is the cost of doing HTTP.
//!
//! When either side closes (EOF) or fails, both connections are closed: there is no TCP
//! half-close, which a keepalive HTTP/1.1 client such as wrk never needs.
//!
//! Example: `l4relay 127.0.0.1:18085 127.0.0.1:18080`.

use std::io;
use std::net::SocketAddr;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::{ListenerOpts, TcpListener, TcpStream};

/// One buffer per direction per connection.
const BUF_SIZE: usize = 16 * 1024;

/// Submission queue size, as ringway's workers use.
const URING_ENTRIES: u32 = 4096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, origin) = match args.as_slice() {
        [l, o] => match (l.parse::<SocketAddr>(), o.parse::<SocketAddr>()) {
            (Ok(l), Ok(o)) => (l, o),
            _ => usage(),
        },
        _ => usage(),
    };
    // Cooperative task running (kernel 5.19+), as ringway's workers; else a plain ring.
    let mut coop = io_uring::IoUring::builder();
    coop.setup_coop_taskrun();
    let runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(URING_ENTRIES)
        .uring_builder(coop)
        .build()
        .or_else(|_| {
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(URING_ENTRIES)
                .build()
        });
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("l4relay: cannot start an io_uring runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async move {
        let opts = ListenerOpts::new().reuse_addr(true).backlog(4096);
        let listener = match TcpListener::bind_with_config(listen, &opts) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("l4relay: cannot listen on {listen}: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("l4relay: listening on {listen}, relaying to {origin}");
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    monoio::spawn(async move {
                        match relay(client, origin).await {
                            // A client that closes with bytes unread resets: wrk does, at
                            // the end of a run.
                            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                            Err(e) => eprintln!("l4relay: {e}"),
                            Ok(()) => {}
                        }
                    });
                }
                // Out of descriptors or similar: say so and keep accepting.
                Err(e) => eprintln!("l4relay: accept: {e}"),
            }
        }
    });
}

fn usage() -> ! {
    eprintln!("usage: l4relay LISTEN_ADDR ORIGIN_ADDR   (e.g. 127.0.0.1:18085 127.0.0.1:18080)");
    std::process::exit(2);
}

/// Relays one client connection until either side closes; dropping the halves closes both.
async fn relay(client: TcpStream, origin: SocketAddr) -> io::Result<()> {
    let upstream = TcpStream::connect_addr(origin).await?;
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (mut client_r, mut client_w) = client.into_split();
    let (mut up_r, mut up_w) = upstream.into_split();
    monoio::select! {
        r = copy(&mut client_r, &mut up_w) => r,
        r = copy(&mut up_r, &mut client_w) => r,
    }
}

/// Reads into one owned buffer and writes all of it out, until EOF (Ok) or an error.
async fn copy<R, W>(from: &mut R, to: &mut W) -> io::Result<()>
where
    R: AsyncReadRent,
    W: AsyncWriteRentExt,
{
    let mut buf = Vec::with_capacity(BUF_SIZE);
    loop {
        let (res, b) = from.read(buf).await;
        match res {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                buf = b;
                continue;
            }
            Err(e) => return Err(e),
        }
        let (res, mut b) = to.write_all(b).await;
        res?;
        b.clear();
        buf = b;
    }
}

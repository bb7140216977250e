//! Zero-copy relay of a large body with a known length between two plain TCP sockets:
//! `splice(2)` from the source socket into a pipe and from the pipe into the destination,
//! so the bytes never pass through user space (the kernel moves page references; the
//! copy path reads every byte into a buffer and writes it out again).
//!
//! Used by [`super::body::relay`] for a response body with a `Content-Length` of at least
//! [`SPLICE_ABOVE_BYTES`] (192 KiB) when both ends are plain TCP (a TLS end needs the
//! plaintext in user space, a chunked body needs its framing scanned). Measured with
//! `benches/large_bodies.sh` (1 MiB bodies, 16 connections): downloads took 25-35% less
//! CPU per MiB and moved 15-28% more MiB/s than through the copy path; uploads took less
//! CPU too but moved 15-27% fewer MiB/s, so request bodies are copied ([`BodyPath`]).
//!
//! The splices are non-blocking system calls made on the worker thread; when neither
//! direction can move, the relay waits for readiness through io_uring polls (monoio's
//! `readable` / `writable`), each wait bounded like the copy path's reads and writes.
//! (io_uring's own `IORING_OP_SPLICE` always runs in an io-wq kernel thread: a thread hop
//! per splice.)
//!
//! The sockets are made non-blocking (`O_NONBLOCK`) if they are not already (monoio's
//! connected sockets are, accepted ones are not): io_uring's receive and send ops ignore the
//! flag, and without it a splice into a socket with a full send buffer would block the
//! worker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use monoio::net::TcpStream;
use monoio::time::Instant;

use super::body::RelayError;
use crate::runtime::LARGE_RELAY_BUFFER_BYTES;

/// Bodies of at least this many bytes (still to relay after the head's read) are spliced
/// when both ends are plain TCP; smaller ones are copied. Measured (`SIZE=...
/// benches/large_bodies.sh`, downloads, splice against copy builds): at 128 KiB splicing
/// lost (fewer MiB/s, more CPU per MiB: the pipe's set-up and the readiness polls cost more
/// than the copies they save), at 256 KiB, 512 KiB and 1 MiB it won.
pub const SPLICE_ABOVE_BYTES: u64 = 192 * 1024;

/// The pipe's capacity: as much as the copy path's large buffer.
const PIPE_BYTES: usize = LARGE_RELAY_BUFFER_BYTES;

/// How a body relay may move a large body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPath {
    /// Through a buffer in user space.
    Copy,
    /// Spliced when it is at least [`SPLICE_ABOVE_BYTES`] with a known length and both ends
    /// are plain TCP, else copied.
    SpliceLarge,
}

/// A stream a body can be spliced from or to.
pub trait Spliceable {
    /// The plain TCP socket; `None` over TLS.
    fn socket(&self) -> Option<&TcpStream>;
    /// Counts spliced bytes where the stream counts what it reads and writes.
    fn count_spliced(&self, _received: u64, _sent: u64) {}
}

/// What a splice relay moved, and how it ended.
pub struct Spliced {
    pub received: u64,
    pub sent: u64,
    pub result: Result<(), RelayError>,
}

/// A pipe between the two splices.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// A non-blocking pipe of [`PIPE_BYTES`] (or the system's default size, if the user's
    /// pipe allowance is used up). `None` if the system has no pipe to give: the caller
    /// copies instead.
    pub fn new() -> Option<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array on success.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; failure leaves the pipe as it was.
        let mut capacity = unsafe {
            libc::fcntl(
                write.as_raw_fd(),
                libc::F_SETPIPE_SZ,
                PIPE_BYTES as libc::c_int,
            )
        };
        if capacity <= 0 {
            // SAFETY: as above.
            capacity = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        let capacity = usize::try_from(capacity).ok().filter(|&c| c > 0)?;
        Some(Pipe {
            read,
            write,
            capacity,
        })
    }
}

/// Makes `fd` non-blocking if it is not already.
fn non_blocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on an open descriptor of a stream the caller holds.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How one splice call ended.
enum Step {
    Moved(usize),
    /// Nothing to move now (`EAGAIN`).
    Blocked,
    /// End of stream (from a socket) or an error.
    Failed,
}

/// One non-blocking splice. (`SPLICE_F_MORE` while more was to come measured no better.)
fn splice(from: RawFd, to: RawFd, len: usize) -> Step {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: two open descriptors, no offsets (sockets and pipes have none).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    };
    match usize::try_from(n) {
        Ok(0) => Step::Failed,
        Ok(n) => Step::Moved(n),
        Err(_) if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock => Step::Blocked,
        Err(_) => Step::Failed,
    }
}

/// A readiness wait's outcome: ready, or `failed` (the wait timed out or the poll failed).
fn ready<T>(waited: Result<io::Result<()>, T>, failed: RelayError) -> Result<(), RelayError> {
    match waited {
        Ok(Ok(())) => Ok(()),
        _ => Err(failed),
    }
}

/// Relays exactly `len` bytes from `from` to `to` through `pipe`. Each wait for the source
/// takes at most `read_timeout`, each wait for the destination `write_timeout`. On success
/// the pipe is empty again; on failure the caller closes both connections (a byte count
/// was promised and not kept).
pub async fn relay_length(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    len: u64,
    read_timeout: Duration,
    write_timeout: Duration,
) -> Spliced {
    let mut out = Spliced {
        received: 0,
        sent: 0,
        result: Ok(()),
    };
    let timeouts = (read_timeout, write_timeout);
    out.result = pump(
        from,
        to,
        pipe,
        len,
        timeouts,
        &mut out.received,
        &mut out.sent,
    )
    .await;
    out
}

/// The splice loop of [`relay_length`], counting what it moves into `received` and `sent`.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    len: u64,
    (read_timeout, write_timeout): (Duration, Duration),
    received: &mut u64,
    sent: &mut u64,
) -> Result<(), RelayError> {
    let (src, dst) = (from.as_raw_fd(), to.as_raw_fd());
    non_blocking(src).map_err(|_| RelayError::Source(None))?;
    non_blocking(dst).map_err(|_| RelayError::Sink)?;
    let (pipe_in, pipe_out) = (pipe.write.as_raw_fd(), pipe.read.as_raw_fd());
    let mut left = len;
    let mut in_pipe = 0usize;
    loop {
        let room = pipe.capacity - in_pipe;
        let mut fill_blocked = false;
        if left > 0 && room > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(room);
            match splice(src, pipe_in, want) {
                Step::Moved(n) => {
                    left -= n as u64;
                    in_pipe += n;
                    *received += n as u64;
                }
                Step::Blocked => fill_blocked = true,
                Step::Failed => return Err(RelayError::Source(None)),
            }
        }
        let mut drain_blocked = false;
        if in_pipe > 0 {
            match splice(pipe_out, dst, in_pipe) {
                Step::Moved(n) => {
                    in_pipe -= n;
                    *sent += n as u64;
                }
                Step::Blocked => drain_blocked = true,
                Step::Failed => return Err(RelayError::Sink),
            }
        }
        if left == 0 && in_pipe == 0 {
            return Ok(());
        }
        let can_fill = left > 0 && in_pipe < pipe.capacity;
        if (can_fill && !fill_blocked) || (in_pipe > 0 && !drain_blocked) {
            continue;
        }
        // Nothing can move until a socket is ready. With bytes in the pipe that the
        // destination will not take, wait for the destination only: a splice into the pipe
        // can fail while its byte count shows room (a pipe fills by buffer slots), and the
        // source, readable all along, would make the wait return at once, forever (a spin
        // that also kept the timeout from ever passing).
        let now = Instant::now();
        if in_pipe > 0 {
            let writable = monoio::time::timeout_at(now + write_timeout, to.writable(false));
            ready(writable.await, RelayError::Sink)?;
        } else {
            let readable = monoio::time::timeout_at(now + read_timeout, from.readable(false));
            ready(readable.await, RelayError::Source(None))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// This thread's CPU time so far (user + system).
    fn thread_cpu() -> Duration {
        // SAFETY: a zeroed rusage is valid; getrusage fills it for the calling thread.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
        let t = |tv: libc::timeval| {
            Duration::from_secs(tv.tv_sec as u64) + Duration::from_micros(tv.tv_usec as u64)
        };
        t(u.ru_utime) + t(u.ru_stime)
    }

    /// A reader that stops reading (a slow-read client) while the source keeps sending:
    /// once the pipe is full the relay must sleep until the destination can take bytes, not
    /// spin on a source that is always readable (a pipe fills by buffer slots, so a splice
    /// into it can fail with room left in bytes).
    #[test]
    fn a_stalled_reader_does_not_make_the_relay_spin() {
        let rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build();
        let Ok(mut rt) = rt else { return };
        let len: usize = 64 << 20;
        let (cpu, result) = rt.block_on(async move {
            // The backend: sends the whole body in many small writes.
            let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let baddr = backend.local_addr().unwrap();
            let writer = std::thread::spawn(move || {
                let (mut s, _) = backend.accept().unwrap();
                s.set_nodelay(true).unwrap();
                let chunk = [b'x'; 1000];
                let mut sent = 0;
                while sent < len {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
            });
            // The client: small socket buffers both ways, and it never reads.
            let client =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            client.set_recv_buffer_size(4096).unwrap();
            client
                .bind(
                    &"127.0.0.1:0"
                        .parse::<std::net::SocketAddr>()
                        .unwrap()
                        .into(),
                )
                .unwrap();
            client.listen(1).unwrap();
            let client: std::net::TcpListener = client.into();
            let caddr = client.local_addr().unwrap();
            let from = TcpStream::connect_addr(baddr).await.unwrap();
            let to = TcpStream::connect_addr(caddr).await.unwrap();
            // SAFETY: the stream's descriptor is open for as long as `to` lives.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(to.as_raw_fd()) };
            socket2::SockRef::from(&fd)
                .set_send_buffer_size(4096)
                .unwrap();
            let (stalled, _) = client.accept().unwrap();
            let mut pipe = Pipe::new().unwrap();
            // A pipe fills by buffer slots, not bytes: one whose slots are used up while
            // its byte count says there is room looks, to the relay, like this one.
            pipe.capacity *= 4;
            let before = thread_cpu();
            let spliced = monoio::time::timeout(
                Duration::from_secs(10),
                relay_length(
                    &from,
                    &to,
                    &pipe,
                    len as u64,
                    Duration::from_secs(5),
                    Duration::from_secs(1),
                ),
            )
            .await;
            let cpu = thread_cpu() - before;
            drop((from, to, stalled));
            let _ = writer.join();
            (cpu, spliced.map(|s| s.result))
        });
        assert!(
            matches!(result, Ok(Err(RelayError::Sink))),
            "not ended by the write timeout: {result:?}"
        );
        assert!(
            cpu < Duration::from_millis(300),
            "the relay used {cpu:?} of CPU waiting for a stalled reader for 1 s"
        );
    }
}

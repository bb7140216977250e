//! Process signals. `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGUSR2` are blocked in every thread (the mask is
//! set before the workers start, so they inherit it) and received by one thread with
//! `sigwait`, which turns them into calls on ordinary Rust code: no async-signal-safety
//! concerns anywhere else.

use std::io;

/// The signals the gateway acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGTERM` or `SIGINT`: drain and exit.
    Terminate,
    /// `SIGHUP`: reload the configuration.
    Reload,
    /// `SIGUSR2`: a successor (`run --upgrade-from`) serves on the same sockets: close the
    /// admin listener at once (the successor answers there), then drain and exit.
    HandOver,
}

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a plain sigset_t we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        set
    }
}

/// Blocks the handled signals in the calling thread and in every thread it starts later.
pub fn block() -> io::Result<()> {
    let set = handled_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits for the next handled signal (they must be blocked, see [`block`]).
pub fn wait() -> io::Result<Signal> {
    let set = handled_set();
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is initialised and `sig` is a valid out pointer.
    let rc = unsafe { libc::sigwait(&set, &mut sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(match sig {
        libc::SIGHUP => Signal::Reload,
        libc::SIGUSR2 => Signal::HandOver,
        _ => Signal::Terminate,
    })
}

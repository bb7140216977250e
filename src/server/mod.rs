//! `ringway run`: the process around the workers.
//!
//! load config (done by the caller) → block signals → raise the soft descriptor limit to
//! the hard one and warn when `max_connections` may need more ([`descriptors_needed`]) →
//! check that no one else listens on our addresses ([`listen::check_free`]; with `--upgrade-from`, only the predecessor may,
//! [`upgrade`]) → bind `SO_REUSEPORT` sockets per worker → start the workers and the admin
//! thread ([`admin`]), wait until each serves → write the pid file, announce the listeners,
//! hand over from the predecessor → wait for signals: `SIGHUP` reloads the configuration
//! ([`reload`]); `SIGTERM`/`SIGINT` (and `SIGUSR2`, which first closes the admin listener)
//! raise the stop flag: the workers stop accepting, let in-flight requests finish within
//! `shutdown_grace_ms` (`Connection: close`), give idle keep-alive connections a moment for
//! one last request, and the process exits 0 once every worker is done.

pub mod admin;
pub mod listen;
pub mod notify;
pub mod pid;
pub mod proxy_header;
pub mod reload;
pub mod signals;
pub mod upgrade;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::runtime::Shared;
use crate::traffic::state_file;
use signals::Signal;
use worker::WorkerSpec;

/// How long a stop waits for the workers to close their listeners before the drain starts
/// anyway.
pub const UNLISTEN_WAIT: Duration = Duration::from_secs(1);

/// After the grace period, how long the process still waits for workers to return.
pub const EXIT_SLACK: Duration = Duration::from_secs(2);

/// The number of workers for `workers = n` (0: one per available core).
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The CPUs this process may run on (its affinity mask, e.g. from `taskset` or systemd's
/// `CPUAffinity`): workers are pinned within them, never outside.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// How `run` was asked to start, beyond the configuration.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// `--pid-file`: replaces `server.pid_file`.
    pub pid_file: Option<PathBuf>,
    /// `--upgrade-from`: the running gateway (a pid, or a pid file) to take over from.
    pub upgrade_from: Option<String>,
}

/// Every address the configuration listens on, with the key that names it.
fn addresses(config: &Config) -> Vec<(SocketAddr, &'static str)> {
    let s = &config.server;
    let http = s.listen_http.iter().map(|&a| (a, "server.listen_http"));
    let https = s.listen_https.iter().map(|&a| (a, "server.listen_https"));
    let admin = s.admin_listen.map(|a| (a, "server.admin_listen"));
    http.chain(https).chain(admin).collect()
}

/// Before anything is bound: every address is free, or (upgrading) held by the predecessor,
/// which must hold at least one of them. Every taken address is named.
fn check_addresses(config: &Config, predecessor: Option<i32>) -> Result<(), String> {
    let held = predecessor.map(|pid| (pid, upgrade::listening(pid)));
    let mut errors = Vec::new();
    let mut shared = 0;
    for (addr, key) in addresses(config) {
        let Err(e) = listen::check_free(addr) else {
            continue;
        };
        if e.kind() != std::io::ErrorKind::AddrInUse {
            errors.push(format!("cannot listen on {addr} ({key}): {e}"));
            continue;
        }
        match &held {
            // The predecessor's own descriptors could not be read: trust the operator.
            Some((_, None)) => shared += 1,
            Some((_, Some(addrs))) if addrs.contains(&addr) => shared += 1,
            Some((pid, Some(_))) => errors.push(format!(
                "cannot listen on {addr} ({key}): address in use by a process other than {pid}"
            )),
            None => errors.push(format!(
                "cannot listen on {addr} ({key}): address in use by another process; to \
                 replace a running ringway without dropping requests, use run --upgrade-from"
            )),
        }
    }
    if let Some((pid, _)) = held
        && shared == 0
        && errors.is_empty()
    {
        errors.push(format!(
            "--upgrade-from: process {pid} listens on none of this configuration's addresses"
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// Serves `config` until a stop signal; `Err` when it cannot start (nothing is left
/// running then, and a predecessor keeps serving).
pub fn run(config: Config, options: RunOptions) -> Result<(), String> {
    keep_heap_top();
    let config = Arc::new(config);
    let server = &config.server;
    let workers = worker_count(server.workers);
    let cpus = allowed_cpus();
    signals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    for note in config.not_served_yet() {
        crate::say!(warn, "{note}");
    }
    descriptor_limit(&config, workers);
    let predecessor = options
        .upgrade_from
        .as_deref()
        .map(pid::running_by_arg)
        .transpose()
        .map_err(|e| format!("--upgrade-from: {e}"))?;
    check_addresses(&config, predecessor)?;
    let (bound, plain) = listen::bind_all(&server.listen_http, workers)?;
    let (bound_https, https) = listen::bind_all(&server.listen_https, workers)?;
    // Per worker: `(listener, https)`.
    let per_worker: Vec<Vec<_>> = plain
        .into_iter()
        .zip(https)
        .map(|(p, s)| {
            let p = p.into_iter().map(|l| (l, false));
            p.chain(s.into_iter().map(|l| (l, true))).collect()
        })
        .collect();
    let logger = crate::runtime::access_log::Logger::start()
        .map(Arc::new)
        .map_err(|e| format!("cannot start the log thread: {e}"))?;
    let shared = Arc::new(Shared::new(config.clone(), workers, logger));
    // Quota counts saved by the last run, before any worker binds the counters.
    let loaded = state_file::load(&config, &shared.traffic, crate::runtime::unix_now());
    // SO_REUSEPORT here too, so that a successor can share it during an upgrade.
    let admin_listener = match server.admin_listen {
        Some(addr) => {
            let l = listen::bind_reuseport(addr)
                .map_err(|e| format!("cannot listen on {addr} (server.admin_listen): {e}"))?;
            let bound = l
                .local_addr()
                .map_err(|e| format!("server.admin_listen: {e}"))?;
            Some((l, bound))
        }
        None => None,
    };

    let (ready_tx, ready_rx) = mpsc::channel::<Result<&'static str, String>>();
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    for (index, listeners) in per_worker.into_iter().enumerate() {
        let spec = WorkerSpec {
            index,
            cpu: (!cpus.is_empty()).then(|| cpus[index % cpus.len()]),
            listeners,
            shared: shared.clone(),
        };
        let (ready_tx, done_tx) = (ready_tx.clone(), done_tx.clone());
        std::thread::Builder::new()
            .name(format!("ringway-w{index}"))
            .spawn(move || {
                worker::run(spec, |r| {
                    let _ = ready_tx.send(r);
                });
                let _ = done_tx.send(index);
            })
            .map_err(|e| format!("cannot start worker {index}: {e}"))?;
    }
    let mut driver = "";
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(d)) => driver = d,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a worker stopped while starting".into()),
        }
    }
    let (admin, admin_addr) = match admin_listener {
        Some((l, addr)) => {
            let admin = admin::Admin::start(l, shared.clone())
                .map_err(|e| format!("cannot start the admin thread: {e}"))?;
            (Some(admin), Some(addr))
        }
        None => (None, None),
    };
    // The main thread only waits for signals and builds reloaded configurations: at a
    // lower priority, a reload's build takes the CPU the workers leave (threads started
    // from here on inherit this, so only after the workers and the log thread).
    lower_priority();
    let saver = state_file::Saver::start(shared.clone(), loaded, predecessor)
        .map_err(|e| format!("cannot start the state file thread: {e}"))?;
    // Before the listening lines: whoever waits for them finds the pid file.
    let pid_file = options
        .pid_file
        .as_deref()
        .or(server.pid_file.as_deref())
        .map(pid::PidFile::write)
        .transpose()?;
    crate::say!(info, "{workers} worker(s), {driver} driver");
    for addr in &bound {
        crate::say!(info, "listening http {addr}");
    }
    for addr in &bound_https {
        crate::say!(info, "listening https {addr}");
    }
    if let Some(addr) = admin_addr {
        crate::say!(info, "listening admin {addr}");
    }
    notify::ready("serving");
    if let Some(pid) = predecessor {
        match upgrade::hand_over(pid) {
            Ok(()) => crate::say!(info, "serving; process {pid} told to hand over and drain"),
            Err(e) => crate::say!(warn, "--upgrade-from: {e}"),
        }
    }
    // From here on the configuration is the published one (`shared`): holding the first
    // one would keep it alive across every reload.
    drop(config);

    let mut admin = admin;
    loop {
        match signals::wait() {
            Ok(Signal::Terminate) => break,
            Ok(Signal::HandOver) => {
                crate::say!(info, "handing over to a successor: admin listener closed");
                if let Some(a) = admin.take() {
                    a.stop();
                }
                break;
            }
            Ok(Signal::Reload) => {
                notify::reloading();
                reload::reload(&shared);
                notify::ready("serving");
            }
            Err(e) => return Err(format!("waiting for signals: {e}")),
        }
    }
    crate::say!(info, "stopping: draining in-flight requests");
    notify::stopping();
    shared.stopping.store(true, Ordering::Release);
    // Every listener closes before any client is told to reconnect: a reconnect then goes
    // to a successor's listener (or is refused), never into a queue about to be reset.
    let unlisten_deadline = Instant::now() + UNLISTEN_WAIT;
    while shared.unlistened.load(Ordering::Acquire) < workers && Instant::now() < unlisten_deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    shared.draining.store(true, Ordering::Release);
    let grace = shared.config().server.shutdown_grace;
    let deadline = Instant::now() + grace + EXIT_SLACK;
    for _ in 0..workers {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            crate::say!(warn, "workers did not stop in time; exiting");
            break;
        }
    }
    // The workers are done counting (after a drain or a hand-over): save once more.
    saver.finish();
    // `/healthz` said "draining" until every worker was done.
    if let Some(a) = admin {
        a.stop();
    }
    drop(pid_file);
    shared.logger.stop();
    crate::say!(info, "stopped");
    Ok(())
}

/// Descriptors the process holds besides connections and listeners: the standard streams,
/// the access log, the admin thread's connections, ...
pub const OWN_DESCRIPTORS: u64 = 64;
/// ... and per worker: its io_uring, its idle set's epoll, its spare descriptor, ...
pub const OWN_DESCRIPTORS_PER_WORKER: u64 = 8;

/// Descriptors `config` may need with `workers` workers at its limits: two per client
/// connection (the client's and a proxied request's upstream connection), the upstream
/// keepalive pools (per worker and target), every listener, and the process's own.
pub fn descriptors_needed(config: &Config, workers: usize) -> u64 {
    let s = &config.server;
    let workers = workers as u64;
    let pools: u64 = config
        .upstreams
        .iter()
        .map(|u| (u.keepalive as u64).saturating_mul(u.targets.len() as u64))
        .sum();
    let listeners = (s.listen_http.len() + s.listen_https.len()) as u64 * workers
        + u64::from(s.admin_listen.is_some());
    (s.max_connections as u64)
        .saturating_mul(2)
        .saturating_add(pools.saturating_mul(workers))
        .saturating_add(listeners)
        .saturating_add(OWN_DESCRIPTORS + OWN_DESCRIPTORS_PER_WORKER * workers)
}

/// After a reload: a warning, when the new configuration may need more descriptors than the
/// process may open (a reload cannot raise the limit; a restart under a higher one can).
pub fn descriptors_after_reload(config: &Config, workers: usize) -> Option<String> {
    let (limit, _) = nofile_limit().ok()?;
    let needed = descriptors_needed(config, workers);
    (needed > limit).then(|| {
        format!(
            "reload: descriptor limit {limit} (RLIMIT_NOFILE) is below the {needed} that max_connections = {} may need: out of descriptors, new clients get 503; restart under a higher hard limit or lower max_connections",
            config.server.max_connections
        )
    })
}

/// The process's descriptor limit (`RLIMIT_NOFILE`): (soft, hard).
fn nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the valid rlimit it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft descriptor limit to the hard one (as nginx's `worker_rlimit_nofile` and
/// Go's runtime do: the soft limit is often 1,024 for the sake of `select`, which the
/// gateway does not use), says what it is, and warns when the configuration may need more.
fn descriptor_limit(config: &Config, workers: usize) {
    let (soft, hard) = match nofile_limit() {
        Ok(l) => l,
        Err(e) => {
            crate::say!(
                warn,
                "cannot read the descriptor limit (RLIMIT_NOFILE): {e}"
            );
            return;
        }
    };
    let mut limit = soft;
    let mut raised = String::new();
    if soft < hard {
        let lim = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the valid rlimit it is given; threads started from here
        // on share the new limit (it is the process's).
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
            limit = hard;
            raised = format!(", raised from {soft}");
        } else {
            let e = std::io::Error::last_os_error();
            raised = format!(", not raised to the hard limit {hard}: {e}");
        }
    }
    let needed = descriptors_needed(config, workers);
    if needed > limit {
        crate::say!(
            warn,
            "descriptor limit {limit} (RLIMIT_NOFILE{raised}) is below the {needed} that max_connections = {} may need (two per proxied connection, plus upstream keepalive pools, listeners and the process's own): out of descriptors, new clients get 503; raise the hard limit (LimitNOFILE=, ulimit -Hn) or lower max_connections",
            config.server.max_connections
        );
    } else {
        crate::say!(info, "descriptor limit {limit} (RLIMIT_NOFILE{raised})");
    }
}

/// glibc's allocator gives the top of its heaps back to the kernel as soon as 128 KiB there
/// are free, and takes them back with page faults on the next burst: under load that is a
/// steady stream of `brk`/page faults (`sysmalloc` in the profile). Keep a pad instead; the
/// memory still goes back after a reload (`malloc_trim`) and is reused by the next burst.
pub const HEAP_TOP_PAD: libc::c_int = 16 * 1024 * 1024;

fn keep_heap_top() {
    // SAFETY: mallopt only tunes the allocator; called before the worker threads start.
    unsafe {
        libc::mallopt(libc::M_TOP_PAD, HEAP_TOP_PAD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * HEAP_TOP_PAD);
    }
}

/// Nice 10 for the calling thread only (Linux: `setpriority` on a thread id).
fn lower_priority() {
    // SAFETY: gettid has no preconditions; setpriority on our own thread id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, MAIN_THREAD_NICE);
    }
}

/// The main thread's nice value (reloads yield to the workers).
pub const MAIN_THREAD_NICE: libc::c_int = 10;

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's affinity mask as the kernel lists it (`Cpus_allowed_list: 0-3,8`).
    fn cpus_allowed_list() -> Vec<usize> {
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("no Cpus_allowed_list in /proc/thread-self/status")
            .trim();
        let mut cpus = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
                None => cpus.push(part.parse().unwrap()),
            }
        }
        cpus
    }

    #[test]
    fn descriptors_needed_counts_connections_pools_listeners_and_the_process() {
        let text = "[server]\nlisten_http = [\"127.0.0.1:0\", \"127.0.0.1:0\", \"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\nmax_connections = 1000\n\
            [[upstreams]]\nname = \"a\"\nurl = \"http://127.0.0.1:1\"\ntargets = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nkeepalive = 10\n\
            [[upstreams]]\nname = \"b\"\nurl = \"http://127.0.0.1:3\"\nkeepalive = 5\n";
        let config = crate::config::load_str(text, std::path::Path::new("t.toml"));
        let config = match config {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        // 2 × 1000 + (10 × 2 + 5) × 4 workers + 3 × 4 listeners + admin + the process's own.
        let own = OWN_DESCRIPTORS + 4 * OWN_DESCRIPTORS_PER_WORKER;
        assert_eq!(descriptors_needed(&config, 4), 2000 + 100 + 12 + 1 + own);
        let own = OWN_DESCRIPTORS + OWN_DESCRIPTORS_PER_WORKER;
        assert_eq!(descriptors_needed(&config, 1), 2000 + 25 + 3 + 1 + own);
    }

    #[test]
    fn allowed_cpus_are_the_affinity_mask() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert_eq!(cpus, cpus_allowed_list());
    }

    /// `workers = 0` follows `available_parallelism`, which also honours a cgroup CPU quota
    /// that the affinity mask knows nothing of: it may be fewer than the allowed CPUs, never
    /// more (so the workers' pinning `cpus[i % cpus.len()]` never doubles up by default).
    #[test]
    fn worker_count_is_the_configured_number_or_the_available_parallelism() {
        assert_eq!(worker_count(1), 1);
        assert_eq!(worker_count(7), 7);
        let auto = worker_count(0);
        assert_eq!(auto, std::thread::available_parallelism().unwrap().get());
        assert!(
            (1..=allowed_cpus().len()).contains(&auto),
            "{auto} workers for {:?} allowed CPUs",
            allowed_cpus()
        );
    }
}

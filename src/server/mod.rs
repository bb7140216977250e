//! `ringway run`: the process around the workers.
//!
//! load config (done by the caller) → block signals → bind `SO_REUSEPORT` sockets per worker
//! → start the workers, wait until each serves → announce the listeners → wait for signals:
//! `SIGTERM`/`SIGINT` raise the stop flag, the workers stop accepting, close idle
//! connections, let in-flight requests finish within `shutdown_grace_ms`, and the process
//! exits 0.

pub mod drain;
pub mod listen;
pub mod signals;
pub mod worker;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Config;
use signals::Signal;
use worker::{Shared, WorkerSpec};

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

/// Serves `config` until a stop signal; `Err` when it cannot start.
pub fn run(config: Config) -> Result<(), String> {
    let config = Arc::new(config);
    let server = &config.server;
    let workers = worker_count(server.workers);
    let cores = worker_count(0);
    signals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    for note in config.not_served_yet() {
        eprintln!("ringway: {note}");
    }
    let (bound, per_worker) = listen::bind_all(&server.listen_http, workers)?;
    let shared = Arc::new(Shared::new(config.clone()));

    let (ready_tx, ready_rx) = mpsc::channel::<Result<&'static str, String>>();
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    for (index, listeners) in per_worker.into_iter().enumerate() {
        let spec = WorkerSpec {
            index,
            cpu: Some(index % cores),
            listeners: listeners.into_iter().map(|l| (l, false)).collect(),
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
    eprintln!("ringway: {workers} worker(s), {driver} driver");
    for addr in &bound {
        eprintln!("ringway: listening http {addr}");
    }

    loop {
        match signals::wait() {
            Ok(Signal::Terminate) => break,
            Ok(Signal::Reload) => {
                eprintln!(
                    "ringway: SIGHUP: reload is not available yet; the configuration is unchanged"
                );
            }
            Err(e) => return Err(format!("waiting for signals: {e}")),
        }
    }
    eprintln!("ringway: stopping: draining in-flight requests");
    shared.stopping.store(true, Ordering::Release);
    let deadline = Instant::now() + server.shutdown_grace + EXIT_SLACK;
    for _ in 0..workers {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            eprintln!("ringway: workers did not stop in time; exiting");
            break;
        }
    }
    eprintln!("ringway: stopped");
    Ok(())
}

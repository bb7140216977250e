//! `SIGHUP`: reload the configuration without dropping a request (SPEC §7).
//!
//! On the main thread, off the data path: the file is read, parsed, validated and fully
//! built (routes, TLS configurations, upstream settings, certificates re-read). On any error
//! the running configuration stays and the error is logged and counted. On success it is
//! published through [`Shared::publish`]; each worker picks it up at its next request or
//! housekeeping tick, and each request runs to its end on the snapshot it started with.
//!
//! What carries over from the running configuration:
//! - the listeners: `listen_http`, `listen_https`, `admin_listen` and `workers` change only
//!   on a restart (a changed value is logged and ignored; the rest of the reload applies);
//! - each unchanged `https://` upstream's rustls client configuration (its resumable
//!   sessions), and the TLS server configuration when the certificates did not change (so
//!   the session tickets clients hold still resume);
//! - in the workers, the pools of unchanged upstreams
//!   ([`crate::runtime::pool::UpstreamPool::carries`]).
//!
//! Signals that arrive while a reload runs coalesce into one more reload (the kernel keeps
//! one pending `SIGHUP`); reloads never overlap.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::{self, Config};
use crate::runtime::pool::UpstreamPool;
use crate::runtime::{Shared, unix_now};

/// Reloads the running configuration's file; logs the outcome on stderr.
pub fn reload(shared: &Shared) {
    let started = Instant::now();
    let running = shared.config();
    let path = running.file.clone();
    let mut next = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            shared.reloads.failed.fetch_add(1, Ordering::Relaxed);
            crate::say!(
                error,
                "reload failed; the running configuration stays:\n{e}"
            );
            return;
        }
    };
    for note in keep_listeners(&running, &mut next) {
        crate::say!(warn, "reload: {note}");
    }
    carry_tls(&running, &mut next);
    for note in next.not_served_yet() {
        crate::say!(warn, "{note}");
    }
    let summary = next.summary();
    let next_json = next.server.log_json;
    if let Some(warning) = super::descriptors_after_reload(&next, shared.metrics.len()) {
        crate::say!(warn, "{warning}");
    }
    shared.publish(Arc::new(next));
    let old = running;
    shared.reloads.succeeded.fetch_add(1, Ordering::Relaxed);
    shared
        .reloads
        .last_success_unix
        .store(unix_now(), Ordering::Relaxed);
    crate::say::set_json(next_json);
    crate::say!(
        info,
        "reloaded in {:.1} ms: {summary}",
        started.elapsed().as_secs_f64() * 1e3
    );
    release(old);
}

/// How long the main thread waits for the workers to let go of the old configuration.
const RELEASE_WAIT: Duration = Duration::from_secs(2);

/// Frees the old configuration here, once the workers have moved to the new one (they do
/// within a housekeeping tick unless a request still runs on it), and gives the freed
/// memory back to the OS: it was allocated on this thread, and without a trim glibc keeps
/// it in this thread's arena. If a long request still holds it, that request's worker frees
/// it when it ends.
fn release(old: Arc<Config>) {
    let deadline = Instant::now() + RELEASE_WAIT;
    while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let freed_here = Arc::strong_count(&old) == 1;
    drop(old);
    if freed_here {
        // SAFETY: malloc_trim only releases free memory; any thread may call it.
        unsafe { libc::malloc_trim(0) };
    }
}

/// Puts the running listener settings into `next`; one note per setting that differed.
fn keep_listeners(running: &Config, next: &mut Config) -> Vec<String> {
    let (old, new) = (&running.server, &mut next.server);
    let mut notes = Vec::new();
    let restart = "changes only on a restart; the rest of the reload applies";
    if old.listen_http != new.listen_http {
        notes.push(format!(
            "server.listen_http {:?} -> {:?} {restart}",
            old.listen_http, new.listen_http
        ));
        new.listen_http = old.listen_http.clone();
    }
    if old.listen_https != new.listen_https {
        notes.push(format!(
            "server.listen_https {:?} -> {:?} {restart}",
            old.listen_https, new.listen_https
        ));
        new.listen_https = old.listen_https.clone();
    }
    if old.admin_listen != new.admin_listen {
        notes.push(format!(
            "server.admin_listen {:?} -> {:?} {restart}",
            old.admin_listen, new.admin_listen
        ));
        new.admin_listen = old.admin_listen;
    }
    if old.workers != new.workers {
        notes.push(format!(
            "server.workers {} -> {} {restart}",
            old.workers, new.workers
        ));
        new.workers = old.workers;
    }
    notes
}

/// Keeps TLS state that is still valid: unchanged upstreams' client configurations (their
/// session caches) and, with the same certificates, the server configuration (its ticket
/// keys and session cache).
fn carry_tls(running: &Config, next: &mut Config) {
    for u in &mut next.upstreams {
        let old = running
            .upstreams
            .iter()
            .find(|o| UpstreamPool::carries(o, u));
        if let (Some(tls), Some(old_tls)) = (u.tls.as_mut(), old.and_then(|o| o.tls.as_ref())) {
            tls.client = old_tls.client.clone();
        }
    }
    let same_certs = running.certificates.len() == next.certificates.len()
        && running
            .certificates
            .iter()
            .zip(&next.certificates)
            .all(|(a, b)| a.hosts == b.hosts && a.chain == b.chain && a.key == b.key);
    if same_certs && next.tls.is_some() {
        next.tls = running.tls.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[server]\nlisten_http = [\"127.0.0.1:8080\"]\nadmin_listen = \"off\"\nworkers = 1\n{extra}\n[[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:9000\"\n"
        );
        config::load_str(&text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn listener_changes_are_refused_and_named() {
        let running = cfg("");
        let mut next = cfg("");
        next.server.listen_http = vec!["127.0.0.1:8081".parse().unwrap()];
        let notes = keep_listeners(&running, &mut next);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("server.listen_http"), "{notes:?}");
        assert_eq!(next.server.listen_http, running.server.listen_http);
        assert!(keep_listeners(&running, &mut cfg("")).is_empty());
    }
}

//! The idle set (`runtime::idle`), through the real binary: above 512 connections on a
//! worker, a plain keepalive connection idle for 2 s leaves its task for the worker's idle
//! set (`ringway_client_connections_parked` counts them); a request brings it back, the
//! idle timeout closes it there, and so does a drain.

mod support;

use std::time::{Duration, Instant};

use support::*;

const CLIENTS: usize = 600;

/// One test at a time: each holds 600 client sockets in this process, and three at once
/// could pass a 1,024-descriptor limit.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serialize() -> std::sync::MutexGuard<'static, ()> {
    raise_fd_limit();
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `CLIENTS` keepalive clients, each with two requests answered: after the second, every
/// connection is past the 512 mark and takes the parking path.
fn clients(gw: &Gateway) -> Vec<Client> {
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let mut c = gw.connect();
            assert_eq!(c.roundtrip(get(&format!("/api/a{i}"))).status, 200);
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.roundtrip(get(&format!("/api/b{i}"))).status, 200);
    }
    clients
}

#[test]
fn idle_connections_move_to_the_idle_set_and_come_back_on_their_next_request() {
    let _one = serialize();
    let backend = Backend::ok();
    let gw = Gateway::start(&with_admin(&proxy_config(backend.addr(), "", "")));
    let admin = admin_addr(&gw);
    let mut clients = clients(&gw);
    assert_eq!(metric(admin, "ringway_client_connections"), CLIENTS as f64);
    // Idle for more than 2 s: all of them are in the idle set, still counted as open.
    wait_metric(
        admin,
        "ringway_client_connections_parked",
        CLIENTS as f64,
        Duration::from_secs(10),
    );
    assert_eq!(metric(admin, "ringway_client_connections"), CLIENTS as f64);
    // Each comes back for its next request; one pipelines two.
    for (i, c) in clients.iter_mut().enumerate() {
        let mut two = get(&format!("/api/c{i}"));
        if i == 7 {
            two.extend_from_slice(&get("/api/pipelined"));
        }
        c.send(two);
        let r = c.read_response();
        assert_eq!(r.status, 200, "connection {i}");
        if i == 7 {
            assert_eq!(c.read_response().status, 200, "the pipelined one");
        }
    }
    assert_eq!(backend.requests().len(), 3 * CLIENTS + 1);
    assert!(metric(admin, "ringway_client_connections_parked") < CLIENTS as f64);
    // A client that leaves while parked is closed and no longer counted.
    drop(clients.pop());
    wait_metric(
        admin,
        "ringway_client_connections",
        (CLIENTS - 1) as f64,
        Duration::from_secs(10),
    );
    // And they park again.
    wait_metric(
        admin,
        "ringway_client_connections_parked",
        (CLIENTS - 1) as f64,
        Duration::from_secs(10),
    );
}

#[test]
fn the_idle_timeout_closes_parked_connections() {
    let _one = serialize();
    let backend = Backend::ok();
    let gw = Gateway::start(&with_admin(&proxy_config(
        backend.addr(),
        "client_idle_timeout_ms = 4000\n",
        "",
    )));
    let admin = admin_addr(&gw);
    let started = Instant::now();
    let mut clients = clients(&gw);
    wait_metric(
        admin,
        "ringway_client_connections_parked",
        CLIENTS as f64,
        Duration::from_secs(10),
    );
    for (i, c) in clients.iter_mut().enumerate() {
        c.wait_closed(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "not before the idle timeout"
    );
    wait_metric(
        admin,
        "ringway_client_connections",
        0.0,
        Duration::from_secs(5),
    );
    assert_eq!(metric(admin, "ringway_client_connections_parked"), 0.0);
}

#[test]
fn a_drain_closes_parked_connections_at_once() {
    let _one = serialize();
    let backend = Backend::ok();
    let mut gw = Gateway::start(&with_admin(&proxy_config(
        backend.addr(),
        "shutdown_grace_ms = 30000\n",
        "",
    )));
    let admin = admin_addr(&gw);
    let mut clients = clients(&gw);
    wait_metric(
        admin,
        "ringway_client_connections_parked",
        CLIENTS as f64,
        Duration::from_secs(10),
    );
    let t0 = Instant::now();
    gw.signal(libc::SIGTERM);
    let status = gw
        .wait_exit(Duration::from_secs(20))
        .expect("ringway exits");
    assert!(status.success(), "{status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "parked connections did not hold the exit for the grace period: {:?}",
        t0.elapsed()
    );
    for (i, c) in clients.iter_mut().enumerate() {
        c.wait_closed(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
    }
}

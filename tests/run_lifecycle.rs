//! The process around the data path, through the real binary: one gateway per address
//! (`run` refuses a port someone listens on, naming it), the binary upgrade that shares the
//! sockets on purpose (`run --upgrade-from`, zero failed requests under keep-alive load),
//! `/healthz` through a drain whichever worker holds the work, and the pid file.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;

fn ringway(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `run` on `config_toml` that must fail to start: its stderr (exit status 1 checked).
fn refused(config_toml: &str, args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringway.toml");
    std::fs::write(&path, config_toml).unwrap();
    let t = Instant::now();
    let mut all = vec!["run", "--config", path.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = ringway(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        !stderr.contains("ringway: listening"),
        "it started: {stderr}"
    );
    stderr
}

fn mock_config(listen: &str, admin: &str, extra: &str) -> String {
    format!(
        "[server]\nlisten_http = [\"{listen}\"]\nadmin_listen = \"{admin}\"\naccess_log = \"off\"\nworkers = 2\n{extra}\n\
         [[services]]\nname = \"s\"\n[[services.apis]]\nname = \"hello\"\npath = \"/hello\"\n\
         [services.apis.backend]\ntype = \"mock\"\nmock_body = \"hi\"\n"
    )
}

#[test]
fn run_refuses_an_address_another_process_listens_on() {
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = other.local_addr().unwrap();
    let stderr = refused(&mock_config(&taken.to_string(), "off", ""), &[]);
    assert!(
        stderr.contains(&format!(
            "cannot listen on {taken} (server.listen_http): address in use by another process"
        )),
        "{stderr}"
    );
    // The admin address is checked the same way, and every taken address is named.
    let stderr = refused(&mock_config("127.0.0.1:0", &taken.to_string(), ""), &[]);
    assert!(
        stderr.contains(&format!("cannot listen on {taken} (server.admin_listen)")),
        "{stderr}"
    );
    // Nothing of the refused process is left on the other process's port.
    let mut c = TcpStream::connect(taken).unwrap();
    c.write_all(b"x").unwrap();
    let (mut s, _) = other.accept().unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).unwrap();
}

#[test]
fn a_second_gateway_on_the_same_ports_is_refused_and_the_first_keeps_them() {
    let first = Gateway::start(&mock_config("127.0.0.1:0", "127.0.0.1:0", ""));
    let data = first.addr();
    let admin = admin_addr(&first);
    let stderr = refused(&mock_config(&data.to_string(), "off", ""), &[]);
    assert!(
        stderr.contains(&format!("cannot listen on {data} (server.listen_http)")),
        "{stderr}"
    );
    let stderr = refused(&mock_config("127.0.0.1:0", &admin.to_string(), ""), &[]);
    assert!(
        stderr.contains(&format!("cannot listen on {admin} (server.admin_listen)")),
        "{stderr}"
    );
    // Every new connection still reaches the first gateway (nothing joined its sockets).
    for _ in 0..20 {
        let mut c = first.connect();
        assert_eq!(c.roundtrip(get("/hello")).body_text(), "hi");
    }
}

#[test]
fn upgrade_from_a_process_that_holds_none_of_the_addresses_is_refused() {
    let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = bystander.id().to_string();
    let stderr = refused(
        &mock_config("127.0.0.1:0", "off", ""),
        &["--upgrade-from", &pid],
    );
    assert!(
        stderr.contains(&format!(
            "process {pid} listens on none of this configuration's addresses"
        )),
        "{stderr}"
    );
    // It was not signalled.
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander died"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("ringway.pid");
    let mut gone = Command::new("true").spawn().unwrap();
    std::fs::write(&stale, format!("{}\n", gone.id())).unwrap();
    gone.wait().unwrap();
    let stderr = refused(
        &mock_config("127.0.0.1:0", "off", ""),
        &["--upgrade-from", stale.to_str().unwrap()],
    );
    assert!(stderr.contains("(stale pid file)"), "{stderr}");
}

/// One keep-alive client in a loop until `stop`: a request, its whole answer, and a new
/// connection only when the answer said `Connection: close`. Counts answers and failures
/// (a connect error, an answer cut short or missing, a status other than 200).
fn keepalive_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut conn: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match TcpStream::connect(addr) {
                Ok(s) => {
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    conn.insert(BufReader::new(s))
                }
                Err(e) => {
                    failures.lock().unwrap().push(format!("connect: {e}"));
                    continue;
                }
            },
        };
        let answer = (|| -> Result<bool, String> {
            c.get_mut()
                .write_all(b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n")
                .map_err(|e| format!("write: {e}"))?;
            let mut line = String::new();
            c.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
            if !line.starts_with("HTTP/1.1 200 ") {
                return Err(format!("status line {line:?}"));
            }
            let (mut length, mut close) = (None, false);
            loop {
                line.clear();
                c.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
                let l = line.trim_end().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse::<usize>().ok();
                }
                if l == "connection: close" {
                    close = true;
                }
            }
            let mut body = vec![0u8; length.ok_or("no content-length")?];
            c.read_exact(&mut body).map_err(|e| format!("body: {e}"))?;
            Ok(close)
        })();
        match answer {
            Ok(close) => {
                ok.fetch_add(1, Ordering::Relaxed);
                if close {
                    conn = None;
                }
            }
            Err(e) => {
                failures.lock().unwrap().push(e);
                conn = None;
            }
        }
    }
}

#[test]
fn upgrade_under_keepalive_load_drops_nothing() {
    let backend = Backend::ok();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("ringway.pid");
    let (data, admin) = (unused_addr(), unused_addr());
    let config = with_admin(&proxy_config(
        backend.addr(),
        &format!("pid_file = \"{}\"\nworkers = 2", pid_file.display()),
        "",
    ))
    .replace("workers = 1\n", "")
    .replace("127.0.0.1:0", "PORT")
    .replacen("PORT", &data.to_string(), 1)
    .replacen("PORT", &admin.to_string(), 1);
    let mut old = Gateway::start(&config);
    assert_eq!(old.addr(), data);
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        old.pid().to_string()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || keepalive_client(data, stop, ok, failures))
        })
        .collect();
    // A load balancer's health check through the upgrade: every probe must say serving
    // (the old gateway closes its admin listener as it hands over; the new one answers).
    let probes = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                seen.push(health(admin));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let before = ok.load(Ordering::Relaxed);
    assert!(before > 0, "no answers before the upgrade");

    let mut new =
        Gateway::try_start_with_args(&config, &["--upgrade-from", pid_file.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("the new gateway did not start: {e}"));
    let old_status = old
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("the old gateway did not exit; stderr:\n{}", old.stderr()));
    assert!(old_status.success(), "{old_status:?}\n{}", old.stderr());
    let at_handover = ok.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let probes = probes.join().unwrap();
    let bad: Vec<_> = probes.iter().filter(|p| !p.starts_with("200 ")).collect();
    assert!(
        bad.is_empty() && probes.len() > 20,
        "{} of {} health probes failed: {bad:?}",
        bad.len(),
        probes.len()
    );
    let failures = failures.lock().unwrap();
    let total = ok.load(Ordering::Relaxed);
    eprintln!(
        "upgrade under load: {total} answers ({before} before, {at_handover} when the old one exited), {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}\n--- old ---\n{}\n--- new ---\n{}",
        failures.len(),
        &failures[..failures.len().min(10)],
        old.stderr(),
        new.stderr()
    );
    assert!(
        total > at_handover,
        "the new gateway answered nothing after the old one left"
    );
    // The new one owns the pid file and the admin listener.
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        new.pid().to_string()
    );
    for _ in 0..5 {
        assert_eq!(
            admin_get(admin, "/healthz"),
            (200, "{\"status\":\"serving\"}".into())
        );
    }
    assert!(old.stderr().contains("handing over"), "{}", old.stderr());
    assert!(new.terminate().success());
    assert!(!pid_file.exists(), "the pid file outlived the new gateway");
}

/// One `/healthz` probe as a load balancer makes it: `"200 {body}"`, or what went wrong.
fn health(admin: SocketAddr) -> String {
    let probe = || -> std::io::Result<String> {
        let mut c = TcpStream::connect(admin)?;
        c.set_read_timeout(Some(Duration::from_secs(2)))?;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: lb\r\n\r\n")?;
        let mut all = String::new();
        c.read_to_string(&mut all)?;
        let status = all.split(' ').nth(1).unwrap_or("none").to_string();
        let body = all.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Ok(format!("{status} {body}"))
    };
    probe().unwrap_or_else(|e| format!("error: {e}"))
}

/// The worker index a response's request id names (`<start>-<worker>-<counter>`).
fn worker_of(r: &Response) -> usize {
    let id = r.request_id();
    let part = id.split('-').nth(1).unwrap_or_else(|| panic!("id {id}"));
    usize::from_str_radix(part, 16).unwrap()
}

#[test]
fn healthz_says_draining_whichever_worker_holds_the_request() {
    for held_on in 0..2 {
        let gate = Gate::new();
        let g = gate.clone();
        let backend = Backend::start(move |r| {
            if r.target.starts_with("/internal/hold") {
                Reply::ok("held").after(&g)
            } else {
                Reply::ok("quick")
            }
        });
        let config = with_admin(&proxy_config(
            backend.addr(),
            "shutdown_grace_ms = 10000\nworkers = 2",
            "",
        ))
        .replace("workers = 1\n", "");
        let mut gw = Gateway::start(&config);
        let admin = admin_addr(&gw);
        // A connection served by worker `held_on` (the request id names the worker).
        let mut c = (0..200)
            .map(|_| gw.connect())
            .find_map(|mut c| {
                let r = c.roundtrip(get("/api/probe"));
                (worker_of(&r) == held_on).then_some(c)
            })
            .unwrap_or_else(|| panic!("no connection landed on worker {held_on}"));
        c.send(get("/api/hold"));
        backend.wait_requests(2);
        gw.signal(libc::SIGTERM);
        // Every probe over two seconds says draining: the other worker finished long ago.
        let t = Instant::now();
        let mut probes = 0;
        while t.elapsed() < Duration::from_secs(2) {
            let (status, body) = admin_get(admin, "/healthz");
            if status == 200 && probes == 0 {
                continue; // the signal has not been taken yet
            }
            assert_eq!(
                (status, body.as_str()),
                (503, "{\"status\":\"draining\"}"),
                "probe {probes} with the request held on worker {held_on}"
            );
            probes += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(probes >= 10, "{probes} probes");
        gate.open();
        let r = c.read_response();
        assert_eq!(r.body_text(), "held");
        assert!(r.closes(), "the answer during a drain says close");
        assert!(
            gw.wait_exit(Duration::from_secs(10))
                .is_some_and(|s| s.success())
        );
        // The admin listener closed with the process.
        assert!(TcpStream::connect(admin).is_err());
    }
}

#[test]
fn an_idle_keepalive_client_gets_one_last_answer_during_the_drain() {
    let backend = Backend::ok();
    let mut gw = Gateway::start(&proxy_config(
        backend.addr(),
        "shutdown_grace_ms = 10000",
        "",
    ));
    let mut c = gw.connect();
    assert_eq!(c.roundtrip(get("/api/a")).status, 200);
    gw.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(200));
    // Idle when the drain began, it may still send a request within the linger.
    let r = c.roundtrip(get("/api/b"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.closes(), "{}", r.text());
    c.wait_closed(Duration::from_secs(5)).unwrap();
    // A client that stays idle is closed after the linger, not after the grace.
    let t = Instant::now();
    assert!(
        gw.wait_exit(Duration::from_secs(5))
            .is_some_and(|s| s.success())
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn reload_finds_the_gateway_through_the_configured_pid_file() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("ringway.pid");
    let config = mock_config(
        "127.0.0.1:0",
        "off",
        &format!("pid_file = \"{}\"", pid_file.display()),
    );
    let gw = Gateway::start(&config);
    let config_path = dir.path().join("ringway.toml");
    std::fs::write(&config_path, &config).unwrap();
    let config_path = config_path.to_str().unwrap().to_string();
    let out = ringway(&["reload", "--config", &config_path]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sent SIGHUP to {}", gw.pid())
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.stderr().contains("reload") {
        assert!(Instant::now() < deadline, "no reload: {}", gw.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(gw);
    // The process is gone; a pid file left behind is called stale.
    std::fs::write(
        &pid_file,
        format!("{}\n", {
            let mut c = Command::new("true").spawn().unwrap();
            let id = c.id();
            c.wait().unwrap();
            id
        }),
    )
    .unwrap();
    let out = ringway(&["reload", "--config", &config_path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("is not running (stale pid file)"),
        "{stderr}"
    );
}

//! The client and scripts against a real `redis-server` (each test starts its own on a free
//! port, with no persistence, in a temporary directory), and against fake servers that
//! accept and never answer or answer nonsense. Every loop is bounded in time.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::scripts::RATE_TAKE;
use super::*;

/// The client timeout of the tests that do not test timeouts (generous: a loaded test
/// machine must not make them fail).
const T: Duration = Duration::from_secs(2);

/// How late a timeout may come back on a loaded test machine.
const SLACK: Duration = Duration::from_millis(150);

/// The most a call answered without the network may take on a busy test machine (such a
/// call typically takes a few microseconds; a wait on the network would take a timeout).
const AT_ONCE: Duration = Duration::from_millis(20);

/// A `redis-server` of this test, killed on drop.
struct Server {
    child: Option<Child>,
    port: u16,
    password: Option<String>,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        Server::start_with(None)
    }

    fn start_with(password: Option<&str>) -> Server {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut s = Server {
            child: None,
            port,
            password: password.map(str::to_string),
            dir: tempfile::tempdir().unwrap(),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).unwrap();
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("redis-server (Debian package redis-server) is installed");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(5);
        while !answers_ping(self.port) {
            if Instant::now() > until {
                let log = std::fs::read_to_string(self.dir.path().join("redis.log"));
                panic!("redis-server on {} did not start: {log:?}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> RedisUrl {
        let auth = self
            .password
            .as_ref()
            .map_or(String::new(), |p| format!(":{p}@"));
        RedisUrl::parse(&format!("redis://{auth}127.0.0.1:{}/0", self.port)).unwrap()
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().unwrap().id() as libc::pid_t;
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        let out = cmd.args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// The key's time to live in milliseconds (-2: no such key, -1: no expiry).
fn pttl(server: &Server, key: &str) -> i64 {
    let out = server.cli(&["PTTL", key]);
    out.parse()
        .unwrap_or_else(|_| panic!("PTTL {key}: {out:?}"))
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether something on `port` answers `PING` (`+PONG`, or `-NOAUTH` with a password).
fn answers_ping(port: u16) -> bool {
    let addr = ([127, 0, 0, 1], port).into();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 64];
    s.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
        && matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"))
}

fn block_on<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs `f` on the epoll driver, then on io_uring where the kernel allows it.
fn on_each_driver<F: Future<Output = ()>>(f: impl Fn() -> F) {
    block_on(f());
    match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(f()),
        Err(e) => eprintln!("io_uring unavailable ({e}): epoll driver only"),
    }
}

fn cmd(name: &str, args: &[&str]) -> Cmd {
    args.iter().fold(Cmd::new(name), |c, a| c.arg(*a))
}

fn ping() -> Vec<Cmd> {
    vec![Cmd::new("PING")]
}

fn pong() -> Vec<Reply> {
    vec![Reply::Simple("PONG".to_string())]
}

#[test]
fn password_and_database() {
    let server = Server::start_with(Some("s3cret"));
    let port = server.port;
    let url = |s: &str| RedisUrl::parse(&s.replace("PORT", &port.to_string())).unwrap();
    block_on(async {
        let db3 = Redis::new(url("redis://:s3cret@127.0.0.1:PORT/3"), T);
        let ok = vec![Reply::Simple("OK".to_string())];
        assert_eq!(
            db3.call(vec![cmd("SET", &["k", "three"])]).await,
            Ok(ok.clone())
        );
        let user = Redis::new(url("redis://default:s3cret@127.0.0.1:PORT"), T);
        assert_eq!(user.call(vec![cmd("SET", &["k", "zero"])]).await, Ok(ok));

        for (bad, want) in [
            ("redis://:wrong@127.0.0.1:PORT", "AUTH"),
            ("redis://127.0.0.1:PORT", "NOAUTH"),
            ("redis://:s3cret@127.0.0.1:PORT/99", "SELECT"),
        ] {
            let client = Redis::new(url(bad), T);
            match client.call(ping()).await {
                Err(StoreError::Connection(e)) => assert!(e.contains(want), "{bad}: {e}"),
                other => panic!("{bad}: {other:?}"),
            }
            assert!(!client.is_up(), "{bad}");
            assert_eq!(client.call(ping()).await, Err(StoreError::Unavailable));
            assert_eq!(client.failures(), 2);
        }
    });
    assert_eq!(server.cli(&["-n", "3", "GET", "k"]), "three");
    assert_eq!(server.cli(&["-n", "0", "GET", "k"]), "zero");
}

#[test]
fn pipelines_concurrent_calls_in_order() {
    let server = Server::start();
    on_each_driver(|| {
        let url = server.url();
        async move {
            let redis = Redis::new(url, T);
            assert_eq!(
                redis.call(vec![cmd("DEL", &["n"])]).await.map(|r| r.len()),
                Ok(1)
            );
            for round in 0..2 {
                let writes = redis.writes();
                let tasks: Vec<_> = (0..100)
                    .map(|i| {
                        let r = redis.clone();
                        let echo = format!("task {i}");
                        monoio::spawn(async move {
                            r.call(vec![cmd("INCR", &["n"]), cmd("ECHO", &[&echo])])
                                .await
                        })
                    })
                    .collect();
                let mut counts = Vec::new();
                for (i, task) in tasks.into_iter().enumerate() {
                    let replies = task.await.unwrap();
                    let [Reply::Int(n), Reply::Bulk(Some(echo))] = replies.as_slice() else {
                        panic!("{replies:?}");
                    };
                    assert_eq!(echo, format!("task {i}").as_bytes());
                    counts.push(*n);
                }
                counts.sort_unstable();
                let base = round * 100;
                assert_eq!(counts, (base + 1..=base + 100).collect::<Vec<i64>>());
                // All 100 calls were queued before the writer ran: one write.
                assert_eq!(redis.writes() - writes, 1, "round {round}");
            }
            assert_eq!(redis.failures(), 0);
        }
    });
}

#[test]
fn gcra_bursts_refuses_and_refills() {
    let server = Server::start();
    block_on(async {
        let redis = Redis::new(server.url(), T);
        let take = |key: &str, want| RateTake {
            key: key.to_string(),
            emission_us: 100_000,
            burst: 5,
            want,
        };
        let burst_sent = Instant::now();
        let grants = redis.rate_take(&vec![take("rate:a", 1); 6]).await.unwrap();
        let burst_answered = Instant::now();
        let granted: Vec<u64> = grants.iter().map(|g| g.granted).collect();
        assert_eq!(granted, [1, 1, 1, 1, 1, 0]);
        assert!(grants[..5].iter().all(|g| g.retry_after_us == 0));
        let refused = grants[5];
        assert!(
            (1..=100_000).contains(&refused.retry_after_us),
            "{refused:?}"
        );
        assert!(
            (450_000..=500_000).contains(&grants[4].backlog_us),
            "{grants:?}"
        );
        // The key's time to live is the backlog (500 ms) in milliseconds, not in seconds or
        // microseconds: at most 502 ms, and gone only once that much has passed.
        let ttl = pttl(&server, "rate:a");
        let since = burst_sent.elapsed().as_millis() as i64;
        assert!(
            ttl <= 502 && (ttl > 0 || since >= 450),
            "PTTL {ttl} after {since} ms"
        );
        assert!(ttl < 0 || ttl + since >= 450, "PTTL {ttl} after {since} ms");

        // A take of more than the burst on a fresh key gets the burst.
        let g = redis.rate_take(&[take("rate:b", 10)]).await.unwrap();
        assert_eq!(g[0].granted, 5);

        // One token back per 100 ms since the burst (as Redis's clock counts them: between
        // what the gateway saw before and after).
        monoio::time::sleep(Duration::from_millis(250)).await;
        let sent = Instant::now();
        let g = redis.rate_take(&[take("rate:a", 5)]).await.unwrap()[0];
        let least = (sent - burst_answered).as_millis() as u64 / 100;
        let most = (burst_sent.elapsed().as_millis() as u64 / 100).min(5);
        assert!(
            (least..=most).contains(&g.granted),
            "{least}..={most}: {g:?}"
        );
        // Three tokens given back move the TAT back 300 ms (less the time in between).
        let before = g.backlog_us;
        let after = redis.rate_give_back("rate:a", 100_000, 3).await.unwrap();
        let between = sent.elapsed().as_micros() as u64;
        assert!(
            before >= after + 300_000 && before <= after + 300_000 + between,
            "backlog {before} µs, then {after} µs"
        );
        let g = redis.rate_take(&[take("rate:a", 5)]).await.unwrap()[0];
        assert!(g.granted >= 3, "after giving 3 back: {g:?}");
        // Giving back more than was taken leaves the key at rest.
        assert_eq!(redis.rate_give_back("rate:a", 100_000, 100).await, Ok(0));
        assert_eq!(server.cli(&["EXISTS", "rate:a"]), "0");
        assert_eq!(redis.failures(), 0);
    });
}

#[test]
fn window_never_admits_more_than_its_limit() {
    let server = Server::start();
    let (limit, window) = (10u64, Duration::from_millis(1000));
    let keys = ["win:a", "win:b", "win:c"];
    let admitted = block_on(async {
        let redis = Redis::new(server.url(), T);
        // Per key: (sent, answered) of each admission; Redis counted it in between.
        let mut admitted: Vec<Vec<(Instant, Instant)>> = vec![Vec::new(); keys.len()];
        let start = Instant::now();
        let mut wants = [1u64, 2, 3].into_iter().cycle();
        let mut ttl_checked = false;
        while start.elapsed() < Duration::from_millis(2600) {
            let want = wants.next().unwrap_or(1);
            let takes: Vec<WindowTake> = keys
                .iter()
                .map(|k| WindowTake {
                    key: k.to_string(),
                    limit,
                    window_ms: window.as_millis() as u64,
                    slots: 10,
                    want,
                })
                .collect();
            let sent = Instant::now();
            let grants = redis.window_take(&takes).await.unwrap();
            let answered = Instant::now();
            for (i, g) in grants.iter().enumerate() {
                assert!(g.used <= limit, "{g:?}");
                assert!(g.granted <= want);
                if g.granted == 0 {
                    assert!((1..=1100).contains(&g.retry_after_ms), "{g:?}");
                } else {
                    assert_eq!(g.retry_after_ms, 0);
                }
                let n = g.granted as usize;
                admitted[i].extend(std::iter::repeat_n((sent, answered), n));
            }
            if !ttl_checked && grants[0].granted > 0 {
                // window + slot = 1100 ms, in milliseconds.
                let ttl = pttl(&server, "win:a");
                let since = sent.elapsed().as_millis() as i64;
                assert!(
                    ttl <= 1100 && ttl + since >= 1050,
                    "PTTL {ttl} after {since} ms"
                );
                ttl_checked = true;
            }
            monoio::time::sleep(Duration::from_millis(3)).await;
        }
        assert!(ttl_checked);
        admitted
    });
    // Admissions surely less than a window apart (the later one answered before a window
    // after the earlier one was sent) are at most `limit`.
    for (key, times) in keys.iter().zip(&admitted) {
        for (i, &(sent, _)) in times.iter().enumerate() {
            let within = times[i..]
                .iter()
                .filter(|&&(_, a)| a < sent + window)
                .count();
            assert!(within as u64 <= limit, "{key}: {within} in one window");
        }
        // ...and the limiter admits, about `limit` per window and slot (2.6 s).
        assert!(
            times.len() >= 2 * limit as usize,
            "{key}: only {} admitted",
            times.len()
        );
    }
}

#[test]
fn quota_is_never_exceeded_by_racing_clients() {
    let server = Server::start();
    let max = 1000u64;
    let expire_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 60_000;
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let url = server.url();
            std::thread::spawn(move || {
                block_on(async move {
                    let redis = Redis::new(url, T);
                    let tasks: Vec<_> = (0..4)
                        .map(|_| {
                            let redis = redis.clone();
                            monoio::spawn(async move {
                                let mut got = 0;
                                for _ in 0..5000 {
                                    let take = QuotaTake {
                                        key: "quota:q".to_string(),
                                        max,
                                        want: 7,
                                        expire_at_ms: Some(expire_at_ms),
                                    };
                                    let g = redis.quota_reserve(&[take]).await.unwrap()[0];
                                    assert!(g.used <= max, "{g:?}");
                                    if g.granted == 0 {
                                        return got;
                                    }
                                    got += g.granted;
                                }
                                panic!("quota never ran out");
                            })
                        })
                        .collect();
                    let mut sum = 0;
                    for t in tasks {
                        sum += t.await;
                    }
                    sum
                })
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, max, "granted across the fleet");
    assert_eq!(server.cli(&["GET", "quota:q"]), "1000");
    let ttl = pttl(&server, "quota:q");
    assert!((1..=60_000).contains(&ttl), "PTTL {ttl}");

    block_on(async {
        let redis = Redis::new(server.url(), T);
        assert_eq!(redis.quota_release("quota:q", 10).await, Ok(990));
        let keys = ["quota:q".to_string(), "quota:none".to_string()];
        assert_eq!(redis.quota_used(&keys).await, Ok(vec![990, 0]));
        assert_eq!(redis.quota_release("quota:q", 5000).await, Ok(0));
        assert_eq!(redis.quota_release("quota:none", 1).await, Ok(0));
        // Blocks shrink to a quarter of what is left.
        let take = |want| QuotaTake {
            key: "quota:r".to_string(),
            max: 10,
            want,
            expire_at_ms: None,
        };
        let g = redis
            .quota_reserve(&[take(100), take(100), take(1)])
            .await
            .unwrap();
        let got: Vec<(u64, u64)> = g.iter().map(|g| (g.granted, g.used)).collect();
        assert_eq!(got, [(3, 3), (2, 5), (1, 6)]);
    });
    assert_eq!(pttl(&server, "quota:r"), -1);
}

#[test]
fn noscript_falls_back_to_eval() {
    let server = Server::start();
    let sha = RATE_TAKE.sha().to_string();
    block_on(async {
        let redis = Redis::new(server.url(), T);
        let take = [RateTake {
            key: "rate:n".to_string(),
            emission_us: 1000,
            burst: 100,
            want: 1,
        }];
        assert_eq!(server.cli(&["SCRIPT", "EXISTS", &sha]), "0");
        assert_eq!(redis.rate_take(&take).await.unwrap()[0].granted, 1);
        assert_eq!(server.cli(&["SCRIPT", "EXISTS", &sha]), "1");
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        assert_eq!(redis.rate_take(&take).await.unwrap()[0].granted, 1);
        assert_eq!(server.cli(&["SCRIPT", "EXISTS", &sha]), "1");
        assert_eq!(redis.failures(), 0);
    });
}

#[test]
fn a_late_reply_is_dropped_and_the_order_kept() {
    let server = Server::start();
    let busy = "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end \
                local start = now() \
                while now() - start < tonumber(ARGV[1]) * 1000 do end \
                return 'slept'";
    on_each_driver(|| {
        let url = server.url();
        async move {
            let redis = Redis::new(url, Duration::from_millis(500));
            assert_eq!(redis.call(ping()).await, Ok(pong()));
            // The script keeps Redis busy for 800 ms: its caller gives up at 500 ms; a call
            // sent at 600 ms is answered at 800 ms, right after the script's late reply.
            let slow = redis.clone();
            let stuck =
                monoio::spawn(
                    async move { slow.call(vec![cmd("EVAL", &[busy, "0", "800"])]).await },
                );
            monoio::time::sleep(Duration::from_millis(600)).await;
            let after = redis.call(vec![cmd("ECHO", &["mine"])]).await;
            assert_eq!(after, Ok(vec![Reply::Bulk(Some(b"mine".to_vec()))]));
            assert_eq!(stuck.await, Err(StoreError::Timeout));
            assert!(redis.is_up());
            assert_eq!(redis.call(ping()).await, Ok(pong()));
            assert_eq!(redis.failures(), 1);
        }
    });
}

#[test]
fn connection_refused_fails_fast() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    block_on(async {
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let redis = Redis::new(url, T);
        let t = Instant::now();
        match redis.call(ping()).await {
            Err(StoreError::Connection(e)) => assert!(e.contains("connect"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() < T, "{:?}", t.elapsed());
        assert!(!redis.is_up());
        let t = Instant::now();
        assert_eq!(redis.rate_take(&[]).await.map(|v| v.len()), Ok(0));
        let q = [QuotaTake {
            key: "q".to_string(),
            max: 1,
            want: 1,
            expire_at_ms: None,
        }];
        assert_eq!(redis.quota_reserve(&q).await, Err(StoreError::Unavailable));
        assert!(t.elapsed() < AT_ONCE, "{:?}", t.elapsed());
    });
}

#[test]
fn a_server_that_never_answers_costs_one_timeout_then_nothing() {
    // Accepts, keeps every connection open, never reads or writes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let timeout = Duration::from_millis(200);
    block_on(async {
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let redis = Rc::new(Redis::new(url, timeout));
        let t = Instant::now();
        assert_eq!(redis.call(ping()).await, Err(StoreError::Timeout));
        let took = t.elapsed();
        assert!(took >= timeout && took < timeout + SLACK, "{took:?}");
        assert!(!redis.is_up());
        // While the breaker is open (and the reconnect loop keeps dialling the dead server),
        // every call returns at once.
        let start = Instant::now();
        let (mut calls, mut slowest, mut total) = (0u32, Duration::ZERO, Duration::ZERO);
        while start.elapsed() < Duration::from_millis(800) {
            let t = Instant::now();
            assert_eq!(redis.call(ping()).await, Err(StoreError::Unavailable));
            slowest = slowest.max(t.elapsed());
            total += t.elapsed();
            calls += 1;
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        let mean = total / calls;
        assert!(mean < Duration::from_micros(500), "mean {mean:?}");
        assert!(slowest < AT_ONCE, "slowest call {slowest:?}");
        assert!(!redis.is_up());
        assert_eq!(redis.failures(), 1 + u64::from(calls));
    });
}

#[test]
fn a_stalled_server_opens_the_breaker_after_three_timeouts() {
    let server = Server::start();
    let timeout = Duration::from_millis(150);
    block_on(async {
        let redis = Redis::new(server.url(), timeout);
        assert_eq!(redis.call(ping()).await, Ok(pong()));
        server.signal(libc::SIGSTOP);
        for i in 0..TIMEOUTS_TO_TRIP {
            assert!(redis.is_up(), "before timeout {i}");
            let t = Instant::now();
            assert_eq!(redis.call(ping()).await, Err(StoreError::Timeout));
            assert!(t.elapsed() < timeout + SLACK, "{:?}", t.elapsed());
        }
        assert!(!redis.is_up());
        let t = Instant::now();
        assert_eq!(redis.call(ping()).await, Err(StoreError::Unavailable));
        assert!(t.elapsed() < AT_ONCE, "{:?}", t.elapsed());
        server.signal(libc::SIGCONT);
        let back = Instant::now();
        let mut up = false;
        while back.elapsed() < Duration::from_secs(3) {
            if redis.call(ping()).await.is_ok() {
                up = true;
                break;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            up && back.elapsed() < Duration::from_secs(1),
            "{:?}",
            back.elapsed()
        );
    });
}

#[test]
fn a_restarted_server_is_used_again_within_a_second() {
    let mut server = Server::start();
    block_on(async {
        let redis = Redis::new(server.url(), T);
        assert_eq!(redis.call(ping()).await, Ok(pong()));
        server.kill();
        let t = Instant::now();
        assert!(redis.call(ping()).await.is_err());
        assert!(t.elapsed() < T);
        // Down for a while: the reconnect backoff grows to its cap.
        monoio::time::sleep(Duration::from_millis(1600)).await;
        assert!(!redis.is_up());
        assert_eq!(redis.call(ping()).await, Err(StoreError::Unavailable));
        server.restart();
        let back = Instant::now();
        let mut up = false;
        while back.elapsed() < Duration::from_secs(3) {
            if redis.call(ping()).await.is_ok() {
                up = true;
                break;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            up && back.elapsed() < Duration::from_secs(1),
            "{:?}",
            back.elapsed()
        );
        assert!(redis.is_up());
    });
}

#[test]
fn an_oversized_reply_breaks_the_connection() {
    // Answers the handshake's PING, then a 2 MiB bulk string header to anything.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut c, _)) = listener.accept() else {
            return;
        };
        let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 1024];
        if c.read(&mut buf).is_ok() && c.write_all(b"+PONG\r\n").is_ok() && c.read(&mut buf).is_ok()
        {
            let _ = c.write_all(b"$2097152\r\n");
        }
        std::thread::sleep(Duration::from_secs(2));
    });
    block_on(async {
        let url = RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).unwrap();
        let redis = Redis::new(url, T);
        match redis.call(vec![cmd("GET", &["big"])]).await {
            Err(StoreError::Connection(e)) => assert!(e.contains("2097152 bytes"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!redis.is_up());
    });
}

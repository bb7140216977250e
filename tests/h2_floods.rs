//! HTTP/2 floods (SPEC §10), through the real binary (one worker, h2c), with an outside
//! attacker: `tests/support/h2_flood.py` (Python's `hyperframe` and `hpack`, raw frames),
//! sustained: a new connection each time the gateway closes one, for over a second. For
//! each flood: every attacking connection gets GOAWAY with the expected code and is closed
//! within a second; a well-behaved HTTP/2 client on another connection (the same script's
//! `good` mode, Python's `h2`) is answered within a second all along; the worker's CPU is
//! back to idle in the second after; `/metrics` counts one GOAWAY by reason per attacking
//! connection.
//!
//! The floods run one at a time (a lock), so their timings do not disturb each other. A test
//! whose Python packages are missing says so and passes.

mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// One flood at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// ENHANCE_YOUR_CALM and PROTOCOL_ERROR.
const CALM: u64 = 0xb;
const PROTOCOL_ERROR: u64 = 0x1;
/// How long the good client asks, one request at a time (from before the flood to after).
const GOOD_SECONDS: &str = "1.8";
/// How long the attacker keeps flooding, reconnecting each time it is closed.
const FLOOD_SECONDS: &str = "1.2";

fn script() -> String {
    format!("{}/tests/support/h2_flood.py", env!("CARGO_MANIFEST_DIR"))
}

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import h2, hyperframe, hpack"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: python3 with the h2, hyperframe and hpack packages is not installed");
    }
    ok
}

struct Setup {
    gw: Gateway,
    admin: SocketAddr,
    _backend: Backend,
}

/// One worker (so the CPU check reads the one that was attacked), h2c on the plain
/// listener, `/api` forwarded to a backend that answers `ok`.
fn setup() -> Setup {
    let backend = Backend::ok();
    let config = format!(
        "[server]\nlisten_http = [\"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\naccess_log = \"off\"\nworkers = 1\nh2c = true\n\n{}\
         [[services]]\nname = \"s\"\n[[services.apis]]\nname = \"api\"\npath = \"/api\"\nmethod = \"ANY\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/internal\"\n",
        upstream_section("up", backend.addr(), ""),
    );
    let gw = Gateway::start(&config);
    let admin = admin_addr(&gw);
    Setup {
        gw,
        admin,
        _backend: backend,
    }
}

/// `ringway_http2_goaway_total{reason}` now.
fn goaways(s: &Setup, reason: &str) -> u64 {
    let (status, text) = admin_get(s.admin, "/metrics");
    assert_eq!(status, 200);
    let key = format!("ringway_http2_goaway_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in\n{text}"))
}

/// The process's CPU time (utime + stime), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after `)`.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Share of one core the gateway used over the next second.
fn cpu_over_a_second(pid: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before = cpu_ticks(pid);
    let t = Instant::now();
    thread::sleep(Duration::from_secs(1));
    let used = (cpu_ticks(pid) - before) as f64 / hz;
    used / t.elapsed().as_secs_f64()
}

/// Waits (bounded) for a script's single JSON line.
fn json_of(child: Child, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not end within 20 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!(
            "{what}: no JSON ({e}): {out}\n{}",
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn spawn(args: &[&str]) -> Child {
    Command::new("python3")
        .arg(script())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What one flood showed.
struct Outcome {
    flood: Value,
    good: Value,
    cpu: f64,
}

/// Runs the good client, then `args` (a flood) beside it; then reads the CPU over a second.
fn flood(s: &Setup, args: &[&str]) -> Outcome {
    let port = s.gw.addr().port().to_string();
    let good = spawn(&[
        "good",
        "--port",
        &port,
        "--path",
        "/api/good",
        "--seconds",
        GOOD_SECONDS,
    ]);
    // Its connection up first, so the flood meets an established neighbour.
    thread::sleep(Duration::from_millis(300));
    let mut all = args.to_vec();
    all.extend(["--port", &port, "--seconds", FLOOD_SECONDS, "--reconnect"]);
    let flood = json_of(spawn(&all), &format!("the flood {args:?}"));
    let good = json_of(good, "the good client");
    let cpu = cpu_over_a_second(s.gw.pid());
    let o = Outcome { flood, good, cpu };
    eprintln!(
        "{args:?}: flood {}; good client {}; CPU in the second after: {:.1}% of a core",
        o.flood,
        o.good,
        o.cpu * 100.0
    );
    o
}

/// The checks every flood shares: GOAWAY `code` on every attacking connection, read by the
/// client (the gateway's lingering close keeps the kernel from resetting the connection
/// over it) and counted in the gateway's metrics under `reason`, each closed within a
/// second; the good client answered within a second every time; the worker idle afterwards.
fn check(s: &Setup, args: &[&str], code: u64, reason: &str, debug: &str) -> Outcome {
    let before = goaways(s, reason);
    let o = flood(s, args);
    let f = &o.flood;
    let connections = f["connections"].as_u64().unwrap();
    assert!(connections >= 1, "{args:?}: {f}");
    assert_eq!(f["left_open"].as_u64(), Some(0), "{args:?}: {f}");
    let closed = f["closed_max"].as_f64().unwrap();
    assert!(
        closed < 1.0,
        "{args:?}: a connection closed after {closed} s: {f}"
    );
    for (seen, n) in f["goaways"].as_object().unwrap() {
        // "None" would be a connection closed without the client reading a GOAWAY.
        assert!(
            seen == &code.to_string(),
            "{args:?}: {n} connection(s) got GOAWAY {seen}: {f}"
        );
    }
    let first = &f["first"];
    assert_eq!(first["goaway"].as_u64(), Some(code), "{args:?}: {f}");
    assert!(
        first["debug"].as_str().unwrap().contains(debug),
        "{args:?}: {f}"
    );
    assert!(!first["stalled"].as_bool().unwrap(), "{args:?}: {f}");
    assert_eq!(
        goaways(s, reason),
        before + connections,
        "{args:?}: ringway_http2_goaway_total{{reason=\"{reason}\"}}, after {f}"
    );
    let g = &o.good;
    assert!(g["error"].is_null(), "good client: {g}");
    let requests = g["requests"].as_u64().unwrap();
    assert!(requests >= 5, "good client: {g}");
    assert_eq!(g["ok"].as_u64(), Some(requests), "good client: {g}");
    let worst = g["max_latency"].as_f64().unwrap();
    assert!(worst < 1.0, "good client waited {worst} s: {g}");
    assert!(
        o.cpu < 0.05,
        "{args:?}: the gateway used {:.1}% of a core in the second after the flood",
        o.cpu * 100.0
    );
    o
}

#[test]
fn rapid_reset() {
    if !python_ready() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let before = goaways(&s, "abuse");
    let o = check(&s, &["rapid-reset"], CALM, "abuse", "too_many_resets");
    // Far fewer than the 100,000 pairs a connection had in store.
    assert!(o.flood["first"]["sent"].as_u64().unwrap() < 100_000);
    // Counted in the older family too.
    let n = before + o.flood["connections"].as_u64().unwrap();
    let (_, m) = admin_get(s.admin, "/metrics");
    assert!(
        m.lines()
            .any(|l| l == format!("ringway_http2_abusive_connections_total {n}")),
        "{m}"
    );
}

#[test]
fn continuation_flood() {
    if !python_ready() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    check(
        &s,
        &["continuation"],
        CALM,
        "abuse",
        "too_many_continuations",
    );
}

#[test]
fn hpack_amplification() {
    if !python_ready() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    // One 16 KiB block of references to a 4 KiB table entry: ~64 MB once decoded.
    check(
        &s,
        &["hpack", "--refs", "16000"],
        CALM,
        "abuse",
        "header_list_way_too_large",
    );
    // A block per stream that decodes to about twice the header-list limit (~80 KB from
    // ~40 bytes): h2 refuses each stream; the refusals are counted against the connection.
    check(
        &s,
        &["hpack", "--refs", "20"],
        CALM,
        "abuse",
        "too_many_internal_resets",
    );
}

#[test]
fn empty_data_frames() {
    if !python_ready() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let o = check(&s, &["empty-data"], CALM, "abuse", "too_many_data_frames");
    assert!(o.flood["first"]["sent"].as_u64().unwrap() < 100_000);
}

#[test]
fn server_reset_storm() {
    if !python_ready() {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    // Streams the gateway must reset (MadeYouReset, CVE-2025-8671): a window overflowed by
    // WINDOW_UPDATE, DATA past content-length. Each is a stream error; after 64 of them
    // the connection gets ENHANCE_YOUR_CALM.
    for how in ["wu-overflow", "content-length"] {
        let o = check(
            &s,
            &["reset-storm", "--how", how],
            CALM,
            "abuse",
            "too_many_internal_resets",
        );
        // The resets the client saw, at most the 64 allowed.
        let rst: u64 = o.flood["first"]["rst"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert!(rst <= 64, "{}", o.flood["first"]);
    }
    // WINDOW_UPDATE with increment 0 on a stream, DATA on a stream the client half-closed:
    // h2 takes these for connection errors, so the first one ends the connection.
    for how in ["wu0", "data-closed"] {
        check(
            &s,
            &["reset-storm", "--how", how],
            PROTOCOL_ERROR,
            "protocol_error",
            "",
        );
    }
}

//! IP control (SPEC §8) through the real binary: allow and deny lists on a service and an
//! API overriding them, judged on the TCP peer over an IPv4 listener (127.0.0.1), an IPv6
//! one (`[::1]`) and a dual-stack `[::]` one reached over IPv4 (the peer is then the mapped
//! `::ffff:127.0.0.1`, judged and named as 127.0.0.1). A refused request gets 403
//! `{"message":"client ip <ip> is not allowed"}`, never reaches the backend, and is counted
//! in `ringway_ratelimit_rejected_total{reason="ip"}` and `ringway_requests_total`; a CORS
//! preflight is refused the same way.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::*;

/// The services: `host` → IP control, and APIs (name, path, own IP control, CORS).
fn config(backend: SocketAddr, listen: &str) -> String {
    let api = |name: &str, path: &str, extra: &str| {
        format!(
            "[[services.apis]]\nname = \"{name}\"\npath = \"{path}\"\nmethod = \"ANY\"\n{extra}\n[services.apis.backend]\nupstream = \"up\"\npath = \"/b/{name}\"\n"
        )
    };
    let service = |name: &str, ip_control: &str| {
        format!("[[services]]\nname = \"{name}\"\nhosts = [\"{name}.test\"]\n{ip_control}\n")
    };
    let control = |table: &str, mode: &str, ips: &str| {
        format!("[{table}]\nmode = \"{mode}\"\nips = [{ips}]\n")
    };
    let local = "\"127.0.0.0/8\", \"::1\"";
    [
        format!(
            "[server]\nlisten_http = [{listen}]\nadmin_listen = \"127.0.0.1:0\"\naccess_log = \"off\"\nworkers = 2\n"
        ),
        upstream_section("up", backend, ""),
        // A deny list of the local addresses; one API replaces it with an allow list.
        service("deny", &control("services.ip_control", "deny", local)),
        api("deny-all", "=/x", "cors = true"),
        api(
            "deny-override",
            "=/override",
            &format!(
                "cors = true\n{}",
                control("services.apis.ip_control", "allow", local)
            ),
        ),
        // An allow list without the local addresses; one API replaces it with a deny list
        // that does not name them.
        service(
            "allow",
            &control(
                "services.ip_control",
                "allow",
                "\"192.0.2.0/24\", \"2001:db8::/32\"",
            ),
        ),
        api("allow-all", "=/x", ""),
        api(
            "allow-override",
            "=/override",
            &control("services.apis.ip_control", "deny", "\"192.0.2.0/24\""),
        ),
        // One family each: IPv4 entries do not cover ::1, nor IPv6 ones 127.0.0.1.
        service("v4", &control("services.ip_control", "allow", "\"127.0.0.1\"")),
        api("v4", "=/x", ""),
        service("v6", &control("services.ip_control", "allow", "\"::1/128\"")),
        api("v6", "=/x", ""),
        // No IP control.
        service("open", ""),
        api("open", "=/x", ""),
    ]
    .concat()
}

/// Every `listening http` address of the gateway, once there are `n`.
fn listeners(gw: &mut Gateway, n: usize) -> Vec<SocketAddr> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let addrs = gw.addrs();
        if addrs.len() >= n {
            return addrs;
        }
        assert!(
            Instant::now() < deadline,
            "{n} listeners wanted:\n{}",
            gw.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn request(method: &str, host: &str, path: &str, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}.test\r\n{extra}\r\n").into_bytes()
}

/// (service = host, target, the API it reaches, admitted over [IPv4, IPv6, the
/// dual-stack listener]). An admitted request reaches `/b/<api>` on the backend; an
/// admitted preflight is answered 204 and reaches nothing.
type Case = (&'static str, &'static str, &'static str, [bool; 3]);

const CASES: [Case; 9] = [
    ("deny", "/x", "deny-all", [false, false, false]),
    ("deny", "/override", "deny-override", [true, true, true]),
    ("allow", "/x", "allow-all", [false, false, false]),
    ("allow", "/override", "allow-override", [true, true, true]),
    ("v4", "/x", "v4", [true, false, true]),
    ("v6", "/x", "v6", [false, true, false]),
    ("open", "/x", "open", [true, true, true]),
    // A CORS preflight is judged like the request it asks about: refused on the deny list,
    // answered where the API's allow list admits the client.
    ("deny", "preflight /x", "deny-all", [false, false, false]),
    (
        "deny",
        "preflight /override",
        "deny-override",
        [true, true, true],
    ),
];

/// The message each listener's client is refused with.
const REFUSED: [&str; 3] = [
    "client ip 127.0.0.1 is not allowed",
    "client ip ::1 is not allowed",
    // The mapped peer ::ffff:127.0.0.1, named in its canonical form.
    "client ip 127.0.0.1 is not allowed",
];

/// Runs every case over listener `which` (0: IPv4, 1: IPv6, 2: dual-stack via IPv4) on
/// one keepalive connection; returns the backend paths that should have been reached.
fn run_cases(addr: SocketAddr, which: usize) -> Vec<String> {
    let mut reached = Vec::new();
    let mut client = Client::connect(addr);
    for (host, target, api, admitted) in CASES {
        let ctx = format!("{host} {target} via {addr}");
        let (req, preflight) = match target.strip_prefix("preflight ") {
            Some(path) => (
                request(
                    "OPTIONS",
                    host,
                    path,
                    "Origin: https://app.example\r\nAccess-Control-Request-Method: GET\r\n",
                ),
                true,
            ),
            None => (request("GET", host, target, ""), false),
        };
        let r = client.roundtrip(req);
        if !admitted[which] {
            let message = r.assert_gateway_error(403, &ctx);
            assert_eq!(message, REFUSED[which], "[{ctx}]");
            assert_eq!(
                r.body_text(),
                format!("{{\"message\":\"{}\"}}", REFUSED[which]),
                "[{ctx}]"
            );
            if host == "deny" {
                // A CORS API's 403 carries the CORS headers, so a browser can read it.
                assert_eq!(
                    r.header("access-control-allow-origin"),
                    Some("*"),
                    "[{ctx}]"
                );
            }
            assert!(!r.closes(), "[{ctx}] a 403 keeps the connection");
        } else if preflight {
            assert_eq!(r.status, 204, "[{ctx}]\n{}", r.text());
            assert_eq!(
                r.header("access-control-allow-methods"),
                Some("GET, POST, PUT, DELETE, HEAD, PATCH, OPTIONS"),
                "[{ctx}]"
            );
        } else {
            assert_eq!(r.status, 200, "[{ctx}]\n{}", r.text());
            assert_eq!(r.body_text(), format!("/b/{api}"), "[{ctx}]");
            reached.push(format!("/b/{api}"));
        }
    }
    reached
}

/// How many requests to each (service, API) `listeners` refuse.
fn refusals(listeners: &[usize]) -> Vec<((&'static str, &'static str), usize)> {
    let mut out: Vec<((&str, &str), usize)> = Vec::new();
    for (service, _, api, admitted) in CASES {
        let n = listeners.iter().filter(|&&l| !admitted[l]).count();
        match out.iter_mut().find(|(k, _)| *k == (service, api)) {
            Some((_, m)) => *m += n,
            None => out.push(((service, api), n)),
        }
    }
    out
}

#[test]
fn allow_and_deny_lists_over_ipv4_ipv6_and_a_dual_stack_listener() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let mut gw = Gateway::start(&config(backend.addr(), "\"127.0.0.1:0\", \"[::1]:0\""));
    let addrs = listeners(&mut gw, 2);
    let v4 = *addrs.iter().find(|a| a.is_ipv4()).unwrap();
    let v6 = *addrs.iter().find(|a| a.is_ipv6()).unwrap();
    assert!(v6.ip().is_loopback());

    // A dual-stack listener (net.ipv6.bindv6only = 0, Linux's default) reached over IPv4.
    let mut dual = Gateway::start(&config(backend.addr(), "\"[::]:0\""));
    let dual_addr = listeners(&mut dual, 1)[0];
    assert!(dual_addr.is_ipv6() && dual_addr.ip().is_unspecified());
    let mapped: SocketAddr = ([127, 0, 0, 1], dual_addr.port()).into();

    let mut want = run_cases(v4, 0);
    want.extend(run_cases(v6, 1));
    want.extend(run_cases(mapped, 2));

    // The backend saw exactly the admitted requests: nothing refused reached it.
    let mut seen: Vec<String> = backend
        .requests()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    seen.sort();
    want.sort();
    assert_eq!(seen, want);

    // The metrics: every refusal per API, counted as a rejection and as a 403.
    for (gateway, listeners) in [(&gw, &[0, 1][..]), (&dual, &[2][..])] {
        let (status, text) = admin_get(admin_addr(gateway), "/metrics");
        assert_eq!(status, 200);
        for ((service, api), n) in refusals(listeners) {
            let rejected = format!(
                "ringway_ratelimit_rejected_total{{service=\"{service}\",api=\"{api}\",policy=\"ip_control\",reason=\"ip\"}}"
            );
            let forbidden = format!(
                "ringway_requests_total{{service=\"{service}\",api=\"{api}\",code=\"403\"}}"
            );
            // An API that refused nothing has no such series.
            let want = (n > 0).then_some(n as f64);
            assert_eq!(sample(&text, &rejected), want, "{rejected} in\n{text}");
            assert_eq!(sample(&text, &forbidden), want, "{forbidden} in\n{text}");
        }
    }
}

/// The access log names the client whose request was refused, and the 403.
#[test]
fn a_refusal_is_logged_with_its_client() {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let toml = config(backend.addr(), "\"127.0.0.1:0\"").replace(
        "access_log = \"off\"",
        &format!("access_log = \"{}\"", log.display()),
    );
    let gw = Gateway::start(&toml);
    let r = gw.connect().roundtrip(request("GET", "deny", "/x", ""));
    r.assert_gateway_error(403, "deny /x");
    let lines = read_json_lines(&log, 1);
    let line = &lines[0];
    assert_eq!(line["status"], 403, "{line}");
    assert_eq!(line["service"], "deny", "{line}");
    assert_eq!(line["api"], "deny-all", "{line}");
    assert!(
        line["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "the client is logged: {line}"
    );
    assert_eq!(backend.requests().len(), 0);
}

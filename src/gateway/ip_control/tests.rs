use std::path::Path;
use std::time::UNIX_EPOCH;

use super::*;
use crate::config::load_str;
use crate::gateway::auth::AuthState;
use crate::gateway::params::ParamValues;
use crate::gateway::{Action, Inbound, Local, Scratch, decide};
use crate::http::head::parse_complete;

fn control(mode: IpMode, entries: &[&str]) -> IpControl {
    let nets: Vec<IpNet> = entries.iter().map(|e| IpNet::parse(e).unwrap()).collect();
    IpControl::new(mode, &nets)
}

#[test]
fn entries_parse_or_say_why_not() {
    // entry → Ok(the network, as address/prefix) | Err(a fragment of the message)
    let cases: &[(&str, Result<&str, &str>)] = &[
        ("192.0.2.7", Ok("192.0.2.7/32")),
        ("10.0.0.0/8", Ok("10.0.0.0/8")),
        ("0.0.0.0/0", Ok("0.0.0.0/0")),
        ("192.0.2.7/32", Ok("192.0.2.7/32")),
        ("10.0.0.0/08", Ok("10.0.0.0/8")),
        ("2001:db8::/32", Ok("2001:db8::/32")),
        ("2001:DB8:0:0::1", Ok("2001:db8::1/128")),
        ("::/0", Ok("::/0")),
        ("::1/128", Ok("::1/128")),
        // IPv4-mapped entries are the IPv4 range they stand for.
        ("::ffff:10.0.0.0/104", Ok("10.0.0.0/8")),
        ("::ffff:192.0.2.7", Ok("192.0.2.7/32")),
        ("::ffff:0:0/96", Ok("0.0.0.0/0")),
        ("::fffe:0:0/95", Ok("::fffe:0:0/95")),
        // Refused.
        (
            "10.0.0.0/33",
            Err("/33 is out of range 0..=32 for an IPv4 address"),
        ),
        (
            "2001:db8::/129",
            Err("/129 is out of range 0..=128 for an IPv6 address"),
        ),
        ("10.0.0.0/999", Err("/999 is out of range")),
        (
            "10.0.0.1/8",
            Err(
                "has bits set past the /8 prefix: write \"10.0.0.0/8\" for the range, or \"10.0.0.1\" for the one address",
            ),
        ),
        (
            "2001:db8::1/32",
            Err("write \"2001:db8::/32\" for the range"),
        ),
        ("::ffff:10.0.0.1/104", Err("write \"::ffff:10.0.0.0/104\"")),
        ("10.0.0.0/", Err("the prefix length \"\" is not a number")),
        (
            "10.0.0.0/+8",
            Err("the prefix length \"+8\" is not a number"),
        ),
        (
            "10.0.0.0/8/8",
            Err("the prefix length \"8/8\" is not a number"),
        ),
        ("10.0.0.0/ 8", Err("is not a number")),
        ("fe80::1%eth0", Err("has an IPv6 zone")),
        ("fe80::%1/64", Err("has an IPv6 zone")),
        ("", Err("\"\" is not an IP address or a CIDR range")),
        ("example.com", Err("is not an IP address")),
        (" 10.0.0.1", Err("is not an IP address")),
        ("10.0.0", Err("is not an IP address")),
        ("010.0.0.1", Err("is not an IP address")),
        ("[::1]", Err("is not an IP address")),
        ("/8", Err("is not an IP address")),
    ];
    for (entry, want) in cases {
        let got = IpNet::parse(entry).map(|n| format!("{}/{}", n.addr, n.prefix));
        match (want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(g, w, "{entry:?}"),
            (Err(w), Err(g)) => assert!(g.contains(w), "{entry:?}: {g:?} lacks {w:?}"),
            _ => panic!("{entry:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn who_is_admitted() {
    use IpMode::{Allow, Deny};
    let spec = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"];
    // (mode, entries, client, admitted)
    let cases: &[(IpMode, &[&str], &str, bool)] = &[
        // The example of SPEC §8, allow.
        (Allow, &spec, "10.1.2.3", true),
        (Allow, &spec, "192.0.2.7", true),
        (Allow, &spec, "192.0.2.8", false),
        (Allow, &spec, "2001:db8:ffff::1", true),
        (Allow, &spec, "2001:db9::1", false),
        (Allow, &spec, "11.0.0.0", false),
        // Deny is the complement.
        (Deny, &spec, "10.1.2.3", false),
        (Deny, &spec, "192.0.2.7", false),
        (Deny, &spec, "192.0.2.8", true),
        (Deny, &spec, "2001:db8::1", false),
        (Deny, &spec, "::1", true),
        // Range boundaries: first and last inside, one step outside either way.
        (Allow, &["10.0.0.0/8"], "10.0.0.0", true),
        (Allow, &["10.0.0.0/8"], "10.255.255.255", true),
        (Allow, &["10.0.0.0/8"], "9.255.255.255", false),
        (Allow, &["10.0.0.0/8"], "11.0.0.0", false),
        (Allow, &["2001:db8::/32"], "2001:db8::", true),
        (
            Allow,
            &["2001:db8::/32"],
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            true,
        ),
        (
            Allow,
            &["2001:db8::/32"],
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            false,
        ),
        (Allow, &["2001:db8::/32"], "2001:db9::", false),
        // /32 and /128: exactly one address.
        (Allow, &["192.0.2.7/32"], "192.0.2.7", true),
        (Allow, &["192.0.2.7/32"], "192.0.2.6", false),
        (Allow, &["::1/128"], "::1", true),
        (Allow, &["::1/128"], "::2", false),
        (Allow, &["::1/128"], "::", false),
        // /0: a whole family, and only that family.
        (Allow, &["0.0.0.0/0"], "0.0.0.0", true),
        (Allow, &["0.0.0.0/0"], "255.255.255.255", true),
        (Allow, &["0.0.0.0/0"], "::1", false),
        (
            Allow,
            &["::/0"],
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            true,
        ),
        (Allow, &["::/0"], "127.0.0.1", false),
        (Deny, &["0.0.0.0/0"], "2001:db8::1", true),
        // The ends of the address spaces.
        (Allow, &["255.255.255.255"], "255.255.255.255", true),
        (Allow, &["255.255.255.255"], "255.255.255.254", false),
        (Allow, &["0.0.0.0"], "0.0.0.0", true),
        (Allow, &["0.0.0.0"], "0.0.0.1", false),
        (
            Allow,
            &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"],
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            true,
        ),
        (
            Allow,
            &["ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"],
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffef",
            false,
        ),
        // Overlapping, nested, duplicate and adjacent ranges.
        (
            Allow,
            &["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3"],
            "10.1.2.4",
            true,
        ),
        (Allow, &["10.1.0.0/16", "10.0.0.0/8"], "10.200.0.1", true),
        (
            Allow,
            &["10.0.0.0/9", "10.128.0.0/9"],
            "10.127.255.255",
            true,
        ),
        (Allow, &["10.0.0.0/9", "10.128.0.0/9"], "10.128.0.0", true),
        (Allow, &["10.0.0.0/9", "10.128.0.0/9"], "11.0.0.0", false),
        (Allow, &["192.0.2.7", "192.0.2.7"], "192.0.2.7", true),
        (Allow, &["192.0.2.1", "192.0.2.3"], "192.0.2.2", false),
        (Deny, &["10.0.0.0/8", "10.1.0.0/16"], "10.1.0.1", false),
        // IPv4-mapped IPv6 clients (a dual-stack listener) match IPv4 entries.
        (Allow, &["10.0.0.0/8"], "::ffff:10.1.2.3", true),
        (Allow, &["10.0.0.0/8"], "::ffff:11.1.2.3", false),
        (Deny, &["127.0.0.1"], "::ffff:127.0.0.1", false),
        (Allow, &["::ffff:10.0.0.0/104"], "10.9.9.9", true),
        (Allow, &["::ffff:10.0.0.0/104"], "::ffff:10.9.9.9", true),
        // ... but an IPv4-compatible or NAT64 address is IPv6.
        (Allow, &["10.0.0.0/8"], "::10.1.2.3", false),
        (Allow, &["10.0.0.0/8"], "64:ff9b::10.1.2.3", false),
        (Allow, &["::/96"], "::10.1.2.3", true),
        (Allow, &["::fffe:0:0/95"], "::ffff:10.1.2.3", false),
        // Zone-less IPv6: link-local addresses match by address alone.
        (Allow, &["fe80::/10"], "fe80::1", true),
        (Deny, &["fe80::/10"], "fe80::1", false),
    ];
    for (mode, entries, client, want) in cases {
        let c = control(*mode, entries);
        let ip: IpAddr = client.parse().unwrap();
        assert_eq!(c.admits(ip), *want, "{mode:?} {entries:?} {client}");
        assert_eq!(
            check(Some(&c), ip).is_ok(),
            *want,
            "{mode:?} {entries:?} {client}"
        );
    }
}

#[test]
fn ranges_are_merged_when_they_overlap_or_touch() {
    // entries → (IPv4 ranges, IPv6 ranges) after compiling
    let cases: &[(&[&str], (usize, usize))] = &[
        (&["10.0.0.0/8"], (1, 0)),
        (
            &["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "10.0.0.0/8"],
            (1, 0),
        ),
        (&["10.0.0.0/9", "10.128.0.0/9"], (1, 0)),
        (&["192.0.2.1", "192.0.2.2", "192.0.2.3"], (1, 0)),
        (&["192.0.2.1", "192.0.2.3"], (2, 0)),
        (&["0.0.0.0/0", "10.0.0.0/8", "255.255.255.255"], (1, 0)),
        (&["255.255.255.255", "255.255.255.254"], (1, 0)),
        (
            &[
                "::/0",
                "2001:db8::/32",
                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            ],
            (0, 1),
        ),
        (&["2001:db8::/32", "2001:db9::/32", "2001:dba::/32"], (0, 1)),
        (
            &["10.0.0.0/8", "2001:db8::/32", "::ffff:10.0.0.0/104"],
            (1, 1),
        ),
    ];
    for (entries, want) in cases {
        assert_eq!(
            control(IpMode::Allow, entries).ranges(),
            *want,
            "{entries:?}"
        );
    }
}

/// The binary search over merged ranges agrees with a plain scan of the entries, over
/// pseudo-random lists and probes near their edges.
#[test]
fn binary_search_agrees_with_a_scan() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200 {
        let nets: Vec<IpNet> = (0..(next() % 12))
            .map(|_| {
                let prefix = 16 + (next() % 17) as u8;
                // Few distinct high bits, so that ranges often overlap and nest.
                let addr = (next() as u32 & 0x0003_ffff) | 0x0a00_0000;
                let addr = IpAddr::V4(Ipv4Addr::from(addr & mask32(prefix)));
                IpNet { addr, prefix }
            })
            .collect();
        let c = IpControl::new(IpMode::Allow, &nets);
        for _ in 0..200 {
            let probe = match nets.get((next() % 16) as usize) {
                // An edge of a listed range, or next to one.
                Some(n) => {
                    let IpAddr::V4(a) = n.addr else {
                        unreachable!()
                    };
                    let start = u32::from(a);
                    let end = start | !mask32(n.prefix);
                    [start.wrapping_sub(1), start, end, end.wrapping_add(1)][(next() % 4) as usize]
                }
                None => (next() as u32 & 0x0003_ffff) | 0x0a00_0000,
            };
            let scan = nets.iter().any(|n| {
                let IpAddr::V4(a) = n.addr else {
                    unreachable!()
                };
                probe & mask32(n.prefix) == u32::from(a)
            });
            let ip = IpAddr::V4(Ipv4Addr::from(probe));
            assert_eq!(c.contains(ip), scan, "{ip} in {nets:?}");
        }
    }
}

#[test]
fn the_403_names_the_client_in_canonical_form() {
    let c = control(IpMode::Deny, &["0.0.0.0/0", "::/0"]);
    // client → message
    let cases = [
        ("192.0.2.7", "client ip 192.0.2.7 is not allowed"),
        ("::ffff:192.0.2.7", "client ip 192.0.2.7 is not allowed"),
        (
            "2001:DB8:0:0:0:0:0:1",
            "client ip 2001:db8::1 is not allowed",
        ),
        ("::1", "client ip ::1 is not allowed"),
    ];
    for (client, message) in cases {
        let e = check(Some(&c), client.parse().unwrap()).unwrap_err();
        assert_eq!((e.status(), e.message()), (403, message.to_string()));
        assert_eq!(e.body(), format!("{{\"message\":\"{message}\"}}"));
        assert!(!e.closes_connection());
    }
    // No IP control: everyone.
    assert!(check(None, "192.0.2.7".parse().unwrap()).is_ok());
}

/// Where the stage sits in `decide` (SPEC §8): after route and protocol, before the
/// WebSocket check, auth and params; a preflight is judged too.
#[test]
fn the_stage_runs_after_protocol_and_before_everything_else() {
    const CONFIG: &str = r#"
[server]
listen_https = ["127.0.0.1:0"]
[[certificates]]
hosts = ["*.example.com"]
cert = "conf/tls/example.crt"
key = "conf/tls/example.key"
[[upstreams]]
name = "u"
url = "http://127.0.0.1:9000"
[[services]]
name = "s"
[services.ip_control]
mode = "deny"
ips = ["203.0.113.0/24"]
[[services.apis]]
name = "open"
path = "=/open"
[services.apis.ip_control]
mode = "allow"
ips = ["0.0.0.0/0", "::/0"]
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "signed"
path = "=/signed"
auth = "key_pair"
cors = true
[[services.apis.params]]
name = "q"
location = "query"
required = true
[services.apis.backend]
upstream = "u"
path = "/b"
[[services.apis]]
name = "chat"
path = "=/chat"
frontend_type = "ws"
[services.apis.backend]
upstream = "u"
path = "/ws"
[[services]]
name = "secure"
hosts = ["secure.example.com"]
protocol = "https"
[services.ip_control]
mode = "allow"
ips = ["192.0.2.0/24"]
[[services.apis]]
name = "any"
path = "/"
method = "ANY"
[services.apis.backend]
type = "mock"
[[key_pairs]]
secret_id = "AKIDunit01"
secret_key = "unit-secret-key-01"
services = ["s"]
"#;
    let cfg = load_str(CONFIG, Path::new("t.toml")).unwrap();
    let auth = AuthState::new(&cfg);
    let counters = crate::traffic::Counters::standalone(&cfg);
    let preflight = "OPTIONS /signed HTTP/1.1\r\nHost: h\r\nOrigin: https://a\r\nAccess-Control-Request-Method: GET\r\n\r\n";
    // (request, https, client, matched API, outcome)
    let cases: &[(&str, bool, &str, Option<&str>, &str)] = &[
        // The API's own list replaces the service's deny list.
        (
            "GET /open HTTP/1.1\r\nHost: h\r\n\r\n",
            false,
            "203.0.113.5",
            Some("open"),
            "mock 200",
        ),
        // The service's list: refused before auth (no signature) and params (no q).
        (
            "GET /signed HTTP/1.1\r\nHost: h\r\n\r\n",
            false,
            "203.0.113.5",
            Some("signed"),
            "403 client ip 203.0.113.5 is not allowed",
        ),
        (
            "GET /signed HTTP/1.1\r\nHost: h\r\n\r\n",
            false,
            "::ffff:203.0.113.5",
            Some("signed"),
            "403 client ip 203.0.113.5 is not allowed",
        ),
        (
            "GET /signed HTTP/1.1\r\nHost: h\r\n\r\n",
            false,
            "198.51.100.1",
            Some("signed"),
            "401 HMAC authorization header is missing",
        ),
        // ... and before the WebSocket check (this is no handshake).
        (
            "GET /chat HTTP/1.1\r\nHost: h\r\n\r\n",
            false,
            "203.0.113.5",
            Some("chat"),
            "403 client ip 203.0.113.5 is not allowed",
        ),
        (
            "GET /chat HTTP/1.1\r\nHost: h\r\n\r\n",
            false,
            "198.51.100.1",
            Some("chat"),
            "400",
        ),
        // A preflight is judged too, and answered when admitted.
        (
            preflight,
            false,
            "203.0.113.5",
            Some("signed"),
            "403 client ip 203.0.113.5 is not allowed",
        ),
        (
            preflight,
            false,
            "198.51.100.1",
            Some("signed"),
            "preflight",
        ),
        // No route: 404 whoever asks.
        (
            "GET /nope HTTP/1.1\r\nHost: h\r\n\r\n",
            false,
            "203.0.113.5",
            None,
            "404",
        ),
        // The protocol comes first.
        (
            "GET /x HTTP/1.1\r\nHost: secure.example.com\r\n\r\n",
            false,
            "198.51.100.1",
            Some("any"),
            "426",
        ),
        (
            "GET /x HTTP/1.1\r\nHost: secure.example.com\r\n\r\n",
            true,
            "198.51.100.1",
            Some("any"),
            "403 client ip 198.51.100.1 is not allowed",
        ),
        (
            "GET /x HTTP/1.1\r\nHost: secure.example.com\r\n\r\n",
            true,
            "192.0.2.1",
            Some("any"),
            "mock 200",
        ),
    ];
    for (raw, https, client, want_api, want) in cases {
        let head = parse_complete(raw.as_bytes());
        let inbound = Inbound {
            buf: raw.as_bytes(),
            head: &head,
            https: *https,
            client: client.parse().unwrap(),
            now: UNIX_EPOCH,
            mono: std::time::Instant::now(),
        };
        let (mut path, mut backend_path, mut params) =
            (String::new(), String::new(), ParamValues::default());
        let scratch = Scratch {
            path: &mut path,
            backend_path: &mut backend_path,
            params: &mut params,
        };
        let d = decide(&cfg, &auth, &counters, &inbound, scratch);
        let api = d
            .matched
            .map(|m| cfg.services[m.service].apis[m.api].name.as_str());
        let got = match d.action {
            Action::Local(Local::Error(e)) => format!("{} {}", e.status(), e.message()),
            Action::Local(Local::Mock { status, .. }) => format!("mock {status}"),
            Action::Local(Local::Preflight(_)) => "preflight".into(),
            Action::Forward(_) | Action::Tunnel(_) => "forward".into(),
            Action::Pending => "pending".into(),
        };
        assert_eq!(api, *want_api, "{raw:?} from {client}");
        assert!(got.starts_with(want), "{raw:?} from {client}: {got}");
    }
}

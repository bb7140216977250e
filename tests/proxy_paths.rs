//! `server.path_normalization` through the real binary (SPEC §2.2): what a recording backend
//! receives for traversal attempts hidden in percent-encoding, backslashes and encoded
//! slashes, under "safe" (the default) and "none"; and `ringway route` judging the same way.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

/// An API published under `/raw` (to `/raw-backend`) next to an exact `/admin` (to
/// `/admin-backend`); the backend answers with the target it received.
fn config(backend: std::net::SocketAddr, normalization: &str) -> String {
    let api = |name: &str, path: &str, backend_path: &str| {
        format!(
            "[[services.apis]]\nname = \"{name}\"\npath = \"{path}\"\nmethod = \"ANY\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"{backend_path}\"\n"
        )
    };
    format!(
        "{}{}[[services]]\nname = \"s\"\n{}{}",
        server_section(1, normalization),
        upstream_section("up", backend, ""),
        api("raw", "/raw", "/raw-backend"),
        api("admin", "=/admin", "/admin-backend"),
    )
}

/// What the client gets for `target`: the backend's target (200) or the gateway's error.
enum Want {
    Forwarded(&'static str),
    /// A 400 that closes the connection, with this message.
    Refused(&'static str),
    NotFound(&'static str),
}

const ENCODED_SLASH: &str = "request path contains an encoded slash or a backslash";

fn run(normalization: &str, cases: &[(&str, Want)]) {
    let backend = Backend::start(|r| Reply::ok(&r.target));
    let gw = Gateway::start(&config(backend.addr(), normalization));
    let mut forwarded = 0;
    for (target, want) in cases {
        let mut c = gw.connect();
        let r = c.roundtrip(get(target));
        match want {
            Want::Forwarded(path) => {
                assert_eq!(
                    (r.status, r.body_text()),
                    (200, path.to_string()),
                    "{target}"
                );
                forwarded += 1;
                let got = backend.wait_requests(forwarded);
                assert_eq!(got[forwarded - 1].target, *path, "{target}");
            }
            Want::Refused(message) => {
                let got = r
                    .check_gateway_error(400)
                    .unwrap_or_else(|e| panic!("{target}: {e}"));
                assert_eq!(got, *message, "{target}");
                assert!(r.closes(), "{target}: {}", r.text());
                c.wait_closed(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("{target}: {e}"));
            }
            Want::NotFound(message) => {
                let got = r
                    .check_gateway_error(404)
                    .unwrap_or_else(|e| panic!("{target}: {e}"));
                assert_eq!(got, *message, "{target}");
            }
        }
    }
    // Nothing but the forwarded requests ever reached the backend.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(backend.requests().len(), forwarded, "{normalization}");
}

#[test]
fn safe_normalization_routes_and_forwards_the_normalized_path() {
    use Want::*;
    run(
        "",
        &[
            ("/raw/%2e%2e/admin", Forwarded("/admin-backend")),
            (
                "/raw/%2E%2E/admin?x=%2e%2e",
                Forwarded("/admin-backend?x=%2e%2e"),
            ),
            ("/raw/.%2e/admin", Forwarded("/admin-backend")),
            (
                "/raw/%2e%2e/nothing",
                NotFound("There is no api match uri[/nothing] host[example.test]"),
            ),
            (
                "/raw/%2e%2e/%2e%2e/admin",
                Refused("request path climbs above /"),
            ),
            ("/raw%2f..%2fadmin", Refused(ENCODED_SLASH)),
            ("/raw%2F..%2Fadmin", Refused(ENCODED_SLASH)),
            ("/raw/..\\..\\admin", Refused(ENCODED_SLASH)),
            ("/raw/..%5c..%5cadmin", Refused(ENCODED_SLASH)),
            ("/raw/%41b%2Dc/%2e/d", Forwarded("/raw-backend/Ab-c/d")),
            (
                "/raw/%252e%252e/admin",
                Forwarded("/raw-backend/%252e%252e/admin"),
            ),
            (
                "/raw/caf%C3%A9%20x",
                Forwarded("/raw-backend/caf%C3%A9%20x"),
            ),
            ("/r%61w/x", Forwarded("/raw-backend/x")),
        ],
    );
}

#[test]
fn none_forwards_percent_encoding_as_sent() {
    use Want::*;
    run(
        "path_normalization = \"none\"",
        &[
            ("/raw/%2e%2e/admin", Forwarded("/raw-backend/%2e%2e/admin")),
            (
                "/raw/%2e%2e/%2e%2e/admin",
                Forwarded("/raw-backend/%2e%2e/%2e%2e/admin"),
            ),
            ("/raw%2f..%2fadmin", Forwarded("/raw-backend%2f..%2fadmin")),
            (
                "/raw/..\\..\\admin",
                Forwarded("/raw-backend/..\\..\\admin"),
            ),
            ("/raw/../admin", Forwarded("/admin-backend")),
            ("/raw/../../admin", Refused("request path climbs above /")),
        ],
    );
}

/// `ringway route` normalizes as the gateway does, under either setting.
#[test]
fn route_judges_the_normalized_path() {
    let backend = Backend::ok();
    for (normalization, target, want) in [
        (
            "",
            "/raw/%2e%2e/admin",
            "{\"service\":\"s\",\"api\":\"admin\",\"tier\":\"exact\",\"params\":{},\"backend_path\":\"/admin-backend\"}",
        ),
        (
            "",
            "/raw%2f..%2fadmin",
            "{\"status\":400,\"message\":\"request path contains an encoded slash or a backslash\"}",
        ),
        (
            "",
            "/raw/..\\x",
            "{\"status\":400,\"message\":\"request path contains an encoded slash or a backslash\"}",
        ),
        (
            "path_normalization = \"none\"",
            "/raw/%2e%2e/admin",
            "{\"service\":\"s\",\"api\":\"raw\",\"tier\":\"prefix\",\"params\":{},\"backend_path\":\"/raw-backend/%2e%2e/admin\"}",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, config(backend.addr(), normalization)).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_ringway"))
            .args(["route", "--config"])
            .arg(&path)
            .arg(target)
            .output()
            .expect("run ringway");
        let got: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON line");
        let want: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(got, want, "{normalization:?} {target}");
    }
}

//! The `ringway` binary's `check`, `route` and `run` commands (SPEC §7), run as a process.

use std::process::{Command, Output};

fn ringway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run ringway")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_line(o: &Output) -> serde_json::Value {
    let out = stdout(o);
    assert_eq!(out.lines().count(), 1, "one JSON line, got {out:?}");
    serde_json::from_str(out.trim()).expect("valid JSON")
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let p = path.to_string_lossy().into_owned();
    (dir, p)
}

#[test]
fn check_prints_a_summary_and_exits_0() {
    let o = ringway(&["check", "--config", "conf/ringway.toml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = stdout(&o);
    // `conf/ringway.toml: ok: 2 services, 11 APIs, ...; listening ...`: whole counts, so
    // "1 upstreams" cannot be satisfied by "11 upstreams".
    let counts = s
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("conf/ringway.toml: ok: "))
        .and_then(|l| l.split_once(';'))
        .unwrap_or_else(|| panic!("no summary line in {s:?}"))
        .0;
    let counts: Vec<(&str, u32)> = counts
        .split(", ")
        .map(|c| {
            let (n, what) = c
                .split_once(' ')
                .unwrap_or_else(|| panic!("count {c:?} in {s:?}"));
            (
                what,
                n.parse().unwrap_or_else(|_| panic!("count {c:?} in {s:?}")),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("services", 2),
            ("APIs", 11),
            ("upstreams", 1),
            ("certificates", 1),
            ("key pairs", 1)
        ],
        "{s}"
    );
}

#[test]
fn check_uses_the_default_config() {
    let o = ringway(&["check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("conf/ringway.toml: ok"));
}

#[test]
fn check_prints_every_error_and_exits_1() {
    let (_d, path) = write_config(
        "[server]\nworkers = 5000\n[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"a\"\npath = \"=x\"\n[services.apis.backend]\nupstream = \"nope\"\npath = \"/b\"\n",
    );
    let o = ringway(&["check", "--config", &path]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    for want in [
        format!("{path}:2: server.workers: 5000 is out of range"),
        format!("{path}:7: services[0].apis[0].path: path after `=` must start with `/`"),
        format!(
            "{path}:9: services[0].apis[0].backend.upstream: no [[upstreams]] entry is named \"nope\""
        ),
        format!("{path}: 3 error(s)"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(stdout(&o).is_empty());
}

#[test]
fn check_reports_a_missing_file() {
    let o = ringway(&["check", "--config", "/nonexistent/ringway.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/ringway.toml: cannot read the configuration"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn route_prints_the_matched_api() {
    let o = ringway(&[
        "route",
        "--config",
        "conf/ringway.toml",
        "/user/42?verbose=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json_line(&o),
        serde_json::json!({"service":"demo","api":"get-user","tier":"regex","params":{"userid":"42"},"backend_path":"/internal/user/42"})
    );
    let o = ringway(&[
        "route",
        "--config",
        "conf/ringway.toml",
        "--method",
        "POST",
        "/orders/7/items",
    ]);
    assert_eq!(json_line(&o)["backend_path"], "/api/orders/7/items");
    assert_eq!(json_line(&o)["tier"], "prefix");
}

#[test]
fn route_uses_the_host() {
    let o = ringway(&[
        "route",
        "--config",
        "conf/ringway.toml",
        "--host",
        "API.example.com:8443",
        "/v1/orders/9",
    ]);
    assert!(o.status.success());
    let v = json_line(&o);
    assert_eq!(
        (v["service"].as_str(), v["api"].as_str()),
        (Some("example-api"), Some("get-order"))
    );
    assert_eq!(v["params"]["order_id"], "9");
    // Without --host only host-less services can match.
    let o = ringway(&["route", "--config", "conf/ringway.toml", "/v1/orders/9"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn route_misses_are_404_json_with_exit_1() {
    let o = ringway(&["route", "--config", "conf/ringway.toml", "/nothing/here"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        json_line(&o),
        serde_json::json!({"status":404,"message":"There is no api match uri[/nothing/here] host[]"})
    );
    let o = ringway(&[
        "route",
        "--config",
        "conf/ringway.toml",
        "--method",
        "PUT",
        "--host",
        "h",
        "/hello",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        json_line(&o),
        serde_json::json!({"status":404,"message":"There is no api match method[PUT] uri[/hello] host[h]"})
    );
}

#[test]
fn route_bad_targets_are_400() {
    for target in ["/a/../../etc/passwd", "*", "example.com:443"] {
        let o = ringway(&["route", "--config", "conf/ringway.toml", target]);
        assert_eq!(o.status.code(), Some(1), "{target}");
        assert_eq!(json_line(&o)["status"], 400, "{target}");
    }
}

#[test]
fn route_with_a_broken_config_prints_the_errors() {
    let (_d, path) = write_config("[server\n");
    let o = ringway(&["route", "--config", &path, "/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("{path}:1: TOML syntax")),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn run_refuses_a_broken_config() {
    let (_d, path) = write_config("[[services]]\nname = 1\n");
    let o = ringway(&["run", "--config", &path]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("services[0].name"), "{}", stderr(&o));
}

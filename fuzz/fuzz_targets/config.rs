//! `ringway::config::load_str` on arbitrary text: it must never panic, an `Err` must hold at
//! least one error and render, and an `Ok` config must summarise. For configurations that
//! load, a few fixed requests also go through both route matchers, which must agree, and the
//! API docs are generated (every JSON document must parse).
//!
//! Loading reads the files a configuration names (`cert`, `key`, `ca`, `public_key_file`).
//! Those reads are bounded in size, but `/dev/stdin`, a terminal or a FIFO could still block
//! and `/dev/zero` would cost a megabyte per execution, so inputs that name an absolute path
//! or a `..` path there are skipped. Relative paths are kept: run from the crate root, the
//! seed `conf/ringway.toml` reaches the demo certificate under `conf/tls/`.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

const FILE_KEYS: [&str; 4] = ["cert", "key", "ca", "public_key_file"];

fn names_unsafe_file(v: &toml::Value, under_file_key: bool) -> bool {
    match v {
        toml::Value::String(s) => {
            under_file_key && (s.starts_with('/') || s.split(['/', '\\']).any(|c| c == ".."))
        }
        toml::Value::Array(a) => a.iter().any(|v| names_unsafe_file(v, under_file_key)),
        toml::Value::Table(t) => t
            .iter()
            .any(|(k, v)| names_unsafe_file(v, FILE_KEYS.contains(&k.as_str()))),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(table) = toml::from_str::<toml::Table>(&text) {
        if names_unsafe_file(&toml::Value::Table(table), false) {
            return;
        }
    }
    match ringway::config::load_str(&text, Path::new("fuzz.toml")) {
        Ok(cfg) => {
            // The generated docs (OpenAPI and HTML) of any loadable configuration.
            for (name, text) in ringway::docs::files(&cfg, "/docs/") {
                if name.ends_with(".json") {
                    assert!(serde_json::from_str::<serde_json::Value>(&text).is_ok(), "{name}");
                }
            }
            let _ = cfg.summary();
            for host in [None, Some("api.example.com"), Some("x.example.com:443")] {
                for method in ["GET", "POST", "PUT"] {
                    for path in [
                        "/",
                        "/hello",
                        "/user/42",
                        "/static/a",
                        "/v1/status",
                        "/a.PNG",
                    ] {
                        let fast = cfg.routes.route(host, method, path);
                        let slow = cfg.routes.route_linear(host, method, path);
                        let key = |r: &Result<ringway::router::RouteMatch<'_>, _>| {
                            r.as_ref()
                                .map(|m| (m.service, m.api, m.tier, m.prefix_len))
                                .map_err(|e| *e)
                        };
                        assert_eq!(
                            key(&fast),
                            key(&slow),
                            "trie vs linear differ for {method} {host:?} {path}"
                        );
                    }
                }
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "load_str returned Err with no error");
            let _ = errors.to_string();
        }
    }
});

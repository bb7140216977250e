//! A browser over HTTP/2 (SPEC §10): headless Chromium loads a page from the gateway over
//! TLS, and the page's script fetches an API behind it. The page and the API answer come
//! back into the DOM Chromium dumps, and the gateway's access log says both requests came
//! over `h2`. Skipped with a note when Chromium is not installed.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::pki::Pki;
use support::*;

const HOST: &str = "api.example.test";

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

const PAGE: &str = "<!doctype html><html><body><p id=\"out\">waiting</p><script>\
fetch('/api/greeting').then(r => r.text()).then(t => { document.getElementById('out').textContent = 'api said: ' + t; });\
</script></body></html>";

#[test]
fn chromium_loads_a_page_and_an_api_over_h2() {
    let Some(browser) = chromium() else {
        eprintln!("skipped: chromium is not installed");
        return;
    };
    let backend = Backend::start(|_| Reply::ok("hello from the backend"));
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let toml = format!(
        "{}{}{}[[services]]\nname = \"app\"\nhosts = [\"{HOST}\"]\n\
         [[services.apis]]\nname = \"page\"\npath = \"=/\"\n[services.apis.backend]\ntype = \"mock\"\nmock_content_type = \"text/html\"\nmock_body = '''{PAGE}'''\n\
         [[services.apis]]\nname = \"api\"\npath = \"/api\"\n[services.apis.backend]\nupstream = \"up\"\npath = \"/v1\"\n",
        server_section(1, "listen_https = [\"127.0.0.1:0\"]").replace(
            "access_log = \"off\"",
            &format!("access_log = {:?}", log.display().to_string())
        ),
        upstream_section("up", backend.addr(), ""),
        pki.certificates_section(),
    );
    let mut gw = Gateway::start(&toml);
    let port = gw.https_addr().port();
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--host-resolver-rules=MAP {HOST} 127.0.0.1"))
        .arg(format!("https://{HOST}:{port}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium took more than 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    let err_tail: Vec<&str> = err.lines().rev().take(5).collect();
    assert!(
        dom.contains("api said: hello from the backend"),
        "the page's fetch did not come back: {dom}\nchromium: {err_tail:?}"
    );
    // The access log (flushed at exit) has both requests, over h2.
    assert!(gw.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for api in ["page", "api"] {
        let l = lines
            .iter()
            .find(|l| l["api"] == api)
            .unwrap_or_else(|| panic!("no {api} line in {text}"));
        assert_eq!(l["protocol"], "h2", "{l}");
        assert_eq!(l["status"], 200, "{l}");
    }
}

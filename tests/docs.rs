//! `ringway docs` run as a process on the shipped configuration and on a richer one: the
//! files it writes, what they say, and two outside checks when the tools are installed:
//! every OpenAPI document must pass `openapi-spec-validator` (the test fails otherwise, and
//! only skips, with a note, when the command is absent), and every HTML page is rendered by
//! headless Chromium (`chromium` or `chromium-browser`) into a PNG that must be much larger
//! than the PNG of a blank page.

mod support;

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn ringway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .current_dir(MANIFEST)
        .output()
        .expect("run ringway")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&read(p)).unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()))
}

/// Runs `ringway docs` and returns the files it says it wrote (they must all exist).
fn docs(config: &str, out: &Path) -> Vec<PathBuf> {
    let o = ringway(&["docs", "--config", config, "--out", &out.to_string_lossy()]);
    assert!(
        o.status.success(),
        "ringway docs failed: {}",
        text(&o.stderr)
    );
    let files: Vec<PathBuf> = text(&o.stdout).lines().map(PathBuf::from).collect();
    for f in &files {
        assert!(f.is_file(), "{} was reported but not written", f.display());
    }
    files
}

// ---------------------------------------------------------------------------------------
// Outside checks

/// `openapi-spec-validator` on each file: panics when one fails; `false` when the command is
/// not installed.
fn validate_openapi(files: &[PathBuf]) -> bool {
    for f in files {
        let o = match Command::new("openapi-spec-validator").arg(f).output() {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                eprintln!(
                    "note: openapi-spec-validator is not installed; OpenAPI documents not validated"
                );
                return false;
            }
            Err(e) => panic!("cannot run openapi-spec-validator: {e}"),
            Ok(o) => o,
        };
        assert!(
            o.status.success(),
            "openapi-spec-validator rejects {}:\n{}{}",
            f.display(),
            text(&o.stdout),
            text(&o.stderr)
        );
    }
    true
}

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

const SHOT_WIDTH: u32 = 1280;
const SHOT_HEIGHT: u32 = 2000;

/// Renders `html` into `png` with headless Chromium; returns the PNG's size in bytes after
/// checking its signature and dimensions.
fn screenshot(bin: &str, html: &Path, png: &Path) -> u64 {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={SHOT_WIDTH},{SHOT_HEIGHT}"),
            &format!("file://{}", html.display()),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            assert!(status.success(), "chromium failed on {}", html.display());
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took too long on {}", html.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let bytes =
        std::fs::read(png).unwrap_or_else(|e| panic!("no screenshot {}: {e}", png.display()));
    assert_eq!(
        &bytes[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        png.display()
    );
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(
        (be(16), be(20)),
        (SHOT_WIDTH, SHOT_HEIGHT),
        "{}",
        png.display()
    );
    bytes.len() as u64
}

/// Screenshots of every page must carry far more than a blank page's PNG does.
fn render_pages(pages: &[PathBuf], dir: &Path) -> bool {
    let Some(bin) = chromium() else {
        eprintln!("note: chromium is not installed; HTML pages not rendered");
        return false;
    };
    let blank = dir.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_size = screenshot(bin, &blank, &dir.join("blank.png"));
    for page in pages {
        let png = page.with_extension("png");
        let size = screenshot(bin, page, &png);
        assert!(
            size > 4 * blank_size,
            "{} renders to {size} bytes, hardly more than a blank page ({blank_size})",
            page.display()
        );
    }
    true
}

// ---------------------------------------------------------------------------------------
// Checks every output must pass

/// The index lists every service with links to files that exist; every API of the index
/// is an operation of its service's OpenAPI document, and has a section in its page.
fn check_consistency(out: &Path) {
    let index = json(&out.join("index.json"));
    let index_html = read(&out.join("index.html"));
    let services = index["services"].as_array().expect("services");
    assert!(!services.is_empty());
    for s in services {
        let html = s["html"].as_str().unwrap();
        let openapi = s["openapi"].as_str().unwrap();
        assert!(out.join(html).is_file(), "{html}");
        assert!(out.join(openapi).is_file(), "{openapi}");
        assert!(index_html.contains(&format!("href=\"{html}\"")), "{html}");
        assert!(
            index_html.contains(&format!("href=\"{openapi}\"")),
            "{openapi}"
        );
        let doc = json(&out.join(openapi));
        assert_eq!(doc["openapi"], "3.0.3");
        assert_eq!(doc["info"]["title"], s["name"]);
        let page = read(&out.join(html));
        let ops: Vec<&Value> = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .collect();
        for api in s["apis"].as_array().unwrap() {
            let found = ops
                .iter()
                .filter(|op| op["summary"] == api["name"] && op["x-ringway-path"] == api["path"])
                .count();
            // An ANY API is one operation per method no other API of its path claims.
            let ok = if api["method"] == "ANY" {
                found >= 1
            } else {
                found == 1
            };
            assert!(ok, "{found} operations for {api}");
            assert!(
                page.contains(&format!(
                    "<strong>{}</strong>",
                    esc(api["name"].as_str().unwrap())
                )),
                "{api}"
            );
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn openapi_files(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| {
            f.extension().is_some_and(|e| e == "json")
                && f.parent().is_some_and(|p| p.ends_with("openapi"))
        })
        .cloned()
        .collect()
}

fn html_files(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "html"))
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------

#[test]
fn shipped_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site");
    let files = docs("conf/ringway.toml", &out);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&out).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "index.html",
            "index.json",
            "demo.html",
            "openapi/demo.json",
            "example-api.html",
            "openapi/example-api.json"
        ]
    );
    check_consistency(&out);
    let demo = json(&out.join("openapi/demo.json"));
    let get_user = &demo["paths"]["/user/{userid}"]["get"];
    assert_eq!(get_user["parameters"][0]["example"], 42);
    assert_eq!(
        get_user["responses"]["200"]["content"]["application/json"]["example"]["name"],
        "Ada"
    );
    assert_eq!(
        get_user["x-ringway-error-codes"][0]["message"],
        "UserNotFound"
    );
    assert_eq!(
        demo["paths"]["/v{version}/status"]["get"]["x-ringway-match"],
        "regex"
    );
    assert_eq!(
        demo["paths"]["/chat"]["get"]["x-ringway-websocket"]["upgrade"],
        "websocket"
    );
    let example = json(&out.join("openapi/example-api.json"));
    assert_eq!(example["servers"][0]["url"], "https://api.example.com:8443");
    assert!(!read(&out.join("demo.html")).contains("demo-secret-key-0001"));
    validate_openapi(&openapi_files(&files));
    render_pages(&html_files(&files), dir.path());
}

fn rich_config(dir: &Path) -> String {
    let jwk = format!("{MANIFEST}/conf/demo/jwt-demo.jwk.json");
    let text = format!(
        r#"
[server]
listen_http = ["127.0.0.1:18080"]
admin_listen = "off"
access_log = "off"

[[upstreams]]
name = "billing-clb"
url = "http://10.9.8.7:8000"

[[services]]
name = "billing v2/eu"
description = "Invoices & payments <beta>"
hosts = ["billing.example.com", "*.billing.example.net"]
protocol = "http"

[[services.apis]]
name = "get-invoice"
path = "/invoices/{{invoice_id}}"
method = "GET"
auth = "key_pair"
cors = true
description = "Read one invoice <b>now</b>"
[[services.apis.params]]
name = "invoice_id"
location = "path"
data_type = "long"
sample = "9001"
description = "Invoice number"
[[services.apis.params]]
name = "currency"
location = "query"
default = "EUR"
description = "ISO 4217 code"
[[services.apis.params]]
name = "X-Trace"
location = "header"
required = true
sample = "abc-123"
description = "Trace id"
backend_name = "trace"
backend_location = "query"
[[services.apis.params]]
name = "ratio"
location = "query"
data_type = "double"
sample = "0.25"
[[services.apis.params]]
name = "draft"
location = "query"
data_type = "boolean"
default = false
[services.apis.backend]
upstream = "billing-clb"
path = "/internal/invoices/{{invoice_id}}"
timeout_ms = 3000
[services.apis.response]
type = "json"
success_sample = '{{"id":9001,"total":12.5}}'
failure_sample = '{{"error":"InvoiceNotFound"}}'
[[services.apis.response.error_codes]]
code = 2001
message = "InvoiceNotFound"
description = "No invoice has this number"
[[services.apis.response.error_codes]]
code = 2002
message = "InvoiceLocked"
description = "The invoice is <closed>"

[[services.apis]]
name = "create-invoice"
path = "=/invoices"
method = "POST"
auth = "key_pair"
[services.apis.backend]
upstream = "billing-clb"
path = "/internal/invoices"

[[services.apis]]
name = "invoices-any"
path = "^~/invoices"
method = "ANY"
[services.apis.backend]
type = "mock"
mock_status = 405
mock_body = '{{"message":"use GET or POST"}}'

[[services.apis]]
name = "legacy"
path = '~* ^/legacy/.*\.xml$'
[services.apis.backend]
type = "mock"
mock_body = "<ok/>"
mock_content_type = "application/xml"
[services.apis.response]
type = "xml"
success_sample = "<ok/>"

[[services]]
name = "index"

[[services.apis]]
name = "stream"
frontend_type = "ws"
path = "/stream/{{room}}"
[[services.apis.params]]
name = "room"
location = "path"
sample = "lobby"
[services.apis.backend]
upstream = "billing-clb"
path = "/ws/{{room}}"

[[services.apis]]
name = "me"
path = "=/me"
auth = "oauth2"
[services.apis.backend]
type = "mock"
mock_body = '{{"me":true}}'

# Two APIs on one OpenAPI key and method, and literal braces in a regex.
[[services.apis]]
name = "dup exact"
path = "=/dup"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "dup prefix"
path = "/dup"
[services.apis.backend]
type = "mock"
[[services.apis]]
name = "braces"
path = '~ ^/x\{{(?P<id>[0-9]+)\}}$'
[[services.apis.params]]
name = "id"
location = "path"
data_type = "int"
[services.apis.backend]
type = "mock"

[services.oauth2]
public_key_file = "{jwk}"
token_location = "cookie"
token_name = "session"

[[key_pairs]]
secret_id = "AKIDrich0001"
secret_key = "rich-secret-never-shown"
services = ["billing v2/eu"]
"#
    );
    let path = dir.join("rich.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn rich_config_with_params_samples_and_error_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = rich_config(dir.path());
    let out = dir.path().join("out");
    let files = docs(&config, &out);
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&out).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "index.html",
            "index.json",
            "billing_v2_eu.html",
            "openapi/billing_v2_eu.json",
            "index-2.html",
            "openapi/index-2.json"
        ]
    );
    check_consistency(&out);

    let billing = json(&out.join("openapi/billing_v2_eu.json"));
    assert_eq!(
        billing["servers"],
        serde_json::json!([
            { "url": "http://billing.example.com:18080" },
            { "url": "http://{subdomain}.billing.example.net:18080",
              "variables": { "subdomain": { "default": "www", "description": "any one DNS label" } } },
        ])
    );
    let get = &billing["paths"]["/invoices/{invoice_id}"]["get"];
    let params = get["parameters"].as_array().unwrap();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no param {name}"))
    };
    assert_eq!(param("invoice_id")["in"], "path");
    assert_eq!(param("invoice_id")["required"], true);
    assert_eq!(param("invoice_id")["schema"]["format"], "int64");
    assert_eq!(param("invoice_id")["example"], 9001);
    assert_eq!(param("invoice_id")["description"], "Invoice number");
    assert_eq!(param("currency")["schema"]["default"], "EUR");
    assert_eq!(param("X-Trace")["in"], "header");
    assert_eq!(param("X-Trace")["required"], true);
    assert_eq!(param("X-Trace")["x-ringway-backend"]["name"], "trace");
    assert_eq!(param("ratio")["example"], 0.25);
    assert_eq!(param("draft")["schema"]["default"], false);
    assert_eq!(get["security"][0]["keyPair"], serde_json::json!([]));
    assert_eq!(get["x-ringway-match"], "regex");
    let r = &get["responses"];
    assert_eq!(
        r["200"]["content"]["application/json"]["example"]["total"],
        12.5
    );
    assert_eq!(
        r["default"]["content"]["application/json"]["example"]["error"],
        "InvoiceNotFound"
    );
    let d = r["default"]["description"].as_str().unwrap();
    assert!(
        d.contains("| 2001 | InvoiceNotFound |") && d.contains("| 2002 | InvoiceLocked |"),
        "{d}"
    );
    for status in ["400", "401", "403", "426", "502", "504"] {
        assert!(r[status].is_object(), "no {status}");
    }
    assert_eq!(
        r["403"]["content"]["application/json"]["example"]["message"],
        "header X-Trace is required"
    );
    let kp = &billing["components"]["securitySchemes"]["keyPair"];
    assert_eq!(
        (kp["type"].as_str(), kp["in"].as_str(), kp["name"].as_str()),
        (Some("apiKey"), Some("header"), Some("Authorization"))
    );

    let invoices = billing["paths"]["/invoices"].as_object().unwrap();
    assert_eq!(invoices["post"]["operationId"], "create-invoice");
    assert_eq!(invoices["get"]["operationId"], "invoices-any.get");
    assert_eq!(invoices["get"]["x-ringway-method"], "ANY");
    assert_eq!(
        invoices["get"]["responses"]["405"]["content"]["application/json"]["example"]["message"],
        "use GET or POST"
    );
    let legacy = &billing["paths"]["/legacy/{path}"]["get"];
    assert_eq!(
        legacy["responses"]["200"]["content"]["application/xml"]["example"],
        "<ok/>"
    );

    let other = json(&out.join("openapi/index-2.json"));
    assert_eq!(
        other["paths"]["/stream/{room}"]["get"]["x-ringway-websocket"]["upgrade"],
        "websocket"
    );
    assert!(other["paths"]["/stream/{room}"]["get"]["responses"]["101"].is_object());
    assert_eq!(
        other["components"]["securitySchemes"]["oauth2Jwt"]["in"],
        "cookie"
    );
    assert_eq!(
        other["components"]["securitySchemes"]["oauth2Jwt"]["name"],
        "session"
    );

    assert_eq!(other["paths"]["/dup"]["get"]["operationId"], "dup exact");
    assert_eq!(
        other["paths"]["/dup#dup%20prefix"]["get"]["x-ringway-path"],
        "/dup"
    );
    assert_eq!(
        other["paths"]["/x%7B{id}%7D"]["get"]["parameters"][0]["name"],
        "id"
    );

    let page = read(&out.join("billing_v2_eu.html"));
    for want in [
        "<h1>billing v2/eu</h1>",
        "Invoices &amp; payments &lt;beta&gt;",
        "Read one invoice &lt;b&gt;now&lt;/b&gt;",
        "<code>2002</code></td><td><code>InvoiceLocked</code></td><td>The invoice is &lt;closed&gt;</td>",
        "<tr><td><code>X-Trace</code></td><td>header</td><td>string</td><td><span class=\"req\">yes</span></td>",
    ] {
        assert!(page.contains(want), "page lacks {want:?}");
    }
    assert!(
        page.contains("curl -i &#39;http://billing.example.com:18080/invoices/9001?ratio=0.25&#39; \\\n  -H &#39;X-Trace: abc-123&#39;"),
        "curl sample"
    );
    for f in &files {
        let t = read(f);
        for secret in ["rich-secret-never-shown", "10.9.8.7"] {
            assert!(!t.contains(secret), "{secret:?} in {}", f.display());
        }
        if f.extension().is_some_and(|e| e == "html") {
            for raw in ["<b>now", "<closed>", "<beta>"] {
                assert!(!t.contains(raw), "unescaped {raw:?} in {}", f.display());
            }
        }
    }
    validate_openapi(&openapi_files(&files));
    render_pages(&html_files(&files), dir.path());
}

#[test]
fn validator_catches_a_broken_document() {
    // The validation above is only worth something if the validator says no to a bad
    // document: a path template whose parameter is not declared.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{"/a/{id}":{"get":{"responses":{"200":{"description":"ok"}}}}}}"#,
    )
    .unwrap();
    match Command::new("openapi-spec-validator").arg(&bad).output() {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("note: openapi-spec-validator is not installed; skipped");
        }
        Err(e) => panic!("cannot run openapi-spec-validator: {e}"),
        Ok(o) => assert!(
            !o.status.success(),
            "the validator accepted a broken document"
        ),
    }
}

#[test]
fn a_bad_config_writes_nothing_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[services]]\nname = \"s\"\n[[services.apis]]\nname = \"a\"\npath = \"=/a\"\nmethod = \"FETCH\"\n[services.apis.backend]\ntype = \"mock\"\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = ringway(&[
        "docs",
        "--config",
        &config.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:6: services[0].apis[0].method:",
            config.display()
        )),
        "{err}"
    );
    assert!(!out.exists(), "wrote output for a broken configuration");
}

#[test]
fn an_unwritable_out_dir_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("docs");
    let o = ringway(&[
        "docs",
        "--config",
        "conf/ringway.toml",
        "--out",
        &out.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.starts_with("ringway docs: cannot create"), "{err}");
    assert!(err.contains(&out.display().to_string()), "{err}");
}

// ---------------------------------------------------------------------------------------
// The samples, run: each `curl` sample of the docs is run by `sh` (with the `curl` and
// `openssl` commands) against a gateway serving the documented configuration.

const SAMPLE_ID: &str = "AKIDdocs0001";
const SAMPLE_KEY: &str = "docs-secret-key-0001";
/// How long one sample may run: a WebSocket sample keeps its tunnel open until killed.
const SAMPLE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `src` with `sh -c` in its own process group (killed after `limit`), with the key
/// pair's variables set; returns (stdout, stderr).
fn run_sample(src: &str, secret_key: &str, limit: Duration) -> (String, String) {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(src)
        .env("SECRET_ID", SAMPLE_ID)
        .env("SECRET_KEY", secret_key)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run sh");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait for sh").is_none() {
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group of our own child (its id is the group's).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = text(&out.join().expect("stdout reader"));
    let err = text(&err.join().expect("stderr reader"));
    (out, err)
}

/// The status code and body of `curl -i` output (the last response, after any 100).
fn status_and_body(out: &str) -> (u16, String) {
    let start = out.rfind("HTTP/1.1 ").unwrap_or(0);
    let resp = &out[start..];
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// The inverse of [`esc`].
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every `<pre><code>` block of an HTML page, unescaped.
fn code_blocks(html: &str) -> Vec<String> {
    html.split("<pre><code>")
        .skip(1)
        .filter_map(|b| b.split_once("</code></pre>"))
        .map(|(code, _)| unescape(code))
        .collect()
}

/// Every operation's sample of an OpenAPI document: (summary, method, source).
fn openapi_samples(doc: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for item in doc["paths"].as_object().expect("paths").values() {
        for (method, op) in item.as_object().expect("path item") {
            let src = op["x-codeSamples"][0]["source"]
                .as_str()
                .unwrap_or_else(|| panic!("no sample in {op}"));
            let name = op["summary"].as_str().expect("summary");
            out.push((name.to_string(), method.to_uppercase(), src.to_string()));
        }
    }
    out
}

/// The names a key-pair recipe signs (from its `printf` format) and the names its
/// `headers="..."` lists, and, for each signed name, whether a `-H "Name: $VAR"` sends the
/// variable the `printf` signs for it.
fn recipe_lists(src: &str) -> (Vec<String>, Vec<String>) {
    let sig = src
        .lines()
        .find(|l| l.starts_with("SIG=$(printf '"))
        .unwrap_or_else(|| panic!("no `SIG=$(printf '...` line in:\n{src}"));
    let rest = &sig["SIG=$(printf '".len()..];
    let (format, rest) = rest.split_once('\'').expect("printf format");
    let args = rest
        .split_once(" | openssl dgst ")
        .expect("openssl dgst")
        .0
        .split_whitespace()
        .map(|a| a.trim_matches('"').trim_start_matches('$').to_string())
        .collect::<Vec<_>>();
    let parts: Vec<&str> = format.split("\\n").collect();
    assert_eq!(
        parts.len(),
        args.len(),
        "one argument per line of {format:?}"
    );
    let mut signed = Vec::new();
    for (part, var) in parts.iter().zip(&args) {
        let name = part
            .strip_suffix(": %s")
            .unwrap_or_else(|| panic!("signing-string line {part:?} is not `name: %s`"));
        // The signed value is the one sent: `-H "Name: $VAR"` for the same variable.
        let sent = src.lines().any(|l| {
            l.trim().trim_end_matches('\\').trim().to_ascii_lowercase()
                == format!("-h \"{name}: ${}\"", var.to_ascii_lowercase())
        });
        assert!(
            sent,
            "{name} is signed from ${var} but not sent from it:\n{src}"
        );
        signed.push(name.to_string());
    }
    let listed = src
        .split_once("headers=\\\"")
        .and_then(|(_, r)| r.split_once("\\\""))
        .unwrap_or_else(|| panic!("no headers=\\\"...\\\" in:\n{src}"))
        .0;
    let listed = listed.split(' ').map(String::from).collect();
    (signed, listed)
}

/// A gateway on a known free port serving `body` (services, upstreams, key pairs), and the
/// docs written for the same file: (gateway, docs dir, its temp dir).
fn serve_and_document(body: &str) -> (support::Gateway, PathBuf, tempfile::TempDir) {
    let addr = support::unused_addr();
    let toml = format!(
        "[server]\nlisten_http = [\"{addr}\"]\nadmin_listen = \"off\"\naccess_log = \"off\"\nworkers = 1\n{body}"
    );
    let gw = support::Gateway::start(&toml);
    assert_eq!(gw.addr(), addr);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("site");
    docs(&gw.config_path.to_string_lossy(), &out);
    (gw, out, dir)
}

/// The key-pair recipe of the docs, run as written with the `openssl` and `curl` commands,
/// passes the gateway's check; and it signs exactly the headers its `headers="..."` names.
#[test]
fn key_pair_recipe_runs_with_openssl() {
    let (mut gw, out, _dir) = serve_and_document(&format!(
        r#"
[[services]]
name = "s"
[[services.apis]]
name = "signed"
path = "=/signed"
method = "POST"
auth = "key_pair"
[services.apis.backend]
type = "mock"
mock_body = "signed ok"
[[services.apis]]
name = "signed-item"
path = "/items/{{id}}"
auth = "key_pair"
[[services.apis.params]]
name = "id"
location = "path"
data_type = "int"
sample = "7"
[[services.apis.params]]
name = "X-Tenant"
location = "header"
data_type = "long"
required = true
[services.apis.backend]
type = "mock"
mock_body = "item ok"
[[key_pairs]]
secret_id = "{SAMPLE_ID}"
secret_key = "{SAMPLE_KEY}"
services = ["s"]
"#
    ));
    let doc = json(&out.join("openapi/s.json"));
    let page = read(&out.join("s.html"));
    let blocks = code_blocks(&page);
    let samples = openapi_samples(&doc);
    assert_eq!(samples.len(), 2);
    for (name, method, src) in &samples {
        assert!(
            blocks.contains(src),
            "{name}: the HTML page does not show the OpenAPI sample:\n{src}"
        );
        let (signed, listed) = recipe_lists(src);
        assert_eq!(signed, listed, "{name}: signed vs headers=\"...\"");
        assert_eq!(signed, ["x-date", "source"], "{name}: SPEC §4's example");

        let (o, e) = run_sample(src, SAMPLE_KEY, SAMPLE_LIMIT);
        let (status, body) = status_and_body(&o);
        let want = if name == "signed" {
            "signed ok"
        } else {
            "item ok"
        };
        assert_eq!(
            (status, body.as_str()),
            (200, want),
            "{name} {method}:\n{src}\n--- stdout\n{o}\n--- stderr\n{e}"
        );
        // A control: the gateway does check what the recipe signs.
        let (o, _) = run_sample(src, "not-the-secret-key", SAMPLE_LIMIT);
        assert_eq!(status_and_body(&o).0, 401, "{name} with a wrong key:\n{o}");
        let tampered = src.replace("-H \"Source: $SOURCE\"", "-H \"Source: other\"");
        assert_ne!(&tampered, src);
        let (o, _) = run_sample(&tampered, SAMPLE_KEY, SAMPLE_LIMIT);
        assert_eq!(
            status_and_body(&o).0,
            401,
            "{name} with Source changed:\n{o}"
        );
    }

    // The page's own recipe (a template for any URL) signs the same way and passes too.
    let recipe = blocks
        .iter()
        .find(|b| b.contains("curl -i '<url>'"))
        .unwrap_or_else(|| panic!("no key-pair recipe on the page"));
    assert!(recipe.starts_with("# Template: replace <url> "), "{recipe}");
    let (signed, listed) = recipe_lists(recipe);
    assert_eq!(
        signed, listed,
        "the page's recipe: signed vs headers=\"...\""
    );
    let filled = recipe.replace("'<url>'", &format!("-X POST 'http://{}/signed'", gw.addr()));
    let (o, e) = run_sample(&filled, SAMPLE_KEY, SAMPLE_LIMIT);
    assert_eq!(
        status_and_body(&o),
        (200, "signed ok".to_string()),
        "{filled}\n--- stderr\n{e}"
    );
    // The recipe's header line in the auth description names the same list.
    let description = doc["components"]["securitySchemes"]["keyPair"]["description"]
        .as_str()
        .expect("keyPair scheme");
    assert!(
        description.contains(&format!("headers=\\\"{}\\\"", listed.join(" ")))
            || description.contains(&format!("headers=\"{}\"", listed.join(" "))),
        "{description}"
    );
    assert!(gw.terminate().success());
}

/// Every sample of the docs runs as shown and gets the documented answer, or starts with
/// `# Template:` lines naming each `<placeholder>` it has; filled in, a template runs too.
#[test]
fn every_sample_runs_as_shown_or_is_a_template() {
    let backend = support::Backend::start(|_| support::Reply::ok("from the backend"));
    let backend_addr = backend.addr();
    let ws = support::ws::echo_backend();
    let jwk = format!("{MANIFEST}/conf/demo/jwt-demo.jwk.json");
    let (mut gw, out, _dir) = serve_and_document(&format!(
        r#"
[[upstreams]]
name = "b"
url = "http://{backend_addr}"
[[upstreams]]
name = "ws"
url = "http://{ws}"

[[services]]
name = "s"
[services.oauth2]
public_key_file = "{jwk}"
[[services.apis]]
name = "hello"
path = "=/hello"
[services.apis.backend]
type = "mock"
mock_body = "hello"
[[services.apis]]
name = "files"
path = "^~/files/"
method = "ANY"
[services.apis.backend]
type = "mock"
mock_body = "files"
[[services.apis]]
name = "item"
path = "/items/{{id}}"
[[services.apis.params]]
name = "id"
location = "path"
data_type = "int"
required = true
[[services.apis.params]]
name = "X-Tenant"
location = "header"
data_type = "long"
required = true
[[services.apis.params]]
name = "verbose"
location = "query"
data_type = "boolean"
required = true
[[services.apis.params]]
name = "ratio"
location = "query"
data_type = "double"
sample = "0.5"
[services.apis.backend]
upstream = "b"
path = "/internal/items/{{id}}"
[[services.apis]]
name = "status"
path = '~ ^/v(?P<version>\d+)/status$'
[[services.apis.params]]
name = "version"
location = "path"
data_type = "int"
[services.apis.backend]
type = "mock"
mock_body = "status"
[[services.apis]]
name = "images"
path = '~* \.(png|gif)$'
[services.apis.backend]
type = "mock"
mock_body = "image"
[[services.apis]]
name = "orders"
path = "/orders"
method = "POST"
[services.apis.backend]
upstream = "b"
path = "/api/orders"
[[services.apis]]
name = "signed"
path = "=/signed"
method = "POST"
auth = "key_pair"
[services.apis.backend]
type = "mock"
mock_body = "signed"
[[services.apis]]
name = "me"
path = "=/me"
auth = "oauth2"
[services.apis.backend]
type = "mock"
mock_body = "me"
[[services.apis]]
name = "chat"
frontend_type = "ws"
path = "=/chat"
[services.apis.backend]
upstream = "ws"
path = "/ws"

[[key_pairs]]
secret_id = "{SAMPLE_ID}"
secret_key = "{SAMPLE_KEY}"
services = ["s"]
"#
    ));
    let token = Command::new("sh")
        .arg(format!("{MANIFEST}/conf/demo/make-token.sh"))
        .output()
        .expect("run conf/demo/make-token.sh");
    assert!(token.status.success(), "{}", text(&token.stderr));
    let token = text(&token.stdout).trim().to_string();
    // What fills each placeholder, and what each API answers.
    let fill = [("<rest>", "photo.png"), ("<JWT>", token.as_str())];
    let answers = [
        ("hello", 200, "hello"),
        ("files", 200, "files"),
        ("item", 200, "from the backend"),
        ("status", 200, "status"),
        ("images", 200, "image"),
        ("orders", 200, "from the backend"),
        ("signed", 200, "signed"),
        ("me", 200, "me"),
        ("chat", 101, ""),
    ];
    let doc = json(&out.join("openapi/s.json"));
    let mut samples = openapi_samples(&doc);
    let page = read(&out.join("s.html"));
    // The page shows each API's sample (an ANY API's with GET); the recipe block aside.
    for block in code_blocks(&page)
        .into_iter()
        .filter(|b| b.contains("curl "))
    {
        if !block.contains("'<url>'") {
            samples.push(("(html)".into(), "".into(), block));
        }
    }
    let mut templates = 0;
    for (name, method, src) in &samples {
        let placeholders: Vec<&str> = fill
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| src.contains(p))
            .collect();
        let mut filled = src.clone();
        if placeholders.is_empty() {
            assert!(
                !src.contains("# Template") && !src.contains('<'),
                "{name} {method}: a runnable sample with something to fill in:\n{src}"
            );
        } else {
            templates += 1;
            for p in &placeholders {
                let note = src
                    .lines()
                    .take_while(|l| l.starts_with('#'))
                    .any(|l| l.starts_with(&format!("# Template: replace {p} with ")));
                assert!(note, "{name} {method}: {p} is not explained first:\n{src}");
            }
            for (p, v) in fill {
                filled = filled.replace(p, v);
            }
        }
        // A WebSocket sample holds its tunnel open; curl writes the 101 head to a pipe (not
        // a terminal) only when it ends, so here it gets a time limit.
        if filled.contains(" -N ") {
            filled = filled.replacen("curl ", "curl --max-time 2 ", 1);
        }
        let (o, e) = run_sample(&filled, SAMPLE_KEY, SAMPLE_LIMIT);
        let (status, body) = status_and_body(&o);
        let api = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|i| i.as_object().unwrap().values())
            .find(|op| op["x-codeSamples"][0]["source"] == src.as_str())
            .map_or(name.clone(), |op| {
                op["summary"].as_str().unwrap().to_string()
            });
        let (_, want_status, want_body) = answers
            .iter()
            .find(|(n, ..)| *n == api)
            .unwrap_or_else(|| panic!("no answer listed for {api}"));
        // No body to compare for HEAD, nor after a 101 (the tunnel's bytes).
        let (body, want_body) = if method == "HEAD" || *want_status == 101 {
            (String::new(), "")
        } else {
            (body, *want_body)
        };
        assert_eq!(
            (status, body.as_str()),
            (*want_status, want_body),
            "{api} {method}:\n{filled}\n--- stdout\n{o}\n--- stderr\n{e}"
        );
    }
    // `images` (a regex that is no template) and `me` (a token), in the document and the page.
    assert_eq!(templates, 4, "{samples:#?}");
    assert!(gw.terminate().success());
}

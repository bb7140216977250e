//! `docs/quick_start.md`, run: its commands, in order, against the shipped configuration, so
//! the quick start cannot rot.
//!
//! Conventions of the page (plain CommonMark, so it reads the same on any renderer):
//!
//! - Every line of a ```` ```sh ```` block is a command (a line ending in `\` continues on
//!   the next; blank lines and `#` comment lines are skipped). It runs with `sh -c` in a
//!   temporary directory holding a copy of the repository's `conf/`, so `ringway.pid` and
//!   the like land there. `cargo build` lines are skipped: `target/release/ringway` is
//!   replaced by the binary under test (`CARGO_BIN_EXE_ringway`, the build `cargo test`
//!   made, debug by default).
//! - A command ending in a comment `# exit N` must exit with status N; any other, 0.
//! - A ```` ```text ```` block right after an `sh` block (blank lines between allowed) is the
//!   expected output, stdout then stderr, of that block's one command. Lines are compared
//!   with trailing whitespace (and `\r`) removed and trailing blank lines ignored; `...` in a
//!   line matches any text, and a line that is only `...` matches any number of lines. A
//!   command whose exit status or output does not match is tried again for a few seconds
//!   (metrics lag a reload by a moment) before the test fails.
//! - An HTML comment `<!-- test: background -->` on the line before an `sh` block starts its
//!   one command in the background; it is ready when its output so far matches the `text`
//!   block after it. `<!-- test: background, ready on ADDR -->` waits instead until ADDR
//!   accepts a TCP connection.
//!
//! At the end, every background process still running gets SIGTERM; the gateway must have
//! exited 0 and removed its pid file. The shipped configuration listens on the fixed ports
//! 8080, 8443 and 9090, and the demo backend on 9000: the test fails at once, saying so, if
//! one of them is taken.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PAGE: &str = "docs/quick_start.md";
/// What the page calls the binary.
const RELEASE_BINARY: &str = "target/release/ringway";
/// The addresses the shipped configuration and the demo backend listen on.
const FIXED_ADDRS: [&str; 4] = [
    "0.0.0.0:8080",
    "0.0.0.0:8443",
    "127.0.0.1:9090",
    "127.0.0.1:9000",
];
/// How long a command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a command whose answer does not match is tried again.
const RETRY_FOR: Duration = Duration::from_secs(5);
/// How long a background command gets to be ready, and to exit at the end.
const START_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, PartialEq)]
enum Ready {
    /// Its output so far matches the expected block.
    Output,
    /// This address accepts a connection.
    Connect(String),
}

#[derive(Debug, Clone)]
struct Step {
    /// The command as the page writes it.
    command: String,
    /// Its line in the page.
    line: usize,
    exit: i32,
    expected: Option<Vec<String>>,
    background: Option<Ready>,
}

/// The steps of the page, in order.
fn parse(page: &str) -> Vec<Step> {
    let lines: Vec<&str> = page.lines().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```sh" {
            i += 1;
            continue;
        }
        let marker = i
            .checked_sub(1)
            .map(|p| lines[p].trim())
            .and_then(|l| l.strip_prefix("<!-- test:"))
            .and_then(|l| l.strip_suffix("-->"))
            .map(str::trim);
        let background = marker.map(|m| {
            let m = m
                .strip_prefix("background")
                .unwrap_or_else(|| panic!("{PAGE}:{i}: unknown test marker {m:?}"));
            match m.trim().strip_prefix(", ready on ") {
                Some(addr) => Ready::Connect(addr.trim().to_string()),
                None if m.trim().is_empty() => Ready::Output,
                None => panic!("{PAGE}:{i}: unknown test marker {m:?}"),
            }
        });
        // The block's commands.
        let mut commands: Vec<(usize, String)> = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let line = lines[i];
            let (start, mut text) = pending.take().unwrap_or((i + 1, String::new()));
            if text.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
                i += 1;
                continue;
            }
            match line.strip_suffix('\\') {
                Some(head) => {
                    text.push_str(head);
                    pending = Some((start, text));
                }
                None => {
                    text.push_str(line);
                    commands.push((start, text));
                }
            }
            i += 1;
        }
        assert!(pending.is_none(), "{PAGE}: a `\\` continues past the block");
        i += 1;
        // An expected-output block right after it.
        let mut j = i;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        let mut expected = None;
        if j < lines.len() && lines[j].trim() == "```text" {
            let mut out = Vec::new();
            j += 1;
            while j < lines.len() && lines[j].trim() != "```" {
                out.push(lines[j].to_string());
                j += 1;
            }
            expected = Some(out);
            i = j + 1;
        }
        if expected.is_some() || background.is_some() {
            assert_eq!(
                commands.len(),
                1,
                "{PAGE}: an sh block with an expected output or in the background holds one command: {commands:?}"
            );
        }
        assert!(
            background != Some(Ready::Output) || expected.is_some(),
            "{PAGE}: a background command ready on its output needs a text block after it"
        );
        let last = commands.len().saturating_sub(1);
        for (k, (line, command)) in commands.into_iter().enumerate() {
            let exit = command
                .rsplit_once("# exit ")
                .and_then(|(_, n)| n.trim().parse().ok())
                .unwrap_or(0);
            steps.push(Step {
                command,
                line,
                exit,
                expected: if k == last { expected.clone() } else { None },
                background: background.clone(),
            });
        }
    }
    steps
}

/// Does `line` match `pattern`, where `...` stands for any text?
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || line.len() < first.len() + last.len() || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(p) => rest = &rest[p + part.len()..],
            None => return false,
        }
    }
    true
}

fn normalize(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Does `output` match the expected lines (a `...` line matching any number of lines)?
fn output_matches(expected: &[String], output: &str) -> bool {
    fn go(e: &[String], o: &[String]) -> bool {
        match e.split_first() {
            None => o.is_empty(),
            Some((p, rest)) if p == "..." => (0..=o.len()).any(|k| go(rest, &o[k..])),
            Some((p, rest)) => o
                .split_first()
                .is_some_and(|(l, orest)| line_matches(p, l) && go(rest, orest)),
        }
    }
    go(&normalize(&expected.join("\n")), &normalize(output))
}

/// A pipe read to its end on its own thread, into `sink`.
fn drain(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
}

fn shell(command: &str, dir: &Path, binary: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(command.replace(RELEASE_BINARY, binary))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs one foreground command: its exit status (`None`: killed after the timeout) and
/// its stdout followed by its stderr.
fn run_once(command: &str, dir: &Path, binary: &str) -> (Option<i32>, String) {
    let mut child = shell(command, dir, binary).spawn().expect("start sh");
    let (out, err) = (Arc::default(), Arc::default());
    let readers = [
        drain(child.stdout.take().unwrap(), Arc::clone(&out)),
        drain(child.stderr.take().unwrap(), Arc::clone(&err)),
    ];
    let status = wait_timeout(&mut child, COMMAND_TIMEOUT);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    for r in readers {
        r.join().unwrap();
    }
    let text = format!("{}{}", out.lock().unwrap(), err.lock().unwrap());
    (status.and_then(|s| s.code()), text)
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A command started in the background, its stdout and stderr collected together.
struct Background {
    step: Step,
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Background {
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

/// The background processes, killed if the test ends early.
#[derive(Default)]
struct Processes(Vec<Background>);

impl Drop for Processes {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Processes {
    /// What every background process has printed so far, for failure messages.
    fn report(&self) -> String {
        self.0
            .iter()
            .map(|p| format!("--- output of `{}` ---\n{}", p.step.command, p.output()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn start(step: &Step, dir: &Path, binary: &str, processes: &mut Processes) {
    // `exec`: the process started is the command itself, so SIGTERM reaches it.
    let mut child = shell(&format!("exec {}", step.command), dir, binary)
        .spawn()
        .expect("start sh");
    let output: Arc<Mutex<String>> = Arc::default();
    drain(child.stdout.take().unwrap(), Arc::clone(&output));
    drain(child.stderr.take().unwrap(), Arc::clone(&output));
    processes.0.push(Background {
        step: step.clone(),
        child,
        output,
    });
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let p = processes.0.last_mut().unwrap();
        let ready = match step.background.as_ref().unwrap() {
            Ready::Output => output_matches(step.expected.as_ref().unwrap(), &p.output()),
            Ready::Connect(addr) => TcpStream::connect(addr.as_str()).is_ok(),
        };
        if ready {
            return;
        }
        if let Some(status) = p.child.try_wait().unwrap() {
            panic!(
                "{PAGE}:{}: `{}` exited ({status}) before it was ready\n{}",
                step.line,
                step.command,
                processes.report()
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "{PAGE}:{}: `{}` was not ready within {START_TIMEOUT:?}; expected output:\n{}\n{}",
                step.line,
                step.command,
                step.expected.as_deref().unwrap_or_default().join("\n"),
                processes.report()
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

fn run(step: &Step, dir: &Path, binary: &str, processes: &Processes) {
    let first = Instant::now();
    loop {
        let (code, output) = run_once(&step.command, dir, binary);
        let output_ok = step
            .expected
            .as_ref()
            .is_none_or(|e| output_matches(e, &output));
        if code == Some(step.exit) && output_ok {
            return;
        }
        if first.elapsed() >= RETRY_FOR {
            panic!(
                "{PAGE}:{}: `{}`\nexit status {code:?}, expected {}\n--- its output ---\n{output}\n--- expected ---\n{}\n{}",
                step.line,
                step.command,
                step.exit,
                step.expected
                    .as_deref()
                    .map_or("(not checked)".to_string(), |e| e.join("\n")),
                processes.report()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn ports_are_free() {
    for addr in FIXED_ADDRS {
        if let Err(e) = TcpListener::bind(addr) {
            panic!(
                "cannot bind {addr} ({e}): the quick start runs the shipped configuration, which \
                 listens on the fixed ports 8080, 8443 and 9090, and the demo backend on 9000; \
                 stop whatever listens there and run this test again"
            );
        }
    }
}

#[test]
fn the_quick_start_runs_as_written() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(repo.join(PAGE)).unwrap();
    let steps = parse(&page);
    // The page must still hold what this test is for.
    let has = |what: &str| steps.iter().any(|s| s.command.starts_with(what));
    for what in [
        "target/release/ringway check",
        "target/release/ringway route",
        "target/release/ringway run",
        "python3 conf/demo/echo_backend.py",
        "target/release/ringway reload",
        "kill",
    ] {
        assert!(has(what), "{PAGE} has no `{what}` command");
    }
    assert!(
        steps.iter().filter(|s| s.expected.is_some()).count() >= 15,
        "{PAGE}: too few commands with an expected output"
    );

    ports_are_free();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo.join("conf"), &dir.path().join("conf"));
    let binary = env!("CARGO_BIN_EXE_ringway");
    let mut processes = Processes::default();
    for step in &steps {
        if step.command.starts_with("cargo build") {
            continue;
        }
        if step.background.is_some() {
            start(step, dir.path(), binary, &mut processes);
        } else {
            run(step, dir.path(), binary, &processes);
        }
    }

    // Stop what still runs; the gateway must have drained and exited 0.
    let mut gateway_seen = false;
    for p in &mut processes.0 {
        if p.child.try_wait().unwrap().is_none() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let status = wait_timeout(&mut p.child, EXIT_TIMEOUT);
        if p.step.command.starts_with(&format!("{RELEASE_BINARY} run")) {
            gateway_seen = true;
            assert_eq!(
                status.and_then(|s| s.code()),
                Some(0),
                "the gateway did not exit 0 on SIGTERM; its output:\n{}",
                p.output()
            );
            assert!(
                p.output().contains("ringway: stopped"),
                "the gateway did not drain; its output:\n{}",
                p.output()
            );
        }
    }
    assert!(gateway_seen);
    assert!(
        !dir.path().join("ringway.pid").exists(),
        "the gateway left its pid file behind"
    );
}

#[test]
fn expected_output_patterns() {
    let e = |s: &str| s.lines().map(str::to_string).collect::<Vec<_>>();
    assert!(output_matches(
        &e("a\nX-Id: ...\nb"),
        "a\r\nX-Id: 12-34\r\nb\r\n\r\n"
    ));
    assert!(output_matches(
        &e("ringway: ... worker(s), ... driver"),
        "ringway: 2 worker(s), io_uring driver"
    ));
    assert!(output_matches(&e("a\n...\nz"), "a\nb\nc\nz"));
    assert!(output_matches(&e("a\n...\nz"), "a\nz"));
    assert!(!output_matches(&e("a\nX-Id: ...\nb"), "a\nX-Id: 1\nc"));
    assert!(!output_matches(&e("{\"a\":1}"), "{\"a\":2}"));
    assert!(!output_matches(&e("a"), "a\nb"));
    assert!(!line_matches("a...b...c", "acb"));
    assert!(line_matches("a...b...c", "axbyc"));
}

#[test]
fn the_page_conventions_are_read() {
    let page = "\
text\n\
```sh\n\
cargo build --release\n\
```\n\
```sh\n\
# a comment\n\
target/release/ringway route /x  # exit 1\n\
```\n\
\n\
```text\n\
{\"status\":404}\n\
```\n\
<!-- test: background, ready on 127.0.0.1:9000 -->\n\
```sh\n\
python3 serve.py \\\n\
  --port 9000\n\
```\n";
    let steps = parse(page);
    assert_eq!(steps.len(), 3, "{steps:?}");
    assert_eq!(steps[0].command, "cargo build --release");
    assert!(steps[0].expected.is_none());
    assert_eq!(steps[1].exit, 1);
    assert_eq!(steps[1].line, 7);
    assert_eq!(
        steps[1].expected.as_deref(),
        Some(&["{\"status\":404}".to_string()][..])
    );
    assert_eq!(steps[2].command, "python3 serve.py --port 9000");
    assert_eq!(
        steps[2].background,
        Some(Ready::Connect("127.0.0.1:9000".into()))
    );
}

//! The local store's state file (SPEC §8, `[traffic] state_file`): quota counts saved across
//! restarts.
//!
//! ```json
//! {"version":1,"quotas":[{"plan":"gold","secret_id":"AKIDexample","period":"2026-12",
//!   "period_start":1796083200,"used":123}]}
//! ```
//!
//! `period` is the period's label ([`Period::label`]: `2026-12`, `2026-12-07`,
//! `2026-12-07T19` or `total`) and `period_start` its first second (0 for `total`); `used`
//! the requests counted in it. Only quota counts are saved: rate counters start afresh.
//!
//! - **Load**, once, before the workers bind ([`load`]): a missing file is a first run and
//!   starts from zero silently; an unreadable or corrupt one is named on stderr in one line
//!   with the reason and the process starts from zero — it never refuses to start. Counts of
//!   periods that have ended are not restored.
//! - **Save**, by a [`Saver`] thread (never a worker): at most once a [`SAVE_EVERY`] and only
//!   when the counts changed, and once more at a clean exit ([`Saver::finish`]). The
//!   registry's lock is held only to copy the counts, never while the file is written. A
//!   quota of a period that has ended is not written.
//! - **Atomically** ([`write`]): a temporary file in the same directory is written and
//!   fsynced, renamed over the state file, and the directory fsynced; a crash leaves the old
//!   file or the new one, never a torn one, and loses at most one second of counts.
//! - **Upgrade** (`run --upgrade-from`): the successor loads the file when it starts, while
//!   its predecessor still counts and saves. Until the predecessor has exited (bounded by
//!   [`PREDECESSOR_WAIT`] past its drain), the successor does not write; then it reads the
//!   predecessor's last save and adds what was counted there since its own load
//!   ([`Registry::add_quota`]), so no request of either process is lost or counted twice.
//!
//! The state file belongs to the `local` store; with `store = "redis"` Redis holds the
//! counts and the file is neither read nor written.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::algo::{Period, Quota, QuotaState};
use super::local::{Registry, Saved, lock};
use super::policy::StoreKind;
use crate::config::Config;

/// The format's version; a file of another version is refused (and the process starts
/// from zero).
pub const VERSION: u64 = 1;

/// The most often the counts are saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// After an upgrade, how long the successor waits for its predecessor to exit (past its
/// own `shutdown_grace_ms`) before it takes over the file regardless.
pub const PREDECESSOR_WAIT: Duration = Duration::from_secs(5);

/// One (plan, secret_id)'s quota count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedQuota {
    pub plan: String,
    pub secret_id: String,
    pub start: u64,
    pub used: u64,
    pub period: Period,
}

impl SavedQuota {
    /// The period has ended at `unix` (a total never ends).
    pub fn ended(&self, unix: u64) -> bool {
        self.period
            .bounds(self.start)
            .is_some_and(|(_, end)| end <= unix)
    }

    fn id(&self) -> (String, String) {
        (self.plan.clone(), self.secret_id.clone())
    }
}

/// The file as written.
#[derive(Serialize, Deserialize)]
struct FileBody {
    version: u64,
    quotas: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    plan: String,
    secret_id: String,
    period: String,
    period_start: u64,
    used: u64,
}

/// `2026-12` → month, `2026-12-07` → day, `2026-12-07T19` → hour, `total`.
fn period_of_label(label: &str) -> Option<Period> {
    match label.len() {
        _ if label == "total" => Some(Period::Total),
        7 => Some(Period::Month),
        10 => Some(Period::Day),
        13 => Some(Period::Hour),
        _ => None,
    }
}

/// Parses a state file's text.
pub fn parse(text: &str) -> Result<Vec<SavedQuota>, String> {
    let body: FileBody = serde_json::from_str(text).map_err(|e| format!("not valid: {e}"))?;
    if body.version != VERSION {
        return Err(format!(
            "version {} is not supported (this ringway reads version {VERSION})",
            body.version
        ));
    }
    let mut out: Vec<SavedQuota> = Vec::with_capacity(body.quotas.len());
    for (i, e) in body.quotas.into_iter().enumerate() {
        let bad = |why: String| format!("quotas[{i}]: {why}");
        let period = period_of_label(&e.period)
            .ok_or_else(|| bad(format!("period \"{}\" is not a period", e.period)))?;
        let first = period.bounds(e.period_start).map_or(0, |(a, _)| a);
        if first != e.period_start || period.label(e.period_start) != e.period {
            return Err(bad(format!(
                "period_start {} is not the start of period \"{}\"",
                e.period_start, e.period
            )));
        }
        if out
            .iter()
            .any(|o| o.plan == e.plan && o.secret_id == e.secret_id)
        {
            return Err(bad(format!(
                "plan \"{}\" and secret_id \"{}\" are listed twice",
                e.plan, e.secret_id
            )));
        }
        out.push(SavedQuota {
            plan: e.plan,
            secret_id: e.secret_id,
            start: e.period_start,
            used: e.used,
            period,
        });
    }
    Ok(out)
}

/// The text of a state file holding `quotas`.
pub fn render(quotas: &[SavedQuota]) -> String {
    let body = FileBody {
        version: VERSION,
        quotas: quotas
            .iter()
            .map(|q| Entry {
                plan: q.plan.clone(),
                secret_id: q.secret_id.clone(),
                period: q.period.label(q.start),
                period_start: q.start,
                used: q.used,
            })
            .collect(),
    };
    let mut text = serde_json::to_string(&body).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads the state file: `Ok(None)` when there is none (a first run), `Err` with the reason
/// when it cannot be read or is not a state file.
pub fn read(path: &Path) -> Result<Option<Vec<SavedQuota>>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// The temporary file a save writes first: beside the state file, named after it and this
/// process (two processes never write the same temporary file).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// The directory `path` is in (`.` for a bare file name).
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `quotas` to `path` atomically (see the module docs); no temporary file is left
/// behind, whether the save succeeds or fails.
pub fn write(path: &Path, quotas: &[SavedQuota]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(render(quotas).as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename itself is durable once the directory is.
    std::fs::File::open(dir_of(path))?.sync_all()
}

/// The state file of `cfg`, if it has one and counts locally.
pub fn path_of(cfg: &Config) -> Option<&Path> {
    match cfg.traffic.store {
        StoreKind::Local => cfg.traffic.state_file.as_deref(),
        StoreKind::Redis => None,
    }
}

/// Counts saved for the registry ([`Registry::restore`]).
pub fn to_saved(quotas: &[SavedQuota]) -> Saved {
    quotas.iter().map(|q| (q.id(), (q.start, q.used))).collect()
}

/// Reads `cfg`'s state file and gives its counts of periods not yet ended at `unix` to
/// `registry`; says on stderr why a file that exists could not be used. Returns what was
/// restored.
pub fn load(cfg: &Config, registry: &Registry, unix: u64) -> Vec<SavedQuota> {
    let Some(path) = path_of(cfg) else {
        return Vec::new();
    };
    match read(path) {
        Ok(None) => Vec::new(),
        Ok(Some(all)) => {
            let live: Vec<SavedQuota> = all.into_iter().filter(|q| !q.ended(unix)).collect();
            registry.restore(to_saved(&live));
            live
        }
        Err(why) => {
            crate::say!(
                warn,
                "traffic.state_file {}: {why}; quota counts start from zero",
                path.display()
            );
            Vec::new()
        }
    }
}

/// What is to be saved now: every (plan, secret_id) with a count in the current period,
/// sorted. A plan of `cfg` is judged by its own `quota_period`; a count no configuration has
/// claimed (a plan not in `cfg`) by the period it was saved with (`periods`).
pub fn collect(
    registry: &Registry,
    cfg: &Config,
    periods: &HashMap<(String, String), Period>,
    unix: u64,
) -> Vec<SavedQuota> {
    let plans: HashMap<&str, Period> = cfg
        .usage_plans
        .iter()
        .map(|p| (p.name.as_str(), p.period))
        .collect();
    let mut out: Vec<SavedQuota> = registry
        .quota_snapshot()
        .into_iter()
        .filter_map(|((plan, secret_id), (start, used))| {
            let q = match plans.get(plan.as_str()) {
                Some(&period) => {
                    // As the next take would see it: a count of an older period (or of
                    // another `quota_period` the plan had) is no count.
                    let rule = Quota { max: 0, period };
                    let state = QuotaState { start, used };
                    SavedQuota {
                        start: rule.period_start(unix),
                        used: rule.used(&state, unix),
                        plan,
                        secret_id,
                        period,
                    }
                }
                None => {
                    let period = *periods.get(&(plan.clone(), secret_id.clone()))?;
                    SavedQuota {
                        plan,
                        secret_id,
                        start,
                        used,
                        period,
                    }
                }
            };
            (q.used > 0 && !q.ended(unix)).then_some(q)
        })
        .collect();
    out.sort_by(|a, b| (&a.plan, &a.secret_id).cmp(&(&b.plan, &b.secret_id)));
    out
}

/// What the saver reads: the process's counters and its running configuration.
pub trait Source: Send + Sync + 'static {
    fn registry(&self) -> &Registry;
    fn config(&self) -> Arc<Config>;
}

impl Source for crate::runtime::Shared {
    fn registry(&self) -> &Registry {
        &self.traffic
    }

    fn config(&self) -> Arc<Config> {
        crate::runtime::Shared::config(self)
    }
}

fn unix_now() -> u64 {
    crate::runtime::unix_now()
}

/// A predecessor still counting into the same file (see the module docs).
struct Predecessor {
    pid: i32,
    /// Take the file over after this even if it still runs.
    deadline: Instant,
    /// What this process loaded: the predecessor's counts up to then.
    loaded: Vec<SavedQuota>,
}

/// The saver thread's state.
struct Job<S: Source> {
    source: Arc<S>,
    /// The period of each count loaded (for counts no configuration claims).
    periods: HashMap<(String, String), Period>,
    /// What the file holds now, as far as this process knows, and where.
    last: Option<(PathBuf, Vec<SavedQuota>)>,
    predecessor: Option<Predecessor>,
    /// The last save's failure, said once until a save succeeds.
    failing: Option<String>,
}

impl<S: Source> Job<S> {
    /// Saves when the counts (or the file's path) changed since the last save.
    fn save_if_changed(&mut self) {
        let cfg = self.source.config();
        let Some(path) = path_of(&cfg) else {
            return;
        };
        let now = unix_now();
        let quotas = collect(self.source.registry(), &cfg, &self.periods, now);
        if self
            .last
            .as_ref()
            .is_some_and(|(p, q)| p == path && *q == quotas)
        {
            return;
        }
        match write(path, &quotas) {
            Ok(()) => {
                if self.failing.take().is_some() {
                    crate::say!(
                        info,
                        "traffic.state_file {}: quota counts saved again",
                        path.display()
                    );
                }
                self.last = Some((path.to_path_buf(), quotas));
            }
            Err(e) => {
                let why = e.to_string();
                if self.failing.as_deref() != Some(why.as_str()) {
                    crate::say!(
                        error,
                        "traffic.state_file {}: cannot save quota counts: {why}",
                        path.display()
                    );
                    self.failing = Some(why);
                }
            }
        }
    }

    /// `true` while a predecessor may still write the file.
    fn waiting_for_predecessor(&mut self) -> bool {
        let Some(p) = &self.predecessor else {
            return false;
        };
        if !gone(p.pid) && Instant::now() < p.deadline {
            return true;
        }
        let p = self.predecessor.take().expect("checked above");
        let cfg = self.source.config();
        let Some(path) = path_of(&cfg) else {
            return false;
        };
        let now = unix_now();
        match read(path) {
            Ok(Some(last)) => {
                for q in last.into_iter().filter(|q| !q.ended(now)) {
                    let before = p
                        .loaded
                        .iter()
                        .find(|l| {
                            l.plan == q.plan && l.secret_id == q.secret_id && l.start == q.start
                        })
                        .map_or(0, |l| l.used);
                    if q.used > before {
                        self.source.registry().add_quota(
                            &q.plan,
                            &q.secret_id,
                            q.start,
                            q.used - before,
                        );
                    }
                    self.periods.entry(q.id()).or_insert(q.period);
                }
            }
            Ok(None) => {}
            Err(why) => crate::say!(
                warn,
                "traffic.state_file {}: the predecessor's last counts are lost: {why}",
                path.display()
            ),
        }
        self.last = None;
        false
    }
}

/// Process `pid` has exited (or is a zombie no longer counting).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
    }
}

/// The saver thread (see the module docs).
pub struct Saver<S: Source> {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<Job<S>>>,
}

impl<S: Source> Saver<S> {
    /// Starts saving `source`'s counts; `loaded`: what [`load`] restored; `predecessor`:
    /// the pid of a gateway this one takes over from (`run --upgrade-from`), which keeps
    /// counting into the same file until it exits.
    pub fn start(
        source: Arc<S>,
        loaded: Vec<SavedQuota>,
        predecessor: Option<i32>,
    ) -> std::io::Result<Saver<S>> {
        let cfg = source.config();
        let wait = cfg.server.shutdown_grace + PREDECESSOR_WAIT;
        let last = path_of(&cfg).map(|p| (p.to_path_buf(), loaded.clone()));
        let mut job = Job {
            periods: loaded.iter().map(|q| (q.id(), q.period)).collect(),
            source,
            last,
            predecessor: predecessor.map(|pid| Predecessor {
                pid,
                deadline: Instant::now() + wait,
                loaded,
            }),
            failing: None,
        };
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ringway-state".into())
            .spawn(move || {
                let (m, cv) = &*flag;
                let mut stopped = lock(m);
                while !*stopped {
                    stopped = cv
                        .wait_timeout(stopped, SAVE_EVERY)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stopped {
                        break;
                    }
                    drop(stopped);
                    if !job.waiting_for_predecessor() {
                        job.save_if_changed();
                    }
                    stopped = lock(m);
                }
                job
            })?;
        Ok(Saver {
            stop,
            thread: Some(thread),
        })
    }

    fn halt(&mut self) -> Option<Job<S>> {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        self.thread.take().and_then(|t| t.join().ok())
    }

    /// Stops the thread and saves once more (the process is exiting; the workers are done).
    pub fn finish(mut self) {
        if let Some(mut job) = self.halt() {
            // A predecessor still running past our own exit keeps the file.
            if !job.waiting_for_predecessor() {
                job.save_if_changed();
            }
        }
    }
}

impl<S: Source> Drop for Saver<S> {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T19:20:00Z.
    const NOW: u64 = 1_796_671_200;

    fn config(dir: &Path, period: &str) -> Config {
        let text = format!(
            r#"
[server]
listen_http = ["127.0.0.1:0"]
admin_listen = "off"
[traffic]
state_file = "{}"
[[services]]
name = "s"
[[services.apis]]
name = "a"
path = "/a"
auth = "key_pair"
[services.apis.backend]
type = "mock"
[[key_pairs]]
secret_id = "AKIDone00"
secret_key = "secret-key-one"
services = ["s"]
[[key_pairs]]
secret_id = "AKIDtwo00"
secret_key = "secret-key-two"
services = ["s"]
[[usage_plans]]
name = "gold"
max_requests = 100
quota_period = "{period}"
secret_ids = ["AKIDone00", "AKIDtwo00"]
services = ["s"]
"#,
            dir.join("state.json").display()
        );
        match crate::config::load_str(&text, Path::new("t.toml")) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn quota(plan: &str, id: &str, period: Period, unix: u64, used: u64) -> SavedQuota {
        SavedQuota {
            plan: plan.into(),
            secret_id: id.into(),
            start: period.bounds(unix).map_or(0, |(a, _)| a),
            used,
            period,
        }
    }

    fn sample() -> Vec<SavedQuota> {
        vec![
            quota("gold", "AKIDone00", Period::Month, NOW, 123),
            quota("gold", "AKIDtwo00", Period::Day, NOW, 7),
            quota("hourly", "AKIDone00", Period::Hour, NOW, 1),
            quota("silver", "AKIDone00", Period::Total, NOW, 999_999),
        ]
    }

    #[test]
    fn the_format_is_the_documented_one() {
        let text = render(&sample()[..1]);
        assert_eq!(
            text,
            "{\"version\":1,\"quotas\":[{\"plan\":\"gold\",\"secret_id\":\"AKIDone00\",\"period\":\"2026-12\",\"period_start\":1796083200,\"used\":123}]}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render(&sample())).unwrap();
        let labels: Vec<&str> = v["quotas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["period"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["2026-12", "2026-12-07", "2026-12-07T19", "total"]);
        assert_eq!(v["quotas"][3]["period_start"], 0);
    }

    #[test]
    fn a_saved_file_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &sample()).unwrap();
        assert_eq!(read(&path).unwrap(), Some(sample()));
        // Overwriting replaces it whole.
        write(&path, &sample()[2..]).unwrap();
        assert_eq!(read(&path).unwrap(), Some(sample()[2..].to_vec()));
        write(&path, &[]).unwrap();
        assert_eq!(read(&path).unwrap(), Some(Vec::new()));
    }

    #[test]
    fn a_missing_file_is_a_first_run() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "month");
        assert_eq!(read(&dir.path().join("state.json")).unwrap(), None);
        let registry = Registry::default();
        assert!(load(&cfg, &registry, NOW).is_empty());
        assert!(registry.quota_snapshot().is_empty());
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_reason() {
        let cases = [
            ("", "not valid"),
            ("{\"version\":1,\"quotas\":[", "not valid"),
            ("\u{0}\u{1}binary", "not valid"),
            ("[]", "not valid"),
            (
                "{\"version\":2,\"quotas\":[]}",
                "version 2 is not supported",
            ),
            (
                "{\"version\":1,\"quotas\":[{\"plan\":\"g\",\"secret_id\":\"a\",\"period\":\"week\",\"period_start\":0,\"used\":1}]}",
                "quotas[0]: period \"week\" is not a period",
            ),
            (
                "{\"version\":1,\"quotas\":[{\"plan\":\"g\",\"secret_id\":\"a\",\"period\":\"2026-12\",\"period_start\":1796671200,\"used\":1}]}",
                "quotas[0]: period_start 1796671200 is not the start of period \"2026-12\"",
            ),
            (
                "{\"version\":1,\"quotas\":[{\"plan\":\"g\",\"secret_id\":\"a\",\"period\":\"total\",\"period_start\":0,\"used\":-1}]}",
                "not valid",
            ),
            (
                "{\"version\":1,\"quotas\":[{\"plan\":\"g\",\"secret_id\":\"a\",\"period\":\"total\",\"period_start\":0,\"used\":1},{\"plan\":\"g\",\"secret_id\":\"a\",\"period\":\"total\",\"period_start\":0,\"used\":2}]}",
                "quotas[1]: plan \"g\" and secret_id \"a\" are listed twice",
            ),
        ];
        for (text, want) in cases {
            let why = parse(text).unwrap_err();
            assert!(why.starts_with(want), "{text:?}: {why}");
        }
        // Through `load`: no panic, nothing restored.
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "month");
        std::fs::write(dir.path().join("state.json"), "{\"version\":1,").unwrap();
        let registry = Registry::default();
        assert!(load(&cfg, &registry, NOW).is_empty());
        assert!(registry.quota_snapshot().is_empty());
        // A directory where the file should be: unreadable, not a crash.
        std::fs::remove_file(dir.path().join("state.json")).unwrap();
        std::fs::create_dir(dir.path().join("state.json")).unwrap();
        let why = read(&dir.path().join("state.json")).unwrap_err();
        assert!(why.starts_with("cannot read it"), "{why}");
        assert!(load(&cfg, &registry, NOW).is_empty());
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_save_is_atomic_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for i in 0..3 {
            write(&path, &sample()[i..]).unwrap();
            assert_eq!(names(dir.path()), ["state.json"]);
        }
        let tmp = temp_path(&path);
        assert_eq!(
            tmp.parent(),
            path.parent(),
            "the temporary file is beside it"
        );
        // A failed save (the rename target is a non-empty directory) leaves the old file
        // alone and no temporary file.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), "x").unwrap();
        assert!(write(&blocked, &sample()).is_err());
        assert_eq!(names(dir.path()), ["blocked", "state.json"]);
        assert_eq!(read(&path).unwrap(), Some(sample()[2..].to_vec()));
        // A directory that does not exist: an error, never a panic.
        assert!(write(&dir.path().join("nope/state.json"), &sample()).is_err());
    }

    #[test]
    fn counts_of_ended_periods_are_neither_loaded_nor_saved() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "day");
        let yesterday = NOW - 86_400;
        let saved = vec![
            quota("gold", "AKIDone00", Period::Day, yesterday, 50),
            quota("gold", "AKIDtwo00", Period::Day, NOW, 5),
            quota("gone", "AKIDone00", Period::Hour, NOW - 3600, 9),
            quota("gone", "AKIDtwo00", Period::Hour, NOW, 3),
        ];
        write(&dir.path().join("state.json"), &saved).unwrap();
        let registry = Registry::default();
        let loaded = load(&cfg, &registry, NOW);
        assert_eq!(loaded, vec![saved[1].clone(), saved[3].clone()]);
        let periods = loaded.iter().map(|q| (q.id(), q.period)).collect();
        assert_eq!(collect(&registry, &cfg, &periods, NOW), loaded);
        // The next hour: the unclaimed hourly count has ended; the next day: every one.
        assert_eq!(
            collect(&registry, &cfg, &periods, NOW + 3600),
            vec![saved[1].clone()]
        );
        assert!(collect(&registry, &cfg, &periods, NOW + 86_400).is_empty());
    }

    #[test]
    fn counts_bound_by_a_configuration_are_saved_with_its_period() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), "month");
        let registry = Registry::default();
        registry.restore(to_saved(&[quota(
            "gold",
            "AKIDone00",
            Period::Month,
            NOW,
            10,
        )]));
        let counters = super::super::Counters::local(registry.bind(&cfg));
        let now = super::super::Clock { mono: 0, unix: NOW };
        let plan = &cfg.usage_plans[0];
        for _ in 0..5 {
            assert!(matches!(
                counters.take_plan_quota(0, 1, plan, &now),
                super::super::Verdict::Admit(_)
            ));
        }
        let got = collect(&registry, &cfg, &HashMap::new(), NOW);
        assert_eq!(
            got,
            vec![
                quota("gold", "AKIDone00", Period::Month, NOW, 10),
                quota("gold", "AKIDtwo00", Period::Month, NOW, 5),
            ]
        );
        // A plan whose quota_period changed: the old period's count is no count.
        let daily = config(dir.path(), "day");
        assert!(collect(&registry, &daily, &HashMap::new(), NOW + 86_400).is_empty());
    }

    struct TestSource {
        registry: Registry,
        config: Arc<Config>,
    }

    impl Source for TestSource {
        fn registry(&self) -> &Registry {
            &self.registry
        }

        fn config(&self) -> Arc<Config> {
            self.config.clone()
        }
    }

    fn job(dir: &Path, loaded: Vec<SavedQuota>, predecessor: Option<i32>) -> Job<TestSource> {
        let source = Arc::new(TestSource {
            registry: Registry::default(),
            config: Arc::new(config(dir, "month")),
        });
        source.registry.restore(to_saved(&loaded));
        Job {
            periods: loaded.iter().map(|q| (q.id(), q.period)).collect(),
            last: Some((dir.join("state.json"), loaded.clone())),
            source,
            predecessor: predecessor.map(|pid| Predecessor {
                pid,
                deadline: Instant::now() + Duration::from_secs(30),
                loaded,
            }),
            failing: None,
        }
    }

    #[test]
    fn the_saver_writes_only_when_the_counts_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let now = unix_now();
        let mut j = job(dir.path(), Vec::new(), None);
        // Nothing counted, nothing loaded: nothing to write.
        j.save_if_changed();
        assert!(!path.exists());
        j.source
            .registry
            .add_quota("gold", "AKIDone00", Period::Month.bounds(now).unwrap().0, 3);
        j.save_if_changed();
        assert_eq!(read(&path).unwrap().unwrap()[0].used, 3);
        // Unchanged: not written again (the file removed behind its back stays removed).
        std::fs::remove_file(&path).unwrap();
        j.save_if_changed();
        assert!(!path.exists());
        j.source
            .registry
            .add_quota("gold", "AKIDone00", Period::Month.bounds(now).unwrap().0, 1);
        j.save_if_changed();
        assert_eq!(read(&path).unwrap().unwrap()[0].used, 4);
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn the_thread_saves_within_a_second_and_at_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let source = Arc::new(TestSource {
            registry: Registry::default(),
            config: Arc::new(config(dir.path(), "total")),
        });
        let saver = Saver::start(source.clone(), Vec::new(), None).unwrap();
        source.registry.add_quota("gold", "AKIDone00", 0, 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            assert!(Instant::now() < deadline, "not saved within 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(read(&path).unwrap().unwrap()[0].used, 2);
        source.registry.add_quota("gold", "AKIDone00", 0, 5);
        saver.finish();
        assert_eq!(read(&path).unwrap().unwrap()[0].used, 7);
    }

    #[test]
    fn after_an_upgrade_the_predecessors_last_counts_are_added_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let now = unix_now();
        let month = Period::Month.bounds(now).unwrap().0;
        let at_load = vec![quota("gold", "AKIDone00", Period::Month, now, 10)];
        write(&path, &at_load).unwrap();
        // A live predecessor (this process): the successor does not write.
        let mut j = job(dir.path(), at_load.clone(), Some(std::process::id() as i32));
        j.source.registry.add_quota("gold", "AKIDone00", month, 1);
        assert!(j.waiting_for_predecessor());
        // The predecessor counted 5 more and saved at its exit, then exited.
        write(&path, &[quota("gold", "AKIDone00", Period::Month, now, 15)]).unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        j.predecessor.as_mut().unwrap().pid = child.id() as i32;
        assert!(!j.waiting_for_predecessor());
        // 10 loaded + 1 own + 5 of the predecessor's since the load.
        assert_eq!(
            j.source
                .registry
                .quota_state("gold", "AKIDone00")
                .unwrap()
                .used,
            16
        );
        j.save_if_changed();
        assert_eq!(read(&path).unwrap().unwrap()[0].used, 16);
        assert!(!j.waiting_for_predecessor(), "merged once");
        assert_eq!(
            j.source
                .registry
                .quota_state("gold", "AKIDone00")
                .unwrap()
                .used,
            16
        );
    }
}

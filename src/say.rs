//! The gateway's own messages (start, listeners, reloads, errors) on stderr, one per line:
//! `ringway: <message>` by default, or with `server.log_format = "json"` one JSON object per
//! line, `{"time","level","message"}` (`level`: `info`, `warn` or `error`), for log shippers.
//! The format is process-wide, set at start and on every reload.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// Switches every following message to JSON lines (`true`) or text.
pub fn set_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Writes one message; use [`crate::say!`].
pub fn emit(level: &str, args: fmt::Arguments<'_>) {
    let line = if JSON.load(Ordering::Relaxed) {
        let value = serde_json::json!({
            "time": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            "level": level,
            "message": args.to_string(),
        });
        format!("{value}\n")
    } else {
        format!("ringway: {args}\n")
    };
    // One write per message, so lines from several threads never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// `say!(info | warn | error, "format", args...)`: one gateway message on stderr.
#[macro_export]
macro_rules! say {
    ($level:ident, $($arg:tt)*) => {
        $crate::say::emit(stringify!($level), format_args!($($arg)*))
    };
}

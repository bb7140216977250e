//! Rate-limited stderr summaries: events of one kind (failed accepts, refused clients,
//! connections without a PROXY header) counted since the last line, with what the last one
//! was; a line is due at once for the first event, then at most once per [`SUMMARY_EVERY`].
//! A flood of bad clients costs the log one line a second per worker, not one per client.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// The least time between two lines of one summary.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(1);

/// Events of one kind since the last stderr line about them.
#[derive(Default)]
pub struct Summary {
    count: Cell<u64>,
    /// A second count the events carry (failed accepts: the clients refused meanwhile).
    extra: Cell<u64>,
    /// What the last one was.
    last: RefCell<String>,
    logged: Cell<Option<Instant>>,
}

impl Summary {
    /// One more, adding `extra` to the second count; `last` writes what it was.
    pub fn add(&self, extra: u64, last: impl FnOnce(&mut String)) {
        self.count.set(self.count.get() + 1);
        self.extra.set(self.extra.get() + extra);
        let mut text = self.last.borrow_mut();
        text.clear();
        last(&mut text);
    }

    /// (count, extra, last) since the last line, when there are some and the last line is
    /// [`SUMMARY_EVERY`] old; taken, so the next line starts from zero.
    pub fn take_due(&self, now: Instant) -> Option<(u64, u64, String)> {
        let n = self.count.get();
        let recent = self
            .logged
            .get()
            .is_some_and(|t| now.saturating_duration_since(t) < SUMMARY_EVERY);
        if n == 0 || recent {
            return None;
        }
        self.logged.set(Some(now));
        self.count.set(0);
        Some((n, self.extra.replace(0), self.last.take()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn summaries_say_the_first_at_once_then_at_most_one_line_a_second() {
        let s = Summary::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(s.take_due(at(0)), None, "nothing to say");
        s.add(0, |l| l.push_str("first"));
        assert_eq!(s.take_due(at(0)), Some((1, 0, "first".into())));
        for i in 0..37 {
            s.add(1, |l| {
                let _ = write!(l, "e{i}");
            });
        }
        assert_eq!(s.take_due(at(500)), None, "a line 500 ms ago");
        assert_eq!(s.take_due(at(999)), None);
        assert_eq!(s.take_due(at(1000)), Some((37, 37, "e36".into())));
        assert_eq!(s.take_due(at(5000)), None, "nothing since");
        s.add(0, |l| l.push_str("later"));
        assert_eq!(s.take_due(at(5000)), Some((1, 0, "later".into())));
    }
}

//! How fast a request body must arrive: no gap longer than `client_body_timeout_ms`, and in
//! every window of `client_body_rate_window_ms` at least `client_body_min_rate` bytes per
//! second (or the rest of the body, when less is left) — Apache `mod_reqtimeout`'s idea. A
//! client that trickles its body, or stops, gets 408 instead of holding the request open.
//!
//! [`BodyPace`] is a pure clock over the reads of one body: the reader asks it for the
//! deadline of its next read ([`BodyPace::deadline`]) and tells it what each read brought
//! ([`BodyPace::after`]). The deadline is the gap rule's alone, and its passing ends the
//! body (a read cancelled at a deadline may lose what it had read, so a deadline is never
//! just a checkpoint): a window is judged when the first read after its end arrives, with
//! the bytes that came before that end.

use std::time::Duration;

use monoio::time::Instant;

use crate::config::Server;
use crate::error::BodyStall;

/// The pace rules, and where one body stands against them.
#[derive(Debug)]
pub struct BodyPace {
    timeout: Duration,
    /// Bytes each window must bring (0: no minimum).
    per_window: u64,
    window: Duration,
    last_data: Instant,
    window_end: Instant,
    /// Bytes that came in the current window, and what the window owes.
    in_window: u64,
    owed: u64,
}

impl BodyPace {
    /// A body starting now, with `remaining` bytes to come (`None`: unknown, chunked).
    pub fn new(server: &Server, remaining: Option<u64>, now: Instant) -> BodyPace {
        let window = server.client_body_rate_window;
        let per_window = (u128::from(server.client_body_min_rate) * window.as_millis() / 1000)
            .min(u128::from(u64::MAX)) as u64;
        BodyPace {
            timeout: server.client_body_timeout,
            per_window,
            window,
            last_data: now,
            window_end: now + window,
            in_window: 0,
            owed: owed(per_window, remaining),
        }
    }

    /// When the next read must have brought something; past it the body has stalled.
    pub fn deadline(&self) -> Instant {
        self.last_data + self.timeout
    }

    /// A read at `now` brought `n` bytes (0: its deadline passed); `remaining` is what is
    /// left of the body after them.
    pub fn after(
        &mut self,
        n: usize,
        now: Instant,
        remaining: Option<u64>,
    ) -> Result<(), BodyStall> {
        if n == 0 || now.saturating_duration_since(self.last_data) >= self.timeout {
            return Err(BodyStall::Stalled);
        }
        if self.per_window > 0 && now >= self.window_end {
            // The window that ended before these bytes came.
            if self.in_window < self.owed {
                return Err(BodyStall::TooSlow);
            }
            let before = remaining.map(|r| r + n as u64);
            self.owed = owed(self.per_window, before);
            // Windows that passed with no byte at all.
            let late = now.saturating_duration_since(self.window_end);
            if late >= self.window && self.owed > 0 {
                return Err(BodyStall::TooSlow);
            }
            self.window_end += self.window;
            self.in_window = 0;
        }
        self.last_data = now;
        self.in_window += n as u64;
        Ok(())
    }
}

/// What a window owes: its share, or the rest of the body when that is less.
fn owed(per_window: u64, remaining: Option<u64>) -> u64 {
    remaining.map_or(per_window, |r| r.min(per_window))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(timeout_ms: u64, rate: u64, window_ms: u64) -> Server {
        let toml = format!(
            "[server]\nlisten_http = [\"127.0.0.1:0\"]\nadmin_listen = \"off\"\n\
             client_body_timeout_ms = {timeout_ms}\nclient_body_min_rate = {rate}\n\
             client_body_rate_window_ms = {window_ms}\n"
        );
        crate::config::load_str(&toml, std::path::Path::new("t.toml"))
            .unwrap()
            .server
    }

    /// Steps of (ms since start, bytes read, remaining after, expected outcome).
    type Steps<'a> = &'a [(u64, usize, Option<u64>, Result<(), BodyStall>)];

    fn run(s: &Server, remaining: Option<u64>, steps: Steps<'_>) {
        let t0 = Instant::now();
        let mut pace = BodyPace::new(s, remaining, t0);
        for (i, &(ms, n, left, want)) in steps.iter().enumerate() {
            let got = pace.after(n, t0 + Duration::from_millis(ms), left);
            assert_eq!(got, want, "step {i}: {ms} ms, {n} bytes");
            if got.is_err() {
                return;
            }
        }
    }

    #[test]
    fn a_gap_longer_than_the_timeout_stalls() {
        let s = server(1000, 0, 10_000);
        run(
            &s,
            Some(100),
            &[
                (900, 10, Some(90), Ok(())),
                (1800, 10, Some(80), Ok(())), // 900 ms since the last byte
                (2800, 0, Some(80), Err(BodyStall::Stalled)), // the read's deadline passed
            ],
        );
        // Bytes that come after the gap passed do not save it.
        run(
            &s,
            Some(100),
            &[(1000, 10, Some(90), Err(BodyStall::Stalled))],
        );
        let t0 = Instant::now();
        let mut pace = BodyPace::new(&s, Some(5), t0);
        assert_eq!(pace.deadline(), t0 + Duration::from_millis(1000));
        pace.after(1, t0 + Duration::from_millis(600), Some(4))
            .unwrap();
        assert_eq!(pace.deadline(), t0 + Duration::from_millis(1600));
    }

    #[test]
    fn a_trickle_under_the_timeout_is_too_slow() {
        // 1,000 bytes/s over 2 s windows: each window owes 2,000 bytes.
        let s = server(1000, 1000, 2000);
        let mut steps = Vec::new();
        for i in 1..20u64 {
            // One byte every 500 ms: never a gap of a second. The first window (0-2 s) is
            // judged by the first byte after it.
            let want = if i * 500 >= 2000 {
                Err(BodyStall::TooSlow)
            } else {
                Ok(())
            };
            steps.push((i * 500, 1, Some(100_000), want));
        }
        run(&s, Some(100_000), &steps);
    }

    #[test]
    fn a_56_kbit_client_passes_the_defaults() {
        let s = server(10_000, 1000, 10_000);
        // 7,000 bytes/s in 700-byte reads every 100 ms, for a 1 MB body.
        let mut left = 1_000_000u64;
        let mut steps = Vec::new();
        let mut ms = 0;
        while left > 0 {
            ms += 100;
            let n = left.min(700);
            left -= n;
            steps.push((ms, n as usize, Some(left), Ok(())));
        }
        run(&s, Some(1_000_000), &steps);
    }

    #[test]
    fn the_last_window_owes_only_the_rest() {
        let s = server(5000, 1000, 1000);
        // 1,200 in the first window; the rest, 300, in the second.
        run(
            &s,
            Some(1500),
            &[(500, 1200, Some(300), Ok(())), (1900, 300, Some(0), Ok(()))],
        );
        // 1,200, then 100 of the 300 left in the second window, then the rest too late.
        run(
            &s,
            Some(1500),
            &[
                (500, 1200, Some(300), Ok(())),
                (1500, 100, Some(200), Ok(())),
                (2100, 200, Some(0), Err(BodyStall::TooSlow)),
            ],
        );
    }

    #[test]
    fn a_window_with_no_byte_is_too_slow() {
        let s = server(10_000, 1000, 1000);
        run(
            &s,
            Some(10_000),
            &[
                (500, 1000, Some(9000), Ok(())),
                // 1-2 s passed without a byte, under the gap timeout.
                (2500, 1000, Some(8000), Err(BodyStall::TooSlow)),
            ],
        );
        // Unless nothing was owed: a chunked body with no minimum rate set.
        let s = server(10_000, 0, 1000);
        run(
            &s,
            None,
            &[(500, 10, None, Ok(())), (2500, 10, None, Ok(()))],
        );
    }
}

//! A worker's connections closed for want of a valid PROXY protocol header
//! (`server.proxy_protocol`): each is counted in `/metrics` by reason; stderr gets at most
//! one line a second per worker, with the count since the last line and the last one's
//! peer and reason (a client or scanner that skips the balancer must not flood the log).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Instant;

use super::metrics::ProxyHeaderFailure;
use super::summary::Summary;

#[derive(Default)]
pub struct ProxyFailures {
    /// Since the last line, with the last failure's TCP peer and reason.
    summary: Summary,
}

impl ProxyFailures {
    /// One more failure, from TCP peer `peer`: noted, and the line written if one is due.
    pub fn failed(&self, worker: usize, peer: SocketAddr, why: ProxyHeaderFailure) {
        self.note(peer, why);
        self.report(worker);
    }

    fn note(&self, peer: SocketAddr, why: ProxyHeaderFailure) {
        self.summary.add(0, |last| {
            let _ = write!(last, "{} from {peer}", why.label());
        });
    }

    /// Writes the line if one is due (called on each failure and by housekeeping).
    pub fn report(&self, worker: usize) {
        if let Some((n, last)) = self.take_due(Instant::now()) {
            let what = if n == 1 { "connection" } else { "connections" };
            crate::say!(
                warn,
                "worker {worker}: {n} {what} closed without a valid PROXY protocol header (server.proxy_protocol = true); last: {last}"
            );
        }
    }

    /// (count, last) since the last line, when one is due ([`Summary::take_due`]).
    fn take_due(&self, now: Instant) -> Option<(u64, String)> {
        self.summary.take_due(now).map(|(n, _, last)| (n, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProxyHeaderFailure::{Missing, Timeout};
    use std::time::Duration;

    /// (milliseconds since start, failures noted just before and their reason, the line
    /// expected then: count and last)
    type Step = (u64, u64, ProxyHeaderFailure, Option<(u64, &'static str)>);

    #[test]
    fn the_first_is_said_at_once_then_at_most_one_line_a_second() {
        let peer: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        let steps: &[Step] = &[
            (0, 0, Missing, None),
            (0, 1, Missing, Some((1, "missing from 192.0.2.9:4000"))),
            (300, 5, Timeout, None),
            (999, 0, Missing, None),
            (1000, 0, Missing, Some((5, "timeout from 192.0.2.9:4000"))),
            (1500, 0, Missing, None),
            (5000, 0, Missing, None),
            (5000, 2, Missing, Some((2, "missing from 192.0.2.9:4000"))),
        ];
        let f = ProxyFailures::default();
        let t0 = Instant::now();
        for &(ms, failures, why, want) in steps {
            for _ in 0..failures {
                f.note(peer, why);
            }
            let got = f.take_due(t0 + Duration::from_millis(ms));
            let want = want.map(|(n, s)| (n, s.to_string()));
            assert_eq!(got, want, "at {ms} ms");
        }
    }
}

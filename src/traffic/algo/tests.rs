//! The algorithms against a fake clock: bursts, refill, the any-window bound, give-backs and
//! calendar periods.

use super::*;

const S: u64 = NANOS_PER_SEC;

#[test]
fn gcra_bursts_one_window_then_refills_continuously() {
    let g = Gcra::per_second(10);
    let mut tat = 0;
    let now = 5 * S;
    for i in 0..10 {
        let a = g.take(&mut tat, now).expect("within the burst");
        assert_eq!(a.remaining, 9 - i);
    }
    let r = g.take(&mut tat, now).expect_err("past the burst");
    assert_eq!(r.retry_ns, Some(S / 10));
    // One emission interval later exactly one more fits.
    assert!(g.take(&mut tat, now + S / 10).is_ok());
    assert!(g.take(&mut tat, now + S / 10).is_err());
    // At rest after a full second without requests.
    assert!(Gcra::at_rest(tat, now + 2 * S));
    assert_eq!(g.peek(tat, now + 2 * S).remaining, 10);
}

#[test]
fn gcra_admits_the_rate_at_steady_load() {
    // A client sending 1,000 requests/s against 50/s for 10 s: 50 × 10 + the burst of 50.
    let g = Gcra::per_second(50);
    let mut tat = 0;
    let mut admitted = 0;
    for i in 0..10_000u64 {
        if g.take(&mut tat, S + i * S / 1000).is_ok() {
            admitted += 1;
        }
    }
    assert!((549..=551).contains(&admitted), "{admitted}");
}

#[test]
fn gcra_give_back_undoes_a_take() {
    let g = Gcra::per_second(2);
    let mut tat = 0;
    let now = S;
    g.take(&mut tat, now).unwrap();
    g.take(&mut tat, now).unwrap();
    assert!(g.take(&mut tat, now).is_err());
    g.give_back(&mut tat, now);
    assert!(g.take(&mut tat, now).is_ok());
    assert!(g.take(&mut tat, now).is_err());
}

#[test]
fn window_never_holds_more_than_the_limit_in_any_window() {
    // 30 per minute; a client that tries every 100 ms for 5 minutes.
    let w = Window::new(30, Duration::from_secs(60));
    let mut s = WindowState::default();
    let mut times = Vec::new();
    for i in 0..3000u64 {
        let now = 1000 * S + i * S / 10;
        if w.take(&mut s, now).is_ok() {
            times.push(now);
        }
    }
    // Any 60 s window: at most 30.
    for (i, &t) in times.iter().enumerate() {
        let inside = times[i..].iter().take_while(|&&u| u < t + 60 * S).count();
        assert!(inside <= 30, "{inside} in the minute from {t}");
    }
    // And close to the limit over the run: 5 minutes × 30, less one slot's lag per window.
    assert!(times.len() >= 140 && times.len() <= 150, "{}", times.len());
}

#[test]
fn window_burst_then_retry_after_names_when_the_oldest_slot_leaves() {
    let w = Window::new(3, Duration::from_secs(60));
    let mut s = WindowState::default();
    let now = 600 * S + S / 2; // in slot 200 (3 s slots)
    for left in [2, 1, 0] {
        assert_eq!(w.take(&mut s, now).unwrap().remaining, left);
    }
    let r = w.take(&mut s, now).unwrap_err();
    // Slot 200 covers [600 s, 603 s); it stops overlapping the last minute at 663 s.
    assert_eq!(r.retry_ns, Some(663 * S - now));
    assert!(w.take(&mut s, 663 * S - 1).is_err());
    assert!(w.take(&mut s, 663 * S).is_ok());
    assert!(!w.at_rest(&s, 663 * S));
    assert!(w.at_rest(&s, 800 * S));
}

#[test]
fn window_give_back_undoes_a_take() {
    let w = Window::new(1, Duration::from_secs(60));
    let mut s = WindowState::default();
    let now = 100 * S;
    w.take(&mut s, now).unwrap();
    assert!(w.take(&mut s, now).is_err());
    w.give_back(&mut s, now);
    assert!(w.take(&mut s, now).is_ok());
}

#[test]
fn calendar_periods_in_utc() {
    // 2026-12-07T19:06:59Z
    let t = 1_796_670_419;
    assert_eq!(Period::Month.label(t), "2026-12");
    assert_eq!(Period::Day.label(t), "2026-12-07");
    assert_eq!(Period::Hour.label(t), "2026-12-07T19");
    let (a, b) = Period::Month.bounds(t).unwrap();
    assert_eq!(Period::Month.label(a), "2026-12");
    assert_eq!(Period::Month.label(b), "2027-01");
    assert_eq!(b - a, 31 * 86_400);
    // February of a leap year.
    let feb = days_from_civil(2028, 2, 10) as u64 * 86_400;
    assert_eq!(Period::Month.length(feb), Some(29 * 86_400));
    assert_eq!(Period::Total.bounds(t), None);
    for days in [-1, 0, 59, 10_000, 20_794] {
        let (y, m, d) = civil(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

#[test]
fn quota_counts_per_period_and_resets() {
    let q = Quota {
        max: 2,
        period: Period::Hour,
    };
    let mut s = QuotaState::default();
    let t = 7200 + 10;
    assert_eq!(q.take(&mut s, t).unwrap().remaining, 1);
    assert_eq!(q.take(&mut s, t).unwrap().remaining, 0);
    let r = q.take(&mut s, t + 5).unwrap_err();
    assert_eq!(r.retry_ns, Some((3600 - 15) * S));
    assert_eq!(q.used(&s, t), 2);
    // The next hour starts afresh.
    assert!(q.take(&mut s, 3 * 3600).is_ok());
    assert_eq!(q.used(&s, 3 * 3600), 1);
    let total = Quota {
        max: 1,
        period: Period::Total,
    };
    let mut s = QuotaState::default();
    assert!(total.take(&mut s, t).is_ok());
    assert_eq!(
        total.take(&mut s, t + 10 * 86_400).unwrap_err().retry_ns,
        None
    );
    total.give_back(&mut s, 0);
    assert!(total.take(&mut s, t).is_ok());
}

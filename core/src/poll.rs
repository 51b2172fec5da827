//! When to look again at a long cloud operation (a cluster, a database, a NAT gateway).
//!
//! A fixed interval either wastes calls (polling a 15-minute cluster every few seconds) or
//! notices the end late. The schedule here is derived from how long the operation usually
//! takes (`expected`, the schema's expected create time or a type's expected delete time):
//!
//! - before half the expected time, sparse: half the distance to that point, at most a
//!   tenth of the expected time (operations essentially never end that early);
//! - from half to one and a half times the expected time, dense: `expected / 60`, between
//!   2 and 10 s, so the end is noticed within that many seconds;
//! - after that, overdue: the interval grows by a tenth of the overrun, up to the sparse
//!   bound, so a stuck operation is not polled hard for its whole timeout;
//!
//! each delay jittered by ±10 % so parallel waits do not poll in lockstep. A fixed interval
//! (`PollSchedule::fixed`) remains for tests that shorten every wait.

use std::time::Duration;

/// The delays between the polls of one long operation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PollSchedule {
    /// Derived from the operation's expected duration (see the module docs).
    Adaptive {
        /// How long the operation usually takes.
        expected: Duration,
    },
    /// The same delay every time.
    Fixed(Duration),
}

impl PollSchedule {
    /// The adaptive schedule of an operation expected to take `expected`.
    pub fn adaptive(expected: Duration) -> PollSchedule {
        PollSchedule::Adaptive { expected }
    }

    /// A fixed interval.
    pub fn fixed(interval: Duration) -> PollSchedule {
        PollSchedule::Fixed(interval)
    }

    /// The delay before the next poll, `elapsed` after the operation started, without
    /// jitter.
    pub fn delay(&self, elapsed: Duration) -> Duration {
        let expected = match *self {
            PollSchedule::Fixed(d) => return d,
            PollSchedule::Adaptive { expected } => expected.as_secs_f64(),
        };
        let t = elapsed.as_secs_f64();
        let dense = (expected / 60.0).clamp(2.0, 10.0);
        let sparse = (expected / 10.0).max(dense);
        let secs = if t < expected / 2.0 {
            (expected / 2.0 - t) / 2.0
        } else if t <= expected * 1.5 {
            dense
        } else {
            dense + (t - expected * 1.5) / 10.0
        };
        Duration::from_secs_f64(secs.clamp(dense, sparse))
    }

    /// The delay before the next poll, jittered by ±10 % (a fixed schedule is exact).
    pub fn next(&self, elapsed: Duration) -> Duration {
        let d = self.delay(elapsed);
        match self {
            PollSchedule::Fixed(_) => d,
            PollSchedule::Adaptive { .. } => d.mul_f64(0.9 + 0.2 * crate::retry::jitter()),
        }
    }
}

/// One wait: the schedule and when the wait began.
#[derive(Debug)]
pub struct Poller {
    schedule: PollSchedule,
    started: tokio::time::Instant,
}

impl Poller {
    /// A wait beginning now. (A wait resumed after a crash starts its schedule again: at
    /// worst sparser than needed for a while, never a missed end.)
    pub fn start(schedule: PollSchedule) -> Poller {
        Poller {
            schedule,
            started: tokio::time::Instant::now(),
        }
    }

    /// Sleeps until the next poll is due.
    pub async fn sleep(&self) {
        tokio::time::sleep(self.schedule.next(self.started.elapsed())).await;
    }
}

/// A fixed poll interval in milliseconds from the environment variable `name`'s `value`
/// (tests and demos shorten every wait against emulators): `None` when unset; a value
/// that is not a positive whole number of milliseconds is an error, never ignored.
pub fn interval_from_env(
    name: &str,
    value: Option<std::ffi::OsString>,
) -> Result<Option<Duration>, crate::ProviderError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    match text.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
        _ => Err(crate::ProviderError::new(
            crate::ErrorKind::InvalidInput,
            format!("`{name}={text}` is not a positive whole number of milliseconds"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    /// Polls until `end`, returning (polls, lag between the end and the poll that saw it).
    fn run(s: PollSchedule, end: Duration) -> (u32, Duration) {
        let (mut t, mut polls) = (Duration::ZERO, 0);
        loop {
            t += s.delay(t);
            polls += 1;
            if t >= end {
                return (polls, t - end);
            }
        }
    }

    #[test]
    fn sparse_early_dense_around_the_expected_end_bounded_when_overdue() {
        let eks = PollSchedule::adaptive(15 * MIN);
        assert_eq!(eks.delay(Duration::ZERO), Duration::from_secs(90));
        assert_eq!(eks.delay(7 * MIN), Duration::from_secs(15));
        assert_eq!(eks.delay(10 * MIN), Duration::from_secs(10));
        assert_eq!(eks.delay(22 * MIN), Duration::from_secs(10));
        assert_eq!(eks.delay(25 * MIN), Duration::from_secs(25));
        assert_eq!(eks.delay(300 * MIN), Duration::from_secs(90));
        // Short operations are never polled more than every 2 s.
        let nat = PollSchedule::adaptive(2 * MIN);
        assert_eq!(nat.delay(Duration::from_secs(90)), Duration::from_secs(2));
        assert_eq!(nat.delay(Duration::ZERO), Duration::from_secs(12));
    }

    #[test]
    fn fewer_polls_and_less_lag_than_a_fixed_interval_where_operations_end() {
        // EKS (expected 15 min; typically ends in 10): today every 10 s.
        let (fixed, adaptive) = (
            PollSchedule::fixed(Duration::from_secs(10)),
            PollSchedule::adaptive(15 * MIN),
        );
        for end in [10 * MIN, 15 * MIN, 20 * MIN] {
            let (fp, fl) = run(fixed, end);
            let (ap, al) = run(adaptive, end);
            assert!(ap < fp, "{end:?}: {ap} polls vs {fp}");
            assert!(al <= Duration::from_secs(10) && al <= fl.max(Duration::from_secs(10)));
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent_and_fixed_is_exact() {
        let s = PollSchedule::adaptive(15 * MIN);
        for _ in 0..100 {
            let d = s.next(10 * MIN).as_secs_f64();
            assert!((9.0..=11.0).contains(&d), "{d}");
        }
        let f = PollSchedule::fixed(Duration::from_millis(200));
        assert_eq!(f.next(10 * MIN), Duration::from_millis(200));
    }
}

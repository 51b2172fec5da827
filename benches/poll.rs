//! Polls per long operation, and the lag between "the cloud finished" and "the waiter
//! noticed", for the fixed intervals the AWS waiters used before (EKS 10 s, RDS 5 s, node
//! group 10 s, NAT 2 s) and for the adaptive schedule they use now
//! (`flyteinfra_core::poll`).
//!
//! The timeline is real-length but virtual: tokio's paused clock runs each operation to
//! its real duration (typical ones, and early and late ones) in microseconds, through the
//! same `Poller` the waiters use, jitter included. Each case is the mean of 200 runs whose
//! ends are spread over the 10 s after the nominal end, so no schedule is lucky.
//!
//! Run with `cargo bench -p flyteinfra-benches --bench poll`.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use flyteinfra_benches::Rng;
use flyteinfra_core::{PollSchedule, Poller};

const MIN: u64 = 60;
const RUNS: u32 = 200;

/// One long operation: its schema's expected time, the fixed interval it was polled at,
/// and the real durations to try (seconds).
struct Op {
    name: &'static str,
    expected: u64,
    fixed: u64,
    ends: &'static [u64],
}

const OPS: &[Op] = &[
    Op {
        name: "EKS cluster create",
        expected: 15 * MIN,
        fixed: 10,
        // Typically ~10 min; from 8 to 20.
        ends: &[8 * MIN, 10 * MIN, 12 * MIN, 15 * MIN, 20 * MIN],
    },
    Op {
        name: "RDS instance create",
        expected: 6 * MIN,
        fixed: 5,
        // Typically ~7 min.
        ends: &[4 * MIN, 7 * MIN, 10 * MIN],
    },
    Op {
        name: "EKS node group create",
        expected: 3 * MIN,
        fixed: 10,
        ends: &[2 * MIN, 3 * MIN, 5 * MIN],
    },
    Op {
        name: "NAT gateway create",
        expected: 2 * MIN,
        fixed: 2,
        ends: &[MIN, 2 * MIN, 3 * MIN],
    },
];

/// Polls on `schedule` until `end` (virtual time): (polls, lag).
async fn wait(schedule: PollSchedule, end: Duration) -> (u32, Duration) {
    let start = tokio::time::Instant::now();
    let poller = Poller::start(schedule);
    let mut polls = 0;
    loop {
        // The first look is right after the create call, as in the waiters.
        polls += 1;
        if start.elapsed() >= end {
            return (polls, start.elapsed() - end);
        }
        poller.sleep().await;
    }
}

/// The mean (polls, lag in seconds) over [`RUNS`] runs ending in `end`..`end + 10 s`.
async fn mean(schedule: PollSchedule, end: Duration) -> (f64, f64) {
    let (mut polls, mut lag) = (0u64, 0f64);
    let mut rng = Rng(0x5eed);
    for _ in 0..RUNS {
        let end = end + Duration::from_millis(rng.below(10_000));
        let (p, l) = wait(schedule, end).await;
        polls += u64::from(p);
        lag += l.as_secs_f64();
    }
    (polls as f64 / f64::from(RUNS), lag / f64::from(RUNS))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    println!("poll bench: polls per operation and lag to notice its end (mean of {RUNS} runs)");
    println!(
        "{:<24} {:>8} {:>7} | {:>13} {:>9} | {:>13} {:>9}",
        "operation", "expected", "ends", "fixed: polls", "lag", "adaptive: polls", "lag"
    );
    let (mut fixed_total, mut adaptive_total) = ((0.0, 0.0), (0.0, 0.0));
    for op in OPS {
        let expected = Duration::from_secs(op.expected);
        for &end in op.ends {
            let end_d = Duration::from_secs(end);
            let (fp, fl) = rt.block_on(mean(
                PollSchedule::fixed(Duration::from_secs(op.fixed)),
                end_d,
            ));
            let (ap, al) = rt.block_on(mean(PollSchedule::adaptive(expected), end_d));
            fixed_total.0 += fp;
            fixed_total.1 += fl;
            adaptive_total.0 += ap;
            adaptive_total.1 += al;
            println!(
                "{:<24} {:>6} m {:>5} m | {:>6.1} @{:>3} s {:>7.1} s | {:>13.1} {:>7.1} s",
                op.name,
                op.expected / MIN,
                end as f64 / MIN as f64,
                fp,
                op.fixed,
                fl,
                ap,
                al
            );
        }
    }
    let cases: usize = OPS.iter().map(|o| o.ends.len()).sum();
    let n = cases as f64;
    println!(
        "all {cases} cases: fixed {:.0} polls, mean lag {:.1} s; adaptive {:.0} polls, mean lag {:.1} s",
        fixed_total.0,
        fixed_total.1 / n,
        adaptive_total.0,
        adaptive_total.1 / n
    );
}

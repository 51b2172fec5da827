//! Two real processes and the state lease (the lease scenarios on every backend, with
//! kill -9 and SIGSTOP, are in `team_state.rs`).

use std::fs;
use std::time::{Duration, Instant};

use crate::util::{TestContext, finish, wait_until};

/// Slow creates: EKS, RDS, NAT and the node group each take 50 polls of 100 ms.
const SLOW: &[(&str, &str)] = &[
    ("FLYTEINFRA_SIMULATE_POLLS", "50"),
    ("FLYTEINFRA_SIMULATE_POLL_MS", "100"),
];

#[test]
fn a_second_process_waits_for_or_reports_the_lock_holder() {
    let ctx = TestContext::minimal();
    let mut apply = ctx.spawn(&["apply", "--auto-approve"], SLOW);
    let pid = apply.id();
    let lock = ctx.lock_path();
    let held = wait_until(Duration::from_secs(20), || {
        fs::metadata(&lock).is_ok_and(|m| m.len() > 0)
    });
    assert!(held, "apply never wrote its lock record");
    assert!(
        apply.try_wait().unwrap().is_none(),
        "apply finished too early for the test"
    );

    // No waiting: refused at once, naming the holder.
    let started = Instant::now();
    let run = ctx.run(&["plan", "--lock-timeout", "0s"]);
    run.expect_code(1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--lock-timeout 0s waited"
    );
    assert!(
        run.stderr.contains(&format!("pid {pid}")),
        "the holder's pid {pid} is not named:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("flyteinfra apply"),
        "the holder's command is not named:\n{}",
        run.stderr
    );
    assert!(run.stderr.contains("--lock-timeout"), "{}", run.stderr);

    // Other lock-taking commands are refused the same way; read-only ones are not blocked.
    for cmd in [
        &["apply", "--auto-approve"][..],
        &["destroy", "--auto-approve"],
        &["state", "rm", "aws_vpc.main"],
    ] {
        let mut args = cmd.to_vec();
        args.extend(["--lock-timeout", "0s"]);
        let run = ctx.run(&args);
        run.expect_code(1);
        assert!(
            run.stderr.contains(&format!("pid {pid}")),
            "{cmd:?}: {}",
            run.stderr
        );
    }
    ctx.run(&["state", "list"]).ok();

    // A short timeout waits, then gives up.
    let started = Instant::now();
    let run = ctx.run(&["plan", "--lock-timeout", "300ms"]);
    run.expect_code(1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(run.stderr.contains(&format!("pid {pid}")), "{}", run.stderr);
    assert!(
        apply.try_wait().unwrap().is_none(),
        "apply finished before the waiting plan started; the test proves nothing"
    );

    // Waiting long enough: the plan runs once apply is done, and sees its result.
    let run = ctx.run(&["plan", "--lock-timeout", "60s", "--detailed-exitcode"]);
    let apply = finish(apply);
    apply.ok();
    assert!(apply.stderr.contains("Apply complete"), "{}", apply.stderr);
    run.expect_code(0);
    assert!(run.stdout.contains("No changes"), "{}", run.stdout);
    assert!(!lock.exists(), "the lease record is deleted on release");
}

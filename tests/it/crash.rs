//! Process-level crash test: `kill -9` apply (and destroy) at pseudo-random moments, then
//! resume. The state file must always parse, and the end result must have no duplicate
//! and no orphan cloud object.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::time::Duration;

use crate::util::{TestContext, finish, wait_until};

/// Iterations (seeds); `FLYTEINFRA_IT_CRASH_ITERATIONS` raises it for a soak run.
const ITERATIONS: u64 = 8;
/// Killed runs per iteration before one is let finish.
const KILL_ROUNDS: usize = 3;
const MAX_DELAY_MS: u64 = 600;

const FAST_BUT_NOT_INSTANT: &[(&str, &str)] = &[
    ("FLYTEINFRA_SIMULATE_DELAY_MS", "5"),
    ("FLYTEINFRA_SIMULATE_POLLS", "3"),
    ("FLYTEINFRA_SIMULATE_POLL_MS", "20"),
];

/// xorshift64: deterministic per seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The state file, if there is one, must be complete JSON at every moment.
#[track_caller]
fn assert_state_parses(ctx: &TestContext, what: &str) {
    let Ok(bytes) = fs::read(ctx.state_path()) else {
        return;
    };
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(&bytes) {
        panic!(
            "{what}: the state file is not JSON after a kill ({e}):\n{}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

/// The state file and its backup, if present, must be complete JSON at every moment.
#[track_caller]
fn assert_state_files_parse(ctx: &TestContext, what: &str) {
    assert_state_parses(ctx, what);
    if let Ok(bytes) = fs::read(ctx.backup_path()) {
        assert!(
            serde_json::from_slice::<serde_json::Value>(&bytes).is_ok(),
            "{what}: the state backup is not JSON after a kill"
        );
    }
}

/// Runs `cmd` and SIGKILLs it after `delay_ms`. Returns whether it was killed (it may
/// have finished first; then it must have succeeded).
fn run_and_kill(ctx: &TestContext, cmd: &str, delay_ms: u64, what: &str) -> bool {
    let mut child = ctx.spawn(&[cmd, "--auto-approve"], FAST_BUT_NOT_INSTANT);
    std::thread::sleep(Duration::from_millis(delay_ms));
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        // Child::kill sends SIGKILL on Unix.
        child.kill().unwrap();
    }
    let run = finish(child);
    ctx.break_lease();
    if !killed || run.signal.is_none() {
        // It finished before the kill landed.
        assert_eq!(
            run.code,
            Some(0),
            "{what}: {cmd} failed on its own:\n{}",
            run.all()
        );
    }
    assert_state_files_parse(ctx, what);
    killed && run.signal.is_some()
}

/// No duplicate, no orphan, nothing missing: the cloud and the state agree one to one.
fn assert_consistent(ctx: &TestContext, what: &str) {
    let objects = ctx.sim_objects();
    let state = ctx.state();
    let resources = state["resources"].as_object().unwrap();

    let mut by_address: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, o) in &objects {
        by_address
            .entry(o["address"].as_str().unwrap().to_string())
            .or_default()
            .push(id.clone());
    }
    let duplicates: Vec<_> = by_address.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        duplicates.is_empty(),
        "{what}: duplicate cloud objects: {duplicates:?}"
    );

    let state_ids: BTreeSet<&str> = resources
        .values()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let orphans: Vec<_> = objects
        .iter()
        .filter(|(id, _)| !state_ids.contains(id.as_str()))
        .map(|(id, o)| format!("{id} ({})", o["address"]))
        .collect();
    assert!(
        orphans.is_empty(),
        "{what}: orphaned cloud objects: {orphans:?}"
    );

    let missing: Vec<_> = resources
        .iter()
        .filter(|(addr, _)| !addr.starts_with("random_password."))
        .filter(|(_, r)| !objects.contains_key(r["id"].as_str().unwrap()))
        .map(|(addr, r)| format!("{addr} ({})", r["id"]))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: in state but not in the cloud: {missing:?}"
    );
    for (addr, r) in resources {
        if let Some(o) = objects.get(r["id"].as_str().unwrap()) {
            assert_eq!(
                &o["address"],
                addr.as_str(),
                "{what}: {addr} points at another object"
            );
        }
    }
    assert!(
        state["intents"].as_object().is_none_or(|i| i.is_empty()),
        "{what}: intents left after a complete run: {:#}",
        state["intents"]
    );
}

#[test]
fn kill_9_during_apply_and_destroy_never_duplicates_or_orphans() {
    let iterations: u64 = std::env::var("FLYTEINFRA_IT_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ITERATIONS);
    let mut kills = 0;
    let mut runs = 0;
    for seed in 0..iterations {
        let ctx = TestContext::minimal();
        let mut rng = Rng::new(seed + 1);
        for round in 0..KILL_ROUNDS {
            let delay = rng.below(MAX_DELAY_MS + 1);
            let what = format!("seed {seed} apply round {round} (kill at {delay} ms)");
            runs += 1;
            if run_and_kill(&ctx, "apply", delay, &what) {
                kills += 1;
            }
        }
        let what = format!("seed {seed} final apply");
        let run = ctx.run_env(&["apply", "--auto-approve"], FAST_BUT_NOT_INSTANT);
        runs += 1;
        assert_eq!(run.code, Some(0), "{what}:\n{}", run.all());
        assert_consistent(&ctx, &what);
        let all = ctx.state_addresses();
        assert!(all.contains("aws_db_instance.main"), "{what}: {all:?}");
        let plan = ctx.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            plan.code,
            Some(0),
            "{what}: plan after apply:\n{}",
            plan.all()
        );

        // The same for destroy.
        let delay = rng.below(MAX_DELAY_MS + 1);
        let what = format!("seed {seed} destroy (kill at {delay} ms)");
        runs += 1;
        if run_and_kill(&ctx, "destroy", delay, &what) {
            kills += 1;
            assert_consistent_partial(&ctx, &what);
        }
        let run = ctx.run_env(&["destroy", "--auto-approve"], FAST_BUT_NOT_INSTANT);
        runs += 1;
        assert_eq!(run.code, Some(0), "{what}: final destroy:\n{}", run.all());
        assert!(
            ctx.sim_objects().is_empty(),
            "{what}: left in the cloud after destroy: {:?}",
            ctx.sim_objects()
        );
        assert!(
            ctx.state_addresses().is_empty(),
            "{what}: {:?}",
            ctx.state_addresses()
        );
    }
    println!("crash test: {iterations} iterations, {runs} runs, {kills} killed with SIGKILL");
    assert!(
        kills >= iterations as usize,
        "only {kills} of {runs} runs were killed; the test is not exercising crashes"
    );
}

/// After a killed destroy: at most one object per address (no duplicates can come from
/// a delete), and every object the state still records exists.
fn assert_consistent_partial(ctx: &TestContext, what: &str) {
    let objects = ctx.sim_objects();
    let mut seen = BTreeSet::new();
    for o in objects.values() {
        assert!(
            seen.insert(o["address"].as_str().unwrap().to_string()),
            "{what}: duplicate {}",
            o["address"]
        );
    }
}

/// Sends SIGINT to `pid` (std can only send SIGKILL).
pub(crate) fn sigint(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT {pid}");
}

/// Waits until the state records a pending resource (a slow create was accepted).
fn wait_for_pending(ctx: &TestContext) {
    let seen = wait_until(Duration::from_secs(30), || {
        std::fs::read(ctx.state_path())
            .ok()
            .is_some_and(|b| String::from_utf8_lossy(&b).contains("\"pending\""))
    });
    assert!(seen, "no resource became pending");
}

const SLOW: &[(&str, &str)] = &[
    ("FLYTEINFRA_SIMULATE_POLLS", "200"),
    ("FLYTEINFRA_SIMULATE_POLL_MS", "50"),
];

#[test]
fn ctrl_c_once_records_pending_and_the_next_run_resumes() {
    let ctx = TestContext::minimal();
    let child = ctx.spawn(&["apply", "--auto-approve"], SLOW);
    wait_for_pending(&ctx);
    sigint(child.id());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted:"), "{stderr}");
    let pending: Vec<String> = ctx.state()["resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["status"] == "pending")
        .map(|(a, _)| a.clone())
        .collect();
    assert!(
        !pending.is_empty(),
        "the accepted creates are recorded as pending"
    );
    let creates_before = ctx.sim()["calls"]["create"].as_u64().unwrap();
    let objects_before = ctx.sim_objects().len();
    ctx.run_env(
        &["apply", "--auto-approve"],
        &[("FLYTEINFRA_SIMULATE_POLLS", "2")],
    )
    .expect_code(0);
    // The pending resources were waited for, not created again.
    let creates_after = ctx.sim()["calls"]["create"].as_u64().unwrap();
    let new_objects = ctx.sim_objects().len() - objects_before;
    assert_eq!(creates_after - creates_before, new_objects as u64);
    assert_consistent(&ctx, "after Ctrl-C once");
}

#[test]
fn ctrl_c_twice_exits_at_once_and_the_next_run_converges() {
    let ctx = TestContext::minimal();
    // Slow calls, so calls are still in flight after the first interrupt.
    let mut env = SLOW.to_vec();
    env.push(("FLYTEINFRA_SIMULATE_DELAY_MS", "1500"));
    let child = ctx.spawn(&["apply", "--auto-approve"], &env);
    // The first creates are in flight (each call takes 1.5 s): interrupt once, then again.
    let intents = wait_until(Duration::from_secs(30), || {
        std::fs::read(ctx.state_path())
            .ok()
            .is_some_and(|b| String::from_utf8_lossy(&b).contains("\"token\""))
    });
    assert!(intents, "no create intent was recorded");
    sigint(child.id());
    std::thread::sleep(Duration::from_millis(200));
    sigint(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_state_files_parse(&ctx, "after Ctrl-C twice");
    ctx.run_env(
        &["apply", "--auto-approve"],
        &[("FLYTEINFRA_SIMULATE_POLLS", "2")],
    )
    .expect_code(0);
    assert_consistent(&ctx, "after Ctrl-C twice");
}

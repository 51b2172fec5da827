//! Ask first: `apply` and `destroy` show the plan and ask on a terminal, refuse without
//! one (unless `--auto-approve`), a saved plan is not asked again and takes no flags that
//! would shape a new plan; `plan --destroy` saves a destroy for review; `--replace` and
//! `--refresh-only`. The simulated cloud for the CLI's behaviour, moto for the real provider.

use std::collections::BTreeSet;
use std::process::Stdio;

use rexpect::session::spawn_command;
use serde_json::Value;

use crate::aws::{APPLY, clients, config, rt, unique_name};
use crate::util::{Run, TestContext, parse_json};

/// Operations a command sent to AWS, from `FLYTEINFRA_LOG_CALLS=1`'s per-operation list.
fn aws_operations(run: &Run) -> Vec<String> {
    let mut lines = run.stderr.lines();
    lines.find(|l| l.starts_with("AWS API calls: "));
    lines
        .map_while(|l| {
            let (n, op) = l.trim().split_once(char::is_whitespace)?;
            n.parse::<u64>().ok()?;
            Some(op.trim().to_string())
        })
        .collect()
}

/// Whether an AWS operation only reads.
fn reads_only(op: &str) -> bool {
    let name = op.rsplit(['.', ':']).next().unwrap_or(op);
    ["Describe", "Get", "List", "Head"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[track_caller]
pub(crate) fn assert_reads_only(run: &Run) {
    let ops = aws_operations(run);
    assert!(!ops.is_empty(), "no call list:\n{}", run.stderr);
    let writes: Vec<&String> = ops.iter().filter(|o| !reads_only(o)).collect();
    assert!(
        writes.is_empty(),
        "mutating calls: {writes:?}\n{}",
        run.stderr
    );
}

/// The cloud id state records for `addr`.
fn state_id(ctx: &TestContext, addr: &str) -> String {
    ctx.state()["resources"][addr]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id for {addr} in state"))
        .to_string()
}

/// The simulated cloud's call counts of operations that change something.
fn sim_mutations(ctx: &TestContext) -> u64 {
    if !ctx.sim_path().exists() {
        return 0; // never called
    }
    let sim = ctx.sim();
    ["create", "update", "delete"]
        .iter()
        .map(|op| sim["calls"][op].as_u64().unwrap_or(0))
        .sum()
}

#[test]
fn apply_and_destroy_refuse_without_a_terminal_or_auto_approve() {
    let ctx = TestContext::minimal();
    let run = ctx.run(&["apply"]);
    run.expect_code(1);
    let refusal: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(refusal.len(), 1, "{}", run.stderr);
    assert!(refusal[0].contains("--auto-approve"), "{}", run.stderr);
    assert!(
        refusal[0].contains("flyteinfra plan --out FILE"),
        "{}",
        run.stderr
    );
    assert!(ctx.sim_objects().is_empty());
    assert_eq!(sim_mutations(&ctx), 0);

    ctx.apply();
    let objects = ctx.sim_objects();
    let addresses = ctx.state_addresses();
    let mutations = sim_mutations(&ctx);
    let run = ctx.run(&["destroy"]);
    run.expect_code(1);
    assert!(run.stderr.contains("--auto-approve"), "{}", run.stderr);
    assert!(
        run.stderr.contains("flyteinfra plan --destroy --out FILE"),
        "{}",
        run.stderr
    );
    assert_eq!(ctx.sim_objects(), objects);
    assert_eq!(ctx.state_addresses(), addresses);
    assert_eq!(sim_mutations(&ctx), mutations, "destroy changed the cloud");
}

#[test]
fn a_plan_without_changes_asks_nothing() {
    let ctx = TestContext::minimal();
    ctx.apply();
    let run = ctx.run(&["apply"]);
    run.expect_code(0);
    assert!(run.stderr.contains("No changes."), "{}", run.stderr);
}

/// Runs the binary on a pseudo-terminal, answers the question with `answer`, and returns
/// its exit code and what it printed.
fn answer(ctx: &TestContext, args: &[&str], answer: &str) -> (i32, String) {
    let mut cmd = ctx.command(args, &[]);
    // The terminal is the process's stdin, stdout and stderr.
    cmd.stdin(Stdio::inherit());
    let mut p = spawn_command(cmd, Some(60_000)).expect("spawn on a pty");
    let before = p
        .exp_string("Do you want to perform these actions? Only 'yes' will be accepted:")
        .expect("the question");
    p.send_line(answer).unwrap();
    let after = p.exp_eof().expect("the end");
    let code = match p.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => code,
        other => panic!("{other:?}"),
    };
    (code, format!("{before}{after}"))
}

#[test]
fn on_a_terminal_no_changes_nothing_and_yes_applies() {
    let ctx = TestContext::minimal();
    let (code, out) = answer(&ctx, &["apply"], "no");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("will be created"),
        "the plan is shown first:\n{out}"
    );
    assert!(out.contains("Apply cancelled"), "{out}");
    assert!(ctx.sim_objects().is_empty());
    assert_eq!(sim_mutations(&ctx), 0);

    let (code, out) = answer(&ctx, &["apply"], "yes");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Apply complete"), "{out}");
    assert!(!ctx.sim_objects().is_empty());
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    let objects = ctx.sim_objects();
    let (code, out) = answer(&ctx, &["destroy"], "y");
    assert_eq!(code, 1, "only `yes` is yes:\n{out}");
    assert!(out.contains("Destroy cancelled"), "{out}");
    assert_eq!(ctx.sim_objects(), objects);

    let (code, out) = answer(&ctx, &["destroy"], "yes");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Destroy complete"), "{out}");
    assert!(ctx.sim_objects().is_empty());
}

#[test]
fn a_saved_plan_is_not_asked_and_takes_no_plan_shaping_flags() {
    let ctx = TestContext::minimal();
    ctx.run(&["plan", "--out", "p.plan"]).ok();
    for flags in [
        &["--target", "aws_vpc.main"][..],
        &["--refresh=false"],
        &["--refresh=true"],
        &["--replace", "aws_vpc.main"],
        &["--refresh-only"],
    ] {
        let mut args = vec!["apply", "p.plan"];
        args.extend(flags);
        let run = ctx.run(&args);
        run.expect_code(1);
        let flag = flags[0].split('=').next().unwrap();
        assert!(
            run.stderr.contains("usage:") && run.stderr.contains(flag),
            "{flags:?}:\n{}",
            run.stderr
        );
        assert!(!ctx.sim_path().exists(), "{flags:?} called the cloud");
    }
    // No terminal, no `--auto-approve`: the saved plan was the review.
    let run = ctx.run(&["apply", "p.plan"]);
    run.expect_code(0);
    assert!(run.stderr.contains("Apply complete"), "{}", run.stderr);
}

#[test]
fn plan_destroy_is_reviewed_saved_and_applied() {
    let ctx = TestContext::minimal();
    ctx.apply();
    let n = ctx.state_addresses().len();
    let plan = ctx.run(&[
        "plan",
        "--destroy",
        "--detailed-exitcode",
        "--out",
        "d.plan",
    ]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("# aws_db_instance.main will be destroyed"),
        "{}",
        plan.stdout
    );
    // A saved plan is only a plan: nothing was deleted yet.
    assert_eq!(ctx.state_addresses().len(), n);
    let json = ctx.run(&["plan", "--destroy", "--json"]);
    json.ok();
    let v = parse_json(&json.stdout);
    assert_eq!(v["destroy"], true);
    assert!(
        v["resource_changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["action"] == "delete")
    );

    let run = ctx.run(&["apply", "d.plan"]);
    run.expect_code(0);
    assert!(run.stderr.contains("Destroy complete"), "{}", run.stderr);
    assert!(ctx.sim_objects().is_empty());
    assert!(ctx.state_addresses().is_empty());
    assert!(ctx.state()["outputs"].as_object().unwrap().is_empty());
    // Applied once: the state moved, so the plan is stale now.
    ctx.run(&["apply", "d.plan"]).expect_code(1);

    for conflicting in ["--replace=aws_vpc.main", "--refresh-only"] {
        let run = ctx.run(&["plan", "--destroy", conflicting]);
        run.expect_code(1);
        assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    }
}

#[test]
fn replace_is_a_requested_replace() {
    let ctx = TestContext::minimal();
    ctx.apply();
    let plan = ctx.run(&[
        "plan",
        "--detailed-exitcode",
        "--replace",
        "aws_s3_bucket.metadata",
    ]);
    plan.expect_code(2);
    assert!(
        plan.stdout.contains(
            "# aws_s3_bucket.metadata must be replaced (DATA LOSS: deleting it destroys its data)"
        ),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("# (because you asked: `--replace`)"),
        "{}",
        plan.stdout
    );
    assert!(
        // The roles' policies name the bucket's ARN, unknown until the new bucket exists.
        plan.stdout
            .contains("Plan: 1 to add, 2 to change, 1 to destroy."),
        "{}",
        plan.stdout
    );
    let json = ctx.run(&["plan", "--json", "--replace", "aws_s3_bucket.metadata"]);
    let v = parse_json(&json.stdout);
    assert_eq!(v["format_version"], 2);
    assert_eq!(
        v["notes"],
        serde_json::json!([
            {"kind": "replace_requested", "address": "aws_s3_bucket.metadata"},
            {"kind": "expected_duration", "seconds": 2, "chain": ["aws_s3_bucket.metadata"]},
        ])
    );

    let old = state_id(&ctx, "aws_s3_bucket.metadata");
    let run = ctx.run(&[
        "apply",
        "--auto-approve",
        "--replace",
        "aws_s3_bucket.metadata",
    ]);
    run.expect_code(0);
    assert!(
        run.stderr.contains("1 added, 2 changed, 1 destroyed"),
        "{}",
        run.stderr
    );
    assert!(!ctx.sim_objects().contains_key(&old), "the old one is gone");
    assert!(
        ctx.sim_objects()
            .contains_key(&state_id(&ctx, "aws_s3_bucket.metadata"))
    );
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    let run = ctx.run(&["plan", "--replace", "aws_s3_bucket.nope"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("cannot replace `aws_s3_bucket.nope`"),
        "{}",
        run.stderr
    );
    ctx.run(&["plan", "--replace", "not an address"])
        .expect_code(1);
}

#[test]
fn refresh_only_records_what_the_cloud_has_and_changes_nothing() {
    let ctx = TestContext::minimal();
    ctx.apply();
    let bucket = state_id(&ctx, "aws_s3_bucket.metadata");
    let vpc = state_id(&ctx, "aws_vpc.main");
    // Behind flyteinfra's back: a bucket deleted, a VPC attribute changed.
    ctx.edit_sim(|sim| {
        let objects = sim["objects"].as_object_mut().unwrap();
        objects.remove(&bucket);
        objects[&vpc]["attributes"]["cidr_block"] = "10.99.0.0/16".into();
    });
    let mutations = sim_mutations(&ctx);
    let plan = ctx.run(&["plan", "--refresh-only", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("# aws_vpc.main has changed outside flyteinfra"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains(r#"~ cidr_block = "10.0.0.0/16" -> "10.99.0.0/16""#),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains(
            "# aws_s3_bucket.metadata has been deleted outside flyteinfra; apply removes it from state"
        ),
        "{}",
        plan.stdout
    );
    let run = ctx.run(&["apply", "--refresh-only", "--auto-approve"]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("Refresh complete: 1 changed, 1 removed from state"),
        "{}",
        run.stderr
    );
    assert_eq!(
        sim_mutations(&ctx),
        mutations,
        "refresh-only changed the cloud"
    );
    let state = ctx.state();
    assert_eq!(
        state["resources"]["aws_vpc.main"]["attributes"]["cidr_block"],
        "10.99.0.0/16"
    );
    assert!(!ctx.state_addresses().contains("aws_s3_bucket.metadata"));
    ctx.run(&["plan", "--refresh-only", "--detailed-exitcode"])
        .expect_code(0);
    // The config still wants what it wanted: a normal plan puts it back.
    let plan = ctx.run(&["plan"]);
    assert!(
        plan.stdout
            .contains("# aws_s3_bucket.metadata will be created"),
        "{}",
        plan.stdout
    );
    assert!(
        ctx.run(&["plan", "--refresh-only", "--refresh=false"])
            .stderr
            .contains("cannot be combined with `--refresh=false`")
    );
}

/// The same promises against the real AWS provider and moto: the refusal sends no
/// mutating call, `--replace` of a bucket shows DATA LOSS, of the protected database is
/// refused, `--refresh-only` after an out-of-band tag change and delete sends only reads,
/// and the destroy goes through a saved `plan --destroy`.
#[test]
fn aws_ask_first_replace_refresh_only_and_saved_destroy() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let name = unique_name();
    let protected =
        config(&name).replace("deletion_protection: false", "deletion_protection: true");
    let ctx = TestContext::aws(&protected);
    let cleanup = Cleanup(&ctx, config(&name));
    let log = [("FLYTEINFRA_LOG_CALLS", "1")];

    let refused = ctx.run_env(&["apply"], &log);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("--auto-approve"),
        "{}",
        refused.stderr
    );
    assert_reads_only(&refused);

    ctx.apply();
    let plan = ctx.run(&["plan", "--replace", "aws_s3_bucket.data"]);
    plan.ok();
    assert!(
        plan.stdout.contains(
            "# aws_s3_bucket.data must be replaced (DATA LOSS: deleting it destroys its data)"
        ),
        "{}",
        plan.stdout
    );
    let db = ctx.run_env(
        &[
            "apply",
            "--auto-approve",
            "--replace",
            "aws_db_instance.main",
        ],
        &log,
    );
    db.expect_code(1);
    assert!(db.stderr.contains("deletion_protection"), "{}", db.stderr);
    assert_reads_only(&db);
    let plan = ctx.run(&["plan", "--replace", "aws_db_instance.main"]);
    assert!(
        plan.stdout.contains(
            "`aws_db_instance.main` has deletion protection on (`deletion_protection = true`)"
        ),
        "{}",
        plan.stdout
    );

    // Behind flyteinfra's back: the VPC's Name tag changed, the data bucket deleted.
    let vpc = state_id(&ctx, "aws_vpc.main");
    let bucket = state_id(&ctx, "aws_s3_bucket.data");
    rt.block_on(async {
        let tag = aws_sdk_ec2::types::Tag::builder()
            .key("Name")
            .value("renamed-by-hand")
            .build();
        c.ec2
            .create_tags()
            .resources(&vpc)
            .tags(tag)
            .send()
            .await
            .unwrap();
        c.s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    });
    let plan = ctx.run(&["plan", "--refresh-only", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("# aws_vpc.main has changed outside flyteinfra"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("renamed-by-hand"), "{}", plan.stdout);
    assert!(
        plan.stdout
            .contains("# aws_s3_bucket.data has been deleted outside flyteinfra"),
        "{}",
        plan.stdout
    );
    let refreshed = ctx.run_env(&["apply", "--refresh-only", "--auto-approve"], &log);
    refreshed.expect_code(0);
    assert_reads_only(&refreshed);
    let state = ctx.state();
    assert_eq!(
        state["resources"]["aws_vpc.main"]["attributes"]["tags"]["Name"],
        "renamed-by-hand"
    );
    let addresses: BTreeSet<String> = state["resources"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(!addresses.contains("aws_s3_bucket.data"), "{addresses:?}");
    ctx.run(&["plan", "--refresh-only", "--detailed-exitcode"])
        .expect_code(0);

    // Protection off (and the config's tag and bucket back), then the destroy as a saved plan.
    ctx.write_config(&config(&name));
    ctx.apply();
    let plan = ctx.run(&["plan", "--destroy", "--out", "d.plan"]);
    plan.ok();
    assert!(
        plan.stdout
            .contains("# aws_db_instance.main will be destroyed"),
        "{}",
        plan.stdout
    );
    let destroyed = ctx.run(&["apply", "d.plan"]);
    destroyed.expect_code(0);
    assert!(
        destroyed.stderr.contains("Destroy complete"),
        "{}",
        destroyed.stderr
    );
    let left: Value = ctx.state()["resources"].clone();
    assert_eq!(left, serde_json::json!({}), "left in state");
    drop(cleanup);
}

/// Destroys a deployment a failed test left behind (protection off first), so moto holds
/// nothing of it for the tests after.
struct Cleanup<'a>(&'a TestContext, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.write_config(&self.1);
            let _ = self.0.run(&["apply", "--auto-approve"]);
            let _ = self.0.run(&["destroy", "--auto-approve"]);
        }
    }
}

/// Runs `plan` on a pseudo-terminal (stdout a terminal) with `env`, returning its output.
fn plan_on_a_terminal(ctx: &TestContext, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = ctx.command(args, &[]);
    // The developer's own `NO_COLOR` must not decide the test.
    cmd.env_remove("NO_COLOR").envs(env.iter().copied());
    cmd.stdin(Stdio::inherit());
    let mut p = spawn_command(cmd, Some(60_000)).expect("spawn on a pty");
    let out = p.exp_eof().expect("the end");
    match p.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, 0) => {}
        other => panic!("{other:?}: {out}"),
    }
    out
}

/// The plan is coloured on a terminal, and never with `NO_COLOR` or `--no-color`, nor
/// when stdout is not a terminal; its symbols are there either way.
#[test]
fn colour_only_on_a_terminal_and_never_when_asked_not_to() {
    let ctx = TestContext::minimal();
    let coloured = plan_on_a_terminal(&ctx, &["plan"], &[]);
    assert!(
        coloured.contains("\x1b[32m+\x1b[0m resource"),
        "{coloured:?}"
    );
    for (args, env) in [
        (&["plan"][..], &[("NO_COLOR", "1")][..]),
        (&["plan", "--no-color"], &[]),
    ] {
        let plain = plan_on_a_terminal(&ctx, args, env);
        assert!(!plain.contains('\x1b'), "{args:?} {env:?}: {plain:?}");
        assert!(plain.contains("  + resource"), "{plain}");
    }
    let piped = ctx.run(&["plan"]);
    piped.ok();
    assert!(!piped.stdout.contains('\x1b'), "{}", piped.stdout);
    assert!(piped.stdout.contains("  + resource"), "{}", piped.stdout);
}

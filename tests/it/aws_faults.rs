//! The real AWS provider against moto through the fault-injecting proxy (a test double,
//! `tests/aws-proxy`): throttling, 5xx and lost responses, `kill -9` during slow creates, RDS
//! sub-states in the progress lines, and a node group that fails to create.
//!
//! Every test that applies holds `aws::APPLY` (moto gives every EKS cluster the same OIDC
//! issuer) and destroys what it made, so moto stays clean for the other tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use flyteinfra_provider_aws::AwsClients;

use crate::aws::{APPLY, clients, config, final_snapshots, listing, rt, unique_name};
use crate::util::{Run, TestContext, finish, read_json, wait_until};
use flyteinfra_aws_proxy::{NodeGroupFailure, Proxy, RdsWalk, Rng, Stats};

/// What a clean apply of [`config`] makes, by listing kind (the node group included).
const CLEAN_SHAPE: &[(&str, usize)] = &[
    ("bucket", 2),
    ("db", 1),
    ("dbsubnets", 1),
    ("eip", 1),
    ("eks", 1),
    ("igw", 1),
    ("nat", 1),
    ("nodegroup", 1),
    ("oidc", 1),
    ("role", 4),
    ("rtb", 3),
    ("sg", 1),
    ("sgr", 1),
    ("subnet", 4),
    ("vpc", 1),
];

/// The poll interval of the RDS and node group waits in these tests (5 s / 10 s otherwise).
const FAST_POLL: (&str, &str) = ("FLYTEINFRA_AWS_POLL_MS", "200");

/// One deployment, run through its own proxy in front of this test binary's moto.
struct Fixture {
    name: String,
    ctx: TestContext,
    proxy: Proxy,
    rt: tokio::runtime::Runtime,
    clients: AwsClients,
    baseline: BTreeSet<String>,
}

impl Fixture {
    fn new() -> Fixture {
        let name = unique_name();
        let ctx = TestContext::aws(&config(&name));
        let proxy = Proxy::start(crate::moto::upstream());
        let rt = rt();
        let clients = rt.block_on(clients());
        let baseline = rt.block_on(full_listing(&clients, &name));
        Fixture {
            name,
            ctx,
            proxy,
            rt,
            clients,
            baseline,
        }
    }

    /// Runs the binary through the proxy.
    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        // Calls in flight when a run dies land within a second here (delays are < 1 s).
        let mut env = vec![
            ("AWS_ENDPOINT_URL", self.proxy.url()),
            ("FLYTEINFRA_CREATE_SETTLE_SECS", "2"),
        ];
        env.extend_from_slice(extra);
        self.ctx.run_env(args, &env)
    }

    /// What moto has of this deployment (not through this fixture's proxy).
    fn listing(&self) -> BTreeSet<String> {
        self.rt.block_on(full_listing(&self.clients, &self.name))
    }

    /// The state's objects, in the listing's `kind:id` form.
    fn state_listing(&self) -> BTreeSet<String> {
        state_listing(&self.ctx)
    }

    /// moto holds exactly what state says, in a clean run's shape: no duplicate, no orphan.
    #[track_caller]
    fn assert_converged(&self) {
        let moto = self.listing();
        let state = self.state_listing();
        let orphans: Vec<_> = moto.difference(&state).collect();
        let missing: Vec<_> = state.difference(&moto).collect();
        assert!(
            orphans.is_empty() && missing.is_empty(),
            "in moto, not in state (orphans/duplicates): {orphans:?}\nin state, not in moto: {missing:?}"
        );
        assert_eq!(shape(&moto), clean_shape(), "{moto:#?}");
        let st = self.ctx.state();
        for (addr, rs) in st["resources"].as_object().unwrap() {
            assert_eq!(rs["status"], "ready", "{addr}: {rs}");
        }
        assert!(
            st["intents"].as_object().is_none_or(|i| i.is_empty()),
            "{}",
            st["intents"]
        );
    }

    /// `destroy` (through the proxy, whatever its rules), then moto is back to the baseline.
    #[track_caller]
    fn destroy(&self) -> Stats {
        self.run(&["destroy", "--auto-approve"], &[]).ok();
        let stats = self.proxy.take_stats();
        self.assert_destroyed();
        stats
    }

    /// A clean `plan --detailed-exitcode` after a command that succeeded: no changes (an
    /// object adopted after a crash was finished by its re-sent create, not left half-made).
    #[track_caller]
    fn settle(&self) {
        self.proxy.rules().clear();
        self.run(&["plan", "--detailed-exitcode"], &[])
            .expect_code(0);
    }

    /// moto is back to the baseline, plus one final snapshot; state is empty.
    #[track_caller]
    fn assert_destroyed(&self) {
        assert_eq!(self.listing(), self.baseline);
        let snaps = self.rt.block_on(final_snapshots(&self.clients, &self.name));
        assert_eq!(snaps.len(), 1, "{snaps:?}");
        let st = self.ctx.state();
        assert!(
            st["resources"].as_object().unwrap().is_empty(),
            "{}",
            st["resources"]
        );
    }
}

/// [`listing`] plus the deployment's EKS node groups (`nodegroup:cluster:name`).
async fn full_listing(c: &AwsClients, name: &str) -> BTreeSet<String> {
    let mut out = listing(c, name).await;
    let clusters: Vec<String> = out
        .iter()
        .filter_map(|k| k.strip_prefix("eks:").map(str::to_string))
        .collect();
    for cluster in clusters {
        let ngs = c
            .eks
            .list_nodegroups()
            .cluster_name(&cluster)
            .send()
            .await
            .unwrap();
        for ng in ngs.nodegroups() {
            out.insert(format!("nodegroup:{cluster}:{ng}"));
        }
    }
    out
}

/// The listing kind of a resource type (`None`: not a cloud object).
fn kind(type_name: &str) -> Option<&'static str> {
    Some(match type_name {
        "aws_vpc" => "vpc",
        "aws_subnet" => "subnet",
        "aws_internet_gateway" => "igw",
        "aws_nat_gateway" => "nat",
        "aws_route_table" => "rtb",
        "aws_security_group" => "sg",
        "aws_vpc_security_group_ingress_rule" => "sgr",
        "aws_eip" => "eip",
        "aws_db_instance" => "db",
        "aws_db_subnet_group" => "dbsubnets",
        "aws_s3_bucket" => "bucket",
        "aws_iam_role" => "role",
        "aws_iam_openid_connect_provider" => "oidc",
        "aws_eks_cluster" => "eks",
        "aws_eks_node_group" => "nodegroup",
        "random_password" => return None,
        other => panic!("no listing kind for `{other}`: extend `kind` and CLEAN_SHAPE"),
    })
}

fn state_listing(ctx: &TestContext) -> BTreeSet<String> {
    if !ctx.state_path().exists() {
        return BTreeSet::new();
    }
    let st = ctx.state();
    let mut out = BTreeSet::new();
    for (addr, rs) in st["resources"].as_object().unwrap() {
        let type_name = addr.split('.').next().unwrap();
        if let Some(k) = kind(type_name) {
            out.insert(format!("{k}:{}", rs["id"].as_str().unwrap()));
        }
    }
    out
}

fn shape(listing: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for item in listing {
        *out.entry(item.split(':').next().unwrap().to_string())
            .or_default() += 1;
    }
    out
}

fn clean_shape() -> BTreeMap<String, usize> {
    CLEAN_SHAPE
        .iter()
        .map(|(k, n)| (k.to_string(), *n))
        .collect()
}

/// The operations that create something (delayed in the kill test).
const CREATES: &[&str] = &[
    "CreateVpc",
    "CreateSubnet",
    "CreateInternetGateway",
    "AllocateAddress",
    "CreateNatGateway",
    "CreateRouteTable",
    "CreateSecurityGroup",
    "AuthorizeSecurityGroupIngress",
    "CreateDBSubnetGroup",
    "CreateDBInstance",
    "CreateBucket",
    "CreateRole",
    "CreateOpenIDConnectProvider",
    "CreateCluster",
    "CreateNodegroup",
];

/// The fault mix of the first test: 20 % of calls throttled or failed with a 500 before
/// they reach moto, 5 % of the others lose their response after taking effect.
fn heavy_faults(proxy: &Proxy, seed: u64) {
    let mut r = proxy.rules();
    r.rng = Rng::new(seed);
    r.throttle = 0.10;
    r.server_error = 0.10;
    r.lose_response = 0.05;
}

/// At most this many runs of one command under [`heavy_faults`].
const MAX_RUNS: usize = 5;

/// Runs `args` until it succeeds (at most [`MAX_RUNS`] times). After every run, whatever
/// its outcome: state parses, and moto never holds more of any kind than a clean run makes
/// (a retried or reconciled create never duplicates). Returns the runs' exit codes.
fn run_until_success(f: &Fixture, args: &[&str]) -> Vec<i32> {
    let mut codes = Vec::new();
    for _ in 0..MAX_RUNS {
        let run = f.run(args, &[]);
        let code = run.code.expect("no signal");
        assert!(code == 0 || code == 1, "{run:?}");
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        read_json(&f.ctx.state_path());
        let moto = shape(&f.listing());
        let clean = clean_shape();
        for (k, n) in &moto {
            assert!(
                n <= &clean[k],
                "{n} `{k}` in moto after a faulty run: {moto:?}"
            );
        }
        codes.push(code);
        if code == 0 {
            return codes;
        }
        // What made it fail, for the report: each failure is a retryable error that ran out
        // of attempts.
        for l in run.stderr.lines().filter(|l| l.starts_with("error: ")) {
            println!("  run {}: {l}", codes.len());
            let addr = l.split('`').nth(1).unwrap_or("?");
            for p in run
                .stderr
                .lines()
                .filter(|p| p.contains(&format!("] {addr}: ")))
            {
                println!("      {p}");
            }
        }
    }
    panic!(
        "`{}` did not succeed in {MAX_RUNS} runs: {codes:?}",
        args.join(" ")
    );
}

#[test]
fn aws_apply_converges_under_throttling_5xx_and_lost_responses() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    heavy_faults(&f.proxy, 20_26);
    let t = Instant::now();
    let apply_runs = run_until_success(&f, &["apply", "--auto-approve"]);
    let apply_time = t.elapsed();
    let apply_stats = f.proxy.take_stats();
    f.assert_converged();

    // No faults for the check: the deployment is what the config says.
    f.settle();
    let plan_stats = f.proxy.take_stats();

    heavy_faults(&f.proxy, 20_27);
    let t = Instant::now();
    let destroy_runs = run_until_success(&f, &["destroy", "--auto-approve"]);
    let destroy_time = t.elapsed();
    let destroy_stats = f.proxy.take_stats();
    f.proxy.rules().clear();
    f.assert_destroyed();
    for (phase, s, time, runs) in [
        ("apply (faults)", &apply_stats, apply_time, &apply_runs),
        ("plan (clean)", &plan_stats, Duration::ZERO, &vec![0]),
        (
            "destroy (faults)",
            &destroy_stats,
            destroy_time,
            &destroy_runs,
        ),
    ] {
        println!("--- {phase}: runs {runs:?} in {time:.1?}: {s}");
    }
    for s in [&apply_stats, &destroy_stats] {
        assert!(s.total().faults() > 0, "no fault was injected: {s}");
    }
}

/// ONE apply and ONE destroy converge under the same faults: the SDK retries each request
/// that is safe to repeat, and the engine retries whole operations on top.
#[test]
fn aws_one_apply_and_one_destroy_converge_under_heavy_faults() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    heavy_faults(&f.proxy, 20_26);
    let apply = f.run(&["apply", "--auto-approve"], &[]);
    f.proxy.rules().clear();
    if apply.code != Some(0) {
        eprintln!("apply under faults failed:\n{}", apply.stderr);
        // Leave moto clean before failing.
        f.run(&["destroy", "--auto-approve"], &[]).ok();
        apply.ok();
    }
    f.assert_converged();
    heavy_faults(&f.proxy, 20_27);
    let destroy = f.run(&["destroy", "--auto-approve"], &[]);
    f.proxy.rules().clear();
    if destroy.code != Some(0) {
        f.run(&["destroy", "--auto-approve"], &[]).ok();
        destroy.ok();
    }
    f.assert_destroyed();
}

/// Create calls the proxy has received so far.
fn creates_seen(proxy: &Proxy) -> u64 {
    let stats = proxy.stats();
    CREATES
        .iter()
        .map(|op| stats.0.get(*op).map_or(0, |s| s.calls))
        .sum()
}

/// Lets `child` run until the proxy has received `creates` create calls, then `jitter`
/// more, and kills it (SIGKILL) unless it has exited by then.
fn kill_after(
    mut child: std::process::Child,
    proxy: &Proxy,
    creates: u64,
    jitter: Duration,
) -> (Run, bool) {
    let mut deadline: Option<Instant> = None;
    loop {
        if child.try_wait().unwrap().is_some() {
            return (finish(child), false);
        }
        if deadline.is_none() && creates_seen(proxy) >= creates {
            deadline = Some(Instant::now() + jitter);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            child.kill().unwrap();
            return (finish(child), true);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn aws_kill_9_during_delayed_creates_converges() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let mut report = Vec::new();
    for seed in 1..=4u64 {
        let f = Fixture::new();
        let mut rng = Rng::new(seed);
        {
            let mut r = f.proxy.rules();
            r.rng = Rng::new(seed * 1000);
            for op in CREATES {
                r.delays.insert(op.to_string(), (300, 800));
            }
        }
        let kills = 1 + u64::from(rng.chance(0.5));
        let mut trial = Vec::new();
        let mut killed_runs = 0;
        let mut reconciled = Reconciled::default();
        // Intents the last killed run left in state: the next run reconciles every one.
        let mut left = 0;
        for _ in 0..kills {
            // A clean apply sends 23 creates: die after 1 to 20 more of them (each delayed
            // 300-800 ms, half before and half after it reaches moto), plus 0-400 ms. The
            // first run therefore always dies.
            let creates = creates_seen(&f.proxy) + rng.range(1, 20);
            let jitter = Duration::from_millis(rng.range(0, 400));
            let env = [
                ("AWS_ENDPOINT_URL", f.proxy.url()),
                ("FLYTEINFRA_CREATE_SETTLE_SECS", "2"),
            ];
            let (run, killed) = kill_after(
                f.ctx.spawn(&["apply", "--auto-approve"], &env),
                &f.proxy,
                creates,
                jitter,
            );
            f.ctx.break_lease();
            let at = format!("create #{creates} + {jitter:?}");
            let r = Reconciled::of(&run.stderr);
            assert_eq!(
                r.total(),
                left,
                "the {left} intents the killed run left are each adopted, resumed or dropped:\n{}",
                run.stderr
            );
            reconciled.add(&r);
            if killed {
                assert_eq!(run.signal, Some(9), "{run:?}");
                killed_runs += 1;
            } else {
                run.ok();
            }
            // Calls the dead run had sent may still take effect (as on AWS) while the next
            // run starts: it waits out the settle time before re-sending a create.
            // State is whole after every kill: it parses, and so does its backup.
            if f.ctx.state_path().exists() {
                read_json(&f.ctx.state_path());
            }
            if f.ctx.backup_path().exists() {
                read_json(&f.ctx.backup_path());
            }
            left = intents(&f.ctx);
            let st = state_listing(&f.ctx);
            let moto = f.listing();
            trial.push(format!(
                "{} at {at} ({} in state, {} in moto, {left} intents)",
                if killed { "killed" } else { "finished" },
                st.len(),
                moto.len()
            ));
        }
        let resumed = f.run(&["apply", "--auto-approve"], &[]);
        resumed.ok();
        let r = Reconciled::of(&resumed.stderr);
        assert_eq!(r.total(), left, "{}", resumed.stderr);
        reconciled.add(&r);
        assert!(
            killed_runs >= 1,
            "seed {seed}: no run was killed: {trial:?}"
        );
        assert!(
            reconciled.total() >= 1,
            "seed {seed}: no kill left an intent to reconcile: {trial:?}"
        );
        f.assert_converged();
        f.settle();
        f.assert_converged();
        let stats = f.proxy.take_stats();
        f.destroy();
        report.push(format!(
            "seed {seed}: {}; then converged ({} adopted, {} resumed, {} dropped intents; \
             {} calls, {} delayed)",
            trial.join(", "),
            reconciled.adopted,
            reconciled.resumed,
            reconciled.dropped,
            stats.total().calls,
            stats.total().delayed
        ));
    }
    for line in report {
        println!("{line}");
    }
}

/// Unfinished intents in the state file.
fn intents(ctx: &TestContext) -> usize {
    if !ctx.state_path().exists() {
        return 0;
    }
    ctx.state()["intents"].as_object().map_or(0, |i| i.len())
}

/// The intents a run reconciled, by outcome, from its notes.
#[derive(Debug, Default)]
struct Reconciled {
    adopted: usize,
    resumed: usize,
    dropped: usize,
}

impl Reconciled {
    fn of(stderr: &str) -> Reconciled {
        Reconciled {
            adopted: stderr.matches(": adopted `").count(),
            resumed: stderr
                .matches("an interrupted create is not in the cloud yet")
                .count(),
            dropped: stderr.matches("had not reached the cloud").count(),
        }
    }

    fn total(&self) -> usize {
        self.adopted + self.resumed + self.dropped
    }

    fn add(&mut self, o: &Reconciled) {
        self.adopted += o.adopted;
        self.resumed += o.resumed;
        self.dropped += o.dropped;
    }
}

#[test]
fn aws_progress_shows_rds_sub_status() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    f.proxy.rules().rds_walk = Some(RdsWalk::new(
        &format!("{}-db", f.name),
        &[
            "creating",
            "creating",
            "backing-up",
            "backing-up",
            "available",
        ],
    ));
    let apply = f.run(&["apply", "--auto-approve"], &[FAST_POLL]);
    apply.ok();
    let stats = f.proxy.take_stats();
    assert!(stats.0["DescribeDBInstances"].rewritten >= 4, "{stats}");
    let lines: Vec<&str> = apply
        .stderr
        .lines()
        .filter(|l| l.contains("aws_db_instance.main: "))
        .collect();
    let pos = |what: &str| {
        lines
            .iter()
            .position(|l| l.ends_with(&format!("aws_db_instance.main: {what}")))
            .unwrap_or_else(|| panic!("no `{what}` line in:\n{}", lines.join("\n")))
    };
    let (creating, backing_up, available, done) = (
        pos("creating"),
        pos("backing-up"),
        pos("available"),
        pos("done"),
    );
    assert!(
        creating < backing_up && backing_up < available && available < done,
        "{}",
        lines.join("\n")
    );
    // Each status shows once, when it changes.
    assert_eq!(
        lines.iter().filter(|l| l.ends_with(": backing-up")).count(),
        1,
        "{}",
        lines.join("\n")
    );
    println!("{}", lines.join("\n"));
    f.proxy.rules().clear();
    f.assert_converged();
    f.destroy();
}

#[test]
fn aws_node_group_create_failed_fails_fast_with_the_reason() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    let ng = format!("{}-nodes", f.name);
    f.proxy.rules().node_group_failure = Some(NodeGroupFailure::new(&ng, 1));
    let t = Instant::now();
    let failed = f.run(&["apply", "--auto-approve"], &[FAST_POLL]);
    let took = t.elapsed();
    failed.expect_code(1);
    assert!(took < Duration::from_secs(60), "{took:?}");
    let err = failed
        .stderr
        .lines()
        .find(|l| l.starts_with("error: `aws_eks_node_group.main`"))
        .unwrap_or_else(|| panic!("no error line for the node group:\n{}", failed.stderr));
    assert!(
        err.contains("CREATE_FAILED")
            && err.contains("NodeCreationFailure: Unhealthy nodes in the kubernetes cluster"),
        "{err}"
    );
    let st = f.ctx.state();
    assert_eq!(
        st["resources"]["aws_eks_node_group.main"]["status"], "tainted",
        "{st}"
    );
    // Everything that does not depend on the node group was made.
    for a in [
        "aws_s3_bucket.data",
        "aws_s3_bucket.metadata",
        "aws_db_instance.main",
        "aws_eks_cluster.main",
        "aws_iam_role.flyte_backend",
        "aws_iam_role.flyte_tasks",
    ] {
        assert_eq!(st["resources"][a]["status"], "ready", "{a}: {st}");
    }
    let moto = f.listing();
    assert_eq!(
        moto.iter().filter(|k| k.starts_with("bucket:")).count(),
        2,
        "{moto:?}"
    );
    let fail_stats = f.proxy.take_stats();

    // The cause gone, the next apply replaces the failed node group and converges.
    f.proxy.rules().clear();
    let again = f.run(&["apply", "--auto-approve"], &[FAST_POLL]);
    again.ok();
    assert!(
        again.stderr.contains("aws_eks_node_group.main")
            && again.stderr.contains("1 to add, 0 to change, 1 to destroy"),
        "{}",
        again.stderr
    );
    f.assert_converged();
    f.run(&["plan", "--detailed-exitcode"], &[]).expect_code(0);
    let again_stats = f.proxy.take_stats();
    f.destroy();
    println!(
        "failed apply in {took:.1?}: {}\nre-apply: {}",
        fail_stats, again_stats
    );
}

/// The run dies after CreateInternetGateway took effect and before AttachInternetGateway
/// reached the cloud. The next apply adopts the gateway (its intent) and finishes it (the
/// attachment), so the plan after it has no changes.
#[test]
fn aws_an_adopted_create_is_finished_by_the_next_apply() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    f.proxy
        .rules()
        .delays
        .insert("AttachInternetGateway".into(), (20_000, 20_000));
    let env = [("AWS_ENDPOINT_URL", f.proxy.url())];
    let mut child = f.ctx.spawn(&["apply", "--auto-approve"], &env);
    let reached = wait_until(Duration::from_secs(30), || {
        f.proxy.stats().0.contains_key("AttachInternetGateway")
    });
    child.kill().unwrap();
    finish(child);
    f.ctx.break_lease();
    assert!(reached, "{}", f.proxy.stats());
    f.proxy.rules().clear();
    let resumed = f.run(&["apply", "--auto-approve"], &[]);
    resumed.ok();
    assert!(
        resumed
            .stderr
            .contains("aws_internet_gateway.main: adopted `igw-"),
        "{}",
        resumed.stderr
    );
    let plan = f.run(&["plan", "--detailed-exitcode"], &[]);
    // Clean up first, whatever the outcome.
    f.run(&["apply", "--auto-approve"], &[]).ok();
    f.destroy();
    plan.expect_code(0);
}

/// A create the dead run had sent, which AWS carries out only after the next run has
/// started, is made once: the next run waits out the settle time before re-sending the
/// create with the same token, so the first one is found and adopted, never orphaned.
#[test]
fn aws_a_create_in_flight_when_the_run_died_is_not_duplicated() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    f.proxy.rules().hold.insert("CreateVpc".into(), 2_000);
    let env = [("AWS_ENDPOINT_URL", f.proxy.url())];
    let mut child = f.ctx.spawn(&["apply", "--auto-approve"], &env);
    let reached = wait_until(Duration::from_secs(30), || {
        f.proxy.stats().0.contains_key("CreateVpc")
    });
    child.kill().unwrap();
    finish(child);
    f.ctx.break_lease();
    assert!(reached, "{}", f.proxy.stats());
    // The next run starts while the first CreateVpc is still on its way: it waits out the
    // settle time (shortened here) before sending the create again with the same token.
    let next = f.run(
        &["apply", "--auto-approve"],
        &[("FLYTEINFRA_CREATE_SETTLE_SECS", "5")],
    );
    assert!(wait_until(Duration::from_secs(10), || f.proxy.in_flight() == 0));
    f.proxy.rules().clear();
    let orphans: Vec<String> = f
        .listing()
        .difference(&f.state_listing())
        .cloned()
        .collect();
    // Clean up first, whatever the outcome.
    f.rt.block_on(async {
        for o in &orphans {
            if let Some(vpc) = o.strip_prefix("vpc:") {
                f.clients.ec2.delete_vpc().vpc_id(vpc).send().await.unwrap();
            }
        }
    });
    f.destroy();
    next.ok();
    assert!(orphans.is_empty(), "orphans: {orphans:?}\n{}", next.stderr);
}

/// The calls a clean apply, a no-op plan and a destroy of the full stack make, counted by
/// the proxy (retries included). Each phase's calls are printed by operation. Budgets: 80 /
/// 32 / 65 (measured 73 / 32 / 62; before "Time to a working Flyte" 87 / 34 / 86). Every
/// call of the no-op plan is one read that drift detection needs: one batched describe per
/// EC2 type and per EKS and RDS object, the RDS subnet group's tags, four reads per bucket,
/// the IAM roles with their managed or inline policies, the OIDC provider, and the
/// caller's identity.
#[test]
fn aws_calls_per_phase_stay_within_budget() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    f.run(&["apply", "--auto-approve"], &[FAST_POLL]).ok();
    let apply = f.proxy.take_stats();
    f.assert_converged();
    f.run(&["plan", "--detailed-exitcode"], &[]).expect_code(0);
    let plan = f.proxy.take_stats();
    let destroy = f.destroy();
    for (phase, s) in [
        ("apply", &apply),
        ("no-op plan", &plan),
        ("destroy", &destroy),
    ] {
        println!("--- {phase}: {s}");
    }
    let (a, p, d) = (
        apply.total().calls,
        plan.total().calls,
        destroy.total().calls,
    );
    assert!(
        a <= 80 && p <= 32 && d <= 65,
        "apply {a}, no-op plan {p}, destroy {d}"
    );
}

/// The operations in `stats` that are not reads (Describe/Get/List/Head): a refusal
/// must have none.
fn mutating_ops(stats: &Stats) -> Vec<String> {
    stats
        .0
        .keys()
        .filter(|op| {
            !["Describe", "Get", "List", "Head"]
                .iter()
                .any(|p| op.starts_with(p))
        })
        .cloned()
        .collect()
}

/// A bucket holding one object version stops a destroy — and a saved destroy plan made
/// while it was empty — before the first delete call; with `storage.force_destroy`, every
/// version and delete marker goes and the destroy completes.
#[test]
fn aws_a_non_empty_bucket_blocks_destroy_until_force_destroy() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let f = Fixture::new();
    f.run(&["apply", "--auto-approve"], &[FAST_POLL]).ok();
    let st = f.ctx.state();
    let bucket = |a: &str| st["resources"][a]["id"].as_str().unwrap().to_string();
    let (data, metadata) = (
        bucket("aws_s3_bucket.data"),
        bucket("aws_s3_bucket.metadata"),
    );
    let plan_file = f.ctx.dir().join("destroy.plan");
    let plan_arg = plan_file.to_str().unwrap();
    f.run(&["plan", "--destroy", "--out", plan_arg], &[]).ok();
    let put = |bucket: &str, key: &str| {
        f.rt.block_on(
            f.clients
                .s3
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(b"x".to_vec().into())
                .send(),
        )
        .unwrap();
    };
    put(&data, "raw/one");
    f.proxy.take_stats();

    // The saved plan was made when the bucket was empty: it is checked again.
    let r = f.run(&["apply", plan_arg], &[]);
    r.expect_code(1);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("`aws_s3_bucket.data` (bucket `{data}`)")),
        "{}",
        r.stderr
    );
    let plan = f.run(&["plan", "--destroy"], &[]);
    plan.ok();
    assert!(
        plan.stdout
            .contains("`aws_s3_bucket.data` is not empty (≥ 1 object): apply will refuse"),
        "{}",
        plan.stdout
    );
    assert!(
        !plan
            .stdout
            .contains("`aws_s3_bucket.metadata` is not empty")
    );
    let r = f.run(&["destroy", "--auto-approve"], &[]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("storage.force_destroy: true"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("nothing was deleted"), "{}", r.stderr);
    let stats = f.proxy.take_stats();
    assert!(mutating_ops(&stats).is_empty(), "{stats}");
    // One probe per bucket per command: each of three commands asked about both.
    assert_eq!(stats.0["ListObjectVersions"].calls, 6, "{stats}");
    f.assert_converged();

    // Several versions of one key, a delete marker, and an object in the other bucket.
    put(&data, "raw/one");
    f.rt.block_on(
        f.clients
            .s3
            .delete_object()
            .bucket(&data)
            .key("raw/one")
            .send(),
    )
    .unwrap();
    put(&metadata, "metadata/flytesnacks/x");
    f.ctx.write_config(&format!(
        "{}storage:\n  force_destroy: true\n",
        config(&f.name)
    ));
    let plan = f.run(&["plan", "--destroy"], &[]);
    plan.ok();
    assert!(
        plan.stdout
            .contains("`aws_s3_bucket.data` is not empty (≥ 1 object): DATA LOSS"),
        "{}",
        plan.stdout
    );
    f.destroy();
    for b in [&data, &metadata] {
        let head = f.rt.block_on(f.clients.s3.head_bucket().bucket(b).send());
        assert!(head.is_err(), "bucket `{b}` still exists");
    }
}

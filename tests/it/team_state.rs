//! Team state through real processes: leases and fencing on the local backend and on S3
//! (moto), with the simulated cloud. Each scenario runs once per backend.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{MINIMAL, Run, TestContext, finish, wait_until};

/// Slow creates: EKS, RDS, NAT and the node group each take 50 polls of 100 ms.
const SLOW: &[(&str, &str)] = &[
    ("FLYTEINFRA_SIMULATE_POLLS", "50"),
    ("FLYTEINFRA_SIMULATE_POLL_MS", "100"),
];

/// The lease TTL of these configs.
const TTL: Duration = Duration::from_secs(2);

/// Where a scenario keeps its state.
#[derive(Clone, Copy, Debug)]
enum Store {
    Local,
    S3,
}

/// A deployment in a temp dir whose state lives in `store`.
struct Team {
    ctx: TestContext,
    store: Store,
    /// For S3: the bucket and the key prefix of this deployment.
    s3: Option<(String, String)>,
}

impl Team {
    fn new(store: Store) -> Team {
        Self::with_config(store, MINIMAL)
    }

    fn with_config(store: Store, base: &str) -> Team {
        let ctx = TestContext::new(base);
        let s3 = match store {
            Store::Local => None,
            Store::S3 => Some((
                crate::s3_state::shared_bucket().to_string(),
                format!("teams/{}", crate::aws::unique_name()),
            )),
        };
        let team = Team { ctx, store, s3 };
        team.ctx.write_config(&team.config(base));
        team
    }

    /// `base` with this store's `state:` section and a short lease.
    fn config(&self, base: &str) -> String {
        match &self.s3 {
            None => format!("{base}state:\n  local:\n    lease_ttl: 2s\n"),
            Some((bucket, prefix)) => format!(
                "{base}state:\n  s3:\n    bucket: {bucket}\n    key_prefix: {prefix}\n    region: us-east-1\n    lease_ttl: 2s\n"
            ),
        }
    }

    /// The environment a command needs for this store (S3: moto, static test keys).
    fn env(&self, extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, String)> {
        let mut env: Vec<(&str, String)> =
            extra.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
        if self.s3.is_some() {
            env.extend([
                ("AWS_ENDPOINT_URL", crate::moto::url().to_string()),
                ("AWS_ACCESS_KEY_ID", "testing".to_string()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
                ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
                ("HOME", self.ctx.dir().display().to_string()),
            ]);
        }
        env
    }

    fn command(&self, args: &[&str], extra: &[(&'static str, &'static str)]) -> Command {
        let env = self.env(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.ctx.command(args, &env)
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::from_output(self.command(args, &[]).output().expect("run flyteinfra"))
    }

    fn spawn(&self, args: &[&str], extra: &[(&'static str, &'static str)]) -> Child {
        self.command(args, extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start flyteinfra")
    }

    fn key(&self, cloud: &str, suffix: &str) -> String {
        let (_, prefix) = self.s3.as_ref().expect("an S3 store");
        format!("{prefix}/{cloud}.state.json{suffix}")
    }

    /// The stored lease record, if any.
    fn lease(&self) -> Option<Value> {
        let bytes = match &self.s3 {
            None => fs::read(self.ctx.lock_path()).ok()?,
            Some((bucket, _)) => crate::s3_state::object(bucket, &self.key("aws", ".lock"))?,
        };
        serde_json::from_slice(&bytes).ok()
    }

    /// The stored state document, if any.
    fn state(&self) -> Option<Value> {
        let bytes = match &self.s3 {
            None => fs::read(self.ctx.state_path()).ok()?,
            Some((bucket, _)) => crate::s3_state::object(bucket, &self.key("aws", ""))?,
        };
        Some(serde_json::from_slice(&bytes).expect("stored state is JSON"))
    }

    /// The simulated cloud's call counts.
    fn calls(&self) -> Value {
        self.ctx.sim()["calls"].clone()
    }

    /// Whether a stopped process may hold one of the short flocks others need: the
    /// simulated cloud's file lock, or (local store) the state directory's.
    fn flock_free(&self) -> bool {
        let mut paths = vec![self.ctx.sim_path().with_extension("lock")];
        if matches!(self.store, Store::Local) {
            paths.push(self.ctx.state_dir());
        }
        paths.iter().all(|p| {
            let Ok(f) = fs::File::open(p) else {
                return true;
            };
            let free = f.try_lock().is_ok();
            let _ = f.unlock();
            free
        })
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill {sig} failed");
}

/// Stops `child` outside any short critical section it shares with others.
fn stop_between_steps(team: &Team, child: &Child) {
    for _ in 0..100 {
        signal(child, "-STOP");
        // Give the kernel a moment to stop every thread before looking.
        std::thread::sleep(Duration::from_millis(20));
        if team.flock_free() {
            return;
        }
        signal(child, "-CONT");
        std::thread::sleep(Duration::from_millis(15));
    }
    panic!("could not stop the holder outside a critical section");
}

fn both<F: Fn(Store)>(f: F) {
    for store in [Store::Local, Store::S3] {
        f(store);
    }
}

#[test]
fn of_two_concurrent_applies_one_runs_and_the_other_names_the_holder() {
    both(|store| {
        let team = Team::new(store);
        let args = ["apply", "--auto-approve", "--lock-timeout", "0s"];
        let a = team.spawn(&args, SLOW);
        let b = team.spawn(&args, SLOW);
        let (pa, pb) = (a.id(), b.id());
        let (ra, rb) = (finish(a), finish(b));
        let (winner, loser, winner_pid) = match (ra.code, rb.code) {
            (Some(0), Some(1)) => (ra, rb, pa),
            (Some(1), Some(0)) => (rb, ra, pb),
            other => panic!(
                "{store:?}: expected exactly one success, got {other:?}:\n{}\n---\n{}",
                ra.stderr, rb.stderr
            ),
        };
        assert!(
            winner.stderr.contains("Apply complete"),
            "{}",
            winner.stderr
        );
        for part in [
            format!("is locked by pid {winner_pid} on host "),
            "(`flyteinfra apply`)".to_string(),
            "a lease that is not renewed for 2s is taken over".to_string(),
        ] {
            assert!(
                loser.stderr.contains(&part),
                "{store:?}: `{part}` not in:\n{}",
                loser.stderr
            );
        }
        assert!(team.lease().is_none(), "{store:?}: the lease is released");
        team.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    });
}

#[test]
fn a_killed_holder_is_taken_over_after_the_ttl_and_not_before() {
    both(|store| {
        let team = Team::new(store);
        let mut a = team.spawn(&["apply", "--auto-approve"], SLOW);
        assert!(
            wait_until(Duration::from_secs(20), || team.lease().is_some()),
            "{store:?}: apply never wrote its lease"
        );
        let pid = a.id();
        a.kill().unwrap();
        a.wait().unwrap();
        assert!(team.lease().is_some(), "a killed holder leaves its lease");

        // Waiting less than a TTL is not enough.
        let early = team.run(&["plan", "--lock-timeout", "1s"]);
        early.expect_code(1);
        assert!(
            early.stderr.contains(&format!("is locked by pid {pid}")),
            "{store:?}: {}",
            early.stderr
        );

        let started = Instant::now();
        let run = team.run(&["apply", "--auto-approve", "--lock-timeout", "20s"]);
        run.ok();
        assert!(
            started.elapsed() >= TTL,
            "{store:?}: taken over after {:?}",
            started.elapsed()
        );
        assert!(
            run.stderr
                .contains(&format!("Took over the state lease of pid {pid} on host ")),
            "{store:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("it was not renewed for 2s"),
            "{}",
            run.stderr
        );
        team.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    });
}

/// A holder stopped past its TTL (SIGSTOP) is taken over; once resumed it neither writes
/// state nor starts anything in the cloud again, and says why.
#[test]
fn a_stalled_holder_is_fenced_off_when_it_resumes() {
    both(|store| {
        let team = Team::new(store);
        let a = team.spawn(&["apply", "--auto-approve"], SLOW);
        assert!(
            wait_until(Duration::from_secs(30), || {
                team.state()
                    .is_some_and(|s| s["resources"].as_object().is_some_and(|r| r.len() >= 3))
            }),
            "{store:?}: apply never got going"
        );
        stop_between_steps(&team, &a);

        let b = team.run(&["apply", "--auto-approve", "--lock-timeout", "30s"]);
        b.ok();
        assert!(
            b.stderr.contains(&format!(
                "Took over the state lease of pid {} on host ",
                a.id()
            )),
            "{store:?}: {}",
            b.stderr
        );
        let calls = team.calls();
        let objects = team.ctx.sim_objects();
        let state = team.state().unwrap();

        signal(&a, "-CONT");
        let a = finish(a);
        a.expect_code(1);
        assert!(
            a.stderr.contains("lost the lease on state"),
            "{store:?}: {}",
            a.stderr
        );
        // A call already under way when SIGSTOP landed may still finish (as a request on
        // the wire would); nothing new starts, and nothing new exists in the cloud.
        let total = |v: &Value| -> u64 {
            v.as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
        };
        let (before, after) = (total(&calls), total(&team.calls()));
        assert!(
            after <= before + 10,
            "{store:?}: the resumed holder went on calling the cloud: {before} → {after}"
        );
        assert_eq!(
            team.ctx.sim_objects().keys().collect::<Vec<_>>(),
            objects.keys().collect::<Vec<_>>(),
            "{store:?}: the resumed holder made something"
        );
        assert_eq!(
            team.state().unwrap(),
            state,
            "{store:?}: the resumed holder wrote state"
        );
        team.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    });
}

#[test]
fn state_written_in_one_working_directory_is_read_in_another() {
    both(|store| {
        let team = Team::new(store);
        team.run(&["apply", "--auto-approve"]).ok();
        let here = team.run(&["output", "--json"]);
        here.ok();

        match store {
            // The state directory is relative to the config, not to where one runs.
            Store::Local => {
                let elsewhere = tempfile::tempdir().unwrap();
                let out = team
                    .command(&["output", "--json"], &[])
                    .current_dir(elsewhere.path())
                    .output()
                    .unwrap();
                let there = Run::from_output(out);
                there.ok();
                assert_eq!(there.stdout, here.stdout);
            }
            // Another checkout of the same config, in another directory, shares the state.
            Store::S3 => {
                let other = TestContext::new(&fs::read_to_string(team.ctx.config_path()).unwrap());
                let sim = team.ctx.sim_path().display().to_string();
                let mut env = team.env(&[]);
                env.retain(|(k, _)| *k != "HOME");
                env.push(("HOME", other.dir().display().to_string()));
                env.push(("FLYTEINFRA_SIMULATE", sim));
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let there = other.run_env(&["output", "--json"], &env);
                there.ok();
                assert_eq!(there.stdout, here.stdout);
                other
                    .run_env(&["plan", "--detailed-exitcode"], &env)
                    .expect_code(0);
                assert!(!other.state_dir().exists(), "nothing is kept locally");
            }
        }
    });
}

#[test]
fn two_clouds_of_one_config_keep_their_own_objects_on_s3() {
    let base = "\
name: demo
cloud: aws
aws:
  region: us-east-1
gcp:
  project: demo-project
  region: us-central1
database:
  deletion_protection: false
";
    let team = Team::with_config(Store::S3, base);
    team.run(&["apply", "--auto-approve"]).ok();
    team.run(&["--cloud", "gcp", "apply", "--auto-approve"])
        .ok();
    let (bucket, _) = team.s3.as_ref().unwrap();
    let keys: Vec<String> = crate::s3_state::keys(bucket)
        .into_iter()
        .filter(|k| k.starts_with(&team.s3.as_ref().unwrap().1))
        .collect();
    assert_eq!(
        keys,
        vec![team.key("aws", ""), team.key("gcp", "")],
        "one state object per cloud; no lease left behind"
    );
    let aws: Value =
        serde_json::from_slice(&crate::s3_state::object(bucket, &team.key("aws", "")).unwrap())
            .unwrap();
    let gcp: Value =
        serde_json::from_slice(&crate::s3_state::object(bucket, &team.key("gcp", "")).unwrap())
            .unwrap();
    assert_eq!(
        (aws["cloud"].as_str(), gcp["cloud"].as_str()),
        (Some("aws"), Some("gcp"))
    );
    assert!(!team.ctx.state_dir().exists(), "nothing is kept locally");
    let _: PathBuf = team.ctx.config_path();
}

#[test]
fn unlock_force_breaks_a_lease_and_names_its_holder() {
    both(|store| {
        let team = Team::new(store);
        let mut a = team.spawn(&["apply", "--auto-approve"], SLOW);
        assert!(wait_until(Duration::from_secs(20), || team
            .lease()
            .is_some()));
        let pid = a.id();
        a.kill().unwrap();
        a.wait().unwrap();
        let record = team.lease().unwrap();
        let id = record["id"].as_str().unwrap().to_string();
        // The record names the holder in full and carries its TTL.
        assert_eq!(record["pid"], pid, "{record}");
        assert_eq!(record["command"], "flyteinfra apply", "{record}");
        assert_eq!(record["ttl_ms"], 2000, "{record}");
        for field in ["user", "host", "since", "renewed_at"] {
            assert!(
                record[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field}: {record}"
            );
        }

        let wrong = team.run(&["state", "unlock", "--force", "not-the-id"]);
        wrong.expect_code(1);
        assert!(
            wrong
                .stderr
                .contains(&format!("under lease id `{id}`, not `not-the-id`")),
            "{store:?}: {}",
            wrong.stderr
        );
        assert!(team.lease().is_some());

        let run = team.run(&["state", "unlock", "--force", &id]);
        run.ok();
        assert!(
            run.stderr.contains(&format!("Broke lease `{id}`"))
                && run.stderr.contains(&format!("held by pid {pid} on host ")),
            "{store:?}: {}",
            run.stderr
        );
        assert!(team.lease().is_none());
        // No waiting now.
        team.run(&["apply", "--auto-approve", "--lock-timeout", "0s"])
            .ok();
        let again = team.run(&["state", "unlock", "--force", &id]);
        again.expect_code(1);
        assert!(
            again.stderr.contains("is not locked: nothing to unlock"),
            "{}",
            again.stderr
        );
    });
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn state_pull_shows_no_secret_and_its_file_pushes_back_only_when_safe() {
    let team = Team::new(Store::Local);
    team.run(&["apply", "--auto-approve"]).ok();
    let stored = fs::read(team.ctx.state_path()).unwrap();
    let stored_text = String::from_utf8(stored.clone()).unwrap();
    assert!(
        stored_text.contains("$sensitive"),
        "the state holds a secret"
    );

    let pulled = team.run(&["state", "pull"]);
    pulled.ok();
    let shown: Value = serde_json::from_str(&pulled.stdout).unwrap();
    assert_eq!(shown["lineage"], team.state().unwrap()["lineage"]);
    assert!(pulled.stdout.contains("(sensitive)"), "{}", pulled.stdout);
    assert!(!pulled.stdout.contains("$sensitive"), "{}", pulled.stdout);

    let copy = team.ctx.dir().join("copy.json");
    team.run(&["state", "pull", "--out", copy.to_str().unwrap()])
        .ok();
    assert_eq!(
        fs::read(&copy).unwrap(),
        stored,
        "--out writes the stored bytes"
    );
    assert_eq!(mode(&copy), 0o600);

    // The state moves on; the copy is now older.
    team.run(&["state", "rm", "aws_vpc.main"]).ok();
    let run = team.run(&["state", "push", copy.to_str().unwrap()]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("is older than the state's"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`--force` pushes it anyway"),
        "{}",
        run.stderr
    );
    let forced = team.run(&["state", "push", "--force", copy.to_str().unwrap()]);
    forced.ok();
    assert!(team.ctx.state_addresses().contains("aws_vpc.main"));
    team.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Another deployment's state is refused, whatever its serial.
    let other = Team::new(Store::Local);
    other.run(&["apply", "--auto-approve"]).ok();
    let foreign = other.ctx.state_path();
    let run = team.run(&["state", "push", foreign.to_str().unwrap()]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("another deployment's state"),
        "{}",
        run.stderr
    );
}

/// local → S3 → local leaves a byte-identical document; the source stays as a backup; the
/// config is switched only when told.
#[test]
fn state_migrates_local_to_s3_and_back_byte_for_byte() {
    let team = Team::new(Store::Local);
    team.run(&["apply", "--auto-approve"]).ok();
    let original = fs::read(team.ctx.state_path()).unwrap();
    let bucket = crate::s3_state::shared_bucket();
    let prefix = format!("moved/{}", crate::aws::unique_name());
    let to = format!("s3://{bucket}/{prefix}?region=us-east-1");
    // The S3 environment, with the local config.
    let s3_env = Team {
        ctx: TestContext::new(MINIMAL),
        store: Store::S3,
        s3: Some((bucket.to_string(), prefix.clone())),
    }
    .env(&[]);
    let env: Vec<(&str, &str)> = s3_env
        .iter()
        .filter(|(k, _)| *k != "HOME")
        .map(|(k, v)| (*k, v.as_str()))
        .collect();

    let copied = team.ctx.run_env(&["state", "migrate", "--to", &to], &env);
    copied.ok();
    assert!(
        copied.stderr.contains("read it back: identical"),
        "{}",
        copied.stderr
    );
    assert!(
        copied.stderr.contains("--update-config"),
        "{}",
        copied.stderr
    );
    let key = format!("{prefix}/aws.state.json");
    assert_eq!(crate::s3_state::object(bucket, &key).unwrap(), original);
    assert!(
        !fs::read_to_string(team.ctx.config_path())
            .unwrap()
            .contains("s3:"),
        "the config is not switched unless told"
    );

    // Again: the destination holds a state now, so nothing is copied over it.
    let again = team
        .ctx
        .run_env(&["state", "migrate", "--to", &to, "--update-config"], &env);
    again.expect_code(1);
    assert!(
        again.stderr.contains("already holds a state"),
        "{}",
        again.stderr
    );
    crate::s3_state::delete(bucket, &key);

    team.ctx
        .run_env(&["state", "migrate", "--to", &to, "--update-config"], &env)
        .ok();
    let config = fs::read_to_string(team.ctx.config_path()).unwrap();
    assert!(
        config.contains(&format!("bucket: \"{bucket}\"")),
        "{config}"
    );
    assert_eq!(
        fs::read(team.ctx.state_path()).unwrap(),
        original,
        "the source is kept"
    );
    team.ctx
        .run_env(&["plan", "--detailed-exitcode"], &env)
        .expect_code(0);

    // And back, into another directory.
    team.ctx
        .run_env(
            &[
                "state",
                "migrate",
                "--to",
                "local:.moved-back",
                "--update-config",
            ],
            &env,
        )
        .ok();
    let back = team.ctx.dir().join(".moved-back/aws.state.json");
    assert_eq!(fs::read(&back).unwrap(), original, "byte for byte");
    assert_eq!(mode(&back), 0o600);
    team.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // A place that is not one, or one the config may not use, is refused before anything.
    for (bad, says) in [
        (
            "ftp://x/y",
            "expected `local:PATH`, `s3://BUCKET/PREFIX?region=REGION`, `postgres:CONN_ENV?schema=SCHEMA`, `gs://BUCKET/PREFIX` or `azurerm://ACCOUNT/CONTAINER/PREFIX`",
        ),
        (
            "gs://x/y",
            "`state.gcs.bucket` is `x`, expected a GCS bucket name",
        ),
        (
            "s3://Bad_Bucket/p?region=us-east-1",
            "`state.s3.bucket` is `Bad_Bucket`",
        ),
    ] {
        let run = team.run(&["state", "migrate", "--to", bad]);
        run.expect_code(1);
        assert!(run.stderr.contains(says), "{bad}: {}", run.stderr);
    }
}

/// Ctrl-C during a plan, or a CI runner's cancel (SIGTERM) during an apply, gives the
/// lease up: the next command need not wait out the TTL.
#[test]
fn an_interrupted_command_gives_its_lease_up() {
    both(|store| {
        let team = Team::new(store);
        // Something to refresh, so that each command holds its lease for a while.
        team.run(&["apply", "--auto-approve"]).ok();
        for (args, sig, code) in [
            (&["plan"][..], "-INT", 130),
            (&["apply", "--auto-approve"][..], "-TERM", 143),
        ] {
            let child = team.spawn(args, &[("FLYTEINFRA_SIMULATE_DELAY_MS", "1000")]);
            assert!(
                wait_until(Duration::from_secs(20), || team.lease().is_some()),
                "{store:?} {args:?}: no lease"
            );
            signal(&child, sig);
            let run = finish(child);
            assert_eq!(run.code, Some(code), "{store:?} {args:?}: {}", run.stderr);
            assert!(
                run.stderr
                    .contains("Interrupted: the state lease was given up"),
                "{}",
                run.stderr
            );
            assert!(
                team.lease().is_none(),
                "{store:?} {args:?}: the lease is left"
            );
            team.run(&["plan", "--lock-timeout", "0s"]).ok();
        }
    });
}

/// State kept in PostgreSQL through the CLI: migrated there from a local directory and
/// back, byte for byte, with plans in between reading it there.
#[test]
fn state_migrates_local_to_postgres_and_back_byte_for_byte() {
    let team = Team::new(Store::Local);
    team.run(&["apply", "--auto-approve"]).ok();
    let original = fs::read(team.ctx.state_path()).unwrap();
    let schema = format!("mig_{}", crate::aws::unique_name().replace('-', "_"));
    // The test cluster takes plain TCP on 127.0.0.1 only.
    let to = format!("postgres:FLYTEINFRA_TEST_STATE_PG?schema={schema}&tls=disable");
    let env = [("FLYTEINFRA_TEST_STATE_PG", crate::postgres::url())];

    let copied = team
        .ctx
        .run_env(&["state", "migrate", "--to", &to, "--update-config"], &env);
    copied.ok();
    assert!(
        copied.stderr.contains("read it back: identical"),
        "{}",
        copied.stderr
    );
    let config = fs::read_to_string(team.ctx.config_path()).unwrap();
    assert!(
        config.contains("conn_env: \"FLYTEINFRA_TEST_STATE_PG\""),
        "{config}"
    );
    assert!(config.contains("tls: \"disable\""), "{config}");
    assert!(
        !config.contains("postgres://"),
        "the connection string stays out: {config}"
    );
    team.ctx
        .run_env(&["plan", "--detailed-exitcode"], &env)
        .expect_code(0);
    let listed = team.ctx.run_env(&["state", "list"], &env);
    listed.ok();
    assert!(listed.stdout.contains("aws_vpc.main"), "{}", listed.stdout);

    // Without the variable: one clear, located error, nothing else.
    let missing = team.run(&["plan"]);
    missing.expect_code(1);
    assert!(
        missing.stderr.contains(
            "`state.postgres.conn_env` names `FLYTEINFRA_TEST_STATE_PG`, which is not set"
        ),
        "{}",
        missing.stderr
    );

    team.ctx
        .run_env(
            &["state", "migrate", "--to", "local:.back", "--update-config"],
            &env,
        )
        .ok();
    assert_eq!(
        fs::read(team.ctx.dir().join(".back/aws.state.json")).unwrap(),
        original,
        "byte for byte"
    );
    team.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}

/// The round trip through every backend: local → S3 → PostgreSQL → GCS → Azure Blob →
/// local, each hop a `state migrate --update-config` that reads the copy back, each store
/// then serving a no-op plan; the document comes home byte for byte.
#[test]
fn state_round_trips_through_every_backend_byte_for_byte() {
    let team = Team::new(Store::Local);
    team.run(&["apply", "--auto-approve"]).ok();
    let original = fs::read(team.ctx.state_path()).unwrap();
    let unique = crate::aws::unique_name();
    let bucket = crate::s3_state::shared_bucket();
    let gcs_bucket = crate::gcs_state::bucket(true);
    let container = crate::azblob_state::container();
    let home = team.ctx.dir().display().to_string();
    let env = [
        ("AWS_ENDPOINT_URL", crate::moto::url()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("HOME", home.as_str()),
        ("FLYTEINFRA_TEST_STATE_PG", crate::postgres::url()),
        ("FLYTEINFRA_GCS_ENDPOINT", crate::gcs_state::proxy().url()),
        (
            "FLYTEINFRA_AZURE_BLOB_ENDPOINT",
            &crate::azurite::endpoint_with_sas(),
        ),
    ];
    let hops = [
        format!("s3://{bucket}/trip/{unique}?region=us-east-1"),
        format!(
            "postgres:FLYTEINFRA_TEST_STATE_PG?schema=trip_{}&tls=disable",
            unique.replace('-', "_")
        ),
        format!("gs://{gcs_bucket}/trip/{unique}"),
        format!(
            "azurerm://{}/{container}/trip/{unique}",
            flyteinfra_azure_double::azurite::ACCOUNT
        ),
        "local:.home".to_string(),
    ];
    for to in &hops {
        let run = team
            .ctx
            .run_env(&["state", "migrate", "--to", to, "--update-config"], &env);
        run.ok();
        assert!(
            run.stderr.contains("read it back: identical"),
            "{to}: {}",
            run.stderr
        );
        team.ctx
            .run_env(&["plan", "--detailed-exitcode"], &env)
            .expect_code(0);
    }
    assert_eq!(
        fs::read(team.ctx.dir().join(".home/aws.state.json")).unwrap(),
        original,
        "byte for byte after five hops"
    );
    // Each store kept its copy, as a backup.
    assert_eq!(
        crate::s3_state::object(bucket, &format!("trip/{unique}/aws.state.json")).unwrap(),
        original
    );
}

//! The harness: a temp dir with a config, and the CLI run against the simulated cloud stored
//! in that dir (the test-only `flyteinfra-sim` binary), or the shipped `flyteinfra` binary
//! against moto or the GCP test double.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The shipped binary: real providers only.
pub const BIN: &str = env!("CARGO_BIN_EXE_flyteinfra");

/// The same CLI over the simulated cloud (built only for tests: the `sim` feature, which
/// this package's dev-dependency on itself enables).
pub const SIM_BIN: &str = env!("CARGO_BIN_EXE_flyteinfra-sim");

/// The minimal valid config, with deletion protection off so `destroy` works.
pub const MINIMAL: &str = "\
name: demo
cloud: aws
aws:
  region: us-east-1
database:
  deletion_protection: false
";

/// Prefixes of the environment variables flyteinfra and the cloud SDKs read. Every one the
/// harness does not set itself is removed, so a developer's shell can neither steer a result
/// nor send a call off loopback (`AWS_ENDPOINT_URL_S3`, `GOOGLE_APPLICATION_CREDENTIALS`, …).
const ENV_PREFIXES: &[&str] = &["FLYTEINFRA_", "AWS_", "GOOGLE_", "CLOUDSDK_", "AZURE_"];

/// Removes from `cmd` every inherited variable with one of [`ENV_PREFIXES`].
fn clear_cloud_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let Some(n) = name.to_str() else { continue };
        if ENV_PREFIXES.iter().any(|p| n.starts_with(p)) {
            cmd.env_remove(&name);
        }
    }
}

/// The result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    /// The exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    /// The signal that ended the process, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
        Run {
            code: out.status.code(),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, printing both streams when it differs.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}, got {:?} (signal {:?})\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code,
            self.signal,
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "the binary panicked:\n{}",
            self.stderr
        );
        self
    }

    /// Asserts the process exited (no signal, no panic) with a code other than `code`.
    #[track_caller]
    pub fn expect_code_not(&self, code: i32) -> &Run {
        assert!(
            self.code.is_some() && self.code != Some(code),
            "expected an exit code other than {code}, got {:?} (signal {:?})\n{}",
            self.code,
            self.signal,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// Asserts exit code 0.
    #[track_caller]
    pub fn ok(&self) -> &Run {
        self.expect_code(0)
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A temp dir holding `flyteinfra.yaml`, the simulated cloud (`sim.json`) and, once a
/// command has run, the state in `.flyteinfra/`.
pub struct TestContext {
    dir: tempfile::TempDir,
    /// `Some(endpoint)`: run against moto instead of the simulated cloud.
    moto: Option<String>,
    /// `Some((apis, storage))`: run against the GCP test double and the storage emulator.
    gcp: Option<(String, String)>,
    /// `Some(url)`: run against the Azure test double.
    azure: Option<String>,
    /// Run the real binary for `style: sandbox` (its servers come from the config and
    /// the environment a test passes).
    sandbox: bool,
    /// The cloud whose state file the helpers read.
    cloud: &'static str,
}

impl TestContext {
    /// A context with `config` written to `flyteinfra.yaml`.
    pub fn new(config: &str) -> TestContext {
        let dir = tempfile::Builder::new()
            .prefix("flyteinfra-it-")
            .tempdir()
            .expect("create a temp dir");
        let ctx = TestContext {
            dir,
            moto: None,
            gcp: None,
            azure: None,
            sandbox: false,
            cloud: "aws",
        };
        ctx.write_config(config);
        ctx
    }

    /// A context running against this test binary's moto server (the real AWS provider).
    pub fn aws(config: &str) -> TestContext {
        let mut ctx = TestContext::new(config);
        ctx.moto = Some(crate::moto::url().to_string());
        ctx
    }

    /// A context running against a GCP test double at `double_url` and this test binary's
    /// storage emulator (the real GCP provider).
    pub fn gcp(config: &str, double_url: &str) -> TestContext {
        let mut ctx = TestContext::new(config);
        ctx.gcp = Some((double_url.to_string(), crate::gcs::url().to_string()));
        ctx.cloud = "gcp";
        ctx
    }

    /// A context running against an Azure test double at `double_url` (the real Azure
    /// provider), polling every 10 ms.
    pub fn azure(config: &str, double_url: &str) -> TestContext {
        let mut ctx = TestContext::new(config);
        ctx.azure = Some(double_url.to_string());
        ctx.cloud = "azure";
        ctx
    }

    /// A context running the real binary for `style: sandbox`: the PostgreSQL server and
    /// S3-compatible store are the config's, their secrets the environment's.
    pub fn sandbox(config: &str) -> TestContext {
        let mut ctx = TestContext::new(config);
        ctx.sandbox = true;
        ctx.cloud = "sandbox";
        ctx
    }

    /// A context with [`MINIMAL`].
    pub fn minimal() -> TestContext {
        TestContext::new(MINIMAL)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir().join("flyteinfra.yaml")
    }

    pub fn write_config(&self, config: &str) {
        fs::write(self.config_path(), config).expect("write the config");
    }

    /// The simulated cloud's file (`FLYTEINFRA_SIMULATE`).
    pub fn sim_path(&self) -> PathBuf {
        self.dir().join("sim.json")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir().join(".flyteinfra")
    }

    pub fn state_path(&self) -> PathBuf {
        self.state_dir().join(format!("{}.state.json", self.cloud))
    }

    pub fn backup_path(&self) -> PathBuf {
        self.state_dir()
            .join(format!("{}.state.json.backup", self.cloud))
    }

    pub fn lock_path(&self) -> PathBuf {
        self.state_dir()
            .join(format!("{}.state.json.lock", self.cloud))
    }

    /// A command running the binary in the temp dir with `--config <abs path>`: the
    /// simulated one, or the shipped one for moto and GCP contexts.
    pub fn command(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
        let simulated =
            self.moto.is_none() && self.gcp.is_none() && self.azure.is_none() && !self.sandbox;
        let mut cmd = Command::new(if simulated { SIM_BIN } else { BIN });
        cmd.current_dir(self.dir());
        clear_cloud_env(&mut cmd);
        if let Some((apis, storage)) = &self.gcp {
            // Loopback endpoints and anonymous credentials: no metadata server, no ADC file.
            cmd.env("HOME", self.dir())
                .env("FLYTEINFRA_GCP_ENDPOINT", apis)
                .env("FLYTEINFRA_GCS_ENDPOINT", storage)
                .env("FLYTEINFRA_CREATE_SETTLE_SECS", "0");
        }
        if let Some(url) = &self.azure {
            // A loopback endpoint, no credentials: nothing may leave the machine.
            cmd.env("HOME", self.dir())
                .env("FLYTEINFRA_AZURE_ENDPOINT", url)
                .env(
                    "FLYTEINFRA_AZURE_BLOB_ENDPOINT",
                    crate::azurite::endpoint_with_sas(),
                )
                .env("FLYTEINFRA_AZURE_POLL_MS", "10")
                .env("FLYTEINFRA_CREATE_SETTLE_SECS", "0");
        }
        if self.sandbox {
            // No profile files, no instance metadata: only the config's servers.
            cmd.env("HOME", self.dir())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("FLYTEINFRA_CREATE_SETTLE_SECS", "0");
        }
        match &self.moto {
            None if self.gcp.is_some() || self.azure.is_some() || self.sandbox => {}
            None => {
                cmd.env("FLYTEINFRA_SIMULATE", self.sim_path());
            }
            Some(url) => {
                // Static test keys and the emulator's endpoint; no profile files, no
                // instance metadata: nothing may leave loopback.
                cmd.env("HOME", self.dir())
                    .env("AWS_ENDPOINT_URL", url)
                    .env("AWS_ACCESS_KEY_ID", "testing")
                    .env("AWS_SECRET_ACCESS_KEY", "testing")
                    .env("AWS_EC2_METADATA_DISABLED", "true");
            }
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.args(args);
        if !args.contains(&"--config") {
            cmd.arg("--config").arg(self.config_path());
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    /// Runs the binary to completion with extra environment variables.
    pub fn run_env(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Run {
        let out = self
            .command(args, extra_env)
            .output()
            .expect("run flyteinfra");
        Run::from_output(out)
    }

    /// Starts the binary in the background; stdout and stderr are piped.
    pub fn spawn(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Child {
        self.command(args, extra_env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flyteinfra")
    }

    /// `apply`, which must succeed.
    pub fn apply(&self) -> Run {
        let r = self.run(&["apply", "--auto-approve"]);
        r.ok();
        r
    }

    /// The state file, parsed.
    pub fn state(&self) -> Value {
        read_json(&self.state_path())
    }

    /// The simulated cloud's file, parsed.
    pub fn sim(&self) -> Value {
        read_json(&self.sim_path())
    }

    /// The simulated cloud's objects (by id).
    pub fn sim_objects(&self) -> serde_json::Map<String, Value> {
        if !self.sim_path().exists() {
            return serde_json::Map::new();
        }
        self.sim()["objects"]
            .as_object()
            .cloned()
            .expect("the sim file has an `objects` map")
    }

    /// Addresses of the resources in the state.
    pub fn state_addresses(&self) -> BTreeSet<String> {
        self.state()["resources"]
            .as_object()
            .expect("state has `resources`")
            .keys()
            .cloned()
            .collect()
    }

    /// Breaks the lease a killed run left behind, as an operator who knows it is gone
    /// would (`state unlock --force`). kill -9 leaves the lease for its TTL; the tests that
    /// call this are about what the next run finds in the cloud and the state, not about
    /// waiting (`team_state.rs` covers the TTL).
    pub fn break_lease(&self) {
        let Ok(bytes) = fs::read(self.lock_path()) else {
            return;
        };
        let record: Value = serde_json::from_slice(&bytes).expect("a lease record is JSON");
        let id = record["id"].as_str().expect("a lease record has an id");
        self.run(&["state", "unlock", "--force", id]).ok();
    }

    /// Rewrites the sim file through `f` (drift behind flyteinfra's back).
    pub fn edit_sim(&self, f: impl FnOnce(&mut Value)) {
        let mut v = self.sim();
        f(&mut v);
        fs::write(self.sim_path(), serde_json::to_vec(&v).unwrap()).expect("write the sim file");
    }
}

/// Reads and parses a JSON file, naming it on failure.
#[track_caller]
pub fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Parses a string as JSON, showing it on failure.
#[track_caller]
pub fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}):\n{s}"))
}

/// The permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Polls `f` every 10 ms until it is true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child and collects its output.
pub fn finish(child: Child) -> Run {
    Run::from_output(child.wait_with_output().expect("wait for flyteinfra"))
}

/// The `Plan: N to add, ...` summary line of a text plan.
pub fn summary_line(text: &str) -> Option<&str> {
    text.lines().find(|l| l.starts_with("Plan: "))
}

/// The root of the workspace (for fixtures).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

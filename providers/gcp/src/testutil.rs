//! Test support: one GCP test double and one storage emulator per test binary.
//!
//! The double (`flyteinfra-gcp-double`) serves the APIs with no emulator in process. The
//! storage emulator is `gcp-storage-emulator` from the project's `.venv`, installed by
//! `scripts/test`; a missing emulator is a loud failure with the install command.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flyteinfra_gcp_double::GcpDouble;

use crate::client::{Endpoints, GcpClients};

/// The project every test uses.
pub const PROJECT: &str = "flyteinfra-test";

static DOUBLE: OnceLock<GcpDouble> = OnceLock::new();

struct Emulator {
    url: String,
    _child: Child,
}

static STORAGE: OnceLock<Emulator> = OnceLock::new();

/// This test binary's double, started on first use.
pub fn double() -> &'static GcpDouble {
    DOUBLE.get_or_init(GcpDouble::start)
}

/// The storage emulator binary in the workspace's `.venv`.
pub fn storage_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/gcp-storage-emulator")
}

/// The endpoint of this test binary's storage emulator, started on first use.
pub fn storage_url() -> &'static str {
    &STORAGE.get_or_init(start_storage).url
}

fn start_storage() -> Emulator {
    let bin = storage_bin();
    assert!(
        bin.exists(),
        "gcp-storage-emulator is not installed at `{}`: run `scripts/test` (or \
         `.venv/bin/pip install gcp-storage-emulator==2026.7.19`)",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // Statics are never dropped, so a watchdog stops the emulator once this process is gone.
    let script = format!(
        "\"$0\" start --host 127.0.0.1 --port {port} --in-memory & m=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; \
         kill $m 2>/dev/null",
        pid = std::process::id()
    );
    let child = Command::new("bash")
        .args(["-c", &script])
        .arg(&bin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gcp-storage-emulator");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "gcp-storage-emulator did not start on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Emulator {
        url: format!("http://127.0.0.1:{port}"),
        _child: child,
    }
}

/// Clients pointed at the double and the storage emulator.
pub async fn clients() -> GcpClients {
    GcpClients::for_endpoints(
        PROJECT,
        Endpoints {
            apis: Some(double().url().to_string()),
            storage: storage_url().to_string(),
        },
    )
    .await
    .expect("clients")
}

/// A name unique within this test process.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 10000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

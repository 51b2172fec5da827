//! One moto server (the AWS emulator) per test process, on a free loopback port, and one
//! pass-through [`Proxy`] in front of it that tests talk to.
//!
//! moto comes from the workspace's `.venv` (installed by `scripts/test`). A missing moto
//! is a loud failure with the install command, never a skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::Proxy;

struct Moto {
    url: String,
    _child: Child,
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static PROXY: OnceLock<Proxy> = OnceLock::new();

/// The workspace's moto binary.
pub fn moto_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
}

/// The endpoint every test uses: this process's pass-through proxy in front of moto.
pub fn url() -> &'static str {
    PROXY.get_or_init(|| Proxy::start(upstream())).url()
}

/// moto itself, for a test's own [`Proxy`] (with fault rules) to forward to. Never for
/// SDK clients: they would see moto's answers, not AWS's.
pub fn upstream() -> &'static str {
    &MOTO.get_or_init(start).url
}

fn start() -> Moto {
    let bin = moto_bin();
    assert!(
        bin.exists(),
        "moto is not installed at `{}`: run `scripts/test` (or `python3 -m venv .venv && \
         .venv/bin/pip install 'moto[server]==5.1.22'`)",
        bin.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // Statics are never dropped, so a watchdog stops moto once this test process is gone.
    let script = format!(
        "\"$0\" -H 127.0.0.1 -p {port} & m=$!; \
         while kill -0 {pid} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; \
         kill $m 2>/dev/null",
        pid = std::process::id()
    );
    let child = Command::new("bash")
        .args(["-c", &script])
        .arg(&bin)
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let url = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "moto did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto { url, _child: child }
}

//! One moto server (the AWS emulator) per test binary, on a free loopback port, and SDK
//! clients pointed at it for assertions.
//!
//! moto comes from the project's `.venv` (installed by `scripts/test`). A missing moto is a
//! loud failure with the install command, never a skip.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

struct Moto {
    url: String,
    child: Mutex<Child>,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.lock().map(|mut c| c.kill());
    }
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The endpoint of this test binary's moto server, started on first use.
pub fn url() -> &'static str {
    &MOTO.get_or_init(start).url
}

fn start() -> Moto {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
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
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "moto did not start in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto {
        url: format!("http://127.0.0.1:{port}"),
        child: Mutex::new(child),
    }
}

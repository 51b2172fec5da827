//! One moto server (the AWS emulator) per test binary, on a free loopback port, and SDK
//! clients pointed at it for assertions.
//!
//! moto comes from the project's `.venv` (installed by `scripts/test`). A missing moto is a
//! loud failure with the install command, never a skip.

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Mutex, OnceLock};

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
    let (url, child) = flyteinfra_gcp_double::storage::spawn_watched(
        &bin,
        &["-H", "127.0.0.1", "-p", "{port}"],
        &[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")],
        "moto",
    );
    Moto {
        url,
        child: Mutex::new(child),
    }
}

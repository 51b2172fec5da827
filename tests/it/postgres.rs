//! One throwaway PostgreSQL cluster per test process, on a free loopback port, started by
//! `scripts/postgres.sh` (trust authentication: user `postgres`, no password) and stopped
//! by a watchdog once this test process is gone.
//!
//! PostgreSQL comes from Debian's `postgresql` package (installed by `scripts/test`). A
//! missing PostgreSQL is a loud failure with the install command, never a skip.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

struct Postgres {
    url: String,
    _watchdog: Child,
}

static POSTGRES: OnceLock<Postgres> = OnceLock::new();

/// `postgres://postgres@127.0.0.1:<port>/postgres`: the cluster of this test process.
pub(crate) fn url() -> &'static str {
    &POSTGRES.get_or_init(start).url
}

/// Whether a PostgreSQL server is installed where Debian's package puts it.
fn installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().any(|d| d.path().join("bin/initdb").exists()))
        .unwrap_or(false)
}

fn start() -> Postgres {
    assert!(
        installed(),
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run `scripts/test` \
         (or `apt-get install -y --no-install-recommends postgresql`)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script: PathBuf = root.join("scripts/postgres.sh");
    // Statics are never dropped, so the script waits for this process to end, then stops
    // the cluster and deletes its directory. After printing the URL it writes nothing
    // more: its output pipes may be closed by then.
    let watchdog = format!(
        ". \"$0\" || exit 1; start_postgres >&2 || exit 1; echo \"$FLYTEINFRA_TEST_PG_URL\"; \
         exec >/dev/null 2>&1; \
         while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; stop_postgres",
        pid = std::process::id()
    );
    let mut child = Command::new("bash")
        .args(["-c", &watchdog])
        .arg(&script)
        .current_dir(root)
        .env_remove("FLYTEINFRA_TEST_PG_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bash for scripts/postgres.sh");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the URL of the PostgreSQL cluster");
    let url = line.trim().to_string();
    if !url.starts_with("postgres://") {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.wait();
        panic!(
            "could not start a throwaway PostgreSQL cluster with `{}` (start_postgres): {}",
            script.display(),
            err.trim()
        );
    }
    // Nothing more is read from it.
    drop(child.stderr.take());
    Postgres {
        url,
        _watchdog: child,
    }
}

//! One throwaway PostgreSQL cluster per test process that takes TCP logins only over TLS
//! and only with a SCRAM password, started by `scripts/postgres.sh` (`start_postgres_tls`:
//! a test CA and a certificate for `localhost` and 127.0.0.1 made with the openssl CLI, the
//! superuser `postgres` with a password set by initdb) and stopped by a watchdog once this
//! test process is gone, as [`crate::postgres`]'s.
//!
//! A missing PostgreSQL or openssl is a loud failure, never a skip.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// The cluster of this test process.
pub(crate) struct TlsPostgres {
    /// Its port on 127.0.0.1.
    pub(crate) port: u16,
    /// The password of the superuser `postgres`.
    pub(crate) password: String,
    /// The PEM file of the CA that signed its certificate.
    pub(crate) ca: PathBuf,
    /// The PEM file of a CA that signed nothing.
    pub(crate) other_ca: PathBuf,
    _watchdog: Child,
}

static CLUSTER: OnceLock<TlsPostgres> = OnceLock::new();

/// The TLS-only cluster of this test process, started on first use.
pub(crate) fn cluster() -> &'static TlsPostgres {
    CLUSTER.get_or_init(start)
}

fn start() -> TlsPostgres {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script: PathBuf = root.join("scripts/postgres.sh");
    // As for the plain cluster: the script prints one line, then waits for this process
    // to end and stops the cluster.
    let watchdog = format!(
        ". \"$0\" || exit 1; start_postgres_tls >&2 || exit 1; \
         echo \"ready $FLYTEINFRA_TEST_PGTLS_PORT $FLYTEINFRA_TEST_PGTLS_PASSWORD \
         $FLYTEINFRA_TEST_PGTLS_CA $FLYTEINFRA_TEST_PGTLS_OTHER_CA\"; \
         exec >/dev/null 2>&1; \
         while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; stop_postgres_tls",
        pid = std::process::id()
    );
    let mut child = Command::new("bash")
        .args(["-c", &watchdog])
        .arg(&script)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bash for scripts/postgres.sh");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the settings of the TLS PostgreSQL cluster");
    let words: Vec<&str> = line.split_whitespace().collect();
    let ["ready", port, password, ca, other_ca] = words[..] else {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.wait();
        panic!(
            "could not start a throwaway TLS PostgreSQL cluster with `{}` \
             (start_postgres_tls): {}",
            script.display(),
            err.trim()
        );
    };
    // Nothing more is read from it.
    drop(child.stderr.take());
    TlsPostgres {
        port: port.parse().expect("a port number"),
        password: password.to_string(),
        ca: PathBuf::from(ca),
        other_ca: PathBuf::from(other_ca),
        _watchdog: child,
    }
}

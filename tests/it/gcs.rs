//! One gcp-storage-emulator (the GCS JSON API emulator) per test binary, from the
//! project's `.venv` (installed by `scripts/test`); a missing emulator is a loud failure.

use std::sync::OnceLock;

use flyteinfra_gcp_double::storage::{self, StorageEmulator};

static GCS: OnceLock<StorageEmulator> = OnceLock::new();

/// The endpoint of this test binary's storage emulator, started on first use.
pub fn url() -> &'static str {
    &GCS.get_or_init(|| storage::start(&crate::util::workspace().join(".venv")))
        .url
}

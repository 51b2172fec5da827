//! Test support: one GCP test double and one storage emulator per test binary.
//!
//! The double (`flyteinfra-gcp-double`) serves the APIs with no emulator in process. The
//! storage emulator is `gcp-storage-emulator` from the project's `.venv`, installed by
//! `scripts/test` (with fake-gcs-server, which keeps object generations); a missing
//! emulator is a loud failure with the install command. Deleting a noncurrent generation
//! works on neither emulator, so that one test's storage is the double's Cloud Storage
//! subset ([`generations_clients`]).

use std::path::PathBuf;
use std::sync::OnceLock;

use flyteinfra_gcp_double::storage::StorageEmulator;
use flyteinfra_gcp_double::{GcpDouble, storage};

use crate::client::{Endpoints, GcpClients};

/// The project every test uses.
pub const PROJECT: &str = "flyteinfra-test";

static DOUBLE: OnceLock<GcpDouble> = OnceLock::new();

static STORAGE: OnceLock<StorageEmulator> = OnceLock::new();

static FAKE_GCS: OnceLock<StorageEmulator> = OnceLock::new();

fn venv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv")
}

/// This test binary's double, started on first use, with every API enabled (API
/// enforcement off). A test of disabled APIs starts its own `GcpDouble::start()`, whose
/// knobs are its own.
pub fn double() -> &'static GcpDouble {
    DOUBLE.get_or_init(|| {
        let d = GcpDouble::start();
        d.shared().lock().knobs.enforce_services = false;
        d
    })
}

/// The endpoint of this test binary's storage emulator, started on first use.
pub fn storage_url() -> &'static str {
    &STORAGE.get_or_init(|| storage::start(&venv())).url
}

/// Clients whose storage is fake-gcs-server, which keeps object generations (versioning)
/// where gcp-storage-emulator does not.
pub async fn versioning_clients() -> GcpClients {
    let url = &FAKE_GCS
        .get_or_init(|| storage::start_fake_gcs(&venv()))
        .url;
    GcpClients::for_endpoints(
        PROJECT,
        Endpoints {
            apis: Some(double().url().to_string()),
            storage: url.to_string(),
        },
    )
    .await
    .expect("clients")
}

/// Clients whose storage, too, is the double: its Cloud Storage subset deletes
/// noncurrent object generations, which neither emulator does.
pub async fn generations_clients() -> GcpClients {
    let url = double().url().to_string();
    GcpClients::for_endpoints(
        PROJECT,
        Endpoints {
            apis: Some(url.clone()),
            storage: url,
        },
    )
    .await
    .expect("clients")
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

/// Another deployment's create (another token) neither finds nor takes the object made
/// from `inputs`: the create fails naming `flyteinfra import`.
pub async fn assert_foreign_token_refused(
    rt: &std::sync::Arc<dyn flyteinfra_core::ResourceType>,
    t: &str,
    inputs: &flyteinfra_core::Attributes,
) {
    use flyteinfra_core::requests as r;
    let found = rt.find(r::find(t, inputs, "other")).await.unwrap();
    assert!(found.id.is_none());
    let theirs = rt.create(r::create(t, inputs, "other")).await.unwrap_err();
    assert_eq!(
        theirs.kind,
        flyteinfra_core::ErrorKind::AlreadyExists,
        "{theirs}"
    );
    assert!(theirs.message.contains("flyteinfra import"), "{theirs}");
}

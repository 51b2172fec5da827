//! Test support: one Azure test double (`flyteinfra-azure-double`, serving ARM on
//! loopback) and one Azurite (the blob data plane) per test binary, and clients pointed at
//! them.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use flyteinfra_azure_double::AzureDouble;
use flyteinfra_azure_double::azurite::{self, Azurite};

use crate::blob::BlobPlane;
use crate::client::ArmClient;

/// The subscription every test uses.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-00000000f17e";

/// The location every test uses.
pub const LOCATION: &str = "eastus";

static DOUBLE: OnceLock<AzureDouble> = OnceLock::new();

/// This test binary's double, started on first use. Tests that change knobs start their
/// own with `AzureDouble::start()`.
pub fn double() -> &'static AzureDouble {
    DOUBLE.get_or_init(AzureDouble::start)
}

static AZURITE: OnceLock<Azurite> = OnceLock::new();

/// This test binary's Azurite, started on first use from `<workspace>/.tools/azurite`
/// (`scripts/test` installs it; a missing install fails the test with the command). It
/// stops when the test binary exits.
pub fn azurite() -> &'static Azurite {
    AZURITE
        .get_or_init(|| azurite::start(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools")))
}

/// A blob data plane over this binary's Azurite (an account SAS in the URL).
pub fn blob_plane() -> BlobPlane {
    BlobPlane::local(&azurite().endpoint_with_sas()).expect("Azurite's endpoint is loopback")
}

/// A client of `d` polling every 10 ms (the double finishes operations after a few polls).
pub fn client_of(d: &AzureDouble) -> ArmClient {
    ArmClient::new(d.url(), SUBSCRIPTION, None).with_poll_interval(Duration::from_millis(10))
}

/// A client of this binary's double.
pub fn client() -> ArmClient {
    client_of(double())
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

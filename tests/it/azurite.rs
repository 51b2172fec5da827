//! One Azurite (the Azure Blob emulator) per test binary, from the project's `.tools`
//! (installed by `scripts/test`); a missing emulator is a loud failure. It stands for every
//! storage account's blob endpoint.

use std::sync::OnceLock;

use flyteinfra_azure_double::azurite::{self, Azurite};

static AZURITE: OnceLock<Azurite> = OnceLock::new();

/// This test binary's Azurite, started on first use.
pub fn get() -> &'static Azurite {
    AZURITE.get_or_init(|| azurite::start(&crate::util::workspace().join(".tools")))
}

/// Its blob endpoint with an account SAS (what `FLYTEINFRA_AZURE_BLOB_ENDPOINT` takes).
pub fn endpoint_with_sas() -> String {
    get().endpoint_with_sas()
}

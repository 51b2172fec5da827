//! flyteinfra's state: the document, its on-disk format, and the backends that store it
//! with locks.
//!
//! Three layers, as in Terraform's `states`, `statefile` and `statemgr`:
//! - the model, [`StateDoc`], changed only through its methods by the engine;
//! - the versioned file format, [`encode`] and [`decode`], which refuses newer formats
//!   and upgrades older ones one version at a time, then checks what the engine relies on
//!   (lineage, serial, intent tokens, types, no dependency cycle) so that a hand-edited
//!   file gives a located error ([`located`]) instead of a panic later;
//! - storage: a [`Backend`] keeps two opaque objects, the state and the lease record,
//!   and writes them only on a precondition (absent, or at the version last read)
//!   ([`LocalBackend`] for a file; with features, `S3Backend` (`s3`), `PostgresBackend`
//!   (`postgres`), `GcsBackend` (`gcs`) and `AzBlobBackend` (`azurerm`, an Azure blob
//!   lease besides); [`MemoryBackend`] for tests), and [`Sealing`] seals the state of any
//!   of them on the client; [`Lease`] builds the one-writer rule on that once for all backends
//!   (expiring, renewed, taken over only after a full TTL), [`StateManager`] keeps the
//!   serial and fences every write, and [`check_plan_fresh`] decides whether a saved
//!   plan still applies;
//! - [`write_private`], the one atomic, mode-0600 file writer every secret-holding file
//!   goes through (state, plan files, Helm values).
//!
//! This crate never prints and knows nothing of plans, providers or clouds beyond the
//! cloud's name: rendering, plan files and the command flow belong to other crates.

#[cfg(feature = "azurerm")]
mod azblob;
mod backend;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod crypt;
mod document;
mod error;
#[cfg(feature = "gcs")]
mod gcs;
#[cfg(any(test, feature = "proptest-json"))]
pub mod json_mutation;
mod lease;
mod local;
pub mod located;
mod lock;
mod manager;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod private;
#[cfg(test)]
mod prop_tests;
#[cfg(feature = "s3")]
mod s3;
mod sealing;
mod statefile;
mod validate;
#[cfg(any(
    feature = "s3",
    feature = "gcs",
    feature = "azurerm",
    feature = "postgres",
    feature = "kms"
))]
mod worker;

#[cfg(feature = "azurerm")]
pub use azblob::{AzBlobAccess, AzBlobBackend, AzBlobLocation, NATIVE_LEASE};
pub use backend::{Backend, Object, Precondition, Stored, Version};
pub use crypt::{
    ARGON2_M_KIB, ARGON2_P, ARGON2_T, KeySource, SEALED_FORMAT, Sealer, is_sealed, sealed_header,
    unsealed_error,
};
pub use document::{
    FORMAT_VERSION, Intent, Operation, Output, ResourceState, StateDoc, Status, new_lineage,
};
pub use error::StateError;
#[cfg(feature = "gcs")]
pub use gcs::{GcsAccess, GcsBackend, GcsLocation};
pub use lease::{Lease, LeaseRecord, LeaseWatch, MAX_TTL};
pub use local::LocalBackend;
pub use lock::LockInfo;
pub use manager::{StateManager, check_plan_fresh};
pub use memory::MemoryBackend;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresBackend, PostgresLocation};
pub use private::write_private;
#[cfg(feature = "s3")]
pub use s3::{S3Backend, S3Location};
pub use sealing::Sealing;
pub use statefile::{decode, decode_with_types, encode};
pub use validate::{
    MAX_SENT_AT, MAX_SERIAL, is_lineage, is_token, lineage_problem, serial_problem,
};

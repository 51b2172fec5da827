//! flyteinfra's state: the document, its on-disk format, and the backends that store it
//! with locks.
//!
//! Three layers, as in Terraform's `states`, `statefile` and `statemgr`:
//! - the model, [`StateDoc`], changed only through its methods by the engine;
//! - the versioned file format, [`encode`] and [`decode`], which refuses newer formats
//!   and upgrades older ones one version at a time, then checks what the engine relies on
//!   (lineage, serial, intent tokens, types, no dependency cycle) so that a hand-edited
//!   file gives a located error ([`located`]) instead of a panic later;
//! - storage: a [`Backend`] only gets and puts an opaque blob and takes a lock
//!   ([`LocalBackend`] for a file, [`MemoryBackend`] for tests), while [`StateManager`]
//!   keeps the serial once for all backends and [`check_plan_fresh`] decides whether a
//!   saved plan still applies;
//! - [`write_private`], the one atomic, mode-0600 file writer every secret-holding file
//!   goes through (state, plan files, Helm values).
//!
//! This crate never prints and knows nothing of plans, providers or clouds beyond the
//! cloud's name: rendering, plan files and the command flow belong to other crates.

mod backend;
mod document;
mod error;
#[cfg(any(test, feature = "proptest-json"))]
pub mod json_mutation;
mod local;
pub mod located;
mod lock;
mod manager;
mod memory;
mod private;
#[cfg(test)]
mod prop_tests;
mod statefile;
mod validate;

pub use backend::Backend;
pub use document::{
    FORMAT_VERSION, Intent, Operation, Output, ResourceState, StateDoc, Status, new_lineage,
};
pub use error::StateError;
pub use local::LocalBackend;
pub use lock::{LockGuard, LockInfo};
pub use manager::{StateManager, check_plan_fresh};
pub use memory::MemoryBackend;
pub use private::write_private;
pub use statefile::{decode, decode_with_types, encode};
pub use validate::{
    MAX_SENT_AT, MAX_SERIAL, is_lineage, is_token, lineage_problem, serial_problem,
};

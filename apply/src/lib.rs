//! flyteinfra's apply: refresh, intent reconciliation, and carrying a plan out with the
//! walker, persisting every transition.
//!
//! This is the only crate that knows plans, state and providers at once. The walker in
//! `flyteinfra-core` only schedules; the diff in `flyteinfra-plans` only decides; the state
//! crate only stores.

mod execute;
mod journal;
mod reconcile;
mod refresh;

#[cfg(test)]
mod tests;

pub use execute::{ApplyOptions, ApplyReport, apply, protected_deletes};
pub use journal::{Journal, PersistFn};
pub use reconcile::{Reconciled, reconcile_intents};
pub use refresh::{check_contents, refresh, refresh_for_destroy};

use flyteinfra_core::Address;

/// Why a refresh or reconciliation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A resource type no provider registered.
    #[error("unknown resource type `{0}`")]
    UnknownType(String),
    /// A provider call failed.
    #[error("`{address}`: {message}")]
    Provider {
        /// The resource.
        address: Address,
        /// The cloud's message.
        message: String,
    },
    /// State could not be persisted.
    #[error(transparent)]
    State(#[from] flyteinfra_state::StateError),
}

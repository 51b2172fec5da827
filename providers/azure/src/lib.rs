//! flyteinfra's Azure resource types, over Azure Resource Manager with the official
//! `azure_core` HTTP types and `azure_identity` credentials (see [`client`] for why no
//! generated management crate is used).
//!
//! Nothing here knows Flyte: the Flyte blueprint decides which of these resources a
//! deployment needs and how they are wired together.

pub mod client;
mod credentials;
pub(crate) mod error;
mod resources;
mod subscription;
#[cfg(test)]
mod testutil;

pub use client::{ArmClient, MANAGEMENT_URL};
pub use credentials::ChainCredential;
pub use resources::resource_group::foreign_group;
pub use resources::{resource_types, schemas};
pub use subscription::{Subscription, locations, subscription, unregistered};

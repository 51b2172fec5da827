//! flyteinfra's Azure resource types, over Azure Resource Manager with the official
//! `azure_core` HTTP types and `azure_identity` credentials (see [`client`] for why no
//! generated management crate is used).
//!
//! Nothing here knows Flyte: the Flyte blueprint decides which of these resources a
//! deployment needs and how they are wired together.

mod blob;
pub mod client;
mod credentials;
pub(crate) mod error;
mod preflight;
mod resources;
mod subscription;
#[cfg(test)]
mod testutil;

pub use blob::BlobPlane;
pub use client::{ArmClient, MANAGEMENT_URL};
pub use credentials::ChainCredential;
pub use preflight::{WorkloadIdentity, cluster_user_kubeconfig, cluster_workload_identity};
pub use resources::resource_group::foreign_group;
pub use resources::subnet::service_endpoints;
pub use resources::{resource_types, schemas};
pub use subscription::{Subscription, locations, subscription, unregistered};

/// A client for `subscription` on Azure's public cloud: Resource Manager and the blob data
/// plane, both authenticated by the credential chain ([`ChainCredential`]).
pub fn azure_client(subscription: &str) -> ArmClient {
    let credential: std::sync::Arc<dyn azure_core::credentials::TokenCredential> =
        std::sync::Arc::new(ChainCredential::from_env());
    ArmClient::new(MANAGEMENT_URL, subscription, Some(credential.clone()))
        .with_blob_plane(BlobPlane::azure(credential))
}

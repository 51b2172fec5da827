//! Reads of what a user already has and flyteinfra must not change, checked before a
//! plan so a missing setting is named up front rather than met half-way through an apply.

use flyteinfra_core::ProviderError;

use crate::client::ArmClient;

/// The api-version of managed cluster reads.
const AKS_API: &str = "2024-09-01";

/// What an existing AKS cluster has switched on for Workload Identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// The OIDC issuer (`oidcIssuerProfile.enabled`).
    pub oidc_issuer: bool,
    /// The Workload Identity webhook (`securityProfile.workloadIdentity.enabled`).
    pub workload_identity: bool,
}

/// The Workload Identity settings of the cluster `id`, or `None` when it does not exist.
pub async fn cluster_workload_identity(
    client: &ArmClient,
    id: &str,
) -> Result<Option<WorkloadIdentity>, ProviderError> {
    Ok(client.get(id, AKS_API).await?.map(|b| WorkloadIdentity {
        oidc_issuer: b["properties"]["oidcIssuerProfile"]["enabled"] == true,
        workload_identity: b["properties"]["securityProfile"]["workloadIdentity"]["enabled"]
            == true,
    }))
}

//! Reads of what a user already has and flyteinfra must not change, checked before a
//! plan so a missing setting is named up front rather than met half-way through an apply.

use flyteinfra_core::{ErrorKind, ProviderError};

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

/// The cluster `id`'s user kubeconfig as AKS hands it out (`listClusterUserCredential`): the
/// YAML document `az aks get-credentials` writes. For a cluster with local accounts it holds
/// a client key and a token: callers keep it off terminals and logs.
pub async fn cluster_user_kubeconfig(
    client: &ArmClient,
    id: &str,
) -> Result<String, ProviderError> {
    let answer = client
        .post(&format!("{id}/listClusterUserCredential"), AKS_API)
        .await?;
    let bad = |what: &str| {
        ProviderError::new(
            ErrorKind::Permanent,
            format!("listClusterUserCredential of `{id}` answered {what}"),
        )
    };
    let value = answer.body["kubeconfigs"][0]["value"]
        .as_str()
        .ok_or_else(|| bad("no kubeconfig"))?;
    let bytes =
        azure_core::base64::decode(value).map_err(|_| bad("a kubeconfig that is not base64"))?;
    String::from_utf8(bytes).map_err(|_| bad("a kubeconfig that is not UTF-8"))
}

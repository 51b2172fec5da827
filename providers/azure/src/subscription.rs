//! The subscription itself: the credentials check, its locations, and which resource
//! providers are registered in it.

use flyteinfra_core::{ErrorKind, ProviderError};

use crate::client::ArmClient;

/// The api-version of the subscription and location reads.
const SUBSCRIPTIONS_API: &str = "2022-12-01";

/// The api-version of resource provider reads and registrations.
pub(crate) const PROVIDERS_API: &str = "2021-04-01";

/// What `GET /subscriptions/{id}` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The display name.
    pub display_name: String,
    /// The Entra tenant.
    pub tenant_id: String,
    /// `Enabled`, `Disabled`, `Warned`, …
    pub state: String,
}

/// Reads the subscription: the one call that proves the credentials work and the
/// subscription is visible to them.
pub async fn subscription(client: &ArmClient) -> Result<Subscription, ProviderError> {
    let body = client
        .get(&client.subscription_path(), SUBSCRIPTIONS_API)
        .await?
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!(
                    "subscription `{}` does not exist or these credentials cannot see it",
                    client.subscription()
                ),
            )
        })?;
    let s = |k: &str| body[k].as_str().unwrap_or_default().to_string();
    Ok(Subscription {
        display_name: s("displayName"),
        tenant_id: s("tenantId"),
        state: s("state"),
    })
}

/// The names of the subscription's locations (`eastus`, …).
pub async fn locations(client: &ArmClient) -> Result<Vec<String>, ProviderError> {
    let body = client
        .get(
            &format!("{}/locations", client.subscription_path()),
            SUBSCRIPTIONS_API,
        )
        .await?
        .unwrap_or_default();
    Ok(body["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect())
}

/// The registration state of `namespace` (`Registered`, `NotRegistered`, `Registering`).
pub(crate) async fn registration(
    client: &ArmClient,
    namespace: &str,
) -> Result<String, ProviderError> {
    let body = client
        .get(
            &format!("{}/providers/{namespace}", client.subscription_path()),
            PROVIDERS_API,
        )
        .await?
        .unwrap_or_default();
    Ok(body["registrationState"]
        .as_str()
        .unwrap_or("NotRegistered")
        .to_string())
}

/// Those of `namespaces` not registered in the subscription (one read each).
pub async fn unregistered(
    client: &ArmClient,
    namespaces: &[&str],
) -> Result<Vec<String>, ProviderError> {
    let mut out = Vec::new();
    for ns in namespaces {
        if registration(client, ns).await? != "Registered" {
            out.push(ns.to_string());
        }
    }
    Ok(out)
}

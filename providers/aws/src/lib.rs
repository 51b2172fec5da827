//! flyteinfra's AWS resource types, over the official aws-sdk-rust clients.
//!
//! Nothing here knows Flyte: the Flyte blueprint decides which of these resources a
//! deployment needs and how they are wired together.

mod attrs;
mod client;
mod error;
mod resources;
mod retry;
#[cfg(test)]
mod testutil;

pub use attrs::percent_decode;
pub use client::{AwsClients, POLL_ENV, REGIONS};
pub use resources::{resource_types, schemas};

/// The AWS account id and caller ARN behind the current credentials (`sts:GetCallerIdentity`).
/// Throttling and 5xx are retried with the shared policy (this call runs before any walk).
pub async fn caller_identity(
    clients: &AwsClients,
) -> Result<(String, String), flyteinfra_core::ProviderError> {
    use flyteinfra_core::retry::{RetryPolicy, retry};
    let out = retry(
        RetryPolicy::default(),
        |_, _| {},
        || async {
            clients
                .sts
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| error::aws_err("GetCallerIdentity", e))
        },
    )
    .await?;
    Ok((
        out.account().unwrap_or_default().to_string(),
        out.arn().unwrap_or_default().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caller_identity_from_moto() {
        let c = testutil::clients().await;
        let (account, arn) = caller_identity(&c).await.unwrap();
        assert_eq!(account, "123456789012");
        assert!(arn.starts_with("arn:aws:"), "{arn}");
    }
}

//! Test support: clients pointed at this test binary's moto, through the proxy that
//! answers as AWS does (`flyteinfra-aws-proxy`, a test double: it makes and reports EKS's
//! cluster security group, which moto omits).
//!
//! moto is the AWS emulator (`moto[server]==5.1.22` in the project's `.venv`, installed by
//! `scripts/test`). A missing moto is a loud failure with the install command, never a skip.

use crate::client::AwsClients;

/// Clients pointed at moto with static test credentials; nothing reaches beyond loopback.
pub async fn clients() -> AwsClients {
    AwsClients::for_endpoint(
        "us-east-1",
        flyteinfra_aws_proxy::moto::url(),
        "testing",
        "testing",
    )
    .await
}

/// A name unique to this test process and call, so parallel tests never collide in moto.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

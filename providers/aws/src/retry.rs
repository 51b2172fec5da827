//! Which single AWS requests the SDK may retry on its own.
//!
//! Two layers retry, each where it is safe:
//! - the SDK retries one *request* (standard mode, up to [`SDK_ATTEMPTS`] attempts) when a
//!   repeat cannot do anything twice: reads, puts, deletes, modifications, and creates that
//!   carry a client token or a unique name; a create without one (an EC2 `CreateVpc`, an
//!   `AuthorizeSecurityGroupIngress`) is never repeated by the SDK, since after a 5xx or a
//!   lost answer it may have taken effect;
//! - the engine (`flyteinfra_core::retry`) retries a whole *operation* (create, update,
//!   delete), which providers make idempotent with the intent's token.
//!
//! So a composite create (a bucket is six requests) survives a flaky request without being
//! redone from the start, and no request that could duplicate an object is repeated blindly.

use aws_config::retry::RetryConfig;
use aws_sdk_ec2::config::interceptors::BeforeSerializationInterceptorContextMut;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// Attempts the SDK makes for one request (the first included).
pub const SDK_ATTEMPTS: u32 = 5;

/// Turns the SDK's retries off, for this request only, when repeating it is not safe (the
/// retry strategy reads its configuration from the request's config bag at each decision).
#[derive(Debug, Clone, Copy)]
pub struct SafeRetries;

impl Intercept for SafeRetries {
    fn name(&self) -> &'static str {
        "flyteinfra-safe-retries"
    }

    fn modify_before_serialization(
        &self,
        _context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let unsafe_op = cfg
            .load::<Metadata>()
            .is_some_and(|m| !repeatable(m.name()));
        if unsafe_op {
            cfg.interceptor_state()
                .store_put(RetryConfig::standard().with_max_attempts(1));
        }
        Ok(())
    }
}

/// Whether repeating the operation `name` can do nothing twice.
fn repeatable(name: &str) -> bool {
    // Creates with a client token (EKS) or a unique name the provider adopts (S3).
    const IDEMPOTENT_CREATES: &[&str] = &["CreateCluster", "CreateNodegroup", "CreateBucket"];
    IDEMPOTENT_CREATES.contains(&name) || !UNSAFE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Verbs whose repeat can make a second object or fail on the first one's success.
const UNSAFE_PREFIXES: &[&str] = &["Create", "Allocate", "Authorize", "Associate", "Run"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn reads_puts_and_deletes_repeat_creates_without_tokens_do_not() {
        for op in [
            "DescribeVpcs",
            "PutRolePolicy",
            "DeleteVpc",
            "GetBucketVersioning",
        ] {
            assert!(repeatable(op), "{op}");
        }
        for op in ["CreateCluster", "CreateNodegroup", "CreateBucket"] {
            assert!(repeatable(op), "{op}");
        }
        for op in [
            "CreateVpc",
            "AllocateAddress",
            "AuthorizeSecurityGroupIngress",
            "CreateRole",
        ] {
            assert!(!repeatable(op), "{op}");
        }
    }

    /// A server that answers every request with a 500: count the attempts per call.
    #[tokio::test]
    async fn the_sdk_repeats_a_describe_but_never_a_create_vpc() {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let mut buf = [0u8; 65536];
                let _ = s.read(&mut buf);
                h.fetch_add(1, Ordering::SeqCst);
                let body = "<Response><Errors><Error><Code>InternalError</Code><Message>boom</Message></Error></Errors></Response>";
                let _ = write!(
                    s,
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let c = crate::client::AwsClients::for_endpoint("us-east-1", &url, "k", "s").await;
        let _ = c.ec2.describe_vpcs().send().await;
        let describes = hits.swap(0, Ordering::SeqCst);
        let _ = c.ec2.create_vpc().cidr_block("10.0.0.0/16").send().await;
        let creates = hits.load(Ordering::SeqCst);
        assert_eq!((describes, creates), (SDK_ATTEMPTS, 1));
    }
}

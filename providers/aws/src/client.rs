//! SDK clients, built once per run from the standard AWS chain and environment.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_ec2::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ec2::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use flyteinfra_core::{PollSchedule, ProviderError};

use crate::retry::{SDK_ATTEMPTS, SafeRetries};

/// Every SDK client the AWS resource types use.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// EC2 (VPC, subnets, gateways, route tables, security groups).
    pub ec2: aws_sdk_ec2::Client,
    /// S3.
    pub s3: aws_sdk_s3::Client,
    /// RDS.
    pub rds: aws_sdk_rds::Client,
    /// EKS.
    pub eks: aws_sdk_eks::Client,
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// STS (who am I).
    pub sts: aws_sdk_sts::Client,
    /// The region.
    pub region: String,
    calls: CallCounter,
    /// How often every waiter polls, when set ([`POLL_ENV`]); each waiter's adaptive
    /// schedule otherwise.
    poll: Option<Duration>,
}

/// The environment variable that sets how often the waiters (EKS clusters, node groups
/// and updates, NAT gateways, RDS instances) poll, in milliseconds. Tests shorten it
/// against moto; real deployments keep each waiter's adaptive schedule.
pub const POLL_ENV: &str = "FLYTEINFRA_AWS_POLL_MS";

/// The poll interval [`POLL_ENV`] sets: `None` when unset; a value that is not a positive
/// whole number of milliseconds is an error, never ignored.
pub fn poll_from_env(value: Option<std::ffi::OsString>) -> Result<Option<Duration>, ProviderError> {
    flyteinfra_core::interval_from_env(POLL_ENV, value)
}

/// Counts every request sent to AWS (each attempt), across all clients, in total and by
/// `Service.Operation`.
#[derive(Clone, Debug, Default)]
struct CallCounter(Arc<AtomicU64>, Arc<Mutex<BTreeMap<String, u64>>>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "flyteinfra-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = cfg.load::<Metadata>() {
            let key = format!("{}.{}", m.service(), m.name());
            *self.1.lock().expect("counter lock").entry(key).or_default() += 1;
        }
        Ok(())
    }
}

impl AwsClients {
    /// Clients for `region`, with credentials and endpoints from the standard chain and
    /// environment (`AWS_PROFILE`, SSO, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...), as the
    /// AWS CLI reads them.
    ///
    /// The SDK's own retries are off: flyteinfra's engine retries whole operations, which
    /// providers make idempotent (a token or a unique name, looked up before creating), so a
    /// create whose answer was lost is never sent twice blindly and attempts never multiply.
    ///
    /// Fails, before any request, when [`POLL_ENV`] is set to something that is not a
    /// poll interval.
    pub async fn from_env(region: &str) -> Result<AwsClients, ProviderError> {
        let poll = poll_from_env(std::env::var_os(POLL_ENV))?;
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS))
            .load()
            .await;
        Ok(Self::from_sdk_config(&config, region).with_poll(poll))
    }

    /// Clients for an explicit endpoint and static credentials (tests, emulators).
    pub async fn for_endpoint(region: &str, endpoint: &str, key: &str, secret: &str) -> AwsClients {
        let creds = aws_sdk_sts::config::Credentials::new(key, secret, None, None, "static");
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_ATTEMPTS))
            .endpoint_url(endpoint)
            .credentials_provider(creds)
            .load()
            .await;
        Self::from_sdk_config(&config, region)
    }

    fn from_sdk_config(config: &aws_config::SdkConfig, region: &str) -> AwsClients {
        let calls = CallCounter::default();
        // A custom endpoint (moto, LocalStack, MinIO) does not serve bucket subdomains.
        let custom_endpoint =
            config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        macro_rules! client {
            ($sdk:ident) => {
                $sdk::Client::from_conf(
                    $sdk::config::Builder::from(config)
                        .interceptor(calls.clone())
                        .interceptor(SafeRetries)
                        .build(),
                )
            };
        }
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(custom_endpoint)
            .interceptor(calls.clone())
            .interceptor(SafeRetries)
            .build();
        AwsClients {
            ec2: client!(aws_sdk_ec2),
            s3: aws_sdk_s3::Client::from_conf(s3),
            rds: client!(aws_sdk_rds),
            eks: client!(aws_sdk_eks),
            iam: client!(aws_sdk_iam),
            sts: client!(aws_sdk_sts),
            region: region.to_string(),
            calls,
            poll: None,
        }
    }

    /// The same clients, with every waiter polling every `poll` (`None`: each waiter's
    /// adaptive schedule).
    pub fn with_poll(mut self, poll: Option<Duration>) -> AwsClients {
        self.poll = poll;
        self
    }

    /// The poll schedule of a wait that usually takes `expected`: adaptive (see
    /// [`PollSchedule`]), or fixed when [`POLL_ENV`] is set.
    pub fn schedule(&self, expected: Duration) -> PollSchedule {
        self.poll
            .map_or(PollSchedule::adaptive(expected), PollSchedule::fixed)
    }

    /// Requests sent to AWS so far by these clients (and their clones).
    pub fn calls(&self) -> u64 {
        self.calls.0.load(Ordering::Relaxed)
    }

    /// The same, by `Service.Operation`.
    pub fn calls_by_operation(&self) -> BTreeMap<String, u64> {
        self.calls.1.lock().expect("counter lock").clone()
    }
}

/// The AWS regions flyteinfra knows (an unknown one is a config error, found before any call).
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

#[cfg(test)]
mod tests {
    use super::*;
    use flyteinfra_core::ErrorKind;

    #[test]
    fn the_poll_interval_is_a_positive_number_of_ms_or_an_error() {
        let parse = |v: &str| poll_from_env(Some(v.into()));
        assert_eq!(poll_from_env(None).unwrap(), None);
        assert_eq!(parse("200").unwrap(), Some(Duration::from_millis(200)));
        for bad in ["", "0", "-5", "2s", "1.5", "fast"] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad}");
            assert!(
                e.message.contains(&format!("`{POLL_ENV}={bad}`")),
                "{}",
                e.message
            );
        }
    }
}

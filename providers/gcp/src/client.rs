//! The official google-cloud-rust clients, built once per run and shared by every
//! resource type, plus one authenticated HTTP client for the two JSON APIs that have no
//! usable Rust client here (GCS bucket admin, Service Networking).

use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt, TooManyRequests};
use reqwest::Method;
use serde_json::Value;

use flyteinfra_core::{ErrorKind, ProviderError};

use crate::error::http_err;

/// Where the clients send requests.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Base URL of the APIs that have no emulator (`https://*.googleapis.com` for real;
    /// the test double's URL in tests). `None` means each API's default endpoint.
    pub apis: Option<String>,
    /// Base URL of the GCS JSON API (`https://storage.googleapis.com` for real; the
    /// storage emulator's URL in tests).
    pub storage: String,
}

impl Endpoints {
    /// Google's own endpoints.
    pub fn google() -> Endpoints {
        Endpoints {
            apis: None,
            storage: "https://storage.googleapis.com".into(),
        }
    }
}

/// Every client a GCP resource type may need. Cloning is cheap (each holds an `Arc`).
#[derive(Clone)]
pub struct GcpClients {
    /// The project every resource lives in.
    pub project: String,
    /// Compute Engine: networks.
    pub networks: google_cloud_compute_v1::client::Networks,
    /// Compute Engine: subnetworks.
    pub subnetworks: google_cloud_compute_v1::client::Subnetworks,
    /// Compute Engine: global addresses (the Private Service Access range).
    pub global_addresses: google_cloud_compute_v1::client::GlobalAddresses,
    /// Compute Engine: global operations.
    pub global_operations: google_cloud_compute_v1::client::GlobalOperations,
    /// Compute Engine: regional operations.
    pub region_operations: google_cloud_compute_v1::client::RegionOperations,
    /// Service Usage: enabling APIs.
    pub service_usage: google_cloud_api_serviceusage_v1::client::ServiceUsage,
    /// IAM Admin: service accounts, custom roles, service-account IAM policies.
    pub iam: google_cloud_iam_admin_v1::client::Iam,
    /// Resource Manager: the project (its number, its IAM policy).
    pub projects: google_cloud_resourcemanager_v3::client::Projects,
    /// Cloud SQL Admin: instances.
    pub sql_instances: google_cloud_sql_v1::client::SqlInstancesService,
    /// Cloud SQL Admin: databases.
    pub sql_databases: google_cloud_sql_v1::client::SqlDatabasesService,
    /// Cloud SQL Admin: users.
    pub sql_users: google_cloud_sql_v1::client::SqlUsersService,
    /// Cloud SQL Admin: operations.
    pub sql_operations: google_cloud_sql_v1::client::SqlOperationsService,
    /// Kubernetes Engine: clusters and node pools.
    pub gke: google_cloud_container_v1::client::ClusterManager,
    /// JSON APIs over the same credentials.
    pub http: JsonApi,
}

/// Builds one client with the shared settings. Requests are retried where repeating them
/// cannot act twice: idempotent ones on UNAVAILABLE (Google's AIP-194 policy), and any on
/// 429, which Google answers before doing anything.
macro_rules! build {
    ($ty:path, $creds:expr, $endpoint:expr) => {{
        let mut b = <$ty>::builder()
            .with_credentials($creds.clone())
            .with_retry_policy(TooManyRequests::new(Aip194Strict).with_attempt_limit(5))
            .with_backoff_policy(backoff());
        if let Some(e) = $endpoint {
            b = b.with_endpoint(e.clone());
        }
        b.build().await.map_err(|e| {
            ProviderError::new(
                ErrorKind::Auth,
                format!("cannot build the {} client: {e}", stringify!($ty)),
            )
        })?
    }};
}

/// Short, bounded backoff: the engine retries whole operations on top of this.
fn backoff() -> google_cloud_gax::exponential_backoff::ExponentialBackoff {
    ExponentialBackoffBuilder::new()
        .with_initial_delay(Duration::from_millis(200))
        .with_maximum_delay(Duration::from_secs(5))
        .build()
        .expect("valid backoff")
}

impl GcpClients {
    /// Clients for `project` using Application Default Credentials and Google's endpoints.
    pub async fn from_env(project: &str) -> Result<GcpClients, ProviderError> {
        let creds = credentials::Builder::default().build().map_err(|e| {
            ProviderError::new(
                ErrorKind::Auth,
                format!(
                    "no Google Cloud credentials: {e}. Run `gcloud auth application-default login` \
                     or set GOOGLE_APPLICATION_CREDENTIALS"
                ),
            )
        })?;
        GcpClients::build(project, creds, Endpoints::google()).await
    }

    /// Clients for `project` at `endpoints` with anonymous credentials: the test double and
    /// the storage emulator. Never probes a metadata server.
    pub async fn for_endpoints(
        project: &str,
        endpoints: Endpoints,
    ) -> Result<GcpClients, ProviderError> {
        let creds = credentials::anonymous::Builder::new().build();
        GcpClients::build(project, creds, endpoints).await
    }

    async fn build(
        project: &str,
        creds: Credentials,
        ep: Endpoints,
    ) -> Result<GcpClients, ProviderError> {
        let api = ep.apis.as_ref();
        Ok(GcpClients {
            project: project.to_string(),
            networks: build!(google_cloud_compute_v1::client::Networks, creds, api),
            subnetworks: build!(google_cloud_compute_v1::client::Subnetworks, creds, api),
            global_addresses: build!(google_cloud_compute_v1::client::GlobalAddresses, creds, api),
            global_operations: build!(
                google_cloud_compute_v1::client::GlobalOperations,
                creds,
                api
            ),
            region_operations: build!(
                google_cloud_compute_v1::client::RegionOperations,
                creds,
                api
            ),
            service_usage: build!(
                google_cloud_api_serviceusage_v1::client::ServiceUsage,
                creds,
                api
            ),
            iam: build!(google_cloud_iam_admin_v1::client::Iam, creds, api),
            projects: build!(
                google_cloud_resourcemanager_v3::client::Projects,
                creds,
                api
            ),
            sql_instances: build!(google_cloud_sql_v1::client::SqlInstancesService, creds, api),
            sql_databases: build!(google_cloud_sql_v1::client::SqlDatabasesService, creds, api),
            sql_users: build!(google_cloud_sql_v1::client::SqlUsersService, creds, api),
            sql_operations: build!(
                google_cloud_sql_v1::client::SqlOperationsService,
                creds,
                api
            ),
            gke: build!(
                google_cloud_container_v1::client::ClusterManager,
                creds,
                api
            ),
            http: JsonApi {
                inner: Arc::new(JsonInner {
                    http: reqwest::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .map_err(|e| ProviderError::new(ErrorKind::Permanent, e.to_string()))?,
                    creds,
                    storage: ep.storage.trim_end_matches('/').to_string(),
                    servicenetworking: ep
                        .apis
                        .clone()
                        .unwrap_or_else(|| "https://servicenetworking.googleapis.com".into())
                        .trim_end_matches('/')
                        .to_string(),
                }),
            },
        })
    }
}

/// An authenticated JSON-over-HTTP client for GCS and Service Networking.
#[derive(Clone)]
pub struct JsonApi {
    inner: Arc<JsonInner>,
}

struct JsonInner {
    http: reqwest::Client,
    creds: Credentials,
    storage: String,
    servicenetworking: String,
}

/// Which JSON API a request goes to.
#[derive(Clone, Copy, Debug)]
pub enum Api {
    /// `storage.googleapis.com` (paths start with `/storage/v1/`).
    Storage,
    /// `servicenetworking.googleapis.com` (paths start with `/v1/`).
    ServiceNetworking,
}

impl JsonApi {
    /// Sends `method path?query` with an optional JSON body. `op` names the call in errors
    /// (`storage.buckets.insert`). Returns the parsed JSON body (`Null` when empty).
    pub async fn call(
        &self,
        api: Api,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        op: &str,
    ) -> Result<Value, ProviderError> {
        // The same request policy as the official clients: a 429 is refused before anything
        // happens, and a read can always be repeated.
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self
                .once(api, method.clone(), path_and_query, body, op)
                .await
            {
                Err(e)
                    if attempt < 5
                        && (e.kind == ErrorKind::Throttled
                            || (e.kind == ErrorKind::Transient && method == Method::GET)) =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn once(
        &self,
        api: Api,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        op: &str,
    ) -> Result<Value, ProviderError> {
        let base = match api {
            Api::Storage => &self.inner.storage,
            Api::ServiceNetworking => &self.inner.servicenetworking,
        };
        let mut req = self
            .inner
            .http
            .request(method, format!("{base}{path_and_query}"));
        let headers = self
            .inner
            .creds
            .headers(Default::default())
            .await
            .map_err(|e| ProviderError::new(ErrorKind::Auth, format!("{op}: credentials: {e}")))?;
        if let CacheableResource::New { data, .. } = headers {
            req = req.headers(data);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::new(ErrorKind::Transient, format!("{op}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| {
            ProviderError::new(
                ErrorKind::Transient,
                format!("{op}: reading the answer: {e}"),
            )
        })?;
        if !(200..300).contains(&status) {
            return Err(http_err(op, status, &text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            ProviderError::new(ErrorKind::Permanent, format!("{op}: bad JSON answer: {e}"))
        })
    }
}

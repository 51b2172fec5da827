//! The shape of the config file: one struct per YAML mapping.
//!
//! Every struct denies unknown keys, every field's doc comment is also its JSON
//! Schema description, and every field except `name`, `cloud` (which `style: sandbox` may
//! leave out) and the selected cloud's (or the sandbox's) identifying fields has a default.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::cidr::Ipv4Cidr;

/// A cloud that flyteinfra can provision a Flyte deployment on.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Amazon Web Services: EKS, RDS for PostgreSQL, S3, IAM roles for service accounts.
    Aws,
    /// Google Cloud: GKE, Cloud SQL for PostgreSQL, GCS, Workload Identity.
    Gcp,
    /// Microsoft Azure: AKS, PostgreSQL Flexible Server, Blob Storage, Workload Identity.
    Azure,
    /// No cloud, for `style: sandbox` only: a PostgreSQL server and an S3-compatible object
    /// store that already run, named in `sandbox:`. Its state is kept under the name
    /// `sandbox`, as a cloud's under the cloud's.
    Sandbox,
}

impl Cloud {
    /// Every cloud provider, in the order used in messages: not [`Cloud::Sandbox`], which
    /// is the target of `style: sandbox` rather than a cloud with a section of its own.
    pub const ALL: [Cloud; 3] = [Cloud::Aws, Cloud::Gcp, Cloud::Azure];

    /// The lowercase name used in the config file and on the command line (`aws`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
            Cloud::Azure => "azure",
            Cloud::Sandbox => "sandbox",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a [`Cloud`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown cloud `{0}`, expected one of `aws`, `gcp`, `azure`, `sandbox`")]
pub struct ParseCloudError(String);

impl FromStr for Cloud {
    type Err = ParseCloudError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Cloud::ALL
            .into_iter()
            .chain([Cloud::Sandbox])
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseCloudError(s.to_owned()))
    }
}

/// How the Flyte control plane and data plane are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Style {
    /// One Kubernetes cluster runs both the Flyte backend and the task pods.
    #[default]
    SingleCluster,
    /// A control-plane cluster (flyteadmin, console, datacatalog, scheduler) plus one
    /// cluster per data plane (flytepropeller and the task pods), with `flyte-core`.
    MultiCluster,
    /// No cloud: Flyte's database and buckets on a PostgreSQL server and an S3-compatible
    /// object store that already run (`sandbox:`), such as a local cluster's.
    Sandbox,
}

impl Style {
    /// The name used in the config file (`single-cluster`).
    pub fn as_str(self) -> &'static str {
        match self {
            Style::SingleCluster => "single-cluster",
            Style::MultiCluster => "multi-cluster",
            Style::Sandbox => "sandbox",
        }
    }
}

/// How many NAT gateways a new AWS VPC gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NatGateways {
    /// One NAT gateway shared by all zones: cheaper, but a zone outage cuts egress.
    #[default]
    Single,
    /// One NAT gateway per availability zone, as recommended for production.
    PerAz,
}

/// The AWS section: where and how to build the deployment on AWS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region, such as `us-east-1`. Required.
    pub region: String,
    /// Availability zones for subnets and nodes: two or three zones of `region`.
    /// Empty (the default) means `<region>a` and `<region>b`.
    #[serde(default)]
    pub availability_zones: Vec<String>,
    /// CIDR block of the new VPC, from /16 to /20; public and private subnets are
    /// carved from it. Ignored when `existing.vpc_id` is set.
    #[serde(default = "defaults::aws_vpc_cidr")]
    pub vpc_cidr: Ipv4Cidr,
    /// NAT gateways of the new VPC: `single` or `per_az`.
    #[serde(default)]
    pub nat_gateways: NatGateways,
    /// EC2 instance type of the EKS managed node group.
    #[serde(default = "defaults::aws_node_instance_type")]
    pub node_instance_type: String,
    /// RDS instance class of the PostgreSQL database.
    #[serde(default = "defaults::aws_db_instance_class")]
    pub db_instance_class: String,
    /// Longest IAM role trust policy, in characters: IAM's "Role trust policy length"
    /// quota, 2048 by default. The task role's trust grows with projects × domains (and
    /// data planes); to go past 2048, raise that quota to 4096 in Service Quotas first,
    /// then set 4096 here. From 2048 to 4096.
    #[serde(default = "defaults::aws_trust_policy_limit")]
    pub trust_policy_limit: u32,
    /// Components the user already has. flyteinfra reads them and never changes them.
    #[serde(default)]
    pub existing: AwsExisting,
}

impl AwsConfig {
    /// A section for `region` with every other field at its default.
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            availability_zones: Vec::new(),
            vpc_cidr: defaults::aws_vpc_cidr(),
            nat_gateways: NatGateways::default(),
            node_instance_type: defaults::aws_node_instance_type(),
            db_instance_class: defaults::aws_db_instance_class(),
            trust_policy_limit: defaults::aws_trust_policy_limit(),
            existing: AwsExisting::default(),
        }
    }

    /// The availability zones to use: `availability_zones`, or `<region>a` and
    /// `<region>b` when that list is empty.
    pub fn zones(&self) -> Vec<String> {
        if self.availability_zones.is_empty() {
            vec![format!("{}a", self.region), format!("{}b", self.region)]
        } else {
            self.availability_zones.clone()
        }
    }
}

/// AWS components that already exist. They are read, never changed or deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AwsExisting {
    /// ID of an existing VPC (`vpc-…`). Requires `public_subnet_ids` and
    /// `private_subnet_ids`; no VPC, subnets or NAT gateways are created.
    pub vpc_id: Option<String>,
    /// IDs of public subnets (`subnet-…`) of `vpc_id`, one per zone, for load balancers.
    pub public_subnet_ids: Vec<String>,
    /// IDs of private subnets (`subnet-…`) of `vpc_id`, one per zone, for nodes and the database.
    pub private_subnet_ids: Vec<String>,
    /// Name of an existing EKS cluster in `vpc_id` to install Flyte into instead of
    /// creating one. Requires `vpc_id`.
    pub cluster_name: Option<String>,
}

/// The GCP section: where and how to build the deployment on Google Cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcpConfig {
    /// Project ID, such as `my-project`. Required.
    pub project: String,
    /// Region, such as `us-central1`. Required.
    pub region: String,
    /// Enable the APIs the deployment needs (Compute, Kubernetes Engine, Cloud SQL
    /// Admin, Service Networking, IAM, IAM Credentials, Cloud Resource Manager,
    /// Service Usage, Cloud Storage) before creating anything. APIs are never disabled
    /// on destroy. With `false`, nothing is enabled and plan fails naming every API
    /// that is still disabled.
    #[serde(default = "defaults::yes")]
    pub enable_apis: bool,
    /// Primary range of the new subnetwork (nodes). Ignored with `existing.subnetwork`.
    #[serde(default = "defaults::gcp_subnet_cidr")]
    pub subnet_cidr: Ipv4Cidr,
    /// Secondary range for pod IPs (VPC-native GKE). Ignored with `existing.subnetwork`.
    #[serde(default = "defaults::gcp_pods_cidr")]
    pub pods_cidr: Ipv4Cidr,
    /// Secondary range for Kubernetes service IPs. Ignored with `existing.subnetwork`.
    #[serde(default = "defaults::gcp_services_cidr")]
    pub services_cidr: Ipv4Cidr,
    /// Compute Engine machine type of the GKE node pool.
    #[serde(default = "defaults::gcp_machine_type")]
    pub machine_type: String,
    /// Cloud SQL tier of the PostgreSQL instance.
    #[serde(default = "defaults::gcp_db_tier")]
    pub db_tier: String,
    /// GKE release channel: `RAPID`, `REGULAR` or `STABLE`.
    #[serde(default = "defaults::gcp_release_channel")]
    pub release_channel: String,
    /// Components the user already has. flyteinfra reads them and never changes them.
    #[serde(default)]
    pub existing: GcpExisting,
}

impl GcpConfig {
    /// A section for `project` and `region` with every other field at its default.
    pub fn new(project: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            region: region.into(),
            enable_apis: true,
            subnet_cidr: defaults::gcp_subnet_cidr(),
            pods_cidr: defaults::gcp_pods_cidr(),
            services_cidr: defaults::gcp_services_cidr(),
            machine_type: defaults::gcp_machine_type(),
            db_tier: defaults::gcp_db_tier(),
            release_channel: defaults::gcp_release_channel(),
            existing: GcpExisting::default(),
        }
    }
}

/// GCP components that already exist. They are read, never changed or deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GcpExisting {
    /// Name of an existing VPC network; Cloud SQL gets a private IP in it.
    pub network: Option<String>,
    /// Name of an existing subnetwork of `network` in `region`, with secondary
    /// ranges for pods and services (and, with `style: multi-cluster`, `pods-<plane>` and
    /// `services-<plane>` for every data plane flyteinfra makes). Requires `network`.
    pub subnetwork: Option<String>,
    /// Name of an existing GKE cluster (Workload Identity enabled) in `network`.
    /// Requires `network`.
    pub cluster: Option<String>,
    /// Name of the subnetwork's secondary range for pods (with `subnetwork`).
    /// Default: `pods`.
    pub pods_range: Option<String>,
    /// Name of the subnetwork's secondary range for services (with `subnetwork`).
    /// Default: `services`.
    pub services_range: Option<String>,
}

/// The Azure section: where and how to build the deployment on Azure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Subscription ID, a GUID. Required.
    pub subscription_id: String,
    /// Location (region), such as `eastus`. Required.
    pub location: String,
    /// Resource group that holds every resource. Created (and then owned by flyteinfra)
    /// when missing; a group that already exists is used as given and never deleted.
    /// Required.
    pub resource_group: String,
    /// Register the resource providers the deployment needs (`Microsoft.ContainerService`,
    /// `Microsoft.DBforPostgreSQL`, `Microsoft.ManagedIdentity`, `Microsoft.Network`,
    /// `Microsoft.Storage`) when the subscription lacks them. Never unregisters. With
    /// `false`, nothing is registered and plan fails naming every one that is not.
    #[serde(default = "defaults::yes")]
    pub register_providers: bool,
    /// Address space of the new virtual network. Ignored with `existing.vnet_id`.
    #[serde(default = "defaults::azure_vnet_cidr")]
    pub vnet_cidr: Ipv4Cidr,
    /// Subnet of the AKS nodes, inside `vnet_cidr`.
    #[serde(default = "defaults::azure_node_subnet_cidr")]
    pub node_subnet_cidr: Ipv4Cidr,
    /// Subnet delegated to PostgreSQL Flexible Server (private access), inside
    /// `vnet_cidr` and apart from `node_subnet_cidr`.
    #[serde(default = "defaults::azure_db_subnet_cidr")]
    pub db_subnet_cidr: Ipv4Cidr,
    /// Pod address range of the AKS cluster (Azure CNI Overlay: pods get addresses outside
    /// the virtual network), apart from `vnet_cidr` and `service_cidr`.
    #[serde(default = "defaults::azure_pod_cidr")]
    pub pod_cidr: Ipv4Cidr,
    /// Kubernetes service address range of the AKS cluster, apart from `vnet_cidr` and
    /// `pod_cidr`; the cluster DNS service takes its tenth address.
    #[serde(default = "defaults::azure_service_cidr")]
    pub service_cidr: Ipv4Cidr,
    /// VM size of the AKS node pool.
    #[serde(default = "defaults::azure_vm_size")]
    pub vm_size: String,
    /// SKU of the PostgreSQL Flexible Server: the tier prefix `B_` (Burstable), `GP_`
    /// (General Purpose) or `MO_` (Memory Optimized) and the compute size, such as
    /// `GP_Standard_D2s_v3`.
    #[serde(default = "defaults::azure_db_sku")]
    pub db_sku: String,
    /// Public IPv4 addresses or ranges (`203.0.113.7`, `203.0.113.0/24`) allowed to reach
    /// the storage account besides the AKS node subnet, such as the machine running
    /// `pyflyte` or CI. Default: none (the account admits the node subnet only).
    #[serde(default)]
    pub storage_allow_ips: Vec<String>,
    /// Components the user already has. flyteinfra reads them and never changes them.
    #[serde(default)]
    pub existing: AzureExisting,
}

impl AzureConfig {
    /// A section for the three identifying fields with every other field at its default.
    pub fn new(
        subscription_id: impl Into<String>,
        location: impl Into<String>,
        resource_group: impl Into<String>,
    ) -> Self {
        Self {
            subscription_id: subscription_id.into(),
            location: location.into(),
            resource_group: resource_group.into(),
            register_providers: true,
            vnet_cidr: defaults::azure_vnet_cidr(),
            node_subnet_cidr: defaults::azure_node_subnet_cidr(),
            db_subnet_cidr: defaults::azure_db_subnet_cidr(),
            pod_cidr: defaults::azure_pod_cidr(),
            service_cidr: defaults::azure_service_cidr(),
            vm_size: defaults::azure_vm_size(),
            db_sku: defaults::azure_db_sku(),
            storage_allow_ips: Vec::new(),
            existing: AzureExisting::default(),
        }
    }
}

impl AzureConfig {
    /// `db_sku` as ARM names it: the compute size and its tier
    /// (`GP_Standard_D2s_v3` → `("Standard_D2s_v3", "GeneralPurpose")`). `None` for a SKU
    /// without a known tier prefix (validation refuses those).
    pub fn db_sku_parts(&self) -> Option<(&str, &'static str)> {
        [
            ("B_", "Burstable"),
            ("GP_", "GeneralPurpose"),
            ("MO_", "MemoryOptimized"),
        ]
        .into_iter()
        .find_map(|(prefix, tier)| {
            self.db_sku
                .strip_prefix(prefix)
                .filter(|size| !size.is_empty())
                .map(|size| (size, tier))
        })
    }
}

/// Azure components that already exist. They are read, never changed or deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AzureExisting {
    /// Resource ID of an existing virtual network (`/subscriptions/…/virtualNetworks/…`).
    pub vnet_id: Option<String>,
    /// Resource ID of an existing subnet of `vnet_id` for the AKS nodes. Requires `vnet_id`.
    pub subnet_id: Option<String>,
    /// Resource ID of an existing AKS cluster (OIDC issuer and Workload Identity
    /// enabled). Requires `vnet_id`.
    pub cluster_id: Option<String>,
}

/// The `sandbox` section (`style: sandbox`): a PostgreSQL server and an S3-compatible
/// object store that already run, such as the `flyte-sandbox` chart's or a local MinIO,
/// in which flyteinfra makes Flyte's database, its user and its buckets.
///
/// The database's name, its user and whether Flyte connects with TLS are
/// `database.name`, `database.username` and `database.require_ssl`; one database serves
/// flyteadmin and datacatalog, as on the clouds. The bucket names are `storage`'s, checked
/// against S3's naming rules. `database`'s other keys (engine version, size, backups,
/// deletion protection) and `cluster` do not apply: the servers and the cluster exist
/// already.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    /// The PostgreSQL server and the administrator flyteinfra connects as. Required.
    pub postgres: SandboxPostgres,
    /// The S3-compatible object store and what it supports. Required.
    pub object_store: ObjectStore,
}

/// The sandbox's PostgreSQL server, where flyteinfra makes `database.name` and
/// `database.username` as an administrator whose password is read only from the
/// environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxPostgres {
    /// Host name or IP address of the server, such as `localhost` or
    /// `postgres.flyte.svc.cluster.local`: no scheme and no port. Required.
    pub host: String,
    /// TCP port of the server, from 1 to 65535. Default 5432.
    #[serde(default = "defaults::postgres_port")]
    pub port: u16,
    /// The role flyteinfra connects as to make the database and its user: one allowed to
    /// create databases and roles, and not `database.username`. Default `postgres`.
    #[serde(default = "defaults::postgres_admin_user")]
    pub admin_user: String,
    /// Name of the environment variable holding the administrator's password, such as
    /// `FLYTEINFRA_PG_ADMIN_PASSWORD`: a password is never written in this file. Required.
    pub admin_password_env: String,
    /// TLS on flyteinfra's connections to the server: `disable` (none), `require`
    /// (encrypted, the server's certificate not verified, as libpq's `sslmode=require`) or
    /// `verify-full` (the certificate chain and the host name verified). Default `require`.
    #[serde(default)]
    pub tls: PgTls,
    /// `tls: verify-full` only: a PEM file of the CA certificates to trust, relative to
    /// the directory of the config file. Default: the system's trusted roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The server's host name as Flyte's pods reach it, when it differs from `host` (which
    /// is how flyteinfra reaches it): `host: localhost` through a port-forward, and
    /// `cluster_host: postgres.db.svc.cluster.local`. Default: `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_host: Option<String>,
}

/// TLS on connections to a PostgreSQL server (the sandbox's, or the state's), named as
/// libpq's `sslmode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PgTls {
    /// No TLS: for a server without it, on a network you trust (a local sandbox).
    Disable,
    /// TLS without verifying the server's certificate: safe from eavesdropping, not from a
    /// server impersonated on the way (libpq's `sslmode=require`).
    #[default]
    Require,
    /// TLS with the certificate chain verified (against `ca_file`, else the system's
    /// roots) and the certificate's names checked against `host` (libpq's
    /// `sslmode=verify-full`).
    VerifyFull,
}

impl PgTls {
    /// The name used in the config file (`verify-full`).
    pub fn as_str(self) -> &'static str {
        match self {
            PgTls::Disable => "disable",
            PgTls::Require => "require",
            PgTls::VerifyFull => "verify-full",
        }
    }
}

/// The sandbox's S3-compatible object store, where flyteinfra makes `storage`'s buckets
/// with keys read only from the environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObjectStore {
    /// URL of the store's S3 API: `http://` or `https://`, a host and an optional port, no
    /// path, such as `http://localhost:30002` or `https://minio.example.com`. flyteinfra
    /// makes the buckets there, and Flyte's signed URLs (for clients outside the cluster)
    /// point there. Required.
    pub endpoint: String,
    /// The S3 API's URL as Flyte's pods and task pods reach it, when it differs from
    /// `endpoint`, such as `http://minio.minio.svc.cluster.local:9000`. Default:
    /// `endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_endpoint: Option<String>,
    /// Region the store signs requests for (MinIO's `MINIO_REGION`, which defaults to
    /// `us-east-1`). Default `us-east-1`.
    #[serde(default = "defaults::object_store_region")]
    pub region: String,
    /// Name of the environment variable holding the access key id, such as
    /// `FLYTEINFRA_S3_ACCESS_KEY`. Required.
    pub access_key_env: String,
    /// Name of the environment variable holding the secret access key, such as
    /// `FLYTEINFRA_S3_SECRET_KEY`: a secret is never written in this file. Required.
    pub secret_key_env: String,
    /// Address buckets in the path (`http://host/bucket/key`) rather than in the host name
    /// (`http://bucket.host/key`), as MinIO and most self-hosted stores need. Must be `true`:
    /// Flyte's storage client always does so when an endpoint is set. Default `true`.
    #[serde(default = "defaults::yes")]
    pub path_style: bool,
    /// Whether the store is reached over TLS. Default: as `endpoint`'s scheme says
    /// (`https` yes, `http` no); a value that contradicts the scheme is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
    /// What the store supports beyond buckets and objects. The defaults fit MinIO.
    #[serde(default)]
    pub capabilities: Capabilities,
}

impl ObjectStore {
    /// Whether the store is reached over TLS: `tls`, else whether `endpoint` is `https://`.
    pub fn tls(&self) -> bool {
        self.tls
            .unwrap_or_else(|| self.endpoint.starts_with("https://"))
    }
}

/// What an S3-compatible store supports beyond buckets and objects. What it does not
/// support is left out of the plan, with a note saying so, instead of a call that fails.
/// The defaults fit MinIO (since `RELEASE.2022-06-02T02-11-04Z`, when single-drive
/// servers got the erasure-coded backend that versioning needs) with no KMS configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Capabilities {
    /// Bucket versioning (`PutBucketVersioning`). MinIO: yes, except older single-drive
    /// servers in `fs` mode. Default `true`.
    pub versioning: bool,
    /// Default encryption of new objects with keys the store manages (SSE-S3,
    /// `PutBucketEncryption`). MinIO: only with a KMS configured (KES, or
    /// `MINIO_KMS_SECRET_KEY`). Default `false`.
    pub server_side_encryption: bool,
    /// S3's public-access block (`PutPublicAccessBlock`). MinIO: no, it rejects the API
    /// (its buckets are private unless a bucket policy opens them). Default `false`.
    pub public_access_block: bool,
    /// Lifecycle rules (`PutBucketLifecycleConfiguration`), which
    /// `storage.raw_data_expiry_days` needs. MinIO: yes. Default `true`.
    pub lifecycle: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            versioning: true,
            server_side_encryption: false,
            public_access_block: false,
            lifecycle: true,
        }
    }
}

/// The PostgreSQL database used by the Flyte backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// PostgreSQL major version, pinned, such as `"16"` (a plain major number; minor
    /// versions are left to the cloud).
    pub engine_version: String,
    /// Name of the database Flyte uses.
    pub name: String,
    /// Name of the database user Flyte connects as. Its password is generated and
    /// stored in a Kubernetes Secret, never in this file or the Helm values.
    pub username: String,
    /// Allocated storage in GiB, from 32 to 16384 (a range every cloud accepts).
    pub storage_gb: u32,
    /// Days of automated backups to keep, from 7 to 35 (a range every cloud accepts).
    pub backup_retention_days: u32,
    /// Refuse to delete the database (cloud-side deletion protection).
    pub deletion_protection: bool,
    /// Enforce TLS on the server and connect with `sslmode=require`. With `style: sandbox`
    /// the server is not changed: Flyte connects with `sslmode=require`; the default is then
    /// `false` when `sandbox.postgres.tls` is `disable` (a server without TLS), and `true`
    /// with `disable` is refused.
    pub require_ssl: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            engine_version: "16".to_owned(),
            name: "flyte".to_owned(),
            username: "flyte".to_owned(),
            storage_gb: 32,
            backup_retention_days: 7,
            deletion_protection: true,
            require_ssl: true,
        }
    }
}

/// Object storage for Flyte metadata and raw task data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Keep raw task data in its own bucket (or Azure container), apart from Flyte
    /// metadata, so each can have its own lifecycle. `false` puts both in one bucket.
    pub separate_data_bucket: bool,
    /// Name of the metadata bucket (Azure: container). Default: derived from `name`.
    pub metadata_bucket: Option<String>,
    /// Name of the raw-data bucket (Azure: container). Default: derived from `name`.
    /// Only allowed with `separate_data_bucket: true`.
    pub data_bucket: Option<String>,
    /// Delete raw task data this many days after it is written. Default: kept forever.
    pub raw_data_expiry_days: Option<u32>,
    /// Let a destroy (or a replace) delete a bucket that still holds objects, deleting
    /// every object, version and delete marker first. Default `false`: a plan that would
    /// delete a non-empty bucket is refused before anything is deleted.
    pub force_destroy: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            separate_data_bucket: true,
            metadata_bucket: None,
            data_bucket: None,
            raw_data_expiry_days: None,
            force_destroy: false,
        }
    }
}

/// The Kubernetes cluster that runs Flyte and its task pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Kubernetes minor version, pinned, such as `"1.33"`.
    pub version: String,
    /// Size of the worker node pool.
    pub nodes: NodeCounts,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            version: "1.33".to_owned(),
            nodes: NodeCounts::default(),
        }
    }
}

/// Node pool size; `min <= desired <= max` must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeCounts {
    /// Fewest nodes the autoscaler keeps.
    pub min: u32,
    /// Most nodes the autoscaler may create (at least 1).
    pub max: u32,
    /// Nodes to start with. Default: `min`.
    pub desired: Option<u32>,
}

impl NodeCounts {
    /// The starting node count: `desired`, or `min` when unset.
    pub fn desired(&self) -> u32 {
        self.desired.unwrap_or(self.min)
    }
}

impl Default for NodeCounts {
    fn default() -> Self {
        Self {
            min: 2,
            max: 5,
            desired: None,
        }
    }
}

/// What data planes use to reach the control plane (`style: multi-cluster`).
///
/// The endpoints belong to load balancers made after `helm install` of the control plane,
/// which flyteinfra does not make: pick their DNS names before, and point them at the
/// load balancers after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    /// `host:port` of flyteadmin's gRPC service as data planes reach it, such as
    /// `flyteadmin.flyte.internal:81`. Required.
    pub admin_endpoint: String,
    /// `host:port` of datacatalog's gRPC service as data planes reach it, such as
    /// `datacatalog.flyte.internal:89`. Required.
    pub catalog_endpoint: String,
    /// Plain gRPC to those endpoints (the chart's in-cluster default). Set `false` when
    /// the load balancer terminates TLS.
    #[serde(default = "defaults::yes")]
    pub insecure: bool,
}

/// One data-plane cluster of a multi-cluster deployment: flytepropeller and task pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataPlaneConfig {
    /// 1 to 10 lowercase letters and digits, starting with a letter; unique. The cluster
    /// is named `<name>-<plane>`, its resources `dp_<plane>`. Required.
    pub name: String,
    /// The execution cluster label this plane serves (`labelClusterMap`). Default: `name`.
    #[serde(default)]
    pub label: Option<String>,
    /// Share of the label's executions; the weights of one label sum to 1. Default: 1.
    #[serde(default)]
    pub weight: Option<Weight>,
    /// Node pool size of this plane. Default: `cluster.nodes`.
    #[serde(default)]
    pub nodes: Option<NodeCounts>,
    /// AWS overrides for this plane.
    #[serde(default)]
    pub aws: Option<PlaneAws>,
    /// GCP overrides for this plane.
    #[serde(default)]
    pub gcp: Option<PlaneGcp>,
    /// Azure overrides for this plane.
    #[serde(default)]
    pub azure: Option<PlaneAzure>,
    /// Name of an existing cluster (in the deployment's cloud, region and network) to use
    /// as this plane: read, never changed or deleted. `nodes` and overrides then do not apply.
    #[serde(default)]
    pub existing: Option<String>,
}

impl DataPlaneConfig {
    /// The label this plane serves: `label`, or its name.
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }

    /// Its share of the label's executions: `weight`, or 1.
    pub fn weight(&self) -> f64 {
        self.weight.map_or(1.0, |w| w.0)
    }

    /// Its node pool size: `nodes`, or the deployment's `cluster.nodes`.
    pub fn nodes(&self, cluster: &ClusterConfig) -> NodeCounts {
        self.nodes.unwrap_or(cluster.nodes)
    }

    /// The name of its resources in the blueprint: `dp_<name>`.
    pub fn address_name(&self) -> String {
        format!("dp_{}", self.name)
    }

    /// The prefix of its outputs: `dp_<name>_` (`dp_gpu_cluster_endpoint`).
    pub fn output_prefix(&self) -> String {
        format!("dp_{}_", self.name)
    }

    /// Its GKE pod range (see [`PlaneGcp::pods_cidr`]).
    pub fn gcp_pods_cidr(&self) -> Ipv4Cidr {
        PlaneGcp::pods_cidr_of(self.gcp.as_ref(), &self.name)
    }

    /// Its GKE service range (see [`PlaneGcp::services_cidr`]).
    pub fn gcp_services_cidr(&self) -> Ipv4Cidr {
        PlaneGcp::services_cidr_of(self.gcp.as_ref(), &self.name)
    }

    /// The cloud name of the cluster flyteinfra makes for it: `<deployment>-<plane>`.
    pub fn cluster_name(&self, deployment: &str) -> String {
        format!("{deployment}-{}", self.name)
    }
}

/// A data plane's weight in `labelClusterMap`: a number from 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Weight(pub f64);

// Weights come from YAML numbers, never NaN (validation refuses anything outside 0..=1).
impl Eq for Weight {}

/// AWS settings a data plane may override.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PlaneAws {
    /// EC2 instance type of this plane's node group. Default: `aws.node_instance_type`.
    pub node_instance_type: Option<String>,
}

/// GCP settings a data plane may override.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PlaneGcp {
    /// Machine type of this plane's node pool. Default: `gcp.machine_type`.
    pub machine_type: Option<String>,
    /// Pod range of this plane's cluster, a secondary range `pods-<plane>` of the
    /// deployment's subnetwork. Default: one /14 of `10.64.0.0/10` chosen by the plane's
    /// name (never by its position, so removing a plane moves no other).
    pub pods_cidr: Option<Ipv4Cidr>,
    /// Service range of this plane's cluster, a secondary range `services-<plane>`.
    /// Default: one /20 of `10.21.0.0/16` chosen by the plane's name.
    pub services_cidr: Option<Ipv4Cidr>,
}

impl PlaneGcp {
    /// Which of the 16 default range slots a plane's name picks.
    fn slot(plane: &str) -> u32 {
        flyteinfra_core::fnv1a32(plane.as_bytes()) % 16
    }

    /// The pod range of plane `plane`: the override, else its default slot.
    pub fn pods_cidr_of(this: Option<&PlaneGcp>, plane: &str) -> Ipv4Cidr {
        this.and_then(|g| g.pods_cidr).unwrap_or_else(|| {
            Ipv4Cidr::known([10, 64, 0, 0], 10)
                .subnet(14, Self::slot(plane))
                .expect("16 /14s fit a /10")
        })
    }

    /// The service range of plane `plane`: the override, else its default slot.
    pub fn services_cidr_of(this: Option<&PlaneGcp>, plane: &str) -> Ipv4Cidr {
        this.and_then(|g| g.services_cidr).unwrap_or_else(|| {
            Ipv4Cidr::known([10, 21, 0, 0], 16)
                .subnet(20, Self::slot(plane))
                .expect("16 /20s fit a /16")
        })
    }
}

/// Azure settings a data plane may override.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PlaneAzure {
    /// VM size of this plane's node pool. Default: `azure.vm_size`.
    pub vm_size: Option<String>,
}

/// Which Flyte Helm chart to install.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Chart {
    /// `flyteorg/flyte-binary`: the whole backend in one pod.
    #[default]
    FlyteBinary,
    /// `flyteorg/flyte-core`: one deployment per component.
    FlyteCore,
}

impl Chart {
    /// The chart name (`flyte-binary`).
    pub fn as_str(self) -> &'static str {
        match self {
            Chart::FlyteBinary => "flyte-binary",
            Chart::FlyteCore => "flyte-core",
        }
    }
}

/// How the task role's trust policy names the pods allowed to assume it (AWS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskTrust {
    /// Trust exactly `system:serviceaccount:<project>-<domain>:default` for every
    /// project and domain; adding a project needs a re-apply.
    #[default]
    Enumerated,
    /// Trust `system:serviceaccount:*:default` (`StringLike`): any namespace's
    /// `default` service account in the cluster may assume the task role.
    Wildcard,
}

/// The Flyte release: chart, versions, names, projects and domains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FlyteConfig {
    /// Helm chart: `flyte-binary` (the whole backend in one pod) or `flyte-core` (one
    /// deployment per component).
    pub chart: Chart,
    /// Chart version, pinned, such as `v1.16.8` (Flyte 1 charts only).
    pub chart_version: String,
    /// Image tag of the Flyte backend, pinned, such as `v1.16.8`.
    pub image_tag: String,
    /// Kubernetes namespace of the Flyte backend.
    pub namespace: String,
    /// Helm release name.
    pub release: String,
    /// Name of the backend Kubernetes service account (`flyte-binary`), pinned so that
    /// cloud trust (IRSA subject, Workload Identity member, federated credential) does not
    /// depend on the release name. `flyte-core` names its own (`flyteadmin`, …).
    pub service_account: String,
    /// Flyte projects; each gets one namespace per domain.
    pub projects: Vec<String>,
    /// Flyte domains; namespaces are named `<project>-<domain>`.
    pub domains: Vec<String>,
    /// AWS only: how the task role trusts task pods, `enumerated` or `wildcard`.
    pub task_trust: TaskTrust,
}

impl Default for FlyteConfig {
    fn default() -> Self {
        Self {
            chart: Chart::FlyteBinary,
            chart_version: "v1.16.8".to_owned(),
            image_tag: "v1.16.8".to_owned(),
            namespace: "flyte".to_owned(),
            release: "flyte-backend".to_owned(),
            service_account: "flyte-backend".to_owned(),
            projects: vec!["flytesnacks".to_owned()],
            domains: vec![
                "development".to_owned(),
                "staging".to_owned(),
                "production".to_owned(),
            ],
            task_trust: TaskTrust::Enumerated,
        }
    }
}

/// The `flyte-core` components that reach the object store, each under a service account
/// of its own name; flytescheduler (database only) and the pod webhook need no cloud
/// identity.
pub const FLYTE_CORE_STORAGE_COMPONENTS: [&str; 3] =
    ["flyteadmin", "datacatalog", "flytepropeller"];

impl FlyteConfig {
    /// The Kubernetes service accounts (in [`FlyteConfig::namespace`]) the backend identity
    /// must trust, exactly: the pinned one of `flyte-binary`, or the `flyte-core` components
    /// that touch storage.
    pub fn backend_service_accounts(&self) -> Vec<String> {
        match self.chart {
            Chart::FlyteBinary => vec![self.service_account.clone()],
            Chart::FlyteCore => FLYTE_CORE_STORAGE_COMPONENTS
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
        }
    }

    /// Every `<project>-<domain>` namespace, projects in order, domains in order.
    pub fn task_namespaces(&self) -> Vec<String> {
        self.projects
            .iter()
            .flat_map(|p| self.domains.iter().map(move |d| format!("{p}-{d}")))
            .collect()
    }
}

/// Where flyteinfra keeps its state, and how it is protected: one backend (a local
/// directory by default; for a team, a store every member's runs share) and, optionally,
/// client-side encryption.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// State in a local directory (the default when no backend is named).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalState>,
    /// State in an S3 bucket, locked by a lease object next to it, so that several people
    /// or CI runs can share one deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3State>,
    /// State in a PostgreSQL database: a row per object in one table, the lease's expiry
    /// by the server's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresState>,
    /// State in a Google Cloud Storage bucket, written with generation preconditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsState>,
    /// State in an Azure Blob Storage container, the lease object held with a finite blob
    /// lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azurerm: Option<AzurermState>,
    /// Client-side encryption of the state and of saved plan files (AES-256-GCM). Off by
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionConfig>,
}

/// The one backend a [`StateConfig`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateBackend {
    /// A local directory.
    Local(LocalState),
    /// An S3 bucket.
    S3(S3State),
    /// A PostgreSQL database.
    Postgres(PostgresState),
    /// A GCS bucket.
    Gcs(GcsState),
    /// An Azure Blob container.
    Azurerm(AzurermState),
}

impl StateConfig {
    /// The backend this config names: the first set of `local`, `s3`, `postgres`, `gcs`,
    /// `azurerm` (validation allows one), or the default local directory.
    pub fn backend(&self) -> StateBackend {
        if let Some(s3) = &self.s3 {
            StateBackend::S3(s3.clone())
        } else if let Some(pg) = &self.postgres {
            StateBackend::Postgres(pg.clone())
        } else if let Some(gcs) = &self.gcs {
            StateBackend::Gcs(gcs.clone())
        } else if let Some(az) = &self.azurerm {
            StateBackend::Azurerm(az.clone())
        } else {
            StateBackend::Local(self.local.clone().unwrap_or_default())
        }
    }

    /// The names of the backends set, in field order (validation wants at most one).
    pub fn backends_named(&self) -> Vec<&'static str> {
        [
            ("local", self.local.is_some()),
            ("s3", self.s3.is_some()),
            ("postgres", self.postgres.is_some()),
            ("gcs", self.gcs.is_some()),
            ("azurerm", self.azurerm.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// How long a state lock lasts without renewal, whichever backend holds it.
    pub fn lease_ttl(&self) -> Duration {
        match self.backend() {
            StateBackend::Local(b) => b.lease_ttl.as_duration(),
            StateBackend::S3(b) => b.lease_ttl.as_duration(),
            StateBackend::Postgres(b) => b.lease_ttl.as_duration(),
            StateBackend::Gcs(b) => b.lease_ttl.as_duration(),
            StateBackend::Azurerm(b) => b.lease_ttl.as_duration(),
        }
    }
}

impl From<StateBackend> for StateConfig {
    /// A config with `backend` and no encryption.
    fn from(backend: StateBackend) -> Self {
        let mut config = StateConfig::default();
        match backend {
            StateBackend::Local(b) => config.local = Some(b),
            StateBackend::S3(b) => config.s3 = Some(b),
            StateBackend::Postgres(b) => config.postgres = Some(b),
            StateBackend::Gcs(b) => config.gcs = Some(b),
            StateBackend::Azurerm(b) => config.azurerm = Some(b),
        }
        config
    }
}

/// Client-side encryption of stored state and plan files: set exactly one key source.
/// Every write gets a fresh AES-256-GCM data key, stored wrapped by the key source; the
/// file's header names the key source and key id, never the key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Name of the environment variable holding the passphrase (the key is derived from
    /// it with argon2id); the passphrase itself is never written in the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// An AWS KMS key that wraps each data key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_kms: Option<AwsKmsKey>,
}

/// An AWS KMS key for [`EncryptionConfig`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsKmsKey {
    /// The key: a key id, key ARN, alias name (`alias/flyteinfra-state`) or alias ARN.
    /// Required.
    pub key_id: String,
    /// The key's region, such as `us-east-1`. Default: the region in the key's ARN, or
    /// that of the standard AWS configuration.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
}

/// A local state directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LocalState {
    /// State directory, relative to the directory of the config file.
    pub path: PathBuf,
    /// How long the state lock lasts without renewal, such as `30s`, `2m` or `1500ms`;
    /// from 2s to 1h. A run renews it well before it runs out; a run that dies holding it
    /// blocks others for at most this long.
    pub lease_ttl: LeaseTtl,
}

impl LocalState {
    /// How long the state lock lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl.as_duration()
    }
}

impl Default for LocalState {
    fn default() -> Self {
        Self {
            path: PathBuf::from(".flyteinfra"),
            lease_ttl: LeaseTtl::default(),
        }
    }
}

/// State in an S3 bucket: `<key_prefix>/<cloud>.state.json`, locked by
/// `<key_prefix>/<cloud>.state.json.lock`. The bucket must exist, with versioning on, and
/// must not be one this config makes for Flyte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3State {
    /// Name of an existing S3 bucket with versioning on, outside what this config manages
    /// (never one of Flyte's buckets). Required.
    pub bucket: String,
    /// Key prefix of the state objects inside the bucket, such as `flyte/prod`: no leading
    /// or trailing `/`, no empty segment, at most 900 bytes. Default: empty (the objects sit
    /// at the top of the bucket).
    #[serde(default)]
    pub key_prefix: String,
    /// AWS region of the bucket, such as `us-east-1`. Required.
    pub region: String,
    /// How long the state lock lasts without renewal, such as `30s`, `2m` or `1500ms`;
    /// from 2s to 1h. A run renews it well before it runs out; a run that dies holding it
    /// blocks others for at most this long.
    #[serde(default)]
    pub lease_ttl: LeaseTtl,
}

impl S3State {
    /// How long the state lock lasts without renewal.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl.as_duration()
    }
}

/// State in PostgreSQL: table `<schema>.flyteinfra_state`, created if missing, a row per
/// deployment, cloud and object. The connection string is read only from the environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresState {
    /// Name of the environment variable holding the connection string (a URL such as
    /// `postgres://user:pw@host:5432/db`, or `key=value` pairs): it holds a password, so it
    /// is never written in this file. Required.
    pub conn_env: String,
    /// Schema of the state table, `[a-z_][a-z0-9_]*` (at most 63), not `pg_*`. Default
    /// `flyteinfra`.
    #[serde(default = "defaults::state_schema")]
    pub schema: String,
    /// How long the state lock lasts without renewal, such as `30s`, `2m` or `1500ms`;
    /// from 2s to 1h, by the server's clock.
    #[serde(default)]
    pub lease_ttl: LeaseTtl,
    /// TLS on the connections to the server: `disable` (none: only for a server on this
    /// machine or reached through a local tunnel, since the state holds secrets), `require`
    /// (encrypted, the server's certificate not verified, as libpq's `sslmode=require`) or
    /// `verify-full` (the certificate chain and the host name verified). Default `require`.
    #[serde(default)]
    pub tls: PgTls,
    /// `tls: verify-full` only: a PEM file of the CA certificates to trust, relative to
    /// the directory of the config file. Default: the system's trusted roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// State in a Google Cloud Storage bucket: `<prefix>/<cloud>.state.json`, locked by
/// `<prefix>/<cloud>.state.json.lock`, with Application Default Credentials. The bucket
/// must exist, with object versioning on, and must not be one this config makes for Flyte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GcsState {
    /// Name of an existing GCS bucket with object versioning on, outside what this config
    /// manages (never one of Flyte's buckets). Required.
    pub bucket: String,
    /// Object name prefix of the state objects, such as `flyte/prod`: no leading or
    /// trailing `/`, no empty segment. Default: empty (the top of the bucket).
    #[serde(default)]
    pub prefix: String,
    /// How long the state lock lasts without renewal, such as `30s`, `2m` or `1500ms`;
    /// from 2s to 1h.
    #[serde(default)]
    pub lease_ttl: LeaseTtl,
}

/// State in an Azure Blob Storage container: blobs `<key_prefix>/<cloud>.state.json` and
/// `….lock`, with the Azure credential chain. The container must exist and must not be
/// one this config makes for Flyte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzurermState {
    /// The storage account: 3 to 24 lowercase letters and digits. Required.
    pub account: String,
    /// An existing blob container in it, outside what this config manages. Required.
    pub container: String,
    /// Blob name prefix of the state blobs, such as `flyte/prod`: no leading or trailing
    /// `/`, no empty segment. Default: empty.
    #[serde(default)]
    pub key_prefix: String,
    /// How long the state lock lasts without renewal, such as `30s`, `2m` or `1500ms`;
    /// from 2s to 1h. The lease blob also carries an Azure blob lease of 60 s, renewed
    /// with it.
    #[serde(default)]
    pub lease_ttl: LeaseTtl,
}

/// A lease's time to live, written as a whole number and a unit: `1500ms`, `30s`, `2m`,
/// `1h`. Default `30s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseTtl(Duration);

impl LeaseTtl {
    /// The default time to live: 30 seconds.
    pub const DEFAULT: LeaseTtl = LeaseTtl(Duration::from_secs(30));
    /// The shortest a config accepts: a lease must outlive a renewal round trip.
    pub const MIN: LeaseTtl = LeaseTtl(Duration::from_secs(2));
    /// The longest a config accepts: a stalled holder blocks others this long at most.
    pub const MAX: LeaseTtl = LeaseTtl(Duration::from_secs(3600));

    /// `duration` as a time to live (any length; validation checks the range).
    pub fn new(duration: Duration) -> Self {
        Self(duration)
    }

    /// The time to live.
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl Default for LeaseTtl {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a string is not a [`LeaseTtl`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseDurationError(String);

impl FromStr for LeaseTtl {
    type Err = ParseDurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected a whole number directly followed by a unit, `ms`, `s`, `m` or `h`, such as `30s`, `2m` or `1500ms`";
        let fail = |why: &str| Err(ParseDurationError(format!("`{s}` {why}, {expected}")));
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let millis_per = match unit {
            _ if s.is_empty() => return fail("is empty"),
            _ if digits.is_empty() => return fail("is not a duration"),
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return fail("has no unit"),
            _ => return fail("is not a duration"),
        };
        match digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(millis_per))
        {
            Some(millis) => Ok(LeaseTtl(Duration::from_millis(millis))),
            None => fail("is too long"),
        }
    }
}

impl fmt::Display for LeaseTtl {
    /// The largest unit that states the duration exactly: `30s`, `2m`, `1500ms`, `1h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let (n, unit) = if millis == 0 {
            (0, "s")
        } else if millis.is_multiple_of(3_600_000) {
            (millis / 3_600_000, "h")
        } else if millis.is_multiple_of(60_000) {
            (millis / 60_000, "m")
        } else if millis.is_multiple_of(1_000) {
            (millis / 1_000, "s")
        } else {
            (millis, "ms")
        };
        write!(f, "{n}{unit}")
    }
}

impl Serialize for LeaseTtl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LeaseTtl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for LeaseTtl {
    fn schema_name() -> Cow<'static, str> {
        "LeaseTtl".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: a whole number and a unit (`ms`, `s`, `m`, `h`), such as `30s`, `2m` or `1500ms`; from 2s to 1h.",
            "pattern": "^[0-9]+(ms|s|m|h)$"
        })
    }
}

/// Default values referenced by `#[serde(default = "…")]`.
pub(crate) mod defaults {
    use super::Ipv4Cidr;

    pub(crate) fn state_schema() -> String {
        "flyteinfra".to_string()
    }

    pub(crate) fn yes() -> bool {
        true
    }
    pub(crate) fn sandbox_cloud() -> super::Cloud {
        super::Cloud::Sandbox
    }
    pub(crate) fn postgres_port() -> u16 {
        5432
    }
    pub(crate) fn postgres_admin_user() -> String {
        "postgres".to_owned()
    }
    pub(crate) fn object_store_region() -> String {
        "us-east-1".to_owned()
    }
    pub(crate) fn aws_vpc_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 0, 0, 0], 16)
    }
    pub(crate) fn aws_node_instance_type() -> String {
        "m7i.xlarge".to_owned()
    }
    pub(crate) fn aws_db_instance_class() -> String {
        "db.t3.medium".to_owned()
    }
    pub(crate) fn aws_trust_policy_limit() -> u32 {
        2048
    }
    pub(crate) fn gcp_subnet_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 10, 0, 0], 20)
    }
    pub(crate) fn gcp_pods_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 16, 0, 0], 14)
    }
    pub(crate) fn gcp_services_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 20, 0, 0], 20)
    }
    pub(crate) fn gcp_machine_type() -> String {
        "e2-standard-4".to_owned()
    }
    pub(crate) fn gcp_db_tier() -> String {
        "db-custom-1-3840".to_owned()
    }
    pub(crate) fn gcp_release_channel() -> String {
        "STABLE".to_owned()
    }
    pub(crate) fn azure_vnet_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 30, 0, 0], 16)
    }
    pub(crate) fn azure_node_subnet_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 30, 0, 0], 20)
    }
    pub(crate) fn azure_db_subnet_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 30, 16, 0], 24)
    }
    pub(crate) fn azure_pod_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 244, 0, 0], 16)
    }
    pub(crate) fn azure_service_cidr() -> Ipv4Cidr {
        Ipv4Cidr::known([10, 0, 0, 0], 16)
    }
    pub(crate) fn azure_vm_size() -> String {
        "Standard_D4s_v5".to_owned()
    }
    pub(crate) fn azure_db_sku() -> String {
        "GP_Standard_D2s_v3".to_owned()
    }
}

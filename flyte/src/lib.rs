//! Flyte knowledge for flyteinfra: the deployment config file.
//!
//! This crate owns what a Flyte deployment is made of, starting with [`Config`], the
//! one YAML file a user writes. It depends on `flyteinfra-core` only; cloud calls,
//! plans and state live in other crates, and printing is left to the binary.

pub mod access;
mod blueprint;
mod config;
pub mod values;

pub use blueprint::{
    AZURE_REQUIRED_PROVIDERS, Blueprint, BlueprintError, Facts, GCP_REQUIRED_APIS, OutputSpec,
    expand,
};

pub use config::{
    AwsConfig, AwsExisting, AwsKmsKey, AzureConfig, AzureExisting, AzurermState, Capabilities,
    Chart, CidrParseError, Cloud, ClusterConfig, Config, ConfigError, ConfigErrorKind,
    ControlPlaneConfig, DataPlaneConfig, DatabaseConfig, EncryptionConfig,
    FLYTE_CORE_STORAGE_COMPONENTS, FlyteConfig, GcpConfig, GcpExisting, GcsState, Ipv4Cidr,
    LeaseTtl, LocalState, NatGateways, NodeCounts, ObjectStore, ParseCloudError,
    ParseDurationError, PgTls, PlaneAws, PlaneAzure, PlaneGcp, Position, PostgresState, S3State,
    SandboxConfig, SandboxPostgres, StateBackend, StateConfig, StorageConfig, Style, TaskTrust,
    Weight, json_schema, starter,
};

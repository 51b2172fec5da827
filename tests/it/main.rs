//! Integration tests, one temp dir per test: the CLI against the simulated cloud (the
//! test-only `flyteinfra-sim` binary, `FLYTEINFRA_SIMULATE`), and the shipped `flyteinfra`
//! binary against moto, the GCP test double, and the Azure test double with Azurite.

mod azurite;
mod gcs;
mod moto;
mod postgres;
mod postgres_tls;
mod util;

mod adopt;
mod ask_first;
mod aws;
mod aws_drift;
mod aws_faults;
mod azblob_state;
mod azure;
mod bad_files;
mod bad_input;
mod cluster_credentials;
mod crash;
mod critical_path;
mod gcp;
mod gcs_state;
mod helm;
mod helm_multi;
mod helm_sandbox;
mod kms_state;
mod locking;
mod multi_cluster;
mod pg_provider;
mod plan_apply;
mod plan_schema;
mod postgres_state;
mod protect;
mod provider_panic;
mod s3_state;
mod sandbox;
mod sealed_state;
mod secrets;
mod team_state;

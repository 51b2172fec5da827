//! Integration tests: the real `flyteinfra` binary against the simulated cloud
//! (`FLYTEINFRA_SIMULATE`), one temp dir per test.

mod gcs;
mod moto;
mod util;

mod aws;
mod aws_drift;
mod aws_faults;
mod bad_input;
mod crash;
mod gcp;
mod locking;
mod plan_apply;
mod secrets;

//! flyteinfra's AWS resource types: their schemas now, their API calls (aws-sdk-rust) with
//! the AWS provider issue.
//!
//! Nothing here knows Flyte: the Flyte blueprint decides which of these resources a
//! deployment needs and how they are wired together.

mod resources;

pub use resources::schemas;

//! The Flyte blueprint: which resources a deployment needs and how they are wired.
//!
//! It turns a [`Config`] into resources with references between them (the graph's edges)
//! and names the outputs that feed Helm values. It knows no SDK: resource type names and
//! attribute names are the providers' schemas, checked by the plan.

mod aws;

use flyteinfra_core::{Expr, ResourceSpec};

use crate::config::{Cloud, Config};

/// One output of a deployment (e.g. the database host), computed from resources after apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    /// The output's name.
    pub name: String,
    /// Its value.
    pub value: Expr,
    /// Redacted in every display.
    pub sensitive: bool,
}

/// Everything a deployment needs on one cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blueprint {
    /// The resources, in no particular order (the graph orders them).
    pub resources: Vec<ResourceSpec>,
    /// The outputs.
    pub outputs: Vec<OutputSpec>,
}

/// Why a config cannot be expanded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlueprintError {
    /// The cloud's resources are not described yet.
    #[error("deployments on {0} are not supported yet: only `aws` can be planned in this version")]
    Unsupported(Cloud),
    /// The selected cloud has no section in the config.
    #[error("the config has no `{0}:` section")]
    MissingSection(Cloud),
}

/// What the blueprint needs to know about the cloud account that the config does not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The AWS account id (derived bucket names include it, as S3 names are global).
    pub account_id: String,
}

impl Facts {
    /// Stand-ins for commands that make no API call (`validate`, `graph`).
    pub fn offline() -> Facts {
        Facts {
            account_id: "000000000000".to_string(),
        }
    }
}

/// Expands `config` for `cloud` into resources and outputs.
pub fn expand(config: &Config, cloud: Cloud, facts: &Facts) -> Result<Blueprint, BlueprintError> {
    match cloud {
        Cloud::Aws => {
            let aws = config
                .aws
                .as_ref()
                .ok_or(BlueprintError::MissingSection(cloud))?;
            Ok(aws::expand(config, aws, facts))
        }
        other => Err(BlueprintError::Unsupported(other)),
    }
}

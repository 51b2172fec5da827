//! The Flyte blueprint: which resources a deployment needs and how they are wired.
//!
//! It turns a [`Config`] into resources with references between them (the graph's edges)
//! and names the outputs that feed Helm values. It knows no SDK: resource type names and
//! attribute names are the providers' schemas, checked by the plan.

mod aws;
mod azure;
mod gcp;
mod sandbox;

pub(crate) use gcp::bucket_name as gcp_bucket_name;
pub(crate) use sandbox::bucket_name as sandbox_bucket_name;

pub use azure::REQUIRED_PROVIDERS as AZURE_REQUIRED_PROVIDERS;
pub use gcp::REQUIRED_APIS as GCP_REQUIRED_APIS;

use flyteinfra_core::{Address, Expr, ResourceSpec};

use crate::config::{Cloud, Config};

// Helpers both clouds' blueprints use.

fn addr(t: &str, n: &str) -> Address {
    Address::new(t, n)
}

fn r(a: &Address, attr: &str) -> Expr {
    Expr::reference(a, attr)
}

fn s(v: &str) -> Expr {
    Expr::from(v)
}

fn output(name: &str, value: Expr, sensitive: bool) -> OutputSpec {
    OutputSpec {
        name: name.into(),
        value,
        sensitive,
    }
}

/// Eight hex digits standing for `text` in a name that would be too long: the same in
/// every build, so a derived bucket name never changes under an existing deployment.
fn hash_suffix(text: &str) -> String {
    format!("{:08x}", flyteinfra_core::fnv1a32(text.as_bytes()))
}

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
    /// What the deployment leaves out that its config would otherwise ask for, one sentence
    /// each, for the plan to show (a sandbox store's missing capabilities); empty on the clouds.
    pub notes: Vec<String>,
}

/// Why a config cannot be expanded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlueprintError {
    /// The task role's trust (its subjects, once per cluster that runs tasks) does not fit
    /// in one IAM trust policy.
    #[error(
        "the task role's trust policy would name {subjects} service accounts{} (about {size} \
         characters; the limit is {limit}): {}",
        in_clusters(.clusters),
        trust_remedies(.wildcard, .clusters, .limit)
    )]
    TrustPolicyTooLarge {
        /// How many subjects in each statement.
        subjects: usize,
        /// How many statements: one per cluster that runs tasks.
        clusters: usize,
        /// Whether `flyte.task_trust` is already `wildcard`.
        wildcard: bool,
        /// The policy's size in characters.
        size: usize,
        /// The limit it was checked against (`aws.trust_policy_limit`).
        limit: usize,
    },
    /// The selected cloud has no section in the config.
    #[error("the config has no `{0}:` section")]
    MissingSection(Cloud),
}

fn in_clusters(clusters: &usize) -> String {
    if *clusters > 1 {
        format!(" for each of {clusters} data-plane clusters")
    } else {
        String::new()
    }
}

/// The ways out of [`BlueprintError::TrustPolicyTooLarge`] that are still open: a remedy
/// already taken is not offered again.
fn trust_remedies(wildcard: &bool, clusters: &usize, limit: &usize) -> String {
    let mut ways = Vec::new();
    if !*wildcard {
        ways.push(
            "set `flyte.task_trust: wildcard` to trust `system:serviceaccount:*:default` with \
             `StringLike`"
                .to_string(),
        );
    }
    if *limit < 4096 {
        ways.push(
            "raise IAM's \"Role trust policy length\" quota to 4096 in Service Quotas and set \
             `aws.trust_policy_limit: 4096`"
                .to_string(),
        );
    }
    ways.push(match (*wildcard, *clusters > 1) {
        (false, true) => "configure fewer projects × domains or data planes".to_string(),
        (false, false) => "configure fewer projects × domains".to_string(),
        (true, _) => "configure fewer data planes".to_string(),
    });
    ways.join(", or ")
}

/// What the blueprint needs to know about the cloud account that the config does not say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// The AWS account id (derived bucket names include it, as S3 names are global).
    pub account_id: String,
    /// The GCP project number (Service Networking names networks by it).
    pub project_number: String,
    /// The id of the Azure resource group `azure.resource_group` when it already exists
    /// and no flyteinfra deployment made it: it is then read, never changed or deleted.
    pub azure_existing_group: Option<String>,
}

impl Facts {
    /// Stand-ins for commands that make no API call (`validate`, `graph`).
    pub fn offline() -> Facts {
        Facts {
            account_id: "000000000000".to_string(),
            project_number: "000000000000".to_string(),
            azure_existing_group: None,
        }
    }
}

/// Expands `config` for `cloud` into resources, outputs and notes.
pub fn expand(config: &Config, cloud: Cloud, facts: &Facts) -> Result<Blueprint, BlueprintError> {
    match cloud {
        Cloud::Aws => {
            let aws = config
                .aws
                .as_ref()
                .ok_or(BlueprintError::MissingSection(cloud))?;
            aws::expand(config, aws, facts)
        }
        Cloud::Gcp => {
            let gcp = config
                .gcp
                .as_ref()
                .ok_or(BlueprintError::MissingSection(cloud))?;
            gcp::expand(config, gcp, facts)
        }
        Cloud::Azure => {
            let azure = config
                .azure
                .as_ref()
                .ok_or(BlueprintError::MissingSection(cloud))?;
            azure::expand(config, azure, facts)
        }
        Cloud::Sandbox => {
            let sandbox = config
                .sandbox
                .as_ref()
                .ok_or(BlueprintError::MissingSection(cloud))?;
            Ok(sandbox::expand(config, sandbox))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(projects: usize, trust: &str) -> Config {
        let list: Vec<String> = (0..projects).map(|i| format!("project{i:03}")).collect();
        Config::parse(
            &format!(
                "name: demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n  projects: [{}]\n  task_trust: {trust}\n",
                list.join(", ")
            ),
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn too_many_task_subjects_fail_and_offer_the_wildcard() {
        let err = expand(&config(30, "enumerated"), Cloud::Aws, &Facts::offline()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("90 service accounts"), "{msg}");
        assert!(msg.contains("flyte.task_trust: wildcard"), "{msg}");
        // The documented wildcard mode fits whatever the number of projects.
        let bp = expand(&config(30, "wildcard"), Cloud::Aws, &Facts::offline()).unwrap();
        let tasks = bp
            .resources
            .iter()
            .find(|r| r.address.to_string() == "aws_iam_role.flyte_tasks")
            .unwrap();
        let doc = format!("{:?}", tasks.attributes["assume_role_policy"]);
        assert!(doc.contains("StringLike") && doc.contains("system:serviceaccount:*:default"));
    }

    #[test]
    fn a_few_projects_fit() {
        assert!(expand(&config(3, "enumerated"), Cloud::Aws, &Facts::offline()).is_ok());
    }

    #[test]
    fn bucket_names_carry_account_and_region() {
        let facts = Facts {
            account_id: "123456789012".into(),
            project_number: String::new(),
            azure_existing_group: None,
        };
        let bp = expand(&config(1, "enumerated"), Cloud::Aws, &facts).unwrap();
        let bucket = bp
            .resources
            .iter()
            .find(|r| r.address.to_string() == "aws_s3_bucket.metadata")
            .unwrap();
        assert_eq!(
            bucket.attributes["bucket"],
            Expr::from("demo-123456789012-us-east-1-metadata")
        );
    }

    #[test]
    fn hash_suffixes_never_change() {
        // Derived names of existing deployments depend on these exact digits.
        assert_eq!(hash_suffix("123456789012us-east-1"), "facc4165");
    }
}

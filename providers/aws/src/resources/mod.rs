//! One file per resource type; one line per type in [`TYPES`].

use std::sync::Arc;

use flyteinfra_core::{ResourceType, Schema};

use crate::client::AwsClients;

mod db_instance;
mod db_subnet_group;
mod ec2_common;
mod eip;
mod eks_cluster;
mod eks_node_group;
mod iam_openid_connect_provider;
mod iam_role;
mod internet_gateway;
mod nat_gateway;
mod route_table;
mod s3_bucket;
mod security_group;
mod subnet;
mod vpc;
mod vpc_security_group_ingress_rule;

/// Whether a tag key is reserved to AWS (`aws:…`). AWS sets such tags itself
/// (CloudFormation, Service Catalog, EKS, ...) and users can neither set nor remove them, so
/// reads leave them out of `tags`: they never show as drift, and no update tries to remove
/// them.
pub(crate) fn aws_reserved_tag(key: &str) -> bool {
    key.starts_with("aws:")
}

/// One resource type: its schema, and how to build it over the SDK clients.
struct Entry {
    schema: fn() -> Schema,
    build: fn(&AwsClients) -> Arc<dyn ResourceType>,
}

macro_rules! entry {
    ($m:ident) => {
        Entry {
            schema: $m::schema,
            build: $m::build,
        }
    };
}

/// The registry slice: one line per AWS resource type.
const TYPES: &[Entry] = &[
    entry!(vpc),
    entry!(subnet),
    entry!(internet_gateway),
    entry!(eip),
    entry!(nat_gateway),
    entry!(route_table),
    entry!(security_group),
    entry!(vpc_security_group_ingress_rule),
    entry!(db_subnet_group),
    entry!(db_instance),
    entry!(s3_bucket),
    entry!(iam_role),
    entry!(iam_openid_connect_provider),
    entry!(eks_cluster),
    entry!(eks_node_group),
];

/// Every AWS resource type's schema (offline: docs, validation, the simulated cloud).
pub fn schemas() -> Vec<Schema> {
    TYPES.iter().map(|e| (e.schema)()).collect()
}

/// Every AWS resource type, talking to AWS through `clients`.
pub fn resource_types(clients: &AwsClients) -> Vec<Arc<dyn ResourceType>> {
    TYPES.iter().map(|e| (e.build)(clients)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_documented_and_prefixed() {
        assert_eq!(
            flyteinfra_core::schema_problems(&schemas(), "aws_"),
            Vec::<String>::new()
        );
    }
}

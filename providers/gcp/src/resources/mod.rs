//! One file per resource type; one line per type in [`TYPES`].

use std::sync::Arc;

use flyteinfra_core::{ResourceType, Schema};

use crate::client::GcpClients;

// Network and project services (one block per area; keep each block's lines together).
// -- network mods --
mod compute_common;
mod compute_global_address;
mod compute_network;
mod compute_subnetwork;
pub(crate) mod project_services;
mod service_networking_connection;

// Storage and identities.
// -- identity mods --
mod iam_policy;
mod project_iam_custom_role;
mod project_iam_member;
mod service_account;
mod service_account_iam_member;
mod storage_bucket;
mod storage_bucket_iam_member;

// Cloud SQL and GKE.
// -- sql-gke mods --
mod container_cluster;
mod container_node_pool;
mod operations;
mod sql_database;
mod sql_database_instance;
mod sql_user;

/// One resource type: its schema, and how to build it over the clients.
struct Entry {
    schema: fn() -> Schema,
    build: fn(&GcpClients) -> Arc<dyn ResourceType>,
}

#[allow(unused_macros)]
macro_rules! entry {
    ($m:ident) => {
        Entry {
            schema: $m::schema,
            build: $m::build,
        }
    };
}

/// The registry slice: one line per GCP resource type.
const TYPES: &[Entry] = &[
    // -- network entries --
    entry!(project_services),
    entry!(compute_network),
    entry!(compute_subnetwork),
    entry!(compute_global_address),
    entry!(service_networking_connection),
    // -- identity entries --
    entry!(storage_bucket),
    entry!(storage_bucket_iam_member),
    entry!(service_account),
    entry!(service_account_iam_member),
    entry!(project_iam_member),
    entry!(project_iam_custom_role),
    // -- sql-gke entries --
    entry!(sql_database_instance),
    entry!(sql_database),
    entry!(sql_user),
    entry!(container_cluster),
    entry!(container_node_pool),
];

/// Every GCP resource type's schema (offline: docs, validation, the simulated cloud).
pub fn schemas() -> Vec<Schema> {
    TYPES.iter().map(|e| (e.schema)()).collect()
}

/// Every GCP resource type, talking to Google Cloud through `clients`.
pub fn resource_types(clients: &GcpClients) -> Vec<Arc<dyn ResourceType>> {
    TYPES.iter().map(|e| (e.build)(clients)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_documented_and_prefixed() {
        assert_eq!(
            flyteinfra_core::schema_problems(&schemas(), "gcp_"),
            Vec::<String>::new()
        );
    }
}

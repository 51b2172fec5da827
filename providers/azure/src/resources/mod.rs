//! One file per resource type; one line per type in [`TYPES`].

use std::sync::Arc;

use flyteinfra_core::{ResourceType, Schema};

use crate::client::ArmClient;

pub(crate) mod common;

// The subscription and the network (one block per area; keep each block's lines together).
// -- network mods --
pub(crate) mod network_security_group;
pub(crate) mod private_dns_zone;
pub(crate) mod private_dns_zone_link;
pub mod resource_group;
pub(crate) mod resource_providers;
pub mod subnet;
pub(crate) mod virtual_network;

// The database.
// -- database mods --
pub(crate) mod management_lock;
pub(crate) mod postgresql_flexible_database;
pub(crate) mod postgresql_flexible_server;

// Storage.
// -- storage mods --
pub(crate) mod storage_account;
pub(crate) mod storage_container;
pub(crate) mod storage_management_policy;

// Cluster and identities.
// -- cluster mods --
pub(crate) mod federated_identity_credential;
pub(crate) mod kubernetes_cluster;
pub(crate) mod kubernetes_node_pool;
pub(crate) mod role_assignment;
pub(crate) mod user_assigned_identity;

/// One resource type: its schema, and how to build it over the client.
struct Entry {
    schema: fn() -> Schema,
    build: fn(&ArmClient) -> Arc<dyn ResourceType>,
}

macro_rules! entry {
    ($m:ident) => {
        Entry {
            schema: $m::schema,
            build: $m::build,
        }
    };
}

/// The registry slice: one line per Azure resource type.
const TYPES: &[Entry] = &[
    // -- network entries --
    entry!(resource_providers),
    entry!(resource_group),
    entry!(virtual_network),
    entry!(subnet),
    entry!(network_security_group),
    entry!(private_dns_zone),
    entry!(private_dns_zone_link),
    // -- database entries --
    entry!(postgresql_flexible_server),
    entry!(postgresql_flexible_database),
    entry!(management_lock),
    // -- storage entries --
    entry!(storage_account),
    entry!(storage_container),
    entry!(storage_management_policy),
    // -- cluster entries --
    entry!(kubernetes_cluster),
    entry!(kubernetes_node_pool),
    entry!(user_assigned_identity),
    entry!(federated_identity_credential),
    entry!(role_assignment),
];

/// Every Azure resource type's schema (offline: docs, validation, the simulated cloud).
pub fn schemas() -> Vec<Schema> {
    TYPES.iter().map(|e| (e.schema)()).collect()
}

/// Every Azure resource type, talking to Resource Manager through `client`.
pub fn resource_types(client: &ArmClient) -> Vec<Arc<dyn ResourceType>> {
    TYPES.iter().map(|e| (e.build)(client)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_documented_and_prefixed() {
        assert_eq!(
            flyteinfra_core::schema_problems(&schemas(), "azure_"),
            Vec::<String>::new()
        );
    }
}

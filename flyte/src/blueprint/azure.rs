//! A Flyte deployment on Azure (reference §4): the subscription's resource providers, a
//! resource group, a virtual network with the node subnet and a subnet delegated to
//! PostgreSQL flexible server, a network security group admitting PostgreSQL only from the
//! nodes, the private DNS zone the server resolves in, and the server itself — private
//! access only — with the Flyte database and, with `database.deletion_protection`, a
//! `CanNotDelete` lock (flexible server has no protection property of its own).
//!
//! Storage is one account reachable from the node subnet (and named IPs) only, Entra ID
//! only, with private containers and the raw-data lifecycle rule. AKS runs with the OIDC
//! issuer and Workload Identity; user-assigned identities for the backend and the task
//! pods are federated with exactly Flyte's service accounts and may only use the blobs.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Expr, ResourceSpec, Value};

use super::{Blueprint, BlueprintError, Facts, addr, output, r, s};
use crate::config::{AzureConfig, Config};

/// The resource providers a deployment calls (registered when missing, reference §4.1).
pub const REQUIRED_PROVIDERS: [&str; 5] = [
    "Microsoft.ContainerService",
    "Microsoft.DBforPostgreSQL",
    "Microsoft.ManagedIdentity",
    "Microsoft.Network",
    "Microsoft.Storage",
];

/// Federated identity credentials Azure allows per managed identity.
const MAX_FEDERATED: usize = 20;

/// The small, fixed System pool's VM size (system pods only; Flyte runs in the User pool).
const SYSTEM_POOL_VM_SIZE: &str = "Standard_D2s_v5";

/// Built-in role `Network Contributor`.
const NETWORK_CONTRIBUTOR: &str = "4d97b98b-1d4f-4787-a291-c67834d212e7";

/// Built-in role `Storage Blob Data Contributor`.
const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";

/// A built-in role's definition id in the subscription.
fn role(az: &AzureConfig, guid: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        az.subscription_id
    )
}

/// The cluster DNS service's address: the tenth of the service range.
fn dns_service_ip(az: &AzureConfig) -> String {
    let base = u32::from(az.service_cidr.addr());
    std::net::Ipv4Addr::from(base + 10).to_string()
}

/// The service a PostgreSQL subnet is delegated to.
const POSTGRES_DELEGATION: &str = "Microsoft.DBforPostgreSQL/flexibleServers";

fn tags(name: &str) -> Expr {
    let mut m: BTreeMap<String, Expr> = BTreeMap::new();
    m.insert("flyteinfra-deployment".into(), s(name));
    Expr::Map(m)
}

/// One inbound security rule.
fn rule(name: &str, priority: i64, access: &str, source: Expr, port: &str) -> Expr {
    let mut m: BTreeMap<String, Expr> = BTreeMap::new();
    m.insert("name".into(), s(name));
    m.insert("priority".into(), Expr::from(priority));
    m.insert("direction".into(), s("Inbound"));
    m.insert("access".into(), s(access));
    m.insert("protocol".into(), s(if port == "*" { "*" } else { "Tcp" }));
    m.insert("source_address_prefix".into(), source);
    m.insert("destination_port_range".into(), s(port));
    Expr::Map(m)
}

/// The storage account's name before its token suffix: the deployment's letters and
/// digits (account names allow nothing else), at most 16 so the 8-digit suffix fits in 24.
fn account_prefix(name: &str) -> String {
    let mut p: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    if p.len() < 3 {
        p.push_str("fly");
    }
    p
}

fn strings(items: &[&str]) -> Value {
    Value::from(items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

pub(super) fn expand(
    config: &Config,
    az: &AzureConfig,
    facts: &Facts,
) -> Result<Blueprint, BlueprintError> {
    let name = config.name.as_str();
    let location = az.location.as_str();
    let mut out = Vec::new();

    // Every resource comes after the providers it calls are registered.
    let providers = addr("azure_resource_providers", "main");
    let after: Vec<Address> = if az.register_providers {
        out.push(
            ResourceSpec::managed(providers.clone())
                .with("namespaces", strings(&REQUIRED_PROVIDERS)),
        );
        vec![providers.clone()]
    } else {
        Vec::new()
    };
    let managed = |a: &Address| {
        after
            .iter()
            .fold(ResourceSpec::managed(a.clone()), |spec, d| spec.after(d))
    };

    // The resource group: flyteinfra's own (made, tagged, deleted when empty of anything
    // else), or the user's, which the session found with no flyteinfra token on it.
    let rg = addr("azure_resource_group", "main");
    match &facts.azure_existing_group {
        Some(id) => out.push(ResourceSpec::existing(rg.clone(), id)),
        None => out.push(
            managed(&rg)
                .with("name", az.resource_group.as_str())
                .with("location", location)
                .with("tags", tags(name)),
        ),
    }
    let in_group = |a: &Address| {
        managed(a)
            .with("resource_group", r(&rg, "name"))
            .with("location", location)
            .with("tags", tags(name))
    };

    // Network: flyteinfra's virtual network, or the user's, where it adds only its own
    // subnets, security group and DNS link.
    let vnet = addr("azure_virtual_network", "main");
    match &az.existing.vnet_id {
        Some(id) => out.push(ResourceSpec::existing(vnet.clone(), id)),
        None => out.push(
            in_group(&vnet)
                .with("name", format!("{name}-vnet"))
                .with("address_space", Value::from(vec![az.vnet_cidr.to_string()])),
        ),
    }
    let nodes = addr("azure_subnet", "nodes");
    match &az.existing.subnet_id {
        Some(id) => out.push(ResourceSpec::existing(nodes.clone(), id)),
        None => out.push(
            managed(&nodes)
                .with("virtual_network_id", r(&vnet, "id"))
                .with("name_prefix", "nodes")
                .with("address_prefix", az.node_subnet_cidr.to_string())
                // The storage account admits this subnet through a service endpoint.
                .with("service_endpoints", strings(&["Microsoft.Storage"])),
        ),
    }
    let nsg = addr("azure_network_security_group", "db");
    out.push(in_group(&nsg).with("name", format!("{name}-db-nsg")).with(
        "rules",
        Expr::List(vec![
            rule(
                "allow-postgres-from-nodes",
                100,
                "Allow",
                r(&nodes, "address_prefix"),
                "5432",
            ),
            // The server's own subnet (maintenance and, later, HA replication).
            rule(
                "allow-db-subnet",
                110,
                "Allow",
                s(&az.db_subnet_cidr.to_string()),
                "*",
            ),
            // Azure's default rules admit the whole virtual network; this one
            // comes first.
            rule("deny-other-inbound", 4096, "Deny", s("*"), "*"),
        ]),
    ));
    let db_subnet = addr("azure_subnet", "db");
    out.push(
        managed(&db_subnet)
            .with("virtual_network_id", r(&vnet, "id"))
            .with("name_prefix", "postgres")
            .with("address_prefix", az.db_subnet_cidr.to_string())
            .with("delegation", POSTGRES_DELEGATION)
            .with("network_security_group_id", r(&nsg, "id")),
    );
    // Private access: the server's name resolves in this zone, linked to the network.
    let zone = addr("azure_private_dns_zone", "db");
    out.push(
        managed(&zone)
            .with("resource_group", r(&rg, "name"))
            .with(
                "name",
                format!("{name}.private.postgres.database.azure.com"),
            )
            .with("tags", tags(name)),
    );
    let link = addr("azure_private_dns_zone_link", "db");
    out.push(
        managed(&link)
            .with("zone_id", r(&zone, "id"))
            .with("name", format!("{name}-vnet"))
            .with("virtual_network_id", r(&vnet, "id"))
            .with("registration_enabled", false)
            .with("tags", tags(name)),
    );

    // The database server: private access only, its admin the user Flyte connects as.
    let dbc = &config.database;
    let password = addr("random_password", "db");
    out.push(ResourceSpec::managed(password.clone()).with("length", 32i64));
    let (sku_name, sku_tier) = az
        .db_sku_parts()
        .unwrap_or(("Standard_D2s_v3", "GeneralPurpose"));
    let server = addr("azure_postgresql_flexible_server", "main");
    out.push(
        in_group(&server)
            // The zone must resolve in the network before the server registers in it.
            .after(&link)
            .with("name_prefix", format!("{name}-db"))
            .with("version", dbc.engine_version.as_str())
            .with("sku_name", sku_name)
            .with("sku_tier", sku_tier)
            .with("storage_gb", i64::from(dbc.storage_gb))
            .with(
                "backup_retention_days",
                i64::from(dbc.backup_retention_days),
            )
            .with("administrator_login", dbc.username.as_str())
            .with("administrator_password", r(&password, "result"))
            .with("delegated_subnet_id", r(&db_subnet, "id"))
            .with("private_dns_zone_id", r(&zone, "id"))
            .with("require_secure_transport", dbc.require_ssl),
    );
    let database = addr("azure_postgresql_flexible_database", "flyte");
    out.push(
        managed(&database)
            .with("server_id", r(&server, "id"))
            .with("name", dbc.name.as_str())
            .with("charset", "UTF8")
            .with("collation", "en_US.utf8"),
    );
    // Deletion protection is a lock on the server, its own resource: `destroy` refuses to
    // delete it while `protected`, as on the other clouds.
    out.push(
        managed(&addr("azure_management_lock", "db"))
            // A lock on the server also locks its databases: it comes after them, so a
            // destroy lifts it before it deletes them.
            .after(&database)
            .with("scope", r(&server, "id"))
            .with("name", "flyteinfra-deletion-protection")
            .with("level", "CanNotDelete")
            .with(
                "notes",
                "The Flyte database's deletion protection (database.deletion_protection)",
            )
            .with("protected", dbc.deletion_protection),
    );

    // Storage: one account, private containers, reachable from the node subnet only
    // (and the IPs the user names), Entra ID only (no shared keys, as Workload Identity
    // needs), versioned with soft delete.
    let account = addr("azure_storage_account", "main");
    out.push(
        in_group(&account)
            .with("name_prefix", account_prefix(name))
            .with("sku", "Standard_LRS")
            .with("https_only", true)
            .with("min_tls_version", "TLS1_2")
            .with("allow_blob_public_access", false)
            .with("shared_key_access", false)
            .with("subnet_ids", Expr::List(vec![r(&nodes, "id")]))
            .with("allow_ips", Value::from(az.storage_allow_ips.clone()))
            .with("versioning", true)
            .with("soft_delete_days", 7i64),
    );
    let st = &config.storage;
    let container = |purpose: &str, chosen: &Option<String>| {
        let a = addr("azure_storage_container", purpose);
        let container_name = chosen
            .clone()
            .unwrap_or_else(|| format!("{name}-{purpose}"));
        let spec = managed(&a)
            .with("account_id", r(&account, "id"))
            .with("name", container_name.as_str())
            .force_destroy(st.force_destroy);
        (a, container_name, spec)
    };
    let (metadata, _, spec) = container("metadata", &st.metadata_bucket);
    out.push(spec);
    let (data, data_name) = if st.separate_data_bucket {
        let (data, data_name, spec) = container("data", &st.data_bucket);
        out.push(spec);
        (data, data_name)
    } else {
        (metadata.clone(), String::new())
    };
    // Raw task data expires, as on the other clouds, only in a container of its own.
    if let Some(days) = st.raw_data_expiry_days.filter(|_| st.separate_data_bucket) {
        let mut rule: BTreeMap<String, Expr> = BTreeMap::new();
        rule.insert("name".into(), s("raw-data-expiry"));
        rule.insert("prefix".into(), s(&format!("{data_name}/")));
        rule.insert("delete_after_days".into(), Expr::from(i64::from(days)));
        out.push(
            managed(&addr("azure_storage_management_policy", "main"))
                .after(&data)
                .with("account_id", r(&account, "id"))
                .with("rules", Expr::List(vec![Expr::Map(rule)])),
        );
    }

    // The cluster: AKS with the OIDC issuer and Workload Identity, Azure CNI Overlay, a
    // small fixed System pool and an autoscaled User pool for Flyte and its tasks, both on
    // the node subnet; or the user's cluster, read only.
    let cluster = addr("azure_kubernetes_cluster", "main");
    let nodes_count = &config.cluster.nodes;
    match &az.existing.cluster_id {
        Some(id) => out.push(ResourceSpec::existing(cluster.clone(), id)),
        None => {
            out.push(
                in_group(&cluster)
                    .with("name", format!("{name}-aks"))
                    .with("dns_prefix", name)
                    .with("kubernetes_version", config.cluster.version.as_str())
                    .with("upgrade_channel", "patch")
                    .with("pod_cidr", az.pod_cidr.to_string())
                    .with("service_cidr", az.service_cidr.to_string())
                    .with("dns_service_ip", dns_service_ip(az))
                    .with("system_pool_vm_size", SYSTEM_POOL_VM_SIZE)
                    .with("system_pool_count", 2i64)
                    .with("subnet_id", r(&nodes, "id")),
            );
            out.push(
                managed(&addr("azure_kubernetes_node_pool", "flyte"))
                    .with("cluster_id", r(&cluster, "id"))
                    .with("name", "flyte")
                    .with("mode", "User")
                    .with("vm_size", az.vm_size.as_str())
                    .with("min_count", i64::from(nodes_count.min))
                    .with("max_count", i64::from(nodes_count.max))
                    .with("kubernetes_version", config.cluster.version.as_str())
                    .with("subnet_id", r(&nodes, "id")),
            );
            // The cluster's identity joins nodes and load balancers to the subnet.
            out.push(
                managed(&addr("azure_role_assignment", "cluster_network"))
                    .with("scope", r(&nodes, "id"))
                    .with("role_definition_id", role(az, NETWORK_CONTRIBUTOR))
                    .with("principal_id", r(&cluster, "principal_id"))
                    .with("principal_type", "ServicePrincipal"),
            );
        }
    }

    // Identities: the backend's, and the task pods' (one per domain past 20 project ×
    // domain pairs: Azure allows 20 federated credentials per identity), each trusted by
    // exactly the Kubernetes service accounts that run as it, written one at a time per
    // identity (Azure refuses concurrent writes to one identity's credentials).
    let fl = &config.flyte;
    let issuer = r(&cluster, "oidc_issuer_url");
    let identity = |purpose: &str| {
        let a = addr("azure_user_assigned_identity", purpose);
        let spec = in_group(&a).with("name", format!("{name}-{}", purpose.replace('_', "-")));
        (a, spec)
    };
    let federate = |out: &mut Vec<ResourceSpec>, id: &Address, subjects: Vec<(String, String)>| {
        let mut previous: Option<Address> = None;
        for (cred, subject) in subjects {
            let a = addr(
                "azure_federated_identity_credential",
                &format!("{}_{}", id.name(), cred.replace('-', "_")),
            );
            let mut spec = managed(&a)
                .with("identity_id", r(id, "id"))
                .with("name", cred.as_str())
                .with("issuer", issuer.clone())
                .with("subject", subject.as_str())
                .with("audiences", strings(&["api://AzureADTokenExchange"]));
            if let Some(p) = &previous {
                spec = spec.after(p);
            }
            out.push(spec);
            previous = Some(a);
        }
    };
    let (backend, spec) = identity("backend");
    out.push(spec);
    // One credential per backend service account (one for flyte-binary, three for
    // flyte-core), all on the one backend identity.
    let backend_subjects = fl
        .backend_service_accounts()
        .iter()
        .map(|sa| {
            (
                format!("{}-{sa}", fl.namespace),
                format!("system:serviceaccount:{}:{sa}", fl.namespace),
            )
        })
        .collect();
    federate(&mut out, &backend, backend_subjects);
    let subject = |ns: &str| format!("system:serviceaccount:{ns}:default");
    let mut task_identities = Vec::new();
    if fl.projects.len() * fl.domains.len() <= MAX_FEDERATED {
        let (tasks, spec) = identity("tasks");
        out.push(spec);
        let subjects = fl
            .task_namespaces()
            .into_iter()
            .map(|ns| (ns.clone(), subject(&ns)))
            .collect();
        federate(&mut out, &tasks, subjects);
        task_identities.push((None, tasks));
    } else {
        for domain in &fl.domains {
            let (tasks, spec) = identity(&format!("tasks_{domain}"));
            out.push(spec);
            let subjects = fl
                .projects
                .iter()
                .map(|p| {
                    let ns = format!("{p}-{domain}");
                    (ns.clone(), subject(&ns))
                })
                .collect();
            federate(&mut out, &tasks, subjects);
            task_identities.push((Some(domain.clone()), tasks));
        }
    }
    // Each identity reads and writes blobs in the account, and nothing more.
    let all: Vec<&Address> = std::iter::once(&backend)
        .chain(task_identities.iter().map(|(_, a)| a))
        .collect();
    for id in all {
        out.push(
            managed(&addr(
                "azure_role_assignment",
                &format!("{}_blob", id.name()),
            ))
            .with("scope", r(&account, "id"))
            .with(
                "role_definition_id",
                role(az, STORAGE_BLOB_DATA_CONTRIBUTOR),
            )
            .with("principal_id", r(id, "principal_id"))
            .with("principal_type", "ServicePrincipal"),
        );
    }

    let mut outputs = vec![
        output("cluster_name", r(&cluster, "name"), false),
        output("cluster_id", r(&cluster, "id"), false),
        output("cluster_endpoint", r(&cluster, "endpoint"), false),
        output("oidc_issuer_url", issuer.clone(), false),
        output("backend_client_id", r(&backend, "client_id"), false),
    ];
    for (domain, id) in &task_identities {
        let key = match domain {
            None => "task_client_id".to_string(),
            Some(d) => format!("task_client_id_{d}"),
        };
        outputs.push(output(&key, r(id, "client_id"), false));
    }
    outputs.extend(vec![
        output("subscription_id", s(&az.subscription_id), false),
        output("storage_account", r(&account, "name"), false),
        output("blob_endpoint", r(&account, "blob_endpoint"), false),
        output("metadata_container", r(&metadata, "name"), false),
        output("data_container", r(&data, "name"), false),
        output("location", s(location), false),
        output("resource_group", r(&rg, "name"), false),
        output("db_server_name", r(&server, "name"), false),
        output("db_host", r(&server, "fqdn"), false),
        output("db_port", Expr::from(5432i64), false),
        output("db_name", s(&dbc.name), false),
        output("db_username", s(&dbc.username), false),
        output("db_password", r(&password, "result"), true),
    ]);
    Ok(Blueprint {
        resources: out,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Cloud;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!(
                "name: demo\ncloud: azure\nazure:\n  subscription_id: 00000000-0000-0000-0000-000000000001\n  location: eastus\n  resource_group: flyte-demo\n{extra}"
            ),
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    fn find<'a>(bp: &'a Blueprint, a: &str) -> &'a ResourceSpec {
        bp.resources
            .iter()
            .find(|r| r.address.to_string() == a)
            .unwrap_or_else(|| panic!("no {a}"))
    }

    fn expand_offline(c: &Config) -> Blueprint {
        super::super::expand(c, Cloud::Azure, &Facts::offline()).unwrap()
    }

    #[test]
    fn everything_waits_for_the_providers() {
        let bp = expand_offline(&config(""));
        for r in &bp.resources {
            let t = r.address.type_name();
            if t == "azure_resource_providers" || t == "random_password" {
                continue;
            }
            // Directly, or through the group or network it references.
            let deps: Vec<String> = r.dependencies().iter().map(|d| d.to_string()).collect();
            assert!(!deps.is_empty(), "{} depends on nothing", r.address);
        }
        let rg = find(&bp, "azure_resource_group.main");
        assert!(
            rg.dependencies()
                .iter()
                .any(|d| d.to_string() == "azure_resource_providers.main")
        );
        let without = expand_offline(&config("  register_providers: false\n"));
        assert!(
            without
                .resources
                .iter()
                .all(|r| r.address.type_name() != "azure_resource_providers")
        );
    }

    #[test]
    fn the_server_is_private_and_waits_for_its_dns_link() {
        let bp = expand_offline(&config(""));
        let server = find(&bp, "azure_postgresql_flexible_server.main");
        let deps: Vec<String> = server
            .dependencies()
            .iter()
            .map(|d| d.to_string())
            .collect();
        for d in [
            "azure_private_dns_zone_link.db",
            "azure_subnet.db",
            "azure_private_dns_zone.db",
            "random_password.db",
        ] {
            assert!(deps.contains(&d.to_string()), "{d} not in {deps:?}");
        }
        assert_eq!(server.attributes["sku_name"], Expr::from("Standard_D2s_v3"));
        assert_eq!(server.attributes["sku_tier"], Expr::from("GeneralPurpose"));
        let subnet = find(&bp, "azure_subnet.db");
        assert_eq!(
            subnet.attributes["delegation"],
            Expr::from(POSTGRES_DELEGATION)
        );
        let zone = find(&bp, "azure_private_dns_zone.db");
        assert_eq!(
            zone.attributes["name"],
            Expr::from("demo.private.postgres.database.azure.com")
        );
    }

    #[test]
    fn postgres_is_admitted_only_from_the_node_subnet() {
        let bp = expand_offline(&config(""));
        let nsg = find(&bp, "azure_network_security_group.db");
        let text = format!("{:?}", nsg.attributes["rules"]);
        assert!(text.contains("azure_subnet.nodes"), "{text}");
        assert!(text.contains("5432") && text.contains("Deny"), "{text}");
    }

    #[test]
    fn existing_group_and_network_are_read_not_made() {
        let c = config(
            "  existing:\n    vnet_id: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/corp\n    subnet_id: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/corp/subnets/aks\n",
        );
        let facts = Facts {
            azure_existing_group: Some(
                "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/flyte-demo"
                    .into(),
            ),
            ..Facts::offline()
        };
        let bp = super::super::expand(&c, Cloud::Azure, &facts).unwrap();
        for a in [
            "azure_resource_group.main",
            "azure_virtual_network.main",
            "azure_subnet.nodes",
        ] {
            assert!(
                find(&bp, a).existing_id.is_some(),
                "{a} should be read only"
            );
        }
        // flyteinfra still adds its own subnet, security group and DNS link there.
        for a in [
            "azure_subnet.db",
            "azure_network_security_group.db",
            "azure_private_dns_zone_link.db",
        ] {
            assert!(find(&bp, a).existing_id.is_none(), "{a} should be managed");
        }
    }

    #[test]
    fn deletion_protection_is_a_lock() {
        let bp = expand_offline(&config("database:\n  deletion_protection: true\n"));
        let lock = find(&bp, "azure_management_lock.db");
        assert_eq!(lock.attributes["protected"], Expr::from(true));
        assert_eq!(lock.attributes["level"], Expr::from("CanNotDelete"));
        assert!(
            lock.dependencies()
                .iter()
                .any(|d| d.to_string() == "azure_postgresql_flexible_database.flyte"),
            "a destroy must lift the lock before deleting the database"
        );
    }

    #[test]
    fn storage_admits_the_node_subnet_only_and_holds_no_keys() {
        let bp = expand_offline(&config(
            "  storage_allow_ips: [203.0.113.7]\nstorage:\n  raw_data_expiry_days: 30\n",
        ));
        let account = find(&bp, "azure_storage_account.main");
        assert_eq!(account.attributes["shared_key_access"], Expr::from(false));
        assert_eq!(
            account.attributes["allow_blob_public_access"],
            Expr::from(false)
        );
        assert_eq!(account.attributes["min_tls_version"], Expr::from("TLS1_2"));
        assert_eq!(account.attributes["name_prefix"], Expr::from("demo"));
        let deps: Vec<String> = account
            .dependencies()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert!(deps.contains(&"azure_subnet.nodes".to_string()), "{deps:?}");
        let nodes = find(&bp, "azure_subnet.nodes");
        assert!(
            format!("{:?}", nodes.attributes["service_endpoints"]).contains("Microsoft.Storage")
        );
        assert!(format!("{:?}", account.attributes["allow_ips"]).contains("203.0.113.7"));
        assert_eq!(
            find(&bp, "azure_storage_container.metadata").attributes["name"],
            Expr::from("demo-metadata")
        );
        let policy = find(&bp, "azure_storage_management_policy.main");
        let rules = format!("{:?}", policy.attributes["rules"]);
        assert!(
            rules.contains("demo-data/") && rules.contains("30"),
            "{rules}"
        );
    }

    #[test]
    fn one_container_when_data_is_not_separate_and_no_expiry_on_it() {
        let bp = expand_offline(&config(
            "storage:\n  separate_data_bucket: false\n  raw_data_expiry_days: 30\n",
        ));
        let containers: Vec<_> = bp
            .resources
            .iter()
            .filter(|r| r.address.type_name() == "azure_storage_container")
            .collect();
        assert_eq!(containers.len(), 1);
        assert!(
            bp.resources
                .iter()
                .all(|r| r.address.type_name() != "azure_storage_management_policy")
        );
    }

    #[test]
    fn account_prefixes_are_letters_and_digits() {
        assert_eq!(account_prefix("flyte-prod-eu"), "flyteprodeu");
        assert_eq!(account_prefix("a-b"), "abfly");
        assert_eq!(
            account_prefix("a-very-long-deployment-name"),
            "averylongdeploym"
        );
    }

    fn of_type<'a>(bp: &'a Blueprint, t: &str) -> Vec<&'a ResourceSpec> {
        bp.resources
            .iter()
            .filter(|r| r.address.type_name() == t)
            .collect()
    }

    #[test]
    fn identities_trust_exactly_flytes_service_accounts_one_write_at_a_time() {
        let bp = expand_offline(&config(
            "flyte:\n  projects: [flytesnacks, analytics]\n  domains: [development, production]\n",
        ));
        let creds = of_type(&bp, "azure_federated_identity_credential");
        let subjects: Vec<String> = creds
            .iter()
            .map(|c| format!("{:?}", c.attributes["subject"]))
            .collect();
        assert_eq!(creds.len(), 5, "{subjects:?}");
        for ns in [
            "flyte:flyte-backend",
            "flytesnacks-development:default",
            "flytesnacks-production:default",
            "analytics-development:default",
            "analytics-production:default",
        ] {
            assert!(
                subjects
                    .iter()
                    .any(|s| s.contains(&format!("system:serviceaccount:{ns}"))),
                "{ns} not in {subjects:?}"
            );
        }
        // The task identity's credentials form one chain: each waits for the one before.
        let tasks: Vec<&&ResourceSpec> = creds
            .iter()
            .filter(|c| c.address.name().starts_with("tasks_"))
            .collect();
        let chained = tasks
            .iter()
            .filter(|c| {
                c.dependencies()
                    .iter()
                    .any(|d| d.type_name() == "azure_federated_identity_credential")
            })
            .count();
        assert_eq!(chained, tasks.len() - 1);
        for c in &creds {
            assert!(format!("{:?}", c.attributes["issuer"]).contains("oidc_issuer_url"));
        }
        // Blob access for each identity, scoped to the account; the cluster may manage
        // its subnet.
        let grants = of_type(&bp, "azure_role_assignment");
        assert_eq!(grants.len(), 3);
        for g in &grants {
            let role = format!("{:?}", g.attributes["role_definition_id"]);
            if g.address.name() == "cluster_network" {
                assert!(role.contains(NETWORK_CONTRIBUTOR));
            } else {
                assert!(role.contains(STORAGE_BLOB_DATA_CONTRIBUTOR), "{role}");
                assert!(format!("{:?}", g.attributes["scope"]).contains("azure_storage_account"));
            }
        }
    }

    /// The backend identity's federated credentials: address name → (credential name,
    /// subject), after checking each is on the backend identity.
    fn backend_credentials(bp: &Blueprint) -> BTreeMap<String, (String, String)> {
        let creds: Vec<&ResourceSpec> = of_type(bp, "azure_federated_identity_credential")
            .into_iter()
            .filter(|c| {
                c.attributes["identity_id"]
                    == r(&addr("azure_user_assigned_identity", "backend"), "id")
            })
            .collect();
        let text = |e: &Expr| match e {
            Expr::Value(v) => v.as_str().unwrap().to_string(),
            other => panic!("{other:?}"),
        };
        let map: BTreeMap<String, (String, String)> = creds
            .iter()
            .map(|c| {
                (
                    c.address.name().to_string(),
                    (text(&c.attributes["name"]), text(&c.attributes["subject"])),
                )
            })
            .collect();
        assert_eq!(map.len(), creds.len());
        map
    }

    #[test]
    fn the_backend_identity_trusts_exactly_the_charts_backend_service_accounts() {
        let pair = |cred: &str, subject: &str| (cred.to_string(), subject.to_string());
        // flyte-binary: one credential, at the address it always had.
        let bp = expand_offline(&config("flyte:\n  service_account: my-backend\n"));
        assert_eq!(
            backend_credentials(&bp),
            BTreeMap::from([(
                "backend_flyte_my_backend".to_string(),
                pair("flyte-my-backend", "system:serviceaccount:flyte:my-backend"),
            )])
        );
        let bp = expand_offline(&config(""));
        assert_eq!(
            backend_credentials(&bp).keys().collect::<Vec<_>>(),
            ["backend_flyte_flyte_backend"]
        );
        // flyte-core: one credential per component that touches storage, on the one
        // backend identity; not flytescheduler, not the flyte-binary service account.
        let bp = expand_offline(&config(
            "flyte:\n  chart: flyte-core\n  namespace: flyte-prod\n",
        ));
        let creds = backend_credentials(&bp);
        assert_eq!(
            creds,
            BTreeMap::from([
                (
                    "backend_flyte_prod_datacatalog".to_string(),
                    pair(
                        "flyte-prod-datacatalog",
                        "system:serviceaccount:flyte-prod:datacatalog"
                    ),
                ),
                (
                    "backend_flyte_prod_flyteadmin".to_string(),
                    pair(
                        "flyte-prod-flyteadmin",
                        "system:serviceaccount:flyte-prod:flyteadmin"
                    ),
                ),
                (
                    "backend_flyte_prod_flytepropeller".to_string(),
                    pair(
                        "flyte-prod-flytepropeller",
                        "system:serviceaccount:flyte-prod:flytepropeller"
                    ),
                ),
            ])
        );
        assert!(creds.len() <= MAX_FEDERATED);
        assert_eq!(
            of_type(&bp, "azure_user_assigned_identity")
                .iter()
                .filter(|i| i.address.name() == "backend")
                .count(),
            1
        );
        // Written one at a time: a single chain through the three.
        let backend: Vec<&ResourceSpec> = of_type(&bp, "azure_federated_identity_credential")
            .into_iter()
            .filter(|c| creds.contains_key(c.address.name()))
            .collect();
        let waits: Vec<Vec<String>> = backend
            .iter()
            .map(|c| {
                c.dependencies()
                    .iter()
                    .filter(|d| d.type_name() == "azure_federated_identity_credential")
                    .map(|d| d.name().to_string())
                    .collect()
            })
            .collect();
        assert_eq!(
            waits,
            [
                vec![],
                vec!["backend_flyte_prod_flyteadmin".to_string()],
                vec!["backend_flyte_prod_datacatalog".to_string()],
            ]
        );
    }

    #[test]
    fn past_twenty_pairs_each_domain_gets_a_task_identity() {
        let projects: Vec<String> = (0..7).map(|i| format!("p{i}")).collect();
        let bp = expand_offline(&config(&format!(
            "flyte:\n  projects: [{}]\n  domains: [development, staging, production]\n",
            projects.join(", ")
        )));
        let ids: Vec<String> = of_type(&bp, "azure_user_assigned_identity")
            .iter()
            .map(|r| r.address.name().to_string())
            .collect();
        assert_eq!(
            ids,
            [
                "backend",
                "tasks_development",
                "tasks_staging",
                "tasks_production"
            ]
        );
        let per_identity = of_type(&bp, "azure_federated_identity_credential")
            .iter()
            .filter(|c| c.address.name().starts_with("tasks_staging_"))
            .count();
        assert_eq!(per_identity, 7);
        assert!(
            bp.outputs
                .iter()
                .any(|o| o.name == "task_client_id_staging")
        );
        // Twenty pairs still share one identity.
        let bp = expand_offline(&config(
            "flyte:\n  projects: [a1, a2, a3, a4]\n  domains: [d1, d2, d3, d4, d5]\n",
        ));
        assert_eq!(of_type(&bp, "azure_user_assigned_identity").len(), 2);
    }

    #[test]
    fn the_cluster_has_workload_identity_and_an_existing_one_is_read() {
        let bp = expand_offline(&config(""));
        let cluster = find(&bp, "azure_kubernetes_cluster.main");
        assert_eq!(cluster.attributes["upgrade_channel"], Expr::from("patch"));
        assert_eq!(
            cluster.attributes["dns_service_ip"],
            Expr::from("10.0.0.10")
        );
        let pool = find(&bp, "azure_kubernetes_node_pool.flyte");
        assert_eq!(pool.attributes["mode"], Expr::from("User"));
        let c = config(
            "  existing:\n    vnet_id: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/corp\n    subnet_id: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/corp/subnets/aks\n    cluster_id: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/k/providers/Microsoft.ContainerService/managedClusters/aks\n",
        );
        let bp = expand_offline(&c);
        assert!(
            find(&bp, "azure_kubernetes_cluster.main")
                .existing_id
                .is_some()
        );
        assert!(of_type(&bp, "azure_kubernetes_node_pool").is_empty());
        assert!(
            of_type(&bp, "azure_role_assignment")
                .iter()
                .all(|g| g.address.name() != "cluster_network")
        );
    }
}

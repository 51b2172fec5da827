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
//!
//! With `style: multi-cluster` that cluster is the control plane, and each data plane gets
//! an AKS cluster of its own on the same subnet; flytepropeller gets an identity trusted by
//! every plane's issuer, and task identities trust the planes' issuers instead.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Expr, ResourceSpec, Value};

use super::{Blueprint, BlueprintError, Facts, addr, output, r, s};
use crate::config::{AzureConfig, Config, DataPlaneConfig, NodeCounts, Style};

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

/// flytepropeller's service account in `flyte-core`.
const PROPELLER: &str = "flytepropeller";

/// A data plane's part of a federated credential's name: `dp-<plane>`.
fn plane_prefix(p: &DataPlaneConfig) -> String {
    p.address_name().replace('_', "-")
}

/// One federated credential of an identity: its name (unique per identity), the issuer
/// of the cluster it trusts, and the Kubernetes service account there.
struct Federated {
    name: String,
    issuer: Expr,
    subject: String,
}

/// One AKS cluster with what each cluster needs of its own, the same for the control plane
/// and every data plane.
struct Aks<'a> {
    /// Address names of the cluster, its User node pool and its grant on the subnet.
    cluster: &'a str,
    pool: &'a str,
    network_grant: &'a str,
    /// The cluster's name in Azure (unique in the resource group) and DNS prefix.
    name: String,
    dns_prefix: String,
    nodes: NodeCounts,
    vm_size: &'a str,
    /// The resource ID of the user's cluster: read only, with no pool or grant.
    existing: Option<&'a str>,
}

impl Aks<'_> {
    /// AKS with the OIDC issuer and Workload Identity, Azure CNI Overlay, a small fixed
    /// System pool and an autoscaled User pool for Flyte and its tasks, both on `subnet`;
    /// or the user's cluster, read only. Returns the cluster's address.
    fn push(
        self,
        out: &mut Vec<ResourceSpec>,
        config: &Config,
        az: &AzureConfig,
        managed: &dyn Fn(&Address) -> ResourceSpec,
        in_group: &dyn Fn(&Address) -> ResourceSpec,
        subnet: &Address,
    ) -> Address {
        let cluster = addr("azure_kubernetes_cluster", self.cluster);
        if let Some(id) = self.existing {
            out.push(ResourceSpec::existing(cluster.clone(), id));
            return cluster;
        }
        let version = config.cluster.version.as_str();
        out.push(
            in_group(&cluster)
                .with("name", self.name)
                .with("dns_prefix", self.dns_prefix)
                .with("kubernetes_version", version)
                .with("upgrade_channel", "patch")
                .with("pod_cidr", az.pod_cidr.to_string())
                .with("service_cidr", az.service_cidr.to_string())
                .with("dns_service_ip", dns_service_ip(az))
                .with("system_pool_vm_size", SYSTEM_POOL_VM_SIZE)
                .with("system_pool_count", 2i64)
                .with("subnet_id", r(subnet, "id")),
        );
        out.push(
            managed(&addr("azure_kubernetes_node_pool", self.pool))
                .with("cluster_id", r(&cluster, "id"))
                .with("name", "flyte")
                .with("mode", "User")
                .with("vm_size", self.vm_size)
                .with("min_count", i64::from(self.nodes.min))
                .with("max_count", i64::from(self.nodes.max))
                .with("kubernetes_version", version)
                .with("subnet_id", r(subnet, "id")),
        );
        // The cluster's identity joins nodes and load balancers to the subnet.
        out.push(
            managed(&addr("azure_role_assignment", self.network_grant))
                .with("scope", r(subnet, "id"))
                .with("role_definition_id", role(az, NETWORK_CONTRIBUTOR))
                .with("principal_id", r(&cluster, "principal_id"))
                .with("principal_type", "ServicePrincipal"),
        );
        cluster
    }
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

    // The clusters: the control plane (the single cluster of the other styles), then one
    // per data plane, all on the node subnet (their overlay pod and service ranges are
    // cluster-local, so every cluster reuses the deployment's).
    let aks = |out: &mut Vec<ResourceSpec>, cluster: Aks| {
        cluster.push(out, config, az, &managed, &in_group, &nodes)
    };
    let cluster = aks(
        &mut out,
        Aks {
            cluster: "main",
            pool: "flyte",
            network_grant: "cluster_network",
            name: format!("{name}-aks"),
            dns_prefix: name.to_string(),
            nodes: config.cluster.nodes,
            vm_size: &az.vm_size,
            existing: az.existing.cluster_id.as_deref(),
        },
    );
    let multi = config.style == Style::MultiCluster;
    let planes: Vec<(&DataPlaneConfig, Address)> = config
        .data_planes
        .iter()
        .filter(|_| multi)
        .map(|p| {
            let a = p.address_name();
            let cloud_name = p.cluster_name(name);
            let vm_size = p
                .azure
                .as_ref()
                .and_then(|o| o.vm_size.as_deref())
                .unwrap_or(&az.vm_size);
            let plane = aks(
                &mut out,
                Aks {
                    cluster: &a,
                    pool: &a,
                    network_grant: &a,
                    dns_prefix: cloud_name.clone(),
                    name: cloud_name,
                    nodes: p.nodes(&config.cluster),
                    vm_size,
                    existing: p.existing.as_deref(),
                },
            );
            (p, plane)
        })
        .collect();

    // Identities: the backend's, the task pods' (one per domain past 20 credentials:
    // Azure allows 20 federated credentials per identity) and, with data planes,
    // flytepropeller's, each trusted by exactly the Kubernetes service accounts that run
    // as it in the clusters they run in, written one at a time per identity (Azure refuses
    // concurrent writes to one identity's credentials).
    let fl = &config.flyte;
    let issuer = r(&cluster, "oidc_issuer_url");
    let identity = |purpose: &str| {
        let a = addr("azure_user_assigned_identity", purpose);
        let spec = in_group(&a).with("name", format!("{name}-{}", purpose.replace('_', "-")));
        (a, spec)
    };
    let federate = |out: &mut Vec<ResourceSpec>, id: &Address, creds: Vec<Federated>| {
        let mut previous: Option<Address> = None;
        for Federated {
            name: cred,
            issuer,
            subject,
        } in creds
        {
            let a = addr(
                "azure_federated_identity_credential",
                &format!("{}_{}", id.name(), cred.replace('-', "_")),
            );
            let mut spec = managed(&a)
                .with("identity_id", r(id, "id"))
                .with("name", cred.as_str())
                .with("issuer", issuer)
                .with("subject", subject.as_str())
                .with("audiences", strings(&["api://AzureADTokenExchange"]));
            if let Some(p) = &previous {
                spec = spec.after(p);
            }
            out.push(spec);
            previous = Some(a);
        }
    };
    let sa_subject = |sa: &str| format!("system:serviceaccount:{}:{sa}", fl.namespace);
    let (backend, spec) = identity("backend");
    out.push(spec);
    // One credential per backend service account (one for flyte-binary, three for
    // flyte-core), all on the one backend identity and the control plane's issuer. With
    // data planes, flytepropeller runs there, as an identity of its own.
    let backend_creds = fl
        .backend_service_accounts()
        .into_iter()
        .filter(|sa| !multi || sa != PROPELLER)
        .map(|sa| Federated {
            name: format!("{}-{sa}", fl.namespace),
            issuer: issuer.clone(),
            subject: sa_subject(&sa),
        })
        .collect();
    federate(&mut out, &backend, backend_creds);
    let propeller = if multi {
        let (propeller, spec) = identity("propeller");
        out.push(spec);
        let creds = planes
            .iter()
            .map(|(p, c)| Federated {
                name: format!("{}-{}-{PROPELLER}", plane_prefix(p), fl.namespace),
                issuer: r(c, "oidc_issuer_url"),
                subject: sa_subject(PROPELLER),
            })
            .collect();
        federate(&mut out, &propeller, creds);
        Some(propeller)
    } else {
        None
    };
    // Tasks run where propeller runs: the single cluster, or every data plane (never the
    // control plane). A credential is named by its namespace, and by its plane too when
    // there are planes (names are unique per identity).
    let task_issuers: Vec<(Option<String>, Expr)> = if multi {
        planes
            .iter()
            .map(|(p, c)| (Some(plane_prefix(p)), r(c, "oidc_issuer_url")))
            .collect()
    } else {
        vec![(None, issuer.clone())]
    };
    let task_creds = |namespaces: &[String]| -> Vec<Federated> {
        task_issuers
            .iter()
            .flat_map(|(prefix, issuer)| {
                namespaces.iter().map(move |ns| Federated {
                    name: match prefix {
                        Some(p) => format!("{p}-{ns}"),
                        None => ns.clone(),
                    },
                    issuer: issuer.clone(),
                    subject: format!("system:serviceaccount:{ns}:default"),
                })
            })
            .collect()
    };
    let mut task_identities = Vec::new();
    // Validation refuses configs where even one domain's credentials pass the cap.
    if task_issuers.len() * fl.projects.len() * fl.domains.len() <= MAX_FEDERATED {
        let (tasks, spec) = identity("tasks");
        out.push(spec);
        federate(&mut out, &tasks, task_creds(&fl.task_namespaces()));
        task_identities.push((None, tasks));
    } else {
        for domain in &fl.domains {
            let (tasks, spec) = identity(&format!("tasks_{domain}"));
            out.push(spec);
            let namespaces: Vec<String> = fl
                .projects
                .iter()
                .map(|p| format!("{p}-{domain}"))
                .collect();
            federate(&mut out, &tasks, task_creds(&namespaces));
            task_identities.push((Some(domain.clone()), tasks));
        }
    }
    // Each identity reads and writes blobs in the account, and nothing more.
    let all: Vec<&Address> = std::iter::once(&backend)
        .chain(propeller.as_ref())
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
    // Multi-cluster: each plane's cluster as the control plane's is described above, and
    // the identity each component's service account is annotated with.
    if let Some(propeller) = &propeller {
        outputs.push(output(
            "identity_flyteadmin",
            r(&backend, "client_id"),
            false,
        ));
        outputs.push(output(
            "identity_datacatalog",
            r(&backend, "client_id"),
            false,
        ));
        for (p, c) in &planes {
            let pre = p.output_prefix();
            outputs.extend([
                output(&format!("{pre}cluster_name"), r(c, "name"), false),
                output(&format!("{pre}cluster_id"), r(c, "id"), false),
                output(&format!("{pre}cluster_endpoint"), r(c, "endpoint"), false),
                output(
                    &format!("{pre}oidc_issuer_url"),
                    r(c, "oidc_issuer_url"),
                    false,
                ),
                output(
                    &format!("{pre}identity_flytepropeller"),
                    r(propeller, "client_id"),
                    false,
                ),
            ]);
        }
    }
    Ok(Blueprint {
        resources: out,
        outputs,
        notes: Vec::new(),
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

    /// A multi-cluster config with `planes` (YAML list items), after `extra` as in [`config`].
    fn multi(planes: &str, extra: &str) -> Config {
        config(&format!(
            "{extra}style: multi-cluster\ncontrol_plane: {{admin_endpoint: a.b:81, catalog_endpoint: c.d:89}}\ndata_planes:\n{planes}"
        ))
    }

    /// The federated credentials of identity `id`, walked along their chain: each waits for
    /// exactly the one before (Azure refuses concurrent writes to one identity), as (the
    /// address name of the cluster whose issuer it trusts, subject).
    fn chain(bp: &Blueprint, id: &str) -> Vec<(String, String)> {
        let id = addr("azure_user_assigned_identity", id);
        let creds: Vec<&ResourceSpec> = of_type(bp, "azure_federated_identity_credential")
            .into_iter()
            .filter(|c| c.attributes["identity_id"] == r(&id, "id"))
            .collect();
        let waits_for = |c: &ResourceSpec| -> Vec<Address> {
            c.dependencies()
                .into_iter()
                .filter(|d| d.type_name() == "azure_federated_identity_credential")
                .collect()
        };
        let mut walked = Vec::new();
        let mut previous: Vec<Address> = Vec::new();
        while walked.len() < creds.len() {
            let next: Vec<&&ResourceSpec> =
                creds.iter().filter(|c| waits_for(c) == previous).collect();
            assert_eq!(next.len(), 1, "{id}: not one chain after {previous:?}");
            let c = next[0];
            let issuer = of_type(bp, "azure_kubernetes_cluster")
                .into_iter()
                .find(|k| c.attributes["issuer"] == r(&k.address, "oidc_issuer_url"))
                .unwrap_or_else(|| panic!("{}: issuer of no cluster", c.address));
            let subject = match &c.attributes["subject"] {
                Expr::Value(v) => v.as_str().unwrap().to_string(),
                other => panic!("{other:?}"),
            };
            walked.push((issuer.address.name().to_string(), subject));
            previous = vec![c.address.clone()];
        }
        walked
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn multi_cluster_makes_a_cluster_per_plane_on_the_shared_subnet_and_one_server() {
        let bp = expand_offline(&multi(
            "  - name: gpu\n    nodes: {min: 0, max: 8}\n    azure: {vm_size: Standard_NC6s_v3}\n  - name: cpu\n",
            "  vm_size: Standard_D8s_v5\ncluster:\n  nodes: {min: 2, max: 5}\n",
        ));
        let names = |t: &str| -> Vec<String> {
            of_type(&bp, t)
                .iter()
                .map(|r| r.address.name().to_string())
                .collect()
        };
        assert_eq!(
            names("azure_kubernetes_cluster"),
            ["main", "dp_gpu", "dp_cpu"]
        );
        assert_eq!(
            names("azure_kubernetes_node_pool"),
            ["flyte", "dp_gpu", "dp_cpu"]
        );
        assert_eq!(names("azure_postgresql_flexible_server"), ["main"]);
        assert_eq!(names("azure_storage_account"), ["main"]);
        assert_eq!(names("azure_virtual_network"), ["main"]);
        // The control plane is the single-cluster one, untouched.
        let main = find(&bp, "azure_kubernetes_cluster.main");
        assert_eq!(main.attributes["name"], Expr::from("demo-aks"));
        let pool = find(&bp, "azure_kubernetes_node_pool.flyte");
        assert_eq!(pool.attributes["vm_size"], Expr::from("Standard_D8s_v5"));
        assert_eq!(pool.attributes["max_count"], Expr::from(5i64));
        // A plane: its own name, the shared subnet, the same network settings.
        let gpu = find(&bp, "azure_kubernetes_cluster.dp_gpu");
        assert_eq!(gpu.attributes["name"], Expr::from("demo-gpu"));
        assert_eq!(gpu.attributes["dns_prefix"], Expr::from("demo-gpu"));
        for k in [
            "subnet_id",
            "pod_cidr",
            "service_cidr",
            "kubernetes_version",
        ] {
            assert_eq!(gpu.attributes[k], main.attributes[k], "{k}");
        }
        // Node overrides, and the deployment's settings where a plane has none.
        let gpu_pool = find(&bp, "azure_kubernetes_node_pool.dp_gpu");
        assert_eq!(gpu_pool.attributes["cluster_id"], r(&gpu.address, "id"));
        assert_eq!(gpu_pool.attributes["name"], Expr::from("flyte"));
        assert_eq!(
            gpu_pool.attributes["vm_size"],
            Expr::from("Standard_NC6s_v3")
        );
        assert_eq!(gpu_pool.attributes["min_count"], Expr::from(0i64));
        assert_eq!(gpu_pool.attributes["max_count"], Expr::from(8i64));
        let cpu_pool = find(&bp, "azure_kubernetes_node_pool.dp_cpu");
        assert_eq!(
            cpu_pool.attributes["vm_size"],
            Expr::from("Standard_D8s_v5")
        );
        assert_eq!(cpu_pool.attributes["min_count"], Expr::from(2i64));
        assert_eq!(cpu_pool.attributes["max_count"], Expr::from(5i64));
        // Each cluster may manage the shared subnet.
        let grant = find(&bp, "azure_role_assignment.dp_cpu");
        assert_eq!(
            grant.attributes["principal_id"],
            r(&addr("azure_kubernetes_cluster", "dp_cpu"), "principal_id")
        );
        assert_eq!(
            grant.attributes["scope"],
            find(&bp, "azure_role_assignment.cluster_network").attributes["scope"]
        );
        assert!(
            format!("{:?}", grant.attributes["role_definition_id"]).contains(NETWORK_CONTRIBUTOR)
        );
    }

    #[test]
    fn multi_cluster_outputs_describe_each_plane_and_each_components_identity() {
        let bp = expand_offline(&multi("  - name: gpu\n  - name: cpu\n", ""));
        let get = |name: &str| -> &Expr {
            &bp.outputs
                .iter()
                .find(|o| o.name == name)
                .unwrap_or_else(|| panic!("no output {name}"))
                .value
        };
        let backend = addr("azure_user_assigned_identity", "backend");
        let propeller = addr("azure_user_assigned_identity", "propeller");
        assert_eq!(get("identity_flyteadmin"), &r(&backend, "client_id"));
        assert_eq!(get("identity_datacatalog"), &r(&backend, "client_id"));
        assert_eq!(get("backend_client_id"), &r(&backend, "client_id"));
        assert_eq!(
            get("task_client_id"),
            &r(&addr("azure_user_assigned_identity", "tasks"), "client_id")
        );
        // The unprefixed cluster outputs still describe the control plane.
        let main = addr("azure_kubernetes_cluster", "main");
        assert_eq!(get("cluster_endpoint"), &r(&main, "endpoint"));
        for p in ["gpu", "cpu"] {
            let c = addr("azure_kubernetes_cluster", &format!("dp_{p}"));
            assert_eq!(get(&format!("dp_{p}_cluster_name")), &r(&c, "name"));
            assert_eq!(get(&format!("dp_{p}_cluster_id")), &r(&c, "id"));
            assert_eq!(get(&format!("dp_{p}_cluster_endpoint")), &r(&c, "endpoint"));
            assert_eq!(
                get(&format!("dp_{p}_oidc_issuer_url")),
                &r(&c, "oidc_issuer_url")
            );
            assert_eq!(
                get(&format!("dp_{p}_identity_flytepropeller")),
                &r(&propeller, "client_id")
            );
        }
        // Single-cluster configs get none of these.
        let single = expand_offline(&config("flyte:\n  chart: flyte-core\n"));
        assert!(
            single
                .outputs
                .iter()
                .all(|o| !o.name.starts_with("dp_") && !o.name.starts_with("identity_"))
        );
    }

    #[test]
    fn multi_cluster_identities_trust_exactly_their_issuer_and_service_account_pairs() {
        let bp = expand_offline(&multi(
            "  - name: gpu\n  - name: cpu\n",
            "flyte:\n  namespace: fl\n  projects: [a, b]\n  domains: [dev, prod]\n",
        ));
        // flyteadmin and datacatalog run in the control plane, flytepropeller does not.
        assert_eq!(
            chain(&bp, "backend"),
            pairs(&[
                ("main", "system:serviceaccount:fl:flyteadmin"),
                ("main", "system:serviceaccount:fl:datacatalog"),
            ])
        );
        // flytepropeller runs once per plane, as an identity of its own.
        assert_eq!(
            chain(&bp, "propeller"),
            pairs(&[
                ("dp_gpu", "system:serviceaccount:fl:flytepropeller"),
                ("dp_cpu", "system:serviceaccount:fl:flytepropeller"),
            ])
        );
        // Tasks run in every plane, never in the control plane.
        let mut expected = Vec::new();
        for plane in ["dp_gpu", "dp_cpu"] {
            for ns in ["a-dev", "a-prod", "b-dev", "b-prod"] {
                expected.push((
                    plane.to_string(),
                    format!("system:serviceaccount:{ns}:default"),
                ));
            }
        }
        assert_eq!(chain(&bp, "tasks"), expected);
        // Credential names are unique per identity; the addresses carry the plane.
        let task_creds: Vec<&str> = of_type(&bp, "azure_federated_identity_credential")
            .iter()
            .map(|c| c.address.name())
            .filter(|n| n.starts_with("tasks_"))
            .collect();
        assert!(task_creds.contains(&"tasks_dp_gpu_a_dev"), "{task_creds:?}");
        let propeller = find(
            &bp,
            "azure_federated_identity_credential.propeller_dp_cpu_fl_flytepropeller",
        );
        assert_eq!(
            propeller.attributes["name"],
            Expr::from("dp-cpu-fl-flytepropeller")
        );
        // Every identity may use the blobs, and nothing more.
        let grants: Vec<String> = of_type(&bp, "azure_role_assignment")
            .iter()
            .filter(|g| {
                format!("{:?}", g.attributes["role_definition_id"])
                    .contains(STORAGE_BLOB_DATA_CONTRIBUTOR)
            })
            .map(|g| g.address.name().to_string())
            .collect();
        assert_eq!(grants, ["backend_blob", "propeller_blob", "tasks_blob"]);
        let grant = find(&bp, "azure_role_assignment.propeller_blob");
        assert_eq!(
            grant.attributes["scope"],
            r(&addr("azure_storage_account", "main"), "id")
        );
    }

    #[test]
    fn planes_count_against_the_twenty_credentials_of_a_task_identity() {
        let identities = |bp: &Blueprint| -> Vec<String> {
            of_type(bp, "azure_user_assigned_identity")
                .iter()
                .map(|i| i.address.name().to_string())
                .collect()
        };
        let flyte = "flyte:\n  projects: [a, b]\n  domains: [dev, stg, prod]\n";
        // 3 planes × 2 projects × 3 domains = 18: one task identity.
        let bp = expand_offline(&multi("  - name: p1\n  - name: p2\n  - name: p3\n", flyte));
        assert_eq!(identities(&bp), ["backend", "propeller", "tasks"]);
        assert_eq!(chain(&bp, "tasks").len(), 18);
        // 4 planes: 24, so one per domain, each with 4 × 2 credentials.
        let bp = expand_offline(&multi(
            "  - name: p1\n  - name: p2\n  - name: p3\n  - name: p4\n",
            flyte,
        ));
        assert_eq!(
            identities(&bp),
            [
                "backend",
                "propeller",
                "tasks_dev",
                "tasks_stg",
                "tasks_prod"
            ]
        );
        let stg = chain(&bp, "tasks_stg");
        assert_eq!(stg.len(), 8);
        assert!(
            stg.iter()
                .all(|(c, s)| c.starts_with("dp_p") && s.contains("-stg:default")),
            "{stg:?}"
        );
        for d in ["dev", "stg", "prod"] {
            assert!(
                bp.outputs
                    .iter()
                    .any(|o| o.name == format!("task_client_id_{d}"))
            );
        }
        // 11 planes × 2 projects = 22 even per domain: a located config error.
        let planes: String = (1..=11).map(|i| format!("  - name: p{i}\n")).collect();
        let text = format!(
            "name: demo\ncloud: azure\nazure:\n  subscription_id: 00000000-0000-0000-0000-000000000001\n  location: eastus\n  resource_group: flyte-demo\nstyle: multi-cluster\ncontrol_plane: {{admin_endpoint: a.b:81, catalog_endpoint: c.d:89}}\ndata_planes:\n{planes}{flyte}"
        );
        let err = Config::parse(&text, Path::new("t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("22 federated credentials"), "{err}");
        assert!(err.contains("expected at most 20"), "{err}");
    }

    #[test]
    fn an_existing_plane_is_read_only_and_still_trusted() {
        let id = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/k/providers/Microsoft.ContainerService/managedClusters/old";
        let bp = expand_offline(&multi(
            &format!("  - name: old\n    existing: {id}\n  - name: new\n"),
            // A cluster that already exists is in a network that already exists.
            "  existing:\n    vnet_id: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/corp\n    subnet_id: /subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/corp/subnets/nodes\n",
        ));
        let old = find(&bp, "azure_kubernetes_cluster.dp_old");
        assert_eq!(old.existing_id.as_deref(), Some(id));
        assert!(old.attributes.is_empty());
        assert!(
            find(&bp, "azure_kubernetes_cluster.dp_new")
                .existing_id
                .is_none()
        );
        // Nothing of its own is made: no pool, no grant on the subnet.
        for t in ["azure_kubernetes_node_pool", "azure_role_assignment"] {
            assert!(
                of_type(&bp, t).iter().all(|x| x.address.name() != "dp_old"),
                "{t}.dp_old"
            );
        }
        assert!(
            of_type(&bp, "azure_kubernetes_node_pool")
                .iter()
                .any(|x| x.address.name() == "dp_new")
        );
        // Its issuer is trusted like a made plane's.
        assert_eq!(
            chain(&bp, "propeller")
                .into_iter()
                .map(|(c, _)| c)
                .collect::<Vec<_>>(),
            ["dp_old", "dp_new"]
        );
        assert!(
            bp.outputs
                .iter()
                .any(|o| o.name == "dp_old_cluster_endpoint")
        );
    }
}

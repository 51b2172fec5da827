//! A Flyte deployment on Google Cloud (reference §3): project APIs, a VPC-native network
//! with Private Service Access, GKE with Workload Identity, Cloud SQL PostgreSQL on a
//! private IP, GCS, and Google service accounts bound to exactly the Kubernetes service
//! accounts Flyte runs as. Multi-cluster adds one GKE cluster per data plane on the same
//! subnetwork (secondary ranges of its own) and splits the backend's account by component.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Expr, ResourceSpec, Value};

use super::{Blueprint, BlueprintError, Facts, addr, hash_suffix, output, r, s};
use crate::config::{
    Config, DataPlaneConfig, FLYTE_CORE_STORAGE_COMPONENTS, GcpConfig, NodeCounts, Style,
};

/// The APIs a deployment calls (reference §3.1 and pitfall 11: fresh projects lack
/// Resource Manager, Cloud SQL Admin and Service Usage; IAM Credentials signs URLs).
pub const REQUIRED_APIS: [&str; 9] = [
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "servicenetworking.googleapis.com",
    "serviceusage.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
];

/// The bucket permissions of the backend (reference §3.2: the union of flyteadmin,
/// flytepropeller and datacatalog; `objects.list` for Flyte ≥ 1.14, `buckets.get` for
/// the storage layer's bucket check).
const BACKEND_PERMISSIONS: [&str; 7] = [
    "storage.buckets.get",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.getIamPolicy",
    "storage.objects.list",
    "storage.objects.update",
];

/// The bucket permissions of task pods (reference §3.2, flyteworkers).
const TASK_PERMISSIONS: [&str; 6] = [
    "storage.buckets.get",
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
    "storage.objects.update",
];

/// Project roles GKE nodes need to write logs and metrics and pull images, and nothing
/// more (Google's least-privilege node service account guidance).
const NODE_ROLES: [&str; 5] = [
    "roles/artifactregistry.reader",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
];

fn strings(items: &[&str]) -> Value {
    Value::from(items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

fn labels(name: &str) -> Expr {
    let mut m: BTreeMap<String, Expr> = BTreeMap::new();
    m.insert("flyteinfra-deployment".into(), s(name));
    Expr::Map(m)
}

/// A service-account id (6–30 characters, `[a-z][a-z0-9-]*[a-z0-9]`) for `purpose`.
fn account_id(name: &str, purpose: &str) -> String {
    let keep = 30 - purpose.len() - 1;
    let base: String = name.chars().take(keep).collect();
    format!("{}-{purpose}", base.trim_end_matches('-'))
}

/// A custom role id (`[a-zA-Z0-9_.]`, 3–64 characters).
fn role_id(name: &str, purpose: &str) -> String {
    format!("flyte_{}_{purpose}", name.replace('-', "_"))
}

/// `<project>-<deployment>-<purpose>`: project ids are globally unique, so is the name.
/// Over GCS's 63 characters the project becomes a hash.
pub(crate) fn bucket_name(project: &str, name: &str, purpose: &str) -> String {
    let full = format!("{project}-{name}-{purpose}");
    if full.len() <= 63 {
        return full;
    }
    format!("{name}-{}-{purpose}", hash_suffix(project))
}

/// The node service account and its project role grants, shared by every cluster's pool.
struct NodeIdentity {
    account: Address,
    roles: Vec<Address>,
}

/// What every cluster of a deployment shares.
struct Shared<'a> {
    /// A managed spec that waits for the APIs.
    managed: &'a dyn Fn(&Address) -> ResourceSpec,
    gcp: &'a GcpConfig,
    /// The deployment's name (the clusters' label).
    deployment: &'a str,
    network: &'a Address,
    subnet: &'a Address,
    /// `None` when every cluster is the user's (no pool is made).
    nodes: Option<&'a NodeIdentity>,
}

/// One cluster: the control plane's or a data plane's.
struct Gke<'a> {
    /// The name of its resources (`main`, `dp_<plane>`).
    address: &'a str,
    /// Its cloud name.
    name: String,
    /// Its node pool's name.
    pool: String,
    /// The subnetwork's secondary ranges it uses.
    pods_range: String,
    services_range: String,
    nodes: NodeCounts,
    machine_type: &'a str,
    /// The name of the user's cluster to read instead.
    existing: Option<&'a str>,
}

/// A GKE cluster with Workload Identity and its autoscaled node pool, both at
/// `<type>.<address>`; or the user's cluster, read only (no pool). Returns the cluster.
fn gke(out: &mut Vec<ResourceSpec>, sh: &Shared<'_>, c: Gke<'_>) -> Address {
    let gcp = sh.gcp;
    let project = gcp.project.as_str();
    let cluster = addr("gcp_container_cluster", c.address);
    if let Some(existing) = c.existing {
        out.push(ResourceSpec::existing(
            cluster.clone(),
            format!(
                "projects/{project}/locations/{}/clusters/{existing}",
                gcp.region
            ),
        ));
        return cluster;
    }
    let node = sh
        .nodes
        .expect("the node identity is made whenever a cluster is");
    out.push(
        (sh.managed)(&cluster)
            .with("name", c.name.as_str())
            .with("location", gcp.region.as_str())
            .with("network", r(sh.network, "self_link"))
            .with("subnetwork", r(sh.subnet, "self_link"))
            .with("pods_range_name", c.pods_range.as_str())
            .with("services_range_name", c.services_range.as_str())
            .with("release_channel", gcp.release_channel.as_str())
            .with("workload_pool", format!("{project}.svc.id.goog"))
            .with("labels", labels(sh.deployment)),
    );
    let pool = node.roles.iter().fold(
        (sh.managed)(&addr("gcp_container_node_pool", c.address)),
        |spec, d| spec.after(d),
    );
    out.push(
        pool.with("cluster", r(&cluster, "id"))
            .with("name", c.pool)
            .with("machine_type", c.machine_type)
            .with("service_account", r(&node.account, "email"))
            .with("min_nodes", i64::from(c.nodes.min))
            .with("max_nodes", i64::from(c.nodes.max)),
    );
    cluster
}

/// A data plane's node pool name: `<cluster>-nodes`, the cluster's name shortened to fit
/// GKE's 40 characters (pool names are per cluster, so a shortened one stays unique).
fn pool_name(cluster: &str) -> String {
    let base: String = cluster.chars().take(40 - "-nodes".len()).collect();
    format!("{}-nodes", base.trim_end_matches('-'))
}

/// The secondary range names a data plane's cluster uses: `pods-<plane>`, `services-<plane>`.
///
/// On the subnetwork flyteinfra makes they are added with the plane's
/// `gcp.pods_cidr` / `gcp.services_cidr` (adding or removing a plane patches the
/// subnetwork in place). With `gcp.existing.subnetwork` flyteinfra never changes the
/// subnetwork: the user must have added both ranges, under exactly these names, for every
/// data plane that is not `existing` (GKE refuses a cluster whose range is missing).
fn plane_ranges(p: &DataPlaneConfig) -> (String, String) {
    (format!("pods-{}", p.name), format!("services-{}", p.name))
}

pub(super) fn expand(
    config: &Config,
    gcp: &GcpConfig,
    facts: &Facts,
) -> Result<Blueprint, BlueprintError> {
    let name = config.name.as_str();
    let project = gcp.project.as_str();
    let mut out = Vec::new();

    // Every resource comes after the APIs it calls are on.
    let services = addr("gcp_project_services", "main");
    let after: Vec<Address> = if gcp.enable_apis {
        out.push(ResourceSpec::managed(services.clone()).with("services", strings(&REQUIRED_APIS)));
        vec![services.clone()]
    } else {
        Vec::new()
    };
    let managed = |a: &Address| {
        after
            .iter()
            .fold(ResourceSpec::managed(a.clone()), |spec, d| spec.after(d))
    };

    // Network: a VPC-native subnetwork and the Private Service Access range Cloud SQL's
    // private IP comes from; or the user's network.
    let network = addr("gcp_compute_network", "main");
    let network_name = match &gcp.existing.network {
        Some(existing) => {
            out.push(ResourceSpec::existing(network.clone(), existing));
            existing.clone()
        }
        None => {
            let n = format!("{name}-vpc");
            out.push(
                managed(&network)
                    .with("name", n.as_str())
                    .with("auto_create_subnetworks", false)
                    .with("routing_mode", "GLOBAL"),
            );
            n
        }
    };
    // Data planes (multi-cluster only): each made cluster has secondary ranges of its own
    // on the shared subnetwork.
    let planes: Vec<&DataPlaneConfig> = config
        .data_planes
        .iter()
        .filter(|_| config.style == Style::MultiCluster)
        .collect();
    let subnet = addr("gcp_compute_subnetwork", "main");
    // Data planes' ranges: see `plane_ranges` (on `gcp.existing.subnetwork` the user
    // makes them).
    let (pods_range, services_range) = match &gcp.existing.subnetwork {
        Some(existing) => {
            out.push(ResourceSpec::existing(
                subnet.clone(),
                format!("{}/{existing}", gcp.region),
            ));
            (
                gcp.existing.pods_range.clone().unwrap_or("pods".into()),
                gcp.existing
                    .services_range
                    .clone()
                    .unwrap_or("services".into()),
            )
        }
        None => {
            let (pods, svcs) = (format!("{name}-pods"), format!("{name}-services"));
            let mut ranges: BTreeMap<String, Expr> = BTreeMap::new();
            ranges.insert(pods.clone(), s(&gcp.pods_cidr.to_string()));
            ranges.insert(svcs.clone(), s(&gcp.services_cidr.to_string()));
            for p in planes.iter().filter(|p| p.existing.is_none()) {
                let (pods, svcs) = plane_ranges(p);
                ranges.insert(pods, s(&p.gcp_pods_cidr().to_string()));
                ranges.insert(svcs, s(&p.gcp_services_cidr().to_string()));
            }
            out.push(
                managed(&subnet)
                    .with("name", format!("{name}-gke"))
                    .with("region", gcp.region.as_str())
                    .with("network", r(&network, "self_link"))
                    .with("ip_cidr_range", gcp.subnet_cidr.to_string())
                    .with("secondary_ranges", Expr::Map(ranges))
                    .with("private_ip_google_access", true),
            );
            (pods, svcs)
        }
    };
    let psa = addr("gcp_compute_global_address", "psa");
    out.push(
        managed(&psa)
            .with("name", format!("{name}-psa"))
            .with("network", r(&network, "self_link"))
            .with("purpose", "VPC_PEERING")
            .with("address_type", "INTERNAL")
            .with("prefix_length", 16i64),
    );
    let psc = addr("gcp_service_networking_connection", "main");
    out.push(
        managed(&psc)
            .with(
                "network",
                Expr::Concat(vec![
                    s(&format!(
                        "projects/{}/global/networks/",
                        facts.project_number
                    )),
                    r(&network, "id"),
                ]),
            )
            .with("reserved_peering_ranges", Expr::List(vec![r(&psa, "id")])),
    );
    debug_assert!(!network_name.is_empty());

    // Clusters: GKE with Workload Identity, each with a node pool running as one shared
    // least-privilege service account; or the user's clusters, read only. The control
    // plane's is the single cluster of the other styles; then one per data plane.
    let any_made = gcp.existing.cluster.is_none() || planes.iter().any(|p| p.existing.is_none());
    let nodes = any_made.then(|| {
        let node_sa = addr("gcp_service_account", "nodes");
        out.push(
            managed(&node_sa)
                .with("account_id", account_id(name, "nodes"))
                .with(
                    "display_name",
                    format!("GKE nodes of Flyte deployment {name}"),
                ),
        );
        let mut node_role_members = Vec::new();
        for role in NODE_ROLES {
            let short = role.trim_start_matches("roles/").replace('.', "_");
            let a = addr("gcp_project_iam_member", &format!("nodes_{short}"));
            out.push(
                managed(&a)
                    .with("role", role)
                    .with("members", Expr::List(vec![r(&node_sa, "member")])),
            );
            node_role_members.push(a);
        }
        NodeIdentity {
            account: node_sa,
            roles: node_role_members,
        }
    });
    let shared = Shared {
        managed: &managed,
        gcp,
        deployment: name,
        network: &network,
        subnet: &subnet,
        nodes: nodes.as_ref(),
    };
    let cluster = gke(
        &mut out,
        &shared,
        Gke {
            address: "main",
            name: name.to_string(),
            pool: format!("{name}-nodes"),
            pods_range: pods_range.clone(),
            services_range: services_range.clone(),
            nodes: config.cluster.nodes,
            machine_type: &gcp.machine_type,
            existing: gcp.existing.cluster.as_deref(),
        },
    );
    let plane_clusters: Vec<(&DataPlaneConfig, Address)> = planes
        .iter()
        .map(|p| {
            let cloud = p.cluster_name(name);
            let (pods, svcs) = plane_ranges(p);
            let a = gke(
                &mut out,
                &shared,
                Gke {
                    address: &p.address_name(),
                    pool: pool_name(&cloud),
                    name: cloud,
                    pods_range: pods,
                    services_range: svcs,
                    nodes: p.nodes(&config.cluster),
                    machine_type: p
                        .gcp
                        .as_ref()
                        .and_then(|g| g.machine_type.as_deref())
                        .unwrap_or(&gcp.machine_type),
                    existing: p.existing.as_deref(),
                },
            );
            (*p, a)
        })
        .collect();

    // Database: private IP only, on the network peered above.
    let dbc = &config.database;
    let password = addr("random_password", "db");
    out.push(ResourceSpec::managed(password.clone()).with("length", 32i64));
    let sql = addr("gcp_sql_database_instance", "main");
    out.push(
        managed(&sql)
            .after(&psc)
            .with("name_prefix", format!("{name}-db"))
            .with("region", gcp.region.as_str())
            .with(
                "database_version",
                format!("POSTGRES_{}", dbc.engine_version),
            )
            .with("tier", gcp.db_tier.as_str())
            .with("availability_type", "ZONAL")
            .with("private_network", r(&network, "self_link"))
            .with("ipv4_enabled", false)
            .with(
                "ssl_mode",
                if dbc.require_ssl {
                    "ENCRYPTED_ONLY"
                } else {
                    "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
                },
            )
            .with("backups_enabled", true)
            .with("point_in_time_recovery", true)
            .with("deletion_protection", dbc.deletion_protection)
            .with("labels", labels(name)),
    );
    let database = addr("gcp_sql_database", "flyte");
    out.push(
        managed(&database)
            .with("instance", r(&sql, "name"))
            .with("name", dbc.name.as_str()),
    );
    // Cloud SQL runs one operation per instance at a time: the user waits for the
    // database rather than meeting "operation in progress" and retrying.
    out.push(
        managed(&addr("gcp_sql_user", "flyte"))
            .after(&database)
            .with("instance", r(&sql, "name"))
            .with("name", dbc.username.as_str())
            .with("password", r(&password, "result")),
    );

    // Buckets.
    let st = &config.storage;
    let metadata = addr("gcp_storage_bucket", "metadata");
    let meta_name = st
        .metadata_bucket
        .clone()
        .unwrap_or_else(|| bucket_name(project, name, "metadata"));
    out.push(
        bucket(managed(&metadata), &meta_name, gcp, name, None).force_destroy(st.force_destroy),
    );
    let mut buckets = vec![metadata.clone()];
    let data = if st.separate_data_bucket {
        let data = addr("gcp_storage_bucket", "data");
        let data_name = st
            .data_bucket
            .clone()
            .unwrap_or_else(|| bucket_name(project, name, "data"));
        out.push(
            bucket(
                managed(&data),
                &data_name,
                gcp,
                name,
                st.raw_data_expiry_days,
            )
            .force_destroy(st.force_destroy),
        );
        buckets.push(data.clone());
        data
    } else {
        metadata.clone()
    };

    // Identities: Google service accounts for the backend and for task pods, each with a
    // custom role on exactly the buckets. Multi-cluster splits the backend's by component
    // (flyteadmin, datacatalog, flytepropeller), since they run in different clusters: a
    // cluster's pods then hold only the access of the components running there.
    let fl = &config.flyte;
    let multi = config.style == Style::MultiCluster;
    // Each backend account with the Kubernetes service accounts (in the Flyte namespace)
    // that act as it.
    let backends: Vec<(Address, Vec<String>)> = if multi {
        FLYTE_CORE_STORAGE_COMPONENTS
            .iter()
            .map(|c| (addr("gcp_service_account", c), vec![(*c).to_string()]))
            .collect()
    } else {
        vec![(
            addr("gcp_service_account", "backend"),
            fl.backend_service_accounts(),
        )]
    };
    for (a, _) in &backends {
        let purpose = a.name();
        out.push(
            managed(a)
                .with("account_id", account_id(name, purpose))
                .with(
                    "display_name",
                    format!("Flyte {purpose} of deployment {name}"),
                ),
        );
    }
    let tasks = addr("gcp_service_account", "tasks");
    out.push(
        managed(&tasks)
            .with("account_id", account_id(name, "tasks"))
            .with(
                "display_name",
                format!("Flyte task pods of deployment {name}"),
            ),
    );
    let backend_role = addr("gcp_project_iam_custom_role", "backend");
    out.push(
        managed(&backend_role)
            .with("role_id", role_id(name, "backend"))
            .with("title", format!("Flyte backend storage ({name})"))
            .with("permissions", strings(&BACKEND_PERMISSIONS))
            .with("stage", "GA"),
    );
    let task_role = addr("gcp_project_iam_custom_role", "tasks");
    out.push(
        managed(&task_role)
            .with("role_id", role_id(name, "tasks"))
            .with("title", format!("Flyte task storage ({name})"))
            .with("permissions", strings(&TASK_PERMISSIONS))
            .with("stage", "GA"),
    );
    let grants: Vec<(&Address, &Address)> = backends
        .iter()
        .map(|(a, _)| (a, &backend_role))
        .chain([(&tasks, &task_role)])
        .collect();
    for b in &buckets {
        for (sa, role) in &grants {
            out.push(
                managed(&addr(
                    "gcp_storage_bucket_iam_member",
                    &format!("{}_{}", b.name(), sa.name()),
                ))
                .with("bucket", r(b, "id"))
                .with("role", r(role, "name"))
                .with("members", Expr::List(vec![r(sa, "member")])),
            );
        }
    }
    // Signed URLs (fast registration, console downloads) are signed by flyteadmin's
    // account itself: it needs signBlob on itself (reference pitfall 9). Datacatalog and
    // flytepropeller sign nothing.
    let signer = &if multi {
        addr("gcp_service_account", "flyteadmin")
    } else {
        backends[0].0.clone()
    };
    out.push(
        managed(&addr(
            "gcp_service_account_iam_member",
            &format!("{}_token_creator", signer.name()),
        ))
        .with("service_account", r(signer, "email"))
        .with("role", "roles/iam.serviceAccountTokenCreator")
        .with("members", Expr::List(vec![r(signer, "member")])),
    );
    // Workload Identity members name the control plane cluster's pool, which exists once
    // the cluster does: the reference makes the binding wait for it (pitfall 7). The pool
    // is the project's, so one member covers its service account in every cluster.
    let wi_member = |ns: &str, ksa: &str| {
        Expr::Concat(vec![
            s("serviceAccount:"),
            r(&cluster, "workload_pool"),
            s(&format!("[{ns}/{ksa}]")),
        ])
    };
    for (a, ksas) in &backends {
        out.push(
            managed(&addr(
                "gcp_service_account_iam_member",
                &format!("{}_workload_identity", a.name()),
            ))
            .with("service_account", r(a, "email"))
            .with("role", "roles/iam.workloadIdentityUser")
            .with(
                "members",
                Expr::List(ksas.iter().map(|sa| wi_member(&fl.namespace, sa)).collect()),
            ),
        );
    }
    out.push(
        managed(&addr(
            "gcp_service_account_iam_member",
            "tasks_workload_identity",
        ))
        .with("service_account", r(&tasks, "email"))
        .with("role", "roles/iam.workloadIdentityUser")
        .with(
            "members",
            Expr::List(
                fl.task_namespaces()
                    .iter()
                    .map(|ns| wi_member(ns, "default"))
                    .collect(),
            ),
        ),
    );

    let mut outputs = vec![
        output("project", s(project), false),
        output("region", s(&gcp.region), false),
        output("cluster_name", r(&cluster, "name"), false),
        output("cluster_endpoint", r(&cluster, "endpoint"), false),
        output("cluster_ca", r(&cluster, "ca_certificate"), false),
        output("db_host", r(&sql, "private_ip"), false),
        output("db_port", Expr::from(5432i64), false),
        output("db_name", s(&dbc.name), false),
        output("db_username", s(&dbc.username), false),
        output("db_password", r(&password, "result"), true),
        output("metadata_bucket", r(&metadata, "id"), false),
        output("data_bucket", r(&data, "id"), false),
    ];
    if !multi {
        outputs.push(output(
            "backend_service_account",
            r(&backends[0].0, "email"),
            false,
        ));
    }
    outputs.push(output("task_service_account", r(&tasks, "email"), false));
    if multi {
        let email = |c: &str| r(&addr("gcp_service_account", c), "email");
        outputs.push(output("identity_flyteadmin", email("flyteadmin"), false));
        outputs.push(output("identity_datacatalog", email("datacatalog"), false));
        for (p, c) in &plane_clusters {
            let o = |what: &str| format!("{}{what}", p.output_prefix());
            outputs.extend([
                output(&o("cluster_name"), r(c, "name"), false),
                output(&o("cluster_endpoint"), r(c, "endpoint"), false),
                output(&o("cluster_ca"), r(c, "ca_certificate"), false),
                output(
                    &o("identity_flytepropeller"),
                    email("flytepropeller"),
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

fn bucket(
    spec: ResourceSpec,
    bucket: &str,
    gcp: &GcpConfig,
    name: &str,
    expiry: Option<u32>,
) -> ResourceSpec {
    let mut spec = spec
        .with("name", bucket)
        .with("location", gcp.region.to_uppercase())
        .with("uniform_bucket_level_access", true)
        .with("public_access_prevention", "enforced")
        .with("versioning", true)
        .with("labels", labels(name));
    if let Some(days) = expiry {
        spec = spec.with("lifecycle_delete_age_days", i64::from(days));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!(
                "name: demo\ncloud: gcp\ngcp:\n  project: my-proj-1\n  region: us-central1\n{extra}flyte:\n  projects: [p1, p2]\n  domains: [development, production]\n"
            ),
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    fn facts() -> Facts {
        Facts {
            account_id: String::new(),
            project_number: "123456789012".into(),
            azure_existing_group: None,
        }
    }

    fn find<'a>(bp: &'a Blueprint, a: &str) -> &'a ResourceSpec {
        bp.resources
            .iter()
            .find(|r| r.address.to_string() == a)
            .unwrap_or_else(|| panic!("{a} missing"))
    }

    #[test]
    fn everything_waits_for_the_apis() {
        let bp = expand(&config(""), config("").gcp.as_ref().unwrap(), &facts()).unwrap();
        let services = find(&bp, "gcp_project_services.main");
        let apis = format!("{:?}", services.attributes["services"]);
        for api in REQUIRED_APIS {
            assert!(apis.contains(api), "{api}");
        }
        for r in &bp.resources {
            if r.address.type_name() == "gcp_project_services"
                || r.address.type_name() == "random_password"
            {
                continue;
            }
            assert!(
                r.dependencies().contains(&services.address),
                "{} does not wait for the APIs",
                r.address
            );
        }
    }

    #[test]
    fn without_enable_apis_nothing_enables_them() {
        let c = config("  enable_apis: false\n");
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        assert!(
            bp.resources
                .iter()
                .all(|r| r.address.type_name() != "gcp_project_services")
        );
    }

    #[test]
    fn workload_identity_names_exactly_the_service_accounts() {
        let c = config("");
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let tasks = format!(
            "{:?}",
            find(
                &bp,
                "gcp_service_account_iam_member.tasks_workload_identity"
            )
            .attributes["members"]
        );
        for ns in [
            "p1-development",
            "p1-production",
            "p2-development",
            "p2-production",
        ] {
            assert!(tasks.contains(&format!("[{ns}/default]")), "{ns}: {tasks}");
        }
        let backend = format!(
            "{:?}",
            find(
                &bp,
                "gcp_service_account_iam_member.backend_workload_identity"
            )
            .attributes["members"]
        );
        assert!(backend.contains("[flyte/flyte-backend]"), "{backend}");
        // The pool is the cluster's, so the binding comes after the cluster.
        assert!(
            find(
                &bp,
                "gcp_service_account_iam_member.tasks_workload_identity"
            )
            .dependencies()
            .contains(&Address::new("gcp_container_cluster", "main"))
        );
    }

    /// The `[<ns>/<ksa>]` of each Workload Identity member of `a`, after checking that it
    /// names the cluster's pool.
    fn wi_subjects(bp: &Blueprint, a: &str) -> std::collections::BTreeSet<String> {
        let spec = find(bp, a);
        assert_eq!(
            spec.attributes["role"],
            Expr::from("roles/iam.workloadIdentityUser")
        );
        let Expr::List(members) = &spec.attributes["members"] else {
            panic!("{a}: members is not a list");
        };
        let subjects: Vec<String> = members
            .iter()
            .map(|m| match m {
                Expr::Concat(parts) => {
                    assert_eq!(parts[0], s("serviceAccount:"), "{m:?}");
                    assert_eq!(
                        parts[1],
                        r(
                            &Address::new("gcp_container_cluster", "main"),
                            "workload_pool"
                        )
                    );
                    let Expr::Value(v) = &parts[2] else {
                        panic!("{m:?}")
                    };
                    assert_eq!(parts.len(), 3, "{m:?}");
                    v.as_str().unwrap().to_string()
                }
                other => panic!("{a}: unexpected member {other:?}"),
            })
            .collect();
        let set: std::collections::BTreeSet<String> = subjects.iter().cloned().collect();
        assert_eq!(set.len(), subjects.len(), "duplicate members: {subjects:?}");
        set
    }

    #[test]
    fn the_backend_account_trusts_exactly_the_charts_backend_service_accounts() {
        let parse = |flyte: &str| {
            Config::parse(
                &format!(
                    "name: demo\ncloud: gcp\ngcp:\n  project: my-proj-1\n  region: us-central1\nflyte:\n{flyte}"
                ),
                Path::new("t.yaml"),
            )
            .unwrap()
        };
        let backend = "gcp_service_account_iam_member.backend_workload_identity";
        let set = |items: &[&str]| -> std::collections::BTreeSet<String> {
            items.iter().map(|s| (*s).to_string()).collect()
        };
        // flyte-binary: the one pinned service account (same address as ever).
        let c = parse("  service_account: my-backend\n");
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        assert_eq!(wi_subjects(&bp, backend), set(&["[flyte/my-backend]"]));
        // flyte-core: one binding naming the three components that touch storage; not
        // flytescheduler, not the flyte-binary service account.
        let c = parse("  chart: flyte-core\n  namespace: flyte-prod\n");
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        assert_eq!(
            wi_subjects(&bp, backend),
            set(&[
                "[flyte-prod/datacatalog]",
                "[flyte-prod/flyteadmin]",
                "[flyte-prod/flytepropeller]",
            ])
        );
        let bindings = bp
            .resources
            .iter()
            .filter(|r| {
                r.address.type_name() == "gcp_service_account_iam_member"
                    && r.attributes.get("role")
                        == Some(&Expr::from("roles/iam.workloadIdentityUser"))
            })
            .count();
        assert_eq!(bindings, 2, "one binding per Google service account");
    }

    #[test]
    fn the_psa_connection_uses_the_project_number() {
        let c = config("");
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let conn = format!(
            "{:?}",
            find(&bp, "gcp_service_networking_connection.main").attributes["network"]
        );
        assert!(
            conn.contains("projects/123456789012/global/networks/"),
            "{conn}"
        );
        assert!(
            find(&bp, "gcp_sql_database_instance.main")
                .dependencies()
                .contains(&Address::new("gcp_service_networking_connection", "main"))
        );
    }

    #[test]
    fn existing_network_and_cluster_are_read_not_made() {
        let c = config(
            "  existing:\n    network: corp\n    subnetwork: corp-sub\n    cluster: corp-gke\n",
        );
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        for a in [
            "gcp_compute_network.main",
            "gcp_compute_subnetwork.main",
            "gcp_container_cluster.main",
        ] {
            assert_eq!(find(&bp, a).mode, flyteinfra_core::Mode::Existing, "{a}");
        }
        assert_eq!(
            find(&bp, "gcp_container_cluster.main")
                .existing_id
                .as_deref(),
            Some("projects/my-proj-1/locations/us-central1/clusters/corp-gke")
        );
        assert!(
            bp.resources
                .iter()
                .all(|r| r.address.type_name() != "gcp_container_node_pool")
        );
    }

    #[test]
    fn names_fit_google_limits() {
        assert_eq!(account_id("demo", "backend"), "demo-backend");
        let long = "a-very-long-deployment-name-x";
        let id = account_id(long, "backend");
        assert!(id.len() <= 30 && !id.contains("--"), "{id}");
        assert_eq!(role_id("my-demo", "tasks"), "flyte_my_demo_tasks");
        assert!(bucket_name(&"p".repeat(30), &"n".repeat(30), "metadata").len() <= 63);
    }

    /// A multi-cluster config with `planes` (YAML list items, indented by four) and the
    /// `gcp:` section's `extra` lines.
    fn multi(extra: &str, planes: &str) -> Config {
        Config::parse(
            &format!(
                "name: demo\ncloud: gcp\nstyle: multi-cluster\ngcp:\n  project: my-proj-1\n  region: us-central1\n{extra}control_plane: {{admin_endpoint: a.b:81, catalog_endpoint: c.d:89}}\ndata_planes:\n{planes}flyte:\n  projects: [p1, p2]\n  domains: [development, production]\n"
            ),
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    const TWO_PLANES: &str = "  - name: gpu\n    nodes: {min: 0, max: 8}\n    gcp: {machine_type: g2-standard-8}\n  - name: cpu\n";

    fn of_type<'a>(bp: &'a Blueprint, t: &str) -> Vec<&'a ResourceSpec> {
        bp.resources
            .iter()
            .filter(|r| r.address.type_name() == t)
            .collect()
    }

    fn output_of<'a>(bp: &'a Blueprint, name: &str) -> &'a Expr {
        &bp.outputs
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("output {name} missing"))
            .value
    }

    #[test]
    fn multi_cluster_makes_a_cluster_per_plane_and_one_database() {
        let c = multi("", TWO_PLANES);
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let names = |t: &str| -> Vec<String> {
            of_type(&bp, t)
                .iter()
                .map(|r| r.address.name().to_string())
                .collect()
        };
        assert_eq!(names("gcp_container_cluster"), ["main", "dp_gpu", "dp_cpu"]);
        assert_eq!(
            names("gcp_container_node_pool"),
            ["main", "dp_gpu", "dp_cpu"]
        );
        assert_eq!(names("gcp_sql_database_instance"), ["main"]);
        assert_eq!(names("gcp_storage_bucket"), ["metadata", "data"]);
        assert_eq!(names("gcp_compute_subnetwork"), ["main"]);
        // One node identity for every pool.
        assert_eq!(
            of_type(&bp, "gcp_project_iam_member").len(),
            NODE_ROLES.len()
        );
        let node_sa = Address::new("gcp_service_account", "nodes");
        for p in of_type(&bp, "gcp_container_node_pool") {
            assert_eq!(p.attributes["service_account"], r(&node_sa, "email"));
        }
        // The control plane as ever; each plane named after the deployment and the plane,
        // on the shared network, with its own ranges.
        let main = find(&bp, "gcp_container_cluster.main");
        assert_eq!(main.attributes["name"], Expr::from("demo"));
        assert_eq!(main.attributes["pods_range_name"], Expr::from("demo-pods"));
        let gpu = find(&bp, "gcp_container_cluster.dp_gpu");
        assert_eq!(gpu.attributes["name"], Expr::from("demo-gpu"));
        assert_eq!(gpu.attributes["pods_range_name"], Expr::from("pods-gpu"));
        assert_eq!(
            gpu.attributes["services_range_name"],
            Expr::from("services-gpu")
        );
        for a in [
            "network",
            "subnetwork",
            "workload_pool",
            "release_channel",
            "location",
        ] {
            assert_eq!(gpu.attributes[a], main.attributes[a], "{a}");
        }
        let pool = find(&bp, "gcp_container_node_pool.dp_gpu");
        assert_eq!(
            pool.attributes["cluster"],
            r(&Address::new("gcp_container_cluster", "dp_gpu"), "id")
        );
        assert_eq!(pool.attributes["name"], Expr::from("demo-gpu-nodes"));
        // Outputs: the control plane's as ever, and the same three per plane.
        for (prefix, cluster) in [("", "main"), ("dp_gpu_", "dp_gpu"), ("dp_cpu_", "dp_cpu")] {
            let a = Address::new("gcp_container_cluster", cluster);
            for (o, attr) in [
                ("cluster_name", "name"),
                ("cluster_endpoint", "endpoint"),
                ("cluster_ca", "ca_certificate"),
            ] {
                assert_eq!(*output_of(&bp, &format!("{prefix}{o}")), r(&a, attr));
            }
        }
    }

    #[test]
    fn plane_overrides_reach_their_node_pool_only() {
        let c = multi("  machine_type: e2-standard-2\n", TWO_PLANES);
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let pool = |a: &str| find(&bp, &format!("gcp_container_node_pool.{a}"));
        let attrs = |a: &str| {
            let p = pool(a);
            (
                p.attributes["machine_type"].clone(),
                p.attributes["min_nodes"].clone(),
                p.attributes["max_nodes"].clone(),
            )
        };
        let (main_min, main_max) = (
            i64::from(c.cluster.nodes.min),
            i64::from(c.cluster.nodes.max),
        );
        assert_eq!(
            attrs("main"),
            (
                Expr::from("e2-standard-2"),
                Expr::from(main_min),
                Expr::from(main_max)
            )
        );
        assert_eq!(
            attrs("dp_gpu"),
            (
                Expr::from("g2-standard-8"),
                Expr::from(0i64),
                Expr::from(8i64)
            )
        );
        // No override: the deployment's machine type and node counts.
        assert_eq!(attrs("dp_cpu"), attrs("main"));
    }

    #[test]
    fn each_plane_gets_secondary_ranges_on_the_subnetwork() {
        let c = multi("", TWO_PLANES);
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let Expr::Map(ranges) =
            &find(&bp, "gcp_compute_subnetwork.main").attributes["secondary_ranges"]
        else {
            panic!("secondary_ranges is not a map");
        };
        let mut want: BTreeMap<String, Expr> = BTreeMap::new();
        want.insert(
            "demo-pods".into(),
            s(&c.gcp.as_ref().unwrap().pods_cidr.to_string()),
        );
        want.insert(
            "demo-services".into(),
            s(&c.gcp.as_ref().unwrap().services_cidr.to_string()),
        );
        for p in &c.data_planes {
            want.insert(
                format!("pods-{}", p.name),
                s(&p.gcp_pods_cidr().to_string()),
            );
            want.insert(
                format!("services-{}", p.name),
                s(&p.gcp_services_cidr().to_string()),
            );
        }
        assert_eq!(*ranges, want);
        // Distinct ranges, every one used by exactly one cluster.
        let lit = |e: &Expr| match e {
            Expr::Value(v) => v.as_str().unwrap().to_string(),
            other => panic!("not a literal: {other:?}"),
        };
        let cidrs: std::collections::BTreeSet<String> = ranges.values().map(lit).collect();
        assert_eq!(cidrs.len(), ranges.len());
        let mut used: Vec<String> = of_type(&bp, "gcp_container_cluster")
            .iter()
            .flat_map(|cl| {
                [
                    lit(&cl.attributes["pods_range_name"]),
                    lit(&cl.attributes["services_range_name"]),
                ]
            })
            .collect();
        used.sort();
        assert_eq!(used, ranges.keys().cloned().collect::<Vec<_>>());
        // A plane's cluster waits for the subnetwork (and so for its ranges).
        assert!(
            find(&bp, "gcp_container_cluster.dp_cpu")
                .dependencies()
                .contains(&Address::new("gcp_compute_subnetwork", "main"))
        );
        // On the user's subnetwork nothing is added: the planes use the documented names.
        let c = multi(
            "  existing:\n    network: corp\n    subnetwork: corp-sub\n",
            TWO_PLANES,
        );
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        assert_eq!(
            find(&bp, "gcp_compute_subnetwork.main").mode,
            flyteinfra_core::Mode::Existing
        );
        let gpu = find(&bp, "gcp_container_cluster.dp_gpu");
        assert_eq!(gpu.attributes["pods_range_name"], Expr::from("pods-gpu"));
        assert_eq!(
            gpu.attributes["services_range_name"],
            Expr::from("services-gpu")
        );
    }

    #[test]
    fn each_component_account_trusts_exactly_its_service_account() {
        let c = multi("", TWO_PLANES);
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let set = |items: &[&str]| -> std::collections::BTreeSet<String> {
            items.iter().map(|s| (*s).to_string()).collect()
        };
        for comp in ["flyteadmin", "datacatalog", "flytepropeller"] {
            let binding = format!("gcp_service_account_iam_member.{comp}_workload_identity");
            assert_eq!(
                wi_subjects(&bp, &binding),
                set(&[&format!("[flyte/{comp}]")]),
                "{comp}"
            );
            let sa = Address::new("gcp_service_account", comp);
            assert_eq!(
                find(&bp, &binding).attributes["service_account"],
                r(&sa, "email")
            );
            assert_eq!(
                find(&bp, &format!("gcp_service_account.{comp}")).attributes["account_id"],
                Expr::from(format!("demo-{comp}"))
            );
            // The backend role on the bucket, as the single backend account has it.
            let m = find(
                &bp,
                &format!("gcp_storage_bucket_iam_member.metadata_{comp}"),
            );
            assert_eq!(
                m.attributes["role"],
                r(
                    &Address::new("gcp_project_iam_custom_role", "backend"),
                    "name"
                )
            );
            assert_eq!(m.attributes["members"], Expr::List(vec![r(&sa, "member")]));
        }
        assert_eq!(
            wi_subjects(
                &bp,
                "gcp_service_account_iam_member.tasks_workload_identity"
            )
            .len(),
            4
        );
        let wi = bp
            .resources
            .iter()
            .filter(|r| {
                r.attributes.get("role") == Some(&Expr::from("roles/iam.workloadIdentityUser"))
            })
            .count();
        assert_eq!(wi, 4, "one binding per Google service account");
        // No shared backend account; only flyteadmin signs URLs.
        let backend: Vec<String> = bp
            .resources
            .iter()
            .filter(|r| r.address.name().contains("backend"))
            .map(|r| r.address.to_string())
            .collect();
        assert_eq!(backend, ["gcp_project_iam_custom_role.backend"]);
        let signers: Vec<String> = bp
            .resources
            .iter()
            .filter(|r| {
                r.attributes.get("role")
                    == Some(&Expr::from("roles/iam.serviceAccountTokenCreator"))
            })
            .map(|r| r.address.to_string())
            .collect();
        assert_eq!(
            signers,
            ["gcp_service_account_iam_member.flyteadmin_token_creator"]
        );
        // Outputs: one identity per component; every plane's propeller is the one account.
        let email = |c: &str| r(&Address::new("gcp_service_account", c), "email");
        assert_eq!(*output_of(&bp, "identity_flyteadmin"), email("flyteadmin"));
        assert_eq!(
            *output_of(&bp, "identity_datacatalog"),
            email("datacatalog")
        );
        for p in ["gpu", "cpu"] {
            assert_eq!(
                *output_of(&bp, &format!("dp_{p}_identity_flytepropeller")),
                email("flytepropeller")
            );
        }
        assert_eq!(*output_of(&bp, "task_service_account"), email("tasks"));
        assert!(
            bp.outputs
                .iter()
                .all(|o| o.name != "backend_service_account")
        );
    }

    #[test]
    fn an_existing_plane_is_read_only() {
        // A cluster that already exists is in a network that already exists.
        let c = multi(
            "  existing:\n    network: corp-vpc\n",
            "  - name: gpu\n  - name: old\n    existing: corp-gke\n",
        );
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let old = find(&bp, "gcp_container_cluster.dp_old");
        assert_eq!(old.mode, flyteinfra_core::Mode::Existing);
        assert_eq!(
            old.existing_id.as_deref(),
            Some("projects/my-proj-1/locations/us-central1/clusters/corp-gke")
        );
        assert!(
            bp.resources
                .iter()
                .all(|r| r.address.to_string() != "gcp_container_node_pool.dp_old")
        );
        // Its cluster has its own ranges: none are added for it.
        let ranges = format!(
            "{:?}",
            find(&bp, "gcp_compute_subnetwork.main").attributes["secondary_ranges"]
        );
        assert!(
            ranges.contains("pods-gpu") && !ranges.contains("pods-old"),
            "{ranges}"
        );
        let a = Address::new("gcp_container_cluster", "dp_old");
        assert_eq!(
            *output_of(&bp, "dp_old_cluster_endpoint"),
            r(&a, "endpoint")
        );
        // Every cluster the user's: no node identity, no pool.
        let c = multi(
            "  existing:\n    network: corp\n    cluster: corp-main\n",
            "  - name: old\n    existing: corp-gke\n",
        );
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        assert!(of_type(&bp, "gcp_container_node_pool").is_empty());
        assert!(
            bp.resources
                .iter()
                .all(|r| r.address.to_string() != "gcp_service_account.nodes")
        );
        // The user's control plane with a made plane: the node identity is made for it.
        let c = multi(
            "  existing:\n    network: corp\n    cluster: corp-main\n",
            "  - name: gpu\n",
        );
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        assert_eq!(
            find(&bp, "gcp_container_cluster.main").mode,
            flyteinfra_core::Mode::Existing
        );
        assert_eq!(
            find(&bp, "gcp_container_node_pool.dp_gpu").attributes["service_account"],
            r(&Address::new("gcp_service_account", "nodes"), "email")
        );
    }

    #[test]
    fn multi_cluster_names_fit_google_limits() {
        // The longest names config validation lets through: a 29-character deployment
        // (for a 40-character cluster) and a 10-character plane.
        let deployment = "a-very-long-deployment-name-x";
        let c = Config::parse(
            &format!(
                "name: {deployment}\ncloud: gcp\nstyle: multi-cluster\ngcp:\n  project: my-proj-1\n  region: us-central1\ncontrol_plane: {{admin_endpoint: a.b:81, catalog_endpoint: c.d:89}}\ndata_planes:\n  - name: abcdefghij\n"
            ),
            Path::new("t.yaml"),
        )
        .unwrap();
        let bp = expand(&c, c.gcp.as_ref().unwrap(), &facts()).unwrap();
        let gke_name = |n: &str, max: usize| {
            n.len() <= max
                && n.starts_with(|c: char| c.is_ascii_lowercase())
                && !n.ends_with('-')
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        for t in ["gcp_container_cluster", "gcp_container_node_pool"] {
            for spec in of_type(&bp, t) {
                let Expr::Value(v) = &spec.attributes["name"] else {
                    panic!("{} has no literal name", spec.address)
                };
                let n = v.as_str().unwrap();
                assert!(gke_name(n, 40), "{}: `{n}`", spec.address);
            }
        }
        assert_eq!(
            find(&bp, "gcp_container_cluster.dp_abcdefghij").attributes["name"],
            Expr::from("a-very-long-deployment-name-x-abcdefghij")
        );
        for spec in of_type(&bp, "gcp_service_account") {
            let Expr::Value(v) = &spec.attributes["account_id"] else {
                panic!("{}", spec.address)
            };
            let id = v.as_str().unwrap();
            assert!(
                (6..=30).contains(&id.len()) && gke_name(id, 30) && !id.contains("--"),
                "{}: `{id}`",
                spec.address
            );
        }
        assert_eq!(pool_name("demo-gpu"), "demo-gpu-nodes");
        let pool = pool_name(&"a".repeat(40));
        assert_eq!(pool.len(), 40, "{pool}");
        // A cut that ends on a dash drops it.
        assert_eq!(
            pool_name(&format!("{}-b", "a".repeat(33))),
            format!("{}-nodes", "a".repeat(33))
        );
    }
}

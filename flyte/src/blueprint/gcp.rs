//! A single-cluster Flyte deployment on Google Cloud (reference §3): project APIs, a
//! VPC-native network with Private Service Access, GKE with Workload Identity, Cloud SQL
//! PostgreSQL on a private IP, GCS, and Google service accounts bound to exactly the
//! Kubernetes service accounts Flyte runs as.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Expr, ResourceSpec, Value};

use super::{Blueprint, BlueprintError, Facts, addr, hash_suffix, output, r, s};
use crate::config::{Config, GcpConfig};

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
fn bucket_name(project: &str, name: &str, purpose: &str) -> String {
    let full = format!("{project}-{name}-{purpose}");
    if full.len() <= 63 {
        return full;
    }
    format!("{name}-{}-{purpose}", hash_suffix(project))
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
    let subnet = addr("gcp_compute_subnetwork", "main");
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

    // Cluster: GKE with Workload Identity, and a node pool running as its own
    // least-privilege service account; or the user's cluster.
    let cluster = addr("gcp_container_cluster", "main");
    let workload_pool = format!("{project}.svc.id.goog");
    if let Some(existing) = &gcp.existing.cluster {
        out.push(ResourceSpec::existing(
            cluster.clone(),
            format!(
                "projects/{project}/locations/{}/clusters/{existing}",
                gcp.region
            ),
        ));
    } else {
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
        out.push(
            managed(&cluster)
                .with("name", name)
                .with("location", gcp.region.as_str())
                .with("network", r(&network, "self_link"))
                .with("subnetwork", r(&subnet, "self_link"))
                .with("pods_range_name", pods_range.as_str())
                .with("services_range_name", services_range.as_str())
                .with("release_channel", gcp.release_channel.as_str())
                .with("workload_pool", workload_pool.as_str())
                .with("labels", labels(name)),
        );
        let nodes = config.cluster.nodes;
        let pool = node_role_members.iter().fold(
            managed(&addr("gcp_container_node_pool", "main")),
            |spec, d| spec.after(d),
        );
        out.push(
            pool.with("cluster", r(&cluster, "id"))
                .with("name", format!("{name}-nodes"))
                .with("machine_type", gcp.machine_type.as_str())
                .with("service_account", r(&node_sa, "email"))
                .with("min_nodes", i64::from(nodes.min))
                .with("max_nodes", i64::from(nodes.max)),
        );
    }

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

    // Identities: one Google service account for the backend, one for task pods, each
    // with a custom role on exactly the buckets.
    let fl = &config.flyte;
    let backend = addr("gcp_service_account", "backend");
    out.push(
        managed(&backend)
            .with("account_id", account_id(name, "backend"))
            .with(
                "display_name",
                format!("Flyte backend of deployment {name}"),
            ),
    );
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
    for b in &buckets {
        for (who, sa, role) in [
            ("backend", &backend, &backend_role),
            ("tasks", &tasks, &task_role),
        ] {
            out.push(
                managed(&addr(
                    "gcp_storage_bucket_iam_member",
                    &format!("{}_{who}", b.name()),
                ))
                .with("bucket", r(b, "id"))
                .with("role", r(role, "name"))
                .with("members", Expr::List(vec![r(sa, "member")])),
            );
        }
    }
    // Signed URLs (fast registration, console downloads) are signed by the backend
    // account itself: it needs signBlob on itself (reference pitfall 9).
    out.push(
        managed(&addr(
            "gcp_service_account_iam_member",
            "backend_token_creator",
        ))
        .with("service_account", r(&backend, "email"))
        .with("role", "roles/iam.serviceAccountTokenCreator")
        .with("members", Expr::List(vec![r(&backend, "member")])),
    );
    // Workload Identity members name the cluster's pool, which exists once the cluster
    // does: the reference makes the binding wait for it (pitfall 7).
    let wi_member = |ns: &str, ksa: &str| {
        Expr::Concat(vec![
            s("serviceAccount:"),
            r(&cluster, "workload_pool"),
            s(&format!("[{ns}/{ksa}]")),
        ])
    };
    out.push(
        managed(&addr(
            "gcp_service_account_iam_member",
            "backend_workload_identity",
        ))
        .with("service_account", r(&backend, "email"))
        .with("role", "roles/iam.workloadIdentityUser")
        .with(
            "members",
            Expr::List(
                fl.backend_service_accounts()
                    .iter()
                    .map(|sa| wi_member(&fl.namespace, sa))
                    .collect(),
            ),
        ),
    );
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

    let outputs = vec![
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
        output("backend_service_account", r(&backend, "email"), false),
        output("task_service_account", r(&tasks, "email"), false),
    ];
    Ok(Blueprint {
        resources: out,
        outputs,
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
}

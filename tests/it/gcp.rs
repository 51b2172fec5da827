//! The real GCP provider against the GCP test double (`tests/gcp-double`, in process, one
//! per test so knobs never leak between tests) and gcp-storage-emulator: a full `--cloud gcp`
//! apply, outputs and Helm values checked field by field, a no-op re-plan, drift corrected,
//! and a destroy that leaves nothing flyteinfra made; disabled APIs, IAM etag races, Cloud
//! SQL's reserved names, and Ctrl-C during a Cloud SQL create.

use std::time::Duration;

use flyteinfra_gcp_double::GcpDouble;
use flyteinfra_provider_gcp::{Api, Endpoints, GcpClients, Method};
use serde_json::{Value, json};

use crate::util::{TestContext, mode, parse_json, wait_until};

pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "g{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// A deployment `name` in project `<name>-proj` with deletion protection off.
pub(crate) fn config(name: &str, extra_gcp: &str) -> String {
    format!(
        "name: {name}\ncloud: gcp\ngcp:\n  project: {name}-proj\n  region: us-central1\n{extra_gcp}\
         database:\n  deletion_protection: false\n\
         flyte:\n  projects: [flytesnacks, analytics]\n  domains: [development, production]\n"
    )
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) async fn clients(double: &GcpDouble, project: &str) -> GcpClients {
    GcpClients::for_endpoints(
        project,
        Endpoints {
            apis: Some(double.url().to_string()),
            storage: crate::gcs::url().to_string(),
        },
    )
    .await
    .unwrap()
}

/// The members holding `role` in a service account's IAM policy.
pub(crate) async fn sa_members(c: &GcpClients, email: &str, role: &str) -> Vec<String> {
    let policy = c
        .iam
        .get_iam_policy()
        .set_resource(format!("projects/{}/serviceAccounts/{email}", c.project))
        .send()
        .await
        .unwrap();
    let mut m: Vec<String> = policy
        .bindings
        .iter()
        .filter(|b| b.role == role)
        .flat_map(|b| b.members.iter().cloned())
        .collect();
    m.sort();
    m
}

async fn storage(c: &GcpClients, method: Method, path: &str, body: Option<Value>) -> Value {
    c.http
        .call(Api::Storage, method, path, body.as_ref(), "test")
        .await
        .unwrap()
}

/// Every object the double holds for `project` that flyteinfra made and still exists:
/// soft-deleted custom roles (Google keeps them a week) and the project's enabled APIs
/// (never disabled on destroy) are not leftovers.
/// API calls the double has served so far (the storage emulator's are not counted).
fn calls(double: &GcpDouble) -> u64 {
    double
        .shared()
        .lock()
        .calls
        .get("total")
        .copied()
        .unwrap_or(0)
}

pub(crate) fn leftovers(double: &GcpDouble, project: &str) -> Vec<String> {
    let w = double.shared().lock();
    w.objects
        .iter()
        .filter(|(k, _)| k.contains(project))
        .filter(|(_, v)| v["deleted"] != true)
        .filter(|(k, _)| !k.contains("/services/"))
        .filter(|(_, v)| {
            // A policy object left with no binding naming the deployment is not ours.
            v.get("bindings").is_none_or(|b| {
                b.as_array()
                    .is_some_and(|b| b.iter().any(|b| b["members"].to_string().contains(project)))
            })
        })
        .map(|(k, _)| k.clone())
        .collect()
}

#[test]
fn gcp_full_apply_values_no_op_drift_and_clean_destroy() {
    let double = GcpDouble::start();
    let name = unique();
    let project = format!("{name}-proj");
    let ctx = TestContext::gcp(&config(&name, ""), double.url());
    let rt = rt();
    let c = rt.block_on(clients(&double, &project));

    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(2);
    let before = calls(&double);
    let apply = ctx.run(&["apply", "--auto-approve"]);
    apply.expect_code(0);
    assert!(apply.stderr.contains("Helm values:"), "{}", apply.stderr);
    let create_calls = calls(&double) - before;

    // Outputs, field by field.
    let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
    let o = |k: &str| out[k]["value"].clone();
    let meta = format!("{project}-{name}-metadata");
    let data = format!("{project}-{name}-data");
    let backend = format!("{name}-backend@{project}.iam.gserviceaccount.com");
    let tasks = format!("{name}-tasks@{project}.iam.gserviceaccount.com");
    assert_eq!(o("project"), project.as_str());
    assert_eq!(o("region"), "us-central1");
    assert_eq!(o("cluster_name"), name.as_str());
    assert_eq!(o("metadata_bucket"), meta.as_str());
    assert_eq!(o("data_bucket"), data.as_str());
    assert_eq!(o("backend_service_account"), backend.as_str());
    assert_eq!(o("task_service_account"), tasks.as_str());
    assert_eq!(o("db_name"), "flyte");
    assert_eq!(o("db_username"), "flyte");
    assert_eq!(o("db_port"), 5432);
    assert_eq!(o("db_password"), "(sensitive)");

    // The Cloud SQL instance: private IP only, on the VPC, TLS enforced, backups + PITR.
    let instance_name =
        ctx.state()["resources"]["gcp_sql_database_instance.main"]["attributes"]["name"]
            .as_str()
            .unwrap()
            .to_string();
    assert!(
        instance_name.starts_with(&format!("{name}-db-")),
        "{instance_name}"
    );
    let inst = rt
        .block_on(
            c.sql_instances
                .get()
                .set_project(&project)
                .set_instance(&instance_name)
                .send(),
        )
        .unwrap();
    let settings = inst.settings.as_ref().unwrap();
    let ip = settings.ip_configuration.as_ref().unwrap();
    assert_eq!(ip.ipv4_enabled, Some(false));
    assert!(
        ip.private_network
            .ends_with(&format!("/global/networks/{name}-vpc"))
    );
    let private_ip = inst
        .ip_addresses
        .iter()
        .find(|a| a.r#type.name() == Some("PRIVATE"))
        .map(|a| a.ip_address.clone())
        .unwrap();
    assert_eq!(o("db_host"), private_ip.as_str());
    let backups = settings.backup_configuration.as_ref().unwrap();
    assert_eq!(backups.enabled, Some(true));
    assert_eq!(backups.point_in_time_recovery_enabled, Some(true));

    // Buckets: uniform access, public access prevention, versioning.
    for b in [&meta, &data] {
        let got = rt.block_on(storage(
            &c,
            Method::GET,
            &format!("/storage/v1/b/{b}"),
            None,
        ));
        assert_eq!(
            got["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"], true,
            "{got}"
        );
        assert_eq!(
            got["iamConfiguration"]["publicAccessPrevention"],
            "enforced"
        );
        assert_eq!(got["versioning"]["enabled"], true);
    }

    // Workload Identity: exactly the backend KSA, and `default` in every project-domain.
    let pool = format!("{project}.svc.id.goog");
    assert_eq!(
        rt.block_on(sa_members(&c, &backend, "roles/iam.workloadIdentityUser")),
        [format!("serviceAccount:{pool}[flyte/flyte-backend]")]
    );
    assert_eq!(
        rt.block_on(sa_members(
            &c,
            &backend,
            "roles/iam.serviceAccountTokenCreator"
        )),
        [format!("serviceAccount:{backend}")]
    );
    let mut want: Vec<String> = [
        "analytics-development",
        "analytics-production",
        "flytesnacks-development",
        "flytesnacks-production",
    ]
    .iter()
    .map(|ns| format!("serviceAccount:{pool}[{ns}/default]"))
    .collect();
    want.sort();
    assert_eq!(
        rt.block_on(sa_members(&c, &tasks, "roles/iam.workloadIdentityUser")),
        want
    );

    // Helm values and the Secret.
    let password =
        ctx.state()["resources"]["random_password.db"]["attributes"]["result"]["$sensitive"]
            .as_str()
            .unwrap()
            .to_string();
    // The generated password is in no output and no log line of the apply.
    assert!(!apply.all().contains(&password), "the password leaked");
    let values_text = std::fs::read_to_string(ctx.dir().join("flyte-values-gcp.yaml")).unwrap();
    let secret_path = ctx.dir().join("flyte-db-secret-gcp.yaml");
    assert!(!values_text.contains(&password));
    assert_eq!(mode(&secret_path), 0o600);
    assert!(
        std::fs::read_to_string(&secret_path)
            .unwrap()
            .contains(&password)
    );
    let values: Value = serde_saphyr::from_str(&values_text).unwrap();
    let db = &values["configuration"]["database"];
    assert_eq!(db["host"], private_ip.as_str());
    assert_eq!(db["port"], 5432);
    assert_eq!(db["passwordPath"], "/etc/flyte/db/password");
    assert_eq!(db["options"], "sslmode=require");
    let st = &values["configuration"]["storage"];
    assert_eq!(st["provider"], "gcs");
    assert_eq!(st["metadataContainer"], meta.as_str());
    assert_eq!(st["userDataContainer"], data.as_str());
    assert_eq!(st["providerConfig"]["gcs"]["project"], project.as_str());
    assert_eq!(
        values["serviceAccount"]["annotations"]["iam.gke.io/gcp-service-account"],
        backend.as_str()
    );
    // As Flyte loads it (a list, whose keys keep their case).
    let custom = crate::helm::custom_data(&values["configuration"]["inline"]);
    for d in ["development", "production"] {
        assert_eq!(custom[d]["taskGsa"]["value"], tasks.as_str());
    }

    // A second plan is a no-op, read with few calls (a batched read per type where the
    // API lists; the storage emulator's calls are not in this count).
    let before = calls(&double);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    let no_op_calls = calls(&double) - before;
    println!("GCP calls (no storage): create {create_calls}, no-op plan {no_op_calls}");
    assert!(no_op_calls <= 30, "a no-op plan made {no_op_calls} calls");

    // Drift behind flyteinfra's back: one task namespace loses its binding, versioning is
    // turned off. The plan shows both; apply puts them back; the next plan is clean.
    rt.block_on(async {
        let resource = format!("projects/{project}/serviceAccounts/{tasks}");
        let mut policy = c
            .iam
            .get_iam_policy()
            .set_resource(&resource)
            .send()
            .await
            .unwrap();
        for b in policy.bindings.iter_mut() {
            b.members
                .retain(|m| !m.contains("[analytics-production/default]"));
        }
        c.iam
            .set_iam_policy()
            .set_resource(&resource)
            .set_policy(policy)
            .send()
            .await
            .unwrap();
        storage(
            &c,
            Method::PATCH,
            &format!("/storage/v1/b/{meta}"),
            Some(json!({"versioning": {"enabled": false}})),
        )
        .await;
    });
    let drift = ctx.run(&["plan", "--detailed-exitcode"]);
    drift.expect_code(2);
    assert!(
        drift
            .stdout
            .contains("gcp_service_account_iam_member.tasks_workload_identity"),
        "{}",
        drift.stdout
    );
    assert!(
        drift.stdout.contains("gcp_storage_bucket.metadata"),
        "{}",
        drift.stdout
    );
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    assert_eq!(
        rt.block_on(sa_members(&c, &tasks, "roles/iam.workloadIdentityUser")),
        want
    );
    let got = rt.block_on(storage(
        &c,
        Method::GET,
        &format!("/storage/v1/b/{meta}"),
        None,
    ));
    assert_eq!(got["versioning"]["enabled"], true);

    // Destroy leaves nothing flyteinfra made (the same filter saw everything before).
    let made = leftovers(&double, &project);
    for kind in [
        "/global/networks/",
        "/subnetworks/",
        "/global/addresses/",
        "/serviceAccounts/",
        "/roles/",
        "/instances/",
        "/clusters/",
        "/nodePools/",
    ] {
        assert!(
            made.iter().any(|k| k.contains(kind)),
            "{kind} not seen in {made:?}"
        );
    }
    let before = calls(&double);
    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    println!(
        "GCP calls (no storage): destroy {}",
        calls(&double) - before
    );
    assert_eq!(leftovers(&double, &project), Vec::<String>::new());
    let buckets = rt.block_on(storage(
        &c,
        Method::GET,
        &format!("/storage/v1/b?project={project}"),
        None,
    ));
    assert!(
        buckets["items"].as_array().is_none_or(|i| i
            .iter()
            .all(|b| !b["name"].as_str().unwrap_or("").contains(&name))),
        "{buckets}"
    );
    assert!(ctx.state()["resources"].as_object().unwrap().is_empty());
}

#[test]
fn gcp_disabled_apis_fail_fast_naming_each() {
    let double = GcpDouble::start();
    let name = unique();
    let ctx = TestContext::gcp(&config(&name, "  enable_apis: false\n"), double.url());
    let plan = ctx.run(&["plan"]);
    plan.expect_code(1);
    let err = plan.stderr.clone();
    assert!(err.contains("flyteinfra.yaml:6:16:"), "{err}");
    for api in [
        "compute.googleapis.com",
        "container.googleapis.com",
        "sqladmin.googleapis.com",
        "servicenetworking.googleapis.com",
        "iam.googleapis.com",
        "iamcredentials.googleapis.com",
        "cloudresourcemanager.googleapis.com",
    ] {
        assert!(err.contains(api), "{api} not named:\n{err}");
    }
    assert!(err.contains("gcloud services enable"), "{err}");
    assert!(!ctx.state_path().exists(), "a failed preflight wrote state");
    // Nothing but the preflight reached the double: no API was enabled, nothing created.
    let w = double.shared().lock();
    assert!(
        w.objects.keys().all(|k| !k.contains("/global/networks")),
        "{:?}",
        w.objects.keys().collect::<Vec<_>>()
    );
}

#[test]
fn gcp_iam_etag_races_are_retried_and_foreign_bindings_survive() {
    let double = GcpDouble::start();
    double.shared().lock().knobs.iam_conflicts = 3;
    double.shared().lock().knobs.sa_invisible_reads = 2;
    let name = unique();
    let project = format!("{name}-proj");
    let ctx = TestContext::gcp(&config(&name, ""), double.url());
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    assert_eq!(
        double.shared().lock().knobs.iam_conflicts,
        0,
        "no race was met"
    );
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    // The concurrent writer's binding is still there next to ours.
    let rt = rt();
    let c = rt.block_on(clients(&double, &project));
    let foreign = double
        .shared()
        .lock()
        .objects
        .values()
        .filter(|v| {
            v["bindings"]
                .to_string()
                .contains("someone-else@example.com")
        })
        .count();
    assert!(foreign >= 1, "the foreign binding was lost");
    let tasks = format!("{name}-tasks@{project}.iam.gserviceaccount.com");
    assert_eq!(
        rt.block_on(sa_members(&c, &tasks, "roles/iam.workloadIdentityUser"))
            .len(),
        4
    );
}

#[test]
fn gcp_reserved_cloud_sql_name_gets_a_fresh_suffix() {
    let double = GcpDouble::start();
    double.shared().lock().knobs.reject_next_sql_inserts = 1;
    let name = unique();
    let ctx = TestContext::gcp(&config(&name, ""), double.url());
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let w = double.shared().lock();
    assert_eq!(w.knobs.reject_next_sql_inserts, 0, "no insert was refused");
    let refused = w.sql_insert_attempts.first().cloned().unwrap();
    let inst = ctx.state()["resources"]["gcp_sql_database_instance.main"]["attributes"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(refused, inst, "the refused name was used");
    assert!(inst.starts_with(&format!("{name}-db-")), "{inst}");
    drop(w);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}

#[test]
fn gcp_ctrl_c_during_cloud_sql_create_leaves_it_pending_and_the_next_run_resumes() {
    let double = GcpDouble::start();
    // Cloud SQL creates never finish until the test says so.
    double.shared().lock().knobs.sql_polls = 1_000_000;
    let name = unique();
    let ctx = TestContext::gcp(&config(&name, ""), double.url());
    let child = ctx.spawn(&["apply", "--auto-approve"], &[]);
    let pending = wait_until(Duration::from_secs(60), || {
        std::fs::read(ctx.state_path()).ok().is_some_and(|b| {
            serde_json::from_slice::<Value>(&b).is_ok_and(|s| {
                s["resources"]["gcp_sql_database_instance.main"]["status"] == "pending"
            })
        })
    });
    assert!(
        pending,
        "the Cloud SQL create was never recorded as pending"
    );
    crate::crash::sigint(child.id());
    let out = crate::util::finish(child);
    out.expect_code(1);
    assert!(out.stderr.contains("interrupted"), "{}", out.stderr);
    assert_eq!(
        ctx.state()["resources"]["gcp_sql_database_instance.main"]["status"],
        "pending"
    );
    // Google finishes the create meanwhile; the next run waits for it, creates nothing new.
    {
        let mut w = double.shared().lock();
        w.knobs.sql_polls = 1;
        for op in w.ops.values_mut() {
            op.polls_left = op.polls_left.min(1);
        }
    }
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let instances = double
        .shared()
        .lock()
        .objects
        .keys()
        .filter(|k| {
            k.contains("/instances/") && !k.contains("/databases/") && !k.contains("/users/")
        })
        .count();
    assert_eq!(instances, 1, "the create was sent twice");
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}

/// Makes a network, a subnetwork with `pods`/`services` ranges and a Workload Identity
/// cluster directly through the official clients, as a user's own components.
async fn existing_components(c: &GcpClients, project: &str) {
    use google_cloud_compute_v1::model::{Network, Subnetwork, SubnetworkSecondaryRange};
    use google_cloud_container_v1::model::{Cluster, NodePool, WorkloadIdentityConfig};
    let op = c
        .networks
        .insert()
        .set_project(project)
        .set_body(
            Network::new()
                .set_name("corp")
                .set_auto_create_subnetworks(false),
        )
        .send()
        .await
        .unwrap();
    c.global_operations
        .get()
        .set_project(project)
        .set_operation(op.name.unwrap())
        .send()
        .await
        .unwrap();
    let op = c
        .subnetworks
        .insert()
        .set_project(project)
        .set_region("us-central1")
        .set_body(
            Subnetwork::new()
                .set_name("corp-sub")
                .set_network(format!("projects/{project}/global/networks/corp"))
                .set_ip_cidr_range("10.50.0.0/20")
                .set_secondary_ip_ranges([
                    SubnetworkSecondaryRange::new()
                        .set_range_name("pods")
                        .set_ip_cidr_range("10.60.0.0/14"),
                    SubnetworkSecondaryRange::new()
                        .set_range_name("services")
                        .set_ip_cidr_range("10.70.0.0/20"),
                ]),
        )
        .send()
        .await
        .unwrap();
    c.region_operations
        .get()
        .set_project(project)
        .set_region("us-central1")
        .set_operation(op.name.unwrap())
        .send()
        .await
        .unwrap();
    let parent = format!("projects/{project}/locations/us-central1");
    let op = c
        .gke
        .create_cluster()
        .set_parent(&parent)
        .set_cluster(
            Cluster::new()
                .set_name("corp-gke")
                .set_network("corp")
                .set_subnetwork("corp-sub")
                .set_node_pools([NodePool::new()
                    .set_name("default-pool")
                    .set_initial_node_count(1)])
                .set_workload_identity_config(
                    WorkloadIdentityConfig::new()
                        .set_workload_pool(format!("{project}.svc.id.goog")),
                ),
        )
        .send()
        .await
        .unwrap();
    for _ in 0..5 {
        let got = c
            .gke
            .get_operation()
            .set_name(format!("{parent}/operations/{}", op.name))
            .send()
            .await
            .unwrap();
        if got.status.name() == Some("DONE") {
            return;
        }
    }
    panic!("the existing cluster never became ready");
}

#[test]
fn gcp_existing_network_and_cluster_are_used_and_never_touched() {
    let double = GcpDouble::start();
    double.shared().lock().knobs.enforce_services = false;
    let name = unique();
    let project = format!("{name}-proj");
    let rt = rt();
    let c = rt.block_on(clients(&double, &project));
    rt.block_on(existing_components(&c, &project));
    let theirs = |d: &GcpDouble| -> Vec<(String, Value)> {
        d.shared()
            .lock()
            .objects
            .iter()
            .filter(|(k, _)| {
                k.ends_with("/networks/corp")
                    || k.ends_with("/subnetworks/corp-sub")
                    || k.ends_with("/clusters/corp-gke")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let before = theirs(&double);
    assert_eq!(before.len(), 3, "{before:?}");

    let ctx = TestContext::gcp(
        &config(
            &name,
            "  existing:\n    network: corp\n    subnetwork: corp-sub\n    cluster: corp-gke\n",
        ),
        double.url(),
    );
    let plan = ctx.run(&["plan"]);
    plan.ok();
    for made in [
        "gcp_compute_network",
        "gcp_container_cluster",
        "gcp_container_node_pool",
    ] {
        assert!(
            !plan
                .stdout
                .contains(&format!("# {made}.main will be created")),
            "{made} would be made:\n{}",
            plan.stdout
        );
    }
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    // Workload Identity names the user's cluster's pool.
    let tasks = format!("{name}-tasks@{project}.iam.gserviceaccount.com");
    let members = rt.block_on(sa_members(&c, &tasks, "roles/iam.workloadIdentityUser"));
    assert_eq!(members.len(), 4, "{members:?}");
    assert!(members[0].starts_with(&format!("serviceAccount:{project}.svc.id.goog[")));
    // The Private Service Access range sits on the user's network.
    let psa = rt
        .block_on(
            c.global_addresses
                .get()
                .set_project(&project)
                .set_address(format!("{name}-psa"))
                .send(),
        )
        .unwrap();
    assert!(
        psa.network
            .as_deref()
            .unwrap_or("")
            .ends_with("/networks/corp")
    );

    // The destroy as a saved plan: reviewed (only what flyteinfra made), then carried out
    // without a question.
    let plan = ctx.run(&[
        "plan",
        "--destroy",
        "--detailed-exitcode",
        "--out",
        "d.plan",
    ]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("# gcp_storage_bucket.metadata will be destroyed"),
        "{}",
        plan.stdout
    );
    for theirs in [
        "gcp_compute_network",
        "gcp_compute_subnetwork",
        "gcp_container_cluster",
    ] {
        assert!(
            !plan
                .stdout
                .contains(&format!("# {theirs}.main will be destroyed")),
            "the user's {theirs} would be destroyed:\n{}",
            plan.stdout
        );
    }
    let destroyed = ctx.run(&["apply", "d.plan"]);
    destroyed.expect_code(0);
    assert!(
        destroyed.stderr.contains("Destroy complete"),
        "{}",
        destroyed.stderr
    );
    let after = theirs(&double);
    let keys = |v: &[(String, Value)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&after),
        keys(&before),
        "a component of the user's was deleted"
    );
    for ((k, a), (_, b)) in after.iter().zip(&before) {
        // Networks list their subnetworks and peerings when read; the stored object is
        // what matters.
        assert_eq!(a, b, "{k} was changed");
    }
    // What remains is the user's: their network, subnetwork, cluster and its default pool.
    let left = leftovers(&double, &project);
    assert!(left.iter().all(|k| k.contains("/corp")), "{left:?}");
}

#[test]
fn gcp_apply_converges_in_one_run_under_throttling_and_invisible_accounts() {
    let double = GcpDouble::start();
    {
        let mut w = double.shared().lock();
        // Every 4th call is refused with 429, and new service accounts stay invisible for a
        // few reads: one apply still converges.
        w.knobs.throttle_every = 4;
        w.knobs.sa_invisible_reads = 3;
        w.knobs.op_polls = 3;
    }
    let name = unique();
    let ctx = TestContext::gcp(&config(&name, ""), double.url());
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let served = calls(&double);
    // Every 4th of the calls was refused with 429 and retried (by the clients' request
    // policy, or for operation polls by the provider's poll loop).
    assert!(served >= 80, "only {served} calls");
    println!(
        "GCP apply under throttling: {served} calls, {} refused",
        served / 4
    );
    double.shared().lock().knobs.throttle_every = 0;
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}

/// A GCS bucket holding objects stops a destroy before anything is deleted; with
/// `storage.force_destroy` its objects go first and the destroy completes.
#[test]
fn gcp_a_non_empty_bucket_blocks_destroy_until_force_destroy() {
    let double = GcpDouble::start();
    let name = unique();
    let project = format!("{name}-proj");
    let ctx = TestContext::gcp(&config(&name, ""), double.url());
    let rt = rt();
    let c = rt.block_on(clients(&double, &project));
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let data = format!("{project}-{name}-data");
    // A media upload of a JSON body: the object's content does not matter here.
    let upload = |object: &str| {
        let path = format!("/upload/storage/v1/b/{data}/o?uploadType=media&name={object}");
        rt.block_on(storage(&c, Method::POST, &path, Some(json!("x"))));
    };
    upload("raw%2Fa");
    upload("raw%2Fb");
    let before = leftovers(&double, &project);

    let r = ctx.run(&["destroy", "--auto-approve"]);
    r.expect_code(1);
    assert!(
        r.stderr
            .contains(&format!("`gcp_storage_bucket.data` (bucket `{data}`)")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("storage.force_destroy: true"),
        "{}",
        r.stderr
    );
    assert_eq!(
        leftovers(&double, &project),
        before,
        "something was deleted"
    );
    let listed = rt.block_on(storage(
        &c,
        Method::GET,
        &format!("/storage/v1/b/{data}/o"),
        None,
    ));
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    ctx.write_config(&format!(
        "{}storage:\n  force_destroy: true\n",
        config(&name, "")
    ));
    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    assert_eq!(leftovers(&double, &project), Vec::<String>::new());
    let gone = rt.block_on(c.http.call(
        Api::Storage,
        Method::GET,
        &format!("/storage/v1/b/{data}"),
        None,
        "test",
    ));
    assert!(gone.is_err_and(|e| e.kind == flyteinfra_core::ErrorKind::NotFound));
}

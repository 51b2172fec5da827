//! The double driven through the official google-cloud-rust clients, so what it serves
//! is checked against the paths, fields and error parsing the provider code relies on.

use std::collections::BTreeMap;

use flyteinfra_gcp_double::{FOREIGN_MEMBER, GcpDouble, Knobs, project_number};
use google_cloud_auth::credentials::anonymous;
use google_cloud_compute_v1::client::{
    GlobalAddresses, GlobalOperations, Networks, RegionOperations, Subnetworks,
};
use google_cloud_compute_v1::model::{
    Address, Network, Subnetwork, SubnetworkSecondaryRange,
    SubnetworksSetPrivateIpGoogleAccessRequest, address, operation,
};
use google_cloud_gax::error::Error;
use google_cloud_gax::error::rpc::{Code, StatusDetails};
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_lro::Poller;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const P: &str = "proj-a";

/// Builds an official client pointed at the double: anonymous, no retries.
macro_rules! client {
    ($ty:ty, $d:expr) => {
        <$ty>::builder()
            .with_endpoint($d.url())
            .with_credentials(anonymous::Builder::new().build())
            .with_retry_policy(NeverRetry)
            .build()
            .await
            .expect("client")
    };
}

fn double(knobs: Knobs) -> GcpDouble {
    let d = GcpDouble::start();
    d.shared().lock().knobs = knobs;
    d
}

/// Knobs with every API already enabled, for tests about something else.
fn open() -> Knobs {
    Knobs {
        enforce_services: false,
        ..Knobs::default()
    }
}

fn code(e: &Error) -> (Option<u16>, Code) {
    (
        e.http_status_code(),
        e.status().map(|s| s.code).unwrap_or(Code::Unknown),
    )
}

fn reasons(e: &Error) -> Vec<String> {
    e.status()
        .into_iter()
        .flat_map(|s| s.details.iter())
        .filter_map(|d| match d {
            StatusDetails::ErrorInfo(i) => Some(i.reason.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn network_insert_is_done_after_the_polls_then_readable() {
    let d = double(Knobs {
        op_polls: 2,
        ..open()
    });
    let nets = client!(Networks, d);
    let ops = client!(GlobalOperations, d);
    let op = nets
        .insert()
        .set_project(P)
        .set_body(
            Network::new()
                .set_name("vpc")
                .set_auto_create_subnetworks(false),
        )
        .send()
        .await
        .expect("insert");
    assert_eq!(op.status, Some(operation::Status::Running));
    assert_eq!(op.operation_type.as_deref(), Some("insert"));
    let target = format!("https://www.googleapis.com/compute/v1/projects/{P}/global/networks/vpc");
    assert_eq!(op.target_link.as_deref(), Some(target.as_str()));
    let name = op.name.clone().expect("op name");

    // Not there until the operation is done.
    let e = nets
        .get()
        .set_project(P)
        .set_network("vpc")
        .send()
        .await
        .expect_err("not yet");
    assert_eq!(code(&e), (Some(404), Code::NotFound));
    // A second insert while the first runs is a duplicate.
    let e = nets
        .insert()
        .set_project(P)
        .set_body(Network::new().set_name("vpc"))
        .send()
        .await
        .expect_err("duplicate");
    assert_eq!(code(&e), (Some(409), Code::AlreadyExists));
    assert_eq!(reasons(&e), ["alreadyExists"]);

    let get_op = || ops.get().set_project(P).set_operation(&name).send();
    assert_eq!(
        get_op().await.unwrap().status,
        Some(operation::Status::Running)
    );
    let done = get_op().await.unwrap();
    assert_eq!(done.status, Some(operation::Status::Done));
    assert_eq!(done.progress, Some(100));
    assert!(done.error.is_none());

    let n = nets
        .get()
        .set_project(P)
        .set_network("vpc")
        .send()
        .await
        .expect("get");
    assert_eq!(n.self_link.as_deref(), Some(target.as_str()));
    assert_eq!(n.auto_create_subnetworks, Some(false));
    assert!(n.id.is_some() && n.creation_timestamp.is_some());
    assert_eq!(n.kind.as_deref(), Some("compute#network"));

    // The project number names the same project.
    let by_number = nets
        .get()
        .set_project(project_number(P))
        .set_network("vpc")
        .send()
        .await
        .expect("get by number");
    assert_eq!(by_number.id, n.id);
    let list = nets
        .list()
        .set_project(P)
        .set_filter("name = \"vpc\"")
        .send()
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
}

#[tokio::test]
async fn subnetwork_patch_checks_the_fingerprint_and_a_used_network_stays() {
    let d = double(open());
    let nets = client!(Networks, d);
    let subs = client!(Subnetworks, d);
    let rops = client!(RegionOperations, d);
    let op = nets
        .insert()
        .set_project(P)
        .set_body(
            Network::new()
                .set_name("vpc")
                .set_auto_create_subnetworks(false),
        )
        .poller()
        .until_done()
        .await
        .expect("network");
    assert_eq!(op.status, Some(operation::Status::Done));
    let op = subs
        .insert()
        .set_project(P)
        .set_region("us-central1")
        .set_body(
            Subnetwork::new()
                .set_name("nodes")
                .set_network(format!("projects/{P}/global/networks/vpc"))
                .set_ip_cidr_range("10.0.0.0/20")
                .set_secondary_ip_ranges([SubnetworkSecondaryRange::new()
                    .set_range_name("pods")
                    .set_ip_cidr_range("10.4.0.0/14")]),
        )
        .send()
        .await
        .expect("subnet");
    let op_name = op.name.expect("name");
    let done = rops
        .get()
        .set_project(P)
        .set_region("us-central1")
        .set_operation(&op_name)
        .send()
        .await
        .expect("region op");
    assert_eq!(done.status, Some(operation::Status::Done));
    // A regional operation is not a global one.
    let e = client!(GlobalOperations, d)
        .get()
        .set_project(P)
        .set_operation(&op_name)
        .send()
        .await
        .expect_err("wrong scope");
    assert_eq!(code(&e).1, Code::NotFound);

    let get = || {
        subs.get()
            .set_project(P)
            .set_region("us-central1")
            .set_subnetwork("nodes")
            .send()
    };
    let s1 = get().await.expect("get");
    assert_eq!(
        s1.network.as_deref(),
        Some("https://www.googleapis.com/compute/v1/projects/proj-a/global/networks/vpc")
    );
    assert_eq!(s1.secondary_ip_ranges.len(), 1);
    assert_eq!(s1.private_ip_google_access, Some(false));
    let fp1 = s1.fingerprint.clone().expect("fingerprint");

    subs.patch()
        .set_project(P)
        .set_region("us-central1")
        .set_subnetwork("nodes")
        .set_body(
            Subnetwork::new()
                .set_fingerprint(fp1.clone())
                .set_private_ip_google_access(true),
        )
        .poller()
        .until_done()
        .await
        .expect("patch");
    let s2 = get().await.expect("get");
    assert_eq!(s2.private_ip_google_access, Some(true));
    assert_ne!(s2.fingerprint, Some(fp1.clone()));

    let e = subs
        .patch()
        .set_project(P)
        .set_region("us-central1")
        .set_subnetwork("nodes")
        .set_body(
            Subnetwork::new()
                .set_fingerprint(fp1)
                .set_private_ip_google_access(false),
        )
        .send()
        .await
        .expect_err("stale fingerprint");
    assert_eq!(code(&e), (Some(412), Code::FailedPrecondition));
    assert_eq!(reasons(&e), ["conditionNotMet"]);

    subs.set_private_ip_google_access()
        .set_project(P)
        .set_region("us-central1")
        .set_subnetwork("nodes")
        .set_body(
            SubnetworksSetPrivateIpGoogleAccessRequest::new().set_private_ip_google_access(false),
        )
        .poller()
        .until_done()
        .await
        .expect("setPrivateIpGoogleAccess");
    assert_eq!(get().await.unwrap().private_ip_google_access, Some(false));

    let e = nets
        .delete()
        .set_project(P)
        .set_network("vpc")
        .send()
        .await
        .expect_err("in use");
    assert_eq!(code(&e), (Some(400), Code::InvalidArgument));
    assert_eq!(reasons(&e), ["resourceInUseByAnotherResource"]);

    subs.delete()
        .set_project(P)
        .set_region("us-central1")
        .set_subnetwork("nodes")
        .poller()
        .until_done()
        .await
        .expect("delete subnet");
    nets.delete()
        .set_project(P)
        .set_network("vpc")
        .poller()
        .until_done()
        .await
        .expect("delete network");
    let e = get().await.expect_err("gone");
    assert_eq!(code(&e), (Some(404), Code::NotFound));
}

/// Waits for a GKE operation of location `us-central1` in project `P`.
async fn gke_done(
    gke: &google_cloud_container_v1::client::ClusterManager,
    op: google_cloud_container_v1::model::Operation,
) {
    use google_cloud_container_v1::model::operation::Status;
    for _ in 0..10 {
        let got = gke
            .get_operation()
            .set_name(format!(
                "projects/{P}/locations/us-central1/operations/{}",
                op.name
            ))
            .send()
            .await
            .expect("poll");
        if got.status == Status::Done {
            assert!(got.error.is_none(), "{:?}", got.error);
            return;
        }
    }
    panic!("operation {} never finished", op.name);
}

/// A VPC-native cluster on subnetwork `nodes` using ranges `pods`/`services` + `suffix`.
fn cluster_on_nodes(name: &str, suffix: &str) -> google_cloud_container_v1::model::Cluster {
    use google_cloud_container_v1::model::{Cluster, IPAllocationPolicy, NodePool};
    Cluster::new()
        .set_name(name)
        .set_network(format!("projects/{P}/global/networks/vpc"))
        .set_subnetwork(format!(
            "https://www.googleapis.com/compute/v1/projects/{P}/regions/us-central1/subnetworks/nodes"
        ))
        .set_ip_allocation_policy(
            IPAllocationPolicy::new()
                .set_use_ip_aliases(true)
                .set_cluster_secondary_range_name(format!("pods{suffix}"))
                .set_services_secondary_range_name(format!("services{suffix}")),
        )
        .set_node_pools([NodePool::new().set_name("default-pool").set_initial_node_count(1)])
}

/// What adding and removing a data plane does to the shared subnetwork: its secondary
/// ranges are patched in place (fingerprint checked, the list replaced), a cluster needs
/// its ranges to exist, and a range stays while a cluster uses it.
#[tokio::test]
async fn subnetwork_ranges_are_patched_in_place_and_kept_while_a_cluster_uses_them() {
    use google_cloud_container_v1::client::ClusterManager;
    let d = double(Knobs {
        gke_polls: 2,
        ..open()
    });
    let nets = client!(Networks, d);
    let subs = client!(Subnetworks, d);
    let gke = client!(ClusterManager, d);
    nets.insert()
        .set_project(P)
        .set_body(
            Network::new()
                .set_name("vpc")
                .set_auto_create_subnetworks(false),
        )
        .poller()
        .until_done()
        .await
        .expect("network");
    let range = |name: &str, cidr: &str| {
        SubnetworkSecondaryRange::new()
            .set_range_name(name)
            .set_ip_cidr_range(cidr)
    };
    let base = [
        range("pods", "10.4.0.0/14"),
        range("services", "10.8.0.0/20"),
    ];
    let plane = [
        range("pods-gpu", "10.64.0.0/14"),
        range("services-gpu", "10.21.0.0/20"),
    ];
    subs.insert()
        .set_project(P)
        .set_region("us-central1")
        .set_body(
            Subnetwork::new()
                .set_name("nodes")
                .set_network(format!("projects/{P}/global/networks/vpc"))
                .set_ip_cidr_range("10.0.0.0/20")
                .set_secondary_ip_ranges(base.clone()),
        )
        .poller()
        .until_done()
        .await
        .expect("subnet");
    let get = || {
        subs.get()
            .set_project(P)
            .set_region("us-central1")
            .set_subnetwork("nodes")
            .send()
    };
    let patch = |fingerprint, ranges: Vec<SubnetworkSecondaryRange>| {
        let mut body = Subnetwork::new();
        body.fingerprint = fingerprint;
        body.secondary_ip_ranges = ranges;
        subs.patch()
            .set_project(P)
            .set_region("us-central1")
            .set_subnetwork("nodes")
            .set_body(body)
    };
    let names = |s: &Subnetwork| -> Vec<String> {
        s.secondary_ip_ranges
            .iter()
            .map(|r| r.range_name.clone().unwrap_or_default())
            .collect()
    };
    let parent = format!("projects/{P}/locations/us-central1");
    let c1 = gke
        .create_cluster()
        .set_parent(&parent)
        .set_cluster(cluster_on_nodes("demo", ""))
        .send()
        .await
        .expect("control plane cluster");

    // A plane's cluster before its ranges exist: GKE's 400.
    let e = gke
        .create_cluster()
        .set_parent(&parent)
        .set_cluster(cluster_on_nodes("demo-gpu", "-gpu"))
        .send()
        .await
        .expect_err("no range yet");
    assert_eq!(code(&e), (Some(400), Code::InvalidArgument));
    let msg = e.status().expect("status").message.clone();
    assert!(
        msg.contains("Pod secondary range \"pods-gpu\" not found"),
        "{msg}"
    );

    // Adding ranges: a patch with the current fingerprint replaces the list in place.
    let s1 = get().await.expect("get");
    let fp1 = s1.fingerprint.clone();
    let self_link = s1.self_link.clone();
    let all: Vec<_> = base.iter().chain(&plane).cloned().collect();
    patch(fp1.clone(), all.clone())
        .poller()
        .until_done()
        .await
        .expect("add ranges");
    let s2 = get().await.expect("get");
    assert_eq!(names(&s2), ["pods", "services", "pods-gpu", "services-gpu"]);
    assert_eq!(
        s2.self_link, self_link,
        "the same subnetwork, not a new one"
    );
    assert_eq!(s2.id, s1.id);
    assert_ne!(s2.fingerprint, fp1);
    // The old fingerprint is stale now; none at all is refused too.
    let e = patch(fp1, all.clone()).send().await.expect_err("stale");
    assert_eq!(code(&e), (Some(412), Code::FailedPrecondition));
    let e = patch(None, all.clone())
        .send()
        .await
        .expect_err("no fingerprint");
    assert_eq!(code(&e), (Some(400), Code::InvalidArgument));

    // Two clusters, their operations and node pools side by side in one location.
    let c2 = gke
        .create_cluster()
        .set_parent(&parent)
        .set_cluster(cluster_on_nodes("demo-gpu", "-gpu"))
        .send()
        .await
        .expect("plane cluster while the other is still provisioning");
    gke_done(&gke, c1).await;
    gke_done(&gke, c2).await;
    let listed = gke
        .list_clusters()
        .set_parent(&parent)
        .send()
        .await
        .expect("list");
    let mut got: Vec<(String, String, String)> = listed
        .clusters
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.endpoint.clone(),
                c.master_auth
                    .as_ref()
                    .map(|m| m.cluster_ca_certificate.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["demo", "demo-gpu"]
    );
    assert_ne!(got[0].1, got[1].1, "endpoints differ");
    assert_ne!(got[0].2, got[1].2, "CAs differ");
    for c in ["demo", "demo-gpu"] {
        let op = gke
            .create_node_pool()
            .set_parent(format!("{parent}/clusters/{c}"))
            .set_node_pool(
                google_cloud_container_v1::model::NodePool::new()
                    .set_name(format!("{c}-nodes"))
                    .set_initial_node_count(1),
            )
            .send()
            .await
            .expect("pool");
        gke_done(&gke, op).await;
    }

    // A used range can be neither removed nor changed, nor its subnetwork deleted.
    let fp = get().await.expect("get").fingerprint;
    let e = patch(fp.clone(), base.to_vec())
        .send()
        .await
        .expect_err("remove a used range");
    assert_eq!(code(&e), (Some(400), Code::InvalidArgument));
    assert_eq!(reasons(&e), ["resourceInUseByAnotherResource"]);
    let moved: Vec<_> = base
        .iter()
        .cloned()
        .chain([range("pods-gpu", "10.68.0.0/14"), plane[1].clone()])
        .collect();
    let e = patch(fp, moved)
        .send()
        .await
        .expect_err("change a used range");
    assert_eq!(reasons(&e), ["resourceInUseByAnotherResource"]);
    let e = subs
        .delete()
        .set_project(P)
        .set_region("us-central1")
        .set_subnetwork("nodes")
        .send()
        .await
        .expect_err("subnetwork in use");
    assert_eq!(reasons(&e), ["resourceInUseByAnotherResource"]);

    // Removing the plane: its cluster (and only it) goes, then its ranges may.
    let op = gke
        .delete_cluster()
        .set_name(format!("{parent}/clusters/demo-gpu"))
        .send()
        .await
        .expect("delete plane");
    gke_done(&gke, op).await;
    let left = gke
        .list_clusters()
        .set_parent(&parent)
        .send()
        .await
        .expect("list");
    assert_eq!(left.clusters.len(), 1);
    let pools: Vec<&str> = left.clusters[0]
        .node_pools
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(pools, ["default-pool", "demo-nodes"]);
    let fp = get().await.expect("get").fingerprint;
    patch(fp, base.to_vec())
        .poller()
        .until_done()
        .await
        .expect("remove the unused ranges");
    assert_eq!(names(&get().await.expect("get")), ["pods", "services"]);

    // Compute's cap on secondary ranges per subnetwork.
    let many: Vec<_> = (0..31)
        .map(|i| range(&format!("r{i}"), &format!("10.{}.0.0/16", 100 + i)))
        .collect();
    let fp = get().await.expect("get").fingerprint;
    let e = patch(fp, many).send().await.expect_err("31 ranges");
    let msg = e.status().expect("status").message.clone();
    assert!(
        msg.contains("maximum supported number of secondary ranges"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_disabled_api_answers_service_disabled_until_enabled() {
    use google_cloud_api_serviceusage_v1::client::ServiceUsage;
    use google_cloud_api_serviceusage_v1::model::State;

    let d = double(Knobs::default());
    let nets = client!(Networks, d);
    let usage = client!(ServiceUsage, d);
    let e = nets
        .list()
        .set_project(P)
        .send()
        .await
        .expect_err("disabled");
    assert_eq!(code(&e), (Some(403), Code::PermissionDenied));
    assert_eq!(reasons(&e), ["SERVICE_DISABLED"]);

    let name = format!("projects/{P}/services/compute.googleapis.com");
    let svc = usage
        .get_service()
        .set_name(&name)
        .send()
        .await
        .expect("get");
    assert_eq!(svc.state, State::Disabled);
    let number = project_number(P);
    assert_eq!(
        svc.name,
        format!("projects/{number}/services/compute.googleapis.com")
    );

    let enabled = usage
        .enable_service()
        .set_name(&name)
        .poller()
        .until_done()
        .await
        .expect("enable");
    assert_eq!(enabled.service.expect("service").state, State::Enabled);
    nets.list()
        .set_project(P)
        .send()
        .await
        .expect("enabled now");
    let op = usage
        .enable_service()
        .set_name(&name)
        .send()
        .await
        .expect("enable again");
    assert!(op.done, "enabling an enabled API is done at once");
    assert_eq!(op.name, "operations/noop.DONE_OPERATION");

    // Enabling again is a no-op operation that is already done.
    let again = usage
        .batch_enable_services()
        .set_parent(format!("projects/{number}"))
        .set_service_ids(["compute.googleapis.com", "iam.googleapis.com"])
        .poller()
        .until_done()
        .await
        .expect("batch enable");
    assert_eq!(again.services.len(), 2);
    let got = usage
        .batch_get_services()
        .set_parent(format!("projects/{P}"))
        .set_names([
            format!("projects/{P}/services/iam.googleapis.com"),
            format!("projects/{P}/services/container.googleapis.com"),
        ])
        .send()
        .await
        .expect("batch get");
    let states: Vec<State> = got.services.iter().map(|s| s.state.clone()).collect();
    assert_eq!(states, [State::Enabled, State::Disabled]);
    let listed = usage
        .list_services()
        .set_parent(format!("projects/{P}"))
        .set_filter("state:ENABLED")
        .send()
        .await
        .expect("list");
    let names: Vec<String> = listed
        .services
        .iter()
        .filter_map(|s| s.config.as_ref().map(|c| c.name.clone()))
        .collect();
    assert!(
        names.contains(&"compute.googleapis.com".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"serviceusage.googleapis.com".to_string()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"container.googleapis.com".to_string()),
        "{names:?}"
    );
}

#[tokio::test]
async fn a_new_service_account_is_invisible_for_a_few_reads() {
    use google_cloud_iam_admin_v1::client::Iam;
    use google_cloud_iam_admin_v1::model::ServiceAccount;
    use google_cloud_iam_v1::model::{Binding, Policy};
    use google_cloud_resourcemanager_v3::client::Projects;

    let d = double(Knobs {
        sa_invisible_reads: 2,
        ..open()
    });
    let iam = client!(Iam, d);
    let projects = client!(Projects, d);
    let sa = iam
        .create_service_account()
        .set_name(format!("projects/{P}"))
        .set_account_id("flyte-worker")
        .set_service_account(ServiceAccount::new().set_display_name("Flyte worker"))
        .send()
        .await
        .expect("create");
    let email = format!("flyte-worker@{P}.iam.gserviceaccount.com");
    assert_eq!(sa.email, email);
    assert_eq!(sa.unique_id.len(), 21);
    assert_eq!(sa.name, format!("projects/{P}/serviceAccounts/{email}"));
    let get = || {
        iam.get_service_account()
            .set_name(format!("projects/-/serviceAccounts/{email}"))
            .send()
    };
    for _ in 0..2 {
        let e = get().await.expect_err("invisible");
        assert_eq!(code(&e), (Some(404), Code::NotFound));
    }
    let got = get().await.expect("visible");
    assert_eq!(got.display_name, "Flyte worker");
    let patched = iam
        .patch_service_account()
        .set_service_account(
            ServiceAccount::new()
                .set_name(&sa.name)
                .set_display_name("Flyte worker 2")
                .set_description("runs tasks"),
        )
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["displayName"]))
        .send()
        .await
        .expect("patch");
    assert_eq!(patched.display_name, "Flyte worker 2");
    assert_eq!(patched.description, "", "not in the update mask");
    let by_id = iam
        .get_service_account()
        .set_name(format!("projects/{P}/serviceAccounts/{}", sa.unique_id))
        .send()
        .await
        .expect("by unique id");
    assert_eq!(by_id.email, email);

    let e = iam
        .create_service_account()
        .set_name(format!("projects/{P}"))
        .set_account_id("flyte-worker")
        .send()
        .await
        .expect_err("exists");
    assert_eq!(code(&e), (Some(409), Code::AlreadyExists));

    // As a policy member, an invisible account "does not exist".
    iam.create_service_account()
        .set_name(format!("projects/{P}"))
        .set_account_id("flyte-admin")
        .send()
        .await
        .expect("create second");
    let grant = Policy::new().set_bindings([Binding::new()
        .set_role("roles/storage.admin")
        .set_members([format!(
            "serviceAccount:flyte-admin@{P}.iam.gserviceaccount.com"
        )])]);
    let set = || {
        projects
            .set_iam_policy()
            .set_resource(format!("projects/{P}"))
            .set_policy(grant.clone())
            .send()
    };
    let e = set().await.expect_err("invisible member");
    assert_eq!(code(&e), (Some(400), Code::InvalidArgument));
    assert!(e.to_string().contains("does not exist"), "{e}");
    set().await.expect_err("still invisible");
    let p = set().await.expect("visible member");
    assert!(p.bindings.iter().any(|b| b.role == "roles/storage.admin"));

    let proj = projects
        .get_project()
        .set_name(format!("projects/{P}"))
        .send()
        .await
        .expect("project");
    assert_eq!(proj.name, format!("projects/{}", project_number(P)));
    assert_eq!(proj.project_id, P);
}

#[tokio::test]
async fn a_concurrent_policy_writer_wins_and_a_reread_keeps_its_binding() {
    use google_cloud_iam_admin_v1::client::Iam;
    use google_cloud_iam_v1::model::{Binding, Policy};

    let d = double(Knobs {
        iam_conflicts: 1,
        ..open()
    });
    let iam = client!(Iam, d);
    iam.create_service_account()
        .set_name(format!("projects/{P}"))
        .set_account_id("flyte-worker")
        .send()
        .await
        .expect("create");
    let resource = format!("projects/{P}/serviceAccounts/flyte-worker@{P}.iam.gserviceaccount.com");
    let read = || iam.get_iam_policy().set_resource(&resource).send();
    let wi = Binding::new()
        .set_role("roles/iam.workloadIdentityUser")
        .set_members([format!("serviceAccount:{P}.svc.id.goog[flyte/default]")]);

    let first = read().await.expect("read");
    let with = |p: Policy| {
        let mut bindings = p.bindings.clone();
        bindings.push(wi.clone());
        p.set_bindings(bindings)
    };
    let e = iam
        .set_iam_policy()
        .set_resource(&resource)
        .set_policy(with(first.clone()))
        .send()
        .await
        .expect_err("concurrent writer");
    assert_eq!(code(&e), (Some(409), Code::Aborted));

    // The stale etag keeps failing; a re-read sees the other writer's binding.
    let e = iam
        .set_iam_policy()
        .set_resource(&resource)
        .set_policy(with(first))
        .send()
        .await
        .expect_err("stale etag");
    assert_eq!(code(&e).1, Code::Aborted);
    let fresh = read().await.expect("re-read");
    let written = iam
        .set_iam_policy()
        .set_resource(&resource)
        .set_policy(with(fresh))
        .send()
        .await
        .expect("write");
    let after = read().await.expect("final read");
    assert_eq!(after.etag, written.etag);
    let roles: BTreeMap<String, Vec<String>> = after
        .bindings
        .iter()
        .map(|b| (b.role.clone(), b.members.clone()))
        .collect();
    assert_eq!(roles["roles/viewer"], [FOREIGN_MEMBER]);
    assert_eq!(
        roles["roles/iam.workloadIdentityUser"],
        [format!("serviceAccount:{P}.svc.id.goog[flyte/default]")]
    );
}

#[tokio::test]
async fn a_deleted_role_blocks_its_id_until_undeleted() {
    use google_cloud_iam_admin_v1::client::Iam;
    use google_cloud_iam_admin_v1::model::Role;

    let d = double(open());
    let iam = client!(Iam, d);
    let create = || {
        iam.create_role()
            .set_parent(format!("projects/{P}"))
            .set_role_id("flyteWorker")
            .set_role(
                Role::new()
                    .set_title("Flyte worker")
                    .set_included_permissions(["storage.objects.get", "storage.objects.create"]),
            )
            .send()
    };
    let role = create().await.expect("create");
    let name = format!("projects/{P}/roles/flyteWorker");
    assert_eq!(role.name, name);
    assert_eq!(role.included_permissions.len(), 2);

    let deleted = iam
        .delete_role()
        .set_name(&name)
        .send()
        .await
        .expect("delete");
    assert!(deleted.deleted);
    assert!(iam.get_role().set_name(&name).send().await.unwrap().deleted);
    let e = create().await.expect_err("id still taken");
    assert_eq!(code(&e), (Some(409), Code::AlreadyExists));
    let listed = iam
        .list_roles()
        .set_parent(format!("projects/{P}"))
        .send()
        .await
        .expect("list");
    assert!(listed.roles.is_empty(), "{listed:?}");

    let back = iam
        .undelete_role()
        .set_name(&name)
        .send()
        .await
        .expect("undelete");
    assert!(!back.deleted);
    let updated = iam
        .update_role()
        .set_name(&name)
        .set_role(Role::new().set_title("Flyte worker v2"))
        .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["title"]))
        .send()
        .await
        .expect("update");
    assert_eq!(updated.title, "Flyte worker v2");
    assert_eq!(updated.included_permissions.len(), 2);
}

// ---- Service Networking and the control routes have no Rust client: raw HTTP ----

/// One HTTP/1.1 request over a fresh connection; returns the status and JSON body.
async fn http(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8(out).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers");
    let status = head[9..12].parse().expect("status");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls a google.longrunning operation until it is done.
async fn wait(base: &str, op: Value) -> Value {
    let mut op = op;
    for _ in 0..10 {
        if op["done"] == json!(true) {
            return op;
        }
        let name = op["name"].as_str().expect("op name").to_string();
        op = http(base, "GET", &format!("/v1/{name}"), None).await.1;
    }
    panic!("operation never finished: {op}");
}

#[tokio::test]
async fn service_networking_connects_a_reserved_range() {
    let d = double(Knobs::default());
    let base = d.url().to_string();
    let conns = "/v1/services/servicenetworking.googleapis.com/connections";
    let number = project_number(P);
    let network = format!("projects/{number}/global/networks/vpc");
    {
        let mut w = d.shared().lock();
        w.services(P).insert("compute.googleapis.com".into());
    }
    let nets = client!(Networks, d);
    nets.insert()
        .set_project(P)
        .set_body(
            Network::new()
                .set_name("vpc")
                .set_auto_create_subnetworks(false),
        )
        .poller()
        .until_done()
        .await
        .expect("network");
    client!(GlobalAddresses, d)
        .insert()
        .set_project(P)
        .set_body(
            Address::new()
                .set_name("psa")
                .set_purpose(address::Purpose::VpcPeering)
                .set_address_type(address::AddressType::Internal)
                .set_prefix_length(16)
                .set_network(format!("projects/{P}/global/networks/vpc")),
        )
        .poller()
        .until_done()
        .await
        .expect("address");
    let addr = client!(GlobalAddresses, d)
        .get()
        .set_project(P)
        .set_address("psa")
        .send()
        .await
        .expect("get address");
    assert_eq!(addr.address.as_deref(), Some("10.100.0.0"));

    let req = json!({"network": network, "reservedPeeringRanges": ["psa"]});
    let (status, e) = http(&base, "POST", conns, Some(req.clone())).await;
    assert_eq!(status, 403, "{e}");
    assert_eq!(e["error"]["details"][0]["reason"], "SERVICE_DISABLED");
    d.shared()
        .lock()
        .services(P)
        .insert("servicenetworking.googleapis.com".into());

    let (status, e) = http(
        &base,
        "POST",
        conns,
        Some(json!({"network": network, "reservedPeeringRanges": ["nope"]})),
    )
    .await;
    assert_eq!(
        (status, e["error"]["status"].as_str()),
        (400, Some("INVALID_ARGUMENT"))
    );

    let (status, op) = http(&base, "POST", conns, Some(req)).await;
    assert_eq!(status, 200, "{op}");
    assert!(
        op["name"].as_str().unwrap().starts_with("operations/pssn."),
        "{op}"
    );
    let done = wait(&base, op).await;
    assert!(done.get("error").is_none(), "{done}");
    let (_, list) = http(&base, "GET", &format!("{conns}?network={network}"), None).await;
    assert_eq!(
        list["connections"],
        json!([{
            "network": network,
            "reservedPeeringRanges": ["psa"],
            "peering": "servicenetworking-googleapis-com",
            "service": "services/servicenetworking.googleapis.com",
        }])
    );
    let n = nets
        .get()
        .set_project(P)
        .set_network("vpc")
        .send()
        .await
        .unwrap();
    assert_eq!(n.peerings.len(), 1);
    let e = client!(GlobalAddresses, d)
        .delete()
        .set_project(P)
        .set_address("psa")
        .send()
        .await
        .expect_err("range in use");
    assert_eq!(reasons(&e), ["resourceInUseByAnotherResource"]);

    let (status, op) = http(
        &base,
        "POST",
        &format!("{conns}/servicenetworking-googleapis-com:deleteConnection"),
        Some(json!({"consumerNetwork": network})),
    )
    .await;
    assert_eq!(status, 200, "{op}");
    wait(&base, op).await;
    let (_, list) = http(&base, "GET", &format!("{conns}?network={network}"), None).await;
    assert_eq!(list, json!({}));
}

#[tokio::test]
async fn control_routes_set_knobs_count_calls_and_throttle() {
    let d = GcpDouble::start();
    let base = d.url().to_string();
    let (status, knobs) = http(&base, "GET", "/_double/knobs", None).await;
    assert_eq!((status, knobs["op_polls"].as_u64()), (200, Some(1)));
    let (status, knobs) = http(
        &base,
        "POST",
        "/_double/knobs",
        Some(json!({"throttle_every": 2, "enforce_services": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(knobs["op_polls"], 1, "missing fields default");

    let path = format!("/v3/projects/{P}");
    assert_eq!(http(&base, "GET", &path, None).await.0, 200);
    let (status, e) = http(&base, "GET", &path, None).await;
    assert_eq!(
        (status, e["error"]["status"].as_str()),
        (429, Some("RESOURCE_EXHAUSTED"))
    );
    let (_, calls) = http(&base, "GET", "/_double/calls", None).await;
    assert_eq!(calls["cloudresourcemanager.googleapis.com"], 2);
    assert_eq!(calls["total"], 2);

    http(&base, "POST", "/_double/reset", None).await;
    let (_, calls) = http(&base, "GET", "/_double/calls", None).await;
    assert_eq!(calls, json!({}));
    let (_, objects) = http(&base, "GET", "/_double/objects", None).await;
    assert_eq!(objects, json!({}));
}

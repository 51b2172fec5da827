//! The real Azure provider through the binary against the Azure test double
//! (`tests/azure-double`, in process, one per test so knobs never leak) and Azurite (the
//! blob data plane): every resource (group, network, PostgreSQL flexible server, storage,
//! AKS, identities, role assignments) applied, re-planned as a no-op, drift corrected and
//! destroyed to nothing; throttling, a `kill -9` mid-apply, unregistered providers, a group,
//! network and cluster the user already has, deletion protection as a lock, non-empty
//! containers and `force_destroy`, per-domain task identities, and bad configs refused
//! before any mutating call.

use std::time::Duration;

use flyteinfra_azure_double::AzureDouble;
use serde_json::{Value, json};

use crate::util::{TestContext, mode, parse_json, wait_until};

pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "a{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000a1";

/// A deployment `name` in group `<name>-rg`; `extra_azure` goes inside `azure:`,
/// `extra` at the top level.
fn config(name: &str, extra_azure: &str, extra: &str) -> String {
    format!(
        "name: {name}\ncloud: azure\nazure:\n  subscription_id: {SUBSCRIPTION}\n  location: eastus\n  \
         resource_group: {name}-rg\n{extra_azure}{extra}"
    )
}

pub(crate) fn without_protection(name: &str) -> String {
    config(name, "", "database:\n  deletion_protection: false\n")
}

/// The resources in the double carrying a flyteinfra token, or living under a resource
/// group of this deployment: what a destroy must leave none of.
pub(crate) fn ours(double: &AzureDouble, name: &str) -> Vec<String> {
    let w = double.shared().lock();
    w.resource_ids()
        .into_iter()
        .filter(|id| id.to_ascii_lowercase().contains(&name.to_ascii_lowercase()))
        .collect()
}

/// Mutating calls (`PUT`, `PATCH`, `POST`, `DELETE`) the double has served.
fn mutating_calls(double: &AzureDouble) -> u64 {
    double
        .shared()
        .lock()
        .calls_by_op()
        .iter()
        .filter(|(op, _)| !op.starts_with("GET") && !op.starts_with("HEAD"))
        .map(|(_, n)| n)
        .sum()
}

fn servers(double: &AzureDouble) -> Vec<String> {
    double
        .shared()
        .lock()
        .resource_ids()
        .into_iter()
        .filter(|id| {
            let l = id.to_ascii_lowercase();
            l.contains("/flexibleservers/")
                && !l.contains("/databases/")
                && !l.contains("/providers/microsoft.authorization/")
                && !l.contains("/configurations/")
        })
        .collect()
}

fn attr(ctx: &TestContext, address: &str, key: &str) -> Value {
    ctx.state()["resources"][address]["attributes"][key].clone()
}

#[test]
fn azure_data_tier_apply_no_op_drift_and_clean_destroy() {
    let double = AzureDouble::start();
    let name = unique();
    let ctx = TestContext::azure(&without_protection(&name), double.url());

    let plan = ctx.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    for a in [
        "azure_resource_providers.main",
        "azure_resource_group.main",
        "azure_virtual_network.main",
        "azure_subnet.nodes",
        "azure_subnet.db",
        "azure_network_security_group.db",
        "azure_private_dns_zone.db",
        "azure_private_dns_zone_link.db",
        "azure_postgresql_flexible_server.main",
        "azure_postgresql_flexible_database.flyte",
        "azure_management_lock.db",
        "azure_storage_account.main",
        "azure_storage_container.metadata",
        "azure_kubernetes_cluster.main",
        "azure_kubernetes_node_pool.flyte",
        "azure_user_assigned_identity.backend",
        "azure_user_assigned_identity.tasks",
        "azure_role_assignment.cluster_network",
        "azure_role_assignment.backend_blob",
    ] {
        assert!(plan.stdout.contains(a), "{a} not planned:\n{}", plan.stdout);
    }
    assert_eq!(mutating_calls(&double), 0, "plan changed something");

    let apply = ctx.run(&["apply", "--auto-approve"]);
    apply.expect_code(0);
    assert!(apply.stderr.contains("Helm values:"), "{}", apply.stderr);
    assert!(
        apply.stderr.contains("Azure API calls:"),
        "{}",
        apply.stderr
    );

    // Outputs.
    let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
    let o = |k: &str| out[k]["value"].clone();
    let server_name = o("db_server_name").as_str().unwrap().to_string();
    assert!(
        server_name.starts_with(&format!("{name}-db-")),
        "{server_name}"
    );
    assert_eq!(
        o("db_host"),
        format!("{server_name}.postgres.database.azure.com").as_str()
    );
    assert_eq!(o("resource_group"), format!("{name}-rg").as_str());
    assert_eq!(o("db_password"), "(sensitive)");

    // The server: private access only on the delegated subnet, TLS required, the
    // password flyteinfra generated (and only in state, never shown).
    let server_id = attr(&ctx, "azure_postgresql_flexible_server.main", "id");
    let server_id = server_id.as_str().unwrap();
    let server = double.shared().lock().resource(server_id).unwrap();
    assert_eq!(
        server["properties"]["network"]["publicNetworkAccess"],
        "Disabled"
    );
    let subnet_id = attr(&ctx, "azure_subnet.db", "id");
    assert!(
        server["properties"]["network"]["delegatedSubnetResourceId"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(subnet_id.as_str().unwrap())
    );
    assert!(server.get("administratorLoginPassword").is_none());
    // The server parameter as ARM answers it (the default is stored nowhere).
    let arm = flyteinfra_provider_azure::ArmClient::new(double.url(), SUBSCRIPTION, None);
    let tls = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(arm.get(
            &format!("{server_id}/configurations/require_secure_transport"),
            "2024-08-01",
        ))
        .unwrap()
        .unwrap();
    assert_eq!(tls["properties"]["value"], "on");
    let stored = ctx.state()["resources"]["random_password.db"]["attributes"]["result"].clone();
    let password = stored["$sensitive"]
        .as_str()
        .expect("the password is in state");
    assert_eq!(
        double.shared().lock().admin_password(server_id),
        Some(password)
    );
    assert!(!apply.stdout.contains(password) && !apply.stderr.contains(password));
    // The security group admits PostgreSQL from the node subnet only.
    let nsg_id = attr(&ctx, "azure_network_security_group.db", "id");
    let nsg = double
        .shared()
        .lock()
        .resource(nsg_id.as_str().unwrap())
        .unwrap();
    let rules = nsg["properties"]["securityRules"].to_string();
    assert!(
        rules.contains("\"destinationPortRange\":\"5432\"")
            && rules.contains("\"sourceAddressPrefix\":\"10.30.0.0/20\""),
        "{rules}"
    );

    // Storage: Entra ID only, private, reachable from the node subnet only.
    let account_id = attr(&ctx, "azure_storage_account.main", "id");
    let account = double
        .shared()
        .lock()
        .resource(account_id.as_str().unwrap())
        .unwrap();
    let p = &account["properties"];
    assert_eq!(p["allowSharedKeyAccess"], false, "{account}");
    assert_eq!(p["allowBlobPublicAccess"], false);
    assert_eq!(p["supportsHttpsTrafficOnly"], true);
    assert_eq!(p["minimumTlsVersion"], "TLS1_2");
    assert_eq!(p["networkAcls"]["defaultAction"], "Deny");
    let nodes_id = attr(&ctx, "azure_subnet.nodes", "id");
    assert!(
        p["networkAcls"]["virtualNetworkRules"][0]["id"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(nodes_id.as_str().unwrap()),
        "{account}"
    );
    let account_name = o("storage_account").as_str().unwrap().to_string();
    assert!(
        account_name.len() <= 24 && account_name.chars().all(|c| c.is_ascii_alphanumeric()),
        "{account_name}"
    );
    for c in ["metadata", "data"] {
        let id =
            format!("{account_id}/blobServices/default/containers/{name}-{c}").replace('"', "");
        let got = double.shared().lock().resource(&id);
        assert_eq!(
            got.expect("the container exists")["properties"]["publicAccess"],
            "None"
        );
    }
    assert_eq!(o("metadata_container"), format!("{name}-metadata").as_str());

    // The cluster: Workload Identity on; the identities trust exactly Flyte's service
    // accounts at the cluster's issuer; each may use the blobs of this account only.
    let cluster_id = attr(&ctx, "azure_kubernetes_cluster.main", "id");
    let cluster = double
        .shared()
        .lock()
        .resource(cluster_id.as_str().unwrap())
        .unwrap();
    assert_eq!(
        cluster["properties"]["securityProfile"]["workloadIdentity"]["enabled"],
        true
    );
    let issuer = cluster["properties"]["oidcIssuerProfile"]["issuerURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(o("oidc_issuer_url"), issuer.as_str());
    let backend_id = attr(&ctx, "azure_user_assigned_identity.backend", "id");
    // One lock for the whole read (the double's lock is not reentrant).
    let subjects: Vec<(String, String)> = {
        let w = double.shared().lock();
        w.resource_ids()
            .into_iter()
            .filter(|id| {
                id.to_ascii_lowercase()
                    .contains("/federatedidentitycredentials/")
            })
            .map(|id| {
                let subject = w.resource(&id).unwrap()["properties"]["subject"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (id, subject)
            })
            .collect()
    };
    assert!(
        subjects.iter().any(|(id, s)| {
            id.to_ascii_lowercase()
                .starts_with(&backend_id.as_str().unwrap().to_ascii_lowercase())
                && s == "system:serviceaccount:flyte:flyte-backend"
        }),
        "{subjects:?}"
    );
    // The default flyte section: flytesnacks × development, staging, production.
    assert_eq!(subjects.len(), 4, "{subjects:?}");
    assert_eq!(
        o("backend_client_id"),
        attr(&ctx, "azure_user_assigned_identity.backend", "client_id")
    );

    // Helm values (the chart renders them: tests/it/helm.rs) and the Secret, 0600 both; the
    // password only in the Secret; the way to the cluster is the Azure CLI's.
    let values = std::fs::read_to_string(ctx.dir().join("flyte-values-azure.yaml")).unwrap();
    let secret = std::fs::read_to_string(ctx.dir().join("flyte-db-secret-azure.yaml")).unwrap();
    for f in ["flyte-values-azure.yaml", "flyte-db-secret-azure.yaml"] {
        assert_eq!(mode(&ctx.dir().join(f)), 0o600, "{f}");
    }
    assert!(!values.contains(password) && secret.contains(password));
    for output in [
        "db_host",
        "storage_account",
        "backend_client_id",
        "task_client_id",
    ] {
        let v = o(output);
        assert!(
            values.contains(v.as_str().unwrap()),
            "{output} not in\n{values}"
        );
    }
    let steps = std::fs::read_to_string(ctx.dir().join("NEXT-STEPS-azure.md")).unwrap();
    assert!(
        steps.contains("flyteinfra kubeconfig --cloud azure --merge"),
        "{steps}"
    );

    // Cluster access: the credential AKS hands out (local accounts: a client key and a
    // token), under the cluster's name; never printed, written 0600.
    let token = "doubletoken";
    let printed = ctx.run(&["kubeconfig"]);
    assert_ne!(printed.code, Some(0));
    assert!(printed.stderr.contains("--out FILE"), "{}", printed.stderr);
    assert!(printed.stdout.is_empty() && !printed.stderr.contains(token));
    let written = ctx.run(&["kubeconfig", "--out", "aks.yaml"]);
    written.expect_code(0);
    assert!(!written.all().contains(token));
    let file = ctx.dir().join("aks.yaml");
    assert_eq!(mode(&file), 0o600);
    let kubeconfig: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let cluster_name = o("cluster_name");
    assert_eq!(kubeconfig["current-context"], cluster_name);
    assert_eq!(kubeconfig["clusters"][0]["name"], cluster_name);
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"],
        o("cluster_endpoint")
    );
    assert!(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"].is_string());
    assert!(kubeconfig["users"][0]["user"]["client-key-data"].is_string());
    let merged = ctx.run(&["kubeconfig", "--merge"]);
    merged.expect_code(0);
    let home_config = ctx.dir().join(".kube/config");
    assert_eq!(mode(&home_config), 0o600);
    assert!(
        std::fs::read_to_string(&home_config)
            .unwrap()
            .contains(token)
    );

    // A second plan is a no-op.
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Drift on the pool's size: the autoscaler bounds come back.
    let pool_id = attr(&ctx, "azure_kubernetes_node_pool.flyte", "id");
    double
        .shared()
        .lock()
        .resource_mut(pool_id.as_str().unwrap())
        .unwrap()["properties"]["maxCount"] = 9.into();
    let drift = ctx.run(&["plan", "--detailed-exitcode"]);
    drift.expect_code(2);
    assert!(drift.stdout.contains("max_count"), "{}", drift.stdout);
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Drift: backups shortened by hand show in the plan, and apply restores them.
    double.shared().lock().resource_mut(server_id).unwrap()["properties"]["backup"]["backupRetentionDays"] =
        3.into();
    let drift = ctx.run(&["plan", "--detailed-exitcode"]);
    drift.expect_code(2);
    assert!(
        drift.stdout.contains("backup_retention_days"),
        "{}",
        drift.stdout
    );
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let server = double.shared().lock().resource(server_id).unwrap();
    assert_eq!(server["properties"]["backup"]["backupRetentionDays"], 7);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Destroy leaves nothing of the deployment.
    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    assert_eq!(ours(&double, &name), Vec::<String>::new());
}

#[test]
fn azure_every_fourth_call_throttled_converges_in_one_run() {
    let double = AzureDouble::start();
    double.shared().lock().knobs.throttle_every = 4;
    let name = unique();
    let ctx = TestContext::azure(&without_protection(&name), double.url());
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    assert_eq!(servers(&double).len(), 1);
}

/// Resource ids in the double, of `kind` (a lower-case path segment such as
/// `/managedclusters/`), without their children.
pub(crate) fn of_kind(double: &AzureDouble, name: &str, kind: &str) -> Vec<String> {
    ours(double, name)
        .into_iter()
        .filter(|id| {
            let l = id.to_ascii_lowercase();
            let tail = &l[l.rfind(kind).map_or(l.len(), |i| i + kind.len())..];
            l.contains(kind) && !tail.contains('/')
        })
        .collect()
}

/// Starts `apply` and kills it (SIGKILL) as soon as `made` holds: the cloud has made
/// something the process has not heard of yet.
fn kill_apply_once(ctx: &TestContext, what: &str, made: impl Fn() -> bool) {
    let mut child = ctx.spawn(&["apply", "--auto-approve"], &[]);
    let seen = wait_until(Duration::from_secs(120), made);
    child.kill().unwrap();
    let killed = crate::util::finish(child);
    ctx.break_lease();
    assert!(seen, "{what} was never made:\n{}", killed.all());
    assert!(killed.signal.is_some(), "{}", killed.all());
}

#[test]
fn azure_kill_9_mid_apply_then_reapply_leaves_no_duplicate_and_no_orphan() {
    let double = AzureDouble::start();
    {
        let mut w = double.shared().lock();
        // Long operations take a while, and identity and role-assignment writes (answered
        // at once by ARM) answer late here: each kill lands after the cloud has made a
        // resource and before the process has heard of it.
        w.knobs.polls_to_finish = 40;
        for path in ["/userAssignedIdentities/", "/roleAssignments/"] {
            w.knobs.slow_answers.push(("PUT".into(), path.into(), 1500));
        }
    }
    let name = unique();
    let ctx = TestContext::azure(&without_protection(&name), double.url());
    kill_apply_once(&ctx, "a server and an identity", || {
        !servers(&double).is_empty()
            && !of_kind(&double, &name, "/userassignedidentities/").is_empty()
    });
    kill_apply_once(&ctx, "a cluster and a role assignment", || {
        !of_kind(&double, &name, "/managedclusters/").is_empty()
            && !of_kind(&double, &name, "/roleassignments/").is_empty()
    });

    double.shared().lock().knobs = Default::default();
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Exactly one of each, as in a run never interrupted: the default flyte section has
    // one backend and one task identity, each with blob access, and the cluster's
    // network role.
    for (kind, want) in [
        ("/flexibleservers/", 1),
        ("/managedclusters/", 1),
        ("/userassignedidentities/", 2),
        ("/federatedidentitycredentials/", 4),
        ("/roleassignments/", 3),
    ] {
        let got = of_kind(&double, &name, kind);
        assert_eq!(got.len(), want, "{kind}: {got:#?}");
    }

    // Every resource the double holds for this deployment is in state: no orphan.
    let state = ctx.state().to_string().to_ascii_lowercase();
    for id in ours(&double, &name) {
        let lower = id.to_ascii_lowercase();
        // Parts of a resource in state, not resources of their own: a server's parameters,
        // an account's blob service, a cluster's System pool.
        let child_of_state = lower.contains("/configurations/")
            || lower.ends_with("/blobservices/default")
            || lower.ends_with("/agentpools/system");
        assert!(
            child_of_state || state.contains(&lower),
            "`{id}` is in the cloud but not in state"
        );
    }
}

#[test]
fn azure_bad_configs_fail_located_before_any_mutating_call() {
    let double = AzureDouble::start();
    let name = unique();

    // A location the subscription does not have: one read of the locations, no change.
    let ctx = TestContext::azure(
        &config(&name, "", "").replace("location: eastus", "location: marsnorth"),
        double.url(),
    );
    let run = ctx.run(&["plan"]);
    run.expect_code_not(0);
    assert!(
        run.stderr.contains("flyteinfra.yaml:5:13") && run.stderr.contains("azure.location"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("eastus"), "{}", run.stderr);
    assert_eq!(mutating_calls(&double), 0);

    // 21 projects in one domain: the task identity would need 21 federated credentials.
    let projects: Vec<String> = (0..21).map(|i| format!("p{i}")).collect();
    let before = double.shared().lock().calls();
    let ctx = TestContext::azure(
        &config(
            &name,
            "",
            &format!(
                "flyte:\n  projects: [{}]\n  domains: [development]\n",
                projects.join(", ")
            ),
        ),
        double.url(),
    );
    let run = ctx.run(&["plan"]);
    run.expect_code_not(0);
    assert!(
        run.stderr.contains("flyteinfra.yaml:8:13") && run.stderr.contains("limit"),
        "{}",
        run.stderr
    );
    assert_eq!(double.shared().lock().calls(), before);

    // A storage size flexible server does not offer: refused offline, no call at all.
    let before = double.shared().lock().calls();
    let ctx = TestContext::azure(
        &config(&name, "", "database:\n  storage_gb: 100\n"),
        double.url(),
    );
    let run = ctx.run(&["plan"]);
    run.expect_code_not(0);
    assert!(
        run.stderr.contains("flyteinfra.yaml:8:15") && run.stderr.contains("32, 64, 128"),
        "{}",
        run.stderr
    );

    // A network too small for both subnets.
    let ctx = TestContext::azure(
        &config(
            &name,
            "  vnet_cidr: 10.0.0.0/24\n  node_subnet_cidr: 10.0.0.0/24\n  db_subnet_cidr: 10.0.0.0/28\n",
            "",
        ),
        double.url(),
    );
    let run = ctx.run(&["plan"]);
    run.expect_code_not(0);
    assert!(
        run.stderr.contains("flyteinfra.yaml:")
            && (run.stderr.contains("azure.db_subnet_cidr")
                || run.stderr.contains("azure.node_subnet_cidr")),
        "{}",
        run.stderr
    );
    assert_eq!(
        double.shared().lock().calls(),
        before,
        "offline errors made calls"
    );
}

#[test]
fn azure_unregistered_providers_are_named_or_registered() {
    let double = AzureDouble::start();
    double.shared().lock().knobs.unregistered = vec!["Microsoft.DBforPostgreSQL".into()];
    let name = unique();

    let ctx = TestContext::azure(
        &config(
            &name,
            "  register_providers: false\n",
            "database:\n  deletion_protection: false\n",
        ),
        double.url(),
    );
    let run = ctx.run(&["plan"]);
    run.expect_code_not(0);
    assert!(
        run.stderr
            .contains("az provider register --namespace Microsoft.DBforPostgreSQL")
            && run.stderr.contains("azure.register_providers"),
        "{}",
        run.stderr
    );
    assert_eq!(mutating_calls(&double), 0);

    // By default flyteinfra registers it first, then builds on it.
    ctx.write_config(&without_protection(&name));
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let registered = double
        .shared()
        .lock()
        .calls_by_op()
        .iter()
        .filter(|(op, _)| op.starts_with("POST") && op.contains("register"))
        .map(|(_, n)| *n)
        .sum::<u64>();
    assert_eq!(registered, 1);
    assert_eq!(servers(&double).len(), 1);
    // Destroy unregisters nothing.
    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    assert!(
        !double
            .shared()
            .lock()
            .calls_by_op()
            .keys()
            .any(|op| op.contains("unregister"))
    );
}

#[test]
fn azure_a_group_and_network_the_user_has_are_used_and_never_deleted() {
    let double = AzureDouble::start();
    let name = unique();
    let group = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}-rg");
    let theirs = format!("{group}/providers/Microsoft.Network/networkSecurityGroups/theirs");
    let vnet = format!("{group}/providers/Microsoft.Network/virtualNetworks/corp");
    let aks = format!("{vnet}/subnets/aks");
    {
        let mut w = double.shared().lock();
        w.put_raw(
            &group,
            json!({"name": format!("{name}-rg"), "type": "Microsoft.Resources/resourceGroups",
                "location": "eastus", "tags": {"team": "data"}, "properties": {"provisioningState": "Succeeded"}}),
        );
        w.put_raw(
            &theirs,
            json!({"name": "theirs", "type": "Microsoft.Network/networkSecurityGroups",
                "location": "eastus", "tags": {}, "properties": {"provisioningState": "Succeeded", "securityRules": []}}),
        );
        w.put_raw(
            &vnet,
            json!({"name": "corp", "type": "Microsoft.Network/virtualNetworks", "location": "eastus",
                "tags": {"team": "net"}, "properties": {"provisioningState": "Succeeded",
                "addressSpace": {"addressPrefixes": ["10.30.0.0/16"]}}}),
        );
        w.put_raw(
            &aks,
            json!({"name": "aks", "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": {"provisioningState": "Succeeded", "addressPrefix": "10.30.0.0/20"}}),
        );
    }
    let existing = format!("  existing:\n    vnet_id: {vnet}\n    subnet_id: {aks}\n");
    let ctx = TestContext::azure(
        &config(
            &name,
            &existing,
            "database:\n  deletion_protection: false\n",
        ),
        double.url(),
    );
    // Their subnet lacks the storage service endpoint: named before any change, never added.
    let refused = ctx.run(&["plan"]);
    refused.expect_code_not(0);
    assert!(
        refused.stderr.contains("flyteinfra.yaml:9:16")
            && refused
                .stderr
                .contains("--service-endpoints Microsoft.Storage"),
        "{}",
        refused.stderr
    );
    assert_eq!(mutating_calls(&double), 0);
    double.shared().lock().resource_mut(&aks).unwrap()["properties"]["serviceEndpoints"] =
        json!([{"service": "Microsoft.Storage", "locations": ["eastus"]}]);
    let plan = ctx.run(&["plan"]);
    plan.ok();
    for a in [
        "azure_resource_group.main",
        "azure_virtual_network.main",
        "azure_subnet.nodes",
    ] {
        assert!(
            !plan.stdout.contains(&format!("# {a} will be created")),
            "{a} planned as made:\n{}",
            plan.stdout
        );
    }
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    // flyteinfra's subnet sits in the user's network; PostgreSQL is admitted from theirs.
    let db_subnet = attr(&ctx, "azure_subnet.db", "id");
    assert!(
        db_subnet
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .starts_with(&vnet.to_ascii_lowercase()),
        "{db_subnet}"
    );
    let nsg_id = attr(&ctx, "azure_network_security_group.db", "id");
    let nsg = double
        .shared()
        .lock()
        .resource(nsg_id.as_str().unwrap())
        .unwrap();
    assert!(
        nsg["properties"]["securityRules"]
            .to_string()
            .contains("\"sourceAddressPrefix\":\"10.30.0.0/20\""),
        "{nsg}"
    );
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    let mut left = ours(&double, &name);
    left.sort();
    let mut kept = vec![group.clone(), theirs.clone(), vnet.clone(), aks.clone()];
    kept.sort();
    assert_eq!(left, kept);
    let vnet_now = double.shared().lock().resource(&vnet).unwrap();
    assert_eq!(
        vnet_now["tags"]["team"], "net",
        "the user's network was changed"
    );
}

#[test]
fn azure_deletion_protection_is_a_lock_that_destroy_respects() {
    let double = AzureDouble::start();
    let name = unique();
    let ctx = TestContext::azure(&config(&name, "", ""), double.url());
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let lock_id = attr(&ctx, "azure_management_lock.db", "id");
    let lock = double
        .shared()
        .lock()
        .resource(lock_id.as_str().unwrap())
        .expect("the lock exists");
    assert_eq!(lock["properties"]["level"], "CanNotDelete");

    let refused = ctx.run(&["destroy", "--auto-approve"]);
    refused.expect_code_not(0);
    assert!(
        refused.all().contains("--disable-protection"),
        "{}",
        refused.all()
    );
    assert_eq!(servers(&double).len(), 1);

    ctx.run(&["destroy", "--auto-approve", "--disable-protection"])
        .expect_code(0);
    assert_eq!(ours(&double, &name), Vec::<String>::new());
}

#[test]
fn azure_a_non_empty_container_blocks_destroy_until_force_destroy() {
    let double = AzureDouble::start();
    let name = unique();
    let ctx = TestContext::azure(&without_protection(&name), double.url());
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    // Azurite stands for the account's blob endpoint: the same container, with data.
    let azurite = crate::azurite::get();
    let container = format!("{name}-data");
    azurite.create_container(&container);
    azurite.upload(&container, "run/1/outputs.pb", b"flyte");
    azurite.upload(&container, "run/2/outputs.pb", b"flyte");

    let writes = mutating_calls(&double);
    let refused = ctx.run(&["destroy", "--auto-approve"]);
    refused.expect_code_not(0);
    assert!(
        refused.all().contains("force_destroy") && refused.all().contains(&container),
        "{}",
        refused.all()
    );
    assert_eq!(
        mutating_calls(&double),
        writes,
        "a refused destroy changed something"
    );
    assert_eq!(azurite.count(&container), 2);

    ctx.write_config(&config(
        &name,
        "",
        "database:\n  deletion_protection: false\nstorage:\n  force_destroy: true\n",
    ));
    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    assert_eq!(
        azurite.count(&container),
        0,
        "the container was not emptied"
    );
    assert_eq!(ours(&double, &name), Vec::<String>::new());
}

#[test]
fn azure_twenty_one_pairs_plan_a_task_identity_per_domain() {
    let double = AzureDouble::start();
    let name = unique();
    let ctx = TestContext::azure(
        &config(
            &name,
            "",
            "flyte:\n  projects: [p0, p1, p2, p3, p4, p5, p6]\n  domains: [development, staging, production]\n",
        ),
        double.url(),
    );
    let plan = parse_json(&ctx.run(&["plan", "--json"]).ok().stdout);
    let text = plan.to_string();
    for d in ["development", "staging", "production"] {
        assert!(
            text.contains(&format!("azure_user_assigned_identity.tasks_{d}")),
            "no task identity for {d}"
        );
    }
    assert!(!text.contains("\"azure_user_assigned_identity.tasks\""));
    assert_eq!(mutating_calls(&double), 0);
}

#[test]
fn azure_an_existing_cluster_is_read_and_never_touched() {
    let double = AzureDouble::start();
    let name = unique();
    // The user's network and cluster live in their own group.
    let net = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}-net");
    let vnet = format!("{net}/providers/Microsoft.Network/virtualNetworks/corp");
    let aks = format!("{vnet}/subnets/aks");
    let cluster = format!("{net}/providers/Microsoft.ContainerService/managedClusters/theirs");
    let issuer = "https://eastus.oic.prod-aks.azure.com/tenant/theirs/";
    let plant = |wi: bool| {
        let mut w = double.shared().lock();
        w.put_raw(
            &net,
            json!({"name": format!("{name}-net"), "type": "Microsoft.Resources/resourceGroups",
            "location": "eastus", "tags": {}, "properties": {"provisioningState": "Succeeded"}}),
        );
        w.put_raw(&vnet, json!({"name": "corp", "type": "Microsoft.Network/virtualNetworks", "location": "eastus",
            "tags": {}, "properties": {"provisioningState": "Succeeded", "addressSpace": {"addressPrefixes": ["10.30.0.0/16"]}}}));
        w.put_raw(
            &aks,
            json!({"name": "aks", "type": "Microsoft.Network/virtualNetworks/subnets",
            "properties": {"provisioningState": "Succeeded", "addressPrefix": "10.30.0.0/20",
            "serviceEndpoints": [{"service": "Microsoft.Storage"}]}}),
        );
        w.put_raw(&cluster, json!({"name": "theirs", "type": "Microsoft.ContainerService/managedClusters",
            "location": "eastus", "tags": {"team": "platform"},
            "identity": {"type": "SystemAssigned", "principalId": "00000000-0000-0000-0000-00000000c1c1"},
            "properties": {"provisioningState": "Succeeded", "kubernetesVersion": "1.33",
                "fqdn": "theirs-abc.hcp.eastus.azmk8s.io",
                "oidcIssuerProfile": {"enabled": wi, "issuerURL": if wi { issuer } else { "" }},
                "securityProfile": {"workloadIdentity": {"enabled": wi}},
                "agentPoolProfiles": [{"name": "system", "mode": "System", "count": 3, "vnetSubnetID": aks}]}}));
    };
    plant(false);
    let existing = format!(
        "  existing:\n    vnet_id: {vnet}\n    subnet_id: {aks}\n    cluster_id: {cluster}\n"
    );
    let ctx = TestContext::azure(
        &config(
            &name,
            &existing,
            "database:\n  deletion_protection: false\n",
        ),
        double.url(),
    );
    let refused = ctx.run(&["plan"]);
    refused.expect_code_not(0);
    assert!(
        refused.stderr.contains("flyteinfra.yaml:10:17")
            && refused
                .stderr
                .contains("--enable-oidc-issuer --enable-workload-identity"),
        "{}",
        refused.stderr
    );
    assert_eq!(mutating_calls(&double), 0);

    plant(true);
    let before = double.shared().lock().resource(&cluster).unwrap();
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    // The credentials trust their cluster's issuer; the cluster is as it was.
    let cred =
        ctx.state()["resources"]["azure_federated_identity_credential.backend_flyte_flyte_backend"]
            ["attributes"]["issuer"]
            .clone();
    assert_eq!(cred, issuer);
    assert_eq!(double.shared().lock().resource(&cluster).unwrap(), before);
    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    assert_eq!(double.shared().lock().resource(&cluster).unwrap(), before);
}

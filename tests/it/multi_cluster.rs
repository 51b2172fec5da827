//! `style: multi-cluster` through the binary against each cloud's emulator: two data
//! planes made beside the control plane, a no-op re-plan, a third plane added (only its
//! resources and the changed task trust appear), one removed (only its resources go, the
//! trust shrinks back), then a destroy that leaves nothing behind.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::util::{TestContext, parse_json};

fn planes_yaml(planes: &[&str]) -> String {
    let mut text = String::from(
        "control_plane:\n  admin_endpoint: flyteadmin.flyte.internal:81\n  catalog_endpoint: datacatalog.flyte.internal:89\ndata_planes:\n",
    );
    for p in planes {
        text.push_str(&format!("  - name: {p}\n"));
    }
    text
}

/// `(action, address)` of every change a `plan --json` shows, no-ops left out.
fn changes(ctx: &TestContext) -> BTreeSet<(String, String)> {
    let plan = parse_json(&ctx.run(&["plan", "--json"]).ok().stdout);
    plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] != "no-op" && c["action"] != "read")
        .map(|c| {
            (
                c["action"].as_str().unwrap().to_string(),
                c["address"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Renders every `flyte-core` values file apply wrote with the pinned chart: the control
/// plane's (named after `control`) runs flyteadmin and no flytepropeller, every data
/// plane's the reverse. Returns how many files were rendered.
fn render_written_values(ctx: &TestContext, cloud: &str, control: &str) -> usize {
    let prefix = format!("flyte-core-values-{cloud}-");
    let mut n = 0;
    for entry in std::fs::read_dir(ctx.dir()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(cluster) = file
            .strip_prefix(&prefix)
            .and_then(|f| f.strip_suffix(".yaml"))
        else {
            continue;
        };
        let (_, docs) = crate::helm::render("flyte-core", &path, ctx.dir());
        let deployment = |name: &str| {
            docs.iter()
                .any(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == name)
        };
        let is_control = cluster == control;
        assert_eq!(deployment("flyteadmin"), is_control, "{file}");
        assert_eq!(deployment("flytepropeller"), !is_control, "{file}");
        n += 1;
    }
    n
}

fn set(items: &[(&str, String)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_string(), b.clone()))
        .collect()
}

mod aws {
    use super::*;
    use crate::aws::{APPLY, clients, decode, listing, rt, strings, unique_name};

    fn config(name: &str, planes: &[&str]) -> String {
        format!(
            "name: {name}\ncloud: aws\nstyle: multi-cluster\naws:\n  region: us-east-1\n\
             database:\n  deletion_protection: false\ncluster:\n  nodes: {{min: 1, max: 3}}\n\
             flyte:\n  projects: [flytesnacks]\n  domains: [development, production]\n{}",
            planes_yaml(planes)
        )
    }

    /// The resources one AWS data plane adds, by address.
    fn plane(p: &str) -> Vec<String> {
        vec![
            format!("aws_eks_cluster.dp_{p}"),
            format!("aws_eks_node_group.dp_{p}"),
            format!("aws_iam_openid_connect_provider.dp_{p}"),
            format!("aws_iam_role.dp_{p}_propeller"),
            format!("aws_vpc_security_group_ingress_rule.dp_{p}_api_from_control"),
            format!("aws_vpc_security_group_ingress_rule.control_from_dp_{p}"),
        ]
    }

    #[test]
    fn aws_two_planes_add_a_third_remove_one_and_destroy() {
        let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
        let name = unique_name();
        let ctx = TestContext::aws(&config(&name, &["a", "b"]));
        let rt = rt();
        let c = rt.block_on(clients());
        let baseline = rt.block_on(listing(&c, &name));

        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        let clusters = |c: &flyteinfra_provider_aws::AwsClients| -> BTreeSet<String> {
            rt.block_on(c.eks.list_clusters().send())
                .unwrap()
                .clusters()
                .iter()
                .filter(|k| k.starts_with(&name))
                .cloned()
                .collect()
        };
        let want: BTreeSet<String> =
            [name.clone(), format!("{name}-a"), format!("{name}-b")].into();
        assert_eq!(clusters(&c), want);
        let dbs = rt.block_on(c.rds.describe_db_instances().send()).unwrap();
        let ours = dbs
            .db_instances()
            .iter()
            .filter(|d| d.db_instance_identifier().unwrap_or("").starts_with(&name))
            .count();
        assert_eq!(ours, 1, "one database for every cluster");

        // Each cluster's issuer, as EKS reports it.
        let issuer = |cluster: &str| -> String {
            let d = rt
                .block_on(c.eks.describe_cluster().name(cluster).send())
                .unwrap();
            let url = d.cluster().unwrap().identity().unwrap().oidc().unwrap();
            url.issuer()
                .unwrap()
                .trim_start_matches("https://")
                .to_string()
        };
        let (cp, a, b) = (
            issuer(&name),
            issuer(&format!("{name}-a")),
            issuer(&format!("{name}-b")),
        );
        assert!(
            cp != a && a != b,
            "moto's issuers are told apart by the proxy"
        );
        let trust = |role: &str| -> Value {
            let r = rt
                .block_on(c.iam.get_role().role_name(role).send())
                .unwrap();
            decode(r.role().unwrap().assume_role_policy_document().unwrap())
        };
        // (issuer, subjects) of every statement.
        let statements = |doc: &Value| -> BTreeSet<(String, Vec<String>)> {
            doc["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    let fed = s["Principal"]["Federated"].as_str().unwrap();
                    let iss = fed.split_once("oidc-provider/").unwrap().1.to_string();
                    let subs = strings(&s["Condition"]["StringEquals"][format!("{iss}:sub")]);
                    (iss, subs)
                })
                .collect()
        };
        let sa = |n: &str| format!("system:serviceaccount:flyte:{n}");
        assert_eq!(
            statements(&trust(&format!("{name}-flyte-backend"))),
            [(cp.clone(), vec![sa("datacatalog"), sa("flyteadmin")])].into()
        );
        for (p, iss) in [("a", &a), ("b", &b)] {
            assert_eq!(
                statements(&trust(&format!("{name}-{p}-propeller"))),
                [(iss.clone(), vec![sa("flytepropeller")])].into()
            );
        }
        let tasks = vec![
            "system:serviceaccount:flytesnacks-development:default".to_string(),
            "system:serviceaccount:flytesnacks-production:default".to_string(),
        ];
        assert_eq!(
            statements(&trust(&format!("{name}-flyte-tasks"))),
            [(a.clone(), tasks.clone()), (b.clone(), tasks.clone())].into(),
            "tasks run in the data planes only"
        );
        let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
        assert_eq!(
            out["dp_a_cluster_name"]["value"],
            format!("{name}-a").as_str()
        );
        assert_eq!(
            out["dp_b_identity_flytepropeller"]["value"],
            format!("arn:aws:iam::123456789012:role/{name}-b-propeller").as_str()
        );
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

        // A third plane: its own resources and the task role's trust, nothing else.
        ctx.write_config(&config(&name, &["a", "b", "c"]));
        let mut want: Vec<(&str, String)> = plane("c").into_iter().map(|a| ("create", a)).collect();
        want.push(("update", "aws_iam_role.flyte_tasks".into()));
        assert_eq!(changes(&ctx), set(&want));
        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        let c3 = issuer(&format!("{name}-c"));
        assert_eq!(
            statements(&trust(&format!("{name}-flyte-tasks"))),
            [
                (a.clone(), tasks.clone()),
                (b.clone(), tasks.clone()),
                (c3.clone(), tasks.clone())
            ]
            .into()
        );
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

        // Removing a plane deletes exactly its resources and its trust statement.
        ctx.write_config(&config(&name, &["b", "c"]));
        let mut want: Vec<(&str, String)> = plane("a").into_iter().map(|a| ("delete", a)).collect();
        want.push(("update", "aws_iam_role.flyte_tasks".into()));
        assert_eq!(changes(&ctx), set(&want));
        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        let want: BTreeSet<String> =
            [name.clone(), format!("{name}-b"), format!("{name}-c")].into();
        assert_eq!(clusters(&c), want);
        assert_eq!(
            statements(&trust(&format!("{name}-flyte-tasks"))),
            [(b.clone(), tasks.clone()), (c3, tasks.clone())].into()
        );
        assert!(
            rt.block_on(
                c.iam
                    .get_role()
                    .role_name(format!("{name}-a-propeller"))
                    .send()
            )
            .is_err(),
            "the removed plane's propeller role is gone"
        );
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
        // The files of the removed plane stay on disk (the user may still uninstall it):
        // those of the control plane and both remaining planes render.
        assert!(render_written_values(&ctx, "aws", &name) >= 3);

        ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
        assert_eq!(rt.block_on(listing(&c, &name)), baseline);
        assert!(clusters(&c).is_empty());
    }
}

mod gcp {
    use super::*;
    use crate::gcp::{clients, leftovers, rt, sa_members, unique};
    use flyteinfra_gcp_double::GcpDouble;

    fn config(name: &str, planes: &[&str]) -> String {
        format!(
            "name: {name}\ncloud: gcp\nstyle: multi-cluster\ngcp:\n  project: {name}-proj\n  region: us-central1\n\
             database:\n  deletion_protection: false\ncluster:\n  nodes: {{min: 1, max: 3}}\n\
             flyte:\n  projects: [flytesnacks]\n  domains: [development, production]\n{}",
            planes_yaml(planes)
        )
    }

    /// The clusters and node pools the double holds for `project`, by name.
    fn clusters(double: &GcpDouble, project: &str) -> BTreeSet<String> {
        let prefix = format!("projects/{project}/locations/us-central1/clusters/");
        let w = double.shared().lock();
        w.objects
            .iter()
            .filter(|(_, v)| v["deleted"] != true && v.get("name").is_some())
            .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string))
            .filter(|rest| !rest.contains('/') || rest.contains("/nodePools/"))
            .filter(|rest| !rest.contains(':'))
            .collect()
    }

    /// The names of the subnetwork's secondary ranges.
    fn ranges(double: &GcpDouble, project: &str, name: &str) -> BTreeSet<String> {
        let key = format!("projects/{project}/regions/us-central1/subnetworks/{name}-gke");
        let w = double.shared().lock();
        let (_, subnet) = w
            .objects
            .iter()
            .find(|(k, _)| k.ends_with(&key))
            .unwrap_or_else(|| panic!("no {key}"));
        subnet["secondaryIpRanges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rangeName"].as_str().unwrap().to_string())
            .collect()
    }

    fn plane(p: &str) -> Vec<String> {
        vec![
            format!("gcp_container_cluster.dp_{p}"),
            format!("gcp_container_node_pool.dp_{p}"),
        ]
    }

    #[test]
    fn gcp_two_planes_add_a_third_remove_one_and_destroy() {
        let double = GcpDouble::start();
        let name = unique();
        let project = format!("{name}-proj");
        let ctx = TestContext::gcp(&config(&name, &["a", "b"]), double.url());
        let rt = rt();
        let c = rt.block_on(clients(&double, &project));

        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        let pool = |cluster: &str| format!("{cluster}/nodePools/{cluster}-nodes");
        let want: BTreeSet<String> = [
            name.clone(),
            pool(&name),
            format!("{name}-a"),
            pool(&format!("{name}-a")),
            format!("{name}-b"),
            pool(&format!("{name}-b")),
        ]
        .into();
        assert_eq!(clusters(&double, &project), want);
        let sql = ctx
            .state_addresses()
            .into_iter()
            .filter(|a| a.starts_with("gcp_sql_database_instance."))
            .count();
        assert_eq!(sql, 1, "one Cloud SQL instance for every cluster");
        let r: BTreeSet<String> = [
            format!("{name}-pods"),
            format!("{name}-services"),
            "pods-a".into(),
            "services-a".into(),
            "pods-b".into(),
            "services-b".into(),
        ]
        .into();
        assert_eq!(ranges(&double, &project, &name), r);

        // One account per component, each trusted by exactly its KSA (a Workload Identity
        // binding covers that KSA in every cluster of the project).
        let pool_id = format!("{project}.svc.id.goog");
        for component in ["flyteadmin", "datacatalog", "flytepropeller"] {
            let email = format!("{name}-{component}@{project}.iam.gserviceaccount.com");
            assert_eq!(
                rt.block_on(sa_members(&c, &email, "roles/iam.workloadIdentityUser")),
                [format!("serviceAccount:{pool_id}[flyte/{component}]")],
                "{component}"
            );
        }
        let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
        assert_eq!(
            out["dp_a_identity_flytepropeller"]["value"],
            out["dp_b_identity_flytepropeller"]["value"]
        );
        assert!(out.get("backend_service_account").is_none(), "{out}");
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

        // A third plane: its cluster and pool, and its ranges on the subnetwork.
        ctx.write_config(&config(&name, &["a", "b", "c"]));
        let mut want: Vec<(&str, String)> = plane("c").into_iter().map(|a| ("create", a)).collect();
        want.push(("update", "gcp_compute_subnetwork.main".into()));
        assert_eq!(changes(&ctx), set(&want));
        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        assert!(clusters(&double, &project).contains(&format!("{name}-c")));
        assert!(ranges(&double, &project, &name).contains("pods-c"));
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

        // Removing one: its cluster and pool go first, then its ranges.
        ctx.write_config(&config(&name, &["b", "c"]));
        let mut want: Vec<(&str, String)> = plane("a").into_iter().map(|a| ("delete", a)).collect();
        want.push(("update", "gcp_compute_subnetwork.main".into()));
        assert_eq!(changes(&ctx), set(&want));
        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        let now = clusters(&double, &project);
        assert!(!now.contains(&format!("{name}-a")), "{now:?}");
        assert!(!ranges(&double, &project, &name).contains("pods-a"));
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
        assert!(render_written_values(&ctx, "gcp", &name) >= 3);

        ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
        assert_eq!(leftovers(&double, &project), Vec::<String>::new());
    }
}

mod azure {
    use super::*;
    use crate::azure::{of_kind, ours, unique};
    use flyteinfra_azure_double::AzureDouble;

    fn config(name: &str, planes: &[&str]) -> String {
        format!(
            "name: {name}\ncloud: azure\nstyle: multi-cluster\nazure:\n  subscription_id: 00000000-0000-0000-0000-0000000000a1\n  \
             location: eastus\n  resource_group: {name}-rg\ndatabase:\n  deletion_protection: false\n\
             cluster:\n  nodes: {{min: 1, max: 3}}\n\
             flyte:\n  projects: [flytesnacks]\n  domains: [development, production]\n{}",
            planes_yaml(planes)
        )
    }

    /// Every change of the plan names plane `p` and has action `action`.
    fn only_plane(changes: &BTreeSet<(String, String)>, action: &str, p: &str) {
        assert!(!changes.is_empty());
        for (a, address) in changes {
            assert_eq!(a, action, "{address}");
            assert!(address.contains(&format!("dp_{p}")), "{address}");
        }
    }

    #[test]
    fn azure_two_planes_add_a_third_remove_one_and_destroy() {
        let double = AzureDouble::start();
        let name = unique();
        let ctx = TestContext::azure(&config(&name, &["a", "b"]), double.url());

        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        let clusters = || of_kind(&double, &name, "/managedclusters/").len();
        let credentials = || of_kind(&double, &name, "/federatedidentitycredentials/").len();
        assert_eq!(clusters(), 3);
        assert_eq!(of_kind(&double, &name, "/flexibleservers/").len(), 1);
        // Backend: flyteadmin and datacatalog on the control plane; propeller: one per
        // plane; tasks: 2 planes × 2 namespaces.
        assert_eq!(credentials(), 2 + 2 + 4);
        let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
        assert_eq!(
            out["dp_a_identity_flytepropeller"]["value"],
            out["dp_b_identity_flytepropeller"]["value"]
        );
        assert_ne!(
            out["dp_a_identity_flytepropeller"]["value"],
            out["identity_flyteadmin"]["value"]
        );
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

        ctx.write_config(&config(&name, &["a", "b", "c"]));
        only_plane(&changes(&ctx), "create", "c");
        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        assert_eq!((clusters(), credentials()), (4, 2 + 3 + 6));
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

        ctx.write_config(&config(&name, &["b", "c"]));
        only_plane(&changes(&ctx), "delete", "a");
        ctx.run(&["apply", "--auto-approve"]).expect_code(0);
        assert_eq!((clusters(), credentials()), (3, 2 + 2 + 4));
        ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
        assert!(render_written_values(&ctx, "azure", &format!("{name}-aks")) >= 3);

        ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
        assert_eq!(ours(&double, &name), Vec::<String>::new());
    }
}

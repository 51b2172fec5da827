//! Multi-cluster values proven by the real chart: from a hand-made set of outputs for a
//! two-plane deployment on AWS and on GCP, the library renders the control plane's and each
//! data plane's `flyte-core` values, and `helm template` of the pinned chart (unmodified)
//! must make flyteadmin with the data planes in its cluster config and their credentials
//! mounted, no flytepropeller there, and in each data plane flytepropeller and flyteadmin's
//! service account only, reaching the control plane's endpoints; the password nowhere.
//! Then the CLI on the simulated cloud: the same set of files from apply and from
//! `values --out-dir`, each rendered by the chart.

use std::collections::BTreeMap;
use std::path::Path;

use flyteinfra_core::Value as Out;
use flyteinfra_flyte::values::{ClusterFiles, MultiRendered, multi_cluster};
use flyteinfra_flyte::{Cloud, Config};
use serde_json::{Value, json};

use crate::helm::{config_file, find, render};

const PASSWORD: &str = "PlantedSecret0123456789abcdefXYZ";

fn config(cloud: Cloud) -> Config {
    let section = match cloud {
        Cloud::Aws => "aws:\n  region: us-east-1\n",
        _ => "gcp:\n  project: my-proj\n  region: us-central1\n",
    };
    Config::parse(
        &format!(
            "name: demo\ncloud: {cloud}\nstyle: multi-cluster\n{section}\
             flyte:\n  domains: [development, production]\n\
             control_plane:\n  admin_endpoint: flyteadmin.flyte.internal:81\n  catalog_endpoint: datacatalog.flyte.internal:89\n\
             data_planes:\n  - name: gpu\n    label: batch\n    weight: 0.4\n  - name: cpu\n    label: batch\n    weight: 0.6\n"
        ),
        Path::new("mc.yaml"),
    )
    .unwrap()
}

/// What apply would have put in state for the deployment.
fn outputs(cloud: Cloud) -> BTreeMap<String, Out> {
    let mut o: Vec<(&str, String)> = vec![
        ("db_host", "db.example.internal".into()),
        ("db_name", "flyte".into()),
        ("db_username", "flyte".into()),
        ("db_password", PASSWORD.into()),
        ("metadata_bucket", "demo-meta".into()),
        ("data_bucket", "demo-data".into()),
        ("cluster_name", "demo".into()),
    ];
    let (admin, catalog) = match cloud {
        Cloud::Aws => {
            o.push(("region", "us-east-1".into()));
            o.push(("task_role_arn", "arn:aws:iam::1:role/demo-tasks".into()));
            (
                "arn:aws:iam::1:role/demo-flyte-backend".to_string(),
                "arn:aws:iam::1:role/demo-flyte-backend".to_string(),
            )
        }
        _ => {
            o.push(("project", "my-proj".into()));
            o.push((
                "task_service_account",
                "demo-tasks@my-proj.iam.gserviceaccount.com".into(),
            ));
            (
                "demo-flyteadmin@my-proj.iam.gserviceaccount.com".to_string(),
                "demo-datacatalog@my-proj.iam.gserviceaccount.com".to_string(),
            )
        }
    };
    o.push(("identity_flyteadmin", admin));
    o.push(("identity_datacatalog", catalog));
    let mut o: BTreeMap<String, Out> = o
        .into_iter()
        .map(|(k, v)| (k.to_string(), Out::from(v.as_str())))
        .collect();
    o.insert("db_port".into(), Out::Int(5432));
    for (i, p) in ["gpu", "cpu"].into_iter().enumerate() {
        let endpoint = match cloud {
            Cloud::Aws => format!(
                "https://{}.gr7.us-east-1.eks.amazonaws.com",
                p.to_uppercase()
            ),
            _ => format!("34.1.2.{}", i + 10),
        };
        let identity = match cloud {
            Cloud::Aws => format!("arn:aws:iam::1:role/demo-{p}-propeller"),
            _ => "demo-flytepropeller@my-proj.iam.gserviceaccount.com".to_string(),
        };
        for (k, v) in [
            ("cluster_name", format!("demo-{p}")),
            ("cluster_endpoint", endpoint),
            ("identity_flytepropeller", identity),
        ] {
            o.insert(format!("dp_{p}_{k}"), Out::from(v.as_str()));
        }
    }
    o
}

fn annotation(cloud: Cloud) -> &'static str {
    match cloud {
        Cloud::Aws => "eks.amazonaws.com/role-arn",
        _ => "iam.gke.io/gcp-service-account",
    }
}

fn has(docs: &[Value], kind: &str, name: &str) -> bool {
    docs.iter()
        .any(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// `helm template` of one cluster's values: no warning, and the password nowhere.
fn render_cluster(c: &ClusterFiles, dir: &Path) -> Vec<Value> {
    let path = dir.join(&c.values_file);
    std::fs::write(&path, &c.values).unwrap();
    let (text, docs) = render("flyte-core", &path, dir);
    assert!(!text.contains(PASSWORD), "{}: the password", c.cluster);
    docs
}

fn check_control(cloud: Cloud, r: &MultiRendered, o: &BTreeMap<String, Out>, dir: &Path) {
    let docs = render_cluster(&r.control, dir);
    let s = |k: &str| o[k].as_str().unwrap().to_string();

    // flyteadmin and its peers here, flytepropeller (and its webhook) not.
    for name in [
        "flyteadmin",
        "datacatalog",
        "flyteconsole",
        "flytescheduler",
        "syncresources",
    ] {
        assert!(has(&docs, "Deployment", name), "{cloud}: no {name}");
    }
    for name in ["flytepropeller", "flyte-pod-webhook"] {
        assert!(!has(&docs, "Deployment", name), "{cloud}: {name} runs");
    }
    assert!(
        !has(&docs, "ConfigMap", "flyte-propeller-config"),
        "{cloud}"
    );

    // The data planes, in flyteadmin's and the sync's cluster config.
    let cluster_configs: Vec<Value> = ["gpu", "cpu"]
        .iter()
        .map(|p| {
            json!({
                "name": p,
                "endpoint": flyteinfra_flyte::access::api_server_url(&s(&format!("dp_{p}_cluster_endpoint"))),
                "enabled": true,
                "auth": {
                    "type": "file_path",
                    "tokenPath": format!("/var/run/credentials/{p}_token"),
                    "certPath": format!("/var/run/credentials/{p}_cacert"),
                },
            })
        })
        .collect();
    for config_map in [
        "flyte-admin-clusters-config",
        "flyte-clusterresourcesync-config",
    ] {
        let clusters =
            &config_file(find(&docs, "ConfigMap", config_map), "clusters.yaml")["clusters"];
        assert_eq!(
            clusters["clusterConfigs"],
            json!(cluster_configs),
            "{cloud} {config_map}"
        );
        // Label → [(plane, weight)], weights as numbers (helm rewrites their YAML).
        let map = clusters["labelClusterMap"].as_object().unwrap();
        let map: BTreeMap<&str, Vec<(&str, f64)>> = map
            .iter()
            .map(|(label, planes)| {
                let planes = planes.as_array().unwrap().iter();
                let planes =
                    planes.map(|w| (w["id"].as_str().unwrap(), w["weight"].as_f64().unwrap()));
                (label.as_str(), planes.collect())
            })
            .collect();
        assert_eq!(
            map,
            BTreeMap::from([("batch", vec![("gpu", 0.4), ("cpu", 0.6)])]),
            "{cloud} {config_map}"
        );
    }
    let endpoint = cluster_configs[1]["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("https://"), "{cloud}: {endpoint}");

    // The credentials: mounted read-only into flyteadmin and its sync init container by
    // these values, into `syncresources` by the chart itself.
    let admin = &find(&docs, "Deployment", "flyteadmin")["spec"]["template"]["spec"];
    assert!(
        admin["volumes"].as_array().unwrap().contains(
            &json!({"name": "cluster-credentials", "secret": {"secretName": "cluster-credentials"}})
        ),
        "{cloud}: {}",
        admin["volumes"]
    );
    let mount = json!({"name": "cluster-credentials", "mountPath": "/var/run/credentials", "readOnly": true});
    assert!(
        admin["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&mount),
        "{cloud}"
    );
    let sync_init = admin["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sync-cluster-resources")
        .unwrap_or_else(|| panic!("{cloud}: no sync init container"));
    assert!(
        sync_init["volumeMounts"]
            .as_array()
            .unwrap()
            .contains(&mount),
        "{cloud}"
    );
    let sync = &find(&docs, "Deployment", "syncresources")["spec"]["template"]["spec"];
    assert!(
        sync["volumes"]
            .to_string()
            .contains(r#""secretName":"cluster-credentials""#),
        "{cloud}: {}",
        sync["volumes"]
    );
    assert!(
        sync["containers"][0]["volumeMounts"]
            .to_string()
            .contains(r#""mountPath":"/var/run/credentials""#),
        "{cloud}"
    );

    // The password file in both db blocks (and every config reading the database).
    for (config_map, file) in [
        ("flyte-admin-base-config", "db.yaml"),
        ("datacatalog-config", "db.yaml"),
        ("flyte-scheduler-config", "db.yaml"),
        ("flyte-clusterresourcesync-config", "db.yaml"),
    ] {
        let db = &config_file(find(&docs, "ConfigMap", config_map), file)["database"];
        assert_eq!(
            db["passwordPath"], "/etc/db/password",
            "{cloud} {config_map}"
        );
        assert_eq!(db["host"], s("db_host"), "{cloud} {config_map}");
        assert!(db.get("password").is_none(), "{cloud} {config_map}: {db}");
    }

    // Per-component identities.
    for (sa, output) in [
        ("flyteadmin", "identity_flyteadmin"),
        ("datacatalog", "identity_datacatalog"),
    ] {
        let doc = find(&docs, "ServiceAccount", sa);
        assert_eq!(
            doc["metadata"]["annotations"][annotation(cloud)],
            s(output),
            "{cloud} {sa}"
        );
    }
    assert!(!has(&docs, "ServiceAccount", "flytepropeller"), "{cloud}");
}

fn check_plane(
    cloud: Cloud,
    p: &ClusterFiles,
    control_storage: &Value,
    o: &BTreeMap<String, Out>,
    dir: &Path,
) {
    let plane = p.plane.as_deref().unwrap();
    let docs = render_cluster(p, dir);
    let s = |k: &str| o[k].as_str().unwrap().to_string();

    // flytepropeller and its webhook, and nothing of the control plane.
    for name in ["flytepropeller", "flyte-pod-webhook"] {
        assert!(has(&docs, "Deployment", name), "{cloud} {plane}: no {name}");
    }
    for name in [
        "flyteadmin",
        "datacatalog",
        "flyteconsole",
        "flytescheduler",
        "syncresources",
    ] {
        assert!(
            !has(&docs, "Deployment", name),
            "{cloud} {plane}: {name} runs"
        );
    }
    assert!(
        !docs.iter().any(|d| d["kind"] == "Ingress"),
        "{cloud} {plane}: an ingress to services that are not here"
    );
    // flyteadmin's account, with the cluster role the control plane acts with here.
    assert!(
        has(&docs, "ServiceAccount", "flyteadmin"),
        "{cloud} {plane}"
    );
    let binding = find(&docs, "ClusterRoleBinding", "flyte-flyteadmin-binding");
    assert_eq!(
        binding["subjects"][0]["name"], "flyteadmin",
        "{cloud} {plane}"
    );

    let sa = find(&docs, "ServiceAccount", "flytepropeller");
    assert_eq!(
        sa["metadata"]["annotations"][annotation(cloud)],
        s(&format!("dp_{plane}_identity_flytepropeller")),
        "{cloud} {plane}"
    );

    let cm = find(&docs, "ConfigMap", "flyte-propeller-config");
    let admin = &config_file(cm, "admin.yaml")["admin"];
    assert_eq!(
        admin["endpoint"], "dns:///flyteadmin.flyte.internal:81",
        "{cloud} {plane}"
    );
    assert_eq!(admin["insecure"], true, "{cloud} {plane}");
    // The chart's other admin client settings stay.
    assert!(admin.get("clientId").is_some(), "{cloud} {plane}: {admin}");
    let catalog = &config_file(cm, "catalog.yaml")["catalog-cache"];
    assert_eq!(
        catalog["endpoint"], "dns:///datacatalog.flyte.internal:89",
        "{cloud} {plane}"
    );
    assert_eq!(catalog["type"], "datacatalog", "{cloud} {plane}");
    assert_eq!(catalog["insecure"], true, "{cloud} {plane}");

    // The control plane's buckets and raw-data prefix.
    assert_eq!(
        &config_file(cm, "storage.yaml"),
        control_storage,
        "{cloud} {plane}"
    );
    let scheme = if cloud == Cloud::Aws { "s3" } else { "gs" };
    assert_eq!(
        config_file(cm, "core.yaml")["propeller"]["rawoutput-prefix"],
        format!("{scheme}://{}/data", s("data_bucket")),
        "{cloud} {plane}"
    );

    // No database anywhere: no Secret mounted, no host.
    let all = serde_json::to_string(&docs).unwrap();
    for needle in ["flyte-db-pass", "db.example.internal", "passwordPath"] {
        assert!(!all.contains(needle), "{cloud} {plane}: `{needle}`");
    }
}

#[test]
fn helm_template_of_the_pinned_chart_renders_multi_cluster_values() {
    for cloud in [Cloud::Aws, Cloud::Gcp] {
        let dir = tempfile::tempdir().unwrap();
        let o = outputs(cloud);
        let r = multi_cluster(&config(cloud), cloud, &o).unwrap();
        assert_eq!(r.planes.len(), 2);
        check_control(cloud, &r, &o, dir.path());
        // What the control plane's admin reads from the buckets, for the planes to match.
        let control_docs = render_cluster(&r.control, dir.path());
        let control_storage = config_file(
            find(&control_docs, "ConfigMap", "flyte-admin-base-config"),
            "storage.yaml",
        );
        for p in &r.planes {
            check_plane(cloud, p, &control_storage, &o, dir.path());
        }
    }
}

/// The CLI on the simulated cloud: apply writes every cluster's files next to the config
/// and the order to install them in; `values` refuses to print one file and writes the same
/// set (0600) with `--out-dir`; the chart renders each of them.
#[test]
fn values_out_dir_writes_every_clusters_files_as_apply_does() {
    use std::os::unix::fs::PermissionsExt;

    let ctx = crate::util::TestContext::new(
        "name: mcd\ncloud: aws\nstyle: multi-cluster\naws:\n  region: us-east-1\n\
         control_plane:\n  admin_endpoint: flyteadmin.flyte.internal:81\n  catalog_endpoint: datacatalog.flyte.internal:89\n\
         data_planes:\n  - name: gpu\n  - name: cpu\n",
    );
    let apply = ctx.run(&["apply", "--auto-approve"]);
    apply.ok();
    let steps = std::fs::read_to_string(ctx.dir().join("NEXT-STEPS-aws.md")).unwrap();
    assert!(apply.stderr.contains(&steps), "{}", apply.stderr);
    assert!(
        steps.contains("flyteinfra cluster-credentials --kubeconfig"),
        "{steps}"
    );

    let one = ctx.run(&["values"]);
    one.expect_code(1);
    assert!(one.stderr.contains("--out-dir DIR"), "{}", one.stderr);

    let out = ctx.run(&["values", "--out-dir", "out"]);
    out.ok();
    let files = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_str().unwrap();
                n.starts_with("flyte-core-values-")
                    || n.starts_with("flyteadmin-token-")
                    || n.starts_with("flyte-db-secret-")
            })
            .map(|p| {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
                let name = p.file_name().unwrap().to_str().unwrap().to_string();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
    };
    let written = files(&ctx.dir().join("out"));
    assert_eq!(
        written,
        files(ctx.dir()),
        "values --out-dir and apply differ"
    );
    let count = |prefix: &str| written.keys().filter(|n| n.starts_with(prefix)).count();
    assert_eq!(
        (
            count("flyte-core-values-aws-"),
            count("flyteadmin-token-"),
            count("flyte-db-secret-aws")
        ),
        (3, 2, 1),
        "{:?}",
        written.keys()
    );
    // Every helm command printed names a file written.
    for line in out.stderr.lines().filter(|l| l.starts_with("helm ")) {
        let file = line.rsplit(' ').next().unwrap();
        assert!(ctx.dir().join(file).exists(), "{line}");
    }
    let mut propellers = 0;
    for (name, _) in written
        .iter()
        .filter(|(n, _)| n.starts_with("flyte-core-values-"))
    {
        let (_, docs) = render("flyte-core", &ctx.dir().join("out").join(name), ctx.dir());
        let (admin, propeller) = (
            has(&docs, "Deployment", "flyteadmin"),
            has(&docs, "Deployment", "flytepropeller"),
        );
        assert!(
            admin != propeller,
            "{name}: flyteadmin {admin}, flytepropeller {propeller}"
        );
        propellers += usize::from(propeller);
    }
    assert_eq!(propellers, 2);
}

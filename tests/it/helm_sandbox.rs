//! The sandbox's values proven by the real chart: from a hand-made set of sandbox outputs,
//! the library renders `flyte-binary` values and the storage Secret's manifest, and
//! `helm template` of the pinned chart (unmodified) must mount that Secret
//! (`configuration.inlineSecretRef`) in Flyte's config directory next to the chart's own
//! files, named so that Flyte, which reads `<dir>/*.yaml` in name order and merges each
//! over the ones before, ends with the keys in its storage config; and must give task pods
//! the endpoint in plain environment and the keys from a Secret of their own namespace,
//! made by Flyte's cluster-resource sync from the template and the mounted Secret's files.
//! Neither key nor password is anywhere in the values or what the chart makes.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine as _;
use flyteinfra_core::Value as Out;
use flyteinfra_flyte::values::{
    FLYTE_CONFIG_DIR, STORAGE_SECRET_CONFIG_FILE, STORAGE_SECRET_NAME, TASK_STORAGE_SECRET_NAME,
    flyte_binary, sandbox_storage_secret,
};
use flyteinfra_flyte::{Cloud, Config};
use serde_json::{Value, json};

use crate::helm::{config_file, custom_data, find, render, sync_template, task_pod_env};

const PASSWORD: &str = "PlantedSecret0123456789abcdefXYZ";
const ACCESS_KEY: &str = "PlantedAccessKey4242";
const SECRET_KEY: &str = "PlantedSecretKey/it's+\"odd\"#9";
const ENDPOINT: &str = "http://minio.minio.svc.cluster.local:9000";
const FULLNAME: &str = "flyte-backend-flyte-binary";

/// A sandbox whose PostgreSQL server has no TLS.
fn config() -> Config {
    Config::parse(
        &format!(
            "name: demo\nstyle: sandbox\nsandbox:\n  postgres:\n    host: postgres.db.svc.cluster.local\n    \
             tls: disable\n    admin_password_env: PG_PASSWORD\n  object_store:\n    endpoint: {ENDPOINT}\n    \
             access_key_env: S3_ACCESS_KEY\n    secret_key_env: S3_SECRET_KEY\n\
             flyte:\n  domains: [development, production]\n"
        ),
        Path::new("sandbox.yaml"),
    )
    .unwrap()
}

/// What apply would have put in state for the sandbox.
fn outputs() -> BTreeMap<String, Out> {
    [
        ("db_host", Out::from("postgres.db.svc.cluster.local")),
        ("db_port", Out::Int(5432)),
        ("db_name", Out::from("flyte")),
        ("db_username", Out::from("flyte")),
        ("db_password", Out::from(PASSWORD)),
        ("metadata_bucket", Out::from("demo-meta")),
        ("data_bucket", Out::from("demo-data")),
        ("s3_endpoint", Out::from(ENDPOINT)),
        ("s3_region", Out::from("us-east-1")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `over` merged into `base`, maps key by key, as viper merges one config file over
/// the ones before it.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[test]
fn helm_template_mounts_the_sandbox_storage_secret_and_wires_task_pods() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let r = flyte_binary(&config, Cloud::Sandbox, &outputs()).unwrap();
    let values = dir.path().join("flyte-values-sandbox.yaml");
    std::fs::write(&values, &r.values).unwrap();
    let manifest = sandbox_storage_secret(&config, "flyte", ACCESS_KEY, SECRET_KEY);
    let manifest: Value = serde_saphyr::from_str(&manifest).unwrap();
    let (text, docs) = render("flyte-binary", &values, dir.path());
    for secret in [PASSWORD, ACCESS_KEY, SECRET_KEY] {
        assert!(!r.values.contains(secret), "{secret} in the values");
        assert!(!text.contains(secret), "{secret} in the rendered chart");
    }

    // The config directory: the chart's ConfigMap and Secret, then the storage Secret.
    let pod = &find(&docs, "Deployment", FULLNAME)["spec"]["template"]["spec"];
    let flyte = &pod["containers"][0];
    assert_eq!(
        flyte["args"],
        json!(["start", "--config", format!("{FLYTE_CONFIG_DIR}/*.yaml")])
    );
    let mounts = flyte["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.contains(&json!({"name": "config", "mountPath": FLYTE_CONFIG_DIR})),
        "{mounts:?}"
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let config_volume = volumes.iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(
        config_volume["projected"]["sources"],
        json!([
            {"configMap": {"name": format!("{FULLNAME}-config")}},
            {"secret": {"name": format!("{FULLNAME}-config-secret")}},
            {"secret": {"name": STORAGE_SECRET_NAME}},
        ])
    );

    // Every file of the directory, by name, from the three sources (no name twice: a
    // projected volume cannot hold two).
    let cm = find(&docs, "ConfigMap", &format!("{FULLNAME}-config"));
    let chart_secret = find(&docs, "Secret", &format!("{FULLNAME}-config-secret"));
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for source in [
        &cm["data"],
        &chart_secret["stringData"],
        &manifest["stringData"],
    ] {
        for (name, content) in source.as_object().into_iter().flatten() {
            let old = files.insert(name.clone(), content.as_str().unwrap().to_string());
            assert!(old.is_none(), "two files named {name}");
        }
    }
    // The chart makes no password or key file of its own.
    assert!(
        chart_secret["stringData"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{chart_secret}"
    );
    // Flyte's order (Go's filepath.Glob sorts by name): the storage Secret's file last.
    let yaml: Vec<&String> = files.keys().filter(|f| f.ends_with(".yaml")).collect();
    assert_eq!(
        yaml,
        [
            "000-core.yaml",
            "001-plugins.yaml",
            "002-database.yaml",
            "003-storage.yaml",
            "100-inline-config.yaml",
            STORAGE_SECRET_CONFIG_FILE,
        ]
    );
    let mut flyte_config = json!({});
    for name in &yaml {
        let parsed: Value = serde_saphyr::from_str(&files[*name]).unwrap();
        merge(&mut flyte_config, &parsed);
    }

    // Flyte's storage: the store's endpoint, without TLS, with the keys.
    let storage = &flyte_config["storage"];
    assert_eq!(storage["type"], "stow");
    assert_eq!(storage["container"], "demo-meta");
    assert_eq!(storage["enable-multicontainer"], true);
    assert_eq!(
        storage["stow"],
        json!({"kind": "s3", "config": {
            "region": "us-east-1",
            "endpoint": ENDPOINT,
            "disable_ssl": true,
            "v2_signing": false,
            "auth_type": "accesskey",
            "access_key_id": ACCESS_KEY,
            "secret_key": SECRET_KEY,
        }})
    );
    // The chart's own storage file alone would use no keys.
    assert_eq!(
        config_file(cm, "003-storage.yaml")["storage"]["stow"]["config"]["auth_type"],
        "iam"
    );
    assert_eq!(
        storage["signedUrl"]["stowConfigOverride"],
        json!({"endpoint": ENDPOINT})
    );
    assert_eq!(
        flyte_config["propeller"]["rawoutput-prefix"],
        "s3://demo-data/data"
    );

    // The database, as on the clouds, but without TLS (the server has none).
    assert_eq!(
        flyte_config["database"]["postgres"],
        json!({
            "username": "flyte",
            "host": "postgres.db.svc.cluster.local",
            "port": 5432,
            "dbname": "flyte",
            "options": "sslmode=disable",
            "passwordPath": "/etc/flyte/db/password",
        })
    );
    assert!(
        volumes.contains(&json!({"name": "db-pass", "secret": {"secretName": "flyte-db-pass"}})),
        "{volumes:?}"
    );

    // No workload identity.
    let sa = find(&docs, "ServiceAccount", "flyte-backend");
    assert!(
        sa["metadata"]["annotations"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{sa}"
    );

    // Task pods: the endpoint and region in plain environment, the keys from a Secret of
    // their namespace.
    let k8s = &flyte_config["plugins"]["k8s"];
    // Names as Flyte reads them: the map shape would lowercase them.
    let env = task_pod_env(&flyte_config);
    assert_eq!(env["FLYTE_AWS_ENDPOINT"], ENDPOINT, "{k8s}");
    assert_eq!(env["AWS_REGION"], "us-east-1", "{k8s}");
    assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-1", "{k8s}");
    assert_eq!(
        k8s["default-env-from-secrets"],
        json!([TASK_STORAGE_SECRET_NAME])
    );
    let templates = find(
        &docs,
        "ConfigMap",
        &format!("{FULLNAME}-cluster-resource-templates"),
    );
    let names: Vec<&String> = templates["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        ["010_namespace.yaml", "020_task_storage_credentials.yaml"]
    );
    let template = templates["data"]["020_task_storage_credentials.yaml"]
        .as_str()
        .unwrap();
    // Flyte's sync, per domain, from the customData it loads: each `{{ var }}` replaced by
    // the text of the mounted file the domain's `valueFrom.filePath` names.
    let written = &flyte_config["cluster_resources"]["customData"];
    assert!(written.is_array(), "{written}");
    let custom = custom_data(&flyte_config);
    assert_eq!(
        custom.keys().collect::<Vec<_>>(),
        ["development", "production"]
    );
    for (domain, vars) in &custom {
        let namespace = format!("flytesnacks-{domain}");
        let made = sync_template(template, "flytesnacks", domain, vars, |path| {
            let file = path
                .strip_prefix(&format!("{FLYTE_CONFIG_DIR}/"))
                .unwrap_or_else(|| panic!("{path} is not in the config directory"));
            files[file].clone()
        });
        let made: Value = serde_saphyr::from_str(&made).unwrap();
        assert_eq!(made["kind"], "Secret");
        assert_eq!(
            made["metadata"],
            json!({"name": TASK_STORAGE_SECRET_NAME, "namespace": namespace})
        );
        let decode = |var: &str| {
            let b64 = made["data"][var].as_str().unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            String::from_utf8(bytes).unwrap()
        };
        assert_eq!(decode("FLYTE_AWS_ACCESS_KEY_ID"), ACCESS_KEY, "{domain}");
        assert_eq!(
            decode("FLYTE_AWS_SECRET_ACCESS_KEY"),
            SECRET_KEY,
            "{domain}"
        );
    }
}

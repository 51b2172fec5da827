//! Helm values for Flyte's v1 charts, `flyte-binary` (here) and `flyte-core` ([`core`]),
//! made from a deployment's outputs, and the database password as a separate Secret
//! manifest.
//!
//! The values never contain the password: the chart mounts the Secret and Flyte reads the
//! file named by `passwordPath`. What differs per cloud (storage, identities, pod labels)
//! is one [`CloudIdentity`], shared by both charts.

use std::collections::BTreeMap;

use flyteinfra_core::Value;
use serde::{Deserialize, Serialize};

use crate::config::{Chart, Cloud, Config, Style};

pub mod core;
pub mod multi;
pub use self::core::{FlyteCoreValues, flyte_core};
pub use self::multi::{ClusterFiles, MultiRendered, multi_cluster};

/// The Secret holding the database password, created by the user from the manifest
/// flyteinfra writes (`kubectl apply -f`), mounted by the chart.
pub const DB_SECRET_NAME: &str = "flyte-db-pass";
/// The Secret's key holding the password.
pub const DB_SECRET_KEY: &str = "password";
/// Where the Secret is mounted in the Flyte pod.
pub const DB_SECRET_MOUNT: &str = "/etc/flyte/db";

/// Why values cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValuesError {
    /// An output the values need is missing (not applied yet).
    #[error("output `{0}` is missing: run `flyteinfra apply` first")]
    MissingOutput(String),
    /// Something this version cannot make for a cloud yet; the text says what to do instead.
    #[error("{0}")]
    Unsupported(String),
}

/// The subset of the `flyte-binary` chart's values flyteinfra sets, keyed exactly as the
/// chart's `values.yaml`. Unknown keys are refused when parsing, so the tests prove every
/// key flyteinfra emits exists in this model (kept in step with the chart by hand).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlyteBinaryValues {
    /// `configuration`.
    pub configuration: Configuration,
    /// `serviceAccount`.
    pub service_account: ServiceAccount,
    /// `deployment`.
    pub deployment: Deployment,
    /// `clusterResourceTemplates`.
    pub cluster_resource_templates: ClusterResourceTemplates,
}

/// `configuration`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Configuration {
    /// `configuration.database`.
    pub database: Database,
    /// `configuration.storage`.
    pub storage: Storage,
    /// `configuration.inline`: raw Flyte configuration merged over the generated one.
    pub inline: serde_json::Value,
}

/// `configuration.database`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Database {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: i64,
    /// Database name.
    pub dbname: String,
    /// User.
    pub username: String,
    /// The mounted password file.
    pub password_path: String,
    /// libpq options.
    pub options: String,
}

/// `configuration.storage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Storage {
    /// `s3`, `gcs` or `azure`.
    pub provider: String,
    /// Metadata bucket.
    pub metadata_container: String,
    /// Raw-data bucket.
    pub user_data_container: String,
    /// `providerConfig`.
    pub provider_config: ProviderConfig,
}

/// `configuration.storage.providerConfig`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// `s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    /// `gcs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsConfig>,
    /// `azure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureConfig>,
}

/// `configuration.storage.providerConfig.azure`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The storage account name (`stow.config.account`). No `key`: with none, stow
    /// authenticates with Entra ID, here the pod's Workload Identity token.
    pub account: String,
}

/// `configuration.storage.providerConfig.gcs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    /// The project id (`stow.config.project_id`); credentials come from Workload Identity.
    pub project: String,
}

/// `configuration.storage.providerConfig.s3`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Config {
    /// Region.
    pub region: String,
    /// `iam` (IRSA) or `accesskey`.
    pub auth_type: String,
}

/// `serviceAccount`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccount {
    /// Create it.
    pub create: bool,
    /// Its pinned name (the identity's trust names it).
    pub name: String,
    /// Its annotations (the cloud identity).
    pub annotations: BTreeMap<String, String>,
}

/// `deployment`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployment {
    /// `image`.
    pub image: Image,
    /// Volumes (the password Secret).
    pub extra_volumes: Vec<serde_json::Value>,
    /// Mounts (the password Secret).
    pub extra_volume_mounts: Vec<serde_json::Value>,
    /// Labels on the Flyte pod (Azure: the Workload Identity webhook acts only on pods
    /// labelled `azure.workload.identity/use`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
}

/// `deployment.image`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// The pinned Flyte image tag.
    pub tag: String,
}

/// `clusterResourceTemplates`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterResourceTemplates {
    /// File name → Kubernetes manifest template. Replaces the chart's default, so the
    /// Namespace template is repeated here.
    pub inline: BTreeMap<String, String>,
}

/// Flyte's `plugins.k8s` defaults for every task pod (both charts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct K8sPluginDefaults {
    /// Labels.
    pub default_labels: BTreeMap<String, String>,
    /// Environment variables.
    pub default_env_vars: BTreeMap<String, String>,
}

/// The values file and the Secret manifest for one deployment.
pub struct Rendered<M> {
    /// The values, as YAML (no secrets).
    pub values: String,
    /// The typed values (for tests and callers).
    pub model: M,
    /// The Secret manifest holding the password (write it mode 0600).
    pub secret: String,
    /// The `helm` command that installs the chart with these values.
    pub helm_command: String,
}

/// Values for the chart the config names ([`Rendered::model`] says which), on one
/// cluster; a multi-cluster deployment has one file per cluster: [`multi_cluster`].
pub fn render(
    config: &Config,
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
) -> Result<Rendered<Chart>, ValuesError> {
    if config.style == Style::MultiCluster {
        return Err(ValuesError::Unsupported(
            "a multi-cluster deployment has one values file per cluster: \
             write them all with `flyteinfra values --out-dir DIR`"
                .into(),
        ));
    }
    let chart = config.flyte.chart;
    Ok(match chart {
        Chart::FlyteBinary => flyte_binary(config, cloud, outputs)?.with_model(chart),
        Chart::FlyteCore => flyte_core(config, cloud, outputs)?.with_model(chart),
    })
}

impl<M> Rendered<M> {
    /// The same files with another model.
    pub fn with_model<N>(self, model: N) -> Rendered<N> {
        Rendered {
            values: self.values,
            model,
            secret: self.secret,
            helm_command: self.helm_command,
        }
    }
}

/// The values file's name: one per chart and cloud, so the two charts' files never mix.
pub fn file_name(chart: Chart, cloud: Cloud) -> String {
    match chart {
        Chart::FlyteBinary => format!("flyte-values-{cloud}.yaml"),
        Chart::FlyteCore => format!("flyte-core-values-{cloud}.yaml"),
    }
}

/// The `helm upgrade --install` command for the config's chart, with `values` as the file.
pub fn helm_command(config: &Config, values: &str) -> String {
    let fl = &config.flyte;
    format!(
        "helm upgrade --install {} flyteorg/{} --version {} --namespace {} --create-namespace -f {values}",
        fl.release,
        fl.chart.as_str(),
        fl.chart_version,
        fl.namespace
    )
}

/// The header every values file starts with.
fn header(config: &Config, cloud: Cloud, helm_command: &str) -> String {
    format!(
        "# {} values written by flyteinfra for deployment `{}` ({cloud}).\n\
         # Install: {helm_command}\n\
         # The database password is not here: apply the Secret manifest first.\n",
        config.flyte.chart.as_str(),
        config.name,
    )
}

fn out<'a>(outputs: &'a BTreeMap<String, Value>, name: &str) -> Result<&'a Value, ValuesError> {
    outputs
        .get(name)
        .ok_or_else(|| ValuesError::MissingOutput(name.to_string()))
}

fn out_s(outputs: &BTreeMap<String, Value>, name: &str) -> Result<String, ValuesError> {
    let v = out(outputs, name)?;
    // The one secret output, the password, goes to the 0600 Secret manifest only.
    Ok(v.expose_str().map_or_else(|| v.to_string(), str::to_string))
}

/// Makes `flyte-binary` values from a deployment's outputs.
pub fn flyte_binary(
    config: &Config,
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
) -> Result<Rendered<FlyteBinaryValues>, ValuesError> {
    let fl = &config.flyte;
    let ident = CloudIdentity::for_cloud(cloud, outputs, &fl.domains)?;
    let metadata = out_s(outputs, ident.containers.0)?;
    let data = out_s(outputs, ident.containers.1)?;
    let task_var = ident.task_var;

    let mut custom_data = serde_json::Map::new();
    for (domain, identity) in &ident.task_identities {
        custom_data.insert(
            domain.clone(),
            serde_json::json!({ task_var: { "value": identity } }),
        );
    }
    let domains: Vec<_> = fl
        .domains
        .iter()
        .map(|d| serde_json::json!({ "id": d, "name": d }))
        .collect();
    // The config's domains, which may not be Flyte's default three.
    let mut inline = serde_json::json!({
        "cluster_resources": { "customData": custom_data },
        "domains": domains,
    });
    if metadata != data {
        // Flyte refuses buckets other than the metadata one unless this is on.
        inline["storage"] = serde_json::json!({ "enable-multicontainer": true });
    }
    if let Some(k8s) = ident.task_pod_defaults() {
        inline["plugins"] = serde_json::json!({ "k8s": k8s });
    }
    if let Some(key) = ident.role_name_key {
        inline["flyteadmin"] = serde_json::json!({ "roleNameKey": key });
    }

    let templates = BTreeMap::from([
        (
            "010_namespace.yaml".to_string(),
            NAMESPACE_TEMPLATE.to_string(),
        ),
        (
            "020_task_service_account.yaml".to_string(),
            ident.task_service_account_template(),
        ),
    ]);

    let model = FlyteBinaryValues {
        configuration: Configuration {
            database: database(outputs, DB_SECRET_MOUNT)?,
            storage: Storage {
                provider: ident.store.provider().to_string(),
                metadata_container: metadata,
                user_data_container: data,
                provider_config: ident.store.provider_config(),
            },
            inline,
        },
        service_account: ServiceAccount {
            create: true,
            name: fl.service_account.clone(),
            annotations: [(
                ident.annotation.to_string(),
                out_s(outputs, ident.backend_output)?,
            )]
            .into(),
        },
        deployment: Deployment {
            image: Image {
                tag: fl.image_tag.clone(),
            },
            extra_volumes: vec![serde_json::json!({
                "name": "db-pass",
                "secret": { "secretName": DB_SECRET_NAME },
            })],
            extra_volume_mounts: vec![serde_json::json!({
                "name": "db-pass",
                "mountPath": DB_SECRET_MOUNT,
                "readOnly": true,
            })],
            pod_labels: ident.pod_labels.clone(),
        },
        cluster_resource_templates: ClusterResourceTemplates { inline: templates },
    };
    let helm_command = helm_command(config, "<values>");
    let values = format!(
        "{}{}",
        header(config, cloud, &helm_command),
        to_yaml(&model)
    );
    let password = out_s(outputs, "db_password")?;
    let secret = secret_manifest(&fl.namespace, &password);
    Ok(Rendered {
        values,
        model,
        secret,
        helm_command,
    })
}

/// The cluster-resource template of each task namespace (the chart's own default is
/// replaced by the list flyteinfra gives, so it is repeated).
const NAMESPACE_TEMPLATE: &str =
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: '{{ namespace }}'\n";

/// The database block both charts take (`configuration.database`, `db.*.database`): TLS
/// always, the password read from the Secret mounted at `mount`.
fn database(outputs: &BTreeMap<String, Value>, mount: &str) -> Result<Database, ValuesError> {
    let port = match out(outputs, "db_port")? {
        Value::Int(i) => *i,
        Value::Str(s) => s.parse().unwrap_or(5432),
        _ => 5432,
    };
    Ok(Database {
        host: out_s(outputs, "db_host")?,
        port,
        dbname: out_s(outputs, "db_name")?,
        username: out_s(outputs, "db_username")?,
        password_path: format!("{mount}/{DB_SECRET_KEY}"),
        options: "sslmode=require".to_string(),
    })
}

/// Azure Workload Identity's webhook injects the token only into pods with this label.
const AZURE_WI_LABEL: &str = "azure.workload.identity/use";

/// The object store of a cloud, with what each chart needs to reach it.
enum Store {
    S3(S3Config),
    Gcs(GcsConfig),
    Azure(AzureConfig),
}

impl Store {
    /// `flyte-binary`'s `storage.provider`.
    fn provider(&self) -> &'static str {
        match self {
            Store::S3(_) => "s3",
            Store::Gcs(_) => "gcs",
            Store::Azure(_) => "azure",
        }
    }

    /// The URI scheme Flyte uses for it.
    fn scheme(&self) -> &'static str {
        match self {
            Store::S3(_) => "s3",
            Store::Gcs(_) => "gs",
            Store::Azure(_) => "abfs",
        }
    }

    /// `flyte-binary`'s `storage.providerConfig`: this store's block only.
    fn provider_config(&self) -> ProviderConfig {
        let mut c = ProviderConfig::default();
        match self {
            Store::S3(s3) => c.s3 = Some(s3.clone()),
            Store::Gcs(gcs) => c.gcs = Some(gcs.clone()),
            Store::Azure(azure) => c.azure = Some(azure.clone()),
        }
        c
    }
}

/// What differs per cloud: the object store and the workload identity wiring.
struct CloudIdentity {
    store: Store,
    /// The outputs naming the metadata and the raw-data bucket (or container).
    containers: (&'static str, &'static str),
    /// The service-account annotation that binds a KSA to the cloud identity.
    annotation: &'static str,
    /// The output naming the identity of every backend component (single cluster; a
    /// multi-cluster deployment has one per component instead).
    backend_output: &'static str,
    /// Domain → the task identity its namespaces' `default` service account names.
    task_identities: BTreeMap<String, String>,
    /// The cluster-resource template variable carrying the task identity.
    task_var: &'static str,
    /// Labels on the backend pods, and on every task pod (`plugins.k8s.default-labels`).
    pod_labels: BTreeMap<String, String>,
    /// Environment of every task pod (`plugins.k8s.default-env-vars`).
    task_pod_env: BTreeMap<String, String>,
    /// The annotation key flyteadmin puts a launch plan's `assumableIamRole` under (AWS):
    /// without one, such a workflow is rejected (flyteorg/flyte#3789).
    role_name_key: Option<&'static str>,
}

impl CloudIdentity {
    /// The `default` service account of each task namespace, annotated with the task
    /// identity through the template variable (filled per domain from `customData`).
    fn task_service_account_template(&self) -> String {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: '{{{{ namespace }}}}'\n  annotations:\n    {}: '{{{{ {} }}}}'\n",
            self.annotation, self.task_var
        )
    }

    /// `plugins.k8s` defaults for task pods, if the cloud needs any.
    fn task_pod_defaults(&self) -> Option<K8sPluginDefaults> {
        (!self.pod_labels.is_empty() || !self.task_pod_env.is_empty()).then(|| K8sPluginDefaults {
            default_labels: self.pod_labels.clone(),
            default_env_vars: self.task_pod_env.clone(),
        })
    }

    fn for_cloud(
        cloud: Cloud,
        outputs: &BTreeMap<String, Value>,
        domains: &[String],
    ) -> Result<CloudIdentity, ValuesError> {
        // One task identity for every domain, or (Azure past 20 federated credentials)
        // one per domain, `<output>_<domain>`.
        let per_domain = |output: &str| -> Result<BTreeMap<String, String>, ValuesError> {
            domains
                .iter()
                .map(|d| {
                    let per = format!("{output}_{d}");
                    let name = if outputs.contains_key(&per) {
                        &per
                    } else {
                        output
                    };
                    let id = out_s(outputs, name)?;
                    // Flyte fails a domain's namespace sync on an empty value.
                    if id.is_empty() {
                        return Err(ValuesError::MissingOutput(name.to_string()));
                    }
                    Ok((d.clone(), id))
                })
                .collect()
        };
        match cloud {
            Cloud::Aws => Ok(CloudIdentity {
                store: Store::S3(S3Config {
                    region: out_s(outputs, "region")?,
                    auth_type: "iam".to_string(),
                }),
                containers: ("metadata_bucket", "data_bucket"),
                annotation: "eks.amazonaws.com/role-arn",
                backend_output: "backend_role_arn",
                task_identities: per_domain("task_role_arn")?,
                task_var: "taskRole",
                pod_labels: BTreeMap::new(),
                task_pod_env: BTreeMap::new(),
                role_name_key: Some("iam.amazonaws.com/role"),
            }),
            // Workload Identity: each KSA names its Google service account; GCS credentials
            // then come from the metadata server (no key file, `json: ""`).
            Cloud::Gcp => Ok(CloudIdentity {
                store: Store::Gcs(GcsConfig {
                    project: out_s(outputs, "project")?,
                }),
                containers: ("metadata_bucket", "data_bucket"),
                annotation: "iam.gke.io/gcp-service-account",
                backend_output: "backend_service_account",
                task_identities: per_domain("task_service_account")?,
                task_var: "taskGsa",
                pod_labels: BTreeMap::new(),
                task_pod_env: BTreeMap::new(),
                role_name_key: None,
            }),
            // Workload Identity on AKS: the KSA names the managed identity's client id, the
            // webhook injects a token into labelled pods only, and task code (flytekit's
            // adlfs) finds the account from the environment, having no key.
            Cloud::Azure => {
                let account = out_s(outputs, "storage_account")?;
                Ok(CloudIdentity {
                    store: Store::Azure(AzureConfig {
                        account: account.clone(),
                    }),
                    containers: ("metadata_container", "data_container"),
                    annotation: "azure.workload.identity/client-id",
                    backend_output: "backend_client_id",
                    task_identities: per_domain("task_client_id")?,
                    task_var: "taskClientId",
                    pod_labels: [(AZURE_WI_LABEL.to_string(), "true".to_string())].into(),
                    task_pod_env: [("AZURE_STORAGE_ACCOUNT_NAME".to_string(), account)].into(),
                    role_name_key: None,
                })
            }
            Cloud::Sandbox => Err(ValuesError::Unsupported(
                "the sandbox style's values are not built yet".into(),
            )),
        }
    }
}

/// YAML for any serializable value (block style).
fn to_yaml<T: Serialize>(v: &T) -> String {
    serde_saphyr::to_string(v).expect("plain data serializes")
}

/// The Kubernetes Secret manifest holding the database password.
fn secret_manifest(namespace: &str, password: &str) -> String {
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": DB_SECRET_NAME, "namespace": namespace },
        "type": "Opaque",
        "stringData": { DB_SECRET_KEY: password },
    });
    to_yaml(&manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PASSWORD: &str = "PlantedSecret0123456789abcdefXYZ";

    fn outputs(data_bucket: &str) -> BTreeMap<String, Value> {
        [
            ("region", Value::from("us-east-1")),
            ("db_host", Value::from("db.example.internal")),
            ("db_port", Value::Int(5432)),
            ("db_name", Value::from("flyte")),
            ("db_username", Value::from("flyte")),
            ("db_password", Value::from(PASSWORD)),
            ("metadata_bucket", Value::from("meta-b")),
            ("data_bucket", Value::from(data_bucket)),
            (
                "backend_role_arn",
                Value::from("arn:aws:iam::1:role/backend"),
            ),
            ("task_role_arn", Value::from("arn:aws:iam::1:role/tasks")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn config() -> Config {
        Config::parse(
            "name: demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n  service_account: flyte-backend\n  image_tag: v1.16.8\n  domains: [development, production]\n",
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn values_parse_back_into_the_chart_model_field_by_field() {
        let (r, parsed) = binary_parsed(Cloud::Aws, &outputs("data-b"));
        let db = &parsed.configuration.database;
        assert_eq!(db.host, "db.example.internal");
        assert_eq!(db.port, 5432);
        assert_eq!(db.password_path, "/etc/flyte/db/password");
        assert_eq!(db.options, "sslmode=require");
        let st = &parsed.configuration.storage;
        assert_eq!(
            (st.provider.as_str(), st.metadata_container.as_str()),
            ("s3", "meta-b")
        );
        assert_eq!(st.user_data_container, "data-b");
        let s3 = st.provider_config.s3.as_ref().unwrap();
        assert_eq!(
            (s3.region.as_str(), s3.auth_type.as_str()),
            ("us-east-1", "iam")
        );
        assert_eq!(parsed.service_account.name, "flyte-backend");
        assert_eq!(
            parsed.service_account.annotations["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::1:role/backend"
        );
        assert_eq!(parsed.deployment.image.tag, "v1.16.8");
        let inline = &parsed.configuration.inline;
        assert_eq!(inline["storage"]["enable-multicontainer"], true);
        for d in ["development", "production"] {
            assert_eq!(
                inline["cluster_resources"]["customData"][d]["taskRole"]["value"],
                "arn:aws:iam::1:role/tasks"
            );
        }
        assert_eq!(
            inline["domains"],
            serde_json::json!([
                {"id": "development", "name": "development"},
                {"id": "production", "name": "production"},
            ])
        );
        assert_eq!(
            inline["flyteadmin"]["roleNameKey"],
            "iam.amazonaws.com/role"
        );
        let t = &parsed.cluster_resource_templates.inline;
        assert!(t["010_namespace.yaml"].contains("name: '{{ namespace }}'"));
        assert!(
            t["020_task_service_account.yaml"]
                .contains("eks.amazonaws.com/role-arn: '{{ taskRole }}'")
        );
        assert!(
            r.helm_command
                .contains("flyteorg/flyte-binary --version v1.16.8")
        );
    }

    #[test]
    fn the_password_is_in_the_secret_only() {
        let r = flyte_binary(&config(), Cloud::Aws, &outputs("data-b")).unwrap();
        assert!(!r.values.contains(PASSWORD));
        assert!(r.secret.contains(PASSWORD));
        let secret: serde_json::Value = serde_saphyr::from_str(&r.secret).unwrap();
        assert_eq!(secret["metadata"]["name"], DB_SECRET_NAME);
        assert_eq!(secret["stringData"][DB_SECRET_KEY], PASSWORD);
        // The mounted Secret is the one the values name.
        assert!(r.values.contains(DB_SECRET_NAME));
    }

    /// String outputs by name, with `db_port` 5432.
    fn string_outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .chain([("db_port".to_string(), Value::Int(5432))])
            .collect()
    }

    /// `flyte_binary` on `cloud`, parsed back, which must give the model again.
    fn binary_parsed(
        cloud: Cloud,
        o: &BTreeMap<String, Value>,
    ) -> (Rendered<FlyteBinaryValues>, FlyteBinaryValues) {
        let r = flyte_binary(&config(), cloud, o).unwrap();
        let parsed: FlyteBinaryValues = serde_saphyr::from_str(&r.values).unwrap();
        assert_eq!(parsed, r.model);
        (r, parsed)
    }

    fn gcp_outputs() -> BTreeMap<String, Value> {
        string_outputs(&[
            ("project", "my-proj"),
            ("region", "us-central1"),
            ("db_host", "10.20.0.3"),
            ("db_name", "flyte"),
            ("db_username", "flyte"),
            ("db_password", PASSWORD),
            ("metadata_bucket", "meta-g"),
            ("data_bucket", "data-g"),
            (
                "backend_service_account",
                "demo-backend@my-proj.iam.gserviceaccount.com",
            ),
            (
                "task_service_account",
                "demo-tasks@my-proj.iam.gserviceaccount.com",
            ),
        ])
    }

    #[test]
    fn gcp_values_parse_back_field_by_field() {
        let (r, parsed) = binary_parsed(Cloud::Gcp, &gcp_outputs());
        let db = &parsed.configuration.database;
        assert_eq!(
            (db.host.as_str(), db.port, db.options.as_str()),
            ("10.20.0.3", 5432, "sslmode=require")
        );
        assert_eq!(db.password_path, "/etc/flyte/db/password");
        let st = &parsed.configuration.storage;
        assert_eq!(st.provider, "gcs");
        assert_eq!(
            (
                st.metadata_container.as_str(),
                st.user_data_container.as_str()
            ),
            ("meta-g", "data-g")
        );
        assert_eq!(st.provider_config.gcs.as_ref().unwrap().project, "my-proj");
        assert!(st.provider_config.s3.is_none());
        assert!(!r.values.contains("s3:"), "{}", r.values);
        assert_eq!(
            parsed.service_account.annotations,
            BTreeMap::from([(
                "iam.gke.io/gcp-service-account".to_string(),
                "demo-backend@my-proj.iam.gserviceaccount.com".to_string()
            )])
        );
        let inline = &parsed.configuration.inline;
        assert_eq!(inline["storage"]["enable-multicontainer"], true);
        for d in ["development", "production"] {
            assert_eq!(
                inline["cluster_resources"]["customData"][d]["taskGsa"]["value"],
                "demo-tasks@my-proj.iam.gserviceaccount.com"
            );
        }
        let t = &parsed.cluster_resource_templates.inline;
        assert!(t["010_namespace.yaml"].contains("name: '{{ namespace }}'"));
        assert!(
            t["020_task_service_account.yaml"]
                .contains("iam.gke.io/gcp-service-account: '{{ taskGsa }}'"),
            "{}",
            t["020_task_service_account.yaml"]
        );
        assert!(!r.values.contains(PASSWORD));
        assert!(r.secret.contains(PASSWORD));
    }

    #[test]
    fn gcp_values_need_the_service_accounts() {
        let mut o = gcp_outputs();
        o.remove("task_service_account");
        let err = flyte_binary(&config(), Cloud::Gcp, &o).err().unwrap();
        assert!(err.to_string().contains("`task_service_account`"), "{err}");
    }

    fn azure_outputs() -> BTreeMap<String, Value> {
        string_outputs(&[
            ("subscription_id", "00000000-0000-0000-0000-000000000001"),
            ("storage_account", "flytedemoab12cd"),
            ("db_host", "demo-pg.private.postgres.database.azure.com"),
            ("db_name", "flyte"),
            ("db_username", "flyte"),
            ("db_password", PASSWORD),
            ("metadata_container", "flyte-metadata"),
            ("data_container", "flyte-data"),
            ("backend_client_id", "11111111-aaaa-4aaa-8aaa-000000000001"),
            ("task_client_id", "22222222-bbbb-4bbb-8bbb-000000000002"),
        ])
    }

    #[test]
    fn azure_values_wire_workload_identity_into_flyte_and_task_pods() {
        let (r, parsed) = binary_parsed(Cloud::Azure, &azure_outputs());
        let db = &parsed.configuration.database;
        assert_eq!(db.host, "demo-pg.private.postgres.database.azure.com");
        assert_eq!((db.port, db.options.as_str()), (5432, "sslmode=require"));
        let st = &parsed.configuration.storage;
        assert_eq!(st.provider, "azure");
        assert_eq!(
            (
                st.metadata_container.as_str(),
                st.user_data_container.as_str()
            ),
            ("flyte-metadata", "flyte-data")
        );
        assert_eq!(
            st.provider_config.azure,
            Some(AzureConfig {
                account: "flytedemoab12cd".into()
            })
        );
        assert!(st.provider_config.s3.is_none() && st.provider_config.gcs.is_none());
        // No account key anywhere: the pods authenticate with their federated token.
        assert!(!r.values.contains("key:"), "{}", r.values);
        assert_eq!(
            parsed.service_account.annotations,
            BTreeMap::from([(
                "azure.workload.identity/client-id".to_string(),
                "11111111-aaaa-4aaa-8aaa-000000000001".to_string()
            )])
        );
        assert_eq!(
            parsed.deployment.pod_labels,
            BTreeMap::from([(AZURE_WI_LABEL.to_string(), "true".to_string())])
        );
        let inline = &parsed.configuration.inline;
        // A string, not a YAML boolean: Kubernetes label values are strings.
        assert_eq!(
            inline["plugins"]["k8s"]["default-labels"][AZURE_WI_LABEL],
            "true"
        );
        assert_eq!(
            inline["plugins"]["k8s"]["default-env-vars"]["AZURE_STORAGE_ACCOUNT_NAME"],
            "flytedemoab12cd"
        );
        for d in ["development", "production"] {
            assert_eq!(
                inline["cluster_resources"]["customData"][d]["taskClientId"]["value"],
                "22222222-bbbb-4bbb-8bbb-000000000002"
            );
        }
        assert!(
            parsed.cluster_resource_templates.inline["020_task_service_account.yaml"]
                .contains("azure.workload.identity/client-id: '{{ taskClientId }}'")
        );
        assert!(!r.values.contains(PASSWORD));
        assert!(r.secret.contains(PASSWORD));
    }

    #[test]
    fn azure_per_domain_task_identities_reach_their_domains() {
        let mut o = azure_outputs();
        o.remove("task_client_id");
        o.insert("task_client_id_development".into(), Value::from("dev-id"));
        o.insert("task_client_id_production".into(), Value::from("prod-id"));
        let r = flyte_binary(&config(), Cloud::Azure, &o).unwrap();
        let custom = &r.model.configuration.inline["cluster_resources"]["customData"];
        assert_eq!(custom["development"]["taskClientId"]["value"], "dev-id");
        assert_eq!(custom["production"]["taskClientId"]["value"], "prod-id");
        // A domain with neither output is an error naming what is missing, never an empty
        // value (Flyte's namespace sync fails on one).
        o.remove("task_client_id_production");
        let err = flyte_binary(&config(), Cloud::Azure, &o).err().unwrap();
        assert!(err.to_string().contains("`task_client_id`"), "{err}");
        o.insert("task_client_id_production".into(), Value::from(""));
        let err = flyte_core(&config(), Cloud::Azure, &o).err().unwrap();
        assert!(
            err.to_string().contains("`task_client_id_production`"),
            "{err}"
        );
    }

    #[test]
    fn aws_and_gcp_pods_get_no_azure_labels() {
        let r = flyte_binary(&config(), Cloud::Aws, &outputs("d")).unwrap();
        assert!(r.model.deployment.pod_labels.is_empty());
        assert!(r.model.configuration.inline.get("plugins").is_none());
        assert!(!r.values.contains("podLabels"), "{}", r.values);
    }

    fn core_config(cloud: &str) -> Config {
        let section = match cloud {
            "aws" => "aws:\n  region: us-east-1\n",
            "gcp" => "gcp:\n  project: my-proj\n  region: us-central1\n",
            _ => {
                "azure:\n  subscription_id: 00000000-0000-0000-0000-000000000001\n  location: eastus\n  resource_group: rg\n"
            }
        };
        Config::parse(
            &format!(
                "name: demo\ncloud: {cloud}\n{section}flyte:\n  chart: flyte-core\n  image_tag: v1.16.8\n  domains: [development, production]\n"
            ),
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    /// What every cloud's `flyte-core` values share: the password only through the
    /// mounted Secret, named in both database blocks; TLS; the three storage components
    /// annotated with the backend identity and nothing for flytescheduler; the task
    /// identity per domain in the chart's list shape; the templates left raw.
    fn check_core(r: &Rendered<FlyteCoreValues>, annotation: &str, backend: &str, var: &str) {
        let parsed: FlyteCoreValues = serde_saphyr::from_str(&r.values).unwrap();
        assert_eq!(&parsed, &r.model);
        assert!(!r.values.contains(PASSWORD) && r.secret.contains(PASSWORD));
        assert_eq!(
            parsed.common.database_secret.as_ref().unwrap().name,
            DB_SECRET_NAME
        );
        let db = parsed.db.as_ref().unwrap();
        for db in [&db.admin.database, &db.datacatalog.database] {
            assert_eq!(db.password_path, "/etc/db/password");
            assert_eq!(db.options, "sslmode=require");
            assert_eq!(db.port, 5432);
        }
        for c in [
            &parsed.flyteadmin,
            &parsed.datacatalog,
            &parsed.flytepropeller,
        ] {
            let sa = c.service_account.as_ref().unwrap();
            assert!(sa.create);
            assert_eq!(
                sa.annotations,
                BTreeMap::from([(annotation.to_string(), backend.to_string())])
            );
            assert_eq!(c.image.as_ref().unwrap().tag, "v1.16.8");
        }
        assert!(!r.values.contains("flytescheduler:\n  serviceAccount"));
        let crm = &parsed.cluster_resource_manager;
        let crm_config = crm.config.as_ref().unwrap();
        let domains: Vec<&String> = crm_config
            .cluster_resources
            .custom_data
            .iter()
            .flat_map(|m| m.keys())
            .collect();
        assert_eq!(domains, ["development", "production"]);
        for m in &crm_config.cluster_resources.custom_data {
            for vars in m.values() {
                assert!(!vars[0][var].value.is_empty());
            }
        }
        assert_eq!(crm.templates[0].key, "aa_namespace");
        assert!(crm.templates[0].value.contains("name: '{{ namespace }}'"));
        assert!(
            crm.templates[1]
                .value
                .contains(&format!("{annotation}: '{{{{ {var} }}}}'"))
        );
        assert!(
            r.helm_command
                .contains("flyteorg/flyte-core --version v1.16.8")
        );
        assert!(r.values.starts_with("# flyte-core values"));
        let ids: Vec<&str> = parsed
            .configmap
            .domain
            .as_ref()
            .unwrap()
            .domains
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(ids, ["development", "production"]);
    }

    #[test]
    fn flyte_core_values_on_aws() {
        let r = flyte_core(&core_config("aws"), Cloud::Aws, &outputs("data-b")).unwrap();
        check_core(
            &r,
            "eks.amazonaws.com/role-arn",
            "arn:aws:iam::1:role/backend",
            "taskRole",
        );
        let m = &r.model;
        assert_eq!(
            m.db.as_ref().unwrap().admin.database.host,
            "db.example.internal"
        );
        assert_eq!(
            (m.storage.kind.as_str(), m.storage.bucket_name.as_deref()),
            ("s3", Some("meta-b"))
        );
        assert_eq!(m.storage.s3.as_ref().unwrap().auth_type, "iam");
        assert!(m.storage.enable_multi_container);
        assert_eq!(
            m.configmap.core.propeller.rawoutput_prefix,
            "s3://data-b/data"
        );
        assert_eq!(
            m.configmap
                .admin_server
                .as_ref()
                .unwrap()
                .flyteadmin
                .role_name_key,
            "iam.amazonaws.com/role"
        );
        assert!(m.configmap.k8s.is_none() && m.flyteadmin.pod_labels.is_empty());
    }

    #[test]
    fn flyte_core_values_on_gcp() {
        let r = flyte_core(&core_config("gcp"), Cloud::Gcp, &gcp_outputs()).unwrap();
        check_core(
            &r,
            "iam.gke.io/gcp-service-account",
            "demo-backend@my-proj.iam.gserviceaccount.com",
            "taskGsa",
        );
        let m = &r.model;
        assert_eq!(m.storage.kind, "gcs");
        assert_eq!(m.storage.gcs.as_ref().unwrap().project_id, "my-proj");
        assert_eq!(
            m.configmap.core.propeller.rawoutput_prefix,
            "gs://data-g/data"
        );
        assert!(m.configmap.admin_server.is_none());
    }

    #[test]
    fn flyte_core_values_on_azure() {
        let r = flyte_core(&core_config("azure"), Cloud::Azure, &azure_outputs()).unwrap();
        check_core(
            &r,
            "azure.workload.identity/client-id",
            "11111111-aaaa-4aaa-8aaa-000000000001",
            "taskClientId",
        );
        let m = &r.model;
        assert_eq!(
            (m.storage.kind.as_str(), m.storage.bucket_name.as_ref()),
            ("custom", None)
        );
        let custom = m.storage.custom.as_ref().unwrap();
        assert_eq!(custom.container, "flyte-metadata");
        assert_eq!(custom.stow.kind, "azure");
        assert_eq!(
            custom.stow.config,
            BTreeMap::from([("account".to_string(), "flytedemoab12cd".to_string())])
        );
        assert!(m.storage.enable_multi_container);
        assert_eq!(
            m.configmap.core.propeller.rawoutput_prefix,
            "abfs://flyte-data/data"
        );
        for c in [&m.flyteadmin, &m.datacatalog, &m.flytepropeller] {
            assert_eq!(c.pod_labels[AZURE_WI_LABEL], "true");
        }
        let k8s = &m.configmap.k8s.as_ref().unwrap().plugins.k8s;
        assert_eq!(k8s.default_labels[AZURE_WI_LABEL], "true");
        assert_eq!(
            k8s.default_env_vars,
            [BTreeMap::from([(
                "AZURE_STORAGE_ACCOUNT_NAME".to_string(),
                "flytedemoab12cd".to_string()
            )])]
        );
    }

    #[test]
    fn the_config_picks_the_chart_and_its_file() {
        let r = render(&core_config("aws"), Cloud::Aws, &outputs("d")).unwrap();
        assert_eq!(r.model, Chart::FlyteCore);
        assert_eq!(file_name(r.model, Cloud::Aws), "flyte-core-values-aws.yaml");
        let r = render(&config(), Cloud::Aws, &outputs("d")).unwrap();
        assert_eq!(r.model, Chart::FlyteBinary);
        assert_eq!(file_name(r.model, Cloud::Gcp), "flyte-values-gcp.yaml");
        assert!(r.values.starts_with("# flyte-binary values"));
    }

    #[test]
    fn an_unknown_flyte_core_key_is_refused_by_the_model() {
        let r = flyte_core(&core_config("aws"), Cloud::Aws, &outputs("d")).unwrap();
        let bad = r
            .values
            .replace("workflow_scheduler:", "workflow_sheduler:");
        assert!(serde_saphyr::from_str::<FlyteCoreValues>(&bad).is_err());
    }

    #[test]
    fn one_bucket_needs_no_multicontainer() {
        let r = flyte_binary(&config(), Cloud::Aws, &outputs("meta-b")).unwrap();
        assert!(r.model.configuration.inline.get("storage").is_none());
    }

    #[test]
    fn an_unknown_chart_key_is_refused_by_the_model() {
        let bad = "configuration: {database: {host: h, port: 1, dbname: d, username: u, passwordPath: p, options: o, typo: 1}, storage: {provider: s3, metadataContainer: m, userDataContainer: u, providerConfig: {}}, inline: {}}\nserviceAccount: {create: true, name: n, annotations: {}}\ndeployment: {image: {tag: t}, extraVolumes: [], extraVolumeMounts: []}\nclusterResourceTemplates: {inline: {}}\n";
        assert!(serde_saphyr::from_str::<FlyteBinaryValues>(bad).is_err());
    }

    #[test]
    fn missing_outputs_name_the_output() {
        let mut o = outputs("d");
        o.remove("db_host");
        let err = flyte_binary(&config(), Cloud::Aws, &o).err().unwrap();
        assert!(err.to_string().contains("`db_host`"));
    }
}

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

/// `style: sandbox`: the Secret holding the object store's keys, created by the user from
/// the manifest flyteinfra writes ([`sandbox_storage_secret`], mode 0600), named by the
/// values' `configuration.inlineSecretRef`. The chart projects every key of it into
/// Flyte's config directory ([`FLYTE_CONFIG_DIR`]) next to its own files.
pub const STORAGE_SECRET_NAME: &str = "flyte-storage-credentials";
/// Its key holding the Flyte config fragment with the keys (`storage.stow.config`).
/// Flyte reads the config directory's `*.yaml` files in name order, each merged over the
/// ones before, and the chart's own are `000-core.yaml` to `100-inline-config.yaml`:
/// this name sorts after them all, so its keys win.
pub const STORAGE_SECRET_CONFIG_FILE: &str = "200-storage-credentials.yaml";
/// Its key holding the access key id, base64-encoded: what the task namespaces' Secret
/// template takes (not `*.yaml`, so Flyte does not read it as config).
pub const STORAGE_SECRET_ACCESS_KEY_B64: &str = "task-access-key-id.b64";
/// Its key holding the secret access key, base64-encoded, as
/// [`STORAGE_SECRET_ACCESS_KEY_B64`].
pub const STORAGE_SECRET_SECRET_KEY_B64: &str = "task-secret-access-key.b64";
/// The Secret Flyte's cluster-resource sync makes in every task namespace from the values'
/// template, with `FLYTE_AWS_ACCESS_KEY_ID` and `FLYTE_AWS_SECRET_ACCESS_KEY`; task pods
/// take it whole as environment (`plugins.k8s.default-env-from-secrets`).
pub const TASK_STORAGE_SECRET_NAME: &str = "flyte-task-storage-credentials";
/// Where `flyte-binary` mounts its configuration (`--config <dir>/*.yaml`).
pub const FLYTE_CONFIG_DIR: &str = "/etc/flyte/config.d";

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
    /// Its `cluster_resources.customData` is a list ([`custom_data`]).
    pub inline: serde_json::Value,
    /// `configuration.inlineSecretRef`: a Secret whose files the chart adds to Flyte's
    /// config directory (`style: sandbox`: [`STORAGE_SECRET_NAME`], the store's keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_secret_ref: Option<String>,
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

/// `configuration.storage.providerConfig.s3` (`flyte-binary`; `flyte-core`'s `storage.s3`
/// has `region`, `authType` and `endpoint` only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Config {
    /// Region.
    pub region: String,
    /// `iam` (IRSA) or `accesskey`. The sandbox's is `iam` here although it uses keys: the
    /// chart demands `accessKey`/`secretKey` inline with `accesskey`, so the keys and
    /// `auth_type: accesskey` come from the `inlineSecretRef` Secret, merged last.
    pub auth_type: String,
    /// An S3-compatible store's endpoint (the sandbox). stow then addresses buckets in the
    /// path (it sets path-style whenever an endpoint is set; there is no key for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Plain HTTP to `endpoint` (stow's `disable_ssl`).
    #[serde(
        rename = "disableSSL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub disable_ssl: Option<bool>,
    /// Signature version 2 instead of 4 (stow's `v2_signing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v2_signing: Option<bool>,
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
    /// Environment variables (plain values only), as a list of one-key maps
    /// `[{NAME: value}]`, never the map `{NAME: value}`: Flyte loads its config with
    /// viper, which lowercases the keys of maps (`AWS_REGION` would reach task pods as
    /// `aws_region`). Lists keep their keys' case and decode into Flyte's
    /// `map[string]string` (`sliceToMapHook`), as for `customData` ([`custom_data`]).
    pub default_env_vars: Vec<BTreeMap<String, String>>,
    /// Secrets of the task's own namespace whose every key becomes an environment variable
    /// of the pod (`envFrom`, marked optional by Flyte): how a secret reaches task pods
    /// without its value in Flyte's config or the pod spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_env_from_secrets: Vec<String>,
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
    let mut h = format!(
        "# {} values written by flyteinfra for deployment `{}` ({cloud}).\n\
         # Install: {helm_command}\n\
         # The database password is not here: apply the Secret manifest first.\n",
        config.flyte.chart.as_str(),
        config.name,
    );
    if cloud == Cloud::Sandbox {
        h.push_str(&format!(
            "# Nor are the object store's keys: apply the manifest of Secret \
             `{STORAGE_SECRET_NAME}` first too.\n"
        ));
    }
    h
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
    let ident = CloudIdentity::for_cloud(config, cloud, outputs)?;
    let metadata = out_s(outputs, ident.containers.0)?;
    let data = out_s(outputs, ident.containers.1)?;

    // Domain → the cluster-resource template variables of its namespaces, in the list
    // shape of the chart's examples and `flyte-core`'s values: see [`custom_data`].
    let custom_data = custom_data(fl.domains.iter().map(|domain| {
        let mut vars = Vec::new();
        if let Some(w) = &ident.workload
            && let Some(identity) = w.task_identities.get(domain)
        {
            vars.push((w.task_var, serde_json::json!({ "value": identity })));
        }
        if ident.store_keys.is_some() {
            for (var, key) in [
                (TASK_ACCESS_KEY_VAR, STORAGE_SECRET_ACCESS_KEY_B64),
                (TASK_SECRET_KEY_VAR, STORAGE_SECRET_SECRET_KEY_B64),
            ] {
                vars.push((
                    var,
                    serde_json::json!({
                        "valueFrom": { "filePath": format!("{FLYTE_CONFIG_DIR}/{key}") }
                    }),
                ));
            }
        }
        (domain.as_str(), vars)
    }));
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
    if let Some(keys) = &ident.store_keys {
        // Signed URLs (fast registration, console downloads) are used off the cluster.
        inline["storage"]["signedUrl"] = serde_json::json!({
            "stowConfigOverride": { "endpoint": keys.signed_url_endpoint }
        });
    }
    if let Some(k8s) = ident.task_pod_defaults() {
        inline["plugins"] = serde_json::json!({ "k8s": k8s });
    }
    if let Some(key) = ident.role_name_key {
        inline["flyteadmin"] = serde_json::json!({ "roleNameKey": key });
    }

    let mut templates = BTreeMap::from([(
        "010_namespace.yaml".to_string(),
        NAMESPACE_TEMPLATE.to_string(),
    )]);
    if let Some(w) = &ident.workload {
        templates.insert(
            "020_task_service_account.yaml".to_string(),
            w.task_service_account_template(),
        );
    }
    if ident.store_keys.is_some() {
        templates.insert(
            "020_task_storage_credentials.yaml".to_string(),
            TASK_STORAGE_SECRET_TEMPLATE.to_string(),
        );
    }
    let mut db = database(outputs, DB_SECRET_MOUNT)?;
    if cloud == Cloud::Sandbox {
        // The clouds' servers enforce TLS; the sandbox's may have none.
        db.options = if config.database.require_ssl {
            "sslmode=require"
        } else {
            "sslmode=disable"
        }
        .to_string();
    }
    let annotations = match &ident.workload {
        Some(w) => [(w.annotation.to_string(), out_s(outputs, w.backend_output)?)].into(),
        None => BTreeMap::new(),
    };

    let model = FlyteBinaryValues {
        configuration: Configuration {
            database: db,
            storage: Storage {
                provider: ident.store.provider().to_string(),
                metadata_container: metadata,
                user_data_container: data,
                provider_config: ident.store.provider_config(),
            },
            inline,
            inline_secret_ref: ident
                .store_keys
                .as_ref()
                .map(|_| STORAGE_SECRET_NAME.to_string()),
        },
        service_account: ServiceAccount {
            create: true,
            name: fl.service_account.clone(),
            annotations,
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

/// `cluster_resources.customData` from domain → `(variable, source)` pairs, in the list
/// shape `[{domain: [{variable: source}]}]`, a one-key map per domain and per variable.
///
/// Never the map shape `{domain: {variable: source}}`: Flyte loads its config with viper,
/// which lowercases the keys of maps, so `taskRole` would reach the sync as `taskrole` and
/// `{{ taskRole }}` would stay in the manifest. Lists keep their keys' case (flytestdlib
/// re-reads them from the files, `restoreCaseSensitiveArrayKeys`) and decode into the
/// same maps (`sliceToMapHook`, which merges the list's one-key maps). A domain without
/// variables is left out.
fn custom_data<'a>(
    domains: impl IntoIterator<Item = (&'a str, Vec<(&'a str, serde_json::Value)>)>,
) -> serde_json::Value {
    domains
        .into_iter()
        .filter(|(_, vars)| !vars.is_empty())
        .map(|(domain, vars)| {
            let vars: Vec<_> = vars
                .into_iter()
                .map(|(var, source)| serde_json::json!({ var: source }))
                .collect();
            serde_json::json!({ domain: vars })
        })
        .collect()
}

/// The cluster-resource template of each task namespace (the chart's own default is
/// replaced by the list flyteinfra gives, so it is repeated).
const NAMESPACE_TEMPLATE: &str =
    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: '{{ namespace }}'\n";

/// The sandbox's template variables carrying the store's keys, base64-encoded, read by
/// Flyte from the files of [`STORAGE_SECRET_NAME`] (`valueFrom.filePath`) at each sync.
/// Lowercase, although `customData`'s list shape keeps case ([`custom_data`]).
const TASK_ACCESS_KEY_VAR: &str = "storage_access_key_id_b64";
/// See [`TASK_ACCESS_KEY_VAR`].
const TASK_SECRET_KEY_VAR: &str = "storage_secret_access_key_b64";

/// The sandbox's Secret in every task namespace, which task pods take as environment
/// ([`TASK_STORAGE_SECRET_NAME`]). `data` is base64, so any key fits the quotes.
const TASK_STORAGE_SECRET_TEMPLATE: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  \
     name: flyte-task-storage-credentials\n  namespace: '{{ namespace }}'\ntype: Opaque\n\
     data:\n  FLYTE_AWS_ACCESS_KEY_ID: '{{ storage_access_key_id_b64 }}'\n  \
     FLYTE_AWS_SECRET_ACCESS_KEY: '{{ storage_secret_access_key_b64 }}'\n";

/// The database block both charts take (`configuration.database`, `db.*.database`): TLS
/// always (the sandbox's `flyte-binary` values then follow `database.require_ssl`), the
/// password read from the Secret mounted at `mount`.
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
    /// How pods get their cloud identity; `None` in the sandbox, whose store takes keys.
    workload: Option<WorkloadIdentity>,
    /// Labels on the backend pods, and on every task pod (`plugins.k8s.default-labels`).
    pod_labels: BTreeMap<String, String>,
    /// Environment of every task pod (`plugins.k8s.default-env-vars`).
    task_pod_env: BTreeMap<String, String>,
    /// The annotation key flyteadmin puts a launch plan's `assumableIamRole` under (AWS):
    /// without one, such a workflow is rejected (flyteorg/flyte#3789).
    role_name_key: Option<&'static str>,
    /// The sandbox: the store takes keys, from [`STORAGE_SECRET_NAME`].
    store_keys: Option<StoreKeys>,
}

/// A cloud's workload identity: Kubernetes service accounts annotated with cloud
/// identities, the backend's and (per domain) the tasks'.
struct WorkloadIdentity {
    /// The service-account annotation that binds a KSA to the cloud identity.
    annotation: &'static str,
    /// The output naming the identity of every backend component (single cluster; a
    /// multi-cluster deployment has one per component instead).
    backend_output: &'static str,
    /// Domain → the task identity its namespaces' `default` service account names.
    task_identities: BTreeMap<String, String>,
    /// The cluster-resource template variable carrying the task identity.
    task_var: &'static str,
}

/// How a store reached with keys is wired (the sandbox).
struct StoreKeys {
    /// The endpoint signed URLs name (`storage.signedUrl.stowConfigOverride.endpoint`):
    /// the one clients off the cluster reach.
    signed_url_endpoint: String,
}

impl WorkloadIdentity {
    /// The `default` service account of each task namespace, annotated with the task
    /// identity through the template variable (filled per domain from `customData`).
    fn task_service_account_template(&self) -> String {
        format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: '{{{{ namespace }}}}'\n  annotations:\n    {}: '{{{{ {} }}}}'\n",
            self.annotation, self.task_var
        )
    }
}

impl CloudIdentity {
    /// The workload identity, which `flyte-core`'s values are built on; the sandbox has
    /// none (its values are `flyte-binary`'s only).
    fn workload(&self) -> Result<&WorkloadIdentity, ValuesError> {
        self.workload.as_ref().ok_or_else(|| {
            ValuesError::Unsupported(
                "`style: sandbox` installs `flyte-binary`: set `flyte.chart: flyte-binary` \
                 (flyte-core values for the sandbox are not built)"
                    .into(),
            )
        })
    }

    /// `plugins.k8s` defaults for task pods, if the cloud needs any.
    fn task_pod_defaults(&self) -> Option<K8sPluginDefaults> {
        (!self.pod_labels.is_empty() || !self.task_pod_env.is_empty()).then(|| K8sPluginDefaults {
            default_labels: self.pod_labels.clone(),
            default_env_vars: self
                .task_pod_env
                .iter()
                .map(|(k, v)| BTreeMap::from([(k.clone(), v.clone())]))
                .collect(),
            default_env_from_secrets: self
                .store_keys
                .iter()
                .map(|_| TASK_STORAGE_SECRET_NAME.to_string())
                .collect(),
        })
    }

    fn for_cloud(
        config: &Config,
        cloud: Cloud,
        outputs: &BTreeMap<String, Value>,
    ) -> Result<CloudIdentity, ValuesError> {
        let domains = &config.flyte.domains;
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
                    endpoint: None,
                    disable_ssl: None,
                    v2_signing: None,
                }),
                containers: ("metadata_bucket", "data_bucket"),
                workload: Some(WorkloadIdentity {
                    annotation: "eks.amazonaws.com/role-arn",
                    backend_output: "backend_role_arn",
                    task_identities: per_domain("task_role_arn")?,
                    task_var: "taskRole",
                }),
                pod_labels: BTreeMap::new(),
                task_pod_env: BTreeMap::new(),
                role_name_key: Some("iam.amazonaws.com/role"),
                store_keys: None,
            }),
            // Workload Identity: each KSA names its Google service account; GCS credentials
            // then come from the metadata server (no key file, `json: ""`).
            Cloud::Gcp => Ok(CloudIdentity {
                store: Store::Gcs(GcsConfig {
                    project: out_s(outputs, "project")?,
                }),
                containers: ("metadata_bucket", "data_bucket"),
                workload: Some(WorkloadIdentity {
                    annotation: "iam.gke.io/gcp-service-account",
                    backend_output: "backend_service_account",
                    task_identities: per_domain("task_service_account")?,
                    task_var: "taskGsa",
                }),
                pod_labels: BTreeMap::new(),
                task_pod_env: BTreeMap::new(),
                role_name_key: None,
                store_keys: None,
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
                    workload: Some(WorkloadIdentity {
                        annotation: "azure.workload.identity/client-id",
                        backend_output: "backend_client_id",
                        task_identities: per_domain("task_client_id")?,
                        task_var: "taskClientId",
                    }),
                    pod_labels: [(AZURE_WI_LABEL.to_string(), "true".to_string())].into(),
                    task_pod_env: [("AZURE_STORAGE_ACCOUNT_NAME".to_string(), account)].into(),
                    role_name_key: None,
                    store_keys: None,
                })
            }
            // An S3-compatible store reached with keys, which never appear in the values:
            // Flyte takes them from the `inlineSecretRef` Secret's config fragment, task
            // pods from a Secret Flyte makes in each task namespace out of the same
            // Secret's files. No workload identity: the service accounts carry none.
            Cloud::Sandbox => {
                let endpoint = out_s(outputs, "s3_endpoint")?;
                let region = out_s(outputs, "s3_region")?;
                let tls = config.sandbox.as_ref().map_or_else(
                    || endpoint.starts_with("https://"),
                    |s| s.object_store.tls(),
                );
                Ok(CloudIdentity {
                    store: Store::S3(S3Config {
                        region: region.clone(),
                        auth_type: "iam".to_string(),
                        endpoint: Some(endpoint.clone()),
                        disable_ssl: Some(!tls),
                        // Signature v4, which MinIO and every current S3-compatible store
                        // take (v2 is deprecated, and MinIO checks v4's region).
                        v2_signing: Some(false),
                    }),
                    containers: ("metadata_bucket", "data_bucket"),
                    workload: None,
                    pod_labels: BTreeMap::new(),
                    // flytekit reads the endpoint and keys from `FLYTE_AWS_*`; botocore
                    // and obstore sign for the region from `AWS_*`.
                    task_pod_env: [
                        ("FLYTE_AWS_ENDPOINT".to_string(), endpoint.clone()),
                        ("AWS_REGION".to_string(), region.clone()),
                        ("AWS_DEFAULT_REGION".to_string(), region),
                    ]
                    .into(),
                    role_name_key: None,
                    // Signed URLs are for clients outside the cluster: the address
                    // flyteinfra itself reached the store at, when it differs.
                    store_keys: Some(StoreKeys {
                        signed_url_endpoint: out_s(outputs, "s3_public_endpoint")
                            .unwrap_or(endpoint),
                    }),
                })
            }
        }
    }
}

/// YAML for any serializable value (block style).
fn to_yaml<T: Serialize>(v: &T) -> String {
    serde_saphyr::to_string(v).expect("plain data serializes")
}

/// `style: sandbox`: the manifest of Secret [`STORAGE_SECRET_NAME`] in `namespace` (Flyte's)
/// holding the object store's keys, for the user to apply before installing the chart.
/// Write it mode 0600 and never print it. It holds:
/// - [`STORAGE_SECRET_CONFIG_FILE`], the Flyte config fragment `storage.stow.config`
///   `{auth_type: accesskey, access_key_id, secret_key}`, which the chart mounts in Flyte's
///   config directory (`configuration.inlineSecretRef`) and Flyte merges over its own
///   storage config;
/// - [`STORAGE_SECRET_ACCESS_KEY_B64`] and [`STORAGE_SECRET_SECRET_KEY_B64`], the keys in
///   base64, which Flyte copies into Secret [`TASK_STORAGE_SECRET_NAME`] of every task
///   namespace for task pods.
pub fn sandbox_storage_secret(
    config: &Config,
    namespace: &str,
    access_key: &str,
    secret_key: &str,
) -> String {
    let fragment = to_yaml(&serde_json::json!({
        "storage": { "stow": { "config": {
            "auth_type": "accesskey",
            "access_key_id": access_key,
            "secret_key": secret_key,
        } } },
    }));
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": STORAGE_SECRET_NAME, "namespace": namespace },
        "type": "Opaque",
        "stringData": {
            STORAGE_SECRET_CONFIG_FILE: fragment,
            STORAGE_SECRET_ACCESS_KEY_B64: base64(access_key.as_bytes()),
            STORAGE_SECRET_SECRET_KEY_B64: base64(secret_key.as_bytes()),
        },
    });
    format!(
        "# The object store's keys for Flyte of deployment `{}`, written by flyteinfra.\n\
         # It holds secrets: keep it private (mode 0600) and never commit it.\n{}",
        config.name,
        to_yaml(&manifest)
    )
}

/// Standard base64 with padding (RFC 4648 §4), as Kubernetes Secrets' `data` takes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
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

    /// A list of one-key maps (`customData`, `default-env-vars`) merged into one map, as
    /// flytestdlib's `sliceToMapHook` does; the map shape is refused (Flyte would read
    /// its keys lowercased).
    fn merged(list: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        let items = list
            .as_array()
            .unwrap_or_else(|| panic!("must be a list of one-key maps, not {list}"));
        let mut map = serde_json::Map::new();
        for item in items {
            let item = item.as_object().unwrap();
            assert_eq!(item.len(), 1, "one key per list item: {item:?}");
            map.extend(item.clone());
        }
        map
    }

    /// `cluster_resources.customData` of `inline` as Flyte reads it: domain → variable →
    /// source.
    fn custom_data_of(inline: &serde_json::Value) -> serde_json::Value {
        merged(&inline["cluster_resources"]["customData"])
            .into_iter()
            .map(|(domain, vars)| (domain, serde_json::Value::Object(merged(&vars))))
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
                custom_data_of(inline)[d]["taskRole"]["value"],
                "arn:aws:iam::1:role/tasks"
            );
        }
        // The chart examples' shape (`eks-starter.yaml`): lists, whose keys keep case.
        assert!(
            r.values.contains(
                "      customData:\n      - development:\n        - taskRole:\n            value: arn:aws:iam::1:role/tasks\n      - production:\n"
            ),
            "{}",
            r.values
        );
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

    /// The `{{ var }}` names of a cluster-resource template, as Flyte's sync matches them
    /// (one space inside the braces).
    fn placeholders(template: &str) -> Vec<&str> {
        template
            .split("{{ ")
            .skip(1)
            .map(|rest| rest.split_once(" }}").unwrap().0)
            .collect()
    }

    /// On every cloud, every variable of every template has a value in every domain under
    /// the very name the template uses, `customData` being lists, which keep the case of
    /// their keys (a map's would reach Flyte lowercased: `taskrole`, never `taskRole`).
    #[test]
    fn every_template_variable_has_a_value_flyte_reads_in_every_domain() {
        for (config, cloud, o) in [
            (config(), Cloud::Aws, outputs("d")),
            (config(), Cloud::Gcp, gcp_outputs()),
            (config(), Cloud::Azure, azure_outputs()),
            (
                sandbox_config("", ""),
                Cloud::Sandbox,
                sandbox_outputs(MINIO),
            ),
        ] {
            let r = flyte_binary(&config, cloud, &o).unwrap();
            let values: serde_json::Value = serde_saphyr::from_str(&r.values).unwrap();
            let inline = &values["configuration"]["inline"];
            let reads = custom_data_of(inline);
            let reads = reads.as_object().unwrap();
            assert_eq!(
                reads.keys().collect::<Vec<_>>(),
                ["development", "production"],
                "{cloud}"
            );
            let mut used = 0;
            for (domain, vars) in reads {
                for (file, template) in &r.model.cluster_resource_templates.inline {
                    for var in placeholders(template) {
                        if var == "namespace" {
                            continue;
                        }
                        used += 1;
                        let source = &vars[var];
                        assert!(
                            source["value"].as_str().is_some_and(|v| !v.is_empty())
                                || source["valueFrom"]["filePath"].is_string(),
                            "{cloud} {domain} {file}: no value for `{var}` in {}",
                            inline["cluster_resources"]
                        );
                    }
                }
            }
            assert!(used >= 2, "{cloud}: no template variable at all");
        }
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
                custom_data_of(inline)[d]["taskGsa"]["value"],
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
            merged(&inline["plugins"]["k8s"]["default-env-vars"])["AZURE_STORAGE_ACCOUNT_NAME"],
            "flytedemoab12cd"
        );
        for d in ["development", "production"] {
            assert_eq!(
                custom_data_of(inline)[d]["taskClientId"]["value"],
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
        let custom = custom_data_of(&r.model.configuration.inline);
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

    const ACCESS_KEY: &str = "PlantedAccessKeyABCDEF";
    const SECRET_KEY: &str = "PlantedSecretKey/0123456789+xyz";

    /// A sandbox config: `postgres` and `object_store` lines added under their sections.
    fn sandbox_config(postgres: &str, object_store: &str) -> Config {
        Config::parse(
            &format!(
                "name: demo\nstyle: sandbox\nsandbox:\n  postgres:\n    host: postgres.db.svc.cluster.local\n    admin_password_env: PG_PASSWORD\n{postgres}  object_store:\n    endpoint: http://minio.minio.svc.cluster.local:9000\n    access_key_env: S3_ACCESS_KEY\n    secret_key_env: S3_SECRET_KEY\n{object_store}flyte:\n  service_account: flyte-backend\n  image_tag: v1.16.8\n  domains: [development, production]\n"
            ),
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    /// What the sandbox blueprint outputs (hand-built).
    fn sandbox_outputs(endpoint: &str) -> BTreeMap<String, Value> {
        string_outputs(&[
            ("db_host", "postgres.db.svc.cluster.local"),
            ("db_name", "flyte"),
            ("db_username", "flyte"),
            ("db_password", PASSWORD),
            ("metadata_bucket", "flyte-meta"),
            ("data_bucket", "flyte-data"),
            ("s3_endpoint", endpoint),
            ("s3_region", "us-east-1"),
        ])
    }

    const MINIO: &str = "http://minio.minio.svc.cluster.local:9000";

    fn sandbox_parsed(
        config: &Config,
        o: &BTreeMap<String, Value>,
    ) -> (Rendered<FlyteBinaryValues>, FlyteBinaryValues) {
        let r = flyte_binary(config, Cloud::Sandbox, o).unwrap();
        let parsed: FlyteBinaryValues = serde_saphyr::from_str(&r.values).unwrap();
        assert_eq!(parsed, r.model);
        (r, parsed)
    }

    #[test]
    fn sandbox_values_reach_the_store_with_keys_kept_out_of_them() {
        let config = sandbox_config("", "");
        let (r, parsed) = sandbox_parsed(&config, &sandbox_outputs(MINIO));
        let c = &parsed.configuration;
        assert_eq!(
            (c.database.host.as_str(), c.database.port),
            ("postgres.db.svc.cluster.local", 5432)
        );
        assert_eq!(
            (c.database.dbname.as_str(), c.database.username.as_str()),
            ("flyte", "flyte")
        );
        assert_eq!(c.database.password_path, "/etc/flyte/db/password");
        assert_eq!(c.database.options, "sslmode=require");
        assert_eq!(c.storage.provider, "s3");
        assert_eq!(
            (
                c.storage.metadata_container.as_str(),
                c.storage.user_data_container.as_str()
            ),
            ("flyte-meta", "flyte-data")
        );
        assert_eq!(
            c.storage.provider_config,
            ProviderConfig {
                s3: Some(S3Config {
                    region: "us-east-1".into(),
                    // `accesskey` comes from the Secret: the chart demands inline keys
                    // with it.
                    auth_type: "iam".into(),
                    endpoint: Some(MINIO.into()),
                    disable_ssl: Some(true),
                    v2_signing: Some(false),
                }),
                ..ProviderConfig::default()
            }
        );
        assert!(r.values.contains("disableSSL: true"), "{}", r.values);
        assert!(r.values.contains("v2Signing: false"), "{}", r.values);
        assert_eq!(c.inline_secret_ref.as_deref(), Some(STORAGE_SECRET_NAME));
        assert!(
            r.values
                .contains("inlineSecretRef: flyte-storage-credentials")
        );

        let inline = &c.inline;
        assert_eq!(inline["storage"]["enable-multicontainer"], true);
        assert_eq!(
            inline["storage"]["signedUrl"]["stowConfigOverride"]["endpoint"],
            MINIO
        );
        let k8s: K8sPluginDefaults =
            serde_json::from_value(inline["plugins"]["k8s"].clone()).unwrap();
        assert_eq!(
            k8s,
            K8sPluginDefaults {
                default_labels: BTreeMap::new(),
                default_env_vars: [
                    ("AWS_DEFAULT_REGION", "us-east-1"),
                    ("AWS_REGION", "us-east-1"),
                    ("FLYTE_AWS_ENDPOINT", MINIO),
                ]
                .into_iter()
                .map(|(k, v)| BTreeMap::from([(k.to_string(), v.to_string())]))
                .collect(),
                default_env_from_secrets: vec![TASK_STORAGE_SECRET_NAME.into()],
            }
        );
        // Each domain's namespaces get the keys from the mounted Secret's files.
        let custom = custom_data_of(inline);
        let custom = custom.as_object().unwrap();
        assert_eq!(
            custom.keys().collect::<Vec<_>>(),
            ["development", "production"]
        );
        for vars in custom.values() {
            assert_eq!(
                vars,
                &serde_json::json!({
                    "storage_access_key_id_b64": {"valueFrom": {"filePath": "/etc/flyte/config.d/task-access-key-id.b64"}},
                    "storage_secret_access_key_b64": {"valueFrom": {"filePath": "/etc/flyte/config.d/task-secret-access-key.b64"}},
                })
            );
            // Lowercase, so even the map shape would keep them (the list shape does).
            for var in vars.as_object().unwrap().keys() {
                assert_eq!(var, &var.to_lowercase());
            }
        }
        assert!(inline.get("flyteadmin").is_none());

        // No workload identity.
        assert!(parsed.service_account.annotations.is_empty());
        assert!(parsed.deployment.pod_labels.is_empty());
        let t = &parsed.cluster_resource_templates.inline;
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            ["010_namespace.yaml", "020_task_storage_credentials.yaml"]
        );
        // The database password through the mounted Secret only.
        assert!(!r.values.contains(PASSWORD) && r.secret.contains(PASSWORD));
        assert!(r.values.contains(DB_SECRET_NAME));
        assert!(
            r.values
                .contains(&format!("Secret `{STORAGE_SECRET_NAME}`"))
        );
        assert!(r.values.starts_with("# flyte-binary values"));
        // The keys are not an input of the values at all; the Secret holds them.
        let secret = sandbox_storage_secret(&config, "flyte", ACCESS_KEY, SECRET_KEY);
        for key in [ACCESS_KEY, SECRET_KEY] {
            assert!(!r.values.contains(key) && secret.contains(key));
        }
    }

    #[test]
    fn sandbox_disable_ssl_follows_the_stores_tls() {
        let https = "https://minio.example.com";
        for (config, endpoint, disable) in [
            (sandbox_config("", ""), MINIO, true),
            (sandbox_config("", "    tls: false\n"), MINIO, true),
        ] {
            let r = flyte_binary(&config, Cloud::Sandbox, &sandbox_outputs(endpoint)).unwrap();
            let s3 = r.model.configuration.storage.provider_config.s3.unwrap();
            assert_eq!(s3.disable_ssl, Some(disable), "{endpoint}");
        }
        let config = Config::parse(
            &serde_json::to_string(&sandbox_config("", ""))
                .unwrap()
                .replace(MINIO, https),
            Path::new("t.yaml"),
        )
        .unwrap();
        assert!(config.sandbox.as_ref().unwrap().object_store.tls());
        let r = flyte_binary(&config, Cloud::Sandbox, &sandbox_outputs(https)).unwrap();
        let s3 = r.model.configuration.storage.provider_config.s3.unwrap();
        assert_eq!(
            (s3.endpoint.as_deref(), s3.disable_ssl),
            (Some(https), Some(false))
        );
        assert!(r.values.contains("disableSSL: false"), "{}", r.values);
    }

    #[test]
    fn sandbox_sslmode_follows_require_ssl() {
        let o = sandbox_outputs(MINIO);
        let require = sandbox_config("", "");
        assert!(require.database.require_ssl);
        let r = flyte_binary(&require, Cloud::Sandbox, &o).unwrap();
        assert_eq!(r.model.configuration.database.options, "sslmode=require");
        // A server without TLS: `require_ssl` then defaults to false.
        let plain = sandbox_config("    tls: disable\n", "");
        assert!(!plain.database.require_ssl);
        let r = flyte_binary(&plain, Cloud::Sandbox, &o).unwrap();
        assert_eq!(r.model.configuration.database.options, "sslmode=disable");
        // The clouds keep `require` whatever `require_ssl` says.
        let mut aws = config();
        aws.database.require_ssl = false;
        let r = flyte_binary(&aws, Cloud::Aws, &outputs("d")).unwrap();
        assert_eq!(r.model.configuration.database.options, "sslmode=require");
    }

    /// What Flyte's cluster-resource sync does with a template: every `{{ var }}` replaced
    /// by the text of the file the domain's `valueFrom.filePath` names.
    fn substitute(template: &str, vars: &serde_json::Value, files: &serde_json::Value) -> String {
        let mut text = template.replace("{{ namespace }}", "flytesnacks-development");
        for (var, source) in vars.as_object().unwrap() {
            let path = source["valueFrom"]["filePath"].as_str().unwrap();
            let file = path.strip_prefix(&format!("{FLYTE_CONFIG_DIR}/")).unwrap();
            let value = files[file].as_str().unwrap();
            text = text.replace(&format!("{{{{ {var} }}}}"), value);
        }
        text
    }

    fn unbase64(text: &str) -> Vec<u8> {
        let digit = |c: u8| -> u32 {
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            alphabet.iter().position(|&a| a == c).unwrap() as u32
        };
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(4) {
            let pad = chunk.iter().filter(|&&c| c == b'=').count();
            let n = chunk
                .iter()
                .take(4 - pad)
                .fold(0, |n, &c| (n << 6) | digit(c))
                << (6 * pad);
            out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
        }
        out
    }

    #[test]
    fn base64_is_rfc_4648s() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
            assert_eq!(unbase64(coded), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unbase64(&base64(&all)), all);
    }

    #[test]
    fn the_storage_secret_feeds_flyte_and_every_task_namespace() {
        let config = sandbox_config("", "");
        let r = flyte_binary(&config, Cloud::Sandbox, &sandbox_outputs(MINIO)).unwrap();
        // Keys no YAML quoting or shell would pass through unharmed.
        for (access, secret) in [
            (ACCESS_KEY, SECRET_KEY),
            ("it's \"quoted\"", "{{ namespace }}: # not a comment\n\\ü"),
        ] {
            let text = sandbox_storage_secret(&config, "flyte-ns", access, secret);
            assert!(text.starts_with("# The object store's keys for Flyte of deployment `demo`"));
            let manifest: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            assert_eq!(manifest["kind"], "Secret");
            assert_eq!(manifest["metadata"]["name"], STORAGE_SECRET_NAME);
            assert_eq!(manifest["metadata"]["namespace"], "flyte-ns");
            let files = &manifest["stringData"];
            assert_eq!(files.as_object().unwrap().len(), 3, "{files}");
            // Flyte's part: merged last over the chart's `storage.stow.config`.
            let fragment: serde_json::Value =
                serde_saphyr::from_str(files[STORAGE_SECRET_CONFIG_FILE].as_str().unwrap())
                    .unwrap();
            assert_eq!(
                fragment,
                serde_json::json!({"storage": {"stow": {"config": {
                    "auth_type": "accesskey", "access_key_id": access, "secret_key": secret,
                }}}})
            );
            // The task namespaces' part, through the template as Flyte fills it.
            let template =
                &r.model.cluster_resource_templates.inline["020_task_storage_credentials.yaml"];
            let vars = &custom_data_of(&r.model.configuration.inline)["development"];
            let made: serde_json::Value =
                serde_saphyr::from_str(&substitute(template, vars, files)).unwrap();
            assert_eq!(made["kind"], "Secret");
            assert_eq!(made["metadata"]["name"], TASK_STORAGE_SECRET_NAME);
            assert_eq!(made["metadata"]["namespace"], "flytesnacks-development");
            let data = &made["data"];
            assert_eq!(data.as_object().unwrap().len(), 2);
            for (var, key) in [
                ("FLYTE_AWS_ACCESS_KEY_ID", access),
                ("FLYTE_AWS_SECRET_ACCESS_KEY", secret),
            ] {
                assert_eq!(unbase64(data[var].as_str().unwrap()), key.as_bytes());
            }
        }
    }

    #[test]
    fn sandbox_values_need_the_store_outputs() {
        let config = sandbox_config("", "");
        for name in ["s3_endpoint", "s3_region", "metadata_bucket"] {
            let mut o = sandbox_outputs(MINIO);
            o.remove(name);
            let err = flyte_binary(&config, Cloud::Sandbox, &o).err().unwrap();
            assert!(err.to_string().contains(&format!("`{name}`")), "{err}");
        }
    }

    #[test]
    fn flyte_core_is_refused_for_the_sandbox() {
        let config = sandbox_config("", "");
        let err = flyte_core(&config, Cloud::Sandbox, &sandbox_outputs(MINIO))
            .err()
            .unwrap();
        assert!(matches!(err, ValuesError::Unsupported(_)), "{err}");
        assert!(
            err.to_string().contains("`flyte.chart: flyte-binary`"),
            "{err}"
        );
    }
}

//! Helm values for Flyte's `flyte-core` chart: one deployment per component, on one cluster
//! (multi-cluster, with the same model: [`super::multi`]).
//!
//! The same outputs and [`CloudIdentity`] as `flyte-binary`, in the chart's shape: the
//! password through `common.databaseSecret` **and** `passwordPath` in both `db.*` blocks
//! (the Secret alone is not read), the raw-data prefix always set (the chart's default says
//! `s3://` on every cloud), each storage component's service account annotated with the
//! backend identity, and the per-namespace templates with the task identity per domain.

use std::collections::BTreeMap;

use flyteinfra_core::Value;
use serde::{Deserialize, Serialize};

use super::{
    CloudIdentity, DB_SECRET_NAME, Database, Image, NAMESPACE_TEMPLATE, Rendered, S3Config, Store,
    ValuesError, database, header, helm_command, out_s, secret_manifest, to_yaml,
};
use crate::config::{Cloud, Config};

/// Where `flyte-core` mounts the `common.databaseSecret` Secret (fixed by the chart).
pub const DB_SECRET_MOUNT: &str = "/etc/db";

/// The subset of the `flyte-core` chart's values flyteinfra sets, keyed exactly as the
/// chart's `values.yaml`; unknown keys are refused when parsing (kept in step with the
/// pinned chart by the `helm template` test). What a cluster does not run is left out
/// (`None`), or switched off where the chart's default is on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlyteCoreValues {
    /// `flyteadmin`.
    pub flyteadmin: Component,
    /// `datacatalog`.
    pub datacatalog: Component,
    /// `flytepropeller`.
    pub flytepropeller: Component,
    /// `flyteconsole` (multi-cluster data planes: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flyteconsole: Option<Toggle>,
    /// `flyteconnector` (multi-cluster: off, as the chart's overlays say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flyteconnector: Option<Toggle>,
    /// `flytescheduler`: the image only; it reads the database, not storage, and needs
    /// no cloud identity. Whether it runs is `workflow_scheduler.enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flytescheduler: Option<ImageOnly>,
    /// `common`.
    pub common: Common,
    /// `db` (not on a multi-cluster data plane: nothing there reads the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<Db>,
    /// `storage`.
    pub storage: CoreStorage,
    /// `configmap`.
    pub configmap: ConfigMaps,
    /// `workflow_scheduler`.
    pub workflow_scheduler: WorkflowScheduler,
    /// `cluster_resource_manager`.
    pub cluster_resource_manager: ClusterResourceManager,
}

/// A component that reaches the object store under its own service account, or (with
/// `enabled: false` and little else) one this cluster does not run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    /// `enabled` (the chart's default is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    /// `serviceAccount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<ComponentServiceAccount>,
    /// `podLabels` (Azure: the Workload Identity label).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// `additionalVolumes` (flyteadmin, multi-cluster: the cluster credentials).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_volumes: Vec<serde_json::Value>,
    /// `additionalVolumeMounts`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_volume_mounts: Vec<serde_json::Value>,
}

impl Component {
    /// `{enabled: false}`: a component this cluster does not run.
    pub fn disabled() -> Component {
        Component {
            enabled: Some(false),
            ..Component::default()
        }
    }
}

/// `{enabled}` of a part the chart switches as a whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    /// On or off.
    pub enabled: bool,
}

/// `<component>.image` only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOnly {
    /// `image`.
    pub image: Image,
}

/// `<component>.serviceAccount`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentServiceAccount {
    /// Create it.
    pub create: bool,
    /// `flyteadmin.serviceAccount.alwaysCreate`: also where flyteadmin does not run (a
    /// multi-cluster data plane, whose `flyteadmin` account the control plane acts as).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_create: Option<bool>,
    /// The cloud identity annotation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `common`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Common {
    /// `common.databaseSecret` (not on a multi-cluster data plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_secret: Option<DatabaseSecret>,
    /// `common.ingress` (multi-cluster data planes: off, as it routes to flyteadmin and
    /// flyteconsole, which do not run there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Toggle>,
}

/// `common.databaseSecret`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSecret {
    /// The Secret the chart mounts at [`DB_SECRET_MOUNT`] in every pod that reads the
    /// database.
    pub name: String,
}

/// `db`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Db {
    /// `db.admin` (flyteadmin, flytescheduler, the cluster-resource sync).
    pub admin: DbBlock,
    /// `db.datacatalog`.
    pub datacatalog: DbBlock,
}

/// `db.<component>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbBlock {
    /// `database`.
    pub database: Database,
}

/// `storage`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoreStorage {
    /// `s3`, `gcs` or `custom` (Azure: the chart has no `azure` type).
    #[serde(rename = "type")]
    pub kind: String,
    /// The metadata bucket (`s3`, `gcs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    /// `storage.s3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
    /// `storage.gcs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<CoreGcs>,
    /// `storage.custom`: Flyte's own storage block, for Azure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomStorage>,
    /// `storage.enableMultiContainer`, on when the raw-data bucket is another one.
    pub enable_multi_container: bool,
}

/// `storage.gcs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CoreGcs {
    /// The project id; credentials come from Workload Identity.
    pub project_id: String,
}

/// `storage.custom` for Azure: stow's `azure` kind with the account and no key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomStorage {
    /// `stow`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The metadata container.
    pub container: String,
    /// `stow`.
    pub stow: Stow,
}

/// `storage.custom.stow`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stow {
    /// `azure`.
    pub kind: String,
    /// `{account}`: no key, so stow uses the pod's Workload Identity token.
    pub config: BTreeMap<String, String>,
}

/// `configmap`: merged by Helm over the chart's defaults, key by key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigMaps {
    /// `configmap.core`.
    pub core: CoreConfig,
    /// `configmap.domain`: the domains the task identities are given for (read by
    /// flyteadmin and the cluster-resource sync only, so not on a data plane).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DomainConfig>,
    /// `configmap.clusters` (multi-cluster control plane): where executions run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Clusters>,
    /// `configmap.admin` (multi-cluster data plane): how flytepropeller reaches flyteadmin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminClient>,
    /// `configmap.catalog` (multi-cluster data plane): how flytepropeller reaches
    /// datacatalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogClient>,
    /// `configmap.adminServer` (AWS: `roleNameKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_server: Option<AdminServer>,
    /// `configmap.k8s` (Azure: task pod labels and environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8sConfig>,
}

/// `configmap.core`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// `configmap.core.propeller`.
    pub propeller: PropellerConfig,
}

/// `configmap.core.propeller`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropellerConfig {
    /// Where task outputs go (the chart's default is an `s3://` URI on every cloud).
    #[serde(rename = "rawoutput-prefix")]
    pub rawoutput_prefix: String,
}

/// `configmap.clusters`: flyteadmin's execution clusters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Clusters {
    /// Execution cluster label → the clusters serving it, with their shares (summing
    /// to 1). Non-empty also makes the chart mount the `cluster-credentials` Secret into
    /// the cluster-resource sync.
    pub label_cluster_map: BTreeMap<String, Vec<ClusterWeight>>,
    /// One entry per data plane.
    pub cluster_configs: Vec<ClusterEntry>,
}

/// One `labelClusterMap` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterWeight {
    /// A `clusterConfigs` name.
    pub id: String,
    /// Its share of the label's executions.
    pub weight: f64,
}

/// One `clusterConfigs` entry: a data plane's API server and the files holding its
/// `flyteadmin` token and CA.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterEntry {
    /// The plane's name (the `labelClusterMap` id).
    pub name: String,
    /// `https://` URL of its API server.
    pub endpoint: String,
    /// Executions may go there.
    pub enabled: bool,
    /// `auth`.
    pub auth: ClusterAuth,
}

/// `clusterConfigs[].auth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterAuth {
    /// `file_path`: token and CA read from mounted files.
    #[serde(rename = "type")]
    pub kind: String,
    /// The token file.
    pub token_path: String,
    /// The CA certificate file.
    pub cert_path: String,
}

/// `configmap.admin`: the admin client of flytepropeller (merged over the chart's
/// event, client id and secret location settings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminClient {
    /// `configmap.admin.admin`.
    pub admin: ClientEndpoint,
}

/// `configmap.catalog`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogClient {
    /// `configmap.catalog.catalog-cache` (merged over the chart's `type: datacatalog`).
    #[serde(rename = "catalog-cache")]
    pub catalog_cache: ClientEndpoint,
}

/// A gRPC endpoint a client dials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEndpoint {
    /// `dns:///host:port`.
    pub endpoint: String,
    /// Plain gRPC, no TLS.
    pub insecure: bool,
}

/// `configmap.adminServer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminServer {
    /// `configmap.adminServer.flyteadmin`.
    pub flyteadmin: RoleNameKey,
}

/// `configmap.adminServer.flyteadmin.roleNameKey`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleNameKey {
    /// The annotation key of a launch plan's IAM role.
    pub role_name_key: String,
}

/// `configmap.k8s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sConfig {
    /// `configmap.k8s.plugins`.
    pub plugins: K8sPlugins,
}

/// `configmap.k8s.plugins`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K8sPlugins {
    /// `configmap.k8s.plugins.k8s`.
    pub k8s: CoreK8sDefaults,
}

/// `configmap.k8s.plugins.k8s`: as [`K8sPluginDefaults`] without `default-env-from-secrets`;
/// the environment is the chart's own shape, a list of one-entry maps (the only one whose
/// names keep their case in Flyte, see [`K8sPluginDefaults::default_env_vars`]; a map over
/// the chart's default list would also make Helm warn).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct CoreK8sDefaults {
    /// Labels.
    pub default_labels: BTreeMap<String, String>,
    /// Environment variables.
    pub default_env_vars: Vec<BTreeMap<String, String>>,
}

/// `configmap.domain`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// The config's domains, `{id, name}` each.
    pub domains: Vec<Domain>,
}

/// One Flyte domain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Its id.
    pub id: String,
    /// Its name (the id).
    pub name: String,
}

/// `workflow_scheduler`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowScheduler {
    /// On.
    pub enabled: bool,
    /// `native` (flytescheduler, on the database).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `cluster_resource_manager`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterResourceManager {
    /// On: it makes each task namespace and its `default` service account (in every data
    /// plane, from the multi-cluster control plane).
    pub enabled: bool,
    /// `config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ClusterResourceConfig>,
    /// `{key, value}` templates; each becomes `<key>.yaml`, written raw (not through
    /// `tpl`), so `{{ namespace }}` stays for Flyte to fill. Replaces the chart's list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<Template>,
}

/// `cluster_resource_manager.config`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterResourceConfig {
    /// `cluster_resources`.
    pub cluster_resources: ClusterResources,
}

/// `cluster_resource_manager.config.cluster_resources`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterResources {
    /// The chart's shape: a list of `{domain: [{variable: {value}}]}`. Replaces the
    /// chart's quota data, whose template is replaced too.
    pub custom_data: Vec<BTreeMap<String, Vec<BTreeMap<String, TemplateValue>>>>,
}

/// `{value}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateValue {
    /// The value (never empty: Flyte fails the domain's sync on an empty one).
    pub value: String,
}

/// One `cluster_resource_manager.templates` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The file name without `.yaml`; templates apply in name order.
    pub key: String,
    /// The manifest.
    pub value: String,
}

/// Makes single-cluster `flyte-core` values from a deployment's outputs.
pub fn flyte_core(
    config: &Config,
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
) -> Result<Rendered<FlyteCoreValues>, ValuesError> {
    let ident = CloudIdentity::for_cloud(config, cloud, outputs)?;
    let backend = out_s(outputs, ident.workload()?.backend_output)?;
    let model = core_model(config, &ident, outputs, &backend, &backend, Some(&backend))?;
    let helm_command = helm_command(config, "<values>");
    let values = format!(
        "{}{}",
        header(config, cloud, &helm_command),
        to_yaml(&model)
    );
    let secret = secret_manifest(&config.flyte.namespace, &out_s(outputs, "db_password")?);
    Ok(Rendered {
        values,
        model,
        secret,
        helm_command,
    })
}

/// The `flyte-core` values of the cluster running flyteadmin: flyteadmin and datacatalog
/// under their identities, flytepropeller under `propeller` or (`None`) not run.
pub(super) fn core_model(
    config: &Config,
    ident: &CloudIdentity,
    outputs: &BTreeMap<String, Value>,
    admin: &str,
    catalog: &str,
    propeller: Option<&str>,
) -> Result<FlyteCoreValues, ValuesError> {
    let fl = &config.flyte;
    let w = ident.workload()?;
    let metadata = out_s(outputs, ident.containers.0)?;
    let data = out_s(outputs, ident.containers.1)?;
    let image = || Image {
        tag: fl.image_tag.clone(),
    };
    let component = |identity: &str| Component {
        image: Some(image()),
        service_account: Some(ComponentServiceAccount {
            create: true,
            always_create: None,
            annotations: [(w.annotation.to_string(), identity.to_string())].into(),
        }),
        pod_labels: ident.pod_labels.clone(),
        ..Component::default()
    };
    let db = DbBlock {
        database: database(outputs, DB_SECRET_MOUNT)?,
    };
    let mut storage = CoreStorage {
        kind: String::new(),
        bucket_name: Some(metadata.clone()),
        s3: None,
        gcs: None,
        custom: None,
        enable_multi_container: metadata != data,
    };
    match &ident.store {
        Store::S3(s3) => {
            storage.kind = "s3".into();
            storage.s3 = Some(s3.clone());
        }
        Store::Gcs(gcs) => {
            storage.kind = "gcs".into();
            storage.gcs = Some(CoreGcs {
                project_id: gcs.project.clone(),
            });
        }
        // The chart has no `azure` type: Flyte's own storage block, with stow's.
        Store::Azure(azure) => {
            storage.kind = "custom".into();
            storage.bucket_name = None;
            storage.custom = Some(CustomStorage {
                kind: "stow".into(),
                container: metadata.clone(),
                stow: Stow {
                    kind: "azure".into(),
                    config: [("account".to_string(), azure.account.clone())].into(),
                },
            });
        }
    }
    let custom_data = w
        .task_identities
        .iter()
        .map(|(domain, id)| {
            let var =
                BTreeMap::from([(w.task_var.to_string(), TemplateValue { value: id.clone() })]);
            BTreeMap::from([(domain.clone(), vec![var])])
        })
        .collect();
    Ok(FlyteCoreValues {
        flyteadmin: component(admin),
        datacatalog: component(catalog),
        flytepropeller: propeller.map_or_else(Component::disabled, component),
        flyteconsole: None,
        flyteconnector: None,
        flytescheduler: Some(ImageOnly { image: image() }),
        common: Common {
            database_secret: Some(DatabaseSecret {
                name: DB_SECRET_NAME.to_string(),
            }),
            ingress: None,
        },
        db: Some(Db {
            admin: db.clone(),
            datacatalog: db,
        }),
        storage,
        configmap: ConfigMaps {
            core: CoreConfig {
                propeller: PropellerConfig {
                    // The same prefix `flyte-binary` derives, so changing charts keeps
                    // the raw data where it was.
                    rawoutput_prefix: format!("{}://{data}/data", ident.store.scheme()),
                },
            },
            admin_server: ident.role_name_key.map(|key| AdminServer {
                flyteadmin: RoleNameKey {
                    role_name_key: key.to_string(),
                },
            }),
            domain: Some(DomainConfig {
                domains: fl
                    .domains
                    .iter()
                    .map(|d| Domain {
                        id: d.clone(),
                        name: d.clone(),
                    })
                    .collect(),
            }),
            clusters: None,
            admin: None,
            catalog: None,
            k8s: ident.task_pod_defaults().map(|k8s| K8sConfig {
                plugins: K8sPlugins {
                    k8s: CoreK8sDefaults {
                        default_labels: k8s.default_labels,
                        default_env_vars: k8s.default_env_vars,
                    },
                },
            }),
        },
        workflow_scheduler: WorkflowScheduler {
            enabled: true,
            kind: "native".into(),
        },
        cluster_resource_manager: ClusterResourceManager {
            enabled: true,
            config: Some(ClusterResourceConfig {
                cluster_resources: ClusterResources { custom_data },
            }),
            templates: vec![
                Template {
                    key: "aa_namespace".into(),
                    value: NAMESPACE_TEMPLATE.into(),
                },
                Template {
                    key: "ab_task_service_account".into(),
                    value: w.task_service_account_template(),
                },
            ],
        },
    })
}

//! Multi-cluster `flyte-core` values: one file for the control plane (flyteadmin,
//! datacatalog, flyteconsole, flytescheduler, the cluster-resource sync) and one per data
//! plane (flytepropeller, its webhook and the task pods), in the chart's own overlay shape
//! (`values-controlplane.yaml`, `values-dataplane.yaml`), plus each data plane's
//! `flyteadmin` token Secret manifest.
//!
//! The control plane is the single-cluster model ([`super::core`]) with flytepropeller
//! off and flyteadmin told where the data planes are; a data plane takes its storage and
//! task-pod settings from that same model, so every cluster reads the same buckets.

use std::collections::BTreeMap;

use flyteinfra_core::Value;

use super::core::{
    AdminClient, CatalogClient, ClientEndpoint, ClusterAuth, ClusterEntry, ClusterResourceManager,
    ClusterWeight, Clusters, Common, Component, ComponentServiceAccount, ConfigMaps,
    FlyteCoreValues, Toggle, WorkflowScheduler, core_model,
};
use super::{CloudIdentity, Image, ValuesError, out_s, secret_manifest, to_yaml};
use crate::access::{
    CLUSTER_CREDENTIALS_SECRET, PLANE_SERVICE_ACCOUNT, PLANE_TOKEN_SECRET, api_server_url,
    credential_keys,
};
use crate::config::{Cloud, Config, DataPlaneConfig, Style};

/// Where flyteadmin finds the data planes' credentials: the path at which the chart mounts
/// the `cluster-credentials` Secret into the cluster-resource sync by itself
/// (`templates/clusterresourcesync/deployment.yaml`), used for flyteadmin too.
pub const CREDENTIALS_MOUNT: &str = "/var/run/credentials";

/// One cluster's files.
#[derive(Clone, Debug)]
pub struct ClusterFiles {
    /// The data plane's name; `None` for the control plane.
    pub plane: Option<String>,
    /// The cluster's name in the cloud.
    pub cluster: String,
    /// The values file's name.
    pub values_file: String,
    /// The values, as YAML (no secrets).
    pub values: String,
    /// The typed values.
    pub model: FlyteCoreValues,
    /// Data planes: the `flyteadmin` token Secret manifest's file name and text (no
    /// secret in it: Kubernetes fills the token in).
    pub token: Option<(String, String)>,
}

/// Every file of a multi-cluster deployment.
#[derive(Clone, Debug)]
pub struct MultiRendered {
    /// The control plane's values.
    pub control: ClusterFiles,
    /// Each data plane's values and token Secret, in config order.
    pub planes: Vec<ClusterFiles>,
    /// The database password Secret manifest, for the control plane only (write it 0600).
    pub secret: String,
    /// Its file name.
    pub secret_file: String,
}

impl MultiRendered {
    /// The control plane, then every data plane.
    pub fn clusters(&self) -> impl Iterator<Item = &ClusterFiles> {
        std::iter::once(&self.control).chain(&self.planes)
    }
}

/// A gRPC target for Flyte's clients: `dns:///host:port`. flyteadmin's client parses the
/// endpoint as a URL, which a bare `10.0.0.5:81` is not (a first path segment with a
/// colon); gRPC dials the `dns:///` form directly.
fn grpc_target(host_port: &str) -> String {
    format!("dns:///{host_port}")
}

/// The cluster name as part of a file name.
fn file_part(cluster: &str) -> String {
    cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The values file of the cluster named `cluster`.
pub fn values_file_name(cloud: Cloud, cluster: &str) -> String {
    format!("flyte-core-values-{cloud}-{}.yaml", file_part(cluster))
}

/// The token Secret file of the data plane cluster named `cluster`.
pub fn token_file_name(cluster: &str) -> String {
    format!("flyteadmin-token-{}.yaml", file_part(cluster))
}

/// The output `dp_<plane>_<name>`.
fn plane_out(
    outputs: &BTreeMap<String, Value>,
    plane: &DataPlaneConfig,
    name: &str,
) -> Result<String, ValuesError> {
    out_s(outputs, &format!("{}{name}", plane.output_prefix()))
}

/// Makes the control plane's and every data plane's `flyte-core` values from a
/// multi-cluster deployment's outputs.
pub fn multi_cluster(
    config: &Config,
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
) -> Result<MultiRendered, ValuesError> {
    let Some(cp) = config
        .control_plane
        .as_ref()
        .filter(|_| config.style == Style::MultiCluster && !config.data_planes.is_empty())
    else {
        return Err(ValuesError::Unsupported(
            "multi-cluster values need `style: multi-cluster` with `control_plane` and `data_planes`"
                .into(),
        ));
    };
    let fl = &config.flyte;
    let ident = CloudIdentity::for_cloud(config, cloud, outputs)?;
    let base = core_model(
        config,
        &ident,
        outputs,
        &out_s(outputs, "identity_flyteadmin")?,
        &out_s(outputs, "identity_datacatalog")?,
        None,
    )?;

    let mut label_cluster_map: BTreeMap<String, Vec<ClusterWeight>> = BTreeMap::new();
    let mut cluster_configs = Vec::new();
    let mut planes = Vec::new();
    for p in &config.data_planes {
        label_cluster_map
            .entry(p.label().to_string())
            .or_default()
            .push(ClusterWeight {
                id: p.name.clone(),
                weight: p.weight(),
            });
        let (token_key, ca_key) = credential_keys(&p.name);
        cluster_configs.push(ClusterEntry {
            name: p.name.clone(),
            endpoint: api_server_url(&plane_out(outputs, p, "cluster_endpoint")?),
            enabled: true,
            auth: ClusterAuth {
                kind: "file_path".into(),
                token_path: format!("{CREDENTIALS_MOUNT}/{token_key}"),
                cert_path: format!("{CREDENTIALS_MOUNT}/{ca_key}"),
            },
        });
        let identity = plane_out(outputs, p, "identity_flytepropeller")?;
        let model = data_plane_model(config, cp, &ident, &base, &identity);
        let cluster = plane_out(outputs, p, "cluster_name")?;
        let values_file = values_file_name(cloud, &cluster);
        let header = format!(
            "# flyte-core values written by flyteinfra for data plane `{plane}` of deployment \
             `{name}` ({cloud}, multi-cluster): cluster `{cluster}`.\n\
             # Install, with kubectl and helm on that cluster: {helm}\n\
             # Then `kubectl apply -f {token}`: the token the control plane acts with here.\n",
            plane = p.name,
            name = config.name,
            helm = super::helm_command(config, &values_file),
            token = token_file_name(&cluster),
        );
        planes.push(ClusterFiles {
            plane: Some(p.name.clone()),
            values: format!("{header}{}", to_yaml(&model)),
            model,
            token: Some((token_file_name(&cluster), token_manifest(&fl.namespace))),
            values_file,
            cluster,
        });
    }

    let mut control = base;
    control.flyteconnector = Some(Toggle { enabled: false });
    control.flyteadmin.additional_volumes = vec![serde_json::json!({
        "name": CLUSTER_CREDENTIALS_SECRET,
        "secret": { "secretName": CLUSTER_CREDENTIALS_SECRET },
    })];
    // The chart adds these mounts to the `sync-cluster-resources` init container too
    // (labelClusterMap non-empty), and mounts the Secret into `syncresources` by itself.
    control.flyteadmin.additional_volume_mounts = vec![serde_json::json!({
        "name": CLUSTER_CREDENTIALS_SECRET,
        "mountPath": CREDENTIALS_MOUNT,
        "readOnly": true,
    })];
    control.configmap.clusters = Some(Clusters {
        label_cluster_map,
        cluster_configs,
    });
    let cluster = out_s(outputs, "cluster_name")?;
    let values_file = values_file_name(cloud, &cluster);
    let secret_file = format!("flyte-db-secret-{cloud}.yaml");
    let header = format!(
        "# flyte-core values written by flyteinfra for the control plane of deployment \
         `{name}` ({cloud}, multi-cluster): cluster `{cluster}`.\n\
         # Install, with kubectl and helm on that cluster: {helm}\n\
         # First apply the database password Secret ({secret_file}) and the `{CLUSTER_CREDENTIALS_SECRET}` \
         Secret (`flyteinfra cluster-credentials`); neither is here.\n",
        name = config.name,
        helm = super::helm_command(config, &values_file),
    );
    let control = ClusterFiles {
        plane: None,
        values: format!("{header}{}", to_yaml(&control)),
        model: control,
        token: None,
        values_file,
        cluster,
    };

    // One file per cluster: two clusters of one name would overwrite each other's.
    let mut seen = std::collections::BTreeSet::new();
    for c in std::iter::once(&control).chain(&planes) {
        if !seen.insert(c.values_file.as_str()) {
            return Err(ValuesError::Unsupported(format!(
                "two clusters of this deployment are named `{}`: each needs its own cluster",
                c.cluster
            )));
        }
    }
    Ok(MultiRendered {
        control,
        planes,
        secret: secret_manifest(&fl.namespace, &out_s(outputs, "db_password")?),
        secret_file,
    })
}

/// A data plane: flytepropeller (and the chart's pod webhook, which follows it) under the
/// plane's identity, reaching the control plane's endpoints; the storage and task-pod
/// settings of `control`; everything else off. No database: nothing here reads it.
fn data_plane_model(
    config: &Config,
    cp: &crate::config::ControlPlaneConfig,
    ident: &CloudIdentity,
    control: &FlyteCoreValues,
    propeller_identity: &str,
) -> FlyteCoreValues {
    let off = || Some(Toggle { enabled: false });
    FlyteCoreValues {
        // Not run, but its service account is what the control plane acts as here
        // (flyteorg/flyte#4069), bound by the chart to flyteadmin's cluster role.
        flyteadmin: Component {
            enabled: Some(false),
            service_account: Some(ComponentServiceAccount {
                create: true,
                always_create: Some(true),
                annotations: BTreeMap::new(),
            }),
            ..Component::default()
        },
        datacatalog: Component::disabled(),
        flytepropeller: Component {
            image: Some(Image {
                tag: config.flyte.image_tag.clone(),
            }),
            service_account: Some(ComponentServiceAccount {
                create: true,
                always_create: None,
                annotations: ident
                    .workload
                    .iter()
                    .map(|w| (w.annotation.to_string(), propeller_identity.to_string()))
                    .collect(),
            }),
            pod_labels: ident.pod_labels.clone(),
            ..Component::default()
        },
        flyteconsole: off(),
        flyteconnector: off(),
        flytescheduler: None,
        common: Common {
            database_secret: None,
            // It would route to flyteadmin and flyteconsole, which do not run here.
            ingress: off(),
        },
        db: None,
        storage: control.storage.clone(),
        configmap: ConfigMaps {
            core: control.configmap.core.clone(),
            domain: None,
            clusters: None,
            admin: Some(AdminClient {
                admin: ClientEndpoint {
                    endpoint: grpc_target(&cp.admin_endpoint),
                    insecure: cp.insecure,
                },
            }),
            catalog: Some(CatalogClient {
                catalog_cache: ClientEndpoint {
                    endpoint: grpc_target(&cp.catalog_endpoint),
                    insecure: cp.insecure,
                },
            }),
            admin_server: None,
            k8s: control.configmap.k8s.clone(),
        },
        // `flytescheduler` follows this switch (the chart reads no `flytescheduler.enabled`).
        workflow_scheduler: WorkflowScheduler {
            enabled: false,
            kind: "native".into(),
        },
        cluster_resource_manager: ClusterResourceManager {
            enabled: false,
            config: None,
            templates: Vec::new(),
        },
    }
}

/// The long-lived token Secret of a data plane's `flyteadmin` service account: Kubernetes
/// 1.24+ makes none by itself, and fills this one in once the account exists.
pub fn token_manifest(namespace: &str) -> String {
    to_yaml(&serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": PLANE_TOKEN_SECRET,
            "namespace": namespace,
            "annotations": { "kubernetes.io/service-account.name": PLANE_SERVICE_ACCOUNT },
        },
        "type": "kubernetes.io/service-account-token",
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::values::{AZURE_WI_LABEL, DB_SECRET_NAME, Rendered};

    const PASSWORD: &str = "PlantedSecret0123456789abcdefXYZ";

    /// Three planes: `east` and `west` share label `gpu` (a quarter and three quarters),
    /// `cpu` has its own.
    fn config(cloud: &str) -> Config {
        let section = match cloud {
            "aws" => "aws:\n  region: us-east-1\n",
            "gcp" => "gcp:\n  project: my-proj\n  region: us-central1\n",
            _ => {
                "azure:\n  subscription_id: 00000000-0000-0000-0000-000000000001\n  location: eastus\n  resource_group: rg\n"
            }
        };
        Config::parse(
            &format!(
                "name: demo\ncloud: {cloud}\nstyle: multi-cluster\n{section}\
                 flyte:\n  image_tag: v1.16.8\n  domains: [development, production]\n\
                 control_plane:\n  admin_endpoint: flyteadmin.flyte.internal:81\n  catalog_endpoint: 10.0.0.9:89\n\
                 data_planes:\n  - name: east\n    label: gpu\n    weight: 0.25\n  - name: west\n    label: gpu\n    weight: 0.75\n  - name: cpu\n"
            ),
            Path::new("mc.yaml"),
        )
        .unwrap()
    }

    fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .chain([("db_port".to_string(), Value::Int(5432))])
            .collect()
    }

    /// What every cloud's multi-cluster deployment outputs besides its storage and task
    /// identities: the database, the clusters and the per-component identities (no
    /// single-cluster backend identity).
    fn common(cloud: &str) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = [
            ("db_host", "db.example.internal"),
            ("db_name", "flyte"),
            ("db_username", "flyte"),
            ("db_password", PASSWORD),
            ("cluster_name", "demo"),
            ("identity_flyteadmin", "admin-id"),
            ("identity_datacatalog", "catalog-id"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for p in ["east", "west", "cpu"] {
            let endpoint = match cloud {
                "aws" => format!(
                    "https://{}.gr7.us-east-1.eks.amazonaws.com",
                    p.to_uppercase()
                ),
                "gcp" => format!("34.1.2.{}", p.len()),
                _ => format!("https://demo-{p}-abc.hcp.eastus.azmk8s.io:443"),
            };
            v.push((format!("dp_{p}_cluster_name"), format!("demo-{p}")));
            v.push((format!("dp_{p}_cluster_endpoint"), endpoint));
            v.push((
                format!("dp_{p}_identity_flytepropeller"),
                format!("{p}-propeller-id"),
            ));
        }
        v
    }

    fn cloud_outputs(cloud: &str) -> BTreeMap<String, Value> {
        let own: &[(&str, &str)] = match cloud {
            "aws" => &[
                ("region", "us-east-1"),
                ("metadata_bucket", "meta-b"),
                ("data_bucket", "data-b"),
                ("task_role_arn", "arn:aws:iam::1:role/tasks"),
            ],
            "gcp" => &[
                ("project", "my-proj"),
                ("metadata_bucket", "meta-g"),
                ("data_bucket", "data-g"),
                (
                    "task_service_account",
                    "demo-tasks@my-proj.iam.gserviceaccount.com",
                ),
            ],
            _ => &[
                ("storage_account", "flytedemoab12cd"),
                ("metadata_container", "flyte-metadata"),
                ("data_container", "flyte-data"),
                ("task_client_id", "22222222-bbbb-4bbb-8bbb-000000000002"),
            ],
        };
        let mut o = outputs(own);
        for (k, v) in common(cloud) {
            o.insert(k, Value::from(v.as_str()));
        }
        o
    }

    fn render(cloud: &str) -> MultiRendered {
        let c: Cloud = cloud.parse().unwrap();
        multi_cluster(&config(cloud), c, &cloud_outputs(cloud)).unwrap()
    }

    fn plane<'a>(r: &'a MultiRendered, name: &str) -> &'a ClusterFiles {
        r.planes
            .iter()
            .find(|p| p.plane.as_deref() == Some(name))
            .unwrap()
    }

    #[test]
    fn every_file_parses_back_into_the_chart_model() {
        for cloud in ["aws", "gcp", "azure"] {
            let r = render(cloud);
            assert_eq!(r.planes.len(), 3);
            for c in r.clusters() {
                let parsed: FlyteCoreValues = serde_saphyr::from_str(&c.values).unwrap();
                assert_eq!(parsed, c.model, "{cloud} {}", c.cluster);
                assert!(
                    c.values.starts_with("# flyte-core values")
                        && c.values.contains(&format!("cluster `{}`", c.cluster))
                        && c.values.contains(&format!("-f {}", c.values_file)),
                    "{}",
                    c.values
                );
            }
        }
    }

    #[test]
    fn files_are_named_by_cluster() {
        let r = render("aws");
        assert_eq!(r.control.values_file, "flyte-core-values-aws-demo.yaml");
        let east = plane(&r, "east");
        assert_eq!(east.values_file, "flyte-core-values-aws-demo-east.yaml");
        assert_eq!(
            east.token.as_ref().unwrap().0,
            "flyteadmin-token-demo-east.yaml"
        );
        assert!(r.control.token.is_none());
        assert_eq!(r.secret_file, "flyte-db-secret-aws.yaml");
        // Two clusters of one name would overwrite each other's file.
        let mut o = cloud_outputs("aws");
        o.insert("dp_west_cluster_name".into(), Value::from("demo-east"));
        let e = multi_cluster(&config("aws"), Cloud::Aws, &o).unwrap_err();
        assert!(e.to_string().contains("`demo-east`"), "{e}");
    }

    #[test]
    fn the_control_plane_runs_no_propeller_and_routes_to_every_plane() {
        let r = render("aws");
        let m = &r.control.model;
        assert_eq!(m.flytepropeller, Component::disabled());
        assert_eq!(m.flyteconnector, Some(Toggle { enabled: false }));
        assert!(m.flyteconsole.is_none() && m.flytescheduler.is_some());
        assert!(m.workflow_scheduler.enabled && m.cluster_resource_manager.enabled);
        let annotation = |c: &Component| {
            c.service_account.as_ref().unwrap().annotations["eks.amazonaws.com/role-arn"].clone()
        };
        assert_eq!(annotation(&m.flyteadmin), "admin-id");
        assert_eq!(annotation(&m.datacatalog), "catalog-id");

        let clusters = m.configmap.clusters.as_ref().unwrap();
        let weights = |label: &str| -> Vec<(&str, f64)> {
            clusters.label_cluster_map[label]
                .iter()
                .map(|w| (w.id.as_str(), w.weight))
                .collect()
        };
        assert_eq!(weights("gpu"), [("east", 0.25), ("west", 0.75)]);
        assert_eq!(weights("cpu"), [("cpu", 1.0)]);
        assert_eq!(clusters.label_cluster_map.len(), 2);
        let names: Vec<&str> = clusters
            .cluster_configs
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["east", "west", "cpu"]);
        let east = &clusters.cluster_configs[0];
        assert_eq!(
            east.endpoint,
            "https://EAST.gr7.us-east-1.eks.amazonaws.com"
        );
        assert!(east.enabled);
        assert_eq!(
            east.auth,
            ClusterAuth {
                kind: "file_path".into(),
                token_path: "/var/run/credentials/east_token".into(),
                cert_path: "/var/run/credentials/east_cacert".into(),
            }
        );

        // The credentials, read-only, where the auth paths point.
        assert_eq!(
            m.flyteadmin.additional_volumes,
            [
                serde_json::json!({"name": "cluster-credentials", "secret": {"secretName": "cluster-credentials"}})
            ]
        );
        assert_eq!(
            m.flyteadmin.additional_volume_mounts,
            [
                serde_json::json!({"name": "cluster-credentials", "mountPath": "/var/run/credentials", "readOnly": true})
            ]
        );

        // The database as single-cluster: the password file in both blocks, never the
        // password; the Secret only for the control plane.
        let db = m.db.as_ref().unwrap();
        for b in [&db.admin.database, &db.datacatalog.database] {
            assert_eq!(b.password_path, "/etc/db/password");
        }
        assert!(!r.control.values.contains(PASSWORD) && r.secret.contains(PASSWORD));
        // The control plane's sync makes the task namespaces in the data planes, with the
        // task identity.
        let custom = &m
            .cluster_resource_manager
            .config
            .as_ref()
            .unwrap()
            .cluster_resources
            .custom_data;
        assert_eq!(custom.len(), 2);
        for entry in custom {
            for vars in entry.values() {
                assert_eq!(vars[0]["taskRole"].value, "arn:aws:iam::1:role/tasks");
            }
        }
    }

    #[test]
    fn each_data_plane_runs_only_propeller_under_its_identity() {
        let r = render("aws");
        let control = &r.control.model;
        for p in &r.planes {
            let name = p.plane.as_deref().unwrap();
            let m = &p.model;
            // flyteadmin's account only: the control plane acts as it here.
            assert_eq!(m.flyteadmin.enabled, Some(false));
            let sa = m.flyteadmin.service_account.as_ref().unwrap();
            assert!(sa.create && sa.always_create == Some(true) && sa.annotations.is_empty());
            assert_eq!(m.datacatalog, Component::disabled());
            let off = Some(Toggle { enabled: false });
            assert_eq!((&m.flyteconsole, &m.flyteconnector), (&off, &off));
            assert_eq!(m.common.ingress, off);
            assert!(!m.workflow_scheduler.enabled && !m.cluster_resource_manager.enabled);
            assert!(m.flytescheduler.is_none() && m.db.is_none());
            assert!(m.common.database_secret.is_none() && m.configmap.clusters.is_none());

            assert_eq!(m.flytepropeller.enabled, None);
            assert_eq!(
                m.flytepropeller
                    .service_account
                    .as_ref()
                    .unwrap()
                    .annotations,
                BTreeMap::from([(
                    "eks.amazonaws.com/role-arn".to_string(),
                    format!("{name}-propeller-id")
                )])
            );
            assert_eq!(m.flytepropeller.image.as_ref().unwrap().tag, "v1.16.8");

            // The control plane's endpoints, as gRPC targets.
            let admin = &m.configmap.admin.as_ref().unwrap().admin;
            assert_eq!(admin.endpoint, "dns:///flyteadmin.flyte.internal:81");
            assert!(admin.insecure);
            let catalog = &m.configmap.catalog.as_ref().unwrap().catalog_cache;
            assert_eq!(catalog.endpoint, "dns:///10.0.0.9:89");
            assert!(catalog.insecure);

            // The same buckets and raw-data prefix as the control plane.
            assert_eq!(m.storage, control.storage);
            assert_eq!(m.configmap.core, control.configmap.core);
            assert_eq!(
                m.configmap.core.propeller.rawoutput_prefix,
                "s3://data-b/data"
            );
        }
    }

    #[test]
    fn no_data_plane_file_holds_the_password_or_the_database() {
        for cloud in ["aws", "gcp", "azure"] {
            let r = render(cloud);
            for p in &r.planes {
                let (_, token) = p.token.as_ref().unwrap();
                for text in [&p.values, token] {
                    assert!(!text.contains(PASSWORD), "{cloud}: {text}");
                    assert!(!text.contains("db.example.internal"), "{cloud}: {text}");
                    assert!(!text.contains("passwordPath"), "{cloud}: {text}");
                    assert!(!text.contains(DB_SECRET_NAME), "{cloud}: {text}");
                }
            }
        }
    }

    #[test]
    fn plane_endpoints_become_https_urls_on_every_cloud() {
        let endpoint = |cloud: &str, p: &str| {
            render(cloud)
                .control
                .model
                .configmap
                .clusters
                .unwrap()
                .cluster_configs[["east", "west", "cpu"]
                .iter()
                .position(|n| *n == p)
                .unwrap()]
            .endpoint
            .clone()
        };
        // GKE's output is a bare address; EKS's and AKS's are URLs already.
        assert_eq!(endpoint("gcp", "east"), "https://34.1.2.4");
        assert_eq!(endpoint("gcp", "cpu"), "https://34.1.2.3");
        assert_eq!(
            endpoint("azure", "west"),
            "https://demo-west-abc.hcp.eastus.azmk8s.io:443"
        );
        assert_eq!(
            endpoint("aws", "cpu"),
            "https://CPU.gr7.us-east-1.eks.amazonaws.com"
        );
    }

    #[test]
    fn gcp_and_azure_planes_wire_their_identities() {
        let r = render("gcp");
        let m = &plane(&r, "west").model;
        assert_eq!(
            m.flytepropeller
                .service_account
                .as_ref()
                .unwrap()
                .annotations["iam.gke.io/gcp-service-account"],
            "west-propeller-id"
        );
        assert_eq!(m.storage.gcs.as_ref().unwrap().project_id, "my-proj");
        assert_eq!(
            m.configmap.core.propeller.rawoutput_prefix,
            "gs://data-g/data"
        );

        let r = render("azure");
        for p in &r.planes {
            let m = &p.model;
            assert_eq!(m.flytepropeller.pod_labels[AZURE_WI_LABEL], "true");
            // Task pods run here: the label and the account in every one.
            let k8s = &m.configmap.k8s.as_ref().unwrap().plugins.k8s;
            assert_eq!(k8s.default_labels[AZURE_WI_LABEL], "true");
            assert_eq!(
                m.storage.custom.as_ref().unwrap().container,
                "flyte-metadata"
            );
        }
        let c = &r.control.model;
        for comp in [&c.flyteadmin, &c.datacatalog] {
            assert_eq!(comp.pod_labels[AZURE_WI_LABEL], "true");
        }
        assert!(c.flytepropeller.pod_labels.is_empty());
    }

    #[test]
    fn a_missing_output_is_named() {
        for missing in [
            "dp_west_identity_flytepropeller",
            "dp_cpu_cluster_endpoint",
            "dp_east_cluster_name",
            "identity_flyteadmin",
            "identity_datacatalog",
            "cluster_name",
            "db_password",
        ] {
            let mut o = cloud_outputs("aws");
            o.remove(missing);
            let e = multi_cluster(&config("aws"), Cloud::Aws, &o).unwrap_err();
            assert!(
                e.to_string().contains(&format!("`{missing}`")),
                "{missing}: {e}"
            );
        }
    }

    #[test]
    fn the_token_secret_asks_kubernetes_for_flyteadmins_token() {
        let r = render("aws");
        let (_, text) = plane(&r, "cpu").token.clone().unwrap();
        let t: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            t,
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "flyteadmin-token",
                    "namespace": "flyte",
                    "annotations": {"kubernetes.io/service-account.name": "flyteadmin"},
                },
                "type": "kubernetes.io/service-account-token",
            })
        );
    }

    #[test]
    fn one_file_values_refuse_a_multi_cluster_deployment() {
        let e: Result<Rendered<_>, _> =
            crate::values::render(&config("aws"), Cloud::Aws, &cloud_outputs("aws"));
        let e = e.err().unwrap().to_string();
        assert!(e.contains("--out-dir DIR"), "{e}");
    }

    #[test]
    fn next_steps_go_data_planes_credentials_control_plane_endpoints() {
        let config = config("gcp");
        let r = render("gcp");
        let text = crate::access::next_steps_multi(&config, Cloud::Gcp, &r, Path::new("out"));
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("no `{needle}` in:\n{text}"))
        };
        let order = [
            at("flyteinfra kubeconfig --cloud gcp"),
            at("-f out/flyte-core-values-gcp-demo-east.yaml"),
            at("kubectl apply -f out/flyteadmin-token-demo-east.yaml"),
            at("-f out/flyte-core-values-gcp-demo-cpu.yaml"),
            at("kubectl apply -f out/flyteadmin-token-demo-cpu.yaml"),
            at("flyteinfra cluster-credentials --kubeconfig"),
            at("kubectl apply -f out/flyte-db-secret-gcp.yaml"),
            at("kubectl apply -f cluster-credentials.yaml"),
            at("-f out/flyte-core-values-gcp-demo.yaml"),
            at("`flyteadmin.flyte.internal:81`"),
            at("port-forward svc/flyteconsole"),
        ];
        assert!(order.is_sorted(), "{order:?}\n{text}");
        assert!(text.contains("flyteorg/flyte-core --version"), "{text}");
        assert!(text.contains("`10.0.0.9:89`"), "{text}");
    }
}

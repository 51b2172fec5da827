//! The way from a finished apply to a running Flyte: a kubeconfig for each cluster, written
//! the way each cloud's own CLI writes one (an `exec` entry that fetches a short-lived
//! token, no secret in the file), the names `cluster-credentials` looks for, and the exact
//! next commands (`NEXT-STEPS.md`).
//!
//! A deployment has one cluster (`single-cluster`) or a control plane and its data planes
//! (`multi-cluster`): [`ClusterRef`] says which, and every function taking one reads that
//! cluster's outputs (the control plane's are unprefixed, a plane's `dp_<plane>_…`).

use std::collections::BTreeMap;
use std::path::Path;

use flyteinfra_core::Value;
use serde_json::{Value as Json, json};

use crate::values::{ClusterFiles, MultiRendered, ValuesError};
use crate::{Chart, Cloud, Config, DataPlaneConfig, Style};

/// What `--cluster` calls the control plane (the one cluster of `single-cluster`).
pub const CONTROL: &str = "control";

/// The ServiceAccount the control plane's flyteadmin acts as in each data plane (the
/// data-plane release creates it: `flyteadmin.serviceAccount.alwaysCreate`).
pub const PLANE_SERVICE_ACCOUNT: &str = "flyteadmin";

/// The long-lived token Secret of [`PLANE_SERVICE_ACCOUNT`] in each data plane (a
/// `kubernetes.io/service-account-token` Secret; Kubernetes ≥ 1.24 makes none by itself).
pub const PLANE_TOKEN_SECRET: &str = "flyteadmin-token";

/// The control plane's Secret holding every data plane's token and CA, mounted into
/// flyteadmin at `/var/run/credentials`.
pub const CLUSTER_CREDENTIALS_SECRET: &str = "cluster-credentials";

/// The keys of a plane's token and CA in [`CLUSTER_CREDENTIALS_SECRET`]: `<plane>_token`,
/// `<plane>_cacert` (the file names `clusterConfigs` points flyteadmin at).
pub fn credential_keys(plane: &str) -> (String, String) {
    (format!("{plane}_token"), format!("{plane}_cacert"))
}

/// One cluster of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRef {
    /// [`CONTROL`] for the control plane (or the only cluster), else the data plane's name.
    pub name: String,
    /// The prefix of its outputs: empty for the control plane, `dp_<plane>_` for a plane.
    pub output_prefix: String,
}

impl ClusterRef {
    /// The control plane, or the one cluster of a `single-cluster` deployment.
    pub fn control() -> ClusterRef {
        ClusterRef {
            name: CONTROL.to_string(),
            output_prefix: String::new(),
        }
    }

    /// A data plane.
    pub fn plane(plane: &DataPlaneConfig) -> ClusterRef {
        ClusterRef {
            name: plane.name.clone(),
            output_prefix: plane.output_prefix(),
        }
    }

    /// The name of this cluster's output `name` (`cluster_endpoint` → `dp_gpu_cluster_endpoint`).
    fn output(&self, name: &str) -> String {
        format!("{}{name}", self.output_prefix)
    }
}

/// Every cluster of the deployment: the control plane first, then the data planes in
/// config order.
pub fn clusters(config: &Config) -> Vec<ClusterRef> {
    std::iter::once(ClusterRef::control())
        .chain(config.data_planes.iter().map(ClusterRef::plane))
        .collect()
}

/// The clusters `--cluster` names: all of them without it, else the one named (`control` or
/// a data plane's name).
///
/// # Errors
/// [`ValuesError::Unsupported`] for `--cluster` on a `single-cluster` deployment and for a
/// name that is no cluster of the deployment (the message lists those there are).
pub fn select_clusters(
    config: &Config,
    cluster: Option<&str>,
) -> Result<Vec<ClusterRef>, ValuesError> {
    let all = clusters(config);
    let Some(wanted) = cluster else {
        return Ok(all);
    };
    if config.style != Style::MultiCluster {
        return Err(ValuesError::Unsupported(format!(
            "`--cluster {wanted}` picks one cluster of a `style: multi-cluster` deployment; \
             this one has a single cluster: leave `--cluster` out"
        )));
    }
    match all.iter().find(|c| c.name == wanted) {
        Some(c) => Ok(vec![c.clone()]),
        None => Err(ValuesError::Unsupported(format!(
            "`--cluster {wanted}` is not a cluster of this deployment, expected one of {}",
            all.iter()
                .map(|c| format!("`{}`", c.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// One cluster's entries for a kubeconfig file: a cluster, a user and a context, all
/// under one name.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterAccess {
    /// The name of the cluster, user and context entries (the cloud CLI's own naming: the
    /// cluster ARN on EKS, `gke_<project>_<location>_<name>` on GKE).
    pub name: String,
    /// The `cluster:` entry (server and CA).
    pub cluster: Json,
    /// The `user:` entry (an `exec` credential plugin).
    pub user: Json,
}

fn out<'a>(outputs: &'a BTreeMap<String, Value>, name: &str) -> Result<&'a str, ValuesError> {
    outputs
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ValuesError::MissingOutput(name.to_string()))
}

/// The URL of a cluster's API server from its `cluster_endpoint` output: EKS and AKS give
/// a URL, GKE a bare address.
pub fn api_server_url(endpoint: &str) -> String {
    if endpoint.starts_with("https://") || endpoint.starts_with("http://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    }
}

/// The name `flyteinfra kubeconfig` gives `cluster`'s entries: the cloud CLI's own (the
/// cluster ARN on EKS, `gke_<project>_<region>_<name>` on GKE, the cluster's name on AKS).
///
/// # Errors
/// [`ValuesError::MissingOutput`] when the state lacks an output it is made of.
pub fn context_name(
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
    cluster: &ClusterRef,
) -> Result<String, ValuesError> {
    let name = out(outputs, &cluster.output("cluster_name"))?;
    Ok(match cloud {
        Cloud::Aws => out(outputs, &cluster.output("cluster_arn"))?.to_string(),
        Cloud::Gcp => format!(
            "gke_{}_{}_{name}",
            out(outputs, "project")?,
            out(outputs, "region")?
        ),
        Cloud::Azure => name.to_string(),
        Cloud::Sandbox => {
            return Err(ValuesError::Unsupported(
                "the sandbox has no cluster flyteinfra makes: use your own kubeconfig".into(),
            ));
        }
    })
}

/// Data plane `plane`'s cloud cluster name: from state (`dp_<plane>_cluster_name`, an
/// `existing:` cluster's own name), else `<deployment>-<plane>`, the name of the cluster
/// flyteinfra makes for it.
pub fn plane_cluster_name(
    config: &Config,
    outputs: &BTreeMap<String, Value>,
    plane: &DataPlaneConfig,
) -> String {
    out(outputs, &ClusterRef::plane(plane).output("cluster_name"))
        .map_or_else(|_| plane.cluster_name(&config.name), str::to_string)
}

/// The kubeconfig context names under which `cluster-credentials` finds data plane
/// `plane`, best first: the name `flyteinfra kubeconfig` gives it (when the state has the
/// outputs), its cloud name from state (an `existing:` cluster's own), and
/// `<deployment>-<plane>`, the name of the cluster flyteinfra makes for it.
pub fn plane_context_names(
    config: &Config,
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
    plane: &DataPlaneConfig,
) -> Vec<String> {
    let cluster = ClusterRef::plane(plane);
    let mut names: Vec<String> = Vec::new();
    let candidates = [
        context_name(cloud, outputs, &cluster).ok(),
        Some(plane_cluster_name(config, outputs, plane)),
        Some(plane.cluster_name(&config.name)),
    ];
    for n in candidates.into_iter().flatten() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The cluster's kubeconfig entries, from the deployment's outputs.
///
/// # Errors
/// [`ValuesError::MissingOutput`] when the state lacks an output (not applied yet, or
/// applied by an older flyteinfra: apply again); [`ValuesError::Unsupported`] on Azure,
/// whose API server CA is only in the credential AKS hands out: see [`aks_access`].
pub fn cluster_access(
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
) -> Result<ClusterAccess, ValuesError> {
    cluster_access_of(cloud, outputs, &ClusterRef::control())
}

/// [`cluster_access`] for any cluster of the deployment (a data plane's from its
/// `dp_<plane>_…` outputs).
///
/// # Errors
/// As [`cluster_access`].
pub fn cluster_access_of(
    cloud: Cloud,
    outputs: &BTreeMap<String, Value>,
    which: &ClusterRef,
) -> Result<ClusterAccess, ValuesError> {
    if cloud == Cloud::Azure {
        return Err(ValuesError::Unsupported(
            "AKS entries come from the cluster's credential (`aks_access`)".into(),
        ));
    }
    // Both other clouds name these outputs alike.
    let endpoint = out(outputs, &which.output("cluster_endpoint"))?;
    let ca = out(outputs, &which.output("cluster_ca"))?;
    let cluster = out(outputs, &which.output("cluster_name"))?;
    let region = out(outputs, "region")?;
    let name = context_name(cloud, outputs, which)?;
    let exec = |command: &str, args: Vec<String>, hint: &str| {
        let mut e = json!({
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": command,
            "installHint": hint,
            "interactiveMode": "IfAvailable",
        });
        if !args.is_empty() {
            e["args"] = json!(args);
        }
        e
    };
    if cloud == Cloud::Aws {
        return Ok(ClusterAccess {
            name,
            cluster: json!({
                "server": endpoint,
                "certificate-authority-data": ca,
            }),
            user: json!({
                "exec": exec(
                    "aws",
                    ["eks", "get-token", "--cluster-name", cluster, "--region", region]
                        .map(str::to_string)
                        .to_vec(),
                    "Install the AWS CLI (v2): https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
                ),
            }),
        });
    }
    // GKE.
    let mut e = exec(
        "gke-gcloud-auth-plugin",
        Vec::new(),
        "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
    );
    e["provideClusterInfo"] = json!(true);
    Ok(ClusterAccess {
        name,
        cluster: json!({
            "server": api_server_url(endpoint),
            "certificate-authority-data": ca,
        }),
        user: json!({ "exec": e }),
    })
}

/// The AKS cluster to ask for a credential: its subscription and resource id.
pub fn aks_cluster(outputs: &BTreeMap<String, Value>) -> Result<(&str, &str), ValuesError> {
    aks_cluster_of(outputs, &ClusterRef::control())
}

/// [`aks_cluster`] for any cluster of the deployment.
pub fn aks_cluster_of<'a>(
    outputs: &'a BTreeMap<String, Value>,
    which: &ClusterRef,
) -> Result<(&'a str, &'a str), ValuesError> {
    Ok((
        out(outputs, "subscription_id")?,
        out(outputs, &which.output("cluster_id"))?,
    ))
}

/// AKS's entries, from the kubeconfig AKS handed out for the cluster
/// (`listClusterUserCredential`, what `az aks get-credentials` writes), named after the
/// cluster as the Azure CLI names them.
pub fn aks_access(
    outputs: &BTreeMap<String, Value>,
    kubeconfig: &Json,
) -> Result<ClusterAccess, ValuesError> {
    aks_access_of(outputs, &ClusterRef::control(), kubeconfig)
}

/// [`aks_access`] for any cluster of the deployment.
pub fn aks_access_of(
    outputs: &BTreeMap<String, Value>,
    which: &ClusterRef,
    kubeconfig: &Json,
) -> Result<ClusterAccess, ValuesError> {
    let name = out(outputs, &which.output("cluster_name"))?;
    let cluster = &kubeconfig["clusters"][0]["cluster"];
    let user = &kubeconfig["users"][0]["user"];
    if !cluster["server"].is_string() || !user.is_object() {
        return Err(ValuesError::Unsupported(format!(
            "the credential AKS handed out for `{name}` has no cluster or user entry"
        )));
    }
    Ok(ClusterAccess {
        name: name.to_string(),
        cluster: cluster.clone(),
        user: user.clone(),
    })
}

impl ClusterAccess {
    /// Whether the user entry holds a secret (AKS with local accounts: a client key and a
    /// token), which must never reach a terminal or a log.
    pub fn holds_secret(&self) -> bool {
        ["client-key-data", "client-key", "token", "password"]
            .iter()
            .any(|k| self.user.get(*k).is_some())
    }

    /// A kubeconfig holding only this cluster, as its current context.
    pub fn document(&self) -> Json {
        document_all(std::slice::from_ref(self))
    }

    /// `existing` (a parsed kubeconfig) with this cluster's entries added, or replacing
    /// the entries of the same name, and its context made current. Every other entry is
    /// kept as it was.
    pub fn merge_into(&self, mut existing: Json) -> Json {
        if !existing.is_object() {
            existing = json!({});
        }
        let entries = [
            ("clusters", "cluster", self.cluster.clone()),
            ("users", "user", self.user.clone()),
            (
                "contexts",
                "context",
                json!({ "cluster": self.name, "user": self.name }),
            ),
        ];
        for (list, key, value) in entries {
            let entry = json!({ "name": self.name, key: value });
            let items = existing[list].as_array().cloned().unwrap_or_default();
            let mut items: Vec<Json> = items
                .into_iter()
                .filter(|e| e["name"] != self.name.as_str())
                .collect();
            items.push(entry);
            existing[list] = Json::Array(items);
        }
        existing["apiVersion"] = json!("v1");
        existing["kind"] = json!("Config");
        existing["current-context"] = json!(self.name);
        existing
    }
}

/// A kubeconfig holding these clusters, the first one's context current.
pub fn document_all(clusters: &[ClusterAccess]) -> Json {
    merge_all(
        clusters,
        json!({ "apiVersion": "v1", "kind": "Config", "preferences": {} }),
    )
}

/// `existing` (a parsed kubeconfig) with every one of these clusters merged in as
/// [`ClusterAccess::merge_into`] does, and the first one's context current (the control
/// plane, when they are a deployment's [`clusters`]).
pub fn merge_all(clusters: &[ClusterAccess], existing: Json) -> Json {
    let mut merged = clusters.iter().fold(existing, |doc, c| c.merge_into(doc));
    if let Some(first) = clusters.first() {
        merged["current-context"] = json!(first.name);
    }
    merged
}

/// `NEXT-STEPS.md`: the commands from a finished apply to Flyte's console, in order, for
/// the files written next to the config (`values` and `secret`, as paths to show).
pub fn next_steps(config: &Config, cloud: Cloud, values: &str, secret: &str) -> String {
    let fl = &config.flyte;
    format!(
        "# Next steps for `{name}` ({cloud})\n\
         \n\
         flyteinfra has made the cloud side. To run Flyte on it:\n\
         \n\
         1. Reach the cluster (adds a context to `~/.kube/config` and makes it current):\n\
         \n\
         ```sh\n\
         flyteinfra kubeconfig --cloud {cloud} --merge\n\
         ```\n\
         \n\
         2. Create the database password Secret (mode 0600 file; it is not in the values):\n\
         \n\
         ```sh\n\
         kubectl create namespace {ns} --dry-run=client -o yaml | kubectl apply -f -\n\
         kubectl apply -f {secret}\n\
         ```\n\
         \n\
         3. Install Flyte with the pinned chart and these values:\n\
         \n\
         ```sh\n\
         helm repo add flyteorg https://flyteorg.github.io/flyte\n\
         helm repo update flyteorg\n\
         {helm}\n\
         ```\n\
         \n\
         4. Open the console without an ingress first:\n\
         \n\
         {open}",
        name = config.name,
        ns = fl.namespace,
        helm = crate::values::helm_command(config, values),
        open = open_console(config),
    )
}

/// How to reach the console and the API through port-forwards (no ingress needed).
fn open_console(config: &Config) -> String {
    let fl = &config.flyte;
    match fl.chart {
        Chart::FlyteBinary => {
            // The chart names its HTTP service after its full name: the release name when
            // that contains the chart's name, else `<release>-flyte-binary`.
            let fullname = if fl.release.contains("flyte-binary") {
                fl.release.clone()
            } else {
                format!("{}-flyte-binary", fl.release)
            };
            let fullname: String = fullname.chars().take(63).collect();
            let service = format!("{}-http", fullname.trim_end_matches('-'));
            format!(
                "```sh\nkubectl -n {ns} port-forward svc/{service} 8088:8088\n```\n\n\
                 then <http://localhost:8088/console>.\n",
                ns = fl.namespace
            )
        }
        // One service per component, under fixed names.
        Chart::FlyteCore => format!(
            "```sh\nkubectl -n {ns} port-forward svc/flyteconsole 8080:80\n             kubectl -n {ns} port-forward svc/flyteadmin 8088:80 8089:81\n```\n\n\
             then <http://localhost:8080/console>; `flytectl` and `pyflyte` reach the API at \
             `localhost:8089` (`--insecure`).\n",
            ns = fl.namespace
        ),
    }
}

/// `NEXT-STEPS.md` of a multi-cluster deployment, for the files written into `dir`: the
/// data planes first (each `flyteadmin` token exists only once its plane's chart made the
/// account), then their credentials into the control plane, then the control plane, then
/// the endpoints the data planes dial.
pub fn next_steps_multi(
    config: &Config,
    cloud: Cloud,
    files: &MultiRendered,
    dir: &Path,
) -> String {
    let fl = &config.flyte;
    let path = |file: &str| dir.join(file).display().to_string();
    let helm = |c: &ClusterFiles| crate::values::helm_command(config, &path(&c.values_file));
    let cp = &files.control;
    let planes: Vec<String> = files
        .planes
        .iter()
        .map(|p| {
            format!(
                "`{}` (`{}`)",
                p.cluster,
                p.plane.as_deref().unwrap_or_default()
            )
        })
        .collect();
    let mut data_planes = String::new();
    for p in &files.planes {
        let token = p
            .token
            .as_ref()
            .map(|(file, _)| path(file))
            .unwrap_or_default();
        data_planes.push_str(&format!(
            "```sh\n\
             # data plane `{plane}`: kubectl and helm on cluster `{cluster}`\n\
             {helm}\n\
             kubectl apply -f {token}\n\
             ```\n\n",
            plane = p.plane.as_deref().unwrap_or_default(),
            cluster = p.cluster,
            helm = helm(p),
        ));
    }
    let (admin, catalog, tls) = config.control_plane.as_ref().map_or_else(
        || (String::new(), String::new(), ""),
        |c| {
            (
                c.admin_endpoint.clone(),
                c.catalog_endpoint.clone(),
                if c.insecure {
                    "plain gRPC, `control_plane.insecure: true`"
                } else {
                    "TLS the load balancers terminate, `control_plane.insecure: false`"
                },
            )
        },
    );
    format!(
        "# Next steps for `{name}` ({cloud}, multi-cluster)\n\
         \n\
         flyteinfra has made the cloud side: the control-plane cluster `{control}` and the \
         data-plane clusters {planes}. To run Flyte on them:\n\
         \n\
         1. Reach the clusters: a kubeconfig with a context per cluster:\n\
         \n\
         ```sh\n\
         flyteinfra kubeconfig --cloud {cloud} --out kubeconfig-{cloud}.yaml\n\
         helm repo add flyteorg https://flyteorg.github.io/flyte\n\
         helm repo update flyteorg\n\
         ```\n\
         \n\
         2. Install each data plane, then its `flyteadmin` token Secret (after the chart: \
         Kubernetes deletes a token Secret whose service account does not exist yet):\n\
         \n\
         {data_planes}\
         3. Collect each data plane's token and CA into the control plane's `cluster-credentials` \
         Secret (mode 0600 file; no token is printed):\n\
         \n\
         ```sh\n\
         flyteinfra cluster-credentials --kubeconfig kubeconfig-{cloud}.yaml --out cluster-credentials.yaml\n\
         ```\n\
         \n\
         4. Install the control plane, after its two Secrets (the database password and the \
         cluster credentials; neither is in the values):\n\
         \n\
         ```sh\n\
         # control plane: kubectl and helm on cluster `{control}`\n\
         kubectl create namespace {ns} --dry-run=client -o yaml | kubectl apply -f -\n\
         kubectl apply -f {secret}\n\
         kubectl apply -f cluster-credentials.yaml\n\
         {control_helm}\n\
         ```\n\
         \n\
         5. Make the control plane's endpoints real: the data planes dial flyteadmin at \
         `{admin}` and datacatalog at `{catalog}` ({tls}). Put load balancers the data planes \
         can reach (internal ones) in front of the control plane's `flyteadmin` service (gRPC \
         port 81) and `datacatalog` service (gRPC port 89), listening on those ports, and make \
         those names lead to them. flytepropeller retries until then.\n\
         \n\
         6. Send a project's executions to a label's data planes with \
         `flytectl update execution-cluster-label --attrFile` (`{{domain, project, value: <label>}}`).\n\
         \n\
         7. Open the console on the control plane without an ingress first:\n\
         \n\
         {open}",
        name = config.name,
        control = cp.cluster,
        planes = planes.join(", "),
        ns = fl.namespace,
        secret = path(&files.secret_file),
        control_helm = helm(cp),
        open = open_console(config),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(*v)))
            .collect()
    }

    fn aws() -> BTreeMap<String, Value> {
        outputs(&[
            ("region", "eu-west-1"),
            ("cluster_name", "demo"),
            (
                "cluster_arn",
                "arn:aws:eks:eu-west-1:111122223333:cluster/demo",
            ),
            (
                "cluster_endpoint",
                "https://ABC.gr7.eu-west-1.eks.amazonaws.com",
            ),
            ("cluster_ca", "Q0EK"),
        ])
    }

    #[test]
    fn eks_gets_an_aws_eks_get_token_exec_entry() {
        let a = cluster_access(Cloud::Aws, &aws()).unwrap();
        let doc = a.document();
        assert_eq!(doc["current-context"], a.name);
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"],
            "https://ABC.gr7.eu-west-1.eks.amazonaws.com"
        );
        assert_eq!(
            doc["clusters"][0]["cluster"]["certificate-authority-data"],
            "Q0EK"
        );
        let exec = &doc["users"][0]["user"]["exec"];
        assert_eq!(exec["command"], "aws");
        assert_eq!(
            exec["args"],
            json!([
                "eks",
                "get-token",
                "--cluster-name",
                "demo",
                "--region",
                "eu-west-1"
            ])
        );
        assert_eq!(exec["apiVersion"], "client.authentication.k8s.io/v1beta1");
        assert_eq!(
            doc["contexts"][0],
            json!({"name": a.name, "context": {"cluster": a.name, "user": a.name}})
        );
    }

    #[test]
    fn gke_gets_the_auth_plugin_and_an_https_server() {
        let a = cluster_access(
            Cloud::Gcp,
            &outputs(&[
                ("project", "p1"),
                ("region", "us-central1"),
                ("cluster_name", "demo"),
                ("cluster_endpoint", "34.1.2.3"),
                ("cluster_ca", "Q0EK"),
            ]),
        )
        .unwrap();
        assert_eq!(a.name, "gke_p1_us-central1_demo");
        assert_eq!(a.cluster["server"], "https://34.1.2.3");
        assert_eq!(a.user["exec"]["command"], "gke-gcloud-auth-plugin");
        assert_eq!(a.user["exec"]["provideClusterInfo"], true);
        // No state yet: a clear error, not an empty file.
        let e = cluster_access(Cloud::Gcp, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("flyteinfra apply"), "{e}");
    }

    #[test]
    fn aks_entries_come_from_the_handed_out_credential_under_the_clusters_name() {
        let o = outputs(&[
            ("subscription_id", "sub-1"),
            (
                "cluster_id",
                "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/demo-aks",
            ),
            ("cluster_name", "demo-aks"),
        ]);
        assert_eq!(aks_cluster(&o).unwrap().0, "sub-1");
        let handed_out = json!({
            "clusters": [{"name": "demo-aks", "cluster": {"server": "https://x:443", "certificate-authority-data": "Q0EK"}}],
            "users": [{"name": "clusterUser_rg_demo-aks", "user": {"client-key-data": "S0VZ", "token": "t"}}],
        });
        let a = aks_access(&o, &handed_out).unwrap();
        assert_eq!(a.name, "demo-aks");
        assert_eq!(a.cluster["server"], "https://x:443");
        assert!(a.holds_secret());
        assert!(!cluster_access(Cloud::Aws, &aws()).unwrap().holds_secret());
        assert!(aks_access(&o, &json!({})).is_err());
        let config = Config::parse(
            "name: demo\ncloud: azure\nazure:\n  subscription_id: 00000000-0000-0000-0000-000000000001\n  location: westeurope\n  resource_group: demo-rg\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let text = next_steps(&config, Cloud::Azure, "v.yaml", "s.yaml");
        assert!(
            text.contains("flyteinfra kubeconfig --cloud azure --merge"),
            "{text}"
        );
    }

    #[test]
    fn merging_keeps_every_other_entry_and_replaces_our_own() {
        let a = cluster_access(Cloud::Aws, &aws()).unwrap();
        let theirs = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "minikube", "cluster": {"server": "https://127.0.0.1:8443"}}],
            "users": [{"name": "minikube", "user": {"token": "t"}}],
            "contexts": [{"name": "minikube", "context": {"cluster": "minikube", "user": "minikube"}}],
            "current-context": "minikube",
            "preferences": {"colors": true},
        });
        let merged = a.merge_into(theirs.clone());
        for list in ["clusters", "users", "contexts"] {
            assert_eq!(merged[list][0], theirs[list][0], "{list}");
            assert_eq!(merged[list].as_array().unwrap().len(), 2, "{list}");
        }
        assert_eq!(merged["preferences"], theirs["preferences"]);
        assert_eq!(merged["current-context"], a.name);
        // Merged again (after a re-create): replaced, not duplicated.
        let again = a.merge_into(merged.clone());
        assert_eq!(again, merged);
    }

    const MULTI: &str = "name: demo\ncloud: aws\nstyle: multi-cluster\naws:\n  region: eu-west-1\n\
        gcp:\n  project: proj-one\n  region: us-central1\n\
        control_plane:\n  admin_endpoint: a.internal:81\n  catalog_endpoint: c.internal:89\n\
        data_planes:\n  - name: gpu\n  - name: cpu\n";

    fn multi() -> Config {
        Config::parse(MULTI, Path::new("t.yaml")).unwrap()
    }

    /// The control plane's outputs plus plane `gpu`'s (`dp_gpu_…`).
    fn aws_multi() -> BTreeMap<String, Value> {
        let mut o = aws();
        o.extend(outputs(&[
            ("dp_gpu_cluster_name", "demo-gpu"),
            (
                "dp_gpu_cluster_arn",
                "arn:aws:eks:eu-west-1:111122223333:cluster/demo-gpu",
            ),
            ("dp_gpu_cluster_endpoint", "https://GPU.eks.amazonaws.com"),
            ("dp_gpu_cluster_ca", "R1BVCg=="),
        ]));
        o
    }

    #[test]
    fn cluster_selects_the_control_plane_or_one_plane_and_names_the_choices() {
        let config = multi();
        let names = |v: Vec<ClusterRef>| v.into_iter().map(|c| c.name).collect::<Vec<_>>();
        assert_eq!(
            names(select_clusters(&config, None).unwrap()),
            ["control", "gpu", "cpu"]
        );
        assert_eq!(
            names(select_clusters(&config, Some("gpu")).unwrap()),
            ["gpu"]
        );
        let control = select_clusters(&config, Some("control")).unwrap();
        assert_eq!(control, [ClusterRef::control()]);
        let e = select_clusters(&config, Some("tpu"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "`--cluster tpu` is not a cluster of this deployment, expected one of `control`, `gpu`, `cpu`"
        );
        // One cluster: nothing to pick.
        let single = Config::parse(
            "name: demo\ncloud: aws\naws:\n  region: us-east-1\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        assert_eq!(
            select_clusters(&single, None).unwrap(),
            [ClusterRef::control()]
        );
        let e = select_clusters(&single, Some("control"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("leave `--cluster` out"), "{e}");
    }

    #[test]
    fn a_plane_gets_entries_from_its_own_outputs_under_the_clouds_naming() {
        let o = aws_multi();
        let gpu = ClusterRef::plane(&multi().data_planes[0]);
        let a = cluster_access_of(Cloud::Aws, &o, &gpu).unwrap();
        assert_eq!(
            a.name,
            "arn:aws:eks:eu-west-1:111122223333:cluster/demo-gpu"
        );
        assert_eq!(a.cluster["server"], "https://GPU.eks.amazonaws.com");
        assert_eq!(a.cluster["certificate-authority-data"], "R1BVCg==");
        assert_eq!(a.user["exec"]["args"][3], "demo-gpu");
        // The control plane's are unchanged.
        assert_eq!(
            cluster_access_of(Cloud::Aws, &o, &ClusterRef::control()).unwrap(),
            cluster_access(Cloud::Aws, &o).unwrap()
        );
        // A plane not applied yet names its missing output.
        let cpu = ClusterRef::plane(&multi().data_planes[1]);
        let e = cluster_access_of(Cloud::Aws, &o, &cpu)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`dp_cpu_cluster_endpoint`"), "{e}");

        let g = outputs(&[
            ("project", "p1"),
            ("region", "us-central1"),
            ("dp_gpu_cluster_name", "demo-gpu"),
            ("dp_gpu_cluster_endpoint", "34.1.2.4"),
            ("dp_gpu_cluster_ca", "Q0EK"),
        ]);
        let a = cluster_access_of(Cloud::Gcp, &g, &gpu).unwrap();
        assert_eq!(a.name, "gke_p1_us-central1_demo-gpu");
        assert_eq!(a.cluster["server"], "https://34.1.2.4");

        let z = outputs(&[
            ("subscription_id", "sub-1"),
            (
                "dp_gpu_cluster_id",
                "/subscriptions/sub-1/x/managedClusters/demo-gpu",
            ),
            ("dp_gpu_cluster_name", "demo-gpu"),
        ]);
        assert_eq!(
            aks_cluster_of(&z, &gpu).unwrap(),
            ("sub-1", "/subscriptions/sub-1/x/managedClusters/demo-gpu")
        );
        let handed_out = json!({
            "clusters": [{"name": "demo-gpu", "cluster": {"server": "https://g:443"}}],
            "users": [{"name": "u", "user": {"exec": {"command": "kubelogin"}}}],
        });
        assert_eq!(
            aks_access_of(&z, &gpu, &handed_out).unwrap().name,
            "demo-gpu"
        );
    }

    #[test]
    fn cluster_credentials_accepts_the_kubeconfig_name_the_cloud_name_and_the_plain_name() {
        let config = multi();
        let gpu = &config.data_planes[0];
        assert_eq!(
            plane_context_names(&config, Cloud::Aws, &aws_multi(), gpu),
            [
                "arn:aws:eks:eu-west-1:111122223333:cluster/demo-gpu",
                "demo-gpu"
            ]
        );
        // Without state: the name flyteinfra gives the cluster it makes.
        assert_eq!(
            plane_context_names(&config, Cloud::Gcp, &BTreeMap::new(), gpu),
            ["demo-gpu"]
        );
        // An existing cluster's own name comes from state.
        let o = outputs(&[
            ("project", "p1"),
            ("region", "us-central1"),
            ("dp_gpu_cluster_name", "theirs"),
        ]);
        assert_eq!(
            plane_context_names(&config, Cloud::Gcp, &o, gpu),
            ["gke_p1_us-central1_theirs", "theirs", "demo-gpu"]
        );
        assert_eq!(
            credential_keys("gpu"),
            ("gpu_token".to_string(), "gpu_cacert".to_string())
        );
    }

    #[test]
    fn all_clusters_merge_with_the_control_plane_current() {
        let o = aws_multi();
        let control = cluster_access(Cloud::Aws, &o).unwrap();
        let gpu =
            cluster_access_of(Cloud::Aws, &o, &ClusterRef::plane(&multi().data_planes[0])).unwrap();
        let doc = document_all(&[control.clone(), gpu.clone()]);
        assert_eq!(doc["current-context"], control.name);
        for list in ["clusters", "users", "contexts"] {
            let names: Vec<&str> = doc[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect();
            assert_eq!(names, [control.name.as_str(), gpu.name.as_str()], "{list}");
        }
        // One cluster: exactly today's document.
        assert_eq!(
            document_all(std::slice::from_ref(&control)),
            control.document()
        );
        // Merged again: replaced in place, not duplicated.
        assert_eq!(merge_all(&[control, gpu], doc.clone()), doc);
    }

    #[test]
    fn next_steps_name_the_files_the_pinned_chart_and_the_service() {
        let config = Config::parse(
            "name: demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n  image_tag: v1.16.8\n",
            Path::new("t.yaml"),
        )
        .unwrap();
        let text = next_steps(&config, Cloud::Aws, "values.yaml", "secret.yaml");
        let fl = &config.flyte;
        for needle in [
            "flyteinfra kubeconfig --cloud aws --merge".to_string(),
            "kubectl apply -f secret.yaml".to_string(),
            "helm repo add flyteorg https://flyteorg.github.io/flyte".to_string(),
            format!(
                "helm upgrade --install {} flyteorg/flyte-binary --version {} --namespace {} \
                 --create-namespace -f values.yaml",
                fl.release, fl.chart_version, fl.namespace
            ),
            format!("kubectl -n {} port-forward svc/", fl.namespace),
            "http://localhost:8088/console".to_string(),
        ] {
            assert!(text.contains(&needle), "{needle}\n{text}");
        }
    }
}

//! The way from a finished apply to a running Flyte: a kubeconfig for the cluster, written
//! the way each cloud's own CLI writes one (an `exec` entry that fetches a short-lived
//! token, no secret in the file), and the exact next commands (`NEXT-STEPS.md`).

use std::collections::BTreeMap;

use flyteinfra_core::Value;
use serde_json::{Value as Json, json};

use crate::values::ValuesError;
use crate::{Chart, Cloud, Config};

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
    if cloud == Cloud::Azure {
        return Err(ValuesError::Unsupported(
            "AKS entries come from the cluster's credential (`aks_access`)".into(),
        ));
    }
    // Both other clouds name these outputs alike.
    let endpoint = out(outputs, "cluster_endpoint")?;
    let ca = out(outputs, "cluster_ca")?;
    let cluster = out(outputs, "cluster_name")?;
    let region = out(outputs, "region")?;
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
            name: out(outputs, "cluster_arn")?.to_string(),
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
    let project = out(outputs, "project")?;
    let mut e = exec(
        "gke-gcloud-auth-plugin",
        Vec::new(),
        "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
    );
    e["provideClusterInfo"] = json!(true);
    Ok(ClusterAccess {
        name: format!("gke_{project}_{region}_{cluster}"),
        cluster: json!({
            "server": format!("https://{endpoint}"),
            "certificate-authority-data": ca,
        }),
        user: json!({ "exec": e }),
    })
}

/// The AKS cluster to ask for a credential: its subscription and resource id.
pub fn aks_cluster(outputs: &BTreeMap<String, Value>) -> Result<(&str, &str), ValuesError> {
    Ok((
        out(outputs, "subscription_id")?,
        out(outputs, "cluster_id")?,
    ))
}

/// AKS's entries, from the kubeconfig AKS handed out for the cluster
/// (`listClusterUserCredential`, what `az aks get-credentials` writes), named after the
/// cluster as the Azure CLI names them.
pub fn aks_access(
    outputs: &BTreeMap<String, Value>,
    kubeconfig: &Json,
) -> Result<ClusterAccess, ValuesError> {
    let name = out(outputs, "cluster_name")?;
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
        self.merge_into(json!({ "apiVersion": "v1", "kind": "Config", "preferences": {} }))
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

/// `NEXT-STEPS.md`: the commands from a finished apply to Flyte's console, in order, for
/// the files written next to the config (`values` and `secret`, as paths to show).
pub fn next_steps(config: &Config, cloud: Cloud, values: &str, secret: &str) -> String {
    let fl = &config.flyte;
    let open = match fl.chart {
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
    };
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

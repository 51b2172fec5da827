//! Reaching the deployment's clusters: `flyteinfra kubeconfig` (entries per cluster, from
//! state) and `flyteinfra cluster-credentials` (each data plane's token and CA, read with
//! kube-rs, for the control plane). What the entries and names are is `flyteinfra_flyte::access`'s
//! business; this module only fetches, reads and writes.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use flyteinfra_core::Sensitive;
use flyteinfra_flyte::access::{self, ClusterAccess, ClusterRef};
use flyteinfra_flyte::{Cloud, Style};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use super::write_private;
use crate::ExitStatus;
use crate::context::Loaded;

/// `flyteinfra kubeconfig`. AKS puts the API server's CA only in the credential it hands
/// out, so on Azure this asks for that (one ARM call per cluster) and takes its entries, as
/// `az aks get-credentials` does; a credential holding a key is never printed.
pub async fn kubeconfig(
    loaded: &Loaded,
    out: Option<&Path>,
    merge: bool,
    cluster: Option<&str>,
) -> Result<ExitStatus> {
    let which = access::select_clusters(&loaded.config, cluster)?;
    if which.len() > 1 && out.is_none() && !merge {
        bail!(
            "this deployment has {} clusters ({}): pick one with `--cluster NAME`, or write \
             them all with `--out FILE` or `--merge`",
            which.len(),
            names(which.iter().map(|c| c.name.as_str()))
        );
    }
    let doc = loaded.read_state()?;
    let outputs = doc.output_values();
    let mut accesses = Vec::with_capacity(which.len());
    for c in &which {
        accesses.push(cluster_access(loaded, &outputs, c).await?);
    }
    if let Some(secret) = accesses.iter().find(|a| a.holds_secret())
        && out.is_none()
        && !merge
    {
        bail!(
            "the credential AKS hands out for `{}` holds a client key (the cluster has local \
             accounts), so it is not printed: write it with `--out FILE` (mode 0600) or `--merge`",
            secret.name
        );
    }
    let current = &accesses[0].name;
    let what = if accesses.len() == 1 {
        format!("`{current}`")
    } else {
        names(accesses.iter().map(|a| a.name.as_str()))
    };
    if merge {
        let path = kubeconfig_path()?;
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => serde_saphyr::from_str(&text)
                .with_context(|| format!("`{}` is not a kubeconfig file", path.display()))?,
            Ok(_) => serde_json::Value::Null,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::Value::Null,
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        };
        let merged = access::merge_all(&accesses, existing);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::os::unix::fs::DirBuilderExt::mode(
                std::fs::DirBuilder::new().recursive(true),
                0o700,
            )
            .create(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        write_private(&path, serde_saphyr::to_string(&merged)?.as_bytes())?;
        if accesses.len() == 1 {
            eprintln!(
                "Merged {what} into `{}` and made it the current context.",
                path.display()
            );
        } else {
            eprintln!(
                "Merged {what} into `{}` and made the control plane's `{current}` the current \
                 context.",
                path.display()
            );
        }
        return Ok(ExitStatus::Success);
    }
    let text = serde_saphyr::to_string(&access::document_all(&accesses))?;
    match out {
        Some(p) => {
            write_private(p, text.as_bytes())?;
            if accesses.len() > 1 {
                eprintln!(
                    "Wrote {what} to `{}` (the control plane's context current).",
                    p.display()
                );
            }
            eprintln!(
                "Wrote `{}`: `export KUBECONFIG={}`, then `kubectl get nodes`.",
                p.display(),
                p.display()
            );
        }
        None => write!(std::io::stdout(), "{text}")?,
    }
    Ok(ExitStatus::Success)
}

/// One cluster's entries: from state, or on Azure from the credential AKS hands out.
async fn cluster_access(
    loaded: &Loaded,
    outputs: &BTreeMap<String, flyteinfra_core::Value>,
    which: &ClusterRef,
) -> Result<ClusterAccess> {
    if loaded.cloud != Cloud::Azure {
        return Ok(access::cluster_access_of(loaded.cloud, outputs, which)?);
    }
    let (subscription, cluster) = access::aks_cluster_of(outputs, which)?;
    let client = crate::context::azure_client(subscription)?;
    let text = flyteinfra_provider_azure::cluster_user_kubeconfig(&client, cluster)
        .await
        .map_err(|e| anyhow!("cannot get the credential of `{cluster}`: {e}"))?;
    let handed_out: serde_json::Value = serde_saphyr::from_str(&text)
        .map_err(|_| anyhow!("the credential AKS handed out for `{cluster}` is not YAML"))?;
    Ok(access::aks_access_of(outputs, which, &handed_out)?)
}

/// The kubeconfig kubectl uses: the first file in `$KUBECONFIG`, else `~/.kube/config`.
fn kubeconfig_path() -> Result<PathBuf> {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return Ok(first);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("neither `KUBECONFIG` nor `HOME` is set: use `--out FILE`"))?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}

/// `a`, `b`, `c`, in backticks.
fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one data plane gave: its `flyteadmin` token and the API server's CA.
struct PlaneCredential {
    plane: String,
    context: String,
    token: Sensitive<ByteString>,
    ca: ByteString,
}

/// `flyteinfra cluster-credentials`: every data plane's token and CA, read before anything
/// is written (one failing plane writes no file), into the control plane's Secret manifest.
pub async fn cluster_credentials(
    loaded: &Loaded,
    kubeconfig: &Path,
    out: &Path,
) -> Result<ExitStatus> {
    let config = &loaded.config;
    if config.style != Style::MultiCluster {
        bail!(
            "`cluster-credentials` is for `style: multi-cluster` deployments (the control \
             plane's credentials for its data planes); `{}` is `style: {}`, whose one cluster \
             needs none",
            loaded.config_path.display(),
            config.style.as_str()
        );
    }
    let file = read_kubeconfig(kubeconfig)?;
    let outputs = loaded.read_state()?.output_values();
    let contexts: Vec<&str> = file.contexts.iter().map(|c| c.name.as_str()).collect();

    // Every plane's context is found before any cluster is called.
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for plane in &config.data_planes {
        let accepted = access::plane_context_names(config, loaded.cloud, &outputs, plane);
        match accepted.iter().find(|n| contexts.contains(&n.as_str())) {
            Some(name) => chosen.push((plane, name.clone())),
            None => missing.push(format!(
                "`{}` (a context named {})",
                plane.name,
                accepted
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        }
    }
    if !missing.is_empty() {
        let has = if contexts.is_empty() {
            "none".to_string()
        } else {
            names(contexts.iter().copied())
        };
        bail!(
            "`{}` has no context for data plane {}; its contexts: {has}. \
             `flyteinfra kubeconfig --merge` adds one for every cluster of the deployment",
            kubeconfig.display(),
            missing.join(", ")
        );
    }

    let namespace = &config.flyte.namespace;
    let mut read = Vec::with_capacity(chosen.len());
    for (plane, context) in chosen {
        let manifest = flyteinfra_flyte::values::multi::token_file_name(
            &access::plane_cluster_name(config, &outputs, plane),
        );
        let at = Plane {
            name: &plane.name,
            context,
            manifest,
        };
        read.push(read_plane(&file, at, namespace).await?);
    }

    write_private(out, credentials_manifest(namespace, &read)?.as_bytes())?;
    eprintln!(
        "Read the `{}` token and CA of data plane {}.",
        access::PLANE_SERVICE_ACCOUNT,
        read.iter()
            .map(|c| format!("`{}` (context `{}`)", c.plane, c.context))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "Wrote the Secret `{}` to `{}` (mode 0600): `kubectl apply -f {}` in the control \
         plane's cluster before installing the control plane.",
        access::CLUSTER_CREDENTIALS_SECRET,
        out.display(),
        out.display()
    );
    Ok(ExitStatus::Success)
}

/// The control plane's Secret manifest: each plane's token and CA under
/// [`access::credential_keys`], base64 in `data` (k8s-openapi encodes `ByteString`).
fn credentials_manifest(namespace: &str, planes: &[PlaneCredential]) -> Result<String> {
    let mut data = BTreeMap::new();
    for c in planes {
        let (token_key, ca_key) = access::credential_keys(&c.plane);
        data.insert(token_key, c.token.expose().clone());
        data.insert(ca_key, c.ca.clone());
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(access::CLUSTER_CREDENTIALS_SECRET.to_string()),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(data),
        ..Secret::default()
    };
    serde_saphyr::to_string(&secret).context("cannot render the Secret manifest")
}

/// Reads a kubeconfig. A parse error's own message is left out: it may quote the file,
/// and a data plane's user entry may hold a token.
fn read_kubeconfig(path: &Path) -> Result<Kubeconfig> {
    Kubeconfig::read_from(path).map_err(|e| match e {
        KubeconfigError::ReadConfig(source, _) => {
            anyhow!(source).context(format!("cannot read the kubeconfig `{}`", path.display()))
        }
        _ => anyhow!(
            "`{}` is not a kubeconfig file (the parser's message is left out: the file may \
             hold credentials)",
            path.display()
        ),
    })
}

/// The data plane being read: its name, the kubeconfig context reaching it and the file
/// name of its token Secret manifest (`flyteinfra values --out-dir`).
struct Plane<'a> {
    name: &'a str,
    context: String,
    manifest: String,
}

/// One plane's token and CA, through its context.
async fn read_plane(
    file: &Kubeconfig,
    plane: Plane<'_>,
    namespace: &str,
) -> Result<PlaneCredential> {
    let Plane {
        name,
        context,
        manifest,
    } = plane;
    let at = format!("data plane `{name}` (context `{context}`)");
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let client_config = kube::Config::from_custom_kubeconfig(file.clone(), &options)
        .await
        .with_context(|| format!("cannot use the kubeconfig entries of {at}"))?;
    let client = kube::Client::try_from(client_config)
        .with_context(|| format!("cannot make a Kubernetes client for {at}"))?;
    let account = access::PLANE_SERVICE_ACCOUNT;
    let secret_name = access::PLANE_TOKEN_SECRET;

    let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), namespace);
    let found = accounts
        .get_opt(account)
        .await
        .map_err(|e| api_error(e, &at, &format!("ServiceAccount `{namespace}/{account}`")))?;
    if found.is_none() {
        bail!(
            "{at} has no ServiceAccount `{account}` in namespace `{namespace}`: `helm install` \
             the data plane's release first (its values create it), then `kubectl apply -f \
             {manifest}` (its token Secret, written by `flyteinfra values --out-dir`)"
        );
    }

    let secrets: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
    let secret = secrets
        .get_opt(secret_name)
        .await
        .map_err(|e| api_error(e, &at, &format!("Secret `{namespace}/{secret_name}`")))?
        .ok_or_else(|| {
            anyhow!(
                "{at} has no Secret `{secret_name}` in namespace `{namespace}`: `kubectl apply -f \
                 {manifest}` (its token Secret, written by `flyteinfra values --out-dir`; \
                 Kubernetes 1.24 and later make none by themselves)"
            )
        })?;
    let mut data = secret.data.unwrap_or_default();
    let token = data.remove("token").filter(|t| !t.0.is_empty());
    let ca = data.remove("ca.crt").filter(|c| !c.0.is_empty());
    let (Some(token), Some(ca)) = (token, ca) else {
        bail!(
            "the Secret `{secret_name}` in namespace `{namespace}` of {at} has no `token` and \
             `ca.crt` yet: Kubernetes fills them in for a `kubernetes.io/service-account-token` \
             Secret annotated `kubernetes.io/service-account.name: {account}` once that \
             ServiceAccount exists; apply `{manifest}` as written by `flyteinfra values \
             --out-dir` and run this again"
        );
    };
    Ok(PlaneCredential {
        plane: name.to_string(),
        context,
        token: Sensitive::new(token),
        ca,
    })
}

/// A failed read, worded by what the API server said.
fn api_error(e: kube::Error, at: &str, what: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(status) if status.code == 401 => anyhow!(
            "{at} refused the context's credentials (401 Unauthorized) reading {what}: renew \
             them (for a cluster flyteinfra made, `flyteinfra kubeconfig --merge`) and run \
             this again"
        ),
        kube::Error::Api(status) if status.code == 403 => anyhow!(
            "the context's user may not read {what} in {at} (403 Forbidden): it needs `get` \
             on serviceaccounts and secrets in that namespace"
        ),
        _ => anyhow!(e).context(format!("cannot read {what} in {at}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real tokens (~1 KB) and CA bundles (several KB, with newlines) stay one base64
    /// scalar each: a folded line would corrupt them.
    #[test]
    fn long_tokens_and_cas_round_trip_through_the_manifest() {
        let token: Vec<u8> = (0..1200u32)
            .map(|i| b"abcXYZ.-_"[(i % 9) as usize])
            .collect();
        let ca: Vec<u8> = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"
            .repeat(40)
            .into_bytes();
        let planes = [PlaneCredential {
            plane: "gpu".into(),
            context: "ctx".into(),
            token: Sensitive::new(ByteString(token.clone())),
            ca: ByteString(ca.clone()),
        }];
        let text = credentials_manifest("flyte", &planes).unwrap();
        let back: Secret = serde_saphyr::from_str(&text).unwrap();
        let data = back.data.unwrap();
        assert_eq!(data["gpu_token"].0, token);
        assert_eq!(data["gpu_cacert"].0, ca);
        assert_eq!(back.metadata.name.as_deref(), Some("cluster-credentials"));
        assert_eq!(back.metadata.namespace.as_deref(), Some("flyte"));
        assert_eq!(back.type_.as_deref(), Some("Opaque"));
    }
}

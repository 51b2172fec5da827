//! `gcp_container_cluster`: a VPC-native GKE Standard cluster with Workload Identity.
//!
//! GKE cannot create a cluster without a node pool, and node pools are managed by
//! `gcp_container_node_pool`. So the cluster is created with a one-node pool named
//! `default-pool`, and `wait_ready` deletes that pool once the cluster is `RUNNING` (the
//! pattern Terraform calls `remove_default_node_pool`).
//!
//! The name is the identity (unique per location). The create token goes into the
//! `flyteinfra-token` resource label, so a retried create adopts its own cluster while a
//! same-named cluster made by someone else stays an `AlreadyExists` error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use google_cloud_container_v1::model::cluster::Status;
use google_cloud_container_v1::model::release_channel::Channel;
use google_cloud_container_v1::model::{
    Cluster, ClusterUpdate, IPAllocationPolicy, NodePool, ReleaseChannel, WorkloadIdentityConfig,
};

use super::operations::{
    Backoff, OpMemo, busy_is_transient, finish_gke_ops, gke_op_path, input_map, label_value,
    link_value, location_of, managed_only, string_map, wait_gke_op,
};
use super::sql_database_instance::TOKEN_LABEL;
use crate::client::GcpClients;
use crate::error::gax_err;

/// The pool GKE insists on at create, removed once the cluster runs.
pub(crate) const DEFAULT_POOL: &str = "default-pool";

/// `gcp_container_cluster`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_container_cluster",
        doc: "A VPC-native GKE Standard cluster with Workload Identity. GKE requires a node \
              pool at create, so it is created with a one-node `default-pool` that is deleted \
              as soon as the cluster runs: node pools are `gcp_container_node_pool` resources \
              (do not name one `default-pool`).",
        fields: vec![
            Field::computed(
                "id",
                "The cloud id, `projects/{p}/locations/{loc}/clusters/{name}`.",
            ),
            Field::computed("endpoint", "The control plane's IP address."),
            Field::computed(
                "ca_certificate",
                "The cluster CA (base64), for kubeconfig files.",
            ),
            Field::computed("self_link", "The cluster's API link."),
            Field::input("name", "The cluster name.")
                .required()
                .force_new(),
            Field::input(
                "location",
                "A region (regional cluster) or a zone (zonal cluster).",
            )
            .required()
            .force_new(),
            Field::input("network", "The VPC (self link or name).").force_new(),
            Field::input("subnetwork", "The subnetwork (self link or name).").force_new(),
            Field::input(
                "pods_range_name",
                "The subnetwork's secondary range for pods (VPC-native).",
            )
            .force_new(),
            Field::input(
                "services_range_name",
                "The subnetwork's secondary range for services (VPC-native).",
            )
            .force_new(),
            Field::input("release_channel", "`REGULAR`, `STABLE` or `RAPID`."),
            // An input that is also reported when unset (computed).
            {
                let mut f = Field::input(
                    "workload_pool",
                    "The Workload Identity pool, `{project}.svc.id.goog`.",
                );
                f.flags.computed = true;
                f
            },
            Field::input(
                "labels",
                "Resource labels (the `flyteinfra-token` label is hidden).",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(6 * 60),
        deletion_protection: None,
    }
}

/// `gcp_container_cluster` over the GKE API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ContainerCluster {
        clients: clients.clone(),
        schema: schema(),
        ops: OpMemo::default(),
    })
}

struct ContainerCluster {
    clients: GcpClients,
    schema: Schema,
    /// Cluster id → the running create or delete operation sent by this process.
    ops: OpMemo,
}

/// The cluster's GCP errors: `ERROR`/`DEGRADED` with its message.
#[allow(deprecated)] // `status_message` is deprecated for `conditions`; both are read.
fn failure(c: &Cluster) -> Option<String> {
    if !matches!(c.status, Status::Error | Status::Degraded) {
        return None;
    }
    let mut msgs: Vec<String> = c
        .conditions
        .iter()
        .map(|x| x.message.clone())
        .filter(|m| !m.is_empty())
        .collect();
    if !c.status_message.is_empty() {
        msgs.insert(0, c.status_message.clone());
    }
    if msgs.is_empty() {
        msgs.push("no message from GKE".into());
    }
    Some(format!(
        "GKE cluster `{}` is {}: {}",
        c.name,
        c.status.name().unwrap_or("failed"),
        msgs.join("; ")
    ))
}

impl ContainerCluster {
    /// The cluster `id`, or `None`.
    async fn get(&self, id: &str) -> Result<Option<Cluster>, ProviderError> {
        match self
            .clients
            .gke
            .get_cluster()
            .set_name(id)
            .send()
            .await
            .map_err(|e| gax_err("container.clusters.get", e))
        {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn id(&self, location: &str, name: &str) -> String {
        format!(
            "projects/{}/locations/{location}/clusters/{name}",
            self.clients.project
        )
    }

    /// Waits for operation `op` (as a call returned it) on cluster `id`.
    async fn wait_op(
        &self,
        id: &str,
        op: &google_cloud_container_v1::model::Operation,
        what: &str,
    ) -> Result<(), ProviderError> {
        let path = gke_op_path(
            &self.clients.project,
            location_of(id),
            &op.name,
            &op.location,
        );
        wait_gke_op(&self.clients, &path, what).await
    }

    /// Deletes `default-pool` if the cluster still has it, and waits. A busy cluster (its
    /// create still finishing) is waited out.
    async fn remove_default_pool(
        &self,
        c: &Cluster,
        id: &str,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        if !c.node_pools.iter().any(|p| p.name == DEFAULT_POOL) {
            return Ok(());
        }
        progress.status(format!("removing {DEFAULT_POOL}"));
        let mut backoff = Backoff::new();
        loop {
            let sent = self
                .clients
                .gke
                .delete_node_pool()
                .set_name(format!("{id}/nodePools/{DEFAULT_POOL}"))
                .send()
                .await
                .map_err(|e| busy_is_transient(gax_err("container.nodePools.delete", e)));
            match sent {
                Ok(op) => {
                    let what = format!("removing `{DEFAULT_POOL}` of GKE cluster `{id}`");
                    return self.wait_op(id, &op, &what).await;
                }
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(()),
                // Another operation (the create's tail, or an earlier delete) is running.
                Err(e) if e.kind == ErrorKind::Transient || e.kind == ErrorKind::Conflict => {
                    backoff.sleep().await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one update and waits for it (GKE runs one cluster update at a time).
    async fn update_one(
        &self,
        id: &str,
        update: ClusterUpdate,
        what: &str,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        progress.status(format!("updating {what}"));
        let op = self
            .clients
            .gke
            .update_cluster()
            .set_name(id)
            .set_update(update)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("container.clusters.update", e)))?;
        self.wait_op(id, &op, &format!("updating {what} of GKE cluster `{id}`"))
            .await
    }

    /// Makes the cloud's updatable settings match `inputs`, for the `changed` fields.
    async fn apply_changes(
        &self,
        id: &str,
        inputs: &Attributes,
        changed: &[&str],
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        if changed.contains(&"release_channel")
            && let Some(ch) = attrs::opt_s(inputs, "release_channel")
        {
            let u = ClusterUpdate::new()
                .set_desired_release_channel(ReleaseChannel::new().set_channel(Channel::from(ch)));
            self.update_one(id, u, "the release channel", progress)
                .await?;
        }
        if changed.contains(&"workload_pool")
            && let Some(pool) = attrs::opt_s(inputs, "workload_pool")
        {
            let u = ClusterUpdate::new().set_desired_workload_identity_config(
                WorkloadIdentityConfig::new().set_workload_pool(pool),
            );
            self.update_one(id, u, "the workload pool", progress)
                .await?;
        }
        if changed.contains(&"labels") {
            let c = self.get(id).await?.ok_or_else(|| gone(id))?;
            let mut labels = input_map(inputs, "labels");
            labels.retain(|(k, _)| k != TOKEN_LABEL);
            if let Some(t) = c.resource_labels.get(TOKEN_LABEL) {
                labels.push((TOKEN_LABEL.to_string(), t.clone()));
            }
            progress.status("updating labels");
            let op = self
                .clients
                .gke
                .set_labels()
                .set_name(id)
                .set_resource_labels(labels)
                .set_label_fingerprint(c.label_fingerprint)
                .send()
                .await
                .map_err(|e| {
                    busy_is_transient(gax_err("container.clusters.setResourceLabels", e))
                })?;
            self.wait_op(
                id,
                &op,
                &format!("updating the labels of GKE cluster `{id}`"),
            )
            .await?;
        }
        Ok(())
    }
}

/// The create body.
fn cluster_body(inputs: &Attributes, token: &str) -> Result<Cluster, ProviderError> {
    let mut ip = IPAllocationPolicy::new().set_use_ip_aliases(true);
    if let Some(r) = attrs::opt_s(inputs, "pods_range_name") {
        ip = ip.set_cluster_secondary_range_name(r);
    }
    if let Some(r) = attrs::opt_s(inputs, "services_range_name") {
        ip = ip.set_services_secondary_range_name(r);
    }
    let mut labels = input_map(inputs, "labels");
    labels.retain(|(k, _)| k != TOKEN_LABEL);
    labels.push((TOKEN_LABEL.to_string(), label_value(token)));
    let mut c = Cluster::new()
        .set_name(attrs::s(inputs, "name")?)
        .set_ip_allocation_policy(ip)
        .set_resource_labels(labels)
        // GKE needs one pool at create; `wait_ready` removes it.
        .set_node_pools([NodePool::new()
            .set_name(DEFAULT_POOL)
            .set_initial_node_count(1)]);
    if let Some(n) = attrs::opt_s(inputs, "network") {
        c = c.set_network(n);
    }
    if let Some(n) = attrs::opt_s(inputs, "subnetwork") {
        c = c.set_subnetwork(n);
    }
    if let Some(ch) = attrs::opt_s(inputs, "release_channel") {
        c = c.set_release_channel(ReleaseChannel::new().set_channel(Channel::from(ch)));
    }
    if let Some(p) = attrs::opt_s(inputs, "workload_pool") {
        c = c.set_workload_identity_config(WorkloadIdentityConfig::new().set_workload_pool(p));
    }
    Ok(c)
}

fn is_ours(c: &Cluster, token: &str) -> bool {
    c.resource_labels.get(TOKEN_LABEL) == Some(&label_value(token))
}

/// The updatable inputs whose cloud value differs (what an adopting create must change).
fn differing(c: &Cluster, project: &str, inputs: &Attributes) -> Vec<&'static str> {
    let have = attributes(c, project, inputs);
    ["release_channel", "workload_pool", "labels"]
        .into_iter()
        .filter(|f| {
            inputs
                .get(*f)
                .is_some_and(|want| have.get(*f) != Some(want))
        })
        .collect()
}

#[async_trait]
impl ResourceType for ContainerCluster {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let c = self.get(&req.id).await?;
        Ok(ReadResponse {
            attributes: c.map(|c| {
                managed_only(
                    attributes(&c, &self.clients.project, &req.prior_inputs),
                    &req.prior_inputs,
                    &self.schema,
                )
            }),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let id = self.id(
            attrs::s(&req.inputs, "location")?,
            attrs::s(&req.inputs, "name")?,
        );
        let c = self.get(&id).await?;
        Ok(FindResponse {
            id: c.filter(|c| is_ours(c, &req.token)).map(|_| id),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let inputs = &req.inputs;
        let location = attrs::s(inputs, "location")?;
        let name = attrs::s(inputs, "name")?;
        let id = self.id(location, name);
        let sent = self
            .clients
            .gke
            .create_cluster()
            .set_parent(format!(
                "projects/{}/locations/{location}",
                self.clients.project
            ))
            .set_cluster(cluster_body(inputs, &req.token)?)
            .send()
            .await
            .map_err(|e| gax_err("container.clusters.create", e));
        match sent {
            Ok(op) => {
                let path = gke_op_path(&self.clients.project, location, &op.name, &op.location);
                self.ops.remember(&id, &path);
                req.progress.status("PROVISIONING");
                Ok(CreateResponse {
                    id,
                    completion: Completion::InProgress,
                })
            }
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let c = self.get(&id).await?;
                let Some(c) = c.filter(|c| is_ours(c, &req.token)) else {
                    return Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "a GKE cluster named `{name}` already exists in `{location}` and was \
                             not created by this deployment; import it or choose another name"
                        ),
                    ));
                };
                // An earlier attempt of this create: finish it in `wait_ready` (which also
                // removes the default pool) unless it is already running.
                if c.status != Status::Running
                    || c.node_pools.iter().any(|p| p.name == DEFAULT_POOL)
                {
                    return Ok(CreateResponse {
                        id,
                        completion: Completion::InProgress,
                    });
                }
                let diff = differing(&c, &self.clients.project, inputs);
                self.apply_changes(&id, inputs, &diff, &req.progress)
                    .await?;
                let c = self.get(&id).await?.ok_or_else(|| gone(&id))?;
                Ok(CreateResponse {
                    id,
                    completion: Completion::Ready(managed_only(
                        attributes(&c, &self.clients.project, inputs),
                        inputs,
                        &self.schema,
                    )),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let id = req.id.as_str();
        let what = format!("creating GKE cluster `{id}`");
        finish_gke_ops(&self.clients, &self.ops, id, &what).await?;
        let mut backoff = Backoff::new();
        let mut last = String::new();
        let c = loop {
            let c = self.get(id).await?.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!("GKE cluster `{id}` disappeared while being created"),
                )
            })?;
            let status = c.status.name().unwrap_or("UNKNOWN").to_string();
            if status != last {
                req.progress.status(status.clone());
                last = status;
            }
            if let Some(m) = failure(&c) {
                return Err(ProviderError::new(ErrorKind::Permanent, m));
            }
            if c.status == Status::Running {
                break c;
            }
            backoff.sleep().await;
        };
        self.remove_default_pool(&c, id, &req.progress).await?;
        let c = self.get(id).await?.ok_or_else(|| gone(id))?;
        // A retried create that adopted a half-made cluster still has to match the inputs.
        let diff = differing(&c, &self.clients.project, &req.inputs);
        self.apply_changes(id, &req.inputs, &diff, &req.progress)
            .await?;
        let c = if diff.is_empty() {
            c
        } else {
            self.get(id).await?.ok_or_else(|| gone(id))?
        };
        Ok(managed_only(
            attributes(&c, &self.clients.project, &req.inputs),
            &req.inputs,
            &self.schema,
        ))
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let changed: Vec<&str> = req.changed.iter().map(String::as_str).collect();
        self.apply_changes(&req.id, &req.inputs, &changed, &req.progress)
            .await?;
        let c = self.get(&req.id).await?.ok_or_else(|| gone(&req.id))?;
        Ok(UpdateResponse {
            attributes: managed_only(
                attributes(&c, &self.clients.project, &req.inputs),
                &req.inputs,
                &self.schema,
            ),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let sent = self
            .clients
            .gke
            .delete_cluster()
            .set_name(&req.id)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("container.clusters.delete", e)));
        match sent {
            Ok(op) => {
                let path = gke_op_path(
                    &self.clients.project,
                    location_of(&req.id),
                    &op.name,
                    &op.location,
                );
                self.ops.remember(&req.id, &path);
                req.progress.status("STOPPING");
                Ok(DeleteResponse { done: false })
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let what = format!("deleting GKE cluster `{}`", req.id);
        finish_gke_ops(&self.clients, &self.ops, &req.id, &what).await?;
        let mut backoff = Backoff::new();
        while let Some(c) = self.get(&req.id).await? {
            if c.status == Status::Error {
                return Err(ProviderError::new(
                    ErrorKind::Permanent,
                    failure(&c)
                        .unwrap_or_else(|| format!("GKE cluster `{}` failed to delete", req.id)),
                ));
            }
            backoff.sleep().await;
        }
        Ok(())
    }
}

/// The attributes of `c` (before [`managed_only`]).
fn attributes(c: &Cluster, project: &str, prior_inputs: &Attributes) -> Attributes {
    let mut a = Attributes::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_string(), v);
    };
    let st = |s: &str| Value::Str(s.to_string());
    put(
        "id",
        st(&format!(
            "projects/{project}/locations/{}/clusters/{}",
            c.location, c.name
        )),
    );
    put("name", st(&c.name));
    put("location", st(&c.location));
    if !c.endpoint.is_empty() {
        put("endpoint", st(&c.endpoint));
    }
    if let Some(ca) = c
        .master_auth
        .as_ref()
        .map(|m| m.cluster_ca_certificate.as_str())
        .filter(|ca| !ca.is_empty())
    {
        put("ca_certificate", st(ca));
    }
    if !c.self_link.is_empty() {
        put("self_link", st(&c.self_link));
    }
    if !c.network.is_empty() {
        put(
            "network",
            link_value(&c.network, prior_inputs.get("network")),
        );
    }
    if !c.subnetwork.is_empty() {
        put(
            "subnetwork",
            link_value(&c.subnetwork, prior_inputs.get("subnetwork")),
        );
    }
    if let Some(ip) = &c.ip_allocation_policy {
        if !ip.cluster_secondary_range_name.is_empty() {
            put("pods_range_name", st(&ip.cluster_secondary_range_name));
        }
        if !ip.services_secondary_range_name.is_empty() {
            put("services_range_name", st(&ip.services_secondary_range_name));
        }
    }
    if let Some(ch) = c
        .release_channel
        .as_ref()
        .and_then(|r| r.channel.name())
        .filter(|n| *n != "UNSPECIFIED")
    {
        put("release_channel", st(ch));
    }
    if let Some(w) = c
        .workload_identity_config
        .as_ref()
        .filter(|w| !w.workload_pool.is_empty())
    {
        put("workload_pool", st(&w.workload_pool));
    }
    put(
        "labels",
        string_map(c.resource_labels.iter().filter(|(k, _)| *k != TOKEN_LABEL)),
    );
    a
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("GKE cluster `{id}` no longer exists"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::container_node_pool;
    use crate::resources::operations::testkit::{OPS, progress};
    use crate::testutil::{self, PROJECT};
    use flyteinfra_core::requests;

    const T: &str = "gcp_container_cluster";
    const NP: &str = "gcp_container_node_pool";

    fn inputs(name: &str) -> Attributes {
        attrs::attrs([
            ("name", Value::Str(name.into())),
            ("location", Value::Str("us-central1".into())),
            (
                "network",
                Value::Str(format!("projects/{PROJECT}/global/networks/flyte-vpc")),
            ),
            (
                "subnetwork",
                Value::Str(format!(
                    "projects/{PROJECT}/regions/us-central1/subnetworks/flyte-gke"
                )),
            ),
            ("pods_range_name", Value::Str("pods".into())),
            ("services_range_name", Value::Str("services".into())),
            ("release_channel", Value::Str("REGULAR".into())),
            (
                "workload_pool",
                Value::Str(format!("{PROJECT}.svc.id.goog")),
            ),
            (
                "labels",
                Value::Map([("team".to_string(), Value::Str("ml".into()))].into()),
            ),
        ])
    }

    fn pool_inputs(cluster: &str, min: i64, max: i64) -> Attributes {
        attrs::attrs([
            ("cluster", Value::Str(cluster.into())),
            ("name", Value::Str("workers".into())),
            ("machine_type", Value::Str("e2-standard-4".into())),
            (
                "service_account",
                Value::Str(format!("flyte-nodes@{PROJECT}.iam.gserviceaccount.com")),
            ),
            ("min_nodes", Value::Int(min)),
            ("max_nodes", Value::Int(max)),
            (
                "oauth_scopes",
                Value::List(vec![Value::Str(
                    "https://www.googleapis.com/auth/cloud-platform".into(),
                )]),
            ),
        ])
    }

    #[tokio::test]
    async fn cluster_and_node_pool_lifecycle() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-gke");
        let ins = inputs(&name);
        let token = testutil::unique("fi-tok");
        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        let id = format!("projects/{PROJECT}/locations/us-central1/clusters/{name}");
        assert_eq!(created.id, id);
        assert!(matches!(created.completion, Completion::InProgress));
        // While it provisions, a retried create adopts it (still in progress).
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        assert!(matches!(again.completion, Completion::InProgress));
        // A same-named cluster of another deployment is not adopted.
        let foreign = rt
            .create(requests::create(T, &ins, "fi-someone-else"))
            .await
            .unwrap_err();
        assert_eq!(foreign.kind, ErrorKind::AlreadyExists);

        let (p, sink) = progress(T);
        let mut w = requests::wait(T, &id, &ins);
        w.progress = p;
        let ready = rt.wait_ready(w).await.unwrap();
        let statuses = sink.statuses();
        assert!(statuses.iter().any(|s| s == "RUNNING"), "{statuses:?}");
        assert!(
            statuses.iter().any(|s| s == "removing default-pool"),
            "{statuses:?}"
        );
        // The default pool is gone: node pools are managed as their own resources.
        let cl = c.gke.get_cluster().set_name(&id).send().await.unwrap();
        assert!(cl.node_pools.is_empty(), "{:?}", cl.node_pools);

        let a = rt
            .read(requests::refresh(T, &id, &ins))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(a, ready);
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        assert_eq!(a["id"], Value::Str(id.clone()));
        assert!(a["endpoint"].as_str().is_some_and(|e| !e.is_empty()));
        assert!(a["ca_certificate"].as_str().is_some_and(|c| !c.is_empty()));
        assert!(a["self_link"].as_str().unwrap().ends_with(&name));
        assert_eq!(
            rt.find(requests::find(T, &ins, &token))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            rt.find(requests::find(T, &ins, "fi-other"))
                .await
                .unwrap()
                .id,
            None
        );
        // A retried create of a finished cluster adopts it ready.
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert!(matches!(again.completion, Completion::Ready(ref x) if *x == a));

        // Node pool: create, wait, adopt, autoscaling update, delete.
        let np = container_node_pool::build(&c);
        let pins = pool_inputs(&id, 1, 3);
        let pid = format!("{id}/nodePools/workers");
        let made = np.create(requests::create(NP, &pins, "tok")).await.unwrap();
        assert_eq!(made.id, pid);
        let (p, sink) = progress(NP);
        let mut w = requests::wait(NP, &pid, &pins);
        w.progress = p;
        let pa = np.wait_ready(w).await.unwrap();
        assert!(
            sink.statuses().iter().any(|s| s == "RUNNING"),
            "{:?}",
            sink.statuses()
        );
        for (k, v) in &pins {
            assert_eq!(pa.get(k), Some(v), "{k}");
        }
        assert_eq!(pa["id"], Value::Str(pid.clone()));
        let raw = c.gke.get_node_pool().set_name(&pid).send().await.unwrap();
        let cfg = raw.config.unwrap();
        assert_eq!(
            cfg.workload_metadata_config.unwrap().mode.name(),
            Some("GKE_METADATA")
        );
        assert_eq!(
            np.read(requests::refresh(NP, &pid, &pins))
                .await
                .unwrap()
                .attributes
                .as_ref(),
            Some(&pa)
        );
        assert_eq!(
            np.find(requests::find(NP, &pins, "tok"))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(pid.as_str())
        );
        // The token rides in the resource labels, which reads do not show.
        assert_eq!(
            cfg.resource_labels
                .get("flyteinfra-token")
                .map(String::as_str),
            Some("tok")
        );
        crate::testutil::assert_foreign_token_refused(&np, NP, &pins).await;
        // A retried create adopts the pool and sets the asked-for bounds.
        let wider = pool_inputs(&id, 2, 5);
        let adopted = np
            .create(requests::create(NP, &wider, "tok"))
            .await
            .unwrap();
        let Completion::Ready(adopted) = adopted.completion else {
            panic!("a running pool is adopted ready");
        };
        assert_eq!(adopted["min_nodes"], Value::Int(2));
        assert_eq!(adopted["max_nodes"], Value::Int(5));
        let narrower = pool_inputs(&id, 0, 2);
        let updated = np
            .update(requests::update(
                NP,
                &pid,
                &adopted,
                &narrower,
                &["min_nodes", "max_nodes"],
            ))
            .await
            .unwrap()
            .attributes;
        assert_eq!(updated["min_nodes"], Value::Int(0));
        assert_eq!(updated["max_nodes"], Value::Int(2));
        assert_eq!(
            np.read(requests::refresh(NP, &pid, &narrower))
                .await
                .unwrap()
                .attributes
                .as_ref(),
            Some(&updated)
        );
        let d = np
            .delete(requests::delete(NP, &pid, &updated))
            .await
            .unwrap();
        if !d.done {
            np.wait_deleted(requests::wait(NP, &pid, &narrower))
                .await
                .unwrap();
        }
        assert_eq!(
            np.read(requests::read(NP, &pid)).await.unwrap().attributes,
            None
        );
        assert!(
            np.delete(requests::delete(NP, &pid, &updated))
                .await
                .unwrap()
                .done
        );

        // Cluster updates, one per call; the token label survives a label change.
        let mut new = ins.clone();
        new.insert("release_channel".into(), Value::Str("STABLE".into()));
        new.insert(
            "workload_pool".into(),
            Value::Str("other-project.svc.id.goog".into()),
        );
        new.insert(
            "labels".into(),
            Value::Map([("team".to_string(), Value::Str("data".into()))].into()),
        );
        let updated = rt
            .update(requests::update(
                T,
                &id,
                &a,
                &new,
                &["release_channel", "workload_pool", "labels"],
            ))
            .await
            .unwrap()
            .attributes;
        for (k, v) in &new {
            assert_eq!(updated.get(k), Some(v), "{k}");
        }
        assert_eq!(
            rt.find(requests::find(T, &new, &token))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );

        let d = rt.delete(requests::delete(T, &id, &updated)).await.unwrap();
        if !d.done {
            rt.wait_deleted(requests::wait(T, &id, &new)).await.unwrap();
        }
        assert_eq!(
            rt.read(requests::read(T, &id)).await.unwrap().attributes,
            None
        );
        assert!(
            rt.delete(requests::delete(T, &id, &updated))
                .await
                .unwrap()
                .done
        );
    }

    #[tokio::test]
    async fn interrupted_cluster_create_is_finished_after_a_restart() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let name = testutil::unique("flyte-gke-int");
        let ins = inputs(&name);
        let token = testutil::unique("fi-tok");
        let id = build(&c)
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        let rt = build(&c);
        assert_eq!(
            rt.find(requests::find(T, &ins, &token))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(a["name"], Value::Str(name));
        let cl = c.gke.get_cluster().set_name(&id).send().await.unwrap();
        assert!(cl.node_pools.is_empty());
        rt.delete(requests::delete(T, &id, &a)).await.unwrap();
        // The delete's wait after another restart.
        build(&c)
            .wait_deleted(requests::wait(T, &id, &ins))
            .await
            .unwrap();
        assert_eq!(
            rt.read(requests::read(T, &id)).await.unwrap().attributes,
            None
        );
    }

    #[tokio::test]
    async fn failed_cluster_create_fails_fast() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-gke-fail");
        let ins = inputs(&name);
        let message = format!("Insufficient regional quota for {name}");
        let id = {
            let _g = OPS.write().await;
            {
                let mut w = testutil::double().shared().lock();
                w.knobs.fail_next_ops = 1;
                w.knobs.fail_message = message.clone();
            }
            let id = rt
                .create(requests::create(T, &ins, "tok"))
                .await
                .unwrap()
                .id;
            testutil::double().shared().lock().knobs.fail_next_ops = 0;
            id
        };
        let _g = OPS.read().await;
        let err = rt
            .wait_ready(requests::wait(T, &id, &ins))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(err.message.contains(&message), "{err}");
        // After a restart the cluster's ERROR status fails as fast, with its message.
        let err = build(&c)
            .wait_ready(requests::wait(T, &id, &ins))
            .await
            .unwrap_err();
        assert!(err.message.contains(&message), "{err}");
    }
}

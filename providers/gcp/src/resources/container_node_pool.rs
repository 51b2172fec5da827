//! `gcp_container_node_pool`: an autoscaled node pool of a GKE cluster, its nodes on the
//! GKE metadata server (required for Workload Identity).
//!
//! The name is the identity (unique per cluster). A pool has no description, so the
//! create's token rides in its resource labels (on the nodes' VMs, hidden from reads): a
//! create that meets a pool of that name adopts it, and sets its autoscaling to the inputs,
//! only when it carries that token; anyone else's is refused. Machine type, service
//! account and scopes are fixed: GKE cannot change them without recreating every node, so
//! a change replaces the pool. The autoscaling bounds change in place.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use google_cloud_container_v1::model::node_pool::Status;
use google_cloud_container_v1::model::workload_metadata_config::Mode;
use google_cloud_container_v1::model::{
    NodeConfig, NodePool, NodePoolAutoscaling, WorkloadMetadataConfig,
};

use super::operations::{
    Backoff, OpMemo, busy_is_transient, finish_gke_ops, gke_op_path, label_value, location_of,
    managed_only, wait_gke_op,
};
use super::sql_database_instance::TOKEN_LABEL;
use crate::client::GcpClients;
use crate::error::gax_err;

/// The scope nodes get when `oauth_scopes` is not set: access is governed by IAM.
const DEFAULT_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// `gcp_container_node_pool`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_container_node_pool",
        doc: "An autoscaled GKE node pool using the GKE metadata server (Workload Identity). \
              Machine type, service account and scopes cannot change without recreating \
              every node, so changing them replaces the pool; the autoscaling bounds change \
              in place.",
        fields: vec![
            Field::computed("id", "The cloud id, `{cluster}/nodePools/{name}`."),
            Field::computed(
                "instance_group_urls",
                "The Compute Engine instance groups of the pool's nodes.",
            ),
            Field::input(
                "cluster",
                "The cluster id, `projects/{p}/locations/{loc}/clusters/{name}`.",
            )
            .required()
            .force_new(),
            Field::input("name", "The node pool name.")
                .required()
                .force_new(),
            Field::input(
                "machine_type",
                "The nodes' machine type (`e2-standard-4`); GKE cannot change it in place.",
            )
            .required()
            .force_new(),
            Field::input("service_account", "The nodes' service account email.").force_new(),
            Field::input(
                "min_nodes",
                "The autoscaler's minimum node count (per zone).",
            ),
            Field::input(
                "max_nodes",
                "The autoscaler's maximum node count (per zone).",
            ),
            Field::input(
                "oauth_scopes",
                "The nodes' OAuth scopes (default `cloud-platform`: IAM decides).",
            )
            .force_new(),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(4 * 60),
        deletion_protection: None,
    }
}

/// `gcp_container_node_pool` over the GKE API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ContainerNodePool {
        clients: clients.clone(),
        schema: schema(),
        ops: OpMemo::default(),
    })
}

struct ContainerNodePool {
    clients: GcpClients,
    schema: Schema,
    /// Pool id → the running create or delete operation sent by this process.
    ops: OpMemo,
}

/// An integer input GKE takes as `i32`.
fn int32(a: &Attributes, key: &str) -> Result<Option<i32>, ProviderError> {
    attrs::i(a, key)
        .map(|v| {
            i32::try_from(v).map_err(|_| {
                ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!("input `{key}` is out of range: {v}"),
                )
            })
        })
        .transpose()
}

/// The autoscaling the inputs ask for, or `None` when they set no bounds.
fn autoscaling(inputs: &Attributes) -> Result<Option<NodePoolAutoscaling>, ProviderError> {
    let min = int32(inputs, "min_nodes")?;
    let max = int32(inputs, "max_nodes")?;
    if min.is_none() && max.is_none() {
        return Ok(None);
    }
    let min = min.unwrap_or(0);
    let max = max.unwrap_or(min.max(1));
    if max < min || max < 1 {
        return Err(ProviderError::new(
            ErrorKind::InvalidInput,
            format!("node pool bounds are invalid: min_nodes {min}, max_nodes {max}"),
        ));
    }
    Ok(Some(
        NodePoolAutoscaling::new()
            .set_enabled(true)
            .set_min_node_count(min)
            .set_max_node_count(max),
    ))
}

/// The pool's failure, if it is in a failed state.
#[allow(deprecated)] // `status_message` is deprecated for `conditions`; both are read.
fn failure(p: &NodePool, id: &str) -> Option<String> {
    if !matches!(p.status, Status::Error | Status::RunningWithError) {
        return None;
    }
    let mut msgs: Vec<String> = p
        .conditions
        .iter()
        .map(|c| c.message.clone())
        .filter(|m| !m.is_empty())
        .collect();
    if !p.status_message.is_empty() {
        msgs.insert(0, p.status_message.clone());
    }
    if msgs.is_empty() {
        msgs.push("no message from GKE".into());
    }
    Some(format!(
        "GKE node pool `{id}` is {}: {}",
        p.status.name().unwrap_or("failed"),
        msgs.join("; ")
    ))
}

impl ContainerNodePool {
    async fn get(&self, id: &str) -> Result<Option<NodePool>, ProviderError> {
        match self
            .clients
            .gke
            .get_node_pool()
            .set_name(id)
            .send()
            .await
            .map_err(|e| gax_err("container.nodePools.get", e))
        {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn op_path(&self, id: &str, op: &google_cloud_container_v1::model::Operation) -> String {
        gke_op_path(
            &self.clients.project,
            location_of(id),
            &op.name,
            &op.location,
        )
    }

    /// Sets the autoscaling bounds and waits.
    async fn set_autoscaling(
        &self,
        id: &str,
        inputs: &Attributes,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let Some(a) = autoscaling(inputs)? else {
            return Ok(());
        };
        progress.status("updating autoscaling");
        let op = self
            .clients
            .gke
            .set_node_pool_autoscaling()
            .set_name(id)
            .set_autoscaling(a)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("container.nodePools.setAutoscaling", e)))?;
        let path = self.op_path(id, &op);
        wait_gke_op(
            &self.clients,
            &path,
            &format!("setting the autoscaling of GKE node pool `{id}`"),
        )
        .await
    }

    /// The pool as attributes, or NotFound.
    async fn read_back(&self, id: &str, inputs: &Attributes) -> Result<Attributes, ProviderError> {
        let p = self.get(id).await?.ok_or_else(|| gone(id))?;
        Ok(managed_only(
            attributes(&p, id, inputs),
            inputs,
            &self.schema,
        ))
    }
}

#[async_trait]
impl ResourceType for ContainerNodePool {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let p = self.get(&req.id).await?;
        Ok(ReadResponse {
            attributes: p.map(|p| {
                managed_only(
                    attributes(&p, &req.id, &req.prior_inputs),
                    &req.prior_inputs,
                    &self.schema,
                )
            }),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let id = pool_id(&req.inputs)?;
        Ok(FindResponse {
            id: self
                .get(&id)
                .await?
                .filter(|p| is_ours(p, &req.token))
                .map(|_| id),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let inputs = &req.inputs;
        let cluster = attrs::s(inputs, "cluster")?;
        let name = attrs::s(inputs, "name")?;
        let id = pool_id(inputs)?;
        let mut scopes = attrs::strings(inputs, "oauth_scopes");
        if scopes.is_empty() {
            scopes.push(DEFAULT_SCOPE.to_string());
        }
        let mut config = NodeConfig::new()
            .set_machine_type(attrs::s(inputs, "machine_type")?)
            .set_oauth_scopes(scopes)
            .set_resource_labels([(TOKEN_LABEL, label_value(&req.token))])
            // Workload Identity needs the GKE metadata server on every node.
            .set_workload_metadata_config(
                WorkloadMetadataConfig::new().set_mode(Mode::from("GKE_METADATA")),
            );
        if let Some(sa) = attrs::opt_s(inputs, "service_account") {
            config = config.set_service_account(sa);
        }
        let auto = autoscaling(inputs)?;
        let initial = auto.as_ref().map_or(1, |a| a.min_node_count.max(1));
        let mut pool = NodePool::new()
            .set_name(name)
            .set_config(config)
            .set_initial_node_count(initial);
        if let Some(a) = auto {
            pool = pool.set_autoscaling(a);
        }
        let sent = self
            .clients
            .gke
            .create_node_pool()
            .set_parent(cluster)
            .set_node_pool(pool)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("container.nodePools.create", e)));
        match sent {
            Ok(op) => {
                self.ops.remember(&id, &self.op_path(&id, &op));
                req.progress.status("PROVISIONING");
                Ok(CreateResponse {
                    id,
                    completion: Completion::InProgress,
                })
            }
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                // An earlier attempt's, or anyone else's pool of that name.
                let p = self.get(&id).await?.ok_or(e)?;
                if !is_ours(&p, &req.token) {
                    return Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "GKE node pool `{id}` already exists and is not flyteinfra's: its \
                             resource labels do not carry this create's token; flyteinfra \
                             never takes over an object it did not make. To manage it with \
                             flyteinfra, run `flyteinfra import {} {id}`; otherwise choose \
                             another name",
                            req.address
                        ),
                    ));
                }
                if p.status != Status::Running {
                    return Ok(CreateResponse {
                        id,
                        completion: Completion::InProgress,
                    });
                }
                if differs_in_autoscaling(&p, inputs)? {
                    self.set_autoscaling(&id, inputs, &req.progress).await?;
                }
                let a = self.read_back(&id, inputs).await?;
                Ok(CreateResponse {
                    id,
                    completion: Completion::Ready(a),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let id = req.id.as_str();
        let what = format!("creating GKE node pool `{id}`");
        finish_gke_ops(&self.clients, &self.ops, id, &what).await?;
        let mut backoff = Backoff::new();
        let mut last = String::new();
        let p = loop {
            let p = self.get(id).await?.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!("GKE node pool `{id}` disappeared while being created"),
                )
            })?;
            let status = p.status.name().unwrap_or("UNKNOWN").to_string();
            if status != last {
                req.progress.status(status.clone());
                last = status;
            }
            if let Some(m) = failure(&p, id) {
                return Err(ProviderError::new(ErrorKind::Permanent, m));
            }
            if p.status == Status::Running {
                break p;
            }
            backoff.sleep().await;
        };
        // An adopted pool made by an earlier attempt may have other bounds.
        if differs_in_autoscaling(&p, &req.inputs)? {
            self.set_autoscaling(id, &req.inputs, &req.progress).await?;
            return self.read_back(id, &req.inputs).await;
        }
        Ok(managed_only(
            attributes(&p, id, &req.inputs),
            &req.inputs,
            &self.schema,
        ))
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        if req
            .changed
            .iter()
            .any(|c| c == "min_nodes" || c == "max_nodes")
        {
            self.set_autoscaling(&req.id, &req.inputs, &req.progress)
                .await?;
        }
        Ok(UpdateResponse {
            attributes: self.read_back(&req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let sent = self
            .clients
            .gke
            .delete_node_pool()
            .set_name(&req.id)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("container.nodePools.delete", e)));
        match sent {
            Ok(op) => {
                self.ops.remember(&req.id, &self.op_path(&req.id, &op));
                req.progress.status("STOPPING");
                Ok(DeleteResponse { done: false })
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let what = format!("deleting GKE node pool `{}`", req.id);
        finish_gke_ops(&self.clients, &self.ops, &req.id, &what).await?;
        let mut backoff = Backoff::new();
        while self.get(&req.id).await?.is_some() {
            backoff.sleep().await;
        }
        Ok(())
    }
}

/// `{cluster}/nodePools/{name}` of the inputs.
fn pool_id(inputs: &Attributes) -> Result<String, ProviderError> {
    Ok(format!(
        "{}/nodePools/{}",
        attrs::s(inputs, "cluster")?,
        attrs::s(inputs, "name")?
    ))
}

/// Whether the pool carries `token` in its resource labels (made by that create).
fn is_ours(p: &NodePool, token: &str) -> bool {
    p.config
        .as_ref()
        .and_then(|c| c.resource_labels.get(TOKEN_LABEL))
        == Some(&label_value(token))
}

/// Whether the pool's autoscaling differs from the bounds the inputs set.
fn differs_in_autoscaling(p: &NodePool, inputs: &Attributes) -> Result<bool, ProviderError> {
    let Some(want) = autoscaling(inputs)? else {
        return Ok(false);
    };
    Ok(match &p.autoscaling {
        Some(have) => {
            !have.enabled
                || have.min_node_count != want.min_node_count
                || have.max_node_count != want.max_node_count
        }
        None => true,
    })
}

/// The attributes of pool `p` whose id is `id` (before [`managed_only`]).
fn attributes(p: &NodePool, id: &str, prior_inputs: &Attributes) -> Attributes {
    let mut a = Attributes::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_string(), v);
    };
    let st = |s: &str| Value::Str(s.to_string());
    put("id", st(id));
    let cluster = id.rsplit_once("/nodePools/").map_or(id, |(c, _)| c);
    put("cluster", st(cluster));
    put("name", st(&p.name));
    if let Some(c) = &p.config {
        if !c.machine_type.is_empty() {
            put("machine_type", st(&c.machine_type));
        }
        if !c.service_account.is_empty() {
            put("service_account", st(&c.service_account));
        }
        put(
            "oauth_scopes",
            attrs::unordered(c.oauth_scopes.clone(), prior_inputs.get("oauth_scopes")),
        );
    }
    if let Some(s) = p.autoscaling.as_ref().filter(|s| s.enabled) {
        put("min_nodes", Value::Int(s.min_node_count.into()));
        put("max_nodes", Value::Int(s.max_node_count.into()));
    }
    put(
        "instance_group_urls",
        Value::List(p.instance_group_urls.iter().map(|u| st(u)).collect()),
    );
    a
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("GKE node pool `{id}` no longer exists"),
    )
}

//! `aws_eks_node_group`: a managed node group, id `cluster:nodegroup`.
//!
//! The node group's `updateConfig` is not part of the schema, so moto omitting it from
//! DescribeNodegroup (real EKS always returns the default, `maxUnavailable: 1`) cannot
//! show as a diff.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eks::types::{Nodegroup, NodegroupScalingConfig, NodegroupStatus};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Poller, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};

use super::eks_cluster::{
    EKS_UPDATE, eks_tags, in_progress_is_conflict, retag, role_not_ready, wait_update,
};
use crate::attrs::unordered;
use crate::attrs::{self, TOKEN_TAG};
use crate::client::AwsClients;
use crate::error::{aws_err, not_found_is_none};

/// `aws_eks_node_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_eks_node_group",
        doc: "An EKS managed node group.",
        fields: vec![
            Field::computed("id", "The cloud id (`cluster:nodegroup`)."),
            Field::computed("arn", "The ARN."),
            Field::input("cluster_name", "The cluster.")
                .required()
                .force_new(),
            Field::input("name", "The node group name.")
                .required()
                .force_new(),
            Field::input("node_role_arn", "The node IAM role.")
                .required()
                .force_new(),
            Field::input("subnet_ids", "The private subnets.")
                .required()
                .force_new(),
            Field::input("instance_types", "Instance types.").force_new(),
            Field::input("min_size", "Minimum nodes."),
            Field::input("max_size", "Maximum nodes."),
            Field::input("desired_size", "Desired nodes."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3 * 60),
        deletion_protection: None,
    }
}

/// `aws_eks_node_group` over EKS.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(EksNodeGroup {
        schema: schema(),
        eks: clients.eks.clone(),
        clients: clients.clone(),
    })
}

struct EksNodeGroup {
    schema: Schema,
    eks: aws_sdk_eks::Client,
    /// For the waits' poll schedules.
    clients: AwsClients,
}

/// How long deleting a node group usually takes.
const NODE_GROUP_DELETE: Duration = Duration::from_secs(5 * 60);

/// `cluster:nodegroup` → (`cluster`, `nodegroup`).
fn split_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once(':').ok_or_else(|| {
        ProviderError::new(
            ErrorKind::InvalidInput,
            format!("node group id `{id}` is not `cluster:nodegroup`"),
        )
    })
}

/// An optional size input as EKS wants it.
fn size(a: &Attributes, key: &str) -> Result<Option<i32>, ProviderError> {
    attrs::i(a, key)
        .map(|v| {
            i32::try_from(v).map_err(|_| {
                ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!("`{key}` {v} is out of range"),
                )
            })
        })
        .transpose()
}

/// The cloud's attributes of a node group; list order follows `prior` when it holds the
/// same items.
fn nodegroup_attrs(ng: &Nodegroup, prior: &Attributes) -> Attributes {
    let cluster = ng.cluster_name().unwrap_or_default();
    let name = ng.nodegroup_name().unwrap_or_default();
    let mut a = attrs::attrs([
        ("id", Value::from(format!("{cluster}:{name}"))),
        ("arn", Value::from(ng.nodegroup_arn().unwrap_or_default())),
        ("cluster_name", Value::from(cluster)),
        ("name", Value::from(name)),
        (
            "node_role_arn",
            Value::from(ng.node_role().unwrap_or_default()),
        ),
        (
            "subnet_ids",
            unordered(ng.subnets().to_vec(), prior.get("subnet_ids")),
        ),
        (
            "instance_types",
            unordered(ng.instance_types().to_vec(), prior.get("instance_types")),
        ),
        ("tags", eks_tags(ng.tags())),
    ]);
    let scaling = ng.scaling_config();
    let sizes = [
        (
            "min_size",
            scaling.and_then(NodegroupScalingConfig::min_size),
        ),
        (
            "max_size",
            scaling.and_then(NodegroupScalingConfig::max_size),
        ),
        (
            "desired_size",
            scaling.and_then(NodegroupScalingConfig::desired_size),
        ),
    ];
    for (k, v) in sizes {
        if let Some(v) = v {
            a.insert(k.to_string(), Value::Int(i64::from(v)));
        }
    }
    a
}

/// Whether a node group being created is ready (`Ok(true)`), still going (`Ok(false)`),
/// or failed: the error carries EKS's health issues, e.g.
/// `NodeCreationFailure: Unhealthy nodes in the kubernetes cluster`.
fn creation_state(ng: &Nodegroup, id: &str) -> Result<bool, ProviderError> {
    match ng.status() {
        Some(NodegroupStatus::Active) => Ok(true),
        None | Some(NodegroupStatus::Creating | NodegroupStatus::Updating) => Ok(false),
        Some(other) => Err(ProviderError::new(
            ErrorKind::Permanent,
            format!(
                "EKS node group `{id}` is {}: {}",
                other.as_str(),
                health(ng)
            ),
        )),
    }
}

/// The node group's issues, for an error message.
fn health(ng: &Nodegroup) -> String {
    let issues: Vec<String> = ng
        .health()
        .map(|h| h.issues())
        .unwrap_or_default()
        .iter()
        .map(|i| {
            let code = i.code().map_or("", |c| c.as_str());
            format!("{code}: {}", i.message().unwrap_or_default())
        })
        .collect();
    if issues.is_empty() {
        "EKS reported no health issues".to_string()
    } else {
        issues.join("; ")
    }
}

impl EksNodeGroup {
    async fn describe(&self, id: &str) -> Result<Option<Nodegroup>, ProviderError> {
        let (cluster, name) = split_id(id)?;
        let out = self
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .map_err(|e| aws_err("DescribeNodegroup", e));
        Ok(not_found_is_none(out)?.and_then(|o| o.nodegroup))
    }

    async fn create_nodegroup(
        &self,
        req: &CreateRequest,
        id: &str,
    ) -> Result<Nodegroup, ProviderError> {
        let i = &req.inputs;
        let (cluster, name) = split_id(id)?;
        let role = attrs::s(i, "node_role_arn")?;
        let scaling = NodegroupScalingConfig::builder()
            .set_min_size(size(i, "min_size")?)
            .set_max_size(size(i, "max_size")?)
            .set_desired_size(size(i, "desired_size")?)
            .build();
        let instance_types = attrs::strings(i, "instance_types");
        // Node groups do not report their client token: a tag carries it instead.
        let mut tags = attrs::tags(i);
        tags.insert(TOKEN_TAG.to_string(), req.token.clone());
        let out = self
            .eks
            .create_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .node_role(role)
            .set_subnets(Some(attrs::strings(i, "subnet_ids")))
            .set_instance_types((!instance_types.is_empty()).then_some(instance_types))
            .scaling_config(scaling)
            .set_tags(Some(tags.into_iter().collect()))
            .client_request_token(&req.token)
            .send()
            .await
            .map_err(|e| aws_err("CreateNodegroup", e));
        match out {
            Ok(o) => o.nodegroup.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Transient,
                    "CreateNodegroup: no node group in the answer",
                )
            }),
            // AWS answers a retried create with the same token as a success; moto does not.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let ng = self.describe(id).await?.ok_or(e)?;
                let token = ng.tags().and_then(|t| t.get(TOKEN_TAG));
                if token == Some(&req.token) {
                    Ok(ng)
                } else {
                    Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "an EKS node group `{name}` already exists in cluster `{cluster}` \
                             and was not created by this deployment: delete it or choose \
                             another name"
                        ),
                    ))
                }
            }
            Err(e) => Err(role_not_ready(e, role)),
        }
    }
}

#[async_trait]
impl ResourceType for EksNodeGroup {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .describe(&req.id)
                .await?
                .map(|ng| nodegroup_attrs(&ng, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let id = format!(
            "{}:{}",
            attrs::s(&req.inputs, "cluster_name")?,
            attrs::s(&req.inputs, "name")?
        );
        // A node group of that name without this create's token is someone else's.
        let found = self
            .describe(&id)
            .await?
            .filter(|ng| ng.tags().and_then(|t| t.get(TOKEN_TAG)) == Some(&req.token));
        Ok(FindResponse {
            id: found.map(|_| id),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let id = format!(
            "{}:{}",
            attrs::s(&req.inputs, "cluster_name")?,
            attrs::s(&req.inputs, "name")?
        );
        let ng = self.create_nodegroup(&req, &id).await?;
        let completion = match ng.status() {
            Some(NodegroupStatus::Active) => Completion::Ready(nodegroup_attrs(&ng, &req.inputs)),
            _ => Completion::InProgress,
        };
        Ok(CreateResponse { id, completion })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let mut last: Option<NodegroupStatus> = None;
        let poller = Poller::start(self.clients.schedule(self.schema.expected_create));
        loop {
            let ng = self.describe(&req.id).await?.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!(
                        "EKS node group `{}` disappeared while being created",
                        req.id
                    ),
                )
            })?;
            let status = ng.status().cloned();
            if status != last {
                if let Some(s) = &status {
                    req.progress.status(s.as_str());
                }
                last = status;
            }
            if creation_state(&ng, &req.id)? {
                return Ok(nodegroup_attrs(&ng, &req.inputs));
            }
            poller.sleep().await;
        }
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let (cluster, name) = split_id(&req.id)?;
        let missing = || {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("EKS node group `{}` does not exist", req.id),
            )
        };
        // Compared with the cloud, not the plan, so a retried update skips what is done.
        let ng = self.describe(&req.id).await?.ok_or_else(missing)?;
        let now = ng
            .scaling_config()
            .cloned()
            .unwrap_or_else(|| NodegroupScalingConfig::builder().build());
        let want = NodegroupScalingConfig::builder()
            .set_min_size(size(&req.inputs, "min_size")?.or(now.min_size()))
            .set_max_size(size(&req.inputs, "max_size")?.or(now.max_size()))
            .set_desired_size(size(&req.inputs, "desired_size")?.or(now.desired_size()))
            .build();
        if want != now {
            let out = self
                .eks
                .update_nodegroup_config()
                .cluster_name(cluster)
                .nodegroup_name(name)
                .scaling_config(want)
                .send()
                .await
                .map_err(|e| aws_err("UpdateNodegroupConfig", e))
                .map_err(in_progress_is_conflict)?;
            wait_update(
                &self.eks,
                cluster,
                Some(name),
                out.update,
                &req.progress,
                self.clients.schedule(EKS_UPDATE),
            )
            .await?;
        }
        if req.changed.iter().any(|f| f == "tags") {
            // Real EKS tags node groups by ARN; moto 5.1.22 only tags clusters.
            let current = attrs::attrs([("tags", eks_tags(ng.tags()))]);
            retag(
                &self.eks,
                ng.nodegroup_arn().unwrap_or_default(),
                &current,
                &req.inputs,
            )
            .await?;
        }
        let ng = self.describe(&req.id).await?.ok_or_else(missing)?;
        Ok(UpdateResponse {
            attributes: nodegroup_attrs(&ng, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let (cluster, name) = split_id(&req.id)?;
        let out = self
            .eks
            .delete_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send()
            .await
            .map_err(|e| aws_err("DeleteNodegroup", e));
        match out {
            Ok(_) => Ok(DeleteResponse { done: false }),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            // ResourceInUseException: busy; being deleted already is fine.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                match self.describe(&req.id).await?.and_then(|ng| ng.status) {
                    None => Ok(DeleteResponse { done: true }),
                    Some(NodegroupStatus::Deleting) => Ok(DeleteResponse { done: false }),
                    Some(_) => Err(ProviderError::new(ErrorKind::Conflict, e.message)),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let mut last: Option<NodegroupStatus> = None;
        let poller = Poller::start(self.clients.schedule(NODE_GROUP_DELETE));
        while let Some(ng) = self.describe(&req.id).await? {
            let status = ng.status().cloned();
            if status != last {
                if let Some(s) = &status {
                    req.progress.status(s.as_str());
                }
                last = status.clone();
            }
            if status == Some(NodegroupStatus::DeleteFailed) {
                return Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!(
                        "EKS node group `{}` failed to delete: {}",
                        req.id,
                        health(&ng)
                    ),
                ));
            }
            poller.sleep().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::eks_cluster;
    use crate::resources::eks_cluster::tests::{Statuses, cluster_inputs, cluster_network};
    use crate::testutil;
    use aws_sdk_eks::types::{Issue, NodegroupHealth, NodegroupIssueCode};
    use flyteinfra_core::{Address, Progress};

    fn addr() -> Address {
        Address::new("aws_eks_node_group", "main")
    }

    #[test]
    fn create_failed_reports_the_health_issues() {
        let ng = Nodegroup::builder()
            .status(NodegroupStatus::CreateFailed)
            .health(
                NodegroupHealth::builder()
                    .issues(
                        Issue::builder()
                            .code(NodegroupIssueCode::NodeCreationFailure)
                            .message("Unhealthy nodes in the kubernetes cluster")
                            .build(),
                    )
                    .build(),
            )
            .build();
        let e = creation_state(&ng, "c:ng").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(
            e.message
                .contains("CREATE_FAILED: NodeCreationFailure: Unhealthy nodes"),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn node_group_lifecycle_in_a_cluster() {
        let c = testutil::clients().await;
        let clusters = eks_cluster::build(&c);
        let rt = build(&c);
        let cluster = testutil::unique("eks");
        let caddr = Address::new("aws_eks_cluster", "main");
        let (_, subnets) = cluster_network(&c).await;
        clusters
            .create(CreateRequest {
                address: caddr.clone(),
                inputs: cluster_inputs(&cluster, &subnets),
                token: "tok".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(caddr.clone()),
            })
            .await
            .unwrap();

        let mut inputs = attrs::attrs([
            ("cluster_name", Value::from(cluster.as_str())),
            ("name", Value::from("nodes")),
            (
                "node_role_arn",
                Value::from("arn:aws:iam::123456789012:role/eks-node"),
            ),
            ("subnet_ids", Value::from(vec!["subnet-z", "subnet-y"])),
            ("instance_types", Value::from(vec!["m7i.xlarge"])),
            ("min_size", Value::Int(1)),
            ("max_size", Value::Int(3)),
            ("desired_size", Value::Int(2)),
            (
                "tags",
                Value::Map([("Name".to_string(), Value::from("nodes"))].into()),
            ),
        ]);
        let created = rt
            .create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap();
        let id = format!("{cluster}:nodes");
        assert_eq!(created.id, id);
        let again = |token: &str| {
            rt.create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: token.into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
        };
        assert_eq!(again("tok").await.unwrap().id, id, "same token: adopted");
        let other = again("other").await.unwrap_err();
        assert_eq!(other.kind, ErrorKind::AlreadyExists);

        let seen = Arc::new(Statuses::default());
        let wait = WaitRequest {
            address: addr(),
            id: id.clone(),
            inputs: inputs.clone(),
            progress: Progress::new(addr(), seen.clone()),
        };
        let a = rt.wait_ready(wait.clone()).await.unwrap();
        assert_eq!(*seen.0.lock().unwrap(), ["ACTIVE"]);
        for (k, v) in &inputs {
            assert_eq!(&a[k], v, "{k}");
        }
        assert!(a["arn"].as_str().unwrap().contains(":nodegroup/"));

        inputs.insert("desired_size".into(), Value::Int(3));
        inputs.insert("max_size".into(), Value::Int(5));
        let updated = rt
            .update(UpdateRequest {
                address: addr(),
                id: id.clone(),
                prior: a,
                inputs: inputs.clone(),
                changed: vec!["desired_size".into(), "max_size".into()],
                progress: Progress::new(addr(), seen.clone()),
            })
            .await
            .unwrap();
        assert_eq!(updated.attributes["desired_size"], Value::Int(3));
        assert_eq!(updated.attributes["max_size"], Value::Int(5));
        assert_eq!(updated.attributes["min_size"], Value::Int(1));
        let last = seen.0.lock().unwrap().last().cloned().unwrap();
        assert!(
            last.starts_with("update ") && last.ends_with(": Successful"),
            "{last}"
        );

        let delete_cluster = || {
            clusters.delete(DeleteRequest {
                address: caddr.clone(),
                id: cluster.clone(),
                attributes: Attributes::new(),
                force: false,
                progress: Progress::none(caddr.clone()),
            })
        };
        let busy = delete_cluster().await.unwrap_err();
        assert_eq!(busy.kind, ErrorKind::Conflict, "{}", busy.message);

        let del = rt
            .delete(DeleteRequest {
                address: addr(),
                id: id.clone(),
                attributes: Attributes::new(),
                force: false,
                progress: Progress::none(addr()),
            })
            .await
            .unwrap();
        assert!(!del.done);
        rt.wait_deleted(wait).await.unwrap();
        let found = rt
            .find(FindRequest {
                address: addr(),
                inputs,
                token: "tok".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id, None);
        assert!(!delete_cluster().await.unwrap().done);
    }
}

//! `aws_eks_cluster`, plus the EKS helpers the node group shares (update waits,
//! the new-IAM-role retry, status polling).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eks::types::{Cluster, ClusterStatus, Update, UpdateStatus, VpcConfigRequest};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, PollSchedule, Poller, Progress, ProviderError,
    ReadRequest, ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
    WaitRequest,
};

use super::iam_role::{string_map, tag_changes};
use crate::attrs;
use crate::attrs::unordered;
use crate::client::AwsClients;
use crate::error::{aws_err, not_found_is_none};

/// `aws_eks_cluster`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_eks_cluster",
        doc: "An EKS control plane.",
        fields: vec![
            Field::computed("id", "The cloud id (the name)."),
            Field::computed("arn", "The ARN."),
            Field::computed("endpoint", "The API server URL."),
            Field::computed("certificate_authority", "The cluster CA (base64)."),
            Field::computed("oidc_issuer", "The OIDC issuer URL."),
            Field::computed(
                "cluster_security_group_id",
                "The security group EKS attaches to nodes.",
            ),
            Field::input("name", "The cluster name.")
                .required()
                .force_new(),
            Field::input("version", "The Kubernetes version.").required(),
            Field::input("role_arn", "The cluster IAM role.")
                .required()
                .force_new(),
            Field::input("subnet_ids", "The subnets.")
                .required()
                .force_new(),
            Field::input("endpoint_public_access", "Public API endpoint."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(15 * 60),
        deletion_protection: None,
    }
}

/// `aws_eks_cluster` over EKS.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(EksCluster {
        schema: schema(),
        eks: clients.eks.clone(),
        clients: clients.clone(),
    })
}

struct EksCluster {
    schema: Schema,
    eks: aws_sdk_eks::Client,
    /// For the waits' poll schedules.
    clients: AwsClients,
}

/// How long an EKS update (version, endpoint access, node group scaling) usually takes.
pub(super) const EKS_UPDATE: Duration = Duration::from_secs(10 * 60);
/// How long deleting a cluster usually takes.
const EKS_DELETE: Duration = Duration::from_secs(6 * 60);

/// A create refused because the IAM role it names is not usable yet becomes
/// [`ErrorKind::Transient`], so the engine's retry layer tries again with backoff: a new
/// role takes a few seconds to reach EKS ("Role with arn ... could not be assumed because
/// it does not exist or the trusted entity is not correct"). Other errors pass through.
pub(super) fn role_not_ready(e: ProviderError, role: &str) -> ProviderError {
    let m = e.message.to_lowercase();
    let about_role = m.contains("could not be assumed")
        || (m.contains("role") && !m.contains("invalid role arn"));
    if e.kind == ErrorKind::InvalidInput && m.contains("invalidparameterexception") && about_role {
        ProviderError::new(
            ErrorKind::Transient,
            format!(
                "the IAM role `{role}` is not usable by EKS yet (a new role takes a few \
                 seconds to propagate): {}",
                e.message
            ),
        )
    } else {
        e
    }
}

/// Tags without the ones AWS adds itself (`aws:*`), as an attribute.
pub(super) fn eks_tags(tags: Option<&std::collections::HashMap<String, String>>) -> Value {
    attrs::tags_value(
        tags.into_iter()
            .flatten()
            .filter(|(k, _)| !super::aws_reserved_tag(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    )
}

/// Brings the tags of the EKS object `arn` from `current` to the desired ones.
pub(super) async fn retag(
    eks: &aws_sdk_eks::Client,
    arn: &str,
    current: &Attributes,
    inputs: &Attributes,
) -> Result<(), ProviderError> {
    let desired = attrs::tags(inputs);
    let (removed, set) = tag_changes(&string_map(current, "tags"), &desired);
    if !removed.is_empty() {
        eks.untag_resource()
            .resource_arn(arn)
            .set_tag_keys(Some(removed))
            .send()
            .await
            .map_err(|e| aws_err("UntagResource", e))?;
    }
    if set {
        eks.tag_resource()
            .resource_arn(arn)
            .set_tags(Some(desired.into_iter().collect()))
            .send()
            .await
            .map_err(|e| aws_err("TagResource", e))?;
    }
    Ok(())
}

/// Waits for an EKS update (cluster version or config, node group config) to finish,
/// polling `DescribeUpdate` and reporting each status change. An answer without an
/// update (moto's `UpdateClusterConfig`) or an update already finished needs no polling.
pub(super) async fn wait_update(
    eks: &aws_sdk_eks::Client,
    cluster: &str,
    nodegroup: Option<&str>,
    update: Option<Update>,
    progress: &Progress,
    schedule: PollSchedule,
) -> Result<(), ProviderError> {
    let Some(mut update) = update else {
        return Ok(());
    };
    let poller = Poller::start(schedule);
    let id = update.id().unwrap_or_default().to_string();
    let mut last = None;
    loop {
        let status = update.status().cloned();
        if status != last {
            if let Some(s) = &status {
                progress.status(format!("update {id}: {}", s.as_str()));
            }
            last = status.clone();
        }
        match status {
            None | Some(UpdateStatus::Successful) => return Ok(()),
            Some(UpdateStatus::Failed | UpdateStatus::Cancelled) => {
                let errors: Vec<String> = update
                    .errors()
                    .iter()
                    .map(|e| {
                        let code = e.error_code().map_or("", |c| c.as_str());
                        format!("{code}: {}", e.error_message().unwrap_or_default())
                    })
                    .collect();
                return Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!(
                        "EKS update `{id}` of `{cluster}` {}: {}",
                        last.as_ref().map_or("", |s| s.as_str()),
                        errors.join("; ")
                    ),
                ));
            }
            Some(_) if id.is_empty() => return Ok(()),
            Some(_) => {}
        }
        poller.sleep().await;
        let out = eks
            .describe_update()
            .name(cluster)
            .update_id(&id)
            .set_nodegroup_name(nodegroup.map(str::to_string))
            .send()
            .await
            .map_err(|e| aws_err("DescribeUpdate", e))?;
        update = out.update.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Transient,
                format!("DescribeUpdate: no update `{id}` in the answer"),
            )
        })?;
    }
}

/// The cloud's attributes of a cluster; list order follows `prior` when it holds the
/// same items.
fn cluster_attrs(c: &Cluster, prior: &Attributes) -> Attributes {
    let vpc = c.resources_vpc_config();
    let name = c.name().unwrap_or_default();
    let mut a = attrs::attrs([
        ("id", Value::from(name)),
        ("name", Value::from(name)),
        ("arn", Value::from(c.arn().unwrap_or_default())),
        ("version", Value::from(c.version().unwrap_or_default())),
        ("role_arn", Value::from(c.role_arn().unwrap_or_default())),
        (
            "subnet_ids",
            unordered(
                vpc.map(|v| v.subnet_ids().to_vec()).unwrap_or_default(),
                prior.get("subnet_ids"),
            ),
        ),
        (
            "endpoint_public_access",
            Value::Bool(vpc.is_some_and(|v| v.endpoint_public_access())),
        ),
        ("tags", eks_tags(c.tags())),
    ]);
    // Present once the cluster is ACTIVE.
    let computed = [
        ("endpoint", c.endpoint()),
        (
            "certificate_authority",
            c.certificate_authority().and_then(|ca| ca.data()),
        ),
        (
            "oidc_issuer",
            c.identity().and_then(|i| i.oidc()).and_then(|o| o.issuer()),
        ),
        (
            "cluster_security_group_id",
            vpc.and_then(|v| v.cluster_security_group_id()),
        ),
    ];
    for (k, v) in computed {
        if let Some(v) = v {
            a.insert(k.to_string(), Value::from(v));
        }
    }
    a
}

/// The cluster's issues, for an error message.
fn health(c: &Cluster) -> String {
    let issues: Vec<String> = c
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

impl EksCluster {
    async fn describe(&self, name: &str) -> Result<Option<Cluster>, ProviderError> {
        let out = self
            .eks
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|e| aws_err("DescribeCluster", e));
        Ok(not_found_is_none(out)?.and_then(|o| o.cluster))
    }

    async fn create_cluster(&self, req: &CreateRequest) -> Result<Cluster, ProviderError> {
        let i = &req.inputs;
        let name = attrs::s(i, "name")?;
        let role = attrs::s(i, "role_arn")?;
        let vpc = VpcConfigRequest::builder()
            .set_subnet_ids(Some(attrs::strings(i, "subnet_ids")))
            .endpoint_public_access(attrs::b(i, "endpoint_public_access").unwrap_or(true))
            .endpoint_private_access(true)
            .build();
        let tags = attrs::tags(i);
        let out = self
            .eks
            .create_cluster()
            .name(name)
            .version(attrs::s(i, "version")?)
            .role_arn(role)
            .resources_vpc_config(vpc)
            .set_tags((!tags.is_empty()).then(|| tags.into_iter().collect()))
            .client_request_token(&req.token)
            .send()
            .await
            .map_err(|e| aws_err("CreateCluster", e));
        match out {
            Ok(o) => o.cluster.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Transient,
                    "CreateCluster: no cluster in the answer",
                )
            }),
            // AWS answers a retried create with the same token as a success; moto does not.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let c = self.describe(name).await?.ok_or(e)?;
                if c.client_request_token() == Some(req.token.as_str()) {
                    Ok(c)
                } else {
                    Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "an EKS cluster named `{name}` already exists and was not created \
                             by this deployment: delete it or choose another name"
                        ),
                    ))
                }
            }
            Err(e) => Err(role_not_ready(e, role)),
        }
    }
}

#[async_trait]
impl ResourceType for EksCluster {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let attributes = match self.describe(&req.id).await? {
            Some(c) => Some(cluster_attrs(&c, &req.prior_inputs)),
            None => None,
        };
        Ok(ReadResponse { attributes })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        // A cluster of that name not created with this token is someone else's.
        let found = self
            .describe(name)
            .await?
            .filter(|c| c.client_request_token() == Some(req.token.as_str()));
        Ok(FindResponse {
            id: found.map(|_| name.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let c = self.create_cluster(&req).await?;
        let completion = match c.status() {
            Some(ClusterStatus::Active) => Completion::Ready(cluster_attrs(&c, &req.inputs)),
            _ => Completion::InProgress,
        };
        Ok(CreateResponse {
            id: attrs::s(&req.inputs, "name")?.to_string(),
            completion,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let mut last: Option<ClusterStatus> = None;
        let poller = Poller::start(self.clients.schedule(self.schema.expected_create));
        loop {
            let c = self.describe(&req.id).await?.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!("EKS cluster `{}` disappeared while being created", req.id),
                )
            })?;
            let status = c.status().cloned();
            if status != last {
                if let Some(s) = &status {
                    req.progress.status(s.as_str());
                }
                last = status.clone();
            }
            match status {
                Some(ClusterStatus::Active) => {
                    return Ok(cluster_attrs(&c, &req.inputs));
                }
                Some(ClusterStatus::Failed) => {
                    return Err(ProviderError::new(
                        ErrorKind::Permanent,
                        format!("EKS cluster `{}` failed to create: {}", req.id, health(&c)),
                    ));
                }
                Some(ClusterStatus::Deleting) => {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!("EKS cluster `{}` is being deleted", req.id),
                    ));
                }
                _ => poller.sleep().await,
            }
        }
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let name = req.id.as_str();
        let missing = || {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("EKS cluster `{name}` does not exist"),
            )
        };
        // Compared with the cloud, not the plan, so a retried update skips what is done.
        let c = self.describe(name).await?.ok_or_else(missing)?;
        let version = attrs::s(&req.inputs, "version")?;
        if c.version() != Some(version) {
            let out = self
                .eks
                .update_cluster_version()
                .name(name)
                .version(version)
                .send()
                .await
                .map_err(|e| aws_err("UpdateClusterVersion", e))
                .map_err(in_progress_is_conflict)?;
            let schedule = self.clients.schedule(EKS_UPDATE);
            wait_update(&self.eks, name, None, out.update, &req.progress, schedule).await?;
        }
        let public = attrs::b(&req.inputs, "endpoint_public_access");
        let now_public = c.resources_vpc_config().map(|v| v.endpoint_public_access());
        if let Some(public) = public.filter(|p| Some(*p) != now_public) {
            let vpc = VpcConfigRequest::builder()
                .endpoint_public_access(public)
                .endpoint_private_access(true)
                .build();
            let out = self
                .eks
                .update_cluster_config()
                .name(name)
                .resources_vpc_config(vpc)
                .send()
                .await
                .map_err(|e| aws_err("UpdateClusterConfig", e))
                .map_err(in_progress_is_conflict)?;
            let schedule = self.clients.schedule(EKS_UPDATE);
            wait_update(&self.eks, name, None, out.update, &req.progress, schedule).await?;
        }
        if req.changed.iter().any(|f| f == "tags") {
            let current = attrs::attrs([("tags", eks_tags(c.tags()))]);
            retag(
                &self.eks,
                c.arn().unwrap_or_default(),
                &current,
                &req.inputs,
            )
            .await?;
        }
        let c = self.describe(name).await?.ok_or_else(missing)?;
        Ok(UpdateResponse {
            attributes: cluster_attrs(&c, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let out = self
            .eks
            .delete_cluster()
            .name(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteCluster", e));
        match out {
            Ok(_) => Ok(DeleteResponse { done: false }),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            // ResourceInUseException: node groups remain, or it is busy (being deleted
            // already is fine).
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                match self.describe(&req.id).await?.and_then(|c| c.status) {
                    None => Ok(DeleteResponse { done: true }),
                    Some(ClusterStatus::Deleting) => Ok(DeleteResponse { done: false }),
                    Some(_) => Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "EKS cluster `{}` cannot be deleted yet (delete its node groups \
                             first): {}",
                            req.id, e.message
                        ),
                    )),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let mut last: Option<ClusterStatus> = None;
        let poller = Poller::start(self.clients.schedule(EKS_DELETE));
        while let Some(c) = self.describe(&req.id).await? {
            let status = c.status().cloned();
            if status != last {
                if let Some(s) = &status {
                    req.progress.status(s.as_str());
                }
                last = status.clone();
            }
            if status == Some(ClusterStatus::Failed) {
                return Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!("EKS cluster `{}` failed to delete: {}", req.id, health(&c)),
                ));
            }
            poller.sleep().await;
        }
        Ok(())
    }
}

/// ResourceInUseException on an update means another update is running: a conflict that
/// may clear, not an "already exists".
pub(super) fn in_progress_is_conflict(e: ProviderError) -> ProviderError {
    if e.kind == ErrorKind::AlreadyExists {
        ProviderError::new(ErrorKind::Conflict, e.message)
    } else {
        e
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::testutil;
    use flyteinfra_core::{Address, Event, EventKind, Observer};
    use std::sync::Mutex;

    /// Collects the status events a provider reports.
    #[derive(Default)]
    pub(in crate::resources) struct Statuses(pub Mutex<Vec<String>>);

    impl Observer for Statuses {
        fn on_event(&self, event: Event) {
            if let EventKind::Status(s) = event.kind {
                self.0.lock().unwrap().push(s);
            }
        }
    }

    fn addr() -> Address {
        Address::new("aws_eks_cluster", "main")
    }

    /// A VPC with two subnets in two zones, as EKS requires (moto does not check roles).
    pub(in crate::resources) async fn cluster_network(c: &AwsClients) -> (String, Vec<String>) {
        use crate::resources::ec2_common::test_support;
        let vpc = test_support::vpc(c).await;
        let a = test_support::subnet(c, &vpc, "10.0.1.0/24").await;
        let b = test_support::subnet(c, &vpc, "10.0.2.0/24").await;
        (vpc, vec![a, b])
    }

    /// Cluster inputs as the blueprint sends them, in `subnets` (listed out of order).
    pub(in crate::resources) fn cluster_inputs(name: &str, subnets: &[String]) -> Attributes {
        let subnets: Vec<&String> = subnets.iter().collect();
        attrs::attrs([
            ("name", Value::from(name)),
            ("version", Value::from("1.31")),
            (
                "role_arn",
                Value::from("arn:aws:iam::123456789012:role/eks-cluster"),
            ),
            (
                "subnet_ids",
                crate::resources::ec2_common::test_support::unsorted(&subnets),
            ),
            ("endpoint_public_access", Value::Bool(true)),
            (
                "tags",
                Value::Map([("Name".to_string(), Value::from(name))].into()),
            ),
        ])
    }

    #[test]
    fn a_role_not_usable_yet_is_transient() {
        let e = |m: &str| ProviderError::new(ErrorKind::InvalidInput, m);
        let r = "arn:aws:iam::1:role/r";
        let new_role = e("CreateCluster: InvalidParameterException: Role with arn: \
             arn:aws:iam::1:role/r, could not be assumed because it does not exist or the \
             trusted entity is not correct");
        let got = role_not_ready(new_role, r);
        assert_eq!(got.kind, ErrorKind::Transient);
        assert!(
            got.message.contains("not usable by EKS yet"),
            "{}",
            got.message
        );
        let bad = e("CreateCluster: InvalidParameterException: Invalid Role Arn: 'x'");
        assert_eq!(role_not_ready(bad, r).kind, ErrorKind::InvalidInput);
        let other = e("CreateCluster: InvalidParameterException: subnets in one AZ");
        assert_eq!(role_not_ready(other, r).kind, ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn cluster_create_wait_read_update_delete() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("eks");
        let (vpc, subnets) = cluster_network(&c).await;

        // EKS refuses subnets it cannot find (the proxy in front of moto checks them).
        let bad = rt
            .create(CreateRequest {
                address: addr(),
                inputs: cluster_inputs(&name, &["subnet-0123456789abcdef0".to_string()]),
                token: "bad".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap_err();
        assert_eq!(bad.kind, ErrorKind::InvalidInput, "{}", bad.message);
        assert!(bad.message.contains("does not exist"), "{}", bad.message);

        let mut inputs = cluster_inputs(&name, &subnets);
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
        assert_eq!(created.id, name);
        let again = rt
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
        assert_eq!(again.id, name, "a retried create (same token) is a success");

        let seen = Arc::new(Statuses::default());
        let wait = |seen: &Arc<Statuses>, inputs: &Attributes| WaitRequest {
            address: addr(),
            id: name.clone(),
            inputs: inputs.clone(),
            progress: Progress::new(addr(), seen.clone()),
        };
        let a = rt.wait_ready(wait(&seen, &inputs)).await.unwrap();
        assert_eq!(*seen.0.lock().unwrap(), ["ACTIVE"]);
        assert_eq!(a["subnet_ids"], inputs["subnet_ids"], "input order kept");
        for f in ["version", "role_arn", "endpoint_public_access", "tags"] {
            assert_eq!(a[f], inputs[f], "{f}");
        }
        for f in ["arn", "endpoint", "certificate_authority"] {
            assert!(!a[f].as_str().unwrap().is_empty(), "{f}");
        }
        let issuer = a["oidc_issuer"].as_str().unwrap();
        assert!(issuer.starts_with("https://oidc.eks.us-east-1.amazonaws.com/id/"));
        // The cluster security group, as EKS reports it: made in the cluster's VPC, tagged.
        let sg = a["cluster_security_group_id"].as_str().unwrap().to_string();
        let ec2 = &c.ec2;
        let group = |sg: String| async move {
            ec2.describe_security_groups()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("group-id")
                        .values(sg)
                        .build(),
                )
                .send()
                .await
                .unwrap()
                .security_groups()
                .first()
                .cloned()
        };
        let g = group(sg.clone()).await.expect("the cluster security group");
        assert_eq!(g.vpc_id(), Some(vpc.as_str()));
        assert!(
            g.group_name()
                .unwrap()
                .starts_with(&format!("eks-cluster-sg-{name}-")),
            "{g:?}"
        );
        let tag = |k: &str| {
            g.tags()
                .iter()
                .find(|t| t.key() == Some(k))
                .and_then(|t| t.value())
                .map(str::to_string)
        };
        assert_eq!(tag("aws:eks:cluster-name"), Some(name.clone()));
        assert_eq!(
            tag(&format!("kubernetes.io/cluster/{name}")).as_deref(),
            Some("owned")
        );
        let read = rt
            .read(ReadRequest {
                address: addr(),
                id: name.clone(),
                prior_inputs: inputs.clone(),
                prior_attributes: Attributes::new(),
            })
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(
            read["cluster_security_group_id"],
            a["cluster_security_group_id"]
        );

        inputs.insert(
            "tags".into(),
            Value::Map([("team".to_string(), Value::from("ml"))].into()),
        );
        let updated = rt
            .update(UpdateRequest {
                address: addr(),
                id: name.clone(),
                prior: a,
                inputs: inputs.clone(),
                changed: vec!["tags".into()],
                progress: Progress::none(addr()),
            })
            .await
            .unwrap();
        assert_eq!(updated.attributes["tags"], inputs["tags"]);

        let del = || {
            rt.delete(DeleteRequest {
                address: addr(),
                id: name.clone(),
                attributes: Attributes::new(),
                force: false,
                progress: Progress::none(addr()),
            })
        };
        assert!(!del().await.unwrap().done);
        rt.wait_deleted(wait(&seen, &inputs)).await.unwrap();
        assert!(del().await.unwrap().done, "gone is success");
        assert!(
            group(sg).await.is_none(),
            "EKS deletes its group with the cluster"
        );
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
    }
}

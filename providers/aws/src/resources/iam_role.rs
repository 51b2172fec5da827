//! `aws_iam_role`.
//!
//! IAM returns policy documents URL-encoded and possibly reformatted, so a read reports
//! the last applied document when the cloud's means the same, and the decoded cloud
//! document otherwise (real drift). IAM roles have unique names but no client token: the
//! create tags the role with flyteinfra's token, so a retried create adopts its own role
//! and refuses someone else's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};

use crate::attrs::{self, TOKEN_TAG};
use crate::client::AwsClients;
use crate::error::{aws_err, not_found_is_none};

/// The name of the one inline policy flyteinfra manages on a role.
const INLINE_POLICY: &str = "flyteinfra";

/// `aws_iam_role`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_iam_role",
        doc: "An IAM role with a trust policy, attached managed policies and one inline policy.",
        fields: vec![
            Field::computed("id", "The cloud id (the role name)."),
            Field::computed("arn", "The ARN."),
            Field::input("name", "The role name.")
                .required()
                .force_new(),
            Field::input("assume_role_policy", "The trust policy document (JSON).").required(),
            Field::input("managed_policy_arns", "Attached AWS-managed policies."),
            Field::input("inline_policy", "The inline policy document (JSON)."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_iam_role` over IAM.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(IamRole {
        schema: schema(),
        iam: clients.iam.clone(),
    })
}

struct IamRole {
    schema: Schema,
    iam: aws_sdk_iam::Client,
}

/// A policy document as an attribute: the prior string when the cloud's document means
/// the same, the decoded cloud document otherwise.
fn document(cloud: &str, prior: Option<&str>) -> Value {
    match prior {
        Some(p) if attrs::same_policy(p, cloud) => Value::from(p),
        _ => Value::from(attrs::percent_decode(cloud)),
    }
}

/// IAM tags from a string map.
pub(super) fn iam_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, ProviderError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| ProviderError::new(ErrorKind::InvalidInput, format!("tag `{k}`: {e}")))
        })
        .collect()
}

/// The tag keys to remove and whether any tag must be set, going from `current` to
/// `desired` (flyteinfra's token tag is never removed).
pub(super) fn tag_changes(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> (Vec<String>, bool) {
    let removed = current
        .keys()
        .filter(|k| !desired.contains_key(*k) && k.as_str() != TOKEN_TAG)
        .cloned()
        .collect();
    let set = desired.iter().any(|(k, v)| current.get(k) != Some(v));
    (removed, set)
}

/// A string map attribute (tags as last read).
pub(super) fn string_map(a: &Attributes, key: &str) -> BTreeMap<String, String> {
    a.get(key)
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl IamRole {
    async fn get_role(
        &self,
        name: &str,
    ) -> Result<Option<aws_sdk_iam::types::Role>, ProviderError> {
        let out = self
            .iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| aws_err("GetRole", e));
        Ok(not_found_is_none(out)?.and_then(|o| o.role))
    }

    async fn attached(&self, name: &str) -> Result<Vec<String>, ProviderError> {
        let policies = self
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_err("ListAttachedRolePolicies", e))?;
        Ok(policies
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect())
    }

    async fn attach(&self, name: &str, arn: &str) -> Result<(), ProviderError> {
        self.iam
            .attach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| aws_err("AttachRolePolicy", e))?;
        Ok(())
    }

    async fn detach(&self, name: &str, arn: &str) -> Result<(), ProviderError> {
        let out = self
            .iam
            .detach_role_policy()
            .role_name(name)
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| aws_err("DetachRolePolicy", e));
        not_found_is_none(out)?;
        Ok(())
    }

    async fn put_inline(&self, name: &str, doc: &str) -> Result<(), ProviderError> {
        self.iam
            .put_role_policy()
            .role_name(name)
            .policy_name(INLINE_POLICY)
            .policy_document(doc)
            .send()
            .await
            .map_err(|e| aws_err("PutRolePolicy", e))?;
        Ok(())
    }

    async fn delete_inline(&self, name: &str, policy: &str) -> Result<(), ProviderError> {
        let out = self
            .iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map_err(|e| aws_err("DeleteRolePolicy", e));
        not_found_is_none(out)?;
        Ok(())
    }

    /// Creates the role, or adopts it when a previous attempt of this same create (same
    /// token) already made it. Returns its ARN.
    async fn create_role(&self, req: &CreateRequest, name: &str) -> Result<String, ProviderError> {
        let mut tags = attrs::tags(&req.inputs);
        tags.insert(TOKEN_TAG.to_string(), req.token.clone());
        let out = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(attrs::s(&req.inputs, "assume_role_policy")?)
            .set_tags(Some(iam_tags(&tags)?))
            .send()
            .await
            .map_err(|e| aws_err("CreateRole", e));
        match out {
            Ok(o) => Ok(o.role.map(|r| r.arn).unwrap_or_default()),
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let role = self.get_role(name).await?.ok_or(e)?;
                let ours = role
                    .tags()
                    .iter()
                    .any(|t| t.key() == TOKEN_TAG && t.value() == req.token);
                if !ours {
                    return Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "an IAM role named `{name}` already exists and was not created by \
                             this deployment: delete or rename it"
                        ),
                    ));
                }
                Ok(role.arn)
            }
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl ResourceType for IamRole {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let Some(role) = self.get_role(&req.id).await? else {
            return Ok(ReadResponse { attributes: None });
        };
        let prior = &req.prior_inputs;
        // Fewest calls: a policy field the config does not set is not managed, so it is not
        // read (except on import, when nothing is known yet).
        let wants = |field: &str| prior.is_empty() || prior.contains_key(field);
        let managed = if wants("managed_policy_arns") {
            let Some(m) = not_found_is_none(self.attached(&req.id).await)? else {
                return Ok(ReadResponse { attributes: None });
            };
            Some(m)
        } else {
            None
        };
        let inline = if wants("inline_policy") {
            let inline = self
                .iam
                .get_role_policy()
                .role_name(&req.id)
                .policy_name(INLINE_POLICY)
                .send()
                .await
                .map_err(|e| aws_err("GetRolePolicy", e));
            not_found_is_none(inline)?
        } else {
            None
        };

        let mut a = attrs::attrs([
            ("id", Value::from(req.id.as_str())),
            ("arn", Value::from(role.arn())),
            ("name", Value::from(role.role_name())),
            (
                "assume_role_policy",
                document(
                    role.assume_role_policy_document().unwrap_or_default(),
                    attrs::opt_s(prior, "assume_role_policy"),
                ),
            ),
            (
                "tags",
                attrs::tags_value(
                    role.tags()
                        .iter()
                        .filter(|t| !super::aws_reserved_tag(t.key()))
                        .map(|t| (t.key().to_string(), t.value().to_string())),
                ),
            ),
        ]);
        if let Some(m) = managed {
            a.insert(
                "managed_policy_arns".into(),
                attrs::unordered(m, prior.get("managed_policy_arns")),
            );
        }
        if let Some(p) = inline {
            a.insert(
                "inline_policy".into(),
                document(p.policy_document(), attrs::opt_s(prior, "inline_policy")),
            );
        }
        Ok(ReadResponse {
            attributes: Some(a),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        // A role of that name without this create's token is someone else's.
        let found = self.get_role(name).await?.filter(|r| {
            r.tags()
                .iter()
                .any(|t| t.key() == TOKEN_TAG && t.value() == req.token)
        });
        Ok(FindResponse {
            id: found.map(|r| r.role_name),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let arn = self.create_role(&req, name).await?;
        for policy in attrs::strings(&req.inputs, "managed_policy_arns") {
            self.attach(name, &policy).await?;
        }
        if let Some(doc) = attrs::opt_s(&req.inputs, "inline_policy") {
            self.put_inline(name, doc).await?;
        }
        let mut a = req.inputs.clone();
        a.insert("id".into(), Value::from(name));
        a.insert("arn".into(), Value::from(arn));
        Ok(CreateResponse {
            id: name.to_string(),
            completion: Completion::Ready(a),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let name = req.id.as_str();
        let changed = |f: &str| req.changed.iter().any(|c| c == f);
        if changed("assume_role_policy") {
            self.iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(attrs::s(&req.inputs, "assume_role_policy")?)
                .send()
                .await
                .map_err(|e| aws_err("UpdateAssumeRolePolicy", e))?;
        }
        if changed("managed_policy_arns") {
            let current: BTreeSet<String> = self.attached(name).await?.into_iter().collect();
            let desired: BTreeSet<String> = attrs::strings(&req.inputs, "managed_policy_arns")
                .into_iter()
                .collect();
            for arn in desired.difference(&current) {
                self.attach(name, arn).await?;
            }
            for arn in current.difference(&desired) {
                self.detach(name, arn).await?;
            }
        }
        if changed("inline_policy") {
            match attrs::opt_s(&req.inputs, "inline_policy") {
                Some(doc) => self.put_inline(name, doc).await?,
                None => self.delete_inline(name, INLINE_POLICY).await?,
            }
        }
        if changed("tags") {
            let desired = attrs::tags(&req.inputs);
            // Compared with the role's tags now, not the state's, so tags someone else added
            // are removed too.
            let current: BTreeMap<String, String> = self
                .get_role(name)
                .await?
                .map(|r| {
                    r.tags()
                        .iter()
                        .filter(|t| !super::aws_reserved_tag(t.key()))
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let (removed, set) = tag_changes(&current, &desired);
            if !removed.is_empty() {
                self.iam
                    .untag_role()
                    .role_name(name)
                    .set_tag_keys(Some(removed))
                    .send()
                    .await
                    .map_err(|e| aws_err("UntagRole", e))?;
            }
            if set {
                self.iam
                    .tag_role()
                    .role_name(name)
                    .set_tags(Some(iam_tags(&desired)?))
                    .send()
                    .await
                    .map_err(|e| aws_err("TagRole", e))?;
            }
        }
        let mut a = req.prior.clone();
        a.extend(req.inputs.clone());
        a.insert("id".into(), Value::from(name));
        Ok(UpdateResponse { attributes: a })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let name = req.id.as_str();
        let Some(attached) = not_found_is_none(self.attached(name).await)? else {
            return Ok(DeleteResponse { done: true });
        };
        for arn in attached {
            self.detach(name, &arn).await?;
        }
        let inline = self
            .iam
            .list_role_policies()
            .role_name(name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| aws_err("ListRolePolicies", e));
        for policy in not_found_is_none(inline)?.unwrap_or_default() {
            self.delete_inline(name, &policy).await?;
        }
        let out = self
            .iam
            .delete_role()
            .role_name(name)
            .send()
            .await
            .map_err(|e| aws_err("DeleteRole", e));
        not_found_is_none(out)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use flyteinfra_core::{Address, Progress};

    const MANAGED: &str = "arn:aws:iam::aws:policy/";

    fn addr() -> Address {
        Address::new("aws_iam_role", "test")
    }

    fn read_req(id: &str, prior: &Attributes) -> ReadRequest {
        ReadRequest {
            address: addr(),
            id: id.to_string(),
            prior_inputs: prior.clone(),
            prior_attributes: Attributes::new(),
        }
    }

    #[tokio::test]
    async fn role_lifecycle_with_irsa_trust_and_inline_policy() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("role");
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/ABC"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"oidc.eks.us-east-1.amazonaws.com/id/ABC:aud":"sts.amazonaws.com","oidc.eks.us-east-1.amazonaws.com/id/ABC:sub":["system:serviceaccount:flyte:flyte"]}}}]}"#;
        let s3 = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject*","s3:ListBucket"],"Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}]}"#;
        let mut inputs = attrs::attrs([
            ("name", Value::from(name.as_str())),
            ("assume_role_policy", Value::from(trust)),
            ("inline_policy", Value::from(s3)),
            (
                "managed_policy_arns",
                Value::from(vec![
                    format!("{MANAGED}AmazonEKSWorkerNodePolicy"),
                    format!("{MANAGED}AmazonEC2ContainerRegistryReadOnly"),
                ]),
            ),
            (
                "tags",
                Value::Map([("team".to_string(), Value::from("flyte"))].into()),
            ),
        ]);
        let created = rt
            .create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok-1".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap();
        assert_eq!(created.id, name);
        // A retried create with the same token adopts the role; another token does not.
        let retried = rt
            .create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok-1".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap();
        assert_eq!(retried.id, name);
        let foreign = rt
            .create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok-2".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap_err();
        assert_eq!(foreign.kind, ErrorKind::AlreadyExists);

        // Same documents (URL-encoded by IAM): the prior strings come back, so no diff.
        let a = rt
            .read(read_req(&name, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        for f in [
            "assume_role_policy",
            "inline_policy",
            "managed_policy_arns",
            "tags",
        ] {
            assert_eq!(a[f], inputs[f], "{f}");
        }
        assert!(
            a["arn"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":role/{name}"))
        );
        let found = rt
            .find(FindRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok-1".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id.as_deref(), Some(name.as_str()));
        // Another create's token finds nothing: the role is not that create's.
        let other = rt
            .find(FindRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: "tok-2".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(other.id, None);

        // Changed out of band: reported decoded, and different.
        let changed = s3.replace("s3:ListBucket", "s3:*");
        c.iam
            .put_role_policy()
            .role_name(&name)
            .policy_name(INLINE_POLICY)
            .policy_document(&changed)
            .send()
            .await
            .unwrap();
        let a = rt
            .read(read_req(&name, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        let got = a["inline_policy"].as_str().unwrap();
        assert_ne!(got, s3);
        assert!(attrs::same_policy(got, &changed), "{got}");
        assert!(got.contains("s3:*"), "decoded: {got}");

        // Deleted out of band: absent.
        c.iam
            .delete_role_policy()
            .role_name(&name)
            .policy_name(INLINE_POLICY)
            .send()
            .await
            .unwrap();
        let prior = rt
            .read(read_req(&name, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert!(!prior.contains_key("inline_policy"));

        // Update: swap a managed policy, restore the inline policy, change tags.
        inputs.insert(
            "managed_policy_arns".into(),
            Value::from(vec![
                format!("{MANAGED}AmazonEKSClusterPolicy"),
                format!("{MANAGED}AmazonEKSWorkerNodePolicy"),
            ]),
        );
        inputs.insert(
            "tags".into(),
            Value::Map([("owner".to_string(), Value::from("me"))].into()),
        );
        rt.update(UpdateRequest {
            address: addr(),
            id: name.clone(),
            prior: prior.clone(),
            inputs: inputs.clone(),
            changed: vec![
                "managed_policy_arns".into(),
                "inline_policy".into(),
                "tags".into(),
            ],
            progress: Progress::none(addr()),
        })
        .await
        .unwrap();
        let a = rt
            .read(read_req(&name, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        for f in ["inline_policy", "managed_policy_arns", "tags"] {
            assert_eq!(a[f], inputs[f], "{f}");
        }

        let del = |id: String| {
            rt.delete(DeleteRequest {
                address: addr(),
                id,
                attributes: Attributes::new(),
                force: false,
                progress: Progress::none(addr()),
            })
        };
        assert!(del(name.clone()).await.unwrap().done);
        assert!(
            rt.read(read_req(&name, &inputs))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(del(name.clone()).await.unwrap().done, "gone is success");
    }
}

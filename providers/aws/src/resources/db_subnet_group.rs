//! `aws_db_subnet_group`.
//!
//! The group's name is its id. RDS has no client tokens, so the create carries flyteinfra's
//! token as a tag: a create retried after a lost response finds its own group and succeeds,
//! while a same-named group made by someone else stays an `AlreadyExists` error.
//!
//! Also home of the RDS tag helpers `aws_db_instance` shares.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_rds::types::{DbSubnetGroup as RdsSubnetGroup, Tag};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};

use crate::attrs::{self, TOKEN_TAG};
use crate::client::AwsClients;
use crate::error::{aws_err, not_found_is_none};

/// `aws_db_subnet_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_db_subnet_group",
        doc: "The subnets RDS may place the database in.",
        fields: vec![
            Field::computed("id", "The cloud id (the name)."),
            Field::input("name", "The group name.")
                .required()
                .force_new(),
            Field::input("subnet_ids", "The private subnets.").required(),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `aws_db_subnet_group` over RDS.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(DbSubnetGroup {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct DbSubnetGroup {
    clients: AwsClients,
    schema: Schema,
}

const DESCRIPTION: &str = "Managed by flyteinfra";

impl DbSubnetGroup {
    /// The group called `name`, or `None`.
    async fn describe(&self, name: &str) -> Result<Option<RdsSubnetGroup>, ProviderError> {
        let out = self
            .clients
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send()
            .await
            .map_err(|e| aws_err("DescribeDBSubnetGroups", e));
        Ok(not_found_is_none(out)?.and_then(|o| {
            o.db_subnet_groups()
                .iter()
                .find(|g| g.db_subnet_group_name() == Some(name))
                .cloned()
        }))
    }

    /// The attributes of `group`, with its tags (token tag included, for `create`).
    async fn attributes(
        &self,
        group: &RdsSubnetGroup,
        prior: &Attributes,
    ) -> Result<(Attributes, BTreeMap<String, String>), ProviderError> {
        let name = group.db_subnet_group_name().unwrap_or_default();
        let tags = match group.db_subnet_group_arn() {
            Some(arn) => list_tags(&self.clients.rds, arn).await?,
            None => BTreeMap::new(),
        };
        let subnets = group
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_identifier().map(str::to_string))
            .collect();
        let a = attrs::attrs([
            ("id", Value::Str(name.to_string())),
            ("name", Value::Str(name.to_string())),
            (
                "subnet_ids",
                attrs::unordered(subnets, prior.get("subnet_ids")),
            ),
            ("tags", attrs::tags_value(tags.clone())),
        ]);
        Ok((a, tags))
    }
}

#[async_trait]
impl ResourceType for DbSubnetGroup {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let Some(group) = self.describe(&req.id).await? else {
            return Ok(ReadResponse { attributes: None });
        };
        let (a, _) = self.attributes(&group, &req.prior_inputs).await?;
        Ok(ReadResponse {
            attributes: Some(a),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let Some(group) = self.describe(name).await? else {
            return Ok(FindResponse { id: None });
        };
        // A group of that name without this create's token is someone else's.
        let (_, tags) = self.attributes(&group, &req.inputs).await?;
        Ok(FindResponse {
            id: (tags.get(TOKEN_TAG) == Some(&req.token)).then(|| name.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        // Looked up first: moto (unlike RDS) silently overwrites a group on a second create.
        let group = match self.describe(name).await? {
            Some(g) => Some(g),
            None => {
                let sent = self
                    .clients
                    .rds
                    .create_db_subnet_group()
                    .db_subnet_group_name(name)
                    .db_subnet_group_description(DESCRIPTION)
                    .set_subnet_ids(Some(attrs::strings(&req.inputs, "subnet_ids")))
                    .set_tags(Some(rds_tags(&req.inputs, Some(&req.token))))
                    .send()
                    .await
                    .map_err(|e| aws_err("CreateDBSubnetGroup", e));
                match sent {
                    Ok(out) => out.db_subnet_group().cloned(),
                    // Created by a concurrent or earlier attempt: ours only with our token.
                    Err(e) if e.kind == ErrorKind::AlreadyExists => self.describe(name).await?,
                    Err(e) => return Err(e),
                }
            }
        };
        let group = group.ok_or_else(|| gone(name))?;
        let (a, tags) = self.attributes(&group, &req.inputs).await?;
        if tags.get(TOKEN_TAG) != Some(&req.token) {
            return Err(ProviderError::new(
                ErrorKind::AlreadyExists,
                format!(
                    "a DB subnet group named `{name}` already exists and was not created by \
                     this deployment; import it or choose another name"
                ),
            ));
        }
        Ok(CreateResponse {
            id: name.to_string(),
            completion: Completion::Ready(a),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let changed = |f: &str| req.changed.iter().any(|c| c == f);
        let mut group = self.describe(&req.id).await?.ok_or_else(|| gone(&req.id))?;
        if changed("tags") {
            let arn = group.db_subnet_group_arn().unwrap_or_default();
            sync_tags(&self.clients.rds, arn, &req.inputs).await?;
        }
        if changed("subnet_ids") {
            let out = self
                .clients
                .rds
                .modify_db_subnet_group()
                .db_subnet_group_name(&req.id)
                .set_subnet_ids(Some(attrs::strings(&req.inputs, "subnet_ids")))
                .send()
                .await
                .map_err(|e| aws_err("ModifyDBSubnetGroup", e))?;
            if let Some(g) = out.db_subnet_group() {
                group = g.clone();
            }
        }
        let (attributes, _) = self.attributes(&group, &req.inputs).await?;
        Ok(UpdateResponse { attributes })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let out = self
            .clients
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteDBSubnetGroup", e));
        not_found_is_none(out)?;
        Ok(DeleteResponse { done: true })
    }
}

fn gone(name: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("DB subnet group `{name}` no longer exists"),
    )
}

/// The `tags` input as RDS tags, plus the token tag when given.
pub(super) fn rds_tags(inputs: &Attributes, token: Option<&str>) -> Vec<Tag> {
    let mut tags = attrs::tags(inputs);
    if let Some(t) = token {
        tags.insert(TOKEN_TAG.to_string(), t.to_string());
    }
    tags.into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Every tag on the RDS object `arn` (token tag included).
pub(super) async fn list_tags(
    rds: &aws_sdk_rds::Client,
    arn: &str,
) -> Result<BTreeMap<String, String>, ProviderError> {
    let out = rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| aws_err("ListTagsForResource", e))?;
    Ok(tag_map(out.tag_list()))
}

/// RDS tags as a map (token tag included, AWS's own `aws:` tags left out).
pub(super) fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .filter(|(k, _)| !super::aws_reserved_tag(k))
        .collect()
}

/// Makes the tags of the RDS object `arn` equal the `tags` input, keeping the token tag.
pub(super) async fn sync_tags(
    rds: &aws_sdk_rds::Client,
    arn: &str,
    inputs: &Attributes,
) -> Result<(), ProviderError> {
    let want = attrs::tags(inputs);
    let have = list_tags(rds, arn).await?;
    let stale: Vec<String> = have
        .keys()
        .filter(|k| k.as_str() != TOKEN_TAG && !want.contains_key(*k))
        .cloned()
        .collect();
    if !stale.is_empty() {
        rds.remove_tags_from_resource()
            .resource_name(arn)
            .set_tag_keys(Some(stale))
            .send()
            .await
            .map_err(|e| aws_err("RemoveTagsFromResource", e))?;
    }
    let differs = want.iter().any(|(k, v)| have.get(k) != Some(v));
    if differs {
        rds.add_tags_to_resource()
            .resource_name(arn)
            .set_tags(Some(rds_tags(inputs, None)))
            .send()
            .await
            .map_err(|e| aws_err("AddTagsToResource", e))?;
    }
    Ok(())
}

/// Test fixtures shared with `aws_db_instance`'s tests.
#[cfg(test)]
pub(super) mod fixtures {
    use crate::client::AwsClients;

    /// A fresh VPC with three subnets in different zones; returns the VPC id and the
    /// sorted subnet ids.
    pub async fn network(c: &AwsClients, second_octet: u8) -> (String, Vec<String>) {
        let vpc = c
            .ec2
            .create_vpc()
            .cidr_block(format!("10.{second_octet}.0.0/16"))
            .send()
            .await
            .unwrap();
        let vpc_id = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let mut ids = Vec::new();
        for (i, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"]
            .iter()
            .enumerate()
        {
            let s = c
                .ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .availability_zone(*zone)
                .cidr_block(format!("10.{second_octet}.{i}.0/24"))
                .send()
                .await
                .unwrap();
            ids.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
        }
        ids.sort();
        (vpc_id, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil;
    use flyteinfra_core::{Address, Progress};

    fn tags_of(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
        )
    }

    fn strs(v: &[String]) -> Value {
        Value::List(v.iter().cloned().map(Value::Str).collect())
    }

    #[tokio::test]
    async fn lifecycle_against_moto() {
        let c = testutil::clients().await;
        let (_, subnets) = fixtures::network(&c, 31).await;
        let rt = build(&c);
        let addr = Address::new("aws_db_subnet_group", "main");
        let name = testutil::unique("dbsg");
        let inputs = attrs::attrs([
            ("name", Value::Str(name.clone())),
            ("subnet_ids", strs(&subnets[..2])),
            ("tags", tags_of(&[("Name", "one"), ("team", "infra")])),
        ]);
        let created = rt
            .create(CreateRequest {
                address: addr.clone(),
                inputs: inputs.clone(),
                token: "tok-1".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr.clone()),
            })
            .await
            .unwrap();
        assert_eq!(created.id, name);
        let Completion::Ready(ready) = created.completion else {
            panic!("a subnet group is ready at once");
        };

        // Idempotent: the same token again is success; another token is AlreadyExists.
        let again = rt
            .create(CreateRequest {
                address: addr.clone(),
                inputs: inputs.clone(),
                token: "tok-1".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr.clone()),
            })
            .await
            .unwrap();
        assert_eq!(again.id, name);
        let other = rt
            .create(CreateRequest {
                address: addr.clone(),
                inputs: inputs.clone(),
                token: "tok-2".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(other.kind, ErrorKind::AlreadyExists);
        assert!(other.message.contains(&name), "{}", other.message);

        let found = rt
            .find(FindRequest {
                address: addr.clone(),
                inputs: inputs.clone(),
                token: "tok-1".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id.as_deref(), Some(name.as_str()));
        // Another create's token finds nothing: the group is not that create's.
        let other = rt
            .find(FindRequest {
                address: addr.clone(),
                inputs: inputs.clone(),
                token: "tok-2".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(other.id, None);

        let read = |id: String| {
            let rt = rt.clone();
            let addr = addr.clone();
            async move {
                rt.read(ReadRequest {
                    address: addr,
                    id,
                    prior_inputs: Attributes::new(),
                    prior_attributes: Attributes::new(),
                })
                .await
                .unwrap()
                .attributes
            }
        };
        let a = read(name.clone()).await.unwrap();
        assert_eq!(a, ready);
        assert_eq!(a["id"], Value::Str(name.clone()));
        assert_eq!(a["name"], Value::Str(name.clone()));
        assert_eq!(a["subnet_ids"], strs(&subnets[..2]));
        // The token tag is identity, not configuration: never reported.
        assert_eq!(a["tags"], tags_of(&[("Name", "one"), ("team", "infra")]));

        // Tags: extra keys removed, changed values replaced, the token tag kept.
        let mut new_inputs = inputs.clone();
        new_inputs.insert("tags".into(), tags_of(&[("Name", "two")]));
        let updated = rt
            .update(UpdateRequest {
                address: addr.clone(),
                id: name.clone(),
                prior: a.clone(),
                inputs: new_inputs.clone(),
                changed: vec!["tags".into()],
                progress: Progress::none(addr.clone()),
            })
            .await
            .unwrap()
            .attributes;
        let a = read(name.clone()).await.unwrap();
        assert_eq!(a, updated);
        assert_eq!(a["subnet_ids"], strs(&subnets[..2]));
        assert_eq!(a["tags"], tags_of(&[("Name", "two")]));
        let arn = format!("arn:aws:rds:us-east-1:123456789012:subgrp:{name}");
        let raw = list_tags(&c.rds, &arn).await.unwrap();
        assert_eq!(raw.get(TOKEN_TAG).map(String::as_str), Some("tok-1"));

        // A real delete, of the group that exists.
        let del = |id: String| {
            let rt = rt.clone();
            let addr = addr.clone();
            async move {
                rt.delete(DeleteRequest {
                    address: addr.clone(),
                    id,
                    attributes: Attributes::new(),
                    force: false,
                    progress: Progress::none(addr),
                })
                .await
                .unwrap()
            }
        };
        assert!(read(name.clone()).await.is_some(), "the group exists");
        assert!(del(name.clone()).await.done);
        assert!(read(name.clone()).await.is_none());
        // Deleting what is gone is success.
        assert!(del(name.clone()).await.done);
        let found = rt
            .find(FindRequest {
                address: addr.clone(),
                inputs,
                token: "tok-1".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id, None);

        // Subnets, on a second group: moto 5.1.22 drops a group from its store on
        // ModifyDBSubnetGroup (it pops it and never puts it back); RDS keeps it.
        let other = testutil::unique("dbsg");
        new_inputs.insert("name".into(), Value::Str(other.clone()));
        let created = rt
            .create(CreateRequest {
                address: addr.clone(),
                inputs: new_inputs.clone(),
                token: "tok-3".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr.clone()),
            })
            .await
            .unwrap();
        let Completion::Ready(a) = created.completion else {
            panic!("a subnet group is ready at once");
        };
        new_inputs.insert("subnet_ids".into(), strs(&subnets[1..]));
        let updated = rt
            .update(UpdateRequest {
                address: addr.clone(),
                id: other.clone(),
                prior: a,
                inputs: new_inputs,
                changed: vec!["subnet_ids".into()],
                progress: Progress::none(addr.clone()),
            })
            .await
            .unwrap()
            .attributes;
        assert_eq!(updated["subnet_ids"], strs(&subnets[1..]));
        if let Some(a) = read(other.clone()).await {
            assert_eq!(a, updated);
        }
        assert!(del(other).await.done);
    }
}

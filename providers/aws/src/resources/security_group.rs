//! `aws_security_group`.
//!
//! The group alone: its ingress rules are `aws_vpc_security_group_ingress_rule` objects, so
//! the group needs only its VPC and whatever the rules admit can be made at the same time.
//! Rules the group has are left alone (an older flyteinfra kept one inline: the rule type
//! takes it over).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType as Ec2Type, SecurityGroup as Ec2Group};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest,
    UpdateResponse,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs;
use crate::client::AwsClients;
use crate::error::aws_err;

/// `aws_security_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_security_group",
        doc: "A security group; its rules are `aws_vpc_security_group_ingress_rule` objects.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("name", "The group name, unique in the VPC.")
                .required()
                .force_new(),
            // CreateSecurityGroup requires a description.
            Field::input("description", "The description.")
                .required()
                .force_new(),
            Field::input("vpc_id", "The VPC.").required().force_new(),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `aws_security_group` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(SecurityGroup {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct SecurityGroup {
    clients: AwsClients,
    schema: Schema,
}

/// Attributes of `g`.
fn to_attrs(g: &Ec2Group) -> Attributes {
    attrs::attrs([
        ("id", g.group_id().unwrap_or_default().into()),
        ("name", g.group_name().unwrap_or_default().into()),
        ("description", g.description().unwrap_or_default().into()),
        ("vpc_id", g.vpc_id().unwrap_or_default().into()),
        ("tags", common::tags_attr(g.tags())),
    ])
}

impl SecurityGroup {
    async fn describe_raw(
        &self,
        ids: Option<Vec<String>>,
        token: Option<&str>,
    ) -> Result<Vec<Ec2Group>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_security_groups()
            .set_group_ids(ids)
            .set_filters(token.map(|t| vec![common::token_filter(t)]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeSecurityGroups", e))?;
        Ok(out.security_groups().to_vec())
    }

    async fn find_raw(&self, token: &str) -> Result<Option<Ec2Group>, ProviderError> {
        Ok(self
            .describe_raw(None, Some(token))
            .await?
            .into_iter()
            .find(|g| common::has_token(g.tags(), token)))
    }
}

#[async_trait]
impl Describe for SecurityGroup {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let groups = self.describe_raw(Some(common::ids(reqs)), None).await?;
        Ok(reqs
            .iter()
            .filter_map(|r| {
                let g = groups.iter().find(|g| g.group_id() == Some(&r.id))?;
                Some((r.id.clone(), to_attrs(g)))
            })
            .collect())
    }
}

#[async_trait]
impl Ec2Resource for SecurityGroup {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let found = self.find_raw(token).await?;
        Ok(found.and_then(|g| g.group_id().map(str::to_string)))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let description = attrs::s(&req.inputs, "description")?;
        let vpc = attrs::s(&req.inputs, "vpc_id")?;
        // A retry of a create that took effect resumes with the group it made.
        let group = match common::earlier(&req, self.find_raw(&req.token)).await? {
            Some(g) => {
                let id = g.group_id().unwrap_or_default();
                common::sync_tags(
                    &self.clients.ec2,
                    id,
                    &common::tag_map(g.tags()),
                    &req.inputs,
                )
                .await?;
                g
            }
            None => {
                let out = self
                    .clients
                    .ec2
                    .create_security_group()
                    .group_name(name)
                    .description(description)
                    .vpc_id(vpc)
                    .tag_specifications(common::tag_spec(
                        Ec2Type::SecurityGroup,
                        &req.token,
                        &req.inputs,
                    ))
                    .send()
                    .await
                    .map_err(|e| aws_err("CreateSecurityGroup", e))?;
                Ec2Group::builder()
                    .set_group_id(out.group_id().map(str::to_string))
                    .build()
            }
        };
        let id = group.group_id().unwrap_or_default().to_string();
        let attributes = common::read_back(self, &req.address, &id, &req.inputs).await?;
        Ok(CreateResponse {
            id,
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let groups = self.describe_raw(Some(vec![req.id.clone()]), None).await?;
        let Some(g) = groups.iter().find(|g| g.group_id() == Some(&req.id)) else {
            return Err(ProviderError::new(
                ErrorKind::NotFound,
                format!("security group `{}` does not exist", req.id),
            ));
        };
        common::sync_tags(
            &self.clients.ec2,
            &req.id,
            &common::tag_map(g.tags()),
            &req.inputs,
        )
        .await?;
        Ok(UpdateResponse {
            attributes: common::read_updated(self, &req.address, &req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let r = self
            .clients
            .ec2
            .delete_security_group()
            .group_id(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteSecurityGroup", e));
        common::gone_is_ok(r)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;
    use aws_sdk_ec2::types::{IpPermission, UserIdGroupPair};

    const T: &str = "aws_security_group";

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let token = t::token();
        let inp = attrs::attrs([
            ("name", testutil::unique("db").into()),
            ("description", "PostgreSQL from the cluster".into()),
            ("vpc_id", vpc.as_str().into()),
            ("tags", attrs::tags_value([("Name".into(), "db".into())])),
        ]);

        let created = rt.create(t::create(T, &inp, &token)).await.unwrap();
        let id = created.id;
        let read = rt.read(t::refresh(T, &id, &inp)).await.unwrap();
        let read = read.attributes.unwrap();
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(read, want);
        assert!(matches!(created.completion, Completion::Ready(x) if x == want));
        let found = rt.find(t::find(T, &inp, &token)).await.unwrap().id;
        assert_eq!(found.as_deref(), Some(id.as_str()));
        assert_eq!(rt.create(t::create(T, &inp, &token)).await.unwrap().id, id);

        // A rule added to the group (as the rule type does) is left alone by updates.
        let other = c
            .ec2
            .create_security_group()
            .group_name(testutil::unique("src"))
            .description("source")
            .vpc_id(&vpc)
            .send()
            .await
            .unwrap();
        c.ec2
            .authorize_security_group_ingress()
            .group_id(&id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(5432)
                    .to_port(5432)
                    .user_id_group_pairs(
                        UserIdGroupPair::builder()
                            .group_id(other.group_id().unwrap())
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let mut new = inp.clone();
        new.insert(
            "tags".into(),
            attrs::tags_value([("Name".into(), "db2".into())]),
        );
        let up = rt
            .update(t::update(T, &id, &read, &new, &["tags"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["tags"], new["tags"]);
        let raw = c.ec2.describe_security_groups().group_ids(&id).send().await;
        assert_eq!(raw.unwrap().security_groups()[0].ip_permissions().len(), 1);

        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        let source = other.group_id().unwrap().to_string();
        let many = rt
            .read_many(vec![t::read(T, &source), t::read(T, &id)])
            .await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [true, false]);
    }
}

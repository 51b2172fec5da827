//! `aws_security_group`.
//!
//! The group's managed rules are its single-port TCP ingress rules from other security
//! groups: `ingress_port` × `ingress_source_group_ids`. CIDR rules, port ranges and egress
//! are left alone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    IpPermission, ResourceType as Ec2Type, SecurityGroup as Ec2Group, UserIdGroupPair,
};
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
        doc: "A security group with ingress rules from other security groups.",
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
            Field::input("ingress_port", "The TCP port admitted."),
            Field::input("ingress_source_group_ids", "Security groups admitted."),
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

/// One managed rule: TCP `port` from group `source`.
type Rule = (i32, String);

/// The group's managed rules.
fn rules(g: &Ec2Group) -> BTreeSet<Rule> {
    g.ip_permissions()
        .iter()
        .filter(|p| matches!(p.ip_protocol(), Some("tcp" | "6")))
        .filter(|p| p.from_port().is_some() && p.from_port() == p.to_port())
        .flat_map(|p| {
            let port = p.from_port().unwrap_or_default();
            p.user_id_group_pairs()
                .iter()
                .filter_map(move |u| Some((port, u.group_id()?.to_string())))
        })
        .collect()
}

/// The rules `inputs` ask for.
fn wanted(inputs: &Attributes) -> Result<BTreeSet<Rule>, ProviderError> {
    let sources = attrs::strings(inputs, "ingress_source_group_ids");
    let Some(port) = attrs::i(inputs, "ingress_port") else {
        if sources.is_empty() {
            return Ok(BTreeSet::new());
        }
        return Err(ProviderError::new(
            ErrorKind::InvalidInput,
            "`ingress_source_group_ids` needs `ingress_port`",
        ));
    };
    let port = i32::try_from(port)
        .ok()
        .filter(|p| (0..=65535).contains(p))
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::InvalidInput,
                format!("`ingress_port` {port} is not a port"),
            )
        })?;
    Ok(sources.into_iter().map(|s| (port, s)).collect())
}

/// The rules as EC2 permissions, one per port.
fn permissions<'a>(rules: impl Iterator<Item = &'a Rule>) -> Vec<IpPermission> {
    let mut by_port: BTreeMap<i32, Vec<UserIdGroupPair>> = BTreeMap::new();
    for (port, source) in rules {
        by_port
            .entry(*port)
            .or_default()
            .push(UserIdGroupPair::builder().group_id(source).build());
    }
    by_port
        .into_iter()
        .map(|(port, pairs)| {
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(port)
                .to_port(port)
                .set_user_id_group_pairs(Some(pairs))
                .build()
        })
        .collect()
}

/// Attributes of `g`. With no managed rule the port cannot be read back, so the last
/// applied `ingress_port` (if any) stands: nothing in the cloud contradicts it.
fn to_attrs(g: &Ec2Group, prior_inputs: &Attributes) -> Attributes {
    let rules = rules(g);
    let prior_port = attrs::i(prior_inputs, "ingress_port");
    let port = prior_port
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| rules.iter().any(|(rp, _)| rp == p))
        .or_else(|| rules.first().map(|(p, _)| *p));
    let mut a = attrs::attrs([
        ("id", g.group_id().unwrap_or_default().into()),
        ("name", g.group_name().unwrap_or_default().into()),
        ("description", g.description().unwrap_or_default().into()),
        ("vpc_id", g.vpc_id().unwrap_or_default().into()),
        (
            "ingress_source_group_ids",
            attrs::unordered(
                rules
                    .iter()
                    .filter(|(p, _)| Some(*p) == port)
                    .map(|(_, s)| s.clone())
                    .collect(),
                prior_inputs.get("ingress_source_group_ids"),
            ),
        ),
        ("tags", common::tags_attr(g.tags())),
    ]);
    if let Some(p) = port.map(i64::from).or(prior_port) {
        a.insert("ingress_port".into(), p.into());
    }
    a
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

    /// Revokes the managed rules `inputs` no longer ask for and authorizes the missing ones.
    async fn converge(&self, g: &Ec2Group, inputs: &Attributes) -> Result<(), ProviderError> {
        let id = g.group_id().unwrap_or_default();
        let want = wanted(inputs)?;
        let have = rules(g);
        let revoke = permissions(have.difference(&want));
        let authorize = permissions(want.difference(&have));
        if !revoke.is_empty() {
            let r = self
                .clients
                .ec2
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(revoke))
                .send()
                .await
                .map_err(|e| aws_err("RevokeSecurityGroupIngress", e));
            common::gone_is_ok(r)?;
        }
        if !authorize.is_empty() {
            let authorized = self
                .clients
                .ec2
                .authorize_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(authorize))
                .send()
                .await
                .map_err(|e| aws_err("AuthorizeSecurityGroupIngress", e));
            // Already there: an earlier attempt whose answer was lost added it.
            match authorized {
                Err(e) if !e.message.contains("InvalidPermission.Duplicate") => return Err(e),
                _ => {}
            }
        }
        Ok(())
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
                Some((r.id.clone(), to_attrs(g, &r.prior_inputs)))
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
        wanted(&req.inputs)?;
        // A retry of a create that took effect resumes with the group it made.
        let group = match self.find_raw(&req.token).await? {
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
                // A new group has no ingress rules.
                Ec2Group::builder()
                    .set_group_id(out.group_id().map(str::to_string))
                    .build()
            }
        };
        let id = group.group_id().unwrap_or_default().to_string();
        self.converge(&group, &req.inputs)
            .await
            .map_err(common::settling)?;
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
        self.converge(g, &req.inputs).await?;
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

    const T: &str = "aws_security_group";

    async fn group(c: &AwsClients, vpc: &str) -> String {
        let out = c
            .ec2
            .create_security_group()
            .group_name(testutil::unique("src"))
            .description("source")
            .vpc_id(vpc)
            .send()
            .await
            .unwrap();
        out.group_id().unwrap().to_string()
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let (s1, s2, s3) = (
            group(&c, &vpc).await,
            group(&c, &vpc).await,
            group(&c, &vpc).await,
        );
        let token = t::token();
        let inp = attrs::attrs([
            ("name", testutil::unique("db").into()),
            ("description", "PostgreSQL from the cluster".into()),
            ("vpc_id", vpc.as_str().into()),
            ("ingress_port", 5432i64.into()),
            ("ingress_source_group_ids", t::unsorted(&[&s1, &s2])),
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

        // New port, one source swapped: old rules revoked, new ones authorized.
        let mut new = inp.clone();
        new.insert("ingress_port".into(), 5433i64.into());
        new.insert("ingress_source_group_ids".into(), t::unsorted(&[&s1, &s3]));
        let up = rt
            .update(t::update(
                T,
                &id,
                &read,
                &new,
                &["ingress_port", "ingress_source_group_ids"],
            ))
            .await
            .unwrap()
            .attributes;
        let mut want = new.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(up, want);
        let raw = c
            .ec2
            .describe_security_groups()
            .group_ids(&id)
            .send()
            .await
            .unwrap();
        assert_eq!(rules(&raw.security_groups()[0]).len(), 2);

        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        let many = rt.read_many(vec![t::read(T, &s1), t::read(T, &id)]).await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [true, false]);
    }
}

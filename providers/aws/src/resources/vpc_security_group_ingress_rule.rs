//! `aws_vpc_security_group_ingress_rule`: one ingress rule of a security group, from another
//! security group, as an object of its own (EC2's `sgr-…` security group rules).
//!
//! A rule of its own lets the group and whatever the rule admits be made side by side: the
//! database's group needs only the VPC, and the rule from the cluster's group follows the
//! cluster, so the database never waits for the cluster.
//!
//! Rules carry the token tag. A create that meets an identical rule
//! (`InvalidPermission.Duplicate`) takes it over only with proof that it is flyteinfra's: it
//! carries this create's token (an earlier attempt whose answer was lost), or it is untagged
//! in a group flyteinfra made (a rule an older flyteinfra kept inline in the group, before
//! rules were objects). Anything else is a conflict to resolve by hand.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, IpPermission, ResourceType as Ec2Type, SecurityGroupRule, Tag, UserIdGroupPair,
};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest,
    UpdateResponse,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs::{self, TOKEN_TAG};
use crate::client::AwsClients;
use crate::error::aws_err;

/// `aws_vpc_security_group_ingress_rule`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_vpc_security_group_ingress_rule",
        doc: "One ingress rule of a security group, admitting another security group.",
        fields: vec![
            Field::computed("id", "The rule id (`sgr-…`)."),
            Field::input("security_group_id", "The group the rule belongs to.")
                .required()
                .force_new(),
            Field::input("ip_protocol", "`tcp`, `udp` or `icmp`.")
                .required()
                .force_new(),
            Field::input("from_port", "The first port admitted.")
                .required()
                .force_new(),
            Field::input("to_port", "The last port admitted.")
                .required()
                .force_new(),
            Field::input(
                "referenced_security_group_id",
                "The security group whose members are admitted.",
            )
            .required()
            .force_new(),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_vpc_security_group_ingress_rule` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(VpcSecurityGroupIngressRule {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct VpcSecurityGroupIngressRule {
    clients: AwsClients,
    schema: Schema,
}

/// What a rule admits, as the inputs ask and as EC2 reports it.
#[derive(PartialEq, Eq, Debug)]
struct Permission {
    group: String,
    protocol: String,
    from: i32,
    to: i32,
    source: String,
}

impl Permission {
    fn from_inputs(inputs: &Attributes) -> Result<Permission, ProviderError> {
        let port = |name: &str| {
            let p = attrs::i(inputs, name).ok_or_else(|| {
                ProviderError::new(ErrorKind::InvalidInput, format!("`{name}` is required"))
            })?;
            i32::try_from(p)
                .ok()
                .filter(|p| (-1..=65535).contains(p))
                .ok_or_else(|| {
                    ProviderError::new(
                        ErrorKind::InvalidInput,
                        format!("`{name}` {p} is not a port"),
                    )
                })
        };
        Ok(Permission {
            group: attrs::s(inputs, "security_group_id")?.to_string(),
            protocol: attrs::s(inputs, "ip_protocol")?.to_string(),
            from: port("from_port")?,
            to: port("to_port")?,
            source: attrs::s(inputs, "referenced_security_group_id")?.to_string(),
        })
    }

    /// The rule's permission, if it is an ingress rule from a security group.
    fn of(r: &SecurityGroupRule) -> Option<Permission> {
        if r.is_egress() != Some(false) {
            return None;
        }
        Some(Permission {
            group: r.group_id()?.to_string(),
            protocol: protocol_name(r.ip_protocol()?).to_string(),
            from: r.from_port()?,
            to: r.to_port()?,
            source: r.referenced_group_info()?.group_id()?.to_string(),
        })
    }

    fn ip_permission(&self) -> IpPermission {
        IpPermission::builder()
            .ip_protocol(&self.protocol)
            .from_port(self.from)
            .to_port(self.to)
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(&self.source).build())
            .build()
    }
}

/// EC2 answers with protocol numbers or names; inputs use names.
fn protocol_name(p: &str) -> &str {
    match p {
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        other => other,
    }
}

fn to_attrs(r: &SecurityGroupRule, p: &Permission) -> Attributes {
    attrs::attrs([
        ("id", r.security_group_rule_id().unwrap_or_default().into()),
        ("security_group_id", p.group.as_str().into()),
        ("ip_protocol", p.protocol.as_str().into()),
        ("from_port", i64::from(p.from).into()),
        ("to_port", i64::from(p.to).into()),
        ("referenced_security_group_id", p.source.as_str().into()),
        ("tags", common::tags_attr(r.tags())),
    ])
}

impl VpcSecurityGroupIngressRule {
    async fn rules(
        &self,
        ids: Option<Vec<String>>,
        filter: Option<Filter>,
    ) -> Result<Vec<SecurityGroupRule>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_security_group_rules()
            .set_security_group_rule_ids(ids)
            .set_filters(filter.map(|f| vec![f]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeSecurityGroupRules", e))?;
        Ok(out.security_group_rules().to_vec())
    }

    /// The existing rule identical to `want`, when it is provably flyteinfra's (see the module
    /// docs), tagged as `req` asks; otherwise a conflict naming it.
    async fn take_over(
        &self,
        want: &Permission,
        req: &CreateRequest,
    ) -> Result<(String, Attributes), ProviderError> {
        let in_group = Filter::builder()
            .name("group-id")
            .values(&want.group)
            .build();
        let rules = self
            .rules(None, Some(in_group))
            .await
            .map_err(common::settling)?;
        let Some(rule) = rules
            .iter()
            .find(|r| Permission::of(r).as_ref() == Some(want))
        else {
            return Err(ProviderError::new(
                ErrorKind::Transient,
                "EC2 reported the rule as a duplicate but does not list it yet",
            ));
        };
        let id = rule
            .security_group_rule_id()
            .unwrap_or_default()
            .to_string();
        let current = common::tag_map(rule.tags());
        let ours = match current.get(TOKEN_TAG) {
            Some(t) => *t == req.token,
            None => self.group_is_flyteinfras(&want.group).await?,
        };
        if !ours {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "security group `{}` already has rule `{id}` admitting `{}` on {} {}-{}, and \
                     nothing shows it is flyteinfra's; remove it and apply again",
                    want.group, want.source, want.protocol, want.from, want.to
                ),
            ));
        }
        // The token goes on with the input tags (`sync_tags` never sets it), then any
        // other tag the rule had is removed.
        let mut tagged = attrs::tags(&req.inputs);
        tagged.insert(TOKEN_TAG.to_string(), req.token.clone());
        if tagged.iter().any(|(k, v)| current.get(k) != Some(v)) {
            let tags = tagged
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build());
            self.clients
                .ec2
                .create_tags()
                .resources(&id)
                .set_tags(Some(tags.collect()))
                .send()
                .await
                .map_err(|e| aws_err("CreateTags", e))?;
        }
        let mut now = current.clone();
        now.extend(tagged);
        common::sync_tags(&self.clients.ec2, &id, &now, &req.inputs).await?;
        let mut attributes = to_attrs(rule, want);
        attributes.insert("tags".into(), attrs::tags_value(attrs::tags(&req.inputs)));
        Ok((id, attributes))
    }

    /// Whether `group` carries a flyteinfra token: a group flyteinfra made.
    async fn group_is_flyteinfras(&self, group: &str) -> Result<bool, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_security_groups()
            .group_ids(group)
            .send()
            .await
            .map_err(|e| aws_err("DescribeSecurityGroups", e))?;
        Ok(out
            .security_groups()
            .iter()
            .any(|g| g.tags().iter().any(|t| t.key() == Some(TOKEN_TAG))))
    }
}

#[async_trait]
impl Describe for VpcSecurityGroupIngressRule {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let rules = self.rules(Some(common::ids(reqs)), None).await?;
        Ok(rules
            .iter()
            .filter_map(|r| {
                let p = Permission::of(r)?;
                Some((r.security_group_rule_id()?.to_string(), to_attrs(r, &p)))
            })
            .collect())
    }
}

#[async_trait]
impl Ec2Resource for VpcSecurityGroupIngressRule {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let rules = self.rules(None, Some(common::token_filter(token))).await?;
        Ok(rules
            .iter()
            .find(|r| common::has_token(r.tags(), token))
            .and_then(|r| r.security_group_rule_id().map(str::to_string)))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let want = Permission::from_inputs(&req.inputs)?;
        let authorized = self
            .clients
            .ec2
            .authorize_security_group_ingress()
            .group_id(&want.group)
            .ip_permissions(want.ip_permission())
            .tag_specifications(common::tag_spec(
                Ec2Type::SecurityGroupRule,
                &req.token,
                &req.inputs,
            ))
            .send()
            .await
            .map_err(|e| aws_err("AuthorizeSecurityGroupIngress", e));
        let (id, attributes) = match authorized {
            Ok(out) => {
                let Some(rule) = out.security_group_rules().first() else {
                    return Err(ProviderError::new(
                        ErrorKind::Permanent,
                        "AuthorizeSecurityGroupIngress returned no rule",
                    ));
                };
                let id = rule
                    .security_group_rule_id()
                    .unwrap_or_default()
                    .to_string();
                // The answer carries the whole rule: no read-back when it is complete.
                match Permission::of(rule) {
                    Some(p) if p == want => (id, to_attrs(rule, &p)),
                    _ => {
                        let a = common::read_back(self, &req.address, &id, &req.inputs).await?;
                        (id, a)
                    }
                }
            }
            Err(e) if e.message.contains("InvalidPermission.Duplicate") => {
                self.take_over(&want, &req).await?
            }
            Err(e) => return Err(common::settling(e)),
        };
        Ok(CreateResponse {
            id,
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        // Only `tags` can change in place.
        common::sync_live_tags(&self.clients.ec2, &req.id, &req.inputs).await?;
        Ok(UpdateResponse {
            attributes: common::read_updated(self, &req.address, &req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let group = attrs::s(&req.attributes, "security_group_id")?;
        let r = self
            .clients
            .ec2
            .revoke_security_group_ingress()
            .group_id(group)
            .security_group_rule_ids(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("RevokeSecurityGroupIngress", e));
        common::gone_is_ok(r)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;

    const T: &str = "aws_vpc_security_group_ingress_rule";

    /// A group made directly through the SDK; `token` tags it as flyteinfra's.
    async fn group(c: &AwsClients, vpc: &str, token: Option<&str>) -> String {
        let mut create = c
            .ec2
            .create_security_group()
            .group_name(testutil::unique("sg"))
            .description("test")
            .vpc_id(vpc);
        if let Some(token) = token {
            create = create.tag_specifications(common::tag_spec(
                Ec2Type::SecurityGroup,
                token,
                &Attributes::new(),
            ));
        }
        create.send().await.unwrap().group_id().unwrap().to_string()
    }

    fn inputs(group: &str, source: &str) -> Attributes {
        attrs::attrs([
            ("security_group_id", group.into()),
            ("ip_protocol", "tcp".into()),
            ("from_port", 5432i64.into()),
            ("to_port", 5432i64.into()),
            ("referenced_security_group_id", source.into()),
            ("tags", attrs::tags_value([("Name".into(), "db".into())])),
        ])
    }

    /// The group's ingress rules, as `(rule id, tags)`.
    async fn ingress(c: &AwsClients, group: &str) -> Vec<(String, Vec<(String, String)>)> {
        let out = c
            .ec2
            .describe_security_group_rules()
            .filters(Filter::builder().name("group-id").values(group).build())
            .send()
            .await
            .unwrap();
        out.security_group_rules()
            .iter()
            .filter(|r| r.is_egress() == Some(false))
            .map(|r| {
                let tags = r.tags().iter();
                let tags = tags.map(|t| (t.key().unwrap().into(), t.value().unwrap().into()));
                (
                    r.security_group_rule_id().unwrap().to_string(),
                    tags.collect(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let (db, cluster) = (group(&c, &vpc, None).await, group(&c, &vpc, None).await);
        let token = t::token();
        let inp = inputs(&db, &cluster);

        let created = rt.create(t::create(T, &inp, &token)).await.unwrap();
        let id = created.id;
        assert!(id.starts_with("sgr-"), "{id}");
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert!(matches!(created.completion, Completion::Ready(ref x) if *x == want));
        let read = rt.read(t::refresh(T, &id, &inp)).await.unwrap();
        assert_eq!(read.attributes.as_ref(), Some(&want));
        let found = rt.find(t::find(T, &inp, &token)).await.unwrap().id;
        assert_eq!(found.as_deref(), Some(id.as_str()));
        // A create re-sent after a lost answer resumes with the same rule.
        assert_eq!(rt.create(t::create(T, &inp, &token)).await.unwrap().id, id);
        assert_eq!(ingress(&c, &db).await.len(), 1);

        let mut new = inp.clone();
        new.insert(
            "tags".into(),
            attrs::tags_value([("Name".into(), "db2".into())]),
        );
        let up = rt
            .update(t::update(T, &id, &want, &new, &["tags"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["tags"], new["tags"]);

        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(ingress(&c, &db).await.is_empty());
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
    }

    /// The rule an older flyteinfra kept inline in its own group is taken over, not
    /// duplicated or revoked; the same rule in a group flyteinfra did not make is refused.
    #[tokio::test]
    async fn takes_over_only_what_is_provably_its_own() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let cluster = group(&c, &vpc, None).await;
        for (ours, token) in [(true, Some(t::token())), (false, None)] {
            let db = group(&c, &vpc, token.as_deref()).await;
            let want = Permission::from_inputs(&inputs(&db, &cluster)).unwrap();
            c.ec2
                .authorize_security_group_ingress()
                .group_id(&db)
                .ip_permissions(want.ip_permission())
                .send()
                .await
                .unwrap();
            let [(inline, _)] = &ingress(&c, &db).await[..] else {
                panic!("one inline rule")
            };
            let token = t::token();
            let r = rt
                .create(t::create(T, &inputs(&db, &cluster), &token))
                .await;
            if ours {
                assert_eq!(&r.unwrap().id, inline);
                let rules = ingress(&c, &db).await;
                assert_eq!(rules.len(), 1, "{rules:?}");
                assert!(rules[0].1.contains(&(TOKEN_TAG.into(), token)), "{rules:?}");
            } else {
                let e = r.unwrap_err();
                assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
                assert!(e.message.contains(inline.as_str()), "{e}");
                assert!(ingress(&c, &db).await[0].1.is_empty());
            }
        }
    }
}

//! `aws_vpc`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType as Ec2Type, VpcAttributeName};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Field,
    ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest, UpdateResponse,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs;
use crate::client::AwsClients;
use crate::error::aws_err;

/// `aws_vpc`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_vpc",
        doc: "A VPC. It has no unique name, so its identity is the token tag set in the create call.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("cidr_block", "The IPv4 range.")
                .required()
                .force_new(),
            Field::input("enable_dns_hostnames", "DNS hostnames (EKS needs them)."),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `aws_vpc` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(Vpc {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct Vpc {
    clients: AwsClients,
    schema: Schema,
}

impl Vpc {
    async fn set_dns_hostnames(&self, id: &str, on: bool) -> Result<(), ProviderError> {
        self.clients
            .ec2
            .modify_vpc_attribute()
            .vpc_id(id)
            .enable_dns_hostnames(common::bool_value(on))
            .send()
            .await
            .map_err(|e| aws_err("ModifyVpcAttribute", e))?;
        Ok(())
    }

    async fn dns_hostnames(&self, id: &str) -> Result<bool, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_vpc_attribute()
            .vpc_id(id)
            .attribute(VpcAttributeName::EnableDnsHostnames)
            .send()
            .await
            .map_err(|e| aws_err("DescribeVpcAttribute", e))?;
        Ok(out
            .enable_dns_hostnames()
            .and_then(|v| v.value())
            .unwrap_or(false))
    }
}

#[async_trait]
impl Describe for Vpc {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_vpcs()
            .set_vpc_ids(Some(common::ids(reqs)))
            .send()
            .await
            .map_err(|e| aws_err("DescribeVpcs", e))?;
        let mut found = HashMap::new();
        for v in out.vpcs() {
            let Some(id) = v.vpc_id() else { continue };
            let dns = self.dns_hostnames(id).await?;
            found.insert(
                id.to_string(),
                attrs::attrs([
                    ("id", id.into()),
                    ("cidr_block", v.cidr_block().unwrap_or_default().into()),
                    ("enable_dns_hostnames", dns.into()),
                    ("tags", common::tags_attr(v.tags())),
                ]),
            );
        }
        Ok(found)
    }
}

#[async_trait]
impl Ec2Resource for Vpc {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_vpcs()
            .filters(common::token_filter(token))
            .send()
            .await
            .map_err(|e| aws_err("DescribeVpcs", e))?;
        Ok(out
            .vpcs()
            .iter()
            .find(|v| common::has_token(v.tags(), token))
            .and_then(|v| v.vpc_id())
            .map(str::to_string))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let cidr = attrs::s(&req.inputs, "cidr_block")?;
        // A retry of a create that took effect resumes with the object it made.
        let id = match common::earlier(&req, self.find_id(&req.token)).await? {
            Some(id) => id,
            None => {
                let out = self
                    .clients
                    .ec2
                    .create_vpc()
                    .cidr_block(cidr)
                    .tag_specifications(common::tag_spec(Ec2Type::Vpc, &req.token, &req.inputs))
                    .send()
                    .await
                    .map_err(|e| aws_err("CreateVpc", e))?;
                out.vpc()
                    .and_then(|v| v.vpc_id())
                    .unwrap_or_default()
                    .to_string()
            }
        };
        if let Some(on) = attrs::b(&req.inputs, "enable_dns_hostnames") {
            self.set_dns_hostnames(&id, on)
                .await
                .map_err(common::settling)?;
        }
        let attributes = common::read_back(self, &req.address, &id, &req.inputs).await?;
        Ok(CreateResponse {
            id,
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let desired = attrs::b(&req.inputs, "enable_dns_hostnames");
        if let Some(on) = desired
            && attrs::b(&req.prior, "enable_dns_hostnames") != Some(on)
        {
            self.set_dns_hostnames(&req.id, on).await?;
        }
        common::sync_live_tags(&self.clients.ec2, &req.id, &req.inputs).await?;
        Ok(UpdateResponse {
            attributes: common::read_updated(self, &req.address, &req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let r = self
            .clients
            .ec2
            .delete_vpc()
            .vpc_id(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteVpc", e));
        common::gone_is_ok(r)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::{ErrorKind, Value};

    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;

    const T: &str = "aws_vpc";

    fn inputs(name: &str) -> Attributes {
        attrs::attrs([
            ("cidr_block", "10.1.0.0/16".into()),
            ("enable_dns_hostnames", true.into()),
            ("tags", attrs::tags_value([("Name".into(), name.into())])),
        ])
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let token = t::token();
        let name = testutil::unique("vpc");
        let inp = inputs(&name);

        let created = rt.create(t::create(T, &inp, &token)).await.unwrap();
        let Completion::Ready(a) = created.completion else {
            panic!("VPC create is synchronous")
        };
        let id = created.id;
        let read = rt.read(t::read(T, &id)).await.unwrap().attributes.unwrap();
        assert_eq!(read, a);
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(read, want);

        let found = rt.find(t::find(T, &inp, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // A retried create with the same token adopts the same VPC.
        let again = rt.create(t::create(T, &inp, &token)).await.unwrap();
        assert_eq!(again.id, id);

        let mut new = inp.clone();
        new.insert("enable_dns_hostnames".into(), false.into());
        new.insert(
            "tags".into(),
            attrs::tags_value([("Team".into(), "infra".into())]),
        );
        let up = rt
            .update(t::update(
                T,
                &id,
                &read,
                &new,
                &["enable_dns_hostnames", "tags"],
            ))
            .await
            .unwrap();
        assert_eq!(up.attributes["enable_dns_hostnames"], Value::Bool(false));
        assert_eq!(up.attributes["tags"], new["tags"]);

        // A second VPC, then delete the first: read_many maps each id back in order.
        let other = rt
            .create(t::create(T, &inputs("other"), &t::token()))
            .await
            .unwrap()
            .id;
        assert!(
            rt.delete(t::delete(T, &id, &up.attributes))
                .await
                .unwrap()
                .done
        );
        assert!(
            rt.delete(t::delete(T, &id, &up.attributes))
                .await
                .unwrap()
                .done
        );
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        let many = rt
            .read_many(vec![t::read(T, &id), t::read(T, &other), t::read(T, &id)])
            .await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [false, true, false]);
        assert!(
            rt.find(t::find(T, &inp, &token))
                .await
                .unwrap()
                .id
                .is_none()
        );
        rt.delete(t::delete(T, &other, &Attributes::new()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn delete_with_dependencies_is_a_conflict() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        t::subnet(&c, &vpc, "10.0.1.0/24").await;
        let err = rt
            .delete(t::delete(T, &vpc, &Attributes::new()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
        assert!(err.message.contains("DependencyViolation"), "{err}");
    }
}

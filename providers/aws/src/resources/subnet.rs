//! `aws_subnet`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::ResourceType as Ec2Type;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Field,
    ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest, UpdateResponse,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs;
use crate::client::AwsClients;
use crate::error::aws_err;

/// `aws_subnet`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_subnet",
        doc: "A subnet in one availability zone.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("vpc_id", "The VPC.").required().force_new(),
            Field::input("cidr_block", "The IPv4 range.")
                .required()
                .force_new(),
            Field::input("availability_zone", "The zone.")
                .required()
                .force_new(),
            Field::input(
                "map_public_ip_on_launch",
                "Public subnets give instances public IPs.",
            ),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_subnet` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(Subnet {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct Subnet {
    clients: AwsClients,
    schema: Schema,
}

impl Subnet {
    async fn set_public_ip(&self, id: &str, on: bool) -> Result<(), ProviderError> {
        self.clients
            .ec2
            .modify_subnet_attribute()
            .subnet_id(id)
            .map_public_ip_on_launch(common::bool_value(on))
            .send()
            .await
            .map_err(|e| aws_err("ModifySubnetAttribute", e))?;
        Ok(())
    }
}

#[async_trait]
impl Describe for Subnet {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_subnets()
            .set_subnet_ids(Some(common::ids(reqs)))
            .send()
            .await
            .map_err(|e| aws_err("DescribeSubnets", e))?;
        Ok(out
            .subnets()
            .iter()
            .filter_map(|s| {
                let id = s.subnet_id()?;
                let a = attrs::attrs([
                    ("id", id.into()),
                    ("vpc_id", s.vpc_id().unwrap_or_default().into()),
                    ("cidr_block", s.cidr_block().unwrap_or_default().into()),
                    (
                        "availability_zone",
                        s.availability_zone().unwrap_or_default().into(),
                    ),
                    (
                        "map_public_ip_on_launch",
                        s.map_public_ip_on_launch().unwrap_or(false).into(),
                    ),
                    ("tags", common::tags_attr(s.tags())),
                ]);
                Some((id.to_string(), a))
            })
            .collect())
    }
}

#[async_trait]
impl Ec2Resource for Subnet {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_subnets()
            .filters(common::token_filter(token))
            .send()
            .await
            .map_err(|e| aws_err("DescribeSubnets", e))?;
        Ok(out
            .subnets()
            .iter()
            .find(|s| common::has_token(s.tags(), token))
            .and_then(|s| s.subnet_id())
            .map(str::to_string))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let vpc = attrs::s(&req.inputs, "vpc_id")?;
        let cidr = attrs::s(&req.inputs, "cidr_block")?;
        let zone = attrs::s(&req.inputs, "availability_zone")?;
        // A retry of a create that took effect resumes with the object it made.
        let (id, fresh) = match common::earlier(&req, self.find_id(&req.token)).await? {
            Some(id) => (id, false),
            None => {
                let out = self
                    .clients
                    .ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(cidr)
                    .availability_zone(zone)
                    .tag_specifications(common::tag_spec(Ec2Type::Subnet, &req.token, &req.inputs))
                    .send()
                    .await
                    .map_err(|e| aws_err("CreateSubnet", e))?;
                let id = out.subnet().and_then(|s| s.subnet_id()).unwrap_or_default();
                (id.to_string(), true)
            }
        };
        // New subnets do not map public IPs; an adopted one is set either way.
        let public = attrs::b(&req.inputs, "map_public_ip_on_launch");
        if let Some(on) = public.filter(|on| *on || !fresh) {
            self.set_public_ip(&id, on)
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
        if let Some(on) = attrs::b(&req.inputs, "map_public_ip_on_launch")
            && attrs::b(&req.prior, "map_public_ip_on_launch") != Some(on)
        {
            self.set_public_ip(&req.id, on).await?;
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
            .delete_subnet()
            .subnet_id(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteSubnet", e));
        common::gone_is_ok(r)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::Value;

    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;

    const T: &str = "aws_subnet";

    fn inputs(vpc: &str, cidr: &str, public: bool) -> Attributes {
        attrs::attrs([
            ("vpc_id", vpc.into()),
            ("cidr_block", cidr.into()),
            ("availability_zone", "us-east-1b".into()),
            ("map_public_ip_on_launch", public.into()),
            ("tags", attrs::tags_value([("Name".into(), "sn".into())])),
        ])
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let token = t::token();
        let inp = inputs(&vpc, "10.0.0.0/24", true);

        let created = rt.create(t::create(T, &inp, &token)).await.unwrap();
        let id = created.id;
        let read = rt.read(t::read(T, &id)).await.unwrap().attributes.unwrap();
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(read, want);
        assert!(matches!(created.completion, Completion::Ready(a) if a == want));
        let found = rt.find(t::find(T, &inp, &token)).await.unwrap().id;
        assert_eq!(found.as_deref(), Some(id.as_str()));

        let mut new = inp.clone();
        new.insert("map_public_ip_on_launch".into(), false.into());
        new.insert("tags".into(), attrs::tags_value([]));
        let up = rt
            .update(t::update(T, &id, &read, &new, &["map_public_ip_on_launch"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["map_public_ip_on_launch"], Value::Bool(false));
        assert_eq!(up["tags"], attrs::tags_value([]));

        let other = rt
            .create(t::create(
                T,
                &inputs(&vpc, "10.0.1.0/24", false),
                &t::token(),
            ))
            .await
            .unwrap()
            .id;
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        let many = rt
            .read_many(vec![t::read(T, &other), t::read(T, &id)])
            .await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [true, false]);
    }
}

//! `aws_eip`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{DomainType, ResourceType as Ec2Type};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Field,
    ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest, UpdateResponse,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs;
use crate::client::AwsClients;
use crate::error::aws_err;

/// `aws_eip`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_eip",
        doc: "An Elastic IP for a NAT gateway.",
        fields: vec![
            Field::computed("id", "The cloud id (the allocation id)."),
            Field::computed("public_ip", "The address."),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_eip` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(Eip {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct Eip {
    clients: AwsClients,
    schema: Schema,
}

#[async_trait]
impl Describe for Eip {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_addresses()
            .set_allocation_ids(Some(common::ids(reqs)))
            .send()
            .await
            .map_err(|e| aws_err("DescribeAddresses", e))?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| {
                let id = a.allocation_id()?;
                let attributes = attrs::attrs([
                    ("id", id.into()),
                    ("public_ip", a.public_ip().unwrap_or_default().into()),
                    ("tags", common::tags_attr(a.tags())),
                ]);
                Some((id.to_string(), attributes))
            })
            .collect())
    }
}

#[async_trait]
impl Ec2Resource for Eip {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_addresses()
            .filters(common::token_filter(token))
            .send()
            .await
            .map_err(|e| aws_err("DescribeAddresses", e))?;
        Ok(out
            .addresses()
            .iter()
            .find(|a| common::has_token(a.tags(), token))
            .and_then(|a| a.allocation_id())
            .map(str::to_string))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        // A retry of a create that took effect resumes with the address it allocated.
        let id = match common::earlier(&req, self.find_id(&req.token)).await? {
            Some(id) => id,
            None => self
                .clients
                .ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(common::tag_spec(
                    Ec2Type::ElasticIp,
                    &req.token,
                    &req.inputs,
                ))
                .send()
                .await
                .map_err(|e| aws_err("AllocateAddress", e))?
                .allocation_id()
                .unwrap_or_default()
                .to_string(),
        };
        let attributes = common::read_back(self, &req.address, &id, &req.inputs).await?;
        Ok(CreateResponse {
            id,
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        common::sync_live_tags(&self.clients.ec2, &req.id, &req.inputs).await?;
        Ok(UpdateResponse {
            attributes: common::read_updated(self, &req.address, &req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let r = self
            .clients
            .ec2
            .release_address()
            .allocation_id(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("ReleaseAddress", e));
        common::gone_is_ok(r)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;

    const T: &str = "aws_eip";

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let token = t::token();
        let inp = attrs::attrs([("tags", attrs::tags_value([("Name".into(), "nat".into())]))]);

        let created = rt.create(t::create(T, &inp, &token)).await.unwrap();
        let id = created.id;
        let read = rt.read(t::read(T, &id)).await.unwrap().attributes.unwrap();
        assert!(matches!(&created.completion, Completion::Ready(a) if *a == read));
        assert_eq!(read["id"], id.as_str().into());
        assert!(!read["public_ip"].as_str().unwrap().is_empty(), "{read:?}");
        assert_eq!(read["tags"], inp["tags"]);
        let found = rt.find(t::find(T, &inp, &token)).await.unwrap().id;
        assert_eq!(found.as_deref(), Some(id.as_str()));

        let new = attrs::attrs([("tags", attrs::tags_value([("Env".into(), "x".into())]))]);
        let up = rt
            .update(t::update(T, &id, &read, &new, &["tags"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["tags"], new["tags"]);
        assert_eq!(up["public_ip"], read["public_ip"]);

        let other = rt.create(t::create(T, &inp, &t::token())).await.unwrap().id;
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        let many = rt
            .read_many(vec![
                t::read(T, &other),
                t::read(T, &id),
                t::read(T, &other),
            ])
            .await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [true, false, true]);
    }
}

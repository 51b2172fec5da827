//! `aws_internet_gateway`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{InternetGateway as Ec2InternetGateway, ResourceType as Ec2Type};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest,
    UpdateResponse,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs;
use crate::client::AwsClients;
use crate::error::aws_err;

/// `aws_internet_gateway`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_internet_gateway",
        doc: "An internet gateway attached to the VPC.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("vpc_id", "The VPC it is attached to.")
                .required()
                .force_new(),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `aws_internet_gateway` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(InternetGateway {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct InternetGateway {
    clients: AwsClients,
    schema: Schema,
}

/// The VPCs `igw` is attached to (or attaching to).
fn attached_vpcs(igw: &Ec2InternetGateway) -> Vec<&str> {
    igw.attachments()
        .iter()
        .filter(|a| {
            !matches!(
                a.state().map(|s| s.as_str()),
                Some("detaching" | "detached")
            )
        })
        .filter_map(|a| a.vpc_id())
        .collect()
}

impl InternetGateway {
    async fn describe_raw(
        &self,
        ids: Option<Vec<String>>,
        token: Option<&str>,
    ) -> Result<Vec<Ec2InternetGateway>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_internet_gateways()
            .set_internet_gateway_ids(ids)
            .set_filters(token.map(|t| vec![common::token_filter(t)]))
            .send()
            .await
            .map_err(|e| aws_err("DescribeInternetGateways", e))?;
        Ok(out.internet_gateways().to_vec())
    }

    async fn find_raw(&self, token: &str) -> Result<Option<Ec2InternetGateway>, ProviderError> {
        Ok(self
            .describe_raw(None, Some(token))
            .await?
            .into_iter()
            .find(|g| common::has_token(g.tags(), token)))
    }
}

#[async_trait]
impl Describe for InternetGateway {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let igws = self.describe_raw(Some(common::ids(reqs)), None).await?;
        Ok(igws
            .iter()
            .filter_map(|g| {
                let id = g.internet_gateway_id()?;
                let mut a =
                    attrs::attrs([("id", id.into()), ("tags", common::tags_attr(g.tags()))]);
                if let Some(vpc) = attached_vpcs(g).first() {
                    a.insert("vpc_id".into(), (*vpc).into());
                }
                Some((id.to_string(), a))
            })
            .collect())
    }
}

#[async_trait]
impl Ec2Resource for InternetGateway {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let found = self.find_raw(token).await?;
        Ok(found.and_then(|g| g.internet_gateway_id().map(str::to_string)))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let vpc = attrs::s(&req.inputs, "vpc_id")?;
        // A retry of a create that took effect resumes with the object it made.
        let (id, attached) = match common::earlier(&req, self.find_raw(&req.token)).await? {
            Some(g) => {
                let attached = attached_vpcs(&g).contains(&vpc);
                (
                    g.internet_gateway_id().unwrap_or_default().to_string(),
                    attached,
                )
            }
            None => {
                let out = self
                    .clients
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(common::tag_spec(
                        Ec2Type::InternetGateway,
                        &req.token,
                        &req.inputs,
                    ))
                    .send()
                    .await
                    .map_err(|e| aws_err("CreateInternetGateway", e))?;
                let g = out.internet_gateway();
                let id = g.and_then(|g| g.internet_gateway_id()).unwrap_or_default();
                (id.to_string(), false)
            }
        };
        if !attached {
            let r = self
                .clients
                .ec2
                .attach_internet_gateway()
                .internet_gateway_id(&id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| common::settling(aws_err("AttachInternetGateway", e)));
            // Already attached: an earlier attempt whose answer was lost did it (read_back
            // below reports which VPC, so a wrong one shows as a difference).
            if let Err(e) = r
                && !e.message.contains("Resource.AlreadyAssociated")
            {
                return Err(e);
            }
        }
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
        let igws = match self.describe_raw(Some(vec![req.id.clone()]), None).await {
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(DeleteResponse { done: true }),
            r => r?,
        };
        for vpc in igws.iter().flat_map(attached_vpcs) {
            let r = self
                .clients
                .ec2
                .detach_internet_gateway()
                .internet_gateway_id(&req.id)
                .vpc_id(vpc)
                .send()
                .await
                .map_err(|e| aws_err("DetachInternetGateway", e));
            match r {
                // Detached in the meantime.
                Err(e) if e.message.contains("Gateway.NotAttached") => {}
                r => common::gone_is_ok(r)?,
            }
        }
        let r = self
            .clients
            .ec2
            .delete_internet_gateway()
            .internet_gateway_id(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteInternetGateway", e));
        common::gone_is_ok(r)?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;

    const T: &str = "aws_internet_gateway";

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let token = t::token();
        let inp = attrs::attrs([
            ("vpc_id", vpc.as_str().into()),
            ("tags", attrs::tags_value([("Name".into(), "igw".into())])),
        ]);

        let id = rt.create(t::create(T, &inp, &token)).await.unwrap().id;
        let read = rt.read(t::read(T, &id)).await.unwrap().attributes.unwrap();
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(read, want);
        let found = rt.find(t::find(T, &inp, &token)).await.unwrap().id;
        assert_eq!(found.as_deref(), Some(id.as_str()));
        // A retried create adopts the attached gateway instead of making a second one.
        assert_eq!(rt.create(t::create(T, &inp, &token)).await.unwrap().id, id);

        let mut new = inp.clone();
        new.insert(
            "tags".into(),
            attrs::tags_value([("Name".into(), "igw2".into())]),
        );
        let up = rt
            .update(t::update(T, &id, &read, &new, &["tags"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["tags"], new["tags"]);

        // Detach + delete; the VPC then deletes cleanly.
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        let other = rt.create(t::create(T, &inp, &t::token())).await.unwrap().id;
        let many = rt
            .read_many(vec![t::read(T, &id), t::read(T, &other)])
            .await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [false, true]);
    }
}

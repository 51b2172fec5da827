//! `aws_nat_gateway`.
//!
//! The only EC2 type here that takes minutes: create returns at once and `wait_ready`
//! polls DescribeNatGateways. Deleted and failed gateways stay visible for about an hour;
//! they count as gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{NatGateway as Ec2NatGateway, NatGatewayState, ResourceType as Ec2Type};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, Poller, ProviderError, ReadRequest, ResourceType, Schema, UpdateRequest,
    UpdateResponse, WaitRequest,
};

use super::ec2_common::{self as common, Describe, Ec2, Ec2Resource};
use crate::attrs;
use crate::client::AwsClients;
use crate::error::aws_err;

/// How long deleting a NAT gateway usually takes.
const NAT_DELETE: Duration = Duration::from_secs(60);

/// `aws_nat_gateway`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_nat_gateway",
        doc: "A NAT gateway in a public subnet, for private subnets' egress.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("subnet_id", "The public subnet.")
                .required()
                .force_new(),
            Field::input("allocation_id", "The Elastic IP.")
                .required()
                .force_new(),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(120),
        deletion_protection: None,
    }
}

/// `aws_nat_gateway` over EC2.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(Ec2(NatGateway {
        clients: clients.clone(),
        schema: schema(),
    }))
}

struct NatGateway {
    clients: AwsClients,
    schema: Schema,
}

fn state(g: &Ec2NatGateway) -> &str {
    g.state().map_or("unknown", NatGatewayState::as_str)
}

/// Deleted and failed gateways linger in describes but are no longer usable objects.
fn is_gone(g: &Ec2NatGateway) -> bool {
    matches!(state(g), "deleted" | "failed")
}

fn to_attrs(g: &Ec2NatGateway) -> Attributes {
    let mut a = attrs::attrs([
        ("id", g.nat_gateway_id().unwrap_or_default().into()),
        ("subnet_id", g.subnet_id().unwrap_or_default().into()),
        // Tags come from DescribeNatGateways itself (moto files them under another
        // resource type in DescribeTags).
        ("tags", common::tags_attr(g.tags())),
    ]);
    if let Some(alloc) = g
        .nat_gateway_addresses()
        .iter()
        .find_map(|x| x.allocation_id())
    {
        a.insert("allocation_id".into(), alloc.into());
    }
    a
}

impl NatGateway {
    /// The gateway `id` as described, or `None` if unknown.
    async fn get(&self, id: &str) -> Result<Option<Ec2NatGateway>, ProviderError> {
        let r = self
            .clients
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(id)
            .send()
            .await
            .map_err(|e| aws_err("DescribeNatGateways", e));
        match r {
            Ok(out) => Ok(out
                .nat_gateways()
                .iter()
                .find(|g| g.nat_gateway_id() == Some(id))
                .cloned()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Describe for NatGateway {
    async fn describe(
        &self,
        reqs: &[ReadRequest],
    ) -> Result<HashMap<String, Attributes>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_nat_gateways()
            .set_nat_gateway_ids(Some(common::ids(reqs)))
            .send()
            .await
            .map_err(|e| aws_err("DescribeNatGateways", e))?;
        Ok(out
            .nat_gateways()
            .iter()
            .filter(|g| !is_gone(g))
            .filter_map(|g| Some((g.nat_gateway_id()?.to_string(), to_attrs(g))))
            .collect())
    }
}

#[async_trait]
impl Ec2Resource for NatGateway {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn find_id(&self, token: &str) -> Result<Option<String>, ProviderError> {
        let out = self
            .clients
            .ec2
            .describe_nat_gateways()
            .filter(common::token_filter(token))
            .send()
            .await
            .map_err(|e| aws_err("DescribeNatGateways", e))?;
        // moto ignores the tag filter here: the token is checked again.
        Ok(out
            .nat_gateways()
            .iter()
            .filter(|g| !is_gone(g) && state(g) != "deleting")
            .find(|g| common::has_token(g.tags(), token))
            .and_then(|g| g.nat_gateway_id())
            .map(str::to_string))
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let subnet = attrs::s(&req.inputs, "subnet_id")?;
        let allocation = attrs::s(&req.inputs, "allocation_id")?;
        // The client token makes AWS itself idempotent; the lookup covers emulators that
        // ignore it (moto) and keeps a retry from making a second gateway.
        let id = match common::earlier(&req, self.find_id(&req.token)).await? {
            Some(id) => id,
            None => {
                let sent = self
                    .clients
                    .ec2
                    .create_nat_gateway()
                    .subnet_id(subnet)
                    .allocation_id(allocation)
                    .client_token(&req.token)
                    .tag_specifications(common::tag_spec(
                        Ec2Type::Natgateway,
                        &req.token,
                        &req.inputs,
                    ))
                    .send()
                    .await
                    .map_err(|e| aws_err("CreateNatGateway", e));
                match sent {
                    Ok(out) => out
                        .nat_gateway()
                        .and_then(|g| g.nat_gateway_id())
                        .unwrap_or_default()
                        .to_string(),
                    // The Elastic IP is taken: by our own earlier attempt whose answer was
                    // lost (an emulator that ignores the client token says so), or by
                    // someone else. Look again before failing.
                    Err(e) if e.message.contains("AlreadyAssociated") => {
                        self.find_id(&req.token).await?.ok_or(e)?
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        Ok(CreateResponse {
            id,
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let mut last = String::new();
        let poller = Poller::start(self.clients.schedule(self.schema.expected_create));
        loop {
            let Some(g) = self.get(&req.id).await? else {
                return Err(ProviderError::new(
                    ErrorKind::NotFound,
                    format!("NAT gateway `{}` disappeared while being created", req.id),
                ));
            };
            let now = state(&g);
            if now != last {
                req.progress.status(now);
                last = now.to_string();
            }
            match now {
                "available" => return Ok(to_attrs(&g)),
                "failed" => {
                    return Err(ProviderError::new(
                        ErrorKind::Permanent,
                        format!(
                            "NAT gateway `{}` failed: {}",
                            req.id,
                            g.failure_message().unwrap_or("no reason given")
                        ),
                    ));
                }
                "deleting" | "deleted" => {
                    return Err(ProviderError::new(
                        ErrorKind::NotFound,
                        format!("NAT gateway `{}` was deleted while being created", req.id),
                    ));
                }
                _ => poller.sleep().await,
            }
        }
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        common::sync_live_tags(&self.clients.ec2, &req.id, &req.inputs).await?;
        Ok(UpdateResponse {
            attributes: common::read_updated(self, &req.address, &req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        match self.get(&req.id).await? {
            None => return Ok(DeleteResponse { done: true }),
            Some(g) if is_gone(&g) => return Ok(DeleteResponse { done: true }),
            Some(g) if state(&g) == "deleting" => return Ok(DeleteResponse { done: false }),
            Some(_) => {}
        }
        let r = self
            .clients
            .ec2
            .delete_nat_gateway()
            .nat_gateway_id(&req.id)
            .send()
            .await
            .map_err(|e| aws_err("DeleteNatGateway", e));
        match r {
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            r => r.map(|_| DeleteResponse { done: false }),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let mut last = String::new();
        let poller = Poller::start(self.clients.schedule(NAT_DELETE));
        loop {
            let Some(g) = self.get(&req.id).await? else {
                return Ok(());
            };
            if is_gone(&g) {
                return Ok(());
            }
            let now = state(&g);
            if now != last {
                req.progress.status(now);
                last = now.to_string();
            }
            poller.sleep().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::DomainType;

    use super::super::ec2_common::test_support as t;
    use super::*;
    use crate::testutil;

    const T: &str = "aws_nat_gateway";

    async fn eip(c: &AwsClients) -> String {
        let out = c
            .ec2
            .allocate_address()
            .domain(DomainType::Vpc)
            .send()
            .await
            .unwrap();
        out.allocation_id().unwrap().to_string()
    }

    #[tokio::test]
    async fn lifecycle_and_idempotent_create() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let vpc = t::vpc(&c).await;
        let subnet = t::subnet(&c, &vpc, "10.0.0.0/24").await;
        let token = t::token();
        let inp = attrs::attrs([
            ("subnet_id", subnet.as_str().into()),
            ("allocation_id", eip(&c).await.into()),
            ("tags", attrs::tags_value([("Name".into(), "nat".into())])),
        ]);

        let created = rt.create(t::create(T, &inp, &token)).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        // The same token again: no second gateway.
        assert_eq!(rt.create(t::create(T, &inp, &token)).await.unwrap().id, id);
        let ready = rt.wait_ready(t::wait(T, &id, &inp)).await.unwrap();
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(ready, want);
        let read = rt.read(t::read(T, &id)).await.unwrap().attributes.unwrap();
        assert_eq!(read, want);
        let found = rt.find(t::find(T, &inp, &token)).await.unwrap().id;
        assert_eq!(found.as_deref(), Some(id.as_str()));

        let mut new = inp.clone();
        new.insert(
            "tags".into(),
            attrs::tags_value([("Name".into(), "nat-a".into())]),
        );
        let up = rt
            .update(t::update(T, &id, &read, &new, &["tags"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["tags"], new["tags"]);

        let mut other_inp = inp.clone();
        other_inp.insert("allocation_id".into(), eip(&c).await.into());
        let other = rt
            .create(t::create(T, &other_inp, &t::token()))
            .await
            .unwrap()
            .id;
        assert!(!rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        rt.wait_deleted(t::wait(T, &id, &inp)).await.unwrap();
        assert!(rt.delete(t::delete(T, &id, &up)).await.unwrap().done);
        assert!(rt.read(t::read(T, &id)).await.unwrap().attributes.is_none());
        assert!(
            rt.find(t::find(T, &inp, &token))
                .await
                .unwrap()
                .id
                .is_none()
        );
        let many = rt
            .read_many(vec![t::read(T, &id), t::read(T, &other)])
            .await;
        let got: Vec<bool> = many
            .into_iter()
            .map(|r| r.unwrap().attributes.is_some())
            .collect();
        assert_eq!(got, [false, true]);
    }

    #[tokio::test]
    async fn unknown_gateway_deletes_and_reads_as_gone() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let id = "nat-0123456789abcdef0";
        assert!(rt.read(t::read(T, id)).await.unwrap().attributes.is_none());
        let del = rt.delete(t::delete(T, id, &Attributes::new())).await;
        assert!(del.unwrap().done);
    }
}

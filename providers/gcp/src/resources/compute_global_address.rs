//! `gcp_compute_global_address`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, WaitRequest,
};
use google_cloud_compute_v1::model::Address;
use google_cloud_compute_v1::model::address::{AddressType, Purpose};

use super::compute_common::{
    PendingOps, Scope, absent, carries_token, claim, gone_is_ok, network_ref, present, settle,
    token_description,
};
use super::operations::{link_value, managed_only};
use crate::client::GcpClients;
use crate::error::gax_err;

/// `gcp_compute_global_address`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_compute_global_address",
        doc: "A reserved global address range; with `purpose: VPC_PEERING` it is the Private \
              Service Access range that Service Networking peers to (Cloud SQL's private IPs \
              come from it). Every field is fixed at creation.",
        fields: vec![
            Field::computed("id", "The address's name."),
            Field::input("name", "The range's name (unique in the project).")
                .required()
                .force_new(),
            Field::input("network", "The network's self link (or name).").force_new(),
            Field::input("purpose", "`VPC_PEERING` for Private Service Access.").force_new(),
            Field::input("address_type", "`INTERNAL` for Private Service Access.").force_new(),
            Field::input(
                "prefix_length",
                "The range's size, as a prefix length (16 = /16).",
            )
            .force_new(),
            Field::computed("address", "The first address of the range Google picked."),
            Field::computed("self_link", "The address's full URL."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(10),
        deletion_protection: None,
    }
}

/// `gcp_compute_global_address` over Compute Engine.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ComputeGlobalAddress {
        clients: clients.clone(),
        schema: schema(),
        pending: PendingOps::default(),
    })
}

struct ComputeGlobalAddress {
    clients: GcpClients,
    schema: Schema,
    pending: PendingOps,
}

impl ComputeGlobalAddress {
    async fn get(&self, name: &str) -> Result<Option<Address>, ProviderError> {
        gone_is_ok(
            self.clients
                .global_addresses
                .get()
                .set_project(&self.clients.project)
                .set_address(name)
                .send()
                .await
                .map_err(|e| gax_err("globalAddresses.get", e)),
        )
    }

    fn attributes(&self, a: &Address, prior: &Attributes) -> Attributes {
        let name = a.name.clone().unwrap_or_default();
        let mut out = attrs::attrs([
            ("id", name.clone().into()),
            ("name", name.into()),
            (
                "network",
                link_value(
                    a.network.as_deref().unwrap_or_default(),
                    prior.get("network"),
                ),
            ),
            (
                "purpose",
                a.purpose
                    .as_ref()
                    .and_then(Purpose::name)
                    .unwrap_or_default()
                    .into(),
            ),
            (
                "address_type",
                a.address_type
                    .as_ref()
                    .and_then(AddressType::name)
                    .unwrap_or("EXTERNAL")
                    .into(),
            ),
            ("address", a.address.clone().unwrap_or_default().into()),
            ("self_link", a.self_link.clone().unwrap_or_default().into()),
        ]);
        if let Some(p) = a.prefix_length {
            out.insert("prefix_length".into(), i64::from(p).into());
        }
        managed_only(out, prior, &self.schema)
    }
}

/// The `targetLink` suffix of operations on address `name`.
fn target(name: &str) -> String {
    format!("/global/addresses/{name}")
}

#[async_trait]
impl ResourceType for ComputeGlobalAddress {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .get(&req.id)
                .await?
                .map(|a| self.attributes(&a, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        Ok(FindResponse {
            id: self
                .get(name)
                .await?
                .filter(|a| carries_token(a.description.as_deref(), &req.token))
                .map(|_| name.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let c = &self.clients;
        let i = &req.inputs;
        let name = attrs::s(i, "name")?;
        let mut body = Address::new()
            .set_name(name)
            .set_description(token_description(&req.token));
        body.network = attrs::opt_s(i, "network").map(|n| network_ref(&c.project, n));
        body.purpose = attrs::opt_s(i, "purpose").map(Purpose::from);
        body.address_type = attrs::opt_s(i, "address_type").map(AddressType::from);
        body.prefix_length = match attrs::i(i, "prefix_length") {
            None => None,
            Some(p) => Some(i32::try_from(p).map_err(|_| {
                ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!("`prefix_length` {p} is out of range"),
                )
            })?),
        };
        let sent = c
            .global_addresses
            .insert()
            .set_project(&c.project)
            .set_body(body)
            .send()
            .await
            .map_err(|e| gax_err("globalAddresses.insert", e));
        match sent {
            Ok(op) => self.pending.put(name, op.name.as_deref()),
            // The range an earlier attempt reserved is adopted (its description carries
            // the token; every field is force-new, so a different one shows in the next
            // plan). Anyone else's is refused.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let found = self.get(name).await?;
                claim(
                    found.as_ref().map(|a| a.description.as_deref()),
                    &req.token,
                    "global address",
                    &req.address,
                    name,
                )?;
            }
            Err(e) => return Err(e),
        }
        Ok(CreateResponse {
            id: name.to_string(),
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let what = "globalAddresses.insert";
        let c = &self.clients;
        settle(
            c,
            &Scope::Global,
            &self.pending,
            &req.id,
            &target(&req.id),
            what,
            &req.progress,
        )
        .await?;
        let what = format!("global address `{}`", req.id);
        let a = present(
            self.get(&req.id).await?,
            &what,
            "disappeared while being created",
        )?;
        Ok(self.attributes(&a, &req.inputs))
    }

    /// Every input is force-new, so there is nothing to change in place.
    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let what = format!("global address `{}`", req.id);
        let a = present(self.get(&req.id).await?, &what, "does not exist")?;
        Ok(UpdateResponse {
            attributes: self.attributes(&a, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let sent = self
            .clients
            .global_addresses
            .delete()
            .set_project(&self.clients.project)
            .set_address(&req.id)
            .send()
            .await
            .map_err(|e| gax_err("globalAddresses.delete", e));
        match gone_is_ok(sent)? {
            Some(op) => {
                self.pending.put(&req.id, op.name.as_deref());
                Ok(DeleteResponse { done: false })
            }
            None => Ok(DeleteResponse { done: true }),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let what = "globalAddresses.delete";
        let c = &self.clients;
        settle(
            c,
            &Scope::Global,
            &self.pending,
            &req.id,
            &target(&req.id),
            what,
            &req.progress,
        )
        .await?;
        absent(
            self.get(&req.id).await?,
            &format!("global address `{}`", req.id),
        )
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::Value;
    use flyteinfra_core::requests as r;

    use super::super::compute_common::test_support::network;
    use super::*;
    use crate::testutil;

    const T: &str = "gcp_compute_global_address";

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let net = network(&c).await;
        let rt = build(&c);
        let name = testutil::unique("psa");
        let inp = attrs::attrs([
            ("name", name.clone().into()),
            ("network", net.clone().into()),
            ("purpose", "VPC_PEERING".into()),
            ("address_type", "INTERNAL".into()),
            ("prefix_length", 16i64.into()),
        ]);

        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        let ready = rt.wait_ready(r::wait(T, &id, &inp)).await.unwrap();
        let read = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, ready);
        let mut want = inp.clone();
        for k in ["id", "address", "self_link"] {
            want.insert(k.into(), read[k].clone());
        }
        assert_eq!(read, want);
        assert_eq!(read["id"], Value::from(name.as_str()));
        assert!(!read["address"].as_str().unwrap().is_empty());

        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        testutil::assert_foreign_token_refused(&rt, T, &inp).await;
        let again = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(rt.wait_ready(r::wait(T, &id, &inp)).await.unwrap(), read);

        for _ in 0..2 {
            let d = rt.delete(r::delete(T, &id, &read)).await.unwrap();
            if !d.done {
                rt.wait_deleted(r::wait(T, &id, &inp)).await.unwrap();
            }
        }
        assert!(rt.read(r::read(T, &id)).await.unwrap().attributes.is_none());
        assert!(rt.find(r::find(T, &inp, "tok")).await.unwrap().id.is_none());
    }
}

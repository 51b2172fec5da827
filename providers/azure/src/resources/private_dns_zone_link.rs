//! `azure_private_dns_zone_link`: a private DNS zone's link to a virtual network (which
//! makes the zone resolve inside it), owned through its token tag.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use flyteinfra_core::{Progress, attrs};
use serde_json::{Value as Json, json};

use super::common::{
    Pending, WaitFor, by_provisioning_state, carries_token, find_by_token, id_value, managed_only,
    needs_put, parent_of, str_at, tags_keeping_token, tags_with_token, user_tags,
};
use super::private_dns_zone::API;
use crate::client::ArmClient;

const WHAT: &str = "private DNS zone link";

/// `azure_private_dns_zone_link`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_private_dns_zone_link",
        doc: "A private DNS zone's link to a virtual network, tagged with the create token.",
        fields: vec![
            Field::computed("id", "The link's resource id."),
            Field::input("zone_id", "The resource id of the private DNS zone.")
                .required()
                .force_new(),
            Field::input("name", "The link's name (unique in its zone).")
                .required()
                .force_new(),
            Field::input(
                "virtual_network_id",
                "The resource id of the linked virtual network.",
            )
            .required()
            .force_new(),
            Field::input(
                "registration_enabled",
                "Whether the network's VMs register their names in the zone (default false).",
            ),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(30),
        deletion_protection: None,
    }
}

/// `azure_private_dns_zone_link` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(PrivateDnsZoneLink {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct PrivateDnsZoneLink {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

fn path(inputs: &Attributes) -> Result<String, ProviderError> {
    let zone = attrs::s(inputs, "zone_id")?.trim_end_matches('/');
    Ok(format!(
        "{zone}/virtualNetworkLinks/{}",
        attrs::s(inputs, "name")?
    ))
}

/// The link's `PUT` body: `vnet` as it is (an update keeps the link's own).
fn body(inputs: &Attributes, vnet: &str, tags: Json) -> Json {
    json!({
        "location": "global",
        "tags": tags,
        "properties": {
            "virtualNetwork": { "id": vnet },
            "registrationEnabled": attrs::b(inputs, "registration_enabled").unwrap_or(false),
        },
    })
}

impl PrivateDnsZoneLink {
    fn attributes(&self, body: &Json, id: &str, prior: &Attributes) -> Attributes {
        let cloud_id = body["id"].as_str().unwrap_or(id);
        let props = &body["properties"];
        let a = attrs::attrs([
            ("id", id_value(cloud_id, Some(&Value::from(id)))),
            (
                "zone_id",
                id_value(parent_of(cloud_id), prior.get("zone_id")),
            ),
            ("name", id_value(str_at(body, "/name"), prior.get("name"))),
            (
                "virtual_network_id",
                id_value(
                    str_at(props, "/virtualNetwork/id"),
                    prior.get("virtual_network_id"),
                ),
            ),
            (
                "registration_enabled",
                props["registrationEnabled"]
                    .as_bool()
                    .unwrap_or(false)
                    .into(),
            ),
            ("tags", user_tags(body)),
        ]);
        managed_only(a, prior, &self.schema)
    }

    fn wait<'a>(&'a self, id: &'a str, progress: &'a Progress) -> WaitFor<'a> {
        WaitFor {
            client: &self.client,
            id,
            api: API,
            what: WHAT,
            expected: self.schema.expected_create,
            progress,
        }
    }
}

#[async_trait]
impl ResourceType for PrivateDnsZoneLink {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .client
                .get(&req.id, API)
                .await?
                .map(|b| self.attributes(&b, &req.id, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        find_by_token(&self.client, path(&req.inputs)?, API, &req.token).await
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = path(&req.inputs)?;
        let existing = self.client.get(&path, API).await?;
        let ours = |b: &Json| carries_token(b, &req.token);
        if needs_put(existing.as_ref(), ours, WHAT, &req.address, &path)? {
            let vnet = attrs::s(&req.inputs, "virtual_network_id")?;
            let tags = tags_with_token(&req.inputs, &req.token);
            let answer = self
                .client
                .put(&path, API, &body(&req.inputs, vnet, tags))
                .await?;
            self.pending.put(&path, answer.operation);
        }
        Ok(CreateResponse {
            id: path,
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let body = self
            .wait(&req.id, &req.progress)
            .ready(&self.pending, by_provisioning_state)
            .await?;
        Ok(self.attributes(&body, &req.id, &req.inputs))
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let current = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::NotFound, format!("{WHAT} `{}` is gone", req.id))
        })?;
        let vnet = str_at(&current, "/properties/virtualNetwork/id");
        let tags = tags_keeping_token(&req.inputs, &current);
        let answer = self
            .client
            .put(&req.id, API, &body(&req.inputs, vnet, tags))
            .await?;
        let body = self
            .wait(&req.id, &req.progress)
            .updated(answer.operation, by_provisioning_state)
            .await?;
        Ok(UpdateResponse {
            attributes: self.attributes(&body, &req.id, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        match self.client.delete(&req.id, API).await? {
            None => Ok(DeleteResponse { done: true }),
            Some(answer) => {
                self.pending.put(&req.id, answer.operation);
                Ok(DeleteResponse { done: false })
            }
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        self.wait(&req.id, &req.progress).gone(&self.pending).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteinfra_core::requests as r;

    use crate::resources::private_dns_zone::testing::zone;
    use crate::resources::virtual_network::testing::network;
    use crate::testutil::{client, double, unique};

    const T: &str = "azure_private_dns_zone_link";

    /// A link's inputs over a new network and zone.
    async fn inputs(client: &ArmClient) -> Attributes {
        let (rg, vnet) = network(client).await;
        let zone = zone(client, &rg).await;
        attrs::attrs([
            ("zone_id", zone.into()),
            ("name", unique("link").into()),
            ("virtual_network_id", vnet.into()),
        ])
    }

    #[tokio::test]
    async fn lifecycle() {
        let client = client();
        let t = build(&client);
        let mut inputs = inputs(&client).await;
        let token = unique("tok");
        let c = t.create(r::create(T, &inputs, &token)).await.unwrap();
        assert!(matches!(c.completion, Completion::InProgress));
        let ready = t.wait_ready(r::wait(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(ready["virtual_network_id"], inputs["virtual_network_id"]);
        assert_eq!(ready["zone_id"], inputs["zone_id"]);
        let read = t.read(r::refresh(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(read.attributes.as_ref(), Some(&ready));
        let found = t.find(r::find(T, &inputs, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(c.id.as_str()));
        assert_eq!(
            t.find(r::find(T, &inputs, "another")).await.unwrap().id,
            None
        );

        inputs.insert("registration_enabled".into(), true.into());
        let changed = ["registration_enabled"];
        let u = t
            .update(r::update(T, &c.id, &ready, &inputs, &changed))
            .await
            .unwrap();
        assert_eq!(u.attributes["registration_enabled"], Value::Bool(true));
        let link = client.get(&c.id, API).await.unwrap().unwrap();
        assert!(carries_token(&link, &token), "the update keeps the token");

        let d = t.delete(r::delete(T, &c.id, &u.attributes)).await.unwrap();
        assert!(!d.done);
        t.wait_deleted(r::wait(T, &c.id, &inputs)).await.unwrap();
        assert!(
            t.read(r::refresh(T, &c.id, &inputs))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(
            t.delete(r::delete(T, &c.id, &u.attributes))
                .await
                .unwrap()
                .done
        );
    }

    #[tokio::test]
    async fn a_link_made_with_another_token_is_refused() {
        let client = client();
        let t = build(&client);
        let inputs = inputs(&client).await;
        let id = t.create(r::create(T, &inputs, "tok-a")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        let e = t.create(r::create(T, &inputs, "tok-b")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");
        let link = client.get(&id, API).await.unwrap().unwrap();
        assert!(carries_token(&link, "tok-a"), "left as it was");
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let client = client();
        let t = build(&client);
        let mut inputs = inputs(&client).await;
        inputs.insert("registration_enabled".into(), false.into());
        let id = t.create(r::create(T, &inputs, "tok")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        {
            let mut world = double().shared().lock();
            let link = world.resource_mut(&id).expect("stored");
            link["properties"]["registrationEnabled"] = json!(true);
        }
        let read = t
            .read(r::refresh(T, &id, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read["registration_enabled"], Value::Bool(true));
    }
}

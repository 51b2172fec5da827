//! `azure_virtual_network`: a virtual network, owned through its token tag.
//!
//! ARM's `PUT` of a network replaces its whole subnet list, so every update is
//! GET-modify-PUT carrying the current `properties.subnets` unchanged: the subnets are
//! `azure_subnet` resources of their own, which a network update must never delete.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use serde_json::{Value as Json, json};

use super::common::{
    Pending, WaitFor, by_provisioning_state, carries_token, find_by_token, id_value, managed_only,
    needs_put, resource_group_of, str_at, string_list, tags_keeping_token, tags_with_token,
    user_tags,
};
use crate::client::ArmClient;

/// Microsoft.Network's api-version for networks and subnets.
pub(crate) const API: &str = "2024-05-01";

const WHAT: &str = "virtual network";

/// `azure_virtual_network`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_virtual_network",
        doc: "A virtual network, tagged with the create token. Updates keep its subnets \
              (each an `azure_subnet` of its own).",
        fields: vec![
            Field::computed("id", "The network's resource id."),
            Field::input("resource_group", "The resource group holding it.")
                .required()
                .force_new(),
            Field::input("name", "The network's name (unique in its group).")
                .required()
                .force_new(),
            Field::input("location", "The network's location, such as `eastus`.")
                .required()
                .force_new(),
            Field::input(
                "address_space",
                "The network's CIDR ranges (`10.0.0.0/16`).",
            )
            .required(),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(15),
        deletion_protection: None,
    }
}

/// `azure_virtual_network` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(VirtualNetwork {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct VirtualNetwork {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

impl VirtualNetwork {
    fn path(&self, inputs: &Attributes) -> Result<String, ProviderError> {
        Ok(format!(
            "{}/resourceGroups/{}/providers/Microsoft.Network/virtualNetworks/{}",
            self.client.subscription_path(),
            attrs::s(inputs, "resource_group")?,
            attrs::s(inputs, "name")?
        ))
    }

    /// The network as attributes; `id` and the group in the spelling flyteinfra used.
    fn attributes(&self, body: &Json, id: &str, prior: &Attributes) -> Attributes {
        let cloud_id = body["id"].as_str().unwrap_or(id);
        let prefixes = body["properties"]["addressSpace"]["addressPrefixes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_string));
        let a = attrs::attrs([
            ("id", id_value(cloud_id, Some(&Value::from(id)))),
            (
                "resource_group",
                id_value(resource_group_of(cloud_id), prior.get("resource_group")),
            ),
            ("name", id_value(str_at(body, "/name"), prior.get("name"))),
            ("location", str_at(body, "/location").into()),
            ("address_space", string_list(prefixes)),
            ("tags", user_tags(body)),
        ]);
        managed_only(a, prior, &self.schema)
    }

    /// The `PUT` body of the network `inputs` describe, holding `subnets` (the current ones
    /// on an update: a `PUT` without them deletes them).
    fn body(inputs: &Attributes, location: &str, tags: Json, subnets: Json) -> Json {
        json!({
            "location": location,
            "tags": tags,
            "properties": {
                "addressSpace": { "addressPrefixes": attrs::strings(inputs, "address_space") },
                "subnets": subnets,
            },
        })
    }

    fn wait<'a>(&'a self, id: &'a str, progress: &'a flyteinfra_core::Progress) -> WaitFor<'a> {
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
impl ResourceType for VirtualNetwork {
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
        find_by_token(&self.client, self.path(&req.inputs)?, API, &req.token).await
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = self.path(&req.inputs)?;
        let existing = self.client.get(&path, API).await?;
        let ours = |b: &Json| carries_token(b, &req.token);
        if needs_put(existing.as_ref(), ours, WHAT, &req.address, &path)? {
            // An earlier attempt's failed network may hold subnets already: keep them.
            let subnets = existing
                .as_ref()
                .map_or(json!([]), |b| b["properties"]["subnets"].clone());
            let location = attrs::s(&req.inputs, "location")?;
            let tags = tags_with_token(&req.inputs, &req.token);
            let body = Self::body(&req.inputs, location, tags, subnets);
            let answer = self.client.put(&path, API, &body).await?;
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
        let body = Self::body(
            &req.inputs,
            str_at(&current, "/location"),
            tags_keeping_token(&req.inputs, &current),
            current["properties"]["subnets"].clone(),
        );
        let answer = self.client.put(&req.id, API, &body).await?;
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

/// Test support shared by the network types' tests.
#[cfg(test)]
pub(crate) mod testing {
    use flyteinfra_core::requests as r;
    use flyteinfra_core::{Attributes, Completion, Value};
    use serde_json::json;

    use crate::client::ArmClient;
    use crate::testutil::{LOCATION, unique};

    /// A new resource group, by name.
    pub(crate) async fn group(client: &ArmClient) -> String {
        let rg = unique("rg");
        let path = format!("{}/resourcegroups/{rg}", client.subscription_path());
        let body = json!({ "location": LOCATION });
        client.put(&path, "2021-04-01", &body).await.expect("group");
        rg
    }

    /// The inputs of network `name` in `rg` spanning `cidr`.
    pub(crate) fn inputs(rg: &str, name: &str, cidr: &str) -> Attributes {
        flyteinfra_core::attrs::attrs([
            ("resource_group", rg.into()),
            ("name", name.into()),
            ("location", LOCATION.into()),
            ("address_space", Value::List(vec![cidr.into()])),
        ])
    }

    /// A ready network spanning `10.0.0.0/16` in a new group: (group, network id).
    pub(crate) async fn network(client: &ArmClient) -> (String, String) {
        let rg = group(client).await;
        let t = super::build(client);
        let inputs = inputs(&rg, &unique("vnet"), "10.0.0.0/16");
        let c = t
            .create(r::create(T, &inputs, &unique("tok")))
            .await
            .expect("create");
        assert!(matches!(c.completion, Completion::InProgress));
        t.wait_ready(r::wait(T, &c.id, &inputs))
            .await
            .expect("ready");
        (rg, c.id)
    }

    const T: &str = "azure_virtual_network";
}

#[cfg(test)]
mod tests {
    use super::testing::{group, inputs as net};
    use super::*;
    use flyteinfra_core::requests as r;
    use std::collections::BTreeMap;

    use crate::testutil::{client, double, unique};

    const T: &str = "azure_virtual_network";

    fn tags(k: &str, v: &str) -> Value {
        Value::Map(BTreeMap::from([(k.to_string(), Value::from(v))]))
    }

    #[tokio::test]
    async fn lifecycle_keeps_subnets_across_updates() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let mut inputs = net(&rg, &unique("vnet"), "10.0.0.0/16");
        inputs.insert("tags".into(), tags("team", "flyte"));
        let token = unique("tok");
        let c = t.create(r::create(T, &inputs, &token)).await.unwrap();
        assert!(matches!(c.completion, Completion::InProgress));
        let ready = t.wait_ready(r::wait(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(
            ready["address_space"],
            Value::List(vec!["10.0.0.0/16".into()])
        );
        assert_eq!(ready["tags"], tags("team", "flyte"));
        let read = t.read(r::refresh(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(read.attributes.as_ref(), Some(&ready));
        let found = t.find(r::find(T, &inputs, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(c.id.as_str()));
        let other = t.find(r::find(T, &inputs, "another")).await.unwrap();
        assert_eq!(other.id, None);

        // A subnet of its own, which the network's update must keep.
        let subnet = format!("{}/subnets/keep", c.id);
        let sbody = json!({ "properties": { "addressPrefix": "10.0.1.0/24" } });
        let a = client.put(&subnet, API, &sbody).await.unwrap();
        if let Some(op) = a.operation {
            let p = flyteinfra_core::Progress::none(flyteinfra_core::Address::new(T, "s"));
            client.follow(&op, "subnet", &p).await.unwrap();
        }
        let mut wanted = inputs.clone();
        wanted.insert("tags".into(), tags("team", "data"));
        wanted.insert(
            "address_space".into(),
            Value::List(vec!["10.0.0.0/16".into(), "10.1.0.0/16".into()]),
        );
        let changed = ["tags", "address_space"];
        let u = t
            .update(r::update(T, &c.id, &ready, &wanted, &changed))
            .await
            .unwrap();
        assert_eq!(u.attributes["tags"], tags("team", "data"));
        assert_eq!(u.attributes["address_space"], wanted["address_space"]);
        assert!(
            client.get(&subnet, API).await.unwrap().is_some(),
            "the subnet survives"
        );
        // The token survives the update, so a later create still adopts.
        let net = client.get(&c.id, API).await.unwrap().unwrap();
        assert!(carries_token(&net, &token));

        client.delete(&subnet, API).await.unwrap();
        let subnet_gone = WaitFor {
            client: &client,
            id: &subnet,
            api: API,
            what: "subnet",
            expected: Duration::from_secs(1),
            progress: &flyteinfra_core::Progress::none(flyteinfra_core::Address::new(T, "s")),
        };
        subnet_gone.gone(&Pending::default()).await.unwrap();
        let d = t.delete(r::delete(T, &c.id, &u.attributes)).await.unwrap();
        assert!(!d.done);
        t.wait_deleted(r::wait(T, &c.id, &wanted)).await.unwrap();
        assert!(
            t.read(r::refresh(T, &c.id, &wanted))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        // Deleting what is gone is success.
        let again = t.delete(r::delete(T, &c.id, &u.attributes)).await.unwrap();
        assert!(again.done);
    }

    #[tokio::test]
    async fn a_second_create_with_the_token_adopts_and_a_foreign_network_is_refused() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let inputs = net(&rg, &unique("vnet"), "10.0.0.0/16");
        let c = t.create(r::create(T, &inputs, "tok-a")).await.unwrap();
        let again = t.create(r::create(T, &inputs, "tok-a")).await.unwrap();
        assert_eq!(again.id, c.id);
        t.wait_ready(r::wait(T, &c.id, &inputs)).await.unwrap();
        let e = t.create(r::create(T, &inputs, "tok-b")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");

        // One planted without any token is refused too, and left as it was.
        let name = unique("vnet");
        let planted = net(&rg, &name, "10.2.0.0/16");
        let id = format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.Network/virtualNetworks/{name}",
            client.subscription_path()
        );
        let body = json!({
            "id": id, "name": planted["name"].as_str(), "location": "eastus",
            "type": "Microsoft.Network/virtualNetworks", "tags": {},
            "properties": { "provisioningState": "Succeeded",
                "addressSpace": { "addressPrefixes": ["10.2.0.0/16"] }, "subnets": [] },
        });
        double().shared().lock().put_raw(&id, body);
        let e = t.create(r::create(T, &planted, "x")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");
        assert!(client.get(&id, API).await.unwrap().unwrap()["tags"] == json!({}));
    }

    #[tokio::test]
    async fn drift_in_the_address_space_shows_on_read() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let inputs = net(&rg, &unique("vnet"), "10.0.0.0/16");
        let id = t.create(r::create(T, &inputs, "tok")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        {
            let mut world = double().shared().lock();
            let net = world.resource_mut(&id).expect("stored");
            net["properties"]["addressSpace"]["addressPrefixes"] = json!(["10.9.0.0/16"]);
        }
        let read = t
            .read(r::refresh(T, &id, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(
            read["address_space"],
            Value::List(vec!["10.9.0.0/16".into()])
        );
        // An id in another casing is the same network, not drift.
        let upper = id.replace("resourceGroups", "RESOURCEGROUPS");
        let read = t
            .read(r::refresh(T, &upper, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read["id"], Value::from(upper.as_str()));
    }
}

//! `azure_private_dns_zone`: a private DNS zone (always in location `global`), owned
//! through its token tag.

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
    needs_put, resource_group_of, str_at, tags_keeping_token, tags_with_token, user_tags,
};
use crate::client::ArmClient;

/// Private DNS's api-version (zones and their links).
pub(crate) const API: &str = "2024-06-01";

const WHAT: &str = "private DNS zone";

/// `azure_private_dns_zone`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_private_dns_zone",
        doc: "A private DNS zone (location `global`), tagged with the create token.",
        fields: vec![
            Field::computed("id", "The zone's resource id."),
            Field::input("resource_group", "The resource group holding it.")
                .required()
                .force_new(),
            Field::input(
                "name",
                "The zone's DNS name (`x.postgres.database.azure.com`).",
            )
            .required()
            .force_new(),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(30),
        deletion_protection: None,
    }
}

/// `azure_private_dns_zone` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(PrivateDnsZone {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct PrivateDnsZone {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

impl PrivateDnsZone {
    fn path(&self, inputs: &Attributes) -> Result<String, ProviderError> {
        Ok(format!(
            "{}/resourceGroups/{}/providers/Microsoft.Network/privateDnsZones/{}",
            self.client.subscription_path(),
            attrs::s(inputs, "resource_group")?,
            attrs::s(inputs, "name")?
        ))
    }

    fn attributes(&self, body: &Json, id: &str, prior: &Attributes) -> Attributes {
        let cloud_id = body["id"].as_str().unwrap_or(id);
        let a = attrs::attrs([
            ("id", id_value(cloud_id, Some(&Value::from(id)))),
            (
                "resource_group",
                id_value(resource_group_of(cloud_id), prior.get("resource_group")),
            ),
            ("name", id_value(str_at(body, "/name"), prior.get("name"))),
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
impl ResourceType for PrivateDnsZone {
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
            let tags = tags_with_token(&req.inputs, &req.token);
            let body = json!({ "location": "global", "tags": tags });
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
        // Only the tags change; a zone's records and links are resources of their own.
        let current = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::NotFound, format!("{WHAT} `{}` is gone", req.id))
        })?;
        let tags = tags_keeping_token(&req.inputs, &current);
        let body = json!({ "location": "global", "tags": tags });
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

/// Test support shared with the links' tests.
#[cfg(test)]
pub(crate) mod testing {
    use flyteinfra_core::requests as r;
    use flyteinfra_core::{Attributes, attrs};

    use crate::client::ArmClient;
    use crate::testutil::unique;

    /// The inputs of a zone in `rg` with a unique name.
    pub(crate) fn inputs(rg: &str) -> Attributes {
        let name = format!("{}.postgres.database.azure.com", unique("z"));
        attrs::attrs([("resource_group", rg.into()), ("name", name.into())])
    }

    /// A ready zone in `rg`, by id.
    pub(crate) async fn zone(client: &ArmClient, rg: &str) -> String {
        let t = super::build(client);
        let inputs = inputs(rg);
        let id = t
            .create(r::create(T, &inputs, &unique("tok")))
            .await
            .unwrap()
            .id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        id
    }

    const T: &str = "azure_private_dns_zone";
}

#[cfg(test)]
mod tests {
    use super::testing::inputs;
    use super::*;
    use flyteinfra_core::requests as r;
    use std::collections::BTreeMap;

    use crate::resources::virtual_network::testing::group;
    use crate::testutil::{client, double, unique};

    const T: &str = "azure_private_dns_zone";

    fn tags(k: &str, v: &str) -> Value {
        Value::Map(BTreeMap::from([(k.to_string(), Value::from(v))]))
    }

    #[tokio::test]
    async fn lifecycle() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let mut inputs = inputs(&rg);
        inputs.insert("tags".into(), tags("team", "flyte"));
        let token = unique("tok");
        let c = t.create(r::create(T, &inputs, &token)).await.unwrap();
        assert!(matches!(c.completion, Completion::InProgress));
        let ready = t.wait_ready(r::wait(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(ready["name"], inputs["name"]);
        assert_eq!(ready["tags"], tags("team", "flyte"));
        let read = t.read(r::refresh(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(read.attributes.as_ref(), Some(&ready));
        let found = t.find(r::find(T, &inputs, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(c.id.as_str()));
        assert_eq!(
            t.find(r::find(T, &inputs, "another")).await.unwrap().id,
            None
        );

        inputs.insert("tags".into(), tags("team", "data"));
        let u = t
            .update(r::update(T, &c.id, &ready, &inputs, &["tags"]))
            .await
            .unwrap();
        assert_eq!(u.attributes["tags"], tags("team", "data"));
        let zone = client.get(&c.id, API).await.unwrap().unwrap();
        assert!(carries_token(&zone, &token), "the update keeps the token");

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
    async fn a_foreign_zone_is_refused() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let inputs = inputs(&rg);
        let id = format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.Network/privateDnsZones/{}",
            client.subscription_path(),
            inputs["name"].as_str().unwrap()
        );
        let body = json!({
            "id": id, "name": inputs["name"].as_str(), "location": "global",
            "type": "Microsoft.Network/privateDnsZones", "tags": { "owner": "someone" },
            "properties": { "provisioningState": "Succeeded" },
        });
        double().shared().lock().put_raw(&id, body);
        let e = t.create(r::create(T, &inputs, "tok")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");
        let zone = client.get(&id, API).await.unwrap().unwrap();
        assert_eq!(
            zone["tags"],
            json!({ "owner": "someone" }),
            "left as it was"
        );
    }

    #[tokio::test]
    async fn drift_in_the_tags_shows_on_read() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let mut inputs = inputs(&rg);
        inputs.insert("tags".into(), tags("team", "flyte"));
        let id = t.create(r::create(T, &inputs, "tok")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        {
            let mut world = double().shared().lock();
            let zone = world.resource_mut(&id).expect("stored");
            zone["tags"]["team"] = json!("ops");
        }
        let read = t
            .read(r::refresh(T, &id, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read["tags"], tags("team", "ops"));
    }
}

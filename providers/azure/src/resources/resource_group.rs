//! `azure_resource_group`: the group holding every resource of a deployment.
//!
//! Made by flyteinfra, it carries the create token in its tags and is deleted on destroy
//! only when nothing flyteinfra did not make is left in it (deleting a group deletes all it
//! holds). A group the user already has is read as `existing:` and never deleted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, WaitRequest,
};
use serde_json::{Value as Json, json};

use super::common::{
    Pending, WaitFor, carries_any_token, carries_token, managed_only, not_ours, tags_keeping_token,
    tags_with_token, user_tags,
};
use crate::client::ArmClient;

/// Resource Manager's api-version for groups and their resource lists.
pub(crate) const API: &str = "2021-04-01";

/// `azure_resource_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_resource_group",
        doc: "A resource group. flyteinfra's own is tagged with the create token and deleted \
              only when nothing else is left in it; a group the user has is read, never changed.",
        fields: vec![
            Field::computed("id", "The group's resource id."),
            Field::input("name", "The group's name (unique in the subscription).")
                .required()
                .force_new(),
            Field::input("location", "The group's location, such as `eastus`.")
                .required()
                .force_new(),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `azure_resource_group` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(ResourceGroup {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct ResourceGroup {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

/// How long a group's delete usually takes (it deletes what it holds).
const DELETE_EXPECTED: Duration = Duration::from_secs(60);

impl ResourceGroup {
    fn path(&self, name: &str) -> String {
        format!("{}/resourcegroups/{name}", self.client.subscription_path())
    }

    fn attributes(body: &Json) -> Attributes {
        attrs::attrs([
            ("id", body["id"].as_str().unwrap_or_default().into()),
            ("name", body["name"].as_str().unwrap_or_default().into()),
            (
                "location",
                body["location"].as_str().unwrap_or_default().into(),
            ),
            ("tags", user_tags(body)),
        ])
    }

    /// What the group holds that carries no flyteinfra token: what a delete would destroy
    /// that flyteinfra did not make.
    async fn foreign_contents(&self, id: &str) -> Result<Vec<String>, ProviderError> {
        let list = self.client.list(&format!("{id}/resources"), API).await?;
        Ok(list
            .iter()
            .filter(|r| !carries_any_token(r))
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect())
    }
}

#[async_trait]
impl ResourceType for ResourceGroup {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .client
                .get(&req.id, API)
                .await?
                .map(|b| managed_only(Self::attributes(&b), &req.prior_inputs, &self.schema)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let found = self.client.get(&self.path(name), API).await?;
        Ok(FindResponse {
            id: found
                .filter(|b| carries_token(b, &req.token))
                .and_then(|b| b["id"].as_str().map(str::to_string)),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let path = self.path(name);
        if let Some(existing) = self.client.get(&path, API).await?
            && !carries_token(&existing, &req.token)
        {
            return Err(not_ours("resource group", &req.address, &path));
        }
        let body = json!({
            "location": attrs::s(&req.inputs, "location")?,
            "tags": tags_with_token(&req.inputs, &req.token),
        });
        // Synchronous: the group exists when the answer comes.
        let answer = self.client.put(&path, API, &body).await?;
        Ok(CreateResponse {
            id: answer.body["id"].as_str().unwrap_or(&path).to_string(),
            completion: Completion::Ready(managed_only(
                Self::attributes(&answer.body),
                &req.inputs,
                &self.schema,
            )),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let current = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("resource group `{}` is gone", req.id),
            )
        })?;
        let body = json!({ "tags": tags_keeping_token(&req.inputs, &current) });
        let answer = self.client.patch(&req.id, API, &body).await?;
        Ok(UpdateResponse {
            attributes: managed_only(Self::attributes(&answer.body), &req.inputs, &self.schema),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        if self.client.get(&req.id, API).await?.is_none() {
            return Ok(DeleteResponse { done: true });
        }
        let foreign = self.foreign_contents(&req.id).await?;
        if !foreign.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "resource group `{}` still holds {} resource(s) flyteinfra did not make, \
                     which deleting the group would delete too: {}. Move or delete them first, \
                     or keep the group with `flyteinfra state rm {}`",
                    req.id,
                    foreign.len(),
                    foreign.join(", "),
                    req.address
                ),
            ));
        }
        match self.client.delete(&req.id, API).await? {
            None => Ok(DeleteResponse { done: true }),
            Some(answer) => {
                self.pending.put(&req.id, answer.operation);
                Ok(DeleteResponse { done: false })
            }
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        WaitFor {
            client: &self.client,
            id: &req.id,
            api: API,
            what: "resource group",
            expected: DELETE_EXPECTED,
            progress: &req.progress,
        }
        .gone(&self.pending)
        .await
    }
}

/// The id of the group `name` when it exists and no flyteinfra deployment made it (it
/// carries no token): the deployment then uses it as given and never deletes it. `None`
/// when it is missing or flyteinfra's (the create adopts it only with its own token).
pub async fn foreign_group(
    client: &ArmClient,
    name: &str,
) -> Result<Option<String>, ProviderError> {
    let path = format!("{}/resourcegroups/{name}", client.subscription_path());
    Ok(client
        .get(&path, API)
        .await?
        .filter(|b| !carries_any_token(b))
        .map(|b| b["id"].as_str().unwrap_or(&path).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteinfra_core::Value;
    use flyteinfra_core::requests as r;
    use std::collections::BTreeMap;

    use crate::resources::common::{TOKEN_TAG, same_id};
    use crate::testutil::{LOCATION, client, double, unique};

    const T: &str = "azure_resource_group";

    fn tags(k: &str, v: &str) -> Value {
        Value::Map(BTreeMap::from([(k.to_string(), Value::from(v))]))
    }

    fn inputs(name: &str) -> Attributes {
        attrs::attrs([("name", name.into()), ("location", LOCATION.into())])
    }

    fn group_id(name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{name}",
            crate::testutil::SUBSCRIPTION
        )
    }

    /// The calls `client` sent with `method` to resource groups (ids and paths spell the
    /// type in either casing).
    fn calls(client: &ArmClient, method: &str) -> u64 {
        client
            .calls_by_operation()
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(&format!("{method} resourcegroups")))
            .map(|(_, n)| n)
            .sum()
    }

    /// Plants group `name` as someone else made it: no token.
    fn plant_group(name: &str) -> String {
        let id = group_id(name);
        let body = json!({
            "id": id, "name": name, "type": "Microsoft.Resources/resourceGroups",
            "location": LOCATION, "tags": { "owner": "someone" },
            "properties": { "provisioningState": "Succeeded" },
        });
        double().shared().lock().put_raw(&id, body);
        id
    }

    /// Plants a network security group in group `rg_id` carrying `tags`.
    fn plant_nsg(rg_id: &str, tags: Json) -> String {
        let name = unique("nsg");
        let id = format!("{rg_id}/providers/Microsoft.Network/networkSecurityGroups/{name}");
        let body = json!({
            "id": id, "name": name, "type": "Microsoft.Network/networkSecurityGroups",
            "location": LOCATION, "tags": tags,
            "properties": { "provisioningState": "Succeeded", "securityRules": [] },
        });
        double().shared().lock().put_raw(&id, body);
        id
    }

    /// A group made by create with `token`: (id, inputs, attributes).
    async fn created(t: &Arc<dyn ResourceType>, token: &str) -> (String, Attributes, Attributes) {
        let inputs = inputs(&unique("rg"));
        let c = t.create(r::create(T, &inputs, token)).await.unwrap();
        let Completion::Ready(a) = c.completion else {
            panic!("a group is ready when its create answers");
        };
        (c.id, inputs, a)
    }

    #[tokio::test]
    async fn lifecycle() {
        let client = client();
        let t = build(&client);
        let name = unique("rg");
        let mut inputs = inputs(&name);
        inputs.insert("tags".into(), tags("team", "flyte"));
        let token = unique("tok");
        let c = t.create(r::create(T, &inputs, &token)).await.unwrap();
        assert!(same_id(&c.id, &group_id(&name)), "{}", c.id);
        let Completion::Ready(ready) = c.completion else {
            panic!("a group is ready when its create answers");
        };
        assert_eq!(ready["name"], Value::from(name.as_str()));
        assert_eq!(ready["location"], Value::from(LOCATION));
        assert_eq!(ready["id"], Value::from(c.id.as_str()));
        assert_eq!(
            ready["tags"],
            tags("team", "flyte"),
            "the token tag is hidden"
        );

        let read = t.read(r::refresh(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(read.attributes.as_ref(), Some(&ready));
        let found = t.find(r::find(T, &inputs, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(c.id.as_str()));
        assert_eq!(
            t.find(r::find(T, &inputs, "another")).await.unwrap().id,
            None
        );

        let puts = calls(&client, "PUT");
        inputs.insert("tags".into(), tags("team", "data"));
        let u = t
            .update(r::update(T, &c.id, &ready, &inputs, &["tags"]))
            .await
            .unwrap();
        assert_eq!(calls(&client, "PATCH"), 1, "tags change by PATCH");
        assert_eq!(calls(&client, "PUT"), puts, "not by PUT");
        assert_eq!(u.attributes["tags"], tags("team", "data"));
        let read = t.read(r::refresh(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(read.attributes.unwrap()["tags"], tags("team", "data"));
        let stored = double().shared().lock().resource(&c.id).unwrap();
        assert_eq!(
            stored["tags"],
            json!({ "team": "data", TOKEN_TAG: token }),
            "the update keeps the token"
        );

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
        assert!(double().shared().lock().resource(&c.id).is_none());
        assert!(
            t.delete(r::delete(T, &c.id, &u.attributes))
                .await
                .unwrap()
                .done
        );
    }

    #[tokio::test]
    async fn a_foreign_group_is_refused() {
        let client = client();
        let t = build(&client);
        let name = unique("rg");
        let id = plant_group(&name);
        let e = t
            .create(r::create(T, &inputs(&name), "tok"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");
        let group = double().shared().lock().resource(&id).unwrap();
        assert_eq!(
            group["tags"],
            json!({ "owner": "someone" }),
            "left as it was"
        );
    }

    #[tokio::test]
    async fn delete_refuses_a_group_holding_what_flyteinfra_did_not_make() {
        let client = client();
        let t = build(&client);
        let (id, inputs, a) = created(&t, &unique("tok")).await;
        let foreign = plant_nsg(&id, json!({ "owner": "someone" }));
        let e = t.delete(r::delete(T, &id, &a)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.message.contains(&foreign), "{e}");
        assert!(e.message.contains("flyteinfra state rm"), "{e}");
        {
            let world = double().shared().lock();
            assert!(world.resource(&id).is_some(), "the group is kept");
            assert!(world.resource(&foreign).is_some(), "and what it holds");
        }

        // What remains of flyteinfra's own (any deployment's token) does not stop it.
        double().shared().lock().remove_raw(&foreign);
        let ours = plant_nsg(&id, json!({ TOKEN_TAG: "some-deployment" }));
        let d = t.delete(r::delete(T, &id, &a)).await.unwrap();
        assert!(!d.done);
        t.wait_deleted(r::wait(T, &id, &inputs)).await.unwrap();
        let world = double().shared().lock();
        assert!(world.resource(&id).is_none());
        assert!(world.resource(&ours).is_none(), "deleted with its group");
    }

    #[tokio::test]
    async fn a_foreign_resource_on_a_later_page_still_stops_the_delete() {
        // ARM pages long lists; a check that read only the first page would delete this.
        let d = flyteinfra_azure_double::AzureDouble::start();
        d.shared().lock().knobs.page_size = 2;
        let client = crate::testutil::client_of(&d);
        let t = build(&client);
        let inputs = inputs(&unique("rg"));
        let id = t.create(r::create(T, &inputs, "tok")).await.unwrap().id;
        let nsg = |name: &str, tags: Json| {
            let nsg_id = format!("{id}/providers/Microsoft.Network/networkSecurityGroups/{name}");
            let body = json!({
                "id": nsg_id, "name": name, "type": "Microsoft.Network/networkSecurityGroups",
                "location": LOCATION, "tags": tags,
                "properties": { "provisioningState": "Succeeded", "securityRules": [] },
            });
            d.shared().lock().put_raw(&nsg_id, body);
            nsg_id
        };
        for n in ["a1", "a2", "a3"] {
            nsg(n, json!({ TOKEN_TAG: "some-deployment" }));
        }
        let foreign = nsg("z9", json!({}));
        let e = t
            .delete(r::delete(T, &id, &Attributes::new()))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
        assert!(e.message.contains(&foreign), "{e}");
        assert!(d.shared().lock().resource(&id).is_some());
    }

    #[tokio::test]
    async fn foreign_group_names_only_groups_no_deployment_made() {
        let client = client();
        let name = unique("rg");
        let id = plant_group(&name);
        let found = foreign_group(&client, &name).await.unwrap();
        assert!(found.is_some_and(|f| same_id(&f, &id)));
        assert_eq!(foreign_group(&client, &unique("rg")).await.unwrap(), None);
        let t = build(&client);
        let (_, inputs, _) = created(&t, &unique("tok")).await;
        let ours = inputs["name"].as_str().unwrap();
        assert_eq!(foreign_group(&client, ours).await.unwrap(), None);
    }

    #[tokio::test]
    async fn drift_in_the_tags_shows_on_read() {
        let client = client();
        let t = build(&client);
        let mut inputs = inputs(&unique("rg"));
        inputs.insert("tags".into(), tags("team", "flyte"));
        let id = t.create(r::create(T, &inputs, "tok")).await.unwrap().id;
        {
            let mut world = double().shared().lock();
            let group = world.resource_mut(&id).expect("stored");
            group["tags"]["team"] = json!("ops");
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

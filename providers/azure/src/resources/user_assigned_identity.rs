//! `azure_user_assigned_identity`: a user-assigned managed identity, owned through its
//! token tag. Synchronous: the `PUT` answers with the identity and its principal.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use serde_json::{Value as Json, json};

use super::common::{
    carries_token, find_by_token, id_value, managed_only, name_of, not_ours, resource_group_of,
    str_at, tags_keeping_token, tags_with_token, user_tags,
};
use crate::client::ArmClient;

/// Microsoft.ManagedIdentity's api-version for identities and federated credentials.
pub(crate) const API: &str = "2023-01-31";

const WHAT: &str = "managed identity";

/// `azure_user_assigned_identity`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_user_assigned_identity",
        doc: "A user-assigned managed identity, tagged with the create token.",
        fields: vec![
            Field::computed("id", "The identity's resource id."),
            Field::computed(
                "principal_id",
                "The object id of its service principal (what role assignments name).",
            ),
            Field::computed(
                "client_id",
                "Its application (client) id (what workloads name).",
            ),
            Field::computed("tenant_id", "The Entra ID tenant it lives in."),
            Field::input("resource_group", "The resource group holding it.")
                .required()
                .force_new(),
            Field::input("name", "The identity's name (unique in its group).")
                .required()
                .force_new(),
            Field::input("location", "The identity's location, such as `eastus`.")
                .required()
                .force_new(),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(5),
        deletion_protection: None,
    }
}

/// `azure_user_assigned_identity` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(UserAssignedIdentity {
        client: client.clone(),
        schema: schema(),
    })
}

struct UserAssignedIdentity {
    client: ArmClient,
    schema: Schema,
}

/// The identity's attributes (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let location = str_at(body, "/location");
    let location = match attrs::opt_s(prior, "location") {
        Some(l) if l.eq_ignore_ascii_case(location) => l,
        _ => location,
    };
    attrs::attrs([
        ("id", id_value(cloud_id, Some(&Value::from(id)))),
        (
            "principal_id",
            Value::from(str_at(body, "/properties/principalId")),
        ),
        (
            "client_id",
            Value::from(str_at(body, "/properties/clientId")),
        ),
        (
            "tenant_id",
            Value::from(str_at(body, "/properties/tenantId")),
        ),
        (
            "resource_group",
            id_value(resource_group_of(cloud_id), prior.get("resource_group")),
        ),
        ("name", id_value(name_of(cloud_id), prior.get("name"))),
        ("location", Value::from(location)),
        ("tags", user_tags(body)),
    ])
}

impl UserAssignedIdentity {
    fn path(&self, inputs: &Attributes) -> Result<String, ProviderError> {
        Ok(format!(
            "{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.client.subscription_path(),
            name_of(attrs::s(inputs, "resource_group")?),
            attrs::s(inputs, "name")?
        ))
    }

    /// The body a `PUT` answered, or (should it answer none) the identity as read.
    async fn answered(&self, id: &str, answer: Json) -> Result<Json, ProviderError> {
        if answer.is_object() {
            return Ok(answer);
        }
        self.client.get(id, API).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("{WHAT} `{id}` disappeared after its PUT"),
            )
        })
    }

    fn managed(&self, id: &str, body: &Json, inputs: &Attributes) -> Attributes {
        managed_only(attributes(id, body, inputs), inputs, &self.schema)
    }
}

#[async_trait]
impl ResourceType for UserAssignedIdentity {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .client
                .get(&req.id, API)
                .await?
                .map(|b| self.managed(&req.id, &b, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        find_by_token(&self.client, self.path(&req.inputs)?, API, &req.token).await
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = self.path(&req.inputs)?;
        // PUT replaces: read first; an earlier attempt's identity is taken as it is.
        let body = match self.client.get(&path, API).await? {
            Some(b) if carries_token(&b, &req.token) => b,
            Some(_) => return Err(not_ours(WHAT, &req.address, &path)),
            None => {
                let body = json!({
                    "location": attrs::s(&req.inputs, "location")?,
                    "tags": tags_with_token(&req.inputs, &req.token),
                });
                let answer = self.client.put(&path, API, &body).await?.body;
                self.answered(&path, answer).await?
            }
        };
        Ok(CreateResponse {
            completion: Completion::Ready(self.managed(&path, &body, &req.inputs)),
            id: path,
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        // Only the tags change in place; the rest is force_new.
        let current = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("{WHAT} `{}` no longer exists", req.id),
            )
        })?;
        let body = json!({
            "location": str_at(&current, "/location"),
            "tags": tags_keeping_token(&req.inputs, &current),
        });
        let answer = self.client.put(&req.id, API, &body).await?.body;
        let body = self.answered(&req.id, answer).await?;
        Ok(UpdateResponse {
            attributes: self.managed(&req.id, &body, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.client.delete(&req.id, API).await?;
        Ok(DeleteResponse { done: true })
    }
}

/// Test support shared by the identity, credential and role assignment tests.
#[cfg(test)]
pub(crate) mod testing {
    use flyteinfra_core::requests;
    use flyteinfra_core::{Attributes, Completion, Value, attrs};
    use serde_json::json;

    use crate::client::ArmClient;
    use crate::testutil::{self, LOCATION};

    /// A new resource group, by name.
    pub(crate) async fn group(c: &ArmClient) -> String {
        let rg = testutil::unique("rg-id");
        let path = format!("{}/resourcegroups/{rg}", c.subscription_path());
        c.put(&path, "2021-04-01", &json!({ "location": LOCATION }))
            .await
            .expect("group");
        rg
    }

    /// The inputs of identity `name` in `rg`.
    pub(crate) fn inputs(rg: &str, name: &str) -> Attributes {
        attrs::attrs([
            ("resource_group", rg.into()),
            ("name", name.into()),
            ("location", LOCATION.into()),
            (
                "tags",
                Value::Map([("team".to_string(), "ml".into())].into()),
            ),
        ])
    }

    /// An identity made through the type in a new group: `(group, attributes)`.
    pub(crate) async fn identity(c: &ArmClient) -> (String, Attributes) {
        let rg = group(c).await;
        let ins = inputs(&rg, &testutil::unique("id"));
        let rt = super::build(c);
        let created = rt
            .create(requests::create(
                "azure_user_assigned_identity",
                &ins,
                &testutil::unique("fi-tok"),
            ))
            .await
            .expect("identity");
        match created.completion {
            Completion::Ready(a) => (rg, a),
            Completion::InProgress => panic!("identities are synchronous"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{group, inputs};
    use super::*;
    use crate::testutil::{self, LOCATION};
    use flyteinfra_core::requests;

    const T: &str = "azure_user_assigned_identity";

    fn tags(v: &str) -> Value {
        Value::Map([("team".to_string(), v.into())].into())
    }

    fn ready(c: CreateResponse) -> Attributes {
        match c.completion {
            Completion::Ready(a) => a,
            Completion::InProgress => panic!("identities are synchronous"),
        }
    }

    async fn refresh(rt: &Arc<dyn ResourceType>, id: &str, ins: &Attributes) -> Option<Attributes> {
        rt.read(requests::refresh(T, id, ins))
            .await
            .unwrap()
            .attributes
    }

    #[tokio::test]
    async fn identity_lifecycle() {
        let c = testutil::client();
        let rg = group(&c).await;
        let rt = build(&c);
        let name = testutil::unique("id");
        let ins = inputs(&rg, &name);
        let token = testutil::unique("fi-tok");
        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        let id = created.id.clone();
        assert!(
            id.ends_with(&format!("/userAssignedIdentities/{name}")),
            "{id}"
        );
        let a = ready(created);
        // `wait_ready` is the default read.
        assert_eq!(
            rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap(),
            a
        );
        assert_eq!(refresh(&rt, &id, &ins).await.as_ref(), Some(&a));
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        for k in ["principal_id", "client_id", "tenant_id"] {
            assert_eq!(a[k].as_str().map(str::len), Some(36), "{k}: {a:?}");
        }
        assert_ne!(a["principal_id"], a["client_id"]);

        // Found by its token, only by it; a retried create adopts it without a PUT.
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other = rt.find(requests::find(T, &ins, "fi-other")).await.unwrap();
        assert_eq!(other.id, None);
        let puts = c
            .calls_by_operation()
            .get("PUT userassignedidentities")
            .copied();
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(ready(again), a);
        assert_eq!(
            c.calls_by_operation()
                .get("PUT userassignedidentities")
                .copied(),
            puts
        );

        // Tags change in place; the principal and the token stay.
        let mut new = ins.clone();
        new.insert("tags".into(), tags("data"));
        let up = rt
            .update(requests::update(T, &id, &a, &new, &["tags"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["tags"], tags("data"));
        assert_eq!(up["principal_id"], a["principal_id"]);
        assert_eq!(refresh(&rt, &id, &new).await.as_ref(), Some(&up));
        let found = rt.find(requests::find(T, &new, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));

        assert!(rt.delete(requests::delete(T, &id, &up)).await.unwrap().done);
        assert_eq!(refresh(&rt, &id, &new).await, None);
        assert!(rt.delete(requests::delete(T, &id, &up)).await.unwrap().done);
        let none = rt.find(requests::find(T, &new, &token)).await.unwrap();
        assert_eq!(none.id, None);
    }

    #[tokio::test]
    async fn foreign_identity_is_refused() {
        let c = testutil::client();
        let rg = group(&c).await;
        let name = testutil::unique("id");
        let ins = inputs(&rg, &name);
        let path = format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/\
             {name}",
            c.subscription_path()
        );
        let theirs = json!({"location": LOCATION, "tags": {"owner": "someone"}});
        c.put(&path, API, &theirs).await.unwrap();
        let before = c.get(&path, API).await.unwrap().unwrap();
        let rt = build(&c);
        let e = rt
            .create(requests::create(T, &ins, "fi-mine"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(e.message.contains("flyteinfra import"), "{e}");
        assert_eq!(c.get(&path, API).await.unwrap().unwrap(), before);
        assert_eq!(
            rt.find(requests::find(T, &ins, "fi-mine"))
                .await
                .unwrap()
                .id,
            None
        );
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let (c, d) = (testutil::client(), testutil::double());
        let (rg, a) = testing::identity(&c).await;
        let id = a["id"].as_str().unwrap().to_string();
        let ins = inputs(&rg, a["name"].as_str().unwrap());
        d.shared().lock().resource_mut(&id).unwrap()["tags"]["team"] = json!("changed");
        let rt = build(&c);
        let now = refresh(&rt, &id, &ins).await.unwrap();
        assert_eq!(now["tags"], tags("changed"));
        assert_eq!(now["principal_id"], a["principal_id"]);
        // An id in another casing is the same identity, not drift.
        let upper = id.replace("resourceGroups", "RESOURCEGROUPS");
        let read = refresh(&rt, &upper, &ins).await.unwrap();
        assert_eq!(read["id"], Value::from(upper.as_str()));
        assert_eq!(read["resource_group"], Value::from(rg.as_str()));
    }
}

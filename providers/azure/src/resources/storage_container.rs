//! `azure_storage_container`: a private blob container of a storage account.
//!
//! Containers have no tags; the create token lives in the container's metadata under
//! `flyteinfra_token` (metadata keys must be C# identifiers), hidden from reads and kept by
//! updates. A create that meets a container of its name takes it only when it carries the
//! token; any other is refused with the import hint, never `PUT` over.
//!
//! What a container holds is invisible to Resource Manager, so [`holds_contents`] and the
//! delete ask the blob data plane ([`crate::blob::BlobPlane`], from
//! [`ArmClient::blob_plane`]): without `force` a container holding any blob, version,
//! snapshot or soft-deleted blob is refused (`storage.force_destroy`), nothing deleted;
//! with it the container is emptied first. A client without data-plane access refuses
//! both, as it cannot tell.
//!
//! [`holds_contents`]: ResourceType::holds_contents

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, ContentsRequest, CreateRequest, CreateResponse, DeleteRequest,
    DeleteResponse, ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use serde_json::{Map, Value as Json, json};

use super::common::{id_value, managed_only, name_of, not_ours, str_at};
use super::storage_account::API;
use crate::blob::BlobPlane;
use crate::client::ArmClient;

/// The metadata key holding the create token.
pub(crate) const TOKEN_KEY: &str = "flyteinfra_token";

const WHAT: &str = "storage container";

/// `azure_storage_container`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_storage_container",
        doc: "A private blob container (no public access) of a storage account. The create \
              token is kept in its `flyteinfra_token` metadata; what it holds is checked (and, \
              with `force_destroy`, deleted) through the blob data plane.",
        fields: vec![
            Field::computed("id", "The container's resource id."),
            Field::input("account_id", "The storage account's resource id.")
                .required()
                .force_new(),
            Field::input(
                "name",
                "The container name (3–63 lowercase letters, digits and single hyphens).",
            )
            .required()
            .force_new(),
            Field::input(
                "metadata",
                "Metadata (string map; keys are C# identifiers; `flyteinfra_token` is hidden).",
            ),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `azure_storage_container` over Resource Manager and the blob data plane.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(StorageContainer {
        client: client.clone(),
        schema: schema(),
    })
}

struct StorageContainer {
    client: ArmClient,
    schema: Schema,
}

fn path(inputs: &Attributes) -> Result<String, ProviderError> {
    let account = attrs::s(inputs, "account_id")?.trim_end_matches('/');
    Ok(format!(
        "{account}/blobServices/default/containers/{}",
        attrs::s(inputs, "name")?
    ))
}

/// The account id of a container id.
fn account_of(id: &str) -> &str {
    let lower = id.to_ascii_lowercase();
    lower.find("/blobservices/").map_or("", |i| &id[..i])
}

/// The metadata a `PUT` sends: the inputs' (string values), plus `token` when there is one.
fn metadata(inputs: &Attributes, token: Option<&str>) -> Json {
    let mut m = Map::new();
    if let Some(user) = inputs.get("metadata").and_then(Value::as_map) {
        for (k, v) in user {
            if k != TOKEN_KEY
                && let Some(s) = v.as_str()
            {
                m.insert(k.clone(), json!(s));
            }
        }
    }
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        m.insert(TOKEN_KEY.into(), json!(t));
    }
    Json::Object(m)
}

/// The token a container carries (`""` when none).
fn token_of(body: &Json) -> &str {
    body["properties"]["metadata"][TOKEN_KEY]
        .as_str()
        .unwrap_or_default()
}

fn put_body(inputs: &Attributes, token: &str) -> Json {
    json!({"properties": {"publicAccess": "None", "metadata": metadata(inputs, Some(token))}})
}

/// The attributes of `body` (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior_inputs: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let user: BTreeMap<String, Value> = body["properties"]["metadata"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != TOKEN_KEY)
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), Value::from(s))))
        .collect();
    attrs::attrs([
        ("id", id_value(cloud_id, Some(&Value::from(id)))),
        (
            "account_id",
            id_value(account_of(cloud_id), prior_inputs.get("account_id")),
        ),
        ("name", Value::from(name_of(cloud_id))),
        ("metadata", Value::Map(user)),
    ])
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("{WHAT} `{id}` no longer exists"),
    )
}

impl StorageContainer {
    /// The data plane, or the error of a client without one.
    fn plane(&self, id: &str, doing: &str) -> Result<&BlobPlane, ProviderError> {
        self.client.blob_plane().ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Permanent,
                format!(
                    "cannot {doing} {WHAT} `{id}`: this run has no blob data-plane access, so \
                     flyteinfra cannot tell whether the container holds blobs (Resource Manager \
                     does not list them) and will not delete it unseen"
                ),
            )
        })
    }

    fn ready(&self, id: &str, body: &Json, inputs: &Attributes) -> Attributes {
        managed_only(attributes(id, body, inputs), inputs, &self.schema)
    }

    /// `PUT`s the container (synchronous) and returns its attributes.
    async fn put(
        &self,
        id: &str,
        inputs: &Attributes,
        token: &str,
    ) -> Result<Attributes, ProviderError> {
        let answer = self.client.put(id, API, &put_body(inputs, token)).await?;
        let body = if answer.body.is_object() {
            answer.body
        } else {
            self.client.get(id, API).await?.ok_or_else(|| gone(id))?
        };
        Ok(self.ready(id, &body, inputs))
    }
}

#[async_trait]
impl ResourceType for StorageContainer {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .client
                .get(&req.id, API)
                .await?
                .map(|b| self.ready(&req.id, &b, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let path = path(&req.inputs)?;
        let found = self.client.get(&path, API).await?;
        Ok(FindResponse {
            id: found.filter(|b| token_of(b) == req.token).map(|_| path),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = path(&req.inputs)?;
        // PUT replaces: read first. An earlier attempt's container (synchronous, so done)
        // is adopted as it is; anyone else's is refused.
        if let Some(existing) = self.client.get(&path, API).await? {
            if token_of(&existing) != req.token {
                return Err(not_ours(WHAT, &req.address, &path));
            }
            return Ok(CreateResponse {
                completion: Completion::Ready(self.ready(&path, &existing, &req.inputs)),
                id: path,
            });
        }
        let a = self.put(&path, &req.inputs, &req.token).await?;
        Ok(CreateResponse {
            id: path,
            completion: Completion::Ready(a),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        // Only `metadata` changes in place; the token is kept.
        let current = self
            .client
            .get(&req.id, API)
            .await?
            .ok_or_else(|| gone(&req.id))?;
        let token = token_of(&current).to_string();
        Ok(UpdateResponse {
            attributes: self.put(&req.id, &req.inputs, &token).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        if self.client.get(&req.id, API).await?.is_none() {
            return Ok(DeleteResponse { done: true });
        }
        let account = name_of(account_of(&req.id));
        let container = name_of(&req.id);
        if req.force {
            let plane = self.plane(&req.id, "empty")?;
            let n = plane.empty(account, container).await?;
            req.progress.status(format!("deleted {n} blob(s)"));
        } else if self
            .plane(&req.id, "delete")?
            .holds_blobs(account, container)
            .await?
        {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "{WHAT} `{}` still holds blobs (or blob versions, snapshots or soft-deleted \
                     blobs), and its delete may not delete them (`storage.force_destroy` is \
                     off); nothing was deleted. Empty it first, or set \
                     `storage.force_destroy: true`",
                    req.id
                ),
            ));
        }
        // Synchronous: gone when the answer comes.
        self.client.delete(&req.id, API).await?;
        Ok(DeleteResponse { done: true })
    }

    async fn holds_contents(&self, req: ContentsRequest) -> Result<Option<bool>, ProviderError> {
        let plane = self.plane(&req.id, "check the contents of")?;
        let held = plane
            .holds_blobs(name_of(account_of(&req.id)), name_of(&req.id))
            .await?;
        Ok(Some(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::storage_account::tests::plant_account;
    use crate::testutil::{self, azurite};
    use flyteinfra_core::requests;

    const T: &str = "azure_storage_container";

    /// A client of this binary's double with Azurite as every account's data plane.
    fn client() -> ArmClient {
        testutil::client().with_blob_plane(testutil::blob_plane())
    }

    fn inputs(account: &str, name: &str) -> Attributes {
        attrs::attrs([
            ("account_id", account.into()),
            ("name", name.into()),
            (
                "metadata",
                Value::Map([("purpose".to_string(), "flyte".into())].into()),
            ),
        ])
    }

    fn calls(c: &ArmClient, op: &str) -> u64 {
        c.calls_by_operation().get(op).copied().unwrap_or(0)
    }

    /// A container made through the type (and the same one in Azurite): `(id, attributes)`.
    async fn created(rt: &Arc<dyn ResourceType>, account: &str) -> (String, Attributes) {
        let name = testutil::unique("flyte");
        azurite().create_container(&name);
        let ins = inputs(account, &name);
        let c = rt
            .create(requests::create(T, &ins, &testutil::unique("fi-tok")))
            .await
            .unwrap();
        let Completion::Ready(a) = c.completion else {
            panic!("a container is ready when its create answers");
        };
        (c.id, a)
    }

    async fn holds(rt: &Arc<dyn ResourceType>, id: &str, a: &Attributes) -> Option<bool> {
        rt.holds_contents(requests::contents(T, id, a))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn storage_container_lifecycle() {
        let (c, d) = (client(), testutil::double());
        let account = plant_account(d);
        let rt = build(&c);
        let name = testutil::unique("flyte");
        azurite().create_container(&name);
        let ins = inputs(&account, &name);
        let token = testutil::unique("fi-tok");

        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        let id = created.id;
        assert_eq!(
            id,
            format!("{account}/blobServices/default/containers/{name}")
        );
        let Completion::Ready(ready) = created.completion else {
            panic!("a container is ready when its create answers");
        };
        let mut want = ins.clone();
        want.insert("id".into(), Value::from(id.as_str()));
        assert_eq!(ready, want);
        let read = rt
            .read(requests::refresh(T, &id, &ins))
            .await
            .unwrap()
            .attributes;
        assert_eq!(read.as_ref(), Some(&ready));
        let imported = rt.read(requests::read(T, &id)).await.unwrap().attributes;
        assert_eq!(imported.as_ref(), Some(&ready), "the token is hidden");
        {
            let stored = d.shared().lock().resource(&id).unwrap();
            assert_eq!(stored["properties"]["publicAccess"], "None");
            assert_eq!(
                stored["properties"]["metadata"],
                json!({"purpose": "flyte", TOKEN_KEY: token})
            );
        }

        // Found by its token, only by it; a retried create adopts it without a PUT.
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other = rt.find(requests::find(T, &ins, "fi-other")).await.unwrap();
        assert_eq!(other.id, None);
        let puts = calls(&c, "PUT containers");
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(calls(&c, "PUT containers"), puts);

        // Metadata changes in place; the token is kept.
        let mut new = ins.clone();
        new.insert(
            "metadata".into(),
            Value::Map([("purpose".to_string(), "data".into())].into()),
        );
        let up = rt
            .update(requests::update(T, &id, &ready, &new, &["metadata"]))
            .await
            .unwrap();
        assert_eq!(
            up.attributes["metadata"],
            Value::Map([("purpose".to_string(), "data".into())].into())
        );
        let stored = d.shared().lock().resource(&id).unwrap();
        assert_eq!(stored["properties"]["metadata"][TOKEN_KEY], json!(token));
        assert_eq!(
            rt.find(requests::find(T, &new, &token)).await.unwrap().id,
            Some(id.clone())
        );

        // Empty: deleted without force.
        assert_eq!(holds(&rt, &id, &up.attributes).await, Some(false));
        assert!(
            rt.delete(requests::delete(T, &id, &up.attributes))
                .await
                .unwrap()
                .done
        );
        assert!(
            rt.read(requests::read(T, &id))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(d.shared().lock().resource(&id).is_none());
        assert!(
            rt.delete(requests::delete(T, &id, &up.attributes))
                .await
                .unwrap()
                .done
        );
    }

    #[tokio::test]
    async fn storage_foreign_container_is_refused() {
        let (c, d) = (client(), testutil::double());
        let account = plant_account(d);
        let rt = build(&c);
        let name = testutil::unique("theirs");
        let id = format!("{account}/blobServices/default/containers/{name}");
        d.shared().lock().put_raw(
            &id,
            json!({"name": name, "type": "Microsoft.Storage/storageAccounts/blobServices/containers",
                "properties": {"publicAccess": "None", "metadata": {"owner": "someone"}}}),
        );
        let before = d.shared().lock().resource(&id).unwrap();
        let puts = calls(&c, "PUT containers");
        let e = rt
            .create(requests::create(T, &inputs(&account, &name), "fi-tok"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");
        assert_eq!(calls(&c, "PUT containers"), puts, "never PUT over it");
        assert_eq!(d.shared().lock().resource(&id).unwrap(), before);
        let found = rt
            .find(requests::find(T, &inputs(&account, &name), "fi-tok"))
            .await
            .unwrap();
        assert_eq!(found.id, None);
    }

    #[tokio::test]
    async fn storage_container_contents_and_force() {
        let (c, d) = (client(), testutil::double());
        let account = plant_account(d);
        let rt = build(&c);
        let (id, a) = created(&rt, &account).await;
        let name = name_of(&id).to_string();
        assert_eq!(holds(&rt, &id, &a).await, Some(false));
        azurite().upload(&name, "flyte-data/one", b"1");
        azurite().snapshot(&name, "flyte-data/one");
        azurite().upload(&name, "metadata/two", b"2");
        assert_eq!(holds(&rt, &id, &a).await, Some(true));

        // Without force: refused, nothing deleted.
        let deletes = calls(&c, "DELETE containers");
        let e = rt.delete(requests::delete(T, &id, &a)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert!(e.message.contains("storage.force_destroy"), "{e}");
        assert_eq!(calls(&c, "DELETE containers"), deletes);
        assert!(d.shared().lock().resource(&id).is_some());
        assert_eq!(azurite().count(&name), 3);

        // With force: emptied, then deleted.
        let mut forced = requests::delete(T, &id, &a);
        forced.force = true;
        assert!(rt.delete(forced).await.unwrap().done);
        assert_eq!(azurite().count(&name), 0);
        assert!(d.shared().lock().resource(&id).is_none());
        assert_eq!(holds(&rt, &id, &a).await, Some(false));
    }

    #[tokio::test]
    async fn storage_container_without_data_plane_refuses_to_guess() {
        let d = testutil::double();
        let account = plant_account(d);
        let (id, a) = created(&build(&client()), &account).await;
        let rt = build(&testutil::client());
        let e = rt
            .holds_contents(requests::contents(T, &id, &a))
            .await
            .unwrap_err();
        assert!(e.message.contains("no blob data-plane access"), "{e}");
        let e = rt.delete(requests::delete(T, &id, &a)).await.unwrap_err();
        assert!(e.message.contains("no blob data-plane access"), "{e}");
        assert!(d.shared().lock().resource(&id).is_some(), "kept");
        // Once it is gone there is nothing to check.
        d.shared().lock().remove_raw(&id);
        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
    }

    #[test]
    fn storage_container_ids_and_metadata() {
        let acct =
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a";
        assert_eq!(
            account_of(&format!("{acct}/blobServices/default/containers/c")),
            acct
        );
        assert_eq!(
            account_of(&format!("{acct}/blobservices/default/containers/c")),
            acct
        );
        let ins = attrs::attrs([(
            "metadata",
            Value::Map([(TOKEN_KEY.to_string(), "forged".into())].into()),
        )]);
        assert_eq!(metadata(&ins, Some("t")), json!({TOKEN_KEY: "t"}));
        assert!(schema().holds_data);
    }
}

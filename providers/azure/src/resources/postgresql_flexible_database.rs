//! `azure_postgresql_flexible_database`: a database inside a flexible server.
//!
//! Databases carry no tags. Names are unique per server, so the name is the identity and
//! the proof of ownership is the server's (its token tag, or the user's import): inside a
//! server flyteinfra made, a database of that name is an earlier attempt of this create,
//! and is adopted — as `gcp_sql_database` does inside a Cloud SQL instance.

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

use super::common::{Pending, WaitFor, by_provisioning_state, id_value, managed_only, str_at};
use super::postgresql_flexible_server::API;
use crate::client::ArmClient;

const WHAT: &str = "PostgreSQL database";

/// `azure_postgresql_flexible_database`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_postgresql_flexible_database",
        doc: "A database in a PostgreSQL flexible server. It has no tags: inside a server \
              flyteinfra made, a database of its name is taken as flyteinfra's.",
        fields: vec![
            Field::computed("id", "The database's resource id."),
            Field::input("server_id", "The flexible server's resource id.")
                .required()
                .force_new(),
            Field::input("name", "The database name.")
                .required()
                .force_new(),
            Field::input("charset", "The character set (default `UTF8`).").force_new(),
            Field::input("collation", "The collation (default `en_US.utf8`).").force_new(),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(30),
        deletion_protection: None,
    }
}

/// `azure_postgresql_flexible_database` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(FlexibleDatabase {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct FlexibleDatabase {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

fn path(inputs: &Attributes) -> Result<String, ProviderError> {
    let server = attrs::s(inputs, "server_id")?.trim_end_matches('/');
    Ok(format!("{server}/databases/{}", attrs::s(inputs, "name")?))
}

/// The attributes of `body` (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior_inputs: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let server = cloud_id
        .rsplit_once("/databases/")
        .map_or("", |(server, _)| server);
    attrs::attrs([
        ("id", id_value(cloud_id, Some(&Value::from(id)))),
        ("server_id", id_value(server, prior_inputs.get("server_id"))),
        ("name", Value::from(str_at(body, "/name"))),
        ("charset", Value::from(str_at(body, "/properties/charset"))),
        (
            "collation",
            Value::from(str_at(body, "/properties/collation")),
        ),
    ])
}

impl FlexibleDatabase {
    async fn read_back(&self, id: &str, inputs: &Attributes) -> Result<Attributes, ProviderError> {
        let body = self.client.get(id, API).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("{WHAT} `{id}` no longer exists"),
            )
        })?;
        Ok(managed_only(
            attributes(id, &body, inputs),
            inputs,
            &self.schema,
        ))
    }
}

#[async_trait]
impl ResourceType for FlexibleDatabase {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self.client.get(&req.id, API).await?.map(|b| {
                managed_only(
                    attributes(&req.id, &b, &req.prior_inputs),
                    &req.prior_inputs,
                    &self.schema,
                )
            }),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let path = path(&req.inputs)?;
        Ok(FindResponse {
            id: self.client.get(&path, API).await?.map(|_| path),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = path(&req.inputs)?;
        // An existing one is an earlier attempt's (see the module doc): `wait_ready`
        // finishes it, with no PUT (one with another charset would fail).
        if self.client.get(&path, API).await?.is_some() {
            return Ok(CreateResponse {
                id: path,
                completion: Completion::InProgress,
            });
        }
        let body = json!({"properties": {
            "charset": attrs::opt_s(&req.inputs, "charset").unwrap_or("UTF8"),
            "collation": attrs::opt_s(&req.inputs, "collation").unwrap_or("en_US.utf8"),
        }});
        let answer = self.client.put(&path, API, &body).await?;
        self.pending.put(&path, answer.operation);
        Ok(CreateResponse {
            id: path,
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        WaitFor {
            client: &self.client,
            id: &req.id,
            api: API,
            what: WHAT,
            expected: self.schema.expected_create,
            progress: &req.progress,
        }
        .ready(&self.pending, by_provisioning_state)
        .await?;
        self.read_back(&req.id, &req.inputs).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        // Every input is force_new: nothing changes in place.
        Ok(UpdateResponse {
            attributes: self.read_back(&req.id, &req.inputs).await?,
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
        WaitFor {
            client: &self.client,
            id: &req.id,
            api: API,
            what: WHAT,
            expected: self.schema.expected_create,
            progress: &req.progress,
        }
        .gone(&self.pending)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::postgresql_flexible_server::tests::{delete_server, ready_server};
    use crate::testutil;
    use flyteinfra_core::requests;

    const T: &str = "azure_postgresql_flexible_database";

    #[tokio::test]
    async fn database_lifecycle() {
        let (c, d) = (testutil::client(), testutil::double());
        let (_, server, sa) = ready_server(&c, d).await;
        let rt = build(&c);
        let ins = attrs::attrs([
            ("server_id", server.as_str().into()),
            ("name", "flyte".into()),
        ]);
        let created = rt
            .create(requests::create(T, &ins, "fi-db-1"))
            .await
            .unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        assert_eq!(id, format!("{server}/databases/flyte"));
        let ready = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(
            ready,
            ins.clone()
                .into_iter()
                .chain([("id".into(), Value::from(id.as_str()))])
                .collect()
        );
        let a = rt
            .read(requests::refresh(T, &id, &ins))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(a, ready);
        // An import reports the defaults Azure applied.
        let imported = rt
            .read(requests::read(T, &id))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(imported["charset"], Value::from("UTF8"));
        assert_eq!(imported["collation"], Value::from("en_US.utf8"));
        // Found by name; a retried create adopts it without a PUT.
        let found = rt.find(requests::find(T, &ins, "fi-db-1")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let puts = c.calls_by_operation().get("PUT databases").copied();
        let again = rt
            .create(requests::create(T, &ins, "fi-db-1"))
            .await
            .unwrap();
        assert_eq!(again.id, id);
        assert_eq!(
            rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap(),
            ready
        );
        assert_eq!(c.calls_by_operation().get("PUT databases").copied(), puts);

        if !rt.delete(requests::delete(T, &id, &a)).await.unwrap().done {
            rt.wait_deleted(requests::wait(T, &id, &a)).await.unwrap();
        }
        assert!(
            rt.read(requests::read(T, &id))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        let none = rt.find(requests::find(T, &ins, "fi-db-1")).await.unwrap();
        assert_eq!(none.id, None);
        delete_server(&c, &server, &sa).await;
    }

    #[tokio::test]
    async fn database_in_a_missing_server_is_not_found() {
        let c = testutil::client();
        let rt = build(&c);
        let server = format!(
            "{}/resourceGroups/nope/providers/Microsoft.DBforPostgreSQL/flexibleServers/gone",
            c.subscription_path()
        );
        let ins = attrs::attrs([
            ("server_id", server.as_str().into()),
            ("name", "flyte".into()),
        ]);
        let err = rt
            .create(requests::create(T, &ins, "fi-db-2"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotFound, "{err}");
    }
}

//! `gcp_sql_database`: a database inside a Cloud SQL instance.
//!
//! Database names are unique per instance, so the name is the identity: a create that meets
//! an existing database of that name adopts it. Databases carry no label or description;
//! the proof of ownership is the instance's (its token label, or the user's import): inside
//! an instance flyteinfra made, a database of that name is an earlier attempt's. Its
//! operations are short, so create and delete wait for them before returning.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use google_cloud_sql_v1::model::Database;

use super::operations::{busy_is_transient, managed_only, wait_sql_op};
use crate::client::GcpClients;
use crate::error::gax_err;

/// `gcp_sql_database`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_sql_database",
        doc: "A database in a Cloud SQL instance.",
        fields: vec![
            Field::computed("id", "The cloud id, `{instance}/{name}`."),
            Field::input("instance", "The Cloud SQL instance name.")
                .required()
                .force_new(),
            Field::input("name", "The database name.")
                .required()
                .force_new(),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(20),
        deletion_protection: None,
    }
}

/// `gcp_sql_database` over the Cloud SQL Admin API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(SqlDatabase {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct SqlDatabase {
    clients: GcpClients,
    schema: Schema,
}

/// `(instance, name)` of an id `{instance}/{name}`.
fn split_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/').ok_or_else(|| {
        ProviderError::new(
            ErrorKind::InvalidInput,
            format!("`{id}` is not a Cloud SQL database id (`instance/name`)"),
        )
    })
}

impl SqlDatabase {
    /// The database, or `None` (also when the instance is gone).
    async fn get(&self, instance: &str, name: &str) -> Result<Option<Database>, ProviderError> {
        match self
            .clients
            .sql_databases
            .get()
            .set_project(&self.clients.project)
            .set_instance(instance)
            .set_database(name)
            .send()
            .await
            .map_err(|e| gax_err("sql.databases.get", e))
        {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn attributes(d: &Database, instance: &str, name: &str) -> Attributes {
    // The answer's own `instance`/`name` win; the request's fill gaps.
    let instance = if d.instance.is_empty() {
        instance
    } else {
        &d.instance
    };
    let name = if d.name.is_empty() { name } else { &d.name };
    attrs::attrs([
        ("id", Value::Str(format!("{instance}/{name}"))),
        ("instance", Value::Str(instance.to_string())),
        ("name", Value::Str(name.to_string())),
    ])
}

#[async_trait]
impl ResourceType for SqlDatabase {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let (instance, name) = split_id(&req.id)?;
        let d = self.get(instance, name).await?;
        Ok(ReadResponse {
            attributes: d.map(|d| {
                managed_only(
                    attributes(&d, instance, name),
                    &req.prior_inputs,
                    &self.schema,
                )
            }),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let instance = attrs::s(&req.inputs, "instance")?;
        let name = attrs::s(&req.inputs, "name")?;
        Ok(FindResponse {
            id: self
                .get(instance, name)
                .await?
                .map(|_| format!("{instance}/{name}")),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let instance = attrs::s(&req.inputs, "instance")?;
        let name = attrs::s(&req.inputs, "name")?;
        let id = format!("{instance}/{name}");
        let sent = self
            .clients
            .sql_databases
            .insert()
            .set_project(&self.clients.project)
            .set_instance(instance)
            .set_body(
                Database::new()
                    .set_name(name)
                    .set_instance(instance)
                    .set_project(&self.clients.project),
            )
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("sql.databases.insert", e)));
        let waited = match sent {
            Ok(op) => {
                req.progress.status("CREATING");
                wait_sql_op(
                    &self.clients,
                    &op.name,
                    &format!("creating database `{id}`"),
                )
                .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = waited {
            // An earlier attempt's database (or one of that name): the name is its identity.
            if e.kind.is_retryable() {
                return Err(e);
            }
            if self.get(instance, name).await?.is_none() {
                return Err(e);
            }
        }
        let d = self.get(instance, name).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("database `{id}` vanished after its create"),
            )
        })?;
        Ok(CreateResponse {
            id,
            completion: Completion::Ready(attributes(&d, instance, name)),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        // Every input is force-new: nothing changes in place.
        let (instance, name) = split_id(&req.id)?;
        let d = self.get(instance, name).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("database `{}` no longer exists", req.id),
            )
        })?;
        Ok(UpdateResponse {
            attributes: attributes(&d, instance, name),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let (instance, name) = split_id(&req.id)?;
        let sent = self
            .clients
            .sql_databases
            .delete()
            .set_project(&self.clients.project)
            .set_instance(instance)
            .set_database(name)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("sql.databases.delete", e)));
        match sent {
            Ok(op) => {
                let what = format!("deleting database `{}`", req.id);
                match wait_sql_op(&self.clients, &op.name, &what).await {
                    Ok(()) => {}
                    // Deleted meanwhile by the instance's own deletion: done.
                    Err(_) if self.get(instance, name).await?.is_none() => {}
                    Err(e) => return Err(e),
                }
                Ok(DeleteResponse { done: true })
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, _req: WaitRequest) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::operations::testkit::OPS;
    use crate::resources::sql_database_instance::tests::ready_instance;
    use crate::testutil;
    use flyteinfra_core::requests;

    const T: &str = "gcp_sql_database";

    #[tokio::test]
    async fn sql_database_lifecycle() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let instance = ready_instance(&c, &testutil::unique("dbs")).await;
        let rt = build(&c);
        let ins = attrs::attrs([
            ("instance", Value::Str(instance.clone())),
            ("name", Value::Str("flyteadmin".into())),
        ]);
        let created = rt.create(requests::create(T, &ins, "tok")).await.unwrap();
        let id = format!("{instance}/flyteadmin");
        assert_eq!(created.id, id);
        let Completion::Ready(a) = created.completion else {
            panic!("a database is ready when create returns");
        };
        let mut want = ins.clone();
        want.insert("id".into(), Value::Str(id.clone()));
        assert_eq!(a, want);
        assert_eq!(
            rt.read(requests::refresh(T, &id, &ins))
                .await
                .unwrap()
                .attributes,
            Some(want.clone())
        );
        assert_eq!(
            rt.read(requests::read(T, &id)).await.unwrap().attributes,
            Some(want.clone())
        );
        let found = rt.find(requests::find(T, &ins, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // A retried create adopts the database.
        let again = rt.create(requests::create(T, &ins, "tok")).await.unwrap();
        assert_eq!(again.id, id);
        assert!(matches!(again.completion, Completion::Ready(ref x) if *x == want));

        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        assert_eq!(
            rt.read(requests::read(T, &id)).await.unwrap().attributes,
            None
        );
        assert_eq!(
            rt.find(requests::find(T, &ins, "tok")).await.unwrap().id,
            None
        );
        // A database of an instance that does not exist reads as gone.
        assert_eq!(
            rt.read(requests::read(T, "no-such-instance/x"))
                .await
                .unwrap()
                .attributes,
            None
        );
    }
}

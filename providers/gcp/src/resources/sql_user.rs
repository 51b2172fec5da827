//! `gcp_sql_user`: a built-in (password) user of a Cloud SQL instance.
//!
//! Google never returns a password: `read` reports the last applied one (prior inputs, else
//! prior attributes) while the user exists, so it never shows as drift; a changed password
//! is set with `users.update`. User names are unique per instance: the name is the identity,
//! and a create that meets the user adopts it and sets its password. Users carry no label
//! or description; the proof of ownership is the instance's (its token label, or the
//! user's import): inside an instance flyteinfra made, that user is an earlier attempt's.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use google_cloud_sql_v1::model::User;

use super::operations::{busy_is_transient, managed_only, wait_sql_op};
use crate::client::GcpClients;
use crate::error::gax_err;

/// `gcp_sql_user`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_sql_user",
        doc: "A password user of a Cloud SQL instance (PostgreSQL: no host).",
        fields: vec![
            Field::computed("id", "The cloud id, `{instance}/{name}`."),
            Field::input("instance", "The Cloud SQL instance name.")
                .required()
                .force_new(),
            Field::input("name", "The user name.")
                .required()
                .force_new(),
            Field::input(
                "password",
                "The password (never read back from Google; changed in place).",
            )
            .required()
            .sensitive(),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(20),
        deletion_protection: None,
    }
}

/// `gcp_sql_user` over the Cloud SQL Admin API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(SqlUser {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct SqlUser {
    clients: GcpClients,
    schema: Schema,
}

fn split_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/').ok_or_else(|| {
        ProviderError::new(
            ErrorKind::InvalidInput,
            format!("`{id}` is not a Cloud SQL user id (`instance/name`)"),
        )
    })
}

/// Removes the password from an error message, should the cloud ever echo it.
fn scrub(mut e: ProviderError, inputs: &Attributes) -> ProviderError {
    if let Some(pw) = attrs::opt_secret(inputs, "password").filter(|p| !p.is_empty()) {
        e.message = e.message.replace(pw, "(sensitive)");
    }
    e
}

fn attributes(instance: &str, name: &str, password: Option<&Value>) -> Attributes {
    let mut a = attrs::attrs([
        ("id", Value::Str(format!("{instance}/{name}"))),
        ("instance", Value::Str(instance.to_string())),
        ("name", Value::Str(name.to_string())),
    ]);
    if let Some(p) = password {
        a.insert("password".into(), p.clone());
    }
    a
}

impl SqlUser {
    /// Whether the user exists (`false` also when the instance is gone).
    async fn exists(&self, instance: &str, name: &str) -> Result<bool, ProviderError> {
        match self
            .clients
            .sql_users
            .get()
            .set_project(&self.clients.project)
            .set_instance(instance)
            .set_name(name)
            .send()
            .await
            .map_err(|e| gax_err("sql.users.get", e))
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets the user's password and waits.
    async fn set_password(
        &self,
        instance: &str,
        name: &str,
        inputs: &Attributes,
    ) -> Result<(), ProviderError> {
        let op = self
            .clients
            .sql_users
            .update()
            .set_project(&self.clients.project)
            .set_instance(instance)
            .set_name(name)
            .set_body(
                User::new()
                    .set_name(name)
                    .set_password(attrs::secret(inputs, "password")?),
            )
            .send()
            .await
            .map_err(|e| scrub(busy_is_transient(gax_err("sql.users.update", e)), inputs))?;
        let what = format!("setting the password of Cloud SQL user `{instance}/{name}`");
        wait_sql_op(&self.clients, &op.name, &what)
            .await
            .map_err(|e| scrub(e, inputs))
    }
}

#[async_trait]
impl ResourceType for SqlUser {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let (instance, name) = split_id(&req.id)?;
        if !self.exists(instance, name).await? {
            return Ok(ReadResponse { attributes: None });
        }
        let password = req
            .prior_inputs
            .get("password")
            .or_else(|| req.prior_attributes.get("password"));
        Ok(ReadResponse {
            attributes: Some(managed_only(
                attributes(instance, name, password),
                &req.prior_inputs,
                &self.schema,
            )),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let instance = attrs::s(&req.inputs, "instance")?;
        let name = attrs::s(&req.inputs, "name")?;
        Ok(FindResponse {
            id: self
                .exists(instance, name)
                .await?
                .then(|| format!("{instance}/{name}")),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let inputs = &req.inputs;
        let instance = attrs::s(inputs, "instance")?;
        let name = attrs::s(inputs, "name")?;
        let sent = self
            .clients
            .sql_users
            .insert()
            .set_project(&self.clients.project)
            .set_instance(instance)
            .set_body(
                User::new()
                    .set_name(name)
                    .set_instance(instance)
                    .set_project(&self.clients.project)
                    .set_password(attrs::secret(inputs, "password")?),
            )
            .send()
            .await
            .map_err(|e| scrub(busy_is_transient(gax_err("sql.users.insert", e)), inputs));
        let waited = match sent {
            Ok(op) => {
                let what = format!("creating Cloud SQL user `{instance}/{name}`");
                wait_sql_op(&self.clients, &op.name, &what)
                    .await
                    .map_err(|e| scrub(e, inputs))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = waited {
            if e.kind.is_retryable() || !self.exists(instance, name).await? {
                return Err(e);
            }
            // The user already exists (an earlier attempt): adopt it with our password.
            self.set_password(instance, name, inputs).await?;
        }
        Ok(CreateResponse {
            id: format!("{instance}/{name}"),
            completion: Completion::Ready(attributes(instance, name, inputs.get("password"))),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let (instance, name) = split_id(&req.id)?;
        if req.changed.iter().any(|c| c == "password") {
            self.set_password(instance, name, &req.inputs).await?;
        }
        Ok(UpdateResponse {
            attributes: attributes(instance, name, req.inputs.get("password")),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let (instance, name) = split_id(&req.id)?;
        let sent = self
            .clients
            .sql_users
            .delete()
            .set_project(&self.clients.project)
            .set_instance(instance)
            .set_name(name)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("sql.users.delete", e)));
        match sent {
            Ok(op) => {
                let what = format!("deleting Cloud SQL user `{}`", req.id);
                match wait_sql_op(&self.clients, &op.name, &what).await {
                    Ok(()) => {}
                    Err(_) if !self.exists(instance, name).await? => {}
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

    const T: &str = "gcp_sql_user";
    const PASSWORD: &str = "s3cret-Passw0rd-xyz";

    #[tokio::test]
    async fn sql_user_lifecycle() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let instance = ready_instance(&c, &testutil::unique("users")).await;
        let rt = build(&c);
        let ins = attrs::attrs([
            ("instance", Value::Str(instance.clone())),
            ("name", Value::Str("flyte".into())),
            ("password", Value::Str(PASSWORD.into())),
        ]);
        let id = format!("{instance}/flyte");
        let created = rt.create(requests::create(T, &ins, "tok")).await.unwrap();
        assert_eq!(created.id, id);
        let Completion::Ready(a) = created.completion else {
            panic!("a user is ready when create returns");
        };
        let mut want = ins.clone();
        want.insert("id".into(), Value::Str(id.clone()));
        assert_eq!(a, want);
        // Google never returns the password: the prior one is reported, so no drift.
        assert_eq!(
            rt.read(requests::refresh(T, &id, &ins))
                .await
                .unwrap()
                .attributes,
            Some(want.clone())
        );
        let mut from_state = requests::read(T, &id);
        from_state.prior_attributes = want.clone();
        assert_eq!(
            rt.read(from_state).await.unwrap().attributes,
            Some(want.clone())
        );
        // On import the password is simply unknown.
        let imported = rt
            .read(requests::read(T, &id))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert!(!imported.contains_key("password"));
        assert_eq!(
            rt.find(requests::find(T, &ins, "tok"))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );
        // A retried create adopts the user and sets its password (changed meanwhile).
        let key = format!(
            "projects/{}/instances/{instance}/users/flyte",
            testutil::PROJECT
        );
        let stored = || {
            testutil::double().shared().lock().objects[&key]["password"]
                .as_str()
                .map(str::to_string)
        };
        assert_eq!(stored().as_deref(), Some(PASSWORD));
        testutil::double()
            .shared()
            .lock()
            .objects
            .get_mut(&key)
            .unwrap()["password"] = serde_json::json!("changed-elsewhere");
        let again = rt.create(requests::create(T, &ins, "tok")).await.unwrap();
        assert_eq!(again.id, id);
        assert!(matches!(again.completion, Completion::Ready(ref x) if *x == want));
        assert_eq!(stored().as_deref(), Some(PASSWORD));

        // The password changes in place.
        let mut new = ins.clone();
        new.insert("password".into(), Value::Str(format!("{PASSWORD}-2")));
        let updated = rt
            .update(requests::update(T, &id, &a, &new, &["password"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(updated["password"], new["password"]);
        assert_eq!(stored().as_deref(), Some(format!("{PASSWORD}-2").as_str()));
        assert_eq!(
            rt.read(requests::refresh(T, &id, &new))
                .await
                .unwrap()
                .attributes
                .unwrap()["password"],
            new["password"]
        );

        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        assert_eq!(
            rt.read(requests::read(T, &id)).await.unwrap().attributes,
            None
        );
    }

    #[test]
    fn errors_never_carry_the_password() {
        let ins = attrs::attrs([("password", Value::Str(PASSWORD.into()))]);
        let e = scrub(
            ProviderError::new(ErrorKind::InvalidInput, format!("bad password {PASSWORD}")),
            &ins,
        );
        assert!(!e.message.contains(PASSWORD), "{}", e.message);
    }
}

//! `azure_management_lock`: a management lock on a resource (the database's deletion
//! protection).
//!
//! The resource stands for "this lock exists while `protected` is true": with `protected`
//! false no ARM lock exists, and the resource is a placeholder at the lock's would-be id.
//! The schema's `deletion_protection` is `protected`, so the engine refuses to destroy it
//! while true, and `--disable-protection` first updates `protected` to false (which deletes
//! the ARM lock, letting the scope be deleted) and then deletes this resource (a no-op).
//!
//! Locks have no tags: the create token goes into the notes as `(flyteinfra token …)`,
//! hidden on read. A lock of the same name without a flyteinfra token is someone else's:
//! never replaced nor deleted.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, fnv1a64,
};
use serde_json::{Value as Json, json};

use super::common::{id_value, managed_only, not_ours, str_at};
use crate::client::ArmClient;

/// The api-version of management locks (synchronous).
const API: &str = "2020-05-01";

/// Between a lock's scope and its name in its id.
const LOCKS: &str = "/providers/Microsoft.Authorization/locks";

/// What precedes the token in a lock's notes.
const MARK: &str = "(flyteinfra token ";

/// `azure_management_lock`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_management_lock",
        doc: "A management lock on a resource, present while `protected` is true: Azure then \
              refuses to delete the resource (or, with `ReadOnly`, to change it), and \
              flyteinfra refuses to destroy the lock until `--disable-protection`.",
        fields: vec![
            Field::computed(
                "id",
                "The lock's resource id, `{scope}/providers/Microsoft.Authorization/locks/{name}`.",
            ),
            Field::input("scope", "The resource id the lock applies to.")
                .required()
                .force_new(),
            Field::input("name", "The lock's name.")
                .required()
                .force_new(),
            Field::input("level", "`CanNotDelete` or `ReadOnly`.").required(),
            Field::input("notes", "Why the lock is there."),
            Field::input(
                "protected",
                "Whether the lock exists (and the resource is protected from deletion).",
            )
            .required(),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: Some("protected"),
    }
}

/// `azure_management_lock` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(ManagementLock {
        client: client.clone(),
        schema: schema(),
    })
}

struct ManagementLock {
    client: ArmClient,
    schema: Schema,
}

/// The lock id of the inputs.
fn lock_id(inputs: &Attributes) -> Result<String, ProviderError> {
    let scope = attrs::s(inputs, "scope")?.trim_end_matches('/');
    Ok(format!("{scope}{LOCKS}/{}", attrs::s(inputs, "name")?))
}

/// `(scope, name)` of a lock id (ids are case-insensitive).
fn split_id(id: &str) -> (&str, &str) {
    let at = id
        .to_ascii_lowercase()
        .rfind(&format!("{}/", LOCKS.to_ascii_lowercase()));
    match at {
        Some(i) => (&id[..i], &id[i + LOCKS.len() + 1..]),
        None => (id, ""),
    }
}

/// The notes with the token appended.
fn notes_with_token(notes: &str, token: &str) -> String {
    format!("{notes} {MARK}{token})").trim_start().to_string()
}

/// `(user notes, token)` of a lock's notes.
fn split_notes(notes: &str) -> (&str, Option<&str>) {
    match notes.rfind(MARK) {
        Some(i) if notes.ends_with(')') => (
            notes[..i].trim_end(),
            Some(&notes[i + MARK.len()..notes.len() - 1]),
        ),
        _ => (notes, None),
    }
}

fn token_of(body: &Json) -> Option<&str> {
    split_notes(str_at(body, "/properties/notes")).1
}

/// A lock of our name that flyteinfra did not make: neither replaced nor deleted.
fn foreign(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Conflict,
        format!(
            "management lock `{id}` was not made by flyteinfra (its notes carry no flyteinfra \
             token): flyteinfra neither replaces nor deletes it. Remove it yourself \
             (`az lock delete --ids {id}`) or choose another lock name"
        ),
    )
}

/// The attributes of lock `id`: from `body` when it exists, else the placeholder of an
/// unprotected lock (level and notes as last applied: no lock holds them).
fn attributes(id: &str, body: Option<&Json>, prior_inputs: &Attributes) -> Attributes {
    let (scope, name) = split_id(id);
    let mut a = attrs::attrs([
        ("id", Value::from(id)),
        ("scope", id_value(scope, prior_inputs.get("scope"))),
        ("name", Value::from(name)),
        ("protected", Value::Bool(body.is_some())),
    ]);
    match body {
        Some(b) => {
            a.insert("level".into(), Value::from(str_at(b, "/properties/level")));
            let (notes, _) = split_notes(str_at(b, "/properties/notes"));
            if !notes.is_empty() || prior_inputs.contains_key("notes") {
                a.insert("notes".into(), Value::from(notes));
            }
        }
        None => {
            for k in ["level", "notes"] {
                if let Some(v) = prior_inputs.get(k) {
                    a.insert(k.into(), v.clone());
                }
            }
        }
    }
    a
}

impl ManagementLock {
    /// PUTs the lock with the inputs' level and notes, carrying `token`.
    async fn put(&self, id: &str, inputs: &Attributes, token: &str) -> Result<Json, ProviderError> {
        let notes = attrs::opt_s(inputs, "notes").unwrap_or_default();
        let body = json!({"properties": {
            "level": attrs::s(inputs, "level")?,
            "notes": notes_with_token(notes, token),
        }});
        Ok(self.client.put(id, API, &body).await?.body)
    }

    /// Reads the lock; `None` only when its scope is gone.
    async fn read_lock(
        &self,
        id: &str,
        prior_inputs: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        if let Some(b) = self.client.get(id, API).await? {
            return Ok(Some(attributes(id, Some(&b), prior_inputs)));
        }
        // No lock: the placeholder, as long as the scope exists (its lock list 404s if not).
        let (scope, _) = split_id(id);
        let list = self.client.get(&format!("{scope}{LOCKS}"), API).await?;
        Ok(list.map(|_| attributes(id, None, prior_inputs)))
    }

    fn managed(&self, a: Attributes, inputs: &Attributes) -> Attributes {
        managed_only(a, inputs, &self.schema)
    }
}

/// The token a lock made by an update carries (the create's is not known there): derived
/// from the lock id, so a repeated update finds its own lock.
fn update_token(id: &str) -> String {
    format!(
        "fi-lock-{:016x}",
        fnv1a64(id.to_ascii_lowercase().as_bytes())
    )
}

#[async_trait]
impl ResourceType for ManagementLock {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let a = self.read_lock(&req.id, &req.prior_inputs).await?;
        Ok(ReadResponse {
            attributes: a.map(|a| self.managed(a, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let id = lock_id(&req.inputs)?;
        let found = self.client.get(&id, API).await?;
        Ok(FindResponse {
            id: found
                .filter(|b| token_of(b) == Some(req.token.as_str()))
                .map(|_| id),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let id = lock_id(&req.inputs)?;
        let attributes = if attrs::b(&req.inputs, "protected") == Some(true) {
            // PUT replaces: read first, and never send one over a lock without our token.
            let body = match self.client.get(&id, API).await? {
                Some(b) if token_of(&b) == Some(req.token.as_str()) => b,
                Some(_) => return Err(not_ours("management lock", &req.address, &id)),
                None => self.put(&id, &req.inputs, &req.token).await?,
            };
            attributes(&id, Some(&body), &req.inputs)
        } else {
            // Unprotected: no ARM lock, no call.
            attributes(&id, None, &req.inputs)
        };
        Ok(CreateResponse {
            completion: Completion::Ready(self.managed(attributes, &req.inputs)),
            id,
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let current = self.client.get(&req.id, API).await?;
        let mine = current.as_ref().map(token_of);
        if mine == Some(None) {
            return Err(foreign(&req.id));
        }
        if attrs::b(&req.inputs, "protected") == Some(true) {
            let token = mine
                .flatten()
                .map_or_else(|| update_token(&req.id), str::to_string);
            self.put(&req.id, &req.inputs, &token).await?;
        } else if current.is_some() {
            // Protection off: the lock goes, so its scope can be deleted.
            self.client.delete(&req.id, API).await?;
        }
        let a = self.read_lock(&req.id, &req.inputs).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("the scope of management lock `{}` no longer exists", req.id),
            )
        })?;
        Ok(UpdateResponse {
            attributes: self.managed(a, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        // The engine deletes only an unprotected lock, normally absent by then; a lock that
        // is there anyway is removed if flyteinfra made it.
        match self.client.get(&req.id, API).await? {
            None => {}
            Some(b) if token_of(&b).is_none() => return Err(foreign(&req.id)),
            Some(_) => {
                self.client.delete(&req.id, API).await?;
            }
        }
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::postgresql_flexible_server::{self as server, tests::ready_server};
    use crate::testutil;
    use flyteinfra_core::requests;

    const T: &str = "azure_management_lock";

    fn inputs(scope: &str, protected: bool) -> Attributes {
        attrs::attrs([
            ("scope", scope.into()),
            ("name", "flyte-db-protection".into()),
            ("level", "CanNotDelete".into()),
            ("notes", "Flyte's metadata database".into()),
            ("protected", protected.into()),
        ])
    }

    #[tokio::test]
    async fn lock_lifecycle() {
        let (c, d) = (testutil::client(), testutil::double());
        let (_, sid, sa) = ready_server(&c, d).await;
        let rt = build(&c);
        let ins = inputs(&sid, true);
        let token = testutil::unique("fi-lock");
        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        let id = created.id;
        assert_eq!(id, format!("{sid}{LOCKS}/flyte-db-protection"));
        let Completion::Ready(a) = created.completion else {
            panic!("locks are synchronous");
        };
        // The token is in Azure's notes, hidden from the attributes.
        let cloud = d.shared().lock().resource(&id).unwrap();
        assert!(
            str_at(&cloud, "/properties/notes").contains(&token),
            "{cloud}"
        );
        let expected: Attributes = ins
            .clone()
            .into_iter()
            .chain([("id".into(), Value::from(id.as_str()))])
            .collect();
        assert_eq!(a, expected);
        assert_eq!(
            rt.read(requests::refresh(T, &id, &ins))
                .await
                .unwrap()
                .attributes,
            Some(a.clone())
        );
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        assert_eq!(
            rt.find(requests::find(T, &ins, "fi-other"))
                .await
                .unwrap()
                .id,
            None
        );
        // A retried create adopts it.
        assert_eq!(
            rt.create(requests::create(T, &ins, &token))
                .await
                .unwrap()
                .id,
            id
        );

        // Azure refuses to delete the locked server; the error says what to do.
        let srv = server::build(&c);
        let err = srv
            .delete(requests::delete(
                "azure_postgresql_flexible_server",
                &sid,
                &sa,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert!(err.message.contains("--disable-protection"), "{err}");
        assert!(
            err.message.contains("database.deletion_protection"),
            "{err}"
        );
        assert!(d.shared().lock().resource(&sid).is_some());

        // Protection off: the ARM lock goes, the resource stays as a placeholder.
        let off = inputs(&sid, false);
        let a2 = rt
            .update(requests::update(T, &id, &a, &off, &["protected"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(a2["protected"], Value::Bool(false));
        assert!(d.shared().lock().resource(&id).is_none());
        let read = rt
            .read(requests::refresh(T, &id, &off))
            .await
            .unwrap()
            .attributes;
        assert_eq!(read, Some(a2.clone()));
        // On again (an update has no create token: one derived from the id), and off.
        let a3 = rt
            .update(requests::update(T, &id, &a2, &ins, &["protected"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(a3, expected);
        let a4 = rt
            .update(requests::update(T, &id, &a3, &off, &["protected"]))
            .await
            .unwrap()
            .attributes;
        assert!(rt.delete(requests::delete(T, &id, &a4)).await.unwrap().done);
        assert!(d.shared().lock().resource(&id).is_none());

        // Unlocked, the server goes; with its scope gone, the lock reads as gone.
        server::tests::delete_server(&c, &sid, &sa).await;
        assert!(
            rt.read(requests::refresh(T, &id, &off))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
    }

    #[tokio::test]
    async fn unprotected_lock_makes_no_call() {
        let (c, d) = (testutil::client(), testutil::double());
        let net = server::tests::plant_network(d);
        let rt = build(&c);
        let ins = inputs(&net.rg_id, false);
        let created = rt
            .create(requests::create(T, &ins, "fi-lock-x"))
            .await
            .unwrap();
        assert_eq!(c.calls(), 0);
        let Completion::Ready(a) = created.completion else {
            panic!("ready at once");
        };
        assert_eq!(a["protected"], Value::Bool(false));
        let read = rt
            .read(requests::refresh(T, &created.id, &ins))
            .await
            .unwrap();
        assert_eq!(read.attributes, Some(a));
    }

    #[tokio::test]
    async fn foreign_lock_of_the_same_name_is_refused() {
        let (c, d) = (testutil::client(), testutil::double());
        let net = server::tests::plant_network(d);
        let rt = build(&c);
        let ins = inputs(&net.rg_id, true);
        let id = lock_id(&ins).unwrap();
        let body = json!({"properties": {"level": "ReadOnly", "notes": "the DBA's"}});
        c.put(&id, API, &body).await.unwrap();
        let err = rt
            .create(requests::create(T, &ins, "fi-lock-y"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists);
        assert!(err.message.contains("flyteinfra import"), "{err}");
        let after = d.shared().lock().resource(&id).unwrap();
        assert_eq!(str_at(&after, "/properties/notes"), "the DBA's");
        assert_eq!(
            rt.find(requests::find(T, &ins, "fi-lock-y"))
                .await
                .unwrap()
                .id,
            None
        );
        // Neither replaced by an update nor deleted.
        let a = rt
            .read(requests::refresh(T, &id, &ins))
            .await
            .unwrap()
            .attributes
            .unwrap();
        let off = inputs(&net.rg_id, false);
        let err = rt
            .update(requests::update(T, &id, &a, &off, &["protected"]))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(
            rt.delete(requests::delete(T, &id, &a))
                .await
                .unwrap_err()
                .kind,
            ErrorKind::Conflict
        );
        assert!(d.shared().lock().resource(&id).is_some());
        c.delete(&id, API).await.unwrap();
    }

    #[test]
    fn notes_carry_the_token() {
        let n = notes_with_token("why", "fi-1");
        assert_eq!(n, "why (flyteinfra token fi-1)");
        assert_eq!(split_notes(&n), ("why", Some("fi-1")));
        assert_eq!(split_notes(&notes_with_token("", "t")), ("", Some("t")));
        assert_eq!(split_notes("plain"), ("plain", None));
        let (scope, name) =
            split_id("/subscriptions/s/resourceGroups/g/providers/microsoft.authorization/LOCKS/l");
        assert_eq!((scope, name), ("/subscriptions/s/resourceGroups/g", "l"));
    }
}

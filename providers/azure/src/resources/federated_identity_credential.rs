//! `azure_federated_identity_credential`: lets a Kubernetes service account (the OIDC
//! issuer's `subject`) act as a user-assigned managed identity (workload identity).
//!
//! Credentials carry no tags. Names are unique per identity, so the name is the identity
//! and the proof of ownership is the identity's (its token tag, or the user's import):
//! inside an identity flyteinfra made, a credential of that name is an earlier attempt of
//! this create and is taken, set to the inputs — as `azure_postgresql_flexible_database`
//! does inside its server. Synchronous.
//!
//! The same trust (issuer and subject) under another name of the identity is refused by
//! Azure; that credential is someone else's: refused with the import hint.
//!
//! Azure refuses concurrent writes to one identity's credentials (409
//! `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`): every write
//! here retries that refusal a few times with jittered backoff (the code is also mapped to
//! a retryable kind), and the blueprint chains one identity's credentials so that they are
//! written one at a time anyway.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::retry::{RetryPolicy, backoff};
use flyteinfra_core::{
    Address, Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, EventKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use serde_json::{Value as Json, json};

use super::common::{id_value, managed_only, not_ours, same_id, str_at};
use super::user_assigned_identity::API;
use crate::client::ArmClient;

/// Azure's refusal of a write while another write to the same identity's credentials is
/// in flight.
pub(crate) const CONCURRENT_WRITES: &str =
    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity";

/// How a write refused with [`CONCURRENT_WRITES`] is retried: full jitter, so two writers
/// of one identity drift apart (about 15 s at most).
const WRITE_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 10,
    base: Duration::from_millis(100),
    max_delay: Duration::from_secs(3),
};

/// The audience when the inputs set none: Entra ID's token exchange.
const DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";

/// Between the identity's id and the credential's name.
const SEGMENT: &str = "/federatedIdentityCredentials/";

const WHAT: &str = "federated identity credential";

/// `azure_federated_identity_credential`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_federated_identity_credential",
        doc: "A federated identity credential of a user-assigned managed identity (workload \
              identity: tokens of `subject` from `issuer` act as the identity). It has no \
              tags: inside an identity flyteinfra made, a credential of its name is taken as \
              flyteinfra's.",
        fields: vec![
            Field::computed("id", "The credential's resource id."),
            Field::input("identity_id", "The user-assigned identity's resource id.")
                .required()
                .force_new(),
            Field::input("name", "The credential's name (unique per identity).")
                .required()
                .force_new(),
            Field::input(
                "issuer",
                "The token issuer's URL (the cluster's OIDC issuer).",
            )
            .required(),
            Field::input(
                "subject",
                "The token subject (`system:serviceaccount:{namespace}:{name}`).",
            )
            .required(),
            Field::input(
                "audiences",
                "Accepted token audiences (default `[\"api://AzureADTokenExchange\"]`).",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `azure_federated_identity_credential` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(FederatedCredential {
        client: client.clone(),
        schema: schema(),
    })
}

struct FederatedCredential {
    client: ArmClient,
    schema: Schema,
}

fn path(inputs: &Attributes) -> Result<String, ProviderError> {
    let identity = attrs::s(inputs, "identity_id")?.trim_end_matches('/');
    Ok(format!("{identity}{SEGMENT}{}", attrs::s(inputs, "name")?))
}

/// The inputs' audiences (the default when unset).
fn audiences(inputs: &Attributes) -> Vec<String> {
    if inputs.contains_key("audiences") {
        attrs::strings(inputs, "audiences")
    } else {
        vec![DEFAULT_AUDIENCE.to_string()]
    }
}

fn body(inputs: &Attributes) -> Result<Json, ProviderError> {
    Ok(json!({"properties": {
        "issuer": attrs::s(inputs, "issuer")?,
        "subject": attrs::s(inputs, "subject")?,
        "audiences": audiences(inputs),
    }}))
}

fn cloud_audiences(body: &Json) -> Vec<String> {
    body["properties"]["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Whether the credential `body` already is what the inputs ask for.
fn matches(body: &Json, inputs: &Attributes) -> bool {
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    Some(str_at(body, "/properties/issuer")) == attrs::opt_s(inputs, "issuer")
        && Some(str_at(body, "/properties/subject")) == attrs::opt_s(inputs, "subject")
        && sorted(cloud_audiences(body)) == sorted(audiences(inputs))
}

/// The credential's attributes (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let identity = cloud_id
        .to_ascii_lowercase()
        .rfind(&SEGMENT.to_ascii_lowercase())
        .map_or("", |i| &cloud_id[..i]);
    attrs::attrs([
        ("id", id_value(cloud_id, Some(&Value::from(id)))),
        ("identity_id", id_value(identity, prior.get("identity_id"))),
        ("name", id_value(str_at(body, "/name"), prior.get("name"))),
        ("issuer", Value::from(str_at(body, "/properties/issuer"))),
        ("subject", Value::from(str_at(body, "/properties/subject"))),
        (
            "audiences",
            attrs::unordered(cloud_audiences(body), prior.get("audiences")),
        ),
    ])
}

/// Whether `e` is Azure's refusal of a concurrent write to one identity's credentials.
pub(crate) fn is_concurrent_write(e: &ProviderError) -> bool {
    e.message.contains(CONCURRENT_WRITES)
}

/// Runs the write `op`, retrying it while Azure refuses it as a concurrent write to the
/// same identity's credentials (any other error is returned at once).
async fn retrying_concurrent<T, F, Fut>(progress: &Progress, mut op: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if is_concurrent_write(&e) && attempt < WRITE_RETRY.max_attempts => {
                progress.emit(EventKind::Retrying(e.message.clone()));
                tokio::time::sleep(backoff(&WRITE_RETRY, attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl FederatedCredential {
    /// PUTs the credential the inputs describe; the answer's body (or a read, should it
    /// answer none).
    async fn put(
        &self,
        id: &str,
        inputs: &Attributes,
        address: &Address,
        progress: &Progress,
    ) -> Result<Json, ProviderError> {
        let body = body(inputs)?;
        let answer = match retrying_concurrent(progress, || self.client.put(id, API, &body)).await {
            Ok(a) => a,
            Err(e) if matches!(e.kind, ErrorKind::Conflict | ErrorKind::AlreadyExists) => {
                return Err(self
                    .same_trust_elsewhere(id, inputs, address)
                    .await
                    .unwrap_or(e));
            }
            Err(e) => return Err(e),
        };
        if answer.body.is_object() {
            return Ok(answer.body);
        }
        self.client.get(id, API).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("{WHAT} `{id}` disappeared after its PUT"),
            )
        })
    }

    /// The refusal of a credential whose trust (issuer and subject) another credential of
    /// the identity already holds under another name, naming it for import; `None` when
    /// there is none (the conflict was something else).
    async fn same_trust_elsewhere(
        &self,
        id: &str,
        inputs: &Attributes,
        address: &Address,
    ) -> Option<ProviderError> {
        let identity = attrs::s(inputs, "identity_id").ok()?.trim_end_matches('/');
        let list = format!("{identity}{}", SEGMENT.trim_end_matches('/'));
        let siblings = self.client.list(&list, API).await.ok()?;
        let other = siblings.iter().find(|b| {
            !same_id(str_at(b, "/id"), id)
                && Some(str_at(b, "/properties/issuer")) == attrs::opt_s(inputs, "issuer")
                && Some(str_at(b, "/properties/subject")) == attrs::opt_s(inputs, "subject")
        })?;
        let other_id = match str_at(other, "/id") {
            "" => format!("{identity}{SEGMENT}{}", str_at(other, "/name")),
            o => o.to_string(),
        };
        Some(not_ours(WHAT, address, &other_id))
    }

    fn managed(&self, id: &str, body: &Json, inputs: &Attributes) -> Attributes {
        managed_only(attributes(id, body, inputs), inputs, &self.schema)
    }
}

#[async_trait]
impl ResourceType for FederatedCredential {
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
        let path = path(&req.inputs)?;
        Ok(FindResponse {
            id: self.client.get(&path, API).await?.map(|_| path),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = path(&req.inputs)?;
        // One of this name is an earlier attempt's (see the module doc): taken, and set to
        // the inputs when it differs.
        let body = match self.client.get(&path, API).await? {
            Some(b) if matches(&b, &req.inputs) => b,
            _ => {
                self.put(&path, &req.inputs, &req.address, &req.progress)
                    .await?
            }
        };
        Ok(CreateResponse {
            completion: Completion::Ready(self.managed(&path, &body, &req.inputs)),
            id: path,
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let body = self
            .put(&req.id, &req.inputs, &req.address, &req.progress)
            .await?;
        Ok(UpdateResponse {
            attributes: self.managed(&req.id, &body, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        retrying_concurrent(&req.progress, || self.client.delete(&req.id, API)).await?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::user_assigned_identity::testing::identity;
    use crate::testutil;
    use flyteinfra_azure_double::AzureDouble;
    use flyteinfra_core::requests;

    const T: &str = "azure_federated_identity_credential";
    const ISSUER: &str = "https://eastus.oic.prod-aks.azure.com/tenant/cluster/";

    fn inputs(identity: &str, name: &str, subject: &str) -> Attributes {
        attrs::attrs([
            ("identity_id", identity.into()),
            ("name", name.into()),
            ("issuer", ISSUER.into()),
            ("subject", subject.into()),
            ("audiences", Value::List(vec![DEFAULT_AUDIENCE.into()])),
        ])
    }

    fn ready(c: CreateResponse) -> Attributes {
        match c.completion {
            Completion::Ready(a) => a,
            Completion::InProgress => panic!("credentials are synchronous"),
        }
    }

    async fn refresh(rt: &Arc<dyn ResourceType>, id: &str, ins: &Attributes) -> Option<Attributes> {
        rt.read(requests::refresh(T, id, ins))
            .await
            .unwrap()
            .attributes
    }

    fn puts(c: &ArmClient) -> u64 {
        c.calls_by_operation()
            .get("PUT federatedidentitycredentials")
            .copied()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn credential_lifecycle() {
        let c = testutil::client();
        let (_, ident) = identity(&c).await;
        let identity_id = ident["id"].as_str().unwrap();
        let rt = build(&c);
        let ins = inputs(
            identity_id,
            "flyte-backend",
            "system:serviceaccount:flyte:flyte-backend",
        );
        let created = rt
            .create(requests::create(T, &ins, "fi-fic-1"))
            .await
            .unwrap();
        let id = created.id.clone();
        assert_eq!(
            id,
            format!("{identity_id}/federatedIdentityCredentials/flyte-backend")
        );
        let a = ready(created);
        assert_eq!(refresh(&rt, &id, &ins).await.as_ref(), Some(&a));
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        // Without `audiences`, Entra ID's token exchange is the one sent.
        let mut bare = ins.clone();
        bare.remove("audiences");
        assert_eq!(
            body(&bare).unwrap()["properties"]["audiences"],
            json!([DEFAULT_AUDIENCE])
        );
        let imported = rt
            .read(requests::read(T, &id))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(imported["audiences"], ins["audiences"]);

        // Taken by name inside its identity (no tags): found, and a retried create adopts
        // it without a PUT; another name is not found.
        let found = rt.find(requests::find(T, &ins, "fi-fic-1")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let mut elsewhere = ins.clone();
        elsewhere.insert("name".into(), "other".into());
        assert_eq!(
            rt.find(requests::find(T, &elsewhere, "fi-fic-1"))
                .await
                .unwrap()
                .id,
            None
        );
        let before = puts(&c);
        let again = rt
            .create(requests::create(T, &ins, "fi-fic-1"))
            .await
            .unwrap();
        assert_eq!(ready(again), a);
        assert_eq!(puts(&c), before);

        // The subject changes in place.
        let mut new = ins.clone();
        new.insert(
            "subject".into(),
            "system:serviceaccount:flyte:flytepropeller".into(),
        );
        let up = rt
            .update(requests::update(T, &id, &a, &new, &["subject"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["subject"], new["subject"]);
        assert_eq!(refresh(&rt, &id, &new).await.as_ref(), Some(&up));

        assert!(rt.delete(requests::delete(T, &id, &up)).await.unwrap().done);
        assert_eq!(refresh(&rt, &id, &new).await, None);
        assert!(rt.delete(requests::delete(T, &id, &up)).await.unwrap().done);
        assert_eq!(
            rt.find(requests::find(T, &new, "fi-fic-1"))
                .await
                .unwrap()
                .id,
            None
        );
    }

    #[tokio::test]
    async fn the_same_trust_under_another_name_is_refused() {
        let c = testutil::client();
        let (_, ident) = identity(&c).await;
        let identity_id = ident["id"].as_str().unwrap();
        let subject = "system:serviceaccount:flyte:datacatalog";
        // Someone else's credential granting the same trust.
        let theirs = format!("{identity_id}/federatedIdentityCredentials/theirs");
        let body = json!({"properties": {"issuer": ISSUER, "subject": subject,
            "audiences": [DEFAULT_AUDIENCE]}});
        c.put(&theirs, API, &body).await.unwrap();
        let before = c.get(&theirs, API).await.unwrap().unwrap();
        let rt = build(&c);
        let ins = inputs(identity_id, "mine", subject);
        let e = rt
            .create(requests::create(T, &ins, "fi-fic-2"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(e.message.contains("flyteinfra import"), "{e}");
        assert!(e.message.contains(&theirs), "{e}");
        assert_eq!(c.get(&theirs, API).await.unwrap().unwrap(), before);
        let mine = format!("{identity_id}/federatedIdentityCredentials/mine");
        assert_eq!(c.get(&mine, API).await.unwrap(), None);
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let (c, d) = (testutil::client(), testutil::double());
        let (_, ident) = identity(&c).await;
        let ins = inputs(
            ident["id"].as_str().unwrap(),
            "drift",
            "system:serviceaccount:a:b",
        );
        let rt = build(&c);
        let id = rt
            .create(requests::create(T, &ins, "fi-fic-3"))
            .await
            .unwrap()
            .id;
        {
            let mut w = d.shared().lock();
            let p = &mut w.resource_mut(&id).unwrap()["properties"];
            p["subject"] = json!("system:serviceaccount:a:changed");
            p["audiences"] = json!(["api://other"]);
        }
        let now = refresh(&rt, &id, &ins).await.unwrap();
        assert_eq!(
            now["subject"],
            Value::from("system:serviceaccount:a:changed")
        );
        assert_eq!(now["audiences"], Value::List(vec!["api://other".into()]));
        // A create of the inputs sets it back (it is ours: taken by name).
        let back = ready(
            rt.create(requests::create(T, &ins, "fi-fic-3"))
                .await
                .unwrap(),
        );
        assert_eq!(back["subject"], ins["subject"]);
    }

    #[tokio::test]
    async fn concurrent_writes_to_one_identity_are_retried() {
        let d = AzureDouble::start();
        let c = testutil::client_of(&d);
        let (_, ident) = identity(&c).await;
        let identity_id = ident["id"].as_str().unwrap();
        d.shared().lock().knobs.fic_busy_ms = 200;
        let rt = build(&c);
        let one = inputs(identity_id, "one", "system:serviceaccount:flyte:one");
        let two = inputs(identity_id, "two", "system:serviceaccount:flyte:two");
        let (a, b) = tokio::join!(
            rt.create(requests::create(T, &one, "fi-1")),
            rt.create(requests::create(T, &two, "fi-2")),
        );
        let (a, b) = (ready(a.unwrap()), ready(b.unwrap()));
        assert_eq!(a["subject"], one["subject"]);
        assert_eq!(b["subject"], two["subject"]);
        // One of them met the 409 at least once and was sent again.
        assert!(puts(&c) > 2, "{:?}", c.calls_by_operation());
        let listed = c
            .list(&format!("{identity_id}/federatedIdentityCredentials"), API)
            .await
            .unwrap();
        assert_eq!(listed.len(), 2, "{listed:?}");
        // Deleting both at once is retried the same way.
        let (x, y) = tokio::join!(
            rt.delete(requests::delete(T, a["id"].as_str().unwrap(), &a)),
            rt.delete(requests::delete(T, b["id"].as_str().unwrap(), &b)),
        );
        assert!(x.unwrap().done && y.unwrap().done);
        let listed = c
            .list(&format!("{identity_id}/federatedIdentityCredentials"), API)
            .await
            .unwrap();
        assert!(listed.is_empty(), "{listed:?}");
    }

    #[test]
    fn the_concurrent_write_refusal_is_retryable() {
        let e = crate::error::arm_err(
            "PUT federatedIdentityCredentials",
            409,
            &format!(r#"{{"error":{{"code":"{CONCURRENT_WRITES}","message":"busy"}}}}"#),
        );
        assert!(e.kind.is_retryable(), "{e:?}");
        assert!(is_concurrent_write(&e));
    }
}

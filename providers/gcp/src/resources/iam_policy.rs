//! Shared by the three non-authoritative IAM member types (bucket, service account,
//! project): a read-modify-write of one role's members in an IAM policy, and the bounded
//! probing IAM's eventual consistency needs.
//!
//! Policies are handled as the JSON every Google API speaks (`bindings`, `etag`,
//! `version`), so the GCS JSON API and the official IAM clients share one code path.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_iam_v1::model::{GetPolicyOptions, Policy};
use reqwest::Method;
use serde_json::{Value as Json, json};

use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse,
};

use crate::client::{Api, GcpClients};
use crate::error::gax_err;

/// Read-modify-write attempts before an etag race is reported.
const RMW_ATTEMPTS: u32 = 5;

/// Where one IAM policy lives.
#[async_trait]
pub(crate) trait PolicyStore: Send + Sync {
    /// The policy (requested as version 3, so conditional bindings come back whole).
    async fn get(&self) -> Result<Json, ProviderError>;
    /// Writes `policy`, which carries the etag it was read with.
    async fn set(&self, policy: Json) -> Result<(), ProviderError>;
}

/// A bucket's policy over the GCS JSON API.
pub(crate) struct BucketPolicy<'a> {
    pub clients: &'a GcpClients,
    pub bucket: &'a str,
}

#[async_trait]
impl PolicyStore for BucketPolicy<'_> {
    async fn get(&self) -> Result<Json, ProviderError> {
        let path = format!(
            "/storage/v1/b/{}/iam?optionsRequestedPolicyVersion=3",
            self.bucket
        );
        self.clients
            .http
            .call(
                Api::Storage,
                Method::GET,
                &path,
                None,
                "storage.buckets.getIamPolicy",
            )
            .await
    }

    async fn set(&self, policy: Json) -> Result<(), ProviderError> {
        let path = format!("/storage/v1/b/{}/iam", self.bucket);
        self.clients
            .http
            .call(
                Api::Storage,
                Method::PUT,
                &path,
                Some(&policy),
                "storage.buckets.setIamPolicy",
            )
            .await?;
        Ok(())
    }
}

/// A service account's policy (`projects/{p}/serviceAccounts/{email}`) over IAM Admin.
pub(crate) struct ServiceAccountPolicy<'a> {
    pub clients: &'a GcpClients,
    pub resource: String,
}

#[async_trait]
impl PolicyStore for ServiceAccountPolicy<'_> {
    async fn get(&self) -> Result<Json, ProviderError> {
        let p = self
            .clients
            .iam
            .get_iam_policy()
            .set_resource(&self.resource)
            .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
            .send()
            .await
            .map_err(|e| gax_err("iam.serviceAccounts.getIamPolicy", e))?;
        to_json(&p)
    }

    async fn set(&self, policy: Json) -> Result<(), ProviderError> {
        self.clients
            .iam
            .set_iam_policy()
            .set_resource(&self.resource)
            .set_policy(from_json(policy)?)
            .send()
            .await
            .map_err(|e| gax_err("iam.serviceAccounts.setIamPolicy", e))?;
        Ok(())
    }
}

/// The project's policy over Resource Manager v3.
pub(crate) struct ProjectPolicy<'a> {
    pub clients: &'a GcpClients,
}

#[async_trait]
impl PolicyStore for ProjectPolicy<'_> {
    async fn get(&self) -> Result<Json, ProviderError> {
        let p = self
            .clients
            .projects
            .get_iam_policy()
            .set_resource(format!("projects/{}", self.clients.project))
            .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
            .send()
            .await
            .map_err(|e| gax_err("projects.getIamPolicy", e))?;
        to_json(&p)
    }

    async fn set(&self, policy: Json) -> Result<(), ProviderError> {
        self.clients
            .projects
            .set_iam_policy()
            .set_resource(format!("projects/{}", self.clients.project))
            .set_policy(from_json(policy)?)
            .send()
            .await
            .map_err(|e| gax_err("projects.setIamPolicy", e))?;
        Ok(())
    }
}

fn to_json(p: &Policy) -> Result<Json, ProviderError> {
    serde_json::to_value(p)
        .map_err(|e| ProviderError::new(ErrorKind::Permanent, format!("IAM policy: {e}")))
}

fn from_json(v: Json) -> Result<Policy, ProviderError> {
    serde_json::from_value(v)
        .map_err(|e| ProviderError::new(ErrorKind::Permanent, format!("IAM policy: {e}")))
}

/// Whether a binding is the unconditional one for `role` (the only one these types
/// manage; conditional bindings of the same role belong to someone else).
fn is_ours(b: &Json, role: &str) -> bool {
    b["role"].as_str() == Some(role) && b.get("condition").is_none_or(Json::is_null)
}

/// The members of `role`'s unconditional binding in `policy`.
pub(crate) fn members(policy: &Json, role: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| is_ours(b, role))
        .flat_map(|b| b["members"].as_array().into_iter().flatten())
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect()
}

/// `policy` with `add` granted and `remove` revoked on `role`'s unconditional binding,
/// every other binding and member untouched; `None` when nothing would change.
pub(crate) fn apply_change(
    policy: &Json,
    role: &str,
    add: &[String],
    remove: &[String],
) -> Option<Json> {
    let mut p = policy.clone();
    let mut bindings: Vec<Json> = p["bindings"].as_array().cloned().unwrap_or_default();
    let mut changed = false;
    for b in bindings.iter_mut().filter(|b| is_ours(b, role)) {
        let mut ms: Vec<String> = b["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str().map(str::to_string))
            .collect();
        let before = ms.len();
        ms.retain(|m| !remove.contains(m));
        changed |= ms.len() != before;
        b["members"] = json!(ms);
    }
    // Additions go to the first unconditional binding of the role (or a new one).
    for m in add.iter().filter(|m| !remove.contains(m)) {
        if bindings.iter().filter(|b| is_ours(b, role)).any(|b| {
            b["members"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(m)))
        }) {
            continue;
        }
        changed = true;
        match bindings.iter_mut().find(|b| is_ours(b, role)) {
            Some(b) => b["members"]
                .as_array_mut()
                .expect("set above")
                .push(json!(m)),
            None => bindings.push(json!({"role": role, "members": [m]})),
        }
    }
    if !changed {
        return None;
    }
    // An empty binding is invalid in a set call.
    bindings
        .retain(|b| !is_ours(b, role) || b["members"].as_array().is_some_and(|a| !a.is_empty()));
    p["bindings"] = json!(bindings);
    // Writing a policy with conditions needs version 3; without, any version is valid.
    if bindings
        .iter()
        .any(|b| b.get("condition").is_some_and(|c| !c.is_null()))
    {
        p["version"] = json!(3);
    }
    Some(p)
}

/// Grants `add` and revokes `remove` on `role` in the policy behind `store`: read, change,
/// write with the read etag. An etag race (`ErrorKind::Conflict`) re-reads and retries,
/// up to [`RMW_ATTEMPTS`] times with jittered backoff. Nothing to change → no write.
pub(crate) async fn modify(
    store: &dyn PolicyStore,
    role: &str,
    add: &[String],
    remove: &[String],
) -> Result<(), ProviderError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let policy = store.get().await?;
        let Some(next) = apply_change(&policy, role, add, remove) else {
            return Ok(());
        };
        match store.set(next).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind == ErrorKind::Conflict && attempt < RMW_ATTEMPTS => {
                tokio::time::sleep(jitter(Duration::from_millis(100) * 2u32.pow(attempt))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A delay between half and all of `d` (spreads concurrent writers apart).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d / 2 + d.mul_f64(f64::from(nanos % 1000) / 2000.0)
}

/// Probes before giving up on a not-yet-visible IAM object.
pub(crate) const PROBES: u32 = 10;

/// Runs `f` until it succeeds or fails with something other than "not visible yet"
/// (`not_yet` says which errors are), at most [`PROBES`] times, backing off from 200 ms
/// to 3 s. IAM is eventually consistent: a service account just created may answer 404
/// for a few seconds.
pub(crate) async fn until_visible<T, F, Fut>(
    what: &str,
    not_yet: impl Fn(&ProviderError) -> bool,
    mut f: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match f().await {
            Err(e) if not_yet(&e) => {
                if tries >= PROBES {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        format!(
                            "{what} is still not visible after {tries} reads (IAM is eventually \
                             consistent; retry shortly): {e}"
                        ),
                    ));
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            r => return r,
        }
    }
}

/// Whether `e` means a service account is not visible (yet): 404, or the 400
/// "... does not exist" IAM answers for policies naming an unknown account.
pub(crate) fn account_not_visible(e: &ProviderError) -> bool {
    e.kind == ErrorKind::NotFound
        || (e.kind == ErrorKind::InvalidInput && e.message.contains("does not exist"))
}

/// Splits a member resource id `{resource}/{role}` (resources never hold `/`; roles do).
pub(crate) fn split_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/')
        .filter(|(r, role)| !r.is_empty() && !role.is_empty())
        .ok_or_else(|| {
            ProviderError::new(
                ErrorKind::InvalidInput,
                format!("`{id}` is not an IAM member id (`RESOURCE/ROLE`)"),
            )
        })
}

/// The members `read` reports: those of `desired` the binding holds, or, on import (no
/// desired members), every member of the role. `None` when none are there.
pub(crate) fn held(binding: Vec<String>, desired: &[String]) -> Option<Vec<String>> {
    let out: Vec<String> = if desired.is_empty() {
        binding
    } else {
        binding
            .into_iter()
            .filter(|m| desired.contains(m))
            .collect()
    };
    (!out.is_empty()).then_some(out)
}

/// One writer per policy in this process. Bindings of one policy applied in parallel
/// would only race each other's etags, and a store that does not check etags (the GCS
/// emulator) would silently keep just the last write.
fn policy_lock(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    LOCKS
        .get_or_init(Locks::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.to_string())
        .or_default()
        .clone()
}

/// Which policy a member type manages.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Target {
    /// A bucket's (input `bucket`).
    Bucket,
    /// A service account's (input `service_account`, its email).
    ServiceAccount,
    /// The project's.
    Project,
}

/// A non-authoritative IAM member type: makes sure `members` hold `role` on one policy,
/// never touching other bindings or other members of the role.
pub(crate) struct MemberType {
    pub clients: GcpClients,
    pub schema: Schema,
    pub target: Target,
}

impl MemberType {
    /// The input naming the resource whose policy this is (none for the project).
    fn resource_field(&self) -> Option<&'static str> {
        match self.target {
            Target::Bucket => Some("bucket"),
            Target::ServiceAccount => Some("service_account"),
            Target::Project => None,
        }
    }

    fn resource<'a>(&'a self, inputs: &'a Attributes) -> Result<&'a str, ProviderError> {
        match self.resource_field() {
            Some(f) => attrs::s(inputs, f),
            None => Ok(&self.clients.project),
        }
    }

    fn store<'a>(&'a self, resource: &'a str) -> Box<dyn PolicyStore + 'a> {
        match self.target {
            Target::Bucket => Box::new(BucketPolicy {
                clients: &self.clients,
                bucket: resource,
            }),
            Target::ServiceAccount => Box::new(ServiceAccountPolicy {
                clients: &self.clients,
                resource: format!(
                    "projects/{}/serviceAccounts/{resource}",
                    self.clients.project
                ),
            }),
            Target::Project => Box::new(ProjectPolicy {
                clients: &self.clients,
            }),
        }
    }

    /// The members of `role` on `resource`'s policy; `None` when the resource is gone.
    async fn binding(
        &self,
        resource: &str,
        role: &str,
    ) -> Result<Option<Vec<String>>, ProviderError> {
        match self.store(resource).get().await {
            Ok(p) => Ok(Some(members(&p, role))),
            Err(e) if self.gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn gone(&self, e: &ProviderError) -> bool {
        match self.target {
            Target::ServiceAccount => account_not_visible(e),
            _ => e.kind == ErrorKind::NotFound,
        }
    }

    /// The attributes for `members` held on `resource`/`role`.
    fn attributes(
        &self,
        resource: &str,
        role: &str,
        held: Vec<String>,
        prior: &Attributes,
    ) -> Attributes {
        let mut a = attrs::attrs([
            ("id", format!("{resource}/{role}").into()),
            ("role", role.into()),
            ("members", attrs::unordered(held, prior.get("members"))),
        ]);
        if let Some(f) = self.resource_field() {
            a.insert(f.to_string(), resource.into());
        }
        a
    }

    async fn read_id(
        &self,
        id: &str,
        prior: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let (resource, role) = split_id(id)?;
        let desired = attrs::strings(prior, "members");
        Ok(self
            .binding(resource, role)
            .await?
            .and_then(|b| held(b, &desired))
            .map(|h| self.attributes(resource, role, h, prior)))
    }

    /// Applies a change. A service account that is not visible yet (just created: IAM is
    /// eventually consistent), as the resource or as a member, is probed for, bounded.
    async fn change(
        &self,
        resource: &str,
        role: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<(), ProviderError> {
        let store = self.store(resource);
        let target = self.target;
        let lock = policy_lock(&format!("{target:?}:{resource}"));
        until_visible(
            &format!("a service account of the `{role}` binding on `{resource}`"),
            |e| match target {
                Target::ServiceAccount => account_not_visible(e),
                _ => e.kind == ErrorKind::InvalidInput && account_not_visible(e),
            },
            || async {
                let _one_writer = lock.lock().await;
                modify(store.as_ref(), role, add, remove).await
            },
        )
        .await
    }
}

#[async_trait]
impl ResourceType for MemberType {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self.read_id(&req.id, &req.prior_inputs).await?,
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let resource = self.resource(&req.inputs)?;
        let role = attrs::s(&req.inputs, "role")?;
        let id = format!("{resource}/{role}");
        Ok(FindResponse {
            id: self.read_id(&id, &req.inputs).await?.map(|_| id),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let resource = self.resource(&req.inputs)?;
        let role = attrs::s(&req.inputs, "role")?;
        let want = attrs::strings(&req.inputs, "members");
        if want.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                "`members` is empty",
            ));
        }
        self.change(resource, role, &want, &[]).await?;
        let id = format!("{resource}/{role}");
        let attributes = self.read_id(&id, &req.inputs).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Transient,
                format!("the members of `{role}` on `{resource}` are not visible yet"),
            )
        })?;
        Ok(CreateResponse {
            id,
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let (resource, role) = split_id(&req.id)?;
        let want = attrs::strings(&req.inputs, "members");
        let drop: Vec<String> = attrs::strings(&req.prior, "members")
            .into_iter()
            .filter(|m| !want.contains(m))
            .collect();
        self.change(resource, role, &want, &drop).await?;
        let binding = self.binding(resource, role).await?.unwrap_or_default();
        Ok(UpdateResponse {
            attributes: self.attributes(
                resource,
                role,
                held(binding, &want).unwrap_or_default(),
                &req.inputs,
            ),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let (resource, role) = split_id(&req.id)?;
        let ours = attrs::strings(&req.attributes, "members");
        match modify(self.store(resource).as_ref(), role, &[], &ours).await {
            Ok(()) => Ok(DeleteResponse { done: true }),
            // The resource is gone, and its policy with it.
            Err(e) if self.gone(&e) => Ok(DeleteResponse { done: true }),
            Err(e) => Err(e),
        }
    }
}

/// The schema fields shared by the member types, after the resource field.
pub(crate) fn member_fields() -> [Field; 3] {
    [
        Field::computed("id", "`{resource}/{role}`."),
        Field::input(
            "role",
            "The role granted (`roles/storage.objectAdmin`, `projects/p/roles/custom`).",
        )
        .required()
        .force_new(),
        Field::input(
            "members",
            "Principals granted the role (`serviceAccount:…`, `user:…`); others who hold it \
             are left alone.",
        )
        .required(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn change_keeps_foreign_bindings_members_and_conditions() {
        let p = json!({
            "etag": "e1",
            "version": 1,
            "bindings": [
                {"role": "roles/a", "members": ["user:x@example.com"]},
                {"role": "roles/b", "members": ["user:y@example.com"],
                 "condition": {"expression": "true", "title": "t"}},
            ]
        });
        let added = apply_change(&p, "roles/a", &s(&["user:me@example.com"]), &[]).unwrap();
        assert_eq!(
            members(&added, "roles/a"),
            s(&["user:x@example.com", "user:me@example.com"])
        );
        assert_eq!(added["etag"], "e1");
        assert_eq!(added["version"], 3);
        assert_eq!(added["bindings"][1], p["bindings"][1]);
        // Already there: nothing to write.
        assert!(apply_change(&added, "roles/a", &s(&["user:me@example.com"]), &[]).is_none());
        // Removing ours leaves the foreign member; removing the last member drops the binding.
        let removed = apply_change(&added, "roles/a", &[], &s(&["user:me@example.com"])).unwrap();
        assert_eq!(members(&removed, "roles/a"), s(&["user:x@example.com"]));
        let gone = apply_change(&removed, "roles/a", &[], &s(&["user:x@example.com"])).unwrap();
        assert_eq!(gone["bindings"].as_array().unwrap().len(), 1);
        // A conditional binding of the same role is not ours: a new unconditional one is made.
        let new = apply_change(&p, "roles/b", &s(&["user:me@example.com"]), &[]).unwrap();
        assert_eq!(members(&new, "roles/b"), s(&["user:me@example.com"]));
        assert_eq!(new["bindings"][1], p["bindings"][1]);
    }

    #[tokio::test(start_paused = true)]
    async fn probing_is_bounded() {
        let mut calls = 0;
        let err = until_visible("x", account_not_visible, || {
            calls += 1;
            async { Err::<(), _>(ProviderError::new(ErrorKind::NotFound, "gone")) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls, PROBES);
        assert!(err.message.contains("still not visible"), "{err}");
        let mut calls = 0;
        let ok = until_visible("x", account_not_visible, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(ProviderError::new(
                        ErrorKind::InvalidInput,
                        "Service account x does not exist.",
                    ))
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(ok, 3);
        // Other errors are not retried.
        let mut calls = 0;
        let _ = until_visible("x", account_not_visible, || {
            calls += 1;
            async { Err::<(), _>(ProviderError::new(ErrorKind::Auth, "denied")) }
        })
        .await;
        assert_eq!(calls, 1);
    }

    #[test]
    fn held_members() {
        let b = s(&["a", "b", "c"]);
        assert_eq!(held(b.clone(), &s(&["a", "z"])), Some(s(&["a"])));
        assert_eq!(held(b.clone(), &[]), Some(b));
        assert_eq!(held(s(&["c"]), &s(&["a"])), None);
        assert_eq!(split_id("b/roles/x").unwrap(), ("b", "roles/x"));
        assert!(split_id("nope").is_err());
    }
}

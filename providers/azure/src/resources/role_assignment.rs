//! `azure_role_assignment`: grants a role on a scope to a principal.
//!
//! Role assignments have no tags. Their name is a GUID the caller chooses, so flyteinfra
//! derives it from the grant itself — scope, role definition and principal, lowercased —
//! as a name-based UUID (version 8, FNV-1a): the same grant always has the same name, a
//! re-sent create is idempotent (ARM answers a `PUT` of the same assignment again with
//! success) and `find` is a `GET` by that name. The same grant under another name
//! (409 `RoleAssignmentExists`) is someone else's: refused with the import hint.
//!
//! Nothing changes in place: every input is force_new.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Address, Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, fnv1a64,
};
use serde_json::{Value as Json, json};

use super::common::{id_value, managed_only, name_of, not_ours, same_id, str_at};
use crate::client::ArmClient;

/// Microsoft.Authorization's api-version for role assignments (synchronous).
const API: &str = "2022-04-01";

/// Between a role assignment's scope and its name in its id.
const ASSIGNMENTS: &str = "/providers/Microsoft.Authorization/roleAssignments";

/// The principal type when the inputs set none.
const DEFAULT_PRINCIPAL_TYPE: &str = "ServicePrincipal";

/// Azure's code for the same grant under another name.
const EXISTS: &str = "RoleAssignmentExists";

const WHAT: &str = "role assignment";

/// `azure_role_assignment`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_role_assignment",
        doc: "A role assignment: `role_definition_id` granted to `principal_id` on `scope`. \
              Its name is a GUID derived from those three, so the same grant always has the \
              same name; the same grant under another name is someone else's.",
        fields: vec![
            Field::computed("id", "The assignment's resource id."),
            Field::computed(
                "name",
                "The assignment's name: a GUID derived from scope, role and principal.",
            ),
            Field::input("scope", "The resource id the role is granted on.")
                .required()
                .force_new(),
            Field::input(
                "role_definition_id",
                "The role's full id, \
                 `/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.",
            )
            .required()
            .force_new(),
            Field::input(
                "principal_id",
                "The object id of the principal granted the role.",
            )
            .required()
            .force_new(),
            Field::input(
                "principal_type",
                "The principal's type (default `ServicePrincipal`).",
            )
            .force_new(),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `azure_role_assignment` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(RoleAssignment {
        client: client.clone(),
        schema: schema(),
    })
}

struct RoleAssignment {
    client: ArmClient,
    schema: Schema,
}

/// The name of the assignment granting `role` to `principal` on `scope`: a UUID (version
/// 8, RFC 9562's custom layout) from two FNV-1a hashes of the three, lowercased. Never
/// change it: existing assignments are found by it.
pub(crate) fn assignment_name(scope: &str, role: &str, principal: &str) -> String {
    let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
    let key = format!("{}\n{}\n{}", norm(scope), norm(role), norm(principal));
    let hi = fnv1a64(format!("flyteinfra role assignment\n{key}").as_bytes());
    let lo = fnv1a64(format!("{key}\nflyteinfra role assignment").as_bytes());
    let hi = (hi & !0xf000) | 0x8000; // version 8
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62); // the RFC variant
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

fn scope_of(inputs: &Attributes) -> Result<&str, ProviderError> {
    Ok(attrs::s(inputs, "scope")?.trim_end_matches('/'))
}

/// The id of the assignment the inputs describe.
fn path(inputs: &Attributes) -> Result<String, ProviderError> {
    let scope = scope_of(inputs)?;
    let name = assignment_name(
        scope,
        attrs::s(inputs, "role_definition_id")?,
        attrs::s(inputs, "principal_id")?,
    );
    Ok(format!("{scope}{ASSIGNMENTS}/{name}"))
}

/// The scope part of an assignment id.
fn scope_in_id(id: &str) -> &str {
    id.to_ascii_lowercase()
        .rfind(&format!("{}/", ASSIGNMENTS.to_ascii_lowercase()))
        .map_or("", |i| &id[..i])
}

/// Whether `body` grants what the inputs ask for.
fn same_grant(body: &Json, inputs: &Attributes) -> bool {
    let p = |at: &str| str_at(body, at);
    attrs::opt_s(inputs, "role_definition_id")
        .is_some_and(|r| same_id(r, p("/properties/roleDefinitionId")))
        && attrs::opt_s(inputs, "principal_id")
            .is_some_and(|r| r.eq_ignore_ascii_case(p("/properties/principalId")))
}

/// The assignment's attributes (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let scope = match str_at(body, "/properties/scope") {
        "" => scope_in_id(cloud_id),
        s => s,
    };
    attrs::attrs([
        ("id", id_value(cloud_id, Some(&Value::from(id)))),
        ("name", Value::from(name_of(cloud_id))),
        ("scope", id_value(scope, prior.get("scope"))),
        (
            "role_definition_id",
            id_value(
                str_at(body, "/properties/roleDefinitionId"),
                prior.get("role_definition_id"),
            ),
        ),
        (
            "principal_id",
            id_value(
                str_at(body, "/properties/principalId"),
                prior.get("principal_id"),
            ),
        ),
        (
            "principal_type",
            Value::from(str_at(body, "/properties/principalType")),
        ),
    ])
}

/// A refused write, naming the roles that may write role assignments.
fn needs_rights(e: ProviderError, scope: &str) -> ProviderError {
    if e.kind != ErrorKind::Auth {
        return e;
    }
    ProviderError::new(
        ErrorKind::Auth,
        format!(
            "flyteinfra may not write role assignments on `{scope}`: that needs the Owner, \
             User Access Administrator or Role Based Access Control Administrator role on \
             that scope (or above it) for the identity flyteinfra runs as. Azure said: {}",
            e.message
        ),
    )
}

/// The GUID of the existing assignment an error message names (Azure's
/// `RoleAssignmentExists` says "The ID of the existing role assignment is {32 hex}"): the
/// last GUID in it that is not part of the scope nor `ours`.
fn guid_in(text: &str, scope: &str, ours: &str) -> Option<String> {
    let scope = scope.to_ascii_lowercase();
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .filter_map(|w| {
            let w = w.trim_matches('-');
            let d: String = w.chars().filter(|c| *c != '-').collect();
            if d.len() != 32 || (w.len() != 32 && w.len() != 36) {
                return None;
            }
            let d = d.to_ascii_lowercase();
            Some(format!(
                "{}-{}-{}-{}-{}",
                &d[..8],
                &d[8..12],
                &d[12..16],
                &d[16..20],
                &d[20..]
            ))
        })
        .rfind(|g| g != ours && !scope.contains(g.as_str()))
}

impl RoleAssignment {
    fn managed(&self, id: &str, body: &Json, inputs: &Attributes) -> Attributes {
        managed_only(attributes(id, body, inputs), inputs, &self.schema)
    }

    /// The refusal of a grant someone else made under another name, with the id to import
    /// (from the scope's assignments, or Azure's message).
    async fn someone_elses(
        &self,
        inputs: &Attributes,
        address: &Address,
        e: &ProviderError,
    ) -> ProviderError {
        let scope = scope_of(inputs).unwrap_or_default();
        let listed = self
            .client
            .list(&format!("{scope}{ASSIGNMENTS}"), API)
            .await
            .unwrap_or_default();
        let existing = listed
            .iter()
            .find(|b| same_grant(b, inputs) && same_id(scope_in_id(str_at(b, "/id")), scope))
            .map(|b| str_at(b, "/id").to_string())
            .or_else(|| {
                let ours = path(inputs).map(|p| name_of(&p).to_string());
                guid_in(&e.message, scope, &ours.unwrap_or_default())
                    .map(|g| format!("{scope}{ASSIGNMENTS}/{g}"))
            });
        match existing {
            Some(id) => not_ours(WHAT, address, &id),
            None => ProviderError::new(
                ErrorKind::AlreadyExists,
                format!(
                    "this {WHAT} already exists under another name and is not flyteinfra's; \
                     flyteinfra never takes over an object it did not make. To manage it with \
                     flyteinfra, run `flyteinfra import {address} \
                     {scope}{ASSIGNMENTS}/<its name>`. Azure said: {}",
                    e.message
                ),
            ),
        }
    }
}

#[async_trait]
impl ResourceType for RoleAssignment {
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
        let found = self.client.get(&path, API).await?;
        Ok(FindResponse {
            id: found.filter(|b| same_grant(b, &req.inputs)).map(|_| path),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let inputs = &req.inputs;
        let path = path(inputs)?;
        let scope = scope_of(inputs)?;
        let body = match self.client.get(&path, API).await? {
            // The name is derived from the grant: this is an earlier attempt's.
            Some(b) if same_grant(&b, inputs) => b,
            // Another grant under this grant's name: not made by flyteinfra.
            Some(_) => return Err(not_ours(WHAT, &req.address, &path)),
            None => {
                let body = json!({"properties": {
                    "roleDefinitionId": attrs::s(inputs, "role_definition_id")?,
                    "principalId": attrs::s(inputs, "principal_id")?,
                    "principalType": attrs::opt_s(inputs, "principal_type")
                        .unwrap_or(DEFAULT_PRINCIPAL_TYPE),
                }});
                match self.client.put(&path, API, &body).await {
                    Ok(a) if a.body.is_object() => a.body,
                    Ok(_) => self.client.get(&path, API).await?.ok_or_else(|| {
                        ProviderError::new(
                            ErrorKind::NotFound,
                            format!("{WHAT} `{path}` disappeared after its PUT"),
                        )
                    })?,
                    Err(e) if e.message.contains(EXISTS) => {
                        return Err(self.someone_elses(inputs, &req.address, &e).await);
                    }
                    Err(e) => return Err(needs_rights(e, scope)),
                }
            }
        };
        Ok(CreateResponse {
            completion: Completion::Ready(self.managed(&path, &body, inputs)),
            id: path,
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        // Every input is force_new: nothing changes in place.
        let body = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("{WHAT} `{}` no longer exists", req.id),
            )
        })?;
        Ok(UpdateResponse {
            attributes: self.managed(&req.id, &body, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.client
            .delete(&req.id, API)
            .await
            .map_err(|e| needs_rights(e, scope_in_id(&req.id)))?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::user_assigned_identity::testing::identity;
    use crate::testutil::{self, SUBSCRIPTION};
    use flyteinfra_azure_double::AzureDouble;
    use flyteinfra_core::requests;

    const T: &str = "azure_role_assignment";
    const BLOB_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
    const NETWORK_CONTRIBUTOR: &str = "4d97b98b-1d4f-4787-a291-c67834d212e7";

    fn role(guid: &str) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
        )
    }

    fn inputs(scope: &str, role_guid: &str, principal: &str) -> Attributes {
        attrs::attrs([
            ("scope", scope.into()),
            ("role_definition_id", role(role_guid).into()),
            ("principal_id", principal.into()),
            ("principal_type", "ServicePrincipal".into()),
        ])
    }

    /// A group (the scope) and an identity (the principal): `(scope, principal)`.
    async fn scope_and_principal(c: &ArmClient) -> (String, String) {
        let (rg, ident) = identity(c).await;
        let scope = format!("{}/resourceGroups/{rg}", c.subscription_path());
        (scope, ident["principal_id"].as_str().unwrap().to_string())
    }

    fn ready(c: CreateResponse) -> Attributes {
        match c.completion {
            Completion::Ready(a) => a,
            Completion::InProgress => panic!("role assignments are synchronous"),
        }
    }

    fn puts(c: &ArmClient) -> u64 {
        c.calls_by_operation()
            .get("PUT roleassignments")
            .copied()
            .unwrap_or(0)
    }

    async fn refresh(rt: &Arc<dyn ResourceType>, id: &str, ins: &Attributes) -> Option<Attributes> {
        rt.read(requests::refresh(T, id, ins))
            .await
            .unwrap()
            .attributes
    }

    #[tokio::test]
    async fn role_assignment_lifecycle() {
        let c = testutil::client();
        let (scope, principal) = scope_and_principal(&c).await;
        let rt = build(&c);
        let ins = inputs(&scope, BLOB_CONTRIBUTOR, &principal);
        let created = rt
            .create(requests::create(T, &ins, "fi-ra-1"))
            .await
            .unwrap();
        let id = created.id.clone();
        let name = assignment_name(&scope, &role(BLOB_CONTRIBUTOR), &principal);
        assert_eq!(id, format!("{scope}{ASSIGNMENTS}/{name}"));
        let a = ready(created);
        assert_eq!(a["name"], Value::from(name.as_str()));
        assert_eq!(refresh(&rt, &id, &ins).await.as_ref(), Some(&a));
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        let cloud = c.get(&id, API).await.unwrap().unwrap();
        assert_eq!(cloud["properties"]["principalType"], "ServicePrincipal");

        // Found by the name the grant gives it (whatever the token); another grant is not.
        let found = rt.find(requests::find(T, &ins, "fi-ra-1")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let found = rt.find(requests::find(T, &ins, "fi-other")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other_role = inputs(&scope, NETWORK_CONTRIBUTOR, &principal);
        let none = rt
            .find(requests::find(T, &other_role, "fi-ra-1"))
            .await
            .unwrap();
        assert_eq!(none.id, None);

        // Re-creating is idempotent: adopted without a PUT, and a PUT sent again (a lost
        // answer's retry) is accepted by Azure as the same assignment.
        let before = puts(&c);
        let again = rt
            .create(requests::create(T, &ins, "fi-ra-1"))
            .await
            .unwrap();
        assert_eq!(again.id, id);
        assert_eq!(ready(again), a);
        assert_eq!(puts(&c), before);
        let body = json!({"properties": {"roleDefinitionId": role(BLOB_CONTRIBUTOR),
            "principalId": principal, "principalType": "ServicePrincipal"}});
        c.put(&id, API, &body).await.unwrap();

        // Nothing is updatable: an update reads it back.
        let up = rt
            .update(requests::update(T, &id, &a, &ins, &[]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up, a);

        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        assert_eq!(refresh(&rt, &id, &ins).await, None);
        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        assert_eq!(
            rt.find(requests::find(T, &ins, "fi-ra-1"))
                .await
                .unwrap()
                .id,
            None
        );
    }

    #[tokio::test]
    async fn a_lost_answer_is_adopted_on_retry() {
        let d = AzureDouble::start();
        let c = testutil::client_of(&d);
        let (scope, principal) = scope_and_principal(&c).await;
        let ins = inputs(&scope, BLOB_CONTRIBUTOR, &principal);
        d.shared()
            .lock()
            .knobs
            .lose_next_response
            .push(("PUT".into(), "roleAssignments/".into()));
        let rt = build(&c);
        let e = rt
            .create(requests::create(T, &ins, "fi-ra-2"))
            .await
            .unwrap_err();
        assert!(e.kind.is_retryable(), "{e}");
        let again = rt
            .create(requests::create(T, &ins, "fi-ra-2"))
            .await
            .unwrap();
        assert_eq!(puts(&c), 1);
        assert_eq!(
            ready(again)["principal_id"],
            Value::from(principal.as_str())
        );
    }

    #[tokio::test]
    async fn the_same_grant_under_another_name_is_refused() {
        let c = testutil::client();
        let (scope, principal) = scope_and_principal(&c).await;
        let theirs = format!("{scope}{ASSIGNMENTS}/0b0c0d0e-1111-4222-8333-444455556666");
        let body = json!({"properties": {"roleDefinitionId": role(BLOB_CONTRIBUTOR),
            "principalId": principal, "principalType": "ServicePrincipal"}});
        c.put(&theirs, API, &body).await.unwrap();
        let rt = build(&c);
        let ins = inputs(&scope, BLOB_CONTRIBUTOR, &principal);
        let e = rt
            .create(requests::create(T, &ins, "fi-ra-3"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(e.message.contains("flyteinfra import"), "{e}");
        assert!(e.message.contains(&theirs), "{e}");
        assert!(c.get(&theirs, API).await.unwrap().is_some());
        assert_eq!(
            rt.find(requests::find(T, &ins, "fi-ra-3"))
                .await
                .unwrap()
                .id,
            None
        );
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let (c, d) = (testutil::client(), testutil::double());
        let (scope, principal) = scope_and_principal(&c).await;
        let ins = inputs(&scope, BLOB_CONTRIBUTOR, &principal);
        let rt = build(&c);
        let id = rt
            .create(requests::create(T, &ins, "fi-ra-4"))
            .await
            .unwrap()
            .id;
        d.shared().lock().resource_mut(&id).unwrap()["properties"]["roleDefinitionId"] =
            json!(role(NETWORK_CONTRIBUTOR));
        let now = refresh(&rt, &id, &ins).await.unwrap();
        assert_eq!(
            now["role_definition_id"],
            Value::from(role(NETWORK_CONTRIBUTOR))
        );
        // Its name no longer matches its grant: not this grant's any more.
        assert_eq!(
            rt.find(requests::find(T, &ins, "fi-ra-4"))
                .await
                .unwrap()
                .id,
            None
        );
        let e = rt
            .create(requests::create(T, &ins, "fi-ra-4"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    }

    #[tokio::test]
    async fn without_the_rights_the_error_names_the_roles() {
        let d = AzureDouble::start();
        let c = testutil::client_of(&d);
        let (scope, principal) = scope_and_principal(&c).await;
        d.shared().lock().knobs.deny_role_assignments = true;
        let rt = build(&c);
        let ins = inputs(&scope, BLOB_CONTRIBUTOR, &principal);
        let e = rt
            .create(requests::create(T, &ins, "fi-ra-5"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth, "{e}");
        for r in [
            "Owner",
            "User Access Administrator",
            "Role Based Access Control Administrator",
        ] {
            assert!(e.message.contains(r), "{r}: {e}");
        }
        assert!(e.message.contains(&scope), "{e}");
        assert!(e.message.contains("AuthorizationFailed"), "{e}");
    }

    #[test]
    fn the_name_is_a_guid_of_the_grant() {
        let (s, r, p) = (
            "/subscriptions/x/resourceGroups/rg",
            role(BLOB_CONTRIBUTOR),
            "11111111-2222-3333-4444-555555555555",
        );
        let n = assignment_name(s, &r, p);
        assert_eq!(n, assignment_name(s, &r, p));
        // Case and a trailing slash do not change the grant.
        assert_eq!(
            n,
            assignment_name(
                &format!("{}/", s.to_uppercase()),
                &r.to_uppercase(),
                &p.to_uppercase()
            )
        );
        // Any part does.
        assert_ne!(
            n,
            assignment_name("/subscriptions/x/resourceGroups/rg2", &r, p)
        );
        assert_ne!(n, assignment_name(s, &role(NETWORK_CONTRIBUTOR), p));
        assert_ne!(
            n,
            assignment_name(s, &r, "11111111-2222-3333-4444-555555555556")
        );
        // A GUID: 8-4-4-4-12 lowercase hex, version 8, the RFC variant.
        let parts: Vec<&str> = n.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
        assert!(
            n.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert!(parts[2].starts_with('8'), "{n}");
        assert!(
            matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'),
            "{n}"
        );
        // Azure's message names the existing assignment in 32 hex digits.
        let msg = format!(
            "RoleAssignmentExists: The role assignment already exists. The ID of the existing \
             role assignment is 0b0c0d0e11114222833344445555666f. Scope {s}/{SUBSCRIPTION}"
        );
        assert_eq!(
            guid_in(&msg, &format!("/subscriptions/{SUBSCRIPTION}"), &n).as_deref(),
            Some("0b0c0d0e-1111-4222-8333-44445555666f")
        );
    }
}

//! Microsoft.ManagedIdentity rules and Microsoft.Authorization role assignments:
//! user-assigned identities (tenant, principal and client GUIDs fixed per identity),
//! their federated identity credentials (at most 20, unique issuer and subject, https
//! issuers, and no two writes to one identity's credentials at once: knob
//! `fic_busy_ms`), and role assignments at any scope (GUID names, idempotent PUTs,
//! one assignment per scope, role and principal, principals the double knows, knob
//! `deny_role_assignments`).
//!
//! Identities and credentials are ordinary resources (synchronous PUT and DELETE);
//! role assignments, like locks, hang off any scope and are served from here.

use std::time::{Duration, Instant};

use axum::response::Response;
use serde_json::{Value, json};

use crate::aks::cluster_principals;
use crate::arm::{Ctx, group_not_found};
use crate::http::{empty, error, json_status};
use crate::path::Target;
use crate::rules::{
    CLUSTER, CREDENTIAL, IDENTITY, ROLE_ASSIGNMENT, TENANT, location, lock_blocking, props_in,
    resource_not_found, scope_locked, stored_id, tags, type_of,
};
use crate::world::{World, now};

pub(crate) const ROLE_ASSIGNMENTS_API: &str = "2022-04-01";
/// Federated identity credentials one identity may have.
const FIC_LIMIT: usize = 20;
/// What follows a scope in a role assignment's key (lowercase).
const ASSIGNMENT_MARK: &str = "/providers/microsoft.authorization/roleassignments/";
const PRINCIPAL_TYPES: [&str; 5] = [
    "User",
    "Group",
    "ServicePrincipal",
    "ForeignGroup",
    "Device",
];

pub(crate) fn build_identity(
    w: &mut World,
    res: &crate::path::Res,
    id: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Response> {
    let name = res.name();
    if !valid_identity_name(name) {
        return Err(error(
            400,
            "InvalidResourceName",
            format!(
                "The resource name '{name}' is invalid: a user-assigned identity name is 3 to 128 letters, digits, hyphens and underscores, starting with a letter or digit."
            ),
        ));
    }
    let loc = location(body, existing, IDENTITY, false)?;
    let mut fixed = |f: &str| {
        existing
            .and_then(|e| e.pointer(&format!("/properties/{f}")))
            .cloned()
            .unwrap_or_else(|| json!(w.uuid()))
    };
    let principal = fixed("principalId");
    let client = fixed("clientId");
    Ok(json!({
        "id": id,
        "name": name,
        "type": IDENTITY,
        "location": loc,
        "tags": tags(body),
        "properties": {
            "tenantId": TENANT,
            "principalId": principal,
            "clientId": client,
            "isolationScope": "None",
        },
    }))
}

pub(crate) fn build_credential(
    w: &mut World,
    res: &crate::path::Res,
    id: &str,
    body: &Value,
) -> Result<Value, Response> {
    let name = res.name();
    if !valid_credential_name(name) {
        return Err(bad_request(format!(
            "The federated identity credential name '{name}' is invalid: it must be 3 to 120 letters, digits, hyphens and underscores, starting with a letter or digit."
        )));
    }
    let p = props_in(body);
    let issuer = p.get("issuer").and_then(Value::as_str).unwrap_or("");
    let host = issuer.strip_prefix("https://").unwrap_or("");
    if host.is_empty() || host.starts_with('/') || issuer.len() > 600 {
        return Err(bad_request(format!(
            "The issuer '{issuer}' is invalid: it must be an https URL of at most 600 characters."
        )));
    }
    let subject = p.get("subject").and_then(Value::as_str).unwrap_or("");
    if subject.is_empty() || subject.len() > 600 {
        return Err(bad_request(
            "The subject is required and must be at most 600 characters.",
        ));
    }
    let audiences = p
        .get("audiences")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty() && a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty())))
        .cloned()
        .ok_or_else(|| bad_request("audiences is required: a non-empty list of strings."))?;
    let me = id.to_ascii_lowercase();
    let identity = identity_of(&me);
    let siblings = w.children(identity, "federatedidentitycredentials");
    let existed = siblings.iter().any(|(k, _)| **k == me);
    if !existed && siblings.len() >= FIC_LIMIT {
        return Err(bad_request(format!(
            "Too many federated identity credentials: the limit of {FIC_LIMIT} per managed identity has been reached for identity '{}'.",
            stored_id(w, identity)
        )));
    }
    let twin = siblings.iter().find(|(k, c)| {
        **k != me
            && c.pointer("/properties/issuer").and_then(Value::as_str) == Some(issuer)
            && c.pointer("/properties/subject").and_then(Value::as_str) == Some(subject)
    });
    if let Some((_, c)) = twin {
        return Err(error(
            409,
            "FederatedIdentityCredentialAlreadyExists",
            format!(
                "A federated identity credential with issuer '{issuer}' and subject '{subject}' already exists on this identity: '{}'.",
                c.get("name").and_then(Value::as_str).unwrap_or("")
            ),
        ));
    }
    let out = json!({
        "id": id,
        "name": name,
        "type": CREDENTIAL,
        "properties": {"issuer": issuer, "subject": subject, "audiences": audiences},
    });
    credential_write(w, &me)?;
    Ok(out)
}

/// A credential write (PUT or DELETE of `key`) about to happen: refused while another
/// write keeps the identity busy; otherwise it keeps it busy for `knobs.fic_busy_ms`.
pub(crate) fn credential_write(w: &mut World, key: &str) -> Result<(), Response> {
    let identity = identity_of(key).to_string();
    let at = Instant::now();
    if w.fic_busy.get(&identity).is_some_and(|until| at < *until) {
        return Err(error(
            409,
            "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
            format!(
                "Too many concurrent writes of federated identity credentials on managed identity '{}'. Federated identity credentials of one managed identity must be written one at a time: retry after the write in progress has finished.",
                stored_id(w, &identity)
            ),
        ));
    }
    let ms = w.knobs.fic_busy_ms;
    if ms > 0 {
        w.fic_busy.insert(identity, at + Duration::from_millis(ms));
    }
    Ok(())
}

/// The lowercased identity id of a lowercased credential key.
fn identity_of(key: &str) -> &str {
    key.rsplit_once("/federatedidentitycredentials/")
        .map_or(key, |(i, _)| i)
}

fn bad_request(message: impl Into<String>) -> Response {
    error(400, "BadRequest", message)
}

/// `(id, key)` of an existing role assignment scope.
fn scope_of(w: &World, ctx: &Ctx, scope: &Target) -> Result<(String, String), Response> {
    match scope {
        Target::Subscription => {
            let id = format!("/subscriptions/{}", ctx.sub);
            Ok((id.clone(), id.to_ascii_lowercase()))
        }
        Target::Group(rg) => {
            let key = crate::path::group_id(&ctx.sub, rg).to_ascii_lowercase();
            if !w.resources.contains_key(&key) {
                return Err(group_not_found(rg));
            }
            Ok((stored_id(w, &key), key))
        }
        Target::Resource(r) => {
            if !w.resources.contains_key(&r.group_key()) {
                return Err(group_not_found(&r.rg));
            }
            let key = r.key();
            if !w.resources.contains_key(&key) {
                return Err(resource_not_found(r));
            }
            Ok((stored_id(w, &key), key))
        }
        _ => Err(error(400, "InvalidScope", "Not a role assignment scope.")),
    }
}

fn denied(ctx: &Ctx, scope: &Target, name: &str, action: &str) -> Response {
    let scope = scope.scope_id(&ctx.sub).unwrap_or_default();
    error(
        403,
        "AuthorizationFailed",
        format!(
            "The client 'flyteinfra-test' with object id '00000000-0000-0000-0000-0000000000cc' does not have authorization to perform action 'Microsoft.Authorization/roleAssignments/{action}' over scope '{scope}/providers/Microsoft.Authorization/roleAssignments/{name}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        ),
    )
}

fn assignment_key(scope_key: &str, name: &str) -> String {
    format!("{scope_key}{ASSIGNMENT_MARK}{}", name.to_ascii_lowercase())
}

/// The role definition GUID (lowercase) of `…/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
fn role_guid(role: &str) -> Option<String> {
    let lower = role.to_ascii_lowercase();
    let (head, guid) = lower.rsplit_once("/providers/microsoft.authorization/roledefinitions/")?;
    let scoped = head.is_empty() || head.starts_with("/subscriptions/");
    (scoped && is_guid(guid)).then(|| guid.to_string())
}

/// Whether a principal is one the double's directory knows: a managed identity's, a
/// cluster's or its kubelet's, or one listed in `knobs.known_principals`.
fn known_principal(w: &World, p: &str) -> bool {
    let same = |x: &str| x.eq_ignore_ascii_case(p);
    w.knobs.known_principals.iter().any(|k| same(k))
        || w.of_type(IDENTITY).iter().any(|(_, v)| {
            v.pointer("/properties/principalId")
                .and_then(Value::as_str)
                .is_some_and(same)
        })
        || w.of_type(CLUSTER)
            .iter()
            .any(|(_, v)| cluster_principals(v).any(same))
}

pub(crate) fn put_assignment(
    w: &mut World,
    ctx: &Ctx,
    scope: &Target,
    name: &str,
    body: &Value,
) -> Response {
    if w.knobs.deny_role_assignments {
        return denied(ctx, scope, name, "write");
    }
    if !is_guid(name) {
        return error(
            400,
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        );
    }
    let (scope_id, scope_key) = match scope_of(w, ctx, scope) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let p = props_in(body);
    let role = p
        .get("roleDefinitionId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(role_id) = role_guid(role) else {
        return error(
            400,
            "InvalidRoleDefinitionId",
            format!(
                "The role definition ID '{role}' is not valid: expected /subscriptions/{{sub}}/providers/Microsoft.Authorization/roleDefinitions/{{guid}}."
            ),
        );
    };
    let principal = p.get("principalId").and_then(Value::as_str).unwrap_or("");
    if !is_guid(principal) {
        return error(
            400,
            "InvalidPrincipalId",
            "A valid principal ID must be provided for role assignment.",
        );
    }
    let principal_type = match p.get("principalType") {
        None | Some(Value::Null) => "ServicePrincipal".to_string(),
        Some(t) => match t
            .as_str()
            .and_then(|t| PRINCIPAL_TYPES.iter().find(|x| x.eq_ignore_ascii_case(t)))
        {
            Some(t) => (*t).to_string(),
            None => {
                return error(
                    400,
                    "InvalidRequestContent",
                    format!(
                        "The principalType {t} is not valid: one of {}.",
                        PRINCIPAL_TYPES.join(", ")
                    ),
                );
            }
        },
    };
    if !known_principal(w, principal) {
        return error(
            400,
            "PrincipalNotFound",
            format!(
                "Principal {} does not exist in the directory {TENANT}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group. See https://aka.ms/docs-principaltype",
                principal.replace('-', "")
            ),
        );
    }
    let key = assignment_key(&scope_key, name);
    if let Some(locked) = lock_blocking(w, &key, false) {
        return scope_locked(
            &format!("{scope_id}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            &locked,
            false,
        );
    }
    let same = |v: &Value| {
        v.pointer("/properties/roleDefinitionId")
            .and_then(Value::as_str)
            .and_then(role_guid)
            .as_deref()
            == Some(role_id.as_str())
            && v.pointer("/properties/principalId")
                .and_then(Value::as_str)
                .is_some_and(|x| x.eq_ignore_ascii_case(principal))
    };
    if let Some(old) = w.resources.get_mut(&key) {
        if !same(old) {
            return error(
                400,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            );
        }
        // The same assignment again: 201 once more, with what may change (description,
        // condition) replaced.
        for f in ["description", "condition", "conditionVersion"] {
            if let Some(v) = p.get(f) {
                old["properties"][f] = v.clone();
            }
        }
        return json_status(201, old.clone());
    }
    let twin = w.resources.iter().find(|(k, v)| {
        k.rsplit_once(ASSIGNMENT_MARK)
            .is_some_and(|(s, n)| s == scope_key && !n.contains('/'))
            && type_of(v).eq_ignore_ascii_case(ROLE_ASSIGNMENT)
            && same(v)
    });
    if let Some((_, v)) = twin {
        return error(
            409,
            "RoleAssignmentExists",
            format!(
                "The role assignment already exists. The ID of the existing role assignment is {}.",
                v.get("name").and_then(Value::as_str).unwrap_or("")
            ),
        );
    }
    let role_id = if role.to_ascii_lowercase().starts_with("/subscriptions/") {
        role.to_string()
    } else {
        format!("/subscriptions/{}{role}", ctx.sub)
    };
    let at = now();
    let mut props = json!({
        "roleDefinitionId": role_id,
        "principalId": principal,
        "principalType": principal_type,
        "scope": scope_id,
        "createdOn": at,
        "updatedOn": at,
    });
    for f in ["description", "condition", "conditionVersion"] {
        if let Some(v) = p.get(f) {
            props[f] = v.clone();
        }
    }
    let ra = json!({
        "id": format!("{scope_id}/providers/Microsoft.Authorization/roleAssignments/{name}"),
        "name": name,
        "type": ROLE_ASSIGNMENT,
        "properties": props,
    });
    w.resources.insert(key, ra.clone());
    json_status(201, ra)
}

fn assignment_not_found(name: &str) -> Response {
    error(
        404,
        "RoleAssignmentNotFound",
        format!("The role assignment '{name}' is not found."),
    )
}

pub(crate) fn get_assignment(w: &World, ctx: &Ctx, scope: &Target, name: &str) -> Response {
    let scope_key = scope
        .scope_id(&ctx.sub)
        .unwrap_or_default()
        .to_ascii_lowercase();
    w.resources
        .get(&assignment_key(&scope_key, name))
        .map_or_else(
            || assignment_not_found(name),
            |v| json_status(200, v.clone()),
        )
}

/// DELETE answers 200 with the assignment it removed, 204 when there was none; a lock
/// of either level at or above the scope refuses it.
pub(crate) fn delete_assignment(w: &mut World, ctx: &Ctx, scope: &Target, name: &str) -> Response {
    if w.knobs.deny_role_assignments {
        return denied(ctx, scope, name, "delete");
    }
    let scope_key = scope
        .scope_id(&ctx.sub)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let key = assignment_key(&scope_key, name);
    if !w.resources.contains_key(&key) {
        return empty(204);
    }
    if let Some(locked) = lock_blocking(w, &key, true) {
        return scope_locked(&stored_id(w, &key), &locked, true);
    }
    match w.resources.remove(&key) {
        Some(v) => json_status(200, v),
        None => empty(204),
    }
}

/// `GET {scope}/providers/Microsoft.Authorization/roleAssignments`: the assignments at,
/// above and below the scope; `$filter=atScope()` keeps those at or above it,
/// `$filter=principalId eq '{id}'` those of one principal.
pub(crate) fn list_assignments(w: &World, ctx: &Ctx, scope: &Target) -> Response {
    let (_, scope_key) = match scope_of(w, ctx, scope) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = ctx
        .query
        .split('&')
        .find_map(|kv| {
            kv.strip_prefix("$filter=")
                .or_else(|| kv.strip_prefix("%24filter="))
        })
        .map(percent_decode)
        .unwrap_or_default();
    let lower = filter.to_ascii_lowercase();
    let at_scope = lower.contains("atscope()");
    let principal = lower
        .split_once("principalid eq '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map(|(p, _)| p.to_string());
    let value: Vec<Value> = w
        .resources
        .iter()
        .filter_map(|(k, v)| {
            let (s, n) = k.rsplit_once(ASSIGNMENT_MARK)?;
            if n.contains('/') || !type_of(v).eq_ignore_ascii_case(ROLE_ASSIGNMENT) {
                return None;
            }
            let above = scope_key == s || scope_key.starts_with(&format!("{s}/"));
            let below = s.starts_with(&format!("{scope_key}/"));
            let of_principal = principal.as_ref().is_none_or(|p| {
                v.pointer("/properties/principalId")
                    .and_then(Value::as_str)
                    .is_some_and(|x| x.eq_ignore_ascii_case(p))
            });
            ((above || (below && !at_scope)) && of_principal).then(|| v.clone())
        })
        .collect();
    json_status(200, json!({ "value": value }))
}

/// Decodes `%XX` escapes and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits.
pub(crate) fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// `^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$`.
fn valid_identity_name(n: &str) -> bool {
    let b = n.as_bytes();
    (3..=128).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`.
fn valid_credential_name(n: &str) -> bool {
    let b = n.as_bytes();
    (3..=120).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_names_roles_and_filters() {
        assert!(is_guid("ba92f5b4-2d11-453d-a403-e96b0029c9fe"));
        for bad in [
            "ba92f5b42d11453da403e96b0029c9fe",
            "not-a-guid",
            "ba92f5b4-2d11-453d-a403-e96b0029c9fg",
        ] {
            assert!(!is_guid(bad), "{bad}");
        }
        assert!(valid_identity_name("flyte-backend_mi") && !valid_identity_name("ab"));
        assert!(valid_credential_name("flyte-backend") && !valid_credential_name("-ab"));
        let role = "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/BA92F5B4-2d11-453d-a403-e96b0029c9fe";
        assert_eq!(
            role_guid(role).as_deref(),
            Some("ba92f5b4-2d11-453d-a403-e96b0029c9fe")
        );
        assert!(role_guid("/providers/Microsoft.Authorization/roleDefinitions/ba92f5b4-2d11-453d-a403-e96b0029c9fe").is_some());
        assert!(
            role_guid("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/reader")
                .is_none()
        );
        assert_eq!(
            percent_decode("principalId%20eq%20%27ab%27+x%2"),
            "principalId eq 'ab' x%2"
        );
    }
}

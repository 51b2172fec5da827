//! IAM Admin v1 (`iam.googleapis.com`): service accounts, custom project roles, and the
//! IAM policy engine shared with Resource Manager's project policies.
//!
//! Service accounts live at `projects/{id}/serviceAccounts/{email}`, their policies at
//! `…/{email}/iamPolicy`, roles at `projects/{id}/roles/{roleId}` (deleted roles stay,
//! with `deleted: true`, as Google keeps them for 7 days).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::error::{aborted, already_exists, failed_precondition, google_error, invalid};
use crate::util::{self, body, ok, s};
use crate::world::{Shared, World};

type Q = Query<HashMap<String, String>>;

/// The IAM Admin routes.
pub(crate) fn router() -> Router<Shared> {
    let p = "/v1/projects/{project}";
    Router::new()
        .route(
            &format!("{p}/serviceAccounts"),
            get(list_accounts).post(create_account),
        )
        .route(
            &format!("{p}/serviceAccounts/{{account}}"),
            get(get_account)
                .patch(patch_account)
                .put(update_account)
                .delete(delete_account)
                .post(account_verb),
        )
        .route(&format!("{p}/roles"), get(list_roles).post(create_role))
        // The Rust client lists every kind of role here, with `parent` in the query.
        .route("/v1/roles", get(list_roles_by_parent))
        .route(
            &format!("{p}/roles/{{role}}"),
            get(get_role)
                .patch(patch_role)
                .delete(delete_role)
                .post(undelete_role),
        )
}

fn sa_not_found(what: &str) -> Response {
    google_error(
        404,
        "NOT_FOUND",
        format!("Service account {what} does not exist."),
        vec![],
    )
}

// ---- policies ----

const CONFLICT: &str = "There were concurrent policy changes. Please retry the whole \
                        read-modify-write with exponential backoff.";

/// The member a simulated concurrent writer adds (see `Knobs::iam_conflicts`).
pub const FOREIGN_MEMBER: &str = "user:someone-else@example.com";

/// The policy stored at `key`, or `default` when it was never written.
pub(crate) fn read_policy(w: &World, key: &str, default: &Value) -> Value {
    w.objects
        .get(key)
        .cloned()
        .unwrap_or_else(|| default.clone())
}

/// Bindings grouped by role and condition, members sorted and deduplicated, empty
/// bindings dropped: the form Google stores and returns.
fn normalize(bindings: &[Value]) -> Vec<Value> {
    let mut by: BTreeMap<(String, String), (Value, BTreeSet<String>)> = BTreeMap::new();
    for b in bindings {
        let cond = b.get("condition").cloned().unwrap_or(Value::Null);
        let e = by
            .entry((s(b, "role").to_string(), cond.to_string()))
            .or_insert_with(|| (cond, BTreeSet::new()));
        for m in b["members"].as_array().into_iter().flatten() {
            if let Some(m) = m.as_str() {
                e.1.insert(m.to_string());
            }
        }
    }
    by.into_iter()
        .filter(|(_, (_, m))| !m.is_empty())
        .map(|((role, _), (cond, members))| {
            let mut b = json!({"role": role, "members": members});
            if !cond.is_null() {
                b["condition"] = cond;
            }
            b
        })
        .collect()
}

/// Checks one member; a service account of project `pid` must exist and be visible.
fn check_member(w: &mut World, pid: &str, m: &str) -> Result<(), Response> {
    const KINDS: &[&str] = &[
        "user:",
        "group:",
        "domain:",
        "serviceAccount:",
        "deleted:",
        "principal://",
        "principalSet://",
        "projectOwner:",
        "projectEditor:",
        "projectViewer:",
    ];
    if m == "allUsers" || m == "allAuthenticatedUsers" || m.starts_with("deleted:") {
        return Ok(());
    }
    if !KINDS.iter().any(|k| m.starts_with(k) && m.len() > k.len()) {
        return Err(invalid(format!("Invalid member: {m}")));
    }
    let Some(email) = m.strip_prefix("serviceAccount:") else {
        return Ok(());
    };
    // Workload Identity members (`p.svc.id.goog[ns/ksa]`) name no account object.
    let Some(project) = email
        .split_once('@')
        .and_then(|(_, d)| d.strip_suffix(".iam.gserviceaccount.com"))
    else {
        return Ok(());
    };
    if project != pid {
        return Ok(());
    }
    let key = format!("projects/{pid}/serviceAccounts/{email}");
    if !w.objects.contains_key(&key) || take_invisible(w, email) {
        return Err(invalid(format!("Service account {email} does not exist.")));
    }
    Ok(())
}

/// The `setIamPolicy` of every resource: validates the members, meets the simulated
/// concurrent writer, checks the etag, stores and returns the new policy.
pub(crate) fn set_policy(
    w: &mut World,
    pid: &str,
    key: &str,
    default: &Value,
    req: &Value,
) -> Result<Value, Response> {
    let Some(policy) = req.get("policy").filter(|p| p.is_object()) else {
        return Err(invalid(
            "Request contains an invalid argument: policy is required.",
        ));
    };
    let bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
    let version = policy["version"].as_i64().unwrap_or(0);
    for b in &bindings {
        if s(b, "role").is_empty() {
            return Err(invalid("A binding has no role."));
        }
        if b.get("condition").is_some() && version < 3 {
            return Err(invalid(
                "Policies with conditional bindings must set version to 3.",
            ));
        }
        for m in b["members"].as_array().into_iter().flatten() {
            check_member(w, pid, m.as_str().unwrap_or(""))?;
        }
    }
    let mut current = read_policy(w, key, default);
    if w.knobs.iam_conflicts > 0 {
        w.knobs.iam_conflicts -= 1;
        let mut bs = current["bindings"].as_array().cloned().unwrap_or_default();
        bs.push(json!({"role": "roles/viewer", "members": [FOREIGN_MEMBER]}));
        current["bindings"] = json!(normalize(&bs));
        current["etag"] = json!(util::etag(w));
        current["version"] = json!(current["version"].as_i64().unwrap_or(1).max(1));
        w.objects.insert(key.to_string(), current);
        return Err(aborted(CONFLICT));
    }
    let sent = s(policy, "etag");
    if !sent.is_empty() && sent != s(&current, "etag") {
        return Err(aborted(CONFLICT));
    }
    let mask = s(req, "updateMask");
    let mut new = Map::new();
    let keep_bindings = !mask.is_empty() && !mask.split(',').any(|f| f.trim() == "bindings");
    let bindings = if keep_bindings {
        current["bindings"].as_array().cloned().unwrap_or_default()
    } else {
        normalize(&bindings)
    };
    let conditional = bindings.iter().any(|b| b.get("condition").is_some());
    new.insert(
        "version".into(),
        json!(if conditional { 3 } else { version.clamp(1, 3) }),
    );
    new.insert("etag".into(), json!(util::etag(w)));
    if !bindings.is_empty() {
        new.insert("bindings".into(), json!(bindings));
    }
    let audit = if mask.split(',').any(|f| f.trim() == "auditConfigs") {
        policy.get("auditConfigs")
    } else {
        current.get("auditConfigs")
    };
    if let Some(a) = audit {
        new.insert("auditConfigs".into(), a.clone());
    }
    let new = Value::Object(new);
    w.objects.insert(key.to_string(), new.clone());
    Ok(new)
}

// ---- service accounts ----

/// Takes one invisible read of `email`; true while the account is still invisible.
fn take_invisible(w: &mut World, email: &str) -> bool {
    match w.invisible.get_mut(email) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// The storage key of the account a path names (`projects/{p|-}/serviceAccounts/{email
/// or uniqueId}`), counting one read against a new account's invisibility.
fn find_account(w: &mut World, project: &str, account: &str) -> Result<String, Response> {
    let shown = format!("projects/{project}/serviceAccounts/{account}");
    let key = if account.contains('@') {
        let pid = match project {
            "-" => account
                .split_once('@')
                .and_then(|(_, d)| d.split('.').next())
                .unwrap_or("")
                .to_string(),
            p => w.project_id(p),
        };
        Some(format!("projects/{pid}/serviceAccounts/{account}"))
            .filter(|k| w.objects.contains_key(k))
    } else {
        w.objects
            .iter()
            .find(|(k, v)| k.contains("/serviceAccounts/") && s(v, "uniqueId") == account)
            .map(|(k, _)| k.clone())
    };
    let Some(key) = key else {
        return Err(sa_not_found(&shown));
    };
    let email = s(&w.objects[&key], "email").to_string();
    if take_invisible(w, &email) {
        return Err(sa_not_found(&shown));
    }
    Ok(key)
}

fn valid_account_id(id: &str) -> bool {
    let b = id.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

async fn create_account(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let id = s(&req, "accountId");
    if !valid_account_id(id) {
        return invalid(format!(
            "Invalid account ID '{id}': it must be 6 to 30 lowercase letters, digits or hyphens, \
             start with a letter and not end with a hyphen."
        ));
    }
    let email = format!("{id}@{pid}.iam.gserviceaccount.com");
    let key = format!("projects/{pid}/serviceAccounts/{email}");
    if w.objects.contains_key(&key) {
        return google_error(
            409,
            "ALREADY_EXISTS",
            format!("Service account {id} already exists within project projects/{pid}."),
            vec![],
        );
    }
    let unique = util::numeric_id(&mut w, 21);
    let sa = &req["serviceAccount"];
    let mut v = json!({
        "name": key,
        "projectId": pid,
        "uniqueId": unique,
        "email": email,
        "etag": util::etag(&mut w),
        "oauth2ClientId": unique,
    });
    for f in ["displayName", "description"] {
        if !s(sa, f).is_empty() {
            v[f] = sa[f].clone();
        }
    }
    w.objects.insert(key, v.clone());
    let n = w.knobs.sa_invisible_reads;
    if n > 0 {
        w.invisible.insert(email, n);
    }
    ok(v)
}

async fn list_accounts(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Q,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let items = w.children(&format!("projects/{pid}/serviceAccounts"));
    let size = q
        .get("pageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0usize);
    let size = if size == 0 { 20 } else { size.min(100) };
    let token = q.get("pageToken").map(String::as_str).unwrap_or("");
    let (accounts, next) = util::page(items, size, token);
    let mut out = json!({});
    if !accounts.is_empty() {
        out["accounts"] = json!(accounts);
    }
    if let Some(n) = next {
        out["nextPageToken"] = json!(n);
    }
    ok(out)
}

async fn get_account(
    State(sh): State<Shared>,
    Path((project, account)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    match find_account(&mut w, &project, &account) {
        Ok(key) => ok(w.objects[&key].clone()),
        Err(e) => e,
    }
}

/// Applies `fields` of `from` to the account at `key`, bumps its etag, returns it.
fn update_fields(
    w: &mut World,
    key: &str,
    from: &Value,
    fields: &[&str],
) -> Result<Value, Response> {
    for f in fields {
        if !["displayName", "description"].contains(f) {
            return Err(invalid(format!("Field {f} cannot be updated.")));
        }
    }
    let etag = util::etag(w);
    let v = w.objects.get_mut(key).expect("found above");
    let sent = s(from, "etag");
    if !sent.is_empty() && sent != s(v, "etag") {
        return Err(aborted(CONFLICT));
    }
    for f in fields {
        match from.get(*f) {
            Some(x) if x.as_str().is_some_and(|x| !x.is_empty()) => v[*f] = x.clone(),
            _ => {
                if let Some(o) = v.as_object_mut() {
                    o.remove(*f);
                }
            }
        }
    }
    v["etag"] = json!(etag);
    Ok(v.clone())
}

async fn patch_account(
    State(sh): State<Shared>,
    Path((project, account)): Path<(String, String)>,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let key = match find_account(&mut w, &project, &account) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let mask = s(&req, "updateMask");
    if mask.is_empty() {
        return invalid("updateMask is required.");
    }
    let fields: Vec<&str> = mask.split(',').map(str::trim).collect();
    match update_fields(&mut w, &key, &req["serviceAccount"], &fields) {
        Ok(v) => ok(v),
        Err(e) => e,
    }
}

/// The older full-replace update (`PUT`): display name and description.
async fn update_account(
    State(sh): State<Shared>,
    Path((project, account)): Path<(String, String)>,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let key = match find_account(&mut w, &project, &account) {
        Ok(k) => k,
        Err(e) => return e,
    };
    match update_fields(&mut w, &key, &req, &["displayName", "description"]) {
        Ok(v) => ok(v),
        Err(e) => e,
    }
}

async fn delete_account(
    State(sh): State<Shared>,
    Path((project, account)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    let key = match find_account(&mut w, &project, &account) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let email = s(&w.objects[&key], "email").to_string();
    w.apply(crate::world::Effect::Delete(key));
    w.invisible.remove(&email);
    ok(json!({}))
}

/// `POST …/serviceAccounts/{account}:getIamPolicy` and `:setIamPolicy`.
async fn account_verb(
    State(sh): State<Shared>,
    Path((project, verb)): Path<(String, String)>,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some((account, verb)) = verb.rsplit_once(':') else {
        return crate::error::not_found(&format!("projects/{project}/serviceAccounts/{verb}"));
    };
    let mut w = sh.lock();
    let key = match find_account(&mut w, &project, account) {
        Ok(k) => k,
        Err(e) => return e,
    };
    let pid = s(&w.objects[&key], "projectId").to_string();
    let pkey = format!("{key}/iamPolicy");
    // An account's policy starts empty; Google shows that as just the etag `ACAB`.
    let default = json!({"etag": "ACAB"});
    match verb {
        "getIamPolicy" => ok(read_policy(&w, &pkey, &default)),
        "setIamPolicy" => match set_policy(&mut w, &pid, &pkey, &default, &req) {
            Ok(p) => ok(p),
            Err(e) => e,
        },
        _ => google_error(
            501,
            "UNIMPLEMENTED",
            format!("serviceAccounts.{verb} is not served by the test double"),
            vec![],
        ),
    }
}

// ---- custom roles ----

fn role_not_found(key: &str) -> Response {
    google_error(
        404,
        "NOT_FOUND",
        format!("The role named {key} was not found."),
        vec![],
    )
}

fn valid_role_id(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn check_permissions(role: &Value) -> Result<(), Response> {
    for p in role["includedPermissions"].as_array().into_iter().flatten() {
        let p = p.as_str().unwrap_or("");
        if p.split('.').count() < 3 || p.split('.').any(str::is_empty) {
            return Err(invalid(format!("Permission {p} is not valid.")));
        }
    }
    Ok(())
}

/// A role as `view` shows it: `BASIC` (the list default) leaves out the permissions.
fn role_view(v: &Value, full: bool) -> Value {
    let mut v = v.clone();
    if !full && let Some(o) = v.as_object_mut() {
        o.remove("includedPermissions");
    }
    v
}

async fn create_role(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let id = s(&req, "roleId");
    if !valid_role_id(id) {
        return invalid(format!(
            "The role id {id} is invalid: use 3 to 64 letters, digits, underscores or periods."
        ));
    }
    let key = format!("projects/{pid}/roles/{id}");
    if let Some(cur) = w.objects.get(&key) {
        let msg = if cur["deleted"] == json!(true) {
            format!(
                "A role named {id} in projects/{pid} was deleted recently; undelete it, or use \
                 another role id (a deleted role's id stays taken for 7 days)."
            )
        } else {
            return already_exists(&key);
        };
        return google_error(409, "ALREADY_EXISTS", msg, vec![]);
    }
    let role = &req["role"];
    if let Err(e) = check_permissions(role) {
        return e;
    }
    let mut v = json!({
        "name": key,
        "title": s(role, "title"),
        "description": s(role, "description"),
        "includedPermissions": role["includedPermissions"].as_array().cloned().unwrap_or_default(),
        "stage": role.get("stage").cloned().unwrap_or(json!("ALPHA")),
        "etag": util::etag(&mut w),
    });
    if s(&v, "description").is_empty() {
        v.as_object_mut().map(|o| o.remove("description"));
    }
    w.objects.insert(key, v.clone());
    ok(v)
}

async fn get_role(
    State(sh): State<Shared>,
    Path((project, role)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/roles/{role}");
    w.objects
        .get(&key)
        .cloned()
        .map_or_else(|| role_not_found(&key), ok)
}

async fn list_roles(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Q,
) -> Response {
    roles_of(&sh, &project, &q)
}

/// `GET /v1/roles?parent=projects/{p}`; without a project parent (predefined or
/// organization roles) the double knows none.
async fn list_roles_by_parent(State(sh): State<Shared>, Query(q): Q) -> Response {
    match q.get("parent").and_then(|p| p.strip_prefix("projects/")) {
        Some(project) => roles_of(&sh, project, &q),
        None => ok(json!({})),
    }
}

fn roles_of(sh: &Shared, project: &str, q: &HashMap<String, String>) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(project);
    let full = q.get("view").is_some_and(|v| v == "FULL" || v == "1");
    let show_deleted = q.get("showDeleted").is_some_and(|v| v == "true");
    let items: Vec<Value> = w
        .children(&format!("projects/{pid}/roles"))
        .iter()
        .filter(|r| show_deleted || r["deleted"] != json!(true))
        .map(|r| role_view(r, full))
        .collect();
    let size = q
        .get("pageSize")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0usize);
    let size = if size == 0 { 300 } else { size.min(1000) };
    let token = q.get("pageToken").map(String::as_str).unwrap_or("");
    let (roles, next) = util::page(items, size, token);
    let mut out = json!({});
    if !roles.is_empty() {
        out["roles"] = json!(roles);
    }
    if let Some(n) = next {
        out["nextPageToken"] = json!(n);
    }
    ok(out)
}

async fn patch_role(
    State(sh): State<Shared>,
    Path((project, role)): Path<(String, String)>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if let Err(e) = check_permissions(&req) {
        return e;
    }
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/roles/{role}");
    let etag = util::etag(&mut w);
    let Some(v) = w.objects.get_mut(&key) else {
        return role_not_found(&key);
    };
    if v["deleted"] == json!(true) {
        return failed_precondition(format!("You can't update the deleted role {key}."));
    }
    let sent = s(&req, "etag");
    if !sent.is_empty() && sent != s(v, "etag") {
        return aborted(CONFLICT);
    }
    const MUTABLE: &[&str] = &["title", "description", "includedPermissions", "stage"];
    let mask = q.get("updateMask").map(String::as_str).unwrap_or("");
    let fields: Vec<&str> = if mask.is_empty() {
        MUTABLE.to_vec()
    } else {
        mask.split(',').map(str::trim).collect()
    };
    for f in &fields {
        if !MUTABLE.contains(f) {
            return invalid(format!("Field {f} of a role cannot be updated."));
        }
        let new = match (*f, req.get(*f)) {
            (_, Some(x)) => x.clone(),
            ("includedPermissions", None) => json!([]),
            ("stage", None) => json!("ALPHA"),
            _ => json!(""),
        };
        v[*f] = new;
    }
    v["etag"] = json!(etag);
    ok(v.clone())
}

async fn delete_role(
    State(sh): State<Shared>,
    Path((project, role)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/roles/{role}");
    let etag = util::etag(&mut w);
    let Some(v) = w.objects.get_mut(&key) else {
        return role_not_found(&key);
    };
    if v["deleted"] != json!(true) {
        v["deleted"] = json!(true);
        v["etag"] = json!(etag);
    }
    ok(v.clone())
}

/// `POST …/roles/{id}:undelete`.
async fn undelete_role(
    State(sh): State<Shared>,
    Path((project, verb)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let Some(role) = verb.strip_suffix(":undelete") else {
        return role_not_found(&format!("projects/{pid}/roles/{verb}"));
    };
    let key = format!("projects/{pid}/roles/{role}");
    let etag = util::etag(&mut w);
    let Some(v) = w.objects.get_mut(&key) else {
        return role_not_found(&key);
    };
    if v["deleted"] == json!(true) {
        if let Some(o) = v.as_object_mut() {
            o.remove("deleted");
        }
        v["etag"] = json!(etag);
    }
    ok(v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_merged_and_sorted() {
        let b = normalize(&[
            json!({"role": "roles/b", "members": ["user:z@x", "user:a@x"]}),
            json!({"role": "roles/a", "members": ["user:a@x"]}),
            json!({"role": "roles/b", "members": ["user:a@x"]}),
            json!({"role": "roles/c", "members": []}),
        ]);
        assert_eq!(
            json!(b),
            json!([
                {"role": "roles/a", "members": ["user:a@x"]},
                {"role": "roles/b", "members": ["user:a@x", "user:z@x"]},
            ])
        );
    }

    #[test]
    fn members_of_missing_accounts_are_refused() {
        let mut w = World::default();
        assert!(check_member(&mut w, "p", "serviceAccount:x@p.iam.gserviceaccount.com").is_err());
        assert!(check_member(&mut w, "p", "serviceAccount:p.svc.id.goog[ns/ksa]").is_ok());
        assert!(
            check_member(
                &mut w,
                "p",
                "serviceAccount:x@other.iam.gserviceaccount.com"
            )
            .is_ok()
        );
        assert!(check_member(&mut w, "p", "nobody").is_err());
    }
}

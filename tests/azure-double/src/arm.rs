//! The one handler behind every ARM path: api-version, subscription and registration
//! checks, then subscriptions, providers, resource groups, locks, role assignments
//! (in [`crate::identity`]), operations and the generic resource PUT/GET/PATCH/DELETE
//! and child lists (type rules in [`crate::rules`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use serde_json::{Value, json};

use crate::http::{body, empty, error, json_status, method_not_allowed, unrouted, with_headers};
use crate::identity::{self, ROLE_ASSIGNMENTS_API};
use crate::lro::{self, Urls};
use crate::path::{Res, Target, group_id, parse};
use crate::postgres::{self, config_body};
use crate::rules::{
    self, GROUP, Kind, LOCK, LOCK_MARK, REGIONS, ROLE_ASSIGNMENT, SECURE_TRANSPORT, TENANT,
    check_delete, check_parent, lock_blocking, norm_location, not_found, render,
    resource_not_found, scope_locked, set_state, type_of,
};
use crate::storage;
use crate::world::{OpKind, Reg, Shared, World};

/// What every handler needs to know about the call.
pub(crate) struct Ctx {
    /// `http://host:port`, for the URLs in async headers.
    pub base: String,
    pub sub: String,
    pub method: String,
    /// The request path (no query).
    pub path: String,
    pub api: String,
    /// The request's query string (no `?`).
    pub query: String,
    /// The `$skiptoken` of a list's next page (this double's tokens are item offsets).
    pub skip: usize,
}

const SUBSCRIPTION_API: &str = "2022-12-01";
const RESOURCES_API: &str = "2021-04-01";
const LOCKS_API: &str = "2020-05-01";

/// Serves every path that is not a control route.
pub(crate) async fn handle(
    State(sh): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let m = method.as_str().to_string();
    let shown = uri.to_string();
    let path = uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() < 2 || !segs[0].eq_ignore_ascii_case("subscriptions") {
        return unrouted(&m, &shown);
    }
    let sub = segs[1].to_string();
    let Some(target) = parse(&sub, &segs[2..]) else {
        return unrouted(&m, &shown);
    };
    let api = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("api-version="))
        .map(str::to_string);
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut w = sh.lock();
    let Some(api) = api.filter(|a| !a.is_empty()) else {
        return error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    if let Some(want) = expected_api(&w, &target)
        && api != want
    {
        return error(
            400,
            "InvalidApiVersionParameter",
            format!("The api-version '{api}' is invalid. The supported versions are '{want}'."),
        );
    }
    if w.knobs
        .unknown_subscriptions
        .iter()
        .any(|s| s.eq_ignore_ascii_case(&sub))
    {
        return error(
            404,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        );
    }
    for ns in namespaces(&target) {
        if *w.registration(&sub, &ns) != Reg::Registered {
            return error(
                409,
                "MissingSubscriptionRegistration",
                format!(
                    "The subscription is not registered to use namespace '{ns}'. See https://aka.ms/rps-not-found for how to register subscriptions."
                ),
            );
        }
    }
    let skip = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("$skiptoken="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let ctx = Ctx {
        base: format!("http://{host}"),
        sub,
        method: m.clone(),
        path,
        api,
        query: uri.query().unwrap_or("").to_string(),
        skip,
    };
    let body = if matches!(method, Method::PUT | Method::PATCH | Method::POST) {
        match body(&bytes) {
            Ok(b) => b,
            Err(r) => return r,
        }
    } else {
        Value::Null
    };
    let w = &mut *w;
    match (&target, m.as_str()) {
        (Target::Subscription, "GET") => subscription(&ctx),
        (Target::Locations, "GET") => locations(&ctx),
        (Target::Provider(ns), "GET") => provider(w, &ctx, ns, false),
        (Target::Register(ns), "POST") => provider(w, &ctx, ns, true),
        (Target::OpStatus(id), "GET") => lro::status(w, id),
        (Target::OpResult(id), "GET") => lro::result(w, &ctx, id),
        (Target::Group(rg), "PUT") => put_group(w, &ctx, rg, &body),
        (Target::Group(rg), "GET" | "HEAD") => get_group(w, &ctx, rg, m == "HEAD"),
        (Target::Group(rg), "PATCH") => patch_group(w, &ctx, rg, &body),
        (Target::Group(rg), "DELETE") => delete_group(w, &ctx, rg),
        (Target::GroupResources(rg), "GET") => group_resources(w, &ctx, rg),
        (Target::Locks(scope, Some(name)), "PUT") => put_lock(w, &ctx, scope, name, &body),
        (Target::Locks(scope, Some(name)), "GET") => get_lock(w, &ctx, scope, name),
        (Target::Locks(scope, Some(name)), "DELETE") => delete_lock(w, &ctx, scope, name),
        (Target::Locks(scope, None), "GET") => list_locks(w, &ctx, scope),
        (Target::RoleAssignments(scope, Some(name)), "PUT") => {
            identity::put_assignment(w, &ctx, scope, name, &body)
        }
        (Target::RoleAssignments(scope, Some(name)), "GET") => {
            identity::get_assignment(w, &ctx, scope, name)
        }
        (Target::RoleAssignments(scope, Some(name)), "DELETE") => {
            identity::delete_assignment(w, &ctx, scope, name)
        }
        (Target::RoleAssignments(scope, None), "GET") => identity::list_assignments(w, &ctx, scope),
        (Target::Resource(res), "PUT") => put_resource(w, &ctx, res, &body, &shown),
        (Target::Resource(res), "GET") => get_resource(w, res, &shown),
        (Target::Resource(res), "PATCH") => patch_resource(w, &ctx, res, &body),
        (Target::Resource(res), "DELETE") => delete_resource(w, &ctx, res),
        (Target::Collection(parent, child), "GET") => list_children(w, parent, child, &shown),
        (Target::Collection(parent, child), "POST")
            if child.eq_ignore_ascii_case("listClusterUserCredential")
                && parent
                    .type_key()
                    .eq_ignore_ascii_case("microsoft.containerservice/managedclusters") =>
        {
            crate::aks::user_credential(w, parent)
        }
        _ => method_not_allowed(&m),
    }
}

/// The api-version a path must carry (none to check for operations the double does not
/// know, or types only planted by tests).
fn expected_api(w: &World, t: &Target) -> Option<String> {
    let v = match t {
        Target::Subscription | Target::Locations => SUBSCRIPTION_API,
        Target::Provider(_)
        | Target::Register(_)
        | Target::Group(_)
        | Target::GroupResources(_) => RESOURCES_API,
        Target::Locks(..) => LOCKS_API,
        Target::RoleAssignments(..) => ROLE_ASSIGNMENTS_API,
        Target::OpStatus(id) | Target::OpResult(id) => {
            return w.ops.get(id).map(|o| o.api_version.clone());
        }
        Target::Resource(r) => Kind::of(&r.type_key()).api_version()?,
        Target::Collection(r, child) => {
            Kind::of(&format!("{}/{child}", r.type_key())).api_version()?
        }
    };
    Some(v.to_string())
}

/// The provider namespaces a path goes through (each must be registered).
fn namespaces(t: &Target) -> Vec<String> {
    match t {
        Target::Resource(r) | Target::Collection(r, _) => vec![r.ns.clone()],
        Target::Locks(scope, _) | Target::RoleAssignments(scope, _) => {
            let mut v = vec!["Microsoft.Authorization".to_string()];
            v.extend(namespaces(scope));
            v
        }
        _ => Vec::new(),
    }
}

fn subscription(ctx: &Ctx) -> Response {
    json_status(
        200,
        json!({
            "id": format!("/subscriptions/{}", ctx.sub),
            "subscriptionId": ctx.sub,
            "displayName": "flyteinfra test",
            "state": "Enabled",
            "tenantId": TENANT,
        }),
    )
}

fn locations(ctx: &Ctx) -> Response {
    let value: Vec<Value> = REGIONS
        .iter()
        .map(|(name, display, regional)| {
            json!({
                "id": format!("/subscriptions/{}/locations/{name}", ctx.sub),
                "name": name,
                "displayName": display,
                "regionalDisplayName": regional,
            })
        })
        .collect();
    json_status(200, json!({ "value": value }))
}

/// GET of a provider (a poll of a registration in progress) or its `register` action.
fn provider(w: &mut World, ctx: &Ctx, ns: &str, register: bool) -> Response {
    let polls = w.knobs.polls_to_finish;
    let reg = w.registration(&ctx.sub, ns);
    *reg = match (*reg, register) {
        (Reg::Registered, _) => Reg::Registered,
        (Reg::NotRegistered, true) => Reg::Registering(polls),
        (state, true) => state,
        (Reg::Registering(0), false) => Reg::Registered,
        (Reg::Registering(n), false) => Reg::Registering(n - 1),
        (Reg::NotRegistered, false) => Reg::NotRegistered,
    };
    let state = match *reg {
        Reg::NotRegistered => "NotRegistered",
        Reg::Registering(_) => "Registering",
        Reg::Registered => "Registered",
    };
    json_status(
        200,
        json!({
            "id": format!("/subscriptions/{}/providers/{ns}", ctx.sub),
            "namespace": ns,
            "registrationState": state,
        }),
    )
}

pub(crate) fn group_not_found(rg: &str) -> Response {
    error(
        404,
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

fn group_being_deleted(rg: &str) -> Response {
    error(
        409,
        "ResourceGroupBeingDeleted",
        format!(
            "The resource group '{rg}' is in deprovisioning state and cannot perform this operation."
        ),
    )
}

fn deleting(v: &Value) -> bool {
    v.pointer("/properties/provisioningState") == Some(&json!("Deleting"))
}

fn put_group(w: &mut World, ctx: &Ctx, rg: &str, body: &Value) -> Response {
    let id = group_id(&ctx.sub, rg);
    let key = id.to_ascii_lowercase();
    let Some(given) = body.get("location").and_then(Value::as_str) else {
        return error(
            400,
            "LocationRequired",
            "The location property is required for this definition.",
        );
    };
    let loc = norm_location(given);
    if !REGIONS.iter().any(|r| r.0 == loc) {
        return error(
            400,
            "LocationNotAvailableForResourceGroup",
            format!("The provided location '{given}' is not available for resource group."),
        );
    }
    if let Some(scope) = lock_blocking(w, &key, false) {
        return scope_locked(&id, &scope, false);
    }
    let tags = rules::tags(body);
    if let Some(g) = w.resources.get_mut(&key) {
        if deleting(g) {
            return group_being_deleted(rg);
        }
        let old = g.get("location").and_then(Value::as_str).unwrap_or("");
        if old != loc {
            return error(
                409,
                "InvalidResourceGroupLocation",
                format!(
                    "Invalid resource group location '{given}'. The Resource group already exists in location '{old}'."
                ),
            );
        }
        g["tags"] = tags;
        return json_status(200, g.clone());
    }
    let g = json!({
        "id": id,
        "name": rg,
        "type": GROUP,
        "location": loc,
        "tags": tags,
        "properties": {"provisioningState": "Succeeded"},
    });
    w.resources.insert(key, g.clone());
    json_status(201, g)
}

fn get_group(w: &mut World, ctx: &Ctx, rg: &str, head: bool) -> Response {
    let key = group_id(&ctx.sub, rg).to_ascii_lowercase();
    lro::poll_resource(w, &key);
    match (w.resources.get(&key), head) {
        (Some(_), true) => empty(204),
        (Some(g), false) => json_status(200, g.clone()),
        (None, true) => empty(404),
        (None, false) => group_not_found(rg),
    }
}

fn patch_group(w: &mut World, ctx: &Ctx, rg: &str, body: &Value) -> Response {
    let id = group_id(&ctx.sub, rg);
    let key = id.to_ascii_lowercase();
    if let Some(scope) = lock_blocking(w, &key, false) {
        return scope_locked(&id, &scope, false);
    }
    let Some(g) = w.resources.get_mut(&key) else {
        return group_not_found(rg);
    };
    if let Some(tags) = body.get("tags") {
        g["tags"] = tags.clone();
    }
    json_status(200, g.clone())
}

fn delete_group(w: &mut World, ctx: &Ctx, rg: &str) -> Response {
    let key = group_id(&ctx.sub, rg).to_ascii_lowercase();
    let Some(g) = w.resources.get_mut(&key) else {
        return group_not_found(rg);
    };
    let id = g["id"].as_str().unwrap_or(&key).to_string();
    if let Some(scope) = lock_blocking(w, &key, true) {
        return scope_locked(&id, &scope, true);
    }
    if let Some(g) = w.resources.get_mut(&key) {
        set_state(g, "Deleting");
    }
    let s = lro::start(w, ctx, OpKind::DeleteGroup, vec![key], Urls::Group);
    with_headers(empty(202), &lro::headers(w, &s, false, true))
}

/// The top-level resources of a group (no children, no locks, no role assignments).
fn group_resources(w: &World, ctx: &Ctx, rg: &str) -> Response {
    let key = group_id(&ctx.sub, rg).to_ascii_lowercase();
    if !w.resources.contains_key(&key) {
        return group_not_found(rg);
    }
    let prefix = format!("{key}/providers/");
    let value: Vec<Value> = w
        .resources
        .iter()
        .filter(|(k, v)| {
            k.strip_prefix(&prefix)
                .is_some_and(|rest| rest.split('/').count() == 3)
                && ![LOCK, ROLE_ASSIGNMENT]
                    .iter()
                    .any(|t| type_of(v).eq_ignore_ascii_case(t))
        })
        .map(|(_, v)| {
            let mut item = serde_json::Map::new();
            for f in ["id", "name", "type", "location", "tags"] {
                if let Some(x) = v.get(f) {
                    item.insert(f.into(), x.clone());
                }
            }
            Value::Object(item)
        })
        .collect();
    // ARM pages long lists: `nextLink` is an absolute URL with its own api-version.
    let size = w.knobs.page_size as usize;
    if size == 0 {
        return json_status(200, json!({ "value": value }));
    }
    let page: Vec<Value> = value.iter().skip(ctx.skip).take(size).cloned().collect();
    let mut body = json!({ "value": page });
    if ctx.skip + size < value.len() {
        body["nextLink"] = json!(format!(
            "{}{}?api-version={}&$skiptoken={}",
            ctx.base,
            ctx.path,
            ctx.api,
            ctx.skip + size
        ));
    }
    json_status(200, body)
}

/// The lowercased id of a lock scope, if it exists.
fn scope_key(w: &World, ctx: &Ctx, scope: &Target) -> Result<(String, String), Response> {
    let id = scope.scope_id(&ctx.sub).unwrap_or_default();
    let key = id.to_ascii_lowercase();
    if matches!(scope, Target::Subscription) || w.resources.contains_key(&key) {
        let id = rules::stored_id(w, &key);
        let id = if matches!(scope, Target::Subscription) {
            format!("/subscriptions/{}", ctx.sub)
        } else {
            id
        };
        return Ok((id, key));
    }
    Err(error(
        404,
        "ResourceNotFound",
        format!("The scope '{id}' of the lock was not found."),
    ))
}

fn lock_not_found(name: &str) -> Response {
    error(
        404,
        "LockNotFound",
        format!("The lock '{name}' could not be found."),
    )
}

fn put_lock(w: &mut World, ctx: &Ctx, scope: &Target, name: &str, body: &Value) -> Response {
    let (scope_id, scope_key) = match scope_key(w, ctx, scope) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let level = body
        .pointer("/properties/level")
        .and_then(Value::as_str)
        .unwrap_or("");
    let Some(level) = ["CanNotDelete", "ReadOnly"]
        .into_iter()
        .find(|l| l.eq_ignore_ascii_case(level))
    else {
        return error(
            400,
            "InvalidLockLevel",
            format!(
                "The lock level '{level}' is not valid. Valid levels are 'CanNotDelete' and 'ReadOnly'."
            ),
        );
    };
    let key = format!("{scope_key}{LOCK_MARK}{}", name.to_ascii_lowercase());
    let existed = w.resources.contains_key(&key);
    let id = if existed {
        rules::stored_id(w, &key)
    } else {
        format!("{scope_id}/providers/Microsoft.Authorization/locks/{name}")
    };
    let mut props = json!({
        "level": level,
        "owners": body.pointer("/properties/owners").cloned().unwrap_or_else(|| json!([])),
    });
    if let Some(notes) = body.pointer("/properties/notes") {
        props["notes"] = notes.clone();
    }
    let lock = json!({"id": id, "name": name, "type": LOCK, "properties": props});
    w.resources.insert(key, lock.clone());
    json_status(if existed { 200 } else { 201 }, lock)
}

fn get_lock(w: &World, ctx: &Ctx, scope: &Target, name: &str) -> Response {
    let id = scope.scope_id(&ctx.sub).unwrap_or_default();
    let key = format!(
        "{}{LOCK_MARK}{}",
        id.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    );
    w.resources
        .get(&key)
        .map_or_else(|| lock_not_found(name), |l| json_status(200, l.clone()))
}

fn delete_lock(w: &mut World, ctx: &Ctx, scope: &Target, name: &str) -> Response {
    let id = scope.scope_id(&ctx.sub).unwrap_or_default();
    let key = format!(
        "{}{LOCK_MARK}{}",
        id.to_ascii_lowercase(),
        name.to_ascii_lowercase()
    );
    empty(if w.resources.remove(&key).is_some() {
        200
    } else {
        204
    })
}

fn list_locks(w: &World, ctx: &Ctx, scope: &Target) -> Response {
    let (_, scope_key) = match scope_key(w, ctx, scope) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let prefix = format!("{scope_key}{LOCK_MARK}");
    let value: Vec<Value> = w
        .resources
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| !k[prefix.len()..].contains('/'))
        .map(|(_, v)| v.clone())
        .collect();
    json_status(200, json!({ "value": value }))
}

/// Refuses a write into a group that is absent or being deleted.
fn group_ready(w: &World, res: &Res) -> Result<(), Response> {
    match w.resources.get(&res.group_key()) {
        None => Err(group_not_found(&res.rg)),
        Some(g) if deleting(g) => Err(group_being_deleted(&res.rg)),
        Some(_) => Ok(()),
    }
}

/// Starts an operation on `res`, reporting where its type's operations do: private DNS
/// has its own status path, storage its `asyncoperations`, AKS its `operations`; the
/// others live under their namespace and the region of their top-level resource.
fn start_op(
    w: &mut World,
    ctx: &Ctx,
    kind: Kind,
    res: &Res,
    op: OpKind,
    targets: Vec<String>,
) -> lro::Started {
    let loc = w
        .resources
        .get(&res.top().key())
        .and_then(|v| v.get("location"))
        .and_then(Value::as_str)
        .unwrap_or("global")
        .to_string();
    let urls = match kind {
        Kind::Zone | Kind::Link => Urls::PrivateDns,
        Kind::Account => Urls::Storage { loc: &loc },
        Kind::Cluster | Kind::Pool => Urls::Aks { loc: &loc },
        _ => Urls::Provider {
            ns: &res.ns,
            loc: &loc,
        },
    };
    lro::start(w, ctx, op, targets, urls)
}

fn put_resource(w: &mut World, ctx: &Ctx, res: &Res, body: &Value, shown: &str) -> Response {
    let kind = Kind::of(&res.type_key());
    if kind == Kind::Other {
        return unrouted(&ctx.method, shown);
    }
    if let Err(r) = group_ready(w, res).and_then(|()| check_parent(w, kind, res)) {
        return r;
    }
    let key = res.key();
    let existing = w.resources.get(&key).cloned();
    let id = existing
        .as_ref()
        .map_or_else(|| res.id(), |_| rules::stored_id(w, &key));
    if let Some(scope) = lock_blocking(w, &key, false) {
        return scope_locked(&id, &scope, false);
    }
    let built = match rules::build(w, kind, res, &id, body, existing.as_ref()) {
        Ok(b) => b,
        Err(r) => return r,
    };
    for k in &built.removed {
        if let Some(scope) = lock_blocking(w, k, true) {
            return scope_locked(&rules::stored_id(w, k), &scope, true);
        }
    }
    for k in &built.removed {
        w.remove_tree(k);
    }
    let update = existing.is_some();
    if let Some(code) = kind.sync_put(update) {
        w.resources.insert(key.clone(), built.body);
        let answer = render(w, &key).unwrap_or(Value::Null);
        return json_status(code, answer);
    }
    let mut main = built.body;
    set_state(&mut main, if update { "Updating" } else { "Creating" });
    w.resources.insert(key.clone(), main);
    if let Some(s) = built.secret {
        w.secrets.insert(key.clone(), s);
    }
    let mut targets = vec![key.clone()];
    for (k, mut child) in built.children {
        let state = if w.resources.contains_key(&k) {
            "Updating"
        } else {
            "Creating"
        };
        set_state(&mut child, state);
        w.resources.insert(k.clone(), child);
        targets.push(k);
    }
    let op = if update {
        OpKind::Update
    } else {
        OpKind::Create
    };
    let started = start_op(w, ctx, kind, res, op, targets);
    if kind == Kind::Account {
        // A new storage account: 202 with no body and only a `Location` to poll.
        return with_headers(empty(202), &lro::headers(w, &started, false, true));
    }
    let mut answer = render(w, &key).unwrap_or(Value::Null);
    // AKS answers with the state its GETs show; the others say `Accepted` at first.
    let first = match kind {
        Kind::Cluster | Kind::Pool => "Creating",
        _ => "Accepted",
    };
    set_state(&mut answer, if update { "Updating" } else { first });
    let (code, location) = match (kind, update) {
        (Kind::Config, _) => (202, true),
        (_, true) => (200, false),
        (_, false) => (201, false),
    };
    with_headers(
        json_status(code, answer),
        &lro::headers(w, &started, true, location),
    )
}

fn get_resource(w: &mut World, res: &Res, shown: &str) -> Response {
    let kind = Kind::of(&res.type_key());
    if !w.resources.contains_key(&res.group_key()) {
        return group_not_found(&res.rg);
    }
    let key = res.key();
    lro::poll_resource(w, &key);
    if let Some(v) = render(w, &key) {
        return json_status(200, v);
    }
    match kind {
        Kind::Other => unrouted("GET", shown),
        Kind::Config
            if res.name().eq_ignore_ascii_case(SECURE_TRANSPORT)
                && res
                    .parent()
                    .is_some_and(|p| w.resources.contains_key(&p.key())) =>
        {
            json_status(
                200,
                config_body(&res.id(), res.name(), "on", "system-default"),
            )
        }
        Kind::BlobService => storage::default_blob_service(w, res)
            .filter(|_| check_parent(w, kind, res).is_ok())
            .map_or_else(|| not_found(w, kind, res), |v| json_status(200, v)),
        _ => not_found(w, kind, res),
    }
}

fn patch_resource(w: &mut World, ctx: &Ctx, res: &Res, body: &Value) -> Response {
    let kind = Kind::of(&res.type_key());
    if !matches!(kind, Kind::Server | Kind::Account) {
        return method_not_allowed("PATCH");
    }
    if let Err(r) = group_ready(w, res) {
        return r;
    }
    let key = res.key();
    let Some(existing) = w.resources.get(&key).cloned() else {
        return resource_not_found(res);
    };
    let id = rules::stored_id(w, &key);
    if let Some(scope) = lock_blocking(w, &key, false) {
        return scope_locked(&id, &scope, false);
    }
    if kind == Kind::Account {
        // A storage account PATCH answers at once.
        return match storage::patch_account(w, &existing, body) {
            Ok(v) => {
                w.resources.insert(key.clone(), v);
                json_status(200, render(w, &key).unwrap_or(Value::Null))
            }
            Err(r) => r,
        };
    }
    let (mut v, secret) = match postgres::patch_server(&existing, body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    set_state(&mut v, "Updating");
    w.resources.insert(key.clone(), v);
    if let Some(s) = secret {
        w.secrets.insert(key.clone(), s);
    }
    let started = start_op(w, ctx, kind, res, OpKind::Update, vec![key.clone()]);
    let answer = render(w, &key).unwrap_or(Value::Null);
    with_headers(
        json_status(202, answer),
        &lro::headers(w, &started, true, true),
    )
}

fn delete_resource(w: &mut World, ctx: &Ctx, res: &Res) -> Response {
    let kind = Kind::of(&res.type_key());
    if matches!(kind, Kind::Config | Kind::BlobService) {
        return method_not_allowed("DELETE");
    }
    let key = res.key();
    if !w.resources.contains_key(&key) {
        return empty(204);
    }
    let id = rules::stored_id(w, &key);
    if let Some(scope) = lock_blocking(w, &key, true) {
        return scope_locked(&id, &scope, true);
    }
    if let Err(r) = check_delete(w, kind, &key) {
        return r;
    }
    if kind == Kind::Credential
        && let Err(r) = identity::credential_write(w, &key)
    {
        return r;
    }
    if kind.sync_delete() {
        w.remove_tree(&key);
        return empty(200);
    }
    if let Some(v) = w.resources.get_mut(&key) {
        set_state(v, "Deleting");
    }
    let started = start_op(w, ctx, kind, res, OpKind::Delete, vec![key]);
    with_headers(empty(202), &lro::headers(w, &started, true, true))
}

/// `GET {parent}/{childType}`: the parent's children of that type, `{"value":[…]}`.
fn list_children(w: &World, parent: &Res, child: &str, shown: &str) -> Response {
    let mut any = parent.clone();
    any.types.push((child.to_string(), String::new()));
    let kind = Kind::of(&any.type_key());
    if !kind.listable() {
        return unrouted("GET", shown);
    }
    if !w.resources.contains_key(&any.group_key()) {
        return group_not_found(&any.rg);
    }
    if let Err(r) = check_parent(w, kind, &any) {
        return r;
    }
    let value: Vec<Value> = w
        .children(&parent.key(), &child.to_ascii_lowercase())
        .into_iter()
        .filter_map(|(k, _)| render(w, k))
        .collect();
    json_status(200, json!({ "value": value }))
}

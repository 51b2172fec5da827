//! Cloud SQL Admin API v1 (`sqladmin.googleapis.com`): instances, databases, users and
//! their operations, on the paths `google-cloud-sql-v1` calls.
//!
//! Every mutation answers a `sql#operation`. Each GET of the operation is one poll; it is
//! `DONE` after `knobs.sql_polls` polls, and only then does its change land. As on the
//! real service there is one operation at a time per instance: a second mutation while
//! one runs gets 409 `operationInProgress`.
//!
//! Approximations, chosen where the real service is not fully documented:
//! - a failed create (`knobs.fail_next_ops`) leaves the instance `FAILED` (it still has
//!   to be deleted); other failed operations change nothing;
//! - list `filter` understands space- or `AND`-separated `field.path:value` (or `=`)
//!   terms such as `settings.userLabels.env:prod`; anything else in a term is compared
//!   literally;
//! - a new PostgreSQL instance has the `postgres` database and user, a MySQL one the
//!   `root` user, as on the real service; nothing checks that `privateNetwork` is peered;
//! - `settingsVersion` and etags are not checked on patch (the last writer wins).

// Handlers answer either JSON or a finished error `Response`; boxing that error would
// only add noise to every handler.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use crate::util::now as now_rfc3339;
use crate::world::{Effect, Shared, World};

/// Handlers answer JSON or a ready error response.
type Reply = Result<Json<Value>, Response>;

/// The URL prefix of `selfLink`s and `targetLink`s.
const BASE: &str = "https://sqladmin.googleapis.com/v1";

/// The Cloud SQL Admin routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/projects/{project}/instances",
            get(list_instances).post(insert_instance),
        )
        .route(
            "/v1/projects/{project}/instances/{instance}",
            get(get_instance)
                .patch(patch_instance)
                .delete(delete_instance),
        )
        .route(
            "/v1/projects/{project}/instances/{instance}/databases",
            get(list_databases).post(insert_database),
        )
        .route(
            "/v1/projects/{project}/instances/{instance}/databases/{database}",
            get(get_database)
                .patch(update_database)
                .put(update_database)
                .delete(delete_database),
        )
        .route(
            "/v1/projects/{project}/instances/{instance}/users",
            get(list_users)
                .post(insert_user)
                .put(update_user)
                .delete(delete_user),
        )
        .route(
            "/v1/projects/{project}/instances/{instance}/users/{name}",
            get(get_user),
        )
        .route("/v1/projects/{project}/operations", get(list_operations))
        .route(
            "/v1/projects/{project}/operations/{operation}",
            get(get_operation),
        )
}

// ---------------------------------------------------------------------------------------
// Helpers shared with the GKE module.

/// Milliseconds since the epoch (GKE puts them in operation names).
pub(crate) fn now_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
}

/// Merges `patch` into `dst` the way Google's PATCH does: objects field by field, a
/// `null` removes the field, anything else (lists included) replaces.
pub(crate) fn merge(dst: &mut Value, patch: &Value) {
    match (dst, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}

/// A request body as JSON; an empty body is `{}`.
pub(crate) fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| crate::error::invalid(format!("Invalid JSON payload received. {e}")))
}

/// A JSON number that the client may have sent as a string (proto int64 is a string).
pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

// ---------------------------------------------------------------------------------------
// Errors, in Cloud SQL's shape (it still fills the legacy `errors[]` with a `reason`).

fn sql_error(code: u16, status: &str, reason: &str, message: &str) -> Response {
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "status": status,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    });
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(body)).into_response()
}

fn no_instance() -> Response {
    sql_error(
        404,
        "NOT_FOUND",
        "instanceDoesNotExist",
        "The Cloud SQL instance does not exist.",
    )
}

fn bad_request(message: &str) -> Response {
    sql_error(400, "INVALID_ARGUMENT", "invalid", message)
}

fn invalid_state() -> Response {
    sql_error(
        400,
        "FAILED_PRECONDITION",
        "invalidState",
        "The instance or operation is not in an appropriate state to handle the request.",
    )
}

fn in_progress() -> Response {
    sql_error(
        409,
        "ABORTED",
        "operationInProgress",
        "Operation failed because another operation was already in progress. \
         Try your request after the current operation is complete.",
    )
}

// ---------------------------------------------------------------------------------------
// Keys and enum spellings.

fn inst_key(project: &str, instance: &str) -> String {
    format!("projects/{project}/instances/{instance}")
}

fn db_key(project: &str, instance: &str, db: &str) -> String {
    format!("projects/{project}/instances/{instance}/databases/{db}")
}

/// Users are unique by name and host (host is empty for PostgreSQL).
fn user_key(project: &str, instance: &str, name: &str, host: &str) -> String {
    if host.is_empty() {
        format!("projects/{project}/instances/{instance}/users/{name}")
    } else {
        format!("projects/{project}/instances/{instance}/users/{name}@{host}")
    }
}

fn op_key(project: &str, op: &str) -> String {
    format!("projects/{project}/operations/{op}")
}

/// The client sends enums as numbers (`$alt=json;enum-encoding=int`); the double keeps
/// the database version readable, since it decides the engine's default users.
fn database_version_name(v: &Value) -> Value {
    const NAMES: &[(i64, &str)] = &[
        (6, "MYSQL_5_7"),
        (20, "MYSQL_8_0"),
        (398, "MYSQL_8_4"),
        (9, "POSTGRES_9_6"),
        (18, "POSTGRES_10"),
        (10, "POSTGRES_11"),
        (19, "POSTGRES_12"),
        (23, "POSTGRES_13"),
        (110, "POSTGRES_14"),
        (172, "POSTGRES_15"),
        (272, "POSTGRES_16"),
        (408, "POSTGRES_17"),
        (557, "POSTGRES_18"),
    ];
    match v.as_i64() {
        Some(n) => NAMES
            .iter()
            .find(|(k, _)| *k == n)
            .map_or(v.clone(), |(_, s)| json!(s)),
        None => v.clone(),
    }
}

fn engine(instance: &Value) -> &str {
    let v = instance["databaseVersion"].as_str().unwrap_or("");
    if v.starts_with("POSTGRES") {
        "postgres"
    } else if v.starts_with("MYSQL") {
        "mysql"
    } else {
        "other"
    }
}

fn valid_instance_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 98
        && !name.ends_with('-')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

// ---------------------------------------------------------------------------------------
// Operations.

/// The running operation targeting `instance`, if any.
fn running_op(w: &World, project: &str, instance: &str) -> Option<String> {
    let prefix = format!("projects/{project}/operations/");
    w.ops
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .find(|(_, op)| op.polls_left > 0 && op.body["targetId"] == instance)
        .map(|(k, _)| k.clone())
}

/// Starts a `sql#operation` of `op_type` on `instance`; answers its body as the insert
/// call returns it.
fn start(w: &mut World, project: &str, op_type: &str, instance: &str, effect: Effect) -> Value {
    let n = w.next();
    let name = format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        0x5a1d_0000u64 + n,
        n % 0xffff,
        0x4000 + n % 0x0fff,
        0x8000 + n % 0x0fff,
        n
    );
    let body = json!({
        "kind": "sql#operation",
        "name": name,
        "operationType": op_type,
        "status": "PENDING",
        "user": "flyteinfra@gcp-double.iam.gserviceaccount.com",
        "insertTime": now_rfc3339(),
        "targetId": instance,
        "targetLink": format!("{BASE}/projects/{project}/instances/{instance}"),
        "targetProject": project,
        "selfLink": format!("{BASE}/projects/{project}/operations/{name}"),
    });
    let key = op_key(project, &name);
    let polls = w.knobs.sql_polls;
    w.start_op(key.clone(), body, polls, effect);
    if polls == 0 {
        complete(w, &key);
    }
    w.ops[&key].body.clone()
}

/// Marks operation `key` done and makes the state changes its effect does not carry.
fn complete(w: &mut World, key: &str) {
    let Some(op) = w.ops.get(key) else {
        return;
    };
    let body = op.body.clone();
    let error = op.error.clone();
    finish(w, &body, error.as_deref());
    let now = now_rfc3339();
    if let Some(op) = w.ops.get_mut(key) {
        op.body["status"] = json!("DONE");
        if op.body.get("startTime").is_none() {
            op.body["startTime"] = json!(now);
        }
        op.body["endTime"] = json!(now);
        if let Some(message) = error {
            op.body["error"] = json!({
                "kind": "sql#operationErrors",
                "errors": [{"kind": "sql#operationError", "code": "INTERNAL_ERROR", "message": message}],
            });
        }
    }
}

/// What an operation does on completion beyond its [`Effect`] (already applied when it
/// succeeded): instance lifecycle states, IPs, default users, name reservation.
fn finish(w: &mut World, op: &Value, error: Option<&str>) {
    let project = op["targetProject"].as_str().unwrap_or_default().to_string();
    let instance = op["targetId"].as_str().unwrap_or_default().to_string();
    let key = inst_key(&project, &instance);
    match (op["operationType"].as_str().unwrap_or_default(), error) {
        ("CREATE", None) => {
            let n = w.next();
            let Some(inst) = w.objects.get_mut(&key) else {
                return;
            };
            inst["state"] = json!("RUNNABLE");
            let ip = &inst["settings"]["ipConfiguration"];
            let public = ip["ipv4Enabled"].as_bool().unwrap_or(true);
            let private = ip["privateNetwork"].as_str().is_some_and(|s| !s.is_empty());
            let mut ips = Vec::new();
            if public {
                ips.push(json!({"type": "PRIMARY", "ipAddress": format!("34.{}.{}.{}", 60 + n / 62_500 % 100, n / 250 % 250, n % 250 + 2)}));
            }
            if private {
                ips.push(json!({"type": "PRIVATE", "ipAddress": format!("10.{}.{}.{}", 30 + n / 62_500 % 100, n / 250 % 250, n % 250 + 3)}));
            }
            inst["ipAddresses"] = json!(ips);
            let engine = engine(inst).to_string();
            let defaults: &[(&str, &str)] = match engine.as_str() {
                "postgres" => &[("postgres", "")],
                "mysql" => &[("root", "%")],
                _ => &[],
            };
            for (user, host) in defaults {
                let mut u = json!({"kind": "sql#user", "name": user, "instance": instance, "project": project, "etag": format!("{n}")});
                if !host.is_empty() {
                    u["host"] = json!(host);
                }
                w.objects
                    .insert(user_key(&project, &instance, user, host), u);
            }
            if engine == "postgres" {
                let d = database(&project, &instance, "postgres", &json!({}), "postgres");
                w.objects.insert(db_key(&project, &instance, "postgres"), d);
            }
        }
        ("CREATE", Some(_)) => {
            if let Some(inst) = w.objects.get_mut(&key) {
                inst["state"] = json!("FAILED");
            }
        }
        ("DELETE", None) => {
            w.knobs.reserved_sql_names.insert(instance);
        }
        ("DELETE" | "UPDATE", Some(_)) => {
            if let Some(inst) = w.objects.get_mut(&key) {
                inst["state"] = json!("RUNNABLE");
            }
        }
        _ => {}
    }
}

async fn get_operation(
    State(s): State<Shared>,
    Path((project, operation)): Path<(String, String)>,
) -> Reply {
    let mut w = s.lock();
    let key = op_key(&project, &operation);
    let Some(before) = w.ops.get(&key).map(|op| op.polls_left) else {
        return Err(sql_error(
            404,
            "NOT_FOUND",
            "operationDoesNotExist",
            &format!("The Cloud SQL operation {operation} does not exist."),
        ));
    };
    w.poll(&key);
    let left = w.ops[&key].polls_left;
    if before > 0 && left == 0 {
        complete(&mut w, &key);
    } else if left > 0 {
        let now = now_rfc3339();
        let op = w.ops.get_mut(&key).expect("present");
        op.body["status"] = json!("RUNNING");
        if op.body.get("startTime").is_none() {
            op.body["startTime"] = json!(now);
        }
    }
    Ok(Json(w.ops[&key].body.clone()))
}

async fn list_operations(
    State(s): State<Shared>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let w = s.lock();
    let prefix = format!("projects/{project}/operations/");
    let instance = q.get("instance").map(String::as_str).unwrap_or("");
    let mut items: Vec<Value> = w
        .ops
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, op)| instance.is_empty() || op.body["targetId"] == instance)
        .map(|(_, op)| op.body.clone())
        .collect();
    // Newest first, as the real list orders them.
    items.reverse();
    Ok(Json(json!({"kind": "sql#operationsList", "items": items})))
}

// ---------------------------------------------------------------------------------------
// Instances.

/// The instance, or 404.
fn instance<'a>(w: &'a World, project: &str, instance: &str) -> Result<&'a Value, Response> {
    w.objects
        .get(&inst_key(project, instance))
        .ok_or_else(no_instance)
}

/// The instance, runnable and idle, ready for a new mutation; or the error the real
/// service answers.
fn ready(w: &World, project: &str, name: &str) -> Result<Value, Response> {
    let inst = instance(w, project, name)?.clone();
    if running_op(w, project, name).is_some() {
        return Err(in_progress());
    }
    if inst["state"] != "RUNNABLE" {
        return Err(invalid_state());
    }
    Ok(inst)
}

async fn insert_instance(
    State(s): State<Shared>,
    Path(project): Path<String>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let name = req["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(sql_error(
            400,
            "INVALID_ARGUMENT",
            "required",
            "Missing parameter: name.",
        ));
    }
    if !valid_instance_name(&name) {
        return Err(bad_request(&format!(
            "Invalid request: instance name ({name})."
        )));
    }
    if req["settings"]["tier"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return Err(bad_request(
            "Invalid request: Invalid Tier (null) for (SECOND_GEN) Edition (ENTERPRISE).",
        ));
    }
    let ip = &req["settings"]["ipConfiguration"];
    if ip["ipv4Enabled"] == false
        && ip["privateNetwork"].as_str().unwrap_or_default().is_empty()
        && ip.get("pscConfig").is_none()
    {
        return Err(bad_request(
            "Invalid request: At least one of Public IP or Private IP or PSC connectivity must be enabled.",
        ));
    }
    let mut w = s.lock();
    w.sql_insert_attempts.push(name.clone());
    let key = inst_key(&project, &name);
    if w.objects.contains_key(&key) {
        return Err(sql_error(
            409,
            "ALREADY_EXISTS",
            "instanceAlreadyExists",
            "The Cloud SQL instance already exists.",
        ));
    }
    let reject = w.knobs.reject_next_sql_inserts > 0;
    if reject {
        w.knobs.reject_next_sql_inserts -= 1;
    }
    if reject || w.knobs.reserved_sql_names.contains(&name) {
        return Err(sql_error(
            409,
            "ALREADY_EXISTS",
            "instanceAlreadyExists",
            "The Cloud SQL instance already exists. When you delete an instance, you can't \
             reuse the name of the deleted instance until one week from the deletion date.",
        ));
    }
    let n = w.next();
    let region = req["region"]
        .as_str()
        .filter(|r| !r.is_empty())
        .unwrap_or("us-central1")
        .to_string();
    let mut inst = req.clone();
    let version = match req.get("databaseVersion") {
        Some(v) => database_version_name(v),
        None => json!("MYSQL_8_0"),
    };
    let defaults = json!({
        "kind": "sql#instance",
        "backendType": "SECOND_GEN",
        "instanceType": "CLOUD_SQL_INSTANCE",
        "settings": {
            "kind": "sql#settings",
            "activationPolicy": "ALWAYS",
            "availabilityType": "ZONAL",
            "pricingPlan": "PER_USE",
            "dataDiskType": "PD_SSD",
            "dataDiskSizeGb": "10",
            "storageAutoResize": true,
            "storageAutoResizeLimit": "0",
            "ipConfiguration": {"ipv4Enabled": true},
            "backupConfiguration": {"kind": "sql#backupConfiguration", "enabled": false, "startTime": "00:00"},
        },
    });
    let mut merged = defaults;
    merge(&mut merged, &inst);
    inst = merged;
    let zone = inst["settings"]["locationPreference"]["zone"]
        .as_str()
        .filter(|z| !z.is_empty())
        .map_or_else(|| format!("{region}-a"), str::to_string);
    let fields = json!({
        "name": name,
        "project": project,
        "region": region,
        "databaseVersion": version,
        "state": "PENDING_CREATE",
        "connectionName": format!("{project}:{region}:{name}"),
        "selfLink": format!("{BASE}/projects/{project}/instances/{name}"),
        "gceZone": zone,
        "serviceAccountEmailAddress": format!("p{n:012}-abc{n}@gcp-sa-cloud-sql.iam.gserviceaccount.com"),
        "createTime": now_rfc3339(),
        "etag": format!("etag-{n}"),
        "settings": {"settingsVersion": "1"},
    });
    merge(&mut inst, &fields);
    if let Some(o) = inst.as_object_mut() {
        o.remove("rootPassword");
        o.remove("ipAddresses");
    }
    w.objects.insert(key, inst);
    Ok(Json(start(&mut w, &project, "CREATE", &name, Effect::None)))
}

async fn get_instance(
    State(s): State<Shared>,
    Path((project, name)): Path<(String, String)>,
) -> Reply {
    let w = s.lock();
    Ok(Json(instance(&w, &project, &name)?.clone()))
}

/// Looks `path` (`settings.userLabels.env`) up in `v` as a string.
fn lookup(v: &Value, path: &str) -> Option<String> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    match cur {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Whether `inst` matches a list filter (see the module docs for what is understood).
fn matches_filter(inst: &Value, filter: &str) -> bool {
    filter
        .split_whitespace()
        .filter(|t| !t.eq_ignore_ascii_case("AND"))
        .all(|term| {
            let Some(at) = term.find([':', '=']) else {
                return true;
            };
            let (field, value) = (&term[..at], term[at + 1..].trim_matches('"'));
            lookup(inst, field).is_some_and(|v| v == value || value == "*")
        })
}

async fn list_instances(
    State(s): State<Shared>,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let w = s.lock();
    let filter = q.get("filter").map(String::as_str).unwrap_or("");
    let items: Vec<Value> = w
        .children(&format!("projects/{project}/instances"))
        .into_iter()
        .filter(|i| matches_filter(i, filter))
        .collect();
    let mut out = json!({"kind": "sql#instancesList"});
    if !items.is_empty() {
        out["items"] = json!(items);
    }
    Ok(Json(out))
}

/// Top-level instance fields a patch cannot change.
const FIXED: &[&str] = &[
    "kind",
    "name",
    "project",
    "region",
    "state",
    "connectionName",
    "selfLink",
    "ipAddresses",
    "gceZone",
    "createTime",
    "serviceAccountEmailAddress",
    "backendType",
    "etag",
];

async fn patch_instance(
    State(s): State<Shared>,
    Path((project, name)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let mut w = s.lock();
    let cur = ready(&w, &project, &name)?;
    let mut next = cur.clone();
    if let Some(fields) = req.as_object() {
        for (k, v) in fields {
            if FIXED.contains(&k.as_str()) {
                continue;
            }
            let v = if k == "databaseVersion" {
                database_version_name(v)
            } else {
                v.clone()
            };
            merge(&mut next[k.as_str()], &v);
        }
    }
    let version = as_i64(&cur["settings"]["settingsVersion"]).unwrap_or(1) + 1;
    next["settings"]["settingsVersion"] = json!(version.to_string());
    let n = w.next();
    next["etag"] = json!(format!("etag-{n}"));
    let key = inst_key(&project, &name);
    Ok(Json(start(
        &mut w,
        &project,
        "UPDATE",
        &name,
        Effect::Put(key, next),
    )))
}

async fn delete_instance(
    State(s): State<Shared>,
    Path((project, name)): Path<(String, String)>,
) -> Reply {
    let mut w = s.lock();
    let inst = instance(&w, &project, &name)?.clone();
    if running_op(&w, &project, &name).is_some() {
        return Err(in_progress());
    }
    if inst["settings"]["deletionProtectionEnabled"] == true {
        return Err(sql_error(
            400,
            "FAILED_PRECONDITION",
            "protectedInstance",
            "The instance or operation is not in an appropriate state to handle the request. \
             The instance is protected. Please disable the deletion protection and try again. \
             To disable deletion protection, update the instance settings with \
             deletionProtectionEnabled set to false.",
        ));
    }
    let key = inst_key(&project, &name);
    if let Some(i) = w.objects.get_mut(&key) {
        i["state"] = json!("PENDING_DELETE");
    }
    Ok(Json(start(
        &mut w,
        &project,
        "DELETE",
        &name,
        Effect::Delete(key),
    )))
}

// ---------------------------------------------------------------------------------------
// Databases.

/// A `sql#database` as stored and returned.
fn database(project: &str, instance: &str, name: &str, req: &Value, engine: &str) -> Value {
    let (charset, collation) = if engine == "mysql" {
        ("utf8mb4", "utf8mb4_0900_ai_ci")
    } else {
        ("UTF8", "en_US.UTF8")
    };
    let pick = |field: &str, default: &str| {
        req[field]
            .as_str()
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .to_string()
    };
    json!({
        "kind": "sql#database",
        "name": name,
        "instance": instance,
        "project": project,
        "charset": pick("charset", charset),
        "collation": pick("collation", collation),
        "etag": format!("etag-{name}"),
        "selfLink": format!("{BASE}/projects/{project}/instances/{instance}/databases/{name}"),
    })
}

async fn insert_database(
    State(s): State<Shared>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let name = req["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(sql_error(
            400,
            "INVALID_ARGUMENT",
            "required",
            "Missing parameter: name.",
        ));
    }
    let mut w = s.lock();
    let i = ready(&w, &project, &inst)?;
    let key = db_key(&project, &inst, &name);
    if w.objects.contains_key(&key) {
        return Err(sql_error(
            409,
            "ALREADY_EXISTS",
            "alreadyExists",
            &format!("Database \"{name}\" already exists."),
        ));
    }
    let db = database(&project, &inst, &name, &req, engine(&i));
    Ok(Json(start(
        &mut w,
        &project,
        "CREATE_DATABASE",
        &inst,
        Effect::Put(key, db),
    )))
}

fn no_database(name: &str) -> Response {
    sql_error(
        404,
        "NOT_FOUND",
        "notFound",
        &format!("Database \"{name}\" does not exist."),
    )
}

async fn get_database(
    State(s): State<Shared>,
    Path((project, inst, name)): Path<(String, String, String)>,
) -> Reply {
    let w = s.lock();
    instance(&w, &project, &inst)?;
    w.objects
        .get(&db_key(&project, &inst, &name))
        .map(|v| Json(v.clone()))
        .ok_or_else(|| no_database(&name))
}

async fn list_databases(
    State(s): State<Shared>,
    Path((project, inst)): Path<(String, String)>,
) -> Reply {
    let w = s.lock();
    instance(&w, &project, &inst)?;
    let items = w.children(&format!("{}/databases", inst_key(&project, &inst)));
    Ok(Json(json!({"kind": "sql#databasesList", "items": items})))
}

async fn update_database(
    State(s): State<Shared>,
    Path((project, inst, name)): Path<(String, String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let mut w = s.lock();
    ready(&w, &project, &inst)?;
    let key = db_key(&project, &inst, &name);
    let mut db = w
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| no_database(&name))?;
    for field in ["charset", "collation"] {
        if let Some(v) = req[field].as_str().filter(|s| !s.is_empty()) {
            db[field] = json!(v);
        }
    }
    Ok(Json(start(
        &mut w,
        &project,
        "UPDATE_DATABASE",
        &inst,
        Effect::Put(key, db),
    )))
}

async fn delete_database(
    State(s): State<Shared>,
    Path((project, inst, name)): Path<(String, String, String)>,
) -> Reply {
    let mut w = s.lock();
    ready(&w, &project, &inst)?;
    let key = db_key(&project, &inst, &name);
    if !w.objects.contains_key(&key) {
        return Err(no_database(&name));
    }
    Ok(Json(start(
        &mut w,
        &project,
        "DELETE_DATABASE",
        &inst,
        Effect::Delete(key),
    )))
}

// ---------------------------------------------------------------------------------------
// Users. The password is kept (tests may look) but never returned.

fn public_user(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("password");
    }
    v
}

fn no_user(name: &str) -> Response {
    sql_error(
        404,
        "NOT_FOUND",
        "notFound",
        &format!("User \"{name}\" does not exist."),
    )
}

fn q<'a>(q: &'a HashMap<String, String>, k: &str) -> &'a str {
    q.get(k).map(String::as_str).unwrap_or("")
}

async fn insert_user(
    State(s): State<Shared>,
    Path((project, inst)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let name = req["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(sql_error(
            400,
            "INVALID_ARGUMENT",
            "required",
            "Missing parameter: name.",
        ));
    }
    let host = req["host"].as_str().unwrap_or_default().to_string();
    let mut w = s.lock();
    ready(&w, &project, &inst)?;
    let key = user_key(&project, &inst, &name, &host);
    if w.objects.contains_key(&key) {
        return Err(sql_error(
            409,
            "ALREADY_EXISTS",
            "alreadyExists",
            &format!("User \"{name}\" already exists."),
        ));
    }
    let n = w.next();
    let mut user = req.clone();
    merge(
        &mut user,
        &json!({"kind": "sql#user", "name": name, "instance": inst, "project": project, "etag": format!("etag-{n}")}),
    );
    Ok(Json(start(
        &mut w,
        &project,
        "CREATE_USER",
        &inst,
        Effect::Put(key, user),
    )))
}

async fn get_user(
    State(s): State<Shared>,
    Path((project, inst, name)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let w = s.lock();
    instance(&w, &project, &inst)?;
    w.objects
        .get(&user_key(&project, &inst, &name, q(&query, "host")))
        .map(|u| Json(public_user(u)))
        .ok_or_else(|| no_user(&name))
}

async fn list_users(
    State(s): State<Shared>,
    Path((project, inst)): Path<(String, String)>,
) -> Reply {
    let w = s.lock();
    instance(&w, &project, &inst)?;
    let items: Vec<Value> = w
        .children(&format!("{}/users", inst_key(&project, &inst)))
        .iter()
        .map(public_user)
        .collect();
    Ok(Json(json!({"kind": "sql#usersList", "items": items})))
}

async fn update_user(
    State(s): State<Shared>,
    Path((project, inst)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let name = q(&query, "name").to_string();
    let mut w = s.lock();
    ready(&w, &project, &inst)?;
    let key = user_key(&project, &inst, &name, q(&query, "host"));
    let mut user = w.objects.get(&key).cloned().ok_or_else(|| no_user(&name))?;
    let mut patch = req.clone();
    if let Some(o) = patch.as_object_mut() {
        for fixed in ["kind", "name", "host", "instance", "project", "etag"] {
            o.remove(fixed);
        }
    }
    merge(&mut user, &patch);
    let n = w.next();
    user["etag"] = json!(format!("etag-{n}"));
    Ok(Json(start(
        &mut w,
        &project,
        "UPDATE_USER",
        &inst,
        Effect::Put(key, user),
    )))
}

async fn delete_user(
    State(s): State<Shared>,
    Path((project, inst)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let name = q(&query, "name").to_string();
    let mut w = s.lock();
    ready(&w, &project, &inst)?;
    let key = user_key(&project, &inst, &name, q(&query, "host"));
    if !w.objects.contains_key(&key) {
        return Err(no_user(&name));
    }
    Ok(Json(start(
        &mut w,
        &project,
        "DELETE_USER",
        &inst,
        Effect::Delete(key),
    )))
}

#[cfg(test)]
pub(crate) mod tests {
    use google_cloud_gax::error::Error;
    use google_cloud_gax::error::rpc::Code;
    use google_cloud_sql_v1::client::{
        SqlDatabasesService, SqlInstancesService, SqlOperationsService, SqlUsersService,
    };
    use google_cloud_sql_v1::model::database_instance::SqlInstanceState;
    use google_cloud_sql_v1::model::operation::{SqlOperationStatus, SqlOperationType};
    use google_cloud_sql_v1::model::{
        BackupConfiguration, Database, DatabaseInstance, IpConfiguration, Operation, Settings,
        SqlDatabaseVersion, SqlIpAddressType, User,
    };

    use crate::GcpDouble;

    const P: &str = "proj";

    /// Runs a test body on its own thread and runtime: the clients' futures are large
    /// in debug builds and overflow a test thread's default 2 MiB stack.
    pub(crate) fn run(body: impl Future<Output = ()> + Send + 'static) {
        let thread = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(Box::pin(body));
            })
            .expect("spawn");
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }

    macro_rules! client {
        ($t:ty, $d:expr) => {
            <$t>::builder()
                .with_endpoint($d.url())
                .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
                .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
                .build()
                .await
                .expect("client")
        };
    }

    /// A double with service enforcement off and `polls` polls per SQL operation.
    fn double(polls: u32) -> GcpDouble {
        let d = GcpDouble::start();
        {
            let mut w = d.shared().lock();
            w.knobs.enforce_services = false;
            w.knobs.sql_polls = polls;
        }
        d
    }

    fn code(e: &Error) -> (Option<Code>, Option<u16>) {
        (e.status().map(|s| s.code), e.http_status_code())
    }

    fn postgres(name: &str, protected: bool) -> DatabaseInstance {
        DatabaseInstance::new()
            .set_name(name)
            .set_database_version(SqlDatabaseVersion::Postgres16)
            .set_region("europe-west1")
            .set_settings(
                Settings::new()
                    .set_tier("db-custom-1-3840")
                    .set_ip_configuration(
                        IpConfiguration::new()
                            .set_ipv4_enabled(false)
                            .set_private_network("projects/proj/global/networks/vpc"),
                    )
                    .set_backup_configuration(
                        BackupConfiguration::new()
                            .set_enabled(true)
                            .set_point_in_time_recovery_enabled(true)
                            .set_start_time("03:00"),
                    )
                    .set_deletion_protection_enabled(protected)
                    .set_user_labels([("env", "test")]),
            )
    }

    /// Polls `op` until it is DONE (at most 10 polls).
    async fn wait(ops: &SqlOperationsService, op: &Operation) -> Operation {
        for _ in 0..10 {
            let got = ops
                .get()
                .set_project(P)
                .set_operation(&op.name)
                .send()
                .await
                .expect("poll");
            if got.status == SqlOperationStatus::Done {
                return got;
            }
        }
        panic!("operation {} never finished", op.name);
    }

    #[test]
    fn sql_instance_lifecycle() {
        run(async {
            let d = double(2);
            let inst = client!(SqlInstancesService, d);
            let ops = client!(SqlOperationsService, d);
            let dbs = client!(SqlDatabasesService, d);

            let op = inst
                .insert()
                .set_project(P)
                .set_body(postgres("pg1", true))
                .send()
                .await
                .expect("insert");
            assert_eq!(op.operation_type, SqlOperationType::Create);
            assert_eq!(op.status, SqlOperationStatus::Pending);
            assert_eq!(op.target_id, "pg1");

            let got = inst
                .get()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect("get");
            assert_eq!(got.state, SqlInstanceState::PendingCreate);
            assert!(got.ip_addresses.is_empty());
            assert_eq!(got.connection_name, "proj:europe-west1:pg1");

            // The create is still running: a second operation on the instance is refused.
            let e = dbs
                .insert()
                .set_project(P)
                .set_instance("pg1")
                .set_body(Database::new().set_name("flyte"))
                .send()
                .await
                .expect_err("busy");
            assert_eq!(code(&e), (Some(Code::Aborted), Some(409)));

            let first = ops
                .get()
                .set_project(P)
                .set_operation(&op.name)
                .send()
                .await
                .expect("poll");
            assert_eq!(first.status, SqlOperationStatus::Running);
            let got = inst
                .get()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect("get");
            assert_eq!(got.state, SqlInstanceState::PendingCreate);
            let done = ops
                .get()
                .set_project(P)
                .set_operation(&op.name)
                .send()
                .await
                .expect("poll");
            assert_eq!(done.status, SqlOperationStatus::Done);
            assert!(done.error.is_none());

            let got = inst
                .get()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect("get");
            assert_eq!(got.state, SqlInstanceState::Runnable);
            assert_eq!(got.database_version, SqlDatabaseVersion::Postgres16);
            assert_eq!(got.gce_zone, "europe-west1-a");
            assert_eq!(got.ip_addresses.len(), 1);
            assert_eq!(got.ip_addresses[0].r#type, SqlIpAddressType::Private);
            assert!(got.ip_addresses[0].ip_address.starts_with("10."));
            let settings = got.settings.clone().expect("settings");
            assert_eq!(settings.settings_version, Some(1));
            assert_eq!(settings.tier, "db-custom-1-3840");

            let listed = inst
                .list()
                .set_project(P)
                .set_filter("settings.userLabels.env:test")
                .send()
                .await
                .expect("list");
            assert_eq!(listed.items.len(), 1);
            let listed = inst
                .list()
                .set_project(P)
                .set_filter("settings.userLabels.env:prod")
                .send()
                .await
                .expect("list");
            assert!(listed.items.is_empty());

            let e = inst
                .delete()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect_err("protected");
            assert_eq!(code(&e), (Some(Code::FailedPrecondition), Some(400)));
            assert!(
                e.status()
                    .expect("status")
                    .message
                    .contains("deletion protection")
            );

            let op = inst
                .patch()
                .set_project(P)
                .set_instance("pg1")
                .set_body(
                    DatabaseInstance::new().set_settings(
                        Settings::new()
                            .set_tier("db-custom-2-7680")
                            .set_deletion_protection_enabled(false),
                    ),
                )
                .send()
                .await
                .expect("patch");
            assert_eq!(op.operation_type, SqlOperationType::Update);
            wait(&ops, &op).await;
            let got = inst
                .get()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect("get");
            let settings = got.settings.expect("settings");
            assert_eq!(settings.settings_version, Some(2));
            assert_eq!(settings.tier, "db-custom-2-7680");
            assert_eq!(settings.deletion_protection_enabled, Some(false));
            assert_eq!(
                settings.user_labels.get("env").map(String::as_str),
                Some("test")
            );
            assert_eq!(got.ip_addresses.len(), 1);

            let op = inst
                .delete()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect("delete");
            assert_eq!(op.operation_type, SqlOperationType::Delete);
            let got = inst
                .get()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect("get");
            assert_eq!(got.state, SqlInstanceState::PendingDelete);
            wait(&ops, &op).await;
            let e = inst
                .get()
                .set_project(P)
                .set_instance("pg1")
                .send()
                .await
                .expect_err("gone");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));

            // Google keeps the name for about a week.
            let e = inst
                .insert()
                .set_project(P)
                .set_body(postgres("pg1", false))
                .send()
                .await
                .expect_err("reserved");
            assert_eq!(code(&e), (Some(Code::AlreadyExists), Some(409)));
            assert!(d.shared().lock().knobs.reserved_sql_names.contains("pg1"));
        });
    }

    #[test]
    fn sql_reserved_name_knob_and_duplicate() {
        run(async {
            let d = double(0);
            d.shared()
                .lock()
                .knobs
                .reserved_sql_names
                .insert("taken".into());
            let inst = client!(SqlInstancesService, d);
            let e = inst
                .insert()
                .set_project(P)
                .set_body(postgres("taken", false))
                .send()
                .await
                .expect_err("reserved");
            assert_eq!(code(&e), (Some(Code::AlreadyExists), Some(409)));
            assert!(e.status().expect("status").message.contains("one week"));

            // With zero polls the operation is done at once.
            let op = inst
                .insert()
                .set_project(P)
                .set_body(postgres("free", false))
                .send()
                .await
                .expect("insert");
            assert_eq!(op.status, SqlOperationStatus::Done);
            let e = inst
                .insert()
                .set_project(P)
                .set_body(postgres("free", false))
                .send()
                .await
                .expect_err("exists");
            assert_eq!(code(&e), (Some(Code::AlreadyExists), Some(409)));
            let e = inst
                .get()
                .set_project(P)
                .set_instance("nope")
                .send()
                .await
                .expect_err("missing");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));
        });
    }

    #[test]
    fn sql_databases_and_users() {
        run(async {
            let d = double(1);
            let inst = client!(SqlInstancesService, d);
            let ops = client!(SqlOperationsService, d);
            let dbs = client!(SqlDatabasesService, d);
            let users = client!(SqlUsersService, d);

            let e = dbs
                .insert()
                .set_project(P)
                .set_instance("missing")
                .set_body(Database::new().set_name("flyte"))
                .send()
                .await
                .expect_err("no instance");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));

            let op = inst
                .insert()
                .set_project(P)
                .set_body(postgres("pg", false))
                .send()
                .await
                .expect("insert");
            wait(&ops, &op).await;

            let op = dbs
                .insert()
                .set_project(P)
                .set_instance("pg")
                .set_body(
                    Database::new()
                        .set_name("flyte")
                        .set_instance("pg")
                        .set_project(P),
                )
                .send()
                .await
                .expect("db insert");
            assert_eq!(op.operation_type, SqlOperationType::CreateDatabase);
            assert_eq!(op.target_id, "pg");
            wait(&ops, &op).await;
            let db = dbs
                .get()
                .set_project(P)
                .set_instance("pg")
                .set_database("flyte")
                .send()
                .await
                .expect("db get");
            assert_eq!(db.charset, "UTF8");
            let names: Vec<String> = dbs
                .list()
                .set_project(P)
                .set_instance("pg")
                .send()
                .await
                .expect("db list")
                .items
                .into_iter()
                .map(|d| d.name)
                .collect();
            assert_eq!(names, ["flyte", "postgres"]);
            let e = dbs
                .insert()
                .set_project(P)
                .set_instance("pg")
                .set_body(Database::new().set_name("flyte"))
                .send()
                .await
                .expect_err("dup db");
            assert_eq!(code(&e), (Some(Code::AlreadyExists), Some(409)));

            let op = users
                .insert()
                .set_project(P)
                .set_instance("pg")
                .set_body(User::new().set_name("flyte").set_password("s3cret"))
                .send()
                .await
                .expect("user insert");
            assert_eq!(op.operation_type, SqlOperationType::CreateUser);
            wait(&ops, &op).await;
            let u = users
                .get()
                .set_project(P)
                .set_instance("pg")
                .set_name("flyte")
                .send()
                .await
                .expect("user get");
            assert_eq!(u.name, "flyte");
            assert!(u.password.is_empty());
            let listed = users
                .list()
                .set_project(P)
                .set_instance("pg")
                .send()
                .await
                .expect("users");
            assert_eq!(listed.items.len(), 2);
            assert!(listed.items.iter().all(|u| u.password.is_empty()));
            let stored = |d: &GcpDouble| {
                d.shared().lock().objects["projects/proj/instances/pg/users/flyte"]["password"]
                    .clone()
            };
            assert_eq!(stored(&d), "s3cret");

            let op = users
                .update()
                .set_project(P)
                .set_instance("pg")
                .set_name("flyte")
                .set_body(User::new().set_name("flyte").set_password("n3w"))
                .send()
                .await
                .expect("user update");
            assert_eq!(op.operation_type, SqlOperationType::UpdateUser);
            // The new password lands only when the operation is done.
            assert_eq!(stored(&d), "s3cret");
            wait(&ops, &op).await;
            assert_eq!(stored(&d), "n3w");

            let op = users
                .delete()
                .set_project(P)
                .set_instance("pg")
                .set_name("flyte")
                .send()
                .await
                .expect("user delete");
            wait(&ops, &op).await;
            let e = users
                .get()
                .set_project(P)
                .set_instance("pg")
                .set_name("flyte")
                .send()
                .await
                .expect_err("deleted");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));

            let op = dbs
                .delete()
                .set_project(P)
                .set_instance("pg")
                .set_database("flyte")
                .send()
                .await
                .expect("db delete");
            wait(&ops, &op).await;
            let e = dbs
                .get()
                .set_project(P)
                .set_instance("pg")
                .set_database("flyte")
                .send()
                .await
                .expect_err("deleted");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));
        });
    }

    #[test]
    fn sql_failed_create_carries_the_message() {
        run(async {
            let d = double(2);
            {
                let mut w = d.shared().lock();
                w.knobs.fail_next_ops = 1;
                w.knobs.fail_message = "quota exceeded for db-custom-1-3840".into();
            }
            let inst = client!(SqlInstancesService, d);
            let ops = client!(SqlOperationsService, d);
            let op = inst
                .insert()
                .set_project(P)
                .set_body(postgres("bad", false))
                .send()
                .await
                .expect("insert");
            let done = wait(&ops, &op).await;
            let errors = done.error.expect("error").errors;
            assert_eq!(errors.len(), 1);
            assert_eq!(errors[0].message, "quota exceeded for db-custom-1-3840");
            let got = inst
                .get()
                .set_project(P)
                .set_instance("bad")
                .send()
                .await
                .expect("get");
            assert_eq!(got.state, SqlInstanceState::Failed);
            assert!(got.ip_addresses.is_empty());
            // A failed instance can only be deleted.
            let e = client!(SqlDatabasesService, d)
                .insert()
                .set_project(P)
                .set_instance("bad")
                .set_body(Database::new().set_name("x"))
                .send()
                .await
                .expect_err("not runnable");
            assert_eq!(code(&e), (Some(Code::FailedPrecondition), Some(400)));
            let op = inst
                .delete()
                .set_project(P)
                .set_instance("bad")
                .send()
                .await
                .expect("delete");
            let done = wait(&ops, &op).await;
            assert!(done.error.is_none());
        });
    }
}

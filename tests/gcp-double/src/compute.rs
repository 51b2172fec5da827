//! Compute Engine v1 (`compute.googleapis.com`): networks, subnetworks, global addresses
//! and their global/regional operations.
//!
//! Objects are stored under `projects/{id}/global/networks/{name}` and friends (project
//! id, as compute self links spell it). Every mutation answers a `compute#operation` that
//! is `DONE` after `knobs.op_polls` GETs (or `wait`s) and only then changes the world.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::error::compute_error;
use crate::util::{self, body, ok, s};
use crate::world::{Effect, Shared, World, project_number};

/// What every compute self link starts with.
pub(crate) const BASE: &str = "https://www.googleapis.com/compute/v1/";

/// Where the Service Networking peering of a network is stored (under the network, so
/// deleting the network removes it).
pub(crate) const PEERING: &str = "servicenetworking-googleapis-com";

type Q = Query<HashMap<String, String>>;

/// The Compute Engine routes.
pub(crate) fn router() -> Router<Shared> {
    let p = "/compute/v1/projects/{project}";
    Router::new()
        .route(
            &format!("{p}/global/networks"),
            get(list_networks).post(insert_network),
        )
        .route(
            &format!("{p}/global/networks/{{name}}"),
            get(get_network).delete(delete_network).patch(patch_network),
        )
        .route(
            &format!("{p}/regions/{{region}}/subnetworks"),
            get(list_subnets).post(insert_subnet),
        )
        .route(
            &format!("{p}/regions/{{region}}/subnetworks/{{name}}"),
            get(get_subnet).delete(delete_subnet).patch(patch_subnet),
        )
        .route(
            &format!("{p}/regions/{{region}}/subnetworks/{{name}}/setPrivateIpGoogleAccess"),
            post(set_private_ip_google_access),
        )
        .route(
            &format!("{p}/global/addresses"),
            get(list_addresses).post(insert_address),
        )
        .route(
            &format!("{p}/global/addresses/{{name}}"),
            get(get_address).delete(delete_address),
        )
        .route(&format!("{p}/global/operations"), get(list_global_ops))
        .route(
            &format!("{p}/regions/{{region}}/operations"),
            get(list_region_ops),
        )
        .route(&format!("{p}/global/operations/{{op}}"), get(global_op))
        .route(
            &format!("{p}/global/operations/{{op}}/wait"),
            post(global_op),
        )
        .route(
            &format!("{p}/regions/{{region}}/operations/{{op}}"),
            get(region_op),
        )
        .route(
            &format!("{p}/regions/{{region}}/operations/{{op}}/wait"),
            post(region_op),
        )
}

// ---- errors in compute's shape ----

fn not_found(key: &str) -> Response {
    compute_error(
        404,
        "NOT_FOUND",
        "notFound",
        format!("The resource '{key}' was not found"),
    )
}

fn already_exists(key: &str) -> Response {
    compute_error(
        409,
        "ALREADY_EXISTS",
        "alreadyExists",
        format!("The resource '{key}' already exists"),
    )
}

fn invalid(message: impl Into<String>) -> Response {
    compute_error(400, "INVALID_ARGUMENT", "invalid", message)
}

fn in_use(key: &str, user: &str) -> Response {
    compute_error(
        400,
        "INVALID_ARGUMENT",
        "resourceInUseByAnotherResource",
        format!(
            "The {} resource '{key}' is already being used by '{user}'",
            kind_word(key)
        ),
    )
}

fn kind_word(key: &str) -> &'static str {
    if key.contains("/networks/") {
        "network"
    } else if key.contains("/addresses/") {
        "address"
    } else {
        "subnetwork"
    }
}

// ---- names and links ----

/// The storage key of a network named by a full URL, a partial path
/// (`projects/p/global/networks/n`, `global/networks/n`) or a bare name.
pub(crate) fn network_key(w: &mut World, project: &str, reference: &str) -> Option<String> {
    let r = match reference.find("projects/") {
        Some(i) => &reference[i..],
        None => reference,
    };
    let parts: Vec<&str> = r.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "global", "networks", n] => {
            Some(format!("projects/{}/global/networks/{n}", w.project_id(p)))
        }
        ["global", "networks", n] | [n] if !n.is_empty() => {
            Some(format!("projects/{project}/global/networks/{n}"))
        }
        _ => None,
    }
}

fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// An IPv4 CIDR as (first address, prefix length).
pub(crate) fn parse_cidr(cidr: &str) -> Option<(u32, u32)> {
    let (ip, len) = cidr.split_once('/')?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 32)?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let ip = u32::from(ip);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (ip & mask == ip).then_some((ip, len))
}

fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let end = |(ip, len): (u32, u32)| u64::from(ip) + (1u64 << (32 - len)) - 1;
    u64::from(a.0) <= end(b) && u64::from(b.0) <= end(a)
}

fn ip(n: u32) -> String {
    std::net::Ipv4Addr::from(n).to_string()
}

// ---- operations ----

/// Where an operation lives: `global` or `regions/{r}`.
fn op_link(pid: &str, scope: &str, name: &str) -> String {
    format!("{BASE}projects/{pid}/{scope}/operations/{name}")
}

/// Starts an operation of `op_type` on `target` and answers it. A repeated `requestId`
/// answers the first request's operation (compute's own idempotency).
fn mutate(
    w: &mut World,
    q: &HashMap<String, String>,
    pid: &str,
    scope: &str,
    op_type: &str,
    target: &Value,
    effect: Effect,
) -> Response {
    let rid = q.get("requestId").filter(|r| !r.is_empty());
    if let Some(name) = rid.and_then(|r| w.request_ids.get(r)).cloned() {
        return ok(render(w, &name));
    }
    let n = w.next();
    let name = format!(
        "operation-{}-{:013x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
        n
    );
    let now = util::now();
    let mut body = json!({
        "kind": "compute#operation",
        "id": util::numeric_id(w, 19),
        "name": name,
        "operationType": op_type,
        "targetLink": target.get("selfLink").cloned().unwrap_or(Value::Null),
        "targetId": target.get("id").cloned().unwrap_or(Value::Null),
        "status": "RUNNING",
        "user": "double@flyteinfra.test",
        "progress": 0,
        "insertTime": now,
        "startTime": now,
        "selfLink": op_link(pid, scope, &name),
        "_final": {"status": "DONE", "progress": 100, "endTime": now},
    });
    if let Some(r) = scope.strip_prefix("regions/") {
        body["region"] = json!(format!("{BASE}projects/{pid}/regions/{r}"));
    }
    let polls = w.knobs.op_polls;
    w.start_op_with(name.clone(), body, polls, effect, None);
    if let Some(r) = rid {
        w.request_ids.insert(r.clone(), name.clone());
    }
    ok(render(w, &name))
}

/// The operation as the API shows it now (done when no polls are left).
fn render(w: &World, name: &str) -> Value {
    let Some(op) = w.ops.get(name) else {
        return Value::Null;
    };
    let mut body = op.body.clone();
    let fin = body.as_object_mut().and_then(|o| o.remove("_final"));
    if op.polls_left == 0 {
        if let (Some(Value::Object(fin)), Some(o)) = (fin, body.as_object_mut()) {
            o.extend(fin);
        }
        if let Some(msg) = &op.error {
            body["error"] = json!({"errors": [{"code": "INTERNAL_ERROR", "message": msg}]});
            body["httpErrorStatusCode"] = json!(500);
            body["httpErrorMessage"] = json!("INTERNAL SERVER ERROR");
        }
    }
    body
}

async fn global_op(
    State(sh): State<Shared>,
    Path((project, op)): Path<(String, String)>,
) -> Response {
    poll_op(&sh, &project, "global", &op)
}

async fn region_op(
    State(sh): State<Shared>,
    Path((project, region, op)): Path<(String, String, String)>,
) -> Response {
    poll_op(&sh, &project, &format!("regions/{region}"), &op)
}

async fn list_global_ops(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Q,
) -> Response {
    list_ops(&sh, &project, "global", &q)
}

async fn list_region_ops(
    State(sh): State<Shared>,
    Path((project, region)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    list_ops(&sh, &project, &format!("regions/{region}"), &q)
}

/// The operations of one scope as they are now (listing polls none of them), filtered
/// like any compute list (`status != DONE`).
fn list_ops(sh: &Shared, project: &str, scope: &str, q: &HashMap<String, String>) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(project);
    let prefix = op_link(&pid, scope, "");
    let items: Vec<Value> = w
        .ops
        .iter()
        .filter(|(_, o)| {
            o.body["selfLink"]
                .as_str()
                .is_some_and(|l| l.starts_with(&prefix))
        })
        .map(|(name, _)| render(&w, name))
        .collect();
    let coll = format!("projects/{pid}/{scope}/operations");
    list_response("compute#operationList", &coll, items, q)
}

/// GET and `wait` both take one poll: the double's `wait` returns at once, so a caller
/// loops on it as it would on a real wait that timed out.
fn poll_op(sh: &Shared, project: &str, scope: &str, op: &str) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(project);
    let link = op_link(&pid, scope, op);
    let here = w
        .ops
        .get(op)
        .is_some_and(|o| o.body["selfLink"] == json!(link));
    if !here {
        return not_found(&format!("projects/{pid}/{scope}/operations/{op}"));
    }
    w.poll(op);
    ok(render(&w, op))
}

/// True when an unfinished insert already targets `key`, so a second insert is a
/// duplicate even before the first lands.
fn insert_pending(w: &World, key: &str) -> bool {
    let link = json!(format!("{BASE}{key}"));
    w.ops.values().any(|o| {
        o.polls_left > 0 && o.body["operationType"] == "insert" && o.body["targetLink"] == link
    })
}

fn common(w: &mut World, kind: &str, key: &str, name: &str) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("kind".into(), json!(kind));
    o.insert("id".into(), json!(util::numeric_id(w, 19)));
    o.insert("creationTimestamp".into(), json!(util::now()));
    o.insert("name".into(), json!(name));
    o.insert("selfLink".into(), json!(format!("{BASE}{key}")));
    o
}

fn list_response(
    kind: &str,
    collection_key: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
) -> Response {
    let items = match util::filter(items, q.get("filter").map(String::as_str)) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let max = q
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(500);
    let token = q.get("pageToken").map(String::as_str).unwrap_or("");
    let (items, next) = util::page(items, max, token);
    let mut out = json!({
        "kind": kind,
        "id": collection_key,
        "selfLink": format!("{BASE}{collection_key}"),
    });
    if !items.is_empty() {
        out["items"] = json!(items);
    }
    if let Some(n) = next {
        out["nextPageToken"] = json!(n);
    }
    ok(out)
}

// ---- networks ----

/// A network as GET shows it: its subnetworks and peerings are derived from the world.
fn view_network(w: &World, key: &str) -> Option<Value> {
    let mut n = w.objects.get(key)?.clone();
    let link = json!(format!("{BASE}{key}"));
    let subnets: Vec<Value> = w
        .objects
        .iter()
        .filter(|(k, v)| k.contains("/subnetworks/") && v["network"] == link)
        .map(|(_, v)| v["selfLink"].clone())
        .collect();
    if !subnets.is_empty() {
        n["subnetworks"] = json!(subnets);
    }
    if w.objects.contains_key(&format!("{key}/peerings/{PEERING}")) {
        n["peerings"] = json!([{
            "name": PEERING,
            "network": format!("{BASE}projects/tenant-{}/global/networks/servicenetworking", project_number(key)),
            "state": "ACTIVE",
            "stateDetails": "[2026-01-01T00:00:00.000-00:00]: Connected.",
            "autoCreateRoutes": true,
            "exchangeSubnetRoutes": true,
            "exportCustomRoutes": false,
            "importCustomRoutes": false,
            "stackType": "IPV4_ONLY",
        }]);
    }
    Some(n)
}

async fn list_networks(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Q,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let coll = format!("projects/{pid}/global/networks");
    let keys: Vec<String> = w
        .children(&coll)
        .iter()
        .map(|v| format!("{coll}/{}", s(v, "name")))
        .collect();
    let items = keys.iter().filter_map(|k| view_network(&w, k)).collect();
    list_response("compute#networkList", &coll, items, &q)
}

async fn get_network(
    State(sh): State<Shared>,
    Path((project, name)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/global/networks/{name}");
    view_network(&w, &key).map_or_else(|| not_found(&key), ok)
}

async fn insert_network(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let name = s(&req, "name").to_string();
    if !valid_name(&name) {
        return invalid(format!(
            "Invalid value for field 'resource.name': '{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
        ));
    }
    let key = format!("projects/{pid}/global/networks/{name}");
    if q.get("requestId")
        .is_none_or(|r| !w.request_ids.contains_key(r))
        && (w.objects.contains_key(&key) || insert_pending(&w, &key))
    {
        return already_exists(&key);
    }
    let mut o = common(&mut w, "compute#network", &key, &name);
    let id = o["id"].clone();
    o.insert(
        "selfLinkWithId".into(),
        json!(format!(
            "{BASE}projects/{pid}/global/networks/{}",
            id.as_str().unwrap_or("")
        )),
    );
    for (k, v) in req.as_object().into_iter().flatten() {
        if !o.contains_key(k) {
            o.insert(k.clone(), v.clone());
        }
    }
    o.entry("autoCreateSubnetworks").or_insert(json!(false));
    o.entry("mtu").or_insert(json!(1460));
    o.entry("routingConfig")
        .or_insert(json!({"routingMode": "REGIONAL", "bgpBestPathSelectionMode": "LEGACY"}));
    o.entry("networkFirewallPolicyEnforcementOrder")
        .or_insert(json!("AFTER_CLASSIC_FIREWALL"));
    let obj = Value::Object(o);
    mutate(
        &mut w,
        &q,
        &pid,
        "global",
        "insert",
        &obj,
        Effect::Put(key, obj.clone()),
    )
}

/// Fields a PATCH may not change (they identify the object or are output only).
const IMMUTABLE: &[&str] = &[
    "kind",
    "id",
    "name",
    "selfLink",
    "selfLinkWithId",
    "creationTimestamp",
    "fingerprint",
    "network",
    "region",
    "gatewayAddress",
];

fn merge(current: &Value, patch: &Value) -> Value {
    let mut o = current.clone();
    for (k, v) in patch.as_object().into_iter().flatten() {
        if !IMMUTABLE.contains(&k.as_str()) {
            o[k] = v.clone();
        }
    }
    o
}

async fn patch_network(
    State(sh): State<Shared>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/global/networks/{name}");
    let Some(cur) = w.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    if req
        .get("autoCreateSubnetworks")
        .is_some_and(|v| *v != cur["autoCreateSubnetworks"])
    {
        return invalid(
            "Invalid value for field 'resource.autoCreateSubnetworks': cannot be changed by patch; use switchToCustomMode.",
        );
    }
    let new = merge(&cur, &req);
    mutate(
        &mut w,
        &q,
        &pid,
        "global",
        "patch",
        &cur,
        Effect::Put(key, new),
    )
}

async fn delete_network(
    State(sh): State<Shared>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/global/networks/{name}");
    let Some(cur) = w.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    let link = cur["selfLink"].clone();
    let user = w
        .objects
        .iter()
        .find(|(k, v)| {
            (k.contains("/subnetworks/") || k.contains("/addresses/")) && v["network"] == link
        })
        .map(|(k, _)| k.clone());
    if let Some(user) = user {
        return in_use(&key, &user);
    }
    mutate(
        &mut w,
        &q,
        &pid,
        "global",
        "delete",
        &cur,
        Effect::Delete(key),
    )
}

// ---- subnetworks ----

async fn list_subnets(
    State(sh): State<Shared>,
    Path((project, region)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let coll = format!("projects/{pid}/regions/{region}/subnetworks");
    let items = w.children(&coll);
    list_response("compute#subnetworkList", &coll, items, &q)
}

async fn get_subnet(
    State(sh): State<Shared>,
    Path((project, region, name)): Path<(String, String, String)>,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/regions/{region}/subnetworks/{name}");
    w.objects
        .get(&key)
        .cloned()
        .map_or_else(|| not_found(&key), ok)
}

/// The first subnetwork (other than `except`) on `network` whose primary or secondary
/// range overlaps `range`, as `name (cidr)`.
fn subnet_conflict(w: &World, network: &Value, range: (u32, u32), except: &str) -> Option<String> {
    w.objects
        .iter()
        .filter(|(k, v)| k.contains("/subnetworks/") && v["network"] == *network && *k != except)
        .find_map(|(_, v)| {
            let mut ranges = vec![s(v, "ipCidrRange").to_string()];
            for r in v["secondaryIpRanges"].as_array().into_iter().flatten() {
                ranges.push(s(r, "ipCidrRange").to_string());
            }
            ranges
                .into_iter()
                .find(|c| parse_cidr(c).is_some_and(|c| overlaps(c, range)))
                .map(|c| format!("{} ({c})", s(v, "name")))
        })
}

/// Compute's limit on secondary ranges per subnetwork.
const MAX_SECONDARY_RANGES: usize = 30;

/// Checks a subnetwork's primary and secondary ranges: valid CIDRs, not overlapping
/// each other or another subnetwork of the network.
fn check_ranges(w: &World, sub: &Value, key: &str) -> Result<(), Response> {
    let mut mine = vec![];
    let primary = s(sub, "ipCidrRange");
    let p = parse_cidr(primary).ok_or_else(|| {
        invalid(format!(
            "Invalid value for field 'resource.ipCidrRange': '{primary}'. Invalid IPv4 CIDR range."
        ))
    })?;
    mine.push((primary.to_string(), p));
    for r in sub["secondaryIpRanges"].as_array().into_iter().flatten() {
        let c = s(r, "ipCidrRange");
        let parsed = parse_cidr(c).ok_or_else(|| {
            invalid(format!("Invalid value for field 'resource.secondaryIpRanges.ipCidrRange': '{c}'. Invalid IPv4 CIDR range."))
        })?;
        if s(r, "rangeName").is_empty() {
            return Err(invalid(
                "Invalid value for field 'resource.secondaryIpRanges.rangeName': ''.",
            ));
        }
        mine.push((c.to_string(), parsed));
    }
    if mine.len() - 1 > MAX_SECONDARY_RANGES {
        return Err(invalid(format!(
            "Exceeded maximum supported number of secondary ranges per subnetwork: {MAX_SECONDARY_RANGES}."
        )));
    }
    for (i, (a, ra)) in mine.iter().enumerate() {
        if let Some((b, _)) = mine[i + 1..].iter().find(|(_, rb)| overlaps(*ra, *rb)) {
            return Err(invalid(format!(
                "Invalid IPCidrRange: {a} conflicts with {b} in the same subnetwork."
            )));
        }
        if let Some(other) = subnet_conflict(w, &sub["network"], *ra, key) {
            return Err(invalid(format!(
                "Invalid IPCidrRange: {a} conflicts with existing subnetwork {other}."
            )));
        }
    }
    Ok(())
}

/// Refuses a patch that removes or changes a secondary range a GKE cluster uses.
fn check_used_ranges(w: &mut World, cur: &Value, new: &Value, key: &str) -> Result<(), Response> {
    let cidr_of = |sub: &Value, name: &str| {
        sub["secondaryIpRanges"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["rangeName"] == name)
            .map(|r| s(r, "ipCidrRange").to_string())
    };
    for (cluster, ranges) in crate::container::clusters_on_subnetwork(w, key) {
        for range in ranges {
            let before = cidr_of(cur, &range);
            if before.is_some() && cidr_of(new, &range) != before {
                return Err(compute_error(
                    400,
                    "INVALID_ARGUMENT",
                    "resourceInUseByAnotherResource",
                    format!(
                        "The secondary range '{range}' of subnetwork '{key}' is in use by \
                         '{cluster}': it cannot be removed or changed."
                    ),
                ));
            }
        }
    }
    Ok(())
}

async fn insert_subnet(
    State(sh): State<Shared>,
    Path((project, region)): Path<(String, String)>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let name = s(&req, "name").to_string();
    if !valid_name(&name) {
        return invalid(format!(
            "Invalid value for field 'resource.name': '{name}'."
        ));
    }
    let key = format!("projects/{pid}/regions/{region}/subnetworks/{name}");
    let retry = q
        .get("requestId")
        .is_some_and(|r| w.request_ids.contains_key(r));
    if !retry && (w.objects.contains_key(&key) || insert_pending(&w, &key)) {
        return already_exists(&key);
    }
    let Some(net_key) = network_key(&mut w, &pid, s(&req, "network")) else {
        return invalid("Invalid value for field 'resource.network': ''. The network is required.");
    };
    if !w.objects.contains_key(&net_key) {
        return not_found(&net_key);
    }
    let mut o = common(&mut w, "compute#subnetwork", &key, &name);
    for (k, v) in req.as_object().into_iter().flatten() {
        if !o.contains_key(k) {
            o.insert(k.clone(), v.clone());
        }
    }
    o.insert("network".into(), json!(format!("{BASE}{net_key}")));
    o.insert(
        "region".into(),
        json!(format!("{BASE}projects/{pid}/regions/{region}")),
    );
    o.entry("privateIpGoogleAccess").or_insert(json!(false));
    o.entry("purpose").or_insert(json!("PRIVATE"));
    o.entry("stackType").or_insert(json!("IPV4_ONLY"));
    o.insert("fingerprint".into(), json!(util::etag(&mut w)));
    let obj = Value::Object(o);
    if !retry && let Err(e) = check_ranges(&w, &obj, &key) {
        return e;
    }
    let mut obj = obj;
    if let Some((first, _)) = parse_cidr(s(&obj, "ipCidrRange")) {
        obj["gatewayAddress"] = json!(ip(first + 1));
    }
    let scope = format!("regions/{region}");
    mutate(
        &mut w,
        &q,
        &pid,
        &scope,
        "insert",
        &obj,
        Effect::Put(key, obj.clone()),
    )
}

async fn patch_subnet(
    State(sh): State<Shared>,
    Path((project, region, name)): Path<(String, String, String)>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/regions/{region}/subnetworks/{name}");
    let Some(cur) = w.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    let retry = q
        .get("requestId")
        .is_some_and(|r| w.request_ids.contains_key(r));
    if !retry {
        let fp = s(&req, "fingerprint");
        if fp.is_empty() {
            return invalid("Required field 'resource.fingerprint' not specified");
        }
        if fp != s(&cur, "fingerprint") {
            return compute_error(
                412,
                "FAILED_PRECONDITION",
                "conditionNotMet",
                "Supplied fingerprint does not match current metadata fingerprint.",
            );
        }
        if req
            .get("ipCidrRange")
            .is_some_and(|r| *r != cur["ipCidrRange"])
        {
            return invalid(
                "Invalid value for field 'resource.ipCidrRange': the primary range can only be changed with expandIpCidrRange.",
            );
        }
    }
    // `secondaryIpRanges` in a patch replaces the list: a range left out is removed,
    // which Compute refuses while a GKE cluster uses it (as it refuses changing its CIDR).
    let mut new = merge(&cur, &req);
    new["fingerprint"] = json!(util::etag(&mut w));
    if !retry {
        if let Err(e) = check_ranges(&w, &new, &key) {
            return e;
        }
        if let Err(e) = check_used_ranges(&mut w, &cur, &new, &key) {
            return e;
        }
    }
    let scope = format!("regions/{region}");
    mutate(
        &mut w,
        &q,
        &pid,
        &scope,
        "patch",
        &cur,
        Effect::Put(key, new),
    )
}

async fn set_private_ip_google_access(
    State(sh): State<Shared>,
    Path((project, region, name)): Path<(String, String, String)>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/regions/{region}/subnetworks/{name}");
    let Some(cur) = w.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    let mut new = cur.clone();
    new["privateIpGoogleAccess"] = json!(req["privateIpGoogleAccess"].as_bool().unwrap_or(false));
    new["fingerprint"] = json!(util::etag(&mut w));
    let scope = format!("regions/{region}");
    mutate(
        &mut w,
        &q,
        &pid,
        &scope,
        "setPrivateIpGoogleAccess",
        &cur,
        Effect::Put(key, new),
    )
}

async fn delete_subnet(
    State(sh): State<Shared>,
    Path((project, region, name)): Path<(String, String, String)>,
    Query(q): Q,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/regions/{region}/subnetworks/{name}");
    let Some(cur) = w.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    if let Some((cluster, _)) = crate::container::clusters_on_subnetwork(&mut w, &key)
        .into_iter()
        .next()
    {
        return in_use(&key, &cluster);
    }
    let scope = format!("regions/{region}");
    mutate(
        &mut w,
        &q,
        &pid,
        &scope,
        "delete",
        &cur,
        Effect::Delete(key),
    )
}

// ---- global addresses ----

async fn list_addresses(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Q,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let coll = format!("projects/{pid}/global/addresses");
    let items = w.children(&coll);
    list_response("compute#addressList", &coll, items, &q)
}

async fn get_address(
    State(sh): State<Shared>,
    Path((project, name)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/global/addresses/{name}");
    w.objects
        .get(&key)
        .cloned()
        .map_or_else(|| not_found(&key), ok)
}

/// The first free block of `2^(32-len)` addresses in 10.100.0.0–10.255.255.255 that
/// overlaps no address or subnetwork of the project (the real API picks one in the
/// network's unused private space; the double keeps to a corner tests do not use).
fn allocate(w: &World, pid: &str, len: u32) -> Option<u32> {
    let prefix = format!("projects/{pid}/");
    let taken: Vec<(u32, u32)> = w
        .objects
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix))
        .flat_map(|(k, v)| {
            if k.contains("/addresses/") {
                let a = s(v, "address");
                let l = v["prefixLength"].as_u64().unwrap_or(32) as u32;
                parse_cidr(&format!("{a}/{l}"))
                    .into_iter()
                    .collect::<Vec<_>>()
            } else if k.contains("/subnetworks/") {
                parse_cidr(s(v, "ipCidrRange")).into_iter().collect()
            } else {
                vec![]
            }
        })
        .collect();
    let size = 1u64 << (32 - len);
    let start = u64::from(u32::from(std::net::Ipv4Addr::new(10, 100, 0, 0)));
    let start = start.div_ceil(size) * size;
    let end = u64::from(u32::from(std::net::Ipv4Addr::new(10, 255, 255, 255)));
    let mut at = start;
    while at + size - 1 <= end {
        let cand = (at as u32, len);
        if !taken.iter().any(|t| overlaps(*t, cand)) {
            return Some(at as u32);
        }
        at += size;
    }
    None
}

async fn insert_address(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Q,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let name = s(&req, "name").to_string();
    if !valid_name(&name) {
        return invalid(format!(
            "Invalid value for field 'resource.name': '{name}'."
        ));
    }
    let key = format!("projects/{pid}/global/addresses/{name}");
    let retry = q
        .get("requestId")
        .is_some_and(|r| w.request_ids.contains_key(r));
    if !retry && (w.objects.contains_key(&key) || insert_pending(&w, &key)) {
        return already_exists(&key);
    }
    let mut o = common(&mut w, "compute#address", &key, &name);
    for (k, v) in req.as_object().into_iter().flatten() {
        if !o.contains_key(k) {
            o.insert(k.clone(), v.clone());
        }
    }
    o.insert("status".into(), json!("RESERVED"));
    let internal = s(&req, "addressType") == "INTERNAL";
    if internal {
        let Some(net_key) = network_key(&mut w, &pid, s(&req, "network")) else {
            return invalid(
                "Invalid value for field 'resource.network': ''. An internal global address needs a network.",
            );
        };
        if !w.objects.contains_key(&net_key) {
            return not_found(&net_key);
        }
        o.insert("network".into(), json!(format!("{BASE}{net_key}")));
        let Some(len) = req["prefixLength"]
            .as_u64()
            .filter(|l| (8..=29).contains(l))
        else {
            return invalid(
                "Invalid value for field 'resource.prefixLength': must be between 8 and 29 for an internal range.",
            );
        };
        let len = len as u32;
        match s(&req, "address") {
            "" => match allocate(&w, &pid, len) {
                Some(a) => {
                    o.insert("address".into(), json!(ip(a)));
                }
                None => {
                    return compute_error(
                        400,
                        "INVALID_ARGUMENT",
                        "ipSpaceExhausted",
                        "No free internal range of this size is left in the network.",
                    );
                }
            },
            a => {
                if parse_cidr(&format!("{a}/{len}")).is_none() {
                    return invalid(format!(
                        "Invalid value for field 'resource.address': '{a}'."
                    ));
                }
            }
        }
    } else if s(&req, "address").is_empty() {
        let n = w.next();
        o.insert(
            "address".into(),
            json!(format!(
                "34.{}.{}.{}",
                64 + (n / 65_536) % 64,
                (n / 256) % 256,
                n % 256
            )),
        );
        o.entry("networkTier").or_insert(json!("PREMIUM"));
        o.entry("addressType").or_insert(json!("EXTERNAL"));
    }
    let obj = Value::Object(o);
    mutate(
        &mut w,
        &q,
        &pid,
        "global",
        "insert",
        &obj,
        Effect::Put(key, obj.clone()),
    )
}

async fn delete_address(
    State(sh): State<Shared>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let key = format!("projects/{pid}/global/addresses/{name}");
    let Some(cur) = w.objects.get(&key).cloned() else {
        return not_found(&key);
    };
    // A Private Service Access connection that still reserves this range blocks it.
    let user = w
        .objects
        .iter()
        .find(|(k, v)| {
            k.ends_with(&format!("/peerings/{PEERING}"))
                && v["reservedPeeringRanges"]
                    .as_array()
                    .is_some_and(|r| r.contains(&json!(name)))
                && format!(
                    "{BASE}{}",
                    k.trim_end_matches(&format!("/peerings/{PEERING}"))
                ) == s(&cur, "network")
        })
        .map(|(k, _)| k.clone());
    if let Some(user) = user {
        return in_use(&key, &user);
    }
    mutate(
        &mut w,
        &q,
        &pid,
        "global",
        "delete",
        &cur,
        Effect::Delete(key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_overlap() {
        let a = parse_cidr("10.0.0.0/16").unwrap();
        let b = parse_cidr("10.0.128.0/20").unwrap();
        let c = parse_cidr("10.1.0.0/16").unwrap();
        assert!(overlaps(a, b));
        assert!(!overlaps(a, c));
        assert!(parse_cidr("10.0.0.1/16").is_none(), "host bits set");
    }

    #[test]
    fn network_references_resolve_to_keys() {
        let mut w = World::default();
        for r in [
            "https://www.googleapis.com/compute/v1/projects/p/global/networks/n",
            "projects/p/global/networks/n",
            "global/networks/n",
            "n",
        ] {
            assert_eq!(
                network_key(&mut w, "p", r).as_deref(),
                Some("projects/p/global/networks/n"),
                "{r}"
            );
        }
    }
}

//! Kubernetes Engine API v1 (`container.googleapis.com`): clusters, node pools and their
//! operations, on the `projects/*/locations/*` paths `google-cloud-container-v1` calls.
//!
//! A mutation answers an `Operation`; each GET of it is one poll and it is `DONE` after
//! `knobs.gke_polls` polls, when its change lands. Clusters are stored without their
//! node pools (those live under `…/clusters/c/nodePools/np`) and assembled on read. One
//! operation at a time per cluster: a second mutation meanwhile gets 400
//! `FAILED_PRECONDITION` "Cluster is running incompatible operation …", as on GKE.
//!
//! Approximations:
//! - `ClusterUpdate.desiredX` sets cluster field `x` (a few are mapped to where GKE keeps
//!   them: versions, node pool autoscaling, private endpoint, network config); etags and
//!   label fingerprints are not checked;
//! - a failed operation (`knobs.fail_next_ops`) leaves a created or deleted cluster
//!   `ERROR`, a created node pool `ERROR`, and otherwise changes nothing; both carry the
//!   message in `statusMessage`;
//! - versions, endpoints, CIDRs and instance groups are plausible made-up values (the CA
//!   names its cluster, so clusters can be told apart);
//! - a cluster's secondary ranges are checked against its subnetwork only when the double
//!   has that subnetwork (tests of GKE alone name subnetworks they never made); the
//!   subnetwork then counts them as in use ([`clusters_on_subnetwork`]);
//! - `:setMasterAuth`, upgrades' rollback/complete and `:cancel` are not served.

// Handlers answer either JSON or a finished error `Response`; boxing that error would
// only add noise to every handler.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::error::{failed_precondition, google_error, invalid};
use crate::sql::{as_i64, merge, now_millis, now_rfc3339, parse_body};
use crate::world::{Effect, Shared, World};

/// Handlers answer JSON or a ready error response.
type Reply = Result<Json<Value>, Response>;

/// The URL prefix of `selfLink`s and `targetLink`s.
const BASE: &str = "https://container.googleapis.com/v1";

/// The Kubernetes version new clusters get when none is asked for.
const DEFAULT_VERSION: &str = "1.31.5-gke.1023000";

/// The GKE routes. Custom verbs (`…/nodePools/np:setAutoscaling`) arrive in the last
/// path parameter, since the router cannot match a suffix after a parameter.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route(
            "/v1/projects/{project}/locations/{location}/clusters",
            get(list_clusters).post(create_cluster),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/clusters/{cluster}",
            get(get_cluster)
                .put(update_cluster)
                .delete(delete_cluster)
                .post(cluster_verb),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/clusters/{cluster}/nodePools",
            get(list_node_pools).post(create_node_pool),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/clusters/{cluster}/nodePools/{pool}",
            get(get_node_pool)
                .put(update_node_pool)
                .delete(delete_node_pool)
                .post(node_pool_verb),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/operations",
            get(list_operations),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/operations/{operation}",
            get(get_operation),
        )
}

// ---------------------------------------------------------------------------------------
// Names and errors.

fn cluster_key(p: &str, l: &str, c: &str) -> String {
    format!("projects/{p}/locations/{l}/clusters/{c}")
}

fn pool_key(p: &str, l: &str, c: &str, np: &str) -> String {
    format!("projects/{p}/locations/{l}/clusters/{c}/nodePools/{np}")
}

fn op_key(p: &str, l: &str, op: &str) -> String {
    format!("projects/{p}/locations/{l}/operations/{op}")
}

/// Where an operation's pending changes wait until it succeeds (outside `projects/`, so
/// no list sees them).
fn pending_key(op_key: &str) -> String {
    format!("_double/container/pending/{op_key}")
}

fn not_found(what: &str) -> Response {
    google_error(404, "NOT_FOUND", format!("Not found: {what}."), vec![])
}

fn already_exists(what: &str) -> Response {
    google_error(
        409,
        "ALREADY_EXISTS",
        format!("Already exists: {what}."),
        vec![],
    )
}

fn valid_name(name: &str, max: usize) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= max
        && !name.ends_with('-')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A zone (`us-central1-a`) has two dashes; a region (`us-central1`) one.
fn is_zone(location: &str) -> bool {
    location.matches('-').count() >= 2
}

/// A JSON object with `v` at `path`, creating objects on the way.
fn slot<'a>(root: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter().fold(root, |cur, part| {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur.as_object_mut()
            .expect("object")
            .entry(part.to_string())
            .or_insert(Value::Null)
    })
}

// ---------------------------------------------------------------------------------------
// Pending changes: what an operation does to the cluster and its pools when it succeeds.

/// One change: set (or merge into) the field at `path` of the cluster (`pool` empty) or
/// of node pool `pool`.
struct Change {
    pool: String,
    path: Vec<String>,
    value: Value,
    merge: bool,
}

impl Change {
    fn cluster(path: &[&str], value: Value) -> Change {
        Change {
            pool: String::new(),
            path: path.iter().map(|s| s.to_string()).collect(),
            value,
            merge: false,
        }
    }

    fn pool(pool: &str, path: &[&str], value: Value) -> Change {
        Change {
            pool: pool.to_string(),
            ..Change::cluster(path, value)
        }
    }

    fn merged(mut self) -> Change {
        self.merge = true;
        self
    }

    fn to_json(&self) -> Value {
        json!({"pool": self.pool, "path": self.path, "value": self.value, "merge": self.merge})
    }
}

/// Applies pending changes (stored as JSON by [`Change::to_json`]) under cluster `ck`.
fn apply_changes(w: &mut World, ck: &str, changes: &Value) {
    for c in changes.as_array().into_iter().flatten() {
        let pool = c["pool"].as_str().unwrap_or_default();
        let key = if pool.is_empty() {
            ck.to_string()
        } else {
            format!("{ck}/nodePools/{pool}")
        };
        let Some(obj) = w.objects.get_mut(&key) else {
            continue;
        };
        let path: Vec<&str> = c["path"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let target = slot(obj, &path);
        if c["merge"] == true {
            merge(target, &c["value"]);
        } else {
            *target = c["value"].clone();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operations.

/// The running operation on cluster `ck` (or one of its pools), if any.
fn running_op(w: &World, p: &str, l: &str, c: &str) -> Option<String> {
    let prefix = format!("projects/{p}/locations/{l}/operations/");
    let link = format!("{BASE}/{}", cluster_key(p, l, c));
    let under = format!("{link}/");
    w.ops
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .find(|(_, op)| {
            let t = op.body["targetLink"].as_str().unwrap_or_default();
            op.polls_left > 0 && (t == link || t.starts_with(&under))
        })
        .map(|(_, op)| op.body["name"].as_str().unwrap_or_default().to_string())
}

/// The cluster, or 404.
fn cluster<'a>(w: &'a World, p: &str, l: &str, c: &str) -> Result<&'a Value, Response> {
    let key = cluster_key(p, l, c);
    w.objects.get(&key).ok_or_else(|| not_found(&key))
}

/// The cluster, idle, ready for a mutation; or GKE's refusal.
fn ready(w: &World, p: &str, l: &str, c: &str) -> Result<Value, Response> {
    let cl = cluster(w, p, l, c)?.clone();
    if let Some(op) = running_op(w, p, l, c) {
        return Err(failed_precondition(format!(
            "Cluster is running incompatible operation {op}."
        )));
    }
    if cl["status"] != "RUNNING" {
        return Err(failed_precondition(format!(
            "Cluster {c} is not ready: its status is {}.",
            cl["status"].as_str().unwrap_or("unknown")
        )));
    }
    Ok(cl)
}

/// Starts an operation of `op_type` on `target` (`clusters/c` or
/// `clusters/c/nodePools/np`, under the location) with `changes` to apply on success.
fn start(
    w: &mut World,
    p: &str,
    l: &str,
    op_type: &str,
    target: &str,
    changes: Vec<Change>,
    effect: Effect,
) -> Value {
    let n = w.next();
    let name = format!("operation-{}-{:08x}", now_millis(), 0x9e37_79b9u64 ^ n);
    let body = json!({
        "name": name,
        "zone": l,
        "location": l,
        "operationType": op_type,
        "status": "RUNNING",
        "selfLink": format!("{BASE}/projects/{p}/locations/{l}/operations/{name}"),
        "targetLink": format!("{BASE}/projects/{p}/locations/{l}/{target}"),
        "startTime": now_rfc3339(),
    });
    let key = op_key(p, l, &name);
    let changes: Vec<Value> = changes.iter().map(Change::to_json).collect();
    w.objects.insert(pending_key(&key), json!(changes));
    let polls = w.knobs.gke_polls;
    w.start_op(key.clone(), body, polls, effect);
    if polls == 0 {
        complete(w, &key);
    }
    w.ops[&key].body.clone()
}

/// Marks operation `key` done and makes its state changes.
fn complete(w: &mut World, key: &str) {
    let Some(op) = w.ops.get(key) else {
        return;
    };
    let body = op.body.clone();
    let error = op.error.clone();
    let changes = w.objects.remove(&pending_key(key)).unwrap_or(Value::Null);
    finish(w, &body, &changes, error.as_deref());
    if let Some(op) = w.ops.get_mut(key) {
        op.body["status"] = json!("DONE");
        op.body["endTime"] = json!(now_rfc3339());
        if let Some(message) = error {
            op.body["statusMessage"] = json!(message);
            op.body["error"] = json!({"code": 13, "message": message});
        }
    }
}

/// Sets the status of cluster `ck` and, when `pools` is given, of every pool under it.
fn set_status(w: &mut World, ck: &str, status: &str, message: Option<&str>, pools: bool) {
    let under = format!("{ck}/nodePools/");
    for (k, v) in w.objects.iter_mut() {
        if k == ck || (pools && k.starts_with(&under)) {
            v["status"] = json!(status);
            match message {
                Some(m) => v["statusMessage"] = json!(m),
                None => {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("statusMessage");
                    }
                }
            }
        }
    }
}

/// What an operation does when it completes beyond its [`Effect`] (a delete's removal,
/// applied by the world when it succeeded).
fn finish(w: &mut World, op: &Value, changes: &Value, error: Option<&str>) {
    let link = op["targetLink"].as_str().unwrap_or_default();
    let path = link.strip_prefix(&format!("{BASE}/")).unwrap_or(link);
    let parts: Vec<&str> = path.split('/').collect();
    // projects/p/locations/l/clusters/c[/nodePools/np]
    let (Some(&p), Some(&l), Some(&c)) = (parts.get(1), parts.get(3), parts.get(5)) else {
        return;
    };
    let ck = cluster_key(p, l, c);
    let pool = parts.get(7).map(|np| format!("{ck}/nodePools/{np}"));
    let n = w.next();
    match (op["operationType"].as_str().unwrap_or_default(), error) {
        ("CREATE_CLUSTER", None) => {
            set_status(w, &ck, "RUNNING", None, true);
            provisioned(w, &ck, p, n);
        }
        ("CREATE_CLUSTER" | "DELETE_CLUSTER", Some(m)) => {
            set_status(w, &ck, "ERROR", Some(m), true)
        }
        ("DELETE_CLUSTER", None) => {}
        ("CREATE_NODE_POOL", e) => {
            let pk = pool.unwrap_or_default();
            if let Some(np) = w.objects.get_mut(&pk) {
                match e {
                    None => {
                        np["status"] = json!("RUNNING");
                        running_pool(np, p, c, n);
                    }
                    Some(m) => {
                        np["status"] = json!("ERROR");
                        np["statusMessage"] = json!(m);
                    }
                }
            }
            set_status(w, &ck, "RUNNING", None, false);
        }
        (_, e) => {
            if e.is_none() {
                apply_changes(w, &ck, changes);
            }
            if let Some(pk) = pool
                && let Some(np) = w.objects.get_mut(&pk)
            {
                np["status"] = json!("RUNNING");
                if let Some(m) = e {
                    np["statusMessage"] = json!(m);
                }
            }
            set_status(w, &ck, "RUNNING", e, false);
            if let Some(cl) = w.objects.get_mut(&ck) {
                cl["etag"] = json!(format!("etag-{n}"));
            }
        }
    }
}

/// Fills in what a cluster has once its control plane is up.
fn provisioned(w: &mut World, ck: &str, project: &str, n: u64) {
    let cluster_name = ck.rsplit('/').next().unwrap_or_default().to_string();
    let under = format!("{ck}/nodePools/");
    for (k, v) in w.objects.iter_mut() {
        if k.starts_with(&under) {
            running_pool(v, project, &cluster_name, n);
        }
    }
    let Some(cl) = w.objects.get_mut(ck) else {
        return;
    };
    let public = format!(
        "34.{}.{}.{}",
        100 + n / 62_500 % 100,
        n / 250 % 250,
        n % 250 + 2
    );
    let private = format!(
        "10.{}.{}.{}",
        128 + n / 62_500 % 100,
        n / 250 % 250,
        n % 250 + 2
    );
    cl["endpoint"] = json!(public);
    if cl.get("privateClusterConfig").is_some() {
        let pcc = &mut cl["privateClusterConfig"];
        pcc["privateEndpoint"] = json!(private);
        pcc["publicEndpoint"] = json!(public);
        if pcc["enablePrivateEndpoint"] == true {
            cl["endpoint"] = json!(private);
        }
    }
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\nMIIDouble-{cluster_name}\n-----END CERTIFICATE-----\n"
    );
    cl["masterAuth"] = json!({"clusterCaCertificate": crate::util::base64(pem.as_bytes())});
    cl["currentNodeCount"] = json!(3);
}

/// Fills in what a node pool has once its nodes run.
fn running_pool(np: &mut Value, project: &str, cluster: &str, n: u64) {
    let name = np["name"].as_str().unwrap_or_default().to_string();
    let zones: Vec<String> = np["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|z| z.as_str().map(str::to_string))
        .collect();
    let urls: Vec<String> = zones
        .iter()
        .map(|z| {
            format!(
                "https://www.googleapis.com/compute/v1/projects/{project}/zones/{z}/instanceGroupManagers/gke-{cluster}-{name}-{n:08x}-grp"
            )
        })
        .collect();
    np["instanceGroupUrls"] = json!(urls);
}

async fn get_operation(
    State(s): State<Shared>,
    Path((p, l, operation)): Path<(String, String, String)>,
) -> Reply {
    let mut w = s.lock();
    let key = op_key(&p, &l, &operation);
    let Some(before) = w.ops.get(&key).map(|op| op.polls_left) else {
        return Err(not_found(&key));
    };
    w.poll(&key);
    if before > 0 && w.ops[&key].polls_left == 0 {
        complete(&mut w, &key);
    }
    Ok(Json(w.ops[&key].body.clone()))
}

async fn list_operations(State(s): State<Shared>, Path((p, l)): Path<(String, String)>) -> Reply {
    let w = s.lock();
    let prefix = if l == "-" {
        format!("projects/{p}/locations/")
    } else {
        format!("projects/{p}/locations/{l}/operations/")
    };
    let ops: Vec<Value> = w
        .ops
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(k, _)| k.contains("/operations/"))
        .map(|(_, op)| op.body.clone())
        .collect();
    Ok(Json(json!({"operations": ops})))
}

// ---------------------------------------------------------------------------------------
// Clusters.

/// The cluster as GET shows it: the stored object with its node pools.
fn assembled(w: &World, key: &str) -> Option<Value> {
    let mut cl = w.objects.get(key)?.clone();
    let pools = w.children(&format!("{key}/nodePools"));
    cl["nodePools"] = json!(pools);
    Some(cl)
}

/// A node pool as stored at creation (`PROVISIONING`).
fn new_pool(req: &Value, p: &str, l: &str, c: &str, cluster: &Value, n: u64) -> Value {
    let defaults = json!({
        "config": {
            "machineType": "e2-medium",
            "diskSizeGb": 100,
            "diskType": "pd-balanced",
            "imageType": "COS_CONTAINERD",
            "serviceAccount": "default",
            "oauthScopes": [
                "https://www.googleapis.com/auth/devstorage.read_only",
                "https://www.googleapis.com/auth/logging.write",
                "https://www.googleapis.com/auth/monitoring",
                "https://www.googleapis.com/auth/service.management.readonly",
                "https://www.googleapis.com/auth/servicecontrol",
                "https://www.googleapis.com/auth/trace.append",
            ],
            "metadata": {"disable-legacy-endpoints": "true"},
        },
        "management": {"autoUpgrade": true, "autoRepair": true},
        "upgradeSettings": {"maxSurge": 1, "strategy": "SURGE"},
        "maxPodsConstraint": {"maxPodsPerNode": "110"},
        "podIpv4CidrSize": 24,
        "networkConfig": {"podRange": "", "podIpv4CidrBlock": format!("10.{}.0.0/14", 64 + n % 64 * 4)},
    });
    let mut np = defaults;
    merge(&mut np, req);
    let name = np["name"].as_str().unwrap_or_default().to_string();
    let version = cluster["currentMasterVersion"]
        .as_str()
        .unwrap_or(DEFAULT_VERSION)
        .to_string();
    let mut fixed = json!({
        "selfLink": format!("{BASE}/{}", pool_key(p, l, c, &name)),
        "version": version,
        "status": "PROVISIONING",
        "locations": cluster["locations"].clone(),
        "etag": format!("etag-{n}"),
    });
    if let Some(locs) = req["locations"].as_array().filter(|a| !a.is_empty()) {
        fixed["locations"] = json!(locs);
    }
    merge(&mut np, &fixed);
    np
}

async fn create_cluster(
    State(s): State<Shared>,
    Path((p, l)): Path<(String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let mut cl = req["cluster"].clone();
    if !cl.is_object() {
        return Err(invalid("Cluster is required."));
    }
    let name = cl["name"].as_str().unwrap_or_default().to_string();
    if !valid_name(&name, 40) {
        return Err(invalid(format!(
            "Invalid value for field \"cluster.name\": \"{name}\". Must be a match of regex \
             '(?:[a-z](?:[-a-z0-9]{{0,38}}[a-z0-9])?)' (only alphanumerics and '-' allowed, \
             must start with a letter and end with an alphanumeric, and must be no longer \
             than 40 characters)."
        )));
    }
    let pools_req: Vec<Value> = cl["nodePools"].as_array().cloned().unwrap_or_default();
    let initial = as_i64(&cl["initialNodeCount"]).unwrap_or(0);
    let autopilot = cl["autopilot"]["enabled"] == true;
    if !pools_req.is_empty() && initial > 0 {
        return Err(invalid(
            "Cluster.initial_node_count and Cluster.node_pools cannot both be specified.",
        ));
    }
    if pools_req.is_empty() && initial <= 0 && !autopilot {
        return Err(invalid(
            "Cluster.initial_node_count must be greater than zero.",
        ));
    }
    let pool = cl["workloadIdentityConfig"]["workloadPool"]
        .as_str()
        .unwrap_or_default();
    if !pool.is_empty() && pool != format!("{p}.svc.id.goog") {
        return Err(invalid(format!(
            "Workload Identity pool \"{pool}\" is invalid; it must be \"{p}.svc.id.goog\"."
        )));
    }
    for np in &pools_req {
        let n = np["name"].as_str().unwrap_or_default();
        if !valid_name(n, 40) {
            return Err(invalid(format!("Invalid node pool name \"{n}\".")));
        }
    }
    let mut w = s.lock();
    let key = cluster_key(&p, &l, &name);
    if w.objects.contains_key(&key) {
        return Err(already_exists(&key));
    }
    check_secondary_ranges(&mut w, &p, &l, &cl)?;
    let n = w.next();
    let locations: Vec<String> = match cl["locations"].as_array().filter(|a| !a.is_empty()) {
        Some(a) => a
            .iter()
            .filter_map(|z| z.as_str().map(str::to_string))
            .collect(),
        None if is_zone(&l) => vec![l.clone()],
        None => ["a", "b", "c"].iter().map(|z| format!("{l}-{z}")).collect(),
    };
    let version = cl["initialClusterVersion"]
        .as_str()
        .filter(|v| !v.is_empty() && *v != "latest" && *v != "-")
        .unwrap_or(DEFAULT_VERSION)
        .to_string();
    let node_config = cl["nodeConfig"].clone();
    if let Some(o) = cl.as_object_mut() {
        o.remove("nodePools");
    }
    let defaults = json!({
        "network": "default",
        "subnetwork": "default",
        "loggingService": "logging.googleapis.com/kubernetes",
        "monitoringService": "monitoring.googleapis.com/kubernetes",
        "releaseChannel": {"channel": "REGULAR"},
        "clusterIpv4Cidr": format!("10.{}.0.0/14", n % 64 * 4),
        "servicesIpv4Cidr": "34.118.224.0/20",
        "nodeIpv4CidrSize": 24,
        "ipAllocationPolicy": {"useIpAliases": true},
        "networkConfig": {"network": format!("projects/{p}/global/networks/default"), "subnetwork": format!("projects/{p}/regions/{}/subnetworks/default", region_of(&l))},
    });
    let mut stored = defaults;
    merge(&mut stored, &cl);
    if let Some(net) = cl["network"].as_str() {
        stored["networkConfig"]["network"] =
            json!(qualify(net, &format!("projects/{p}/global/networks")));
    }
    if let Some(sub) = cl["subnetwork"].as_str() {
        stored["networkConfig"]["subnetwork"] = json!(qualify(
            sub,
            &format!("projects/{p}/regions/{}/subnetworks", region_of(&l))
        ));
    }
    let fixed = json!({
        "name": name,
        "selfLink": format!("{BASE}/{key}"),
        "zone": l,
        "location": l,
        "locations": locations,
        "status": "PROVISIONING",
        "createTime": now_rfc3339(),
        "initialClusterVersion": version,
        "currentMasterVersion": version,
        "currentNodeVersion": version,
        "id": format!("{:032x}", 0x5eed_0000_0000u64 + n),
        "etag": format!("etag-{n}"),
        "labelFingerprint": format!("{:016x}", n),
    });
    merge(&mut stored, &fixed);
    let pools = if pools_req.is_empty() && initial > 0 {
        let mut default_pool = json!({"name": "default-pool", "initialNodeCount": initial});
        if node_config.is_object() {
            default_pool["config"] = node_config;
        }
        vec![default_pool]
    } else {
        pools_req
    };
    for np in &pools {
        let np = new_pool(np, &p, &l, &name, &stored, n);
        let np_name = np["name"].as_str().unwrap_or_default().to_string();
        w.objects.insert(pool_key(&p, &l, &name, &np_name), np);
    }
    w.objects.insert(key, stored);
    let target = format!("clusters/{name}");
    Ok(Json(start(
        &mut w,
        &p,
        &l,
        "CREATE_CLUSTER",
        &target,
        vec![],
        Effect::None,
    )))
}

/// `us-central1` of `us-central1-a` (a region is its own region).
fn region_of(location: &str) -> &str {
    if is_zone(location) {
        location.rsplit_once('-').map_or(location, |(r, _)| r)
    } else {
        location
    }
}

/// A short network name as its relative resource name.
fn qualify(name: &str, collection: &str) -> String {
    if name.contains('/') {
        name.to_string()
    } else {
        format!("{collection}/{name}")
    }
}

/// The compute storage key (`projects/{id}/regions/{r}/subnetworks/{n}`) of a cluster's
/// subnetwork as the request or the stored cluster names it: a URL, a relative name or a
/// bare name in the cluster's region.
fn subnetwork_key(w: &mut World, p: &str, l: &str, reference: &str) -> Option<String> {
    let rel = match reference.find("projects/") {
        Some(i) => reference[i..].to_string(),
        None if !reference.is_empty() && !reference.contains('/') => {
            format!(
                "projects/{p}/regions/{}/subnetworks/{reference}",
                region_of(l)
            )
        }
        None => return None,
    };
    match rel.split('/').collect::<Vec<_>>().as_slice() {
        ["projects", project, "regions", region, "subnetworks", name] => Some(format!(
            "projects/{}/regions/{region}/subnetworks/{name}",
            w.project_id(project)
        )),
        _ => None,
    }
}

/// The secondary ranges a cluster names: (`Pod`/`Services`, range name).
fn named_ranges(cluster: &Value) -> Vec<(&'static str, String)> {
    let ip = &cluster["ipAllocationPolicy"];
    [
        ("Pod", "clusterSecondaryRangeName"),
        ("Services", "servicesSecondaryRangeName"),
    ]
    .into_iter()
    .filter_map(|(what, field)| {
        ip[field]
            .as_str()
            .filter(|r| !r.is_empty())
            .map(|r| (what, r.to_string()))
    })
    .collect()
}

/// GKE's refusal of a cluster whose subnetwork lacks a secondary range it names (when the
/// double has the subnetwork at all).
fn check_secondary_ranges(
    w: &mut World,
    p: &str,
    l: &str,
    cluster: &Value,
) -> Result<(), Response> {
    let Some(reference) = cluster["subnetwork"].as_str() else {
        return Ok(());
    };
    let Some(key) = subnetwork_key(w, p, l, reference) else {
        return Ok(());
    };
    let Some(sub) = w.objects.get(&key) else {
        return Ok(());
    };
    let has = |name: &str| {
        sub["secondaryIpRanges"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["rangeName"] == name)
    };
    for (what, range) in named_ranges(cluster) {
        if !has(&range) {
            return Err(invalid(format!(
                "{what} secondary range \"{range}\" not found in network \"{}\", subnetwork \"{reference}\".",
                sub["network"].as_str().unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// The clusters (any location of the subnetwork's project) on subnetwork `key` (its
/// compute storage key), each with the secondary range names it uses: Compute refuses to
/// delete the subnetwork, or to remove or change those ranges, while they exist.
pub(crate) fn clusters_on_subnetwork(w: &mut World, key: &str) -> Vec<(String, Vec<String>)> {
    let clusters: Vec<(String, Value)> = w
        .objects
        .iter()
        .filter(|(k, _)| {
            let parts: Vec<&str> = k.split('/').collect();
            parts.len() == 6 && parts[0] == "projects" && parts[4] == "clusters"
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    clusters
        .into_iter()
        .filter_map(|(ck, cl)| {
            let parts: Vec<&str> = ck.split('/').collect();
            let reference = cl["networkConfig"]["subnetwork"].as_str()?;
            let on = subnetwork_key(w, parts[1], parts[3], reference)?;
            let ranges = named_ranges(&cl).into_iter().map(|(_, r)| r).collect();
            (on == key).then_some((ck, ranges))
        })
        .collect()
}

async fn get_cluster(
    State(s): State<Shared>,
    Path((p, l, c)): Path<(String, String, String)>,
) -> Reply {
    let w = s.lock();
    let key = cluster_key(&p, &l, &c);
    assembled(&w, &key).map(Json).ok_or_else(|| not_found(&key))
}

async fn list_clusters(State(s): State<Shared>, Path((p, l)): Path<(String, String)>) -> Reply {
    let w = s.lock();
    // `locations/-` lists every location.
    let prefix = if l == "-" {
        format!("projects/{p}/locations/")
    } else {
        format!("projects/{p}/locations/{l}/clusters/")
    };
    let keys: Vec<String> = w
        .objects
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .filter(|k| {
            let parts: Vec<&str> = k.split('/').collect();
            parts.len() == 6 && parts[4] == "clusters"
        })
        .collect();
    let clusters: Vec<Value> = keys.iter().filter_map(|k| assembled(&w, k)).collect();
    Ok(Json(json!({"clusters": clusters})))
}

/// The changes a `ClusterUpdate` asks for.
fn update_changes(update: &Value) -> Result<Vec<Change>, Response> {
    let Some(fields) = update.as_object().filter(|o| !o.is_empty()) else {
        return Err(invalid("Must specify a field to update."));
    };
    let pool = update["desiredNodePoolId"].as_str().unwrap_or_default();
    let mut out = Vec::new();
    for (k, v) in fields {
        let change = match k.as_str() {
            "desiredNodePoolId" | "etag" => continue,
            "desiredMasterVersion" => {
                let version = v
                    .as_str()
                    .filter(|s| !s.is_empty() && *s != "latest" && *s != "-")
                    .unwrap_or(DEFAULT_VERSION);
                Change::cluster(&["currentMasterVersion"], json!(version))
            }
            "desiredNodeVersion" => {
                out.push(Change::cluster(&["currentNodeVersion"], v.clone()));
                if pool.is_empty() {
                    continue;
                }
                Change::pool(pool, &["version"], v.clone())
            }
            "desiredNodePoolAutoscaling" | "desiredImageType" => {
                if pool.is_empty() {
                    return Err(invalid(format!(
                        "{k} requires desiredNodePoolId to be set."
                    )));
                }
                if k == "desiredImageType" {
                    Change::pool(pool, &["config", "imageType"], v.clone())
                } else {
                    Change::pool(pool, &["autoscaling"], v.clone())
                }
            }
            "desiredEnablePrivateEndpoint" => Change::cluster(
                &["privateClusterConfig", "enablePrivateEndpoint"],
                v.clone(),
            ),
            "desiredPrivateClusterConfig" => {
                Change::cluster(&["privateClusterConfig"], v.clone()).merged()
            }
            "desiredDatapathProvider" => {
                Change::cluster(&["networkConfig", "datapathProvider"], v.clone())
            }
            "desiredDefaultSnatStatus" => {
                Change::cluster(&["networkConfig", "defaultSnatStatus"], v.clone())
            }
            "desiredIntraNodeVisibilityConfig" => Change::cluster(
                &["networkConfig", "enableIntraNodeVisibility"],
                v["enabled"].clone(),
            ),
            "desiredDnsConfig" => Change::cluster(&["networkConfig", "dnsConfig"], v.clone()),
            "desiredGatewayApiConfig" => {
                Change::cluster(&["networkConfig", "gatewayApiConfig"], v.clone())
            }
            "desiredStackType" => Change::cluster(&["ipAllocationPolicy", "stackType"], v.clone()),
            "desiredLocations" => Change::cluster(&["locations"], v.clone()),
            "desiredNodePoolAutoConfigNetworkTags" => {
                Change::cluster(&["nodePoolAutoConfig", "networkTags"], v.clone())
            }
            other => match other.strip_prefix("desired") {
                Some(rest) if !rest.is_empty() => {
                    let mut field = rest[..1].to_ascii_lowercase();
                    field.push_str(&rest[1..]);
                    Change::cluster(&[field.as_str()], v.clone())
                }
                // Fields outside `desired*` (`additionalPodRangesConfig`, …) are taken
                // as named.
                _ => Change::cluster(&[other], v.clone()),
            },
        };
        out.push(change);
    }
    Ok(out)
}

async fn update_cluster(
    State(s): State<Shared>,
    Path((p, l, c)): Path<(String, String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let mut w = s.lock();
    ready(&w, &p, &l, &c)?;
    let changes = update_changes(&req["update"])?;
    if let Some(pool) = req["update"]["desiredNodePoolId"].as_str()
        && !pool.is_empty()
        && !w.objects.contains_key(&pool_key(&p, &l, &c, pool))
    {
        return Err(not_found(&pool_key(&p, &l, &c, pool)));
    }
    let key = cluster_key(&p, &l, &c);
    set_status(&mut w, &key, "RECONCILING", None, false);
    let op_type = if req["update"].get("desiredMasterVersion").is_some() {
        "UPGRADE_MASTER"
    } else {
        "UPDATE_CLUSTER"
    };
    Ok(Json(start(
        &mut w,
        &p,
        &l,
        op_type,
        &format!("clusters/{c}"),
        changes,
        Effect::None,
    )))
}

async fn delete_cluster(
    State(s): State<Shared>,
    Path((p, l, c)): Path<(String, String, String)>,
) -> Reply {
    let mut w = s.lock();
    cluster(&w, &p, &l, &c)?;
    if let Some(op) = running_op(&w, &p, &l, &c) {
        return Err(failed_precondition(format!(
            "Cluster is running incompatible operation {op}."
        )));
    }
    let key = cluster_key(&p, &l, &c);
    set_status(&mut w, &key, "STOPPING", None, true);
    Ok(Json(start(
        &mut w,
        &p,
        &l,
        "DELETE_CLUSTER",
        &format!("clusters/{c}"),
        vec![],
        Effect::Delete(key),
    )))
}

/// `POST …/clusters/c:verb`: the cluster-wide setters.
async fn cluster_verb(
    State(s): State<Shared>,
    Path((p, l, target)): Path<(String, String, String)>,
    body: Bytes,
) -> Reply {
    let Some((c, verb)) = target.split_once(':') else {
        return Err(google_error(
            405,
            "UNIMPLEMENTED",
            "Method not allowed: use a custom verb such as :setResourceLabels.",
            vec![],
        ));
    };
    let req = parse_body(&body)?;
    let (op_type, changes) = match verb {
        "setResourceLabels" => (
            "SET_LABELS",
            vec![
                Change::cluster(&["resourceLabels"], req["resourceLabels"].clone()),
                Change::cluster(
                    &["labelFingerprint"],
                    json!(format!("{:016x}", now_millis())),
                ),
            ],
        ),
        "setMaintenancePolicy" => (
            "SET_MAINTENANCE_POLICY",
            vec![Change::cluster(
                &["maintenancePolicy"],
                req["maintenancePolicy"].clone(),
            )],
        ),
        "setNetworkPolicy" => (
            "SET_NETWORK_POLICY",
            vec![Change::cluster(
                &["networkPolicy"],
                req["networkPolicy"].clone(),
            )],
        ),
        "setAddons" => (
            "UPDATE_CLUSTER",
            vec![Change::cluster(&["addonsConfig"], req["addonsConfig"].clone()).merged()],
        ),
        "setLogging" => (
            "UPDATE_CLUSTER",
            vec![Change::cluster(
                &["loggingService"],
                req["loggingService"].clone(),
            )],
        ),
        "setMonitoring" => (
            "UPDATE_CLUSTER",
            vec![Change::cluster(
                &["monitoringService"],
                req["monitoringService"].clone(),
            )],
        ),
        "setLocations" => (
            "UPDATE_CLUSTER",
            vec![Change::cluster(&["locations"], req["locations"].clone())],
        ),
        "setLegacyAbac" => (
            "UPDATE_CLUSTER",
            vec![Change::cluster(
                &["legacyAbac", "enabled"],
                req["enabled"].clone(),
            )],
        ),
        "updateMaster" => {
            let version = req["masterVersion"]
                .as_str()
                .filter(|v| !v.is_empty() && *v != "latest" && *v != "-")
                .unwrap_or(DEFAULT_VERSION);
            (
                "UPGRADE_MASTER",
                vec![Change::cluster(&["currentMasterVersion"], json!(version))],
            )
        }
        other => {
            return Err(google_error(
                501,
                "UNIMPLEMENTED",
                format!("The GCP double does not serve clusters:{other}."),
                vec![],
            ));
        }
    };
    let mut w = s.lock();
    ready(&w, &p, &l, c)?;
    let key = cluster_key(&p, &l, c);
    set_status(&mut w, &key, "RECONCILING", None, false);
    Ok(Json(start(
        &mut w,
        &p,
        &l,
        op_type,
        &format!("clusters/{c}"),
        changes,
        Effect::None,
    )))
}

// ---------------------------------------------------------------------------------------
// Node pools.

async fn create_node_pool(
    State(s): State<Shared>,
    Path((p, l, c)): Path<(String, String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    let np = &req["nodePool"];
    let name = np["name"].as_str().unwrap_or_default().to_string();
    if !valid_name(&name, 40) {
        return Err(invalid(format!(
            "Invalid value for field \"node_pool.name\": \"{name}\"."
        )));
    }
    let mut w = s.lock();
    let cl = cluster(&w, &p, &l, &c)?.clone();
    let key = pool_key(&p, &l, &c, &name);
    if w.objects.contains_key(&key) {
        return Err(already_exists(&key));
    }
    ready(&w, &p, &l, &c)?;
    let n = w.next();
    let stored = new_pool(np, &p, &l, &c, &cl, n);
    w.objects.insert(key, stored);
    set_status(&mut w, &cluster_key(&p, &l, &c), "RECONCILING", None, false);
    Ok(Json(start(
        &mut w,
        &p,
        &l,
        "CREATE_NODE_POOL",
        &format!("clusters/{c}/nodePools/{name}"),
        vec![],
        Effect::None,
    )))
}

/// The node pool, or 404 (also when its cluster is missing).
fn node_pool(w: &World, p: &str, l: &str, c: &str, np: &str) -> Result<Value, Response> {
    cluster(w, p, l, c)?;
    let key = pool_key(p, l, c, np);
    w.objects.get(&key).cloned().ok_or_else(|| not_found(&key))
}

async fn get_node_pool(
    State(s): State<Shared>,
    Path((p, l, c, np)): Path<(String, String, String, String)>,
) -> Reply {
    let w = s.lock();
    node_pool(&w, &p, &l, &c, &np).map(Json)
}

async fn list_node_pools(
    State(s): State<Shared>,
    Path((p, l, c)): Path<(String, String, String)>,
) -> Reply {
    let w = s.lock();
    let key = cluster_key(&p, &l, &c);
    cluster(&w, &p, &l, &c)?;
    Ok(Json(
        json!({"nodePools": w.children(&format!("{key}/nodePools"))}),
    ))
}

async fn delete_node_pool(
    State(s): State<Shared>,
    Path((p, l, c, np)): Path<(String, String, String, String)>,
) -> Reply {
    let mut w = s.lock();
    node_pool(&w, &p, &l, &c, &np)?;
    ready(&w, &p, &l, &c)?;
    let key = pool_key(&p, &l, &c, &np);
    if let Some(v) = w.objects.get_mut(&key) {
        v["status"] = json!("STOPPING");
    }
    set_status(&mut w, &cluster_key(&p, &l, &c), "RECONCILING", None, false);
    Ok(Json(start(
        &mut w,
        &p,
        &l,
        "DELETE_NODE_POOL",
        &format!("clusters/{c}/nodePools/{np}"),
        vec![],
        Effect::Delete(key),
    )))
}

/// The changes an `UpdateNodePoolRequest` asks for.
fn pool_update_changes(np: &str, req: &Value) -> Vec<Change> {
    const CONFIG: &[&str] = &[
        "machineType",
        "diskType",
        "imageType",
        "workloadMetadataConfig",
        "linuxNodeConfig",
        "kubeletConfig",
        "gcfsConfig",
        "gvnic",
        "loggingConfig",
        "confidentialNodes",
        "fastSocket",
        "windowsNodeConfig",
        "accelerators",
        "resourceManagerTags",
        "containerdConfig",
        "storagePools",
        "bootDisk",
        "maxRunDuration",
        "flexStart",
    ];
    let mut out = Vec::new();
    for (k, v) in req.as_object().into_iter().flatten() {
        let k = k.as_str();
        let change = match k {
            "nodeVersion" => Change::pool(np, &["version"], v.clone()),
            "locations" => Change::pool(np, &["locations"], v.clone()),
            "upgradeSettings" => Change::pool(np, &["upgradeSettings"], v.clone()),
            "queuedProvisioning" => Change::pool(np, &["queuedProvisioning"], v.clone()),
            "nodeNetworkConfig" => Change::pool(np, &["networkConfig"], v.clone()).merged(),
            "diskSizeGb" => Change::pool(np, &["config", "diskSizeGb"], json!(as_i64(v))),
            "tags" => Change::pool(np, &["config", "tags"], v["tags"].clone()),
            "taints" => Change::pool(np, &["config", "taints"], v["taints"].clone()),
            "labels" => Change::pool(np, &["config", "labels"], v["labels"].clone()),
            "resourceLabels" => {
                Change::pool(np, &["config", "resourceLabels"], v["labels"].clone())
            }
            k if CONFIG.contains(&k) => Change::pool(np, &["config", k], v.clone()),
            _ => continue,
        };
        out.push(change);
    }
    out
}

async fn update_node_pool(
    State(s): State<Shared>,
    Path((p, l, c, np)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Reply {
    let req = parse_body(&body)?;
    pool_mutation(
        &s,
        &p,
        &l,
        &c,
        &np,
        "UPGRADE_NODES",
        pool_update_changes(&np, &req),
    )
}

/// `POST …/nodePools/np:verb`: autoscaling, management and size.
async fn node_pool_verb(
    State(s): State<Shared>,
    Path((p, l, c, target)): Path<(String, String, String, String)>,
    body: Bytes,
) -> Reply {
    let Some((np, verb)) = target.split_once(':') else {
        return Err(google_error(
            405,
            "UNIMPLEMENTED",
            "Method not allowed: use a custom verb such as :setAutoscaling.",
            vec![],
        ));
    };
    let req = parse_body(&body)?;
    let (op_type, changes) = match verb {
        "setAutoscaling" => (
            "UPDATE_CLUSTER",
            vec![Change::pool(
                np,
                &["autoscaling"],
                req["autoscaling"].clone(),
            )],
        ),
        "setManagement" => (
            "SET_NODE_POOL_MANAGEMENT",
            vec![Change::pool(np, &["management"], req["management"].clone())],
        ),
        "setSize" => (
            "SET_NODE_POOL_SIZE",
            vec![Change::pool(
                np,
                &["currentNodeCount"],
                json!(as_i64(&req["nodeCount"])),
            )],
        ),
        other => {
            return Err(google_error(
                501,
                "UNIMPLEMENTED",
                format!("The GCP double does not serve nodePools:{other}."),
                vec![],
            ));
        }
    };
    pool_mutation(&s, &p, &l, &c, np, op_type, changes)
}

/// Starts an operation that changes node pool `np` (`RECONCILING` meanwhile).
fn pool_mutation(
    s: &Shared,
    p: &str,
    l: &str,
    c: &str,
    np: &str,
    op_type: &str,
    changes: Vec<Change>,
) -> Reply {
    let mut w = s.lock();
    node_pool(&w, p, l, c, np)?;
    ready(&w, p, l, c)?;
    if let Some(v) = w.objects.get_mut(&pool_key(p, l, c, np)) {
        v["status"] = json!("RECONCILING");
    }
    set_status(&mut w, &cluster_key(p, l, c), "RECONCILING", None, false);
    Ok(Json(start(
        &mut w,
        p,
        l,
        op_type,
        &format!("clusters/{c}/nodePools/{np}"),
        changes,
        Effect::None,
    )))
}

#[cfg(test)]
mod tests {
    use google_cloud_container_v1::client::ClusterManager;
    use google_cloud_container_v1::model::workload_metadata_config::Mode;
    use google_cloud_container_v1::model::{
        Cluster, ClusterUpdate, IPAllocationPolicy, NodeConfig, NodeManagement, NodePool,
        NodePoolAutoscaling, Operation, ReleaseChannel, WorkloadIdentityConfig,
        WorkloadMetadataConfig, cluster, node_pool, operation, release_channel,
    };
    use google_cloud_gax::error::Error;
    use google_cloud_gax::error::rpc::Code;

    use crate::GcpDouble;
    use crate::sql::tests::run;

    const PARENT: &str = "projects/proj/locations/us-central1";
    const C1: &str = "projects/proj/locations/us-central1/clusters/c1";

    async fn client(d: &GcpDouble) -> ClusterManager {
        ClusterManager::builder()
            .with_endpoint(d.url())
            .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
            .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry)
            .build()
            .await
            .expect("client")
    }

    fn double() -> GcpDouble {
        let d = GcpDouble::start();
        {
            let mut w = d.shared().lock();
            w.knobs.enforce_services = false;
            w.knobs.gke_polls = 2;
        }
        d
    }

    fn code(e: &Error) -> (Option<Code>, Option<u16>) {
        (e.status().map(|s| s.code), e.http_status_code())
    }

    fn op_name(op: &Operation) -> String {
        format!("{PARENT}/operations/{}", op.name)
    }

    /// Polls `op` until it is DONE (at most 10 polls).
    async fn wait(gke: &ClusterManager, op: &Operation) -> Operation {
        for _ in 0..10 {
            let got = gke
                .get_operation()
                .set_name(op_name(op))
                .send()
                .await
                .expect("poll");
            if got.status == operation::Status::Done {
                return got;
            }
        }
        panic!("operation {} never finished", op.name);
    }

    // `initialNodeCount` is deprecated in favour of `nodePools`, but Terraform-style
    // callers still create a default pool with it and delete it afterwards.
    #[allow(deprecated)]
    fn new_cluster(name: &str) -> Cluster {
        Cluster::new()
            .set_name(name)
            .set_network("vpc")
            .set_subnetwork("gke-subnet")
            .set_initial_node_count(1)
            .set_release_channel(
                ReleaseChannel::new().set_channel(release_channel::Channel::Regular),
            )
            .set_workload_identity_config(
                WorkloadIdentityConfig::new().set_workload_pool("proj.svc.id.goog"),
            )
            .set_ip_allocation_policy(
                IPAllocationPolicy::new()
                    .set_use_ip_aliases(true)
                    .set_cluster_secondary_range_name("pods")
                    .set_services_secondary_range_name("services"),
            )
            .set_resource_labels([("owner", "flyteinfra")])
    }

    #[test]
    fn gke_cluster_and_node_pools() {
        run(async {
            let d = double();
            let gke = client(&d).await;
            let op = gke
                .create_cluster()
                .set_parent(PARENT)
                .set_cluster(new_cluster("c1"))
                .send()
                .await
                .expect("create");
            assert_eq!(op.operation_type, operation::Type::CreateCluster);
            assert_eq!(op.status, operation::Status::Running);
            assert!(
                op.target_link
                    .ends_with("/projects/proj/locations/us-central1/clusters/c1")
            );

            let got = gke.get_cluster().set_name(C1).send().await.expect("get");
            assert_eq!(got.status, cluster::Status::Provisioning);
            assert_eq!(got.node_pools.len(), 1);
            assert_eq!(got.node_pools[0].name, "default-pool");
            assert_eq!(got.node_pools[0].status, node_pool::Status::Provisioning);

            // One operation at a time per cluster.
            let e = gke
                .create_node_pool()
                .set_parent(C1)
                .set_node_pool(
                    NodePool::new()
                        .set_name("workers")
                        .set_initial_node_count(1),
                )
                .send()
                .await
                .expect_err("busy");
            assert_eq!(code(&e), (Some(Code::FailedPrecondition), Some(400)));
            assert!(
                e.status()
                    .expect("status")
                    .message
                    .starts_with("Cluster is running incompatible operation operation-")
            );

            let e = gke
                .create_cluster()
                .set_parent(PARENT)
                .set_cluster(new_cluster("c1"))
                .send()
                .await
                .expect_err("exists");
            assert_eq!(code(&e), (Some(Code::AlreadyExists), Some(409)));

            let first = gke
                .get_operation()
                .set_name(op_name(&op))
                .send()
                .await
                .expect("poll");
            assert_eq!(first.status, operation::Status::Running);
            let done = wait(&gke, &op).await;
            assert!(done.error.is_none());
            assert!(!done.end_time.is_empty());

            let got = gke.get_cluster().set_name(C1).send().await.expect("get");
            assert_eq!(got.status, cluster::Status::Running);
            assert!(!got.endpoint.is_empty());
            assert!(!got.current_master_version.is_empty());
            assert_eq!(got.location, "us-central1");
            assert_eq!(got.locations.len(), 3);
            assert_eq!(
                got.workload_identity_config.expect("wi").workload_pool,
                "proj.svc.id.goog"
            );
            assert_eq!(
                got.resource_labels.get("owner").map(String::as_str),
                Some("flyteinfra")
            );
            assert_eq!(got.node_pools[0].status, node_pool::Status::Running);
            assert_eq!(got.node_pools[0].instance_group_urls.len(), 3);

            let op = gke
                .create_node_pool()
                .set_parent(C1)
                .set_node_pool(
                    NodePool::new()
                        .set_name("workers")
                        .set_initial_node_count(1)
                        .set_config(
                            NodeConfig::new()
                                .set_machine_type("e2-standard-4")
                                .set_service_account("nodes@proj.iam.gserviceaccount.com")
                                .set_workload_metadata_config(
                                    WorkloadMetadataConfig::new().set_mode(Mode::GkeMetadata),
                                ),
                        )
                        .set_autoscaling(
                            NodePoolAutoscaling::new()
                                .set_enabled(true)
                                .set_min_node_count(1)
                                .set_max_node_count(3),
                        )
                        .set_management(
                            NodeManagement::new()
                                .set_auto_upgrade(true)
                                .set_auto_repair(true),
                        ),
                )
                .send()
                .await
                .expect("create pool");
            assert_eq!(op.operation_type, operation::Type::CreateNodePool);
            let np = gke
                .get_node_pool()
                .set_name(format!("{C1}/nodePools/workers"))
                .send()
                .await
                .expect("pool");
            assert_eq!(np.status, node_pool::Status::Provisioning);
            wait(&gke, &op).await;
            let np = gke
                .get_node_pool()
                .set_name(format!("{C1}/nodePools/workers"))
                .send()
                .await
                .expect("pool");
            assert_eq!(np.status, node_pool::Status::Running);
            let config = np.config.expect("config");
            assert_eq!(config.machine_type, "e2-standard-4");
            assert_eq!(
                config.workload_metadata_config.expect("wmc").mode,
                Mode::GkeMetadata
            );

            let e = gke
                .create_node_pool()
                .set_parent(C1)
                .set_node_pool(
                    NodePool::new()
                        .set_name("workers")
                        .set_initial_node_count(1),
                )
                .send()
                .await
                .expect_err("pool exists");
            assert_eq!(code(&e), (Some(Code::AlreadyExists), Some(409)));

            // Terraform-style removal of the default pool.
            let op = gke
                .delete_node_pool()
                .set_name(format!("{C1}/nodePools/default-pool"))
                .send()
                .await
                .expect("delete pool");
            assert_eq!(op.operation_type, operation::Type::DeleteNodePool);
            wait(&gke, &op).await;
            let pools = gke
                .list_node_pools()
                .set_parent(C1)
                .send()
                .await
                .expect("pools");
            let names: Vec<&str> = pools.node_pools.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(names, ["workers"]);

            let op = gke
                .set_node_pool_autoscaling()
                .set_name(format!("{C1}/nodePools/workers"))
                .set_autoscaling(
                    NodePoolAutoscaling::new()
                        .set_enabled(true)
                        .set_min_node_count(1)
                        .set_max_node_count(5),
                )
                .send()
                .await
                .expect("autoscaling");
            wait(&gke, &op).await;
            let op = gke
                .update_node_pool()
                .set_name(format!("{C1}/nodePools/workers"))
                .set_machine_type("e2-standard-8")
                .send()
                .await
                .expect("update pool");
            wait(&gke, &op).await;
            let np = gke
                .get_node_pool()
                .set_name(format!("{C1}/nodePools/workers"))
                .send()
                .await
                .expect("pool");
            assert_eq!(np.autoscaling.expect("autoscaling").max_node_count, 5);
            assert_eq!(np.config.expect("config").machine_type, "e2-standard-8");

            let op = gke
                .update_cluster()
                .set_name(C1)
                .set_update(ClusterUpdate::new().set_desired_release_channel(
                    ReleaseChannel::new().set_channel(release_channel::Channel::Stable),
                ))
                .send()
                .await
                .expect("update");
            assert_eq!(op.operation_type, operation::Type::UpdateCluster);
            let got = gke.get_cluster().set_name(C1).send().await.expect("get");
            assert_eq!(
                got.release_channel.expect("rc").channel,
                release_channel::Channel::Regular
            );
            wait(&gke, &op).await;
            let got = gke.get_cluster().set_name(C1).send().await.expect("get");
            assert_eq!(got.status, cluster::Status::Running);
            assert_eq!(
                got.release_channel.expect("rc").channel,
                release_channel::Channel::Stable
            );

            let listed = gke
                .list_clusters()
                .set_parent(PARENT)
                .send()
                .await
                .expect("list");
            assert_eq!(listed.clusters.len(), 1);

            let op = gke
                .delete_cluster()
                .set_name(C1)
                .send()
                .await
                .expect("delete");
            assert_eq!(op.operation_type, operation::Type::DeleteCluster);
            let got = gke.get_cluster().set_name(C1).send().await.expect("get");
            assert_eq!(got.status, cluster::Status::Stopping);
            wait(&gke, &op).await;
            let e = gke
                .get_cluster()
                .set_name(C1)
                .send()
                .await
                .expect_err("gone");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));
            let e = gke
                .get_node_pool()
                .set_name(format!("{C1}/nodePools/workers"))
                .send()
                .await
                .expect_err("gone");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));
        });
    }

    // `statusMessage` is deprecated in favour of conditions, but GKE still fills it.
    #[allow(deprecated)]
    #[test]
    fn gke_failed_create_leaves_error() {
        run(async {
            let d = double();
            {
                let mut w = d.shared().lock();
                w.knobs.fail_next_ops = 1;
                w.knobs.fail_message = "Insufficient regional quota to satisfy request".into();
            }
            let gke = client(&d).await;
            let op = gke
                .create_cluster()
                .set_parent(PARENT)
                .set_cluster(new_cluster("c1"))
                .send()
                .await
                .expect("create");
            let done = wait(&gke, &op).await;
            let error = done.error.expect("error");
            assert_eq!(
                error.message,
                "Insufficient regional quota to satisfy request"
            );
            assert_eq!(
                done.status_message,
                "Insufficient regional quota to satisfy request"
            );
            let got = gke.get_cluster().set_name(C1).send().await.expect("get");
            assert_eq!(got.status, cluster::Status::Error);
            assert_eq!(
                got.status_message,
                "Insufficient regional quota to satisfy request"
            );
            // An errored cluster can still be deleted.
            let op = gke
                .delete_cluster()
                .set_name(C1)
                .send()
                .await
                .expect("delete");
            assert!(wait(&gke, &op).await.error.is_none());
            assert!(gke.get_cluster().set_name(C1).send().await.is_err());
        });
    }

    #[test]
    fn gke_rejects_bad_requests() {
        run(async {
            let d = double();
            let gke = client(&d).await;
            let e = gke
                .create_cluster()
                .set_parent(PARENT)
                .set_cluster(Cluster::new().set_name("c2"))
                .send()
                .await
                .expect_err("no nodes");
            assert_eq!(code(&e), (Some(Code::InvalidArgument), Some(400)));
            let e = gke
                .create_cluster()
                .set_parent(PARENT)
                .set_cluster(new_cluster("c2").set_workload_identity_config(
                    WorkloadIdentityConfig::new().set_workload_pool("other.svc.id.goog"),
                ))
                .send()
                .await
                .expect_err("bad pool");
            assert_eq!(code(&e), (Some(Code::InvalidArgument), Some(400)));
            let e = gke
                .get_cluster()
                .set_name(format!("{PARENT}/clusters/none"))
                .send()
                .await
                .expect_err("missing");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));
            let e = gke
                .create_node_pool()
                .set_parent(format!("{PARENT}/clusters/none"))
                .set_node_pool(NodePool::new().set_name("np").set_initial_node_count(1))
                .send()
                .await
                .expect_err("missing cluster");
            assert_eq!(code(&e), (Some(Code::NotFound), Some(404)));
            // A zonal cluster lives in its one zone.
            d.shared().lock().knobs.gke_polls = 0;
            let op = gke
                .create_cluster()
                .set_parent("projects/proj/locations/us-central1-b")
                .set_cluster(new_cluster("zonal"))
                .send()
                .await
                .expect("zonal");
            assert_eq!(op.status, operation::Status::Done);
            let got = gke
                .get_cluster()
                .set_name("projects/proj/locations/us-central1-b/clusters/zonal")
                .send()
                .await
                .expect("get");
            assert_eq!(got.status, cluster::Status::Running);
            assert_eq!(got.locations, ["us-central1-b"]);
            let all = gke
                .list_clusters()
                .set_parent("projects/proj/locations/-")
                .send()
                .await
                .expect("list all");
            assert_eq!(all.clusters.len(), 1);
        });
    }
}

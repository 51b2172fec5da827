//! Service Networking v1 (`servicenetworking.googleapis.com`): the Private Service
//! Access connection between a VPC network and Google's producer network.
//!
//! A connection is stored under its network (`…/networks/{n}/peerings/{peering}`), so the
//! network shows the peering and deleting the network removes it. There is no Rust client
//! for this API; paths and fields follow its REST reference.

use std::collections::{BTreeSet, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, patch};
use serde_json::{Value, json};

use crate::compute::{BASE, PEERING, network_key};
use crate::error::{invalid, not_found, service_disabled};
use crate::lro::{self, Outcome};
use crate::util::{body, ok, s};
use crate::world::{Effect, Shared, World, project_number};

const SERVICE: &str = "servicenetworking.googleapis.com";
const CONN: &str = "type.googleapis.com/google.cloud.servicenetworking.v1.Connection";

/// The Service Networking routes.
pub(crate) fn router() -> Router<Shared> {
    let c = "/v1/services/servicenetworking.googleapis.com/connections";
    Router::new()
        .route(c, get(list).post(create))
        .route(&format!("{c}/{{name}}"), patch(update).post(delete))
}

/// Resolves `network` (`projects/{number or id}/global/networks/{n}`) to the network's
/// key and project id, checking the API is enabled in that project and the network exists.
fn resolve(w: &mut World, network: &str) -> Result<(String, String), Response> {
    let Some(key) = network_key(w, "", network).filter(|k| !k.starts_with("projects//")) else {
        return Err(invalid(format!(
            "Invalid network name '{network}': expected projects/{{project}}/global/networks/{{network}}."
        )));
    };
    let pid = key.split('/').nth(1).unwrap_or("").to_string();
    if w.knobs.enforce_services && !w.is_enabled(&pid, SERVICE) {
        return Err(service_disabled(SERVICE, &project_number(&pid)));
    }
    if !w.objects.contains_key(&key) {
        return Err(invalid(format!("Network '{network}' was not found.")));
    }
    Ok((key, pid))
}

/// The reserved ranges of a request: each an existing `VPC_PEERING` global address of
/// the network.
fn ranges(w: &World, req: &Value, net_key: &str, pid: &str) -> Result<Vec<String>, Response> {
    let names: Vec<String> = req["reservedPeeringRanges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if names.is_empty() {
        return Err(invalid(
            "reservedPeeringRanges must name at least one allocated range.",
        ));
    }
    let link = json!(format!("{BASE}{net_key}"));
    for n in &names {
        let a = w
            .objects
            .get(&format!("projects/{pid}/global/addresses/{n}"));
        if !a.is_some_and(|a| a["purpose"] == "VPC_PEERING" && a["network"] == link) {
            return Err(invalid(format!(
                "Allocated IP range '{n}' not found in network, or its purpose is not VPC_PEERING."
            )));
        }
    }
    Ok(names)
}

fn connection(net_key: &str, pid: &str, ranges: &[String]) -> Value {
    let net = net_key.rsplit('/').next().unwrap_or("");
    json!({
        "network": format!("projects/{}/global/networks/{net}", project_number(pid)),
        "reservedPeeringRanges": ranges,
        "peering": PEERING,
        "service": format!("services/{SERVICE}"),
    })
}

fn start(w: &mut World, pid: &str, outcome: Outcome, effect: Effect) -> Response {
    let name = lro::op_name(w, "pssn.p24", &project_number(pid));
    let polls = w.knobs.op_polls;
    ok(lro::start(w, name, None, outcome, polls, effect))
}

async fn create(State(sh): State<Shared>, raw: Bytes) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mut w = sh.lock();
    let (net_key, pid) = match resolve(&mut w, s(&req, "network")) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let names = match ranges(&w, &req, &net_key, &pid) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let key = format!("{net_key}/peerings/{PEERING}");
    let conn = connection(&net_key, &pid, &names);
    let mut response = conn.clone();
    response["@type"] = json!(CONN);
    let outcome = match w.objects.get(&key) {
        // Creating what exists succeeds; changing its ranges needs an update.
        Some(cur) if strings(&cur["reservedPeeringRanges"]) != names.iter().cloned().collect() => {
            Outcome::Error(
                9,
                "Cannot modify allocated ranges in CreateConnection. Please use UpdateConnection."
                    .into(),
            )
        }
        _ => Outcome::Response(response),
    };
    start(&mut w, &pid, outcome, Effect::Put(key, conn))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

async fn list(State(sh): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let Some(network) = q.get("network") else {
        return invalid("The network parameter is required.");
    };
    let mut w = sh.lock();
    let (net_key, _) = match resolve(&mut w, network) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let conns: Vec<Value> = w
        .objects
        .get(&format!("{net_key}/peerings/{PEERING}"))
        .cloned()
        .into_iter()
        .collect();
    if conns.is_empty() {
        return ok(json!({}));
    }
    ok(json!({"connections": conns}))
}

/// `PATCH …/connections/{name}?updateMask=reservedPeeringRanges&force=…`.
async fn update(
    State(sh): State<Shared>,
    Path(_name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let mask = q.get("updateMask").map(String::as_str).unwrap_or("");
    if !mask.split(',').any(|f| f.trim() == "reservedPeeringRanges") {
        return invalid("updateMask must include reservedPeeringRanges.");
    }
    let mut w = sh.lock();
    let (net_key, pid) = match resolve(&mut w, s(&req, "network")) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let key = format!("{net_key}/peerings/{PEERING}");
    if !w.objects.contains_key(&key) {
        return not_found(&format!("{} connection {PEERING}", s(&req, "network")));
    }
    let names = match ranges(&w, &req, &net_key, &pid) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let conn = connection(&net_key, &pid, &names);
    let mut response = conn.clone();
    response["@type"] = json!(CONN);
    start(
        &mut w,
        &pid,
        Outcome::Response(response),
        Effect::Put(key, conn),
    )
}

/// `POST …/connections/{name}:deleteConnection` with `consumerNetwork`.
async fn delete(State(sh): State<Shared>, Path(name): Path<String>, raw: Bytes) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    if !name.ends_with(":deleteConnection") {
        return not_found(&format!("services/{SERVICE}/connections/{name}"));
    }
    let mut w = sh.lock();
    let network = s(&req, "consumerNetwork").to_string();
    let (net_key, pid) = match resolve(&mut w, &network) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let key = format!("{net_key}/peerings/{PEERING}");
    if !w.objects.contains_key(&key) {
        return not_found(&format!("{network} connection {PEERING}"));
    }
    // A producer (Cloud SQL) still attached to the network keeps the connection alive.
    let net_suffix = format!(
        "/global/networks/{}",
        net_key.rsplit('/').next().unwrap_or("")
    );
    let in_use = w.objects.iter().any(|(k, v)| {
        k.contains("/instances/")
            && v["settings"]["ipConfiguration"]["privateNetwork"]
                .as_str()
                .is_some_and(|n| n.ends_with(&net_suffix))
    });
    let outcome = if in_use {
        Outcome::Error(
            9,
            "Failed to delete connection; Producer services (e.g. CloudSQL, Cloud Memstore, etc.) \
             are still using this connection."
                .into(),
        )
    } else {
        Outcome::Response(json!({"@type": "type.googleapis.com/google.protobuf.Empty"}))
    };
    start(&mut w, &pid, outcome, Effect::Delete(key))
}

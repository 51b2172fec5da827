//! Service Usage v1 (`serviceusage.googleapis.com`): which APIs a project has enabled.
//!
//! The enabled set is `World::enabled` (by project id); the API names projects by number.
//! Enabling and disabling are long-running operations (see [`crate::lro`]).

use std::collections::BTreeSet;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::error::{invalid, not_found};
use crate::lro::{self, Outcome};
use crate::util::{body, ok};
use crate::world::{Effect, Shared, World, project_number};

const TYPE: &str = "type.googleapis.com/google.api.serviceusage.v1.";

/// Services every listing knows of, so `state:DISABLED` has something to show.
const CATALOG: &[&str] = &[
    "cloudresourcemanager.googleapis.com",
    "compute.googleapis.com",
    "container.googleapis.com",
    "iam.googleapis.com",
    "servicenetworking.googleapis.com",
    "serviceusage.googleapis.com",
    "sqladmin.googleapis.com",
    "storage.googleapis.com",
];

/// The Service Usage routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/v1/projects/{project}/services", get(list))
        .route(
            "/v1/projects/{project}/services:batchEnable",
            post(batch_enable),
        )
        .route("/v1/projects/{project}/services:batchGet", get(batch_get))
        .route(
            "/v1/projects/{project}/services/{service}",
            get(get_service).post(enable_or_disable),
        )
}

fn valid_service(s: &str) -> bool {
    !s.is_empty()
        && s.contains('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// The `Service` resource for `service` in project `pid`.
fn service(w: &mut World, pid: &str, svc: &str) -> Value {
    let num = project_number(pid);
    let state = if w.is_enabled(pid, svc) {
        "ENABLED"
    } else {
        "DISABLED"
    };
    json!({
        "name": format!("projects/{num}/services/{svc}"),
        "parent": format!("projects/{num}"),
        "config": {"name": svc, "title": svc},
        "state": state,
    })
}

async fn get_service(
    State(sh): State<Shared>,
    Path((project, svc)): Path<(String, String)>,
) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    if !valid_service(&svc) {
        return not_found(&format!("services/{svc}"));
    }
    ok(service(&mut w, &pid, &svc))
}

async fn enable_or_disable(
    State(sh): State<Shared>,
    Path((project, verb)): Path<(String, String)>,
    raw: Bytes,
) -> Response {
    if let Err(e) = body(&raw) {
        return e;
    }
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let num = project_number(&pid);
    let (svc, enable) = match verb.rsplit_once(':') {
        Some((svc, "enable")) => (svc.to_string(), true),
        Some((svc, "disable")) => (svc.to_string(), false),
        _ => return not_found(&format!("projects/{project}/services/{verb}")),
    };
    if !valid_service(&svc) {
        return invalid(format!("Invalid service name: {svc}"));
    }
    let already = w.is_enabled(&pid, &svc) == enable;
    let mut after = service(&mut w, &pid, &svc);
    after["state"] = json!(if enable { "ENABLED" } else { "DISABLED" });
    let (kind, effect) = if enable {
        (
            "EnableServiceResponse",
            Effect::Enable(pid.clone(), vec![svc.clone()]),
        )
    } else {
        (
            "DisableServiceResponse",
            Effect::Disable(pid.clone(), svc.clone()),
        )
    };
    let response = json!({"@type": format!("{TYPE}{kind}"), "service": after});
    // Google answers a call that changes nothing with an operation that is already done.
    let (name, polls) = if already {
        ("operations/noop.DONE_OPERATION".to_string(), 0)
    } else {
        (lro::op_name(&mut w, "acf.p2", &num), w.knobs.op_polls)
    };
    let metadata = json!({
        "@type": format!("{TYPE}OperationMetadata"),
        "resourceNames": [format!("services/{svc}/projectSettings/{num}")],
    });
    ok(lro::start(
        &mut w,
        name,
        Some(metadata),
        Outcome::Response(response),
        polls,
        effect,
    ))
}

async fn batch_enable(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    raw: Bytes,
) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let ids: Vec<String> = req["serviceIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if ids.is_empty() || ids.len() > 20 {
        return invalid("serviceIds must name between 1 and 20 services.");
    }
    if let Some(bad) = ids.iter().find(|s| !valid_service(s)) {
        return invalid(format!("Invalid service name: {bad}"));
    }
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let num = project_number(&pid);
    let already = ids.iter().all(|s| w.is_enabled(&pid, s));
    let services: Vec<Value> = ids
        .iter()
        .map(|s| {
            let mut v = service(&mut w, &pid, s);
            v["state"] = json!("ENABLED");
            v
        })
        .collect();
    let response = json!({
        "@type": format!("{TYPE}BatchEnableServicesResponse"),
        "services": services,
    });
    let (name, polls) = if already {
        ("operations/noop.DONE_OPERATION".to_string(), 0)
    } else {
        (lro::op_name(&mut w, "acf.p2", &num), w.knobs.op_polls)
    };
    let metadata = json!({
        "@type": format!("{TYPE}OperationMetadata"),
        "resourceNames": ids.iter().map(|s| format!("services/{s}/projectSettings/{num}")).collect::<Vec<_>>(),
    });
    ok(lro::start(
        &mut w,
        name,
        Some(metadata),
        Outcome::Response(response),
        polls,
        Effect::Enable(pid, ids),
    ))
}

async fn batch_get(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let names: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v.as_str())
        .collect();
    if names.is_empty() || names.len() > 30 {
        return invalid("names must name between 1 and 30 services.");
    }
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let mut out = vec![];
    for n in names {
        // `projects/{id or number}/services/{service}`, under the parent in the path.
        let parts: Vec<&str> = n.split('/').collect();
        let ["projects", p, "services", svc] = parts.as_slice() else {
            return invalid(format!("Invalid service name: {n}"));
        };
        if w.project_id(p) != pid || !valid_service(svc) {
            return invalid(format!(
                "Service {n} is not under parent projects/{project}."
            ));
        }
        out.push(service(&mut w, &pid, svc));
    }
    ok(json!({"services": out}))
}

async fn list(
    State(sh): State<Shared>,
    Path(project): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let filter = get("filter").replace(' ', "");
    let want = match filter.as_str() {
        "" => None,
        "state:ENABLED" => Some("ENABLED"),
        "state:DISABLED" => Some("DISABLED"),
        f => return invalid(format!("Invalid filter: {f}")),
    };
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let mut names: BTreeSet<String> = w.services(&pid).clone();
    names.extend(CATALOG.iter().map(|s| s.to_string()));
    let all: Vec<Value> = names
        .iter()
        .map(|s| service(&mut w, &pid, s))
        .filter(|v| want.is_none_or(|st| v["state"] == st))
        .collect();
    let size = get("pageSize").parse().unwrap_or(0usize);
    let size = if size == 0 { 50 } else { size.min(200) };
    let (services, next) = crate::util::page(all, size, get("pageToken"));
    let mut out = json!({"services": services});
    if let Some(n) = next {
        out["nextPageToken"] = json!(n);
    }
    ok(out)
}

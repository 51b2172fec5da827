//! ARM's asynchronous operations: the `Azure-AsyncOperation` status URL, the `Location`
//! result URL (a storage account's creation has only that one), and the provisioning
//! they drive. An operation answers "in progress" for
//! `knobs.polls_to_finish` polls (of either URL, or GETs of its resources), then ends.

use axum::response::Response;
use serde_json::{Value, json};

use crate::arm::Ctx;
use crate::http::{empty, error, json_status, with_headers};
use crate::rules::{render, set_state};
use crate::world::{Op, OpKind, World, now, take_match};

/// Where an operation's status and result URLs live.
pub(crate) enum Urls<'a> {
    /// `/providers/{ns}/locations/{loc}/operationStatuses|operationResults/{id}`.
    Provider { ns: &'a str, loc: &'a str },
    /// `/providers/Microsoft.ContainerService/locations/{loc}/operations|operationresults/{id}`:
    /// AKS names its status URL `operations`.
    Aks { loc: &'a str },
    /// `/providers/Microsoft.Network/privateDnsOperationStatuses|Results/{id}`.
    PrivateDns,
    /// `/operationresults/{id}`: a resource group delete (Location only).
    Group,
    /// `/providers/Microsoft.Storage/locations/{loc}/asyncoperations/{id}?monitor=true`:
    /// a storage account's creation (Location only).
    Storage { loc: &'a str },
}

/// A started operation's URLs, ready for the headers.
pub(crate) struct Started {
    pub status_url: String,
    pub result_url: String,
}

/// The message of an operation failed by knob `fail_next`.
const FAILED: &str = "An internal error occurred while processing the operation (simulated by the Azure test double).";

/// Starts an operation on `targets` (lowercased ids, the resource itself first) and
/// marks it their current one.
pub(crate) fn start(
    w: &mut World,
    ctx: &Ctx,
    kind: OpKind,
    targets: Vec<String>,
    urls: Urls,
) -> Started {
    let opid = w.uuid();
    let sub = &ctx.sub;
    let mut q = format!("?api-version={}", ctx.api);
    let (status, result) = match urls {
        Urls::Provider { ns, loc } => {
            let p = format!("/subscriptions/{sub}/providers/{ns}/locations/{loc}");
            (
                format!("{p}/operationStatuses/{opid}"),
                format!("{p}/operationResults/{opid}"),
            )
        }
        Urls::Aks { loc } => {
            let p = format!(
                "/subscriptions/{sub}/providers/Microsoft.ContainerService/locations/{loc}"
            );
            (
                format!("{p}/operations/{opid}"),
                format!("{p}/operationresults/{opid}"),
            )
        }
        Urls::PrivateDns => {
            let p = format!("/subscriptions/{sub}/providers/Microsoft.Network");
            (
                format!("{p}/privateDnsOperationStatuses/{opid}"),
                format!("{p}/privateDnsOperationResults/{opid}"),
            )
        }
        Urls::Group => {
            let p = format!("/subscriptions/{sub}/operationresults/{opid}");
            (p.clone(), p)
        }
        Urls::Storage { loc } => {
            q = format!("?monitor=true&api-version={}", ctx.api);
            let p = format!(
                "/subscriptions/{sub}/providers/Microsoft.Storage/locations/{loc}/asyncoperations/{opid}"
            );
            (p.clone(), p)
        }
    };
    let fails = take_match(&mut w.knobs.fail_next, &ctx.method, &ctx.path);
    for t in &targets {
        w.current.insert(t.clone(), opid.clone());
    }
    w.ops.insert(
        opid,
        Op {
            kind,
            targets,
            polls_left: w.knobs.polls_to_finish,
            fails,
            done: false,
            start_time: now(),
            end_time: None,
            api_version: ctx.api.clone(),
            status_path: status.clone(),
        },
    );
    Started {
        status_url: format!("{}{status}{q}", ctx.base),
        result_url: format!("{}{result}{q}", ctx.base),
    }
}

/// Takes one poll from operation `opid`; on the poll after its last "in progress" one it
/// ends, and the resources it is still current for take their final state.
pub(crate) fn advance(w: &mut World, opid: &str) {
    let Some(op) = w.ops.get_mut(opid) else {
        return;
    };
    if op.done {
        return;
    }
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return;
    }
    op.done = true;
    op.end_time = Some(now());
    let (kind, fails, targets) = (op.kind, op.fails, op.targets.clone());
    for t in targets {
        if w.current.get(&t).map(String::as_str) != Some(opid) {
            continue; // superseded by a later operation on the same resource
        }
        w.current.remove(&t);
        match (kind, fails) {
            (_, true) => {
                if let Some(v) = w.resources.get_mut(&t) {
                    set_state(v, "Failed");
                }
            }
            (OpKind::Create | OpKind::Update, false) => {
                if let Some(v) = w.resources.get_mut(&t) {
                    set_state(v, "Succeeded");
                }
            }
            (OpKind::Delete | OpKind::DeleteGroup, false) => w.remove_tree(&t),
        }
    }
}

/// Counts a GET of resource `key` as a poll of its current operation.
pub(crate) fn poll_resource(w: &mut World, key: &str) {
    if let Some(opid) = w.current.get(key).cloned() {
        advance(w, &opid);
    }
}

/// `Azure-AsyncOperation` (and optionally `Location`) plus `Retry-After`.
pub(crate) fn headers(
    w: &World,
    s: &Started,
    status: bool,
    location: bool,
) -> Vec<(&'static str, String)> {
    let mut h = vec![("retry-after", w.knobs.retry_after_secs.to_string())];
    if status {
        h.push(("azure-asyncoperation", s.status_url.clone()));
    }
    if location {
        h.push(("location", s.result_url.clone()));
    }
    h
}

/// GET of a status URL: `{id, name, status, startTime, endTime?, error?}`.
pub(crate) fn status(w: &mut World, opid: &str) -> Response {
    advance(w, opid);
    let Some(op) = w.ops.get(opid) else {
        return not_found(opid);
    };
    let state = match (op.done, op.fails) {
        (false, _) => "InProgress",
        (true, false) => "Succeeded",
        (true, true) => "Failed",
    };
    let mut body = json!({
        "id": op.status_path,
        "name": opid,
        "status": state,
        "startTime": op.start_time,
    });
    if let Some(end) = &op.end_time {
        body["endTime"] = Value::String(end.clone());
    }
    if op.done && op.fails {
        body["error"] = json!({"code": "InternalServerError", "message": FAILED});
    }
    let r = json_status(200, body);
    if op.done {
        r
    } else {
        with_headers(r, &[("retry-after", w.knobs.retry_after_secs.to_string())])
    }
}

/// GET of a result (`Location`) URL: 202 while running (its `Location` the URL polled);
/// then 204 (resource delete), 200 empty (group delete), 200 with the resource
/// (PUT/PATCH), or the failure.
pub(crate) fn result(w: &mut World, ctx: &Ctx, opid: &str) -> Response {
    advance(w, opid);
    let Some(op) = w.ops.get(opid) else {
        return not_found(opid);
    };
    if !op.done {
        let url = format!("{}{}?{}", ctx.base, ctx.path, ctx.query);
        return with_headers(
            empty(202),
            &[
                ("location", url),
                ("retry-after", w.knobs.retry_after_secs.to_string()),
            ],
        );
    }
    if op.fails {
        return error(500, "InternalServerError", FAILED);
    }
    match op.kind {
        OpKind::Delete => empty(204),
        OpKind::DeleteGroup => empty(200),
        OpKind::Create | OpKind::Update => {
            let target = op.targets.first().cloned().unwrap_or_default();
            render(w, &target).map_or_else(|| empty(204), |v| json_status(200, v))
        }
    }
}

fn not_found(opid: &str) -> Response {
    error(
        404,
        "NotFound",
        format!("The operation '{opid}' could not be found."),
    )
}

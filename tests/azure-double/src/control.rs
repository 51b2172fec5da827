//! The double's own control routes under `/_double/`: knobs, counters, what it holds,
//! reset. They are not ARM, so the faults middleware never sees them.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::http::{error, json_status};
use crate::world::{Knobs, Shared, World};

/// The control routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/_double/knobs", get(get_knobs).post(set_knobs))
        .route("/_double/calls", get(calls))
        .route("/_double/resources", get(resources))
        .route("/_double/reset", post(reset))
}

async fn get_knobs(State(sh): State<Shared>) -> Response {
    json_status(200, json!(sh.lock().knobs))
}

/// Merges the body's fields into the knobs (a JSON merge: fields left out keep their
/// value), so a test can flip one switch without restating the others.
async fn set_knobs(State(sh): State<Shared>, raw: Bytes) -> Response {
    let patch: Value = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&raw) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return error(400, "InvalidRequestContent", "knobs must be a JSON object"),
            Err(e) => return error(400, "InvalidRequestContent", format!("bad knobs: {e}")),
        }
    };
    let mut w = sh.lock();
    let mut merged = json!(w.knobs);
    if let (Some(m), Value::Object(p)) = (merged.as_object_mut(), patch) {
        m.extend(p);
    }
    match serde_json::from_value::<Knobs>(merged) {
        Ok(k) => {
            w.knobs = k;
            json_status(200, json!(w.knobs))
        }
        Err(e) => error(400, "InvalidRequestContent", format!("bad knobs: {e}")),
    }
}

async fn calls(State(sh): State<Shared>) -> Response {
    let w = sh.lock();
    json_status(200, json!({"total": w.calls(), "by_op": w.calls_by_op()}))
}

async fn resources(State(sh): State<Shared>) -> Response {
    json_status(200, json!(sh.lock().resource_ids()))
}

/// Forgets everything: resources, operations, registrations, counters and knobs.
async fn reset(State(sh): State<Shared>) -> Response {
    *sh.lock() = World::default();
    json_status(200, json!({}))
}

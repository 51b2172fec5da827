//! The double's own control routes under `/_double/`: knobs, reset, and what it holds.
//! They are not Google APIs, so the faults middleware never sees them.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use crate::error::invalid;
use crate::util::ok;
use crate::world::{Knobs, Shared, World};

/// The control routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/_double/knobs", get(get_knobs).post(set_knobs))
        .route("/_double/reset", post(reset))
        .route("/_double/objects", get(objects))
        .route("/_double/calls", get(calls))
}

async fn get_knobs(State(sh): State<Shared>) -> Response {
    ok(json!(sh.lock().knobs))
}

/// Replaces every knob; fields the body leaves out take their defaults.
async fn set_knobs(State(sh): State<Shared>, raw: Bytes) -> Response {
    let knobs: Knobs = if raw.iter().all(u8::is_ascii_whitespace) {
        Knobs::default()
    } else {
        match serde_json::from_slice(&raw) {
            Ok(k) => k,
            Err(e) => return invalid(format!("bad knobs: {e}")),
        }
    };
    let mut w = sh.lock();
    w.knobs = knobs;
    ok(json!(w.knobs))
}

/// Forgets everything: objects, operations, enabled services, counters, knobs.
async fn reset(State(sh): State<Shared>) -> Response {
    *sh.lock() = World::default();
    ok(json!({}))
}

async fn objects(State(sh): State<Shared>) -> Response {
    ok(json!(sh.lock().objects))
}

async fn calls(State(sh): State<Shared>) -> Response {
    ok(json!(sh.lock().calls))
}

//! `google.longrunning.Operation`s, as Service Usage and Service Networking return them
//! and as both are polled at `GET /v1/operations/{id}`.
//!
//! An operation is stored with what it shows while running (`name`, `metadata`) and, under
//! `_final`, what it adds once done (`done: true` and its `response` or `error`).

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::error::not_found;
use crate::util::ok;
use crate::world::{Effect, Shared, World};

/// The operation routes shared by Service Usage and Service Networking.
pub(crate) fn router() -> Router<Shared> {
    Router::new().route("/v1/operations/{id}", get(get_operation))
}

/// How an operation ends.
pub(crate) enum Outcome {
    /// With this `response` (an `Any`: it carries its `@type`).
    Response(Value),
    /// With this `google.rpc.Status` code and message; its effect is not applied.
    Error(i32, String),
}

/// Starts operation `name` (`operations/…`), done after `polls` polls, and returns it as
/// the API shows it now.
pub(crate) fn start(
    w: &mut World,
    name: String,
    metadata: Option<Value>,
    outcome: Outcome,
    polls: u32,
    effect: Effect,
) -> Value {
    let (fin, error) = match outcome {
        Outcome::Response(r) => (json!({"done": true, "response": r}), None),
        Outcome::Error(code, message) => (
            json!({"done": true, "error": {"code": code, "message": message}}),
            Some(message),
        ),
    };
    let mut body = json!({"name": name, "_final": fin});
    if let Some(m) = metadata {
        body["metadata"] = m;
    }
    w.start_op_with(name.clone(), body, polls, effect, error);
    render(w, &name).unwrap_or(Value::Null)
}

/// The operation as the API shows it now.
pub(crate) fn render(w: &World, name: &str) -> Option<Value> {
    let op = w.ops.get(name)?;
    let mut body = op.body.clone();
    let fin = body.as_object_mut().and_then(|o| o.remove("_final"));
    if op.polls_left == 0
        && let (Some(Value::Object(fin)), Some(o)) = (fin, body.as_object_mut())
    {
        o.extend(fin);
    }
    Some(body)
}

/// A fresh operation id in the style of the owning API (`acf.p2-…`, `pssn.p24-…`).
pub(crate) fn op_name(w: &mut World, prefix: &str, project_number: &str) -> String {
    let n = w.next();
    format!(
        "operations/{prefix}-{project_number}-{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        n.wrapping_mul(2_654_435_761) as u32,
        n % 0xffff,
        n % 0xfff,
        (n * 7) % 0xfff,
        n
    )
}

async fn get_operation(State(sh): State<Shared>, Path(id): Path<String>) -> Response {
    let name = format!("operations/{id}");
    let mut w = sh.lock();
    if w.poll(&name).is_none() {
        return not_found(&name);
    }
    render(&w, &name).map_or_else(|| not_found(&name), ok)
}

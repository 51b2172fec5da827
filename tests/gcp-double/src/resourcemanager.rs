//! Resource Manager v3 (`cloudresourcemanager.googleapis.com`): the project (every id
//! exists; its number is derived from the id) and the project's IAM policy.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::error::not_found;
use crate::iam::{read_policy, set_policy};
use crate::util::{body, ok};
use crate::world::{Shared, project_number};

/// The Resource Manager routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new().route(
        "/v3/projects/{project}",
        get(get_project).post(project_verb),
    )
}

/// The project's policy before anything wrote it: one owner, as on a new project.
fn default_policy() -> Value {
    json!({
        "version": 1,
        "etag": "BwYAAAAAAAE=",
        "bindings": [{"role": "roles/owner", "members": ["user:owner@flyteinfra.test"]}],
    })
}

async fn get_project(State(sh): State<Shared>, Path(project): Path<String>) -> Response {
    let mut w = sh.lock();
    let pid = w.project_id(&project);
    let num = project_number(&pid);
    ok(json!({
        "name": format!("projects/{num}"),
        "parent": "organizations/100000000001",
        "projectId": pid,
        "state": "ACTIVE",
        "displayName": pid,
        "createTime": "2024-01-01T00:00:00.000Z",
        "updateTime": "2024-01-01T00:00:00.000Z",
        "etag": format!("W/\"{num}\""),
    }))
}

/// `POST /v3/projects/{p}:getIamPolicy` and `:setIamPolicy`.
async fn project_verb(State(sh): State<Shared>, Path(verb): Path<String>, raw: Bytes) -> Response {
    let req = match body(&raw) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let Some((project, verb)) = verb.rsplit_once(':') else {
        return not_found(&format!("projects/{verb}"));
    };
    let mut w = sh.lock();
    let pid = w.project_id(project);
    let key = format!("projects/{pid}/iamPolicy");
    match verb {
        "getIamPolicy" => ok(read_policy(&w, &key, &default_policy())),
        "setIamPolicy" => match set_policy(&mut w, &pid, &key, &default_policy(), &req) {
            Ok(p) => ok(p),
            Err(e) => e,
        },
        _ => not_found(&format!("projects/{project}:{verb}")),
    }
}

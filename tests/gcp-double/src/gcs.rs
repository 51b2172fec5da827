//! Cloud Storage objects with generations: the subset of the JSON API that emptying a
//! versioned bucket needs, for the one thing neither GCS emulator does. gcp-storage-emulator
//! keeps no noncurrent generations; fake-gcs-server keeps them but ignores `generation` on
//! delete, so a noncurrent generation can never be deleted there.
//!
//! Follows <https://cloud.google.com/storage/docs/json_api/v1>: `buckets.insert`, `.get`,
//! `.delete` (409 while any generation is left), media upload, `objects.list` with
//! `versions`, `maxResults` and `pageToken`, and `objects.delete` with or without
//! `generation`. A delete without one makes the live object noncurrent when the bucket is
//! versioned, as GCS does. Errors use the Cloud Storage error shape (`errors[].reason`).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::world::Shared;

/// One bucket: its versioning switch and every generation of every object.
#[derive(Default)]
pub struct Bucket {
    versioning: bool,
    /// Object name → its generations, oldest first; the last is live unless `live` says not.
    objects: BTreeMap<String, Vec<Generation>>,
}

impl Bucket {
    /// How many generations (live and noncurrent) the bucket holds.
    pub fn generations(&self) -> usize {
        self.objects.values().map(Vec::len).sum()
    }
}

struct Generation {
    number: u64,
    size: usize,
    /// Current (not yet deleted or overwritten).
    live: bool,
}

type Reply = Result<Response, Response>;

/// The Cloud Storage routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
        .route("/storage/v1/b", post(insert_bucket))
        .route("/storage/v1/b/{b}", get(get_bucket).delete(delete_bucket))
        .route("/storage/v1/b/{b}/o", get(list_objects))
        .route(
            "/storage/v1/b/{b}/o/{o}",
            axum::routing::delete(delete_object),
        )
        .route("/upload/storage/v1/b/{b}/o", post(upload))
}

/// Cloud Storage's error shape.
pub(crate) fn gcs_error(code: u16, reason: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    let body = json!({"error": {
        "code": code,
        "message": message,
        "errors": [{"domain": "global", "reason": reason, "message": message}],
    }});
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, Json(body)).into_response()
}

fn no_bucket() -> Response {
    gcs_error(404, "notFound", "The specified bucket does not exist.")
}

fn bucket_json(name: &str, b: &Bucket) -> Value {
    json!({
        "kind": "storage#bucket",
        "id": name,
        "name": name,
        "versioning": {"enabled": b.versioning},
    })
}

async fn insert_bucket(State(s): State<Shared>, body: Bytes) -> Reply {
    let req: Value = serde_json::from_slice(&body)
        .map_err(|e| gcs_error(400, "parseError", format!("Parse Error: {e}")))?;
    let Some(name) = req["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(gcs_error(400, "required", "Required"));
    };
    let mut w = s.lock();
    if w.gcs.contains_key(name) {
        return Err(gcs_error(
            409,
            "conflict",
            "Your previous request to create the named bucket succeeded and you already own it.",
        ));
    }
    let b = Bucket {
        versioning: req["versioning"]["enabled"].as_bool().unwrap_or(false),
        objects: BTreeMap::new(),
    };
    let out = bucket_json(name, &b);
    w.gcs.insert(name.to_string(), b);
    Ok(Json(out).into_response())
}

async fn get_bucket(State(s): State<Shared>, Path(b): Path<String>) -> Reply {
    let w = s.lock();
    let bucket = w.gcs.get(&b).ok_or_else(no_bucket)?;
    Ok(Json(bucket_json(&b, bucket)).into_response())
}

async fn delete_bucket(State(s): State<Shared>, Path(b): Path<String>) -> Reply {
    let mut w = s.lock();
    let bucket = w.gcs.get(&b).ok_or_else(no_bucket)?;
    if bucket.objects.values().any(|g| !g.is_empty()) {
        return Err(gcs_error(
            409,
            "conflict",
            "The bucket you tried to delete is not empty.",
        ));
    }
    w.gcs.remove(&b);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn upload(
    State(s): State<Shared>,
    Path(b): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Reply {
    let Some(name) = q.get("name").filter(|n| !n.is_empty()) else {
        return Err(gcs_error(400, "required", "Required"));
    };
    let mut w = s.lock();
    let number = w.next();
    let bucket = w.gcs.get_mut(&b).ok_or_else(no_bucket)?;
    let versioning = bucket.versioning;
    let gens = bucket.objects.entry(name.clone()).or_default();
    if versioning {
        gens.iter_mut().for_each(|g| g.live = false);
    } else {
        gens.retain(|g| !g.live);
    }
    gens.push(Generation {
        number,
        size: body.len(),
        live: true,
    });
    Ok(Json(object_json(&b, name, gens.last().expect("pushed"))).into_response())
}

fn object_json(bucket: &str, name: &str, g: &Generation) -> Value {
    let mut o = json!({
        "kind": "storage#object",
        "bucket": bucket,
        "name": name,
        // int64 fields are strings in the JSON API.
        "generation": g.number.to_string(),
        "size": g.size.to_string(),
    });
    if !g.live {
        o["timeDeleted"] = json!("2026-01-01T00:00:00Z");
    }
    o
}

async fn list_objects(
    State(s): State<Shared>,
    Path(b): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let w = s.lock();
    let bucket = w.gcs.get(&b).ok_or_else(no_bucket)?;
    let versions = q.get("versions").is_some_and(|v| v == "true");
    let max = q
        .get("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| *m > 0)
        .unwrap_or(1000)
        .min(1000);
    // The page token is the position in the listing, opaque to clients.
    let skip = q
        .get("pageToken")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let bname = b.as_str();
    let all: Vec<Value> = bucket
        .objects
        .iter()
        .flat_map(|(name, gens)| {
            gens.iter()
                .filter(move |g| versions || g.live)
                .map(move |g| object_json(bname, name, g))
        })
        .collect();
    let page: Vec<Value> = all.iter().skip(skip).take(max).cloned().collect();
    let mut out = json!({"kind": "storage#objects"});
    if !page.is_empty() {
        out["items"] = json!(page);
    }
    if skip + max < all.len() {
        out["nextPageToken"] = json!((skip + max).to_string());
    }
    Ok(Json(out).into_response())
}

async fn delete_object(
    State(s): State<Shared>,
    Path((b, o)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Reply {
    let mut w = s.lock();
    let bucket = w.gcs.get_mut(&b).ok_or_else(no_bucket)?;
    let versioning = bucket.versioning;
    let gone = || gcs_error(404, "notFound", format!("No such object: {b}/{o}"));
    let gens = bucket.objects.get_mut(&o).ok_or_else(gone)?;
    match q.get("generation") {
        Some(g) => {
            let n: u64 = g
                .parse()
                .map_err(|_| gcs_error(400, "invalid", format!("Invalid generation: {g}")))?;
            let before = gens.len();
            gens.retain(|x| x.number != n);
            if gens.len() == before {
                return Err(gone());
            }
        }
        None => {
            let live = gens.iter_mut().find(|g| g.live).ok_or_else(gone)?;
            if versioning {
                live.live = false;
            } else {
                gens.retain(|g| !g.live);
            }
        }
    }
    if gens.is_empty() {
        bucket.objects.remove(&o);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

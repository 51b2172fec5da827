//! A **test double** of the Kubernetes API server, for the two reads
//! `flyteinfra cluster-credentials` makes in each data plane: a ServiceAccount and a Secret.
//! No API server is installable here (no kind, no Docker), so this stands in for one.
//!
//! It is a plain-HTTP server on loopback (kube-rs accepts an `http://` server URL)
//! serving the real paths `GET /api/v1/namespaces/{ns}/serviceaccounts/{name}` and
//! `GET /api/v1/namespaces/{ns}/secrets/{name}` with the real JSON shapes (`v1.ServiceAccount`;
//! `v1.Secret` with base64 `data`), answering as the API server does: a `v1.Status`
//! (`kind: Status`, `reason: NotFound`, `code: 404`) for a missing object or an unknown
//! path, `Unauthorized` (401) unless the request carries `Authorization: Bearer <token>`
//! with the double's token, `MethodNotAllowed` (405) for anything but `GET`. It records
//! every request (never the credential) so tests can assert what was asked.
//!
//! It keeps only what tests put in it, in memory. It does not model RBAC, watches, other
//! resources, or the token controller (a test adds a token Secret with or without its
//! `data`, standing for before and after the controller filled it in).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

/// The type of a Secret the token controller fills with a ServiceAccount's token.
pub const SERVICE_ACCOUNT_TOKEN: &str = "kubernetes.io/service-account-token";

/// One request the double answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// `GET`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// Whether it carried the double's bearer token.
    pub authorized: bool,
    /// The status code answered.
    pub status: u16,
}

/// A stored Secret.
#[derive(Clone, Debug)]
struct StoredSecret {
    kind: String,
    annotations: BTreeMap<String, String>,
    data: BTreeMap<String, Vec<u8>>,
    uid: String,
    resource_version: u64,
}

/// What the double holds.
#[derive(Debug, Default)]
struct World {
    token: String,
    service_accounts: BTreeMap<(String, String), (String, u64)>,
    secrets: BTreeMap<(String, String), StoredSecret>,
    requests: Vec<Recorded>,
    /// Counter behind `resourceVersion` and `uid`.
    serial: u64,
}

impl World {
    fn next(&mut self) -> (String, u64) {
        self.serial += 1;
        (
            format!("00000000-0000-4000-8000-{:012x}", self.serial),
            self.serial,
        )
    }
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<World>>);

impl Shared {
    /// A handler that panicked poisons nothing a test cares about.
    fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running double: one cluster's API server.
pub struct K8sDouble {
    url: String,
    shared: Shared,
}

impl K8sDouble {
    /// Starts a double on a free loopback port accepting `token` as the only bearer
    /// credential, served by a background thread with its own runtime (so it outlives
    /// any one test's runtime).
    pub fn start(token: &str) -> K8sDouble {
        let shared = Shared::default();
        shared.lock().token = token.to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let app = router(shared.clone());
        std::thread::Builder::new()
            .name("k8s-double".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::from_std(listener).expect("listener");
                    axum::serve(l, app).await.expect("serve");
                });
            })
            .expect("spawn");
        K8sDouble {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// The API server URL for a kubeconfig's `cluster.server` (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Adds ServiceAccount `name` in `namespace`.
    pub fn add_service_account(&self, namespace: &str, name: &str) {
        let mut w = self.shared.lock();
        let id = w.next();
        w.service_accounts
            .insert((namespace.to_string(), name.to_string()), id);
    }

    /// Adds (or replaces) Secret `name` in `namespace` of type `kind` with these
    /// annotations and `data` (stored raw, served base64 as the API does; empty data is
    /// left out of the answer, as the API server leaves it out).
    pub fn add_secret(
        &self,
        namespace: &str,
        name: &str,
        kind: &str,
        annotations: &[(&str, &str)],
        data: &[(&str, &[u8])],
    ) {
        let mut w = self.shared.lock();
        let (uid, resource_version) = w.next();
        w.secrets.insert(
            (namespace.to_string(), name.to_string()),
            StoredSecret {
                kind: kind.to_string(),
                annotations: annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                data: data
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_vec()))
                    .collect(),
                uid,
                resource_version,
            },
        );
    }

    /// Adds a long-lived token Secret `name` for ServiceAccount `account`, as it looks
    /// once the token controller has filled it in (`token`, `ca.crt`, `namespace`), or,
    /// with `filled: None`, before.
    pub fn add_token_secret(
        &self,
        namespace: &str,
        name: &str,
        account: &str,
        filled: Option<(&[u8], &[u8])>,
    ) {
        let annotations = [("kubernetes.io/service-account.name", account)];
        let data: Vec<(&str, &[u8])> = match filled {
            Some((token, ca)) => vec![
                ("ca.crt", ca),
                ("namespace", namespace.as_bytes()),
                ("token", token),
            ],
            None => Vec::new(),
        };
        self.add_secret(namespace, name, SERVICE_ACCOUNT_TOKEN, &annotations, &data);
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }
}

/// Every path goes to one handler: the double parses the few it serves itself, so that
/// everything else gets the API server's own 404 `Status`, not the framework's.
fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut w = shared.lock();
    let expected = format!("Bearer {}", w.token);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    let (status, body) = answer(&w, &method, uri.path(), authorized);
    w.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        authorized,
        status: status.as_u16(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The answer to one request. Authentication comes first, as in the API server: an
/// unauthenticated caller learns nothing about what exists.
fn answer(w: &World, method: &Method, path: &str, authorized: bool) -> (StatusCode, Value) {
    if !authorized {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["api", "v1", "namespaces", ns, resource, name] = segments[..] else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        );
    };
    if !matches!(resource, "serviceaccounts" | "secrets") {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        );
    }
    if method != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            &format!("the server does not allow this method on the requested resource ({method})"),
            Some(json!({})),
        );
    }
    let key = (ns.to_string(), name.to_string());
    let found = match resource {
        "serviceaccounts" => w
            .service_accounts
            .get(&key)
            .map(|(uid, rv)| service_account(ns, name, uid, *rv)),
        _ => w.secrets.get(&key).map(|s| secret(ns, name, s)),
    };
    match found {
        Some(object) => (StatusCode::OK, object),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{resource} \"{name}\" not found"),
            Some(json!({ "name": name, "kind": resource })),
        ),
    }
}

/// Object metadata as the API server returns it.
fn metadata(ns: &str, name: &str, uid: &str, resource_version: u64) -> Value {
    json!({
        "name": name,
        "namespace": ns,
        "uid": uid,
        "resourceVersion": resource_version.to_string(),
        "creationTimestamp": "2026-01-01T00:00:00Z",
    })
}

/// A `v1.ServiceAccount`.
fn service_account(ns: &str, name: &str, uid: &str, resource_version: u64) -> Value {
    json!({
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": metadata(ns, name, uid, resource_version),
    })
}

/// A `v1.Secret`: `data` values base64, `data` absent when empty.
fn secret(ns: &str, name: &str, s: &StoredSecret) -> Value {
    let mut meta = metadata(ns, name, &s.uid, s.resource_version);
    if !s.annotations.is_empty() {
        meta["annotations"] = json!(s.annotations);
    }
    let mut v = json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": meta,
        "type": s.kind,
    });
    if !s.data.is_empty() {
        let b64 = base64::engine::general_purpose::STANDARD;
        v["data"] = json!(
            s.data
                .iter()
                .map(|(k, bytes)| (k.clone(), b64.encode(bytes)))
                .collect::<BTreeMap<_, _>>()
        );
    }
    v
}

/// A failure `v1.Status`.
fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> (StatusCode, Value) {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(d) = details.filter(|d| d.as_object().is_some_and(|o| !o.is_empty())) {
        v["details"] = d;
    }
    (code, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(url: &str, token: Option<&str>) -> (u16, Value) {
        let mut req = reqwest::Client::new().get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    #[tokio::test]
    async fn serves_the_real_shapes_and_statuses() {
        let d = K8sDouble::start("t0k3n");
        d.add_service_account("flyte", "flyteadmin");
        d.add_token_secret(
            "flyte",
            "flyteadmin-token",
            "flyteadmin",
            Some((b"tok", b"CA")),
        );
        let base = d.url();

        let (code, sa) = get(
            &format!("{base}/api/v1/namespaces/flyte/serviceaccounts/flyteadmin"),
            Some("t0k3n"),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(sa["kind"], "ServiceAccount");
        assert_eq!(sa["metadata"]["namespace"], "flyte");

        let (code, s) = get(
            &format!("{base}/api/v1/namespaces/flyte/secrets/flyteadmin-token"),
            Some("t0k3n"),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(s["type"], SERVICE_ACCOUNT_TOKEN);
        assert_eq!(s["data"]["token"], "dG9r");
        assert_eq!(s["data"]["ca.crt"], "Q0E=");
        assert_eq!(
            s["metadata"]["annotations"]["kubernetes.io/service-account.name"],
            "flyteadmin"
        );

        let (code, st) = get(
            &format!("{base}/api/v1/namespaces/other/secrets/flyteadmin-token"),
            Some("t0k3n"),
        )
        .await;
        assert_eq!(code, 404);
        assert_eq!(
            st,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "secrets \"flyteadmin-token\" not found", "reason": "NotFound",
                   "details": {"name": "flyteadmin-token", "kind": "secrets"}, "code": 404})
        );

        let (code, st) = get(
            &format!("{base}/api/v1/namespaces/flyte/secrets/flyteadmin-token"),
            Some("wrong"),
        )
        .await;
        assert_eq!(
            (code, &st["reason"], &st["code"]),
            (401, &json!("Unauthorized"), &json!(401))
        );
        let (code, _) = get(&format!("{base}/api/v1/pods"), None).await;
        assert_eq!(code, 401);
        let (code, st) = get(&format!("{base}/api/v1/pods"), Some("t0k3n")).await;
        assert_eq!((code, &st["reason"]), (404, &json!("NotFound")));

        // Before the token controller: no `data` at all.
        d.add_token_secret("flyte", "flyteadmin-token", "flyteadmin", None);
        let (_, s) = get(
            &format!("{base}/api/v1/namespaces/flyte/secrets/flyteadmin-token"),
            Some("t0k3n"),
        )
        .await;
        assert!(s.get("data").is_none(), "{s}");

        let reqs = d.requests();
        assert_eq!(reqs.len(), 7);
        assert_eq!(
            reqs[0],
            Recorded {
                method: "GET".into(),
                path: "/api/v1/namespaces/flyte/serviceaccounts/flyteadmin".into(),
                authorized: true,
                status: 200,
            }
        );
        assert!(!reqs[3].authorized);
    }
}

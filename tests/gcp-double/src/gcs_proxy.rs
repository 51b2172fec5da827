//! A **test double** in front of fake-gcs-server: a loopback HTTP proxy that closes the
//! emulator's gaps in Cloud Storage's generation preconditions, so that the GCS state
//! backend is tested against the behaviour of GCS itself and ships no workaround.
//!
//! GCS checks `ifGenerationMatch` on every object request
//! (<https://cloud.google.com/storage/docs/request-preconditions>,
//! <https://cloud.google.com/storage/docs/json_api/v1/objects/delete>): a live object at
//! another generation is 412 `conditionNotMet`; a missing object is 404 `notFound`
//! (`ifGenerationMatch=0` asks for a missing object). fake-gcs-server v1.54 checks it only
//! on multipart uploads; it ignores it on `objects.delete`, `objects.patch`, `objects.get`
//! (metadata and media) and media uploads. For those, and only when they carry
//! `ifGenerationMatch`, the proxy reads the object's metadata upstream first and answers
//! as GCS would, or forwards the request unchanged. Everything else is forwarded as is.
//!
//! A check and the request it guards run under an exclusive lock that every other
//! writing request waits for, so no write lands in between: what GCS does atomically
//! stays atomic here. Writes fake-gcs-server checks itself run concurrently.
//!
//! Also: [`GcsProxy::fail_next`] answers the next requests with an error (retries), and
//! the admin calls tests arrange fake-gcs-server with ([`create_bucket`],
//! [`set_versioning`], [`object_names`], [`generations`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::gcs::gcs_error;

/// A running proxy; it serves until the test process ends.
pub struct GcsProxy {
    url: String,
    shared: Arc<Shared>,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    /// Held shared by writes fake-gcs-server checks itself, exclusively by a check and
    /// the request it guards.
    writes: RwLock<()>,
    /// Answer the next `.1` requests with status `.0`.
    fail: Mutex<(u16, u32)>,
    /// Preconditions the proxy checked itself.
    checked: AtomicU64,
}

impl GcsProxy {
    /// The base URL clients use (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers the next `count` requests with `status` (503, 429, ...) in Cloud
    /// Storage's error shape, without forwarding them.
    pub fn fail_next(&self, status: u16, count: u32) {
        *self.shared.fail.lock().unwrap() = (status, count);
    }

    /// How many preconditions the proxy has checked itself (fake-gcs-server would have
    /// ignored them).
    pub fn checked(&self) -> u64 {
        self.shared.checked.load(Ordering::Relaxed)
    }
}

/// Starts a proxy to `upstream` (fake-gcs-server's URL) on a free loopback port, served
/// by a background thread with its own runtime (so it outlives any one test's runtime).
pub fn start(upstream: &str) -> GcsProxy {
    let shared = Arc::new(Shared {
        upstream: upstream.trim_end_matches('/').to_string(),
        http: client(),
        writes: RwLock::new(()),
        fail: Mutex::new((0, 0)),
        checked: AtomicU64::new(0),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr: SocketAddr = listener.local_addr().expect("local addr");
    let app = Router::new().fallback(proxy).with_state(shared.clone());
    std::thread::Builder::new()
        .name("gcs-proxy".into())
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
    GcsProxy {
        url: format!("http://{addr}"),
        shared,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

async fn proxy(State(s): State<Arc<Shared>>, req: Request) -> Response {
    {
        let mut fail = s.fail.lock().unwrap();
        if fail.1 > 0 {
            fail.1 -= 1;
            return gcs_error(fail.0, "backendError", "Injected by the GCS test proxy.");
        }
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, usize::MAX).await else {
        return gcs_error(
            400,
            "badRequest",
            "The GCS test proxy could not read the body.",
        );
    };
    let reading = matches!(parts.method, Method::GET | Method::HEAD);
    match unchecked_precondition(&parts.method, &parts.uri) {
        Some((object, want)) => {
            let _only = s.writes.write().await;
            s.checked.fetch_add(1, Ordering::Relaxed);
            match s.generation(&object).await {
                Err(answer) => return answer,
                Ok(None) if want != 0 => {
                    return gcs_error(404, "notFound", format!("No such object: {object}"));
                }
                Ok(Some(g)) if g != want => {
                    return gcs_error(
                        412,
                        "conditionNotMet",
                        "At least one of the pre-conditions you specified did not hold.",
                    );
                }
                Ok(_) => {}
            }
            s.forward(&parts.method, &parts.uri, &parts.headers, body)
                .await
        }
        None if reading => {
            s.forward(&parts.method, &parts.uri, &parts.headers, body)
                .await
        }
        None => {
            let _shared = s.writes.read().await;
            s.forward(&parts.method, &parts.uri, &parts.headers, body)
                .await
        }
    }
}

/// For a request whose `ifGenerationMatch` fake-gcs-server ignores: the metadata path of
/// its object and the generation it asks for.
fn unchecked_precondition(method: &Method, uri: &Uri) -> Option<(String, u64)> {
    let query: HashMap<String, String> = Query::try_from_uri(uri).map(|q| q.0).ok()?;
    let want: u64 = query.get("ifGenerationMatch")?.parse().ok()?;
    let path = uri.path();
    if let Some(rest) = path.strip_prefix("/storage/v1/b/") {
        // `objects.delete`, `.patch`, `.get`: `/storage/v1/b/{bucket}/o/{object}`.
        let (_, object) = rest.split_once("/o/")?;
        let plain = !object.is_empty() && !object.contains('/');
        let checked = matches!(*method, Method::DELETE | Method::PATCH | Method::GET);
        return (plain && checked).then(|| (path.to_string(), want));
    }
    // A media upload names its object in the query.
    let bucket = path
        .strip_prefix("/upload/storage/v1/b/")?
        .strip_suffix("/o")?;
    let media = *method == Method::POST && query.get("uploadType")? == "media";
    let name = query.get("name")?;
    media.then(|| (format!("/storage/v1/b/{bucket}/o/{}", encode(name)), want))
}

impl Shared {
    /// The live generation of the object at metadata path `object`; `None` if missing.
    async fn generation(&self, object: &str) -> Result<Option<u64>, Response> {
        let url = format!("{}{object}", self.upstream);
        let resp = self.http.get(&url).send().await.map_err(upstream_down)?;
        match resp.status().as_u16() {
            404 => Ok(None),
            200 => {
                let meta: Value = resp.json().await.map_err(upstream_down)?;
                let generation = meta["generation"]
                    .as_str()
                    .and_then(|g| g.parse().ok())
                    .ok_or_else(|| {
                        gcs_error(
                            502,
                            "backendError",
                            "The emulator's object has no generation.",
                        )
                    })?;
                Ok(Some(generation))
            }
            status => Err(gcs_error(
                status,
                "backendError",
                format!("The GCS test proxy could not read {object} upstream."),
            )),
        }
    }

    /// Sends the request upstream unchanged and relays the answer.
    async fn forward(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let target = format!(
            "{}{}",
            self.upstream,
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut out = headers.clone();
        for h in [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ] {
            out.remove(h);
        }
        let sent = self
            .http
            .request(method.clone(), target)
            .headers(out)
            .body(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => return upstream_down(e),
        };
        let status = resp.status();
        let mut headers = resp.headers().clone();
        for h in [
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ] {
            headers.remove(h);
        }
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return upstream_down(e),
        };
        let mut answer = Body::from(body).into_response();
        *answer.status_mut() = status;
        *answer.headers_mut() = headers;
        answer
    }
}

fn upstream_down(e: reqwest::Error) -> Response {
    gcs_error(
        502,
        "backendError",
        format!("The GCS test proxy could not reach the emulator: {e}"),
    )
}

/// `s` as one path segment, `/` included.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn admin(method: Method, url: String, body: Option<Value>) -> Value {
    let mut req = client().request(method, &url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "{url}: {status}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Creates bucket `name` at `url` (fake-gcs-server or the proxy), with object versioning
/// on or off.
pub async fn create_bucket(url: &str, name: &str, versioning: bool) {
    admin(
        Method::POST,
        format!("{url}/storage/v1/b?project=test"),
        Some(json!({"name": name, "versioning": {"enabled": versioning}})),
    )
    .await;
}

/// Turns object versioning of bucket `name` on or off.
pub async fn set_versioning(url: &str, name: &str, versioning: bool) {
    admin(
        Method::PATCH,
        format!("{url}/storage/v1/b/{}", encode(name)),
        Some(json!({"versioning": {"enabled": versioning}})),
    )
    .await;
}

/// The names of the live objects in bucket `name`, sorted.
pub async fn object_names(url: &str, name: &str) -> Vec<String> {
    let listing = admin(
        Method::GET,
        format!("{url}/storage/v1/b/{}/o", encode(name)),
        None,
    )
    .await;
    let mut names: Vec<String> = listing["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

/// How many generations, live and noncurrent, the objects of bucket `name` have.
pub async fn generations(url: &str, name: &str) -> usize {
    let listing = admin(
        Method::GET,
        format!("{url}/storage/v1/b/{}/o?versions=true", encode(name)),
        None,
    )
    .await;
    listing["items"].as_array().map_or(0, Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: Method, uri: &str) -> Option<(String, u64)> {
        unchecked_precondition(&method, &uri.parse().unwrap())
    }

    #[test]
    fn the_proxy_checks_only_the_preconditions_the_emulator_ignores() {
        let o = "/storage/v1/b/vb/o/team%2Fgcp.state.json";
        for m in [Method::DELETE, Method::PATCH, Method::GET] {
            assert_eq!(
                target(m, &format!("{o}?ifGenerationMatch=17")),
                Some((o.to_string(), 17))
            );
        }
        assert_eq!(
            target(
                Method::POST,
                "/upload/storage/v1/b/vb/o?uploadType=media&name=team%2Fgcp.state.json&ifGenerationMatch=0"
            ),
            Some((o.to_string(), 0))
        );
        // fake-gcs-server checks these itself, or there is nothing to check.
        assert_eq!(
            target(
                Method::POST,
                "/upload/storage/v1/b/vb/o?uploadType=multipart&ifGenerationMatch=0"
            ),
            None
        );
        assert_eq!(target(Method::DELETE, o), None);
        assert_eq!(
            target(Method::GET, "/storage/v1/b/vb?ifGenerationMatch=1"),
            None
        );
        assert_eq!(
            target(Method::GET, "/storage/v1/b/vb/o/x/acl?ifGenerationMatch=1"),
            None
        );
    }
}

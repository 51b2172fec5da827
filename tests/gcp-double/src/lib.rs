//! A **test double** of the Google Cloud REST APIs that have no local emulator: Compute
//! Engine, Service Usage, IAM Admin, Resource Manager, Service Networking, Cloud SQL Admin
//! and Kubernetes Engine; and, for versioned buckets only, Cloud Storage objects with
//! generations (see [`gcs`]); and a proxy that closes fake-gcs-server's gaps in
//! generation preconditions (see [`gcs_proxy`]).
//!
//! It is an HTTP server on loopback serving the real REST paths, JSON field names, error
//! shapes and long-running operations the official google-cloud-rust clients use, so the
//! provider code under test is the code that talks to Google. Everything lives in memory.
//! Faults (disabled APIs, eventual consistency, throttling, IAM etag races, failed
//! operations) are switched on with [`Knobs`], in process or via `POST /_double/knobs`.

// Handlers answer `Result<_, Response>` so a helper's error is already the HTTP answer;
// boxing every one would only add noise to a test double.
#![allow(clippy::result_large_err)]

mod compute;
mod container;
mod control;
mod error;
pub mod gcs;
pub mod gcs_proxy;
mod iam;
mod lro;
mod resourcemanager;
mod servicenetworking;
mod serviceusage;
mod sql;
pub mod storage;
mod util;
mod world;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use iam::FOREIGN_MEMBER;
pub use world::{Effect, Knobs, Op, Shared, World, project_number};

/// Every route of every API, plus the `/_double/*` control routes.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .merge(compute::router())
        .merge(serviceusage::router())
        .merge(resourcemanager::router())
        .merge(iam::router())
        .merge(servicenetworking::router())
        .merge(lro::router())
        .merge(sql::router())
        .merge(container::router())
        .merge(gcs::router())
        // Layered before the control routes are merged, so it wraps the APIs only.
        .layer(middleware::from_fn_with_state(shared.clone(), faults))
        .merge(control::router())
        .fallback(unrouted)
        .with_state(shared)
}

/// A path no module serves: Google's 404 shape (so a client reports `NOT_FOUND`, not a
/// transport error), naming the route so a missing one is easy to spot.
async fn unrouted(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error::google_error(
        404,
        "NOT_FOUND",
        format!("The GCP test double serves no route {method} {uri}"),
        vec![],
    )
}

/// Serves the double on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, shared: Shared) -> std::io::Result<()> {
    axum::serve(listener, router(shared)).await
}

/// The service a request path belongs to, and the project it names when the double
/// should check that the service is enabled there.
fn classify(uri: &axum::http::Uri) -> Option<(&'static str, Option<String>)> {
    let segs: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    // `projects/{p}:getIamPolicy` and `{p}` alike name project p.
    let project = |p: &str| Some(p.split(':').next().unwrap_or(p).to_string()).filter(|p| p != "-");
    match segs.as_slice() {
        ["compute", "v1", "projects", p, ..] => Some(("compute.googleapis.com", project(p))),
        ["v3", "projects", p, ..] => Some(("cloudresourcemanager.googleapis.com", project(p))),
        ["v1", "operations", id, ..] if id.starts_with("pssn") => {
            Some(("servicenetworking.googleapis.com", None))
        }
        ["v1", "operations", ..] => Some(("serviceusage.googleapis.com", None)),
        ["v1", "services", "servicenetworking.googleapis.com", ..] => {
            Some(("servicenetworking.googleapis.com", None))
        }
        // IAM lists roles at `/v1/roles?parent=projects%2F{p}`.
        ["v1", "roles", ..] => {
            let parent = uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("parent="))
                .map(|p| p.replace("%2F", "/").replace("%2f", "/"));
            let p = parent.as_deref().and_then(|p| p.strip_prefix("projects/"));
            Some(("iam.googleapis.com", p.and_then(project)))
        }
        ["v1", "projects", p, rest, ..] => {
            let service = match rest.split(':').next().unwrap_or("") {
                // Service Usage is how a project enables APIs, so it is never refused.
                "services" => return Some(("serviceusage.googleapis.com", None)),
                "serviceAccounts" | "roles" => "iam.googleapis.com",
                "instances" | "operations" | "tiers" => "sqladmin.googleapis.com",
                "locations" | "zones" | "aggregated" => "container.googleapis.com",
                _ => return None,
            };
            Some((service, project(p)))
        }
        _ => None,
    }
}

/// Counts every API call, throttles every Nth (`knobs.throttle_every`) and refuses calls
/// to APIs the project has not enabled (`knobs.enforce_services`).
async fn faults(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    if let Some((service, project)) = classify(req.uri()) {
        let mut w = shared.lock();
        *w.calls.entry(service.to_string()).or_default() += 1;
        let total = w.calls.entry("total".to_string()).or_default();
        *total += 1;
        let total = *total;
        let every = u64::from(w.knobs.throttle_every);
        if every > 0 && total % every == 0 {
            return error::throttled();
        }
        if let Some(p) = project.filter(|_| w.knobs.enforce_services) {
            let pid = w.project_id(&p);
            if !w.is_enabled(&pid, service) {
                return error::service_disabled(service, &project_number(&pid));
            }
        }
    }
    next.run(req).await
}

/// A running double.
pub struct GcpDouble {
    url: String,
    shared: Shared,
}

impl GcpDouble {
    /// Starts a double on a free loopback port, served by a background thread with its
    /// own runtime (so it outlives any one test's runtime).
    pub fn start() -> GcpDouble {
        let shared = Shared::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let app = router(shared.clone());
        std::thread::Builder::new()
            .name("gcp-double".into())
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
        GcpDouble {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// The base URL every client is pointed at (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The shared world, for tests that set knobs or look inside.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }
}

//! A **test double** of Azure Resource Manager (ARM) for the Azure resources flyteinfra
//! manages: resource groups, provider registrations, virtual networks and subnets,
//! network security groups, private DNS zones and their virtual network links,
//! PostgreSQL flexible servers (with databases and `require_secure_transport`), storage
//! accounts (with their blob service settings, blob containers and lifecycle management
//! policy), AKS managed clusters and their agent pools, user-assigned managed
//! identities and their federated identity credentials, role assignments at any scope,
//! and management locks. No ARM emulator exists, so this one is written to the wire
//! contract in `notes/azure-contract.md`.
//!
//! It is an HTTP server on loopback serving ARM's real REST paths, api-versions, JSON
//! bodies, asynchronous-operation headers (`Azure-AsyncOperation`, `Location`,
//! `Retry-After`) and error format (`{"error":{"code","message"}}`), so the provider code
//! under test is the code that talks to Azure. Everything lives in memory. Faults
//! (throttling, unregistered providers, failed operations, lost responses, taken server
//! and storage account names, concurrent federated credential writes, a caller without
//! the right to assign roles) are switched on with [`Knobs`], in process or via
//! `POST /_double/knobs`.
//!
//! Role assignments must name a principal the double knows: a managed identity's or a
//! cluster's (its own or its kubelet's) `principalId`, or one listed in
//! `knobs.known_principals`.
//!
//! Beside ARM it serves a versioned-blob subset of the Blob service REST API under
//! `/{account}/{container}` (create container, upload, list with versions, delete with
//! `versionid`; see `src/blobs.rs`), because Azurite keeps no blob versions.

// Handlers answer `Result<_, Response>` so a helper's error is already the HTTP answer;
// boxing every one would only add noise to a test double.
#![allow(clippy::result_large_err)]

mod aks;
mod arm;
pub mod azurite;
mod blobs;
mod control;
mod http;
mod identity;
mod lro;
mod network;
mod path;
mod postgres;
mod rules;
mod storage;
mod world;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use world::{Knobs, Shared, World};

use crate::http::{internal, op_label, throttled};
use crate::world::take_match;

/// Every ARM path (one handler parses them all: ARM paths are case-insensitive and
/// arbitrarily deep), the blob paths, plus the `/_double/*` control routes.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .fallback(api)
        // Layered before the control routes are merged, so it wraps the API only.
        .layer(middleware::from_fn_with_state(shared.clone(), faults))
        .merge(control::router())
        .with_state(shared)
}

/// Blob paths (`/{account}/{container}…`) to [`blobs`], everything else to ARM.
async fn api(
    State(sh): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    if blobs::serves(uri.path()) {
        return blobs::handle(&sh, &method, &uri, &headers, &bytes);
    }
    arm::handle(State(sh), method, uri, headers, bytes).await
}

/// Serves the double on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, shared: Shared) -> std::io::Result<()> {
    axum::serve(listener, router(shared)).await
}

/// Counts every API call, throttles every Nth (`knobs.throttle_every`) before it does
/// anything, replaces the answer of a call named in `knobs.lose_next_response` after it
/// has done its work, and holds back the answer of one named in `knobs.slow_answers`.
async fn faults(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    // The blob data plane is not ARM: no ARM faults, not counted.
    if blobs::serves(&path) {
        return next.run(req).await;
    }
    let (lose, slow) = {
        let mut w = shared.lock();
        w.calls += 1;
        *w.calls_by_op.entry(op_label(&method, &path)).or_default() += 1;
        let every = u64::from(w.knobs.throttle_every);
        if every > 0 && w.calls % every == 0 {
            return throttled(w.knobs.retry_after_secs);
        }
        let slow = w
            .knobs
            .slow_answers
            .iter()
            .find(|(m, p, _)| world::knob_matches(m, p, &method, &path))
            .map(|(_, _, ms)| *ms);
        (
            take_match(&mut w.knobs.lose_next_response, &method, &path),
            slow,
        )
    };
    let answer = next.run(req).await;
    if let Some(ms) = slow {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if lose {
        return internal(format!(
            "The response to {method} {path} was lost (simulated by the Azure test double; the request took effect)."
        ));
    }
    answer
}

/// A running double.
pub struct AzureDouble {
    url: String,
    shared: Shared,
}

impl AzureDouble {
    /// Starts a double on a free loopback port, served by a background thread with its
    /// own runtime (so it outlives any one test's runtime).
    pub fn start() -> AzureDouble {
        let shared = Shared::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        let app = router(shared.clone());
        std::thread::Builder::new()
            .name("azure-double".into())
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
        AzureDouble {
            url: format!("http://{addr}"),
            shared,
        }
    }

    /// The base URL every client is pointed at (`http://127.0.0.1:PORT`), standing in
    /// for `https://management.azure.com`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many blob versions (current and previous) `container` holds (see `src/blobs.rs`).
    pub fn blob_versions(&self, container: &str) -> usize {
        self.shared.lock().blob_versions(container)
    }

    /// The shared world, for tests that set knobs or look inside.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }
}

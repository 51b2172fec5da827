//! A **test double** of the Google Cloud REST APIs that have no local emulator: Compute
//! Engine, Service Usage, IAM Admin, Resource Manager, Service Networking, Cloud SQL Admin
//! and Kubernetes Engine.
//!
//! It is an HTTP server on loopback serving the real REST paths, JSON field names, error
//! shapes and long-running operations the official google-cloud-rust clients use, so the
//! provider code under test is the code that talks to Google. Everything lives in memory.
//! Faults (disabled APIs, eventual consistency, throttling, IAM etag races, failed
//! operations) are switched on with [`Knobs`], in process or via `POST /_double/knobs`.

mod container;
mod error;
mod sql;
mod world;

use std::net::SocketAddr;

use axum::Router;

pub use world::{Knobs, Shared, World};

/// Every route of every API, plus the `/_double/*` control routes.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .merge(sql::router())
        .merge(container::router())
        .with_state(shared)
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

//! Kubernetes Engine API v1 (`container.googleapis.com`): filled in by its module owner.

use axum::Router;

use crate::world::Shared;

/// The GKE routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
}

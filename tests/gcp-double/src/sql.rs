//! Cloud SQL Admin API v1 (`sqladmin.googleapis.com`): filled in by its module owner.

use axum::Router;

use crate::world::Shared;

/// The Cloud SQL Admin routes.
pub(crate) fn router() -> Router<Shared> {
    Router::new()
}

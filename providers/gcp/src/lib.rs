//! flyteinfra's Google Cloud resource types, over the official google-cloud-rust clients
//! (and the GCS and Service Networking JSON APIs where no usable Rust client exists).
//!
//! Nothing here knows Flyte: the Flyte blueprint decides which of these resources a
//! deployment needs and how they are wired together.

mod client;
pub(crate) mod error;
mod resources;
#[cfg(test)]
mod testutil;

pub use client::{Api, Endpoints, GcpClients, JsonApi};
pub use error::disabled_service;
pub use reqwest::Method;
pub use resources::project_services::{disabled_services, project_number};
pub use resources::{resource_types, schemas};

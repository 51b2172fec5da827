//! flyteinfra's PostgreSQL resource types: a login role and a database on a server the
//! user names (a sandbox's, or a self-managed one), over tokio-postgres with TLS through
//! rustls ([`tls`]).
//!
//! Nothing here knows Flyte: the Flyte blueprint decides which roles and databases a
//! deployment needs. The administrator's connection settings ([`PgServer`]) come from the
//! caller, which also decides where the password comes from.
//!
//! Objects flyteinfra makes carry their create token in their comment
//! (`flyteinfra:<token>`), which is how an interrupted create finds its own object again and
//! how anyone else's of the same name is told apart (see each type for its rule).

mod resources;
mod server;
mod sql;
pub mod tls;

pub use resources::{resource_types, schemas};
pub use server::{PgServer, connect};
pub use tls::TlsMode;

//! One file per resource type; one line per type in [`TYPES`].

use std::sync::Arc;

use flyteinfra_core::{Address, ErrorKind, Field, ProviderError, ResourceType, Schema};
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::server::{Pg, PgServer};

mod database;
mod role;

/// An optional input that reads report as the server has it: set by the configuration, it
/// is diffed, so a change made outside flyteinfra shows as drift and an update puts it
/// back; unset, it is shown as known after apply on create.
const fn reported(name: &'static str, doc: &'static str) -> Field {
    let mut f = Field::input(name, doc);
    f.flags.computed = true;
    f
}

/// Column `i` of `row`, a type mismatch as an error rather than a panic.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, ProviderError> {
    row.try_get(i).map_err(|e| {
        ProviderError::new(
            ErrorKind::Permanent,
            format!("unexpected answer from PostgreSQL: {e}"),
        )
    })
}

/// `flyteinfra import <address> <id>`, the id quoted for a POSIX shell when it needs it.
fn import_command(address: &Address, id: &str) -> String {
    let plain = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/@".contains(c));
    if plain {
        format!("flyteinfra import {address} {id}")
    } else {
        format!(
            "flyteinfra import {address} '{}'",
            id.replace('\'', "'\\''")
        )
    }
}

/// One resource type: its schema, and how to build it over a server's connection settings.
struct Entry {
    schema: fn() -> Schema,
    build: fn(&Arc<Pg>) -> Arc<dyn ResourceType>,
}

macro_rules! entry {
    ($m:ident) => {
        Entry {
            schema: $m::schema,
            build: $m::build,
        }
    };
}

/// The registry slice: one line per PostgreSQL resource type.
const TYPES: &[Entry] = &[entry!(role), entry!(database)];

/// Every PostgreSQL resource type's schema (offline: docs, validation, the simulated cloud).
pub fn schemas() -> Vec<Schema> {
    TYPES.iter().map(|e| (e.schema)()).collect()
}

/// Every PostgreSQL resource type, on `server`.
pub fn resource_types(server: PgServer) -> Vec<Arc<dyn ResourceType>> {
    let pg = Arc::new(Pg::new(server));
    TYPES.iter().map(|e| (e.build)(&pg)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_documented_and_prefixed() {
        assert_eq!(
            flyteinfra_core::schema_problems(&schemas(), "postgres_"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn import_commands_quote_ids_the_shell_would_split() {
        let a = Address::new("postgres_role", "flyte");
        assert_eq!(
            import_command(&a, "flyte_admin"),
            "flyteinfra import postgres_role.flyte flyte_admin"
        );
        assert_eq!(
            import_command(&a, "it's mine"),
            "flyteinfra import postgres_role.flyte 'it'\\''s mine'"
        );
    }
}

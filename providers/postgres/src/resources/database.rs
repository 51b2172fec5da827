//! `postgres_database`: a database owned by a role, made from `template0` (so nothing
//! added to `template1` comes along) in the encoding asked for.
//!
//! The name is the id. `CREATE DATABASE` cannot run in a transaction, so the create's token
//! is written by a second statement (`COMMENT ON DATABASE`), and an interrupted create can
//! leave a database without it. A create that meets an existing database of its name takes
//! it as its own (and `find` finds it) only when
//! - its comment is this create's token (`flyteinfra:<token>`), or
//! - it has no comment at all, its owner is the configured owner, and that owner is a role
//!   flyteinfra made (its comment is a flyteinfra mark): a run stopped between the two
//!   statements. Nobody else makes databases for flyteinfra's roles, and a comment of any
//!   other create says whose it is.
//!
//! Any other database of that name is refused with the `flyteinfra import` hint.
//!
//! Reads report the actual owner, so an owner changed outside flyteinfra shows as drift and
//! an update gives the database back to the configured one (`ALTER DATABASE … OWNER TO`).
//! The encoding is reported as configured when the server's is the same one by another
//! name (`utf8`, `UTF-8`), so spelling never replaces a database.
//!
//! A database holds data: [`holds_contents`] says whether it has any relation outside the
//! system schemas (asked on a connection to that database), and without `force` (the
//! configuration's `force_destroy`) a delete refuses one that has. Sessions connected to
//! the database block `DROP DATABASE`: without `force` that is a `Conflict` naming them;
//! with it they are ended (`DROP DATABASE … WITH (FORCE)`, PostgreSQL 13 and later; older
//! servers get the plain drop and the same `Conflict`). A table made between the check and
//! the drop goes with the database.
//!
//! [`holds_contents`]: ResourceType::holds_contents

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Address, Attributes, Completion, ContentsRequest, CreateRequest, CreateResponse, DeleteRequest,
    DeleteResponse, ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use tokio_postgres::Client;

use super::{col, import_command, reported};
use crate::server::Pg;
use crate::sql::{MARK, check_name, ident, literal, mark};

/// The encoding of a database whose configuration names none.
const DEFAULT_ENCODING: &str = "UTF8";

/// `postgres_database`.
pub fn schema() -> Schema {
    Schema {
        type_name: "postgres_database",
        doc: "A database owned by a role, made from template0, its create token in its comment.",
        fields: vec![
            Field::computed("id", "The database name."),
            Field::input("name", "The database name (at most 63 bytes).")
                .required()
                .force_new(),
            Field::input(
                "owner",
                "The owning role's name; changed in place (`ALTER DATABASE … OWNER TO`).",
            )
            .required(),
            reported(
                "encoding",
                "The character set (default `UTF8`); a change replaces the database.",
            )
            .force_new(),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `postgres_database` on the server of `pg`.
pub fn build(pg: &Arc<Pg>) -> Arc<dyn ResourceType> {
    Arc::new(Database {
        schema: schema(),
        pg: Arc::clone(pg),
    })
}

struct Database {
    schema: Schema,
    pg: Arc<Pg>,
}

/// A database as `pg_database` has it.
struct Row {
    owner: String,
    encoding: String,
    /// Whether `encoding` is the encoding the row was asked about, by any name.
    same_encoding: bool,
    comment: Option<String>,
    /// The owning role's comment.
    owner_comment: Option<String>,
}

/// The desired database, checked.
struct Desired<'a> {
    name: &'a str,
    owner: &'a str,
    encoding: &'a str,
}

fn desired(inputs: &Attributes) -> Result<Desired<'_>, ProviderError> {
    let name = attrs::s(inputs, "name")?;
    check_name("database name", name)?;
    let owner = attrs::s(inputs, "owner")?;
    check_name("owner role name", owner)?;
    let encoding = attrs::opt_s(inputs, "encoding").unwrap_or(DEFAULT_ENCODING);
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if encoding.is_empty() || encoding.len() > 32 || !encoding.chars().all(plain) {
        return Err(ProviderError::new(
            ErrorKind::InvalidInput,
            format!("`{encoding}` is not a PostgreSQL encoding name (such as `UTF8`)"),
        ));
    }
    Ok(Desired {
        name,
        owner,
        encoding,
    })
}

/// Whether database `row` is the one a create with `token` made for `owner` (the rule in
/// the module docs).
fn ours(row: &Row, owner: &str, token: &str) -> bool {
    match &row.comment {
        Some(c) => *c == mark(token),
        None => {
            row.owner == owner
                && row
                    .owner_comment
                    .as_deref()
                    .is_some_and(|c| c.starts_with(MARK))
        }
    }
}

/// The attributes of database `name` as `row` has it; the encoding by the configured name
/// (`configured`) when it is the same one.
fn attributes(name: &str, row: &Row, configured: Option<&str>) -> Attributes {
    let encoding = match configured {
        Some(c) if row.same_encoding => c,
        _ => &row.encoding,
    };
    attrs::attrs([
        ("id", Value::from(name)),
        ("name", Value::from(name)),
        ("owner", Value::from(row.owner.as_str())),
        ("encoding", Value::from(encoding)),
    ])
}

impl Database {
    /// Database `name`, if it exists, its encoding compared with `encoding`.
    async fn row(
        &self,
        client: &Client,
        name: &str,
        encoding: &str,
    ) -> Result<Option<Row>, ProviderError> {
        let row = self
            .pg
            .run(
                &format!("reading database `{name}`"),
                client.query_opt(
                    "SELECT pg_get_userbyid(d.datdba)::text, \
                            pg_encoding_to_char(d.encoding)::text, \
                            d.encoding = pg_char_to_encoding($2::text), \
                            shobj_description(d.oid, 'pg_database'), \
                            shobj_description(d.datdba, 'pg_authid') \
                     FROM pg_database d WHERE d.datname = $1",
                    &[&name, &encoding],
                ),
            )
            .await?;
        row.map(|r| {
            Ok(Row {
                owner: col(&r, 0)?,
                encoding: col(&r, 1)?,
                same_encoding: col(&r, 2)?,
                comment: col(&r, 3)?,
                owner_comment: col(&r, 4)?,
            })
        })
        .transpose()
    }

    /// Database `name` as it is now, which must exist.
    async fn existing(
        &self,
        client: &Client,
        name: &str,
        encoding: &str,
    ) -> Result<Row, ProviderError> {
        self.row(client, name, encoding).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!(
                    "database `{name}` no longer exists on PostgreSQL at {}",
                    self.pg.address()
                ),
            )
        })
    }

    /// Whether database `name` holds any relation (table, view, sequence, ...) outside the
    /// system schemas: asked on a connection to it, closed before this returns. A database
    /// that is gone holds nothing.
    async fn holds_relations(&self, name: &str) -> Result<bool, ProviderError> {
        let client = match self.pg.connect(name).await {
            Ok(c) => c,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let row = self
            .pg
            .run(
                &format!("looking for tables in database `{name}`"),
                client.query_one(
                    "SELECT EXISTS (SELECT 1 FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname <> 'information_schema' AND n.nspname !~ '^pg_')",
                    &[],
                ),
            )
            .await?;
        col(&row, 0)
    }

    /// The refusal of a database of this name that is not this create's.
    fn foreign(&self, address: &Address, name: &str, owner: &str, row: &Row) -> ProviderError {
        let whose = match &row.comment {
            Some(c) if c.starts_with(MARK) => format!(
                "it was made by another flyteinfra create: another deployment, or one whose \
                 state is gone (owner `{}`)",
                row.owner
            ),
            Some(_) => format!(
                "its comment is not a flyteinfra token (owner `{}`)",
                row.owner
            ),
            None if row.owner != owner => format!(
                "it carries no token, and its owner `{}` is not the configured owner `{owner}`",
                row.owner
            ),
            None => format!(
                "it carries no token, and its owner `{}` is not a role flyteinfra made",
                row.owner
            ),
        };
        ProviderError::new(
            ErrorKind::AlreadyExists,
            format!(
                "PostgreSQL database `{name}` already exists on {} and is not this \
                 deployment's ({whose}); flyteinfra never takes over a database it did not \
                 make. To manage it with flyteinfra, run `{}`",
                self.pg.address(),
                import_command(address, name)
            ),
        )
    }

    /// What the administrator needs for owner changes, added to a refusal.
    fn privilege_hint(mut e: ProviderError, owner: &str) -> ProviderError {
        if e.kind == ErrorKind::Auth {
            e.message.push_str(&format!(
                "; the administrator must be a superuser, or have CREATEDB and be able to \
                 `SET ROLE` to `{owner}` (`GRANT` the role to the administrator)"
            ));
        }
        e
    }
}

#[async_trait]
impl ResourceType for Database {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let configured = attrs::opt_s(&req.prior_inputs, "encoding");
        let client = self.pg.connect_admin().await?;
        Ok(ReadResponse {
            attributes: self
                .row(&client, &req.id, configured.unwrap_or(""))
                .await?
                .map(|row| attributes(&req.id, &row, configured)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let want = desired(&req.inputs)?;
        let client = self.pg.connect_admin().await?;
        let found = self
            .row(&client, want.name, want.encoding)
            .await?
            .is_some_and(|row| ours(&row, want.owner, &req.token));
        Ok(FindResponse {
            id: found.then(|| want.name.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let want = desired(&req.inputs)?;
        let name = want.name;
        let client = self.pg.connect_admin().await?;
        let sql = format!(
            "CREATE DATABASE {} OWNER {} ENCODING {} TEMPLATE template0",
            ident(name),
            ident(want.owner),
            literal(want.encoding)
        );
        let created = self
            .pg
            .run(
                &format!("creating database `{name}`"),
                client.batch_execute(&sql),
            )
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let Some(row) = self.row(&client, name, want.encoding).await? else {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        format!("database `{name}` was deleted while being created; try again"),
                    ));
                };
                if !ours(&row, want.owner, &req.token) {
                    return Err(self.foreign(&req.address, name, want.owner, &row));
                }
            }
            Err(e) => return Err(Self::privilege_hint(e, want.owner)),
        }
        // A second statement (see the module docs); again when adopted, harmlessly.
        let sql = format!(
            "COMMENT ON DATABASE {} IS {}",
            ident(name),
            literal(&mark(&req.token))
        );
        self.pg
            .run(
                &format!("marking database `{name}` as flyteinfra's"),
                client.batch_execute(&sql),
            )
            .await?;
        let row = self.existing(&client, name, want.encoding).await?;
        Ok(CreateResponse {
            id: name.to_string(),
            completion: Completion::Ready(attributes(name, &row, Some(want.encoding))),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let want = desired(&req.inputs)?;
        let client = self.pg.connect_admin().await?;
        let row = self.existing(&client, &req.id, want.encoding).await?;
        if row.owner != want.owner {
            let sql = format!(
                "ALTER DATABASE {} OWNER TO {}",
                ident(&req.id),
                ident(want.owner)
            );
            self.pg
                .run(
                    &format!("giving database `{}` to `{}`", req.id, want.owner),
                    client.batch_execute(&sql),
                )
                .await
                .map_err(|e| Self::privilege_hint(e, want.owner))?;
        }
        let row = self.existing(&client, &req.id, want.encoding).await?;
        Ok(UpdateResponse {
            attributes: attributes(&req.id, &row, attrs::opt_s(&req.inputs, "encoding")),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let name = req.id.as_str();
        let client = self.pg.connect_admin().await?;
        if self.row(&client, name, "").await?.is_none() {
            return Ok(DeleteResponse { done: true });
        }
        if !req.force && self.holds_relations(name).await? {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "database `{name}` still holds data (tables or other relations), and its \
                     delete may not delete them (force_destroy is off)"
                ),
            ));
        }
        let version: i32 = {
            let row = self
                .pg
                .run(
                    "reading the server version",
                    client.query_one("SELECT current_setting('server_version_num')::int", &[]),
                )
                .await?;
            col(&row, 0)?
        };
        let end_sessions = req.force && version >= 130_000;
        let sql = format!(
            "DROP DATABASE IF EXISTS {}{}",
            ident(name),
            if end_sessions { " WITH (FORCE)" } else { "" }
        );
        let dropped = self
            .pg
            .run(
                &format!("deleting database `{name}`"),
                client.batch_execute(&sql),
            )
            .await;
        match dropped {
            Ok(()) => Ok(DeleteResponse { done: true }),
            // `object_in_use`: other sessions are connected to it.
            Err(mut e) if e.kind == ErrorKind::Conflict => {
                e.message.push_str(if req.force {
                    "; stop what is connected to it (Flyte's services) and apply again \
                     (ending its sessions takes PostgreSQL 13 or later)"
                } else {
                    "; stop what is connected to it (Flyte's services) and apply again, or \
                     allow force_destroy, which ends its sessions"
                });
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn holds_contents(&self, req: ContentsRequest) -> Result<Option<bool>, ProviderError> {
        self.holds_relations(&req.id).await.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(comment: Option<&str>, owner: &str, owner_comment: Option<&str>) -> Row {
        Row {
            owner: owner.into(),
            encoding: "UTF8".into(),
            same_encoding: true,
            comment: comment.map(str::to_string),
            owner_comment: owner_comment.map(str::to_string),
        }
    }

    #[test]
    fn only_this_creates_database_is_taken() {
        let flyte = Some("flyteinfra:role-token");
        // Its token, whoever owns it now.
        assert!(ours(
            &row(Some("flyteinfra:t"), "someone", None),
            "flyte",
            "t"
        ));
        // Interrupted before the comment: owned by the configured owner, a flyteinfra role.
        assert!(ours(&row(None, "flyte", flyte), "flyte", "t"));
        // Another create's token, any other comment, another owner, a role not ours.
        assert!(!ours(
            &row(Some("flyteinfra:other"), "flyte", flyte),
            "flyte",
            "t"
        ));
        assert!(!ours(
            &row(Some("the team's"), "flyte", flyte),
            "flyte",
            "t"
        ));
        assert!(!ours(&row(None, "postgres", flyte), "flyte", "t"));
        assert!(!ours(&row(None, "flyte", None), "flyte", "t"));
        assert!(!ours(
            &row(None, "flyte", Some("made by hand")),
            "flyte",
            "t"
        ));
    }

    #[test]
    fn the_encoding_is_reported_as_configured_when_it_is_the_same() {
        let r = row(None, "flyte", None);
        assert_eq!(
            attributes("db", &r, Some("utf8"))["encoding"],
            Value::from("utf8")
        );
        assert_eq!(attributes("db", &r, None)["encoding"], Value::from("UTF8"));
        let other = Row {
            same_encoding: false,
            ..row(None, "flyte", None)
        };
        assert_eq!(
            attributes("db", &other, Some("LATIN1"))["encoding"],
            Value::from("UTF8")
        );
    }

    #[test]
    fn encodings_are_names_only() {
        let a = |e: &str| {
            attrs::attrs([
                ("name", Value::from("db")),
                ("owner", Value::from("flyte")),
                ("encoding", Value::from(e)),
            ])
        };
        assert_eq!(desired(&a("UTF-8")).unwrap().encoding, "UTF-8");
        for bad in ["", "UTF8'; DROP", "x".repeat(33).as_str()] {
            assert_eq!(
                desired(&a(bad)).err().unwrap().kind,
                ErrorKind::InvalidInput
            );
        }
        let none = attrs::attrs([("name", Value::from("db")), ("owner", Value::from("o"))]);
        assert_eq!(desired(&none).unwrap().encoding, "UTF8");
    }
}

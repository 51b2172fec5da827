//! `postgres_role`: a login role with no privileges, for an application to own its
//! database as.
//!
//! The name is the id. The role is made `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`, and
//! its comment carries the create's token (`flyteinfra:<token>`), written by `COMMENT ON
//! ROLE` in the same transaction as `CREATE ROLE` (one multi-statement query): a role of
//! this name either carries the token or was not made by this create. So a create that
//! meets an existing role takes it as its own (and sets its password and privileges as
//! desired) only when it carries this create's token; any other role of that name is
//! refused with the `flyteinfra import` hint, and `find` does not find it.
//!
//! The password is never sent in clear: `CREATE ROLE` and `ALTER ROLE` take no bind
//! parameters, so the statement would carry it into the server's logs
//! (`log_statement`, `log_min_error_statement`) and `pg_stat_statements`; they carry its
//! SCRAM-SHA-256 verifier instead (what `psql`'s `\password` sends), made here with a
//! random salt. A password cannot be read back: reads report the one last applied.
//!
//! Reads report `login`, `superuser`, `createdb` and `createrole` as the server has them;
//! an update puts every one that differs back to the safe value, whatever changed, altering
//! only those (setting SUPERUSER at all takes a superuser, CREATEDB a role that has it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Address, Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use tokio_postgres::Client;

use super::{col, import_command, reported};
use crate::server::Pg;
use crate::sql::{MARK, check_name, ident, literal, mark};

/// `postgres_role`.
pub fn schema() -> Schema {
    Schema {
        type_name: "postgres_role",
        doc: "A login role with no privileges (NOSUPERUSER NOCREATEDB NOCREATEROLE), its \
              create token in its comment; the password is sent as a SCRAM-SHA-256 verifier.",
        fields: vec![
            Field::computed("id", "The role name."),
            Field::input("name", "The role name (at most 63 bytes).")
                .required()
                .force_new(),
            Field::input(
                "password",
                "The password; changed in place. Never read back: reads report the last applied.",
            )
            .required()
            .sensitive(),
            Field::input(
                "connection_limit",
                "Most concurrent connections of the role (-1: no limit).",
            ),
            reported(
                "login",
                "Whether the role can log in; only `true` is accepted.",
            ),
            reported(
                "superuser",
                "Whether the role is a superuser; only `false` is accepted.",
            ),
            reported(
                "createdb",
                "Whether the role can create databases; only `false` is accepted.",
            ),
            reported(
                "createrole",
                "Whether the role can create roles; only `false` is accepted.",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(1),
        deletion_protection: None,
    }
}

/// `postgres_role` on the server of `pg`.
pub fn build(pg: &Arc<Pg>) -> Arc<dyn ResourceType> {
    Arc::new(Role {
        schema: schema(),
        pg: Arc::clone(pg),
    })
}

struct Role {
    schema: Schema,
    pg: Arc<Pg>,
}

/// A role as `pg_roles` has it.
struct Row {
    login: bool,
    superuser: bool,
    createdb: bool,
    createrole: bool,
    connection_limit: i32,
    comment: Option<String>,
}

/// The safe value of each privilege field: the only one accepted, and the one an update
/// puts back.
const SAFE: [(&str, bool); 4] = [
    ("login", true),
    ("superuser", false),
    ("createdb", false),
    ("createrole", false),
];

/// The desired role, checked.
struct Desired<'a> {
    name: &'a str,
    password: &'a str,
    connection_limit: Option<i32>,
}

fn desired(inputs: &Attributes) -> Result<Desired<'_>, ProviderError> {
    let invalid = |m: String| ProviderError::new(ErrorKind::InvalidInput, m);
    let name = attrs::s(inputs, "name")?;
    check_name("role name", name)?;
    let password = attrs::secret(inputs, "password")?;
    // The message never shows the password.
    if password.is_empty() || password.contains('\0') {
        return Err(invalid(format!(
            "the password of role `{name}` is empty or contains a NUL character"
        )));
    }
    let connection_limit = match inputs.get("connection_limit") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_int()
                .filter(|n| *n >= -1)
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "`connection_limit` of role `{name}` must be -1 (no limit) or a \
                         count up to {}",
                        i32::MAX
                    ))
                })?,
        ),
    };
    for (field, safe) in SAFE {
        match inputs.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) if *b == safe => {}
            Some(_) => {
                return Err(invalid(format!(
                    "`{field}` of role `{name}` must be `{safe}`: flyteinfra makes only login \
                     roles without privileges"
                )));
            }
        }
    }
    Ok(Desired {
        name,
        password,
        connection_limit,
    })
}

/// What `ALTER ROLE` must change for the role to be as desired: only what differs, and
/// the password when asked (`set_password`).
fn fixes(row: &Row, want: &Desired<'_>, set_password: bool) -> Vec<String> {
    let mut clauses: Vec<String> = [
        (!row.login, "LOGIN"),
        (row.superuser, "NOSUPERUSER"),
        (row.createdb, "NOCREATEDB"),
        (row.createrole, "NOCREATEROLE"),
    ]
    .into_iter()
    .filter(|(differs, _)| *differs)
    .map(|(_, clause)| clause.to_string())
    .collect();
    if let Some(n) = want.connection_limit
        && n != row.connection_limit
    {
        clauses.push(format!("CONNECTION LIMIT {n}"));
    }
    if set_password {
        clauses.push(password_clause(want.password));
    }
    clauses
}

/// `PASSWORD E'SCRAM-SHA-256$…'`: the password's verifier, never the password.
fn password_clause(password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    format!("PASSWORD {}", literal(&verifier))
}

/// The attributes of role `name` as `row` has it; `password` is the last applied one.
fn attributes(name: &str, row: &Row, password: Option<&Value>) -> Attributes {
    let mut a = attrs::attrs([
        ("id", Value::from(name)),
        ("name", Value::from(name)),
        ("login", Value::Bool(row.login)),
        ("superuser", Value::Bool(row.superuser)),
        ("createdb", Value::Bool(row.createdb)),
        ("createrole", Value::Bool(row.createrole)),
        (
            "connection_limit",
            Value::Int(i64::from(row.connection_limit)),
        ),
    ]);
    if let Some(p) = password {
        a.insert("password".into(), p.clone());
    }
    a
}

impl Role {
    async fn admin(&self) -> Result<Client, ProviderError> {
        self.pg.connect_admin().await
    }

    /// Role `name`, if it exists.
    async fn row(&self, client: &Client, name: &str) -> Result<Option<Row>, ProviderError> {
        let row = self
            .pg
            .run(
                &format!("reading role `{name}`"),
                client.query_opt(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolconnlimit, \
                            shobj_description(oid, 'pg_authid') \
                     FROM pg_roles WHERE rolname = $1",
                    &[&name],
                ),
            )
            .await?;
        row.map(|r| {
            Ok(Row {
                login: col(&r, 0)?,
                superuser: col(&r, 1)?,
                createdb: col(&r, 2)?,
                createrole: col(&r, 3)?,
                connection_limit: col(&r, 4)?,
                comment: col(&r, 5)?,
            })
        })
        .transpose()
    }

    /// Role `name` as it is now, which must exist.
    async fn existing(&self, client: &Client, name: &str) -> Result<Row, ProviderError> {
        self.row(client, name).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!(
                    "role `{name}` no longer exists on PostgreSQL at {}",
                    self.pg.address()
                ),
            )
        })
    }

    /// `ALTER ROLE name WITH clauses` (one statement), unless there is nothing to change.
    async fn alter(
        &self,
        client: &Client,
        name: &str,
        clauses: &[String],
    ) -> Result<(), ProviderError> {
        if clauses.is_empty() {
            return Ok(());
        }
        let sql = format!("ALTER ROLE {} WITH {}", ident(name), clauses.join(" "));
        self.pg
            .run(
                &format!("changing role `{name}`"),
                client.batch_execute(&sql),
            )
            .await
    }

    /// The refusal of a role of this name that is not this create's.
    fn foreign(&self, address: &Address, name: &str, comment: Option<&str>) -> ProviderError {
        let whose = if comment.is_some_and(|c| c.starts_with(MARK)) {
            "it was made by another flyteinfra create: another deployment, or one whose state \
             is gone"
        } else {
            "its comment does not carry this create's token"
        };
        ProviderError::new(
            ErrorKind::AlreadyExists,
            format!(
                "PostgreSQL role `{name}` already exists on {} and is not this deployment's \
                 ({whose}); flyteinfra never takes over a role it did not make. To manage it \
                 with flyteinfra, run `{}`",
                self.pg.address(),
                import_command(address, name)
            ),
        )
    }
}

#[async_trait]
impl ResourceType for Role {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let client = self.admin().await?;
        let password = req
            .prior_attributes
            .get("password")
            .or_else(|| req.prior_inputs.get("password"));
        Ok(ReadResponse {
            attributes: self
                .row(&client, &req.id)
                .await?
                .map(|row| attributes(&req.id, &row, password)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let client = self.admin().await?;
        let ours = self
            .row(&client, name)
            .await?
            .is_some_and(|r| r.comment == Some(mark(&req.token)));
        Ok(FindResponse {
            id: ours.then(|| name.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let want = desired(&req.inputs)?;
        let name = want.name;
        let client = self.admin().await?;
        let role = ident(name);
        let limit = want
            .connection_limit
            .map(|n| format!(" CONNECTION LIMIT {n}"))
            .unwrap_or_default();
        // One query, so one transaction: the role never exists without its token.
        let sql = format!(
            "CREATE ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE{limit} {}; \
             COMMENT ON ROLE {role} IS {}",
            password_clause(want.password),
            literal(&mark(&req.token))
        );
        let created = self
            .pg
            .run(
                &format!("creating role `{name}`"),
                client.batch_execute(&sql),
            )
            .await;
        match created {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let Some(row) = self.row(&client, name).await? else {
                    return Err(ProviderError::new(
                        ErrorKind::Transient,
                        format!("role `{name}` was deleted while being created; try again"),
                    ));
                };
                if row.comment != Some(mark(&req.token)) {
                    return Err(self.foreign(&req.address, name, row.comment.as_deref()));
                }
                // An earlier attempt of this create made it: as desired now, password too.
                self.alter(&client, name, &fixes(&row, &want, true)).await?;
            }
            Err(e) => return Err(e),
        }
        let row = self.existing(&client, name).await?;
        Ok(CreateResponse {
            id: name.to_string(),
            completion: Completion::Ready(attributes(name, &row, req.inputs.get("password"))),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let want = desired(&req.inputs)?;
        let client = self.admin().await?;
        let row = self.existing(&client, &req.id).await?;
        let set_password = req.changed.iter().any(|c| c == "password");
        self.alter(&client, &req.id, &fixes(&row, &want, set_password))
            .await?;
        let row = self.existing(&client, &req.id).await?;
        Ok(UpdateResponse {
            attributes: attributes(&req.id, &row, req.inputs.get("password")),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let client = self.admin().await?;
        let sql = format!("DROP ROLE IF EXISTS {}", ident(&req.id));
        let dropped = self
            .pg
            .run(
                &format!("deleting role `{}`", req.id),
                client.batch_execute(&sql),
            )
            .await;
        match dropped {
            Ok(()) => Ok(DeleteResponse { done: true }),
            Err(mut e) if e.kind == ErrorKind::Conflict => {
                e.message.push_str(
                    "; the role still owns objects or holds privileges: drop them or give \
                     them to another role first (`REASSIGN OWNED BY`, `DROP OWNED BY` in each \
                     database)",
                );
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(pairs: &[(&str, Value)]) -> Attributes {
        let mut a = attrs::attrs([
            ("name", Value::from("flyte")),
            ("password", Value::secret("pw")),
        ]);
        a.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())));
        a
    }

    fn row() -> Row {
        Row {
            login: true,
            superuser: false,
            createdb: false,
            createrole: false,
            connection_limit: -1,
            comment: None,
        }
    }

    #[test]
    fn only_unprivileged_login_roles_are_accepted() {
        assert!(desired(&inputs(&[("superuser", Value::Bool(false))])).is_ok());
        assert!(desired(&inputs(&[("login", Value::Bool(true))])).is_ok());
        for (field, bad) in [
            ("superuser", Value::Bool(true)),
            ("createdb", Value::Bool(true)),
            ("createrole", Value::from("no")),
            ("login", Value::Bool(false)),
        ] {
            let e = desired(&inputs(&[(field, bad)])).err().unwrap();
            assert_eq!(e.kind, ErrorKind::InvalidInput);
            assert!(e.message.contains(field), "{e}");
        }
        for bad in [
            Value::Int(-2),
            Value::Int(i64::from(i32::MAX) + 1),
            Value::from("5"),
        ] {
            let e = desired(&inputs(&[("connection_limit", bad)]))
                .err()
                .unwrap();
            assert!(e.message.contains("connection_limit"), "{e}");
        }
    }

    #[test]
    fn a_bad_password_is_refused_without_showing_it() {
        let e = desired(&inputs(&[("password", Value::secret("a\0secretword"))]))
            .err()
            .unwrap();
        assert!(!e.message.contains("secretword"), "{e}");
        assert!(desired(&inputs(&[("password", Value::secret(""))])).is_err());
    }

    #[test]
    fn only_what_differs_is_altered_and_passwords_go_as_verifiers() {
        let a = inputs(&[("connection_limit", Value::Int(10))]);
        let want = desired(&a).unwrap();
        assert_eq!(
            fixes(&row(), &desired(&inputs(&[])).unwrap(), false),
            Vec::<String>::new()
        );
        let drifted = Row {
            login: false,
            superuser: true,
            createdb: true,
            createrole: true,
            ..row()
        };
        assert_eq!(
            fixes(&drifted, &want, false),
            [
                "LOGIN",
                "NOSUPERUSER",
                "NOCREATEDB",
                "NOCREATEROLE",
                "CONNECTION LIMIT 10"
            ]
        );
        let with_password = fixes(&row(), &desired(&inputs(&[])).unwrap(), true);
        assert_eq!(with_password.len(), 1);
        assert!(
            with_password[0].starts_with("PASSWORD E'SCRAM-SHA-256$4096:"),
            "{with_password:?}"
        );
        assert!(!with_password[0].contains("'pw'"));
    }
}

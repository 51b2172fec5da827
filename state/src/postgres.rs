//! The PostgreSQL backend: the state and its lease as two rows of one table, written with
//! single-statement compare-and-swaps on a version column.
//!
//! One table, `<schema>.flyteinfra_state`, keyed by deployment, cloud and object
//! (`state`, `lease`), holds every deployment's objects; a row's version comes from
//! the sequence `<schema>.flyteinfra_version`, so no version ever repeats, not even for
//! a row deleted and created again. Every write is one statement (atomic): a create is
//! `INSERT ... ON CONFLICT DO NOTHING`, an update and a delete name the version they
//! expect, and no row touched is [`StateError::Moved`].
//!
//! The database server's clock is the one every client trusts: each write stamps its row
//! with the server's `now()`, and [`Backend::lease_expired`] asks the server whether a
//! lease row went unrenewed for its TTL, so a waiting command takes over a stalled
//! holder's lease as soon as it expired, without timing the record itself and without
//! any client's clock. No advisory lock is involved: one would live as long as a
//! stalled holder's connection.
//!
//! As for S3, the synchronous [`Backend`] calls run the client on the backend's own
//! current-thread runtime in a background thread (`Worker`), with its connection task;
//! a connection that broke is opened again on the next call.
//!
//! TLS is the PostgreSQL provider's ([`flyteinfra_provider_postgres::tls`]: rustls, with
//! SCRAM channel binding), in the mode of [`PostgresLocation::tls`]. Without TLS
//! ([`TlsMode::Disable`]) only a server on this machine (or a local tunnel or proxy to one)
//! is accepted, since the state holds secrets.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls};

use flyteinfra_provider_postgres::TlsMode;
use flyteinfra_provider_postgres::tls::{RustlsConnect, connector, ssl_mode};

use crate::backend::{Backend, Object, Precondition, Stored, Version, is_loopback_host};
use crate::error::StateError;
use crate::worker::Worker;
use crate::worker::chain;

/// Connecting, the TLS handshake and authentication included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One statement. A connection that did not answer in time is dropped and opened again
/// on the next call (a half-open TCP connection would otherwise stall every call).
const QUERY_TIMEOUT: Duration = Duration::from_secs(20);
/// One call, a reconnection included: the backstop that keeps a caller from waiting
/// forever on the runtime thread.
const CALL_LIMIT: Duration = Duration::from_secs(45);
/// The table of every deployment's objects, in the configured schema.
const TABLE: &str = "flyteinfra_state";
/// The sequence every version comes from.
const SEQUENCE: &str = "flyteinfra_version";

/// Where a deployment's state lives in PostgreSQL.
///
/// Its `Debug` output never shows the connection string (it may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresLocation {
    /// A libpq-style connection string: a URL (`postgres://user:pw@host:5432/db`) or
    /// `key=value` pairs (`host=db.internal port=5432 dbname=flyte user=flyte`).
    pub conn: String,
    /// The schema of the table (`[a-z_][a-z0-9_]{0,62}`, not `pg_*`); created if missing.
    pub schema: String,
    /// The deployment whose state this is: deployments share the table.
    pub deployment: String,
    /// The cloud whose state this is: each cloud has its own rows.
    pub cloud: String,
    /// TLS on the connections (libpq's `sslmode` of the same name): without it
    /// ([`TlsMode::Disable`]), only a server on this machine is accepted.
    pub tls: TlsMode,
}

impl fmt::Debug for PostgresLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = Config::from_str(&self.conn).map_or_else(
            |_| "<invalid connection string>".to_string(),
            |c| server_url(&c),
        );
        f.debug_struct("PostgresLocation")
            .field("server", &server)
            .field("schema", &self.schema)
            .field("deployment", &self.deployment)
            .field("cloud", &self.cloud)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl PostgresLocation {
    /// The value of the `object` column of `object`'s row.
    pub fn object_name(object: Object) -> &'static str {
        match object {
            Object::State => "state",
            Object::Lease => "lease",
        }
    }
}

/// The state and lease of one cloud's deployment in a PostgreSQL table. Clones share one
/// connection and runtime thread, which stop when the last clone is dropped.
#[derive(Clone)]
pub struct PostgresBackend {
    inner: Arc<Inner>,
    worker: Worker,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("server", &self.inner.server)
            .field("schema", &self.inner.schema)
            .field("deployment", &self.inner.deployment)
            .field("cloud", &self.inner.cloud)
            .finish_non_exhaustive()
    }
}

/// What the runtime thread's calls share.
struct Inner {
    config: Config,
    /// The TLS mode, for messages.
    mode: TlsMode,
    /// The TLS connector; `None` for plain TCP ([`TlsMode::Disable`]).
    tls: Option<RustlsConnect>,
    /// `postgres://host:port/db`, without user or password.
    server: String,
    schema: String,
    deployment: String,
    cloud: String,
    /// The password, to scrub from messages (no message is known to hold it).
    password: Option<String>,
    sql: Sql,
    /// The open connection's client; `None` before the first call and after a failure of
    /// the connection.
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

/// The statements, with the schema in them.
struct Sql {
    get: String,
    insert: String,
    update: String,
    delete: String,
    expired: String,
}

impl Sql {
    fn new(schema: &str) -> Sql {
        let table = format!("\"{schema}\".{TABLE}");
        let next = format!("nextval('\"{schema}\".{SEQUENCE}')");
        let key = "deployment = $1 AND cloud = $2 AND object = $3";
        Sql {
            get: format!("SELECT bytes, version FROM {table} WHERE {key}"),
            insert: format!(
                "INSERT INTO {table} (deployment, cloud, object, bytes, version, renewed_at) \
                 VALUES ($1, $2, $3, $4, {next}, now()) \
                 ON CONFLICT (deployment, cloud, object) DO NOTHING RETURNING version"
            ),
            update: format!(
                "UPDATE {table} SET bytes = $4, version = {next}, renewed_at = now() \
                 WHERE {key} AND version = $5 RETURNING version"
            ),
            delete: format!("DELETE FROM {table} WHERE {key} AND version = $4"),
            expired: format!(
                "SELECT now() > renewed_at + make_interval(secs => $5::float8) \
                 FROM {table} WHERE {key} AND version = $4"
            ),
        }
    }
}

/// A failed call, as text (without the password: see [`Inner::scrub`]).
#[derive(Debug)]
struct Failure {
    text: String,
}

impl PostgresBackend {
    /// Connects to the server of `loc.conn` and creates the schema, the table and the
    /// version sequence if they are missing.
    ///
    /// # Errors
    /// [`StateError::InvalidCloud`] for a cloud name that cannot name the rows;
    /// [`StateError::Setup`] for a connection string that does not parse or whose
    /// `sslmode` contradicts `loc.tls`, an invalid schema name or empty deployment, a
    /// server not on this machine without TLS, a CA file that cannot be read, a server that
    /// cannot be reached, fails the TLS handshake or refuses the login, and missing
    /// privileges to create the table. Messages name the host, port and database, never
    /// the password.
    pub fn connect(loc: PostgresLocation) -> Result<PostgresBackend, StateError> {
        crate::backend::check_cloud(&loc.cloud)?;
        let mut config = Config::from_str(&loc.conn).map_err(|e| StateError::Setup {
            path: PathBuf::from("postgres"),
            message: format!(
                "the PostgreSQL connection string does not parse: {}; expected a URL \
                 (`postgres://user@host:5432/dbname`) or `key=value` pairs \
                 (`host=... port=5432 dbname=... user=...`)",
                chain(&e)
            ),
        })?;
        let server = server_url(&config);
        let place = format!("{server}?schema={}", loc.schema);
        let setup = |message: String| StateError::Setup {
            path: PathBuf::from(&place),
            message,
        };
        if let Some(problem) = schema_problem(&loc.schema) {
            return Err(setup(format!(
                "`{}` cannot be the schema of the state table: {problem}",
                loc.schema
            )));
        }
        if loc.deployment.is_empty() {
            return Err(setup("the deployment name is empty".into()));
        }
        // `loc.tls` decides; a connection string's `sslmode` may only agree with it.
        match (config.get_ssl_mode(), &loc.tls) {
            (SslMode::Disable, TlsMode::Require | TlsMode::VerifyFull { .. }) => {
                return Err(setup(
                    "the connection string says `sslmode=disable` but the state's `tls` asks \
                     for TLS: drop `sslmode` from the connection string, or set `tls: disable` \
                     for a server on this machine"
                        .into(),
                ));
            }
            (SslMode::Require, TlsMode::Disable) => {
                return Err(setup(
                    "the connection string says `sslmode=require` but the state's `tls` is \
                     `disable`: drop `sslmode` from the connection string and set `tls: \
                     require` or `verify-full`"
                        .into(),
                ));
            }
            _ => {}
        }
        config.ssl_mode(ssl_mode(&loc.tls));
        let tls = match &loc.tls {
            TlsMode::Disable => {
                // The state holds secrets: without TLS, only a server on this machine (or
                // a tunnel or proxy to one, such as cloud-sql-proxy or `ssh -L`) is
                // acceptable.
                let remote: Vec<String> = config
                    .get_hosts()
                    .iter()
                    .filter_map(|h| match h {
                        Host::Tcp(name) => (!is_loopback_host(name)).then(|| name.clone()),
                        Host::Unix(_) => None,
                    })
                    .collect();
                if !remote.is_empty() {
                    return Err(setup(format!(
                        "host `{}` is not on this machine and TLS is disabled (`tls: disable`): \
                         the state holds secrets, so set `tls: require` or `verify-full`, or \
                         reach the server through a local tunnel or proxy (cloud-sql-proxy, \
                         `ssh -L 5432:db:5432 …`) and connect to 127.0.0.1",
                        remote.join("`, `")
                    )));
                }
                None
            }
            mode => Some(connector(mode).map_err(|e| setup(format!("cannot set up TLS: {e}")))?),
        };
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // For `pg_stat_activity`: whose connections these are.
        if config.get_application_name().is_none() {
            config.application_name("flyteinfra");
        }
        let password = config
            .get_password()
            .and_then(|p| std::str::from_utf8(p).ok())
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        let (worker, _) = Worker::start("postgres", "PostgreSQL", CALL_LIMIT).map_err(|e| {
            setup(format!(
                "cannot start the thread of the PostgreSQL client: {e}"
            ))
        })?;
        let inner = Arc::new(Inner {
            sql: Sql::new(&loc.schema),
            config,
            mode: loc.tls,
            tls,
            server,
            schema: loc.schema,
            deployment: loc.deployment,
            cloud: loc.cloud,
            password,
            client: tokio::sync::Mutex::new(None),
        });
        let backend = PostgresBackend { inner, worker };
        let inner = Arc::clone(&backend.inner);
        backend
            .worker
            .run(async move { inner.prepare().await })
            .and_then(|r| r)
            .map_err(|text| setup(backend.inner.scrub(text)))?;
        Ok(backend)
    }

    /// `postgres://host:port/db?schema=s#deployment/cloud`: where this backend's rows are.
    fn place(&self) -> String {
        let i = &self.inner;
        format!(
            "{}?schema={}#{}/{}",
            i.server, i.schema, i.deployment, i.cloud
        )
    }

    fn path(&self, object: Object) -> PathBuf {
        PathBuf::from(self.describe(object))
    }

    /// Runs `fut` on the runtime thread; every failure as scrubbed text.
    fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, Failure>> + Send + 'static,
    ) -> Result<T, String> {
        match self.worker.run(fut) {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(f)) => Err(self.inner.scrub(f.text)),
            Err(text) => Err(text),
        }
    }

    fn read_error(&self, object: Object, text: String) -> StateError {
        StateError::Read {
            path: self.path(object),
            source: io::Error::other(text),
        }
    }

    fn write_error(&self, object: Object, text: String) -> StateError {
        StateError::Write {
            path: self.path(object),
            source: io::Error::other(text),
        }
    }

    fn moved(&self, object: Object) -> StateError {
        StateError::Moved {
            path: self.path(object),
        }
    }
}

impl Inner {
    /// The open connection's client, connecting first if there is none or it closed.
    async fn client(&self) -> Result<Arc<Client>, Failure> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        *slot = None;
        let timeout = || format!("did not connect in {} s", (CONNECT_TIMEOUT * 2).as_secs());
        // The connection's I/O runs until the client is dropped or the server goes away.
        let connected = match &self.tls {
            None => tokio::time::timeout(CONNECT_TIMEOUT * 2, self.config.connect(NoTls))
                .await
                .map_err(|_| timeout())
                .and_then(|r| r.map_err(|e| chain(&e)))
                .map(|(client, connection)| {
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                    client
                }),
            Some(tls) => {
                tokio::time::timeout(CONNECT_TIMEOUT * 2, self.config.connect(tls.clone()))
                    .await
                    .map_err(|_| timeout())
                    .and_then(|r| r.map_err(|e| chain(&e)))
                    .map(|(client, connection)| {
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        client
                    })
            }
        };
        let client = connected.map_err(|why| Failure {
            text: format!(
                "cannot connect to PostgreSQL at {} ({}): {why}{}",
                self.whom(),
                self.tls_name(),
                self.tls_hint(&why)
            ),
        })?;
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// How the connection is secured, for messages.
    fn tls_name(&self) -> &'static str {
        match self.tls {
            None => "without TLS",
            Some(_) => "over TLS",
        }
    }

    /// What to do about a connection failure `why` that TLS explains, if it does.
    fn tls_hint(&self, why: &str) -> String {
        match &self.mode {
            TlsMode::Disable if why.contains("no encryption") => {
                "; the server takes this login only over TLS: set the state's `tls: require` \
                 or `verify-full`"
                    .to_string()
            }
            TlsMode::VerifyFull { ca_file } if why.contains("UnknownIssuer") => match ca_file {
                Some(path) => format!(
                    "; the server's certificate is not signed by a CA of {}",
                    path.display()
                ),
                None => "; the server's certificate is not signed by a CA this machine trusts: \
                         name the server's CA in `ca_file`"
                    .to_string(),
            },
            TlsMode::VerifyFull { .. } if why.contains("NotValidForName") => {
                "; the server's certificate does not hold the host name of the connection \
                 string: connect by a name it holds"
                    .to_string()
            }
            TlsMode::Require | TlsMode::VerifyFull { .. }
                if why.contains("server does not support TLS") =>
            {
                "; the server does not accept TLS: enable it on the server, or set `tls: \
                 disable` for a server on this machine"
                    .to_string()
            }
            _ => String::new(),
        }
    }

    /// `host:port, database `db` as user `u``, for messages.
    fn whom(&self) -> String {
        let c = &self.config;
        let mut who = format!("{}, database `{}`", addresses(c), database(c));
        if let Some(user) = c.get_user() {
            who.push_str(&format!(" as user `{user}`"));
        }
        who
    }

    /// Runs one statement with a time limit; a failure that is not the server's answer
    /// drops the connection, so the next call opens a new one.
    async fn run<T>(
        &self,
        client: &Arc<Client>,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Failure> {
        let result = match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(e)) if e.as_db_error().is_some() => return Err(Failure { text: chain(&e) }),
            Ok(Err(e)) => chain(&e),
            Err(_) => format!(
                "PostgreSQL at {} did not answer in {} s",
                self.server,
                QUERY_TIMEOUT.as_secs()
            ),
        };
        let mut slot = self.client.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client)) {
            *slot = None;
        }
        Err(Failure { text: result })
    }

    /// Connects, and creates the schema, sequence and table unless they exist.
    async fn prepare(&self) -> Result<(), String> {
        let client = self.client().await.map_err(|f| {
            format!(
                "{}; check the connection string (host, port, dbname, user, password) and that \
                 the server accepts connections from here",
                f.text
            )
        })?;
        let schema = &self.schema;
        let table = format!("\"{schema}\".{TABLE}");
        let sequence = format!("\"{schema}\".{SEQUENCE}");
        let exists = self
            .run(
                &client,
                client.query_one(
                    "SELECT to_regclass($1::text) IS NOT NULL AND to_regclass($2::text) IS NOT NULL",
                    &[&table, &sequence],
                ),
            )
            .await
            .and_then(|row| {
                row.try_get::<_, bool>(0)
                    .map_err(|e| Failure { text: chain(&e) })
            })
            .map_err(|f| format!("cannot look for table {table}: {}", f.text))?;
        if exists {
            return Ok(());
        }
        let ddl = format!(
            "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; \
             CREATE SEQUENCE IF NOT EXISTS {sequence}; \
             CREATE TABLE IF NOT EXISTS {table} (\
                deployment text NOT NULL, \
                cloud text NOT NULL, \
                object text NOT NULL, \
                bytes bytea NOT NULL, \
                version bigint NOT NULL, \
                renewed_at timestamptz NOT NULL DEFAULT now(), \
                PRIMARY KEY (deployment, cloud, object))"
        );
        // Commands connecting at once race on `IF NOT EXISTS` (the catalog's unique
        // indexes); the loser finds the objects on its next attempt.
        let mut attempt = 0;
        loop {
            attempt += 1;
            // One simple query: its statements run in one implicit transaction.
            let fut = client.batch_execute(&ddl);
            let e = match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(format!(
                        "creating table {table} took more than {} s",
                        QUERY_TIMEOUT.as_secs()
                    ));
                }
            };
            let racing = e.code().is_some_and(|c| {
                [
                    SqlState::UNIQUE_VIOLATION,
                    SqlState::DUPLICATE_SCHEMA,
                    SqlState::DUPLICATE_TABLE,
                    SqlState::DUPLICATE_OBJECT,
                ]
                .contains(c)
            });
            if racing && attempt < 3 {
                continue;
            }
            let hint = if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                format!(
                    "; grant the user CREATE on the database (or schema `{schema}`), or have \
                     an administrator create the schema, the sequence {sequence} and the table \
                     {table} once"
                )
            } else {
                String::new()
            };
            return Err(format!("cannot create table {table}: {}{hint}", chain(&e)));
        }
    }

    /// `text` without the password (no message is known to hold it: this makes sure).
    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) if text.contains(p.as_str()) => text.replace(p.as_str(), "***"),
            _ => text,
        }
    }
}

impl Backend for PostgresBackend {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        let inner = Arc::clone(&self.inner);
        let name = PostgresLocation::object_name(object);
        let got = self.call(async move {
            let client = inner.client().await?;
            let row = inner
                .run(
                    &client,
                    client.query_opt(&inner.sql.get, &[&inner.deployment, &inner.cloud, &name]),
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            let bytes: Vec<u8> = row.try_get(0).map_err(|e| Failure { text: chain(&e) })?;
            let version: i64 = row.try_get(1).map_err(|e| Failure { text: chain(&e) })?;
            Ok(Some((bytes, version)))
        });
        match got {
            Ok(None) => Ok(None),
            Ok(Some((bytes, version))) => Ok(Some(Stored {
                bytes,
                version: Version::new(version.to_string()),
            })),
            Err(text) => Err(self.read_error(object, text)),
        }
    }

    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        let expected = match expect {
            Precondition::Absent => None,
            // Not a version this backend gave: no row is at it.
            Precondition::At(v) => match v.as_str().parse::<i64>() {
                Ok(v) => Some(v),
                Err(_) => return Err(self.moved(object)),
            },
        };
        let inner = Arc::clone(&self.inner);
        let name = PostgresLocation::object_name(object);
        let bytes = bytes.to_vec();
        let put = self.call(async move {
            let client = inner.client().await?;
            let (d, c) = (&inner.deployment, &inner.cloud);
            let row = match expected {
                None => {
                    let params: [&(dyn ToSql + Sync); 4] = [d, c, &name, &bytes];
                    inner
                        .run(&client, client.query_opt(&inner.sql.insert, &params))
                        .await?
                }
                Some(v) => {
                    let params: [&(dyn ToSql + Sync); 5] = [d, c, &name, &bytes, &v];
                    inner
                        .run(&client, client.query_opt(&inner.sql.update, &params))
                        .await?
                }
            };
            row.map(|r| r.try_get::<_, i64>(0))
                .transpose()
                .map_err(|e| Failure { text: chain(&e) })
        });
        match put {
            Ok(Some(version)) => Ok(Version::new(version.to_string())),
            Ok(None) => Err(self.moved(object)),
            Err(text) => Err(self.write_error(object, text)),
        }
    }

    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        let Ok(version) = version.as_str().parse::<i64>() else {
            return Err(self.moved(object));
        };
        let inner = Arc::clone(&self.inner);
        let name = PostgresLocation::object_name(object);
        let deleted = self.call(async move {
            let client = inner.client().await?;
            let (d, c) = (&inner.deployment, &inner.cloud);
            let params: [&(dyn ToSql + Sync); 4] = [d, c, &name, &version];
            inner
                .run(&client, client.execute(&inner.sql.delete, &params))
                .await
        });
        match deleted {
            Ok(0) => Err(self.moved(object)),
            Ok(_) => Ok(()),
            Err(text) => Err(self.write_error(object, text)),
        }
    }

    fn describe(&self, object: Object) -> String {
        let suffix = match object {
            Object::State => "state",
            Object::Lease => "lock",
        };
        format!("{}.{suffix}", self.place())
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(250)
    }

    /// Asks the server whether the lease row at `version` was last written more than
    /// `ttl` ago by the server's own clock (`now()`). When the row is gone or at another
    /// version, the answer is `Some(false)`: the record the waiter looked at moved, and
    /// the waiter reads it again (and finds it released, renewed or taken over).
    fn lease_expired(&self, version: &Version, ttl: Duration) -> Result<Option<bool>, StateError> {
        let Ok(version) = version.as_str().parse::<i64>() else {
            return Ok(Some(false));
        };
        let inner = Arc::clone(&self.inner);
        let name = PostgresLocation::object_name(Object::Lease);
        let secs = ttl.as_secs_f64();
        let expired = self.call(async move {
            let client = inner.client().await?;
            let (d, c) = (&inner.deployment, &inner.cloud);
            let params: [&(dyn ToSql + Sync); 5] = [d, c, &name, &version, &secs];
            let row = inner
                .run(&client, client.query_opt(&inner.sql.expired, &params))
                .await?;
            row.map(|r| r.try_get::<_, bool>(0))
                .transpose()
                .map_err(|e| Failure { text: chain(&e) })
        });
        match expired {
            Ok(found) => Ok(Some(found.unwrap_or(false))),
            Err(text) => Err(self.read_error(Object::Lease, text)),
        }
    }
}

/// Why `schema` cannot name the schema of the table, if it cannot.
fn schema_problem(schema: &str) -> Option<&'static str> {
    let mut bytes = schema.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !first_ok || !rest_ok || schema.len() > 63 {
        Some(
            "expected 1 to 63 lowercase letters, digits or `_`, not starting with a digit \
             (`[a-z_][a-z0-9_]{0,62}`)",
        )
    } else if schema.starts_with("pg_") {
        Some("names starting with `pg_` are reserved for PostgreSQL's own schemas")
    } else {
        None
    }
}

/// The hosts and ports of `config`: `db.internal:5432`, `a:5432,b:5433`.
fn addresses(config: &Config) -> String {
    let ports = config.get_ports();
    let port = |i: usize| {
        ports
            .get(i)
            .or_else(|| ports.first())
            .copied()
            .unwrap_or(5432)
    };
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config
            .get_hostaddrs()
            .iter()
            .map(ToString::to_string)
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect()
    };
    if hosts.is_empty() {
        return format!(":{}", port(0));
    }
    hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            if h.contains(':') && !h.starts_with('/') {
                format!("[{h}]:{}", port(i)) // an IPv6 address
            } else {
                format!("{h}:{}", port(i))
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The database `config` names; libpq's default is the user's name.
fn database(config: &Config) -> &str {
    config
        .get_dbname()
        .or_else(|| config.get_user())
        .unwrap_or("postgres")
}

/// `postgres://host:port/db`: the server and database, without user or password.
fn server_url(config: &Config) -> String {
    format!("postgres://{}/{}", addresses(config), database(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(conn: &str, schema: &str, cloud: &str) -> PostgresLocation {
        PostgresLocation {
            conn: conn.into(),
            schema: schema.into(),
            deployment: "prod".into(),
            cloud: cloud.into(),
            tls: TlsMode::Disable,
        }
    }

    /// A loopback port nothing listens on.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[track_caller]
    fn setup_error(r: Result<PostgresBackend, StateError>) -> (String, String) {
        match r {
            Err(StateError::Setup { path, message }) => {
                (path.to_str().unwrap().to_string(), message)
            }
            other => panic!("expected a setup error, got {other:?}"),
        }
    }

    #[test]
    fn schema_names_are_plain_lowercase_identifiers() {
        for good in ["flyteinfra", "_x", "a1_b", &"s".repeat(63)] {
            assert_eq!(schema_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "1a",
            "Flyte",
            "a-b",
            "a b",
            "a\"b",
            "a;drop",
            "é",
            &"s".repeat(64),
            "pg_catalog",
        ] {
            assert!(schema_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn a_bad_schema_cloud_or_deployment_is_refused_before_connecting() {
        let port = closed_port();
        let conn = format!("postgres://u:secret@127.0.0.1:{port}/db");
        let (path, m) = setup_error(PostgresBackend::connect(loc(&conn, "Bad-Schema", "aws")));
        assert_eq!(
            path,
            format!("postgres://127.0.0.1:{port}/db?schema=Bad-Schema")
        );
        assert!(m.contains("`Bad-Schema` cannot be the schema"), "{m}");
        for bad in ["", "AWS", "a/b"] {
            let e = PostgresBackend::connect(loc(&conn, "s", bad)).unwrap_err();
            assert!(matches!(e, StateError::InvalidCloud { .. }), "{bad}: {e:?}");
        }
        let mut l = loc(&conn, "s", "aws");
        l.deployment.clear();
        let (_, m) = setup_error(PostgresBackend::connect(l));
        assert!(m.contains("deployment name is empty"), "{m}");
    }

    #[test]
    fn an_unreachable_server_is_a_setup_error_naming_it_without_the_password() {
        let port = closed_port();
        for conn in [
            format!("postgres://flyte:hunter2pw@127.0.0.1:{port}/flytedb"),
            format!("host=127.0.0.1 port={port} dbname=flytedb user=flyte password=hunter2pw"),
        ] {
            let (path, m) = setup_error(PostgresBackend::connect(loc(&conn, "s", "aws")));
            assert_eq!(
                path,
                format!("postgres://127.0.0.1:{port}/flytedb?schema=s")
            );
            assert!(
                m.contains(&format!(
                    "cannot connect to PostgreSQL at 127.0.0.1:{port}, database `flytedb` as user `flyte`"
                )),
                "{m}"
            );
            assert!(m.contains("check the connection string"), "{m}");
            assert!(
                !m.contains("hunter2pw") && !path.contains("hunter2pw"),
                "{m}"
            );
        }
    }

    #[test]
    fn a_connection_string_that_does_not_parse_or_contradicts_the_tls_mode_is_refused() {
        let (_, m) = setup_error(PostgresBackend::connect(loc(
            "host=x password='hunter2pw",
            "s",
            "aws",
        )));
        assert!(m.contains("does not parse"), "{m}");
        assert!(!m.contains("hunter2pw"), "{m}");
        let (_, m) = setup_error(PostgresBackend::connect(loc(
            "postgres://u:pw@127.0.0.1/flyte?sslmode=require",
            "s",
            "aws",
        )));
        assert!(
            m.contains("`sslmode=require` but the state's `tls` is `disable`"),
            "{m}"
        );
        let mut l = loc(
            "postgres://u:pw@127.0.0.1/flyte?sslmode=disable",
            "s",
            "aws",
        );
        l.tls = TlsMode::Require;
        let (_, m) = setup_error(PostgresBackend::connect(l));
        assert!(
            m.contains("`sslmode=disable` but the state's `tls` asks for TLS"),
            "{m}"
        );
    }

    #[test]
    fn without_tls_only_a_server_on_this_machine_is_accepted() {
        let (path, m) = setup_error(PostgresBackend::connect(loc(
            "postgres://u:hunter2pw@db.internal/flyte",
            "s",
            "aws",
        )));
        assert_eq!(path, "postgres://db.internal:5432/flyte?schema=s");
        assert!(
            m.contains("host `db.internal` is not on this machine and TLS is disabled"),
            "{m}"
        );
        assert!(m.contains("`tls: require` or `verify-full`"), "{m}");
        assert!(!m.contains("hunter2pw"), "{m}");
    }

    #[test]
    fn a_ca_file_that_cannot_be_read_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let mut l = loc("postgres://u:pw@db.internal/flyte", "s", "aws");
        l.tls = TlsMode::VerifyFull {
            ca_file: Some(missing.clone()),
        };
        let (_, m) = setup_error(PostgresBackend::connect(l));
        assert!(m.contains("cannot set up TLS"), "{m}");
        assert!(m.contains(&missing.display().to_string()), "{m}");
    }

    #[test]
    fn with_tls_an_unreachable_server_is_named_with_the_tls_mode() {
        let port = closed_port();
        let mut l = loc(
            &format!("postgres://flyte:hunter2pw@127.0.0.1:{port}/flytedb"),
            "s",
            "aws",
        );
        l.tls = TlsMode::Require;
        let (_, m) = setup_error(PostgresBackend::connect(l));
        assert!(
            m.contains(&format!(
                "cannot connect to PostgreSQL at 127.0.0.1:{port}, database `flytedb` as user `flyte` (over TLS)"
            )),
            "{m}"
        );
    }

    #[test]
    fn descriptions_and_debug_output_show_no_credentials() {
        let config = Config::from_str("postgresql://u:pw@db.internal:6432/flyte").unwrap();
        assert_eq!(server_url(&config), "postgres://db.internal:6432/flyte");
        let config = Config::from_str("host=a,b port=1,2 user=me").unwrap();
        assert_eq!(server_url(&config), "postgres://a:1,b:2/me");
        let config = Config::from_str("host=::1 dbname=d").unwrap();
        assert_eq!(server_url(&config), "postgres://[::1]:5432/d");
        let l = loc("postgres://u:hunter2pw@db.internal/flyte", "s", "aws");
        let debug = format!("{l:?}");
        assert!(
            debug.contains("postgres://db.internal:5432/flyte"),
            "{debug}"
        );
        assert!(!debug.contains("hunter2pw"), "{debug}");
    }

    #[test]
    fn statements_quote_the_schema() {
        let sql = Sql::new("team_a");
        assert!(
            sql.get.contains("FROM \"team_a\".flyteinfra_state"),
            "{}",
            sql.get
        );
        assert!(
            sql.update
                .contains("version = nextval('\"team_a\".flyteinfra_version')"),
            "{}",
            sql.update
        );
    }
}

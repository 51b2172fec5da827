//! The server flyteinfra prepares, how it connects to it, and how PostgreSQL's failures map
//! to [`ErrorKind`]s.
//!
//! Every provider call opens its own connection and closes it when done: a call is a
//! handful of statements, plans touch few such objects, and nothing (a connection broken
//! half-way, a runtime gone) outlives one call.
//!
//! # Errors by SQLSTATE
//! | SQLSTATE | kind |
//! |---|---|
//! | class 28 (`invalid_authorization_specification`, `invalid_password`), 42501 (`insufficient_privilege`) | `Auth` |
//! | 53300 (`too_many_connections`) | `Throttled` |
//! | class 08 (connection), class 53 otherwise, 57P01–57P03 (shutdown, starting up), 40001, 40P01, 55P03, class 58 | `Transient` |
//! | 42710 (`duplicate_object`), 42P04 (`duplicate_database`) | `AlreadyExists` |
//! | 42704 (`undefined_object`), 3D000 (`invalid_catalog_name`) | `NotFound` |
//! | 55006 (`object_in_use`), 2BP01 (`dependent_objects_still_exist`) | `Conflict` |
//! | class 22, class 42 otherwise, 0A000 | `InvalidInput` |
//! | anything else | `Permanent` |
//!
//! Without a SQLSTATE: a refused, reset or timed-out connection is `Transient`; a TLS
//! failure (certificate not trusted, name mismatch, server without TLS) is `Permanent`; a
//! password the server asks for and was not given is `Auth`. No message ever holds a
//! password: the administrator's is removed from every message as a last guard, and role
//! passwords are sent only as SCRAM verifiers.

use std::error::Error as _;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use flyteinfra_core::{ErrorKind, ProviderError, Sensitive};
use tokio_postgres::error::DbError;
use tokio_postgres::{Client, Config};

use crate::tls::{self, RustlsConnect, TlsMode};

/// Connecting: TCP, TLS and the login.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One connection attempt over every address of the host, the backstop.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// One statement.
const STATEMENT_LIMIT: Duration = Duration::from_secs(60);

/// The PostgreSQL server flyteinfra prepares, and the administrator it logs in as.
///
/// `Debug` never shows the password.
#[derive(Clone, Debug)]
pub struct PgServer {
    /// Host name or IP address; also the name TLS verifies.
    pub host: String,
    /// TCP port (5432).
    pub port: u16,
    /// A user that may create roles and databases (a superuser, or one with CREATEROLE
    /// and CREATEDB).
    pub admin_user: String,
    /// That user's password; empty when the server does not ask for one.
    pub admin_password: Sensitive<String>,
    /// The database the administrator connects to ([`PgServer::DEFAULT_DATABASE`]).
    pub admin_database: String,
    /// How the connection is secured.
    pub tls: TlsMode,
}

impl PgServer {
    /// The database administrators connect to unless told otherwise.
    pub const DEFAULT_DATABASE: &'static str = "postgres";

    /// `host:port` with the administrator's database and the safest TLS mode
    /// (`verify-full` against the platform's roots).
    pub fn new(
        host: impl Into<String>,
        port: u16,
        admin_user: impl Into<String>,
        admin_password: Sensitive<String>,
    ) -> PgServer {
        PgServer {
            host: host.into(),
            port,
            admin_user: admin_user.into(),
            admin_password,
            admin_database: Self::DEFAULT_DATABASE.to_string(),
            tls: TlsMode::VerifyFull { ca_file: None },
        }
    }

    /// `host:port` (`[::1]:5432` for an IPv6 address), for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Connects to `server`'s administrator database as the administrator; the connection's
/// I/O runs on a spawned task until the client is dropped. For a check before any
/// resource is touched, and for callers that run their own statements.
///
/// # Errors
/// As every provider call's (see the module docs): `Auth` for a refused login,
/// `Transient` for a server that cannot be reached, `Permanent` for TLS failures,
/// `InvalidInput` for settings that cannot work.
pub async fn connect(server: &PgServer) -> Result<Client, ProviderError> {
    Pg::new(server.clone()).connect_admin().await
}

/// A server's connection settings, with its TLS connector loaded once.
pub(crate) struct Pg {
    server: PgServer,
    tls: OnceLock<Result<RustlsConnect, tls::TlsError>>,
}

impl fmt::Debug for Pg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pg").field("server", &self.server).finish()
    }
}

impl Pg {
    pub(crate) fn new(server: PgServer) -> Pg {
        Pg {
            server,
            tls: OnceLock::new(),
        }
    }

    /// `host:port`, for messages.
    pub(crate) fn address(&self) -> String {
        self.server.address()
    }

    /// A new connection to the administrator's database.
    pub(crate) async fn connect_admin(&self) -> Result<Client, ProviderError> {
        self.connect(&self.server.admin_database).await
    }

    /// A new connection to `database` as the administrator.
    pub(crate) async fn connect(&self, database: &str) -> Result<Client, ProviderError> {
        let s = &self.server;
        if s.host.is_empty() || s.admin_user.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                "the PostgreSQL server's host and administrator user must be set",
            ));
        }
        let connector = self
            .tls
            .get_or_init(|| tls::connector(&s.tls))
            .clone()
            .map_err(|e| ProviderError::new(ErrorKind::InvalidInput, e.to_string()))?;
        let mut config = Config::new();
        config
            .host(&s.host)
            .port(s.port)
            .user(&s.admin_user)
            .dbname(database)
            .ssl_mode(tls::ssl_mode(&s.tls))
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("flyteinfra");
        let password = s.admin_password.expose();
        if !password.is_empty() {
            config.password(password.as_bytes());
        }
        let connected = tokio::time::timeout(CONNECT_LIMIT, config.connect(connector)).await;
        let (client, connection) = match connected {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => return Err(self.connect_error(database, &e)),
            Err(_) => {
                return Err(self.scrubbed(
                    ErrorKind::Transient,
                    format!(
                        "cannot connect to PostgreSQL at {}: no answer in {} s",
                        self.address(),
                        CONNECT_LIMIT.as_secs()
                    ),
                ));
            }
        };
        // The connection's I/O, until the client is dropped or the server goes away.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Runs one statement (or one round of them) with a time limit; a failure as a
    /// [`ProviderError`] saying what was being done.
    pub(crate) async fn run<T>(
        &self,
        doing: &str,
        fut: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, ProviderError> {
        match tokio::time::timeout(STATEMENT_LIMIT, fut).await {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.error(doing, &e)),
            Err(_) => Err(self.scrubbed(
                ErrorKind::Transient,
                format!(
                    "{doing}: PostgreSQL at {} did not answer in {} s",
                    self.address(),
                    STATEMENT_LIMIT.as_secs()
                ),
            )),
        }
    }

    /// A failed statement: `doing`, then what the server or the connection said.
    pub(crate) fn error(&self, doing: &str, e: &tokio_postgres::Error) -> ProviderError {
        let (kind, why) = classify(e);
        self.scrubbed(
            kind,
            format!("{doing} (PostgreSQL at {}): {why}", self.address()),
        )
    }

    /// A failed connection, with what to check for the failures a person can fix.
    fn connect_error(&self, database: &str, e: &tokio_postgres::Error) -> ProviderError {
        let s = &self.server;
        let (kind, why) = classify(e);
        let mut message = format!(
            "cannot connect to PostgreSQL at {} (database `{database}`) as user `{}`: {why}",
            self.address(),
            s.admin_user
        );
        let hba = why.contains("pg_hba.conf");
        let hint = match kind {
            ErrorKind::Auth
                if hba && why.contains("no encryption") && s.tls == TlsMode::Disable =>
            {
                "; the server accepts this login only over TLS: use TLS mode `require` or \
                 `verify-full`"
                    .to_string()
            }
            ErrorKind::Auth if hba => {
                "; the server's pg_hba.conf does not let this user log in from here".to_string()
            }
            ErrorKind::Auth => "; check the administrator user and password".to_string(),
            ErrorKind::Permanent => match tls_failure(e) {
                Some(rustls::Error::InvalidCertificate(c)) => certificate_hint(c, s),
                Some(_) => String::new(),
                None if why.contains("server does not support TLS") => {
                    "; the server does not accept TLS connections: enable `ssl` on it (TLS \
                     mode `disable` only through a tunnel or on this machine)"
                        .to_string()
                }
                None => String::new(),
            },
            ErrorKind::NotFound => "; name an existing administrator database".to_string(),
            _ => String::new(),
        };
        message.push_str(&hint);
        self.scrubbed(kind, message)
    }

    /// An error with the administrator's password removed from its message (no message is
    /// known to hold it: this makes sure).
    fn scrubbed(&self, kind: ErrorKind, message: String) -> ProviderError {
        let password = self.server.admin_password.expose();
        let message = if password.is_empty() {
            message
        } else {
            message.replace(password.as_str(), "***")
        };
        ProviderError::new(kind, message)
    }
}

/// What to do about a certificate `verify-full` did not accept.
fn certificate_hint(e: &rustls::CertificateError, s: &PgServer) -> String {
    use rustls::CertificateError as C;
    match e {
        C::UnknownIssuer => match &s.tls {
            TlsMode::VerifyFull {
                ca_file: Some(path),
            } => format!(
                "; the server's certificate is not signed by a CA of {}",
                path.display()
            ),
            _ => "; the server's certificate is not signed by a CA this machine trusts: name \
                  the server's CA file"
                .to_string(),
        },
        C::NotValidForName | C::NotValidForNameContext { .. } => format!(
            "; the server's certificate does not hold the name `{}`: connect by a name it holds",
            s.host
        ),
        _ => "; the server's certificate is not valid".to_string(),
    }
}

/// The kind of a failure and its text (the server's message, detail and hint on one line,
/// or the error chain).
pub(crate) fn classify(e: &tokio_postgres::Error) -> (ErrorKind, String) {
    if let Some(db) = e.as_db_error() {
        return (kind_of_sqlstate(db.code().code()), db_text(db));
    }
    let text = chain(e);
    let kind = if tls_failure(e).is_some() {
        ErrorKind::Permanent
    } else if e.is_closed() || io_failure(e) {
        ErrorKind::Transient
    } else if text.contains("password missing") {
        return (
            ErrorKind::Auth,
            "the server asks for a password, and none was given".to_string(),
        );
    } else {
        ErrorKind::Permanent
    };
    (kind, text)
}

/// The kind of the SQLSTATE `code` (the table in the module docs).
pub(crate) fn kind_of_sqlstate(code: &str) -> ErrorKind {
    match code {
        "42501" => ErrorKind::Auth,
        "53300" => ErrorKind::Throttled,
        "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "55P03" => ErrorKind::Transient,
        "42710" | "42P04" => ErrorKind::AlreadyExists,
        "42704" | "3D000" => ErrorKind::NotFound,
        "55006" | "2BP01" => ErrorKind::Conflict,
        "0A000" => ErrorKind::InvalidInput,
        _ => match &code[..code.len().min(2)] {
            "28" => ErrorKind::Auth,
            "08" | "53" | "58" => ErrorKind::Transient,
            "22" | "42" => ErrorKind::InvalidInput,
            _ => ErrorKind::Permanent,
        },
    }
}

/// The server's message with its detail and hint, on one line.
pub(crate) fn db_text(db: &DbError) -> String {
    let mut text = db.message().to_string();
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" ({})", detail.trim_end_matches('.')));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("; {hint}"));
    }
    text
}

/// `e` and its causes, `: `-separated, each once (tokio-postgres repeats its cause).
fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    text
}

/// The rustls error in `e`'s causes, if the TLS handshake failed. tokio-rustls wraps it in
/// an `io::Error`, whose `source` skips it, so each `io::Error` is looked into.
fn tls_failure(e: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(r) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r);
        }
        cause = c.source();
    }
    None
}

/// Whether `e` is the network failing (refused, reset, timed out, unreachable).
fn io_failure(e: &tokio_postgres::Error) -> bool {
    let mut cause = e.source();
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        cause = c.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        for (code, kind) in [
            ("28P01", ErrorKind::Auth),
            ("28000", ErrorKind::Auth),
            ("42501", ErrorKind::Auth),
            ("53300", ErrorKind::Throttled),
            ("53200", ErrorKind::Transient),
            ("08006", ErrorKind::Transient),
            ("57P03", ErrorKind::Transient),
            ("40P01", ErrorKind::Transient),
            ("42710", ErrorKind::AlreadyExists),
            ("42P04", ErrorKind::AlreadyExists),
            ("42704", ErrorKind::NotFound),
            ("3D000", ErrorKind::NotFound),
            ("55006", ErrorKind::Conflict),
            ("2BP01", ErrorKind::Conflict),
            ("22023", ErrorKind::InvalidInput),
            ("42939", ErrorKind::InvalidInput),
            ("42601", ErrorKind::InvalidInput),
            ("XX000", ErrorKind::Permanent),
        ] {
            assert_eq!(kind_of_sqlstate(code), kind, "{code}");
        }
    }

    #[test]
    fn debug_hides_the_password_and_addresses_bracket_ipv6() {
        let mut s = PgServer::new("::1", 5432, "admin", Sensitive::new("hunter2".into()));
        assert_eq!(s.address(), "[::1]:5432");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", Pg::new(s.clone())).contains("hunter2"));
        s.host = "db.internal".into();
        assert_eq!(s.address(), "db.internal:5432");
        assert_eq!(s.admin_database, "postgres");
    }

    #[test]
    fn messages_never_carry_the_administrators_password() {
        let pg = Pg::new(PgServer::new(
            "h",
            1,
            "admin",
            Sensitive::new("s3cr3t".into()),
        ));
        let e = pg.scrubbed(ErrorKind::Auth, "password s3cr3t was wrong".into());
        assert_eq!(e.message, "password *** was wrong");
    }
}

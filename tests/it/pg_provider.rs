//! The PostgreSQL provider (`postgres_role`, `postgres_database`) against real servers:
//! the trust-authentication cluster of `postgres.rs` for lifecycles, adoption, refusals and
//! drift, and the TLS-only, password-only cluster of `postgres_tls.rs` for TLS modes,
//! logins with the passwords the provider set, and authentication errors.

use std::sync::Arc;

use flyteinfra_core::requests::{contents, create, delete, find, read, refresh, update};
use flyteinfra_core::{
    Attributes, Completion, ErrorKind, ProviderError, Registry, ResourceType, Sensitive, Value,
};
use flyteinfra_provider_postgres::{PgServer, TlsMode, connect, resource_types, tls};
use tokio_postgres::{Client, NoTls};

use crate::aws::unique_name;

const ROLE: &str = "postgres_role";
const DB: &str = "postgres_database";

/// The administrator of the trust cluster (no password, no TLS).
fn trust_server() -> PgServer {
    let url = crate::postgres::url();
    let port = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("the cluster's URL has a port");
    PgServer {
        tls: TlsMode::Disable,
        ..PgServer::new("127.0.0.1", port, "postgres", Sensitive::default())
    }
}

/// The administrator of the TLS-only cluster at `host`, with `tls`.
fn tls_server(host: &str, tls: TlsMode) -> PgServer {
    let c = crate::postgres_tls::cluster();
    PgServer {
        tls,
        ..PgServer::new(host, c.port, "postgres", Sensitive::new(c.password.clone()))
    }
}

/// The TLS cluster's certificate checked against its CA.
fn verified() -> TlsMode {
    TlsMode::VerifyFull {
        ca_file: Some(crate::postgres_tls::cluster().ca.clone()),
    }
}

/// The role and database types on `server`, registered as the engine registers them
/// (sensitive fields marked secret).
fn types(server: PgServer) -> (Arc<dyn ResourceType>, Arc<dyn ResourceType>) {
    let mut registry = Registry::new();
    for t in resource_types(server) {
        registry.register(t);
    }
    (
        Arc::clone(registry.get(ROLE).unwrap()),
        Arc::clone(registry.get(DB).unwrap()),
    )
}

/// An administrator's client of the trust cluster, for changes made out of band.
async fn trust_admin() -> Client {
    let (client, connection) = tokio_postgres::connect(crate::postgres::url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

fn role_inputs(name: &str, password: &str) -> Attributes {
    flyteinfra_core::attrs::attrs([
        ("name", Value::from(name)),
        ("password", Value::secret(password)),
    ])
}

fn db_inputs(name: &str, owner: &str) -> Attributes {
    flyteinfra_core::attrs::attrs([("name", Value::from(name)), ("owner", Value::from(owner))])
}

fn ready(c: Completion) -> Attributes {
    match c {
        Completion::Ready(a) => a,
        Completion::InProgress => panic!("PostgreSQL creates are synchronous"),
    }
}

/// `a` with `key` set to `v`.
fn with(a: &Attributes, key: &str, v: Value) -> Attributes {
    let mut a = a.clone();
    a.insert(key.to_string(), v);
    a
}

/// A comment as the server has it (`pg_roles` or `pg_database`).
async fn comment(admin: &Client, catalog: &str, name: &str) -> Option<String> {
    let sql = match catalog {
        "pg_authid" => {
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1"
        }
        _ => "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
    };
    admin.query_one(sql, &[&name]).await.unwrap().get(0)
}

/// Double quotes for an identifier in the tests' own SQL.
fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[tokio::test]
async fn a_role_is_created_adopted_by_its_token_put_back_after_drift_and_deleted() {
    let (role, _) = types(trust_server());
    let admin = trust_admin().await;
    let u = unique_name();
    let name = format!("flyte_{u}");
    let token = format!("tok-{u}");
    let inputs = role_inputs(&name, "first-password");

    let created = role.create(create(ROLE, &inputs, &token)).await.unwrap();
    assert_eq!(created.id, name);
    let a = ready(created.completion);
    assert_eq!(a["id"], Value::from(name.as_str()));
    for (field, value) in [
        ("login", true),
        ("superuser", false),
        ("createdb", false),
        ("createrole", false),
    ] {
        assert_eq!(a[field], Value::Bool(value), "{field}");
    }
    assert_eq!(a["connection_limit"], Value::Int(-1));
    assert!(a["password"].is_secret(), "the password is marked secret");
    assert_eq!(
        comment(&admin, "pg_authid", &name).await.as_deref(),
        Some(format!("flyteinfra:{token}").as_str()),
        "the token is the role's comment"
    );
    let stored: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        stored.starts_with("SCRAM-SHA-256$4096:"),
        "a SCRAM verifier is stored"
    );

    let got = role
        .read(refresh(ROLE, &name, &inputs))
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(
        got, a,
        "read agrees with create (the password as last applied)"
    );
    let imported = role
        .read(read(ROLE, &name))
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert!(
        !imported.contains_key("password"),
        "a password is never read back"
    );

    let found = role.find(find(ROLE, &inputs, &token)).await.unwrap();
    assert_eq!(found.id.as_deref(), Some(name.as_str()));
    let other = role.find(find(ROLE, &inputs, "other")).await.unwrap();
    assert_eq!(other.id, None, "another create's token does not find it");

    // An interrupted create runs again: the role is its own.
    let again = role.create(create(ROLE, &inputs, &token)).await.unwrap();
    assert_eq!(again.id, name);
    assert_eq!(ready(again.completion), a);
    // Another create of the same name is refused.
    let theirs = role
        .create(create(ROLE, &inputs, "other"))
        .await
        .unwrap_err();
    assert_eq!(theirs.kind, ErrorKind::AlreadyExists, "{theirs}");
    assert!(
        theirs
            .message
            .contains(&format!("flyteinfra import postgres_role.test {name}")),
        "{theirs}"
    );
    assert!(
        theirs.message.contains("another flyteinfra create"),
        "{theirs}"
    );

    // Privileges granted out of band show, and an update takes them away.
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} SUPERUSER CREATEDB CREATEROLE NOLOGIN",
            q(&name)
        ))
        .await
        .unwrap();
    let drifted = role
        .read(refresh(ROLE, &name, &inputs))
        .await
        .unwrap()
        .attributes
        .unwrap();
    for (field, value) in [
        ("login", false),
        ("superuser", true),
        ("createdb", true),
        ("createrole", true),
    ] {
        assert_eq!(drifted[field], Value::Bool(value), "{field}");
    }
    let desired = [
        ("login", true),
        ("superuser", false),
        ("createdb", false),
        ("createrole", false),
    ]
    .into_iter()
    .fold(
        with(&inputs, "connection_limit", Value::Int(5)),
        |a, (k, v)| with(&a, k, Value::Bool(v)),
    );
    let fixed = role
        .update(update(
            ROLE,
            &name,
            &drifted,
            &desired,
            &[
                "login",
                "superuser",
                "createdb",
                "createrole",
                "connection_limit",
            ],
        ))
        .await
        .unwrap()
        .attributes;
    let now = role
        .read(refresh(ROLE, &name, &desired))
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(fixed, now);
    for (field, value) in [
        ("login", true),
        ("superuser", false),
        ("createdb", false),
        ("createrole", false),
    ] {
        assert_eq!(now[field], Value::Bool(value), "{field}");
    }
    assert_eq!(now["connection_limit"], Value::Int(5));

    // A privileged role is never asked for.
    let bad = with(&inputs, "superuser", Value::Bool(true));
    let e = role
        .create(create(ROLE, &with(&bad, "name", Value::from("x")), "t"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");

    for _ in 0..2 {
        let del = role.delete(delete(ROLE, &name, &now)).await.unwrap();
        assert!(del.done, "deleting a deleted role succeeds");
    }
    assert!(
        role.read(read(ROLE, &name))
            .await
            .unwrap()
            .attributes
            .is_none()
    );
}

#[tokio::test]
async fn a_role_flyteinfra_did_not_make_is_refused_with_the_import_hint() {
    let (role, _) = types(trust_server());
    let admin = trust_admin().await;
    let name = format!("theirs_{}", unique_name());
    admin
        .batch_execute(&format!("CREATE ROLE {} LOGIN", q(&name)))
        .await
        .unwrap();
    let inputs = role_inputs(&name, "pw");
    let e = role.create(create(ROLE, &inputs, "tok")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
    assert!(
        e.message
            .contains(&format!("flyteinfra import postgres_role.test {name}")),
        "{e}"
    );
    assert!(
        e.message.contains("does not carry this create's token"),
        "{e}"
    );
    assert_eq!(
        role.find(find(ROLE, &inputs, "tok")).await.unwrap().id,
        None
    );
    // Nothing about it was changed.
    assert_eq!(comment(&admin, "pg_authid", &name).await, None);
    admin
        .batch_execute(&format!("DROP ROLE {}", q(&name)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_is_adopted_only_with_proof_and_its_owner_is_put_back() {
    let (role, db) = types(trust_server());
    let admin = trust_admin().await;
    let u = unique_name();
    let (owner, owner2) = (format!("own_{u}"), format!("own2_{u}"));
    for (r, t) in [(&owner, "role-a"), (&owner2, "role-b")] {
        role.create(create(ROLE, &role_inputs(r, "pw"), &format!("{t}-{u}")))
            .await
            .unwrap();
    }

    let name = format!("db_{u}");
    let token = format!("db-{u}");
    let inputs = db_inputs(&name, &owner);
    let created = db.create(create(DB, &inputs, &token)).await.unwrap();
    assert_eq!(created.id, name);
    let a = ready(created.completion);
    assert_eq!(a["owner"], Value::from(owner.as_str()));
    assert_eq!(a["encoding"], Value::from("UTF8"));
    assert_eq!(
        comment(&admin, "pg_database", &name).await.as_deref(),
        Some(format!("flyteinfra:{token}").as_str())
    );
    let got = db
        .read(refresh(DB, &name, &inputs))
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(got, a, "read agrees with create");
    assert_eq!(
        db.find(find(DB, &inputs, &token))
            .await
            .unwrap()
            .id
            .as_deref(),
        Some(name.as_str())
    );
    assert_eq!(db.find(find(DB, &inputs, "other")).await.unwrap().id, None);
    let again = db.create(create(DB, &inputs, &token)).await.unwrap();
    assert_eq!(
        (again.id.as_str(), ready(again.completion)),
        (name.as_str(), a.clone())
    );
    let theirs = db.create(create(DB, &inputs, "other")).await.unwrap_err();
    assert_eq!(theirs.kind, ErrorKind::AlreadyExists, "{theirs}");
    assert!(
        theirs
            .message
            .contains(&format!("flyteinfra import postgres_database.test {name}")),
        "{theirs}"
    );

    // A create stopped between CREATE DATABASE and COMMENT: no comment, owned by the
    // configured owner, a role flyteinfra made. Adopted, and marked.
    let half = format!("half_{u}");
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {} OWNER {} TEMPLATE template0",
            q(&half),
            q(&owner)
        ))
        .await
        .unwrap();
    let half_inputs = with(&db_inputs(&half, &owner), "encoding", Value::from("utf8"));
    assert_eq!(
        db.find(find(DB, &half_inputs, "half-tok"))
            .await
            .unwrap()
            .id
            .as_deref(),
        Some(half.as_str())
    );
    let adopted = ready(
        db.create(create(DB, &half_inputs, "half-tok"))
            .await
            .unwrap()
            .completion,
    );
    assert_eq!(
        adopted["encoding"],
        Value::from("utf8"),
        "the configured spelling"
    );
    assert_eq!(
        comment(&admin, "pg_database", &half).await.as_deref(),
        Some("flyteinfra:half-tok")
    );
    let imported = db.read(read(DB, &half)).await.unwrap().attributes.unwrap();
    assert_eq!(imported["encoding"], Value::from("UTF8"));

    // Databases without the proof: owned by someone else, or by a role flyteinfra did not
    // make, or not by the configured owner.
    let hand = format!("hand_{u}");
    admin
        .batch_execute(&format!("CREATE ROLE {}", q(&hand)))
        .await
        .unwrap();
    for (i, (db_owner, configured)) in [
        ("postgres", owner.as_str()),
        (hand.as_str(), hand.as_str()),
        (owner2.as_str(), owner.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        let foreign = format!("foreign{i}_{u}");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                q(&foreign),
                q(db_owner)
            ))
            .await
            .unwrap();
        let fi = db_inputs(&foreign, configured);
        let e = db.create(create(DB, &fi, "tok")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(
            e.message.contains(&format!(
                "flyteinfra import postgres_database.test {foreign}"
            )),
            "{e}"
        );
        assert_eq!(db.find(find(DB, &fi, "tok")).await.unwrap().id, None);
        assert!(
            e.message.contains(&format!("its owner `{db_owner}`")),
            "{e}"
        );
        assert_eq!(comment(&admin, "pg_database", &foreign).await, None);
        admin
            .batch_execute(&format!("DROP DATABASE {}", q(&foreign)))
            .await
            .unwrap();
    }

    // The owner changed out of band shows, and an update gives it back.
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {}",
            q(&name),
            q(&owner2)
        ))
        .await
        .unwrap();
    let drifted = db
        .read(refresh(DB, &name, &inputs))
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(drifted["owner"], Value::from(owner2.as_str()));
    let fixed = db
        .update(update(DB, &name, &drifted, &inputs, &["owner"]))
        .await
        .unwrap()
        .attributes;
    assert_eq!(fixed["owner"], Value::from(owner.as_str()));
    // And a new owner in the configuration is an update too.
    let to2 = db_inputs(&name, &owner2);
    let moved = db
        .update(update(DB, &name, &fixed, &to2, &["owner"]))
        .await
        .unwrap()
        .attributes;
    assert_eq!(moved["owner"], Value::from(owner2.as_str()));
    let now = db
        .read(refresh(DB, &name, &to2))
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(now, moved);

    // Contents: nothing yet; a table is something, and a delete without force refuses it.
    assert_eq!(
        db.holds_contents(contents(DB, &name, &now)).await.unwrap(),
        Some(false)
    );
    let inside = connect(&PgServer {
        admin_database: name.clone(),
        ..trust_server()
    })
    .await
    .unwrap();
    inside
        .batch_execute("CREATE TABLE executions (id int)")
        .await
        .unwrap();
    assert_eq!(
        db.holds_contents(contents(DB, &name, &now)).await.unwrap(),
        Some(true)
    );
    let e = db.delete(delete(DB, &name, &now)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("force_destroy is off"), "{e}");

    // An empty database with a session open: the session blocks a delete without force.
    let session = connect(&PgServer {
        admin_database: half.clone(),
        ..trust_server()
    })
    .await
    .unwrap();
    let e = db.delete(delete(DB, &half, &adopted)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("other session"), "{e}");
    assert!(e.message.contains("allow force_destroy"), "{e}");
    drop(session);
    assert!(db.delete(delete(DB, &half, &adopted)).await.unwrap().done);

    // A role that still owns a database cannot go.
    let e = role
        .delete(delete(ROLE, &owner2, &Attributes::new()))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("REASSIGN OWNED BY"), "{e}");

    // With force: its tables go, and its sessions (`inside` is still connected) are ended.
    let mut forced = delete(DB, &name, &now);
    forced.force = true;
    for _ in 0..2 {
        assert!(db.delete(forced.clone()).await.unwrap().done);
    }
    assert!(inside.is_closed() || inside.simple_query("SELECT 1").await.is_err());
    assert!(db.read(read(DB, &name)).await.unwrap().attributes.is_none());
    assert_eq!(
        db.holds_contents(contents(DB, &name, &now)).await.unwrap(),
        Some(false),
        "a database that is gone holds nothing"
    );
    for r in [&owner, &owner2] {
        assert!(
            role.delete(delete(ROLE, r, &Attributes::new()))
                .await
                .unwrap()
                .done
        );
    }
    admin
        .batch_execute(&format!("DROP ROLE {}", q(&hand)))
        .await
        .unwrap();
}

/// Logs in to `database` on the TLS cluster as `user` with `password`.
async fn login(user: &str, password: &str, database: &str) -> Result<Client, ProviderError> {
    connect(&PgServer {
        admin_user: user.to_string(),
        admin_password: Sensitive::new(password.to_string()),
        admin_database: database.to_string(),
        ..tls_server("localhost", verified())
    })
    .await
}

#[tokio::test]
async fn names_and_passwords_with_quotes_work_and_passwords_log_in() {
    let (role, db) = types(tls_server("localhost", verified()));
    // Every statement of the administrator's sessions goes to the server's log.
    let admin = connect(&tls_server("localhost", verified())).await.unwrap();
    admin
        .batch_execute("ALTER ROLE postgres SET log_statement = 'all'")
        .await
        .unwrap();
    drop(admin);
    let u = unique_name();
    let name = format!("fly\"te's {u}");
    let first = "p'a\"ss\\word$$;--";
    let inputs = role_inputs(&name, first);
    let a = ready(
        role.create(create(ROLE, &inputs, "quoted"))
            .await
            .unwrap()
            .completion,
    );
    assert_eq!(a["name"], Value::from(name.as_str()));
    let db_name = format!("d\"b's {u}");
    let d = ready(
        db.create(create(DB, &db_inputs(&db_name, &name), "quoted-db"))
            .await
            .unwrap()
            .completion,
    );
    assert_eq!(d["owner"], Value::from(name.as_str()));

    // The role logs in, over TLS with SCRAM, with the password it was given.
    let client = login(&name, first, &db_name).await.unwrap();
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, name);
    let wrong = login(&name, "not-it", &db_name).await.unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::Auth, "{wrong}");

    // A new password replaces the old one.
    let second = "n3w'\"\\";
    let changed = with(&inputs, "password", Value::secret(second));
    role.update(update(ROLE, &name, &a, &changed, &["password"]))
        .await
        .unwrap();
    login(&name, second, &db_name).await.unwrap();
    let old = login(&name, first, &db_name).await.unwrap_err();
    assert_eq!(old.kind, ErrorKind::Auth, "{old}");
    assert!(!old.message.contains(first), "{old}");

    drop(client);
    assert!(db.delete(delete(DB, &db_name, &d)).await.unwrap().done);
    assert!(role.delete(delete(ROLE, &name, &a)).await.unwrap().done);

    // The server logged the statements, with verifiers and without either password.
    let dir = crate::postgres_tls::cluster()
        .ca
        .parent()
        .unwrap()
        .to_path_buf();
    let log = std::fs::read_to_string(dir.join("log")).unwrap();
    assert!(log.contains("PASSWORD E'SCRAM-SHA-256$4096:"), "{log}");
    for p in [first, second] {
        assert!(!log.contains(p), "the server's log holds a password: {log}");
    }
}

/// The session's `pg_stat_ssl.ssl`.
async fn ssl_of(client: &Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn tls_modes_connect_as_libpq_does_and_fail_clearly() {
    let port = crate::postgres_tls::cluster().port;
    // require: encrypted, the certificate not checked.
    let c = connect(&tls_server("127.0.0.1", TlsMode::Require))
        .await
        .unwrap();
    assert!(ssl_of(&c).await);
    // verify-full with the test CA, by name and by address.
    for host in ["localhost", "127.0.0.1"] {
        let c = connect(&tls_server(host, verified())).await.unwrap();
        assert!(ssl_of(&c).await, "{host}");
    }

    // verify-full with another CA, or the platform's roots: not trusted.
    let other = TlsMode::VerifyFull {
        ca_file: Some(crate::postgres_tls::cluster().other_ca.clone()),
    };
    for mode in [other, TlsMode::VerifyFull { ca_file: None }] {
        let e = connect(&tls_server("localhost", mode.clone()))
            .await
            .unwrap_err();
        if e.kind == ErrorKind::InvalidInput && mode == (TlsMode::VerifyFull { ca_file: None }) {
            // A machine without a system certificate store: as clear.
            assert!(e.message.contains("no trusted root certificate"), "{e}");
            continue;
        }
        assert_eq!(e.kind, ErrorKind::Permanent, "{mode:?}: {e}");
        assert!(
            e.message
                .contains(&format!("cannot connect to PostgreSQL at localhost:{port}")),
            "{e}"
        );
        assert!(e.message.contains("UnknownIssuer"), "{e}");
        assert!(
            e.message
                .contains("the server's certificate is not signed by a CA"),
            "{e}"
        );
    }

    // verify-full with a name the certificate does not hold (reached at 127.0.0.1).
    let mut config = tokio_postgres::Config::new();
    config
        .host("db.example")
        .hostaddr([127, 0, 0, 1].into())
        .port(port)
        .user("postgres")
        .password(crate::postgres_tls::cluster().password.as_str())
        .ssl_mode(tls::ssl_mode(&verified()));
    let e = config
        .connect(tls::connector(&verified()).unwrap())
        .await
        .err()
        .unwrap();
    let cause = std::error::Error::source(&e).map(ToString::to_string);
    let text = format!("{e}: {}", cause.unwrap_or_default());
    assert!(text.contains("not valid for name \"db.example\""), "{text}");

    // SCRAM-SHA-256-PLUS: the session's channel binding is what the server computes.
    let mut config = tokio_postgres::Config::new();
    config
        .host("localhost")
        .port(port)
        .user("postgres")
        .password(crate::postgres_tls::cluster().password.as_str())
        .ssl_mode(tls::ssl_mode(&TlsMode::Require))
        .channel_binding(tokio_postgres::config::ChannelBinding::Require);
    let (client, connection) = config
        .connect(tls::connector(&TlsMode::Require).unwrap())
        .await
        .unwrap();
    tokio::spawn(connection);
    assert!(ssl_of(&client).await);

    // disable, against a server that takes logins only over TLS.
    let e = connect(&tls_server("127.0.0.1", TlsMode::Disable))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains("no encryption"), "{e}");
    assert!(e.message.contains("only over TLS"), "{e}");

    // require, against a server without TLS (the trust cluster).
    let e = connect(&PgServer {
        tls: TlsMode::Require,
        ..trust_server()
    })
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
    assert!(e.message.contains("does not accept TLS"), "{e}");
}

#[tokio::test]
async fn a_wrong_password_is_one_clear_auth_error_without_the_password() {
    let port = crate::postgres_tls::cluster().port;
    let secret = "Wr0ng-but-s3cret";
    let e = connect(&PgServer {
        admin_password: Sensitive::new(secret.to_string()),
        ..tls_server("localhost", verified())
    })
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(
        e.message.starts_with(&format!(
            "cannot connect to PostgreSQL at localhost:{port} (database `postgres`) as user \
             `postgres`: password authentication failed"
        )),
        "{e}"
    );
    assert!(
        e.message
            .contains("check the administrator user and password"),
        "{e}"
    );
    assert!(!e.message.contains(secret), "{e}");
    assert!(
        !e.message.contains(&crate::postgres_tls::cluster().password),
        "{e}"
    );
    // No password at all, where the server asks for one.
    let e = connect(&PgServer {
        admin_password: Sensitive::default(),
        ..tls_server("localhost", verified())
    })
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(
        e.message
            .contains("asks for a password, and none was given"),
        "{e}"
    );

    // Nobody listening: retried, not a configuration error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = closed.local_addr().unwrap().port();
    drop(closed);
    let e = connect(&PgServer {
        port: free,
        ..trust_server()
    })
    .await
    .unwrap_err();
    assert!(e.kind.is_retryable(), "{:?}: {e}", e.kind);
    // Through a resource type, the same error.
    let (role, _) = types(PgServer {
        port: free,
        ..trust_server()
    });
    let e = role.read(read(ROLE, "flyte")).await.unwrap_err();
    assert!(e.kind.is_retryable(), "{:?}: {e}", e.kind);
}

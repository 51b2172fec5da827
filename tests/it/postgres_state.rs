//! The PostgreSQL state backend against a throwaway cluster (`postgres.rs`): the backends'
//! conformance suite, setup errors, the table layout, and lease expiry by the server's
//! clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flyteinfra_provider_postgres::TlsMode;
use flyteinfra_state::conformance::{Handles, TTL};
use flyteinfra_state::{
    Backend, Lease, LockInfo, Object, PostgresBackend, PostgresLocation, Precondition, StateError,
    Version,
};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::aws::{rt, unique_name};

/// The schema the tests share; each test uses its own deployment names.
const SCHEMA: &str = "flyteinfra_it";

fn location(schema: &str, deployment: &str, cloud: &str) -> PostgresLocation {
    PostgresLocation {
        conn: crate::postgres::url().to_string(),
        schema: schema.to_string(),
        deployment: deployment.to_string(),
        cloud: cloud.to_string(),
        // The plain cluster takes plain TCP on 127.0.0.1 only.
        tls: TlsMode::Disable,
    }
}

/// A location on the TLS-only cluster ([`crate::postgres_tls`]) at `host`, in `tls` mode.
fn tls_location(host: &str, deployment: &str, tls: TlsMode) -> PostgresLocation {
    let cluster = crate::postgres_tls::cluster();
    PostgresLocation {
        conn: format!(
            "host={host} port={} user=postgres password={} dbname=postgres",
            cluster.port, cluster.password
        ),
        schema: SCHEMA.to_string(),
        deployment: deployment.to_string(),
        cloud: "aws".to_string(),
        tls,
    }
}

/// verify-full against the TLS cluster's own CA.
fn verified() -> TlsMode {
    TlsMode::VerifyFull {
        ca_file: Some(crate::postgres_tls::cluster().ca.clone()),
    }
}

fn connect(deployment: &str) -> PostgresBackend {
    PostgresBackend::connect(location(SCHEMA, deployment, "aws")).unwrap()
}

/// Runs one statement with a client of its own, as an administrator would.
fn execute(sql: &str, params: &[&(dyn ToSql + Sync)]) -> u64 {
    rt().block_on(async {
        let (client, connection) = tokio_postgres::connect(crate::postgres::url(), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.execute(sql, params).await.unwrap()
    })
}

/// The first column of every row of a query, as text.
fn column(sql: &str, params: &[&(dyn ToSql + Sync)]) -> Vec<String> {
    rt().block_on(async {
        let (client, connection) = tokio_postgres::connect(crate::postgres::url(), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let rows = client.query(sql, params).await.unwrap();
        rows.iter().map(|r| r.get::<_, String>(0)).collect()
    })
}

fn holder(command: &str, pid: u32) -> LockInfo {
    let mut info = LockInfo::new(command);
    info.pid = pid;
    info
}

#[track_caller]
fn setup_error(r: Result<PostgresBackend, StateError>) -> (String, String) {
    match r {
        Err(StateError::Setup { path, message }) => (path.to_str().unwrap().to_string(), message),
        other => panic!("expected a setup error, got {other:?}"),
    }
}

/// A fresh store: a new deployment in the shared table.
fn fresh() -> Handles {
    let deployment = unique_name();
    // Each handle connects on its own, as two processes would.
    Box::new(move || Arc::new(connect(&deployment)))
}

/// The conformance suite every backend passes.
#[test]
fn postgres_backend_passes_the_conformance_suite() {
    flyteinfra_state::conformance::run_all(&fresh);
}

/// The conformance suite again over TLS with the certificate verified, against a cluster
/// that takes logins only over TLS (with SCRAM), by name and by address.
#[test]
fn postgres_backend_over_verified_tls_passes_the_conformance_suite() {
    for host in ["localhost", "127.0.0.1"] {
        let fresh = move || -> Handles {
            let deployment = unique_name();
            Box::new(move || {
                Arc::new(
                    PostgresBackend::connect(tls_location(host, &deployment, verified())).unwrap(),
                )
            })
        };
        flyteinfra_state::conformance::run_all(&fresh);
    }
    // `require`: encrypted, the certificate not checked.
    let b = PostgresBackend::connect(tls_location("localhost", &unique_name(), TlsMode::Require))
        .unwrap();
    assert_eq!(b.get(Object::State).unwrap(), None);
}

/// Without TLS, or with a CA that did not sign the server's certificate, the TLS cluster
/// refuses, with a setup error that says why and what to do, never the password.
#[test]
fn tls_that_the_server_refuses_or_that_does_not_verify_is_a_clear_setup_error() {
    let cluster = crate::postgres_tls::cluster();
    let port = cluster.port;
    let (path, m) = setup_error(PostgresBackend::connect(tls_location(
        "127.0.0.1",
        "prod",
        TlsMode::Disable,
    )));
    assert_eq!(
        path,
        format!("postgres://127.0.0.1:{port}/postgres?schema={SCHEMA}")
    );
    assert!(
        m.contains(&format!(
            "cannot connect to PostgreSQL at 127.0.0.1:{port}, database `postgres` as user `postgres` (without TLS)"
        )),
        "{m}"
    );
    assert!(m.contains("no encryption"), "{m}");
    assert!(m.contains("only over TLS"), "{m}");
    assert!(!m.contains(&cluster.password), "{m}");

    let other = TlsMode::VerifyFull {
        ca_file: Some(cluster.other_ca.clone()),
    };
    let (_, m) = setup_error(PostgresBackend::connect(tls_location(
        "localhost",
        "prod",
        other,
    )));
    assert!(
        m.contains(&format!(
            "cannot connect to PostgreSQL at localhost:{port}, database `postgres` as user `postgres` (over TLS)"
        )),
        "{m}"
    );
    assert!(m.contains("UnknownIssuer"), "{m}");
    assert!(
        m.contains(&format!(
            "the server's certificate is not signed by a CA of {}",
            cluster.other_ca.display()
        )),
        "{m}"
    );
    assert!(!m.contains(&cluster.password), "{m}");

    // `require` against the plain cluster, which has no TLS.
    let mut loc = location(SCHEMA, "prod", "aws");
    loc.tls = TlsMode::Require;
    let (_, m) = setup_error(PostgresBackend::connect(loc));
    assert!(m.contains("the server does not accept TLS"), "{m}");
}

/// `conformance::takeover_after_a_full_ttl` by the server's clock: a holder that stops
/// renewing is taken over a full TTL after its last write, not before, however long the
/// waiter itself watched it.
#[test]
fn a_stalled_holder_is_taken_over_a_full_ttl_after_its_last_write() {
    let h = fresh();
    let a_info = holder("flyteinfra apply", 4242);
    let first = h(); // connected (and the cluster started) before the clock starts
    let before = Instant::now();
    Lease::acquire(first, a_info.clone(), TTL, Duration::ZERO)
        .unwrap()
        .abandon();

    let err = Lease::acquire(h(), holder("early", 1), TTL, TTL / 2).unwrap_err();
    assert!(matches!(err, StateError::Locked { .. }), "{err:?}");

    let b = Lease::acquire(h(), holder("flyteinfra apply", 2), TTL, TTL * 3).unwrap();
    let after = before.elapsed();
    assert!(
        after >= TTL,
        "taken over {after:?} after the holder's acquire"
    );
    // A waiter timing the record itself, from TTL/2 on, would take it at 1.5 TTL.
    assert!(
        after < TTL * 3 / 2,
        "taken over only {after:?} after the holder's acquire"
    );
    assert_eq!(b.taken_over_from(), Some(&a_info));
    b.watch().check().unwrap();
}

#[test]
fn connect_creates_the_schema_the_table_and_the_sequence_once() {
    let schema = format!("s_{}", unique_name());
    let backend = PostgresBackend::connect(location(&schema, "prod", "aws")).unwrap();
    let tables = column(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
        &[&schema],
    );
    assert_eq!(tables, ["flyteinfra_state"]);
    let sequences = column(
        "SELECT sequence_name::text FROM information_schema.sequences WHERE sequence_schema = $1",
        &[&schema],
    );
    assert_eq!(sequences, ["flyteinfra_version"]);
    // Again, and several at once: the objects exist, nothing fails.
    std::thread::scope(|s| {
        for i in 0..4 {
            let schema = &schema;
            s.spawn(move || {
                PostgresBackend::connect(location(schema, &format!("d{i}"), "aws")).unwrap()
            });
        }
    });
    let fresh = format!("r_{}", unique_name());
    std::thread::scope(|s| {
        for i in 0..4 {
            let fresh = &fresh;
            s.spawn(move || {
                PostgresBackend::connect(location(fresh, &format!("d{i}"), "aws")).unwrap()
            });
        }
    });
    backend
        .put(Object::State, b"{}", &Precondition::Absent)
        .unwrap();
}

#[test]
fn each_deployment_and_cloud_has_its_own_rows_and_description() {
    let deployment = unique_name();
    let url = crate::postgres::url();
    let server = url.strip_prefix("postgres://postgres@").unwrap();
    for cloud in ["aws", "gcp"] {
        let b = PostgresBackend::connect(location(SCHEMA, &deployment, cloud)).unwrap();
        assert_eq!(
            b.describe(Object::State),
            format!("postgres://{server}?schema={SCHEMA}#{deployment}/{cloud}.state")
        );
        assert_eq!(
            b.describe(Object::Lease),
            format!("postgres://{server}?schema={SCHEMA}#{deployment}/{cloud}.lock")
        );
        b.put(Object::State, cloud.as_bytes(), &Precondition::Absent)
            .unwrap();
        b.put(Object::Lease, b"{}", &Precondition::Absent).unwrap();
    }
    let other = connect(&format!("{deployment}-other"));
    assert!(other.get(Object::State).unwrap().is_none());
    let rows = column(
        &format!(
            "SELECT cloud || '.' || object FROM {SCHEMA}.flyteinfra_state \
             WHERE deployment = $1 ORDER BY 1"
        ),
        &[&deployment],
    );
    assert_eq!(rows, ["aws.lease", "aws.state", "gcp.lease", "gcp.state"]);
    let gcp = PostgresBackend::connect(location(SCHEMA, &deployment, "gcp")).unwrap();
    assert_eq!(gcp.get(Object::State).unwrap().unwrap().bytes, b"gcp");
}

/// A row deleted and created again never gets a version it had before, so a writer
/// holding an old version can never write over the new row.
#[test]
fn versions_never_repeat_even_after_delete_and_create() {
    let b = connect(&unique_name());
    let mut seen: Vec<Version> = Vec::new();
    for _ in 0..3 {
        let v1 = b
            .put(Object::State, b"{\"serial\":1}", &Precondition::Absent)
            .unwrap();
        let v2 = b
            .put(
                Object::State,
                b"{\"serial\":2}",
                &Precondition::At(v1.clone()),
            )
            .unwrap();
        b.delete(Object::State, &v2).unwrap();
        for v in [v1, v2] {
            assert!(!seen.contains(&v), "{v:?} came back: {seen:?}");
            seen.push(v);
        }
    }
    b.put(Object::State, b"{\"serial\":9}", &Precondition::Absent)
        .unwrap();
    for old in &seen {
        let r = b.put(Object::State, b"stale", &Precondition::At(old.clone()));
        assert!(matches!(r, Err(StateError::Moved { .. })), "{r:?}");
        let r = b.delete(Object::State, old);
        assert!(matches!(r, Err(StateError::Moved { .. })), "{r:?}");
    }
}

#[test]
fn an_unreachable_server_or_bad_connection_string_is_a_setup_error_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for conn in [
        format!("postgres://flyte:s3cr3t-pw@127.0.0.1:{port}/flyte"),
        format!("host=127.0.0.1 port={port} user=flyte password=s3cr3t-pw dbname=flyte"),
    ] {
        let mut loc = location(SCHEMA, "prod", "aws");
        loc.conn = conn;
        let (path, m) = setup_error(PostgresBackend::connect(loc));
        assert_eq!(
            path,
            format!("postgres://127.0.0.1:{port}/flyte?schema={SCHEMA}")
        );
        assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}");
        assert!(m.contains("database `flyte`"), "{m}");
        assert!(!m.contains("s3cr3t-pw"), "{m}");
    }
    // A database that does not exist on a server that does: the server's refusal.
    let mut loc = location(SCHEMA, "prod", "aws");
    loc.conn = crate::postgres::url().replace("/postgres", "/nosuchdb") + "?password=s3cr3t-pw";
    let (_, m) = setup_error(PostgresBackend::connect(loc));
    assert!(m.contains("database `nosuchdb`"), "{m}");
    assert!(m.contains("does not exist"), "{m}");
    assert!(!m.contains("s3cr3t-pw"), "{m}");

    let mut loc = location(SCHEMA, "prod", "aws");
    loc.conn = "host=127.0.0.1 password='s3cr3t-pw".into();
    let (_, m) = setup_error(PostgresBackend::connect(loc));
    assert!(m.contains("does not parse"), "{m}");
    assert!(!m.contains("s3cr3t-pw"), "{m}");
}

/// Without TLS, a server that is not on this machine is refused before any connection:
/// the state holds secrets.
#[test]
fn a_remote_server_without_tls_is_refused_before_connecting() {
    for conn in [
        "postgres://flyte:s3cr3t-pw@db.example.com:5432/flyte",
        "host=10.0.0.5 port=5432 user=flyte password=s3cr3t-pw dbname=flyte",
    ] {
        let mut loc = location(SCHEMA, "prod", "aws");
        loc.conn = conn.into();
        let (_, m) = setup_error(PostgresBackend::connect(loc));
        assert!(
            m.contains("is not on this machine and TLS is disabled (`tls: disable`)"),
            "{m}"
        );
        assert!(m.contains("`tls: require` or `verify-full`"), "{m}");
        assert!(m.contains("cloud-sql-proxy"), "{m}");
        assert!(!m.contains("s3cr3t-pw"), "{m}");
    }
}

#[test]
fn a_bad_schema_name_is_refused() {
    for bad in [
        "Flyte",
        "1x",
        "a-b",
        "x\"; DROP TABLE t; --",
        "pg_temp_x",
        "",
    ] {
        let (path, m) = setup_error(PostgresBackend::connect(location(bad, "prod", "aws")));
        assert!(path.starts_with("postgres://127.0.0.1:"), "{path}");
        assert!(m.contains("cannot be the schema"), "{bad}: {m}");
    }
}

/// The server's `now()` decides when a lease expired: a stalled holder's record, whose
/// last write the server dates an hour back, is taken over at once, well before a waiter
/// could have timed a full TTL itself; a fresh one is not.
#[test]
fn lease_expiry_follows_the_server_clock() {
    let deployment = unique_name();
    let h = || -> Arc<dyn Backend> { Arc::new(connect(&deployment)) };
    let a_info = holder("flyteinfra apply", 4242);
    let a = Lease::acquire(h(), a_info.clone(), TTL, Duration::ZERO).unwrap();
    let version = h().get(Object::Lease).unwrap().unwrap().version;
    a.abandon();
    assert_eq!(h().lease_expired(&version, TTL).unwrap(), Some(false));
    let early = Lease::acquire(h(), holder("early", 1), TTL, Duration::from_millis(300));
    assert!(matches!(early, Err(StateError::Locked { .. })), "{early:?}");

    let changed = execute(
        &format!(
            "UPDATE {SCHEMA}.flyteinfra_state SET renewed_at = now() - interval '1 hour' \
             WHERE deployment = $1 AND object = 'lease'"
        ),
        &[&deployment],
    );
    assert_eq!(changed, 1);
    assert_eq!(h().lease_expired(&version, TTL).unwrap(), Some(true));
    // A version the record no longer has: not expired, the waiter reads again.
    let moved = Version::new("1");
    assert_eq!(h().lease_expired(&moved, TTL).unwrap(), Some(false));

    let start = Instant::now();
    let b = Lease::acquire(
        h(),
        holder("flyteinfra apply", 2),
        TTL,
        Duration::from_secs(1),
    )
    .unwrap();
    assert!(
        start.elapsed() < TTL / 2,
        "taken over after {:?}",
        start.elapsed()
    );
    assert_eq!(b.taken_over_from(), Some(&a_info));
    b.watch().check().unwrap();
}

/// The CLI saves state from async code; and a connection the server closed is opened
/// again on the next call.
#[test]
fn the_backend_works_inside_a_tokio_runtime_and_reconnects() {
    let deployment = unique_name();
    let app = format!("fi_{deployment}");
    let mut loc = location(SCHEMA, &deployment, "aws");
    loc.conn = format!("{}?application_name={app}", loc.conn);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let backend = runtime.block_on(async {
        let backend = PostgresBackend::connect(loc).unwrap();
        let v = backend
            .put(Object::State, b"{}", &Precondition::Absent)
            .unwrap();
        assert_eq!(backend.get(Object::State).unwrap().unwrap().version, v);
        backend
    });
    let killed = column(
        "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    );
    assert_eq!(killed, ["true"]);
    // The first call may still find the closed connection; the next one reconnects.
    let start = Instant::now();
    let got = loop {
        match backend.get(Object::State) {
            Ok(got) => break got,
            Err(StateError::Read { .. }) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(got.unwrap().bytes, b"{}");
}

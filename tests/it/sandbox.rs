//! `style: sandbox` end to end with the real binary: Flyte's role, database and buckets on
//! a real PostgreSQL server (Debian's, from `scripts/postgres.sh`) and on moto's S3 as the
//! S3-compatible store, then the values.

use std::fs;

use crate::aws::unique_name;
use crate::util::TestContext;

const ADMIN_ENV: &str = "FI_SANDBOX_PG_ADMIN";
const KEY_ENV: &str = "FI_SANDBOX_S3_KEY";
const SECRET_ENV: &str = "FI_SANDBOX_S3_SECRET";

/// The port of `postgres://postgres@127.0.0.1:<port>/postgres`.
fn port_of(url: &str) -> u16 {
    let after = url.rsplit_once(':').expect("a port").1;
    after.split('/').next().unwrap().parse().expect("a port")
}

/// A sandbox deployment on the plain (trust) cluster and moto, with unique names; the
/// public-access block switched off as MinIO needs.
struct Sandbox {
    ctx: TestContext,
    /// The database and role name.
    db: String,
    /// The metadata bucket.
    bucket: String,
}

impl Sandbox {
    fn new() -> Sandbox {
        Self::on(crate::moto::url())
    }

    /// A sandbox whose store is the S3 API at `endpoint`.
    fn on(endpoint: &str) -> Sandbox {
        let unique = unique_name();
        let short: String = unique.chars().filter(char::is_ascii_alphanumeric).collect();
        let db = format!("flyte_{short}");
        let bucket = format!("sbx-{short}-meta");
        let config = format!(
            "name: sbx-{short}\n\
             style: sandbox\n\
             sandbox:\n\
             \x20 postgres:\n\
             \x20   host: 127.0.0.1\n\
             \x20   port: {port}\n\
             \x20   admin_user: postgres\n\
             \x20   admin_password_env: {ADMIN_ENV}\n\
             \x20   tls: disable\n\
             \x20 object_store:\n\
             \x20   endpoint: {endpoint}\n\
             \x20   region: us-east-1\n\
             \x20   access_key_env: {KEY_ENV}\n\
             \x20   secret_key_env: {SECRET_ENV}\n\
             \x20   capabilities: {{public_access_block: false}}\n\
             database:\n\
             \x20 name: {db}\n\
             \x20 username: {db}\n\
             storage:\n\
             \x20 metadata_bucket: {bucket}\n\
             \x20 separate_data_bucket: false\n",
            port = port_of(crate::postgres::url()),
        );
        Sandbox {
            ctx: TestContext::sandbox(&config),
            db,
            bucket,
        }
    }

    fn env(&self) -> [(&'static str, &'static str); 3] {
        [
            (ADMIN_ENV, "trust-auth-takes-any"),
            (KEY_ENV, "testing"),
            (SECRET_ENV, "testing"),
        ]
    }

    fn run(&self, args: &[&str]) -> crate::util::Run {
        self.ctx.run_env(args, &self.env())
    }

    /// Runs SQL on the cluster as its superuser; the first column of every row.
    fn sql(&self, query: &str) -> Vec<String> {
        crate::aws::rt().block_on(async {
            let (client, conn) =
                tokio_postgres::connect(crate::postgres::url(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
            tokio::spawn(conn);
            client
                .simple_query(query)
                .await
                .unwrap()
                .into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some(r.get(0).unwrap_or_default().to_string())
                    }
                    _ => None,
                })
                .collect()
        })
    }
}

#[test]
fn a_sandbox_is_created_planned_again_as_no_op_drift_is_shown_and_destroyed() {
    let sb = Sandbox::new();
    let apply = sb.run(&["apply", "--auto-approve"]);
    apply.ok();
    // The role and the database exist, owned as planned; the bucket too.
    assert_eq!(
        sb.sql(&format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{}'",
            sb.db
        )),
        std::slice::from_ref(&sb.db)
    );
    assert_eq!(
        sb.sql(&format!(
            "SELECT rolsuper::text || rolcreatedb::text || rolcanlogin::text FROM pg_roles WHERE rolname = '{}'",
            sb.db
        )),
        ["falsefalsetrue"]
    );
    assert!(
        crate::s3_state::keys(&sb.bucket).is_empty(),
        "the bucket exists and is empty"
    );
    // The password never shows.
    let state = fs::read_to_string(sb.ctx.state_dir().join("sandbox.state.json")).unwrap();
    let password = state
        .split("\"result\":{\"$sensitive\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .or_else(|| {
            state
                .split("\"result\": {\n")
                .nth(1)
                .and_then(|r| r.split('"').nth(3))
        })
        .expect("the generated password is in state")
        .to_string();
    assert!(password.len() >= 16);
    assert!(!apply.all().contains(&password));

    sb.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Drift: the role made a superuser and the database given away, out of band.
    sb.sql(&format!("ALTER ROLE \"{}\" SUPERUSER", sb.db));
    sb.sql(&format!("ALTER DATABASE \"{}\" OWNER TO postgres", sb.db));
    let plan = sb.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout.contains("superuser") && plan.stdout.contains("owner"),
        "{}",
        plan.stdout
    );
    sb.run(&["apply", "--auto-approve"]).ok();
    sb.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    // Values: the chart's values and the two Secrets, no secret inline.
    let dir = sb.ctx.dir().join("out");
    sb.run(&["values", "--out-dir", dir.to_str().unwrap()]).ok();
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "flyte-db-secret-sandbox.yaml",
            "flyte-storage-secret-sandbox.yaml",
            "flyte-values-sandbox.yaml"
        ]
    );
    let storage = dir.join("flyte-storage-secret-sandbox.yaml");
    assert_eq!(crate::util::mode(&storage) & 0o777, 0o600);
    let manifest = fs::read_to_string(&storage).unwrap();
    assert!(
        manifest.contains("kind: Secret") && manifest.contains("testing"),
        "{manifest}"
    );
    let values =
        fs::read_to_string(dir.join(files.iter().find(|f| f.contains("values")).unwrap())).unwrap();
    assert!(
        !values.contains(&password) && !values.contains("testing"),
        "{values}"
    );
    assert!(values.contains(crate::moto::url()), "{values}");

    sb.run(&["destroy", "--auto-approve"]).ok();
    assert!(
        sb.sql(&format!(
            "SELECT 1 FROM pg_database WHERE datname = '{}'",
            sb.db
        ))
        .is_empty()
    );
    assert!(
        sb.sql(&format!(
            "SELECT 1 FROM pg_roles WHERE rolname = '{}'",
            sb.db
        ))
        .is_empty()
    );
}

#[test]
fn a_wrong_admin_password_is_one_clear_error_and_writes_no_state() {
    let tls = crate::postgres_tls::cluster();
    let sb = Sandbox::new();
    let config = fs::read_to_string(sb.ctx.config_path())
        .unwrap()
        .replace(
            &format!("port: {}", port_of(crate::postgres::url())),
            &format!("port: {}", tls.port),
        )
        .replace("tls: disable", "tls: require");
    sb.ctx.write_config(&config);
    let run = sb.ctx.run_env(
        &["apply", "--auto-approve"],
        &[
            (ADMIN_ENV, "not-the-password"),
            (KEY_ENV, "testing"),
            (SECRET_ENV, "testing"),
        ],
    );
    run.expect_code(1);
    let text = run.all();
    assert!(
        text.contains("cannot log in to PostgreSQL at 127.0.0.1:")
            && !text.contains("not-the-password"),
        "{text}"
    );
    assert!(!sb.ctx.state_dir().join("sandbox.state.json").exists());

    // The right one, over TLS: works.
    sb.ctx
        .run_env(
            &["plan"],
            &[
                (ADMIN_ENV, tls.password.as_str()),
                (KEY_ENV, "testing"),
                (SECRET_ENV, "testing"),
            ],
        )
        .ok();

    // Unset: a located error naming the variable.
    let run = sb.ctx.run(&["plan"]);
    run.expect_code(1);
    assert!(
        run.all().contains(&format!(
            "`sandbox.postgres.admin_password_env` names `{ADMIN_ENV}`, which is not set"
        )),
        "{}",
        run.all()
    );
}

#[test]
fn a_foreign_database_of_the_same_name_is_refused_with_the_import_hint() {
    let sb = Sandbox::new();
    sb.sql(&format!("CREATE DATABASE \"{}\"", sb.db));
    let run = sb.run(&["apply", "--auto-approve"]);
    run.expect_code_not(0);
    assert!(
        run.all().contains("flyteinfra import") && run.all().contains(&sb.db),
        "{}",
        run.all()
    );
    // Nothing of it was touched: still the superuser's.
    assert_eq!(
        sb.sql(&format!(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{}'",
            sb.db
        )),
        ["postgres"]
    );
}

/// kill -9 at several points of a first apply: the next apply converges (the role and the
/// database an interrupted run made are adopted by their tokens, never "already exists"),
/// then a plan has nothing to do and a destroy leaves nothing.
#[test]
fn kill_9_mid_apply_converges() {
    for delay_ms in [150, 400, 800] {
        let sb = Sandbox::new();
        let mut child = sb.ctx.spawn(&["apply", "--auto-approve"], &sb.env());
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        sb.ctx.break_lease();
        let again = sb.run(&["apply", "--auto-approve"]);
        again.ok();
        assert!(!again.all().contains("already exists"), "{}", again.all());
        sb.run(&["plan", "--detailed-exitcode"]).expect_code(0);
        sb.run(&["destroy", "--auto-approve"]).ok();
        assert!(
            sb.sql(&format!(
                "SELECT 1 FROM pg_roles WHERE rolname = '{}'",
                sb.db
            ))
            .is_empty(),
            "after {delay_ms} ms"
        );
    }
}

/// A store without the public-access-block and default-encryption APIs (MinIO has no
/// public-access block): reading them answers `501 NotImplemented`, which is "not set",
/// so refresh, plans and destroy work; the capabilities keep those settings out.
#[test]
fn a_store_without_some_bucket_apis_works() {
    let store = flyteinfra_aws_proxy::Proxy::start(crate::moto::upstream());
    {
        let mut rules = store.rules();
        for op in [
            "GetPublicAccessBlock",
            "PutPublicAccessBlock",
            "DeletePublicAccessBlock",
            "GetBucketEncryption",
            "PutBucketEncryption",
            "DeleteBucketEncryption",
        ] {
            rules.unsupported.insert(op.to_string());
        }
    }
    let sb = Sandbox::on(store.url());
    sb.run(&["apply", "--auto-approve"]).ok();
    sb.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    let stats = store.stats();
    assert!(
        stats
            .0
            .get("GetPublicAccessBlock")
            .is_some_and(|s| s.calls > 0),
        "the reads did reach the store: {stats:?}"
    );
    for op in ["PutPublicAccessBlock", "PutBucketEncryption"] {
        assert!(!stats.0.contains_key(op), "{op} was sent: {stats:?}");
    }
    sb.run(&["destroy", "--auto-approve"]).ok();
}

//! A Flyte deployment on servers that already run (`style: sandbox`): Flyte's login role
//! and database on the PostgreSQL server, and its buckets on the S3-compatible store. No
//! network, cluster or identity is made: the cluster and both servers exist already.
//!
//! The store's buckets are `aws_s3_bucket`s like AWS's, with only what
//! `sandbox.object_store.capabilities` says the store supports: a setting it does not
//! support is left out of the resource (so no call is made for it) and named in a note
//! instead of failing at apply.

use flyteinfra_core::{Address, Expr, ResourceSpec};

use super::aws::tags;
use super::{Blueprint, addr, output, r, s};
use crate::config::{Config, ObjectStore, SandboxConfig};

/// `<deployment>-<purpose>`: a sandbox store is no global namespace (unlike S3 itself), so
/// the deployment's name is enough. Within S3's rules for any valid `name` (at most 39
/// characters, a letter first and a letter last) except a `name` starting with a prefix S3
/// reserves, which validation refuses unless the bucket's name is chosen in `storage`.
pub(crate) fn bucket_name(name: &str, purpose: &str) -> String {
    format!("{name}-{purpose}")
}

pub(super) fn expand(config: &Config, sandbox: &SandboxConfig) -> Blueprint {
    let name = config.name.as_str();
    let mut out = Vec::new();
    let mut notes = Vec::new();

    // Flyte's user and database. The password is generated as on the clouds.
    let dbc = &config.database;
    let password = addr("random_password", "db");
    out.push(ResourceSpec::managed(password.clone()).with("length", 32i64));
    // The privileges are set (to the only values the type accepts), not left to the
    // defaults, so a privilege granted outside flyteinfra shows as drift and is taken back.
    let role = addr("postgres_role", "flyte");
    out.push(
        ResourceSpec::managed(role.clone())
            .with("name", dbc.username.as_str())
            .with("password", r(&password, "result"))
            .with("login", true)
            .with("superuser", false)
            .with("createdb", false)
            .with("createrole", false),
    );
    // `database.deletion_protection` does not apply (the server has no such setting, as
    // the config documents). What keeps Flyte's data is the type's contents check: a
    // delete or replace of a database holding any table is refused before anything is
    // deleted; `storage.force_destroy` is about buckets and does not lift it.
    let pg = &sandbox.postgres;
    let database = addr("postgres_database", "flyte");
    out.push(
        ResourceSpec::managed(database)
            .with("name", dbc.name.as_str())
            .with("owner", r(&role, "name"))
            .with("encoding", "UTF8"),
    );

    // Buckets.
    let st = &config.storage;
    let store = &sandbox.object_store;
    let metadata = addr("aws_s3_bucket", "metadata");
    let meta_name = st
        .metadata_bucket
        .clone()
        .unwrap_or_else(|| bucket_name(name, "metadata"));
    out.push(bucket(
        &metadata, &meta_name, config, store, None, &mut notes,
    ));
    let data = if st.separate_data_bucket {
        let data = addr("aws_s3_bucket", "data");
        let data_name = st
            .data_bucket
            .clone()
            .unwrap_or_else(|| bucket_name(name, "data"));
        out.push(bucket(
            &data,
            &data_name,
            config,
            store,
            st.raw_data_expiry_days,
            &mut notes,
        ));
        data
    } else {
        metadata.clone()
    };

    let outputs = vec![
        // Flyte's pods reach the servers at their in-cluster addresses when given; signed
        // URLs (for clients outside the cluster) use the endpoint flyteinfra used.
        output(
            "db_host",
            s(pg.cluster_host.as_deref().unwrap_or(&pg.host)),
            false,
        ),
        output("db_port", Expr::from(i64::from(pg.port)), false),
        output("db_name", s(&dbc.name), false),
        output("db_username", s(&dbc.username), false),
        output("db_password", r(&password, "result"), true),
        output("metadata_bucket", r(&metadata, "id"), false),
        output("data_bucket", r(&data, "id"), false),
        output(
            "s3_endpoint",
            s(store.cluster_endpoint.as_deref().unwrap_or(&store.endpoint)),
            false,
        ),
        output("s3_public_endpoint", s(&store.endpoint), false),
        output("s3_region", s(&store.region), false),
    ];
    Blueprint {
        resources: out,
        outputs,
        notes,
    }
}

/// Bucket `a` named `bucket` on the store, with what the store supports of AWS's settings
/// (and `expiry`, the data bucket's); a note in `notes` for each setting left out.
fn bucket(
    a: &Address,
    bucket: &str,
    config: &Config,
    store: &ObjectStore,
    expiry: Option<u32>,
    notes: &mut Vec<String>,
) -> ResourceSpec {
    let caps = &store.capabilities;
    let mut spec = ResourceSpec::managed(a.clone())
        .with("bucket", bucket)
        .with("region", store.region.as_str())
        .with("tags", tags(&config.name, &[]))
        .force_destroy(config.storage.force_destroy);
    let mut left_out = |what: String, capability: &str| {
        notes.push(format!(
            "`{a}`: {what} is left out: `sandbox.object_store.capabilities.{capability}` is false"
        ));
    };
    if caps.versioning {
        spec = spec.with("versioning", true);
    } else {
        left_out("object versioning".into(), "versioning");
    }
    if caps.server_side_encryption {
        spec = spec.with("encryption", "AES256");
    } else {
        left_out(
            "default encryption (SSE-S3, `AES256`)".into(),
            "server_side_encryption",
        );
    }
    if caps.public_access_block {
        spec = spec.with("block_public_access", true);
    } else {
        left_out("the public-access block".into(), "public_access_block");
    }
    if let Some(days) = expiry {
        if caps.lifecycle {
            spec = spec.with("expire_after_days", i64::from(days));
        } else {
            left_out(
                format!("the expiry of objects after {days} days (`storage.raw_data_expiry_days`)"),
                "lifecycle",
            );
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use flyteinfra_core::{Graph, Value};

    use super::*;
    use crate::blueprint::{BlueprintError, Facts, expand as expand_cloud};
    use crate::config::Cloud;

    /// A minimal sandbox (the servers' required keys only) with `extra` appended, and
    /// `store` lines added under `object_store`.
    fn text(store: &str, extra: &str) -> String {
        let store: String = store.lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "name: demo\nstyle: sandbox\nsandbox:\n  postgres:\n    host: db.local\n    \
             admin_password_env: PG_PASSWORD\n  object_store:\n    endpoint: \
             http://minio.local:9000\n    access_key_env: S3_ACCESS_KEY\n    \
             secret_key_env: S3_SECRET_KEY\n{store}{extra}"
        )
    }

    fn parse(text: &str) -> Config {
        Config::parse(text, Path::new("t.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn config(store: &str, extra: &str) -> Config {
        parse(&text(store, extra))
    }

    /// Every capability at `on`.
    fn capabilities(on: bool) -> String {
        format!(
            "capabilities:\n  versioning: {on}\n  server_side_encryption: {on}\n  \
             public_access_block: {on}\n  lifecycle: {on}\n"
        )
    }

    fn expanded(c: &Config) -> Blueprint {
        expand_cloud(c, Cloud::Sandbox, &Facts::offline()).unwrap()
    }

    fn get<'a>(bp: &'a Blueprint, address: &str) -> &'a ResourceSpec {
        bp.resources
            .iter()
            .find(|r| r.address.to_string() == address)
            .unwrap_or_else(|| panic!("no {address}"))
    }

    fn addresses(bp: &Blueprint) -> BTreeSet<String> {
        bp.resources.iter().map(|r| r.address.to_string()).collect()
    }

    fn refers(e: &Expr, address: &str, attribute: &str) -> bool {
        matches!(e, Expr::Ref(x) if x.address.to_string() == address && x.attribute == attribute)
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    /// The attribute names of `spec`.
    fn keys(spec: &ResourceSpec) -> BTreeSet<String> {
        spec.attributes.keys().cloned().collect()
    }

    #[test]
    fn a_minimal_sandbox_makes_the_role_the_database_and_two_buckets() {
        let bp = expanded(&config("", ""));
        assert_eq!(
            addresses(&bp),
            set(&[
                "random_password.db",
                "postgres_role.flyte",
                "postgres_database.flyte",
                "aws_s3_bucket.metadata",
                "aws_s3_bucket.data",
            ])
        );
        assert_eq!(bp.resources.len(), 5, "duplicate addresses");
        // A valid graph, ordered by the references: password, role, database.
        let graph = Graph::build(
            bp.resources
                .iter()
                .map(|r| (r.address.clone(), r.dependencies())),
        )
        .unwrap();
        assert_eq!(graph.len(), 5);
        let deps = |a: &str| -> Vec<String> {
            get(&bp, a)
                .dependencies()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(deps("postgres_role.flyte"), ["random_password.db"]);
        assert_eq!(deps("postgres_database.flyte"), ["postgres_role.flyte"]);
        assert!(deps("aws_s3_bucket.metadata").is_empty());
        assert!(deps("aws_s3_bucket.data").is_empty());

        assert_eq!(
            get(&bp, "random_password.db").attributes["length"],
            Expr::from(32i64)
        );
        let role = &get(&bp, "postgres_role.flyte").attributes;
        assert_eq!(role["name"], s("flyte"));
        assert!(refers(&role["password"], "random_password.db", "result"));
        // Set, so privileges granted outside flyteinfra show as drift.
        for (field, value) in [
            ("login", true),
            ("superuser", false),
            ("createdb", false),
            ("createrole", false),
        ] {
            assert_eq!(role[field], Expr::from(value), "{field}");
        }
        assert_eq!(role.len(), 6);
        let db = get(&bp, "postgres_database.flyte");
        assert_eq!(db.attributes["name"], s("flyte"));
        assert!(refers(
            &db.attributes["owner"],
            "postgres_role.flyte",
            "name"
        ));
        assert_eq!(db.attributes["encoding"], s("UTF8"));
        assert_eq!(db.attributes.len(), 3);
        // A database holding tables is never dropped on the way.
        assert!(!db.force_destroy);

        // MinIO's defaults: versioning, no SSE-S3, no public-access block; no expiry asked.
        for (purpose, name) in [("metadata", "demo-metadata"), ("data", "demo-data")] {
            let b = get(&bp, &format!("aws_s3_bucket.{purpose}"));
            assert_eq!(b.attributes["bucket"], s(name));
            assert_eq!(b.attributes["region"], s("us-east-1"));
            assert_eq!(b.attributes["versioning"], Expr::from(true));
            assert_eq!(b.attributes["tags"], tags("demo", &[]));
            assert_eq!(keys(b), set(&["bucket", "region", "tags", "versioning"]));
            assert!(!b.force_destroy);
        }
        assert_eq!(
            bp.notes,
            [
                "`aws_s3_bucket.metadata`: default encryption (SSE-S3, `AES256`) is left out: \
                 `sandbox.object_store.capabilities.server_side_encryption` is false",
                "`aws_s3_bucket.metadata`: the public-access block is left out: \
                 `sandbox.object_store.capabilities.public_access_block` is false",
                "`aws_s3_bucket.data`: default encryption (SSE-S3, `AES256`) is left out: \
                 `sandbox.object_store.capabilities.server_side_encryption` is false",
                "`aws_s3_bucket.data`: the public-access block is left out: \
                 `sandbox.object_store.capabilities.public_access_block` is false",
            ]
        );
    }

    #[test]
    fn a_store_with_every_capability_gets_awss_settings_and_no_notes() {
        let bp = expanded(&config(
            &format!("region: eu-west-1\n{}", capabilities(true)),
            "database:\n  name: flyte_db\n  username: flyte_user\nstorage:\n  \
             raw_data_expiry_days: 30\n  force_destroy: true\n",
        ));
        assert!(bp.notes.is_empty(), "{:?}", bp.notes);
        for purpose in ["metadata", "data"] {
            let b = get(&bp, &format!("aws_s3_bucket.{purpose}"));
            let a = &b.attributes;
            assert_eq!(a["region"], s("eu-west-1"));
            assert_eq!(a["versioning"], Expr::from(true));
            assert_eq!(a["encryption"], s("AES256"));
            assert_eq!(a["block_public_access"], Expr::from(true));
            assert!(b.force_destroy);
        }
        // Raw data expires; metadata never does (as on AWS).
        assert_eq!(
            get(&bp, "aws_s3_bucket.data").attributes["expire_after_days"],
            Expr::from(30i64)
        );
        assert!(
            !get(&bp, "aws_s3_bucket.metadata")
                .attributes
                .contains_key("expire_after_days")
        );
        // The database's names are `database`'s.
        assert_eq!(
            get(&bp, "postgres_role.flyte").attributes["name"],
            s("flyte_user")
        );
        assert_eq!(
            get(&bp, "postgres_database.flyte").attributes["name"],
            s("flyte_db")
        );
    }

    #[test]
    fn capabilities_switched_off_leave_their_inputs_out_with_one_note_each() {
        let bp = expanded(&config(
            &capabilities(false),
            "storage:\n  raw_data_expiry_days: 14\n",
        ));
        for purpose in ["metadata", "data"] {
            let b = get(&bp, &format!("aws_s3_bucket.{purpose}"));
            assert_eq!(keys(b), set(&["bucket", "region", "tags"]), "{purpose}");
        }
        let note = |bucket: &str, what: &str, capability: &str| {
            format!(
                "`aws_s3_bucket.{bucket}`: {what} is left out: \
                 `sandbox.object_store.capabilities.{capability}` is false"
            )
        };
        let mut wanted = Vec::new();
        for bucket in ["metadata", "data"] {
            wanted.extend([
                note(bucket, "object versioning", "versioning"),
                note(
                    bucket,
                    "default encryption (SSE-S3, `AES256`)",
                    "server_side_encryption",
                ),
                note(bucket, "the public-access block", "public_access_block"),
            ]);
        }
        wanted.push(note(
            "data",
            "the expiry of objects after 14 days (`storage.raw_data_expiry_days`)",
            "lifecycle",
        ));
        assert_eq!(bp.notes, wanted);
        // Without an expiry asked for, lifecycle rules are not missed.
        let bp = expanded(&config(&capabilities(false), ""));
        assert_eq!(bp.notes.len(), 6);
        assert!(bp.notes.iter().all(|n| !n.contains("lifecycle")));
    }

    #[test]
    fn one_bucket_without_a_separate_data_bucket() {
        let bp = expanded(&config(
            "",
            "storage:\n  separate_data_bucket: false\n  metadata_bucket: flyte.sandbox\n",
        ));
        let buckets: Vec<&ResourceSpec> = bp
            .resources
            .iter()
            .filter(|r| r.address.type_name() == "aws_s3_bucket")
            .collect();
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].address.to_string(), "aws_s3_bucket.metadata");
        assert_eq!(buckets[0].attributes["bucket"], s("flyte.sandbox"));
        let out: BTreeMap<&str, &Expr> = bp
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), &o.value))
            .collect();
        assert!(refers(
            out["metadata_bucket"],
            "aws_s3_bucket.metadata",
            "id"
        ));
        assert!(refers(out["data_bucket"], "aws_s3_bucket.metadata", "id"));
        // Notes for the one bucket only.
        assert_eq!(bp.notes.len(), 2);
        assert!(
            bp.notes
                .iter()
                .all(|n| n.starts_with("`aws_s3_bucket.metadata`:"))
        );
    }

    #[test]
    fn chosen_bucket_names_replace_the_derived_ones() {
        let bp = expanded(&config(
            "",
            "storage:\n  metadata_bucket: flyte.sandbox.metadata\n  data_bucket: flyte-raw\n",
        ));
        assert_eq!(
            get(&bp, "aws_s3_bucket.metadata").attributes["bucket"],
            s("flyte.sandbox.metadata")
        );
        assert_eq!(
            get(&bp, "aws_s3_bucket.data").attributes["bucket"],
            s("flyte-raw")
        );
        // Derived: the deployment's name and the purpose, no account or region.
        assert_eq!(bucket_name("flyte-demo", "metadata"), "flyte-demo-metadata");
        assert_eq!(bucket_name("flyte-demo", "data"), "flyte-demo-data");
    }

    #[test]
    fn outputs_describe_the_servers_and_what_was_made_on_them() {
        let bp = expanded(&config(
            "region: minio-local\n",
            "database:\n  name: fdb\n  username: fuser\n",
        ));
        let names: Vec<&str> = bp.outputs.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "db_host",
                "db_port",
                "db_name",
                "db_username",
                "db_password",
                "metadata_bucket",
                "data_bucket",
                "s3_endpoint",
                "s3_public_endpoint",
                "s3_region",
            ]
        );
        let out: BTreeMap<&str, &Expr> = bp
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), &o.value))
            .collect();
        assert_eq!(out["db_host"], &s("db.local"));
        assert_eq!(out["db_port"], &Expr::Value(Value::Int(5432)));
        assert_eq!(out["db_name"], &s("fdb"));
        assert_eq!(out["db_username"], &s("fuser"));
        assert!(refers(out["db_password"], "random_password.db", "result"));
        assert!(refers(
            out["metadata_bucket"],
            "aws_s3_bucket.metadata",
            "id"
        ));
        assert!(refers(out["data_bucket"], "aws_s3_bucket.data", "id"));
        assert_eq!(out["s3_endpoint"], &s("http://minio.local:9000"));
        assert_eq!(out["s3_region"], &s("minio-local"));
        assert!(
            bp.outputs
                .iter()
                .all(|o| o.sensitive == (o.name == "db_password"))
        );
        // Another port is that number.
        let c = parse(&text("", "").replace(
            "    host: db.local\n",
            "    host: db.local\n    port: 30001\n",
        ));
        let port = expanded(&c)
            .outputs
            .into_iter()
            .find(|o| o.name == "db_port")
            .unwrap();
        assert_eq!(port.value, Expr::Value(Value::Int(30001)));

        // In-cluster addresses, when given, are what Flyte's pods get; signed URLs keep
        // the endpoint flyteinfra used.
        let c = parse(
            &text("", "")
                .replace(
                    "    host: db.local\n",
                    "    host: db.local\n    cluster_host: pg.db.svc.cluster.local\n",
                )
                .replace(
                    "    endpoint: http://minio.local:9000\n",
                    "    endpoint: http://minio.local:9000\n    cluster_endpoint: http://minio.minio.svc:9000\n",
                ),
        );
        let bp = expanded(&c);
        let out: BTreeMap<&str, &Expr> = bp
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), &o.value))
            .collect();
        assert_eq!(out["db_host"], &s("pg.db.svc.cluster.local"));
        assert_eq!(out["s3_endpoint"], &s("http://minio.minio.svc:9000"));
        assert_eq!(out["s3_public_endpoint"], &s("http://minio.local:9000"));
    }

    #[test]
    fn the_sandbox_needs_its_section() {
        let aws = parse("name: demo\ncloud: aws\naws:\n  region: us-east-1\n");
        let err = expand_cloud(&aws, Cloud::Sandbox, &Facts::offline()).unwrap_err();
        assert!(matches!(
            err,
            BlueprintError::MissingSection(Cloud::Sandbox)
        ));
        assert_eq!(err.to_string(), "the config has no `sandbox:` section");
        // The clouds leave nothing out.
        let bp = expand_cloud(&aws, Cloud::Aws, &Facts::offline()).unwrap();
        assert!(bp.notes.is_empty());
    }
}

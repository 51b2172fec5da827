//! Test fixtures: a small registry of fake resource types and state builders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::{
    Address, Attributes, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, ErrorKind,
    Field, FindRequest, FindResponse, Mode, ProviderError, ReadRequest, ReadResponse, Registry,
    ResourceSpec, ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use flyteinfra_state::{ResourceState, StateDoc, Status};

use crate::{Plan, PlanError, PlanInput, plan};

/// The secret planted in sensitive fields; no rendering may contain it.
pub const SECRET: &str = "s3cr3t-PLANTED";
/// The old secret (before a password change).
pub const OLD_SECRET: &str = "old-s3cr3t-PLANTED";

struct Fake(Schema);

#[async_trait]
impl ResourceType for Fake {
    fn schema(&self) -> &Schema {
        &self.0
    }
    async fn read(&self, _: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Err(unused())
    }
    async fn find(&self, _: FindRequest) -> Result<FindResponse, ProviderError> {
        Err(unused())
    }
    async fn create(&self, _: CreateRequest) -> Result<CreateResponse, ProviderError> {
        Err(unused())
    }
    async fn update(&self, _: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        Err(unused())
    }
    async fn delete(&self, _: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        Err(unused())
    }
    /// The database takes a final snapshot named after its id and `created`.
    fn final_snapshot(&self, id: &str, attributes: &Attributes) -> Option<String> {
        let Some(Value::Str(created)) = attributes.get("created") else {
            return None;
        };
        (self.0.type_name == "aws_db_instance").then(|| format!("{id}-final-{created}"))
    }
}

fn unused() -> ProviderError {
    ProviderError::new(ErrorKind::Permanent, "plans never call providers")
}

fn schema(type_name: &'static str, holds_data: bool, fields: Vec<Field>) -> Schema {
    Schema {
        type_name,
        doc: "test type",
        fields,
        holds_data,
        expected_create: Duration::from_secs(1),
        deletion_protection: None,
    }
}

/// `aws_vpc` (read as existing), `aws_s3_bucket` (holds data), `aws_db_instance` (holds
/// data; force-new, sensitive, server-managed and computed fields), `aws_iam_role`
/// (refers to others), `k8s_secret` (a non-sensitive field that may copy a secret).
pub fn registry() -> Registry {
    let mut r = Registry::new();
    let types = [
        schema(
            "aws_vpc",
            false,
            vec![
                Field::input("cidr_block", "CIDR").required().force_new(),
                Field::computed("id", "VPC id"),
            ],
        ),
        schema(
            "aws_s3_bucket",
            true,
            vec![
                Field::input("bucket", "name").required().force_new(),
                Field::input("tags", "tags"),
                Field::computed("arn", "ARN"),
            ],
        ),
        schema(
            "aws_db_instance",
            true,
            vec![
                Field::input("identifier", "name").required().force_new(),
                Field::input("engine", "engine").required().force_new(),
                Field::input("engine_version", "major version").server_managed(),
                Field::input("instance_class", "size"),
                Field::input("master_password", "password").sensitive(),
                Field::input("vpc_id", "VPC").force_new(),
                Field::input("deletion_protection", "refuse deletes"),
                Field::computed("endpoint", "host:port"),
                Field::computed("arn", "ARN"),
            ],
        ),
        schema(
            "aws_iam_role",
            false,
            vec![
                Field::input("name", "name").required().force_new(),
                Field::input("policy", "policy document"),
                Field::computed("arn", "ARN"),
            ],
        ),
        schema(
            "k8s_secret",
            false,
            vec![
                Field::input("name", "name").required(),
                Field::input("data", "data"),
            ],
        ),
    ];
    for mut s in types {
        if s.type_name == "aws_db_instance" {
            s.deletion_protection = Some("deletion_protection");
        }
        r.register(Arc::new(Fake(s)));
    }
    r
}

/// Parses an address.
pub fn a(s: &str) -> Address {
    s.parse().unwrap()
}

/// Attributes from pairs.
pub fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A ready managed resource in state.
pub fn ready(inputs: Attributes, computed: Attributes, deps: &[&str]) -> ResourceState {
    let mut attributes = inputs.clone();
    attributes.extend(computed);
    ResourceState {
        mode: Mode::Managed,
        id: "id-1".to_string(),
        status: Status::Ready,
        inputs,
        attributes,
        dependencies: deps.iter().map(|d| a(d)).collect(),
    }
}

/// A state with a fixed lineage and these resources.
pub fn state(resources: Vec<(&str, ResourceState)>) -> StateDoc {
    let mut s = StateDoc::new("demo", "aws");
    s.lineage = "00000000-0000-4000-8000-000000000000".to_string();
    s.serial = 7;
    s.resources = resources.into_iter().map(|(k, v)| (a(k), v)).collect();
    s
}

/// A plan builder with defaults (no refresh, no targets, not a destroy).
pub struct Fixture {
    pub desired: Vec<ResourceSpec>,
    pub state: StateDoc,
    pub actual: BTreeMap<Address, Option<Attributes>>,
    pub targets: Vec<Address>,
    pub destroy: bool,
    pub replace: Vec<Address>,
    pub refresh_only: bool,
    pub disable_protection: bool,
    pub registry: Registry,
}

impl Fixture {
    pub fn new(desired: Vec<ResourceSpec>, state: StateDoc) -> Self {
        Fixture {
            desired,
            state,
            actual: BTreeMap::new(),
            targets: Vec::new(),
            destroy: false,
            replace: Vec::new(),
            refresh_only: false,
            disable_protection: false,
            registry: registry(),
        }
    }

    pub fn actual(mut self, addr: &str, attrs: Option<Attributes>) -> Self {
        self.actual.insert(a(addr), attrs);
        self
    }

    pub fn targets(mut self, targets: &[&str]) -> Self {
        self.targets = targets.iter().map(|t| a(t)).collect();
        self
    }

    pub fn replace(mut self, address: &str) -> Self {
        self.replace.push(a(address));
        self
    }

    pub fn refresh_only(mut self) -> Self {
        self.refresh_only = true;
        self
    }

    pub fn destroy(mut self) -> Self {
        self.destroy = true;
        self
    }

    pub fn disable_protection(mut self) -> Self {
        self.disable_protection = true;
        self
    }

    pub fn try_plan(&self) -> Result<Plan, PlanError> {
        plan(PlanInput {
            desired: &self.desired,
            registry: &self.registry,
            state: &self.state,
            actual: &self.actual,
            targets: &self.targets,
            destroy: self.destroy,
            replace: &self.replace,
            refresh_only: self.refresh_only,
            disable_protection: self.disable_protection,
        })
    }

    pub fn plan(&self) -> Plan {
        self.try_plan().unwrap()
    }
}

/// The desired bucket `aws_s3_bucket.data`.
pub fn bucket() -> ResourceSpec {
    ResourceSpec::managed(a("aws_s3_bucket.data")).with("bucket", "demo-data")
}

/// The desired database `aws_db_instance.main`, in the existing VPC.
pub fn db(engine_version: &str, password: &str) -> ResourceSpec {
    ResourceSpec::managed(a("aws_db_instance.main"))
        .with("identifier", "demo")
        .with("engine", "postgres")
        .with("engine_version", engine_version)
        .with("instance_class", "db.t4g.small")
        .with("master_password", password)
}

/// The state of `aws_db_instance.main` as last applied with `engine_version`.
pub fn db_state(engine_version: &str, password: &str) -> ResourceState {
    ready(
        attrs([
            ("identifier", "demo".into()),
            ("engine", "postgres".into()),
            ("engine_version", engine_version.into()),
            ("instance_class", "db.t4g.small".into()),
            ("master_password", password.into()),
        ]),
        attrs([
            ("endpoint", "demo.rds:5432".into()),
            ("arn", "arn:aws:rds:demo".into()),
        ]),
        &[],
    )
}

/// The fixture most snapshots use: one of each action.
///
/// - `aws_vpc.shared`: existing, read;
/// - `aws_s3_bucket.data`: created;
/// - `aws_iam_role.app`: created, its policy refers to the new bucket's ARN (unknown);
/// - `aws_db_instance.main`: replaced (engine changed), password changed (sensitive);
/// - `k8s_secret.db`: updated, copies the db password (sensitive by derivation);
/// - `aws_s3_bucket.old`: removed from config, destroyed (data loss).
pub fn mixed() -> Fixture {
    let vpc = ResourceSpec::existing(a("aws_vpc.shared"), "vpc-0abc");
    let role = ResourceSpec::managed(a("aws_iam_role.app"))
        .with("name", "demo-app")
        .with(
            "policy",
            flyteinfra_core::Expr::reference(&a("aws_s3_bucket.data"), "arn"),
        );
    let db = db("16", SECRET).with("engine", "aurora-postgresql").with(
        "vpc_id",
        flyteinfra_core::Expr::reference(&a("aws_vpc.shared"), "id"),
    );
    let secret = ResourceSpec::managed(a("k8s_secret.db"))
        .with("name", "db")
        .with(
            "data",
            flyteinfra_core::Expr::reference(&a("aws_db_instance.main"), "master_password"),
        );
    let mut db_state = db_state("16", OLD_SECRET);
    db_state.inputs.insert("vpc_id".into(), "vpc-0abc".into());
    db_state
        .attributes
        .insert("vpc_id".into(), "vpc-0abc".into());
    let st = state(vec![
        ("aws_db_instance.main", db_state),
        (
            "k8s_secret.db",
            ready(
                attrs([("name", "db".into()), ("data", OLD_SECRET.into())]),
                attrs([]),
                &["aws_db_instance.main"],
            ),
        ),
        (
            "aws_s3_bucket.old",
            ready(
                attrs([("bucket", "demo-old".into())]),
                attrs([("arn", "arn:aws:s3:::demo-old".into())]),
                &[],
            ),
        ),
        (
            "aws_vpc.shared",
            ResourceState {
                mode: Mode::Existing,
                id: "vpc-0abc".into(),
                status: Status::Ready,
                inputs: attrs([]),
                attributes: attrs([
                    ("cidr_block", "10.0.0.0/16".into()),
                    ("id", "vpc-0abc".into()),
                ]),
                dependencies: vec![],
            },
        ),
    ]);
    Fixture::new(vec![vpc, bucket(), role, db, secret], st)
}

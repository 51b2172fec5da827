//! Drift, adoption and import against moto.
//!
//! Changes made behind flyteinfra's back are found by the refresh, and the plan is exactly
//! their correction (every `# <address> ...` headline and every field line is asserted);
//! `apply` puts them back and a re-plan is a no-op. Changes AWS makes on its own (RDS minor
//! upgrades, `aws:` tags) never show. Imported objects and `existing:` ones are used as
//! they are: imports plan only their real differences, `existing:` ones are never changed
//! or destroyed.
//!
//! Out-of-band changes go through the SDK clients of `AwsClients`. The test crate can name
//! only `aws-sdk-ec2`'s types, so inputs of other services are cloned from what the SDK
//! returned and edited (their fields are public); the two calls whose input type appears in
//! no output (S3 `PutBucketVersioning`, EKS `CreateCluster`) go through the provider's own
//! resource types, used here as a plain SDK wrapper that never sees the state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use flyteinfra_core::{
    Address, Attributes, Completion, CreateRequest, Progress, ResourceType, UpdateRequest, Value,
};
use flyteinfra_provider_aws::AwsClients;
use tokio::runtime::Runtime;

use crate::aws::{APPLY, clients, config, listing, rt, unique_name};
use crate::util::{Run, TestContext, summary_line};

const ACCOUNT: &str = "123456789012";

/// One resource of a text plan: its headline (`will be updated in-place`), its reason lines
/// and its field lines, whitespace-normalized (`~ versioning = false -> true`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    headline: String,
    reasons: Vec<String>,
    fields: Vec<String>,
}

/// The resources of a text plan, by address.
fn parse_plan(text: &str) -> BTreeMap<String, Entry> {
    let mut out: BTreeMap<String, Entry> = BTreeMap::new();
    let mut current: Option<String> = None;
    // A JSON document being shown (`name = jsonencode(` … `)`): its field and lines.
    let mut doc: Option<(String, Vec<String>)> = None;
    for line in text.lines() {
        if let Some((name, lines)) = doc.as_mut() {
            if let Some(tail) = line.trim().strip_prefix(')') {
                let value = document_value(lines) + tail;
                let addr = current.as_ref().expect("a field follows a headline");
                out.get_mut(addr)
                    .unwrap()
                    .fields
                    .push(format!("{name} = {value}"));
                doc = None;
            } else {
                lines.push(line.to_string());
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("  # ") {
            if rest.starts_with('(') {
                let addr = current.as_ref().expect("a reason follows a headline");
                out.get_mut(addr).unwrap().reasons.push(rest.to_string());
            } else {
                let (addr, headline) = rest.split_once(' ').expect("`# <address> <headline>`");
                let entry = Entry {
                    headline: headline.to_string(),
                    reasons: Vec::new(),
                    fields: Vec::new(),
                };
                assert!(
                    out.insert(addr.to_string(), entry).is_none(),
                    "{addr} twice:\n{text}"
                );
                current = Some(addr.to_string());
            }
        } else if let Some(field) = line.strip_prefix("      ") {
            let addr = current.as_ref().expect("a field follows a headline");
            let (name, value) = field.split_once(" = ").expect("`<sym> <name> = <value>`");
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            let value = value.trim_start();
            if value == "jsonencode(" {
                doc = Some((name, Vec::new()));
                continue;
            }
            out.get_mut(addr)
                .unwrap()
                .fields
                .push(format!("{name} = {value}"));
        }
    }
    out
}

/// A document the plan shows line by line (`+`/`-`/unchanged), as the compact JSON
/// strings before and after, the way the plan showed them before it indented documents:
/// `"before" -> "after"`, or just `"after"` when it is all new.
fn document_value(lines: &[String]) -> String {
    let (mut before, mut after) = (String::new(), String::new());
    for line in lines {
        // `<10 spaces><mark> <line of the indented document>`.
        let body = line.get(10..).expect("a document line");
        let (mark, text) = body.split_at(1);
        let text = text.strip_prefix(' ').unwrap_or(text);
        if mark != "+" {
            before.push_str(text);
        }
        if mark != "-" {
            after.push_str(text);
        }
    }
    let compact = |t: &str| {
        let v: serde_json::Value = serde_json::from_str(t).expect("a JSON document");
        q(&v.to_string())
    };
    match (before.is_empty(), after.is_empty()) {
        (true, _) => compact(&after),
        (_, true) => compact(&before),
        _ => format!("{} -> {}", compact(&before), compact(&after)),
    }
}

/// An update in place of `addr` caused by drift, changing exactly `fields`.
fn drift(addr: &str, fields: &[&str]) -> (String, Entry) {
    (
        addr.to_string(),
        Entry {
            headline: "will be updated in-place".into(),
            reasons: vec!["(changed outside flyteinfra)".into()],
            fields: fields.iter().map(|f| f.to_string()).collect(),
        },
    )
}

/// An update in place of `addr` that is not drift (the config asks for something else).
fn update(addr: &str, fields: &[&str]) -> (String, Entry) {
    let (a, mut e) = drift(addr, fields);
    e.reasons.clear();
    (a, e)
}

/// A JSON string as the plan prints it.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The blueprint's tags on every object of deployment `name`, as the plan prints them.
fn our_tags(name: &str) -> String {
    format!(r#"{{"Name":"{name}","flyteinfra/deployment":"{name}"}}"#)
}

/// One deployment in its own temp dir. Destroyed by [`Deployment::destroy`], or on drop
/// when the test failed, so a failure leaves no OIDC provider behind for other tests.
struct Deployment {
    ctx: TestContext,
    name: String,
    destroyed: bool,
}

impl Deployment {
    fn new(name: &str, config: &str) -> Deployment {
        Deployment {
            ctx: TestContext::aws(config),
            name: name.to_string(),
            destroyed: false,
        }
    }

    /// A new deployment of [`config`], applied, and what the account held of it before.
    fn applied(rt: &Runtime, c: &AwsClients) -> (Deployment, BTreeSet<String>) {
        let name = unique_name();
        let before = rt.block_on(listing(c, &name));
        let d = Deployment::new(&name, &config(&name));
        d.ctx.apply();
        d.no_changes();
        (d, before)
    }

    fn bucket(&self, purpose: &str) -> String {
        format!("{}-{ACCOUNT}-us-east-1-{purpose}", self.name)
    }

    fn plan(&self) -> Run {
        self.ctx.run(&["plan", "--detailed-exitcode"])
    }

    /// `plan --detailed-exitcode` exits 0.
    #[track_caller]
    fn no_changes(&self) {
        let r = self.plan();
        r.expect_code(0);
        assert!(r.stdout.contains("No changes."), "{}", r.stdout);
    }

    /// `plan --detailed-exitcode` exits 2 and shows exactly `want` and `summary`.
    #[track_caller]
    fn expect_plan(&self, want: &[(String, Entry)], summary: &str) {
        let r = self.plan();
        r.expect_code(2);
        let want: BTreeMap<String, Entry> = want.iter().cloned().collect();
        assert_eq!(parse_plan(&r.stdout), want, "the plan:\n{}", r.stdout);
        assert_eq!(summary_line(&r.stdout), Some(summary), "{}", r.stdout);
    }

    /// `apply` succeeds and the next plan is a no-op.
    #[track_caller]
    fn converge(&self) {
        self.ctx.apply();
        self.no_changes();
    }

    #[track_caller]
    fn destroy(mut self) {
        self.ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
        self.destroyed = true;
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        if !self.destroyed && self.ctx.state_path().exists() {
            let _ = self.ctx.run(&["destroy", "--auto-approve"]);
        }
    }
}

/// The account holds nothing of the deployment after its destroy: what was there before,
/// less at most an OIDC provider another test left behind (moto gives every cluster the
/// same issuer, so the apply adopted it and the destroy deleted it).
#[track_caller]
fn assert_clean(before: &BTreeSet<String>, after: &BTreeSet<String>) {
    let left: Vec<&String> = after.difference(before).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let gone: Vec<&String> = before.difference(after).collect();
    assert!(
        gone.iter().all(|g| g.starts_with("oidc:")),
        "deleted: {gone:?}"
    );
}

/// The provider's resource type `type_name`, over `c` (see the module doc).
fn provider(c: &AwsClients, type_name: &str) -> Arc<dyn ResourceType> {
    flyteinfra_provider_aws::resource_types(c)
        .into_iter()
        .find(|t| t.schema().type_name == type_name)
        .unwrap()
}

fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn strs(v: &[String]) -> Value {
    Value::List(v.iter().cloned().map(Value::Str).collect())
}

/// S3 `PutBucketVersioning` with `Suspended`.
async fn suspend_versioning(c: &AwsClients, bucket: &str) {
    let addr = Address::new("aws_s3_bucket", "oob");
    let inputs = attrs([
        ("bucket", Value::from(bucket)),
        ("region", Value::from("us-east-1")),
        ("versioning", Value::Bool(false)),
    ]);
    provider(c, "aws_s3_bucket")
        .update(UpdateRequest {
            address: addr.clone(),
            id: bucket.to_string(),
            prior: Attributes::new(),
            inputs,
            changed: vec!["versioning".into()],
            progress: Progress::none(addr),
        })
        .await
        .unwrap();
    let v = c.s3.get_bucket_versioning().bucket(bucket).send().await;
    assert_eq!(v.unwrap().status().map(|s| s.as_str()), Some("Suspended"));
}

async fn versioning(c: &AwsClients, bucket: &str) -> Option<String> {
    let v = c.s3.get_bucket_versioning().bucket(bucket).send().await;
    v.unwrap().status().map(|s| s.as_str().to_string())
}

#[test]
fn aws_bucket_drift_is_planned_exactly_and_corrected() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let (d, before) = Deployment::applied(&rt, &c);
    let (meta, data) = (d.bucket("metadata"), d.bucket("data"));

    // Versioning suspended on the data bucket.
    rt.block_on(suspend_versioning(&c, &data));
    d.expect_plan(
        &[drift(
            "aws_s3_bucket.data",
            &["~ versioning = false -> true"],
        )],
        "Plan: 0 to add, 1 to change, 0 to destroy.",
    );
    d.converge();
    assert_eq!(
        rt.block_on(versioning(&c, &data)).as_deref(),
        Some("Enabled")
    );

    // Default encryption deleted on the metadata bucket, the public access block on the
    // data bucket. (Real S3 falls back to SSE-S3 and would report `AES256`; moto reports
    // no encryption configuration at all.)
    rt.block_on(async {
        c.s3.delete_bucket_encryption()
            .bucket(&meta)
            .send()
            .await
            .unwrap();
        c.s3.delete_public_access_block()
            .bucket(&data)
            .send()
            .await
            .unwrap();
    });
    d.expect_plan(
        &[
            drift("aws_s3_bucket.metadata", &[r#"+ encryption = "AES256""#]),
            drift(
                "aws_s3_bucket.data",
                &["~ block_public_access = false -> true"],
            ),
        ],
        "Plan: 0 to add, 2 to change, 0 to destroy.",
    );
    d.converge();
    rt.block_on(async {
        let enc = c.s3.get_bucket_encryption().bucket(&meta).send().await;
        let enc = enc.unwrap();
        let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
        let alg = rule.apply_server_side_encryption_by_default().unwrap();
        assert_eq!(alg.sse_algorithm().as_str(), "AES256");
        let pab = c.s3.get_public_access_block().bucket(&data).send().await;
        let pab = pab.unwrap();
        let pab = pab.public_access_block_configuration().unwrap();
        assert_eq!(pab.block_public_acls(), Some(true));
        assert_eq!(pab.restrict_public_buckets(), Some(true));
    });
    let name = d.name.clone();
    d.destroy();
    assert_clean(&before, &rt.block_on(listing(&c, &name)));
}

/// The backend role's inline policy as the blueprint writes it.
fn s3_policy(meta: &str, data: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["s3:DeleteObject*","s3:GetObject*","s3:ListBucket","s3:PutObject*"],"Resource":["arn:aws:s3:::{meta}","arn:aws:s3:::{meta}/*","arn:aws:s3:::{data}","arn:aws:s3:::{data}/*"]}}]}}"#
    )
}

#[test]
fn aws_node_group_policy_and_database_drift_is_planned_exactly_and_corrected() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let (d, before) = Deployment::applied(&rt, &c);
    let name = d.name.clone();
    let (nodes, role, db) = (
        format!("{name}-nodes"),
        format!("{name}-flyte-backend"),
        format!("{name}-db"),
    );
    let ours = s3_policy(&d.bucket("metadata"), &d.bucket("data"));

    // Node group scaled by hand (min 2, max 5, desired 2 in the config).
    rt.block_on(async {
        let ng = c
            .eks
            .describe_nodegroup()
            .cluster_name(&name)
            .nodegroup_name(&nodes)
            .send()
            .await
            .unwrap();
        let mut scaling = ng.nodegroup().unwrap().scaling_config().unwrap().clone();
        scaling.min_size = Some(1);
        scaling.max_size = Some(3);
        scaling.desired_size = Some(3);
        c.eks
            .update_nodegroup_config()
            .cluster_name(&name)
            .nodegroup_name(&nodes)
            .scaling_config(scaling)
            .send()
            .await
            .unwrap();
    });
    d.expect_plan(
        &[drift(
            "aws_eks_node_group.main",
            &[
                "~ desired_size = 3 -> 2",
                "~ max_size = 3 -> 5",
                "~ min_size = 1 -> 2",
            ],
        )],
        "Plan: 0 to add, 1 to change, 0 to destroy.",
    );
    d.converge();
    rt.block_on(async {
        let ng = c
            .eks
            .describe_nodegroup()
            .cluster_name(&name)
            .nodegroup_name(&nodes)
            .send()
            .await
            .unwrap();
        let s = ng.nodegroup().unwrap().scaling_config().unwrap();
        assert_eq!(
            (s.min_size(), s.max_size(), s.desired_size()),
            (Some(2), Some(5), Some(2))
        );
    });

    // The backend role's inline policy rewritten by hand.
    let wide = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    rt.block_on(async {
        c.iam
            .put_role_policy()
            .role_name(&role)
            .policy_name("flyteinfra")
            .policy_document(wide)
            .send()
            .await
            .unwrap();
    });
    d.expect_plan(
        &[drift(
            "aws_iam_role.flyte_backend",
            &[&format!("~ inline_policy = {} -> {}", q(wide), q(&ours))],
        )],
        "Plan: 0 to add, 1 to change, 0 to destroy.",
    );
    d.converge();

    // ... and deleted.
    rt.block_on(async {
        c.iam
            .delete_role_policy()
            .role_name(&role)
            .policy_name("flyteinfra")
            .send()
            .await
            .unwrap();
    });
    d.expect_plan(
        &[drift(
            "aws_iam_role.flyte_backend",
            &[&format!("+ inline_policy = {}", q(&ours))],
        )],
        "Plan: 0 to add, 1 to change, 0 to destroy.",
    );
    d.converge();
    rt.block_on(async {
        let p = c
            .iam
            .get_role_policy()
            .role_name(&role)
            .policy_name("flyteinfra")
            .send()
            .await
            .unwrap();
        let got = flyteinfra_provider_aws::percent_decode(p.policy_document());
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(
            got,
            serde_json::from_str::<serde_json::Value>(&ours).unwrap()
        );
    });

    // The database made public.
    rt.block_on(async {
        c.rds
            .modify_db_instance()
            .db_instance_identifier(&db)
            .publicly_accessible(true)
            .apply_immediately(true)
            .send()
            .await
            .unwrap();
    });
    assert_eq!(
        rt.block_on(db_public(&c, &db)),
        Some(true),
        "moto applies it"
    );
    d.expect_plan(
        &[drift(
            "aws_db_instance.main",
            &["~ publicly_accessible = true -> false"],
        )],
        "Plan: 0 to add, 1 to change, 0 to destroy.",
    );
    d.converge();
    assert_eq!(rt.block_on(db_public(&c, &db)), Some(false));

    d.destroy();
    assert_clean(&before, &rt.block_on(listing(&c, &name)));
}

async fn db_public(c: &AwsClients, id: &str) -> Option<bool> {
    let out = c
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .unwrap();
    out.db_instances()[0].publicly_accessible()
}

/// The deployment's VPC (the only one tagged with its name).
async fn vpc_of(c: &AwsClients, name: &str) -> String {
    let out = c
        .ec2
        .describe_vpcs()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:flyteinfra/deployment")
                .values(name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.vpcs()[0].vpc_id().unwrap().to_string()
}

async fn db_tags(c: &AwsClients, id: &str) -> BTreeMap<String, String> {
    let out = c
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .unwrap();
    out.db_instances()[0]
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect()
}

/// Adds tag `key` = `value` to the RDS instance `id` (the tag type cloned from its own).
async fn tag_db(c: &AwsClients, id: &str, key: &str, value: &str) {
    let out = c
        .rds
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .unwrap();
    let d = &out.db_instances()[0];
    let mut tag = d.tag_list()[0].clone();
    tag.key = Some(key.into());
    tag.value = Some(value.into());
    c.rds
        .add_tags_to_resource()
        .resource_name(d.db_instance_arn().unwrap())
        .tags(tag)
        .send()
        .await
        .unwrap();
}

/// Adds tag `key` = `value` to the IAM role `name` (the tag type cloned from its own).
async fn tag_role(c: &AwsClients, name: &str, key: &str, value: &str) {
    let r = c.iam.get_role().role_name(name).send().await.unwrap();
    let mut tag = r.role().unwrap().tags()[0].clone();
    tag.key = key.into();
    tag.value = value.into();
    c.iam
        .tag_role()
        .role_name(name)
        .tags(tag)
        .send()
        .await
        .unwrap();
}

async fn tag_vpc(c: &AwsClients, vpc: &str, key: &str, value: &str) {
    c.ec2
        .create_tags()
        .resources(vpc)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key(key)
                .value(value)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[test]
fn aws_server_managed_changes_never_show_and_tags_are_diffed() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let (d, before) = Deployment::applied(&rt, &c);
    let name = d.name.clone();
    let db = format!("{name}-db");
    let role = format!("{name}-flyte-backend");
    let vpc = rt.block_on(vpc_of(&c, &name));

    // A minor upgrade of the pinned major (`16`), as RDS does in a maintenance window.
    rt.block_on(async {
        c.rds
            .modify_db_instance()
            .db_instance_identifier(&db)
            .engine_version("16.4")
            .apply_immediately(true)
            .send()
            .await
            .unwrap();
        let out = c
            .rds
            .describe_db_instances()
            .db_instance_identifier(&db)
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.db_instances()[0].engine_version(),
            Some("16.4"),
            "moto applies it"
        );
    });
    d.no_changes();

    // Tags AWS adds itself (`aws:` is reserved to AWS), on the database, a role, the VPC
    // and the cluster.
    let aws_tag = "aws:cloudformation:stack-name";
    rt.block_on(async {
        tag_db(&c, &db, aws_tag, "platform").await;
        tag_role(&c, &role, aws_tag, "platform").await;
        tag_vpc(&c, &vpc, aws_tag, "platform").await;
        let arn = c.eks.describe_cluster().name(&name).send().await.unwrap();
        let arn = arn.cluster().unwrap().arn().unwrap().to_string();
        c.eks
            .tag_resource()
            .resource_arn(arn)
            .tags(aws_tag, "platform")
            .send()
            .await
            .unwrap();
    });
    d.no_changes();

    // A tag someone else added is a diff (and the `aws:` ones still are not); the apply
    // removes it and keeps AWS's.
    rt.block_on(async {
        tag_db(&c, &db, "CostCenter", "42").await;
        tag_vpc(&c, &vpc, "CostCenter", "42").await;
        tag_role(&c, &role, "CostCenter", "42").await;
    });
    let tagged = format!(
        r#"~ tags = {{"CostCenter":"42","Name":"{name}","flyteinfra/deployment":"{name}"}} -> {}"#,
        our_tags(&name)
    );
    d.expect_plan(
        &[
            drift("aws_db_instance.main", &[&tagged]),
            drift("aws_iam_role.flyte_backend", &[&tagged]),
            drift("aws_vpc.main", &[&tagged]),
        ],
        "Plan: 0 to add, 3 to change, 0 to destroy.",
    );
    d.converge();
    // Only the foreign tag was removed: AWS's own stay.
    let tags = rt.block_on(db_tags(&c, &db));
    assert!(!tags.contains_key("CostCenter"), "{tags:?}");
    assert_eq!(
        tags.get(aws_tag).map(String::as_str),
        Some("platform"),
        "{tags:?}"
    );
    rt.block_on(async {
        let v = c.ec2.describe_vpcs().vpc_ids(&vpc).send().await.unwrap();
        let keys: Vec<&str> = v.vpcs()[0].tags().iter().filter_map(|t| t.key()).collect();
        assert!(
            keys.contains(&aws_tag) && !keys.contains(&"CostCenter"),
            "{keys:?}"
        );
        let r = c.iam.get_role().role_name(&role).send().await.unwrap();
        let keys: Vec<&str> = r.role().unwrap().tags().iter().map(|t| t.key()).collect();
        assert!(
            keys.contains(&aws_tag) && !keys.contains(&"CostCenter"),
            "{keys:?}"
        );
    });

    d.destroy();
    assert_clean(&before, &rt.block_on(listing(&c, &name)));
}

/// Every resource of `plan` but `except` is created, with no reason given.
#[track_caller]
fn all_created_but(plan: &BTreeMap<String, Entry>, except: &[&str]) -> usize {
    let mut n = 0;
    for (addr, e) in plan {
        if except.contains(&addr.as_str()) {
            continue;
        }
        assert_eq!(e.headline, "will be created", "{addr}: {e:?}");
        assert!(e.reasons.is_empty(), "{addr}: {e:?}");
        n += 1;
    }
    n
}

#[test]
fn aws_imported_bucket_plans_only_its_real_differences() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let name = unique_name();
    let before = rt.block_on(listing(&c, &name));
    let d = Deployment::new(&name, &config(&name));
    let meta = d.bucket("metadata");
    // The user's bucket, made before flyteinfra: no versioning, encryption, public access
    // block or tags (moto's defaults; real S3 would report SSE-S3 and all four blocks).
    rt.block_on(async {
        c.s3.create_bucket().bucket(&meta).send().await.unwrap();
    });
    assert_eq!(rt.block_on(versioning(&c, &meta)), None);

    let r = d.ctx.run(&["import", "aws_s3_bucket.metadata", &meta]);
    r.ok();
    assert!(
        r.stderr.contains(&format!("Imported `{meta}`")),
        "{}",
        r.stderr
    );
    let r = d.plan();
    r.expect_code(2);
    let plan = parse_plan(&r.stdout);
    let created = all_created_but(&plan, &["aws_s3_bucket.metadata"]);
    let tags = format!("~ tags = {{}} -> {}", our_tags(&name));
    assert_eq!(
        plan.get("aws_s3_bucket.metadata"),
        Some(
            &update(
                "aws_s3_bucket.metadata",
                &[
                    "~ block_public_access = false -> true",
                    r#"+ encryption = "AES256""#,
                    &tags,
                    "~ versioning = false -> true",
                ],
            )
            .1
        ),
        "{}",
        r.stdout
    );
    assert_eq!(
        summary_line(&r.stdout),
        Some(format!("Plan: {created} to add, 1 to change, 0 to destroy.").as_str())
    );
    d.converge();
    assert_eq!(
        d.ctx.state_addresses(),
        plan.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        rt.block_on(versioning(&c, &meta)).as_deref(),
        Some("Enabled")
    );
    d.destroy();
    assert_clean(&before, &rt.block_on(listing(&c, &name)));
}

/// The user's network, made outside flyteinfra: a VPC and four subnets. Returns the VPC
/// and the (public, private) subnet ids, one of each per zone.
async fn user_network(c: &AwsClients, octet: u8) -> (String, Vec<String>, Vec<String>) {
    let vpc = c
        .ec2
        .create_vpc()
        .cidr_block(format!("10.{octet}.0.0/16"))
        .send()
        .await
        .unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
    let mut ids = Vec::new();
    for (i, az) in ["us-east-1a", "us-east-1b", "us-east-1a", "us-east-1b"]
        .iter()
        .enumerate()
    {
        let s = c
            .ec2
            .create_subnet()
            .vpc_id(&vpc)
            .availability_zone(*az)
            .cidr_block(format!("10.{octet}.{i}.0/24"))
            .send()
            .await
            .unwrap();
        ids.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    (vpc, ids[..2].to_vec(), ids[2..].to_vec())
}

/// `config(name)` on the user's network (and cluster, if any).
fn existing_config(
    name: &str,
    vpc: &str,
    public: &[String],
    private: &[String],
    cluster: Option<&str>,
) -> String {
    let cluster = cluster.map_or(String::new(), |c| format!("    cluster_name: {c}\n"));
    config(name).replace(
        "  region: us-east-1\n",
        &format!(
            "  region: us-east-1\n  existing:\n    vpc_id: {vpc}\n    public_subnet_ids: [{}]\n    private_subnet_ids: [{}]\n{cluster}",
            public.join(", "),
            private.join(", ")
        ),
    )
}

/// The user's EKS cluster role, made outside flyteinfra (named as the blueprint names it).
async fn user_cluster_role(c: &AwsClients, role: &str) -> String {
    // The blueprint's trust policy, byte for byte: an import cannot know how the config
    // lays a policy out, so the same policy laid out differently would show as a difference.
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let r = c
        .iam
        .create_role()
        .role_name(role)
        .assume_role_policy_document(trust)
        .send()
        .await
        .unwrap();
    c.iam
        .attach_role_policy()
        .role_name(role)
        .policy_arn("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy")
        .send()
        .await
        .unwrap();
    r.role().unwrap().arn().to_string()
}

/// The user's EKS cluster, made outside flyteinfra (see the module doc for why through the
/// provider's type).
async fn user_cluster(c: &AwsClients, name: &str, role_arn: &str, subnets: &[String]) {
    let addr = Address::new("aws_eks_cluster", "theirs");
    let inputs = attrs([
        ("name", Value::from(name)),
        ("version", Value::from("1.33")),
        ("role_arn", Value::from(role_arn)),
        ("subnet_ids", strs(subnets)),
        ("endpoint_public_access", Value::Bool(true)),
    ]);
    let created = provider(c, "aws_eks_cluster")
        .create(CreateRequest {
            address: addr.clone(),
            inputs,
            token: format!("{name}-theirs"),
            fresh: false,
            sent_at: Some(std::time::SystemTime::now()),
            progress: Progress::none(addr),
        })
        .await
        .unwrap();
    assert!(
        matches!(created.completion, Completion::Ready(_)),
        "moto: ACTIVE at once"
    );
}

#[test]
fn aws_imported_database_and_cluster_plan_only_their_real_differences() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let name = unique_name();
    let before = rt.block_on(listing(&c, &name));
    let (db, group, role) = (
        format!("{name}-db"),
        format!("{name}-db"),
        format!("{name}-eks-cluster"),
    );
    // The user's network, cluster (with its role) and database, named as the blueprint
    // names them. An import cannot know the order of the config's lists: it reads them
    // sorted, and a list in another order differs (for `subnet_ids`, forcing the cluster's
    // replacement). So the config lists the subnets in sorted order here.
    let (vpc, public, private) = rt.block_on(async {
        let (vpc, a, b) = user_network(&c, 43).await;
        let mut all = [a, b].concat();
        all.sort();
        (vpc, all[2..].to_vec(), all[..2].to_vec())
    });
    rt.block_on(async {
        let arn = user_cluster_role(&c, &role).await;
        user_cluster(&c, &name, &arn, &[private.clone(), public.clone()].concat()).await;
        c.rds
            .create_db_subnet_group()
            .db_subnet_group_name(&group)
            .db_subnet_group_description("theirs")
            .set_subnet_ids(Some(private.clone()))
            .send()
            .await
            .unwrap();
        // As the config would have it, but for a minor version of the pinned major (as RDS
        // reports every instance) and one day of backups instead of seven.
        c.rds
            .create_db_instance()
            .db_instance_identifier(&db)
            .engine("postgres")
            .engine_version("16.3")
            .db_instance_class("db.t3.medium")
            .allocated_storage(32)
            .db_name("flyte")
            .master_username("flyte")
            .master_user_password("their-Passw0rd-1234")
            .db_subnet_group_name(&group)
            .storage_encrypted(true)
            .publicly_accessible(false)
            .backup_retention_period(1)
            .deletion_protection(false)
            .send()
            .await
            .unwrap();
    });
    let default_sg = rt.block_on(async {
        let out = c
            .rds
            .describe_db_instances()
            .db_instance_identifier(&db)
            .send()
            .await
            .unwrap();
        let sgs = out.db_instances()[0].vpc_security_groups();
        assert_eq!(sgs.len(), 1, "{sgs:?}");
        sgs[0].vpc_security_group_id().unwrap().to_string()
    });

    let d = Deployment::new(
        &name,
        &existing_config(&name, &vpc, &public, &private, None),
    );
    let imported = [
        ("aws_iam_role.cluster", role.as_str()),
        ("aws_eks_cluster.main", name.as_str()),
        ("aws_db_subnet_group.main", group.as_str()),
        ("aws_db_instance.main", db.as_str()),
    ];
    for (addr, id) in imported {
        d.ctx.run(&["import", addr, id]).ok();
    }
    let r = d.plan();
    r.expect_code(2);
    let plan = parse_plan(&r.stdout);
    let addrs: Vec<&str> = imported.iter().map(|(a, _)| *a).collect();
    let created = all_created_but(&plan, &addrs);
    // Only what really differs: the tags every object gets, and on the database its
    // backups, its security group (made by this apply), and the generated password (RDS
    // cannot report it, so import never takes it as applied; the apply sets it). Not the
    // minor version, and not the final snapshot's name, which import takes from the config
    // since RDS cannot report it either.
    let tags = format!("~ tags = {{}} -> {}", our_tags(&name));
    let want = [
        update("aws_iam_role.cluster", &[&tags]),
        update("aws_eks_cluster.main", &[&tags]),
        update("aws_db_subnet_group.main", &[&tags]),
        update(
            "aws_db_instance.main",
            &[
                "~ backup_retention_period = 1 -> 7",
                "+ password = (sensitive)",
                &tags,
                &format!("~ vpc_security_group_ids = [\"{default_sg}\"] -> (known after apply)"),
            ],
        ),
    ];
    for (addr, entry) in &want {
        assert_eq!(plan.get(addr), Some(entry), "{addr}:\n{}", r.stdout);
    }
    assert_eq!(
        summary_line(&r.stdout),
        Some(format!("Plan: {created} to add, 4 to change, 0 to destroy.").as_str()),
        "{}",
        r.stdout
    );
    d.converge();
    // The same objects, now managed.
    rt.block_on(async {
        let k = c.eks.describe_cluster().name(&name).send().await.unwrap();
        let tags = k.cluster().unwrap().tags().unwrap();
        assert_eq!(tags.get("flyteinfra/deployment"), Some(&name));
        let out = c
            .rds
            .describe_db_instances()
            .db_instance_identifier(&db)
            .send()
            .await
            .unwrap();
        let d = &out.db_instances()[0];
        assert_eq!(d.backup_retention_period(), Some(7));
        assert_eq!(d.engine_version(), Some("16.3"), "no downgrade to `16`");
    });
    d.destroy();
    assert_clean(&before, &rt.block_on(listing(&c, &name)));
    // The user's network stays: it is `existing:`.
    rt.block_on(delete_network(&c, &vpc, &[public, private].concat()));
}

async fn delete_network(c: &AwsClients, vpc: &str, subnets: &[String]) {
    for s in subnets {
        c.ec2.delete_subnet().subnet_id(s).send().await.unwrap();
    }
    c.ec2.delete_vpc().vpc_id(vpc).send().await.unwrap();
}

#[test]
fn aws_existing_cluster_is_read_and_never_changed_or_destroyed() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let name = unique_name();
    let before = rt.block_on(listing(&c, &name));
    // The user's network and cluster; names outside the deployment's prefix.
    let (cluster, role) = (format!("their-{name}"), format!("their-{name}-eks"));
    let (vpc, public, private) = rt.block_on(user_network(&c, 44));
    rt.block_on(async {
        let arn = user_cluster_role(&c, &role).await;
        user_cluster(
            &c,
            &cluster,
            &arn,
            &[private.clone(), public.clone()].concat(),
        )
        .await;
    });
    let describe = || {
        rt.block_on(async {
            let k = c.eks.describe_cluster().name(&cluster).send().await;
            k.unwrap().cluster().unwrap().clone()
        })
    };
    let theirs = describe();

    let cfg = existing_config(&name, &vpc, &public, &private, Some(&cluster));
    let d = Deployment::new(&name, &cfg);
    let r = d.plan();
    r.expect_code(2);
    let plan = parse_plan(&r.stdout);
    // The cluster is read; everything else is created; no cluster or node group of ours.
    let read = plan
        .get("aws_eks_cluster.main")
        .expect("the cluster is read");
    assert_eq!(read.headline, "will be read", "{}", r.stdout);
    assert_eq!(
        read.reasons,
        ["(existing: read only, never changed by flyteinfra)"],
        "{}",
        r.stdout
    );
    for f in [
        format!("id = {}", q(&cluster)),
        format!("name = {}", q(&cluster)),
        format!("role_arn = \"arn:aws:iam::{ACCOUNT}:role/{role}\""),
        "tags = {}".to_string(),
        "version = \"1.33\"".to_string(),
    ] {
        assert!(read.fields.contains(&f), "{f} in {:?}", read.fields);
    }
    let created = all_created_but(&plan, &["aws_eks_cluster.main"]);
    assert!(
        !plan.contains_key("aws_eks_node_group.main"),
        "{}",
        r.stdout
    );
    assert!(!plan.contains_key("aws_iam_role.node"), "{}", r.stdout);
    assert_eq!(
        summary_line(&r.stdout),
        Some(format!("Plan: {created} to add, 0 to change, 0 to destroy.").as_str())
    );
    d.ctx.apply();
    d.no_changes();
    // Used: the database's security group admits the cluster's.
    let state = d.ctx.state();
    let k = &state["resources"]["aws_eks_cluster.main"];
    assert_eq!(k["mode"], "existing");
    assert_eq!(k["id"], cluster.as_str());
    let cluster_sg = k["attributes"]["cluster_security_group_id"].clone();
    assert!(cluster_sg.as_str().unwrap().starts_with("sg-"), "{k}");
    let rule = &state["resources"]["aws_vpc_security_group_ingress_rule.db_from_cluster"];
    assert_eq!(
        rule["attributes"]["referenced_security_group_id"],
        cluster_sg
    );

    // Changed by its owner: still nothing to do.
    rt.block_on(async {
        c.eks
            .tag_resource()
            .resource_arn(theirs.arn().unwrap())
            .tags("team", "data")
            .send()
            .await
            .unwrap();
    });
    d.no_changes();

    d.destroy();
    assert_clean(&before, &rt.block_on(listing(&c, &name)));
    let after = describe();
    assert_eq!(after.status(), theirs.status());
    assert_eq!(
        after.tags().unwrap().get("team").map(String::as_str),
        Some("data")
    );
    rt.block_on(async {
        c.eks.delete_cluster().name(&cluster).send().await.unwrap();
        c.iam
            .detach_role_policy()
            .role_name(&role)
            .policy_arn("arn:aws:iam::aws:policy/AmazonEKSClusterPolicy")
            .send()
            .await
            .unwrap();
        c.iam.delete_role().role_name(&role).send().await.unwrap();
        delete_network(&c, &vpc, &[public, private].concat()).await;
    });
}

/// A deployment applied when the database's ingress rule was still inline in
/// `aws_security_group.db` (untagged, in the group's state inputs) moves to the rule as its
/// own resource with no window and no double: the plan adds only the rule, apply takes the
/// existing rule over (same `sgr-` id: never revoked, never authorized twice), and the next
/// plan has nothing to do.
#[test]
fn aws_db_rule_kept_inline_by_an_older_blueprint_is_taken_over() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let (d, before) = Deployment::applied(&rt, &c);
    const RULE: &str = "aws_vpc_security_group_ingress_rule.db_from_cluster";

    // Back to the old blueprint's state and cloud.
    let mut st = d.ctx.state();
    let rule = st["resources"]
        .as_object_mut()
        .unwrap()
        .remove(RULE)
        .unwrap();
    let rule_id = rule["id"].as_str().unwrap().to_string();
    let db_sg = rule["attributes"]["security_group_id"]
        .as_str()
        .unwrap()
        .to_string();
    let cluster_sg = rule["attributes"]["referenced_security_group_id"].clone();
    for part in ["inputs", "attributes"] {
        let sg = &mut st["resources"]["aws_security_group.db"][part];
        sg["ingress_port"] = 5432.into();
        sg["ingress_source_group_ids"] = serde_json::json!([cluster_sg]);
    }
    std::fs::write(d.ctx.state_path(), serde_json::to_vec_pretty(&st).unwrap()).unwrap();
    let ingress = || {
        rt.block_on(async {
            let filter = aws_sdk_ec2::types::Filter::builder()
                .name("group-id")
                .values(&db_sg)
                .build();
            let out = c.ec2.describe_security_group_rules().filters(filter);
            let out = out.send().await.unwrap();
            let rules = out.security_group_rules().iter();
            rules
                .filter(|r| r.is_egress() == Some(false))
                .map(|r| {
                    (
                        r.security_group_rule_id().unwrap().to_string(),
                        r.tags().len(),
                    )
                })
                .collect::<Vec<_>>()
        })
    };
    rt.block_on(async {
        let tags = aws_sdk_ec2::types::Tag::builder();
        let keys = ["Name", "flyteinfra/deployment", "flyteinfra:token"];
        let tags = keys.map(|k| tags.clone().key(k).build());
        let untag = c.ec2.delete_tags().resources(&rule_id);
        untag.set_tags(Some(tags.to_vec())).send().await.unwrap();
    });
    assert_eq!(ingress(), [(rule_id.clone(), 0)]);

    let r = d.plan();
    r.expect_code(2);
    let plan = parse_plan(&r.stdout);
    assert_eq!(plan.keys().collect::<Vec<_>>(), [RULE], "{}", r.stdout);
    assert_eq!(plan[RULE].headline, "will be created", "{}", r.stdout);
    assert_eq!(
        summary_line(&r.stdout),
        Some("Plan: 1 to add, 0 to change, 0 to destroy."),
        "{}",
        r.stdout
    );
    d.converge();
    assert_eq!(ingress(), [(rule_id.clone(), 3)]);
    assert_eq!(d.ctx.state()["resources"][RULE]["id"], rule_id.as_str());

    let name = d.name.clone();
    d.destroy();
    assert_clean(&before, &rt.block_on(listing(&c, &name)));
}

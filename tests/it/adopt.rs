//! Adoption only with proof of ownership, against moto (through the AWS test double) and
//! gcp-storage-emulator: a bucket of the derived name that flyteinfra did not make is never
//! taken over (the create fails naming `flyteinfra import`, and nothing on the bucket
//! changes), while a bucket a killed run made but had not tagged yet is adopted by the next
//! apply, recognised by its creation time against the intent's.
//!
//! Only the bucket is applied (`--target`), so these tests need no EKS cluster and do not
//! take [`crate::aws::APPLY`]'s turn.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration, Tag, Tagging};
use flyteinfra_aws_proxy::Proxy;
use flyteinfra_core::CLOCK_SKEW_MARGIN;
use flyteinfra_gcp_double::GcpDouble;
use flyteinfra_provider_aws::AwsClients;
use flyteinfra_provider_gcp::{Api, Endpoints, GcpClients, Method};
use serde_json::{Value, json};

use crate::aws::{rt, unique_name};
use crate::util::{TestContext, finish, wait_until};

/// moto's account id, part of every derived S3 bucket name.
const ACCOUNT: &str = "123456789012";

fn aws_config(name: &str, region: &str) -> String {
    format!(
        "name: {name}\ncloud: aws\naws:\n  region: {region}\ndatabase:\n  deletion_protection: false\n\
         flyte:\n  projects: [flytesnacks]\n  domains: [development]\n"
    )
}

async fn aws_clients(region: &str) -> AwsClients {
    AwsClients::for_endpoint(region, crate::moto::url(), "testing", "testing").await
}

/// The tags of `bucket` (none = empty).
async fn tags(c: &AwsClients, bucket: &str) -> BTreeMap<String, String> {
    match c.s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(o) => o
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        Err(e) => {
            let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).map(str::to_string);
            assert_eq!(code.as_deref(), Some("NoSuchTagSet"), "{e:?}");
            BTreeMap::new()
        }
    }
}

async fn versioning(c: &AwsClients, bucket: &str) -> Option<String> {
    let v =
        c.s3.get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
    v.status().map(|s| s.as_str().to_string())
}

/// Sleeps until `since` is more than the clock-skew margin in the past (with a second to
/// spare for whole-second timestamps), so a bucket made at `since` is provably older than
/// any intent sent from now on.
fn outlive_the_margin(since: Instant) {
    let wait = CLOCK_SKEW_MARGIN + Duration::from_secs(3);
    if let Some(rest) = wait.checked_sub(since.elapsed()) {
        std::thread::sleep(rest);
    }
}

/// A bucket of the derived name, made outside flyteinfra (untagged by it, with a tag of its
/// own, versioning off), in us-east-1 (CreateBucket answers 200 for it) and in eu-west-1
/// (`BucketAlreadyOwnedByYou`): `apply` fails naming `flyteinfra import`, leaves the bucket
/// as it was and records nothing, and a second apply does the same; `flyteinfra import`
/// then brings it under management.
#[test]
fn aws_a_bucket_flyteinfra_did_not_make_is_refused_with_the_import_hint() {
    let rt = rt();
    let made = Instant::now();
    let cases: Vec<(&str, String, TestContext, AwsClients)> = ["us-east-1", "eu-west-1"]
        .into_iter()
        .map(|region| {
            let name = unique_name();
            let bucket = format!("{name}-{ACCOUNT}-{region}-metadata");
            let ctx = TestContext::aws(&aws_config(&name, region));
            let c = rt.block_on(aws_clients(region));
            rt.block_on(async {
                let mut create = c.s3.create_bucket().bucket(&bucket);
                if region != "us-east-1" {
                    create = create.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(region))
                            .build(),
                    );
                }
                create.send().await.unwrap();
                let tag = Tag::builder().key("owner").value("them").build().unwrap();
                c.s3.put_bucket_tagging()
                    .bucket(&bucket)
                    .tagging(Tagging::builder().tag_set(tag).build().unwrap())
                    .send()
                    .await
                    .unwrap();
            });
            (region, bucket, ctx, c)
        })
        .collect();
    outlive_the_margin(made);

    let theirs = BTreeMap::from([("owner".to_string(), "them".to_string())]);
    let apply = [
        "apply",
        "--auto-approve",
        "--target",
        "aws_s3_bucket.metadata",
    ];
    for (region, bucket, ctx, c) in &cases {
        for attempt in 1..=2 {
            let run = ctx.run(&apply);
            run.expect_code(1);
            let hint = format!("run `flyteinfra import aws_s3_bucket.metadata {bucket}`");
            assert!(
                run.stderr.contains(&hint)
                    && run.stderr.contains(&format!(
                        "bucket `{bucket}` already exists and is not flyteinfra's"
                    )),
                "{region}, apply {attempt}:\n{}",
                run.stderr
            );
            // Nothing on it changed: no tag of ours, no versioning.
            assert_eq!(rt.block_on(tags(c, bucket)), theirs, "{region}");
            assert_eq!(rt.block_on(versioning(c, bucket)), None, "{region}");
            let st = ctx.state();
            assert!(
                st["resources"].get("aws_s3_bucket.metadata").is_none(),
                "{region}: {st}"
            );
        }
        // The hint works: imported, it is managed, and the next apply configures it.
        ctx.run(&["import", "aws_s3_bucket.metadata", bucket]).ok();
        let st = ctx.state();
        assert_eq!(st["resources"]["aws_s3_bucket.metadata"]["id"], **bucket);
        assert!(
            st["intents"].as_object().is_none_or(|i| i.is_empty()),
            "{region}: {st}"
        );
        ctx.run(&apply).ok();
        assert_eq!(
            rt.block_on(versioning(c, bucket)).as_deref(),
            Some("Enabled"),
            "{region}"
        );
        rt.block_on(async {
            c.s3.delete_bucket().bucket(bucket).send().await.unwrap();
        });
    }
}

/// The run is killed after CreateBucket took effect and before PutBucketTagging reached S3
/// (the test double holds the tagging call, the run is SIGKILLed, and the held call is
/// dropped with its proxy, so it never lands). The bucket is untagged, but it was made after
/// the intent was sent: the next apply adopts it and finishes it (tags, versioning).
#[test]
fn aws_kill_9_between_create_and_tagging_is_adopted_on_the_next_apply() {
    let rt = rt();
    let name = unique_name();
    let bucket = format!("{name}-{ACCOUNT}-us-east-1-metadata");
    let ctx = TestContext::aws(&aws_config(&name, "us-east-1"));
    let c = rt.block_on(aws_clients("us-east-1"));
    let apply = [
        "apply",
        "--auto-approve",
        "--target",
        "aws_s3_bucket.metadata",
    ];

    let proxy = Proxy::start(crate::moto::upstream());
    proxy
        .rules()
        .hold
        .insert("PutBucketTagging".into(), 600_000);
    let mut child = ctx.spawn(&apply, &[("AWS_ENDPOINT_URL", proxy.url())]);
    let reached = wait_until(Duration::from_secs(60), || {
        proxy.stats().0.contains_key("PutBucketTagging")
    });
    child.kill().unwrap();
    let killed = finish(child);
    ctx.break_lease();
    // Dropping the proxy cancels the held call: it never reaches S3.
    let stats = proxy.take_stats();
    drop(proxy);
    assert!(reached, "{stats}\n{}", killed.stderr);
    assert!(stats.0.contains_key("CreateBucket"), "{stats}");

    let st = ctx.state();
    let intent = &st["intents"]["aws_s3_bucket.metadata"];
    let token = intent["token"].as_str().unwrap_or_else(|| panic!("{st}"));
    assert!(intent["sent_at"].is_u64(), "{st}");
    assert!(st["resources"].get("aws_s3_bucket.metadata").is_none());
    assert_eq!(rt.block_on(tags(&c, &bucket)), BTreeMap::new());

    let next = ctx.run_env(&apply, &[("FLYTEINFRA_CREATE_SETTLE_SECS", "0")]);
    next.ok();
    assert!(
        next.stderr
            .contains(&format!("aws_s3_bucket.metadata: adopted `{bucket}`")),
        "{}",
        next.stderr
    );
    let st = ctx.state();
    assert_eq!(st["resources"]["aws_s3_bucket.metadata"]["status"], "ready");
    assert!(
        st["intents"].as_object().is_none_or(|i| i.is_empty()),
        "{st}"
    );
    let t = rt.block_on(tags(&c, &bucket));
    assert_eq!(
        t.get("flyteinfra:token").map(String::as_str),
        Some(token),
        "{t:?}"
    );
    assert_eq!(
        rt.block_on(versioning(&c, &bucket)).as_deref(),
        Some("Enabled")
    );
    let plan = ctx.run(&[
        "plan",
        "--detailed-exitcode",
        "--target",
        "aws_s3_bucket.metadata",
    ]);
    rt.block_on(async {
        c.s3.delete_bucket().bucket(&bucket).send().await.unwrap();
    });
    plan.expect_code(0);
}

fn gcp_config(name: &str) -> String {
    format!(
        "name: {name}\ncloud: gcp\ngcp:\n  project: {name}-proj\n  region: us-central1\n\
         database:\n  deletion_protection: false\n\
         flyte:\n  projects: [flytesnacks]\n  domains: [development]\n"
    )
}

async fn storage(c: &GcpClients, method: Method, path: &str, body: Option<Value>) -> Value {
    c.http
        .call(Api::Storage, method, path, body.as_ref(), "test")
        .await
        .unwrap()
}

/// A GCS bucket of the derived name without flyteinfra's label: `apply` fails naming
/// `flyteinfra import`, leaves the bucket as it was and records nothing.
#[test]
fn gcp_a_bucket_flyteinfra_did_not_make_is_refused_with_the_import_hint() {
    let double = GcpDouble::start();
    let name = unique_name();
    let project = format!("{name}-proj");
    let bucket = format!("{project}-{name}-metadata");
    let ctx = TestContext::gcp(&gcp_config(&name), double.url());
    let rt = rt();
    let c = rt.block_on(async {
        GcpClients::for_endpoints(
            &project,
            Endpoints {
                apis: Some(double.url().to_string()),
                storage: crate::gcs::url().to_string(),
            },
        )
        .await
        .unwrap()
    });
    let made = Instant::now();
    let before = rt.block_on(async {
        storage(
            &c,
            Method::POST,
            &format!("/storage/v1/b?project={project}"),
            Some(json!({"name": bucket})),
        )
        .await;
        storage(
            &c,
            Method::PATCH,
            &format!("/storage/v1/b/{bucket}"),
            Some(json!({"labels": {"owner": "them"}})),
        )
        .await
    });
    outlive_the_margin(made);

    let run = ctx.run(&[
        "apply",
        "--auto-approve",
        "--target",
        "gcp_storage_bucket.metadata",
    ]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "run `flyteinfra import gcp_storage_bucket.metadata {bucket}`"
        )) && run.stderr.contains(&format!(
            "bucket `{bucket}` already exists and is not flyteinfra's"
        )),
        "{}",
        run.stderr
    );
    let after = rt.block_on(storage(
        &c,
        Method::GET,
        &format!("/storage/v1/b/{bucket}"),
        None,
    ));
    for field in [
        "labels",
        "versioning",
        "iamConfiguration",
        "lifecycle",
        "metageneration",
    ] {
        assert_eq!(after[field], before[field], "{field}: {after}");
    }
    let st = ctx.state();
    assert!(
        st["resources"].get("gcp_storage_bucket.metadata").is_none(),
        "{st}"
    );
    rt.block_on(storage(
        &c,
        Method::DELETE,
        &format!("/storage/v1/b/{bucket}"),
        None,
    ));
}

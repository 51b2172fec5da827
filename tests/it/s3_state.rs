//! The S3 state backend against moto: the bucket checks on connect, the key layout, the
//! backends' conformance suite, and use from inside a tokio runtime (as the CLI does).

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};
use flyteinfra_aws_proxy::{Proxy, Rng};
use flyteinfra_state::{Backend, Object, Precondition, S3Backend, S3Location, StateError};

use crate::aws::{rt, unique_name};

const REGION: &str = "us-east-1";

/// moto through the proxy, with static credentials: nothing read from the environment.
fn sdk_config() -> SdkConfig {
    sdk_config_for(crate::moto::url(), REGION)
}

fn sdk_config_for(endpoint: &str, region: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "static",
        )))
        .build()
}

fn admin() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&sdk_config())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A new bucket, with versioning set to `versioning` (`None`: never set).
fn bucket(versioning: Option<BucketVersioningStatus>) -> String {
    let name = format!("state-{}", unique_name());
    let s3 = admin();
    rt().block_on(async {
        s3.create_bucket().bucket(&name).send().await.unwrap();
        if let Some(status) = versioning {
            set_versioning(&s3, &name, status).await;
        }
    });
    name
}

async fn set_versioning(s3: &aws_sdk_s3::Client, bucket: &str, status: BucketVersioningStatus) {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .unwrap();
}

fn location(bucket: &str, key_prefix: &str, cloud: &str) -> S3Location {
    S3Location {
        bucket: bucket.to_string(),
        key_prefix: key_prefix.to_string(),
        region: REGION.to_string(),
        cloud: cloud.to_string(),
    }
}

fn connect(loc: S3Location) -> Result<S3Backend, StateError> {
    S3Backend::with_sdk_config(loc, &sdk_config())
}

/// One versioned bucket for the process-level scenarios (`team_state.rs`), each under
/// its own key prefix.
pub(crate) fn shared_bucket() -> &'static str {
    static BUCKET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUCKET.get_or_init(|| bucket(Some(BucketVersioningStatus::Enabled)))
}

/// The bytes of `key` in `bucket`, if it exists.
pub(crate) fn object(bucket: &str, key: &str) -> Option<Vec<u8>> {
    let s3 = admin();
    rt().block_on(async {
        match s3.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => Some(out.body.collect().await.unwrap().into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
            Err(e) => panic!("get s3://{bucket}/{key}: {e:?}"),
        }
    })
}

/// Deletes `key` in `bucket`.
pub(crate) fn delete(bucket: &str, key: &str) {
    let s3 = admin();
    rt().block_on(async {
        s3.delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .unwrap();
    });
}

/// Every key in `bucket`.
pub(crate) fn keys(bucket: &str) -> BTreeSet<String> {
    let s3 = admin();
    rt().block_on(async {
        let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    })
}

#[track_caller]
fn setup_message(r: Result<S3Backend, StateError>) -> String {
    match r {
        Err(StateError::Setup { path, message }) => {
            assert!(path.to_str().unwrap().starts_with("s3://"), "{path:?}");
            message
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
}

#[test]
fn a_missing_bucket_or_one_without_versioning_is_a_setup_error() {
    let missing = format!("state-{}-missing", unique_name());
    let m = setup_message(connect(location(&missing, "", "aws")));
    assert!(
        m.contains(&format!("bucket `{missing}` does not exist")),
        "{m}"
    );
    assert!(
        m.contains(&format!("create-bucket --bucket {missing}")),
        "{m}"
    );
    assert!(m.contains("versioning"), "{m}");

    let plain = bucket(None);
    let m = setup_message(connect(location(&plain, "", "aws")));
    assert!(
        m.contains(&format!("versioning is not enabled on bucket `{plain}`")),
        "{m}"
    );
    assert!(m.contains("never enabled"), "{m}");
    assert!(m.contains("rolled back"), "{m}");
    assert!(
        m.contains(&format!("put-bucket-versioning --bucket {plain}")),
        "{m}"
    );

    let s3 = admin();
    rt().block_on(set_versioning(
        &s3,
        &plain,
        BucketVersioningStatus::Suspended,
    ));
    let m = setup_message(connect(location(&plain, "", "aws")));
    assert!(m.contains("versioning") && m.contains("suspended"), "{m}");

    rt().block_on(set_versioning(&s3, &plain, BucketVersioningStatus::Enabled));
    connect(location(&plain, "", "aws")).unwrap();
    // Nothing was written by the checks.
    assert!(keys(&plain).is_empty());
}

#[test]
fn each_cloud_has_a_state_and_a_lease_object_under_the_key_prefix() {
    let b = bucket(Some(BucketVersioningStatus::Enabled));
    for cloud in ["aws", "gcp"] {
        let backend = connect(location(&b, "team/prod", cloud)).unwrap();
        backend
            .put(Object::State, b"{}", &Precondition::Absent)
            .unwrap();
        backend
            .put(Object::Lease, b"{}", &Precondition::Absent)
            .unwrap();
        assert_eq!(
            backend.describe(Object::Lease),
            format!("s3://{b}/team/prod/{cloud}.state.json.lock")
        );
    }
    let want: BTreeSet<String> = [
        "team/prod/aws.state.json",
        "team/prod/aws.state.json.lock",
        "team/prod/gcp.state.json",
        "team/prod/gcp.state.json.lock",
    ]
    .map(String::from)
    .into();
    assert_eq!(keys(&b), want);

    let top = bucket(Some(BucketVersioningStatus::Enabled));
    let backend = connect(location(&top, "", "aws")).unwrap();
    for object in [Object::State, Object::Lease] {
        backend.put(object, b"{}", &Precondition::Absent).unwrap();
    }
    let want: BTreeSet<String> = ["aws.state.json", "aws.state.json.lock"]
        .map(String::from)
        .into();
    assert_eq!(keys(&top), want);
}

#[test]
fn s3_backend_passes_the_conformance_suite() {
    flyteinfra_state::conformance::run_all(&|| -> flyteinfra_state::conformance::Handles {
        let b = bucket(Some(BucketVersioningStatus::Enabled));
        // Each handle connects on its own, as two processes would.
        Box::new(move || Arc::new(connect(location(&b, "team", "aws")).unwrap()))
    });
}

/// Every write is kept as a version; a deleted object leaves a delete marker, and a
/// create-only write succeeds over it.
#[test]
fn every_write_is_kept_as_a_version() {
    let b = bucket(Some(BucketVersioningStatus::Enabled));
    let backend = connect(location(&b, "", "aws")).unwrap();
    let v1 = backend
        .put(Object::State, b"{\"serial\":1}", &Precondition::Absent)
        .unwrap();
    let v2 = backend
        .put(
            Object::State,
            b"{\"serial\":2}",
            &Precondition::At(v1.clone()),
        )
        .unwrap();
    assert_ne!(v1, v2);
    let stale = backend.delete(Object::State, &v1);
    assert!(matches!(stale, Err(StateError::Moved { .. })), "{stale:?}");
    backend.delete(Object::State, &v2).unwrap();
    assert!(backend.get(Object::State).unwrap().is_none());
    let gone = backend.delete(Object::State, &v2);
    assert!(matches!(gone, Err(StateError::Moved { .. })), "{gone:?}");
    let over_deleted = backend.put(Object::State, b"{\"serial\":2}", &Precondition::At(v2));
    assert!(
        matches!(over_deleted, Err(StateError::Moved { .. })),
        "{over_deleted:?}"
    );
    backend
        .put(Object::State, b"{\"serial\":3}", &Precondition::Absent)
        .unwrap();

    let s3 = admin();
    let (versions, markers) = rt().block_on(async {
        let out = s3.list_object_versions().bucket(&b).send().await.unwrap();
        (out.versions().len(), out.delete_markers().len())
    });
    assert_eq!((versions, markers), (3, 1));
}

/// The CLI saves state from async code: connecting and every call work inside a runtime
/// (a `Runtime::block_on` there would panic), and each call is one request.
#[test]
fn the_backend_works_inside_a_tokio_runtime_one_request_per_call() {
    let b = bucket(Some(BucketVersioningStatus::Enabled));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let backend = connect(location(&b, "p", "azure")).unwrap();
        assert_eq!(backend.calls(), 1, "the versioning check");
        let v = backend
            .put(Object::State, b"{}", &Precondition::Absent)
            .unwrap();
        let got = backend.get(Object::State).unwrap().unwrap();
        assert_eq!((got.bytes.as_slice(), &got.version), (&b"{}"[..], &v));
        backend.delete(Object::State, &v).unwrap();
        assert_eq!(backend.calls(), 4);
        // A clone shares the client and the count.
        let clone = backend.clone();
        drop(backend);
        assert!(clone.get(Object::State).unwrap().is_none());
        assert_eq!(clone.calls(), 5);
    });
}

#[test]
fn a_bucket_in_another_region_is_a_setup_error_naming_its_region() {
    let name = format!("state-{}", unique_name());
    let s3 = admin();
    rt().block_on(async {
        let home = CreateBucketConfiguration::builder()
            .location_constraint(BucketLocationConstraint::EuWest1)
            .build();
        s3.create_bucket()
            .bucket(&name)
            .create_bucket_configuration(home)
            .send()
            .await
            .unwrap();
    });
    let m = setup_message(connect(location(&name, "", "aws")));
    assert!(
        m.contains(&format!("cannot use bucket `{name}` in region `us-east-1`")),
        "{m}"
    );
    assert!(m.contains("PermanentRedirect"), "{m}");
    assert!(m.contains("the bucket is in region `eu-west-1`"), "{m}");
}

/// The SDK retries a conditional write whose answer was lost; the retry finds the first
/// attempt's write and comes back as `Moved`, so the caller re-reads and finds its own
/// bytes. Nothing else is ever in the object.
#[test]
fn a_conditional_write_whose_answer_is_lost_is_moved_never_a_wrong_success() {
    let proxy = Proxy::start(crate::moto::upstream());
    let b = bucket(Some(BucketVersioningStatus::Enabled));
    let config = sdk_config_for(proxy.url(), REGION);
    let backends: Vec<S3Backend> = (0..16)
        .map(|i| S3Backend::with_sdk_config(location(&b, "", &format!("c{i}")), &config).unwrap())
        .collect();
    {
        let mut r = proxy.rules();
        r.rng = Rng::new(22);
        r.lose_response = 0.5;
    }
    let mut moved = 0;
    for (i, backend) in backends.iter().enumerate() {
        let bytes = format!("{{\"writer\":{i}}}");
        let put = backend.put(Object::State, bytes.as_bytes(), &Precondition::Absent);
        proxy.rules().clear();
        let now = backend.get(Object::State).unwrap();
        match put {
            Ok(v) => assert_eq!(now.unwrap().version, v),
            Err(StateError::Moved { .. }) => {
                moved += 1;
                assert_eq!(now.unwrap().bytes, bytes.as_bytes());
            }
            // Every attempt's answer lost: the write may or may not have happened.
            Err(StateError::Write { .. }) => {
                assert!(now.is_none_or(|s| s.bytes == bytes.as_bytes()));
            }
            Err(e) => panic!("{e:?}"),
        }
        proxy.rules().lose_response = 0.5;
    }
    assert!(moved > 0, "no lost answer was retried: {}", proxy.stats());
}

/// A failing S3 is a write error after the SDK's attempts, and the object is unchanged.
#[test]
fn a_failing_s3_is_a_write_error_after_three_attempts() {
    let proxy = Proxy::start(crate::moto::upstream());
    let b = bucket(Some(BucketVersioningStatus::Enabled));
    let backend = S3Backend::with_sdk_config(
        location(&b, "", "aws"),
        &sdk_config_for(proxy.url(), REGION),
    )
    .unwrap();
    let v = backend
        .put(Object::State, b"{}", &Precondition::Absent)
        .unwrap();
    let before = backend.calls();
    proxy.rules().server_error = 1.0;
    let put = backend.put(Object::State, b"{\"x\":1}", &Precondition::At(v.clone()));
    assert_eq!(backend.calls() - before, 3);
    let Err(StateError::Write { path, source }) = put else {
        panic!("{put:?}")
    };
    assert_eq!(path.to_str().unwrap(), format!("s3://{b}/aws.state.json"));
    assert!(source.to_string().starts_with("PutObject: "), "{source}");
    let read = backend.get(Object::State);
    assert!(matches!(read, Err(StateError::Read { .. })), "{read:?}");
    proxy.rules().clear();
    assert_eq!(backend.get(Object::State).unwrap().unwrap().version, v);
}

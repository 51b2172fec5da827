//! The S3 backend: the state and its lease as two objects in a versioned bucket, written
//! with S3's conditional writes (`If-None-Match: *`, `If-Match: <etag>`).
//!
//! [`Backend`] is synchronous, but its callers are sometimes inside a tokio runtime (the
//! CLI saves state from async code), where blocking on a runtime panics. So each backend
//! runs the SDK on its own current-thread runtime in a background thread (a
//! `Worker`); a call sends its request there and waits for the answer on a plain
//! channel.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::BucketVersioningStatus;

use crate::backend::{Backend, Object, Precondition, Stored, Version, object_key};
use crate::error::StateError;
use crate::worker::Worker;
use crate::worker::aws::{retry_config, timeout_config};
use crate::worker::chain;

/// One call, reading the body included: the backstop that keeps a caller from waiting
/// forever on the runtime thread.
const CALL_LIMIT: Duration = Duration::from_secs(90);

/// Where a deployment's state lives in S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket; it must exist and have versioning enabled.
    pub bucket: String,
    /// The folder of the state objects in the bucket (`team/prod`); empty for the top.
    pub key_prefix: String,
    /// The bucket's region.
    pub region: String,
    /// The cloud whose state this is: each cloud has its own objects.
    pub cloud: String,
}

impl S3Location {
    /// The key of `object`: `<key_prefix>/<cloud>.state.json` for the state, the same
    /// with `.lock` for the lease, without a leading `/` when the prefix is empty.
    pub fn key(&self, object: Object) -> String {
        object_key(&self.key_prefix, &self.cloud, object)
    }

    /// `s3://<bucket>/<key>` of `object`.
    pub fn url(&self, object: Object) -> String {
        format!("s3://{}/{}", self.bucket, self.key(object))
    }
}

/// The state and lease of one cloud's deployment in an S3 bucket with versioning (every
/// state version is kept). Clones share one SDK client and runtime thread, which stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct S3Backend {
    loc: Arc<S3Location>,
    client: aws_sdk_s3::Client,
    worker: Worker,
    calls: CallCounter,
}

impl fmt::Debug for S3Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Backend")
            .field("location", &*self.loc)
            .finish_non_exhaustive()
    }
}

impl S3Backend {
    /// The backend for `loc`, with credentials and endpoint from the standard AWS chain
    /// and environment (`AWS_PROFILE`, SSO, `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...).
    /// Checks that the bucket exists and has versioning enabled.
    ///
    /// # Errors
    /// [`StateError::InvalidCloud`] for a cloud name that cannot name an object;
    /// [`StateError::Setup`] when the bucket is missing, versioning is not enabled, or the
    /// bucket cannot be reached (credentials, permissions, region, network).
    pub fn connect(loc: S3Location) -> Result<S3Backend, StateError> {
        let region = Region::new(loc.region.clone());
        Self::start(loc, async move {
            aws_config::defaults(BehaviorVersion::latest())
                .region(region)
                .retry_config(retry_config())
                .timeout_config(timeout_config())
                .load()
                .await
        })
    }

    /// The same, with the SDK settings of `config` (an explicit endpoint and static
    /// credentials: tests, emulators). The region is `loc.region`.
    ///
    /// # Errors
    /// As [`connect`](S3Backend::connect).
    pub fn with_sdk_config(loc: S3Location, config: &SdkConfig) -> Result<S3Backend, StateError> {
        let config = config.clone();
        Self::start(loc, async move { config })
    }

    fn start(
        loc: S3Location,
        config: impl Future<Output = SdkConfig> + Send + 'static,
    ) -> Result<S3Backend, StateError> {
        crate::backend::check_cloud(&loc.cloud)?;
        let (worker, _) = Worker::start("s3", "S3", CALL_LIMIT).map_err(|e| {
            setup(
                &loc,
                format!("cannot start the thread of the S3 client: {e}"),
            )
        })?;
        let calls = CallCounter::default();
        let counter = calls.clone();
        let region = loc.region.clone();
        let client = worker
            .run(async move { client(&config.await, &region, counter) })
            .map_err(|e| setup(&loc, e))?;
        let backend = S3Backend {
            loc: Arc::new(loc),
            client,
            worker,
            calls,
        };
        backend.check_bucket()?;
        Ok(backend)
    }

    /// Requests this backend (and its clones) sent to S3 so far, each attempt counted.
    pub fn calls(&self) -> u64 {
        self.calls.0.load(Ordering::Relaxed)
    }

    /// The bucket must exist and keep every version of its objects.
    fn check_bucket(&self) -> Result<(), StateError> {
        let loc = &*self.loc;
        let req = self.client.get_bucket_versioning().bucket(&loc.bucket);
        let status = self.call(async move {
            match req.send().await {
                Ok(out) => Ok(out.status().cloned()),
                Err(e) => Err(Failure::of("GetBucketVersioning", &e)),
            }
        });
        let bucket = &loc.bucket;
        let enable = format!(
            "`aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled`"
        );
        let found = match status {
            Ok(Some(BucketVersioningStatus::Enabled)) => return Ok(()),
            Ok(Some(BucketVersioningStatus::Suspended)) => "it is suspended".to_string(),
            Ok(None) => "it was never enabled".to_string(),
            Ok(Some(other)) => format!("its status is `{}`", other.as_str()),
            Err(f) if f.code.as_deref() == Some("NoSuchBucket") || f.status == Some(404) => {
                let location = if loc.region == "us-east-1" {
                    String::new()
                } else {
                    format!(
                        " --create-bucket-configuration LocationConstraint={}",
                        loc.region
                    )
                };
                return Err(setup(
                    loc,
                    format!(
                        "bucket `{bucket}` does not exist: create it, with versioning enabled, \
                         before keeping state in it: `aws s3api create-bucket --bucket {bucket} \
                         --region {}{location}` then {enable}",
                        loc.region
                    ),
                ));
            }
            Err(f) => {
                let hint = match (&f.bucket_region, f.status) {
                    (Some(r), _) if *r != loc.region => format!(
                        "; the bucket is in region `{r}`, not `{}`: set `region: {r}` in the \
                         `state.s3` section",
                        loc.region
                    ),
                    (_, Some(403)) => "; check the AWS credentials (AWS_PROFILE, `aws sso \
                         login`, AWS_ACCESS_KEY_ID) and that they allow s3:GetBucketVersioning, \
                         s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket"
                        .to_string(),
                    (_, None) => "; check the AWS credentials (AWS_PROFILE, `aws sso login`, \
                         AWS_ACCESS_KEY_ID) and the network"
                        .to_string(),
                    _ => String::new(),
                };
                return Err(setup(
                    loc,
                    format!(
                        "cannot use bucket `{bucket}` in region `{}`: {}{hint}",
                        loc.region, f.text
                    ),
                ));
            }
        };
        Err(setup(
            loc,
            format!(
                "versioning is not enabled on bucket `{bucket}` ({found}): flyteinfra keeps \
                 state only in a versioned bucket, so that every state version is kept and a \
                 bad write can be rolled back; enable it with {enable}"
            ),
        ))
    }

    /// Runs `fut` on the runtime thread and waits for it.
    fn call<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, Failure>> + Send + 'static,
    ) -> Result<T, Failure> {
        self.worker.run(fut).map_err(Failure::other)?
    }

    fn path(&self, object: Object) -> PathBuf {
        PathBuf::from(self.loc.url(object))
    }

    /// The error of a failed write: [`StateError::Moved`] when the precondition failed.
    fn write_error(&self, object: Object, f: Failure, expected_existing: bool) -> StateError {
        // 409: a concurrent conditional write to the same key won.
        if matches!(f.status, Some(412 | 409)) || (expected_existing && f.missing_key()) {
            StateError::Moved {
                path: self.path(object),
            }
        } else {
            StateError::Write {
                path: self.path(object),
                source: io::Error::other(f.text),
            }
        }
    }
}

impl Backend for S3Backend {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        let req = self
            .client
            .get_object()
            .bucket(&self.loc.bucket)
            .key(self.loc.key(object));
        let got = self.call(async move {
            let out = match req.send().await {
                Ok(out) => out,
                Err(e) => {
                    let f = Failure::of("GetObject", &e);
                    return if f.missing_key() { Ok(None) } else { Err(f) };
                }
            };
            let etag = out.e_tag().map(str::to_string);
            let body = out.body.collect().await.map_err(|e| {
                Failure::other(format!("GetObject: reading the object: {}", chain(&e)))
            })?;
            Ok(Some((body.into_bytes().to_vec(), etag)))
        });
        let read_error = |text: String| StateError::Read {
            path: self.path(object),
            source: io::Error::other(text),
        };
        match got {
            Ok(None) => Ok(None),
            Ok(Some((bytes, Some(etag)))) => Ok(Some(Stored {
                bytes,
                version: Version::new(etag),
            })),
            Ok(Some((_, None))) => Err(read_error("GetObject: the answer has no ETag".into())),
            Err(f) => Err(read_error(f.text)),
        }
    }

    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        let req = self
            .client
            .put_object()
            .bucket(&self.loc.bucket)
            .key(self.loc.key(object))
            .content_type("application/json")
            .body(ByteStream::from(bytes.to_vec()));
        let req = match expect {
            Precondition::Absent => req.if_none_match("*"),
            Precondition::At(v) => req.if_match(v.as_str()),
        };
        let put = self.call(async move {
            match req.send().await {
                Ok(out) => Ok(out.e_tag().map(str::to_string)),
                Err(e) => Err(Failure::of("PutObject", &e)),
            }
        });
        match put {
            Ok(Some(etag)) => Ok(Version::new(etag)),
            Ok(None) => Err(StateError::Write {
                path: self.path(object),
                source: io::Error::other("PutObject: the answer has no ETag"),
            }),
            Err(f) => Err(self.write_error(object, f, matches!(expect, Precondition::At(_)))),
        }
    }

    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        let req = self
            .client
            .delete_object()
            .bucket(&self.loc.bucket)
            .key(self.loc.key(object))
            .if_match(version.as_str());
        let deleted = self.call(async move {
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e) => Err(Failure::of("DeleteObject", &e)),
            }
        });
        deleted.map_err(|f| self.write_error(object, f, true))
    }

    fn describe(&self, object: Object) -> String {
        self.loc.url(object)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
}

fn setup(loc: &S3Location, message: String) -> StateError {
    StateError::Setup {
        path: PathBuf::from(format!("s3://{}", loc.bucket)),
        message,
    }
}

fn client(config: &SdkConfig, region: &str, calls: CallCounter) -> aws_sdk_s3::Client {
    // A custom endpoint (moto, LocalStack, MinIO) does not serve bucket subdomains.
    let custom_endpoint =
        config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let conf = aws_sdk_s3::config::Builder::from(config)
        .region(Region::new(region.to_string()))
        .force_path_style(custom_endpoint)
        .retry_config(retry_config())
        .timeout_config(timeout_config())
        .interceptor(calls)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A failed request, reduced to what decides its error.
#[derive(Debug)]
struct Failure {
    status: Option<u16>,
    code: Option<String>,
    /// The bucket's region, when S3 refused a request signed for another one.
    bucket_region: Option<String>,
    text: String,
}

impl Failure {
    fn of<E>(op: &str, e: &SdkError<E, HttpResponse>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let raw = e.raw_response();
        let status = raw.map(|r| r.status().as_u16());
        // S3's own words when it answered; the SDK's error chain otherwise (no answer,
        // no credentials), without `DisplayErrorContext`'s debug dump.
        let text = match (e.code(), status) {
            (Some(code), Some(status)) => format!(
                "{op}: {code}: {} (HTTP {status})",
                e.message().unwrap_or("no message")
            ),
            _ => format!("{op}: {}", chain(e)),
        };
        Failure {
            status,
            code: e.code().map(str::to_string),
            bucket_region: raw
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_string),
            text,
        }
    }

    fn other(text: String) -> Failure {
        Failure {
            status: None,
            code: None,
            bucket_region: None,
            text,
        }
    }

    /// The key is missing (a 404 that is not about the bucket).
    fn missing_key(&self) -> bool {
        self.code.as_deref() == Some("NoSuchKey")
            || (self.status == Some(404) && self.code.as_deref() != Some("NoSuchBucket"))
    }
}

/// Counts every request sent (each attempt).
#[derive(Clone, Debug, Default)]
struct CallCounter(Arc<AtomicU64>);

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "flyteinfra-state-s3-calls"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(prefix: &str, cloud: &str) -> S3Location {
        S3Location {
            bucket: "b".into(),
            key_prefix: prefix.into(),
            region: "us-east-1".into(),
            cloud: cloud.into(),
        }
    }

    #[test]
    fn keys_sit_under_the_prefix_one_pair_per_cloud() {
        let l = loc("team/prod", "aws");
        assert_eq!(l.key(Object::State), "team/prod/aws.state.json");
        assert_eq!(l.key(Object::Lease), "team/prod/aws.state.json.lock");
        assert_eq!(l.url(Object::State), "s3://b/team/prod/aws.state.json");
        assert_eq!(
            loc("team/prod/", "gcp").key(Object::State),
            "team/prod/gcp.state.json"
        );
        assert_eq!(loc("", "aws").key(Object::Lease), "aws.state.json.lock");
    }

    #[test]
    fn a_cloud_that_cannot_name_an_object_is_refused_before_any_request() {
        for bad in ["", "AWS", "a/b", "../x"] {
            let e = S3Backend::connect(loc("", bad)).unwrap_err();
            assert!(matches!(e, StateError::InvalidCloud { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn an_unreachable_endpoint_is_a_setup_error_naming_the_bucket() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("k", "s", None, None, "static"),
            ))
            .build();
        let e = S3Backend::with_sdk_config(loc("", "aws"), &config).unwrap_err();
        let StateError::Setup { path, message } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(path, &PathBuf::from("s3://b"));
        assert!(message.contains("GetBucketVersioning"), "{message}");
        assert!(message.contains("network"), "{message}");
    }
}

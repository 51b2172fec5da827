//! The Azure Blob backend: the state and its lease as two blobs in a container, written
//! with Azure's conditional writes (`If-None-Match: *`, `If-Match: <etag>`); a version is
//! the blob's ETag. The lease blob also carries a native Azure blob lease.
//!
//! # The native lease
//! The generic [`Lease`](crate::Lease) needs only the conditional writes. On top of them the
//! lock blob (the lease object) carries an Azure blob lease of [`NATIVE_LEASE`] seconds,
//! never Azure's infinite one, whose id only the holding process knows, so that Azure
//! itself refuses a write without it:
//! - the backend that creates the lock blob acquires a native lease on it, conditioned on
//!   the ETag it just wrote, and remembers the lease id and that ETag;
//! - a write over the ETag it remembers (a renewal) renews the native lease, then writes
//!   with `If-Match` and the lease id; its delete (the release) does the same;
//! - any other write over the lock blob (a waiter taking over after a full TTL, a holder
//!   whose remembered ETag is stale because an answer was lost) first breaks the native
//!   lease at once, only at the ETag it expects (so a stale waiter breaks nobody's lease),
//!   then writes with `If-Match`, then acquires its own native lease; `state unlock
//!   --force` breaks, then deletes with `If-Match`.
//!
//! A holder whose native lease was broken gets [`StateError::Moved`] on its next renewal
//! even when the ETag still matches, and the generic lease then reads the record and sees
//! it lost. A native lease that expired (a holder paused for over a minute) is renewed
//! by the holder's next write: Azure renews an expired lease as long as the blob was not
//! written or leased since. If acquiring the native lease fails after the write landed,
//! the write still succeeds (the ETag fences on its own) and the next write over the lock
//! blob takes the breaking path, which acquires it again.
//!
//! Why on the lock blob and not the state blob: the state blob may not exist yet when the
//! lease is taken; a stalled holder finds both its ETag and its lease id refused once it
//! was taken over; and a holder killed with `kill -9` leaves a native lease that expires
//! within a minute on its own, which a waiter breaks anyway when it takes over after the
//! TTL. The state blob is fenced by [`StateManager`](crate::StateManager)'s conditional
//! writes, as on every backend.
//!
//! Lease operations do not change a blob's ETag (as Azure documents; Azurite 3.35 does the
//! same), so the version of a write followed by an acquire is the write's ETag; the
//! acquire's own ETag is used when it answers one.
//!
//! # The container
//! It must exist (checked on connect). Blob versioning and soft delete should be on, so
//! that every state version is kept and a bad write can be rolled back; neither can be
//! read from the data plane with a data-plane role, so they are not checked here.
//!
//! # Access
//! On Azure every request carries an Entra ID token for `https://storage.azure.com` from
//! the caller's credential chain (the identity needs Storage Blob Data Contributor on the
//! container or account). Against Azurite a loopback endpoint with an account SAS in its
//! query stands for every account (the SDK has no shared-key authentication, and a token
//! needs https); the SAS never appears in a message.
//!
//! As for S3, the SDK runs on the backend's own runtime thread (a `Worker`), so that
//! callers inside a tokio runtime can block on it.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{
    ClientOptions, Context, Etag, ExponentialRetryOptions, Request, RequestContent, RetryOptions,
    Url,
};
use azure_storage_blob::models::{
    BlobClientAcquireLeaseOptions, BlobClientAcquireLeaseResultHeaders,
    BlobClientBreakLeaseOptions, BlobClientDeleteOptions, BlobClientRenewLeaseOptions,
    BlobClientUploadOptions, StorageErrorCode,
};
use azure_storage_blob::{
    BlobClient, BlobClientOptions, BlobContainerClient, BlobContainerClientOptions, StorageError,
};

use crate::backend::{
    Backend, Object, Precondition, Stored, Version, is_loopback_host, object_key,
};
use crate::error::StateError;
use crate::worker::{Worker, chain};

/// One backend call, every request and retry of it and the body included: the backstop
/// that keeps a caller from waiting forever on the runtime thread.
const CALL_LIMIT: Duration = Duration::from_secs(90);

/// One attempt of one request, until the answer's headers.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(20);

/// Retries after the first attempt, of throttling, 5xx and lost connections. A conditional
/// write retried after its first answer was lost finds its own write and comes back 412,
/// which is [`StateError::Moved`]: the lease and the manager re-read and see what happened.
const SDK_RETRIES: u32 = 2;

/// The native lease's duration in seconds: Azure's longest finite lease (15–60 s).
pub const NATIVE_LEASE: i32 = 60;

/// The longest Azure-supplied text a message carries.
const MAX_TEXT: usize = 400;

/// Where a deployment's state lives in Azure Blob Storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzBlobLocation {
    /// The storage account (3–24 lowercase letters and digits).
    pub account: String,
    /// The container; it must exist.
    pub container: String,
    /// The folder of the state blobs in the container (`team/prod`); empty for the top.
    pub key_prefix: String,
    /// The cloud whose state this is: each cloud has its own blobs.
    pub cloud: String,
}

impl AzBlobLocation {
    /// The blob name of `object`: `<key_prefix>/<cloud>.state.json` for the state, the same
    /// with `.lock` for the lease, without a leading `/` when the prefix is empty.
    pub fn key(&self, object: Object) -> String {
        object_key(&self.key_prefix, &self.cloud, object)
    }

    /// `https://<account>.blob.core.windows.net/<container>/<key>` of `object`, never with
    /// a SAS (also against Azurite: it names the blob for people).
    pub fn url(&self, object: Object) -> String {
        format!("{}/{}", self.container_url(), self.key(object))
    }

    fn container_url(&self) -> String {
        format!(
            "https://{}.blob.core.windows.net/{}",
            self.account, self.container
        )
    }
}

/// How the backend authenticates.
#[derive(Clone)]
pub enum AzBlobAccess {
    /// Entra ID tokens from this credential (the Azure credential chain), over
    /// `https://<account>.blob.core.windows.net`.
    Token(Arc<dyn TokenCredential>),
    /// A loopback service URL standing for every account (Azurite:
    /// `http://127.0.0.1:PORT/devstoreaccount1?<SAS>`), with the SAS query sent on every
    /// request and no token. Refused for any host but a loopback one.
    Local {
        /// The service URL with its SAS query (no trailing slash needed).
        endpoint_with_sas: String,
    },
}

impl fmt::Debug for AzBlobAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AzBlobAccess::Token(_) => f.write_str("Token(..)"),
            AzBlobAccess::Local { endpoint_with_sas } => f
                .debug_struct("Local")
                .field("endpoint", &without_query(endpoint_with_sas))
                .finish_non_exhaustive(),
        }
    }
}

/// The native lease this process holds on the lock blob.
#[derive(Clone, Debug)]
struct Native {
    id: String,
    /// The lock blob's ETag when this process last wrote it.
    etag: Version,
}

/// The state and lease of one cloud's deployment in an Azure Blob container. Clones share
/// one client, runtime thread and native lease; the thread stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct AzBlobBackend {
    loc: Arc<AzBlobLocation>,
    container: Arc<BlobContainerClient>,
    state: Arc<BlobClient>,
    lock: Arc<BlobClient>,
    worker: Worker,
    calls: Arc<AtomicU64>,
    native: Arc<Mutex<Option<Native>>>,
    redactor: Arc<Redactor>,
}

impl fmt::Debug for AzBlobBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzBlobBackend")
            .field("location", &*self.loc)
            .finish_non_exhaustive()
    }
}

impl AzBlobBackend {
    /// The backend for `loc` with `access`. Checks that the container exists.
    ///
    /// # Errors
    /// [`StateError::InvalidCloud`] for a cloud name that cannot name a blob;
    /// [`StateError::Setup`] for an account or container name Azure refuses, a
    /// [`AzBlobAccess::Local`] endpoint that is not a loopback URL, a missing container, or
    /// one that cannot be reached (credentials, role, network).
    pub fn connect(loc: AzBlobLocation, access: AzBlobAccess) -> Result<AzBlobBackend, StateError> {
        crate::backend::check_cloud(&loc.cloud)?;
        if let Some(why) = container_name_problem(&loc.container) {
            return Err(setup(&loc, why));
        }
        let (base, credential, redactor) = match access {
            AzBlobAccess::Token(credential) => {
                if let Some(why) = account_name_problem(&loc.account) {
                    return Err(setup(&loc, why));
                }
                let url = Url::parse(&format!("https://{}.blob.core.windows.net", loc.account))
                    .map_err(|e| setup(&loc, format!("storage account `{}`: {e}", loc.account)))?;
                (url, Some(credential), Redactor::default())
            }
            AzBlobAccess::Local { endpoint_with_sas } => {
                let url = local_endpoint(&endpoint_with_sas).map_err(|why| setup(&loc, why))?;
                let redactor = Redactor::of(&url);
                (url, None, redactor)
            }
        };
        let calls = Arc::new(AtomicU64::new(0));
        let client_options = ClientOptions {
            per_try_policies: vec![Arc::new(Attempt(Arc::clone(&calls)))],
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_retries: SDK_RETRIES,
                max_total_elapsed: azure_core::time::Duration::seconds(30),
                max_delay: azure_core::time::Duration::seconds(2),
            }),
            ..Default::default()
        };
        let container_url = with_segments(&base, [loc.container.as_str()]);
        let client_error = |e: azure_core::Error| {
            setup(
                &loc,
                redactor.text(&format!("cannot make the blob client: {}", chain(&e))),
            )
        };
        let container = BlobContainerClient::new(
            container_url.clone(),
            credential.clone(),
            Some(BlobContainerClientOptions {
                client_options: client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(client_error)?;
        let blob = |object: Object| {
            let key = loc.key(object);
            BlobClient::new(
                with_segments(&container_url, key.split('/')),
                credential.clone(),
                Some(BlobClientOptions {
                    client_options: client_options.clone(),
                    ..Default::default()
                }),
            )
            .map_err(client_error)
        };
        let (state, lock) = (blob(Object::State)?, blob(Object::Lease)?);
        let (worker, _) =
            Worker::start("azblob", "Azure Blob Storage", CALL_LIMIT).map_err(|e| {
                setup(
                    &loc,
                    format!("cannot start the thread of the Azure Blob Storage client: {e}"),
                )
            })?;
        let backend = AzBlobBackend {
            loc: Arc::new(loc),
            container: Arc::new(container),
            state: Arc::new(state),
            lock: Arc::new(lock),
            worker,
            calls,
            native: Arc::new(Mutex::new(None)),
            redactor: Arc::new(redactor),
        };
        backend.check_container()?;
        Ok(backend)
    }

    /// Requests this backend (and its clones) sent so far, each attempt counted.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The container must exist.
    fn check_container(&self) -> Result<(), StateError> {
        let container = Arc::clone(&self.container);
        let checked = self.call(async move {
            container
                .get_properties(None)
                .await
                .map(drop)
                .map_err(|e| Failure::of("Get Container Properties", e))
        });
        let Err(f) = checked else {
            return Ok(());
        };
        let loc = &*self.loc;
        let (account, container) = (&loc.account, &loc.container);
        if f.is(404, StorageErrorCode::ContainerNotFound) {
            return Err(setup(
                loc,
                format!(
                    "container `{container}` does not exist in storage account `{account}`: \
                     create it before keeping state in it: `az storage container create \
                     --account-name {account} --name {container} --auth-mode login`; and turn \
                     on blob versioning, so that every state version is kept: `az storage \
                     account blob-service-properties update --account-name {account} \
                     --enable-versioning true`"
                ),
            ));
        }
        let hint = match f.status {
            Some(401 | 403) => {
                "; check the Azure credentials (`az login`, AZURE_CLIENT_ID, a managed identity), \
                 that the identity has the Storage Blob Data Contributor role on the container \
                 or account, and that the account's network rules let this machine in"
            }
            None => {
                "; check the Azure credentials (`az login`, AZURE_CLIENT_ID, a managed \
                 identity) and the network"
            }
            _ => "",
        };
        Err(setup(
            loc,
            format!(
                "cannot use container `{container}` of storage account `{account}`: {}{hint}",
                self.redactor.text(&f.text)
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

    fn client(&self, object: Object) -> Arc<BlobClient> {
        match object {
            Object::State => Arc::clone(&self.state),
            Object::Lease => Arc::clone(&self.lock),
        }
    }

    fn path(&self, object: Object) -> PathBuf {
        PathBuf::from(self.loc.url(object))
    }

    /// The error of a failed write or delete: [`StateError::Moved`] when a precondition
    /// (the ETag, absence, or the native lease) failed.
    fn write_error(&self, object: Object, f: &Failure, expected_existing: bool) -> StateError {
        if f.moved(expected_existing) {
            StateError::Moved {
                path: self.path(object),
            }
        } else {
            StateError::Write {
                path: self.path(object),
                source: io::Error::other(self.redactor.text(&f.text)),
            }
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<Native>> {
        self.native.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A write of the lock blob, with the native lease as the module describes. The native
    /// lease stays locked for the whole sequence, so the clones of one backend take turns.
    fn put_lease(&self, bytes: &[u8], expect: &Precondition) -> Result<Version, StateError> {
        let mut held = self.held();
        let holder = match (expect, held.as_ref()) {
            (Precondition::At(v), Some(n)) if n.etag == *v => Some(n.id.clone()),
            _ => None,
        };
        let expected_existing = matches!(expect, Precondition::At(_));
        let client = Arc::clone(&self.lock);
        let (bytes, expect) = (bytes.to_vec(), expect.clone());
        let proposed = crate::document::new_lineage();
        let written = self.call(async move {
            match (&expect, holder) {
                (Precondition::At(v), Some(id)) => {
                    renew(&client, &id, v).await?;
                    let version = upload(&client, bytes, &expect, Some(id.clone())).await?;
                    Ok((version, Some(id)))
                }
                _ => {
                    if let Precondition::At(v) = &expect {
                        break_now(&client, v).await?;
                    }
                    let version = upload(&client, bytes, &expect, None).await?;
                    // The write landed: without a native lease the ETag still fences, and the
                    // next write over the lock blob breaks and acquires again.
                    match acquire(&client, &proposed, &version).await {
                        Ok(etag) => Ok((etag.unwrap_or(version), Some(proposed))),
                        Err(_) => Ok((version, None)),
                    }
                }
            }
        });
        match written {
            Ok((version, id)) => {
                *held = id.map(|id| Native {
                    id,
                    etag: version.clone(),
                });
                Ok(version)
            }
            Err(f) => {
                let e = self.write_error(Object::Lease, &f, expected_existing);
                if matches!(e, StateError::Moved { .. }) {
                    *held = None;
                }
                Err(e)
            }
        }
    }

    /// A delete of the lock blob: the holder renews and deletes with its lease id; anyone
    /// else (`state unlock --force`) breaks the native lease first.
    fn delete_lease(&self, version: &Version) -> Result<(), StateError> {
        let mut held = self.held();
        let holder = held
            .as_ref()
            .filter(|n| n.etag == *version)
            .map(|n| n.id.clone());
        let client = Arc::clone(&self.lock);
        let version = version.clone();
        let deleted = self.call(async move {
            match holder {
                Some(id) => {
                    renew(&client, &id, &version).await?;
                    delete(&client, &version, Some(id)).await
                }
                None => {
                    break_now(&client, &version).await?;
                    delete(&client, &version, None).await
                }
            }
        });
        let result = deleted.map_err(|f| self.write_error(Object::Lease, &f, true));
        if !matches!(result, Err(StateError::Write { .. })) {
            *held = None;
        }
        result
    }
}

impl Backend for AzBlobBackend {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        let client = self.client(object);
        let got = self.call(async move {
            let out = match client.download(None).await {
                Ok(out) => out,
                Err(e) => {
                    let f = Failure::of("Get Blob", e);
                    return if f.is(404, StorageErrorCode::BlobNotFound) {
                        Ok(None)
                    } else {
                        Err(f)
                    };
                }
            };
            let etag = out.properties.etag.map(|e| e.to_string());
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| Failure::of("Get Blob: reading the blob", e))?;
            Ok(Some((body.to_vec(), etag)))
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
            Ok(Some((_, None))) => Err(read_error("Get Blob: the answer has no ETag".into())),
            Err(f) => Err(read_error(self.redactor.text(&f.text))),
        }
    }

    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        if object == Object::Lease {
            return self.put_lease(bytes, expect);
        }
        let client = self.client(object);
        let (bytes, cond) = (bytes.to_vec(), expect.clone());
        self.call(async move { upload(&client, bytes, &cond, None).await })
            .map_err(|f| self.write_error(object, &f, matches!(expect, Precondition::At(_))))
    }

    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        if object == Object::Lease {
            return self.delete_lease(version);
        }
        let client = self.client(object);
        let version = version.clone();
        self.call(async move { delete(&client, &version, None).await })
            .map_err(|f| self.write_error(object, &f, true))
    }

    fn describe(&self, object: Object) -> String {
        self.loc.url(object)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
}

/// Put Blob over `expect` (`If-None-Match: *` or `If-Match`), with `lease_id` when given.
async fn upload(
    client: &BlobClient,
    bytes: Vec<u8>,
    expect: &Precondition,
    lease_id: Option<String>,
) -> Result<Version, Failure> {
    let (if_match, if_none_match) = match expect {
        Precondition::Absent => (None, Some(Etag::from("*"))),
        Precondition::At(v) => (Some(Etag::from(v.as_str())), None),
    };
    let options = BlobClientUploadOptions {
        blob_content_type: Some("application/json".into()),
        if_match,
        if_none_match,
        lease_id,
        ..Default::default()
    };
    let out = client
        .upload(RequestContent::from(bytes), Some(options))
        .await
        .map_err(|e| Failure::of("Put Blob", e))?;
    out.etag
        .map(|e| Version::new(e.to_string()))
        .ok_or_else(|| Failure::other("Put Blob: the answer has no ETag".into()))
}

/// Delete Blob at `version`, with `lease_id` when given.
async fn delete(
    client: &BlobClient,
    version: &Version,
    lease_id: Option<String>,
) -> Result<(), Failure> {
    let options = BlobClientDeleteOptions {
        if_match: Some(Etag::from(version.as_str())),
        lease_id,
        ..Default::default()
    };
    client
        .delete(Some(options))
        .await
        .map(drop)
        .map_err(|e| Failure::of("Delete Blob", e))
}

/// Acquires a native lease with id `id` on the blob at `version`; the ETag it answers.
async fn acquire(
    client: &BlobClient,
    id: &str,
    version: &Version,
) -> Result<Option<Version>, Failure> {
    let options = BlobClientAcquireLeaseOptions {
        if_match: Some(Etag::from(version.as_str())),
        proposed_lease_id: Some(id.to_string()),
        ..Default::default()
    };
    let out = client
        .acquire_lease(NATIVE_LEASE, Some(options))
        .await
        .map_err(|e| Failure::of("Lease Blob (acquire)", e))?;
    Ok(out
        .etag()
        .ok()
        .flatten()
        .map(|e| Version::new(e.to_string())))
}

/// Renews native lease `id` on the blob at `version` (also one that expired, if nobody
/// wrote or leased the blob since).
async fn renew(client: &BlobClient, id: &str, version: &Version) -> Result<(), Failure> {
    let options = BlobClientRenewLeaseOptions {
        if_match: Some(Etag::from(version.as_str())),
        ..Default::default()
    };
    client
        .renew_lease(id.to_string(), Some(options))
        .await
        .map(drop)
        .map_err(|e| Failure::of("Lease Blob (renew)", e))
}

/// Breaks whatever native lease the blob at `version` has, at once; a blob without one is
/// fine.
async fn break_now(client: &BlobClient, version: &Version) -> Result<(), Failure> {
    let options = BlobClientBreakLeaseOptions {
        break_period: Some(0),
        if_match: Some(Etag::from(version.as_str())),
        ..Default::default()
    };
    match client.break_lease(Some(options)).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let f = Failure::of("Lease Blob (break)", e);
            if f.is(409, StorageErrorCode::LeaseNotPresentWithLeaseOperation)
                || f.is(409, StorageErrorCode::LeaseAlreadyBroken)
            {
                Ok(())
            } else {
                Err(f)
            }
        }
    }
}

/// Counts every attempt and bounds it: the SDK's HTTP client has no timeout of its own. A
/// timed-out attempt is an I/O error, which the retry policy retries.
#[derive(Debug)]
struct Attempt(Arc<AtomicU64>);

#[async_trait::async_trait]
impl Policy for Attempt {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        self.0.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(ATTEMPT_LIMIT, next[0].send(ctx, request, &next[1..])).await {
            Ok(answer) => answer,
            Err(_) => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Io,
                format!("no answer within {} s", ATTEMPT_LIMIT.as_secs()),
            )),
        }
    }
}

/// A failed request, reduced to what decides its error. `text` may hold a request URL:
/// it goes through [`Redactor::text`] before it is shown.
#[derive(Debug)]
struct Failure {
    status: Option<u16>,
    code: Option<String>,
    text: String,
}

impl Failure {
    /// The failure of the request named `op` (`Put Blob`), with Azure's error code and the
    /// first line of its message (the rest is `RequestId:`/`Time:` lines).
    fn of(op: &str, e: azure_core::Error) -> Failure {
        use azure_core::error::ErrorKind as K;
        let answered = match e.kind() {
            K::HttpResponse {
                status, error_code, ..
            } => Some((u16::from(*status), error_code.clone())),
            _ => None,
        };
        match answered {
            Some((status, error_code)) => match StorageError::try_from(e) {
                Ok(se) => {
                    let status = u16::from(se.status_code);
                    let code = se.error_code.as_ref().map(ToString::to_string);
                    let message = se
                        .message
                        .as_deref()
                        .and_then(|m| m.lines().next())
                        .unwrap_or("no message");
                    let mut text = match &code {
                        Some(code) => format!("{op}: {code}: {message} (HTTP {status})"),
                        None => format!("{op}: {message} (HTTP {status})"),
                    };
                    if let Some(detail) = &se.authentication_error_detail {
                        text.push_str(&format!(" ({})", bounded(detail)));
                    }
                    Failure {
                        status: Some(status),
                        code,
                        text,
                    }
                }
                // Not Storage's XML (a proxy's page): the status and code still decide.
                Err(e) => Failure {
                    status: Some(status),
                    code: error_code,
                    text: format!("{op}: HTTP {status}: {}", chain(&e)),
                },
            },
            None if matches!(e.kind(), K::Credential) => Failure::other(format!(
                "{op}: no Azure Storage access token: {}",
                chain(&e)
            )),
            None => Failure::other(format!("{op}: {}", chain(&e))),
        }
    }

    fn other(text: String) -> Failure {
        Failure {
            status: None,
            code: None,
            text,
        }
    }

    fn is(&self, status: u16, code: StorageErrorCode) -> bool {
        self.status == Some(status) && self.code.as_deref() == Some(code.as_ref())
    }

    /// A precondition failed: the ETag (412), the blob's absence (409), the native lease
    /// (a 412 or 409 `Lease…` code: missing, mismatched, broken, expired), or the blob is
    /// gone when it was expected (404 `BlobNotFound`; a missing container is not that).
    fn moved(&self, expected_existing: bool) -> bool {
        let lease = self.code.as_deref().is_some_and(|c| c.starts_with("Lease"));
        match self.status {
            Some(412) => true,
            Some(409) => lease || self.is(409, StorageErrorCode::BlobAlreadyExists),
            Some(404) => expected_existing && self.is(404, StorageErrorCode::BlobNotFound),
            _ => false,
        }
    }
}

/// Takes a SAS out of messages: the query of every URL, any `sig=` value, and the
/// endpoint's own signature wherever it appears.
#[derive(Debug, Default)]
struct Redactor {
    signatures: Vec<String>,
}

impl Redactor {
    fn of(endpoint: &Url) -> Redactor {
        let mut signatures: Vec<String> = endpoint
            .query_pairs()
            .filter(|(k, _)| k == "sig")
            .map(|(_, v)| v.into_owned())
            .collect();
        signatures.extend(
            endpoint
                .query()
                .unwrap_or_default()
                .split('&')
                .filter_map(|p| p.strip_prefix("sig="))
                .map(str::to_string),
        );
        signatures.retain(|s| !s.is_empty());
        Redactor { signatures }
    }

    /// `text`, redacted, at most [`MAX_TEXT`] characters.
    fn text(&self, text: &str) -> String {
        let mut out = redact(text);
        for s in &self.signatures {
            out = out.replace(s.as_str(), "REDACTED");
        }
        bounded(&out)
    }
}

/// `text` with the query of every http(s) URL and every `sig=` value replaced.
fn redact(text: &str) -> String {
    let end_of = |s: &str| {
        s.find(|c: char| c.is_whitespace() || matches!(c, ')' | '`' | '"' | '\'' | '>'))
            .unwrap_or(s.len())
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("http") {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = end_of(rest);
        let url = &rest[..end];
        match url.split_once('?') {
            Some((base, _)) if url.contains("://") => {
                out.push_str(base);
                out.push_str("?<query redacted>");
            }
            _ => out.push_str(url),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let mut text = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("sig=") {
        text.push_str(&rest[..i + 4]);
        text.push_str("REDACTED");
        rest = &rest[i + 4..];
        let end = rest.find('&').map_or(end_of(rest), |a| a.min(end_of(rest)));
        rest = &rest[end..];
    }
    text.push_str(rest);
    text
}

/// At most [`MAX_TEXT`] characters of `text`.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `url` without its query, for messages.
fn without_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(base, _)| base)
}

/// `base` with `segments` appended to its path (its query kept); a trailing slash of the
/// service URL would make `//container`, on which every call fails.
fn with_segments<'a>(base: &Url, segments: impl IntoIterator<Item = &'a str>) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// The service URL of [`AzBlobAccess::Local`]: http(s), on a loopback host.
fn local_endpoint(endpoint_with_sas: &str) -> Result<Url, String> {
    let shown = without_query(endpoint_with_sas);
    let url = Url::parse(endpoint_with_sas)
        .map_err(|e| format!("blob endpoint `{}`: {e}", bounded(shown)))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(format!(
            "blob endpoint `{}`: not an http(s) service URL",
            bounded(shown)
        ));
    }
    let host = url.host_str().unwrap_or_default();
    if !is_loopback_host(host) {
        return Err(format!(
            "blob endpoint `{}`: not a loopback address (an endpoint with a SAS and no token \
             is for local emulators only)",
            bounded(shown)
        ));
    }
    Ok(url)
}

/// Why Azure would refuse `account` as a storage account name, if it would.
fn account_name_problem(account: &str) -> Option<String> {
    let valid = (3..=24).contains(&account.len())
        && account
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (!valid).then(|| {
        format!(
            "`{}` is not a storage account name (3-24 lowercase letters and digits)",
            bounded(account)
        )
    })
}

/// Why Azure would refuse `container` as a container name, if it would.
fn container_name_problem(container: &str) -> Option<String> {
    let b = container.as_bytes();
    let valid = (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !container.contains("--");
    (!valid).then(|| {
        format!(
            "`{}` is not a container name (3-63 lowercase letters, digits and single hyphens, \
             starting and ending with a letter or digit)",
            bounded(container)
        )
    })
}

fn setup(loc: &AzBlobLocation, message: String) -> StateError {
    StateError::Setup {
        path: PathBuf::from(loc.container_url()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(prefix: &str, cloud: &str) -> AzBlobLocation {
        AzBlobLocation {
            account: "acct".into(),
            container: "state".into(),
            key_prefix: prefix.into(),
            cloud: cloud.into(),
        }
    }

    #[test]
    fn blobs_sit_under_the_prefix_one_pair_per_cloud() {
        let l = loc("team/prod", "azure");
        assert_eq!(l.key(Object::State), "team/prod/azure.state.json");
        assert_eq!(l.key(Object::Lease), "team/prod/azure.state.json.lock");
        assert_eq!(
            l.url(Object::Lease),
            "https://acct.blob.core.windows.net/state/team/prod/azure.state.json.lock"
        );
        assert_eq!(
            loc("team/prod/", "gcp").key(Object::State),
            "team/prod/gcp.state.json"
        );
        assert_eq!(loc("", "azure").key(Object::Lease), "azure.state.json.lock");
    }

    #[test]
    fn blob_urls_keep_the_sas_query_and_never_double_a_slash() {
        let base = Url::parse("http://127.0.0.1:1/devstoreaccount1/?sv=1&sig=S").unwrap();
        let c = with_segments(&base, ["state"]);
        assert_eq!(
            c.as_str(),
            "http://127.0.0.1:1/devstoreaccount1/state?sv=1&sig=S"
        );
        let b = with_segments(&c, "team/prod/azure.state.json".split('/'));
        assert_eq!(
            b.as_str(),
            "http://127.0.0.1:1/devstoreaccount1/state/team/prod/azure.state.json?sv=1&sig=S"
        );
    }

    #[test]
    fn a_local_endpoint_is_loopback_only_and_never_shows_its_sas() {
        for ok in [
            "http://127.0.0.1:10000/devstoreaccount1?sig=x",
            "http://[::1]:10000/devstoreaccount1",
            "http://localhost:10000/devstoreaccount1",
        ] {
            assert!(local_endpoint(ok).is_ok(), "{ok}");
        }
        let e =
            local_endpoint("https://acct.blob.core.windows.net/?sv=1&sig=SECRET&se=2").unwrap_err();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(!e.contains("SECRET") && !e.contains("sv=1"), "{e}");
        let access = AzBlobAccess::Local {
            endpoint_with_sas: "http://127.0.0.1:1/a?sv=1&sig=SECRET".into(),
        };
        let shown = format!("{access:?}");
        assert!(
            !shown.contains("SECRET") && shown.contains("127.0.0.1:1/a"),
            "{shown}"
        );
    }

    #[test]
    fn messages_lose_every_part_of_the_sas() {
        let url = Url::parse("http://127.0.0.1:1/a?sv=1&sig=ab%2Fc%3D").unwrap();
        let r = Redactor::of(&url);
        let text = r.text(
            "error sending request for url (http://127.0.0.1:1/a/c/x?comp=lease&sv=1&sig=ab%2Fc%3D): \
             refused; signature ab/c= or sig=ab%2Fc%3D&x=1",
        );
        assert!(
            !text.contains("ab%2Fc%3D") && !text.contains("ab/c="),
            "{text}"
        );
        assert!(!text.contains("sv=1"), "{text}");
        assert!(
            text.contains("http://127.0.0.1:1/a/c/x?<query redacted>)"),
            "{text}"
        );
        assert!(text.contains("sig=REDACTED&x=1"), "{text}");
        assert_eq!(r.text(&"x".repeat(10_000)).chars().count(), MAX_TEXT + 1);
    }

    #[test]
    fn failed_preconditions_are_moved_and_nothing_else() {
        let f = |status, code: &str| Failure {
            status: Some(status),
            code: Some(code.into()),
            text: String::new(),
        };
        for (status, code) in [
            (412, "ConditionNotMet"),
            (412, "LeaseIdMissing"),
            (412, "LeaseIdMismatchWithBlobOperation"),
            (412, "LeaseNotPresentWithBlobOperation"),
            (409, "LeaseIsBrokenAndCannotBeRenewed"),
            (409, "LeaseIdMismatchWithLeaseOperation"),
            (409, "BlobAlreadyExists"),
            (404, "BlobNotFound"),
        ] {
            assert!(f(status, code).moved(true), "{status} {code}");
        }
        for (status, code) in [
            (404, "ContainerNotFound"),
            (403, "AuthorizationFailure"),
            (409, "BlobArchived"),
            (500, "InternalError"),
        ] {
            assert!(!f(status, code).moved(true), "{status} {code}");
        }
        assert!(!f(404, "BlobNotFound").moved(false));
        assert!(!Failure::other("no answer".into()).moved(true));
    }

    #[test]
    fn names_azure_refuses_are_caught_before_any_request() {
        assert!(account_name_problem("flyteprod01").is_none());
        for bad in ["ab", "Flyte", "flyte-prod", &"a".repeat(25)] {
            assert!(account_name_problem(bad).is_some(), "{bad}");
        }
        assert!(container_name_problem("state-01").is_none());
        for bad in ["st", "State", "-state", "state-", "st--ate", "st_ate"] {
            assert!(container_name_problem(bad).is_some(), "{bad}");
        }
        let access = AzBlobAccess::Local {
            endpoint_with_sas: "http://127.0.0.1:1/a".into(),
        };
        let mut l = loc("", "azure");
        l.container = "Bad_Name".into();
        let e = AzBlobBackend::connect(l, access.clone()).unwrap_err();
        assert!(matches!(e, StateError::Setup { .. }), "{e:?}");
        let e = AzBlobBackend::connect(loc("", "AZ"), access).unwrap_err();
        assert!(matches!(e, StateError::InvalidCloud { .. }), "{e:?}");
    }

    /// A credential chain that finds nothing.
    #[derive(Debug)]
    struct NoToken;

    #[async_trait::async_trait]
    impl TokenCredential for NoToken {
        async fn get_token(
            &self,
            _scopes: &[&str],
            _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
        ) -> azure_core::Result<azure_core::credentials::AccessToken> {
            Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "no credential in the chain",
            ))
        }
    }

    #[test]
    fn without_a_token_connect_is_a_setup_error_about_credentials() {
        // The token is asked for before anything is sent: no network here.
        let access = AzBlobAccess::Token(Arc::new(NoToken));
        assert_eq!(format!("{access:?}"), "Token(..)");
        let e = AzBlobBackend::connect(loc("", "azure"), access).unwrap_err();
        let StateError::Setup { path, message } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            path,
            &PathBuf::from("https://acct.blob.core.windows.net/state")
        );
        assert!(
            message.starts_with(
                "cannot use container `state` of storage account `acct`: Get Container \
                 Properties: no Azure Storage access token: "
            ),
            "{message}"
        );
        assert!(message.contains("`az login`"), "{message}");
        let e = AzBlobBackend::connect(
            AzBlobLocation {
                account: "Not-An-Account".into(),
                ..loc("", "azure")
            },
            AzBlobAccess::Token(Arc::new(NoToken)),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("is not a storage account name"),
            "{e}"
        );
    }
}

//! The blob data plane, over the official `azure_storage_blob` crate: whether a container
//! holds anything, and emptying it. Resource Manager creates and deletes containers but
//! cannot list or delete blobs, so a container's `holds_contents` and its forced delete come
//! here.
//!
//! On Azure every request carries an Entra ID token for `https://storage.azure.com` (shared
//! key access stays off); the identity needs a data-plane role on the account (Storage Blob
//! Data Contributor, which includes deleting versions) and, behind network rules, a way in.
//! Against Azurite a loopback endpoint with an account SAS in its query stands for every
//! account (the crate has no shared-key authentication, and a token needs https).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, Transport, Url, new_http_client};
use azure_storage_blob::models::{
    BlobClientDeleteOptions, BlobContainerClientListBlobsOptions, BlobItem,
    DeleteSnapshotsOptionType, ListBlobsIncludeItem, ListBlobsResponse, StorageErrorCode,
};
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions, StorageError};
use flyteinfra_core::{ErrorKind, ProviderError};
use futures::StreamExt;

/// The largest page Azure lists.
const MAX_PAGE: i32 = 5000;

/// The longest Azure-supplied text an error message carries.
const MAX_TEXT: usize = 400;

/// Blob data-plane access for emptiness checks and emptying (ARM cannot list blobs).
#[derive(Clone)]
pub struct BlobPlane {
    endpoint: Endpoint,
    credential: Option<Arc<dyn TokenCredential>>,
    /// One HTTP client (reqwest + rustls, like the rest of the provider) for every request.
    transport: Transport,
    /// Entries per listing page of [`BlobPlane::empty`].
    page_size: i32,
}

#[derive(Clone)]
enum Endpoint {
    /// `https://{account}.blob.core.windows.net`.
    Azure,
    /// One service URL for every account, with its SAS query.
    Local(Url),
}

/// One listed entry, as the delete that removes it.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    /// A snapshot of a blob.
    Snapshot { name: String, snapshot: String },
    /// A previous version of a blob.
    Version { name: String, version_id: String },
    /// A base blob; with versioning on it is also the current version, which its delete
    /// turns into a previous version that must go too.
    Blob {
        name: String,
        version_id: Option<String>,
    },
    /// A soft-deleted entry: no delete removes it before its retention ends (it goes with
    /// the container).
    SoftDeleted,
}

impl Entry {
    fn of(item: BlobItem) -> Entry {
        let name = item.name.unwrap_or_default();
        if item.deleted == Some(true) {
            Entry::SoftDeleted
        } else if let Some(snapshot) = item.snapshot.filter(|s| !s.is_empty()) {
            Entry::Snapshot { name, snapshot }
        } else {
            match item.version_id.filter(|v| !v.is_empty()) {
                Some(version_id) if item.is_current_version != Some(true) => {
                    Entry::Version { name, version_id }
                }
                version_id => Entry::Blob { name, version_id },
            }
        }
    }
}

impl BlobPlane {
    /// Azure: `https://{account}.blob.core.windows.net` with `credential` (Entra ID; shared-key access is off).
    pub fn azure(credential: Arc<dyn TokenCredential>) -> BlobPlane {
        BlobPlane {
            endpoint: Endpoint::Azure,
            credential: Some(credential),
            transport: Transport::new(new_http_client(None)),
            page_size: MAX_PAGE,
        }
    }

    /// A loopback endpoint standing for every account (Azurite: `http://127.0.0.1:PORT/devstoreaccount1`)
    /// with a SAS query string appended to every request and no token (only for loopback; the binary checks it).
    pub fn local(endpoint_with_sas: &str) -> Result<BlobPlane, ProviderError> {
        let invalid = |why: &str| {
            ProviderError::new(
                ErrorKind::InvalidInput,
                format!(
                    "blob endpoint `{}`: {why}",
                    bounded(&redact(endpoint_with_sas))
                ),
            )
        };
        let url = Url::parse(endpoint_with_sas).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(invalid("not an http(s) service URL"));
        }
        let host = url.host_str().unwrap_or_default();
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(invalid(
                "not a loopback address (a SAS endpoint without a token is for local emulators only)",
            ));
        }
        Ok(BlobPlane {
            endpoint: Endpoint::Local(url),
            credential: None,
            transport: Transport::new(new_http_client(None)),
            page_size: MAX_PAGE,
        })
    }

    /// The same plane listing `size` entries per page when emptying (tests of paging).
    #[cfg(test)]
    fn with_page_size(self, size: i32) -> BlobPlane {
        BlobPlane {
            page_size: size,
            ..self
        }
    }

    /// Whether `container` of `account` holds anything a delete would destroy: a blob, a version,
    /// a snapshot or a soft-deleted blob. At most one listing of page size 1. A missing container holds nothing.
    ///
    /// An empty page that still has a continuation (Azure may answer so) counts as holding:
    /// one call cannot tell, and "holds" only makes a non-forced delete refuse.
    pub async fn holds_blobs(&self, account: &str, container: &str) -> Result<bool, ProviderError> {
        let client = self.container(account, container)?;
        match list_page(&client, None, 1).await {
            Ok(page) => {
                Ok(!page.blob_items.is_empty() || page.next_marker.is_some_and(|m| !m.is_empty()))
            }
            Err(e) if container_missing(&e) => Ok(false),
            Err(e) => Err(blob_err(&format!("list blobs of {account}/{container}"), e)),
        }
    }

    /// Deletes every blob version, snapshot and blob of `container`; returns how many were deleted.
    /// Stops with an error if the same page comes back twice (no spinning).
    ///
    /// The count is of listed entries this call deleted (one already gone is not counted). A
    /// blob whose snapshots are listed after it is deleted after them; one whose snapshots
    /// were never listed is deleted with them. Soft-deleted entries cannot be deleted: they
    /// stay (and still count for [`BlobPlane::holds_blobs`]) until the container goes. A
    /// missing container has nothing to delete.
    pub async fn empty(&self, account: &str, container: &str) -> Result<u64, ProviderError> {
        let client = self.container(account, container)?;
        let list_op = format!("list blobs of {account}/{container}");
        let mut seen = HashSet::new();
        let mut marker: Option<String> = None;
        let mut deleted = 0u64;
        // Base blobs that answered SnapshotsPresent: deleted at the end, with any snapshot
        // the listing did not show.
        let mut later = Vec::new();
        loop {
            let page = match list_page(&client, marker.clone(), self.page_size).await {
                Ok(page) => page,
                Err(e) if container_missing(&e) => return Ok(deleted),
                Err(e) => return Err(blob_err(&list_op, e)),
            };
            for item in page.blob_items {
                let entry = Entry::of(item);
                match &entry {
                    Entry::SoftDeleted => {}
                    Entry::Snapshot { name, snapshot } => {
                        let options = BlobClientDeleteOptions {
                            snapshot: Some(snapshot.clone()),
                            ..Default::default()
                        };
                        deleted +=
                            u64::from(delete(&client, account, container, name, options).await?);
                    }
                    Entry::Version { name, version_id } => {
                        deleted += u64::from(
                            delete_version(&client, account, container, name, version_id).await?,
                        );
                    }
                    Entry::Blob { name, version_id } => {
                        match delete(&client, account, container, name, Default::default()).await {
                            Ok(gone) => {
                                deleted += u64::from(gone);
                                if let Some(v) = version_id {
                                    delete_version(&client, account, container, name, v).await?;
                                }
                            }
                            Err(e)
                                if e.kind == ErrorKind::Conflict
                                    && e.message.contains("SnapshotsPresent") =>
                            {
                                later.push(entry);
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            match page.next_marker.filter(|m| !m.is_empty()) {
                None => break,
                Some(next) => {
                    if !seen.insert(next.clone()) {
                        return Err(ProviderError::new(
                            ErrorKind::Permanent,
                            format!(
                                "{list_op}: the page at marker `{}` came back twice; stopped emptying \
                                 after {deleted} deletes",
                                bounded(&next)
                            ),
                        ));
                    }
                    marker = Some(next);
                }
            }
        }
        for entry in later {
            if let Entry::Blob { name, version_id } = entry {
                let options = BlobClientDeleteOptions {
                    delete_snapshots: Some(DeleteSnapshotsOptionType::Include),
                    ..Default::default()
                };
                deleted += u64::from(delete(&client, account, container, &name, options).await?);
                if let Some(v) = version_id {
                    delete_version(&client, account, container, &name, &v).await?;
                }
            }
        }
        Ok(deleted)
    }

    /// A client of `container` in `account`.
    fn container(
        &self,
        account: &str,
        container: &str,
    ) -> Result<BlobContainerClient, ProviderError> {
        let invalid = |why: String| ProviderError::new(ErrorKind::InvalidInput, why);
        let mut url = match &self.endpoint {
            Endpoint::Azure => {
                let valid = (3..=24).contains(&account.len())
                    && account
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                if !valid {
                    return Err(invalid(format!(
                        "`{}` is not a storage account name (3-24 lowercase letters and digits)",
                        bounded(account)
                    )));
                }
                Url::parse(&format!("https://{account}.blob.core.windows.net"))
                    .map_err(|e| invalid(format!("storage account `{account}`: {e}")))?
            }
            Endpoint::Local(url) => url.clone(),
        };
        // `pop_if_empty`: a trailing slash would make `//container` (every call a 400).
        url.path_segments_mut()
            .map_err(|()| invalid("the blob endpoint cannot take a path".to_string()))?
            .pop_if_empty()
            .push(container);
        let options = BlobContainerClientOptions {
            client_options: ClientOptions {
                transport: Some(self.transport.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        BlobContainerClient::new(url, self.credential.clone(), Some(options))
            .map_err(|e| blob_err(&format!("blob client of {account}/{container}"), e))
    }
}

/// One listing page from `marker`, with everything a delete would destroy.
async fn list_page(
    client: &BlobContainerClient,
    marker: Option<String>,
    size: i32,
) -> azure_core::Result<ListBlobsResponse> {
    let options = BlobContainerClientListBlobsOptions {
        include: Some(vec![
            ListBlobsIncludeItem::Versions,
            ListBlobsIncludeItem::Snapshots,
            ListBlobsIncludeItem::Deleted,
        ]),
        marker,
        maxresults: Some(size),
        ..Default::default()
    };
    let mut pages = client.list_blobs(Some(options))?.into_pages();
    match pages.next().await {
        Some(page) => page?.into_model(),
        None => Ok(ListBlobsResponse::default()),
    }
}

/// Deletes `name` (or the snapshot/version in `options`): `true` when it was there, `false`
/// when it was already gone.
async fn delete(
    client: &BlobContainerClient,
    account: &str,
    container: &str,
    name: &str,
    options: BlobClientDeleteOptions<'_>,
) -> Result<bool, ProviderError> {
    let what = match (&options.snapshot, &options.version_id) {
        (Some(s), _) => format!("snapshot {s} of "),
        (_, Some(v)) => format!("version {v} of "),
        _ => String::new(),
    };
    match client.blob_client(name).delete(Some(options)).await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(blob_err(
            &format!("delete {what}blob {account}/{container}/{}", bounded(name)),
            e,
        )),
    }
}

async fn delete_version(
    client: &BlobContainerClient,
    account: &str,
    container: &str,
    name: &str,
    version_id: &str,
) -> Result<bool, ProviderError> {
    let options = BlobClientDeleteOptions {
        version_id: Some(version_id.to_string()),
        ..Default::default()
    };
    delete(client, account, container, name, options).await
}

fn status_of(e: &azure_core::Error) -> Option<u16> {
    e.http_status().map(u16::from)
}

/// Whether a listing failed because the container does not exist (not any 404: a wrong
/// endpoint must not read as "holds nothing").
fn container_missing(e: &azure_core::Error) -> bool {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse { status, .. } if u16::from(*status) == 404 => {
            matches!(
                StorageError::try_from(clone_http(e)).map(|s| s.error_code),
                Ok(Some(StorageErrorCode::ContainerNotFound))
            )
        }
        _ => false,
    }
}

/// A copy of an HTTP error (azure_core errors are not `Clone`).
fn clone_http(e: &azure_core::Error) -> azure_core::Error {
    match e.kind() {
        azure_core::error::ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => azure_core::error::ErrorKind::HttpResponse {
            status: *status,
            error_code: error_code.clone(),
            raw_response: raw_response.clone(),
        }
        .into_error(),
        _ => azure_core::error::ErrorKind::Other.into_error(),
    }
}

/// The kind of a storage answer with HTTP `status` and error `code`.
fn kind_for(status: u16, code: &str) -> ErrorKind {
    match (status, code) {
        // Storage's throttling answer.
        (503, "ServerBusy") => ErrorKind::Throttled,
        (404, _) => ErrorKind::NotFound,
        (401 | 403, _) => ErrorKind::Auth,
        (409 | 412, _) => ErrorKind::Conflict,
        (429, _) => ErrorKind::Throttled,
        (400, _) => ErrorKind::InvalidInput,
        (500..=599, _) => ErrorKind::Transient,
        _ => ErrorKind::Permanent,
    }
}

/// Maps an error of the call named `op` (`delete blob acct/c/x`), keeping Storage's error
/// code (`AuthorizationFailure`, `SnapshotsPresent`) and at most 400 characters of its
/// message; a SAS signature never shows.
fn blob_err(op: &str, e: azure_core::Error) -> ProviderError {
    use azure_core::error::ErrorKind as K;
    let (kind, text) = match e.kind() {
        K::HttpResponse { .. } => match StorageError::try_from(e) {
            Ok(se) => {
                let status = u16::from(se.status_code);
                let code = se
                    .error_code
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                // Storage messages end with `RequestId:…` and `Time:…` lines.
                let message = se
                    .message
                    .as_deref()
                    .and_then(|m| m.lines().next())
                    .unwrap_or("no message");
                let shown = if code.is_empty() {
                    format!("HTTP {status}")
                } else {
                    code.clone()
                };
                let mut text = format!("{shown}: {}", bounded(message));
                if let Some(detail) = &se.authentication_error_detail {
                    text.push_str(&format!(" ({})", bounded(detail)));
                }
                (kind_for(status, &code), text)
            }
            Err(e) => (ErrorKind::Permanent, bounded(&e.to_string())),
        },
        K::Connection | K::Io => (ErrorKind::Transient, bounded(&e.to_string())),
        K::Credential => (
            ErrorKind::Auth,
            format!("no Azure Storage access token: {}", bounded(&e.to_string())),
        ),
        _ => (ErrorKind::Permanent, bounded(&e.to_string())),
    };
    ProviderError::new(kind, redact(&format!("{op}: {text}")))
}

/// At most [`MAX_TEXT`] characters of `text`.
fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// `text` with every SAS signature (`sig=…`) replaced.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("REDACTED");
        rest = &rest[i + 4..];
        let end = rest
            .find(|c: char| c == '&' || c == '`' || c == '"' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{azurite, blob_plane, unique};

    /// Azurite's one account (the local plane ignores the account name).
    const ACCOUNT: &str = "devstoreaccount1";

    fn container() -> String {
        let name = unique("blob");
        azurite().create_container(&name);
        name
    }

    #[tokio::test]
    async fn blob_an_empty_container_holds_nothing() {
        let c = container();
        assert!(!blob_plane().holds_blobs(ACCOUNT, &c).await.unwrap());
        assert_eq!(blob_plane().empty(ACCOUNT, &c).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn blob_a_missing_container_holds_nothing() {
        let plane = blob_plane();
        let c = unique("blob-missing");
        assert!(!plane.holds_blobs(ACCOUNT, &c).await.unwrap());
        assert_eq!(plane.empty(ACCOUNT, &c).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn blob_one_blob_holds_and_empty_deletes_it() {
        let c = container();
        let plane = blob_plane();
        azurite().upload(&c, "flyte-data/one", b"1");
        assert!(plane.holds_blobs(ACCOUNT, &c).await.unwrap());
        assert_eq!(plane.empty(ACCOUNT, &c).await.unwrap(), 1);
        assert_eq!(azurite().count(&c), 0);
        assert!(!plane.holds_blobs(ACCOUNT, &c).await.unwrap());
    }

    #[tokio::test]
    async fn blob_empty_deletes_snapshots_with_their_blob() {
        let c = container();
        let plane = blob_plane();
        azurite().upload(&c, "a", b"1");
        azurite().snapshot(&c, "a");
        azurite().snapshot(&c, "a");
        azurite().upload(&c, "b", b"2");
        assert_eq!(azurite().count(&c), 4);
        assert!(plane.holds_blobs(ACCOUNT, &c).await.unwrap());
        // Azurite lists a blob before its snapshots: the blob is deleted last.
        assert_eq!(plane.empty(ACCOUNT, &c).await.unwrap(), 4);
        assert_eq!(azurite().count(&c), 0);
        assert!(!plane.holds_blobs(ACCOUNT, &c).await.unwrap());
    }

    #[tokio::test]
    async fn blob_a_snapshot_left_off_a_page_goes_with_its_blob() {
        // One entry a page: Azurite's marker (the blob name) skips the snapshots.
        let c = container();
        let plane = blob_plane().with_page_size(1);
        azurite().upload(&c, "a", b"1");
        azurite().snapshot(&c, "a");
        azurite().upload(&c, "b", b"2");
        plane.empty(ACCOUNT, &c).await.unwrap();
        assert_eq!(azurite().count(&c), 0);
    }

    #[tokio::test]
    async fn blob_empty_pages_through_every_blob() {
        let c = container();
        for i in 0..7 {
            azurite().upload(&c, &format!("flyte-data/{i}"), b"x");
        }
        let plane = blob_plane().with_page_size(3);
        assert!(plane.holds_blobs(ACCOUNT, &c).await.unwrap());
        assert_eq!(plane.empty(ACCOUNT, &c).await.unwrap(), 7);
        assert_eq!(azurite().count(&c), 0);
        assert!(!plane.holds_blobs(ACCOUNT, &c).await.unwrap());
    }

    #[tokio::test]
    async fn blob_empty_deletes_every_previous_version() {
        // Azurite keeps no versions; the double's blob subset always versions.
        let d = crate::testutil::double();
        let sas = flyteinfra_azure_double::azurite::account_sas();
        let plane = BlobPlane::local(&format!("{}/{ACCOUNT}?{sas}", d.url())).unwrap();
        let c = unique("blob-versions");
        // Arranged through the crate's own calls (the double answers them as Azure does).
        let client = plane.container(ACCOUNT, &c).unwrap();
        client.create(None).await.unwrap();
        for (name, body) in [
            ("flyte-data/a", "1"),
            ("flyte-data/a", "2"),
            ("flyte-data/a", "3"),
            ("b", "4"),
        ] {
            let content = azure_core::http::RequestContent::from(body.as_bytes().to_vec());
            client
                .blob_client(name)
                .upload(content, None)
                .await
                .unwrap();
        }
        assert_eq!(d.blob_versions(&c), 4);
        assert!(plane.holds_blobs(ACCOUNT, &c).await.unwrap());
        // Two previous versions and two base blobs (whose current versions go with them).
        assert_eq!(
            plane
                .clone()
                .with_page_size(2)
                .empty(ACCOUNT, &c)
                .await
                .unwrap(),
            4
        );
        assert_eq!(d.blob_versions(&c), 0);
        assert!(!plane.holds_blobs(ACCOUNT, &c).await.unwrap());
    }

    #[tokio::test]
    async fn blob_a_request_without_the_sas_is_an_auth_error() {
        let c = container();
        let plane = BlobPlane::local(&azurite().url).unwrap();
        let e = plane.holds_blobs(ACCOUNT, &c).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth, "{e}");
        assert!(
            e.message
                .starts_with(&format!("list blobs of {ACCOUNT}/{c}: ")),
            "{e}"
        );
        assert!(e.message.len() < 600, "{e}");
    }

    #[tokio::test]
    async fn blob_a_page_that_comes_back_twice_stops_empty() {
        // A server answering every listing with the same page and continuation.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = requests.clone();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults>\
                            <Blobs></Blobs><NextMarker>m</NextMarker></EnumerationResults>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        let plane = BlobPlane::local(&format!("http://127.0.0.1:{port}/acct?sig=s")).unwrap();
        let e = plane.empty(ACCOUNT, "c").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permanent, "{e}");
        assert!(e.message.contains("came back twice"), "{e}");
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 2);
        // The check makes one call, and a page with a continuation may hide blobs.
        assert!(plane.holds_blobs(ACCOUNT, "c").await.unwrap());
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[test]
    fn blob_the_client_carries_its_plane() {
        let c = crate::testutil::client();
        assert!(c.blob_plane().is_none());
        let c = c
            .with_blob_plane(BlobPlane::local("http://127.0.0.1:1/a").unwrap())
            .with_poll_interval(std::time::Duration::from_millis(5));
        assert!(c.clone().blob_plane().is_some());
    }

    #[test]
    fn blob_local_is_for_loopback_only_and_never_shows_the_signature() {
        assert!(BlobPlane::local("http://127.0.0.1:10000/devstoreaccount1?sig=x").is_ok());
        assert!(BlobPlane::local("http://[::1]:10000/devstoreaccount1").is_ok());
        assert!(BlobPlane::local("http://localhost:10000/devstoreaccount1").is_ok());
        let e = BlobPlane::local("https://acct.blob.core.windows.net/?sv=1&sig=SECRET&se=2")
            .err()
            .unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(!e.message.contains("SECRET"), "{e}");
        assert!(e.message.contains("sig=REDACTED&se=2"), "{e}");
    }

    #[test]
    fn blob_entries_are_deleted_by_what_they_are() {
        let item = |snapshot: Option<&str>, version: Option<&str>, current, deleted| {
            let mut i = BlobItem::default();
            i.name = Some("n".into());
            i.snapshot = snapshot.map(Into::into);
            i.version_id = version.map(Into::into);
            i.is_current_version = current;
            i.deleted = deleted;
            i
        };
        let name = "n".to_string();
        assert_eq!(
            Entry::of(item(None, None, None, None)),
            Entry::Blob {
                name: name.clone(),
                version_id: None
            }
        );
        assert_eq!(
            Entry::of(item(Some("t"), None, None, None)),
            Entry::Snapshot {
                name: name.clone(),
                snapshot: "t".into()
            }
        );
        assert_eq!(
            Entry::of(item(None, Some("v"), Some(false), None)),
            Entry::Version {
                name: name.clone(),
                version_id: "v".into()
            }
        );
        assert_eq!(
            Entry::of(item(None, Some("v"), Some(true), None)),
            Entry::Blob {
                name,
                version_id: Some("v".into())
            }
        );
        assert_eq!(
            Entry::of(item(None, Some("v"), None, Some(true))),
            Entry::SoftDeleted
        );
    }

    #[test]
    fn blob_errors_have_kinds_and_bounded_text() {
        assert_eq!(kind_for(404, "BlobNotFound"), ErrorKind::NotFound);
        assert_eq!(kind_for(403, "AuthorizationFailure"), ErrorKind::Auth);
        assert_eq!(kind_for(409, "SnapshotsPresent"), ErrorKind::Conflict);
        assert_eq!(kind_for(429, ""), ErrorKind::Throttled);
        assert_eq!(kind_for(503, "ServerBusy"), ErrorKind::Throttled);
        assert_eq!(kind_for(500, "InternalError"), ErrorKind::Transient);
        assert_eq!(bounded(&"x".repeat(10_000)).chars().count(), MAX_TEXT + 1);
    }
}

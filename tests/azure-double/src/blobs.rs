//! Blob versions: the subset of the Blob service REST API that emptying a container of a
//! versioned account needs, for the one thing Azurite does not do (3.35 keeps no blob
//! versions; see [`crate::azurite`]).
//!
//! Follows <https://learn.microsoft.com/rest/api/storageservices/blob-service-rest-api>
//! under `/{account}/{container}` (one account: its name is ignored, and so is any SAS in
//! the query): Create Container (`PUT ?restype=container`), Put Blob, List Blobs
//! (`GET ?restype=container&comp=list` with `include`, `maxresults` and `marker`, answering
//! the `EnumerationResults` XML) and Delete Blob with or without `versionid`. Versioning is
//! always on: every upload makes a new current version and turns the previous current one
//! into a previous version; deleting the base blob leaves its versions (none current), and
//! only a previous version can be deleted by its id (the current one answers 403
//! `OperationNotAllowedOnRootBlob`). No snapshots, no soft delete (`include=snapshots,deleted`
//! lists nothing more). Errors use Storage's XML shape and `x-ms-error-code` header; a call
//! the double does not serve gets its own JSON 404 `NotFound`, as any unknown route does.

use std::collections::BTreeMap;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::world::{Shared, World};

/// The largest page List Blobs answers.
const MAX_PAGE: usize = 5000;

/// The Blob service version the double answers as.
const SERVICE_VERSION: &str = "2025-11-05";

/// A fixed time for every date the double shows (RFC 7231, as Storage writes them).
const DATE: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// One container: every version of every blob.
#[derive(Default)]
pub(crate) struct Container {
    /// Blob name → its versions, oldest first (as List Blobs orders them); at most one current.
    blobs: BTreeMap<String, Vec<Version>>,
}

struct Version {
    /// A timestamp-shaped id, increasing with every upload.
    id: String,
    size: usize,
    current: bool,
}

impl World {
    /// How many blob versions (current and previous) `container` holds; 0 when it is missing.
    pub fn blob_versions(&self, container: &str) -> usize {
        self.blobs
            .get(container)
            .map_or(0, |c| c.blobs.values().map(Vec::len).sum())
    }
}

/// Whether `path` is a blob path, `/{account}/{container}[/{blob}]`: never ARM's
/// `/subscriptions/…` nor the `/_double/…` control routes.
pub(crate) fn serves(path: &str) -> bool {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    match (segs.next(), segs.next()) {
        (Some(first), Some(_)) => {
            !first.eq_ignore_ascii_case("subscriptions") && !first.eq_ignore_ascii_case("_double")
        }
        _ => false,
    }
}

/// Serves one blob call.
pub(crate) fn handle(
    sh: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let query: Vec<(String, String)> =
        Query::try_from_uri(uri).map_or_else(|_| Vec::new(), |q| q.0);
    let q = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    };
    // `/{account}/{container}[/{blob}]`; the client percent-encodes a blob name's `/`.
    let mut parts = uri.path().trim_start_matches('/').splitn(3, '/');
    let _account = parts.next();
    let container = decode(parts.next().unwrap_or_default());
    let blob = parts.next().map(decode).filter(|b| !b.is_empty());
    let mut w = sh.lock();
    let answer = match (method.as_str(), blob) {
        ("PUT", None) if q("restype") == Some("container") && q("comp").is_none() => {
            create_container(&mut w, &container)
        }
        ("GET", None) if q("restype") == Some("container") && q("comp") == Some("list") => {
            list(&w, &container, uri, &q)
        }
        ("PUT", Some(blob)) if q("comp").is_none() => {
            let if_none_match = headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            upload(
                &mut w,
                &container,
                &blob,
                body.len(),
                if_none_match == Some("*"),
            )
        }
        ("DELETE", Some(blob)) => delete(&mut w, &container, &blob, q("versionid"), q("snapshot")),
        // Not a blob call the double serves (nor ARM): the double's own 404.
        _ => Err(crate::http::unrouted(method.as_str(), uri.path())),
    };
    let mut r = answer.unwrap_or_else(|e| e);
    let n = w.next_seq();
    let h = r.headers_mut();
    h.insert(
        "x-ms-version",
        header::HeaderValue::from_static(SERVICE_VERSION),
    );
    if let Ok(v) = header::HeaderValue::from_str(&format!("{n:08x}-0000-0000-0000-000000000000")) {
        h.insert("x-ms-request-id", v);
    }
    r
}

type Reply = Result<Response, Response>;

/// Storage's error shape: XML `Error` with `Code` and `Message`, and the code in
/// `x-ms-error-code`.
fn storage_error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code><Message>{}\n\
         RequestId:00000000-0000-0000-0000-000000000000\nTime:2026-01-01T00:00:00.0000000Z\
         </Message></Error>",
        escape(&message.into())
    );
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response();
    if let Ok(v) = header::HeaderValue::from_str(code) {
        r.headers_mut().insert("x-ms-error-code", v);
    }
    r
}

fn no_container() -> Response {
    storage_error(
        404,
        "ContainerNotFound",
        "The specified container does not exist.",
    )
}

fn no_blob() -> Response {
    storage_error(404, "BlobNotFound", "The specified blob does not exist.")
}

/// An empty answer with `status` and `headers`.
fn empty(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut r = (status, Body::empty()).into_response();
    for (name, value) in headers {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            r.headers_mut().insert(*name, v);
        }
    }
    r
}

fn create_container(w: &mut World, name: &str) -> Reply {
    if w.blobs.contains_key(name) {
        return Err(storage_error(
            409,
            "ContainerAlreadyExists",
            "The specified container already exists.",
        ));
    }
    w.blobs.insert(name.to_string(), Container::default());
    let etag = format!("\"0x{:016X}\"", w.next_seq());
    Ok(empty(
        StatusCode::CREATED,
        &[("etag", etag), ("last-modified", DATE.to_string())],
    ))
}

fn upload(w: &mut World, container: &str, blob: &str, size: usize, if_absent: bool) -> Reply {
    let n = w.next_seq();
    let versions = w
        .blobs
        .get_mut(container)
        .ok_or_else(no_container)?
        .blobs
        .entry(blob.to_string())
        .or_default();
    if if_absent && versions.iter().any(|v| v.current) {
        return Err(storage_error(
            409,
            "BlobAlreadyExists",
            "The specified blob already exists.",
        ));
    }
    versions.iter_mut().for_each(|v| v.current = false);
    let id = version_id(n);
    versions.push(Version {
        id: id.clone(),
        size,
        current: true,
    });
    Ok(empty(
        StatusCode::CREATED,
        &[
            ("etag", format!("\"0x{n:016X}\"")),
            ("last-modified", DATE.to_string()),
            ("x-ms-version-id", id),
            ("x-ms-request-server-encrypted", "true".to_string()),
        ],
    ))
}

/// Azure's version ids are the upload's time to 100 ns; the double's count up from a fixed one.
fn version_id(n: u64) -> String {
    format!(
        "2026-01-01T00:00:{:02}.{:07}Z",
        n / 10_000_000 % 60,
        n % 10_000_000
    )
}

fn list<'a>(w: &World, container: &str, uri: &Uri, q: &impl Fn(&str) -> Option<&'a str>) -> Reply {
    let c = w.blobs.get(container).ok_or_else(no_container)?;
    let versions = q("include").is_some_and(|i| {
        i.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("versions"))
    });
    let max = q("maxresults")
        .and_then(|m| m.parse::<usize>().ok())
        .filter(|m| *m > 0)
        .unwrap_or(MAX_PAGE)
        .min(MAX_PAGE);
    // The marker names the first entry of the next page (`{versionId}!{name}`), so entries
    // deleted while paging shift nothing.
    let from = q("marker")
        .filter(|m| !m.is_empty())
        .and_then(|m| m.split_once('!'))
        .map(|(id, name)| (name.to_string(), id.to_string()));
    let mut entries = c
        .blobs
        .iter()
        .flat_map(|(name, vs)| vs.iter().map(move |v| (name, v)))
        .filter(|(_, v)| versions || v.current)
        .filter(|(name, v)| {
            from.as_ref()
                .is_none_or(|(n, id)| (name.as_str(), v.id.as_str()) >= (n.as_str(), id.as_str()))
        });
    let page: Vec<_> = entries.by_ref().take(max).collect();
    let next = entries.next().map(|(name, v)| format!("{}!{name}", v.id));
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults \
         ServiceEndpoint=\"{}\" ContainerName=\"{}\">",
        escape(&service_endpoint(uri)),
        escape(container)
    );
    if let Some(m) = q("marker").filter(|m| !m.is_empty()) {
        xml.push_str(&format!("<Marker>{}</Marker>", escape(m)));
    }
    if let Some(m) = q("maxresults") {
        xml.push_str(&format!("<MaxResults>{}</MaxResults>", escape(m)));
    }
    xml.push_str("<Blobs>");
    for (name, v) in page {
        xml.push_str(&format!(
            "<Blob><Name>{}</Name><VersionId>{}</VersionId>",
            escape(name),
            v.id
        ));
        if v.current {
            xml.push_str("<IsCurrentVersion>true</IsCurrentVersion>");
        }
        xml.push_str(&format!(
            "<Properties><Creation-Time>{DATE}</Creation-Time><Last-Modified>{DATE}</Last-Modified>\
             <Etag>0x{:016X}</Etag><Content-Length>{}</Content-Length>\
             <Content-Type>application/octet-stream</Content-Type><BlobType>BlockBlob</BlobType>\
             <AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>\
             <ServerEncrypted>true</ServerEncrypted></Properties><OrMetadata /></Blob>",
            v.id.len() + v.size,
            v.size
        ));
    }
    xml.push_str("</Blobs>");
    match next {
        Some(m) => xml.push_str(&format!("<NextMarker>{}</NextMarker>", escape(&m))),
        None => xml.push_str("<NextMarker />"),
    }
    xml.push_str("</EnumerationResults>");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        xml,
    )
        .into_response())
}

/// `/{account}/`: the service List Blobs names (the double does not know its host name).
fn service_endpoint(uri: &Uri) -> String {
    let account = uri.path().trim_start_matches('/').split('/').next();
    format!("/{}/", account.unwrap_or_default())
}

fn delete(
    w: &mut World,
    container: &str,
    blob: &str,
    version: Option<&str>,
    snapshot: Option<&str>,
) -> Reply {
    let c = w.blobs.get_mut(container).ok_or_else(no_container)?;
    // The double keeps no snapshots.
    if snapshot.is_some() {
        return Err(no_blob());
    }
    let versions = c.blobs.get_mut(blob).ok_or_else(no_blob)?;
    match version {
        Some(id) => {
            let i = versions
                .iter()
                .position(|v| v.id == id)
                .ok_or_else(no_blob)?;
            if versions[i].current {
                return Err(storage_error(
                    403,
                    "OperationNotAllowedOnRootBlob",
                    "This operation is not permitted on a root blob.",
                ));
            }
            versions.remove(i);
        }
        // With versioning on, the current version becomes a previous one.
        None => {
            versions
                .iter_mut()
                .find(|v| v.current)
                .ok_or_else(no_blob)?
                .current = false
        }
    }
    if versions.is_empty() {
        c.blobs.remove(blob);
    }
    Ok(empty(
        StatusCode::ACCEPTED,
        &[("x-ms-delete-type-permanent", "false".to_string())],
    ))
}

/// `s` with every `%XX` decoded (the client percent-encodes a blob name's path segment).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (b[i], hex) {
            (b'%', Some(x)) => {
                out.push(x);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` escaped for XML text and attributes.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_never_take_arm_or_control_routes() {
        assert!(serves("/devstoreaccount1/c"));
        assert!(serves("/devstoreaccount1/c/a%2Fb"));
        assert!(!serves("/devstoreaccount1"));
        assert!(!serves("/subscriptions/s"));
        assert!(!serves("/Subscriptions/s/resourceGroups/rg"));
        assert!(!serves("/_double/knobs"));
    }

    #[test]
    fn names_are_decoded_and_escaped() {
        assert_eq!(decode("a%2Fb%20c%zz"), "a/b c%zz");
        assert_eq!(escape("a<&>\"'"), "a&lt;&amp;&gt;&quot;&apos;");
        assert!(version_id(1) < version_id(2));
        assert!(version_id(9) < version_id(10));
    }
}

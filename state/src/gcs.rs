//! The GCS backend: the state and its lease as two objects in a versioned bucket, written
//! with GCS's generation preconditions (`ifGenerationMatch=0` to create, `=<generation>`
//! to replace or delete).
//!
//! It speaks the Cloud Storage JSON API (<https://cloud.google.com/storage/docs/json_api/v1>)
//! over reqwest, with a bearer token from google-cloud-auth: three object calls need no
//! generated client, and this keeps the tree's one TLS stack. As for S3, the client runs
//! on the backend's own runtime thread (a `Worker`), because callers are sometimes inside
//! a tokio runtime.
//!
//! Versions are object generations: the `x-goog-generation` header of a media read, the
//! `generation` field of an upload's answer. Both describe the bytes of that same answer,
//! so a read needs one request. Uploads are multipart (metadata and bytes in one request),
//! the upload fake-gcs-server checks preconditions on as well.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use google_cloud_auth::credentials::{self, CacheableResource, Credentials};
use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::backend::{
    Backend, Object, Precondition, Stored, Version, is_loopback_host, object_key,
};
use crate::error::StateError;
use crate::worker::{Worker, chain};

/// One call, reading the body included: the backstop that keeps a caller from waiting
/// forever on the runtime thread.
const CALL_LIMIT: Duration = Duration::from_secs(90);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// All attempts of one request, the token included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Every request here is a read or a conditional write, so each may be repeated on 408,
/// 429, 5xx or a lost connection (Google's retry strategy for Cloud Storage). A
/// conditional write repeated after its first answer was lost finds its own write and
/// comes back 412, which is [`StateError::Moved`]: the lease and the manager re-read and
/// see what happened.
const ATTEMPTS: u32 = 4;
/// Then doubled: 250 ms, 500 ms, 1 s. GCS allows about one write a second to one object,
/// so the last wait outlasts that limit.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// GCS's messages are a sentence; anything longer is an HTML page from a proxy.
const MESSAGE_LIMIT: usize = 300;

const GOOGLE: &str = "https://storage.googleapis.com";

/// Where a deployment's state lives in GCS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GcsLocation {
    /// The bucket; it must exist and have object versioning enabled.
    pub bucket: String,
    /// The folder of the state objects in the bucket (`team/prod`); empty for the top.
    pub prefix: String,
    /// The cloud whose state this is: each cloud has its own objects.
    pub cloud: String,
}

impl GcsLocation {
    /// The object name of `object`: `<prefix>/<cloud>.state.json` for the state, the
    /// same with `.lock` for the lease, without a leading `/` when the prefix is empty
    /// (the names the S3 backend uses).
    pub fn key(&self, object: Object) -> String {
        object_key(&self.prefix, &self.cloud, object)
    }

    /// `gs://<bucket>/<key>` of `object`.
    pub fn url(&self, object: Object) -> String {
        format!("gs://{}/{}", self.bucket, self.key(object))
    }
}

/// Which credentials and endpoint the backend uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcsAccess {
    /// Application Default Credentials (`gcloud auth application-default login`,
    /// `GOOGLE_APPLICATION_CREDENTIALS`, the metadata server) at
    /// `https://storage.googleapis.com`.
    Adc,
    /// No credentials, at an emulator on this machine (`http://127.0.0.1:4443`). Only a
    /// loopback endpoint is accepted: state holds secrets, and anywhere else they would
    /// travel to a server nobody authenticated.
    Local {
        /// The emulator's base URL.
        endpoint: String,
    },
}

/// The state and lease of one cloud's deployment in a GCS bucket with object versioning
/// (every state version is kept). Clones share one HTTP client and runtime thread, which
/// stops when the last clone is dropped.
#[derive(Clone)]
pub struct GcsBackend {
    loc: Arc<GcsLocation>,
    api: Api,
    worker: Worker,
}

impl fmt::Debug for GcsBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsBackend")
            .field("location", &*self.loc)
            .field("endpoint", &&*self.api.base)
            .finish_non_exhaustive()
    }
}

impl GcsBackend {
    /// The backend for `loc` with `access`. Checks that the bucket exists and has object
    /// versioning enabled.
    ///
    /// # Errors
    /// [`StateError::InvalidCloud`] for a cloud name that cannot name an object;
    /// [`StateError::Setup`] for a `Local` endpoint not on this machine, no credentials,
    /// a missing bucket, versioning not enabled, or a bucket that cannot be reached
    /// (permissions, network).
    pub fn connect(loc: GcsLocation, access: GcsAccess) -> Result<GcsBackend, StateError> {
        crate::backend::check_cloud(&loc.cloud)?;
        let base = match &access {
            GcsAccess::Adc => GOOGLE.to_string(),
            GcsAccess::Local { endpoint } => {
                loopback_endpoint(endpoint).map_err(|why| setup(&loc, why))?
            }
        };
        let (worker, _) = Worker::start("gcs", "GCS", CALL_LIMIT).map_err(|e| {
            setup(
                &loc,
                format!("cannot start the thread of the GCS client: {e}"),
            )
        })?;
        // On the runtime thread: the credentials' token cache spawns its refresh task.
        let api = worker
            .run(async move { Api::new(base, &access) })
            .map_err(|e| setup(&loc, e))?
            .map_err(|e| setup(&loc, e))?;
        let backend = GcsBackend {
            loc: Arc::new(loc),
            api,
            worker,
        };
        backend.check_bucket()?;
        Ok(backend)
    }

    /// Requests this backend (and its clones) sent to GCS so far, each attempt counted.
    pub fn calls(&self) -> u64 {
        self.api.calls.load(Ordering::Relaxed)
    }

    /// The bucket must exist and keep every generation of its objects.
    fn check_bucket(&self) -> Result<(), StateError> {
        let loc = &*self.loc;
        let bucket = &loc.bucket;
        let answer = self.call(Request {
            op: "storage.buckets.get",
            method: Method::GET,
            path: format!("/storage/v1/b/{}", encode(bucket)),
            body: None,
        });
        let enable = format!("`gcloud storage buckets update gs://{bucket} --versioning`");
        let answer = match answer {
            Ok(a) => a,
            Err(text) => {
                return Err(setup(
                    loc,
                    format!(
                        "cannot use bucket `{bucket}`: {text}; check the Google Cloud \
                         credentials and the network"
                    ),
                ));
            }
        };
        match answer.status {
            200 => {}
            404 => {
                return Err(setup(
                    loc,
                    format!(
                        "bucket `{bucket}` does not exist: create it, with versioning enabled, \
                         before keeping state in it: `gcloud storage buckets create \
                         gs://{bucket} --uniform-bucket-level-access` then {enable}"
                    ),
                ));
            }
            status => {
                let hint = if matches!(status, 401 | 403) {
                    "; check the Google Cloud credentials (`gcloud auth application-default \
                     login`, GOOGLE_APPLICATION_CREDENTIALS) and that they allow \
                     storage.buckets.get, storage.objects.get, storage.objects.create and \
                     storage.objects.delete on the bucket"
                } else {
                    ""
                };
                return Err(setup(
                    loc,
                    format!(
                        "cannot use bucket `{bucket}`: {}{hint}",
                        answer.error_text("storage.buckets.get")
                    ),
                ));
            }
        }
        let versioning = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|b| b["versioning"]["enabled"].as_bool());
        if versioning == Some(true) {
            return Ok(());
        }
        Err(setup(
            loc,
            format!(
                "versioning is not enabled on bucket `{bucket}`: flyteinfra keeps state only \
                 in a versioned bucket, so that every state version is kept and a bad write \
                 can be rolled back; enable it with {enable}"
            ),
        ))
    }

    /// Sends `req` on the runtime thread and waits for its answer.
    fn call(&self, req: Request) -> Result<Answer, String> {
        let api = self.api.clone();
        self.worker.run(api.send(req))?
    }

    fn path(&self, object: Object) -> PathBuf {
        PathBuf::from(self.loc.url(object))
    }

    fn object_path(&self, object: Object) -> String {
        format!(
            "/storage/v1/b/{}/o/{}",
            encode(&self.loc.bucket),
            encode(&self.loc.key(object))
        )
    }

    fn moved(&self, object: Object) -> StateError {
        StateError::Moved {
            path: self.path(object),
        }
    }

    fn write_error(&self, object: Object, text: String) -> StateError {
        StateError::Write {
            path: self.path(object),
            source: io::Error::other(text),
        }
    }

    fn read_error(&self, object: Object, text: String) -> StateError {
        StateError::Read {
            path: self.path(object),
            source: io::Error::other(text),
        }
    }
}

impl Backend for GcsBackend {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        const OP: &str = "storage.objects.get";
        let answer = self
            .call(Request {
                op: OP,
                method: Method::GET,
                path: format!("{}?alt=media", self.object_path(object)),
                body: None,
            })
            .map_err(|text| self.read_error(object, text))?;
        match answer.status {
            200 => {}
            404 if !answer.bucket_missing() => return Ok(None),
            _ => return Err(self.read_error(object, answer.error_text(OP))),
        }
        let Some(generation) = answer.generation.as_deref().and_then(generation) else {
            return Err(self.read_error(
                object,
                format!("{OP}: the answer has no valid x-goog-generation header"),
            ));
        };
        Ok(Some(Stored {
            bytes: answer.body,
            version: Version::new(generation.to_string()),
        }))
    }

    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        const OP: &str = "storage.objects.insert";
        let if_generation = match expect {
            Precondition::Absent => 0,
            // GCS never gave this version, so the object is not at it.
            Precondition::At(v) => generation(v.as_str()).ok_or_else(|| self.moved(object))?,
        };
        let (content_type, body) = multipart(&self.loc.key(object), bytes);
        let answer = self
            .call(Request {
                op: OP,
                method: Method::POST,
                path: format!(
                    "/upload/storage/v1/b/{}/o?uploadType=multipart&ifGenerationMatch={if_generation}",
                    encode(&self.loc.bucket)
                ),
                body: Some((content_type, body)),
            })
            .map_err(|text| self.write_error(object, text))?;
        match answer.status {
            200 => {}
            412 => return Err(self.moved(object)),
            _ => return Err(self.write_error(object, answer.error_text(OP))),
        }
        let written = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|o| match &o["generation"] {
                Value::String(s) => generation(s),
                Value::Number(n) => n.as_u64().filter(|g| *g > 0),
                _ => None,
            });
        match written {
            Some(g) => Ok(Version::new(g.to_string())),
            None => Err(self.write_error(
                object,
                format!("{OP}: the answer has no valid `generation`"),
            )),
        }
    }

    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        const OP: &str = "storage.objects.delete";
        let g = generation(version.as_str()).ok_or_else(|| self.moved(object))?;
        let answer = self
            .call(Request {
                op: OP,
                method: Method::DELETE,
                path: format!("{}?ifGenerationMatch={g}", self.object_path(object)),
                body: None,
            })
            .map_err(|text| self.write_error(object, text))?;
        match answer.status {
            200 | 204 => Ok(()),
            412 => Err(self.moved(object)),
            404 if !answer.bucket_missing() => Err(self.moved(object)),
            _ => Err(self.write_error(object, answer.error_text(OP))),
        }
    }

    fn describe(&self, object: Object) -> String {
        self.loc.url(object)
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(250)
    }
}

fn setup(loc: &GcsLocation, message: String) -> StateError {
    StateError::Setup {
        path: PathBuf::from(format!("gs://{}", loc.bucket)),
        message,
    }
}

/// The base URL of a `Local` endpoint, if it is on this machine.
fn loopback_endpoint(endpoint: &str) -> Result<String, String> {
    let refuse = |why: &str| {
        format!(
            "the local GCS endpoint `{endpoint}` {why}: anonymous access is only for an \
             emulator on this machine (`http://127.0.0.1:PORT`, `http://localhost:PORT`, \
             `http://[::1]:PORT`); use Application Default Credentials for GCS itself"
        )
    };
    let url = reqwest::Url::parse(endpoint).map_err(|e| refuse(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("is not an http:// or https:// URL"));
    }
    let host = url.host_str().unwrap_or("");
    if !is_loopback_host(host) {
        return Err(refuse("is not on this machine"));
    }
    Ok(endpoint.trim_end_matches('/').to_string())
}

/// `s` as one path segment: everything but unreserved characters percent-encoded, `/`
/// included (GCS object names hold `/`, but the API path takes the name as one segment).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A version as a GCS generation: a positive decimal number (0 means "absent" to GCS).
fn generation(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|g| *g > 0)
}

/// A multipart upload's content type and body: the object's metadata (its name, JSON
/// content) and its bytes, apart by a boundary that is not in the bytes.
fn multipart(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = (0u32..)
        .map(|n| format!("flyteinfra-state-part-{n}"))
        .find(|b| !bytes.windows(b.len()).any(|w| w == b.as_bytes()))
        .expect("a boundary");
    let metadata = serde_json::json!({"name": name, "contentType": "application/json"});
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n\
             --{boundary}\r\nContent-Type: application/json\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/related; boundary={boundary}"), body)
}

/// `err` and its sources, `: `-separated, without what the HTTP and auth libraries
/// repeat: levels that only restate a deeper one, and the auth library's "but future
/// attempts may succeed" at every level.
fn brief_chain(err: &dyn std::error::Error) -> String {
    let mut levels = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        let text = text
            .trim_end_matches(" but future attempts may succeed")
            .trim_end_matches(" and future attempts will not succeed")
            .trim()
            .to_string();
        levels.push(text);
        next = e.source();
    }
    let mut kept: Vec<&str> = Vec::new();
    for (i, text) in levels.iter().enumerate() {
        let restated = levels[i + 1..]
            .iter()
            .any(|deeper| text.contains(deeper.as_str()));
        if !text.is_empty() && !restated && !kept.contains(&text.as_str()) {
            kept.push(text);
        }
    }
    kept.join(": ")
}

/// One request to the JSON API.
struct Request {
    /// The API method, for messages (`storage.objects.get`).
    op: &'static str,
    method: Method,
    /// Path and query, from `/storage/v1/` or `/upload/storage/v1/`.
    path: String,
    /// Content type and bytes.
    body: Option<(String, Vec<u8>)>,
}

/// What GCS answered, whatever the status.
struct Answer {
    status: u16,
    /// `x-goog-generation`: the generation of the bytes a media read returns.
    generation: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    /// `op: <reason>: <GCS's message> (HTTP <status>)`, the message trimmed.
    fn error_text(&self, op: &str) -> String {
        let parsed = serde_json::from_slice::<Value>(&self.body).ok();
        let message = parsed.as_ref().and_then(|v| {
            let e = &v["error"];
            let message = e["message"].as_str()?;
            Some(match e["errors"][0]["reason"].as_str() {
                Some(reason) if !reason.is_empty() => format!("{reason}: {message}"),
                _ => message.to_string(),
            })
        });
        let message = message.unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        let mut message = message.split_whitespace().collect::<Vec<_>>().join(" ");
        if message.chars().count() > MESSAGE_LIMIT {
            message = message.chars().take(MESSAGE_LIMIT).collect::<String>() + "…";
        }
        if message.is_empty() {
            format!("{op}: HTTP {}", self.status)
        } else {
            format!("{op}: {message} (HTTP {})", self.status)
        }
    }

    /// A 404 about the bucket, not the object (GCS: "The specified bucket does not
    /// exist."): a bucket deleted under us is an error, never "no state".
    fn bucket_missing(&self) -> bool {
        self.status == 404
            && String::from_utf8_lossy(&self.body)
                .to_ascii_lowercase()
                .contains("bucket does not exist")
    }
}

/// The HTTP client, its credentials and endpoint. Clones share all three.
#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    creds: Credentials,
    /// `https://storage.googleapis.com`, or an emulator's URL.
    base: Arc<str>,
    /// Requests sent, each attempt counted.
    calls: Arc<AtomicU64>,
}

impl Api {
    fn new(base: String, access: &GcsAccess) -> Result<Api, String> {
        let creds = match access {
            GcsAccess::Adc => credentials::Builder::default().build().map_err(|e| {
                format!(
                    "no Google Cloud credentials: {}; run `gcloud auth application-default \
                     login` or set GOOGLE_APPLICATION_CREDENTIALS",
                    brief_chain(&e)
                )
            })?,
            GcsAccess::Local { .. } => credentials::anonymous::Builder::new().build(),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(OPERATION_TIMEOUT)
            .user_agent(concat!("flyteinfra/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(Api {
            http,
            creds,
            base: base.into(),
            calls: Arc::default(),
        })
    }

    /// Sends `req`, repeating it on a transient failure (see [`ATTEMPTS`]). `Ok` is GCS's
    /// last answer, whatever its status; `Err` means no answer.
    async fn send(self, req: Request) -> Result<Answer, String> {
        let op = req.op;
        let attempts = async {
            let mut delay = FIRST_BACKOFF;
            let mut attempt = 1;
            loop {
                let out = self.once(&req).await;
                let again = match &out {
                    Ok(a) => matches!(a.status, 408 | 429 | 500..=599),
                    Err((_, transient)) => *transient,
                };
                if !again || attempt == ATTEMPTS {
                    return out.map_err(|(text, _)| text);
                }
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        };
        tokio::time::timeout(OPERATION_TIMEOUT, attempts)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "{op}: GCS did not answer in {} s",
                    OPERATION_TIMEOUT.as_secs()
                ))
            })
    }

    /// One attempt. `Err` holds the text and whether trying again may help.
    async fn once(&self, req: &Request) -> Result<Answer, (String, bool)> {
        let op = req.op;
        let headers = self.creds.headers(Default::default()).await.map_err(|e| {
            let transient = e.is_transient();
            (
                format!("{op}: no Google Cloud token: {}", brief_chain(&e)),
                transient,
            )
        })?;
        let mut builder = self
            .http
            .request(req.method.clone(), format!("{}{}", self.base, req.path));
        if let CacheableResource::New { data, .. } = headers {
            builder = builder.headers(data);
        }
        if let Some((content_type, bytes)) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, content_type)
                .body(bytes.clone());
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        // reqwest's errors name the URL (bucket and object), never a header.
        let resp = builder
            .send()
            .await
            .map_err(|e| (format!("{op}: {}", brief_chain(&e)), true))?;
        let status = resp.status().as_u16();
        let generation = resp
            .headers()
            .get("x-goog-generation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp.bytes().await.map_err(|e| {
            (
                format!("{op}: reading the answer: {}", brief_chain(&e)),
                true,
            )
        })?;
        Ok(Answer {
            status,
            generation,
            body: body.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(prefix: &str, cloud: &str) -> GcsLocation {
        GcsLocation {
            bucket: "b".into(),
            prefix: prefix.into(),
            cloud: cloud.into(),
        }
    }

    fn local(endpoint: &str) -> GcsAccess {
        GcsAccess::Local {
            endpoint: endpoint.into(),
        }
    }

    #[test]
    fn keys_sit_under_the_prefix_one_pair_per_cloud() {
        let l = loc("team/prod", "gcp");
        assert_eq!(l.key(Object::State), "team/prod/gcp.state.json");
        assert_eq!(l.key(Object::Lease), "team/prod/gcp.state.json.lock");
        assert_eq!(l.url(Object::State), "gs://b/team/prod/gcp.state.json");
        assert_eq!(
            loc("team/prod/", "aws").key(Object::State),
            "team/prod/aws.state.json"
        );
        assert_eq!(loc("", "gcp").key(Object::Lease), "gcp.state.json.lock");
        assert_eq!(
            loc("", "gcp").url(Object::Lease),
            "gs://b/gcp.state.json.lock"
        );
    }

    #[test]
    fn object_names_are_one_path_segment() {
        assert_eq!(
            encode("team/prod/gcp.state.json"),
            "team%2Fprod%2Fgcp.state.json"
        );
        assert_eq!(encode("a b?c#d%e+f~g_h-i"), "a%20b%3Fc%23d%25e%2Bf~g_h-i");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn only_a_positive_decimal_number_is_a_generation() {
        assert_eq!(generation("1796297118822477"), Some(1_796_297_118_822_477));
        for bad in [
            "",
            "0",
            "-1",
            "+1",
            "\"1\"",
            "1.0",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(generation(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_multipart_boundary_never_occurs_in_the_bytes() {
        let (content_type, body) = multipart("p/gcp.state.json", b"{\"a\":1}");
        assert_eq!(
            content_type,
            "multipart/related; boundary=flyteinfra-state-part-0"
        );
        let body = String::from_utf8(body).unwrap();
        assert!(body.starts_with("--flyteinfra-state-part-0\r\n"), "{body}");
        assert!(body.contains(r#"{"name":"p/gcp.state.json","contentType":"application/json"}"#));
        assert!(
            body.ends_with("\r\n{\"a\":1}\r\n--flyteinfra-state-part-0--\r\n"),
            "{body}"
        );

        let tricky = b"--flyteinfra-state-part-0 and flyteinfra-state-part-1";
        let (content_type, _) = multipart("x", tricky);
        assert!(content_type.ends_with("boundary=flyteinfra-state-part-2"));
    }

    #[test]
    fn errors_carry_gcs_reason_and_message_trimmed() {
        let answer = |status, body: &str| Answer {
            status,
            generation: None,
            body: body.as_bytes().to_vec(),
        };
        let a = answer(
            403,
            r#"{"error":{"code":403,"message":"x@y.iam does not have storage.buckets.get access.",
                "errors":[{"reason":"forbidden","message":"..."}]}}"#,
        );
        assert_eq!(
            a.error_text("storage.buckets.get"),
            "storage.buckets.get: forbidden: x@y.iam does not have storage.buckets.get \
             access. (HTTP 403)"
        );
        let a = answer(502, &format!("<html>\n  {}</html>", "x".repeat(1000)));
        let text = a.error_text("op");
        assert!(text.starts_with("op: <html> xxx"), "{text}");
        assert!(text.ends_with("… (HTTP 502)"), "{text}");
        assert_eq!(answer(503, "").error_text("op"), "op: HTTP 503");

        let gone = answer(
            404,
            r#"{"error":{"code":404,"message":"The specified bucket does not exist."}}"#,
        );
        assert!(gone.bucket_missing());
        assert!(!answer(404, "No such object: b/o").bucket_missing());
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn error_chains_say_each_thing_once() {
        let e = Layer(
            "cannot create headers: no token but future attempts may succeed",
            Some(Box::new(Layer(
                "no token but future attempts may succeed",
                Some(Box::new(Layer(
                    "error sending request for url (http://metadata/token)",
                    Some(Box::new(Layer(
                        "error sending request for url (http://metadata/token)",
                        Some(Box::new(Layer("dns error", None))),
                    ))),
                ))),
            ))),
        );
        assert_eq!(
            brief_chain(&e),
            "no token: error sending request for url (http://metadata/token): dns error"
        );
    }

    #[test]
    fn only_a_loopback_endpoint_gets_anonymous_access() {
        for ok in [
            "http://127.0.0.1:4443",
            "http://127.0.0.1:4443/",
            "http://localhost:9023",
            "https://[::1]:8443",
        ] {
            assert_eq!(
                loopback_endpoint(ok),
                Ok(ok.trim_end_matches('/').to_string())
            );
        }
        for bad in [
            "http://10.0.0.5:4443",
            "https://storage.googleapis.com",
            "http://127.0.0.1.example.com",
            "ftp://127.0.0.1",
            "127.0.0.1:4443",
        ] {
            assert!(loopback_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_cloud_or_a_remote_local_endpoint_is_refused_before_any_request() {
        for bad in ["", "GCP", "a/b", "../x"] {
            let e = GcsBackend::connect(loc("", bad), local("http://127.0.0.1:1")).unwrap_err();
            assert!(matches!(e, StateError::InvalidCloud { .. }), "{bad}: {e:?}");
        }
        let e = GcsBackend::connect(loc("", "gcp"), local("http://192.0.2.7:4443")).unwrap_err();
        let StateError::Setup { path, message } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(path, &PathBuf::from("gs://b"));
        assert!(
            message.contains("`http://192.0.2.7:4443` is not on this machine"),
            "{message}"
        );
    }

    #[test]
    fn an_unreachable_endpoint_is_a_setup_error_naming_the_bucket() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = GcsBackend::connect(loc("", "gcp"), local(&format!("http://127.0.0.1:{port}")))
            .unwrap_err();
        let StateError::Setup { path, message } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(path, &PathBuf::from("gs://b"));
        assert!(message.contains("storage.buckets.get"), "{message}");
        assert!(message.contains("network"), "{message}");
    }
}

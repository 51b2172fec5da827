//! One small typed client for Azure Resource Manager over the official `azure_core` HTTP
//! types and `azure_identity` credentials.
//!
//! ARM is one uniform REST API: every resource is `PUT`/`GET`/`PATCH`/`DELETE` on its
//! resource id with an `api-version`, errors are `{"error":{"code","message"}}`, and long
//! operations answer 201/202 with an `Azure-AsyncOperation` status URL or a `Location`
//! URL to poll. The generated per-service crates of the current SDK generation cover none
//! of the management APIs flyteinfra needs, and the legacy `azure_mgmt_*` crates sit on
//! `azure_core` 0.21 and a second reqwest (ARCHITECTURE.md, "Azure"), so this client does
//! the little ARM needs itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{HttpClient, Method, Request, Url, new_http_client};
use flyteinfra_core::{ErrorKind, PollSchedule, Progress, ProviderError};
use serde_json::Value;

use crate::blob::BlobPlane;
use crate::error::{arm_err, operation_failed};

/// Azure's public-cloud Resource Manager.
pub const MANAGEMENT_URL: &str = "https://management.azure.com";

/// The token scope of Resource Manager.
const SCOPE: &str = "https://management.azure.com/.default";

/// Attempts of one request when Azure throttles it (or, for reads, fails with a 5xx).
const ATTEMPTS: u32 = 5;

/// The longest `Retry-After` honoured; beyond it the engine's own retry takes over.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A client for one subscription. Cloning is cheap.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Arc<dyn HttpClient>,
    credential: Option<Arc<dyn TokenCredential>>,
    base: String,
    subscription: String,
    /// The shortest wait between polls (a `Retry-After: 0` or a missing header).
    min_poll: Duration,
    /// A fixed poll interval instead of the adaptive schedule (tests, the demo).
    poll: Option<Duration>,
    calls: Mutex<BTreeMap<String, u64>>,
    /// The blob data plane, for what ARM cannot do (list and delete blobs).
    blob: Option<BlobPlane>,
}

/// A successful answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (`Null` when empty).
    pub body: Value,
    /// The operation to follow, when the change goes on after the answer.
    pub operation: Option<Operation>,
    /// The wait Azure asked for before the next poll (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// A long-running operation to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// The absolute URL to poll.
    pub url: String,
    /// How its answers say "done".
    pub style: OperationStyle,
    /// The first wait Azure asked for.
    pub retry_after: Option<Duration>,
}

/// The two ways ARM reports a long-running operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationStyle {
    /// `Azure-AsyncOperation`: a status document with `status` `InProgress`, then
    /// `Succeeded`, `Failed` or `Canceled`.
    AsyncOperation,
    /// `Location`: 202 while running, then any other 2xx.
    Location,
}

impl ArmClient {
    /// A client for `subscription` at Resource Manager `base` (no trailing slash needed),
    /// authenticating with `credential`, or sending no token when `None` (only for loopback
    /// test doubles, checked by the caller).
    pub fn new(
        base: &str,
        subscription: &str,
        credential: Option<Arc<dyn TokenCredential>>,
    ) -> ArmClient {
        ArmClient {
            inner: Arc::new(Inner {
                http: new_http_client(None),
                credential,
                base: base.trim_end_matches('/').to_string(),
                subscription: subscription.to_string(),
                min_poll: Duration::from_secs(1),
                poll: None,
                calls: Mutex::new(BTreeMap::new()),
                blob: None,
            }),
        }
    }

    /// This client's settings to build a changed client from (its own when no clone
    /// shares them; a clone's start a fresh call count).
    fn into_inner(self) -> Inner {
        Arc::try_unwrap(self.inner).unwrap_or_else(|a| Inner {
            http: a.http.clone(),
            credential: a.credential.clone(),
            base: a.base.clone(),
            subscription: a.subscription.clone(),
            min_poll: a.min_poll,
            poll: a.poll,
            calls: Mutex::new(BTreeMap::new()),
            blob: a.blob.clone(),
        })
    }

    /// The same client polling every `interval` (at least) instead of the adaptive
    /// schedule: for test doubles that finish operations after a few polls.
    pub fn with_poll_interval(self, interval: Duration) -> ArmClient {
        let inner = self.into_inner();
        ArmClient {
            inner: Arc::new(Inner {
                min_poll: interval,
                poll: Some(interval),
                ..inner
            }),
        }
    }

    /// The same client with blob data-plane access (container emptiness checks and
    /// emptying, which ARM cannot do).
    pub fn with_blob_plane(self, plane: BlobPlane) -> ArmClient {
        let inner = self.into_inner();
        ArmClient {
            inner: Arc::new(Inner {
                blob: Some(plane),
                ..inner
            }),
        }
    }

    /// The blob data plane; `None` for a client without data-plane access (a container
    /// delete then cannot check emptiness and refuses with a clear error).
    pub fn blob_plane(&self) -> Option<&BlobPlane> {
        self.inner.blob.as_ref()
    }

    /// The subscription every resource lives in.
    pub fn subscription(&self) -> &str {
        &self.inner.subscription
    }

    /// `/subscriptions/{id}`.
    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.inner.subscription)
    }

    /// The poll schedule of a wait that usually takes `expected`.
    pub fn schedule(&self, expected: Duration) -> PollSchedule {
        self.inner
            .poll
            .map_or(PollSchedule::adaptive(expected), PollSchedule::fixed)
    }

    /// Requests sent so far by this client and its clones.
    pub fn calls(&self) -> u64 {
        self.calls_by_operation().values().sum()
    }

    /// The same, by `METHOD type` (`PUT flexibleServers`).
    pub fn calls_by_operation(&self) -> BTreeMap<String, u64> {
        self.inner.calls.lock().expect("call counter").clone()
    }

    /// `GET path`: the resource, or `None` when Azure answers 404.
    pub async fn get(&self, path: &str, api_version: &str) -> Result<Option<Value>, ProviderError> {
        match self.call(Method::Get, path, api_version, None).await {
            Ok(a) => Ok(Some(a.body)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET path` of a list: every item of every page (ARM pages long lists with
    /// `nextLink`, an absolute URL carrying its own `api-version`). A missing parent is an
    /// empty list.
    pub async fn list(&self, path: &str, api_version: &str) -> Result<Vec<Value>, ProviderError> {
        let Some(mut page) = self.get(path, api_version).await? else {
            return Ok(Vec::new());
        };
        let mut items = Vec::new();
        loop {
            if let Some(v) = page["value"].as_array() {
                items.extend(v.iter().cloned());
            }
            let Some(next) = page["nextLink"].as_str().filter(|n| !n.is_empty()) else {
                return Ok(items);
            };
            let op = format!("GET {} (next page)", op_type(path));
            page = self.send_retrying(Method::Get, next, None, &op).await?.body;
        }
    }

    /// `PUT path body`: create or replace.
    pub async fn put(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Answer, ProviderError> {
        self.call(Method::Put, path, api_version, Some(body)).await
    }

    /// `PATCH path body`: change some fields.
    pub async fn patch(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Answer, ProviderError> {
        self.call(Method::Patch, path, api_version, Some(body))
            .await
    }

    /// `POST path` (an action such as `register`).
    pub async fn post(&self, path: &str, api_version: &str) -> Result<Answer, ProviderError> {
        self.call(Method::Post, path, api_version, Some(&Value::Null))
            .await
    }

    /// `DELETE path`: `None` when there was nothing to delete (404 or 204).
    pub async fn delete(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<Answer>, ProviderError> {
        match self.call(Method::Delete, path, api_version, None).await {
            Ok(a) if a.status == 204 => Ok(None),
            Ok(a) => Ok(Some(a)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one ARM request, retrying a throttled one after Azure's `Retry-After` (ARM
    /// refuses those before doing anything) and a read that met a 5xx or a dropped
    /// connection. A write that met a 5xx is not repeated here: it may have happened.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ProviderError> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{sep}api-version={api_version}", self.inner.base);
        let op = format!("{} {}", method.as_ref(), op_type(path));
        self.send_retrying(method, &url, body, &op).await
    }

    async fn send_retrying(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        op: &str,
    ) -> Result<Answer, ProviderError> {
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            match self.once(method, url, body, op).await {
                Err((e, after))
                    if attempt < ATTEMPTS
                        && (e.kind == ErrorKind::Throttled
                            || (e.kind == ErrorKind::Transient && method == Method::Get)) =>
                {
                    let wait = after.unwrap_or(delay).max(self.inner.min_poll.min(delay));
                    tokio::time::sleep(wait.min(MAX_RETRY_AFTER)).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                Err((e, _)) => return Err(e),
                Ok(a) => return Ok(a),
            }
        }
    }

    async fn once(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        op: &str,
    ) -> Result<Answer, (ProviderError, Option<Duration>)> {
        *self
            .inner
            .calls
            .lock()
            .expect("call counter")
            .entry(op.to_string())
            .or_default() += 1;
        let parsed = Url::parse(url).map_err(|e| {
            let e = ProviderError::new(ErrorKind::Permanent, format!("{op}: bad URL `{url}`: {e}"));
            (e, None)
        })?;
        let mut req = Request::new(parsed, method);
        req.insert_header("accept", "application/json");
        if let Some(cred) = &self.inner.credential {
            let token = cred.get_token(&[SCOPE], None).await.map_err(|e| {
                let e = ProviderError::new(
                    ErrorKind::Auth,
                    format!("{op}: no Azure access token: {e}"),
                );
                (e, None)
            })?;
            req.insert_header("authorization", format!("Bearer {}", token.token.secret()));
        }
        if let Some(b) = body {
            req.insert_header("content-type", "application/json");
            let bytes = if b.is_null() {
                Vec::new()
            } else {
                serde_json::to_vec(b).expect("a JSON value serializes")
            };
            req.set_body(bytes);
        }
        let resp = self.inner.http.execute_request(&req).await.map_err(|e| {
            let e = ProviderError::new(ErrorKind::Transient, format!("{op}: {e}"));
            (e, None)
        })?;
        let status: u16 = resp.status().into();
        let headers = resp.headers().clone();
        let header = |name: &'static str| {
            headers
                .get_optional_str(&azure_core::http::headers::HeaderName::from_static(name))
                .map(str::to_string)
        };
        let retry_after = header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.into_body().collect().await.map_err(|e| {
            let e = ProviderError::new(
                ErrorKind::Transient,
                format!("{op}: reading the answer: {e}"),
            );
            (e, None)
        })?;
        let text = String::from_utf8_lossy(&bytes);
        if !(200..300).contains(&status) {
            return Err((arm_err(op, status, &text), retry_after));
        }
        let body = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| {
                let e =
                    ProviderError::new(ErrorKind::Permanent, format!("{op}: bad JSON answer: {e}"));
                (e, None)
            })?
        };
        let operation = header("azure-asyncoperation")
            .map(|url| (url, OperationStyle::AsyncOperation))
            .or_else(|| {
                // A `Location` means "poll me" only on 202 (a 201 may name the resource).
                header("location")
                    .filter(|_| status == 202)
                    .map(|url| (url, OperationStyle::Location))
            })
            .map(|(url, style)| Operation {
                url,
                style,
                retry_after,
            });
        Ok(Answer {
            status,
            body,
            operation,
            retry_after,
        })
    }

    /// Follows `operation` until it ends, reporting its status. A throttled or failed
    /// poll is asked again (bounded); an operation that ends `Failed` or `Canceled` is an
    /// error with Azure's code and message. `op` names it in errors.
    pub async fn follow(
        &self,
        operation: &Operation,
        op: &str,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let mut wait = operation.retry_after;
        let mut misses = 0;
        loop {
            let interval = wait
                .unwrap_or(Duration::from_secs(5))
                .clamp(self.inner.min_poll, MAX_RETRY_AFTER);
            tokio::time::sleep(interval).await;
            let answer = match self
                .send_retrying(Method::Get, &operation.url, None, &format!("{op} (poll)"))
                .await
            {
                Ok(a) => a,
                Err(e) if e.kind.is_retryable() && misses < 20 => {
                    misses += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            misses = 0;
            let done = match operation.style {
                OperationStyle::Location => answer.status != 202,
                OperationStyle::AsyncOperation => {
                    let status = answer.body["status"].as_str().unwrap_or("InProgress");
                    match status {
                        "Succeeded" => true,
                        "Failed" | "Canceled" => {
                            return Err(operation_failed(op, status, &answer.body));
                        }
                        other => {
                            progress.status(other.to_string());
                            false
                        }
                    }
                }
            };
            if done {
                return Ok(());
            }
            wait = answer.retry_after.or(wait);
        }
    }
}

/// The resource type an ARM path names, for counting and errors: the last type segment,
/// lowercased as ARM compares them (`/…/virtualNetworks/v/subnets/s` → `subnets`;
/// `/subscriptions/s/resourceGroups/g` → `resourcegroups`).
fn op_type(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    // Resource ids alternate type/name after `providers/{namespace}`; the segment before a
    // name is its type. An action (`register`) ends the path on a type-like word.
    let ty = if segs.len() % 2 == 1 {
        segs.last().copied()
    } else {
        segs.get(segs.len().saturating_sub(2)).copied()
    };
    ty.unwrap_or_default().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteinfra_azure_double::AzureDouble;
    use flyteinfra_core::{Address, Event, EventKind, Observer};
    use serde_json::json;

    use crate::testutil::{LOCATION, client, client_of, double, unique};

    /// Resource Manager's api-version for groups.
    const GROUPS: &str = "2021-04-01";
    /// The network provider's api-version.
    const NETWORK: &str = "2024-05-01";

    fn group_path(c: &ArmClient, rg: &str) -> String {
        format!("{}/resourcegroups/{rg}", c.subscription_path())
    }

    /// A new group, by path.
    async fn group(c: &ArmClient) -> String {
        let path = group_path(c, &unique("rg"));
        c.put(&path, GROUPS, &json!({ "location": LOCATION }))
            .await
            .expect("group");
        path
    }

    fn nsg_path(group: &str, name: &str) -> String {
        format!("{group}/providers/Microsoft.Network/networkSecurityGroups/{name}")
    }

    /// Records the statuses reported.
    #[derive(Default)]
    struct Statuses(Mutex<Vec<String>>);

    impl Observer for Statuses {
        fn on_event(&self, event: Event) {
            if let EventKind::Status(s) = event.kind {
                self.0.lock().unwrap().push(s);
            }
        }
    }

    fn progress(sink: &Arc<Statuses>) -> Progress {
        Progress::new(Address::new("azure_test", "test"), sink.clone())
    }

    #[tokio::test]
    async fn get_of_a_missing_resource_is_none() {
        let c = client();
        let missing = group_path(&c, &unique("missing"));
        assert_eq!(c.get(&missing, GROUPS).await.unwrap(), None);
        let rg = group(&c).await;
        let nsg = nsg_path(&rg, "absent");
        assert_eq!(c.get(&nsg, NETWORK).await.unwrap(), None);
        assert!(c.get(&rg, GROUPS).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_throttled_call_is_retried() {
        let d = AzureDouble::start();
        d.shared().lock().knobs.throttle_every = 2;
        let c = client_of(&d);
        c.get(&c.subscription_path(), "2022-12-01")
            .await
            .unwrap()
            .expect("the subscription");
        // The second call is throttled (before doing anything) and asked again.
        let path = group_path(&c, &unique("rg"));
        let a = c
            .put(&path, GROUPS, &json!({ "location": LOCATION }))
            .await
            .unwrap();
        assert_eq!(a.status, 201);
        let w = d.shared().lock();
        assert_eq!(w.calls(), 3, "one throttled answer, one retry");
        assert_eq!(w.calls_by_op().get("PUT resourceGroups"), Some(&2));
        assert!(w.resource(&path).is_some());
        assert_eq!(c.calls(), 3);
    }

    #[tokio::test]
    async fn follow_ends_with_the_async_operation() {
        let c = client();
        let rg = group(&c).await;
        let nsg = nsg_path(&rg, &unique("nsg"));
        let a = c
            .put(&nsg, NETWORK, &json!({ "location": LOCATION }))
            .await
            .unwrap();
        assert_eq!(a.status, 201);
        let op = a.operation.expect("an operation to follow");
        assert_eq!(op.style, OperationStyle::AsyncOperation);
        let sink = Arc::new(Statuses::default());
        c.follow(&op, "creating nsg", &progress(&sink))
            .await
            .unwrap();
        assert_eq!(*sink.0.lock().unwrap(), ["InProgress", "InProgress"]);
        let stored = double().shared().lock().resource(&nsg).unwrap();
        assert_eq!(stored["properties"]["provisioningState"], "Succeeded");
    }

    #[tokio::test]
    async fn follow_of_a_failed_operation_is_azures_error() {
        let d = AzureDouble::start();
        let c = client_of(&d);
        let rg = group(&c).await;
        let name = unique("nsg");
        d.shared()
            .lock()
            .knobs
            .fail_next
            .push(("PUT".into(), format!("networkSecurityGroups/{name}")));
        let nsg = nsg_path(&rg, &name);
        let a = c
            .put(&nsg, NETWORK, &json!({ "location": LOCATION }))
            .await
            .unwrap();
        let op = a.operation.expect("an operation to follow");
        let e = c
            .follow(&op, "creating nsg", &Progress::none(Address::new("t", "t")))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(e.message.contains("creating nsg"), "{e}");
        assert!(e.message.contains("Failed: InternalServerError"), "{e}");
    }

    #[tokio::test]
    async fn group_delete_is_followed_by_its_location() {
        let c = client();
        let rg = group(&c).await;
        let a = c.delete(&rg, GROUPS).await.unwrap().expect("a delete");
        assert_eq!(a.status, 202);
        let op = a.operation.expect("an operation to follow");
        assert_eq!(op.style, OperationStyle::Location);
        assert_eq!(op.retry_after, Some(Duration::ZERO));
        c.follow(
            &op,
            "deleting group",
            &Progress::none(Address::new("t", "t")),
        )
        .await
        .unwrap();
        assert!(double().shared().lock().resource(&rg).is_none());
        assert_eq!(c.get(&rg, GROUPS).await.unwrap(), None);
        assert!(c.delete(&rg, GROUPS).await.unwrap().is_none(), "gone: 404");
    }

    #[tokio::test]
    async fn a_write_whose_answer_was_lost_is_not_repeated() {
        let d = AzureDouble::start();
        let c = client_of(&d);
        let rg = group(&c).await;
        let name = unique("nsg");
        d.shared()
            .lock()
            .knobs
            .lose_next_response
            .push(("PUT".into(), format!("networkSecurityGroups/{name}")));
        let nsg = nsg_path(&rg, &name);
        let (before, client_before) = (d.shared().lock().calls(), c.calls());
        let e = c
            .put(&nsg, NETWORK, &json!({ "location": LOCATION }))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transient, "{e}");
        assert_eq!(d.shared().lock().calls(), before + 1);
        assert_eq!(c.calls(), client_before + 1);
        assert!(
            d.shared().lock().resource(&nsg).is_some(),
            "the PUT took effect"
        );
    }

    #[test]
    fn operations_are_named_by_their_last_type() {
        assert_eq!(
            op_type("/subscriptions/s/resourcegroups/g"),
            "resourcegroups"
        );
        assert_eq!(
            op_type(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/x"
            ),
            "subnets"
        );
        assert_eq!(op_type("/subscriptions/s/locations"), "locations");
        assert_eq!(op_type("/subscriptions/s"), "subscriptions");
        assert_eq!(
            op_type("/subscriptions/s/providers/Microsoft.Network/register"),
            "register"
        );
    }
}

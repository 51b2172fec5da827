//! Shared polling of Cloud SQL and GKE long-running operations, plus the small helpers the
//! Cloud SQL and GKE resource types share (stable hashing, label-safe tokens, backoff).
//!
//! The official clients' own pollers hide progress, so operations are polled here (the
//! resource types report their object's own status meanwhile): a short backoff (200 ms
//! doubling to 5 s), no overall timeout (the engine owns time), and a failed operation is
//! an error carrying Google's message at once.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use flyteinfra_core::{Attributes, ErrorKind, ProviderError, Schema, Value};
use google_cloud_container_v1::model::operation::Status as GkeOpStatus;
use google_cloud_sql_v1::model::operation::SqlOperationStatus;

use crate::client::GcpClients;
use crate::error::gax_err;

/// Operations sent by this process, by the id of the object they act on, so a wait can
/// poll the operation (which carries Google's error message). After a restart it is empty
/// and waits poll the object itself.
#[derive(Default)]
pub(crate) struct OpMemo(Mutex<HashMap<String, String>>);

impl OpMemo {
    fn map(&self) -> MutexGuard<'_, HashMap<String, String>> {
        // A panic while holding it leaves a plain map: nothing to repair.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `op` as the running operation on `id`.
    pub(crate) fn remember(&self, id: &str, op: &str) {
        self.map().insert(id.to_string(), op.to_string());
    }

    /// The running operation on `id`, if this process sent one.
    pub(crate) fn recalled(&self, id: &str) -> Option<String> {
        self.map().get(id).cloned()
    }

    /// Forgets the operation on `id` (it finished).
    pub(crate) fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}

/// Poll intervals: 200 ms doubling up to 5 s.
pub(crate) struct Backoff(Duration);

impl Backoff {
    /// A fresh backoff.
    pub(crate) fn new() -> Self {
        Backoff(Duration::from_millis(200))
    }

    /// Sleeps for the current interval and lengthens the next one.
    pub(crate) async fn sleep(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

/// Consecutive throttled or transient answers one poll tolerates before it gives up.
const POLL_MISSES: u32 = 20;

/// One poll of a long-running operation. A throttled or transient answer says nothing
/// about the operation, so it is asked again at the next interval rather than failing a
/// wait that may span hundreds of polls (bounded, then the engine's retry takes over).
pub(crate) async fn poll<T, F, Fut>(backoff: &mut Backoff, mut call: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProviderError>>,
{
    let mut misses = 0;
    loop {
        match call().await {
            Err(e) if e.kind.is_retryable() && misses < POLL_MISSES => {
                misses += 1;
                backoff.sleep().await;
            }
            other => return other,
        }
    }
}

/// `token` as a GCP label value (`[a-z0-9_-]`, at most 63 characters): lowercased, other
/// characters replaced by `-`; a longer token becomes its hash.
pub(crate) fn label_value(token: &str) -> String {
    let clean: String = token
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() <= 63 {
        clean
    } else {
        format!("h-{:016x}", flyteinfra_core::fnv1a64(token.as_bytes()))
    }
}

/// Drops the inputs the last applied inputs did not set (unset optional inputs are not
/// managed, so they never show as drift). With no prior inputs (an import) all are kept.
pub(crate) fn managed_only(
    mut a: Attributes,
    prior_inputs: &Attributes,
    schema: &Schema,
) -> Attributes {
    if !prior_inputs.is_empty() {
        a.retain(|k, _| {
            schema
                .field(k)
                .is_none_or(|f| f.flags.computed || prior_inputs.contains_key(k))
        });
    }
    a
}

/// The `projects/...` part of a resource link, so a full URL and a relative self link of
/// the same object compare equal.
pub(crate) fn link_path(link: &str) -> &str {
    link.find("projects/").map_or(link, |i| &link[i..])
}

/// The cloud's `link` as an attribute: the prior input's spelling when both name the same
/// object (a self link, a relative link, or a bare name whose last segment matches), so
/// spelling alone is never drift.
pub(crate) fn link_value(cloud: &str, prior: Option<&Value>) -> Value {
    if let Some(p) = prior.and_then(Value::as_str) {
        let last = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
        let same = link_path(p) == link_path(cloud)
            || ((!p.contains('/') || !cloud.contains('/')) && last(p) == last(cloud));
        if same {
            return Value::Str(p.to_string());
        }
    }
    Value::Str(cloud.to_string())
}

/// A map of strings as an attribute.
pub(crate) fn string_map<'a>(m: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Map(
        m.into_iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect(),
    )
}

/// A map-of-strings input (missing = empty).
pub(crate) fn input_map(a: &Attributes, key: &str) -> Vec<(String, String)> {
    a.get(key)
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Cloud SQL runs one operation per instance at a time and answers 409 "another
/// operation is in progress" to the next: that clears by itself, so the engine retries it.
pub(crate) fn busy_is_transient(mut e: ProviderError) -> ProviderError {
    let m = e.message.to_ascii_lowercase();
    if matches!(
        e.kind,
        ErrorKind::Conflict | ErrorKind::AlreadyExists | ErrorKind::InvalidInput
    ) && (m.contains("in progress")
        || m.contains("operationinprogress")
        || m.contains("incompatible operation"))
    {
        e.kind = ErrorKind::Transient;
    }
    e
}

/// Waits for Cloud SQL operation `op` (its short name). A finished operation with errors
/// fails with Google's messages.
pub(crate) async fn wait_sql_op(
    clients: &GcpClients,
    op: &str,
    what: &str,
) -> Result<(), ProviderError> {
    let mut backoff = Backoff::new();
    loop {
        let o = poll(&mut backoff, || async {
            clients
                .sql_operations
                .get()
                .set_project(&clients.project)
                .set_operation(op)
                .send()
                .await
                .map_err(|e| gax_err("sql.operations.get", e))
        })
        .await?;
        if o.status == SqlOperationStatus::Done {
            let errors: Vec<String> = o
                .error
                .iter()
                .flat_map(|e| e.errors.iter())
                .map(|e| {
                    if e.message.is_empty() {
                        e.code.clone()
                    } else {
                        e.message.clone()
                    }
                })
                .collect();
            if errors.is_empty() {
                return Ok(());
            }
            return Err(ProviderError::new(
                ErrorKind::Permanent,
                format!("{what} failed: {}", errors.join("; ")),
            ));
        }
        backoff.sleep().await;
    }
}

/// The newest unfinished Cloud SQL operation on `instance`: after a restart a wait polls
/// it, as it carries Google's error message should it fail.
pub(crate) async fn pending_sql_op(
    clients: &GcpClients,
    instance: &str,
) -> Result<Option<String>, ProviderError> {
    let ops = clients
        .sql_operations
        .list()
        .set_project(&clients.project)
        .set_instance(instance)
        .send()
        .await
        .map_err(|e| gax_err("sql.operations.list", e))?;
    Ok(ops
        .items
        .into_iter()
        .find(|o| o.status != SqlOperationStatus::Done && o.target_id == instance)
        .map(|o| o.name))
}

/// The unfinished GKE operations on `id` (a cluster or node pool path) or on anything
/// under it, as `(full name, targets id itself)`: after a restart a wait polls them.
pub(crate) async fn pending_gke_ops(
    clients: &GcpClients,
    id: &str,
) -> Result<Vec<(String, bool)>, ProviderError> {
    let location = location_of(id);
    let ops = clients
        .gke
        .list_operations()
        .set_parent(format!("projects/{}/locations/{location}", clients.project))
        .send()
        .await
        .map_err(|e| gax_err("container.operations.list", e))?;
    // Target links spell the project as id or number: compare from `locations/`.
    let tail = id.find("locations/").map_or(id, |i| &id[i..]);
    let under = format!("{tail}/");
    Ok(ops
        .operations
        .into_iter()
        .filter(|o| o.status != GkeOpStatus::Done)
        .filter_map(|o| {
            let t = o.target_link.as_str();
            let exact = t.ends_with(tail);
            (exact || t.contains(&under)).then(|| {
                (
                    gke_op_path(&clients.project, location, &o.name, &o.location),
                    exact,
                )
            })
        })
        .collect())
}

/// Waits for the GKE operations on `id`: the one this process sent (remembered in
/// `memo`), or after a restart the unfinished ones found by listing. An error of an
/// operation on `id` itself fails the wait; one on something under it (a node pool of the
/// cluster) only has to end.
pub(crate) async fn finish_gke_ops(
    clients: &GcpClients,
    memo: &OpMemo,
    id: &str,
    what: &str,
) -> Result<(), ProviderError> {
    let ops = match memo.recalled(id) {
        Some(op) => vec![(op, true)],
        None => pending_gke_ops(clients, id).await?,
    };
    for (op, exact) in ops {
        // The operation's own status (RUNNING, DONE) says less than the object's, which
        // the caller reports once the operation is done.
        match wait_gke_op(clients, &op, what).await {
            Err(e) if e.kind.is_retryable() => return Err(e),
            Err(e) if exact && e.kind != ErrorKind::NotFound => {
                memo.forget(id);
                return Err(e);
            }
            _ => {}
        }
    }
    memo.forget(id);
    Ok(())
}

/// The location part of an id `projects/p/locations/{loc}/...`.
pub(crate) fn location_of(id: &str) -> &str {
    id.split('/')
        .skip_while(|s| *s != "locations")
        .nth(1)
        .unwrap_or("")
}

/// The full name of a GKE operation (`projects/p/locations/l/operations/o`) from the
/// operation a call returned; `location` is used when the operation does not say.
pub(crate) fn gke_op_path(project: &str, location: &str, op: &str, op_location: &str) -> String {
    if op.starts_with("projects/") {
        return op.to_string();
    }
    let loc = if op_location.is_empty() {
        location
    } else {
        op_location
    };
    format!("projects/{project}/locations/{loc}/operations/{op}")
}

/// Waits for GKE operation `path` (its full name). A finished operation with an error
/// fails with Google's message.
pub(crate) async fn wait_gke_op(
    clients: &GcpClients,
    path: &str,
    what: &str,
) -> Result<(), ProviderError> {
    let mut backoff = Backoff::new();
    loop {
        let o = poll(&mut backoff, || async {
            clients
                .gke
                .get_operation()
                .set_name(path)
                .send()
                .await
                .map_err(|e| gax_err("container.operations.get", e))
        })
        .await?;
        if o.status == GkeOpStatus::Done {
            let message = gke_op_error(&o);
            return match message {
                None => Ok(()),
                Some(m) => Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!("{what} failed: {m}"),
                )),
            };
        }
        backoff.sleep().await;
    }
}

/// The error of a finished GKE operation, if it failed.
#[allow(deprecated)] // `status_message` is deprecated for `error`, but older answers use it.
fn gke_op_error(o: &google_cloud_container_v1::model::Operation) -> Option<String> {
    if let Some(e) = &o.error
        && (e.code != 0 || !e.message.is_empty())
    {
        return Some(if e.message.is_empty() {
            format!("error code {}", e.code)
        } else {
            e.message.clone()
        });
    }
    (!o.status_message.is_empty()).then(|| o.status_message.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stable_and_valid() {
        assert_eq!(label_value("fi-ABcd1234-7"), "fi-abcd1234-7");
        assert_eq!(label_value("a.b/c"), "a-b-c");
        let long = "x".repeat(80);
        let l = label_value(&long);
        assert!(l.len() <= 63 && l.starts_with("h-"), "{l}");
        assert_eq!(
            gke_op_path("p", "us-central1", "operation-1", ""),
            "projects/p/locations/us-central1/operations/operation-1"
        );
        assert_eq!(
            gke_op_path("p", "us-central1", "operation-1", "us-central1-a"),
            "projects/p/locations/us-central1-a/operations/operation-1"
        );
        assert_eq!(gke_op_path("p", "l", "projects/p/x", ""), "projects/p/x");
    }
}

/// Shared test support for the Cloud SQL and GKE types.
#[cfg(test)]
pub(crate) mod testkit {
    use std::sync::{Arc, LazyLock, Mutex};

    use flyteinfra_core::{Address, Event, EventKind, Observer, Progress};
    use tokio::sync::RwLock;

    /// Knobs are process-global and tests run in parallel: every test that starts Cloud SQL
    /// or GKE operations holds this for reading; a test that makes the next operation
    /// fail holds it for writing, so no other test's operation takes its failure.
    pub(crate) static OPS: LazyLock<RwLock<()>> = LazyLock::new(|| RwLock::new(()));

    /// Collects progress events.
    #[derive(Default)]
    pub(crate) struct Collect(Mutex<Vec<Event>>);

    impl Observer for Collect {
        fn on_event(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl Collect {
        /// The statuses reported so far, in order.
        pub(crate) fn statuses(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Status(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    /// A progress handle for `type_name` reporting into a fresh collector.
    pub(crate) fn progress(type_name: &str) -> (Progress, Arc<Collect>) {
        let sink = Arc::new(Collect::default());
        (
            Progress::new(Address::new(type_name, "test"), sink.clone()),
            sink,
        )
    }
}

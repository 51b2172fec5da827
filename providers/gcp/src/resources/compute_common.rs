//! What the Compute Engine types share: waiting on global and regional operations,
//! turning a failed operation into a [`ProviderError`], and naming networks.
//!
//! Compute creates, patches and deletes answer with an `Operation` at once; the change
//! happens when that operation is `DONE`. A create returns `InProgress` and its
//! `wait_ready` polls the operation. The operation's name is kept in memory by the type
//! ([`PendingOps`]) from the create to the wait of the same run; a run that resumes a
//! create another run sent finds the operation by listing the unfinished ones and
//! matching their `targetLink` ([`wait_for_target`]).

use std::collections::HashMap;
use std::sync::Mutex;

use flyteinfra_core::{ErrorKind, Progress, ProviderError};
use google_cloud_compute_v1::model::Operation;
use google_cloud_compute_v1::model::operation::Status as OpStatus;

use super::operations::{Backoff, link_path, poll};
use crate::client::GcpClients;
use crate::error::{gax_err, kind_for_http};

/// Where an operation lives: `global/operations` or `regions/{region}/operations`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// A global operation (networks, global addresses).
    Global,
    /// A regional operation (subnetworks).
    Region(String),
}

/// Operation names of the creates and deletes this process sent, by resource id, so
/// `wait_ready` and `wait_deleted` poll the very operation the call started.
#[derive(Default)]
pub(crate) struct PendingOps(Mutex<HashMap<String, String>>);

impl PendingOps {
    /// Remembers operation `name` as the running create or delete of `id`.
    pub(crate) fn put(&self, id: &str, name: Option<&str>) {
        if let Some(name) = name {
            self.lock().insert(id.to_string(), name.to_string());
        }
    }

    /// The operation remembered for `id`.
    pub(crate) fn get(&self, id: &str) -> Option<String> {
        self.lock().get(id).cloned()
    }

    /// Forgets the operation of `id` (it finished, or Google no longer knows it).
    pub(crate) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Waits until the create or delete of `id` has finished: the operation this process
/// started for it, or else (a run resuming another run's call, or an operation Google has
/// already forgotten) every unfinished operation whose `targetLink` ends with `suffix`.
/// Fails with the operation's own error.
pub(crate) async fn settle(
    c: &GcpClients,
    scope: &Scope,
    pending: &PendingOps,
    id: &str,
    suffix: &str,
    what: &str,
    progress: &Progress,
) -> Result<(), ProviderError> {
    if let Some(name) = pending.get(id) {
        let r = match get_op(c, scope, &name).await {
            Ok(op) => wait_op(c, scope, op, what, progress).await,
            Err(e) => Err(e),
        };
        match r {
            Err(e) if e.kind == ErrorKind::NotFound => pending.forget(id),
            Err(e) if e.kind.is_retryable() => return Err(e),
            r => {
                pending.forget(id);
                return r;
            }
        }
    }
    wait_for_target(c, scope, suffix, what, progress).await
}

/// Gets operation `name` once.
async fn get_op(c: &GcpClients, scope: &Scope, name: &str) -> Result<Operation, ProviderError> {
    match scope {
        Scope::Global => c
            .global_operations
            .get()
            .set_project(&c.project)
            .set_operation(name)
            .send()
            .await
            .map_err(|e| gax_err("globalOperations.get", e)),
        Scope::Region(r) => c
            .region_operations
            .get()
            .set_project(&c.project)
            .set_region(r)
            .set_operation(name)
            .send()
            .await
            .map_err(|e| gax_err("regionOperations.get", e)),
    }
}

/// The object a finished create or a read-before-change must find: missing is
/// `NotFound`, naming `what` (`network \`flyte-vpc\``) and `when` it was missing.
pub(crate) fn present<T>(got: Option<T>, what: &str, when: &str) -> Result<T, ProviderError> {
    got.ok_or_else(|| ProviderError::new(ErrorKind::NotFound, format!("{what} {when}")))
}

/// After a finished delete the object must be gone; still there is a retryable conflict.
pub(crate) fn absent<T>(got: Option<T>, what: &str) -> Result<(), ProviderError> {
    match got {
        None => Ok(()),
        Some(_) => Err(ProviderError::new(
            ErrorKind::Conflict,
            format!("{what} still exists after its delete"),
        )),
    }
}

/// Polls operation `op` (as a create, patch or delete answered it) until it is `DONE`,
/// reporting its status; fails with the operation's own error. `what` names the call in
/// errors (`networks.insert`).
pub(crate) async fn wait_op(
    c: &GcpClients,
    scope: &Scope,
    mut op: Operation,
    what: &str,
    progress: &Progress,
) -> Result<(), ProviderError> {
    let mut last = None;
    let mut backoff = Backoff::new();
    loop {
        if op.status == Some(OpStatus::Done) {
            return op_result(&op, what);
        }
        let status = op
            .status
            .as_ref()
            .and_then(|s| s.name())
            .map(str::to_string);
        if status.is_some() && status != last {
            progress.status(status.clone().unwrap_or_default());
            last = status;
        }
        let Some(name) = op.name.clone() else {
            return Err(ProviderError::new(
                ErrorKind::Permanent,
                format!("{what}: the operation has no name"),
            ));
        };
        backoff.sleep().await;
        op = poll(&mut backoff, || get_op(c, scope, &name)).await?;
    }
}

/// Waits for the unfinished operations on the object whose link ends with `suffix`
/// (`/global/networks/flyte`): a run resuming a create that another run sent.
/// Returns when none is left running; fails with the first one's error.
async fn wait_for_target(
    c: &GcpClients,
    scope: &Scope,
    suffix: &str,
    what: &str,
    progress: &Progress,
) -> Result<(), ProviderError> {
    let filter = "status != DONE".to_string();
    let list = match scope {
        Scope::Global => c
            .global_operations
            .list()
            .set_project(&c.project)
            .set_filter(filter)
            .send()
            .await
            .map_err(|e| gax_err("globalOperations.list", e))?,
        Scope::Region(r) => c
            .region_operations
            .list()
            .set_project(&c.project)
            .set_region(r)
            .set_filter(filter)
            .send()
            .await
            .map_err(|e| gax_err("regionOperations.list", e))?,
    };
    for op in list.items {
        let on_target = op
            .target_link
            .as_deref()
            .is_some_and(|t| t.ends_with(suffix));
        if on_target && op.status != Some(OpStatus::Done) {
            wait_op(c, scope, op, what, progress).await?;
        }
    }
    Ok(())
}

/// The error of a finished operation, if it failed.
pub(crate) fn op_result(op: &Operation, what: &str) -> Result<(), ProviderError> {
    let Some(err) = op.error.as_ref().filter(|e| !e.errors.is_empty()) else {
        return Ok(());
    };
    let first = &err.errors[0];
    let code = first.code.as_deref().unwrap_or_default();
    let kind = match code {
        "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE"
        | "RESOURCE_NOT_READY"
        | "RESOURCE_OPERATION_RATE_EXCEEDED" => ErrorKind::Conflict,
        "ALREADY_EXISTS" | "RESOURCE_ALREADY_EXISTS" => ErrorKind::AlreadyExists,
        "NOT_FOUND" | "RESOURCE_NOT_FOUND" => ErrorKind::NotFound,
        "QUOTA_EXCEEDED" | "RATE_LIMIT_EXCEEDED" => ErrorKind::Throttled,
        _ => op
            .http_error_status_code
            .and_then(|s| u16::try_from(s).ok())
            .map_or(ErrorKind::Permanent, kind_for_http),
    };
    let messages: Vec<String> = err
        .errors
        .iter()
        .map(|e| {
            format!(
                "{} ({})",
                e.message.as_deref().unwrap_or("no message"),
                e.code.as_deref().unwrap_or("no code")
            )
        })
        .collect();
    Err(ProviderError::new(
        kind,
        format!("{what}: {}", messages.join("; ")),
    ))
}

/// `None` when the object a call named does not exist (a read finds nothing; a delete
/// of something already gone is done).
pub(crate) fn gone_is_ok<T>(r: Result<T, ProviderError>) -> Result<Option<T>, ProviderError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The last path segment of a link or a name (`.../global/networks/flyte` → `flyte`).
pub(crate) fn last_segment(link: &str) -> &str {
    link.rsplit('/').next().unwrap_or(link)
}

/// A network given as a name or a link, as a partial URL the APIs accept
/// (`projects/{project}/global/networks/{name}`).
pub(crate) fn network_ref(project: &str, network: &str) -> String {
    if network.contains('/') {
        link_path(network).to_string()
    } else {
        format!("projects/{project}/global/networks/{network}")
    }
}

/// Test set-up shared by the network types.
#[cfg(test)]
pub(crate) mod test_support {
    use flyteinfra_core::requests as r;
    use flyteinfra_core::{Value, attrs};

    use crate::client::GcpClients;
    use crate::testutil;

    /// A new custom-mode network; returns its self link.
    pub(crate) async fn network(c: &GcpClients) -> String {
        let rt = super::super::compute_network::build(c);
        let t = "gcp_compute_network";
        let inp = attrs::attrs([("name", testutil::unique("net").into())]);
        let id = rt.create(r::create(t, &inp, "tok")).await.unwrap().id;
        let a = rt.wait_ready(r::wait(t, &id, &inp)).await.unwrap();
        a["self_link"].as_str().unwrap().to_string()
    }

    /// A new Private Service Access range on `network`; returns its name.
    pub(crate) async fn psa_range(c: &GcpClients, network: &str, prefix: i64) -> String {
        let rt = super::super::compute_global_address::build(c);
        let t = "gcp_compute_global_address";
        let inp = attrs::attrs([
            ("name", testutil::unique("psa").into()),
            ("network", network.into()),
            ("purpose", "VPC_PEERING".into()),
            ("address_type", "INTERNAL".into()),
            ("prefix_length", Value::Int(prefix)),
        ]);
        let id = rt.create(r::create(t, &inp, "tok")).await.unwrap().id;
        rt.wait_ready(r::wait(t, &id, &inp)).await.unwrap();
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_compute_v1::model::operation::Error as OpError;
    use google_cloud_compute_v1::model::operation::error::Errors;

    #[test]
    fn networks_are_named_by_partial_links() {
        let full = "https://www.googleapis.com/compute/v1/projects/p/global/networks/n";
        assert_eq!(network_ref("p", "n"), "projects/p/global/networks/n");
        assert_eq!(network_ref("p", full), "projects/p/global/networks/n");
        assert_eq!(last_segment(full), "n");
    }

    #[test]
    fn failed_operations_keep_their_code_and_message() {
        let mut op = Operation::default();
        op.status = Some(OpStatus::Done);
        assert!(op_result(&op, "x").is_ok());
        let mut e = Errors::default();
        e.code = Some("RESOURCE_IN_USE_BY_ANOTHER_RESOURCE".into());
        e.message = Some("used by subnetwork s".into());
        let mut err = OpError::default();
        err.errors = vec![e];
        op.error = Some(err);
        op.http_error_status_code = Some(400);
        let got = op_result(&op, "networks.delete").unwrap_err();
        assert_eq!(got.kind, ErrorKind::Conflict);
        assert!(got.message.contains("used by subnetwork s"), "{got}");
    }
}

/// The `description` flyteinfra gives the Compute objects it creates (networks,
/// subnetworks, global addresses): they have no labels, so the create's token in the
/// description, set in the insert itself, is the proof that flyteinfra made the object.
pub(crate) fn token_description(token: &str) -> String {
    format!("Managed by flyteinfra (token {token})")
}

/// Whether `description` (of an object of the name a create asked for) carries `token`.
pub(crate) fn carries_token(description: Option<&str>, token: &str) -> bool {
    description.is_some_and(|d| d.contains(&format!("(token {token})")))
}

/// Whether `description` carries a token of the same state lineage as `token`
/// (`fi-<lineage>-<serial>`): an object an earlier create of this state made.
pub(crate) fn carries_lineage(description: &str, token: &str) -> bool {
    match token.rsplit_once('-') {
        Some((lineage, _)) if !lineage.is_empty() => {
            description.contains(&format!("(token {lineage}-"))
        }
        _ => false,
    }
}

/// What a create does on `AlreadyExists`: the object `found` (its description, `None` when
/// it is not visible yet) is adopted only when it carries the create's token.
pub(crate) fn claim(
    found: Option<Option<&str>>,
    token: &str,
    what: &str,
    address: &flyteinfra_core::Address,
    id: &str,
) -> Result<(), ProviderError> {
    match found {
        Some(d) if carries_token(d, token) => Ok(()),
        // An earlier attempt's insert still running: the object shows up when it is done.
        None => Err(ProviderError::new(
            ErrorKind::Transient,
            format!("{what} `{id}` exists but cannot be read yet"),
        )),
        Some(_) => Err(ProviderError::new(
            ErrorKind::AlreadyExists,
            format!(
                "{what} `{id}` already exists and is not flyteinfra's: its description does \
                 not carry this create's token; flyteinfra never takes over an object it did \
                 not make. To manage it with flyteinfra, run `flyteinfra import {address} \
                 {id}`; otherwise choose another name"
            ),
        )),
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn only_the_creates_own_token_proves_ownership() {
        let a: flyteinfra_core::Address = "gcp_compute_network.main".parse().unwrap();
        let ours = token_description("fi-abc-3");
        assert!(claim(Some(Some(&ours)), "fi-abc-3", "network", &a, "n").is_ok());
        // Another token (`fi-abc-30` contains `fi-abc-3` as a prefix: not a match).
        let other = token_description("fi-abc-30");
        let e = claim(Some(Some(&other)), "fi-abc-3", "network", &a, "n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(
            e.message
                .contains("flyteinfra import gcp_compute_network.main n"),
            "{e}"
        );
        for d in [None, Some("made by hand")] {
            let e = claim(Some(d), "fi-abc-3", "network", &a, "n").unwrap_err();
            assert_eq!(e.kind, ErrorKind::AlreadyExists);
        }
        let e = claim(None, "fi-abc-3", "network", &a, "n").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Transient);
    }

    #[test]
    fn lineage_is_the_tokens_prefix() {
        let earlier = token_description("fi-abc-3");
        assert!(carries_lineage(&earlier, "fi-abc-17"));
        assert!(!carries_lineage(&earlier, "fi-abd-17"));
        // `fi-ab` is a prefix of `fi-abc` but another lineage.
        assert!(!carries_lineage(&earlier, "fi-ab-17"));
        assert!(!carries_lineage("made by hand", "fi-abc-17"));
        assert!(!carries_lineage(&earlier, "nodash"));
    }
}

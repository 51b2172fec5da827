//! Refresh: read what the cloud really has, one `read_many` per resource type; and ask
//! whether the objects a plan deletes hold contents.

use std::collections::{BTreeMap, BTreeSet};

use flyteinfra_core::isolate::{catch_panic, isolate, panic_error};
use flyteinfra_core::retry::{RetryPolicy, retry};
use flyteinfra_core::{
    Address, Attributes, ContentsRequest, ErrorKind, Mode, ProviderError, ReadRequest, Registry,
    ResourceSpec,
};
use flyteinfra_plans::{Plan, contents};
use flyteinfra_state::{ResourceState, StateDoc, Status};

use crate::ApplyError;

/// Reads every resource in `state` (and every `existing:` resource in `desired`) from the
/// cloud. The result maps an address to `Some(attributes)` or `None` when the object is gone.
pub async fn refresh(
    registry: &Registry,
    state: &StateDoc,
    desired: &[ResourceSpec],
) -> Result<BTreeMap<Address, Option<Attributes>>, ApplyError> {
    let known = state
        .resources
        .iter()
        .filter(|(_, rs)| !(rs.status == Status::Tainted && rs.id.is_empty()))
        .map(|(addr, rs)| from_state(addr, rs));
    let existing = desired
        .iter()
        .filter(|s| s.mode == Mode::Existing && !state.resources.contains_key(&s.address))
        .map(|spec| ReadRequest {
            address: spec.address.clone(),
            id: spec.existing_id.clone().unwrap_or_default(),
            prior_inputs: Attributes::new(),
            prior_attributes: Attributes::new(),
        });
    read_all(registry, known.chain(existing)).await
}

/// What a destroy reads: only the objects whose deletion needs their current attributes,
/// those that hold data or have deletion protection (apply refuses to delete a protected
/// one, and the plan marks data loss). Everything else is deleted by the id in state: a
/// delete of an object already gone succeeds, and nothing about it changes what the
/// destroy does, so reading it would be a call for nothing.
pub async fn refresh_for_destroy(
    registry: &Registry,
    state: &StateDoc,
) -> Result<BTreeMap<Address, Option<Attributes>>, ApplyError> {
    let matters = |addr: &Address| {
        registry
            .schema(addr.type_name())
            .is_some_and(|s| s.holds_data || s.deletion_protection.is_some())
    };
    let reads = state
        .resources
        .iter()
        .filter(|(addr, rs)| rs.mode == Mode::Managed && !rs.id.is_empty() && matters(addr))
        .map(|(addr, rs)| from_state(addr, rs));
    read_all(registry, reads).await
}

/// Asks the providers whether the objects `plan` deletes or replaces hold contents (one
/// listing each, concurrently; types without contents answer without a call) and records
/// the answers in `plan` ([`contents::note_contents`]). Run after every plan that deletes,
/// and again on a saved plan before it is applied: contents come and go.
pub async fn check_contents(
    registry: &Registry,
    state: &StateDoc,
    plan: &mut Plan,
    desired: &[ResourceSpec],
) -> Result<(), ApplyError> {
    let mut tasks = tokio::task::JoinSet::new();
    for addr in contents::to_probe(plan) {
        let Some(rs) = state.resources.get(addr).filter(|rs| !rs.id.is_empty()) else {
            continue;
        };
        let rt = registry
            .get(addr.type_name())
            .ok_or_else(|| ApplyError::UnknownType(addr.type_name().to_string()))?
            .clone();
        let req = ContentsRequest {
            address: addr.clone(),
            id: rs.id.clone(),
            attributes: rs.attributes.clone(),
        };
        tasks.spawn(async move {
            let r = retry(
                RetryPolicy::default(),
                |_, _| {},
                || isolate(&req.address, rt.holds_contents(req.clone())),
            )
            .await;
            (req.address, r)
        });
    }
    let mut holding = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (addr, result) = joined.expect("contents task does not panic");
        let holds = result.map_err(|e| ApplyError::Provider {
            address: addr.clone(),
            message: format!("checking whether it is empty failed: {e}"),
        })?;
        if holds == Some(true) {
            holding.insert(addr);
        }
    }
    contents::note_contents(plan, &holding, desired);
    Ok(())
}

/// The read of an object state knows.
fn from_state(addr: &Address, rs: &ResourceState) -> ReadRequest {
    ReadRequest {
        address: addr.clone(),
        id: rs.id.clone(),
        prior_inputs: rs.inputs.clone(),
        prior_attributes: rs.attributes.clone(),
    }
}

/// One `read_many` per type, the types concurrently.
async fn read_all(
    registry: &Registry,
    reads: impl Iterator<Item = ReadRequest>,
) -> Result<BTreeMap<Address, Option<Attributes>>, ApplyError> {
    let mut by_type: BTreeMap<String, Vec<ReadRequest>> = BTreeMap::new();
    for r in reads {
        by_type
            .entry(r.address.type_name().to_string())
            .or_default()
            .push(r);
    }
    let mut out = BTreeMap::new();
    // Types are read concurrently; within a type the provider batches as its API allows.
    let mut tasks = tokio::task::JoinSet::new();
    for (type_name, reqs) in by_type {
        let rt = registry
            .get(&type_name)
            .ok_or_else(|| ApplyError::UnknownType(type_name.clone()))?
            .clone();
        tasks.spawn(async move {
            let addrs: Vec<Address> = reqs.iter().map(|r| r.address.clone()).collect();
            // A panic in the batch read is every one of its objects' error.
            let mut results = catch_panic(rt.read_many(reqs.clone()))
                .await
                .unwrap_or_else(|msg| addrs.iter().map(|a| Err(panic_error(a, &msg))).collect());
            // A provider answering for fewer objects than asked must not drop one silently.
            results.resize_with(addrs.len(), || {
                Err(ProviderError::new(
                    ErrorKind::Permanent,
                    "the provider's batch read returned no answer for it",
                ))
            });
            // Throttling and 5xx on a batch are retried one object at a time, with backoff.
            for (req, result) in reqs.into_iter().zip(results.iter_mut()) {
                if result.as_ref().is_err_and(|e| e.kind.is_retryable()) {
                    *result = retry(
                        RetryPolicy::default(),
                        |_, _| {},
                        || isolate(&req.address, rt.read(req.clone())),
                    )
                    .await;
                }
            }
            (addrs, results)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (addrs, results) = joined.expect("refresh task does not panic");
        for (addr, result) in addrs.into_iter().zip(results) {
            let resp = result.map_err(|e| ApplyError::Provider {
                address: addr.clone(),
                message: format!("refresh failed: {e}"),
            })?;
            out.insert(addr, resp.attributes);
        }
    }
    Ok(out)
}

//! Intent reconciliation: finish the bookkeeping of operations a previous run announced
//! but did not record the result of (it crashed, or was killed).

use flyteinfra_core::isolate::isolate;
use flyteinfra_core::retry::{RetryPolicy, retry};
use std::collections::BTreeSet;

use flyteinfra_core::{Address, FindRequest, Mode, ReadRequest, Registry};
use flyteinfra_state::{Operation, ResourceState, Status};

use crate::ApplyError;
use crate::journal::Journal;

/// What reconciliation did with one intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciled {
    /// A create had gone through: the object was adopted as pending (the apply waits for it).
    Adopted(Address, String),
    /// A create had not gone through (yet): the intent stays, and the apply re-sends the
    /// create with the same token.
    Resumed(Address),
    /// A create had not gone through and the resource is no longer wanted: the intent
    /// was dropped.
    Dropped(Address),
    /// A delete had gone through: the resource left state.
    Deleted(Address),
    /// A delete had not gone through: the resource stays.
    Kept(Address),
}

/// Reconciles every unfinished intent in the journal's state, persisting each outcome.
///
/// A create intent is kept (with its token) until a create is recorded: the next apply
/// re-sends the create with the same token, which providers treat as idempotent. So an
/// adopted object also gets the steps its create had not finished (attachments, settings),
/// and a create the dead run sent that reaches the cloud only after this lookup is adopted
/// by that re-sent create instead of being duplicated.
///
/// # Guarantees
/// Never a duplicate (an object that exists is adopted, not created again) and never an
/// orphan (an adopted object is in state before anything else runs; a create intent for a
/// resource no longer `desired` is dropped only when no object carries its token).
pub async fn reconcile_intents(
    registry: &Registry,
    journal: &Journal,
    desired: &BTreeSet<Address>,
) -> Result<Vec<Reconciled>, ApplyError> {
    let intents = journal.read(|d| d.intents.clone());
    let mut out = Vec::new();
    for (addr, intent) in intents {
        let rt = registry
            .get(addr.type_name())
            .ok_or_else(|| ApplyError::UnknownType(addr.type_name().to_string()))?;
        let provider_err = |e: flyteinfra_core::ProviderError| ApplyError::Provider {
            address: addr.clone(),
            message: format!("reconciling an unfinished {:?}: {e}", intent.operation),
        };
        match intent.operation {
            Operation::Create => {
                let req = FindRequest {
                    address: addr.clone(),
                    inputs: intent.inputs.clone(),
                    token: intent.token.clone(),
                    sent_at: intent.sent_at.map(crate::execute::epoch_secs),
                };
                let found = retry(
                    RetryPolicy::default(),
                    |_, _| {},
                    || isolate(&addr, rt.find(req.clone())),
                )
                .await
                .map_err(provider_err)?;
                let outcome = journal.transition(|d| match found.id {
                    Some(id) => {
                        d.resources.insert(
                            addr.clone(),
                            ResourceState {
                                mode: Mode::Managed,
                                id: id.clone(),
                                status: Status::Pending,
                                inputs: intent.inputs.clone(),
                                attributes: intent.inputs.clone(),
                                dependencies: intent.dependencies.clone(),
                            },
                        );
                        Reconciled::Adopted(addr.clone(), id)
                    }
                    None if desired.contains(&addr) => Reconciled::Resumed(addr.clone()),
                    None => {
                        d.intents.remove(&addr);
                        Reconciled::Dropped(addr.clone())
                    }
                })?;
                out.push(outcome);
            }
            Operation::Delete => {
                let id = intent.id.clone().unwrap_or_default();
                let req = ReadRequest {
                    address: addr.clone(),
                    id,
                    prior_inputs: intent.inputs.clone(),
                    prior_attributes: intent.inputs.clone(),
                };
                let read = retry(
                    RetryPolicy::default(),
                    |_, _| {},
                    || isolate(&addr, rt.read(req.clone())),
                )
                .await
                .map_err(provider_err)?;
                let outcome = journal.transition(|d| {
                    d.intents.remove(&addr);
                    if read.attributes.is_none() {
                        d.resources.remove(&addr);
                        Reconciled::Deleted(addr.clone())
                    } else {
                        Reconciled::Kept(addr.clone())
                    }
                })?;
                out.push(outcome);
            }
        }
    }
    Ok(out)
}

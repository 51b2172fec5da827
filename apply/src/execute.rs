//! Carrying a plan out: the visitor the walker calls for every change.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::isolate::isolate;
use flyteinfra_core::retry::{RetryPolicy, backoff};
use flyteinfra_core::walk::{Interrupt, VisitContext, VisitError, Visitor, WalkOptions, walk};
use flyteinfra_core::{
    Address, Attributes, Completion, CreateRequest, DeleteRequest, ErrorKind, EventKind, Graph,
    Mode, Observer, Planned, Progress, ProviderError, ReadRequest, Reference, Registry,
    ResourceSpec, UpdateRequest, Value, WaitRequest, resolve_known,
};
use flyteinfra_plans::{Action, Note, Plan, Reason, ResourceChange};
use flyteinfra_state::{Intent, Operation, ResourceState, StateDoc, Status};

use crate::journal::Journal;

/// How to carry a plan out.
#[derive(Clone)]
pub struct ApplyOptions {
    /// At most this many API calls in flight.
    pub parallelism: usize,
    /// Retries of throttling and 5xx.
    pub retry: RetryPolicy,
    /// Where progress goes.
    pub observer: Arc<dyn Observer>,
    /// How long a create sent by a run that died may still take to land in the cloud.
    /// Before sending such a create again, the apply waits until this much time has passed
    /// since it was first sent, so the re-sent create (same token) finds the object instead
    /// of making a second one where the API has no idempotency token (an EC2 VPC).
    pub create_settle: Duration,
}

/// Seconds since the Unix epoch.
/// A time recorded in state as seconds since the Unix epoch.
pub(crate) fn epoch_secs(secs: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(secs)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How an apply ended.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    /// Resources whose change succeeded.
    pub completed: Vec<Address>,
    /// Failures, each once, with the cloud's message.
    pub failed: Vec<(Address, String)>,
    /// Skipped because something they depend on failed.
    pub skipped: Vec<Address>,
    /// Not finished because of an interrupt (pending ones resume next run).
    pub interrupted: Vec<Address>,
}

impl ApplyReport {
    /// Whether everything completed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.interrupted.is_empty()
    }
}

/// Carries `plan` out: deletes of removed resources first (dependents first), then
/// creates, updates and replacements in dependency order, all in parallel where the graph
/// allows. Every transition is persisted through `journal` before the next step.
pub async fn apply(
    registry: &Registry,
    journal: &Journal,
    plan: &Plan,
    desired: &[ResourceSpec],
    options: &ApplyOptions,
    interrupt: Interrupt,
) -> ApplyReport {
    let specs: BTreeMap<Address, ResourceSpec> = desired
        .iter()
        .map(|s| (s.address.clone(), s.clone()))
        .collect();
    // Indexed once: the visitor and the priorities look changes up per vertex.
    let changes: BTreeMap<Address, ResourceChange> = plan
        .changes
        .iter()
        .map(|c| (c.address.clone(), c.clone()))
        .collect();
    let priorities_of = |set: &BTreeSet<Address>, graph: &Graph| {
        graph.remaining_critical_path(|a| {
            let creates =
                set.contains(a) && matches!(changes[a].action, Action::Create | Action::Replace);
            match registry.schema(a.type_name()) {
                Some(s) if creates => s.expected_create,
                _ => Duration::from_secs(1),
            }
        })
    };
    let (delete_set, delete_graph) = phase(plan, |a| a == Action::Delete);
    let (rest_set, rest_graph) = phase(plan, |a| a != Action::Delete);
    let rest_priorities = priorities_of(&rest_set, &rest_graph);
    let visitor = Arc::new(ChangeVisitor {
        registry: registry.clone(),
        journal: journal.clone(),
        changes,
        specs,
        retry: options.retry,
        observer: options.observer.clone(),
        create_settle: options.create_settle,
        disable_protection: plan
            .notes
            .iter()
            .filter_map(|n| match n {
                Note::ProtectionDisabled { address, .. } => Some(address.clone()),
                _ => None,
            })
            .collect(),
    });
    let mut report = ApplyReport::default();
    // Phase 1: deletes of resources no longer wanted, dependents first (by the
    // dependencies state recorded). Phase 2: everything else, longest expected chain first.
    let phases = [
        (delete_set, delete_graph.reversed(), BTreeMap::new()),
        (rest_set, rest_graph, rest_priorities),
    ];
    for (set, graph, priorities) in phases {
        if set.is_empty() {
            continue;
        }
        let r = walk(
            &graph,
            &set,
            visitor.clone(),
            WalkOptions {
                parallelism: options.parallelism,
                priorities,
            },
            interrupt.clone(),
        )
        .await;
        merge(&mut report, r);
    }
    report
}

/// The changes whose action passes `keep`, as a graph of their dependencies among themselves.
fn phase(plan: &Plan, keep: impl Fn(Action) -> bool) -> (BTreeSet<Address>, Graph) {
    let changes: Vec<&ResourceChange> = plan.changes.iter().filter(|c| keep(c.action)).collect();
    let set: BTreeSet<Address> = changes.iter().map(|c| c.address.clone()).collect();
    let graph = Graph::build(changes.iter().map(|c| {
        let deps = c
            .dependencies
            .iter()
            .filter(|d| set.contains(*d))
            .cloned()
            .collect();
        (c.address.clone(), deps)
    }))
    .expect("a plan's dependencies form a DAG");
    (set, graph)
}

/// The resources `plan` would delete (or replace) that it found protected and does not turn
/// protection off for, with the protecting field: the plan's
/// [`Note::DeletionProtected`] notes, so a saved plan is refused as it showed.
pub fn protected_deletes(plan: &Plan) -> Vec<(Address, String)> {
    plan.notes
        .iter()
        .filter_map(|n| match n {
            Note::DeletionProtected { address, field } => Some((address.clone(), field.clone())),
            _ => None,
        })
        .collect()
}

fn merge(report: &mut ApplyReport, r: flyteinfra_core::walk::WalkReport) {
    report.completed.extend(r.completed);
    report.failed.extend(r.failed);
    report.skipped.extend(r.skipped);
    report.interrupted.extend(r.interrupted);
}

struct ChangeVisitor {
    registry: Registry,
    journal: Journal,
    changes: BTreeMap<Address, ResourceChange>,
    specs: BTreeMap<Address, ResourceSpec>,
    retry: RetryPolicy,
    observer: Arc<dyn Observer>,
    create_settle: Duration,
    /// Deletes the plan turns deletion protection off for (`--disable-protection`).
    disable_protection: BTreeSet<Address>,
}

fn failed(e: impl std::fmt::Display) -> VisitError {
    VisitError::Failed(e.to_string())
}

/// Looks a reference up in state: everything a resource depends on is done by now.
fn lookup(doc: &StateDoc, r: &Reference) -> Planned {
    doc.resources
        .get(&r.address)
        .filter(|rs| rs.status == Status::Ready)
        .and_then(|rs| rs.attributes.get(&r.attribute).cloned())
        .map_or(Planned::Unknown, Planned::Known)
}

impl ChangeVisitor {
    /// One API call inside a slot, retried with backoff (outside the slot) on throttling
    /// and 5xx. The same request (and token) is sent each time, so a retried create is
    /// idempotent. A panic in the provider is this resource's failure (never retried).
    async fn call<T, F, Fut>(
        &self,
        ctx: &VisitContext,
        progress: &Progress,
        mut op: F,
    ) -> Result<Result<T, ProviderError>, VisitError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        let mut attempt = 1;
        loop {
            match ctx.call(isolate(progress.address(), op())).await? {
                Err(e) if e.kind.is_retryable() && attempt < self.retry.max_attempts => {
                    progress.emit(EventKind::Retrying(e.message.clone()));
                    ctx.wait(tokio::time::sleep(backoff(&self.retry, attempt)))
                        .await?;
                    attempt += 1;
                }
                other => return Ok(other),
            }
        }
    }

    fn persist<T>(&self, f: impl FnOnce(&mut StateDoc) -> T) -> Result<T, VisitError> {
        self.journal.transition(f).map_err(|e| {
            // The cause (disk full, permission denied) is in the source chain.
            let mut msg = format!("could not persist state: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            failed(msg)
        })
    }

    async fn read_existing(
        &self,
        address: &Address,
        spec: &ResourceSpec,
        ctx: &VisitContext,
        progress: &Progress,
    ) -> Result<(), VisitError> {
        let rt = self.rt(address)?;
        let id = spec.existing_id.clone().unwrap_or_default();
        let read = self
            .call(ctx, progress, || {
                rt.read(ReadRequest {
                    address: address.clone(),
                    id: id.clone(),
                    prior_inputs: Attributes::new(),
                    prior_attributes: Attributes::new(),
                })
            })
            .await?
            .map_err(failed)?;
        let attributes = read.attributes.ok_or_else(|| {
            failed(format!(
                "existing `{address}` with id `{id}` was not found: check the `existing:` section"
            ))
        })?;
        self.persist(|d| {
            d.resources.insert(
                address.clone(),
                ResourceState {
                    mode: Mode::Existing,
                    id,
                    status: Status::Ready,
                    inputs: Attributes::new(),
                    attributes,
                    dependencies: Vec::new(),
                },
            );
        })
    }

    fn rt(&self, address: &Address) -> Result<&Arc<dyn flyteinfra_core::ResourceType>, VisitError> {
        self.registry
            .get(address.type_name())
            .ok_or_else(|| failed(format!("unknown resource type `{}`", address.type_name())))
    }

    async fn create(
        &self,
        address: &Address,
        spec: &ResourceSpec,
        ctx: &VisitContext,
        progress: &Progress,
    ) -> Result<(), VisitError> {
        let rt = self.rt(address)?;
        let deps = spec.dependencies();
        // A create accepted earlier (state says pending, its result recorded): only wait
        // for it. A create whose result was never recorded still has its intent: it is
        // re-sent below with the same token, which finishes it without a duplicate.
        let pending = self.journal.read(|d| {
            let unrecorded = d
                .intents
                .get(address)
                .is_some_and(|i| i.operation == Operation::Create);
            d.resources
                .get(address)
                .filter(|rs| rs.status == Status::Pending && !unrecorded)
                .map(|rs| (rs.id.clone(), rs.inputs.clone()))
        });
        let (id, inputs) = match pending {
            Some(p) => p,
            None => {
                let mut inputs = self
                    .journal
                    .read(|d| resolve_known(spec, &|r| lookup(d, r)))
                    .map_err(|r| {
                        failed(format!(
                            "`{}.{}` is not known after its resource was applied",
                            r.address, r.attribute
                        ))
                    })?;
                // Sensitive inputs are secrets from here on (intent, state, requests).
                rt.schema().mark_sensitive(&mut inputs);
                // Intent before action: the token is durable before the call is sent. An
                // unfinished intent's token is reused, so the cloud sees the same create.
                let (token, inherited, sent_at) = self.persist(|d| {
                    let (token, inherited, sent_at) = match d.intents.get(address) {
                        Some(i) if i.operation == Operation::Create => {
                            (i.token.clone(), true, i.sent_at)
                        }
                        _ => (
                            // A decoded state's lineage is a UUID; one made in memory
                            // may be anything, and must not panic here.
                            format!(
                                "fi-{}-{}",
                                d.lineage.get(..8).unwrap_or(&d.lineage),
                                d.serial.saturating_add(1)
                            ),
                            false,
                            Some(now_secs()),
                        ),
                    };
                    d.intents.insert(
                        address.clone(),
                        Intent {
                            operation: Operation::Create,
                            token: token.clone(),
                            inputs: inputs.clone(),
                            id: None,
                            dependencies: deps.clone(),
                            sent_at,
                        },
                    );
                    (token, inherited, sent_at)
                })?;
                if inherited {
                    let age = Duration::from_secs(now_secs().saturating_sub(sent_at.unwrap_or(0)));
                    if let Some(rest) = self.create_settle.checked_sub(age).filter(|r| !r.is_zero())
                    {
                        progress.status(format!(
                            "waiting {}s for a create an interrupted run sent",
                            rest.as_secs()
                        ));
                        ctx.wait(tokio::time::sleep(rest)).await?;
                    }
                }
                progress.emit(EventKind::Started("creating"));
                // Set when an attempt is actually sent (the future first polled), which
                // only happens once a slot is held and the walk is not interrupted.
                let sent = AtomicBool::new(false);
                // Only the first attempt of a token minted here is fresh: any later one may
                // follow an attempt that took effect.
                let attempts = AtomicU32::new(0);
                let result = self
                    .call(ctx, progress, || {
                        let first = attempts.fetch_add(1, Ordering::SeqCst) == 0;
                        let req = CreateRequest {
                            address: address.clone(),
                            inputs: inputs.clone(),
                            token: token.clone(),
                            fresh: first && !inherited,
                            sent_at: sent_at.map(epoch_secs),
                            progress: progress.clone(),
                        };
                        let sent = &sent;
                        async move {
                            sent.store(true, Ordering::SeqCst);
                            rt.create(req).await
                        }
                    })
                    .await;
                let resp = match result {
                    Ok(Ok(resp)) => resp,
                    // Whatever the error, the object may exist: a create is several calls
                    // (the object, then its settings), and a lost answer looks like any
                    // failure. The intent stays, so the next run re-sends the create with
                    // the same token and the provider finds the object instead of making a
                    // second one; if the resource is no longer wanted and nothing carries
                    // the token, reconciliation drops the intent.
                    Ok(Err(e)) => return Err(failed(e)),
                    // Interrupted before any attempt was sent: nothing happened (unless the
                    // intent came from a run that died after sending its create).
                    Err(VisitError::Interrupted) if !sent.load(Ordering::SeqCst) && !inherited => {
                        self.persist(|d| d.intents.remove(address))?;
                        return Err(VisitError::Interrupted);
                    }
                    // Interrupted while backing off after a retryable error (a 5xx whose
                    // create may have taken effect): keep the intent, so the next run
                    // looks for the object instead of orphaning it.
                    Err(e) => return Err(e),
                };
                let (status, attributes) = match resp.completion {
                    Completion::Ready(a) => (Status::Ready, a),
                    Completion::InProgress => (Status::Pending, inputs.clone()),
                };
                self.persist(|d| {
                    d.intents.remove(address);
                    d.resources.insert(
                        address.clone(),
                        ResourceState {
                            mode: Mode::Managed,
                            id: resp.id.clone(),
                            status,
                            inputs: inputs.clone(),
                            attributes,
                            dependencies: deps.clone(),
                        },
                    );
                })?;
                if status == Status::Ready {
                    return Ok(());
                }
                (resp.id, inputs)
            }
        };
        let mut attempt = 1;
        let attributes = loop {
            let waited = ctx
                .wait(isolate(
                    address,
                    rt.wait_ready(WaitRequest {
                        address: address.clone(),
                        id: id.clone(),
                        inputs: inputs.clone(),
                        progress: progress.clone(),
                    }),
                ))
                .await?;
            match waited {
                Ok(a) => break a,
                // A throttled or failed poll says nothing about the object: poll again.
                Err(e) if e.kind.is_retryable() && attempt < self.retry.max_attempts => {
                    progress.emit(EventKind::Retrying(e.message.clone()));
                    ctx.wait(tokio::time::sleep(backoff(&self.retry, attempt)))
                        .await?;
                    attempt += 1;
                }
                // A panic in the provider's wait says nothing about the object: it stays
                // pending, and the next run resumes waiting (tainting would replace it).
                Err(e) if e.kind == ErrorKind::Internal => return Err(failed(e)),
                // Still pending as far as anyone knows: the next run resumes waiting.
                Err(e) if e.kind.is_retryable() => {
                    return Err(failed(format!(
                        "{e} (gave up polling after {attempt} attempts; the next apply \
                         resumes waiting)"
                    )));
                }
                Err(e) => {
                    // It exists but failed: the next plan replaces it.
                    self.persist(|d| {
                        if let Some(rs) = d.resources.get_mut(address) {
                            rs.status = Status::Tainted;
                        }
                    })?;
                    return Err(failed(e));
                }
            }
        };
        self.persist(|d| {
            if let Some(rs) = d.resources.get_mut(address) {
                rs.status = Status::Ready;
                rs.attributes = attributes;
            }
        })
    }

    async fn update(
        &self,
        address: &Address,
        spec: &ResourceSpec,
        changed: Vec<String>,
        ctx: &VisitContext,
        progress: &Progress,
    ) -> Result<(), VisitError> {
        let rt = self.rt(address)?;
        // A plan made now updates only what state has; a saved one could say otherwise.
        let (inputs, id, prior) = self
            .journal
            .read(|d| {
                let rs = d.resources.get(address)?;
                Some((
                    resolve_known(spec, &|r| lookup(d, r)),
                    rs.id.clone(),
                    rs.attributes.clone(),
                ))
            })
            .ok_or_else(|| failed(format!("`{address}` is to be updated but is not in state")))?;
        let mut inputs =
            inputs.map_err(|r| failed(format!("`{}.{}` is unknown", r.address, r.attribute)))?;
        rt.schema().mark_sensitive(&mut inputs);
        progress.emit(EventKind::Started("updating"));
        let resp = self
            .call(ctx, progress, || {
                rt.update(UpdateRequest {
                    address: address.clone(),
                    id: id.clone(),
                    prior: prior.clone(),
                    inputs: inputs.clone(),
                    changed: changed.clone(),
                    progress: progress.clone(),
                })
            })
            .await?
            .map_err(failed)?;
        let deps = spec.dependencies();
        self.persist(|d| {
            if let Some(rs) = d.resources.get_mut(address) {
                rs.inputs = inputs;
                rs.attributes = resp.attributes;
                rs.dependencies = deps;
            }
        })
    }

    async fn delete(
        &self,
        address: &Address,
        ctx: &VisitContext,
        progress: &Progress,
    ) -> Result<(), VisitError> {
        let rt = self.rt(address)?;
        let Some(rs) = self.journal.read(|d| d.resources.get(address).cloned()) else {
            return Ok(());
        };
        if rs.mode == Mode::Existing {
            // Existing components are never deleted; they just leave state.
            return self.persist(|d| {
                d.resources.remove(address);
            });
        }
        let mut rs = rs;
        if let Some(field) = rt.schema().deletion_protection {
            let on = |a: &Attributes| a.get(field) == Some(&Value::Bool(true));
            if on(&rs.attributes) || on(&rs.inputs) {
                if !self.may_turn_off(address, field) {
                    return Err(failed(format!(
                        "`{address}` has deletion protection on (`{field} = true`); \
                         `flyteinfra destroy --disable-protection` turns it off first, or turn \
                         it off in the config (e.g. `database.deletion_protection: false`) and \
                         run `flyteinfra apply`"
                    )));
                }
                rs = self
                    .protection_off(address, field, rs, ctx, progress)
                    .await?;
            }
        }
        self.persist(|d| {
            d.intents.insert(
                address.clone(),
                Intent {
                    operation: Operation::Delete,
                    token: String::new(),
                    inputs: rs.inputs.clone(),
                    id: Some(rs.id.clone()),
                    dependencies: rs.dependencies.clone(),
                    sent_at: Some(now_secs()),
                },
            );
        })?;
        // Contents go with the object only where the configuration says so; the plan
        // refused a delete of anything holding contents otherwise.
        let force = self.specs.get(address).is_some_and(|s| s.force_destroy);
        progress.emit(EventKind::Started("deleting"));
        let resp = match self
            .call(ctx, progress, || {
                rt.delete(DeleteRequest {
                    address: address.clone(),
                    id: rs.id.clone(),
                    attributes: rs.attributes.clone(),
                    force,
                    progress: progress.clone(),
                })
            })
            .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if !e.kind.is_retryable() {
                    self.persist(|d| d.intents.remove(address))?;
                }
                return Err(failed(e));
            }
            Err(VisitError::Interrupted) => {
                self.persist(|d| d.intents.remove(address))?;
                return Err(VisitError::Interrupted);
            }
            Err(e) => return Err(e),
        };
        if !resp.done {
            let mut attempt = 1;
            loop {
                let waited = ctx
                    .wait(isolate(
                        address,
                        rt.wait_deleted(WaitRequest {
                            address: address.clone(),
                            id: rs.id.clone(),
                            inputs: rs.inputs.clone(),
                            progress: progress.clone(),
                        }),
                    ))
                    .await?;
                match waited {
                    Ok(()) => break,
                    // A throttled or failed poll says nothing about the object: poll again.
                    Err(e) if e.kind.is_retryable() && attempt < self.retry.max_attempts => {
                        progress.emit(EventKind::Retrying(e.message.clone()));
                        ctx.wait(tokio::time::sleep(backoff(&self.retry, attempt)))
                            .await?;
                        attempt += 1;
                    }
                    // The delete was accepted: the intent stays, so the next run checks
                    // whether the object is gone.
                    Err(e) => return Err(failed(e)),
                }
            }
        }
        self.persist(|d| {
            d.intents.remove(address);
            d.resources.remove(address);
        })
    }
}

impl ChangeVisitor {
    /// Whether the plan lets apply turn `address`'s protection off before deleting it: it
    /// says so (`--disable-protection`), or its refresh found protection already off in the
    /// cloud while state still says on (a run that died between turning it off and
    /// recording that; or a change by hand), which the update below records.
    fn may_turn_off(&self, address: &Address, field: &str) -> bool {
        self.disable_protection.contains(address)
            || self.changes.get(address).is_some_and(|c| {
                c.action == Action::Delete
                    && c.fields
                        .iter()
                        .any(|f| f.name == field && f.before == Some(Value::Bool(false)))
            })
    }

    /// Turns deletion protection off: an update of `field` alone to `false`, then one state
    /// transition with the new inputs and the attributes the cloud reports. Returns the
    /// resource as state now has it, for the delete. Turning it off again (a resumed run) is
    /// harmless; an object already gone is left to the delete, which succeeds.
    async fn protection_off(
        &self,
        address: &Address,
        field: &str,
        rs: ResourceState,
        ctx: &VisitContext,
        progress: &Progress,
    ) -> Result<ResourceState, VisitError> {
        let rt = self.rt(address)?;
        let mut inputs = rs.inputs.clone();
        inputs.insert(field.to_string(), Value::Bool(false));
        progress.emit(EventKind::Started("turning deletion protection off"));
        let resp = self
            .call(ctx, progress, || {
                rt.update(UpdateRequest {
                    address: address.clone(),
                    id: rs.id.clone(),
                    prior: rs.attributes.clone(),
                    inputs: inputs.clone(),
                    changed: vec![field.to_string()],
                    progress: progress.clone(),
                })
            })
            .await?;
        let attributes = match resp {
            Ok(r) => r.attributes,
            // Gone: nothing to record; the delete that follows succeeds.
            Err(e) if e.kind == ErrorKind::NotFound => {
                let mut rs = rs;
                rs.attributes.insert(field.to_string(), Value::Bool(false));
                return Ok(rs);
            }
            Err(e) => return Err(failed(format!("turning deletion protection off: {e}"))),
        };
        self.persist(|d| {
            let rs = d.resources.get_mut(address)?;
            rs.inputs = inputs;
            rs.attributes = attributes;
            Some(rs.clone())
        })?
        .ok_or_else(|| failed(format!("`{address}` left state while being deleted")))
    }
}

#[async_trait]
impl Visitor for ChangeVisitor {
    async fn visit(&self, address: Address, ctx: VisitContext) -> Result<(), VisitError> {
        let change = self
            .changes
            .get(&address)
            .expect("the walker visits planned changes only");
        let progress = Progress::new(address.clone(), self.observer.clone());
        let result = match change.action {
            Action::NoOp => Ok(()),
            Action::Delete => self.delete(&address, &ctx, &progress).await,
            action => {
                let spec = self
                    .specs
                    .get(&address)
                    .ok_or_else(|| failed(format!("`{address}` is not in the desired set")))?;
                match action {
                    Action::Read => self.read_existing(&address, spec, &ctx, &progress).await,
                    Action::Create => self.create(&address, spec, &ctx, &progress).await,
                    Action::Update => {
                        let changed = change.fields.iter().map(|f| f.name.clone()).collect();
                        self.update(&address, spec, changed, &ctx, &progress).await
                    }
                    Action::Replace => {
                        let pending_resume = change
                            .reasons
                            .iter()
                            .any(|r| matches!(r, Reason::ResumePending));
                        if !pending_resume {
                            self.delete(&address, &ctx, &progress).await?;
                        }
                        self.create(&address, spec, &ctx, &progress).await
                    }
                    _ => Ok(()),
                }
            }
        };
        match &result {
            Ok(()) if change.action != Action::NoOp => progress.emit(EventKind::Finished),
            Err(VisitError::Failed(m)) => progress.emit(EventKind::Failed(m.clone())),
            _ => {}
        }
        result
    }
}

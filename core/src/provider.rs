//! The provider interface: one narrow async trait per resource type.
//!
//! A provider never sees state, plan files or other providers. Each operation takes a
//! request struct and returns a response struct, so fields can be added later without
//! changing every implementation. The life of a resource is: the engine asks [`read`]
//! for the actual attributes (refresh), diffs them against the desired inputs, then calls
//! [`create`] + [`wait_ready`], [`update`], or [`delete`] + [`wait_deleted`].
//!
//! [`read`]: ResourceType::read
//! [`create`]: ResourceType::create
//! [`wait_ready`]: ResourceType::wait_ready
//! [`update`]: ResourceType::update
//! [`delete`]: ResourceType::delete
//! [`wait_deleted`]: ResourceType::wait_deleted

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::address::Address;
use crate::schema::Schema;
use crate::value::Attributes;

/// What kind of failure a provider call met, so callers can retry without parsing strings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Rate limited: retry with backoff.
    Throttled,
    /// A 5xx or dropped connection: retry with backoff.
    Transient,
    /// The object does not exist.
    NotFound,
    /// An object with that identity already exists.
    AlreadyExists,
    /// A precondition failed (etag mismatch, object in use); may succeed later.
    Conflict,
    /// The request is invalid; retrying will not help.
    InvalidInput,
    /// Credentials missing, expired or not allowed.
    Auth,
    /// Any other failure; not retried.
    Permanent,
    /// A bug in flyteinfra: the provider call panicked
    /// ([`isolate`](crate::isolate::isolate)). Not retried, and it says nothing about the
    /// object (a wait that panicked does not mean the object failed).
    Internal,
}

impl ErrorKind {
    /// Whether the shared retry layer retries this kind.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Transient)
    }
}

/// A failed provider call, with the cloud's own message.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The cloud's message (never containing secrets).
    pub message: String,
}

impl ProviderError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
        }
    }
}

/// A progress event from a provider or the walker. Libraries never print; the binary
/// decides how to show these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The resource it is about.
    pub address: Address,
    /// What happened.
    pub kind: EventKind,
}

/// What happened to a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// An operation started (`creating`, `updating`, `deleting`, `reading`).
    Started(&'static str),
    /// The cloud reported a sub-status (`backing-up`, `ACTIVE`, ...).
    Status(String),
    /// A call was retried after a retryable error.
    Retrying(String),
    /// The operation finished.
    Finished,
    /// The operation failed.
    Failed(String),
}

/// Receives events. Implementations must be cheap and must not block.
pub trait Observer: Send + Sync {
    /// Called for every event.
    fn on_event(&self, event: Event);
}

/// An observer that drops everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn on_event(&self, _event: Event) {}
}

/// A handle a provider uses to report progress for one resource.
#[derive(Clone)]
pub struct Progress {
    address: Address,
    sink: Arc<dyn Observer>,
}

impl Progress {
    /// A handle reporting to `sink` for `address`.
    pub fn new(address: Address, sink: Arc<dyn Observer>) -> Self {
        Progress { address, sink }
    }

    /// A handle that reports nowhere.
    pub fn none(address: Address) -> Self {
        Progress::new(address, Arc::new(NoObserver))
    }

    /// Reports a cloud sub-status.
    pub fn status(&self, status: impl Into<String>) {
        self.emit(EventKind::Status(status.into()));
    }

    /// Reports any event.
    pub fn emit(&self, kind: EventKind) {
        self.sink.on_event(Event {
            address: self.address.clone(),
            kind,
        });
    }

    /// The resource this handle reports for.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Progress({})", self.address)
    }
}

/// Asks for the actual attributes of an object.
#[derive(Clone, Debug)]
pub struct ReadRequest {
    /// The resource's address.
    pub address: Address,
    /// The cloud id recorded when it was created or imported.
    pub id: String,
    /// The inputs last applied (empty on import). Providers may use them to know
    /// which optional sub-resources to read.
    pub prior_inputs: Attributes,
    /// The attributes last recorded (empty on import). Only resources that live in state
    /// alone (generated passwords) answer from these.
    pub prior_attributes: Attributes,
}

/// The result of a read.
#[derive(Clone, Debug, Default)]
pub struct ReadResponse {
    /// The actual attributes, or `None` if the object no longer exists.
    pub attributes: Option<Attributes>,
}

/// Asks to create an object.
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// The resource's address.
    pub address: Address,
    /// The desired inputs, every reference resolved.
    pub inputs: Attributes,
    /// A deterministic idempotency token recorded in the intent journal before the call.
    /// Providers pass it as a client token or tag where the API has no unique names.
    pub token: String,
    /// No earlier attempt can have sent this token: the engine minted it for this create
    /// (tokens are unique within a state lineage) and this is its first attempt. A provider
    /// may skip looking for an object carrying it; a retry or a resumed intent is never
    /// fresh.
    pub fresh: bool,
    /// When the intent carrying this token was first sent (recorded in the intent journal
    /// before the first attempt, whole seconds, the local clock): nothing this create made
    /// can be older. A provider whose object can exist before its token is on it (a bucket
    /// is tagged after it is made) takes an untokened object as its own only when the cloud
    /// says it was made at or after this time (see [`made_by_this_intent`]). `None` when
    /// unknown (an intent written before the time was recorded): no such proof then.
    pub sent_at: Option<SystemTime>,
    /// Where to report progress.
    pub progress: Progress,
}

/// How far the cloud's clock may lag the local clock when an object's creation time is
/// compared with [`CreateRequest::sent_at`]. An object made up to this long before the
/// intent was sent is taken as made by it: a foreign object of the same name made within
/// this window would be adopted, so it is kept small. A local clock ahead of the cloud's
/// by more than this makes an interrupted create fail safe (the import hint) rather than
/// adopt.
pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(60);

/// Whether an object the cloud says was made at `created` can be the one an intent first
/// sent at `sent_at` made: not older than the intent, give or take [`CLOCK_SKEW_MARGIN`].
/// With either time unknown there is no proof.
pub fn made_by_this_intent(created: Option<SystemTime>, sent_at: Option<SystemTime>) -> bool {
    match (created, sent_at) {
        (Some(created), Some(sent_at)) => created + CLOCK_SKEW_MARGIN >= sent_at,
        _ => false,
    }
}

/// Whether an operation is finished.
#[derive(Clone, Debug)]
pub enum Completion {
    /// Done; these are the object's attributes.
    Ready(Attributes),
    /// Accepted by the cloud and still running; call the matching wait.
    InProgress,
}

/// The result of a create.
#[derive(Clone, Debug)]
pub struct CreateResponse {
    /// The cloud id of the new object.
    pub id: String,
    /// Whether it is ready yet.
    pub completion: Completion,
}

/// Asks to find the object an unfinished create made, by its deterministic identity (name
/// or token tag). An object of that name that carries no proof of ownership (its token, or
/// for a type that is tokened after it is made, a creation time not older than `sent_at`)
/// is not found: it is someone else's.
#[derive(Clone, Debug)]
pub struct FindRequest {
    /// The resource's address.
    pub address: Address,
    /// The inputs the create was (or would have been) sent with.
    pub inputs: Attributes,
    /// The token the create was (or would have been) sent with.
    pub token: String,
    /// When the intent carrying this token was first sent, as in
    /// [`CreateRequest::sent_at`].
    pub sent_at: Option<SystemTime>,
}

/// The result of a find.
#[derive(Clone, Debug, Default)]
pub struct FindResponse {
    /// The cloud id, if an object with that identity exists.
    pub id: Option<String>,
}

/// Asks to wait for a long-running create or delete.
#[derive(Clone, Debug)]
pub struct WaitRequest {
    /// The resource's address.
    pub address: Address,
    /// The cloud id.
    pub id: String,
    /// The inputs it was created with.
    pub inputs: Attributes,
    /// Where to report sub-status.
    pub progress: Progress,
}

/// Asks to change an object in place.
#[derive(Clone, Debug)]
pub struct UpdateRequest {
    /// The resource's address.
    pub address: Address,
    /// The cloud id.
    pub id: String,
    /// The attributes before the change (as last read).
    pub prior: Attributes,
    /// The desired inputs, every reference resolved.
    pub inputs: Attributes,
    /// The input fields that differ.
    pub changed: Vec<String>,
    /// Where to report progress.
    pub progress: Progress,
}

/// The result of an update.
#[derive(Clone, Debug)]
pub struct UpdateResponse {
    /// The attributes after the change.
    pub attributes: Attributes,
}

/// Asks to delete an object.
#[derive(Clone, Debug)]
pub struct DeleteRequest {
    /// The resource's address.
    pub address: Address,
    /// The cloud id.
    pub id: String,
    /// The attributes as last known (for final-snapshot names and the like).
    pub attributes: Attributes,
    /// Delete what the object holds first (a bucket's every object version and delete
    /// marker). Set only when the configuration allows it
    /// ([`ResourceSpec::force_destroy`](crate::ResourceSpec::force_destroy)); without it a
    /// provider never deletes contents, and deleting an object that holds any fails.
    pub force: bool,
    /// Where to report progress.
    pub progress: Progress,
}

/// Asks whether an object holds contents that deleting it would delete too.
#[derive(Clone, Debug)]
pub struct ContentsRequest {
    /// The resource's address.
    pub address: Address,
    /// The cloud id.
    pub id: String,
    /// The attributes as last known (a bucket's region).
    pub attributes: Attributes,
}

/// The result of a delete.
#[derive(Clone, Debug)]
pub struct DeleteResponse {
    /// `true` if the object is gone; `false` if deletion is still running.
    pub done: bool,
}

/// One resource type of one cloud.
///
/// # Guarantees an implementation must keep
/// - Every method is idempotent and safe to retry after cancellation (even an
///   infallible `.await` is a cancellation point).
/// - `create` treats "already exists with my token" as success, not failure, and an
///   object of the same identity without that proof of ownership as `AlreadyExists`,
///   never adopting it; `find` likewise finds only what carries the proof.
/// - `delete` treats "not found" as success.
/// - Errors carry an [`ErrorKind`] so the engine can retry throttling and 5xx.
/// - No method prints; progress goes through [`Progress`].
#[async_trait]
pub trait ResourceType: Send + Sync {
    /// The schema; its `type_name` is the registry key.
    fn schema(&self) -> &Schema;

    /// Reads the actual attributes.
    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError>;

    /// Reads many objects of this type; providers whose API can list with filters
    /// override this to use fewer calls. Responses are in request order.
    async fn read_many(&self, reqs: Vec<ReadRequest>) -> Vec<Result<ReadResponse, ProviderError>> {
        let mut out = Vec::with_capacity(reqs.len());
        for r in reqs {
            out.push(self.read(r).await);
        }
        out
    }

    /// Finds an object by its deterministic identity (used to reconcile an unfinished intent).
    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError>;

    /// Sends the create call. Returns as soon as the cloud accepted it.
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError>;

    /// Waits until a create finishes, reporting the cloud's sub-status, failing early
    /// on a terminal failure state. Adds no timeout of its own.
    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let read = self
            .read(ReadRequest {
                address: req.address.clone(),
                id: req.id,
                prior_inputs: req.inputs,
                prior_attributes: Attributes::new(),
            })
            .await?;
        read.attributes.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("`{}` disappeared while being created", req.address),
            )
        })
    }

    /// Changes an object in place.
    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError>;

    /// Sends the delete call.
    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError>;

    /// Whether the object holds contents its delete would destroy too (a bucket's
    /// objects, versions, delete markers): `Some(true)` at least one, `Some(false)` none,
    /// `None` for types that hold no such contents (the default, with no call). One
    /// listing of page size 1 at most: plans ask it for every delete and replace.
    async fn holds_contents(&self, _req: ContentsRequest) -> Result<Option<bool>, ProviderError> {
        Ok(None)
    }

    /// Waits until a delete finishes.
    async fn wait_deleted(&self, _req: WaitRequest) -> Result<(), ProviderError> {
        Ok(())
    }

    /// The name of the final snapshot `delete` takes of the object `id` with `attributes`,
    /// for types that take one (RDS). Plans show it before the delete; the provider's
    /// `delete` must derive its name with this same function, so the two cannot differ.
    /// `None`: no final snapshot, or its name cannot be known from these attributes.
    fn final_snapshot(&self, _id: &str, _attributes: &Attributes) -> Option<String> {
        None
    }
}

/// Every resource type flyteinfra knows, by type name. Providers register here, in one place.
#[derive(Clone, Default)]
pub struct Registry {
    types: BTreeMap<&'static str, Arc<dyn ResourceType>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a resource type. What it returns (attributes of reads, creates, waits and
    /// updates) has its schema's sensitive fields marked secret, whatever the provider did.
    ///
    /// # Panics
    /// Panics if the type name is already registered (a programming error the registry
    /// test catches).
    pub fn register(&mut self, rt: Arc<dyn ResourceType>) {
        let name = rt.schema().type_name;
        let previous = self.types.insert(name, Arc::new(Marked(rt)));
        assert!(
            previous.is_none(),
            "resource type `{name}` registered twice"
        );
    }

    /// The resource type called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn ResourceType>> {
        self.types.get(name)
    }

    /// The schema of `name`.
    pub fn schema(&self, name: &str) -> Option<&Schema> {
        self.types.get(name).map(|t| t.schema())
    }

    /// All registered types, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn ResourceType>> {
        self.types.values()
    }
}

/// A registered type: the provider, with its schema's sensitive fields marked secret in
/// everything it returns (a provider that echoes a password as a plain string cannot leak
/// it into state's `Debug`, logs or output).
struct Marked(Arc<dyn ResourceType>);

impl Marked {
    fn mark(&self, mut a: Attributes) -> Attributes {
        self.0.schema().mark_sensitive(&mut a);
        a
    }

    fn mark_read(&self, r: ReadResponse) -> ReadResponse {
        ReadResponse {
            attributes: r.attributes.map(|a| self.mark(a)),
        }
    }
}

#[async_trait::async_trait]
impl ResourceType for Marked {
    fn schema(&self) -> &Schema {
        self.0.schema()
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        self.0.read(req).await.map(|r| self.mark_read(r))
    }

    async fn read_many(&self, reqs: Vec<ReadRequest>) -> Vec<Result<ReadResponse, ProviderError>> {
        self.0
            .read_many(reqs)
            .await
            .into_iter()
            .map(|r| r.map(|r| self.mark_read(r)))
            .collect()
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        self.0.find(req).await
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let r = self.0.create(req).await?;
        Ok(CreateResponse {
            id: r.id,
            completion: match r.completion {
                Completion::Ready(a) => Completion::Ready(self.mark(a)),
                Completion::InProgress => Completion::InProgress,
            },
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        self.0.wait_ready(req).await.map(|a| self.mark(a))
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let r = self.0.update(req).await?;
        Ok(UpdateResponse {
            attributes: self.mark(r.attributes),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.0.delete(req).await
    }

    async fn holds_contents(&self, req: ContentsRequest) -> Result<Option<bool>, ProviderError> {
        self.0.holds_contents(req).await
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        self.0.wait_deleted(req).await
    }

    fn final_snapshot(&self, id: &str, attributes: &Attributes) -> Option<String> {
        self.0.final_snapshot(id, attributes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn an_object_is_this_intents_only_if_made_after_it_was_sent() {
        let sent = 1_764_000_000;
        let margin = CLOCK_SKEW_MARGIN.as_secs();
        // Made after the intent was sent (the run died before tagging it): this create's.
        assert!(made_by_this_intent(at(sent), at(sent)));
        assert!(made_by_this_intent(at(sent + 1), at(sent)));
        assert!(made_by_this_intent(at(sent + 86_400), at(sent)));
        // The cloud's clock a little behind the local one: still this create's.
        assert!(made_by_this_intent(at(sent - margin), at(sent)));
        // Made before the intent, beyond any clock skew: someone else's.
        assert!(!made_by_this_intent(at(sent - margin - 1), at(sent)));
        assert!(!made_by_this_intent(at(sent - 86_400), at(sent)));
        // Either time unknown: no proof.
        assert!(!made_by_this_intent(None, at(sent)));
        assert!(!made_by_this_intent(at(sent), None));
        assert!(!made_by_this_intent(None, None));
    }
}

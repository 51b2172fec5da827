//! flyteinfra's engine core: the resource model, the dependency graph, the provider
//! interface and the apply walker.
//!
//! This crate knows no cloud SDK, no plan format and no state file. Plans live in
//! `flyteinfra-plans`, state in `flyteinfra-state`, cloud calls in the provider crates,
//! and Flyte knowledge in `flyteinfra-flyte`.

mod address;
pub mod attrs;
pub mod builtin;
mod graph;
mod hash;
pub mod isolate;
pub mod poll;
mod provider;
pub mod requests;
mod resource;
pub mod retry;
mod schema;
mod value;
pub mod walk;

pub use address::{Address, AddressParseError};
pub use graph::{Graph, GraphError};
pub use hash::{fnv1a32, fnv1a64};
pub use poll::{PollSchedule, Poller, interval_from_env};
pub use provider::{
    CLOCK_SKEW_MARGIN, Completion, ContentsRequest, CreateRequest, CreateResponse, DeleteRequest,
    DeleteResponse, ErrorKind, Event, EventKind, FindRequest, FindResponse, NoObserver, Observer,
    Progress, ProviderError, ReadRequest, ReadResponse, Registry, ResourceType, UpdateRequest,
    UpdateResponse, WaitRequest, made_by_this_intent,
};
pub use resource::{Expr, Mode, Reference, ResourceSpec, resolve_attributes, resolve_known};
pub use schema::{Field, Flags, Schema, schema_problems};
pub use value::{Attributes, Planned, SECRET_KEY, Sensitive, Value, reveal_secrets};

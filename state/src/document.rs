//! The state document: what flyteinfra believes exists, for one deployment and one cloud.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Attributes, Mode, Value};
use serde::{Deserialize, Serialize};

/// The newest state format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// One state document. Changed only through its methods by the engine, persisted by a
/// backend after every transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    /// The on-disk format version; a newer one is refused, never rewritten.
    pub format_version: u32,
    /// A random id fixed when the state is first created; a saved plan records it.
    pub lineage: String,
    /// Incremented on every persisted change; a saved plan records it.
    pub serial: u64,
    /// The deployment name from the config.
    pub deployment: String,
    /// The cloud this state belongs to (`aws`, `gcp`, `azure`): each cloud has its own state.
    pub cloud: String,
    /// Resources by address.
    #[serde(default)]
    pub resources: BTreeMap<Address, ResourceState>,
    /// Outputs by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, Output>,
    /// Operations announced before their API call and not yet finished (the intent journal).
    #[serde(default)]
    pub intents: BTreeMap<Address, Intent>,
}

/// Where a resource stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created (or imported, or read) and ready.
    Ready,
    /// The cloud accepted the create; the next run resumes waiting for it.
    Pending,
    /// A create or update failed half-way; the next plan replaces it.
    Tainted,
}

/// What state knows about one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceState {
    /// Managed or existing.
    pub mode: Mode,
    /// The cloud id.
    pub id: String,
    /// Ready, pending or tainted.
    pub status: Status,
    /// The inputs last applied (what we asked for). Server-managed fields are diffed
    /// against these, not against what the cloud reports.
    #[serde(default)]
    pub inputs: Attributes,
    /// The attributes the cloud last reported (inputs and computed values).
    #[serde(default)]
    pub attributes: Attributes,
    /// What this resource depended on when last applied; orders deletes of resources
    /// that are no longer in the config.
    #[serde(default)]
    pub dependencies: Vec<Address>,
}

/// An output value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The value.
    pub value: Value,
    /// Redacted in every display.
    #[serde(default)]
    pub sensitive: bool,
}

/// The operation an intent announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A create call.
    Create,
    /// A delete call.
    Delete,
}

/// An operation recorded durably before its API call is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// Create or delete.
    pub operation: Operation,
    /// The deterministic token sent with the call (client token, tag).
    pub token: String,
    /// The resolved inputs the call is sent with (names, tags).
    #[serde(default)]
    pub inputs: Attributes,
    /// For deletes: the id being deleted.
    #[serde(default)]
    pub id: Option<String>,
    /// What the resource depends on.
    #[serde(default)]
    pub dependencies: Vec<Address>,
    /// When the call was first sent (seconds since the Unix epoch): a create sent by a run
    /// that died may still land a moment later, so a new run waits before sending it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
}

impl StateDoc {
    /// An empty state with a fresh lineage.
    pub fn new(deployment: &str, cloud: &str) -> Self {
        StateDoc {
            format_version: FORMAT_VERSION,
            lineage: new_lineage(),
            serial: 0,
            deployment: deployment.to_string(),
            cloud: cloud.to_string(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
            intents: BTreeMap::new(),
        }
    }
}

/// A random 128-bit id in UUID text form.
pub fn new_lineage() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random generator is available");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

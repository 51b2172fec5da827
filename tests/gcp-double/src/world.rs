//! The double's one in-memory world, shared by every API module behind one lock.
//!
//! Objects are stored as the JSON the real API returns, keyed by their full resource
//! path (`projects/p/global/networks/n`), so a module's GET is a lookup and its list a
//! prefix scan. Knobs are the fault and timing switches tests set through
//! `POST /_double/knobs`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The state every handler shares.
#[derive(Clone, Default)]
pub struct Shared(pub Arc<Mutex<World>>);

impl Shared {
    /// Locks the world. A handler that panicked poisons nothing a test cares about, so
    /// poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fault and timing switches. Every field has a default that makes the double behave
/// like a healthy project where every call succeeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Polls (GETs of the operation) before a compute, service-usage or
    /// service-networking operation reports `DONE`.
    pub op_polls: u32,
    /// Polls before a Cloud SQL operation is `DONE` (its create takes 5–20 min for real).
    pub sql_polls: u32,
    /// Polls before a GKE operation is `DONE`.
    pub gke_polls: u32,
    /// When true, calls to an API that is not enabled in the project get
    /// 403 `SERVICE_DISABLED`, as on a fresh project.
    pub enforce_services: bool,
    /// Reads of a new service account that answer 404 before it becomes visible
    /// (IAM is eventually consistent).
    pub sa_invisible_reads: u32,
    /// The next N `setIamPolicy` calls meet a concurrent writer: the double adds a
    /// foreign binding, bumps the etag and answers 409 `ABORTED`.
    pub iam_conflicts: u32,
    /// Every Nth API call answers 429 `RESOURCE_EXHAUSTED` (0 = never).
    pub throttle_every: u32,
    /// Instance names Cloud SQL still reserves after a delete (a create answers 409).
    pub reserved_sql_names: BTreeSet<String>,
    /// The next N Cloud SQL instance inserts answer 409 as if the name were still
    /// reserved by a deleted instance (whatever the name).
    pub reject_next_sql_inserts: u32,
    /// The next N Cloud SQL or GKE operations end in an error with this message.
    pub fail_next_ops: u32,
    /// The error message of a failed operation.
    pub fail_message: String,
    /// Services a project has enabled when the double first sees it (a fresh project
    /// comes with a few, such as Service Usage itself).
    pub initially_enabled: BTreeSet<String>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            op_polls: 1,
            sql_polls: 2,
            gke_polls: 2,
            enforce_services: true,
            sa_invisible_reads: 0,
            iam_conflicts: 0,
            throttle_every: 0,
            reserved_sql_names: BTreeSet::new(),
            reject_next_sql_inserts: 0,
            fail_next_ops: 0,
            fail_message: "simulated operation failure".into(),
            initially_enabled: [
                "serviceusage.googleapis.com".to_string(),
                "storage.googleapis.com".to_string(),
            ]
            .into_iter()
            .collect(),
        }
    }
}

/// A long-running operation: done after `polls_left` more polls.
#[derive(Clone, Debug)]
pub struct Op {
    /// The operation as the API returns it while running (its `status`/`done` fields are
    /// rewritten by the owning module when it completes).
    pub body: Value,
    /// Polls left before it completes.
    pub polls_left: u32,
    /// The error it ends with, if any.
    pub error: Option<String>,
    /// What to do to the world when it completes (the object to store, or to remove).
    pub effect: Effect,
}

/// A change an operation makes to the world when it completes.
#[derive(Clone, Debug)]
pub enum Effect {
    /// Nothing.
    None,
    /// Store (or replace) this object at this path.
    Put(String, Value),
    /// Remove the object at this path and everything under it.
    Delete(String),
    /// Enable these services in this project (by project id).
    Enable(String, Vec<String>),
    /// Disable this service in this project (by project id).
    Disable(String, String),
    /// Several effects, in order.
    All(Vec<Effect>),
}

/// Everything the double knows.
#[derive(Default)]
pub struct World {
    /// Switches.
    pub knobs: Knobs,
    /// Objects by full resource path.
    pub objects: BTreeMap<String, Value>,
    /// Operations by their name as the API spells it in its poll path.
    pub ops: BTreeMap<String, Op>,
    /// Enabled services per project (`compute.googleapis.com`).
    pub enabled: BTreeMap<String, BTreeSet<String>>,
    /// Counter for ids, etags and operation names.
    pub seq: u64,
    /// API calls served, by `METHOD path-template-ish` (for tests counting calls).
    pub calls: BTreeMap<String, u64>,
    /// Reads of a service account left before it is visible, by email.
    pub invisible: BTreeMap<String, u32>,
    /// Every Cloud SQL instance name an insert asked for, in order (refused ones too).
    pub sql_insert_attempts: Vec<String>,
    /// Project ids by the project number derived from them, so a path may name a
    /// project either way.
    pub project_ids: BTreeMap<String, String>,
    /// Operation names by the `requestId` a compute mutation carried, so a retried
    /// request answers the first one's operation instead of acting twice.
    pub request_ids: BTreeMap<String, String>,
    /// Cloud Storage buckets by name (the generations subset, [`crate::gcs`]).
    pub gcs: BTreeMap<String, crate::gcs::Bucket>,
}

impl World {
    /// A fresh number (ids, etags, operation names).
    // A counter, not an iterator: it never ends and takes no `Option`.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Applies an operation's effect.
    pub fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Put(path, v) => {
                self.objects.insert(path, v);
            }
            Effect::Delete(path) => {
                let under = format!("{path}/");
                self.objects
                    .retain(|k, _| k != &path && !k.starts_with(&under));
            }
            Effect::Enable(project, services) => {
                self.services(&project).extend(services);
            }
            Effect::Disable(project, service) => {
                self.services(&project).remove(&service);
            }
            Effect::All(effects) => {
                for e in effects {
                    self.apply(e);
                }
            }
        }
    }

    /// The enabled services of project `id`, seeded from `knobs.initially_enabled` the
    /// first time the project is seen.
    pub fn services(&mut self, id: &str) -> &mut BTreeSet<String> {
        let seed = &self.knobs.initially_enabled;
        self.enabled
            .entry(id.to_string())
            .or_insert_with(|| seed.clone())
    }

    /// Whether `service` is enabled in project `id`.
    pub fn is_enabled(&mut self, id: &str, service: &str) -> bool {
        self.services(id).contains(service)
    }

    /// The project id a path segment names: an id as is, or a number the double has
    /// handed out for an id. Records the id's number so later paths may use it.
    pub fn project_id(&mut self, segment: &str) -> String {
        if let Some(id) = self.project_ids.get(segment) {
            return id.clone();
        }
        self.project_ids
            .insert(project_number(segment), segment.to_string());
        segment.to_string()
    }

    /// Objects whose path starts with `prefix` and has exactly `depth` more segments.
    pub fn children(&self, prefix: &str) -> Vec<Value> {
        let p = format!("{prefix}/");
        self.objects
            .range(p.clone()..)
            .take_while(|(k, _)| k.starts_with(&p))
            .filter(|(k, _)| !k[p.len()..].contains('/'))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Takes one poll from operation `name`; returns true when it has just completed
    /// (its effect already applied) or was already done.
    pub fn poll(&mut self, name: &str) -> Option<bool> {
        let op = self.ops.get_mut(name)?;
        if op.polls_left > 0 {
            op.polls_left -= 1;
            if op.polls_left > 0 {
                return Some(false);
            }
            let effect = std::mem::replace(&mut op.effect, Effect::None);
            if op.error.is_none() {
                self.apply(effect);
            }
        }
        Some(true)
    }

    /// Creates an operation that completes after `polls` polls (0 = already done, its
    /// effect applied now). Returns its number.
    pub fn start_op(&mut self, name: String, body: Value, polls: u32, effect: Effect) -> String {
        let error = if self.knobs.fail_next_ops > 0 && polls > 0 {
            self.knobs.fail_next_ops -= 1;
            Some(self.knobs.fail_message.clone())
        } else {
            None
        };
        self.start_op_with(name, body, polls, effect, error)
    }

    /// Like [`World::start_op`], but the operation ends with exactly `error` (no fault
    /// injection from `fail_next_ops`, which is documented for SQL and GKE only).
    pub fn start_op_with(
        &mut self,
        name: String,
        body: Value,
        polls: u32,
        effect: Effect,
        error: Option<String>,
    ) -> String {
        let done_now = polls == 0;
        let effect = if done_now && error.is_none() {
            self.apply(effect);
            Effect::None
        } else {
            effect
        };
        self.ops.insert(
            name.clone(),
            Op {
                body,
                polls_left: polls,
                error,
                effect,
            },
        );
        name
    }
}

/// The stable 12-digit project number the double reports for project `id` (FNV-1a, so
/// it is the same in every run and every process).
pub fn project_number(id: &str) -> String {
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) {
        return id.to_string();
    }
    let h = flyteinfra_core::fnv1a64(id.as_bytes());
    format!("{}", 100_000_000_000 + h % 900_000_000_000)
}

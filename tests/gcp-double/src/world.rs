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
    /// The next N Cloud SQL or GKE operations end in an error with this message.
    pub fail_next_ops: u32,
    /// The error message of a failed operation.
    pub fail_message: String,
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
            fail_next_ops: 0,
            fail_message: "simulated operation failure".into(),
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
}

impl World {
    /// A fresh number (ids, etags, operation names).
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
        }
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
        let done_now = polls == 0;
        let effect = if done_now {
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

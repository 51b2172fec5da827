//! The double's one in-memory world, shared by every handler behind one lock.
//!
//! ARM is uniform, so every resource (resource groups and locks included) lives in one
//! map keyed by its lowercased resource id and holds the JSON the API returns; what a
//! GET adds on the fly (a vnet's subnets, a zone's link count) is computed by
//! [`crate::rules::render`]. Secrets a GET never shows are kept apart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The state every handler shares.
#[derive(Clone, Default)]
pub struct Shared(Arc<Mutex<World>>);

impl Shared {
    /// Locks the world. A handler that panicked poisons nothing a test cares about, so
    /// poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Fault and timing switches. The defaults make a healthy subscription where every call
/// succeeds and nothing waits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Every Nth API call answers 429 `TooManyRequests` before doing anything (0 = never).
    pub throttle_every: u32,
    /// The `Retry-After` seconds of every async answer and 429 (0 in tests: no waiting).
    pub retry_after_secs: u32,
    /// Polls an operation (or a provider registration) answers "in progress" before it
    /// reaches its terminal state.
    pub polls_to_finish: u32,
    /// Resource provider namespaces that start `NotRegistered` in every subscription.
    pub unregistered: Vec<String>,
    /// Subscription ids that answer 404 `SubscriptionNotFound`.
    pub unknown_subscriptions: Vec<String>,
    /// Flexible server names some other tenant already owns (names are global).
    pub taken_server_names: Vec<String>,
    /// Storage account names some other tenant already owns (names are global).
    pub taken_storage_names: Vec<String>,
    /// `(method, path substring)`: the next matching call that starts an async
    /// operation gets an operation that ends `Failed`. Method `*` matches any.
    pub fail_next: Vec<(String, String)>,
    /// `(method, path substring)`: the next matching call is performed but answered
    /// with 500 `InternalServerError`, as when a response is lost on the way back.
    pub lose_next_response: Vec<(String, String)>,
    /// `(method, path substring, ms)`: every matching call is performed at once but
    /// answered only after `ms` milliseconds, as when ARM is slow to reply to a write that
    /// has taken effect (a process killed meanwhile never learns of it).
    pub slow_answers: Vec<(String, String, u64)>,
    /// Items per page of a resource group's resource list (0 = one page): longer lists
    /// answer with a `nextLink`, as ARM does.
    pub page_size: u32,
    /// Milliseconds of wall time a federated identity credential write keeps its
    /// identity busy: another credential PUT/DELETE on that identity within the window
    /// answers 409 `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`
    /// (0 = never busy).
    pub fic_busy_ms: u64,
    /// The caller may not write role assignments: their PUT and DELETE answer 403
    /// `AuthorizationFailed` (reads still work).
    pub deny_role_assignments: bool,
    /// Directory object ids (users, groups, service principals) a role assignment may
    /// name besides the principals of the double's managed identities and clusters.
    pub known_principals: Vec<String>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            throttle_every: 0,
            retry_after_secs: 0,
            polls_to_finish: 2,
            unregistered: Vec::new(),
            unknown_subscriptions: Vec::new(),
            taken_server_names: Vec::new(),
            taken_storage_names: Vec::new(),
            fail_next: Vec::new(),
            lose_next_response: Vec::new(),
            slow_answers: Vec::new(),
            page_size: 0,
            fic_busy_ms: 0,
            deny_role_assignments: false,
            known_principals: Vec::new(),
        }
    }
}

/// Takes the first `(method, substring)` of `list` matching the call, if any: knobs that
/// fire once per entry.
pub(crate) fn take_match(list: &mut Vec<(String, String)>, method: &str, path: &str) -> bool {
    let hit = list
        .iter()
        .position(|(m, p)| knob_matches(m, p, method, path));
    hit.map(|i| list.remove(i)).is_some()
}

/// Whether a knob's `(method, path substring)` names a call (`*` is any method; case
/// does not matter, as in ARM paths).
pub(crate) fn knob_matches(m: &str, p: &str, method: &str, path: &str) -> bool {
    (m == "*" || m.eq_ignore_ascii_case(method))
        && path.to_ascii_lowercase().contains(&p.to_ascii_lowercase())
}

/// What an asynchronous operation does when it finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpKind {
    /// A PUT of a new resource.
    Create,
    /// A PUT or PATCH of an existing resource.
    Update,
    /// A resource DELETE: the resource and its children go.
    Delete,
    /// A resource group DELETE: the group and everything in it go.
    DeleteGroup,
}

/// An asynchronous operation, polled through its status or result URL or through a GET
/// of the resources it is about.
#[derive(Clone, Debug)]
pub(crate) struct Op {
    pub kind: OpKind,
    /// Lowercased ids of the resources it changes (a vnet PUT also carries its subnets).
    pub targets: Vec<String>,
    /// Polls left that still answer "in progress".
    pub polls_left: u32,
    /// Whether it ends `Failed` (knob `fail_next`).
    pub fails: bool,
    /// Whether it has reached its terminal state.
    pub done: bool,
    pub start_time: String,
    pub end_time: Option<String>,
    /// The api-version its status and result URLs carry.
    pub api_version: String,
    /// Its status URL's path (the `id` of the status body).
    pub status_path: String,
}

/// A resource provider's registration in one subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reg {
    NotRegistered,
    /// Registering; the number is the GETs left that still say so.
    Registering(u32),
    Registered,
}

/// Everything the double knows.
#[derive(Default)]
pub struct World {
    /// Switches.
    pub knobs: Knobs,
    /// Resources by lowercased id, as the API shows them (minus the computed fields).
    pub(crate) resources: BTreeMap<String, Value>,
    /// Flexible server admin passwords by lowercased server id (a GET never shows them).
    pub(crate) secrets: BTreeMap<String, String>,
    /// Operations by id.
    pub(crate) ops: BTreeMap<String, Op>,
    /// The operation currently in progress on a resource, by lowercased id: a later
    /// operation supersedes an earlier one, whose end then leaves the resource alone.
    pub(crate) current: BTreeMap<String, String>,
    /// Provider registrations by `sub/namespace`, lowercased.
    pub(crate) registrations: BTreeMap<String, Reg>,
    /// API calls by `METHOD lastTypeSegment`.
    pub(crate) calls_by_op: BTreeMap<String, u64>,
    /// API calls in all (control routes excluded).
    pub(crate) calls: u64,
    /// Counter for ids and etags.
    pub(crate) seq: u64,
    /// Until when a federated identity credential write keeps its identity busy, by
    /// the identity's lowercased id (knob `fic_busy_ms`).
    pub(crate) fic_busy: BTreeMap<String, Instant>,
    /// Blob containers by name, with every blob version ([`crate::blobs`]).
    pub(crate) blobs: BTreeMap<String, crate::blobs::Container>,
}

impl World {
    /// The resource at `id` (any casing) as a GET shows it, without counting as a poll.
    pub fn resource(&self, id: &str) -> Option<Value> {
        crate::rules::render(self, &id.to_ascii_lowercase())
    }

    /// The stored body of the resource at `id`, to change out of band (drift). Fields a
    /// GET computes (a vnet's `subnets`, a zone's counts) are not stored here: subnets
    /// are resources of their own.
    pub fn resource_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.resources.get_mut(&id.to_ascii_lowercase())
    }

    /// Every stored resource id, with the casing of its first PUT: groups, resources,
    /// child resources, locks and role assignments.
    pub fn resource_ids(&self) -> Vec<String> {
        self.resources
            .iter()
            .map(|(k, v)| v.get("id").and_then(Value::as_str).unwrap_or(k).to_string())
            .collect()
    }

    /// Plants a resource out of band (one flyteinfra did not make, or a changed one).
    /// The body should carry ARM's `id`, `name` and `type`; `id` is set when missing.
    pub fn put_raw(&mut self, id: &str, mut body: Value) {
        if let Some(o) = body.as_object_mut() {
            o.entry("id")
                .or_insert_with(|| Value::String(id.to_string()));
        }
        self.resources.insert(id.to_ascii_lowercase(), body);
    }

    /// Removes a resource and everything under it out of band (someone deleted it).
    pub fn remove_raw(&mut self, id: &str) {
        self.remove_tree(&id.to_ascii_lowercase());
    }

    /// The admin password a flexible server was last given (no GET shows it).
    pub fn admin_password(&self, server_id: &str) -> Option<&str> {
        self.secrets
            .get(&server_id.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// API calls served in all (control routes excluded, throttled ones included).
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// API calls by `METHOD lastTypeSegment` (`PUT virtualNetworks`, `GET operationStatuses`).
    pub fn calls_by_op(&self) -> BTreeMap<String, u64> {
        self.calls_by_op.clone()
    }

    /// A fresh number (ids, etags).
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A fresh GUID-shaped string.
    pub(crate) fn uuid(&mut self) -> String {
        let n = self.next_seq();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            n.wrapping_mul(2_654_435_761) as u32,
            (n * 31) % 0xffff,
            n % 0xfff,
            (n * 7) % 0xfff,
            n
        )
    }

    /// A fresh weak etag, as the network provider writes them.
    pub(crate) fn etag(&mut self) -> String {
        format!("W/\"{}\"", self.uuid())
    }

    /// Removes `key` and every resource under it (children, locks on it).
    pub(crate) fn remove_tree(&mut self, key: &str) {
        let under = format!("{key}/");
        let gone = |k: &String| k == key || k.starts_with(&under);
        self.resources.retain(|k, _| !gone(k));
        self.secrets.retain(|k, _| !gone(k));
        self.current.retain(|k, _| !gone(k));
        self.fic_busy.retain(|k, _| !gone(k));
    }

    /// The stored resources directly under `key` of child type `child` (lowercase),
    /// e.g. a vnet's `subnets`.
    pub(crate) fn children(&self, key: &str, child: &str) -> Vec<(&String, &Value)> {
        let prefix = format!("{key}/{child}/");
        self.resources
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .collect()
    }

    /// Every stored resource of ARM type `ty` (case-insensitive).
    pub(crate) fn of_type(&self, ty: &str) -> Vec<(&String, &Value)> {
        self.resources
            .iter()
            .filter(|(_, v)| {
                v.get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|t| t.eq_ignore_ascii_case(ty))
            })
            .collect()
    }

    /// A namespace's registration in `sub`, seeded from `knobs.unregistered`.
    pub(crate) fn registration(&mut self, sub: &str, ns: &str) -> &mut Reg {
        let unregistered = self
            .knobs
            .unregistered
            .iter()
            .any(|u| u.eq_ignore_ascii_case(ns));
        self.registrations
            .entry(format!("{sub}/{ns}").to_ascii_lowercase())
            .or_insert(if unregistered {
                Reg::NotRegistered
            } else {
                Reg::Registered
            })
    }
}

/// Now as RFC 3339 in UTC with fractional seconds, as ARM writes timestamps.
pub(crate) fn now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos() / 100
    )
}

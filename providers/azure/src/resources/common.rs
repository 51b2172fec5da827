//! What every ARM resource type shares: ownership tags, the import hint, JSON ↔ attribute
//! conversion, and waiting for a provisioning state.
//!
//! ARM's `PUT` creates *or replaces*: a `PUT` on someone else's resource of the same id
//! would silently take it over. So every create reads first and sends its `PUT` only when
//! nothing is there, or when what is there carries this create's token (an earlier attempt
//! of the same create). The token lives in the `flyteinfra-token` tag where the type has
//! tags, and in the name (a suffix derived from it) or a notes field where it has none.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use flyteinfra_core::{Address, Attributes, ErrorKind, Poller, Progress, ProviderError, Value};
use serde_json::{Map, Value as Json};

use crate::client::{ArmClient, Operation};

/// The tag holding the create token.
pub(crate) const TOKEN_TAG: &str = "flyteinfra-token";

/// The `tags` input as ARM tags, with the create token added.
pub(crate) fn tags_with_token(inputs: &Attributes, token: &str) -> Json {
    let mut tags = Map::new();
    if let Some(m) = inputs.get("tags").and_then(Value::as_map) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                tags.insert(k.clone(), Json::String(s.to_string()));
            }
        }
    }
    tags.insert(TOKEN_TAG.into(), Json::String(token.to_string()));
    Json::Object(tags)
}

/// The same tags for an update: the inputs' tags, keeping the token the resource carries.
pub(crate) fn tags_keeping_token(inputs: &Attributes, current: &Json) -> Json {
    let token = current["tags"][TOKEN_TAG].as_str().unwrap_or_default();
    let mut tags = tags_with_token(inputs, token);
    if token.is_empty()
        && let Some(m) = tags.as_object_mut()
    {
        m.remove(TOKEN_TAG);
    }
    tags
}

/// A resource's tags as an attribute, without the token tag (reads hide it, so it is never
/// drift).
pub(crate) fn user_tags(body: &Json) -> Value {
    let mut m = BTreeMap::new();
    if let Some(tags) = body["tags"].as_object() {
        for (k, v) in tags {
            if k != TOKEN_TAG
                && let Some(s) = v.as_str()
            {
                m.insert(k.clone(), Value::from(s));
            }
        }
    }
    Value::Map(m)
}

/// Whether `body` carries `token` in its tags.
pub(crate) fn carries_token(body: &Json, token: &str) -> bool {
    body["tags"][TOKEN_TAG].as_str() == Some(token)
}

/// Whether `body` carries any flyteinfra token (some flyteinfra deployment made it).
pub(crate) fn carries_any_token(body: &Json) -> bool {
    body["tags"][TOKEN_TAG].as_str().is_some()
}

/// The refusal of a create that found someone else's resource at its id.
pub(crate) fn not_ours(what: &str, address: &Address, id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::AlreadyExists,
        format!(
            "{what} `{id}` already exists and is not flyteinfra's: it does not carry this \
             create's token; flyteinfra never takes over an object it did not make. To manage \
             it with flyteinfra, run `flyteinfra import {address} {id}`; otherwise choose \
             another name"
        ),
    )
}

/// `properties.provisioningState` (`""` when absent).
pub(crate) fn provisioning_state(body: &Json) -> &str {
    body["properties"]["provisioningState"]
        .as_str()
        .unwrap_or_default()
}

/// A string field of `body` at the JSON pointer `at` (`/properties/addressPrefix`), or `""`.
pub(crate) fn str_at<'a>(body: &'a Json, at: &str) -> &'a str {
    body.pointer(at).and_then(Json::as_str).unwrap_or_default()
}

/// A list of strings as an attribute.
pub(crate) fn string_list<I: IntoIterator<Item = String>>(items: I) -> Value {
    Value::List(items.into_iter().map(Value::from).collect())
}

/// A resource id's last segment (its name).
pub(crate) fn name_of(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// Whether two ARM resource ids name the same resource (ids are case-insensitive).
pub(crate) fn same_id(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// An id attribute in the prior input's spelling when both name the same resource, so
/// ARM's casing of an id is never drift.
pub(crate) fn id_value(cloud: &str, prior: Option<&Value>) -> Value {
    match prior.and_then(Value::as_str) {
        Some(p) if same_id(p, cloud) => Value::from(p),
        _ => Value::from(cloud),
    }
}

/// Keeps only the attributes the last inputs set (and computed ones), so an input a
/// deployment does not set is never drift. Empty `prior_inputs` (an import) keeps all.
pub(crate) fn managed_only(
    mut a: Attributes,
    prior_inputs: &Attributes,
    schema: &flyteinfra_core::Schema,
) -> Attributes {
    if !prior_inputs.is_empty() {
        a.retain(|k, _| {
            schema
                .field(k)
                .is_none_or(|f| f.flags.computed || prior_inputs.contains_key(k))
        });
    }
    a
}

/// The operations this process started, by lowercased resource id: a wait follows the
/// operation Azure named; after a restart it has none and watches the resource itself.
#[derive(Default)]
pub(crate) struct Pending(Mutex<HashMap<String, Operation>>);

impl Pending {
    /// Remembers `op` (if the answer named one) for `id`.
    pub(crate) fn put(&self, id: &str, op: Option<Operation>) {
        let mut m = self.0.lock().expect("pending operations");
        match op {
            Some(op) => m.insert(id.to_ascii_lowercase(), op),
            None => m.remove(&id.to_ascii_lowercase()),
        };
    }

    /// Takes the operation remembered for `id`.
    pub(crate) fn take(&self, id: &str) -> Option<Operation> {
        self.0
            .lock()
            .expect("pending operations")
            .remove(&id.to_ascii_lowercase())
    }
}

/// What a read of a resource being provisioned says.
pub(crate) enum Readiness {
    /// Done: use this body.
    Ready,
    /// Still going, in this sub-state.
    Working(String),
    /// Failed, with Azure's words.
    Failed(String),
}

/// The readiness of most types: `properties.provisioningState`.
pub(crate) fn by_provisioning_state(body: &Json) -> Readiness {
    match provisioning_state(body) {
        "Succeeded" | "" => Readiness::Ready,
        "Failed" | "Canceled" => Readiness::Failed(format!(
            "its provisioning state is `{}`",
            provisioning_state(body)
        )),
        other => Readiness::Working(other.to_string()),
    }
}

/// How one type is waited for.
pub(crate) struct WaitFor<'a> {
    pub client: &'a ArmClient,
    pub id: &'a str,
    pub api: &'a str,
    /// Names the resource in errors (`virtual network`).
    pub what: &'a str,
    pub expected: Duration,
    pub progress: &'a Progress,
}

impl WaitFor<'_> {
    /// Follows the operation this process started (when known), then reads the resource
    /// until `ready` says so. Returns the last body.
    pub(crate) async fn ready(
        &self,
        pending: &Pending,
        ready: fn(&Json) -> Readiness,
    ) -> Result<Json, ProviderError> {
        if let Some(op) = pending.take(self.id) {
            self.client
                .follow(
                    &op,
                    &format!("creating {} `{}`", self.what, self.id),
                    self.progress,
                )
                .await?;
        }
        let poller = Poller::start(self.client.schedule(self.expected));
        let mut last = String::new();
        loop {
            let body = self.client.get(self.id, self.api).await?.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!(
                        "{} `{}` disappeared while being created",
                        self.what, self.id
                    ),
                )
            })?;
            match ready(&body) {
                Readiness::Ready => return Ok(body),
                Readiness::Failed(why) => {
                    return Err(ProviderError::new(
                        ErrorKind::Permanent,
                        format!("{} `{}` failed: {why}", self.what, self.id),
                    ));
                }
                Readiness::Working(state) => {
                    if state != last {
                        self.progress.status(state.clone());
                        last = state;
                    }
                }
            }
            poller.sleep().await;
        }
    }

    /// Follows the delete this process started (when known), then reads the resource until
    /// it is gone.
    pub(crate) async fn gone(&self, pending: &Pending) -> Result<(), ProviderError> {
        if let Some(op) = pending.take(self.id) {
            self.client
                .follow(
                    &op,
                    &format!("deleting {} `{}`", self.what, self.id),
                    self.progress,
                )
                .await?;
        }
        let poller = Poller::start(self.client.schedule(self.expected));
        loop {
            match self.client.get(self.id, self.api).await? {
                None => return Ok(()),
                Some(body) => self.progress.status(provisioning_state(&body).to_string()),
            }
            poller.sleep().await;
        }
    }
}

// -- network helpers --

/// The resource group a resource id names (`""` when it names none).
pub(crate) fn resource_group_of(id: &str) -> &str {
    let segs: Vec<&str> = id.split('/').collect();
    segs.windows(2)
        .find(|w| w[0].eq_ignore_ascii_case("resourceGroups"))
        .map_or("", |w| w[1])
}

/// The id of a child resource's parent (`…/virtualNetworks/v/subnets/s` → `…/virtualNetworks/v`).
pub(crate) fn parent_of(id: &str) -> &str {
    id.trim_end_matches('/')
        .rsplitn(3, '/')
        .nth(2)
        .unwrap_or_default()
}

/// A create's look before its `PUT` (ARM's create-or-replace): whether to send it. Nothing
/// there: yes. This create's own (`ours`: an earlier attempt's) still provisioning or done:
/// no, the wait follows it (a second `PUT` could replace what it holds). Its own but failed:
/// yes, ARM provisions again on a `PUT`. Anyone else's: refused with the import hint.
pub(crate) fn needs_put(
    existing: Option<&Json>,
    ours: impl Fn(&Json) -> bool,
    what: &str,
    address: &Address,
    id: &str,
) -> Result<bool, ProviderError> {
    match existing {
        None => Ok(true),
        Some(b) if !ours(b) => Err(not_ours(what, address, id)),
        Some(b) => Ok(matches!(by_provisioning_state(b), Readiness::Failed(_))),
    }
}

impl WaitFor<'_> {
    /// Follows an update's operation (when the answer named one), then reads the resource
    /// until it is ready again. Returns the last body.
    pub(crate) async fn updated(
        &self,
        op: Option<Operation>,
        ready: fn(&Json) -> Readiness,
    ) -> Result<Json, ProviderError> {
        if let Some(op) = op {
            let what = format!("updating {} `{}`", self.what, self.id);
            self.client.follow(&op, &what, self.progress).await?;
        }
        self.ready(&Pending::default(), ready).await
    }
}

/// Eight hex digits from a create's `token` (and, past the first choice, the attempt): the
/// suffix of names that must be unique beyond the deployment. Fixed before the call, as
/// the token is journaled first, so an interrupted create finds its own name again.
pub(crate) fn token_suffix(token: &str, attempt: u32) -> String {
    let h = if attempt == 0 {
        flyteinfra_core::fnv1a64(token.as_bytes())
    } else {
        flyteinfra_core::fnv1a64(format!("{token}#{attempt}").as_bytes())
    };
    format!("{:08x}", h >> 32)
}

/// `find` for a type whose token is in its tags: the object at `path` when it carries
/// `token`.
pub(crate) async fn find_by_token(
    client: &ArmClient,
    path: String,
    api: &str,
    token: &str,
) -> Result<flyteinfra_core::FindResponse, ProviderError> {
    let found = client.get(&path, api).await?;
    Ok(flyteinfra_core::FindResponse {
        id: found.filter(|b| carries_token(b, token)).map(|_| path),
    })
}

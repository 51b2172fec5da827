//! `gcp_storage_bucket`, over the GCS JSON API: the official storage crate manages
//! buckets over gRPC v2, which no local emulator speaks.
//!
//! Ownership: a bucket carries the create's token as the `flyteinfra-token` label (sent with
//! the insert and again with the PATCH that follows it; hidden from reads, kept by updates).
//! A create that meets an existing bucket of its name takes it as its own only when it
//! carries the token or, unlabelled, was made no earlier than the intent was first sent
//! (`timeCreated` against `sent_at`, within [`CLOCK_SKEW_MARGIN`]: a server that ignored
//! the insert's labels, and a run killed before the PATCH). Any other bucket of that name
//! is someone else's: the create fails, naming `flyteinfra import`, and `find` does not
//! find it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value as Json, json};

use flyteinfra_core::attrs;
use flyteinfra_core::{
    Address, Attributes, CLOCK_SKEW_MARGIN, Completion, ContentsRequest, CreateRequest,
    CreateResponse, DeleteRequest, DeleteResponse, ErrorKind, Field, FindRequest, FindResponse,
    ProviderError, ReadRequest, ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse,
    Value, made_by_this_intent,
};

use super::operations::label_value;
use super::sql_database_instance::TOKEN_LABEL;
use crate::client::{Api, GcpClients};

/// `gcp_storage_bucket`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_storage_bucket",
        doc: "A Cloud Storage bucket (Flyte's metadata and raw data store). Its globally \
              unique name is its identity.",
        fields: vec![
            Field::computed("id", "The bucket name."),
            Field::input("name", "The globally unique bucket name.")
                .required()
                .force_new(),
            Field::input("location", "Region or multi-region (`us-central1`, `US`).").force_new(),
            Field::input(
                "uniform_bucket_level_access",
                "Access is controlled by IAM only (no object ACLs).",
            ),
            Field::input(
                "public_access_prevention",
                "`enforced` (never public) or `inherited`.",
            ),
            Field::input("versioning", "Keep noncurrent object versions."),
            Field::input(
                "lifecycle_delete_age_days",
                "Delete objects this many days old (one lifecycle rule); unset = not managed.",
            ),
            Field::input(
                "labels",
                "Labels (string map; the `flyteinfra-token` label is hidden).",
            ),
            Field::computed("self_link", "The bucket's API URL."),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `gcp_storage_bucket` over the GCS JSON API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(StorageBucket {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct StorageBucket {
    clients: GcpClients,
    schema: Schema,
}

/// The settings fields a PATCH manages.
const SETTINGS: &[&str] = &[
    "uniform_bucket_level_access",
    "public_access_prevention",
    "versioning",
    "lifecycle_delete_age_days",
    "labels",
];

fn validate(inputs: &Attributes) -> Result<(), ProviderError> {
    match attrs::opt_s(inputs, "public_access_prevention") {
        None | Some("enforced" | "inherited") => {}
        Some(other) => {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!("public_access_prevention `{other}`: expected `enforced` or `inherited`"),
            ));
        }
    }
    if let Some(d) = attrs::i(inputs, "lifecycle_delete_age_days")
        && d < 0
    {
        return Err(ProviderError::new(
            ErrorKind::InvalidInput,
            format!("lifecycle_delete_age_days {d}: expected 0 or more"),
        ));
    }
    Ok(())
}

/// The string labels of `inputs` (non-strings are ignored).
fn input_labels(inputs: &Attributes) -> BTreeMap<String, String> {
    inputs
        .get("labels")
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The labels a bucket JSON holds (a null value is a removed label), the token label
/// included.
fn cloud_labels(b: &Json) -> BTreeMap<String, String> {
    b["labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The PATCH body making the bucket match the settings `inputs` set. `current` is the
/// bucket as it is (labels it holds that are not wanted are removed with `null`);
/// `clear` names settings no longer set that must go back to Google's defaults. The labels
/// always keep the token label: `token`'s (a create), else the one `current` holds.
fn settings_body(
    inputs: &Attributes,
    current: &Json,
    clear: &[String],
    token: Option<&str>,
) -> Json {
    let mut body = serde_json::Map::new();
    let wants = |f: &str| inputs.get(f).is_some_and(|v| *v != Value::Null);
    let clearing = |f: &str| !wants(f) && clear.iter().any(|c| c == f);
    let mut iam = serde_json::Map::new();
    if let Some(on) = attrs::b(inputs, "uniform_bucket_level_access") {
        iam.insert("uniformBucketLevelAccess".into(), json!({"enabled": on}));
    }
    if let Some(p) = attrs::opt_s(inputs, "public_access_prevention") {
        iam.insert("publicAccessPrevention".into(), json!(p));
    }
    if !iam.is_empty() {
        body.insert("iamConfiguration".into(), Json::Object(iam));
    }
    if let Some(on) = attrs::b(inputs, "versioning") {
        body.insert("versioning".into(), json!({"enabled": on}));
    }
    if let Some(days) = attrs::i(inputs, "lifecycle_delete_age_days") {
        body.insert(
            "lifecycle".into(),
            json!({"rule": [{"action": {"type": "Delete"}, "condition": {"age": days}}]}),
        );
    } else if clearing("lifecycle_delete_age_days") {
        body.insert("lifecycle".into(), json!({"rule": []}));
    }
    if token.is_some() || wants("labels") || clearing("labels") {
        let mut want = input_labels(inputs);
        // Identity, not configuration: never taken from the inputs, never removed.
        want.remove(TOKEN_LABEL);
        let have = cloud_labels(current);
        if let Some(t) = token
            .map(label_value)
            .or_else(|| have.get(TOKEN_LABEL).cloned())
        {
            want.insert(TOKEN_LABEL.to_string(), t);
        }
        // PATCH merges labels: removing one takes an explicit null.
        let mut labels: serde_json::Map<String, Json> = have
            .into_keys()
            .filter(|k| !want.contains_key(k))
            .map(|k| (k, Json::Null))
            .collect();
        labels.extend(want.into_iter().map(|(k, v)| (k, json!(v))));
        body.insert("labels".into(), Json::Object(labels));
    }
    Json::Object(body)
}

/// The age of the lifecycle's Delete-by-age rule, if that is the rule it holds.
fn delete_age(b: &Json) -> Option<i64> {
    b["lifecycle"]["rule"].as_array()?.iter().find_map(|r| {
        let cond = r["condition"].as_object()?;
        (r["action"]["type"] == "Delete" && cond.len() == 1)
            .then(|| cond.get("age")?.as_i64())
            .flatten()
    })
}

/// The attributes of bucket JSON `b`: every field on import (`prior` empty), otherwise the
/// computed fields and the inputs `prior` sets (unset inputs are not managed).
fn to_attrs(b: &Json, prior: &Attributes) -> Attributes {
    let name = b["name"].as_str().unwrap_or_default();
    let location = b["location"].as_str().unwrap_or_default();
    // GCS reports locations upper-case; the applied spelling is kept when they agree.
    let location = match attrs::opt_s(prior, "location") {
        Some(p) if p.eq_ignore_ascii_case(location) => p,
        _ => location,
    };
    let iam = &b["iamConfiguration"];
    let pap = match iam["publicAccessPrevention"].as_str() {
        Some("enforced") => "enforced",
        // Older buckets say `unspecified`, which means the same as `inherited`.
        _ => "inherited",
    };
    let labels: BTreeMap<String, Value> = cloud_labels(b)
        .into_iter()
        .filter(|(k, _)| k != TOKEN_LABEL)
        .map(|(k, v)| (k, Value::Str(v)))
        .collect();
    let mut a = attrs::attrs([
        ("id", name.into()),
        ("name", name.into()),
        (
            "self_link",
            b["selfLink"].as_str().unwrap_or_default().into(),
        ),
        ("location", location.into()),
        (
            "uniform_bucket_level_access",
            iam["uniformBucketLevelAccess"]["enabled"]
                .as_bool()
                .unwrap_or(false)
                .into(),
        ),
        ("public_access_prevention", pap.into()),
        (
            "versioning",
            b["versioning"]["enabled"].as_bool().unwrap_or(false).into(),
        ),
        (
            "lifecycle_delete_age_days",
            delete_age(b).map_or(Value::Null, Value::Int),
        ),
        ("labels", Value::Map(labels)),
    ]);
    if !prior.is_empty() {
        a.retain(|k, _| matches!(k.as_str(), "id" | "name" | "self_link") || prior.contains_key(k));
    }
    a
}

impl StorageBucket {
    async fn get(&self, name: &str) -> Result<Option<Json>, ProviderError> {
        match self
            .clients
            .http
            .call(
                Api::Storage,
                Method::GET,
                &format!("/storage/v1/b/{name}"),
                None,
                "storage.buckets.get",
            )
            .await
        {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// PATCHes the settings `inputs` set (and clears `clear`), with `token`'s label on a
    /// create; returns the bucket after.
    async fn patch(
        &self,
        name: &str,
        inputs: &Attributes,
        current: &Json,
        clear: &[String],
        token: Option<&str>,
    ) -> Result<Json, ProviderError> {
        let mut body = settings_body(inputs, current, clear, token);
        // The location cannot change; it is sent only when the bucket does not report the
        // one asked for: the emulator ignores it on insert, and on real GCS an adopted
        // bucket elsewhere then fails with Google's own message instead of being adopted.
        if let Some(l) = attrs::opt_s(inputs, "location")
            && !current["location"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(l))
        {
            body["location"] = json!(l);
        }
        if body.as_object().is_some_and(|m| m.is_empty()) {
            return Ok(current.clone());
        }
        self.clients
            .http
            .call(
                Api::Storage,
                Method::PATCH,
                &format!("/storage/v1/b/{name}"),
                Some(&body),
                "storage.buckets.patch",
            )
            .await
    }
}

/// Whether bucket JSON `b` is flyteinfra's for an intent with `token` first sent at
/// `sent_at`: it carries the token label, or it was made no earlier than the intent.
fn owned(b: &Json, token: &str, sent_at: Option<SystemTime>) -> bool {
    cloud_labels(b).get(TOKEN_LABEL) == Some(&label_value(token))
        || made_by_this_intent(time_created(b), sent_at)
}

/// The bucket's `timeCreated` (RFC 3339).
fn time_created(b: &Json) -> Option<SystemTime> {
    let t = google_cloud_wkt::Timestamp::try_from(b["timeCreated"].as_str()?).ok()?;
    SystemTime::try_from(t).ok()
}

/// The error of a create that met someone else's bucket of its name.
fn not_ours(address: &Address, name: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::AlreadyExists,
        format!(
            "bucket `{name}` already exists and is not flyteinfra's: it carries no \
             `{TOKEN_LABEL}` label of this deployment and was made before this create was \
             sent (allowing {}s of clock skew); flyteinfra never takes over a bucket it did \
             not make. To manage it with flyteinfra, run `flyteinfra import {address} \
             {name}`; otherwise choose another name",
            CLOCK_SKEW_MARGIN.as_secs()
        ),
    )
}

#[async_trait]
impl ResourceType for StorageBucket {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .get(&req.id)
                .await?
                .map(|b| to_attrs(&b, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        // A bucket of this name that is not provably this intent's is someone else's.
        let found = self.get(name).await?;
        Ok(FindResponse {
            id: found
                .filter(|b| owned(b, &req.token, req.sent_at))
                .map(|_| name.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        validate(&req.inputs)?;
        let name = attrs::s(&req.inputs, "name")?;
        let mut body = settings_body(&req.inputs, &Json::Null, &[], Some(&req.token));
        body["name"] = json!(name);
        if let Some(l) = attrs::opt_s(&req.inputs, "location") {
            body["location"] = json!(l);
        }
        let path = format!("/storage/v1/b?project={}", self.clients.project);
        let started = SystemTime::now();
        let current = match self
            .clients
            .http
            .call(
                Api::Storage,
                Method::POST,
                &path,
                Some(&body),
                "storage.buckets.insert",
            )
            .await
        {
            Ok(b) => b,
            // A retried or resumed create: adopt the bucket, with proof that it is this
            // create's, then settle its settings. Without a recorded `sent_at`, the time
            // this call started stands in for it. (Another project's bucket answers 403.)
            Err(e) if e.kind == ErrorKind::AlreadyExists => match self.get(name).await {
                Ok(Some(b)) if owned(&b, &req.token, req.sent_at.or(Some(started))) => b,
                Ok(Some(_)) => return Err(not_ours(&req.address, name)),
                Ok(_) | Err(_) => {
                    return Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "bucket name `{name}` is taken by another project (bucket names \
                             are global): choose another name ({})",
                            e.message
                        ),
                    ));
                }
            },
            Err(e) => return Err(e),
        };
        // Not every server applies settings sent with the insert (the emulator ignores
        // them); the PATCH is idempotent and makes sure.
        let after = self
            .patch(name, &req.inputs, &current, &[], Some(&req.token))
            .await?;
        Ok(CreateResponse {
            id: name.to_string(),
            completion: Completion::Ready(to_attrs(&after, &req.inputs)),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        validate(&req.inputs)?;
        let current = self.get(&req.id).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("bucket `{}` no longer exists", req.id),
            )
        })?;
        let clear: Vec<String> = req
            .changed
            .iter()
            .filter(|c| SETTINGS.contains(&c.as_str()))
            .cloned()
            .collect();
        let after = self
            .patch(&req.id, &req.inputs, &current, &clear, None)
            .await?;
        Ok(UpdateResponse {
            attributes: to_attrs(&after, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let mut emptied = false;
        loop {
            let r = self
                .clients
                .http
                .call(
                    Api::Storage,
                    Method::DELETE,
                    &format!("/storage/v1/b/{}", req.id),
                    None,
                    "storage.buckets.delete",
                )
                .await;
            match r {
                Ok(_) => return Ok(DeleteResponse { done: true }),
                Err(e) if e.kind == ErrorKind::NotFound => {
                    return Ok(DeleteResponse { done: true });
                }
                // Tried first, so an empty bucket (the usual case) costs no listing.
                Err(e)
                    if matches!(e.kind, ErrorKind::AlreadyExists | ErrorKind::Conflict)
                        && req.force
                        && !emptied =>
                {
                    self.empty(&req.id, &req.progress).await?;
                    emptied = true;
                }
                Err(e) if matches!(e.kind, ErrorKind::AlreadyExists | ErrorKind::Conflict) => {
                    return Err(ProviderError::new(
                        ErrorKind::Conflict,
                        format!(
                            "bucket `{}` still holds objects, and its delete may not delete them \
                             (force_destroy is off){} ({})",
                            req.id,
                            if emptied {
                                "; objects were written while it was being emptied"
                            } else {
                                ""
                            },
                            e.message
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn holds_contents(&self, req: ContentsRequest) -> Result<Option<bool>, ProviderError> {
        // One listing of page size 1, noncurrent versions included.
        let page = self.list_page(&req.id, 1).await?;
        Ok(Some(page.is_some_and(|items| !items.is_empty())))
    }
}

impl StorageBucket {
    /// Up to `max` objects of `bucket`, every generation (noncurrent ones too), as
    /// `(name, generation)`; `None` if the bucket does not exist.
    async fn list_page(
        &self,
        bucket: &str,
        max: u32,
    ) -> Result<Option<Vec<(String, String)>>, ProviderError> {
        let r = self
            .clients
            .http
            .call(
                Api::Storage,
                Method::GET,
                &format!(
                    "/storage/v1/b/{bucket}/o?versions=true&maxResults={max}\
                     &fields=items(name,generation)"
                ),
                None,
                "storage.objects.list",
            )
            .await;
        let page = match r {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let items = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|o| {
                        let name = o["name"].as_str()?.to_string();
                        // The generation is a string in the JSON API (an int64).
                        let generation = match &o["generation"] {
                            Json::String(g) => g.clone(),
                            Json::Number(n) => n.to_string(),
                            _ => String::new(),
                        };
                        Some((name, generation))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(items))
    }

    /// Deletes every object generation in `bucket`, a page (up to 1,000) at a time, listing
    /// from the start each time so objects written meanwhile go too. Asked for only
    /// through `force_destroy`.
    async fn empty(
        &self,
        bucket: &str,
        progress: &flyteinfra_core::Progress,
    ) -> Result<(), ProviderError> {
        let mut deleted = 0usize;
        let mut previous = Vec::new();
        loop {
            let items = self.list_page(bucket, 1000).await?.unwrap_or_default();
            if items.is_empty() {
                return Ok(());
            }
            // The same page twice: its deletes did not take, and listing again would spin.
            if items == previous {
                return Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!(
                        "emptying bucket `{bucket}`: {} object generations are still listed \
                         after being deleted",
                        items.len()
                    ),
                ));
            }
            previous.clone_from(&items);
            for (name, generation) in items {
                let mut path = format!("/storage/v1/b/{bucket}/o/{}", encode_segment(&name));
                if !generation.is_empty() {
                    path.push_str(&format!("?generation={generation}"));
                }
                let r = self
                    .clients
                    .http
                    .call(
                        Api::Storage,
                        Method::DELETE,
                        &path,
                        None,
                        "storage.objects.delete",
                    )
                    .await;
                match r {
                    // Gone already (deleted by someone else meanwhile): what we wanted.
                    Err(e) if e.kind == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                    Ok(_) => deleted += 1,
                }
            }
            progress.status(format!("emptying: {deleted} objects and versions deleted"));
        }
    }
}

/// `s` as one URL path segment: everything but RFC 3986's unreserved characters
/// percent-encoded (object names may hold `/`, spaces, anything UTF-8).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::requests as r;

    use super::*;
    use crate::testutil;

    const T: &str = "gcp_storage_bucket";

    fn inputs(name: &str) -> Attributes {
        let mut labels = BTreeMap::new();
        labels.insert("app".to_string(), Value::from("flyte"));
        attrs::attrs([
            ("name", name.into()),
            ("location", "us-central1".into()),
            ("uniform_bucket_level_access", true.into()),
            ("public_access_prevention", "enforced".into()),
            ("versioning", true.into()),
            ("lifecycle_delete_age_days", Value::Int(30)),
            ("labels", Value::Map(labels)),
        ])
    }

    #[tokio::test]
    async fn lifecycle_and_out_of_band_drift() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-bkt");
        let inp = inputs(&name);

        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(created.id, name);
        let Completion::Ready(a) = created.completion else {
            panic!("bucket create is synchronous")
        };
        let read = rt
            .read(r::refresh(T, &name, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, a);
        let mut want = inp.clone();
        want.insert("id".into(), name.clone().into());
        want.insert("self_link".into(), read["self_link"].clone());
        assert_eq!(read, want);
        assert!(read["self_link"].as_str().unwrap().contains(&name));

        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(name.as_str()));
        // A retried create adopts the bucket.
        let again = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(again.id, name);

        // Versioning turned off out of band is read as drift and corrected by update.
        c.http
            .call(
                Api::Storage,
                Method::PATCH,
                &format!("/storage/v1/b/{name}"),
                Some(&json!({"versioning": {"enabled": false}})),
                "test",
            )
            .await
            .unwrap();
        let drift = rt
            .read(r::refresh(T, &name, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(drift["versioning"], Value::Bool(false));
        let fixed = rt
            .update(r::update(T, &name, &drift, &inp, &["versioning"]))
            .await
            .unwrap();
        assert_eq!(fixed.attributes["versioning"], Value::Bool(true));

        // An update: labels replaced, lifecycle no longer managed and cleared.
        let mut new = inp.clone();
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), Value::from("ml"));
        new.insert("labels".into(), Value::Map(labels.clone()));
        new.remove("lifecycle_delete_age_days");
        new.insert("versioning".into(), false.into());
        let up = rt
            .update(r::update(
                T,
                &name,
                &fixed.attributes,
                &new,
                &["labels", "lifecycle_delete_age_days", "versioning"],
            ))
            .await
            .unwrap();
        assert_eq!(up.attributes["labels"], Value::Map(labels));
        assert_eq!(up.attributes["versioning"], Value::Bool(false));
        assert!(!up.attributes.contains_key("lifecycle_delete_age_days"));
        let imported = rt
            .read(r::read(T, &name))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(imported["lifecycle_delete_age_days"], Value::Null);
        assert_eq!(imported["uniform_bucket_level_access"], Value::Bool(true));

        let d = r::delete(T, &name, &up.attributes);
        assert!(rt.delete(d.clone()).await.unwrap().done);
        assert!(rt.delete(d).await.unwrap().done);
        assert!(
            rt.read(r::read(T, &name))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(rt.find(r::find(T, &inp, "tok")).await.unwrap().id.is_none());
    }

    async fn upload(bucket: &str, name: &str) {
        let url = format!(
            "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
            testutil::storage_url(),
            encode_segment(name)
        );
        let resp = reqwest::Client::new()
            .post(url)
            .body("data")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    }

    async fn holds(rt: &Arc<dyn ResourceType>, name: &str) -> Option<bool> {
        rt.holds_contents(r::contents(T, name, &Attributes::new()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_bucket_with_objects_is_emptied_only_when_forced() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-full");
        let inp = attrs::attrs([("name", name.as_str().into())]);
        rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(holds(&rt, &name).await, Some(false));
        for object in ["obj", "raw/a b/c", "metadata/ü"] {
            upload(&name, object).await;
        }
        assert_eq!(holds(&rt, &name).await, Some(true));
        let err = rt
            .delete(r::delete(T, &name, &Attributes::new()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
        assert!(err.message.contains("still holds objects"), "{err}");
        assert!(err.message.contains("force_destroy"), "{err}");
        assert!(
            rt.read(r::read(T, &name))
                .await
                .unwrap()
                .attributes
                .is_some()
        );

        let forced = DeleteRequest {
            force: true,
            ..r::delete(T, &name, &Attributes::new())
        };
        assert!(rt.delete(forced.clone()).await.unwrap().done);
        assert!(
            rt.read(r::read(T, &name))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert_eq!(holds(&rt, &name).await, Some(false));
        assert!(rt.delete(forced).await.unwrap().done);
    }

    /// A Cloud Storage JSON API call that must succeed.
    async fn storage_call(
        c: &GcpClients,
        method: Method,
        path: String,
        body: Option<Json>,
    ) -> Json {
        c.http
            .call(Api::Storage, method, &path, body.as_ref(), "test")
            .await
            .unwrap()
    }

    /// Inserts bucket `name` with versioning on, as a test's own fixture.
    async fn insert_versioned(c: &GcpClients, name: &str) {
        storage_call(
            c,
            Method::POST,
            format!("/storage/v1/b?project={}", testutil::PROJECT),
            Some(json!({"name": name, "versioning": {"enabled": true}})),
        )
        .await;
    }

    /// Every generation of every object in `bucket` (fake-gcs-server), as (name, generation).
    async fn generations(c: &GcpClients, bucket: &str) -> Vec<(String, String)> {
        let page = c
            .http
            .call(
                Api::Storage,
                Method::GET,
                &format!("/storage/v1/b/{bucket}/o?versions=true"),
                None,
                "test",
            )
            .await
            .unwrap();
        page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|o| {
                        let s = |k: &str| o[k].as_str().unwrap_or_default().to_string();
                        (s("name"), s("generation"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Against fake-gcs-server, which keeps noncurrent generations (gcp-storage-emulator
    /// does not): a bucket whose every object was deleted still holds their noncurrent
    /// generations, and those are contents. (fake-gcs-server v1.54 ignores `generation`
    /// on delete, so emptying such a bucket is tested against the double below.)
    #[tokio::test]
    async fn noncurrent_generations_are_contents() {
        let c = testutil::versioning_clients().await;
        let bucket = StorageBucket {
            clients: c.clone(),
            schema: schema(),
        };
        let name = testutil::unique("flyte-versions");
        let call =
            |method: Method, path: String, body: Option<Json>| storage_call(&c, method, path, body);
        insert_versioned(&c, &name).await;
        let probe = r::contents(T, &name, &Attributes::new());
        assert_eq!(
            bucket.holds_contents(probe.clone()).await.unwrap(),
            Some(false)
        );
        let object = format!("/storage/v1/b/{name}/o/{}", encode_segment("raw/a b"));
        call(
            Method::POST,
            format!(
                "/upload/storage/v1/b/{name}/o?uploadType=media&name={}",
                encode_segment("raw/a b")
            ),
            Some(json!("1")),
        )
        .await;
        call(Method::DELETE, object, None).await;
        let listed = call(Method::GET, format!("/storage/v1/b/{name}/o"), None).await;
        assert!(
            listed["items"].as_array().is_none_or(Vec::is_empty),
            "{listed}"
        );
        assert_eq!(generations(&c, &name).await.len(), 1);
        assert_eq!(bucket.holds_contents(probe).await.unwrap(), Some(true));
    }

    /// A versioned bucket holding live objects, noncurrent generations of overwritten
    /// objects and of deleted ones, more than one listing page in all: refused without
    /// force_destroy, emptied of every generation and deleted with it. Against the double's
    /// Cloud Storage subset: neither emulator can delete a noncurrent generation.
    #[tokio::test]
    async fn every_generation_goes_when_forced() {
        let c = testutil::generations_clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-generations");
        let call =
            |method: Method, path: String, body: Option<Json>| storage_call(&c, method, path, body);
        insert_versioned(&c, &name).await;
        let put = |object: String| {
            call(
                Method::POST,
                format!(
                    "/upload/storage/v1/b/{name}/o?uploadType=media&name={}",
                    encode_segment(&object)
                ),
                Some(json!("x")),
            )
        };
        // 1,200 live objects (two pages of the emptying's listing) ...
        for i in 0..1200 {
            put(format!("raw/{i:04}")).await;
        }
        // ... one overwritten twice (two noncurrent generations) ...
        for _ in 0..2 {
            put("metadata/a b".into()).await;
        }
        // ... and one deleted (only its noncurrent generation is left).
        put("gone".into()).await;
        call(
            Method::DELETE,
            format!("/storage/v1/b/{name}/o/{}", encode_segment("gone")),
            None,
        )
        .await;
        let page = |versions: bool| {
            call(
                Method::GET,
                format!("/storage/v1/b/{name}/o?versions={versions}&maxResults=1000"),
                None,
            )
        };
        assert!(page(false).await["nextPageToken"].is_string());
        assert_eq!(holds(&rt, &name).await, Some(true));

        let err = rt
            .delete(r::delete(T, &name, &Attributes::new()))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict, "{err}");
        assert!(err.message.contains("force_destroy"), "{err}");
        // Refused: nothing was deleted.
        let shared = testutil::double().shared();
        let count = |shared: &flyteinfra_gcp_double::Shared| {
            shared.lock().gcs.get(&name).map(|b| b.generations())
        };
        assert_eq!(count(shared), Some(1200 + 2 + 1));

        let forced = DeleteRequest {
            force: true,
            ..r::delete(T, &name, &Attributes::new())
        };
        assert!(rt.delete(forced).await.unwrap().done);
        assert_eq!(count(shared), None, "the bucket is gone");
        assert_eq!(holds(&rt, &name).await, Some(false));
    }

    #[test]
    fn object_names_are_one_path_segment() {
        assert_eq!(encode_segment("raw/a b/ü~x.y"), "raw%2Fa%20b%2F%C3%BC~x.y");
    }

    /// Inserts a bucket without flyteinfra's label, as someone else (or a run killed before
    /// its PATCH) would; with `label`, one label of its own too.
    async fn insert_unlabelled(c: &GcpClients, name: &str, label: Option<(&str, &str)>) {
        let b = c
            .http
            .call(
                Api::Storage,
                Method::POST,
                &format!("/storage/v1/b?project={}", c.project),
                Some(&json!({"name": name})),
                "test",
            )
            .await
            .unwrap();
        assert!(b["timeCreated"].is_string(), "{b}");
        if let Some((k, v)) = label {
            c.http
                .call(
                    Api::Storage,
                    Method::PATCH,
                    &format!("/storage/v1/b/{name}"),
                    Some(&json!({"labels": {k: v}})),
                    "test",
                )
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_bucket_without_proof_of_ownership_is_never_adopted() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-theirs");
        insert_unlabelled(&c, &name, Some(("owner", "them"))).await;
        let inp = inputs(&name);
        // The intent was sent well after the bucket was made (beyond the clock-skew margin).
        let later = SystemTime::now() + CLOCK_SKEW_MARGIN + Duration::from_secs(60);
        let create = CreateRequest {
            sent_at: Some(later),
            ..r::create(T, &inp, "fi-abcdef01-3")
        };
        let err = rt.create(create).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::AlreadyExists, "{err}");
        assert!(
            err.message.contains(&format!(
                "run `flyteinfra import gcp_storage_bucket.test {name}`"
            )) && err
                .message
                .contains("already exists and is not flyteinfra's"),
            "{err}"
        );
        // Nothing was changed on it.
        let b = rt
            .read(r::read(T, &name))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(b["versioning"], Value::Bool(false));
        let mut theirs = BTreeMap::new();
        theirs.insert("owner".to_string(), Value::from("them"));
        assert_eq!(b["labels"], Value::Map(theirs));
        let find = FindRequest {
            sent_at: Some(later),
            ..r::find(T, &inp, "fi-abcdef01-3")
        };
        assert_eq!(rt.find(find).await.unwrap().id, None);
        // No sent_at recorded: no proof by time either.
        let find = FindRequest {
            sent_at: None,
            ..r::find(T, &inp, "fi-abcdef01-3")
        };
        assert_eq!(rt.find(find).await.unwrap().id, None);
        rt.delete(r::delete(T, &name, &Attributes::new()))
            .await
            .unwrap();
    }

    /// A run killed after the insert and before its labels landed (the emulator ignores
    /// the insert's labels, so the window is real here): the bucket was made after the
    /// intent was sent, so it is found and adopted, and the create then labels it.
    #[tokio::test]
    async fn an_unlabelled_bucket_made_after_the_intent_was_sent_is_adopted() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("flyte-killed");
        let direct = StorageBucket {
            clients: c.clone(),
            schema: schema(),
        };
        // Whole seconds, as the intent journal records it.
        let sent = SystemTime::UNIX_EPOCH
            + Duration::from_secs(
                SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            );
        insert_unlabelled(&c, &name, None).await;
        let inp = inputs(&name);
        let token = "fi-abcdef01-4";
        let find = FindRequest {
            sent_at: Some(sent),
            ..r::find(T, &inp, token)
        };
        assert_eq!(rt.find(find).await.unwrap().id.as_deref(), Some(&*name));
        let create = CreateRequest {
            sent_at: Some(sent),
            ..r::create(T, &inp, token)
        };
        let Completion::Ready(a) = rt.create(create).await.unwrap().completion else {
            panic!("bucket create is synchronous")
        };
        assert_eq!(a["labels"], inp["labels"]);
        let raw = direct.get(&name).await.unwrap().unwrap();
        assert_eq!(raw["labels"][TOKEN_LABEL], json!(token));
        // Now labelled, it is found by its token whenever the intent was sent.
        let find = FindRequest {
            sent_at: None,
            ..r::find(T, &inp, token)
        };
        assert_eq!(rt.find(find).await.unwrap().id.as_deref(), Some(&*name));
        // An update of the labels keeps the token label.
        let mut new = inp.clone();
        new.insert("labels".into(), Value::Map(BTreeMap::new()));
        let up = rt
            .update(r::update(T, &name, &a, &new, &["labels"]))
            .await
            .unwrap();
        assert_eq!(up.attributes["labels"], Value::Map(BTreeMap::new()));
        let raw = direct.get(&name).await.unwrap().unwrap();
        assert_eq!(raw["labels"][TOKEN_LABEL], json!(token));
        rt.delete(r::delete(T, &name, &Attributes::new()))
            .await
            .unwrap();
    }

    #[test]
    fn validation() {
        let mut i = inputs("b");
        i.insert("public_access_prevention".into(), "open".into());
        assert_eq!(validate(&i).unwrap_err().kind, ErrorKind::InvalidInput);
    }
}

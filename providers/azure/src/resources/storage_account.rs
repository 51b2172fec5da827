//! `azure_storage_account`: a StorageV2 account holding Flyte's blob containers.
//!
//! Account names are global (they become `{name}.blob.core.windows.net`) and allow only
//! lowercase letters and digits, so the name is `{name_prefix}{8 hex}` derived from the
//! create token and an attempt number, as flexible servers' names are but without a
//! hyphen: a taken name (`StorageAccountAlreadyTaken`, or an account of that name in our
//! group without our token, which is never `PUT` over) moves to the next attempt. The
//! token is also the `flyteinfra-token` tag: `find` walks the same names and takes the
//! first carrying it.
//!
//! A new account's `PUT` answers 202 with only a `Location` to poll: `wait_ready` follows
//! it, reads the account until it is `Succeeded`, then sets versioning and soft delete on
//! the account's blob service (`blobServices/default`, a resource of its own) when they
//! differ. Updates `PATCH` the account and `PUT` the blob service.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use serde_json::{Map, Value as Json, json};

use super::common::{
    Pending, WaitFor, by_provisioning_state, carries_token, id_value, managed_only, name_of,
    provisioning_state, resource_group_of, same_id, str_at, tags_keeping_token, tags_with_token,
    token_suffix, user_tags,
};
use crate::client::ArmClient;

/// The api-version of storage accounts, their blob services, containers and management
/// policies.
pub(crate) const API: &str = "2023-05-01";

/// Names tried before giving up when each is taken by someone else.
const NAME_ATTEMPTS: u32 = 5;

/// The length of the token-derived name suffix.
const SUFFIX_LEN: usize = 8;

const WHAT: &str = "storage account";

/// The inputs that live on the blob service rather than on the account.
const BLOB_SERVICE_FIELDS: [&str; 2] = ["versioning", "soft_delete_days"];

/// `azure_storage_account`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_storage_account",
        doc: "A StorageV2 storage account. Its name is `{name_prefix}{8 hex}`, derived from \
              flyteinfra's create token (account names are global); the token is kept in the \
              `flyteinfra-token` tag. Versioning and soft delete are set on its blob service.",
        fields: vec![
            Field::computed("id", "The account's resource id."),
            Field::computed("name", "The account name, `{name_prefix}{8 hex}`."),
            Field::computed(
                "blob_endpoint",
                "The blob endpoint, `https://{name}.blob.core.windows.net/`.",
            ),
            Field::computed("create_time", "When Azure created it (RFC 3339)."),
            Field::input("resource_group", "The resource group's name.")
                .required()
                .force_new(),
            Field::input(
                "name_prefix",
                "The name before the suffix: 3–16 lowercase letters and digits.",
            )
            .required()
            .force_new(),
            Field::input("location", "The location, such as `eastus`.")
                .required()
                .force_new(),
            Field::input("sku", "The redundancy SKU (`Standard_LRS`).").required(),
            Field::input("https_only", "Refuse plain HTTP requests."),
            Field::input(
                "min_tls_version",
                "The oldest TLS version accepted (`TLS1_2`).",
            ),
            Field::input(
                "allow_blob_public_access",
                "Whether containers may be made public.",
            ),
            Field::input(
                "shared_key_access",
                "Whether account keys (and SAS signed with them) are accepted; off = Entra ID \
                 only.",
            ),
            Field::input(
                "subnet_ids",
                "Subnets admitted through their `Microsoft.Storage` service endpoint. Setting \
                 this or `allow_ips` denies every other network (Azure services bypass).",
            ),
            Field::input("allow_ips", "Public IPs or CIDR ranges admitted."),
            Field::input("versioning", "Keep previous versions of blobs."),
            Field::input(
                "soft_delete_days",
                "Days deleted blobs and containers are kept (0 = off); the shorter of the two \
                 when they differ.",
            ),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        // Its containers hold the data (and are deleted first).
        holds_data: false,
        expected_create: Duration::from_secs(30),
        deletion_protection: None,
    }
}

/// `azure_storage_account` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(StorageAccount {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct StorageAccount {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

/// The account name for `token` at `attempt` (0 = first choice): letters and digits only.
pub(crate) fn account_name(prefix: &str, token: &str, attempt: u32) -> String {
    format!("{prefix}{}", token_suffix(token, attempt))
}

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidInput, message)
}

/// Checks what Azure would refuse only after a call (or, for the prefix, in the name).
fn validate(inputs: &Attributes) -> Result<(), ProviderError> {
    let prefix = attrs::s(inputs, "name_prefix")?;
    if !(3..=16).contains(&prefix.len())
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(invalid(format!(
            "{WHAT} `name_prefix` `{prefix}`: expected 3–16 lowercase letters and digits (the \
             name adds 8 more; account names allow nothing else)"
        )));
    }
    if let Some(d) = attrs::i(inputs, "soft_delete_days")
        && !(0..=365).contains(&d)
    {
        return Err(invalid(format!(
            "{WHAT} `soft_delete_days` {d}: expected 0 (off) to 365"
        )));
    }
    Ok(())
}

/// The network rules the inputs ask for: `None` when they set neither list (Azure's
/// default, every network admitted).
fn network_acls(inputs: &Attributes) -> Option<Json> {
    if !inputs.contains_key("subnet_ids") && !inputs.contains_key("allow_ips") {
        return None;
    }
    let vnets: Vec<Json> = attrs::strings(inputs, "subnet_ids")
        .into_iter()
        .map(|id| json!({"id": id, "action": "Allow"}))
        .collect();
    let ips: Vec<Json> = attrs::strings(inputs, "allow_ips")
        .into_iter()
        .map(|ip| json!({"value": ip, "action": "Allow"}))
        .collect();
    Some(json!({
        "bypass": "AzureServices",
        "defaultAction": "Deny",
        "virtualNetworkRules": vnets,
        "ipRules": ips,
    }))
}

/// The account properties the inputs set, for a create (`only` = `None`) or for the
/// changed fields `only` names.
fn account_properties(inputs: &Attributes, only: Option<&[String]>) -> Map<String, Json> {
    let wanted = |f: &str| only.is_none_or(|c| c.iter().any(|x| x == f));
    let mut p = Map::new();
    for (field, prop) in [
        ("https_only", "supportsHttpsTrafficOnly"),
        ("allow_blob_public_access", "allowBlobPublicAccess"),
        ("shared_key_access", "allowSharedKeyAccess"),
    ] {
        if wanted(field)
            && let Some(v) = attrs::b(inputs, field)
        {
            p.insert(prop.into(), json!(v));
        }
    }
    if wanted("min_tls_version")
        && let Some(v) = attrs::opt_s(inputs, "min_tls_version")
    {
        p.insert("minimumTlsVersion".into(), json!(v));
    }
    if (wanted("subnet_ids") || wanted("allow_ips"))
        && let Some(acls) = network_acls(inputs)
    {
        p.insert("networkAcls".into(), acls);
    }
    p
}

/// A retention policy for `days` (0 = off).
fn retention(days: i64) -> Json {
    if days > 0 {
        json!({"enabled": true, "days": days})
    } else {
        json!({"enabled": false})
    }
}

/// The days a retention policy keeps deleted items (0 when off).
fn retention_days(policy: &Json) -> i64 {
    if policy["enabled"].as_bool() == Some(true) {
        policy["days"].as_i64().unwrap_or(0)
    } else {
        0
    }
}

/// The blob service's soft delete: the shorter of blob and container retention.
fn soft_delete_days(service: &Json) -> i64 {
    let p = &service["properties"];
    retention_days(&p["deleteRetentionPolicy"])
        .min(retention_days(&p["containerDeleteRetentionPolicy"]))
}

/// The `PUT` body of the blob service the inputs ask for when `current` differs from it
/// (`None`: nothing to change, or nothing managed). Every managed property is sent.
fn blob_service_change(inputs: &Attributes, current: &Json) -> Option<Json> {
    let p = &current["properties"];
    let mut props = Map::new();
    let mut differs = false;
    if let Some(v) = attrs::b(inputs, "versioning") {
        differs |= p["isVersioningEnabled"].as_bool().unwrap_or(false) != v;
        props.insert("isVersioningEnabled".into(), json!(v));
    }
    if let Some(d) = attrs::i(inputs, "soft_delete_days") {
        differs |= retention_days(&p["deleteRetentionPolicy"]) != d
            || retention_days(&p["containerDeleteRetentionPolicy"]) != d;
        props.insert("deleteRetentionPolicy".into(), retention(d));
        props.insert("containerDeleteRetentionPolicy".into(), retention(d));
    }
    differs.then(|| json!({ "properties": props }))
}

fn blob_service_path(account_id: &str) -> String {
    format!("{}/blobServices/default", account_id.trim_end_matches('/'))
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("{WHAT} `{id}` no longer exists"),
    )
}

/// Whether a failed `PUT` says the name is taken elsewhere in Azure.
fn name_taken(e: &ProviderError) -> bool {
    e.kind == ErrorKind::AlreadyExists || e.message.contains("StorageAccountAlreadyTaken")
}

/// The subnet ids of the account's rules, each in the prior inputs' spelling when it names
/// the same subnet, in their order when the set is the same.
fn subnet_ids(body: &Json, prior: Option<&Value>) -> Value {
    let prior_ids: Vec<&str> = prior
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let ids = body
        .pointer("/properties/networkAcls/virtualNetworkRules")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["id"].as_str())
        .map(|id| {
            prior_ids
                .iter()
                .find(|p| same_id(p, id))
                .map_or(id, |p| *p)
                .to_string()
        })
        .collect();
    attrs::unordered(ids, prior)
}

fn allow_ips(body: &Json, prior: Option<&Value>) -> Value {
    let ips = body
        .pointer("/properties/networkAcls/ipRules")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r["value"].as_str().map(str::to_string))
        .collect();
    attrs::unordered(ips, prior)
}

/// The account's attributes (before [`managed_only`]), without the blob service's.
fn account_attributes(id: &str, body: &Json, prior: &Attributes) -> Attributes {
    let mut a = Attributes::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_string(), v);
    };
    let s = |at: &str| Value::from(str_at(body, at));
    let name = str_at(body, "/name");
    put("id", id_value(str_at(body, "/id"), Some(&Value::from(id))));
    put("name", Value::from(name));
    let prefix = name
        .len()
        .checked_sub(SUFFIX_LEN)
        .and_then(|n| name.get(..n))
        .unwrap_or(name);
    put("name_prefix", Value::from(prefix));
    put("blob_endpoint", s("/properties/primaryEndpoints/blob"));
    put("create_time", s("/properties/creationTime"));
    // The group as the id spells it, or as the inputs did when they name the same one.
    let rg = resource_group_of(id);
    match prior.get("resource_group").and_then(Value::as_str) {
        Some(p) if name_of(p).eq_ignore_ascii_case(rg) => put("resource_group", Value::from(p)),
        _ => put("resource_group", Value::from(rg)),
    }
    let location = str_at(body, "/location");
    match attrs::opt_s(prior, "location") {
        Some(p) if p.eq_ignore_ascii_case(location) => put("location", Value::from(p)),
        _ => put("location", Value::from(location)),
    }
    put("sku", s("/sku/name"));
    let p = &body["properties"];
    // Absent properties read as Azure's defaults for them.
    let flag = |k: &str, default: bool| Value::Bool(p[k].as_bool().unwrap_or(default));
    put("https_only", flag("supportsHttpsTrafficOnly", true));
    put(
        "min_tls_version",
        Value::from(p["minimumTlsVersion"].as_str().unwrap_or("TLS1_0")),
    );
    put(
        "allow_blob_public_access",
        flag("allowBlobPublicAccess", false),
    );
    // `null` means allowed.
    put("shared_key_access", flag("allowSharedKeyAccess", true));
    put("subnet_ids", subnet_ids(body, prior.get("subnet_ids")));
    put("allow_ips", allow_ips(body, prior.get("allow_ips")));
    put("tags", user_tags(body));
    a
}

impl StorageAccount {
    /// The id of account `name` in the inputs' resource group (a group id is taken too).
    fn path(&self, inputs: &Attributes, name: &str) -> Result<String, ProviderError> {
        let rg = name_of(attrs::s(inputs, "resource_group")?);
        Ok(format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}",
            self.client.subscription_path()
        ))
    }

    fn create_body(inputs: &Attributes, token: &str) -> Result<Json, ProviderError> {
        Ok(json!({
            "kind": "StorageV2",
            "location": attrs::s(inputs, "location")?,
            "sku": { "name": attrs::s(inputs, "sku")? },
            "tags": tags_with_token(inputs, token),
            "properties": account_properties(inputs, None),
        }))
    }

    /// Sets versioning and soft delete on the blob service when they differ from the
    /// inputs.
    async fn match_blob_service(&self, id: &str, inputs: &Attributes) -> Result<(), ProviderError> {
        if !BLOB_SERVICE_FIELDS.iter().any(|f| inputs.contains_key(*f)) {
            return Ok(());
        }
        let path = blob_service_path(id);
        let current = self.client.get(&path, API).await?.unwrap_or(Json::Null);
        if let Some(body) = blob_service_change(inputs, &current) {
            self.client.put(&path, API, &body).await?;
        }
        Ok(())
    }

    /// Reads the account and (when managed, or on import) its blob service as attributes
    /// (before [`managed_only`]).
    async fn attributes(
        &self,
        id: &str,
        prior_inputs: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let Some(body) = self.client.get(id, API).await? else {
            return Ok(None);
        };
        let mut a = account_attributes(id, &body, prior_inputs);
        if (prior_inputs.is_empty()
            || BLOB_SERVICE_FIELDS
                .iter()
                .any(|f| prior_inputs.contains_key(*f)))
            && let Some(service) = self.client.get(&blob_service_path(id), API).await?
        {
            let versioning = service["properties"]["isVersioningEnabled"]
                .as_bool()
                .unwrap_or(false);
            a.insert("versioning".into(), Value::Bool(versioning));
            a.insert(
                "soft_delete_days".into(),
                Value::Int(soft_delete_days(&service)),
            );
        }
        Ok(Some(a))
    }

    async fn read_back(&self, id: &str, inputs: &Attributes) -> Result<Attributes, ProviderError> {
        let a = self.attributes(id, inputs).await?.ok_or_else(|| gone(id))?;
        Ok(managed_only(a, inputs, &self.schema))
    }

    fn waiter<'a>(&'a self, id: &'a str, progress: &'a Progress) -> WaitFor<'a> {
        WaitFor {
            client: &self.client,
            id,
            api: API,
            what: WHAT,
            expected: self.schema.expected_create,
            progress,
        }
    }
}

#[async_trait]
impl ResourceType for StorageAccount {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let a = self.attributes(&req.id, &req.prior_inputs).await?;
        Ok(ReadResponse {
            attributes: a.map(|a| managed_only(a, &req.prior_inputs, &self.schema)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let prefix = attrs::s(&req.inputs, "name_prefix")?;
        for attempt in 0..NAME_ATTEMPTS {
            let path = self.path(&req.inputs, &account_name(prefix, &req.token, attempt))?;
            if let Some(b) = self.client.get(&path, API).await?
                && carries_token(&b, &req.token)
            {
                let id = str_at(&b, "/id");
                return Ok(FindResponse {
                    id: Some(if id.is_empty() { path } else { id.to_string() }),
                });
            }
        }
        Ok(FindResponse { id: None })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let inputs = &req.inputs;
        validate(inputs)?;
        let prefix = attrs::s(inputs, "name_prefix")?;
        for attempt in 0..NAME_ATTEMPTS {
            let path = self.path(inputs, &account_name(prefix, &req.token, attempt))?;
            // PUT replaces: read first, and never send one over an account without our token.
            if let Some(existing) = self.client.get(&path, API).await? {
                if !carries_token(&existing, &req.token) {
                    continue;
                }
                // An earlier attempt of this create: `wait_ready` finishes it; a failed one
                // is provisioned again by a new PUT (as ARM does).
                if !matches!(provisioning_state(&existing), "Failed" | "Canceled") {
                    return Ok(CreateResponse {
                        id: path,
                        completion: Completion::InProgress,
                    });
                }
            }
            let body = Self::create_body(inputs, &req.token)?;
            match self.client.put(&path, API, &body).await {
                Ok(answer) => {
                    // A new account answers 202 with only a `Location` to follow.
                    self.pending.put(&path, answer.operation);
                    req.progress.status("Creating");
                    return Ok(CreateResponse {
                        id: path,
                        completion: Completion::InProgress,
                    });
                }
                // Taken elsewhere in Azure (names are global): the next name.
                Err(e) if name_taken(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ProviderError::new(
            ErrorKind::AlreadyExists,
            format!(
                "every {WHAT} name tried for prefix `{prefix}` ({NAME_ATTEMPTS} attempts) is \
                 taken; choose another `name_prefix`"
            ),
        ))
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        self.waiter(&req.id, &req.progress)
            .ready(&self.pending, by_provisioning_state)
            .await?;
        self.match_blob_service(&req.id, &req.inputs).await?;
        self.read_back(&req.id, &req.inputs).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        validate(&req.inputs)?;
        let current = self
            .client
            .get(&req.id, API)
            .await?
            .ok_or_else(|| gone(&req.id))?;
        let changed = |f: &str| req.changed.iter().any(|c| c == f);
        let mut body = Map::new();
        if changed("sku") {
            body.insert(
                "sku".into(),
                json!({ "name": attrs::s(&req.inputs, "sku")? }),
            );
        }
        if changed("tags") {
            body.insert("tags".into(), tags_keeping_token(&req.inputs, &current));
        }
        let props = account_properties(&req.inputs, Some(&req.changed));
        if !props.is_empty() {
            body.insert("properties".into(), Json::Object(props));
        }
        if !body.is_empty() {
            let answer = self.client.patch(&req.id, API, &Json::Object(body)).await?;
            if answer.operation.is_some() {
                self.waiter(&req.id, &req.progress)
                    .updated(answer.operation, by_provisioning_state)
                    .await?;
            }
        }
        if BLOB_SERVICE_FIELDS.iter().any(|f| changed(f)) {
            self.match_blob_service(&req.id, &req.inputs).await?;
        }
        Ok(UpdateResponse {
            attributes: self.read_back(&req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        match self.client.delete(&req.id, API).await? {
            None => Ok(DeleteResponse { done: true }),
            // Synchronous: gone when the answer comes.
            Some(answer) if answer.operation.is_none() => Ok(DeleteResponse { done: true }),
            Some(answer) => {
                self.pending.put(&req.id, answer.operation);
                Ok(DeleteResponse { done: false })
            }
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        self.waiter(&req.id, &req.progress)
            .gone(&self.pending)
            .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::{self, LOCATION, SUBSCRIPTION};
    use flyteinfra_azure_double::AzureDouble;
    use flyteinfra_core::requests;

    const T: &str = "azure_storage_account";
    const ALLOWED_IP: &str = "203.0.113.7";

    /// A resource group and a subnet with the `Microsoft.Storage` service endpoint, planted
    /// in the double: `(group name, subnet id)`.
    pub(crate) fn plant_group(d: &AzureDouble) -> (String, String) {
        let rg = testutil::unique("rg-st");
        let rg_id = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}");
        let vnet = format!("{rg_id}/providers/Microsoft.Network/virtualNetworks/vnet");
        let subnet = format!("{vnet}/subnets/nodes");
        let mut w = d.shared().lock();
        w.put_raw(
            &rg_id,
            json!({"name": rg, "type": "Microsoft.Resources/resourceGroups",
            "location": LOCATION, "tags": {}, "properties": {"provisioningState": "Succeeded"}}),
        );
        w.put_raw(
            &vnet,
            json!({"name": "vnet", "type": "Microsoft.Network/virtualNetworks",
            "location": LOCATION, "tags": {}, "properties": {"provisioningState": "Succeeded",
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}}),
        );
        w.put_raw(
            &subnet,
            json!({"name": "nodes", "type": "Microsoft.Network/virtualNetworks/subnets",
            "properties": {"provisioningState": "Succeeded", "addressPrefix": "10.0.1.0/24",
            "serviceEndpoints": [{"service": "Microsoft.Storage", "locations": [LOCATION]}]}}),
        );
        (rg, subnet)
    }

    /// A provisioned account planted in the double as someone made it (no token): its id.
    pub(crate) fn plant_account(d: &AzureDouble) -> String {
        let (rg, _) = plant_group(d);
        let name = testutil::unique("sa").replace('-', "");
        let id = format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.Storage/\
             storageAccounts/{name}"
        );
        d.shared()
            .lock()
            .put_raw(&id, account_body(&name, json!({})));
        id
    }

    fn account_body(name: &str, tags: Json) -> Json {
        json!({"name": name, "type": "Microsoft.Storage/storageAccounts", "location": LOCATION,
            "tags": tags, "sku": {"name": "Standard_LRS", "tier": "Standard"},
            "kind": "StorageV2", "properties": {"provisioningState": "Succeeded",
            "creationTime": "2025-01-01T00:00:00Z", "allowSharedKeyAccess": true}})
    }

    /// A prefix of letters and digits unique in this process.
    fn prefix() -> String {
        testutil::unique("st").replace('-', "")
    }

    fn inputs(rg: &str, subnet: &str, prefix: &str) -> Attributes {
        attrs::attrs([
            ("resource_group", rg.into()),
            ("name_prefix", prefix.into()),
            ("location", LOCATION.into()),
            ("sku", "Standard_LRS".into()),
            ("https_only", true.into()),
            ("min_tls_version", "TLS1_2".into()),
            ("allow_blob_public_access", false.into()),
            ("shared_key_access", false.into()),
            ("subnet_ids", Value::List(vec![subnet.into()])),
            ("allow_ips", Value::List(vec![ALLOWED_IP.into()])),
            ("versioning", true.into()),
            ("soft_delete_days", Value::Int(7)),
            (
                "tags",
                Value::Map([("team".to_string(), "ml".into())].into()),
            ),
        ])
    }

    async fn refresh(rt: &Arc<dyn ResourceType>, id: &str, ins: &Attributes) -> Attributes {
        rt.read(requests::refresh(T, id, ins))
            .await
            .unwrap()
            .attributes
            .unwrap()
    }

    fn calls(c: &ArmClient, op: &str) -> u64 {
        c.calls_by_operation().get(op).copied().unwrap_or(0)
    }

    /// Deletes, and checks it is gone and a second delete is success.
    async fn delete_account(rt: &Arc<dyn ResourceType>, id: &str, a: &Attributes) {
        if !rt.delete(requests::delete(T, id, a)).await.unwrap().done {
            rt.wait_deleted(requests::wait(T, id, a)).await.unwrap();
        }
        assert!(
            rt.read(requests::read(T, id))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(rt.delete(requests::delete(T, id, a)).await.unwrap().done);
    }

    #[tokio::test]
    async fn storage_account_lifecycle() {
        let (c, d) = (testutil::client(), testutil::double());
        let (rg, subnet) = plant_group(d);
        let rt = build(&c);
        let prefix = prefix();
        let ins = inputs(&rg, &subnet, &prefix);
        let token = testutil::unique("fi-tok");

        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        let name = account_name(&prefix, &token, 0);
        assert_eq!(name.len(), prefix.len() + 8);
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric()), "{name}");
        assert!(id.ends_with(&format!("/storageAccounts/{name}")), "{id}");
        // The 202 named only a `Location`, remembered for the wait.
        assert_eq!(
            d.shared().lock().resource(&id).unwrap()["properties"]["provisioningState"],
            "Creating"
        );
        let ready = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        let polls: u64 = c
            .calls_by_operation()
            .iter()
            .filter(|(k, _)| k.starts_with("creating storage account") && k.ends_with("(poll)"))
            .map(|(_, n)| n)
            .sum();
        assert!(polls >= 1, "{:?}", c.calls_by_operation());

        let a = refresh(&rt, &id, &ins).await;
        assert_eq!(a, ready);
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        assert_eq!(a["id"], Value::from(id.as_str()));
        assert_eq!(a["name"], Value::from(name.as_str()));
        assert_eq!(
            a["blob_endpoint"],
            Value::from(format!("https://{name}.blob.core.windows.net/"))
        );
        assert!(
            a["create_time"].as_str().is_some_and(|t| t.contains('T')),
            "{a:?}"
        );
        {
            let w = d.shared().lock();
            let acct = w.resource(&id).unwrap();
            let acls = &acct["properties"]["networkAcls"];
            assert_eq!(acls["defaultAction"], "Deny");
            assert_eq!(acls["bypass"], "AzureServices");
            assert_eq!(acct["kind"], "StorageV2");
            let bs = w.resource(&blob_service_path(&id)).unwrap();
            assert_eq!(bs["properties"]["isVersioningEnabled"], true);
            for p in ["deleteRetentionPolicy", "containerDeleteRetentionPolicy"] {
                assert_eq!(
                    bs["properties"][p],
                    json!({"enabled": true, "days": 7}),
                    "{p}"
                );
            }
        }
        // An import sees every field.
        let imported = rt
            .read(requests::read(T, &id))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(imported, a);

        // Found by its token, only by it; a retried create adopts it without a PUT.
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other = rt.find(requests::find(T, &ins, "fi-other")).await.unwrap();
        assert_eq!(other.id, None);
        let puts = calls(&c, "PUT storageaccounts");
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(calls(&c, "PUT storageaccounts"), puts);

        // IPs and tags by PATCH (the token tag survives); versioning off on the blob service.
        let mut new = ins.clone();
        new.insert(
            "allow_ips".into(),
            Value::List(vec!["198.51.100.0/24".into(), ALLOWED_IP.into()]),
        );
        new.insert(
            "tags".into(),
            Value::Map([("env".to_string(), "prod".into())].into()),
        );
        new.insert("versioning".into(), false.into());
        let (patches, blob_puts) = (
            calls(&c, "PATCH storageaccounts"),
            calls(&c, "PUT blobservices"),
        );
        let up = rt
            .update(requests::update(
                T,
                &id,
                &a,
                &new,
                &["allow_ips", "tags", "versioning"],
            ))
            .await
            .unwrap();
        assert_eq!(calls(&c, "PATCH storageaccounts"), patches + 1);
        assert_eq!(calls(&c, "PUT blobservices"), blob_puts + 1);
        assert_eq!(calls(&c, "PUT storageaccounts"), puts);
        let a2 = refresh(&rt, &id, &new).await;
        assert_eq!(a2, up.attributes);
        for (k, v) in &new {
            assert_eq!(a2.get(k), Some(v), "{k}");
        }
        {
            let w = d.shared().lock();
            let acct = w.resource(&id).unwrap();
            assert_eq!(acct["tags"]["flyteinfra-token"], json!(token));
            assert_eq!(
                acct["properties"]["networkAcls"]["ipRules"]
                    .as_array()
                    .unwrap()
                    .len(),
                2
            );
            assert_eq!(
                acct["properties"]["networkAcls"]["virtualNetworkRules"][0]["id"],
                json!(subnet)
            );
            let bs = w.resource(&blob_service_path(&id)).unwrap();
            assert_eq!(bs["properties"]["isVersioningEnabled"], false);
            assert_eq!(bs["properties"]["deleteRetentionPolicy"]["days"], 7);
        }
        let found = rt.find(requests::find(T, &new, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));

        delete_account(&rt, &id, &a2).await;
    }

    #[tokio::test]
    async fn storage_taken_name_moves_to_the_next_suffix() {
        let d = AzureDouble::start();
        let c = testutil::client_of(&d);
        let (rg, subnet) = plant_group(&d);
        let rt = build(&c);
        let prefix = prefix();
        let token = testutil::unique("fi-tok");
        let first = account_name(&prefix, &token, 0);
        d.shared()
            .lock()
            .knobs
            .taken_storage_names
            .push(first.clone());
        let ins = inputs(&rg, &subnet, &prefix);
        let id = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        let second = account_name(&prefix, &token, 1);
        assert!(id.ends_with(&format!("/{second}")), "{id}");
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // A retry walks the same names and adopts the second.
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(a["name"], Value::from(second.as_str()));
        delete_account(&rt, &id, &a).await;
    }

    #[tokio::test]
    async fn storage_foreign_account_in_our_group_is_never_put_over() {
        let (c, d) = (testutil::client(), testutil::double());
        let (rg, subnet) = plant_group(d);
        let rt = build(&c);
        let prefix = prefix();
        let token = testutil::unique("fi-tok");
        let first = account_name(&prefix, &token, 0);
        let foreign = format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}/providers/Microsoft.Storage/\
             storageAccounts/{first}"
        );
        d.shared()
            .lock()
            .put_raw(&foreign, account_body(&first, json!({"owner": "someone"})));
        let before = d.shared().lock().resource(&foreign).unwrap();

        let ins = inputs(&rg, &subnet, &prefix);
        let puts = calls(&c, "PUT storageaccounts");
        let id = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        assert!(!same_id(&id, &foreign), "{id}");
        assert!(id.ends_with(&account_name(&prefix, &token, 1)), "{id}");
        assert_eq!(
            calls(&c, "PUT storageaccounts"),
            puts + 1,
            "one PUT, not over it"
        );
        assert_eq!(d.shared().lock().resource(&foreign).unwrap(), before);
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        delete_account(&rt, &id, &a).await;
        assert_eq!(d.shared().lock().resource(&foreign).unwrap(), before);
    }

    #[tokio::test]
    async fn storage_account_drift_shows_on_read() {
        let (c, d) = (testutil::client(), testutil::double());
        let (rg, subnet) = plant_group(d);
        let rt = build(&c);
        let ins = inputs(&rg, &subnet, &prefix());
        let id = rt
            .create(requests::create(T, &ins, &testutil::unique("fi-tok")))
            .await
            .unwrap()
            .id;
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(a["min_tls_version"], Value::from("TLS1_2"));
        assert_eq!(a["shared_key_access"], Value::Bool(false));
        {
            let mut w = d.shared().lock();
            let p = &mut w.resource_mut(&id).unwrap()["properties"];
            p["minimumTlsVersion"] = json!("TLS1_0");
            p["allowSharedKeyAccess"] = json!(true);
            let bs = w.resource_mut(&blob_service_path(&id)).unwrap();
            bs["properties"]["containerDeleteRetentionPolicy"] = json!({"enabled": false});
        }
        let now = refresh(&rt, &id, &ins).await;
        assert_eq!(now["min_tls_version"], Value::from("TLS1_0"));
        assert_eq!(now["shared_key_access"], Value::Bool(true));
        assert_eq!(now["soft_delete_days"], Value::Int(0));
        assert_eq!(now["versioning"], Value::Bool(true));
        // An update puts them back.
        let changed = ["min_tls_version", "shared_key_access", "soft_delete_days"];
        let back = rt
            .update(requests::update(T, &id, &now, &ins, &changed))
            .await
            .unwrap()
            .attributes;
        assert_eq!(back, a);
        delete_account(&rt, &id, &back).await;
    }

    #[test]
    fn storage_account_names_and_checks() {
        let a = account_name("flyte", "fi-abc-1", 0);
        assert_eq!(a, account_name("flyte", "fi-abc-1", 0));
        assert_eq!(a.len(), "flyte".len() + 8);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, account_name("flyte", "fi-abc-1", 1));
        let with = |prefix: &str, days: i64| {
            attrs::attrs([
                ("name_prefix", prefix.into()),
                ("soft_delete_days", Value::Int(days)),
            ])
        };
        assert!(validate(&with("flyte01", 7)).is_ok());
        for bad in ["ab", "Flyte", "fly-te", "a234567890123456x"] {
            let e = validate(&with(bad, 7)).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad}");
        }
        assert!(validate(&with("flyte", 366)).is_err());
        assert!(validate(&with("flyte", 0)).is_ok());
        // No network rules unless asked; asked, everything else is denied.
        assert_eq!(network_acls(&Attributes::new()), None);
        let ips = attrs::attrs([("allow_ips", Value::List(vec![ALLOWED_IP.into()]))]);
        let acls = network_acls(&ips).unwrap();
        assert_eq!(acls["defaultAction"], "Deny");
        assert_eq!(
            acls["ipRules"],
            json!([{"value": ALLOWED_IP, "action": "Allow"}])
        );
        assert_eq!(acls["virtualNetworkRules"], json!([]));
        // The blob service changes only when it differs.
        let svc = json!({"properties": {"isVersioningEnabled": true,
            "deleteRetentionPolicy": {"enabled": true, "days": 7},
            "containerDeleteRetentionPolicy": {"enabled": true, "days": 7}}});
        let want = attrs::attrs([
            ("versioning", true.into()),
            ("soft_delete_days", Value::Int(7)),
        ]);
        assert_eq!(blob_service_change(&want, &svc), None);
        let off = attrs::attrs([("soft_delete_days", Value::Int(0))]);
        let change = blob_service_change(&off, &svc).unwrap();
        assert_eq!(
            change["properties"]["deleteRetentionPolicy"],
            json!({"enabled": false})
        );
        assert_eq!(soft_delete_days(&svc), 7);
        assert!(!schema().holds_data && schema().deletion_protection.is_none());
    }
}

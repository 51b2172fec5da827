//! `azure_postgresql_flexible_server`: Azure Database for PostgreSQL, on a delegated subnet.
//!
//! Server names are global (they become `{name}.postgres.database.azure.com`), so the name
//! is `{name_prefix}-{8 hex}` derived from the create token and an attempt number, exactly
//! like Cloud SQL's instance names: a taken name (`ServerNameAlreadyExists`, or a server of
//! that name in our group without our token) moves to the next attempt. The token is also
//! the `flyteinfra-token` tag: `find` walks the same names and takes the first carrying it.
//!
//! The administrator password is write-only: Azure never returns it, so reads echo the
//! last applied value (never drift) and no error carries it.

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
    Pending, Readiness, WaitFor, carries_token, id_value, managed_only, name_of,
    provisioning_state, resource_group_of, str_at, tags_keeping_token, tags_with_token,
    token_suffix, user_tags,
};
use crate::client::ArmClient;

/// The api-version of flexible servers, their databases and configurations.
pub(crate) const API: &str = "2024-08-01";

/// Names tried before giving up when each is taken by someone else.
const NAME_ATTEMPTS: u32 = 5;

/// The server configuration behind `require_secure_transport`.
const SECURE_TRANSPORT: &str = "require_secure_transport";

const WHAT: &str = "PostgreSQL flexible server";

/// `azure_postgresql_flexible_server`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_postgresql_flexible_server",
        doc: "An Azure Database for PostgreSQL flexible server on a delegated subnet (no public \
              access). Its name is `{name_prefix}-{8 hex}`, derived from flyteinfra's create \
              token (server names are global); the token is kept in the `flyteinfra-token` tag.",
        fields: vec![
            Field::computed("id", "The server's resource id."),
            Field::computed("name", "The server name, `{name_prefix}-{8 hex}`."),
            Field::computed(
                "fqdn",
                "The host name, `{name}.postgres.database.azure.com`.",
            ),
            Field::computed("state", "The server state (`Ready`)."),
            Field::computed("create_time", "When Azure created it (RFC 3339)."),
            Field::input("resource_group", "The resource group's name.")
                .required()
                .force_new(),
            Field::input(
                "name_prefix",
                "The name before the suffix (lowercase letters, digits, hyphens).",
            )
            .required()
            .force_new(),
            Field::input("location", "The location, such as `eastus`.")
                .required()
                .force_new(),
            Field::input("version", "The PostgreSQL major version (`16`).")
                .required()
                .force_new(),
            Field::input("sku_name", "The compute size (`Standard_D2s_v3`).").required(),
            Field::input(
                "sku_tier",
                "`Burstable`, `GeneralPurpose` or `MemoryOptimized`.",
            )
            .required(),
            Field::input(
                "storage_gb",
                "Storage in GiB (32, 64, 128, …); it can only grow.",
            )
            .required(),
            Field::input(
                "backup_retention_days",
                "Days automated backups are kept (7–35).",
            ),
            Field::input("administrator_login", "The administrator's user name.")
                .required()
                .force_new(),
            Field::input(
                "administrator_password",
                "The administrator's password (write-only: Azure never returns it).",
            )
            .required()
            .sensitive(),
            Field::input(
                "delegated_subnet_id",
                "The subnet delegated to `Microsoft.DBforPostgreSQL/flexibleServers`.",
            )
            .required()
            .force_new(),
            Field::input(
                "private_dns_zone_id",
                "The private DNS zone (`….postgres.database.azure.com`) linked to the subnet's \
                 network.",
            )
            .required()
            .force_new(),
            Field::input(
                "require_secure_transport",
                "Refuse unencrypted connections (default true).",
            ),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(360),
        // The lock is its own resource (`azure_management_lock`).
        deletion_protection: None,
    }
}

/// `azure_postgresql_flexible_server` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(FlexibleServer {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct FlexibleServer {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

/// The server name for `token` at `attempt` (0 = first choice), as Cloud SQL's.
pub(crate) fn server_name(prefix: &str, token: &str, attempt: u32) -> String {
    format!("{prefix}-{}", token_suffix(token, attempt))
}

/// Ready when `properties.state` is; a failed provisioning or a dropping/disabled server
/// will never get there.
fn readiness(body: &Json) -> Readiness {
    let state = str_at(body, "/properties/state");
    match (provisioning_state(body), state) {
        (p @ ("Failed" | "Canceled"), _) => {
            Readiness::Failed(format!("its provisioning state is `{p}`"))
        }
        (_, "Ready") => Readiness::Ready,
        (_, s @ ("Disabled" | "Dropping")) => Readiness::Failed(format!("its state is `{s}`")),
        (p, "") => Readiness::Working(p.to_string()),
        (_, s) => Readiness::Working(s.to_string()),
    }
}

/// The inputs' `require_secure_transport` (default on).
fn secure_wanted(inputs: &Attributes) -> bool {
    attrs::b(inputs, "require_secure_transport").unwrap_or(true)
}

fn int(inputs: &Attributes, key: &str) -> Result<i64, ProviderError> {
    attrs::i(inputs, key).ok_or_else(|| {
        ProviderError::new(ErrorKind::InvalidInput, format!("input `{key}` is missing"))
    })
}

/// Removes the password from an error message, should Azure ever echo it.
fn scrub(mut e: ProviderError, inputs: &Attributes) -> ProviderError {
    if let Some(pw) = attrs::opt_secret(inputs, "administrator_password").filter(|p| !p.is_empty())
    {
        e.message = e.message.replace(pw, "(sensitive)");
    }
    e
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("{WHAT} `{id}` no longer exists"),
    )
}

impl FlexibleServer {
    /// The id of server `name` in the inputs' resource group (a group id is taken too).
    fn path(&self, inputs: &Attributes, name: &str) -> Result<String, ProviderError> {
        let rg = attrs::s(inputs, "resource_group")?;
        let rg = name_of(rg);
        Ok(format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name}",
            self.client.subscription_path()
        ))
    }

    fn create_body(inputs: &Attributes, token: &str) -> Result<Json, ProviderError> {
        let mut backup = json!({ "geoRedundantBackup": "Disabled" });
        if let Some(d) = attrs::i(inputs, "backup_retention_days") {
            backup["backupRetentionDays"] = json!(d);
        }
        Ok(json!({
            "location": attrs::s(inputs, "location")?,
            "tags": tags_with_token(inputs, token),
            "sku": { "name": attrs::s(inputs, "sku_name")?, "tier": attrs::s(inputs, "sku_tier")? },
            "properties": {
                "version": attrs::s(inputs, "version")?,
                "administratorLogin": attrs::s(inputs, "administrator_login")?,
                "administratorLoginPassword": attrs::secret(inputs, "administrator_password")?,
                "storage": { "storageSizeGB": int(inputs, "storage_gb")? },
                "backup": backup,
                "network": {
                    "delegatedSubnetResourceId": attrs::s(inputs, "delegated_subnet_id")?,
                    "privateDnsZoneArmResourceId": attrs::s(inputs, "private_dns_zone_id")?,
                    "publicNetworkAccess": "Disabled",
                },
                "highAvailability": { "mode": "Disabled" },
                "createMode": "Create",
            },
        }))
    }

    /// Whether the server requires TLS (`None` when the server is gone).
    async fn secure_transport(&self, id: &str) -> Result<Option<bool>, ProviderError> {
        let path = format!("{id}/configurations/{SECURE_TRANSPORT}");
        Ok(self
            .client
            .get(&path, API)
            .await?
            .map(|c| str_at(&c, "/properties/value").eq_ignore_ascii_case("on")))
    }

    /// Sets `require_secure_transport` to the inputs' value when it differs, and waits.
    async fn match_secure_transport(
        &self,
        id: &str,
        inputs: &Attributes,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let want = secure_wanted(inputs);
        if self.secure_transport(id).await? == Some(want) {
            return Ok(());
        }
        let path = format!("{id}/configurations/{SECURE_TRANSPORT}");
        let body = json!({"properties": {"value": if want { "on" } else { "off" }, "source": "user-override"}});
        let answer = self.client.put(&path, API, &body).await?;
        if let Some(op) = answer.operation {
            let what = format!("setting {SECURE_TRANSPORT} of {WHAT} `{id}`");
            self.client.follow(&op, &what, progress).await?;
        }
        Ok(())
    }

    /// Reads the server and its secure-transport setting as attributes (before
    /// [`managed_only`]). The password is the prior inputs' (Azure never returns it).
    async fn attributes(
        &self,
        id: &str,
        prior_inputs: &Attributes,
        prior_attributes: &Attributes,
    ) -> Result<Option<Attributes>, ProviderError> {
        let Some(body) = self.client.get(id, API).await? else {
            return Ok(None);
        };
        let mut a = Attributes::new();
        let mut put = |k: &str, v: Value| {
            a.insert(k.to_string(), v);
        };
        let s = |at: &str| Value::from(str_at(&body, at));
        let name = str_at(&body, "/name");
        put("id", id_value(str_at(&body, "/id"), Some(&Value::from(id))));
        put("name", Value::from(name));
        put(
            "name_prefix",
            Value::from(name.rsplit_once('-').map_or(name, |(p, _)| p)),
        );
        put("fqdn", s("/properties/fullyQualifiedDomainName"));
        put("state", s("/properties/state"));
        put("create_time", s("/systemData/createdAt"));
        // The group as the id spells it, or as the inputs did when they name the same one.
        let rg = resource_group_of(id);
        match prior_inputs.get("resource_group").and_then(Value::as_str) {
            Some(p) if name_of(p).eq_ignore_ascii_case(rg) => put("resource_group", Value::from(p)),
            _ => put("resource_group", Value::from(rg)),
        }
        put("location", s("/location"));
        put("version", s("/properties/version"));
        put("sku_name", s("/sku/name"));
        put("sku_tier", s("/sku/tier"));
        if let Some(gb) = body
            .pointer("/properties/storage/storageSizeGB")
            .and_then(Json::as_i64)
        {
            put("storage_gb", Value::Int(gb));
        }
        if let Some(d) = body
            .pointer("/properties/backup/backupRetentionDays")
            .and_then(Json::as_i64)
        {
            put("backup_retention_days", Value::Int(d));
        }
        put("administrator_login", s("/properties/administratorLogin"));
        if let Some(pw) = prior_inputs
            .get("administrator_password")
            .or_else(|| prior_attributes.get("administrator_password"))
        {
            put("administrator_password", pw.clone());
        }
        for (k, at) in [
            (
                "delegated_subnet_id",
                "/properties/network/delegatedSubnetResourceId",
            ),
            (
                "private_dns_zone_id",
                "/properties/network/privateDnsZoneArmResourceId",
            ),
        ] {
            put(k, id_value(str_at(&body, at), prior_inputs.get(k)));
        }
        put("tags", user_tags(&body));
        // Only read the setting when it is managed (or on import): one call fewer.
        if (prior_inputs.is_empty() || prior_inputs.contains_key("require_secure_transport"))
            && let Some(on) = self.secure_transport(id).await?
        {
            a.insert("require_secure_transport".into(), Value::Bool(on));
        }
        Ok(Some(a))
    }

    async fn read_back(&self, id: &str, inputs: &Attributes) -> Result<Attributes, ProviderError> {
        let a = self.attributes(id, inputs, &Attributes::new()).await?;
        Ok(managed_only(
            a.ok_or_else(|| gone(id))?,
            inputs,
            &self.schema,
        ))
    }

    /// PATCHes what changed among sku, storage, backup retention, password and tags, and
    /// waits until the server is `Ready` again.
    async fn patch(&self, req: &UpdateRequest, current: &Json) -> Result<(), ProviderError> {
        let changed = |f: &str| req.changed.iter().any(|c| c == f);
        let inputs = &req.inputs;
        let mut body = Map::new();
        let mut props = Map::new();
        if changed("sku_name") || changed("sku_tier") {
            body.insert(
                "sku".into(),
                json!({"name": attrs::s(inputs, "sku_name")?, "tier": attrs::s(inputs, "sku_tier")?}),
            );
        }
        if changed("storage_gb") {
            let want = int(inputs, "storage_gb")?;
            let have = current["properties"]["storage"]["storageSizeGB"]
                .as_i64()
                .unwrap_or(0);
            if want < have {
                return Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "{WHAT} `{}`: `storage_gb` can only grow ({have} → {want}): Azure \
                         cannot shrink a flexible server's storage",
                        req.id
                    ),
                ));
            }
            props.insert("storage".into(), json!({ "storageSizeGB": want }));
        }
        if changed("backup_retention_days")
            && let Some(d) = attrs::i(inputs, "backup_retention_days")
        {
            props.insert("backup".into(), json!({ "backupRetentionDays": d }));
        }
        if changed("administrator_password") {
            let pw = attrs::secret(inputs, "administrator_password")?;
            props.insert("administratorLoginPassword".into(), json!(pw));
        }
        if changed("tags") {
            body.insert("tags".into(), tags_keeping_token(inputs, current));
        }
        if !props.is_empty() {
            body.insert("properties".into(), Json::Object(props));
        }
        if body.is_empty() {
            return Ok(());
        }
        let answer = self.client.patch(&req.id, API, &Json::Object(body)).await?;
        self.waiter(&req.id, &req.progress)
            .updated(answer.operation, readiness)
            .await
            .map(drop)
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
impl ResourceType for FlexibleServer {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let a = self
            .attributes(&req.id, &req.prior_inputs, &req.prior_attributes)
            .await?;
        Ok(ReadResponse {
            attributes: a.map(|a| managed_only(a, &req.prior_inputs, &self.schema)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let prefix = attrs::s(&req.inputs, "name_prefix")?;
        for attempt in 0..NAME_ATTEMPTS {
            let path = self.path(&req.inputs, &server_name(prefix, &req.token, attempt))?;
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
        let prefix = attrs::s(inputs, "name_prefix")?;
        for attempt in 0..NAME_ATTEMPTS {
            let path = self.path(inputs, &server_name(prefix, &req.token, attempt))?;
            // PUT replaces: read first, and never send one over a server without our token.
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
                    self.pending.put(&path, answer.operation);
                    req.progress.status("Provisioning");
                    return Ok(CreateResponse {
                        id: path,
                        completion: Completion::InProgress,
                    });
                }
                // Taken elsewhere in Azure (names are global): the next name.
                Err(e) if e.kind == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(scrub(e, inputs)),
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
            .ready(&self.pending, readiness)
            .await
            .map_err(|e| scrub(e, &req.inputs))?;
        self.match_secure_transport(&req.id, &req.inputs, &req.progress)
            .await?;
        self.read_back(&req.id, &req.inputs).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let current = self
            .client
            .get(&req.id, API)
            .await?
            .ok_or_else(|| gone(&req.id))?;
        self.patch(&req, &current)
            .await
            .map_err(|e| scrub(e, &req.inputs))?;
        if req.changed.iter().any(|c| c == "require_secure_transport") {
            self.match_secure_transport(&req.id, &req.inputs, &req.progress)
                .await?;
        }
        Ok(UpdateResponse {
            attributes: self.read_back(&req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        match self.client.delete(&req.id, API).await {
            Ok(None) => Ok(DeleteResponse { done: true }),
            Ok(Some(answer)) => {
                self.pending.put(&req.id, answer.operation);
                Ok(DeleteResponse { done: false })
            }
            Err(e) if e.message.contains("ScopeLocked") => Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "{WHAT} `{}` is locked against deletion (a management lock on it or its \
                     resource group: `database.deletion_protection` is on). Run `flyteinfra \
                     destroy --disable-protection` to remove flyteinfra's lock first, or set \
                     `database.deletion_protection: false` and apply. Azure said: {}",
                    req.id, e.message
                ),
            )),
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        WaitFor {
            client: &self.client,
            id: &req.id,
            api: API,
            what: WHAT,
            expected: Duration::from_secs(120),
            progress: &req.progress,
        }
        .gone(&self.pending)
        .await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resources::common::same_id;
    use crate::testutil::{self, LOCATION, SUBSCRIPTION};
    use flyteinfra_azure_double::AzureDouble;
    use flyteinfra_core::requests;

    const T: &str = "azure_postgresql_flexible_server";
    pub(crate) const PASSWORD: &str = "Fl7te-Pa55word!";

    /// A resource group holding a vnet, a subnet delegated to flexible servers and a
    /// private DNS zone linked to the vnet, planted in the double.
    pub(crate) struct Net {
        pub rg: String,
        pub rg_id: String,
        pub subnet: String,
        pub zone: String,
    }

    pub(crate) fn plant_network(d: &AzureDouble) -> Net {
        let rg = testutil::unique("rg-db");
        let rg_id = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}");
        let net = format!("{rg_id}/providers/Microsoft.Network");
        let vnet = format!("{net}/virtualNetworks/vnet");
        let subnet = format!("{vnet}/subnets/pg");
        let zone = format!("{net}/privateDnsZones/{rg}.postgres.database.azure.com");
        let ok = json!({"provisioningState": "Succeeded"});
        let mut w = d.shared().lock();
        w.put_raw(
            &rg_id,
            json!({"name": rg, "type": "Microsoft.Resources/resourceGroups",
            "location": LOCATION, "tags": {}, "properties": ok}),
        );
        w.put_raw(
            &vnet,
            json!({"name": "vnet", "type": "Microsoft.Network/virtualNetworks",
            "location": LOCATION, "tags": {}, "properties": {"provisioningState": "Succeeded",
            "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}}),
        );
        w.put_raw(
            &subnet,
            json!({"name": "pg", "type": "Microsoft.Network/virtualNetworks/subnets",
            "properties": {"provisioningState": "Succeeded", "addressPrefix": "10.0.1.0/24",
            "delegations": [{"name": "pg", "properties": {"serviceName": DELEGATION}}]}}),
        );
        w.put_raw(
            &zone,
            json!({"name": format!("{rg}.postgres.database.azure.com"),
            "type": "Microsoft.Network/privateDnsZones", "location": "global", "tags": {},
            "properties": ok}),
        );
        w.put_raw(
            &format!("{zone}/virtualNetworkLinks/vnet"),
            json!({"name": "vnet",
            "type": "Microsoft.Network/privateDnsZones/virtualNetworkLinks", "location": "global",
            "tags": {}, "properties": {"provisioningState": "Succeeded",
            "virtualNetwork": {"id": vnet}, "registrationEnabled": false}}),
        );
        Net {
            rg,
            rg_id,
            subnet,
            zone,
        }
    }

    const DELEGATION: &str = "Microsoft.DBforPostgreSQL/flexibleServers";

    pub(crate) fn inputs(net: &Net, prefix: &str) -> Attributes {
        attrs::attrs([
            ("resource_group", net.rg.as_str().into()),
            ("name_prefix", prefix.into()),
            ("location", LOCATION.into()),
            ("version", "16".into()),
            ("sku_name", "Standard_D2s_v3".into()),
            ("sku_tier", "GeneralPurpose".into()),
            ("storage_gb", Value::Int(32)),
            ("backup_retention_days", Value::Int(7)),
            ("administrator_login", "flyteadmin".into()),
            ("administrator_password", Value::secret(PASSWORD)),
            ("delegated_subnet_id", net.subnet.as_str().into()),
            ("private_dns_zone_id", net.zone.as_str().into()),
            ("require_secure_transport", true.into()),
            (
                "tags",
                Value::Map([("team".to_string(), "ml".into())].into()),
            ),
        ])
    }

    /// A ready server made through the type in a fresh network: `(net, id, attributes)`.
    pub(crate) async fn ready_server(c: &ArmClient, d: &AzureDouble) -> (Net, String, Attributes) {
        let net = plant_network(d);
        let ins = inputs(&net, &testutil::unique("flyte-pg"));
        let rt = build(c);
        let id = rt
            .create(requests::create(T, &ins, &testutil::unique("fi-tok")))
            .await
            .unwrap()
            .id;
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        (net, id, a)
    }

    /// Deletes, waits, and checks it is gone and a second delete is success.
    pub(crate) async fn delete_server(c: &ArmClient, id: &str, a: &Attributes) {
        let rt = build(c);
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

    /// The password appears in no attribute but its own.
    fn password_only_in_its_field(a: &Attributes) {
        for (k, v) in a {
            if k != "administrator_password" {
                assert!(!format!("{v:?}").contains(PASSWORD), "{k}");
            }
        }
    }

    async fn refresh(rt: &Arc<dyn ResourceType>, id: &str, ins: &Attributes) -> Attributes {
        rt.read(requests::refresh(T, id, ins))
            .await
            .unwrap()
            .attributes
            .unwrap()
    }

    fn config(d: &AzureDouble, id: &str) -> String {
        let w = d.shared().lock();
        let c = w.resource(&format!("{id}/configurations/{SECURE_TRANSPORT}"));
        c.map_or("on".into(), |c| str_at(&c, "/properties/value").to_string())
    }

    #[tokio::test]
    async fn server_lifecycle() {
        let (c, d) = (testutil::client(), testutil::double());
        let net = plant_network(d);
        let rt = build(&c);
        let prefix = testutil::unique("flyte-pg");
        let ins = inputs(&net, &prefix);
        let token = testutil::unique("fi-tok");

        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        let name = server_name(&prefix, &token, 0);
        assert!(id.ends_with(&format!("/flexibleServers/{name}")), "{id}");
        let ready = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();

        let a = refresh(&rt, &id, &ins).await;
        assert_eq!(a, ready);
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        assert_eq!(a["name"], Value::from(name.as_str()));
        assert_eq!(
            a["fqdn"],
            Value::from(format!("{name}.postgres.database.azure.com"))
        );
        assert_eq!(a["state"], Value::from("Ready"));
        assert!(
            a["create_time"].as_str().is_some_and(|t| t.contains('T')),
            "{a:?}"
        );
        password_only_in_its_field(&a);
        // Azure never shows the password; an import does not know it.
        let cloud = d.shared().lock().resource(&id).unwrap();
        assert!(!cloud.to_string().contains(PASSWORD));
        assert_eq!(d.shared().lock().admin_password(&id), Some(PASSWORD));
        let imported = rt
            .read(requests::read(T, &id))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert!(
            !imported.contains_key("administrator_password"),
            "{imported:?}"
        );
        assert_eq!(imported["require_secure_transport"], Value::Bool(true));

        // Found by its token, only by it; a retried create adopts it without a PUT.
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other = rt.find(requests::find(T, &ins, "fi-other")).await.unwrap();
        assert_eq!(other.id, None);
        let puts = c.calls_by_operation().get("PUT flexibleservers").copied();
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(
            c.calls_by_operation().get("PUT flexibleservers").copied(),
            puts
        );

        // PATCH: storage, backup, sku, tags; the token tag survives.
        let mut new = ins.clone();
        new.insert("storage_gb".into(), Value::Int(64));
        new.insert("backup_retention_days".into(), Value::Int(14));
        new.insert("sku_name".into(), "Standard_D4s_v3".into());
        new.insert(
            "tags".into(),
            Value::Map([("env".to_string(), "prod".into())].into()),
        );
        let changed = ["storage_gb", "backup_retention_days", "sku_name", "tags"];
        let up = rt
            .update(requests::update(T, &id, &a, &new, &changed))
            .await
            .unwrap();
        let a2 = refresh(&rt, &id, &new).await;
        assert_eq!(a2, up.attributes);
        for (k, v) in &new {
            assert_eq!(a2.get(k), Some(v), "{k}");
        }
        let found = rt.find(requests::find(T, &new, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));

        // Storage only grows: refused before any call to Azure.
        let mut small = new.clone();
        small.insert("storage_gb".into(), Value::Int(32));
        let err = rt
            .update(requests::update(T, &id, &a2, &small, &["storage_gb"]))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("can only grow"), "{err}");

        // A new password reaches Azure and is echoed from the inputs only.
        let mut pw = new.clone();
        pw.insert(
            "administrator_password".into(),
            Value::secret("N3w-Secret-pw"),
        );
        let a3 = rt
            .update(requests::update(
                T,
                &id,
                &a2,
                &pw,
                &["administrator_password"],
            ))
            .await
            .unwrap()
            .attributes;
        assert_eq!(d.shared().lock().admin_password(&id), Some("N3w-Secret-pw"));
        assert_eq!(a3["administrator_password"], Value::from("N3w-Secret-pw"));

        // require_secure_transport off, then on again.
        let mut off = pw.clone();
        off.insert("require_secure_transport".into(), false.into());
        let a4 = rt
            .update(requests::update(
                T,
                &id,
                &a3,
                &off,
                &["require_secure_transport"],
            ))
            .await
            .unwrap()
            .attributes;
        assert_eq!(a4["require_secure_transport"], Value::Bool(false));
        assert_eq!(config(d, &id), "off");
        let a5 = rt
            .update(requests::update(
                T,
                &id,
                &a4,
                &pw,
                &["require_secure_transport"],
            ))
            .await
            .unwrap()
            .attributes;
        assert_eq!(a5["require_secure_transport"], Value::Bool(true));
        assert_eq!(config(d, &id), "on");

        delete_server(&c, &id, &a5).await;
    }

    #[tokio::test]
    async fn secure_transport_off_is_set_after_create() {
        let (c, d) = (testutil::client(), testutil::double());
        let net = plant_network(d);
        let rt = build(&c);
        let mut ins = inputs(&net, &testutil::unique("flyte-tls"));
        ins.insert("require_secure_transport".into(), false.into());
        let id = rt
            .create(requests::create(T, &ins, &testutil::unique("fi-tok")))
            .await
            .unwrap()
            .id;
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(a["require_secure_transport"], Value::Bool(false));
        assert_eq!(config(d, &id), "off");
        delete_server(&c, &id, &a).await;
    }

    #[tokio::test]
    async fn taken_name_moves_to_the_next_suffix() {
        let d = AzureDouble::start();
        let c = testutil::client_of(&d);
        let net = plant_network(&d);
        let rt = build(&c);
        let prefix = testutil::unique("flyte-taken");
        let token = testutil::unique("fi-tok");
        let first = server_name(&prefix, &token, 0);
        d.shared()
            .lock()
            .knobs
            .taken_server_names
            .push(first.clone());
        let ins = inputs(&net, &prefix);
        let id = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        let second = server_name(&prefix, &token, 1);
        assert!(id.ends_with(&format!("/{second}")), "{id}");
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // A retry walks the same names and adopts the second.
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(a["name"], Value::from(second.as_str()));
        delete_server(&c, &id, &a).await;
    }

    #[tokio::test]
    async fn foreign_server_of_the_first_name_is_not_adopted() {
        let (c, d) = (testutil::client(), testutil::double());
        let net = plant_network(d);
        let rt = build(&c);
        let prefix = testutil::unique("flyte-frn");
        let token = testutil::unique("fi-tok");
        let first = server_name(&prefix, &token, 0);
        let foreign = format!(
            "{}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{first}",
            net.rg_id
        );
        let body = json!({"name": first, "type": DELEGATION, "location": LOCATION,
            "tags": {"owner": "someone"}, "sku": {"name": "Standard_B1ms", "tier": "Burstable"},
            "properties": {"state": "Ready", "provisioningState": "Succeeded", "version": "15"}});
        d.shared().lock().put_raw(&foreign, body);
        let before = d.shared().lock().resource(&foreign).unwrap();

        let ins = inputs(&net, &prefix);
        let id = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        assert!(!same_id(&id, &foreign), "{id}");
        assert!(id.ends_with(&server_name(&prefix, &token, 1)), "{id}");
        assert_eq!(d.shared().lock().resource(&foreign).unwrap(), before);
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        delete_server(&c, &id, &a).await;
        assert!(d.shared().lock().resource(&foreign).is_some());
    }

    #[tokio::test]
    async fn failed_operation_surfaces_azures_error() {
        let d = AzureDouble::start();
        let c = testutil::client_of(&d);
        let net = plant_network(&d);
        let rt = build(&c);
        let prefix = testutil::unique("flyte-fail");
        let token = testutil::unique("fi-tok");
        let first = server_name(&prefix, &token, 0);
        d.shared()
            .lock()
            .knobs
            .fail_next
            .push(("PUT".into(), format!("flexibleServers/{first}")));
        let ins = inputs(&net, &prefix);
        let id = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        let err = rt
            .wait_ready(requests::wait(T, &id, &ins))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(err.message.contains("InternalServerError"), "{err}");
        assert!(!err.message.contains(PASSWORD));
        // After a restart (no operation in memory) the failed state fails as fast.
        let restarted = build(&c);
        let err = restarted
            .wait_ready(requests::wait(T, &id, &ins))
            .await
            .unwrap_err();
        assert!(err.message.contains("Failed"), "{err}");
        // A retry of the create provisions its failed server again.
        let again = restarted
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap();
        assert_eq!(again.id, id);
        let a = restarted
            .wait_ready(requests::wait(T, &id, &ins))
            .await
            .unwrap();
        assert_eq!(a["state"], Value::from("Ready"));
        delete_server(&c, &id, &a).await;
    }

    #[tokio::test]
    async fn lost_create_response_is_adopted_on_retry() {
        let d = AzureDouble::start();
        let c = testutil::client_of(&d);
        let net = plant_network(&d);
        let rt = build(&c);
        let prefix = testutil::unique("flyte-lost");
        let token = testutil::unique("fi-tok");
        let first = server_name(&prefix, &token, 0);
        d.shared()
            .lock()
            .knobs
            .lose_next_response
            .push(("PUT".into(), format!("flexibleServers/{first}")));
        let ins = inputs(&net, &prefix);
        let err = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap_err();
        assert!(err.kind.is_retryable(), "{err}");
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert!(again.id.ends_with(&first), "{}", again.id);
        assert_eq!(c.calls_by_operation().get("PUT flexibleservers"), Some(&1));
        let a = rt
            .wait_ready(requests::wait(T, &again.id, &ins))
            .await
            .unwrap();
        delete_server(&c, &again.id, &a).await;
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let (c, d) = (testutil::client(), testutil::double());
        let (net, id, a) = ready_server(&c, d).await;
        let ins = inputs(&net, a["name_prefix"].as_str().unwrap());
        d.shared().lock().resource_mut(&id).unwrap()["properties"]["storage"]["storageSizeGB"] =
            json!(128);
        let rt = build(&c);
        let now = refresh(&rt, &id, &ins).await;
        assert_eq!(now["storage_gb"], Value::Int(128));
        assert_eq!(now["administrator_password"], Value::from(PASSWORD));
        delete_server(&c, &id, &now).await;
    }

    #[test]
    fn names_readiness_and_errors() {
        let a = server_name("flyte", "fi-abc-1", 0);
        assert_eq!(a, server_name("flyte", "fi-abc-1", 0));
        assert_eq!(a.len(), "flyte-".len() + 8);
        assert_ne!(a, server_name("flyte", "fi-abc-1", 1));
        let state = |p: &str, s: &str| {
            readiness(&json!({"properties": {"provisioningState": p, "state": s}}))
        };
        assert!(matches!(state("Succeeded", "Ready"), Readiness::Ready));
        assert!(matches!(
            state("Accepted", "Provisioning"),
            Readiness::Working(_)
        ));
        assert!(matches!(
            state("Failed", "Provisioning"),
            Readiness::Failed(_)
        ));
        assert!(matches!(
            state("Succeeded", "Dropping"),
            Readiness::Failed(_)
        ));
        let ins = attrs::attrs([("administrator_password", Value::secret(PASSWORD))]);
        let e = ProviderError::new(ErrorKind::InvalidInput, format!("bad {PASSWORD}"));
        assert!(!scrub(e, &ins).message.contains(PASSWORD));
        assert!(schema().holds_data && schema().deletion_protection.is_none());
    }
}

//! `gcp_sql_database_instance`: a Cloud SQL instance (PostgreSQL for Flyte), private IP.
//!
//! Google reserves a deleted instance's name for about a week, so the name is
//! `{name_prefix}-{suffix}` with a suffix derived from the engine's token (fixed before the
//! call, as the token is journaled first). The token also goes into the label
//! `flyteinfra-token`: `find` lists instances and matches it, so a create that died after
//! any attempt is found. When the first-choice name is taken by something not ours (a
//! reserved name), the next suffix is derived from `(token, attempt)`.
//!
//! Creates take 5–20 minutes: `create` returns once the insert is accepted and
//! `wait_ready` polls the operation (known in memory from `create`) or, after a restart,
//! the instance's `state`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest, fnv1a64,
};
use google_cloud_sql_v1::model::database_instance::SqlInstanceState;
use google_cloud_sql_v1::model::ip_configuration::SslMode;
use google_cloud_sql_v1::model::{
    BackupConfiguration, DatabaseInstance, IpConfiguration, Settings, SqlAvailabilityType,
    SqlDatabaseVersion, SqlIpAddressType,
};

use super::operations::{
    Backoff, OpMemo, busy_is_transient, input_map, label_value, link_value, managed_only,
    pending_sql_op, string_map, wait_sql_op,
};
use crate::client::GcpClients;
use crate::error::gax_err;

/// The label carrying flyteinfra's create token (hidden from `labels`).
pub(crate) const TOKEN_LABEL: &str = "flyteinfra-token";

/// Names tried before giving up when each is taken by someone else.
const NAME_ATTEMPTS: u32 = 5;

/// Settings fields `update` can PATCH in place.
const PATCHABLE: &[&str] = &[
    "tier",
    "availability_type",
    "ipv4_enabled",
    "ssl_mode",
    "backups_enabled",
    "point_in_time_recovery",
    "deletion_protection",
    "labels",
];

/// `gcp_sql_database_instance`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_sql_database_instance",
        doc: "A Cloud SQL instance on a private IP. Its name is `{name_prefix}-{suffix}`, the \
              suffix derived from flyteinfra's create token (Google reserves deleted names for \
              about a week, so a recreate never collides); the token is kept in the \
              `flyteinfra-token` label.",
        fields: vec![
            Field::computed("id", "The cloud id (the instance name)."),
            Field::computed("name", "The instance name, `{name_prefix}-{suffix}`."),
            Field::computed("private_ip", "The private IP address."),
            Field::computed(
                "connection_name",
                "`project:region:name`, for the Cloud SQL connectors.",
            ),
            Field::computed("self_link", "The instance's API link."),
            Field::input(
                "name_prefix",
                "The name before the random suffix (lowercase letters, digits, hyphens).",
            )
            .required()
            .force_new(),
            Field::input("region", "The region (`us-central1`).").force_new(),
            Field::input(
                "database_version",
                "The engine and major version (`POSTGRES_16`); a major upgrade is a replace.",
            )
            .required()
            .force_new(),
            Field::input("tier", "The machine tier (`db-custom-2-7680`)."),
            Field::input(
                "availability_type",
                "`ZONAL` or `REGIONAL` (high availability).",
            ),
            Field::input(
                "private_network",
                "The VPC's self link; the instance gets a private IP in it.",
            )
            .force_new(),
            Field::input(
                "ipv4_enabled",
                "A public IP too; `false` = private IP only.",
            ),
            Field::input("ssl_mode", "Connection encryption (`ENCRYPTED_ONLY`)."),
            Field::input("backups_enabled", "Automated daily backups."),
            Field::input(
                "point_in_time_recovery",
                "Point-in-time recovery (write-ahead log archiving).",
            ),
            Field::input(
                "deletion_protection",
                "Refuse deletion while on (checked by flyteinfra and by Google).",
            ),
            Field::input("labels", "Labels (the `flyteinfra-token` label is hidden)."),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(12 * 60),
        deletion_protection: Some("deletion_protection"),
    }
}

/// `gcp_sql_database_instance` over the Cloud SQL Admin API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(SqlDatabaseInstance {
        clients: clients.clone(),
        schema: schema(),
        ops: OpMemo::default(),
    })
}

struct SqlDatabaseInstance {
    clients: GcpClients,
    schema: Schema,
    /// Instance name → the running insert or delete operation sent by this process.
    ops: OpMemo,
}

/// The instance name for `token` at `attempt` (0 = first choice).
pub(crate) fn instance_name(prefix: &str, token: &str, attempt: u32) -> String {
    let h = if attempt == 0 {
        fnv1a64(token.as_bytes())
    } else {
        fnv1a64(format!("{token}#{attempt}").as_bytes())
    };
    format!("{prefix}-{:08x}", h >> 32)
}

impl SqlDatabaseInstance {
    /// The instance called `name`, or `None`.
    async fn get(&self, name: &str) -> Result<Option<DatabaseInstance>, ProviderError> {
        match self
            .clients
            .sql_instances
            .get()
            .set_project(&self.clients.project)
            .set_instance(name)
            .send()
            .await
            .map_err(|e| gax_err("sql.instances.get", e))
        {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The instances in the project matching `filter` (empty = all), every page.
    async fn list(&self, filter: &str) -> Result<Vec<DatabaseInstance>, ProviderError> {
        let mut out = Vec::new();
        let mut page = String::new();
        loop {
            let resp = self
                .clients
                .sql_instances
                .list()
                .set_project(&self.clients.project)
                .set_filter(filter)
                .set_page_token(page.clone())
                .send()
                .await
                .map_err(|e| gax_err("sql.instances.list", e))?;
            out.extend(resp.items);
            if resp.next_page_token.is_empty() {
                return Ok(out);
            }
            page = resp.next_page_token;
        }
    }

    /// PATCHes the `changed` settings to the inputs' values and waits for the operation.
    /// `current` supplies the token label, which a label change must keep.
    async fn patch(
        &self,
        name: &str,
        inputs: &Attributes,
        changed: &[&str],
        current: &DatabaseInstance,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let has = |f: &str| changed.contains(&f);
        if !PATCHABLE.iter().any(|f| has(f)) {
            return Ok(());
        }
        let mut s = Settings::new();
        if has("tier")
            && let Some(t) = attrs::opt_s(inputs, "tier")
        {
            s = s.set_tier(t);
        }
        if has("availability_type")
            && let Some(a) = attrs::opt_s(inputs, "availability_type")
        {
            s = s.set_availability_type(SqlAvailabilityType::from(a));
        }
        if has("ipv4_enabled") || has("ssl_mode") {
            let mut ip = IpConfiguration::new();
            if let Some(v) = attrs::b(inputs, "ipv4_enabled") {
                ip = ip.set_ipv4_enabled(v);
            }
            if let Some(m) = attrs::opt_s(inputs, "ssl_mode") {
                ip = ip.set_ssl_mode(SslMode::from(m));
            }
            s = s.set_ip_configuration(ip);
        }
        if has("backups_enabled") || has("point_in_time_recovery") {
            s = s.set_backup_configuration(backup_config(inputs));
        }
        if has("deletion_protection")
            && let Some(v) = attrs::b(inputs, "deletion_protection")
        {
            s = s.set_deletion_protection_enabled(v);
        }
        if has("labels") {
            let have = current.settings.as_ref().map(|s| &s.user_labels);
            let token = have.and_then(|l| l.get(TOKEN_LABEL).cloned());
            let mut labels = input_map(inputs, "labels");
            labels.retain(|(k, _)| k != TOKEN_LABEL);
            // PATCH merges maps and the typed body cannot send the `null` that deletes a
            // key: a removed label is emptied instead, and reads hide empty labels.
            let removed: Vec<(String, String)> = have
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != TOKEN_LABEL && !labels.iter().any(|(w, _)| w == *k))
                .map(|(k, _)| (k.clone(), String::new()))
                .collect();
            labels.extend(removed);
            labels.extend(token.map(|t| (TOKEN_LABEL.to_string(), t)));
            s = s.set_user_labels(labels);
        }
        let op = self
            .clients
            .sql_instances
            .patch()
            .set_project(&self.clients.project)
            .set_instance(name)
            .set_body(DatabaseInstance::new().set_settings(s))
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("sql.instances.patch", e)))?;
        progress.status("UPDATING");
        wait_sql_op(
            &self.clients,
            &op.name,
            &format!("updating Cloud SQL instance `{name}`"),
        )
        .await
    }

    /// The instance after a finished change, as attributes.
    async fn read_back(
        &self,
        name: &str,
        inputs: &Attributes,
    ) -> Result<Attributes, ProviderError> {
        let inst = self.get(name).await?.ok_or_else(|| gone(name))?;
        Ok(managed_only(
            attributes(&inst, inputs),
            inputs,
            &self.schema,
        ))
    }

    /// Google's message for a failed instance: the latest failed operation's errors.
    async fn failure_message(&self, name: &str) -> String {
        let ops = self
            .clients
            .sql_operations
            .list()
            .set_project(&self.clients.project)
            .set_instance(name)
            .send()
            .await;
        ops.ok()
            .and_then(|r| {
                r.items.into_iter().find_map(|o| {
                    let msgs: Vec<String> = o
                        .error?
                        .errors
                        .into_iter()
                        .map(|e| e.message)
                        .filter(|m| !m.is_empty())
                        .collect();
                    (!msgs.is_empty()).then(|| msgs.join("; "))
                })
            })
            .unwrap_or_else(|| "no error message from Google".into())
    }
}

fn backup_config(inputs: &Attributes) -> BackupConfiguration {
    let mut b = BackupConfiguration::new();
    if let Some(v) = attrs::b(inputs, "backups_enabled") {
        b = b.set_enabled(v);
    }
    if let Some(v) = attrs::b(inputs, "point_in_time_recovery") {
        b = b.set_point_in_time_recovery_enabled(v);
    }
    b
}

/// The insert body for `name`.
fn instance_body(
    name: &str,
    inputs: &Attributes,
    token: &str,
) -> Result<DatabaseInstance, ProviderError> {
    let mut ip = IpConfiguration::new();
    if let Some(n) = attrs::opt_s(inputs, "private_network") {
        ip = ip.set_private_network(n);
    }
    if let Some(v) = attrs::b(inputs, "ipv4_enabled") {
        ip = ip.set_ipv4_enabled(v);
    }
    if let Some(m) = attrs::opt_s(inputs, "ssl_mode") {
        ip = ip.set_ssl_mode(SslMode::from(m));
    }
    let mut labels = input_map(inputs, "labels");
    labels.retain(|(k, _)| k != TOKEN_LABEL);
    labels.push((TOKEN_LABEL.to_string(), label_value(token)));
    let mut s = Settings::new()
        .set_ip_configuration(ip)
        .set_backup_configuration(backup_config(inputs))
        .set_user_labels(labels);
    if let Some(t) = attrs::opt_s(inputs, "tier") {
        s = s.set_tier(t);
    }
    if let Some(a) = attrs::opt_s(inputs, "availability_type") {
        s = s.set_availability_type(SqlAvailabilityType::from(a));
    }
    if let Some(v) = attrs::b(inputs, "deletion_protection") {
        s = s.set_deletion_protection_enabled(v);
    }
    let mut i = DatabaseInstance::new()
        .set_name(name)
        .set_database_version(SqlDatabaseVersion::from(attrs::s(
            inputs,
            "database_version",
        )?))
        .set_settings(s);
    if let Some(r) = attrs::opt_s(inputs, "region") {
        i = i.set_region(r);
    }
    Ok(i)
}

/// Whether `i` carries `token` in its label.
fn is_ours(i: &DatabaseInstance, token: &str) -> bool {
    let want = label_value(token);
    i.settings
        .as_ref()
        .and_then(|s| s.user_labels.get(TOKEN_LABEL))
        .is_some_and(|l| *l == want)
}

/// The inputs whose cloud value differs from `inputs` (what an adopting create must PATCH).
fn differing(i: &DatabaseInstance, inputs: &Attributes) -> Vec<&'static str> {
    let have = attributes(i, inputs);
    PATCHABLE
        .iter()
        .copied()
        .filter(|f| {
            inputs
                .get(*f)
                .is_some_and(|want| have.get(*f) != Some(want))
        })
        .collect()
}

#[async_trait]
impl ResourceType for SqlDatabaseInstance {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let inst = self.get(&req.id).await?;
        Ok(ReadResponse {
            attributes: inst.map(|i| {
                managed_only(
                    attributes(&i, &req.prior_inputs),
                    &req.prior_inputs,
                    &self.schema,
                )
            }),
        })
    }

    async fn read_many(&self, reqs: Vec<ReadRequest>) -> Vec<Result<ReadResponse, ProviderError>> {
        // One list answers any number of reads; a single read is one GET.
        if reqs.len() < 2 {
            let mut out = Vec::new();
            for r in reqs {
                out.push(self.read(r).await);
            }
            return out;
        }
        let all = match self.list("").await {
            Ok(a) => a,
            Err(e) => return reqs.iter().map(|_| Err(e.clone())).collect(),
        };
        let by_name: HashMap<&str, &DatabaseInstance> =
            all.iter().map(|i| (i.name.as_str(), i)).collect();
        reqs.iter()
            .map(|r| {
                Ok(ReadResponse {
                    attributes: by_name.get(r.id.as_str()).map(|i| {
                        managed_only(
                            attributes(i, &r.prior_inputs),
                            &r.prior_inputs,
                            &self.schema,
                        )
                    }),
                })
            })
            .collect()
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let prefix = attrs::s(&req.inputs, "name_prefix")?;
        // The server-side filter saves listing every instance; the match is re-checked here.
        let filter = format!(
            "settings.userLabels.{TOKEN_LABEL}:{}",
            label_value(&req.token)
        );
        let found = self
            .list(&filter)
            .await?
            .into_iter()
            .find(|i| is_ours(i, &req.token) && i.name.starts_with(&format!("{prefix}-")));
        Ok(FindResponse {
            id: found.map(|i| i.name),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let inputs = &req.inputs;
        let prefix = attrs::s(inputs, "name_prefix")?;
        for attempt in 0..NAME_ATTEMPTS {
            let name = instance_name(prefix, &req.token, attempt);
            let sent = self
                .clients
                .sql_instances
                .insert()
                .set_project(&self.clients.project)
                .set_body(instance_body(&name, inputs, &req.token)?)
                .send()
                .await
                .map_err(|e| gax_err("sql.instances.insert", e));
            match sent {
                Ok(op) => {
                    self.ops.remember(&name, &op.name);
                    req.progress.status("PENDING_CREATE");
                    return Ok(CreateResponse {
                        id: name,
                        completion: Completion::InProgress,
                    });
                }
                Err(e) if e.kind == ErrorKind::AlreadyExists => {
                    let existing = self.get(&name).await?;
                    let Some(i) = existing.filter(|i| is_ours(i, &req.token)) else {
                        // Reserved after a delete, or someone else's: try the next name.
                        continue;
                    };
                    // An earlier attempt of this create: adopt it, then match the inputs.
                    if i.state != SqlInstanceState::Runnable {
                        return Ok(CreateResponse {
                            id: name,
                            completion: Completion::InProgress,
                        });
                    }
                    let diff = differing(&i, inputs);
                    self.patch(&name, inputs, &diff, &i, &req.progress).await?;
                    let a = self.read_back(&name, inputs).await?;
                    return Ok(CreateResponse {
                        id: name,
                        completion: Completion::Ready(a),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Err(ProviderError::new(
            ErrorKind::AlreadyExists,
            format!(
                "every Cloud SQL instance name tried for prefix `{prefix}` ({NAME_ATTEMPTS} \
                 attempts) is taken or reserved; choose another `name_prefix`"
            ),
        ))
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let name = req.id.as_str();
        // After a restart, the instance's unfinished operation is found by listing.
        let mut op = match self.ops.recalled(name) {
            Some(op) => Some(op),
            None => pending_sql_op(&self.clients, name).await?,
        };
        let mut backoff = Backoff::new();
        let mut last = String::new();
        let mut report = |s: &str| {
            if s != last {
                req.progress.status(s);
                last = s.to_string();
            }
        };
        loop {
            // The operation carries Google's error message; check it first.
            if let Some(o) = &op {
                let got = self
                    .clients
                    .sql_operations
                    .get()
                    .set_project(&self.clients.project)
                    .set_operation(o)
                    .send()
                    .await
                    .map_err(|e| gax_err("sql.operations.get", e))?;
                if got.status == google_cloud_sql_v1::model::operation::SqlOperationStatus::Done {
                    self.ops.forget(name);
                    op = None;
                    if let Some(errs) = got.error.filter(|e| !e.errors.is_empty()) {
                        let msg: Vec<String> = errs.errors.into_iter().map(|e| e.message).collect();
                        return Err(ProviderError::new(
                            ErrorKind::Permanent,
                            format!(
                                "creating Cloud SQL instance `{name}` failed: {}",
                                msg.join("; ")
                            ),
                        ));
                    }
                }
            }
            match self.get(name).await? {
                None if op.is_some() => report("PENDING_CREATE"),
                None => {
                    return Err(ProviderError::new(
                        ErrorKind::NotFound,
                        format!("Cloud SQL instance `{name}` disappeared while being created"),
                    ));
                }
                Some(i) => {
                    let state = i.state.name().unwrap_or("UNKNOWN");
                    report(state);
                    match i.state {
                        SqlInstanceState::Runnable if op.is_none() => {
                            return Ok(managed_only(
                                attributes(&i, &req.inputs),
                                &req.inputs,
                                &self.schema,
                            ));
                        }
                        SqlInstanceState::Failed | SqlInstanceState::Suspended => {
                            let msg = self.failure_message(name).await;
                            return Err(ProviderError::new(
                                ErrorKind::Permanent,
                                format!("Cloud SQL instance `{name}` is {state}: {msg}"),
                            ));
                        }
                        _ => {}
                    }
                }
            }
            backoff.sleep().await;
        }
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let current = self.get(&req.id).await?.ok_or_else(|| gone(&req.id))?;
        let changed: Vec<&str> = req.changed.iter().map(String::as_str).collect();
        self.patch(&req.id, &req.inputs, &changed, &current, &req.progress)
            .await?;
        Ok(UpdateResponse {
            attributes: self.read_back(&req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        if attrs::b(&req.attributes, "deletion_protection") == Some(true) {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!(
                    "Cloud SQL instance `{}` has `deletion_protection` on: set it to false and \
                     apply before deleting",
                    req.id
                ),
            ));
        }
        let sent = self
            .clients
            .sql_instances
            .delete()
            .set_project(&self.clients.project)
            .set_instance(&req.id)
            .send()
            .await
            .map_err(|e| busy_is_transient(gax_err("sql.instances.delete", e)));
        match sent {
            Ok(op) => {
                self.ops.remember(&req.id, &op.name);
                req.progress.status("PENDING_DELETE");
                Ok(DeleteResponse { done: false })
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let op = match self.ops.recalled(&req.id) {
            Some(op) => Some(op),
            None => pending_sql_op(&self.clients, &req.id).await?,
        };
        if let Some(op) = op {
            let what = format!("deleting Cloud SQL instance `{}`", req.id);
            let r = wait_sql_op(&self.clients, &op, &what).await;
            self.ops.forget(&req.id);
            match r {
                Err(e) if e.kind != ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let mut backoff = Backoff::new();
        while let Some(i) = self.get(&req.id).await? {
            req.progress
                .status(i.state.name().unwrap_or("PENDING_DELETE"));
            backoff.sleep().await;
        }
        Ok(())
    }
}

/// The attributes of `i` (before [`managed_only`]).
fn attributes(i: &DatabaseInstance, prior_inputs: &Attributes) -> Attributes {
    let mut a = Attributes::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_string(), v);
    };
    let st = |s: &str| Value::Str(s.to_string());
    put("id", st(&i.name));
    put("name", st(&i.name));
    // The prefix is the name without its `-xxxxxxxx` suffix.
    let prefix = i.name.rsplit_once('-').map_or(i.name.as_str(), |(p, _)| p);
    put("name_prefix", st(prefix));
    if !i.region.is_empty() {
        put("region", st(&i.region));
    }
    if let Some(v) = i.database_version.name() {
        put("database_version", st(v));
    }
    if let Some(ip) = i
        .ip_addresses
        .iter()
        .find(|m| m.r#type == SqlIpAddressType::Private)
    {
        put("private_ip", st(&ip.ip_address));
    }
    if !i.connection_name.is_empty() {
        put("connection_name", st(&i.connection_name));
    }
    if !i.self_link.is_empty() {
        put("self_link", st(&i.self_link));
    }
    if let Some(s) = &i.settings {
        if !s.tier.is_empty() {
            put("tier", st(&s.tier));
        }
        if let Some(v) = s
            .availability_type
            .name()
            .filter(|v| *v != "SQL_AVAILABILITY_TYPE_UNSPECIFIED")
        {
            put("availability_type", st(v));
        }
        if let Some(ip) = &s.ip_configuration {
            if !ip.private_network.is_empty() {
                put(
                    "private_network",
                    link_value(&ip.private_network, prior_inputs.get("private_network")),
                );
            }
            put("ipv4_enabled", Value::Bool(ip.ipv4_enabled.unwrap_or(true)));
            if let Some(m) = ip.ssl_mode.name().filter(|m| *m != "SSL_MODE_UNSPECIFIED") {
                put("ssl_mode", st(m));
            }
        }
        let backup = s.backup_configuration.as_ref();
        put(
            "backups_enabled",
            Value::Bool(backup.and_then(|b| b.enabled).unwrap_or(false)),
        );
        put(
            "point_in_time_recovery",
            Value::Bool(
                backup
                    .and_then(|b| b.point_in_time_recovery_enabled)
                    .unwrap_or(false),
            ),
        );
        put(
            "deletion_protection",
            Value::Bool(s.deletion_protection_enabled.unwrap_or(false)),
        );
        put(
            "labels",
            string_map(
                s.user_labels
                    .iter()
                    .filter(|(k, v)| *k != TOKEN_LABEL && !v.is_empty()),
            ),
        );
    }
    a
}

fn gone(name: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("Cloud SQL instance `{name}` no longer exists"),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::resources::operations::testkit::{OPS, progress};
    use crate::testutil::{self, PROJECT};
    use flyteinfra_core::requests;

    const T: &str = "gcp_sql_database_instance";

    fn inputs(prefix: &str, protect: bool) -> Attributes {
        attrs::attrs([
            ("name_prefix", Value::Str(prefix.into())),
            ("region", Value::Str("us-central1".into())),
            ("database_version", Value::Str("POSTGRES_16".into())),
            ("tier", Value::Str("db-custom-1-3840".into())),
            ("availability_type", Value::Str("ZONAL".into())),
            (
                "private_network",
                Value::Str(format!("projects/{PROJECT}/global/networks/flyte-vpc")),
            ),
            ("ipv4_enabled", Value::Bool(false)),
            ("ssl_mode", Value::Str("ENCRYPTED_ONLY".into())),
            ("backups_enabled", Value::Bool(true)),
            ("point_in_time_recovery", Value::Bool(true)),
            ("deletion_protection", Value::Bool(protect)),
            (
                "labels",
                Value::Map([("team".to_string(), Value::Str("ml".into()))].into()),
            ),
        ])
    }

    /// Creates an instance through the type and waits for it; answers its name.
    pub(crate) async fn ready_instance(c: &GcpClients, prefix: &str) -> String {
        let rt = build(c);
        let ins = inputs(prefix, false);
        let token = testutil::unique("tok");
        let id = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        id
    }

    async fn wait(
        rt: &Arc<dyn ResourceType>,
        id: &str,
        ins: &Attributes,
    ) -> (Result<Attributes, ProviderError>, Vec<String>) {
        let (p, sink) = progress(T);
        let mut w = requests::wait(T, id, ins);
        w.progress = p;
        let r = rt.wait_ready(w).await;
        (r, sink.statuses())
    }

    async fn gone_after_delete(rt: &Arc<dyn ResourceType>, id: &str, a: &Attributes) {
        let d = rt.delete(requests::delete(T, id, a)).await.unwrap();
        if !d.done {
            rt.wait_deleted(requests::wait(T, id, a)).await.unwrap();
        }
        assert!(
            rt.read(requests::read(T, id))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        // Deleting what is gone is success.
        assert!(rt.delete(requests::delete(T, id, a)).await.unwrap().done);
    }

    #[tokio::test]
    async fn sql_instance_lifecycle() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let prefix = testutil::unique("flyte-db");
        let ins = inputs(&prefix, false);
        let token = testutil::unique("fi-tok");

        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        assert_eq!(id, instance_name(&prefix, &token, 0));
        let (ready, statuses) = wait(&rt, &id, &ins).await;
        let ready = ready.unwrap();
        assert_eq!(
            statuses.first().map(String::as_str),
            Some("PENDING_CREATE"),
            "{statuses:?}"
        );
        assert_eq!(
            statuses.last().map(String::as_str),
            Some("RUNNABLE"),
            "{statuses:?}"
        );

        // Read equals the inputs plus the computed fields.
        let a = rt
            .read(requests::refresh(T, &id, &ins))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(a, ready);
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        assert_eq!(a["id"], Value::Str(id.clone()));
        assert_eq!(a["name"], Value::Str(id.clone()));
        assert!(
            a["private_ip"].as_str().unwrap().starts_with("10."),
            "{a:?}"
        );
        assert_eq!(
            a["connection_name"],
            Value::Str(format!("{PROJECT}:us-central1:{id}"))
        );
        assert!(
            a["self_link"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/instances/{id}"))
        );
        // An import (no prior inputs) reports every field.
        let imported = rt
            .read(requests::read(T, &id))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(imported, a);
        // Optional inputs the config does not set are not managed, so not reported.
        let mut partial = ins.clone();
        partial.remove("labels");
        partial.remove("ssl_mode");
        let p = rt
            .read(requests::refresh(T, &id, &partial))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert!(
            !p.contains_key("labels") && !p.contains_key("ssl_mode"),
            "{p:?}"
        );
        assert_eq!(p["private_ip"], a["private_ip"]);

        // Found by its token; another token finds nothing.
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other = rt
            .find(requests::find(T, &ins, "fi-other-1"))
            .await
            .unwrap();
        assert_eq!(other.id, None);

        // A retried create adopts its instance and makes it match the inputs again.
        let mut drifted = ins.clone();
        drifted.insert("tier".into(), Value::Str("db-custom-2-7680".into()));
        rt.update(requests::update(T, &id, &a, &drifted, &["tier"]))
            .await
            .unwrap();
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        let Completion::Ready(adopted) = again.completion else {
            panic!("a runnable instance is adopted ready");
        };
        assert_eq!(adopted, a);

        // Update the settings; the token label survives a label change.
        let mut new = ins.clone();
        new.insert("tier".into(), Value::Str("db-custom-4-15360".into()));
        new.insert("availability_type".into(), Value::Str("REGIONAL".into()));
        new.insert("point_in_time_recovery".into(), Value::Bool(false));
        // `team` changes, `env` is added.
        new.insert(
            "labels".into(),
            Value::Map(
                [
                    ("team".to_string(), Value::Str("data".into())),
                    ("env".to_string(), Value::Str("prod".into())),
                ]
                .into(),
            ),
        );
        let changed = [
            "tier",
            "availability_type",
            "point_in_time_recovery",
            "labels",
        ];
        let updated = rt
            .update(requests::update(T, &id, &a, &new, &changed))
            .await
            .unwrap()
            .attributes;
        let a2 = rt
            .read(requests::refresh(T, &id, &new))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(a2, updated);
        for (k, v) in &new {
            assert_eq!(a2.get(k), Some(v), "{k}");
        }
        assert_eq!(
            rt.find(requests::find(T, &new, &token))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );

        // A removed label is gone from the read.
        let mut fewer = new.clone();
        fewer.insert(
            "labels".into(),
            Value::Map([("env".to_string(), Value::Str("prod".into()))].into()),
        );
        let a3 = rt
            .update(requests::update(T, &id, &a2, &fewer, &["labels"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(a3["labels"], fewer["labels"]);
        let (new, a2) = (fewer, a3);

        // read_many answers in request order, missing ones as None.
        let many = rt
            .read_many(vec![
                requests::refresh(T, "no-such-instance", &new),
                requests::refresh(T, &id, &new),
            ])
            .await;
        assert!(many[0].as_ref().unwrap().attributes.is_none());
        assert_eq!(many[1].as_ref().unwrap().attributes.as_ref(), Some(&a2));

        gone_after_delete(&rt, &id, &a2).await;
    }

    #[tokio::test]
    async fn reserved_name_moves_to_the_next_suffix() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let prefix = testutil::unique("flyte-rsv");
        let token = testutil::unique("fi-tok");
        let first = instance_name(&prefix, &token, 0);
        testutil::double()
            .shared()
            .lock()
            .knobs
            .reserved_sql_names
            .insert(first.clone());
        let ins = inputs(&prefix, false);
        let id = rt
            .create(requests::create(T, &ins, &token))
            .await
            .unwrap()
            .id;
        assert_ne!(id, first);
        assert_eq!(id, instance_name(&prefix, &token, 1));
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // A retry of the same create walks the same names and adopts the second.
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(a["name"], Value::Str(id.clone()));
        gone_after_delete(&rt, &id, &a).await;
    }

    #[tokio::test]
    async fn failed_create_fails_fast_with_googles_message() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let prefix = testutil::unique("flyte-fail");
        let token = testutil::unique("fi-tok");
        let ins = inputs(&prefix, false);
        let message = format!("quota exceeded for {prefix}");
        let id = {
            let _g = OPS.write().await;
            {
                let mut w = testutil::double().shared().lock();
                w.knobs.fail_next_ops = 1;
                w.knobs.fail_message = message.clone();
            }
            let id = rt
                .create(requests::create(T, &ins, &token))
                .await
                .unwrap()
                .id;
            testutil::double().shared().lock().knobs.fail_next_ops = 0;
            id
        };
        let _g = OPS.read().await;
        let err = rt
            .wait_ready(requests::wait(T, &id, &ins))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Permanent);
        assert!(err.message.contains(&message), "{err}");
        // After a restart (no operation in memory) the FAILED state fails as fast, with
        // the message of the failed operation.
        let restarted = build(&c);
        let err = restarted
            .wait_ready(requests::wait(T, &id, &ins))
            .await
            .unwrap_err();
        assert!(
            err.message.contains("FAILED") && err.message.contains(&message),
            "{err}"
        );
        let a = restarted
            .read(requests::read(T, &id))
            .await
            .unwrap()
            .attributes
            .unwrap();
        gone_after_delete(&restarted, &id, &a).await;
    }

    #[tokio::test]
    async fn interrupted_create_is_found_and_finished() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let prefix = testutil::unique("flyte-int");
        let token = testutil::unique("fi-tok");
        let ins = inputs(&prefix, false);
        let id = {
            // The process that sent the insert dies before waiting.
            let rt = build(&c);
            rt.create(requests::create(T, &ins, &token))
                .await
                .unwrap()
                .id
        };
        let rt = build(&c);
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let (a, statuses) = wait(&rt, &id, &ins).await;
        let a = a.unwrap();
        assert!(
            statuses.iter().any(|s| s == "PENDING_CREATE"),
            "{statuses:?}"
        );
        assert!(a["private_ip"].as_str().is_some_and(|ip| !ip.is_empty()));
        gone_after_delete(&rt, &id, &a).await;
    }

    #[tokio::test]
    async fn deletion_protection_refuses_delete_until_off() {
        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let prefix = testutil::unique("flyte-prot");
        let ins = inputs(&prefix, true);
        let id = rt
            .create(requests::create(T, &ins, &testutil::unique("fi-tok")))
            .await
            .unwrap()
            .id;
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        assert_eq!(a["deletion_protection"], Value::Bool(true));
        let err = rt.delete(requests::delete(T, &id, &a)).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(err.message.contains("deletion_protection"), "{err}");
        assert!(
            rt.read(requests::read(T, &id))
                .await
                .unwrap()
                .attributes
                .is_some()
        );

        let mut off = ins.clone();
        off.insert("deletion_protection".into(), Value::Bool(false));
        let a = rt
            .update(requests::update(T, &id, &a, &off, &["deletion_protection"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(a["deletion_protection"], Value::Bool(false));
        gone_after_delete(&rt, &id, &a).await;
    }

    #[test]
    fn names_are_derived_from_the_token() {
        let a = instance_name("flyte", "fi-abc-1", 0);
        assert_eq!(a, instance_name("flyte", "fi-abc-1", 0));
        assert!(
            a.starts_with("flyte-") && a.len() == "flyte-".len() + 8,
            "{a}"
        );
        assert_ne!(a, instance_name("flyte", "fi-abc-1", 1));
        assert_ne!(a, instance_name("flyte", "fi-abc-2", 0));
        let s = schema();
        assert_eq!(s.deletion_protection, Some("deletion_protection"));
        assert!(s.holds_data);
    }
}

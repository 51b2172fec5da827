//! `aws_db_instance`: RDS PostgreSQL.
//!
//! The identifier is the id. RDS has no client tokens, so the create carries flyteinfra's
//! token as a tag: a create retried after a lost response adopts its own instance, while a
//! same-named instance made by someone else stays an `AlreadyExists` error.
//!
//! The master password cannot be read back from RDS: `read` reports the last applied one
//! (from the prior inputs), so it never shows as drift. It appears in no error message and
//! no attribute other than `password`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_rds::primitives::DateTimeFormat;
use aws_sdk_rds::types::{DbInstance as RdsInstance, Filter};
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Poller, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};

use super::db_subnet_group::{rds_tags, sync_tags, tag_map};
use crate::attrs::{self, TOKEN_TAG};
use crate::client::AwsClients;
use crate::error::{aws_err, not_found_is_none};

/// `aws_db_instance`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_db_instance",
        doc: "An RDS PostgreSQL instance: encrypted, private, backed up, deletion-protected by default.",
        fields: vec![
            Field::computed("id", "The cloud id (the identifier)."),
            Field::computed("arn", "The ARN."),
            Field::computed("address", "The endpoint host name."),
            Field::computed("port", "The endpoint port."),
            Field::input("identifier", "The instance identifier.")
                .required()
                .force_new(),
            Field::input("engine", "Always `postgres`.")
                .required()
                .force_new(),
            Field::input(
                "engine_version",
                "The pinned major version; AWS upgrades minors on its own.",
            )
            .required()
            .server_managed(),
            Field::input("instance_class", "The instance class."),
            Field::input("allocated_storage", "Storage in GiB."),
            Field::input("db_name", "The initial database.").force_new(),
            Field::input("username", "The master user.")
                .required()
                .force_new(),
            Field::input("password", "The master password.")
                .required()
                .sensitive(),
            Field::input("db_subnet_group_name", "The subnet group.").force_new(),
            Field::input("vpc_security_group_ids", "Security groups."),
            Field::input("storage_encrypted", "Encryption at rest.").force_new(),
            Field::input(
                "publicly_accessible",
                "Reachable from the internet (never, here).",
            ),
            Field::input("backup_retention_period", "Days of automated backups."),
            Field::input("deletion_protection", "Refuse deletion while on."),
            Field::input(
                "final_snapshot_identifier",
                "The final snapshot's name, before the creation-time suffix (see `create_time`).",
            ),
            Field::computed(
                "create_time",
                "When the instance was created (RFC 3339, UTC); the final snapshot taken on \
                 delete is named `<final_snapshot_identifier or id>-<YYYYMMDDhhmmss of this>`.",
            ),
            Field::input("tags", "Tags."),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(6 * 60),
        deletion_protection: Some("deletion_protection"),
    }
}

/// `aws_db_instance` over RDS.
pub fn build(clients: &AwsClients) -> Arc<dyn ResourceType> {
    Arc::new(DbInstance {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct DbInstance {
    clients: AwsClients,
    schema: Schema,
}

/// How long modifying an instance (apply immediately) usually takes.
const RDS_MODIFY: Duration = Duration::from_secs(5 * 60);
/// How long deleting an instance usually takes.
const RDS_DELETE: Duration = Duration::from_secs(5 * 60);

/// States an instance does not leave on its own: waiting further is pointless.
const TERMINAL: &[&str] = &[
    "failed",
    "incompatible-parameters",
    "incompatible-network",
    "storage-full",
    "inaccessible-encryption-credentials",
];

/// States in which a modified instance is usable (storage optimization can take hours
/// and does not block further changes for long).
const SETTLED: &[&str] = &["available", "storage-optimization"];

/// Fields sent with ModifyDBInstance (tags and the final snapshot name are not).
const MODIFIABLE: &[&str] = &[
    "instance_class",
    "allocated_storage",
    "password",
    "vpc_security_group_ids",
    "publicly_accessible",
    "backup_retention_period",
    "deletion_protection",
    "engine_version",
];

impl DbInstance {
    /// The instance called `id`, or `None`.
    async fn describe(&self, id: &str) -> Result<Option<RdsInstance>, ProviderError> {
        let out = self
            .clients
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
            .map_err(|e| aws_err("DescribeDBInstances", e));
        Ok(not_found_is_none(out)?.and_then(|o| {
            o.db_instances()
                .iter()
                .find(|d| same_id(d.db_instance_identifier(), id))
                .cloned()
        }))
    }

    /// Polls until `done` accepts the instance, reporting each new status and failing on a
    /// terminal one. `None` from `done` means "not yet".
    async fn poll<T>(
        &self,
        id: &str,
        progress: &Progress,
        what: &str,
        expected: Duration,
        mut done: impl FnMut(Option<&RdsInstance>) -> Option<T>,
    ) -> Result<T, ProviderError> {
        let mut last: Option<String> = None;
        let poller = Poller::start(self.clients.schedule(expected));
        loop {
            let db = self.describe(id).await?;
            if let Some(status) = db.as_ref().and_then(|d| d.db_instance_status()) {
                if last.as_deref() != Some(status) {
                    progress.status(status);
                    last = Some(status.to_string());
                }
                if TERMINAL.contains(&status) {
                    return Err(ProviderError::new(
                        ErrorKind::Permanent,
                        format!("DB instance `{id}` entered state `{status}` while {what}"),
                    ));
                }
            }
            if let Some(v) = done(db.as_ref()) {
                return Ok(v);
            }
            poller.sleep().await;
        }
    }

    /// Sends ModifyDBInstance for the changed fields (apply immediately).
    async fn modify(&self, req: &UpdateRequest) -> Result<bool, ProviderError> {
        let changed = |f: &str| req.changed.iter().any(|c| c == f);
        if !MODIFIABLE.iter().any(|f| changed(f)) {
            return Ok(false);
        }
        let inputs = &req.inputs;
        let mut m = self
            .clients
            .rds
            .modify_db_instance()
            .db_instance_identifier(&req.id)
            .apply_immediately(true);
        if changed("instance_class") {
            m = m.set_db_instance_class(attrs::opt_s(inputs, "instance_class").map(Into::into));
        }
        if changed("allocated_storage") {
            m = m.set_allocated_storage(int32(inputs, "allocated_storage")?);
        }
        if changed("password") {
            m = m.master_user_password(attrs::secret(inputs, "password")?);
        }
        if changed("vpc_security_group_ids") {
            m = m
                .set_vpc_security_group_ids(Some(attrs::strings(inputs, "vpc_security_group_ids")));
        }
        if changed("publicly_accessible") {
            m = m.set_publicly_accessible(attrs::b(inputs, "publicly_accessible"));
        }
        if changed("backup_retention_period") {
            m = m.set_backup_retention_period(int32(inputs, "backup_retention_period")?);
        }
        if changed("deletion_protection") {
            m = m.set_deletion_protection(attrs::b(inputs, "deletion_protection"));
        }
        if changed("engine_version") {
            let want = attrs::s(inputs, "engine_version")?;
            let have = attrs::opt_s(&req.prior, "engine_version").unwrap_or("");
            m = m.engine_version(want);
            if major(want) != major(have) {
                m = m.allow_major_version_upgrade(true);
            }
        }
        m.send()
            .await
            .map_err(|e| scrub(aws_err("ModifyDBInstance", e), inputs))?;
        Ok(true)
    }
}

#[async_trait]
impl ResourceType for DbInstance {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let db = self.describe(&req.id).await?;
        Ok(ReadResponse {
            attributes: db.map(|d| attributes(&d, &req.prior_inputs)),
        })
    }

    async fn read_many(&self, reqs: Vec<ReadRequest>) -> Vec<Result<ReadResponse, ProviderError>> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = reqs.iter().map(|r| r.id.clone()).collect();
        let mut found: BTreeMap<String, RdsInstance> = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .clients
                .rds
                .describe_db_instances()
                .filters(
                    Filter::builder()
                        .name("db-instance-id")
                        .set_values(Some(ids.clone()))
                        .build(),
                )
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| aws_err("DescribeDBInstances", e));
            let out = match out {
                Ok(o) => o,
                Err(e) => return reqs.iter().map(|_| Err(e.clone())).collect(),
            };
            for d in out.db_instances() {
                if let Some(id) = d.db_instance_identifier() {
                    found.insert(id.to_ascii_lowercase(), d.clone());
                }
            }
            match out.marker() {
                Some(m) if !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        reqs.iter()
            .map(|r| {
                Ok(ReadResponse {
                    attributes: found
                        .get(&r.id.to_ascii_lowercase())
                        .map(|d| attributes(d, &r.prior_inputs)),
                })
            })
            .collect()
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let id = attrs::s(&req.inputs, "identifier")?;
        // An instance of that name without this create's token is someone else's.
        let found = self
            .describe(id)
            .await?
            .filter(|d| tag_map(d.tag_list()).get(TOKEN_TAG) == Some(&req.token));
        Ok(FindResponse {
            id: found.map(|_| id.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let inputs = &req.inputs;
        let id = attrs::s(inputs, "identifier")?;
        let sent = self
            .clients
            .rds
            .create_db_instance()
            .db_instance_identifier(id)
            .engine(attrs::s(inputs, "engine")?)
            .engine_version(attrs::s(inputs, "engine_version")?)
            .set_db_instance_class(attrs::opt_s(inputs, "instance_class").map(Into::into))
            .set_allocated_storage(int32(inputs, "allocated_storage")?)
            .set_db_name(attrs::opt_s(inputs, "db_name").map(Into::into))
            .master_username(attrs::s(inputs, "username")?)
            .master_user_password(attrs::secret(inputs, "password")?)
            .set_db_subnet_group_name(attrs::opt_s(inputs, "db_subnet_group_name").map(Into::into))
            .set_vpc_security_group_ids(
                Some(attrs::strings(inputs, "vpc_security_group_ids")).filter(|v| !v.is_empty()),
            )
            .set_storage_encrypted(attrs::b(inputs, "storage_encrypted"))
            .publicly_accessible(attrs::b(inputs, "publicly_accessible").unwrap_or(false))
            .set_backup_retention_period(int32(inputs, "backup_retention_period")?)
            .set_deletion_protection(attrs::b(inputs, "deletion_protection"))
            .set_tags(Some(rds_tags(inputs, Some(&req.token))))
            .send()
            .await
            .map_err(|e| scrub(aws_err("CreateDBInstance", e), inputs));
        let db = match sent {
            Ok(out) => out.db_instance().cloned(),
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                // Ours (an earlier attempt whose answer was lost) only if it has our token.
                let existing = self.describe(id).await?;
                let ours = existing
                    .as_ref()
                    .is_some_and(|d| tag_map(d.tag_list()).get(TOKEN_TAG) == Some(&req.token));
                if !ours {
                    return Err(ProviderError::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "a DB instance named `{id}` already exists and was not created by \
                             this deployment; import it or choose another identifier"
                        ),
                    ));
                }
                existing
            }
            Err(e) => return Err(e),
        };
        let status = db
            .as_ref()
            .and_then(|d| d.db_instance_status())
            .unwrap_or("creating");
        req.progress.status(status);
        let completion = match &db {
            Some(d) if status == "available" => Completion::Ready(attributes(d, inputs)),
            _ => Completion::InProgress,
        };
        Ok(CreateResponse {
            id: id.to_string(),
            completion,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let db = self
            .poll(
                &req.id,
                &req.progress,
                "being created",
                self.schema.expected_create,
                |d| match d {
                    None => Some(None),
                    Some(d) if d.db_instance_status() == Some("available") => Some(Some(d.clone())),
                    Some(_) => None,
                },
            )
            .await?;
        let db = db.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("`{}` disappeared while being created", req.address),
            )
        })?;
        Ok(attributes(&db, &req.inputs))
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let modified = self.modify(&req).await?;
        if req.changed.iter().any(|c| c == "tags") {
            let arn = match attrs::opt_s(&req.prior, "arn") {
                Some(a) => a.to_string(),
                None => self
                    .describe(&req.id)
                    .await?
                    .and_then(|d| d.db_instance_arn().map(str::to_string))
                    .ok_or_else(|| gone(&req.id))?,
            };
            sync_tags(&self.clients.rds, &arn, &req.inputs).await?;
        }
        // RDS applies a modification asynchronously: wait until it has taken effect, so the
        // attributes returned are the new ones.
        let db = self
            .poll(
                &req.id,
                &req.progress,
                "being modified",
                RDS_MODIFY,
                |d| match d {
                    None => Some(None),
                    Some(d) if !modified || settled(d) => Some(Some(d.clone())),
                    Some(_) => None,
                },
            )
            .await?
            .ok_or_else(|| gone(&req.id))?;
        Ok(UpdateResponse {
            attributes: attributes(&db, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        if attrs::b(&req.attributes, "deletion_protection") == Some(true) {
            return Err(ProviderError::new(
                ErrorKind::InvalidInput,
                format!(
                    "DB instance `{}` has `deletion_protection` on: set it to false and apply \
                     before deleting",
                    req.id
                ),
            ));
        }
        let snapshot = match final_snapshot_name(&req.id, &req.attributes) {
            Some(name) => name,
            // Attributes recorded before `create_time` was: read it (one call, once).
            None => {
                let mut a = req.attributes.clone();
                match self.describe(&req.id).await? {
                    Some(d) => a.extend(attributes(&d, &req.attributes)),
                    None => return Ok(DeleteResponse { done: true }),
                }
                final_snapshot_name(&req.id, &a).ok_or_else(|| {
                    ProviderError::new(
                        ErrorKind::Permanent,
                        format!("DB instance `{}` reports no creation time", req.id),
                    )
                })?
            }
        };
        let sent = self
            .clients
            .rds
            .delete_db_instance()
            .db_instance_identifier(&req.id)
            .skip_final_snapshot(false)
            .final_db_snapshot_identifier(&snapshot)
            .send()
            .await
            .map_err(|e| aws_err("DeleteDBInstance", e));
        match sent {
            Ok(_) => {
                req.progress.status("deleting");
                Ok(DeleteResponse { done: false })
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            // A retried delete whose first attempt went through: already deleting.
            Err(e) if e.kind == ErrorKind::Conflict => match self.describe(&req.id).await? {
                None => Ok(DeleteResponse { done: true }),
                Some(d) if d.db_instance_status() == Some("deleting") => {
                    Ok(DeleteResponse { done: false })
                }
                Some(_) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        self.poll(&req.id, &req.progress, "being deleted", RDS_DELETE, |d| {
            d.is_none().then_some(())
        })
        .await
    }

    fn final_snapshot(&self, id: &str, attributes: &Attributes) -> Option<String> {
        final_snapshot_name(id, attributes)
    }
}

/// The final snapshot `delete` takes (and plans show): `final_snapshot_identifier` (or the
/// instance id) and the instance's creation time, `<base>-YYYYMMDDhhmmss`. The creation time
/// makes it one name per instance, known before the delete (a plan shows it) and the same on
/// every attempt, while a later instance of the same identifier gets its own. `None` when
/// the attributes hold no creation time.
pub fn final_snapshot_name(id: &str, attributes: &Attributes) -> Option<String> {
    let base = attrs::opt_s(attributes, "final_snapshot_identifier").unwrap_or(id);
    // `2025-01-02T03:04:05Z` (fractions, if any, dropped) → `20250102030405`.
    let stamp: String = attrs::opt_s(attributes, "create_time")?
        .chars()
        .take_while(|c| *c != '.' && *c != 'Z' && *c != '+')
        .filter(char::is_ascii_digit)
        .collect();
    (stamp.len() == 14).then(|| format!("{base}-{stamp}"))
}

/// The attributes of `d`. The password and the final snapshot name cannot be read from
/// RDS: they are the prior inputs' (so they never show as drift).
fn attributes(d: &RdsInstance, prior_inputs: &Attributes) -> Attributes {
    let mut a = Attributes::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            a.insert(k.to_string(), v);
        }
    };
    let st = |s: Option<&str>| s.map(|s| Value::Str(s.to_string()));
    let id = d.db_instance_identifier();
    put("id", st(id));
    put("identifier", st(id));
    put("arn", st(d.db_instance_arn()));
    put("address", st(d.endpoint().and_then(|e| e.address())));
    put(
        "port",
        d.endpoint()
            .and_then(|e| e.port())
            .map(|p| Value::Int(p.into())),
    );
    put("engine", st(d.engine()));
    // RDS reports the full version (`16.4`) and upgrades minors on its own; the input pins a
    // plain major. On import (no prior input) the major is what a config can match, so an
    // imported `16.x` instance shows no difference from `engine_version: "16"`.
    let version = match d.engine_version() {
        Some(v) if !prior_inputs.contains_key("engine_version") => Some(major(v)),
        v => v,
    };
    put("engine_version", st(version));
    put("instance_class", st(d.db_instance_class()));
    put(
        "allocated_storage",
        d.allocated_storage().map(|v| Value::Int(v.into())),
    );
    put("db_name", st(d.db_name()));
    put("username", st(d.master_username()));
    put("password", prior_inputs.get("password").cloned());
    put(
        "db_subnet_group_name",
        st(d.db_subnet_group().and_then(|g| g.db_subnet_group_name())),
    );
    put(
        "vpc_security_group_ids",
        Some(attrs::unordered(
            d.vpc_security_groups()
                .iter()
                .filter(|m| m.status() != Some("removing"))
                .filter_map(|m| m.vpc_security_group_id().map(str::to_string))
                .collect(),
            prior_inputs.get("vpc_security_group_ids"),
        )),
    );
    put("storage_encrypted", d.storage_encrypted().map(Value::Bool));
    put(
        "publicly_accessible",
        d.publicly_accessible().map(Value::Bool),
    );
    put(
        "backup_retention_period",
        d.backup_retention_period().map(|v| Value::Int(v.into())),
    );
    put(
        "deletion_protection",
        d.deletion_protection().map(Value::Bool),
    );
    put(
        "final_snapshot_identifier",
        prior_inputs.get("final_snapshot_identifier").cloned(),
    );
    put(
        "create_time",
        d.instance_create_time()
            .and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
            .map(Value::Str),
    );
    put("tags", Some(attrs::tags_value(tag_map(d.tag_list()))));
    a
}

/// Whether a modification has taken effect: a usable state, nothing pending that
/// flyteinfra changes, and no security group still being added or removed.
fn settled(d: &RdsInstance) -> bool {
    let status_ok = d.db_instance_status().is_some_and(|s| SETTLED.contains(&s));
    let pending = d.pending_modified_values().is_some_and(|p| {
        p.db_instance_class().is_some()
            || p.allocated_storage().is_some()
            || p.master_user_password().is_some()
            || p.backup_retention_period().is_some()
            || p.engine_version().is_some()
    });
    let groups_moving = d
        .vpc_security_groups()
        .iter()
        .any(|m| matches!(m.status(), Some("adding" | "removing")));
    status_ok && !pending && !groups_moving
}

/// RDS identifiers are case-insensitive (stored lowercase).
fn same_id(have: Option<&str>, want: &str) -> bool {
    have.is_some_and(|h| h.eq_ignore_ascii_case(want))
}

/// The major version: `16` of `16.3`.
fn major(v: &str) -> &str {
    v.split('.').next().unwrap_or(v)
}

/// An optional integer input that RDS takes as `i32`.
fn int32(a: &Attributes, key: &str) -> Result<Option<i32>, ProviderError> {
    attrs::i(a, key)
        .map(|v| {
            i32::try_from(v).map_err(|_| {
                ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!("input `{key}` is out of range: {v}"),
                )
            })
        })
        .transpose()
}

/// Removes the password from an error message, should the cloud ever echo it.
fn scrub(mut e: ProviderError, inputs: &Attributes) -> ProviderError {
    if let Some(pw) = attrs::opt_secret(inputs, "password").filter(|p| !p.is_empty()) {
        e.message = e.message.replace(pw, "(sensitive)");
    }
    e
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("DB instance `{id}` no longer exists"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::db_subnet_group::fixtures;
    use crate::testutil;
    use flyteinfra_core::{Address, Event, EventKind, Observer};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Event>>);

    impl Observer for Collect {
        fn on_event(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl Collect {
        fn statuses(&self) -> Vec<String> {
            self.0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|e| match &e.kind {
                    EventKind::Status(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        }
    }

    const PASSWORD: &str = "s3cret-Passw0rd-xyz";

    struct Env {
        c: AwsClients,
        rt: Arc<dyn ResourceType>,
        group: String,
        sgs: Vec<String>,
    }

    async fn env(octet: u8) -> Env {
        let c = testutil::clients().await;
        let (vpc, subnets) = fixtures::network(&c, octet).await;
        let group = testutil::unique("dbsg");
        c.rds
            .create_db_subnet_group()
            .db_subnet_group_name(&group)
            .db_subnet_group_description("test")
            .set_subnet_ids(Some(subnets))
            .send()
            .await
            .unwrap();
        let mut sgs = Vec::new();
        for _ in 0..2 {
            let sg = c
                .ec2
                .create_security_group()
                .group_name(testutil::unique("db-sg"))
                .description("test")
                .vpc_id(&vpc)
                .send()
                .await
                .unwrap();
            sgs.push(sg.group_id().unwrap().to_string());
        }
        sgs.sort();
        let rt = build(&c);
        Env { c, rt, group, sgs }
    }

    fn strs(v: &[String]) -> Value {
        Value::List(v.iter().cloned().map(Value::Str).collect())
    }

    fn inputs(e: &Env, id: &str, protect: bool) -> Attributes {
        attrs::attrs([
            ("identifier", Value::Str(id.into())),
            ("engine", Value::Str("postgres".into())),
            ("engine_version", Value::Str("16".into())),
            ("instance_class", Value::Str("db.t3.micro".into())),
            ("allocated_storage", Value::Int(20)),
            ("db_name", Value::Str("flyte".into())),
            ("username", Value::Str("flyte".into())),
            ("password", Value::Str(PASSWORD.into())),
            ("db_subnet_group_name", Value::Str(e.group.clone())),
            ("vpc_security_group_ids", strs(&e.sgs[..1])),
            ("storage_encrypted", Value::Bool(true)),
            ("publicly_accessible", Value::Bool(false)),
            ("backup_retention_period", Value::Int(7)),
            ("deletion_protection", Value::Bool(protect)),
            (
                "final_snapshot_identifier",
                Value::Str(format!("{id}-final")),
            ),
            (
                "tags",
                Value::Map(
                    [("Name", "db"), ("team", "infra")]
                        .iter()
                        .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                        .collect(),
                ),
            ),
        ])
    }

    fn addr() -> Address {
        Address::new("aws_db_instance", "main")
    }

    async fn create(e: &Env, inputs: &Attributes, token: &str, sink: Arc<Collect>) -> String {
        let resp =
            e.rt.create(CreateRequest {
                address: addr(),
                inputs: inputs.clone(),
                token: token.into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::new(addr(), sink),
            })
            .await
            .unwrap();
        resp.id
    }

    async fn read(e: &Env, id: &str, prior: &Attributes) -> Option<Attributes> {
        e.rt.read(ReadRequest {
            address: addr(),
            id: id.into(),
            prior_inputs: prior.clone(),
            prior_attributes: Attributes::new(),
        })
        .await
        .unwrap()
        .attributes
    }

    async fn delete(e: &Env, id: &str, attributes: &Attributes) -> Result<bool, ProviderError> {
        e.rt.delete(DeleteRequest {
            address: addr(),
            id: id.into(),
            attributes: attributes.clone(),
            force: false,
            progress: Progress::none(addr()),
        })
        .await
        .map(|r| r.done)
    }

    /// No attribute but `password` carries the password.
    fn assert_password_only_in_its_field(a: &Attributes) {
        for (k, v) in a {
            if k != "password" {
                assert!(!v.to_json().to_string().contains(PASSWORD), "{k} leaks it");
            }
        }
    }

    #[tokio::test]
    async fn lifecycle_against_moto() {
        let e = env(41).await;
        let id = testutil::unique("flyte-db");
        let ins = inputs(&e, &id, false);
        let sink = Arc::new(Collect::default());
        assert_eq!(create(&e, &ins, "tok-a", sink.clone()).await, id);
        let ready =
            e.rt.wait_ready(WaitRequest {
                address: addr(),
                id: id.clone(),
                inputs: ins.clone(),
                progress: Progress::new(addr(), sink.clone()),
            })
            .await
            .unwrap();
        // moto is `available` at once; RDS goes creating → backing-up → available.
        let statuses = sink.statuses();
        assert!(statuses.iter().any(|s| s == "available"), "{statuses:?}");

        // Retried create with the same token adopts; another token is AlreadyExists.
        assert_eq!(create(&e, &ins, "tok-a", sink.clone()).await, id);
        let other =
            e.rt.create(CreateRequest {
                address: addr(),
                inputs: ins.clone(),
                token: "tok-b".into(),
                fresh: false,
                sent_at: Some(std::time::SystemTime::now()),
                progress: Progress::none(addr()),
            })
            .await
            .unwrap_err();
        assert_eq!(other.kind, ErrorKind::AlreadyExists);
        assert!(!other.message.contains(PASSWORD));

        let found =
            e.rt.find(FindRequest {
                address: addr(),
                inputs: ins.clone(),
                token: "tok-a".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // Another create's token finds nothing: the instance is not that create's.
        let other =
            e.rt.find(FindRequest {
                address: addr(),
                inputs: ins.clone(),
                token: "tok-b".into(),
                sent_at: Some(std::time::SystemTime::now()),
            })
            .await
            .unwrap();
        assert_eq!(other.id, None);

        let a = read(&e, &id, &ins).await.unwrap();
        assert_eq!(a, ready);
        assert_eq!(a["id"], Value::Str(id.clone()));
        assert_eq!(a["identifier"], Value::Str(id.clone()));
        assert_eq!(
            a["arn"],
            Value::Str(format!("arn:aws:rds:us-east-1:123456789012:db:{id}"))
        );
        assert!(
            a["address"].as_str().unwrap().starts_with(&id),
            "{:?}",
            a["address"]
        );
        assert_eq!(a["port"], Value::Int(5432));
        assert_eq!(a["engine"], Value::Str("postgres".into()));
        // The full version as the cloud reports it (moto echoes what was sent).
        let v = a["engine_version"].as_str().unwrap();
        assert!(v == "16" || v.starts_with("16."), "{v}");
        assert_eq!(a["instance_class"], Value::Str("db.t3.micro".into()));
        assert_eq!(a["allocated_storage"], Value::Int(20));
        assert_eq!(a["db_name"], Value::Str("flyte".into()));
        assert_eq!(a["username"], Value::Str("flyte".into()));
        assert_eq!(a["password"], Value::Str(PASSWORD.into()));
        assert_eq!(a["db_subnet_group_name"], Value::Str(e.group.clone()));
        assert_eq!(a["vpc_security_group_ids"], strs(&e.sgs[..1]));
        assert_eq!(a["storage_encrypted"], Value::Bool(true));
        assert_eq!(a["publicly_accessible"], Value::Bool(false));
        assert_eq!(a["backup_retention_period"], Value::Int(7));
        assert_eq!(a["deletion_protection"], Value::Bool(false));
        assert_eq!(
            a["final_snapshot_identifier"],
            ins["final_snapshot_identifier"]
        );
        assert_eq!(a["tags"], ins["tags"]);
        assert_password_only_in_its_field(&a);
        // Without prior inputs (import) the password is simply unknown.
        let imported = read(&e, &id, &Attributes::new()).await.unwrap();
        assert!(!imported.contains_key("password"));
        assert_password_only_in_its_field(&imported);

        // Update every modifiable field plus tags.
        let mut new = ins.clone();
        new.insert("instance_class".into(), Value::Str("db.t3.small".into()));
        new.insert("allocated_storage".into(), Value::Int(30));
        new.insert("password".into(), Value::Str(format!("{PASSWORD}-2")));
        new.insert("vpc_security_group_ids".into(), strs(&e.sgs));
        new.insert("backup_retention_period".into(), Value::Int(14));
        new.insert(
            "tags".into(),
            Value::Map([("Name".to_string(), Value::Str("db2".into()))].into()),
        );
        let changed = [
            "instance_class",
            "allocated_storage",
            "password",
            "vpc_security_group_ids",
            "backup_retention_period",
            "tags",
        ];
        let sink = Arc::new(Collect::default());
        let updated =
            e.rt.update(UpdateRequest {
                address: addr(),
                id: id.clone(),
                prior: a.clone(),
                inputs: new.clone(),
                changed: changed.iter().map(|s| s.to_string()).collect(),
                progress: Progress::new(addr(), sink.clone()),
            })
            .await
            .unwrap()
            .attributes;
        assert!(sink.statuses().iter().any(|s| s == "available"));
        let a = read(&e, &id, &new).await.unwrap();
        assert_eq!(a, updated);
        assert_eq!(a["instance_class"], Value::Str("db.t3.small".into()));
        assert_eq!(a["allocated_storage"], Value::Int(30));
        assert_eq!(a["password"], new["password"]);
        assert_eq!(a["vpc_security_group_ids"], strs(&e.sgs));
        assert_eq!(a["backup_retention_period"], Value::Int(14));
        assert_eq!(a["tags"], new["tags"]);
        // The token tag survived the tag sync.
        let raw =
            e.c.rds
                .list_tags_for_resource()
                .resource_name(a["arn"].as_str().unwrap())
                .send()
                .await
                .unwrap();
        assert_eq!(
            tag_map(raw.tag_list()).get(TOKEN_TAG).map(String::as_str),
            Some("tok-a")
        );

        // Delete: a final snapshot named as `final_snapshot` (and a plan) says.
        let named = e.rt.final_snapshot(&id, &a).expect("a final snapshot name");
        assert!(named.starts_with(&format!("{id}-final-")), "{named}");
        assert!(!delete(&e, &id, &a).await.unwrap());
        e.rt.wait_deleted(WaitRequest {
            address: addr(),
            id: id.clone(),
            inputs: new.clone(),
            progress: Progress::none(addr()),
        })
        .await
        .unwrap();
        assert_eq!(read(&e, &id, &new).await, None);
        let snaps =
            e.c.rds
                .describe_db_snapshots()
                .db_instance_identifier(&id)
                .send()
                .await
                .unwrap();
        let names: Vec<&str> = snaps
            .db_snapshots()
            .iter()
            .filter_map(|s| s.db_snapshot_identifier())
            .collect();
        assert_eq!(names, [named.as_str()], "{snaps:?}");
        // Gone is success.
        assert!(delete(&e, &id, &a).await.unwrap());
    }

    #[tokio::test]
    async fn deletion_protection_refuses_delete() {
        let e = env(42).await;
        let id = testutil::unique("protected-db");
        let ins = inputs(&e, &id, true);
        create(&e, &ins, "tok", Arc::new(Collect::default())).await;
        let a = read(&e, &id, &ins).await.unwrap();
        assert_eq!(a["deletion_protection"], Value::Bool(true));
        let err = delete(&e, &id, &a).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput);
        assert!(
            err.message.contains("deletion_protection"),
            "{}",
            err.message
        );
        assert!(read(&e, &id, &ins).await.is_some());

        // Turned off, the delete goes through; without a snapshot name the id is the base.
        let mut off = ins.clone();
        off.insert("deletion_protection".into(), Value::Bool(false));
        off.remove("final_snapshot_identifier");
        let a =
            e.rt.update(UpdateRequest {
                address: addr(),
                id: id.clone(),
                prior: a,
                inputs: off.clone(),
                changed: vec!["deletion_protection".into()],
                progress: Progress::none(addr()),
            })
            .await
            .unwrap()
            .attributes;
        assert_eq!(a["deletion_protection"], Value::Bool(false));
        assert!(!a.contains_key("final_snapshot_identifier"));
        // Attributes from before `create_time` was recorded: the delete reads it.
        let mut old = a.clone();
        old.remove("create_time");
        assert!(!delete(&e, &id, &old).await.unwrap());
        let snaps =
            e.c.rds
                .describe_db_snapshots()
                .db_instance_identifier(&id)
                .send()
                .await
                .unwrap();
        let want = final_snapshot_name(&id, &a).unwrap();
        assert!(
            snaps
                .db_snapshots()
                .iter()
                .any(|s| s.db_snapshot_identifier() == Some(want.as_str())),
            "{want} not in {snaps:?}"
        );
    }

    #[test]
    fn final_snapshot_name_is_the_base_and_the_creation_time() {
        let a = |pairs: &[(&str, &str)]| -> Attributes {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect()
        };
        let created = ("create_time", "2025-01-02T03:04:05Z");
        assert_eq!(
            final_snapshot_name(
                "db",
                &a(&[created, ("final_snapshot_identifier", "x-final")])
            ),
            Some("x-final-20250102030405".into())
        );
        assert_eq!(
            final_snapshot_name("db", &a(&[("create_time", "2025-01-02T03:04:05.678Z")])),
            Some("db-20250102030405".into())
        );
        assert_eq!(final_snapshot_name("db", &a(&[])), None);
        assert_eq!(
            final_snapshot_name("db", &a(&[("create_time", "soon")])),
            None
        );
    }

    #[tokio::test]
    async fn read_many_answers_in_order() {
        let e = env(43).await;
        let ids = [testutil::unique("many-db"), testutil::unique("many-db")];
        let mut all = Vec::new();
        for id in &ids {
            let ins = inputs(&e, id, false);
            create(&e, &ins, "tok", Arc::new(Collect::default())).await;
            all.push(ins);
        }
        let req = |id: &str, prior: &Attributes| ReadRequest {
            address: addr(),
            id: id.into(),
            prior_inputs: prior.clone(),
            prior_attributes: Attributes::new(),
        };
        let out =
            e.rt.read_many(vec![
                req(&ids[1], &all[1]),
                req("missing-db", &Attributes::new()),
                req(&ids[0], &all[0]),
            ])
            .await;
        assert_eq!(out.len(), 3);
        let got: Vec<Option<Attributes>> = out.into_iter().map(|r| r.unwrap().attributes).collect();
        assert_eq!(got[0].as_ref().unwrap()["id"], Value::Str(ids[1].clone()));
        assert_eq!(
            got[0].as_ref().unwrap()["password"],
            Value::Str(PASSWORD.into())
        );
        assert_eq!(got[1], None);
        assert_eq!(got[2].as_ref().unwrap()["id"], Value::Str(ids[0].clone()));
        assert_eq!(got[2], read(&e, &ids[0], &all[0]).await);
        assert!(e.rt.read_many(Vec::new()).await.is_empty());
    }

    #[test]
    fn errors_never_carry_the_password() {
        let ins = attrs::attrs([("password", Value::Str(PASSWORD.into()))]);
        let e = scrub(
            ProviderError::new(
                ErrorKind::InvalidInput,
                format!("InvalidParameterValue: bad password {PASSWORD}"),
            ),
            &ins,
        );
        assert!(!e.message.contains(PASSWORD), "{}", e.message);
        assert_eq!(major("16.3"), "16");
        assert_eq!(major("16"), "16");
    }
}

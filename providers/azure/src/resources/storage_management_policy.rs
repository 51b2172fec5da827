//! `azure_storage_management_policy`: the lifecycle rules of a storage account.
//!
//! The policy is the account's singleton `managementPolicies/default`: it has no name of
//! its own, no tags and no metadata, so it carries no token. It is taken as part of a
//! proven account: the account (flyteinfra's by its token tag, or the user's by import) is
//! the proof of ownership, and inside it the one policy is flyteinfra's to set — a create
//! replaces whatever policy the account holds, as a retried create replaces its own.
//!
//! Each rule deletes base blobs `delete_after_days` days after their last modification and
//! blob versions as many days after they were made, for block blobs under its prefix.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use serde_json::{Value as Json, json};

use super::common::{id_value, managed_only, str_at};
use super::storage_account::API;
use crate::client::ArmClient;

const WHAT: &str = "storage management policy";

/// `azure_storage_management_policy`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_storage_management_policy",
        doc: "The lifecycle management policy of a storage account (its singleton `default`, \
              taken as part of the account): each rule deletes block blobs under a prefix, \
              and their versions, after a number of days.",
        fields: vec![
            Field::computed(
                "id",
                "The policy's resource id (`…/managementPolicies/default`).",
            ),
            Field::input("account_id", "The storage account's resource id.")
                .required()
                .force_new(),
            Field::input(
                "rules",
                "Rules: maps of `name` (unique), `prefix` (`container/path/`) and \
                 `delete_after_days` (days after modification for blobs, after creation for \
                 versions).",
            )
            .required(),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `azure_storage_management_policy` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(ManagementPolicy {
        client: client.clone(),
        schema: schema(),
    })
}

struct ManagementPolicy {
    client: ArmClient,
    schema: Schema,
}

fn path(inputs: &Attributes) -> Result<String, ProviderError> {
    let account = attrs::s(inputs, "account_id")?.trim_end_matches('/');
    Ok(format!("{account}/managementPolicies/default"))
}

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidInput, message)
}

/// The policy body of the inputs' rules, checked.
fn policy_body(inputs: &Attributes) -> Result<Json, ProviderError> {
    let rules = inputs
        .get("rules")
        .and_then(Value::as_list)
        .unwrap_or_default();
    if rules.is_empty() {
        return Err(invalid(format!(
            "{WHAT}: `rules` is empty; Azure holds no empty policy (delete the resource instead)"
        )));
    }
    let mut names = Vec::new();
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let m = r.as_map().ok_or_else(|| {
            invalid(format!(
                "{WHAT}: rule {i} is not a map of name, prefix, delete_after_days"
            ))
        })?;
        let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() || names.contains(&name) {
            return Err(invalid(format!(
                "{WHAT}: rule {i} needs a `name` of its own (got `{name}`)"
            )));
        }
        names.push(name);
        let days = m
            .get("delete_after_days")
            .and_then(Value::as_int)
            .filter(|d| *d >= 0)
            .ok_or_else(|| {
                invalid(format!(
                    "{WHAT}: rule `{name}` needs `delete_after_days`, 0 or more"
                ))
            })?;
        let mut filters = json!({ "blobTypes": ["blockBlob"] });
        if let Some(p) = m.get("prefix").and_then(Value::as_str) {
            filters["prefixMatch"] = json!([p]);
        }
        out.push(json!({
            "enabled": true,
            "name": name,
            "type": "Lifecycle",
            "definition": {
                "actions": {
                    "baseBlob": { "delete": { "daysAfterModificationGreaterThan": days } },
                    "version": { "delete": { "daysAfterCreationGreaterThan": days } },
                },
                "filters": filters,
            },
        }));
    }
    Ok(json!({ "properties": { "policy": { "rules": out } } }))
}

/// One rule of the cloud's policy in the inputs' shape. What flyteinfra would not have
/// written shows as extra keys (`enabled: false`, `version_delete_after_days`), so it is
/// drift.
fn rule_value(rule: &Json) -> Value {
    let mut m = BTreeMap::new();
    m.insert("name".to_string(), Value::from(str_at(rule, "/name")));
    let def = &rule["definition"];
    if let Some(p) = def["filters"]["prefixMatch"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Json::as_str)
    {
        m.insert("prefix".to_string(), Value::from(p));
    }
    let base = def
        .pointer("/actions/baseBlob/delete/daysAfterModificationGreaterThan")
        .and_then(Json::as_i64);
    let version = def
        .pointer("/actions/version/delete/daysAfterCreationGreaterThan")
        .and_then(Json::as_i64);
    if let Some(d) = base {
        m.insert("delete_after_days".to_string(), Value::Int(d));
    }
    if version != base {
        m.insert(
            "version_delete_after_days".to_string(),
            version.map_or(Value::Null, Value::Int),
        );
    }
    if rule["enabled"].as_bool() == Some(false) {
        m.insert("enabled".to_string(), Value::Bool(false));
    }
    Value::Map(m)
}

/// The attributes of `body` (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior_inputs: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let account = cloud_id
        .rsplit_once("/managementPolicies/")
        .map_or("", |(a, _)| a);
    let rules = body
        .pointer("/properties/policy/rules")
        .and_then(Json::as_array)
        .map(|r| r.iter().map(rule_value).collect())
        .unwrap_or_default();
    attrs::attrs([
        ("id", id_value(cloud_id, Some(&Value::from(id)))),
        (
            "account_id",
            id_value(account, prior_inputs.get("account_id")),
        ),
        ("rules", Value::List(rules)),
    ])
}

impl ManagementPolicy {
    /// PUTs the inputs' policy (synchronous) and returns its attributes.
    async fn put(&self, id: &str, inputs: &Attributes) -> Result<Attributes, ProviderError> {
        let body = policy_body(inputs)?;
        let answer = self.client.put(id, API, &body).await?;
        let body = if answer.body.pointer("/properties/policy").is_some() {
            answer.body
        } else {
            self.client.get(id, API).await?.ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!("{WHAT} `{id}` disappeared after it was set"),
                )
            })?
        };
        Ok(managed_only(
            attributes(id, &body, inputs),
            inputs,
            &self.schema,
        ))
    }
}

#[async_trait]
impl ResourceType for ManagementPolicy {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self.client.get(&req.id, API).await?.map(|b| {
                managed_only(
                    attributes(&req.id, &b, &req.prior_inputs),
                    &req.prior_inputs,
                    &self.schema,
                )
            }),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        // The account's one policy is part of the account (see the module doc).
        let path = path(&req.inputs)?;
        Ok(FindResponse {
            id: self.client.get(&path, API).await?.map(|_| path),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = path(&req.inputs)?;
        let a = self.put(&path, &req.inputs).await?;
        Ok(CreateResponse {
            id: path,
            completion: Completion::Ready(a),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        // Only `rules` changes in place; the policy is replaced whole.
        Ok(UpdateResponse {
            attributes: self.put(&req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        self.client.delete(&req.id, API).await?;
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::storage_account::tests::plant_account;
    use crate::testutil;
    use flyteinfra_core::requests;

    const T: &str = "azure_storage_management_policy";

    fn rule(name: &str, prefix: &str, days: i64) -> Value {
        Value::Map(
            [
                ("name".to_string(), Value::from(name)),
                ("prefix".to_string(), Value::from(prefix)),
                ("delete_after_days".to_string(), Value::Int(days)),
            ]
            .into(),
        )
    }

    fn inputs(account: &str, rules: Vec<Value>) -> Attributes {
        attrs::attrs([
            ("account_id", account.into()),
            ("rules", Value::List(rules)),
        ])
    }

    async fn refresh(rt: &Arc<dyn ResourceType>, id: &str, ins: &Attributes) -> Attributes {
        rt.read(requests::refresh(T, id, ins))
            .await
            .unwrap()
            .attributes
            .unwrap()
    }

    #[tokio::test]
    async fn storage_policy_lifecycle() {
        let (c, d) = (testutil::client(), testutil::double());
        let account = plant_account(d);
        let rt = build(&c);
        let ins = inputs(
            &account,
            vec![
                rule("raw-data-expiry", "flyte-data/", 30),
                rule("tmp-expiry", "flyte-data/tmp/", 1),
            ],
        );
        let created = rt
            .create(requests::create(T, &ins, "fi-tok"))
            .await
            .unwrap();
        let id = created.id;
        assert_eq!(id, format!("{account}/managementPolicies/default"));
        let Completion::Ready(ready) = created.completion else {
            panic!("a policy is ready when its create answers");
        };
        let mut want = ins.clone();
        want.insert("id".into(), Value::from(id.as_str()));
        assert_eq!(ready, want, "the rules round-trip");
        assert_eq!(refresh(&rt, &id, &ins).await, ready);
        let imported = rt.read(requests::read(T, &id)).await.unwrap().attributes;
        assert_eq!(imported.as_ref(), Some(&ready));
        {
            let stored = d.shared().lock().resource(&id).unwrap();
            let r = &stored["properties"]["policy"]["rules"][0];
            assert_eq!(r["enabled"], true);
            assert_eq!(r["type"], "Lifecycle");
            let def = &r["definition"];
            assert_eq!(
                def["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"],
                30
            );
            assert_eq!(
                def["actions"]["version"]["delete"]["daysAfterCreationGreaterThan"],
                30
            );
            assert_eq!(def["filters"]["blobTypes"], json!(["blockBlob"]));
            assert_eq!(def["filters"]["prefixMatch"], json!(["flyte-data/"]));
        }
        let found = rt.find(requests::find(T, &ins, "fi-tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));

        // An update changes the days.
        let new = inputs(
            &account,
            vec![
                rule("raw-data-expiry", "flyte-data/", 14),
                rule("tmp-expiry", "flyte-data/tmp/", 1),
            ],
        );
        let up = rt
            .update(requests::update(T, &id, &ready, &new, &["rules"]))
            .await
            .unwrap();
        let a = refresh(&rt, &id, &new).await;
        assert_eq!(a, up.attributes);
        assert_eq!(a["rules"], new["rules"]);
        let stored = d.shared().lock().resource(&id).unwrap();
        assert_eq!(
            stored.pointer("/properties/policy/rules/0/definition/actions/version/delete/daysAfterCreationGreaterThan"),
            Some(&json!(14))
        );

        // A rule disabled out of band is drift.
        d.shared().lock().resource_mut(&id).unwrap()["properties"]["policy"]["rules"][1]["enabled"] =
            json!(false);
        assert_ne!(refresh(&rt, &id, &new).await["rules"], new["rules"]);

        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        assert!(
            rt.read(requests::read(T, &id))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(d.shared().lock().resource(&id).is_none());
        assert!(
            d.shared().lock().resource(&account).is_some(),
            "the account stays"
        );
        assert!(rt.delete(requests::delete(T, &id, &a)).await.unwrap().done);
        let none = rt.find(requests::find(T, &ins, "fi-tok")).await.unwrap();
        assert_eq!(none.id, None);
    }

    #[test]
    fn storage_policy_rules_are_checked() {
        let a = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a";
        for rules in [
            vec![],
            vec![rule("x", "p/", 1), rule("x", "q/", 2)],
            vec![rule("", "p/", 1)],
            vec![rule("x", "p/", -1)],
            vec![Value::from("x")],
        ] {
            let e = policy_body(&inputs(a, rules.clone())).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{rules:?}");
        }
        let body = policy_body(&inputs(a, vec![rule("x", "p/", 3)])).unwrap();
        let r = &body["properties"]["policy"]["rules"][0];
        assert_eq!(rule_value(r), rule("x", "p/", 3));
        let mut drifted = r.clone();
        drifted["definition"]["actions"]["version"]["delete"]["daysAfterCreationGreaterThan"] =
            json!(9);
        assert_ne!(rule_value(&drifted), rule("x", "p/", 3));
    }
}

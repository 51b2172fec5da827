//! `azure_network_security_group`: a network security group and its rules, owned through
//! its token tag. Only the rules the user sets are managed; Azure's default rules are
//! never shown.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use flyteinfra_core::{Progress, attrs};
use serde_json::{Value as Json, json};

use super::common::{
    Pending, WaitFor, by_provisioning_state, carries_token, find_by_token, id_value, managed_only,
    needs_put, resource_group_of, str_at, tags_keeping_token, tags_with_token, user_tags,
};
use super::virtual_network::API;
use crate::client::ArmClient;

const WHAT: &str = "network security group";

/// A rule's string keys: the attribute name and ARM's.
const RULE_KEYS: [(&str, &str); 5] = [
    ("direction", "direction"),
    ("access", "access"),
    ("protocol", "protocol"),
    ("source_address_prefix", "sourceAddressPrefix"),
    ("destination_port_range", "destinationPortRange"),
];

/// `azure_network_security_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_network_security_group",
        doc: "A network security group with its rules, tagged with the create token. Azure's \
              default rules are neither managed nor shown.",
        fields: vec![
            Field::computed("id", "The group's resource id."),
            Field::input("resource_group", "The resource group holding it.")
                .required()
                .force_new(),
            Field::input(
                "name",
                "The security group's name (unique in its resource group).",
            )
            .required()
            .force_new(),
            Field::input("location", "Its location, such as `eastus`.")
                .required()
                .force_new(),
            Field::input(
                "rules",
                "Rules: maps of `name`, `priority` (100–4096), `direction` (Inbound/Outbound), \
                 `access` (Allow/Deny), `protocol` (Tcp/Udp/*), `source_address_prefix`, \
                 `destination_port_range`; source port and destination prefix are `*`. Read \
                 sorted by priority.",
            ),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(10),
        deletion_protection: None,
    }
}

/// `azure_network_security_group` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(NetworkSecurityGroup {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct NetworkSecurityGroup {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

/// ARM's `securityRules` of the `rules` input.
fn security_rules(inputs: &Attributes) -> Result<Json, ProviderError> {
    let bad = |why: String| ProviderError::new(ErrorKind::InvalidInput, why);
    let mut out = Vec::new();
    for (i, rule) in inputs
        .get("rules")
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let m = rule
            .as_map()
            .ok_or_else(|| bad(format!("rules[{i}] is not a map")))?;
        let s = |k: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("rules[{i}].{k} is missing or not a string")))
        };
        let priority = m
            .get("priority")
            .and_then(Value::as_int)
            .ok_or_else(|| bad(format!("rules[{i}].priority is missing or not an integer")))?;
        let mut props = json!({
            "priority": priority,
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
        });
        for (attr, arm) in RULE_KEYS {
            props[arm] = json!(s(attr)?);
        }
        out.push(json!({ "name": s("name")?, "properties": props }));
    }
    Ok(Json::Array(out))
}

/// The user rules of an NSG body as the `rules` attribute, sorted by priority.
fn rules_value(body: &Json) -> Value {
    let mut rules: Vec<(i64, String, Value)> = body["properties"]["securityRules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let p = &r["properties"];
            let priority = p["priority"].as_i64().unwrap_or_default();
            let mut m = BTreeMap::from([
                ("name".to_string(), Value::from(str_at(r, "/name"))),
                ("priority".to_string(), Value::Int(priority)),
            ]);
            for (attr, arm) in RULE_KEYS {
                m.insert(attr.to_string(), Value::from(str_at(p, &format!("/{arm}"))));
            }
            (priority, str_at(p, "/direction").to_string(), Value::Map(m))
        })
        .collect();
    rules.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    Value::List(rules.into_iter().map(|r| r.2).collect())
}

impl NetworkSecurityGroup {
    fn path(&self, inputs: &Attributes) -> Result<String, ProviderError> {
        Ok(format!(
            "{}/resourceGroups/{}/providers/Microsoft.Network/networkSecurityGroups/{}",
            self.client.subscription_path(),
            attrs::s(inputs, "resource_group")?,
            attrs::s(inputs, "name")?
        ))
    }

    fn attributes(&self, body: &Json, id: &str, prior: &Attributes) -> Attributes {
        let cloud_id = body["id"].as_str().unwrap_or(id);
        let a = attrs::attrs([
            ("id", id_value(cloud_id, Some(&Value::from(id)))),
            (
                "resource_group",
                id_value(resource_group_of(cloud_id), prior.get("resource_group")),
            ),
            ("name", id_value(str_at(body, "/name"), prior.get("name"))),
            ("location", str_at(body, "/location").into()),
            ("rules", rules_value(body)),
            ("tags", user_tags(body)),
        ]);
        managed_only(a, prior, &self.schema)
    }

    fn wait<'a>(&'a self, id: &'a str, progress: &'a Progress) -> WaitFor<'a> {
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
impl ResourceType for NetworkSecurityGroup {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .client
                .get(&req.id, API)
                .await?
                .map(|b| self.attributes(&b, &req.id, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        find_by_token(&self.client, self.path(&req.inputs)?, API, &req.token).await
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = self.path(&req.inputs)?;
        let rules = security_rules(&req.inputs)?;
        let existing = self.client.get(&path, API).await?;
        let ours = |b: &Json| carries_token(b, &req.token);
        if needs_put(existing.as_ref(), ours, WHAT, &req.address, &path)? {
            let body = json!({
                "location": attrs::s(&req.inputs, "location")?,
                "tags": tags_with_token(&req.inputs, &req.token),
                "properties": { "securityRules": rules },
            });
            let answer = self.client.put(&path, API, &body).await?;
            self.pending.put(&path, answer.operation);
        }
        Ok(CreateResponse {
            id: path,
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let body = self
            .wait(&req.id, &req.progress)
            .ready(&self.pending, by_provisioning_state)
            .await?;
        Ok(self.attributes(&body, &req.id, &req.inputs))
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let rules = security_rules(&req.inputs)?;
        let current = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::NotFound, format!("{WHAT} `{}` is gone", req.id))
        })?;
        // The whole group again, keeping the token so later creates still adopt it.
        let body = json!({
            "location": str_at(&current, "/location"),
            "tags": tags_keeping_token(&req.inputs, &current),
            "properties": { "securityRules": rules },
        });
        let answer = self.client.put(&req.id, API, &body).await?;
        let body = self
            .wait(&req.id, &req.progress)
            .updated(answer.operation, by_provisioning_state)
            .await?;
        Ok(UpdateResponse {
            attributes: self.attributes(&body, &req.id, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        match self.client.delete(&req.id, API).await? {
            None => Ok(DeleteResponse { done: true }),
            Some(answer) => {
                self.pending.put(&req.id, answer.operation);
                Ok(DeleteResponse { done: false })
            }
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        self.wait(&req.id, &req.progress).gone(&self.pending).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteinfra_core::requests as r;

    use crate::resources::virtual_network::testing::group;
    use crate::testutil::{LOCATION, client, double, unique};

    const T: &str = "azure_network_security_group";

    fn rule(name: &str, priority: i64, port: &str) -> Value {
        Value::Map(BTreeMap::from([
            ("name".to_string(), Value::from(name)),
            ("priority".to_string(), Value::Int(priority)),
            ("direction".to_string(), Value::from("Inbound")),
            ("access".to_string(), Value::from("Allow")),
            ("protocol".to_string(), Value::from("Tcp")),
            (
                "source_address_prefix".to_string(),
                Value::from("10.0.0.0/22"),
            ),
            ("destination_port_range".to_string(), Value::from(port)),
        ]))
    }

    fn inputs(rg: &str, name: &str) -> Attributes {
        attrs::attrs([
            ("resource_group", rg.into()),
            ("name", name.into()),
            ("location", LOCATION.into()),
            ("rules", Value::List(vec![rule("pg", 100, "5432")])),
        ])
    }

    #[tokio::test]
    async fn lifecycle() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let mut inputs = inputs(&rg, &unique("nsg"));
        let token = unique("tok");
        let c = t.create(r::create(T, &inputs, &token)).await.unwrap();
        assert!(matches!(c.completion, Completion::InProgress));
        let ready = t.wait_ready(r::wait(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(ready["rules"], inputs["rules"], "only the user rules");
        let read = t.read(r::refresh(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(read.attributes.as_ref(), Some(&ready));
        let found = t.find(r::find(T, &inputs, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(c.id.as_str()));
        assert_eq!(
            t.find(r::find(T, &inputs, "another")).await.unwrap().id,
            None
        );

        // Rules given out of order read back sorted by priority.
        let rules = vec![rule("https", 200, "443"), rule("pg", 100, "5432")];
        inputs.insert("rules".into(), Value::List(rules));
        let u = t
            .update(r::update(T, &c.id, &ready, &inputs, &["rules"]))
            .await
            .unwrap();
        let sorted = Value::List(vec![rule("pg", 100, "5432"), rule("https", 200, "443")]);
        assert_eq!(u.attributes["rules"], sorted);
        let nsg = client.get(&c.id, API).await.unwrap().unwrap();
        assert!(carries_token(&nsg, &token), "the update keeps the token");

        let d = t.delete(r::delete(T, &c.id, &u.attributes)).await.unwrap();
        assert!(!d.done);
        t.wait_deleted(r::wait(T, &c.id, &inputs)).await.unwrap();
        assert!(
            t.read(r::refresh(T, &c.id, &inputs))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(
            t.delete(r::delete(T, &c.id, &u.attributes))
                .await
                .unwrap()
                .done
        );
    }

    #[tokio::test]
    async fn a_foreign_group_is_refused() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let inputs = inputs(&rg, &unique("nsg"));
        let id = t.create(r::create(T, &inputs, "tok-a")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        let e = t.create(r::create(T, &inputs, "tok-b")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");
        let nsg = client.get(&id, API).await.unwrap().unwrap();
        assert!(carries_token(&nsg, "tok-a"), "left as it was");
    }

    #[tokio::test]
    async fn drift_in_a_rule_shows_on_read() {
        let client = client();
        let t = build(&client);
        let rg = group(&client).await;
        let inputs = inputs(&rg, &unique("nsg"));
        let id = t.create(r::create(T, &inputs, "tok")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        {
            let mut world = double().shared().lock();
            let nsg = world.resource_mut(&id).expect("stored");
            let rule = &mut nsg["properties"]["securityRules"][0]["properties"];
            rule["destinationPortRange"] = json!("22");
        }
        let read = t
            .read(r::refresh(T, &id, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read["rules"], Value::List(vec![rule("pg", 100, "22")]));
    }
}

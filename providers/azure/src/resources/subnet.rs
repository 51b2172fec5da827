//! `azure_subnet`: a subnet of a virtual network.
//!
//! Subnets carry no tags, so the create token lives in the name: `{name_prefix}-{8 hex}`
//! with the hex derived from the token. A subnet of that exact name can only be an earlier
//! attempt of this create; it is adopted when it holds the range this create asks for (an
//! attempt sends exactly that), and anything else at the name is refused.

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
    Pending, WaitFor, by_provisioning_state, id_value, managed_only, needs_put, parent_of, str_at,
    token_suffix,
};
use super::virtual_network::API;
use crate::client::ArmClient;

const WHAT: &str = "subnet";

/// `azure_subnet`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_subnet",
        doc: "A subnet of a virtual network, named `{name_prefix}-{8 hex}` after the create \
              token (subnets have no tags).",
        fields: vec![
            Field::computed("id", "The subnet's resource id."),
            Field::computed("name", "`{name_prefix}-{8 hex}`, derived from the create token."),
            Field::input("virtual_network_id", "The resource id of its virtual network.")
                .required()
                .force_new(),
            Field::input("name_prefix", "The start of the subnet's name.")
                .required()
                .force_new(),
            Field::input("address_prefix", "Its CIDR range, inside the network's address space.")
                .required()
                .force_new(),
            Field::input(
                "delegation",
                "The service the subnet is delegated to (`Microsoft.DBforPostgreSQL/flexibleServers`).",
            )
            .force_new(),
            Field::input("network_security_group_id", "The network security group it uses."),
            Field::input("service_endpoints", "Service endpoints (`Microsoft.Storage`)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(10),
        deletion_protection: None,
    }
}

/// `azure_subnet` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(Subnet {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct Subnet {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

/// The subnet name a create with `token` uses.
pub(crate) fn subnet_name(prefix: &str, token: &str) -> String {
    format!("{prefix}-{}", token_suffix(token, 0))
}

/// `{virtual_network_id}/subnets/{name}` of the subnet a create with `token` makes.
fn path(inputs: &Attributes, token: &str) -> Result<String, ProviderError> {
    let vnet = attrs::s(inputs, "virtual_network_id")?;
    let name = subnet_name(attrs::s(inputs, "name_prefix")?, token);
    Ok(format!("{}/subnets/{name}", vnet.trim_end_matches('/')))
}

/// ARM's `networkSecurityGroup` of `inputs` (`null`: none).
fn nsg(inputs: &Attributes) -> Json {
    attrs::opt_s(inputs, "network_security_group_id").map_or(Json::Null, |id| json!({ "id": id }))
}

/// ARM's `serviceEndpoints` of `inputs`.
fn endpoints(inputs: &Attributes) -> Json {
    let list: Vec<Json> = attrs::strings(inputs, "service_endpoints")
        .into_iter()
        .map(|s| json!({ "service": s }))
        .collect();
    Json::Array(list)
}

impl Subnet {
    /// The subnet as attributes, ids in the spelling of the last inputs.
    fn attributes(&self, body: &Json, id: &str, prior: &Attributes) -> Attributes {
        let cloud_id = body["id"].as_str().unwrap_or(id);
        let name = str_at(body, "/name");
        let prefix = name.rsplit_once('-').map_or(name, |(p, _)| p);
        let props = &body["properties"];
        let delegation = props["delegations"][0]["properties"]["serviceName"]
            .as_str()
            .map_or(Value::Null, Value::from);
        let nsg = props["networkSecurityGroup"]["id"]
            .as_str()
            .map_or(Value::Null, |n| {
                id_value(n, prior.get("network_security_group_id"))
            });
        let endpoints = props["serviceEndpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["service"].as_str().map(str::to_string))
            .collect();
        let a = attrs::attrs([
            ("id", id_value(cloud_id, Some(&Value::from(id)))),
            ("name", name.into()),
            (
                "virtual_network_id",
                id_value(parent_of(cloud_id), prior.get("virtual_network_id")),
            ),
            ("name_prefix", prefix.into()),
            ("address_prefix", str_at(props, "/addressPrefix").into()),
            ("delegation", delegation),
            ("network_security_group_id", nsg),
            (
                "service_endpoints",
                attrs::unordered(endpoints, prior.get("service_endpoints")),
            ),
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
impl ResourceType for Subnet {
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
        // What create would adopt: the token's name holding the range asked for.
        let path = path(&req.inputs, &req.token)?;
        let range = attrs::s(&req.inputs, "address_prefix")?;
        let found = self.client.get(&path, API).await?;
        Ok(FindResponse {
            id: found
                .filter(|b| str_at(b, "/properties/addressPrefix") == range)
                .map(|_| path),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = path(&req.inputs, &req.token)?;
        let range = attrs::s(&req.inputs, "address_prefix")?;
        let existing = self.client.get(&path, API).await?;
        let ours = |b: &Json| str_at(b, "/properties/addressPrefix") == range;
        if needs_put(existing.as_ref(), ours, WHAT, &req.address, &path)? {
            let mut props = json!({
                "addressPrefix": range,
                "serviceEndpoints": endpoints(&req.inputs),
            });
            if let Some(service) = attrs::opt_s(&req.inputs, "delegation") {
                props["delegations"] =
                    json!([{ "name": "delegation", "properties": { "serviceName": service } }]);
            }
            if attrs::opt_s(&req.inputs, "network_security_group_id").is_some() {
                props["networkSecurityGroup"] = nsg(&req.inputs);
            }
            let body = json!({ "properties": props });
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
        let current = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::NotFound, format!("{WHAT} `{}` is gone", req.id))
        })?;
        // The subnet as it is, changed only in the fields asked for (a PUT replaces it all).
        let mut props = current["properties"].clone();
        if let Some(m) = props.as_object_mut() {
            m.remove("provisioningState");
            if req.changed.iter().any(|c| c == "network_security_group_id") {
                match nsg(&req.inputs) {
                    Json::Null => m.remove("networkSecurityGroup"),
                    n => m.insert("networkSecurityGroup".into(), n),
                };
            }
            if req.changed.iter().any(|c| c == "service_endpoints") {
                m.insert("serviceEndpoints".into(), endpoints(&req.inputs));
            }
        }
        let answer = self
            .client
            .put(&req.id, API, &json!({ "properties": props }))
            .await?;
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

/// The service endpoints (`Microsoft.Storage`, …) of the subnet `id`, or `None` when it
/// does not exist: a preflight for an `existing:` subnet flyteinfra must not change.
pub async fn service_endpoints(
    client: &ArmClient,
    id: &str,
) -> Result<Option<Vec<String>>, ProviderError> {
    Ok(client.get(id, API).await?.map(|b| {
        b["properties"]["serviceEndpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["service"].as_str().map(str::to_string))
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteinfra_core::requests as r;

    use crate::resources::virtual_network::testing::network;
    use crate::testutil::{client, double, unique};

    const T: &str = "azure_subnet";
    const PG: &str = "Microsoft.DBforPostgreSQL/flexibleServers";

    fn inputs(vnet: &str, range: &str) -> Attributes {
        attrs::attrs([
            ("virtual_network_id", vnet.into()),
            ("name_prefix", "db".into()),
            ("address_prefix", range.into()),
            ("delegation", PG.into()),
            (
                "service_endpoints",
                Value::List(vec!["Microsoft.Storage".into()]),
            ),
        ])
    }

    /// A network security group with no rules, by id.
    async fn nsg_of(client: &ArmClient, rg: &str) -> String {
        let id = format!(
            "{}/resourceGroups/{rg}/providers/Microsoft.Network/networkSecurityGroups/{}",
            client.subscription_path(),
            unique("nsg")
        );
        let body = json!({ "location": crate::testutil::LOCATION, "properties": {} });
        let a = client.put(&id, API, &body).await.unwrap();
        if let Some(op) = a.operation {
            let p = Progress::none(flyteinfra_core::Address::new(T, "n"));
            client.follow(&op, "nsg", &p).await.unwrap();
        }
        id
    }

    #[tokio::test]
    async fn lifecycle() {
        let client = client();
        let t = build(&client);
        let (rg, vnet) = network(&client).await;
        let mut inputs = inputs(&vnet, "10.0.1.0/24");
        let token = unique("tok");
        let c = t.create(r::create(T, &inputs, &token)).await.unwrap();
        assert!(matches!(c.completion, Completion::InProgress));
        let ready = t.wait_ready(r::wait(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(
            ready["name"],
            Value::from(subnet_name("db", &token).as_str())
        );
        assert_eq!(ready["delegation"], Value::from(PG));
        assert_eq!(ready["virtual_network_id"], Value::from(vnet.as_str()));
        assert_eq!(ready["service_endpoints"], inputs["service_endpoints"]);
        let read = t.read(r::refresh(T, &c.id, &inputs)).await.unwrap();
        assert_eq!(read.attributes.as_ref(), Some(&ready));
        let found = t.find(r::find(T, &inputs, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(c.id.as_str()));
        assert_eq!(
            t.find(r::find(T, &inputs, "another")).await.unwrap().id,
            None
        );

        let nsg = nsg_of(&client, &rg).await;
        inputs.insert("network_security_group_id".into(), nsg.as_str().into());
        inputs.insert("service_endpoints".into(), Value::List(vec![]));
        let changed = ["network_security_group_id", "service_endpoints"];
        let u = t
            .update(r::update(T, &c.id, &ready, &inputs, &changed))
            .await
            .unwrap();
        assert_eq!(
            u.attributes["network_security_group_id"],
            Value::from(nsg.as_str())
        );
        assert_eq!(u.attributes["service_endpoints"], Value::List(vec![]));
        assert_eq!(u.attributes["delegation"], Value::from(PG), "kept");

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
    async fn the_name_derives_from_the_token() {
        let client = client();
        let t = build(&client);
        let (_, vnet) = network(&client).await;
        let a = inputs(&vnet, "10.0.2.0/24");
        let first = t.create(r::create(T, &a, "tok-1")).await.unwrap();
        let again = t.create(r::create(T, &a, "tok-1")).await.unwrap();
        assert_eq!(again.id, first.id, "the same token adopts");
        t.wait_ready(r::wait(T, &first.id, &a)).await.unwrap();
        let b = inputs(&vnet, "10.0.3.0/24");
        let other = t.create(r::create(T, &b, "tok-2")).await.unwrap();
        assert_ne!(other.id, first.id, "another token, another name");
        t.wait_ready(r::wait(T, &other.id, &b)).await.unwrap();
        assert!(client.get(&first.id, API).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_foreign_subnet_at_the_name_is_refused() {
        let client = client();
        let t = build(&client);
        let (_, vnet) = network(&client).await;
        // Someone else's subnet at this create's name, with another range.
        let theirs = inputs(&vnet, "10.0.4.0/24");
        let id = t.create(r::create(T, &theirs, "tok")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &theirs)).await.unwrap();
        let mine = inputs(&vnet, "10.0.5.0/24");
        let e = t.create(r::create(T, &mine, "tok")).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists);
        assert!(e.message.contains("flyteinfra import"), "{e}");
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let client = client();
        let t = build(&client);
        let (_, vnet) = network(&client).await;
        let inputs = inputs(&vnet, "10.0.6.0/24");
        let id = t.create(r::create(T, &inputs, "tok")).await.unwrap().id;
        t.wait_ready(r::wait(T, &id, &inputs)).await.unwrap();
        {
            let mut world = double().shared().lock();
            let s = world.resource_mut(&id).expect("stored");
            s["properties"]["serviceEndpoints"] = json!([]);
        }
        let read = t
            .read(r::refresh(T, &id, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read["service_endpoints"], Value::List(vec![]));
    }
}

//! `azure_kubernetes_cluster`: an AKS managed cluster, owned through its token tag.
//!
//! Always a SystemAssigned identity, the OIDC issuer and workload identity on, Azure CNI
//! in overlay mode, and one system pool named `system` on the node subnet. Node pools of
//! its own (`azure_kubernetes_node_pool`) are made through the agent pool route; ARM's
//! `PUT` of a cluster replaces its `agentPoolProfiles`, so every update is GET-modify-PUT
//! of the whole cluster carrying the current profiles: an update never drops a user pool.
//!
//! The CA certificate is not read: ARM shows it only through `listClusterUserCredential`
//! (a credential), which flyteinfra does not call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use serde_json::{Value as Json, json};

use super::common::{
    Pending, WaitFor, by_provisioning_state, carries_token, find_by_token, id_value, managed_only,
    name_of, needs_put, resource_group_of, str_at, tags_keeping_token, tags_with_token, user_tags,
};
use crate::client::ArmClient;

/// Microsoft.ContainerService's api-version for managed clusters and agent pools.
pub(crate) const API: &str = "2024-09-01";

/// The name of the system pool every cluster carries.
pub(crate) const SYSTEM_POOL: &str = "system";

/// The upgrade channel when the inputs set none.
const DEFAULT_CHANNEL: &str = "patch";

const WHAT: &str = "AKS cluster";

/// `azure_kubernetes_cluster`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_kubernetes_cluster",
        doc: "An AKS managed cluster (SystemAssigned identity, OIDC issuer and workload \
              identity on, Azure CNI overlay, a system pool named `system` on the node subnet), \
              tagged with the create token. Updates keep every node pool.",
        fields: vec![
            Field::computed("id", "The cluster's resource id."),
            Field::computed("fqdn", "The API server's host name."),
            Field::computed(
                "oidc_issuer_url",
                "The OIDC issuer URL workload identity federates with.",
            ),
            Field::computed(
                "principal_id",
                "The principal id of the cluster's SystemAssigned identity.",
            ),
            Field::computed(
                "node_resource_group",
                "The group AKS keeps the nodes' resources in (`MC_…`).",
            ),
            Field::computed("endpoint", "The API server's URL, `https://{fqdn}:443`."),
            Field::input("resource_group", "The resource group holding it.")
                .required()
                .force_new(),
            Field::input("name", "The cluster's name (unique in its group).")
                .required()
                .force_new(),
            Field::input("location", "The cluster's location, such as `eastus`.")
                .required()
                .force_new(),
            Field::input("dns_prefix", "The prefix of the API server's host name.")
                .required()
                .force_new(),
            Field::input(
                "kubernetes_version",
                "The Kubernetes version (`1.33` or `1.33.2`).",
            )
            .required(),
            Field::input(
                "upgrade_channel",
                "The automatic upgrade channel (default `patch`).",
            ),
            Field::input("pod_cidr", "The overlay pod CIDR (`192.168.0.0/16`).")
                .required()
                .force_new(),
            Field::input(
                "service_cidr",
                "The service CIDR; must not overlap the node subnet's network.",
            )
            .required()
            .force_new(),
            Field::input(
                "dns_service_ip",
                "The cluster DNS IP, inside `service_cidr`.",
            )
            .required()
            .force_new(),
            Field::input(
                "system_pool_vm_size",
                "The VM size of the `system` pool (`Standard_D2s_v5`).",
            )
            .required(),
            Field::input("system_pool_count", "The node count of the `system` pool.").required(),
            Field::input("subnet_id", "The node subnet's resource id.")
                .required()
                .force_new(),
            Field::input("tags", "Tags (the create token's tag is added and hidden)."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(600),
        deletion_protection: None,
    }
}

/// `azure_kubernetes_cluster` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(KubernetesCluster {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct KubernetesCluster {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

fn int(inputs: &Attributes, key: &str) -> Result<i64, ProviderError> {
    attrs::i(inputs, key).ok_or_else(|| {
        ProviderError::new(ErrorKind::InvalidInput, format!("input `{key}` is missing"))
    })
}

fn gone(id: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("{WHAT} `{id}` no longer exists"),
    )
}

/// Whether `profile` is the system pool flyteinfra manages.
fn is_system(profile: &Json) -> bool {
    profile["name"]
        .as_str()
        .is_some_and(|n| n.eq_ignore_ascii_case(SYSTEM_POOL))
}

/// The `system` pool's profile as the inputs describe it.
fn system_profile(inputs: &Attributes) -> Result<Json, ProviderError> {
    Ok(json!({
        "name": SYSTEM_POOL,
        "mode": "System",
        "count": int(inputs, "system_pool_count")?,
        "vmSize": attrs::s(inputs, "system_pool_vm_size")?,
        "vnetSubnetID": attrs::s(inputs, "subnet_id")?,
        "osType": "Linux",
        "type": "VirtualMachineScaleSets",
    }))
}

/// The `PUT` body of a new cluster: the system pool, then `other_pools` (those an earlier
/// attempt's failed cluster already holds, kept).
fn create_body(
    inputs: &Attributes,
    token: &str,
    other_pools: Vec<Json>,
) -> Result<Json, ProviderError> {
    let mut pools = vec![system_profile(inputs)?];
    pools.extend(other_pools);
    Ok(json!({
        "location": attrs::s(inputs, "location")?,
        "tags": tags_with_token(inputs, token),
        "identity": { "type": "SystemAssigned" },
        "properties": {
            "kubernetesVersion": attrs::s(inputs, "kubernetes_version")?,
            "dnsPrefix": attrs::s(inputs, "dns_prefix")?,
            "oidcIssuerProfile": { "enabled": true },
            "securityProfile": { "workloadIdentity": { "enabled": true } },
            "autoUpgradeProfile": {
                "upgradeChannel": attrs::opt_s(inputs, "upgrade_channel").unwrap_or(DEFAULT_CHANNEL),
            },
            "networkProfile": {
                "networkPlugin": "azure",
                "networkPluginMode": "overlay",
                "podCidr": attrs::s(inputs, "pod_cidr")?,
                "serviceCidr": attrs::s(inputs, "service_cidr")?,
                "dnsServiceIP": attrs::s(inputs, "dns_service_ip")?,
            },
            "agentPoolProfiles": pools,
        },
    }))
}

/// The `PUT` body of an update: the whole `current` cluster with the inputs' updatable
/// fields applied, carrying every current agent pool profile (a `PUT` without one deletes
/// that pool). Only the `system` pool's size and count change.
fn update_body(inputs: &Attributes, current: &Json) -> Result<Json, ProviderError> {
    let mut body = current.clone();
    body["tags"] = tags_keeping_token(inputs, current);
    let props = &mut body["properties"];
    props["kubernetesVersion"] = json!(attrs::s(inputs, "kubernetes_version")?);
    props["autoUpgradeProfile"]["upgradeChannel"] =
        json!(attrs::opt_s(inputs, "upgrade_channel").unwrap_or(DEFAULT_CHANNEL));
    // Never switched off (ARM refuses to disable the issuer once on, anyway).
    props["oidcIssuerProfile"]["enabled"] = json!(true);
    props["securityProfile"]["workloadIdentity"]["enabled"] = json!(true);
    let mut pools = props["agentPoolProfiles"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match pools.iter_mut().find(|p| is_system(p)) {
        Some(p) => {
            p["vmSize"] = json!(attrs::s(inputs, "system_pool_vm_size")?);
            p["count"] = json!(int(inputs, "system_pool_count")?);
        }
        None => pools.insert(0, system_profile(inputs)?),
    }
    props["agentPoolProfiles"] = Json::Array(pools);
    Ok(body)
}

/// The cluster's attributes (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let p = &body["properties"];
    let s = |at: &str| Value::from(str_at(body, at));
    let system = p["agentPoolProfiles"]
        .as_array()
        .and_then(|pools| pools.iter().find(|p| is_system(p)))
        .cloned()
        .unwrap_or(Json::Null);
    let fqdn = str_at(body, "/properties/fqdn");
    let mut a = Attributes::new();
    let mut put = |k: &str, v: Value| {
        a.insert(k.to_string(), v);
    };
    put("id", id_value(cloud_id, Some(&Value::from(id))));
    put("fqdn", Value::from(fqdn));
    put(
        "endpoint",
        Value::from(if fqdn.is_empty() {
            String::new()
        } else {
            format!("https://{fqdn}:443")
        }),
    );
    put(
        "oidc_issuer_url",
        s("/properties/oidcIssuerProfile/issuerURL"),
    );
    put("principal_id", s("/identity/principalId"));
    put("node_resource_group", s("/properties/nodeResourceGroup"));
    put(
        "resource_group",
        id_value(resource_group_of(cloud_id), prior.get("resource_group")),
    );
    put("name", id_value(name_of(cloud_id), prior.get("name")));
    let location = str_at(body, "/location");
    match attrs::opt_s(prior, "location") {
        Some(l) if l.eq_ignore_ascii_case(location) => put("location", Value::from(l)),
        _ => put("location", Value::from(location)),
    }
    put("dns_prefix", s("/properties/dnsPrefix"));
    put("kubernetes_version", s("/properties/kubernetesVersion"));
    put(
        "upgrade_channel",
        Value::from(
            p["autoUpgradeProfile"]["upgradeChannel"]
                .as_str()
                .unwrap_or("none"),
        ),
    );
    put("pod_cidr", s("/properties/networkProfile/podCidr"));
    put("service_cidr", s("/properties/networkProfile/serviceCidr"));
    put(
        "dns_service_ip",
        s("/properties/networkProfile/dnsServiceIP"),
    );
    put(
        "system_pool_vm_size",
        Value::from(str_at(&system, "/vmSize")),
    );
    if let Some(n) = system["count"].as_i64() {
        put("system_pool_count", Value::Int(n));
    }
    put(
        "subnet_id",
        id_value(str_at(&system, "/vnetSubnetID"), prior.get("subnet_id")),
    );
    put("tags", user_tags(body));
    a
}

impl KubernetesCluster {
    /// The cluster's id (a resource group id is taken for the group too).
    fn path(&self, inputs: &Attributes) -> Result<String, ProviderError> {
        Ok(format!(
            "{}/resourceGroups/{}/providers/Microsoft.ContainerService/managedClusters/{}",
            self.client.subscription_path(),
            name_of(attrs::s(inputs, "resource_group")?),
            attrs::s(inputs, "name")?
        ))
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

    fn managed(&self, id: &str, body: &Json, inputs: &Attributes) -> Attributes {
        managed_only(attributes(id, body, inputs), inputs, &self.schema)
    }
}

#[async_trait]
impl ResourceType for KubernetesCluster {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .client
                .get(&req.id, API)
                .await?
                .map(|b| self.managed(&req.id, &b, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        find_by_token(&self.client, self.path(&req.inputs)?, API, &req.token).await
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let path = self.path(&req.inputs)?;
        let existing = self.client.get(&path, API).await?;
        let ours = |b: &Json| carries_token(b, &req.token);
        if needs_put(existing.as_ref(), ours, WHAT, &req.address, &path)? {
            // An earlier attempt's failed cluster may hold other pools already: keep them.
            let others = existing
                .as_ref()
                .and_then(|b| b["properties"]["agentPoolProfiles"].as_array().cloned())
                .unwrap_or_default()
                .into_iter()
                .filter(|p| !is_system(p))
                .collect();
            let body = create_body(&req.inputs, &req.token, others)?;
            let answer = self.client.put(&path, API, &body).await?;
            self.pending.put(&path, answer.operation);
            req.progress.status("Creating");
        }
        Ok(CreateResponse {
            id: path,
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let body = self
            .waiter(&req.id, &req.progress)
            .ready(&self.pending, by_provisioning_state)
            .await?;
        Ok(self.managed(&req.id, &body, &req.inputs))
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let current = self
            .client
            .get(&req.id, API)
            .await?
            .ok_or_else(|| gone(&req.id))?;
        let body = update_body(&req.inputs, &current)?;
        let answer = self.client.put(&req.id, API, &body).await?;
        let body = self
            .waiter(&req.id, &req.progress)
            .updated(answer.operation, by_provisioning_state)
            .await?;
        Ok(UpdateResponse {
            attributes: self.managed(&req.id, &body, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        match self.client.delete(&req.id, API).await? {
            None => Ok(DeleteResponse { done: true }),
            // Gone with the answer when Azure names nothing to follow.
            Some(answer) if answer.operation.is_none() && answer.status != 202 => {
                Ok(DeleteResponse { done: true })
            }
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

/// Test support shared by the cluster, node pool and identity types' tests.
#[cfg(test)]
pub(crate) mod testing {
    use flyteinfra_azure_double::AzureDouble;
    use flyteinfra_core::requests;
    use flyteinfra_core::{Attributes, ResourceType, Value, attrs};
    use serde_json::json;

    use crate::client::ArmClient;
    use crate::testutil::{self, LOCATION, SUBSCRIPTION};

    const T: &str = "azure_kubernetes_cluster";

    /// A resource group with a vnet (`10.0.0.0/16`), a node subnet (`10.0.1.0/24`) and a
    /// pool subnet (`10.0.2.0/24`), planted in the double.
    pub(crate) struct Net {
        pub rg: String,
        pub rg_id: String,
        pub subnet: String,
        pub pool_subnet: String,
    }

    pub(crate) fn plant_network(d: &AzureDouble) -> Net {
        let rg = testutil::unique("rg-aks");
        let rg_id = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}");
        let vnet = format!("{rg_id}/providers/Microsoft.Network/virtualNetworks/vnet");
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
        let mut subnet = |name: &str, prefix: &str| {
            let id = format!("{vnet}/subnets/{name}");
            w.put_raw(
                &id,
                json!({"name": name, "type": "Microsoft.Network/virtualNetworks/subnets",
                "properties": {"provisioningState": "Succeeded", "addressPrefix": prefix}}),
            );
            id
        };
        let (subnet, pool_subnet) = (
            subnet("nodes", "10.0.1.0/24"),
            subnet("pool", "10.0.2.0/24"),
        );
        Net {
            rg,
            rg_id,
            subnet,
            pool_subnet,
        }
    }

    /// The inputs of cluster `name` on `net`'s node subnet.
    pub(crate) fn inputs(net: &Net, name: &str) -> Attributes {
        attrs::attrs([
            ("resource_group", net.rg.as_str().into()),
            ("name", name.into()),
            ("location", LOCATION.into()),
            ("dns_prefix", name.into()),
            ("kubernetes_version", "1.33".into()),
            ("upgrade_channel", "patch".into()),
            ("pod_cidr", "192.168.0.0/16".into()),
            ("service_cidr", "172.16.0.0/16".into()),
            ("dns_service_ip", "172.16.0.10".into()),
            ("system_pool_vm_size", "Standard_D2s_v5".into()),
            ("system_pool_count", Value::Int(2)),
            ("subnet_id", net.subnet.as_str().into()),
            (
                "tags",
                Value::Map([("team".to_string(), "ml".into())].into()),
            ),
        ])
    }

    /// A ready cluster made through the type on a fresh network: `(net, id, attributes)`.
    pub(crate) async fn ready_cluster(c: &ArmClient, d: &AzureDouble) -> (Net, String, Attributes) {
        let net = plant_network(d);
        let ins = inputs(&net, &testutil::unique("aks"));
        let rt = super::build(c);
        let id = rt
            .create(requests::create(T, &ins, &testutil::unique("fi-tok")))
            .await
            .unwrap()
            .id;
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        (net, id, a)
    }

    /// Deletes through `rt`, waits, and checks it is gone and a second delete is success.
    pub(crate) async fn delete_and_check(
        rt: &std::sync::Arc<dyn ResourceType>,
        t: &str,
        id: &str,
        a: &Attributes,
    ) {
        if !rt.delete(requests::delete(t, id, a)).await.unwrap().done {
            rt.wait_deleted(requests::wait(t, id, a)).await.unwrap();
        }
        assert!(
            rt.read(requests::read(t, id))
                .await
                .unwrap()
                .attributes
                .is_none(),
            "{id} is gone"
        );
        assert!(rt.delete(requests::delete(t, id, a)).await.unwrap().done);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{delete_and_check, inputs, plant_network, ready_cluster};
    use super::*;
    use crate::testutil::{self, LOCATION};
    use flyteinfra_core::requests;

    const T: &str = "azure_kubernetes_cluster";

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

    #[tokio::test]
    async fn cluster_lifecycle() {
        let (c, d) = (testutil::client(), testutil::double());
        let net = plant_network(d);
        let rt = build(&c);
        let name = testutil::unique("aks");
        let ins = inputs(&net, &name);
        let token = testutil::unique("fi-tok");

        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        assert!(id.ends_with(&format!("/managedClusters/{name}")), "{id}");
        // What was sent: the fixed parts of every cluster.
        {
            let sent = d.shared().lock().resource(&id).unwrap();
            assert_eq!(sent["identity"]["type"], "SystemAssigned");
            let p = &sent["properties"];
            assert_eq!(p["oidcIssuerProfile"]["enabled"], true);
            assert_eq!(p["securityProfile"]["workloadIdentity"]["enabled"], true);
            assert_eq!(p["networkProfile"]["networkPlugin"], "azure");
            assert_eq!(p["networkProfile"]["networkPluginMode"], "overlay");
            let pools = p["agentPoolProfiles"].as_array().unwrap();
            assert_eq!(pools.len(), 1, "{pools:?}");
            assert_eq!(pools[0]["name"], SYSTEM_POOL);
            assert_eq!(pools[0]["mode"], "System");
        }
        let ready = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        let a = refresh(&rt, &id, &ins).await;
        assert_eq!(a, ready);
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        let fqdn = a["fqdn"].as_str().unwrap().to_string();
        assert!(fqdn.starts_with(&format!("{name}-")), "{fqdn}");
        assert_eq!(a["endpoint"], Value::from(format!("https://{fqdn}:443")));
        let issuer = a["oidc_issuer_url"].as_str().unwrap();
        assert!(
            issuer.starts_with(&format!("https://{LOCATION}.oic.prod-aks.azure.com/")),
            "{issuer}"
        );
        assert_eq!(a["principal_id"].as_str().unwrap().len(), 36, "{a:?}");
        assert_eq!(
            a["node_resource_group"],
            Value::from(format!("MC_{}_{name}_{LOCATION}", net.rg))
        );
        assert!(!a.contains_key("ca_certificate"));

        // Found by its token, only by it; a retried create adopts it without a PUT.
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other = rt.find(requests::find(T, &ins, "fi-other")).await.unwrap();
        assert_eq!(other.id, None);
        let puts = calls(&c, "PUT managedclusters");
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(calls(&c, "PUT managedclusters"), puts);

        // Update: version, system pool count, tags; the token tag and identity survive.
        let mut new = ins.clone();
        new.insert("kubernetes_version".into(), "1.34".into());
        new.insert("system_pool_count".into(), Value::Int(3));
        new.insert(
            "tags".into(),
            Value::Map([("team".to_string(), "data".into())].into()),
        );
        let changed = ["kubernetes_version", "system_pool_count", "tags"];
        let up = rt
            .update(requests::update(T, &id, &a, &new, &changed))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up, refresh(&rt, &id, &new).await);
        for (k, v) in &new {
            assert_eq!(up.get(k), Some(v), "{k}");
        }
        assert_eq!(up["principal_id"], a["principal_id"]);
        assert_eq!(up["fqdn"], a["fqdn"]);
        let found = rt.find(requests::find(T, &new, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));

        delete_and_check(&rt, T, &id, &up).await;
        let none = rt.find(requests::find(T, &new, &token)).await.unwrap();
        assert_eq!(none.id, None);
    }

    #[tokio::test]
    async fn update_keeps_a_user_pool() {
        let (c, d) = (testutil::client(), testutil::double());
        let (net, id, a) = ready_cluster(&c, d).await;
        // A user pool made through the agent pool route, as `azure_kubernetes_node_pool` does.
        let pool = format!("{id}/agentPools/user1");
        let body = json!({"properties": {"mode": "User", "vmSize": "Standard_D4s_v5",
            "count": 1, "enableAutoScaling": true, "minCount": 1, "maxCount": 3,
            "vnetSubnetID": net.pool_subnet, "osType": "Linux",
            "type": "VirtualMachineScaleSets"}});
        let answer = c.put(&pool, API, &body).await.unwrap();
        if let Some(op) = answer.operation {
            let p = Progress::none(flyteinfra_core::Address::new(T, "pool"));
            c.follow(&op, "pool", &p).await.unwrap();
        }
        // Its autoscaler has grown it since.
        d.shared().lock().resource_mut(&pool).unwrap()["properties"]["count"] = json!(3);
        let rt = build(&c);
        let mut ins = inputs(&net, a["name"].as_str().unwrap());
        ins.insert("system_pool_count".into(), Value::Int(4));
        ins.insert("upgrade_channel".into(), "stable".into());
        let up = rt
            .update(requests::update(
                T,
                &id,
                &a,
                &ins,
                &["system_pool_count", "upgrade_channel"],
            ))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up["system_pool_count"], Value::Int(4));
        assert_eq!(up["upgrade_channel"], Value::from("stable"));
        let kept = c
            .get(&pool, API)
            .await
            .unwrap()
            .expect("the user pool survives");
        for (k, v) in [
            ("vmSize", json!("Standard_D4s_v5")),
            ("count", json!(3)),
            ("minCount", json!(1)),
            ("maxCount", json!(3)),
            ("mode", json!("User")),
        ] {
            assert_eq!(kept["properties"][k], v, "{k}");
        }
        let cluster = c.get(&id, API).await.unwrap().unwrap();
        let names: Vec<&str> = cluster["properties"]["agentPoolProfiles"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert!(
            names.contains(&"user1") && names.contains(&SYSTEM_POOL),
            "{names:?}"
        );
        delete_and_check(&rt, T, &id, &up).await;
        assert!(
            c.get(&pool, API).await.unwrap().is_none(),
            "pools go with it"
        );
    }

    #[tokio::test]
    async fn foreign_cluster_is_refused() {
        let (c, d) = (testutil::client(), testutil::double());
        let net = plant_network(d);
        let name = testutil::unique("aks");
        let id = format!(
            "{}/providers/Microsoft.ContainerService/managedClusters/{name}",
            net.rg_id
        );
        let body = json!({"name": name, "type": "Microsoft.ContainerService/managedClusters",
            "location": LOCATION, "tags": {"owner": "someone"},
            "identity": {"type": "SystemAssigned"},
            "properties": {"provisioningState": "Succeeded", "kubernetesVersion": "1.32",
            "dnsPrefix": name}});
        d.shared().lock().put_raw(&id, body);
        let before = d.shared().lock().resource(&id).unwrap();
        let rt = build(&c);
        let ins = inputs(&net, &name);
        let e = rt
            .create(requests::create(T, &ins, "fi-mine"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(e.message.contains("flyteinfra import"), "{e}");
        assert_eq!(calls(&c, "PUT managedclusters"), 0);
        assert_eq!(d.shared().lock().resource(&id).unwrap(), before);
        let found = rt.find(requests::find(T, &ins, "fi-mine")).await.unwrap();
        assert_eq!(found.id, None);
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let (c, d) = (testutil::client(), testutil::double());
        let (net, id, a) = ready_cluster(&c, d).await;
        let ins = inputs(&net, a["name"].as_str().unwrap());
        {
            let mut w = d.shared().lock();
            let cluster = w.resource_mut(&id).unwrap();
            cluster["properties"]["kubernetesVersion"] = json!("1.31");
            cluster["properties"]["autoUpgradeProfile"]["upgradeChannel"] = json!("none");
            cluster["tags"]["team"] = json!("someone-else");
        }
        let rt = build(&c);
        let now = refresh(&rt, &id, &ins).await;
        assert_eq!(now["kubernetes_version"], Value::from("1.31"));
        assert_eq!(now["upgrade_channel"], Value::from("none"));
        assert_eq!(
            now["tags"],
            Value::Map([("team".to_string(), "someone-else".into())].into())
        );
        assert_eq!(now["dns_prefix"], a["dns_prefix"]);
        // An id in another casing is the same cluster, not drift.
        let upper = id.replace("resourceGroups", "RESOURCEGROUPS");
        assert_eq!(
            refresh(&rt, &upper, &ins).await["id"],
            Value::from(upper.as_str())
        );
        delete_and_check(&rt, T, &id, &now).await;
    }

    #[test]
    fn update_body_keeps_every_pool_and_the_token() {
        let net = testing::Net {
            rg: "rg".into(),
            rg_id: String::new(),
            subnet: "/s/nodes".into(),
            pool_subnet: String::new(),
        };
        let ins = inputs(&net, "c");
        let current = json!({"location": "eastus",
            "tags": {"team": "ml", "flyteinfra-token": "tok"},
            "properties": {"kubernetesVersion": "1.33", "agentPoolProfiles": [
                {"name": "system", "mode": "System", "count": 2, "vmSize": "Standard_D2s_v5"},
                {"name": "gpu", "mode": "User", "count": 5, "vmSize": "Standard_NC6"}]}});
        let mut new = ins.clone();
        new.insert("system_pool_count".into(), Value::Int(3));
        let body = update_body(&new, &current).unwrap();
        let pools = body["properties"]["agentPoolProfiles"].as_array().unwrap();
        assert_eq!(pools.len(), 2);
        assert_eq!(pools[0]["count"], 3);
        assert_eq!(pools[1], current["properties"]["agentPoolProfiles"][1]);
        assert_eq!(body["tags"]["flyteinfra-token"], "tok");
        assert_eq!(body["properties"]["oidcIssuerProfile"]["enabled"], true);
        assert!(schema().field("ca_certificate").is_none());
        assert_eq!(schema().expected_create, Duration::from_secs(600));
    }
}

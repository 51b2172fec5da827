//! `azure_kubernetes_node_pool`: an autoscaled node pool (agent pool) of an AKS cluster.
//!
//! Pools carry tags of their own (`properties.tags`): the create token lives there, and a
//! pool of the same name without it is someone else's (refused with the import hint).
//! The autoscaler owns the node count: a create sends `min_count`, an update sends a
//! count only when the current one lies outside `min_count..=max_count` (moved to the
//! nearest bound), and reads do not report it, so the autoscaler's changes are never
//! drift.

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
    Pending, TOKEN_TAG, WaitFor, by_provisioning_state, id_value, managed_only, needs_put, str_at,
    tags_with_token,
};
use super::kubernetes_cluster::API;
use crate::client::ArmClient;

/// The longest pool name AKS accepts (Linux pools).
const MAX_NAME: usize = 12;

/// The mode when the inputs set none.
const DEFAULT_MODE: &str = "User";

const WHAT: &str = "AKS node pool";

/// `azure_kubernetes_node_pool`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_kubernetes_node_pool",
        doc: "An autoscaled node pool of an AKS cluster, with the create token in the pool's \
              tags. The autoscaler owns its node count (never drift).",
        fields: vec![
            Field::computed("id", "The pool's resource id."),
            Field::input("cluster_id", "The AKS cluster's resource id.")
                .required()
                .force_new(),
            Field::input(
                "name",
                "The pool's name: 1–12 lowercase letters and digits, starting with a letter.",
            )
            .required()
            .force_new(),
            Field::input("vm_size", "The nodes' VM size (`Standard_D4s_v5`).")
                .required()
                .force_new(),
            Field::input("min_count", "The fewest nodes the autoscaler keeps.").required(),
            Field::input("max_count", "The most nodes the autoscaler makes.").required(),
            Field::input("subnet_id", "The node subnet's resource id.")
                .required()
                .force_new(),
            Field::input(
                "kubernetes_version",
                "The nodes' Kubernetes version (default: the cluster's).",
            ),
            Field::input("mode", "`User` (default) or `System`."),
            Field::input("labels", "Kubernetes labels put on every node."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(240),
        deletion_protection: None,
    }
}

/// `azure_kubernetes_node_pool` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(NodePool {
        client: client.clone(),
        schema: schema(),
        pending: Pending::default(),
    })
}

struct NodePool {
    client: ArmClient,
    schema: Schema,
    pending: Pending,
}

fn invalid(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidInput, message)
}

fn int(inputs: &Attributes, key: &str) -> Result<i64, ProviderError> {
    attrs::i(inputs, key).ok_or_else(|| invalid(format!("input `{key}` is missing")))
}

/// `(min_count, max_count)`, checked before any call.
fn bounds(inputs: &Attributes) -> Result<(i64, i64), ProviderError> {
    let (min, max) = (int(inputs, "min_count")?, int(inputs, "max_count")?);
    if min < 0 || min > max {
        return Err(invalid(format!(
            "{WHAT}: `min_count` {min} and `max_count` {max}: expected 0 ≤ min_count ≤ \
             max_count"
        )));
    }
    Ok((min, max))
}

/// Checks the name and the counts before any call.
fn validate(inputs: &Attributes) -> Result<(), ProviderError> {
    let name = attrs::s(inputs, "name")?;
    let ok = (1..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        return Err(invalid(format!(
            "{WHAT} name `{name}`: expected 1–{MAX_NAME} lowercase letters and digits, \
             starting with a letter"
        )));
    }
    bounds(inputs).map(drop)
}

fn path(inputs: &Attributes) -> Result<String, ProviderError> {
    let cluster = attrs::s(inputs, "cluster_id")?.trim_end_matches('/');
    Ok(format!(
        "{cluster}/agentPools/{}",
        attrs::s(inputs, "name")?
    ))
}

/// Whether the pool carries `token` (pools keep their tags under `properties`).
fn carries_pool_token(body: &Json, token: &str) -> bool {
    body["properties"]["tags"][TOKEN_TAG].as_str() == Some(token)
}

/// The labels input as node labels.
fn labels(inputs: &Attributes) -> Option<Json> {
    let m = inputs.get("labels")?.as_map()?;
    Some(Json::Object(
        m.iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), json!(s))))
            .collect(),
    ))
}

fn create_body(inputs: &Attributes, token: &str) -> Result<Json, ProviderError> {
    let (min, max) = bounds(inputs)?;
    let mut p = json!({
        "mode": attrs::opt_s(inputs, "mode").unwrap_or(DEFAULT_MODE),
        "vmSize": attrs::s(inputs, "vm_size")?,
        "count": min,
        "enableAutoScaling": true,
        "minCount": min,
        "maxCount": max,
        "vnetSubnetID": attrs::s(inputs, "subnet_id")?,
        "osType": "Linux",
        "type": "VirtualMachineScaleSets",
        // Pool tags hold only the token: pools have no `tags` input.
        "tags": tags_with_token(&Attributes::new(), token),
    });
    if let Some(v) = attrs::opt_s(inputs, "kubernetes_version") {
        p["orchestratorVersion"] = json!(v);
    }
    if let Some(l) = labels(inputs) {
        p["nodeLabels"] = l;
    }
    Ok(json!({ "properties": p }))
}

/// Properties ARM computes, left out of an update's `PUT`.
const READ_ONLY: [&str; 5] = [
    "provisioningState",
    "powerState",
    "currentOrchestratorVersion",
    "nodeImageVersion",
    "count",
];

/// The `PUT` body of an update: the current pool's properties with the inputs' updatable
/// fields applied. The count is sent only when the current one is outside the new bounds.
fn update_body(inputs: &Attributes, current: &Json) -> Result<Json, ProviderError> {
    let (min, max) = bounds(inputs)?;
    let mut p: Map<String, Json> = current["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let count = p.get("count").and_then(Json::as_i64);
    for k in READ_ONLY {
        p.remove(k);
    }
    p.insert("enableAutoScaling".into(), json!(true));
    p.insert("minCount".into(), json!(min));
    p.insert("maxCount".into(), json!(max));
    match count {
        Some(n) if (min..=max).contains(&n) => {}
        Some(n) => {
            p.insert("count".into(), json!(n.clamp(min, max)));
        }
        None => {
            p.insert("count".into(), json!(min));
        }
    }
    p.insert(
        "mode".into(),
        json!(attrs::opt_s(inputs, "mode").unwrap_or(DEFAULT_MODE)),
    );
    if let Some(v) = attrs::opt_s(inputs, "kubernetes_version") {
        p.insert("orchestratorVersion".into(), json!(v));
    }
    if let Some(l) = labels(inputs) {
        p.insert("nodeLabels".into(), l);
    }
    Ok(json!({ "properties": p }))
}

/// The pool's attributes (before [`managed_only`]).
fn attributes(id: &str, body: &Json, prior: &Attributes) -> Attributes {
    let cloud_id = match str_at(body, "/id") {
        "" => id,
        c => c,
    };
    let cluster = cloud_id
        .to_ascii_lowercase()
        .rfind("/agentpools/")
        .map_or("", |i| &cloud_id[..i]);
    let p = &body["properties"];
    let s = |at: &str| Value::from(str_at(body, at));
    let node_labels = p["nodeLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), Value::from(s))))
                .collect()
        })
        .unwrap_or_default();
    let mut a = attrs::attrs([
        ("id", id_value(cloud_id, Some(&Value::from(id)))),
        ("cluster_id", id_value(cluster, prior.get("cluster_id"))),
        ("name", id_value(str_at(body, "/name"), prior.get("name"))),
        ("vm_size", s("/properties/vmSize")),
        (
            "subnet_id",
            id_value(
                str_at(body, "/properties/vnetSubnetID"),
                prior.get("subnet_id"),
            ),
        ),
        ("mode", s("/properties/mode")),
        ("labels", Value::Map(node_labels)),
    ]);
    for (k, at) in [("min_count", "minCount"), ("max_count", "maxCount")] {
        if let Some(n) = p[at].as_i64() {
            a.insert(k.into(), Value::Int(n));
        }
    }
    if let Some(v) = p["orchestratorVersion"].as_str() {
        a.insert("kubernetes_version".into(), Value::from(v));
    }
    a
}

impl NodePool {
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
impl ResourceType for NodePool {
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
        let path = path(&req.inputs)?;
        let found = self.client.get(&path, API).await?;
        Ok(FindResponse {
            id: found
                .filter(|b| carries_pool_token(b, &req.token))
                .map(|_| path),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        validate(&req.inputs)?;
        let path = path(&req.inputs)?;
        let existing = self.client.get(&path, API).await?;
        let ours = |b: &Json| carries_pool_token(b, &req.token);
        if needs_put(existing.as_ref(), ours, WHAT, &req.address, &path)? {
            let body = create_body(&req.inputs, &req.token)?;
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
        validate(&req.inputs)?;
        let current = self.client.get(&req.id, API).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("{WHAT} `{}` no longer exists", req.id),
            )
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::kubernetes_cluster::testing::{delete_and_check, ready_cluster};
    use crate::testutil;
    use flyteinfra_core::requests;

    const T: &str = "azure_kubernetes_node_pool";

    fn inputs(cluster: &str, subnet: &str, name: &str) -> Attributes {
        attrs::attrs([
            ("cluster_id", cluster.into()),
            ("name", name.into()),
            ("vm_size", "Standard_D4s_v5".into()),
            ("min_count", Value::Int(1)),
            ("max_count", Value::Int(5)),
            ("subnet_id", subnet.into()),
            ("kubernetes_version", "1.33".into()),
            ("mode", "User".into()),
            (
                "labels",
                Value::Map([("flyte.org/node-role".to_string(), "worker".into())].into()),
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

    fn cloud_count(d: &flyteinfra_azure_double::AzureDouble, id: &str) -> Option<i64> {
        d.shared().lock().resource(id).unwrap()["properties"]["count"].as_i64()
    }

    fn calls(c: &ArmClient, op: &str) -> u64 {
        c.calls_by_operation().get(op).copied().unwrap_or(0)
    }

    /// A pool name unique in this process (≤ 12 lowercase alphanumerics).
    fn pool_name() -> String {
        let u = testutil::unique("p").replace('-', "");
        format!("p{}", &u[u.len().saturating_sub(11)..])
    }

    #[tokio::test]
    async fn pool_lifecycle() {
        let (c, d) = (testutil::client(), testutil::double());
        let (net, cluster, ca) = ready_cluster(&c, d).await;
        let rt = build(&c);
        let ins = inputs(&cluster, &net.pool_subnet, "flyte1");
        let token = testutil::unique("fi-tok");
        let created = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        assert_eq!(id, format!("{cluster}/agentPools/flyte1"));
        let ready = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        let a = refresh(&rt, &id, &ins).await;
        assert_eq!(a, ready);
        for (k, v) in &ins {
            assert_eq!(a.get(k), Some(v), "{k}");
        }
        assert_eq!(a["id"], Value::from(id.as_str()));
        // Autoscaling on, starting at the minimum; the token is in the pool's tags.
        let cloud = d.shared().lock().resource(&id).unwrap();
        assert_eq!(cloud["properties"]["enableAutoScaling"], true);
        assert_eq!(cloud["properties"]["count"], 1);
        assert!(carries_pool_token(&cloud, &token));
        // The cluster lists it among its pools.
        let listed = c.get(&cluster, API).await.unwrap().unwrap();
        assert!(
            listed["properties"]["agentPoolProfiles"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "flyte1"),
            "{listed}"
        );

        // Found by its token, only by it; a retried create adopts it without a PUT.
        let found = rt.find(requests::find(T, &ins, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        let other = rt.find(requests::find(T, &ins, "fi-other")).await.unwrap();
        assert_eq!(other.id, None);
        let puts = calls(&c, "PUT agentpools");
        let again = rt.create(requests::create(T, &ins, &token)).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(calls(&c, "PUT agentpools"), puts);

        // Update: bounds and labels; the token survives.
        let mut new = ins.clone();
        new.insert("max_count".into(), Value::Int(8));
        new.insert(
            "labels".into(),
            Value::Map([("flyte.org/node-role".to_string(), "gpu".into())].into()),
        );
        let up = rt
            .update(requests::update(T, &id, &a, &new, &["max_count", "labels"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(up, refresh(&rt, &id, &new).await);
        for (k, v) in &new {
            assert_eq!(up.get(k), Some(v), "{k}");
        }
        let found = rt.find(requests::find(T, &new, &token)).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));

        delete_and_check(&rt, T, &id, &up).await;
        let cl = crate::resources::kubernetes_cluster::build(&c);
        delete_and_check(&cl, "azure_kubernetes_cluster", &cluster, &ca).await;
    }

    #[tokio::test]
    async fn the_autoscaler_owns_the_count() {
        let (c, d) = (testutil::client(), testutil::double());
        let (net, cluster, ca) = ready_cluster(&c, d).await;
        let rt = build(&c);
        let ins = inputs(&cluster, &net.pool_subnet, &pool_name());
        let id = rt
            .create(requests::create(T, &ins, "fi-scale"))
            .await
            .unwrap()
            .id;
        let a = rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        // The autoscaler grows it to 4, within 1..=5: not drift.
        d.shared().lock().resource_mut(&id).unwrap()["properties"]["count"] = json!(4);
        assert_eq!(refresh(&rt, &id, &ins).await, a);
        // An update leaves the count alone.
        let mut new = ins.clone();
        new.insert(
            "labels".into(),
            Value::Map([("team".to_string(), "ml".into())].into()),
        );
        let a2 = rt
            .update(requests::update(T, &id, &a, &new, &["labels"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(cloud_count(d, &id), Some(4));
        // Bounds that exclude the current count move it to the nearest bound.
        let mut narrow = new.clone();
        narrow.insert("max_count".into(), Value::Int(2));
        rt.update(requests::update(T, &id, &a2, &narrow, &["max_count"]))
            .await
            .unwrap();
        assert_eq!(cloud_count(d, &id), Some(2));
        let cl = crate::resources::kubernetes_cluster::build(&c);
        delete_and_check(&cl, "azure_kubernetes_cluster", &cluster, &ca).await;
    }

    #[tokio::test]
    async fn foreign_pool_is_refused() {
        let (c, d) = (testutil::client(), testutil::double());
        let (net, cluster, ca) = ready_cluster(&c, d).await;
        let name = pool_name();
        let id = format!("{cluster}/agentPools/{name}");
        let body = json!({"properties": {"mode": "User", "vmSize": "Standard_D4s_v5",
            "count": 1, "enableAutoScaling": true, "minCount": 1, "maxCount": 3,
            "vnetSubnetID": net.pool_subnet, "osType": "Linux",
            "type": "VirtualMachineScaleSets", "tags": {"owner": "someone"}}});
        let answer = c.put(&id, API, &body).await.unwrap();
        if let Some(op) = answer.operation {
            let p = Progress::none(flyteinfra_core::Address::new(T, "pool"));
            c.follow(&op, "pool", &p).await.unwrap();
        }
        let before = c.get(&id, API).await.unwrap().unwrap();
        let rt = build(&c);
        let ins = inputs(&cluster, &net.pool_subnet, &name);
        let e = rt
            .create(requests::create(T, &ins, "fi-mine"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(e.message.contains("flyteinfra import"), "{e}");
        assert_eq!(c.get(&id, API).await.unwrap().unwrap(), before);
        let found = rt.find(requests::find(T, &ins, "fi-mine")).await.unwrap();
        assert_eq!(found.id, None);
        let cl = crate::resources::kubernetes_cluster::build(&c);
        delete_and_check(&cl, "azure_kubernetes_cluster", &cluster, &ca).await;
    }

    #[tokio::test]
    async fn drift_shows_on_read() {
        let (c, d) = (testutil::client(), testutil::double());
        let (net, cluster, ca) = ready_cluster(&c, d).await;
        let rt = build(&c);
        let ins = inputs(&cluster, &net.pool_subnet, &pool_name());
        let id = rt
            .create(requests::create(T, &ins, "fi-drift"))
            .await
            .unwrap()
            .id;
        rt.wait_ready(requests::wait(T, &id, &ins)).await.unwrap();
        {
            let mut w = d.shared().lock();
            let p = &mut w.resource_mut(&id).unwrap()["properties"];
            p["maxCount"] = json!(9);
            p["nodeLabels"] = json!({"flyte.org/node-role": "changed"});
        }
        let now = refresh(&rt, &id, &ins).await;
        assert_eq!(now["max_count"], Value::Int(9));
        assert_eq!(
            now["labels"],
            Value::Map([("flyte.org/node-role".to_string(), "changed".into())].into())
        );
        assert_eq!(now["min_count"], Value::Int(1));
        let cl = crate::resources::kubernetes_cluster::build(&c);
        delete_and_check(&cl, "azure_kubernetes_cluster", &cluster, &ca).await;
    }

    #[test]
    fn names_and_counts_are_checked_before_any_call() {
        let ok = inputs("/c", "/s", "flyte1");
        assert!(validate(&ok).is_ok());
        for bad in ["", "Flyte", "flyte-1", "averylongpool", "1flyte"] {
            let mut i = ok.clone();
            i.insert("name".into(), bad.into());
            assert_eq!(
                validate(&i).unwrap_err().kind,
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        let mut i = ok.clone();
        i.insert("min_count".into(), Value::Int(6));
        assert_eq!(validate(&i).unwrap_err().kind, ErrorKind::InvalidInput);
        // The count: sent as the minimum on create; on update only outside the bounds.
        assert_eq!(create_body(&ok, "t").unwrap()["properties"]["count"], 1);
        let current =
            |n: i64| json!({"properties": {"count": n, "provisioningState": "Succeeded"}});
        let inside = update_body(&ok, &current(3)).unwrap();
        assert!(inside["properties"].get("count").is_none(), "{inside}");
        assert!(inside["properties"].get("provisioningState").is_none());
        assert_eq!(
            update_body(&ok, &current(9)).unwrap()["properties"]["count"],
            5
        );
        assert_eq!(
            update_body(&ok, &current(0)).unwrap()["properties"]["count"],
            1
        );
    }
}

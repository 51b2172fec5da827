//! `gcp_compute_network`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value, WaitRequest,
};
use google_cloud_compute_v1::model::network_routing_config::RoutingMode;
use google_cloud_compute_v1::model::{Network as GNetwork, NetworkRoutingConfig};

use super::compute_common::{
    PendingOps, Scope, absent, carries_token, claim, gone_is_ok, present, settle,
    token_description, wait_op,
};
use super::operations::managed_only;
use crate::client::GcpClients;
use crate::error::gax_err;

/// `gcp_compute_network`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_compute_network",
        doc: "A VPC network. Its name is unique in the project, so the name is its identity; \
              subnetworks are managed separately (`auto_create_subnetworks: false`).",
        fields: vec![
            Field::computed("id", "The network's name."),
            Field::input("name", "The network's name (unique in the project).")
                .required()
                .force_new(),
            Field::input(
                "auto_create_subnetworks",
                "Whether Google creates one subnetwork per region (auto mode); false for a \
                 custom-mode network whose subnetworks are declared.",
            )
            .force_new(),
            Field::input(
                "routing_mode",
                "`REGIONAL` (routes learned by Cloud Routers stay in their region) or `GLOBAL`.",
            ),
            Field::computed(
                "self_link",
                "The network's full URL, as other resources name it.",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(20),
        deletion_protection: None,
    }
}

/// `gcp_compute_network` over Compute Engine.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ComputeNetwork {
        clients: clients.clone(),
        schema: schema(),
        pending: PendingOps::default(),
    })
}

struct ComputeNetwork {
    clients: GcpClients,
    schema: Schema,
    pending: PendingOps,
}

impl ComputeNetwork {
    async fn get(&self, name: &str) -> Result<Option<GNetwork>, ProviderError> {
        gone_is_ok(
            self.clients
                .networks
                .get()
                .set_project(&self.clients.project)
                .set_network(name)
                .send()
                .await
                .map_err(|e| gax_err("networks.get", e)),
        )
    }

    fn attributes(n: &GNetwork) -> Attributes {
        let name = n.name.clone().unwrap_or_default();
        let mode = n
            .routing_config
            .as_ref()
            .and_then(|r| r.routing_mode.as_ref())
            .and_then(RoutingMode::name)
            .unwrap_or("REGIONAL");
        attrs::attrs([
            ("id", name.clone().into()),
            ("name", name.into()),
            (
                "auto_create_subnetworks",
                n.auto_create_subnetworks.unwrap_or(false).into(),
            ),
            ("routing_mode", mode.into()),
            ("self_link", n.self_link.clone().unwrap_or_default().into()),
        ])
    }

    async fn read_back(
        &self,
        name: &str,
        inputs: &Attributes,
    ) -> Result<Attributes, ProviderError> {
        let n = self.get(name).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("network `{name}` is gone right after its change"),
            )
        })?;
        Ok(managed_only(Self::attributes(&n), inputs, &self.schema))
    }

    /// Sets the routing mode when the network's differs from `inputs`'s.
    async fn sync_routing_mode(
        &self,
        name: &str,
        current: Option<&str>,
        inputs: &Attributes,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let Some(want) = attrs::opt_s(inputs, "routing_mode") else {
            return Ok(());
        };
        if current == Some(want) {
            return Ok(());
        }
        let op = self
            .clients
            .networks
            .patch()
            .set_project(&self.clients.project)
            .set_network(name)
            .set_body(
                GNetwork::new()
                    .set_routing_config(NetworkRoutingConfig::new().set_routing_mode(want)),
            )
            .send()
            .await
            .map_err(|e| gax_err("networks.patch", e))?;
        wait_op(
            &self.clients,
            &Scope::Global,
            op,
            "networks.patch",
            progress,
        )
        .await
    }
}

/// The `targetLink` suffix of operations on network `name`.
fn target(name: &str) -> String {
    format!("/global/networks/{name}")
}

#[async_trait]
impl ResourceType for ComputeNetwork {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .get(&req.id)
                .await?
                .map(|n| managed_only(Self::attributes(&n), &req.prior_inputs, &self.schema)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let found = self.get(name).await?;
        Ok(FindResponse {
            id: found
                .filter(|n| carries_token(n.description.as_deref(), &req.token))
                .map(|_| name.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let mut body = GNetwork::new()
            .set_name(name)
            .set_description(token_description(&req.token))
            .set_auto_create_subnetworks(
                attrs::b(&req.inputs, "auto_create_subnetworks").unwrap_or(false),
            );
        if let Some(mode) = attrs::opt_s(&req.inputs, "routing_mode") {
            body = body.set_routing_config(NetworkRoutingConfig::new().set_routing_mode(mode));
        }
        let sent = self
            .clients
            .networks
            .insert()
            .set_project(&self.clients.project)
            .set_body(body)
            .send()
            .await
            .map_err(|e| gax_err("networks.insert", e));
        match sent {
            Ok(op) => self.pending.put(name, op.name.as_deref()),
            // Names are unique in a project: the network an earlier attempt made is
            // adopted (its description carries the token), and `wait_ready` brings its
            // settings in line; anyone else's is refused.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let found = self.get(name).await?;
                claim(
                    found.as_ref().map(|n| n.description.as_deref()),
                    &req.token,
                    "network",
                    &req.address,
                    name,
                )?;
            }
            Err(e) => return Err(e),
        }
        Ok(CreateResponse {
            id: name.to_string(),
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let what = "networks.insert";
        let c = &self.clients;
        settle(
            c,
            &Scope::Global,
            &self.pending,
            &req.id,
            &target(&req.id),
            what,
            &req.progress,
        )
        .await?;
        let what = format!("network `{}`", req.id);
        let n = present(
            self.get(&req.id).await?,
            &what,
            "disappeared while being created",
        )?;
        let current = Self::attributes(&n);
        let mode = current.get("routing_mode").and_then(Value::as_str);
        self.sync_routing_mode(&req.id, mode, &req.inputs, &req.progress)
            .await?;
        self.read_back(&req.id, &req.inputs).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let mode = attrs::opt_s(&req.prior, "routing_mode");
        self.sync_routing_mode(&req.id, mode, &req.inputs, &req.progress)
            .await?;
        Ok(UpdateResponse {
            attributes: self.read_back(&req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let sent = self
            .clients
            .networks
            .delete()
            .set_project(&self.clients.project)
            .set_network(&req.id)
            .send()
            .await
            .map_err(|e| gax_err("networks.delete", e));
        match gone_is_ok(sent)? {
            Some(op) => {
                self.pending.put(&req.id, op.name.as_deref());
                Ok(DeleteResponse { done: false })
            }
            None => Ok(DeleteResponse { done: true }),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let c = &self.clients;
        let what = "networks.delete";
        settle(
            c,
            &Scope::Global,
            &self.pending,
            &req.id,
            &target(&req.id),
            what,
            &req.progress,
        )
        .await?;
        absent(self.get(&req.id).await?, &format!("network `{}`", req.id))
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::requests as r;

    use super::*;
    use crate::testutil;

    const T: &str = "gcp_compute_network";

    fn inputs(name: &str) -> Attributes {
        attrs::attrs([
            ("name", name.into()),
            ("auto_create_subnetworks", false.into()),
            ("routing_mode", "REGIONAL".into()),
        ])
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let rt = build(&c);
        let name = testutil::unique("net");
        let inp = inputs(&name);

        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        assert_eq!(id, name);
        let ready = rt.wait_ready(r::wait(T, &id, &inp)).await.unwrap();
        let read = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, ready);
        let self_link = read["self_link"].as_str().unwrap().to_string();
        assert!(
            self_link.ends_with(&format!("/global/networks/{name}")),
            "{self_link}"
        );
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        want.insert("self_link".into(), self_link.into());
        assert_eq!(read, want);

        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        testutil::assert_foreign_token_refused(&rt, T, &inp).await;
        // A retried create adopts the network and brings its settings in line.
        let mut global = inp.clone();
        global.insert("routing_mode".into(), "GLOBAL".into());
        let again = rt.create(r::create(T, &global, "tok")).await.unwrap();
        assert_eq!(again.id, id);
        let adopted = rt.wait_ready(r::wait(T, &id, &global)).await.unwrap();
        assert_eq!(adopted["routing_mode"], Value::from("GLOBAL"));

        let up = rt
            .update(r::update(T, &id, &adopted, &inp, &["routing_mode"]))
            .await
            .unwrap();
        assert_eq!(up.attributes["routing_mode"], Value::from("REGIONAL"));

        // Unset optional inputs are not reported (not managed, never drift).
        let only_name = attrs::attrs([("name", name.clone().into())]);
        let partial = rt
            .read(r::refresh(T, &id, &only_name))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert!(!partial.contains_key("routing_mode"), "{partial:?}");

        for _ in 0..2 {
            let d = rt.delete(r::delete(T, &id, &up.attributes)).await.unwrap();
            if !d.done {
                rt.wait_deleted(r::wait(T, &id, &inp)).await.unwrap();
            }
        }
        assert!(rt.read(r::read(T, &id)).await.unwrap().attributes.is_none());
        assert!(rt.find(r::find(T, &inp, "tok")).await.unwrap().id.is_none());
    }

    #[tokio::test]
    async fn a_resumed_create_waits_for_the_running_operation() {
        let c = testutil::clients().await;
        let name = testutil::unique("net");
        let inp = inputs(&name);
        // The create is sent by one instance (a run that died); another waits for it.
        let first = build(&c);
        let id = first.create(r::create(T, &inp, "tok")).await.unwrap().id;
        let second = build(&c);
        let ready = second.wait_ready(r::wait(T, &id, &inp)).await.unwrap();
        assert_eq!(ready["name"], Value::from(name.as_str()));
        first.delete(r::delete(T, &id, &ready)).await.unwrap();
        second.wait_deleted(r::wait(T, &id, &inp)).await.unwrap();
        assert!(
            second
                .read(r::read(T, &id))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
    }
}

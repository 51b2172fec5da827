//! `azure_resource_providers`: the resource providers (`Microsoft.Network`, …) a deployment
//! needs, registered in the subscription. Deleting it unregisters nothing: other workloads
//! of the subscription use the same providers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Field,
    FindRequest, FindResponse, Poller, Progress, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse, WaitRequest,
};

use super::common::string_list;
use crate::client::ArmClient;
use crate::subscription::{PROVIDERS_API, registration};

/// `azure_resource_providers`.
pub fn schema() -> Schema {
    Schema {
        type_name: "azure_resource_providers",
        doc: "The resource providers a deployment needs, registered in the subscription. \
              Deleting it unregisters nothing: other workloads may use them.",
        fields: vec![
            Field::computed("id", "`/subscriptions/{id}`."),
            Field::input(
                "namespaces",
                "The providers to register (`Microsoft.Network`, …). A read lists only those \
                 of them that are registered, so an unregistered one shows as drift.",
            )
            .required(),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(60),
        deletion_protection: None,
    }
}

/// `azure_resource_providers` over Resource Manager.
pub fn build(client: &ArmClient) -> Arc<dyn ResourceType> {
    Arc::new(ResourceProviders {
        client: client.clone(),
        schema: schema(),
    })
}

struct ResourceProviders {
    client: ArmClient,
    schema: Schema,
}

impl ResourceProviders {
    /// Those of `wanted` that are registered, in order.
    async fn registered(&self, wanted: &[String]) -> Result<Vec<String>, ProviderError> {
        let mut out = Vec::new();
        for ns in wanted {
            if registration(&self.client, ns).await? == "Registered" {
                out.push(ns.clone());
            }
        }
        Ok(out)
    }

    fn attributes(&self, registered: Vec<String>) -> Attributes {
        attrs::attrs([
            ("id", self.client.subscription_path().into()),
            ("namespaces", string_list(registered)),
        ])
    }

    /// Asks for every one of `wanted` not registered yet.
    async fn register(&self, wanted: &[String]) -> Result<(), ProviderError> {
        for ns in wanted {
            if registration(&self.client, ns).await? != "Registered" {
                self.client
                    .post(
                        &format!(
                            "{}/providers/{ns}/register",
                            self.client.subscription_path()
                        ),
                        PROVIDERS_API,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Waits until all of `wanted` are registered (it takes Azure a minute or two).
    async fn settle(
        &self,
        wanted: &[String],
        progress: &Progress,
    ) -> Result<Attributes, ProviderError> {
        let poller = Poller::start(self.client.schedule(self.schema.expected_create));
        loop {
            let registered = self.registered(wanted).await?;
            if registered.len() == wanted.len() {
                return Ok(self.attributes(registered));
            }
            progress.status(format!(
                "registering {}",
                wanted
                    .iter()
                    .filter(|w| !registered.contains(w))
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            poller.sleep().await;
        }
    }
}

#[async_trait]
impl ResourceType for ResourceProviders {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let wanted = attrs::strings(&req.prior_inputs, "namespaces");
        Ok(ReadResponse {
            attributes: Some(self.attributes(self.registered(&wanted).await?)),
        })
    }

    async fn find(&self, _req: FindRequest) -> Result<FindResponse, ProviderError> {
        // Registration belongs to the subscription, not to anyone's create.
        Ok(FindResponse {
            id: Some(self.client.subscription_path()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        self.register(&attrs::strings(&req.inputs, "namespaces"))
            .await?;
        Ok(CreateResponse {
            id: self.client.subscription_path(),
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        self.settle(&attrs::strings(&req.inputs, "namespaces"), &req.progress)
            .await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let wanted = attrs::strings(&req.inputs, "namespaces");
        self.register(&wanted).await?;
        Ok(UpdateResponse {
            attributes: self.settle(&wanted, &req.progress).await?,
        })
    }

    async fn delete(&self, _req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flyteinfra_azure_double::AzureDouble;
    use flyteinfra_core::Value;
    use flyteinfra_core::requests as r;

    use crate::testutil::client_of;

    const T: &str = "azure_resource_providers";
    const NETWORK: &str = "Microsoft.Network";
    const STORAGE: &str = "Microsoft.Storage";

    fn namespaces(ns: &[&str]) -> Value {
        Value::List(ns.iter().map(|n| Value::from(*n)).collect())
    }

    /// A double where `Microsoft.Network` is not registered, and a client of it.
    fn unregistered_network() -> (AzureDouble, ArmClient) {
        let d = AzureDouble::start();
        d.shared().lock().knobs.unregistered = vec![NETWORK.to_string()];
        let c = client_of(&d);
        (d, c)
    }

    fn inputs() -> Attributes {
        attrs::attrs([("namespaces", namespaces(&[NETWORK, STORAGE]))])
    }

    #[tokio::test]
    async fn read_lists_only_registered_namespaces() {
        let (_d, c) = unregistered_network();
        let t = build(&c);
        let id = c.subscription_path();
        let a = t
            .read(r::refresh(T, &id, &inputs()))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(a["namespaces"], namespaces(&[STORAGE]), "drift");
        assert_eq!(a["id"], Value::from(id.as_str()));
    }

    #[tokio::test]
    async fn create_registers_and_waits_until_registered() {
        let (d, c) = unregistered_network();
        let t = build(&c);
        let inputs = inputs();
        let created = t.create(r::create(T, &inputs, "tok")).await.unwrap();
        assert_eq!(created.id, c.subscription_path());
        assert!(matches!(created.completion, Completion::InProgress));
        let registers = |d: &AzureDouble| {
            d.shared()
                .lock()
                .calls_by_op()
                .get("POST register")
                .copied()
        };
        assert_eq!(registers(&d), Some(1), "only the unregistered one");
        let a = t
            .wait_ready(r::wait(T, &created.id, &inputs))
            .await
            .unwrap();
        assert_eq!(a["namespaces"], namespaces(&[NETWORK, STORAGE]));
        assert_eq!(registers(&d), Some(1), "waiting registers nothing more");
        let read = t
            .read(r::refresh(T, &created.id, &inputs))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, a);
    }

    #[tokio::test]
    async fn delete_unregisters_nothing() {
        let (d, c) = unregistered_network();
        let t = build(&c);
        let id = c.subscription_path();
        let before = d.shared().lock().calls();
        let done = t.delete(r::delete(T, &id, &inputs())).await.unwrap().done;
        assert!(done);
        assert_eq!(d.shared().lock().calls(), before);
        assert_eq!(c.calls(), 0);
    }
}

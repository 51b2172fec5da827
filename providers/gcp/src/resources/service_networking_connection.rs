//! `gcp_service_networking_connection`, over the Service Networking JSON API (there is no
//! official Rust client for it): <https://cloud.google.com/service-infrastructure/docs/service-networking/reference/rest>.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, WaitRequest,
};
use google_cloud_gax::error::rpc::Code;
use reqwest::Method;
use serde_json::{Value as Json, json};

use super::compute_common::PendingOps;
use super::operations::{Backoff, link_value, poll};
use crate::client::{Api, GcpClients};
use crate::error::kind_for_code;

/// The service every path here is under.
const CONNECTIONS: &str = "/v1/services/servicenetworking.googleapis.com/connections";

/// Polls of the connection a resumed wait makes before it gives up on a create or delete
/// whose operation this process does not know (about two minutes with the backoff).
const BLIND_POLLS: u32 = 30;

/// `gcp_service_networking_connection`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_service_networking_connection",
        doc: "The Private Service Access peering between a VPC network and Google's service \
              producers (Cloud SQL private IP), over reserved global address ranges. Google \
              refuses to delete it while a Cloud SQL instance still uses it, so the graph \
              deletes the instances first.",
        fields: vec![
            Field::computed("id", "The network, as `network` names it."),
            Field::input(
                "network",
                "`projects/{project_number}/global/networks/{name}` (Service Networking names \
                 projects by number).",
            )
            .required()
            .force_new(),
            Field::input(
                "reserved_peering_ranges",
                "Names of the reserved `VPC_PEERING` global address ranges to allocate from. \
                 Changed in place (with `force`).",
            )
            .required(),
            Field::computed(
                "peering",
                "The VPC peering Google made (`servicenetworking-googleapis-com`).",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(60),
        deletion_protection: None,
    }
}

/// `gcp_service_networking_connection` over the Service Networking JSON API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ServiceNetworkingConnection {
        clients: clients.clone(),
        schema: schema(),
        pending: PendingOps::default(),
    })
}

struct ServiceNetworkingConnection {
    clients: GcpClients,
    schema: Schema,
    pending: PendingOps,
}

/// The connection's ranges as the API takes them.
fn ranges(inputs: &Attributes) -> Json {
    json!(attrs::strings(inputs, "reserved_peering_ranges"))
}

impl ServiceNetworkingConnection {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Json>,
        what: &str,
    ) -> Result<Json, ProviderError> {
        self.clients
            .http
            .call(Api::ServiceNetworking, method, path, body, what)
            .await
    }

    /// The Service Networking connection of `network`, if any.
    async fn get(&self, network: &str) -> Result<Option<Json>, ProviderError> {
        let path = format!("{CONNECTIONS}?network={network}");
        let out = match self
            .call(
                Method::GET,
                &path,
                None,
                "servicenetworking.connections.list",
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out["connections"].as_array().and_then(|l| {
            l.iter()
                .find(|c| {
                    c["service"]
                        .as_str()
                        .is_none_or(|s| s.ends_with("servicenetworking.googleapis.com"))
                })
                .cloned()
        }))
    }

    fn attributes(conn: &Json, id: &str, prior: &Attributes) -> Attributes {
        let cloud: Vec<String> = conn["reservedPeeringRanges"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let network = conn["network"].as_str().unwrap_or(id);
        attrs::attrs([
            ("id", id.into()),
            ("network", link_value(network, prior.get("network"))),
            (
                "reserved_peering_ranges",
                attrs::unordered(cloud, prior.get("reserved_peering_ranges")),
            ),
            (
                "peering",
                conn["peering"].as_str().unwrap_or_default().into(),
            ),
        ])
    }

    async fn read_back(&self, id: &str, inputs: &Attributes) -> Result<Attributes, ProviderError> {
        let conn = self.get(id).await?.ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("the service networking connection of `{id}` does not exist"),
            )
        })?;
        Ok(Self::attributes(&conn, id, inputs))
    }

    /// Polls operation `op` (as a call answered it) until done; fails with its error.
    async fn wait_op(
        &self,
        mut op: Json,
        what: &str,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let mut backoff = Backoff::new();
        let mut polls = 0u32;
        while op["done"].as_bool() != Some(true) {
            let Some(name) = op["name"].as_str().map(str::to_string) else {
                return Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!("{what}: the operation has no name"),
                ));
            };
            backoff.sleep().await;
            polls += 1;
            if polls.is_multiple_of(5) {
                progress.status(format!("waiting for {name}"));
            }
            let path = format!("/v1/{name}");
            op = poll(&mut backoff, || {
                self.call(Method::GET, &path, None, "servicenetworking.operations.get")
            })
            .await?;
        }
        match op.get("error").filter(|e| !e.is_null()) {
            None => Ok(()),
            Some(e) => {
                let code = e["code"].as_i64().and_then(|c| i32::try_from(c).ok());
                Err(ProviderError::new(
                    code.map_or(ErrorKind::Permanent, |c| kind_for_code(Code::from(c))),
                    format!("{what}: {}", e["message"].as_str().unwrap_or("failed")),
                ))
            }
        }
    }

    /// Waits for the create or delete of `id`: the operation this process started, or
    /// else (a resumed run) the connection itself, until it `exists` or not.
    async fn settle(
        &self,
        id: &str,
        exists: bool,
        what: &str,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        if let Some(name) = self.pending.get(id) {
            let op = json!({"name": name, "done": false});
            let r = self.wait_op(op, what, progress).await;
            if !r.as_ref().is_err_and(|e| e.kind.is_retryable()) {
                self.pending.forget(id);
            }
            return r;
        }
        let mut backoff = Backoff::new();
        for _ in 0..BLIND_POLLS {
            if self.get(id).await?.is_some() == exists {
                return Ok(());
            }
            backoff.sleep().await;
        }
        Err(ProviderError::new(
            ErrorKind::Transient,
            format!("{what}: the connection of `{id}` has not settled yet"),
        ))
    }

    /// Replaces the connection's ranges (`force`: Google checks no allocation is lost).
    async fn patch_ranges(
        &self,
        network: &str,
        inputs: &Attributes,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let what = "servicenetworking.connections.patch";
        let path = format!("{CONNECTIONS}/-?updateMask=reservedPeeringRanges&force=true");
        let body = json!({"network": network, "reservedPeeringRanges": ranges(inputs)});
        let op = self.call(Method::PATCH, &path, Some(&body), what).await?;
        self.wait_op(op, what, progress).await
    }
}

#[async_trait]
impl ResourceType for ServiceNetworkingConnection {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .get(&req.id)
                .await?
                .map(|c| Self::attributes(&c, &req.id, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let network = attrs::s(&req.inputs, "network")?;
        Ok(FindResponse {
            id: self.get(network).await?.map(|_| network.to_string()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let network = attrs::s(&req.inputs, "network")?;
        // There is one connection per network and service: one an earlier attempt made
        // is adopted, its ranges made to match.
        if let Some(conn) = self.get(network).await? {
            let key = "reserved_peering_ranges";
            let have = Self::attributes(&conn, network, &req.inputs);
            // A range this create does not ask for is someone else's (an `existing:`
            // network's own private services): patching the ranges (`force`) would cut
            // their services off, and deleting it later would too. Refuse, and say so.
            let ours = attrs::strings(&req.inputs, key);
            let foreign: Vec<String> = attrs::strings(&have, key)
                .into_iter()
                .filter(|r| !ours.contains(r))
                .collect();
            if !foreign.is_empty() {
                return Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "network `{network}` already has a private services connection with \
                         ranges flyteinfra did not reserve ({}); flyteinfra will not change or \
                         delete it. Use a network without one, or remove the connection first",
                        foreign.join(", ")
                    ),
                ));
            }
            // Lists compared sorted: the order of ranges means nothing.
            let attributes = if attrs::list(attrs::strings(&have, key))
                == attrs::list(attrs::strings(&req.inputs, key))
            {
                have
            } else {
                self.patch_ranges(network, &req.inputs, &req.progress)
                    .await?;
                self.read_back(network, &req.inputs).await?
            };
            return Ok(CreateResponse {
                id: network.to_string(),
                completion: Completion::Ready(attributes),
            });
        }
        let what = "servicenetworking.connections.create";
        let body = json!({"network": network, "reservedPeeringRanges": ranges(&req.inputs)});
        let op = self
            .call(Method::POST, CONNECTIONS, Some(&body), what)
            .await?;
        if op["done"].as_bool() == Some(true) {
            self.wait_op(op, what, &req.progress).await?;
        } else {
            self.pending.put(network, op["name"].as_str());
        }
        Ok(CreateResponse {
            id: network.to_string(),
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let what = "servicenetworking.connections.create";
        self.settle(&req.id, true, what, &req.progress).await?;
        self.read_back(&req.id, &req.inputs).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        self.patch_ranges(&req.id, &req.inputs, &req.progress)
            .await?;
        Ok(UpdateResponse {
            attributes: self.read_back(&req.id, &req.inputs).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        if self.get(&req.id).await?.is_none() {
            return Ok(DeleteResponse { done: true });
        }
        let what = "servicenetworking.connections.deleteConnection";
        let path = format!("{CONNECTIONS}/servicenetworking-googleapis-com:deleteConnection");
        let body = json!({"consumerNetwork": req.id});
        let op = match self.call(Method::POST, &path, Some(&body), what).await {
            Ok(op) => op,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(DeleteResponse { done: true }),
            Err(e) => return Err(e),
        };
        if op["done"].as_bool() == Some(true) {
            self.wait_op(op, what, &req.progress).await?;
            return Ok(DeleteResponse { done: true });
        }
        self.pending.put(&req.id, op["name"].as_str());
        Ok(DeleteResponse { done: false })
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let what = "servicenetworking.connections.deleteConnection";
        self.settle(&req.id, false, what, &req.progress).await?;
        match self.get(&req.id).await? {
            None => Ok(()),
            Some(_) => Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "the service networking connection of `{}` still exists",
                    req.id
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::Value;
    use flyteinfra_core::requests as r;

    use super::super::compute_common::test_support::{network, psa_range};
    use super::super::project_services::project_number;
    use super::*;
    use crate::testutil;

    const T: &str = "gcp_service_networking_connection";

    fn inputs(network: &str, ranges: &[&str]) -> Attributes {
        attrs::attrs([
            ("network", network.into()),
            ("reserved_peering_ranges", Value::from(ranges.to_vec())),
        ])
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let net = network(&c).await;
        let number = project_number(&c).await.unwrap();
        let net_name = net.rsplit('/').next().unwrap();
        let sn_network = format!("projects/{number}/global/networks/{net_name}");
        let rt = build(&c);

        // The reserved range must exist first.
        let missing = testutil::unique("psa");
        let bad = inputs(&sn_network, &[&missing]);
        let err = match rt.create(r::create(T, &bad, "tok")).await {
            Err(e) => e,
            Ok(created) => rt
                .wait_ready(r::wait(T, &created.id, &bad))
                .await
                .unwrap_err(),
        };
        assert!(err.message.contains(&missing), "{err}");
        assert!(
            rt.read(r::read(T, &sn_network))
                .await
                .unwrap()
                .attributes
                .is_none()
        );

        let first = psa_range(&c, &net, 16).await;
        let second = psa_range(&c, &net, 20).await;
        let inp = inputs(&sn_network, &[&first]);
        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        let id = created.id.clone();
        assert_eq!(id, sn_network);
        let ready = match created.completion {
            Completion::Ready(a) => a,
            Completion::InProgress => rt.wait_ready(r::wait(T, &id, &inp)).await.unwrap(),
        };
        let read = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, ready);
        assert_eq!(
            read["reserved_peering_ranges"],
            inp["reserved_peering_ranges"]
        );
        assert_eq!(read["network"], Value::from(sn_network.as_str()));
        assert_eq!(
            read["peering"],
            Value::from("servicenetworking-googleapis-com")
        );

        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // A retried create adopts the connection as it is, or with the ranges it asks for.
        let again = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(again.id, id);
        assert!(matches!(again.completion, Completion::Ready(ref a) if *a == read));
        let both = inputs(&sn_network, &[&second, &first]);
        let adopted = rt.create(r::create(T, &both, "tok")).await.unwrap();
        // A connection holding a range this create does not ask for is not ours: refused,
        // and left as it is.
        let err = rt
            .create(r::create(T, &inputs(&sn_network, &[&second]), "tok2"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
        assert!(err.message.contains(&first), "{err}");
        let Completion::Ready(adopted) = adopted.completion else {
            panic!("an adopted connection is ready")
        };
        assert_eq!(
            adopted["reserved_peering_ranges"],
            both["reserved_peering_ranges"]
        );

        let up = rt
            .update(r::update(
                T,
                &id,
                &adopted,
                &inp,
                &["reserved_peering_ranges"],
            ))
            .await
            .unwrap();
        assert_eq!(
            up.attributes["reserved_peering_ranges"],
            inp["reserved_peering_ranges"]
        );
        let reread = rt.read(r::refresh(T, &id, &inp)).await.unwrap().attributes;
        assert_eq!(reread.as_ref(), Some(&up.attributes));

        for _ in 0..2 {
            let d = rt.delete(r::delete(T, &id, &up.attributes)).await.unwrap();
            if !d.done {
                rt.wait_deleted(r::wait(T, &id, &inp)).await.unwrap();
            }
        }
        assert!(rt.read(r::read(T, &id)).await.unwrap().attributes.is_none());
        assert!(rt.find(r::find(T, &inp, "tok")).await.unwrap().id.is_none());
    }
}

//! `gcp_compute_subnetwork`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, WaitRequest,
};
use google_cloud_compute_v1::model::{
    Subnetwork as GSubnetwork, SubnetworkSecondaryRange, SubnetworksSetPrivateIpGoogleAccessRequest,
};

use super::compute_common::{
    PendingOps, Scope, absent, carries_token, claim, gone_is_ok, last_segment, network_ref,
    present, settle, token_description, wait_op,
};
use super::operations::{input_map, link_value, managed_only, string_map};
use crate::client::GcpClients;
use crate::error::gax_err;

/// `gcp_compute_subnetwork`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_compute_subnetwork",
        doc: "A regional subnetwork of a VPC network, with named secondary ranges (GKE's pod \
              and service ranges). Its name is unique in its region: the id is `{region}/{name}`.",
        fields: vec![
            Field::computed("id", "`{region}/{name}`."),
            Field::input("name", "The subnetwork's name (unique in its region).")
                .required()
                .force_new(),
            Field::input("region", "The region (`us-central1`).")
                .required()
                .force_new(),
            Field::input("network", "The network: its self link or its name.")
                .required()
                .force_new(),
            Field::input(
                "ip_cidr_range",
                "The primary IPv4 range. A change replaces the subnetwork (Google can only \
                 expand a range in place, never move or shrink it).",
            )
            .required()
            .force_new(),
            Field::input(
                "secondary_ranges",
                "Secondary ranges by name (`pods: 10.4.0.0/14`). Changed in place (a patch \
                 with the fingerprint); removing every range at once is refused (the API's \
                 patch cannot send an empty list), and Compute refuses to remove or change a \
                 range while a GKE cluster uses it.",
            ),
            Field::input(
                "private_ip_google_access",
                "Whether VMs without external addresses reach Google APIs (GKE private nodes need it).",
            ),
            Field::computed("self_link", "The subnetwork's full URL."),
            Field::computed(
                "gateway_address",
                "The gateway address of the primary range.",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(20),
        deletion_protection: None,
    }
}

/// `gcp_compute_subnetwork` over Compute Engine.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ComputeSubnetwork {
        clients: clients.clone(),
        schema: schema(),
        pending: PendingOps::default(),
    })
}

struct ComputeSubnetwork {
    clients: GcpClients,
    schema: Schema,
    pending: PendingOps,
}

/// `{region}/{name}` → (region, name).
fn split_id(id: &str) -> Result<(&str, &str), ProviderError> {
    id.split_once('/').ok_or_else(|| {
        ProviderError::new(
            ErrorKind::InvalidInput,
            format!("subnetwork id `{id}` is not `{{region}}/{{name}}`"),
        )
    })
}

/// The secondary ranges as the API takes them, in name order.
fn ranges(inputs: &Attributes) -> Vec<SubnetworkSecondaryRange> {
    input_map(inputs, "secondary_ranges")
        .into_iter()
        .map(|(name, cidr)| {
            SubnetworkSecondaryRange::new()
                .set_range_name(name)
                .set_ip_cidr_range(cidr)
        })
        .collect()
}

/// The secondary ranges of a subnetwork by name.
fn range_map(s: &GSubnetwork) -> BTreeMap<String, String> {
    s.secondary_ip_ranges
        .iter()
        .map(|r| {
            (
                r.range_name.clone().unwrap_or_default(),
                r.ip_cidr_range.clone().unwrap_or_default(),
            )
        })
        .collect()
}

impl ComputeSubnetwork {
    async fn get(&self, region: &str, name: &str) -> Result<Option<GSubnetwork>, ProviderError> {
        gone_is_ok(
            self.clients
                .subnetworks
                .get()
                .set_project(&self.clients.project)
                .set_region(region)
                .set_subnetwork(name)
                .send()
                .await
                .map_err(|e| gax_err("subnetworks.get", e)),
        )
    }

    async fn must_get(&self, region: &str, name: &str) -> Result<GSubnetwork, ProviderError> {
        present(
            self.get(region, name).await?,
            &format!("subnetwork `{region}/{name}`"),
            "does not exist",
        )
    }

    fn attributes(&self, s: &GSubnetwork, prior: &Attributes) -> Attributes {
        let name = s.name.clone().unwrap_or_default();
        let region = last_segment(s.region.as_deref().unwrap_or_default()).to_string();
        let a = attrs::attrs([
            ("id", format!("{region}/{name}").into()),
            ("name", name.into()),
            ("region", region.into()),
            (
                "network",
                link_value(
                    s.network.as_deref().unwrap_or_default(),
                    prior.get("network"),
                ),
            ),
            (
                "ip_cidr_range",
                s.ip_cidr_range.clone().unwrap_or_default().into(),
            ),
            ("secondary_ranges", string_map(&range_map(s))),
            (
                "private_ip_google_access",
                s.private_ip_google_access.unwrap_or(false).into(),
            ),
            ("self_link", s.self_link.clone().unwrap_or_default().into()),
            (
                "gateway_address",
                s.gateway_address.clone().unwrap_or_default().into(),
            ),
        ]);
        managed_only(a, prior, &self.schema)
    }

    /// Brings the in-place settings (secondary ranges, private Google access) in line
    /// with `inputs`, each only when the subnetwork's differs, then reads it back.
    async fn sync(
        &self,
        region: &str,
        name: &str,
        inputs: &Attributes,
        progress: &Progress,
    ) -> Result<Attributes, ProviderError> {
        let scope = Scope::Region(region.to_string());
        let c = &self.clients;
        if inputs.contains_key("secondary_ranges") {
            self.sync_ranges(region, name, inputs, progress).await?;
        }
        if let Some(on) = attrs::b(inputs, "private_ip_google_access") {
            let s = self.must_get(region, name).await?;
            if s.private_ip_google_access.unwrap_or(false) != on {
                let op = c
                    .subnetworks
                    .set_private_ip_google_access()
                    .set_project(&c.project)
                    .set_region(region)
                    .set_subnetwork(name)
                    .set_body(
                        SubnetworksSetPrivateIpGoogleAccessRequest::new()
                            .set_private_ip_google_access(on),
                    )
                    .send()
                    .await
                    .map_err(|e| gax_err("subnetworks.setPrivateIpGoogleAccess", e))?;
                let what = "subnetworks.setPrivateIpGoogleAccess";
                wait_op(c, &scope, op, what, progress).await?;
            }
        }
        let s = self.must_get(region, name).await?;
        Ok(self.attributes(&s, inputs))
    }

    /// Patches the secondary ranges with the subnetwork's current fingerprint; a
    /// fingerprint another writer made stale is re-read and the patch sent once more.
    async fn sync_ranges(
        &self,
        region: &str,
        name: &str,
        inputs: &Attributes,
        progress: &Progress,
    ) -> Result<(), ProviderError> {
        let c = &self.clients;
        let want = ranges(inputs);
        let want_map: BTreeMap<String, String> =
            input_map(inputs, "secondary_ranges").into_iter().collect();
        let mut retried = false;
        loop {
            let s = self.must_get(region, name).await?;
            if range_map(&s) == want_map {
                return Ok(());
            }
            if want.is_empty() {
                return Err(ProviderError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "subnetwork `{region}/{name}`: removing every secondary range in place \
                         is not supported; keep one, or replace the subnetwork"
                    ),
                ));
            }
            let mut body = GSubnetwork::new();
            body.fingerprint = s.fingerprint;
            body.secondary_ip_ranges = want.clone();
            let sent = c
                .subnetworks
                .patch()
                .set_project(&c.project)
                .set_region(region)
                .set_subnetwork(name)
                .set_body(body)
                .send()
                .await
                .map_err(|e| gax_err("subnetworks.patch", e));
            match sent {
                Ok(op) => {
                    let scope = Scope::Region(region.to_string());
                    return wait_op(c, &scope, op, "subnetworks.patch", progress).await;
                }
                Err(e) if e.kind == ErrorKind::Conflict && !retried => retried = true,
                Err(e) => return Err(e),
            }
        }
    }
}

/// The `targetLink` suffix of operations on subnetwork `name` in `region`.
fn target(region: &str, name: &str) -> String {
    format!("/regions/{region}/subnetworks/{name}")
}

#[async_trait]
impl ResourceType for ComputeSubnetwork {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let (region, name) = split_id(&req.id)?;
        Ok(ReadResponse {
            attributes: self
                .get(region, name)
                .await?
                .map(|s| self.attributes(&s, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = attrs::s(&req.inputs, "name")?;
        let region = attrs::s(&req.inputs, "region")?;
        Ok(FindResponse {
            id: self
                .get(region, name)
                .await?
                .filter(|s| carries_token(s.description.as_deref(), &req.token))
                .map(|_| format!("{region}/{name}")),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let c = &self.clients;
        let name = attrs::s(&req.inputs, "name")?;
        let region = attrs::s(&req.inputs, "region")?;
        let network = network_ref(&c.project, attrs::s(&req.inputs, "network")?);
        let mut body = GSubnetwork::new()
            .set_name(name)
            .set_description(token_description(&req.token))
            .set_network(network)
            .set_ip_cidr_range(attrs::s(&req.inputs, "ip_cidr_range")?);
        body.secondary_ip_ranges = ranges(&req.inputs);
        body.private_ip_google_access = attrs::b(&req.inputs, "private_ip_google_access");
        let id = format!("{region}/{name}");
        let sent = c
            .subnetworks
            .insert()
            .set_project(&c.project)
            .set_region(region)
            .set_body(body)
            .send()
            .await
            .map_err(|e| gax_err("subnetworks.insert", e));
        match sent {
            Ok(op) => self.pending.put(&id, op.name.as_deref()),
            // The subnetwork an earlier attempt made is adopted (its description carries
            // the token); `wait_ready` brings its in-place settings in line. Anyone else's
            // is refused.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let found = self.get(region, name).await?;
                claim(
                    found.as_ref().map(|s| s.description.as_deref()),
                    &req.token,
                    "subnetwork",
                    &req.address,
                    &id,
                )?;
            }
            Err(e) => return Err(e),
        }
        Ok(CreateResponse {
            id,
            completion: Completion::InProgress,
        })
    }

    async fn wait_ready(&self, req: WaitRequest) -> Result<Attributes, ProviderError> {
        let (region, name) = split_id(&req.id)?;
        let scope = Scope::Region(region.to_string());
        let suffix = target(region, name);
        let what = "subnetworks.insert";
        settle(
            &self.clients,
            &scope,
            &self.pending,
            &req.id,
            &suffix,
            what,
            &req.progress,
        )
        .await?;
        self.sync(region, name, &req.inputs, &req.progress).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let (region, name) = split_id(&req.id)?;
        Ok(UpdateResponse {
            attributes: self.sync(region, name, &req.inputs, &req.progress).await?,
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let (region, name) = split_id(&req.id)?;
        let sent = self
            .clients
            .subnetworks
            .delete()
            .set_project(&self.clients.project)
            .set_region(region)
            .set_subnetwork(name)
            .send()
            .await
            .map_err(|e| gax_err("subnetworks.delete", e));
        match gone_is_ok(sent)? {
            Some(op) => {
                self.pending.put(&req.id, op.name.as_deref());
                Ok(DeleteResponse { done: false })
            }
            None => Ok(DeleteResponse { done: true }),
        }
    }

    async fn wait_deleted(&self, req: WaitRequest) -> Result<(), ProviderError> {
        let (region, name) = split_id(&req.id)?;
        let scope = Scope::Region(region.to_string());
        let suffix = target(region, name);
        let what = "subnetworks.delete";
        settle(
            &self.clients,
            &scope,
            &self.pending,
            &req.id,
            &suffix,
            what,
            &req.progress,
        )
        .await?;
        absent(
            self.get(region, name).await?,
            &format!("subnetwork `{}`", req.id),
        )
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::Value;
    use flyteinfra_core::requests as r;

    use super::super::compute_common::test_support::network;
    use super::*;
    use crate::testutil;

    const T: &str = "gcp_compute_subnetwork";

    fn ranges_value(pairs: &[(&str, &str)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(*v)))
                .collect(),
        )
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = testutil::clients().await;
        let net = network(&c).await;
        let rt = build(&c);
        let name = testutil::unique("sub");
        let inp = attrs::attrs([
            ("name", name.clone().into()),
            ("region", "us-central1".into()),
            ("network", net.clone().into()),
            ("ip_cidr_range", "10.10.0.0/20".into()),
            (
                "secondary_ranges",
                ranges_value(&[("pods", "10.20.0.0/16"), ("services", "10.30.0.0/20")]),
            ),
            ("private_ip_google_access", false.into()),
        ]);

        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert!(matches!(created.completion, Completion::InProgress));
        let id = created.id;
        assert_eq!(id, format!("us-central1/{name}"));
        let ready = rt.wait_ready(r::wait(T, &id, &inp)).await.unwrap();
        let read = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, ready);
        let mut want = inp.clone();
        for k in ["id", "self_link", "gateway_address"] {
            want.insert(k.into(), read[k].clone());
        }
        assert_eq!(read, want);
        assert_eq!(read["id"], Value::from(id.as_str()));
        assert!(
            read["self_link"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/regions/us-central1/subnetworks/{name}"))
        );
        assert!(!read["gateway_address"].as_str().unwrap().is_empty());

        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        testutil::assert_foreign_token_refused(&rt, T, &inp).await;
        let again = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(again.id, id);
        assert_eq!(rt.wait_ready(r::wait(T, &id, &inp)).await.unwrap(), read);

        // In place: one range resized, one added, one removed; private access on.
        let mut new = inp.clone();
        new.insert(
            "secondary_ranges".into(),
            ranges_value(&[("pods", "10.20.0.0/15"), ("extra", "10.40.0.0/24")]),
        );
        new.insert("private_ip_google_access".into(), true.into());
        let up = rt
            .update(r::update(
                T,
                &id,
                &read,
                &new,
                &["secondary_ranges", "private_ip_google_access"],
            ))
            .await
            .unwrap();
        assert_eq!(up.attributes["secondary_ranges"], new["secondary_ranges"]);
        assert_eq!(up.attributes["private_ip_google_access"], Value::Bool(true));
        assert_eq!(up.attributes["self_link"], read["self_link"]);
        let reread = rt
            .read(r::refresh(T, &id, &new))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(reread, up.attributes);

        let mut none = new.clone();
        none.insert("secondary_ranges".into(), ranges_value(&[]));
        let err = rt
            .update(r::update(T, &id, &reread, &none, &["secondary_ranges"]))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");

        for _ in 0..2 {
            let d = rt.delete(r::delete(T, &id, &up.attributes)).await.unwrap();
            if !d.done {
                rt.wait_deleted(r::wait(T, &id, &new)).await.unwrap();
            }
        }
        assert!(rt.read(r::read(T, &id)).await.unwrap().attributes.is_none());
        assert!(rt.find(r::find(T, &inp, "tok")).await.unwrap().id.is_none());
    }

    /// What adding and then removing a data plane does to the shared subnetwork: its
    /// ranges change in place (never a replace), a plane's cluster comes up on the added
    /// ranges, and a range stays while a cluster uses it.
    #[tokio::test]
    async fn plane_ranges_are_patched_in_place_and_kept_while_a_cluster_uses_them() {
        use super::super::container_cluster;
        use super::super::operations::testkit::OPS;
        use crate::testutil::PROJECT;

        const GKE: &str = "gcp_container_cluster";
        let field = schema();
        let ranges_field = field.field("secondary_ranges").unwrap();
        assert!(
            !ranges_field.flags.force_new,
            "a range change must not replace"
        );

        let _g = OPS.read().await;
        let c = testutil::clients().await;
        let net = network(&c).await;
        let rt = build(&c);
        let base = [("pods", "10.4.0.0/14"), ("services", "10.8.0.0/20")];
        let plane = [
            ("pods-gpu", "10.64.0.0/14"),
            ("services-gpu", "10.21.0.0/20"),
        ];
        let inp = attrs::attrs([
            ("name", testutil::unique("sub").into()),
            ("region", "us-central1".into()),
            ("network", net.clone().into()),
            ("ip_cidr_range", "10.0.0.0/20".into()),
            ("secondary_ranges", ranges_value(&base)),
        ]);
        let id = rt.create(r::create(T, &inp, "tok")).await.unwrap().id;
        let made = rt.wait_ready(r::wait(T, &id, &inp)).await.unwrap();
        let self_link = made["self_link"].as_str().unwrap().to_string();

        let gke = container_cluster::build(&c);
        let cluster = |name: &str, suffix: &str| {
            attrs::attrs([
                ("name", Value::Str(name.into())),
                ("location", "us-central1".into()),
                ("network", net.clone().into()),
                ("subnetwork", self_link.clone().into()),
                ("pods_range_name", format!("pods{suffix}").into()),
                ("services_range_name", format!("services{suffix}").into()),
                ("workload_pool", format!("{PROJECT}.svc.id.goog").into()),
            ])
        };
        let up = async |ins: &Attributes| {
            let made = gke.create(r::create(GKE, ins, "tok")).await?;
            gke.wait_ready(r::wait(GKE, &made.id, ins)).await?;
            Ok::<String, ProviderError>(made.id)
        };
        let down = async |id: &str, ins: &Attributes| {
            if !gke.delete(r::delete(GKE, id, ins)).await.unwrap().done {
                gke.wait_deleted(r::wait(GKE, id, ins)).await.unwrap();
            }
        };
        let main_in = cluster(&testutil::unique("cp"), "");
        let main = up(&main_in).await.unwrap();

        // Before its ranges exist a plane's cluster is refused.
        let plane_in = cluster(&testutil::unique("dp"), "-gpu");
        let e = up(&plane_in).await.unwrap_err();
        assert!(e.message.contains("pods-gpu"), "{e}");

        // Adding the plane: an in-place update of the same subnetwork.
        let mut added = inp.clone();
        let all: Vec<(&str, &str)> = base.iter().chain(&plane).copied().collect();
        added.insert("secondary_ranges".into(), ranges_value(&all));
        let after = rt
            .update(r::update(T, &id, &made, &added, &["secondary_ranges"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(after["secondary_ranges"], added["secondary_ranges"]);
        assert_eq!(after["self_link"], made["self_link"]);
        let dp = up(&plane_in).await.unwrap();

        // Removing the plane's ranges while its cluster lives is refused by Compute.
        let e = rt
            .update(r::update(T, &id, &after, &inp, &["secondary_ranges"]))
            .await
            .unwrap_err();
        assert!(e.message.contains("in use"), "{e}");
        // Its cluster gone (apply deletes first), they go, in place again.
        down(&dp, &plane_in).await;
        let removed = rt
            .update(r::update(T, &id, &after, &inp, &["secondary_ranges"]))
            .await
            .unwrap()
            .attributes;
        assert_eq!(removed["secondary_ranges"], inp["secondary_ranges"]);
        assert_eq!(removed["self_link"], made["self_link"]);

        down(&main, &main_in).await;
        if !rt.delete(r::delete(T, &id, &removed)).await.unwrap().done {
            rt.wait_deleted(r::wait(T, &id, &inp)).await.unwrap();
        }
    }
}

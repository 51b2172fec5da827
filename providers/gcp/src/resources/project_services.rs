//! `gcp_project_services`, and the two Service Usage look-ups the binary makes before any
//! resource: which APIs are off ([`disabled_services`]) and the project's number
//! ([`project_number`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, Progress, ProviderError, ReadRequest,
    ReadResponse, ResourceType, Schema, UpdateRequest, UpdateResponse, Value,
};
use google_cloud_api_serviceusage_v1::model::{BatchEnableServicesResponse, Service, State};
use google_cloud_gax::error::rpc::Code;
use google_cloud_longrunning::model::Operation;
use google_cloud_longrunning::model::operation::Result as OpResult;

use super::operations::{Backoff, poll};
use crate::client::GcpClients;
use crate::error::{gax_err, kind_for_code};

/// Services per `services:batchEnable` call (Google's limit).
const ENABLE_BATCH: usize = 20;
/// Services per `services:batchGet` call (Google's limit).
const GET_BATCH: usize = 30;

/// `gcp_project_services`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_project_services",
        doc: "The Google APIs a deployment needs, enabled in the project in batches. \
              Deleting it disables nothing: other workloads in the project may use the same \
              APIs, and disabling one can break them, so the APIs stay on.",
        fields: vec![
            Field::computed("id", "`projects/{project}`."),
            Field::input(
                "services",
                "The APIs to enable (`compute.googleapis.com`, ...). A read lists only those \
                 of them that are enabled, so one turned off shows as drift.",
            )
            .required(),
            Field::computed(
                "project_number",
                "The project's number (some APIs, such as Service Networking, name projects by it).",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(60),
        deletion_protection: None,
    }
}

/// `gcp_project_services` over Service Usage.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ProjectServices {
        clients: clients.clone(),
        schema: schema(),
    })
}

/// The services of `wanted` that are not enabled in the clients' project, in the given
/// order. A preflight for configurations that do not let flyteinfra enable APIs.
///
/// # Errors
/// Service Usage's own errors (credentials, a missing project).
pub async fn disabled_services(
    clients: &GcpClients,
    wanted: &[&str],
) -> Result<Vec<String>, ProviderError> {
    let wanted: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    let (enabled, _) = enabled_among(clients, &wanted).await?;
    Ok(wanted
        .into_iter()
        .filter(|s| !enabled.contains(s))
        .collect())
}

/// The clients' project's number, from Service Usage (whose own API is always on).
///
/// # Errors
/// Service Usage's own errors (credentials, a missing project).
pub async fn project_number(clients: &GcpClients) -> Result<String, ProviderError> {
    let s = clients
        .service_usage
        .get_service()
        .set_name(format!(
            "projects/{}/services/serviceusage.googleapis.com",
            clients.project
        ))
        .send()
        .await
        .map_err(|e| gax_err("serviceusage.services.get", e))?;
    number_of(&s).ok_or_else(|| {
        ProviderError::new(
            ErrorKind::Permanent,
            format!(
                "serviceusage.services.get: no project number in `{}`",
                s.parent
            ),
        )
    })
}

/// The project number in a service's `parent` (`projects/123`).
fn number_of(s: &Service) -> Option<String> {
    s.parent
        .strip_prefix("projects/")
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// The service id (`compute.googleapis.com`) of a Service Usage answer.
fn id_of(s: &Service) -> &str {
    s.name.rsplit('/').next().unwrap_or(&s.name)
}

/// Which of `wanted` are enabled, and the project number (from any answer).
async fn enabled_among(
    c: &GcpClients,
    wanted: &[String],
) -> Result<(Vec<String>, Option<String>), ProviderError> {
    let mut enabled = Vec::new();
    let mut number = None;
    for chunk in wanted.chunks(GET_BATCH) {
        let out = c
            .service_usage
            .batch_get_services()
            .set_parent(format!("projects/{}", c.project))
            .set_names(
                chunk
                    .iter()
                    .map(|s| format!("projects/{}/services/{s}", c.project)),
            )
            .send()
            .await
            .map_err(|e| gax_err("serviceusage.services.batchGet", e))?;
        for s in &out.services {
            number = number.or_else(|| number_of(s));
            if s.state == State::Enabled {
                enabled.push(id_of(s).to_string());
            }
        }
    }
    Ok((enabled, number))
}

struct ProjectServices {
    clients: GcpClients,
    schema: Schema,
}

impl ProjectServices {
    fn id(&self) -> String {
        format!("projects/{}", self.clients.project)
    }

    /// The attributes: the wanted services that are enabled (in the prior order when
    /// they are all there), and the project number.
    async fn attributes(&self, wanted: &[String]) -> Result<Attributes, ProviderError> {
        let (enabled, number) = enabled_among(&self.clients, wanted).await?;
        let number = match number {
            Some(n) => n,
            None => project_number(&self.clients).await?,
        };
        let prior = Value::from(wanted.to_vec());
        Ok(attrs::attrs([
            ("id", self.id().into()),
            ("services", attrs::unordered(enabled, Some(&prior))),
            ("project_number", number.into()),
        ]))
    }

    /// Enables the services of `wanted` that are off, 20 per call, waiting for each
    /// call's operation; returns the attributes after.
    async fn enable(
        &self,
        wanted: &[String],
        progress: &Progress,
    ) -> Result<Attributes, ProviderError> {
        let c = &self.clients;
        let (enabled, _) = enabled_among(c, wanted).await?;
        let missing: Vec<&String> = wanted.iter().filter(|s| !enabled.contains(s)).collect();
        for chunk in missing.chunks(ENABLE_BATCH) {
            let names: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            progress.status(format!("enabling {}", names.join(", ")));
            let op = c
                .service_usage
                .batch_enable_services()
                .set_parent(format!("projects/{}", c.project))
                .set_service_ids(names.iter().copied())
                .send()
                .await
                .map_err(|e| gax_err("serviceusage.services.batchEnable", e))?;
            self.wait(op, progress).await?;
        }
        self.attributes(wanted).await
    }

    /// Polls a Service Usage operation until it is done; fails with its error, or with
    /// the services the answer says could not be enabled.
    async fn wait(&self, mut op: Operation, progress: &Progress) -> Result<(), ProviderError> {
        let what = "serviceusage.services.batchEnable";
        let mut backoff = Backoff::new();
        let mut polls = 0u32;
        while !op.done {
            backoff.sleep().await;
            polls += 1;
            if polls.is_multiple_of(5) {
                progress.status(format!("still enabling ({})", op.name));
            }
            let name = op.name.clone();
            op = poll(&mut backoff, || async {
                self.clients
                    .service_usage
                    .get_operation()
                    .set_name(&name)
                    .send()
                    .await
                    .map_err(|e| gax_err("serviceusage.operations.get", e))
            })
            .await?;
        }
        match &op.result {
            Some(OpResult::Error(s)) => Err(ProviderError::new(
                kind_for_code(Code::from(s.code)),
                format!("{what}: {}", s.message),
            )),
            Some(OpResult::Response(any)) => {
                let failures = any
                    .to_msg::<BatchEnableServicesResponse>()
                    .map(|r| r.failures)
                    .unwrap_or_default();
                if failures.is_empty() {
                    return Ok(());
                }
                let list: Vec<String> = failures
                    .iter()
                    .map(|f| format!("{}: {}", f.service_id, f.error_message))
                    .collect();
                Err(ProviderError::new(
                    ErrorKind::Permanent,
                    format!("{what}: {}", list.join("; ")),
                ))
            }
            // No result, or a kind this client version does not know: nothing failed.
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ResourceType for ProjectServices {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The project always exists (a missing one is an error of its own), so the answer
    /// is never `None`; services the last apply wanted but that are off are left out.
    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        let wanted = attrs::strings(&req.prior_inputs, "services");
        Ok(ReadResponse {
            attributes: Some(self.attributes(&wanted).await?),
        })
    }

    async fn find(&self, _req: FindRequest) -> Result<FindResponse, ProviderError> {
        Ok(FindResponse {
            id: Some(self.id()),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let wanted = attrs::strings(&req.inputs, "services");
        let attributes = self.enable(&wanted, &req.progress).await?;
        Ok(CreateResponse {
            id: self.id(),
            completion: Completion::Ready(attributes),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let wanted = attrs::strings(&req.inputs, "services");
        Ok(UpdateResponse {
            attributes: self.enable(&wanted, &req.progress).await?,
        })
    }

    /// Disables nothing and calls nothing: the APIs may serve other workloads in the
    /// project, and disabling one (with its dependents) can break them.
    async fn delete(&self, _req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        Ok(DeleteResponse { done: true })
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::requests as r;

    use super::*;
    use flyteinfra_gcp_double::GcpDouble;

    use crate::client::Endpoints;
    use crate::testutil;

    const T: &str = "gcp_project_services";

    /// Clients for a project of its own on `double`, so its services start off whatever
    /// other tests enable in theirs (the double keeps enabled services per project).
    async fn fresh_project(double: &GcpDouble) -> GcpClients {
        GcpClients::for_endpoints(
            &testutil::unique("svc-project"),
            Endpoints {
                apis: Some(double.url().to_string()),
                storage: "http://127.0.0.1:9".into(),
            },
        )
        .await
        .unwrap()
    }

    fn services(list: &[&str]) -> Attributes {
        attrs::attrs([(
            "services",
            Value::List(list.iter().map(|s| Value::from(*s)).collect()),
        )])
    }

    #[tokio::test]
    async fn enabling_compute_lets_compute_calls_through() {
        // A double of its own: the shared one lets every API through, and its knobs
        // are shared by every test running in parallel.
        let double = GcpDouble::start();
        assert!(double.shared().lock().knobs.enforce_services);
        let c = fresh_project(&double).await;
        let get = || {
            c.networks
                .get()
                .set_project(&c.project)
                .set_network("default")
                .send()
        };
        let err = gax_err("networks.get", get().await.unwrap_err());
        assert!(
            err.message
                .contains("[SERVICE_DISABLED: compute.googleapis.com]"),
            "{err}"
        );

        let want = ["compute.googleapis.com", "servicenetworking.googleapis.com"];
        assert_eq!(disabled_services(&c, &want).await.unwrap(), want);

        let rt = build(&c);
        let inp = services(&want);
        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        let Completion::Ready(a) = created.completion else {
            panic!("enabling services finishes in the create")
        };
        assert_eq!(created.id, format!("projects/{}", c.project));
        assert_eq!(a["services"], inp["services"]);
        let number = project_number(&c).await.unwrap();
        assert!(number.bytes().all(|b| b.is_ascii_digit()), "{number}");
        assert_eq!(a["project_number"], Value::from(number.as_str()));

        // Past the service check: the network simply does not exist.
        let after = gax_err("networks.get", get().await.unwrap_err());
        assert_eq!(after.kind, ErrorKind::NotFound, "{after}");
        assert!(disabled_services(&c, &want).await.unwrap().is_empty());
        let mixed = ["sqladmin.googleapis.com", "compute.googleapis.com"];
        assert_eq!(
            disabled_services(&c, &mixed).await.unwrap(),
            ["sqladmin.googleapis.com"]
        );

        // Delete makes no call at all (this double serves this test alone).
        let before = double.shared().lock().calls.clone();
        let d = rt.delete(r::delete(T, &created.id, &a)).await.unwrap();
        assert!(d.done);
        assert_eq!(double.shared().lock().calls, before);
        assert!(disabled_services(&c, &want).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn lifecycle() {
        let c = fresh_project(testutil::double()).await;
        let rt = build(&c);
        let inp = services(&["compute.googleapis.com"]);
        let id = rt.create(r::create(T, &inp, "tok")).await.unwrap().id;
        let read = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read["services"], inp["services"]);
        assert_eq!(read["id"], Value::from(id.as_str()));
        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(id.as_str()));
        // A retried create finds nothing left to enable.
        rt.create(r::create(T, &inp, "tok")).await.unwrap();

        // More than one batch of services, listed in an order of the user's own.
        let many: Vec<String> = (0..25)
            .rev()
            .map(|i| format!("api{i:02}.googleapis.com"))
            .collect();
        let mut list: Vec<&str> = many.iter().map(String::as_str).collect();
        list.push("compute.googleapis.com");
        let bigger = services(&list);
        let up = rt
            .update(r::update(T, &id, &read, &bigger, &["services"]))
            .await
            .unwrap();
        assert_eq!(up.attributes["services"], bigger["services"]);

        // Turned off behind flyteinfra's back: drift.
        let project = c.project.clone();
        testutil::double()
            .shared()
            .lock()
            .services(&project)
            .remove("api03.googleapis.com");
        let drifted = rt
            .read(r::refresh(T, &id, &bigger))
            .await
            .unwrap()
            .attributes
            .unwrap();
        let listed = attrs::strings(&drifted, "services");
        assert_eq!(listed.len(), 25);
        assert!(!listed.iter().any(|s| s == "api03.googleapis.com"));

        // Delete disables nothing.
        let d = rt.delete(r::delete(T, &id, &drifted)).await.unwrap();
        assert!(d.done);
        assert!(
            disabled_services(&c, &["compute.googleapis.com"])
                .await
                .unwrap()
                .is_empty()
        );
    }
}

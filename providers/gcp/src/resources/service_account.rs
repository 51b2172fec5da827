//! `gcp_service_account`, over IAM Admin.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_iam_admin_v1::model::ServiceAccount as IamServiceAccount;
use google_cloud_wkt::FieldMask;

use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse,
};

use super::compute_common::{carries_token, claim, token_description};
use super::iam_policy::{account_not_visible, until_visible};
use crate::client::GcpClients;
use crate::error::gax_err;

/// `gcp_service_account`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_service_account",
        doc: "A Google service account (an identity for Flyte's backend, workers or GKE \
              nodes). Its email, made from the account id and the project, is its identity.",
        fields: vec![
            Field::computed("id", "The account's email."),
            Field::input(
                "account_id",
                "The part of the email before `@` (6–30 lower-case letters, digits, `-`).",
            )
            .required()
            .force_new(),
            Field::input("display_name", "A human-readable name."),
            Field::input("description", "What the account is for."),
            Field::computed("email", "`{account_id}@{project}.iam.gserviceaccount.com`."),
            Field::computed("unique_id", "Google's numeric id of the account."),
            Field::computed("name", "`projects/{project}/serviceAccounts/{email}`."),
            Field::computed(
                "member",
                "The IAM principal: `serviceAccount:{email}` (for policy bindings).",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `gcp_service_account` over IAM Admin.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ServiceAccount {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct ServiceAccount {
    clients: GcpClients,
    schema: Schema,
}

/// The email of account `account_id` in `project`.
pub(crate) fn email(account_id: &str, project: &str) -> String {
    format!("{account_id}@{project}.iam.gserviceaccount.com")
}

/// The description flyteinfra gives an account: the input's, then the create's token,
/// the proof that flyteinfra made it (service accounts have no labels). Reads show the
/// input's part only.
fn with_token(description: &str, token: &str) -> String {
    let mark = token_description(token);
    if description.is_empty() {
        mark
    } else {
        format!("{description} · {mark}")
    }
}

/// `description` without flyteinfra's token, and the token mark (empty when none).
fn split_token(description: &str) -> (&str, &str) {
    match description.find("Managed by flyteinfra (token ") {
        Some(i) => (description[..i].trim_end_matches(" · "), &description[i..]),
        None => (description, ""),
    }
}

fn to_attrs(sa: &IamServiceAccount, prior: &Attributes) -> Attributes {
    let account_id = sa.email.split('@').next().unwrap_or_default();
    let mut a = attrs::attrs([
        ("id", sa.email.as_str().into()),
        ("account_id", account_id.into()),
        ("display_name", sa.display_name.as_str().into()),
        ("description", split_token(&sa.description).0.into()),
        ("email", sa.email.as_str().into()),
        ("unique_id", sa.unique_id.as_str().into()),
        ("name", sa.name.as_str().into()),
        ("member", format!("serviceAccount:{}", sa.email).into()),
    ]);
    if !prior.is_empty() {
        // Unset optional inputs are not managed.
        a.retain(|k, _| {
            !matches!(k.as_str(), "display_name" | "description") || prior.contains_key(k)
        });
    }
    a
}

impl ServiceAccount {
    fn resource(&self, email: &str) -> String {
        format!("projects/{}/serviceAccounts/{email}", self.clients.project)
    }

    async fn get(&self, email: &str) -> Result<IamServiceAccount, ProviderError> {
        self.clients
            .iam
            .get_service_account()
            .set_name(self.resource(email))
            .send()
            .await
            .map_err(|e| gax_err("iam.serviceAccounts.get", e))
    }

    async fn get_opt(&self, email: &str) -> Result<Option<IamServiceAccount>, ProviderError> {
        match self.get(email).await {
            Ok(sa) => Ok(Some(sa)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Probes until a just-created (or adopted) account answers reads, bounded.
    async fn visible(&self, email: &str) -> Result<IamServiceAccount, ProviderError> {
        until_visible(
            &format!("service account `{email}`"),
            account_not_visible,
            || self.get(email),
        )
        .await
    }

    /// Patches display name and description where `inputs` set them and they differ.
    async fn settle(
        &self,
        sa: IamServiceAccount,
        inputs: &Attributes,
    ) -> Result<IamServiceAccount, ProviderError> {
        let mut paths = Vec::new();
        let mut body = IamServiceAccount::new().set_name(sa.name.clone());
        if let Some(d) = attrs::opt_s(inputs, "display_name")
            && d != sa.display_name
        {
            paths.push("display_name");
            body = body.set_display_name(d);
        }
        let (current, mark) = split_token(&sa.description);
        if let Some(d) = attrs::opt_s(inputs, "description")
            && d != current
        {
            // The token mark stays: it is what proves the account is flyteinfra's.
            paths.push("description");
            body = body.set_description(if mark.is_empty() {
                d.to_string()
            } else if d.is_empty() {
                mark.to_string()
            } else {
                format!("{d} · {mark}")
            });
        }
        if paths.is_empty() {
            return Ok(sa);
        }
        self.clients
            .iam
            .patch_service_account()
            .set_service_account(body)
            .set_update_mask(FieldMask::default().set_paths(paths))
            .send()
            .await
            .map_err(|e| gax_err("iam.serviceAccounts.patch", e))
    }
}

#[async_trait]
impl ResourceType for ServiceAccount {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .get_opt(&req.id)
                .await?
                .map(|sa| to_attrs(&sa, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let email = email(attrs::s(&req.inputs, "account_id")?, &self.clients.project);
        Ok(FindResponse {
            id: self
                .get_opt(&email)
                .await?
                .filter(|sa| carries_token(Some(&sa.description), &req.token))
                .map(|sa| sa.email),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let account_id = attrs::s(&req.inputs, "account_id")?;
        let email = email(account_id, &self.clients.project);
        let mut body = IamServiceAccount::new();
        if let Some(d) = attrs::opt_s(&req.inputs, "display_name") {
            body = body.set_display_name(d);
        }
        body = body.set_description(with_token(
            attrs::opt_s(&req.inputs, "description").unwrap_or_default(),
            &req.token,
        ));
        req.progress.status("creating");
        let r = self
            .clients
            .iam
            .create_service_account()
            .set_name(format!("projects/{}", self.clients.project))
            .set_account_id(account_id)
            .set_service_account(body)
            .send()
            .await
            .map_err(|e| gax_err("iam.serviceAccounts.create", e));
        let existed = match r {
            Ok(_) => false,
            // Account ids are unique in the project: an existing one is ours only if its
            // description carries this create's token (a retry), checked once visible.
            Err(e) if e.kind == ErrorKind::AlreadyExists => true,
            Err(e) => return Err(e),
        };
        // IAM is eventually consistent: make sure the account is readable before anything
        // that depends on it (policy bindings) is created.
        req.progress.status("waiting until visible");
        let sa = self.visible(&email).await?;
        if existed {
            claim(
                Some(Some(&sa.description)),
                &req.token,
                "service account",
                &req.address,
                &email,
            )?;
        }
        let sa = self.settle(sa, &req.inputs).await?;
        Ok(CreateResponse {
            id: email,
            completion: Completion::Ready(to_attrs(&sa, &req.inputs)),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let sa = self.get(&req.id).await?;
        let sa = self.settle(sa, &req.inputs).await?;
        Ok(UpdateResponse {
            attributes: to_attrs(&sa, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let r = self
            .clients
            .iam
            .delete_service_account()
            .set_name(self.resource(&req.id))
            .send()
            .await
            .map_err(|e| gax_err("iam.serviceAccounts.delete", e));
        match r {
            Ok(_) => Ok(DeleteResponse { done: true }),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn the_token_rides_behind_the_users_description() {
        let d = with_token("What it is for", "fi-1-2");
        assert_eq!(split_token(&d).0, "What it is for");
        assert!(carries_token(Some(&d), "fi-1-2"));
        let bare = with_token("", "fi-1-2");
        assert_eq!(split_token(&bare), ("", bare.as_str()));
        assert_eq!(split_token("by hand"), ("by hand", ""));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use flyteinfra_core::Value;
    use flyteinfra_core::requests as r;

    use super::*;
    use crate::testutil;

    const T: &str = "gcp_service_account";

    /// Knob tests take this: the double's knobs are global to the test process.
    pub(crate) static KNOBS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn inputs(id: &str) -> Attributes {
        attrs::attrs([
            ("account_id", id.into()),
            ("display_name", "Flyte backend".into()),
            ("description", "flyteadmin and friends".into()),
        ])
    }

    #[tokio::test]
    async fn lifecycle() {
        let _g = KNOBS.lock().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let id = testutil::unique("sa");
        let inp = inputs(&id);
        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        let mail = email(&id, testutil::PROJECT);
        assert_eq!(created.id, mail);
        let Completion::Ready(a) = created.completion else {
            panic!("service account create is synchronous")
        };
        let read = rt
            .read(r::refresh(T, &mail, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, a);
        assert_eq!(read["account_id"], inp["account_id"]);
        assert_eq!(read["display_name"], inp["display_name"]);
        assert_eq!(read["description"], inp["description"]);
        assert_eq!(read["email"], Value::from(mail.as_str()));
        assert_eq!(
            read["member"],
            Value::from(format!("serviceAccount:{mail}"))
        );
        assert_eq!(
            read["name"],
            Value::from(format!(
                "projects/{}/serviceAccounts/{mail}",
                testutil::PROJECT
            ))
        );
        assert!(!read["unique_id"].as_str().unwrap().is_empty());

        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(mail.as_str()));
        // A retried create meets 409 and adopts.
        let again = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(again.id, mail);
        testutil::assert_foreign_token_refused(&rt, T, &inp).await;

        let mut new = inp.clone();
        new.insert("display_name".into(), "Renamed".into());
        new.insert("description".into(), "Flyte's backend".into());
        let up = rt
            .update(r::update(
                T,
                &mail,
                &read,
                &new,
                &["display_name", "description"],
            ))
            .await
            .unwrap();
        assert_eq!(up.attributes["display_name"], Value::from("Renamed"));
        assert_eq!(up.attributes["description"], Value::from("Flyte's backend"));
        // The new description kept the token: the account is still provably ours.
        let found = rt.find(r::find(T, &inp, "tok")).await.unwrap();
        assert_eq!(found.id.as_deref(), Some(mail.as_str()));
        let read = rt
            .read(r::refresh(T, &mail, &new))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read["display_name"], Value::from("Renamed"));

        let d = r::delete(T, &mail, &read);
        assert!(rt.delete(d.clone()).await.unwrap().done);
        assert!(rt.delete(d).await.unwrap().done);
        assert!(
            rt.read(r::read(T, &mail))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
    }

    /// IAM API calls the double has served (it counts per service).
    pub(crate) fn iam_calls() -> u64 {
        testutil::double()
            .shared()
            .lock()
            .calls
            .get("iam.googleapis.com")
            .copied()
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn create_waits_until_the_account_is_visible_bounded() {
        let _g = KNOBS.lock().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let id = testutil::unique("sa-late");
        let inp = inputs(&id);
        let before = iam_calls();
        testutil::double().shared().lock().knobs.sa_invisible_reads = 3;
        let created = rt.create(r::create(T, &inp, "tok")).await;
        testutil::double().shared().lock().knobs.sa_invisible_reads = 0;
        let calls = iam_calls() - before;
        let created = created.unwrap();
        assert_eq!(created.id, email(&id, testutil::PROJECT));
        // The create, three GETs that do not see it yet, the one that does.
        assert_eq!(calls, 5, "{calls} IAM calls");
        rt.delete(r::delete(T, &created.id, &Attributes::new()))
            .await
            .unwrap();
    }
}

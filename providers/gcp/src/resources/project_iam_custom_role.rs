//! `gcp_project_iam_custom_role`, over IAM Admin.
//!
//! Roles have no labels: the create's token rides in the role's `description` (hidden from
//! reads), the proof that flyteinfra made it. Google soft-deletes custom roles and keeps
//! their id for about 7 days (a create meets 409), then purges them. A create that meets a
//! deleted role undeletes and adopts it only when the role was made by this state's lineage
//! (its token's prefix): flyteinfra deleted it, so taking it back takes nothing of anyone's.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_iam_admin_v1::model::Role;
use google_cloud_iam_admin_v1::model::role::RoleLaunchStage;
use google_cloud_wkt::FieldMask;

use flyteinfra_core::attrs;
use flyteinfra_core::{
    Attributes, Completion, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse,
    ErrorKind, Field, FindRequest, FindResponse, ProviderError, ReadRequest, ReadResponse,
    ResourceType, Schema, UpdateRequest, UpdateResponse,
};

use super::compute_common::{carries_lineage, carries_token, claim, token_description};
use crate::client::GcpClients;
use crate::error::gax_err;

/// `gcp_project_iam_custom_role`.
pub fn schema() -> Schema {
    Schema {
        type_name: "gcp_project_iam_custom_role",
        doc: "A project-level custom IAM role. Its id is its identity; a deleted role's id \
              stays reserved for about 7 days, so a create meeting it undeletes it.",
        fields: vec![
            Field::computed("id", "`projects/{project}/roles/{role_id}`."),
            Field::input("role_id", "The role id (`[a-zA-Z0-9_.]{3,64}`).")
                .required()
                .force_new(),
            Field::input("title", "A human-readable title.").required(),
            Field::input(
                "permissions",
                "The permissions the role grants (order ignored).",
            )
            .required(),
            Field::input(
                "stage",
                "Launch stage (`GA`, `BETA`, `ALPHA`, …); unset = `GA`.",
            ),
            Field::computed(
                "name",
                "`projects/{project}/roles/{role_id}` (for bindings).",
            ),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `gcp_project_iam_custom_role` over IAM Admin.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(ProjectIamCustomRole {
        clients: clients.clone(),
        schema: schema(),
    })
}

struct ProjectIamCustomRole {
    clients: GcpClients,
    schema: Schema,
}

fn validate_id(id: &str) -> Result<(), ProviderError> {
    let ok = (3..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ProviderError::new(
            ErrorKind::InvalidInput,
            format!("role_id `{id}`: expected 3 to 64 letters, digits, `_` or `.`"),
        ))
    }
}

fn stage(inputs: &Attributes) -> RoleLaunchStage {
    RoleLaunchStage::from(attrs::opt_s(inputs, "stage").unwrap_or("GA"))
}

fn to_attrs(r: &Role, prior: &Attributes) -> Attributes {
    let role_id = r.name.rsplit('/').next().unwrap_or_default();
    let mut a = attrs::attrs([
        ("id", r.name.as_str().into()),
        ("name", r.name.as_str().into()),
        ("role_id", role_id.into()),
        ("title", r.title.as_str().into()),
        (
            "permissions",
            attrs::unordered(r.included_permissions.clone(), prior.get("permissions")),
        ),
        ("stage", r.stage.name().unwrap_or("GA").into()),
    ]);
    if !prior.is_empty() && !prior.contains_key("stage") {
        a.remove("stage");
    }
    a
}

impl ProjectIamCustomRole {
    fn name(&self, role_id: &str) -> String {
        format!("projects/{}/roles/{role_id}", self.clients.project)
    }

    /// The role, deleted or not; `None` once purged.
    async fn get(&self, name: &str) -> Result<Option<Role>, ProviderError> {
        match self
            .clients
            .iam
            .get_role()
            .set_name(name)
            .send()
            .await
            .map_err(|e| gax_err("iam.roles.get", e))
        {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Patches title, permissions and stage to `inputs` where they differ, and the
    /// description to the mark of `token` when given (an undeleted role carries an earlier
    /// create's; a later find looks for this one's).
    async fn settle(
        &self,
        r: Role,
        inputs: &Attributes,
        token: Option<&str>,
    ) -> Result<Role, ProviderError> {
        let mut paths = Vec::new();
        let mut body = Role::new();
        if let Some(mark) = token.map(token_description)
            && r.description != mark
        {
            paths.push("description");
            body = body.set_description(mark);
        }
        if let Some(t) = attrs::opt_s(inputs, "title")
            && t != r.title
        {
            paths.push("title");
            body = body.set_title(t);
        }
        let mut want = attrs::strings(inputs, "permissions");
        want.sort();
        want.dedup();
        let mut have = r.included_permissions.clone();
        have.sort();
        if want != have {
            paths.push("included_permissions");
            body = body.set_included_permissions(want);
        }
        let st = stage(inputs);
        if st != r.stage {
            paths.push("stage");
            body = body.set_stage(st);
        }
        if paths.is_empty() {
            return Ok(r);
        }
        self.clients
            .iam
            .update_role()
            .set_name(&r.name)
            .set_role(body)
            .set_update_mask(FieldMask::default().set_paths(paths))
            .send()
            .await
            .map_err(|e| gax_err("iam.roles.patch", e))
    }
}

#[async_trait]
impl ResourceType for ProjectIamCustomRole {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    async fn read(&self, req: ReadRequest) -> Result<ReadResponse, ProviderError> {
        Ok(ReadResponse {
            attributes: self
                .get(&req.id)
                .await?
                .filter(|r| !r.deleted)
                .map(|r| to_attrs(&r, &req.prior_inputs)),
        })
    }

    async fn find(&self, req: FindRequest) -> Result<FindResponse, ProviderError> {
        let name = self.name(attrs::s(&req.inputs, "role_id")?);
        Ok(FindResponse {
            id: self
                .get(&name)
                .await?
                .filter(|r| !r.deleted && carries_token(Some(&r.description), &req.token))
                .map(|r| r.name),
        })
    }

    async fn create(&self, req: CreateRequest) -> Result<CreateResponse, ProviderError> {
        let role_id = attrs::s(&req.inputs, "role_id")?;
        validate_id(role_id)?;
        let name = self.name(role_id);
        let mut perms = attrs::strings(&req.inputs, "permissions");
        perms.sort();
        perms.dedup();
        let body = Role::new()
            .set_title(attrs::s(&req.inputs, "title")?)
            .set_description(token_description(&req.token))
            .set_included_permissions(perms)
            .set_stage(stage(&req.inputs));
        let r = self
            .clients
            .iam
            .create_role()
            .set_parent(format!("projects/{}", self.clients.project))
            .set_role_id(role_id)
            .set_role(body)
            .send()
            .await
            .map_err(|e| gax_err("iam.roles.create", e));
        let role = match r {
            Ok(r) => r,
            // Ours (a retry), or one this lineage deleted within the last ~7 days: undelete
            // and adopt. Anyone else's is refused with the import hint.
            Err(e) if e.kind == ErrorKind::AlreadyExists => {
                let existing = self.get(&name).await?.ok_or(e)?;
                if existing.deleted {
                    if !carries_lineage(&existing.description, &req.token) {
                        return Err(ProviderError::new(
                            ErrorKind::AlreadyExists,
                            format!(
                                "custom role `{name}` was deleted recently by someone else \
                                 (its description does not carry this state's token), and \
                                 its id stays reserved for about 7 days; flyteinfra never \
                                 undeletes a role it did not make. Choose another role_id, \
                                 or undelete it yourself and run `flyteinfra import {} {name}`",
                                req.address
                            ),
                        ));
                    }
                } else {
                    claim(
                        Some(Some(&existing.description)),
                        &req.token,
                        "custom role",
                        &req.address,
                        &name,
                    )?;
                }
                let existing = if existing.deleted {
                    req.progress.status("undeleting");
                    self.clients
                        .iam
                        .undelete_role()
                        .set_name(&name)
                        .send()
                        .await
                        .map_err(|e| gax_err("iam.roles.undelete", e))?
                } else {
                    existing
                };
                self.settle(existing, &req.inputs, Some(&req.token)).await?
            }
            Err(e) => return Err(e),
        };
        Ok(CreateResponse {
            id: name,
            completion: Completion::Ready(to_attrs(&role, &req.inputs)),
        })
    }

    async fn update(&self, req: UpdateRequest) -> Result<UpdateResponse, ProviderError> {
        let role = self
            .get(&req.id)
            .await?
            .filter(|r| !r.deleted)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::NotFound,
                    format!("custom role `{}` no longer exists", req.id),
                )
            })?;
        let role = self.settle(role, &req.inputs, None).await?;
        Ok(UpdateResponse {
            attributes: to_attrs(&role, &req.inputs),
        })
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, ProviderError> {
        let r = self
            .clients
            .iam
            .delete_role()
            .set_name(&req.id)
            .send()
            .await
            .map_err(|e| gax_err("iam.roles.delete", e));
        match r {
            Ok(_) => Ok(DeleteResponse { done: true }),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(DeleteResponse { done: true }),
            // Deleting a role that is already soft-deleted may be refused: gone is gone.
            Err(e) => match self.get(&req.id).await? {
                None => Ok(DeleteResponse { done: true }),
                Some(r) if r.deleted => Ok(DeleteResponse { done: true }),
                Some(_) => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::Value;
    use flyteinfra_core::requests as r;

    use super::*;
    use crate::testutil;

    const T: &str = "gcp_project_iam_custom_role";

    fn strs(v: &[&str]) -> Value {
        Value::List(v.iter().map(|s| Value::from(*s)).collect())
    }

    fn inputs(id: &str) -> Attributes {
        attrs::attrs([
            ("role_id", id.into()),
            ("title", "Flyte storage".into()),
            (
                "permissions",
                strs(&["storage.objects.get", "storage.objects.create"]),
            ),
            ("stage", "GA".into()),
        ])
    }

    #[tokio::test]
    async fn lifecycle_and_recreate_after_delete_undeletes() {
        // Holds off the tests that count IAM calls.
        let _g = super::super::service_account::tests::KNOBS.lock().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let id = testutil::unique("flyte_role").replace('-', "_");
        let inp = inputs(&id);
        let created = rt.create(r::create(T, &inp, "fi-aaaa-1")).await.unwrap();
        let name = format!("projects/{}/roles/{id}", testutil::PROJECT);
        assert_eq!(created.id, name);
        let Completion::Ready(a) = created.completion else {
            panic!("synchronous")
        };
        let read = rt
            .read(r::refresh(T, &name, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, a);
        let mut want = inp.clone();
        want.insert("id".into(), name.clone().into());
        want.insert("name".into(), name.clone().into());
        assert_eq!(read, want);
        assert_eq!(
            rt.find(r::find(T, &inp, "fi-aaaa-1"))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(name.as_str())
        );
        // A retried create adopts; another deployment's neither finds nor takes it.
        assert_eq!(
            rt.create(r::create(T, &inp, "fi-aaaa-1")).await.unwrap().id,
            name
        );
        testutil::assert_foreign_token_refused(&rt, T, &inp).await;

        let mut new = inp.clone();
        new.insert(
            "permissions".into(),
            strs(&["storage.objects.list", "storage.objects.get"]),
        );
        new.insert("title".into(), "Flyte storage v2".into());
        let up = rt
            .update(r::update(T, &name, &read, &new, &["permissions", "title"]))
            .await
            .unwrap();
        assert_eq!(up.attributes["permissions"], new["permissions"]);
        assert_eq!(up.attributes["title"], new["title"]);

        let d = r::delete(T, &name, &up.attributes);
        assert!(rt.delete(d.clone()).await.unwrap().done);
        assert!(rt.delete(d).await.unwrap().done);
        assert!(
            rt.read(r::read(T, &name))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(
            rt.find(r::find(T, &inp, "fi-aaaa-1"))
                .await
                .unwrap()
                .id
                .is_none()
        );

        // Soft-deleted, so the id is still taken.
        let kept = c.iam.get_role().set_name(&name).send().await.unwrap();
        assert!(kept.deleted);
        // Another lineage's create does not undelete it.
        let theirs = rt
            .create(r::create(T, &inp, "fi-bbbb-2"))
            .await
            .unwrap_err();
        assert_eq!(theirs.kind, ErrorKind::AlreadyExists, "{theirs}");
        assert!(theirs.message.contains("flyteinfra import"), "{theirs}");
        assert!(
            c.iam
                .get_role()
                .set_name(&name)
                .send()
                .await
                .unwrap()
                .deleted
        );
        // This lineage's, within the soft-delete window: undeleted, then made to match (it
        // was deleted holding the updated title and permissions) and marked with the new
        // token, which a later find looks for.
        let again = rt.create(r::create(T, &inp, "fi-aaaa-2")).await.unwrap();
        assert_eq!(again.id, name);
        let read = rt
            .read(r::refresh(T, &name, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, want);
        assert_eq!(
            rt.find(r::find(T, &inp, "fi-aaaa-2")).await.unwrap().id,
            Some(name.clone())
        );
        rt.delete(r::delete(T, &name, &read)).await.unwrap();
    }

    #[tokio::test]
    async fn a_role_made_by_hand_is_never_taken() {
        let _g = super::super::service_account::tests::KNOBS.lock().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        let id = testutil::unique("hand_role").replace('-', "_");
        let inp = inputs(&id);
        c.iam
            .create_role()
            .set_parent(format!("projects/{}", testutil::PROJECT))
            .set_role_id(&id)
            .set_role(
                Role::new()
                    .set_title("by hand")
                    .set_included_permissions(["storage.objects.get"]),
            )
            .send()
            .await
            .unwrap();
        testutil::assert_foreign_token_refused(&rt, T, &inp).await;
        let name = format!("projects/{}/roles/{id}", testutil::PROJECT);
        // Untouched.
        let kept = c.iam.get_role().set_name(&name).send().await.unwrap();
        assert_eq!(kept.title, "by hand");
        // Deleted by its owner: still not flyteinfra's to undelete.
        c.iam.delete_role().set_name(&name).send().await.unwrap();
        let e = rt
            .create(r::create(T, &inp, "fi-aaaa-1"))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::AlreadyExists, "{e}");
        assert!(
            c.iam
                .get_role()
                .set_name(&name)
                .send()
                .await
                .unwrap()
                .deleted
        );
    }

    #[test]
    fn role_ids_are_validated() {
        assert!(validate_id("flyte_storage.v1").is_ok());
        assert!(validate_id("ab").is_err());
        assert!(validate_id("has-dash").is_err());
        assert!(validate_id(&"x".repeat(65)).is_err());
    }
}

//! `gcp_service_account_iam_member`: non-authoritative members of one role on a service
//! account (Workload Identity users, the token creator for signed URLs).

use std::sync::Arc;
use std::time::Duration;

use flyteinfra_core::{Field, ResourceType, Schema};

use super::iam_policy::{MemberType, Target, member_fields};
use crate::client::GcpClients;

/// `gcp_service_account_iam_member`.
pub fn schema() -> Schema {
    let [id, role, members] = member_fields();
    Schema {
        type_name: "gcp_service_account_iam_member",
        doc: "Grants one role on a service account to some members (e.g. \
              `roles/iam.workloadIdentityUser` to `serviceAccount:{project}.svc.id.goog[ns/ksa]`), \
              leaving every other binding and member of the account's IAM policy alone.",
        fields: vec![
            id,
            Field::input("service_account", "The service account's email.")
                .required()
                .force_new(),
            role,
            members,
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `gcp_service_account_iam_member` over IAM Admin.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(MemberType {
        clients: clients.clone(),
        schema: schema(),
        target: Target::ServiceAccount,
    })
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::requests as r;
    use flyteinfra_core::{Completion, Value, attrs};
    use google_cloud_iam_v1::model::{Binding, GetPolicyOptions};

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::super::iam_policy::{PolicyStore, ServiceAccountPolicy, modify};
    use super::super::service_account::tests::KNOBS;
    use super::*;
    use crate::testutil;

    const T: &str = "gcp_service_account_iam_member";
    const ROLE: &str = "roles/iam.workloadIdentityUser";
    const FOREIGN: &str = "user:someone-else@example.com";

    async fn account(c: &GcpClients) -> String {
        let id = testutil::unique("sa-wi");
        super::super::service_account::build(c)
            .create(r::create(
                "gcp_service_account",
                &attrs::attrs([("account_id", id.as_str().into())]),
                "tok",
            ))
            .await
            .unwrap()
            .id
    }

    async fn bindings(c: &GcpClients, email: &str) -> Vec<Binding> {
        c.iam
            .get_iam_policy()
            .set_resource(format!(
                "projects/{}/serviceAccounts/{email}",
                testutil::PROJECT
            ))
            .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
            .send()
            .await
            .unwrap()
            .bindings
    }

    fn members_of(b: &[Binding], role: &str) -> Vec<String> {
        b.iter()
            .filter(|b| b.role == role)
            .flat_map(|b| b.members.clone())
            .collect()
    }

    /// Counts the `setIamPolicy` calls made through it.
    struct Counting<'a>(ServiceAccountPolicy<'a>, AtomicU32);

    #[async_trait::async_trait]
    impl PolicyStore for Counting<'_> {
        async fn get(&self) -> Result<serde_json::Value, flyteinfra_core::ProviderError> {
            self.0.get().await
        }
        async fn set(&self, p: serde_json::Value) -> Result<(), flyteinfra_core::ProviderError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            self.0.set(p).await
        }
    }

    fn strs(v: &[&str]) -> Value {
        Value::List(v.iter().map(|s| Value::from(*s)).collect())
    }

    #[tokio::test]
    async fn lifecycle() {
        let _g = KNOBS.lock().await;
        let c = testutil::clients().await;
        let email = account(&c).await;
        let rt = build(&c);
        let ksa = format!(
            "serviceAccount:{}.svc.id.goog[flyte/flyte-backend]",
            testutil::PROJECT
        );
        let inp = attrs::attrs([
            ("service_account", email.as_str().into()),
            ("role", ROLE.into()),
            ("members", strs(&[&ksa])),
        ]);
        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        let id = format!("{email}/{ROLE}");
        assert_eq!(created.id, id);
        let Completion::Ready(a) = created.completion else {
            panic!("synchronous")
        };
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(a, want);
        let read = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, want);
        assert_eq!(
            rt.find(r::find(T, &inp, "tok"))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );
        rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(
            members_of(&bindings(&c, &email).await, ROLE),
            [ksa.as_str()]
        );

        let other = format!(
            "serviceAccount:{}.svc.id.goog[flyte/worker]",
            testutil::PROJECT
        );
        let mut new = inp.clone();
        new.insert("members".into(), strs(&[&other]));
        let up = rt
            .update(r::update(T, &id, &read, &new, &["members"]))
            .await
            .unwrap();
        assert_eq!(up.attributes["members"], strs(&[&other]));
        assert_eq!(members_of(&bindings(&c, &email).await, ROLE), [other]);

        let d = r::delete(T, &id, &up.attributes);
        assert!(rt.delete(d.clone()).await.unwrap().done);
        assert!(rt.delete(d).await.unwrap().done);
        assert!(members_of(&bindings(&c, &email).await, ROLE).is_empty());
        assert!(
            rt.read(r::refresh(T, &id, &new))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
    }

    #[tokio::test]
    async fn etag_races_are_retried_and_keep_the_foreign_binding() {
        let _g = KNOBS.lock().await;
        let c = testutil::clients().await;
        let email = account(&c).await;
        let rt = build(&c);
        let me = format!("serviceAccount:{email}");
        let inp = attrs::attrs([
            ("service_account", email.as_str().into()),
            ("role", "roles/iam.serviceAccountTokenCreator".into()),
            ("members", strs(&[&me])),
        ]);
        // Straight through the helper, counting writes: two races, then success.
        let store = Counting(
            ServiceAccountPolicy {
                clients: &c,
                resource: format!("projects/{}/serviceAccounts/{email}", testutil::PROJECT),
            },
            AtomicU32::new(0),
        );
        testutil::double().shared().lock().knobs.iam_conflicts = 2;
        let r = modify(&store, ROLE, std::slice::from_ref(&me), &[]).await;
        let left = std::mem::take(&mut testutil::double().shared().lock().knobs.iam_conflicts);
        r.unwrap();
        assert_eq!(left, 0);
        assert_eq!(store.1.load(Ordering::Relaxed), 3);
        // Nothing left to change: no write at all.
        modify(&store, ROLE, std::slice::from_ref(&me), &[])
            .await
            .unwrap();
        assert_eq!(store.1.load(Ordering::Relaxed), 3);
        // And through the resource type.
        testutil::double().shared().lock().knobs.iam_conflicts = 2;
        let created = rt.create(r::create(T, &inp, "tok")).await;
        testutil::double().shared().lock().knobs.iam_conflicts = 0;
        created.unwrap();
        let b = bindings(&c, &email).await;
        assert_eq!(
            members_of(&b, "roles/iam.serviceAccountTokenCreator"),
            [me.as_str()]
        );
        assert_eq!(members_of(&b, ROLE), [me]);
        // The concurrent writer's binding survived our retries.
        assert!(
            b.iter().any(|b| b.members.iter().any(|m| m == FOREIGN)),
            "{b:?}"
        );
    }

    #[tokio::test]
    async fn a_not_yet_visible_account_is_waited_for() {
        let _g = KNOBS.lock().await;
        let c = testutil::clients().await;
        let email = account(&c).await;
        // Reads of the account answer 404 for a while (as right after its creation).
        testutil::double()
            .shared()
            .lock()
            .invisible
            .insert(email.clone(), 2);
        let rt = build(&c);
        let inp = attrs::attrs([
            ("service_account", email.as_str().into()),
            ("role", ROLE.into()),
            ("members", strs(&["user:a@example.com"])),
        ]);
        rt.create(r::create(T, &inp, "tok")).await.unwrap();
        // Both invisible reads were met (and retried past).
        assert_eq!(
            testutil::double().shared().lock().invisible.get(&email),
            Some(&0)
        );
        assert_eq!(
            members_of(&bindings(&c, &email).await, ROLE),
            ["user:a@example.com"]
        );
    }
}

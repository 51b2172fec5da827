//! `gcp_storage_bucket_iam_member`: non-authoritative members of one role on a bucket.

use std::sync::Arc;
use std::time::Duration;

use flyteinfra_core::{Field, ResourceType, Schema};

use super::iam_policy::{MemberType, Target, member_fields};
use crate::client::GcpClients;

/// `gcp_storage_bucket_iam_member`.
pub fn schema() -> Schema {
    let [id, role, members] = member_fields();
    Schema {
        type_name: "gcp_storage_bucket_iam_member",
        doc: "Grants one role on a bucket to some members, leaving every other binding and \
              member of the bucket's IAM policy alone.",
        fields: vec![
            id,
            Field::input("bucket", "The bucket name.")
                .required()
                .force_new(),
            role,
            members,
        ],
        holds_data: false,
        expected_create: Duration::from_secs(1),
        deletion_protection: None,
    }
}

/// `gcp_storage_bucket_iam_member` over the GCS JSON API.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(MemberType {
        clients: clients.clone(),
        schema: schema(),
        target: Target::Bucket,
    })
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::requests as r;
    use flyteinfra_core::{Attributes, Completion, Value, attrs};
    use reqwest::Method;
    use serde_json::json;

    use super::super::iam_policy::members;
    use super::*;
    use crate::client::Api;
    use crate::testutil;

    const T: &str = "gcp_storage_bucket_iam_member";
    const ROLE: &str = "roles/storage.objectAdmin";
    const FOREIGN: &str = "user:someone-else@example.com";

    async fn policy(c: &GcpClients, bucket: &str) -> serde_json::Value {
        c.http
            .call(
                Api::Storage,
                Method::GET,
                &format!("/storage/v1/b/{bucket}/iam"),
                None,
                "test",
            )
            .await
            .unwrap()
    }

    fn strs(v: &[&str]) -> Value {
        Value::List(v.iter().map(|s| Value::from(*s)).collect())
    }

    #[tokio::test]
    async fn lifecycle_leaves_foreign_bindings_and_members_alone() {
        let c = testutil::clients().await;
        let bucket = testutil::unique("flyte-iam");
        super::super::storage_bucket::build(&c)
            .create(r::create(
                "gcp_storage_bucket",
                &attrs::attrs([("name", bucket.as_str().into())]),
                "tok",
            ))
            .await
            .unwrap();
        // Someone else's member of our role, and someone else's binding.
        c.http
            .call(
                Api::Storage,
                Method::PUT,
                &format!("/storage/v1/b/{bucket}/iam"),
                Some(&json!({"bindings": [
                    {"role": ROLE, "members": [FOREIGN]},
                    {"role": "roles/storage.legacyBucketReader", "members": [FOREIGN]},
                ]})),
                "test",
            )
            .await
            .unwrap();
        let foreign_binding = policy(&c, &bucket).await["bindings"][1].clone();

        let rt = build(&c);
        let a1 = "serviceAccount:a@p.iam.gserviceaccount.com";
        let a2 = "serviceAccount:b@p.iam.gserviceaccount.com";
        let inp = attrs::attrs([
            ("bucket", bucket.as_str().into()),
            ("role", ROLE.into()),
            ("members", strs(&[a1, a2])),
        ]);
        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        let id = format!("{bucket}/{ROLE}");
        assert_eq!(created.id, id);
        let Completion::Ready(a) = created.completion else {
            panic!("synchronous")
        };
        let read = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(read, a);
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(read, want);
        let p = policy(&c, &bucket).await;
        assert_eq!(members(&p, ROLE), [FOREIGN, a1, a2]);
        assert_eq!(p["bindings"][1], foreign_binding);

        assert_eq!(
            rt.find(r::find(T, &inp, "tok"))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );
        // A retried create changes nothing.
        rt.create(r::create(T, &inp, "tok")).await.unwrap();
        assert_eq!(members(&policy(&c, &bucket).await, ROLE), [FOREIGN, a1, a2]);
        // Import: every member of the role.
        let imported = rt.read(r::read(T, &id)).await.unwrap().attributes.unwrap();
        assert_eq!(
            imported["members"],
            attrs::list(vec![FOREIGN.into(), a1.into(), a2.into()])
        );

        // A member removed out of band is drift; the update puts it back.
        let mut p = policy(&c, &bucket).await;
        p["bindings"][0]["members"] = json!([FOREIGN, a1]);
        c.http
            .call(
                Api::Storage,
                Method::PUT,
                &format!("/storage/v1/b/{bucket}/iam"),
                Some(&p),
                "test",
            )
            .await
            .unwrap();
        let drift = rt
            .read(r::refresh(T, &id, &inp))
            .await
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(drift["members"], strs(&[a1]));
        rt.update(r::update(T, &id, &drift, &inp, &["members"]))
            .await
            .unwrap();
        assert_eq!(members(&policy(&c, &bucket).await, ROLE), [FOREIGN, a1, a2]);

        // Update: drop a1, keep a2.
        let mut new = inp.clone();
        new.insert("members".into(), strs(&[a2]));
        let up = rt
            .update(r::update(T, &id, &read, &new, &["members"]))
            .await
            .unwrap();
        assert_eq!(up.attributes["members"], strs(&[a2]));
        let p = policy(&c, &bucket).await;
        assert_eq!(members(&p, ROLE), [FOREIGN, a2]);
        assert_eq!(p["bindings"][1], foreign_binding);

        // Delete removes only ours, twice is fine.
        let d = r::delete(T, &id, &up.attributes);
        assert!(rt.delete(d.clone()).await.unwrap().done);
        assert!(rt.delete(d).await.unwrap().done);
        let p = policy(&c, &bucket).await;
        assert_eq!(members(&p, ROLE), [FOREIGN]);
        assert_eq!(p["bindings"][1], foreign_binding);
        assert!(
            rt.read(r::refresh(T, &id, &new))
                .await
                .unwrap()
                .attributes
                .is_none()
        );

        // A gone bucket: read None, delete done.
        let gone = format!("{}-gone/{ROLE}", bucket);
        assert!(
            rt.read(r::read(T, &gone))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        assert!(
            rt.delete(r::delete(T, &gone, &Attributes::new()))
                .await
                .unwrap()
                .done
        );
    }
}

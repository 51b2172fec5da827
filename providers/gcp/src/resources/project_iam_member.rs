//! `gcp_project_iam_member`: non-authoritative members of one role on the project.

use std::sync::Arc;
use std::time::Duration;

use flyteinfra_core::{ResourceType, Schema};

use super::iam_policy::{MemberType, Target, member_fields};
use crate::client::GcpClients;

/// `gcp_project_iam_member`.
pub fn schema() -> Schema {
    let [id, role, members] = member_fields();
    Schema {
        type_name: "gcp_project_iam_member",
        doc: "Grants one role on the project to some members (e.g. logging and monitoring \
              writers to the GKE node service account), leaving every other binding and \
              member of the project's IAM policy alone.",
        fields: vec![id, role, members],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `gcp_project_iam_member` over Resource Manager v3.
pub fn build(clients: &GcpClients) -> Arc<dyn ResourceType> {
    Arc::new(MemberType {
        clients: clients.clone(),
        schema: schema(),
        target: Target::Project,
    })
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::requests as r;
    use flyteinfra_core::{Completion, Value, attrs};
    use google_cloud_iam_v1::model::{Binding, GetPolicyOptions};

    use super::super::service_account::tests::KNOBS;
    use super::*;
    use crate::testutil;

    const T: &str = "gcp_project_iam_member";

    async fn bindings(c: &GcpClients) -> Vec<Binding> {
        c.projects
            .get_iam_policy()
            .set_resource(format!("projects/{}", testutil::PROJECT))
            .set_options(GetPolicyOptions::new().set_requested_policy_version(3))
            .send()
            .await
            .unwrap()
            .bindings
    }

    /// Sorted: IAM keeps members in its own order.
    fn members_of(b: &[Binding], role: &str) -> Vec<String> {
        let mut m: Vec<String> = b
            .iter()
            .filter(|b| b.role == role)
            .flat_map(|b| b.members.clone())
            .collect();
        m.sort();
        m
    }

    fn strs(v: &[&str]) -> Value {
        Value::List(v.iter().map(|s| Value::from(*s)).collect())
    }

    #[tokio::test]
    async fn lifecycle() {
        let _g = KNOBS.lock().await;
        let c = testutil::clients().await;
        let rt = build(&c);
        // A role of its own per test run (the project policy is shared by every test).
        let role = format!(
            "projects/{}/roles/{}",
            testutil::PROJECT,
            testutil::unique("r").replace('-', "_")
        );
        // The GKE node account, just created: its first reads may not see it yet.
        let node_id = testutil::unique("nodes");
        testutil::double().shared().lock().knobs.sa_invisible_reads = 2;
        let sa = super::super::service_account::build(&c)
            .create(r::create(
                "gcp_service_account",
                &attrs::attrs([("account_id", node_id.as_str().into())]),
                "tok",
            ))
            .await;
        testutil::double().shared().lock().knobs.sa_invisible_reads = 0;
        let node = format!("serviceAccount:{}", sa.unwrap().id);
        let foreign = "user:someone-else@example.com";
        let pre = rt
            .create(r::create(
                T,
                &attrs::attrs([
                    ("role", role.as_str().into()),
                    ("members", strs(&[foreign])),
                ]),
                "t0",
            ))
            .await
            .unwrap();
        let inp = attrs::attrs([("role", role.as_str().into()), ("members", strs(&[&node]))]);
        let created = rt.create(r::create(T, &inp, "tok")).await.unwrap();
        let id = format!("{}/{role}", testutil::PROJECT);
        assert_eq!(created.id, id);
        assert_eq!(pre.id, id);
        let Completion::Ready(a) = created.completion else {
            panic!("synchronous")
        };
        let mut want = inp.clone();
        want.insert("id".into(), id.clone().into());
        assert_eq!(a, want);
        assert_eq!(
            rt.read(r::refresh(T, &id, &inp))
                .await
                .unwrap()
                .attributes
                .unwrap(),
            want
        );
        assert_eq!(
            rt.find(r::find(T, &inp, "tok"))
                .await
                .unwrap()
                .id
                .as_deref(),
            Some(id.as_str())
        );
        assert_eq!(
            members_of(&bindings(&c).await, &role),
            [node.as_str(), foreign]
        );

        let d = r::delete(T, &id, &a);
        assert!(rt.delete(d.clone()).await.unwrap().done);
        assert!(rt.delete(d).await.unwrap().done);
        assert_eq!(members_of(&bindings(&c).await, &role), [foreign]);
        assert!(
            rt.read(r::refresh(T, &id, &inp))
                .await
                .unwrap()
                .attributes
                .is_none()
        );
        let Completion::Ready(pre) = pre.completion else {
            panic!("synchronous")
        };
        rt.delete(r::delete(T, &id, &pre)).await.unwrap();
        assert!(members_of(&bindings(&c).await, &role).is_empty());
    }
}

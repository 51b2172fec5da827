//! `aws_eks_cluster`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_eks_cluster`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_eks_cluster",
        doc: "An EKS control plane.",
        fields: vec![
            Field::computed("id", "The cloud id (the name)."),
            Field::computed("arn", "The ARN."),
            Field::computed("endpoint", "The API server URL."),
            Field::computed("certificate_authority", "The cluster CA (base64)."),
            Field::computed("oidc_issuer", "The OIDC issuer URL."),
            Field::computed(
                "cluster_security_group_id",
                "The security group EKS attaches to nodes.",
            ),
            Field::input("name", "The cluster name.")
                .required()
                .force_new(),
            Field::input("version", "The Kubernetes version.").required(),
            Field::input("role_arn", "The cluster IAM role.")
                .required()
                .force_new(),
            Field::input("subnet_ids", "The subnets.")
                .required()
                .force_new(),
            Field::input("endpoint_public_access", "Public API endpoint."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(15 * 60),
        deletion_protection: None,
    }
}

/// Not implemented yet (being written).
pub fn build(_clients: &AwsClients) -> Arc<dyn ResourceType> {
    crate::wip::unimplemented(schema())
}

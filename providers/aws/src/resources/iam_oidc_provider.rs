//! `aws_iam_openid_connect_provider`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_iam_openid_connect_provider`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_iam_openid_connect_provider",
        doc: "The IAM OIDC provider for the EKS cluster's issuer (IRSA). No thumbprint is fetched.",
        fields: vec![
            Field::computed("id", "The cloud id (the ARN)."),
            Field::computed("arn", "The ARN."),
            Field::computed(
                "issuer",
                "The issuer without `https://`, as trust-policy condition keys use it.",
            ),
            Field::input("url", "The issuer URL.")
                .required()
                .force_new(),
            Field::input("client_ids", "Audiences (`sts.amazonaws.com`)."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// Not implemented yet (being written).
pub fn build(_clients: &AwsClients) -> Arc<dyn ResourceType> {
    crate::wip::unimplemented(schema())
}

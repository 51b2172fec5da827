//! `aws_iam_role`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_iam_role`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_iam_role",
        doc: "An IAM role with a trust policy, attached managed policies and one inline policy.",
        fields: vec![
            Field::computed("id", "The cloud id (the role name)."),
            Field::computed("arn", "The ARN."),
            Field::input("name", "The role name.")
                .required()
                .force_new(),
            Field::input("assume_role_policy", "The trust policy document (JSON).").required(),
            Field::input("managed_policy_arns", "Attached AWS-managed policies."),
            Field::input("inline_policy", "The inline policy document (JSON)."),
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

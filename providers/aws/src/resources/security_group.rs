//! `aws_security_group`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_security_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_security_group",
        doc: "A security group with ingress rules from other security groups.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("name", "The group name, unique in the VPC.")
                .required()
                .force_new(),
            Field::input("description", "The description.").force_new(),
            Field::input("vpc_id", "The VPC.").required().force_new(),
            Field::input("ingress_port", "The TCP port admitted."),
            Field::input("ingress_source_group_ids", "Security groups admitted."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// Not implemented yet (being written).
pub fn build(_clients: &AwsClients) -> Arc<dyn ResourceType> {
    crate::wip::unimplemented(schema())
}

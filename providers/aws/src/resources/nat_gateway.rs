//! `aws_nat_gateway`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_nat_gateway`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_nat_gateway",
        doc: "A NAT gateway in a public subnet, for private subnets' egress.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("subnet_id", "The public subnet.")
                .required()
                .force_new(),
            Field::input("allocation_id", "The Elastic IP.")
                .required()
                .force_new(),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(120),
        deletion_protection: None,
    }
}

/// Not implemented yet (being written).
pub fn build(_clients: &AwsClients) -> Arc<dyn ResourceType> {
    crate::wip::unimplemented(schema())
}

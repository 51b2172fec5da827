//! `aws_subnet`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_subnet`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_subnet",
        doc: "A subnet in one availability zone.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("vpc_id", "The VPC.").required().force_new(),
            Field::input("cidr_block", "The IPv4 range.")
                .required()
                .force_new(),
            Field::input("availability_zone", "The zone.")
                .required()
                .force_new(),
            Field::input(
                "map_public_ip_on_launch",
                "Public subnets give instances public IPs.",
            ),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
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

//! `aws_route_table`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_route_table`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_route_table",
        doc: "A route table, its default route and its subnet associations.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("vpc_id", "The VPC.").required().force_new(),
            Field::input("gateway_id", "Default route through an internet gateway."),
            Field::input("nat_gateway_id", "Default route through a NAT gateway."),
            Field::input("subnet_ids", "Associated subnets."),
            Field::input("tags", "Tags; flyteinfra adds its identity token."),
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

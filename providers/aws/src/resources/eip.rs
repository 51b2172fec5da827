//! `aws_eip`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_eip`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_eip",
        doc: "An Elastic IP for a NAT gateway.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::computed("public_ip", "The address."),
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

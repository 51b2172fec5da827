//! `aws_internet_gateway`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_internet_gateway`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_internet_gateway",
        doc: "An internet gateway attached to the VPC.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("vpc_id", "The VPC it is attached to.")
                .required()
                .force_new(),
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

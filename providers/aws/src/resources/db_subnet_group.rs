//! `aws_db_subnet_group`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_db_subnet_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_db_subnet_group",
        doc: "The subnets RDS may place the database in.",
        fields: vec![
            Field::computed("id", "The cloud id (the name)."),
            Field::input("name", "The group name.")
                .required()
                .force_new(),
            Field::input("subnet_ids", "The private subnets.").required(),
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

//! `aws_db_subnet_group`.

use std::time::Duration;

use flyteinfra_core::{Field, Schema};

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

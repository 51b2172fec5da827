//! `aws_vpc`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_vpc`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_vpc",
        doc: "A VPC. It has no unique name, so its identity is the token tag set in the create call.",
        fields: vec![
            Field::computed("id", "The cloud id."),
            Field::input("cidr_block", "The IPv4 range.")
                .required()
                .force_new(),
            Field::input("enable_dns_hostnames", "DNS hostnames (EKS needs them)."),
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

//! VPC networking: VPC, subnets, internet and NAT gateways, route tables.

use std::time::Duration;

use flyteinfra_core::{Field, Schema};

const ID: Field = Field::computed("id", "The cloud id.");
const TAGS: Field = Field::input("tags", "Tags; flyteinfra adds its identity token.");

/// `aws_vpc`.
pub fn vpc() -> Schema {
    Schema {
        type_name: "aws_vpc",
        doc: "A VPC. It has no unique name, so its identity is the token tag set in the create call.",
        fields: vec![
            ID,
            Field::input("cidr_block", "The IPv4 range.")
                .required()
                .force_new(),
            Field::input("enable_dns_hostnames", "DNS hostnames (EKS needs them)."),
            TAGS,
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `aws_subnet`.
pub fn subnet() -> Schema {
    Schema {
        type_name: "aws_subnet",
        doc: "A subnet in one availability zone.",
        fields: vec![
            ID,
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
            TAGS,
        ],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_internet_gateway`.
pub fn internet_gateway() -> Schema {
    Schema {
        type_name: "aws_internet_gateway",
        doc: "An internet gateway attached to the VPC.",
        fields: vec![
            ID,
            Field::input("vpc_id", "The VPC it is attached to.")
                .required()
                .force_new(),
            TAGS,
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

/// `aws_eip`.
pub fn eip() -> Schema {
    Schema {
        type_name: "aws_eip",
        doc: "An Elastic IP for a NAT gateway.",
        fields: vec![ID, Field::computed("public_ip", "The address."), TAGS],
        holds_data: false,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// `aws_nat_gateway`.
pub fn nat_gateway() -> Schema {
    Schema {
        type_name: "aws_nat_gateway",
        doc: "A NAT gateway in a public subnet, for private subnets' egress.",
        fields: vec![
            ID,
            Field::input("subnet_id", "The public subnet.")
                .required()
                .force_new(),
            Field::input("allocation_id", "The Elastic IP.")
                .required()
                .force_new(),
            TAGS,
        ],
        holds_data: false,
        expected_create: Duration::from_secs(120),
        deletion_protection: None,
    }
}

/// `aws_route_table`.
pub fn route_table() -> Schema {
    Schema {
        type_name: "aws_route_table",
        doc: "A route table, its default route and its subnet associations.",
        fields: vec![
            ID,
            Field::input("vpc_id", "The VPC.").required().force_new(),
            Field::input("gateway_id", "Default route through an internet gateway."),
            Field::input("nat_gateway_id", "Default route through a NAT gateway."),
            Field::input("subnet_ids", "Associated subnets."),
            TAGS,
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3),
        deletion_protection: None,
    }
}

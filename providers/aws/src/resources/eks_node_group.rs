//! `aws_eks_node_group`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_eks_node_group`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_eks_node_group",
        doc: "An EKS managed node group.",
        fields: vec![
            Field::computed("id", "The cloud id (`cluster:nodegroup`)."),
            Field::computed("arn", "The ARN."),
            Field::input("cluster_name", "The cluster.")
                .required()
                .force_new(),
            Field::input("name", "The node group name.")
                .required()
                .force_new(),
            Field::input("node_role_arn", "The node IAM role.")
                .required()
                .force_new(),
            Field::input("subnet_ids", "The private subnets.")
                .required()
                .force_new(),
            Field::input("instance_types", "Instance types.").force_new(),
            Field::input("min_size", "Minimum nodes."),
            Field::input("max_size", "Maximum nodes."),
            Field::input("desired_size", "Desired nodes."),
            Field::input("tags", "Tags."),
        ],
        holds_data: false,
        expected_create: Duration::from_secs(3 * 60),
        deletion_protection: None,
    }
}

/// Not implemented yet (being written).
pub fn build(_clients: &AwsClients) -> Arc<dyn ResourceType> {
    crate::wip::unimplemented(schema())
}

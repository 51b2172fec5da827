//! `aws_s3_bucket`.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_s3_bucket`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_s3_bucket",
        doc: "An S3 bucket with all four public-access blocks, default encryption and versioning.",
        fields: vec![
            Field::computed("id", "The cloud id (the bucket name)."),
            Field::computed("arn", "The ARN."),
            Field::input("bucket", "The globally unique name.")
                .required()
                .force_new(),
            Field::input("region", "The region.").required().force_new(),
            Field::input("versioning", "Object versioning."),
            Field::input("encryption", "Default encryption (`AES256`)."),
            Field::input("block_public_access", "All four public-access blocks."),
            Field::input("expire_after_days", "Lifecycle expiry of objects, if any."),
            Field::input("tags", "Tags."),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(2),
        deletion_protection: None,
    }
}

/// Not implemented yet (being written).
pub fn build(_clients: &AwsClients) -> Arc<dyn ResourceType> {
    crate::wip::unimplemented(schema())
}

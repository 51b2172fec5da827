//! `aws_db_instance`: RDS PostgreSQL.

use std::time::Duration;

use std::sync::Arc;

use flyteinfra_core::{Field, ResourceType, Schema};

use crate::client::AwsClients;

/// `aws_db_instance`.
pub fn schema() -> Schema {
    Schema {
        type_name: "aws_db_instance",
        doc: "An RDS PostgreSQL instance: encrypted, private, backed up, deletion-protected by default.",
        fields: vec![
            Field::computed("id", "The cloud id (the identifier)."),
            Field::computed("arn", "The ARN."),
            Field::computed("address", "The endpoint host name."),
            Field::computed("port", "The endpoint port."),
            Field::input("identifier", "The instance identifier.")
                .required()
                .force_new(),
            Field::input("engine", "Always `postgres`.")
                .required()
                .force_new(),
            Field::input(
                "engine_version",
                "The pinned major version; AWS upgrades minors on its own.",
            )
            .required()
            .server_managed(),
            Field::input("instance_class", "The instance class."),
            Field::input("allocated_storage", "Storage in GiB."),
            Field::input("db_name", "The initial database.").force_new(),
            Field::input("username", "The master user.")
                .required()
                .force_new(),
            Field::input("password", "The master password.")
                .required()
                .sensitive(),
            Field::input("db_subnet_group_name", "The subnet group.").force_new(),
            Field::input("vpc_security_group_ids", "Security groups."),
            Field::input("storage_encrypted", "Encryption at rest.").force_new(),
            Field::input(
                "publicly_accessible",
                "Reachable from the internet (never, here).",
            ),
            Field::input("backup_retention_period", "Days of automated backups."),
            Field::input("deletion_protection", "Refuse deletion while on."),
            Field::input("final_snapshot_identifier", "Snapshot taken on delete."),
            Field::input("tags", "Tags."),
        ],
        holds_data: true,
        expected_create: Duration::from_secs(6 * 60),
        deletion_protection: Some("deletion_protection"),
    }
}

/// Not implemented yet (being written).
pub fn build(_clients: &AwsClients) -> Arc<dyn ResourceType> {
    crate::wip::unimplemented(schema())
}

//! One file per resource type; one line per type in [`SCHEMAS`].

use flyteinfra_core::Schema;

mod db_instance;
mod db_subnet_group;
mod eks_cluster;
mod eks_node_group;
mod iam_oidc_provider;
mod iam_role;
mod network;
mod s3_bucket;
mod security_group;

/// The registry slice: every AWS resource type's schema.
const SCHEMAS: &[fn() -> Schema] = &[
    network::vpc,
    network::subnet,
    network::internet_gateway,
    network::eip,
    network::nat_gateway,
    network::route_table,
    security_group::schema,
    db_subnet_group::schema,
    db_instance::schema,
    s3_bucket::schema,
    iam_role::schema,
    iam_oidc_provider::schema,
    eks_cluster::schema,
    eks_node_group::schema,
];

/// Every AWS resource type's schema.
pub fn schemas() -> Vec<Schema> {
    SCHEMAS.iter().map(|f| f()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_are_unique_documented_and_prefixed() {
        let mut seen = BTreeSet::new();
        for s in schemas() {
            assert!(seen.insert(s.type_name), "{} twice", s.type_name);
            assert!(s.type_name.starts_with("aws_"), "{}", s.type_name);
            assert!(!s.doc.is_empty(), "{} has no doc", s.type_name);
            for f in &s.fields {
                assert!(!f.doc.is_empty(), "{}.{} has no doc", s.type_name, f.name);
            }
            assert!(
                s.field("id").is_some_and(|f| f.flags.computed),
                "{}",
                s.type_name
            );
            if let Some(p) = s.deletion_protection {
                assert!(s.field(p).is_some_and(|f| f.flags.input), "{}", s.type_name);
            }
        }
    }
}

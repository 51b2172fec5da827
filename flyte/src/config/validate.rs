//! Rules beyond types, checked after deserialization, each error located at the
//! value that breaks the rule.

use std::collections::HashSet;

use super::error::{ConfigError, ConfigErrorKind};
use super::model::{
    AwsConfig, AzureConfig, ClusterConfig, DatabaseConfig, FlyteConfig, GcpConfig, StateConfig,
    StorageConfig, Style,
};
use super::{Config, Ipv4Cidr};

type Result<T = ()> = std::result::Result<T, ConfigError>;

/// Kubernetes namespace names (DNS labels) are at most this long.
const MAX_LABEL: usize = 63;
/// Helm release names are at most this long.
const MAX_RELEASE: usize = 53;
/// An IPv4 address, or a range of /30 or larger, outside the private, shared, loopback
/// and link-local ranges: what a storage account's IP rules accept.
fn public_ipv4_range(text: &str) -> bool {
    let cidr = if text.contains('/') {
        match text.parse::<Ipv4Cidr>() {
            Ok(c) if c.prefix() <= 30 && c.prefix() >= 8 => c,
            _ => return false,
        }
    } else {
        match text.parse::<std::net::Ipv4Addr>() {
            Ok(a) => Ipv4Cidr::known(a.octets(), 32),
            Err(_) => return false,
        }
    };
    let reserved = [
        Ipv4Cidr::known([0, 0, 0, 0], 8),
        Ipv4Cidr::known([10, 0, 0, 0], 8),
        Ipv4Cidr::known([100, 64, 0, 0], 10),
        Ipv4Cidr::known([127, 0, 0, 0], 8),
        Ipv4Cidr::known([169, 254, 0, 0], 16),
        Ipv4Cidr::known([172, 16, 0, 0], 12),
        Ipv4Cidr::known([192, 168, 0, 0], 16),
        Ipv4Cidr::known([224, 0, 0, 0], 3),
    ];
    !reserved.iter().any(|r| r.overlaps(&cidr))
}

/// The storage sizes (GiB) Azure Database for PostgreSQL flexible server offers.
pub const AZURE_STORAGE_SIZES_GB: [u32; 10] =
    [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16_384];

/// Federated identity credentials Azure allows per managed identity.
const AZURE_MAX_FEDERATED: usize = 20;

pub(crate) fn validate(config: &Config) -> Result {
    let v = Checker { config };
    v.name()?;
    v.style()?;
    config.select_cloud(None)?;
    if let Some(aws) = &config.aws {
        v.aws(aws)?;
    }
    if let Some(gcp) = &config.gcp {
        v.gcp(gcp)?;
    }
    if let Some(azure) = &config.azure {
        v.azure(azure)?;
    }
    v.database(&config.database)?;
    v.storage(&config.storage)?;
    v.cluster(&config.cluster)?;
    v.flyte(&config.flyte)?;
    v.state(&config.state)?;
    Ok(())
}

struct Checker<'a> {
    config: &'a Config,
}

impl Checker<'_> {
    /// An error at the value of `path`.
    fn fail(&self, path: &str, kind: ConfigErrorKind, message: String) -> ConfigError {
        ConfigError::at(
            self.config.path(),
            self.config.origin.map.value(path),
            kind,
            message,
        )
    }

    fn invalid(&self, path: &str, message: String) -> Result {
        Err(self.fail(path, ConfigErrorKind::Invalid, message))
    }

    /// Fails unless `ok`, with "`path` is `value`, expected …".
    fn expect(&self, ok: bool, path: &str, value: &str, expected: &str) -> Result {
        if ok {
            Ok(())
        } else {
            self.invalid(path, format!("`{path}` is `{value}`, expected {expected}"))
        }
    }

    fn name(&self) -> Result {
        let name = &self.config.name;
        let ok = (3..=30).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        self.expect(
            ok,
            "name",
            name,
            "3 to 30 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen (pattern `^[a-z][a-z0-9-]{1,28}[a-z0-9]$`)",
        )
    }

    fn style(&self) -> Result {
        let style = self.config.style;
        if style == Style::SingleCluster {
            return Ok(());
        }
        Err(self.fail(
            "style",
            ConfigErrorKind::Unsupported,
            format!(
                "style `{}` is not supported yet, expected `single-cluster`",
                style.as_str()
            ),
        ))
    }

    fn aws(&self, aws: &AwsConfig) -> Result {
        self.expect(
            is_aws_region(&aws.region),
            "aws.region",
            &aws.region,
            "an AWS region such as `us-east-1`",
        )?;
        let zones = &aws.availability_zones;
        if !zones.is_empty() {
            if !(2..=3).contains(&zones.len()) {
                return self.invalid(
                    "aws.availability_zones",
                    format!(
                        "`aws.availability_zones` lists {} zones, expected 2 or 3",
                        zones.len()
                    ),
                );
            }
            let mut seen = HashSet::new();
            for (i, zone) in zones.iter().enumerate() {
                let path = format!("aws.availability_zones[{i}]");
                let suffix = zone.strip_prefix(aws.region.as_str());
                self.expect(
                    suffix
                        .is_some_and(|s| s.len() == 1 && s.bytes().all(|b| b.is_ascii_lowercase())),
                    &path,
                    zone,
                    &format!("a zone of `{}` such as `{}a`", aws.region, aws.region),
                )?;
                if !seen.insert(zone) {
                    return self.invalid(
                        &path,
                        format!("zone `{zone}` is listed twice, expected distinct zones"),
                    );
                }
            }
        }
        let existing = &aws.existing;
        if existing.vpc_id.is_none() {
            self.cidr_block("aws.vpc_cidr", aws.vpc_cidr, 16, 20)?;
        }
        if let Some(vpc) = &existing.vpc_id {
            self.expect(
                is_aws_id(vpc, "vpc-"),
                "aws.existing.vpc_id",
                vpc,
                "a VPC ID such as `vpc-0abc1234`",
            )?;
            for (list, ids) in [
                ("public_subnet_ids", &existing.public_subnet_ids),
                ("private_subnet_ids", &existing.private_subnet_ids),
            ] {
                if ids.len() < 2 {
                    return self.invalid(
                        "aws.existing.vpc_id",
                        format!(
                            "`aws.existing.vpc_id` is set but `aws.existing.{list}` lists {} subnets, expected at least 2 (one per zone)",
                            ids.len()
                        ),
                    );
                }
            }
        } else {
            for list in ["public_subnet_ids", "private_subnet_ids"] {
                let ids = if list == "public_subnet_ids" {
                    &existing.public_subnet_ids
                } else {
                    &existing.private_subnet_ids
                };
                if !ids.is_empty() {
                    return self.invalid(
                        &format!("aws.existing.{list}"),
                        format!("`aws.existing.{list}` is set without `aws.existing.vpc_id`, expected both or neither"),
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        for (list, ids) in [
            ("public_subnet_ids", &existing.public_subnet_ids),
            ("private_subnet_ids", &existing.private_subnet_ids),
        ] {
            for (i, id) in ids.iter().enumerate() {
                let path = format!("aws.existing.{list}[{i}]");
                self.expect(
                    is_aws_id(id, "subnet-"),
                    &path,
                    id,
                    "a subnet ID such as `subnet-0abc1234`",
                )?;
                if !seen.insert(id) {
                    return self.invalid(
                        &path,
                        format!("subnet `{id}` is listed twice, expected distinct subnets"),
                    );
                }
            }
        }
        if let Some(cluster) = &existing.cluster_name {
            if existing.vpc_id.is_none() {
                return self.invalid(
                    "aws.existing.cluster_name",
                    "`aws.existing.cluster_name` is set without `aws.existing.vpc_id`, expected the cluster's VPC and subnets too (the database must be reachable from the cluster)".to_owned(),
                );
            }
            let ok = (1..=100).contains(&cluster.len())
                && cluster.starts_with(|c: char| c.is_ascii_alphanumeric())
                && cluster
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            self.expect(
                ok,
                "aws.existing.cluster_name",
                cluster,
                "an EKS cluster name (letters, digits, `-`, `_`, at most 100)",
            )?;
        }
        self.expect(
            is_dotted_type(&aws.node_instance_type, None),
            "aws.node_instance_type",
            &aws.node_instance_type,
            "an EC2 instance type such as `m7i.xlarge`",
        )?;
        self.expect(
            is_dotted_type(&aws.db_instance_class, Some("db.")),
            "aws.db_instance_class",
            &aws.db_instance_class,
            "an RDS instance class such as `db.t3.medium`",
        )
    }

    fn gcp(&self, gcp: &GcpConfig) -> Result {
        let p = &gcp.project;
        let ok = (6..=30).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && !p.ends_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        self.expect(
            ok,
            "gcp.project",
            p,
            "a project ID: 6 to 30 lowercase letters, digits or hyphens, starting with a letter",
        )?;
        self.expect(
            is_gcp_region(&gcp.region),
            "gcp.region",
            &gcp.region,
            "a GCP region such as `us-central1` (a region, not a zone)",
        )?;
        if gcp.existing.subnetwork.is_none() {
            let ranges = [
                ("gcp.subnet_cidr", gcp.subnet_cidr, 8, 29),
                ("gcp.pods_cidr", gcp.pods_cidr, 8, 21),
                ("gcp.services_cidr", gcp.services_cidr, 8, 27),
            ];
            for (path, cidr, min, max) in ranges {
                self.cidr_block(path, cidr, min, max)?;
            }
            self.disjoint(&ranges.map(|(p, c, _, _)| (p, c)))?;
        }
        let existing = &gcp.existing;
        for (field, value) in [
            ("subnetwork", &existing.subnetwork),
            ("cluster", &existing.cluster),
        ] {
            if value.is_some() && existing.network.is_none() {
                return self.invalid(
                    &format!("gcp.existing.{field}"),
                    format!("`gcp.existing.{field}` is set without `gcp.existing.network`, expected the network it belongs to"),
                );
            }
        }
        for (field, value) in [
            ("network", &existing.network),
            ("subnetwork", &existing.subnetwork),
            ("cluster", &existing.cluster),
        ] {
            if let Some(value) = value {
                let path = format!("gcp.existing.{field}");
                self.expect(
                    is_gcp_name(value),
                    &path,
                    value,
                    "a resource name (lowercase letters, digits, hyphens, at most 63) or a `projects/…` path",
                )?;
            }
        }
        self.expect(
            !gcp.machine_type.is_empty() && !gcp.machine_type.contains(char::is_whitespace),
            "gcp.machine_type",
            &gcp.machine_type,
            "a machine type such as `e2-standard-4`",
        )?;
        self.expect(
            gcp.db_tier.starts_with("db-") && !gcp.db_tier.contains(char::is_whitespace),
            "gcp.db_tier",
            &gcp.db_tier,
            "a Cloud SQL tier such as `db-custom-1-3840`",
        )?;
        self.expect(
            ["RAPID", "REGULAR", "STABLE"].contains(&gcp.release_channel.as_str()),
            "gcp.release_channel",
            &gcp.release_channel,
            "a GKE release channel: `RAPID`, `REGULAR` or `STABLE`",
        )
    }

    fn azure(&self, azure: &AzureConfig) -> Result {
        self.expect(
            is_guid(&azure.subscription_id),
            "azure.subscription_id",
            &azure.subscription_id,
            "a subscription GUID such as `00000000-0000-0000-0000-000000000000`",
        )?;
        let loc = &azure.location;
        self.expect(
            !loc.is_empty()
                && loc
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
            "azure.location",
            loc,
            "an Azure location name such as `eastus` (lowercase, no spaces)",
        )?;
        let rg = &azure.resource_group;
        let ok = (1..=90).contains(&rg.chars().count())
            && !rg.ends_with('.')
            && rg
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
        self.expect(
            ok,
            "azure.resource_group",
            rg,
            "a resource group name: 1 to 90 letters, digits, `-`, `_`, `.`, `(`, `)`, not ending with `.`",
        )?;
        let existing = &azure.existing;
        if existing.vnet_id.is_none() {
            self.cidr_block("azure.vnet_cidr", azure.vnet_cidr, 8, 24)?;
            for (path, subnet, max) in [
                ("azure.node_subnet_cidr", azure.node_subnet_cidr, 24),
                ("azure.db_subnet_cidr", azure.db_subnet_cidr, 28),
            ] {
                if !azure.vnet_cidr.contains(&subnet) {
                    return self.invalid(
                        path,
                        format!(
                            "`{path}` is `{subnet}`, expected a block inside `azure.vnet_cidr` (`{}`)",
                            azure.vnet_cidr
                        ),
                    );
                }
                if subnet.prefix() > max {
                    return self.invalid(
                        path,
                        format!("`{path}` is `{subnet}`, expected a block of /{max} or larger"),
                    );
                }
            }
            self.disjoint(&[
                ("azure.node_subnet_cidr", azure.node_subnet_cidr),
                ("azure.db_subnet_cidr", azure.db_subnet_cidr),
            ])?;
        }
        for (field, value) in [
            ("subnet_id", &existing.subnet_id),
            ("cluster_id", &existing.cluster_id),
        ] {
            if value.is_some() && existing.vnet_id.is_none() {
                return self.invalid(
                    &format!("azure.existing.{field}"),
                    format!("`azure.existing.{field}` is set without `azure.existing.vnet_id`, expected the virtual network it belongs to"),
                );
            }
        }
        // The storage account admits the nodes' subnet: with the user's cluster, that is
        // the subnet its nodes run in, which must be named.
        if existing.cluster_id.is_some() && existing.subnet_id.is_none() {
            return self.invalid(
                "azure.existing.cluster_id",
                "`azure.existing.cluster_id` is set without `azure.existing.subnet_id`, expected \
                 the subnet its nodes run in (the storage account admits that subnet)"
                    .to_string(),
            );
        }
        for (field, value, segment) in [
            (
                "vnet_id",
                &existing.vnet_id,
                "/providers/microsoft.network/virtualnetworks/",
            ),
            ("subnet_id", &existing.subnet_id, "/subnets/"),
            (
                "cluster_id",
                &existing.cluster_id,
                "/providers/microsoft.containerservice/managedclusters/",
            ),
        ] {
            if let Some(value) = value {
                let lower = value.to_ascii_lowercase();
                let path = format!("azure.existing.{field}");
                self.expect(
                    lower.starts_with("/subscriptions/") && lower.contains(segment),
                    &path,
                    value,
                    &format!("an Azure resource ID starting with `/subscriptions/` and containing `{segment}`"),
                )?;
            }
        }
        self.expect(
            azure.vm_size.starts_with("Standard_"),
            "azure.vm_size",
            &azure.vm_size,
            "a VM size such as `Standard_D4s_v5`",
        )?;
        self.expect(
            azure.db_sku_parts().is_some(),
            "azure.db_sku",
            &azure.db_sku,
            "a Flexible Server SKU such as `GP_Standard_D2s_v3` (tier prefix `B_`, `GP_` or `MO_`)",
        )?;
        for (i, ip) in azure.storage_allow_ips.iter().enumerate() {
            self.expect(
                public_ipv4_range(ip),
                &format!("azure.storage_allow_ips[{i}]"),
                ip,
                "a public IPv4 address or range such as `203.0.113.7` or `203.0.113.0/24` \
                 (Azure storage admits no private range by IP, and no /31 or /32)",
            )?;
        }
        let size = self.config.database.storage_gb;
        if !AZURE_STORAGE_SIZES_GB.contains(&size) {
            return self.invalid(
                "database.storage_gb",
                format!(
                    "`database.storage_gb` is `{size}`, expected a size PostgreSQL flexible server \
                     accepts on Azure: {}",
                    AZURE_STORAGE_SIZES_GB.map(|s| s.to_string()).join(", ")
                ),
            );
        }
        // Overlay networking: pods and services live outside the virtual network, and
        // apart from it and from each other.
        let mut ranges = vec![
            ("azure.pod_cidr", azure.pod_cidr),
            ("azure.service_cidr", azure.service_cidr),
        ];
        if existing.vnet_id.is_none() {
            ranges.insert(0, ("azure.vnet_cidr", azure.vnet_cidr));
        }
        self.cidr_block("azure.pod_cidr", azure.pod_cidr, 8, 24)?;
        self.cidr_block("azure.service_cidr", azure.service_cidr, 8, 24)?;
        self.disjoint(&ranges)?;
        // Azure allows 20 federated credentials per identity. Up to 20 project × domain
        // pairs share one task identity; past that each domain gets its own, which needs
        // one credential per project.
        let flyte = &self.config.flyte;
        let pairs = flyte.projects.len() * flyte.domains.len();
        if pairs > AZURE_MAX_FEDERATED && flyte.projects.len() > AZURE_MAX_FEDERATED {
            return self.invalid(
                "flyte.projects",
                format!(
                    "{} projects need {} federated credentials on each domain's task identity, \
                     expected at most {AZURE_MAX_FEDERATED} (the Azure limit per managed identity)",
                    flyte.projects.len(),
                    flyte.projects.len()
                ),
            );
        }
        Ok(())
    }

    /// A block with a prefix in `min..=max` inside a private address range.
    fn cidr_block(&self, path: &str, cidr: Ipv4Cidr, min: u8, max: u8) -> Result {
        if !(min..=max).contains(&cidr.prefix()) {
            return self.invalid(
                path,
                format!("`{path}` is `{cidr}`, expected a prefix from /{min} to /{max}"),
            );
        }
        let private = [
            Ipv4Cidr::known([10, 0, 0, 0], 8),
            Ipv4Cidr::known([172, 16, 0, 0], 12),
            Ipv4Cidr::known([192, 168, 0, 0], 16),
            Ipv4Cidr::known([100, 64, 0, 0], 10),
        ];
        if !private.iter().any(|p| p.contains(&cidr)) {
            return self.invalid(
                path,
                format!("`{path}` is `{cidr}`, expected a private range inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10"),
            );
        }
        Ok(())
    }

    /// No two blocks overlap; the error points at the later one.
    fn disjoint(&self, blocks: &[(&str, Ipv4Cidr)]) -> Result {
        for (i, (path, cidr)) in blocks.iter().enumerate() {
            for (other_path, other) in &blocks[..i] {
                if cidr.overlaps(other) {
                    return self.invalid(
                        path,
                        format!("`{path}` (`{cidr}`) overlaps `{other_path}` (`{other}`), expected disjoint ranges"),
                    );
                }
            }
        }
        Ok(())
    }

    fn database(&self, db: &DatabaseConfig) -> Result {
        let v = &db.engine_version;
        self.expect(
            !v.is_empty()
                && v.len() <= 3
                && !v.starts_with('0')
                && v.bytes().all(|b| b.is_ascii_digit()),
            "database.engine_version",
            v,
            "a plain PostgreSQL major version such as `\"16\"` (no minor version)",
        )?;
        for (path, ident, what) in [
            ("database.name", &db.name, "database"),
            ("database.username", &db.username, "user"),
        ] {
            let ok = (1..=MAX_LABEL).contains(&ident.len())
                && ident.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && ident
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !ident.starts_with("pg_");
            self.expect(
                ok,
                path,
                ident,
                &format!("a PostgreSQL {what} name: lowercase letters, digits and `_`, starting with a letter, at most 63, not starting with `pg_`"),
            )?;
        }
        const RESERVED_DBS: [&str; 5] = [
            "postgres",
            "template0",
            "template1",
            "azure_maintenance",
            "azure_sys",
        ];
        if RESERVED_DBS.contains(&db.name.as_str()) {
            return self.invalid(
                "database.name",
                format!("`database.name` is `{}`, a database the cloud reserves, expected another name such as `flyte`", db.name),
            );
        }
        const RESERVED_USERS: [&str; 12] = [
            "postgres",
            "admin",
            "administrator",
            "root",
            "guest",
            "public",
            "azure_superuser",
            "azure_pg_admin",
            "rdsadmin",
            "rds_superuser",
            "cloudsqladmin",
            "cloudsqlsuperuser",
        ];
        if RESERVED_USERS.contains(&db.username.as_str()) {
            return self.invalid(
                "database.username",
                format!("`database.username` is `{}`, a name some clouds reserve, expected another name such as `flyte`", db.username),
            );
        }
        self.range(
            "database.storage_gb",
            db.storage_gb,
            32,
            16_384,
            "GiB (a range every cloud accepts)",
        )?;
        self.range(
            "database.backup_retention_days",
            db.backup_retention_days,
            7,
            35,
            "days (a range every cloud accepts)",
        )
    }

    fn range(&self, path: &str, value: u32, min: u32, max: u32, unit: &str) -> Result {
        if (min..=max).contains(&value) {
            Ok(())
        } else {
            self.invalid(
                path,
                format!("`{path}` is {value}, expected {min} to {max} {unit}"),
            )
        }
    }

    fn storage(&self, storage: &StorageConfig) -> Result {
        for (path, name) in [
            ("storage.metadata_bucket", &storage.metadata_bucket),
            ("storage.data_bucket", &storage.data_bucket),
        ] {
            if let Some(name) = name {
                let ok =
                    (3..=MAX_LABEL).contains(&name.len()) && is_label(name) && !name.contains("--");
                self.expect(
                    ok,
                    path,
                    name,
                    "3 to 63 lowercase letters, digits or single hyphens, starting and ending with a letter or digit (valid for S3, GCS and Azure containers)",
                )?;
            }
        }
        if storage.data_bucket.is_some() && !storage.separate_data_bucket {
            return self.invalid(
                "storage.data_bucket",
                "`storage.data_bucket` is set but `storage.separate_data_bucket` is false, expected `separate_data_bucket: true` or no `data_bucket`".to_owned(),
            );
        }
        if storage.separate_data_bucket
            && storage.data_bucket.is_some()
            && storage.data_bucket == storage.metadata_bucket
        {
            return self.invalid(
                "storage.data_bucket",
                "`storage.data_bucket` equals `storage.metadata_bucket`, expected two different buckets (or `separate_data_bucket: false`)".to_owned(),
            );
        }
        if let Some(days) = storage.raw_data_expiry_days {
            self.range("storage.raw_data_expiry_days", days, 1, 36_500, "days")?;
        }
        Ok(())
    }

    fn cluster(&self, cluster: &ClusterConfig) -> Result {
        let v = &cluster.version;
        let ok = v.strip_prefix("1.").is_some_and(|minor| {
            (1..=3).contains(&minor.len())
                && !minor.starts_with('0')
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
        self.expect(
            ok,
            "cluster.version",
            v,
            "a Kubernetes minor version such as `\"1.33\"`",
        )?;
        let n = cluster.nodes;
        if n.max == 0 || n.max > 1000 {
            return self.invalid(
                "cluster.nodes.max",
                format!("`cluster.nodes.max` is {}, expected 1 to 1000", n.max),
            );
        }
        if n.min > n.max {
            return self.invalid(
                "cluster.nodes.min",
                format!(
                    "`cluster.nodes.min` ({}) is greater than `cluster.nodes.max` ({}), expected min <= desired <= max",
                    n.min, n.max
                ),
            );
        }
        if let Some(desired) = n.desired
            && !(n.min..=n.max).contains(&desired)
        {
            return self.invalid(
                "cluster.nodes.desired",
                format!(
                    "`cluster.nodes.desired` ({desired}) is outside min {} to max {}, expected min <= desired <= max",
                    n.min, n.max
                ),
            );
        }
        Ok(())
    }

    fn flyte(&self, flyte: &FlyteConfig) -> Result {
        let cv = &flyte.chart_version;
        let major = cv
            .strip_prefix('v')
            .unwrap_or(cv)
            .split(['.', '-', '+'])
            .next()
            .unwrap_or("");
        self.expect(
            is_semver(cv),
            "flyte.chart_version",
            cv,
            "a pinned chart version such as `v1.16.8`",
        )?;
        self.expect(
            major == "1",
            "flyte.chart_version",
            cv,
            "a Flyte 1 chart version such as `v1.16.8` (the Flyte 2 charts take different values)",
        )?;
        let tag = &flyte.image_tag;
        let ok = (1..=128).contains(&tag.len())
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && tag != "latest";
        self.expect(
            ok,
            "flyte.image_tag",
            tag,
            "a pinned image tag such as `v1.16.8` (not `latest`)",
        )?;
        for (path, value, max) in [
            ("flyte.namespace", &flyte.namespace, MAX_LABEL),
            ("flyte.release", &flyte.release, MAX_RELEASE),
            ("flyte.service_account", &flyte.service_account, MAX_LABEL),
        ] {
            self.expect(
                is_label(value) && value.len() <= max,
                path,
                value,
                &format!("a DNS label: lowercase letters, digits and hyphens, starting and ending with a letter or digit, at most {max} characters"),
            )?;
        }
        for (list, names) in [("projects", &flyte.projects), ("domains", &flyte.domains)] {
            let path = format!("flyte.{list}");
            if names.is_empty() {
                return self.invalid(
                    &path,
                    format!("`{path}` is empty, expected at least one name"),
                );
            }
            let mut seen = HashSet::new();
            for (i, name) in names.iter().enumerate() {
                let item = format!("{path}[{i}]");
                self.expect(
                    is_label(name) && name.len() <= MAX_LABEL,
                    &item,
                    name,
                    "a DNS label: lowercase letters, digits and hyphens, starting and ending with a letter or digit",
                )?;
                if !seen.insert(name) {
                    return self.invalid(
                        &item,
                        format!("`{name}` is listed twice in `{path}`, expected distinct names"),
                    );
                }
            }
        }
        let longest_domain = flyte.domains.iter().map(String::len).max().unwrap_or(0);
        for (i, project) in flyte.projects.iter().enumerate() {
            if project.len() + 1 + longest_domain > MAX_LABEL {
                let domain = flyte
                    .domains
                    .iter()
                    .find(|d| d.len() == longest_domain)
                    .map_or("", String::as_str);
                let ns = format!("{project}-{domain}");
                return self.invalid(
                    &format!("flyte.projects[{i}]"),
                    format!(
                        "namespace `{ns}` is {} characters, expected at most {MAX_LABEL} (shorten the project or domain)",
                        ns.len()
                    ),
                );
            }
        }
        const SYSTEM: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];
        if SYSTEM.contains(&flyte.namespace.as_str()) {
            return self.invalid(
                "flyte.namespace",
                format!("`flyte.namespace` is `{}`, a Kubernetes system namespace, expected a namespace of its own such as `flyte`", flyte.namespace),
            );
        }
        for (i, project) in flyte.projects.iter().enumerate() {
            for domain in &flyte.domains {
                let ns = format!("{project}-{domain}");
                if ns == flyte.namespace || SYSTEM.contains(&ns.as_str()) {
                    return self.invalid(
                        &format!("flyte.projects[{i}]"),
                        format!("task namespace `{ns}` collides with the namespace `{ns}` used by {}, expected distinct namespaces", if ns == flyte.namespace { "the Flyte backend" } else { "Kubernetes" }),
                    );
                }
            }
        }
        Ok(())
    }

    fn state(&self, state: &StateConfig) -> Result {
        let StateConfig::Local(local) = state;
        if local.path.as_os_str().is_empty() {
            return self.invalid(
                "state.local.path",
                "`state.local.path` is empty, expected a directory such as `.flyteinfra`"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_aws_region(s: &str) -> bool {
    // `us-east-1`, `ap-southeast-2`, `us-gov-west-1`, `eu-central-2`.
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn is_gcp_region(s: &str) -> bool {
    // `us-central1`, `europe-west4`, `northamerica-northeast1`.
    let Some((area, rest)) = s.split_once('-') else {
        return false;
    };
    let digits = rest.trim_start_matches(|c: char| c.is_ascii_lowercase());
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_lowercase())
        && digits.len() < rest.len()
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_gcp_name(s: &str) -> bool {
    if s.starts_with("projects/") {
        return !s.contains(char::is_whitespace);
    }
    (1..=MAX_LABEL).contains(&s.len())
        && is_label(s)
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|hex| {
        (8..=17).contains(&hex.len())
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// `m7i.xlarge`, or with `prefix` `db.t3.medium`.
fn is_dotted_type(s: &str, prefix: Option<&str>) -> bool {
    let rest = match prefix {
        Some(p) => match s.strip_prefix(p) {
            Some(r) => r,
            None => return false,
        },
        None => s,
    };
    let Some((family, size)) = rest.split_once('.') else {
        return false;
    };
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    ok(family) && ok(size)
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_semver(s: &str) -> bool {
    let core = s.strip_prefix('v').unwrap_or(s);
    let (core, pre) = match core.split_once(['-', '+']) {
        Some((c, p)) => (c, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && pre.is_none_or(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_helpers() {
        assert!(is_aws_region("us-east-1"));
        assert!(is_aws_region("us-gov-west-1"));
        assert!(!is_aws_region("us-east"));
        assert!(!is_aws_region("US-east-1"));
        assert!(is_gcp_region("us-central1"));
        assert!(is_gcp_region("northamerica-northeast1"));
        assert!(!is_gcp_region("us-central1-a"));
        assert!(!is_gcp_region("uscentral1"));
        assert!(is_guid("00000000-0000-0000-0000-000000000000"));
        assert!(!is_guid("0000-0000"));
        assert!(is_semver("v1.16.8"));
        assert!(is_semver("1.16.8-rc.1"));
        assert!(!is_semver("v1.16"));
        assert!(is_aws_id("vpc-0abc1234", "vpc-"));
        assert!(!is_aws_id("vpc-XYZ", "vpc-"));
        assert!(is_dotted_type("db.t3.medium", Some("db.")));
        assert!(!is_dotted_type("t3.medium", Some("db.")));
        assert!(is_label("flyte-backend"));
        assert!(!is_label("-x"));
    }
}

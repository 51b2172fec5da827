//! A single-cluster Flyte deployment on AWS (reference §2): VPC, EKS, RDS PostgreSQL, S3,
//! and IRSA roles for the backend and task service accounts.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Expr, ResourceSpec, Value};

use super::{Blueprint, BlueprintError, Facts, addr, hash_suffix, output, r, s};
use crate::config::{AwsConfig, Config, NatGateways, TaskTrust};

const MANAGED: &str = "arn:aws:iam::aws:policy/";

fn tags(name: &str, extra: &[(&str, &str)]) -> Expr {
    let mut m: BTreeMap<String, Expr> = BTreeMap::new();
    m.insert("Name".into(), s(name));
    m.insert("flyteinfra/deployment".into(), s(name));
    for (k, v) in extra {
        m.insert((*k).into(), s(v));
    }
    Expr::Map(m)
}

fn service_trust(service: &str) -> Expr {
    s(&format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{service}"}},"Action":"sts:AssumeRole"}}]}}"#
    ))
}

/// An IRSA trust policy: the cluster's OIDC provider may assume the role for exactly
/// `subjects` (or, with `like`, the wildcard pattern) with audience `sts.amazonaws.com`.
fn irsa_trust(oidc: &Address, subjects: &[String], like: bool) -> Expr {
    let op = if like { "StringLike" } else { "StringEquals" };
    let subs = serde_json::to_string(subjects).expect("strings serialize");
    Expr::Concat(vec![
        s(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":""#),
        r(oidc, "arn"),
        s(&format!(
            r#""}},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"{op}":{{""#
        )),
        r(oidc, "issuer"),
        s(r#":aud":"sts.amazonaws.com",""#),
        r(oidc, "issuer"),
        s(&format!(r#":sub":{subs}}}}}}}]}}"#)),
    ])
}

/// The S3 actions Flyte needs (reference §2.2), on exactly these buckets.
fn s3_policy(buckets: &[Address]) -> Expr {
    let mut parts = vec![s(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:DeleteObject*","s3:GetObject*","s3:ListBucket","s3:PutObject*"],"Resource":["#,
    )];
    for (i, b) in buckets.iter().enumerate() {
        if i > 0 {
            parts.push(s(","));
        }
        parts.push(s("\""));
        parts.push(r(b, "arn"));
        parts.push(s("\",\""));
        parts.push(r(b, "arn"));
        parts.push(s("/*\""));
    }
    parts.push(s("]}]}"));
    Expr::Concat(parts)
}

fn list(items: Vec<Expr>) -> Expr {
    Expr::List(items)
}

pub(super) fn expand(
    config: &Config,
    aws: &AwsConfig,
    facts: &Facts,
) -> Result<Blueprint, BlueprintError> {
    let name = config.name.as_str();
    let mut out = Vec::new();
    let zones = aws.zones();

    // Network: new VPC, or the user's.
    let net = match &aws.existing.vpc_id {
        Some(vpc) => Network {
            public: aws
                .existing
                .public_subnet_ids
                .iter()
                .map(|x| s(x))
                .collect(),
            private: aws
                .existing
                .private_subnet_ids
                .iter()
                .map(|x| s(x))
                .collect(),
            vpc: s(vpc),
            // The user's subnets route already; nothing of ours to wait for.
            private_routes: Vec::new(),
        },
        None => network(name, aws, &zones, &mut out),
    };
    let (public_subnets, private_subnets, vpc_id) = (&net.public, &net.private, &net.vpc);

    let cluster = addr("aws_eks_cluster", "main");
    if let Some(existing) = &aws.existing.cluster_name {
        out.push(ResourceSpec::existing(cluster.clone(), existing));
    } else {
        // The cluster's and the nodes' IAM roles exist only for a cluster flyteinfra makes.
        let cluster_role = addr("aws_iam_role", "cluster");
        out.push(
            ResourceSpec::managed(cluster_role.clone())
                .with("name", format!("{name}-eks-cluster"))
                .with("assume_role_policy", service_trust("eks.amazonaws.com"))
                .with(
                    "managed_policy_arns",
                    Value::from(vec![format!("{MANAGED}AmazonEKSClusterPolicy")]),
                )
                .with("tags", tags(name, &[])),
        );
        let node_role = addr("aws_iam_role", "node");
        out.push(
            ResourceSpec::managed(node_role.clone())
                .with("name", format!("{name}-eks-node"))
                .with("assume_role_policy", service_trust("ec2.amazonaws.com"))
                .with(
                    "managed_policy_arns",
                    Value::from(vec![
                        format!("{MANAGED}AmazonEKSWorkerNodePolicy"),
                        format!("{MANAGED}AmazonEC2ContainerRegistryReadOnly"),
                        format!("{MANAGED}AmazonEKS_CNI_Policy"),
                    ]),
                )
                .with("tags", tags(name, &[])),
        );
        let mut all_subnets = private_subnets.clone();
        all_subnets.extend(public_subnets.iter().cloned());
        // Nodes launched before their subnets route to the NAT gateway cannot reach the API
        // server or ECR, and the node group fails many minutes later: they wait for the routes.
        let mut node_group = ResourceSpec::managed(addr("aws_eks_node_group", "main"));
        for route in &net.private_routes {
            node_group = node_group.after(route);
        }
        out.push(
            ResourceSpec::managed(cluster.clone())
                .with("name", name)
                .with("version", config.cluster.version.as_str())
                .with("role_arn", r(&cluster_role, "arn"))
                .with("subnet_ids", list(all_subnets))
                .with("endpoint_public_access", true)
                .with("tags", tags(name, &[])),
        );
        let nodes = config.cluster.nodes;
        out.push(
            node_group
                .with("cluster_name", r(&cluster, "id"))
                .with("name", format!("{name}-nodes"))
                .with("node_role_arn", r(&node_role, "arn"))
                .with("subnet_ids", list(private_subnets.clone()))
                .with(
                    "instance_types",
                    Value::from(vec![aws.node_instance_type.clone()]),
                )
                .with("min_size", i64::from(nodes.min))
                .with("max_size", i64::from(nodes.max))
                .with("desired_size", i64::from(nodes.desired()))
                .with("tags", tags(name, &[])),
        );
    }

    let oidc = addr("aws_iam_openid_connect_provider", "eks");
    out.push(
        ResourceSpec::managed(oidc.clone())
            .with("url", r(&cluster, "oidc_issuer"))
            .with("client_ids", Value::from(vec!["sts.amazonaws.com"]))
            .with("tags", tags(name, &[])),
    );

    // Database.
    let password = addr("random_password", "db");
    out.push(ResourceSpec::managed(password.clone()).with("length", 32i64));
    // The group needs only the VPC and the rule alone waits for the cluster, so the
    // database (minutes) is made while the cluster (more minutes) is.
    let db_sg = addr("aws_security_group", "db");
    out.push(
        ResourceSpec::managed(db_sg.clone())
            .with("name", format!("{name}-db"))
            .with("description", "PostgreSQL from the EKS cluster only")
            .with("vpc_id", vpc_id.clone())
            .with("tags", tags(name, &[])),
    );
    out.push(
        ResourceSpec::managed(addr(
            "aws_vpc_security_group_ingress_rule",
            "db_from_cluster",
        ))
        .with("security_group_id", r(&db_sg, "id"))
        .with("ip_protocol", "tcp")
        .with("from_port", 5432i64)
        .with("to_port", 5432i64)
        .with(
            "referenced_security_group_id",
            r(&cluster, "cluster_security_group_id"),
        )
        .with("tags", tags(name, &[])),
    );
    let subnet_group = addr("aws_db_subnet_group", "main");
    out.push(
        ResourceSpec::managed(subnet_group.clone())
            .with("name", format!("{name}-db"))
            .with("subnet_ids", list(private_subnets.clone()))
            .with("tags", tags(name, &[])),
    );
    let db = addr("aws_db_instance", "main");
    let dbc = &config.database;
    out.push(
        ResourceSpec::managed(db.clone())
            .with("identifier", format!("{name}-db"))
            .with("engine", "postgres")
            .with("engine_version", dbc.engine_version.as_str())
            .with("instance_class", aws.db_instance_class.as_str())
            .with("allocated_storage", i64::from(dbc.storage_gb))
            .with("db_name", dbc.name.as_str())
            .with("username", dbc.username.as_str())
            .with("password", r(&password, "result"))
            .with("db_subnet_group_name", r(&subnet_group, "id"))
            .with("vpc_security_group_ids", list(vec![r(&db_sg, "id")]))
            .with("storage_encrypted", true)
            .with("publicly_accessible", false)
            .with(
                "backup_retention_period",
                i64::from(dbc.backup_retention_days),
            )
            .with("deletion_protection", dbc.deletion_protection)
            .with("final_snapshot_identifier", format!("{name}-db-final"))
            .with("tags", tags(name, &[])),
    );

    // Buckets.
    let st = &config.storage;
    let metadata = addr("aws_s3_bucket", "metadata");
    let meta_name = st
        .metadata_bucket
        .clone()
        .unwrap_or_else(|| bucket_name(name, facts, &aws.region, "metadata"));
    out.push(bucket(&metadata, &meta_name, aws, name, None).force_destroy(st.force_destroy));
    let mut buckets = vec![metadata.clone()];
    let data = if st.separate_data_bucket {
        let data = addr("aws_s3_bucket", "data");
        let data_name = st
            .data_bucket
            .clone()
            .unwrap_or_else(|| bucket_name(name, facts, &aws.region, "data"));
        out.push(
            bucket(&data, &data_name, aws, name, st.raw_data_expiry_days)
                .force_destroy(st.force_destroy),
        );
        buckets.push(data.clone());
        data
    } else {
        metadata.clone()
    };

    // Workload identities (IRSA).
    let fl = &config.flyte;
    // One backend role, trusted by exactly the service accounts the chart runs the
    // storage-touching backend under (one for flyte-binary, three for flyte-core).
    let backend_subjects: Vec<String> = fl
        .backend_service_accounts()
        .iter()
        .map(|sa| format!("system:serviceaccount:{}:{sa}", fl.namespace))
        .collect();
    // At most three subjects of DNS labels: far under IAM's limit (tested below), unlike
    // the task role's.
    let backend = addr("aws_iam_role", "flyte_backend");
    out.push(
        ResourceSpec::managed(backend.clone())
            .with("name", format!("{name}-flyte-backend"))
            .with(
                "assume_role_policy",
                irsa_trust(&oidc, &backend_subjects, false),
            )
            .with("inline_policy", s3_policy(&buckets))
            .with("tags", tags(name, &[])),
    );
    let (task_subjects, like) = match fl.task_trust {
        TaskTrust::Enumerated => (
            fl.task_namespaces()
                .iter()
                .map(|ns| format!("system:serviceaccount:{ns}:default"))
                .collect(),
            false,
        ),
        TaskTrust::Wildcard => (vec!["system:serviceaccount:*:default".to_string()], true),
    };
    let size = trust_policy_size(&task_subjects, like, &aws.region);
    if size > TRUST_POLICY_LIMIT {
        return Err(BlueprintError::TrustPolicyTooLarge {
            subjects: task_subjects.len(),
            size,
            limit: TRUST_POLICY_LIMIT,
        });
    }
    let tasks = addr("aws_iam_role", "flyte_tasks");
    out.push(
        ResourceSpec::managed(tasks.clone())
            .with("name", format!("{name}-flyte-tasks"))
            .with(
                "assume_role_policy",
                irsa_trust(&oidc, &task_subjects, like),
            )
            .with("inline_policy", s3_policy(&buckets))
            .with("tags", tags(name, &[])),
    );

    let outputs = vec![
        output("region", s(&aws.region), false),
        output("cluster_name", r(&cluster, "id"), false),
        output("cluster_arn", r(&cluster, "arn"), false),
        output("cluster_endpoint", r(&cluster, "endpoint"), false),
        output("cluster_ca", r(&cluster, "certificate_authority"), false),
        output("db_host", r(&db, "address"), false),
        output("db_port", r(&db, "port"), false),
        output("db_name", s(&dbc.name), false),
        output("db_username", s(&dbc.username), false),
        output("db_password", r(&password, "result"), true),
        output("metadata_bucket", r(&metadata, "id"), false),
        output("data_bucket", r(&data, "id"), false),
        output("backend_role_arn", r(&backend, "arn"), false),
        output("task_role_arn", r(&tasks, "arn"), false),
    ];
    Ok(Blueprint {
        resources: out,
        outputs,
    })
}

/// IAM's default limit on a role's trust policy, in characters (whitespace excluded).
const TRUST_POLICY_LIMIT: usize = 2048;

/// The length of an IRSA role's trust policy once the OIDC provider's ARN and issuer are
/// known (their lengths are fixed by AWS: a 32-character cluster id).
fn trust_policy_size(subjects: &[String], like: bool, region: &str) -> usize {
    let issuer = format!("oidc.eks.{region}.amazonaws.com/id/{}", "0".repeat(32));
    let arn = format!("arn:aws:iam::000000000000:oidc-provider/{issuer}");
    let op = if like { "StringLike" } else { "StringEquals" };
    let subs = serde_json::to_string(subjects).expect("strings serialize");
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Federated":"{arn}"}},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"{op}":{{"{issuer}:aud":"sts.amazonaws.com","{issuer}:sub":{subs}}}}}}}]}}"#
    )
    .len()
}

/// `<deployment>-<account>-<region>-<purpose>`: S3 names are global, so the account and
/// region make them unique. Over S3's 63 characters, account and region become a hash.
fn bucket_name(name: &str, facts: &Facts, region: &str, purpose: &str) -> String {
    let full = format!("{name}-{}-{region}-{purpose}", facts.account_id);
    if full.len() <= 63 {
        return full;
    }
    let h = hash_suffix(&format!("{}{region}", facts.account_id));
    format!("{name}-{h}-{purpose}")
}

fn bucket(
    a: &Address,
    bucket: &str,
    aws: &AwsConfig,
    name: &str,
    expiry: Option<u32>,
) -> ResourceSpec {
    let mut spec = ResourceSpec::managed(a.clone())
        .with("bucket", bucket)
        .with("region", aws.region.as_str())
        .with("versioning", true)
        .with("encryption", "AES256")
        .with("block_public_access", true)
        .with("tags", tags(name, &[]));
    if let Some(days) = expiry {
        spec = spec.with("expire_after_days", i64::from(days));
    }
    spec
}

/// VPC, public and private subnets per zone, internet gateway, NAT gateway(s), routes.
/// The network the rest of the stack uses.
struct Network {
    public: Vec<Expr>,
    private: Vec<Expr>,
    vpc: Expr,
    /// flyteinfra's route tables of the private subnets (the NAT routes), if it made them.
    private_routes: Vec<Address>,
}

fn network(name: &str, aws: &AwsConfig, zones: &[String], out: &mut Vec<ResourceSpec>) -> Network {
    let vpc = addr("aws_vpc", "main");
    out.push(
        ResourceSpec::managed(vpc.clone())
            .with("cidr_block", aws.vpc_cidr.to_string())
            .with("enable_dns_hostnames", true)
            .with("tags", tags(name, &[])),
    );
    let igw = addr("aws_internet_gateway", "main");
    out.push(
        ResourceSpec::managed(igw.clone())
            .with("vpc_id", r(&vpc, "id"))
            .with("tags", tags(name, &[])),
    );
    let base = aws.vpc_cidr.prefix();
    let (mut public, mut private) = (Vec::new(), Vec::new());
    for (i, zone) in zones.iter().enumerate() {
        let i32_ = i as u32;
        // Public /24-sized subnets at the start of the range; private ones take the larger
        // blocks after it (pods use VPC IPs, so they need the room).
        let pub_cidr = aws
            .vpc_cidr
            .subnet(base + 8, i32_)
            .expect("validated VPC size");
        let priv_cidr = aws
            .vpc_cidr
            .subnet(base + 4, i32_ + 1)
            .expect("validated VPC size");
        let p = addr("aws_subnet", &format!("public_{i}"));
        out.push(
            ResourceSpec::managed(p.clone())
                .with("vpc_id", r(&vpc, "id"))
                .with("cidr_block", pub_cidr.to_string())
                .with("availability_zone", zone.as_str())
                .with("map_public_ip_on_launch", true)
                .with("tags", tags(name, &[("kubernetes.io/role/elb", "1")])),
        );
        let q = addr("aws_subnet", &format!("private_{i}"));
        out.push(
            ResourceSpec::managed(q.clone())
                .with("vpc_id", r(&vpc, "id"))
                .with("cidr_block", priv_cidr.to_string())
                .with("availability_zone", zone.as_str())
                .with("map_public_ip_on_launch", false)
                .with(
                    "tags",
                    tags(name, &[("kubernetes.io/role/internal-elb", "1")]),
                ),
        );
        public.push(p);
        private.push(q);
    }
    let nats = match aws.nat_gateways {
        NatGateways::Single => 1,
        NatGateways::PerAz => zones.len(),
    };
    let mut nat_addrs = Vec::new();
    for (i, public_subnet) in public.iter().enumerate().take(nats) {
        let eip = addr("aws_eip", &format!("nat_{i}"));
        out.push(ResourceSpec::managed(eip.clone()).with("tags", tags(name, &[])));
        let nat = addr("aws_nat_gateway", &format!("nat_{i}"));
        out.push(
            ResourceSpec::managed(nat.clone())
                .with("subnet_id", r(public_subnet, "id"))
                .with("allocation_id", r(&eip, "id"))
                .with("tags", tags(name, &[])),
        );
        nat_addrs.push(nat);
    }
    out.push(
        ResourceSpec::managed(addr("aws_route_table", "public"))
            .with("vpc_id", r(&vpc, "id"))
            .with("gateway_id", r(&igw, "id"))
            .with(
                "subnet_ids",
                list(public.iter().map(|p| r(p, "id")).collect()),
            )
            .with("tags", tags(name, &[])),
    );
    let mut private_routes = Vec::new();
    for (i, q) in private.iter().enumerate() {
        let nat = &nat_addrs[i.min(nat_addrs.len() - 1)];
        let table = addr("aws_route_table", &format!("private_{i}"));
        private_routes.push(table.clone());
        out.push(
            ResourceSpec::managed(table)
                .with("vpc_id", r(&vpc, "id"))
                .with("nat_gateway_id", r(nat, "id"))
                .with("subnet_ids", list(vec![r(q, "id")]))
                .with("tags", tags(name, &[])),
        );
    }
    Network {
        public: public.iter().map(|p| r(p, "id")).collect(),
        private: private.iter().map(|p| r(p, "id")).collect(),
        vpc: r(&vpc, "id"),
        private_routes,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn config(flyte: &str) -> Config {
        Config::parse(
            &format!("name: demo\ncloud: aws\naws:\n  region: us-east-1\nflyte:\n{flyte}"),
            Path::new("t.yaml"),
        )
        .unwrap()
    }

    /// The backend role's trust policy: its operator and the exact set of `sub` values.
    fn backend_trust(c: &Config) -> (String, BTreeSet<String>) {
        let bp = expand(c, c.aws.as_ref().unwrap(), &Facts::offline()).unwrap();
        let role = bp
            .resources
            .iter()
            .find(|r| r.address.to_string() == "aws_iam_role.flyte_backend")
            .expect("aws_iam_role.flyte_backend");
        let Expr::Concat(parts) = &role.attributes["assume_role_policy"] else {
            panic!(
                "not a document: {:?}",
                role.attributes["assume_role_policy"]
            );
        };
        let text: String = parts
            .iter()
            .map(|p| match p {
                Expr::Value(v) => v.as_str().unwrap().to_string(),
                // The OIDC provider's ARN and issuer, known after apply.
                _ => "<ref>".to_string(),
            })
            .collect();
        let op = if text.contains(r#""StringEquals""#) {
            "StringEquals"
        } else {
            "StringLike"
        };
        let subs = text.split(r#":sub":"#).nth(1).expect("a sub condition");
        let subs = &subs[..=subs.find(']').unwrap()];
        let subs: Vec<String> = serde_json::from_str(subs).unwrap();
        let set: BTreeSet<String> = subs.iter().cloned().collect();
        assert_eq!(set.len(), subs.len(), "duplicate subjects: {subs:?}");
        (op.to_string(), set)
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_string()).collect()
    }

    #[test]
    fn the_backend_role_trusts_exactly_the_charts_backend_service_accounts() {
        // flyte-binary: the one pinned service account, whatever its name.
        let (op, subs) = backend_trust(&config("  service_account: my-backend\n"));
        assert_eq!(op, "StringEquals");
        assert_eq!(subs, set(&["system:serviceaccount:flyte:my-backend"]));
        let (_, subs) = backend_trust(&config("  projects: [p1]\n"));
        assert_eq!(subs, set(&["system:serviceaccount:flyte:flyte-backend"]));
        // flyte-core: the three components that touch storage, in the namespace; not
        // flytescheduler, not the flyte-binary service account.
        let (op, subs) = backend_trust(&config("  chart: flyte-core\n  namespace: flyte-prod\n"));
        assert_eq!(op, "StringEquals");
        assert_eq!(
            subs,
            set(&[
                "system:serviceaccount:flyte-prod:datacatalog",
                "system:serviceaccount:flyte-prod:flyteadmin",
                "system:serviceaccount:flyte-prod:flytepropeller",
            ])
        );
    }

    #[test]
    fn the_backend_trust_policy_fits_with_the_longest_names() {
        let ns = "n".repeat(63);
        let core: Vec<String> = crate::config::FLYTE_CORE_STORAGE_COMPONENTS
            .iter()
            .map(|sa| format!("system:serviceaccount:{ns}:{sa}"))
            .collect();
        let binary = vec![format!("system:serviceaccount:{ns}:{}", "s".repeat(63))];
        for subjects in [core, binary] {
            let size = trust_policy_size(&subjects, false, "ap-southeast-4");
            assert!(size <= TRUST_POLICY_LIMIT, "{size}");
        }
    }
}

//! A Flyte deployment on AWS (reference §2): VPC, EKS, RDS PostgreSQL, S3, and IRSA roles
//! for the backend and task service accounts. Multi-cluster adds an EKS cluster per data
//! plane (made like the control plane's), a flytepropeller role per plane and the
//! security-group rules between the control plane and each plane.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Expr, ResourceSpec, Value};

use super::{Blueprint, BlueprintError, Facts, addr, hash_suffix, output, r, s};
use crate::config::{
    AwsConfig, Config, DataPlaneConfig, NatGateways, NodeCounts, Style, TaskTrust,
};

const MANAGED: &str = "arn:aws:iam::aws:policy/";

/// The `flyte-core` components of a multi-cluster control plane that need an AWS identity
/// (flyteadmin and datacatalog touch storage; flytescheduler does not).
const CONTROL_PLANE_COMPONENTS: [&str; 2] = ["flyteadmin", "datacatalog"];

/// The one component of a data plane with an identity of its own (tasks share theirs).
const PROPELLER: &str = "flytepropeller";

/// The tags of every resource of deployment `name` (the sandbox's buckets' too), plus `extra`.
pub(super) fn tags(name: &str, extra: &[(&str, &str)]) -> Expr {
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
    irsa_trust_all(std::slice::from_ref(oidc), subjects, like)
}

/// [`irsa_trust`] for several clusters: one statement per OIDC provider, as a condition
/// key names its issuer.
fn irsa_trust_all(oidcs: &[Address], subjects: &[String], like: bool) -> Expr {
    let op = if like { "StringLike" } else { "StringEquals" };
    let subs = serde_json::to_string(subjects).expect("strings serialize");
    let mut parts = vec![s(r#"{"Version":"2012-10-17","Statement":["#)];
    for (i, oidc) in oidcs.iter().enumerate() {
        if i > 0 {
            parts.push(s(","));
        }
        parts.extend([
            s(r#"{"Effect":"Allow","Principal":{"Federated":""#),
            r(oidc, "arn"),
            s(&format!(
                r#""}},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{{"{op}":{{""#
            )),
            r(oidc, "issuer"),
            s(r#":aud":"sts.amazonaws.com",""#),
            r(oidc, "issuer"),
            s(&format!(r#":sub":{subs}}}}}}}"#)),
        ]);
    }
    parts.push(s("]}"));
    concat(parts)
}

/// `Expr::Concat` with adjacent literals joined, so a one-cluster policy is the same
/// expression it was before policies had several statements.
fn concat(parts: Vec<Expr>) -> Expr {
    let mut joined: Vec<Expr> = Vec::new();
    for part in parts {
        if let (Some(Expr::Value(prev)), Expr::Value(next)) = (joined.last(), &part)
            && let (Some(a), Some(b)) = (prev.as_str(), next.as_str())
        {
            let both = format!("{a}{b}");
            *joined.last_mut().expect("checked") = s(&both);
            continue;
        }
        joined.push(part);
    }
    Expr::Concat(joined)
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
    let (private_subnets, vpc_id) = (&net.private, &net.vpc);

    // The control plane (the only cluster of a single-cluster deployment), then one
    // cluster per data plane, all from the same code and in the same network.
    let mut roles = None;
    let Eks { cluster, oidc } = eks(
        &EksPlan {
            address: "main",
            oidc_address: "eks",
            name,
            nodes: config.cluster.nodes,
            instance_type: &aws.node_instance_type,
            existing: aws.existing.cluster_name.as_deref(),
        },
        config,
        &net,
        &mut roles,
        &mut out,
    );
    let multi = config.style == Style::MultiCluster;
    let planes: &[DataPlaneConfig] = if multi { &config.data_planes } else { &[] };
    let mut plane_eks = Vec::new();
    for p in planes {
        let address = p.address_name();
        let cloud_name = p.cluster_name(name);
        let plane = eks(
            &EksPlan {
                address: &address,
                oidc_address: &address,
                name: &cloud_name,
                nodes: p.nodes(&config.cluster),
                instance_type: p
                    .aws
                    .as_ref()
                    .and_then(|a| a.node_instance_type.as_deref())
                    .unwrap_or(&aws.node_instance_type),
                existing: p.existing.as_deref(),
            },
            config,
            &net,
            &mut roles,
            &mut out,
        );
        // The control plane (flyteadmin) calls the plane's API server; the plane
        // (flytepropeller) calls flyteadmin and datacatalog, whose gRPC container port is 8089.
        let (plane_sg, control_sg) = (
            r(&plane.cluster, "cluster_security_group_id"),
            r(&cluster, "cluster_security_group_id"),
        );
        out.push(ingress(
            &format!("{address}_api_from_control"),
            plane_sg.clone(),
            control_sg.clone(),
            443,
            name,
        ));
        out.push(ingress(
            &format!("control_from_{address}"),
            control_sg,
            plane_sg,
            8089,
            name,
        ));
        plane_eks.push(plane);
    }

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
    // The control plane's cluster only: data planes reach the database through flyteadmin.
    out.push(ingress(
        "db_from_cluster",
        r(&db_sg, "id"),
        r(&cluster, "cluster_security_group_id"),
        5432,
        name,
    ));
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
    let subject = |sa: &str| format!("system:serviceaccount:{}:{sa}", fl.namespace);
    // One backend role, trusted by exactly the service accounts the chart runs the
    // storage-touching backend under (one for flyte-binary, three for flyte-core), in the
    // one cluster; with data planes, only the control plane's components, in its cluster.
    let backend_subjects: Vec<String> = if multi {
        CONTROL_PLANE_COMPONENTS
            .iter()
            .map(|sa| subject(sa))
            .collect()
    } else {
        fl.backend_service_accounts()
            .iter()
            .map(|sa| subject(sa))
            .collect()
    };
    // At most three subjects of DNS labels: under IAM's default limit whatever the names
    // (tested below), unlike the task role's.
    debug_assert!(trust_policy_size(&backend_subjects, false, &aws.region) <= TRUST_POLICY_LIMIT);
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
    // Each plane's flytepropeller, in that plane's cluster only.
    let mut propellers = Vec::new();
    for (p, plane) in planes.iter().zip(&plane_eks) {
        let role = addr("aws_iam_role", &format!("{}_propeller", p.address_name()));
        out.push(
            ResourceSpec::managed(role.clone())
                .with("name", format!("{name}-{}-propeller", p.name))
                .with(
                    "assume_role_policy",
                    irsa_trust(&plane.oidc, &[subject(PROPELLER)], false),
                )
                .with("inline_policy", s3_policy(&buckets))
                .with("tags", tags(name, &[])),
        );
        propellers.push(role);
    }
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
    // Tasks run where flytepropeller runs: in every data plane, never in the control plane.
    let task_issuers: Vec<Address> = if multi {
        plane_eks.iter().map(|e| e.oidc.clone()).collect()
    } else {
        vec![oidc.clone()]
    };
    let size = trust_policy_size_n(task_issuers.len(), &task_subjects, like, &aws.region);
    let limit = aws.trust_policy_limit as usize;
    if size > limit {
        return Err(BlueprintError::TrustPolicyTooLarge {
            subjects: task_subjects.len(),
            clusters: task_issuers.len(),
            wildcard: like,
            size,
            limit,
        });
    }
    let tasks = addr("aws_iam_role", "flyte_tasks");
    out.push(
        ResourceSpec::managed(tasks.clone())
            .with("name", format!("{name}-flyte-tasks"))
            .with(
                "assume_role_policy",
                irsa_trust_all(&task_issuers, &task_subjects, like),
            )
            .with("inline_policy", s3_policy(&buckets))
            .with("tags", tags(name, &[])),
    );

    let mut outputs = vec![
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
    if multi {
        for component in CONTROL_PLANE_COMPONENTS {
            outputs.push(output(
                &format!("identity_{component}"),
                r(&backend, "arn"),
                false,
            ));
        }
    }
    for ((p, plane), propeller) in planes.iter().zip(&plane_eks).zip(&propellers) {
        let pre = p.output_prefix();
        let c = &plane.cluster;
        outputs.extend([
            output(&format!("{pre}cluster_name"), r(c, "id"), false),
            output(&format!("{pre}cluster_arn"), r(c, "arn"), false),
            output(&format!("{pre}cluster_endpoint"), r(c, "endpoint"), false),
            output(
                &format!("{pre}cluster_ca"),
                r(c, "certificate_authority"),
                false,
            ),
            output(
                &format!("{pre}identity_{PROPELLER}"),
                r(propeller, "arn"),
                false,
            ),
        ]);
    }
    Ok(Blueprint {
        resources: out,
        outputs,
        notes: Vec::new(),
    })
}

/// IAM's default limit on a role's trust policy, in characters (whitespace excluded):
/// `aws.trust_policy_limit`'s default.
const TRUST_POLICY_LIMIT: usize = 2048;

/// The length of a one-cluster IRSA trust policy (see [`trust_policy_size_n`]).
fn trust_policy_size(subjects: &[String], like: bool, region: &str) -> usize {
    trust_policy_size_n(1, subjects, like, region)
}

/// The length of the IRSA trust policy [`irsa_trust_all`] makes for `statements` clusters,
/// once the OIDC providers' ARNs and issuers are known (their lengths are fixed by AWS: a
/// 32-character cluster id). Measured on the document itself, so the two cannot disagree.
fn trust_policy_size_n(statements: usize, subjects: &[String], like: bool, region: &str) -> usize {
    let issuer = format!("oidc.eks.{region}.amazonaws.com/id/{}", "0".repeat(32));
    let arn = format!("arn:aws:iam::000000000000:oidc-provider/{issuer}");
    let oidcs: Vec<Address> = (0..statements)
        .map(|i| addr("aws_iam_openid_connect_provider", &format!("c{i}")))
        .collect();
    let Expr::Concat(parts) = irsa_trust_all(&oidcs, subjects, like) else {
        unreachable!("a trust policy is a concatenation");
    };
    parts
        .iter()
        .map(|p| match p {
            Expr::Value(v) => v.as_str().expect("literal parts are strings").len(),
            Expr::Ref(x) if x.attribute == "arn" => arn.len(),
            _ => issuer.len(),
        })
        .sum()
}

/// One EKS cluster of the deployment as [`eks`] makes (or reads) it.
struct EksPlan<'a> {
    /// Resource name of the cluster and its node group: `main`, or `dp_<plane>`.
    address: &'a str,
    /// Resource name of its OIDC provider: `eks` for the control plane (its name from
    /// before data planes), else `address`.
    oidc_address: &'a str,
    /// The cluster's cloud name.
    name: &'a str,
    nodes: NodeCounts,
    instance_type: &'a str,
    /// The name of a cluster to read instead of making one.
    existing: Option<&'a str>,
}

/// What the rest of the blueprint refers to of one cluster.
struct Eks {
    cluster: Address,
    oidc: Address,
}

/// The cluster's and the nodes' IAM roles, shared by every cluster flyteinfra makes.
struct NodeRoles {
    cluster: Address,
    node: Address,
}

/// One cluster, its node group and its OIDC provider. The IAM roles are made with the first
/// cluster flyteinfra makes (none when every cluster is an existing one).
fn eks(
    plan: &EksPlan,
    config: &Config,
    net: &Network,
    roles: &mut Option<NodeRoles>,
    out: &mut Vec<ResourceSpec>,
) -> Eks {
    let deployment = config.name.as_str();
    let cluster = addr("aws_eks_cluster", plan.address);
    if let Some(existing) = plan.existing {
        out.push(ResourceSpec::existing(cluster.clone(), existing));
    } else {
        let roles = roles.get_or_insert_with(|| node_roles(deployment, out));
        let mut all_subnets = net.private.clone();
        all_subnets.extend(net.public.iter().cloned());
        // Nodes launched before their subnets route to the NAT gateway cannot reach the API
        // server or ECR, and the node group fails many minutes later: they wait for the routes.
        let mut node_group = ResourceSpec::managed(addr("aws_eks_node_group", plan.address));
        for route in &net.private_routes {
            node_group = node_group.after(route);
        }
        out.push(
            ResourceSpec::managed(cluster.clone())
                .with("name", plan.name)
                .with("version", config.cluster.version.as_str())
                .with("role_arn", r(&roles.cluster, "arn"))
                .with("subnet_ids", list(all_subnets))
                .with("endpoint_public_access", true)
                .with("tags", tags(deployment, &[])),
        );
        let nodes = plan.nodes;
        out.push(
            node_group
                .with("cluster_name", r(&cluster, "id"))
                .with("name", format!("{}-nodes", plan.name))
                .with("node_role_arn", r(&roles.node, "arn"))
                .with("subnet_ids", list(net.private.clone()))
                .with("instance_types", Value::from(vec![plan.instance_type]))
                .with("min_size", i64::from(nodes.min))
                .with("max_size", i64::from(nodes.max))
                .with("desired_size", i64::from(nodes.desired()))
                .with("tags", tags(deployment, &[])),
        );
    }
    let oidc = addr("aws_iam_openid_connect_provider", plan.oidc_address);
    out.push(
        ResourceSpec::managed(oidc.clone())
            .with("url", r(&cluster, "oidc_issuer"))
            .with("client_ids", Value::from(vec!["sts.amazonaws.com"]))
            .with("tags", tags(deployment, &[])),
    );
    Eks { cluster, oidc }
}

fn node_roles(name: &str, out: &mut Vec<ResourceSpec>) -> NodeRoles {
    let cluster = addr("aws_iam_role", "cluster");
    out.push(
        ResourceSpec::managed(cluster.clone())
            .with("name", format!("{name}-eks-cluster"))
            .with("assume_role_policy", service_trust("eks.amazonaws.com"))
            .with(
                "managed_policy_arns",
                Value::from(vec![format!("{MANAGED}AmazonEKSClusterPolicy")]),
            )
            .with("tags", tags(name, &[])),
    );
    let node = addr("aws_iam_role", "node");
    out.push(
        ResourceSpec::managed(node.clone())
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
    NodeRoles { cluster, node }
}

/// `aws_vpc_security_group_ingress_rule.<rule>`: `group` admits tcp `port` from members of
/// `from`.
fn ingress(rule: &str, group: Expr, from: Expr, port: i64, name: &str) -> ResourceSpec {
    ResourceSpec::managed(addr("aws_vpc_security_group_ingress_rule", rule))
        .with("security_group_id", group)
        .with("ip_protocol", "tcp")
        .with("from_port", port)
        .with("to_port", port)
        .with("referenced_security_group_id", from)
        .with("tags", tags(name, &[]))
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

    // Multi-cluster.

    /// A control plane and two data planes: `gpu` made with overrides, `old` an existing
    /// cluster.
    fn multi(aws_extra: &str, flyte: &str, planes: &str) -> Config {
        // An existing plane's cluster is in an existing VPC, which all clusters then share.
        let (planes, vpc) = if planes.is_empty() {
            (
                "  - name: gpu\n    nodes: {min: 0, max: 8, desired: 1}\n    aws: {node_instance_type: g5.xlarge}\n  - name: old\n    existing: legacy-eks\n",
                "  existing:\n    vpc_id: vpc-0123456789abcdef0\n    public_subnet_ids: [subnet-0000000000000000a, subnet-0000000000000000b]\n    private_subnet_ids: [subnet-0000000000000000c, subnet-0000000000000000d]\n",
            )
        } else {
            (planes, "")
        };
        let aws_extra = format!("{vpc}{aws_extra}");
        Config::parse(
            &format!(
                "name: demo\ncloud: aws\nstyle: multi-cluster\naws:\n  region: us-east-1\n{aws_extra}\
                 control_plane: {{admin_endpoint: a.b:81, catalog_endpoint: c.d:89}}\n\
                 data_planes:\n{planes}flyte:\n  namespace: fl\n{flyte}"
            ),
            Path::new("t.yaml"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn expanded(c: &Config) -> Blueprint {
        expand(c, c.aws.as_ref().unwrap(), &Facts::offline()).unwrap()
    }

    fn of_type<'a>(bp: &'a Blueprint, t: &str) -> Vec<&'a ResourceSpec> {
        bp.resources
            .iter()
            .filter(|r| r.address.type_name() == t)
            .collect()
    }

    fn get<'a>(bp: &'a Blueprint, address: &str) -> &'a ResourceSpec {
        bp.resources
            .iter()
            .find(|r| r.address.to_string() == address)
            .unwrap_or_else(|| panic!("no {address}"))
    }

    fn names(specs: &[&ResourceSpec]) -> BTreeSet<String> {
        specs.iter().map(|r| r.address.name().to_string()).collect()
    }

    fn refers(e: &Expr, address: &str, attribute: &str) -> bool {
        matches!(e, Expr::Ref(x) if x.address.to_string() == address && x.attribute == attribute)
    }

    /// One statement of a trust policy: whose OIDC provider, the operator and the `sub`
    /// values; the `aud` condition is checked on the way.
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    struct Trust {
        provider: String,
        op: String,
        subs: BTreeSet<String>,
    }

    /// A role's trust policy as statements, its references written out as `{address}`.
    fn trusts(role: &ResourceSpec) -> Vec<Trust> {
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
                Expr::Ref(x) => format!("{{{}.{}}}", x.address, x.attribute),
                other => panic!("{other:?}"),
            })
            .collect();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut out = Vec::new();
        for st in doc["Statement"].as_array().unwrap() {
            assert_eq!(st["Effect"], "Allow");
            assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
            let arn = st["Principal"]["Federated"].as_str().unwrap();
            let provider = arn
                .strip_prefix('{')
                .and_then(|a| a.strip_suffix(".arn}"))
                .unwrap()
                .to_string();
            let cond = st["Condition"].as_object().unwrap();
            assert_eq!(cond.len(), 1);
            let (op, keys) = cond.iter().next().unwrap();
            let issuer = format!("{{{provider}.issuer}}");
            assert_eq!(keys[format!("{issuer}:aud")], "sts.amazonaws.com");
            assert_eq!(keys.as_object().unwrap().len(), 2, "{keys}");
            let subs: Vec<String> =
                serde_json::from_value(keys[format!("{issuer}:sub")].clone()).unwrap();
            let set: BTreeSet<String> = subs.iter().cloned().collect();
            assert_eq!(set.len(), subs.len(), "duplicate subjects: {subs:?}");
            out.push(Trust {
                provider,
                op: op.clone(),
                subs: set,
            });
        }
        out
    }

    fn trust(provider: &str, op: &str, subs: &[&str]) -> Trust {
        Trust {
            provider: format!("aws_iam_openid_connect_provider.{provider}"),
            op: op.into(),
            subs: set(subs),
        }
    }

    #[test]
    fn multi_cluster_makes_a_cluster_per_plane_and_one_database() {
        let bp = expanded(&multi("", "", ""));
        let clusters = of_type(&bp, "aws_eks_cluster");
        assert_eq!(names(&clusters), set(&["main", "dp_gpu", "dp_old"]));
        // The existing plane is only read.
        let old = get(&bp, "aws_eks_cluster.dp_old");
        assert_eq!(old.mode, flyteinfra_core::Mode::Existing);
        assert_eq!(old.existing_id.as_deref(), Some("legacy-eks"));
        assert!(old.attributes.is_empty());
        assert_eq!(
            get(&bp, "aws_eks_cluster.dp_gpu").attributes["name"],
            s("demo-gpu")
        );
        assert_eq!(
            get(&bp, "aws_eks_cluster.main").attributes["name"],
            s("demo")
        );
        assert_eq!(
            names(&of_type(&bp, "aws_eks_node_group")),
            set(&["main", "dp_gpu"])
        );
        // One OIDC provider per cluster, the existing one's too.
        let oidcs = of_type(&bp, "aws_iam_openid_connect_provider");
        assert_eq!(names(&oidcs), set(&["eks", "dp_gpu", "dp_old"]));
        for (oidc, cluster) in [("eks", "main"), ("dp_gpu", "dp_gpu"), ("dp_old", "dp_old")] {
            let spec = get(&bp, &format!("aws_iam_openid_connect_provider.{oidc}"));
            assert!(refers(
                &spec.attributes["url"],
                &format!("aws_eks_cluster.{cluster}"),
                "oidc_issuer"
            ));
        }
        // Postgres, buckets and the clusters' IAM roles once.
        assert_eq!(of_type(&bp, "aws_db_instance").len(), 1);
        assert_eq!(of_type(&bp, "random_password").len(), 1);
        assert_eq!(
            names(&of_type(&bp, "aws_s3_bucket")),
            set(&["metadata", "data"])
        );
        let roles = names(&of_type(&bp, "aws_iam_role"));
        assert_eq!(
            roles,
            set(&[
                "cluster",
                "node",
                "flyte_backend",
                "flyte_tasks",
                "dp_gpu_propeller",
                "dp_old_propeller"
            ])
        );
        let addresses: Vec<String> = bp.resources.iter().map(|r| r.address.to_string()).collect();
        let unique: BTreeSet<&String> = addresses.iter().collect();
        assert_eq!(unique.len(), addresses.len(), "duplicate addresses");
        let plane_role = get(&bp, "aws_eks_cluster.dp_gpu").attributes["role_arn"].clone();
        assert!(refers(&plane_role, "aws_iam_role.cluster", "arn"));
    }

    #[test]
    fn plane_node_groups_take_the_planes_overrides() {
        let bp = expanded(&multi("  node_instance_type: m7i.2xlarge\n", "", ""));
        let gpu = &get(&bp, "aws_eks_node_group.dp_gpu").attributes;
        assert_eq!(gpu["name"], s("demo-gpu-nodes"));
        assert_eq!(
            gpu["instance_types"],
            Expr::from(Value::from(vec!["g5.xlarge"]))
        );
        assert_eq!(gpu["min_size"], Expr::from(0i64));
        assert_eq!(gpu["max_size"], Expr::from(8i64));
        assert_eq!(gpu["desired_size"], Expr::from(1i64));
        assert!(refers(&gpu["cluster_name"], "aws_eks_cluster.dp_gpu", "id"));
        assert!(refers(&gpu["node_role_arn"], "aws_iam_role.node", "arn"));
        // The control plane keeps the deployment's settings.
        let main = &get(&bp, "aws_eks_node_group.main").attributes;
        assert_eq!(main["name"], s("demo-nodes"));
        assert_eq!(
            main["instance_types"],
            Expr::from(Value::from(vec!["m7i.2xlarge"]))
        );
        assert_eq!(main["min_size"], Expr::from(2i64));
        assert_eq!(main["max_size"], Expr::from(5i64));
        // A plane without overrides inherits them.
        let bp = expanded(&multi(
            "  node_instance_type: m7i.2xlarge\n",
            "",
            "  - name: cpu\n",
        ));
        let cpu = &get(&bp, "aws_eks_node_group.dp_cpu").attributes;
        assert_eq!(cpu["instance_types"], main["instance_types"]);
        assert_eq!(cpu["min_size"], main["min_size"]);
        assert_eq!(cpu["max_size"], main["max_size"]);
        assert_eq!(cpu["desired_size"], main["desired_size"]);
    }

    #[test]
    fn multi_cluster_identities_trust_exactly_their_clusters_and_components() {
        let bp = expanded(&multi(
            "",
            "  projects: [p1, p2]\n  domains: [dev, prod]\n",
            "",
        ));
        // flyteadmin and datacatalog, in the control plane only.
        assert_eq!(
            trusts(get(&bp, "aws_iam_role.flyte_backend")),
            [trust(
                "eks",
                "StringEquals",
                &[
                    "system:serviceaccount:fl:flyteadmin",
                    "system:serviceaccount:fl:datacatalog"
                ]
            )]
        );
        // Each plane's flytepropeller, in that plane only.
        let s3 = &get(&bp, "aws_iam_role.flyte_backend").attributes["inline_policy"];
        for plane in ["gpu", "old"] {
            let role = get(&bp, &format!("aws_iam_role.dp_{plane}_propeller"));
            assert_eq!(
                role.attributes["name"],
                s(&format!("demo-{plane}-propeller"))
            );
            assert_eq!(&role.attributes["inline_policy"], s3);
            assert_eq!(
                trusts(role),
                [trust(
                    &format!("dp_{plane}"),
                    "StringEquals",
                    &["system:serviceaccount:fl:flytepropeller"]
                )]
            );
        }
        // Tasks: one statement per plane, none for the control plane.
        let tasks = ["p1-dev", "p1-prod", "p2-dev", "p2-prod"]
            .map(|ns| format!("system:serviceaccount:{ns}:default"));
        let tasks: Vec<&str> = tasks.iter().map(String::as_str).collect();
        let mut got = trusts(get(&bp, "aws_iam_role.flyte_tasks"));
        got.sort();
        assert_eq!(
            got,
            [
                trust("dp_gpu", "StringEquals", &tasks),
                trust("dp_old", "StringEquals", &tasks)
            ]
        );
        // Wildcard: still one statement per plane.
        let bp = expanded(&multi("", "  task_trust: wildcard\n", ""));
        let mut got = trusts(get(&bp, "aws_iam_role.flyte_tasks"));
        got.sort();
        let any = ["system:serviceaccount:*:default"];
        assert_eq!(
            got,
            [
                trust("dp_gpu", "StringLike", &any),
                trust("dp_old", "StringLike", &any)
            ]
        );
    }

    #[test]
    fn single_cluster_trust_policies_have_one_statement() {
        let bp = expanded(&config("  projects: [p1]\n"));
        for role in ["flyte_backend", "flyte_tasks"] {
            let got = trusts(get(&bp, &format!("aws_iam_role.{role}")));
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].provider, "aws_iam_openid_connect_provider.eks");
        }
        assert!(of_type(&bp, "aws_vpc_security_group_ingress_rule").len() == 1);
        assert!(
            !bp.outputs
                .iter()
                .any(|o| o.name.starts_with("identity_") || o.name.starts_with("dp_"))
        );
    }

    #[test]
    fn planes_and_the_control_plane_admit_each_other() {
        let bp = expanded(&multi("", "", ""));
        let rules = of_type(&bp, "aws_vpc_security_group_ingress_rule");
        assert_eq!(
            names(&rules),
            set(&[
                "db_from_cluster",
                "dp_gpu_api_from_control",
                "control_from_dp_gpu",
                "dp_old_api_from_control",
                "control_from_dp_old",
            ])
        );
        let sg = "cluster_security_group_id";
        for plane in ["dp_gpu", "dp_old"] {
            let cluster = format!("aws_eks_cluster.{plane}");
            let api = &get(
                &bp,
                &format!("aws_vpc_security_group_ingress_rule.{plane}_api_from_control"),
            )
            .attributes;
            assert!(refers(&api["security_group_id"], &cluster, sg));
            assert!(refers(
                &api["referenced_security_group_id"],
                "aws_eks_cluster.main",
                sg
            ));
            assert_eq!(api["ip_protocol"], s("tcp"));
            assert_eq!(api["from_port"], Expr::from(443i64));
            assert_eq!(api["to_port"], Expr::from(443i64));
            let grpc = &get(
                &bp,
                &format!("aws_vpc_security_group_ingress_rule.control_from_{plane}"),
            )
            .attributes;
            assert!(refers(
                &grpc["security_group_id"],
                "aws_eks_cluster.main",
                sg
            ));
            assert!(refers(&grpc["referenced_security_group_id"], &cluster, sg));
            assert_eq!(grpc["ip_protocol"], s("tcp"));
            assert_eq!(grpc["from_port"], Expr::from(8089i64));
            assert_eq!(grpc["to_port"], Expr::from(8089i64));
        }
        // The database admits the control plane only.
        let db = &get(&bp, "aws_vpc_security_group_ingress_rule.db_from_cluster").attributes;
        assert!(refers(
            &db["referenced_security_group_id"],
            "aws_eks_cluster.main",
            sg
        ));
    }

    #[test]
    fn multi_cluster_outputs_describe_every_cluster_and_identity() {
        let single = expanded(&config("  projects: [p1]\n"));
        let bp = expanded(&multi("", "", ""));
        let out: BTreeMap<&str, &Expr> = bp
            .outputs
            .iter()
            .map(|o| (o.name.as_str(), &o.value))
            .collect();
        // The single-cluster outputs, unchanged, describe the control plane.
        for o in &single.outputs {
            assert_eq!(out[o.name.as_str()], &o.value, "{}", o.name);
        }
        assert!(refers(
            out["identity_flyteadmin"],
            "aws_iam_role.flyte_backend",
            "arn"
        ));
        assert!(refers(
            out["identity_datacatalog"],
            "aws_iam_role.flyte_backend",
            "arn"
        ));
        for plane in ["dp_gpu", "dp_old"] {
            let cluster = format!("aws_eks_cluster.{plane}");
            for (name, attr) in [
                ("cluster_name", "id"),
                ("cluster_arn", "arn"),
                ("cluster_endpoint", "endpoint"),
                ("cluster_ca", "certificate_authority"),
            ] {
                assert!(refers(
                    out[format!("{plane}_{name}").as_str()],
                    &cluster,
                    attr
                ));
            }
            assert!(refers(
                out[format!("{plane}_identity_flytepropeller").as_str()],
                &format!("aws_iam_role.{plane}_propeller"),
                "arn"
            ));
        }
        assert_eq!(out.len(), single.outputs.len() + 2 + 2 * 5);
        assert!(
            bp.outputs
                .iter()
                .all(|o| o.sensitive == (o.name == "db_password"))
        );
    }

    /// `n` projects × the three default domains.
    fn projects(n: usize) -> String {
        let list: Vec<String> = (0..n).map(|i| format!("project{i:03}")).collect();
        format!("  projects: [{}]\n", list.join(", "))
    }

    #[test]
    fn the_task_trust_counts_a_statement_per_plane_and_names_both_remedies() {
        // 15 subjects fit one statement but not one per plane.
        let flyte = projects(5);
        let subjects: Vec<String> = multi("", &flyte, "")
            .flyte
            .task_namespaces()
            .iter()
            .map(|ns| format!("system:serviceaccount:{ns}:default"))
            .collect();
        assert!(trust_policy_size(&subjects, false, "us-east-1") <= TRUST_POLICY_LIMIT);
        let c = multi("", &flyte, "");
        let err = expand(&c, c.aws.as_ref().unwrap(), &Facts::offline()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("15 service accounts for each of 2 data-plane clusters"),
            "{msg}"
        );
        assert!(msg.contains("the limit is 2048"), "{msg}");
        assert!(msg.contains("flyte.task_trust: wildcard"), "{msg}");
        assert!(msg.contains("quota to 4096"), "{msg}");
        assert!(msg.contains("aws.trust_policy_limit: 4096"), "{msg}");
        let BlueprintError::TrustPolicyTooLarge { size, .. } = err else {
            panic!("{err}");
        };
        assert_eq!(size, trust_policy_size_n(2, &subjects, false, "us-east-1"));
        // The size is the document's: two statements and a comma more than one statement's.
        let one = trust_policy_size(&subjects, false, "us-east-1");
        let envelope = r#"{"Version":"2012-10-17","Statement":[]}"#.len();
        assert_eq!(size, 2 * (one - envelope) + 1 + envelope);

        // After the quota raise, the same planes fit.
        let c = multi("  trust_policy_limit: 4096\n", &flyte, "");
        let bp = expanded(&c);
        assert_eq!(trusts(get(&bp, "aws_iam_role.flyte_tasks")).len(), 2);
        assert!(size > TRUST_POLICY_LIMIT && size <= 4096);

        // Past even 4096 with the wildcard already set, only fewer planes are left to offer.
        let planes: String = (0..12).map(|i| format!("  - name: p{i}\n")).collect();
        let c = multi(
            "  trust_policy_limit: 4096\n",
            "  task_trust: wildcard\n",
            &planes,
        );
        let msg = expand(&c, c.aws.as_ref().unwrap(), &Facts::offline())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("each of 12 data-plane clusters"), "{msg}");
        assert!(msg.contains("fewer data planes"), "{msg}");
        assert!(!msg.contains("flyte.task_trust: wildcard"), "{msg}");
        assert!(!msg.contains("aws.trust_policy_limit: 4096"), "{msg}");
    }

    #[test]
    fn the_trust_policy_limit_is_iams_quota_range() {
        for ok in [2048, 3000, 4096] {
            let c = multi(&format!("  trust_policy_limit: {ok}\n"), "", "");
            assert_eq!(c.aws.unwrap().trust_policy_limit, ok);
        }
        assert_eq!(
            config("  projects: [p1]\n").aws.unwrap().trust_policy_limit as usize,
            TRUST_POLICY_LIMIT
        );
        for bad in [1024, 2047, 4097] {
            let err = Config::parse(
                &format!(
                    "name: demo\ncloud: aws\naws:\n  region: us-east-1\n  trust_policy_limit: {bad}\n"
                ),
                Path::new("t.yaml"),
            )
            .unwrap_err()
            .to_string();
            assert!(err.starts_with("t.yaml:5:"), "{err}");
            assert!(err.contains("expected 2048 to 4096"), "{err}");
        }
    }
}

//! The real AWS provider against moto: a full `--cloud aws` apply, outputs and Helm values
//! checked field by field (trust and S3 policies included), a no-op re-plan, and a destroy
//! that leaves every listing as it was, except the named final snapshot.

use std::collections::BTreeSet;
use std::sync::Mutex;

use flyteinfra_provider_aws::AwsClients;
use serde_json::Value;

use crate::util::{TestContext, mode, parse_json, read_json};

/// moto gives every EKS cluster the same OIDC issuer, so two deployments applied at once
/// in one moto would share an OIDC provider: tests that apply take turns.
pub(crate) static APPLY: Mutex<()> = Mutex::new(());

pub(crate) fn unique_name() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "it{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub(crate) fn config(name: &str) -> String {
    format!(
        "name: {name}\ncloud: aws\naws:\n  region: us-east-1\ndatabase:\n  deletion_protection: false\n\
         flyte:\n  projects: [flytesnacks, analytics]\n  domains: [development, production]\n"
    )
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) async fn clients() -> AwsClients {
    AwsClients::for_endpoint("us-east-1", crate::moto::url(), "testing", "testing").await
}

/// Everything in the account that belongs to deployment `name`, as `kind:id` strings.
pub(crate) async fn listing(c: &AwsClients, name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let tag = aws_sdk_ec2_filter(name);
    for v in c
        .ec2
        .describe_vpcs()
        .filters(tag.clone())
        .send()
        .await
        .unwrap()
        .vpcs()
    {
        out.insert(format!("vpc:{}", v.vpc_id().unwrap()));
    }
    for s in c
        .ec2
        .describe_subnets()
        .filters(tag.clone())
        .send()
        .await
        .unwrap()
        .subnets()
    {
        out.insert(format!("subnet:{}", s.subnet_id().unwrap()));
    }
    let igws = c
        .ec2
        .describe_internet_gateways()
        .filters(tag.clone())
        .send()
        .await
        .unwrap();
    for g in igws.internet_gateways() {
        out.insert(format!("igw:{}", g.internet_gateway_id().unwrap()));
    }
    let nats = c.ec2.describe_nat_gateways().send().await.unwrap();
    for n in nats.nat_gateways() {
        let ours = n.tags().iter().any(|t| t.value() == Some(name));
        let gone = n.state().is_some_and(|s| s.as_str() == "deleted");
        if ours && !gone {
            out.insert(format!("nat:{}", n.nat_gateway_id().unwrap()));
        }
    }
    for r in c
        .ec2
        .describe_route_tables()
        .filters(tag.clone())
        .send()
        .await
        .unwrap()
        .route_tables()
    {
        out.insert(format!("rtb:{}", r.route_table_id().unwrap()));
    }
    let sgs = c
        .ec2
        .describe_security_groups()
        .filters(tag.clone())
        .send()
        .await
        .unwrap();
    for g in sgs.security_groups() {
        out.insert(format!("sg:{}", g.group_id().unwrap()));
    }
    let rules = c
        .ec2
        .describe_security_group_rules()
        .filters(tag.clone())
        .send()
        .await
        .unwrap();
    for r in rules.security_group_rules() {
        out.insert(format!("sgr:{}", r.security_group_rule_id().unwrap()));
    }
    for a in c
        .ec2
        .describe_addresses()
        .filters(tag)
        .send()
        .await
        .unwrap()
        .addresses()
    {
        out.insert(format!("eip:{}", a.allocation_id().unwrap()));
    }
    for d in c
        .rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
    {
        let id = d.db_instance_identifier().unwrap();
        if id.starts_with(name) {
            out.insert(format!("db:{id}"));
        }
    }
    for g in c
        .rds
        .describe_db_subnet_groups()
        .send()
        .await
        .unwrap()
        .db_subnet_groups()
    {
        let id = g.db_subnet_group_name().unwrap();
        if id.starts_with(name) {
            out.insert(format!("dbsubnets:{id}"));
        }
    }
    for b in c.s3.list_buckets().send().await.unwrap().buckets() {
        let n = b.name().unwrap();
        if n.starts_with(name) {
            out.insert(format!("bucket:{n}"));
        }
    }
    for r in c
        .iam
        .list_roles()
        .max_items(1000)
        .send()
        .await
        .unwrap()
        .roles()
    {
        if r.role_name().starts_with(name) {
            out.insert(format!("role:{}", r.role_name()));
        }
    }
    for p in c
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .unwrap()
        .open_id_connect_provider_list()
    {
        out.insert(format!("oidc:{}", p.arn().unwrap()));
    }
    for k in c.eks.list_clusters().send().await.unwrap().clusters() {
        if k.starts_with(name) {
            out.insert(format!("eks:{k}"));
        }
    }
    out
}

fn aws_sdk_ec2_filter(name: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name("tag:flyteinfra/deployment")
        .values(name)
        .build()
}

pub(crate) async fn final_snapshots(c: &AwsClients, name: &str) -> Vec<String> {
    c.rds
        .describe_db_snapshots()
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .filter(|s| s.starts_with(&format!("{name}-db-final")))
        .map(str::to_string)
        .collect()
}

/// IAM returns policy documents URL-encoded.
pub(crate) fn decode(doc: &str) -> Value {
    parse_json(&flyteinfra_provider_aws::percent_decode(doc))
}

/// A list, or a single string, as a sorted list.
pub(crate) fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = match v {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
        Value::String(s) => vec![s.clone()],
        other => panic!("not a string list: {other}"),
    };
    out.sort();
    out
}

#[test]
fn aws_full_apply_values_no_op_and_clean_destroy() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique_name();
    let ctx = TestContext::aws(&config(&name));
    let rt = rt();
    let c = rt.block_on(clients());
    let baseline = rt.block_on(listing(&c, &name));

    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(2);
    let apply = ctx.run(&["apply", "--auto-approve"]);
    apply.expect_code(0);
    assert!(apply.stderr.contains("Helm values:"), "{}", apply.stderr);

    // Outputs.
    let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
    let o = |k: &str| out[k]["value"].clone();
    let meta = format!("{name}-123456789012-us-east-1-metadata");
    let data = format!("{name}-123456789012-us-east-1-data");
    assert_eq!(o("metadata_bucket"), meta.as_str());
    assert_eq!(o("data_bucket"), data.as_str());
    assert_eq!(o("region"), "us-east-1");
    assert_eq!(o("db_name"), "flyte");
    assert_eq!(o("db_username"), "flyte");
    assert_eq!(o("db_port"), 5432);
    assert!(
        o("db_host")
            .as_str()
            .unwrap()
            .contains(&format!("{name}-db")),
        "{out}"
    );
    let backend_arn = format!("arn:aws:iam::123456789012:role/{name}-flyte-backend");
    let task_arn = format!("arn:aws:iam::123456789012:role/{name}-flyte-tasks");
    assert_eq!(o("backend_role_arn"), backend_arn.as_str());
    assert_eq!(o("task_role_arn"), task_arn.as_str());
    assert_eq!(o("db_password"), "(sensitive)");

    // Helm values and the Secret.
    let state = ctx.state();
    let password = state["resources"]["random_password.db"]["attributes"]["result"]["$sensitive"]
        .as_str()
        .unwrap()
        .to_string();
    let values_path = ctx.dir().join("flyte-values-aws.yaml");
    let secret_path = ctx.dir().join("flyte-db-secret-aws.yaml");
    let values_text = std::fs::read_to_string(&values_path).unwrap();
    assert!(!values_text.contains(&password));
    assert_eq!(mode(&secret_path), 0o600);
    assert!(
        std::fs::read_to_string(&secret_path)
            .unwrap()
            .contains(&password)
    );
    let values: Value = serde_saphyr_from_yaml(&values_text);
    let db = &values["configuration"]["database"];
    assert_eq!(db["host"], o("db_host"));
    assert_eq!(db["port"], 5432);
    assert_eq!(db["passwordPath"], "/etc/flyte/db/password");
    assert_eq!(db["options"], "sslmode=require");
    let st = &values["configuration"]["storage"];
    assert_eq!(st["provider"], "s3");
    assert_eq!(st["metadataContainer"], meta.as_str());
    assert_eq!(st["userDataContainer"], data.as_str());
    assert_eq!(st["providerConfig"]["s3"]["region"], "us-east-1");
    assert_eq!(st["providerConfig"]["s3"]["authType"], "iam");
    assert_eq!(values["serviceAccount"]["name"], "flyte-backend");
    assert_eq!(
        values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"],
        backend_arn.as_str()
    );
    // As Flyte loads it (a list, whose keys keep their case).
    let custom = crate::helm::custom_data(&values["configuration"]["inline"]);
    for d in ["development", "production"] {
        assert_eq!(custom[d]["taskRole"]["value"], task_arn.as_str());
    }
    // `values` on demand gives the same file.
    let again = ctx
        .run(&["values", "--secret-out", "s.yaml"])
        .ok()
        .stdout
        .clone();
    assert_eq!(again, values_text);

    // Trust and S3 policies, as IAM has them.
    let role = |n: String| {
        rt.block_on(async {
            let r = c.iam.get_role().role_name(&n).send().await.unwrap();
            let trust = decode(r.role().unwrap().assume_role_policy_document().unwrap());
            let inline = c
                .iam
                .get_role_policy()
                .role_name(&n)
                .policy_name("flyteinfra")
                .send()
                .await
                .unwrap();
            (trust, decode(inline.policy_document()))
        })
    };
    let (trust, s3) = role(format!("{name}-flyte-backend"));
    let stmt = &trust["Statement"][0];
    assert_eq!(stmt["Action"], "sts:AssumeRoleWithWebIdentity");
    let fed = stmt["Principal"]["Federated"].as_str().unwrap();
    assert!(
        fed.starts_with(
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/"
        ),
        "{fed}"
    );
    let issuer = fed.split_once("oidc-provider/").unwrap().1;
    let cond = &stmt["Condition"]["StringEquals"];
    assert_eq!(cond[format!("{issuer}:aud")], "sts.amazonaws.com");
    assert_eq!(
        strings(&cond[format!("{issuer}:sub")]),
        ["system:serviceaccount:flyte:flyte-backend"]
    );
    let s3_stmt = &s3["Statement"][0];
    assert_eq!(
        strings(&s3_stmt["Action"]),
        [
            "s3:DeleteObject*",
            "s3:GetObject*",
            "s3:ListBucket",
            "s3:PutObject*"
        ]
    );
    let mut want = vec![
        format!("arn:aws:s3:::{meta}"),
        format!("arn:aws:s3:::{meta}/*"),
        format!("arn:aws:s3:::{data}"),
        format!("arn:aws:s3:::{data}/*"),
    ];
    want.sort();
    assert_eq!(strings(&s3_stmt["Resource"]), want);
    let (trust, _) = role(format!("{name}-flyte-tasks"));
    let subs =
        strings(&trust["Statement"][0]["Condition"]["StringEquals"][format!("{issuer}:sub")]);
    assert_eq!(
        subs,
        [
            "system:serviceaccount:analytics-development:default",
            "system:serviceaccount:analytics-production:default",
            "system:serviceaccount:flytesnacks-development:default",
            "system:serviceaccount:flytesnacks-production:default",
        ]
    );

    // A second plan is a no-op, read with few calls: one batched describe per EC2/RDS type,
    // only the managed parts of S3 buckets and IAM roles (a mainstream peer makes 133).
    let replan = ctx.run(&["plan", "--detailed-exitcode"]);
    replan.expect_code(0);
    let calls = |r: &crate::util::Run| -> u64 {
        r.stderr
            .lines()
            .find_map(|l| l.strip_prefix("AWS API calls: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no call count in:\n{}", r.stderr))
    };
    let no_op = calls(&replan);
    // 32 measured (see `aws_calls_per_phase_stay_within_budget`).
    assert!(no_op <= 32, "a no-op plan made {no_op} calls");
    println!("AWS calls: create {}, no-op plan {no_op}", calls(&apply));

    // Destroy leaves every listing as before, plus one named final snapshot.
    assert!(rt.block_on(final_snapshots(&c, &name)).is_empty());
    let destroy = ctx.run(&["destroy", "--auto-approve"]);
    destroy.expect_code(0);
    println!("AWS calls: destroy {}", calls(&destroy));
    assert_eq!(rt.block_on(listing(&c, &name)), baseline);
    let snaps = rt.block_on(final_snapshots(&c, &name));
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert!(
        read_json(&ctx.state_path())["resources"]
            .as_object()
            .unwrap()
            .is_empty()
    );
}

fn serde_saphyr_from_yaml(text: &str) -> Value {
    // The values are YAML; a tiny YAML→JSON bridge through the binary's own parser would
    // be circular, so use serde-saphyr directly.
    serde_saphyr::from_str(text).unwrap()
}

#[test]
fn aws_unknown_region_is_a_located_error_before_any_call() {
    let name = unique_name();
    let ctx = TestContext::aws(&config(&name).replace("us-east-1", "us-nowhere-1"));
    let r = ctx.run(&["plan"]);
    r.expect_code(1);
    assert!(r.stderr.contains("flyteinfra.yaml:4:11"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("`us-nowhere-1`, which is not an AWS region"),
        "{}",
        r.stderr
    );
    assert!(!ctx.state_dir().exists());
}

/// The shipped binary has no simulated cloud: with `FLYTEINFRA_SIMULATE` set it still plans
/// through the real AWS provider (moto here) and leaves no simulated cloud behind.
#[test]
fn aws_shipped_binary_ignores_flyteinfra_simulate() {
    let ctx = TestContext::aws(&config(&unique_name()));
    let sim = ctx.sim_path().display().to_string();
    let r = ctx.run_env(&["plan"], &[("FLYTEINFRA_SIMULATE", &sim)]);
    r.ok();
    // Only a real AWS session counts requests; the simulated one has no AWS clients.
    assert!(r.stderr.contains("AWS API calls:"), "{}", r.stderr);
    assert!(
        r.stdout.contains("aws_db_instance.main will be created"),
        "{}",
        r.stdout
    );
    assert!(!ctx.sim_path().exists() && !ctx.dir().join("sim.lock").exists());
}

#[test]
fn aws_a_bad_poll_interval_is_an_error_before_any_call() {
    let name = unique_name();
    let ctx = TestContext::aws(&config(&name));
    // Its own proxy, to count every request the commands send.
    let proxy = flyteinfra_aws_proxy::Proxy::start(crate::moto::upstream());
    for (cmd, bad) in [
        (&["plan"][..], "fast"),
        (&["plan"], "0"),
        (&["apply", "--auto-approve"], "-5"),
    ] {
        let r = ctx.run_env(
            cmd,
            &[
                ("AWS_ENDPOINT_URL", proxy.url()),
                ("FLYTEINFRA_AWS_POLL_MS", bad),
            ],
        );
        r.expect_code(1);
        assert!(
            r.stderr.contains(&format!(
                "`FLYTEINFRA_AWS_POLL_MS={bad}` is not a positive whole number of milliseconds"
            )),
            "{}",
            r.stderr
        );
    }
    assert_eq!(proxy.stats().total().calls, 0, "{}", proxy.stats());
    // A good value is used, not refused.
    let r = ctx.run_env(
        &["plan"],
        &[
            ("AWS_ENDPOINT_URL", proxy.url()),
            ("FLYTEINFRA_AWS_POLL_MS", "200"),
        ],
    );
    r.expect_code(0);
}

#[test]
fn aws_missing_credentials_are_a_clear_error() {
    let name = unique_name();
    let ctx = TestContext::aws(&config(&name));
    let out = ctx
        .command(&["plan"], &[])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot use the AWS credentials"),
        "{stderr}"
    );
    assert!(stderr.contains("AWS_PROFILE"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn aws_existing_vpc_is_used_and_never_touched() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let name = unique_name();
    let rt = rt();
    let c = rt.block_on(clients());
    // The user's own network, made outside flyteinfra.
    let (vpc, public, private) = rt.block_on(async {
        let vpc = c
            .ec2
            .create_vpc()
            .cidr_block("10.42.0.0/16")
            .send()
            .await
            .unwrap();
        let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_string();
        let mut ids = Vec::new();
        for (i, az) in ["us-east-1a", "us-east-1b", "us-east-1a", "us-east-1b"]
            .iter()
            .enumerate()
        {
            let s = c
                .ec2
                .create_subnet()
                .vpc_id(&vpc)
                .availability_zone(*az)
                .cidr_block(format!("10.42.{i}.0/24"))
                .send()
                .await
                .unwrap();
            ids.push(s.subnet().unwrap().subnet_id().unwrap().to_string());
        }
        (vpc, ids[..2].to_vec(), ids[2..].to_vec())
    });
    let cfg = config(&name).replace(
        "  region: us-east-1\n",
        &format!(
            "  region: us-east-1\n  existing:\n    vpc_id: {vpc}\n    public_subnet_ids: [{}]\n    private_subnet_ids: [{}]\n",
            public.join(", "),
            private.join(", ")
        ),
    );
    let ctx = TestContext::aws(&cfg);
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    let addrs = ctx.state_addresses();
    assert!(
        !addrs
            .iter()
            .any(|a| a.starts_with("aws_vpc.") || a.starts_with("aws_subnet."))
    );
    let state = ctx.state();
    let group = &state["resources"]["aws_db_subnet_group.main"]["attributes"]["subnet_ids"];
    let mut got: Vec<String> = group
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want = private.clone();
    want.sort();
    assert_eq!(got, want);
    let sg = &state["resources"]["aws_security_group.db"]["attributes"];
    assert_eq!(sg["vpc_id"], vpc.as_str());
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);

    ctx.run(&["destroy", "--auto-approve"]).expect_code(0);
    // The user's VPC and subnets are still there.
    rt.block_on(async {
        let v = c.ec2.describe_vpcs().vpc_ids(&vpc).send().await.unwrap();
        assert_eq!(v.vpcs().len(), 1);
        let mut all = public.clone();
        all.extend(private.clone());
        let s = c
            .ec2
            .describe_subnets()
            .set_subnet_ids(Some(all))
            .send()
            .await
            .unwrap();
        assert_eq!(s.subnets().len(), 4);
    });
}

//! plan / apply / destroy / state / output / graph against the simulated cloud.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use serde_json::Value;

use crate::util::{MINIMAL, TestContext, parse_json, summary_line};

/// Addresses of `# <addr> will be created` headlines in a text plan.
fn created(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("# "))
        .filter_map(|l| l.strip_suffix(" will be created"))
        .map(str::to_string)
        .collect()
}

/// The number of resources `validate` reports.
fn validated_count(ctx: &TestContext) -> usize {
    let run = ctx.run(&["validate"]);
    run.ok();
    // "`…` is valid: 24 resources on aws."
    let after = run.stderr.split("is valid: ").nth(1).expect(&run.stderr);
    after.split(' ').next().unwrap().parse().expect(&run.stderr)
}

fn sim_addresses(ctx: &TestContext) -> BTreeSet<String> {
    ctx.sim_objects()
        .values()
        .map(|o| o["address"].as_str().unwrap().to_string())
        .collect()
}

fn managed_in_cloud(addrs: &BTreeSet<String>) -> BTreeSet<String> {
    addrs
        .iter()
        .filter(|a| !a.starts_with("random_password."))
        .cloned()
        .collect()
}

#[test]
fn plan_apply_then_no_changes() {
    let ctx = TestContext::minimal();
    let n = validated_count(&ctx);
    assert!(n > 10, "the minimal AWS deployment has {n} resources");

    let plan = ctx.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    let adds = created(&plan.stdout);
    assert_eq!(adds.len(), n, "{}", plan.stdout);
    assert_eq!(
        summary_line(&plan.stdout),
        Some(format!("Plan: {n} to add, 0 to change, 0 to destroy.").as_str()),
        "{}",
        plan.stdout
    );
    for a in [
        "aws_vpc.main",
        "aws_eks_cluster.main",
        "aws_db_instance.main",
        "random_password.db",
    ] {
        assert!(
            adds.contains(a),
            "{a} missing from the plan:\n{}",
            plan.stdout
        );
    }
    // Plan writes no state and creates nothing.
    assert!(!ctx.state_path().exists(), "plan wrote a state file");
    assert!(ctx.sim_objects().is_empty());

    let apply = ctx.apply();
    assert!(
        apply.stderr.contains(&format!(
            "Apply complete: {n} added, 0 changed, 0 destroyed."
        )),
        "{}",
        apply.stderr
    );
    assert_eq!(ctx.state_addresses(), adds);
    assert_eq!(sim_addresses(&ctx), managed_in_cloud(&adds));
    assert_eq!(
        ctx.sim_objects().len(),
        n - 1,
        "one cloud object per resource"
    );
    assert!(ctx.state()["intents"].as_object().unwrap().is_empty());

    let again = ctx.run(&["plan", "--detailed-exitcode"]);
    again.expect_code(0);
    assert!(again.stdout.contains("No changes"), "{}", again.stdout);

    // A second apply is a no-op too.
    let before = ctx.sim_objects();
    let apply2 = ctx.apply();
    assert!(
        !apply2.stderr.contains("Apply complete"),
        "{}",
        apply2.stderr
    );
    assert_eq!(ctx.sim_objects(), before);
}

#[test]
fn plan_json_is_versioned_and_complete() {
    let ctx = TestContext::minimal();
    let n = validated_count(&ctx);
    let run = ctx.run(&["plan", "--json", "--detailed-exitcode"]);
    run.expect_code(2);
    let v = parse_json(&run.stdout);
    assert_eq!(v["format_version"], 2);
    assert_eq!(v["cloud"], "aws");
    assert_eq!(v["deployment"], "demo");
    assert_eq!(v["destroy"], false);
    let changes = v["resource_changes"].as_array().expect("resource_changes");
    assert_eq!(changes.len(), n);
    assert!(changes.iter().all(|c| c["action"] == "create"), "{v:#}");
    assert_eq!(v["summary"]["add"], n);
    assert_eq!(v["summary"]["change"], 0);
    assert_eq!(v["summary"]["destroy"], 0);
    // Apply order: every dependency comes before its dependents.
    let pos: BTreeMap<&str, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c["address"].as_str().unwrap(), i))
        .collect();
    for c in changes {
        for d in c["dependencies"].as_array().unwrap() {
            let d = d.as_str().unwrap();
            assert!(
                pos[d] < pos[c["address"].as_str().unwrap()],
                "{d} after {}",
                c["address"]
            );
        }
    }

    ctx.apply();
    let v = parse_json(&ctx.run(&["plan", "--json"]).ok().stdout);
    let changes = v["resource_changes"].as_array().unwrap();
    assert_eq!(changes.len(), n);
    assert!(changes.iter().all(|c| c["action"] == "no-op"), "{v:#}");
    assert_eq!(
        v["summary"],
        serde_json::json!({"add": 0, "change": 0, "destroy": 0})
    );
    assert_eq!(v["state"]["lineage"], ctx.state()["lineage"]);
    assert_eq!(v["state"]["serial"], ctx.state()["serial"]);
}

#[test]
fn plan_json_snapshot_of_one_bucket() {
    let ctx = TestContext::minimal();
    let run = ctx.run(&["plan", "--json", "--target", "aws_s3_bucket.metadata"]);
    run.ok();
    insta::with_settings!({filters => vec![
        (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[lineage]"),
    ]}, {
        insta::assert_snapshot!("plan_json_target_metadata_bucket", run.stdout);
    });
}

fn plan_addresses(ctx: &TestContext, targets: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["plan", "--json"];
    for t in targets {
        args.extend(["--target", t]);
    }
    let v = parse_json(&ctx.run(&args).ok().stdout);
    v["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn target_limits_the_plan_to_dependencies() {
    let ctx = TestContext::minimal();
    let got = plan_addresses(&ctx, &["aws_iam_role.flyte_backend"]);
    for a in [
        "aws_iam_role.flyte_backend",
        "aws_iam_openid_connect_provider.eks",
        "aws_eks_cluster.main",
        "aws_iam_role.cluster",
        "aws_s3_bucket.metadata",
        "aws_vpc.main",
        "aws_subnet.private_0",
    ] {
        assert!(got.contains(a), "{a} missing from {got:?}");
    }
    for a in [
        "aws_db_instance.main",
        "random_password.db",
        "aws_eks_node_group.main",
        "aws_iam_role.flyte_tasks",
        "aws_security_group.db",
    ] {
        assert!(!got.contains(a), "{a} should not be in {got:?}");
    }

    let bucket = plan_addresses(&ctx, &["aws_s3_bucket.metadata"]);
    assert_eq!(
        bucket,
        BTreeSet::from(["aws_s3_bucket.metadata".to_string()])
    );
    let two = plan_addresses(&ctx, &["aws_s3_bucket.metadata", "random_password.db"]);
    assert_eq!(two.len(), 2, "{two:?}");

    // A targeted apply creates exactly the targeted closure.
    let apply = ctx.run(&[
        "apply",
        "--auto-approve",
        "--target",
        "aws_iam_role.flyte_backend",
    ]);
    apply.ok();
    assert_eq!(ctx.state_addresses(), got);
    assert_eq!(sim_addresses(&ctx), got);

    for bad in ["aws_s3_bucket.nope", "not-an-address"] {
        let run = ctx.run(&["plan", "--target", bad]);
        run.expect_code(1);
        assert!(run.stderr.contains(bad), "{}", run.stderr);
    }
}

#[test]
fn saved_plan_applies() {
    let ctx = TestContext::minimal();
    let plan = ctx.run(&["plan", "--out", "p.plan"]);
    plan.ok();
    let file = ctx.dir().join("p.plan");
    assert!(file.exists());
    assert_eq!(crate::util::mode(&file), 0o600);
    assert!(
        plan.stdout.contains("Plan: "),
        "plan --out still prints the plan"
    );
    assert!(ctx.sim_objects().is_empty(), "plan --out called create");

    let apply = ctx.run(&["apply", "p.plan"]);
    apply.ok();
    assert!(apply.stderr.contains("Apply complete"), "{}", apply.stderr);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    // The same plan again is stale now.
    let again = ctx.run(&["apply", "p.plan"]);
    again.expect_code(1);
    assert!(again.stderr.contains("stale"), "{}", again.stderr);
}

#[test]
fn stale_saved_plan_is_refused() {
    let ctx = TestContext::minimal();
    ctx.run(&["plan", "--out", "p.plan"]).ok();
    ctx.apply();
    let objects = ctx.sim_objects();
    let state = fs::read(ctx.state_path()).unwrap();
    let run = ctx.run(&["apply", "p.plan"]);
    run.expect_code(1);
    assert!(run.stderr.contains("stale"), "{}", run.stderr);
    assert_eq!(ctx.sim_objects(), objects, "a stale plan touched the cloud");
    assert_eq!(fs::read(ctx.state_path()).unwrap(), state);

    // Missing and garbage plan files.
    let run = ctx.run(&["apply", "missing.plan"]);
    run.expect_code(1);
    assert!(run.stderr.contains("missing.plan"), "{}", run.stderr);
    fs::write(ctx.dir().join("junk.plan"), b"{\"format_version\": \"1\"").unwrap();
    let run = ctx.run(&["apply", "junk.plan"]);
    run.expect_code(1);
    assert!(run.stderr.contains("junk.plan"), "{}", run.stderr);
}

#[test]
fn saved_plan_from_a_different_config_is_refused() {
    let ctx = TestContext::minimal();
    ctx.run(&["plan", "--out", "p.plan"]).ok();
    ctx.write_config(&MINIMAL.replace("us-east-1", "eu-west-1"));
    let run = ctx.run(&["apply", "p.plan"]);
    run.expect_code(1);
    assert!(
        ctx.sim_objects().is_empty(),
        "applied a plan for another config"
    );
}

#[test]
fn outputs_and_state_commands() {
    let ctx = TestContext::minimal();
    ctx.apply();

    let out = parse_json(&ctx.run(&["output", "--json"]).ok().stdout);
    assert_eq!(out["db_password"]["value"], "(sensitive)");
    assert_eq!(out["db_password"]["sensitive"], true);
    assert_eq!(out["region"]["value"], "us-east-1");
    assert_eq!(out["region"]["sensitive"], false);
    let bucket_id = out["metadata_bucket"]["value"]
        .as_str()
        .unwrap()
        .to_string();

    let text = ctx.run(&["output"]).ok().stdout.clone();
    assert!(text.contains("db_password = \"(sensitive)\""), "{text}");
    assert!(text.contains("region = \"us-east-1\""), "{text}");
    assert_eq!(ctx.run(&["output", "region"]).ok().stdout, "us-east-1\n");
    let pw = ctx.run(&["output", "db_password"]);
    pw.ok();
    assert!(pw.stdout.contains("(sensitive)"), "{}", pw.stdout);
    let run = ctx.run(&["output", "nope"]);
    run.expect_code(1);
    assert!(run.stderr.contains("nope"), "{}", run.stderr);

    let list = ctx.run(&["state", "list"]).ok().stdout.clone();
    let listed: Vec<&str> = list.lines().collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(listed, sorted, "state list is sorted");
    assert_eq!(
        listed
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        ctx.state_addresses()
    );

    let show = parse_json(
        &ctx.run(&["state", "show", "aws_db_instance.main"])
            .ok()
            .stdout,
    );
    assert_eq!(show["address"], "aws_db_instance.main");
    assert_eq!(show["attributes"]["password"], "(sensitive)");
    assert_eq!(show["attributes"]["engine"], "postgres");
    assert_eq!(
        show["id"],
        ctx.state()["resources"]["aws_db_instance.main"]["id"]
    );
    let run = ctx.run(&["state", "show", "aws_s3_bucket.nope"]);
    run.expect_code(1);

    // state rm forgets, the cloud keeps the object, plan wants to create it again.
    let objects = ctx.sim_objects();
    let rm = ctx.run(&["state", "rm", "aws_s3_bucket.metadata"]);
    rm.ok();
    assert!(!ctx.state_addresses().contains("aws_s3_bucket.metadata"));
    assert_eq!(ctx.sim_objects(), objects, "state rm touched the cloud");
    let plan = ctx.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("aws_s3_bucket.metadata will be created"),
        "{}",
        plan.stdout
    );
    assert!(
        summary_line(&plan.stdout).is_some_and(|l| l.starts_with("Plan: 1 to add")),
        "{}",
        plan.stdout
    );
    ctx.run(&["state", "rm", "aws_s3_bucket.metadata"])
        .expect_code(1);

    // Import brings it back: no changes.
    let import = ctx.run(&["import", "aws_s3_bucket.metadata", &bucket_id]);
    import.ok();
    let plan = ctx.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.code, Some(0), "{}", plan.all());
    let run = ctx.run(&["import", "aws_s3_bucket.metadata", &bucket_id]);
    run.expect_code(1);
    assert!(run.stderr.contains("already managed"), "{}", run.stderr);
    assert_eq!(ctx.sim_objects(), objects);
}

/// `(from, to)` edges of a mermaid flowchart, by label.
fn mermaid_edges(text: &str) -> BTreeSet<(String, String)> {
    let mut labels = BTreeMap::new();
    for l in text.lines() {
        let l = l.trim();
        if let Some((id, rest)) = l.split_once("[\"") {
            labels.insert(id.to_string(), rest.trim_end_matches("\"]").to_string());
        }
    }
    text.lines()
        .filter_map(|l| l.trim().split_once(" --> "))
        .map(|(a, b)| (labels[a].clone(), labels[b].clone()))
        .collect()
}

#[test]
fn graph_formats() {
    let ctx = TestContext::minimal();
    let expected = [
        ("aws_iam_role.cluster", "aws_eks_cluster.main"),
        (
            "aws_eks_cluster.main",
            "aws_iam_openid_connect_provider.eks",
        ),
        (
            "aws_iam_openid_connect_provider.eks",
            "aws_iam_role.flyte_backend",
        ),
        ("aws_s3_bucket.metadata", "aws_iam_role.flyte_backend"),
        ("random_password.db", "aws_db_instance.main"),
        ("aws_db_subnet_group.main", "aws_db_instance.main"),
        ("aws_vpc.main", "aws_subnet.private_0"),
    ];
    let dot = ctx.run(&["graph", "--format", "dot"]);
    dot.ok();
    assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
    for (a, b) in expected {
        assert!(
            dot.stdout.contains(&format!("\"{a}\" -> \"{b}\"")),
            "{a} -> {b} missing:\n{}",
            dot.stdout
        );
    }
    assert!(
        !dot.stdout.contains("\"aws_db_instance.main\" -> "),
        "the DB has no dependents"
    );
    assert_eq!(
        ctx.run(&["graph"]).ok().stdout,
        dot.stdout,
        "dot is the default"
    );

    let mermaid = ctx.run(&["graph", "--format", "mermaid"]);
    mermaid.ok();
    assert!(
        mermaid.stdout.starts_with("flowchart"),
        "{}",
        mermaid.stdout
    );
    let edges = mermaid_edges(&mermaid.stdout);
    for (a, b) in expected {
        assert!(
            edges.contains(&(a.to_string(), b.to_string())),
            "{a} --> {b} missing:\n{}",
            mermaid.stdout
        );
    }
    let dot_edges = dot.stdout.lines().filter(|l| l.contains(" -> ")).count();
    assert_eq!(edges.len(), dot_edges, "both formats have the same edges");

    assert!(!ctx.state_dir().exists(), "graph touched the state");
    assert!(!ctx.sim_path().exists(), "graph called the cloud");
    ctx.run(&["graph", "--format", "svg"]).expect_code_not(0);
}

#[test]
fn destroy_respects_deletion_protection() {
    let protected = MINIMAL.replace("deletion_protection: false", "deletion_protection: true");
    let ctx = TestContext::new(&protected);
    ctx.apply();
    let db_id = ctx.state()["resources"]["aws_db_instance.main"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = ctx.run(&["destroy", "--auto-approve"]);
    run.expect_code(1);
    assert!(run.stderr.contains("deletion_protection"), "{}", run.stderr);
    assert!(
        ctx.sim_objects().contains_key(&db_id),
        "the protected DB was deleted"
    );
    assert!(ctx.state_addresses().contains("aws_db_instance.main"));

    // Turn protection off, apply, destroy: everything goes.
    ctx.write_config(MINIMAL);
    let plan = ctx.run(&["plan"]);
    plan.ok();
    assert!(
        plan.stdout.contains("deletion_protection"),
        "{}",
        plan.stdout
    );
    ctx.apply();
    let run = ctx.run(&["destroy", "--auto-approve"]);
    run.ok();
    assert!(run.stderr.contains("Destroy complete"), "{}", run.stderr);
    assert!(
        ctx.sim_objects().is_empty(),
        "left in the cloud: {:?}",
        ctx.sim_objects()
    );
    assert!(ctx.state_addresses().is_empty());
    assert!(ctx.state()["outputs"].as_object().unwrap().is_empty());
    let again = ctx.run(&["destroy", "--auto-approve"]);
    again.ok();
    let plan = ctx.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
}

#[test]
fn cloud_without_its_section_is_refused() {
    let ctx = TestContext::minimal();
    for cloud in ["gcp", "azure"] {
        let run = ctx.run(&["--cloud", cloud, "plan"]);
        run.expect_code(1);
        assert!(
            run.stderr.contains(&format!("no `{cloud}` section")),
            "{}",
            run.stderr
        );
    }
    // The sandbox goes with `style: sandbox` only.
    let run = ctx.run(&["--cloud", "sandbox", "plan"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("`--cloud sandbox` selects the sandbox but `style` is `single-cluster`"),
        "{}",
        run.stderr
    );
    let run = ctx.run(&["--cloud", "oracle", "plan"]);
    run.expect_code(1);
    assert!(run.stderr.contains("oracle"), "{}", run.stderr);
    assert!(!ctx.state_dir().exists());
    assert!(!ctx.sim_path().exists());
}

/// 0 = success / no changes, 2 = changes (only with `--detailed-exitcode`), 1 = any error.
#[test]
fn exit_codes() {
    let ctx = TestContext::minimal();
    ctx.run(&["plan"]).expect_code(0);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(2);
    ctx.run(&["plan", "--json", "--detailed-exitcode"])
        .expect_code(2);
    ctx.run(&["plan", "--detailed-exitcode", "--lock-timeout", "5x"])
        .expect_code(1);
    ctx.run(&["--help"]).expect_code(0);
    ctx.run(&["--version"]).expect_code(0);
    ctx.run(&["apply", "--auto-approve"]).expect_code(0);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
    ctx.run(&["state", "show", "aws_vpc.nope"]).expect_code(1);
    ctx.run(&["apply", "nope.plan"]).expect_code(1);
    ctx.write_config("name: demo\n");
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(1);
    ctx.write_config(MINIMAL);

    // A usage error is an error too: it must not exit 2, which means "changes".
    let usage_errors: Vec<String> = [
        &["plan", "--detailed-exitcode", "--no-such-flag"][..],
        &["plan", "--detailed-exitcode", "--refresh", "maybe"],
        &["plan", "--detailed-exitcode", "extra-arg"],
    ]
    .iter()
    .map(|args| (args, ctx.run(args)))
    .filter(|(_, run)| run.code != Some(1))
    .map(|(args, run)| format!("{args:?} exited {:?}: {}", run.code, run.stderr.trim()))
    .collect();
    assert!(usage_errors.is_empty(), "{}", usage_errors.join("\n"));
}

fn set_versioning(ctx: &TestContext, address: &str, on: bool) {
    ctx.edit_sim(|v| {
        let objects = v["objects"].as_object_mut().unwrap();
        let obj = objects
            .values_mut()
            .find(|o| o["address"] == address)
            .unwrap_or_else(|| panic!("{address} not in the sim"));
        obj["attributes"]["versioning"] = Value::Bool(on);
    });
}

#[test]
fn drift_is_detected_and_repaired() {
    let ctx = TestContext::minimal();
    ctx.apply();
    set_versioning(&ctx, "aws_s3_bucket.metadata", false);

    let plan = ctx.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("aws_s3_bucket.metadata will be updated in-place"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("~ versioning") && l.contains("false -> true")),
        "{}",
        plan.stdout
    );
    assert_eq!(
        summary_line(&plan.stdout),
        Some("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{}",
        plan.stdout
    );
    let json = parse_json(&ctx.run(&["plan", "--json"]).ok().stdout);
    let change = json["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "aws_s3_bucket.metadata")
        .unwrap()
        .clone();
    assert_eq!(change["action"], "update");
    assert!(
        change["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "drift"),
        "{change:#}"
    );

    // Without refresh the drift is not seen.
    ctx.run(&["plan", "--refresh=false", "--detailed-exitcode"])
        .expect_code(0);

    ctx.apply();
    let obj = ctx
        .sim_objects()
        .into_iter()
        .find(|(_, o)| o["address"] == "aws_s3_bucket.metadata")
        .unwrap()
        .1;
    assert_eq!(obj["attributes"]["versioning"], true);
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}

#[test]
fn deleted_outside_is_recreated() {
    let ctx = TestContext::minimal();
    ctx.apply();
    ctx.edit_sim(|v| {
        let objects = v["objects"].as_object_mut().unwrap();
        objects.retain(|_, o| o["address"] != "aws_iam_role.flyte_tasks");
    });
    let plan = ctx.run(&["plan", "--detailed-exitcode"]);
    plan.expect_code(2);
    assert!(
        plan.stdout
            .contains("aws_iam_role.flyte_tasks will be created"),
        "{}",
        plan.stdout
    );
    assert!(plan.stdout.contains("deleted outside"), "{}", plan.stdout);
    ctx.apply();
    assert!(sim_addresses(&ctx).contains("aws_iam_role.flyte_tasks"));
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}

/// `flyteinfra graph | head` and the like: when the reader of stdout has gone, every
/// command that writes there ends quietly (exit 0, no error) instead of reporting a broken
/// pipe. The pipe's read end is closed before the command starts.
#[test]
fn a_closed_stdout_ends_quietly() {
    let ctx = TestContext::minimal();
    ctx.apply();
    let commands: [&[&str]; 8] = [
        &["graph", "--format", "mermaid"],
        &["graph", "--format", "dot"],
        &["schema"],
        &["schema", "--plan"],
        &["plan"],
        &["plan", "--json"],
        &["output", "--json"],
        &["state", "list"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = ctx
            .command(args, &[])
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
        assert!(
            !stderr.to_lowercase().contains("broken pipe"),
            "{args:?}: {stderr}"
        );
    }
}

/// `--version` names the version and the commit the binary was built from.
#[test]
fn version_names_the_commit() {
    let ctx = TestContext::minimal();
    let run = ctx.run(&["--version"]);
    run.ok();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::util::workspace())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "unknown".to_string(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
        );
    assert_eq!(
        run.stdout.trim(),
        format!("flyteinfra {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// `completions bash` is a script bash loads and that completes subcommands; the other
/// shells get theirs; `man` is a manual page naming every command.
#[test]
fn completions_and_man_page() {
    let ctx = TestContext::minimal();
    let bash = ctx.run(&["completions", "bash"]);
    bash.ok();
    let script = ctx.dir().join("flyteinfra.bash");
    fs::write(&script, &bash.stdout).unwrap();
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source '{}' && COMP_WORDS=(flyteinfra pl) && COMP_CWORD=1 && \
             _flyteinfra flyteinfra pl flyteinfra && echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["plan"],
        "{stdout}"
    );

    for shell in ["zsh", "fish", "powershell"] {
        let r = ctx.run(&["completions", shell]);
        r.ok();
        assert!(r.stdout.contains("flyteinfra"), "{shell}: {}", r.stdout);
    }
    let bad = ctx.run(&["completions", "tcsh"]);
    bad.expect_code(1);

    let man = ctx.run(&["man"]);
    man.ok();
    assert!(man.stdout.contains(".TH flyteinfra 1"), "{}", man.stdout);
    for command in [
        "init",
        "validate",
        "plan",
        "apply",
        "destroy",
        "values",
        "completions",
    ] {
        assert!(
            man.stdout.contains(command),
            "{command} missing from the man page"
        );
    }
}

/// After apply: `NEXT-STEPS-<cloud>.md` beside the values, and `kubeconfig` printed,
/// written (0600) or merged into the kubeconfig kubectl uses, keeping everything else.
#[test]
fn kubeconfig_and_next_steps() {
    let ctx = TestContext::minimal();
    let before = ctx.run(&["kubeconfig"]);
    before.expect_code(1);
    assert!(
        before.stderr.contains("flyteinfra apply"),
        "{}",
        before.stderr
    );

    let apply = ctx.run(&["apply", "--auto-approve"]);
    apply.ok();
    let steps = fs::read_to_string(ctx.dir().join("NEXT-STEPS-aws.md")).unwrap();
    assert!(apply.stderr.contains(&steps), "{}", apply.stderr);
    let values = ctx.dir().join("flyte-values-aws.yaml");
    assert!(
        steps.contains(&format!("--create-namespace -f {}", values.display())),
        "{steps}"
    );
    assert!(
        steps.contains("flyteinfra kubeconfig --cloud aws --merge"),
        "{steps}"
    );

    let printed = ctx.run(&["kubeconfig"]);
    printed.ok();
    let doc: Value = serde_saphyr::from_str(&printed.stdout).unwrap();
    let json = parse_json(&ctx.run(&["output", "--json"]).stdout);
    let outputs: BTreeMap<&str, &Value> = json
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, o)| (k.as_str(), &o["value"]))
        .collect();
    let arn = outputs["cluster_arn"].as_str().unwrap();
    assert_eq!(doc["current-context"], arn);
    assert_eq!(
        &doc["clusters"][0]["cluster"]["server"],
        outputs["cluster_endpoint"]
    );
    let exec = &doc["users"][0]["user"]["exec"];
    assert_eq!(exec["command"], "aws");
    assert_eq!(
        exec["args"],
        serde_json::json!([
            "eks",
            "get-token",
            "--cluster-name",
            outputs["cluster_name"],
            "--region",
            outputs["region"]
        ])
    );

    let out = ctx.dir().join("kube.yaml");
    ctx.run(&["kubeconfig", "--out", out.to_str().unwrap()])
        .ok();
    assert_eq!(crate::util::mode(&out), 0o600);
    assert_eq!(fs::read_to_string(&out).unwrap(), printed.stdout);

    // Merged into the file `KUBECONFIG` names, next to someone else's context.
    let kube = ctx.dir().join("kube").join("config");
    fs::create_dir_all(kube.parent().unwrap()).unwrap();
    let theirs = "apiVersion: v1\nkind: Config\nclusters:\n- name: kind\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: kind\n  context:\n    cluster: kind\n    user: kind\nusers:\n- name: kind\n  user:\n    token: abc\ncurrent-context: kind\n";
    fs::write(&kube, theirs).unwrap();
    let env = [("KUBECONFIG", kube.to_str().unwrap())];
    ctx.run_env(&["kubeconfig", "--merge"], &env).ok();
    let merged: Value = serde_saphyr::from_str(&fs::read_to_string(&kube).unwrap()).unwrap();
    assert_eq!(merged["current-context"], arn);
    let names = |list: &str| -> Vec<String> {
        merged[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(names(list), ["kind", arn], "{list}");
    }
    assert_eq!(merged["users"][0]["user"]["token"], "abc");
    // Without --merge the file is never touched.
    let kept = fs::read_to_string(&kube).unwrap();
    ctx.run_env(&["kubeconfig"], &env).ok();
    assert_eq!(fs::read_to_string(&kube).unwrap(), kept);
}

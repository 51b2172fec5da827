//! `flyteinfra schema --plan` documents `plan --json`: real plans of every kind validate
//! against it with a real JSON Schema validator (Python's `jsonschema`, draft 2020-12, in
//! the project's `.venv`, installed by `scripts/test`), also with every object closed, so
//! the schema names every field the plan has; and a plan it does not describe fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use flyteinfra_azure_double::AzureDouble;
use serde_json::Value;

use crate::util::{TestContext, parse_json, workspace};

/// Validates each JSON file against the schema file, first as published, then with
/// `additionalProperties: false` added to every object that lists properties. Prints one
/// line per failure.
const VALIDATE: &str = r#"
import copy, json, sys
from jsonschema import Draft202012Validator

def closed(node):
    if isinstance(node, dict):
        node = {k: closed(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [closed(v) for v in node]
    return node

schema = json.load(open(sys.argv[1]))
Draft202012Validator.check_schema(schema)
validators = {"published": Draft202012Validator(schema),
              "closed": Draft202012Validator(closed(copy.deepcopy(schema)))}
failed = 0
for path in sys.argv[2:]:
    doc = json.load(open(path))
    for name, v in validators.items():
        for e in v.iter_errors(doc):
            failed += 1
            print(f"{path} ({name}): {list(e.absolute_path)}: {e.message}")
sys.exit(1 if failed else 0)
"#;

fn python() -> PathBuf {
    let python = workspace().join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "\n\n*** Python's jsonschema is not in .venv. Install it with\n\
         ***     .venv/bin/pip install jsonschema==4.26.0\n\
         *** or run scripts/test, which does that.\n\n"
    );
    python
}

/// Runs the validator; `Ok` or the failures it printed.
fn validate(schema: &Path, plans: &[PathBuf]) -> Result<(), String> {
    let out = Command::new(python())
        .arg("-c")
        .arg(VALIDATE)
        .arg(schema)
        .args(plans)
        .output()
        .expect("run python");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `plan --json` with `args`, saved under `name`.
fn save_plan(ctx: &TestContext, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let run = ctx.run(&all);
    assert!(matches!(run.code, Some(0 | 2)), "{name}: {}", run.stderr);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, &run.stdout).unwrap();
    path
}

#[test]
fn real_plans_of_every_kind_validate_against_the_plan_schema() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = TestContext::minimal();
    let schema = dir.path().join("plan-schema.json");
    let printed = ctx.run(&["schema", "--plan"]).ok().stdout.clone();
    let parsed = parse_json(&printed);
    assert_eq!(parsed["properties"]["format_version"]["const"], 2);
    std::fs::write(&schema, &printed).unwrap();

    let mut plans = vec![save_plan(&ctx, dir.path(), "create", &[])];
    ctx.apply();
    plans.push(save_plan(&ctx, dir.path(), "no-op", &[]));
    plans.push(save_plan(
        &ctx,
        dir.path(),
        "replace",
        &["--replace", "aws_s3_bucket.metadata"],
    ));
    plans.push(save_plan(&ctx, dir.path(), "destroy", &["--destroy"]));
    // Behind flyteinfra's back: a bucket deleted, a VPC attribute changed.
    let state = ctx.state();
    let id = |a: &str| {
        state["resources"][a]["attributes"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (bucket, vpc) = (id("aws_s3_bucket.metadata"), id("aws_vpc.main"));
    ctx.edit_sim(|sim| {
        let objects = sim["objects"].as_object_mut().unwrap();
        objects.remove(&bucket);
        objects[&vpc]["attributes"]["cidr_block"] = "10.99.0.0/16".into();
    });
    plans.push(save_plan(
        &ctx,
        dir.path(),
        "refresh-only",
        &["--refresh-only"],
    ));
    plans.push(save_plan(&ctx, dir.path(), "drift", &[]));

    // A real provider's plan: unknown-after-apply and sensitive values, Azure's types.
    let double = AzureDouble::start();
    let azure = TestContext::azure(
        &crate::azure::without_protection(&crate::azure::unique()),
        double.url(),
    );
    plans.push(save_plan(&azure, dir.path(), "azure-create", &[]));

    // The plans hold what the schema must describe: every action, notes, sensitivity.
    let all: String = plans
        .iter()
        .map(|p| parse_json(&std::fs::read_to_string(p).unwrap()).to_string())
        .collect();
    for needle in [
        r#""action":"create""#,
        r#""action":"no-op""#,
        r#""action":"replace""#,
        r#""action":"delete""#,
        r#""action":"update""#,
        r#""kind":"replace_requested""#,
        r#""kind":"deleted_outside""#,
        r#""kind":"changed_outside""#,
        r#""kind":"expected_duration""#,
        r#""sensitive":true"#,
        r#""after_unknown":true"#,
    ] {
        assert!(all.contains(needle), "no plan has {needle}");
    }
    validate(&schema, &plans).unwrap_or_else(|e| panic!("{e}"));

    // The schema can fail: an unknown action, a missing field, an undocumented field.
    let mut bad: Value = parse_json(&std::fs::read_to_string(&plans[0]).unwrap());
    bad["resource_changes"][0]["action"] = "explode".into();
    let p = dir.path().join("bad-action.json");
    std::fs::write(&p, bad.to_string()).unwrap();
    let err = validate(&schema, &[p]).unwrap_err();
    assert!(err.contains("'explode' is not one of"), "{err}");

    let mut bad: Value = parse_json(&std::fs::read_to_string(&plans[0]).unwrap());
    bad["summary"].as_object_mut().unwrap().remove("add");
    bad["resource_changes"][0]["surprise"] = true.into();
    let p = dir.path().join("bad-shape.json");
    std::fs::write(&p, bad.to_string()).unwrap();
    let err = validate(&schema, &[p]).unwrap_err();
    assert!(err.contains("'add' is a required property"), "{err}");
    assert!(
        err.contains("(closed)") && err.contains("surprise"),
        "{err}"
    );
}

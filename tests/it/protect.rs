//! Deletion protection off, then destroy, as one planned step: `destroy --disable-protection`
//! (and `plan --destroy --disable-protection`, saved and applied) on the simulated cloud, on
//! a protected RDS instance (moto) and a protected Cloud SQL instance (the GCP test double).
//! Without the flag the destroy is refused before any call that changes the cloud, naming
//! the flag; a run that died after turning protection off does not block the next destroy.

use flyteinfra_gcp_double::GcpDouble;
use serde_json::Value;

use crate::ask_first::assert_reads_only;
use crate::aws::{APPLY, clients, final_snapshots, listing, rt, unique_name};
use crate::util::{MINIMAL, TestContext, parse_json};

const PROTECTED: &str = "deletion_protection: true";

fn protected(config: &str) -> String {
    let out = config.replace("deletion_protection: false", PROTECTED);
    assert_ne!(out, config, "the config sets no deletion protection");
    out
}

/// The text a protected database's delete shows with the flag.
const TURNED_OFF: &str = "deletion protection will be turned off (`deletion_protection = false`), then the database deleted";

/// The single `protection_disabled` note of a JSON plan.
fn protection_note(json: &Value) -> Value {
    let notes: Vec<&Value> = json["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "protection_disabled")
        .collect();
    assert_eq!(notes.len(), 1, "{json:#}");
    notes[0].clone()
}

#[test]
fn protect_flag_needs_destroy_and_is_explained_in_help() {
    let ctx = TestContext::new(MINIMAL);
    let run = ctx.run(&["plan", "--disable-protection"]);
    run.expect_code_not(0);
    assert!(run.stderr.contains("--destroy"), "{}", run.stderr);
    let help = ctx.run(&["destroy", "--help"]);
    help.ok();
    assert!(
        help.stdout.contains("--disable-protection") && help.stdout.contains("final snapshot"),
        "{}",
        help.stdout
    );
    let help = ctx.run(&["plan", "--help"]);
    assert!(
        help.stdout.contains("--disable-protection"),
        "{}",
        help.stdout
    );
}

/// The simulated cloud: the refusal names the flag and changes nothing; with the flag the
/// protection goes off (recorded in state) and the database is deleted; protection turned
/// off in the cloud by a run that died before recording it does not block the next destroy.
#[test]
fn protect_sim_disable_protection_and_a_run_that_died_half_way() {
    let ctx = TestContext::new(&protected(MINIMAL));
    ctx.apply();
    let db = "aws_db_instance.main";
    let refused = ctx.run(&["destroy", "--auto-approve"]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("--disable-protection"),
        "{}",
        refused.stderr
    );
    assert_eq!(ctx.sim()["calls"]["delete"].as_u64().unwrap_or(0), 0);
    assert_eq!(ctx.sim()["calls"]["update"].as_u64().unwrap_or(0), 0);

    let plan = ctx.run(&["plan", "--destroy", "--disable-protection"]);
    plan.ok();
    assert!(plan.stdout.contains(TURNED_OFF), "{}", plan.stdout);
    let destroyed = ctx.run(&["destroy", "--disable-protection", "--auto-approve"]);
    destroyed.ok();
    assert!(
        ctx.state_addresses().is_empty(),
        "{:?}",
        ctx.state_addresses()
    );
    assert!(ctx.sim_objects().is_empty(), "{:?}", ctx.sim_objects());
    assert_eq!(ctx.sim()["calls"]["update"].as_u64(), Some(1));

    // A run that turned protection off in the cloud and died before recording it: state
    // says on, the cloud off. The next destroy reads it and goes ahead without the flag.
    ctx.apply();
    ctx.edit_sim(|v| {
        let objects = v["objects"].as_object_mut().unwrap();
        let obj = objects.values_mut().find(|o| o["address"] == db).unwrap();
        obj["attributes"]["deletion_protection"] = Value::Bool(false);
    });
    assert_eq!(
        ctx.state()["resources"][db]["inputs"]["deletion_protection"],
        true
    );
    let plan = ctx.run(&["plan", "--destroy"]);
    assert!(
        !plan.stdout.contains("deletion protection"),
        "{}",
        plan.stdout
    );
    let destroyed = ctx.run(&["destroy", "--auto-approve"]);
    destroyed.ok();
    assert!(ctx.state_addresses().is_empty());
    assert!(ctx.sim_objects().is_empty(), "{:?}", ctx.sim_objects());
}

/// moto through the AWS test double: a protected RDS instance (and what it needs).
#[test]
fn protect_rds_destroy_disable_protection_leaves_the_final_snapshot_only() {
    let _turn = APPLY.lock().unwrap_or_else(|e| e.into_inner());
    let rt = rt();
    let c = rt.block_on(clients());
    let name = unique_name();
    let ctx = TestContext::aws(&protected(&crate::aws::config(&name)));
    // The account may hold other tests' objects (moto's shared OIDC provider): compare.
    let baseline = rt.block_on(listing(&c, &name));
    ctx.run(&[
        "apply",
        "--auto-approve",
        "--target",
        "aws_db_instance.main",
    ])
    .expect_code(0);
    let db_id = format!("{name}-db");
    assert!(
        rt.block_on(listing(&c, &name))
            .contains(&format!("db:{db_id}"))
    );

    // Without the flag: refused before any call that changes anything, naming the flag.
    let log = [("FLYTEINFRA_LOG_CALLS", "1")];
    let refused = ctx.run_env(&["destroy", "--auto-approve"], &log);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("--disable-protection"),
        "{}",
        refused.stderr
    );
    assert_reads_only(&refused);

    // The plan names the step and the snapshot; the destroy does exactly that.
    let plan = ctx.run(&["plan", "--destroy", "--disable-protection", "--json"]);
    plan.ok();
    let note = protection_note(&parse_json(&plan.stdout));
    assert_eq!(note["address"], "aws_db_instance.main");
    assert_eq!(note["field"], "deletion_protection");
    let snapshot = note["final_snapshot"].as_str().unwrap().to_string();
    assert!(
        snapshot.starts_with(&format!("{name}-db-final-")),
        "{snapshot}"
    );
    let text = ctx.run(&["plan", "--destroy", "--disable-protection"]);
    assert!(
        text.stdout.contains(TURNED_OFF) && text.stdout.contains(&snapshot),
        "{}",
        text.stdout
    );
    let destroyed = ctx.run(&["destroy", "--disable-protection", "--auto-approve"]);
    destroyed.expect_code(0);
    assert!(
        destroyed.stderr.contains(&snapshot),
        "the plan shown before the destroy names the snapshot: {}",
        destroyed.stderr
    );
    assert_eq!(ctx.state()["resources"], serde_json::json!({}));
    assert_eq!(rt.block_on(listing(&c, &name)), baseline);
    assert_eq!(rt.block_on(final_snapshots(&c, &name)), [snapshot]);
}

/// The GCP test double: a protected Cloud SQL instance (and what it needs), destroyed
/// through a saved plan.
#[test]
fn protect_cloud_sql_saved_destroy_disable_protection_leaves_nothing() {
    let double = GcpDouble::start();
    let name = crate::gcp::unique();
    let project = format!("{name}-proj");
    let ctx = TestContext::gcp(&protected(&crate::gcp::config(&name, "")), double.url());
    let sql = "gcp_sql_database_instance.main";
    ctx.run(&["apply", "--auto-approve", "--target", sql])
        .expect_code(0);
    assert_eq!(
        ctx.state()["resources"][sql]["attributes"]["deletion_protection"],
        true
    );

    // Without the flag: refused, nothing in the double changed.
    let before = double.shared().lock().objects.clone();
    let refused = ctx.run(&["destroy", "--auto-approve"]);
    refused.expect_code(1);
    assert!(
        refused.stderr.contains("--disable-protection"),
        "{}",
        refused.stderr
    );
    assert!(
        double.shared().lock().objects == before,
        "the refused destroy changed the double"
    );

    // Saved with the flag, applied as saved: protection off, then everything deleted.
    let plan = ctx.run(&[
        "plan",
        "--destroy",
        "--disable-protection",
        "--out",
        "d.plan",
    ]);
    plan.ok();
    assert!(
        plan.stdout.contains(&format!(
            "`{sql}`: deletion protection will be turned off (`deletion_protection = false`), then the database deleted."
        )),
        "{}",
        plan.stdout
    );
    ctx.run(&["apply", "d.plan"]).expect_code(0);
    assert_eq!(ctx.state()["resources"], serde_json::json!({}));
    let left = crate::gcp::leftovers(&double, &project);
    assert!(left.is_empty(), "left behind: {left:?}");
}

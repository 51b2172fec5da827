//! The database password never reaches a terminal, and every file holding it is private.

use std::fs;

use crate::util::{MINIMAL, TestContext, mode};

#[test]
fn the_db_password_is_never_printed() {
    let ctx = TestContext::minimal();
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut record = |what: &str, ctx: &TestContext, args: &[&str], code: i32| {
        let run = ctx.run(args);
        run.expect_code(code);
        outputs.push((what.to_string(), run.all()));
    };

    record("plan --out", &ctx, &["plan", "--out", "first.plan"], 0);
    record("apply PLANFILE", &ctx, &["apply", "first.plan"], 0);

    let state = ctx.state();
    let password = state["resources"]["random_password.db"]["attributes"]["result"]["$sensitive"]
        .as_str()
        .expect("random_password.db has a `result`")
        .to_string();
    assert!(password.len() >= 16, "a real password: {password:?}");
    // The password really is in the cloud (the DB got it) and in the state, marked secret
    // there (`{"$sensitive": …}`) wherever it was copied: the DB's input and attribute.
    let db = &state["resources"]["aws_db_instance.main"];
    assert_eq!(
        db["attributes"]["password"]["$sensitive"],
        password.as_str()
    );
    assert_eq!(db["inputs"]["password"]["$sensitive"], password.as_str());
    assert!(
        fs::read_to_string(ctx.sim_path())
            .unwrap()
            .contains(&password)
    );

    record("plan", &ctx, &["plan"], 0);
    record("plan --json", &ctx, &["plan", "--json"], 0);
    record("apply (no-op)", &ctx, &["apply", "--auto-approve"], 0);
    record("output", &ctx, &["output"], 0);
    record("output --json", &ctx, &["output", "--json"], 0);
    record("output db_password", &ctx, &["output", "db_password"], 0);
    record(
        "output db_password --json",
        &ctx,
        &["output", "db_password", "--json"],
        0,
    );
    record("state list", &ctx, &["state", "list"], 0);
    record(
        "state show random_password.db",
        &ctx,
        &["state", "show", "random_password.db"],
        0,
    );
    record(
        "state show aws_db_instance.main",
        &ctx,
        &["state", "show", "aws_db_instance.main"],
        0,
    );

    // A change to the database: the DB is in the plan and the apply.
    ctx.write_config(&MINIMAL.replace(
        "  deletion_protection: false\n",
        "  deletion_protection: false\n  backup_retention_days: 14\n",
    ));
    record(
        "plan (db change)",
        &ctx,
        &["plan", "--detailed-exitcode"],
        2,
    );
    record("plan --json (db change)", &ctx, &["plan", "--json"], 0);
    record(
        "plan --out (db change)",
        &ctx,
        &["plan", "--out", "second.plan"],
        0,
    );
    record("apply (db change)", &ctx, &["apply", "second.plan"], 0);

    // Drift of the password itself (changed in the console).
    ctx.edit_sim(|v| {
        for o in v["objects"].as_object_mut().unwrap().values_mut() {
            if o["address"] == "aws_db_instance.main" {
                o["attributes"]["password"] = "changed-by-hand-123".into();
            }
        }
    });
    record("plan (password drift)", &ctx, &["plan"], 0);
    record("plan --json (password drift)", &ctx, &["plan", "--json"], 0);
    record(
        "apply (password drift)",
        &ctx,
        &["apply", "--auto-approve"],
        0,
    );

    // Files holding the password are private.
    for f in [
        ctx.state_path(),
        ctx.backup_path(),
        ctx.dir().join("first.plan"),
        ctx.dir().join("second.plan"),
    ] {
        assert_eq!(mode(&f), 0o600, "{} is not private", f.display());
    }
    assert_eq!(mode(&ctx.state_dir()), 0o700);
    assert!(fs::read_to_string(ctx.dir().join("second.plan")).is_ok());

    record("destroy", &ctx, &["destroy", "--auto-approve"], 0);
    record("plan after destroy", &ctx, &["plan"], 0);

    for (what, text) in &outputs {
        assert!(
            !text.contains(&password),
            "`{what}` printed the DB password:\n{text}"
        );
        assert!(
            !text.contains("changed-by-hand-123"),
            "`{what}` printed the drifted DB password:\n{text}"
        );
    }
    // Where the password is shown at all, it is redacted.
    let shown = |what: &str| &outputs.iter().find(|(w, _)| w == what).unwrap().1;
    for what in [
        "output",
        "output --json",
        "output db_password",
        "state show random_password.db",
        "state show aws_db_instance.main",
    ] {
        assert!(
            shown(what).contains("(sensitive)"),
            "{what}: {}",
            shown(what)
        );
    }
    // The lease record (the holder's name, never a secret) is deleted on release.
    assert!(!ctx.lock_path().exists());
    // The password is not left in the state after destroy.
    assert!(
        !fs::read_to_string(ctx.state_path())
            .unwrap()
            .contains(&password)
    );
}

//! `state.encryption` through the CLI, with the simulated cloud: the state and saved plan
//! files hold only sealed bytes, the key holder's commands work as before, and a missing
//! or wrong key is one clear error that changes nothing. A passphrase, and a KMS key in
//! moto's KMS.

use std::fs;

use crate::util::{MINIMAL, TestContext, mode};

const PW_ENV: &str = "FI_STATE_PASSPHRASE";

fn passphrase_config() -> String {
    format!("{MINIMAL}state:\n  encryption:\n    passphrase_env: {PW_ENV}\n")
}

/// The DB password, as the simulated cloud's database got it.
fn db_password(ctx: &TestContext) -> String {
    let sim = fs::read_to_string(ctx.sim_path()).unwrap();
    let at = sim
        .find("\"password\":{\"$sensitive\":\"")
        .expect("the sim holds the DB password");
    let rest = &sim[at + "\"password\":{\"$sensitive\":\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[test]
fn a_passphrase_seals_state_and_plans_and_the_key_holder_works_as_before() {
    let ctx = TestContext::new(&passphrase_config());
    let key = [(PW_ENV, "correct horse battery staple")];

    ctx.run_env(&["plan", "--out", "first.plan"], &key).ok();
    let plan = fs::read(ctx.dir().join("first.plan")).unwrap();
    let plan_text = String::from_utf8_lossy(&plan);
    assert!(plan_text.contains("\"flyteinfra_sealed\""), "{plan_text}");
    assert!(
        plan_text.contains(PW_ENV),
        "the header names the key source"
    );
    ctx.run_env(&["apply", "first.plan"], &key).ok();

    let stored = fs::read_to_string(ctx.state_path()).unwrap();
    assert!(stored.contains("\"flyteinfra_sealed\""), "{stored}");
    assert_eq!(mode(&ctx.state_path()) & 0o777, 0o600);
    let password = db_password(&ctx);
    assert!(password.len() >= 16, "{password:?}");
    for (what, text) in [("state", &stored), ("plan", &plan_text.to_string())] {
        assert!(!text.contains(&password), "{what} holds the password");
        assert!(
            !text.contains("aws_db_instance"),
            "{what} shows its resources"
        );
    }
    // The copy `state pull --out` keeps for `push` is sealed too.
    ctx.run_env(&["state", "pull", "--out", "copy.json"], &key)
        .ok();
    let pulled = fs::read_to_string(ctx.dir().join("copy.json")).unwrap();
    assert!(pulled.contains("\"flyteinfra_sealed\"") && !pulled.contains(&password));

    // The key holder's read commands work as before.
    let list = ctx.run_env(&["state", "list"], &key);
    list.ok();
    assert!(
        list.stdout.contains("aws_db_instance.main"),
        "{}",
        list.all()
    );
    let out = ctx.run_env(&["output", "--json"], &key);
    out.ok();
    assert!(!out.all().contains(&password));
    let show = ctx.run_env(&["state", "show", "aws_db_instance.main"], &key);
    show.ok();
    assert!(!show.all().contains(&password));
    ctx.run_env(&["plan"], &key).ok();
    // `state push` takes the sealed copy back.
    ctx.run_env(&["state", "push", "copy.json"], &key).ok();
}

#[test]
fn a_missing_or_wrong_passphrase_is_one_clear_error_and_changes_nothing() {
    let ctx = TestContext::new(&passphrase_config());
    ctx.run_env(&["apply", "--auto-approve"], &[(PW_ENV, "right one")])
        .ok();
    ctx.run_env(&["plan", "--out", "p.plan"], &[(PW_ENV, "right one")])
        .ok();
    let before = fs::read(ctx.state_path()).unwrap();
    let sim_before = fs::read(ctx.sim_path()).unwrap();

    // Unset: a located error before anything is read.
    let run = ctx.run(&["plan"]);
    run.expect_code_not(0);
    let text = run.all();
    assert!(
        text.contains("flyteinfra.yaml:9:")
            && text.contains(&format!("names `{PW_ENV}`, which is not set")),
        "{text}"
    );
    for args in [
        &["plan"][..],
        &["apply", "--auto-approve"],
        &["apply", "p.plan"],
        &["state", "list"],
        &["output"],
    ] {
        let run = ctx.run_env(args, &[(PW_ENV, "wrong one")]);
        run.expect_code_not(0);
        let text = run.all();
        assert!(
            text.contains("wrong passphrase") && text.contains(PW_ENV),
            "{args:?}: {text}"
        );
        assert!(
            !text.contains("wrong one") && !text.contains("panicked"),
            "{text}"
        );
    }
    assert_eq!(
        fs::read(ctx.state_path()).unwrap(),
        before,
        "state unchanged"
    );
    assert_eq!(
        fs::read(ctx.sim_path()).unwrap(),
        sim_before,
        "no cloud call"
    );

    // The same state with encryption taken out of the config: it says which key it needs.
    ctx.write_config(MINIMAL);
    let run = ctx.run(&["state", "list"]);
    run.expect_code_not(0);
    assert!(
        run.all().contains(&format!("passphrase key `{PW_ENV}`"))
            && run.all().contains("set `state.encryption`"),
        "{}",
        run.all()
    );
}

#[test]
fn turning_encryption_on_seals_the_existing_state_at_the_next_write() {
    let ctx = TestContext::minimal();
    ctx.apply();
    assert!(
        !fs::read_to_string(ctx.state_path())
            .unwrap()
            .contains("flyteinfra_sealed")
    );
    ctx.write_config(&passphrase_config());
    let key = [(PW_ENV, "now sealed")];
    // A plain state reads with the key configured; a change writes it sealed.
    ctx.run_env(&["state", "list"], &key).ok();
    ctx.run_env(&["state", "rm", "random_password.db"], &key)
        .ok();
    assert!(
        fs::read_to_string(ctx.state_path())
            .unwrap()
            .contains("flyteinfra_sealed")
    );
    ctx.run_env(&["state", "list"], &key).ok();
}

#[test]
fn an_aws_kms_key_seals_the_state_through_the_cli() {
    let (alias, _, arn) = crate::kms_state::new_key();
    let ctx = TestContext::new(&format!(
        "{MINIMAL}state:\n  encryption:\n    aws_kms:\n      key_id: {alias}\n      region: us-east-1\n"
    ));
    let home = ctx.dir().display().to_string();
    let aws = [
        ("AWS_ENDPOINT_URL", crate::moto::url()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("HOME", home.as_str()),
    ];
    ctx.run_env(&["apply", "--auto-approve"], &aws).ok();
    let stored = fs::read_to_string(ctx.state_path()).unwrap();
    assert!(
        stored.contains("\"aws_kms\"") && stored.contains(&alias),
        "{stored}"
    );
    let password = db_password(&ctx);
    assert!(!stored.contains(&password));
    ctx.run_env(&["state", "list"], &aws).ok();

    // The config now names another key (which exists): the state does not open with it.
    let (other, _, _) = crate::kms_state::new_key();
    ctx.write_config(&format!(
        "{MINIMAL}state:\n  encryption:\n    aws_kms:\n      key_id: {other}\n      region: us-east-1\n"
    ));
    let run = ctx.run_env(&["state", "list"], &aws);
    run.expect_code_not(0);
    assert!(
        run.all().contains(&arn)
            && run
                .all()
                .contains("set `state.encryption` to the key it was sealed with"),
        "{}",
        run.all()
    );
    // And a key id that does not exist: one clear error naming it.
    ctx.write_config(&format!(
        "{MINIMAL}state:\n  encryption:\n    aws_kms:\n      key_id: alias/no-such-key\n      region: us-east-1\n"
    ));
    let run = ctx.run_env(&["state", "list"], &aws);
    run.expect_code_not(0);
    assert!(run.all().contains("alias/no-such-key"), "{}", run.all());
    assert_eq!(fs::read_to_string(ctx.state_path()).unwrap(), stored);
}

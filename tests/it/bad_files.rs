//! Hand-made bad state and plan files (`tests/fixtures/state/bad`, `tests/fixtures/plans/bad`):
//! each is refused with exit 1 and one error naming the file, the field and its
//! `LINE:COLUMN`, without a call to the (simulated) cloud and without touching state.
//!
//! Each `NAME.json` has a `NAME.expect`: line 1 the `LINE:COLUMN` the error must give, line 2
//! a part of the message (the field and what is wrong with it).

use std::fs;
use std::path::PathBuf;

use crate::util::{Run, TestContext, workspace};

struct Case {
    file: PathBuf,
    name: String,
    position: String,
    message: String,
}

fn corpus(dir: &str) -> Vec<Case> {
    let dir = workspace().join("tests/fixtures").join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let expect_path = file.with_extension("expect");
            let expect = fs::read_to_string(&expect_path)
                .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
            let mut lines = expect.lines();
            Case {
                name: file.file_name().unwrap().to_str().unwrap().to_string(),
                position: lines
                    .next()
                    .expect(".expect line 1: LINE:COLUMN")
                    .trim()
                    .into(),
                message: lines.next().expect(".expect line 2: message").trim().into(),
                file,
            }
        })
        .collect()
}

/// Whether `run` failed as a refused file must: exit 1 (no signal, no panic), the file,
/// the location and the message in stderr. Returns what is wrong, if anything.
fn refused(run: &Run, file: &str, case: &Case, what: &str) -> Option<String> {
    assert_eq!(run.signal, None, "{} ({what}): died of a signal", case.name);
    run.expect_code(1);
    let located = format!("at {}", case.position);
    let ok = run.stderr.contains(file)
        && run.stderr.contains(&located)
        && run.stderr.contains(&case.message);
    (!ok).then(|| {
        format!(
            "{} ({what}): expected `{file}`, `{located}` and `{}` in stderr:\n{}",
            case.name, case.message, run.stderr
        )
    })
}

#[test]
fn bad_state_files_are_refused_naming_the_field() {
    let cases = corpus("state/bad");
    assert!(
        cases.len() >= 15,
        "the state corpus shrank: {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let ctx = TestContext::minimal();
        fs::create_dir_all(ctx.state_dir()).unwrap();
        let bytes = fs::read(&case.file).unwrap();
        fs::write(ctx.state_path(), &bytes).unwrap();
        let state = ctx.state_path().display().to_string();
        for cmd in [
            &["plan"][..],
            &["apply", "--auto-approve"],
            &["destroy", "--auto-approve"],
        ] {
            let run = ctx.run(cmd);
            failures.extend(refused(&run, &state, case, &cmd.join(" ")));
            assert_eq!(
                fs::read(ctx.state_path()).unwrap(),
                bytes,
                "{} {cmd:?}: the state file was rewritten",
                case.name
            );
            assert!(!ctx.backup_path().exists(), "{} {cmd:?}", case.name);
            assert!(
                !ctx.sim_path().exists(),
                "{} {cmd:?}: the (simulated) cloud was called",
                case.name
            );
        }
        // Commands that call no provider judge everything but the types (so that
        // `state rm` can remove a resource of a type this build does not know).
        let run = ctx.run(&["state", "list"]);
        if case.name == "unknown-type.json" {
            run.ok();
            assert!(run.stdout.contains("aws_teleporter.main"), "{}", run.stdout);
        } else {
            failures.extend(refused(&run, &state, case, "state list"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The error for an unknown type says how to get past it; doing so works.
#[test]
fn a_resource_of_an_unknown_type_can_be_forgotten_as_the_error_says() {
    let ctx = TestContext::minimal();
    fs::create_dir_all(ctx.state_dir()).unwrap();
    let bad = workspace().join("tests/fixtures/state/bad/unknown-type.json");
    fs::copy(bad, ctx.state_path()).unwrap();
    let run = ctx.run(&["plan"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("`flyteinfra state rm aws_teleporter.main` forgets the resource"),
        "{}",
        run.stderr
    );
    ctx.run(&["state", "rm", "aws_teleporter.main"]).ok();
    let run = ctx.run(&["plan"]);
    run.ok();
    assert!(!ctx.state_addresses().contains("aws_teleporter.main"));
}

#[test]
fn bad_plan_files_are_refused_naming_the_field() {
    let cases = corpus("plans/bad");
    assert!(cases.len() >= 8, "the plan corpus shrank: {}", cases.len());
    let state = fs::read(workspace().join("tests/fixtures/plans/state.json")).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let ctx = TestContext::minimal();
        fs::create_dir_all(ctx.state_dir()).unwrap();
        fs::write(ctx.state_path(), &state).unwrap();
        let plan = ctx.dir().join(&case.name);
        fs::copy(&case.file, &plan).unwrap();
        let run = ctx.run(&["apply", plan.to_str().unwrap()]);
        failures.extend(refused(
            &run,
            &plan.display().to_string(),
            case,
            "apply PLANFILE",
        ));
        assert_eq!(fs::read(ctx.state_path()).unwrap(), state, "{}", case.name);
        assert!(!ctx.backup_path().exists(), "{}", case.name);
        assert!(
            !ctx.sim_path().exists(),
            "{}: the cloud was called",
            case.name
        );
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The plan the bad ones were made from passes every check of the file: it is refused
/// only later, because it was not made from this config.
#[test]
fn the_plan_the_bad_ones_were_made_from_is_read() {
    let ctx = TestContext::minimal();
    fs::create_dir_all(ctx.state_dir()).unwrap();
    fs::copy(
        workspace().join("tests/fixtures/plans/state.json"),
        ctx.state_path(),
    )
    .unwrap();
    let plan = ctx.dir().join("good.json");
    fs::copy(workspace().join("tests/fixtures/plans/good.json"), &plan).unwrap();
    let run = ctx.run(&["apply", plan.to_str().unwrap()]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("changed since the plan was saved"),
        "{}",
        run.stderr
    );
    assert!(!ctx.sim_path().exists());
}

/// Against the real AWS provider, a bad state file or plan file is reported before the
/// first call (the credentials check included): the endpoint here is a closed port, so any
/// call would end the run with a connection error instead, and a session would print its
/// call count.
#[test]
fn aws_bad_files_are_refused_before_any_call() {
    let closed = [("AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    let ctx = TestContext::aws(&crate::aws::config(&crate::aws::unique_name()));
    fs::create_dir_all(ctx.state_dir()).unwrap();
    let bad_state = workspace().join("tests/fixtures/state/bad/truncated.json");
    fs::copy(&bad_state, ctx.state_path()).unwrap();
    let run = ctx.run_env(&["plan"], &closed);
    run.expect_code(1);
    let state = ctx.state_path().display().to_string();
    assert!(run.stderr.contains(&state), "{}", run.stderr);
    assert!(run.stderr.contains("is truncated"), "{}", run.stderr);
    assert!(!run.stderr.contains("AWS API calls"), "{}", run.stderr);
    assert!(!run.stderr.contains("credentials"), "{}", run.stderr);

    fs::remove_file(ctx.state_path()).unwrap();
    let plan = ctx.dir().join("bad.plan");
    fs::copy(
        workspace().join("tests/fixtures/plans/bad/truncated.json"),
        &plan,
    )
    .unwrap();
    let run = ctx.run_env(&["apply", plan.to_str().unwrap()], &closed);
    run.expect_code(1);
    assert!(run.stderr.contains("bad.plan"), "{}", run.stderr);
    assert!(!run.stderr.contains("AWS API calls"), "{}", run.stderr);
    assert!(!ctx.state_path().exists());
}

//! Bad configs and bad state files: exit 1 with a located message, no panic, no state
//! written, no API call.

use std::fs;
use std::path::PathBuf;

use crate::util::{MINIMAL, Run, TestContext, workspace};

fn fixtures(kind: &str) -> Vec<PathBuf> {
    let dir = workspace().join("tests/fixtures/configs").join(kind);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// Runs `args` with `--config <file>` where `file` is a copy of `bytes` named `name` in a
/// fresh context, and checks the common promises of a rejected config: exit 1 (not a
/// signal), no panic, the file named in stderr, no state dir, no simulated cloud.
fn rejected(name: &str, bytes: &[u8], args: &[&str]) -> Run {
    let ctx = TestContext::minimal();
    let file = ctx.dir().join(name);
    fs::write(&file, bytes).unwrap();
    let file_arg = file.to_str().unwrap();
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["--config", file_arg]);
    let run = ctx.run(&full);
    assert_eq!(
        run.signal, None,
        "{name}: `{args:?}` died of a signal\n{}",
        run.stderr
    );
    run.expect_code(1);
    assert!(
        run.stderr.contains(name),
        "{name}: `{args:?}` does not name the file:\n{}",
        run.stderr
    );
    assert!(
        !ctx.state_dir().exists(),
        "{name}: `{args:?}` created the state dir"
    );
    assert!(
        !ctx.sim_path().exists() && !ctx.dir().join("sim.lock").exists(),
        "{name}: `{args:?}` called the (simulated) cloud"
    );
    run
}

#[test]
fn bad_fixtures_are_rejected_with_their_location() {
    let files = fixtures("bad");
    assert!(
        !files.is_empty(),
        "no fixtures in tests/fixtures/configs/bad"
    );
    let mut failures = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let expect_path = file.with_extension("expect");
        let expect = fs::read_to_string(&expect_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expect_path.display()));
        let mut lines = expect.lines();
        let position = lines.next().expect(".expect line 1: LINE:COLUMN").trim();
        let message = lines.next().expect(".expect line 2: message").trim();
        let located = format!("{name}:{position}");
        let bytes = fs::read(file).unwrap();
        for cmd in [&["validate"][..], &["plan"][..]] {
            let run = rejected(name, &bytes, cmd);
            if !run.stderr.contains(&located) || !run.stderr.contains(message) {
                failures.push(format!(
                    "{name} ({cmd:?}): expected `{located}` and `{message}` in stderr:\n{}",
                    run.stderr
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad fixtures:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn good_fixtures_validate() {
    let files = fixtures("good");
    assert!(
        !files.is_empty(),
        "no fixtures in tests/fixtures/configs/good"
    );
    let (mut aws_valid, mut sandbox_valid) = (0, 0);
    for file in files {
        let ctx = TestContext::minimal();
        let name = file.file_name().unwrap().to_str().unwrap();
        let copy = ctx.dir().join(name);
        fs::copy(&file, &copy).unwrap();
        let text = fs::read_to_string(&file).unwrap();
        let mut runs = vec![ctx.run(&["validate", "--config", copy.to_str().unwrap()])];
        if text.lines().any(|l| l.starts_with("aws:")) {
            runs.push(ctx.run(&[
                "validate",
                "--cloud",
                "aws",
                "--config",
                copy.to_str().unwrap(),
            ]));
            aws_valid += 1;
        }
        // Every style is expanded, the sandbox's too: a good fixture validates.
        for run in &runs {
            assert_eq!(
                run.code,
                Some(0),
                "{name} is a good fixture but was rejected:\n{}",
                run.stderr
            );
            assert!(run.stderr.contains("is valid"), "{name}: {}", run.stderr);
        }
        if text.lines().any(|l| l == "style: sandbox") {
            assert!(
                runs[0].stderr.contains("resources on sandbox"),
                "{name}: {}",
                runs[0].stderr
            );
            sandbox_valid += 1;
        }
        assert!(!ctx.state_dir().exists(), "validate created the state dir");
        assert!(!ctx.sim_path().exists(), "validate called the cloud");
    }
    assert!(aws_valid > 0, "no good AWS fixture");
    assert!(sandbox_valid > 0, "no good sandbox fixture");
}

/// Asserts stderr has `name:LINE:COLUMN` somewhere.
#[track_caller]
fn assert_located(run: &Run, name: &str) {
    let located = run.stderr.match_indices(name).any(|(i, _)| {
        let rest = &run.stderr[i + name.len()..];
        let mut parts = rest.splitn(3, ':');
        parts.next() == Some("")
            && parts
                .next()
                .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
            && parts
                .next()
                .is_some_and(|c| c.starts_with(|ch: char| ch.is_ascii_digit()))
    });
    assert!(located, "expected `{name}:LINE:COLUMN` in:\n{}", run.stderr);
}

#[test]
fn generated_hostile_files() {
    let mut binary = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    binary.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let mut five_mb = MINIMAL.as_bytes().to_vec();
    five_mb.extend(b"# ");
    five_mb.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
    five_mb.push(b'\n');
    let mut big_value = b"name: ".to_vec();
    big_value.extend(std::iter::repeat_n(b'a', 5 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.yaml", Vec::new(), "empty"),
        ("blank.yaml", b"\n\n   \n".to_vec(), "empty"),
        ("nul.yaml", b"name: demo\0\ncloud: aws\n".to_vec(), "NUL"),
        ("binary.yaml", binary, ""),
        ("deep-flow.yaml", vec![b'['; 200_000], ""),
        ("deep-map.yaml", vec![b'{'; 200_000], ""),
        (
            "deep-value.yaml",
            [b"name: ".as_slice(), &[b'['; 200_000]].concat(),
            "",
        ),
        (
            "deep-block.yaml",
            (0..1_000)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>()
                .into_bytes(),
            "",
        ),
        ("five-mb.yaml", five_mb, ""),
        ("five-mb-value.yaml", big_value, ""),
    ];
    for (name, bytes, message) in &cases {
        for cmd in [&["validate"][..], &["plan"][..]] {
            let run = rejected(name, bytes, cmd);
            assert_located(&run, name);
            assert!(
                run.stderr.contains(message),
                "{name}: expected `{message}` in:\n{}",
                run.stderr
            );
        }
    }
}

#[test]
fn missing_config_file() {
    let ctx = TestContext::minimal();
    let missing = ctx.dir().join("nope.yaml");
    let run = ctx.run(&["plan", "--config", missing.to_str().unwrap()]);
    run.expect_code(1);
    assert!(run.stderr.contains("nope.yaml"), "{}", run.stderr);
    assert!(!ctx.state_dir().exists());
    assert!(!ctx.sim_path().exists());
}

/// Every bad state: the commands exit 1 naming the state file, and never rewrite it.
#[test]
fn corrupt_state_files_are_refused_and_left_alone() {
    let ctx = TestContext::minimal();
    ctx.apply();
    let good = fs::read(ctx.state_path()).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    assert!(text.contains("\"format_version\": 2"), "{text}");
    let newer = text.replacen("\"format_version\": 2", "\"format_version\": 99", 1);

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("truncated-1", good[..good.len() - 2].to_vec()),
        ("empty", Vec::new()),
        ("whitespace", b"  \n\t\n".to_vec()),
        ("garbage", b"this is not json {".to_vec()),
        (
            "nul",
            [&good[..100], b"\0\0\0".as_slice(), &good[100..]].concat(),
        ),
        (
            "invalid-utf8",
            [&good[..100], b"\xff\xfe".as_slice(), &good[100..]].concat(),
        ),
        ("array", b"[]".to_vec()),
        ("no-fields", b"{\"format_version\": 1}".to_vec()),
        ("version-string", b"{\"format_version\": \"one\"}".to_vec()),
        ("newer", newer.into_bytes()),
    ];
    let state = ctx.state_path();
    let backup_before = fs::read(ctx.backup_path()).ok();
    for (case, bytes) in &cases {
        fs::write(&state, bytes).unwrap();
        for cmd in [
            &["plan"][..],
            &["plan", "--json"],
            &["apply", "--auto-approve"],
            &["destroy", "--auto-approve"],
            &["state", "list"],
            &["state", "rm", "aws_s3_bucket.metadata"],
            &["output"],
        ] {
            let run = ctx.run(cmd);
            assert_eq!(run.signal, None, "{case} {cmd:?}");
            run.expect_code(1);
            assert!(
                run.stderr.contains(&state.display().to_string()),
                "{case} {cmd:?}: the error does not name the state file:\n{}",
                run.stderr
            );
            assert_eq!(
                &fs::read(&state).unwrap(),
                bytes,
                "{case} {cmd:?}: the state file was rewritten"
            );
            assert_eq!(
                fs::read(ctx.backup_path()).ok(),
                backup_before,
                "{case} {cmd:?}: the backup was rewritten"
            );
        }
    }
    // The newer-format message says what to do.
    let run = ctx.run(&["plan"]);
    assert!(run.stderr.contains("99"), "{}", run.stderr);

    // Put the good state back: everything works again.
    fs::write(&state, &good).unwrap();
    ctx.run(&["plan", "--detailed-exitcode"]).expect_code(0);
}

/// A state dir that is a file, and a state file that is a directory.
#[test]
fn unusable_state_paths() {
    let ctx = TestContext::minimal();
    fs::write(ctx.state_dir(), b"not a dir").unwrap();
    let run = ctx.run(&["plan"]);
    run.expect_code(1);
    assert!(run.stderr.contains(".flyteinfra"), "{}", run.stderr);
    fs::remove_file(ctx.state_dir()).unwrap();

    fs::create_dir_all(ctx.state_path()).unwrap();
    let run = ctx.run(&["plan"]);
    run.expect_code(1);
    assert!(run.stderr.contains("aws.state.json"), "{}", run.stderr);
    assert!(!ctx.sim_path().exists());
}

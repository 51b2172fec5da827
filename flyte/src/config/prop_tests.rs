//! Generated inputs for the config loader: arbitrary bytes, the starters with one line
//! changed (a value of another type, a key deleted, duplicated or re-indented, the text cut
//! short, characters spliced in), and deep nesting in every YAML style. The property:
//! [`Config::from_bytes`] never panics (nor overflows the stack), every error names the
//! file, and whatever it accepts selects a cloud and expands without a panic.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::Config as Cases;

use super::{Cloud, Config, starter};
use crate::blueprint::{Facts, expand};

const FILE: &str = "/tmp/props/flyteinfra.yaml";

/// Cases of the mutated-starter target (see there).
const CASES_MUTATED: u32 = 10_000;

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    match Config::from_bytes(bytes, Path::new(FILE)) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.starts_with(FILE),
                "the error does not name the file: {msg}"
            );
        }
        Ok(config) => {
            if let Ok(cloud) = config.select_cloud(None) {
                let _ = expand(&config, cloud, &Facts::offline());
            }
        }
    }
    Ok(())
}

/// Values of every YAML type, and of none.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("~".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e400".to_string()),
        Just(".nan".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        Just("[1, [2, {a: b}]]".to_string()),
        Just("\"é\\u0000\"".to_string()),
        Just("&a [*a]".to_string()),
        Just("*nowhere".to_string()),
        Just("!!binary aGk=".to_string()),
        Just("|\n  text".to_string()),
        Just("x".repeat(300)),
        Just("10.0.0.0/33".to_string()),
        Just("0.0.0.0/0".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\\PC{0,12}",
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// The value after the line's `key:` (or the whole line) replaced.
    Value(String),
    Delete,
    Duplicate,
    Indent(usize),
    Dedent,
    Truncate(usize),
    Splice(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => odd_value().prop_map(Mutation::Value),
        2 => Just(Mutation::Delete),
        1 => Just(Mutation::Duplicate),
        1 => (1usize..5).prop_map(Mutation::Indent),
        1 => Just(Mutation::Dedent),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => (any::<usize>(), "\\PC{1,4}|[\\[\\]{}:,&*!|>\\-#'\"\t\n]{1,3}").prop_map(|(at, s)| Mutation::Splice(at, s)),
    ]
}

/// `text` with `m` applied at its `pick`-th line (or character).
fn mutate(text: &str, pick: usize, m: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let i = pick % lines.len().max(1);
    let char_at = |at: usize| {
        let n = text.chars().count() + 1;
        text.char_indices()
            .map(|(b, _)| b)
            .chain([text.len()])
            .nth(at % n)
            .unwrap_or(text.len())
    };
    match m {
        Mutation::Value(v) => {
            let line = &lines[i];
            lines[i] = match line.split_once(": ") {
                Some((key, _)) => format!("{key}: {v}"),
                None => match line.strip_suffix(':') {
                    Some(key) => format!("{key}: {v}"),
                    None => v.clone(),
                },
            };
        }
        Mutation::Delete => {
            lines.remove(i);
        }
        Mutation::Duplicate => {
            let line = lines[i].clone();
            lines.insert(i, line);
        }
        Mutation::Indent(n) => lines[i] = format!("{}{}", " ".repeat(*n), lines[i]),
        Mutation::Dedent => lines[i] = lines[i].trim_start().to_string(),
        Mutation::Truncate(at) => return text[..char_at(*at)].to_string(),
        Mutation::Splice(at, s) => {
            let b = char_at(*at);
            return format!("{}{s}{}", &text[..b], &text[b..]);
        }
    }
    lines.join("\n") + "\n"
}

/// A starter with its comments dropped, so that most picked lines are keys.
fn starter_of(cloud: Cloud) -> String {
    starter(cloud)
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

fn clouds() -> impl Strategy<Value = Cloud> {
    proptest::sample::select(vec![Cloud::Aws, Cloud::Gcp, Cloud::Azure, Cloud::Sandbox])
}

proptest! {
    // Most arbitrary bytes are refused before YAML parsing (UTF-8, control characters);
    // each case is cheap.
    #![proptest_config(Cases::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }
}

proptest! {
    // YAML-shaped text gets to the parser and the deserializer.
    #![proptest_config(Cases::with_cases(10_000))]

    #[test]
    fn yaml_shaped_text(text in "[a-z_:\\-\\[\\]{},&*!|>#'\" \n0-9.]{0,200}") {
        check(text.as_bytes())?;
    }
}

proptest! {
    // A starter (~1 KB of YAML without comments) parsed, validated and, when accepted,
    // expanded per case (about 1 ms in a debug build).
    #![proptest_config(Cases::with_cases(CASES_MUTATED))]

    #[test]
    fn starters_with_one_line_mutated(cloud in clouds(), pick in any::<usize>(), m in mutation()) {
        check(mutate(&starter_of(cloud), pick, &m).as_bytes())?;
    }
}

proptest! {
    #![proptest_config(Cases::with_cases(1_000))]

    /// Nesting to 10 000 levels in flow style, block style and as a value of a real key:
    /// refused by the depth budget, never by a stack overflow.
    #[test]
    fn deep_nesting(depth in 1usize..10_000, style in 0usize..5) {
        let text = match style {
            0 => "[".repeat(depth),
            1 => "{a: ".repeat(depth),
            2 => format!("name: {}", "[".repeat(depth)),
            3 => (0..depth.min(300)).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect(),
            _ => (0..depth.min(300)).map(|i| format!("{}- ", "  ".repeat(i))).collect::<String>() + "x\n",
        };
        check(text.as_bytes())?;
    }
}

#[test]
fn the_starters_are_valid() {
    // Otherwise the mutations would test nothing but the first error.
    for cloud in [Cloud::Aws, Cloud::Gcp, Cloud::Azure, Cloud::Sandbox] {
        let text = starter_of(cloud);
        let config = Config::from_bytes(text.as_bytes(), Path::new(FILE)).unwrap();
        assert_eq!(config.select_cloud(None).unwrap(), cloud);
    }
}

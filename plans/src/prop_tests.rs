//! Generated inputs for the plan-file decoder: arbitrary bytes, a real plan file with one
//! field mutated, deleted or cut short, and deep nesting. The property: [`decode`] never
//! panics, every error names the file, and whatever it accepts is safe for what apply does
//! with a saved plan (the walk's graphs, a desired resource for every change it carries
//! out), and decodes the same against the registry and its own state.

use std::collections::BTreeSet;
use std::path::Path;

use flyteinfra_core::{Address, Graph};
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::plan::Action;
use crate::planfile::{FileOut, PLANFILE_FORMAT_VERSION, SavedPlan, Target, decode, decode_for};
use crate::testutil::mixed;
use flyteinfra_state::json_mutation::{jsonish, mutate, mutation};

const FILE: &str = "/tmp/props/plan.out";

/// Cases of the mutated-document target (see there).
const CASES_MUTATED: u32 = 3_000;

/// The plan file of the `mixed` fixture: creates, updates, a replace, a read, deletes.
fn sample() -> SavedPlan {
    let f = mixed();
    SavedPlan {
        plan: f.plan(),
        desired: f.desired.clone(),
        config_digest: "fnv1a64:0000000000000000".to_string(),
    }
}

fn encode(s: &SavedPlan) -> Vec<u8> {
    serde_json::to_vec_pretty(&FileOut {
        format_version: PLANFILE_FORMAT_VERSION,
        config_digest: &s.config_digest,
        plan: &s.plan,
        desired: &s.desired,
    })
    .unwrap()
}

/// Decodes `bytes` and checks the property.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let saved = match decode(bytes, Path::new(FILE)) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.contains(FILE),
                "the error does not name the file: {msg}"
            );
            return Ok(());
        }
        Ok(saved) => saved,
    };
    let plan = &saved.plan;
    // Apply's two walks (deletes, then the rest) build their graphs with `expect`.
    for deletes in [true, false] {
        let set: BTreeSet<&Address> = plan
            .changes
            .iter()
            .filter(|c| (c.action == Action::Delete) == deletes)
            .map(|c| &c.address)
            .collect();
        let graph = Graph::build(
            plan.changes
                .iter()
                .filter(|c| set.contains(&c.address))
                .map(|c| {
                    let deps = c.dependencies.iter().filter(|d| set.contains(d)).cloned();
                    (c.address.clone(), deps.collect())
                }),
        );
        prop_assert!(graph.is_ok(), "{graph:?}");
    }
    for c in &plan.changes {
        if !matches!(c.action, Action::Delete | Action::NoOp) {
            let spec = saved.desired.iter().find(|s| s.address == c.address);
            prop_assert!(spec.is_some_and(|s| s.mode == c.mode), "{}", c.address);
        }
    }
    // Against a registry that knows every type and the plan's own state: the same plan.
    let all = |_: &str| true;
    let target = Target {
        known_type: &all,
        lineage: &plan.lineage,
    };
    let checked = decode_for(bytes, Path::new(FILE), &target).ok();
    prop_assert_eq!(checked.as_ref(), Some(&saved));
    // And it survives being saved again.
    let again = decode(&encode(&saved), Path::new(FILE)).ok();
    prop_assert_eq!(again.as_ref(), Some(&saved));
    Ok(())
}

proptest! {
    // Each case decodes a few hundred bytes: cheap.
    #![proptest_config(Config::with_cases(10_000))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&bytes)?;
    }

    #[test]
    fn json_shaped_bytes(bytes in jsonish()) {
        check(&bytes)?;
    }
}

proptest! {
    // A real plan file (~8 KB) decoded two to four times per case: the slowest target in
    // a debug build, hence fewer cases.
    #![proptest_config(Config::with_cases(CASES_MUTATED))]

    #[test]
    fn plan_files_with_one_field_mutated(pick in any::<usize>(), m in mutation()) {
        let doc = serde_json::from_slice(&encode(&sample())).unwrap();
        check(&mutate(&doc, pick, &m))?;
    }
}

proptest! {
    #![proptest_config(Config::with_cases(1_000))]

    /// Nesting far beyond serde_json's recursion limit (128), alone and inside a real
    /// plan file's literal.
    #[test]
    fn deep_nesting(depth in 1usize..10_000, open in proptest::sample::select(vec!["[", "{\"a\":", "{\"list\":["])) {
        let nested = open.repeat(depth);
        check(nested.as_bytes())?;
        let text = String::from_utf8(encode(&sample())).unwrap();
        let deep = text.replacen("\"changes\": [", &format!("\"changes\": [{nested}"), 1);
        check(deep.as_bytes())?;
    }
}

#[test]
fn the_sample_is_valid() {
    // Otherwise the mutations would test nothing but the first error.
    let s = sample();
    assert_eq!(decode(&encode(&s), Path::new(FILE)).unwrap(), s);
}

//! Generated inputs for the state decoder: arbitrary bytes, real documents with one field
//! mutated, deleted or cut short, and deep nesting. The property: [`decode`] never panics,
//! every error names the file, and whatever it accepts is safe for what the engine does
//! with a state (token from the lineage, `serial + 1`, `sent_at` as a time, the
//! dependency graph).

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use flyteinfra_core::{Address, Graph, Mode, Value};
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::document::{Intent, Operation, Output, ResourceState, StateDoc, Status};
use crate::json_mutation::{jsonish, mutate, mutation};
use crate::statefile::{decode, encode};
use crate::validate::{MAX_SERIAL, is_lineage, is_token};

const FILE: &str = "/tmp/props/aws.state.json";

/// A state with a resource of every status, a dependency, an output and both intents.
fn sample() -> StateDoc {
    let mut doc = StateDoc::new("prod", "aws");
    doc.serial = 12;
    let vpc = Address::new("aws_vpc", "main");
    for (name, status) in [
        ("main", Status::Ready),
        ("b", Status::Pending),
        ("c", Status::Tainted),
    ] {
        doc.resources.insert(
            Address::new("aws_vpc", name),
            ResourceState {
                mode: Mode::Managed,
                id: format!("vpc-{name}"),
                status,
                inputs: [("cidr_block".to_string(), Value::Str("10.0.0.0/16".into()))].into(),
                attributes: [
                    ("id".to_string(), Value::Str(format!("vpc-{name}"))),
                    (
                        "tags".to_string(),
                        Value::Map([("Name".to_string(), Value::Str("demo".into()))].into()),
                    ),
                    (
                        "n".to_string(),
                        Value::List(vec![Value::Int(3), Value::Null]),
                    ),
                ]
                .into(),
                dependencies: if name == "main" {
                    vec![]
                } else {
                    vec![vpc.clone()]
                },
            },
        );
    }
    doc.outputs.insert(
        "vpc_id".into(),
        Output {
            value: Value::Str("vpc-main".into()),
            sensitive: false,
        },
    );
    for (addr, operation, token) in [
        ("aws_subnet.a", Operation::Create, "fi-3f2c9a1e-13"),
        ("aws_vpc.c", Operation::Delete, ""),
    ] {
        doc.intents.insert(
            addr.parse().unwrap(),
            Intent {
                operation,
                token: token.into(),
                inputs: Default::default(),
                id: Some("vpc-c".into()),
                dependencies: vec![vpc.clone()],
                sent_at: Some(1_764_000_000),
            },
        );
    }
    doc
}

/// Decodes `bytes` and checks the property.
fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes, Path::new(FILE)) {
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.contains(FILE),
                "the error does not name the file: {msg}"
            );
        }
        Ok(doc) => {
            // What the engine does with a loaded state, none of which may panic.
            prop_assert!(is_lineage(&doc.lineage));
            let token = format!("fi-{}-{}", &doc.lineage[..8], doc.serial + 1);
            prop_assert!(is_token(&token));
            prop_assert!(doc.serial <= MAX_SERIAL);
            for intent in doc.intents.values() {
                let _ = UNIX_EPOCH + Duration::from_secs(intent.sent_at.unwrap_or(0));
            }
            let graph = Graph::build(doc.resources.iter().map(|(a, rs)| {
                let deps = rs
                    .dependencies
                    .iter()
                    .filter(|d| doc.resources.contains_key(*d))
                    .cloned()
                    .collect();
                (a.clone(), deps)
            }));
            prop_assert!(graph.is_ok(), "{graph:?}");
            // And it survives a round trip.
            prop_assert_eq!(decode(&encode(&doc), Path::new(FILE)).ok(), Some(doc));
        }
    }
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
    // A real document (~2 KB) decoded per case, errors decoded twice (the field's path).
    #![proptest_config(Config::with_cases(5_000))]

    #[test]
    fn documents_with_one_field_mutated(pick in any::<usize>(), m in mutation()) {
        let doc = serde_json::from_slice(&encode(&sample())).unwrap();
        check(&mutate(&doc, pick, &m))?;
    }
}

proptest! {
    #![proptest_config(Config::with_cases(1_000))]

    /// Nesting far beyond serde_json's recursion limit (128), alone and inside a real
    /// document's attribute.
    #[test]
    fn deep_nesting(depth in 1usize..10_000, open in proptest::sample::select(vec!["[", "{\"a\":", "[{\"a\":"])) {
        let nested = open.repeat(depth);
        check(nested.as_bytes())?;
        let text = String::from_utf8(encode(&sample())).unwrap();
        let deep = text.replacen("\"n\": [", &format!("\"n\": [{nested}"), 1);
        check(deep.as_bytes())?;
    }
}

#[test]
fn the_sample_is_valid() {
    // Otherwise the mutations would test nothing but the first error.
    let doc = sample();
    assert_eq!(decode(&encode(&doc), Path::new(FILE)).unwrap(), doc);
}

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
use serde_json::Value as Json;

use crate::document::{Intent, Operation, Output, ResourceState, StateDoc, Status};
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

/// Values of every JSON type, including the ones flyteinfra never writes.
fn odd_value() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        Just(Json::from(u64::MAX)),
        Just(Json::from(-1)),
        Just(Json::from(0)),
        "\\PC{0,12}".prop_map(Json::from),
        Just(Json::from("é")),
        Just(Json::from("x".repeat(300))),
        Just(Json::from("3f2c9a1e-0b7d-4c1e-9a4f-5d6e7f809a1b")),
        Just(Json::from("aws_vpc.main")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!(["aws_vpc.main", "aws_vpc.main"])),
        Just(serde_json::json!({"aws_vpc.main": {}})),
    ]
}

/// Every path in `v`, as JSON Pointer tokens.
fn paths(v: &Json, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Json::Object(m) => {
            for (k, child) in m {
                at.push(k.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        Json::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(i.to_string());
                paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Replace(Json),
    Delete,
    RenameKey(String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => odd_value().prop_map(Mutation::Replace),
        2 => Just(Mutation::Delete),
        1 => "\\PC{0,12}".prop_map(Mutation::RenameKey),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// `doc` (pretty JSON) with `m` applied at the `pick`-th path.
fn mutate(doc: &Json, pick: usize, m: &Mutation) -> Vec<u8> {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let path = &all[pick % all.len()];
    let mut doc = doc.clone();
    let (parent, last) = match path.split_last() {
        Some((last, parent)) => (parent, Some(last)),
        None => (&path[..], None),
    };
    let pointer = |p: &[String]| {
        p.iter()
            .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
            .collect::<String>()
    };
    match m {
        Mutation::Replace(v) => {
            if let Some(slot) = doc.pointer_mut(&pointer(path)) {
                *slot = v.clone();
            }
        }
        Mutation::Delete | Mutation::RenameKey(_) => {
            match (doc.pointer_mut(&pointer(parent)), last) {
                (Some(Json::Object(o)), Some(k)) => {
                    if let (Some(v), Mutation::RenameKey(new)) = (o.remove(k), m) {
                        o.insert(new.clone(), v);
                    }
                }
                (Some(Json::Array(a)), Some(i)) => {
                    if let Ok(i) = i.parse::<usize>() {
                        a.remove(i);
                    }
                }
                _ => doc = Json::Null,
            }
        }
        Mutation::Truncate(_) => {}
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap();
    if let Mutation::Truncate(at) = m {
        bytes.truncate(at % (bytes.len() + 1));
    }
    bytes
}

/// Bytes drawn mostly from JSON's own characters, so more of them get past the first one.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        proptest::sample::select(b"{}[]\":,0123456789-.eEtrufalsn \n\\/aw_.x".to_vec()),
        0..300,
    )
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

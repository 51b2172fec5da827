//! Property-test strategies shared by the decoders' tests (state, plan files): JSON values
//! of every type, one mutation at one path of a real document, JSON-shaped bytes. Compiled
//! for this crate's tests and, through the `proptest-json` feature, for other crates' tests.

use proptest::prelude::*;
use serde_json::Value as Json;

/// Values of every JSON type, including the ones flyteinfra never writes.
pub fn odd_value() -> impl Strategy<Value = Json> {
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
pub fn paths(v: &Json, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
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

/// One change to a document.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// The value at the path becomes this one.
    Replace(Json),
    /// The field or element at the path is removed.
    Delete,
    /// The field at the path is renamed.
    RenameKey(String),
    /// The encoded document is cut at this offset (modulo its length).
    Truncate(usize),
}

/// Any [`Mutation`], replacements most often.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => odd_value().prop_map(Mutation::Replace),
        2 => Just(Mutation::Delete),
        1 => "\\PC{0,12}".prop_map(Mutation::RenameKey),
        1 => any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// `doc` (pretty JSON) with `m` applied at the `pick`-th path.
pub fn mutate(doc: &Json, pick: usize, m: &Mutation) -> Vec<u8> {
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
pub fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        proptest::sample::select(b"{}[]\":,0123456789-.eEtrufalsn \n\\/aw_.x".to_vec()),
        0..300,
    )
}

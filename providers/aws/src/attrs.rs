//! Small helpers for reading inputs and building attribute maps.

use std::collections::BTreeMap;

pub use flyteinfra_core::attrs::{attrs, b, i, opt_s, opt_secret, s, secret, strings, unordered};
use flyteinfra_core::{Attributes, Value};

/// The tag key carrying flyteinfra's idempotency token on objects whose API has no
/// unique names (VPCs, subnets, gateways): a crashed create is found by it.
pub const TOKEN_TAG: &str = "flyteinfra:token";

/// A string map (tags), missing = empty.
pub fn tags(a: &Attributes) -> BTreeMap<String, String> {
    a.get("tags")
        .and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Tags as a value, without flyteinfra's token tag (it is identity, not configuration).
pub fn tags_value<I: IntoIterator<Item = (String, String)>>(tags: I) -> Value {
    Value::Map(
        tags.into_iter()
            .filter(|(k, _)| k != TOKEN_TAG)
            .map(|(k, v)| (k, Value::Str(v)))
            .collect(),
    )
}

/// Parses a JSON policy document (IAM returns them URL-encoded) into a canonical value.
pub fn policy_json(doc: &str) -> Option<serde_json::Value> {
    let decoded = percent_decode(doc);
    serde_json::from_str(&decoded).ok().map(canonical)
}

/// Sorts object keys recursively and turns single-element arrays of strings in `Action`,
/// `Resource` and condition values into plain strings, as IAM may return either form.
fn canonical(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Object(m) => {
            let mut items: Vec<(String, J)> =
                m.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            J::Object(items.into_iter().collect())
        }
        J::Array(a) if a.len() == 1 && a[0].is_string() => a.into_iter().next().expect("one"),
        J::Array(a) => J::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

/// Whether two policy documents mean the same thing.
pub fn same_policy(a: &str, b: &str) -> bool {
    match (policy_json(a), policy_json(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Decodes `%XX` escapes (and `+` is left alone: IAM encodes spaces as `%20`).
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(h) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(h);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_policies_compare_equal() {
        let raw = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject*"],"Resource":"arn:aws:s3:::b"}]}"#;
        let encoded = "%7B%22Statement%22%3A%5B%7B%22Resource%22%3A%22arn%3Aaws%3As3%3A%3A%3Ab%22%2C%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGetObject%2A%22%7D%5D%2C%22Version%22%3A%222012-10-17%22%7D";
        assert!(same_policy(raw, encoded));
        assert!(!same_policy(raw, &raw.replace("GetObject", "PutObject")));
    }

    #[test]
    fn unordered_keeps_prior_order_for_the_same_items() {
        let prior = Value::from(vec!["b", "a"]);
        let same = unordered(vec!["a".into(), "b".into()], Some(&prior));
        assert_eq!(same, prior);
        let other = unordered(vec!["c".into(), "a".into()], Some(&prior));
        assert_eq!(other, Value::from(vec!["a", "c"]));
    }

    #[test]
    fn percent_decode_leaves_bad_escapes_alone() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("%é%"), "%é%");
        assert_eq!(percent_decode("100%"), "100%");
    }
}

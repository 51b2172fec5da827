//! Small helpers for providers: reading inputs and building attribute maps.

use crate::{Attributes, ErrorKind, ProviderError, Value};

/// A required string input.
pub fn s<'a>(a: &'a Attributes, key: &str) -> Result<&'a str, ProviderError> {
    a.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| missing(key))
}

/// A required secret string input (a password), exposed for the API call that needs it.
pub fn secret<'a>(a: &'a Attributes, key: &str) -> Result<&'a str, ProviderError> {
    a.get(key)
        .and_then(Value::expose_str)
        .ok_or_else(|| missing(key))
}

/// An optional secret string input, exposed for the API call that needs it.
pub fn opt_secret<'a>(a: &'a Attributes, key: &str) -> Option<&'a str> {
    a.get(key).and_then(Value::expose_str)
}

/// An optional string input.
pub fn opt_s<'a>(a: &'a Attributes, key: &str) -> Option<&'a str> {
    a.get(key).and_then(Value::as_str)
}

/// An optional boolean input.
pub fn b(a: &Attributes, key: &str) -> Option<bool> {
    a.get(key).and_then(Value::as_bool)
}

/// An optional integer input.
pub fn i(a: &Attributes, key: &str) -> Option<i64> {
    a.get(key).and_then(Value::as_int)
}

/// A list of strings (missing = empty).
pub fn strings(a: &Attributes, key: &str) -> Vec<String> {
    a.get(key)
        .and_then(Value::as_list)
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A list of strings as a value, sorted (order carries no meaning in these APIs).
pub fn list(mut v: Vec<String>) -> Value {
    v.sort();
    Value::List(v.into_iter().map(Value::Str).collect())
}

/// An unordered list as the cloud holds it: the last applied order when the items are the
/// same (so order alone never shows as a change), sorted otherwise (drift, import).
pub fn unordered(cloud: Vec<String>, prior: Option<&Value>) -> Value {
    let mut sorted = cloud;
    sorted.sort();
    sorted.dedup();
    if let Some(p) = prior.and_then(Value::as_list) {
        let mut items: Vec<&str> = p.iter().filter_map(Value::as_str).collect();
        items.sort_unstable();
        if items.len() == p.len() && items == sorted {
            return Value::List(p.to_vec());
        }
    }
    list(sorted)
}

/// Builds attributes from pairs.
pub fn attrs<const N: usize>(pairs: [(&str, Value); N]) -> Attributes {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn missing(key: &str) -> ProviderError {
    ProviderError::new(ErrorKind::InvalidInput, format!("input `{key}` is missing"))
}

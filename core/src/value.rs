//! Attribute values: what the cloud knows, what is unknown until apply, and secrets.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A typed attribute value, as stored in state and sent to providers.
///
/// It serializes to the obvious JSON (`null`, `true`, `3`, `"s"`, `[..]`, `{..}`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// An ordered list.
    List(Vec<Value>),
    /// A map with sorted keys.
    Map(BTreeMap<String, Value>),
}

/// A resource's attributes by field name.
pub type Attributes = BTreeMap<String, Value>;

impl Value {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean inside, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The list inside, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The map inside, if this is a map.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Converts to JSON (for rendering and for providers that build documents).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("values always serialize")
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl fmt::Display for Value {
    /// Renders like HCL/JSON literals: strings quoted, lists and maps inline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}

/// A value in a plan: either known now, or known only after apply.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Planned {
    /// Known at plan time.
    Known(Value),
    /// Computed by the cloud, or derived from something not created yet.
    Unknown,
}

impl Planned {
    /// The known value, if any.
    pub fn known(&self) -> Option<&Value> {
        match self {
            Planned::Known(v) => Some(v),
            Planned::Unknown => None,
        }
    }
}

/// A secret held in memory. `Display` and `Debug` print `(sensitive)`; reading
/// the value takes the explicitly named [`Sensitive::expose`].
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wraps a secret.
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The secret itself. Call only where the secret must leave the process
    /// (a provider API call, a 0600 file).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let v: Value = serde_json::from_str(r#"{"a":[1,"x",true,null],"b":{}}"#).unwrap();
        assert_eq!(v.to_json().to_string(), r#"{"a":[1,"x",true,null],"b":{}}"#);
    }

    #[test]
    fn sensitive_never_prints() {
        let s = Sensitive::new("hunter2".to_string());
        assert_eq!(format!("{s} {s:?}"), "(sensitive) (sensitive)");
        assert_eq!(s.expose(), "hunter2");
    }
}

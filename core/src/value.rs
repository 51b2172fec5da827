//! Attribute values: what the cloud knows, what is unknown until apply, and secrets.

use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A typed attribute value, as stored in state and sent to providers.
///
/// It serializes to the obvious JSON (`null`, `true`, `3`, `"s"`, `[..]`, `{..}`), except
/// [`Value::Secret`]: everywhere it shows as `"(sensitive)"` (`Debug`, `Display`,
/// [`Value::to_json`], any serde output), and only inside [`reveal_secrets`] (the state and
/// plan file writers) as `{"$sensitive": "…"}`, which decoding turns back into a secret.
#[derive(Clone)]
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
    /// A secret string (a password): marked sensitive by a schema, or copied from a value
    /// that was. Read it with [`Value::expose_str`], only where it leaves the process.
    Secret(Sensitive<String>),
}

/// The key of the one-entry object a secret is written as inside [`reveal_secrets`].
pub const SECRET_KEY: &str = "$sensitive";

thread_local! {
    static REVEAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a serialization to a private file) with secrets written as their value, in
/// the `{"$sensitive": …}` form decoding reads back. Everywhere else they serialize as
/// `"(sensitive)"`, so no output can carry one by accident.
pub fn reveal_secrets<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            REVEAL.with(|r| r.set(self.0));
        }
    }
    let _reset = Reset(REVEAL.with(|r| r.replace(true)));
    f()
}

/// What equality and order see: a secret compares as the string it holds, so a value
/// read back unmarked (an old state file) equals the marked one.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum View<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Str(&'a str),
    List(&'a [Value]),
    Map(&'a BTreeMap<String, Value>),
}

impl Value {
    fn view(&self) -> View<'_> {
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Int(i) => View::Int(*i),
            Value::Str(s) => View::Str(s),
            Value::Secret(s) => View::Str(s.expose()),
            Value::List(l) => View::List(l),
            Value::Map(m) => View::Map(m),
        }
    }

    /// Wraps a secret string.
    pub fn secret(s: impl Into<String>) -> Value {
        Value::Secret(Sensitive::new(s.into()))
    }

    /// This value marked secret: a string becomes [`Value::Secret`]; a list or map has
    /// every string inside marked.
    #[must_use]
    pub fn into_secret(self) -> Value {
        match self {
            Value::Str(s) => Value::secret(s),
            Value::List(l) => Value::List(l.into_iter().map(Value::into_secret).collect()),
            Value::Map(m) => Value::Map(m.into_iter().map(|(k, v)| (k, v.into_secret())).collect()),
            other => other,
        }
    }

    /// Whether this value is or holds a secret.
    pub fn is_secret(&self) -> bool {
        match self {
            Value::Secret(_) => true,
            Value::List(l) => l.iter().any(Value::is_secret),
            Value::Map(m) => m.values().any(Value::is_secret),
            _ => false,
        }
    }

    /// The string inside, secret or not. Call only where the value must leave the
    /// process (a provider API call, a 0600 file).
    pub fn expose_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Secret(s) => Some(s.expose()),
            _ => None,
        }
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.view().cmp(&other.view())
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Str(v) => s.serialize_str(v),
            Value::List(l) => l.serialize(s),
            Value::Map(m) => m.serialize(s),
            Value::Secret(v) if REVEAL.with(std::cell::Cell::get) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(SECRET_KEY, v.expose())?;
                m.end()
            }
            Value::Secret(_) => s.serialize_str("(sensitive)"),
        }
    }
}

/// How a value is decoded: the plain JSON shapes, then a secret recognised by its form.
#[derive(Deserialize)]
#[serde(untagged)]
enum Decoded {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Decoded::deserialize(d)? {
            Decoded::Null => Value::Null,
            Decoded::Bool(b) => Value::Bool(b),
            Decoded::Int(i) => Value::Int(i),
            Decoded::Str(s) => Value::Str(s),
            Decoded::List(l) => Value::List(l),
            Decoded::Map(mut m) => match m.remove(SECRET_KEY) {
                Some(Value::Str(s)) if m.is_empty() => Value::secret(s),
                Some(other) => {
                    m.insert(SECRET_KEY.to_string(), other);
                    Value::Map(m)
                }
                None => Value::Map(m),
            },
        })
    }
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

    /// Converts to JSON (for rendering and for providers that build documents); a secret
    /// shows as `"(sensitive)"`.
    pub fn to_json(&self) -> serde_json::Value {
        // Outside `reveal_secrets` a secret serializes as "(sensitive)".
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
#[derive(Clone, PartialEq, Eq, Default)]
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
    fn secrets_show_as_sensitive_except_in_private_files() {
        let v = Value::Map(BTreeMap::from([
            ("pw".to_string(), Value::secret("hunter2")),
            ("n".to_string(), Value::Int(1)),
        ]));
        for shown in [
            format!("{v:?}"),
            format!("{v}"),
            v.to_json().to_string(),
            serde_json::to_string(&v).unwrap(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("(sensitive)"), "{shown}");
        }
        let written = reveal_secrets(|| serde_json::to_string(&v).unwrap());
        assert_eq!(written, r#"{"n":1,"pw":{"$sensitive":"hunter2"}}"#);
        let back: Value = serde_json::from_str(&written).unwrap();
        assert!(
            matches!(&back.as_map().unwrap()["pw"], Value::Secret(s) if s.expose() == "hunter2")
        );
        // Revealing ends with the closure.
        assert!(!serde_json::to_string(&v).unwrap().contains("hunter2"));
        // An unmarked copy (an old state file) equals the marked one.
        assert_eq!(Value::secret("x"), Value::from("x"));
        assert_eq!(Value::secret("x").as_str(), None);
        assert_eq!(Value::secret("x").expose_str(), Some("x"));
        // A map that merely has the key is not a secret.
        let m: Value = serde_json::from_str(r#"{"$sensitive":"a","b":1}"#).unwrap();
        assert!(!m.is_secret());
        let m: Value = serde_json::from_str(r#"{"$sensitive":3}"#).unwrap();
        assert!(!m.is_secret());
    }

    #[test]
    fn sensitive_never_prints() {
        let s = Sensitive::new("hunter2".to_string());
        assert_eq!(format!("{s} {s:?}"), "(sensitive) (sensitive)");
        assert_eq!(s.expose(), "hunter2");
    }
}

//! Resource addresses: `type.name`, the key of a resource everywhere.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The address of a resource: its type and its name, written `type.name`
/// (for example `aws_s3_bucket.metadata`).
///
/// Cloning is cheap (two reference counts): the graph, the walker, plans and reports
/// each hold their own copies of every address.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    // `Arc<str>` compares, orders and hashes exactly as the `String`s it replaced.
    type_name: Arc<str>,
    name: Arc<str>,
}

impl Address {
    /// Builds an address from a type and a name.
    ///
    /// # Panics
    /// Panics if either part is not a valid identifier; addresses built in code are
    /// constants, so a bad one is a programming error. Parse user input with [`str::parse`].
    pub fn new(type_name: impl Into<String>, name: impl Into<String>) -> Self {
        let (type_name, name) = (type_name.into(), name.into());
        assert!(
            valid_part(&type_name),
            "invalid resource type `{type_name}`"
        );
        assert!(valid_part(&name), "invalid resource name `{name}`");
        Address {
            type_name: type_name.into(),
            name: name.into(),
        }
    }

    /// The resource type, e.g. `aws_s3_bucket`.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// The resource name within its type, e.g. `metadata`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Why a string is not an address.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a resource address: expected `type.name` (letters, digits, `_`, `-`)")]
pub struct AddressParseError(String);

impl FromStr for Address {
    type Err = AddressParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('.') {
            Some((t, n)) if valid_part(t) && valid_part(n) => Ok(Address {
                type_name: t.into(),
                name: n.into(),
            }),
            _ => Err(AddressParseError(s.to_string())),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.type_name, self.name)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        let a: Address = "aws_s3_bucket.metadata".parse().unwrap();
        assert_eq!(a.type_name(), "aws_s3_bucket");
        assert_eq!(a.name(), "metadata");
        assert_eq!(a.to_string(), "aws_s3_bucket.metadata");
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in ["", "x", ".x", "x.", "a.b c", "a b.c", "a.b.c"] {
            assert!(bad.parse::<Address>().is_err(), "{bad}");
        }
    }
}

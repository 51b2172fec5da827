//! Serde for core's [`Planned`], which is deliberately not serializable itself.
//!
//! Plan files store a planned value as `{"known": <value>}` or the string `"unknown"`.

use std::collections::BTreeMap;

use flyteinfra_core::{Planned, Value};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Repr<V> {
    Known(V),
    Unknown,
}

fn to_repr(p: &Planned) -> Repr<&Value> {
    match p {
        Planned::Known(v) => Repr::Known(v),
        Planned::Unknown => Repr::Unknown,
    }
}

fn from_repr(r: Repr<Value>) -> Planned {
    match r {
        Repr::Known(v) => Planned::Known(v),
        Repr::Unknown => Planned::Unknown,
    }
}

/// `#[serde(with = "one")]` for a `Planned` field.
pub(crate) mod one {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(p: &Planned, s: S) -> Result<S::Ok, S::Error> {
        to_repr(p).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Planned, D::Error> {
        Repr::<Value>::deserialize(d).map(from_repr)
    }
}

/// `#[serde(with = "map")]` for a `BTreeMap<String, Planned>` field.
pub(crate) mod map {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        m: &BTreeMap<String, Planned>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_map(m.iter().map(|(k, v)| (k, to_repr(v))))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Planned>, D::Error> {
        let m = BTreeMap::<String, Repr<Value>>::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (k, from_repr(v))).collect())
    }
}

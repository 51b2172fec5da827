//! Desired resources: what a blueprint asks for, with references to other resources.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::value::{Attributes, Planned, Value};

/// A reference to an attribute of another resource; every reference is a graph edge.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Reference {
    /// The resource referred to.
    pub address: Address,
    /// The attribute of that resource.
    pub attribute: String,
}

/// A desired attribute: a literal, a reference, or a list/map that may contain references.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    /// A literal value.
    Value(Value),
    /// Another resource's attribute.
    Ref(Reference),
    /// A list of expressions.
    List(Vec<Expr>),
    /// A map of expressions.
    Map(BTreeMap<String, Expr>),
    /// A string made by joining the parts (each must resolve to a string or an integer),
    /// e.g. a policy document that embeds another resource's ARN.
    Concat(Vec<Expr>),
}

impl Expr {
    /// A reference to `address.attribute`.
    pub fn reference(address: &Address, attribute: &str) -> Expr {
        Expr::Ref(Reference {
            address: address.clone(),
            attribute: attribute.to_string(),
        })
    }

    /// Calls `f` on every reference inside.
    pub fn for_each_ref(&self, f: &mut impl FnMut(&Reference)) {
        match self {
            Expr::Value(_) => {}
            Expr::Ref(r) => f(r),
            Expr::List(l) => l.iter().for_each(|e| e.for_each_ref(f)),
            Expr::Map(m) => m.values().for_each(|e| e.for_each_ref(f)),
            Expr::Concat(parts) => parts.iter().for_each(|e| e.for_each_ref(f)),
        }
    }

    /// Resolves references through `lookup`; unknown if any reference is unknown.
    pub fn resolve(&self, lookup: &impl Fn(&Reference) -> Planned) -> Planned {
        match self {
            Expr::Value(v) => Planned::Known(v.clone()),
            Expr::Ref(r) => lookup(r),
            Expr::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    match e.resolve(lookup) {
                        Planned::Known(v) => out.push(v),
                        Planned::Unknown => return Planned::Unknown,
                    }
                }
                Planned::Known(Value::List(out))
            }
            Expr::Map(m) => {
                let mut out = BTreeMap::new();
                for (k, e) in m {
                    match e.resolve(lookup) {
                        Planned::Known(v) => {
                            out.insert(k.clone(), v);
                        }
                        Planned::Unknown => return Planned::Unknown,
                    }
                }
                Planned::Known(Value::Map(out))
            }
            Expr::Concat(parts) => {
                let mut out = String::new();
                for e in parts {
                    match e.resolve(lookup) {
                        Planned::Known(Value::Str(s)) => out.push_str(&s),
                        Planned::Known(Value::Int(i)) => out.push_str(&i.to_string()),
                        Planned::Known(other) => out.push_str(&other.to_string()),
                        Planned::Unknown => return Planned::Unknown,
                    }
                }
                Planned::Known(Value::Str(out))
            }
        }
    }
}

impl<T: Into<Value>> From<T> for Expr {
    fn from(v: T) -> Self {
        Expr::Value(v.into())
    }
}

/// Whether flyteinfra owns a resource or only reads it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Created, updated and destroyed by flyteinfra.
    #[default]
    Managed,
    /// Declared `existing:` by the user: read by id, never changed or destroyed.
    Existing,
}

/// One desired resource, as a blueprint produces it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ResourceSpec {
    /// Its address.
    pub address: Address,
    /// Managed or existing.
    pub mode: Mode,
    /// For [`Mode::Existing`]: the cloud id to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_id: Option<String>,
    /// Desired input attributes.
    pub attributes: BTreeMap<String, Expr>,
    /// Resources that must exist first although no attribute refers to them (an API
    /// must be enabled before anything that calls it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Address>,
    /// Its delete (or replace) may destroy what it holds (a bucket's objects). Without
    /// it, a plan that deletes an object holding anything is refused before any delete.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force_destroy: bool,
}

impl ResourceSpec {
    /// A managed resource with no attributes yet.
    pub fn managed(address: Address) -> Self {
        ResourceSpec {
            address,
            mode: Mode::Managed,
            existing_id: None,
            attributes: BTreeMap::new(),
            depends_on: Vec::new(),
            force_destroy: false,
        }
    }

    /// An existing resource, read by `id`.
    pub fn existing(address: Address, id: impl Into<String>) -> Self {
        ResourceSpec {
            address,
            mode: Mode::Existing,
            existing_id: Some(id.into()),
            attributes: BTreeMap::new(),
            depends_on: Vec::new(),
            force_destroy: false,
        }
    }

    /// Sets an attribute (builder style).
    pub fn with(mut self, name: &str, value: impl Into<Expr>) -> Self {
        self.attributes.insert(name.to_string(), value.into());
        self
    }

    /// Sets [`force_destroy`](Self::force_destroy) (builder style).
    pub fn force_destroy(mut self, on: bool) -> Self {
        self.force_destroy = on;
        self
    }

    /// Adds an ordering-only dependency (builder style).
    pub fn after(mut self, address: &Address) -> Self {
        self.depends_on.push(address.clone());
        self
    }

    /// Every resource this one refers to or must come after, without duplicates.
    pub fn dependencies(&self) -> Vec<Address> {
        let mut deps = self.depends_on.clone();
        for e in self.attributes.values() {
            e.for_each_ref(&mut |r| deps.push(r.address.clone()));
        }
        deps.sort();
        deps.dedup();
        deps
    }
}

/// Resolves every desired attribute of `spec` to a planned value.
pub fn resolve_attributes(
    spec: &ResourceSpec,
    lookup: &impl Fn(&Reference) -> Planned,
) -> BTreeMap<String, Planned> {
    spec.attributes
        .iter()
        .map(|(k, e)| (k.clone(), e.resolve(lookup)))
        .collect()
}

/// Resolves attributes that must all be known (at apply time, after dependencies finished).
pub fn resolve_known(
    spec: &ResourceSpec,
    lookup: &impl Fn(&Reference) -> Planned,
) -> Result<Attributes, Reference> {
    let mut out = Attributes::new();
    for (k, e) in &spec.attributes {
        match e.resolve(lookup) {
            Planned::Known(v) => {
                out.insert(k.clone(), v);
            }
            Planned::Unknown => {
                let mut first = None;
                e.for_each_ref(&mut |r| {
                    if first.is_none() {
                        first = Some(r.clone())
                    }
                });
                return Err(first.expect("only references can be unknown"));
            }
        }
    }
    Ok(out)
}

//! The state document: what flyteinfra believes exists, for one deployment and one cloud.

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Attributes, Mode, Schema, Value};
use serde::{Deserialize, Serialize};

/// The newest state format this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

/// One state document. Changed only through its methods by the engine, persisted by a
/// backend after every transition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDoc {
    /// The on-disk format version; a newer one is refused, never rewritten.
    pub format_version: u32,
    /// A random id fixed when the state is first created; a saved plan records it.
    pub lineage: String,
    /// Incremented on every persisted change; a saved plan records it.
    pub serial: u64,
    /// The deployment name from the config.
    pub deployment: String,
    /// The cloud this state belongs to (`aws`, `gcp`, `azure`): each cloud has its own state.
    pub cloud: String,
    /// Resources by address.
    #[serde(default)]
    pub resources: BTreeMap<Address, ResourceState>,
    /// Outputs by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, Output>,
    /// Operations announced before their API call and not yet finished (the intent journal).
    #[serde(default)]
    pub intents: BTreeMap<Address, Intent>,
}

/// Where a resource stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Created (or imported, or read) and ready.
    Ready,
    /// The cloud accepted the create; the next run resumes waiting for it.
    Pending,
    /// A create or update failed half-way; the next plan replaces it.
    Tainted,
}

/// What state knows about one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceState {
    /// Managed or existing.
    pub mode: Mode,
    /// The cloud id.
    pub id: String,
    /// Ready, pending or tainted.
    pub status: Status,
    /// The inputs last applied (what we asked for). Server-managed fields are diffed
    /// against these, not against what the cloud reports.
    #[serde(default)]
    pub inputs: Attributes,
    /// The attributes the cloud last reported (inputs and computed values).
    #[serde(default)]
    pub attributes: Attributes,
    /// What this resource depended on when last applied; orders deletes of resources
    /// that are no longer in the config.
    #[serde(default)]
    pub dependencies: Vec<Address>,
}

/// An output value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// The value.
    pub value: Value,
    /// Redacted in every display.
    #[serde(default)]
    pub sensitive: bool,
}

/// The operation an intent announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A create call.
    Create,
    /// A delete call.
    Delete,
}

/// An operation recorded durably before its API call is sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// Create or delete.
    pub operation: Operation,
    /// The deterministic token sent with the call (client token, tag).
    pub token: String,
    /// The resolved inputs the call is sent with (names, tags).
    #[serde(default)]
    pub inputs: Attributes,
    /// For deletes: the id being deleted.
    #[serde(default)]
    pub id: Option<String>,
    /// What the resource depends on.
    #[serde(default)]
    pub dependencies: Vec<Address>,
    /// When the call was first sent (seconds since the Unix epoch): a create sent by a run
    /// that died may still land a moment later, so a new run waits before sending it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<u64>,
}

impl StateDoc {
    /// The outputs' values by name (secrets stay marked secret).
    pub fn output_values(&self) -> BTreeMap<String, Value> {
        self.outputs
            .iter()
            .map(|(k, o)| (k.clone(), o.value.clone()))
            .collect()
    }

    /// Marks every sensitive value as a secret: the fields `schema_of` (a type's schema)
    /// marks sensitive, in resources, their inputs and intents, and the outputs flagged
    /// sensitive. Secrets read back from a file are marked already; this covers what was
    /// written before they were (and types whose schema changed).
    pub fn mark_sensitive<'s>(&mut self, schema_of: impl Fn(&str) -> Option<&'s Schema>) {
        for (address, rs) in &mut self.resources {
            if let Some(schema) = schema_of(address.type_name()) {
                schema.mark_sensitive(&mut rs.inputs);
                schema.mark_sensitive(&mut rs.attributes);
            }
        }
        for (address, intent) in &mut self.intents {
            if let Some(schema) = schema_of(address.type_name()) {
                schema.mark_sensitive(&mut intent.inputs);
            }
        }
        for o in self.outputs.values_mut().filter(|o| o.sensitive) {
            o.value = std::mem::replace(&mut o.value, Value::Null).into_secret();
        }
    }

    /// An empty state with a fresh lineage.
    pub fn new(deployment: &str, cloud: &str) -> Self {
        StateDoc {
            format_version: FORMAT_VERSION,
            lineage: new_lineage(),
            serial: 0,
            deployment: deployment.to_string(),
            cloud: cloud.to_string(),
            resources: BTreeMap::new(),
            outputs: BTreeMap::new(),
            intents: BTreeMap::new(),
        }
    }
}

/// A random 128-bit id in UUID text form.
pub fn new_lineage() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random generator is available");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::builtin::RandomPassword;
    use flyteinfra_core::requests as r;
    use flyteinfra_core::{Address, Attributes, ResourceSpec, Value};

    use super::*;

    const PW: &str = "hunter2-not-for-logs";

    /// Every request, spec and state record that carries a secret shows `(sensitive)` in
    /// its `Debug`, never the secret.
    #[test]
    fn debug_never_shows_a_secret() {
        let inputs: Attributes = [
            ("name".to_string(), Value::from("db")),
            ("password".to_string(), Value::secret(PW)),
        ]
        .into();
        let rs = ResourceState {
            mode: Mode::Managed,
            id: "db-1".into(),
            status: Status::Ready,
            inputs: inputs.clone(),
            attributes: inputs.clone(),
            dependencies: vec![],
        };
        let intent = Intent {
            operation: Operation::Create,
            token: "fi-1-1".into(),
            inputs: inputs.clone(),
            id: None,
            dependencies: vec![],
            sent_at: None,
        };
        let mut doc = StateDoc::new("d", "aws");
        let a: Address = "aws_db_instance.main".parse().unwrap();
        doc.resources.insert(a.clone(), rs.clone());
        doc.intents.insert(a.clone(), intent.clone());
        doc.outputs.insert(
            "db_password".into(),
            Output {
                value: Value::secret(PW),
                sensitive: true,
            },
        );
        let spec = ResourceSpec::managed(a).with("password", Value::secret(PW));
        let t = "aws_db_instance";
        let shown = [
            format!("{:?}", r::create(t, &inputs, "tok")),
            format!("{:?}", r::update(t, "id", &inputs, &inputs, &["password"])),
            format!("{:?}", r::wait(t, "id", &inputs)),
            format!("{spec:?}"),
            format!("{doc:?}"),
            format!("{rs:?}"),
            format!("{intent:?}"),
        ];
        for s in &shown {
            assert!(!s.contains(PW), "{s}");
            assert!(s.contains("(sensitive)"), "{s}");
        }
    }

    /// A state written before secrets were marked holds them as plain strings; the schemas
    /// mark them on load, and the file written next keeps them marked.
    #[test]
    fn old_plain_secrets_are_marked_by_the_schemas() {
        let mut doc = StateDoc::new("d", "aws");
        let a: Address = "random_password.db".parse().unwrap();
        let plain: Attributes = [("result".to_string(), Value::from(PW))].into();
        doc.resources.insert(
            a,
            ResourceState {
                mode: Mode::Managed,
                id: "generated".into(),
                status: Status::Ready,
                inputs: Attributes::new(),
                attributes: plain,
                dependencies: vec![],
            },
        );
        doc.outputs.insert(
            "db_password".into(),
            Output {
                value: Value::from(PW),
                sensitive: true,
            },
        );
        assert!(format!("{doc:?}").contains(PW));
        let schema = RandomPassword::schema();
        doc.mark_sensitive(|t| (t == schema.type_name).then_some(&schema));
        assert!(!format!("{doc:?}").contains(PW));
        let bytes = crate::encode(&doc);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(&format!("\"$sensitive\": \"{PW}\"")),
            "{text}"
        );
        let back = crate::decode(&bytes, std::path::Path::new("s.json")).unwrap();
        assert!(!format!("{back:?}").contains(PW));
        let result = &back.resources.values().next().unwrap().attributes["result"];
        assert_eq!(result.expose_str(), Some(PW));
    }
}

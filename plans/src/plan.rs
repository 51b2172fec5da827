//! The plan model: what apply will do to each resource, and why.
//!
//! The model holds real values, secrets included (apply needs them, and plan files are
//! written `0600`). It does not display itself: [`render_text`](crate::render_text) and
//! [`render_json`](crate::render_json) do, and both redact every sensitive value. The
//! `Debug` impls of [`FieldChange`] and [`ResourceChange`] redact too, so a stray `{:?}`
//! cannot leak a secret.

use std::collections::BTreeMap;
use std::fmt;

use flyteinfra_core::{Address, Mode, Planned, Value};
use serde::{Deserialize, Serialize};

/// The version of the plan model, recorded in [`Plan::format_version`] and in the JSON
/// rendering. Bumped on any incompatible change to either. Version 2 added the plan-level
/// [`notes`](Plan::notes) and [`refresh_only`](Plan::refresh_only).
pub const FORMAT_VERSION: u32 = 2;

/// What apply will do to one resource. A small closed set; each action is a plan symbol.
///
/// Serialized (in plan files) as `create`, `update`, `replace`, `delete`, `no-op`, `read`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Create a new object (`+`).
    Create,
    /// Change the object in place (`~`).
    Update,
    /// Delete the object, then create a new one (`-/+`).
    Replace,
    /// Delete the object (`-`).
    Delete,
    /// Nothing to do (` `).
    NoOp,
    /// Read an `existing:` object, never changing it (`<=`).
    Read,
}

impl Action {
    /// Every action, in the order plans list them.
    pub const ALL: [Action; 6] = [
        Action::Create,
        Action::Update,
        Action::Replace,
        Action::Delete,
        Action::NoOp,
        Action::Read,
    ];

    /// The symbol shown in plans: `+`, `~`, `-/+`, `-`, ` ` or `<=`.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Replace => "-/+",
            Action::Delete => "-",
            Action::NoOp => " ",
            Action::Read => "<=",
        }
    }

    /// The stable machine name used in JSON: `create`, `update`, `replace`, `delete`,
    /// `no-op` or `read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::NoOp => "no-op",
            Action::Read => "read",
        }
    }

    /// Whether apply deletes the current object (`Replace` or `Delete`).
    pub fn deletes(self) -> bool {
        matches!(self, Action::Replace | Action::Delete)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an [`Action`] was chosen. Reasons only explain a choice to the user; apply must be
/// driven by the action alone, never by the reasons.
///
/// Serialized as `{"kind": "<snake_case name>"}`, plus `"fields": [...]` for
/// [`Reason::ForcedBy`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", content = "fields", rename_all = "snake_case")]
pub enum Reason {
    /// These changed fields cannot be changed in place, so the resource is replaced.
    ForcedBy(Vec<String>),
    /// A create or update failed half-way earlier; the object is replaced.
    Tainted,
    /// State has the resource, but the cloud no longer does.
    DeletedOutside,
    /// State has the resource, but the configuration no longer asks for it.
    RemovedFromConfig,
    /// A create was accepted by the cloud in an earlier run; apply resumes waiting for it
    /// instead of creating again.
    ResumePending,
    /// The cloud's value differs from what was last applied, though the desired value did
    /// not change.
    Drift,
    /// The desired value differs from what was last applied.
    DesiredChanged,
    /// The plan destroys everything (`flyteinfra destroy`).
    Destroy,
    /// The user asked for this replace (`--replace ADDR`).
    Requested,
}

impl Reason {
    /// The stable machine name used in JSON (`forced_by`, `tainted`, `deleted_outside`,
    /// `removed_from_config`, `resume_pending`, `drift`, `desired_changed`, `destroy`,
    /// `requested`).
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::ForcedBy(_) => "forced_by",
            Reason::Tainted => "tainted",
            Reason::DeletedOutside => "deleted_outside",
            Reason::RemovedFromConfig => "removed_from_config",
            Reason::ResumePending => "resume_pending",
            Reason::Drift => "drift",
            Reason::DesiredChanged => "desired_changed",
            Reason::Destroy => "destroy",
            Reason::Requested => "requested",
        }
    }
}

/// How one field changes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The attribute name.
    pub name: String,
    /// The value now: as refreshed from the cloud (or from state without refresh) for
    /// normal fields, the last applied value for server-managed ones; `None` if there is
    /// no object yet or it did not have the field.
    pub before: Option<Value>,
    /// The value after apply. A deleted field is `Known(Value::Null)`.
    #[serde(with = "crate::serde_planned::one")]
    pub after: Planned,
    /// A secret: every rendering shows `(sensitive)` instead of `before` and `after`.
    /// Set from the schema, or because the value is derived from a sensitive attribute
    /// of another resource.
    pub sensitive: bool,
    /// This field's change is why the resource is replaced.
    pub forces_replacement: bool,
}

impl fmt::Debug for FieldChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FieldChange");
        d.field("name", &self.name);
        if self.sensitive {
            d.field("before", &"(sensitive)")
                .field("after", &"(sensitive)");
        } else {
            d.field("before", &self.before).field("after", &self.after);
        }
        d.field("sensitive", &self.sensitive)
            .field("forces_replacement", &self.forces_replacement)
            .finish()
    }
}

/// What apply will do to one resource.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// The resource.
    pub address: Address,
    /// Managed, or `existing:` (only ever [`Action::Read`]).
    pub mode: Mode,
    /// What apply does.
    pub action: Action,
    /// Why, for the user only; never drives apply.
    pub reasons: Vec<Reason>,
    /// The fields shown to the user, sorted by name: for creates every input and every
    /// computed field, for updates and replaces the changed fields (and, for replaces,
    /// the computed fields that become unknown), for deletes every attribute, for reads
    /// what was read. Empty for no-ops.
    pub fields: Vec<FieldChange>,
    /// The resource type holds user data (databases, buckets).
    pub holds_data: bool,
    /// Apply destroys user data: `holds_data` and the action deletes the object.
    pub data_loss: bool,
    /// What this resource depends on: from the configuration's references, or, for a
    /// delete, as recorded in state.
    pub dependencies: Vec<Address>,
    /// The desired inputs with references resolved as far as plan time allows. Empty for
    /// deletes. Apply re-resolves them once dependencies are done.
    #[serde(with = "crate::serde_planned::map")]
    pub planned_inputs: BTreeMap<String, Planned>,
}

impl fmt::Debug for ResourceChange {
    /// Prints `planned_inputs` by name only: they may hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceChange")
            .field("address", &self.address)
            .field("mode", &self.mode)
            .field("action", &self.action)
            .field("reasons", &self.reasons)
            .field("fields", &self.fields)
            .field("holds_data", &self.holds_data)
            .field("data_loss", &self.data_loss)
            .field("dependencies", &self.dependencies)
            .field("planned_inputs", &self.planned_inputs.keys())
            .finish()
    }
}

/// Counts of a plan, as Terraform counts them: a replace counts once in `add` and once in
/// `destroy`; reads and no-ops count nowhere.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Creates and replaces.
    pub add: usize,
    /// In-place updates.
    pub change: usize,
    /// Deletes and replaces.
    pub destroy: usize,
}

/// A finding about the plan as a whole, shown after the resource changes. One place for
/// everything a plan says beyond "this resource gets this action": later findings (an
/// expected duration, preflight checks) become new kinds here, not new plan fields.
///
/// Serialized as `{"kind": "<snake_case name>", ...fields}`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Note {
    /// `--replace ADDR`: the resource is replaced because the user asked.
    ReplaceRequested {
        /// The resource.
        address: Address,
    },
    /// `--replace ADDR` of a resource with no object yet: it is created, nothing replaced.
    ReplaceNotNeeded {
        /// The resource.
        address: Address,
    },
    /// Apply will refuse this delete or replace while deletion protection is on.
    DeletionProtected {
        /// The resource.
        address: Address,
        /// The input that turns protection on.
        field: String,
    },
    /// The plan deletes or replaces an object that holds contents (a bucket with at
    /// least one object, object version or delete marker). Without `force_destroy` apply
    /// refuses before deleting anything; with it, the delete removes every item first.
    NotEmpty {
        /// The resource.
        address: Address,
        /// The configuration lets the contents go with it
        /// ([`ResourceSpec::force_destroy`](flyteinfra_core::ResourceSpec::force_destroy)).
        force_destroy: bool,
    },
    /// `--disable-protection`: apply turns this object's deletion protection off (an update
    /// of `field` to `false`, recorded in state), then deletes it.
    ProtectionDisabled {
        /// The resource.
        address: Address,
        /// The input that turns protection on.
        field: String,
        /// The final snapshot the delete takes, for types that take one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        final_snapshot: Option<String>,
    },
    /// Refresh-only: the object is gone from the cloud; apply drops it from state.
    DeletedOutside {
        /// The resource.
        address: Address,
    },
    /// Refresh-only: the cloud's attributes differ from state; apply records the cloud's.
    /// `before` is what state holds, `after` what the cloud has.
    ChangedOutside {
        /// The resource.
        address: Address,
        /// The differing attributes, sorted by name.
        fields: Vec<FieldChange>,
    },
    /// How long the apply is expected to take: its critical path, the longest chain of
    /// creates and replaces by each type's expected create time. Nothing is faster: each
    /// step of the chain needs the one before it.
    ExpectedDuration {
        /// The chain's expected total, in seconds.
        seconds: u64,
        /// The chain, dependencies first (resources that take no time left out).
        chain: Vec<Address>,
    },
}

impl Note {
    /// The stable machine name used in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Note::ReplaceRequested { .. } => "replace_requested",
            Note::ReplaceNotNeeded { .. } => "replace_not_needed",
            Note::DeletionProtected { .. } => "deletion_protected",
            Note::NotEmpty { .. } => "not_empty",
            Note::ProtectionDisabled { .. } => "protection_disabled",
            Note::DeletedOutside { .. } => "deleted_outside",
            Note::ChangedOutside { .. } => "changed_outside",
            Note::ExpectedDuration { .. } => "expected_duration",
        }
    }

    /// Whether applying the plan changes state because of this note (refresh-only).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Note::DeletedOutside { .. } | Note::ChangedOutside { .. }
        )
    }
}

/// A plan for one deployment in one cloud.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The model version, [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The deployment name, from state.
    pub deployment: String,
    /// The cloud (`aws`, `gcp`, `azure`), from state.
    pub cloud: String,
    /// The lineage of the state planned against; a saved plan applies only to it.
    pub lineage: String,
    /// The serial of the state planned against; a saved plan is stale once it moves.
    pub serial: u64,
    /// A destroy plan (every change is a delete).
    pub destroy: bool,
    /// A refresh-only plan (`--refresh-only`): `changes` is empty; applying it records in
    /// state what the [`notes`](Plan::notes) say the cloud now has, and calls no cloud.
    #[serde(default)]
    pub refresh_only: bool,
    /// Plan-level findings, in the order they were found.
    #[serde(default)]
    pub notes: Vec<Note>,
    /// Every resource considered: creates, updates, replaces, no-ops and reads in
    /// topological order (dependencies first), then deletes with dependents first.
    pub changes: Vec<ResourceChange>,
}

impl Plan {
    /// The counts shown in `Plan: N to add, N to change, N to destroy.`.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            match c.action {
                Action::Create => s.add += 1,
                Action::Update => s.change += 1,
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Delete => s.destroy += 1,
                Action::NoOp | Action::Read => {}
            }
        }
        s
    }

    /// Whether apply would change anything: in the cloud (reads and no-ops do not), or,
    /// for a refresh-only plan, in state.
    pub fn has_changes(&self) -> bool {
        self.summary() != Summary::default() || self.notes.iter().any(Note::changes_state)
    }

    /// The change planned for `address`, if the plan considered it.
    pub fn change(&self, address: &Address) -> Option<&ResourceChange> {
        self.changes.iter().find(|c| &c.address == address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_and_names() {
        let all = Action::ALL;
        let symbols: Vec<_> = all.iter().map(|a| a.symbol()).collect();
        assert_eq!(symbols, ["+", "~", "-/+", "-", " ", "<="]);
        for a in all {
            let json = serde_json::to_value(a).unwrap();
            assert_eq!(json, a.as_str());
        }
    }

    #[test]
    fn reasons_serialize_with_kind() {
        let r = Reason::ForcedBy(vec!["engine".into()]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"kind":"forced_by","fields":["engine"]}"#
        );
        assert_eq!(
            serde_json::to_string(&Reason::Tainted).unwrap(),
            r#"{"kind":"tainted"}"#
        );
        let back: Reason = serde_json::from_str(r#"{"kind":"forced_by","fields":["a"]}"#).unwrap();
        assert_eq!(back, Reason::ForcedBy(vec!["a".into()]));
        assert_eq!(r.kind(), "forced_by");
    }

    #[test]
    fn debug_redacts_secrets() {
        let fc = FieldChange {
            name: "password".into(),
            before: Some("old-s3cr3t".into()),
            after: Planned::Known("new-s3cr3t".into()),
            sensitive: true,
            forces_replacement: false,
        };
        let rc = ResourceChange {
            address: "t.x".parse().unwrap(),
            mode: Mode::Managed,
            action: Action::Update,
            reasons: vec![],
            fields: vec![fc],
            holds_data: false,
            data_loss: false,
            dependencies: vec![],
            planned_inputs: [("password".to_string(), Planned::Known("new-s3cr3t".into()))].into(),
        };
        let dbg = format!("{rc:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
        assert!(dbg.contains("password"));
    }
}

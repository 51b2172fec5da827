//! The machine-readable plan (`plan --json`); its format is documented on [`render_json`].

use std::fmt;

use flyteinfra_core::{Address, Mode, Planned, Value};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::plan::{FieldChange, Note, Plan, Reason, ResourceChange};

/// The JSON Schema (draft 2020-12) of the machine-readable plan, format version 2
/// (`flyteinfra schema --plan`): what CI pipelines validate a plan against before parsing
/// it. Objects admit properties it does not list (fields may be added within a version).
pub const PLAN_JSON_SCHEMA: &str = include_str!("plan-schema.json");

/// Renders `plan` as the machine-readable plan (`plan --json`): a public, versioned
/// contract.
///
/// # Format, version `2`
///
/// ```json
/// {
///   "format_version": 2,
///   "deployment": "demo",
///   "cloud": "aws",
///   "state": { "lineage": "3f2c…", "serial": 7 },
///   "destroy": false,
///   "refresh_only": false,
///   "resource_changes": [
///     {
///       "address": "aws_db_instance.main",
///       "type": "aws_db_instance",
///       "name": "main",
///       "mode": "managed",
///       "action": "replace",
///       "reasons": [{ "kind": "forced_by", "fields": ["engine_version"] }],
///       "holds_data": true,
///       "data_loss": true,
///       "dependencies": ["aws_subnet.a"],
///       "fields": [
///         {
///           "name": "engine_version",
///           "before": "15",
///           "after": "16",
///           "after_unknown": false,
///           "sensitive": false,
///           "forces_replacement": true
///         }
///       ]
///     }
///   ],
///   "notes": [
///     { "kind": "replace_requested", "address": "aws_db_instance.main" },
///     { "kind": "deletion_protected", "address": "aws_db_instance.main",
///       "field": "deletion_protection" }
///   ],
///   "summary": { "add": 1, "change": 0, "destroy": 1 }
/// }
/// ```
///
/// - `format_version`: a number; bumped on any incompatible change (version 1 wrote it as
///   the string `"1"` and had no `refresh_only` or `notes`). Fields and note kinds may be
///   added within a version; consumers must ignore fields and kinds they do not know.
/// - `state`: the `lineage` and `serial` of the state planned against.
/// - `destroy`: `true` for a destroy plan.
/// - `resource_changes`: in apply order, creates/updates/replaces/no-ops/reads with
///   dependencies first, then deletes with dependents first. No-ops are included.
///   - `mode`: `"managed"` or `"existing"` (existing resources are only ever read).
///   - `action`: `"create"`, `"update"`, `"replace"`, `"delete"`, `"no-op"` or `"read"`.
///   - `reasons`: why, each `{"kind": …}`; `kind` is one of `forced_by` (with `fields`,
///     the fields forcing replacement), `tainted`, `deleted_outside`,
///     `removed_from_config`, `resume_pending`, `drift`, `desired_changed`, `destroy`,
///     `requested` (`--replace`).
///     Reasons explain; the action alone says what happens.
///   - `holds_data`: the type holds user data. `data_loss`: `holds_data` and the action
///     deletes the object (`replace` or `delete`).
///   - `dependencies`: addresses this resource depends on.
///   - `fields`: sorted by name. `before` is the current value (`null` if none). `after`
///     is the planned value, `null` when `after_unknown` is `true` (known only after
///     apply) or the field is deleted.
///   - **Sensitive values are never emitted**: when `sensitive` is `true`, `before` and
///     `after` are both `null`.
/// - `refresh_only`: `true` for a refresh-only plan (`--refresh-only`): `resource_changes`
///   is empty and applying it only records in state what the notes say the cloud has.
/// - `notes`: plan-level findings, each `{"kind": …, "address": …}`:
///   - `replace_requested`: replaced because of `--replace`;
///   - `replace_not_needed`: `--replace` of a resource with no object yet (it is created);
///   - `deletion_protected` (with `field`): a delete or replace apply will refuse while
///     that input is `true`;
///   - `not_empty` (with `force_destroy`): a delete or replace of an object holding at
///     least one item (a bucket's object, version or delete marker); apply refuses it
///     unless `force_destroy` is `true`, and then deletes every item first;
///   - `protection_disabled` (with `field` and `final_snapshot`, the name of the snapshot
///     the delete takes, `null` when the type takes none): `destroy --disable-protection`
///     turns that input off, then deletes the object;
///   - `deleted_outside` (refresh-only): gone from the cloud; apply drops it from state;
///   - `changed_outside` (refresh-only, with `fields` shaped as above: `before` is state's
///     value, `after` the cloud's): apply records the cloud's values;
///   - `expected_duration` (no `address`; with `seconds` and `chain`, the addresses of the
///     critical path): how long the apply is expected to take at least.
///
/// [`PLAN_JSON_SCHEMA`] is this format as a JSON Schema.
/// - `summary`: counted as Terraform does: a replace counts in `add` and in `destroy`,
///   reads and no-ops count nowhere.
///
/// The result serializes straight to any serde serializer (`serde_json::to_writer`,
/// `serde_json::to_string_pretty`, …) without building a JSON tree first (at 10,000
/// resources that tree was ~80 MB); `Display` gives the compact form.
pub fn render_json(plan: &Plan) -> PlanJson<'_> {
    PlanJson(plan)
}

/// The machine-readable rendering of a plan, ready to serialize; see [`render_json`].
#[derive(Clone, Copy)]
pub struct PlanJson<'a>(&'a Plan);

impl fmt::Display for PlanJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

// The structs below list their fields in the order of the format above, which is also
// the key order of the `json!` tree this replaced (`preserve_order` kept insertion
// order): the bytes are unchanged, which a test checks.

impl Serialize for PlanJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let plan = self.0;
        let sum = plan.summary();
        PlanOut {
            format_version: plan.format_version,
            deployment: &plan.deployment,
            cloud: &plan.cloud,
            state: StateOut {
                lineage: &plan.lineage,
                serial: plan.serial,
            },
            destroy: plan.destroy,
            refresh_only: plan.refresh_only,
            resource_changes: Seq(&plan.changes),
            notes: Seq(&plan.notes),
            summary: SummaryOut {
                add: sum.add,
                change: sum.change,
                destroy: sum.destroy,
            },
        }
        .serialize(s)
    }
}

#[derive(Serialize)]
struct PlanOut<'a> {
    format_version: u32,
    deployment: &'a str,
    cloud: &'a str,
    state: StateOut<'a>,
    destroy: bool,
    refresh_only: bool,
    resource_changes: Seq<'a, ResourceChange>,
    notes: Seq<'a, Note>,
    summary: SummaryOut,
}

#[derive(Serialize)]
struct StateOut<'a> {
    lineage: &'a str,
    serial: u64,
}

#[derive(Serialize)]
struct SummaryOut {
    add: usize,
    change: usize,
    destroy: usize,
}

/// A list of plan parts, each rendered as its JSON form.
struct Seq<'a, T>(&'a [T]);

impl Serialize for Seq<'_, ResourceChange> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(resource))
    }
}

impl Serialize for Seq<'_, Note> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(NoteOut))
    }
}

impl Serialize for Seq<'_, Reason> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(ReasonOut))
    }
}

impl Serialize for Seq<'_, FieldChange> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(field))
    }
}

impl Serialize for Seq<'_, Address> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Shown))
    }
}

/// A value written as the string of its `Display`, without an intermediate `String`.
struct Shown<'a, T>(&'a T);

impl<T: fmt::Display> Serialize for Shown<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self.0)
    }
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    address: Shown<'a, Address>,
    #[serde(rename = "type")]
    type_name: &'a str,
    name: &'a str,
    mode: &'static str,
    action: &'static str,
    reasons: Seq<'a, Reason>,
    holds_data: bool,
    data_loss: bool,
    dependencies: Seq<'a, Address>,
    fields: Seq<'a, FieldChange>,
}

fn resource(c: &ResourceChange) -> ResourceOut<'_> {
    ResourceOut {
        address: Shown(&c.address),
        type_name: c.address.type_name(),
        name: c.address.name(),
        mode: match c.mode {
            Mode::Managed => "managed",
            Mode::Existing => "existing",
        },
        action: c.action.as_str(),
        reasons: Seq(&c.reasons),
        holds_data: c.holds_data,
        data_loss: c.data_loss,
        dependencies: Seq(&c.dependencies),
        fields: Seq(&c.fields),
    }
}

struct NoteOut<'a>(&'a Note);

impl Serialize for NoteOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kind", n.kind())?;
        match n {
            Note::ReplaceRequested { address }
            | Note::ReplaceNotNeeded { address }
            | Note::DeletedOutside { address } => {
                m.serialize_entry("address", &Shown(address))?;
            }
            Note::DeletionProtected { address, field } => {
                m.serialize_entry("address", &Shown(address))?;
                m.serialize_entry("field", field)?;
            }
            Note::NotEmpty {
                address,
                force_destroy,
            } => {
                m.serialize_entry("address", &Shown(address))?;
                m.serialize_entry("force_destroy", force_destroy)?;
            }
            Note::ProtectionDisabled {
                address,
                field,
                final_snapshot,
            } => {
                m.serialize_entry("address", &Shown(address))?;
                m.serialize_entry("field", field)?;
                m.serialize_entry("final_snapshot", final_snapshot)?;
            }
            Note::ChangedOutside { address, fields } => {
                m.serialize_entry("address", &Shown(address))?;
                m.serialize_entry("fields", &Seq(fields))?;
            }
            Note::ExpectedDuration { seconds, chain } => {
                m.serialize_entry("seconds", seconds)?;
                m.serialize_entry("chain", &Seq(chain))?;
            }
        }
        m.end()
    }
}

struct ReasonOut<'a>(&'a Reason);

impl Serialize for ReasonOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("kind", r.kind())?;
        if let Reason::ForcedBy(fields) = r {
            m.serialize_entry("fields", fields)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct FieldOut<'a> {
    name: &'a str,
    before: Option<&'a Value>,
    after: Option<&'a Value>,
    after_unknown: bool,
    sensitive: bool,
    forces_replacement: bool,
}

fn field(f: &FieldChange) -> FieldOut<'_> {
    // Sensitive values are never emitted.
    let (before, after) = if f.sensitive {
        (None, None)
    } else {
        (f.before.as_ref(), f.after.known())
    };
    FieldOut {
        name: &f.name,
        before,
        after,
        after_unknown: f.after == Planned::Unknown,
        sensitive: f.sensitive,
        forces_replacement: f.forces_replacement,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flyteinfra_core::Mode;
    use insta::assert_json_snapshot;
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::plan::Action;
    use crate::testutil::*;

    /// One of each reason (`forced_by` with two fields).
    fn every_reason() -> Vec<Reason> {
        vec![
            Reason::ForcedBy(vec!["name".into(), "zone".into()]),
            Reason::Tainted,
            Reason::DeletedOutside,
            Reason::RemovedFromConfig,
            Reason::ResumePending,
            Reason::Drift,
            Reason::DesiredChanged,
            Reason::Destroy,
            Reason::Requested,
        ]
    }

    /// The schema names exactly the actions, reasons and note kinds the plan has (the IT
    /// test validates real plans against it with a JSON Schema validator).
    #[test]
    fn the_plan_schema_lists_every_action_reason_and_note_kind() {
        let schema: Json = serde_json::from_str(PLAN_JSON_SCHEMA).unwrap();
        let defs = &schema["$defs"];
        let actions: Vec<&str> = Action::ALL.map(Action::as_str).to_vec();
        assert_eq!(
            defs["resource_change"]["properties"]["action"]["enum"],
            json!(actions)
        );
        let reasons: Vec<&str> = every_reason().iter().map(Reason::kind).collect();
        assert_eq!(defs["reason"]["properties"]["kind"]["enum"], json!(reasons));
        let a = Address::new("aws_s3_bucket", "x");
        let notes = [
            Note::ReplaceRequested { address: a.clone() },
            Note::ReplaceNotNeeded { address: a.clone() },
            Note::DeletionProtected {
                address: a.clone(),
                field: "f".into(),
            },
            Note::NotEmpty {
                address: a.clone(),
                force_destroy: false,
            },
            Note::ProtectionDisabled {
                address: a.clone(),
                field: "f".into(),
                final_snapshot: None,
            },
            Note::DeletedOutside { address: a.clone() },
            Note::ChangedOutside {
                address: a.clone(),
                fields: vec![],
            },
            Note::ExpectedDuration {
                seconds: 1,
                chain: vec![a],
            },
        ];
        let described = defs["note"]["allOf"].to_string();
        for n in &notes {
            assert!(
                described.contains(&format!("\"{}\"", n.kind())),
                "{}",
                n.kind()
            );
            // Each note, as rendered, has every key its kind requires and no other.
            let rendered = serde_json::to_value(NoteOut(n)).unwrap();
            for key in rendered.as_object().unwrap().keys() {
                assert!(
                    defs["note"]["properties"].get(key).is_some(),
                    "{}: `{key}` is not in the schema",
                    n.kind()
                );
            }
        }
    }

    #[test]
    fn mixed_plan() {
        assert_json_snapshot!(render_json(&mixed().plan()));
    }

    #[test]
    fn sensitive_fields_are_null() {
        let p = mixed().plan();
        let json = serde_json::to_value(render_json(&p)).unwrap();
        let db = json["resource_changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == "aws_db_instance.main")
            .unwrap();
        let pw = db["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "master_password")
            .unwrap();
        assert_eq!(pw["sensitive"], true);
        assert_eq!(pw["before"], Json::Null);
        assert_eq!(pw["after"], Json::Null);
        assert_eq!(
            json["summary"],
            json!({"add": 3, "change": 1, "destroy": 2})
        );
    }

    #[test]
    fn protection_disabled_note() {
        let mut db = db_state("16", SECRET);
        db.inputs
            .insert("deletion_protection".into(), Value::Bool(true));
        db.attributes.insert("created".into(), "20250101".into());
        let st = state(vec![("aws_db_instance.main", db)]);
        let note =
            |f: Fixture| serde_json::to_value(render_json(&f.plan())).unwrap()["notes"].clone();
        assert_eq!(
            note(Fixture::new(vec![], st.clone()).destroy()),
            json!([{ "kind": "deletion_protected", "address": "aws_db_instance.main",
                     "field": "deletion_protection" }])
        );
        assert_eq!(
            note(
                Fixture::new(vec![], st.clone())
                    .destroy()
                    .disable_protection()
            ),
            json!([{ "kind": "protection_disabled", "address": "aws_db_instance.main",
                     "field": "deletion_protection", "final_snapshot": "id-1-final-20250101" }])
        );
        // A type that takes no snapshot: `null`, so the key is always there.
        let mut st = st;
        for rs in st.resources.values_mut() {
            rs.attributes.remove("created");
        }
        assert_eq!(
            note(Fixture::new(vec![], st).destroy().disable_protection())[0]["final_snapshot"],
            Json::Null
        );
    }

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }

    fn fc(name: &str, before: Option<Value>, after: Planned, sensitive: bool) -> FieldChange {
        FieldChange {
            name: name.into(),
            before,
            after,
            sensitive,
            forces_replacement: name == "name",
        }
    }

    /// Every action, reason and note kind; secrets, unknowns, nested values, escapes.
    fn everything() -> Plan {
        let map = Value::Map(
            [
                (
                    "k\"ey".to_string(),
                    Value::List(vec![Value::Int(-3), Value::Null]),
                ),
                ("b".to_string(), Value::Bool(true)),
            ]
            .into(),
        );
        let fields = vec![
            fc(
                "name",
                Some("old\n".into()),
                Planned::Known("new é".into()),
                false,
            ),
            fc(
                "password",
                Some("hunter2".into()),
                Planned::Known("s3cr3t".into()),
                true,
            ),
            fc("arn", None, Planned::Unknown, false),
            fc("token", None, Planned::Unknown, true),
            fc(
                "tags",
                Some(map.clone()),
                Planned::Known(Value::Null),
                false,
            ),
            fc(
                "size",
                Some(Value::Int(i64::MAX)),
                Planned::Known(Value::Int(i64::MIN)),
                false,
            ),
        ];
        let reasons = every_reason();
        let actions = Action::ALL;
        let changes = actions
            .iter()
            .enumerate()
            .map(|(i, action)| ResourceChange {
                address: a(&format!("t_{i}.r{i}")),
                mode: if *action == Action::Read {
                    Mode::Existing
                } else {
                    Mode::Managed
                },
                action: *action,
                reasons: reasons[..i].to_vec(),
                fields: fields[..i.min(fields.len())].to_vec(),
                holds_data: i % 2 == 0,
                data_loss: action.deletes(),
                dependencies: (0..i).map(|d| a(&format!("t_{d}.r{d}"))).collect(),
                planned_inputs: BTreeMap::new(),
            })
            .collect();
        Plan {
            format_version: crate::FORMAT_VERSION,
            deployment: "demo".into(),
            cloud: "aws".into(),
            lineage: "3f2c".into(),
            serial: u64::MAX,
            destroy: false,
            refresh_only: false,
            notes: vec![
                Note::ReplaceRequested {
                    address: a("t_2.r2"),
                },
                Note::ReplaceNotNeeded {
                    address: a("t_0.r0"),
                },
                Note::DeletionProtected {
                    address: a("t_3.r3"),
                    field: "deletion_protection".into(),
                },
                Note::NotEmpty {
                    address: a("t_5.r5"),
                    force_destroy: true,
                },
                Note::ProtectionDisabled {
                    address: a("t_3.r3"),
                    field: "deletion_protection".into(),
                    final_snapshot: Some("demo-db-final-20250101120000".into()),
                },
                Note::ProtectionDisabled {
                    address: a("t_4.r4"),
                    field: "deletion_protection".into(),
                    final_snapshot: None,
                },
                Note::DeletedOutside {
                    address: a("t_4.r4"),
                },
                Note::ChangedOutside {
                    address: a("t_1.r1"),
                    fields: fields.clone(),
                },
                Note::ExpectedDuration {
                    seconds: 1085,
                    chain: vec![a("t_0.r0"), a("t_1.r1")],
                },
            ],
            changes,
        }
    }

    /// The rendering as it was before it streamed: a `json!` tree.
    fn tree(plan: &Plan) -> Json {
        fn resource(c: &ResourceChange) -> Json {
            json!({
                "address": c.address.to_string(),
                "type": c.address.type_name(),
                "name": c.address.name(),
                "mode": match c.mode {
                    Mode::Managed => "managed",
                    Mode::Existing => "existing",
                },
                "action": c.action.as_str(),
                "reasons": c.reasons.iter().map(reason).collect::<Vec<_>>(),
                "holds_data": c.holds_data,
                "data_loss": c.data_loss,
                "dependencies": c.dependencies.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "fields": c.fields.iter().map(field).collect::<Vec<_>>(),
            })
        }
        fn note(n: &Note) -> Json {
            let mut j = json!({ "kind": n.kind() });
            match n {
                Note::ReplaceRequested { address }
                | Note::ReplaceNotNeeded { address }
                | Note::DeletedOutside { address } => {
                    j["address"] = json!(address.to_string());
                }
                Note::DeletionProtected { address, field } => {
                    j["address"] = json!(address.to_string());
                    j["field"] = json!(field);
                }
                Note::NotEmpty {
                    address,
                    force_destroy,
                } => {
                    j["address"] = json!(address.to_string());
                    j["force_destroy"] = json!(force_destroy);
                }
                Note::ProtectionDisabled {
                    address,
                    field,
                    final_snapshot,
                } => {
                    j["address"] = json!(address.to_string());
                    j["field"] = json!(field);
                    j["final_snapshot"] = json!(final_snapshot);
                }
                Note::ChangedOutside { address, fields } => {
                    j["address"] = json!(address.to_string());
                    j["fields"] = fields.iter().map(field).collect();
                }
                Note::ExpectedDuration { seconds, chain } => {
                    j["seconds"] = json!(seconds);
                    j["chain"] = chain.iter().map(ToString::to_string).collect();
                }
            }
            j
        }
        fn reason(r: &Reason) -> Json {
            match r {
                Reason::ForcedBy(fields) => json!({ "kind": r.kind(), "fields": fields }),
                _ => json!({ "kind": r.kind() }),
            }
        }
        fn field(f: &FieldChange) -> Json {
            let (before, after) = if f.sensitive {
                (Json::Null, Json::Null)
            } else {
                let before = f.before.as_ref().map_or(Json::Null, |v| v.to_json());
                let after = f.after.known().map_or(Json::Null, |v| v.to_json());
                (before, after)
            };
            json!({
                "name": f.name,
                "before": before,
                "after": after,
                "after_unknown": f.after == Planned::Unknown,
                "sensitive": f.sensitive,
                "forces_replacement": f.forces_replacement,
            })
        }
        let s = plan.summary();
        json!({
            "format_version": plan.format_version,
            "deployment": plan.deployment,
            "cloud": plan.cloud,
            "state": { "lineage": plan.lineage, "serial": plan.serial },
            "destroy": plan.destroy,
            "refresh_only": plan.refresh_only,
            "resource_changes": plan.changes.iter().map(resource).collect::<Vec<_>>(),
            "notes": plan.notes.iter().map(note).collect::<Vec<_>>(),
            "summary": { "add": s.add, "change": s.change, "destroy": s.destroy },
        })
    }

    #[test]
    fn streaming_is_byte_identical_to_the_tree() {
        let mut destroy = everything();
        destroy.destroy = true;
        destroy.refresh_only = true;
        for plan in [everything(), destroy, mixed().plan()] {
            let (streamed, old) = (render_json(&plan), tree(&plan));
            assert_eq!(streamed.to_string(), old.to_string());
            assert_eq!(
                serde_json::to_string_pretty(&streamed).unwrap(),
                serde_json::to_string_pretty(&old).unwrap()
            );
            assert!(!streamed.to_string().contains("hunter2"));
            assert!(!streamed.to_string().contains("s3cr3t"));
        }
    }
}

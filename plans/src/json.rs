//! The machine-readable plan (`plan --json`); its format is documented on [`render_json`].

use flyteinfra_core::{Mode, Planned};
use serde_json::{Value as Json, json};

use crate::plan::{FieldChange, Note, Plan, Reason, ResourceChange};

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
///     `removed_from_config`, `resume_pending`, `drift`, `desired_changed`, `destroy`.
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
///   - `deleted_outside` (refresh-only): gone from the cloud; apply drops it from state;
///   - `changed_outside` (refresh-only, with `fields` shaped as above: `before` is state's
///     value, `after` the cloud's): apply records the cloud's values.
/// - `summary`: counted as Terraform does: a replace counts in `add` and in `destroy`,
///   reads and no-ops count nowhere.
pub fn render_json(plan: &Plan) -> Json {
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

#[cfg(test)]
mod tests {
    use insta::assert_json_snapshot;

    use super::*;
    use crate::testutil::*;

    #[test]
    fn mixed_plan() {
        assert_json_snapshot!(render_json(&mixed().plan()));
    }

    #[test]
    fn sensitive_fields_are_null() {
        let p = mixed().plan();
        let json = render_json(&p);
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
}

//! Objects that hold contents (a bucket's objects): a plan that would delete one is
//! refused unless the configuration lets the contents go too.
//!
//! Whether an object holds anything is a question for its provider (one listing call),
//! asked by the binary after [`plan`](crate::plan) for the objects [`to_probe`] names;
//! [`note_contents`] records the answers as [`Note::NotEmpty`], and [`refused`] is what
//! apply must refuse before deleting anything.

use std::collections::BTreeSet;

use flyteinfra_core::{Address, Mode, ResourceSpec};

use crate::plan::{Note, Plan};

/// The managed objects `plan` deletes or replaces whose type holds user data: the only
/// ones whose contents are worth asking about.
pub fn to_probe(plan: &Plan) -> Vec<&Address> {
    plan.changes
        .iter()
        .filter(|c| c.action.deletes() && c.mode == Mode::Managed && c.holds_data)
        .map(|c| &c.address)
        .collect()
}

/// Records in `plan` which deleted or replaced objects hold contents (`holding`): one
/// [`Note::NotEmpty`] each, in plan order, replacing any such notes already there (a saved
/// plan is checked again before it is applied). `desired` says which may lose their
/// contents ([`ResourceSpec::force_destroy`]).
pub fn note_contents(plan: &mut Plan, holding: &BTreeSet<Address>, desired: &[ResourceSpec]) {
    plan.notes.retain(|n| !matches!(n, Note::NotEmpty { .. }));
    let notes: Vec<Note> = plan
        .changes
        .iter()
        .filter(|c| c.action.deletes() && holding.contains(&c.address))
        .map(|c| Note::NotEmpty {
            address: c.address.clone(),
            force_destroy: desired
                .iter()
                .any(|s| s.address == c.address && s.force_destroy),
        })
        .collect();
    plan.notes.extend(notes);
}

/// The objects apply must refuse to delete: they hold contents and the configuration
/// does not let those go.
pub fn refused(plan: &Plan) -> Vec<&Address> {
    plan.notes
        .iter()
        .filter_map(|n| match n {
            Note::NotEmpty {
                address,
                force_destroy: false,
            } => Some(address),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, FORMAT_VERSION, ResourceChange};
    use std::collections::BTreeMap;

    fn a(s: &str) -> Address {
        s.parse().unwrap()
    }

    fn change(addr: &str, action: Action, holds_data: bool) -> ResourceChange {
        ResourceChange {
            address: a(addr),
            mode: Mode::Managed,
            action,
            reasons: Vec::new(),
            fields: Vec::new(),
            holds_data,
            data_loss: holds_data && action.deletes(),
            dependencies: Vec::new(),
            planned_inputs: BTreeMap::new(),
        }
    }

    fn plan(changes: Vec<ResourceChange>) -> Plan {
        Plan {
            format_version: FORMAT_VERSION,
            deployment: "demo".into(),
            cloud: "aws".into(),
            lineage: "l".into(),
            serial: 1,
            destroy: true,
            refresh_only: false,
            notes: Vec::new(),
            changes,
        }
    }

    #[test]
    fn only_deleted_or_replaced_data_holders_are_probed() {
        let p = plan(vec![
            change("b.deleted", Action::Delete, true),
            change("b.replaced", Action::Replace, true),
            change("b.kept", Action::NoOp, true),
            change("b.updated", Action::Update, true),
            change("r.deleted", Action::Delete, false),
        ]);
        assert_eq!(to_probe(&p), vec![&a("b.deleted"), &a("b.replaced")]);
    }

    #[test]
    fn a_non_empty_bucket_is_refused_unless_its_contents_may_go() {
        let mut p = plan(vec![
            change("b.forced", Action::Delete, true),
            change("b.kept", Action::Delete, true),
            change("b.empty", Action::Delete, true),
        ]);
        let holding: BTreeSet<Address> = [a("b.forced"), a("b.kept")].into();
        let desired = vec![
            ResourceSpec::managed(a("b.forced")).force_destroy(true),
            ResourceSpec::managed(a("b.kept")),
        ];
        note_contents(&mut p, &holding, &desired);
        assert_eq!(
            p.notes,
            vec![
                Note::NotEmpty {
                    address: a("b.forced"),
                    force_destroy: true
                },
                Note::NotEmpty {
                    address: a("b.kept"),
                    force_destroy: false
                },
            ]
        );
        assert_eq!(refused(&p), vec![&a("b.kept")]);
        // Checked again (a saved plan before apply): the notes are replaced, not added to.
        note_contents(&mut p, &BTreeSet::new(), &desired);
        assert!(p.notes.is_empty());
        assert!(refused(&p).is_empty());
    }

    #[test]
    fn a_bucket_removed_from_the_config_keeps_its_contents() {
        // No desired spec: nothing lets its contents go.
        let mut p = plan(vec![change("b.gone", Action::Delete, true)]);
        note_contents(&mut p, &[a("b.gone")].into(), &[]);
        assert_eq!(refused(&p), vec![&a("b.gone")]);
    }
}

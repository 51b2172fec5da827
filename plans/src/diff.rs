//! The diff: desired resources + state + refreshed attributes → a [`Plan`]; the rules
//! are documented on [`plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use flyteinfra_core::{
    Address, Attributes, Expr, Graph, Mode, Planned, Reference, Registry, ResourceSpec, Schema,
    Value, resolve_attributes,
};
use flyteinfra_state::{ResourceState, StateDoc, Status};

use crate::error::PlanError;
use crate::plan::{Action, FORMAT_VERSION, FieldChange, Note, Plan, Reason, ResourceChange};

/// Everything [`plan`] needs.
#[derive(Clone, Copy)]
pub struct PlanInput<'a> {
    /// The desired resources, as the blueprint produced them.
    pub desired: &'a [ResourceSpec],
    /// Schemas by type name; a resource of an unregistered type is an error.
    pub registry: &'a Registry,
    /// The state planned against.
    pub state: &'a StateDoc,
    /// Refreshed actual attributes per address: `Some(Some(attrs))` exists,
    /// `Some(None)` gone from the cloud, absent = not refreshed (`--refresh=false`):
    /// state attributes are used as the actual ones.
    pub actual: &'a BTreeMap<Address, Option<Attributes>>,
    /// `--target`: empty means everything; otherwise the targets and everything they
    /// depend on (for a destroy: the targets and everything that depends on them).
    pub targets: &'a [Address],
    /// Plan deleting every managed resource in state.
    pub destroy: bool,
    /// `--replace`: replace these managed resources even if nothing changed.
    pub replace: &'a [Address],
    /// `--refresh-only`: no resource changes; notes on what the cloud changed.
    pub refresh_only: bool,
    /// `--disable-protection` (destroy only): a protected object's delete turns its
    /// protection off first ([`Note::ProtectionDisabled`]) instead of being refused.
    pub disable_protection: bool,
}

/// Computes the plan: desired resources + state + refreshed attributes → a [`Plan`].
///
/// # How each resource is decided
///
/// Desired resources are walked in topological order, so that every reference can be
/// resolved against the planned "after" values of the resource it names. A reference is
/// known when that value is known at plan time (a no-op, update or read keeps the cloud's
/// values, overlaid with the fields it changes) and unknown otherwise (a create or replace
/// leaves computed fields unknown until apply).
///
/// For a managed resource, the first rule that matches wins:
///
/// 1. no (managed) state entry → [`Action::Create`];
/// 2. state status `pending` → create, [`Reason::ResumePending`] (apply resumes waiting);
/// 3. refreshed as gone from the cloud → create, [`Reason::DeletedOutside`];
/// 4. state status `tainted` → [`Action::Replace`], [`Reason::Tainted`];
/// 5. otherwise each desired input is compared: a normal field against the actual value
///    (refreshed, or from state without refresh), a server-managed field against the
///    last applied input only, so the cloud changing it never makes a diff. An unknown
///    planned value counts as a change. A changed force-new field makes a replace
///    ([`Reason::ForcedBy`]); other changes an [`Action::Update`]; none an
///    [`Action::NoOp`].
///
/// Inputs the configuration does not set are not diffed: leaving an optional input out
/// means "not managed", not "unset it".
///
/// `existing:` resources are only ever [`Action::Read`]. Managed resources in state but
/// not in the configuration are deleted ([`Reason::RemovedFromConfig`]), dependents first,
/// using the dependencies recorded in state; `existing:` ones simply drop out. A destroy
/// plan deletes every managed resource in state the same way.
///
/// A resource named by `replace` that has an object is replaced ([`Reason::Requested`],
/// [`Note::ReplaceRequested`]); one without an object yet is created
/// ([`Note::ReplaceNotNeeded`]). Every delete or replace of an object whose deletion
/// protection is on gets a [`Note::DeletionProtected`]: apply refuses it. In a destroy
/// with `disable_protection`, each such delete gets a [`Note::ProtectionDisabled`] instead
/// (with the final snapshot's name from the type's
/// [`final_snapshot`](flyteinfra_core::ResourceType::final_snapshot)): apply turns the
/// protection off, then deletes. Protection is judged by what the refresh read when it read
/// the field, else by state (see [`deletion_protected`]).
///
/// A refresh-only plan has no resource changes, only notes: every object in state that
/// the refresh found gone ([`Note::DeletedOutside`]) or different
/// ([`Note::ChangedOutside`], field by field, state's value before, the cloud's after).
///
/// # Sensitivity
///
/// A field is sensitive if its schema says so, or if its value is derived (through a
/// reference) from a sensitive attribute of another resource, so a secret copied into a
/// non-secret field is still redacted.
///
/// # Errors
/// - [`PlanError::Graph`]: the desired resources form a cycle, refer to a resource that
///   does not exist, or repeat an address;
/// - [`PlanError::StateGraph`]: the dependencies recorded in state form a cycle;
/// - [`PlanError::UnknownType`], [`PlanError::UnknownAttribute`],
///   [`PlanError::NotAnInput`], [`PlanError::MissingRequired`],
///   [`PlanError::UnknownReferencedAttribute`]: a desired resource does not fit its schema;
/// - [`PlanError::ExistingNotFound`]: an `existing:` resource was refreshed as gone;
/// - [`PlanError::UnknownTarget`]: a target is neither desired nor in state;
/// - [`PlanError::CannotReplace`]: a `replace` address is not a managed resource of the
///   configuration.
pub fn plan(input: PlanInput<'_>) -> Result<Plan, PlanError> {
    check_replace(&input)?;
    let (changes, mut notes) = if input.refresh_only {
        check_targets(&input)?;
        (Vec::new(), refresh_notes(&input))
    } else if input.destroy {
        (plan_destroy(&input)?, Vec::new())
    } else {
        let changes = plan_apply(&input)?;
        let mut notes = replace_notes(&input, &changes);
        notes.extend(expected_duration(input.registry, &changes));
        (changes, notes)
    };
    notes.extend(protection_notes(&input, &changes));
    let state = input.state;
    Ok(Plan {
        format_version: FORMAT_VERSION,
        deployment: state.deployment.clone(),
        cloud: state.cloud.clone(),
        lineage: state.lineage.clone(),
        serial: state.serial,
        destroy: input.destroy,
        refresh_only: input.refresh_only,
        notes,
        changes,
    })
}

/// The [`Note::ExpectedDuration`] of an apply with creates or replaces: the critical path
/// over the creates and replaces (by their types' expected create time; everything else
/// takes no time), along the dependencies the plan recorded.
fn expected_duration(registry: &Registry, changes: &[ResourceChange]) -> Option<Note> {
    let takes = |c: &ResourceChange| match c.action {
        Action::Create | Action::Replace => registry
            .schema(c.address.type_name())
            .map_or(Duration::ZERO, |s| s.expected_create),
        _ => Duration::ZERO,
    };
    let planned: BTreeMap<&Address, Duration> = changes
        .iter()
        .filter(|c| c.action != Action::Delete)
        .map(|c| (&c.address, takes(c)))
        .collect();
    let graph = Graph::build(
        changes
            .iter()
            .filter(|c| c.action != Action::Delete)
            .map(|c| {
                let deps = c.dependencies.iter().filter(|d| planned.contains_key(d));
                (c.address.clone(), deps.cloned().collect())
            }),
    )
    .ok()?;
    let (total, chain) = graph.critical_path(|a| planned[a]);
    let chain: Vec<Address> = chain
        .into_iter()
        .filter(|a| planned[a] > Duration::ZERO)
        .collect();
    (!chain.is_empty()).then_some(Note::ExpectedDuration {
        seconds: total.as_secs(),
        chain,
    })
}

/// The deletes and replaces in `changes` of managed objects whose deletion protection is
/// on, with the protecting field. On means: as the refresh read it (`actual`), when it
/// read the object and the field; otherwise as state has it (attributes or last applied
/// inputs). So protection turned off in the cloud (by an interrupted
/// `destroy --disable-protection`, or by hand) no longer blocks a destroy: the cloud would
/// not refuse that delete either. Apply refuses a plan with any, before deleting anything,
/// unless the plan turns them off ([`Note::ProtectionDisabled`]).
pub fn deletion_protected(
    registry: &Registry,
    state: &StateDoc,
    actual: &BTreeMap<Address, Option<Attributes>>,
    changes: &[ResourceChange],
) -> Vec<(Address, &'static str)> {
    changes
        .iter()
        .filter(|c| c.action.deletes())
        .filter_map(|c| {
            let field = registry
                .schema(c.address.type_name())?
                .deletion_protection?;
            let rs = state.resources.get(&c.address)?;
            let on = |a: &Attributes| a.get(field) == Some(&Value::Bool(true));
            let protected = match actual.get(&c.address) {
                Some(Some(read)) if read.contains_key(field) => on(read),
                _ => on(&rs.attributes) || on(&rs.inputs),
            };
            (rs.mode == Mode::Managed && protected).then(|| (c.address.clone(), field))
        })
        .collect()
}

/// A note for each protected delete or replace: refused, or, in a destroy with
/// `disable_protection`, protection turned off first.
fn protection_notes(input: &PlanInput<'_>, changes: &[ResourceChange]) -> Vec<Note> {
    deletion_protected(input.registry, input.state, input.actual, changes)
        .into_iter()
        .map(|(address, field)| {
            let field = field.to_string();
            let deletes = changes
                .iter()
                .any(|c| c.address == address && c.action == Action::Delete);
            if !(input.destroy && input.disable_protection && deletes) {
                return Note::DeletionProtected { address, field };
            }
            // The name the delete will use: the type derives it from the attributes the
            // delete gets, which are the refreshed ones once protection is off (that update
            // records what the cloud reports).
            let final_snapshot = input.state.resources.get(&address).and_then(|rs| {
                let attrs = match input.actual.get(&address) {
                    Some(Some(read)) => read,
                    _ => &rs.attributes,
                };
                input
                    .registry
                    .get(address.type_name())?
                    .final_snapshot(&rs.id, attrs)
            });
            Note::ProtectionDisabled {
                address,
                field,
                final_snapshot,
            }
        })
        .collect()
}

fn check_replace(input: &PlanInput<'_>) -> Result<(), PlanError> {
    for address in input.replace {
        let why = match input.desired.iter().find(|s| &s.address == address) {
            None => "it is not a resource of this configuration (see `flyteinfra state list`)",
            Some(s) if s.mode == Mode::Existing => {
                "it is `existing:`, which flyteinfra reads but never changes"
            }
            Some(_) => continue,
        };
        return Err(PlanError::CannotReplace {
            address: address.clone(),
            why,
        });
    }
    Ok(())
}

fn replace_notes(input: &PlanInput<'_>, changes: &[ResourceChange]) -> Vec<Note> {
    input
        .replace
        .iter()
        .filter_map(|a| {
            let c = changes.iter().find(|c| &c.address == a)?;
            let address = a.clone();
            Some(if c.reasons.contains(&Reason::Requested) {
                Note::ReplaceRequested { address }
            } else {
                Note::ReplaceNotNeeded { address }
            })
        })
        .collect()
}

/// What the refresh found different from state, for a refresh-only plan.
fn refresh_notes(input: &PlanInput<'_>) -> Vec<Note> {
    let mut notes = Vec::new();
    for (addr, rs) in &input.state.resources {
        if !input.targets.is_empty() && !input.targets.contains(addr) {
            continue;
        }
        let sensitive = |name: &str| {
            input
                .registry
                .schema(addr.type_name())
                .is_none_or(|s| s.is_sensitive(name))
        };
        match input.actual.get(addr) {
            Some(None) => notes.push(Note::DeletedOutside {
                address: addr.clone(),
            }),
            Some(Some(now)) => {
                let names: BTreeSet<&String> = rs.attributes.keys().chain(now.keys()).collect();
                let fields: Vec<FieldChange> = names
                    .into_iter()
                    .filter(|n| rs.attributes.get(*n) != now.get(*n))
                    .map(|n| FieldChange {
                        name: n.clone(),
                        before: rs.attributes.get(n).cloned(),
                        after: Planned::Known(now.get(n).cloned().unwrap_or(Value::Null)),
                        sensitive: sensitive(n),
                        forces_replacement: false,
                    })
                    .collect();
                if !fields.is_empty() {
                    notes.push(Note::ChangedOutside {
                        address: addr.clone(),
                        fields,
                    });
                }
            }
            None => {}
        }
    }
    notes
}

fn check_targets(input: &PlanInput<'_>) -> Result<(), PlanError> {
    for t in input.targets {
        let desired = input.desired.iter().any(|s| &s.address == t);
        if !desired && !input.state.resources.contains_key(t) {
            return Err(PlanError::UnknownTarget(t.clone()));
        }
    }
    Ok(())
}

fn plan_apply(input: &PlanInput<'_>) -> Result<Vec<ResourceChange>, PlanError> {
    let graph = Graph::build(
        input
            .desired
            .iter()
            .map(|s| (s.address.clone(), s.dependencies())),
    )?;
    check_targets(input)?;
    let specs: BTreeMap<&Address, &ResourceSpec> =
        input.desired.iter().map(|s| (&s.address, s)).collect();

    let scope: Option<BTreeSet<Address>> = if input.targets.is_empty() {
        None
    } else {
        Some(graph.with_dependencies(input.targets))
    };
    let mut walk = Walk {
        input,
        after: BTreeMap::new(),
        sensitive: BTreeMap::new(),
    };
    let mut changes = Vec::new();
    for addr in graph.topo_order() {
        if scope.as_ref().is_some_and(|s| !s.contains(&addr)) {
            continue;
        }
        changes.push(walk.desired(specs[&addr])?);
    }

    let orphans: BTreeMap<&Address, &ResourceState> = input
        .state
        .resources
        .iter()
        .filter(|(a, rs)| rs.mode == Mode::Managed && !specs.contains_key(a))
        .collect();
    changes.extend(deletes(input, &orphans, Reason::RemovedFromConfig)?);
    Ok(changes)
}

fn plan_destroy(input: &PlanInput<'_>) -> Result<Vec<ResourceChange>, PlanError> {
    check_targets(input)?;
    let all: BTreeMap<&Address, &ResourceState> = input.state.resources.iter().collect();
    let managed = |a: &Address| all.get(a).is_some_and(|rs| rs.mode == Mode::Managed);
    // Build over every state resource so target closures pass through `existing:` ones,
    // then keep the managed ones.
    let graph = state_graph(&all)?;
    let scope = if input.targets.is_empty() {
        graph.addresses().into_iter().collect()
    } else {
        graph.with_dependents(input.targets)
    };
    let selected: BTreeMap<&Address, &ResourceState> = all
        .iter()
        .filter(|(a, _)| scope.contains(**a) && managed(a))
        .map(|(a, rs)| (*a, *rs))
        .collect();
    // Targets were applied above; delete everything selected.
    let untargeted = PlanInput {
        targets: &[],
        ..*input
    };
    deletes(&untargeted, &selected, Reason::Destroy)
}

/// A graph of state resources from their recorded dependencies (those outside `set` are
/// ignored: they do not order these deletes).
fn state_graph(set: &BTreeMap<&Address, &ResourceState>) -> Result<Graph, PlanError> {
    Graph::build(set.iter().map(|(a, rs)| {
        let deps = rs
            .dependencies
            .iter()
            .filter(|d| set.contains_key(d))
            .cloned()
            .collect();
        ((*a).clone(), deps)
    }))
    .map_err(PlanError::StateGraph)
}

/// Deletes of `set`, dependents first. With targets, only the targets in `set` and what
/// depends on them.
fn deletes(
    input: &PlanInput<'_>,
    set: &BTreeMap<&Address, &ResourceState>,
    reason: Reason,
) -> Result<Vec<ResourceChange>, PlanError> {
    let graph = state_graph(set)?;
    let scope: Option<BTreeSet<Address>> =
        (!input.targets.is_empty()).then(|| graph.with_dependents(input.targets));
    let mut out = Vec::new();
    for addr in graph.topo_order().into_iter().rev() {
        if scope.as_ref().is_some_and(|s| !s.contains(&addr)) {
            continue;
        }
        out.push(delete_change(input, &addr, set[&addr], reason.clone())?);
    }
    Ok(out)
}

fn schema_for<'r>(registry: &'r Registry, address: &Address) -> Result<&'r Schema, PlanError> {
    registry
        .schema(address.type_name())
        .ok_or_else(|| PlanError::UnknownType {
            address: address.clone(),
            type_name: address.type_name().to_string(),
        })
}

fn delete_change(
    input: &PlanInput<'_>,
    addr: &Address,
    rs: &ResourceState,
    reason: Reason,
) -> Result<ResourceChange, PlanError> {
    let schema = schema_for(input.registry, addr)?;
    let refreshed = input.actual.get(addr);
    let mut reasons = vec![reason];
    if matches!(refreshed, Some(None)) {
        reasons.push(Reason::DeletedOutside);
    }
    let attrs = match refreshed {
        Some(Some(a)) => a,
        _ => &rs.attributes,
    };
    let mut before: BTreeMap<&String, &Value> = rs.inputs.iter().collect();
    before.extend(attrs.iter());
    let fields = before
        .into_iter()
        .map(|(name, v)| FieldChange {
            name: name.clone(),
            before: Some(v.clone()),
            after: Planned::Known(Value::Null),
            sensitive: schema.is_sensitive(name),
            forces_replacement: false,
        })
        .collect();
    Ok(ResourceChange {
        address: addr.clone(),
        mode: Mode::Managed,
        action: Action::Delete,
        reasons,
        fields,
        holds_data: schema.holds_data,
        data_loss: schema.holds_data,
        dependencies: rs.dependencies.clone(),
        planned_inputs: BTreeMap::new(),
    })
}

/// A resource's planned values after apply, for resolving references to it.
struct After {
    values: BTreeMap<String, Planned>,
    /// The value of an attribute not in `values`.
    missing: Planned,
}

impl After {
    /// Known values from the cloud (or state), overlaid with `changed`.
    fn known(attrs: &Attributes, changed: &[FieldChange]) -> After {
        let mut values: BTreeMap<String, Planned> = attrs
            .iter()
            .map(|(k, v)| (k.clone(), Planned::Known(v.clone())))
            .collect();
        for f in changed {
            values.insert(f.name.clone(), f.after.clone());
        }
        After {
            values,
            missing: Planned::Known(Value::Null),
        }
    }

    /// A new object: the planned inputs; everything else unknown until apply.
    fn new_object(inputs: &BTreeMap<String, Planned>) -> After {
        After {
            values: inputs.clone(),
            missing: Planned::Unknown,
        }
    }
}

/// The state of the topological walk over desired resources.
struct Walk<'i, 'a> {
    input: &'i PlanInput<'a>,
    /// Planned after-values of every resource walked so far.
    after: BTreeMap<Address, After>,
    /// Input names of walked resources that are sensitive (by schema or derived).
    sensitive: BTreeMap<Address, BTreeSet<String>>,
}

struct Decision {
    action: Action,
    reasons: Vec<Reason>,
    fields: Vec<FieldChange>,
    after: After,
}

impl Walk<'_, '_> {
    fn desired(&mut self, spec: &ResourceSpec) -> Result<ResourceChange, PlanError> {
        let schema = schema_for(self.input.registry, &spec.address)?;
        self.validate(spec, schema)?;
        let resolved = resolve_attributes(spec, &|r: &Reference| self.lookup(r));
        let sensitive: BTreeSet<String> = spec
            .attributes
            .iter()
            .filter(|(name, e)| schema.is_sensitive(name) || self.derives_from_secret(e))
            .map(|(name, _)| name.clone())
            .collect();

        let decision = match spec.mode {
            Mode::Existing => self.read(spec, schema, &resolved, &sensitive)?,
            Mode::Managed => self.managed(spec, schema, &resolved, &sensitive),
        };
        self.after.insert(spec.address.clone(), decision.after);
        self.sensitive.insert(spec.address.clone(), sensitive);
        Ok(ResourceChange {
            address: spec.address.clone(),
            mode: spec.mode,
            action: decision.action,
            reasons: decision.reasons,
            fields: decision.fields,
            holds_data: schema.holds_data,
            data_loss: schema.holds_data && decision.action.deletes(),
            dependencies: spec.dependencies(),
            planned_inputs: resolved,
        })
    }

    fn validate(&self, spec: &ResourceSpec, schema: &Schema) -> Result<(), PlanError> {
        let address = &spec.address;
        for (name, expr) in &spec.attributes {
            let field = schema
                .field(name)
                .ok_or_else(|| PlanError::UnknownAttribute {
                    address: address.clone(),
                    field: name.clone(),
                })?;
            if !field.flags.input {
                return Err(PlanError::NotAnInput {
                    address: address.clone(),
                    field: name.clone(),
                });
            }
            let mut refs = Vec::new();
            expr.for_each_ref(&mut |r| refs.push(r.clone()));
            for r in refs {
                let target = schema_for(self.input.registry, &r.address)?;
                if target.field(&r.attribute).is_none() {
                    return Err(PlanError::UnknownReferencedAttribute {
                        address: address.clone(),
                        reference: r,
                    });
                }
            }
        }
        if spec.mode == Mode::Managed {
            let missing = schema
                .fields
                .iter()
                .find(|f| f.flags.required && !spec.attributes.contains_key(f.name));
            if let Some(f) = missing {
                return Err(PlanError::MissingRequired {
                    address: address.clone(),
                    field: f.name.to_string(),
                });
            }
        }
        Ok(())
    }

    fn lookup(&self, r: &Reference) -> Planned {
        match self.after.get(&r.address) {
            Some(a) => a
                .values
                .get(&r.attribute)
                .cloned()
                .unwrap_or_else(|| a.missing.clone()),
            None => Planned::Unknown,
        }
    }

    fn is_sensitive(&self, r: &Reference) -> bool {
        let by_schema = self
            .input
            .registry
            .schema(r.address.type_name())
            .is_some_and(|s| s.is_sensitive(&r.attribute));
        by_schema
            || self
                .sensitive
                .get(&r.address)
                .is_some_and(|s| s.contains(&r.attribute))
    }

    fn derives_from_secret(&self, e: &Expr) -> bool {
        let mut found = false;
        e.for_each_ref(&mut |r| found |= self.is_sensitive(r));
        found
    }

    fn read(
        &self,
        spec: &ResourceSpec,
        schema: &Schema,
        resolved: &BTreeMap<String, Planned>,
        sensitive: &BTreeSet<String>,
    ) -> Result<Decision, PlanError> {
        let addr = &spec.address;
        let state_entry = self.input.state.resources.get(addr);
        let attrs = match self.input.actual.get(addr) {
            Some(Some(a)) => Some(a),
            Some(None) => {
                let id = spec
                    .existing_id
                    .clone()
                    .or_else(|| state_entry.map(|rs| rs.id.clone()))
                    .unwrap_or_default();
                return Err(PlanError::ExistingNotFound {
                    address: addr.clone(),
                    id,
                });
            }
            None => state_entry.map(|rs| &rs.attributes),
        };
        let is_sensitive = |name: &str| schema.is_sensitive(name) || sensitive.contains(name);
        let (fields, after) = match attrs {
            Some(attrs) => {
                let fields = attrs
                    .iter()
                    .map(|(name, v)| FieldChange {
                        name: name.clone(),
                        before: None,
                        after: Planned::Known(v.clone()),
                        sensitive: is_sensitive(name),
                        forces_replacement: false,
                    })
                    .collect();
                (fields, After::known(attrs, &[]))
            }
            // Never read yet: everything is read during apply.
            None => {
                let fields = schema
                    .fields
                    .iter()
                    .map(|f| FieldChange {
                        name: f.name.to_string(),
                        before: None,
                        after: resolved.get(f.name).cloned().unwrap_or(Planned::Unknown),
                        sensitive: is_sensitive(f.name),
                        forces_replacement: false,
                    })
                    .collect::<Vec<_>>();
                (sorted(fields), After::new_object(resolved))
            }
        };
        Ok(Decision {
            action: Action::Read,
            reasons: Vec::new(),
            fields,
            after,
        })
    }

    fn managed(
        &self,
        spec: &ResourceSpec,
        schema: &Schema,
        resolved: &BTreeMap<String, Planned>,
        sensitive: &BTreeSet<String>,
    ) -> Decision {
        let addr = &spec.address;
        let state_entry = self
            .input
            .state
            .resources
            .get(addr)
            .filter(|rs| rs.mode == Mode::Managed);
        let refreshed = self.input.actual.get(addr);
        let rs = match state_entry {
            None => return create(schema, resolved, sensitive, Vec::new()),
            Some(rs) if rs.status == Status::Pending => {
                return create(schema, resolved, sensitive, vec![Reason::ResumePending]);
            }
            Some(_) if matches!(refreshed, Some(None)) => {
                return create(schema, resolved, sensitive, vec![Reason::DeletedOutside]);
            }
            Some(rs) => rs,
        };
        let actual = match refreshed {
            Some(Some(a)) => a,
            _ => &rs.attributes,
        };

        let mut changed = Vec::new();
        let (mut desired_changed, mut drift) = (false, false);
        for (name, planned) in resolved {
            let flags = schema.field(name).expect("validated").flags;
            let last_applied = Planned::Known(rs.inputs.get(name).cloned().unwrap_or(Value::Null));
            let before = if flags.server_managed {
                rs.inputs.get(name)
            } else {
                actual.get(name)
            };
            let now = Planned::Known(before.cloned().unwrap_or(Value::Null));
            if *planned == now {
                continue;
            }
            if *planned == last_applied {
                drift = true;
            } else {
                desired_changed = true;
            }
            changed.push(FieldChange {
                name: name.clone(),
                before: before.cloned(),
                after: planned.clone(),
                sensitive: sensitive.contains(name),
                forces_replacement: flags.force_new,
            });
        }

        let forced: Vec<String> = changed
            .iter()
            .filter(|f| f.forces_replacement)
            .map(|f| f.name.clone())
            .collect();
        let tainted = rs.status == Status::Tainted;
        let requested = self.input.replace.contains(addr);
        let mut reasons = Vec::new();
        if tainted {
            reasons.push(Reason::Tainted);
        }
        if requested {
            reasons.push(Reason::Requested);
        }
        if !forced.is_empty() {
            reasons.push(Reason::ForcedBy(forced.clone()));
        }
        if desired_changed {
            reasons.push(Reason::DesiredChanged);
        }
        if drift {
            reasons.push(Reason::Drift);
        }

        if tainted || requested || !forced.is_empty() {
            // Computed fields of the new object are unknown until apply.
            for f in &schema.fields {
                if f.flags.computed && !resolved.contains_key(f.name) {
                    changed.push(FieldChange {
                        name: f.name.to_string(),
                        before: actual.get(f.name).cloned(),
                        after: Planned::Unknown,
                        sensitive: f.flags.sensitive,
                        forces_replacement: false,
                    });
                }
            }
            Decision {
                action: Action::Replace,
                reasons,
                fields: sorted(changed),
                after: After::new_object(resolved),
            }
        } else {
            let after = After::known(actual, &changed);
            let action = if changed.is_empty() {
                Action::NoOp
            } else {
                Action::Update
            };
            Decision {
                action,
                reasons,
                fields: sorted(changed),
                after,
            }
        }
    }
}

fn create(
    schema: &Schema,
    resolved: &BTreeMap<String, Planned>,
    sensitive: &BTreeSet<String>,
    reasons: Vec<Reason>,
) -> Decision {
    let mut fields: Vec<FieldChange> = resolved
        .iter()
        .map(|(name, planned)| FieldChange {
            name: name.clone(),
            before: None,
            after: planned.clone(),
            sensitive: sensitive.contains(name),
            forces_replacement: false,
        })
        .collect();
    for f in &schema.fields {
        if f.flags.computed && !resolved.contains_key(f.name) {
            fields.push(FieldChange {
                name: f.name.to_string(),
                before: None,
                after: Planned::Unknown,
                sensitive: f.flags.sensitive,
                forces_replacement: false,
            });
        }
    }
    Decision {
        action: Action::Create,
        reasons,
        fields: sorted(fields),
        after: After::new_object(resolved),
    }
}

fn sorted(mut fields: Vec<FieldChange>) -> Vec<FieldChange> {
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    fields
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::{GraphError, ResourceSpec};

    use super::*;
    use crate::testutil::*;

    fn bucket_state(name: &str) -> ResourceState {
        ready(
            attrs([("bucket", name.into())]),
            attrs([("arn", format!("arn:aws:s3:::{name}").into())]),
            &[],
        )
    }

    fn role() -> ResourceSpec {
        ResourceSpec::managed(a("aws_iam_role.app"))
            .with("name", "demo-app")
            .with("policy", Expr::reference(&a("aws_s3_bucket.data"), "arn"))
    }

    fn actions(plan: &Plan) -> Vec<(String, Action)> {
        plan.changes
            .iter()
            .map(|c| (c.address.to_string(), c.action))
            .collect()
    }

    #[test]
    fn create_shows_inputs_and_unknown_computed_fields() {
        let p = Fixture::new(vec![bucket()], state(vec![])).plan();
        let c = p.change(&a("aws_s3_bucket.data")).unwrap();
        assert_eq!(c.action, Action::Create);
        assert!(c.reasons.is_empty());
        let fields: Vec<_> = c.fields.iter().map(|f| (&*f.name, &f.after)).collect();
        assert_eq!(
            fields,
            [
                ("arn", &Planned::Unknown),
                ("bucket", &Planned::Known("demo-data".into()))
            ]
        );
        assert!(!c.data_loss && c.holds_data);
        assert_eq!(p.lineage, "00000000-0000-4000-8000-000000000000");
        assert_eq!((p.serial, &*p.deployment, &*p.cloud), (7, "demo", "aws"));
    }

    #[test]
    fn unchanged_resource_is_a_no_op() {
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let p = Fixture::new(vec![bucket()], st).plan();
        assert_eq!(p.changes[0].action, Action::NoOp);
        assert!(p.changes[0].fields.is_empty());
        assert!(!p.has_changes());
    }

    #[test]
    fn changed_input_is_an_update() {
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let p = Fixture::new(vec![bucket().with("tags", vec!["team:ml"])], st).plan();
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.reasons, [Reason::DesiredChanged]);
        assert_eq!(c.fields.len(), 1);
        assert_eq!(c.fields[0].name, "tags");
        assert_eq!(c.fields[0].before, None);
        assert!(!c.data_loss);
    }

    #[test]
    fn changed_force_new_field_is_a_replace_with_data_loss() {
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-old-name"))]);
        let p = Fixture::new(vec![bucket()], st).plan();
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Replace);
        assert_eq!(
            c.reasons,
            [
                Reason::ForcedBy(vec!["bucket".into()]),
                Reason::DesiredChanged
            ]
        );
        assert!(c.data_loss);
        let arn = c.fields.iter().find(|f| f.name == "arn").unwrap();
        assert_eq!(arn.before, Some("arn:aws:s3:::demo-old-name".into()));
        assert_eq!(arn.after, Planned::Unknown);
        assert!(
            c.fields
                .iter()
                .find(|f| f.name == "bucket")
                .unwrap()
                .forces_replacement
        );
    }

    #[test]
    fn resource_removed_from_config_is_deleted() {
        let st = state(vec![("aws_s3_bucket.old", bucket_state("demo-old"))]);
        let p = Fixture::new(vec![], st).plan();
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Delete);
        assert_eq!(c.reasons, [Reason::RemovedFromConfig]);
        assert!(c.data_loss);
        assert!(c.planned_inputs.is_empty());
        assert!(
            c.fields
                .iter()
                .all(|f| f.after == Planned::Known(Value::Null))
        );
    }

    #[test]
    fn tainted_resource_is_replaced() {
        let mut rs = bucket_state("demo-data");
        rs.status = Status::Tainted;
        let p = Fixture::new(vec![bucket()], state(vec![("aws_s3_bucket.data", rs)])).plan();
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Replace);
        assert_eq!(c.reasons, [Reason::Tainted]);
        assert!(c.data_loss);
    }

    #[test]
    fn pending_resource_resumes_its_create() {
        let mut rs = bucket_state("demo-data");
        rs.status = Status::Pending;
        let p = Fixture::new(vec![bucket()], state(vec![("aws_s3_bucket.data", rs)])).plan();
        assert_eq!(p.changes[0].action, Action::Create);
        assert_eq!(p.changes[0].reasons, [Reason::ResumePending]);
    }

    #[test]
    fn resource_deleted_outside_is_created_again() {
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let p = Fixture::new(vec![bucket()], st)
            .actual("aws_s3_bucket.data", None)
            .plan();
        assert_eq!(p.changes[0].action, Action::Create);
        assert_eq!(p.changes[0].reasons, [Reason::DeletedOutside]);
        assert!(p.changes[0].fields.iter().all(|f| f.before.is_none()));
    }

    #[test]
    fn drift_is_corrected_by_an_update() {
        let st = state(vec![(
            "aws_s3_bucket.data",
            ready(
                attrs([("bucket", "demo-data".into()), ("tags", vec!["a"].into())]),
                attrs([]),
                &[],
            ),
        )]);
        let drifted = attrs([
            ("bucket", "demo-data".into()),
            ("tags", vec!["a", "added-by-hand"].into()),
        ]);
        let p = Fixture::new(vec![bucket().with("tags", vec!["a"])], st)
            .actual("aws_s3_bucket.data", Some(drifted))
            .plan();
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.reasons, [Reason::Drift]);
        assert_eq!(c.fields[0].before, Some(vec!["a", "added-by-hand"].into()));
        assert_eq!(c.fields[0].after, Planned::Known(vec!["a"].into()));
    }

    #[test]
    fn server_managed_drift_is_ignored() {
        let st = state(vec![("aws_db_instance.main", db_state("15", SECRET))]);
        let mut refreshed = st.resources[&a("aws_db_instance.main")].attributes.clone();
        refreshed.insert("engine_version".into(), "15.4".into());
        let f = Fixture::new(vec![db("15", SECRET)], st)
            .actual("aws_db_instance.main", Some(refreshed));
        let p = f.plan();
        assert_eq!(p.changes[0].action, Action::NoOp, "{p:?}");
    }

    #[test]
    fn server_managed_desired_change_is_detected() {
        let st = state(vec![("aws_db_instance.main", db_state("15", SECRET))]);
        let mut refreshed = st.resources[&a("aws_db_instance.main")].attributes.clone();
        refreshed.insert("engine_version".into(), "15.4".into());
        let p = Fixture::new(vec![db("16", SECRET)], st)
            .actual("aws_db_instance.main", Some(refreshed))
            .plan();
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Update);
        assert_eq!(c.reasons, [Reason::DesiredChanged]);
        assert_eq!(c.fields[0].name, "engine_version");
        // Compared with (and shown against) the last applied value, not the cloud's.
        assert_eq!(c.fields[0].before, Some("15".into()));
        assert!(!c.data_loss);
    }

    #[test]
    fn unknown_values_propagate_through_references() {
        let p = Fixture::new(vec![bucket(), role()], state(vec![])).plan();
        assert_eq!(
            actions(&p),
            [
                ("aws_s3_bucket.data".to_string(), Action::Create),
                ("aws_iam_role.app".to_string(), Action::Create)
            ]
        );
        let role = p.change(&a("aws_iam_role.app")).unwrap();
        assert_eq!(role.planned_inputs["policy"], Planned::Unknown);
        assert_eq!(role.dependencies, [a("aws_s3_bucket.data")]);
        let policy = role.fields.iter().find(|f| f.name == "policy").unwrap();
        assert_eq!(policy.after, Planned::Unknown);
        assert!(crate::render_text(&p).contains("+ policy = (known after apply)"));
    }

    #[test]
    fn references_to_unchanged_resources_are_known() {
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let p = Fixture::new(vec![bucket(), role()], st).plan();
        let role = p.change(&a("aws_iam_role.app")).unwrap();
        assert_eq!(
            role.planned_inputs["policy"],
            Planned::Known("arn:aws:s3:::demo-data".into())
        );
    }

    #[test]
    fn replacing_a_dependency_updates_its_dependents() {
        let st = state(vec![
            ("aws_s3_bucket.data", bucket_state("demo-old-name")),
            (
                "aws_iam_role.app",
                ready(
                    attrs([
                        ("name", "demo-app".into()),
                        ("policy", "arn:aws:s3:::demo-old-name".into()),
                    ]),
                    attrs([("arn", "arn:aws:iam::role/demo-app".into())]),
                    &["aws_s3_bucket.data"],
                ),
            ),
        ]);
        let p = Fixture::new(vec![bucket(), role()], st).plan();
        let role = p.change(&a("aws_iam_role.app")).unwrap();
        assert_eq!(role.action, Action::Update);
        assert_eq!(role.fields[0].after, Planned::Unknown);
    }

    #[test]
    fn cycle_is_an_engine_error() {
        let x = ResourceSpec::managed(a("aws_iam_role.x"))
            .with("name", "x")
            .with("policy", Expr::reference(&a("aws_iam_role.y"), "arn"));
        let y = ResourceSpec::managed(a("aws_iam_role.y"))
            .with("name", "y")
            .with("policy", Expr::reference(&a("aws_iam_role.x"), "arn"));
        let err = Fixture::new(vec![x, y], state(vec![]))
            .try_plan()
            .unwrap_err();
        assert!(
            matches!(err, PlanError::Graph(GraphError::Cycle(_))),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "dependency cycle: `aws_iam_role.x` -> `aws_iam_role.y` -> `aws_iam_role.x`"
        );
    }

    #[test]
    fn missing_reference_is_an_engine_error() {
        let err = Fixture::new(vec![role()], state(vec![]))
            .try_plan()
            .unwrap_err();
        assert!(
            matches!(err, PlanError::Graph(GraphError::MissingReference { .. })),
            "{err}"
        );
    }

    #[test]
    fn unknown_attribute_is_an_error_naming_it() {
        let err = Fixture::new(vec![bucket().with("colour", "red")], state(vec![]))
            .try_plan()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`aws_s3_bucket.data` sets `colour`, which its type does not have"
        );
    }

    #[test]
    fn schema_violations_are_errors() {
        let computed = bucket().with("arn", "x");
        let err = Fixture::new(vec![computed], state(vec![]))
            .try_plan()
            .unwrap_err();
        assert!(matches!(err, PlanError::NotAnInput { .. }), "{err}");

        let missing = ResourceSpec::managed(a("aws_s3_bucket.data"));
        let err = Fixture::new(vec![missing], state(vec![]))
            .try_plan()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`aws_s3_bucket.data` does not set required field `bucket`"
        );

        let bad_ref = ResourceSpec::managed(a("aws_iam_role.app"))
            .with("name", "x")
            .with("policy", Expr::reference(&a("aws_s3_bucket.data"), "nope"));
        let err = Fixture::new(vec![bucket(), bad_ref], state(vec![]))
            .try_plan()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`aws_iam_role.app` refers to `aws_s3_bucket.data.nope`, which its type does not have"
        );

        let unknown_type = ResourceSpec::managed(a("gcp_bucket.x"));
        let err = Fixture::new(vec![unknown_type], state(vec![]))
            .try_plan()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`gcp_bucket.x` has type `gcp_bucket`, which no provider registers"
        );
    }

    #[test]
    fn targets_limit_the_plan_to_their_dependency_closure() {
        let st = state(vec![("aws_s3_bucket.old", bucket_state("demo-old"))]);
        let p = Fixture::new(vec![bucket(), role(), db("16", SECRET)], st)
            .targets(&["aws_iam_role.app"])
            .plan();
        assert_eq!(
            actions(&p),
            [
                ("aws_s3_bucket.data".to_string(), Action::Create),
                ("aws_iam_role.app".to_string(), Action::Create)
            ]
        );
    }

    #[test]
    fn targeting_a_removed_resource_deletes_it() {
        let st = state(vec![
            ("aws_s3_bucket.old", bucket_state("demo-old")),
            ("aws_s3_bucket.other", bucket_state("demo-other")),
        ]);
        let p = Fixture::new(vec![bucket()], st)
            .targets(&["aws_s3_bucket.old"])
            .plan();
        assert_eq!(
            actions(&p),
            [("aws_s3_bucket.old".to_string(), Action::Delete)]
        );
    }

    #[test]
    fn unknown_target_is_an_error() {
        let err = Fixture::new(vec![bucket()], state(vec![]))
            .targets(&["aws_s3_bucket.nope"])
            .try_plan()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "target `aws_s3_bucket.nope` is neither in the configuration nor in the state"
        );
    }

    fn chain_state() -> StateDoc {
        state(vec![
            ("aws_s3_bucket.data", bucket_state("demo-data")),
            (
                "aws_iam_role.app",
                ready(
                    attrs([("name", "app".into())]),
                    attrs([]),
                    &["aws_s3_bucket.data"],
                ),
            ),
            (
                "k8s_secret.app",
                ready(
                    attrs([("name", "app".into())]),
                    attrs([]),
                    &["aws_iam_role.app"],
                ),
            ),
            ("aws_s3_bucket.logs", bucket_state("demo-logs")),
        ])
    }

    #[test]
    fn removed_resources_are_deleted_dependents_first() {
        let p = Fixture::new(vec![], chain_state()).plan();
        assert_eq!(
            actions(&p),
            [
                ("k8s_secret.app".to_string(), Action::Delete),
                ("aws_s3_bucket.logs".to_string(), Action::Delete),
                ("aws_iam_role.app".to_string(), Action::Delete),
                ("aws_s3_bucket.data".to_string(), Action::Delete),
            ]
        );
    }

    #[test]
    fn destroy_deletes_every_managed_resource_in_reverse_order() {
        let mut st = chain_state();
        st.resources.insert(
            a("aws_vpc.shared"),
            ResourceState {
                mode: Mode::Existing,
                ..bucket_state("x")
            },
        );
        // Destroy ignores the configuration.
        let p = Fixture::new(vec![bucket()], st.clone()).destroy().plan();
        assert!(p.destroy);
        let order: Vec<_> = p.changes.iter().map(|c| c.address.to_string()).collect();
        let pos = |s: &str| order.iter().position(|x| x == s).unwrap();
        assert_eq!(
            order.len(),
            4,
            "existing resources are never destroyed: {order:?}"
        );
        assert!(pos("k8s_secret.app") < pos("aws_iam_role.app"));
        assert!(pos("aws_iam_role.app") < pos("aws_s3_bucket.data"));
        assert!(p.changes.iter().all(|c| c.action == Action::Delete));
        assert!(p.changes.iter().all(|c| c.reasons == [Reason::Destroy]));

        let p = Fixture::new(vec![], st)
            .destroy()
            .targets(&["aws_iam_role.app"])
            .plan();
        assert_eq!(
            actions(&p),
            [
                ("k8s_secret.app".to_string(), Action::Delete),
                ("aws_iam_role.app".to_string(), Action::Delete),
            ]
        );
    }

    #[test]
    fn existing_resources_are_read() {
        let vpc = ResourceSpec::existing(a("aws_vpc.shared"), "vpc-0abc");
        let role = ResourceSpec::managed(a("aws_iam_role.app"))
            .with("name", "app")
            .with("policy", Expr::reference(&a("aws_vpc.shared"), "id"));
        let refreshed = attrs([
            ("cidr_block", "10.0.0.0/16".into()),
            ("id", "vpc-0abc".into()),
        ]);
        let f = Fixture::new(vec![vpc.clone(), role.clone()], state(vec![]));
        let p = f.actual("aws_vpc.shared", Some(refreshed)).plan();
        let read = p.change(&a("aws_vpc.shared")).unwrap();
        assert_eq!((read.action, read.mode), (Action::Read, Mode::Existing));
        assert_eq!(read.fields.len(), 2);
        assert_eq!(
            p.change(&a("aws_iam_role.app")).unwrap().planned_inputs["policy"],
            Planned::Known("vpc-0abc".into())
        );
        assert_eq!(p.summary().add, 1);

        // Never read yet: its attributes are unknown until apply.
        let p = Fixture::new(vec![vpc.clone(), role], state(vec![])).plan();
        assert_eq!(
            p.change(&a("aws_iam_role.app")).unwrap().planned_inputs["policy"],
            Planned::Unknown
        );

        // Gone from the cloud: an error naming it.
        let err = Fixture::new(vec![vpc], state(vec![]))
            .actual("aws_vpc.shared", None)
            .try_plan()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "existing resource `aws_vpc.shared` (id `vpc-0abc`) was not found in the cloud"
        );
    }

    #[test]
    fn removed_existing_resources_just_drop_out() {
        let mut rs = bucket_state("x");
        rs.mode = Mode::Existing;
        let p = Fixture::new(vec![], state(vec![("aws_vpc.shared", rs)])).plan();
        assert!(p.changes.is_empty());
    }

    #[test]
    fn secrets_copied_into_other_fields_stay_sensitive() {
        let p = mixed().plan();
        let secret = p.change(&a("k8s_secret.db")).unwrap();
        assert_eq!(secret.action, Action::Update);
        assert!(secret.fields.iter().all(|f| f.sensitive), "{secret:?}");
    }

    #[test]
    fn mixed_plan_orders_and_counts_like_terraform() {
        let p = mixed().plan();
        assert_eq!(
            actions(&p),
            [
                ("aws_s3_bucket.data".to_string(), Action::Create),
                ("aws_iam_role.app".to_string(), Action::Create),
                ("aws_vpc.shared".to_string(), Action::Read),
                ("aws_db_instance.main".to_string(), Action::Replace),
                ("k8s_secret.db".to_string(), Action::Update),
                ("aws_s3_bucket.old".to_string(), Action::Delete),
            ]
        );
        let s = p.summary();
        assert_eq!((s.add, s.change, s.destroy), (3, 1, 2));
        assert!(p.has_changes());
    }

    #[test]
    fn replace_requested_replaces_an_unchanged_object_with_data_loss() {
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let p = Fixture::new(vec![bucket()], st)
            .replace("aws_s3_bucket.data")
            .plan();
        let c = &p.changes[0];
        assert_eq!(c.action, Action::Replace);
        assert_eq!(c.reasons, [Reason::Requested]);
        assert!(c.data_loss);
        assert_eq!(
            p.notes,
            [
                Note::ReplaceRequested {
                    address: a("aws_s3_bucket.data")
                },
                Note::ExpectedDuration {
                    seconds: 1,
                    chain: vec![a("aws_s3_bucket.data")]
                }
            ]
        );
        // A dependent that refers to the replaced object's computed field sees it unknown.
        assert!(
            c.fields
                .iter()
                .any(|f| f.name == "arn" && f.after == Planned::Unknown)
        );
    }

    #[test]
    fn expected_duration_follows_creates_and_replaces_only() {
        // Nothing to create: no note.
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let p = Fixture::new(vec![bucket()], st).plan();
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // The role waits for the bucket: one chain of both.
        let p = Fixture::new(vec![bucket(), role()], state(vec![])).plan();
        let want = Note::ExpectedDuration {
            seconds: 2,
            chain: vec![a("aws_s3_bucket.data"), a("aws_iam_role.app")],
        };
        assert_eq!(p.notes, [want]);
        // With the bucket in place, only the role's create counts.
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let p = Fixture::new(vec![bucket(), role()], st).plan();
        let want = Note::ExpectedDuration {
            seconds: 1,
            chain: vec![a("aws_iam_role.app")],
        };
        assert_eq!(p.notes, [want]);
    }

    #[test]
    fn replace_of_a_resource_without_object_is_a_create_with_a_note() {
        let p = Fixture::new(vec![bucket()], state(vec![]))
            .replace("aws_s3_bucket.data")
            .plan();
        assert_eq!(p.changes[0].action, Action::Create);
        assert_eq!(
            p.notes,
            [
                Note::ReplaceNotNeeded {
                    address: a("aws_s3_bucket.data")
                },
                Note::ExpectedDuration {
                    seconds: 1,
                    chain: vec![a("aws_s3_bucket.data")]
                }
            ]
        );
    }

    #[test]
    fn replace_of_unknown_or_existing_resources_is_an_error() {
        let err = Fixture::new(vec![bucket()], state(vec![]))
            .replace("aws_s3_bucket.nope")
            .try_plan()
            .unwrap_err();
        assert!(matches!(err, PlanError::CannotReplace { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("not a resource of this configuration")
        );
        let vpc = ResourceSpec::existing(a("aws_vpc.shared"), "vpc-1");
        let err = Fixture::new(vec![vpc], state(vec![]))
            .replace("aws_vpc.shared")
            .try_plan()
            .unwrap_err();
        assert!(err.to_string().contains("`existing:`"), "{err}");
    }

    #[test]
    fn protected_deletes_are_noted() {
        let mut protected = db_state("16", SECRET);
        protected
            .inputs
            .insert("deletion_protection".into(), true.into());
        let st = state(vec![("aws_db_instance.main", protected)]);
        let desired = vec![db("16", SECRET).with("deletion_protection", true)];
        let p = Fixture::new(desired, st.clone())
            .replace("aws_db_instance.main")
            .plan();
        assert!(p.notes.contains(&Note::DeletionProtected {
            address: a("aws_db_instance.main"),
            field: "deletion_protection".into(),
        }));
        let p = Fixture::new(vec![], st).destroy().plan();
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        // Without protection: no note.
        let st = state(vec![("aws_db_instance.main", db_state("16", SECRET))]);
        let p = Fixture::new(vec![], st).destroy().plan();
        assert!(p.notes.is_empty());
    }

    /// A protected database in state, id `id-1`, created at `created`.
    fn protected_db() -> StateDoc {
        let mut db = db_state("16", SECRET);
        db.inputs.insert("deletion_protection".into(), true.into());
        db.attributes
            .insert("deletion_protection".into(), true.into());
        db.attributes.insert("created".into(), "20250101".into());
        state(vec![("aws_db_instance.main", db)])
    }

    #[test]
    fn disable_protection_turns_the_refusal_into_a_planned_step() {
        let main = a("aws_db_instance.main");
        let refused = Note::DeletionProtected {
            address: main.clone(),
            field: "deletion_protection".into(),
        };
        // Without the flag: refused.
        let p = Fixture::new(vec![], protected_db()).destroy().plan();
        assert_eq!(p.notes, vec![refused.clone()]);
        // With it: protection off, then the delete, with the snapshot's name.
        let p = Fixture::new(vec![], protected_db())
            .destroy()
            .disable_protection()
            .plan();
        assert_eq!(
            p.notes,
            vec![Note::ProtectionDisabled {
                address: main.clone(),
                field: "deletion_protection".into(),
                final_snapshot: Some("id-1-final-20250101".into()),
            }]
        );
        assert_eq!(p.change(&main).unwrap().action, Action::Delete);
        // The name comes from what the refresh read, as the delete's will.
        let mut read = protected_db().resources[&main].attributes.clone();
        read.insert("created".into(), "20250202".into());
        let p = Fixture::new(vec![], protected_db())
            .actual("aws_db_instance.main", Some(read))
            .destroy()
            .disable_protection()
            .plan();
        assert!(
            matches!(&p.notes[..], [Note::ProtectionDisabled { final_snapshot: Some(s), .. }]
                if s == "id-1-final-20250202"),
            "{:?}",
            p.notes
        );
        // A type that takes no snapshot (or cannot name it yet): none.
        let mut st = protected_db();
        st.resources
            .get_mut(&main)
            .unwrap()
            .attributes
            .remove("created");
        let p = Fixture::new(vec![], st)
            .destroy()
            .disable_protection()
            .plan();
        assert!(
            matches!(
                &p.notes[..],
                [Note::ProtectionDisabled {
                    final_snapshot: None,
                    ..
                }]
            ),
            "{:?}",
            p.notes
        );
        // The flag is for destroys only: a replace of a protected database stays refused.
        let desired = vec![db("16", SECRET).with("deletion_protection", true)];
        let p = Fixture::new(desired, protected_db())
            .replace("aws_db_instance.main")
            .disable_protection()
            .plan();
        assert!(p.notes.contains(&refused), "{:?}", p.notes);
        assert!(
            !p.notes
                .iter()
                .any(|n| matches!(n, Note::ProtectionDisabled { .. }))
        );
    }

    #[test]
    fn protection_is_judged_by_what_the_refresh_read() {
        let main = a("aws_db_instance.main");
        // Turned off in the cloud (an interrupted `destroy --disable-protection`): state
        // still says on, the read says off, so the destroy goes ahead without the flag.
        let mut off = protected_db().resources[&main].attributes.clone();
        off.insert("deletion_protection".into(), false.into());
        let p = Fixture::new(vec![], protected_db())
            .actual("aws_db_instance.main", Some(off))
            .destroy()
            .plan();
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        // Turned on in the cloud: refused though state says off.
        let st = state(vec![("aws_db_instance.main", db_state("16", SECRET))]);
        let mut on = st.resources[&main].attributes.clone();
        on.insert("deletion_protection".into(), true.into());
        let p = Fixture::new(vec![], st.clone())
            .actual("aws_db_instance.main", Some(on))
            .destroy()
            .plan();
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        // A read that does not report the field leaves state to decide.
        let p = Fixture::new(vec![], protected_db())
            .actual("aws_db_instance.main", Some(attrs([])))
            .destroy()
            .plan();
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
    }

    #[test]
    fn refresh_only_lists_changes_and_deletions_without_resource_changes() {
        let st = state(vec![
            ("aws_s3_bucket.data", bucket_state("demo-data")),
            ("aws_s3_bucket.gone", bucket_state("demo-gone")),
            ("aws_db_instance.main", db_state("16", SECRET)),
        ]);
        let mut tagged = bucket_state("demo-data").attributes;
        tagged.insert("tags".into(), vec!["team:ml"].into());
        let mut db_now = db_state("16", SECRET).attributes;
        db_now.insert("master_password".into(), OLD_SECRET.into());
        let p = Fixture::new(vec![bucket()], st)
            .actual("aws_s3_bucket.data", Some(tagged))
            .actual("aws_s3_bucket.gone", None)
            .actual("aws_db_instance.main", Some(db_now))
            .refresh_only()
            .plan();
        assert!(p.refresh_only && p.changes.is_empty() && p.has_changes());
        let kinds: Vec<_> = p.notes.iter().map(|n| n.kind()).collect();
        assert_eq!(
            kinds,
            ["changed_outside", "changed_outside", "deleted_outside"]
        );
        let Note::ChangedOutside { address, fields } = &p.notes[1] else {
            panic!("{:?}", p.notes)
        };
        assert_eq!(address, &a("aws_s3_bucket.data"));
        let names: Vec<_> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["tags"]);
        let Note::ChangedOutside { fields, .. } = &p.notes[0] else {
            panic!()
        };
        assert!(fields[0].sensitive, "the password is sensitive: {fields:?}");
        let text = crate::render_text(&p);
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("aws_s3_bucket.gone has been deleted outside flyteinfra"),
            "{text}"
        );
        assert!(text.contains("1 deleted outside flyteinfra"), "{text}");
        let json = crate::render_json(&p).to_string();
        assert!(!json.contains("s3cr3t"), "{json}");
    }

    #[test]
    fn refresh_only_with_nothing_changed_has_no_changes() {
        let st = state(vec![("aws_s3_bucket.data", bucket_state("demo-data"))]);
        let now = st.resources[&a("aws_s3_bucket.data")].attributes.clone();
        let p = Fixture::new(vec![bucket()], st)
            .actual("aws_s3_bucket.data", Some(now))
            .refresh_only()
            .plan();
        assert!(!p.has_changes());
        assert_eq!(
            crate::render_text(&p),
            "No changes. State matches what the cloud has.\n"
        );
    }
}

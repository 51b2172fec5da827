//! Saved plans (`plan -out FILE`, then `apply FILE`); the format is documented on
//! [`SavedPlan`].

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use std::collections::BTreeMap;

use flyteinfra_core::{Address, Graph, GraphError, Mode, ResourceSpec};
use flyteinfra_state::located::{FieldPath, locate, quoted};
use flyteinfra_state::{
    MAX_SERIAL, Sealer, is_lineage, is_sealed, lineage_problem, serial_problem, unsealed_error,
};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use crate::error::PlanError;
use crate::plan::{Action, Plan};

/// The plan file format this build writes. It reads this one and upgrades older ones
/// (version 1 wrote its versions as strings; version 2 added plan notes, which a
/// version 1 plan has none of).
pub const PLANFILE_FORMAT_VERSION: u32 = 2;

/// A plan saved for a later apply (`plan -out FILE`, then `apply FILE`).
///
/// A plan file is JSON:
///
/// ```json
/// { "format_version": 2, "config_digest": "…", "plan": { … }, "desired": [ … ] }
/// ```
///
/// `plan` is the [`Plan`] model (serde form, including `planned_inputs`), `desired` the
/// resource specs apply re-resolves as dependencies finish. Unlike the
/// [JSON rendering](crate::render_json) a plan file holds **secrets unredacted**, so it
/// is written with mode `0600`, like a state file. Checking that the state has not moved
/// since (lineage and serial) is the state crate's job; checking the configuration has
/// not changed (`config_digest`) is the caller's.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedPlan {
    /// The plan.
    pub plan: Plan,
    /// The desired resources the plan was made from.
    pub desired: Vec<ResourceSpec>,
    /// A digest of the configuration the plan was made from; apply refuses the plan if
    /// the configuration changed since.
    pub config_digest: String,
}

impl fmt::Debug for SavedPlan {
    /// Prints the desired resources by address only: their literals may be secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedPlan")
            .field("plan", &self.plan)
            .field(
                "desired",
                &self.desired.iter().map(|s| &s.address).collect::<Vec<_>>(),
            )
            .field("config_digest", &self.config_digest)
            .finish()
    }
}

#[derive(Serialize)]
pub(crate) struct FileOut<'a> {
    pub(crate) format_version: u32,
    pub(crate) config_digest: &'a str,
    pub(crate) plan: &'a Plan,
    pub(crate) desired: &'a [ResourceSpec],
}

#[derive(Deserialize)]
struct FileIn {
    config_digest: String,
    plan: Plan,
    desired: Vec<ResourceSpec>,
}

/// Writes `saved` to `path` atomically with mode `0600`
/// ([`flyteinfra_state::write_private`]), sealed by `sealer` when the state is encrypted
/// (a plan carries the same secrets). A crash leaves either the old file or the new one,
/// never a torn one.
///
/// # Errors
/// [`PlanError::Io`] if the directory is not writable or the disk fails;
/// [`PlanError::Sealed`] if sealing fails (KMS unreachable).
pub fn save(path: &Path, saved: &SavedPlan, sealer: Option<&Sealer>) -> Result<(), PlanError> {
    let io_err = |source: io::Error| PlanError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    // A saved plan carries what apply sends, secrets included (a 0600 file).
    let mut bytes = flyteinfra_core::reveal_secrets(|| {
        serde_json::to_vec_pretty(&FileOut {
            format_version: PLANFILE_FORMAT_VERSION,
            config_digest: &saved.config_digest,
            plan: &saved.plan,
            desired: &saved.desired,
        })
    })
    .expect("plans always serialize");
    bytes.push(b'\n');
    if let Some(sealer) = sealer {
        bytes = sealer.seal(&bytes, path)?;
    }
    flyteinfra_state::write_private(path, &bytes).map_err(io_err)
}

/// What a plan file is checked against before it is applied: the binary's provider
/// registry and the state it is to be applied to.
pub struct Target<'a> {
    /// Whether a resource type is registered (the plan's types must all be).
    pub known_type: &'a dyn Fn(&str) -> bool,
    /// The lineage of the state the plan is for.
    pub lineage: &'a str,
}

/// Reads a plan file written by [`save`], opening a sealed one with `sealer`, and checks
/// it as [`decode`] does.
///
/// # Errors
/// [`PlanError::Io`] if the file is missing or unreadable; [`PlanError::Sealed`] for a
/// sealed file with no key or the wrong key; otherwise as [`decode`].
pub fn load(path: &Path, sealer: Option<&Sealer>) -> Result<SavedPlan, PlanError> {
    decode(&read(path, sealer)?, path)
}

/// [`load`], then checks the plan against `target` as [`decode_for`] does.
///
/// # Errors
/// As [`load`] and [`decode_for`]; [`PlanError::Sealed`] for a sealed file with no key
/// or the wrong key.
pub fn load_for(
    path: &Path,
    target: &Target<'_>,
    sealer: Option<&Sealer>,
) -> Result<SavedPlan, PlanError> {
    decode_for(&read(path, sealer)?, path, target)
}

/// The plan file's bytes, opened when sealed. A plain file is read as is, key or not:
/// it was saved before encryption was turned on.
fn read(path: &Path, sealer: Option<&Sealer>) -> Result<Vec<u8>, PlanError> {
    let bytes = fs::read(path).map_err(|source| PlanError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    if !is_sealed(&bytes) {
        return Ok(bytes);
    }
    Ok(match sealer {
        Some(sealer) => sealer.open(&bytes, path)?,
        None => return Err(unsealed_error(path, &bytes).into()),
    })
}

/// Decodes the bytes of a plan file read from `path` (named in errors), upgrading an
/// older format, and checks what apply relies on: the lineage and serial are ones
/// flyteinfra writes, every change is planned once, the changes' dependencies and the
/// desired resources form graphs without cycles, every change apply carries out has its
/// desired resource, and `existing:` resources are only read.
///
/// # Errors
/// [`PlanError::UnsupportedVersion`] for another plan file format; [`PlanError::Corrupt`]
/// for anything else wrong, naming the field and, where the text allows, line and column.
/// Never panics.
pub fn decode(bytes: &[u8], path: &Path) -> Result<SavedPlan, PlanError> {
    decode_checked(bytes, path, None)
}

/// [`decode`], and the plan must be for `target`: every resource type registered,
/// made for the state's lineage.
///
/// # Errors
/// As [`decode`]; [`PlanError::OtherState`] when the lineage is another state's.
pub fn decode_for(bytes: &[u8], path: &Path, target: &Target<'_>) -> Result<SavedPlan, PlanError> {
    decode_checked(bytes, path, Some(target))
}

fn decode_checked(
    bytes: &[u8],
    path: &Path,
    target: Option<&Target<'_>>,
) -> Result<SavedPlan, PlanError> {
    let corrupt = |line, column, field: &FieldPath, reason: String| PlanError::Corrupt {
        path: path.to_path_buf(),
        line,
        column,
        field: if field.0.is_empty() {
            String::new()
        } else {
            field.to_string()
        },
        reason,
    };
    let root = FieldPath::root();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let reason = "the file is empty, expected a plan written by `flyteinfra plan --out`";
        return Err(corrupt(0, 0, &root, reason.to_string()));
    }
    let binary = |offset: usize| {
        // The bytes before the first bad one are text, so they have lines and columns.
        let before = String::from_utf8_lossy(bytes.get(..offset).unwrap_or_default());
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        let reason = format!("binary data (byte offset {offset}), expected JSON");
        corrupt(line, column, &root, reason)
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => match t.find('\0') {
            None => t,
            Some(at) => return Err(binary(at)),
        },
        Err(e) => return Err(binary(e.valid_up_to())),
    };
    let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let reason = match e.classify() {
            Category::Eof => "the JSON ends early (a truncated file?)".to_string(),
            _ => format!("not valid JSON: {}", without_location(&e)),
        };
        corrupt(e.line(), e.column(), &root, reason)
    })?;
    let field = |f: &str| root.clone().key(f);
    let located = |f: &FieldPath, reason: String| {
        let (line, column) = locate(text, f).unwrap_or((0, 0));
        corrupt(line, column, f, reason)
    };
    if !doc.is_object() {
        let reason = "expected a JSON object (a plan file written by `flyteinfra plan --out`)";
        return Err(corrupt(1, 1, &root, reason.to_string()));
    }
    let file: FileIn = match doc.get("format_version") {
        Some(v) if v.as_u64() == Some(u64::from(PLANFILE_FORMAT_VERSION)) => {
            // Decode from the text, not the value, so errors carry line and column.
            serde_json::from_str(text).map_err(|e| {
                let f = failing_field(text);
                corrupt(e.line(), e.column(), &f, without_location(&e))
            })?
        }
        Some(serde_json::Value::String(v)) if v == "1" => {
            let mut doc = doc;
            upgrade_v1(&mut doc);
            serde_path_to_error::deserialize(doc).map_err(|e| {
                let f = FieldPath::from_serde(e.path());
                located(&f, e.into_inner().to_string())
            })?
        }
        Some(other) => {
            let (line, column) = locate(text, &field("format_version")).unwrap_or((0, 0));
            return Err(PlanError::UnsupportedVersion {
                path: path.to_path_buf(),
                line,
                column,
                found: shown(other),
                expected: PLANFILE_FORMAT_VERSION.to_string(),
            });
        }
        None => {
            return Err(corrupt(
                1,
                1,
                &field("format_version"),
                "the field is missing".to_string(),
            ));
        }
    };
    let saved = SavedPlan {
        plan: file.plan,
        desired: file.desired,
        config_digest: file.config_digest,
    };
    if let Err((f, reason)) = check(&saved, target) {
        return Err(match reason {
            Problem::Field(reason) => located(&f, reason),
            Problem::OtherState => {
                let (line, column) = locate(text, &f).unwrap_or((0, 0));
                PlanError::OtherState {
                    path: path.to_path_buf(),
                    line,
                    column,
                    plan_lineage: saved.plan.lineage,
                    state_lineage: target.map(|t| t.lineage.to_string()).unwrap_or_default(),
                }
            }
        });
    }
    Ok(saved)
}

/// serde_json's message without the ` at line L column C` it appends (the error shows
/// the location once, its own way).
fn without_location(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    msg.strip_suffix(&suffix).unwrap_or(&msg).to_string()
}

/// A JSON value for a message: compact, and cut short (a file may hold anything there).
fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => quoted(s, 40).trim_matches('"').to_string(),
        other => quoted(&other.to_string(), 40).trim_matches('"').to_string(),
    }
}

/// The field a decoding error is in: decodes again, tracking the path (errors only, so
/// a good file pays nothing for it).
fn failing_field(text: &str) -> FieldPath {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, FileIn>(&mut de) {
        Err(e) => FieldPath::from_serde(e.path()),
        Ok(_) => FieldPath::root(),
    }
}

enum Problem {
    /// The field holds what flyteinfra never writes.
    Field(String),
    /// The plan is for another state (its lineage).
    OtherState,
}

/// The first rule `saved` breaks, with the field that breaks it.
fn check(saved: &SavedPlan, target: Option<&Target<'_>>) -> Result<(), (FieldPath, Problem)> {
    let plan = &saved.plan;
    let at = |f: &str| FieldPath::root().key("plan").key(f);
    let change_at =
        |i: usize, f: &str| FieldPath::root().key("plan").key("changes").index(i).key(f);
    let desired_at = |i: usize| FieldPath::root().key("desired").index(i).key("address");
    let bad = |f: FieldPath, reason: String| Err((f, Problem::Field(reason)));
    if plan.format_version != crate::plan::FORMAT_VERSION {
        return bad(
            at("format_version"),
            format!(
                "{} is not the plan model version this build writes ({})",
                plan.format_version,
                crate::plan::FORMAT_VERSION
            ),
        );
    }
    if !is_lineage(&plan.lineage) {
        return bad(at("lineage"), lineage_problem(&plan.lineage));
    }
    if plan.serial > MAX_SERIAL {
        return bad(at("serial"), serial_problem(plan.serial));
    }
    let mut index: BTreeMap<&Address, usize> = BTreeMap::new();
    for (i, c) in plan.changes.iter().enumerate() {
        if let Some(first) = index.insert(&c.address, i) {
            return bad(
                change_at(i, "address"),
                format!(
                    "`{}` is planned twice (also `plan.changes[{first}]`)",
                    c.address
                ),
            );
        }
    }
    let specs: BTreeMap<&Address, &ResourceSpec> =
        saved.desired.iter().map(|s| (&s.address, s)).collect();
    for (i, c) in plan.changes.iter().enumerate() {
        if (c.mode == Mode::Existing) != (c.action == Action::Read) {
            return bad(
                change_at(i, "action"),
                format!(
                    "`{}` is `{}` with mode `{}`: `existing:` resources are only read, and \
                     only they are",
                    c.address,
                    c.action.as_str(),
                    match c.mode {
                        Mode::Managed => "managed",
                        Mode::Existing => "existing",
                    }
                ),
            );
        }
        let needs_spec = !matches!(c.action, Action::Delete | Action::NoOp);
        match specs.get(&c.address) {
            None if needs_spec => {
                return bad(
                    change_at(i, "address"),
                    format!(
                        "`{}` is to be {} but is not among the plan's `desired` resources",
                        c.address,
                        match c.action {
                            Action::Create => "created",
                            Action::Update => "updated",
                            Action::Replace => "replaced",
                            _ => "read",
                        }
                    ),
                );
            }
            Some(s) if needs_spec && s.mode != c.mode => {
                return bad(
                    change_at(i, "mode"),
                    format!("`{}` has another mode than its desired resource", c.address),
                );
            }
            _ => {}
        }
    }
    // Apply walks the changes in this order (deletes reversed); a cycle has none.
    let changes = Graph::build(plan.changes.iter().map(|c| {
        let deps = c
            .dependencies
            .iter()
            .filter(|d| index.contains_key(d))
            .cloned()
            .collect();
        (c.address.clone(), deps)
    }));
    if let Err(GraphError::Cycle(cycle)) = changes {
        let i = cycle
            .first()
            .and_then(|a| index.get(a))
            .copied()
            .unwrap_or(0);
        return bad(change_at(i, "dependencies"), cycle_text(&cycle));
    }
    let desired_index: BTreeMap<&Address, usize> = saved
        .desired
        .iter()
        .enumerate()
        .map(|(i, s)| (&s.address, i))
        .collect();
    let desired_graph = Graph::build(
        saved
            .desired
            .iter()
            .map(|s| (s.address.clone(), s.dependencies())),
    );
    if let Err(e) = desired_graph {
        let (addr, reason) = match &e {
            GraphError::Cycle(cycle) => (cycle.first(), cycle_text(cycle)),
            GraphError::MissingReference { from, .. } => (Some(from), e.to_string()),
            GraphError::Duplicate(a) => (Some(a), e.to_string()),
            _ => (None, e.to_string()),
        };
        let i = addr
            .and_then(|a| desired_index.get(a))
            .copied()
            .unwrap_or(0);
        // A duplicate's index is its last occurrence: the one that repeats.
        return bad(desired_at(i), reason);
    }
    let Some(target) = target else {
        return Ok(());
    };
    let unknown = |a: &Address| !(target.known_type)(a.type_name());
    let type_reason = |a: &Address| {
        format!(
            "type `{}` of `{a}` is not a resource type this build of flyteinfra knows",
            a.type_name()
        )
    };
    for (i, c) in plan.changes.iter().enumerate() {
        if unknown(&c.address) {
            return bad(change_at(i, "address"), type_reason(&c.address));
        }
    }
    for (i, s) in saved.desired.iter().enumerate() {
        if unknown(&s.address) {
            return bad(desired_at(i), type_reason(&s.address));
        }
    }
    if plan.lineage != target.lineage {
        return Err((at("lineage"), Problem::OtherState));
    }
    Ok(())
}

fn cycle_text(cycle: &[Address]) -> String {
    let shown: Vec<String> = cycle.iter().map(|a| format!("`{a}`")).collect();
    format!(
        "the dependencies form a cycle ({}), which no order of changes can follow",
        shown.join(" -> ")
    )
}

/// Version 1 → 2: versions become numbers; the plan gains `notes` and `refresh_only`,
/// which default to none (a version 1 plan had no notes).
fn upgrade_v1(doc: &mut serde_json::Value) {
    let v2 = serde_json::Value::from(2);
    doc["format_version"] = v2.clone();
    if let Some(plan) = doc.get_mut("plan").and_then(|p| p.as_object_mut()) {
        plan.insert("format_version".to_string(), v2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn saved() -> SavedPlan {
        let f = mixed();
        SavedPlan {
            plan: f.plan(),
            desired: f.desired.clone(),
            config_digest: "sha256:abc".to_string(),
        }
    }

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let s = saved();
        save(&path, &s, None).unwrap();
        assert_eq!(load(&path, None).unwrap(), s);
        // Overwriting an existing file is atomic and leaves no temporary behind.
        save(&path, &s, None).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    /// A saved `plan --destroy --disable-protection` keeps what apply acts on: the note.
    #[test]
    fn round_trips_protection_disabled() {
        let mut db = db_state("16", SECRET);
        db.inputs.insert(
            "deletion_protection".into(),
            flyteinfra_core::Value::Bool(true),
        );
        db.attributes.insert("created".into(), "20250101".into());
        let f = Fixture::new(vec![], state(vec![("aws_db_instance.main", db)]))
            .destroy()
            .disable_protection();
        let s = SavedPlan {
            plan: f.plan(),
            desired: vec![],
            config_digest: "sha256:abc".to_string(),
        };
        assert!(matches!(
            &s.plan.notes[..],
            [crate::Note::ProtectionDisabled { final_snapshot: Some(n), .. }] if n == "id-1-final-20250101"
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        save(&path, &s, None).unwrap();
        assert_eq!(load(&path, None).unwrap(), s);
    }

    /// With `state.encryption` a plan file is sealed like the state: no secret on disk,
    /// the key holder loads it, a wrong or missing key is one clear error.
    #[test]
    fn sealed_with_the_state_key() {
        let key = |p: &str| {
            Sealer::new(flyteinfra_state::KeySource::Passphrase {
                env: "PLAN_PW".into(),
                passphrase: flyteinfra_core::Sensitive::new(p.into()),
            })
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        let s = saved();
        save(&path, &s, Some(&key("right"))).unwrap();
        let raw = fs::read(&path).unwrap();
        assert!(is_sealed(&raw));
        assert!(!String::from_utf8_lossy(&raw).contains(SECRET));
        let all = |_: &str| true;
        let target = Target {
            known_type: &all,
            lineage: &s.plan.lineage,
        };
        assert_eq!(load_for(&path, &target, Some(&key("right"))).unwrap(), s);
        let wrong = load_for(&path, &target, Some(&key("other"))).unwrap_err();
        assert!(
            matches!(wrong, PlanError::Sealed(_)) && wrong.to_string().contains("PLAN_PW"),
            "{wrong}"
        );
        let missing = load_for(&path, &target, None).unwrap_err().to_string();
        assert!(missing.contains("set `state.encryption`"), "{missing}");
        // A plan saved before encryption was turned on still loads.
        save(&path, &s, None).unwrap();
        assert_eq!(load_for(&path, &target, Some(&key("right"))).unwrap(), s);
    }

    #[cfg(unix)]
    #[test]
    fn is_written_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        save(&path, &saved(), None).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_corrupt_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");

        let err = load(&path, None).unwrap_err();
        assert!(matches!(err, PlanError::Io { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot read plan file `"));

        fs::write(&path, "{ not json").unwrap();
        let err = load(&path, None).unwrap_err();
        assert!(matches!(err, PlanError::Corrupt { line: 1, .. }), "{err}");
        assert!(
            err.to_string()
                .contains("plan.json` is corrupt at 1:3: not valid JSON: key must be a string"),
            "{err}"
        );

        fs::write(&path, r#"{"format_version":2,"plan":{}}"#).unwrap();
        let err = load(&path, None).unwrap_err().to_string();
        assert!(err.contains("is corrupt at 1:"), "{err}");
        assert!(err.contains("field `plan`: missing field"), "{err}");

        fs::write(&path, r#"{"serial":1}"#).unwrap();
        let err = load(&path, None).unwrap_err().to_string();
        assert!(
            err.ends_with(", field `format_version`: the field is missing"),
            "{err}"
        );

        fs::write(&path, r#"{"format_version":3}"#).unwrap();
        let err = load(&path, None).unwrap_err();
        assert!(
            err.to_string().contains(
                "has format version `3` (field `format_version` at 1:2), but this build reads only version `2`; run `flyteinfra plan` again"
            ),
            "{err}"
        );
    }

    fn path() -> &'static Path {
        Path::new("/tmp/x/plan.out")
    }

    /// The file `saved()` writes, as JSON to edit.
    fn file_value() -> serde_json::Value {
        let s = saved();
        serde_json::to_value(FileOut {
            format_version: PLANFILE_FORMAT_VERSION,
            config_digest: &s.config_digest,
            plan: &s.plan,
            desired: &s.desired,
        })
        .unwrap()
    }

    fn pretty(v: &serde_json::Value) -> Vec<u8> {
        serde_json::to_vec_pretty(v).unwrap()
    }

    /// The index of the first change with `action`.
    fn change_with(v: &serde_json::Value, action: &str) -> usize {
        v["plan"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in the fixture"))
    }

    /// Decodes `v` expecting a located `Corrupt` error at `field`; returns the message.
    #[track_caller]
    fn corrupt_at(v: &serde_json::Value, field: &str) -> String {
        let err = decode(&pretty(v), path()).unwrap_err();
        let msg = err.to_string();
        let PlanError::Corrupt {
            line,
            column,
            field: f,
            ..
        } = &err
        else {
            panic!("expected Corrupt, got {msg}")
        };
        assert_eq!(f, field, "{msg}");
        assert!(*line > 1 && *column > 1, "{msg}");
        assert!(
            msg.starts_with(&format!(
                "plan file `/tmp/x/plan.out` is corrupt at {line}:{column}, field `{field}`: "
            )),
            "{msg}"
        );
        msg
    }

    #[test]
    fn damaged_files_are_located() {
        decode(&pretty(&file_value()), path()).unwrap();
        let whole = pretty(&file_value());
        for (bytes, needle) in [
            (whole[..whole.len() / 2].to_vec(), "the JSON ends early"),
            (Vec::new(), "the file is empty"),
            (b" \n".to_vec(), "the file is empty"),
            (
                b"{\"a\xff\"}".to_vec(),
                "corrupt at 1:4: binary data (byte offset 3)",
            ),
            (
                b"{\"a\0\"}".to_vec(),
                "corrupt at 1:4: binary data (byte offset 3)",
            ),
            (b"[1]".to_vec(), "expected a JSON object"),
        ] {
            let msg = decode(&bytes, path()).unwrap_err().to_string();
            assert!(
                msg.starts_with("plan file `/tmp/x/plan.out` is corrupt"),
                "{msg}"
            );
            assert!(msg.contains(needle), "{msg}");
        }

        let mut v = file_value();
        let i = change_with(&v, "create");
        v["plan"]["changes"][i]["action"] = "explode".into();
        let msg = corrupt_at(&v, &format!("plan.changes[{i}].action"));
        assert!(msg.contains("unknown variant `explode`"), "{msg}");

        let mut v = file_value();
        v["plan"]["serial"] = "7".into();
        corrupt_at(&v, "plan.serial");
    }

    #[test]
    fn hand_edits_apply_cannot_follow_are_refused() {
        let mut v = file_value();
        v["plan"]["lineage"] = "abc".into();
        let msg = corrupt_at(&v, "plan.lineage");
        assert!(msg.contains("\"abc\" is not a state lineage"), "{msg}");

        let mut v = file_value();
        v["plan"]["serial"] = u64::MAX.into();
        corrupt_at(&v, "plan.serial");

        let mut v = file_value();
        v["plan"]["format_version"] = 3.into();
        corrupt_at(&v, "plan.format_version");

        // A cycle among the changes.
        let mut v = file_value();
        let (a, b) = (change_with(&v, "create"), change_with(&v, "update"));
        let (addr_a, addr_b) = (
            v["plan"]["changes"][a]["address"].clone(),
            v["plan"]["changes"][b]["address"].clone(),
        );
        v["plan"]["changes"][a]["dependencies"] = serde_json::json!([addr_b]);
        v["plan"]["changes"][b]["dependencies"] = serde_json::json!([addr_a]);
        let first = a.min(b);
        let msg = corrupt_at(&v, &format!("plan.changes[{first}].dependencies"));
        assert!(msg.contains("the dependencies form a cycle"), "{msg}");

        // The same address twice.
        let mut v = file_value();
        let changes = v["plan"]["changes"].as_array_mut().unwrap();
        let copy = changes[0].clone();
        changes.push(copy);
        let last = changes.len() - 1;
        let msg = corrupt_at(&v, &format!("plan.changes[{last}].address"));
        assert!(
            msg.contains("is planned twice (also `plan.changes[0]`)"),
            "{msg}"
        );

        // Creating an `existing:` resource; reading a managed one.
        let mut v = file_value();
        let r = change_with(&v, "read");
        v["plan"]["changes"][r]["action"] = "create".into();
        corrupt_at(&v, &format!("plan.changes[{r}].action"));
        let mut v = file_value();
        let c = change_with(&v, "create");
        v["plan"]["changes"][c]["action"] = "read".into();
        corrupt_at(&v, &format!("plan.changes[{c}].action"));

        // A create with nothing to create from.
        let mut v = file_value();
        let c = change_with(&v, "create");
        let addr = v["plan"]["changes"][c]["address"].clone();
        v["desired"]
            .as_array_mut()
            .unwrap()
            .retain(|s| s["address"] != addr);
        let msg = corrupt_at(&v, &format!("plan.changes[{c}].address"));
        assert!(
            msg.contains("is not among the plan's `desired` resources"),
            "{msg}"
        );

        // A desired resource that depends on one that is not there.
        let mut v = file_value();
        v["desired"][1]["depends_on"] = serde_json::json!(["aws_nowhere.x"]);
        let msg = corrupt_at(&v, "desired[1].address");
        assert!(
            msg.contains("refers to `aws_nowhere.x`, which does not exist"),
            "{msg}"
        );
    }

    #[test]
    fn checked_against_the_registry_and_the_state() {
        let bytes = pretty(&file_value());
        let lineage = saved().plan.lineage;
        let all = |_: &str| true;
        let target = Target {
            known_type: &all,
            lineage: &lineage,
        };
        assert_eq!(decode_for(&bytes, path(), &target).unwrap(), saved());

        let no_secrets = |t: &str| t != "k8s_secret";
        let msg = decode_for(
            &bytes,
            path(),
            &Target {
                known_type: &no_secrets,
                lineage: &lineage,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("type `k8s_secret` of `k8s_secret.db` is not a resource type"),
            "{msg}"
        );
        assert!(msg.contains(", field `plan.changes["), "{msg}");

        let other = "11111111-1111-4111-8111-111111111111";
        let err = decode_for(
            &bytes,
            path(),
            &Target {
                known_type: &all,
                lineage: other,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, PlanError::OtherState { line, .. } if line > 1),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "field `plan.lineage`: it is for state lineage {lineage}, but the state has lineage {other}"
            )),
            "{msg}"
        );
    }

    #[test]
    fn version_1_files_are_upgraded() {
        // A version 1 file: string versions, no notes, no refresh_only.
        let s = saved();
        let mut doc = serde_json::json!({
            "format_version": "1",
            "config_digest": s.config_digest,
            "plan": serde_json::to_value(&s.plan).unwrap(),
            "desired": serde_json::to_value(&s.desired).unwrap(),
        });
        let plan = doc["plan"].as_object_mut().unwrap();
        plan.insert("format_version".into(), "1".into());
        plan.remove("notes");
        plan.remove("refresh_only");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
        // Format 1 had no notes.
        let mut want = s.clone();
        want.plan.notes.clear();
        assert_eq!(load(&path, None).unwrap(), want);
    }

    #[test]
    fn stores_secrets_for_apply() {
        // Plan files are 0600 because they hold what apply sends; renderings never do.
        let text = serde_json::to_string(&saved().plan).unwrap();
        assert!(text.contains(SECRET));
        assert!(text.contains(r#""policy":"unknown""#), "{text}");
        assert!(!format!("{:?}", saved()).contains("s3cr3t"));
    }
}

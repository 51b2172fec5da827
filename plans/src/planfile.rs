//! Saved plans (`plan -out FILE`, then `apply FILE`); the format is documented on
//! [`SavedPlan`].

use std::fmt;
use std::fs;
use std::io;
use std::path::Path;

use flyteinfra_core::ResourceSpec;
use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::plan::Plan;

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
struct FileOut<'a> {
    format_version: u32,
    config_digest: &'a str,
    plan: &'a Plan,
    desired: &'a [ResourceSpec],
}

#[derive(Deserialize)]
struct FileIn {
    config_digest: String,
    plan: Plan,
    desired: Vec<ResourceSpec>,
}

/// Writes `saved` to `path` atomically with mode `0600`
/// ([`flyteinfra_state::write_private`]). A crash leaves either the old file or the new
/// one, never a torn one.
///
/// # Errors
/// [`PlanError::Io`] if the directory is not writable or the disk fails.
pub fn save(path: &Path, saved: &SavedPlan) -> Result<(), PlanError> {
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
    flyteinfra_state::write_private(path, &bytes).map_err(io_err)
}

/// Reads a plan file written by [`save`].
///
/// # Errors
/// - [`PlanError::Io`]: the file is missing or unreadable;
/// - [`PlanError::UnsupportedVersion`]: it has another plan file format version;
/// - [`PlanError::Corrupt`]: it is not JSON, or not a plan file.
pub fn load(path: &Path) -> Result<SavedPlan, PlanError> {
    let bytes = fs::read(path).map_err(|source| PlanError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    let corrupt = |source| PlanError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(corrupt)?;
    let mut doc = doc;
    match doc.get("format_version") {
        Some(v) if v.as_u64() == Some(u64::from(PLANFILE_FORMAT_VERSION)) => {}
        Some(serde_json::Value::String(v)) if v == "1" => upgrade_v1(&mut doc),
        Some(other) => {
            return Err(PlanError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string),
                expected: PLANFILE_FORMAT_VERSION.to_string(),
            });
        }
        None => {
            return Err(corrupt(serde::de::Error::missing_field("format_version")));
        }
    }
    let file: FileIn = serde_json::from_value(doc).map_err(corrupt)?;
    Ok(SavedPlan {
        plan: file.plan,
        desired: file.desired,
        config_digest: file.config_digest,
    })
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
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        // Overwriting an existing file is atomic and leaves no temporary behind.
        save(&path, &s).unwrap();
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
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
    }

    #[cfg(unix)]
    #[test]
    fn is_written_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        save(&path, &saved()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_corrupt_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");

        let err = load(&path).unwrap_err();
        assert!(matches!(err, PlanError::Io { .. }), "{err}");
        assert!(err.to_string().starts_with("cannot read plan file `"));

        fs::write(&path, "{ not json").unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, PlanError::Corrupt { .. }), "{err}");
        assert!(err.to_string().ends_with("plan.json` is corrupt"), "{err}");

        fs::write(&path, r#"{"format_version":2,"plan":{}}"#).unwrap();
        assert!(matches!(load(&path), Err(PlanError::Corrupt { .. })));

        fs::write(&path, r#"{"serial":1}"#).unwrap();
        assert!(matches!(load(&path), Err(PlanError::Corrupt { .. })));

        fs::write(&path, r#"{"format_version":3}"#).unwrap();
        let err = load(&path).unwrap_err();
        assert!(
            err.to_string().contains(
                "has format version `3`, but this build reads only version `2`; run `plan` again"
            ),
            "{err}"
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
        assert_eq!(load(&path).unwrap(), want);
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

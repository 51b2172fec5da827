//! Serial and lineage bookkeeping, written once above every backend.

use std::path::Path;
use std::time::Duration;

use crate::backend::Backend;
use crate::document::{FORMAT_VERSION, StateDoc};
use crate::error::StateError;
use crate::lock::{LockGuard, LockInfo};
use crate::statefile::{decode, decode_with_types, encode};

/// Loads and persists one state document through a [`Backend`], keeping its serial.
///
/// The expected flow of a command that changes state:
/// 1. [`lock`](StateManager::lock) and keep the guard until the command ends;
/// 2. [`load`](StateManager::load);
/// 3. for a saved plan, [`check_plan_fresh`] before anything else;
/// 4. [`persist`](StateManager::persist) after every change.
#[derive(Debug)]
pub struct StateManager<B> {
    backend: B,
    /// The document as last loaded from or written to the backend.
    stored: Option<StateDoc>,
}

impl<B: Backend> StateManager<B> {
    /// A manager over `backend`.
    pub fn new(backend: B) -> Self {
        StateManager {
            backend,
            stored: None,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Takes the backend's lock; see [`Backend::lock`].
    ///
    /// # Errors
    /// As [`Backend::lock`].
    pub fn lock(&self, info: LockInfo, timeout: Duration) -> Result<LockGuard, StateError> {
        self.backend.lock(info, timeout)
    }

    /// The state of `deployment` on `cloud`: the stored document, or a new empty one
    /// (serial 0, fresh lineage) when nothing is stored yet. Nothing is written.
    ///
    /// # Errors
    /// [`StateError::CloudMismatch`] if the stored state belongs to another cloud;
    /// otherwise as [`Backend::get`] and [`decode`] (a newer format is refused).
    pub fn load(&mut self, deployment: &str, cloud: &str) -> Result<StateDoc, StateError> {
        self.load_checked(deployment, cloud, None)
    }

    /// [`load`](StateManager::load), and every resource and intent in the stored document
    /// must have a type `known_type` accepts (see [`decode_with_types`]): for commands
    /// that will call providers, before they call any.
    ///
    /// # Errors
    /// As [`load`](StateManager::load).
    pub fn load_with_types(
        &mut self,
        deployment: &str,
        cloud: &str,
        known_type: &dyn Fn(&str) -> bool,
    ) -> Result<StateDoc, StateError> {
        self.load_checked(deployment, cloud, Some(known_type))
    }

    fn load_checked(
        &mut self,
        deployment: &str,
        cloud: &str,
        known_type: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<StateDoc, StateError> {
        let Some(bytes) = self.backend.get()? else {
            self.stored = None;
            return Ok(StateDoc::new(deployment, cloud));
        };
        let source = self.backend.describe();
        let doc = match known_type {
            Some(known) => decode_with_types(&bytes, Path::new(&source), known)?,
            None => decode(&bytes, Path::new(&source))?,
        };
        if doc.cloud != cloud {
            return Err(StateError::CloudMismatch {
                path: source.into(),
                expected: cloud.to_string(),
                found: doc.cloud,
            });
        }
        self.stored = Some(doc.clone());
        Ok(doc)
    }

    /// Writes `doc` atomically, first raising its serial above both its own and the
    /// stored one.
    ///
    /// A document equal to the one last loaded or persisted is not written again. The
    /// serial only ever goes up: if the write fails, `doc` keeps its raised serial, and
    /// the next successful persist skips a number, which is harmless.
    ///
    /// # Errors
    /// As [`Backend::put`].
    pub fn persist(&mut self, doc: &mut StateDoc) -> Result<(), StateError> {
        if self.stored.as_ref() == Some(doc) {
            return Ok(());
        }
        let stored_serial = self.stored.as_ref().map_or(0, |d| d.serial);
        doc.serial = doc.serial.max(stored_serial) + 1;
        doc.format_version = FORMAT_VERSION;
        self.backend.put(&encode(doc))?;
        self.stored = Some(doc.clone());
        Ok(())
    }
}

/// Checks that a saved plan made for state `lineage` at `serial` still applies to `doc`.
///
/// Call it right after [`StateManager::load`], before any persist raises the serial.
///
/// # Errors
/// [`StateError::StalePlan`], worded differently when the lineage changed (the state was
/// replaced) and when only the serial did (the state was changed since the plan).
pub fn check_plan_fresh(doc: &StateDoc, lineage: &str, serial: u64) -> Result<(), StateError> {
    if doc.lineage == lineage && doc.serial == serial {
        Ok(())
    } else {
        Err(StateError::StalePlan {
            plan_lineage: lineage.to_string(),
            plan_serial: serial,
            state_lineage: doc.lineage.clone(),
            state_serial: doc.serial,
        })
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::{Address, Mode};

    use super::*;
    use crate::document::{ResourceState, Status};
    use crate::memory::MemoryBackend;

    fn add_bucket(doc: &mut StateDoc, name: &str) {
        doc.resources.insert(
            Address::new("aws_s3_bucket", name),
            ResourceState {
                mode: Mode::Managed,
                id: name.into(),
                status: Status::Ready,
                inputs: Default::default(),
                attributes: Default::default(),
                dependencies: vec![],
            },
        );
    }

    #[test]
    fn missing_state_is_new_and_not_written() {
        let mem = MemoryBackend::new();
        let mut mgr = StateManager::new(mem.clone());
        let doc = mgr.load("prod", "aws").unwrap();
        assert_eq!(
            (doc.serial, doc.deployment.as_str(), doc.cloud.as_str()),
            (0, "prod", "aws")
        );
        assert_eq!(mem.writes(), 0);
    }

    #[test]
    fn persist_raises_the_serial_and_round_trips() {
        let mem = MemoryBackend::new();
        let mut mgr = StateManager::new(mem.clone());
        let mut doc = mgr.load("prod", "aws").unwrap();
        let lineage = doc.lineage.clone();
        mgr.persist(&mut doc).unwrap();
        assert_eq!(doc.serial, 1);
        add_bucket(&mut doc, "a");
        mgr.persist(&mut doc).unwrap();
        assert_eq!(doc.serial, 2);

        // Unchanged: no write, no increment.
        mgr.persist(&mut doc).unwrap();
        assert_eq!((doc.serial, mem.writes()), (2, 2));

        let mut fresh = StateManager::new(mem.clone());
        let loaded = fresh.load("prod", "aws").unwrap();
        assert_eq!(loaded, doc);
        assert_eq!(loaded.lineage, lineage);
        let mut again = loaded.clone();
        fresh.persist(&mut again).unwrap();
        assert_eq!(mem.writes(), 2, "a just-loaded document is not rewritten");
    }

    #[test]
    fn serial_never_goes_down() {
        let mem = MemoryBackend::new();
        let mut mgr = StateManager::new(mem.clone());
        let mut doc = mgr.load("prod", "aws").unwrap();
        doc.serial = 10;
        mgr.persist(&mut doc).unwrap();
        assert_eq!(doc.serial, 11);
        let mut older = doc.clone();
        older.serial = 3;
        add_bucket(&mut older, "b");
        mgr.persist(&mut older).unwrap();
        assert_eq!(older.serial, 12);

        // A failed write keeps the raised serial; the next one goes higher still.
        add_bucket(&mut older, "c");
        mem.fail_puts(true);
        assert!(mgr.persist(&mut older).is_err());
        assert_eq!(older.serial, 13);
        mem.fail_puts(false);
        mgr.persist(&mut older).unwrap();
        assert_eq!(older.serial, 14);
        let stored = StateManager::new(mem).load("prod", "aws").unwrap();
        assert_eq!(stored.serial, 14);
    }

    #[test]
    fn another_clouds_state_is_refused() {
        let mem = MemoryBackend::with_contents(encode(&StateDoc::new("prod", "gcp")));
        let e = StateManager::new(mem).load("prod", "aws").unwrap_err();
        assert!(matches!(e, StateError::CloudMismatch { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "state `(in memory)` belongs to cloud `gcp`, not `aws`: each cloud has its own state file"
        );
    }

    #[test]
    fn plan_freshness() {
        let mut doc = StateDoc::new("prod", "aws");
        doc.serial = 3;
        let lineage = doc.lineage.clone();
        check_plan_fresh(&doc, &lineage, 3).unwrap();

        doc.serial = 5;
        let e = check_plan_fresh(&doc, &lineage, 3).unwrap_err();
        assert!(matches!(
            e,
            StateError::StalePlan {
                plan_serial: 3,
                state_serial: 5,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            format!(
                "saved plan is stale: it was made for state lineage {lineage} serial 3, but the state is now lineage {lineage} serial 5; run `flyteinfra plan` again"
            )
        );

        let e = check_plan_fresh(&doc, "other-lineage", 5).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "saved plan is stale: it was made for state lineage other-lineage, but the state now has lineage {lineage} (it was replaced or recreated); run `flyteinfra plan` again"
            )
        );
    }
}

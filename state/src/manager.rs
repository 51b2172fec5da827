//! Serial and lineage bookkeeping, and fencing, written once above every backend.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, Object, Precondition, Version};
use crate::document::{FORMAT_VERSION, StateDoc};
use crate::error::StateError;
use crate::lease::{Lease, LeaseWatch};
use crate::lock::LockInfo;
use crate::statefile::{decode, decode_with_types, encode};

/// Loads and persists one state document through a [`Backend`], keeping its serial and
/// the version it last read, so that every write is conditional on it (fencing).
///
/// The expected flow of a command that changes state:
/// 1. [`lock`](StateManager::lock) and keep the [`Lease`] until the command ends;
/// 2. [`load`](StateManager::load): when the lease was taken over from a stalled holder,
///    this writes the state back at once (a new serial) so that the old holder's next
///    write fails, before this command calls any cloud;
/// 3. for a saved plan, [`check_plan_fresh`] with [`found_serial`](Self::found_serial);
/// 4. [`persist`](StateManager::persist) after every change.
pub struct StateManager {
    backend: Arc<dyn Backend>,
    /// The document as last loaded from or written to the backend.
    stored: Option<StateDoc>,
    /// The version of the state object as last read or written (`None`: absent).
    version: Option<Version>,
    /// The serial found by the last load, before any fencing write.
    found_serial: u64,
    /// The lease this manager writes under, once locked.
    lease: Option<LeaseWatch>,
    /// Whether the lease was taken over and the state must be fenced on load.
    fence_on_load: bool,
}

impl std::fmt::Debug for StateManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateManager")
            .field("backend", &self.backend.describe(Object::State))
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl StateManager {
    /// A manager over `backend`.
    pub fn new(backend: impl Backend + 'static) -> Self {
        Self::shared(Arc::new(backend))
    }

    /// A manager over a shared backend.
    pub fn shared(backend: Arc<dyn Backend>) -> Self {
        StateManager {
            backend,
            stored: None,
            version: None,
            found_serial: 0,
            lease: None,
            fence_on_load: false,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Where the state is stored, for messages.
    pub fn describe(&self) -> String {
        self.backend.describe(Object::State)
    }

    /// Takes the backend's lease (see [`Lease::acquire`]); every later
    /// [`persist`](Self::persist) first checks that it still holds.
    ///
    /// # Errors
    /// As [`Lease::acquire`].
    pub fn lock(
        &mut self,
        info: LockInfo,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Lease, StateError> {
        let lease = Lease::acquire(Arc::clone(&self.backend), info, ttl, timeout)?;
        self.lease = Some(lease.watch());
        self.fence_on_load = lease.taken_over_from().is_some();
        Ok(lease)
    }

    /// The state of `deployment` on `cloud`: the stored document, or a new empty one
    /// (serial 0, fresh lineage) when nothing is stored yet. Nothing is written, except
    /// the fencing write after a taken-over lease (see the type's docs).
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

    /// The serial the last load found, before any fencing write: what a saved plan must
    /// have been made for.
    pub fn found_serial(&self) -> u64 {
        self.found_serial
    }

    fn load_checked(
        &mut self,
        deployment: &str,
        cloud: &str,
        known_type: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<StateDoc, StateError> {
        let mut doc = match self.backend.get(Object::State)? {
            None => {
                self.stored = None;
                self.version = None;
                StateDoc::new(deployment, cloud)
            }
            Some(stored) => {
                let source = self.describe();
                let doc = match known_type {
                    Some(known) => decode_with_types(&stored.bytes, Path::new(&source), known)?,
                    None => decode(&stored.bytes, Path::new(&source))?,
                };
                if doc.cloud != cloud {
                    return Err(StateError::CloudMismatch {
                        path: source.into(),
                        expected: cloud.to_string(),
                        found: doc.cloud,
                    });
                }
                self.stored = Some(doc.clone());
                self.version = Some(stored.version);
                doc
            }
        };
        self.found_serial = doc.serial;
        if std::mem::take(&mut self.fence_on_load) {
            self.write(&mut doc)?;
        }
        Ok(doc)
    }

    /// Writes `doc` atomically, on the condition that the stored state is still the one
    /// this manager last read or wrote, first raising its serial above both its own and
    /// the stored one.
    ///
    /// A document equal to the one last loaded or persisted is not written again. The
    /// serial only ever goes up: if the write fails, `doc` keeps its raised serial, and
    /// the next successful persist skips a number, which is harmless.
    ///
    /// # Errors
    /// [`StateError::LeaseLost`] when this manager's lease no longer holds (nothing is
    /// written); [`StateError::Fenced`] when another writer changed the state since;
    /// as [`Backend::put`] otherwise.
    pub fn persist(&mut self, doc: &mut StateDoc) -> Result<(), StateError> {
        if self.stored.as_ref() == Some(doc) {
            return Ok(());
        }
        self.write(doc)
    }

    fn write(&mut self, doc: &mut StateDoc) -> Result<(), StateError> {
        if let Some(lease) = &self.lease {
            lease.check()?;
        }
        let stored_serial = self.stored.as_ref().map_or(0, |d| d.serial);
        doc.serial = doc.serial.max(stored_serial) + 1;
        doc.format_version = FORMAT_VERSION;
        let expect = match &self.version {
            Some(v) => Precondition::At(v.clone()),
            None => Precondition::Absent,
        };
        let bytes = encode(doc);
        let version = match self.backend.put(Object::State, &bytes, &expect) {
            Ok(v) => v,
            // A write retried after its answer was lost finds itself in place: not a fence.
            Err(StateError::Moved { .. }) => match self.backend.get(Object::State)? {
                Some(s) if s.bytes == bytes => s.version,
                _ => {
                    return Err(StateError::Fenced {
                        path: self.describe().into(),
                    });
                }
            },
            Err(e) => return Err(e),
        };
        self.version = Some(version);
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

    /// Writes, then answers `Moved`: an S3 write whose answer was lost and whose retry
    /// met the first attempt's object.
    struct LostAnswer(MemoryBackend);

    impl Backend for LostAnswer {
        fn get(&self, o: Object) -> Result<Option<crate::Stored>, StateError> {
            self.0.get(o)
        }
        fn put(&self, o: Object, b: &[u8], e: &Precondition) -> Result<Version, StateError> {
            self.0.put(o, b, e)?;
            Err(StateError::Moved {
                path: "(lost)".into(),
            })
        }
        fn delete(&self, o: Object, v: &Version) -> Result<(), StateError> {
            self.0.delete(o, v)
        }
        fn describe(&self, o: Object) -> String {
            self.0.describe(o)
        }
    }

    #[test]
    fn a_write_whose_answer_was_lost_is_not_a_fence() {
        let mem = MemoryBackend::new();
        let mut mgr = StateManager::new(LostAnswer(mem.clone()));
        let mut doc = mgr.load("prod", "aws").unwrap();
        mgr.persist(&mut doc).unwrap();
        add_bucket(&mut doc, "a");
        mgr.persist(&mut doc).unwrap();
        assert_eq!((doc.serial, mem.writes()), (2, 2));

        // Someone else's write in between is still a fence.
        let mut other = StateManager::new(mem.clone());
        let mut theirs = other.load("prod", "aws").unwrap();
        add_bucket(&mut theirs, "theirs");
        other.persist(&mut theirs).unwrap();
        add_bucket(&mut doc, "b");
        let e = mgr.persist(&mut doc).unwrap_err();
        assert!(matches!(e, StateError::Fenced { .. }), "{e:?}");
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

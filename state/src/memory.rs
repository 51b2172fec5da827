//! An in-memory backend, for tests here and in other crates.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::backend::{Backend, Object, Precondition, Stored, Version};
use crate::error::StateError;
use crate::lease::LeaseRecord;
use crate::lock::LockInfo;

/// A backend that keeps both objects in memory. Clones share them, so a test can keep a
/// clone to look inside after handing one to a [`StateManager`](crate::StateManager), or
/// give two clones to two "processes".
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    shared: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: HashMap<Object, Stored>,
    /// The last version handed out; versions are never reused.
    counter: u64,
    writes: usize,
    fail_puts: bool,
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A backend whose state already holds `bytes`.
    pub fn with_contents(bytes: impl Into<Vec<u8>>) -> Self {
        let b = Self::new();
        {
            let mut inner = b.inner();
            inner.counter += 1;
            let version = Version::new(inner.counter.to_string());
            inner.objects.insert(
                Object::State,
                Stored {
                    bytes: bytes.into(),
                    version,
                },
            );
        }
        b
    }

    /// How many successful state [`put`](Backend::put)s this backend (and its clones)
    /// received.
    pub fn writes(&self) -> usize {
        self.inner().writes
    }

    /// Makes every later state `put` fail with [`StateError::Write`] (or succeed again),
    /// to test what callers do when state cannot be saved.
    pub fn fail_puts(&self, fail: bool) {
        self.inner().fail_puts = fail;
    }

    /// The current lease holder, if any.
    pub fn holder(&self) -> Option<LockInfo> {
        let inner = self.inner();
        let stored = inner.objects.get(&Object::Lease)?;
        serde_json::from_slice::<LeaseRecord>(&stored.bytes)
            .ok()
            .map(|r| r.holder)
    }

    fn moved(&self, object: Object) -> StateError {
        StateError::Moved {
            path: self.describe(object).into(),
        }
    }
}

impl Backend for MemoryBackend {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        Ok(self.inner().objects.get(&object).cloned())
    }

    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        let mut inner = self.inner();
        if inner.fail_puts && object == Object::State {
            return Err(StateError::Write {
                path: self.describe(object).into(),
                source: std::io::Error::other("injected failure"),
            });
        }
        let holds = match (expect, inner.objects.get(&object)) {
            (Precondition::Absent, None) => true,
            (Precondition::At(v), Some(s)) => s.version == *v,
            _ => false,
        };
        if !holds {
            return Err(self.moved(object));
        }
        inner.counter += 1;
        let version = Version::new(inner.counter.to_string());
        inner.objects.insert(
            object,
            Stored {
                bytes: bytes.to_vec(),
                version: version.clone(),
            },
        );
        if object == Object::State {
            inner.writes += 1;
        }
        Ok(version)
    }

    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        let mut inner = self.inner();
        match inner.objects.get(&object) {
            Some(s) if s.version == *version => {
                inner.objects.remove(&object);
                Ok(())
            }
            _ => Err(self.moved(object)),
        }
    }

    fn describe(&self, object: Object) -> String {
        match object {
            Object::State => "(in memory)".to_string(),
            Object::Lease => "(in memory lease)".to_string(),
        }
    }

    fn poll_interval(&self) -> std::time::Duration {
        std::time::Duration::from_millis(20)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn conformance() {
        crate::conformance::run_all(&|| -> Box<dyn Fn() -> Arc<dyn Backend>> {
            let shared = MemoryBackend::new();
            Box::new(move || Arc::new(shared.clone()))
        });
    }

    #[test]
    fn clones_share_objects_and_lease() {
        let a = MemoryBackend::new();
        let b = a.clone();
        a.put(Object::State, b"x", &Precondition::Absent).unwrap();
        assert_eq!(b.get(Object::State).unwrap().unwrap().bytes, b"x");
        assert_eq!(b.writes(), 1);
        let _lease = crate::Lease::acquire(
            Arc::new(a.clone()),
            LockInfo::new("t"),
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(b.holder().unwrap().command, "t");
    }

    #[test]
    fn injected_put_failure_keeps_the_state() {
        let b = MemoryBackend::with_contents("old");
        let v = b.get(Object::State).unwrap().unwrap().version;
        b.fail_puts(true);
        let e = b.put(Object::State, b"new", &Precondition::At(v.clone()));
        assert!(matches!(e, Err(StateError::Write { .. })));
        assert_eq!(b.get(Object::State).unwrap().unwrap().bytes, b"old");
        b.fail_puts(false);
        b.put(Object::State, b"new", &Precondition::At(v)).unwrap();
        assert_eq!(b.writes(), 1);
    }
}

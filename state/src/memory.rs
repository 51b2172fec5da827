//! An in-memory backend, for tests here and in other crates.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::StateError;
use crate::lock::{LockGuard, LockInfo};

/// A backend that keeps the blob in memory. Clones share the blob and the lock, so a test
/// can keep a clone to look inside after handing one to a
/// [`StateManager`](crate::StateManager).
#[derive(Clone, Debug, Default)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
    released: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    blob: Option<Vec<u8>>,
    holder: Option<LockInfo>,
    writes: usize,
    fail_puts: bool,
}

impl Shared {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MemoryBackend {
    /// An empty, unlocked backend.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backend that already holds `bytes`.
    pub fn with_contents(bytes: impl Into<Vec<u8>>) -> Self {
        let b = Self::new();
        b.shared.inner().blob = Some(bytes.into());
        b
    }

    /// How many successful [`put`](Backend::put)s this backend (and its clones) received.
    pub fn writes(&self) -> usize {
        self.shared.inner().writes
    }

    /// Makes every later `put` fail with [`StateError::Write`] (or succeed again), to test
    /// what callers do when state cannot be saved.
    pub fn fail_puts(&self, fail: bool) {
        self.shared.inner().fail_puts = fail;
    }

    /// The current lock holder, if any.
    pub fn holder(&self) -> Option<LockInfo> {
        self.shared.inner().holder.clone()
    }
}

impl Backend for MemoryBackend {
    fn get(&self) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.shared.inner().blob.clone())
    }

    fn put(&self, bytes: &[u8]) -> Result<(), StateError> {
        let mut inner = self.shared.inner();
        if inner.fail_puts {
            return Err(StateError::Write {
                path: self.describe().into(),
                source: std::io::Error::other("injected failure"),
            });
        }
        inner.blob = Some(bytes.to_vec());
        inner.writes += 1;
        Ok(())
    }

    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<LockGuard, StateError> {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.inner();
        while let Some(holder) = &inner.holder {
            let now = Instant::now();
            if now >= deadline {
                return Err(StateError::Locked {
                    path: self.describe().into(),
                    holder: Box::new(holder.clone()),
                    waited: timeout,
                });
            }
            inner = self
                .shared
                .released
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        inner.holder = Some(info.clone());
        drop(inner);
        let shared = Arc::clone(&self.shared);
        Ok(LockGuard::new(info, move || {
            shared.inner().holder = None;
            shared.released.notify_all();
        }))
    }

    fn describe(&self) -> String {
        "(in memory)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance() {
        crate::backend::conformance(&MemoryBackend::new());
    }

    #[test]
    fn clones_share_blob_and_lock() {
        let a = MemoryBackend::new();
        let b = a.clone();
        a.put(b"x").unwrap();
        assert_eq!(b.get().unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(b.writes(), 1);
        let _guard = a.lock(LockInfo::new("t"), Duration::ZERO).unwrap();
        assert_eq!(b.holder().unwrap().command, "t");
        assert!(matches!(
            b.lock(LockInfo::new("u"), Duration::ZERO),
            Err(StateError::Locked { .. })
        ));
    }

    #[test]
    fn injected_put_failure_keeps_the_blob() {
        let b = MemoryBackend::with_contents("old");
        b.fail_puts(true);
        assert!(matches!(b.put(b"new"), Err(StateError::Write { .. })));
        assert_eq!(b.get().unwrap().as_deref(), Some(&b"old"[..]));
        b.fail_puts(false);
        b.put(b"new").unwrap();
        assert_eq!(b.writes(), 1);
    }
}

//! The state as the apply sees it: one document, persisted after every transition.

use std::sync::{Arc, Mutex};

use flyteinfra_state::{StateDoc, StateError};

/// Persists a document (a `StateManager` behind a closure, so this crate does not care
/// which backend it is).
pub type PersistFn = Box<dyn FnMut(&mut StateDoc) -> Result<(), StateError> + Send>;

/// The state document shared by all visitors. Every change goes through
/// [`Journal::transition`], which persists it atomically before returning, so a crash at
/// any point leaves the last completed transition on disk.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    doc: StateDoc,
    persist: PersistFn,
}

impl Journal {
    /// Wraps `doc`, persisting with `persist`.
    pub fn new(doc: StateDoc, persist: PersistFn) -> Self {
        Journal {
            inner: Arc::new(Mutex::new(Inner { doc, persist })),
        }
    }

    /// Reads the document.
    pub fn read<T>(&self, f: impl FnOnce(&StateDoc) -> T) -> T {
        f(&self.inner.lock().expect("state lock").doc)
    }

    /// Changes the document and persists it before returning. If persisting fails the
    /// change is kept in memory and the error returned: the caller must stop.
    pub fn transition<T>(&self, f: impl FnOnce(&mut StateDoc) -> T) -> Result<T, StateError> {
        let mut inner = self.inner.lock().expect("state lock");
        let out = f(&mut inner.doc);
        let Inner { doc, persist } = &mut *inner;
        persist(doc)?;
        Ok(out)
    }

    /// A copy of the document.
    pub fn snapshot(&self) -> StateDoc {
        self.read(Clone::clone)
    }
}

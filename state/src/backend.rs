//! The blob-level storage interface every state backend implements.

use std::time::Duration;

use crate::error::StateError;
use crate::lock::{LockGuard, LockInfo};

/// Where a state document's bytes live and who may write them.
///
/// A backend stores one opaque blob: it knows nothing of serials, lineages or formats,
/// which [`StateManager`](crate::StateManager) handles once for all backends.
///
/// # Guarantees an implementer must keep
/// - [`put`](Backend::put) is atomic: a concurrent or later [`get`](Backend::get) sees
///   either the previous blob or the new one, never a mix, even if the process dies.
/// - [`lock`](Backend::lock) is exclusive across every process (or, for in-memory
///   backends, every clone) using the same state, and is released when the returned
///   guard drops, and also when the holding process dies.
/// - Nothing here prints.
pub trait Backend: Send + Sync {
    /// The current blob, or `None` if no state has been written yet.
    ///
    /// # Errors
    /// [`StateError::Read`] when the storage cannot be read.
    fn get(&self) -> Result<Option<Vec<u8>>, StateError>;

    /// Replaces the blob atomically.
    ///
    /// # Errors
    /// [`StateError::Write`]; the previous blob is then still in place.
    fn put(&self, bytes: &[u8]) -> Result<(), StateError>;

    /// Takes the exclusive lock, recording `info` for others to see, waiting up to
    /// `timeout` for a current holder to release it. Dropping the guard unlocks.
    ///
    /// # Errors
    /// [`StateError::Locked`] naming the holder when `timeout` passes;
    /// [`StateError::Lock`] when the lock cannot be taken for another reason.
    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<LockGuard, StateError>;

    /// What this backend stores to, for messages: for a file, its path.
    fn describe(&self) -> String;
}

#[cfg(test)]
#[test]
fn backends_and_guards_cross_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<crate::LockGuard>();
    send_sync::<crate::LocalBackend>();
    send_sync::<crate::MemoryBackend>();
    send_sync::<Box<dyn Backend>>();
    send::<crate::StateManager<Box<dyn Backend>>>();
}

/// The behaviour every backend must show, run by each backend's tests. `backend` must
/// start empty and unlocked.
#[cfg(test)]
pub(crate) fn conformance(backend: &dyn Backend) {
    use std::time::Instant;

    assert_eq!(backend.get().unwrap(), None, "a new backend is empty");

    backend.put(b"first").unwrap();
    assert_eq!(backend.get().unwrap().as_deref(), Some(&b"first"[..]));
    backend.put(b"second, longer").unwrap();
    assert_eq!(
        backend.get().unwrap().as_deref(),
        Some(&b"second, longer"[..])
    );
    backend.put(b"3").unwrap();
    assert_eq!(
        backend.get().unwrap().as_deref(),
        Some(&b"3"[..]),
        "no stale tail"
    );

    let mut holder = LockInfo::new("flyteinfra apply");
    holder.pid = 4242;
    let guard = backend.lock(holder.clone(), Duration::ZERO).unwrap();
    assert_eq!(guard.info(), &holder);

    let start = Instant::now();
    let err = backend
        .lock(LockInfo::new("flyteinfra plan"), Duration::from_millis(250))
        .unwrap_err();
    assert!(start.elapsed() >= Duration::from_millis(250), "it waited");
    let StateError::Locked {
        holder: found,
        waited,
        ..
    } = &err
    else {
        panic!("expected Locked, got {err:?}");
    };
    assert_eq!(**found, holder);
    assert_eq!(*waited, Duration::from_millis(250));
    let msg = err.to_string();
    assert!(
        msg.contains("is locked by pid 4242 on host ")
            && msg.contains("(`flyteinfra apply`) since ")
            && msg.contains("; waited 250ms (use `--lock-timeout` to wait longer)")
            && msg.contains(&backend.describe()),
        "{msg}"
    );

    // Reading and writing do not need the lock (the caller takes it).
    assert!(backend.get().unwrap().is_some());

    drop(guard);
    let again = backend.lock(LockInfo::new("flyteinfra apply"), Duration::ZERO);
    assert!(again.is_ok(), "{again:?}");
    drop(again);

    // A waiter gets the lock once the holder releases it within the timeout.
    let guard = backend.lock(LockInfo::new("a"), Duration::ZERO).unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            drop(guard);
        });
        let waited = backend.lock(LockInfo::new("b"), Duration::from_secs(10));
        assert!(waited.is_ok(), "{waited:?}");
    });
}

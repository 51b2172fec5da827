//! Client-side encryption as a layer over any [`Backend`]: the state object is sealed on
//! the way in and opened on the way out, so the manager, `state pull/push` and `migrate`
//! see plain documents whatever the store, and every store holds only sealed bytes.
//!
//! The lease record passes through as is: it holds who runs what, no secret, and a waiter
//! without the key must still be able to say who holds the lease.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, Object, Precondition, Stored, Version};
use crate::crypt::{Sealer, is_sealed, unsealed_error};
use crate::error::StateError;

/// A [`Backend`] whose state object is sealed with `sealer`, or, with no sealer, one that
/// refuses to hand out a sealed state (it names the key the state needs).
///
/// A plain state found where a key is configured is read as is: encryption was just
/// turned on, and the next write seals it.
pub struct Sealing {
    inner: Arc<dyn Backend>,
    sealer: Option<Sealer>,
}

impl Sealing {
    /// `inner`, with the state sealed by `sealer` (none: plain, and sealed states refused).
    pub fn new(inner: Arc<dyn Backend>, sealer: Option<Sealer>) -> Sealing {
        Sealing { inner, sealer }
    }
}

impl Backend for Sealing {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        let Some(mut stored) = self.inner.get(object)? else {
            return Ok(None);
        };
        if object == Object::State && is_sealed(&stored.bytes) {
            let what = self.inner.describe(object);
            stored.bytes = match &self.sealer {
                Some(sealer) => sealer.open(&stored.bytes, Path::new(&what))?,
                None => return Err(unsealed_error(Path::new(&what), &stored.bytes)),
            };
        }
        Ok(Some(stored))
    }

    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        match (&self.sealer, object) {
            (Some(sealer), Object::State) => {
                let what = self.inner.describe(object);
                let sealed = sealer.seal(bytes, Path::new(&what))?;
                self.inner.put(object, &sealed, expect)
            }
            _ => self.inner.put(object, bytes, expect),
        }
    }

    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        self.inner.delete(object, version)
    }

    fn describe(&self, object: Object) -> String {
        self.inner.describe(object)
    }

    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval()
    }

    fn lease_expired(&self, version: &Version, ttl: Duration) -> Result<Option<bool>, StateError> {
        self.inner.lease_expired(version, ttl)
    }
}

#[cfg(test)]
mod tests {
    use flyteinfra_core::Sensitive;

    use super::*;
    use crate::crypt::KeySource;
    use crate::manager::StateManager;
    use crate::memory::MemoryBackend;

    fn sealer(passphrase: &str) -> Sealer {
        Sealer::new(KeySource::Passphrase {
            env: "STATE_PW".into(),
            passphrase: Sensitive::new(passphrase.into()),
        })
        .unwrap()
    }

    fn sealed_store(mem: &MemoryBackend, key: Option<Sealer>) -> Arc<dyn Backend> {
        Arc::new(Sealing::new(Arc::new(mem.clone()), key))
    }

    #[test]
    fn the_store_holds_only_sealed_bytes_and_the_key_holder_reads_them() {
        let mem = MemoryBackend::new();
        let key = sealer("correct horse");
        let mut mgr = StateManager::shared(sealed_store(&mem, Some(key.clone())));
        let mut doc = mgr.load("prod", "aws").unwrap();
        doc.outputs.insert(
            "db_password".into(),
            crate::Output {
                value: flyteinfra_core::Value::Str("hunter2-secret".into()),
                sensitive: true,
            },
        );
        mgr.persist(&mut doc).unwrap();
        let raw = mem.get(Object::State).unwrap().unwrap().bytes;
        assert!(is_sealed(&raw));
        let text = String::from_utf8_lossy(&raw);
        assert!(
            !text.contains("hunter2") && !text.contains("prod"),
            "{text}"
        );

        let mut again = StateManager::shared(sealed_store(&mem, Some(sealer("correct horse"))));
        assert_eq!(again.load("prod", "aws").unwrap(), doc);
        // Unchanged: nothing is written again, although each seal differs.
        let mut same = doc.clone();
        again.persist(&mut same).unwrap();
        assert_eq!(mem.writes(), 1);
    }

    #[test]
    fn a_wrong_or_missing_key_is_one_clear_error() {
        let mem = MemoryBackend::new();
        let mut mgr = StateManager::shared(sealed_store(&mem, Some(sealer("right"))));
        let mut doc = mgr.load("prod", "aws").unwrap();
        mgr.persist(&mut doc).unwrap();

        let wrong = StateManager::shared(sealed_store(&mem, Some(sealer("not-the-key"))))
            .load("prod", "aws")
            .unwrap_err();
        assert!(matches!(wrong, StateError::Sealed { .. }), "{wrong:?}");
        let text = wrong.to_string();
        assert!(
            text.contains("STATE_PW")
                && text.contains("wrong passphrase")
                && !text.contains("not-the-key"),
            "{text}"
        );

        let missing = StateManager::shared(sealed_store(&mem, None))
            .load("prod", "aws")
            .unwrap_err();
        assert!(
            missing.to_string().contains("set `state.encryption`"),
            "{missing}"
        );
        assert_eq!(mem.writes(), 1, "a refused read writes nothing");
    }

    #[test]
    fn turning_encryption_on_reads_the_plain_state_and_seals_the_next_write() {
        let mem = MemoryBackend::new();
        let mut plain = StateManager::shared(sealed_store(&mem, None));
        let mut doc = plain.load("prod", "aws").unwrap();
        plain.persist(&mut doc).unwrap();
        assert!(!is_sealed(&mem.get(Object::State).unwrap().unwrap().bytes));

        let mut mgr = StateManager::shared(sealed_store(&mem, Some(sealer("k"))));
        let mut doc = mgr.load("prod", "aws").unwrap();
        doc.outputs.insert(
            "x".into(),
            crate::Output {
                value: flyteinfra_core::Value::Str("y".into()),
                sensitive: false,
            },
        );
        mgr.persist(&mut doc).unwrap();
        assert!(is_sealed(&mem.get(Object::State).unwrap().unwrap().bytes));
    }

    #[test]
    fn the_lease_record_stays_readable() {
        let mem = MemoryBackend::new();
        let store = sealed_store(&mem, Some(sealer("k")));
        store
            .put(Object::Lease, b"{\"id\":\"a\"}", &Precondition::Absent)
            .unwrap();
        assert_eq!(
            mem.get(Object::Lease).unwrap().unwrap().bytes,
            b"{\"id\":\"a\"}"
        );
    }
}

//! The storage interface every state backend implements: two objects, versions, and
//! conditional writes.

use std::time::Duration;

use crate::error::StateError;

/// The two objects a backend keeps for one deployment on one cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Object {
    /// The state document.
    State,
    /// The lease record of the current writer (see [`Lease`](crate::Lease)).
    Lease,
}

/// An opaque version of an object as its backend reports it: an S3 ETag, a GCS
/// generation, a digest of a local file's bytes. Only compared for equality.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    /// A version with the backend's own text.
    pub fn new(v: impl Into<String>) -> Self {
        Version(v.into())
    }

    /// The backend's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a conditional write expects to find in place of the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The object must not exist (create-only).
    Absent,
    /// The object must exist at exactly this version.
    At(Version),
}

/// An object's bytes and the version they were read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// Their version: pass it back to [`Backend::put`] to write over exactly these bytes.
    pub version: Version,
}

/// Checks that `cloud` can name state objects (files, keys, rows): 1–64 lowercase
/// letters, digits, `_` and `-`.
///
/// # Errors
/// [`StateError::InvalidCloud`] otherwise.
pub(crate) fn check_cloud(cloud: &str) -> Result<(), StateError> {
    let valid = !cloud.is_empty()
        && cloud.len() <= 64
        && cloud
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(StateError::InvalidCloud {
            cloud: cloud.to_string(),
        })
    }
}

/// Whether `host` (`localhost`, `127.0.0.1`, `[::1]`, as a URL or connection string holds
/// it) is this machine: where the backends accept an emulator without credentials.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The name of `object` in a store that keeps names (a key, an object or blob name):
/// `<prefix>/<cloud>.state.json` for the state, the same with `.lock` for the lease,
/// without a leading `/` when the prefix is empty. Every remote backend uses these names.
pub fn object_key(prefix: &str, cloud: &str, object: Object) -> String {
    let name = match object {
        Object::State => format!("{cloud}.state.json"),
        Object::Lease => format!("{cloud}.state.json.lock"),
    };
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// Where a deployment's state and lease live.
///
/// A backend stores two opaque blobs ([`Object`]) and writes them only on a
/// precondition: it knows nothing of serials, lineages or leases, which
/// [`StateManager`](crate::StateManager) and [`Lease`](crate::Lease) build once on top
/// of it for every backend.
///
/// # Guarantees an implementer must keep
/// - [`put`](Backend::put) and [`delete`](Backend::delete) are atomic compare-and-swap
///   operations: when two writers race on the same precondition, exactly one succeeds
///   and the other gets [`StateError::Moved`]. A concurrent [`get`](Backend::get) sees
///   the old bytes or the new ones, never a mix, even if the writer dies.
/// - Every successful `put` returns a version different from every version the object
///   had before, as long as the bytes differ (callers never write the same bytes twice
///   on purpose: the state's serial and the lease's renewal count change each time).
/// - A failed precondition is [`StateError::Moved`] and nothing else; any other failure
///   leaves the object as it was.
/// - Nothing here prints; nothing here blocks forever (remote calls have timeouts).
///
/// The shared behaviour is checked by the `conformance` module, run against
/// every backend.
pub trait Backend: Send + Sync {
    /// The object's bytes and version, or `None` if it does not exist.
    ///
    /// # Errors
    /// [`StateError::Read`] when the storage cannot be read.
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError>;

    /// Writes `bytes` if the object is as `expect` says, and returns the new version.
    ///
    /// # Errors
    /// [`StateError::Moved`] when the precondition does not hold (the object exists,
    /// is missing, or has another version); [`StateError::Write`] otherwise, with the
    /// object unchanged.
    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError>;

    /// Deletes the object if it is at `version`.
    ///
    /// # Errors
    /// [`StateError::Moved`] when the object is missing or has another version;
    /// [`StateError::Write`] otherwise.
    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError>;

    /// Where `object` is stored, for messages: a path, `s3://bucket/key`.
    fn describe(&self, object: Object) -> String;

    /// How often a command waiting for a lease looks at it again.
    fn poll_interval(&self) -> Duration {
        Duration::from_millis(100)
    }

    /// For a backend with one clock every client trusts (a database server's `now()`):
    /// whether the lease record at `version` has gone unrenewed for `ttl` by that clock.
    /// `None`, the default: there is no such clock, and a waiter times the record itself
    /// (it takes over only after seeing the same version for a full TTL).
    ///
    /// # Errors
    /// [`StateError::Read`] when the backend cannot be asked.
    fn lease_expired(&self, version: &Version, ttl: Duration) -> Result<Option<bool>, StateError> {
        let _ = (version, ttl);
        Ok(None)
    }
}

impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        (**self).get(object)
    }
    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        (**self).put(object, bytes, expect)
    }
    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        (**self).delete(object, version)
    }
    fn describe(&self, object: Object) -> String {
        (**self).describe(object)
    }
    fn poll_interval(&self) -> Duration {
        (**self).poll_interval()
    }
    fn lease_expired(&self, version: &Version, ttl: Duration) -> Result<Option<bool>, StateError> {
        (**self).lease_expired(version, ttl)
    }
}

#[cfg(test)]
#[test]
fn backends_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<crate::LocalBackend>();
    send_sync::<crate::MemoryBackend>();
    send_sync::<std::sync::Arc<dyn Backend>>();
}

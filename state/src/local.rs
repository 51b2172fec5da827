//! A state file on the local disk, with a backup and a lease record beside it.

use std::fs::{self, DirBuilder, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::backend::{Backend, Object, Precondition, Stored, Version};
use crate::error::StateError;
use crate::private::write_private;

/// A state file on the local disk.
///
/// Beside `<file>` it keeps `<file>.backup` (the previous version, rewritten on every
/// state [`put`](Backend::put)) and `<file>.lock` (the lease record, present while a
/// command holds the lease). All are written through [`write_private`]: mode 0600,
/// atomic, synced.
///
/// # Conditional writes
/// A version is the SHA-256 of the bytes. Every compare-and-write runs under an
/// exclusive `flock` of the state directory, held only for the read, compare and
/// rename, so two processes (or two handles in one) never both win. The flock is only as
/// good as the filesystem's: a network filesystem without it is not safe for two writers.
///
/// An empty `<file>.lock` (what earlier versions left behind) counts as no lease.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    path: PathBuf,
}

impl LocalBackend {
    /// A backend for the state file at `path`. Touches nothing on disk; the directory
    /// must exist by the time the state is written or locked.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalBackend { path: path.into() }
    }

    /// The backend for `cloud`'s state in `dir`: `<dir>/<cloud>.state.json`. Each cloud
    /// has its own state file. Touches nothing on disk: the first write creates `dir`
    /// (mode 0700) if it is missing, so reading a state that does not exist leaves no trace.
    ///
    /// # Errors
    /// [`StateError::InvalidCloud`] if `cloud` is not lowercase letters, digits, `_` and
    /// `-`.
    pub fn for_cloud(dir: &Path, cloud: &str) -> Result<Self, StateError> {
        crate::backend::check_cloud(cloud)?;
        Ok(Self::new(Self::file_for(dir, cloud)))
    }

    /// The state file of `cloud` in `dir` (nothing is created).
    pub fn file_for(dir: &Path, cloud: &str) -> std::path::PathBuf {
        dir.join(format!("{cloud}.state.json"))
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The previous version of the state file, kept by every state
    /// [`put`](Backend::put).
    pub fn backup_path(&self) -> PathBuf {
        self.sibling(".backup")
    }

    /// The lease record.
    pub fn lock_path(&self) -> PathBuf {
        self.sibling(".lock")
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(suffix);
        s.into()
    }

    fn object_path(&self, object: Object) -> PathBuf {
        match object {
            Object::State => self.path.clone(),
            Object::Lease => self.lock_path(),
        }
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// Runs `f` under the exclusive flock of the state directory (released on return),
    /// creating the directory (mode 0700) first if it is missing.
    fn exclusive<T>(
        &self,
        object: Object,
        f: impl FnOnce() -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let lock_err = |source| StateError::Lock {
            path: self.object_path(object),
            source,
        };
        let dir = self.dir();
        if !dir.is_dir() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StateError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let dir = File::open(dir).map_err(lock_err)?;
        dir.lock().map_err(lock_err)?;
        let out = f();
        let _ = dir.unlock();
        out
    }

    fn read(&self, object: Object) -> Result<Option<Stored>, StateError> {
        let path = self.object_path(object);
        match fs::read(&path) {
            // An empty lease file is what earlier versions left: no lease.
            Ok(bytes) if object == Object::Lease && bytes.is_empty() => Ok(None),
            Ok(bytes) => Ok(Some(Stored {
                version: version_of(&bytes),
                bytes,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    fn check(&self, object: Object, expect: &Precondition) -> Result<Option<Stored>, StateError> {
        let current = self.read(object)?;
        let holds = match (expect, &current) {
            (Precondition::Absent, None) => true,
            (Precondition::At(v), Some(s)) => s.version == *v,
            _ => false,
        };
        if holds {
            Ok(current)
        } else {
            Err(StateError::Moved {
                path: self.object_path(object),
            })
        }
    }
}

/// A local version: the SHA-256 of the bytes, in hex.
fn version_of(bytes: &[u8]) -> Version {
    let digest = Sha256::digest(bytes);
    Version::new(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

impl Backend for LocalBackend {
    fn get(&self, object: Object) -> Result<Option<Stored>, StateError> {
        self.read(object)
    }

    /// For the state, first copies the current file to `<file>.backup`; both writes go
    /// through [`write_private`] (temp file, fsync, rename, fsync of the directory). A
    /// crash at any point leaves a complete file: the old one or the new one.
    fn put(
        &self,
        object: Object,
        bytes: &[u8],
        expect: &Precondition,
    ) -> Result<Version, StateError> {
        let path = self.object_path(object);
        self.exclusive(object, || {
            let current = self.check(object, expect)?;
            if let (Object::State, Some(old)) = (object, current) {
                let backup = self.backup_path();
                write_private(&backup, &old.bytes).map_err(|source| StateError::Write {
                    path: backup.clone(),
                    source,
                })?;
            }
            write_private(&path, bytes).map_err(|source| StateError::Write {
                path: path.clone(),
                source,
            })?;
            Ok(version_of(bytes))
        })
    }

    fn delete(&self, object: Object, version: &Version) -> Result<(), StateError> {
        let path = self.object_path(object);
        self.exclusive(object, || {
            self.check(object, &Precondition::At(version.clone()))?;
            let write_err = |source| StateError::Write {
                path: path.clone(),
                source,
            };
            fs::remove_file(&path).map_err(write_err)?;
            File::open(self.dir())
                .and_then(|d| d.sync_all())
                .map_err(write_err)
        })
    }

    fn describe(&self, object: Object) -> String {
        self.object_path(object).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::{Lease, LockInfo, StateDoc, StateManager, encode};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn conformance() {
        crate::conformance::run_all(&|| -> crate::conformance::Handles {
            let dir = tempfile::tempdir().unwrap().keep();
            let path = LocalBackend::for_cloud(&dir, "aws")
                .unwrap()
                .path()
                .to_path_buf();
            Box::new(move || Arc::new(LocalBackend::new(path.clone())))
        });
    }

    #[test]
    fn for_cloud_names_the_file_and_the_first_write_creates_a_private_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("a/b");
        let b = LocalBackend::for_cloud(&state_dir, "gcp").unwrap();
        assert!(b.get(Object::State).unwrap().is_none());
        assert!(!state_dir.exists(), "reading creates nothing");
        b.put(Object::State, b"{}", &Precondition::Absent).unwrap();
        assert_eq!(b.path(), state_dir.join("gcp.state.json"));
        assert_eq!(b.backup_path(), state_dir.join("gcp.state.json.backup"));
        assert_eq!(b.lock_path(), state_dir.join("gcp.state.json.lock"));
        assert_eq!(
            b.describe(Object::State),
            state_dir.join("gcp.state.json").display().to_string()
        );
        assert_eq!(mode(&state_dir), 0o700);
        // An existing directory is fine.
        LocalBackend::for_cloud(&state_dir, "aws").unwrap();
        for bad in ["", "AWS", "../x", "a/b", "a.b"] {
            let e = LocalBackend::for_cloud(&state_dir, bad).unwrap_err();
            assert!(matches!(e, StateError::InvalidCloud { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn files_are_private_and_backup_keeps_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::for_cloud(dir.path(), "aws").unwrap();
        // A state file left world-readable by something else becomes private on put.
        fs::write(b.path(), b"v0").unwrap();
        fs::set_permissions(b.path(), Permissions::from_mode(0o644)).unwrap();

        let v0 = b.get(Object::State).unwrap().unwrap().version;
        let v1 = b.put(Object::State, b"v1", &Precondition::At(v0)).unwrap();
        b.put(Object::State, b"v2", &Precondition::At(v1)).unwrap();
        assert_eq!(fs::read(b.path()).unwrap(), b"v2");
        assert_eq!(fs::read(b.backup_path()).unwrap(), b"v1");
        let _lease = Lease::acquire(
            Arc::new(b.clone()),
            LockInfo::new("t"),
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .unwrap();
        for p in [b.path().to_path_buf(), b.backup_path(), b.lock_path()] {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        let expected: BTreeSet<String> = [
            "aws.state.json",
            "aws.state.json.backup",
            "aws.state.json.lock",
        ]
        .map(String::from)
        .into();
        assert_eq!(names(dir.path()), expected, "no temp files are left");
    }

    #[test]
    fn first_put_makes_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("s.json"));
        b.put(Object::State, b"x", &Precondition::Absent).unwrap();
        assert!(!b.backup_path().exists());
        assert_eq!(names(dir.path()), BTreeSet::from(["s.json".to_string()]));
    }

    #[test]
    fn failed_put_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The directory cannot be made: a file is in its way.
        fs::write(dir.path().join("afile"), b"").unwrap();
        let b = LocalBackend::new(dir.path().join("afile/s.json"));
        let e = b
            .put(Object::State, b"x", &Precondition::Absent)
            .unwrap_err();
        assert!(matches!(e, StateError::CreateDir { .. }), "{e:?}");
        assert!(e.to_string().contains("afile`"), "{e}");
        fs::remove_file(dir.path().join("afile")).unwrap();

        // The state path is a directory: the rename fails and the temp file is removed.
        let b = LocalBackend::new(dir.path().join("d"));
        fs::create_dir(b.path()).unwrap();
        fs::create_dir(b.path().join("x")).unwrap();
        assert!(matches!(b.get(Object::State), Err(StateError::Read { .. })));
        assert!(b.put(Object::State, b"x", &Precondition::Absent).is_err());
        assert_eq!(names(dir.path()), BTreeSet::from(["d".to_string()]));
    }

    #[test]
    fn an_empty_lock_file_from_earlier_versions_is_no_lease() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::for_cloud(dir.path(), "aws").unwrap();
        fs::write(b.lock_path(), b"").unwrap();
        assert!(b.get(Object::Lease).unwrap().is_none());
        let lease = Lease::acquire(
            Arc::new(b.clone()),
            LockInfo::new("flyteinfra apply"),
            Duration::from_secs(5),
            Duration::ZERO,
        )
        .unwrap();
        let record: crate::LeaseRecord =
            serde_json::from_slice(&fs::read(b.lock_path()).unwrap()).unwrap();
        assert_eq!(&record.holder, lease.info());
        assert_eq!(record.ttl_ms, 5000);
        drop(lease);
        assert!(!b.lock_path().exists(), "release deletes the record");
    }

    #[test]
    fn newer_format_file_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::for_cloud(dir.path(), "aws").unwrap();
        let mut doc = StateDoc::new("prod", "aws");
        doc.format_version = 7;
        let bytes = encode(&doc);
        fs::write(b.path(), &bytes).unwrap();

        let mut mgr = StateManager::new(b.clone());
        let _lease = mgr
            .lock(
                LockInfo::new("flyteinfra apply"),
                Duration::from_secs(5),
                Duration::ZERO,
            )
            .unwrap();
        let e = mgr.load("prod", "aws").unwrap_err();
        assert!(
            matches!(e, StateError::NewerFormat { found: 7, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string().contains(&b.path().display().to_string()),
            "{e}"
        );
        assert_eq!(fs::read(b.path()).unwrap(), bytes);
        assert!(!b.backup_path().exists());
    }

    #[test]
    fn decode_errors_name_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::for_cloud(dir.path(), "aws").unwrap();
        fs::write(b.path(), b"").unwrap();
        let e = StateManager::new(b.clone())
            .load("prod", "aws")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "`{}` is empty: expected a flyteinfra state document",
                b.path().display()
            )
        );
    }
}

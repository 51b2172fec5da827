//! A state file on the local disk, with a backup and an OS lock beside it.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::StateError;
use crate::lock::{LockGuard, LockInfo};
use crate::private::write_private;

/// How often a waiting [`LocalBackend::lock`] retries.
const POLL: Duration = Duration::from_millis(100);

/// A state file on the local disk.
///
/// Beside `<file>` it keeps `<file>.backup` (the previous version, rewritten on every
/// [`put`](Backend::put)) and `<file>.lock` (the lock file, never deleted). All three are
/// created with mode 0600, whatever the umask.
///
/// # Locking
/// [`lock`](Backend::lock) takes an exclusive `flock` on `<file>.lock` through
/// [`File::try_lock`], so the kernel releases it if the holder dies, and writes the
/// [`LockInfo`] into the file for waiting processes to report. The lock file is never
/// deleted: deleting it would race with a process that has just opened it. Separate
/// handles conflict even within one process, but a lock on a network filesystem is only
/// as good as that filesystem's `flock`.
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
    /// has its own state file. Creates `dir` (mode 0700) if it is missing.
    ///
    /// # Errors
    /// [`StateError::InvalidCloud`] if `cloud` is not lowercase letters, digits, `_` and
    /// `-`; [`StateError::CreateDir`] if the directory cannot be created.
    pub fn for_cloud(dir: &Path, cloud: &str) -> Result<Self, StateError> {
        let valid = !cloud.is_empty()
            && cloud.len() <= 64
            && cloud
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            return Err(StateError::InvalidCloud {
                cloud: cloud.to_string(),
            });
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StateError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
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

    /// The previous version of the state file, kept by every [`put`](Backend::put).
    pub fn backup_path(&self) -> PathBuf {
        self.sibling(".backup")
    }

    /// The lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.sibling(".lock")
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(suffix);
        s.into()
    }

    /// Copies the current state file to `<file>.backup`, if there is one.
    fn write_backup(&self) -> Result<(), StateError> {
        let current = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let backup = self.backup_path();
        write_private(&backup, &current).map_err(|source| StateError::Write {
            path: backup.clone(),
            source,
        })
    }
}

impl Backend for LocalBackend {
    fn get(&self) -> Result<Option<Vec<u8>>, StateError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Copies the current file to `<file>.backup`, then replaces the state file; both
    /// through [`write_private`] (temp file, fsync, rename, fsync of the directory). A crash
    /// at any point leaves a complete state file: the old one or the new one.
    fn put(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.write_backup()?;
        write_private(&self.path, bytes).map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn lock(&self, info: LockInfo, timeout: Duration) -> Result<LockGuard, StateError> {
        let lock_path = self.lock_path();
        let lock_err = |source| StateError::Lock {
            path: lock_path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(lock_err)?;
        let start = Instant::now();
        let mut holder = None;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    // The holder may be between taking the lock and writing its record.
                    if let Some(h) = read_holder(&lock_path) {
                        holder = Some(h);
                    }
                    let elapsed = start.elapsed();
                    if elapsed >= timeout {
                        return Err(StateError::Locked {
                            path: self.path.clone(),
                            holder: Box::new(holder.unwrap_or_else(LockInfo::unknown)),
                            waited: timeout,
                        });
                    }
                    std::thread::sleep(POLL.min(timeout - elapsed));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
            }
        }
        let mut record = serde_json::to_vec_pretty(&info).expect("a lock record always encodes");
        record.push(b'\n');
        file.set_len(0)
            .and_then(|()| file.write_all_at(&record, 0))
            .and_then(|()| file.sync_all())
            .map_err(lock_err)?; // dropping `file` releases the lock
        Ok(LockGuard::new(info, move || {
            // Clear the record while still holding the lock, then release it.
            let _ = file.set_len(0);
            let _ = file.unlock();
        }))
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

fn read_holder(lock_path: &Path) -> Option<LockInfo> {
    let bytes = fs::read(lock_path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs::Permissions;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{StateDoc, StateManager, encode};

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
        let dir = tempfile::tempdir().unwrap();
        crate::backend::conformance(&LocalBackend::for_cloud(dir.path(), "aws").unwrap());
    }

    #[test]
    fn for_cloud_names_the_file_and_creates_a_private_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("a/b");
        let b = LocalBackend::for_cloud(&state_dir, "gcp").unwrap();
        assert_eq!(b.path(), state_dir.join("gcp.state.json"));
        assert_eq!(b.backup_path(), state_dir.join("gcp.state.json.backup"));
        assert_eq!(b.lock_path(), state_dir.join("gcp.state.json.lock"));
        assert_eq!(
            b.describe(),
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

        b.put(b"v1").unwrap();
        b.put(b"v2").unwrap();
        assert_eq!(fs::read(b.path()).unwrap(), b"v2");
        assert_eq!(fs::read(b.backup_path()).unwrap(), b"v1");
        let _guard = b.lock(LockInfo::new("t"), Duration::ZERO).unwrap();
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
        b.put(b"x").unwrap();
        assert!(!b.backup_path().exists());
        assert_eq!(names(dir.path()), BTreeSet::from(["s.json".to_string()]));
    }

    #[test]
    fn failed_put_names_the_file_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().join("missing/s.json"));
        let e = b.put(b"x").unwrap_err();
        assert!(matches!(e, StateError::Write { .. }), "{e:?}");
        assert!(e.to_string().contains("missing/s.json`"), "{e}");
        assert!(names(dir.path()).is_empty());

        // The state path is a directory: the rename fails and the temp file is removed.
        let b = LocalBackend::new(dir.path().join("d"));
        fs::create_dir(b.path()).unwrap();
        fs::create_dir(b.path().join("x")).unwrap();
        assert!(matches!(b.get(), Err(StateError::Read { .. })));
        assert!(b.put(b"x").is_err());
        assert_eq!(names(dir.path()), BTreeSet::from(["d".to_string()]));
    }

    #[test]
    fn lock_contention_with_another_handle() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::for_cloud(dir.path(), "aws").unwrap();
        let other = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(b.lock_path())
            .unwrap();
        other.try_lock().unwrap();
        let holder = LockInfo {
            id: "i".into(),
            pid: 4242,
            host: "h".into(),
            command: "flyteinfra apply".into(),
            since: "2026-11-26T13:00:00Z".into(),
        };
        other
            .write_all_at(&serde_json::to_vec(&holder).unwrap(), 0)
            .unwrap();

        let e = b
            .lock(LockInfo::new("flyteinfra plan"), Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "state `{}` is locked by pid 4242 on host h (`flyteinfra apply`) since 2026-11-26T13:00:00Z; waited 2s (use `--lock-timeout` to wait longer)",
                b.path().display()
            )
        );
        assert!(matches!(&e, StateError::Locked { holder: h, .. } if **h == holder));

        // An unreadable record still reports the lock.
        other.set_len(0).unwrap();
        other.write_all_at(b"{garbage", 0).unwrap();
        let e = b.lock(LockInfo::new("x"), Duration::ZERO).unwrap_err();
        assert!(
            e.to_string().contains(
                "is locked by another process (its lock record is unreadable); waited 0ms"
            ),
            "{e}"
        );

        other.unlock().unwrap();
        let info = LockInfo::new("flyteinfra apply");
        let guard = b.lock(info.clone(), Duration::ZERO).unwrap();
        assert_eq!(read_holder(&b.lock_path()), Some(info));
        assert!(matches!(
            other.try_lock(),
            Err(fs::TryLockError::WouldBlock)
        ));
        drop(guard);
        assert!(b.lock_path().exists(), "the lock file is never deleted");
        assert_eq!(fs::read(b.lock_path()).unwrap(), b"");
        other.try_lock().unwrap();
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
        let _guard = mgr
            .lock(LockInfo::new("flyteinfra apply"), Duration::ZERO)
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

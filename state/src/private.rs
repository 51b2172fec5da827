//! The one way flyteinfra writes a file that may hold a secret (state, its backup, plan
//! files, Helm values, the password Secret, the simulated cloud).

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `bytes` to `path` atomically, with mode 0600 whatever the umask or the old file's
/// mode.
///
/// The bytes go to a new temp file in the target's directory: created exclusively
/// (`O_CREAT|O_EXCL`, so a symlink or file planted at its name is never followed or
/// reused) under an unpredictable name, then written, synced and renamed over `path`; the
/// directory is synced so the rename survives a crash. A crash at any point leaves either
/// the old file or the new one, never a partial one, and the temp file is removed on error.
///
/// # Errors
/// Any I/O error; `path` is then unchanged.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    // The umask can only have removed bits; make it exactly 0600.
    tmp.as_file()
        .set_permissions(Permissions::from_mode(0o600))?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::symlink;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_atomically_and_privately_over_an_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("values.yaml");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();

        write_private(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600, "an existing 0644 target ends 0600");
        write_private(&path, b"newer").unwrap();
        let names: BTreeSet<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file is left: {names:?}");
    }

    #[test]
    fn never_writes_through_a_symlink_at_a_predictable_temp_name() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let path = dir.path().join("state.json");
        let planted = [
            dir.path().join("state.json.tmp"),
            dir.path().join(".state.json.tmp"),
            dir.path()
                .join(format!(".state.json.tmp{}", std::process::id())),
            dir.path().join("state.tmp"),
        ];
        for p in &planted {
            symlink(&victim, p).unwrap();
        }

        write_private(&path, b"secret").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"secret");
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        for p in &planted {
            assert!(
                fs::symlink_metadata(p).unwrap().is_symlink(),
                "{}",
                p.display()
            );
        }
    }

    #[test]
    fn a_missing_directory_is_an_error_that_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_private(&dir.path().join("missing/x"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}

//! File-system steps whose durability is easy to get wrong, in one place.
//!
//! A file's contents are durable after `fdatasync` of the file; its *name* (a new file, a
//! rename) only after `fsync` of the directory that holds it — and a new directory's name
//! after `fsync` of its parent. Everything a node acknowledges passes through these steps
//! before the acknowledgement leaves. Directories are created 0700 and files 0600: stores hold
//! TLP:AMBER and TLP:RED advisories.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::StoreError;

/// An I/O error on `path`.
pub fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io { path: path.to_owned(), source }
}

/// `fsync` of a directory: the names in it (new files, renames, removals) become durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

/// Creates `dir` and any missing parents, mode 0700, each new name made durable in its
/// parent. An existing directory is left as it is.
pub fn create_private_dir_all(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dir_all(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => return Ok(()),
        Err(e) => return Err(io_error(dir, e)),
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    sync_dir(parent)
}

/// Makes `dir` 0700 (it may predate this rule).
pub fn make_private(dir: &Path) -> Result<(), StoreError> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| io_error(dir, e))
}

/// Writes each `(name, contents)` into `dir` (mode 0600) so that a reader never sees half a
/// file and all of them are durable when this returns: every temporary file is written
/// first, then each is `fdatasync`ed (the writes reach the disk together, one journal commit
/// serves many files), renamed into place, and the directory is `fsync`ed once.
pub fn write_files_durably<'a>(
    dir: &Path,
    files: impl IntoIterator<Item = (String, &'a [u8])>,
) -> Result<(), StoreError> {
    let mut written = Vec::new();
    for (name, contents) in files {
        let temporary = dir.join(format!("{name}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| io_error(&temporary, e))?;
        file.write_all(contents).map_err(|e| io_error(&temporary, e))?;
        written.push((file, temporary, dir.join(name)));
    }
    if written.is_empty() {
        return Ok(());
    }
    for (file, temporary, _) in &written {
        file.sync_data().map_err(|e| io_error(temporary, e))?;
    }
    for (_, temporary, path) in &written {
        std::fs::rename(temporary, path).map_err(|e| io_error(path, e))?;
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn directories_are_private_and_files_are_written_whole_and_private() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("a/b");
        create_private_dir_all(&dir).expect("create");
        create_private_dir_all(&dir).expect("exists already");
        for path in [base.path().join("a"), dir.clone()] {
            assert_eq!(std::fs::metadata(&path).expect("meta").mode() & 0o777, 0o700, "{}", path.display());
        }
        write_files_durably(&dir, [("x.json".to_owned(), &b"{}"[..]), ("y.json".to_owned(), &b"[]"[..])])
            .expect("write");
        assert_eq!(std::fs::read(dir.join("y.json")).expect("read"), b"[]");
        assert_eq!(std::fs::metadata(dir.join("x.json")).expect("meta").mode() & 0o777, 0o600);
        let names: Vec<_> =
            std::fs::read_dir(&dir).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
    }
}

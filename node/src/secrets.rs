//! Files that hold secrets — key files, members files, password files — read only when no one
//! but their owner can read them, and written that way (mode 0600, written to a temporary
//! file, synced, renamed).

use std::fs;
use std::io::Write;
use std::path::Path;

/// Reads a secret file, refusing one that group or others can read. The error names the file
/// and the fix.
pub fn read_private(path: &Path, what: &str) -> Result<String, String> {
    let metadata = fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{what} {} is readable by group or others (mode {mode:04o}); run: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    let _ = metadata;
    fs::read_to_string(path).map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// Writes a secret file: mode 0600, through a temporary file that is synced and renamed, so a
/// reader never sees half of it and a power cut leaves the old or the new one.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp-write");
    let _ = fs::remove_file(&temporary);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_readable_by_others_is_refused_and_written_ones_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("members.toml");
        write_private(&path, b"x").expect("write");
        assert_eq!(read_private(&path, "members file").expect("read"), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
            let error = read_private(&path, "members file").expect_err("refused");
            assert!(error.contains("chmod 600"), "{error}");
        }
    }
}

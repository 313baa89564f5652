//! Bytes on disk under a directory: what `kairan_store_disk_bytes` reports.
//!
//! Counts allocated blocks (`st_blocks × 512`), not file lengths: sled preallocates and
//! leaves holes, and what an operator runs out of is blocks. Symbolic links are not followed;
//! the walk stops after [`MAX_ENTRIES`] entries so a scrape stays cheap whatever is there.

use std::path::Path;

/// Directory entries visited at most per walk.
pub const MAX_ENTRIES: usize = 200_000;

/// Allocated bytes of the files under `dir` (0 if it cannot be read).
pub fn usage(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut visited = 0usize;
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            visited += 1;
            if visited > MAX_ENTRIES {
                return total;
            }
            let Ok(metadata) = entry.metadata() else { continue };
            if metadata.is_dir() {
                pending.push(entry.path());
            } else if metadata.is_file() {
                total = total.saturating_add(allocated(&metadata));
            }
        }
    }
    total
}

#[cfg(unix)]
fn allocated(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::blocks(metadata).saturating_mul(512)
}

#[cfg(not(unix))]
fn allocated(metadata: &std::fs::Metadata) -> u64 {
    metadata.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_files_in_subdirectories() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(usage(dir.path()), 0);
        std::fs::create_dir_all(dir.path().join("a/b"))?;
        std::fs::write(dir.path().join("top"), vec![1u8; 10_000])?;
        std::fs::write(dir.path().join("a/b/deep"), vec![2u8; 10_000])?;
        let used = usage(dir.path());
        // Two files of 10,000 bytes take at least that many bytes of blocks each.
        assert!(used >= 20_000, "{used}");
        assert_eq!(usage(&dir.path().join("missing")), 0);
        Ok(())
    }
}

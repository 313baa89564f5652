//! What is on disk: every file under a directory holding some text, as is or inside a base64
//! run (an envelope's payload is base64 in its JSON) — to show a sealed advisory's plaintext
//! is stored nowhere.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Every file under `dir` whose bytes contain `needle`, as is or inside a base64 run.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir") {
                pending.push(entry.expect("entry").path());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if contains(&bytes, needle.as_bytes()) || in_base64(&bytes, needle.as_bytes()) {
                hits.push(path);
            }
        }
    }
    hits
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

fn in_base64(bytes: &[u8], needle: &[u8]) -> bool {
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    bytes.split(|b| !is_b64(b)).filter(|run| run.len() >= 16).any(|run| {
        let trimmed: Vec<u8> = run.iter().copied().filter(|b| *b != b'=').collect();
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&trimmed)
            .is_ok_and(|decoded| contains(&decoded, needle))
    })
}

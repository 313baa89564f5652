//! The layering rules, checked on the source: the state machine and the protocol crate do no
//! I/O and read no clock; the daemon's loops hold no decision (they call the machine); no file
//! outside tests grows past 800 lines.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file without its unit tests (everything from `#[cfg(test)]` on) and without
/// comment lines.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body = text.split("#[cfg(test)]").next().unwrap_or_default();
    body.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What neither the machine nor the protocol may touch: a clock, a runtime, a database, a
/// network, a file system, the MQTT client, the daemon's own I/O modules.
const FORBIDDEN: &[&str] = &[
    "SystemTime",
    "Instant::now",
    "std::time::Instant",
    "tokio",
    "sled",
    "rumqtt",
    "std::fs",
    "std::net",
    "std::thread",
    "crate::clock",
    "crate::mqtt",
    "crate::relay",
    "crate::clinic",
    "SledStore",
    "DiskStore",
];

#[test]
fn the_state_machine_does_no_io_and_reads_no_clock() {
    let mut found = Vec::new();
    let files = sources(&root().join("node/src/machine"));
    assert!(files.len() >= 10, "the machine's files were found");
    for file in files.iter().filter(|f| !f.ends_with("tests.rs")) {
        let code = code(file);
        for word in FORBIDDEN {
            if code.contains(word) {
                found.push(format!("{}: {word}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "I/O, clock or runtime inside the state machine:\n{}", found.join("\n"));
}

#[test]
fn the_protocol_crate_does_no_io_and_reads_no_clock() {
    let mut found = Vec::new();
    for file in sources(&root().join("protocol/src")) {
        let code = code(&file);
        for word in ["SystemTime", "Instant::now", "std::fs", "std::net", "tokio", "std::thread"] {
            if code.contains(word) {
                found.push(format!("{}: {word}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "I/O or clock inside the protocol crate:\n{}", found.join("\n"));
}

#[test]
fn the_driver_decides_nothing() {
    // The driver performs actions and feeds results back; the protocol's verifiers and the
    // machine's parts are not called from it.
    let driver = code(&root().join("node/src/mqtt/driver.rs"));
    for word in
        ["verify_", "classify", "parse_response", "parse_request", "RateLimiter", "TrustState", "build_page"]
    {
        assert!(!driver.contains(word), "the driver calls {word}: a decision outside the machine");
    }
}

#[test]
fn no_source_file_outside_tests_is_over_800_lines() {
    let mut long = Vec::new();
    for dir in ["protocol/src", "node/src", "tests/src"] {
        for file in sources(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).expect("read");
            // Unit tests at the bottom of a file do not count.
            let lines = text.split("#[cfg(test)]").next().unwrap_or_default().lines().count();
            if lines > 800 {
                long.push(format!("{}: {lines} lines", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "files over 800 lines:\n{}", long.join("\n"));
}

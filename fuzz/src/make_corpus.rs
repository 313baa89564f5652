//! Writes the seed corpus of the `delivery_verify` fuzz target: valid fixture deliveries as
//! published (0 hops) and after 1, 2 and 3 relays, plus an `update` that is seq 2 of its
//! origin. Deterministic: the same files every run (Ed25519 signatures are deterministic).
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --bin make_corpus`

use std::path::{Path, PathBuf};

use kairan_protocol::advisory::Kind;
use kairan_protocol::fixtures::{Hierarchy, sample_advisory};
use kairan_protocol::keys::Digest;
use kairan_protocol::{RevocationSet, VerifyContext, verify_delivery};

fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/delivery_verify"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tree = Hierarchy::standard();
    let revocations = RevocationSet::default();
    let ctx = VerifyContext { anchors: &tree.anchors, revocations: &revocations, now: tree.later() };

    let first = sample_advisory("mhlw", 1, None);
    let mut seeds: Vec<(String, Vec<u8>)> = (0..=3)
        .map(|hops| (format!("seed-alert-{hops}hop.json"), tree.delivery(&first, hops).to_json()))
        .collect();

    let first_digest = Digest::of(&first.to_payload());
    let mut update = sample_advisory("mhlw", 2, Some(first_digest));
    update.kind = Kind::Update;
    update.references = vec![first_digest];
    seeds.push(("seed-update-seq2-3hop.json".into(), tree.delivery(&update, 3).to_json()));

    for (name, bytes) in seeds {
        // A seed that does not verify would only teach the fuzzer the first rejection.
        verify_delivery(&bytes, ctx).unwrap_or_else(|e| panic!("seed {name} does not verify: {e}"));
        let path = dir.join(&name);
        std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
}

//! Fuzz target: arbitrary bytes into the signed-note, checkpoint and verifier-key parsers,
//! `open_checkpoint` with the fixture log and witness keys, and the Merkle proof verifiers.
//! None may panic; a note or verifier key that parses re-encodes to exactly its bytes (the
//! parsers accept one spelling only); a checkpoint that opens is the fixture log's.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;

use kairan_protocol::fixtures::{self, FIXTURE_NOW};
use kairan_protocol::note::{Checkpoint, Note, NoteVerifier, open_checkpoint};
use kairan_protocol::tlog::{self, Hash};

static KEYS: LazyLock<(NoteVerifier, [NoteVerifier; 1])> =
    LazyLock::new(|| (fixtures::log_verifier(), [fixtures::witness_verifier()]));

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = Note::parse(data) {
        assert_eq!(note.to_bytes(), data, "a parsed note re-encodes to its bytes");
        if let Ok(checkpoint) = Checkpoint::parse(note.text()) {
            assert_eq!(checkpoint.to_text().ok().as_deref(), Some(note.text()));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(vkey) = NoteVerifier::parse(text) {
            assert_eq!(vkey.to_string(), text, "a parsed verifier key prints back the same");
        }
    }
    let (log, cosigners) = &*KEYS;
    if let Ok(opened) = open_checkpoint(data, log, cosigners, 0, FIXTURE_NOW) {
        assert_eq!(opened.facts().checkpoint.origin, log.name());
    }
    // Bytes as (index/old size, size, hashes...): the verifiers refuse or accept, never panic.
    if let Some((head, rest)) = data.split_first_chunk::<16>() {
        let first = u64::from_be_bytes(head[..8].try_into().unwrap_or_default());
        let second = u64::from_be_bytes(head[8..].try_into().unwrap_or_default());
        let hashes: Vec<Hash> =
            rest.chunks_exact(32).map(|c| Hash(c.try_into().unwrap_or_default())).collect();
        if let Some((leaf, proof)) = hashes.split_first() {
            let _ = tlog::verify_inclusion(leaf, first, second, proof, leaf);
            let _ = tlog::verify_consistency(first, second, leaf, leaf, proof);
            let _ = tlog::inclusion_plan(first, second);
            let _ = tlog::consistency_plan(first, second);
        }
    }
});

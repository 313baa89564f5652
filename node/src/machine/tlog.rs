//! Transparency logs: this node's own log, and the check of its parent's.
//!
//! **The log.** A node's output log *is* its transparency log (`docs/protocol.md` §18.12):
//! leaf `i` (0-based) is the exact stored delivery bytes at `relay_seq = i + 1`. Each accepted
//! record appends its leaf to the in-memory [`Frontier`] when it is decided, and the stored
//! hashes the append creates go into the same batch as the record ([`OwnLog::append`]).
//!
//! **Checkpoints only for durable entries.** When a commit starts, the tree head covering
//! every leaf in it is noted ([`OwnLog::commit_started`]); only when that commit is durable
//! is a checkpoint signed for it ([`OwnLog::committed`]). Leaves decided while the commit was
//! in flight belong to the next one. A relay signs with its relay key, under the origin
//! [`log_origin`] of its node id; Ed25519 is deterministic, so the same tree head always gives
//! the same note, after a restart too.
//!
//! **The parent's log.** A child asks for the parent's latest checkpoint and a consistency
//! proof from the size it last verified with every catch-up request; [`ParentLog::check`]
//! opens the checkpoint with the parent's relay key (from the page's verified certificate) and
//! checks it extends the one held. Two checkpoints of one size with different roots, or a
//! proof that fails, are a fork of the parent's log: the evidence is kept
//! ([`LogForkRecord`]) and the node goes on.
//!
//! **Inclusion.** Each delivery a child accepts from its parent is leaf `relay_seq - 1` of the
//! parent's log (the parent's hop names the `relay_seq`) and its leaf hash is that of the
//! delivery's bytes as the parent forwarded them. The child notes a bounded number of them
//! ([`ParentLog::note_leaf`]), asks for their inclusion proofs with its next requests, and
//! checks each against the checkpoint of the answer; a checkpoint that does not include a
//! delivery its signer forwarded is kept as evidence too.

use bytes::Bytes;

use kairan_protocol::note::{Checkpoint, Note, NoteVerifier, SignatureType, open_checkpoint};
use std::collections::BTreeMap;

use kairan_protocol::sync::{LogProof, MAX_INCLUSION_PROOFS};
use kairan_protocol::tlog::{Frontier, Hash, leaf_hash, verify_consistency, verify_inclusion};
use kairan_protocol::{PublicKey, SecretKey, Timestamp};

use crate::store::{LogForkRecord, StoredDelivery, WriteOp};

/// The domain under which kairan names its nodes' logs. A deployment-specific domain is an
/// open point (§18.12); until then every node's log is `kairan.example/<node id>`.
pub const LOG_DOMAIN: &str = "kairan.example";

/// The checkpoint origin (and note key name) of node `node`'s log.
pub fn log_origin(node: &str) -> String {
    format!("{LOG_DOMAIN}/{node}")
}

/// A checkpoint this node signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Tree size.
    pub size: u64,
    /// Tree head.
    pub root: Hash,
    /// The signed note.
    pub note: Bytes,
}

/// This node's log.
#[derive(Debug, Default)]
pub struct OwnLog {
    frontier: Frontier,
    /// Set once a record did not extend the log by exactly one leaf: the log stops growing
    /// (reported once as a store anomaly) rather than disagree with the output log.
    broken: bool,
    /// The tree head covering the commit in flight, if it holds leaves.
    committing: Option<(u64, Hash)>,
    latest: Option<Signed>,
}

impl OwnLog {
    /// The log restored from the store's stored hashes, with the last checkpoint stored.
    pub fn restore(frontier: Frontier, stored: Option<&[u8]>) -> Self {
        let latest = stored.and_then(|bytes| {
            // Our own store: parsed, not verified again.
            let note = Note::parse(bytes).ok()?;
            let checkpoint = Checkpoint::parse(note.text()).ok()?;
            Some(Signed { size: checkpoint.size, root: checkpoint.root, note: Bytes::copy_from_slice(bytes) })
        });
        Self { frontier, broken: false, committing: None, latest }
    }

    /// Leaves decided (durable or not).
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// Appends the leaf of `record` and returns the write of its stored hashes. `Err` (once)
    /// if the record does not come next in the log.
    pub fn append(&mut self, record: &StoredDelivery) -> Option<Result<WriteOp, String>> {
        if self.broken {
            return None;
        }
        let expected = self.frontier.size() + 1;
        if record.relay_seq != expected {
            self.broken = true;
            return Some(Err(format!(
                "relay_seq {} does not extend the transparency log of {} leaves; the log stops growing",
                record.relay_seq,
                self.frontier.size()
            )));
        }
        match self.frontier.append(leaf_hash(&record.delivery)) {
            Ok(created) => Some(Ok(WriteOp::TreeHashes(created))),
            Err(error) => {
                self.broken = true;
                Some(Err(error.to_string()))
            }
        }
    }

    /// A commit starts; `holds_leaves`: it holds accepted records (so every leaf appended so
    /// far, since a commit takes every decision made until it starts).
    pub fn commit_started(&mut self, holds_leaves: bool) {
        self.committing = holds_leaves.then(|| (self.frontier.size(), self.frontier.root()));
    }

    /// The commit in flight is durable: the checkpoint of its tree head, signed with `key` for
    /// node `node`, if it holds leaves and differs from the last one signed.
    pub fn committed(&mut self, node: &str, key: &SecretKey) -> Option<Result<Signed, String>> {
        let (size, root) = self.committing.take()?;
        self.sign(node, key, size, root)
    }

    /// Signs the checkpoint of every leaf held: at start, everything restored is durable.
    pub fn sign_restored(&mut self, node: &str, key: &SecretKey) -> Option<Result<Signed, String>> {
        let (size, root) = (self.frontier.size(), self.frontier.root());
        self.sign(node, key, size, root)
    }

    fn sign(&mut self, node: &str, key: &SecretKey, size: u64, root: Hash) -> Option<Result<Signed, String>> {
        if self.latest.as_ref().is_some_and(|l| l.size == size && l.root == root) {
            return None;
        }
        let note = match Checkpoint::new(log_origin(node), size, root).sign(key) {
            Ok(note) => note,
            Err(error) => return Some(Err(format!("cannot sign the checkpoint at size {size}: {error}"))),
        };
        let signed = Signed { size, root, note: Bytes::from(note.to_bytes()) };
        self.latest = Some(signed.clone());
        Some(Ok(signed))
    }

    /// The latest checkpoint signed.
    pub fn latest(&self) -> Option<&Signed> {
        self.latest.as_ref()
    }
}

/// What [`ParentLog::check`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LogCheck {
    /// A checkpoint that extends the one held (or the first one): keep it.
    Extended {
        /// Its size.
        size: u64,
        /// The note to store.
        note: String,
    },
    /// The checkpoint held again, or a proof from another size than the one held (an
    /// answer to an older request): nothing to do.
    Unchanged,
    /// A smaller checkpoint than the one held (replayed, or the parent lost data); said once
    /// per size shown, not on every page.
    Stale {
        /// The size held.
        held: u64,
        /// The size shown.
        shown: u64,
    },
    /// The checkpoint did not open with the parent's key, or the proof is malformed.
    Refused(String),
    /// Two checkpoints of the parent that no append-only log can both have signed.
    Fork(Box<LogForkRecord>),
}

/// Leaves of the parent's log waiting for their inclusion proof, at most (the oldest are
/// dropped: a sample is enough to catch a parent that signs a log without what it forwards).
pub const MAX_PENDING_LEAVES: usize = 256;

/// What the inclusion proofs of one answer showed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inclusions {
    /// Leaves proved included.
    pub verified: usize,
    /// Leaves the checkpoint does not include (with the evidence).
    pub failed: Vec<LogForkRecord>,
}

/// The newest verified checkpoint of the parent's log.
#[derive(Debug, Default)]
pub struct ParentLog {
    held: Option<(String, Checkpoint)>,
    /// Leaf index → leaf hash of deliveries accepted from the parent, not proved yet.
    pending: BTreeMap<u64, Hash>,
    /// The size of the last smaller checkpoint reported (a parent that lost data shows it on
    /// every page until it grows back).
    stale_reported: Option<u64>,
}

impl ParentLog {
    /// The checkpoint kept in the store, if any (parsed only: it was verified when kept).
    pub fn restore(stored: Option<&[u8]>) -> Self {
        let held = stored.and_then(|bytes| {
            let note = Note::parse(bytes).ok()?;
            let checkpoint = Checkpoint::parse(note.text()).ok()?;
            Some((String::from_utf8_lossy(bytes).into_owned(), checkpoint))
        });
        Self { held, pending: BTreeMap::new(), stale_reported: None }
    }

    /// Notes a delivery accepted from the parent: its bytes as the parent forwarded them,
    /// at `relay_seq` in the parent's log (from the parent's hop).
    pub fn note_leaf(&mut self, relay_seq: u64, delivery: &[u8]) {
        let Some(index) = relay_seq.checked_sub(1) else { return };
        self.pending.insert(index, leaf_hash(delivery));
        while self.pending.len() > MAX_PENDING_LEAVES {
            self.pending.pop_first();
        }
    }

    /// The leaves to ask inclusion proofs for in the next request (the oldest pending).
    pub fn to_prove(&self) -> Vec<u64> {
        self.pending.keys().take(MAX_INCLUSION_PROOFS).copied().collect()
    }

    /// Checks the inclusion proofs of an answer against its checkpoint `shown` (signed by the
    /// parent, opened already), for the leaves pending.
    fn inclusions(
        &mut self,
        parent: &str,
        shown: &Checkpoint,
        proof: &LogProof,
        statement: &Option<String>,
        now: Timestamp,
    ) -> Inclusions {
        let mut outcome = Inclusions::default();
        for inclusion in &proof.inclusion {
            let Some(leaf) = self.pending.get(&inclusion.index).copied() else { continue };
            if inclusion.index >= shown.size {
                continue;
            }
            self.pending.remove(&inclusion.index);
            let hashes = inclusion.hashes().unwrap_or_default();
            let checked = if hashes.len() == inclusion.proof.len() {
                verify_inclusion(&leaf, inclusion.index, shown.size, &hashes, &shown.root)
                    .map_err(|e| e.to_string())
            } else {
                Err("a hash of the proof is not 32 bytes of base64".to_owned())
            };
            match checked {
                Ok(()) => outcome.verified += 1,
                Err(error) => outcome.failed.push(LogForkRecord {
                    parent: parent.to_owned(),
                    held: proof.checkpoint.clone(),
                    shown: proof.checkpoint.clone(),
                    proof: inclusion.proof.clone(),
                    statement: statement.clone(),
                    reason: format!(
                        "the checkpoint of size {} does not include the delivery the parent forwarded at relay_seq {}: {error}",
                        shown.size,
                        inclusion.index + 1
                    ),
                    at: now,
                    leaf: Some(format!("{} {}", inclusion.index, leaf.to_base64())),
                }),
            }
        }
        outcome
    }

    /// The size verified so far (0 for none): what the next request asks a proof from.
    pub fn verified_size(&self) -> u64 {
        self.held.as_ref().map_or(0, |(_, checkpoint)| checkpoint.size)
    }

    /// Checks the checkpoint and proof of a page from `parent`, whose certified relay key is
    /// `key`, at `now`; `statement` is the page's signed statement (kept as evidence).
    pub fn check(
        &mut self,
        parent: &str,
        key: &PublicKey,
        proof: &LogProof,
        statement: Option<String>,
        now: Timestamp,
    ) -> (LogCheck, Inclusions) {
        let check = self.check_consistency(parent, key, proof, &statement, now);
        let shown = match &check {
            // Proofs of inclusion are checked against a checkpoint that opened and is not
            // itself evidence of a fork (nor older than one held).
            LogCheck::Extended { .. } | LogCheck::Unchanged => Note::parse(proof.checkpoint.as_bytes())
                .ok()
                .and_then(|note| Checkpoint::parse(note.text()).ok()),
            _ => None,
        };
        let inclusions = match shown {
            Some(shown) => self.inclusions(parent, &shown, proof, &statement, now),
            None => Inclusions::default(),
        };
        (check, inclusions)
    }

    fn check_consistency(
        &mut self,
        parent: &str,
        key: &PublicKey,
        proof: &LogProof,
        statement: &Option<String>,
        now: Timestamp,
    ) -> LogCheck {
        let opened = NoteVerifier::new(&log_origin(parent), SignatureType::Ed25519, key.clone())
            .and_then(|log| open_checkpoint(proof.checkpoint.as_bytes(), &log, &[], 0, now));
        let shown = match opened {
            Ok(verified) => verified.facts().checkpoint.clone(),
            Err(error) => return LogCheck::Refused(format!("checkpoint: {}: {error}", error.code())),
        };
        let Some((held_note, held)) = &self.held else {
            return self.keep(proof, shown);
        };
        let fork = |reason: String| {
            LogCheck::Fork(Box::new(LogForkRecord {
                parent: parent.to_owned(),
                held: held_note.clone(),
                shown: proof.checkpoint.clone(),
                proof: proof.consistency.clone(),
                statement: statement.clone(),
                reason,
                at: now,
                leaf: None,
            }))
        };
        if shown.size < held.size {
            if self.stale_reported.replace(shown.size) == Some(shown.size) {
                return LogCheck::Unchanged;
            }
            return LogCheck::Stale { held: held.size, shown: shown.size };
        }
        if shown.size == held.size {
            if shown.root == held.root {
                return LogCheck::Unchanged;
            }
            return fork(format!(
                "two signed checkpoints of size {} with different roots {} and {}",
                held.size,
                held.root.to_base64(),
                shown.root.to_base64()
            ));
        }
        if proof.from != held.size {
            return LogCheck::Unchanged;
        }
        let Some(hashes) = proof.hashes() else {
            return LogCheck::Refused("consistency proof: a hash is not 32 bytes of base64".into());
        };
        match verify_consistency(held.size, shown.size, &held.root, &shown.root, &hashes) {
            Ok(()) => self.keep(proof, shown),
            Err(error) => fork(format!(
                "the consistency proof from size {} to size {} (in the parent's signed page) fails: {error}",
                held.size, shown.size
            )),
        }
    }

    fn keep(&mut self, proof: &LogProof, shown: Checkpoint) -> LogCheck {
        let size = shown.size;
        self.held = Some((proof.checkpoint.clone(), shown));
        LogCheck::Extended { size, note: proof.checkpoint.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::fixtures::{FIXTURE_NOW, key};
    use kairan_protocol::tlog::{MemoryHashes, prove_consistency};

    fn record(relay_seq: u64) -> StoredDelivery {
        StoredDelivery {
            digest: kairan_protocol::Digest::of(&relay_seq.to_be_bytes()),
            origin: "mhlw".into(),
            seq: relay_seq,
            scope: "jp".into(),
            relay_seq,
            received_at: Timestamp::from_unix_ms(0),
            delivery: Bytes::from(format!("{{\"n\":{relay_seq}}}")),
        }
    }

    #[test]
    fn checkpoints_cover_what_the_commit_held() {
        let relay = key("relay-jp-13");
        let mut log = OwnLog::default();
        assert!(matches!(log.append(&record(1)), Some(Ok(WriteOp::TreeHashes(_)))));
        log.commit_started(true);
        assert!(matches!(log.append(&record(2)), Some(Ok(_))), "decided during the commit");
        let signed = log.committed("jp-13", &relay).expect("a checkpoint").expect("signed");
        assert_eq!((signed.size, signed.root), (1, leaf_hash(&record(1).delivery)));
        assert!(log.committed("jp-13", &relay).is_none(), "one per commit");
        assert!(matches!(log.append(&record(4)), Some(Err(_))), "a hole");
        assert!(log.append(&record(5)).is_none(), "reported once");
    }

    fn signed_by(parent_key: &SecretKey, hashes: &MemoryHashes, size: u64, from: u64) -> LogProof {
        let root = kairan_protocol::tlog::tree_root(hashes, size).expect("root");
        let note = Checkpoint::new(log_origin("jp"), size, root).sign(parent_key).expect("sign");
        let consistency =
            if from <= size { prove_consistency(hashes, from, size).expect("proof") } else { vec![] };
        LogProof {
            checkpoint: String::from_utf8(note.to_bytes()).expect("utf-8"),
            from,
            consistency: consistency.iter().map(Hash::to_base64).collect(),
            inclusion: Vec::new(),
        }
    }

    impl ParentLog {
        /// The consistency half of [`ParentLog::check`].
        fn check0(&mut self, parent: &str, key: &PublicKey, proof: &LogProof, now: Timestamp) -> LogCheck {
            self.check(parent, key, proof, None, now).0
        }
    }

    #[test]
    fn a_parent_log_is_followed_and_a_fork_is_caught() {
        let parent_key = key("relay-jp");
        let public = parent_key.public();
        let mut honest = MemoryHashes::new();
        let mut forked = MemoryHashes::new();
        for i in 0..10u8 {
            honest.append(leaf_hash(&[i])).expect("room");
            forked.append(leaf_hash(&[if i == 7 { 99 } else { i }])).expect("room");
        }
        let mut child = ParentLog::default();
        let first = signed_by(&parent_key, &honest, 4, 0);
        assert!(matches!(
            child.check0("jp", public, &first, FIXTURE_NOW),
            LogCheck::Extended { size: 4, .. }
        ));
        let next = signed_by(&parent_key, &honest, 8, 4);
        assert!(matches!(child.check0("jp", public, &next, FIXTURE_NOW), LogCheck::Extended { size: 8, .. }));
        assert_eq!(child.check0("jp", public, &next, FIXTURE_NOW), LogCheck::Unchanged);
        assert_eq!(child.check0("jp", public, &first, FIXTURE_NOW), LogCheck::Stale { held: 8, shown: 4 });
        assert_eq!(child.check0("jp", public, &first, FIXTURE_NOW), LogCheck::Unchanged, "said once");
        // Another key, or another parent's name: refused, not a fork.
        let stranger = key("relay-jp-27");
        assert!(matches!(child.check0("jp", stranger.public(), &next, FIXTURE_NOW), LogCheck::Refused(_)));
        assert!(matches!(child.check0("jp-13", public, &next, FIXTURE_NOW), LogCheck::Refused(_)));
        // The rewritten log: a different root at the size held…
        let same_size = signed_by(&parent_key, &forked, 8, 8);
        let LogCheck::Fork(evidence) = child.check0("jp", public, &same_size, FIXTURE_NOW) else {
            panic!("a fork at size 8")
        };
        assert_eq!(
            (evidence.parent.as_str(), evidence.shown.as_str()),
            ("jp", same_size.checkpoint.as_str())
        );
        assert!(evidence.reason.contains("different roots"), "{}", evidence.reason);
        // …and a larger tree that does not extend it.
        let larger = signed_by(&parent_key, &forked, 10, 8);
        let LogCheck::Fork(evidence) = child.check0("jp", public, &larger, FIXTURE_NOW) else {
            panic!("a fork from 8 to 10")
        };
        assert_eq!(evidence.held, next.checkpoint, "the checkpoint held is the evidence's other half");
        assert_eq!(child.verified_size(), 8, "the checkpoint held is kept");
        // Restored from its note, the child goes on from there.
        let mut restored = ParentLog::restore(Some(next.checkpoint.as_bytes()));
        assert_eq!(restored.verified_size(), 8);
        let honest_10 = signed_by(&parent_key, &honest, 10, 8);
        assert!(matches!(
            restored.check0("jp", public, &honest_10, FIXTURE_NOW),
            LogCheck::Extended { size: 10, .. }
        ));
    }

    #[test]
    fn deliveries_the_parent_forwarded_are_proved_included() {
        let parent_key = key("relay-jp");
        let mut log = MemoryHashes::new();
        let leaves: Vec<Vec<u8>> = (0..6u8).map(|i| vec![b'{', i, b'}']).collect();
        for leaf in &leaves {
            log.append(leaf_hash(leaf)).expect("room");
        }
        let mut child = ParentLog::default();
        child.note_leaf(2, &leaves[1]);
        child.note_leaf(5, &leaves[4]);
        child.note_leaf(6, b"not what was logged");
        assert_eq!(child.to_prove(), vec![1, 4, 5]);
        let mut answer = signed_by(&parent_key, &log, 6, 0);
        for index in child.to_prove() {
            let proof = kairan_protocol::tlog::prove_inclusion(&log, index, 6).expect("proof");
            answer.inclusion.push(kairan_protocol::sync::Inclusion {
                index,
                proof: proof.iter().map(Hash::to_base64).collect(),
            });
        }
        let (check, inclusions) = child.check("jp", parent_key.public(), &answer, None, FIXTURE_NOW);
        assert!(matches!(check, LogCheck::Extended { size: 6, .. }));
        assert_eq!(inclusions.verified, 2);
        assert_eq!(inclusions.failed.len(), 1, "the leaf the log does not hold");
        assert!(inclusions.failed[0].reason.contains("relay_seq 6"), "{}", inclusions.failed[0].reason);
        assert!(child.to_prove().is_empty(), "each proved once");
        for relay_seq in 1..=(MAX_PENDING_LEAVES as u64 + 10) {
            child.note_leaf(relay_seq, b"x");
        }
        assert_eq!(child.to_prove()[0], 10, "bounded: the oldest dropped");
    }
}

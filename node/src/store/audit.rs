//! `kairan audit log`: a node's transparency log checked offline, from its segment log alone.
//!
//! The segment files are read, never opened for writing (no sled, no repair, no lock), so a
//! store can be audited while its node runs or from a copy. Every record ever appended is
//! there, in order, superseded blobs included: that is the history of the checkpoints the node
//! signed ([`super::CHECKPOINT_BLOB`]) and of the parent's it accepted
//! ([`super::PARENT_CHECKPOINT_BLOB`]). The audit
//! 1. rebuilds the tree from the stored deliveries (leaf `i` = the delivery bytes at
//!    `relay_seq = i + 1`; relay_seqs must be consecutive from 1);
//! 2. checks every stored hash against the rebuilt tree;
//! 3. checks every checkpoint the node signed against it (size within the log, root equal to
//!    the rebuilt tree head at that size; sizes never go back);
//! 4. checks the parent's checkpoints among themselves (a size seen twice has one root; sizes
//!    never go back);
//! 5. lists the evidence of a parent's inconsistent logs the node kept.
//!
//! Anything wrong is a problem, and the command exits non-zero naming it. Given the node's
//! public key (its relay key), the signature of every checkpoint it signed is checked too
//! (`open_checkpoint` under the checkpoint's origin); the store holds no key to check them
//! with otherwise.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use kairan_protocol::note::{Checkpoint, Note, NoteVerifier, SignatureType, open_checkpoint};
use kairan_protocol::tlog::{Hash, HashReader, MemoryHashes, NodeIndex, leaf_hash, tree_root};
use kairan_protocol::{PublicKey, Timestamp};

use super::disk_store::segments_dir;
use super::log_record::{self, LogRecord};
use super::segment_log::{HEADER_LEN, frames_in};
use super::{CHECKPOINT_BLOB, PARENT_CHECKPOINT_BLOB, StoreError};

/// One checkpoint found in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenCheckpoint {
    /// Its origin.
    pub origin: String,
    /// Its size.
    pub size: u64,
    /// Its root (base64).
    pub root: String,
}

/// What the audit found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogAudit {
    /// Leaves (stored deliveries).
    pub size: u64,
    /// The tree head rebuilt from them (base64).
    pub root: String,
    /// Stored hashes checked.
    pub stored_hashes: usize,
    /// Leaves without stored hashes (a store written before the log: the node adds them at
    /// its next start).
    pub unhashed_leaves: u64,
    /// The checkpoints this node signed, oldest first.
    pub checkpoints: Vec<SeenCheckpoint>,
    /// Whether their signatures were checked (a key was given).
    pub signatures_checked: bool,
    /// The parent's checkpoints it accepted, oldest first.
    pub parent_checkpoints: Vec<SeenCheckpoint>,
    /// Evidence of a parent's inconsistent logs kept: `parent: reason`.
    pub log_forks: Vec<String>,
    /// Everything wrong, one sentence each.
    pub problems: Vec<String>,
}

impl LogAudit {
    /// Whether nothing is wrong.
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every record of the segment log in `store_dir`, in append order (a torn tail ends it).
pub fn records(store_dir: &Path) -> Result<Vec<LogRecord>, StoreError> {
    let dir = segments_dir(store_dir);
    let io = |path: &Path, source| StoreError::Io { path: path.to_owned(), source };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| io(&dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    // Zero-padded numbers: names sort in segment order.
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
        let body = bytes.get(HEADER_LEN as usize..).unwrap_or_default();
        for frame in frames_in(body) {
            out.push(log_record::decode(frame)?);
        }
    }
    Ok(out)
}

fn parse_checkpoint(bytes: &[u8]) -> Result<Checkpoint, String> {
    let note = Note::parse(bytes).map_err(|e| e.to_string())?;
    Checkpoint::parse(note.text()).map_err(|e| e.to_string())
}

fn seen(checkpoint: &Checkpoint) -> SeenCheckpoint {
    SeenCheckpoint {
        origin: checkpoint.origin.clone(),
        size: checkpoint.size,
        root: checkpoint.root.to_base64(),
    }
}

/// Audits the transparency log of the store in `store_dir` (see the module docs); with `key`,
/// the node's public key, checks the signatures of its checkpoints at `now`.
pub fn audit_log(store_dir: &Path, key: Option<&PublicKey>, now: Timestamp) -> Result<LogAudit, StoreError> {
    let mut audit = LogAudit { signatures_checked: key.is_some(), ..LogAudit::default() };
    let mut deliveries = BTreeMap::new();
    let mut stored: Vec<(NodeIndex, Hash)> = Vec::new();
    let mut own = Vec::new();
    let mut parent = Vec::new();
    for record in records(store_dir)? {
        match record {
            LogRecord::Delivery(delivery) => {
                deliveries.insert(delivery.relay_seq, delivery.delivery);
            }
            LogRecord::TreeHashes(hashes) => stored.extend(hashes),
            LogRecord::Blob(name, value) if name == CHECKPOINT_BLOB => own.push(value),
            LogRecord::Blob(name, value) if name == PARENT_CHECKPOINT_BLOB => parent.push(value),
            LogRecord::LogFork(fork) => audit.log_forks.push(format!("{}: {}", fork.parent, fork.reason)),
            LogRecord::Blob(..) | LogRecord::Fork(_) => {}
        }
    }
    // 1. The tree, rebuilt from the deliveries.
    let mut tree = MemoryHashes::new();
    for (relay_seq, bytes) in &deliveries {
        if *relay_seq != tree.size() + 1 {
            audit.problems.push(format!(
                "the output log has no delivery at relay_seq {} (the next is {relay_seq}): the log stops there",
                tree.size() + 1
            ));
            break;
        }
        tree.append(leaf_hash(bytes))?;
    }
    audit.size = tree.size();
    audit.root = tree.root().to_base64();
    // 2. The stored hashes.
    let mut hashed = 0;
    for (node, hash) in &stored {
        let end = (node.index.saturating_add(1)).checked_shl(u32::from(node.level)).unwrap_or(u64::MAX);
        let expected = if end <= tree.size() { tree.read_hashes(&[*node]).ok() } else { None };
        match expected {
            Some(expected) if expected == [*hash] => {}
            Some(_) => audit.problems.push(format!(
                "stored hash at level {} index {} is not the hash of the stored deliveries it covers",
                node.level, node.index
            )),
            None => audit.problems.push(format!(
                "stored hash at level {} index {} covers leaves the log does not hold",
                node.level, node.index
            )),
        }
        if node.level == 0 {
            hashed = hashed.max(node.index + 1);
        }
    }
    audit.stored_hashes = stored.len();
    audit.unhashed_leaves = tree.size().saturating_sub(hashed);
    // 3. The node's own checkpoints.
    let mut last: Option<Checkpoint> = None;
    for (n, bytes) in own.iter().enumerate() {
        let checkpoint = match parse_checkpoint(bytes) {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                audit.problems.push(format!("own checkpoint #{}: {error}", n + 1));
                continue;
            }
        };
        if checkpoint.size > tree.size() {
            audit.problems.push(format!(
                "own checkpoint #{} signs size {}, but the log holds {} deliveries",
                n + 1,
                checkpoint.size,
                tree.size()
            ));
        } else {
            let root = tree_root(&tree, checkpoint.size)?;
            if root != checkpoint.root {
                audit.problems.push(format!(
                    "own checkpoint #{} signs root {} at size {}, but the stored deliveries give {}",
                    n + 1,
                    checkpoint.root.to_base64(),
                    checkpoint.size,
                    root.to_base64()
                ));
            }
        }
        if let Some(key) = key {
            let opened = NoteVerifier::new(&checkpoint.origin, SignatureType::Ed25519, key.clone())
                .and_then(|log| open_checkpoint(bytes, &log, &[], 0, now));
            if let Err(error) = opened {
                audit.problems.push(format!(
                    "own checkpoint #{} (size {}) is not signed by the given key: {}: {error}",
                    n + 1,
                    checkpoint.size,
                    error.code()
                ));
            }
        }
        if let Some(previous) = &last
            && (previous.origin != checkpoint.origin || previous.size > checkpoint.size)
        {
            audit.problems.push(format!(
                "own checkpoint #{} ({} at size {}) follows {} at size {}: a log neither changes its name nor shrinks",
                n + 1,
                checkpoint.origin,
                checkpoint.size,
                previous.origin,
                previous.size
            ));
        }
        audit.checkpoints.push(seen(&checkpoint));
        last = Some(checkpoint);
    }
    // 4. The parent's checkpoints among themselves (consistency between sizes was proved
    //    to the node when it accepted each; offline there is no proof to check again).
    let mut by_size: BTreeMap<(String, u64), Hash> = BTreeMap::new();
    let mut largest: Option<(String, u64)> = None;
    for (n, bytes) in parent.iter().enumerate() {
        let checkpoint = match parse_checkpoint(bytes) {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                audit.problems.push(format!("parent checkpoint #{}: {error}", n + 1));
                continue;
            }
        };
        let key = (checkpoint.origin.clone(), checkpoint.size);
        if by_size.get(&key).is_some_and(|root| *root != checkpoint.root) {
            audit.problems.push(format!(
                "the parent's log {} has two accepted checkpoints of size {} with different roots",
                checkpoint.origin, checkpoint.size
            ));
        }
        by_size.insert(key, checkpoint.root);
        if let Some((origin, size)) = &largest
            && *origin == checkpoint.origin
            && *size > checkpoint.size
        {
            audit.problems.push(format!(
                "parent checkpoint #{} ({} at size {}) was accepted after size {size}",
                n + 1,
                checkpoint.origin,
                checkpoint.size
            ));
        }
        largest = Some((checkpoint.origin.clone(), checkpoint.size));
        audit.parent_checkpoints.push(seen(&checkpoint));
    }
    // 5. Evidence against the parent is a finding of the audit too.
    for fork in &audit.log_forks {
        audit.problems.push(format!("evidence kept of a parent's inconsistent logs: {fork}"));
    }
    Ok(audit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DiskStore, Store, StoredDelivery, WriteBatch, WriteOp};
    use kairan_protocol::tlog::Frontier;
    use kairan_protocol::{Digest, Timestamp};

    fn record(relay_seq: u64) -> StoredDelivery {
        StoredDelivery {
            digest: Digest::of(&relay_seq.to_be_bytes()),
            origin: "mhlw".into(),
            seq: relay_seq,
            scope: "jp".into(),
            relay_seq,
            received_at: Timestamp::from_unix_ms(0),
            delivery: format!("{{\"n\":{relay_seq}}}").into(),
        }
    }

    /// A store of `n` deliveries with their stored hashes, and its frontier.
    fn store_of(dir: &Path, n: u64) -> Frontier {
        let store = DiskStore::open(dir).expect("open");
        let mut frontier = Frontier::new();
        for relay_seq in 1..=n {
            let r = record(relay_seq);
            let hashes = frontier.append(leaf_hash(&r.delivery)).expect("room");
            let ops = vec![WriteOp::Accepted(r), WriteOp::TreeHashes(hashes)];
            store.commit(&WriteBatch { ops }).expect("commit");
        }
        frontier
    }

    fn sign(dir: &Path, name: &'static str, size: u64, root: Hash) {
        let key = kairan_protocol::fixtures::key("relay-jp");
        let note = Checkpoint::new("kairan.example/jp", size, root).sign(&key).expect("sign");
        let store = DiskStore::open(dir).expect("open");
        store.commit(&WriteBatch { ops: vec![WriteOp::Blob(name, note.to_bytes())] }).expect("commit");
    }

    #[test]
    fn a_consistent_log_passes_and_a_wrong_checkpoint_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let frontier = store_of(dir.path(), 5);
        sign(dir.path(), CHECKPOINT_BLOB, 5, frontier.root());
        let audit = audit_log(dir.path(), None, Timestamp::from_unix_ms(0)).expect("audit");
        assert!(audit.is_consistent(), "{:?}", audit.problems);
        assert_eq!(
            (audit.size, audit.root.as_str(), audit.unhashed_leaves),
            (5, &*frontier.root().to_base64(), 0)
        );
        assert_eq!(audit.checkpoints.len(), 1);
        let signer = kairan_protocol::fixtures::key("relay-jp");
        let other = kairan_protocol::fixtures::key("relay-jp-13");
        let now = Timestamp::from_unix_ms(0);
        assert!(audit_log(dir.path(), Some(signer.public()), now).expect("audit").is_consistent());
        let wrong = audit_log(dir.path(), Some(other.public()), now).expect("audit");
        assert!(wrong.problems[0].contains("not signed by the given key"), "{:?}", wrong.problems);
        // A checkpoint that signs another root at size 3, then one past the log.
        sign(dir.path(), CHECKPOINT_BLOB, 3, leaf_hash(b"other"));
        sign(dir.path(), CHECKPOINT_BLOB, 9, frontier.root());
        let audit = audit_log(dir.path(), None, Timestamp::from_unix_ms(0)).expect("audit");
        assert_eq!(audit.problems.len(), 3, "{:?}", audit.problems);
        assert!(audit.problems[0].contains("at size 3, but the stored deliveries give"));
        assert!(audit.problems[1].contains("shrinks"));
        assert!(audit.problems[2].contains("signs size 9"));
    }

    #[test]
    fn parent_checkpoints_and_missing_hashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        store_of(dir.path(), 2);
        {
            let store = DiskStore::open(dir.path()).expect("open");
            store.commit(&WriteBatch { ops: vec![WriteOp::Accepted(record(3))] }).expect("without hashes");
        }
        sign(dir.path(), PARENT_CHECKPOINT_BLOB, 4, leaf_hash(b"a"));
        sign(dir.path(), PARENT_CHECKPOINT_BLOB, 4, leaf_hash(b"b"));
        let audit = audit_log(dir.path(), None, Timestamp::from_unix_ms(0)).expect("audit");
        assert_eq!(audit.unhashed_leaves, 1);
        assert_eq!(audit.parent_checkpoints.len(), 2);
        assert_eq!(audit.problems.len(), 1, "{:?}", audit.problems);
        assert!(audit.problems[0].contains("two accepted checkpoints of size 4"));
    }
}

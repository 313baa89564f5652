//! [`Store`] in memory: the same contract as [`super::DiskStore`], for the simulator (which
//! models the disk, the page cache and crashes around it) and for unit tests.
//!
//! A commit is applied at once and is "durable" for as long as the value lives; clones share
//! the same state, as clones of a sled database do. Delivery bytes are shared, not copied
//! (`Bytes`), so a simulated district's clinics hold one copy of what it forwarded.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use kairan_protocol::sequence::ChainId;
use kairan_protocol::tlog::{Hash, NodeIndex};
use kairan_protocol::{Digest, Scope};

use super::{
    CHECKPOINT_BLOB, ForkRecord, LogForkRecord, MAX_REJECTIONS_KEPT, PARENT_CHECKPOINT_BLOB,
    PUBLISHED_CURSOR, Rejection, RestoredState, SYNC_CURSOR, Store, StoreError, StoredDelivery, TRUST_BLOB,
    WriteBatch, WriteOp,
};

#[derive(Debug, Default)]
struct Inner {
    /// relay_seq → delivery (the output log, and the deliveries themselves).
    log: BTreeMap<u64, StoredDelivery>,
    /// digest → relay_seq.
    by_digest: HashMap<Digest, u64>,
    /// (origin, scope, seq) → digest: grouped by chain, each chain's in seq order.
    chain_index: BTreeMap<(String, String, u64), Digest>,
    rejections: BTreeMap<u64, Rejection>,
    next_rejection: u64,
    forks: BTreeMap<Digest, ForkRecord>,
    cursors: HashMap<String, u64>,
    blobs: HashMap<String, Vec<u8>>,
    /// The transparency log's stored hashes.
    tree: HashMap<NodeIndex, Hash>,
    /// Leaves hashed (level-0 hashes stored).
    tree_size: u64,
    log_forks: BTreeMap<Digest, LogForkRecord>,
}

/// An in-memory store. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct MemStore {
    inner: Arc<Mutex<Inner>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock (a bug in a test) leaves plain data behind.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Number of deliveries held.
    pub fn len(&self) -> usize {
        self.lock().log.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.lock().log.is_empty()
    }

    /// The last relay_seq of the output log (0 when empty).
    pub fn last_relay_seq(&self) -> u64 {
        self.lock().log.keys().next_back().copied().unwrap_or(0)
    }

    /// Whether the advisory with sequence number `seq` of the chain `chain` is held.
    pub fn holds_seq(&self, chain: &ChainId, seq: u64) -> bool {
        self.lock().chain_index.contains_key(&(chain.origin.clone(), chain.scope.to_string(), seq))
    }

    /// Number of rejections kept.
    pub fn rejection_count(&self) -> usize {
        self.lock().rejections.len()
    }
}

impl Store for MemStore {
    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for op in &batch.ops {
            match op {
                WriteOp::Accepted(record) => {
                    inner.by_digest.insert(record.digest, record.relay_seq);
                    let key = (record.origin.clone(), record.scope.clone(), record.seq);
                    inner.chain_index.insert(key, record.digest);
                    inner.log.insert(record.relay_seq, record.clone());
                }
                WriteOp::Rejection(rejection) => {
                    let id = inner.next_rejection;
                    inner.next_rejection += 1;
                    inner.rejections.insert(id, rejection.clone());
                    if let Some(oldest_kept) = id.checked_sub(MAX_REJECTIONS_KEPT) {
                        inner.rejections.retain(|key, _| *key >= oldest_kept);
                    }
                }
                WriteOp::Fork(fork) => {
                    inner.forks.insert(fork.digest, fork.clone());
                }
                WriteOp::Cursor(name, value) => {
                    inner.cursors.insert((*name).to_owned(), *value);
                }
                WriteOp::Blob(name, value) => {
                    inner.blobs.insert((*name).to_owned(), value.clone());
                }
                WriteOp::TreeHashes(hashes) => {
                    for (node, hash) in hashes {
                        if node.level == 0 {
                            inner.tree_size = inner.tree_size.max(node.index + 1);
                        }
                        inner.tree.insert(*node, *hash);
                    }
                }
                WriteOp::LogFork(record) => {
                    inner.log_forks.insert(record.id(), record.clone());
                }
            }
        }
        Ok(())
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.lock().by_digest.contains_key(digest))
    }

    fn get(&self, digest: &Digest) -> Result<Option<StoredDelivery>, StoreError> {
        let inner = self.lock();
        Ok(inner.by_digest.get(digest).and_then(|relay_seq| inner.log.get(relay_seq)).cloned())
    }

    fn log_after(&self, relay_seq: u64, limit: usize) -> Result<Vec<StoredDelivery>, StoreError> {
        let inner = self.lock();
        Ok(inner.log.range(relay_seq.saturating_add(1)..).take(limit).map(|(_, r)| r.clone()).collect())
    }

    fn rejections(&self) -> Result<Vec<Rejection>, StoreError> {
        Ok(self.lock().rejections.values().cloned().collect())
    }

    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError> {
        Ok(self.lock().forks.values().cloned().collect())
    }

    fn log_forks(&self) -> Result<Vec<LogForkRecord>, StoreError> {
        Ok(self.lock().log_forks.values().cloned().collect())
    }

    fn tree_hashes(&self, nodes: &[NodeIndex]) -> Result<Vec<Hash>, StoreError> {
        let inner = self.lock();
        nodes
            .iter()
            .map(|node| {
                inner.tree.get(node).copied().ok_or_else(|| StoreError::Corrupt {
                    tree: "tlog",
                    reason: format!("no stored hash at level {} index {}", node.level, node.index),
                })
            })
            .collect()
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        Ok(self.lock().tree_size)
    }

    fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        Ok(self.lock().cursors.get(name).copied().unwrap_or(0))
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().blobs.get(name).cloned())
    }

    fn restore(&self) -> Result<RestoredState, StoreError> {
        let mut state = self.restore_records();
        state.tree = super::restore_tree(self, state.last_relay_seq)?;
        Ok(state)
    }

    fn check_integrity(&self) -> Result<usize, StoreError> {
        let inner = self.lock();
        for digest in inner.chain_index.values() {
            if !inner.by_digest.contains_key(digest) {
                return Err(StoreError::Corrupt {
                    tree: "chain_index",
                    reason: format!("{digest} has no delivery"),
                });
            }
        }
        Ok(inner.log.len())
    }
}

impl MemStore {
    /// Everything [`Store::restore`] returns but the tree (which reads the store again).
    fn restore_records(&self) -> RestoredState {
        let inner = self.lock();
        let mut state = RestoredState::default();
        for ((origin, scope, seq), digest) in &inner.chain_index {
            // Every record was decided with a valid scope; one that is not has no chain.
            if let Ok(scope) = Scope::parse(scope) {
                state.push_held(ChainId::new(origin.clone(), scope), *seq, *digest);
            }
        }
        state.last_relay_seq = inner.log.keys().next_back().copied().unwrap_or(0);
        state.sync_cursor = inner.cursors.get(SYNC_CURSOR).copied().unwrap_or(0);
        state.published = inner.cursors.get(PUBLISHED_CURSOR).copied().unwrap_or(0);
        state.trust_bundle = inner.blobs.get(TRUST_BLOB).cloned();
        state.checkpoint = inner.blobs.get(CHECKPOINT_BLOB).cloned();
        state.parent_checkpoint = inner.blobs.get(PARENT_CHECKPOINT_BLOB).cloned();
        state.take_chain(inner.log.values().next_back());
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TreeReader;
    use kairan_protocol::Timestamp;
    use kairan_protocol::sequence::ChainHead;
    use kairan_protocol::tlog::{Frontier, leaf_hash, root_of, tree_root};

    fn record(origin: &str, seq: u64, relay_seq: u64) -> StoredDelivery {
        StoredDelivery {
            digest: Digest::of(format!("{origin}-{seq}").as_bytes()),
            origin: origin.into(),
            seq,
            scope: "jp".into(),
            relay_seq,
            received_at: Timestamp::from_unix_ms(1000),
            delivery: "{}".into(),
        }
    }

    #[test]
    fn restores_what_was_committed() {
        let store = MemStore::new();
        let batch = WriteBatch {
            ops: vec![
                WriteOp::Accepted(record("nisc", 1, 1)),
                WriteOp::Accepted(record("mhlw", 1, 2)),
                WriteOp::Accepted(record("mhlw", 2, 3)),
                WriteOp::Cursor(SYNC_CURSOR, 7),
            ],
        };
        store.commit(&batch).expect("commit");
        let clone = store.clone();
        let state = clone.restore().expect("restore");
        assert_eq!(state.last_relay_seq, 3);
        assert_eq!(state.sync_cursor, 7);
        assert_eq!(
            state.heads[0],
            (
                ChainId::new("mhlw", Scope::parse("jp").expect("scope")),
                ChainHead { seq: 2, digest: record("mhlw", 2, 3).digest }
            )
        );
        assert_eq!(clone.log_after(1, 1).expect("log"), vec![record("mhlw", 1, 2)]);
        assert_eq!(clone.check_integrity().expect("intact"), 3);
        // Committed without stored hashes (a store from before the log): hashed at restore.
        assert_eq!(clone.tree_size().expect("size"), 3);
        assert_eq!(state.tree.root(), tree_root(&TreeReader(&clone), 3).expect("root"));
    }

    #[test]
    fn the_tree_head_is_the_hash_of_the_stored_deliveries_and_survives_a_restore() {
        let store = MemStore::new();
        let mut frontier = Frontier::new();
        for relay_seq in 1..=11 {
            let r = record("mhlw", relay_seq, relay_seq);
            let hashes = frontier.append(leaf_hash(&r.delivery)).expect("room");
            store
                .commit(&WriteBatch { ops: vec![WriteOp::Accepted(r), WriteOp::TreeHashes(hashes)] })
                .expect("commit");
        }
        let leaves: Vec<_> = store.all().expect("all").iter().map(|r| leaf_hash(&r.delivery)).collect();
        assert_eq!(tree_root(&TreeReader(&store), 11).expect("root"), root_of(&leaves));
        assert_eq!(tree_root(&TreeReader(&store), 6).expect("root"), root_of(&leaves[..6]));
        let state = store.clone().restore().expect("restore");
        assert_eq!(state.tree, frontier, "the frontier comes back from the stored hashes");
    }
}

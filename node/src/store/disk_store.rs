//! [`Store`] on disk: delivery bodies, forks and blobs in an append-only segment log
//! ([`super::segment_log`]), everything else and the index in sled ([`super::sled_index`]).
//!
//! ```text
//! DIR/segments/NNNN.seg   the log: what the node holds, durable after one fdatasync per commit
//! DIR/index/              sled: where each record is, origin and output indexes, cursors,
//!                         rejections, and how far into the log the index reaches
//! ```
//! A commit (1) appends every record of the batch to the log with one write and one
//! `fdatasync` (and the directory's `fsync` when it started a new segment), (2) applies the
//! index entries, cursors and rejections to sled and records how far the index reaches, (3)
//! flushes sled — and when the batch holds a rejection, `fdatasync`s sled's files as well —
//! and only then returns; the driver acknowledges and forwards after that.
//!
//! Why the index need not be synced for deliveries: everything in it is derived from the log,
//! and the index records how far into the log it reaches *after* the entries it covers. On
//! opening, the log is scanned from there: records the index lost (a crash or a power cut
//! after the log's `fdatasync`) are indexed again, and a torn tail is cut off. The index never
//! points past what the log's `fdatasync` made durable, because it is written only after it.
//! Cursors may go back after a power cut — a node then asks its parent again from an older
//! position, or republishes deliveries its broker had confirmed; both are deduplicated. A
//! rejection is the one record that lives only in sled and is acknowledged: its batch syncs
//! sled too. See `docs/design.md`, "A store that survives a power cut".

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kairan_protocol::Digest;
use kairan_protocol::tlog::{Hash, NodeIndex};

use super::legacy;
use super::log_record::{self, LogRecord};
use super::segment_log::{self, DEFAULT_SEGMENT_BYTES, Location, Position, SegmentLog, SegmentReader};
use super::sled_index::{self, SledIndex, engine};
use super::{
    CHECKPOINT_BLOB, ForkRecord, LogForkRecord, PARENT_CHECKPOINT_BLOB, PUBLISHED_CURSOR, Rejection,
    RestoredState, SYNC_CURSOR, Store, StoreError, StoredDelivery, TRUST_BLOB, WriteBatch, WriteOp,
};

/// Options of [`DiskStore::open_with`].
#[derive(Debug, Clone, Copy)]
pub struct DiskOptions {
    /// Segment size at which the log starts a new segment.
    pub segment_bytes: u64,
}

impl Default for DiskOptions {
    fn default() -> Self {
        Self { segment_bytes: DEFAULT_SEGMENT_BYTES }
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    index: SledIndex,
    /// The append side; held for the whole of a commit (commits are serial anyway).
    log: Mutex<SegmentLog>,
    /// The read side, which never waits for a commit.
    reader: SegmentReader,
    /// What opening found and repaired.
    recovered: Recovered,
}

/// What [`DiskStore::open`] repaired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Log records the index did not cover, indexed again.
    pub reindexed: usize,
    /// Bytes of a torn append cut off the log's tail.
    pub truncated_bytes: u64,
}

/// A node's store on disk. Clones share it.
#[derive(Debug, Clone)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

/// The log directory inside a store directory.
pub fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

/// The index directory inside a store directory.
pub fn index_dir(dir: &Path) -> PathBuf {
    dir.join("index")
}

impl DiskStore {
    /// Opens (or creates) the store in `dir` with the default options.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, DiskOptions::default())
    }

    /// Opens (or creates) the store in `dir`: the index, then the log scanned from where the
    /// index ends (records it lacks are indexed again, a torn tail is cut).
    pub fn open_with(dir: &Path, options: DiskOptions) -> Result<Self, StoreError> {
        super::durable_fs::create_private_dir_all(dir)?;
        super::durable_fs::make_private(dir)?;
        let index = SledIndex::open(&index_dir(dir))?;
        let from = index.indexed_upto()?;
        let (log, recovery) = SegmentLog::open(&segments_dir(dir), options.segment_bytes, from)?;
        let recovered =
            Recovered { reindexed: recovery.frames.len(), truncated_bytes: recovery.truncated_bytes };
        for (location, frame) in recovery.frames {
            index_record(&index, log_record::decode(frame)?, location)?;
        }
        if recovered != Recovered::default() {
            index.put_indexed_upto(log.end())?;
            index.flush(true)?;
            tracing::warn!(
                store = %dir.display(),
                reindexed = recovered.reindexed,
                truncated_bytes = recovered.truncated_bytes,
                "store recovered after an unclean stop"
            );
        }
        let reader = log.reader();
        let inner = Inner { dir: dir.to_owned(), index, log: Mutex::new(log), reader, recovered };
        let store = Self { inner: Arc::new(inner) };
        if legacy::present(dir) {
            store.migrate_legacy(from)?;
        }
        Ok(store)
    }

    /// Takes in a store of the layout before the segment log found in the same directory
    /// ([`legacy`]), unless a crash after an earlier migration left its files behind.
    fn migrate_legacy(&self, indexed_upto: Position) -> Result<(), StoreError> {
        let dir = &self.inner.dir;
        if indexed_upto == Position::START && self.inner.index.output_log.is_empty() {
            let batch = legacy::read(dir)?;
            let deliveries = batch.ops.iter().filter(|op| matches!(op, WriteOp::Accepted(_))).count();
            self.commit(&batch)?;
            self.inner.index.flush(true)?;
            tracing::info!(store = %dir.display(), deliveries, "store migrated to the segment log");
        }
        legacy::move_aside(dir)
    }

    /// What opening repaired.
    pub fn recovered(&self) -> Recovered {
        self.inner.recovered
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    fn log(&self) -> std::sync::MutexGuard<'_, SegmentLog> {
        self.inner.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self, location: Location) -> Result<LogRecord, StoreError> {
        // Not through the append lock: the driver reads while a commit is in flight. Only
        // indexed locations are read, and the index is written after the log.
        log_record::decode(self.inner.reader.read(location)?)
    }

    fn read_delivery(&self, location: Location) -> Result<StoredDelivery, StoreError> {
        match self.read(location)? {
            LogRecord::Delivery(record) => Ok(record),
            _ => Err(StoreError::Corrupt { tree: "segments", reason: "expected a delivery record".into() }),
        }
    }
}

/// Adds the index entries of one log record.
fn index_record(index: &SledIndex, record: LogRecord, location: Location) -> Result<(), StoreError> {
    match record {
        LogRecord::Delivery(r) => {
            index.put_delivery(&r.digest, &r.origin, &r.scope, r.seq, r.relay_seq, location)
        }
        LogRecord::Fork(fork) => index.put_fork(&fork.digest, location),
        LogRecord::Blob(name, _) => index.put_blob(&name, location),
        LogRecord::TreeHashes(hashes) => index.put_tree_hashes(&hashes),
        LogRecord::LogFork(record) => index.put_log_fork(&record.id(), location),
    }
}

impl Store for DiskStore {
    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut log = self.log();
        // 1. The log: every record of the batch, one write, one fdatasync.
        let mut frames = Vec::new();
        let mut lens = Vec::new();
        for op in &batch.ops {
            let (kind, body) = match op {
                WriteOp::Accepted(record) => (log_record::DELIVERY, log_record::encode_delivery(record)),
                WriteOp::Fork(fork) => (log_record::FORK, log_record::encode_fork(fork)),
                WriteOp::Blob(name, value) => (log_record::BLOB, log_record::encode_blob(name, value)),
                WriteOp::TreeHashes(hashes) => {
                    (log_record::TREE_HASHES, log_record::encode_tree_hashes(hashes))
                }
                WriteOp::LogFork(record) => (log_record::LOG_FORK, log_record::encode_log_fork(record)),
                WriteOp::Rejection(_) | WriteOp::Cursor(..) => continue,
            };
            lens.push(segment_log::encode_frame(&mut frames, kind, &body)?);
        }
        let mut locations = log.append(&frames, &lens)?.into_iter();
        // 2. The index, cursors and rejections, then how far the index reaches.
        let index = &self.inner.index;
        let mut holds_rejection = false;
        for op in &batch.ops {
            match op {
                WriteOp::Accepted(r) => {
                    let location =
                        locations.next().ok_or_else(|| StoreError::Engine("lost a location".into()))?;
                    index.put_delivery(&r.digest, &r.origin, &r.scope, r.seq, r.relay_seq, location)?;
                }
                WriteOp::Fork(fork) => {
                    let location =
                        locations.next().ok_or_else(|| StoreError::Engine("lost a location".into()))?;
                    index.put_fork(&fork.digest, location)?;
                }
                WriteOp::Blob(name, _) => {
                    let location =
                        locations.next().ok_or_else(|| StoreError::Engine("lost a location".into()))?;
                    index.put_blob(name, location)?;
                }
                WriteOp::TreeHashes(hashes) => {
                    // In the log for durability (and rebuilding); the hashes live in the index.
                    locations.next().ok_or_else(|| StoreError::Engine("lost a location".into()))?;
                    index.put_tree_hashes(hashes)?;
                }
                WriteOp::LogFork(record) => {
                    let location =
                        locations.next().ok_or_else(|| StoreError::Engine("lost a location".into()))?;
                    index.put_log_fork(&record.id(), location)?;
                }
                WriteOp::Rejection(rejection) => {
                    index.put_rejection(rejection)?;
                    holds_rejection = true;
                }
                WriteOp::Cursor(name, value) => index.put_cursor(name, *value)?,
            }
        }
        if !lens.is_empty() {
            index.put_indexed_upto(log.end())?;
        }
        // 3. sled's flush; its files synced too when the batch holds what lives only there.
        index.flush(holds_rejection)
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.inner.index.delivery_index.contains_key(digest.as_bytes()).map_err(engine)
    }

    fn get(&self, digest: &Digest) -> Result<Option<StoredDelivery>, StoreError> {
        match self.inner.index.location_of(digest)? {
            Some(location) => Ok(Some(self.read_delivery(location)?)),
            None => Ok(None),
        }
    }

    fn log_after(&self, relay_seq: u64, limit: usize) -> Result<Vec<StoredDelivery>, StoreError> {
        let start = relay_seq.saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for entry in self.inner.index.output_log.range(start..).take(limit) {
            let (_, value) = entry.map_err(engine)?;
            let (digest, location) = sled_index::log_entry_from(&value)?;
            let record = self.read_delivery(location)?;
            if record.digest != digest {
                return Err(StoreError::Corrupt {
                    tree: "output_log",
                    reason: format!("entry for {digest} points at {}", record.digest),
                });
            }
            out.push(record);
        }
        Ok(out)
    }

    fn rejections(&self) -> Result<Vec<Rejection>, StoreError> {
        let decode = |bytes: &[u8]| {
            serde_json::from_slice(bytes)
                .map_err(|e| StoreError::Corrupt { tree: "rejections", reason: e.to_string() })
        };
        self.inner.index.rejections.iter().values().map(|v| decode(&v.map_err(engine)?)).collect()
    }

    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError> {
        let mut forks = Vec::new();
        for value in self.inner.index.forks.iter().values() {
            let location = sled_index::location_from("forks", &value.map_err(engine)?)?;
            match self.read(location)? {
                LogRecord::Fork(fork) => forks.push(fork),
                _ => return Err(StoreError::Corrupt { tree: "forks", reason: "not a fork record".into() }),
            }
        }
        Ok(forks)
    }

    fn log_forks(&self) -> Result<Vec<LogForkRecord>, StoreError> {
        let mut records = Vec::new();
        for value in self.inner.index.log_forks.iter().values() {
            let location = sled_index::location_from("log_forks", &value.map_err(engine)?)?;
            match self.read(location)? {
                LogRecord::LogFork(record) => records.push(record),
                _ => {
                    return Err(StoreError::Corrupt {
                        tree: "log_forks",
                        reason: "not a log fork record".into(),
                    });
                }
            }
        }
        Ok(records)
    }

    fn tree_hashes(&self, nodes: &[NodeIndex]) -> Result<Vec<Hash>, StoreError> {
        self.inner.index.tree_hashes(nodes)
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        self.inner.index.tree_size()
    }

    fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        self.inner.index.cursor(name)
    }

    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(location) = self.inner.index.blob_location(name)? else { return Ok(None) };
        match self.read(location)? {
            LogRecord::Blob(stored, value) if stored == name => Ok(Some(value)),
            _ => Err(StoreError::Corrupt { tree: "meta", reason: format!("blob {name} points elsewhere") }),
        }
    }

    fn restore(&self) -> Result<RestoredState, StoreError> {
        let index = &self.inner.index;
        let mut state = RestoredState::default();
        for entry in index.chain_index.iter() {
            let (key, digest_bytes) = entry.map_err(engine)?;
            let (chain, seq) = sled_index::split_chain_key(&key)
                .ok_or_else(|| StoreError::Corrupt { tree: "chain_index", reason: "bad key".into() })?;
            // Keys group by chain, each chain's in seq order.
            state.push_held(chain, seq, sled_index::digest_from("chain_index", &digest_bytes)?);
        }
        if let Some((key, _)) = index.output_log.last().map_err(engine)? {
            state.last_relay_seq = sled_index::u64_from("output_log", &key)?;
        }
        state.sync_cursor = self.cursor(SYNC_CURSOR)?;
        state.published = self.cursor(PUBLISHED_CURSOR)?;
        state.trust_bundle = self.blob(TRUST_BLOB)?;
        state.checkpoint = self.blob(CHECKPOINT_BLOB)?;
        state.parent_checkpoint = self.blob(PARENT_CHECKPOINT_BLOB)?;
        let newest = self.log_after(state.last_relay_seq.saturating_sub(1), 1)?;
        state.take_chain(newest.first());
        state.tree = super::restore_tree(self, state.last_relay_seq)?;
        Ok(state)
    }

    fn check_integrity(&self) -> Result<usize, StoreError> {
        let index = &self.inner.index;
        let mut count = 0;
        for entry in index.delivery_index.iter() {
            let (key, value) = entry.map_err(engine)?;
            let record = self.read_delivery(sled_index::location_from("delivery_index", &value)?)?;
            if record.digest.as_bytes()[..] != key[..] {
                return Err(StoreError::Corrupt {
                    tree: "delivery_index",
                    reason: format!("key mismatch for {}", record.digest),
                });
            }
            count += 1;
        }
        for entry in index.chain_index.iter() {
            let (_, digest_bytes) = entry.map_err(engine)?;
            let digest = sled_index::digest_from("chain_index", &digest_bytes)?;
            if !self.contains(&digest)? {
                return Err(StoreError::Corrupt {
                    tree: "chain_index",
                    reason: format!("{digest} has no delivery"),
                });
            }
        }
        for entry in index.output_log.iter() {
            let (_, value) = entry.map_err(engine)?;
            let (digest, location) = sled_index::log_entry_from(&value)?;
            if index.location_of(&digest)? != Some(location) {
                return Err(StoreError::Corrupt {
                    tree: "output_log",
                    reason: format!("{digest} has no delivery"),
                });
            }
        }
        let end = self.log().end();
        if index.indexed_upto()? > end {
            return Err(StoreError::Corrupt {
                tree: "meta",
                reason: "the index reaches past the log".into(),
            });
        }
        self.rejections()?;
        self.forks()?;
        self.log_forks()?;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairan_protocol::Timestamp;
    use kairan_protocol::sequence::{ChainHead, ChainId};
    use std::os::unix::fs::MetadataExt;

    fn chain(origin: &str, scope: &str) -> ChainId {
        ChainId::new(origin, kairan_protocol::Scope::parse(scope).expect("scope"))
    }

    fn record(origin: &str, seq: u64, relay_seq: u64) -> StoredDelivery {
        StoredDelivery {
            digest: Digest::of(format!("{origin}-{seq}").as_bytes()),
            origin: origin.into(),
            seq,
            scope: "jp".into(),
            relay_seq,
            received_at: Timestamp::from_unix_ms(1000),
            delivery: format!(r#"{{"n":"{}"}}"#, "x".repeat(300 * relay_seq as usize)).into(),
        }
    }

    fn accepted(from: u64, to: u64) -> WriteBatch {
        WriteBatch { ops: (from..=to).map(|n| WriteOp::Accepted(record("mhlw", n, n))).collect() }
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("list") {
            let path = entry.expect("entry").path();
            let target = to.join(path.file_name().expect("name"));
            if path.is_dir() {
                copy_dir(&path, &target)
            } else {
                std::fs::copy(&path, &target).map(drop).expect("copy")
            }
        }
    }

    #[test]
    fn accepted_deliveries_survive_reopen_with_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let jp13 = StoredDelivery {
            digest: Digest::of(b"mhlw jp/13 1"),
            scope: "jp/13".into(),
            ..record("mhlw", 1, 4)
        };
        {
            let store = DiskStore::open(dir.path()).expect("open");
            let batch = WriteBatch {
                ops: vec![
                    WriteOp::Accepted(record("mhlw", 1, 1)),
                    WriteOp::Accepted(record("mhlw", 2, 2)),
                    WriteOp::Accepted(record("nisc", 1, 3)),
                    // Seq 1 again, of another chain of the same origin: its own head.
                    WriteOp::Accepted(jp13.clone()),
                    WriteOp::Cursor(PUBLISHED_CURSOR, 2),
                    WriteOp::Blob(TRUST_BLOB, b"{}".to_vec()),
                ],
            };
            store.commit(&batch).expect("commit");
        }
        let store = DiskStore::open(dir.path()).expect("reopen");
        assert_eq!(store.recovered(), Recovered::default(), "a clean stop needs no repair");
        let state = store.restore().expect("restore");
        assert_eq!(state.last_relay_seq, 4);
        assert_eq!(
            state.heads,
            [
                (chain("mhlw", "jp"), ChainHead { seq: 2, digest: record("mhlw", 2, 2).digest }),
                (chain("mhlw", "jp/13"), ChainHead { seq: 1, digest: jp13.digest }),
                (chain("nisc", "jp"), ChainHead { seq: 1, digest: record("nisc", 1, 3).digest }),
            ]
        );
        assert_eq!(state.held.len(), 4);
        assert_eq!((state.published, state.sync_cursor), (2, 0));
        assert_eq!(state.trust_bundle.as_deref(), Some(&b"{}"[..]));
        assert_eq!(store.log_after(1, 10).expect("log").len(), 3);
        assert_eq!(store.get(&record("nisc", 1, 3).digest).expect("get"), Some(record("nisc", 1, 3)));
        assert_eq!(store.check_integrity().expect("intact"), 4);
        assert_eq!(std::fs::metadata(dir.path()).expect("meta").mode() & 0o777, 0o700);
    }

    #[test]
    fn a_store_with_one_chain_per_origin_is_refused_not_misread() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(DiskStore::open(dir.path()).expect("open"));
        {
            let db = sled::Config::new().path(index_dir(dir.path())).open().expect("sled");
            let old = db.open_tree("origin_index").expect("tree");
            old.insert(b"mhlw\0\0\0\0\0\0\0\0\x01", &[0u8; 32][..]).expect("insert");
            db.flush().expect("flush");
        }
        let error = DiskStore::open(dir.path()).expect_err("refused");
        assert!(error.to_string().contains("not migrated"), "{error}");
    }

    #[test]
    fn the_log_survives_reopening_and_is_rebuilt_from_the_segments() {
        use kairan_protocol::tlog::{Frontier, leaf_hash, root_of, tree_root};
        let dir = tempfile::tempdir().expect("tempdir");
        let saved = tempfile::tempdir().expect("tempdir");
        let mut frontier = Frontier::new();
        let commit = |store: &DiskStore, frontier: &mut Frontier, from: u64, to: u64| {
            let mut ops = Vec::new();
            for n in from..=to {
                let r = record("mhlw", n, n);
                let hashes = frontier.append(leaf_hash(&r.delivery)).expect("room");
                ops.extend([WriteOp::Accepted(r), WriteOp::TreeHashes(hashes)]);
            }
            store.commit(&WriteBatch { ops }).expect("commit");
        };
        let store = DiskStore::open(dir.path()).expect("open");
        commit(&store, &mut frontier, 1, 3);
        drop(store);
        copy_dir(&index_dir(dir.path()), saved.path());
        let store = DiskStore::open(dir.path()).expect("open");
        commit(&store, &mut frontier, 4, 7);
        drop(store);
        // The index lost the second commit (as after a power cut): the hashes come back from
        // the log's tree-hashes records.
        std::fs::remove_dir_all(index_dir(dir.path())).expect("rm");
        copy_dir(saved.path(), &index_dir(dir.path()));
        let store = DiskStore::open(dir.path()).expect("reopen");
        let state = store.restore().expect("restore");
        assert_eq!(state.tree, frontier);
        let leaves: Vec<_> = store.all().expect("all").iter().map(|r| leaf_hash(&r.delivery)).collect();
        assert_eq!(tree_root(&super::super::TreeReader(&store), 7).expect("root"), root_of(&leaves));
        assert_eq!(store.tree_size().expect("size"), 7);
    }

    #[test]
    fn rejections_and_forks_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DiskStore::open(dir.path()).expect("open");
        let rejection = Rejection {
            at: Timestamp::from_unix_ms(5),
            claimed_digest: None,
            code: "bad_signature".into(),
            message: "bad".into(),
            source: "t".into(),
            size: 3,
        };
        let fork = ForkRecord {
            digest: Digest::of(b"fork"),
            origin: "mhlw".into(),
            scope: "jp".into(),
            seq: 1,
            held: None,
            at: Timestamp::from_unix_ms(6),
            delivery: "{}".into(),
        };
        let batch =
            WriteBatch { ops: vec![WriteOp::Rejection(rejection.clone()), WriteOp::Fork(fork.clone())] };
        store.commit(&batch).expect("commit");
        drop(store);
        let store = DiskStore::open(dir.path()).expect("reopen");
        assert_eq!(store.rejections().expect("list"), vec![rejection]);
        assert_eq!(store.forks().expect("forks"), vec![fork]);
    }

    #[test]
    fn records_the_index_lost_are_indexed_again_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let saved = tempfile::tempdir().expect("tempdir");
        let store = DiskStore::open(dir.path()).expect("open");
        store.commit(&accepted(1, 2)).expect("commit");
        drop(store);
        // The index as it was after the first commit…
        copy_dir(&index_dir(dir.path()), saved.path());
        let store = DiskStore::open(dir.path()).expect("open");
        store.commit(&accepted(3, 5)).expect("commit");
        drop(store);
        // …is all that survived of it (the log's fdatasync did, the index's flush did not).
        std::fs::remove_dir_all(index_dir(dir.path())).expect("rm");
        copy_dir(saved.path(), &index_dir(dir.path()));
        let store = DiskStore::open(dir.path()).expect("reopen");
        assert_eq!(store.recovered(), Recovered { reindexed: 3, truncated_bytes: 0 });
        assert_eq!(store.restore().expect("restore").last_relay_seq, 5);
        assert_eq!(store.check_integrity().expect("intact"), 5);
        drop(store);
        let store = DiskStore::open(dir.path()).expect("reopen");
        assert_eq!(store.recovered(), Recovered::default(), "the repair was recorded");
    }

    #[test]
    fn a_torn_append_is_cut_and_the_store_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DiskStore::open(dir.path()).expect("open");
        store.commit(&accepted(1, 2)).expect("commit");
        drop(store);
        let segment = segments_dir(dir.path()).join("00000000000000000001.seg");
        let mut file = std::fs::OpenOptions::new().append(true).open(&segment).expect("open");
        std::io::Write::write_all(&mut file, &[7, 0, 0, 0, 1, 2, 3, 4, 1, b'{']).expect("torn");
        drop(file);
        let store = DiskStore::open(dir.path()).expect("reopen");
        assert_eq!(store.recovered(), Recovered { reindexed: 0, truncated_bytes: 10 });
        store.commit(&accepted(3, 3)).expect("commit after the cut");
        assert_eq!(store.log_after(0, 10).expect("log").len(), 3);
        assert_eq!(store.check_integrity().expect("intact"), 3);
    }

    #[test]
    fn segments_rotate_and_reads_cross_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = DiskOptions { segment_bytes: 2048 };
        let store = DiskStore::open_with(dir.path(), options).expect("open");
        for n in 1..=12 {
            store.commit(&accepted(n, n)).expect("commit");
        }
        drop(store);
        let segments = std::fs::read_dir(segments_dir(dir.path())).expect("list").count();
        assert!(segments >= 3, "rotated into {segments} segments");
        let store = DiskStore::open_with(dir.path(), options).expect("reopen");
        let all = store.all().expect("all");
        assert_eq!(all.iter().map(|r| r.relay_seq).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
        assert_eq!(all[11], record("mhlw", 12, 12));
        assert_eq!(store.check_integrity().expect("intact"), 12);
    }
}

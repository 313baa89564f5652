//! The index of a [`super::DiskStore`] on sled `=0.34.7`: small values only, pointing into
//! the segment log, plus the records that live nowhere else (rejections, cursors).
//!
//! Trees: `delivery_index` (digest → [`Location`]), `chain_index` (origin ‖ 0x00 ‖ scope ‖
//! 0x00 ‖ seq BE → digest: neither ids nor scopes contain 0x00, so the key splits one way,
//! and keys group by chain, each chain's in seq order), `output_log` (relay_seq BE → digest ‖ [`Location`]), `forks` (digest →
//! [`Location`]), `rejections` (id BE → JSON), `meta` (`cursor/NAME` → u64 BE, `blob/NAME` →
//! [`Location`], `log/indexed_upto` → [`Position`]), `tlog` (the transparency log's stored
//! hashes: `NodeIndex` key → 32-byte hash, small enough to live in the index), `log_forks`
//! (record id → [`Location`]).
//!
//! sled's `flush` ends in `sync_file_range`, which neither flushes the disk's cache nor the
//! file's metadata, and never syncs its blob files (spacejam/sled#1452); [`SledIndex::sync`]
//! adds the `fdatasync` of its data file, and an `fsync` of any file sled created since the
//! last sync (blobs, snapshots) and of their directories. Values here stay far below sled's
//! blob threshold (a node holds at most 16 entries before it splits), so in practice that is
//! the data file alone.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kairan_protocol::sequence::ChainId;
use kairan_protocol::tlog::{Hash, NodeIndex};
use kairan_protocol::{Digest, Scope};

use super::durable_fs::{self, io_error};
use super::segment_log::{Location, Position};
use super::{MAX_REJECTIONS_KEPT, Rejection, StoreError};

/// Key of the log position the index covers.
const INDEXED_UPTO: &str = "log/indexed_upto";

pub(super) fn engine(error: sled::Error) -> StoreError {
    StoreError::Engine(error.to_string())
}

/// The `chain_index` key of sequence number `seq` of the chain (`origin`, `scope`).
pub(super) fn chain_key(origin: &str, scope: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(origin.len() + scope.len() + 10);
    key.extend_from_slice(origin.as_bytes());
    key.push(0);
    key.extend_from_slice(scope.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// The chain and sequence number of a `chain_index` key (`None`: not such a key).
pub(super) fn split_chain_key(key: &[u8]) -> Option<(ChainId, u64)> {
    let split = key.len().checked_sub(9)?;
    if key.get(split) != Some(&0) {
        return None;
    }
    let (origin, scope) = key[..split].split_at(key[..split].iter().position(|b| *b == 0)?);
    let origin = std::str::from_utf8(origin).ok()?;
    let scope = Scope::parse(std::str::from_utf8(&scope[1..]).ok()?).ok()?;
    let seq = u64::from_be_bytes(key[split + 1..].try_into().ok()?);
    Some((ChainId::new(origin, scope), seq))
}

pub(super) fn digest_from(tree: &'static str, bytes: &[u8]) -> Result<Digest, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { tree, reason: format!("digest of {} bytes", bytes.len()) })?;
    Ok(Digest::from_bytes(array))
}

pub(super) fn location_from(tree: &'static str, bytes: &[u8]) -> Result<Location, StoreError> {
    Location::from_bytes(bytes)
        .ok_or_else(|| StoreError::Corrupt { tree, reason: format!("location of {} bytes", bytes.len()) })
}

pub(super) fn u64_from(tree: &'static str, bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt { tree, reason: format!("u64 of {} bytes", bytes.len()) })?;
    Ok(u64::from_be_bytes(array))
}

/// An output-log entry: the delivery's digest and where it is.
pub(super) fn log_entry_from(bytes: &[u8]) -> Result<(Digest, Location), StoreError> {
    if bytes.len() != 32 + Location::ENCODED_LEN {
        return Err(StoreError::Corrupt {
            tree: "output_log",
            reason: format!("entry of {} bytes", bytes.len()),
        });
    }
    Ok((digest_from("output_log", &bytes[..32])?, location_from("output_log", &bytes[32..])?))
}

/// Refuses an index of the layout with one sequence chain per origin (its `origin_index`
/// tree holds entries): its sequence numbers count differently from today's chains per
/// (origin, scope), and the origins' numbering changed with them, so there is nothing to
/// migrate them to (pre-release: such a store is started afresh). An empty one is dropped.
fn refuse_per_origin_layout(db: &sled::Db, dir: &Path) -> Result<(), StoreError> {
    const OLD: &[u8] = b"origin_index";
    if !db.tree_names().iter().any(|name| name.as_ref() == OLD) {
        return Ok(());
    }
    if db.open_tree(OLD).map_err(engine)?.is_empty() {
        db.drop_tree(OLD).map_err(engine)?;
        return Ok(());
    }
    Err(StoreError::Engine(format!(
        "the store at {} numbers advisories in one chain per origin, a layout before chains per \
         (origin, scope); it is not migrated: move it aside and start with an empty store \
         (the node catches up from its parent)",
        dir.display()
    )))
}

/// The sled side of a disk store.
#[derive(Debug)]
pub(super) struct SledIndex {
    pub db: sled::Db,
    pub delivery_index: sled::Tree,
    pub chain_index: sled::Tree,
    pub output_log: sled::Tree,
    pub forks: sled::Tree,
    pub rejections: sled::Tree,
    pub meta: sled::Tree,
    pub tlog: sled::Tree,
    pub log_forks: sled::Tree,
    files: SledFiles,
}

impl SledIndex {
    /// Opens (or creates) the index in `dir`, durably created.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        durable_fs::create_private_dir_all(dir)?;
        // sled's periodic flusher is off: every commit flushes (and syncs) explicitly, and the
        // flusher is a thread per database that wakes twice a second even when idle.
        // A database dropped a moment ago in this process (an in-process node restarting) may
        // still hold its file lock while sled's background threads wind down: retry briefly.
        let mut attempts = 0;
        let db = loop {
            match sled::Config::new().path(dir).flush_every_ms(None).open() {
                Ok(db) => break db,
                Err(error) if attempts < 60 && error.to_string().contains("could not acquire lock") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(StoreError::Engine(format!(
                        "cannot open store index at {}: {error} (is another kairan process using it?)",
                        dir.display()
                    )));
                }
            }
        };
        refuse_per_origin_layout(&db, dir)?;
        let tree = |name: &str| db.open_tree(name).map_err(engine);
        let index = Self {
            delivery_index: tree("delivery_index")?,
            chain_index: tree("chain_index")?,
            output_log: tree("output_log")?,
            forks: tree("forks")?,
            rejections: tree("rejections")?,
            meta: tree("meta")?,
            tlog: tree("tlog")?,
            log_forks: tree("log_forks")?,
            files: SledFiles::new(dir)?,
            db,
        };
        // Whatever sled created while opening (its data file, `conf`, `blobs/`) is made durable
        // once here.
        index.db.flush().map_err(engine)?;
        index.files.sync()?;
        Ok(index)
    }

    /// The log position the index covers (the start of the log when new).
    pub fn indexed_upto(&self) -> Result<Position, StoreError> {
        match self.meta.get(INDEXED_UPTO).map_err(engine)? {
            Some(bytes) => Position::from_bytes(&bytes)
                .ok_or_else(|| StoreError::Corrupt { tree: "meta", reason: "indexed_upto".into() }),
            None => Ok(Position::START),
        }
    }

    /// Indexes a delivery stored at `location`.
    pub fn put_delivery(
        &self,
        digest: &Digest,
        origin: &str,
        scope: &str,
        seq: u64,
        relay_seq: u64,
        location: Location,
    ) -> Result<(), StoreError> {
        let mut entry = Vec::with_capacity(32 + Location::ENCODED_LEN);
        entry.extend_from_slice(digest.as_bytes());
        entry.extend_from_slice(&location.to_bytes());
        self.delivery_index.insert(digest.as_bytes(), &location.to_bytes()).map_err(engine)?;
        self.chain_index.insert(chain_key(origin, scope, seq), &digest.as_bytes()[..]).map_err(engine)?;
        self.output_log.insert(relay_seq.to_be_bytes(), entry).map_err(engine)?;
        Ok(())
    }

    /// Indexes a fork stored at `location`.
    pub fn put_fork(&self, digest: &Digest, location: Location) -> Result<(), StoreError> {
        self.forks.insert(digest.as_bytes(), &location.to_bytes()).map_err(engine).map(drop)
    }

    /// Keeps the stored hashes of one append (they are small: kept in the index itself, and
    /// rebuilt from the log's tree-hashes record like every other entry).
    pub fn put_tree_hashes(&self, hashes: &[(NodeIndex, Hash)]) -> Result<(), StoreError> {
        for (node, hash) in hashes {
            self.tlog.insert(node.to_key(), &hash.0[..]).map_err(engine)?;
        }
        Ok(())
    }

    /// Indexes a log-fork record stored at `location`.
    pub fn put_log_fork(&self, id: &Digest, location: Location) -> Result<(), StoreError> {
        self.log_forks.insert(id.as_bytes(), &location.to_bytes()).map_err(engine).map(drop)
    }

    /// The number of leaves hashed: one past the last level-0 key.
    pub fn tree_size(&self) -> Result<u64, StoreError> {
        let mut leaves = self.tlog.range(NodeIndex::new(0, 0).to_key()..NodeIndex::new(1, 0).to_key());
        match leaves.next_back().transpose().map_err(engine)? {
            Some((key, _)) => {
                let node = NodeIndex::from_key(&key)
                    .ok_or_else(|| StoreError::Corrupt { tree: "tlog", reason: "bad key".into() })?;
                Ok(node.index + 1)
            }
            None => Ok(0),
        }
    }

    /// The stored hashes at `nodes`.
    pub fn tree_hashes(&self, nodes: &[NodeIndex]) -> Result<Vec<Hash>, StoreError> {
        nodes
            .iter()
            .map(|node| {
                let bytes =
                    self.tlog.get(node.to_key()).map_err(engine)?.ok_or_else(|| StoreError::Corrupt {
                        tree: "tlog",
                        reason: format!("no stored hash at level {} index {}", node.level, node.index),
                    })?;
                let hash: [u8; 32] = bytes[..].try_into().map_err(|_| StoreError::Corrupt {
                    tree: "tlog",
                    reason: format!("hash of {} bytes", bytes.len()),
                })?;
                Ok(Hash(hash))
            })
            .collect()
    }

    /// Indexes a blob stored at `location`.
    pub fn put_blob(&self, name: &str, location: Location) -> Result<(), StoreError> {
        self.meta.insert(format!("blob/{name}"), &location.to_bytes()).map_err(engine).map(drop)
    }

    /// Sets a named cursor.
    pub fn put_cursor(&self, name: &str, value: u64) -> Result<(), StoreError> {
        self.meta.insert(format!("cursor/{name}"), &value.to_be_bytes()).map_err(engine).map(drop)
    }

    /// Records that the index covers the log up to `end` (written after the entries it covers).
    pub fn put_indexed_upto(&self, end: Position) -> Result<(), StoreError> {
        self.meta.insert(INDEXED_UPTO, &end.to_bytes()).map_err(engine).map(drop)
    }

    /// Keeps a rejection (the most recent [`MAX_REJECTIONS_KEPT`]).
    pub fn put_rejection(&self, rejection: &Rejection) -> Result<(), StoreError> {
        let id = self.db.generate_id().map_err(engine)?;
        let value = serde_json::to_vec(rejection).unwrap_or_default();
        self.rejections.insert(id.to_be_bytes(), value).map_err(engine)?;
        if let Some(oldest_kept) = id.checked_sub(MAX_REJECTIONS_KEPT) {
            for entry in self.rejections.range(..oldest_kept.to_be_bytes()) {
                let (key, _) = entry.map_err(engine)?;
                self.rejections.remove(key).map_err(engine)?;
            }
        }
        Ok(())
    }

    /// Where a delivery is.
    pub fn location_of(&self, digest: &Digest) -> Result<Option<Location>, StoreError> {
        match self.delivery_index.get(digest.as_bytes()).map_err(engine)? {
            Some(bytes) => Ok(Some(location_from("delivery_index", &bytes)?)),
            None => Ok(None),
        }
    }

    /// A named cursor (0 if never set).
    pub fn cursor(&self, name: &str) -> Result<u64, StoreError> {
        match self.meta.get(format!("cursor/{name}")).map_err(engine)? {
            Some(bytes) => u64_from("meta", &bytes),
            None => Ok(0),
        }
    }

    /// Where a named blob is.
    pub fn blob_location(&self, name: &str) -> Result<Option<Location>, StoreError> {
        match self.meta.get(format!("blob/{name}")).map_err(engine)? {
            Some(bytes) => Ok(Some(location_from("meta", &bytes)?)),
            None => Ok(None),
        }
    }

    /// sled's `flush` (written and `sync_file_range`d: enough for a process crash), then,
    /// when `power_cut_durable`, [`SledFiles::sync`].
    pub fn flush(&self, power_cut_durable: bool) -> Result<(), StoreError> {
        // Not sled's `flush_async`: it waits for the log on sled's own I/O pool, the pool that
        // also writes the log, so enough concurrent flushes (many stores in one process)
        // occupy every pool thread and never return (spacejam/sled#1308). Callers run
        // `commit` on a blocking thread.
        self.db.flush().map_err(engine)?;
        if power_cut_durable { self.files.sync() } else { Ok(()) }
    }
}

/// sled's files, made durable after its flush.
#[derive(Debug)]
struct SledFiles {
    dir: PathBuf,
    data: File,
    /// Files already synced (names relative to `dir`), so each new one is synced once.
    synced: Mutex<HashSet<PathBuf>>,
}

impl SledFiles {
    fn new(dir: &Path) -> Result<Self, StoreError> {
        // sled 0.34 keeps its whole log in this one file.
        let path = dir.join("db");
        let data = File::open(&path).map_err(|e| io_error(&path, e))?;
        Ok(Self { dir: dir.to_owned(), data, synced: Mutex::new(HashSet::new()) })
    }

    /// `fdatasync` of the data file (the disk's cache and the file size too), and `fsync`
    /// of every file sled created since the last call and of the directories holding them.
    fn sync(&self) -> Result<(), StoreError> {
        self.data.sync_data().map_err(|e| io_error(&self.dir.join("db"), e))?;
        let mut synced = self.synced.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for dir in [self.dir.clone(), self.dir.join("blobs")] {
            let Ok(listing) = std::fs::read_dir(&dir) else { continue };
            let mut new_names = false;
            for entry in listing {
                let path = entry.map_err(|e| io_error(&dir, e))?.path();
                if path.is_file() && !synced.contains(&path) {
                    // Blobs and snapshots are written once and never changed in place.
                    File::open(&path).and_then(|f| f.sync_all()).map_err(|e| io_error(&path, e))?;
                    synced.insert(path);
                    new_names = true;
                }
            }
            if new_names {
                durable_fs::sync_dir(&dir)?;
            }
        }
        // Removed blobs and snapshots need not be remembered.
        synced.retain(|path| path.exists());
        Ok(())
    }
}

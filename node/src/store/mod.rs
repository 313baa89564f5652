//! Durable state of a node or a clinic, behind the [`Store`] trait.
//!
//! What a node keeps: accepted deliveries by digest (for a relay, the delivery *with its own
//! hop*, exactly as forwarded; for a clinic, as received), the per-chain index
//! `(origin, scope, seq) → digest` (sequence numbers count per chain: `docs/protocol.md` §11), the relay's output log `relay_seq → digest`, rejections with
//! their reason, forks kept for audit, and named cursors and blobs (trust material).
//!
//! The output log is also the node's **transparency log** (RFC 9162 tree hashing,
//! `docs/protocol.md` §18): leaf `i` (0-based) is the exact stored delivery bytes at
//! `relay_seq = i + 1`, so anyone holding a delivery can check its inclusion. The store keeps
//! the hash of every complete subtree ([`WriteOp::TreeHashes`], what
//! `kairan_protocol::tlog::Frontier::append` returns), written in the same batch as the
//! [`WriteOp::Accepted`] record it covers and durable with it; the machine rebuilds its frontier
//! from them at restart ([`RestoredState::tree`]). Checkpoints signed for the log, the parent's
//! last verified checkpoint and the evidence of a parent's inconsistent logs
//! ([`LogForkRecord`]) are kept too.
//!
//! Writes reach a store only as a [`WriteBatch`] through [`Store::commit`], which returns once
//! the whole batch is durable — on a power cut too, not only a process crash: the state
//! machine decides, the driver commits, and only then does anything leave the node (an
//! acknowledgement upstream, a forward downstream). Each accepted delivery and its index
//! entries are applied together: there is never a half-stored delivery.
//!
//! ## Layout
//! - [`disk_store`]: [`DiskStore`], the product's store: a segment log and a sled index.
//! - [`segment_log`]: the append-only log of CRC-framed records in segment files.
//! - [`log_record`]: the records a node writes into its log.
//! - [`sled_index`]: the index and small records on sled, and the syncs sled omits.
//! - [`durable_fs`]: `fdatasync`, directory `fsync`, private directories, durable file writes.
//! - `legacy`: the layout before the segment log (sled alone), migrated at open.
//! - [`mem_store`]: [`MemStore`], the same contract in memory (the simulator, unit tests).
//! - [`audit`]: `kairan audit log`, the transparency log checked offline from the segment log.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use kairan_protocol::sequence::{ChainHead, ChainId};
use kairan_protocol::tlog::{Frontier, Hash, HashReader, NodeIndex, leaf_hash};
use kairan_protocol::{Digest, Timestamp};

pub mod audit;
pub mod disk_store;
pub mod durable_fs;
mod legacy;
pub mod log_record;
pub mod mem_store;
pub mod segment_log;
mod sled_index;

pub use disk_store::DiskStore;
pub use mem_store::MemStore;

/// Cursor name of the parent's output log position a node has caught up to.
pub const SYNC_CURSOR: &str = "sync";
/// Cursor name of the highest relay_seq the node's own broker confirmed.
pub const PUBLISHED_CURSOR: &str = "published";
/// Blob name of the trust bundle in force.
pub const TRUST_BLOB: &str = "trust_bundle";
/// Blob name of the latest checkpoint this node signed for its own log (a signed note).
pub const CHECKPOINT_BLOB: &str = "tlog_checkpoint";
/// Blob name of the latest checkpoint of the parent's log this node verified (a signed note).
pub const PARENT_CHECKPOINT_BLOB: &str = "tlog_parent_checkpoint";
/// Rejections kept (the most recent ones): a flood of bad input cannot fill the disk.
pub const MAX_REJECTIONS_KEPT: u64 = 10_000;

/// An accepted delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelivery {
    /// Advisory digest.
    pub digest: Digest,
    /// Origin id.
    pub origin: String,
    /// Sequence number in its chain (origin, scope).
    pub seq: u64,
    /// Advisory scope (with the origin, the chain).
    pub scope: String,
    /// The relay's output sequence number (for a clinic: its inbox sequence number).
    pub relay_seq: u64,
    /// When it arrived here.
    pub received_at: Timestamp,
    /// The delivery JSON: as forwarded (relay) or as received (clinic). Shared, not copied,
    /// between the store, the forward queue and (in the simulator) every clinic of a district.
    #[serde(with = "utf8_bytes")]
    pub delivery: Bytes,
}

/// Delivery JSON is UTF-8 (it was parsed as JSON before it was stored): kept as a string in
/// the stored record so the record stays readable JSON.
mod utf8_bytes {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&String::from_utf8_lossy(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        String::deserialize(deserializer).map(Bytes::from)
    }
}

/// A refused input, kept with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// When it was refused.
    pub at: Timestamp,
    /// The digest the input claimed (never trusted; absent if it did not even parse).
    pub claimed_digest: Option<Digest>,
    /// Stable reason code (`bad_signature`, `scope_violation`, …).
    pub code: String,
    /// Human explanation.
    pub message: String,
    /// Where it came from (topic).
    pub source: String,
    /// Size of the input in bytes.
    pub size: usize,
}

/// A second advisory for a sequence number already taken in its chain (origin, scope): kept
/// for audit, never forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkRecord {
    /// Digest of the conflicting advisory.
    pub digest: Digest,
    /// Origin id.
    pub origin: String,
    /// The chain's scope (the advisory's). Empty in records written before chains were per
    /// scope.
    #[serde(default)]
    pub scope: String,
    /// The contested sequence number (in the chain).
    pub seq: u64,
    /// The digest held for that sequence number.
    pub held: Option<Digest>,
    /// When it was seen.
    pub at: Timestamp,
    /// The delivery JSON as received.
    pub delivery: String,
}

/// Evidence that a parent showed this node two checkpoints of its log that no append-only log
/// can both have signed: same size and different roots, or a consistency proof that fails.
/// Both notes are signed by the parent's key, so the record convinces anyone; kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogForkRecord {
    /// The parent's node id.
    pub parent: String,
    /// The checkpoint held (verified and accepted earlier), as a signed note.
    pub held: String,
    /// The checkpoint shown now, signed by the same key, as a signed note.
    pub shown: String,
    /// The consistency proof the parent gave from the held size (base64 hashes).
    pub proof: Vec<String>,
    /// The parent's signed page statement that carried `shown` and `proof` (it binds the
    /// proof: see `kairan_protocol::sync::PageStatement::tlog`), as envelope JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// Why the two cannot both be true.
    pub reason: String,
    /// For a checkpoint that does not include a delivery the parent forwarded (`held` and
    /// `shown` are then that one checkpoint): the leaf, `<index> <base64 leaf hash>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<String>,
    /// When it was seen.
    pub at: Timestamp,
}

impl LogForkRecord {
    /// The record's key: the digest of both notes (the same pair is kept once).
    pub fn id(&self) -> Digest {
        Digest::of(format!("{}\n{}", self.held, self.shown).as_bytes())
    }
}

/// One write of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// An accepted delivery with its index entries.
    Accepted(StoredDelivery),
    /// A rejection (the store keeps the most recent [`MAX_REJECTIONS_KEPT`]).
    Rejection(Rejection),
    /// A fork kept for audit.
    Fork(ForkRecord),
    /// A named cursor.
    Cursor(&'static str, u64),
    /// A named blob.
    Blob(&'static str, Vec<u8>),
    /// Stored hashes of the transparency log: the complete subtrees one append created
    /// (`Frontier::append`), in the batch of the [`WriteOp::Accepted`] record of that leaf.
    TreeHashes(Vec<(NodeIndex, Hash)>),
    /// Evidence of a parent's inconsistent logs, kept for audit.
    LogFork(LogForkRecord),
}

/// Writes that become durable together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The writes, in the order they were decided.
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The highest relay_seq of an accepted delivery in the batch.
    pub fn last_relay_seq(&self) -> Option<u64> {
        self.ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Accepted(record) => Some(record.relay_seq),
                _ => None,
            })
            .max()
    }
}

/// What a node resumes from after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredState {
    /// Head of each chain (origin, scope): its highest sequence number held.
    pub heads: Vec<(ChainId, ChainHead)>,
    /// Every `(chain, seq, digest)` held.
    pub held: Vec<(ChainId, u64, Digest)>,
    /// Last relay sequence number used.
    pub last_relay_seq: u64,
    /// The catch-up cursor ([`SYNC_CURSOR`]).
    pub sync_cursor: u64,
    /// The publisher's confirmed cursor ([`PUBLISHED_CURSOR`]).
    pub published: u64,
    /// The stored trust bundle ([`TRUST_BLOB`]), if any.
    pub trust_bundle: Option<Vec<u8>>,
    /// The certificates carried by the newest stored delivery (a relay's signed catch-up
    /// pages carry those of the relays above it).
    pub chain: Vec<kairan_protocol::Envelope>,
    /// The frontier of the transparency log over the output log ([`restore_tree`]).
    pub tree: Frontier,
    /// The latest checkpoint this node signed ([`CHECKPOINT_BLOB`]).
    pub checkpoint: Option<Vec<u8>>,
    /// The latest verified checkpoint of the parent's log ([`PARENT_CHECKPOINT_BLOB`]).
    pub parent_checkpoint: Option<Vec<u8>>,
}

impl RestoredState {
    /// Takes the certificates of `newest` (the newest stored delivery), if it parses.
    pub fn take_chain(&mut self, newest: Option<&StoredDelivery>) {
        if let Some(delivery) = newest.and_then(|r| kairan_protocol::Delivery::from_json(&r.delivery).ok()) {
            self.chain = delivery.certs;
        }
    }

    /// Adds a held `(chain, seq, digest)`; entries must come grouped by chain, each chain's
    /// in seq order, so that the last of a chain is its head.
    pub fn push_held(&mut self, chain: ChainId, seq: u64, digest: Digest) {
        match self.heads.last_mut() {
            Some((last, head)) if *last == chain => *head = ChainHead { seq, digest },
            _ => self.heads.push((chain.clone(), ChainHead { seq, digest })),
        }
        self.held.push((chain, seq, digest));
    }
}

/// A store error: the node cannot continue safely and stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed.
    #[error("store: {0}")]
    Engine(String),
    /// A file of the store could not be read, written or synced.
    #[error("store: {path}: {source}")]
    Io {
        /// The file or directory.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// A record did not decode (corruption or a bug).
    #[error("store: corrupt record in {tree}: {reason}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// What failed.
        reason: String,
    },
}

impl From<kairan_protocol::Error> for StoreError {
    fn from(error: kairan_protocol::Error) -> Self {
        StoreError::Corrupt { tree: "tlog", reason: error.to_string() }
    }
}

/// A store's tree hashes as a [`HashReader`], for proofs and tree heads.
#[derive(Debug, Clone, Copy)]
pub struct TreeReader<'a, S>(pub &'a S);

impl<S: Store> HashReader for TreeReader<'_, S> {
    type Error = StoreError;

    fn read_hashes(&self, nodes: &[NodeIndex]) -> Result<Vec<Hash>, StoreError> {
        self.0.tree_hashes(nodes)
    }
}

/// Leaves hashed per batch when [`restore_tree`] fills in missing hashes.
const BACKFILL_CHUNK: usize = 256;

/// The frontier of the transparency log of `store`, whose output log ends at
/// `last_relay_seq`. A store written before the log existed has deliveries without stored
/// hashes: they are hashed from the stored deliveries and committed here, once. Stops at the
/// first hole in the output log (relay_seqs are consecutive; a hole is reported by the
/// machine when it appends the next leaf).
pub fn restore_tree<S: Store>(store: &S, last_relay_seq: u64) -> Result<Frontier, StoreError> {
    let size = store.tree_size()?;
    if size > last_relay_seq {
        return Err(StoreError::Corrupt {
            tree: "tlog",
            reason: format!("{size} leaves hashed but the output log ends at {last_relay_seq}"),
        });
    }
    let mut frontier = Frontier::load(size, &TreeReader(store))?;
    while frontier.size() < last_relay_seq {
        let mut ops = Vec::new();
        for record in store.log_after(frontier.size(), BACKFILL_CHUNK)? {
            if record.relay_seq != frontier.size() + 1 {
                break;
            }
            ops.push(WriteOp::TreeHashes(frontier.append(leaf_hash(&record.delivery))?));
        }
        if ops.is_empty() {
            break;
        }
        store.commit(&WriteBatch { ops })?;
    }
    Ok(frontier)
}

/// Durable node state. See the module docs for the guarantees. Implementations are cheap
/// handles (clones share the same store) so a driver can commit on a blocking thread.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies every write of `batch` and returns once all of it is durable.
    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError>;
    /// Whether a delivery with this digest is held.
    fn contains(&self, digest: &Digest) -> Result<bool, StoreError>;
    /// The delivery with this digest.
    fn get(&self, digest: &Digest) -> Result<Option<StoredDelivery>, StoreError>;
    /// Deliveries of the output log after `relay_seq`, at most `limit`, in order.
    fn log_after(&self, relay_seq: u64, limit: usize) -> Result<Vec<StoredDelivery>, StoreError>;
    /// Every stored delivery, in output-log order.
    fn all(&self) -> Result<Vec<StoredDelivery>, StoreError> {
        self.log_after(0, usize::MAX)
    }
    /// All rejections, oldest first.
    fn rejections(&self) -> Result<Vec<Rejection>, StoreError>;
    /// All forks.
    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError>;
    /// Every kept [`LogForkRecord`].
    fn log_forks(&self) -> Result<Vec<LogForkRecord>, StoreError>;
    /// The stored tree hashes at `nodes`, in the same order; a missing one is corruption.
    fn tree_hashes(&self, nodes: &[NodeIndex]) -> Result<Vec<Hash>, StoreError>;
    /// The number of leaves whose hashes are stored.
    fn tree_size(&self) -> Result<u64, StoreError>;
    /// A named cursor (0 if never set).
    fn cursor(&self, name: &str) -> Result<u64, StoreError>;
    /// A named blob.
    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The state a node resumes from.
    fn restore(&self) -> Result<RestoredState, StoreError>;
    /// Checks every record decodes and every index entry points at a held delivery; returns
    /// the number of deliveries held.
    fn check_integrity(&self) -> Result<usize, StoreError>;
}

//! Durable state of a node or a clinic, behind the [`Store`] trait.
//!
//! What a node keeps: accepted deliveries by digest (for a relay, the delivery *with its own
//! hop*, exactly as forwarded; for a clinic, as received), the per-origin index
//! `(origin, seq) → digest`, the relay's output log `relay_seq → digest`, rejections with
//! their reason, forks kept for audit, and named cursors and blobs (trust material).
//!
//! [`Store::put_accepted`] writes the delivery and all its index entries in one transaction:
//! there is never a half-stored delivery. Nothing is durable until [`Store::flush`] returns;
//! callers flush before acknowledging upstream and before forwarding.

use std::future::Future;

use serde::{Deserialize, Serialize};

use kairan_protocol::sequence::ChainHead;
use kairan_protocol::{Digest, Timestamp};

mod sled_store;

pub use sled_store::SledStore;

/// An accepted delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelivery {
    /// Advisory digest.
    pub digest: Digest,
    /// Origin id.
    pub origin: String,
    /// Origin sequence number.
    pub seq: u64,
    /// Advisory scope.
    pub scope: String,
    /// The relay's output sequence number (for a clinic: its inbox sequence number).
    pub relay_seq: u64,
    /// When it arrived here.
    pub received_at: Timestamp,
    /// The delivery JSON: as forwarded (relay) or as received (clinic).
    pub delivery: String,
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

/// A second advisory for an origin sequence number already taken: kept for audit, never
/// forwarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForkRecord {
    /// Digest of the conflicting advisory.
    pub digest: Digest,
    /// Origin id.
    pub origin: String,
    /// The contested sequence number.
    pub seq: u64,
    /// The digest held for that sequence number.
    pub held: Option<Digest>,
    /// When it was seen.
    pub at: Timestamp,
    /// The delivery JSON as received.
    pub delivery: String,
}

/// What a core needs to resume after a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredState {
    /// Head of each origin's chain (highest sequence number held).
    pub heads: Vec<(String, ChainHead)>,
    /// Every `(origin, seq, digest)` held.
    pub held: Vec<(String, u64, Digest)>,
    /// Last relay sequence number used.
    pub last_relay_seq: u64,
}

/// A store error: the node cannot continue safely and stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed.
    #[error("store: {0}")]
    Engine(String),
    /// A record did not decode (corruption or a bug).
    #[error("store: corrupt record in {tree}: {reason}")]
    Corrupt {
        /// Which tree.
        tree: &'static str,
        /// What failed.
        reason: String,
    },
}

/// Durable node state. See the module docs for the guarantees.
pub trait Store: Send + Sync + 'static {
    /// Whether a delivery with this digest is held.
    fn contains(&self, digest: &Digest) -> Result<bool, StoreError>;
    /// The delivery with this digest.
    fn get(&self, digest: &Digest) -> Result<Option<StoredDelivery>, StoreError>;
    /// Stores an accepted delivery and its index entries atomically.
    fn put_accepted(&self, record: &StoredDelivery) -> Result<(), StoreError>;
    /// Records a rejection; returns its number.
    fn put_rejection(&self, rejection: &Rejection) -> Result<u64, StoreError>;
    /// Records a fork for audit.
    fn put_fork(&self, fork: &ForkRecord) -> Result<(), StoreError>;
    /// All rejections, oldest first.
    fn rejections(&self) -> Result<Vec<Rejection>, StoreError>;
    /// All forks.
    fn forks(&self) -> Result<Vec<ForkRecord>, StoreError>;
    /// Deliveries of the output log after `relay_seq`, at most `limit`, in order.
    fn log_after(&self, relay_seq: u64, limit: usize) -> Result<Vec<StoredDelivery>, StoreError>;
    /// Every stored delivery, in output-log order.
    fn all(&self) -> Result<Vec<StoredDelivery>, StoreError> {
        self.log_after(0, usize::MAX)
    }
    /// The state a core resumes from.
    fn restore(&self) -> Result<RestoredState, StoreError>;
    /// A named counter (e.g. the highest relay_seq confirmed published downstream).
    fn cursor(&self, name: &str) -> Result<u64, StoreError>;
    /// Sets a named counter.
    fn set_cursor(&self, name: &str, value: u64) -> Result<(), StoreError>;
    /// A named blob (trust material).
    fn blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets a named blob.
    fn set_blob(&self, name: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Makes everything written so far durable.
    fn flush(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Checks every record decodes and every index entry points at a held delivery.
    fn check_integrity(&self) -> Result<usize, StoreError>;
}

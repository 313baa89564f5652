//! What the state machine asks of its driver ([`Action`]) and what it reports ([`Event`]).
//!
//! The machine never performs I/O: it returns actions, and the driver (the async daemon, or
//! the simulator) performs each one and feeds the result back through a `handle_*` method —
//! a commit through [`super::Machine::handle_committed`], a read through
//! [`super::Machine::handle_read`], a downstream acknowledgement through
//! [`super::Machine::handle_downstream_acked`].

use bytes::Bytes;

use kairan_protocol::sequence::{ChainId, SeqDecision};
use kairan_protocol::sync::{SyncRequest, SyncResponse};
use kairan_protocol::{Delivery, Digest, Timestamp, Verified};

use crate::store::{ForkRecord, Rejection, StoredDelivery, WriteBatch};

/// Identifies an upstream message so the driver can acknowledge it when told to.
pub type MsgId = u64;

/// The two MQTT connections of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// To the parent's broker (for the national node: its own broker's ingest side). Input
    /// arrives here; catch-up requests leave here.
    Upstream,
    /// To the node's own broker, where its children read (relays only).
    Downstream,
}

/// MQTT quality of service of an outgoing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Fire and forget: retained state, catch-up traffic (a lost one is asked for again).
    AtMostOnce,
    /// Acknowledged by the broker: deliveries.
    AtLeastOnce,
}

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Which connection.
    pub link: Link,
    /// The topic (built by [`crate::topics`]).
    pub topic: String,
    /// The bytes.
    pub payload: Bytes,
    /// QoS.
    pub qos: Qos,
    /// Retained.
    pub retain: bool,
}

/// A read the machine needs from the store; the driver answers with
/// [`super::Machine::handle_read`] (see [`super::query::run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Output log entries after `after`, up to `upto` (inclusive), at most `limit`.
    Log {
        /// Exclusive start.
        after: u64,
        /// Inclusive end: the last durable relay_seq.
        upto: u64,
        /// Most entries.
        limit: usize,
    },
    /// A catch-up page answering `request`, from entries up to `upto` (the last durable one).
    Page {
        /// The child's request.
        request: SyncRequest,
        /// Inclusive end: the last durable relay_seq.
        upto: u64,
        /// The checkpoint to send and the size to prove its consistency from, when the child
        /// asked (`request.tlog`) and this node has signed one.
        tlog: Option<LogQuery>,
    },
}

/// The log part of a [`Query::Page`]: the checkpoint, and the consistency proof to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    /// The signed checkpoint note (of a durable tree: its hashes are stored).
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// The size the child verified: the proof starts there (none past `size`).
    pub from: u64,
    /// Leaves whose inclusion proofs the child asked for (those below `size` are proved).
    pub prove: Vec<u64>,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadResult {
    /// Answer to [`Query::Log`].
    Log(Vec<StoredDelivery>),
    /// Answer to [`Query::Page`] (boxed: a page is far larger than the other results).
    Page(Box<SyncResponse>),
}

/// What the driver must do.
#[derive(Debug)]
pub enum Action {
    /// Apply `batch` durably (one `fsync` for all of it), then call
    /// [`super::Machine::handle_committed`] with `id`. At most one commit is in flight.
    Commit {
        /// Batch number.
        id: u64,
        /// The writes.
        batch: WriteBatch,
    },
    /// Acknowledge this upstream message (it is durable, or needs no write).
    Ack(MsgId),
    /// Publish a message.
    Publish(Outgoing),
    /// Read from the store, then call [`super::Machine::handle_read`] with `id`.
    Read {
        /// Read number.
        id: u64,
        /// What to read.
        query: Query,
    },
    /// Something happened: log it, count it, show it.
    Report(Event),
}

/// An accepted delivery, reported once it is durable.
#[derive(Debug)]
pub struct Accepted {
    /// What was stored (for a relay, the delivery with this relay's hop, as forwarded).
    pub record: StoredDelivery,
    /// The verified delivery as received.
    pub verified: Verified<Delivery>,
    /// Where it sits in its origin's chain.
    pub sequence: SeqDecision,
    /// The topic it came on, or `sync` for a catch-up page.
    pub source: String,
}

/// Something the machine decided or noticed. Durable outcomes are reported only after the
/// commit that holds them.
#[derive(Debug)]
pub enum Event {
    /// A delivery was verified, stored and is durable.
    Accepted(Box<Accepted>),
    /// A delivery already held was dropped.
    Duplicate {
        /// Its digest.
        digest: Digest,
    },
    /// Input was refused; the rejection is durable.
    Rejected(Rejection),
    /// An origin signed two advisories for one sequence number; kept for audit.
    Fork(Box<ForkRecord>),
    /// Input cannot be processed now (this relay's own certificate is unusable): left
    /// unacknowledged for redelivery.
    Held {
        /// Why.
        reason: String,
    },
    /// Advisories of a chain (origin, scope) are missing here (a sequence jump, or a head
    /// ahead of what is held); catch-up was asked for.
    Gap {
        /// The chain.
        chain: ChainId,
        /// First missing sequence number.
        from: u64,
        /// Last missing sequence number.
        to: u64,
        /// A head said so (rather than a later advisory).
        from_head: bool,
    },
    /// Input refused only because of this node's clock (not valid yet): held and tried again.
    Deferred {
        /// The reason code it would be refused with.
        code: String,
        /// Explanation.
        message: String,
    },
    /// A newer signed head of a chain was accepted (and republished by a relay).
    HeadNewer {
        /// The chain.
        chain: ChainId,
        /// Its sequence number.
        seq: u64,
        /// When the origin signed it (the age of a feed is measured from here).
        issued_at: Timestamp,
    },
    /// A signed head was refused; the rejection is durable.
    HeadRefused(Rejection),
    /// A chain's newest head expired with no fresher one: its feed is frozen or withheld.
    FeedFrozen {
        /// The chain.
        chain: ChainId,
        /// The head's sequence number.
        seq: u64,
        /// When it expired.
        expired_at: Timestamp,
    },
    /// A new trust bundle is in force and durable.
    TrustUpdated {
        /// Revoked keys in force.
        revoked_keys: usize,
        /// Anchor rotations in force.
        rotations: usize,
    },
    /// A trust bundle, or one statement of a bundle otherwise applied, was refused; what
    /// was refused changed nothing.
    TrustRefused {
        /// Reason code.
        code: &'static str,
        /// Explanation.
        message: String,
    },
    /// The stored trust bundle no longer verifies; the node started without it.
    TrustStoreWarning(String),
    /// A catch-up page was applied and is durable.
    CatchUpPage {
        /// Deliveries in it.
        received: usize,
        /// The cursor after it.
        cursor: u64,
        /// The parent's latest relay_seq.
        parent_latest: u64,
    },
    /// The parent's log ends before this node's catch-up cursor (it lost data or was
    /// restored from an older copy): the cursor moves back to the parent's end.
    ParentBehind {
        /// The cursor before.
        cursor: u64,
        /// The parent's latest relay_seq.
        parent_latest: u64,
    },
    /// A catch-up answer to an older request was ignored.
    StalePage {
        /// Its `after`.
        after: u64,
        /// The current cursor.
        cursor: u64,
    },
    /// A catch-up answer did not parse.
    PageRefused(String),
    /// A child's catch-up request was answered.
    SyncAnswered {
        /// The child.
        child: String,
        /// Its `after`.
        after: u64,
        /// Deliveries sent.
        sent: usize,
        /// How far the page scanned.
        scanned_upto: u64,
        /// This relay's last durable relay_seq when it answered (the page's `last_relay_seq`):
        /// the child was this far behind minus `after`.
        last_relay_seq: u64,
    },
    /// A child's catch-up request was not answered.
    SyncDropped {
        /// The child.
        child: String,
        /// Why (rate limit, malformed, repeat).
        reason: String,
    },
    /// Refused input is arriving faster than the refusal budget: input is slowed down.
    Throttling {
        /// The input topic.
        source: String,
    },
    /// A delivery was published to the node's own broker.
    Forwarded {
        /// Digest.
        digest: Digest,
        /// Output sequence number.
        relay_seq: u64,
        /// Topic.
        topic: String,
    },
    /// The store could not give back what the output log should hold.
    StoreAnomaly(String),
    /// This relay signed a checkpoint of its log: every entry it covers is durable.
    CheckpointSigned {
        /// Tree size.
        size: u64,
        /// Tree head.
        root: kairan_protocol::tlog::Hash,
    },
    /// A checkpoint of the parent's log verified and extends the one held.
    ParentLogVerified {
        /// Its size.
        size: u64,
    },
    /// A checkpoint of the parent's log smaller than the one held (replayed, or the parent
    /// lost data): ignored.
    ParentLogStale {
        /// The size held.
        held: u64,
        /// The size shown.
        shown: u64,
    },
    /// Deliveries accepted from the parent were proved included in its signed log.
    InclusionVerified {
        /// How many.
        count: usize,
    },
    /// A catch-up answer's checkpoint did not open with the parent's key, or its proof was
    /// malformed: ignored.
    ParentLogRefused(String),
    /// The parent showed two checkpoints of its log that no append-only log can both have
    /// signed: kept as evidence.
    LogFork(Box<crate::store::LogForkRecord>),
}

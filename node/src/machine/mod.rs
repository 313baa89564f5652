//! The node state machine: everything a relay or a clinic decides, with no I/O and no clock.
//!
//! In the manner of quinn-proto's `Connection`, a [`Machine`] takes inputs through `handle_*`
//! methods — a message on a topic, a connection coming up, a commit or a read completed, a
//! timer — each with `now`, and hands out what to do through [`Machine::poll_action`] (commit
//! these writes, acknowledge, publish, read) and when to wake it through
//! [`Machine::poll_timeout`]. The daemon's driver (`crate::mqtt::driver`) runs it over real
//! MQTT and sled; the simulator runs the very same machine over an in-memory store and a
//! simulated network.
//!
//! ```text
//!  upstream message ─┐                         ┌─▶ Commit(batch) ─▶ handle_committed
//!  upstream up      ─┤                         ├─▶ Ack(msg)
//!  downstream msg   ─┼─▶ handle_* ─▶ Machine ──┼─▶ Publish(link, topic, bytes)
//!  downstream ack   ─┤      (now)              ├─▶ Read(query) ─────▶ handle_read
//!  timer            ─┘                         └─▶ Report(event)      poll_timeout ─▶ timer
//! ```
//!
//! ## Layout
//! - [`io`]: [`Action`], [`Event`], [`Query`], [`ReadResult`] — the machine's vocabulary.
//! - [`acks`]: acknowledgements released in arrival order (MQTT 3.1.1 §4.6).
//! - [`decide`]: one delivery — verification, routing, deduplication, sequence, attestation.
//! - [`deferred`]: input refused only by this node's clock, held and tried again.
//! - [`pipeline`]: group commit; what waits for durability.
//! - [`catchup`]: the child side of catch-up (cursor, when to ask).
//! - [`serve`]: the parent side (which requests are answered, what a page holds).
//! - [`query`]: answers a [`Query`] from a [`crate::store::Store`] (driver and simulator).
//! - [`publisher`]: the downstream window of a relay.
//! - [`trust`]: the trust bundle in force.
//! - [`heads`]: signed heads and frozen feeds.
//! - [`limiter`]: token buckets and repeat detection.
//! - [`tlog`]: the node's transparency log and the check of its parent's.
//!
//! ## Invariants
//! Nothing leaves the node before the writes it depends on are durable: an upstream
//! acknowledgement, a forward, a catch-up answer (it covers only durable entries), a
//! republished trust bundle, a signed checkpoint. A refused input is recorded and never
//! forwarded.

pub mod acks;
pub mod catchup;
pub mod decide;
pub mod deferred;
pub mod heads;
pub mod io;
pub mod limiter;
pub mod pipeline;
pub mod publisher;
pub mod query;
pub mod serve;
pub mod tlog;
pub mod trust;

mod state;
#[cfg(test)]
mod tests;

pub use decide::{Attester, Identity, Upstream};
pub use io::{Accepted, Action, Event, Link, LogQuery, MsgId, Outgoing, Qos, Query, ReadResult};
pub use state::{Counters, Machine, MachineConfig};

use kairan_protocol::limits::MAX_DELIVERY_BYTES;

/// Largest MQTT packet sent or accepted: a maximal delivery plus topic and header room.
/// (rumqttc's default, 10 KiB, is far below a delivery with a full certificate chain.)
pub const MAX_PACKET_BYTES: usize = MAX_DELIVERY_BYTES + 16 * 1024;

/// The `source` of deliveries that arrive in catch-up pages.
pub const SYNC_SOURCE: &str = "sync";

/// Refused live inputs processed per input topic and second, sustained; past it the machine
/// slows its input down (nothing is dropped: the broker's in-flight window holds the rest).
pub const REFUSALS_PER_SEC: u32 = 200;
/// Refused live inputs processed per input topic in a burst before slowing down.
pub const REFUSALS_BURST: u32 = 200;

//! Group commit: what the machine decided, written durably in batches, and what must wait
//! for durability.
//!
//! Decisions append their writes to the open stage together with what may happen only once
//! those writes are durable — an acknowledgement upstream, a report, the next catch-up
//! request, a republished trust bundle. One commit is in flight at a time; while it is, new
//! decisions gather in the open stage, so a burst of input costs one `fsync` per batch rather
//! than one per message. Commits complete in order, so an effect never runs before the writes
//! of an earlier decision are durable either.

use super::io::{Event, MsgId};
use crate::store::{WriteBatch, WriteOp};

/// What waits for a commit.
#[derive(Debug)]
pub enum Effect {
    /// Acknowledge an upstream message.
    Ack(MsgId),
    /// Report an event.
    Report(Event),
    /// Ask the parent for the next catch-up page.
    RequestPage,
    /// Ask the parent to catch up after a gap (spaced).
    AskGap,
    /// Republish the trust pieces in force, retained, to the children.
    PublishTrust,
    /// Tell an origin, signed, that its advisory is stored (national node, ingest input).
    Acceptance {
        /// The origin (its ingest topic's).
        origin: String,
        /// The advisory digest.
        digest: kairan_protocol::Digest,
        /// When it was decided.
        at: kairan_protocol::Timestamp,
    },
}

/// Writes and the effects that wait for them.
#[derive(Debug, Default)]
struct Stage {
    batch: WriteBatch,
    effects: Vec<Effect>,
    /// Whether a commit is needed (a lazily written cursor alone does not need one).
    required: bool,
}

/// The open stage and the commit in flight.
#[derive(Debug, Default)]
pub struct Pipeline {
    next_id: u64,
    open: Stage,
    in_flight: Option<(u64, Vec<Effect>)>,
}

impl Pipeline {
    /// Adds a write that must be committed, with the effects that wait for it.
    pub fn write(&mut self, op: WriteOp, effects: impl IntoIterator<Item = Effect>) {
        self.open.batch.ops.push(op);
        self.open.effects.extend(effects);
        self.open.required = true;
    }

    /// Adds a write that rides with the next commit (it needs no commit of its own). A later
    /// value of the same cursor or blob replaces an earlier one still open.
    pub fn write_lazily(&mut self, op: WriteOp) {
        match &op {
            WriteOp::Cursor(name, _) => {
                self.open
                    .batch
                    .ops
                    .retain(|existing| !matches!(existing, WriteOp::Cursor(n, _) if n == name));
            }
            WriteOp::Blob(name, _) => {
                self.open.batch.ops.retain(|existing| !matches!(existing, WriteOp::Blob(n, _) if n == name));
            }
            _ => {}
        }
        self.open.batch.ops.push(op);
    }

    /// Adds effects that must wait for every write decided so far. Returns them for running
    /// at once when nothing is open or in flight.
    #[must_use]
    pub fn after_writes(&mut self, effects: impl IntoIterator<Item = Effect>) -> Vec<Effect> {
        if self.open.required {
            self.open.effects.extend(effects);
            Vec::new()
        } else if let Some((_, waiting)) = &mut self.in_flight {
            waiting.extend(effects);
            Vec::new()
        } else {
            effects.into_iter().collect()
        }
    }

    /// The next batch to commit, if one is due and none is in flight (`force`: commit lazily
    /// written data too, e.g. at shutdown).
    pub fn next_commit(&mut self, force: bool) -> Option<(u64, WriteBatch)> {
        let due = self.open.required || (force && !self.open.batch.is_empty());
        if self.in_flight.is_some() || !due {
            return None;
        }
        self.next_id += 1;
        let stage = std::mem::take(&mut self.open);
        self.in_flight = Some((self.next_id, stage.effects));
        Some((self.next_id, stage.batch))
    }

    /// The batch `id` is durable: returns the effects that waited for it (`None` for an id
    /// that is not the commit in flight).
    pub fn committed(&mut self, id: u64) -> Option<Vec<Effect>> {
        match self.in_flight.take() {
            Some((in_flight, effects)) if in_flight == id => Some(effects),
            other => {
                self.in_flight = other;
                None
            }
        }
    }

    /// Whether a commit is in flight.
    pub fn is_committing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Whether nothing is open (but lazily written data) or in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && !self.open.required
    }

    /// The pipeline's state, for people.
    pub fn describe(&self) -> String {
        format!(
            "commit in flight: {}, open writes: {} (commit required: {})",
            self.in_flight.is_some(),
            self.open.batch.ops.len(),
            self.open.required
        )
    }

    /// Whether anything at all is written but not committed.
    pub fn has_open_writes(&self) -> bool {
        !self.open.batch.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acks(effects: &[Effect]) -> Vec<MsgId> {
        effects.iter().filter_map(|e| if let Effect::Ack(id) = e { Some(*id) } else { None }).collect()
    }

    #[test]
    fn decisions_made_during_a_commit_form_the_next_batch() {
        let mut pipeline = Pipeline::default();
        pipeline.write(WriteOp::Cursor("a", 1), [Effect::Ack(1)]);
        let (first, batch) = pipeline.next_commit(false).expect("due");
        assert_eq!(batch.ops.len(), 1);
        pipeline.write(WriteOp::Cursor("b", 1), [Effect::Ack(2)]);
        pipeline.write(WriteOp::Cursor("c", 1), [Effect::Ack(3)]);
        assert!(pipeline.next_commit(false).is_none(), "one commit in flight at a time");
        assert_eq!(acks(&pipeline.committed(first).expect("in flight")), vec![1]);
        let (second, batch) = pipeline.next_commit(false).expect("due");
        assert_eq!(batch.ops.len(), 2, "grouped");
        assert_eq!(acks(&pipeline.committed(second).expect("in flight")), vec![2, 3]);
        assert!(pipeline.is_idle());
    }

    #[test]
    fn effects_without_writes_wait_for_earlier_writes_only() {
        let mut pipeline = Pipeline::default();
        assert_eq!(acks(&pipeline.after_writes([Effect::Ack(1)])), vec![1], "nothing pending: at once");
        pipeline.write(WriteOp::Cursor("a", 1), []);
        let (id, _) = pipeline.next_commit(false).expect("due");
        assert!(pipeline.after_writes([Effect::Ack(2)]).is_empty(), "waits for the commit in flight");
        assert!(pipeline.next_commit(false).is_none(), "and needs no commit of its own");
        assert_eq!(acks(&pipeline.committed(id).expect("in flight")), vec![2]);
    }

    #[test]
    fn lazy_writes_ride_along_and_commit_when_forced() {
        let mut pipeline = Pipeline::default();
        pipeline.write_lazily(WriteOp::Cursor("published", 1));
        pipeline.write_lazily(WriteOp::Cursor("published", 2));
        assert!(pipeline.next_commit(false).is_none(), "a lazy write alone is not due");
        let (_, batch) = pipeline.next_commit(true).expect("forced");
        assert_eq!(batch.ops, vec![WriteOp::Cursor("published", 2)], "the latest value only");
    }
}

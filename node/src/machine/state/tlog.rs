//! The machine's side of transparency logs ([`crate::machine::tlog`]): signing checkpoints
//! once their entries are durable, publishing them, answering with proofs, and checking the
//! parent's.

use bytes::Bytes;

use kairan_protocol::sync::{LogProof, SyncRequest};
use kairan_protocol::{PublicKey, Timestamp};

use super::super::decide::Upstream;
use super::super::io::{Event, Link, LogQuery, Qos};
use super::super::pipeline::Effect;
use super::super::tlog::{LogCheck, Signed};
use super::Machine;
use crate::store::{CHECKPOINT_BLOB, PARENT_CHECKPOINT_BLOB, WriteOp};
use crate::topics;

impl Machine {
    /// At start: everything restored is durable, so a relay (re)signs the checkpoint of its
    /// whole log (the same note as before a restart, unless the store was changed).
    pub(super) fn sign_restored_log(&mut self) {
        let Some(attester) = &self.identity.attester else { return };
        let outcome = self.own_log.sign_restored(&self.identity.id, &attester.key);
        self.checkpoint_signed(outcome);
    }

    /// The commit in flight is durable: a relay signs the checkpoint of the leaves it held.
    pub(super) fn sign_committed_log(&mut self) {
        let Some(attester) = &self.identity.attester else { return };
        let outcome = self.own_log.committed(&self.identity.id, &attester.key);
        self.checkpoint_signed(outcome);
    }

    fn checkpoint_signed(&mut self, outcome: Option<Result<Signed, String>>) {
        match outcome {
            None => {}
            Some(Err(text)) => self.report(Event::StoreAnomaly(text)),
            Some(Ok(signed)) => {
                self.report(Event::CheckpointSigned { size: signed.size, root: signed.root });
                // Kept for audit, with the next commit: signing is deterministic, so a crash
                // that loses it loses nothing the restarted node does not sign again.
                self.pipeline.write_lazily(WriteOp::Blob(CHECKPOINT_BLOB, signed.note.to_vec()));
                self.publish_checkpoint();
            }
        }
    }

    /// Publishes the latest checkpoint, retained, to the children (when connected).
    pub(super) fn publish_checkpoint(&mut self) {
        if !self.publisher.as_ref().is_some_and(|p| p.is_connected()) {
            return;
        }
        let Some(note) = self.own_log.latest().map(|latest| latest.note.clone()) else { return };
        let topic = topics::checkpoint(&self.identity.id);
        self.publish(Link::Downstream, topic, note, Qos::AtMostOnce, true);
    }

    /// What a page answering `request` carries of the log: the latest checkpoint (of durable
    /// entries only) and the size to prove consistency from, if the child asked.
    pub(super) fn log_query(&self, request: &SyncRequest) -> Option<LogQuery> {
        let from = request.tlog?;
        let latest = self.own_log.latest()?;
        if latest.size > self.durable_relay_seq {
            return None;
        }
        let checkpoint = String::from_utf8_lossy(&latest.note).into_owned();
        let prove = request.prove.clone();
        Some(LogQuery { checkpoint, size: latest.size, from, prove })
    }

    /// Notes a delivery accepted from the parent, to have its inclusion in the parent's log
    /// proved: its bytes as the parent forwarded them (the received delivery, compact) at the
    /// `relay_seq` of the parent's hop.
    pub(super) fn note_parent_leaf(&mut self, accepted: &crate::machine::Accepted) {
        let Upstream::Relay(parent) = &self.identity.upstream else { return };
        let delivery = accepted.verified.value();
        let Some(hop) = accepted.verified.hops().last() else { return };
        if hop.relay == *parent {
            self.parent_log.note_leaf(hop.relay_seq, &delivery.to_json());
        }
    }

    /// Checks the checkpoint and proof of a verified page from `parent` (its relay key
    /// `key`; `statement`: the page's signed statement, kept as evidence of a fork).
    pub(super) fn check_parent_log(
        &mut self,
        parent: &str,
        key: &PublicKey,
        proof: &LogProof,
        statement: Option<Bytes>,
        now: Timestamp,
    ) {
        let statement = statement.map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
        let (check, inclusions) = self.parent_log.check(parent, key, proof, statement, now);
        if inclusions.verified > 0 {
            self.report(Event::InclusionVerified { count: inclusions.verified });
        }
        for record in inclusions.failed {
            self.counters.log_forks += 1;
            let record = Box::new(record);
            self.pipeline
                .write(WriteOp::LogFork((*record).clone()), [Effect::Report(Event::LogFork(record))]);
        }
        match check {
            LogCheck::Extended { size, note } => {
                let report = Effect::Report(Event::ParentLogVerified { size });
                self.pipeline.write(WriteOp::Blob(PARENT_CHECKPOINT_BLOB, note.into_bytes()), [report]);
            }
            LogCheck::Unchanged => {}
            LogCheck::Stale { held, shown } => self.report(Event::ParentLogStale { held, shown }),
            LogCheck::Refused(text) => self.report(Event::ParentLogRefused(text)),
            LogCheck::Fork(record) => {
                self.counters.log_forks += 1;
                self.pipeline
                    .write(WriteOp::LogFork((*record).clone()), [Effect::Report(Event::LogFork(record))]);
            }
        }
    }
}

//! Inputs from the parent other than deliveries: catch-up pages, trust statements, heads.

use bytes::Bytes;

use kairan_protocol::sync::verify_page;
use kairan_protocol::{Timestamp, TrustBundle, VerifyContext};

use super::super::SYNC_SOURCE;
use super::super::catchup::{CatchUp, Reason};
use super::super::decide::{Decision, rejection};
use super::super::heads::HeadNews;
use super::super::io::{Event, MsgId};
use super::super::pipeline::Effect;
use super::super::trust::TrustChange;
use super::Machine;
use crate::store::{SYNC_CURSOR, TRUST_BLOB, WriteOp};

impl Machine {
    pub(super) fn on_page(&mut self, id: MsgId, payload: &[u8], now: Timestamp) {
        let ready = self.pipeline.after_writes([Effect::Ack(id)]);
        self.run_now(ready, now);
        let Some(parent) = self.catch_up.as_ref().map(|c| c.parent.clone()) else { return };
        // Only a page its parent signed, for this node, is applied: whoever else could publish
        // on this topic (a compromised broker) cannot move the cursor.
        let ctx = VerifyContext { anchors: self.trust.anchors(), revocations: self.trust.revoked(), now };
        let verified = match verify_page(payload, &parent, &self.identity.id, ctx) {
            Ok(verified) => verified,
            Err(error) => return self.report(Event::PageRefused(format!("{}: {error}", error.code()))),
        };
        let page = verified.value().clone();
        if let Some(proof) = &page.tlog {
            let key = verified.facts().parent.cert.key.clone();
            let statement = page.statement.as_ref().map(|envelope| Bytes::from(envelope.to_json()));
            self.check_parent_log(&parent, &key, proof, statement, now);
        }
        // The parent's chain is the chain above this relay: what its own pages must carry.
        if self.is_relay() {
            self.learn_chain(&page.certs, now);
        }
        let Some(cursor) = self.catch_up.as_ref().map(CatchUp::cursor) else { return };
        if page.after != cursor {
            return self.report(Event::StalePage { after: page.after, cursor });
        }
        if let Some(bundle) = &page.trust {
            self.apply_trust(&bundle.to_json(), None, now);
        }
        if page.last_relay_seq < cursor {
            // The parent's log ends before this node's cursor: it lost data or was restored
            // from an older copy, and will reuse those relay_seqs. Catch up from its end
            // (a rewind costs only duplicates, which are dropped).
            if let Some(catch_up) = &mut self.catch_up {
                catch_up.advance(page.last_relay_seq);
            }
            let event = Event::ParentBehind { cursor, parent_latest: page.last_relay_seq };
            self.pipeline.write(
                WriteOp::Cursor(SYNC_CURSOR, page.last_relay_seq),
                [Effect::Report(event), Effect::RequestPage],
            );
            return;
        }
        let received = page.deliveries.len();
        for delivery in &page.deliveries {
            let bytes = Bytes::from(delivery.to_json());
            match self.decide(&bytes, SYNC_SOURCE, now) {
                Decision::Held(reason) => {
                    // Cannot process now: keep the cursor so these pages come again.
                    self.counters.held += 1;
                    return self.report(Event::Held { reason });
                }
                Decision::NotYet(refused) => {
                    // Too early for this node's clock: keep the cursor, ask again later.
                    self.counters.deferred += 1;
                    return self.report(Event::Deferred { code: refused.code, message: refused.message });
                }
                Decision::Duplicate(_) => self.counters.duplicates += 1,
                Decision::Rejected(refused) => {
                    self.counters.rejected += 1;
                    self.pipeline.write(
                        WriteOp::Rejection(refused.clone()),
                        [Effect::Report(Event::Rejected(refused))],
                    );
                }
                Decision::Fork(fork) => {
                    self.counters.forks += 1;
                    self.pipeline.write(WriteOp::Fork((*fork).clone()), [Effect::Report(Event::Fork(fork))]);
                }
                Decision::Accepted(accepted) => self.accept(accepted, None, now),
            }
        }
        // Heads the parent keeps retained, carried by the page for brokers that do not deliver
        // retained messages through wildcards; each verified on its own, like on the heads topic.
        for head in &page.heads {
            self.on_head(None, SYNC_SOURCE, &Bytes::from(head.to_json()), now);
        }
        if let Some(catch_up) = &mut self.catch_up {
            catch_up.advance(page.scanned_upto);
        }
        let mut effects = vec![Effect::Report(Event::CatchUpPage {
            received,
            cursor: page.scanned_upto,
            parent_latest: page.last_relay_seq,
        })];
        if page.has_more() {
            effects.push(Effect::RequestPage);
        }
        if page.scanned_upto == cursor {
            // The periodic page of a node that is up to date: the cursor it would write is
            // the one on disk, and a commit for it would cost every idle node an fsync per
            // sync interval (and, at 100,000 clinics, leave some always mid-commit).
            let ready = self.pipeline.after_writes(effects);
            return self.run_now(ready, now);
        }
        self.pipeline.write(WriteOp::Cursor(SYNC_CURSOR, page.scanned_upto), effects);
    }

    pub(super) fn apply_trust(&mut self, bytes: &[u8], ack: Option<MsgId>, now: Timestamp) {
        match TrustBundle::from_json(bytes) {
            Ok(bundle) => self.apply_trust_bundle(&bundle, ack.into_iter().collect(), now),
            Err(error) => self.refuse_trust(&error, ack.into_iter().collect(), now),
        }
    }

    /// A trust piece from the parent: applied at once after a quiet spell, else gathered with
    /// the others arriving with it and verified together
    /// ([`crate::machine::trust::PieceBatch`]).
    pub(super) fn on_trust_piece(&mut self, id: MsgId, bytes: &[u8], now: Timestamp) {
        if !self.piece_batch.gathers(now) {
            return self.apply_trust(bytes, Some(id), now);
        }
        match TrustBundle::from_json(bytes) {
            Ok(piece) => {
                if self.piece_batch.add(piece, id) {
                    self.apply_gathered_pieces(now, true);
                }
            }
            Err(error) => self.refuse_trust(&error, vec![id], now),
        }
    }

    /// Applies the gathered trust pieces if they are due at `now` (or `force`d).
    pub(super) fn apply_gathered_pieces(&mut self, now: Timestamp, force: bool) {
        if let Some((bundle, acks)) = self.piece_batch.take(now, force) {
            self.apply_trust_bundle(&bundle, acks, now);
        }
    }

    fn apply_trust_bundle(&mut self, incoming: &TrustBundle, acks: Vec<MsgId>, now: Timestamp) {
        match self.trust.apply_bundle(incoming, now) {
            Ok(TrustChange::Updated(json)) => {
                self.chain_checked = None;
                let mut effects: Vec<Effect> = acks.into_iter().map(Effect::Ack).collect();
                // Statements refused beside accepted ones change nothing, but each is bad
                // input and is reported with its reason, like a bundle refused whole.
                effects.extend(self.trust.last_refused().iter().map(|refusal| {
                    Effect::Report(Event::TrustRefused {
                        code: refusal.error.code(),
                        message: format!("statement {}: {}", refusal.id.short(), refusal.error),
                    })
                }));
                effects.push(Effect::Report(Event::TrustUpdated {
                    revoked_keys: self.trust.revoked().len(),
                    rotations: self.trust.bundle().rotations.len(),
                }));
                if self.is_relay() {
                    effects.push(Effect::PublishTrust);
                }
                self.pipeline.write(WriteOp::Blob(TRUST_BLOB, json), effects);
            }
            Ok(TrustChange::Unchanged) => {
                let ready = self.pipeline.after_writes(acks.into_iter().map(Effect::Ack));
                self.run_now(ready, now);
            }
            Err(error) => self.refuse_trust(&error, acks, now),
        }
    }

    fn refuse_trust(&mut self, error: &kairan_protocol::Error, acks: Vec<MsgId>, now: Timestamp) {
        self.report(Event::TrustRefused { code: error.code(), message: error.to_string() });
        let ready = self.pipeline.after_writes(acks.into_iter().map(Effect::Ack));
        self.run_now(ready, now);
    }

    /// A head from the heads topic (acknowledged as `id`) or from a catch-up page (`None`).
    pub(super) fn on_head(&mut self, id: Option<MsgId>, source: &str, payload: &Bytes, now: Timestamp) {
        let ctx = VerifyContext { anchors: self.trust.anchors(), revocations: self.trust.revoked(), now };
        let holdings = &self.holdings;
        match self.heads.on_message(payload, ctx, |chain| holdings.head(chain).map_or(0, |h| h.seq)) {
            Ok(HeadNews::Newer { head, missing }) => {
                let chain = head.chain();
                self.counters.heads_newer += 1;
                self.report(Event::HeadNewer {
                    chain: chain.clone(),
                    seq: head.seq,
                    issued_at: head.issued_at,
                });
                if let Some((from, to)) = missing {
                    self.counters.gaps_reported += 1;
                    self.report(Event::Gap { chain: chain.clone(), from, to, from_head: true });
                    self.ask(Reason::Gap, now);
                }
                if self.is_relay() {
                    self.publish_head(&chain, payload.clone());
                }
                if let Some(id) = id {
                    self.ack(id);
                }
            }
            // Not this node's chain: its advisories never come here, so it says nothing
            // missing and nothing frozen; not kept, not passed on. (Silently: reporting it
            // would tell the operator what it must not learn.)
            Ok(HeadNews::OutOfScope(_)) => {
                self.counters.heads_out_of_scope += 1;
                if let Some(id) = id {
                    self.ack(id);
                }
            }
            Ok(HeadNews::Known) => {
                if let Some(id) = id {
                    self.ack(id);
                }
            }
            Err(error) => {
                self.counters.rejected += 1;
                let mut refused = rejection(payload, source, now, &error);
                refused.message = format!("head: {}", refused.message);
                let report = Effect::Report(Event::HeadRefused(refused.clone()));
                let effects: Vec<Effect> = id.map(Effect::Ack).into_iter().chain([report]).collect();
                self.pipeline.write(WriteOp::Rejection(refused), effects);
            }
        }
    }
}

//! [`Machine`]: the parts of `super` put together behind the `handle_*` / `poll_*` surface.

mod chain;
mod tlog;
mod upstream;

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;

use kairan_protocol::head::HeadMessage;
use kairan_protocol::sequence::{ChainId, SeqDecision};
use kairan_protocol::sync::{MAX_SYNC_PAGE_ENTRIES, SyncRequest, sign_page};
use kairan_protocol::{Digest, Envelope, RevocationSet, Scope, Timestamp, TrustAnchors, TrustBundle};

use super::acks::AckQueue;
use super::catchup::{CatchUp, Reason};
use super::decide::{Decision, Holdings, Identity, Upstream};
use super::deferred::{Deferred, HeldInput};
use super::heads::Heads;
use super::io::{Accepted, Action, Event, Link, MsgId, Outgoing, Qos, Query, ReadResult};
use super::limiter::RateLimiter;
use super::pipeline::{Effect, Pipeline};
use super::publisher::{Forward, Publisher, Step};
use super::serve::Server;
use super::tlog::{OwnLog, ParentLog};
use super::trust::{PieceBatch, TrustState};
use super::{MAX_PACKET_BYTES, REFUSALS_BURST, REFUSALS_PER_SEC};
use crate::store::{PUBLISHED_CURSOR, RestoredState, WriteOp};
use crate::topics::{self, Topic};

/// What a machine is.
#[derive(Debug)]
pub struct MachineConfig {
    /// Who it is and where its input comes from.
    pub identity: Identity,
    /// The configured trust anchors.
    pub anchors: TrustAnchors,
    /// Milliseconds between periodic catch-up requests and frozen-feed checks.
    pub sync_interval_ms: u64,
    /// The children this node answers, with the scope each is entitled to (from the
    /// certificate this node issued a child relay, or the members file for a clinic). A
    /// request is answered with this scope, never the one it names.
    pub children: BTreeMap<String, Scope>,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Gaps reported (a head or a sequence jump showed advisories this node does not hold).
    pub gaps_reported: u64,
    /// Frozen feeds reported (a chain's newest head expired with no fresher one).
    pub feeds_frozen: u64,
    /// Newer heads accepted (of chains this node is entitled to).
    pub heads_newer: u64,
    /// Valid heads of chains outside this node's scope, dropped (none arrive unless a parent
    /// or broker misroutes them).
    pub heads_out_of_scope: u64,
    /// Accepted deliveries.
    pub accepted: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Rejections.
    pub rejected: u64,
    /// Forks.
    pub forks: u64,
    /// Inputs held unacknowledged (this relay's own certificate unusable).
    pub held: u64,
    /// Inputs held because this node's clock is behind (tried again, then final).
    pub deferred: u64,
    /// Forks of the parent's transparency log detected.
    pub log_forks: u64,
}

/// The sequence numbers missing below the highest held, per chain: `(chain, from, to)`.
fn holes(held: &[(ChainId, u64, Digest)]) -> Vec<(ChainId, u64, u64)> {
    let mut by_chain: BTreeMap<&ChainId, Vec<u64>> = BTreeMap::new();
    for (chain, seq, _) in held {
        by_chain.entry(chain).or_default().push(*seq);
    }
    let mut holes = Vec::new();
    for (chain, mut seqs) in by_chain {
        seqs.sort_unstable();
        let mut expected = 1;
        for seq in seqs {
            if seq > expected {
                holes.push((chain.clone(), expected, seq - 1));
            }
            expected = expected.max(seq + 1);
        }
    }
    holes
}

/// What a pending read is for.
#[derive(Debug)]
enum ReadFor {
    Publisher,
    /// `scope`: the child's certified scope (the request's, once admitted).
    Answer {
        child: String,
        scope: Scope,
        child_trust: Option<Digest>,
    },
}

/// The node state machine. See the module docs of [`super`].
#[derive(Debug)]
pub struct Machine {
    identity: Identity,
    sync_interval_ms: i64,
    holdings: Holdings,
    trust: TrustState,
    heads: Heads,
    catch_up: Option<CatchUp>,
    server: Option<Server>,
    publisher: Option<Publisher>,
    publisher_stalled: bool,
    pipeline: Pipeline,
    committing_relay_seq: Option<u64>,
    durable_relay_seq: u64,
    refusals: RateLimiter,
    paused: Option<(Timestamp, String)>,
    next_tick: Timestamp,
    reads: HashMap<u64, ReadFor>,
    next_read: u64,
    actions: VecDeque<Action>,
    acks: AckQueue,
    deferred: Deferred,
    /// Trust pieces from the parent gathered to be verified together.
    piece_batch: PieceBatch,
    /// The certificates a signed page carries: this relay's, and those above it.
    chain: Vec<Envelope>,
    /// Trust pieces published retained (topic → present), to clear the pruned ones.
    pieces: BTreeMap<String, ()>,
    /// Whether `chain` verified at the last check (`None`: check again).
    chain_checked: Option<bool>,
    /// The part of `chain` that verified at the last check: what pages and acceptances carry.
    chain_in_force: Vec<Envelope>,
    /// Catch-up requests that came before the chain verified: the latest per child, answered
    /// when it does (bounded: only members can publish them).
    held_requests: BTreeMap<String, Vec<u8>>,
    counters: Counters,
    upstream_up: bool,
    closing: bool,
    /// This node's transparency log.
    own_log: OwnLog,
    /// The newest verified checkpoint of the parent's log.
    parent_log: ParentLog,
}

impl Machine {
    /// A machine resuming from `restored` (empty for a new node) at `now`.
    pub fn new(config: MachineConfig, restored: RestoredState, now: Timestamp) -> Self {
        let MachineConfig { identity, anchors, sync_interval_ms, children } = config;
        let (trust, warning) = TrustState::restore(anchors, restored.trust_bundle.as_deref(), now);
        let is_relay = identity.attester.is_some();
        let catch_up = match &identity.upstream {
            Upstream::Relay(parent) => Some(CatchUp::new(parent.clone(), restored.sync_cursor)),
            Upstream::Ingest => None,
        };
        let interval = i64::try_from(sync_interval_ms.max(1)).unwrap_or(i64::MAX);
        let mut machine = Machine {
            sync_interval_ms: interval,
            holdings: Holdings::restore(&restored),
            trust,
            heads: Heads::new(identity.scope.clone()),
            catch_up,
            server: is_relay.then(|| Server::new(children)),
            publisher: is_relay.then(|| Publisher::new(restored.published)),
            publisher_stalled: false,
            pipeline: Pipeline::default(),
            committing_relay_seq: None,
            durable_relay_seq: restored.last_relay_seq,
            refusals: RateLimiter::new(REFUSALS_PER_SEC, REFUSALS_BURST),
            paused: None,
            next_tick: now.plus_ms(interval),
            reads: HashMap::new(),
            next_read: 0,
            actions: VecDeque::new(),
            acks: AckQueue::default(),
            deferred: Deferred::default(),
            piece_batch: PieceBatch::default(),
            chain: Vec::new(),
            pieces: BTreeMap::new(),
            chain_checked: None,
            chain_in_force: Vec::new(),
            held_requests: BTreeMap::new(),
            counters: Counters::default(),
            upstream_up: false,
            closing: false,
            own_log: OwnLog::restore(restored.tree.clone(), restored.checkpoint.as_deref()),
            parent_log: ParentLog::restore(restored.parent_checkpoint.as_deref()),
            identity,
        };
        machine.sign_restored_log();
        if let Some(warning) = warning {
            machine.report(Event::TrustStoreWarning(warning));
        }
        if let Some(attester) = &machine.identity.attester {
            let mine = std::iter::once(attester.cert.clone()).chain(attester.extra_certs.iter().cloned());
            machine.chain = mine.chain(attester.chain.iter().cloned()).collect();
            machine.learn_chain(&restored.chain, now);
        }
        // Holes in the chains held: a gap found before a crash may not have been reported
        // (the process died between the commit and the report). Catch-up runs at connection.
        for (chain, from, to) in holes(&restored.held) {
            machine.counters.gaps_reported += 1;
            machine.report(Event::Gap { chain, from, to, from_head: false });
        }
        machine
    }

    // ----- getters -------------------------------------------------------------------------

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.identity.id
    }

    /// Whether this node is a relay (it attests, forwards and answers catch-up).
    pub fn is_relay(&self) -> bool {
        self.identity.attester.is_some()
    }

    /// Counters since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether a digest is held (decided; durable once its commit completed).
    pub fn holds(&self, digest: &Digest) -> bool {
        self.holdings.holds(digest)
    }

    /// The last relay_seq assigned.
    pub fn last_relay_seq(&self) -> u64 {
        self.holdings.last_relay_seq()
    }

    /// The last relay_seq known durable.
    pub fn durable_relay_seq(&self) -> u64 {
        self.durable_relay_seq
    }

    /// The catch-up cursor (children only).
    pub fn catch_up_cursor(&self) -> Option<u64> {
        self.catch_up.as_ref().map(CatchUp::cursor)
    }

    /// The trust bundle in force, as JSON.
    pub fn trust_json(&self) -> Option<Vec<u8>> {
        self.trust.json()
    }

    /// The anchors in force (rotations applied) and the revocations in force: what the TLS
    /// check of the parent's broker uses (`crate::tls::TrustView`).
    pub fn trust_in_force(&self) -> (&TrustAnchors, &RevocationSet) {
        (self.trust.anchors(), self.trust.revoked())
    }

    /// The topics to subscribe to on the upstream connection.
    pub fn upstream_filters(&self) -> Vec<String> {
        let id = &self.identity.id;
        match &self.identity.upstream {
            Upstream::Ingest => {
                vec![topics::ingest_filter(id), topics::control(id), topics::ingest_heads_filter(id)]
            }
            Upstream::Relay(parent) => {
                let mut filters = topics::delivery_filters(parent, &self.identity.scope);
                filters.push(topics::sync_response(parent, id));
                filters.push(format!("{}/#", topics::trust(parent)));
                filters.extend(topics::heads_filters(parent, &self.identity.scope));
                filters
            }
        }
    }

    /// The topics to subscribe to on the downstream connection (relays: children's requests).
    pub fn downstream_filters(&self) -> Vec<String> {
        if self.is_relay() { vec![topics::sync_request_filter(&self.identity.id)] } else { Vec::new() }
    }

    // ----- polling -------------------------------------------------------------------------

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When to call [`Machine::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let paused = self.paused.as_ref().map(|(until, _)| *until);
        let soonest =
            [paused, self.deferred.retry_at(), self.piece_batch.due_at()].into_iter().flatten().min();
        Some(soonest.map_or(self.next_tick, |at| at.min(self.next_tick)))
    }

    /// Whether the machine takes upstream input at `now`: false while refused input is being
    /// throttled (nothing is dropped: the broker holds the rest back), and while closing.
    pub fn accepts_input(&mut self, now: Timestamp) -> bool {
        if self.closing {
            return false;
        }
        let Some((until, source)) = self.paused.take() else { return true };
        if now < until {
            self.paused = Some((until, source));
            return false;
        }
        if self.refusals.allow(&source, now) {
            return true;
        }
        let until = self.refusals.next_token_at(&source, now);
        self.paused = Some((until, source));
        false
    }

    /// Whether everything decided is durable and every durable delivery is confirmed by the
    /// own broker: the node can stop without republishing anything. (While running, a lazily
    /// written cursor may still wait for the next commit; once closing, it is committed too.)
    pub fn is_drained(&self) -> bool {
        let publisher_idle = self.publisher.as_ref().is_none_or(|p| p.is_idle(self.durable_relay_seq));
        let lazy_done = !self.closing || !self.pipeline.has_open_writes();
        self.pipeline.is_idle() && lazy_done && publisher_idle
    }

    /// What keeps the machine from being drained, for people (empty when drained).
    pub fn pending(&self) -> String {
        let mut parts = Vec::new();
        if !self.pipeline.is_idle() {
            parts.push(format!("pipeline busy ({})", self.pipeline.describe()));
        }
        if self.closing && self.pipeline.has_open_writes() {
            parts.push("writes open while closing".to_owned());
        }
        if let Some(publisher) = &self.publisher
            && !publisher.is_idle(self.durable_relay_seq)
        {
            parts.push(format!(
                "publisher busy at durable relay_seq {}: {publisher:?}",
                self.durable_relay_seq
            ));
        }
        parts.join("; ")
    }

    // ----- inputs --------------------------------------------------------------------------

    /// The upstream connection is up with its subscriptions acknowledged.
    pub fn handle_upstream_connected(&mut self, now: Timestamp) {
        self.upstream_up = true;
        self.ask(Reason::Connected, now);
        self.progress();
    }

    /// The upstream connection was lost: its unacknowledged messages come again on the next.
    pub fn handle_upstream_disconnected(&mut self) {
        self.upstream_up = false;
        self.acks.reset();
        self.deferred.clear();
        self.piece_batch.connection_lost();
    }

    /// A message arrived on the upstream connection.
    pub fn handle_upstream_message(&mut self, id: MsgId, topic: &str, payload: Bytes, now: Timestamp) {
        self.acks.received(id);
        let owner = match &self.identity.upstream {
            Upstream::Ingest => self.identity.id.clone(),
            Upstream::Relay(parent) => parent.clone(),
        };
        match topics::parse(&owner, topic) {
            Some(Topic::Ingest(_) | Topic::Deliveries(_)) => self.on_delivery(id, topic, &payload, now),
            // An empty retained message clears a pruned piece: nothing to apply.
            Some(Topic::Trust(_)) if payload.is_empty() => self.ack(id),
            Some(Topic::Trust(_)) => self.on_trust_piece(id, &payload, now),
            Some(Topic::Control) => self.apply_trust(&payload, Some(id), now),
            Some(Topic::IngestHeads(_) | Topic::Heads(..)) => self.on_head(Some(id), topic, &payload, now),
            Some(Topic::SyncResponse(child)) if child == self.identity.id => self.on_page(id, &payload, now),
            // Not a topic this node subscribes to: nothing to decide.
            _ => self.ack(id),
        }
        self.progress();
    }

    /// The downstream connection (the own broker) is up with its subscriptions acknowledged.
    pub fn handle_downstream_connected(&mut self, _now: Timestamp) {
        self.publisher_stalled = false;
        if let Some(publisher) = &mut self.publisher {
            publisher.connected();
        }
        if self.is_relay() {
            self.pieces.clear();
            self.publish_trust();
            let heads: Vec<(ChainId, Bytes)> =
                self.heads.messages().map(|(chain, m)| (chain.clone(), m.clone())).collect();
            for (chain, message) in heads {
                self.publish_head(&chain, message);
            }
            self.publish_checkpoint();
        }
        self.progress();
    }

    /// The downstream connection was lost: unconfirmed deliveries go out again on the next.
    pub fn handle_downstream_disconnected(&mut self) {
        if let Some(publisher) = &mut self.publisher {
            publisher.disconnected();
        }
    }

    /// A message arrived on the downstream connection (a child's catch-up request).
    pub fn handle_downstream_message(&mut self, topic: &str, payload: &[u8], now: Timestamp) {
        if self.server.is_none() {
            return;
        }
        let Some(Topic::SyncRequest(child)) = topics::parse(&self.identity.id, topic) else { return };
        if self.chain_ready(now) {
            self.answer_request(child, payload, now);
        } else {
            // Answered once the chain verifies (a child asks only at connect and on its
            // tick: dropped, it would wait a whole sync interval).
            self.hold_request(child, payload);
        }
        self.progress();
    }

    /// Admits a child's catch-up request and reads the page that answers it.
    fn answer_request(&mut self, child: &str, payload: &[u8], now: Timestamp) {
        let Some(server) = &mut self.server else { return };
        // The broker lets only `child` publish on this topic: the name is authenticated.
        match server.admit(child, payload, now) {
            Ok(request) => {
                let read = ReadFor::Answer {
                    child: child.to_owned(),
                    scope: request.scope.clone(),
                    child_trust: request.trust,
                };
                let tlog = self.log_query(&request);
                let query = Query::Page { request, upto: self.durable_relay_seq, tlog };
                self.read(read, query);
            }
            Err(reason) => self.report(Event::SyncDropped { child: child.to_owned(), reason }),
        }
    }

    /// The own broker acknowledged one delivery publish (they are acknowledged in order).
    pub fn handle_downstream_acked(&mut self) {
        if let Some(confirmed) = self.publisher.as_mut().and_then(Publisher::acked) {
            self.pipeline.write_lazily(WriteOp::Cursor(PUBLISHED_CURSOR, confirmed));
        }
        self.progress();
    }

    /// The commit `id` is durable.
    pub fn handle_committed(&mut self, id: u64, now: Timestamp) {
        let Some(effects) = self.pipeline.committed(id) else { return };
        if let Some(relay_seq) = self.committing_relay_seq.take() {
            self.durable_relay_seq = self.durable_relay_seq.max(relay_seq);
            self.publisher_stalled = false;
        }
        self.sign_committed_log();
        self.run_now(effects, now);
        self.progress();
    }

    /// The read `id` completed.
    pub fn handle_read(&mut self, id: u64, result: ReadResult) {
        match (self.reads.remove(&id), result) {
            (Some(ReadFor::Publisher), ReadResult::Log(entries)) => {
                let node = self.identity.id.clone();
                if let Some(publisher) = &mut self.publisher {
                    publisher.read_back(entries.into_iter().map(|entry| {
                        let forward = Forward {
                            digest: entry.digest,
                            topic: topics::deliveries(&node, &entry.scope),
                            payload: entry.delivery,
                        };
                        (entry.relay_seq, forward)
                    }));
                    if publisher.missing_next() {
                        self.publisher_stalled = true;
                        let text = "the output log lacks an entry at or below the last durable relay_seq";
                        self.report(Event::StoreAnomaly(text.into()));
                    }
                }
            }
            (Some(ReadFor::Answer { child, scope, child_trust }), ReadResult::Page(page)) => {
                let mut page = *page;
                let chain_bytes: usize = self.chain_in_force.iter().map(|c| c.to_json().len() + 1).sum();
                if let Some(bundle) = self.trust.json() {
                    // The bundle rides along only when the child lacks it and the answer stays
                    // one MQTT packet; otherwise the child takes it from the retained pieces.
                    let room = MAX_PACKET_BYTES.saturating_sub(page.to_json().len() + chain_bytes + 2048);
                    if child_trust != self.trust.digest() && bundle.len() <= room {
                        page.trust = TrustBundle::from_json(&bundle).ok();
                    }
                }
                // The last page of a round carries the newest heads: a child whose broker does
                // not hand it the retained heads (RabbitMQ through a wildcard) still learns them.
                // Only those of chains the child is entitled to (its certified scope overlaps
                // theirs), as on the heads topics.
                if !page.has_more() {
                    let mut room = MAX_PACKET_BYTES.saturating_sub(page.to_json().len() + chain_bytes + 2048);
                    let entitled =
                        self.heads.messages_for(&scope).take(kairan_protocol::sync::MAX_SYNC_HEADS);
                    for (_, message) in entitled {
                        let Ok(head) = serde_json::from_slice::<HeadMessage>(message) else { continue };
                        if message.len() + 1 > room {
                            break;
                        }
                        room -= message.len() + 1;
                        page.heads.push(head);
                    }
                }
                // Signed for this child: no one else can answer in this relay's name, or move
                // the child's cursor with a made-up `scanned_upto`.
                if let Some(attester) = &self.identity.attester {
                    page = sign_page(page, &child, &attester.key, &self.chain_in_force);
                }
                self.report(Event::SyncAnswered {
                    child: child.clone(),
                    after: page.after,
                    sent: page.deliveries.len(),
                    scanned_upto: page.scanned_upto,
                    last_relay_seq: page.last_relay_seq,
                });
                let topic = topics::sync_response(&self.identity.id, &child);
                self.publish(Link::Downstream, topic, Bytes::from(page.to_json()), Qos::AtMostOnce, false);
            }
            // A read answered with the wrong kind of result, or one not asked for: a driver bug.
            (purpose, _) => {
                self.report(Event::StoreAnomaly(format!("unexpected read result for {purpose:?}")));
            }
        }
        self.progress();
    }

    /// Time passed: periodic catch-up and frozen-feed checks.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for input in self.deferred.take_due(now) {
            self.on_delivery_held(input, now);
        }
        self.apply_gathered_pieces(now, false);
        if now >= self.next_tick {
            self.next_tick = now.plus_ms(self.sync_interval_ms);
            // Certificates expire and revocations take effect with time: check the chain again.
            self.chain_checked = None;
            self.answer_held_requests(now);
            for head in self.heads.newly_frozen(now) {
                self.counters.feeds_frozen += 1;
                self.report(Event::FeedFrozen {
                    chain: head.chain(),
                    seq: head.seq,
                    expired_at: head.expires_at,
                });
            }
            if self.upstream_up {
                self.ask(Reason::Tick, now);
            }
        }
        self.progress();
    }

    /// The node is stopping: take no more input, commit what is open (lazily written cursors
    /// too), let the publisher finish.
    pub fn handle_shutdown(&mut self) {
        self.closing = true;
        self.progress();
    }

    // ----- deciding ------------------------------------------------------------------------

    fn on_delivery(&mut self, id: MsgId, source: &str, payload: &Bytes, now: Timestamp) {
        let decision = self.decide(payload, source, now);
        let input = HeldInput { id, topic: source.to_owned(), payload: payload.clone(), since: now };
        self.act_on(decision, input, true, now);
    }

    /// Carries out the decision about `input` (`first`: decided for the first time, not a
    /// retry of a held input).
    fn act_on(&mut self, decision: Decision, input: HeldInput, first: bool, now: Timestamp) {
        let id = input.id;
        match decision {
            Decision::Duplicate(digest) => {
                self.counters.duplicates += 1;
                self.report(Event::Duplicate { digest });
                self.ack(id);
                // An origin publishing again has not seen the acceptance: send it again, once
                // whatever was written before (the first copy, perhaps) is durable.
                if let Some(Topic::Ingest(origin)) = topics::parse(&self.identity.id, &input.topic)
                    && self.identity.upstream == Upstream::Ingest
                {
                    let effect = Effect::Acceptance { origin: origin.to_owned(), digest, at: now };
                    let ready = self.pipeline.after_writes([effect]);
                    self.run_now(ready, now);
                }
            }
            Decision::Held(reason) => {
                self.counters.held += 1;
                self.report(Event::Held { reason });
            }
            Decision::NotYet(refused) if Deferred::expired(&input, now) => {
                self.refuse(id, refused, &input.topic, now)
            }
            Decision::NotYet(refused) => {
                let topic = input.topic.clone();
                if !self.deferred.hold(input, now) {
                    self.refuse(id, refused, &topic, now);
                } else if first {
                    self.counters.deferred += 1;
                    self.report(Event::Deferred { code: refused.code, message: refused.message });
                }
            }
            Decision::Rejected(refused) => self.refuse(id, refused, &input.topic, now),
            Decision::Fork(fork) => {
                self.counters.forks += 1;
                self.pipeline.write(
                    WriteOp::Fork((*fork).clone()),
                    [Effect::Ack(id), Effect::Report(Event::Fork(fork))],
                );
            }
            Decision::Accepted(accepted) => self.accept(accepted, Some(id), now),
        }
    }

    /// Records a refusal (durably, then acknowledged) and throttles its source.
    fn refuse(&mut self, id: MsgId, refused: crate::store::Rejection, source: &str, now: Timestamp) {
        self.counters.rejected += 1;
        self.pipeline.write(
            WriteOp::Rejection(refused.clone()),
            [Effect::Ack(id), Effect::Report(Event::Rejected(refused))],
        );
        self.throttle(source, now);
    }

    /// An input held for this node's clock, tried again: decided once more and carried out —
    /// held again while it is still too early and young, refused for good once it is old.
    /// (Deciding accepts into the holdings: the decision must be acted on, never taken twice.)
    fn on_delivery_held(&mut self, input: HeldInput, now: Timestamp) {
        let decision = self.decide(&input.payload, &input.topic, now);
        self.act_on(decision, input, false, now);
    }

    fn decide(&mut self, payload: &Bytes, source: &str, now: Timestamp) -> Decision {
        self.holdings.decide(&self.identity, self.trust.anchors(), self.trust.revoked(), payload, source, now)
    }

    fn accept(&mut self, accepted: Box<Accepted>, ack: Option<MsgId>, now: Timestamp) {
        self.counters.accepted += 1;
        self.note_parent_leaf(&accepted);
        if self.is_relay() {
            let certs = accepted.verified.value().certs.clone();
            self.learn_chain(&certs, now);
        }
        let record = accepted.record.clone();
        if let Some(publisher) = &mut self.publisher {
            let forward = Forward {
                digest: record.digest,
                topic: topics::deliveries(&self.identity.id, &record.scope),
                payload: record.delivery.clone(),
            };
            publisher.offer(record.relay_seq, forward);
        }
        let mut effects: Vec<Effect> = ack.map(Effect::Ack).into_iter().collect();
        if let SeqDecision::Gap { from, to } = accepted.sequence {
            self.counters.gaps_reported += 1;
            let chain = accepted.verified.advisory().chain();
            effects.push(Effect::Report(Event::Gap { chain, from, to, from_head: false }));
            effects.push(Effect::AskGap);
        }
        if ack.is_some() && self.identity.upstream == Upstream::Ingest {
            effects.push(Effect::Acceptance {
                origin: record.origin.clone(),
                digest: record.digest,
                at: now,
            });
        }
        effects.push(Effect::Report(Event::Accepted(accepted)));
        let leaf = self.own_log.append(&record);
        self.pipeline.write(WriteOp::Accepted(record), effects);
        match leaf {
            Some(Ok(hashes)) => self.pipeline.write(hashes, []),
            Some(Err(text)) => self.report(Event::StoreAnomaly(text)),
            None => {}
        }
    }

    /// After a refused live input: past the budget of refusals per input topic, slow input
    /// down instead of dropping anything. Genuine deliveries queued behind a flood are
    /// delayed, never lost.
    fn throttle(&mut self, source: &str, now: Timestamp) {
        if self.refusals.allow(source, now) {
            return;
        }
        let until = self.refusals.next_token_at(source, now);
        if self.paused.is_none() {
            self.report(Event::Throttling { source: source.to_owned() });
        }
        self.paused = Some((until, source.to_owned()));
    }

    // ----- acting --------------------------------------------------------------------------

    /// Asks the parent for the page after the cursor, unless spacing says it just did.
    fn ask(&mut self, reason: Reason, now: Timestamp) {
        if !self.upstream_up && reason != Reason::Connected {
            return;
        }
        let Some(catch_up) = &mut self.catch_up else { return };
        let Some(after) = catch_up.ask(reason, now) else { return };
        let request = SyncRequest {
            after,
            scope: self.identity.scope.clone(),
            limit: MAX_SYNC_PAGE_ENTRIES,
            trust: self.trust.digest(),
            tlog: Some(self.parent_log.verified_size()),
            prove: self.parent_log.to_prove(),
        };
        let topic = topics::sync_request(&catch_up.parent, &self.identity.id);
        self.publish(Link::Upstream, topic, Bytes::from(request.to_json()), Qos::AtMostOnce, false);
    }

    /// Message `id` may be acknowledged (in arrival order: see [`AckQueue`]).
    fn ack(&mut self, id: MsgId) {
        for due in self.acks.ready(id) {
            self.actions.push_back(Action::Ack(due));
        }
    }

    fn run_now(&mut self, effects: Vec<Effect>, now: Timestamp) {
        for effect in effects {
            match effect {
                Effect::Ack(msg) => self.ack(msg),
                Effect::Report(event) => self.report(event),
                Effect::RequestPage => self.ask(Reason::NextPage, now),
                Effect::AskGap => self.ask(Reason::Gap, now),
                Effect::PublishTrust => self.publish_trust(),
                Effect::Acceptance { origin, digest, at } => self.publish_acceptance(origin, digest, at),
            }
        }
    }

    fn publish_head(&mut self, chain: &ChainId, message: Bytes) {
        if self.publisher.as_ref().is_some_and(Publisher::is_connected) {
            let topic = topics::heads(&self.identity.id, chain);
            self.publish(Link::Downstream, topic, message, Qos::AtMostOnce, true);
        }
    }

    fn publish(&mut self, link: Link, topic: String, payload: Bytes, qos: Qos, retain: bool) {
        self.actions.push_back(Action::Publish(Outgoing { link, topic, payload, qos, retain }));
    }

    fn read(&mut self, purpose: ReadFor, query: Query) {
        self.next_read += 1;
        self.reads.insert(self.next_read, purpose);
        self.actions.push_back(Action::Read { id: self.next_read, query });
    }

    fn report(&mut self, event: Event) {
        self.actions.push_back(Action::Report(event));
    }

    /// Starts the next commit if one is due, and moves the publisher's window.
    fn progress(&mut self) {
        if let Some((id, batch)) = self.pipeline.next_commit(self.closing) {
            self.committing_relay_seq = batch.last_relay_seq();
            self.own_log.commit_started(self.committing_relay_seq.is_some());
            self.actions.push_back(Action::Commit { id, batch });
        }
        if self.publisher_stalled {
            return;
        }
        let durable = self.durable_relay_seq;
        while let Some(step) = self.publisher.as_mut().and_then(|p| p.poll(durable)) {
            match step {
                Step::Send(relay_seq, forward) => {
                    self.report(Event::Forwarded {
                        digest: forward.digest,
                        relay_seq,
                        topic: forward.topic.clone(),
                    });
                    self.publish(Link::Downstream, forward.topic, forward.payload, Qos::AtLeastOnce, false);
                }
                Step::Read(query) => self.read(ReadFor::Publisher, query),
            }
        }
    }
}

//! A simulated node: the real [`Machine`] on a [`MemStore`] "disk", with the simulator
//! performing its actions — a commit takes simulated time and is lost in a crash, reads are
//! answered from the disk, publishes go to the simulated network and brokers.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use kairan_node::machine::{self, Action, Counters, Event as MachineEvent, Machine, MsgId, ReadResult};
use kairan_node::store::{MemStore, SYNC_CURSOR, Store, TreeReader, WriteBatch, WriteOp};
use kairan_protocol::sequence::ChainId;
use kairan_protocol::tlog::{NodeIndex, leaf_hash, tree_root};
use kairan_protocol::{Digest, Scope, Timestamp};

use super::tree::{Level, Tree};
use super::world::{Event, Msg, Sim, Tag};

/// A node: its place in the tree, its process (machine), its disk and its broker.
#[derive(Debug)]
pub(super) struct Node {
    pub id: String,
    pub level: Level,
    pub scope: Scope,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    pub clock_offset_ms: i64,
    sync_interval_ms: u64,
    /// The running process; `None` while crashed.
    pub machine: Option<Machine>,
    pub incarnation: u64,
    /// What survives a crash.
    pub store: MemStore,
    /// The commit in flight (lost in a crash).
    commit: Option<(u64, WriteBatch)>,
    /// Upstream deliveries not yet acknowledged: the broker redelivers them after a crash.
    unacked: BTreeMap<MsgId, (String, Bytes, Tag)>,
    /// Upstream messages that arrived while the machine throttled its input.
    waiting: VecDeque<(String, Bytes, Tag, bool)>,
    next_message: MsgId,
    /// The wake-up the simulator has scheduled for the machine's timer.
    wake_at: Option<u64>,
    /// The topic filters of its upstream subscriptions (what its parent's broker routes to it).
    pub subscriptions: Vec<String>,
    /// Retained messages on its own broker (lost with the process: the embedded broker).
    pub retained: BTreeMap<String, Bytes>,
    /// Gap reports: (chain, from, to).
    pub gaps: Vec<(ChainId, u64, u64)>,
    /// Partitions currently cutting this node from its parent.
    pub cut: u32,
    /// The input being decided came from a hostile member (its refusals are expected).
    hostile_input: bool,
}

impl Node {
    /// Node `index` of `tree`, started with its clock at `started`.
    pub fn boot(
        tree: &Tree,
        index: usize,
        sync_interval_ms: u64,
        clock_offset_ms: i64,
        started: Timestamp,
    ) -> Node {
        let planned = &tree.nodes[index];
        let store = MemStore::new();
        let machine = Machine::new(
            tree.machine_config(index, sync_interval_ms),
            store.restore().unwrap_or_default(),
            started,
        );
        Node {
            id: planned.id.clone(),
            level: planned.level,
            scope: planned.scope.clone(),
            parent: planned.parent,
            children: planned.children.clone(),
            clock_offset_ms,
            sync_interval_ms,
            subscriptions: machine.upstream_filters(),
            machine: Some(machine),
            incarnation: 0,
            store,
            commit: None,
            unacked: BTreeMap::new(),
            waiting: VecDeque::new(),
            next_message: 0,
            wake_at: None,
            retained: BTreeMap::new(),
            gaps: Vec::new(),
            cut: 0,
            hostile_input: false,
        }
    }

    pub fn up(&self) -> bool {
        self.machine.is_some()
    }

    pub fn is_relay(&self) -> bool {
        self.level != Level::Clinic
    }

    /// Whether the disk holds `digest`.
    pub fn holds_durably(&self, digest: &Digest) -> bool {
        self.store.contains(digest).unwrap_or(false)
    }

    /// The end of the durable output log.
    pub fn durable_last_relay_seq(&self) -> u64 {
        self.store.restore().map(|state| state.last_relay_seq).unwrap_or(0)
    }

    /// The durable catch-up cursor.
    pub fn durable_cursor(&self) -> u64 {
        self.store.cursor(SYNC_CURSOR).unwrap_or(0)
    }

    /// Digest of the trust bundle on disk.
    pub fn trust_digest(&self) -> Option<Digest> {
        self.store.blob(kairan_node::store::TRUST_BLOB).ok().flatten().map(|b| Digest::of(&b))
    }

    /// Up, and nothing pending: no commit, no throttled input, the machine drained.
    pub fn settled(&self) -> bool {
        self.commit.is_none()
            && self.waiting.is_empty()
            && self.machine.as_ref().is_some_and(Machine::is_drained)
    }

    /// Why the node is not settled (for the report of a run that does not settle).
    pub fn busy_reason(&self) -> String {
        let mut why = Vec::new();
        if self.commit.is_some() {
            why.push("a commit in flight".to_owned());
        }
        if !self.waiting.is_empty() {
            why.push(format!("{} throttled inputs waiting, wake at {:?}", self.waiting.len(), self.wake_at));
        }
        if let Some(machine) = &self.machine
            && !machine.is_drained()
        {
            why.push(format!("machine not drained: {}", machine.pending()));
        }
        why.join(", ")
    }

    fn counters(&self) -> Counters {
        self.machine.as_ref().map(Machine::counters).unwrap_or_default()
    }
}

impl Sim {
    /// Performs node `index`'s actions until it has none (its own broker acknowledges every
    /// delivery publish at once), then schedules its timer.
    pub(super) fn drive(&mut self, index: usize) {
        loop {
            let Some(action) = self.nodes[index].machine.as_mut().and_then(Machine::poll_action) else {
                break;
            };
            match action {
                Action::Commit { id, batch } => {
                    self.stats.commits += 1;
                    if self.faults_active && self.rng.gen_bool_sim(self.config.faults.crash_in_flush) {
                        self.stats.crashes_in_flush += 1;
                        self.log(index, || "CRASH during a commit".into());
                        self.crash(index);
                        return;
                    }
                    if self.nodes[index].commit.is_some() {
                        self.violation(format!(
                            "{}: a second commit while one is in flight",
                            self.nodes[index].id
                        ));
                    }
                    self.nodes[index].commit = Some((id, batch));
                    let delay = self.range(self.config.timing.flush_ms);
                    let incarnation = self.nodes[index].incarnation;
                    self.schedule(self.now + delay, Event::FlushDone { node: index, incarnation });
                }
                Action::Ack(message) => {
                    self.nodes[index].unacked.remove(&message);
                }
                Action::Publish(outgoing) => self.route(index, outgoing),
                Action::Read { id, query } => {
                    let result = match machine::query::run(&self.nodes[index].store, &query) {
                        Ok(result) => result,
                        Err(error) => {
                            return self.violation(format!("{}: read failed: {error}", self.nodes[index].id));
                        }
                    };
                    self.check_read(index, &result);
                    if let Some(machine) = self.nodes[index].machine.as_mut() {
                        machine.handle_read(id, result);
                    }
                }
                Action::Report(event) => self.on_event(index, event),
            }
        }
        self.schedule_wake(index);
    }

    fn check_read(&mut self, index: usize, result: &ReadResult) {
        let durable = self.nodes[index].durable_last_relay_seq();
        match result {
            ReadResult::Page(page) => {
                self.stats.sync_responses += 1;
                // A request after the log's end is answered with nothing and the log's end
                // (the child rewinds); anything else must stop at the durable end.
                let rewind = page.deliveries.is_empty() && page.scanned_upto == page.after;
                if page.scanned_upto > durable && !rewind {
                    self.stats.answers_beyond_durable += 1;
                    let text = format!(
                        "{} answered a catch-up request with scanned_upto {} past its durable log end {durable}",
                        self.nodes[index].id, page.scanned_upto
                    );
                    self.violation(text);
                }
            }
            ReadResult::Log(entries) => {
                if self.nodes[index].incarnation > 0 {
                    self.stats.republished += entries.len() as u64;
                }
            }
        }
    }

    fn on_event(&mut self, index: usize, event: MachineEvent) {
        self.log(index, || format!("{event:?}").chars().take(200).collect());
        match event {
            MachineEvent::Gap { chain, from, to, .. } => {
                self.stats.gaps_reported += 1;
                // Chains are per (origin, scope): a node never hears of another scope's.
                if !chain.scope.overlaps(&self.nodes[index].scope) {
                    let text =
                        format!("{} reported a gap of {chain}, outside its scope", self.nodes[index].id);
                    self.violation(text);
                }
                self.nodes[index].gaps.push((chain, from, to));
            }
            MachineEvent::Accepted(_) => self.stats.accepted += 1,
            MachineEvent::Duplicate { .. } => self.stats.duplicates += 1,
            MachineEvent::Rejected(_) => self.stats.rejected += 1,
            MachineEvent::Fork(_) => self.stats.forks += 1,
            MachineEvent::Throttling { .. } => self.stats.throttled += 1,
            MachineEvent::TrustUpdated { .. } => self.stats.trust_updates += 1,
            MachineEvent::TrustRefused { .. } => self.stats.trust_refused += 1,
            MachineEvent::HeadRefused(_) => self.stats.heads_refused += 1,
            MachineEvent::StalePage { .. } => self.stats.stale_pages += 1,
            MachineEvent::SyncDropped { .. } => self.stats.sync_dropped += 1,
            MachineEvent::CatchUpPage { received, .. } => self.stats.sync_deliveries += received as u64,
            MachineEvent::FeedFrozen { chain, .. } => {
                let text = format!(
                    "{} reported a frozen feed of {chain}, whose heads are fresh",
                    self.nodes[index].id
                );
                self.violation(text);
            }
            MachineEvent::Held { reason } => {
                let text = format!(
                    "{} held input although its certificate is valid: {reason}",
                    self.nodes[index].id
                );
                self.violation(text);
            }
            MachineEvent::StoreAnomaly(text) => self.violation(format!("{}: {text}", self.nodes[index].id)),
            MachineEvent::CheckpointSigned { size, root } => {
                self.stats.checkpoints_signed += 1;
                self.check_checkpoint(index, size, root);
            }
            MachineEvent::ParentLogVerified { .. } => self.stats.parent_logs_verified += 1,
            MachineEvent::InclusionVerified { count } => self.stats.inclusions_verified += count as u64,
            MachineEvent::LogFork(record) => self.violation(format!(
                "{}: an honest parent's log reported forked: {}",
                self.nodes[index].id, record.reason
            )),
            MachineEvent::ParentLogRefused(_) if self.nodes[index].hostile_input => {}
            MachineEvent::ParentLogRefused(text) => self.violation(format!(
                "{}: a genuine checkpoint of the parent's log was refused: {text}",
                self.nodes[index].id
            )),
            MachineEvent::TrustStoreWarning(text) => {
                self.violation(format!("{}: {text}", self.nodes[index].id))
            }
            MachineEvent::PageRefused(_) if self.nodes[index].hostile_input => {}
            MachineEvent::PageRefused(text) => {
                self.violation(format!(
                    "{}: a genuine catch-up answer was refused: {text}",
                    self.nodes[index].id
                ));
            }
            _ => {}
        }
    }

    /// Schedules a wake-up at the machine's next timeout, if not already scheduled.
    fn schedule_wake(&mut self, index: usize) {
        let Some(at) = self.nodes[index].machine.as_ref().and_then(Machine::poll_timeout) else { return };
        let at = self.sim_time(index, at).max(self.now);
        if self.nodes[index].wake_at.is_none_or(|scheduled| at < scheduled || scheduled < self.now) {
            self.nodes[index].wake_at = Some(at);
            let incarnation = self.nodes[index].incarnation;
            self.schedule(at, Event::Wake { node: index, incarnation });
        }
    }

    /// The machine's timer fired (or a scheduled wake-up after an earlier one).
    pub(super) fn wake(&mut self, index: usize) {
        if self.nodes[index].wake_at.is_some_and(|at| at <= self.now) {
            self.nodes[index].wake_at = None;
        }
        let now = self.local_now(index);
        if let Some(machine) = self.nodes[index].machine.as_mut() {
            machine.handle_timeout(now);
        }
        self.drive(index);
        self.take_waiting(index);
    }

    /// An upstream message reaches the node: decided now, or queued while input is throttled.
    pub(super) fn upstream_input(
        &mut self,
        index: usize,
        topic: String,
        payload: Bytes,
        tag: Tag,
        qos1: bool,
    ) {
        self.nodes[index].waiting.push_back((topic, payload, tag, qos1));
        self.take_waiting(index);
    }

    fn take_waiting(&mut self, index: usize) {
        loop {
            let now = self.local_now(index);
            let accepts = self.nodes[index].machine.as_mut().is_some_and(|m| m.accepts_input(now));
            if !accepts {
                self.schedule_wake(index);
                return;
            }
            let Some((topic, payload, tag, qos1)) = self.nodes[index].waiting.pop_front() else { return };
            self.decide(index, topic, payload, tag, qos1);
            if !self.nodes[index].up() {
                return;
            }
        }
    }

    fn decide(&mut self, index: usize, topic: String, payload: Bytes, tag: Tag, qos1: bool) {
        let now = self.local_now(index);
        let node = &mut self.nodes[index];
        node.next_message += 1;
        let id = node.next_message;
        if qos1 {
            node.unacked.insert(id, (topic.clone(), payload.clone(), tag));
        }
        let before = node.counters();
        let cursor_before = node.machine.as_ref().and_then(Machine::catch_up_cursor);
        if let Some(machine) = node.machine.as_mut() {
            machine.handle_upstream_message(id, &topic, payload, now);
        }
        let after = self.nodes[index].counters();
        let cursor_after = self.nodes[index].machine.as_ref().and_then(Machine::catch_up_cursor);
        if matches!(tag, Tag::Hostile(_)) && cursor_after != cursor_before {
            let node = self.nodes[index].id.clone();
            self.violation(format!(
                "{node}'s catch-up cursor moved on hostile input: {cursor_before:?} → {cursor_after:?}"
            ));
        }
        self.stats.decisions += 1;
        let code = delta_code(&before, &after);
        self.mix(code | (index as u64) << 8);
        self.expect(index, tag, &before, &after);
        self.nodes[index].hostile_input = matches!(tag, Tag::Hostile(_));
        self.drive(index);
        self.nodes[index].hostile_input = false;
    }

    /// The commit in flight is durable now: check it, apply it to the disk, tell the machine.
    pub(super) fn flush_done(&mut self, index: usize) {
        let Some((id, batch)) = self.nodes[index].commit.take() else { return };
        let accepted: Vec<(ChainId, u64)> = batch
            .ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Accepted(record) => {
                    let scope = Scope::parse(&record.scope).ok()?;
                    Some((ChainId::new(record.origin.clone(), scope), record.seq))
                }
                _ => None,
            })
            .collect();
        self.check_batch(index, &batch);
        if let Err(error) = self.nodes[index].store.commit(&batch) {
            return self.violation(format!("{}: commit failed: {error}", self.nodes[index].id));
        }
        if self.nodes[index].is_relay()
            && self.faults_active
            && self.rng.gen_bool_sim(self.config.faults.crash_before_forward)
        {
            // Durable, but nothing it releases (acknowledgements, forwards, gap reports) went
            // out: the restarted node republishes from its store, the broker redelivers.
            self.stats.crashes_before_forward += 1;
            self.log(index, || "CRASH after a commit, before what it releases".into());
            self.crash(index);
            return;
        }
        let now = self.local_now(index);
        if let Some(machine) = self.nodes[index].machine.as_mut() {
            machine.handle_committed(id, now);
        }
        self.drive(index);
        for (chain, seq) in accepted {
            self.check_unreported_gap(index, &chain, seq);
        }
    }

    /// A checkpoint may be signed only for a durable tree: its size within the durable log,
    /// its root the one the disk's stored hashes give.
    fn check_checkpoint(&mut self, index: usize, size: u64, root: kairan_protocol::tlog::Hash) {
        let durable = self.nodes[index].durable_last_relay_seq();
        let node = &self.nodes[index];
        if size > durable {
            let text =
                format!("{} signed a checkpoint of size {size} past its durable log end {durable}", node.id);
            return self.violation(text);
        }
        match tree_root(&TreeReader(&node.store), size) {
            Ok(stored) if stored == root => {}
            Ok(stored) => {
                let text = format!("{} signed root {root} at size {size}; its disk gives {stored}", node.id);
                self.violation(text);
            }
            Err(error) => {
                let text =
                    format!("{} signed a checkpoint of size {size} its disk cannot hash: {error}", node.id);
                self.violation(text);
            }
        }
    }

    /// Each accepted delivery is followed, in its batch, by the stored hashes of its leaf
    /// (leaf `relay_seq - 1` = the stored delivery bytes); relay_seqs never go back.
    fn check_batch(&mut self, index: usize, batch: &WriteBatch) {
        let mut last = self.nodes[index].durable_last_relay_seq();
        for (at, op) in batch.ops.iter().enumerate() {
            if let WriteOp::Accepted(record) = op {
                let leaf = NodeIndex::new(0, record.relay_seq.saturating_sub(1));
                let hashed = match batch.ops.get(at + 1) {
                    Some(WriteOp::TreeHashes(hashes)) => {
                        hashes.first() == Some(&(leaf, leaf_hash(&record.delivery)))
                    }
                    _ => false,
                };
                if !hashed {
                    let text = format!(
                        "{}: relay_seq {} committed without its leaf's stored hashes",
                        self.nodes[index].id, record.relay_seq
                    );
                    self.violation(text);
                }
                if record.relay_seq <= last {
                    let text = format!(
                        "{}: relay_seq {} stored after {last} (sequence reused)",
                        self.nodes[index].id, record.relay_seq
                    );
                    self.violation(text);
                }
                last = record.relay_seq;
                if self.bad.contains(&record.digest) {
                    let text = format!(
                        "{} stored the forged or tampered advisory {}",
                        self.nodes[index].id, record.digest
                    );
                    self.violation(text);
                }
            }
        }
    }

    /// The gap invariant: a node that stores `#seq` of a chain (origin, scope) while missing
    /// an earlier genuine advisory of that chain in its scope must have reported a gap
    /// covering it. (Chains of scopes outside its own never reach it: nothing to report.)
    fn check_unreported_gap(&mut self, index: usize, chain_id: &ChainId, seq: u64) {
        let Some(chain) = self.by_chain.get(chain_id) else { return };
        let node = &self.nodes[index];
        if !node.up() {
            return;
        }
        for &g in chain {
            let genuine = &self.tree.genuine[g];
            if genuine.seq >= seq {
                break;
            }
            if !genuine.scope.overlaps(&node.scope) || node.store.holds_seq(chain_id, genuine.seq) {
                continue;
            }
            let reported =
                node.gaps.iter().any(|(c, from, to)| c == chain_id && (*from..=*to).contains(&genuine.seq));
            if !reported {
                let text = format!(
                    "{} stored {chain_id} #{seq} while missing {chain_id} #{} (scope {}, in its scope) without reporting a gap",
                    node.id, genuine.seq, genuine.scope
                );
                self.violations.push(text);
                return;
            }
        }
    }

    /// A process crash: the machine, the commit in flight and the throttled input are gone;
    /// the disk stays. Unacknowledged deliveries are redelivered after the restart with
    /// probability `faults.redeliver` (the broker kept the session), or lost. The embedded
    /// broker dies with the process: its retained messages and its clients' connections.
    pub(super) fn crash(&mut self, index: usize) {
        self.log(index, || "CRASH".into());
        let redeliver = self.config.faults.redeliver;
        let node = &mut self.nodes[index];
        node.machine = None;
        node.incarnation += 1;
        node.commit = None;
        node.wake_at = None;
        node.retained.clear();
        node.waiting.clear();
        let unacked = std::mem::take(&mut node.unacked);
        let mut kept = BTreeMap::new();
        for (id, message) in unacked {
            if self.rng.gen_bool_sim(redeliver) {
                kept.insert(id, message);
            } else {
                self.stats.lost_in_crash += 1;
            }
        }
        self.nodes[index].unacked = kept;
        for child in self.nodes[index].children.clone() {
            self.disconnect_upstream(child);
        }
        let downtime = self.range(self.config.timing.downtime_ms);
        let at = (self.now + downtime).min(self.heal_at.max(self.now + 1));
        let incarnation = self.nodes[index].incarnation;
        self.schedule(at, Event::Restart { node: index, incarnation });
    }

    /// Restart from the disk; the broker redelivers what it kept; the node and its children
    /// reconnect (and ask for catch-up); a relay's own broker comes up.
    pub(super) fn restart(&mut self, index: usize) {
        self.stats.restarts += 1;
        let state = match self.nodes[index].store.restore() {
            Ok(state) => state,
            Err(error) => {
                return self.violation(format!("{}: restore failed: {error}", self.nodes[index].id));
            }
        };
        self.log(index, || {
            format!(
                "RESTART from disk: last relay_seq {}, cursor {}",
                state.last_relay_seq, state.sync_cursor
            )
        });
        let interval = self.nodes[index].sync_interval_ms;
        let config = self.tree.machine_config(index, interval);
        let now = self.local_now(index);
        self.nodes[index].machine = Some(Machine::new(config, state, now));
        // The catch-up invariant: a child's cursor never points past its parent's durable
        // log. If it did, whatever the parent stores at those relay_seqs after this restart
        // would never reach the child through catch-up.
        let durable_end = self.nodes[index].durable_last_relay_seq();
        for child in self.nodes[index].children.clone() {
            let cursor = self.nodes[child].durable_cursor();
            if cursor > durable_end {
                let text = format!(
                    "{}'s catch-up cursor is {cursor} but its parent {} restarted with its log ending at {durable_end}",
                    self.nodes[child].id, self.nodes[index].id
                );
                self.violations.push(text);
            }
        }
        let redeliver = std::mem::take(&mut self.nodes[index].unacked);
        for (_, (topic, payload, tag)) in redeliver {
            self.stats.redelivered += 1;
            self.send(index, index, Msg::Publish { topic, payload, tag, qos1: true });
        }
        let incarnation = self.nodes[index].incarnation;
        if self.nodes[index].is_relay() {
            self.schedule(self.now + 1, Event::DownstreamUp { node: index, incarnation });
        }
        self.connect_soon(index);
        for child in self.nodes[index].children.clone() {
            self.connect_soon(child);
        }
        self.drive(index);
    }

    /// The node's upstream connection is lost.
    pub(super) fn disconnect_upstream(&mut self, index: usize) {
        if let Some(machine) = self.nodes[index].machine.as_mut() {
            machine.handle_upstream_disconnected();
        }
    }

    /// The node (re)connects to its parent shortly.
    pub(super) fn connect_soon(&mut self, index: usize) {
        if !self.nodes[index].up() {
            return;
        }
        let delay = self.rng.gen_range_sim(10, 2_000);
        let incarnation = self.nodes[index].incarnation;
        self.schedule(self.now + delay, Event::Reconnect { node: index, incarnation });
    }

    /// Connected and subscribed: the parent's broker sends its retained messages, the
    /// machine asks for catch-up.
    pub(super) fn reconnect(&mut self, index: usize) {
        if self.nodes[index].cut > 0 {
            return;
        }
        if let Some(parent) = self.nodes[index].parent {
            if !self.nodes[parent].up() {
                return; // the parent's restart reconnects its children
            }
            let retained: Vec<(String, Bytes)> = self.nodes[parent]
                .retained
                .iter()
                .filter(|(topic, _)| {
                    self.nodes[index].subscriptions.iter().any(|f| kairan_node::topics::matches(f, topic))
                })
                .map(|(t, p)| (t.clone(), p.clone()))
                .collect();
            for (topic, payload) in retained {
                self.send(index, index, Msg::Publish { topic, payload, tag: Tag::Control, qos1: false });
            }
        }
        let now = self.local_now(index);
        if let Some(machine) = self.nodes[index].machine.as_mut() {
            machine.handle_upstream_connected(now);
        }
        self.drive(index);
    }
}

/// A code for what one decision did (for the run's trace hash).
fn delta_code(before: &Counters, after: &Counters) -> u64 {
    let changed = [
        after.accepted > before.accepted,
        after.duplicates > before.duplicates,
        after.rejected > before.rejected,
        after.forks > before.forks,
        after.held > before.held,
    ];
    changed.iter().enumerate().map(|(bit, on)| u64::from(*on) << bit).sum()
}

/// Random helpers named apart from `rand::Rng` so call sites read as the simulator's draws.
pub(super) trait SimRng {
    fn gen_bool_sim(&mut self, p: f64) -> bool;
    fn gen_range_sim(&mut self, low: u64, high: u64) -> u64;
}

impl SimRng for rand_chacha::ChaCha8Rng {
    fn gen_bool_sim(&mut self, p: f64) -> bool {
        rand::Rng::gen_bool(self, p.clamp(0.0, 1.0))
    }

    fn gen_range_sim(&mut self, low: u64, high: u64) -> u64 {
        rand::Rng::gen_range(self, low..=high)
    }
}

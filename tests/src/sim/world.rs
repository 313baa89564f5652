//! The discrete-event engine: events in a priority queue ordered by (simulated time,
//! sequence number), one seeded ChaCha8 generator for every random decision, taken in event
//! order. Nothing reads a clock, nothing runs on another thread, and no decision depends on
//! the iteration order of a hash map, so a run is a function of the seed and the config.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use kairan_node::topics;
use kairan_protocol::sequence::ChainId;
use kairan_protocol::{Digest, Timestamp};

use super::adversary::Attack;
use super::config::{Scale, SimConfig, Targets};
use super::hostile::HostileMove;
use super::member::ADMIN;
use super::node::Node;
use super::tree::{EPOCH, Tree};
use kairan_node::authz::{MemberKind, Principal};

/// Where a message came from, for the invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    /// A delivery published by an origin or forwarded by a relay.
    Genuine,
    /// Control traffic from the genuine parties: catch-up answers, trust bundles, heads.
    Control,
    /// Attack number `n`.
    Injected(usize),
    /// Hostile member move number `n`.
    Hostile(usize),
}

/// A message on the simulated network.
#[derive(Debug, Clone)]
pub(super) enum Msg {
    /// A publish that reaches the receiver on its upstream connection.
    Publish {
        /// The topic.
        topic: String,
        /// The bytes (shared: a district's clinics hold one copy of what it forwarded).
        payload: Bytes,
        /// Where it came from.
        tag: Tag,
        /// QoS 1 (deliveries): the broker keeps it for a crashed receiver's session.
        qos1: bool,
    },
    /// A child's publish that reaches the receiver on its own broker (a catch-up request).
    FromChild { topic: String, payload: Bytes },
}

#[derive(Debug)]
pub(super) enum Event {
    /// Genuine advisory `n` is published (and its origin's head).
    Publish(usize),
    IngestRetry(usize),
    /// A message arrives at `to` over the edge between `edge` and its parent.
    Arrive {
        to: usize,
        edge: usize,
        msg: Msg,
    },
    FlushDone {
        node: usize,
        incarnation: u64,
    },
    Wake {
        node: usize,
        incarnation: u64,
    },
    Reconnect {
        node: usize,
        incarnation: u64,
    },
    DownstreamUp {
        node: usize,
        incarnation: u64,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
        incarnation: u64,
    },
    PartitionStart {
        root: usize,
    },
    PartitionEnd {
        root: usize,
    },
    Inject(usize),
    Hostile(usize),
    TrustPush(usize),
    Heal,
    Check,
}

impl Event {
    /// Whether the event is work that can still change a store (quiescence waits for none):
    /// a delivery in flight, a restart. Catch-up requests and answers are not: once every
    /// cursor is at its parent's durable log end, an answer is empty or stale, and with every
    /// child asking every minute, some are always in flight in a large tree.
    fn in_flight(&self) -> bool {
        matches!(self, Event::Arrive { msg: Msg::Publish { qos1: true, .. }, .. } | Event::Restart { .. })
    }

    fn code(&self) -> u64 {
        let (kind, index) = match self {
            Event::Publish(i) => (1, *i),
            Event::IngestRetry(i) => (2, *i),
            Event::Arrive { to, .. } => (3, *to),
            Event::FlushDone { node, .. } => (4, *node),
            Event::Wake { node, .. } => (5, *node),
            Event::Reconnect { node, .. } => (6, *node),
            Event::Crash { node } => (7, *node),
            Event::Restart { node, .. } => (8, *node),
            Event::PartitionStart { root } => (9, *root),
            Event::PartitionEnd { root } => (10, *root),
            Event::Inject(i) => (11, *i),
            Event::Heal => (12, 0),
            Event::Check => (13, 0),
            Event::DownstreamUp { node, .. } => (14, *node),
            Event::Hostile(i) => (15, *i),
            Event::TrustPush(i) => (16, *i),
        };
        kind | (index as u64) << 8
    }
}

#[derive(Debug)]
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap, the earliest (time, seq) must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// Upstream messages the machines decided on.
    pub decisions: u64,
    /// Accepted deliveries (all nodes).
    pub accepted: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Rejections.
    pub rejected: u64,
    /// Forks.
    pub forks: u64,
    /// Commits (group commits: one per batch).
    pub commits: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages lost at random.
    pub lost: u64,
    /// Messages duplicated.
    pub duplicated: u64,
    /// Messages that took the slow path.
    pub slow: u64,
    /// Messages lost to a partition.
    pub lost_partition: u64,
    /// Messages lost because the receiver was down.
    pub lost_down: u64,
    /// Unacknowledged inputs lost in a crash.
    pub lost_in_crash: u64,
    /// Unacknowledged inputs redelivered after a restart.
    pub redelivered: u64,
    /// Scheduled crashes.
    pub crashes: u64,
    /// Crashes during a commit.
    pub crashes_in_flush: u64,
    /// Crashes between a commit and what it releases (acks, forwards).
    pub crashes_before_forward: u64,
    /// Restarts.
    pub restarts: u64,
    /// Partitions.
    pub partitions: u64,
    /// Deliveries a relay read back from its store to publish (after a restart).
    pub republished: u64,
    /// Catch-up requests sent.
    pub sync_requests: u64,
    /// Catch-up answers sent.
    pub sync_responses: u64,
    /// Catch-up requests not answered (rate limit, repeat, malformed).
    pub sync_dropped: u64,
    /// Deliveries received through catch-up pages.
    pub sync_deliveries: u64,
    /// Pages ignored as stale (answer to an older request).
    pub stale_pages: u64,
    /// Catch-up answers that scanned past the parent's durable log: each is a violation.
    pub answers_beyond_durable: u64,
    /// Checkpoints relays signed (each checked against the durable log: size and root).
    pub checkpoints_signed: u64,
    /// Checkpoints of a parent's log a child verified as extending the one it held.
    pub parent_logs_verified: u64,
    /// Deliveries a child proved included in its parent's signed log.
    pub inclusions_verified: u64,
    /// Gap reports.
    pub gaps_reported: u64,
    /// Times a node throttled its input.
    pub throttled: u64,
    /// Trust bundles that came into force at a node.
    pub trust_updates: u64,
    /// Trust bundles refused.
    pub trust_refused: u64,
    /// Heads refused.
    pub heads_refused: u64,
    /// Attacks injected (sent).
    pub attacks_sent: u64,
    /// Attack inputs that reached a running node and were refused.
    pub attacks_refused: u64,
    /// Hostile member moves made.
    pub hostile_moves: u64,
    /// Publishes and subscriptions of hostile members the brokers' permission table refused.
    pub broker_refused: u64,
    /// Stored deliveries verified again at the end.
    pub reverified: u64,
}

/// What a passing run reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// The scale.
    pub scale: Scale,
    /// Relays (national, prefectures, districts).
    pub relays: usize,
    /// Clinics.
    pub clinics: usize,
    /// Genuine advisories.
    pub advisories: usize,
    /// Attacks planned, by kind.
    pub attacks: BTreeMap<String, usize>,
    /// Simulated time of the heal (ms).
    pub heal_at_ms: u64,
    /// Simulated time at which the tree was quiescent (ms).
    pub quiescent_at_ms: u64,
    /// Inbox entries held by clinics at the end (each checked against its scope).
    pub clinic_inbox_entries: u64,
    /// Counters.
    pub stats: Stats,
    /// A hash of every event and decision, in order: equal for equal runs.
    pub trace: u64,
}

/// A failed run: the seed, the configuration, and what went wrong.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The configuration.
    pub config: Box<SimConfig>,
    /// Simulated time of the failure (ms).
    pub at_ms: u64,
    /// The violated invariants.
    pub violations: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "kairan simulation FAILED: seed {} at scale {} ({} advisories), simulated t = {} ms",
            self.seed, self.config.scale, self.config.advisories, self.at_ms
        )?;
        for violation in self.violations.iter().take(25) {
            writeln!(f, "  - {violation}")?;
        }
        if self.violations.len() > 25 {
            writeln!(f, "  … and {} more", self.violations.len() - 25)?;
        }
        write!(
            f,
            "replay exactly: KAIRAN_SIM_SEED={} {} cargo test --release -p kairan-tests --test sim replay_seed -- --ignored --nocapture",
            self.seed,
            self.config.replay_env()
        )
    }
}

/// One simulation run.
#[derive(Debug)]
pub(super) struct Sim {
    pub seed: u64,
    pub config: SimConfig,
    pub rng: ChaCha8Rng,
    pub now: u64,
    seq: u64,
    queue: BinaryHeap<Scheduled>,
    pub tree: Tree,
    pub nodes: Vec<Node>,
    /// Genuine advisory indexes by chain (origin, scope), in seq order.
    pub by_chain: BTreeMap<ChainId, Vec<usize>>,
    /// Digests that must never be stored: forged, tampered, equivocating advisories.
    pub bad: BTreeSet<Digest>,
    pub attacks: Vec<Attack>,
    pub hostile: Vec<HostileMove>,
    /// Trust bundles the root pushed, in order (the last must be in force everywhere).
    pub trust_pushed: Vec<Bytes>,
    pub faults_active: bool,
    pub heal_at: u64,
    in_flight: u64,
    quiescent_at: Option<u64>,
    pub stats: Stats,
    pub violations: Vec<String>,
    trace: u64,
    /// `KAIRAN_SIM_LOG`: print what happens at nodes whose id contains this, or is exactly it
    /// with a leading `=` (diagnosis only).
    log_filter: Option<String>,
}

/// Runs one simulation.
pub fn run(seed: u64, config: &SimConfig) -> Result<Report, Failure> {
    Sim::new(seed, config.clone()).run()
}

impl Sim {
    fn new(seed: u64, config: SimConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let tree = Tree::build(seed, &config, &mut rng);
        let skew = config.faults.clock_skew_ms;
        let interval = config.timing.sync_interval_ms;
        let nodes: Vec<Node> = (0..tree.nodes.len())
            .map(|index| {
                let offset = if skew > 0 { rng.gen_range(-skew..=skew) } else { 0 };
                // Each process started at its own time: its periodic timer has its own phase.
                let phase = rng.gen_range(0..interval) as i64;
                Node::boot(&tree, index, interval, offset, EPOCH.plus_ms(offset - phase))
            })
            .collect();
        let mut by_chain: BTreeMap<ChainId, Vec<usize>> = BTreeMap::new();
        for (index, genuine) in tree.genuine.iter().enumerate() {
            by_chain.entry(genuine.advisory.chain()).or_default().push(index);
        }
        let heal_at = config.timing.fault_window_ms;
        let mut sim = Sim {
            seed,
            config,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            tree,
            nodes,
            by_chain,
            bad: BTreeSet::new(),
            attacks: Vec::new(),
            hostile: Vec::new(),
            trust_pushed: Vec::new(),
            faults_active: true,
            heal_at,
            in_flight: 0,
            quiescent_at: None,
            stats: Stats::default(),
            violations: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            log_filter: std::env::var("KAIRAN_SIM_LOG").ok().filter(|f| !f.is_empty()),
        };
        sim.plan();
        sim
    }

    /// Schedules publications, crashes, partitions, attacks, hostile moves, trust pushes, the
    /// heal, and every node's first connections.
    fn plan(&mut self) {
        for index in 0..self.tree.genuine.len() {
            let at = self.tree.genuine[index].publish_at;
            self.schedule(at, Event::Publish(index));
        }
        let window = self.heal_at.max(1);
        for node in self.targets(self.config.faults.crashes) {
            let at = self.rng.gen_range(0..window);
            self.schedule(at, Event::Crash { node });
        }
        for root in self.targets(self.config.faults.partitions) {
            let at = self.rng.gen_range(0..window);
            let (low, high) = self.config.timing.partition_ms;
            let length = self.rng.gen_range(low..=high);
            self.schedule(at, Event::PartitionStart { root });
            self.schedule(at + length, Event::PartitionEnd { root });
        }
        for index in 0..self.config.faults.attacks {
            let attack = self.plan_attack(window);
            let at = attack.at;
            self.attacks.push(attack);
            self.schedule(at, Event::Inject(index));
        }
        for index in 0..self.config.faults.hostile_moves {
            let planned = self.plan_hostile(window);
            let at = planned.at;
            self.hostile.push(planned);
            self.schedule(at, Event::Hostile(index));
        }
        for index in 0..self.config.faults.trust_pushes {
            let at = self.rng.gen_range(0..window);
            self.schedule(at, Event::TrustPush(index));
        }
        self.schedule(self.heal_at, Event::Heal);
        for node in 0..self.nodes.len() {
            if self.nodes[node].is_relay() {
                self.schedule(1, Event::DownstreamUp { node, incarnation: 0 });
            }
            self.connect_soon(node);
        }
    }

    /// A node, its level drawn first (uniformly), so that the national and prefectural
    /// relays take their share of faults in a small tree.
    pub(super) fn random_node(&mut self) -> usize {
        let level = self.rng.gen_range(0..4usize);
        self.node_at_level(level)
    }

    /// A node of `level` (0 national, 1 prefectures, 2 districts, 3 clinics), drawn uniformly.
    pub(super) fn node_at_level(&mut self, level: usize) -> usize {
        let first_clinic = self.tree.first_clinic;
        let prefectures = self.config.scale.prefectures;
        let districts = first_clinic - 1 - prefectures;
        let clinics = self.nodes.len() - first_clinic;
        match level {
            0 => 0,
            1 => 1 + self.rng.gen_range(0..prefectures),
            2 => 1 + prefectures + self.rng.gen_range(0..districts),
            _ if clinics > 0 => first_clinic + self.rng.gen_range(0..clinics),
            _ => 0,
        }
    }

    /// The nodes a number of faults strike.
    fn targets(&mut self, targets: Targets) -> Vec<usize> {
        match targets {
            Targets::AnyLevel(count) => (0..count).map(|_| self.random_node()).collect(),
            Targets::PerLevel(counts) => (0..4)
                .flat_map(|level| std::iter::repeat_n(level, counts[level]))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|level| self.node_at_level(level))
                .collect(),
        }
    }

    pub(super) fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        if event.in_flight() {
            self.in_flight += 1;
        }
        self.queue.push(Scheduled { at, seq: self.seq, event });
    }

    pub(super) fn mix(&mut self, value: u64) {
        self.trace = (self.trace ^ value).wrapping_mul(0x0000_0100_0000_01b3);
    }

    pub(super) fn range(&mut self, (low, high): (u64, u64)) -> u64 {
        if high <= low { low } else { self.rng.gen_range(low..=high) }
    }

    /// Node `index`'s clock.
    pub(super) fn local_now(&self, index: usize) -> Timestamp {
        EPOCH.plus_ms(self.now as i64 + self.nodes[index].clock_offset_ms)
    }

    /// The simulated time at which node `index`'s clock shows `at`.
    pub(super) fn sim_time(&self, index: usize, at: Timestamp) -> u64 {
        let ms = at.unix_ms() - EPOCH.unix_ms() - self.nodes[index].clock_offset_ms;
        u64::try_from(ms).unwrap_or(0)
    }

    /// Prints `what` about node `index` when `KAIRAN_SIM_LOG` selects it.
    pub(super) fn log(&self, index: usize, what: impl FnOnce() -> String) {
        if let Some(filter) = &self.log_filter {
            let id = self.nodes[index].id.as_str();
            let selected = match filter.strip_prefix('=') {
                Some(exact) => id == exact,
                None => filter == "*" || id.contains(filter.as_str()),
            };
            if selected {
                eprintln!("[{:>9} ms] {:<16} {}", self.now, self.nodes[index].id, what());
            }
        }
    }

    pub(super) fn violation(&mut self, text: String) {
        self.violations.push(text);
    }

    fn run(mut self) -> Result<Report, Failure> {
        self.check_subscriptions();
        while let Some(Scheduled { at, event, .. }) = self.queue.pop() {
            self.now = at;
            if event.in_flight() {
                self.in_flight -= 1;
            }
            self.stats.events += 1;
            let code = event.code();
            self.mix(at);
            self.mix(code);
            self.handle(event);
            if !self.violations.is_empty() {
                return Err(self.failure());
            }
            if self.quiescent_at.is_some() {
                break;
            }
        }
        if self.quiescent_at.is_none() {
            self.violation("the event queue ran dry before the tree was quiescent".into());
            return Err(self.failure());
        }
        let clinic_inbox_entries = self.check_final();
        if !self.violations.is_empty() {
            return Err(self.failure());
        }
        let mut attacks: BTreeMap<String, usize> = BTreeMap::new();
        for attack in &self.attacks {
            *attacks.entry(attack.kind.to_string()).or_default() += 1;
        }
        for planned in &self.hostile {
            *attacks.entry(planned.kind.to_string()).or_default() += 1;
        }
        Ok(Report {
            seed: self.seed,
            scale: self.config.scale,
            relays: self.tree.first_clinic,
            clinics: self.nodes.len() - self.tree.first_clinic,
            advisories: self.tree.genuine.len(),
            attacks,
            heal_at_ms: self.heal_at,
            quiescent_at_ms: self.quiescent_at.unwrap_or(self.now),
            clinic_inbox_entries,
            stats: self.stats.clone(),
            trace: self.trace,
        })
    }

    fn failure(&self) -> Failure {
        Failure {
            seed: self.seed,
            config: Box::new(self.config.clone()),
            at_ms: self.now,
            violations: self.violations.clone(),
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Publish(index) => {
                self.send_ingest(index);
                self.send_head(index);
                let retry = self.config.timing.ingest_retry_ms;
                self.schedule(self.now + retry, Event::IngestRetry(index));
            }
            Event::IngestRetry(index) => {
                // The origin publishes again until the national node has it durably (see
                // docs/simulation.md: the ingest path has no catch-up of its own).
                if !self.nodes[0].holds_durably(&self.tree.genuine[index].digest) {
                    self.send_ingest(index);
                    let retry = self.config.timing.ingest_retry_ms;
                    self.schedule(self.now + retry, Event::IngestRetry(index));
                }
            }
            Event::Arrive { to, edge, msg } => self.arrive(to, edge, msg),
            Event::FlushDone { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].up() {
                    self.flush_done(node);
                }
            }
            Event::Wake { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].up() {
                    self.wake(node);
                }
            }
            Event::Reconnect { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].up() {
                    self.reconnect(node);
                }
            }
            Event::DownstreamUp { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].up() {
                    let now = self.local_now(node);
                    if let Some(machine) = self.nodes[node].machine.as_mut() {
                        machine.handle_downstream_connected(now);
                    }
                    self.drive(node);
                }
            }
            Event::Crash { node } => {
                if self.faults_active && self.nodes[node].up() {
                    self.stats.crashes += 1;
                    self.crash(node);
                }
            }
            Event::Restart { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && !self.nodes[node].up() {
                    self.restart(node);
                }
            }
            Event::PartitionStart { root } => {
                self.log(root, || "PARTITIONED from its parent".into());
                if self.faults_active {
                    self.stats.partitions += 1;
                    self.nodes[root].cut += 1;
                    self.disconnect_upstream(root);
                }
            }
            Event::PartitionEnd { root } => {
                if self.faults_active && self.nodes[root].cut > 0 {
                    self.nodes[root].cut -= 1;
                    if self.nodes[root].cut == 0 {
                        self.connect_soon(root);
                    }
                }
            }
            Event::Inject(index) => self.inject(index),
            Event::Hostile(index) => self.hostile_move(index),
            Event::TrustPush(index) => self.trust_push(index),
            Event::Heal => self.heal(),
            Event::Check => {
                if self.quiescent() {
                    self.quiescent_at = Some(self.now);
                } else if self.now > self.heal_at + self.config.timing.settle_limit_ms {
                    let report = self.lagging();
                    self.violation(format!(
                        "not quiescent {} ms after the heal: {report}",
                        self.config.timing.settle_limit_ms
                    ));
                } else {
                    let interval = self.config.timing.check_interval_ms;
                    self.schedule(self.now + interval, Event::Check);
                }
            }
        }
    }

    fn send_ingest(&mut self, index: usize) {
        let payload = self.tree.genuine[index].ingest_json.clone();
        let origin = &self.tree.origins[self.tree.genuine[index].origin].id;
        let topic = topics::ingest_of(&self.nodes[0].id, origin);
        let who = Principal::Member { id: origin.clone(), kind: MemberKind::Origin, scope: None };
        self.check_allowed(0, &who, &topic, false);
        self.send(0, 0, Msg::Publish { topic, payload, tag: Tag::Genuine, qos1: true });
    }

    /// The origin's signed head of the advisory's chain after publishing advisory `index`
    /// (`kairan publish` does it).
    fn send_head(&mut self, index: usize) {
        let genuine = &self.tree.genuine[index];
        let origin = &self.tree.origins[genuine.origin];
        let issued_at = EPOCH.plus_ms(self.now as i64);
        let head = kairan_protocol::head::Head {
            origin: origin.id.clone(),
            scope: genuine.scope.clone(),
            seq: genuine.seq,
            digest: Some(genuine.digest),
            issued_at,
            expires_at: issued_at.plus_secs(24 * 3600),
        };
        let payload = Bytes::from(head.sign(&origin.key, &origin.cert).to_json());
        let topic = topics::ingest_heads_of(&self.nodes[0].id, &origin.id);
        let who = Principal::Member { id: origin.id.clone(), kind: MemberKind::Origin, scope: None };
        self.check_allowed(0, &who, &topic, false);
        self.send(0, 0, Msg::Publish { topic, payload, tag: Tag::Control, qos1: true });
    }

    /// The root pushes trust update `index`: one more revocation, of a key nobody uses.
    fn trust_push(&mut self, index: usize) {
        let bundle = self.tree.trust_update(self.seed, index, EPOCH.plus_ms(self.now as i64));
        self.trust_pushed.push(bundle.clone());
        let topic = topics::control(&self.nodes[0].id);
        let admin = Principal::Member { id: ADMIN.into(), kind: MemberKind::Admin, scope: None };
        self.check_allowed(0, &admin, &topic, false);
        self.send(0, 0, Msg::Publish { topic, payload: bundle, tag: Tag::Control, qos1: true });
    }

    /// Faults stop: partitions end, crashed nodes restart; then wait for quiescence.
    fn heal(&mut self) {
        self.faults_active = false;
        for index in 0..self.nodes.len() {
            if self.nodes[index].cut > 0 {
                self.nodes[index].cut = 0;
                self.connect_soon(index);
            }
        }
        for index in 0..self.nodes.len() {
            if !self.nodes[index].up() {
                self.restart(index);
            }
        }
        // The root pushes its trust bundle again (an administrator would), so that a bundle
        // whose only copy was lost in a crash of the national node is in force everywhere.
        if let Some(last) = self.trust_pushed.last().cloned() {
            let topic = topics::control(&self.nodes[0].id);
            self.send(0, 0, Msg::Publish { topic, payload: last, tag: Tag::Control, qos1: true });
        }
        let interval = self.config.timing.check_interval_ms;
        self.schedule(self.now + interval, Event::Check);
    }

    /// Nothing left that could change a store: no delivery or restart pending, every node up
    /// and idle, the national node holds every advisory, every child's cursor is at its
    /// parent's durable log end, and every node holds the trust bundle in force at the top.
    fn quiescent(&self) -> bool {
        let trust = self.nodes[0].trust_digest();
        self.in_flight == 0
            && self.nodes.iter().all(Node::settled)
            && self.tree.genuine.iter().all(|g| self.nodes[0].holds_durably(&g.digest))
            && self.nodes.iter().all(|n| match n.parent {
                Some(parent) => n.durable_cursor() == self.nodes[parent].durable_last_relay_seq(),
                None => true,
            })
            && self.nodes.iter().all(|n| n.trust_digest() == trust)
    }

    fn lagging(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.in_flight > 0 {
            parts.push(format!("{} deliveries or restarts pending", self.in_flight));
        }
        let trust = self.nodes[0].trust_digest();
        for node in &self.nodes {
            if !node.up() {
                parts.push(format!("{} down", node.id));
            } else if !node.settled() {
                parts.push(format!("{} busy ({})", node.id, node.busy_reason()));
            }
            if let Some(parent) = node.parent {
                let latest = self.nodes[parent].durable_last_relay_seq();
                if node.durable_cursor() != latest {
                    parts.push(format!("{} cursor {} < parent {latest}", node.id, node.durable_cursor()));
                }
            }
            if node.trust_digest() != trust {
                parts.push(format!("{} lacks the trust bundle in force", node.id));
            }
            if parts.len() > 12 {
                break;
            }
        }
        parts.join("; ")
    }
}

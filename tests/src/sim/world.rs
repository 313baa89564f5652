//! The discrete-event engine: events in a priority queue ordered by (simulated time,
//! sequence number), one seeded ChaCha8 generator for every random decision, taken in event
//! order. Nothing reads a clock, nothing runs on another thread, and no decision depends on
//! the iteration order of a hash map, so a run is a function of the seed and the config.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use kairan_node::core::{Core, Outcome, SYNC_SOURCE};
use kairan_node::store::{RestoredState, StoredDelivery};
use kairan_node::sync::{self, MAX_SYNC_PAGE_ENTRIES, SyncRequest, SyncResponse};
use kairan_protocol::sequence::{ChainHead, SeqDecision};
use kairan_protocol::{Digest, Scope, Timestamp};

use super::adversary::{Attack, AttackKind};
use super::config::{Scale, SimConfig, Targets};
use super::tree::{EPOCH, Level, Tree};

/// Log entries a relay scans for one catch-up page at most (`relay.rs`).
pub(super) const SYNC_SCAN_LIMIT: usize = 4096;
/// Catch-up requests answered per child and second (`relay.rs`).
const SYNC_REQUESTS_PER_SEC: u32 = 20;
/// Catch-up burst per child (`relay.rs`).
const SYNC_REQUEST_BURST: u32 = 40;
/// A gap does not trigger a request when one with the same cursor went out this recently
/// (`intake.rs`).
const GAP_REQUEST_SPACING_MS: u64 = 1_000;

/// Where a delivery came from, for the invariants: the real path or the adversary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    /// Published by an origin or forwarded by a relay.
    Genuine,
    /// Attack number `n`.
    Injected(usize),
}

/// A message on the simulated network.
#[derive(Debug, Clone)]
pub(super) enum Msg {
    /// Delivery bytes (ingest or a relay's deliveries topic).
    Delivery { payload: Rc<str>, tag: Tag },
    /// A catch-up request from `child`.
    SyncRequest { child: usize, bytes: Rc<[u8]> },
    /// A catch-up answer.
    SyncResponse { bytes: Rc<[u8]> },
}

#[derive(Debug)]
pub(super) enum Event {
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
    Tick {
        node: usize,
        incarnation: u64,
    },
    Reconnect {
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
    Heal,
    Check,
}

impl Event {
    /// Whether the event is work that can still change a store (quiescence waits for none):
    /// a delivery in flight, a restart. (Flushes are seen as busy nodes.) Catch-up requests
    /// and answers are not: once every cursor is at its parent's durable log end, an answer
    /// is empty or stale (it was built from a log that ended at most there), and with every
    /// child asking every minute, some are always in flight in a large tree.
    fn in_flight(&self) -> bool {
        matches!(self, Event::Arrive { msg: Msg::Delivery { .. }, .. } | Event::Restart { .. })
    }

    fn code(&self) -> u64 {
        match self {
            Event::Publish(i) => 1 | (*i as u64) << 8,
            Event::IngestRetry(i) => 2 | (*i as u64) << 8,
            Event::Arrive { to, .. } => 3 | (*to as u64) << 8,
            Event::FlushDone { node, .. } => 4 | (*node as u64) << 8,
            Event::Tick { node, .. } => 5 | (*node as u64) << 8,
            Event::Reconnect { node, .. } => 6 | (*node as u64) << 8,
            Event::Crash { node } => 7 | (*node as u64) << 8,
            Event::Restart { node, .. } => 8 | (*node as u64) << 8,
            Event::PartitionStart { root } => 9 | (*root as u64) << 8,
            Event::PartitionEnd { root } => 10 | (*root as u64) << 8,
            Event::Inject(i) => 11 | (*i as u64) << 8,
            Event::Heal => 12,
            Event::Check => 13,
        }
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

/// A stored delivery on the simulated disk. The delivery text is shared (`Rc`) between the
/// clinics of a district, which all store the bytes their district forwarded.
#[derive(Debug, Clone)]
pub(super) struct Rec {
    pub digest: Digest,
    pub origin: String,
    pub seq: u64,
    pub scope: String,
    pub relay_seq: u64,
    pub received_at: Timestamp,
    pub delivery: Rc<str>,
}

impl Rec {
    fn to_stored(&self) -> StoredDelivery {
        StoredDelivery {
            digest: self.digest,
            origin: self.origin.clone(),
            seq: self.seq,
            scope: self.scope.clone(),
            relay_seq: self.relay_seq,
            received_at: self.received_at,
            delivery: self.delivery.to_string(),
        }
    }
}

/// A write not yet flushed.
#[derive(Debug)]
enum Write {
    /// An accepted delivery, with the gap its acceptance reported.
    Put(Rec, Option<(u64, u64)>),
    Rejection,
    Fork(Digest),
    Cursor(u64),
    Published(u64),
}

/// What survives a crash: what was flushed.
#[derive(Debug, Default)]
pub(super) struct Disk {
    /// Output log / inbox, in relay_seq order.
    pub log: Vec<Rec>,
    pub rejections: u64,
    pub forks: Vec<Digest>,
    /// The parent's output log position caught up to.
    pub cursor: u64,
    /// The publisher's confirmed cursor (relays).
    pub published: u64,
}

impl Disk {
    pub fn last_relay_seq(&self) -> u64 {
        self.log.last().map_or(0, |r| r.relay_seq)
    }

    pub fn holds(&self, digest: &Digest) -> bool {
        self.log.iter().any(|r| r.digest == *digest)
    }

    fn holds_seq(&self, origin: &str, seq: u64) -> bool {
        self.log.iter().any(|r| r.seq == seq && r.origin == origin)
    }

    /// What `SledStore::restore` returns for this disk.
    fn restored(&self) -> RestoredState {
        let mut held: Vec<(String, u64, Digest)> =
            self.log.iter().map(|r| (r.origin.clone(), r.seq, r.digest)).collect();
        held.sort();
        let mut heads: Vec<(String, ChainHead)> = Vec::new();
        for (origin, seq, digest) in &held {
            match heads.last_mut() {
                Some((last, head)) if last == origin => *head = ChainHead { seq: *seq, digest: *digest },
                _ => heads.push((origin.clone(), ChainHead { seq: *seq, digest: *digest })),
            }
        }
        RestoredState { heads, held, last_relay_seq: self.last_relay_seq() }
    }
}

/// Input waiting for the node's processing loop (which handles one at a time).
#[derive(Debug)]
enum Job {
    Live { payload: Rc<str>, tag: Tag },
    Page(Box<SyncResponse>),
}

/// A relay forwards this after the flush.
#[derive(Debug)]
struct Forward {
    relay_seq: u64,
    scope: Scope,
    payload: Rc<str>,
}

/// What a decision leaves to do once its flush completes.
#[derive(Debug, Default)]
struct Step {
    forward: Option<Forward>,
    gap: bool,
}

/// The flush in flight and its continuation.
#[derive(Debug)]
enum Pending {
    Live {
        step: Step,
        payload: Rc<str>,
        tag: Tag,
    },
    /// A whole catch-up page and the cursor, flushed at once.
    Page {
        steps: Vec<Step>,
        has_more: bool,
    },
}

/// A node: its place in the tree, its process (core, queue), its disk.
#[derive(Debug)]
pub(super) struct Node {
    pub id: String,
    pub level: Level,
    pub scope: Scope,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    clock_offset_ms: i64,
    /// The running process's core; `None` while crashed.
    core: Option<Core>,
    incarnation: u64,
    pub disk: Disk,
    cache: Vec<Write>,
    intake: VecDeque<Job>,
    busy: Option<Pending>,
    limiter: Option<sync::RateLimiter>,
    /// Unacknowledged inputs the broker redelivers when the node is back.
    redeliver: Vec<(Rc<str>, Tag)>,
    /// Gap reports made durable: (origin, from, to).
    gaps: Vec<(String, u64, u64)>,
    /// Partitions currently cutting this node from its parent.
    cut: u32,
    /// The cursor and time of the last catch-up request (in memory: gone in a crash).
    last_request: Option<(u64, u64)>,
}

impl Node {
    pub fn up(&self) -> bool {
        self.core.is_some()
    }

    /// Up, and nothing pending that could store anything: at most empty or stale catch-up
    /// pages queued, and at most the flush of an empty page (its cursor unchanged).
    fn settled(&self) -> bool {
        let page_is_moot = |response: &SyncResponse| {
            response.after != self.disk.cursor
                || (response.deliveries.is_empty() && response.scanned_upto == self.disk.cursor)
        };
        let queue_moot =
            self.intake.iter().all(|job| matches!(job, Job::Page(response) if page_is_moot(response)));
        let flush_moot = match &self.busy {
            None => true,
            Some(Pending::Page { steps, .. }) => {
                steps.is_empty()
                    && self.cache.iter().all(|write| match write {
                        Write::Cursor(cursor) => *cursor == self.disk.cursor,
                        Write::Published(_) => true,
                        _ => false,
                    })
            }
            Some(Pending::Live { .. }) => false,
        };
        self.up() && queue_moot && flush_moot
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events processed.
    pub events: u64,
    /// `Core::on_delivery` calls.
    pub decisions: u64,
    /// Accepted outcomes.
    pub accepted: u64,
    /// Duplicate outcomes.
    pub duplicates: u64,
    /// Rejected outcomes.
    pub rejected: u64,
    /// Fork outcomes.
    pub forks: u64,
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
    /// Crashes during a flush.
    pub crashes_in_flush: u64,
    /// Crashes between flush and forward.
    pub crashes_before_forward: u64,
    /// Restarts.
    pub restarts: u64,
    /// Partitions.
    pub partitions: u64,
    /// Deliveries republished by a restarted relay's publisher.
    pub republished: u64,
    /// Catch-up requests sent.
    pub sync_requests: u64,
    /// Catch-up answers sent.
    pub sync_responses: u64,
    /// Catch-up requests dropped by the rate limiter.
    pub rate_limited: u64,
    /// Deliveries received through catch-up pages.
    pub sync_deliveries: u64,
    /// Pages ignored as stale (answer to an older request).
    pub stale_pages: u64,
    /// Catch-up answers that scanned past the parent's durable log (entries still in its
    /// page cache): each is a violation.
    pub answers_beyond_durable: u64,
    /// Gap reports made durable.
    pub gaps_reported: u64,
    /// Attacks injected (sent).
    pub attacks_sent: u64,
    /// Attack inputs that reached a running node and were refused (rejected, or kept as a fork).
    pub attacks_refused: u64,
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
    /// Genuine advisory indexes by origin id, in seq order.
    pub by_origin: BTreeMap<String, Vec<usize>>,
    /// Digests that must never be stored: forged, tampered, equivocating advisories.
    pub bad: BTreeSet<Digest>,
    pub attacks: Vec<Attack>,
    faults_active: bool,
    heal_at: u64,
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
        let nodes: Vec<Node> = tree
            .nodes
            .iter()
            .enumerate()
            .map(|(index, planned)| Node {
                id: planned.id.clone(),
                level: planned.level,
                scope: planned.scope.clone(),
                parent: planned.parent,
                children: planned.children.clone(),
                clock_offset_ms: if skew > 0 { rng.gen_range(-skew..=skew) } else { 0 },
                core: Some(Core::restore(tree.core_config(index), RestoredState::default())),
                incarnation: 0,
                disk: Disk::default(),
                cache: Vec::new(),
                intake: VecDeque::new(),
                busy: None,
                limiter: planned.relay.as_ref().map(|_| new_limiter()),
                redeliver: Vec::new(),
                gaps: Vec::new(),
                cut: 0,
                last_request: None,
            })
            .collect();
        let mut by_origin: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, genuine) in tree.genuine.iter().enumerate() {
            by_origin.entry(genuine.origin_id.clone()).or_default().push(index);
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
            by_origin,
            bad: BTreeSet::new(),
            attacks: Vec::new(),
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

    /// Schedules publications, crashes, partitions, attacks, the heal, and every child's
    /// periodic catch-up (each with its own phase).
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
        self.schedule(self.heal_at, Event::Heal);
        let interval = self.config.timing.sync_interval_ms;
        for node in 1..self.nodes.len() {
            let phase = self.rng.gen_range(1..=interval);
            self.schedule(phase, Event::Tick { node, incarnation: 0 });
        }
    }

    /// A node, its level drawn first (uniformly), so that the national and prefectural
    /// relays take their share of faults in a small tree.
    pub(super) fn random_node(&mut self) -> usize {
        let level = self.rng.gen_range(0..4usize);
        self.node_at_level(level)
    }

    /// A node of `level` (0 national, 1 prefectures, 2 districts, 3 clinics), drawn uniformly.
    fn node_at_level(&mut self, level: usize) -> usize {
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

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        if event.in_flight() {
            self.in_flight += 1;
        }
        self.queue.push(Scheduled { at, seq: self.seq, event });
    }

    fn mix(&mut self, value: u64) {
        self.trace = (self.trace ^ value).wrapping_mul(0x0000_0100_0000_01b3);
    }

    fn range(&mut self, (low, high): (u64, u64)) -> u64 {
        if high <= low { low } else { self.rng.gen_range(low..=high) }
    }

    /// Node `index`'s clock.
    pub(super) fn local_now(&self, index: usize) -> Timestamp {
        EPOCH.plus_ms(self.now as i64 + self.nodes[index].clock_offset_ms)
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
                let retry = self.config.timing.ingest_retry_ms;
                self.schedule(self.now + retry, Event::IngestRetry(index));
            }
            Event::IngestRetry(index) => {
                // The origin publishes again until the national node has it durably (see
                // docs/simulation.md: the ingest path has no catch-up of its own).
                if !self.nodes[0].disk.holds(&self.tree.genuine[index].digest) {
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
            Event::Tick { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].up() {
                    self.request_page(node);
                    let interval = self.config.timing.sync_interval_ms;
                    self.schedule(self.now + interval, Event::Tick { node, incarnation });
                }
            }
            Event::Reconnect { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].up() {
                    self.request_page(node);
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
                }
            }
            Event::PartitionEnd { root } => {
                if self.faults_active && self.nodes[root].cut > 0 {
                    self.nodes[root].cut -= 1;
                    if self.nodes[root].cut == 0 {
                        self.reconnect_soon(root);
                    }
                }
            }
            Event::Inject(index) => self.inject(index),
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
        self.send(0, 0, Msg::Delivery { payload, tag: Tag::Genuine });
    }

    /// Sends `msg` to `to` over the edge of `edge`, with the network's faults.
    pub(super) fn send(&mut self, to: usize, edge: usize, msg: Msg) {
        self.stats.sent += 1;
        let mut copies = 1;
        if self.faults_active {
            if self.rng.gen_bool(self.config.faults.loss) {
                self.stats.lost += 1;
                self.log(to, || "message to it lost in the network".into());
                return;
            }
            if self.rng.gen_bool(self.config.faults.duplicate) {
                self.stats.duplicated += 1;
                copies = 2;
            }
        }
        for _ in 0..copies {
            let slow = self.faults_active && self.rng.gen_bool(self.config.faults.slow);
            let delay = if slow {
                self.stats.slow += 1;
                self.range(self.config.timing.slow_delay_ms)
            } else {
                self.range(self.config.timing.delay_ms)
            };
            self.schedule(self.now + delay, Event::Arrive { to, edge, msg: msg.clone() });
        }
    }

    fn arrive(&mut self, to: usize, edge: usize, msg: Msg) {
        if self.nodes[edge].cut > 0 {
            self.stats.lost_partition += 1;
            self.log(to, || "message lost: partition".into());
            return;
        }
        if !self.nodes[to].up() {
            self.stats.lost_down += 1;
            self.log(to, || "message lost: node down".into());
            return;
        }
        match msg {
            Msg::Delivery { payload, tag } => {
                self.nodes[to].intake.push_back(Job::Live { payload, tag });
                self.pump(to);
            }
            Msg::SyncRequest { child, bytes } => self.answer(to, child, &bytes),
            Msg::SyncResponse { bytes } => match sync::parse_response(&bytes) {
                Ok(response) => {
                    self.nodes[to].intake.push_back(Job::Page(Box::new(response)));
                    self.pump(to);
                }
                Err(error) => {
                    self.violation(format!("{}: a catch-up answer did not parse: {error}", self.nodes[to].id))
                }
            },
        }
    }

    /// The processing loop: one input at a time; an input that needs a flush holds the
    /// loop until the flush completes.
    fn pump(&mut self, index: usize) {
        while self.nodes[index].up() && self.nodes[index].busy.is_none() {
            let Some(job) = self.nodes[index].intake.pop_front() else { return };
            match job {
                Job::Live { payload, tag } => {
                    if let Some(step) = self.decide(index, &payload, false, tag) {
                        self.nodes[index].busy = Some(Pending::Live { step, payload, tag });
                        self.start_flush(index);
                    }
                    // A duplicate needs no write: acknowledged at once.
                }
                Job::Page(response) => {
                    if response.after != self.nodes[index].disk.cursor {
                        // An answer to an older request: ignored, as intake.rs does.
                        self.stats.stale_pages += 1;
                        continue;
                    }
                    // As intake.rs: decide every delivery of the page, write the outcomes
                    // and the cursor, one flush, then forward.
                    let mut steps = Vec::new();
                    for delivery in &response.deliveries {
                        self.stats.sync_deliveries += 1;
                        let bytes: Rc<str> = Rc::from(json(&delivery.to_json()));
                        if let Some(step) = self.decide(index, &bytes, true, Tag::Genuine) {
                            steps.push(step);
                        }
                    }
                    self.nodes[index].cache.push(Write::Cursor(response.scanned_upto));
                    self.nodes[index].busy = Some(Pending::Page { steps, has_more: response.has_more() });
                    self.start_flush(index);
                }
            }
        }
    }

    /// Runs the core on one input and writes the outcome to the page cache. `None` for a
    /// duplicate (nothing to write).
    fn decide(&mut self, index: usize, bytes: &Rc<str>, via_sync: bool, tag: Tag) -> Option<Step> {
        let now = self.local_now(index);
        let source = match (via_sync, self.nodes[index].parent) {
            (true, _) => SYNC_SOURCE.to_owned(),
            (false, None) => "kairan/v1/jp/ingest".to_owned(),
            (false, Some(parent)) => format!("kairan/v1/{}/deliveries", self.nodes[parent].id),
        };
        let is_relay = self.nodes[index].level != Level::Clinic;
        let outcome = {
            let core =
                self.nodes[index].core.as_mut().unwrap_or_else(|| unreachable!("decide on a down node"));
            core.on_delivery(bytes.as_bytes(), &source, now)
        };
        self.stats.decisions += 1;
        let code = match &outcome {
            Outcome::Accepted(_) => 1,
            Outcome::Duplicate { .. } => 2,
            Outcome::Rejected(_) => 3,
            Outcome::Fork(_) => 4,
            Outcome::Held { .. } => 5,
        };
        self.mix(code | (index as u64) << 8);
        self.log(index, || match &outcome {
            Outcome::Accepted(a) => format!(
                "accepted {} #{} ({}) relay_seq {} {:?}{}",
                a.record.origin,
                a.record.seq,
                a.record.scope,
                a.record.relay_seq,
                a.sequence,
                if via_sync { " via catch-up" } else { "" }
            ),
            Outcome::Duplicate { digest } => format!("duplicate {}", digest.short()),
            Outcome::Rejected(r) => format!("rejected {:?}: {}", tag, r.code),
            Outcome::Fork(f) => format!("fork {} #{}", f.origin, f.seq),
            Outcome::Held { reason } => format!("held: {reason}"),
        });
        self.expect(index, tag, &outcome);
        match outcome {
            Outcome::Duplicate { .. } => {
                self.stats.duplicates += 1;
                None
            }
            Outcome::Accepted(accepted) => {
                self.stats.accepted += 1;
                let record = accepted.record;
                // A clinic stores the bytes as received: share them instead of copying.
                let delivery: Rc<str> = if !is_relay && record.delivery.as_str() == &**bytes {
                    bytes.clone()
                } else {
                    Rc::from(record.delivery)
                };
                let gap = match accepted.sequence {
                    SeqDecision::Gap { from, to } => Some((from, to)),
                    _ => None,
                };
                let forward = is_relay.then(|| Forward {
                    relay_seq: record.relay_seq,
                    scope: accepted.verified.advisory().scope.clone(),
                    payload: delivery.clone(),
                });
                let rec = Rec {
                    digest: record.digest,
                    origin: record.origin,
                    seq: record.seq,
                    scope: record.scope,
                    relay_seq: record.relay_seq,
                    received_at: record.received_at,
                    delivery,
                };
                self.nodes[index].cache.push(Write::Put(rec, gap));
                Some(Step { forward, gap: gap.is_some() })
            }
            Outcome::Rejected(_) => {
                self.stats.rejected += 1;
                self.nodes[index].cache.push(Write::Rejection);
                Some(Step::default())
            }
            Outcome::Fork(fork) => {
                self.stats.forks += 1;
                self.nodes[index].cache.push(Write::Fork(fork.digest));
                Some(Step::default())
            }
            // Certificates are valid over the whole run: `expect` reported it already.
            Outcome::Held { .. } => None,
        }
    }

    /// Genuine input must be accepted or deduplicated; hostile input must be refused.
    fn expect(&mut self, index: usize, tag: Tag, outcome: &Outcome) {
        let node = &self.nodes[index].id;
        match (tag, outcome) {
            (Tag::Genuine, Outcome::Accepted(_) | Outcome::Duplicate { .. }) => {}
            (Tag::Genuine, Outcome::Rejected(rejection)) => {
                let text =
                    format!("{node} refused a genuine delivery: {}: {}", rejection.code, rejection.message);
                self.violation(text);
            }
            (Tag::Genuine, Outcome::Fork(fork)) => {
                let text =
                    format!("{node} classified a genuine advisory as a fork: {} #{}", fork.origin, fork.seq);
                self.violation(text);
            }
            (_, Outcome::Held { reason }) => {
                let text = format!("{node} held input although its certificate is valid: {reason}");
                self.violation(text);
            }
            (Tag::Injected(attack), outcome) => {
                let kind = self.attacks[attack].kind;
                // An equivocation is validly signed by the origin: it must be kept as a fork.
                // Everything else the adversary sends must be rejected.
                // Attacks that carry a genuine advisory may also be dropped, unverified, as
                // copies of an advisory the node holds (the core dedups by claimed digest first).
                let refused = match (kind, outcome) {
                    (AttackKind::Equivocation, outcome) => matches!(outcome, Outcome::Fork(_)),
                    (_, Outcome::Rejected(_)) => true,
                    (_, Outcome::Duplicate { digest }) => {
                        kind.carries_genuine() && !self.bad.contains(digest)
                    }
                    _ => false,
                };
                if refused {
                    self.stats.attacks_refused += 1;
                } else {
                    let what = match outcome {
                        Outcome::Accepted(_) => "accepted".to_owned(),
                        Outcome::Duplicate { .. } => "taken as a duplicate".to_owned(),
                        Outcome::Rejected(r) => format!("rejected ({}) instead of kept as a fork", r.code),
                        Outcome::Fork(_) => "classified as a fork".to_owned(),
                        Outcome::Held { .. } => "held".to_owned(),
                    };
                    let text = format!("attack #{attack} ({kind}) at {node} was {what}");
                    self.violation(text);
                }
            }
        }
    }

    fn start_flush(&mut self, index: usize) {
        let latency = self.range(self.config.timing.flush_ms);
        let incarnation = self.nodes[index].incarnation;
        self.schedule(self.now + latency, Event::FlushDone { node: index, incarnation });
    }

    fn flush_done(&mut self, index: usize) {
        if self.faults_active && self.rng.gen_bool(self.config.faults.crash_in_flush) {
            self.stats.crashes_in_flush += 1;
            self.crash(index);
            return;
        }
        self.apply_cache(index);
        let Some(pending) = self.nodes[index].busy.take() else { return };
        let forwards = match &pending {
            Pending::Live { step, .. } => step.forward.is_some(),
            Pending::Page { steps, .. } => steps.iter().any(|step| step.forward.is_some()),
        };
        if forwards && self.faults_active && self.rng.gen_bool(self.config.faults.crash_before_forward) {
            // Durable, not yet forwarded, and (if live) not acknowledged.
            self.stats.crashes_before_forward += 1;
            self.nodes[index].busy = Some(pending);
            self.crash(index);
            return;
        }
        match pending {
            Pending::Live { step, .. } => {
                if let Some(forward) = step.forward {
                    self.forward(index, forward);
                }
                if step.gap {
                    // A jump in an origin's chain: ask the parent now, unless that was just
                    // asked (live path only, as in intake.rs).
                    let cursor = self.nodes[index].disk.cursor;
                    let asked = self.nodes[index].last_request.is_some_and(|(after, at)| {
                        after == cursor && self.now.saturating_sub(at) < GAP_REQUEST_SPACING_MS
                    });
                    if !asked {
                        self.request_page(index);
                    }
                }
            }
            Pending::Page { steps, has_more } => {
                for step in steps {
                    if let Some(forward) = step.forward {
                        self.forward(index, forward);
                    }
                }
                if has_more {
                    self.request_page(index);
                }
            }
        }
        self.pump(index);
    }

    /// Makes the page cache durable, checking each newly stored delivery.
    fn apply_cache(&mut self, index: usize) {
        let writes = std::mem::take(&mut self.nodes[index].cache);
        for write in writes {
            match write {
                Write::Put(rec, gap) => {
                    let last = self.nodes[index].disk.last_relay_seq();
                    if rec.relay_seq <= last {
                        let text = format!(
                            "{}: relay_seq {} stored after {last} (sequence reused)",
                            self.nodes[index].id, rec.relay_seq
                        );
                        self.violation(text);
                    }
                    if self.bad.contains(&rec.digest) {
                        let text = format!(
                            "{} stored the forged or tampered advisory {}",
                            self.nodes[index].id, rec.digest
                        );
                        self.violation(text);
                    }
                    if let Some((from, to)) = gap {
                        self.stats.gaps_reported += 1;
                        self.nodes[index].gaps.push((rec.origin.clone(), from, to));
                    }
                    let (origin, seq) = (rec.origin.clone(), rec.seq);
                    self.nodes[index].disk.log.push(rec);
                    self.check_unreported_gap(index, &origin, seq);
                }
                Write::Rejection => self.nodes[index].disk.rejections += 1,
                Write::Fork(digest) => self.nodes[index].disk.forks.push(digest),
                Write::Cursor(cursor) => self.nodes[index].disk.cursor = cursor,
                Write::Published(upto) => {
                    let disk = &mut self.nodes[index].disk;
                    disk.published = disk.published.max(upto);
                }
            }
        }
    }

    /// The gap invariant: a node that stores `origin #seq` while missing an earlier genuine
    /// advisory of `origin` in its scope must have reported a gap covering it.
    fn check_unreported_gap(&mut self, index: usize, origin: &str, seq: u64) {
        let Some(chain) = self.by_origin.get(origin) else { return };
        let node = &self.nodes[index];
        for &g in chain {
            let genuine = &self.tree.genuine[g];
            if genuine.seq >= seq {
                break;
            }
            if !genuine.scope.overlaps(&node.scope) || node.disk.holds_seq(origin, genuine.seq) {
                continue;
            }
            let reported =
                node.gaps.iter().any(|(o, from, to)| o == origin && (*from..=*to).contains(&genuine.seq));
            if !reported {
                let text = format!(
                    "{} stored {origin} #{seq} while missing {origin} #{} (scope {}, in its scope) without reporting a gap",
                    node.id, genuine.seq, genuine.scope
                );
                self.violations.push(text);
                return;
            }
        }
    }

    /// A relay's publisher: one publish per child whose scope overlaps (what the broker's
    /// topic routing does), then the confirmed cursor (durable at the next flush).
    fn forward(&mut self, index: usize, forward: Forward) {
        let children = self.nodes[index].children.clone();
        for child in children {
            if self.nodes[child].scope.overlaps(&forward.scope) {
                self.send(
                    child,
                    child,
                    Msg::Delivery { payload: forward.payload.clone(), tag: Tag::Genuine },
                );
            }
        }
        self.nodes[index].cache.push(Write::Published(forward.relay_seq));
    }

    fn request_page(&mut self, index: usize) {
        let Some(parent) = self.nodes[index].parent else { return };
        let request = SyncRequest {
            after: self.nodes[index].disk.cursor,
            scope: self.nodes[index].scope.clone(),
            limit: MAX_SYNC_PAGE_ENTRIES,
            trust: None,
        };
        self.stats.sync_requests += 1;
        self.nodes[index].last_request = Some((request.after, self.now));
        self.log(index, || format!("catch-up request after {}", request.after));
        let bytes: Rc<[u8]> = Rc::from(request.to_json());
        self.send(parent, index, Msg::SyncRequest { child: index, bytes });
    }

    /// A relay answers a catch-up request from its store (what the sled tree shows: flushed
    /// and unflushed writes) and its latest durable relay_seq, as relay.rs does.
    fn answer(&mut self, parent: usize, child: usize, bytes: &[u8]) {
        let now = self.local_now(parent);
        let child_id = self.nodes[child].id.clone();
        let allowed = match self.nodes[parent].limiter.as_mut() {
            Some(limiter) => limiter.allow(&child_id, now),
            None => false,
        };
        if !allowed {
            self.stats.rate_limited += 1;
            return;
        }
        let request = match sync::parse_request(bytes) {
            Ok(request) => request,
            Err(error) => {
                self.violation(format!(
                    "{}: a catch-up request did not parse: {error}",
                    self.nodes[parent].id
                ));
                return;
            }
        };
        let node = &self.nodes[parent];
        let start = node.disk.log.partition_point(|r| r.relay_seq <= request.after);
        let cached = node.cache.iter().filter_map(|w| match w {
            Write::Put(rec, _) if rec.relay_seq > request.after => Some(rec),
            _ => None,
        });
        let entries: Vec<StoredDelivery> =
            node.disk.log[start..].iter().chain(cached).take(SYNC_SCAN_LIMIT).map(Rec::to_stored).collect();
        let latest = node.disk.last_relay_seq();
        let response = sync::build_response(&request, entries, latest);
        self.stats.sync_responses += 1;
        if response.scanned_upto > latest {
            // The simulator hands build_response the store as sled shows it, unflushed
            // writes included (relay.rs also filters them out before the call).
            self.stats.answers_beyond_durable += 1;
            let text = format!(
                "{} answered {} with scanned_upto {} past its durable log end {latest}",
                self.nodes[parent].id, self.nodes[child].id, response.scanned_upto
            );
            self.violation(text);
        }
        self.log(child, || {
            format!(
                "parent answers after {}: {} deliveries, scanned_upto {}, last {}",
                response.after,
                response.deliveries.len(),
                response.scanned_upto,
                response.last_relay_seq
            )
        });
        let bytes: Rc<[u8]> = Rc::from(response.to_json());
        self.send(child, child, Msg::SyncResponse { bytes });
    }

    /// A process crash: the core, the page cache and the queued input are gone; the disk
    /// stays. Unacknowledged live input is redelivered after the restart with probability
    /// `faults.redeliver` (the broker kept the session), or lost.
    pub(super) fn crash(&mut self, index: usize) {
        self.log(index, || format!("CRASH (unflushed writes: {})", self.nodes[index].cache.len()));
        let redeliver = self.config.faults.redeliver;
        let node = &mut self.nodes[index];
        node.core = None;
        node.incarnation += 1;
        node.cache.clear();
        node.limiter = None;
        node.last_request = None;
        let mut unacked: Vec<(Rc<str>, Tag)> = Vec::new();
        if let Some(Pending::Live { payload, tag, .. }) = node.busy.take() {
            unacked.push((payload, tag));
        }
        for job in node.intake.drain(..) {
            if let Job::Live { payload, tag } = job {
                unacked.push((payload, tag));
            }
        }
        for (payload, tag) in unacked {
            if self.rng.gen_bool(redeliver) {
                self.nodes[index].redeliver.push((payload, tag));
            } else {
                self.stats.lost_in_crash += 1;
            }
        }
        let downtime = self.range(self.config.timing.downtime_ms);
        let at = (self.now + downtime).min(self.heal_at.max(self.now + 1));
        let incarnation = self.nodes[index].incarnation;
        self.schedule(at, Event::Restart { node: index, incarnation });
    }

    /// Restart from the disk: `Core::restore` from what was flushed; the publisher
    /// republishes after its durable cursor; the broker redelivers what it kept; the node
    /// reconnects (catch-up request) and so do its children.
    fn restart(&mut self, index: usize) {
        self.stats.restarts += 1;
        self.log(index, || {
            let disk = &self.nodes[index].disk;
            format!(
                "RESTART from disk: {} stored, cursor {}, published {}",
                disk.log.len(),
                disk.cursor,
                disk.published
            )
        });
        let state = self.nodes[index].disk.restored();
        let core = Core::restore(self.tree.core_config(index), state);
        let is_relay = self.nodes[index].level != Level::Clinic;
        {
            let node = &mut self.nodes[index];
            node.core = Some(core);
            node.limiter = is_relay.then(new_limiter);
        }
        if is_relay {
            let published = self.nodes[index].disk.published;
            let unpublished: Vec<(u64, String, Rc<str>)> = self.nodes[index]
                .disk
                .log
                .iter()
                .filter(|r| r.relay_seq > published)
                .map(|r| (r.relay_seq, r.scope.clone(), r.delivery.clone()))
                .collect();
            for (relay_seq, scope, payload) in unpublished {
                self.stats.republished += 1;
                match Scope::parse(&scope) {
                    Ok(scope) => self.forward(index, Forward { relay_seq, scope, payload }),
                    Err(error) => self.violation(format!("stored scope {scope:?}: {error}")),
                }
            }
        }
        // The catch-up invariant: a child's cursor never points past its parent's durable
        // log. If it did, whatever the parent stores at those relay_seqs after this restart
        // would never reach the child through catch-up.
        let durable_end = self.nodes[index].disk.last_relay_seq();
        for &child in &self.nodes[index].children {
            let cursor = self.nodes[child].disk.cursor;
            if cursor > durable_end {
                let text = format!(
                    "{}'s catch-up cursor is {cursor} but its parent {} restarted with its log ending at {durable_end}: \
                     relay_seqs {}..={cursor} will be reused for other deliveries the child never asks for",
                    self.nodes[child].id,
                    self.nodes[index].id,
                    durable_end + 1
                );
                self.violations.push(text);
            }
        }
        let redeliver = std::mem::take(&mut self.nodes[index].redeliver);
        for (payload, tag) in redeliver {
            self.stats.redelivered += 1;
            self.send(index, index, Msg::Delivery { payload, tag });
        }
        self.reconnect_soon(index);
        let incarnation = self.nodes[index].incarnation;
        let interval = self.config.timing.sync_interval_ms;
        self.schedule(self.now + interval, Event::Tick { node: index, incarnation });
        let children = self.nodes[index].children.clone();
        for child in children {
            self.reconnect_soon(child);
        }
    }

    /// The node (re)connects to its parent shortly and sends a catch-up request.
    fn reconnect_soon(&mut self, index: usize) {
        if self.nodes[index].parent.is_none() || !self.nodes[index].up() {
            return;
        }
        let delay = self.rng.gen_range(10..=2_000);
        let incarnation = self.nodes[index].incarnation;
        self.schedule(self.now + delay, Event::Reconnect { node: index, incarnation });
    }

    /// Faults stop: partitions end, crashed nodes restart; then wait for quiescence.
    fn heal(&mut self) {
        self.faults_active = false;
        for index in 0..self.nodes.len() {
            if self.nodes[index].cut > 0 {
                self.nodes[index].cut = 0;
                self.reconnect_soon(index);
            }
        }
        for index in 0..self.nodes.len() {
            if !self.nodes[index].up() {
                self.restart(index);
            }
        }
        let interval = self.config.timing.check_interval_ms;
        self.schedule(self.now + interval, Event::Check);
    }

    /// Nothing left that could change a store: no delivery or restart pending, every node up
    /// with nothing to do but empty or stale catch-up pages, the national node holds every
    /// advisory, and every child's cursor is at its parent's durable last relay_seq (further
    /// catch-up returns nothing).
    fn quiescent(&self) -> bool {
        self.in_flight == 0
            && self.nodes.iter().all(Node::settled)
            && self.tree.genuine.iter().all(|g| self.nodes[0].disk.holds(&g.digest))
            && self.nodes.iter().all(|n| match n.parent {
                Some(parent) => n.disk.cursor == self.nodes[parent].disk.last_relay_seq(),
                None => true,
            })
    }

    fn lagging(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.in_flight > 0 {
            parts.push(format!("{} deliveries or restarts pending", self.in_flight));
        }
        for node in &self.nodes {
            if !node.up() {
                parts.push(format!("{} down", node.id));
            } else if !node.settled() {
                parts.push(format!("{} busy", node.id));
            }
            if let Some(parent) = node.parent {
                let latest = self.nodes[parent].disk.last_relay_seq();
                if node.disk.cursor != latest {
                    parts.push(format!("{} cursor {} < parent {latest}", node.id, node.disk.cursor));
                }
            }
            if parts.len() > 12 {
                break;
            }
        }
        parts.join("; ")
    }
}

fn new_limiter() -> sync::RateLimiter {
    sync::RateLimiter::new(SYNC_REQUESTS_PER_SEC, SYNC_REQUEST_BURST)
}

/// Delivery JSON is UTF-8 (serde_json writes nothing else).
pub(super) fn json(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

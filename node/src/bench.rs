//! `kairan bench`: end-to-end latency and sustained throughput of the relay hierarchy, with a
//! chain of Mosquitto bridges measured side by side in the same run.
//!
//! For each clinic count N the bench starts a tree in this process with
//! [`HierarchyBuilder`] — national → 1 prefecture → D districts → N/D clinics, every relay
//! with its embedded broker on a loopback port, every relay and clinic with its sled store
//! in a temporary directory — and measures, through depth 4 (three relays, then the clinic):
//!
//! - **latency**: one advisory at a time, from handing it to the publisher's MQTT client to
//!   the moment every one of the N clinic stores holds it (verified, stored, flushed);
//!   p50 and p99 over the samples;
//! - **throughput**: K advisories published back to back; advisories/s until every clinic
//!   holds all K (deliveries/s = K·N/s), and, for kairan, until every relay of each level
//!   holds all K (the relay chain alone).
//!
//! Then, when `mosquitto` is installed, the same topology as a chain of Mosquitto processes
//! bridged child → parent (`topic bench/# in 1`), N rumqttc subscribers (QoS 1, persistent
//! sessions) on the district brokers, the same payload size, the same publisher client and
//! the same arrival detector: pure MQTT transport, no verification and no storage. The ratio
//! kairan ÷ Mosquitto is the price of verify + store + attest at each hop.
//!
//! D (districts) is 1 for N ≤ 10, 2 for N ≤ 100, 4 above: a real district association serves
//! up to ~2,000 clinics, but this splits the clinic fan-out over several relays and brokers
//! the way the real tree does, without making the chain deeper. Every clinic runs in this
//! process (its own MQTT connection, its own sled database), so N = 1,000 means ~1,000
//! databases and ~2,000 loopback sockets: run with `ulimit -n 65536` (checked at start).
//!
//! Arrival is detected by one polling thread (200 µs period) that asks each clinic store
//! `contains(digest)` — or each subscriber's set of received ids for Mosquitto — so both
//! sides are measured by the same detector with the same resolution. Both sides publish
//! through one persistent MQTT connection (QoS 1), so connection set-up is not counted.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::task::JoinHandle;

use kairan_protocol::Digest;

use crate::draft::{AdvisoryDraft, SAMPLES};
use crate::error::CliError;
use crate::hierarchy::{HierarchyBuilder, Level};
use crate::mqtt::{self, BrokerAddr, Credentials, REQUEST_CHANNEL_CAPACITY};
use crate::store::{SledStore, Store};

/// How often the arrival detector looks at every receiver that is still missing something.
const POLL_INTERVAL: Duration = Duration::from_micros(200);
/// Latency samples always taken, even past the time budget.
const MIN_SAMPLES: usize = 10;
/// Advisories always published for throughput, even past the delivery budget.
const MIN_BATCH: usize = 10;
/// The Mosquitto topic (bridged with `topic bench/# in 1`).
const BENCH_TOPIC: &str = "bench/advisories";
/// Ids of Mosquitto warm-up messages start here (measured messages count from 0).
const PROBE_ID_BASE: u64 = 1 << 40;

/// What `kairan bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Clinic counts to measure, in order.
    pub clinics: Vec<usize>,
    /// Advisories published back to back for throughput (at most; see `max_deliveries`).
    pub advisories: usize,
    /// Latency samples (at most; see `latency_budget`).
    pub latency_samples: usize,
    /// Also measure a chain of Mosquitto bridges (skipped with a notice if not installed).
    pub mosquitto: bool,
    /// The throughput batch is cut to `max(10, max_deliveries / N)` advisories so that one
    /// run at N = 1,000 does not take minutes.
    pub max_deliveries: usize,
    /// Latency sampling stops after this long (per system and N), once 10 samples are in.
    pub latency_budget: Duration,
    /// Pause between latency samples (the pipeline is idle when a sample starts).
    pub pause: Duration,
    /// Districts for every N (default: 1 for N ≤ 10, 2 for N ≤ 100, 4 above).
    pub districts: Option<usize>,
    /// Longest wait for one arrival or one batch before the run fails.
    pub timeout: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            clinics: vec![10, 100, 1000],
            advisories: 200,
            latency_samples: 100,
            mosquitto: true,
            max_deliveries: 10_000,
            latency_budget: Duration::from_secs(30),
            pause: Duration::from_millis(10),
            districts: None,
            timeout: Duration::from_secs(120),
            progress: true,
        }
    }
}

/// Parses `10,100,1000` (spaces and `_` allowed inside a number, as in `1_000`).
pub fn parse_clinic_counts(text: &str) -> Result<Vec<usize>, String> {
    let counts = text
        .split(',')
        .map(|part| {
            let digits: String = part.chars().filter(|c| !c.is_whitespace() && *c != '_').collect();
            match digits.parse::<usize>() {
                Ok(0) => Err(format!("clinic count {part:?} must be at least 1")),
                Ok(count) => Ok(count),
                Err(_) => Err(format!("clinic count {part:?} is not a number")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if counts.is_empty() {
        return Err("no clinic counts".into());
    }
    Ok(counts)
}

/// The default number of districts for `clinics` clinics.
pub fn default_districts(clinics: usize) -> usize {
    match clinics {
        0..=10 => 1,
        11..=100 => 2,
        _ => 4,
    }
}

/// `kairan bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Clinic counts, comma-separated.
    #[arg(long, default_value = "10,100,1000")]
    pub clinics: String,
    /// Advisories published back to back for throughput (cut to max(10, 10000/N) per N).
    #[arg(long, default_value_t = 200)]
    pub advisories: usize,
    /// Latency samples per N (sampling stops after 30 s once 10 are in).
    #[arg(long, default_value_t = 100)]
    pub samples: usize,
    /// Districts for every N (default 1 for N ≤ 10, 2 for N ≤ 100, 4 above).
    #[arg(long)]
    pub districts: Option<usize>,
    /// Do not run the Mosquitto bridge chain.
    #[arg(long)]
    pub no_mosquitto: bool,
    /// Append the markdown report to this file (it is always printed on stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Show the nodes' logs (warnings and above otherwise).
    #[arg(long)]
    pub verbose: bool,
}

/// Runs `kairan bench` from parsed arguments: builds a multi-thread runtime, prints the
/// markdown report on stdout and appends it to `--out`.
pub fn cli(args: &BenchArgs) -> Result<(), CliError> {
    crate::logging::init(None, Some(if args.verbose { "info" } else { "warn" }));
    let options = BenchOptions {
        clinics: parse_clinic_counts(&args.clinics)
            .map_err(|e| CliError::Usage(format!("--clinics: {e}")))?,
        advisories: args.advisories.max(1),
        latency_samples: args.samples.max(1),
        mosquitto: !args.no_mosquitto,
        districts: args.districts,
        ..BenchOptions::default()
    };
    let report = run_blocking(options)?;
    print!("{report}");
    if let Some(path) = &args.out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| CliError::io(path, e))?;
        file.write_all(report.as_bytes()).map_err(|e| CliError::io(path, e))?;
    }
    Ok(())
}

/// Runs the bench on a new multi-thread runtime (the clap-free entry point).
///
/// A watchdog thread ends the process (exit 70) if a measurement makes no progress for
/// [`STALL_LIMIT`]: a deadlocked node blocks the runtime's worker threads, and then no
/// timeout inside the runtime can fire.
pub fn run_blocking(options: BenchOptions) -> Result<String, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    watchdog::start();
    runtime.block_on(run(options))
}

/// How long a measurement may go without any receiver advancing before the watchdog of
/// [`run_blocking`] gives up.
pub const STALL_LIMIT: Duration = Duration::from_secs(120);

/// Progress beats from the measurement, and the thread that watches them.
mod watchdog {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    static EPOCH: OnceLock<Instant> = OnceLock::new();
    static LAST_BEAT_MS: AtomicU64 = AtomicU64::new(0);
    static ARMED: AtomicBool = AtomicBool::new(false);
    static PHASE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

    fn now_ms() -> u64 {
        EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    /// Something advanced.
    pub(super) fn beat() {
        LAST_BEAT_MS.store(now_ms(), Ordering::Relaxed);
    }

    /// A measurement starts (`Some`) or ends (`None`); only measurements are watched.
    pub(super) fn phase(name: Option<&str>) {
        if let Ok(mut phase) = PHASE.lock() {
            *phase = name.unwrap_or_default().to_owned();
        }
        beat();
        ARMED.store(name.is_some(), Ordering::SeqCst);
    }

    pub(super) fn start() {
        beat();
        let spawned = std::thread::Builder::new().name("bench-watchdog".into()).spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let silent = Duration::from_millis(now_ms().saturating_sub(LAST_BEAT_MS.load(Ordering::Relaxed)));
                if ARMED.load(Ordering::SeqCst) && silent > super::STALL_LIMIT {
                    let phase = PHASE.lock().map(|p| p.clone()).unwrap_or_default();
                    eprintln!(
                        "kairan bench: no progress for {}s during {phase}: the nodes in this process are stuck \
                         (a deadlock blocks the runtime, so nothing can time out); giving up. \
                         Attach a debugger (gdb -p {}) before this message next time to see where.",
                        silent.as_secs(),
                        std::process::id()
                    );
                    std::process::exit(70);
                }
            }
        });
        if let Err(error) = spawned {
            eprintln!("kairan bench: no watchdog ({error}); a stuck node would hang the bench");
        }
    }
}

/// Runs the bench; returns the markdown report.
pub async fn run(options: BenchOptions) -> Result<String, CliError> {
    if options.clinics.is_empty() || options.clinics.contains(&0) {
        return Err(CliError::Usage("clinic counts must be at least 1".into()));
    }
    let largest = options.clinics.iter().copied().max().unwrap_or(0);
    let machine = Machine::probe();
    let needed = needed_files(largest, options.districts.unwrap_or_else(|| default_districts(largest)));
    if let Some(limit) = machine.open_files {
        if limit < needed {
            return Err(CliError::Usage(format!(
                "the open-file limit is {limit}, but {largest} clinics need about {needed} descriptors \
                 (a sled database and two loopback sockets per clinic): run `ulimit -n 65536` first, \
                 or bench fewer clinics (--clinics 10,100)"
            )));
        }
    }
    let mosquitto = if options.mosquitto {
        let found = find_mosquitto();
        if found.is_none() {
            eprintln!(
                "kairan bench: mosquitto is not installed (not on PATH nor in /usr/sbin): the Mosquitto column is skipped"
            );
        }
        found
    } else {
        None
    };
    let started = Instant::now();
    let mut results = Vec::new();
    for &clinics in &options.clinics {
        let districts = options.districts.unwrap_or_else(|| default_districts(clinics)).clamp(1, clinics);
        let per_district = clinics.div_ceil(districts);
        let total = per_district * districts;
        let batch = options.advisories.min((options.max_deliveries / total).max(MIN_BATCH)).max(1);
        let shape = Shape { clinics: total, districts, per_district, batch };
        progress(
            &options,
            started,
            &format!("N = {total}: kairan, {districts} district(s) × {per_district} clinics"),
        );
        let (kairan, payload) = bench_kairan(&shape, &options, started).await?;
        let reference = match &mosquitto {
            Some(binary) => {
                progress(
                    &options,
                    started,
                    &format!("N = {total}: Mosquitto bridge chain ({} processes)", 2 + districts),
                );
                Some(bench_mosquitto(binary, &shape, &payload, &options, started).await?)
            }
            None => None,
        };
        results.push(NResult { shape, kairan, mosquitto: reference });
    }
    Ok(render(&options, &machine, mosquitto.as_deref(), &results, started.elapsed()))
}

fn progress(options: &BenchOptions, started: Instant, text: &str) {
    if options.progress {
        eprintln!("[{:>7.1}s] {text}", started.elapsed().as_secs_f64());
    }
}

/// Descriptors needed for `clinics` clinics: per clinic a sled database (its file and its
/// directory lock) and two loopback socket ends (client and embedded broker), plus the relays
/// and headroom.
fn needed_files(clinics: usize, districts: usize) -> u64 {
    (clinics as u64) * 5 + (districts as u64 + 2) * 16 + 512
}

/// The tree shape for one N.
#[derive(Debug, Clone, Copy)]
struct Shape {
    clinics: usize,
    districts: usize,
    per_district: usize,
    batch: usize,
}

/// One system's figures for one N.
#[derive(Debug, Clone)]
struct Measured {
    latencies: Vec<Duration>,
    batch: usize,
    batch_elapsed: Duration,
    /// Per relay level: when every relay of the level held all K, from the first publish.
    relay_elapsed: Vec<(&'static str, Duration)>,
    published_bytes: usize,
    received_bytes: usize,
    setup: Duration,
    /// This process after the throughput run (kairan only: every node is in it).
    resources: Option<String>,
}

impl Measured {
    fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.latencies, p)
    }

    fn advisories_per_sec(&self) -> f64 {
        self.batch as f64 / self.batch_elapsed.as_secs_f64().max(1e-9)
    }

    fn relay_advisories_per_sec(&self) -> Vec<(&'static str, f64)> {
        self.relay_elapsed
            .iter()
            .map(|(level, elapsed)| (*level, self.batch as f64 / elapsed.as_secs_f64().max(1e-9)))
            .collect()
    }
}

#[derive(Debug)]
struct NResult {
    shape: Shape,
    kairan: Measured,
    mosquitto: Option<Measured>,
}

/// Nearest-rank percentile.
fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

// ---------------------------------------------------------------------------------------------
// Arrival detection

/// What one message is, to a receiver.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// A kairan advisory, by digest.
    Advisory(Digest),
    /// A Mosquitto bench message, by id.
    Message(u64),
}

/// Who must hold every item.
#[derive(Debug, Clone)]
enum Receivers {
    /// kairan stores (clinics or relays).
    Stores(Vec<SledStore>),
    /// Mosquitto subscribers' received ids.
    Subscribers(Vec<Arc<Mutex<HashSet<u64>>>>),
}

impl Receivers {
    fn len(&self) -> usize {
        match self {
            Receivers::Stores(stores) => stores.len(),
            Receivers::Subscribers(subscribers) => subscribers.len(),
        }
    }

    fn holds(&self, index: usize, item: Item) -> Result<bool, CliError> {
        match (self, item) {
            (Receivers::Stores(stores), Item::Advisory(digest)) => {
                stores[index].contains(&digest).map_err(|e| CliError::Failed(e.to_string()))
            }
            (Receivers::Subscribers(subscribers), Item::Message(id)) => subscribers[index]
                .lock()
                .map(|received| received.contains(&id))
                .map_err(|_| CliError::Failed("a subscriber task panicked".into())),
            _ => Err(CliError::Failed("bench: item and receiver kinds differ".into())),
        }
    }
}

/// Blocks until every receiver holds every item; returns when that was first seen.
fn wait_all_blocking(receivers: &Receivers, items: &[Item], timeout: Duration) -> Result<Instant, CliError> {
    let started = Instant::now();
    // Items are checked in order per receiver: `next[r]` items are known to be held by r.
    let mut next = vec![0usize; receivers.len()];
    let mut pending: Vec<usize> = (0..receivers.len()).collect();
    loop {
        let mut still = Vec::with_capacity(pending.len());
        for &receiver in &pending {
            while next[receiver] < items.len() && receivers.holds(receiver, items[next[receiver]])? {
                next[receiver] += 1;
                watchdog::beat();
            }
            if next[receiver] < items.len() {
                still.push(receiver);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(Instant::now());
        }
        if started.elapsed() > timeout {
            let least = pending.iter().map(|r| next[*r]).min().unwrap_or(0);
            return Err(CliError::Failed(format!(
                "{} of {} receivers still miss items after {timeout:?} (the slowest holds {least} of {})",
                pending.len(),
                receivers.len(),
                items.len()
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Starts the detector on a blocking thread (it starts looking at once).
fn spawn_wait_all(
    receivers: Receivers,
    items: Vec<Item>,
    timeout: Duration,
) -> JoinHandle<Result<Instant, CliError>> {
    tokio::task::spawn_blocking(move || wait_all_blocking(&receivers, &items, timeout))
}

async fn joined(handle: JoinHandle<Result<Instant, CliError>>) -> Result<Instant, CliError> {
    handle.await.map_err(|e| CliError::Failed(format!("arrival detector: {e}")))?
}

// ---------------------------------------------------------------------------------------------
// Publisher

/// One persistent MQTT connection publishing with QoS 1.
#[derive(Debug)]
struct Publisher {
    client: AsyncClient,
    task: JoinHandle<()>,
}

impl Publisher {
    async fn connect(
        addr: &BrokerAddr,
        credentials: Option<&Credentials>,
        client_id: &str,
    ) -> Result<Self, CliError> {
        let options = mqtt::client_options(client_id, addr, credentials, true, false);
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        let connected = Arc::new(AtomicBool::new(false));
        let last_error = Arc::new(Mutex::new(None::<String>));
        let task = tokio::spawn({
            let (connected, last_error) = (connected.clone(), last_error.clone());
            async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => connected.store(true, Ordering::SeqCst),
                        Ok(_) => {}
                        Err(error) => {
                            connected.store(false, Ordering::SeqCst);
                            if let Ok(mut last) = last_error.lock() {
                                *last = Some(error.to_string());
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !connected.load(Ordering::SeqCst) {
            if Instant::now() > deadline {
                task.abort();
                let reason =
                    last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_else(|| "no answer".into());
                return Err(CliError::Failed(format!(
                    "bench publisher cannot connect to {}: {reason}",
                    addr.url()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Self { client, task })
    }

    async fn publish(&self, topic: &str, bytes: Vec<u8>) -> Result<(), CliError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, bytes)
            .await
            .map_err(|e| CliError::Failed(format!("bench publish: {e}")))
    }

    async fn close(self) {
        let _ = self.client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// The measurement both systems share

/// What [`measure`] found.
#[derive(Debug)]
struct Run {
    latencies: Vec<Duration>,
    batch: usize,
    batch_elapsed: Duration,
    relay_elapsed: Vec<(&'static str, Duration)>,
}

/// Messages for one system and N: one warm-up, the latency samples, the throughput batch.
#[derive(Debug)]
struct Workload {
    warmup: Vec<(Vec<u8>, Item)>,
    samples: Vec<(Vec<u8>, Item)>,
    batch: Vec<(Vec<u8>, Item)>,
}

#[allow(clippy::too_many_arguments)] // two call sites; these are the run's inputs
async fn measure(
    label: &str,
    publisher: &Publisher,
    topic: &str,
    clinics: &Receivers,
    relays: &[(&'static str, Receivers)],
    workload: Workload,
    options: &BenchOptions,
    started: Instant,
) -> Result<Run, CliError> {
    // Only the kairan side can block the runtime (its nodes run in this process); the
    // Mosquitto side fails by its own timeouts, and an exit there would leave its processes.
    if !relays.is_empty() {
        watchdog::phase(Some(&format!("the {label} measurement at N = {}", clinics.len())));
    }
    let run = measure_unwatched(label, publisher, topic, clinics, relays, workload, options, started).await;
    watchdog::phase(None);
    run
}

#[allow(clippy::too_many_arguments)] // see measure
async fn measure_unwatched(
    label: &str,
    publisher: &Publisher,
    topic: &str,
    clinics: &Receivers,
    relays: &[(&'static str, Receivers)],
    workload: Workload,
    options: &BenchOptions,
    started: Instant,
) -> Result<Run, CliError> {
    // Warm-up: connections, first writes, caches.
    let warmup_items: Vec<Item> = workload.warmup.iter().map(|(_, item)| *item).collect();
    for (bytes, _) in workload.warmup {
        publisher.publish(topic, bytes).await?;
    }
    joined(spawn_wait_all(clinics.clone(), warmup_items, options.timeout)).await?;

    // Latency: one at a time, the pipeline idle before each.
    progress(options, started, &format!("  {label}: latency, up to {} samples", workload.samples.len()));
    let sampling = Instant::now();
    let mut latencies = Vec::with_capacity(workload.samples.len());
    for (bytes, item) in workload.samples {
        if latencies.len() >= MIN_SAMPLES && sampling.elapsed() > options.latency_budget {
            break;
        }
        tokio::time::sleep(options.pause).await;
        let sent = Instant::now();
        publisher.publish(topic, bytes).await?;
        let arrived = joined(spawn_wait_all(clinics.clone(), vec![item], options.timeout)).await?;
        latencies.push(arrived.saturating_duration_since(sent));
    }

    // Throughput: the whole batch back to back; the detectors are looking before the first.
    let count = workload.batch.len();
    progress(options, started, &format!("  {label}: throughput, {count} advisories back to back"));
    tokio::time::sleep(options.pause.max(Duration::from_millis(50))).await;
    let items: Vec<Item> = workload.batch.iter().map(|(_, item)| *item).collect();
    // Every delivery at every clinic is a durable write: allow 20 ms each beyond the timeout.
    let batch_timeout = options.timeout + Duration::from_millis(20 * (count * clinics.len()) as u64);
    let clinic_wait = spawn_wait_all(clinics.clone(), items.clone(), batch_timeout);
    let relay_waits: Vec<_> = relays
        .iter()
        .map(|(level, relays)| (*level, spawn_wait_all(relays.clone(), items.clone(), batch_timeout)))
        .collect();
    let sent = Instant::now();
    for (bytes, _) in workload.batch {
        publisher.publish(topic, bytes).await?;
    }
    let clinics_done = joined(clinic_wait).await?.saturating_duration_since(sent);
    let mut relays_done = Vec::with_capacity(relay_waits.len());
    for (level, wait) in relay_waits {
        relays_done.push((level, joined(wait).await?.saturating_duration_since(sent)));
    }
    Ok(Run { latencies, batch: count, batch_elapsed: clinics_done, relay_elapsed: relays_done })
}

// ---------------------------------------------------------------------------------------------
// kairan

/// Measures kairan at one N; also returns the delivery bytes an origin publishes, for the
/// Mosquitto side.
async fn bench_kairan(
    shape: &Shape,
    options: &BenchOptions,
    started: Instant,
) -> Result<(Measured, Vec<u8>), CliError> {
    let setup_started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("kairan-bench-")
        .tempdir()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut tree = HierarchyBuilder::new(temp.path())
        .prefectures(1)
        .districts_per_prefecture(shape.districts)
        .clinics_per_district(shape.per_district)
        .start()
        .await?;
    let connect_timeout = Duration::from_secs(30) + Duration::from_millis(50 * shape.clinics as u64);
    tree.wait_subscribed(connect_timeout).await?;
    let setup = setup_started.elapsed();
    progress(
        options,
        started,
        &format!(
            "  kairan: {} relays and {} clinics connected in {:.1}s",
            tree.relays.len(),
            tree.clinics.len(),
            setup.as_secs_f64()
        ),
    );

    let stores = |handles: Vec<Option<&SledStore>>| -> Result<Receivers, CliError> {
        handles
            .into_iter()
            .map(|store| store.cloned().ok_or_else(|| CliError::Failed("a node is stopped".into())))
            .collect::<Result<Vec<_>, _>>()
            .map(Receivers::Stores)
    };
    let clinics = stores(tree.clinics.iter().map(|c| c.handle.as_ref().map(|h| h.store())).collect())?;
    let mut levels = Vec::new();
    for (name, level) in
        [("national", Level::National), ("prefecture", Level::Prefecture), ("district", Level::District)]
    {
        let relays =
            tree.relays.iter().filter(|r| r.level == level).map(|r| r.handle.as_ref().map(|h| h.store()));
        levels.push((name, stores(relays.collect())?));
    }

    // The payload: the first sample advisory, re-dated to now, a distinct id per message.
    let (name, text) = SAMPLES[0];
    let mut draft =
        AdvisoryDraft::parse(text).map_err(|e| CliError::Failed(format!("sample {name}: {e}")))?;
    draft.issued_at = None;
    draft.expires_at = None;
    draft.valid_days = Some(30);
    let base = draft
        .into_advisory(crate::clock::now(), None)
        .map_err(|e| CliError::Failed(format!("sample {name}: {e}")))?;
    let mut next = |number: usize| -> (Vec<u8>, Item) {
        let mut advisory = base.clone();
        advisory.id = format!("{}-BENCH-{number:06}", base.id);
        let (bytes, digest) = tree.sign_next(advisory);
        (bytes, Item::Advisory(digest))
    };
    let mut number = 0usize;
    let mut take = |count: usize| -> Vec<(Vec<u8>, Item)> {
        (0..count)
            .map(|_| {
                number += 1;
                next(number)
            })
            .collect()
    };
    let workload =
        Workload { warmup: take(2), samples: take(options.latency_samples), batch: take(shape.batch) };
    let payload = workload.warmup.first().map(|(bytes, _)| bytes.clone()).unwrap_or_default();
    let first_digest = match workload.warmup.first() {
        Some((_, Item::Advisory(digest))) => Some(*digest),
        _ => None,
    };

    let addr = tree.national_broker()?;
    let publisher = Publisher::connect(&addr, tree.origin.credentials.as_ref(), "mhlw-bench").await?;
    let measured = measure(
        "kairan",
        &publisher,
        &mqtt::ingest_topic(&tree.national().config_parts.id),
        &clinics,
        &levels,
        workload,
        options,
        started,
    )
    .await;
    publisher.close().await;
    // What a clinic holds: the delivery with one hop attestation per relay.
    let resources = process_resources();
    let received_bytes = match (first_digest, tree.clinics.first().and_then(|c| c.handle.as_ref())) {
        (Some(digest), Some(handle)) => {
            handle.store().get(&digest).ok().flatten().map_or(0, |r| r.delivery.len())
        }
        _ => 0,
    };
    // The bench's own handles on the stores go first, so that each database closes with its
    // node (and before its directory is removed).
    drop(clinics);
    drop(levels);
    progress(options, started, "  kairan: shutting the tree down");
    // A relay that cannot stop must not hang the bench.
    let grace = Duration::from_secs(60) + Duration::from_millis(20 * shape.clinics as u64);
    let stopped = tokio::time::timeout(grace, tree.shutdown())
        .await
        .unwrap_or_else(|_| Err(CliError::Failed(format!("the tree did not shut down within {grace:?}"))));
    let run = measured?;
    stopped?;
    drop(temp);
    let measured = Measured {
        latencies: run.latencies,
        batch: run.batch,
        batch_elapsed: run.batch_elapsed,
        relay_elapsed: run.relay_elapsed,
        published_bytes: payload.len(),
        received_bytes,
        setup,
        resources,
    };
    Ok((measured, payload))
}

// ---------------------------------------------------------------------------------------------
// Mosquitto

/// Finds `mosquitto` on PATH, or where distributions install it (`/usr/sbin` is not on a
/// normal user's PATH on Debian).
fn find_mosquitto() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/opt/homebrew/sbin"].into_iter().map(PathBuf::from))
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> Result<u16, CliError> {
    let probe = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .map_err(|e| CliError::Failed(format!("free port: {e}")))?;
    probe.local_addr().map(|a| a.port()).map_err(|e| CliError::Failed(format!("free port: {e}")))
}

/// Mosquitto processes, killed when dropped (also on error paths).
#[derive(Debug, Default)]
struct MosquittoChain {
    children: Vec<(String, Child)>,
}

impl Drop for MosquittoChain {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The configuration of one broker of the chain; `parent` = (bridge name, parent port).
fn mosquitto_config(port: u16, parent: Option<(&str, u16)>, log: &Path) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# kairan bench: one broker of the Mosquitto bridge chain");
    let _ = writeln!(text, "listener {port} 127.0.0.1");
    let _ = writeln!(text, "allow_anonymous true");
    // No persistence: Mosquitto's persistence is a periodic snapshot, never a write per
    // message, so it would not make the comparison closer to kairan's flushed stores anyway.
    let _ = writeln!(text, "persistence false");
    // The same in-flight window as kairan's brokers and clients (100), and no queue cut-off
    // for the throughput batch.
    let _ = writeln!(text, "max_inflight_messages 100");
    let _ = writeln!(text, "max_queued_messages 100000");
    let _ = writeln!(text, "log_dest file {}", log.display());
    let _ = writeln!(text, "log_type error");
    let _ = writeln!(text, "log_type warning");
    let _ = writeln!(text, "log_type notice");
    if let Some((name, parent_port)) = parent {
        let _ = writeln!(text, "connection {name}");
        let _ = writeln!(text, "address 127.0.0.1:{parent_port}");
        let _ = writeln!(text, "topic bench/# in 1");
        let _ = writeln!(text, "cleansession false");
        let _ = writeln!(text, "bridge_protocol_version mqttv311");
        let _ = writeln!(text, "restart_timeout 1");
    }
    text
}

impl MosquittoChain {
    /// Starts one broker and waits until it accepts connections.
    fn start(
        &mut self,
        binary: &Path,
        dir: &Path,
        name: &str,
        parent: Option<(&str, u16)>,
    ) -> Result<u16, CliError> {
        let port = free_port()?;
        let config_path = dir.join(format!("{name}.conf"));
        let log_path = dir.join(format!("{name}.log"));
        std::fs::write(&config_path, mosquitto_config(port, parent, &log_path))
            .map_err(|e| CliError::io(&config_path, e))?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| CliError::Failed(format!("cannot start {}: {e}", binary.display())))?;
        self.children.push((name.to_owned(), child));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = self.children.last_mut().and_then(|(_, child)| child.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(CliError::Failed(format!(
                    "mosquitto {name} did not start listening on {addr}: {}",
                    log.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(port)
    }
}

/// One subscriber standing in for a clinic: records the ids it received.
#[derive(Debug)]
struct Subscriber {
    received: Arc<Mutex<HashSet<u64>>>,
    subscribed: Arc<AtomicBool>,
    client: AsyncClient,
    task: JoinHandle<()>,
}

fn message_id(payload: &[u8]) -> Option<u64> {
    payload.get(..8).and_then(|head| head.try_into().ok()).map(u64::from_be_bytes)
}

/// The bench payload: the kairan delivery bytes with the message id in the first 8 bytes.
fn stamped(payload: &[u8], id: u64) -> Vec<u8> {
    let mut bytes = payload.to_vec();
    if bytes.len() < 8 {
        bytes.resize(8, b' ');
    }
    bytes[..8].copy_from_slice(&id.to_be_bytes());
    bytes
}

fn start_subscriber(
    addr: &BrokerAddr,
    client_id: &str,
    duplicates: Arc<AtomicU64>,
) -> Result<Subscriber, CliError> {
    // The clinics' client options: persistent session, QoS 1, large packets; acks automatic
    // (there is nothing to store first).
    let options = mqtt::client_options(client_id, addr, None, false, false);
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
    client
        .try_subscribe("bench/#", QoS::AtLeastOnce)
        .map_err(|e| CliError::Failed(format!("subscribe: {e}")))?;
    let received = Arc::new(Mutex::new(HashSet::new()));
    let subscribed = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (received, subscribed) = (received.clone(), subscribed.clone());
        async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if let Some(id) = message_id(&publish.payload) {
                            let fresh = received.lock().map(|mut set| set.insert(id)).unwrap_or(true);
                            if !fresh {
                                duplicates.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => subscribed.store(true, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    });
    Ok(Subscriber { received, subscribed, client, task })
}

async fn bench_mosquitto(
    binary: &Path,
    shape: &Shape,
    payload: &[u8],
    options: &BenchOptions,
    started: Instant,
) -> Result<Measured, CliError> {
    let setup_started = Instant::now();
    let temp = tempfile::Builder::new()
        .prefix("kairan-bench-mosquitto-")
        .tempdir()
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut chain = MosquittoChain::default();
    let national = chain.start(binary, temp.path(), "national", None)?;
    let prefecture =
        chain.start(binary, temp.path(), "prefecture", Some(("prefecture-to-national", national)))?;
    let mut district_ports = Vec::new();
    for district in 0..shape.districts {
        let name = format!("district-{}", district + 1);
        let bridge = format!("{name}-to-prefecture");
        district_ports.push(chain.start(binary, temp.path(), &name, Some((&bridge, prefecture)))?);
    }
    let duplicates = Arc::new(AtomicU64::new(0));
    let mut subscribers = Vec::with_capacity(shape.clinics);
    for (district, port) in district_ports.iter().enumerate() {
        let addr = BrokerAddr { host: "127.0.0.1".into(), port: *port };
        for clinic in 0..shape.per_district {
            subscribers.push(start_subscriber(
                &addr,
                &format!("bench-d{}-c{}", district + 1, clinic + 1),
                duplicates.clone(),
            )?);
        }
    }
    let result = async {
        let deadline =
            Instant::now() + Duration::from_secs(30) + Duration::from_millis(50 * shape.clinics as u64);
        while !subscribers.iter().all(|s| s.subscribed.load(Ordering::SeqCst)) {
            if Instant::now() > deadline {
                return Err(CliError::Failed("Mosquitto subscribers did not all subscribe in time".into()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let receivers = Receivers::Subscribers(subscribers.iter().map(|s| s.received.clone()).collect());
        let publisher = Publisher::connect(
            &BrokerAddr { host: "127.0.0.1".into(), port: national },
            None,
            "bench-publisher",
        )
        .await?;
        // The bridges connect on their own schedule: probe until a message crosses all of them.
        let mut probe = PROBE_ID_BASE;
        loop {
            publisher.publish(BENCH_TOPIC, stamped(payload, probe)).await?;
            match joined(spawn_wait_all(
                receivers.clone(),
                vec![Item::Message(probe)],
                Duration::from_millis(500),
            ))
            .await
            {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => probe += 1,
                Err(error) => {
                    return Err(CliError::Failed(format!("the Mosquitto bridges did not connect: {error}")));
                }
            }
        }
        let setup = setup_started.elapsed();
        progress(
            options,
            started,
            &format!(
                "  mosquitto: {} brokers bridged, {} subscribers in {:.1}s",
                chain.children.len(),
                subscribers.len(),
                setup.as_secs_f64()
            ),
        );
        let mut id = 0u64;
        let mut take = |count: usize| -> Vec<(Vec<u8>, Item)> {
            (0..count)
                .map(|_| {
                    id += 1;
                    (stamped(payload, id), Item::Message(id))
                })
                .collect()
        };
        let workload = Workload {
            warmup: vec![(stamped(payload, probe + 1), Item::Message(probe + 1))],
            samples: take(options.latency_samples),
            batch: take(shape.batch),
        };
        let measured =
            measure("mosquitto", &publisher, BENCH_TOPIC, &receivers, &[], workload, options, started).await;
        publisher.close().await;
        let run = measured?;
        Ok(Measured {
            latencies: run.latencies,
            batch: run.batch,
            batch_elapsed: run.batch_elapsed,
            relay_elapsed: Vec::new(),
            published_bytes: payload.len(),
            received_bytes: payload.len(),
            setup,
            resources: None,
        })
    }
    .await;
    for subscriber in subscribers {
        let _ = subscriber.client.try_disconnect();
        subscriber.task.abort();
    }
    let repeated = duplicates.load(Ordering::Relaxed);
    if repeated > 0 {
        progress(
            options,
            started,
            &format!("  mosquitto: {repeated} duplicate deliveries (QoS 1 redelivery)"),
        );
    }
    drop(chain);
    drop(temp);
    result
}

// ---------------------------------------------------------------------------------------------
// Report

/// What the report says about the machine.
#[derive(Debug, Clone, Default)]
struct Machine {
    cpu: Option<String>,
    cores: usize,
    memory_gib: Option<f64>,
    open_files: Option<u64>,
    /// Load average (1, 5, 15 min) when the bench started: other work on the machine.
    load: Option<String>,
    /// 4 KiB writes + fdatasync per second on one file in the temporary directory: what one
    /// durable store write costs on this disk.
    fsyncs_per_sec: Option<f64>,
}

/// Times 100 × (4 KiB write + fdatasync) on a file in the temporary directory.
fn fsync_rate() -> Option<f64> {
    let mut file = tempfile::tempfile().ok()?;
    let block = [0u8; 4096];
    let started = Instant::now();
    for _ in 0..100 {
        file.write_all(&block).ok()?;
        file.sync_data().ok()?;
    }
    Some(100.0 / started.elapsed().as_secs_f64().max(1e-9))
}

/// Threads, open descriptors and resident memory of this process (Linux `/proc`).
fn process_resources() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    let fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let rss_mib = field("VmRSS:")?.parse::<f64>().ok()? / 1024.0;
    Some(format!("{} threads, {fds} open descriptors, {rss_mib:.0} MiB resident", field("Threads:")?))
}

/// `/proc/loadavg`'s first three fields.
fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

impl Machine {
    fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map(|(_, model)| model.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find(|line| line.starts_with("MemTotal:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<f64>().ok())
            .map(|kib| kib / (1024.0 * 1024.0));
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_files = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3))
            .and_then(|soft| soft.parse::<u64>().ok());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        Self { cpu, cores, memory_gib, open_files, load: load_average(), fsyncs_per_sec: fsync_rate() }
    }
}

fn ms(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "–".into(), |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".into(), |v| if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") })
}

fn ratio(kairan: Option<f64>, mosquitto: Option<f64>) -> String {
    match (kairan, mosquitto) {
        (Some(k), Some(m)) if m > 0.0 => format!("{:.1}×", k / m),
        _ => "–".into(),
    }
}

fn secs(duration: Option<Duration>) -> Option<f64> {
    duration.map(|d| d.as_secs_f64())
}

fn render(
    options: &BenchOptions,
    machine: &Machine,
    mosquitto: Option<&Path>,
    results: &[NResult],
    elapsed: Duration,
) -> String {
    let mut out = String::new();
    let now = crate::clock::now().to_rfc3339();
    let _ = writeln!(out, "### kairan bench, {}\n", &now[..now.len().min(19)]);
    let _ = writeln!(
        out,
        "Machine: {} logical CPU(s), {}, {} RAM; open-file limit {}; {} durable 4 KiB writes/s \
         (write + fdatasync, one file); load average {} at start, {} at end. \
         kairan {} ({} build). Whole run {:.0} s.\n",
        machine.cores,
        machine.cpu.as_deref().unwrap_or("unknown CPU"),
        machine.memory_gib.map_or_else(|| "unknown".into(), |g| format!("{g:.1} GiB")),
        machine.open_files.map_or_else(|| "unknown".into(), |n| n.to_string()),
        rate(machine.fsyncs_per_sec),
        machine.load.as_deref().unwrap_or("unknown"),
        load_average().unwrap_or_else(|| "unknown".into()),
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) { "DEBUG — not representative" } else { "release" },
        elapsed.as_secs_f64()
    );
    match mosquitto {
        Some(binary) => {
            let version = Command::new(binary)
                .arg("-h")
                .output()
                .ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(str::to_owned))
                .unwrap_or_else(|| binary.display().to_string());
            let _ = writeln!(
                out,
                "Reference: {version} ({}), one process per relay, bridged child → parent.\n",
                binary.display()
            );
        }
        None if options.mosquitto => {
            let _ = writeln!(out, "Reference: mosquitto is not installed; the Mosquitto column is empty.\n");
        }
        None => {
            let _ = writeln!(out, "Reference: not run (--no-mosquitto).\n");
        }
    }
    let _ = writeln!(
        out,
        "| N clinics | districts × clinics | kairan p50 | kairan p99 | kairan adv/s | Mosquitto p50 | Mosquitto p99 | Mosquitto adv/s | p50 ratio | adv/s ratio |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for result in results {
        let k = &result.kairan;
        let m = result.mosquitto.as_ref();
        let _ = writeln!(
            out,
            "| {} | {} × {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            result.shape.clinics,
            result.shape.districts,
            result.shape.per_district,
            ms(k.percentile(50.0)),
            ms(k.percentile(99.0)),
            rate(Some(k.advisories_per_sec())),
            ms(m.and_then(|m| m.percentile(50.0))),
            ms(m.and_then(|m| m.percentile(99.0))),
            rate(m.map(Measured::advisories_per_sec)),
            ratio(secs(k.percentile(50.0)), secs(m.and_then(|m| m.percentile(50.0)))),
            ratio(m.map(Measured::advisories_per_sec), Some(k.advisories_per_sec())),
        );
    }
    let _ = writeln!(
        out,
        "\nRatios: p50 ratio = kairan latency ÷ Mosquitto latency; adv/s ratio = Mosquitto throughput ÷ kairan throughput (both: how many times the bridge chain is faster).\n"
    );
    for result in results {
        let shape = result.shape;
        let k = &result.kairan;
        let m = result.mosquitto.as_ref();
        let _ = writeln!(
            out,
            "#### N = {} (national → 1 prefecture → {} district(s) → {} clinics each)\n",
            shape.clinics, shape.districts, shape.per_district
        );
        let _ = writeln!(
            out,
            "Payload: {} bytes published (the signed sample advisory with the origin certificate); {} bytes as stored at a clinic (three hop attestations added). Mosquitto carries the published bytes unchanged.\n",
            k.published_bytes, k.received_bytes
        );
        let _ = writeln!(out, "| measure | kairan | Mosquitto bridges | ratio |");
        let _ = writeln!(out, "|---|---:|---:|---:|");
        let lat = |p: f64, label: &str, out: &mut String| {
            let kv = k.percentile(p);
            let mv = m.and_then(|m| m.percentile(p));
            let _ = writeln!(out, "| {label} | {} | {} | {} |", ms(kv), ms(mv), ratio(secs(kv), secs(mv)));
        };
        lat(50.0, "latency p50, publish → all N stored", &mut out);
        lat(99.0, "latency p99", &mut out);
        let _ = writeln!(
            out,
            "| latency samples | {} | {} | |",
            k.latencies.len(),
            m.map_or_else(|| "–".into(), |m| m.latencies.len().to_string())
        );
        let kr = Some(k.advisories_per_sec());
        let mr = m.map(Measured::advisories_per_sec);
        let _ = writeln!(
            out,
            "| throughput, advisories/s (all N hold all K) | {} | {} | {} |",
            rate(kr),
            rate(mr),
            ratio(mr, kr)
        );
        let kd = kr.map(|r| r * shape.clinics as f64);
        let md = mr.map(|r| r * shape.clinics as f64);
        let _ = writeln!(
            out,
            "| throughput, deliveries/s (K·N/s) | {} | {} | {} |",
            rate(kd),
            rate(md),
            ratio(md, kd)
        );
        let _ = writeln!(
            out,
            "| K (advisories back to back), time | {} in {:.2} s | {} | |",
            k.batch,
            k.batch_elapsed.as_secs_f64(),
            m.map_or_else(
                || "–".into(),
                |m| format!("{} in {:.2} s", m.batch, m.batch_elapsed.as_secs_f64())
            )
        );
        for (level, per_sec) in k.relay_advisories_per_sec() {
            let _ = writeln!(
                out,
                "| relays alone: advisories/s until every {level} relay holds all K | {} | – | |",
                rate(Some(per_sec))
            );
        }
        let _ = writeln!(
            out,
            "| set-up (start, connect, subscribe) | {:.1} s | {} | |\n",
            k.setup.as_secs_f64(),
            m.map_or_else(|| "–".into(), |m| format!("{:.1} s", m.setup.as_secs_f64()))
        );
        if let Some(resources) = &k.resources {
            let _ = writeln!(out, "kairan process after the throughput run: {resources}.\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_clinic_counts() {
        assert_eq!(parse_clinic_counts("10,100,1000"), Ok(vec![10, 100, 1000]));
        assert_eq!(parse_clinic_counts(" 10, 1_000 "), Ok(vec![10, 1000]));
        assert!(parse_clinic_counts("10,0").is_err());
        assert!(parse_clinic_counts("ten").is_err());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&values[..10], 99.0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn stamps_ids_without_changing_the_size() {
        let payload = b"{\"advisory\":{}}".to_vec();
        let bytes = stamped(&payload, 42);
        assert_eq!(bytes.len(), payload.len());
        assert_eq!(message_id(&bytes), Some(42));
    }

    #[test]
    fn bridge_config_names_the_parent() {
        let text = mosquitto_config(1884, Some(("d1-to-p", 1883)), Path::new("/tmp/x.log"));
        assert!(text.contains("listener 1884 127.0.0.1"));
        assert!(
            text.contains(
                "connection d1-to-p\naddress 127.0.0.1:1883\ntopic bench/# in 1\ncleansession false"
            )
        );
        assert!(!mosquitto_config(1883, None, Path::new("/tmp/x.log")).contains("connection"));
    }
}
